//! The on-call's HTTP API (axum), beside the runner: reads the snapshot the
//! runner publishes after each step, and sends writes (silences, acks) to
//! the runner as commands, so the runner alone owns and persists the state.

mod alertmanager;
mod console;
mod listen;
mod server;
#[cfg(test)]
mod tests;
mod views;

pub use console::alerts_page_html;
pub use listen::{ConnectionLimits, HEADER_READ_TIMEOUT, raise_fd_limit, serve_limited};
pub use server::{router, serve};
pub use views::{AckRequest, SilenceRequest};

use crate::model::{Alert, Labels, Severity, Timestamp};
use crate::pipeline::{Ack, Matchers, Mute, Silence};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::sync::{mpsc, oneshot, watch};

/// What the API reads: the state after the runner's last step.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Published by the runner after a step; `false` (the default the API
    /// starts with) means there is nothing to show yet, not "no alerts".
    pub published: bool,
    pub at: Timestamp,
    /// Every alert the tracker holds (pending, firing, recently resolved),
    /// in no order: readers sort what they show ([`AlertView::order`]).
    pub alerts: Vec<AlertView>,
    pub silences: Vec<Silence>,
    pub groups: Vec<GroupView>,
    pub status: StatusView,
    /// The latest deliveries, newest first (the outbox and its history).
    pub deliveries: Vec<crate::state::DeliveryRecord>,
    /// Every rule's health and last evaluation.
    pub rules: Vec<RuleView>,
    /// The ZooKeeper nodes the store holds, with their recent values.
    pub nodes: Vec<NodeView>,
}

/// One rule as the console, the API and `/metrics` show it.
#[derive(Debug, Clone)]
pub struct RuleView {
    /// Its group's name (rules are listed in rule file order).
    pub group: String,
    pub name: String,
    /// Its last evaluation's outcome (`Err` carries the error).
    pub health: crate::rule::RuleHealth,
    pub last_evaluation: Option<Timestamp>,
    pub last_duration: std::time::Duration,
    /// Its pending and firing alerts.
    pub active: usize,
}

/// One polled node (a store group reporting `up`).
#[derive(Debug, Clone)]
pub struct NodeView {
    pub cluster: String,
    pub instance: String,
    /// The `role` info label (leader, follower, …); "" when unknown.
    pub role: String,
    pub up: bool,
    /// The series of [`NODE_METRICS`] the store keeps, in that order.
    pub series: Vec<NodeSeries>,
}

/// A node's recent values of one metric, oldest first.
#[derive(Debug, Clone)]
pub struct NodeSeries {
    pub metric: &'static str,
    pub recent: Vec<f64>,
}

/// What the console shows per node, when rules keep them in the store.
pub const NODE_METRICS: [&str; 5] =
    ["zk_avg_latency", "zk_connections", "zk_outstanding_requests", "zk_zxid_epoch", "zk_zxid_counter"];
/// At most this many recent values per node and metric (a sparkline).
pub const NODE_POINTS: usize = 30;
/// At most this many nodes in a snapshot.
pub const NODES_SHOWN: usize = 2_000;

#[derive(Debug, Clone)]
pub struct AlertView {
    /// Shared with the runner (posted alerts are not copied per snapshot).
    pub alert: Arc<Alert>,
    /// The id of the group it is notified in (acks name groups by id).
    pub group_id: Arc<str>,
    /// Shared by every alert not muted: most are not, and a snapshot
    /// holds one view per alert.
    pub mute: Arc<Mute>,
    /// The group's acknowledgement, if any (one per group, shared).
    pub ack: Option<Arc<Ack>>,
}

impl AlertView {
    /// The order alerts are shown in: by tier, then by labels.
    pub fn order(a: &&AlertView, b: &&AlertView) -> std::cmp::Ordering {
        (a.alert.severity, &a.alert.labels).cmp(&(b.alert.severity, &b.alert.labels))
    }
}

#[derive(Debug, Clone)]
pub struct GroupView {
    pub id: String,
    pub labels: Labels,
    /// The tier last paged.
    pub tier: Option<Severity>,
    pub ack: Option<Ack>,
    pub last_sent: Option<Timestamp>,
    pub escalated: bool,
    /// Why the last message about the group was sent.
    pub last_reason: Option<crate::pipeline::Reason>,
    /// Alerts told as firing and still around.
    pub alerts: usize,
}

