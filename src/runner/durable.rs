//! The runner's side of durability: what each step changed (tracker alerts,
//! notification log, new messages for the outbox, open maintenance windows,
//! delivery outcomes) written in one transaction before anything is sent;
//! and the restore at start-up, so a restart keeps `since` times, dedup,
//! silences, acks and failing channels and delivers what was pending.
//!
//! A write that fails (a full disk) loses nothing: the changes it carried
//! stay unwritten here and go with the next write, the failure shows in the
//! status and as the `StateNotPersisted` alert until a write succeeds.

use super::Runner;
use super::sending::NOTIFIER_FAILING;
use crate::model::{Alert, AlertState, Fingerprint, Labels, Severity, Timestamp};
use crate::pipeline::{Message, Pipeline, Silences};
use crate::rule::AlertTracker;
use crate::state::{DeliveryMark, LeaderChange, StateDb, StateError, StepWrite};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

/// What of an alert is persisted: its lifecycle, not every new value.
type Saved = (AlertState, Severity, Timestamp, Option<Timestamp>, Option<Timestamp>, Option<Timestamp>);

fn saved(a: &Alert) -> Saved {
    (a.state, a.severity, a.active_at, a.fired_at, a.resolved_at, a.keep_firing_since)
}

/// The rule key `NotifierFailing` alerts are stored under. Rule keys end in
/// `#n`, so this never names a rule.
const NOTIFIER_FAILING_KEY: &str = "zkalert/NotifierFailing";

/// The rule key alerts posted to the intake are stored under.
const EXTERNAL_KEY: &str = "zkalert/external";

/// Alerts kept in the file under one key that is not a rule's (the
/// `NotifierFailing` alerts, the intake's), and what the file holds of each.
#[derive(Default)]
struct Kept {
    saved: FxHashMap<Fingerprint, Saved>,
}

/// A step's changes to a [`Kept`] list, applied once written.
struct KeptChanges {
    saved: Vec<(Fingerprint, Saved)>,
    gone: Vec<Fingerprint>,
}

impl Kept {
    /// Adds to `w` what changed of `alerts` under `key`; `present` says
    /// whether an alert the file holds is still among them.
    fn changes<'a>(
        &self,
        key: &'static str,
        alerts: impl Iterator<Item = &'a Alert>,
        present: impl Fn(&Fingerprint) -> bool,
        w: &mut StepWrite,
    ) -> KeptChanges {
        let mut now_saved = Vec::new();
        for a in alerts {
            let s = saved(a);
            if self.saved.get(&a.fingerprint) != Some(&s) {
                now_saved.push((a.fingerprint, s));
                w.alerts_upsert.push((key.into(), Arc::new(a.clone())));
            }
        }
        let gone: Vec<Fingerprint> = self.saved.keys().filter(|fp| !present(fp)).copied().collect();
        w.alerts_delete.extend(gone.iter().map(|fp| (key.into(), *fp)));
        KeptChanges { saved: now_saved, gone }
    }

    fn written(&mut self, changes: KeptChanges) {
        self.saved.extend(changes.saved);
        for fp in &changes.gone {
            self.saved.remove(fp);
        }
    }
}

/// The meta-alert raised while the state file cannot be written.
pub const STATE_NOT_PERSISTED: &str = "StateNotPersisted";

/// While writes keep failing, a log line at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Why the state file could not be written, since when.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteFailure {
    pub since: Timestamp,
    pub error: String,
}

/// The state file and what of the tracker it holds.
pub struct Durable {
    pub db: StateDb,
    /// A stable key per rule (tracker index → key), across restarts.
    rule_keys: Vec<String>,
    /// What the file holds of each tracker alert.
    saved: FxHashMap<(usize, Fingerprint), Saved>,
    /// What the file holds of the `NotifierFailing` alerts.
    saved_failing: Kept,
    /// Rows of rules that no longer exist, deleted on the first commit.
    orphans: Vec<(String, Fingerprint)>,
    /// The open maintenance windows the file records.
    open_windows: Vec<(String, Timestamp, Timestamp)>,
    /// Messages whose outbox rows a failed write did not write.
    unwritten_outbox: Vec<Arc<Message>>,
    /// Leader changes not written yet (they go with the next step's write).
    unwritten_leaders: Vec<LeaderChange>,
    /// Delivery outcomes not written yet, by (message id, channel).
    unwritten_marks: FxHashMap<(String, String), DeliveryMark>,
    /// Set while writes fail.
    failure: Option<WriteFailure>,
    /// When a failure was last logged.
    failure_logged: Timestamp,
    /// The `StateNotPersisted` alert, firing while writes fail and for a
    /// while after they work again.
    alert: Option<Alert>,
}

