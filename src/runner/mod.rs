//! `zkalert run`: the main loop. Sources poll on their own schedules and
//! send batches of samples; the loop ingests them into the store, evaluates
//! rules, runs the notification pipeline on the tracker's alerts, persists
//! the step and delivers its messages to the notifiers, until shutdown. The
//! API's writes arrive here as commands, so this loop alone owns the state.

pub mod channels;
mod control;
pub mod daily;
mod durable;
pub mod heartbeat;
mod leaders;
mod reload;
mod replica;
mod sending;

pub use control::Control;
pub use durable::{Durable, STATE_NOT_PERSISTED, WriteFailure};
pub use reload::{Load, Loaded, Reconfig, ReloadStatus, Reloading, Retired, Runbooks, SourceSpec, report};
pub use replica::{Replica, ReplicaStatus, Sending, no_active_after};
pub use sending::NOTIFIER_FAILING;

use crate::clock::Clock;
use crate::model::{Alert, Timestamp};
use crate::notify::delivery::{Deliverer, Report};
use crate::pipeline::{Message, Pipeline, PipelineConfig};
use crate::rule::{AlertEvent, Evaluator, RuleSet};
use crate::source::PollBatch;
use crate::store::{GroupId, MetricId, SeriesStore};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The engine's state between batches.
pub struct Runner {
    pub store: Arc<SeriesStore>,
    pub evaluator: Evaluator,
    pub pipeline: Pipeline,
    pub deliverer: Deliverer,
    /// Where the deliverer's reports arrive, until the run loop takes it.
    pub reports: Option<mpsc::UnboundedReceiver<Report>>,
    /// The SQLite state, when the runner persists (`zkalert run` does).
    pub durable: Option<Durable>,
    /// Deliveries restored from the outbox, handed to the deliverer at the
    /// next step.
    pub pending: Vec<(Arc<Message>, String)>,
    /// Channels whose last delivery gave up: the `NotifierFailing` alerts.
    pub failing: sending::FailingChannels,
    /// Alerts of rules a reload removed, until their resolution is told.
    pub retired: Retired,
    /// How the config in force was loaded, and the last reload's outcome.
    pub reload_status: ReloadStatus,
    last_compaction: Option<Timestamp>,
    last_pipeline_step: Option<Timestamp>,
    /// See [`Runner::pipeline_wake`].
    pipeline_wake: Option<Timestamp>,
    /// The clusters whose polls landed since the last evaluation on
    /// arrival, and when that was.
    fresh: crate::rule::ClusterScope,
    last_fresh_evaluation: Option<Timestamp>,
    /// Per source, the series its last poll reported (sorted).
    reported: std::collections::HashMap<usize, Vec<(GroupId, MetricId)>>,
    /// zkalert's own metrics (`GET /metrics`), updated as things happen.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// (message id, channel) → when it was written to the outbox and the
    /// message, for each delivery the deliverer is trying (the outbox's
    /// oldest pending age; what a replica cut off holds).
    delivering: std::collections::HashMap<(String, String), (Timestamp, Arc<Message>)>,
    /// The evaluation time whose rule groups `metrics` last counted.
    rule_groups_counted_at: Option<Timestamp>,
    /// When the loop last completed a step, for the heartbeat.
    pub liveness: Arc<heartbeat::Liveness>,
    /// The `ZkalertWatchdog` alert while it fires.
    watchdog: Option<Alert>,
    /// With `ha:` configured: this replica's election and shared state.
    /// Only the active replica sends.
    pub replica: Option<Replica>,
    /// Alerts posted to the intake (Prometheus'), beside the rules' own.
    pub external: crate::intake::ExternalAlerts,
    /// A post changed what the pipeline tells since its last step.
    external_changed: bool,
    /// Who leads each cluster, for the report's elections.
    leaders: leaders::Leaders,
    /// Scheduled reports (`reports` in the config).
    pub daily: daily::DailyReports,
}

/// Dropping series that stopped reporting walks the whole store: once a
/// minute is plenty (windows trim themselves as samples arrive).
const COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

/// Expired silences stay listed this long (Alertmanager's default).
pub const SILENCE_RETENTION: Duration = Duration::from_secs(120 * 3600);

/// Delivered messages stay in the outbox table, as history, this long.
pub const DELIVERY_HISTORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The pipeline runs after every evaluation that changed an alert, when
/// one of its timers is due (group wait, group interval, repeats,
/// escalation), and at least this often.
const PIPELINE_TICK: Duration = Duration::from_secs(1);

/// Steps for the pipeline's timers are at least this far apart (a timer
/// due again at once must not spin the loop).
const PIPELINE_TIMER_GAP: Duration = Duration::from_millis(25);

/// zkalert's own resolved alerts (NotifierFailing, StateNotPersisted,
/// ZkalertCoordinationLost, ZkalertNoActiveReplica) are kept this long, so
/// their resolution is told.
const META_RESOLVED_KEPT: Duration = Duration::from_secs(15 * 60);

/// At most this many posts to the intake are taken in one turn of the loop
/// (the queue itself is bounded in alerts: `intake::MAX_QUEUED_ALERTS`).
const INTAKE_POSTS_PER_TURN: usize = 256;

/// Evaluations for fresh (not woken) polls are at least this far apart.
const FRESH_EVALUATION_GAP: Duration = Duration::from_secs(1);

/// How far back the console's node sparklines reach.
const CONSOLE_HISTORY: Duration = Duration::from_secs(300);

/// The rules' retention, with the console's node metrics that the rules
/// read kept for [`CONSOLE_HISTORY`] (else only their latest sample would
/// be): a sparkline per node and metric, at most the store's points; and
/// the latest sample of each metric the daily report shows.
pub fn store_retention(rules: &crate::store::Retention) -> crate::store::Retention {
    let mut retention = rules.clone();
    // The report's metrics: their latest sample, whether rules read them or not.
    retention.add_reads(crate::report::gather::METRICS.map(String::from));
    let needs: Vec<crate::store::RangeNeed> = crate::api::NODE_METRICS
        .iter()
        .filter(|m| rules.keeps(m))
        .map(|m| crate::store::RangeNeed { metric: Some(m.to_string()), range: Some(CONSOLE_HISTORY) })
        .collect();
    retention.add(&needs);
    retention
}

