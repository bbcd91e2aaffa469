//! The parts of `/metrics` written at scrape time in the Prometheus text
//! format (0.0.4): gauges of the API's snapshot, and the ZooKeeper series
//! of the store. Only valid names are written, label values escaped, and
//! no NaN: a series whose latest sample is a stale marker or older than
//! the lookback is not exported (as Prometheus would not return it).

use crate::api::Snapshot;
use crate::model::{AlertState, Labels, Severity, Timestamp};
use crate::rule::RuleHealth;
use crate::store::{MetricId, SeriesStore};
use rustc_hash::FxHashMap;
use std::fmt::Write;
use std::sync::Arc;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Only metrics with this prefix are re-exported from the store: what the
/// ZooKeeper sources produce (other scraped metrics have their own
/// exporters, and `up` is Prometheus's own).
const REEXPORTED_PREFIX: &str = "zk_";

/// The info label re-exported beside a series' own labels.
const ROLE: &str = "role";

/// The families written from the snapshot (`write_snapshot`).
pub(super) const SNAPSHOT_FAMILIES: &[&str] = &[
    "zkalert_alerts",
    "zkalert_rule_healthy",
    "zkalert_rule_last_error_info",
    "zkalert_rule_group_last_evaluation_timestamp_seconds",
    "zkalert_rule_group_last_duration_seconds",
    "zkalert_start_time_seconds",
    "zkalert_outbox_pending_deliveries",
    "zkalert_outbox_oldest_pending_age_seconds",
    "zkalert_state_write_failing",
    "zkalert_state_unwritten_changes",
];

/// A rule error is a label value: kept short.
const ERROR_LABEL_MAX: usize = 256;

/// One series' labels in exposition form (shared by a group's series),
/// and its latest value.
type Latest = (Arc<str>, f64);

/// The latest value of every re-exported series, by metric name (sorted),
/// each with its label set already in exposition form.
#[derive(Debug, Default, Clone)]
pub struct SeriesExport {
    families: Vec<(Arc<str>, Vec<Latest>)>,
}

/// What the runner hands the API for one scrape: the store's `zk_*`
/// series at `now`, with each group's labels and its `role`, under their
/// [`reexported_name`]s.
pub fn export_series(store: &SeriesStore, now: Timestamp) -> SeriesExport {
    let mut exported: FxHashMap<MetricId, Option<(String, f64)>> = FxHashMap::default();
    let mut by_metric: FxHashMap<MetricId, Vec<Latest>> = FxHashMap::default();
    for (_, group) in store.groups() {
        let mut labels: Option<Arc<str>> = None;
        for (metric, window) in group.metrics() {
            let export = exported.entry(metric).or_insert_with(|| reexported(store.metric_name(metric)));
            let Some((_, scale)) = export else { continue };
            let Some(value) = window.latest(now, store.lookback()).filter(|v| !v.is_nan()) else { continue };
            let labels = labels.get_or_insert_with(|| label_text(&group.labels, group.info.get(ROLE)).into());
            by_metric.entry(metric).or_default().push((labels.clone(), value * *scale));
        }
    }
    // A renamed metric never hides one of the same name as polled.
    let mut families: FxHashMap<String, (bool, Vec<Latest>)> = FxHashMap::default();
    for (metric, series) in by_metric {
        let Some(Some((name, _))) = exported.remove(&metric) else { continue };
        let renamed = name != store.metric_name(metric);
        match families.get(&name) {
            Some((false, _)) => {}
            Some((true, _)) if renamed => {}
            _ => {
                families.insert(name, (renamed, series));
            }
        }
    }
    let mut families: Vec<(Arc<str>, Vec<Latest>)> =
        families.into_iter().map(|(name, (_, series))| (Arc::from(name), series)).collect();
    families.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    SeriesExport { families }
}

/// The name a polled metric is re-exported under, if at all: `zk_*` names
/// that are valid Prometheus names, as polled where they follow
/// Prometheus's conventions (what `promtool check metrics` checks), else
/// the conventional name: milliseconds become seconds
/// (`zk_probe_latency_ms` → `zk_probe_latency_seconds`; a summary's count
/// `zk_cnt_…_ms` just loses the unit), and a `counter` segment, a type in a
/// name, becomes `count` (`zk_zxid_counter`, the transactions of the
/// current epoch, → `zk_zxid_count`).
pub fn reexported_name(name: &str) -> Option<String> {
    reexported(name).map(|(name, _)| name)
}

/// The re-exported name, and the factor values are multiplied by.
fn reexported(name: &str) -> Option<(String, f64)> {
    if !name.starts_with(REEXPORTED_PREFIX) || !is_metric_name(name) {
        return None;
    }
    if let Some(stem) = name.strip_suffix("_ms") {
        return Some(match stem.starts_with("zk_cnt_") {
            true => (stem.to_string(), 1.0),
            false => (format!("{stem}_seconds"), 0.001),
        });
    }
    let segments: Vec<&str> = name.split('_').map(|s| if s == "counter" { "count" } else { s }).collect();
    Some((segments.join("_"), 1.0))
}

