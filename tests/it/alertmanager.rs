//! zkalert as Prometheus' Alertmanager: a real Prometheus (Debian's
//! `prometheus`) whose rule fires sends its alert to `POST /api/v2/alerts`;
//! zkalert pages it through a webhook at the mapped tier with its runbook,
//! and tells the resolution when the rule stops firing.

use crate::support::http::{Answer, MetricsServer, Receiver, free_port};
use crate::support::prometheus::Prometheus;
use crate::support::zkalert::{RunConfig, ZkalertRun, svc_config, svc_down_rules, tiers_to};
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

/// `amtool` (Debian's prometheus-alertmanager) against zkalert.
fn amtool(api: u16, http_config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("amtool")
        .arg(format!("--alertmanager.url=http://127.0.0.1:{api}"))
        .arg(format!("--http.config.file={}", http_config.display()))
        .args(args)
        .output()
        .expect("run amtool (Debian package prometheus-alertmanager)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Waits until zkalert's API on `api` says it is ready.
fn wait_ready(run: &mut ZkalertRun, api: u16) {
    let t0 = Instant::now();
    let ready = || crate::support::http::get(api, "/-/ready", Duration::from_secs(1)).is_some_and(|(s, _)| s == 200);
    while !ready() {
        run.assert_running();
        assert!(t0.elapsed() < Duration::from_secs(30), "zkalert not ready:\n{}", run.log_tail(30));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POSTs alerts as Prometheus would (from loopback: no token).
fn post_alerts(api: u16, body: &str) {
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    // The token is a wrong one: from loopback, none is needed.
    let (status, reply) =
        crate::support::http::send_json(api, "POST", "/api/v2/alerts", "not-the-token", &body, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no answer from zkalert on {api}"));
    assert_eq!(status, 200, "{reply}");
}

#[test]
fn amtool_queries_alerts_and_its_silences_change_what_zkalert_pages() {
    let hook = Receiver::start(vec![], Answer::Status(200));
    let api = free_port();
    let token = "amtool-test-token";
    // No sources: zkalert as an Alertmanager only.
    let yaml = format!(
        "evaluation_interval: 1s
data_dir: data
server: {{listen: '127.0.0.1:{api}', token_file: token}}
notifiers:
  - {{name: hook, type: webhook, url: '{}'}}
routing:
  tiers:
{}",
        hook.url(),
        tiers_to("hook", "1h")
    );
    let http_config = format!("authorization: {{type: Bearer, credentials: {token}}}\n");
    let mut run = ZkalertRun::start_yaml(
        RunConfig::new(vec![], &[]),
        &yaml,
        &[("token", token), ("amtool-http.yml", &http_config)],
    );
    let http_config = run.dir().join("amtool-http.yml");
    // One alert pages at once.
    let alert = |name: &str| {
        format!(
            r#"{{"labels":{{"alertname":"{name}","severity":"warning","team":"db"}},"annotations":{{"summary":"{name} summary"}}}}"#
        )
    };
    wait_ready(&mut run, api);
    post_alerts(api, &format!("[{}]", alert("Paged")));
    wait_hook(&hook, "Paged", Duration::from_secs(30), |b| names(b, "firing") == ["Paged"]);

    // amtool alert query lists it, with its summary.
    let (ok, out) = amtool(api, &http_config, &["alert", "query"]);
    assert!(ok && out.contains("Paged") && out.contains("Paged summary"), "amtool alert query:\n{out}");
    let (ok, out) = amtool(api, &http_config, &["alert", "query", "alertname=Nothing"]);
    assert!(ok && !out.contains("Paged"), "a filter that matches nothing:\n{out}");

    // A silence added with amtool mutes an alert posted after it.
    let (ok, out) = amtool(
        api,
        &http_config,
        &["silence", "add", "alertname=Silenced", "--comment=maintenance", "--author=oncall", "--duration=1h"],
    );
    assert!(ok, "amtool silence add:\n{out}");
    // The id on the first line (then amtool's warning that the versions differ).
    let id = out.lines().next().unwrap_or_default().trim().to_string();
    let (ok, listed) = amtool(api, &http_config, &["silence", "query"]);
    assert!(ok && listed.contains(&id) && listed.contains("oncall") && listed.contains("maintenance"), "{listed}");
    let (ok, listed) = amtool(api, &http_config, &["silence", "query", "-o", "json"]);
    assert!(ok, "{listed}");
    let json = listed.lines().next().unwrap_or_default();
    let silences: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {listed}"));
    assert_eq!(silences[0]["id"], id.as_str());
    assert_eq!(
        silences[0]["matchers"][0],
        serde_json::json!({"name": "alertname", "value": "Silenced", "isRegex": false, "isEqual": true})
    );
    post_alerts(api, &format!("[{}]", alert("Silenced")));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        hook.received().iter().all(|r| !names(&r.body, "firing").contains(&"Silenced".to_string())),
        "a silenced alert was paged"
    );
    let (ok, out) = amtool(api, &http_config, &["alert", "query", "--silenced"]);
    assert!(ok && out.contains("Silenced"), "amtool lists it as silenced:\n{out}");

    // Expired with amtool: paged.
    let (ok, out) = amtool(api, &http_config, &["silence", "expire", &id]);
    assert!(ok, "amtool silence expire:\n{out}");
    wait_hook(&hook, "Silenced, once its silence expired", Duration::from_secs(30), |b| {
        names(b, "firing") == ["Silenced"]
    });
    // The silence is zkalert's: its own API lists it, expired.
    let (status, body) = crate::support::http::get(api, "/api/v1/silences", Duration::from_secs(5)).unwrap();
    assert!(status == 200 && body.contains(&id) && body.contains("expired"), "{body}");

    // Writes without the token are refused.
    let bare = run.dir().join("no-auth.yml");
    std::fs::write(&bare, "{}\n").unwrap();
    let (ok, out) = amtool(api, &bare, &["silence", "add", "alertname=X", "--comment=c", "--duration=1h"]);
    assert!(!ok && out.contains("401"), "a silence without the token:\n{out}");
    let (ok, out) = amtool(api, &bare, &["alert", "query"]);
    assert!(ok, "reads need no token:\n{out}");
    run.assert_running();
}

/// A flood of posted alerts — Prometheus' batches of 64, 8,000 alerts a
/// second, all new — does not hold back the rules: parsing is on the API's
/// threads and the loop steps for posts at most about half its time, so a
/// node that goes down during the flood is paged about as soon as without
/// one, while the flood goes on.
#[test]
fn a_flood_of_posted_alerts_does_not_hold_back_the_rules() {
    let metrics = MetricsServer::start();
    metrics.set(&[false]);
    let api = free_port();
    let rest = format!(
        "server: {{listen: '127.0.0.1:{api}'}}\nrouting:\n  group_by: [alertname, cluster]\n  tiers:\n{}",
        tiers_to("pages", "1h")
    );
    let yaml = svc_config(metrics.port, &rest);
    let rules = svc_down_rules("");
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &[("rules.yaml", rules.as_str())]);
    wait_ready(&mut run, api);
    // How long a page takes without a flood (the source polls every second).
    let page_after = |run: &mut ZkalertRun, event: &str| {
        let t0 = std::time::SystemTime::now();
        metrics.set(&[event == "firing"]);
        let (page, _) = run.wait_event("the NodeDown page", Duration::from_secs(20), |e| {
            e.is(event, "NodeDown") && e.at_ms >= crate::support::zkalert::epoch_ms(t0)
        });
        Duration::from_millis(page.ms_after(t0).max(0) as u64)
    };
    let quiet = page_after(&mut run, "firing");
    page_after(&mut run, "resolved");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || flood_alerts(api, &stop))
    };
    std::thread::sleep(Duration::from_secs(1));
    let during = page_after(&mut run, "firing");
    let still_flooding = !flood.is_finished();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let posted = flood.join().expect("the flood thread");
    assert!(
        during <= quiet + Duration::from_millis(1500),
        "paged {during:?} after the node went down during a flood of {posted} posted alerts, {quiet:?} without:\n{}",
        run.log_tail(30)
    );
    assert!(still_flooding, "the flood ended ({posted} alerts) before the page: it proves nothing");
    assert!(posted >= 8_000, "only {posted} alerts posted: no flood");
    run.assert_running();
}

/// Posts new alerts in batches of 64 at 8,000 a second until `stop`, for at
/// most 12 s; how many were taken.
fn flood_alerts(api: u16, stop: &std::sync::atomic::AtomicBool) -> usize {
    const BATCH: usize = 64;
    const PER_SECOND: f64 = 8_000.0;
    let t0 = Instant::now();
    let mut posted = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(12) {
        let alerts: Vec<serde_json::Value> = (posted..posted + BATCH)
            .map(|i| {
                serde_json::json!({
                    "labels": {"alertname": format!("Flood{:02}", i % 10), "cluster": format!("f{}", i / 1000),
                               "instance": format!("host-{i}:9100"), "severity": "warning"},
                    "annotations": {"summary": "flood"},
                })
            })
            .collect();
        let body = serde_json::Value::Array(alerts);
        let answer =
            crate::support::http::send_json(api, "POST", "/api/v2/alerts", "-", &body, Duration::from_secs(10));
        assert!(answer.as_ref().is_some_and(|(s, _)| *s == 200), "a post of the flood: {answer:?}");
        posted += BATCH;
        let due = t0 + Duration::from_secs_f64(posted as f64 / PER_SECOND);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    posted
}

/// zkalert's allocator leaves transparent huge pages off for the process
/// (`.cargo/config.toml` builds mimalloc so; it then disables them with
/// `prctl`): with them, 100,000 posted alerts cost ~20% more resident
/// memory and an idle zkalert 11 MiB more (BENCHMARKS.md).
#[test]
fn zkalert_runs_without_transparent_huge_pages() {
    let metrics = MetricsServer::start();
    let api = free_port();
    let rest = format!(
        "server: {{listen: '127.0.0.1:{api}'}}\nrouting:\n  group_by: [alertname, cluster]\n  tiers:\n{}",
        tiers_to("pages", "1h")
    );
    let rules = svc_down_rules("");
    let files = [("rules.yaml", rules.as_str())];
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &svc_config(metrics.port, &rest), &files);
    wait_ready(&mut run, api);
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.pid())).expect("/proc/PID/status");
    let thp = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("THP_enabled in /proc/PID/status");
    assert_eq!(thp.split_whitespace().nth(1), Some("0"), "{thp}");
}
