//! The runner's side of durability: what each step changed (tracker alerts,
//! notification log, new messages for the outbox, open maintenance windows)
//! written in one transaction before anything is sent; and the restore at
//! start-up, so a restart keeps `since` times, dedup, silences and acks and
//! delivers what was pending.

use super::Runner;
use crate::model::{Alert, AlertState, Fingerprint, Severity, Timestamp};
use crate::pipeline::{Message, Pipeline};
use crate::rule::AlertTracker;
use crate::state::{StateDb, StateError, StepWrite};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

/// What of an alert is persisted: its lifecycle, not every new value.
type Saved = (AlertState, Severity, Timestamp, Option<Timestamp>, Option<Timestamp>, Option<Timestamp>);

fn saved(a: &Alert) -> Saved {
    (a.state, a.severity, a.active_at, a.fired_at, a.resolved_at, a.keep_firing_since)
}

/// The state file and what of the tracker it holds.
pub struct Durable {
    pub db: StateDb,
    /// A stable key per rule (tracker index → key), across restarts.
    rule_keys: Vec<String>,
    saved: FxHashMap<(usize, Fingerprint), Saved>,
    /// Rows of rules that no longer exist, deleted on the first commit.
    orphans: Vec<(String, Fingerprint)>,
    open_windows: Vec<(String, Timestamp, Timestamp)>,
}

impl Durable {
    /// Writes one step: changed alerts, the notification log, the outbox.
    pub fn commit_step(
        &mut self,
        tracker: &AlertTracker,
        pipeline: &mut Pipeline,
        messages: &[Arc<Message>],
        now: Timestamp,
    ) -> Result<(), StateError> {
        let mut w = StepWrite { alerts_delete: std::mem::take(&mut self.orphans), ..StepWrite::default() };
        for (i, rule) in tracker.rules.iter().enumerate() {
            for (fp, a) in &rule.active {
                let s = saved(a);
                if self.saved.get(&(i, *fp)) != Some(&s) {
                    self.saved.insert((i, *fp), s);
                    w.alerts_upsert.push((self.rule_keys[i].clone(), a.clone()));
                }
            }
        }
        self.saved.retain(|(i, fp), _| {
            let keep = tracker.rules.get(*i).is_some_and(|r| r.active.contains_key(fp));
            if !keep {
                w.alerts_delete.push((self.rule_keys[*i].clone(), *fp));
            }
            keep
        });
        w.groups = pipeline.dispatcher.take_changes();
        w.outbox = messages.to_vec();
        let windows: Vec<(String, Timestamp, Timestamp)> = pipeline
            .config
            .maintenance
            .iter()
            .filter_map(|mw| mw.open_at(now).map(|(start, end)| (mw.name.clone(), start, end)))
            .collect();
        if windows != self.open_windows {
            for (name, _, end) in windows.iter().filter(|w| !self.open_windows.contains(w)) {
                tracing::info!(window = %name, until = %end, "maintenance window open");
            }
            for (name, ..) in self.open_windows.iter().filter(|w| !windows.contains(w)) {
                tracing::info!(window = %name, "maintenance window closed");
            }
            w.maintenance = Some(windows.clone());
            self.open_windows = windows;
        }
        self.db.commit(&w)
    }

    pub fn delivered(&mut self, done: &[(String, String)], now: Timestamp) {
        if let Err(e) = self.db.mark_delivered_many(done, now) {
            tracing::error!(error = %e, "cannot record deliveries");
        }
    }

    pub fn failed(&mut self, id: &str, channel: &str, now: Timestamp, error: &str) {
        if let Err(e) = self.db.mark_failed(id, channel, now, error) {
            tracing::error!(error = %e, "cannot record a failed delivery");
        }
    }
}

/// A stable key per tracker rule: group, name and the how-many-th rule of
/// that name in the group (a tiered alert is often several rules).
fn rule_keys(runner: &Runner) -> Vec<String> {
    let mut seen: FxHashMap<(String, String), usize> = FxHashMap::default();
    let mut keys = Vec::new();
    for g in &runner.evaluator.rules.groups {
        for r in &g.rules {
            let n = seen.entry((g.name.clone(), r.name.clone())).or_default();
            keys.push(format!("{}/{}#{n}", g.name, r.name));
            *n += 1;
        }
    }
    keys
}

