//! The daily inspection report (docs/reports.md): beside the pipeline, not in it. Per cluster, what the store
//! holds of each node now (role, version, latency, connections, outstanding, znodes, watches, data size, heap,
//! disks) and what the state file recorded over the period (elections, alerts with durations and who acked them,
//! delivery failures), with the silences in force; rendered by `report::render` from templates (`reports/*.j2`)
//! to a subject, text and HTML; scheduled by `runner::reports`, printed by `zkalert report`.

pub mod gather;
pub mod render;

use serde::Serialize;
use std::collections::BTreeSet;

/// Thresholds from the seed's health-check script (§8.4) and §1.2, shared with `zkalert probe`.
pub const AVG_LATENCY_WARN_MS: f64 = 100.0;
pub const MAX_LATENCY_WARN_MS: i64 = 1000;
pub const CONNECTIONS_WARN: u64 = 1000;
pub const OUTSTANDING_WARN: u64 = 10;
/// The seed's memory line (70 / 85 / 95 %): the first is worth a look in a daily round.
pub const HEAP_WARN_PERCENT: f64 = 70.0;
/// The seed's daily checklist: disk use under 70 %.
pub const DISK_WARN_PERCENT: f64 = 70.0;
/// Open file descriptors over this share of the limit.
pub const FDS_WARN_PERCENT: f64 = 80.0;

/// One cluster's report: everything its templates see (documented in docs/reports.md). Times are shown in the
/// report's time zone; numbers are as the nodes reported them (`None`: the node did not say).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub cluster: String,
    /// IANA name, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    /// When it was made, and the period it covers (`since` before `until`), as local times.
    pub generated_at: String,
    pub from: String,
    pub until: String,
    /// The period's length, e.g. `24h`.
    pub period: String,
    pub summary: Summary,
    pub nodes: Vec<NodeRow>,
    pub disks: Vec<DiskRow>,
    pub elections: Vec<ElectionRow>,
    pub alerts: Vec<AlertRow>,
    pub silences: Vec<SilenceRow>,
    pub delivery_failures: Vec<FailureRow>,
}

/// The report's first lines.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// `ok`, `warning` or `critical`: critical with a node down, no single leader or a P0/P1 still firing;
    /// warning with any value over its threshold, an alert still firing, an election or a delivery failure.
    pub status: &'static str,
    pub nodes_up: usize,
    pub nodes_total: usize,
    /// The node that reports `leader` (None: no leader, or more than one).
    pub leader: Option<String>,
    pub elections: usize,
    /// Alerts that fired in the period, and those of them firing still.
    pub alerts: usize,
    pub alerts_firing: usize,
    /// Per tier, alerts that fired in the period: `[P0, P1, P2, P3]`.
    pub alerts_by_tier: [usize; 4],
    /// Alerts that fired and were never acknowledged.
    pub alerts_unacked: usize,
    pub silences: usize,
    pub delivery_failures: usize,
    /// One line per problem found, most severe first (empty when all is well).
    pub findings: Vec<String>,
}

/// One node as the store holds it now.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct NodeRow {
    pub instance: String,
    pub up: bool,
    /// `leader`, `follower`, `observer`, `standalone`, or `unknown`.
    pub role: String,
    pub version: Option<String>,
    /// Why the last poll failed, when it did.
    pub problem: Option<String>,
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub connections: Option<f64>,
    pub outstanding: Option<f64>,
    pub znodes: Option<f64>,
    pub watches: Option<f64>,
    pub ephemerals: Option<f64>,
    pub data_size_bytes: Option<f64>,
    pub heap_used_bytes: Option<f64>,
    pub heap_max_bytes: Option<f64>,
    pub heap_used_percent: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub uptime_seconds: Option<f64>,
    /// The fields over their threshold (their names, e.g. `latency_avg_ms`), for templates to highlight.
    pub over: BTreeSet<&'static str>,
}

/// One watched directory's filesystem on one node's host (the host source).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DiskRow {
    pub instance: String,
    pub path: String,
    pub used_percent: Option<f64>,
    pub free_bytes: Option<f64>,
    pub size_bytes: Option<f64>,
    /// Over the seed's daily-checklist line (70 %).
    pub over: bool,
}

/// A change of leader: from one node (or none) to another (or none: the quorum lost).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ElectionRow {
    pub at: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// How long the cluster was without a leader before `to` took over, when zkalert saw that.
    pub leaderless_for: Option<String>,
}

/// An alert that fired in the period (or before it and still firing in it).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertRow {
    pub alertname: String,
    /// `P0` … `P3`: the most severe tier it reached.
    pub tier: String,
    pub instance: Option<String>,
    pub summary: Option<String>,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    /// Fired to resolved, or to the report's end while firing, e.g. `1h 5m`.
    pub duration: String,
    pub firing: bool,
    pub acked_by: Option<String>,
    pub acked_at: Option<String>,
    /// The runbook's URL (or path, without a runbook base URL).
    pub runbook: Option<String>,
}

/// A silence in force when the report was made.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SilenceRow {
    pub id: String,
    pub matchers: String,
    pub created_by: String,
    pub comment: String,
    pub ends_at: String,
}

/// A delivery that gave up in the period, or was still failing when the report was made.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureRow {
    pub at: String,
    pub channel: String,
    pub tier: String,
    /// The group's labels, e.g. `{alertname="ZkNodeDown", cluster="prod"}`.
    pub group: String,
    pub attempts: u32,
    pub error: Option<String>,
    /// `gave up`, or `retrying`.
    pub outcome: &'static str,
}
