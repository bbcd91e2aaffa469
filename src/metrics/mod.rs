//! `GET /metrics`: zkalert's own health for Prometheus, and the ZooKeeper
//! series it polls re-exported (`zk_*`), so a team charts ZooKeeper in
//! Grafana without a separate exporter. Counters and histograms are
//! updated where things happen (atomics, no lock the runner waits on);
//! gauges of state (alerts, rule health, outbox) are read from the API's
//! snapshot at scrape time, and the `zk_*` series from the store through
//! one runner command per scrape (`exposition`).

mod exposition;

pub use exposition::{CONTENT_TYPE, SeriesExport, export_series, reexported_name};

use crate::model::Timestamp;
use crate::notify::delivery::Report;
use crate::rule::tracker::RuleState;
use crate::rule::{RuleHealth, RuleSet};
use crate::source::PollBatch;
use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::time::Duration;

/// Buckets for polls, rule groups, pipeline steps and SQLite commits:
/// 1 ms to 30 s (a poll's timeout is a few seconds).
const DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The values of `zkalert_replica_role`'s `role` label.
pub const REPLICA_ROLES: [&str; 5] = ["joining", "active", "standby", "disconnected", "expired"];

/// The values of `zkalert_replica_sending`'s `mode` label.
pub const REPLICA_SENDING: [&str; 4] = ["shared", "standby", "held", "alone"];

/// The `source` label of a source's metrics: its name, with a URL in it
/// cut to scheme, host and port (a scraped URL may carry a token).
pub fn source_label(source_name: &str) -> String {
    match source_name.split_once('/') {
        Some((kind, url)) if url.contains("://") => format!("{kind}/{}", crate::notify::http::redact_url(url)),
        _ => source_name.to_string(),
    }
}

/// zkalert's counters, histograms and the few gauges set from outside the
/// snapshot (build info, config reload). One per process, shared by the
/// runner, the source tasks and the API.
pub struct Metrics {
    registry: Registry,
    /// The names of the registered series (a histogram's three).
    names: Vec<String>,
    polls: IntCounterVec,
    poll_errors: IntCounterVec,
    poll_duration: HistogramVec,
    rule_group_evaluations: IntCounterVec,
    rule_group_failures: IntCounterVec,
    rule_group_duration: HistogramVec,
    pipeline_step_duration: Histogram,
    state_commit_duration: Histogram,
    state_commit_failures: IntCounter,
    notifications_sent: IntCounterVec,
    notifications_failed: IntCounterVec,
    notifications_retried: IntCounterVec,
    config_reload_successful: IntGauge,
    config_reload_success_timestamp: Gauge,
    heartbeat_pings: IntCounterVec,
    heartbeat_last_success_timestamp: Gauge,
    heartbeat_healthy: IntGauge,
    replica_role: IntGaugeVec,
    replica_sending: IntGaugeVec,
    replica_held: IntGauge,
    intake_alerts: IntCounterVec,
    reports: IntCounterVec,
    report_last_success_timestamp: GaugeVec,
}

/// `zkalert_reports_total`'s outcomes: made (gathered, rendered), written (its HTML file), mailed (to one email
/// notifier), failed (an attempt to write or mail it; retried), gave_up (no more attempts).
pub const REPORT_OUTCOMES: [&str; 5] = ["made", "written", "mailed", "failed", "gave_up"];

