//! Grouping, dedup, routing by tier, acknowledgement and escalation: which
//! channels are told what, and when. A pure state machine driven by the
//! alerts (after muting) and the time, as Alertmanager's dispatcher and
//! dedup stage: nothing is re-sent unless alerts fired, resolved, the tier
//! rose or the repeat interval passed.

use crate::model::{Alert, AlertState, Fingerprint, Labels, Severity, Timestamp};
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
}

/// The routing policy: grouping labels and one policy per tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub group_by: Vec<String>,
    /// Indexed by tier: P0, P1, P2, P3.
    pub tiers: [TierPolicy; 4],
}

impl Policy {
    /// The seed's severity table: P0 at once by voice, SMS and IM, repeated
    /// every 5 min until acked, escalated after 5 min; P1 by SMS and IM, 15
    /// min; P2 by IM and email, 1 h; P3 by email, 8 h.
    pub fn seed_defaults() -> Self {
        let tier = |channels: &[&str], wait: u64, repeat: u64, respond: Option<u64>, escalate: &[&str]| TierPolicy {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            group_wait: Duration::from_secs(wait),
            group_interval: Duration::from_secs(60),
            repeat_interval: Duration::from_secs(repeat),
            respond_within: respond.map(Duration::from_secs),
            escalate_to: escalate.iter().map(|c| c.to_string()).collect(),
        };
        Policy {
            group_by: vec!["cluster".into(), "alertname".into()],
            tiers: [
                tier(&["voice", "sms", "im"], 0, 300, Some(300), &["escalation"]),
                tier(&["sms", "im"], 30, 900, Some(900), &["escalation"]),
                tier(&["im", "email"], 30, 3600, None, &[]),
                tier(&["email"], 60, 8 * 3600, None, &[]),
            ],
        }
    }

    pub fn tier(&self, s: Severity) -> &TierPolicy {
        &self.tiers[s as usize]
    }
}

/// One message to some channels about one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub at: Timestamp,
    /// The group's labels (the `group_by` values).
    pub group: Labels,
    pub tier: Severity,
    pub channels: Vec<String>,
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
    /// Sent to `escalate_to` because nobody acknowledged in time.
    pub escalation: bool,
}

/// Who acknowledged a group, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub by: String,
    pub comment: String,
    pub at: Timestamp,
    pub until: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Group {
    labels: Labels,
    alerts: BTreeMap<Fingerprint, Alert>,
    next_flush: Timestamp,
    /// What the last message said.
    notified_firing: BTreeSet<Fingerprint>,
    notified_tier: Option<Severity>,
    last_sent: Option<Timestamp>,
    /// When the on-call was first paged about the group as it is now (new
    /// alerts or a tier rise restart it): the escalation clock.
    paged_since: Option<Timestamp>,
    escalated: bool,
    ack: Option<Ack>,
}

/// The dispatcher's state.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub policy: Policy,
    groups: BTreeMap<Labels, Group>,
}

impl Dispatcher {
    pub fn new(policy: Policy) -> Self {
        Self { policy, groups: BTreeMap::new() }
    }

    fn group_labels(&self, alert: &Alert) -> Labels {
        self.policy.group_by.iter().filter_map(|l| alert.labels.get(l).map(|v| (l.clone(), v.to_string()))).collect()
    }

