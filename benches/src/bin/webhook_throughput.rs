//! Webhook delivery throughput: N deliveries of a realistic message
//! (`template::samples()[0]`, one distinct id each) submitted through a
//! `Deliverer` with one generic-flavour `WebhookNotifier` channel, POSTed to
//! a minimal HTTP/1.1 receiver on 127.0.0.1 (keep-alive, answers 200 `{}` to
//! every request and counts them), timed until every report says done.
//!
//! Usage: webhook_throughput [DELIVERIES=20000] [WINDOW...]
//! A window of 0 submits everything at once (what the runner does: one task
//! per delivery); a window W keeps at most W deliveries in flight, submitting
//! the next one as each finishes. Default windows: 0 256 32 8.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zkalert::clock::{Clock, SystemClock};
use zkalert::notify::delivery::{Channel, Deliverer, DeliveryPolicy};
use zkalert::notify::webhook::{Flavor, WebhookNotifier, WebhookSettings};
use zkalert::notify::{Delivery, template};

const MAX_DELIVERIES: usize = 1_000_000;
const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    connections: AtomicU64,
}

/// The end of the head and the body length of the first request in `buf`, once its head is complete.
fn parse_head(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    Some((end, length))
}

/// Serves one keep-alive connection: every complete request is answered 200.
async fn serve(mut conn: TcpStream, counts: Arc<Counts>) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16384];
    loop {
        while let Some((head_end, length)) = parse_head(&buf) {
            if buf.len() < head_end + length {
                break;
            }
            buf.drain(..head_end + length);
            counts.requests.fetch_add(1, Ordering::Relaxed);
            if conn.write_all(REPLY).await.is_err() {
                return;
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn receiver(listener: TcpListener, counts: Arc<Counts>) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                counts.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(conn, counts.clone()));
            }
            // Out of file descriptors, most likely: let some connections close.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

struct Outcome {
    seconds: f64,
    delivered: usize,
    failed: usize,
    attempts: u64,
    /// The first failed attempt's error, if any.
    first_error: Option<String>,
}

/// Sends `n` deliveries through a fresh notifier and deliverer, at most `window` in flight (0: all at once).
async fn run(url: &str, n: usize, window: usize) -> Outcome {
    let settings = WebhookSettings::new("hook", Flavor::Generic, url);
    let notifier = WebhookNotifier::new(settings, template::Rendering::builtin()).expect("webhook notifier");
    let channel = Channel::new("hook", "webhook", Arc::new(notifier), Duration::from_secs(10), None);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (mut deliverer, mut reports) =
        Deliverer::new(HashMap::from([("hook".to_string(), channel)]), DeliveryPolicy::default(), clock.clone());
    let base = template::samples().swap_remove(0);
    let messages: Vec<Delivery> = (0..n)
        .map(|i| {
            let mut m = base.clone();
            m.id = format!("{i:016x}");
            m.channels = vec!["hook".into()];
            Delivery { message: Arc::new(m), channel: "hook".into() }
        })
        .collect();
    let mut pending = messages.into_iter();
    let window = if window == 0 { n } else { window };
    let t0 = Instant::now();
    for d in pending.by_ref().take(window) {
        deliverer.submit(d, clock.now());
    }
    let (mut delivered, mut failed, mut attempts, mut first_error) = (0, 0, 0, None);
    while delivered + failed < n {
        let Some(r) = reports.recv().await else { break };
        attempts += 1;
        if let (Err(e), None) = (&r.result, &first_error) {
            first_error = Some(e.to_string());
        }
        if !r.done {
            continue;
        }
        if r.result.is_ok() {
            delivered += 1
        } else {
            failed += 1
        }
        if let Some(d) = pending.next() {
            deliverer.submit(d, clock.now());
        }
    }
    Outcome { seconds: t0.elapsed().as_secs_f64(), delivered, failed, attempts, first_error }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(20_000, |s| s.parse().expect("DELIVERIES must be a number"));
    if n == 0 || n > MAX_DELIVERIES {
        eprintln!("DELIVERIES must be 1..={MAX_DELIVERIES}");
        std::process::exit(2);
    }
    let windows: Vec<usize> = if args.len() > 1 {
        args[1..].iter().map(|s| s.parse().expect("WINDOW must be a number")).collect()
    } else {
        vec![0, 256, 32, 8]
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("local addr"));
    let counts = Arc::new(Counts::default());
    tokio::spawn(receiver(listener, counts.clone()));
    // Warm-up: the client, the receiver, the allocator.
    run(&url, 500.min(n), 32).await;
    for window in windows {
        let (requests0, connections0) =
            (counts.requests.load(Ordering::Relaxed), counts.connections.load(Ordering::Relaxed));
        let o = run(&url, n, window).await;
        let requests = counts.requests.load(Ordering::Relaxed) - requests0;
        let connections = counts.connections.load(Ordering::Relaxed) - connections0;
        let in_flight = if window == 0 { "all".to_string() } else { window.to_string() };
        println!(
            "in_flight={in_flight} notifications_per_s={:.0} deliveries={} seconds={:.3} failed={} attempts={} \
             requests_received={requests} connections_opened={connections}",
            o.delivered as f64 / o.seconds,
            o.delivered,
            o.seconds,
            o.failed,
            o.attempts,
        );
        if let Some(e) = o.first_error {
            println!("  first failed attempt: {e}");
        }
    }
}
