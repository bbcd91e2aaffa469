//! The alert tracker: Prometheus's alert state machine (`rules/alerting.go`)
//! per rule, driven by candidates and an evaluation time, so it runs the same
//! on the wall clock and on virtual time.
//!
//! pending until `for` has elapsed, then firing; a pending alert whose
//! condition clears is dropped unsent; `keep_firing_for` holds a firing alert
//! after its condition clears; a resolved alert is reported once, keeping
//! the value it had; a rule whose evaluation fails keeps its alerts as they
//! are. Identity is [`Alert`]'s fingerprint, without `severity` or info
//! labels, so a tier change is the same alert (an escalation when it rises).
//!
//! Tiers behave as one Prometheus rule per tier would: an alert rises to a
//! tier only once its tier has been at least that severe for the tier's
//! `for` (the rule's unless the tier sets its own), and falls below a tier
//! only once that tier's condition has not held for `keep_firing_for`.

use super::Rule;
use super::eval::{ClusterScope, RuleOutcome};
use crate::model::{Alert, AlertState, Fingerprint, Severity, Timestamp};
use rustc_hash::FxHashMap;
use std::time::Duration;

/// How long a resolved alert is kept (and re-sent) after resolving, as
/// Prometheus's `resolvedRetention`.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

/// A change in an alert's lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEvent {
    /// The condition started to hold; not yet sent anywhere.
    Pending(Alert),
    Firing(Alert),
    /// A firing alert moved to a more severe tier.
    Escalated {
        alert: Alert,
        from: Severity,
    },
    /// A firing alert moved to a less severe tier.
    Deescalated {
        alert: Alert,
        from: Severity,
    },
    Resolved(Alert),
}

impl AlertEvent {
    pub fn alert(&self) -> &Alert {
        match self {
            AlertEvent::Pending(a) | AlertEvent::Firing(a) | AlertEvent::Resolved(a) => a,
            AlertEvent::Escalated { alert, .. } | AlertEvent::Deescalated { alert, .. } => alert,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            AlertEvent::Pending(_) => "pending",
            AlertEvent::Firing(_) => "firing",
            AlertEvent::Escalated { .. } => "escalated",
            AlertEvent::Deescalated { .. } => "deescalated",
            AlertEvent::Resolved(_) => "resolved",
        }
    }
}

/// The outcome of a rule's last evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RuleHealth {
    #[default]
    Unknown,
    Ok,
    Err(String),
}

impl RuleHealth {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleHealth::Unknown => "unknown",
            RuleHealth::Ok => "ok",
            RuleHealth::Err(_) => "err",
        }
    }
}

/// Per alert, how long its condition has held at each tier.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TierClock {
    /// Per tier (P0..P3): since when the condition's tier has been at least
    /// that severe, without a break.
    at_least_since: [Option<Timestamp>; 4],
    /// Since when the condition of the alert's current tier has not held.
    below_since: Option<Timestamp>,
}

impl TierClock {
    /// For an alert without a clock (new, or restored after a restart): its
    /// tier and the less severe ones have held since `since`.
    fn starting(tier: Severity, since: Timestamp) -> Self {
        let mut clock = Self::default();
        for s in Severity::ALL.into_iter().filter(|s| *s >= tier) {
            clock.at_least_since[s as usize] = Some(since);
        }
        clock
    }

    /// The condition holds at tier `tier` now.
    fn observe(&mut self, tier: Severity, now: Timestamp) {
        for (i, since) in self.at_least_since.iter_mut().enumerate() {
            if i >= tier as usize {
                since.get_or_insert(now);
            } else {
                *since = None;
            }
        }
    }

    /// The condition does not hold at all now.
    fn lapse(&mut self, now: Timestamp) {
        self.at_least_since = [None; 4];
        self.below_since.get_or_insert(now);
    }

    /// The most severe tier whose condition has held for its time.
    fn held_tier(&self, holds: &[Option<Duration>; 4], now: Timestamp) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| {
            matches!((holds[*s as usize], self.at_least_since[*s as usize]), (Some(d), Some(t)) if now.since(t) >= d)
        })
    }
}

/// One rule's alerts and health.
#[derive(Debug, Default)]
pub struct RuleState {
    pub name: String,
    keep_firing_for: Duration,
    /// Per tier: its `for` (`None`: a tier the rule never raises).
    tier_holds: [Option<Duration>; 4],
    pub active: FxHashMap<Fingerprint, Alert>,
    /// Tier clocks of the pending and firing alerts.
    clocks: FxHashMap<Fingerprint, TierClock>,
    /// The cluster of the target that last produced each pending or firing
    /// alert (see [`Candidate::cluster`]). An alert not in it (restored
    /// after a restart) is left to the next full evaluation.
    clusters: FxHashMap<Fingerprint, Option<String>>,
    pub health: RuleHealth,
    pub last_evaluation: Option<Timestamp>,
    pub last_duration: Duration,
    /// Alerts restored after a restart stay firing until then even if the
    /// condition is not seen, while the fresh store refills the windows the
    /// rule reads (no resolve-then-fire-again pages).
    pub restored_hold_until: Option<Timestamp>,
}

