//! Fake ZooKeeper servers for the polling benchmark: N four-letter-word
//! servers on loopback in one process, replaying real 3.8.0 captures
//! (one leader and the rest followers per ensemble of 5), closing the
//! connection after each reply as ZooKeeper does.
//!
//! Usage: fake_zk NODES FIXTURE_DIR CONFIG_OUT [INTERVAL]
//! Writes a zkalert config polling every fake node and serves until killed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const COMMANDS: [&str; 7] = ["ruok", "srvr", "mntr", "cons", "conf", "isro", "envi"];
const ENSEMBLE: usize = 5;

fn load(dir: &Path, role: &str) -> HashMap<String, Vec<u8>> {
    COMMANDS
        .iter()
        .map(|c| {
            let p = dir.join(role).join(format!("{c}.txt"));
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (c.to_string(), bytes)
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(n), Some(dir), Some(out)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: fake_zk NODES FIXTURE_DIR CONFIG_OUT [INTERVAL]");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("NODES must be a number");
    let interval = args.get(4).cloned().unwrap_or_else(|| "10s".into());
    let dir = Path::new(dir);
    let leader = Arc::new(load(dir, "leader"));
    let follower = Arc::new(load(dir, "follower"));
    let mut config = format!(
        "evaluation_interval: {interval}\nnotifiers:\n  - {{name: file, type: file, path: alerts.jsonl}}\nsources:\n"
    );
    let mut nodes_of_cluster = Vec::new();
    for i in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let replies = if i % ENSEMBLE == 0 { leader.clone() } else { follower.clone() };
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { continue };
                let replies = replies.clone();
                tokio::spawn(async move {
                    let mut cmd = [0u8; 4];
                    if sock.read_exact(&mut cmd).await.is_err() {
                        return;
                    }
                    let cmd = String::from_utf8_lossy(&cmd).into_owned();
                    if let Some(reply) = replies.get(&cmd) {
                        let _ = sock.write_all(reply).await;
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        nodes_of_cluster.push(addr.to_string());
        if nodes_of_cluster.len() == ENSEMBLE || i + 1 == n {
            let _ = writeln!(
                config,
                // The fakes answer four-letter words only, not the session
                // protocol: no held sessions (their cost is measured apart).
                "  - type: zookeeper\n    cluster: c{}\n    interval: {interval}\n    timeout: 2s\n    sessions: false\n    nodes: [{}]",
                i / ENSEMBLE,
                nodes_of_cluster.join(", ")
            );
            nodes_of_cluster.clear();
        }
    }
    std::fs::write(out, config).expect("write config");
    eprintln!("fake_zk: {n} nodes serving; config in {out}");
    std::future::pending::<()>().await;
}
