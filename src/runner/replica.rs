//! The runner as one of several replicas (`ha:`, docs/ha.md). Every replica
//! polls, evaluates and runs its pipeline (hot standby), but only the
//! active one sends: a standby's messages are dropped, and its own
//! notification log is replaced by the shared one when it takes over. The
//! active replica writes each step's notification state to ZooKeeper
//! (fenced by its election znode) before handing the step's deliveries to
//! the notifiers; a fenced write makes it step down at once.

use super::Runner;
use crate::ha::{Election, Fence, HaError, ReplicaInfo, Role, SharedState, SharedStep};
use crate::model::Timestamp;
use crate::pipeline::{Dispatcher, Message, Silence, Silences};
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
}

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
        Ok(Replica {
            election,
            shared,
            me,
            fence: None,
            unwritten: StepWrite::default(),
            written_silences: HashMap::new(),
            stale: false,
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
        let Some(r) = &mut self.replica else { return };
        let Some(fence) = r.fence.clone() else {
            self.pending.clear();
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
            requests_done: &[],
        };
        match r.shared.commit(&client, &fence, &step).await {
            Ok(_) => {
                r.unwritten = StepWrite::default();
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