impl RuleState {
    pub fn new(rule: &Rule) -> Self {
        Self {
            name: rule.name.clone(),
            keep_firing_for: rule.keep_firing_for,
            tier_holds: rule.tier_holds(),
            ..Self::default()
        }
    }

    /// This state under `rule`'s new settings (a reload): its alerts, their
    /// tier clocks and its health stay.
    pub fn reconfigured(mut self, rule: &Rule) -> Self {
        self.name = rule.name.clone();
        self.keep_firing_for = rule.keep_firing_for;
        self.tier_holds = rule.tier_holds();
        self
    }

    /// The tier an alert whose condition holds at `condition` is at after
    /// an evaluation at `now`, with its clock then: a pending alert shows
    /// the tier that holds until one has held for its time, and fires at
    /// that one; a firing alert rises to a tier that has held for its time,
    /// and falls to `condition` once its own tier has not held for
    /// `keep_firing_for`. Read-only, so evaluation renders annotations with
    /// the tier that [`RuleState::apply`] will give the alert.
    pub fn tier_step(&self, fp: Fingerprint, condition: Severity, now: Timestamp) -> (Severity, TierClock) {
        let alert = self.active.get(&fp).filter(|a| a.state != AlertState::Resolved);
        let mut clock = match alert {
            Some(a) => self.clocks.get(&fp).copied().unwrap_or_else(|| TierClock::starting(a.severity, a.active_at)),
            None => TierClock::default(),
        };
        clock.observe(condition, now);
        let held = clock.held_tier(&self.tier_holds, now);
        let tier = match alert {
            Some(a) if a.state == AlertState::Firing => {
                let current = a.severity;
                if condition <= current {
                    clock.below_since = None;
                    held.map_or(current, |h| h.min(current))
                } else if now.since(*clock.below_since.get_or_insert(now)) < self.keep_firing_for {
                    current
                } else {
                    clock.below_since = None;
                    condition
                }
            }
            _ => held.unwrap_or(condition),
        };
        (tier, clock)
    }

    pub fn is_firing(&self, fp: Fingerprint) -> bool {
        self.active.get(&fp).is_some_and(|a| a.state == AlertState::Firing)
    }

    /// Puts back alerts persisted before a restart, keeping their times.
    pub fn restore(&mut self, alerts: impl IntoIterator<Item = Alert>, hold_until: Timestamp) {
        for a in alerts {
            self.active.insert(a.fingerprint, a);
        }
        self.restored_hold_until = Some(hold_until);
    }

    pub fn firing_count(&self) -> usize {
        self.active.values().filter(|a| a.state == AlertState::Firing).count()
    }

    /// Applies one evaluation's outcome at `now`; appends lifecycle events.
    pub fn apply(&mut self, outcome: RuleOutcome, now: Timestamp, events: &mut Vec<AlertEvent>) {
        self.apply_in(outcome, now, None, events);
    }

