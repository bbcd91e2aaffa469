//! Where a notification-pipeline step spends its time: the step of
//! `pipeline_workload::Harness::step` taken apart into its sections and
//! timed one by one, for the scenarios of `benches/pipeline.rs`
//! (first notification, steady-state dedup, 1% churn). A profiling aid for
//! BENCHMARKS.md; the benchmark itself is the reference for totals.
//!
//! Usage: pipeline_sections [N] [STATE_DIR]   (default 100000 and the
//! system temporary directory; run a release build). Prints one line of
//! key=value pairs (milliseconds per step) per scenario.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zkalert::model::{Alert, Timestamp};
use zkalert::pipeline::{Inhibitor, Message, Roles};
use zkalert::state::{StateDb, StepWrite};
use zkalert_benches::pipeline_workload::{Harness, Tracker, secs, send_now, t0};

const SECTIONS: [&str; 10] = [
    "refs",
    "inhibit_index",
    "mutes",
    "dispatch",
    "take_changes",
    "outbox_copy",
    "commit",
    "deliver",
    "mark_delivered",
    "total",
];

#[derive(Default)]
struct Times {
    ms: [f64; SECTIONS.len()],
    steps: usize,
    messages: usize,
    log_rows: usize,
}

impl Times {
    fn line(&self, scenario: &str, n: u64) -> String {
        let steps = self.steps.max(1) as f64;
        let mut out = format!("scenario={scenario} alerts={n} steps={}", self.steps);
        for (name, ms) in SECTIONS.iter().zip(self.ms) {
            out.push_str(&format!(" {name}_ms={:.2}", ms / steps));
        }
        let total = self.ms[SECTIONS.len() - 1] / steps;
        out.push_str(&format!(
            " messages_per_step={:.0} log_rows_per_step={:.0} alerts_per_s={:.0}",
            self.messages as f64 / steps,
            self.log_rows as f64 / steps,
            n as f64 / (total / 1000.0)
        ));
        out
    }
}

/// `Harness::step`, section by section (the inhibition index is built once
/// more on its own, only to time it: `mutes` includes building it too).
fn step(h: &mut Harness, tracker: &Tracker, now: Timestamp, t: &mut Times) {
    let mut lap = Instant::now();
    let mut mark = |i: usize, t: &mut Times| {
        let e = lap.elapsed();
        t.ms[i] += e.as_secs_f64() * 1000.0;
        lap = Instant::now();
        e
    };
    let mut elapsed = Duration::ZERO;
    let alerts: Vec<&Alert> = tracker.refs();
    elapsed += mark(0, t);
    let rules = &h.pipeline.config.inhibit_rules;
    let roles: Vec<Roles> = alerts.iter().map(|a| Roles::of(rules, a)).collect();
    drop(std::hint::black_box(Inhibitor::new(rules, alerts.iter().copied().zip(&roles))));
    mark(1, t); // not part of the step's total: roles are cached across steps in `muted`
    let mutes = h.pipeline.muted(&alerts, now);
    elapsed += mark(2, t);
    let messages: Vec<Arc<Message>> =
        h.pipeline.dispatcher.step(alerts.iter().copied().zip(mutes), now).into_iter().map(Arc::new).collect();
    elapsed += mark(3, t);
    let groups = h.pipeline.dispatcher.take_changes();
    t.log_rows += groups.upserted.len() + groups.removed.len();
    elapsed += mark(4, t);
    let outbox: Vec<Arc<Message>> = messages.clone();
    elapsed += mark(5, t);
    let db = h.db.as_mut().expect("a state file");
    db.commit(&StepWrite { groups, outbox, ..Default::default() }).expect("commit");
    elapsed += mark(6, t);
    let mut done = Vec::new();
    for m in &messages {
        for channel in &m.channels {
            let (_, notifier) = h.notifiers.iter().find(|(name, _)| name == channel).expect("a notifier per channel");
            send_now(notifier.as_ref(), m, channel);
            done.push((m.id.clone(), channel.clone()));
        }
    }
    elapsed += mark(7, t);
    db.mark_delivered_many(&done, now).expect("mark delivered");
    elapsed += mark(8, t);
    t.ms[9] += elapsed.as_secs_f64() * 1000.0;
    t.steps += 1;
    t.messages += messages.len();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(100_000, |a| a.parse().unwrap_or_else(|_| panic!("N: {a:?}")));
    let dir: PathBuf = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = dir.join(format!("zkalert-pipeline-sections-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("state dir");
    let open = |name: &str| Some(StateDb::open(&dir.join(name)).expect("state file"));

    // First notification: two steps, as in the benchmark.
    let mut tracker = Tracker::firing(n, t0() - secs(1));
    let mut h = Harness::new(open("state.db"));
    for (label, at) in [("first_t0", t0()), ("first_t0+61s", t0() + secs(61))] {
        let mut t = Times::default();
        step(&mut h, &tracker, at, &mut t);
        let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
        println!("{} state_db_bytes={} state_wal_bytes={}", t.line(label, n), size("state.db"), size("state.db-wal"));
    }
    // Steady state: nothing new.
    let mut t = Times::default();
    for i in 1..=5 {
        step(&mut h, &tracker, t0() + secs(61) + Duration::from_millis(i), &mut t);
    }
    println!("{}", t.line("steady_dedup", n));
    // Churn: 60 warm-up evaluations (the resolved retention), then 10 timed.
    let mut now = t0() + secs(61);
    let mut warm = Times::default();
    for _ in 0..60 {
        now = now + secs(15);
        tracker.churn((n / 100) as usize, now);
        step(&mut h, &tracker, now, &mut warm);
    }
    let mut t = Times::default();
    for _ in 0..10 {
        now = now + secs(15);
        tracker.churn((n / 100) as usize, now);
        step(&mut h, &tracker, now, &mut t);
    }
    println!("{}", t.line("churn_1pct", n));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
