//! The notification-pipeline workload shared by `benches/pipeline.rs` and
//! the `pipeline_memory` binary: ZooKeeper-shaped firing alerts, a
//! tracker-like list of them that can churn, a no-op notifier, and a step
//! composed as `Runner::step_pipeline` composes it (pipeline step → durable
//! commit of the notification log and the outbox → delivery → deliveries
//! marked done).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use zkalert::model::{Alert, AlertState, Labels, Severity, Timestamp};
use zkalert::notify::{Delivery, Notifier, SendFuture};
use zkalert::pipeline::{Message, Pipeline, PipelineConfig};
use zkalert::rule::tracker::RESOLVED_RETENTION;
use zkalert::state::{StateDb, StepWrite};

/// Alerts per cluster: N alerts are spread over N/50 clusters.
pub const ALERTS_PER_CLUSTER: u64 = 50;
/// Nodes per ensemble.
pub const NODES: u64 = 5;
/// The one channel every tier is sent to.
pub const CHANNEL: &str = "noop";

/// Twenty alert names of the shipped ZooKeeper rule pack with their usual
/// tier. The quorum-level alerts (`ZkQuorumLost`, `ZkNoLeader`) are left
/// out on purpose: the default inhibition rule would mute every node alert
/// of their cluster, and the benchmark wants every alert to be told.
pub const NAMES: [(&str, Severity); 20] = [
    ("ZkSplitBrain", Severity::P0),
    ("ZkEpochMismatch", Severity::P0),
    ("ZkProcessDown", Severity::P0),
    ("ZkNodeDown", Severity::P1),
    ("ZkNodeNotServing", Severity::P1),
    ("ZkRuokFailed", Severity::P1),
    ("ZkSyncedFollowersLow", Severity::P1),
    ("ZkLeaderFlapping", Severity::P1),
    ("ZkHighAvgLatency", Severity::P2),
    ("ZkOutstandingRequests", Severity::P2),
    ("ZkJvmHeapHigh", Severity::P2),
    ("ZkSlowFsync", Severity::P2),
    ("ZkTooManyConnections", Severity::P2),
    ("ZkFileDescriptorsHigh", Severity::P2),
    ("ZkDiskUsageHigh", Severity::P2),
    ("ZkTooManyZnodes", Severity::P3),
    ("ZkWatchCountHigh", Severity::P3),
    ("ZkDataSizeLarge", Severity::P3),
    ("ZkBackupStale", Severity::P3),
    ("ZkConfigDrift", Severity::P3),
];

const TEAMS: [&str; 4] = ["zk-platform", "storage", "search-infra", "payments-sre"];
const REGIONS: [&str; 4] = ["eu-west", "us-east", "us-west", "ap-south"];