    /// [`Self::apply`] for an evaluation over `scope`'s clusters only (all
    /// with `None`): alerts of other clusters are not touched.
    pub fn apply_in(
        &mut self,
        outcome: RuleOutcome,
        now: Timestamp,
        scope: Option<&ClusterScope>,
        events: &mut Vec<AlertEvent>,
    ) {
        self.last_evaluation = Some(now);
        self.last_duration = outcome.duration;
        self.health = match &outcome.error {
            Some(e) => RuleHealth::Err(e.clone()),
            None => RuleHealth::Ok,
        };
        if outcome.error.is_some() && outcome.candidates.is_empty() && outcome.held.is_empty() {
            // The whole evaluation failed: keep every alert as it is.
            return;
        }
        let mut seen: rustc_hash::FxHashSet<Fingerprint> = outcome.held.iter().copied().collect();
        for c in outcome.candidates {
            let mut candidate = c.alert;
            let fp = candidate.fingerprint;
            seen.insert(fp);
            match self.clusters.get_mut(&fp) {
                Some(known) if *known == c.cluster => {}
                Some(known) => *known = c.cluster,
                None => {
                    self.clusters.insert(fp, c.cluster);
                }
            }
            let (tier, clock) = self.tier_step(fp, c.condition_tier, now);
            self.clocks.insert(fp, clock);
            if candidate.severity != tier {
                // Only if evaluation did not ask `tier_step` (it always does).
                set_tier(&mut candidate.severity, &mut candidate.labels, tier);
            }
            match self.active.get_mut(&fp) {
                Some(a) if a.state != AlertState::Resolved => {
                    let from = a.severity;
                    update_from(a, candidate);
                    a.keep_firing_since = None;
                    if a.state == AlertState::Firing && a.severity != from {
                        events.push(if a.severity.is_more_severe_than(from) {
                            AlertEvent::Escalated { alert: a.clone(), from }
                        } else {
                            AlertEvent::Deescalated { alert: a.clone(), from }
                        });
                    }
                }
                _ => {
                    let mut alert = candidate;
                    alert.labels.shrink_to_fit();
                    alert.active_at = now;
                    events.push(AlertEvent::Pending(alert.clone()));
                    self.active.insert(fp, alert);
                }
            }
        }
        let keep_firing_for = self.keep_firing_for;
        let (holds, clocks, clusters) = (&self.tier_holds, &mut self.clocks, &mut self.clusters);
        let restoring = self.restored_hold_until.is_some_and(|h| now < h);
        if !restoring {
            self.restored_hold_until = None;
        }
        self.active.retain(|fp, a| {
            let out_of_scope = || scope.is_some_and(|s| clusters.get(fp).is_none_or(|c| !s.contains(c.as_deref())));
            if a.state != AlertState::Resolved && !seen.contains(fp) && out_of_scope() {
                return true;
            }
            if seen.contains(fp) {
                // An instance that failed to evaluate has no new clock: its
                // alert's own times stand in.
                let clock = |a: &Alert| clocks.get(fp).copied().unwrap_or(TierClock::starting(a.severity, a.active_at));
                if a.state == AlertState::Pending
                    && let Some(tier) = clock(a).held_tier(holds, now)
                {
                    // `tier_step` gave a due alert this tier already.
                    set_tier(&mut a.severity, &mut a.labels, tier);
                    a.state = AlertState::Firing;
                    a.fired_at = Some(now);
                    events.push(AlertEvent::Firing(a.clone()));
                }
                return true;
            }
            match a.state {
                // Never fired: dropped without a word.
                AlertState::Pending => false,
                AlertState::Resolved => now.since(a.resolved_at.unwrap_or(now)) < RESOLVED_RETENTION,
                AlertState::Firing if restoring => true,
                AlertState::Firing => {
                    clocks.entry(*fp).or_insert_with(|| TierClock::starting(a.severity, a.active_at)).lapse(now);
                    if !keep_firing_for.is_zero() {
                        let since = *a.keep_firing_since.get_or_insert(now);
                        if now.since(since) < keep_firing_for {
                            return true;
                        }
                    }
                    a.state = AlertState::Resolved;
                    a.resolved_at = Some(now);
                    a.keep_firing_since = None;
                    events.push(AlertEvent::Resolved(a.clone()));
                    true
                }
            }
        });
        let active = &self.active;
        let live = |fp: &Fingerprint| active.get(fp).is_some_and(|a| a.state != AlertState::Resolved);
        self.clocks.retain(|fp, _| live(fp));
        self.clusters.retain(|fp, _| live(fp));
    }
}

/// Sets an alert's tier and its `severity` label, unless the rule set that
/// label itself (a ported Prometheus rule's own value).
pub(super) fn set_tier(severity: &mut Severity, labels: &mut crate::model::Labels, tier: Severity) {
    if labels.get(crate::model::SEVERITY).is_none_or(|s| s.parse::<Severity>().is_ok()) {
        labels.insert(crate::model::SEVERITY, tier.as_str());
    }
    *severity = tier;
}

/// Takes a candidate's value, labels, annotations, tier and runbook; its
/// lifecycle and times stay.
fn update_from(a: &mut Alert, c: Alert) {
    a.value = c.value;
    // Unchanged labels and annotations keep their compact copies.
    if a.annotations != c.annotations {
        a.annotations = c.annotations;
    }
    if a.labels != c.labels {
        a.labels = c.labels;
        a.labels.shrink_to_fit();
    }
    a.severity = c.severity;
    a.runbook = c.runbook;
}

/// Every rule's state, indexed like the rule set's rules (group by group).
#[derive(Debug, Default)]
pub struct AlertTracker {
    pub rules: Vec<RuleState>,
}

impl AlertTracker {
    pub fn new<'r>(rules: impl Iterator<Item = &'r Rule>) -> Self {
        Self { rules: rules.map(RuleState::new).collect() }
    }

    /// All alerts, any state.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.rules.iter().flat_map(|r| r.active.values())
    }

    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts().filter(|a| a.state == AlertState::Firing)
    }
}
