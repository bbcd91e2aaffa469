use super::*;
use crate::api::StatusView;
use crate::clock::ManualClock;
use crate::config::{NotifierConfig, NotifierKind};
use crate::model::{Labels, STALE_NAN};
use crate::notify::template::Rendering;
use crate::pipeline::PipelineConfig;
use crate::runner::{Runner, channels};
use crate::source::SeriesBatch;
use crate::store::SeriesStore;
use crate::test_support::{poll, rules_from_yaml};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One sample of an exposition: name, labels, value.
type Parsed = (String, BTreeMap<String, String>, f64);

/// The samples of a text exposition (a small parser: quoted values with
/// escapes, no timestamps), failing on a line it cannot read.
pub(crate) fn parse(text: &str) -> Vec<Parsed> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, mut rest) = series.split_once('{').map_or((series, ""), |(n, r)| (n, r));
        let mut labels = BTreeMap::new();
        while let Some((label, after)) = rest.split_once("=\"") {
            let label = label.trim_start_matches(',');
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => panic!("bad escape in {line}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated value in {line}"),
                }
            };
            labels.insert(label.to_string(), value);
            rest = &after[end + 1..];
        }
        assert!(super::exposition::is_metric_name(name), "bad name {name:?} in {line}");
        out.push((name.to_string(), labels, value));
    }
    out
}

/// The value of the sample named `name` with exactly these labels.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse(text).into_iter().find(|(n, l, _)| n == name && *l == want).map(|(.., v)| v)
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

/// A ZooKeeper node's poll: its target labels, its role, these values.
fn node_poll(instance: &str, role: &str, secs: i64, values: &[(&str, f64)]) -> PollBatch {
    PollBatch {
        series: vec![SeriesBatch {
            labels: Labels::from_pairs([("cluster", "c1"), ("instance", instance)]),
            info: Some(Labels::from_pairs([("role", role)])),
            timestamp: at(secs),
            values: values.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        }],
    }
}

const LATENCY_RULES: &str = "groups:\n- name: zk\n  rules:\n  - alert: Slow\n    expr: zk_avg_latency > 100\n    severity: P2\n  - alert: Many\n    expr: zk_znode_count > 1000000\n";

fn scrape(runner: &Runner, now: Timestamp) -> String {
    let snap = runner.snapshot(now, &StatusView::default());
    runner.metrics.render(&snap, Some(&export_series(&runner.store, now)), now)
}

#[test]
fn polled_zookeeper_series_are_reexported_with_cluster_instance_and_role() {
    let rules = Arc::new(rules_from_yaml(LATENCY_RULES).unwrap());
    let mut runner = Runner::new(rules, Duration::from_secs(10), PipelineConfig::defaults_to(&[]), Vec::new());
    let clock = ManualClock::new(at(0));
    runner.ingest(
        0,
        node_poll("zk1:2181", "leader", 0, &[("up", 1.0), ("zk_avg_latency", 3.5), ("zk_znode_count", 42.0)]),
    );
    runner.ingest(1, node_poll("zk2:2181", "follower", 0, &[("up", 1.0), ("zk_avg_latency", 7.0)]));
    runner.evaluate(&clock);
    let text = scrape(&runner, at(0));
    let node = |i: &'static str, role: &'static str| [("cluster", "c1"), ("instance", i), ("role", role)];
    assert_eq!(value(&text, "zk_avg_latency", &node("zk1:2181", "leader")), Some(3.5), "{text}");
    assert_eq!(value(&text, "zk_avg_latency", &node("zk2:2181", "follower")), Some(7.0));
    assert_eq!(value(&text, "zk_znode_count", &node("zk1:2181", "leader")), Some(42.0));
    assert!(text.contains("# TYPE zk_znode_count untyped\n"), "{text}");
    assert!(!text.contains("\nup{"), "`up` is Prometheus's own: not re-exported");
    // An election: the series carries the new role.
    runner.ingest(0, node_poll("zk1:2181", "follower", 10, &[("up", 1.0), ("zk_avg_latency", 4.0)]));
    let text = scrape(&runner, at(10));
    assert_eq!(value(&text, "zk_avg_latency", &node("zk1:2181", "follower")), Some(4.0));
    assert_eq!(value(&text, "zk_avg_latency", &node("zk1:2181", "leader")), None);
    // zk_znode_count went missing from zk1's poll: stale, not exported.
    assert_eq!(value(&text, "zk_znode_count", &node("zk1:2181", "follower")), None, "{text}");
}