impl Durable {
    /// Follows the tracker to the rule keys of a reloaded rule set: what
    /// the file holds of a rule that stays is kept under its new index;
    /// rows of a removed rule go with the next commit.
    pub(super) fn rekey(&mut self, keys: Vec<String>) {
        let index: FxHashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let mut saved = FxHashMap::default();
        for ((i, fp), s) in self.saved.drain() {
            let key = &self.rule_keys[i];
            match index.get(key.as_str()) {
                Some(&new) => {
                    saved.insert((new, fp), s);
                }
                None => self.orphans.push((key.clone(), fp)),
            }
        }
        self.saved = saved;
        self.rule_keys = keys;
    }

    /// Writes one step: changed alerts (the tracker's and `NotifierFailing`),
    /// the notification log, the outbox, and whatever earlier failed writes
    /// left unwritten. On failure nothing is forgotten: the next commit
    /// writes it.
    pub fn commit_step(
        &mut self,
        tracker: &AlertTracker,
        failing: &[Alert],
        external: &mut crate::intake::ExternalAlerts,
        pipeline: &mut Pipeline,
        messages: &[Arc<Message>],
        now: Timestamp,
    ) -> Result<(), StateError> {
        let orphans = self.orphans.iter().map(|(rule, fp)| (rule.clone().into(), *fp)).collect();
        let mut w = StepWrite { alerts_delete: orphans, ..StepWrite::default() };
        // `saved` changes only once the write succeeded.
        let mut now_saved: Vec<((usize, Fingerprint), Saved)> = Vec::new();
        for (i, rule) in tracker.rules.iter().enumerate() {
            for (fp, a) in &rule.active {
                let s = saved(a);
                if self.saved.get(&(i, *fp)) != Some(&s) {
                    now_saved.push(((i, *fp), s));
                    w.alerts_upsert.push((self.rule_keys[i].clone().into(), Arc::new(a.clone())));
                }
            }
        }
        let gone: Vec<(usize, Fingerprint)> = self
            .saved
            .keys()
            .filter(|(i, fp)| !tracker.rules.get(*i).is_some_and(|r| r.active.contains_key(fp)))
            .copied()
            .collect();
        w.alerts_delete.extend(gone.iter().map(|(i, fp)| (self.rule_keys[*i].clone().into(), *fp)));
        let failing_changes = self.saved_failing.changes(
            NOTIFIER_FAILING_KEY,
            failing.iter().filter(|a| a.name() == NOTIFIER_FAILING),
            |fp| failing.iter().any(|a| a.fingerprint == *fp),
            &mut w,
        );
        // Posted alerts: only those changed since the last write.
        let external_changes = external.take_unwritten();
        for (fp, alert) in &external_changes {
            match alert {
                Some(a) => w.alerts_upsert.push((EXTERNAL_KEY.into(), a.clone())),
                None => w.alerts_delete.push((EXTERNAL_KEY.into(), *fp)),
            }
        }
        // In key order, SQLite walks the (rule, fingerprint) index leaf by
        // leaf rather than seeking a random page for each row.
        w.alerts_upsert.sort_unstable_by(|(ra, a), (rb, b)| (ra, a.fingerprint).cmp(&(rb, b.fingerprint)));
        w.alerts_delete.sort_unstable();
        w.groups = pipeline.dispatcher.take_changes();
        let windows: Vec<(String, Timestamp, Timestamp)> = pipeline
            .config
            .maintenance
            .iter()
            .filter_map(|mw| mw.open_at(now).map(|(start, end)| (mw.name.clone(), start, end)))
            .collect();
        if windows != self.open_windows {
            w.maintenance = Some(windows.clone());
        }
        self.unwritten_outbox.extend(messages.iter().cloned());
        match self.write(&mut w, now, true) {
            Ok(_) => {
                for (key, s) in now_saved {
                    self.saved.insert(key, s);
                }
                for key in &gone {
                    self.saved.remove(key);
                }
                self.saved_failing.written(failing_changes);
                self.orphans.clear();
                for (name, _, end) in windows.iter().filter(|w| !self.open_windows.contains(w)) {
                    tracing::info!(window = %name, until = %end, "maintenance window open");
                }
                for (name, ..) in self.open_windows.iter().filter(|w| !windows.contains(w)) {
                    tracing::info!(window = %name, "maintenance window closed");
                }
                self.open_windows = windows;
                Ok(())
            }
            Err(e) => {
                // Marked dirty again, so the next commit writes the latest
                // state of these groups (and the removals).
                pipeline.dispatcher.put_back_changes(w.groups);
                external.unwritten_again(external_changes.into_iter().map(|(fp, _)| fp));
                Err(e)
            }
        }
    }

