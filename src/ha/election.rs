//! Leader election, the standard ZooKeeper recipe: each replica creates an
//! EPHEMERAL_SEQUENTIAL znode under `<root>/election/`; the lowest sequence
//! is active; every other replica watches only its predecessor, so a
//! replica leaving wakes one other (no herd). A session that expires takes
//! its znode with it: the replica steps down (`Role::Expired`) and joins
//! again with a new session, at the back of the line.

use super::{HaError, ensure_path};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client::{Acls, Client, CreateMode, EventType, SessionInfo, SessionState};

/// A replica as the others see it: the data of its election znode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
}

/// Where this replica stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Connecting or creating its election znode.
    Joining,
    /// Lowest znode: this replica sends.
    Active,
    /// Another replica's znode is lower. `active`: the lowest one's data
    /// when this replica last looked (it is woken only by its predecessor,
    /// so use [`Election::active`] for the current one).
    Standby { active: Option<ReplicaInfo> },
    /// The connection is lost; the session may still be alive. Not active:
    /// another replica may take over when the session expires.
    Disconnected,
    /// The session expired (or was closed): the znode is gone, this replica
    /// stepped down and is joining again with a new session.
    Expired,
}

impl Role {
    /// The role's name, as the status and `zkalert_replica_role` show it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Joining => "joining",
            Role::Active => "active",
            Role::Standby { .. } => "standby",
            Role::Disconnected => "disconnected",
            Role::Expired => "expired",
        }
    }
}

/// Proof of being active, checked by every shared-state write: the path of
/// this replica's election znode and the version it was created with. A
/// write under a fence whose znode is gone (the session expired) fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub path: String,
    pub version: i32,
}

/// The session and znode this replica holds now.
#[derive(Clone)]
struct Membership {
    client: Client,
    fence: Fence,
}

/// One replica's part in the election, run by a background task until
/// [`Election::leave`] or drop.
pub struct Election {
    role: watch::Receiver<Role>,
    membership: Arc<Mutex<Option<Membership>>>,
    predecessor_events: Arc<AtomicU64>,
    dir: String,
    task: tokio::task::JoinHandle<()>,
}

/// Election znodes are `n-<sequence>`; the sequence orders them.
const PREFIX: &str = "n-";

/// Wait between attempts to reach the coordination ensemble.
const RETRY: Duration = Duration::from_secs(1);

impl Election {
    /// Joins the election under `<root>/election`. Returns once the first
    /// session is connected and this replica's znode exists (an unreachable
    /// ensemble is an error here; later losses are retried forever).
    pub async fn join(
        hosts: &[String],
        root: &str,
        session_timeout: Duration,
        me: ReplicaInfo,
    ) -> Result<Election, HaError> {
        let dir = format!("{root}/election");
        let candidate = Candidate { hosts: hosts.join(","), dir: dir.clone(), session_timeout, me };
        let membership = Arc::new(Mutex::new(None));
        let (role_tx, role) = watch::channel(Role::Joining);
        let first = candidate.enter().await?;
        *lock(&membership) = Some(first.clone());
        let predecessor_events = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(candidate.run(first, role_tx, membership.clone(), predecessor_events.clone()));
        Ok(Election { role, membership, predecessor_events, dir, task })
    }

    /// The role, updated as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// The fence to write shared state under: `Some` only while active.
    pub fn fence(&self) -> Option<Fence> {
        if *self.role.borrow() != Role::Active {
            return None;
        }
        lock(&self.membership).as_ref().map(|m| m.fence.clone())
    }

    /// The current session's client (for shared-state reads and writes).
    pub fn client(&self) -> Option<Client> {
        lock(&self.membership).as_ref().map(|m| m.client.clone())
    }

    /// The current session (tests expire it by closing a second client on it).
    pub fn session(&self) -> Option<SessionInfo> {
        lock(&self.membership).as_ref().map(|m| m.client.session().clone())
    }

    /// How often the watch on this replica's predecessor fired.
    pub fn predecessor_events(&self) -> u64 {
        self.predecessor_events.load(Ordering::Relaxed)
    }

    /// The active replica now, read from the lowest election znode.
    pub async fn active(&self) -> Result<Option<ReplicaInfo>, HaError> {
        let Some(client) = self.client() else { return Ok(None) };
        let children = client.list_children(&self.dir).await.map_err(|e| HaError::zk(&self.dir, e))?;
        match sorted(children).first() {
            Some(lowest) => read_info(&client, &format!("{}/{lowest}", self.dir)).await,
            None => Ok(None),
        }
    }

    /// Leaves: stops the task and deletes this replica's znode, so the next
    /// replica takes over at once instead of after a session timeout. The
    /// session closes when the last clone of its client (see
    /// [`Election::client`]) is dropped.
    pub async fn leave(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let Some(m) = lock(&self.membership).take() else { return };
        match m.client.delete(&m.fence.path, Some(m.fence.version)).await {
            Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => tracing::warn!(znode = %m.fence.path, "leaving the election: {e}; it goes with the session"),
        }
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Children named `n-<sequence>`, lowest sequence first (other names are
/// ignored).
fn sorted(children: Vec<String>) -> Vec<String> {
    let mut nodes: Vec<(u64, String)> = children
        .into_iter()
        .filter_map(|c| c.strip_prefix(PREFIX).and_then(|s| s.parse().ok()).map(|seq| (seq, c)))
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, c)| c).collect()
}

async fn read_info(client: &Client, path: &str) -> Result<Option<ReplicaInfo>, HaError> {
    match client.get_data(path).await {
        Ok((data, _)) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| HaError::Decode { path: path.to_string(), reason: e.to_string() }),
        // It left between listing and reading.
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(HaError::zk(path, e)),
    }
}

