//! Reloading the config and rules while running (SIGHUP, `POST /-/reload`):
//! the loop applies a checked [`Reconfig`] between steps, keeping every
//! alert whose rule (group and name) and labels are unchanged, the
//! dispatcher's notification log, the silences and the series store; a
//! reload that does not check changes nothing and is only reported.

use super::Runner;
use crate::model::{Alert, AlertState, Timestamp};
use crate::notify::delivery::Channel;
use crate::pipeline::PipelineConfig;
use crate::rule::tracker::{RESOLVED_RETENTION, RuleState};
use crate::rule::{AlertTracker, RuleSet};
use crate::source::Source;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What a reload replaces: checked, ready to apply.
pub struct Reconfig {
    pub rules: Arc<RuleSet>,
    pub evaluation_interval: Duration,
    pub pipeline: PipelineConfig,
    pub channels: Vec<Channel>,
}

/// The local runbooks rules name (reference → file), which the API serves.
pub type Runbooks = std::collections::BTreeMap<String, std::path::PathBuf>;

/// A source and what identifies it across reloads: its settings.
pub struct SourceSpec {
    pub settings: String,
    pub source: Arc<dyn Source>,
}

/// The config and rules read and checked, ready to run or to reload.
pub struct Loaded {
    pub reconfig: Reconfig,
    pub sources: Vec<SourceSpec>,
    pub runbooks: Arc<Runbooks>,
    /// How posted alerts are taken (the API reads it).
    pub intake: Arc<crate::config::IntakeConfig>,
    /// Scheduled reports.
    pub daily: super::daily::DailyPlan,
}

/// Reads and checks the config and rules again: every problem found, each
/// with its `path:line:col` where it comes from a file.
pub type Load = Box<dyn FnMut() -> Result<Loaded, Vec<String>> + Send>;

/// How the loop reloads: the loader, and the requests that do not come
/// through the API (SIGHUP).
pub struct Reloading {
    pub load: Load,
    pub requests: mpsc::Receiver<()>,
    /// Where the API reads the runbooks it serves.
    pub runbooks: Option<watch::Sender<Arc<Runbooks>>>,
    /// Where the API reads how to take posted alerts.
    pub intake: Option<watch::Sender<Arc<crate::config::IntakeConfig>>>,
}

/// The outcome of the reloads so far, for the status (and `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReloadStatus {
    /// Whether the last reload was applied (`true` before any reload: the
    /// config loaded at start-up is in force).
    pub successful: bool,
    /// When the config in force was loaded (start-up or the last good reload).
    pub last_success_at: Option<Timestamp>,
    /// When a reload was last asked for.
    pub last_attempt_at: Option<Timestamp>,
    /// Why the last reload was refused, each with its `path:line:col`.
    pub problems: Vec<String>,
}

impl ReloadStatus {
    /// The config loaded at start-up, at `now`.
    pub fn started(now: Timestamp) -> Self {
        Self { successful: true, last_success_at: Some(now), ..Self::default() }
    }

    /// After a reload at `now` that was applied, or refused for `problems`.
    fn after(&self, problems: Vec<String>, now: Timestamp) -> Self {
        let successful = problems.is_empty();
        let last_success_at = if successful { Some(now) } else { self.last_success_at };
        Self { successful, last_success_at, last_attempt_at: Some(now), problems }
    }
}

/// Logs a reload's outcome: every problem on a line of its own, with its
/// position.
pub fn report(status: &ReloadStatus) {
    if status.successful {
        tracing::info!("config reloaded");
        return;
    }
    for problem in &status.problems {
        tracing::error!(%problem, "config reload: problem");
    }
    tracing::error!(
        problems = status.problems.len(),
        "config reload failed: nothing changed, the config loaded before stays in force"
    );
}

impl Runner {
    /// Records a reload at `now`, applied (no `problems`) or refused: the
    /// one place a reload's outcome goes (the status through the snapshot,
    /// the log, and `/metrics`' reload gauges hook in here).
    pub(super) fn record_reload(&mut self, problems: Vec<String>, now: Timestamp) -> ReloadStatus {
        self.reload_status = self.reload_status.after(problems, now);
        self.metrics.set_config_reload(self.reload_status.successful, now);
        report(&self.reload_status);
        self.reload_status.clone()
    }