    /// Writes `w` with everything left unwritten so far; on failure keeps
    /// the outbox rows and delivery outcomes for the next write (the rest
    /// of `w` is the caller's to keep). A `whole_step` that succeeds ends a
    /// failure: nothing is held any more.
    fn write(&mut self, w: &mut StepWrite, now: Timestamp, whole_step: bool) -> Result<(), StateError> {
        w.outbox = std::mem::take(&mut self.unwritten_outbox);
        w.deliveries = self.unwritten_marks.drain().map(|(_, m)| m).collect();
        w.leaders = std::mem::take(&mut self.unwritten_leaders);
        w.at = now;
        let result = if w.is_empty() && whole_step && self.failure.is_some() {
            // Nothing to write, but is the file writable again?
            self.db.check_writable()
        } else {
            self.db.commit(w)
        };
        match result {
            Ok(()) if !whole_step => Ok(()),
            Ok(()) => {
                if let Some(f) = self.failure.take() {
                    tracing::info!(failing_since = %f.since, "state written again: the changes held since are saved");
                    self.recovered(now);
                }
                Ok(())
            }
            Err(e) => {
                self.unwritten_outbox = std::mem::take(&mut w.outbox);
                self.unwritten_leaders = std::mem::take(&mut w.leaders);
                for m in std::mem::take(&mut w.deliveries) {
                    self.unwritten_marks.insert((m.message_id.clone(), m.channel.clone()), m);
                }
                self.failed_write(&e, now);
                Err(e)
            }
        }
    }

    /// Writes what failed writes left (before an API write, so the file
    /// keeps the order of changes).
    pub fn flush(&mut self, now: Timestamp) -> Result<(), StateError> {
        if self.unwritten_outbox.is_empty() && self.unwritten_marks.is_empty() {
            return Ok(());
        }
        self.write(&mut StepWrite::default(), now, false)
    }

    /// Runs one write of the API's (a silence, an ack) after what is
    /// unwritten; a failure counts as a failed write.
    pub fn write_now(
        &mut self,
        now: Timestamp,
        write: impl FnOnce(&mut StateDb) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        self.flush(now)?;
        write(&mut self.db).inspect_err(|e| self.failed_write(e, now))
    }

    /// Writes a fallback delivery's outbox row (a failure is logged by
    /// `failed_write`; the row is kept for the next write).
    pub fn add_outbox(&mut self, m: Arc<Message>, now: Timestamp) {
        self.unwritten_outbox.push(m);
        let _ = self.flush(now);
    }

    /// Records a change of a cluster's leader, written with the next step.
    pub fn add_leader(&mut self, change: LeaderChange) {
        self.unwritten_leaders.push(change);
    }

    /// Records a delivery's attempt and outcome.
    pub fn mark(&mut self, mark: DeliveryMark, now: Timestamp) {
        let key = (mark.message_id.clone(), mark.channel.clone());
        match self.unwritten_marks.get_mut(&key) {
            Some(m) => m.merge(mark),
            None => {
                self.unwritten_marks.insert(key, mark);
            }
        }
        let _ = self.flush(now);
    }

