//! Alert-to-webhook latency through the real binary: `zkalert run` polls a
//! Prometheus endpoint served here (`svc_up{node="nI"}` for NODES nodes)
//! every 1 s, evaluates `svc_up == 0` (P0, group_wait 0s, grouped by
//! alertname and node) every 1 s and pages a generic webhook receiver
//! served here. The nodes go down one at a time, a random 20–180 ms apart;
//! for each node the latency is from the moment its metric changed to the
//! arrival of the webhook POST whose alert names it.
//!
//! By design the latency includes up to one poll interval (the change is
//! seen at the next poll) and up to one evaluation interval (the rule runs
//! at the next evaluation after that), both 1 s here.
//!
//! Usage: webhook_latency [NODES=200] [ZKALERT=target/release/zkalert]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_NODES: usize = 2_000;

const RULES: &str = "groups:
  - name: latency
    interval: 1s
    rules:
      - alert: NodeDown
        expr: svc_up == 0
        severity: P0
        annotations:
          summary: 'node {{ labels.node }} is down'
";

/// Reads one request from a keep-alive connection: (head, body); `None` when it closes.
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= i + 4 + length {
                let body = buf[i + 4..i + 4 + length].to_vec();
                buf.drain(..i + 4 + length);
                return Some((head, body));
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Serves every connection of `listener` on its own thread with `handle(head, body) -> (content type, body)`.
fn serve<F>(listener: TcpListener, handle: F)
where
    F: Fn(&str, &[u8]) -> (&'static str, String) + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let handle = handle.clone();
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut buf = Vec::new();
                while let Some((head, body)) = read_request(&mut conn, &mut buf) {
                    let (kind, text) = handle(&head, &body);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// `svc_up{node="nI"}` for each node: the first `down` are down (0), the rest up (1).
fn metrics_text(nodes: usize, down: usize) -> String {
    let mut text = String::from("# TYPE svc_up gauge\n");
    for i in 0..nodes {
        text.push_str(&format!("svc_up{{node=\"n{i}\"}} {}\n", if i < down { 0 } else { 1 }));
    }
    text
}

/// The node a webhook body pages for: its first firing alert's `node` label, else the group's.
fn node_of(body: &serde_json::Value) -> Option<String> {
    let firing = body["firing"].get(0)?;
    (firing["labels"]["node"].as_str().or(body["group"]["node"].as_str())).map(str::to_string)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = args.first().map_or(200, |s| s.parse().expect("NODES must be a number"));
    if nodes == 0 || nodes > MAX_NODES {
        eprintln!("NODES must be 1..={MAX_NODES}");
        std::process::exit(2);
    }
    let bin = PathBuf::from(args.get(1).map_or("target/release/zkalert", String::as_str));
    let bin = std::fs::canonicalize(&bin).unwrap_or_else(|e| panic!("{}: {e} (cargo build --release)", bin.display()));

    let body = Arc::new(Mutex::new(metrics_text(nodes, 0)));
    let polls = Arc::new(AtomicU64::new(0));
    let metrics = TcpListener::bind("127.0.0.1:0").expect("bind metrics");
    let metrics_port = metrics.local_addr().unwrap().port();
    let (b, p) = (body.clone(), polls.clone());
    serve(metrics, move |_, _| {
        p.fetch_add(1, Ordering::SeqCst);
        ("text/plain; version=0.0.4", b.lock().unwrap().clone())
    });

    let arrivals: Arc<Mutex<Vec<(Instant, serde_json::Value)>>> = Arc::default();
    let hook = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let hook_port = hook.local_addr().unwrap().port();
    let a = arrivals.clone();
    serve(hook, move |_, body| {
        let at = Instant::now();
        let json = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        a.lock().unwrap().push((at, json));
        ("application/json", "{}".to_string())
    });

    let dir = std::env::temp_dir().join(format!("zkalert-webhook-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    let config = format!(
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
  - {{name: hook, type: webhook, url: 'http://127.0.0.1:{hook_port}/hook'}}
routing:
  group_by: [alertname, node]
  tiers:
    P0: {{channels: [hook], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}
"
    );
    std::fs::write(dir.join("config.yaml"), config).expect("config");
    std::fs::write(dir.join("rules.yaml"), RULES).expect("rules");
    let log = std::fs::File::create(dir.join("zkalert.log")).expect("log");
    let mut child = Command::new(&bin)
        .args(["run", "-c", "config.yaml"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start zkalert");

    // Let it start and poll a few times with every node up.
    let t0 = Instant::now();
    while polls.load(Ordering::SeqCst) < 3 {
        if t0.elapsed() > Duration::from_secs(30) || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("zkalert.log")).unwrap_or_default();
            panic!("zkalert did not poll; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));

    // Flip the nodes down one at a time, a pseudo-random 20–180 ms apart.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut flipped = HashMap::new();
    for i in 0..nodes {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 161));
        *body.lock().unwrap() = metrics_text(nodes, i + 1);
        flipped.insert(format!("n{i}"), Instant::now());
    }

    // Wait for every node's page (at most 30 s after the last flip).
    let last_flip = Instant::now();
    let first_arrivals = || {
        let mut first: HashMap<String, Instant> = HashMap::new();
        for (at, json) in arrivals.lock().unwrap().iter() {
            if let Some(node) = node_of(json) {
                first.entry(node).or_insert(*at);
            }
        }
        first
    };
    while first_arrivals().len() < nodes && last_flip.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();

    let first = first_arrivals();
    let mut ms: Vec<f64> = flipped
        .iter()
        .filter_map(|(node, at)| Some(first.get(node)?.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    let posts = arrivals.lock().unwrap().len();
    let _ = std::fs::remove_dir_all(&dir);
    if ms.is_empty() {
        eprintln!("no page arrived");
        std::process::exit(1);
    }
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "nodes={nodes} paged={} posts={posts} latency_ms p50={:.0} p99={:.0} max={:.0} min={:.0} mean={:.0}",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        ms[ms.len() - 1],
        ms[0],
        mean
    );
    println!(
        "note: poll interval 1s, evaluation_interval 1s: the latency includes, by design, up to one poll \
         (the change is seen at the next poll) and up to one evaluation interval"
    );
    if ms.len() < nodes {
        eprintln!("{} node(s) never paged within 30 s", nodes - ms.len());
        std::process::exit(1);
    }
}
