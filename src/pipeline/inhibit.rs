//! Inhibition: an alert matching a rule's source matchers mutes the alerts
//! matching its target matchers that share the `equal` labels (Alertmanager
//! `inhibit_rules`). The shipped defaults: quorum loss mutes the node-level
//! alerts of that cluster, and a higher tier of the same alert mutes a lower.

use super::Matchers;
use crate::model::{Alert, AlertState, Fingerprint, Labels};
use rustc_hash::FxHashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    pub source: Matchers,
    pub target: Matchers,
    /// Labels that must be equal on source and target.
    pub equal: Vec<String>,
}

impl InhibitRule {
    fn equal_values(&self, labels: &Labels) -> Vec<String> {
        // A missing label equals the empty string, as in Alertmanager.
        self.equal.iter().map(|l| labels.get(l).unwrap_or("").to_string()).collect()
    }
}

/// The shipped default rules.
pub fn default_rules() -> Vec<InhibitRule> {
    let m = |t: &str| Matchers::parse(t).unwrap_or_default();
    vec![
        // A cluster that lost its quorum explains its nodes' alerts.
        InhibitRule {
            source: m(r#"{alertname=~"ZkQuorumLost|ZkNoLeader"}"#),
            target: m(r#"{instance=~".+"}"#),
            equal: vec!["cluster".into()],
        },
        // A higher tier of the same alert mutes the lower one.
        InhibitRule { source: m(r#"{severity="P0"}"#), target: m(r#"{severity=~"P1|P2|P3"}"#), equal: same_alert() },
        InhibitRule { source: m(r#"{severity="P1"}"#), target: m(r#"{severity=~"P2|P3"}"#), equal: same_alert() },
        InhibitRule { source: m(r#"{severity="P2"}"#), target: m(r#"{severity="P3"}"#), equal: same_alert() },
    ]
}

fn same_alert() -> Vec<String> {
    ["alertname", "cluster", "instance"].iter().map(|s| s.to_string()).collect()
}

/// The inhibition stage for one step: per rule, the `equal`-label values of
/// its firing sources, so muting n alerts costs n lookups, not n².
pub struct Inhibitor<'r> {
    rules: &'r [InhibitRule],
    /// Per rule: equal-label values → the full fingerprint of one source
    /// and whether there are several (an alert never mutes itself).
    sources: Vec<FxHashMap<Vec<String>, (Fingerprint, bool)>>,
}

impl<'r> Inhibitor<'r> {
    pub fn new<'a>(rules: &'r [InhibitRule], alerts: impl IntoIterator<Item = &'a Alert>) -> Self {
        let mut sources: Vec<FxHashMap<Vec<String>, (Fingerprint, bool)>> =
            rules.iter().map(|_| FxHashMap::default()).collect();
        for a in alerts.into_iter().filter(|a| a.state == AlertState::Firing) {
            for (rule, index) in rules.iter().zip(sources.iter_mut()) {
                if rule.source.matches(&a.labels) {
                    let fp = a.labels.fingerprint();
                    index
                        .entry(rule.equal_values(&a.labels))
                        .and_modify(|(first, several)| *several |= *first != fp)
                        .or_insert((fp, false));
                }
            }
        }
        Self { rules, sources }
    }

    pub fn is_inhibited(&self, target: &Labels) -> bool {
        self.rules.iter().zip(&self.sources).any(|(rule, index)| {
            !index.is_empty()
                && rule.target.matches(target)
                && index
                    .get(&rule.equal_values(target))
                    .is_some_and(|(fp, several)| *several || *fp != target.fingerprint())
        })
    }
}

/// Whether `target` is muted by any firing alert under these rules.
pub fn is_inhibited<'a>(rules: &[InhibitRule], firing: impl IntoIterator<Item = &'a Alert>, target: &Labels) -> bool {
    Inhibitor::new(rules, firing).is_inhibited(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Severity, Timestamp};

    fn alert(labels: &[(&str, &str)]) -> Alert {
        let labels = Labels::from_pairs(labels.iter().copied());
        Alert {
            fingerprint: Fingerprint(0),
            severity: labels.get("severity").and_then(|s| s.parse().ok()).unwrap_or(Severity::P2),
            labels,
            annotations: vec![],
            state: AlertState::Firing,
            value: 0.0,
            active_at: Timestamp::default(),
            fired_at: None,
            resolved_at: None,
            keep_firing_since: None,
            runbook: None,
        }
    }

    #[test]
    fn quorum_loss_mutes_node_alerts_of_its_cluster_only() {
        let rules = default_rules();
        let quorum = alert(&[("alertname", "ZkQuorumLost"), ("cluster", "prod"), ("severity", "P0")]);
        let firing = [quorum];
        let node = Labels::from_pairs([
            ("alertname", "ZkNodeDown"),
            ("cluster", "prod"),
            ("instance", "zk1"),
            ("severity", "P1"),
        ]);
        let other = Labels::from_pairs([
            ("alertname", "ZkNodeDown"),
            ("cluster", "dev"),
            ("instance", "zk1"),
            ("severity", "P1"),
        ]);
        assert!(is_inhibited(&rules, &firing, &node));
        assert!(!is_inhibited(&rules, &firing, &other), "another cluster is not explained by it");
        assert!(!is_inhibited(&rules, &firing, &firing[0].labels), "never itself");
    }

    #[test]
    fn higher_tier_mutes_lower_of_the_same_alert() {
        let rules = default_rules();
        let p1 = alert(&[("alertname", "ZkHighAvgLatency"), ("cluster", "c"), ("instance", "a"), ("severity", "P1")]);
        let firing = [p1];
        let p2_same = Labels::from_pairs([
            ("alertname", "ZkHighAvgLatency"),
            ("cluster", "c"),
            ("instance", "a"),
            ("severity", "P2"),
        ]);
        let p2_other = Labels::from_pairs([
            ("alertname", "ZkHighAvgLatency"),
            ("cluster", "c"),
            ("instance", "b"),
            ("severity", "P2"),
        ]);
        assert!(is_inhibited(&rules, &firing, &p2_same));
        assert!(!is_inhibited(&rules, &firing, &p2_other));
        let p0 = Labels::from_pairs([
            ("alertname", "ZkHighAvgLatency"),
            ("cluster", "c"),
            ("instance", "a"),
            ("severity", "P0"),
        ]);
        assert!(!is_inhibited(&rules, &firing, &p0), "a lower tier never mutes a higher");
    }
}
