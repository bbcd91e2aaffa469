//! The routing policy: how each tier is paged (channels, waits, repeats,
//! escalation, digest), sub-routes by matchers, and the group an alert
//! belongs to. Configuration, read by the dispatcher.

use super::{Matchers, Schedule};
use crate::model::{Alert, Labels, Severity};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How one tier is paged.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPolicy {
    pub channels: Vec<String>,
    /// Wait this long after a group's first alert, to page once for a burst.
    pub group_wait: Duration,
    /// Minimum time between two messages about one group.
    pub group_interval: Duration,
    /// Re-send an unchanged, un-acked firing group this often.
    pub repeat_interval: Duration,
    /// Escalate an un-acked group after this long.
    pub respond_within: Option<Duration>,
    pub escalate_to: Vec<String>,
    /// Batch this tier's groups into one message per schedule instead.
    pub digest: Option<Schedule>,
    /// Keep retrying a delivery this long after it was written (then fall
    /// over to another channel).
    pub delivery_deadline: Duration,
}

/// A sub-route: alerts matching it go to its channels instead of the
/// tier's (the first matching route wins).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub matchers: Matchers,
    /// Per tier; a tier missing here keeps the default channels.
    pub channels: BTreeMap<Severity, Vec<String>>,
    /// Replaces every tier's `escalate_to` when set.
    pub escalate_to: Option<Vec<String>>,
}

/// The routing policy: grouping labels, one policy per tier, sub-routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub group_by: Vec<String>,
    /// Indexed by tier: P0, P1, P2, P3.
    pub tiers: [TierPolicy; 4],
    pub routes: Vec<Route>,
}

impl Policy {
    /// The seed's severity table with its channel names: P0 at once by
    /// voice, SMS and IM, repeated every 5 min until acked, escalated after
    /// 5 min; P1 by SMS and IM, 15 min; P2 by IM and email, hourly; P3 in an
    /// email digest every morning at 09:00 UTC.
    pub fn seed_defaults() -> Self {
        Self::seed_table(&["voice", "sms", "im"], &["sms", "im"], &["im", "email"], &["email"], &["escalation"])
    }

    /// The seed's timings with every tier (and escalation) sent to the
    /// given channels: what a config without `routing` gets.
    pub fn seed_defaults_to(channels: &[String]) -> Self {
        let c: Vec<&str> = channels.iter().map(String::as_str).collect();
        Self::seed_table(&c, &c, &c, &c, &c)
    }

    fn seed_table(p0: &[&str], p1: &[&str], p2: &[&str], p3: &[&str], escalation: &[&str]) -> Self {
        let names = |c: &[&str]| c.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let tier = |channels: &[&str], wait: u64, repeat: u64, respond: Option<u64>, deadline: u64| TierPolicy {
            channels: names(channels),
            group_wait: Duration::from_secs(wait),
            group_interval: Duration::from_secs(60),
            repeat_interval: Duration::from_secs(repeat),
            respond_within: respond.map(Duration::from_secs),
            escalate_to: if respond.is_some() { names(escalation) } else { Vec::new() },
            digest: None,
            delivery_deadline: Duration::from_secs(deadline),
        };
        // Delivery deadlines: P0 30 min, P1 1 h, P2 4 h, P3 a day.
        let mut p3 = tier(p3, 60, 24 * 3600, None, 24 * 3600);
        p3.digest = Schedule::new("0 9 * * *", "UTC").ok();
        Policy {
            group_by: vec!["cluster".into(), "alertname".into()],
            tiers: [
                tier(p0, 0, 300, Some(300), 1800),
                tier(p1, 30, 900, Some(900), 3600),
                tier(p2, 30, 3600, None, 4 * 3600),
                p3,
            ],
            routes: Vec::new(),
        }
    }

    pub fn tier(&self, s: Severity) -> &TierPolicy {
        &self.tiers[s as usize]
    }

    /// The channels a group on `route` (0: the default route) is paged on.
    pub fn channels(&self, route: u16, tier: Severity) -> &[String] {
        self.route(route).and_then(|r| r.channels.get(&tier)).unwrap_or(&self.tier(tier).channels)
    }

    pub fn escalate_to(&self, route: u16, tier: Severity) -> &[String] {
        self.route(route).and_then(|r| r.escalate_to.as_ref()).unwrap_or(&self.tier(tier).escalate_to)
    }

    fn route(&self, route: u16) -> Option<&Route> {
        (route as usize).checked_sub(1).and_then(|i| self.routes.get(i))
    }

    /// Sends the alerts named `alertname` to `channel` only, on every tier,
    /// never escalated: a route ahead of the configured ones, so none of
    /// them takes these alerts (the `ZkalertWatchdog` goes where it is told).
    pub fn route_only(&mut self, alertname: &str, channel: &str) {
        let matcher = super::Matcher::new(crate::model::ALERTNAME, super::matcher::MatchOp::Eq, alertname);
        let Ok(matcher) = matcher else { unreachable!("alertname is a valid label name") };
        let channels = Severity::ALL.into_iter().map(|tier| (tier, vec![channel.to_string()])).collect();
        self.routes.insert(0, Route { matchers: Matchers(vec![matcher]), channels, escalate_to: Some(Vec::new()) });
    }

    /// Every channel name the policy can send to.
    pub fn channel_names(&self) -> BTreeSet<&str> {
        let tiers = self.tiers.iter().flat_map(|t| t.channels.iter().chain(&t.escalate_to));
        let routes =
            self.routes.iter().flat_map(|r| r.channels.values().flatten().chain(r.escalate_to.iter().flatten()));
        tiers.chain(routes).map(String::as_str).collect()
    }

    /// The group an alert belongs to.
    pub fn group_key(&self, alert: &Alert) -> GroupKey {
        let route = self.routes.iter().position(|r| r.matchers.matches(&alert.labels)).map_or(0, |i| i as u16 + 1);
        let labels =
            self.group_by.iter().filter_map(|l| alert.labels.get(l).map(|v| (l.clone(), v.to_string()))).collect();
        GroupKey { route, labels }
    }
}

/// A group's identity: the route it took and its `group_by` label values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub route: u16,
    pub labels: Labels,
}

impl GroupKey {
    /// A short stable id, for the API, acks and the notification log.
    pub fn id(&self) -> String {
        let mut labels = self.labels.clone();
        labels.insert("__route__", self.route.to_string());
        labels.fingerprint().to_string()
    }
}
