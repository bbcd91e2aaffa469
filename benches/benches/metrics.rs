//! `GET /metrics` with 1,000 polled ZooKeeper nodes (issue 11: under
//! 100 ms). The runner runs the shipped rule pack, so the store keeps what
//! a real run keeps: each node reports every documented `zk_*` metric the
//! pack reads (docs/metrics.md), plus `up` and its poll duration; every
//! poll is counted (per-node counters and duration histograms), the rule
//! groups have run once. Numbers go to BENCHMARKS.md.
//!
//! - `export`: the runner's part of a scrape, in its loop (the store's
//!   latest `zk_*` values with their labels);
//! - `render`: the API's part, off the runner (zkalert's own metrics, the
//!   snapshot's gauges and the exported series as text);
//! - `scrape`: both, what one scrape costs;
//! - `count_polls`: what the source tasks add to a round of polls of the
//!   1,000 nodes (per node: a poll, its duration);
//! - `count_rule_groups`: what the runner adds to an evaluation of the
//!   pack's rule groups.

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Duration;
use zkalert::api::StatusView;
use zkalert::clock::ManualClock;
use zkalert::metrics::export_series;
use zkalert::model::{Labels, Timestamp};
use zkalert::pipeline::PipelineConfig;
use zkalert::runner::Runner;
use zkalert::source::{PollBatch, SeriesBatch};

const NODES: usize = 1_000;
const NODES_PER_CLUSTER: usize = 5;

/// A runner of the shipped rules after one poll of `NODES` nodes, and the
/// polls (with their sources' names).
fn polled_runner(now: Timestamp) -> (Runner, Vec<(String, PollBatch)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = zkalert::embedded::write_rules(dir.path()).expect("write the shipped rules");
    let files = zkalert::rule::find_rule_files(&paths).expect("rule files");
    let rules = zkalert::rule::load_rules(&files, Default::default()).expect("the shipped rules load");
    let metrics: Vec<String> = zkalert::rule::catalogue::catalogue()
        .names
        .iter()
        .filter(|n| n.starts_with("zk_") && rules.retention.keeps(n))
        .cloned()
        .collect();
    let mut runner =
        Runner::new(Arc::new(rules), Duration::from_secs(15), PipelineConfig::defaults_to(&[]), Vec::new());
    let mut polls = Vec::new();
    for node in 0..NODES {
        let cluster = format!("cluster-{}", node / NODES_PER_CLUSTER);
        let instance = format!("zk-{node}.example.com:2181");
        let role = if node % NODES_PER_CLUSTER == 0 { "leader" } else { "follower" };
        let mut values: Vec<(String, f64)> = vec![("up".into(), 1.0), ("scrape_duration_seconds".into(), 0.004)];
        values.extend(metrics.iter().enumerate().map(|(i, m)| (m.clone(), (node * 7 + i) as f64 / 3.0)));
        let batch = PollBatch {
            series: vec![SeriesBatch {
                labels: Labels::from_pairs([("cluster", cluster.as_str()), ("instance", instance.as_str())]),
                info: Some(Labels::from_pairs([("role", role)])),
                timestamp: now,
                values,
            }],
        };
        let source = format!("zookeeper/{cluster}");
        runner.metrics.observe_poll(&source, &batch);
        runner.ingest(node, batch.clone());
        polls.push((source, batch));
    }
    runner.evaluate(&ManualClock::new(now));
    (runner, polls)
}

fn scrape(c: &mut Criterion) {
    let now = Timestamp::from_millis(1_700_000_000_000);
    let (runner, polls) = polled_runner(now);
    let snapshot = runner.snapshot(now, &StatusView::default());
    // Check once, untimed, that the workload is what it says.
    let export = export_series(&runner.store, now);
    let text = runner.metrics.render(&snapshot, Some(&export), now);
    assert!(export.len() >= NODES * 20, "{} zk_* series", export.len());
    eprintln!(
        "metrics/{NODES} nodes: {} zk_* series re-exported; exposition {} lines, {} KiB",
        export.len(),
        text.lines().filter(|l| !l.starts_with('#')).count(),
        text.len() / 1024
    );
    if let Ok(path) = std::env::var("ZKALERT_BENCH_METRICS_OUT") {
        std::fs::write(&path, &text).expect("write the exposition");
    }

    let mut group = c.benchmark_group("metrics");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.bench_function("export/1000_nodes", |b| b.iter(|| export_series(&runner.store, now)));
    group.bench_function("render/1000_nodes", |b| b.iter(|| runner.metrics.render(&snapshot, Some(&export), now)));
    group.bench_function("scrape/1000_nodes", |b| {
        b.iter(|| runner.metrics.render(&snapshot, Some(&export_series(&runner.store, now)), now))
    });
    group.bench_function("count_polls/1000_nodes", |b| {
        b.iter(|| polls.iter().for_each(|(source, batch)| runner.metrics.observe_poll(source, batch)))
    });
    let (rules, states) = (&runner.evaluator.rules, &runner.evaluator.tracker.rules);
    group.bench_function("count_rule_groups/shipped_pack", |b| {
        b.iter(|| runner.metrics.observe_rule_groups(rules, states, now))
    });
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