    /// Takes in the current alerts (firing and recently resolved, already
    /// filtered by silences, maintenance and inhibition).
    pub fn observe<'a>(&mut self, alerts: impl IntoIterator<Item = &'a Alert>, now: Timestamp) {
        for alert in alerts {
            if alert.state == AlertState::Pending {
                continue;
            }
            let key = self.group_labels(alert);
            let wait = self.policy.tier(alert.severity).group_wait;
            let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
                labels: key,
                alerts: BTreeMap::new(),
                next_flush: now + wait,
                notified_firing: BTreeSet::new(),
                notified_tier: None,
                last_sent: None,
                paged_since: None,
                escalated: false,
                ack: None,
            });
            group.alerts.insert(alert.fingerprint, alert.clone());
        }
    }

    /// Acknowledges a group: no repeats, no escalation, until a new alert
    /// fires in it or its tier rises (or `until` passes).
    pub fn ack(&mut self, group: &Labels, ack: Ack) -> bool {
        match self.groups.get_mut(group) {
            Some(g) => {
                g.ack = Some(ack);
                true
            }
            None => false,
        }
    }

    /// The messages due at `now`.
    pub fn flush(&mut self, now: Timestamp) -> Vec<Message> {
        let mut out = Vec::new();
        for g in self.groups.values_mut() {
            let firing: BTreeSet<Fingerprint> =
                g.alerts.values().filter(|a| a.state == AlertState::Firing).map(|a| a.fingerprint).collect();
            let tier = g.alerts.values().filter(|a| a.state == AlertState::Firing).map(|a| a.severity).min();
            // With nothing firing (only resolutions to tell), the channels of
            // the tier last paged.
            let policy = self.policy.tier(tier.or(g.notified_tier).unwrap_or(Severity::P3)).clone();
            if g.ack.as_ref().is_some_and(|a| a.until.is_some_and(|u| now >= u)) {
                g.ack = None;
            }
            let new_alerts = !firing.is_subset(&g.notified_firing);
            let tier_rose = matches!((tier, g.notified_tier), (Some(t), Some(n)) if t < n);
            if new_alerts || tier_rose {
                g.ack = None;
                g.escalated = false;
                g.paged_since = None;
            }
            // An escalation is due whatever the group interval.
            if let (Some(t), Some(respond), Some(first)) = (tier, policy.respond_within, g.paged_since)
                && !g.escalated
                && g.ack.is_none()
                && now.since(first) >= respond
                && !policy.escalate_to.is_empty()
            {
                g.escalated = true;
                out.push(Message {
                    at: now,
                    group: g.labels.clone(),
                    tier: t,
                    channels: policy.escalate_to.clone(),
                    firing: firing_alerts(g),
                    resolved: Vec::new(),
                    escalation: true,
                });
            }
            if now < g.next_flush {
                continue;
            }
            let resolved: Vec<Alert> = g
                .alerts
                .values()
                .filter(|a| a.state == AlertState::Resolved && g.notified_firing.contains(&a.fingerprint))
                .cloned()
                .collect();
            let repeat_due = !firing.is_empty()
                && g.ack.is_none()
                && g.last_sent.is_some_and(|t| now.since(t) >= policy.repeat_interval);
            if new_alerts || tier_rose || !resolved.is_empty() || repeat_due {
                out.push(Message {
                    at: now,
                    group: g.labels.clone(),
                    tier: tier.or(g.notified_tier).unwrap_or(Severity::P3),
                    channels: policy.channels.clone(),
                    firing: firing_alerts(g),
                    resolved,
                    escalation: false,
                });
                g.last_sent = Some(now);
                g.paged_since.get_or_insert(now);
                g.notified_firing = firing.clone();
                g.notified_tier = tier;
                g.next_flush = now + policy.group_interval;
            }
            // Resolved alerts are told once, then forgotten.
            g.alerts.retain(|_, a| a.state == AlertState::Firing);
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        out
    }
}

