//! The log source against a real ZooKeeper writing its real log: a node
//! whose dataLogDir is a small tmpfs, filled until ZooKeeper fails to write
//! its transaction log and logs "No space left on device"; the shipped
//! pack's ZkLogDiskFull pages P0 with its runbook, read from that log.

use crate::support::ensemble::{Ensemble, Options};
use crate::support::tmpfs::Tmpfs;
use crate::support::zkalert::{RunConfig, ZkalertRun, tiers_to};
use std::path::Path;
use std::time::Duration;

#[test]
fn zookeeper_out_of_room_for_its_transaction_log_pages_p0_from_its_own_log() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let txn_log = Tmpfs::mount(&scratch.path().join("txnlog"), "2m");
    // Small preallocation, so the node starts with room for its first log file.
    let options = Options {
        extra_cfg: vec![format!("dataLogDir={}", txn_log.dir.display()), "preAllocSize=64".into()],
        ..Options::default()
    };
    let zk = Ensemble::start(1, options);
    let node_log = zk.log_file(1);
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/zookeeper/logs.yaml");
    let config = RunConfig::new(zk.client_addrs(), &[]);
    let yaml = format!(
        "evaluation_interval: 1s\ndata_dir: zkalert-data\nrules:\n  - '{}'\n\
         sources:\n  - type: log\n    cluster: test\n    instance: '{}'\n    interval: 1s\n    paths: ['{}']\n\
         notifiers:\n  - name: events\n    type: file\n    path: notifications.jsonl\n\
         routing:\n  tiers:\n{}",
        pack.display(),
        zk.client_addr(1),
        node_log.display(),
        tiers_to("events", "1h"),
    );
    let mut run = ZkalertRun::start_yaml(config, &yaml, &[]);
    // The source's first poll reads the log from its end: wait for it.
    let state = run.dir().join("zkalert-data");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_dir(&state)
        .is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("log-")))
    {
        assert!(std::time::Instant::now() < deadline, "the log source never polled:\n{}", run.log_tail(30));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Fill the transaction log's filesystem, then write: a new session is a
    // transaction ZooKeeper must log.
    txn_log.fill();
    let write = std::process::Command::new("python3")
        .arg("-c")
        .arg(CONNECT)
        .arg(zk.client_addr(1))
        .output()
        .expect("run python3");
    eprintln!("client: {}", String::from_utf8_lossy(&write.stdout));
    let (page, _) = run
        .wait_event("ZkLogDiskFull from the node's log", Duration::from_secs(30), |e| e.is("firing", "ZkLogDiskFull"));
    assert_eq!(page.severity, "P0", "{:?}", page.raw);
    assert_eq!(page.labels.get("pattern").map(String::as_str), Some("no_space_left"));
    assert_eq!(page.instance(), Some(zk.client_addr(1).as_str()));
    assert!(page.runbook.as_deref().is_some_and(|r| r.contains("disk-full")), "{:?}", page.runbook);
    let text = std::fs::read_to_string(&node_log).expect("the node's log");
    assert!(text.contains("No space left on device"), "what ZooKeeper logged:\n{text}");
}

/// Opens a ZooKeeper session with the raw protocol (a ConnectRequest), so
/// the server must log a createSession transaction: Python's standard
/// library only, as the other harness scripts.
const CONNECT: &str = r#"
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=5)
# protocolVersion, lastZxidSeen, timeOut, sessionId, passwd (16 bytes), readOnly
body = struct.pack(">iqiqi16sb", 0, 0, 4000, 0, 16, b"\0" * 16, 0)
s.sendall(struct.pack(">i", len(body)) + body)
try:
    print("answer:", len(s.recv(64)), "bytes")
except OSError as e:
    print("no answer:", e)
"#;