impl Runner {
    pub fn new(
        rules: Arc<RuleSet>,
        evaluation_interval: Duration,
        pipeline: PipelineConfig,
        channels: Vec<crate::notify::delivery::Channel>,
    ) -> Self {
        let store = Arc::new(SeriesStore::for_rules(&store_retention(&rules.retention)));
        let deadlines = pipeline.policy.tiers.each_ref().map(|t| t.delivery_deadline);
        let (deliverer, reports) = sending::deliverer(channels, deadlines);
        Self {
            store,
            evaluator: Evaluator::new(rules, evaluation_interval),
            pipeline: Pipeline::new(pipeline),
            deliverer,
            reports: Some(reports),
            durable: None,
            pending: Vec::new(),
            failing: Default::default(),
            retired: Default::default(),
            reload_status: Default::default(),
            last_compaction: None,
            last_pipeline_step: None,
            pipeline_wake: None,
            fresh: Default::default(),
            last_fresh_evaluation: None,
            reported: Default::default(),
            metrics: Default::default(),
            delivering: Default::default(),
            rule_groups_counted_at: None,
            liveness: Default::default(),
            watchdog: None,
            replica: None,
            external: Default::default(),
            external_changed: false,
            leaders: Default::default(),
            daily: Default::default(),
        }
    }

    /// A poll's batch landed: stored, and the rules see it at the next
    /// evaluation (at once, in `run`) rather than at their groups' next
    /// interval slot. A poll a held session woke (`urgent`: a node dropped)
    /// is evaluated at once, everything; other polls at most once per
    /// [`FRESH_EVALUATION_GAP`], over the clusters they carried only (a
    /// thousand nodes in many sources would otherwise cost a whole
    /// evaluation per ensemble). `for` and windows still count sample time;
    /// groups are evaluated whole at least every interval.
    pub fn on_batch(&mut self, source: usize, batch: PollBatch, urgent: bool) {
        if urgent {
            self.evaluator.due_now();
        } else {
            for s in &batch.series {
                self.fresh.insert(s.labels.get("cluster"));
            }
        }
        if let Some(durable) = &mut self.durable {
            for change in self.leaders.observe(&batch) {
                tracing::info!(cluster = %change.cluster, leader = change.leader.as_deref().unwrap_or("none"), "leader");
                durable.add_leader(change);
            }
        }
        self.ingest(source, batch);
    }

    /// Takes alerts posted to the intake; the pipeline tells what changed
    /// at the next step.
    pub fn receive_external(&mut self, batch: crate::intake::IntakeBatch, now: Timestamp) {
        let dropped = self.external.dropped;
        self.external_changed |= self.external.receive(batch, now);
        if let Some(n) = self.external.dropped.checked_sub(dropped).filter(|n| *n > 0) {
            tracing::warn!(
                refused = n,
                held = crate::intake::MAX_HELD,
                "posted alerts refused: as many posted alerts as zkalert holds are held"
            );
            self.metrics.observe_intake(0, 0, n as usize);
        }
    }

    /// The clusters to evaluate on arrival now: those that polls brought
    /// since the last such evaluation, once that is [`FRESH_EVALUATION_GAP`]
    /// old.
    fn fresh_clusters(&mut self, now: Timestamp) -> Option<crate::rule::ClusterScope> {
        if self.fresh.is_empty() || self.last_fresh_evaluation.is_some_and(|t| now.since(t) < FRESH_EVALUATION_GAP) {
            return None;
        }
        self.last_fresh_evaluation = Some(now);
        Some(std::mem::take(&mut self.fresh))
    }

    /// Ingests one poll of one source. Like a Prometheus scrape, a poll is
    /// the source's whole state: series it reported last time and not now
    /// get a stale marker, so a dead node's last values vanish at once
    /// instead of lingering for the lookback. Other sources' series in the
    /// same group (a host agent's beside the 4lw poller's) are untouched.
    pub fn ingest(&mut self, source: usize, batch: PollBatch) {
        let store = Arc::make_mut(&mut self.store);
        let mut now_reported: Vec<(GroupId, MetricId)> = Vec::new();
        let mut ts = None;
        for s in batch.series {
            let group = store.group_id(&s.labels);
            ts = ts.max(Some(s.timestamp));
            for (name, value) in &s.values {
                if !store.keeps(name) {
                    continue;
                }
                let metric = store.metric_id(name);
                store.append(group, metric, s.timestamp, *value);
                now_reported.push((group, metric));
            }
            if let Some(info) = s.info {
                store.set_info(group, info);
            }
        }
        now_reported.sort_unstable();
        let previous = self.reported.insert(source, now_reported);
        if let (Some(previous), Some(ts)) = (previous, ts) {
            let current = &self.reported[&source];
            for (group, metric) in previous {
                if current.binary_search(&(group, metric)).is_err() {
                    store.append(group, metric, ts, crate::model::STALE_NAN);
                }
            }
        }
    }

    /// Forgets a source that a reload removed: the series its last poll
    /// reported go stale at `now`.
    pub fn forget_source(&mut self, source: usize, now: Timestamp) {
        let store = Arc::make_mut(&mut self.store);
        for (group, metric) in self.reported.remove(&source).unwrap_or_default() {
            store.append(group, metric, now, crate::model::STALE_NAN);
        }
    }

    /// Evaluates the rule groups that are due, then (when alerts changed or
    /// the pipeline's tick passed) runs the pipeline, persists the step and
    /// delivers. Returns the messages the pipeline produced.
    pub fn evaluate(&mut self, clock: &dyn Clock) -> Vec<Arc<Message>> {
        let now = clock.now();
        if self.last_compaction.is_none_or(|t| now.since(t) >= COMPACTION_INTERVAL) {
            Arc::make_mut(&mut self.store).compact(now);
            self.last_compaction = Some(now);
            self.housekeeping(now);
        }
        let fresh = self.fresh_clusters(now);
        let events = self.evaluator.evaluate_due_and_fresh(&self.store, now, fresh.as_ref());
        if self.rule_groups_counted_at != Some(now) {
            // A group evaluated at `now` is not due again at `now`.
            self.rule_groups_counted_at = Some(now);
            self.metrics.observe_rule_groups(&self.evaluator.rules, &self.evaluator.tracker.rules, now);
        }
        log_events(&events);
        for state in &self.evaluator.tracker.rules {
            if let crate::rule::RuleHealth::Err(e) = &state.health {
                tracing::warn!(rule = %state.name, error = %e, "rule evaluation failed");
            }
        }
        let external = std::mem::take(&mut self.external_changed) | self.external.expire(now);
        let changed = external || events.iter().any(|e| !matches!(e, AlertEvent::Pending(_)));
        let timer_due = self.pipeline_wake.is_some_and(|t| t <= now);
        if !changed && !timer_due && self.last_pipeline_step.is_some_and(|t| now.since(t) < PIPELINE_TICK) {
            return Vec::new();
        }
        self.step_pipeline(now)
    }