    /// Applies a checked reload at `now`. A rule keeps its state (alerts
    /// with their times and tier clocks, health) when a rule of the same
    /// group and name is still there; the next evaluation judges its
    /// alerts by the new rule. Firing alerts of a removed rule resolve now
    /// and are told once ([`Retired`]). Routing and notifiers are replaced,
    /// the notification log, silences and acks stay; deliveries already
    /// started finish on the notifier they started on.
    pub fn reconfigure(&mut self, new: Reconfig, now: Timestamp) {
        let old_keys = super::durable::rule_keys(&self.evaluator.rules);
        let keys = super::durable::rule_keys(&new.rules);
        let mut old: FxHashMap<String, RuleState> =
            old_keys.into_iter().zip(std::mem::take(&mut self.evaluator.tracker.rules)).collect();
        let rules = new
            .rules
            .rules()
            .zip(&keys)
            .map(|(rule, key)| old.remove(key).map_or_else(|| RuleState::new(rule), |s| s.reconfigured(rule)))
            .collect();
        for (key, state) in old {
            tracing::info!(rule = %key, alerts = state.active.len(), "rule removed: its firing alerts resolve");
            self.retired.add(state.active.into_values(), now);
        }
        Arc::make_mut(&mut self.store).set_retention(&super::store_retention(&new.rules.retention));
        self.evaluator = self.evaluator.reloaded(new.rules, new.evaluation_interval, AlertTracker { rules });
        if let Some(d) = &mut self.durable {
            d.rekey(keys);
        }
        self.pipeline.reconfigure(new.pipeline);
        let deadlines = self.pipeline.config.policy.tiers.each_ref().map(|t| t.delivery_deadline);
        let names: Vec<String> = new.channels.iter().map(|c| c.name.clone()).collect();
        self.deliverer.replace_channels(new.channels, deadlines);
        // A removed channel never delivers again, so it is not failing.
        let gone: Vec<String> = self.failing_gone(&names);
        for channel in gone {
            self.failing.recover(&channel, now);
        }
    }

    /// Channels a `NotifierFailing` alert is about that are not in `names`.
    fn failing_gone(&self, names: &[String]) -> Vec<String> {
        self.failing
            .current()
            .filter_map(|a| a.labels.get("notifier"))
            .filter(|c| !names.iter().any(|n| n == c))
            .map(str::to_string)
            .collect()
    }
}

/// Alerts of rules a reload removed: the firing ones resolved at the
/// reload, kept (as the tracker keeps resolved alerts) until the pipeline
/// has told their resolution once.
#[derive(Debug, Default)]
pub struct Retired {
    alerts: Vec<Alert>,
}

impl Retired {
    fn add(&mut self, alerts: impl IntoIterator<Item = Alert>, now: Timestamp) {
        for mut a in alerts {
            // Pending ones never fired: dropped without a word, as the
            // tracker drops them.
            if a.state == AlertState::Pending {
                continue;
            }
            a.resolve(now);
            a.keep_firing_since = None;
            self.alerts.push(a);
        }
    }

    /// The retired alerts at `now`, for the pipeline.
    pub fn alerts(&mut self, now: Timestamp) -> &[Alert] {
        self.alerts.retain(|a| a.resolved_at.is_none_or(|t| now.since(t) < RESOLVED_RETENTION));
        &self.alerts
    }