fn firing_alerts(g: &Group) -> Vec<Alert> {
    g.alerts.values().filter(|a| a.state == AlertState::Firing).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Timestamp {
        Timestamp::from_millis(s as i64 * 1000)
    }

    fn alert(name: &str, instance: &str, tier: Severity, state: AlertState) -> Alert {
        let labels = Labels::from_pairs([
            ("alertname", name),
            ("cluster", "prod"),
            ("instance", instance),
            ("severity", tier.as_str()),
        ]);
        Alert {
            fingerprint: labels.fingerprint_without(&["severity"]),
            labels,
            annotations: vec![],
            severity: tier,
            state,
            value: 0.0,
            active_at: at(0),
            fired_at: Some(at(0)),
            resolved_at: None,
            keep_firing_since: None,
            runbook: None,
        }
    }

    fn summary(m: &[Message]) -> Vec<(u64, Severity, String, usize, usize, bool)> {
        m.iter()
            .map(|m| {
                (
                    (m.at.as_millis() / 1000) as u64,
                    m.tier,
                    m.channels.join("+"),
                    m.firing.len(),
                    m.resolved.len(),
                    m.escalation,
                )
            })
            .collect()
    }

    #[test]
    fn a_three_node_outage_is_one_page_after_group_wait() {
        let mut d = Dispatcher::new(Policy::seed_defaults());
        for i in ["zk1", "zk2", "zk3"] {
            d.observe([&alert("ZkNodeDown", i, Severity::P1, AlertState::Firing)], at(0));
        }
        assert!(d.flush(at(10)).is_empty(), "P1 waits 30 s for the rest of the burst");
        assert_eq!(summary(&d.flush(at(30))), [(30, Severity::P1, "sms+im".into(), 3, 0, false)]);
        assert!(d.flush(at(40)).is_empty(), "nothing new: dedup");
    }

    #[test]
    fn repeat_resolve_and_tier_rise() {
        let mut d = Dispatcher::new(Policy::seed_defaults());
        let p2 = alert("ZkHighAvgLatency", "zk1", Severity::P2, AlertState::Firing);
        d.observe([&p2], at(0));
        assert_eq!(d.flush(at(30)).len(), 1);
        assert!(d.flush(at(1800)).is_empty(), "P2 repeats hourly");
        assert_eq!(summary(&d.flush(at(3630))), [(3630, Severity::P2, "im+email".into(), 1, 0, false)]);
        // Tier rises within the same alert: re-notified at once (after the group interval).
        let p1 = alert("ZkHighAvgLatency", "zk1", Severity::P1, AlertState::Firing);
        d.observe([&p1], at(3700));
        assert_eq!(summary(&d.flush(at(3700))), [(3700, Severity::P1, "sms+im".into(), 1, 0, false)]);
        // Resolved: told once.
        let mut gone = p1.clone();
        gone.state = AlertState::Resolved;
        d.observe([&gone], at(3800));
        assert_eq!(summary(&d.flush(at(3800))), [(3800, Severity::P1, "sms+im".into(), 0, 1, false)]);
        assert!(d.flush(at(9000)).is_empty());
    }

    #[test]
    fn ack_stops_repeats_and_escalation_until_a_new_alert() {
        let mut d = Dispatcher::new(Policy::seed_defaults());
        d.observe([&alert("ZkQuorumLost", "", Severity::P0, AlertState::Firing)], at(0));
        assert_eq!(summary(&d.flush(at(0))), [(0, Severity::P0, "voice+sms+im".into(), 1, 0, false)]);
        let group = Labels::from_pairs([("alertname", "ZkQuorumLost"), ("cluster", "prod")]);
        assert!(d.ack(&group, Ack { by: "alice".into(), comment: "on it".into(), at: at(60), until: None }));
        assert!(d.flush(at(301)).is_empty(), "acked: no repeat, no escalation");
        // A new alert in the group clears the ack.
        d.observe([&alert("ZkQuorumLost", "x", Severity::P0, AlertState::Firing)], at(400));
        assert_eq!(summary(&d.flush(at(400))), [(400, Severity::P0, "voice+sms+im".into(), 2, 0, false)]);
    }

    #[test]
    fn unacked_p0_escalates_once_after_respond_within() {
        let mut d = Dispatcher::new(Policy::seed_defaults());
        d.observe([&alert("ZkSplitBrain", "", Severity::P0, AlertState::Firing)], at(0));
        d.flush(at(0));
        assert!(d.flush(at(299)).is_empty());
        let m = d.flush(at(300));
        assert_eq!(
            summary(&m),
            [
                (300, Severity::P0, "escalation".into(), 1, 0, true),
                (300, Severity::P0, "voice+sms+im".into(), 1, 0, false)
            ],
            "escalation and the 5-minute repeat"
        );
        assert!(d.flush(at(900)).iter().all(|m| !m.escalation), "escalated once");
    }
}