    /// Records a failed write: logged when writes start failing, then at
    /// most every [`FAILURE_LOG_EVERY`] (a full disk fails every step).
    fn failed_write(&mut self, e: &StateError, now: Timestamp) {
        let error = e.to_string();
        match &mut self.failure {
            Some(f) => {
                f.error = error;
                if now.since(self.failure_logged) >= FAILURE_LOG_EVERY {
                    self.failure_logged = now;
                    let (since, unwritten) = (f.since, self.unwritten());
                    tracing::error!(error = %e, %since, unwritten, "cannot persist state: still failing");
                }
            }
            None => {
                tracing::error!(
                    error = %e,
                    "cannot persist state: changes are held in memory and written with the next write that succeeds"
                );
                self.failure = Some(WriteFailure { since: now, error });
                self.failure_logged = now;
                self.raise(now);
            }
        }
    }

    /// Why writes fail, while they do.
    pub fn failure(&self) -> Option<&WriteFailure> {
        self.failure.as_ref()
    }

    /// Changes held in memory because writes failed: outbox rows and delivery outcomes.
    pub fn unwritten(&self) -> usize {
        self.unwritten_outbox.iter().map(|m| m.channels.len()).sum::<usize>() + self.unwritten_marks.len()
    }

    fn raise(&mut self, now: Timestamp) {
        let labels = Labels::from_pairs([("alertname", STATE_NOT_PERSISTED), ("severity", Severity::P1.as_str())]);
        self.alert = Some(Alert::meta(labels, Severity::P1, "zkalert/state-not-persisted", now));
    }

    fn recovered(&mut self, now: Timestamp) {
        if let Some(a) = self.alert.as_mut() {
            a.resolve(now);
        }
    }

    /// The `StateNotPersisted` alert as of the last step, for the API.
    pub fn current_alert(&self) -> Option<&Alert> {
        self.alert.as_ref()
    }

    /// The `StateNotPersisted` alert at `now`, if any, for the pipeline.
    pub fn alert(&mut self, now: Timestamp) -> Option<&Alert> {
        if self.alert.as_ref().and_then(|a| a.resolved_at).is_some_and(|t| now.since(t) >= super::META_RESOLVED_KEPT) {
            self.alert = None;
        }
        if let (Some(a), Some(f)) = (&mut self.alert, &self.failure) {
            a.annotations = crate::model::Annotations::from_pairs([(
                "summary",
                format!("zkalert cannot write its state file since {}: {}", f.since, f.error),
            )]);
        }
        self.alert.as_ref()
    }
}

