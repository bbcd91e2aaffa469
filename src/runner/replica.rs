//! The runner as one of several replicas (`ha:`, docs/ha.md). Every replica
//! polls, evaluates and runs its pipeline (hot standby), but only the
//! active one sends: a standby's messages are dropped, and its own
//! notification log is replaced by the shared one when it takes over. The
//! active replica writes each step's notification state to ZooKeeper
//! (fenced by its election znode) before handing the step's deliveries to
//! the notifiers; a fenced write makes it step down at once.
//!
//! API writes (silences, acks) sent to a standby are queued in ZooKeeper
//! for the active replica (`ha::requests`), which applies them as its own
//! and deletes them with the step that writes what they changed; a standby
//! shows the shared silences and acks (read again when they change).

use super::Runner;
use crate::api::{Command, CommandError};
use crate::ha::requests::{self, Queued, Request, Requests, SendError, Write};
use crate::ha::shared::Seen;
use crate::ha::{Election, Fence, HaError, ReplicaInfo, Role, SharedState, SharedStep};
use crate::model::Timestamp;
use crate::pipeline::{Ack, Dispatcher, GroupState, Message, Silence, Silences};
use crate::state::{DeliveryMark, StepWrite};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// This replica's election and what it has to write to the shared state.
pub struct Replica {
    pub election: Election,
    shared: SharedState,
    me: ReplicaInfo,
    /// Held while active, once the shared state was loaded: every write is
    /// checked against it.
    fence: Option<Fence>,
    /// What the next commit writes: group changes, new outbox messages and
    /// finished deliveries since the last commit that succeeded.
    unwritten: StepWrite,
    /// The silences as last written (to write only what changed).
    written_silences: HashMap<String, Silence>,
    /// A write failed without a fence: the shared state's znodes must be
    /// listed again before the next one.
    stale: bool,
    /// The writes standbys queue for the active replica.
    requests: Requests,
    /// Queued writes this replica applied whose znodes the next commit
    /// deletes (kept while commits fail, so not applied twice).
    applied_requests: Vec<String>,
    /// What a standby shows of the shared state.
    mirror: Mirror,
}

/// The shared silences and acks as a standby last read them.
#[derive(Default)]
struct Mirror {
    silences_seen: Option<Seen>,
    acks_seen: Option<Seen>,
    /// Group id → ack; `None` until first read (then the local log's shows).
    acks: Option<HashMap<String, Ack>>,
    read_at: Option<Timestamp>,
    /// The last read failed (logged once until one succeeds).
    failing: bool,
}