    /// When the pipeline's next timer (a group wait ending, a group
    /// interval, a repeat, an escalation) wants a step, at least
    /// [`PIPELINE_TIMER_GAP`] after the last one; `None` before the first
    /// step or when nothing is due until the alerts change. Set by each
    /// step: only a step changes the timers.
    pub fn pipeline_wake(&self) -> Option<Timestamp> {
        self.pipeline_wake
    }

    /// Forgets what is old: silences expired for longer than
    /// [`SILENCE_RETENTION`], delivery history older than
    /// [`DELIVERY_HISTORY`], the report's alert spans and leader changes
    /// older than [`crate::state::HISTORY`].
    fn housekeeping(&mut self, now: Timestamp) {
        let dropped = self.pipeline.silences.gc(now, SILENCE_RETENTION);
        if let Some(d) = &mut self.durable {
            for id in &dropped {
                if let Err(e) = d.db.delete_silence(id) {
                    tracing::error!(error = %e, "cannot delete an old silence");
                }
            }
            if let Err(e) = d.db.prune_delivered(now - DELIVERY_HISTORY) {
                tracing::error!(error = %e, "cannot prune the delivery history");
            }
            if let Err(e) = d.db.prune_history(now - crate::state::HISTORY) {
                tracing::error!(error = %e, "cannot prune the report's history");
            }
        }
    }

    /// Runs the pipeline at `now`, persists and delivers.
    pub fn step_pipeline(&mut self, now: Timestamp) -> Vec<Arc<Message>> {
        self.last_pipeline_step = Some(now);
        let failing = self.failing.alerts(now);
        let state_alert = self.durable.as_mut().and_then(|d| d.alert(now).cloned());
        let retired = self.retired.alerts(now);
        // Only the active replica raises the watchdog (its pipeline alone sends).
        let watchdog = self.pipeline.config.watchdog && self.liveness.is_active();
        self.watchdog = watchdog.then(|| self.watchdog.take().unwrap_or_else(|| heartbeat::watchdog_alert(now)));
        let replica_alerts = self.replica.iter().flat_map(Replica::alerts);
        let alerts: Vec<&Alert> = (self.evaluator.tracker.alerts())
            .chain(retired)
            .chain(&failing)
            .chain(&state_alert)
            .chain(&self.watchdog)
            .chain(replica_alerts)
            .chain(self.external.alerts())
            .collect();
        let started = std::time::Instant::now();
        let messages: Vec<Arc<Message>> = self.pipeline.step(&alerts, now).into_iter().map(Arc::new).collect();
        self.pipeline_wake = self.pipeline.next_due(now).map(|t| t.max(now + PIPELINE_TIMER_GAP));
        self.metrics.observe_pipeline_step(started.elapsed());
        // A standby's messages are not sent, nor written to its outbox: the
        // active replica sends, and its shared state replaces this one's
        // notification log when this replica takes over. It holds them
        // in case it goes on its own (`Replica::hold`).
        let sends = self.sends();
        if sends {
            self.note_shared(&messages);
        } else {
            self.hold(&messages);
            self.pending.clear();
        }
        for m in messages.iter().filter(|_| sends) {
            tracing::info!(
                tier = %m.tier, reason = %m.reason, group = %m.group, channels = %m.channels.join(","), firing = m.firing.len(),
                new = m.new.len(), resolved = m.resolved.len(), escalation = m.escalation, digest = m.digest,
                "notifying"
            );
            self.pending.extend(m.channels.iter().map(|c| (m.clone(), c.clone())));
        }
        // Alone, messages go to the notifiers as the step is written, so
        // the write's fsync is not in a page's way: a crash before the write
        // ends re-sends them after the restart (the notification log does
        // not have them), it never loses them. The active replica sends once
        // the step is in the shared state (`commit_shared`).
        let alone = sends && !self.shares();
        if alone {
            self.hand_off_pending();
        }
        if let Some(durable) = &mut self.durable {
            // A failure (logged by `Durable`) holds no page back: holding
            // pages until the disk has room would silence the pager in an
            // outage (this one included). The step's changes stay unwritten
            // and go with the next write; the deliveries' outcomes are
            // recorded with them, so once a write succeeds nothing sent now
            // is sent again after a restart.
            let started = std::time::Instant::now();
            let to_send: &[Arc<Message>] = if sends { &messages } else { &[] };
            let written = durable.commit_step(
                &self.evaluator.tracker,
                &failing,
                &mut self.external,
                &mut self.pipeline,
                to_send,
                now,
            );
            self.metrics.observe_state_commit(started.elapsed(), written.is_ok());
        }
        if alone {
            self.submit_pending(now);
        }
        messages
    }
}

fn log_events(events: &[AlertEvent]) {
    for e in events {
        let a = e.alert();
        match e {
            AlertEvent::Pending(_) => tracing::debug!(alert = a.name(), labels = %a.labels, "pending"),
            _ => tracing::info!(alert = a.name(), tier = %a.severity, labels = %a.labels, "{}", e.kind()),
        }
    }
}

/// A stable fraction in [0, 1) from a name.
fn spread(name: &str) -> f64 {
    let fp = crate::model::Labels::from_pairs([("source", name)]).fingerprint().0;
    (fp % 10_000) as f64 / 10_000.0
}

