//! The notification pipeline between the alert tracker and the notifiers,
//! as composed stages: inhibit → silence → maintenance (each marks an alert
//! muted) → group → dedup → route (the dispatcher). [`Pipeline::step`] runs
//! them all on the tracker's alerts at one time; everything here is pure
//! and runs the same on the wall clock and on virtual time.

pub mod dispatch;
pub mod inhibit;
pub mod maintenance;
pub mod matcher;
pub mod policy;
pub mod schedule;
pub mod silence;

pub use dispatch::{Ack, Dispatcher, GroupChanges, GroupState, Message, Reason};
pub use inhibit::{InhibitRule, Inhibitor, Roles};
pub use maintenance::{MaintenanceError, MaintenanceWindow};
pub use matcher::{MatchOp, Matcher, MatcherError, Matchers};
pub use policy::{GroupKey, Policy, Route, TierPolicy};
pub use schedule::{Schedule, ScheduleError};
pub use silence::{Silence, SilenceState, Silences};

use crate::model::{Alert, AlertState, Fingerprint, Severity, Timestamp};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// What the configuration decides: routing, inhibition, maintenance.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub policy: Arc<Policy>,
    pub inhibit_rules: Vec<InhibitRule>,
    /// Whether the `inhibit_rules` of the loaded rule files (a pack's
    /// cause → symptom relations) are added: [`Self::with_rule_file_inhibitions`].
    pub inhibit_from_rule_files: bool,
    pub maintenance: Vec<MaintenanceWindow>,
    /// Whether the always-firing `ZkalertWatchdog` alert is raised (its
    /// route is the policy's first: `Policy::route_only`).
    pub watchdog: bool,
}

/// More inhibit rules than [`inhibit::MAX_RULES`] once the rule files' are added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at most {max} inhibit rules: the config has {config} and the rule files {rule_files}", max = inhibit::MAX_RULES)]
pub struct TooManyInhibitRules {
    pub config: usize,
    pub rule_files: usize,
}

impl PipelineConfig {
    /// The seed's tiers to these channels, the default inhibition rules
    /// (and those of the rule files, once added).
    pub fn defaults_to(channels: &[String]) -> Self {
        Self {
            policy: Arc::new(Policy::seed_defaults_to(channels)),
            inhibit_rules: inhibit::default_rules(),
            inhibit_from_rule_files: true,
            maintenance: Vec::new(),
            watchdog: false,
        }
    }

    /// Adds the rule files' inhibit rules, unless the config left them out
    /// (`inhibit_rules` without `defaults` or `rule_files`).
    pub fn with_rule_file_inhibitions(mut self, rules: &[InhibitRule]) -> Result<Self, TooManyInhibitRules> {
        if !self.inhibit_from_rule_files || rules.is_empty() {
            return Ok(self);
        }
        if self.inhibit_rules.len() + rules.len() > inhibit::MAX_RULES {
            return Err(TooManyInhibitRules { config: self.inhibit_rules.len(), rule_files: rules.len() });
        }
        self.inhibit_rules.extend(rules.iter().cloned());
        Ok(self)
    }
}

/// Why an alert is not being told, if it is not.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Mute {
    pub inhibited: bool,
    /// Ids of the active silences matching it.
    pub silenced_by: Box<[String]>,
    /// Names of the open maintenance windows matching it.
    pub maintenance: Box<[String]>,
}

impl Mute {
    pub fn is_muted(&self) -> bool {
        self.inhibited || !self.silenced_by.is_empty() || !self.maintenance.is_empty()
    }
}