struct Candidate {
    hosts: String,
    dir: String,
    session_timeout: Duration,
    me: ReplicaInfo,
}

/// Why a session's watch loop ended.
enum SessionEnd {
    /// Expired, closed, or our znode vanished: join again.
    Rejoin,
}

impl Candidate {
    /// A new session and a new election znode in it.
    async fn enter(&self) -> Result<Membership, HaError> {
        let client = Client::connector()
            .with_session_timeout(self.session_timeout)
            .with_connection_timeout(self.session_timeout)
            .connect(&self.hosts)
            .await
            .map_err(|error| HaError::Connect { hosts: self.hosts.clone(), error })?;
        ensure_path(&client, &self.dir).await?;
        let data = serde_json::to_vec(&self.me)
            .map_err(|e| HaError::Encode { what: "replica info".into(), reason: e.to_string() })?;
        let prefix = format!("{}/{PREFIX}", self.dir);
        let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
        let (stat, sequence) = client.create(&prefix, &data, &options).await.map_err(|e| HaError::zk(&prefix, e))?;
        let fence = Fence { path: format!("{prefix}{sequence}"), version: stat.version };
        tracing::info!(replica = %self.me.name, znode = %fence.path, "joined the election");
        Ok(Membership { client, fence })
    }

    async fn run(
        self,
        first: Membership,
        role: watch::Sender<Role>,
        membership: Arc<Mutex<Option<Membership>>>,
        predecessor_events: Arc<AtomicU64>,
    ) {
        let mut current = first;
        loop {
            let SessionEnd::Rejoin = self.follow(&current, &role, &predecessor_events).await;
            lock(&membership).take();
            drop(current);
            current = loop {
                match self.enter().await {
                    Ok(m) => break m,
                    Err(e) => {
                        tracing::warn!(replica = %self.me.name, "cannot join the election: {e}");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            };
            *lock(&membership) = Some(current.clone());
        }
    }

    /// Follows one session: evaluates the election, waits on the
    /// predecessor (or, when active, on its own znode) and on the session.
    async fn follow(&self, m: &Membership, role: &watch::Sender<Role>, predecessor_events: &AtomicU64) -> SessionEnd {
        let client = &m.client;
        let mine = m.fence.path.rsplit('/').next().unwrap_or_default().to_string();
        let mut state = client.state_watcher();
        loop {
            let step = self.evaluate(client, &mine).await;
            let watcher = match step {
                Ok(Some((next_role, watcher))) => {
                    role.send_replace(next_role);
                    watcher
                }
                // Our znode is gone while the session lives (deleted by hand): join again.
                Ok(None) => return SessionEnd::Rejoin,
                Err(e) => {
                    tracing::warn!(replica = %self.me.name, "election: {e}");
                    if client.state().is_terminated() {
                        role.send_replace(Role::Expired);
                        return SessionEnd::Rejoin;
                    }
                    if is_connected(client.state()) {
                        // Connected, yet the look failed (a server error): look again soon.
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                    role.send_replace(Role::Disconnected);
                    // Wait for the session to come back (or end), then look again.
                    if wait_connected(&mut state).await {
                        continue;
                    }
                    role.send_replace(Role::Expired);
                    return SessionEnd::Rejoin;
                }
            };
            tokio::select! {
                event = watcher.changed() => {
                    // Session events reach watchers too: the state branch handles those.
                    if event.event_type != EventType::Session && *role.borrow() != Role::Active {
                        predecessor_events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                session = state.changed() => {
                    if session.is_terminated() {
                        tracing::warn!(replica = %self.me.name, "coordination session {session}: stepping down");
                        role.send_replace(Role::Expired);
                        return SessionEnd::Rejoin;
                    }
                    if session == SessionState::Disconnected {
                        role.send_replace(Role::Disconnected);
                        if !wait_connected(&mut state).await {
                            role.send_replace(Role::Expired);
                            return SessionEnd::Rejoin;
                        }
                    }
                }
            }
        }
    }

    /// The role now and the watch to wait on: the predecessor's znode, or
    /// our own when active. `None`: our znode is gone.
    async fn evaluate(
        &self,
        client: &Client,
        mine: &str,
    ) -> Result<Option<(Role, zookeeper_client::OneshotWatcher)>, HaError> {
        loop {
            let children = sorted(client.list_children(&self.dir).await.map_err(|e| HaError::zk(&self.dir, e))?);
            let Some(index) = children.iter().position(|c| c == mine) else { return Ok(None) };
            let (watched, next_role) = if index == 0 {
                (mine.to_string(), Role::Active)
            } else {
                let active = read_info(client, &format!("{}/{}", self.dir, children[0])).await?;
                (children[index - 1].clone(), Role::Standby { active })
            };
            let path = format!("{}/{watched}", self.dir);
            match client.check_and_watch_stat(&path).await.map_err(|e| HaError::zk(&path, e))? {
                (Some(_), watcher) => return Ok(Some((next_role, watcher))),
                // The predecessor left before the watch was set: look again.
                (None, _) if index > 0 => continue,
                (None, _) => return Ok(None),
            }
        }
    }
}

/// Waits until the session is connected again (`true`) or ends (`false`).
async fn wait_connected(state: &mut zookeeper_client::StateWatcher) -> bool {
    loop {
        let s = state.changed().await;
        if s.is_terminated() {
            return false;
        }
        if is_connected(s) {
            return true;
        }
    }
}

fn is_connected(s: SessionState) -> bool {
    s == SessionState::SyncConnected || s == SessionState::ConnectedReadOnly
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_sequence_first_others_ignored() {
        let children = vec!["n-0000000010".into(), "x".into(), "n-0000000002".into(), "n-0000000100".into()];
        assert_eq!(sorted(children), ["n-0000000002", "n-0000000010", "n-0000000100"]);
    }
}