/// Tasks aborted with their owner (a poll task's session watchers).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// The sources' poll tasks, by source id. An id names one source for as
/// long as it runs (across reloads that keep its settings), so the store's
/// staleness per source follows it.
struct Polling {
    tx: mpsc::Sender<(usize, PollBatch, bool)>,
    clock: Arc<dyn Clock>,
    /// Each task counts its polls here.
    metrics: Arc<crate::metrics::Metrics>,
    tasks: std::collections::HashMap<usize, (String, tokio::task::JoinHandle<()>)>,
    next_id: usize,
}

impl Polling {
    /// Starts polling `spec` under `id` (a new id if `None`); returns the id.
    fn start(&mut self, spec: SourceSpec, id: Option<usize>) -> usize {
        let id = id.unwrap_or(self.next_id);
        self.next_id = self.next_id.max(id + 1);
        let (tx, clock, source) = (self.tx.clone(), self.clock.clone(), spec.source);
        let metrics = self.metrics.clone();
        let task = tokio::spawn(async move {
            // Spread sources over their interval (a stable offset from the
            // name, as Prometheus spreads scrapes), so a thousand nodes are
            // not all polled in the same instant.
            let interval = source.interval();
            let name = source.name();
            let source_label = crate::metrics::source_label(&name);
            let offset = interval.mul_f64(spread(&name));
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Held sessions wake it between ticks (a node's connection dropped).
            let wake = Arc::new(tokio::sync::Notify::new());
            let _watchers = AbortOnDrop(source.watch(wake.clone()));
            loop {
                let urgent = tokio::select! {
                    _ = ticker.tick() => false,
                    () = wake.notified() => {
                        tracing::debug!(source = %name, "polling early: a held session changed");
                        true
                    }
                };
                let batch = source.poll(clock.clone()).await;
                tracing::debug!(source = %name, series = batch.series.len(), "polled");
                metrics.observe_poll(&source_label, &batch);
                if tx.send((id, batch, urgent)).await.is_err() {
                    return;
                }
            }
        });
        if let Some((_, old)) = self.tasks.insert(id, (spec.settings, task)) {
            old.abort();
        }
        id
    }

    fn stop(&mut self, id: usize) {
        if let Some((_, task)) = self.tasks.remove(&id) {
            task.abort();
        }
    }

    /// Polls `sources` instead: a source whose settings are unchanged keeps
    /// its id, its series and (unless the rules now read other metrics,
    /// which its filter decides) its task; others start; the ids of
    /// removed ones are returned, their tasks stopped.
    fn replace(&mut self, sources: Vec<SourceSpec>, reads_changed: bool) -> Vec<usize> {
        let mut old: Vec<(usize, String)> = self.tasks.iter().map(|(id, (s, _))| (*id, s.clone())).collect();
        old.sort();
        for spec in sources {
            match old.iter().position(|(_, settings)| *settings == spec.settings) {
                Some(i) => {
                    let (id, _) = old.remove(i);
                    if reads_changed {
                        self.start(spec, Some(id));
                    }
                }
                None => {
                    self.start(spec, None);
                }
            }
        }
        old.into_iter()
            .map(|(id, _)| {
                self.stop(id);
                id
            })
            .collect()
    }
}

/// Runs until `shutdown` completes: sources poll concurrently, each on its
/// interval; rules are evaluated every `evaluation_interval`; the API's
/// commands (through `control`) are applied between steps, and so are
/// reloads (`reloading`: SIGHUP, or the API's `POST /-/reload`).
pub async fn run(
    mut runner: Runner,
    sources: Vec<SourceSpec>,
    evaluation_interval: Duration,
    clock: Arc<dyn Clock>,
    mut control: Option<Control>,
    mut reloading: Option<Reloading>,
    shutdown: impl Future<Output = ()>,
) -> Runner {
    let (tx, mut rx) = mpsc::channel::<(usize, PollBatch, bool)>(64);
    // Rules are first evaluated once every source has reported (or after two
    // of the longest intervals): an empty store at start-up would otherwise
    // resolve every restored alert, or fire every `absent()` rule.
    let longest = sources.iter().map(|s| s.source.interval()).max().unwrap_or_default();
    let gate_opens = tokio::time::Instant::now() + longest * 2;
    let mut polling =
        Polling { tx, clock: clock.clone(), metrics: runner.metrics.clone(), tasks: Default::default(), next_id: 0 };
    let mut waiting_for: std::collections::HashSet<usize> =
        sources.into_iter().map(|s| polling.start(s, None)).collect();
    // Ticks drive the pipeline's timers too (group wait, repeats), so at
    // least once a second; evaluation itself runs only when a group is due.
    let mut eval_ticker = tokio::time::interval(evaluation_interval.min(PIPELINE_TICK));
    eval_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut reports = runner.reports.take();
    let mut reports_done = runner.daily.take_done();
    let gate_open =
        |waiting: &std::collections::HashSet<usize>| waiting.is_empty() || tokio::time::Instant::now() >= gate_opens;
    let mut role = runner.replica.as_ref().map(|r| r.election.role());
    let mut intake = control.as_mut().and_then(|c| c.intake.take());
    // A step deferred for posts that landed too soon after the last one.
    let mut intake_step: Option<tokio::time::Instant> = None;
    let mut pace = StepPace::default();
    runner.follow_role(clock.now()).await;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((source, batch, urgent)) = rx.recv() => {
                // A batch a removed source sent before it stopped is dropped.
                if !polling.tasks.contains_key(&source) {
                    continue;
                }
                runner.on_batch(source, batch, urgent);
                waiting_for.remove(&source);
                // Evaluate as soon as fresh data arrives: a poll's result
                // reaches the rules without waiting for their interval.
                if gate_open(&waiting_for) {
                    step(&mut runner, &mut control, clock.as_ref()).await;
                }
            }
            _ = eval_ticker.tick() => {
                if gate_open(&waiting_for) {
                    step(&mut runner, &mut control, clock.as_ref()).await;
                }
            }
            Some(report) = next_report(&mut reports) => {
                runner.on_report(report);
                // A finished delivery leaves the shared outbox; a fallback one is written there first.
                runner.commit_shared(clock.now()).await;
            }
            Some(()) = next_role(&mut role) => {
                if gate_open(&waiting_for) {
                    // A replica taking over tells what is due at once.
                    step(&mut runner, &mut control, clock.as_ref()).await;
                } else {
                    runner.follow_role(clock.now()).await;
                    runner.commit_shared(clock.now()).await;
                }
                publish(&runner, &mut control, clock.now(), true);
            }
            Some(()) = next_reload(&mut reloading) => {
                let _ = reload(&mut runner, &mut polling, &mut reloading, clock.now());
                sources_now(&mut control, &polling);
                publish(&runner, &mut control, clock.now(), true);
            }
            Some(batch) = next_intake(&mut intake) => {
                runner.receive_external(batch, clock.now());
                // The posts waiting are one step (a flood refilling the
                // queue does not keep the loop here).
                for _ in 1..INTAKE_POSTS_PER_TURN {
                    let Some(batch) = intake.as_mut().and_then(|i| i.try_recv()) else { break };
                    runner.receive_external(batch, clock.now());
                }
                if intake_step.is_none() && gate_open(&waiting_for) {
                    match pace.next_for_posts(tokio::time::Instant::now()) {
                        Some(at) => intake_step = Some(at),
                        None => pace.time(step(&mut runner, &mut control, clock.as_ref())).await,
                    }
                }
            }
            Some(()) = sleep_until(intake_step) => {
                intake_step = None;
                if gate_open(&waiting_for) {
                    pace.time(step(&mut runner, &mut control, clock.as_ref())).await;
                }
            }
            Some(()) = sleep_until(control.as_ref().and_then(Control::owed_at)) => {
                publish(&runner, &mut control, clock.now(), false);
            }
            Some((cluster, due)) = next_done(&mut reports_done) => {
                runner.report_done(&cluster, due);
            }
            Some(()) = sleep_until(daily_timer(&runner, clock.as_ref(), gate_open(&waiting_for))) => {
                // A report made before every source reported would show nodes missing.
                if gate_open(&waiting_for) {
                    runner.run_due_reports(clock.now());
                }
            }
            Some(()) = sleep_until(pipeline_timer(&runner, clock.as_ref())) => {
                if gate_open(&waiting_for) {
                    step(&mut runner, &mut control, clock.as_ref()).await;
                }
            }
            Some(command) = next_command(&mut control) => {
                let writes =
                    !matches!(command, crate::api::Command::ExportSeries { .. } | crate::api::Command::Report { .. });
                match command {
                    crate::api::Command::Reload { reply } => {
                        let status = reload(&mut runner, &mut polling, &mut reloading, clock.now());
                        let _ = reply.send(status);
                        sources_now(&mut control, &polling);
                    }
                    command => runner.write(command, clock.now()).await,
                }
                publish(&runner, &mut control, clock.now(), writes);
            }
        }
    }
    for (_, (_, task)) in polling.tasks.drain() {
        task.abort();
    }
    tracing::info!("shut down");
    runner
}