#[test]
fn only_valid_fresh_values_and_names_are_exported() {
    let mut store = SeriesStore::default();
    let labels = Labels::from_pairs([("cluster", "c\"1\\\n"), ("instance", "a"), ("bad-label", "x"), ("__x", "y")]);
    for (name, v) in [("zk_ok", 1.0), ("zk_bad-name", 2.0), ("zk_nan", f64::NAN), ("zk_inf", f64::INFINITY)] {
        store.ingest(name, &labels, at(0), v);
    }
    store.ingest("zk_stale", &labels, at(0), 5.0);
    store.ingest("zk_stale", &labels, at(1), STALE_NAN);
    store.ingest("zk_old", &labels, at(-400), 6.0);
    store.ingest("other_metric", &labels, at(0), 7.0);
    let export = export_series(&store, at(1));
    let mut text = String::new();
    export.write(&mut text);
    let samples = parse(&text);
    let names: Vec<&str> = samples.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(names, ["zk_inf", "zk_ok"], "{text}");
    let want: BTreeMap<String, String> =
        [("cluster", "c\"1\\\n"), ("instance", "a")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(samples[1], ("zk_ok".to_string(), want, 1.0), "escaped values, invalid label names left out");
    assert!(text.contains("zk_inf{") && text.contains("} +Inf\n"), "{text}");
    assert_eq!(export.len(), 2);
}

#[test]
fn milliseconds_are_reexported_in_seconds_and_a_type_leaves_a_name() {
    let mut store = SeriesStore::default();
    let labels = Labels::from_pairs([("instance", "a")]);
    for (name, v) in [
        ("zk_probe_latency_ms", 250.0),
        ("zk_cnt_jvm_pause_time_ms", 3.0),
        ("zk_max_jvm_pause_time_ms", 1500.0),
        ("zk_zxid_counter", 17.0),
        // Both as polled: the polled name wins over a renamed one.
        ("zk_x_seconds", 1.0),
        ("zk_x_ms", 2000.0),
    ] {
        store.ingest(name, &labels, at(0), v);
    }
    let mut text = String::new();
    export_series(&store, at(0)).write(&mut text);
    let samples: Vec<(String, f64)> = parse(&text).into_iter().map(|(n, _, v)| (n, v)).collect();
    let want = [
        ("zk_cnt_jvm_pause_time", 3.0),
        ("zk_max_jvm_pause_time_seconds", 1.5),
        ("zk_probe_latency_seconds", 0.25),
        ("zk_x_seconds", 1.0),
        ("zk_zxid_count", 17.0),
    ];
    assert_eq!(samples, want.map(|(n, v)| (n.to_string(), v)), "{text}");
    assert_eq!(reexported_name("zk_avg_latency").as_deref(), Some("zk_avg_latency"));
    assert_eq!(reexported_name("up"), None);
}

#[test]
fn polls_errors_and_durations_are_counted_per_source_and_instance() {
    let metrics = Metrics::new();
    let mut failed = node_poll("zk2:2181", "leader", 0, &[("up", 0.0), ("scrape_duration_seconds", 2.0)]);
    failed.series[0].info = Some(Labels::from_pairs([(crate::source::failures::POLL_ERROR, "timeout")]));
    for _ in 0..3 {
        metrics.observe_poll(
            "zookeeper/c1",
            &node_poll("zk1:2181", "leader", 0, &[("up", 1.0), ("scrape_duration_seconds", 0.02)]),
        );
    }
    metrics.observe_poll("zookeeper/c1", &failed);
    // A series without `up` (per-client connections) is no target.
    metrics.observe_poll("zookeeper/c1", &poll("zk1:2181", 0, &[("zk_connections", 3.0)]));
    let text = metrics.render(&crate::api::Snapshot::default(), None, at(0));
    let target = |i| [("source", "zookeeper/c1"), ("instance", i)];
    assert_eq!(value(&text, "zkalert_polls_total", &target("zk1:2181")), Some(3.0));
    assert_eq!(value(&text, "zkalert_polls_total", &target("zk2:2181")), Some(1.0));
    let error = [("source", "zookeeper/c1"), ("instance", "zk2:2181"), ("reason", "timeout")];
    assert_eq!(value(&text, "zkalert_poll_errors_total", &error), Some(1.0));
    assert_eq!(value(&text, "zkalert_poll_duration_seconds_count", &target("zk1:2181")), Some(3.0));
    assert_eq!(value(&text, "zkalert_poll_duration_seconds_sum", &target("zk2:2181")), Some(2.0));
    let in_025 = [("source", "zookeeper/c1"), ("instance", "zk1:2181"), ("le", "0.025")];
    assert_eq!(value(&text, "zkalert_poll_duration_seconds_bucket", &in_025), Some(3.0));
    assert_eq!(value(&text, "zkalert_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert!(!text.contains("zkalert_alerts"), "no snapshot gauges before the first step");
}

#[test]
fn the_source_label_of_a_scraped_url_hides_its_credentials_and_query() {
    let label = source_label("prometheus/http://user:s3cret@zk1:7000/metrics?token=T0KEN");
    assert_eq!(label, "prometheus/http://zk1:7000/…");
    assert_eq!(source_label("zookeeper/prod"), "zookeeper/prod");
}

#[test]
fn rule_groups_alerts_and_the_pipeline_are_measured_as_the_runner_steps() {
    let yaml = "groups:\n- name: zk\n  rules:\n  - alert: Slow\n    expr: zk_avg_latency > 100\n    severity: P2\n- name: broken\n  rules:\n  - alert: Mixed\n    expr: zk_avg_latency > \"abc\"\n";
    let rules = Arc::new(rules_from_yaml(yaml).unwrap());
    let mut runner = Runner::new(rules, Duration::from_secs(10), PipelineConfig::defaults_to(&[]), Vec::new());
    let clock = ManualClock::new(at(0));
    runner.ingest(0, node_poll("zk1:2181", "leader", 0, &[("up", 1.0), ("zk_avg_latency", 500.0)]));
    runner.evaluate(&clock);
    runner.evaluate(&clock); // nothing due at the same time: not counted twice
    clock.set(at(10));
    runner.ingest(0, node_poll("zk1:2181", "leader", 10, &[("up", 1.0), ("zk_avg_latency", 500.0)]));
    runner.evaluate(&clock);
    let text = scrape(&runner, at(10));
    let group = |g| [("rule_group", g)];
    assert_eq!(value(&text, "zkalert_rule_group_evaluations_total", &group("zk")), Some(2.0), "{text}");
    assert_eq!(value(&text, "zkalert_rule_group_evaluation_duration_seconds_count", &group("zk")), Some(2.0));
    assert_eq!(value(&text, "zkalert_rule_group_evaluation_failures_total", &group("broken")), Some(2.0));
    assert_eq!(value(&text, "zkalert_rule_group_evaluation_failures_total", &group("zk")), None);
    assert_eq!(value(&text, "zkalert_rule_group_last_evaluation_timestamp_seconds", &group("zk")), Some(10.0));
    assert_eq!(value(&text, "zkalert_rule_healthy", &[("rule_group", "zk"), ("rule", "Slow")]), Some(1.0));
    assert_eq!(value(&text, "zkalert_rule_healthy", &[("rule_group", "broken"), ("rule", "Mixed")]), Some(0.0));
    let error = parse(&text).into_iter().find(|(n, ..)| n == "zkalert_rule_last_error_info").expect("last error");
    assert_eq!(error.1["rule"], "Mixed");
    assert!(!error.1["error"].is_empty());
    assert_eq!(value(&text, "zkalert_alerts", &[("state", "firing"), ("tier", "P2")]), Some(1.0));
    assert_eq!(value(&text, "zkalert_alerts", &[("state", "pending"), ("tier", "P0")]), Some(0.0));
    let steps = value(&text, "zkalert_pipeline_step_duration_seconds_count", &[]).unwrap();
    assert!(steps >= 1.0, "{steps}");
    assert_eq!(value(&text, "zkalert_config_last_reload_successful", &[]), Some(1.0));
}

/// A report of a delivery to channel `c`.
fn report(result: Result<(), crate::notify::SendError>, done: bool) -> Report {
    let message = Arc::new(crate::notify::template::samples().remove(0));
    let delivery = crate::notify::Delivery { message, channel: "c".into() };
    Report { delivery, at: at(0), attempts: 1, result, done }
}

#[test]
fn names_lists_every_family_a_scrape_shows() {
    let yaml = "groups:\n- name: g\n  rules:\n  - alert: Bad\n    expr: x > \"abc\"\n";
    let mut runner = Runner::new(
        Arc::new(rules_from_yaml(yaml).unwrap()),
        Duration::from_secs(10),
        PipelineConfig::defaults_to(&[]),
        Vec::new(),
    );
    runner.ingest(0, node_poll("zk1:2181", "leader", 0, &[("up", 0.0), ("scrape_duration_seconds", 0.1), ("x", 1.0)]));
    runner
        .metrics
        .observe_poll("s", &node_poll("zk1:2181", "leader", 0, &[("up", 0.0), ("scrape_duration_seconds", 0.1)]));
    runner.evaluate(&ManualClock::new(at(0)));
    runner.metrics.observe_state_commit(Duration::ZERO, false);
    runner.metrics.observe_heartbeat_ping(true, at(0));
    runner.metrics.set_replica_role("active");
    runner.metrics.set_replica_sending("shared", 0);
    for (result, done) in [
        (Ok(()), true),
        (Err(crate::notify::SendError::Retryable("x".into())), false),
        (Err(crate::notify::SendError::Permanent("x".into())), true),
    ] {
        runner.metrics.observe_report(&report(result, done));
    }
    runner.metrics.observe_daily_report("prod", "made");
    runner.metrics.report_succeeded("prod", at(0));
    let text = scrape(&runner, at(0));
    let mut shown: Vec<String> = parse(&text).into_iter().map(|(n, ..)| n).filter(|n| !n.starts_with("zk_")).collect();
    shown.dedup();
    shown.sort();
    shown.dedup();
    let mut listed: Vec<String> = runner.metrics.names().map(str::to_string).collect();
    listed.sort();
    assert_eq!(shown, listed);
}

#[test]
fn a_failed_reload_keeps_the_time_of_the_last_good_one() {
    let metrics = Metrics::new();
    metrics.set_config_reload(true, at(100));
    metrics.set_config_reload(false, at(200));
    let text = metrics.render(&crate::api::Snapshot::default(), None, at(200));
    assert_eq!(value(&text, "zkalert_config_last_reload_successful", &[]), Some(0.0));
    assert_eq!(value(&text, "zkalert_config_last_reload_success_timestamp_seconds", &[]), Some(100.0));
}

/// The deliverer's next report, within 10 s.
async fn next(reports: &mut tokio::sync::mpsc::UnboundedReceiver<Report>) -> Report {
    tokio::time::timeout(Duration::from_secs(10), reports.recv()).await.expect("a report in 10 s").expect("a report")
}

#[tokio::test]
async fn notifications_are_counted_sent_retried_and_failed_per_channel_and_the_outbox_age_shown() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_from_yaml("groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    severity: P0\n");
    // `bad` writes under a path whose parent is a file: it always fails.
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, "").unwrap();
    let file = |name: &str, path: std::path::PathBuf| NotifierConfig::new(name, NotifierKind::File { path });
    let notifiers = [file("bad", blocker.join("bad.jsonl")), file("good", dir.path().join("good.jsonl"))];
    let mut config = PipelineConfig::defaults_to(&["bad".into(), "good".into()]);
    let policy = Arc::make_mut(&mut config.policy);
    policy.tiers[0].channels = vec!["bad".into()];
    for t in &mut policy.tiers {
        t.group_wait = Duration::ZERO;
    }
    let mut runner = Runner::new(
        Arc::new(rules.unwrap()),
        Duration::from_secs(5),
        config,
        channels::of(&notifiers, &Rendering::builtin()),
    );
    let mut reports = runner.reports.take().unwrap();
    let clock = Arc::new(ManualClock::new(at(0)));
    runner.deliverer.set_clock(clock.clone());
    runner.ingest(0, poll("a", 0, &[("up", 0.0)]));
    assert_eq!(runner.evaluate(clock.as_ref()).len(), 1);
    // The first attempt fails well before the P0 deadline: a retry.
    runner.on_report(next(&mut reports).await);
    clock.set(at(40));
    let text = scrape(&runner, at(40));
    assert_eq!(value(&text, "zkalert_notifications_retried_total", &[("channel", "bad")]), Some(1.0), "{text}");
    assert_eq!(value(&text, "zkalert_outbox_pending_deliveries", &[]), Some(1.0));
    assert_eq!(value(&text, "zkalert_outbox_oldest_pending_age_seconds", &[]), Some(40.0));
    // Past the deadline the next attempt gives up, and the page falls over.
    clock.set(at(3600));
    for _ in 0..2 {
        runner.on_report(next(&mut reports).await);
    }
    let text = scrape(&runner, at(3600));
    assert_eq!(value(&text, "zkalert_notifications_failed_total", &[("channel", "bad")]), Some(1.0), "{text}");
    assert_eq!(value(&text, "zkalert_notifications_sent_total", &[("channel", "good")]), Some(1.0));
    assert_eq!(value(&text, "zkalert_outbox_oldest_pending_age_seconds", &[]), Some(0.0), "nothing pending");
}