impl SeriesExport {
    /// How many series it holds.
    pub fn len(&self) -> usize {
        self.families.iter().map(|(_, s)| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    pub(super) fn text_size_hint(&self) -> usize {
        self.families.iter().map(|(name, s)| 100 + s.len() * (name.len() + 80)).sum()
    }

    /// Writes each metric as an untyped family: zkalert cannot tell
    /// ZooKeeper's counters from its gauges, and `untyped` claims neither
    /// (promtool would flag `zk_znode_count` as a gauge named like a count).
    pub(super) fn write(&self, out: &mut String) {
        for (name, series) in &self.families {
            let _ = writeln!(out, "# HELP {name} ZooKeeper's {name} as zkalert last polled it.");
            let _ = writeln!(out, "# TYPE {name} untyped");
            for (labels, value) in series {
                sample(out, name, labels, *value);
            }
        }
    }
}

/// The gauges of the snapshot: alerts by state and tier, rule health,
/// the outbox and the state file.
pub(super) fn write_snapshot(out: &mut String, snap: &Snapshot, now: Timestamp) {
    family(out, "zkalert_alerts", "Alerts zkalert holds, by state and tier (muted ones included).", "gauge");
    for state in [AlertState::Pending, AlertState::Firing] {
        for tier in Severity::ALL {
            let count = snap.alerts.iter().filter(|a| a.alert.state == state && a.alert.severity == tier).count();
            let labels = label_text(&Labels::from_pairs([("state", state.as_str()), ("tier", tier.as_str())]), None);
            sample(out, "zkalert_alerts", &labels, count as f64);
        }
    }
    write_rules(out, snap);
    let status = &snap.status;
    family(out, "zkalert_start_time_seconds", "When this zkalert started (Unix time).", "gauge");
    sample(out, "zkalert_start_time_seconds", "", status.started_at.as_secs_f64());
    family(out, "zkalert_outbox_pending_deliveries", "Deliveries written to the outbox and not yet done.", "gauge");
    sample(out, "zkalert_outbox_pending_deliveries", "", status.outbox_pending as f64);
    family(
        out,
        "zkalert_outbox_oldest_pending_age_seconds",
        "Age of the oldest delivery not yet done (0 when none is pending).",
        "gauge",
    );
    let oldest_age = status.outbox_oldest.map_or(0.0, |t| now.since(t).as_secs_f64());
    sample(out, "zkalert_outbox_oldest_pending_age_seconds", "", oldest_age);
    family(out, "zkalert_state_write_failing", "1 while the state file cannot be written, else 0.", "gauge");
    sample(out, "zkalert_state_write_failing", "", f64::from(u8::from(status.state_write_failure.is_some())));
    family(
        out,
        "zkalert_state_unwritten_changes",
        "Changes held in memory until the state file can be written.",
        "gauge",
    );
    sample(out, "zkalert_state_unwritten_changes", "", status.state_unwritten as f64);
}

/// Per rule its health; per group when it last ran, how long it took and
/// the error of each of its failing rules.
fn write_rules(out: &mut String, snap: &Snapshot) {
    family(out, "zkalert_rule_healthy", "1 if the rule's last evaluation succeeded, 0 if it failed.", "gauge");
    for r in snap.rules.iter().filter(|r| r.health != RuleHealth::Unknown) {
        let labels =
            label_text(&Labels::from_pairs([("rule_group", r.group.as_str()), ("rule", r.name.as_str())]), None);
        sample(out, "zkalert_rule_healthy", &labels, f64::from(u8::from(r.health == RuleHealth::Ok)));
    }
    family(
        out,
        "zkalert_rule_last_error_info",
        "Always 1, for each rule whose last evaluation failed; the error is a label.",
        "gauge",
    );
    for r in &snap.rules {
        if let RuleHealth::Err(e) = &r.health {
            let error: String = e.chars().take(ERROR_LABEL_MAX).collect();
            let labels = Labels::from_pairs([("rule_group", r.group.as_str()), ("rule", &r.name), ("error", &error)]);
            sample(out, "zkalert_rule_last_error_info", &label_text(&labels, None), 1.0);
        }
    }
    let mut groups: Vec<(&str, Timestamp, f64)> = Vec::new();
    for r in &snap.rules {
        let Some(at) = r.last_evaluation else { continue };
        match groups.iter_mut().find(|(g, ..)| *g == r.group) {
            Some(g) => {
                g.1 = g.1.max(at);
                g.2 += r.last_duration.as_secs_f64();
            }
            None => groups.push((&r.group, at, r.last_duration.as_secs_f64())),
        }
    }
    family(
        out,
        "zkalert_rule_group_last_evaluation_timestamp_seconds",
        "When the rule group was last evaluated (Unix time).",
        "gauge",
    );
    for (group, at, _) in &groups {
        let labels = label_text(&Labels::from_pairs([("rule_group", *group)]), None);
        sample(out, "zkalert_rule_group_last_evaluation_timestamp_seconds", &labels, at.as_secs_f64());
    }
    family(out, "zkalert_rule_group_last_duration_seconds", "How long the rule group's last evaluation took.", "gauge");
    for (group, _, took) in &groups {
        let labels = label_text(&Labels::from_pairs([("rule_group", *group)]), None);
        sample(out, "zkalert_rule_group_last_duration_seconds", &labels, *took);
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line; `labels` in exposition form (may be empty).
fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
    out.push('\n');
}

/// `a="x",b="y"`: the valid label names of `labels` (Prometheus reserves
/// `__`), values escaped, and `role` when given.
fn label_text(labels: &Labels, role: Option<&str>) -> String {
    let mut text = String::new();
    let pairs = labels.iter().filter(|(name, _)| *name != ROLE).chain(role.map(|r| (ROLE, r)));
    for (name, value) in pairs.filter(|(name, _)| is_label_name(name)) {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(name);
        text.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\n' => text.push_str("\\n"),
                c => text.push(c),
            }
        }
        text.push('"');
    }
    text
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub(super) fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
