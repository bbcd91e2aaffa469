//! Alertmanager API intake: parsing and checking one post of alerts as
//! Prometheus sends them (`check_post`, on the API's threads), per alert,
//! for posts of 64 (Prometheus' default batch) and 1,000 alerts. The
//! side-by-side run is `benches/alertmanager_ingest.sh`; this isolates the
//! part that runs once per posted alert.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zkalert::intake::{IntakePolicy, check_post};
use zkalert::model::Timestamp;

/// A post of `n` alerts shaped like the yardstick's (five labels, a
/// summary, both times, a generator URL).
fn post(n: usize) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "labels": {"alertname": format!("BenchAlert{:02}", i % 10), "cluster": format!("c{:04}", i / 10 % 10),
                           "instance": format!("host-{i:06}:9100"), "job": "bench", "severity": "warning"},
                "annotations": {"summary": "bench"},
                "startsAt": "2026-12-06T01:00:00.000Z", "endsAt": "2026-12-06T02:00:00.000Z",
                "generatorURL": "http://bench/graph",
            })
        })
        .collect();
    serde_json::to_vec(&alerts).expect("json")
}

fn check(c: &mut Criterion) {
    let policy = IntakePolicy::default();
    let now = Timestamp::from_millis(1_796_000_000_000);
    let mut group = c.benchmark_group("intake_check_post");
    for n in [64, 1000] {
        let body = post(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &body, |b, body| {
            b.iter(|| check_post(body, &policy, now).expect("a good post"))
        });
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
