//! An alert as the tracker holds it and later stages read it.

use super::{Annotations, Fingerprint, Labels, SEVERITY, Severity, Timestamp};

/// Where an alert is in its lifecycle (Prometheus `rules/alerting.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds but not yet for the rule's `for` duration.
    Pending,
    Firing,
    /// Was firing, no longer; kept a while so the resolution can be notified.
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert: a rule's result for one label set.
///
/// Its identity is [`Alert::fingerprint_of`] its identity labels: the
/// target's labels, the rule's labels, `alertname` and any labels a script's
/// `alert()` gave, leaving out `severity` (a tier change is the same alert,
/// escalated) and the target's info labels such as `role` and `poll_error`
/// (an election or a new failure reason is the same alert). Info labels are
/// carried in `labels` all the same, so the fingerprint cannot be recomputed
/// from `labels`: make alerts with [`Alert::new`], which computes it before
/// [`Alert::with_info_labels`] adds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identity: see [`Alert`].
    pub fingerprint: Fingerprint,
    /// Includes `alertname`, `severity` and info labels.
    pub labels: Labels,
    pub annotations: Annotations,
    pub severity: Severity,
    pub state: AlertState,
    /// The value of the expression at the last evaluation where it held.
    pub value: f64,
    /// When the condition first held (start of pending).
    pub active_at: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// Set while `keep_firing_for` holds the alert after the condition cleared.
    pub keep_firing_since: Option<Timestamp>,
    /// The runbook link: an absolute URL or a path under `runbooks/`.
    pub runbook: Option<std::sync::Arc<str>>,
}

impl Alert {
    /// The fingerprint of an alert with these identity labels (`severity`,
    /// if given, is left out): the one place the rule is written.
    pub fn fingerprint_of(identity: &Labels) -> Fingerprint {
        identity.fingerprint_without(&[SEVERITY])
    }

    /// A pending alert, active from `active_at`, whose labels are `identity`
    /// (with `severity` if it should carry one) and whose fingerprint is
    /// theirs; no annotations, no runbook.
    pub fn new(identity: Labels, severity: Severity, value: f64, active_at: Timestamp) -> Alert {
        Alert {
            fingerprint: Alert::fingerprint_of(&identity),
            labels: identity,
            annotations: Annotations::new(),
            severity,
            state: AlertState::Pending,
            value,
            active_at,
            fired_at: None,
            resolved_at: None,
            keep_firing_since: None,
            runbook: None,
        }
    }

    /// Adds the target's info labels the alert lacks: shown, not identity.
    pub fn with_info_labels(mut self, info: &Labels) -> Alert {
        for (name, value) in info.iter() {
            if self.labels.get(name).is_none() {
                self.labels.insert(name, value);
            }
        }
        self
    }

    pub fn name(&self) -> &str {
        self.labels.get(super::ALERTNAME).unwrap_or("")
    }
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.get(name)
    }

    /// One of zkalert's own alerts about itself (`NotifierFailing`,
    /// `StateNotPersisted`): firing from `now`, with no rule behind it.
    pub fn meta(labels: Labels, severity: Severity, runbook: &str, now: Timestamp) -> Alert {
        let mut alert = Alert::new(labels, severity, 1.0, now);
        alert.fire(now);
        alert.runbook = Some(runbook.into());
        alert
    }

    /// Fires the alert at `at`.
    pub fn fire(&mut self, at: Timestamp) {
        self.state = AlertState::Firing;
        self.fired_at = Some(at);
    }

    /// Resolves a firing alert at `now`; anything else is left as it is.
    pub fn resolve(&mut self, now: Timestamp) {
        if self.state == AlertState::Firing {
            self.state = AlertState::Resolved;
            self.resolved_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_down(instance: &str, tier: Severity, role: &str) -> Alert {
        let identity = Labels::from_pairs([
            ("alertname", "ZkNodeDown"),
            ("cluster", "prod"),
            ("instance", instance),
            ("severity", tier.as_str()),
        ]);
        Alert::new(identity, tier, 0.0, Timestamp::default()).with_info_labels(&Labels::from_pairs([("role", role)]))
    }

    #[test]
    fn identity_leaves_out_severity_and_info_labels_only() {
        let a = node_down("zk1:2181", Severity::P1, "leader");
        assert_eq!(a.labels.get("role"), Some("leader"), "info labels are carried");
        assert_eq!(a.fingerprint, node_down("zk1:2181", Severity::P0, "leader").fingerprint, "a tier change");
        assert_eq!(a.fingerprint, node_down("zk1:2181", Severity::P1, "follower").fingerprint, "an election");
        assert_ne!(a.fingerprint, node_down("zk2:2181", Severity::P1, "leader").fingerprint, "another node");
        // Not the fingerprint of the labels it carries: neither with info
        // labels nor with `severity`.
        assert_ne!(a.fingerprint, a.labels.fingerprint_without(&[SEVERITY]));
        assert_ne!(a.fingerprint, a.labels.fingerprint());
    }

    #[test]
    fn info_labels_never_override_identity_labels() {
        let identity = Labels::from_pairs([("alertname", "A"), ("instance", "zk1")]);
        let a = Alert::new(identity.clone(), Severity::P2, 0.0, Timestamp::default())
            .with_info_labels(&Labels::from_pairs([("instance", "other"), ("role", "leader")]));
        assert_eq!(a.labels.get("instance"), Some("zk1"));
        assert_eq!(a.fingerprint, Alert::fingerprint_of(&identity));
    }
}
