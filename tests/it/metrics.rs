//! `GET /metrics` of the real binary as a Prometheus user meets it: a real
//! Prometheus (Debian's `prometheus`) scrapes it and answers PromQL over
//! the re-exported ZooKeeper series, `promtool check metrics` finds no
//! problem in it, and the shipped Grafana dashboard queries only metrics
//! zkalert exports.

use crate::support::http::free_port;
use crate::support::http::{MetricsServer, get};
use crate::support::process::tail;
use crate::support::prometheus::Prometheus;
use crate::support::zkalert::{RunConfig, ZkalertRun};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RULES: &str = "groups:
  - name: zk
    interval: 1s
    rules:
      - alert: ZkSlow
        expr: zk_avg_latency > 1000
        severity: P2
      - alert: ZkManyZnodes
        expr: zk_znode_count > 1000000
        severity: P3
";

/// zkalert scraping `source_port` as the node `zk1:2181` of cluster `c1`
/// every second, its API on `api_port`.
fn config(source_port: u16, api_port: u16) -> String {
    format!(
        "evaluation_interval: 1s
data_dir: data
rules: [rules.yaml]
server: {{listen: '127.0.0.1:{api_port}'}}
sources:
  - type: prometheus
    url: http://127.0.0.1:{source_port}/metrics
    cluster: c1
    instance: zk1:2181
    interval: 1s
    timeout: 500ms
notifiers:
  - {{name: events, type: file, path: notifications.jsonl}}
"
    )
}

/// Polls `probe` every 100 ms until it gives a value; panics after
/// `timeout` with `context()`.
fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>, context: impl Fn() -> String) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `promtool check metrics` on `text`: what it printed if it found a
/// problem (or could not run).
fn promtool_problems(text: &str) -> Option<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (!out.status.success() || !printed.trim().is_empty()).then(|| format!("{}: {printed}", out.status))
}

#[test]
fn prometheus_scrapes_the_reexported_zookeeper_series_and_promtool_finds_no_problem() {
    let source = MetricsServer::start();
    // `zk_znode_count`: promtool flags a gauge named like a count, so the
    // re-export must not call it one.
    source.set_text("# TYPE zk_avg_latency gauge\nzk_avg_latency 7.25\nzk_znode_count 12\n".into());
    let api = free_port();
    let yaml = config(source.port, api);
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &[("rules.yaml", RULES)]);
    let series = r#"zk_avg_latency{cluster="c1",instance="zk1:2181"}"#;
    let log = run.log.clone();
    let text = wait_for(
        "zk_avg_latency in zkalert's /metrics",
        Duration::from_secs(30),
        || {
            run.assert_running();
            get(api, "/metrics", Duration::from_secs(5)).filter(|(s, body)| *s == 200 && body.contains(series))
        },
        || tail(&log, 30),
    )
    .1;
    assert!(text.contains(&format!("{series} 7.25\n")), "{text}");
    assert!(text.contains("zk_znode_count{cluster=\"c1\",instance=\"zk1:2181\"} 12\n"), "{text}");
    let polls = text.lines().find(|l| l.starts_with("zkalert_polls_total{") && l.contains(r#"instance="zk1:2181""#));
    assert!(polls.is_some(), "the poll is counted: {text}");
    assert!(text.contains("zkalert_poll_duration_seconds_count{"), "poll durations, though no rule reads them: {text}");
    if let Some(problems) = promtool_problems(&text) {
        panic!("promtool check metrics: {problems}\nin:\n{text}");
    }

    let prometheus = Prometheus::start(api);
    let value = |run: &mut ZkalertRun, want: &str| {
        wait_for(
            &format!("Prometheus to answer {series} = {want}"),
            Duration::from_secs(60),
            || {
                run.assert_running();
                let result = prometheus.query(series)?;
                (result.len() == 1 && result[0].1 == want).then(|| result[0].0.clone())
            },
            || format!("last answer: {:?}\nprometheus log:\n{}", prometheus.query(series), prometheus.log()),
        )
    };
    let labels = value(&mut run, "7.25");
    assert_eq!(labels["job"], "zkalert");
    // The latest polled value, not a copy made once.
    source.set_text("# TYPE zk_avg_latency gauge\nzk_avg_latency 9.5\n".into());
    value(&mut run, "9.5");
    let own = prometheus.query("zkalert_build_info").expect("build info");
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0].1, "1");
}

#[test]
fn every_documented_zookeeper_metric_is_reexported_under_a_name_promtool_accepts() {
    let now = zkalert::model::Timestamp::from_millis(0);
    let mut store = zkalert::store::SeriesStore::default();
    let node = zkalert::model::Labels::from_pairs([("cluster", "c1"), ("instance", "zk1:2181")]);
    let documented = &zkalert::rule::catalogue::catalogue().names;
    // And summaries `mntr` prints in milliseconds, which docs/metrics.md
    // names only by pattern.
    let summaries = ["avg", "min", "max", "cnt", "sum"].map(|s| format!("zk_{s}_jvm_pause_time_ms"));
    for name in documented.iter().filter(|n| n.starts_with("zk_")).chain(&summaries) {
        store.ingest(name, &node, now, 1.0);
    }
    let export = zkalert::metrics::export_series(&store, now);
    assert!(export.len() > 50, "{}", export.len());
    let text = zkalert::metrics::Metrics::new().render(&Default::default(), Some(&export), now);
    if let Some(problems) = promtool_problems(&text) {
        panic!("promtool check metrics: {problems}");
    }
}

