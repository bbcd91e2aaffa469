//! Inhibition: an alert matching a rule's source matchers mutes the alerts
//! matching its target matchers that share the `equal` labels (Alertmanager
//! `inhibit_rules`). The shipped defaults: quorum loss mutes the node-level
//! alerts of that cluster, and a higher tier of the same alert mutes a lower.

use super::Matchers;
use crate::model::{Alert, AlertState, Labels};

#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    pub source: Matchers,
    pub target: Matchers,
    /// Labels that must be equal on source and target.
    pub equal: Vec<String>,
}

impl InhibitRule {
    fn inhibits(&self, source: &Labels, target: &Labels) -> bool {
        self.source.matches(source)
            && self.target.matches(target)
            && self.equal.iter().all(|l| source.get(l) == target.get(l))
            // An alert never mutes itself.
            && source != target
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

/// Whether `target` is muted by any firing alert under these rules.
pub fn is_inhibited<'a>(
    rules: &[InhibitRule],
    firing: impl IntoIterator<Item = &'a Alert> + Clone,
    target: &Labels,
) -> bool {
    rules
        .iter()
        .any(|r| firing.clone().into_iter().any(|a| a.state == AlertState::Firing && r.inhibits(&a.labels, target)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fingerprint, Severity, Timestamp};

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
