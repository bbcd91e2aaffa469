//! The runner's side of the API: publishes a snapshot after each step and
//! applies the API's writes (silences, acks), persisting them before it
//! replies.

use super::Runner;
use crate::api::{AlertView, Command, CommandError, GroupView, Snapshot, StatusView};
use crate::model::{Alert, Timestamp};
use crate::pipeline::{Ack, Silence};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How many of the latest deliveries the API shows.
const DELIVERIES_SHOWN: usize = 200;

/// The runner's ends of the API's channels.
pub struct Control {
    pub commands: mpsc::Receiver<Command>,
    /// Alerts posted to the intake, checked by the API (the loop takes it).
    pub intake: Option<crate::intake::IntakeReceiver>,
    pub snapshot: watch::Sender<Arc<Snapshot>>,
    pub ready: Arc<AtomicBool>,
    /// The parts of the status that don't change while running.
    pub status: StatusView,
    /// The pipeline step the last snapshot showed.
    pub published_step: Option<Timestamp>,
    /// When the last snapshot was published and how long it took to build.
    pub last_build: Option<(tokio::time::Instant, Duration)>,
    /// A step the API does not show yet (see [`Self::owed_at`]).
    pub owed: bool,
}

/// A snapshot is built at most once per this many times its build took: a
/// snapshot shows every alert, and under a flood of posts building one per
/// step would be most of the loop's work.
const SNAPSHOT_SPACING: u32 = 4;

impl Control {
    /// Publishes a new snapshot if the pipeline stepped since the last one
    /// (or `force`, after a command: the API shows its write at once). An
    /// unforced one waits until [`Self::owed_at`] when the last took
    /// long to build (many alerts), so steps in quick succession share one.
    pub fn publish(&mut self, runner: &Runner, now: Timestamp, force: bool) {
        if runner.last_pipeline_step.is_none() || (!force && runner.last_pipeline_step == self.published_step) {
            self.owed = false;
            return;
        }
        let started = tokio::time::Instant::now();
        if !force && self.spaced_until().is_some_and(|until| started < until) {
            self.owed = true;
            return;
        }
        self.published_step = runner.last_pipeline_step;
        self.snapshot.send_replace(Arc::new(runner.snapshot(now, &self.status)));
        self.ready.store(true, Ordering::Release);
        self.last_build = Some((started, started.elapsed()));
        self.owed = false;
    }

    /// Until when an unforced snapshot waits: [`SNAPSHOT_SPACING`] times
    /// the last build after it.
    fn spaced_until(&self) -> Option<tokio::time::Instant> {
        self.last_build.map(|(at, took)| at + took * SNAPSHOT_SPACING)
    }

    /// When the snapshot of a step the API does not show yet is due, if
    /// one is owed: the loop publishes it then.
    pub fn owed_at(&self) -> Option<tokio::time::Instant> {
        self.spaced_until().filter(|_| self.owed)
    }
}