// ---- the Grafana dashboard ----

/// Metric names a PromQL expression selects: identifiers outside strings,
/// label matchers (`{…}`), ranges (`[…]`) and grouping label lists
/// (`by (…)`), that are neither a function call nor a keyword.
fn metric_names(expr: &str) -> Vec<String> {
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"];
    let chars: Vec<char> = expr.chars().collect();
    // From a quote to just past its closing quote.
    let skip_string = |mut i: usize| {
        let quote = chars[i];
        i += 1;
        while i < chars.len() && chars[i] != quote {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    // From an opening bracket to just past its closing one.
    let skip_to = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(i);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    let word = |start: usize| {
        let end = (start..chars.len())
            .find(|&j| !(chars[j].is_ascii_alphanumeric() || chars[j] == '_' || chars[j] == ':'))
            .unwrap_or(chars.len());
        (chars[start..end].iter().collect::<String>(), end)
    };
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(i),
            '{' => i = skip_to(i, '{', '}'),
            '[' => i = skip_to(i, '[', ']'),
            // A number, a duration (`5m`) or a variable (`$cluster`).
            c if c.is_ascii_digit() || c == '.' || c == '$' => i = word(i + 1).1,
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let (name, end) = word(i);
                let next = chars[end..].iter().position(|c| !c.is_whitespace()).map(|k| end + k);
                // `sum by (…) (…)` calls `sum` too.
                let call = next.is_some_and(|k| chars[k] == '(' || ["by", "without"].contains(&word(k).0.as_str()));
                i = match next {
                    Some(k) if call && GROUPING.contains(&name.as_str()) => skip_to(k, '(', ')'),
                    _ => end,
                };
                if !call && !GROUPING.contains(&name.as_str()) && !KEYWORDS.contains(&name.to_lowercase().as_str()) {
                    names.push(name);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every PromQL expression of a dashboard: panel targets' `expr`, and the
/// metric of each `label_values(metric, label)` template variable.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v.as_str()) {
                        ("expr", Some(e)) => out.push(e.to_string()),
                        ("query" | "definition", Some(q)) if q.starts_with("label_values(") => {
                            let inner = &q["label_values(".len()..q.len() - 1];
                            out.push(inner.rsplit_once(',').map_or(inner, |(m, _)| m).to_string());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The names zkalert exports: its own, and the `zk_*` metrics the shipped
/// rule pack keeps (only metrics rules read are stored, so only those are
/// re-exported) that docs/metrics.md lists.
fn exported_names() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let paths = zkalert::embedded::write_rules(dir.path()).expect("write the shipped rules");
    let files = zkalert::rule::find_rule_files(&paths).expect("the shipped rule files");
    let rules = zkalert::rule::load_rules(&files, zkalert::rule::LoadOptions::default()).expect("the shipped rules");
    let documented = &zkalert::rule::catalogue::catalogue().names;
    let kept = documented.iter().filter(|n| rules.retention.keeps(n));
    let zk = kept.filter_map(|n| zkalert::metrics::reexported_name(n));
    zkalert::metrics::Metrics::new().names().map(str::to_string).chain(zk).collect()
}

/// The names `queries` select that zkalert does not export.
fn unknown_names(queries: &[String], exported: &BTreeSet<String>) -> BTreeSet<String> {
    queries.iter().flat_map(|q| metric_names(q)).filter(|n| !exported.contains(n)).collect()
}

#[test]
fn promql_metric_names_are_found_outside_matchers_ranges_and_label_lists() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, source) (rate(zkalert_poll_duration_seconds_bucket{job=~"z.*",x="a{b}"}[$__rate_interval] offset 5m))) / on(instance) group_left(role) zk_avg_latency or vector(0) > bool 1e3"#,
    );
    assert_eq!(names, ["zkalert_poll_duration_seconds_bucket", "zk_avg_latency"]);
    assert_eq!(metric_names("count(zkalert_rule_healthy == 0) or vector(0)"), ["zkalert_rule_healthy"]);
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_zkalert_exports() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grafana/zkalert.json");
    let text = std::fs::read_to_string(&path).expect("examples/grafana/zkalert.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| !p.is_empty()), "panels");
    let queries = dashboard_queries(&dashboard);
    let exported = exported_names();
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    for needed in ["zk_avg_latency", "zk_connections", "zk_outstanding_requests", "zk_znode_count"] {
        assert!(used.contains(needed), "the dashboard charts {needed}: {used:?}");
    }
    for needed in ["zkalert_poll_errors_total", "zkalert_alerts", "zkalert_notifications_failed_total"] {
        assert!(used.contains(needed), "the dashboard charts {needed}: {used:?}");
    }
    assert!(used.contains("zkalert_outbox_pending_deliveries"), "{used:?}");
    let unknown = unknown_names(&queries, &exported);
    assert!(unknown.is_empty(), "queries name metrics zkalert does not export: {unknown:?}");
    // The check bites: a query over a made-up metric (or one no shipped
    // rule reads, so never stored) is reported.
    let mut broken = queries.clone();
    broken.push(r#"rate(zk_made_up_total{cluster=~"$cluster"}[5m])"#.into());
    broken.push("zk_not_read_by_any_rule".into());
    let unknown = unknown_names(&broken, &exported);
    assert_eq!(unknown, BTreeSet::from(["zk_made_up_total".to_string(), "zk_not_read_by_any_rule".to_string()]));
}
