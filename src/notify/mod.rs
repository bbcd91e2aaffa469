//! Notifiers: where alert notifications go. For now the built-in `console`
//! (human-readable lines) and `file` (JSON lines) notifiers; the pipeline of
//! routing, grouping and delivery sits in front of them later.

use crate::model::{ALERTNAME, Alert, SEVERITY, Severity, Timestamp};
use crate::rule::AlertEvent;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// One thing to tell the on-call.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub at: Timestamp,
    pub kind: NotificationKind,
    pub alert: Alert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    Firing,
    Resolved,
    /// The alert's tier rose from the given tier.
    Escalated(Severity),
    /// The alert's tier fell from the given tier.
    Deescalated(Severity),
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Escalated(_) => "escalated",
            NotificationKind::Deescalated(_) => "deescalated",
        }
    }
}

impl Notification {
    /// The notification an alert event calls for; pending alerts call for none.
    pub fn from_event(event: &AlertEvent, at: Timestamp) -> Option<Notification> {
        let (kind, alert) = match event {
            AlertEvent::Pending(_) => return None,
            AlertEvent::Firing(a) => (NotificationKind::Firing, a),
            AlertEvent::Resolved(a) => (NotificationKind::Resolved, a),
            AlertEvent::Escalated { alert, from } => (NotificationKind::Escalated(*from), alert),
            AlertEvent::Deescalated { alert, from } => (NotificationKind::Deescalated(*from), alert),
        };
        Some(Notification { at, kind, alert: alert.clone() })
    }

    /// The documented JSON form (one line per notification in the file notifier).
    pub fn to_json(&self) -> serde_json::Value {
        let a = &self.alert;
        let from = match self.kind {
            NotificationKind::Escalated(s) | NotificationKind::Deescalated(s) => Some(s.as_str()),
            _ => None,
        };
        serde_json::json!({
            "at": self.at.to_rfc3339(),
            "event": self.kind.as_str(),
            "alertname": a.name(),
            "severity": a.severity.as_str(),
            "from_severity": from,
            "fingerprint": a.fingerprint.to_string(),
            "labels": a.labels,
            "annotations": a.annotations.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "value": if a.value.is_finite() { serde_json::json!(a.value) } else { serde_json::json!(crate::model::format_value(a.value)) },
            "runbook": a.runbook,
            "active_at": a.active_at.to_rfc3339(),
            "fired_at": a.fired_at.map(Timestamp::to_rfc3339),
            "resolved_at": a.resolved_at.map(Timestamp::to_rfc3339),
        })
    }

    /// One human-readable line.
    pub fn to_line(&self) -> String {
        let a = &self.alert;
        let mut labels = a.labels.clone();
        labels.remove(ALERTNAME);
        labels.remove(SEVERITY);
        let what = match self.kind {
            NotificationKind::Firing => "FIRING".to_string(),
            NotificationKind::Resolved => "RESOLVED".to_string(),
            NotificationKind::Escalated(from) => format!("ESCALATED from {from}"),
            NotificationKind::Deescalated(from) => format!("DEESCALATED from {from}"),
        };
        let mut line = format!("{} [{}] {what} {} {labels}", self.at.to_rfc3339(), a.severity, a.name());
        if let Some(s) = a.annotation("summary") {
            line.push_str(&format!(" — {s}"));
        }
        if let Some(r) = &a.runbook {
            line.push_str(&format!(" (runbook: {r})"));
        }
        line
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifier {name}: {source}")]
    Io { name: String, source: std::io::Error },
}

/// A channel notifications are delivered to.
pub trait Notifier: Send + Sync {
    fn name(&self) -> &str;
    fn send(&self, n: &Notification) -> Result<(), NotifyError>;
}

/// Prints each notification as one line on standard output.
pub struct ConsoleNotifier {
    pub name: String,
}

impl Notifier for ConsoleNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", n.to_line())
            .and_then(|()| out.flush())
            .map_err(|source| NotifyError::Io { name: self.name.clone(), source })
    }
}

/// Appends each notification as a JSON line, synced to disk.
pub struct FileNotifier {
    pub name: String,
    pub path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl FileNotifier {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self { name: name.into(), path: path.into(), file: Mutex::new(None) }
    }
}

impl Notifier for FileNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let err = |source| NotifyError::Io { name: self.name.clone(), source };
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            *guard = Some(std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(err)?);
        }
        let file = guard.as_mut().ok_or_else(|| err(std::io::Error::other("file not open")))?;
        let mut line = n.to_json().to_string();
        line.push('\n');
        file.write_all(line.as_bytes()).and_then(|()| file.sync_data()).map_err(err)
    }
}

/// Builds the configured notifiers.
pub fn from_config(configs: &[crate::config::NotifierConfig]) -> Vec<Box<dyn Notifier>> {
    configs
        .iter()
        .map(|c| -> Box<dyn Notifier> {
            match &c.kind {
                crate::config::NotifierKind::Console => Box::new(ConsoleNotifier { name: c.name.clone() }),
                crate::config::NotifierKind::File { path } => Box::new(FileNotifier::new(c.name.clone(), path.clone())),
            }
        })
        .collect()
}