/// A standby reads the shared silences and acks at most this often (one
/// stat each when they did not change).
const MIRROR_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a standby waits for ZooKeeper to take a write it passes on
/// (the API gives up after 10 s).
const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /api/v1/status`'s `replica`: this replica's role, the active one and
/// the coordination session.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplicaStatus {
    pub name: String,
    pub role: &'static str,
    pub active: Option<ReplicaInfo>,
    pub session: String,
}

impl Replica {
    /// Joins the election and opens the shared state (creating its znodes).
    pub async fn join(config: &crate::config::HaConfig) -> Result<Replica, HaError> {
        let me = ReplicaInfo { name: config.replica.clone(), advertise_url: config.advertise_url.clone() };
        let election = Election::join(&config.zookeeper, &config.root, config.session_timeout, me.clone()).await?;
        let client = election
            .client()
            .ok_or_else(|| HaError::Zk { path: config.root.clone(), error: zookeeper_client::Error::SessionExpired })?;
        let shared = SharedState::open(&client, &config.root).await?;
        let requests = Requests::open(&client, &config.root).await?;
        Ok(Replica {
            election,
            shared,
            me,
            fence: None,
            unwritten: StepWrite::default(),
            written_silences: HashMap::new(),
            stale: false,
            requests,
            applied_requests: Vec::new(),
            mirror: Mirror::default(),
        })
    }

    /// Whether this replica sends (it holds a fence).
    pub fn is_active(&self) -> bool {
        self.fence.is_some()
    }

    pub fn status(&self) -> ReplicaStatus {
        let role = self.election.role().borrow().clone();
        let active = match &role {
            Role::Active => Some(self.me.clone()),
            Role::Standby { active } => active.clone(),
            _ => None,
        };
        let session = self.election.client().map_or_else(|| "none".to_string(), |c| c.state().to_string());
        ReplicaStatus { name: self.me.name.clone(), role: role.as_str(), active, session }
    }
}

impl Runner {
    /// Whether this runner may send: it is alone, or the active replica.
    pub(super) fn sends(&self) -> bool {
        self.replica.as_ref().is_none_or(Replica::is_active)
    }

    /// Notes a step's group changes and new messages for the shared state.
    pub(super) fn note_shared(&mut self, messages: &[Arc<Message>]) {
        let Some(r) = self.replica.as_mut().filter(|r| r.is_active()) else { return };
        let changes = self.pipeline.dispatcher.take_changes();
        // Later changes of a group replace earlier unwritten ones (held
        // while writes fail); within one step a removal comes first.
        let upserted: HashSet<String> = changes.upserted.iter().map(|g| g.key.id()).collect();
        let removed: HashSet<&String> = changes.removed.iter().collect();
        let unwritten = &mut r.unwritten.groups;
        unwritten.upserted.retain(|g| {
            let id = g.key.id();
            !upserted.contains(&id) && !removed.contains(&id)
        });
        unwritten.removed.retain(|id| !upserted.contains(id));
        unwritten.upserted.extend(changes.upserted.iter().cloned());
        unwritten.removed.extend(changes.removed.iter().cloned());
        self.pipeline.dispatcher.put_back_changes(changes);
        r.unwritten.outbox.extend(messages.iter().cloned());
    }

    /// Notes a delivery's outcome: a finished one leaves the shared outbox.
    pub(super) fn note_delivery(&mut self, mark: &DeliveryMark) {
        if let Some(r) = self.replica.as_mut().filter(|r| r.is_active()) {
            r.unwritten.deliveries.push(mark.clone());
        }
    }

    /// Follows the election: takes over when it became active, steps down
    /// when it no longer is (or holds another session's fence).
    pub async fn follow_role(&mut self) {
        let Some(r) = &self.replica else { return };
        let fence = r.election.fence();
        self.metrics.set_replica_role(r.election.role().borrow().as_str());
        if r.fence.is_some() && r.fence != fence {
            self.step_down("no longer the active replica");
        }
        if fence.is_some() && self.replica.as_ref().is_some_and(|r| r.fence.is_none()) {
            self.take_over().await;
        }
    }

    /// Writes what the active replica's steps changed to the shared state,
    /// then hands the pending deliveries to the notifiers. A standby drops
    /// its pending deliveries (not its to send). Alone: nothing to do (the
    /// step sent already).
    pub async fn commit_shared(&mut self, now: Timestamp) {
        self.apply_requests(now).await;
        let Some(r) = &mut self.replica else { return };
        let Some(fence) = r.fence.clone() else {
            self.pending.clear();
            self.mirror_shared(now).await;
            return;
        };
        let Some(client) = r.election.client() else { return };
        if r.stale {
            match r.shared.load(&client).await {
                Ok(_) => r.stale = false,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the shared state: deliveries held until it is written");
                    return;
                }
            }
        }
        let silences = self.pipeline.silences.items();
        let silences_put: Vec<Silence> =
            silences.iter().filter(|s| r.written_silences.get(&s.id) != Some(s)).cloned().collect();
        let silences_deleted: Vec<String> =
            r.written_silences.keys().filter(|id| !silences.iter().any(|s| &s.id == *id)).cloned().collect();
        let step = SharedStep {
            step: Some(&r.unwritten),
            silences_put: &silences_put,
            silences_deleted: &silences_deleted,
            requests_done: &r.applied_requests,
        };
        match r.shared.commit(&client, &fence, &step).await {
            Ok(_) => {
                r.unwritten = StepWrite::default();
                r.applied_requests.clear();
                r.written_silences = silences.iter().map(|s| (s.id.clone(), s.clone())).collect();
                self.submit_pending(now);
            }
            Err(e @ HaError::Fenced { .. }) => {
                tracing::error!(error = %e, "shared state write fenced");
                self.step_down("fenced");
            }
            Err(e) => {
                // Held, not dropped: the next step writes it again, and
                // sends only once it is written.
                tracing::error!(error = %e, "cannot write the shared state: deliveries held until it is written");
                r.stale = true;
            }
        }
    }

    /// Sends nothing more: drops the pending deliveries, stops those being
    /// tried and the heartbeat. The new active replica sends them.
    fn step_down(&mut self, why: &str) {
        let Some(r) = &mut self.replica else { return };
        if r.fence.take().is_some() {
            tracing::warn!(replica = %r.me.name, why, "stepping down: sending nothing more");
        }
        r.unwritten = StepWrite::default();
        r.applied_requests.clear();
        r.mirror = Mirror::default();
        self.pending.clear();
        self.delivering.clear();
        self.deliverer.abort_all();
        self.liveness.set_active(false);
    }

    /// Becomes the sender: loads the shared state and replaces the local
    /// notification log, silences and pending deliveries with it (a
    /// standby's own decisions were never sent); the pending deliveries go
    /// out with their original message ids (idempotency keys) once the next
    /// commit succeeds.
    async fn take_over(&mut self) {
        let Some(r) = &mut self.replica else { return };
        let (Some(fence), Some(client)) = (r.election.fence(), r.election.client()) else { return };
        let shared = match r.shared.load(&client).await {
            Ok(shared) => shared,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the shared state: not taking over yet");
                return;
            }
        };
        tracing::info!(
            replica = %r.me.name, znode = %fence.path, groups = shared.groups.len(), silences = shared.silences.len(),
            pending_deliveries = shared.pending.len(), "active: taking over the shared notification state"
        );
        r.written_silences = shared.silences.iter().map(|s| (s.id.clone(), s.clone())).collect();
        r.unwritten = StepWrite::default();
        r.stale = false;
        r.applied_requests.clear();
        r.mirror = Mirror::default();
        r.fence = Some(fence);
        let mut dispatcher = Dispatcher::new(self.pipeline.dispatcher.policy.clone());
        dispatcher.restore(shared.groups);
        self.pipeline.dispatcher = dispatcher;
        self.pipeline.silences = Silences::new(shared.silences);
        self.pending = shared.pending.into_iter().map(|e| (Arc::new(e.message), e.channel)).collect();
        self.liveness.set_active(true);
        // The next evaluation runs the pipeline on the restored log at once.
        self.last_pipeline_step = None;
    }
}

/// API writes on a replica: a standby passes them on to the active one.
impl Runner {
    /// Applies an API command. A standby does not apply silences and acks
    /// itself: it queues them for the active replica and answers once
    /// ZooKeeper has them. The active replica writes its own API's writes
    /// to the shared state at once (after replying), so standbys show them.
    pub async fn write(&mut self, command: Command, now: Timestamp) {
        let is_write =
            matches!(command, Command::AddSilence { .. } | Command::ExpireSilence { .. } | Command::Ack { .. });
        match &self.replica {
            Some(r) if is_write && !r.is_active() => self.pass_on(command, now),
            Some(_) if is_write => {
                self.apply(command, now);
                self.note_shared(&[]);
                self.commit_shared(now).await;
            }
            _ => self.apply(command, now),
        }
    }

    /// A standby's API write, checked against what it shows (the shared
    /// silences, its own notification log's groups) and queued for the
    /// active replica; the reply is what applying it will give.
    fn pass_on(&mut self, command: Command, now: Timestamp) {
        match command {
            Command::AddSilence { silence, reply } => {
                let id = silence.id.clone();
                self.queue(Write::AddSilence(silence), reply, id);
            }
            Command::ExpireSilence { id, reply } => match self.pipeline.silences.expiring(&id, now) {
                None => {
                    let _ = reply.send(Err(CommandError::NotFound(format!("no silence with id {id}"))));
                }
                Some(expired) => self.queue(Write::ExpireSilence { id, at: now }, reply, expired),
            },
            Command::Ack { group_id, matchers, ack, reply } => {
                let group_ids = self.ack_targets(group_id, matchers);
                if group_ids.is_empty() {
                    let _ = reply.send(Err(CommandError::NotFound("no notified alert group matches".into())));
                } else {
                    self.queue(Write::Ack { group_ids: group_ids.clone(), ack }, reply, group_ids);
                }
            }
            other => self.apply(other, now),
        }
    }

    /// Queues `write` in ZooKeeper (without holding up the loop) and
    /// replies `answer` once it is there, else why not.
    fn queue<T: Send + 'static>(
        &self,
        write: Write,
        reply: tokio::sync::oneshot::Sender<Result<T, CommandError>>,
        answer: T,
    ) {
        let Some(r) = &self.replica else { return };
        let request = Request { from: r.me.name.clone(), write };
        let body = match requests::encode(&request) {
            Ok(body) => body,
            Err(e) => {
                let _ = reply.send(Err(CommandError::TooLarge(e.to_string())));
                return;
            }
        };
        let Some(client) = r.election.client() else {
            let why = "not connected to the coordination ensemble, so the active replica cannot be told";
            let _ = reply.send(Err(CommandError::NotPersisted(why.into())));
            return;
        };
        let queue = r.requests.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(QUEUE_TIMEOUT, queue.send(&client, &body)).await {
                Ok(Ok(znode)) => {
                    tracing::info!(%znode, "write queued for the active replica");
                    Ok(answer)
                }
                Ok(Err(e @ SendError::TooLarge { .. })) => Err(CommandError::TooLarge(e.to_string())),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot queue a write for the active replica: refused");
                    Err(CommandError::NotPersisted(e.to_string()))
                }
                Err(_) => {
                    let why = format!("the coordination ensemble did not answer within {QUEUE_TIMEOUT:?}");
                    tracing::error!("cannot queue a write for the active replica: {why}");
                    Err(CommandError::Unconfirmed(why))
                }
            };
            let _ = reply.send(result);
        });
    }

    /// The active replica applies the writes standbys queued, oldest first
    /// ([`requests::MAX_PER_STEP`] a step), as it applies its own API's;
    /// the next commit deletes them with what they changed.
    async fn apply_requests(&mut self, now: Timestamp) {
        let Some(r) = self.replica.as_ref().filter(|r| r.is_active()) else { return };
        let Some(client) = r.election.client() else { return };
        let (queued, all) = match r.requests.oldest(&client).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the writes standbys queued: read again next step");
                return;
            }
        };
        let mut applied: HashSet<String> = self.replica.as_mut().map_or_else(Default::default, |r| {
            let all: HashSet<&String> = all.iter().collect();
            // One deleted by a commit whose answer was lost is gone.
            r.applied_requests.retain(|p| all.contains(p));
            r.applied_requests.iter().cloned().collect()
        });
        let mut done = Vec::new();
        for Queued { path, request } in queued {
            if applied.contains(&path) {
                continue;
            }
            let finished = match request {
                Err(reason) => {
                    tracing::error!(znode = %path, %reason, "a queued write does not decode: deleted");
                    true
                }
                Ok(request) => self.apply_request(request, now),
            };
            if finished {
                applied.insert(path.clone());
                done.push(path);
            }
        }
        if done.is_empty() {
            return;
        }
        if let Some(r) = self.replica.as_mut() {
            r.applied_requests.extend(done);
        }
        // What they changed goes with this commit, as their deletion does.
        self.note_shared(&[]);
    }

    /// Applies one queued write; `false` if it must be tried again (the
    /// state file could not be written).
    fn apply_request(&mut self, Request { from, write }: Request, now: Timestamp) -> bool {
        let applied = match write {
            Write::AddSilence(silence) => self.add_silence(silence, now).map(drop),
            Write::ExpireSilence { id, at } => self.expire_silence(&id, at, now).map(drop),
            Write::Ack { group_ids, ack } => self.ack_groups(group_ids, ack, now).map(drop),
        };
        match applied {
            Ok(()) => {
                tracing::info!(%from, "applied a write sent through another replica");
                true
            }
            Err(e @ CommandError::NotPersisted(_)) => {
                tracing::error!(%from, error = %e, "cannot apply a write sent through another replica: tried again next step");
                false
            }
            Err(e) => {
                tracing::warn!(%from, error = %e, "a write sent through another replica does not apply: dropped");
                true
            }
        }
    }

    /// A standby shows what the active replica decided: the shared silences
    /// replace its own (so its pipeline mutes as the active's does), and the
    /// shared acks are what its API shows. Each is read again only when it
    /// changed (one stat otherwise), at most every [`MIRROR_INTERVAL`].
    async fn mirror_shared(&mut self, now: Timestamp) {
        let Some(r) = self.replica.as_mut().filter(|r| !r.is_active()) else { return };
        if r.mirror.read_at.is_some_and(|t| now >= t && now.since(t) < MIRROR_INTERVAL) {
            return;
        }
        let Some(client) = r.election.client() else { return };
        r.mirror.read_at = Some(now);
        let mut failure = None;
        match r.shared.silences_since(&client, &mut r.mirror.silences_seen).await {
            Ok(Some(silences)) => self.pipeline.silences = Silences::new(silences),
            Ok(None) => {}
            Err(e) => failure = Some(e),
        }
        match r.shared.acks_since(&client, &mut r.mirror.acks_seen).await {
            Ok(Some(acks)) => r.mirror.acks = Some(acks),
            Ok(None) => {}
            Err(e) => failure = Some(e),
        }
        match failure {
            None if std::mem::take(&mut r.mirror.failing) => {
                tracing::info!("reading the shared silences and acks again")
            }
            None => {}
            Some(e) if !std::mem::replace(&mut r.mirror.failing, true) => {
                tracing::warn!(error = %e, "cannot read the shared silences and acks: showing the last read");
            }
            Some(_) => {}
        }
    }

    /// The ack the API shows for a group: on a standby, the shared one.
    pub(super) fn shown_ack(&self, group_id: &str, group: Option<&GroupState>) -> Option<Ack> {
        let mirrored = self.replica.as_ref().filter(|r| !r.is_active()).and_then(|r| r.mirror.acks.as_ref());
        match mirrored {
            Some(acks) => acks.get(group_id).cloned(),
            None => group.and_then(|g| g.ack.clone()),
        }
    }
}