#[derive(Debug, Clone, Default)]
pub struct StatusView {
    pub version: String,
    pub started_at: Timestamp,
    pub config_path: Option<String>,
    pub rules: usize,
    /// Rules whose last evaluation failed: (name, error).
    pub rule_errors: Vec<(String, String)>,
    pub sources: usize,
    pub last_evaluation: Option<Timestamp>,
    /// Deliveries written to the outbox and not yet done.
    pub outbox_pending: usize,
    /// When the oldest of them was written.
    pub outbox_oldest: Option<Timestamp>,
    pub notifiers: Vec<String>,
    /// Set while the state file cannot be written (`/-/ready` answers 503).
    pub state_write_failure: Option<crate::runner::WriteFailure>,
    /// Changes held in memory until the state file can be written.
    pub state_unwritten: usize,
    /// The config in force and the last reload's outcome.
    pub reload: crate::runner::ReloadStatus,
    /// With `ha:` configured: this replica's role, the active one, the session.
    pub replica: Option<crate::runner::ReplicaStatus>,
}

/// Why the runner did not apply a write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// Nothing it applies to (no such silence, no matching group): 404.
    #[error("{0}")]
    NotFound(String),
    /// The state file cannot be written, so nothing changed: 503, try again.
    #[error("cannot save the change, nothing changed: {0}")]
    NotPersisted(String),
    /// Too large to pass on to the active replica: 413.
    #[error("{0}")]
    TooLarge(String),
    /// The runner could not do what was asked (a read of the state file failed, a template did not render): 500.
    #[error("{0}")]
    Failed(String),
    /// Passing it on to the active replica did not answer in time: 503;
    /// it may still be applied.
    #[error("the change may or may not be applied: {0}")]
    Unconfirmed(String),
}

/// A report and the templates to render it with.
pub type ReportReply = (Box<crate::report::Report>, Arc<crate::report::render::ReportTemplates>);

/// A write for the runner to apply (and persist) before replying.
#[derive(Debug)]
pub enum Command {
    /// Replies with the new silence's id.
    AddSilence { silence: Silence, reply: oneshot::Sender<Result<String, CommandError>> },
    /// Replies with the expired silence; `Err` if there is no such silence.
    ExpireSilence { id: String, reply: oneshot::Sender<Result<Silence, CommandError>> },
    /// Acknowledges the group with this id, or every current group with an
    /// alert matching `matchers`. Replies with the acked groups' ids;
    /// `Err` if none matched.
    Ack {
        group_id: Option<String>,
        matchers: Option<Matchers>,
        ack: Ack,
        reply: oneshot::Sender<Result<Vec<String>, CommandError>>,
    },
    /// A read, for `/metrics`: the store's ZooKeeper series now.
    ExportSeries { reply: oneshot::Sender<crate::metrics::SeriesExport> },
    /// A read: one cluster's report now, over `period`, its times in `time_zone` (default: its scheduled report's
    /// zone, else UTC), with its templates. `Err` for a cluster zkalert does not know.
    Report {
        cluster: String,
        period: std::time::Duration,
        time_zone: Option<chrono_tz::Tz>,
        reply: oneshot::Sender<Result<ReportReply, CommandError>>,
    },
    /// Reads the config, rules, templates and runbooks again and applies
    /// them, or (if they do not check) keeps everything as it is. Replies
    /// with the outcome, problems listed.
    Reload { reply: oneshot::Sender<Result<crate::runner::ReloadStatus, CommandError>> },
}

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub commands: mpsc::Sender<Command>,
    /// Bearer token writes need; `None`: writes are refused.
    pub token: Option<String>,
    /// Set once state is loaded and the first evaluation ran.
    pub ready: Arc<AtomicBool>,
    /// The local runbooks rules name (reference → file), served at
    /// `/runbooks/<reference>.md`; nothing else is served from disk.
    /// A reload may change them.
    pub runbooks: watch::Receiver<Arc<crate::runner::Runbooks>>,
    /// Signs console sessions and checks ack links (kept in the state file).
    pub secret: crate::capability::Secret,
    /// zkalert's own metrics, served with the snapshot's at `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The heartbeat's state, read live (not from the snapshot, which a
    /// stalled loop stops publishing), when one is configured.
    pub heartbeat: Option<Arc<std::sync::Mutex<crate::runner::heartbeat::HeartbeatStatus>>>,
    /// How posted alerts are taken (`intake`); a reload may change it.
    pub intake: watch::Receiver<Arc<crate::config::IntakeConfig>>,
    /// Posted alerts, checked, on their way to the runner.
    pub intake_batches: crate::intake::IntakeSender,
}
