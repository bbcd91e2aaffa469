//! The runner as one of several replicas (`ha:`, docs/ha.md). Every replica
//! polls, evaluates and runs its pipeline (hot standby), but only the
//! active one sends: a standby's messages are dropped, and its own
//! notification log is replaced by the shared one when it takes over. The
//! active replica writes each step's notification state to ZooKeeper
//! (fenced by its election znode) before handing the step's deliveries to
//! the notifiers; a fenced write makes it step down at once.
//!
//! A replica cut off from the coordination ensemble, or a standby that
//! sees no active replica at work, fails open (`on_coordination_loss`):
//! it holds its messages for a while, then sends on its own, with the
//! message ids every replica derives alike, and raises
//! `ZkalertCoordinationLost` or `ZkalertNoActiveReplica`.
//!
//! API writes (silences, acks) sent to a standby are queued in ZooKeeper
//! for the active replica (`ha::requests`), which applies them as its own
//! and deletes them with the step that writes what they changed; a standby
//! shows the shared silences and acks (read again when they change).

use super::Runner;
use crate::api::{Command, CommandError};
use crate::config::{CoordinationLoss, HaConfig};
use crate::ha::requests::{self, Queued, Request, Requests, SendError, Write};
use crate::ha::shared::Seen;
use crate::ha::{Election, Fence, HaError, ReplicaInfo, Role, SharedState, SharedStep};
use crate::model::{Alert, AlertState, Labels, Severity, Timestamp};
use crate::notify::delivery::Lease;
use crate::pipeline::{Ack, Dispatcher, GroupState, Message, Silence, Silences};
use crate::state::{DeliveryMark, StepWrite};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub const COORDINATION_LOST: &str = "ZkalertCoordinationLost";
pub const NO_ACTIVE_REPLICA: &str = "ZkalertNoActiveReplica";

/// Messages a replica cut off holds at most (the oldest go first).
const MAX_HELD: usize = 10_000;

/// How a replica stands toward sending, decided at each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sending {
    /// Active: sends once each step is written to the shared state.
    Shared,
    /// Another replica sends: this one's messages are dropped.
    Standby,
    /// Cut off, not (yet) on its own: messages are held, sent if it goes
    /// on its own, dropped once it is connected again.
    Held,
    /// On its own, without the shared state (fail open).
    Alone,
}

impl Sending {
    /// As the status and `zkalert_replica_sending` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sending::Shared => "shared",
            Sending::Standby => "standby",
            Sending::Held => "held",
            Sending::Alone => "alone",
        }
    }
}

/// What a replica knows of its coordination at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Connected: `Some(true)` active with a fence, `Some(false)` standby;
    /// `None` cut off (disconnected, expired, joining again).
    pub connected: Option<bool>,
    /// How long it has been cut off, and whether it was active (its lease
    /// valid) when it was.
    pub cut_off: Option<(Duration, bool)>,
    /// A standby: how long the active replica's beat has not changed.
    pub beat_silent: Option<Duration>,
}

/// The decision, and the meta-alerts it raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub sending: Sending,
    pub coordination_lost: bool,
    pub no_active_replica: bool,
}

/// Decides how a replica sends (see docs/ha.md, "When coordination is
/// lost"). Cut off for a session timeout, its session has expired for the
/// ensemble too: with `page` it sends on its own; with `hold` the active
/// one keeps sending and the others wait until `hold_for`. A standby that
/// sees no beat from an active replica for [`no_active_after`] sends on
/// its own.
pub fn decide(ha: &HaConfig, s: Standing) -> Decision {
    let timeout = ha.session_timeout;
    let (sending, lost, no_active) = match (s.connected, s.cut_off) {
        (Some(true), _) => (Sending::Shared, false, false),
        (Some(false), _) => match s.beat_silent {
            Some(silent) if silent > no_active_after(timeout) => (Sending::Alone, false, true),
            _ => (Sending::Standby, false, false),
        },
        (None, cut_off) => {
            let (for_, was_active) = cut_off.unwrap_or_default();
            let alone = match ha.on_coordination_loss {
                CoordinationLoss::Page => for_ >= timeout,
                CoordinationLoss::Hold => was_active || for_ >= ha.hold_for,
            };
            (if alone { Sending::Alone } else { Sending::Held }, for_ >= timeout, false)
        }
    };
    Decision { sending, coordination_lost: lost, no_active_replica: no_active }
}

