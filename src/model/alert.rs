//! An alert as the tracker holds it and later stages read it.

use super::{Fingerprint, Labels, Severity, Timestamp};

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
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identity: hash of the labels without `severity`.
    pub fingerprint: Fingerprint,
    /// Includes `alertname` and `severity`.
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
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
    pub runbook: Option<String>,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get(super::ALERTNAME).unwrap_or("")
    }
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// One of zkalert's own alerts about itself (`NotifierFailing`,
    /// `StateNotPersisted`): firing from `now`, with no rule behind it.
    pub fn meta(labels: Labels, severity: Severity, runbook: &str, now: Timestamp) -> Alert {
        Alert {
            fingerprint: labels.fingerprint_without(&["severity"]),
            labels,
            annotations: Vec::new(),
            severity,
            state: AlertState::Firing,
            value: 1.0,
            active_at: now,
            fired_at: Some(now),
            resolved_at: None,
            keep_firing_since: None,
            runbook: Some(runbook.into()),
        }
    }

    /// Resolves a firing alert at `now`; anything else is left as it is.
    pub fn resolve(&mut self, now: Timestamp) {
        if self.state == AlertState::Firing {
            self.state = AlertState::Resolved;
            self.resolved_at = Some(now);
        }
    }
}
