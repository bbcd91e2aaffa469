//! The daily report: gathering one cluster's report on the runner's loop (the store's five nodes, 1,000 alert
//! spans and 20 leader changes read back from the state file) and rendering it to text and HTML (off the loop).
//! Gathering is the part that holds the loop once a day; rendering runs on a blocking thread.

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Duration;
use zkalert::model::{Alert, AlertState, Annotations, Labels, Severity, Timestamp};
use zkalert::notify::template::Links;
use zkalert::pipeline::Silences;
use zkalert::report::gather::{Inputs, METRICS, Period, gather};
use zkalert::report::render::ReportTemplates;
use zkalert::state::{LeaderChange, StateDb, StepWrite};
use zkalert::store::SeriesStore;

const SPANS: usize = 1_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_millis(1_796_000_000_000 + s * 1000)
}

/// A state file holding a day of `prod`: 1,000 alert spans (half resolved) and 20 leader changes.
fn state(dir: &std::path::Path) -> StateDb {
    let mut db = StateDb::open(&dir.join("state.db")).expect("state file");
    let alerts = (0..SPANS)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("alertname", format!("Alert{:02}", i % 20)),
                ("cluster", "prod".into()),
                ("instance", format!("zk{}:2181", i % 5)),
                ("severity", "P2".into()),
            ]);
            let mut a = Alert::new(labels, Severity::P2, 1.0, at(i as i64 * 60));
            a.state = if i % 2 == 0 { AlertState::Resolved } else { AlertState::Firing };
            a.fired_at = Some(at(i as i64 * 60 + 30));
            a.resolved_at = (i % 2 == 0).then(|| at(i as i64 * 60 + 600));
            a.annotations = Annotations::from_pairs([("summary", format!("zk{} is slow", i % 5))]);
            a.runbook = Some("zookeeper/latency".into());
            (format!("rules.yaml/g/Alert{:02}#0", i % 20).into(), Arc::new(a))
        })
        .collect();
    let leaders = (0..20)
        .map(|i| LeaderChange {
            cluster: "prod".into(),
            at: at(i * 3000),
            leader: (i % 2 == 0).then(|| format!("zk{}:2181", i % 5)),
        })
        .collect();
    db.commit(&StepWrite { alerts_upsert: alerts, leaders, at: at(0), ..Default::default() }).expect("commit");
    db
}

/// Five nodes' latest values of every metric the report reads.
fn store(now: Timestamp) -> SeriesStore {
    let mut store = SeriesStore::default();
    for n in 0..5 {
        let labels = Labels::from_pairs([("cluster", "prod".to_string()), ("instance", format!("zk{n}:2181"))]);
        for (i, metric) in METRICS.iter().enumerate() {
            store.ingest(metric, &labels, now, if *metric == "up" { 1.0 } else { i as f64 * 10.0 });
        }
    }
    store
}

fn report(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = state(dir.path());
    let now = at(SPANS as i64 * 60);
    let store = store(now);
    let (silences, links) = (Silences::default(), Links::default());
    let inputs = Inputs { store: &store, db: Some(&db), silences: &silences, links: &links };
    let period = Period {
        cluster: "prod".into(),
        until: now,
        length: Duration::from_secs(24 * 3600),
        time_zone: chrono_tz::UTC,
    };
    let made = gather(&inputs, &period).expect("report");
    assert_eq!(made.alerts.len(), SPANS);
    let templates = ReportTemplates::builtin();
    let mut group = c.benchmark_group("report");
    group.bench_function("gather_1000_spans", |b| b.iter(|| gather(&inputs, &period).expect("report")));
    group.bench_function("render_1000_spans", |b| b.iter(|| templates.render(&made).expect("rendered")));
    group.finish();
}

criterion_group!(benches, report);
criterion_main!(benches);