    /// As of the last step, for the API.
    pub fn current(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::{NotifierConfig, NotifierKind};
    use crate::notify::delivery::Report;
    use crate::notify::template::Rendering;
    use crate::pipeline::Message;
    use crate::test_support::{json_lines as lines, poll, rules_from_yaml, settle};
    use tokio::sync::mpsc;

    /// One rule group `g` with these rules (YAML list items, indented).
    fn rules(items: &str) -> Arc<RuleSet> {
        Arc::new(rules_from_yaml(&format!("groups:\n- name: g\n  rules:\n{items}")).unwrap())
    }

    const X_OVER_5: &str = "  - alert: X\n    expr: x > 5\n    severity: P1\n";

    /// File notifiers named `names` under `dir`, every tier to all of them,
    /// sent at once (no group wait, a group interval of 1s).
    fn reconfig(dir: &std::path::Path, rules: Arc<RuleSet>, names: &[&str]) -> Reconfig {
        let configs: Vec<NotifierConfig> = names
            .iter()
            .map(|n| NotifierConfig::new(*n, NotifierKind::File { path: dir.join(format!("{n}.jsonl")) }))
            .collect();
        let channels = crate::runner::channels::of(&configs, &Rendering::builtin());
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut pipeline = PipelineConfig::defaults_to(&names);
        for t in &mut Arc::make_mut(&mut pipeline.policy).tiers {
            t.group_wait = Duration::ZERO;
            t.group_interval = Duration::from_secs(1);
            t.channels = names.clone();
        }
        Reconfig { rules, evaluation_interval: Duration::from_secs(10), pipeline, channels }
    }

    fn runner(new: Reconfig) -> (Runner, mpsc::UnboundedReceiver<Report>) {
        let mut runner = Runner::new(new.rules, new.evaluation_interval, new.pipeline, new.channels);
        let reports = runner.reports.take().unwrap();
        (runner, reports)
    }

    /// Polls `x` at `secs` and evaluates then.
    fn step(runner: &mut Runner, clock: &ManualClock, secs: i64, x: f64) -> Vec<Arc<Message>> {
        clock.set(Timestamp::from_millis(secs * 1000));
        runner.ingest(0, poll("a", secs, &[("x", x)]));
        runner.evaluate(clock)
    }

    fn x_alert(runner: &Runner) -> Option<Alert> {
        runner.evaluator.tracker.alerts().find(|a| a.name() == "X").cloned()
    }

    #[tokio::test]
    async fn a_firing_alert_stays_firing_across_a_reload_without_a_new_page() {
        let dir = tempfile::tempdir().unwrap();
        let (mut runner, _reports) = runner(reconfig(dir.path(), rules(X_OVER_5), &["log"]));
        let clock = ManualClock::new(Timestamp::from_millis(0));
        assert_eq!(step(&mut runner, &clock, 0, 10.0).len(), 1, "the page");
        let before = x_alert(&runner).unwrap();
        assert_eq!(before.state, AlertState::Firing);
        runner.reconfigure(reconfig(dir.path(), rules(X_OVER_5), &["log"]), clock.now());
        for secs in [10, 20, 30] {
            let sent = step(&mut runner, &clock, secs, 10.0);
            assert!(sent.is_empty(), "nothing new to tell at {secs}s: {sent:?}");
        }
        let after = x_alert(&runner).unwrap();
        assert_eq!((after.state, after.active_at, after.fired_at), (before.state, before.active_at, before.fired_at));
    }

    #[tokio::test]
    async fn a_pending_alert_keeps_its_active_at_and_fires_at_the_original_time() {
        let dir = tempfile::tempdir().unwrap();
        let rule = "  - alert: X\n    expr: x > 5\n    for: 30s\n    severity: P1\n";
        let (mut runner, _reports) = runner(reconfig(dir.path(), rules(rule), &["log"]));
        let clock = ManualClock::new(Timestamp::from_millis(0));
        step(&mut runner, &clock, 0, 10.0);
        assert_eq!(x_alert(&runner).unwrap().state, AlertState::Pending);
        step(&mut runner, &clock, 10, 10.0);
        runner.reconfigure(reconfig(dir.path(), rules(rule), &["log"]), clock.now());
        assert!(step(&mut runner, &clock, 20, 10.0).is_empty(), "still pending at 20s");
        let sent = step(&mut runner, &clock, 30, 10.0);
        let x = x_alert(&runner).unwrap();
        assert_eq!((x.state, x.active_at), (AlertState::Firing, Timestamp::from_millis(0)));
        assert_eq!(sent.len(), 1, "fires at 30s, 30s after it became pending: {sent:?}");
    }

    #[tokio::test]
    async fn a_changed_threshold_keeps_the_alert_and_decides_at_the_next_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let (mut runner, _reports) = runner(reconfig(dir.path(), rules(X_OVER_5), &["log"]));
        let clock = ManualClock::new(Timestamp::from_millis(0));
        step(&mut runner, &clock, 0, 10.0);
        // Still above the new threshold: the same alert, nothing sent.
        let over_8 = "  - alert: X\n    expr: x > 8\n    severity: P1\n";
        runner.reconfigure(reconfig(dir.path(), rules(over_8), &["log"]), clock.now());
        assert_eq!(x_alert(&runner).unwrap().state, AlertState::Firing, "kept as it was until evaluated");
        assert!(step(&mut runner, &clock, 10, 10.0).is_empty());
        assert_eq!(x_alert(&runner).unwrap().active_at, Timestamp::from_millis(0));
        // Above 5 but not 20: the next evaluation resolves it, once.
        let over_20 = "  - alert: X\n    expr: x > 20\n    severity: P1\n";
        runner.reconfigure(reconfig(dir.path(), rules(over_20), &["log"]), clock.now());
        let sent = step(&mut runner, &clock, 20, 10.0);
        assert_eq!(sent.iter().map(|m| m.resolved.len()).collect::<Vec<_>>(), [1], "{sent:?}");
    }

