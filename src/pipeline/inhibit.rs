//! Inhibition: an alert matching a rule's source matchers mutes the alerts
//! matching its target matchers that share the `equal` labels (Alertmanager
//! `inhibit_rules`). The built-in default is generic: a higher tier of the
//! same alert mutes a lower. What a rule pack knows about its alerts (quorum
//! loss explains its nodes' alerts, ...) ships beside the pack as rule-file
//! `inhibit_rules` (rules/zookeeper/inhibit.yaml), where users see it.

use super::Matchers;
use crate::model::{Alert, AlertState, Labels};
use rustc_hash::FxHashMap;
use std::hash::{Hash, Hasher};

#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    pub source: Matchers,
    pub target: Matchers,
    /// Labels that must be equal on source and target.
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// A hash of the `equal` label values (a missing label is "", as in
    /// Alertmanager), so the index holds numbers, not copies of strings.
    fn equal_hash(&self, labels: &Labels) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        for l in &self.equal {
            labels.get(l).unwrap_or("").hash(&mut h);
            0xffu8.hash(&mut h);
        }
        h.finish()
    }
}

/// At most this many inhibition rules (a rule is a bit in [`Roles`]).
pub const MAX_RULES: usize = 64;

/// What the inhibition rules make of one label set: the rules it is a
/// source or a target of, and the hash of its `equal` values. Computed once
/// per alert (the pipeline caches it), not once per step.
#[derive(Debug, Clone)]
pub struct Roles {
    source: u64,
    target: u64,
    /// One hash per run of rules with the same `equal` list ([`equal_runs`]):
    /// the built-in rules all compare one list, so an alert holds one
    /// number, inline, rather than a hash per rule on the heap.
    equal: EqualHashes,
}

/// 16 bytes: the pipeline holds one per alert; several hashes (rule packs
/// with their own `equal` lists) are a box away.
#[derive(Debug, Clone)]
enum EqualHashes {
    One(u64),
    Many(Box<Box<[u64]>>),
}

impl EqualHashes {
    fn get(&self, run: usize) -> u64 {
        match self {
            EqualHashes::One(h) => *h,
            EqualHashes::Many(hs) => hs[run],
        }
    }
}

/// Per rule, the run of neighbouring rules with the same `equal` list it
/// is in: rules in one run compare the same values, so share their hash.
fn equal_runs(rules: &[InhibitRule]) -> Vec<usize> {
    let mut runs = Vec::with_capacity(rules.len().min(MAX_RULES));
    for (i, rule) in rules.iter().enumerate().take(MAX_RULES) {
        let run = match runs.last() {
            Some(&last) if rules[i - 1].equal == rule.equal => last,
            Some(&last) => last + 1,
            None => 0,
        };
        runs.push(run);
    }
    runs
}