/// How soon the loop steps for posts to the intake: not before as long
/// after the last step as that step took. A step looks at every alert, so
/// under a flood of posts at most about half the loop's time goes to their
/// steps, and many posts share one; at low load a post is stepped at once.
#[derive(Default)]
struct StepPace {
    last: Option<(tokio::time::Instant, Duration)>,
}

impl StepPace {
    /// When posts landing `now` are stepped, if not at once.
    fn next_for_posts(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        let (ended, took) = self.last?;
        Some(ended + took).filter(|at| now < *at)
    }

    async fn time(&mut self, step: impl Future<Output = ()>) {
        let started = tokio::time::Instant::now();
        step.await;
        let ended = tokio::time::Instant::now();
        self.last = Some((ended, ended - started));
    }
}

/// One step of the loop: evaluate (and run the pipeline, persist, deliver;
/// a replica writes the shared state before it delivers), publish it to the
/// API, and tell the heartbeat the loop is alive.
async fn step(runner: &mut Runner, control: &mut Option<Control>, clock: &dyn Clock) {
    runner.follow_role(clock.now()).await;
    runner.evaluate(clock);
    let now = clock.now();
    runner.commit_shared(now).await;
    publish(runner, control, now, false);
    runner.liveness.step_completed(now);
}

/// Reads the config and rules again and applies them between steps, or
/// keeps everything as it is if they do not check.
fn reload(
    runner: &mut Runner,
    polling: &mut Polling,
    reloading: &mut Option<Reloading>,
    now: Timestamp,
) -> Result<ReloadStatus, crate::api::CommandError> {
    let Some(reloading) = reloading else {
        return Err(crate::api::CommandError::NotFound("this runner has no config to reload".into()));
    };
    tracing::info!("reloading the config and rules");
    let loaded = match (reloading.load)() {
        Ok(loaded) => loaded,
        Err(problems) => return Ok(runner.record_reload(problems, now)),
    };
    let reads_changed = loaded.reconfig.rules.retention != runner.evaluator.rules.retention;
    let sources = loaded.sources.len();
    for removed in polling.replace(loaded.sources, reads_changed) {
        runner.forget_source(removed, now);
    }
    runner.reconfigure(loaded.reconfig, now);
    runner.set_daily(loaded.daily, now);
    if let Some(runbooks) = &reloading.runbooks {
        runbooks.send_replace(loaded.runbooks);
    }
    runner.external.resolve_timeout = loaded.intake.policy.resolve_timeout;
    if let Some(intake) = &reloading.intake {
        intake.send_replace(loaded.intake);
    }
    tracing::info!(rules = runner.evaluator.rules.rule_count(), sources, "reloaded");
    Ok(runner.record_reload(Vec::new(), now))
}

fn sources_now(control: &mut Option<Control>, polling: &Polling) {
    if let Some(c) = control {
        c.status.sources = polling.tasks.len();
    }
}

async fn next_reload(reloading: &mut Option<Reloading>) -> Option<()> {
    match reloading {
        Some(r) => r.requests.recv().await,
        None => std::future::pending().await,
    }
}

/// The next change of this replica's role (never, when alone).
async fn next_role(role: &mut Option<tokio::sync::watch::Receiver<crate::ha::Role>>) -> Option<()> {
    match role {
        Some(r) => r.changed().await.ok(),
        None => std::future::pending().await,
    }
}