/// How long a standby waits without a beat before it takes the active
/// replica for gone: a failover is one session timeout (the dead one's
/// session) plus its takeover and first step (the beat comes with each
/// step, at least once a second); twice that, and two steps, to spare.
pub fn no_active_after(session_timeout: Duration) -> Duration {
    session_timeout * 2 + Duration::from_secs(2)
}

/// A meta-alert raised while `on`, resolved (and kept a while, so its
/// resolution is told) once not.
#[derive(Debug, Default)]
struct MetaAlert(Option<Alert>);

impl MetaAlert {
    fn set(&mut self, on: bool, now: Timestamp, make: impl FnOnce() -> Alert) {
        match (&mut self.0, on) {
            (Some(a), true) if a.state == AlertState::Firing => {}
            (slot, true) => *slot = Some(make()),
            (Some(a), false) if a.state == AlertState::Firing => a.resolve(now),
            (slot, false) => {
                if slot.as_ref().and_then(|a| a.resolved_at).is_some_and(|t| now.since(t) >= super::META_RESOLVED_KEPT)
                {
                    *slot = None;
                }
            }
        }
    }
}

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
    config: HaConfig,
    sending: Sending,
    /// Since when it is cut off, and whether it was active then.
    cut_off: Option<(Timestamp, bool)>,
    /// Sends are allowed until then (renewed by each fenced commit); after
    /// stepping down, whether it was active lately.
    lease_until: Option<tokio::time::Instant>,
    /// The active replica's beat version as last read, and when it changed.
    beat: Option<(Option<i32>, Timestamp)>,
    /// Who wrote the beat last: the replica actually sending.
    beat_writer: Option<ReplicaInfo>,
    /// Sent on its own since it last held the shared state: its own
    /// notification log is newer than the shared one.
    sent_alone: bool,
    /// Deliveries held while cut off, or decided as a standby since the
    /// active replica's last beat: sent if it goes on its own.
    held: Vec<(Arc<Message>, String)>,
    coordination_lost: MetaAlert,
    no_active_replica: MetaAlert,
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
    /// `shared` (active), `standby`, `held` (cut off, holding its
    /// messages) or `alone` (sending on its own: coordination lost, or no
    /// active replica).
    pub sending: Sending,
    /// Since when it cannot reach the coordination ensemble.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_off_since: Option<Timestamp>,
    /// Messages held while cut off.
    pub held: usize,
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
            config: config.clone(),
            sending: Sending::Standby,
            cut_off: None,
            lease_until: None,
            beat: None,
            beat_writer: None,
            sent_alone: false,
            held: Vec::new(),
            coordination_lost: MetaAlert::default(),
            no_active_replica: MetaAlert::default(),
            requests,
            applied_requests: Vec::new(),
            mirror: Mirror::default(),
        })
    }

    /// How it sends, as of the last step.
    pub fn sending(&self) -> Sending {
        self.sending
    }

    /// The meta-alerts it raises (`ZkalertCoordinationLost`,
    /// `ZkalertNoActiveReplica`), for the pipeline.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.coordination_lost.0.iter().chain(&self.no_active_replica.0)
    }

    /// The lease a fenced commit begun at `start` gives: the session
    /// cannot have expired within two thirds of its timeout from then.
    fn renew_lease(&mut self, start: tokio::time::Instant) -> Lease {
        let until = start + self.config.session_timeout * 2 / 3;
        self.lease_until = Some(until);
        Lease::Until(until)
    }

    fn lease_valid(&self) -> bool {
        self.lease_until.is_some_and(|t| tokio::time::Instant::now() < t)
    }

    /// Reads the active replica's beat (a standby's check that someone sends).
    async fn read_beat(&mut self, now: Timestamp) {
        let Some(client) = self.election.client() else { return };
        match self.shared.beat(&client).await {
            Ok(beat) => {
                let version = beat.as_ref().map(|(v, _)| *v);
                if self.beat.is_none_or(|(seen, _)| seen != version) {
                    self.beat = Some((version, now));
                    // The active replica committed a step since: what this
                    // standby decided before, it decided and sends too.
                    self.held.clear();
                }
                self.beat_writer = beat.and_then(|(_, writer)| writer);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the active replica's beat"),
        }
    }

    /// What it knows of its coordination at `now`.
    fn standing(&mut self, now: Timestamp) -> Standing {
        let role = self.election.role().borrow().clone();
        let connected = match role {
            Role::Active => Some(true),
            Role::Standby { .. } => Some(false),
            Role::Joining | Role::Disconnected | Role::Expired => None,
        };
        if connected.is_some() {
            self.cut_off = None;
        } else if self.cut_off.is_none() {
            // Its last fenced write is recent: it was the active replica
            // (through a flap between coordination servers too, when its
            // fence was already dropped), and not paused past its session.
            let was_active = self.lease_valid();
            self.cut_off = Some((now, was_active));
        }
        if connected != Some(false) {
            self.beat = None;
            self.beat_writer = None;
        }
        Standing {
            connected,
            cut_off: self.cut_off.map(|(since, was_active)| (now.since(since), was_active)),
            beat_silent: self.beat.map(|(_, at)| now.since(at)),
        }
    }

    fn raise(&mut self, d: Decision, now: Timestamp) {
        let (name, root) = (self.me.name.clone(), self.config.root.clone());
        self.coordination_lost.set(d.coordination_lost, now, || {
            let summary = format!(
                "zkalert replica {name} cannot reach its coordination ensemble ({}); it {}",
                self.config.zookeeper.join(","),
                match d.sending {
                    Sending::Alone => "pages on its own",
                    _ => "holds its pages",
                }
            );
            meta_alert(COORDINATION_LOST, &root, "zkalert/coordination-lost", summary, now)
        });
        self.no_active_replica.set(d.no_active_replica, now, || {
            let summary = format!("no zkalert replica is active under {root}; replica {name} pages on its own");
            meta_alert(NO_ACTIVE_REPLICA, &root, "zkalert/no-active-replica", summary, now)
        });
    }

    /// Whether this replica sends (it holds a fence).
    pub fn is_active(&self) -> bool {
        self.fence.is_some()
    }

    pub fn status(&self) -> ReplicaStatus {
        let role = self.election.role().borrow().clone();
        let active = match &role {
            Role::Active => Some(self.me.clone()),
            // The one writing the beat (the lowest znode's owner as of the
            // last look, before any beat): a standby is woken only by its
            // predecessor, so the role's may be stale.
            Role::Standby { active } => self.beat_writer.clone().or_else(|| active.clone()),
            _ => None,
        };
        let session = self.election.client().map_or_else(|| "none".to_string(), |c| c.state().to_string());
        ReplicaStatus {
            name: self.me.name.clone(),
            role: role.as_str(),
            active,
            session,
            sending: self.sending,
            cut_off_since: self.cut_off.map(|(since, _)| since),
            held: self.held.len(),
        }
    }
}

