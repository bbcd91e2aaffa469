//! Memory per active alert of the notification pipeline, from the process's
//! resident set (VmRSS in /proc/self/status): (i) the alerts themselves as
//! the tracker holds them, (ii) the pipeline's state on top once every
//! alert has been told (notification log: groups and their told sets; the
//! dispatcher's key cache), (iii) the total. Nothing is dropped between
//! the readings; the messages of each step are delivered to a no-op
//! notifier and dropped, as the runner does.
//!
//! RSS counts what the allocator holds, not what is live: the copies of
//! every alert that the first notification's messages made are freed but
//! stay in the heap (glibc keeps freed small chunks for reuse), so (ii)
//! after stepping includes them. To tell the live state apart, the binary
//! then writes the notification log to a state file and measures a child
//! process that restores it (as a restart does) and steps once more
//! without telling anything: the `restored_*` keys.
//!
//! The `heap_*` keys are exact: live heap bytes from dhat's counting
//! allocator (what is allocated and not freed, at each reading), so they
//! need no child process; the RSS keys show what the OS sees.
//!
//! Usage: pipeline_memory [N]   (N active firing alerts, default 100000;
//! run a release build). Prints one line of key=value pairs.

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Live heap bytes now.
fn heap() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

use zkalert::pipeline::GroupChanges;
use zkalert::state::{StateDb, StepWrite};
use zkalert_benches::pipeline_workload::{Harness, Tracker, secs, t0};

/// (VmRSS, VmHWM) in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn parse_n(a: Option<String>) -> u64 {
    let n = match a {
        Some(a) => a.parse().unwrap_or_else(|_| panic!("N must be a number, not {a:?}")),
        None => 100_000,
    };
    assert!(n > 0, "N must be positive");
    n
}

/// The child: alerts, then the notification log restored from `db` and
/// one step that tells nothing (it builds the key cache).
fn restored(n: u64, db: &std::path::Path) {
    let (base, _) = rss();
    let tracker = Tracker::firing(n, t0() - secs(1));
    let (with_alerts, _) = rss();
    let mut h = Harness::new(None);
    let persisted = StateDb::open(db).and_then(|db| db.load()).expect("state file");
    h.pipeline.dispatcher.restore(persisted.groups);
    for s in 1..=3 {
        let steady = h.step(&tracker.refs(), t0() + secs(61 + s));
        assert_eq!(steady.messages, 0, "restored: nothing to tell");
    }
    assert_eq!(h.notified(), n as usize, "every alert told");
    let (with_pipeline, _) = rss();
    let per = |bytes: u64| bytes as f64 / n as f64;
    println!(
        "restored_alert_bytes_per_alert={:.0} restored_pipeline_bytes_per_alert={:.0} \
         restored_total_bytes_per_alert={:.0}",
        per(with_alerts - base),
        per(with_pipeline.saturating_sub(with_alerts)),
        per(with_pipeline.saturating_sub(base)),
    );
    drop((h, tracker));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--restored") {
        let n = parse_n(args.next());
        let db = args.next().expect("--restored N STATE_FILE");
        return restored(n, std::path::Path::new(&db));
    }
    let n = parse_n(first);
    let _profiler = dhat::Profiler::builder().testing().build();
    let (base, _) = rss();
    let heap_base = heap();

    let tracker = Tracker::firing(n, t0() - secs(1));
    let (with_alerts, _) = rss();
    let heap_alerts = heap();

    let mut h = Harness::new(None);
    let told = h.first_notification(&tracker.refs());
    // A few steady steps: the state a running engine keeps between steps.
    for s in 1..=3 {
        let steady = h.step(&tracker.refs(), t0() + secs(61 + s));
        assert_eq!(steady.messages, 0, "nothing new after the first notification");
    }
    assert_eq!(h.notified(), n as usize, "every alert told");
    let (with_pipeline, peak) = rss();
    let heap_pipeline = heap();
    let heap_peak = dhat::HeapStats::get().max_bytes as u64;

    let per = |bytes: u64| bytes as f64 / n as f64;
    let alerts = with_alerts.saturating_sub(base);
    let pipeline = with_pipeline.saturating_sub(with_alerts);
    let total = with_pipeline.saturating_sub(base);
    let measured = format!(
        "alerts={n} heap_alert_bytes_per_alert={:.0} heap_pipeline_bytes_per_alert={:.0} \
         heap_total_bytes_per_alert={:.0} heap_peak_bytes_per_alert={:.0} groups={} messages={} alert_bytes_per_alert={:.0} pipeline_bytes_per_alert={:.0} \
         total_bytes_per_alert={:.0} peak_bytes_per_alert={:.0} rss_base_kib={} rss_alerts_kib={} \
         rss_total_kib={} rss_peak_kib={} size_of_alert={} size_of_group_state={}",
        per(heap_alerts - heap_base),
        per(heap_pipeline.saturating_sub(heap_alerts)),
        per(heap_pipeline.saturating_sub(heap_base)),
        per(heap_peak.saturating_sub(heap_base)),
        h.pipeline.dispatcher.groups().count(),
        told.messages,
        per(alerts),
        per(pipeline),
        per(total),
        per(peak.saturating_sub(base)),
        base / 1024,
        with_alerts / 1024,
        with_pipeline / 1024,
        peak / 1024,
        std::mem::size_of::<zkalert::model::Alert>(),
        std::mem::size_of::<zkalert::pipeline::GroupState>(),
    );
    // The live state, apart from the allocator's free memory: the log
    // written to a state file, restored and measured in a child process.
    let dir = std::env::temp_dir().join(format!("zkalert-pipeline-memory-{}", std::process::id()));
    let path = dir.join("state.db");
    let mut db = StateDb::open(&path).expect("state file");
    let groups = GroupChanges { upserted: h.pipeline.dispatcher.groups().cloned().collect(), removed: Vec::new() };
    db.commit(&StepWrite { groups, ..Default::default() }).expect("commit");
    drop(db);
    // Kept alive to here, so every reading above includes them.
    drop((h, tracker));
    let child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--restored")
        .arg(n.to_string())
        .arg(&path)
        .output()
        .expect("child");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(child.status.success(), "child: {}", String::from_utf8_lossy(&child.stderr));
    println!("{measured} {}", String::from_utf8_lossy(&child.stdout).trim());
}