/// `zkalert_intake_alerts_total`'s outcomes.
const INTAKE_OUTCOMES: [&str; 3] = ["accepted", "defaulted", "refused"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The registry and the series names it will expose, as metrics are added.
struct Registering {
    registry: Registry,
    names: Vec<String>,
}

impl Registering {
    /// Registers `metric`, whose name and labels are constants here: an
    /// error is a bug in this file (a clash or a bad name), caught by every
    /// test that builds a runner.
    fn add<C: Collector + Clone + 'static>(&mut self, metric: prometheus::Result<C>) -> C {
        let metric = metric.unwrap_or_else(|e| panic!("zkalert's metric definitions are invalid: {e}"));
        self.names.extend(metric.desc().iter().map(|d| d.fq_name.clone()));
        self.registry.register(Box::new(metric.clone())).unwrap_or_else(|e| panic!("zkalert's metrics clash: {e}"));
        metric
    }

    /// Registers a histogram (or a vector of them): its series are named
    /// `_bucket`, `_sum` and `_count`.
    fn add_histogram<C: Collector + Clone + 'static>(&mut self, metric: prometheus::Result<C>) -> C {
        let metric = self.add(metric);
        if let Some(name) = self.names.pop() {
            self.names.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
        }
        metric
    }

    fn counters(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn histograms(&mut self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        self.add_histogram(HistogramVec::new(histogram_opts(name, help), labels))
    }

    fn histogram(&mut self, name: &str, help: &str) -> Histogram {
        self.add_histogram(Histogram::with_opts(histogram_opts(name, help)))
    }
}