    #[tokio::test]
    async fn alerts_of_a_removed_rule_resolve_once() {
        let dir = tempfile::tempdir().unwrap();
        let both = format!("{X_OVER_5}  - alert: Y\n    expr: x > 1\n    severity: P1\n");
        let (mut runner, _reports) = runner(reconfig(dir.path(), rules(&both), &["log"]));
        let clock = ManualClock::new(Timestamp::from_millis(0));
        step(&mut runner, &clock, 0, 10.0);
        assert_eq!(runner.evaluator.tracker.firing().count(), 2);
        let only_y = "  - alert: Y\n    expr: x > 1\n    severity: P1\n";
        runner.reconfigure(reconfig(dir.path(), rules(only_y), &["log"]), clock.now());
        let mut told = Vec::new();
        for secs in (10..=120).step_by(10) {
            told.extend(step(&mut runner, &clock, secs, 10.0));
        }
        let resolved: Vec<(&str, AlertState)> =
            told.iter().flat_map(|m| &m.resolved).map(|a| (a.name(), a.state)).collect();
        assert_eq!(resolved, [("X", AlertState::Resolved)], "X resolved once, Y untouched: {told:?}");
        assert!(told.iter().all(|m| m.new.is_empty()), "nothing paged again: {told:?}");
    }

    #[tokio::test]
    async fn the_state_file_follows_a_reload_that_reorders_and_removes_rules() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let y = "  - alert: Y\n    expr: x > 1\n    severity: P1\n";
        let z = "  - alert: Z\n    expr: x > 2\n    severity: P1\n";
        let (mut first, _reports) = runner(reconfig(dir.path(), rules(&format!("{X_OVER_5}{y}{z}")), &["log"]));
        first
            .restore_from(crate::state::StateDb::open(&db).unwrap(), Timestamp::from_millis(0), Duration::ZERO)
            .unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(0));
        step(&mut first, &clock, 0, 10.0);
        let fired: Vec<(String, Timestamp)> = {
            let mut f: Vec<_> = first.evaluator.tracker.firing().map(|a| (a.name().to_string(), a.active_at)).collect();
            f.sort();
            f
        };
        assert_eq!(fired.len(), 3);
        // X removed, Z now before Y: each kept alert is saved under its own rule.
        first.reconfigure(reconfig(dir.path(), rules(&format!("{z}{y}")), &["log"]), clock.now());
        step(&mut first, &clock, 10, 10.0);
        drop(first);
        let (mut restarted, _reports) = runner(reconfig(dir.path(), rules(&format!("{z}{y}")), &["log"]));
        let now = Timestamp::from_millis(20_000);
        restarted.restore_from(crate::state::StateDb::open(&db).unwrap(), now, Duration::ZERO).unwrap();
        let per_rule: Vec<(String, Vec<String>)> = restarted
            .evaluator
            .tracker
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.active.values().map(|a| a.name().to_string()).collect()))
            .collect();
        assert_eq!(per_rule, [("Z".to_string(), vec!["Z".to_string()]), ("Y".to_string(), vec!["Y".to_string()])]);
        let times: Vec<Timestamp> = restarted.evaluator.tracker.firing().map(|a| a.active_at).collect();
        assert_eq!(times, [Timestamp::from_millis(0); 2], "since times kept");
    }

    #[tokio::test]
    async fn a_new_notifier_gets_the_next_messages_and_a_delivery_in_flight_finishes_on_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut runner, mut reports) = runner(reconfig(dir.path(), rules(X_OVER_5), &["old"]));
        let clock = ManualClock::new(Timestamp::from_millis(0));
        step(&mut runner, &clock, 0, 10.0);
        // The page is in flight to `old` when `old` is replaced by `new`.
        runner.reconfigure(reconfig(dir.path(), rules(X_OVER_5), &["new"]), clock.now());
        settle(&mut runner, &mut reports).await;
        assert_eq!(lines(&dir.path().join("old.jsonl")).len(), 1, "the page finished on the old notifier");
        // x rises past nothing new; it resolves: told through `new` only.
        step(&mut runner, &clock, 10, 0.0);
        settle(&mut runner, &mut reports).await;
        let new = lines(&dir.path().join("new.jsonl"));
        assert_eq!(new.len(), 1, "{new:?}");
        assert_eq!(new[0]["resolved"][0]["alertname"], "X");
        assert_eq!(lines(&dir.path().join("old.jsonl")).len(), 1, "nothing more to the removed notifier");
    }
}