impl Runner {
    /// What the API shows at `now`.
    pub fn snapshot(&self, now: Timestamp, status: &StatusView) -> Snapshot {
        // The meta-alerts (NotifierFailing, StateNotPersisted) are listed too.
        let state_alert = self.durable.as_ref().and_then(|d| d.current_alert());
        let own = (self.evaluator.tracker.alerts())
            .chain(self.retired.current())
            .chain(self.failing.current())
            .chain(state_alert)
            .chain(&self.watchdog)
            .map(|a| Arc::new(a.clone()));
        // Posted alerts are shared, not copied: there may be 100,000s.
        let alerts: Vec<Arc<Alert>> = own.chain(self.external.shared().cloned()).collect();
        let refs: Vec<&Alert> = alerts.iter().map(AsRef::as_ref).collect();
        let mutes = self.pipeline.mutes(&refs, now);
        let groups: FxHashMap<&str, &crate::pipeline::GroupState> = self.pipeline.dispatcher.groups_by_id().collect();
        let policy = &self.pipeline.config.policy;
        let group_ids = self.pipeline.dispatcher.group_ids();
        // One shared ack per group, not a copy per alert; found by the
        // address of the group's id (the dispatcher's alerts share it).
        let mut acks: FxHashMap<*const u8, Option<Arc<crate::pipeline::Ack>>> = FxHashMap::default();
        let unmuted = Arc::new(crate::pipeline::Mute::default());
        let alert_views: Vec<AlertView> = (alerts.iter().cloned())
            .zip(mutes)
            .map(|(alert, mute)| {
                let group_id = group_ids.of(&alert).cloned().unwrap_or_else(|| policy.group_key(&alert).id().into());
                let ack = (acks.entry(group_id.as_ptr()))
                    .or_insert_with(|| self.shown_ack(&group_id, groups.get(&*group_id).copied()).map(Arc::new))
                    .clone();
                let mute = if mute == *unmuted { unmuted.clone() } else { Arc::new(mute) };
                AlertView { alert, group_id, mute, ack }
            })
            .collect();
        let mut status = status.clone();
        status.rules = self.evaluator.tracker.rules.len();
        status.rule_errors = self
            .evaluator
            .tracker
            .rules
            .iter()
            .filter_map(|r| match &r.health {
                crate::rule::RuleHealth::Err(e) => Some((r.name.clone(), e.clone())),
                _ => None,
            })
            .collect();
        status.last_evaluation = self.evaluator.tracker.rules.iter().filter_map(|r| r.last_evaluation).max();
        status.outbox_pending = self.pending.len() + self.deliverer.in_flight();
        status.outbox_oldest = self.oldest_pending();
        status.notifiers = self.deliverer.channel_names().map(str::to_string).collect();
        status.notifiers.sort();
        status.state_write_failure = self.durable.as_ref().and_then(|d| d.failure().cloned());
        status.state_unwritten = self.durable.as_ref().map_or(0, |d| d.unwritten());
        status.reload = self.reload_status.clone();
        Snapshot {
            published: true,
            at: now,
            alerts: alert_views,
            silences: self.pipeline.silences.items().to_vec(),
            groups: self
                .pipeline
                .dispatcher
                .groups()
                .map(|g| GroupView {
                    id: g.key.id(),
                    labels: g.key.labels.clone(),
                    tier: g.notified_tier,
                    ack: self.shown_ack(&g.key.id(), Some(g)),
                    last_sent: g.last_sent,
                    escalated: g.escalated,
                    last_reason: g.last_reason,
                    alerts: g.notified_firing.len(),
                })
                .collect(),
            status,
            deliveries: self
                .durable
                .as_ref()
                .and_then(|d| {
                    d.db.deliveries(DELIVERIES_SHOWN)
                        .map_err(|e| tracing::warn!(error = %e, "cannot read deliveries"))
                        .ok()
                })
                .unwrap_or_default(),
            rules: self.rule_views(),
            nodes: self.node_views(),
        }
    }

    /// Each rule's health, named with its group.
    fn rule_views(&self) -> Vec<crate::api::RuleView> {
        let groups = self.evaluator.rules.groups.iter();
        let group_of_each_rule = groups.flat_map(|g| g.rules.iter().map(|_| g.name.as_str()));
        group_of_each_rule
            .zip(&self.evaluator.tracker.rules)
            .map(|(group, r)| crate::api::RuleView {
                group: group.to_string(),
                name: r.name.clone(),
                health: r.health.clone(),
                last_evaluation: r.last_evaluation,
                last_duration: r.last_duration,
                active: r.active.len(),
            })
            .collect()
    }

    /// The store's nodes (groups reporting `up`) with their last
    /// [`crate::api::NODE_POINTS`] values of each [`crate::api::NODE_METRICS`].
    fn node_views(&self) -> Vec<crate::api::NodeView> {
        let store = &self.store;
        let Some(up) = store.lookup_metric("up") else { return Vec::new() };
        let metrics: Vec<_> =
            crate::api::NODE_METRICS.iter().filter_map(|&name| Some((name, store.lookup_metric(name)?))).collect();
        let recent = |w: &crate::store::Window| -> Vec<f64> {
            let values: Vec<f64> = w.points().map(|p| p.value).filter(|v| v.is_finite()).collect();
            values[values.len().saturating_sub(crate::api::NODE_POINTS)..].to_vec()
        };
        let mut nodes: Vec<crate::api::NodeView> = store
            .groups()
            .filter_map(|(_, g)| {
                let up = recent(g.window(up)?).last().is_some_and(|v| *v > 0.0);
                let series = metrics
                    .iter()
                    .filter_map(|&(metric, id)| Some(crate::api::NodeSeries { metric, recent: recent(g.window(id)?) }))
                    .collect();
                Some(crate::api::NodeView {
                    cluster: g.labels.get("cluster").unwrap_or_default().to_string(),
                    instance: g.labels.get("instance").unwrap_or_default().to_string(),
                    role: g.info.get("role").or(g.labels.get("role")).unwrap_or_default().to_string(),
                    up,
                    series,
                })
            })
            .collect();
        nodes.sort_by(|a, b| (&a.cluster, &a.instance).cmp(&(&b.cluster, &b.instance)));
        nodes.truncate(crate::api::NODES_SHOWN);
        nodes
    }