fn histogram_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec())
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registering { registry: Registry::new(), names: Vec::new() };
        let build_info: IntGaugeVec = r.add(IntGaugeVec::new(
            Opts::new("zkalert_build_info", "Always 1; the running zkalert's version."),
            &["version"],
        ));
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let intake_alerts = r.counters(
            "zkalert_intake_alerts_total",
            "Alerts posted to /api/v2/alerts: accepted (with a mapped severity), defaulted (accepted at the default tier), refused.",
            &["outcome"],
        );
        for outcome in INTAKE_OUTCOMES {
            // Shown at 0 before the first post.
            intake_alerts.with_label_values(&[outcome]);
        }
        let config_reload_successful = r.add(IntGauge::new(
            "zkalert_config_last_reload_successful",
            "1 if the last load of the configuration and rules succeeded, else 0.",
        ));
        config_reload_successful.set(1);
        let reports = r.counters(
            "zkalert_reports_total",
            "Scheduled reports, by cluster and outcome: made, written (HTML file), mailed (per email notifier), failed (an attempt, retried), gave_up.",
            &["cluster", "outcome"],
        );
        let report_last_success_timestamp = r.add(GaugeVec::new(
            Opts::new(
                "zkalert_report_last_success_timestamp_seconds",
                "When a cluster's scheduled report was last written and mailed everywhere it goes.",
            ),
            &["cluster"],
        ));
        Self {
            reports,
            report_last_success_timestamp,
            polls: r.counters(
                "zkalert_polls_total",
                "Polls of each target (a ZooKeeper node, a scraped endpoint).",
                &["source", "instance"],
            ),
            poll_errors: r.counters(
                "zkalert_poll_errors_total",
                "Polls of a target that got no reply (up 0), by reason.",
                &["source", "instance", "reason"],
            ),
            poll_duration: r.histograms(
                "zkalert_poll_duration_seconds",
                "How long the poll of a target took.",
                &["source", "instance"],
            ),
            rule_group_evaluations: r.counters(
                "zkalert_rule_group_evaluations_total",
                "Evaluations of each rule group.",
                &["rule_group"],
            ),
            rule_group_failures: r.counters(
                "zkalert_rule_group_evaluation_failures_total",
                "Evaluations of a rule group in which a rule failed.",
                &["rule_group"],
            ),
            rule_group_duration: r.histograms(
                "zkalert_rule_group_evaluation_duration_seconds",
                "How long one evaluation of a rule group took.",
                &["rule_group"],
            ),
            intake_alerts,
            pipeline_step_duration: r.histogram(
                "zkalert_pipeline_step_duration_seconds",
                "How long one step of the notification pipeline took (inhibit, silence, maintenance, dispatch).",
            ),
            state_commit_duration: r.histogram(
                "zkalert_state_commit_duration_seconds",
                "How long writing one step to the SQLite state file took.",
            ),
            state_commit_failures: r.add(IntCounter::new(
                "zkalert_state_commit_failures_total",
                "Steps that could not be written to the state file (kept for the next write).",
            )),
            notifications_sent: r.counters(
                "zkalert_notifications_sent_total",
                "Deliveries a notifier accepted.",
                &["channel"],
            ),
            notifications_failed: r.counters(
                "zkalert_notifications_failed_total",
                "Deliveries given up (permanent error or past the tier's deadline).",
                &["channel"],
            ),
            notifications_retried: r.counters(
                "zkalert_notifications_retried_total",
                "Delivery attempts that failed and will be retried.",
                &["channel"],
            ),
            config_reload_successful,
            config_reload_success_timestamp: r.add(Gauge::new(
                "zkalert_config_last_reload_success_timestamp_seconds",
                "When the configuration and rules were last loaded successfully (Unix time).",
            )),
            heartbeat_pings: r.counters(
                "zkalert_heartbeat_pings_total",
                "Pings of the heartbeat (dead man's switch) URL, by result (success, failure).",
                &["result"],
            ),
            heartbeat_last_success_timestamp: r.add(Gauge::new(
                "zkalert_heartbeat_last_success_timestamp_seconds",
                "When a heartbeat ping last succeeded (Unix time); 0 before the first.",
            )),
            replica_role: r.add(IntGaugeVec::new(
                Opts::new(
                    "zkalert_replica_role",
                    "With `ha:` configured, 1 for this replica's role (active, standby, joining, disconnected, expired), 0 for the others.",
                ),
                &["role"],
            )),
            replica_sending: r.add(IntGaugeVec::new(
                Opts::new(
                    "zkalert_replica_sending",
                    "With `ha:` configured, 1 for how this replica sends (shared: active; standby; held: cut off from the coordination ensemble, holding its pages; alone: sending on its own), 0 for the others.",
                ),
                &["mode"],
            )),
            replica_held: r.add(IntGauge::new(
                "zkalert_replica_held_deliveries",
                "Deliveries this replica holds while cut off from the coordination ensemble (sent if it goes on its own).",
            )),
            heartbeat_healthy: r.add(IntGauge::new(
                "zkalert_heartbeat_pinging",
                "1 while the heartbeat pings (the run loop completes steps and this replica is active), else 0.",
            )),
            registry: r.registry,
            names: r.names,
        }
    }

    /// Every series name `/metrics` may show, but the re-exported `zk_*`
    /// ones (`SeriesExport`): what dashboards and alerting rules can query.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str).chain(exposition::SNAPSHOT_FAMILIES.iter().copied())
    }

    /// Counts one poll of a source (named by [`source_label`]): each target
    /// in it (a series with `up`) is polled once, failed when `up` is 0 (the
    /// reason is its `poll_error` info label), and took its
    /// `scrape_duration_seconds`.
    pub fn observe_poll(&self, source: &str, batch: &PollBatch) {
        for s in &batch.series {
            let value = |name: &str| s.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            let Some(up) = value("up") else { continue };
            let instance = s.labels.get("instance").unwrap_or("");
            self.polls.with_label_values(&[source, instance]).inc();
            if up == 0.0 {
                let reason = s.info.as_ref().and_then(|i| i.get(crate::source::failures::POLL_ERROR));
                self.poll_errors.with_label_values(&[source, instance, reason.unwrap_or("unknown")]).inc();
            }
            if let Some(seconds) = value("scrape_duration_seconds") {
                self.poll_duration.with_label_values(&[source, instance]).observe(seconds);
            }
        }
    }

    /// Counts the rule groups evaluated at `now` (their rules' last
    /// evaluation is `now`): `states` are the tracker's, in `rules`' order.
    pub fn observe_rule_groups(&self, rules: &RuleSet, states: &[RuleState], now: Timestamp) {
        let mut first = 0;
        for group in &rules.groups {
            let Some(group_states) = states.get(first..first + group.rules.len()) else { return };
            first += group.rules.len();
            if !group_states.iter().any(|s| s.last_evaluation == Some(now)) {
                continue;
            }
            let took: Duration = group_states.iter().map(|s| s.last_duration).sum();
            self.rule_group_evaluations.with_label_values(&[&group.name]).inc();
            self.rule_group_duration.with_label_values(&[&group.name]).observe(took.as_secs_f64());
            if group_states.iter().any(|s| matches!(s.health, RuleHealth::Err(_))) {
                self.rule_group_failures.with_label_values(&[&group.name]).inc();
            }
        }
    }

    pub fn observe_pipeline_step(&self, took: Duration) {
        self.pipeline_step_duration.observe(took.as_secs_f64());
    }

    /// One write of a step to the state file, and whether it succeeded.
    pub fn observe_state_commit(&self, took: Duration, ok: bool) {
        self.state_commit_duration.observe(took.as_secs_f64());
        if !ok {
            self.state_commit_failures.inc();
        }
    }

    /// Counts a deliverer's report: sent, retried or given up.
    pub fn observe_report(&self, report: &Report) {
        let counter = match (&report.result, report.done) {
            (Ok(()), _) => &self.notifications_sent,
            (Err(_), false) => &self.notifications_retried,
            (Err(_), true) => &self.notifications_failed,
        };
        counter.with_label_values(&[&report.delivery.channel]).inc();
    }

    /// Records a load of the configuration and rules: at start-up (done by
    /// `zkalert run`), and by a reload. A failed load keeps the time of the
    /// last good one, as Prometheus does.
    pub fn set_config_reload(&self, successful: bool, at: Timestamp) {
        self.config_reload_successful.set(i64::from(successful));
        if successful {
            self.config_reload_success_timestamp.set(at.as_secs_f64());
        }
    }

    /// One post to the intake: alerts taken with a mapped severity, taken
    /// at the default tier, and refused.
    /// Counts an outcome of a scheduled report (`REPORT_OUTCOMES`).
    pub fn observe_daily_report(&self, cluster: &str, outcome: &str) {
        self.reports.with_label_values(&[cluster, outcome]).inc();
    }

    /// A cluster's report was written and mailed everywhere it goes, at `at`.
    pub fn report_succeeded(&self, cluster: &str, at: crate::model::Timestamp) {
        self.report_last_success_timestamp.with_label_values(&[cluster]).set(at.as_millis() as f64 / 1000.0);
    }

    pub fn observe_intake(&self, mapped: usize, defaulted: usize, refused: usize) {
        for (outcome, n) in INTAKE_OUTCOMES.into_iter().zip([mapped, defaulted, refused]) {
            self.intake_alerts.with_label_values(&[outcome]).inc_by(n as u64);
        }
    }

    /// One heartbeat ping sent at `at`, and whether the service accepted it.
    pub fn observe_heartbeat_ping(&self, ok: bool, at: Timestamp) {
        self.heartbeat_pings.with_label_values(&[if ok { "success" } else { "failure" }]).inc();
        if ok {
            self.heartbeat_last_success_timestamp.set(at.as_secs_f64());
        }
    }

    /// This replica's role (with `ha:` configured): 1 for `role`, 0 for the others.
    pub fn set_replica_role(&self, role: &str) {
        for r in REPLICA_ROLES {
            self.replica_role.with_label_values(&[r]).set(i64::from(r == role));
        }
    }

    /// How this replica sends (with `ha:` configured), and what it holds.
    pub fn set_replica_sending(&self, mode: &str, held: usize) {
        for m in REPLICA_SENDING {
            self.replica_sending.with_label_values(&[m]).set(i64::from(m == mode));
        }
        self.replica_held.set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Whether the heartbeat pings (or is held: starting, stalled, standby).
    pub fn set_heartbeat_healthy(&self, pinging: bool) {
        self.heartbeat_healthy.set(i64::from(pinging));
    }

    /// The exposition at `now`: the registered metrics, the gauges read
    /// from `snapshot` (once the runner published one) and `series`, the
    /// re-exported ZooKeeper series (`None` when the runner did not answer).
    pub fn render(&self, snapshot: &crate::api::Snapshot, series: Option<&SeriesExport>, now: Timestamp) -> String {
        let mut out = String::with_capacity(series.map_or(0, SeriesExport::text_size_hint) + 16 * 1024);
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            // Writing to a String fails only on an invalid metric, a bug here.
            tracing::error!(error = %e, "cannot encode zkalert's metrics");
        }
        if snapshot.published {
            exposition::write_snapshot(&mut out, snapshot, now);
        }
        if let Some(series) = series {
            series.write(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests;
