//! zkalert as Prometheus' Alertmanager: a real Prometheus (Debian's
//! `prometheus`) whose rule fires sends its alert to `POST /api/v2/alerts`;
//! zkalert pages it through a webhook at the mapped tier with its runbook,
//! and tells the resolution when the rule stops firing.

use crate::support::http::{Answer, MetricsServer, Receiver, free_port};
use crate::support::prometheus::Prometheus;
use crate::support::zkalert::{RunConfig, ZkalertRun, tiers_to};
use std::time::{Duration, Instant};

const PROMETHEUS_RULES: &str = "groups:
  - name: disks
    rules:
      - alert: DiskAlmostFull
        expr: disk_used_ratio > 0.9
        labels: {severity: critical}
        annotations:
          summary: 'disk {{ $labels.instance }} is {{ $value }} full'
          runbook_url: https://runbooks.example/disk-almost-full
";

/// Waits for a webhook request `pred` accepts.
fn wait_hook(
    hook: &Receiver,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        if let Some(r) = hook.received().into_iter().find(|r| pred(&r.body)) {
            return r.body;
        }
        assert!(
            t0.elapsed() < timeout,
            "no webhook with {what} within {timeout:?}; got {:#?}",
            hook.received().iter().map(|r| &r.body).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn names(body: &serde_json::Value, list: &str) -> Vec<String> {
    body[list].as_array().into_iter().flatten().filter_map(|a| a["alertname"].as_str().map(str::to_string)).collect()
}

#[test]
fn prometheus_alerts_are_paged_at_their_mapped_tier_with_their_runbook_and_resolved() {
    let node = MetricsServer::start();
    node.set_text("# TYPE disk_used_ratio gauge\ndisk_used_ratio 0.95\n".into());
    let hook = Receiver::start(vec![], Answer::Status(200));
    let api = free_port();
    // zkalert needs a source of its own: the same node, for nothing.
    let yaml = format!(
        "evaluation_interval: 1s
data_dir: data
server: {{listen: '127.0.0.1:{api}'}}
sources:
  - {{type: prometheus, url: 'http://127.0.0.1:{}/metrics', cluster: c1, instance: h1, interval: 5s}}
notifiers:
  - {{name: hook, type: webhook, url: '{}'}}
routing:
  tiers:
{}",
        node.port,
        hook.url(),
        tiers_to("hook", "1h")
    );
    let mut run = ZkalertRun::start_yaml(RunConfig::new(vec![], &[]), &yaml, &[]);
    let prometheus_yml = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.yml]
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ['127.0.0.1:{}']}}]
alerting:
  alertmanagers:
    - api_version: v2
      static_configs: [{{targets: ['127.0.0.1:{api}']}}]
",
        node.port
    );
    let prometheus = Prometheus::start_with(&prometheus_yml, &[("rules.yml", PROMETHEUS_RULES)]);
    let context = || format!("prometheus log:\n{}\nzkalert log:\n{}", prometheus.log(), run.log_tail(30));
    let fired = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_hook(&hook, "DiskAlmostFull firing", Duration::from_secs(60), |b| names(b, "firing") == ["DiskAlmostFull"])
    }))
    .unwrap_or_else(|_| panic!("{}", context()));
    assert_eq!(fired["tier"], "P1", "critical is P1: {fired:#}");
    let alert = &fired["firing"][0];
    assert_eq!(alert["runbook"], "https://runbooks.example/disk-almost-full", "{alert:#}");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["job"], "node");
    assert_eq!(alert["annotations"]["summary"], format!("disk 127.0.0.1:{} is 0.95 full", node.port));
    assert!(alert["annotations"]["generator_url"].as_str().is_some_and(|g| g.contains("/graph?g0.expr=")), "{alert:#}");

    // The rule stops firing: Prometheus sends the alert with endsAt now.
    node.set_text("# TYPE disk_used_ratio gauge\ndisk_used_ratio 0.5\n".into());
    let resolved = wait_hook(&hook, "DiskAlmostFull resolved", Duration::from_secs(120), |b| {
        names(b, "resolved") == ["DiskAlmostFull"]
    });
    assert!(names(&resolved, "firing").is_empty(), "{resolved:#}");
    let firings = hook.received().iter().filter(|r| !names(&r.body, "firing").is_empty()).count();
    assert_eq!(firings, 1, "paged once though Prometheus re-sent it every second or so");
    run.assert_running();
}
