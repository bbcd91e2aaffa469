//! Reload on the real binary: `zkalert run` polling a Prometheus text
//! endpoint and paging a file notifier gets SIGHUP (what `systemctl reload`
//! sends) after its config and rules changed: it logs the reload, keeps the
//! firing alert without paging it again, pages the notifier the reload
//! added; a broken rule file is refused with its position and changes
//! nothing.

use crate::support;

use std::time::{Duration, Instant};
use support::http::MetricsServer;
use support::process::signal;
use support::zkalert::{RunConfig, ZkalertRun};

const ROUTING: &str = "routing:
  group_by: [alertname, node]
  tiers:
    P1: {channels: [pages], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}
";

/// Waits until zkalert's log has `count` lines containing `text`.
fn wait_log(run: &mut ZkalertRun, text: &str, count: usize) {
    let t0 = Instant::now();
    while std::fs::read_to_string(&run.log).unwrap_or_default().matches(text).count() < count {
        run.assert_running();
        assert!(t0.elapsed() < Duration::from_secs(20), "no {text:?} (x{count}) in the log:\n{}", run.log_tail(40));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(run: &ZkalertRun, event: &str, node: &str) -> usize {
    run.events().iter().filter(|e| e.is(event, "NodeDown") && e.labels["node"] == node).count()
}

#[test]
fn sighup_reloads_keeps_the_firing_alert_pages_a_new_notifier_and_refuses_a_broken_rule_file() {
    let metrics = MetricsServer::start();
    metrics.set(&[true, false]);
    let yaml = support::zkalert::svc_config(metrics.port, ROUTING);
    let rules = support::zkalert::svc_down_rules("");
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &[("rules.yaml", &rules)]);
    run.wait_event("n0 paged", Duration::from_secs(30), |e| e.is("firing", "NodeDown") && e.labels["node"] == "n0");

    // A second notifier for P1, and a changed summary: the rule (group
    // `svc`, `NodeDown`) and the alert's labels are the same.
    let more = "  - {name: more, type: file, path: more.jsonl}\n";
    let routing = ROUTING.replace("[pages]", "[pages, more]");
    std::fs::write(
        run.dir().join("config.yaml"),
        support::zkalert::svc_config(metrics.port, &format!("{more}{routing}")),
    )
    .unwrap();
    std::fs::write(run.dir().join("rules.yaml"), rules.replace("is down", "is down (reloaded)")).unwrap();
    assert!(signal(run.pid(), "HUP"));
    wait_log(&mut run, "config reloaded", 1);
    // Several evaluations later: n0 was not paged again, nor resolved.
    std::thread::sleep(Duration::from_secs(4));
    run.assert_running();
    assert_eq!((count(&run, "firing", "n0"), count(&run, "resolved", "n0")), (1, 0), "{:?}", run.events());

    // n1 goes down: paged through both notifiers, with the new summary.
    metrics.set(&[true, true]);
    let (page, _) =
        run.wait_event("n1 paged", Duration::from_secs(20), |e| e.is("firing", "NodeDown") && e.labels["node"] == "n1");
    assert_eq!(page.annotations["summary"], "node n1 is down (reloaded)");
    let t0 = Instant::now();
    while !std::fs::read_to_string(run.dir().join("more.jsonl")).unwrap_or_default().contains("\"n1\"") {
        assert!(t0.elapsed() < Duration::from_secs(10), "n1 not paged through `more`:\n{}", run.log_tail(30));
        std::thread::sleep(Duration::from_millis(100));
    }

    // A broken rule file: refused with its position; nothing changes, n0
    // still resolves when it comes back.
    std::fs::write(
        run.dir().join("rules.yaml"),
        "groups:\n  - name: svc\n    rules:\n      - alert: NodeDown\n        expr: svc_up ==\n",
    )
    .unwrap();
    assert!(signal(run.pid(), "HUP"));
    wait_log(&mut run, "config reload failed", 1);
    let log = std::fs::read_to_string(&run.log).unwrap();
    let rules_file = run.dir().join("rules.yaml").display().to_string();
    assert!(log.contains(&format!("{rules_file}:5:")), "the problem with its position:\n{}", run.log_tail(20));
    metrics.set(&[false, true]);
    run.wait_event("n0 resolved", Duration::from_secs(20), |e| {
        e.is("resolved", "NodeDown") && e.labels["node"] == "n0"
    });
    assert_eq!(count(&run, "firing", "n1"), 1, "{:?}", run.events());
}

/// Before the first step (here: the only source's first poll hangs for its
/// whole timeout) the lists answer 503, but the status already says what
/// runs: the version, the config, its rules and sources, and that the
/// config in force loaded — not defaults that read "reload failed".
#[test]
fn before_the_first_step_the_status_says_what_runs() {
    // A source that accepts and never answers: the first poll takes its
    // whole timeout, so the first step waits for it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let source_port = silent.local_addr().unwrap().port();
    let api = support::http::free_port();
    let yaml = format!(
        "evaluation_interval: 1s
data_dir: data
rules: [rules.yaml]
server: {{listen: '127.0.0.1:{api}'}}
sources:
  - {{type: prometheus, url: 'http://127.0.0.1:{source_port}/metrics', cluster: c, interval: 30s, timeout: 20s}}
"
    );
    let rules = support::zkalert::svc_down_rules("");
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &[("rules.yaml", &rules)]);
    let t0 = Instant::now();
    let status = loop {
        if let Some((200, body)) = support::http::get(api, "/api/v1/status", Duration::from_secs(2)) {
            break serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no API:\n{}", run.log_tail(20));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["ready"], false, "the first poll cannot have finished: {status}");
    assert_eq!(support::http::get(api, "/api/v1/alerts", Duration::from_secs(2)).map(|r| r.0), Some(503));
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    assert_eq!((status["rules"].as_u64(), status["sources"].as_u64()), (Some(1), Some(1)), "{status}");
    assert!(status["config_path"].as_str().is_some_and(|p| p.ends_with("config.yaml")), "{status}");
    assert_eq!(status["config_reload"]["successful"], true, "{status}");
    assert!(status["config_reload"]["last_success_at"].is_string(), "{status}");
    run.assert_running();
    drop(silent);
}
