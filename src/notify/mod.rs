//! Notifiers: the last stage, where the pipeline's messages are delivered
//! to channels. The trait, its error classes (retry or not), the message
//! formats shared by channels, and the configured set of notifiers; each
//! notifier is a file of its own.

mod console;
pub mod delivery;
mod file;
pub mod webhook;

pub use console::ConsoleNotifier;
pub use file::FileNotifier;

use crate::model::{ALERTNAME, Alert, SEVERITY, Timestamp};
use crate::pipeline::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Timeouts, connection errors, HTTP 429 and 5xx, SMTP 4xx.
    #[error("{0}")]
    Retryable(String),
    /// The request itself is wrong (HTTP 4xx, SMTP 5xx, bad config): the
    /// same request will fail again.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Retryable(_))
    }

    /// The class of an HTTP answer that is not a success: 408, 425, 429 and
    /// 5xx are worth retrying, other 4xx are not.
    pub fn from_http_status(status: u16, body: &str) -> SendError {
        let body: String = body.chars().take(200).collect();
        let text = format!("HTTP {status}: {}", body.trim());
        if status == 408 || status == 425 || status == 429 || status >= 500 {
            SendError::Retryable(text)
        } else {
            SendError::Permanent(text)
        }
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// One message to one channel.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    pub channel: String,
}

impl Delivery {
    /// The same for every attempt and across restarts, so a receiver can
    /// recognise a retry (sent as the `Idempotency-Key` header by webhooks).
    pub fn idempotency_key(&self) -> String {
        format!("{}-{}", self.message.id, self.channel)
    }
}

/// A channel messages are delivered to.
pub trait Notifier: Send + Sync {
    fn name(&self) -> &str;
    /// The notifier type, as in the config (`console`, `file`, `webhook`…).
    fn kind(&self) -> &'static str;
    /// Sends one delivery; the caller bounds it in time and retries.
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a>;
}

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

/// Builds the configured notifiers.
pub fn from_config(configs: &[crate::config::NotifierConfig]) -> Vec<delivery::Channel> {
    configs
        .iter()
        .map(|c| {
            let notifier: Arc<dyn Notifier> = match &c.kind {
                crate::config::NotifierKind::Console => Arc::new(ConsoleNotifier { name: c.name.clone() }),
                crate::config::NotifierKind::File { path } => Arc::new(FileNotifier::new(c.name.clone(), path.clone())),
            };
            delivery::Channel::new(notifier, c.timeout, c.min_interval)
        })
        .collect()
}