/// A stable key per tracker rule: group, name and the how-many-th rule of
/// that name in the group (a tiered alert is often several rules).
/// A stable key per rule of `rules` (group, name, and which of that name
/// in the group), in tracker order: the state file's, and what a reload
/// matches rules by.
pub(super) fn rule_keys(rules: &crate::rule::RuleSet) -> Vec<String> {
    let mut seen: FxHashMap<(String, String), usize> = FxHashMap::default();
    let mut keys = Vec::new();
    for g in &rules.groups {
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
        let keys = rule_keys(&self.evaluator.rules);
        let index: FxHashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let mut by_rule: FxHashMap<usize, Vec<Alert>> = FxHashMap::default();
        let mut saved_map = FxHashMap::default();
        let mut orphans = Vec::new();
        let mut restored = 0;
        let mut saved_failing = Kept::default();
        let mut failing = Vec::new();
        let mut external = Vec::new();
        for (key, alert) in persisted.alerts {
            if key == NOTIFIER_FAILING_KEY {
                saved_failing.saved.insert(alert.fingerprint, saved(&alert));
                failing.push(alert);
                continue;
            }
            if key == EXTERNAL_KEY {
                external.push(alert);
                continue;
            }
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
        // A channel no longer configured never delivers again: its alert
        // is not restored (and its row goes with the next commit).
        failing.retain(|a| a.labels.get("notifier").is_some_and(|c| self.deliverer.channel_names().any(|n| n == c)));
        self.failing.restore(failing, now);
        // Posted alerts resolve a resolve timeout after the restart unless
        // posted again (Prometheus re-sends the firing ones every minute).
        let posted_alerts = external.len();
        self.external.restore(external, now);
        self.pipeline.dispatcher.restore(persisted.groups);
        self.pipeline.silences = Silences::new(persisted.silences);
        self.leaders.restore(persisted.leaders);
        self.pending = persisted.pending.into_iter().map(|e| (Arc::new(e.message), e.channel)).collect();
        if !orphans.is_empty() {
            tracing::info!(count = orphans.len(), "dropping persisted alerts of rules that no longer exist");
        }
        tracing::info!(
            path = %db.path().display(),
            alerts = restored,
            silences = self.pipeline.silences.items().len(),
            groups = self.pipeline.dispatcher.groups().count(),
            pending_deliveries = self.pending.len(),
            failing_channels = saved_failing.saved.len(),
            posted_alerts,
            "state restored"
        );
        self.durable = Some(Durable {
            db,
            rule_keys: keys,
            saved: saved_map,
            saved_failing,
            orphans,
            open_windows: persisted.maintenance,
            unwritten_outbox: Vec::new(),
            unwritten_marks: FxHashMap::default(),
            unwritten_leaders: Vec::new(),
            failure: None,
            failure_logged: now,
            alert: None,
        });
        Ok(restored)
    }
}

/// A real filesystem that fills up, for the tests; needs root, as CI runs them.
#[cfg(test)]
#[path = "../../tests/it/support/tmpfs.rs"]
mod tmpfs;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::{NotifierConfig, NotifierKind};
    use crate::notify::delivery::Report;
    use crate::notify::template::Rendering;
    use crate::pipeline::PipelineConfig;
    use crate::test_support::{poll, rules_from_yaml};

    fn runner(notifications: &std::path::Path) -> Runner {
        let rules = rules_from_yaml(
            "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 10s\n    severity: P0\n",
        );
        let rules = Arc::new(rules.unwrap());
        let pages = NotifierConfig::new("pages", NotifierKind::File { path: notifications.into() });
        let channels = crate::runner::channels::of(&[pages], &Rendering::builtin());
        Runner::new(rules, Duration::from_secs(5), PipelineConfig::defaults_to(&["pages".into()]), channels)
    }

    fn down(runner: &mut Runner, t: i64) {
        runner.ingest(0, poll("a", t, &[("up", 0.0)]));
    }

    /// A runner on a manual clock at 0, restored from the state file at
    /// `db`, with its deliverer's report channel.
    fn started(
        notifications: &std::path::Path,
        db: &std::path::Path,
    ) -> (Runner, tokio::sync::mpsc::UnboundedReceiver<Report>, Arc<ManualClock>) {
        let mut runner = runner(notifications);
        let reports = runner.reports.take().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        runner.deliverer.set_clock(clock.clone());
        runner.restore_from(StateDb::open(db).unwrap(), Timestamp::from_millis(0), Duration::from_secs(10)).unwrap();
        (runner, reports, clock)
    }

    /// Waits for the deliverer's next report and records it.
    async fn next_report(runner: &mut Runner, rx: &mut tokio::sync::mpsc::UnboundedReceiver<Report>) -> Report {
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a report").expect("open");
        runner.on_report(r.clone());
        r
    }

    use super::tmpfs::Tmpfs;

    #[tokio::test]
    async fn a_commit_that_failed_on_a_full_disk_is_written_by_the_next_and_nothing_repeats_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Tmpfs::mount(&dir.path().join("data"), "2m");
        let db_path = disk.dir.join("state.db");
        let pages = dir.path().join("pages.jsonl");
        let (mut first, mut reports, clock) = started(&pages, &db_path);
        disk.fill();
        for t in [0, 5, 10, 15] {
            clock.set(Timestamp::from_millis(t * 1000));
            down(&mut first, t);
            first.evaluate(clock.as_ref());
        }
        // The page went out although its step could not be written.
        let r = next_report(&mut first, &mut reports).await;
        assert!(r.result.is_ok() && r.done, "{r:?}");
        let durable = first.durable.as_ref().unwrap();
        let failure = durable.failure().expect("the failure is known").clone();
        assert_eq!(failure.since, Timestamp::from_millis(0), "the first step failed already");
        assert!(failure.error.contains("full"), "{failure:?}");
        assert!(durable.unwritten() >= 2, "the outbox row and its delivery are held: {}", durable.unwritten());
        let on_disk = StateDb::open(&db_path).unwrap().load().unwrap();
        assert!(on_disk.alerts.is_empty() && on_disk.groups.is_empty(), "nothing was written: {on_disk:?}");
        assert!(first.durable.as_mut().unwrap().db.check_writable().is_err(), "the probe sees the full disk");
        // The next step raises StateNotPersisted.
        clock.set(Timestamp::from_millis(16_000));
        first.evaluate(clock.as_ref());
        let raised = first.durable.as_mut().unwrap().alert(clock.now()).cloned().expect("StateNotPersisted");
        assert_eq!(
            (raised.name(), raised.state, raised.severity),
            (STATE_NOT_PERSISTED, AlertState::Firing, Severity::P1)
        );

        disk.free();
        clock.set(Timestamp::from_millis(20_000));
        down(&mut first, 20);
        first.evaluate(clock.as_ref());
        let durable = first.durable.as_ref().unwrap();
        assert_eq!(durable.failure(), None, "written again");
        assert_eq!(durable.unwritten(), 0);
        let db = StateDb::open(&db_path).unwrap();
        let on_disk = db.load().unwrap();
        let alerts: Vec<(&str, AlertState)> = on_disk.alerts.iter().map(|(_, a)| (a.name(), a.state)).collect();
        assert_eq!(alerts, [("Down", AlertState::Firing)], "the alert that fired while the disk was full");
        let down_group = on_disk
            .groups
            .iter()
            .find(|g| g.notified_firing.len() == 1 && g.key.labels.get("alertname") == Some("Down"));
        assert!(down_group.is_some(), "the notification log says it was paged: {:?}", on_disk.groups);
        assert_eq!(db.pending_count().unwrap(), 0, "its delivery is recorded as done");
        let history = db.deliveries(10).unwrap();
        assert!(history.iter().all(|d| d.delivered_at.is_some()), "{history:?}");
        let resolved =
            first.durable.as_mut().unwrap().alert(clock.now()).cloned().expect("kept while its resolution is told");
        assert_eq!(resolved.state, AlertState::Resolved);
        drop(first);

        let mut second = runner(&pages);
        second.deliverer.set_clock(clock.clone());
        assert_eq!(
            second.restore_from(StateDb::open(&db_path).unwrap(), clock.now(), Duration::from_secs(10)).unwrap(),
            1
        );
        assert!(second.pending.is_empty(), "nothing to send again: {:?}", second.pending);
        for t in [25, 30, 35] {
            clock.set(Timestamp::from_millis(t * 1000));
            down(&mut second, t);
            let messages = second.evaluate(clock.as_ref());
            assert!(messages.iter().all(|m| m.new.is_empty()), "nothing new to page at {t}s: {messages:?}");
        }
        let lines = std::fs::read_to_string(&pages).unwrap();
        let down_pages = lines.lines().filter(|l| l.contains("\"alertname\":\"Down\"")).count();
        assert_eq!(down_pages, 1, "Down paged once: {lines}");
    }

    #[tokio::test]
    async fn a_failed_delivery_survives_a_crash_and_nothing_is_paged_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("data/state.db");
        // The notifier's directory cannot be created (its parent is a file):
        // every delivery fails and stays in the outbox.
        std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
        let (mut first, mut reports, clock) = started(&dir.path().join("not-a-dir/pages.jsonl"), &db_path);
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
        let mut second = runner(&pages);
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

    /// Posted alerts are written as they change (new, resolved, forgotten),
    /// not compared each step: a change a full disk kept out is written by
    /// the next commit that succeeds.
    #[tokio::test]
    async fn posted_alerts_are_written_as_they_change_and_a_full_disk_only_delays_it() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Tmpfs::mount(&dir.path().join("data"), "2m");
        let db_path = disk.dir.join("state.db");
        let (mut runner, _reports, clock) = started(&dir.path().join("pages.jsonl"), &db_path);
        let post = |runner: &mut Runner, now: Timestamp, ends: &str| {
            let body = format!(r#"[{{"labels":{{"alertname":"DiskFull","severity":"page"}},"endsAt":"{ends}"}}]"#);
            let batch = crate::intake::check_post(body.as_bytes(), &crate::intake::IntakePolicy::default(), now);
            runner.receive_external(batch.unwrap().batch, now);
        };
        let on_disk = || -> Vec<(String, AlertState)> {
            let persisted = StateDb::open(&db_path).unwrap().load().unwrap();
            persisted.alerts.iter().map(|(key, a)| (format!("{key} {}", a.name()), a.state)).collect()
        };
        disk.fill();
        post(&mut runner, clock.now(), "2030-01-01T00:00:00Z");
        runner.evaluate(clock.as_ref());
        assert!(runner.durable.as_ref().unwrap().failure().is_some(), "the disk is full");
        disk.free();
        clock.set(Timestamp::from_millis(2_000));
        runner.evaluate(clock.as_ref());
        assert_eq!(on_disk(), [("zkalert/external DiskFull".into(), AlertState::Firing)], "written once it could be");
        // Re-posted unchanged: nothing to write (and nothing written twice).
        post(&mut runner, clock.now(), "2030-01-01T00:00:00Z");
        assert!(runner.external.take_unwritten().is_empty());
        // Ended: resolved in the file; forgotten after the retention: gone from it.
        clock.set(Timestamp::from_millis(4_000));
        post(&mut runner, clock.now(), "1970-01-01T00:00:03Z");
        runner.evaluate(clock.as_ref());
        assert_eq!(on_disk(), [("zkalert/external DiskFull".into(), AlertState::Resolved)]);
        let forgotten = Timestamp::from_millis(4_000) + crate::rule::tracker::RESOLVED_RETENTION;
        clock.set(forgotten + Duration::from_secs(1));
        runner.evaluate(clock.as_ref());
        assert_eq!(on_disk(), [], "forgotten");
    }

    #[tokio::test]
    async fn a_posted_alert_survives_a_restart_without_a_second_page_or_a_false_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("data/state.db");
        let pages = dir.path().join("pages.jsonl");
        let (mut first, _reports, clock) = started(&pages, &db_path);
        let body = br#"[{"labels":{"alertname":"DiskFull","severity":"page"}}]"#;
        let posted = |now| crate::intake::check_post(body, &crate::intake::IntakePolicy::default(), now).unwrap().batch;
        first.receive_external(posted(clock.now()), clock.now());
        let told = first.evaluate(clock.as_ref());
        assert_eq!(told.iter().map(|m| m.firing.len()).sum::<usize>(), 1);
        drop(first);

        let mut second = runner(&pages);
        second.deliverer.set_clock(clock.clone());
        second.external.resolve_timeout = Duration::from_secs(60);
        clock.set(Timestamp::from_millis(30_000));
        second.restore_from(StateDb::open(&db_path).unwrap(), clock.now(), Duration::from_secs(10)).unwrap();
        assert_eq!(second.external.firing_count(), 1, "restored");
        for t in [30, 60, 89] {
            clock.set(Timestamp::from_millis(t * 1000));
            if t == 60 {
                // Prometheus re-sends it.
                second.receive_external(posted(clock.now()), clock.now());
            }
            let messages = second.evaluate(clock.as_ref());
            assert!(messages.iter().all(|m| m.new.is_empty() && m.resolved.is_empty()), "at {t}s: {messages:?}");
        }
        // Not posted again for the resolve timeout (5m, the policy's, from
        // the re-send at 60 s): resolved.
        clock.set(Timestamp::from_millis(359_000));
        assert!(second.evaluate(clock.as_ref()).iter().all(|m| m.resolved.is_empty()));
        let mut resolved = Vec::new();
        for t in 360..=420 {
            clock.set(Timestamp::from_millis(t * 1000));
            resolved.extend(
                second
                    .evaluate(clock.as_ref())
                    .iter()
                    .flat_map(|m| m.resolved.clone())
                    .map(|a| (t, a.name().to_string())),
            );
        }
        assert_eq!(second.external.firing_count(), 0);
        // Told at the group's next flush (group_interval 60 s), once.
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(resolved[0].1, "DiskFull");
    }
}
