//! Notifiers: the last stage, where the pipeline's messages are delivered
//! to channels. The trait, its error classes (retry or not), the message
//! formats shared by channels; each notifier is a file of its own. They
//! are built from the config's settings in `runner::channels`: nothing here
//! reads the config.

mod console;
pub mod delivery;
pub mod email;
mod file;
pub mod http;
pub mod sms;
pub mod template;
pub mod voice;
pub mod webhook;

pub use console::ConsoleNotifier;
pub use file::FileNotifier;

use crate::model::{Alert, Timestamp};
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

/// What delivers to one channel. The channel ([`delivery::Channel`]) owns
/// its name and type, given where notifiers are built; a notifier only sends.
pub trait Notifier: Send + Sync {
    /// Sends one delivery; the caller bounds it in time and retries.
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a>;
    /// Whether the channel can be reached now, without sending anything
    /// (`zkalert notify test`, start-up): a TCP connection for HTTP
    /// channels, an SMTP `NOOP` for email, an open file for `file`.
    fn health(&self) -> SendFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `url`'s host accepts a TCP connection within `timeout`.
pub async fn reachable(url: &str, timeout: std::time::Duration) -> Result<(), SendError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| SendError::Permanent(format!("invalid URL: {e}")))?;
    let host = parsed.host_str().ok_or_else(|| SendError::Permanent("URL without a host".into()))?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let what = http::redact_url(url);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(SendError::Retryable(format!("cannot connect to {what}: {e}"))),
        Err(_) => Err(SendError::Retryable(format!("no connection to {what} within {timeout:?}"))),
    }
}

/// One alert in a message's JSON form.
pub fn alert_json(a: &Alert, new: Option<bool>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "alertname": a.name(),
        "status": a.state.as_str(),
        "severity": a.severity.as_str(),
        "fingerprint": a.fingerprint.to_string(),
        "labels": a.labels,
        "annotations": a.annotations.iter().collect::<std::collections::BTreeMap<_, _>>(),
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
        "reason": m.reason,
        "escalation": m.escalation,
        "digest": m.digest,
        "test": m.test,
        "firing": m.firing.iter().map(|a| alert_json(a, Some(m.is_new(a.fingerprint)))).collect::<Vec<_>>(),
        "resolved": m.resolved.iter().map(|a| alert_json(a, None)).collect::<Vec<_>>(),
    })
}

/// A notifier that could not be built: every delivery fails permanently
/// (so it falls over and raises `NotifierFailing`) instead of the process
/// refusing to page at all.
pub struct Broken {
    pub error: String,
}

impl Notifier for Broken {
    fn send<'a>(&'a self, _: &'a Delivery) -> SendFuture<'a> {
        Box::pin(std::future::ready(Err(SendError::Permanent(self.error.clone()))))
    }
}