async fn next_report(reports: &mut Option<mpsc::UnboundedReceiver<Report>>) -> Option<Report> {
    match reports {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_command(control: &mut Option<Control>) -> Option<crate::api::Command> {
    match control {
        Some(c) => c.commands.recv().await,
        None => std::future::pending().await,
    }
}

/// The loop's instant for [`Runner::pipeline_wake`].
fn pipeline_timer(runner: &Runner, clock: &dyn Clock) -> Option<tokio::time::Instant> {
    let at = runner.pipeline_wake()?;
    Some(tokio::time::Instant::now() + at.since(clock.now()))
}

/// The loop's instant for the next scheduled report; while the evaluation gate is closed (start-up), at most once
/// a second, to look again.
fn daily_timer(runner: &Runner, clock: &dyn Clock, gate_open: bool) -> Option<tokio::time::Instant> {
    let wait = runner.daily.next_due()?.since(clock.now());
    let wait = if gate_open { wait } else { wait.max(Duration::from_secs(1)) };
    Some(tokio::time::Instant::now() + wait)
}

/// Sleeps until `at` (forever without one).
async fn sleep_until(at: Option<tokio::time::Instant>) -> Option<()> {
    match at {
        Some(at) => {
            tokio::time::sleep_until(at).await;
            Some(())
        }
        None => std::future::pending().await,
    }
}

async fn next_done(done: &mut Option<mpsc::UnboundedReceiver<(String, Timestamp)>>) -> Option<(String, Timestamp)> {
    match done {
        Some(d) => d.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_intake(intake: &mut Option<crate::intake::IntakeReceiver>) -> Option<crate::intake::IntakeBatch> {
    match intake {
        Some(i) => i.recv().await,
        None => std::future::pending().await,
    }
}

fn publish(runner: &Runner, control: &mut Option<Control>, now: Timestamp, force: bool) {
    if let Some(c) = control {
        c.status.replica = runner.replica.as_ref().map(Replica::status);
        c.publish(runner, now, force);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::Timestamp;
    use crate::test_support::{logged, poll, rules_from_yaml};

    /// Two rules: X fires while `x > 0`, Y while `y > 0`.
    const X_AND_Y: &str =
        "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: x > 0\n  - alert: Y\n    expr: y > 0\n";

    /// A runner of these rules that neither persists nor notifies.
    fn runner_of(rules_yaml: &str) -> Runner {
        let rules = Arc::new(rules_from_yaml(rules_yaml).unwrap());
        Runner::new(rules, Duration::from_secs(10), PipelineConfig::defaults_to(&[]), Vec::new())
    }

    #[test]
    fn series_a_source_stops_reporting_go_stale_others_do_not() {
        let mut runner = runner_of(X_AND_Y);
        let clock = ManualClock::new(Timestamp::from_millis(0));
        runner.ingest(0, poll("a", 0, &[("x", 1.0)]));
        runner.ingest(1, poll("a", 0, &[("y", 1.0)]));
        runner.evaluate(&clock);
        assert_eq!(runner.evaluator.tracker.firing().count(), 2);
        // Source 0 polls again without x (say its node died): x is stale at
        // once; y, from source 1 in the same group, stays.
        runner.ingest(0, poll("a", 10, &[]));
        clock.set(Timestamp::from_millis(10_000));
        runner.evaluate(&clock);
        let resolved: Vec<&str> =
            runner.evaluator.tracker.alerts().filter(|a| a.resolved_at.is_some()).map(|a| a.name()).collect();
        assert_eq!(resolved, ["X"], "X resolves");
        assert_eq!(runner.evaluator.tracker.firing().map(|a| a.name().to_string()).collect::<Vec<_>>(), ["Y"]);
    }

    #[tokio::test]
    async fn a_reload_keeps_unchanged_sources_and_their_series_and_stops_removed_ones_whose_series_go_stale() {
        let yaml = |urls: &[&str]| {
            let sources: String = urls
                .iter()
                .map(|u| format!("  - {{type: prometheus, url: 'http://127.0.0.1:9/{u}', cluster: c, interval: 1s, timeout: 500ms}}\n"))
                .collect();
            let config = crate::config::Config::parse(&format!("sources:\n{sources}"), std::path::Path::new("z.yaml"));
            config.unwrap().sources
        };
        let specs = |urls: &[&str]| -> Vec<SourceSpec> {
            yaml(urls)
                .into_iter()
                .map(|s| {
                    let crate::config::SourceConfig::Prometheus(p) = &s else { unreachable!() };
                    let source = Arc::new(crate::source::prom::PromSource::new(p.clone(), None).unwrap());
                    SourceSpec { settings: format!("{s:?}"), source }
                })
                .collect()
        };
        let (tx, _rx) = mpsc::channel(8);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let mut polling = Polling { tx, clock, metrics: Arc::default(), tasks: Default::default(), next_id: 0 };
        let ids: Vec<usize> = specs(&["a", "b"]).into_iter().map(|s| polling.start(s, None)).collect();
        assert_eq!(ids, [0, 1]);
        let removed = polling.replace(specs(&["b", "c"]), false);
        assert_eq!(removed, [0], "a stopped");
        let mut live: Vec<usize> = polling.tasks.keys().copied().collect();
        live.sort();
        assert_eq!(live, [1, 2], "b kept its id, c got a new one");

        let mut runner = runner_of(X_AND_Y);
        let clock = ManualClock::new(Timestamp::from_millis(0));
        runner.ingest(0, poll("a", 0, &[("x", 1.0)]));
        runner.ingest(1, poll("b", 0, &[("y", 1.0)]));
        runner.evaluate(&clock);
        runner.forget_source(0, Timestamp::from_millis(5_000));
        clock.set(Timestamp::from_millis(10_000));
        runner.evaluate(&clock);
        let firing: Vec<&str> = runner.evaluator.tracker.firing().map(|a| a.name()).collect();
        assert_eq!(firing, ["Y"], "X's series went stale with its source");
    }

    #[test]
    fn a_poll_that_lands_is_evaluated_at_once_not_at_the_groups_next_interval() {
        let rules =
            "groups:\n- name: g\n  interval: 15s\n  rules:\n  - alert: Down\n    expr: up == 0\n    severity: P0\n";
        let mut runner = runner_of(rules);
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let at = |ms: i64| Timestamp::from_millis(ms);
        let last_evaluation = |r: &Runner| r.evaluator.tracker.rules[0].last_evaluation;
        runner.on_batch(0, poll("zk1", 0, &[("up", 1.0)]), false);
        runner.evaluate(&clock);
        // The node dies at 7 s; the poll that sees it lands at 7 s: it fires
        // then, not at the group's next slot (15 s).
        clock.set(at(7_000));
        runner.on_batch(0, poll("zk1", 7, &[("up", 0.0)]), false);
        runner.evaluate(&clock);
        let fired: Vec<Timestamp> = runner.evaluator.tracker.firing().filter_map(|a| a.fired_at).collect();
        assert_eq!(fired, [at(7_000)]);
        // Without fresh data, the group keeps its interval grid.
        clock.set(at(9_000));
        runner.evaluate(&clock);
        assert_eq!(last_evaluation(&runner), Some(at(7_000)), "evaluated again at 9 s with nothing new");
        // Fresh polls are evaluated at most once a second; a woken one at once.
        runner.on_batch(0, poll("zk1", 9, &[("up", 0.0)]), false);
        runner.evaluate(&clock);
        clock.set(at(9_400));
        runner.on_batch(0, poll("zk1", 9, &[("up", 0.0)]), false);
        runner.evaluate(&clock);
        assert_eq!(last_evaluation(&runner), Some(at(9_000)), "a second fresh poll within a second waits");
        clock.set(at(10_000));
        runner.evaluate(&clock);
        assert_eq!(last_evaluation(&runner), Some(at(10_000)), "then it is evaluated");
        clock.set(at(10_100));
        runner.on_batch(0, poll("zk1", 10, &[("up", 1.0)]), true);
        runner.evaluate(&clock);
        assert_eq!(last_evaluation(&runner), Some(at(10_100)), "a woken poll at once");
        assert_eq!(runner.evaluator.tracker.firing().count(), 0);
    }

    #[test]
    fn an_evaluation_on_arrival_covers_the_clusters_that_landed_and_leaves_the_others_alone() {
        // Slow waits 5 s; Down at once; Split is per cluster; Renamed's
        // script gives its alert another cluster's label (the origin is the
        // target, not the label).
        let rules = "groups:\n- name: g\n  interval: 60s\n  rules:\n  - alert: Down\n    expr: up == 0\n    severity: P0\n  - alert: Slow\n    expr: lat > 10\n    for: 5s\n    severity: P2\n  - alert: Renamed\n    script: renamed.rhai\n    severity: P2\n- name: c\n  interval: 60s\n  per: cluster\n  rules:\n  - alert: Split\n    expr: 'nodes.filter(|n| n.up == 0.0).len() >= 1'\n    severity: P1\n";
        let script = "if up == 0.0 { alert(#{labels: #{cluster: \"elsewhere\"}}) }";
        let rules = Arc::new(crate::test_support::rules_with_scripts(rules, &[("renamed.rhai", script)]).unwrap());
        let mut runner = Runner::new(rules, Duration::from_secs(10), PipelineConfig::defaults_to(&[]), Vec::new());
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let at = |ms: i64| Timestamp::from_millis(ms);
        let node = |cluster: &str, secs: i64, up: f64, lat: f64| {
            let mut batch = poll(&format!("{cluster}-1"), secs, &[("up", up), ("lat", lat)]);
            batch.series[0].labels.insert("cluster", cluster);
            batch
        };
        let firing = |r: &Runner| {
            let mut f: Vec<String> = r
                .evaluator
                .tracker
                .firing()
                .map(|a| format!("{} {}", a.name(), a.labels.get("instance").unwrap_or("-")))
                .collect();
            f.sort();
            f
        };
        runner.on_batch(0, node("a", 0, 1.0, 20.0), false);
        runner.on_batch(1, node("b", 0, 0.0, 20.0), false);
        runner.evaluate(&clock);
        assert_eq!(firing(&runner), ["Down b-1", "Renamed b-1", "Split -"], "a full evaluation at 0 s");
        // b recovers and a goes down, but only a's poll has landed: b's
        // alerts stay as they are until b's poll lands or the group's slot.
        clock.set(at(2_000));
        runner.ingest(1, node("b", 2, 1.0, 0.0));
        runner.on_batch(0, node("a", 2, 0.0, 20.0), false);
        runner.evaluate(&clock);
        assert_eq!(
            firing(&runner),
            ["Down a-1", "Down b-1", "Renamed a-1", "Renamed b-1", "Split -", "Split -"],
            "a's alerts fire, b's stay"
        );
        // a's Slow has been pending since 0 s; 5 s on, an evaluation over b
        // alone must not fire it: its condition was not looked at.
        clock.set(at(6_000));
        runner.on_batch(1, node("b", 6, 1.0, 0.0), false);
        runner.evaluate(&clock);
        assert_eq!(firing(&runner), ["Down a-1", "Renamed a-1", "Split -"], "b resolved over b's poll");
        clock.set(at(7_000));
        runner.on_batch(0, node("a", 7, 0.0, 20.0), false);
        runner.evaluate(&clock);
        assert_eq!(firing(&runner), ["Down a-1", "Renamed a-1", "Slow a-1", "Split -"], "a's Slow over a's poll");
        assert_eq!(runner.evaluator.next_due_of(0), at(60_000), "evaluations on arrival keep the slot");
    }

    #[test]
    fn posted_alerts_are_told_with_the_rules_and_resolved_by_their_end() {
        let mut runner = runner_of(X_AND_Y);
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let policy = crate::intake::IntakePolicy::default();
        let body = br#"[{"labels":{"alertname":"DiskFull","severity":"page"},"endsAt":"1970-01-01T00:01:00Z"}]"#;
        let batch = crate::intake::check_post(body, &policy, clock.now()).unwrap().batch;
        runner.receive_external(batch, clock.now());
        let sent = runner.evaluate(&clock);
        let told: Vec<(&str, crate::model::Severity)> =
            sent.iter().flat_map(|m| &m.firing).map(|a| (a.name(), a.severity)).collect();
        assert_eq!(told, [("DiskFull", crate::model::Severity::P0)]);
        clock.set(Timestamp::from_millis(59_000));
        assert!(runner.evaluate(&clock).iter().all(|m| m.resolved.is_empty()));
        clock.set(Timestamp::from_millis(60_000));
        let sent = runner.evaluate(&clock);
        let resolved: Vec<&str> = sent.iter().flat_map(|m| &m.resolved).map(|a| a.name()).collect();
        assert_eq!(resolved, ["DiskFull"], "resolved at its endsAt");
    }

    #[test]
    fn a_group_wait_ends_on_time_not_at_the_next_tick() {
        // P1: group_wait 30 s (the seed's).
        let mut runner = runner_of("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: x > 0\n    severity: P1\n");
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let at = |ms: i64| Timestamp::from_millis(ms);
        runner.ingest(0, poll("a", 0, &[("x", 1.0)]));
        assert!(runner.evaluate(&clock).is_empty(), "waiting for the group");
        clock.set(at(29_400));
        assert!(runner.evaluate(&clock).is_empty());
        assert_eq!(runner.pipeline_wake(), Some(at(30_000)), "the group wait's end, before the next tick");
        clock.set(at(30_000));
        let sent = runner.evaluate(&clock);
        assert_eq!(sent.len(), 1, "told when its group wait ended, 0.6 s after the last step");
        // Next: the P1 repeat (15 min), not every tick until then.
        assert_eq!(runner.pipeline_wake(), Some(at(930_000)));
    }

    /// Posts landing within as long after a step as it took wait for the
    /// end of that time; later ones are stepped at once.
    #[tokio::test(start_paused = true)]
    async fn posts_wait_as_long_after_a_step_as_it_took() {
        let mut pace = StepPace::default();
        assert_eq!(pace.next_for_posts(tokio::time::Instant::now()), None, "no step yet: at once");
        pace.time(tokio::time::sleep(Duration::from_millis(40))).await;
        let ended = tokio::time::Instant::now();
        assert_eq!(pace.next_for_posts(ended), Some(ended + Duration::from_millis(40)));
        tokio::time::sleep(Duration::from_millis(39)).await;
        assert_eq!(pace.next_for_posts(tokio::time::Instant::now()), Some(ended + Duration::from_millis(40)));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(pace.next_for_posts(tokio::time::Instant::now()), None, "as long as it took has passed");
    }

    /// A snapshot that took long to build is not rebuilt for the next step
    /// at once: it is owed and published when due (or at once for a
    /// command, whose writer reads it back).
    #[tokio::test]
    async fn under_load_a_step_shares_a_later_snapshot_and_a_command_is_shown_at_once() {
        let mut runner = runner_of(X_AND_Y);
        let (snapshot, shown) = tokio::sync::watch::channel(Arc::new(crate::api::Snapshot::default()));
        let mut control = Control {
            commands: mpsc::channel(1).1,
            intake: None,
            snapshot,
            ready: Default::default(),
            status: Default::default(),
            published_step: None,
            last_build: None,
            owed: false,
        };
        let at = |ms: i64| Timestamp::from_millis(ms);
        runner.step_pipeline(at(0));
        control.publish(&runner, at(0), false);
        assert_eq!((shown.borrow().at, control.owed_at()), (at(0), None), "the first is published at once");
        // As if that build had taken a second: the next step's snapshot waits.
        control.last_build = Some((tokio::time::Instant::now(), Duration::from_secs(1)));
        runner.step_pipeline(at(10));
        control.publish(&runner, at(10), false);
        assert_eq!(shown.borrow().at, at(0), "not rebuilt at once");
        let due = control.owed_at().expect("owed");
        assert!(due > tokio::time::Instant::now() + Duration::from_secs(3), "four builds' time after the last");
        control.publish(&runner, at(11), true);
        assert_eq!((shown.borrow().at, control.owed_at()), (at(11), None), "a command's write is shown at once");
    }

    #[test]
    fn each_message_and_its_log_line_say_why_it_was_sent() {
        let mut runner = runner_of("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: x > 0\n    severity: P0\n");
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let (sent, log) = logged(|| {
            runner.ingest(0, poll("a", 0, &[("x", 1.0)]));
            runner.evaluate(&clock)
        });
        assert_eq!(sent.iter().map(|m| m.reason).collect::<Vec<_>>(), [crate::pipeline::Reason::NewAlerts]);
        let line =
            log.iter().find(|l| l.contains("notifying")).unwrap_or_else(|| panic!("no notifying line in {log:#?}"));
        assert!(line.contains("reason=new_alerts"), "{line}");
        // The JSON the file and generic webhook notifiers deliver says it too.
        assert_eq!(crate::notify::message_json(&sent[0], "c")["reason"], "new_alerts");
    }

    #[test]
    fn the_snapshot_shows_nodes_with_their_last_values_and_every_rules_health() {
        let mut runner = runner_of(
            "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n  - alert: Slow\n    expr: zk_avg_latency > 1000\n",
        );
        let clock = ManualClock::new(Timestamp::from_millis(0));
        for i in 0..40 {
            let mut batch = poll("zk1:2181", i, &[("up", 1.0), ("zk_avg_latency", i as f64), ("zk_not_read", 1.0)]);
            batch.series[0].labels.insert("cluster", "prod");
            batch.series[0].info = Some(crate::model::Labels::from_pairs([("role", "leader")]));
            runner.ingest(0, batch);
        }
        clock.set(Timestamp::from_millis(39_000));
        runner.evaluate(&clock);
        let snap = runner.snapshot(clock.now(), &crate::api::StatusView::default());
        let [node] = &snap.nodes[..] else { panic!("nodes: {:?}", snap.nodes) };
        assert_eq!(
            (node.cluster.as_str(), node.instance.as_str(), node.role.as_str(), node.up),
            ("prod", "zk1:2181", "leader", true)
        );
        let [latency] = &node.series[..] else { panic!("only the shown metrics the rules keep: {:?}", node.series) };
        assert_eq!(latency.metric, "zk_avg_latency");
        assert_eq!(latency.recent, (10..40).map(f64::from).collect::<Vec<_>>(), "the last 30, oldest first");
        let health: Vec<(&str, &str)> = snap.rules.iter().map(|r| (r.name.as_str(), r.health.as_str())).collect();
        assert_eq!(health, [("Down", "ok"), ("Slow", "ok")]);
        assert!(snap.rules.iter().all(|r| r.last_evaluation == Some(clock.now())));
    }
}