/// The host source's look at a real node's transaction logs and snapshots:
/// a standalone ZooKeeper with `snapCount=10`, dataLogDir a directory of its
/// own on dataDir's filesystem and autopurge off; znodes written until it
/// snapshotted many times. zkalert (host source with `zoo_cfg`) counts the
/// files as ZooKeeper left them, and the pack pages ZkTxnFilesPilingUp
/// (P2) and ZkTxnLogSharesSnapshotDisk (P3) with their runbook.
#[test]
fn a_real_nodes_transaction_logs_and_snapshots_are_counted_and_housekeeping_alerts_fire() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let log_dir = scratch.path().join("txnlog");
    std::fs::create_dir_all(&log_dir).unwrap();
    let options = Options {
        extra_cfg: vec![format!("dataLogDir={}", log_dir.display()), "snapCount=10".into(), "preAllocSize=64".into()],
        ..Options::default()
    };
    let zk = Ensemble::start(1, options);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = zookeeper_client::Client::connect(&zk.client_addr(1)).await.expect("connect");
        let options = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
        for i in 0..300 {
            client.create(&format!("/housekeeping-{i}"), b"x", &options).await.expect("create a znode");
        }
    });
    // A snapshot is written on a thread of its own: let the last one land.
    std::thread::sleep(Duration::from_secs(1));
    let zoo_cfg = zk.dir().join("node1/zoo.cfg");
    let data_dir = std::fs::read_to_string(&zoo_cfg).expect("the node's zoo.cfg");
    assert!(data_dir.contains("snapCount=10"), "{data_dir}");
    let count = |dir: &Path, prefix: &str| {
        std::fs::read_dir(dir.join("version-2"))
            .map_or(0, |d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).count())
    };
    let snapshots = count(&zk.dir().join("node1/data"), "snapshot.");
    let logs = count(&log_dir, "log.");
    assert!(snapshots > 10 && logs > 10, "ZooKeeper left {snapshots} snapshots and {logs} logs");

    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/zookeeper/host.yaml");
    let config = RunConfig::new(zk.client_addrs(), &[]);
    // The pack's `for: 10m` would outlast the test: the same rules with a 1 s `for`.
    let rules = std::fs::read_to_string(&pack).unwrap().replace("for: 10m", "for: 1s");
    let yaml = format!(
        "evaluation_interval: 1s\ndata_dir: zkalert-data\nrules:\n  - host.yaml\n\
         sources:\n  - type: host\n    cluster: test\n    instance: '{}'\n    interval: 1s\n    zoo_cfg: '{}'\n\
         notifiers:\n  - name: events\n    type: file\n    path: notifications.jsonl\n\
         routing:\n  tiers:\n{}",
        zk.client_addr(1),
        zoo_cfg.display(),
        tiers_to("events", "1h"),
    );
    let runbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/runbooks/zookeeper/txn-log-housekeeping.md");
    let runbook = std::fs::read_to_string(runbook).unwrap();
    let mut run = ZkalertRun::start_yaml(
        config,
        &yaml,
        &[
            ("host.yaml", &rules),
            ("runbooks/zookeeper/txn-log-housekeeping.md", &runbook),
            ("runbooks/zookeeper/disk-full.md", "# disk\n"),
            ("runbooks/zookeeper/backup-stale.md", "# backup\n"),
        ],
    );
    let (piling, _) =
        run.wait_event("ZkTxnFilesPilingUp", Duration::from_secs(30), |e| e.is("firing", "ZkTxnFilesPilingUp"));
    assert_eq!(piling.severity, "P2");
    let counted = piling.value.unwrap_or_default();
    assert!(
        counted > 10.0 && counted <= snapshots.max(logs) as f64 + 2.0,
        "counted {counted}; ZooKeeper left {snapshots} snapshots, {logs} logs"
    );
    assert!(piling.runbook.as_deref().is_some_and(|r| r.contains("txn-log-housekeeping")), "{:?}", piling.runbook);
    let (shared, _) = run.wait_event("ZkTxnLogSharesSnapshotDisk", Duration::from_secs(30), |e| {
        e.is("firing", "ZkTxnLogSharesSnapshotDisk")
    });
    assert_eq!(shared.severity, "P3");
    assert!(!run.events().iter().any(|e| e.alertname == "ZkSnapshotOverdue"), "snapshots are fresh");
}
