//! The notification pipeline in the real binary: `zkalert run` polling a
//! Prometheus text endpoint served by the test, its file notifier, its
//! SQLite state under `data_dir`, and its HTTP API driven by the `zkalert`
//! CLI. Crash safety is tested with SIGKILL at many points of the cycle.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::zkalert::{Event, RunConfig, ZkalertRun, render};

/// A `/metrics` endpoint whose body the test sets.
struct MetricsServer {
    port: u16,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl MetricsServer {
    fn start() -> MetricsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind metrics server");
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (body.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = b.lock().unwrap().clone();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        MetricsServer { port, body, stop }
    }

    /// `svc_up{node="nI"}` for each node: 1 up, 0 down.
    fn set(&self, down: &[bool]) {
        let mut text = String::from("# TYPE svc_up gauge\n");
        for (i, d) in down.iter().enumerate() {
            text.push_str(&format!("svc_up{{node=\"n{i}\"}} {}\n", if *d { 0 } else { 1 }));
        }
        *self.body.lock().unwrap() = text;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

const RULES: &str = "groups:
  - name: crash
    interval: 1s
    rules:
      - alert: NodeDown
        expr: svc_up == 0
        severity: P1
        annotations:
          summary: 'node {{ labels.node }} is down'
        runbook: https://runbooks.example.com/node-down
";

fn config(metrics_port: u16, extra: &str) -> String {
    format!(
        "evaluation_interval: 1s
data_dir: data
rules: [rules.yaml]
sources:
  - type: prometheus
    url: http://127.0.0.1:{metrics_port}/metrics
    cluster: c
    instance: svc
    interval: 1s
    timeout: 500ms
notifiers:
  - name: pages
    type: file
    path: notifications.jsonl
routing:
  group_by: [alertname, node]
  tiers:
    P1: {{channels: [pages], group_wait: 0s, group_interval: 1s, repeat_interval: 1h, respond_within: 1h, escalate_to: [pages]}}
{extra}"
    )
}

fn node_events(events: &[Event]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.alertname == "NodeDown") {
        out.entry(e.labels.get("node").cloned().unwrap_or_default()).or_default().push(e.event.clone());
    }
    out
}

fn wait_for(run: &mut ZkalertRun, what: &str, timeout: Duration, done: impl Fn(&[Event]) -> bool) {
    let t0 = Instant::now();
    loop {
        let events = run.events();
        if done(&events) {
            return;
        }
        run.assert_running();
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; notifications:\n{}\nlog:\n{}",
            render(&events),
            run.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills `zkalert run` with SIGKILL at many points while ten nodes go down
/// and come back one by one: between a change and its evaluation, between
/// the state commit and the send, right after the send. Every node must
/// be paged exactly once as firing and once as resolved, in that order.
#[test]
fn sigkill_loses_no_page_and_repeats_none() {
    const NODES: usize = 10;
    let metrics = MetricsServer::start();
    let mut down = [false; NODES];
    metrics.set(&down);
    let yaml = config(metrics.port, "");
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &[("rules.yaml", RULES)]);
    std::thread::sleep(Duration::from_millis(1500));
    let mut kills = 0;
    // Delays before the kill spread over one poll + evaluation cycle.
    let delays = [0u64, 150, 300, 450, 600, 750, 900, 1050, 1200, 1350];
    for phase in [true, false] {
        for (i, delay) in delays.iter().enumerate() {
            down[i] = phase;
            metrics.set(&down);
            std::thread::sleep(Duration::from_millis(*delay));
            run.kill9_and_restart();
            kills += 1;
        }
        let want = if phase { "firing" } else { "resolved" };
        wait_for(&mut run, &format!("every node {want}"), Duration::from_secs(60), |events| {
            let by_node = node_events(events);
            (0..NODES).all(|i| by_node.get(&format!("n{i}")).is_some_and(|e| e.iter().any(|x| x == want)))
        });
    }
    // Let a few more cycles run: nothing else may arrive.
    std::thread::sleep(Duration::from_secs(3));
    let events = run.events();
    let by_node = node_events(&events);
    for i in 0..NODES {
        let seq = by_node.get(&format!("n{i}")).cloned().unwrap_or_default();
        assert_eq!(
            seq,
            ["firing", "resolved"],
            "node n{i} after {kills} SIGKILLs: every transition paged exactly once; all notifications:\n{}\nlog:\n{}",
            render(&events),
            run.log_tail(60)
        );
    }
    // Some kills land before start-up finished (the 0 ms delay): most
    // starts must have restored the state file.
    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    let restores = log.matches("state restored").count();
    assert!(restores >= kills / 2, "{restores} of {kills} restarts restored the state file");
}
