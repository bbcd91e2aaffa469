//! Rule evaluation throughput: rule-instance evaluations per second on one
//! core, for native threshold comparisons, Rhai per-instance expressions and
//! Rhai `per: cluster` rules. Numbers go to BENCHMARKS.md.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use zkalert::model::{Labels, Timestamp};
use zkalert::rule::{Evaluator, LoadOptions, RuleSet, load_rules};
use zkalert::store::SeriesStore;

const INSTANCES: usize = 10_000;
const NODES_PER_CLUSTER: usize = 5;
const RULES: usize = 50;
const METRICS: usize = 10;

/// 10,000 instances in clusters of 5, ten metrics each; values spread 0..1000
/// so each threshold rule fires for a few percent of instances.
fn store() -> Arc<SeriesStore> {
    let mut st = SeriesStore::default();
    let metrics: Vec<_> = (0..METRICS).map(|m| st.metric_id(&format!("m{m}"))).collect();
    for i in 0..INSTANCES {
        let labels = Labels::from_pairs([
            ("cluster", format!("c{}", i / NODES_PER_CLUSTER)),
            ("instance", format!("zk{i}:2181")),
        ]);
        let g = st.group_id(&labels);
        for (m, id) in metrics.iter().enumerate() {
            let v = ((i * 7919 + m * 104_729) % 1000) as f64;
            st.append(g, *id, Timestamp::from_millis(0), v);
        }
    }
    Arc::new(st)
}

fn rule_set(per: &str, expr: impl Fn(usize) -> String) -> Arc<RuleSet> {
    let mut yaml = format!("groups:\n  - name: bench\n    per: {per}\n    rules:\n");
    for r in 0..RULES {
        let _ = writeln!(yaml, "      - alert: R{r}\n        expr: '{}'\n        severity: P2", expr(r));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(load_rules(&[path], LoadOptions::default()).unwrap_or_else(|d| panic!("{d}")))
}

fn bench(c: &mut Criterion, name: &str, rules: Arc<RuleSet>, evaluations: u64) {
    let store = store();
    let mut group = c.benchmark_group("evaluation");
    group.throughput(Throughput::Elements(evaluations));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    // Steady state: the tracker already holds the firing alerts, as in a
    // running engine; each iteration is one evaluation round.
    let mut evaluator = Evaluator::new(rules, Duration::from_secs(15));
    evaluator.evaluate_all(&store, Timestamp::from_millis(0));
    let mut t = 0;
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                t += 1;
                Timestamp::from_millis(t)
            },
            |now| evaluator.evaluate_all(&store, now),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn evaluation(c: &mut Criterion) {
    let per_instance = (INSTANCES * RULES) as u64;
    bench(
        c,
        "10k_instances_x_50_threshold_rules_native",
        rule_set("instance", |r| format!("m{} > {}", r % METRICS, 950 - r)),
        per_instance,
    );
    bench(
        c,
        "10k_instances_x_50_rhai_expressions",
        rule_set("instance", |r| format!("m{} * 2 + m{} > {}", r % METRICS, (r + 1) % METRICS, 2800 - r)),
        per_instance,
    );
    let clusters = (INSTANCES / NODES_PER_CLUSTER * RULES) as u64;
    bench(
        c,
        "2k_clusters_x_50_rhai_cluster_rules",
        rule_set("cluster", |r| format!("nodes.filter(|n| n.m{} > {}).len() >= 2", r % METRICS, 900 - r)),
        clusters,
    );
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