    /// Applies one API write and replies; persisted before the reply.
    pub fn apply(&mut self, command: Command, now: Timestamp) {
        match command {
            Command::AddSilence { silence, reply } => {
                let _ = reply.send(self.add_silence(silence, now));
            }
            Command::ExpireSilence { id, reply } => {
                let _ = reply.send(self.expire_silence(&id, now, now));
            }
            Command::Ack { group_id, matchers, ack, reply } => {
                let ids = self.ack_targets(group_id, matchers);
                let _ = reply.send(self.ack_groups(ids, ack, now));
            }
            Command::ExportSeries { reply } => {
                let _ = reply.send(crate::metrics::export_series(&self.store, now));
            }
            Command::Report { cluster, period, time_zone, reply } => {
                let _ = reply.send(self.report_now(&cluster, period, time_zone, now));
            }
            // Reloads are the run loop's: it owns the sources too.
            Command::Reload { reply } => {
                let _ = reply.send(Err(CommandError::NotFound("no config to reload outside `zkalert run`".into())));
            }
        }
    }

    /// Adds (or replaces, by id) a silence; replies with its id.
    pub(super) fn add_silence(&mut self, silence: Silence, now: Timestamp) -> Result<String, CommandError> {
        self.persist(now, |db| db.put_silence(&silence)).map(|()| {
            tracing::info!(id = %silence.id, matchers = %silence.matchers, by = %silence.created_by, until = %silence.ends_at, "silence added");
            let id = silence.id.clone();
            self.pipeline.silences.upsert(silence);
            id
        })
    }

    /// Expires silence `id` as of `at`; replies with it as it now is.
    pub(super) fn expire_silence(&mut self, id: &str, at: Timestamp, now: Timestamp) -> Result<Silence, CommandError> {
        match self.pipeline.silences.expiring(id, at) {
            None => Err(CommandError::NotFound(format!("no silence with id {id}"))),
            Some(s) => self.persist(now, |db| db.put_silence(&s)).map(|()| {
                tracing::info!(id = %s.id, "silence expired");
                self.pipeline.silences.upsert(s.clone());
                s
            }),
        }
    }

    /// The notified groups an ack names: the one with `group_id`, and those
    /// of the current alerts `matchers` match.
    pub(super) fn ack_targets(
        &self,
        group_id: Option<String>,
        matchers: Option<crate::pipeline::Matchers>,
    ) -> Vec<String> {
        let mut ids: Vec<String> = group_id.into_iter().collect();
        if let Some(m) = matchers {
            let policy = &self.pipeline.config.policy;
            ids.extend(
                self.evaluator.tracker.alerts().filter(|a| m.matches(&a.labels)).map(|a| policy.group_key(a).id()),
            );
        }
        ids.sort();
        ids.dedup();
        let groups: std::collections::HashSet<String> = self.pipeline.dispatcher.groups().map(|g| g.key.id()).collect();
        ids.retain(|id| groups.contains(id));
        ids
    }

    /// Acknowledges these groups (those still in the notification log);
    /// replies with the ids acked, `NotFound` if none.
    pub(super) fn ack_groups(
        &mut self,
        ids: Vec<String>,
        ack: Ack,
        now: Timestamp,
    ) -> Result<Vec<String>, CommandError> {
        let mut acked = Vec::new();
        for id in ids {
            let Some(mut g) = self.pipeline.dispatcher.groups().find(|g| g.key.id() == id).cloned() else {
                continue;
            };
            // Written first: a write that fails leaves the group as it was.
            g.ack = Some(ack.clone());
            self.persist(now, |db| db.record_ack(&g))?;
            self.pipeline.dispatcher.ack(&id, ack.clone());
            tracing::info!(group = %g.key.labels, by = %ack.by, "acknowledged");
            acked.push(id);
        }
        if acked.is_empty() { Err(CommandError::NotFound("no notified alert group matches".into())) } else { Ok(acked) }
    }

    /// Runs an API write on the state file, after what earlier failed
    /// writes left; a failure is the caller's 503.
    fn persist(
        &mut self,
        now: Timestamp,
        write: impl FnOnce(&mut crate::state::StateDb) -> Result<(), crate::state::StateError>,
    ) -> Result<(), CommandError> {
        match &mut self.durable {
            Some(d) => d.write_now(now, write).map_err(|e| {
                tracing::error!(error = %e, "cannot persist an API write: refused");
                CommandError::NotPersisted(e.to_string())
            }),
            None => Ok(()),
        }
    }
}
