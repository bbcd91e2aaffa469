//! File-descriptor exhaustion through the real binary: `zkalert run` under
//! a low open-files limit, with more slow API clients than the limit. The
//! API caps its connections below the limit, so polling, evaluation and
//! notifying go on; refusals are logged; slow clients are dropped after
//! the header deadline and the API answers again.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::http::MetricsServer;
use support::process::{Watchdog, kill_and_reap, tail};

/// More than the process may open (its hard limit is 256).
const SLOW_CLIENTS: usize = 300;

/// `zkalert run` under `prlimit`, killed on drop.
struct Run {
    child: Child,
    _watchdog: Option<Watchdog>,
    log: std::path::PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("zkalert log:\n{}", tail(&self.log, 30));
        }
        kill_and_reap(&mut self.child);
    }
}

/// `GET path`: Some(status) if answered within `timeout`, None if the
/// connection was closed or refused without an answer.
fn get(port: u16, path: &str, timeout: Duration) -> Option<u16> {
    let mut conn = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    conn.set_read_timeout(Some(timeout)).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    text.split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// The log without ANSI colours.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn pages(notifications: &std::path::Path) -> usize {
    std::fs::read_to_string(notifications).unwrap_or_default().lines().filter(|l| l.contains("NodeDown")).count()
}

#[test]
fn more_slow_clients_than_file_descriptors_neither_stall_evaluation_nor_the_api_for_long() {
    let dir = tempfile::Builder::new().prefix("zkalert-fds-").tempdir().unwrap();
    let metrics = MetricsServer::start();
    metrics.set(&[false]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let rest = format!(
        "server: {{listen: '127.0.0.1:{port}'}}
routing:
  tiers:
    P1: {{channels: [pages], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}
"
    );
    let yaml = support::zkalert::svc_config(metrics.port, &rest);
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), support::zkalert::svc_down_rules("")).unwrap();
    let log = dir.path().join("zkalert.log");
    let out = std::fs::File::create(&log).unwrap();
    // Soft limit 128, hard 256: zkalert raises the soft one to 256.
    let child = Command::new("prlimit")
        .args(["--nofile=128:256", "--"])
        .arg(support::zkalert::BIN)
        .args(["run", "-c", "config.yaml"])
        .current_dir(dir.path())
        .env("ZKALERT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run zkalert under prlimit (util-linux)");
    let watchdog = Watchdog::spawn(child.id(), "config.yaml");
    let mut run = Run { child, _watchdog: watchdog, log: log.clone() };
    let t0 = Instant::now();
    while get(port, "/-/healthy", Duration::from_secs(1)) != Some(200) {
        assert!(run.child.try_wait().unwrap().is_none(), "zkalert exited:\n{}", tail(&log, 30));
        assert!(t0.elapsed() < Duration::from_secs(20), "the API did not come up:\n{}", tail(&log, 30));
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = plain(&std::fs::read_to_string(&log).unwrap());
    assert!(text.contains("raised the open-files limit"), "{text}");
    let listening = text.lines().find(|l| l.contains("API listening")).unwrap_or_default();
    assert!(listening.contains("fd_limit=256") && listening.contains("max_connections=64"), "{listening}");

    // Slow clients: half send a request line, then nothing; half nothing at all.
    // (A server that stops accepting fills its backlog: stop after a few
    // connects that time out.)
    let mut slow = Vec::new();
    let mut failed = 0;
    for i in 0..SLOW_CLIENTS {
        match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) {
            Ok(mut conn) => {
                if i % 2 == 0 {
                    let _ = conn.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n");
                }
                slow.push(conn);
            }
            Err(_) if failed < 5 => failed += 1,
            Err(_) => break,
        }
    }
    let held_at = Instant::now();
    assert!(slow.len() >= 200, "opened {} slow clients", slow.len());

    // Evaluation and notifying go on meanwhile.
    metrics.set(&[true]);
    while pages(&dir.path().join("notifications.jsonl")) == 0 {
        assert!(
            held_at.elapsed() < Duration::from_secs(8),
            "no NodeDown page while the slow clients are connected:\n{}",
            tail(&log, 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A new client is refused at once, not left hanging.
    let t = Instant::now();
    let answer = get(port, "/-/healthy", Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?} ({answer:?})", t.elapsed());
    let text = plain(&std::fs::read_to_string(&log).unwrap());
    assert!(text.contains("API connection limit reached"), "refusals are logged:\n{}", tail(&log, 30));

    // The header deadline (10 s) drops the slow clients: the API answers again.
    let deadline = held_at + zkalert::api::HEADER_READ_TIMEOUT + Duration::from_secs(5);
    while get(port, "/-/healthy", Duration::from_secs(1)) != Some(200) {
        assert!(Instant::now() < deadline, "/-/healthy still not answering:\n{}", tail(&log, 30));
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(slow);
    assert!(run.child.try_wait().unwrap().is_none(), "zkalert still runs");
}