/// One of a replica's meta-alerts: P1, labelled with the deployment's root
/// (not the replica: every replica raising it sends the same message).
fn meta_alert(name: &str, root: &str, runbook: &str, summary: String, now: Timestamp) -> Alert {
    let labels = Labels::from_pairs([("alertname", name), ("severity", Severity::P1.as_str()), ("ha_root", root)]);
    let mut alert = Alert::meta(labels, Severity::P1, runbook, now);
    alert.annotations = crate::model::Annotations::from_pairs([("summary", summary)]);
    alert
}

impl Runner {
    /// Whether this runner's messages are sent: it is alone, the active
    /// replica, or a replica sending on its own.
    pub(super) fn sends(&self) -> bool {
        self.replica.as_ref().is_none_or(|r| r.is_active() || r.sending == Sending::Alone)
    }

    /// Whether its deliveries wait for the shared state to be written.
    pub(super) fn shares(&self) -> bool {
        self.replica.as_ref().is_some_and(Replica::is_active)
    }

    /// Keeps a step's messages of a replica that does not send, to send if
    /// it goes on its own: cut off, or a standby (until the active replica's
    /// next beat shows it committed its steps).
    pub(super) fn hold(&mut self, messages: &[Arc<Message>]) {
        let Some(r) = self.replica.as_mut().filter(|r| matches!(r.sending, Sending::Held | Sending::Standby)) else {
            return;
        };
        r.held.extend(messages.iter().flat_map(|m| m.channels.iter().map(|c| (m.clone(), c.clone()))));
        if r.held.len() > MAX_HELD {
            let dropped = r.held.len() - MAX_HELD;
            r.held.drain(..dropped);
            tracing::error!(dropped, "held deliveries over {MAX_HELD}, the oldest dropped");
        }
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
    /// when it no longer is (or holds another session's fence); then
    /// decides how it sends (cut off or with no active replica: fail open).
    pub async fn follow_role(&mut self, now: Timestamp) {
        let Some(r) = &mut self.replica else { return };
        // Before stepping down: whether it was active when cut off.
        let mut standing = r.standing(now);
        let fence = r.election.fence();
        self.metrics.set_replica_role(r.election.role().borrow().as_str());
        if r.fence.is_some() && r.fence != fence {
            self.step_down("no longer the active replica");
        }
        if fence.is_some() && self.replica.as_ref().is_some_and(|r| r.fence.is_none()) {
            self.take_over().await;
        }
        let Some(r) = &mut self.replica else { return };
        let before = r.sending;
        if standing.connected == Some(false) {
            r.read_beat(now).await;
            standing.beat_silent = r.beat.map(|(_, at)| now.since(at));
        }
        // Active but not yet taken over (the shared state unreadable): hold.
        if standing.connected == Some(true) && r.fence.is_none() {
            standing.connected = None;
        }
        let decision = decide(&r.config, standing);
        r.raise(decision, now);
        r.sending = decision.sending;
        if decision.sending != before {
            self.sending_changed(before, now);
        }
        if let Some(r) = &self.replica {
            self.metrics.set_replica_sending(r.sending.as_str(), r.held.len());
        }
    }

    /// Acts on a change of how this replica sends.
    fn sending_changed(&mut self, before: Sending, now: Timestamp) {
        let Some(r) = &mut self.replica else { return };
        let name = r.me.name.clone();
        match r.sending {
            Sending::Alone => {
                r.sent_alone = true;
                let held = std::mem::take(&mut r.held);
                tracing::warn!(replica = %name, held = held.len(), from = ?before, "sending on its own (fail open): coordination lost or no active replica");
                self.pending.extend(held);
                self.deliverer.set_lease(Lease::Open);
                self.liveness.set_active(true);
                self.submit_pending(now);
            }
            Sending::Standby => {
                if before == Sending::Alone {
                    tracing::warn!(replica = %name, "another replica is active again: sending nothing more");
                }
                // The active replica's shared log is the one to resume from.
                r.sent_alone = false;
                r.held.clear();
                self.pending.clear();
                self.delivering.clear();
                self.deliverer.abort_all();
                self.deliverer.set_lease(Lease::Closed);
                self.liveness.set_active(false);
            }
            Sending::Held => {
                tracing::warn!(replica = %name, from = ?before, "cut off from the coordination ensemble: holding pages");
                self.deliverer.set_lease(Lease::Closed);
                self.liveness.set_active(false);
            }
            Sending::Shared => {}
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
            // Alone: sent already. Held: kept in `held`. Standby: dropped.
            if r.sending == Sending::Standby {
                self.pending.clear();
            }
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
        let beat = serde_json::json!({"name": r.me.name, "advertise_url": r.me.advertise_url, "at": now}).to_string();
        let step = SharedStep {
            step: Some(&r.unwritten),
            silences_put: &silences_put,
            silences_deleted: &silences_deleted,
            requests_done: &r.applied_requests,
            beat: Some(beat.as_bytes()),
        };
        let started = tokio::time::Instant::now();
        match r.shared.commit(&client, &fence, &step).await {
            Ok(_) => {
                let lease = r.renew_lease(started);
                self.deliverer.set_lease(lease);
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

    /// Sends nothing more: stops the deliveries being tried and the
    /// heartbeat. Its pending and unfinished deliveries are held (sent if
    /// it goes on its own, cut off; dropped once another replica is active,
    /// which sends them from the shared state or decides them again).
    fn step_down(&mut self, why: &str) {
        let Some(r) = &mut self.replica else { return };
        if r.fence.take().is_some() {
            tracing::warn!(replica = %r.me.name, why, "stepping down: sending nothing more");
        }
        r.unwritten = StepWrite::default();
        r.applied_requests.clear();
        r.mirror = Mirror::default();
        // `lease_until` stays: whether it was active when cut off (`hold`).
        self.deliverer.set_lease(Lease::Closed);
        let unfinished = self.delivering.drain().map(|((_, channel), (_, m))| (m, channel));
        r.held.extend(unfinished.chain(self.pending.drain(..)));
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
        r.held.clear();
        let shared_pending = shared.pending.into_iter().map(|e| (Arc::new(e.message), e.channel));
        if std::mem::take(&mut r.sent_alone) {
            // It paged on its own since the shared state was last written:
            // its log is the newer one. It writes it whole, keeps its own
            // deliveries and adds the shared ones (sent with their keys).
            tracing::warn!(replica = %r.me.name, "taking over after sending on its own: its notification log replaces the shared one");
            let mine: HashSet<String> = self.pipeline.dispatcher.groups().map(|g| g.key.id()).collect();
            r.unwritten.groups.upserted = self.pipeline.dispatcher.groups().cloned().collect();
            r.unwritten.groups.removed =
                shared.groups.iter().map(|g| g.key.id()).filter(|id| !mine.contains(id)).collect();
            for s in shared.silences {
                if !self.pipeline.silences.items().iter().any(|x| x.id == s.id) {
                    self.pipeline.silences.upsert(s);
                }
            }
            // Its own deliveries go on (and into the shared outbox, until done).
            let mut unfinished: HashMap<&str, &Arc<Message>> = HashMap::new();
            for (_, m) in self.delivering.values() {
                unfinished.insert(&m.id, m);
            }
            r.unwritten.outbox.extend(unfinished.into_values().cloned());
            let delivering: HashSet<(String, String)> = self.delivering.keys().cloned().collect();
            self.pending.extend(shared_pending.filter(|(m, c)| !delivering.contains(&(m.id.clone(), c.clone()))));
        } else {
            let mut dispatcher = Dispatcher::new(self.pipeline.dispatcher.policy.clone());
            dispatcher.restore(shared.groups);
            self.pipeline.dispatcher = dispatcher;
            self.pipeline.silences = Silences::new(shared.silences);
            self.pending = shared_pending.collect();
        }
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
            // On its own (coordination lost, or no active replica): nobody
            // would apply a queued write, so it applies it itself.
            Some(r) if r.sending == Sending::Alone => self.apply(command, now),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ha(mode: CoordinationLoss) -> HaConfig {
        HaConfig {
            zookeeper: vec!["c1:2181".into()],
            root: "/zkalert/t".into(),
            session_timeout: Duration::from_secs(10),
            replica: "a".into(),
            advertise_url: None,
            on_coordination_loss: mode,
            hold_for: Duration::from_secs(60),
        }
    }

    fn cut_off(secs: u64, was_active: bool) -> Standing {
        Standing { connected: None, cut_off: Some((Duration::from_secs(secs), was_active)), beat_silent: None }
    }

    fn decision(sending: Sending, coordination_lost: bool, no_active_replica: bool) -> Decision {
        Decision { sending, coordination_lost, no_active_replica }
    }

    #[test]
    fn page_holds_for_a_session_timeout_then_every_replica_sends_on_its_own() {
        let page = ha(CoordinationLoss::Page);
        for was_active in [true, false] {
            assert_eq!(decide(&page, cut_off(0, was_active)), decision(Sending::Held, false, false));
            assert_eq!(decide(&page, cut_off(9, was_active)), decision(Sending::Held, false, false));
            assert_eq!(decide(&page, cut_off(10, was_active)), decision(Sending::Alone, true, false));
        }
    }

    #[test]
    fn hold_keeps_the_last_role_until_hold_for_then_every_replica_sends() {
        let hold = ha(CoordinationLoss::Hold);
        // The active one keeps sending; it raises the alert once its session is surely gone.
        assert_eq!(decide(&hold, cut_off(0, true)), decision(Sending::Alone, false, false));
        assert_eq!(decide(&hold, cut_off(10, true)), decision(Sending::Alone, true, false));
        // A standby (or an active one whose lease had run out: paused) waits for hold_for.
        assert_eq!(decide(&hold, cut_off(10, false)), decision(Sending::Held, true, false));
        assert_eq!(decide(&hold, cut_off(59, false)), decision(Sending::Held, true, false));
        assert_eq!(decide(&hold, cut_off(60, false)), decision(Sending::Alone, true, false));
    }

    #[test]
    fn connected_replicas_share_or_stand_by_unless_no_active_replica_beats_for_two_session_timeouts_and_two_steps() {
        for mode in [CoordinationLoss::Page, CoordinationLoss::Hold] {
            let c = ha(mode);
            let active = Standing { connected: Some(true), cut_off: None, beat_silent: None };
            assert_eq!(decide(&c, active), decision(Sending::Shared, false, false));
            let standby = |silent: Option<u64>| Standing {
                connected: Some(false),
                cut_off: None,
                beat_silent: silent.map(Duration::from_secs),
            };
            assert_eq!(decide(&c, standby(None)), decision(Sending::Standby, false, false));
            // A failover: the dead one's session timeout, then the takeover.
            assert_eq!(decide(&c, standby(Some(12))), decision(Sending::Standby, false, false));
            assert_eq!(decide(&c, standby(Some(22))), decision(Sending::Standby, false, false));
            assert_eq!(decide(&c, standby(Some(23))), decision(Sending::Alone, false, true));
        }
    }

    #[test]
    fn a_meta_alert_fires_once_resolves_and_is_kept_until_its_resolution_was_told() {
        let mut m = MetaAlert::default();
        let t = |s: i64| Timestamp::from_millis(s * 1000);
        let make = |at| meta_alert(COORDINATION_LOST, "/z", "zkalert/coordination-lost", "s".into(), at);
        m.set(true, t(0), || make(t(0)));
        m.set(true, t(5), || make(t(5)));
        let a = m.0.clone().expect("fired");
        assert_eq!((a.state, a.active_at, a.labels.get("ha_root")), (AlertState::Firing, t(0), Some("/z")));
        m.set(false, t(7), || make(t(7)));
        assert_eq!(m.0.as_ref().map(|a| (a.state, a.resolved_at)), Some((AlertState::Resolved, Some(t(7)))));
        m.set(false, t(7 + 14 * 60), || make(t(0)));
        assert!(m.0.is_some(), "dropped before its resolution could be told");
        m.set(false, t(7 + 15 * 60), || make(t(0)));
        assert!(m.0.is_none());
        m.set(true, t(2000), || make(t(2000)));
        assert_eq!(m.0.as_ref().map(|a| a.active_at), Some(t(2000)));
    }
}
