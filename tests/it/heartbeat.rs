//! The dead man's switch of the real binary: `zkalert run` pings a
//! receiver every interval while its loop runs; SIGSTOP stops the pings
//! (the service would page), SIGCONT brings them back; the always-firing
//! `ZkalertWatchdog` reaches its own channel and no other.

use crate::support::http::free_port;
use crate::support::http::{Answer, MetricsServer, Received, Receiver, get};
use crate::support::process::{signal, wait_until};
use crate::support::zkalert::{RunConfig, ZkalertRun};
use std::time::{Duration, Instant};

const RULES: &str =
    "groups:\n  - name: g\n    rules:\n      - alert: SvcDown\n        expr: svc_up == 0\n        severity: P1\n";

/// zkalert scraping `source_port` every second (`svc_config`), pinging
/// `ping_url` every second, the watchdog to the `deadman` file notifier, the
/// API on `api_port`.
fn config(source_port: u16, ping_url: &str, api_port: u16) -> String {
    let mut y = crate::support::zkalert::svc_config(
        source_port,
        &format!(
            "  - {{name: deadman, type: file, path: watchdog.jsonl}}
server: {{listen: '127.0.0.1:{api_port}'}}
heartbeat:
  url: '{ping_url}'
  interval: 1s
  timeout: 500ms
  watchdog: {{channel: deadman}}
routing:
  tiers:
"
        ),
    );
    y.push_str(&crate::support::zkalert::tiers_to("pages", "1h"));
    y
}

/// Seconds between consecutive pings.
fn gaps(pings: &[Received]) -> Vec<f64> {
    pings.windows(2).map(|w| w[1].at.duration_since(w[0].at).as_secs_f64()).collect()
}

/// One ping a second: on average (0.8 to 1.3 s apart), and never two
/// within half a second or more than 2.5 s apart (a loaded CI machine may
/// delay one tick, but not lose two).
fn assert_one_a_second(spacing: &[f64], when: &str) {
    let mean = spacing.iter().sum::<f64>() / spacing.len() as f64;
    assert!((0.8..=1.3).contains(&mean), "{when}: pings {mean:.2} s apart on average: {spacing:?}");
    assert!(spacing.iter().all(|g| (0.5..=2.5).contains(g)), "{when}: pings at gaps {spacing:?}");
}

#[test]
fn pings_every_interval_stop_while_the_process_is_stopped_and_resume_after() {
    let source = MetricsServer::start();
    source.set(&[false]);
    let receiver = Receiver::start(Vec::new(), Answer::Status(200));
    let api = free_port();
    let ping_url = format!("http://127.0.0.1:{}/ping/t0ken-77", receiver.port);
    let yaml = config(source.port, &ping_url, api);
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &[("rules.yaml", RULES)]);
    let context = |run: &ZkalertRun, receiver: &Receiver| {
        format!("pings at gaps {:?}\nzkalert log:\n{}", gaps(&receiver.received()), run.log_tail(30))
    };

    // Pings every second (GET, to the URL's path), evenly spaced.
    wait_until("6 pings", Duration::from_secs(20), || receiver.received().len() >= 6, || context(&run, &receiver));
    run.assert_running();
    let pings = receiver.received();
    assert!(pings[0].head.starts_with("GET /ping/t0ken-77 HTTP/1.1"), "{}", pings[0].head);
    assert_one_a_second(&gaps(&pings[1..]), "running");

    // The status and /metrics show it; the URL's token never.
    let (_, status) = get(api, "/api/v1/status", Duration::from_secs(5)).expect("the status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let heartbeat = &status["heartbeat"];
    assert_eq!(heartbeat["state"], "pinging", "{status}");
    assert!(heartbeat["last_success_at"].is_string(), "{status}");
    assert_eq!(heartbeat["url"], format!("http://127.0.0.1:{}/…", receiver.port), "{status}");
    let (_, metrics) = get(api, "/metrics", Duration::from_secs(5)).expect("/metrics");
    let successes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("zkalert_heartbeat_pings_total{result=\"success\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(successes.is_some_and(|n| n >= 1), "{metrics}");
    assert!(metrics.lines().any(|l| l == "zkalert_heartbeat_pinging 1"), "{metrics}");

    // The watchdog reaches its channel, and only it.
    let watchdog = run.dir().join("watchdog.jsonl");
    wait_until(
        "the watchdog message",
        Duration::from_secs(10),
        || std::fs::read_to_string(&watchdog).is_ok_and(|t| t.contains("\"ZkalertWatchdog\"")),
        || context(&run, &receiver),
    );
    let default_channel = std::fs::read_to_string(run.dir().join("notifications.jsonl")).unwrap_or_default();
    assert!(!default_channel.contains("ZkalertWatchdog"), "the default channel got it: {default_channel}");

    // SIGSTOP: at most the ping in flight arrives, none after 3 intervals.
    assert!(signal(run.pid(), "STOP"));
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_millis(3500));
    let after_stop: Vec<f64> = receiver
        .received()
        .iter()
        .filter(|p| p.at > stopped)
        .map(|p| p.at.duration_since(stopped).as_secs_f64())
        .collect();
    let stopped_count = receiver.received().len();
    assert!(signal(run.pid(), "CONT"));
    let resumed = Instant::now();
    assert!(after_stop.len() <= 1 && after_stop.iter().all(|s| *s < 1.0), "pings after SIGSTOP at {after_stop:?} s");

    // SIGCONT: pings resume, one per interval again (no burst making up the pause).
    wait_until(
        "pings after SIGCONT",
        Duration::from_secs(10),
        || receiver.received().len() >= stopped_count + 4,
        || context(&run, &receiver),
    );
    run.assert_running();
    let resumed_pings: Vec<Received> = receiver.received().into_iter().filter(|p| p.at > resumed).collect();
    let first = resumed_pings[0].at.duration_since(resumed).as_secs_f64();
    assert!(first < 3.0, "the first ping {first} s after SIGCONT");
    assert_one_a_second(&gaps(&resumed_pings), "after SIGCONT");
}