/// The pipeline's state: the config, the silences, the dispatcher.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub config: PipelineConfig,
    pub silences: Silences,
    pub dispatcher: Dispatcher,
    /// Inhibition roles per (alert, tier), kept while the alert is.
    roles: FxHashMap<(Fingerprint, Severity), Roles>,
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        let dispatcher = Dispatcher::new(config.policy.clone());
        Self { config, silences: Silences::default(), dispatcher, roles: FxHashMap::default() }
    }

    /// Takes a new config (a reload); silences and the dispatcher's
    /// notification log stay.
    pub fn reconfigure(&mut self, config: PipelineConfig) {
        self.dispatcher.set_policy(config.policy.clone());
        self.roles.clear();
        self.config = config;
    }

    /// Why each alert is muted at `now` (same order as `alerts`), one by
    /// one: a snapshot of 100,000s of alerts holds no list of them.
    pub fn mutes<'a>(&'a self, alerts: &'a [&'a Alert], now: Timestamp) -> impl Iterator<Item = Mute> + 'a {
        let rules = &self.config.inhibit_rules;
        let cached = |a: &Alert| self.roles.get(&(a.fingerprint, a.severity));
        // The roles the last step cached; computed only for alerts it did
        // not see (pending ones), found by their place in `alerts`.
        let unseen: FxHashMap<usize, Roles> = (alerts.iter().enumerate())
            .filter(|(_, a)| cached(a).is_none())
            .map(|(i, a)| (i, Roles::of(rules, a)))
            .collect();
        let sources =
            (alerts.iter().enumerate()).filter_map(|(i, a)| Some((*a, cached(a).or_else(|| unseen.get(&i))?)));
        let inhibitor = Inhibitor::new(rules, sources);
        let windows = self.open_windows(now);
        let silences = self.active_silences(now);
        alerts.iter().enumerate().map(move |(i, a)| Mute {
            inhibited: cached(a).or_else(|| unseen.get(&i)).is_some_and(|r| inhibitor.is_inhibited(a, r)),
            silenced_by: silences.iter().filter(|s| s.matchers.matches(&a.labels)).map(|s| s.id.clone()).collect(),
            maintenance: windows.iter().filter(|w| w.matchers.matches(&a.labels)).map(|w| w.name.clone()).collect(),
        })
    }

    fn open_windows(&self, now: Timestamp) -> Vec<&MaintenanceWindow> {
        self.config.maintenance.iter().filter(|w| w.open_at(now).is_some()).collect()
    }

    fn active_silences(&self, now: Timestamp) -> Vec<&Silence> {
        self.silences.items().iter().filter(|s| s.state(now) == SilenceState::Active).collect()
    }

    /// Whether each alert is muted at `now` (inhibition roles cached per
    /// alert across steps): the first stages of [`Pipeline::step`].
    pub fn muted(&mut self, alerts: &[&Alert], now: Timestamp) -> Vec<bool> {
        let rules = &self.config.inhibit_rules;
        let told = |a: &&&Alert| a.state != AlertState::Pending;
        for a in alerts.iter().filter(told) {
            self.roles.entry((a.fingerprint, a.severity)).or_insert_with(|| Roles::of(rules, a));
        }
        // Alerts gone are forgotten once they are a fifth of those kept: a
        // step looks each alert up once, it does not mark and sweep them all.
        if self.roles.len() > alerts.len() + alerts.len() / 4 + 64 {
            let present: rustc_hash::FxHashSet<(Fingerprint, Severity)> =
                alerts.iter().filter(told).map(|a| (a.fingerprint, a.severity)).collect();
            self.roles.retain(|key, _| present.contains(key));
        }
        let roles: Vec<Option<&Roles>> =
            alerts.iter().map(|a| if told(&a) { self.roles.get(&(a.fingerprint, a.severity)) } else { None }).collect();
        let inhibitor = Inhibitor::new(rules, alerts.iter().zip(&roles).filter_map(|(a, r)| r.map(|r| (*a, r))));
        let windows = self.open_windows(now);
        let silences = self.active_silences(now);
        alerts
            .iter()
            .zip(&roles)
            .map(|(a, role)| {
                role.is_some_and(|r| inhibitor.is_inhibited(a, r))
                    || silences.iter().any(|s| s.matchers.matches(&a.labels))
                    || windows.iter().any(|w| w.matchers.matches(&a.labels))
            })
            .collect()
    }

    /// When a step with the same alerts next has something to tell
    /// ([`Dispatcher::next_due`]).
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        self.dispatcher.next_due(now)
    }

    /// Runs every stage on the tracker's alerts at `now`; returns the
    /// messages due.
    pub fn step(&mut self, alerts: &[&Alert], now: Timestamp) -> Vec<Message> {
        let muted = self.muted(alerts, now);
        self.dispatcher.step(alerts.iter().copied().zip(muted), now)
    }
}

#[cfg(test)]
mod tests {
    use super::dispatch::tests::{alert, held, resolved};
    use super::*;
    use crate::model::{AlertState, Severity};
    use std::time::Duration;

