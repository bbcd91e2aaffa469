//! Notifiers: the last stage, where the pipeline's messages are delivered.
//! Built in: `console` (human-readable lines) and `file` (JSON lines, the
//! documented message schema, idempotent by delivery key).

use crate::model::{ALERTNAME, Alert, SEVERITY, Timestamp};
use crate::pipeline::Message;
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;

/// One alert in a message's JSON form.
pub fn alert_json(a: &Alert, new: Option<bool>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "alertname": a.name(),
        "status": a.state.as_str(),
        "severity": a.severity.as_str(),
        "fingerprint": a.fingerprint.to_string(),
        "labels": a.labels,
        "annotations": a.annotations.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "value": if a.value.is_finite() { serde_json::json!(a.value) } else { serde_json::json!(crate::model::format_value(a.value)) },
        "runbook": a.runbook,
        "active_at": a.active_at.to_rfc3339(),
        "fired_at": a.fired_at.map(Timestamp::to_rfc3339),
        "resolved_at": a.resolved_at.map(Timestamp::to_rfc3339),
    });
    if let (Some(new), Some(o)) = (new, v.as_object_mut()) {
        o.insert("new".into(), new.into());
    }
    v
}

/// The documented JSON form of one delivery of a message (docs/notifications.md).
pub fn message_json(m: &Message, channel: &str) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "channel": channel,
        "at": m.at.to_rfc3339(),
        "tier": m.tier.as_str(),
        "group": m.group,
        "group_id": m.group_id,
        "escalation": m.escalation,
        "digest": m.digest,
        "firing": m.firing.iter().map(|a| alert_json(a, Some(m.is_new(a.fingerprint)))).collect::<Vec<_>>(),
        "resolved": m.resolved.iter().map(|a| alert_json(a, None)).collect::<Vec<_>>(),
    })
}

/// Human-readable lines: a header, then one line per alert.
pub fn message_lines(m: &Message) -> String {
    let what = if m.digest {
        format!("DIGEST {} firing, {} resolved", m.firing.len(), m.resolved.len())
    } else if m.escalation {
        format!("ESCALATION (not acknowledged) {}", m.group)
    } else {
        format!("{} {}", m.group, summary_counts(m))
    };
    let mut out = format!("{} [{}] {what}", m.at.to_rfc3339(), m.tier);
    for (a, status) in m
        .firing
        .iter()
        .map(|a| (a, if m.is_new(a.fingerprint) { "FIRING" } else { "STILL FIRING" }))
        .chain(m.resolved.iter().map(|a| (a, "RESOLVED")))
    {
        out.push_str(&format!("\n  {status} {}", alert_line(a)));
    }
    out
}

fn summary_counts(m: &Message) -> String {
    let mut parts = vec![format!("{} firing", m.firing.len())];
    if !m.new.is_empty() {
        parts.push(format!("{} new", m.new.len()));
    }
    if !m.resolved.is_empty() {
        parts.push(format!("{} resolved", m.resolved.len()));
    }
    parts.join(", ")
}

fn alert_line(a: &Alert) -> String {
    let mut labels = a.labels.clone();
    labels.remove(ALERTNAME);
    labels.remove(SEVERITY);
    let mut line = format!("[{}] {} {labels}", a.severity, a.name());
    if let Some(s) = a.annotation("summary") {
        line.push_str(&format!(" — {s}"));
    }
    if let Some(r) = &a.runbook {
        line.push_str(&format!(" (runbook: {r})"));
    }
    line
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifier {name}: {source}")]
    Io { name: String, source: std::io::Error },
}

/// A channel messages are delivered to.
pub trait Notifier: Send + Sync {
    fn name(&self) -> &str;
    fn send(&self, m: &Message) -> Result<(), NotifyError>;
}

/// Prints each message as lines on standard output.
pub struct ConsoleNotifier {
    pub name: String,
}

impl Notifier for ConsoleNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn send(&self, m: &Message) -> Result<(), NotifyError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", message_lines(m))
            .and_then(|()| out.flush())
            .map_err(|source| NotifyError::Io { name: self.name.clone(), source })
    }
}

/// Appends each message as a JSON line, synced to disk. A message already
/// in the file (same id, a retry after a crash) is not written twice: the
/// receiving end of the delivery key.
pub struct FileNotifier {
    pub name: String,
    pub path: PathBuf,
    file: Mutex<Option<OpenFile>>,
}

struct OpenFile {
    file: std::fs::File,
    written: HashSet<String>,
}

impl FileNotifier {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self { name: name.into(), path: path.into(), file: Mutex::new(None) }
    }

    fn open(&self) -> std::io::Result<OpenFile> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&self.path)?;
        let mut written = HashSet::new();
        for line in std::io::BufReader::new(&file).lines() {
            let line = line?;
            if let Some(id) = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(String::from))
            {
                written.insert(id);
            }
        }
        Ok(OpenFile { file, written })
    }
}

impl Notifier for FileNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn send(&self, m: &Message) -> Result<(), NotifyError> {
        let err = |source| NotifyError::Io { name: self.name.clone(), source };
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.open().map_err(err)?);
        }
        let open = guard.as_mut().ok_or_else(|| err(std::io::Error::other("file not open")))?;
        if open.written.contains(&m.id) {
            return Ok(());
        }
        let mut line = message_json(m, &self.name).to_string();
        line.push('\n');
        open.file.write_all(line.as_bytes()).and_then(|()| open.file.sync_data()).map_err(err)?;
        open.written.insert(m.id.clone());
        Ok(())
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
