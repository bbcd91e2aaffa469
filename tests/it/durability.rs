//! Durability through the real binary: `zkalert run` whose data_dir is a
//! small tmpfs the test fills up (a real full disk), and deliveries that
//! gave up across a restart. What could not be written is written once
//! the disk has room; a restart pages nothing again.

use crate::support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::http::{Answer, MetricsServer, Receiver};
use support::tmpfs::Tmpfs;
use support::zkalert::{Event, RunConfig, ZkalertRun};

/// The one rule: NodeDown when a node's `svc_up` is 0.
static RULES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| support::zkalert::svc_down_rules(""));

const TOKEN: &str = "durability-token";

/// One HTTP/1.1 request to the API: (status, body); status 0 if it cannot connect.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    conn.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let body = body.unwrap_or("");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn wait(what: &str, timeout: Duration, run: &mut ZkalertRun, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        run.assert_running();
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}; log:\n{}", run.log_tail(40));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(events: &[Event], event: &str, alertname: &str) -> usize {
    events.iter().filter(|e| e.is(event, alertname)).count()
}

/// Webhook requests answered 200 that carry `alertname` as firing.
fn hook_pages(hook: &Receiver, alertname: &str) -> usize {
    hook.received()
        .iter()
        .filter(|r| r.answered == Some(200))
        .filter(|r| r.body["firing"].as_array().is_some_and(|a| a.iter().any(|a| a["alertname"] == alertname)))
        .count()
}

#[test]
fn a_full_disk_holds_the_changes_shows_everywhere_and_after_it_frees_a_restart_repeats_nothing() {
    let dir = tempfile::Builder::new().prefix("zkalert-full-disk-").tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("data"), "4m");
    let metrics = MetricsServer::start();
    metrics.set(&[false]);
    let hook = Receiver::start(vec![], Answer::Status(200));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let yaml = format!(
        "evaluation_interval: 1s
data_dir: '{data}'
rules: [rules.yaml]
sources:
  - {{type: prometheus, url: 'http://127.0.0.1:{metrics}/metrics', cluster: c, instance: svc, interval: 1s, timeout: 500ms}}
notifiers:
  - {{name: events, type: file, path: notifications.jsonl}}
  - {{name: hook, type: webhook, url: '{hook}'}}
server: {{listen: '127.0.0.1:{port}', token_file: api.token}}
routing:
  group_by: [alertname, node]
  tiers:
    P1: {{channels: [events, hook], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}
",
        data = disk.dir.display(),
        metrics = metrics.port,
        hook = hook.url(),
    );
    let mut run = ZkalertRun::start_yaml(
        RunConfig::new(Vec::new(), &[]),
        &yaml,
        &[("rules.yaml", RULES.as_str()), ("api.token", TOKEN)],
    );
    wait("ready", Duration::from_secs(20), &mut run, || http(port, "GET", "/-/ready", None).0 == 200);

    disk.fill();
    metrics.set(&[true]);
    wait("the page while the disk is full", Duration::from_secs(20), &mut run, || hook_pages(&hook, "NodeDown") == 1);
    run.wait_event("StateNotPersisted", Duration::from_secs(20), |e| e.is("firing", "StateNotPersisted"));
    let (code, text) = http(port, "GET", "/-/ready", None);
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("cannot write the state file"), "{text}");
    let status = json(&http(port, "GET", "/api/v1/status", None).1);
    assert!(status["state_write_error"].as_str().is_some_and(|e| e.contains("full")), "{status}");
    assert!(status["state_unwritten"].as_u64().is_some_and(|n| n > 0), "{status}");
    let alerts = json(&http(port, "GET", "/api/v1/alerts", None).1);
    let listed = alerts["alerts"].as_array().unwrap();
    assert!(
        listed.iter().any(|a| a["labels"]["alertname"] == "StateNotPersisted" && a["state"] == "firing"),
        "{alerts}"
    );
    let silence = r#"{"matchers": "node=n0", "duration": "1h", "created_by": "test", "comment": "full disk"}"#;
    let (code, text) = http(port, "POST", "/api/v1/silences", Some(silence));
    assert_eq!(code, 503, "a silence that cannot be saved: {text}");
    assert!(text.contains("cannot save"), "{text}");
    let groups = json(&http(port, "GET", "/api/v1/groups", None).1);
    let group_id = groups["groups"][0]["id"].as_str().expect("a notified group").to_string();
    let ack = format!(r#"{{"group_id": "{group_id}", "by": "test"}}"#);
    let (code, text) = http(port, "POST", "/api/v1/acks", Some(&ack));
    assert_eq!(code, 503, "an ack that cannot be saved: {text}");
    let log = std::fs::read_to_string(&run.log).unwrap();
    assert!(log.contains("cannot persist state"), "the log says so");

    disk.free();
    wait("ready again", Duration::from_secs(20), &mut run, || http(port, "GET", "/-/ready", None).0 == 200);
    let status = json(&http(port, "GET", "/api/v1/status", None).1);
    assert!(status["state_write_error"].is_null() && status["state_unwritten"] == 0, "{status}");
    run.wait_event("StateNotPersisted resolved", Duration::from_secs(20), |e| e.is("resolved", "StateNotPersisted"));
    // What happened while the disk was full is on disk now.
    let db = zkalert::state::StateDb::open(&disk.dir.join("state.db")).unwrap();
    let saved = db.load().unwrap();
    assert!(
        saved.alerts.iter().any(|(_, a)| a.name() == "NodeDown" && a.state == zkalert::model::AlertState::Firing),
        "{:?}",
        saved.alerts
    );
    assert!(saved.groups.iter().any(|g| g.key.labels.get("alertname") == Some("NodeDown") && g.last_sent.is_some()));
    // (The resolution of StateNotPersisted may still be on its way.)
    let t0 = Instant::now();
    while db.pending_count().unwrap() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the deliveries made while full are recorded: {:?}",
            db.deliveries(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(db);
    // The silence and the ack work again.
    assert_eq!(http(port, "POST", "/api/v1/acks", Some(&ack)).0, 200);

    run.kill9_and_restart();
    wait("ready after the restart", Duration::from_secs(20), &mut run, || http(port, "GET", "/-/ready", None).0 == 200);
    std::thread::sleep(Duration::from_secs(5));
    let events = run.events();
    assert_eq!(count(&events, "firing", "NodeDown"), 1, "NodeDown paged once:\n{}", support::zkalert::render(&events));
    assert_eq!(count(&events, "firing", "StateNotPersisted"), 1, "{}", support::zkalert::render(&events));
    assert_eq!(hook_pages(&hook, "NodeDown"), 1, "nothing sent again to the webhook: {:#?}", hook.received());
}