/// 2026-11-25T08:59:00Z: the P3 tier's daily digest (09:00 UTC) falls in
/// the first minute, so the step at `t0 + 61 s` tells every group.
pub fn t0() -> Timestamp {
    Timestamp::from_millis(1_795_597_140_000)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Alert number `serial`: cluster `serial / 50`; within a cluster the 50
/// alerts cover the 20 names on 2–3 of the 5 nodes each, so the default
/// grouping (cluster, alertname) makes groups of 2–3 alerts. Labels:
/// alertname, cluster, instance, severity, team; annotations summary and
/// description (~150 bytes together); a runbook path.
pub fn alert(serial: u64, fired_at: Timestamp) -> Alert {
    let cluster_no = serial / ALERTS_PER_CLUSTER;
    let j = serial % ALERTS_PER_CLUSTER;
    let name_no = (j % NAMES.len() as u64) as usize;
    let node = (name_no as u64 + j / NAMES.len() as u64) % NODES;
    let (name, mut severity) = NAMES[name_no];
    // A tiered alert: a disk filling up pages harder on some nodes.
    if name == "ZkDiskUsageHigh" && node == 0 {
        severity = Severity::P1;
    }
    let region = REGIONS[(cluster_no % REGIONS.len() as u64) as usize];
    let cluster = format!("zk-{region}-{cluster_no:05}");
    let instance = format!("zk{}.{cluster}.internal:2181", node + 1);
    let mut labels = Labels::from_pairs([
        ("alertname", name),
        ("cluster", cluster.as_str()),
        ("instance", instance.as_str()),
        ("severity", severity.as_str()),
        ("team", TEAMS[(cluster_no % TEAMS.len() as u64) as usize]),
    ]);
    // As the tracker keeps an alert's labels.
    labels.shrink_to_fit();
    let value = (serial % 997) as f64 + 0.5;
    let summary = format!("{name} on {instance} (cluster {cluster}) at {value}");
    let description =
        "Condition held for 2m; see the runbook. Check `echo mntr | nc` and the server log first.".to_string();
    let mut alert = Alert::new(labels, severity, value, fired_at - secs(120));
    alert.annotations = zkalert::model::Annotations::from_pairs([("summary", summary), ("description", description)]);
    alert.fire(fired_at);
    alert.runbook = Some(format!("zookeeper/{}", name.trim_start_matches("Zk").to_ascii_lowercase()).into());
    alert
}

/// What the tracker holds: the oldest alerts first; resolved ones (at the
/// front) are kept `RESOLVED_RETENTION` so their resolution can be told,
/// as the real tracker keeps them.
pub struct Tracker {
    pub alerts: VecDeque<Alert>,
    /// How many alerts at the front are resolved.
    resolved: usize,
    next_serial: u64,
}

impl Tracker {
    /// `n` alerts, all firing since `fired_at`.
    pub fn firing(n: u64, fired_at: Timestamp) -> Self {
        Self { alerts: (0..n).map(|s| alert(s, fired_at)).collect(), resolved: 0, next_serial: n }
    }

    pub fn refs(&self) -> Vec<&Alert> {
        self.alerts.iter().collect()
    }

    pub fn firing_count(&self) -> usize {
        self.alerts.len() - self.resolved
    }

    /// One evaluation at `now`: the `n` oldest firing alerts resolve, `n`
    /// new ones fire, resolved alerts older than the retention go.
    pub fn churn(&mut self, n: usize, now: Timestamp) {
        while self.resolved > 0
            && self.alerts.front().is_some_and(|a| now.since(a.resolved_at.unwrap_or(now)) >= RESOLVED_RETENTION)
        {
            self.alerts.pop_front();
            self.resolved -= 1;
        }
        let end = (self.resolved + n).min(self.alerts.len());
        for a in self.alerts.range_mut(self.resolved..end) {
            a.state = AlertState::Resolved;
            a.resolved_at = Some(now);
        }
        self.resolved = end;
        for _ in 0..n {
            self.alerts.push_back(alert(self.next_serial, now));
            self.next_serial += 1;
        }
    }
}

/// The benchmark's notifier: accepts every message and does nothing.
pub struct NoopNotifier;

impl Notifier for NoopNotifier {
    fn send<'a>(&'a self, _: &'a Delivery) -> SendFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Sends one delivery through a notifier that answers at once (the no-op
/// one), without a runtime: polled once.
pub fn send_now(notifier: &dyn Notifier, message: &Arc<Message>, channel: &str) {
    let delivery = Delivery { message: message.clone(), channel: channel.to_string() };
    let mut sending = notifier.send(&delivery);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match sending.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(result) => result.expect("the no-op notifier never fails"),
        std::task::Poll::Pending => panic!("the no-op notifier answers at once"),
    }
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepStats {
    pub messages: usize,
    pub deliveries: usize,
    /// Notification-log rows written (upserted + removed).
    pub log_rows: usize,
}

/// A pipeline, its state file (optional) and the no-op notifier.
pub struct Harness {
    pub pipeline: Pipeline,
    pub db: Option<StateDb>,
    /// Each channel's name and notifier.
    pub notifiers: Vec<(&'static str, Arc<dyn Notifier>)>,
}

impl Harness {
    /// A fresh pipeline with the default policy (every tier to the no-op
    /// channel, seed timings, default inhibition rules).
    pub fn new(db: Option<StateDb>) -> Self {
        let pipeline = Pipeline::new(PipelineConfig::defaults_to(&[CHANNEL.to_string()]));
        Self { pipeline, db, notifiers: vec![(CHANNEL, Arc::new(NoopNotifier))] }
    }

    /// One step as `Runner::step_pipeline` runs it, minus the tracker's own
    /// rows: pipeline step, one commit of the changed notification-log rows
    /// and the new messages (the outbox), delivery, deliveries marked done.
    pub fn step(&mut self, alerts: &[&Alert], now: Timestamp) -> StepStats {
        let messages: Vec<Arc<Message>> = self.pipeline.step(alerts, now).into_iter().map(Arc::new).collect();
        // Taken even without a state file, so the dirty set does not grow.
        let groups = self.pipeline.dispatcher.take_changes();
        let log_rows = groups.upserted.len() + groups.removed.len();
        if let Some(db) = &mut self.db {
            // As `Durable::commit_step`: the outbox shares the messages.
            let w = StepWrite { groups, outbox: messages.clone(), ..Default::default() };
            db.commit(&w).expect("commit");
        }
        let pending: Vec<(Arc<Message>, String)> =
            messages.iter().flat_map(|m| m.channels.iter().map(|c| (m.clone(), c.clone()))).collect();
        let mut done = Vec::with_capacity(pending.len());
        for (m, channel) in &pending {
            let (_, notifier) =
                self.notifiers.iter().find(|(name, _)| name == channel).expect("a notifier per channel");
            send_now(notifier.as_ref(), m, channel);
            done.push((m.id.clone(), channel.clone()));
        }
        if let Some(db) = &mut self.db {
            db.mark_delivered_many(&done, now).expect("mark delivered");
        }
        StepStats { messages: messages.len(), deliveries: done.len(), log_rows }
    }

    /// Steps at `t0` (groups start; P0 groups are told at once) and at
    /// `t0 + 61 s` (past every group_wait and the 09:00 digest): after this
    /// every alert has been told.
    pub fn first_notification(&mut self, alerts: &[&Alert]) -> StepStats {
        let a = self.step(alerts, t0());
        let b = self.step(alerts, t0() + secs(61));
        StepStats {
            messages: a.messages + b.messages,
            deliveries: a.deliveries + b.deliveries,
            log_rows: a.log_rows + b.log_rows,
        }
    }

    /// Alerts told as firing in the notification log.
    pub fn notified(&self) -> usize {
        self.pipeline.dispatcher.groups().map(|g| g.notified_firing.len()).sum()
    }
}