/// An alert's fingerprint and tier, mixed: alerts are one per
/// (fingerprint, tier), and an alert never mutes itself.
fn identity(alert: &Alert) -> u64 {
    alert.fingerprint.0 ^ (alert.severity as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Roles {
    pub fn of(rules: &[InhibitRule], alert: &Alert) -> Roles {
        let labels = &alert.labels;
        let mut roles = Roles { source: 0, target: 0, equal: EqualHashes::One(0) };
        for (i, rule) in rules.iter().enumerate().take(MAX_RULES) {
            if rule.source.matches(labels) {
                roles.source |= 1 << i;
            }
            if rule.target.matches(labels) {
                roles.target |= 1 << i;
            }
        }
        if roles.source | roles.target != 0 {
            let mut hashes: Vec<u64> = Vec::new();
            for (rule, run) in rules.iter().zip(equal_runs(rules)) {
                if run == hashes.len() {
                    hashes.push(rule.equal_hash(labels));
                }
            }
            roles.equal = match hashes[..] {
                [one] => EqualHashes::One(one),
                _ => EqualHashes::Many(Box::new(hashes.into_boxed_slice())),
            };
        }
        roles
    }
}

/// The built-in rules (`tiers` in a config's `inhibit_rules`): a higher
/// tier of the same alert mutes the lower one.
pub fn default_rules() -> Vec<InhibitRule> {
    let m = |t: &str| Matchers::parse(t).unwrap_or_default();
    vec![
        InhibitRule { source: m(r#"{severity="P0"}"#), target: m(r#"{severity=~"P1|P2|P3"}"#), equal: same_alert() },
        InhibitRule { source: m(r#"{severity="P1"}"#), target: m(r#"{severity=~"P2|P3"}"#), equal: same_alert() },
        InhibitRule { source: m(r#"{severity="P2"}"#), target: m(r#"{severity="P3"}"#), equal: same_alert() },
    ]
}

fn same_alert() -> Vec<String> {
    ["alertname", "cluster", "instance"].iter().map(|s| s.to_string()).collect()
}

/// The inhibition stage for one step: per rule, the `equal` hashes of its
/// firing sources, so muting n alerts costs n lookups, not n².
pub struct Inhibitor {
    /// Per rule: equal hash → the identity of one source and whether there
    /// are several (an alert never mutes itself).
    sources: Vec<FxHashMap<u64, (u64, bool)>>,
    /// Per rule, its run ([`equal_runs`]): where its hash is in [`Roles`].
    runs: Vec<usize>,
}

impl Inhibitor {
    pub fn new<'a>(rules: &[InhibitRule], alerts: impl IntoIterator<Item = (&'a Alert, &'a Roles)>) -> Self {
        let runs = equal_runs(rules);
        let mut sources: Vec<FxHashMap<u64, (u64, bool)>> = runs.iter().map(|_| FxHashMap::default()).collect();
        for (a, roles) in alerts {
            if a.state != AlertState::Firing || roles.source == 0 {
                continue;
            }
            for (i, index) in sources.iter_mut().enumerate() {
                if roles.source & (1 << i) != 0 {
                    index
                        .entry(roles.equal.get(runs[i]))
                        .and_modify(|(first, several)| *several |= *first != identity(a))
                        .or_insert((identity(a), false));
                }
            }
        }
        Self { sources, runs }
    }

    /// Whether `alert`, whose roles are `target`, is muted.
    pub fn is_inhibited(&self, alert: &Alert, target: &Roles) -> bool {
        if target.target == 0 {
            return false;
        }
        self.sources.iter().enumerate().any(|(i, index)| {
            target.target & (1 << i) != 0
                && index
                    .get(&target.equal.get(self.runs[i]))
                    .is_some_and(|(id, several)| *several || *id != identity(alert))
        })
    }
}

/// Whether `target` is muted by any firing alert under these rules.
pub fn is_inhibited<'a>(rules: &[InhibitRule], firing: impl IntoIterator<Item = &'a Alert>, target: &Alert) -> bool {
    let alerts: Vec<(&Alert, Roles)> = firing.into_iter().map(|a| (a, Roles::of(rules, a))).collect();
    Inhibitor::new(rules, alerts.iter().map(|(a, r)| (*a, r))).is_inhibited(target, &Roles::of(rules, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Severity, Timestamp};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn alert(labels: Labels) -> Alert {
        let severity = labels.get("severity").and_then(|s| s.parse().ok()).unwrap_or(Severity::P2);
        let mut alert = Alert::new(labels, severity, 0.0, Timestamp::default());
        alert.state = AlertState::Firing;
        alert
    }

    #[test]
    fn quorum_loss_mutes_node_alerts_of_its_cluster_only() {
        let rules = [InhibitRule {
            source: Matchers::parse(r#"{alertname="ZkQuorumLost"}"#).unwrap(),
            target: Matchers::parse(r#"{instance=~".+"}"#).unwrap(),
            equal: vec!["cluster".into()],
        }];
        let quorum = alert(labels(&[("alertname", "ZkQuorumLost"), ("cluster", "prod"), ("severity", "P0")]));
        let firing = [quorum];
        let node = labels(&[("alertname", "ZkNodeDown"), ("cluster", "prod"), ("instance", "zk1"), ("severity", "P1")]);
        let other = labels(&[("alertname", "ZkNodeDown"), ("cluster", "dev"), ("instance", "zk1"), ("severity", "P1")]);
        assert!(is_inhibited(&rules, &firing, &alert(node)));
        assert!(!is_inhibited(&rules, &firing, &alert(other)), "another cluster is not explained by it");
        assert!(!is_inhibited(&rules, &firing, &firing[0]), "never itself");
    }

    /// Rules comparing different labels, one list coming back after
    /// another: each rule compares its own list's values.
    #[test]
    fn each_rule_compares_its_own_equal_labels() {
        let rule = |source: &str, equal: &[&str]| InhibitRule {
            source: Matchers::parse(&format!(r#"{{alertname="{source}"}}"#)).unwrap(),
            target: Matchers::parse(r#"{alertname="Target"}"#).unwrap(),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        };
        let rules =
            [rule("ByCluster", &["cluster"]), rule("ByInstance", &["instance"]), rule("ByCluster2", &["cluster"])];
        assert_eq!(equal_runs(&rules), [0, 1, 2]);
        let target = alert(labels(&[("alertname", "Target"), ("cluster", "prod"), ("instance", "zk1")]));
        let source = |name: &str, cluster: &str, instance: &str| {
            alert(labels(&[("alertname", name), ("cluster", cluster), ("instance", instance)]))
        };
        assert!(is_inhibited(&rules, &[source("ByCluster", "prod", "zk9")], &target));
        assert!(!is_inhibited(&rules, &[source("ByCluster", "dev", "zk1")], &target));
        assert!(is_inhibited(&rules, &[source("ByInstance", "dev", "zk1")], &target));
        assert!(!is_inhibited(&rules, &[source("ByInstance", "prod", "zk9")], &target));
        assert!(is_inhibited(&rules, &[source("ByCluster2", "prod", "zk9")], &target));
        assert!(!is_inhibited(&rules, &[source("ByCluster2", "dev", "zk1")], &target));
        assert_eq!(equal_runs(&default_rules()), [0, 0, 0], "the built-in rules share one hash");
    }

    #[test]
    fn higher_tier_mutes_lower_of_the_same_alert() {
        let rules = default_rules();
        let latency = |instance, tier| {
            labels(&[("alertname", "ZkHighAvgLatency"), ("cluster", "c"), ("instance", instance), ("severity", tier)])
        };
        let firing = [alert(latency("a", "P1"))];
        assert!(is_inhibited(&rules, &firing, &alert(latency("a", "P2"))));
        assert!(!is_inhibited(&rules, &firing, &alert(latency("b", "P2"))));
        assert!(!is_inhibited(&rules, &firing, &alert(latency("a", "P0"))), "a lower tier never mutes a higher");
    }
}