    fn at(s: u64) -> Timestamp {
        // 2026-11-27T17:00:00Z, a Friday.
        Timestamp::from_millis(1_795_798_800_000 + s as i64 * 1000)
    }

    fn pipeline() -> Pipeline {
        let quorum = InhibitRule {
            source: Matchers::parse(r#"{alertname="ZkQuorumLost"}"#).unwrap(),
            target: Matchers::parse(r#"{instance=~".+"}"#).unwrap(),
            equal: vec!["cluster".into()],
        };
        let mut config =
            PipelineConfig::defaults_to(&["pages".to_string()]).with_rule_file_inhibitions(&[quorum]).unwrap();
        config.maintenance.push(
            MaintenanceWindow::new(
                "weekly",
                "0 18 * * 5",
                "UTC",
                Duration::from_secs(3600),
                Matchers::parse(r#"{instance="zk9"}"#).unwrap(),
            )
            .unwrap(),
        );
        Pipeline::new(config)
    }

    fn told(m: &[Message]) -> Vec<(String, usize, usize)> {
        m.iter()
            .map(|m| (m.group.get("alertname").unwrap_or("").to_string(), m.firing.len(), m.resolved.len()))
            .collect()
    }

    /// A cluster's alert: no `instance`, so the quorum inhibit rule's source.
    fn quorum_lost() -> Alert {
        let mut quorum = alert("ZkQuorumLost", "", Severity::P0, AlertState::Firing);
        quorum.labels.remove("instance");
        quorum
    }

    #[test]
    fn quorum_loss_inhibits_node_pages_until_it_resolves() {
        let mut p = pipeline();
        let quorum = quorum_lost();
        let node = alert("ZkNodeDown", "zk1", Severity::P1, AlertState::Firing);
        let m = p.step(&[&quorum, &node], at(0));
        assert_eq!(told(&m), [("ZkQuorumLost".into(), 1, 0)], "node alert inhibited");
        let mutes: Vec<Mute> = p.mutes(&[&quorum, &node], at(0)).collect();
        assert!(mutes[1].inhibited && !mutes[0].inhibited);
        // Quorum is back but the node is still down: now it pages (after its group_wait).
        let back = resolved(&quorum);
        let m = p.step(&[&back, &node], at(60));
        assert_eq!(told(&m), [("ZkQuorumLost".into(), 0, 1)]);
        assert_eq!(told(&p.step(&[&back, &node], at(90))), [("ZkNodeDown".into(), 1, 0)]);
    }

    fn zk2_silence(starts_at: Timestamp, ends_at: Timestamp) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: Matchers::parse(r#"{instance="zk2"}"#).unwrap(),
            starts_at,
            ends_at,
            created_by: "alice".into(),
            comment: "disk swap".into(),
        }
    }

    #[test]
    fn a_silence_mutes_from_its_start_to_its_end() {
        let mut p = pipeline();
        p.silences.upsert(zk2_silence(at(100), at(400)));
        let node = alert("ZkNodeDown", "zk2", Severity::P0, AlertState::Firing);
        assert_eq!(told(&p.step(&[&node], at(0))), [("ZkNodeDown".into(), 1, 0)], "before the silence");
        assert_eq!(&*p.mutes(&[&node], at(150)).next().unwrap().silenced_by, ["s1"]);
        assert!(p.step(&[&node], at(300)).is_empty(), "no 5-minute repeat while silenced");
        let gone = resolved(&node);
        assert!(p.step(&[&gone], at(350)).is_empty(), "resolved while silenced: not told");
        assert_eq!(told(&p.step(&[&gone], at(400))), [("ZkNodeDown".into(), 0, 1)], "told once the silence ends");
    }

    #[test]
    fn inhibited_alerts_held_only_by_keep_firing_for_are_not_paged_when_quorum_returns() {
        let mut p = pipeline();
        let quorum = quorum_lost();
        let zk1 = alert("ZkNodeDown", "zk1", Severity::P1, AlertState::Firing);
        let zk2 = alert("ZkNodeDown", "zk2", Severity::P1, AlertState::Firing);
        assert_eq!(told(&p.step(&[&quorum, &zk1, &zk2], at(0))), [("ZkQuorumLost".into(), 1, 0)]);
        // Both nodes answer again; keep_firing_for holds their alerts.
        let (held1, held2) = (held(&zk1, at(150)), held(&zk2, at(150)));
        assert!(p.step(&[&quorum, &held1, &held2], at(150)).is_empty());
        // Quorum is back: its resolution, and nothing about the recovered nodes.
        let back = resolved(&quorum);
        assert_eq!(told(&p.step(&[&back, &held1, &held2], at(180))), [("ZkQuorumLost".into(), 0, 1)]);
        for t in [210, 240, 260] {
            assert!(p.step(&[&back, &held1, &held2], at(t)).is_empty(), "at {t}s: held nodes paged as firing");
        }
        // Never told as firing, so their resolution is not told either.
        let (gone1, gone2) = (resolved(&held1), resolved(&held2));
        for t in [270, 300, 400] {
            assert!(p.step(&[&back, &gone1, &gone2], at(t)).is_empty(), "at {t}s: an untold resolution");
        }
    }

    #[test]
    fn a_held_alert_that_holds_again_after_the_mute_pages() {
        let mut p = pipeline();
        let quorum = quorum_lost();
        let node = alert("ZkNodeDown", "zk1", Severity::P1, AlertState::Firing);
        p.step(&[&quorum, &held(&node, at(0))], at(0));
        let back = resolved(&quorum);
        assert_eq!(told(&p.step(&[&back, &held(&node, at(0))], at(60))), [("ZkQuorumLost".into(), 0, 1)]);
        assert!(p.step(&[&back, &held(&node, at(0))], at(120)).is_empty());
        // The node is down again while still held: now it is news.
        assert!(p.step(&[&back, &node], at(130)).is_empty(), "P1 group_wait");
        assert_eq!(told(&p.step(&[&back, &node], at(160))), [("ZkNodeDown".into(), 1, 0)]);
    }

    #[test]
    fn silences_and_maintenance_ending_do_not_page_alerts_held_only_by_keep_firing_for() {
        let mut p = pipeline();
        p.silences.upsert(zk2_silence(at(0), at(600)));
        let silenced = alert("ZkNodeDown", "zk2", Severity::P0, AlertState::Firing);
        // zk9 is in the weekly window from 3600 s to 7200 s.
        let maintained = alert("ZkNodeDown", "zk9", Severity::P2, AlertState::Firing);
        assert!(p.step(&[&silenced], at(0)).is_empty());
        assert!(p.step(&[&held(&silenced, at(500))], at(500)).is_empty());
        for t in [600, 700, 1000] {
            assert!(p.step(&[&held(&silenced, at(500))], at(t)).is_empty(), "at {t}s: silence over, paged as firing");
        }
        let gone = resolved(&held(&silenced, at(500)));
        assert!(p.step(&[&gone], at(1100)).is_empty(), "an untold resolution");
        assert!(p.step(&[&gone, &maintained], at(3700)).is_empty());
        let held9 = held(&maintained, at(7000));
        for t in [7000, 7200, 7300, 7500] {
            assert!(p.step(&[&held9], at(t)).is_empty(), "at {t}s: window closed, paged as firing");
        }
    }

    #[test]
    fn a_maintenance_window_mutes_on_its_schedule() {
        let mut p = pipeline();
        let node = alert("ZkNodeDown", "zk9", Severity::P0, AlertState::Firing);
        // Fridays 18:00-19:00 UTC; at(3600) is 18:00.
        assert_eq!(told(&p.step(&[&node], at(0))), [("ZkNodeDown".into(), 1, 0)]);
        let muted: Vec<Mute> = p.mutes(&[&node], at(3600)).collect();
        assert_eq!(&*muted[0].maintenance, ["weekly"]);
        assert!(p.step(&[&node], at(3900)).is_empty(), "no repeat during maintenance");
        assert!(p.step(&[&node], at(7199)).is_empty());
        // The window closed: the overdue repeat, and the escalation nobody
        // answered (P0: 5 min) that maintenance held back.
        let m = p.step(&[&node], at(7200));
        assert_eq!(told(&m), [("ZkNodeDown".into(), 1, 0), ("ZkNodeDown".into(), 1, 0)]);
        assert_eq!(m.iter().filter(|m| m.escalation).count(), 1);
    }
}
