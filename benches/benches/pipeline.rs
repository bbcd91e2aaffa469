//! Notification pipeline throughput: alerts per second through inhibit →
//! silence → maintenance → group → dedup → route, the durable commit of the
//! notification log and the outbox (SQLite, WAL, synchronous=FULL, on disk
//! under target/tmp), delivery to a no-op notifier and the deliveries marked
//! done — for 10k and 100k active firing alerts. Numbers go to BENCHMARKS.md.
//!
//! - `first_notification`: a fresh pipeline and state file; every alert is
//!   new. Two steps, both timed: at t0 (groups start, P0 groups are told at
//!   once) and at t0 + 61 s (every other group's group_wait and the P3
//!   digest are due), after which every alert has been told. Each step
//!   takes all N alerts through the pipeline, so throughput counts 2N.
//! - `steady_dedup`: the same alerts re-stepped 1 ms later each time,
//!   nothing new to tell (the common case at every evaluation); the commit
//!   is empty.
//! - `churn_1pct`: one step per 15 s evaluation; each step 1% of the firing
//!   alerts resolve and as many new ones fire. Resolved alerts stay in the
//!   tracker 15 min (as the real tracker keeps them); the pipeline is warmed
//!   up by 60 such steps first so that many are there. Repeats of unchanged
//!   groups (P0 every 5 min, P1 every 15 min) fall due as in a real run.

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use std::path::Path;
use std::time::{Duration, Instant};
use zkalert::state::StateDb;
use zkalert_benches::pipeline_workload::{Harness, StepStats, Tracker, secs, t0};

const SIZES: [u64; 2] = [10_000, 100_000];
const EVALUATION_INTERVAL: Duration = Duration::from_secs(15);
/// Evaluations of churn before measuring: the 15 min resolved retention.
const CHURN_WARMUP_STEPS: usize = 60;

fn state_dir() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn harness_with_db() -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(state_dir()).expect("tempdir");
    let db = StateDb::open(&dir.path().join("state.db")).expect("state file");
    (Harness::new(Some(db)), dir)
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, n: u64) {
    group.throughput(Throughput::Elements(n));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.sampling_mode(SamplingMode::Flat);
}

fn first_notification(c: &mut Criterion, n: u64) {
    let tracker = Tracker::firing(n, t0() - secs(1));
    let alerts = tracker.refs();
    // Check once, untimed, that the workload does what it says.
    let (mut h, _dir) = harness_with_db();
    let s = h.first_notification(&alerts);
    assert_eq!(h.notified(), n as usize, "every alert told");
    eprintln!("first_notification/{n}: {} messages, {} deliveries, {} log rows", s.messages, s.deliveries, s.log_rows);
    drop(h);

    let mut group = c.benchmark_group("pipeline");
    configure(&mut group, n);
    group.throughput(Throughput::Elements(2 * n));
    group.bench_function(BenchmarkId::new("first_notification", n), |b| {
        b.iter_batched(
            harness_with_db,
            |(mut h, dir)| {
                let s = h.first_notification(&alerts);
                // Returned so that dropping them is not timed.
                (h, dir, s)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn steady_dedup(c: &mut Criterion, n: u64) {
    let tracker = Tracker::firing(n, t0() - secs(1));
    let (mut h, _dir) = harness_with_db();
    h.first_notification(&tracker.refs());
    assert_eq!(h.notified(), n as usize);
    let mut now = t0() + secs(61);
    let mut told = StepStats::default();

    let mut group = c.benchmark_group("pipeline");
    configure(&mut group, n);
    group.bench_function(BenchmarkId::new("steady_dedup", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                now = now + Duration::from_millis(1);
                let start = Instant::now();
                let alerts = tracker.refs();
                let s = h.step(&alerts, now);
                total += start.elapsed();
                told.messages += s.messages;
                told.log_rows += s.log_rows;
            }
            total
        })
    });
    group.finish();
    assert_eq!(told, StepStats::default(), "nothing new: nothing told, nothing written");
}

fn churn(c: &mut Criterion, n: u64) {
    let per_step = (n / 100) as usize;
    let mut tracker = Tracker::firing(n, t0() - secs(1));
    let (mut h, _dir) = harness_with_db();
    h.first_notification(&tracker.refs());
    let mut now = t0() + secs(61);
    for _ in 0..CHURN_WARMUP_STEPS {
        now = now + EVALUATION_INTERVAL;
        tracker.churn(per_step, now);
        h.step(&tracker.refs(), now);
    }
    let mut steps = 0;
    let mut told = StepStats::default();

    let mut group = c.benchmark_group("pipeline");
    configure(&mut group, n);
    group.bench_function(BenchmarkId::new("churn_1pct", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                now = now + EVALUATION_INTERVAL;
                tracker.churn(per_step, now);
                let start = Instant::now();
                let alerts = tracker.refs();
                let s = h.step(&alerts, now);
                total += start.elapsed();
                steps += 1;
                told.messages += s.messages;
                told.deliveries += s.deliveries;
                told.log_rows += s.log_rows;
            }
            total
        })
    });
    group.finish();
    assert_eq!(tracker.firing_count(), n as usize);
    eprintln!(
        "churn_1pct/{n}: {} alerts in the tracker ({} firing); per step on average {:.0} messages, {:.0} log rows \
         over {steps} steps",
        tracker.alerts.len(),
        tracker.firing_count(),
        told.messages as f64 / steps as f64,
        told.log_rows as f64 / steps as f64,
    );
}

fn pipeline(c: &mut Criterion) {
    for n in SIZES {
        first_notification(c, n);
        steady_dedup(c, n);
        churn(c, n);
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