impl Runner {
    /// Restores the state in `db` and persists every later step there.
    /// Restored firing alerts are held for `hold` (two polls), or for their
    /// rule's longest window if longer, while the store refills. Returns
    /// how many alerts were restored.
    pub fn restore_from(&mut self, db: StateDb, now: Timestamp, hold: Duration) -> Result<usize, StateError> {
        let persisted = db.load()?;
        let keys = rule_keys(self);
        let index: FxHashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let mut by_rule: FxHashMap<usize, Vec<Alert>> = FxHashMap::default();
        let mut saved_map = FxHashMap::default();
        let mut orphans = Vec::new();
        let mut restored = 0;
        for (key, alert) in persisted.alerts {
            match index.get(key.as_str()) {
                Some(&i) if i < self.evaluator.tracker.rules.len() => {
                    saved_map.insert((i, alert.fingerprint), saved(&alert));
                    by_rule.entry(i).or_default().push(alert);
                    restored += 1;
                }
                _ => orphans.push((key, alert.fingerprint)),
            }
        }
        let windows: Vec<Duration> = self.evaluator.rules.rules().map(|r| r.longest_range()).collect();
        for (i, alerts) in by_rule {
            let hold = hold.max(windows.get(i).copied().unwrap_or_default());
            self.evaluator.tracker.rules[i].restore(alerts, now + hold);
        }
        self.pipeline.dispatcher.restore(persisted.groups);
        self.pipeline.silences.items = persisted.silences;
        self.pending = persisted.pending.into_iter().map(|e| (Arc::new(e.message), e.channel)).collect();
        if !orphans.is_empty() {
            tracing::info!(count = orphans.len(), "dropping persisted alerts of rules that no longer exist");
        }
        tracing::info!(
            path = %db.path().display(),
            alerts = restored,
            silences = self.pipeline.silences.items.len(),
            groups = self.pipeline.dispatcher.groups().count(),
            pending_deliveries = self.pending.len(),
            "state restored"
        );
        self.durable =
            Some(Durable { db, rule_keys: keys, saved: saved_map, orphans, open_windows: persisted.maintenance });
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::notify::FileNotifier;
    use crate::notify::delivery::Report;
    use crate::pipeline::PipelineConfig;
    use crate::runner::{PollBatch, SeriesBatch};

    fn runner(dir: &std::path::Path, notifications: &std::path::Path) -> Runner {
        let rules = dir.join("rules.yaml");
        std::fs::write(
            &rules,
            "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 10s\n    severity: P0\n",
        )
        .unwrap();
        let rules = Arc::new(crate::rule::load_rules(&[rules], Default::default()).unwrap());
        let notifier: Arc<dyn crate::notify::Notifier> = Arc::new(FileNotifier::new("pages", notifications));
        let channels = crate::runner::channels(vec![notifier]);
        Runner::new(rules, Duration::from_secs(5), PipelineConfig::defaults_to(&["pages".into()]), channels)
    }

    fn down(runner: &mut Runner, t: i64) {
        runner.ingest(
            0,
            PollBatch {
                series: vec![SeriesBatch {
                    labels: crate::model::Labels::from_pairs([("instance", "a")]),
                    info: None,
                    timestamp: Timestamp::from_millis(t * 1000),
                    values: vec![("up".into(), 0.0)],
                }],
            },
        );
    }

    /// Waits for the deliverer's next report and records it.
    async fn next_report(runner: &mut Runner, rx: &mut tokio::sync::mpsc::UnboundedReceiver<Report>) -> Report {
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a report").expect("open");
        runner.on_report(r.clone());
        r
    }

    #[tokio::test]
    async fn a_failed_delivery_survives_a_crash_and_nothing_is_paged_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("data/state.db");
        // The notifier's directory cannot be created (its parent is a file):
        // every delivery fails and stays in the outbox.
        std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
        let mut first = runner(dir.path(), &dir.path().join("not-a-dir/pages.jsonl"));
        let mut reports = first.reports.take().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        first.deliverer.set_clock(clock.clone());
        first
            .restore_from(StateDb::open(&db_path).unwrap(), Timestamp::from_millis(0), Duration::from_secs(10))
            .unwrap();
        for t in [0, 5, 10, 15] {
            clock.set(Timestamp::from_millis(t * 1000));
            down(&mut first, t);
            first.evaluate(clock.as_ref());
        }
        let r = next_report(&mut first, &mut reports).await;
        assert!(r.result.is_err() && !r.done, "the page could not be delivered, and will be retried: {r:?}");
        let fired_at = first.evaluator.tracker.firing().next().and_then(|a| a.fired_at);
        assert_eq!(fired_at, Some(Timestamp::from_millis(10_000)));
        drop(first); // a crash: the retries stop, nothing more is written

        let pages = dir.path().join("pages.jsonl");
        let mut second = runner(dir.path(), &pages);
        let mut reports = second.reports.take().unwrap();
        second.deliverer.set_clock(clock.clone());
        let restored = second
            .restore_from(StateDb::open(&db_path).unwrap(), Timestamp::from_millis(20_000), Duration::from_secs(10))
            .unwrap();
        assert_eq!(restored, 1);
        assert_eq!(second.pending.len(), 1, "the undelivered page is still pending");
        assert_eq!(second.evaluator.tracker.firing().next().and_then(|a| a.fired_at), fired_at, "since kept");
        for t in [20, 25, 30] {
            clock.set(Timestamp::from_millis(t * 1000));
            down(&mut second, t);
            let messages = second.evaluate(clock.as_ref());
            assert!(messages.is_empty(), "already notified before the crash: no new page at {t}s");
        }
        let r = next_report(&mut second, &mut reports).await;
        assert!(r.result.is_ok() && r.done, "{r:?}");
        assert_eq!(r.delivery.idempotency_key(), format!("{}-pages", r.delivery.message.id));
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&pages).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["firing"][0]["new"], true);
        assert_eq!(lines[0]["at"], "1970-01-01T00:00:10Z", "delivered as written before the crash");
        let db = StateDb::open(&db_path).unwrap();
        assert_eq!(db.pending_count().unwrap(), 0);
        let history = db.deliveries(10).unwrap();
        assert!(history[0].delivered_at.is_some() && history[0].attempts >= 2, "{history:?}");
    }
}
