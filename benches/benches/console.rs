//! The web console's alerts page: server time to render it (sort by tier
//! and state, rows, the minijinja template, HTML escaping) from the API's
//! snapshot with 1,000 and 10,000 alerts shaped like the rule pack's (the
//! pipeline workload's alerts: 5 labels, summary and description, a
//! runbook). 5 % pending, 10 % silenced, 5 % inhibited, 10 % in acked
//! groups; groups by (cluster, alertname) with a last reason. The target
//! is under 200 ms for 10,000 (issue 11). Numbers go to BENCHMARKS.md.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::time::Duration;
use zkalert::api::{AlertView, GroupView, Snapshot, alerts_page_html};
use zkalert::model::{AlertState, Labels};
use zkalert::pipeline::{Ack, Mute, Reason};
use zkalert_benches::pipeline_workload::{alert, secs, t0};

fn snapshot(n: u64) -> Snapshot {
    let now = t0() + secs(600);
    let mut groups: BTreeMap<String, GroupView> = BTreeMap::new();
    let alerts = (0..n)
        .map(|i| {
            let mut a = alert(i, t0() - secs(i % 3600));
            if i % 20 == 3 {
                a.state = AlertState::Pending;
                a.fired_at = None;
            }
            let group_labels = Labels::from_pairs([
                ("alertname", a.labels.get("alertname").unwrap_or_default()),
                ("cluster", a.labels.get("cluster").unwrap_or_default()),
            ]);
            let group_id = format!("{:016x}", group_labels.fingerprint().0);
            let ack = (i % 10 == 7).then(|| Ack { by: "oncall".into(), comment: "on it".into(), at: now, until: None });
            let group = groups.entry(group_id.clone()).or_insert_with(|| GroupView {
                id: group_id.clone(),
                labels: group_labels,
                tier: Some(a.severity),
                ack: ack.clone(),
                last_sent: Some(now - secs(60)),
                escalated: false,
                last_reason: Some(Reason::NewAlerts),
                alerts: 0,
            });
            group.alerts += 1;
            let mute = Mute {
                inhibited: i % 20 == 5,
                silenced_by: if i % 10 == 1 { Box::new(["5f3c9a0d2b7e4411".into()]) } else { Box::default() },
                maintenance: Box::default(),
            };
            AlertView { alert: a.into(), group_id: group_id.into(), mute: mute.into(), ack: ack.map(Into::into) }
        })
        .collect();
    Snapshot { published: true, at: now, alerts, groups: groups.into_values().collect(), ..Snapshot::default() }
}

fn alerts_page(c: &mut Criterion) {
    let mut group = c.benchmark_group("console");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.sampling_mode(SamplingMode::Flat);
    for n in [1_000u64, 10_000] {
        let snap = snapshot(n);
        let page = alerts_page_html(&snap).expect("renders");
        let rows = page.matches("<li class=\"alert").count();
        assert_eq!(rows as u64, n, "every alert is a row");
        eprintln!("console/alerts_page/{n}: {} KiB of HTML", page.len() / 1024);
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::new("alerts_page", n), &snap, |b, snap| {
            b.iter(|| alerts_page_html(snap).expect("renders").len())
        });
    }
    group.finish();
}

criterion_group!(benches, alerts_page);
criterion_main!(benches);
