//! The `webhook` notifier: each delivery POSTed as JSON to an HTTP endpoint,
//! in one of several flavours: our own documented JSON (`generic`), the
//! Alertmanager v4 webhook payload (`alertmanager`), or a chat bot's message
//! (`slack` incoming webhook, `dingtalk` robot, `wecom` group robot,
//! `feishu`/Lark bot).
//!
//! Every request is a `POST` with `Content-Type: application/json`,
//! `User-Agent: zkalert/<version>` and `Idempotency-Key: <message id>-<channel>`
//! (the same on every retry of one delivery). A 2xx answer is a success,
//! any other status is classed by [`super::http::status_error`], transport
//! errors and timeouts are retryable. DingTalk, WeCom and Feishu answer HTTP
//! 200 with an error code in the body when they refuse a message: a non-zero
//! code is a permanent failure except their documented rate-limit codes
//! (DingTalk 130101, WeCom 45009, Feishu 9499 and 11232), which are retried.

pub use super::http::redact_url;
use super::http::{Outbound, ProxyUrl, is_http_url};
pub use super::percent_encode;
use super::template::{Context as TemplateContext, Templates};
use super::{Delivery, Notifier, SendError, SendFuture, message_json};
use crate::model::{ALERTNAME, Alert, Labels, SEVERITY};
use crate::pipeline::Message;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The payload a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// Our documented message JSON plus `ack_url` and per-alert `runbook_url`.
    #[default]
    Generic,
    /// Alertmanager's webhook payload, version 4.
    Alertmanager,
    /// A Slack incoming webhook: `text` and Block Kit `blocks`.
    Slack,
    /// A DingTalk (钉钉) custom robot: a markdown message, signed when a secret is set.
    DingTalk,
    /// A WeCom (企业微信) group robot: a markdown message of at most 4096 bytes.
    WeCom,
    /// A Feishu/Lark custom bot: a text message, signed when a secret is set.
    Feishu,
}

impl Flavor {
    pub const ALL: [Flavor; 6] =
        [Flavor::Generic, Flavor::Alertmanager, Flavor::Slack, Flavor::DingTalk, Flavor::WeCom, Flavor::Feishu];

    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Generic => "generic",
            Flavor::Alertmanager => "alertmanager",
            Flavor::Slack => "slack",
            Flavor::DingTalk => "dingtalk",
            Flavor::WeCom => "wecom",
            Flavor::Feishu => "feishu",
        }
    }

    /// Parses a config name (`lark` is accepted for `feishu`).
    pub fn parse(s: &str) -> Option<Flavor> {
        let s = s.trim().to_ascii_lowercase();
        if s == "lark" {
            return Some(Flavor::Feishu);
        }
        Flavor::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether the flavour signs its requests with a secret.
    pub fn signs(self) -> bool {
        matches!(self, Flavor::DingTalk | Flavor::Feishu)
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use super::template::Links;

/// Everything a [`WebhookNotifier`] is built from (plain data, read from the
/// config). Its `Debug` shows no secret: the URL (chat robots carry their
/// token in it) only up to the host, no secret, no header values.
#[derive(Clone)]
pub struct WebhookSettings {
    pub name: String,
    pub flavor: Flavor,
    pub url: String,
    /// The signing secret (DingTalk and Feishu only).
    pub secret: Option<String>,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Bounds connecting and the whole request.
    pub timeout: Duration,
    /// The proxy to send through; `None`: the environment's
    /// (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
    pub proxy_url: Option<ProxyUrl>,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("flavor", &self.flavor)
            .field("url", &redact_url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("proxy_url", &self.proxy_url)
            .finish()
    }
}

impl WebhookSettings {
    pub fn new(name: impl Into<String>, flavor: Flavor, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            flavor,
            url: url.into(),
            secret: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            proxy_url: None,
        }
    }
}

/// Headers set by the notifier itself, which the config may not override.
const RESERVED_HEADERS: [&str; 5] = ["content-type", "content-length", "idempotency-key", "host", "user-agent"];

/// POSTs each delivery as JSON in one [`Flavor`].
#[derive(Debug)]
pub struct WebhookNotifier {
    /// Checked: the URL trimmed, an empty secret dropped.
    settings: WebhookSettings,
    rendering: super::template::Rendering,
    http: Outbound,
}

impl WebhookNotifier {
    /// Checks the settings (an `http(s)` URL, a secret only where it is
    /// used, valid headers not set by the notifier itself, a non-zero
    /// timeout) and builds the HTTP client.
    pub fn new(mut s: WebhookSettings, rendering: super::template::Rendering) -> Result<Self, String> {
        let name = &s.name;
        s.url = s.url.trim().to_string();
        if !is_http_url(&s.url) {
            return Err(format!("webhook {name}: url must be an http:// or https:// URL"));
        }
        reqwest::Url::parse(&s.url).map_err(|e| format!("webhook {name}: invalid url {}: {e}", redact_url(&s.url)))?;
        s.secret = s.secret.filter(|x| !x.is_empty());
        if s.secret.is_some() && !s.flavor.signs() {
            return Err(format!("webhook {name}: a secret is only used by the dingtalk and feishu flavours"));
        }
        for (k, v) in &s.headers {
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("webhook {name}: invalid header name {k:?}"))?;
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| format!("webhook {name}: invalid value for header {k:?}"))?;
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(format!("webhook {name}: header {k:?} is set by zkalert"));
            }
        }
        let http = Outbound::new(s.timeout, s.proxy_url.as_ref()).map_err(|e| format!("webhook {name}: {e}"))?;
        Ok(Self { settings: s, rendering, http })
    }

    /// The payload flavour.
    pub fn flavor(&self) -> Flavor {
        self.settings.flavor
    }

    /// The URL and JSON body of one delivery at `now_ms`.
    pub fn request(&self, d: &Delivery, now_ms: i64) -> Result<(String, Value), SendError> {
        let s = &self.settings;
        let url = signed_url(s.flavor, &s.url, s.secret.as_deref(), now_ms);
        let ctx = Context {
            receiver: &s.name,
            channel: &d.channel,
            secret: s.secret.as_deref(),
            templates: &self.rendering.templates,
        };
        // A template that does not render is a config error: no retry fixes it.
        let body = body(s.flavor, &d.message, &ctx, &self.rendering.links, now_ms)
            .map_err(|e| SendError::Permanent(format!("webhook {}: {e}", s.name)))?;
        Ok((url, body))
    }

    async fn post(&self, d: &Delivery) -> Result<(), SendError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let (url, body) = self.request(d, now_ms)?;
        let mut req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", d.idempotency_key());
        for (k, v) in &self.settings.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let named = |e: SendError| match e {
            SendError::Retryable(t) => SendError::Retryable(format!("webhook {}: {t}", self.settings.name)),
            SendError::Permanent(t) => SendError::Permanent(format!("webhook {}: {t}", self.settings.name)),
        };
        let text = super::http::send(req.body(body.to_string())).await.map_err(named)?;
        check_reply(self.settings.flavor, &text).map_err(named)
    }
}

impl Notifier for WebhookNotifier {
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.post(d))
    }
    fn health(&self) -> SendFuture<'_> {
        Box::pin(self.http.reachable(&self.settings.url))
    }
}

/// The class of a 2xx answer's body: DingTalk and WeCom report a refusal as
/// `{"errcode": n}`, Feishu as `{"code": n}` (older bots `{"StatusCode": n}`);
/// zero is success, rate limits are retryable, anything else is permanent.
/// Bodies that are not JSON, and every other flavour, are a success.
pub fn check_reply(flavor: Flavor, body: &str) -> Result<(), SendError> {
    let (keys, retryable): (&[&str], &[i64]) = match flavor {
        Flavor::DingTalk => (&["errcode"], &[130101]),
        Flavor::WeCom => (&["errcode"], &[45009]),
        Flavor::Feishu => (&["code", "StatusCode"], &[9499, 11232]),
        Flavor::Generic | Flavor::Alertmanager | Flavor::Slack => return Ok(()),
    };
    let Ok(v) = serde_json::from_str::<Value>(body) else { return Ok(()) };
    let Some(code) = keys.iter().find_map(|k| v.get(*k)?.as_i64()) else { return Ok(()) };
    if code == 0 {
        return Ok(());
    }
    let msg = ["errmsg", "msg", "StatusMessage"].iter().find_map(|k| v.get(*k)?.as_str()).unwrap_or("");
    let text = format!("{flavor} error {code}: {}", msg.chars().take(200).collect::<String>());
    Err(if retryable.contains(&code) { SendError::Retryable(text) } else { SendError::Permanent(text) })
}

/// Who a body is for: the notifier (Alertmanager's `receiver`), the
/// delivery's channel (the generic JSON's `channel`) and the signing secret
/// (Feishu signs in the body).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub receiver: &'a str,
    pub channel: &'a str,
    pub secret: Option<&'a str>,
    pub templates: &'a Templates,
}

/// The JSON body of one message in one flavour, at `now_ms` (used by
/// Feishu's signature). The generic flavour is exactly
/// [`message_json`](super::message_json) plus a top-level `ack_url`
/// (`{external_url}/ack/{group_id}`, null without an external URL) and a
/// `runbook_url` in each firing and resolved alert (see
/// [`Links::runbook_url`]; null when there is none).
pub fn body(
    flavor: Flavor,
    m: &Message,
    ctx: &Context<'_>,
    links: &Links,
    now_ms: i64,
) -> Result<Value, super::template::TemplateError> {
    let render = |name: &str| ctx.templates.render(name, &TemplateContext::new(m, ctx.channel, links));
    Ok(match flavor {
        Flavor::Generic => generic_body(m, ctx.channel, links),
        Flavor::Alertmanager => alertmanager_body(m, ctx.receiver, links),
        Flavor::Slack => slack_body(m, links),
        Flavor::DingTalk => {
            json!({"msgtype": "markdown", "markdown": {"title": render("subject")?, "text": render("markdown")?}})
        }
        Flavor::WeCom => {
            json!({"msgtype": "markdown", "markdown": {"content": truncate_bytes(&render("markdown")?, WECOM_MAX_BYTES)}})
        }
        Flavor::Feishu => {
            let mut v = json!({"msg_type": "text", "content": {"text": render("text")?}});
            if let (Some(secret), Some(o)) = (ctx.secret, v.as_object_mut()) {
                let ts = now_ms.div_euclid(1000);
                o.insert("timestamp".into(), ts.to_string().into());
                o.insert("sign".into(), feishu_sign(secret, ts).into());
            }
            v
        }
    })
}

/// WeCom's limit on a markdown message's content.
pub const WECOM_MAX_BYTES: usize = 4096;

/// The URL to POST to: DingTalk's with `timestamp` and `sign` appended to
/// the query when a secret is set; otherwise `url` unchanged.
pub fn signed_url(flavor: Flavor, url: &str, secret: Option<&str>, now_ms: i64) -> String {
    match (flavor, secret) {
        (Flavor::DingTalk, Some(secret)) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}timestamp={now_ms}&sign={}", percent_encode(&dingtalk_sign(secret, now_ms)))
        }
        _ => url.to_string(),
    }
}

/// DingTalk's robot signature (before URL-encoding):
/// base64(HMAC-SHA256(key = secret, data = "{timestamp_ms}\n{secret}")).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    hmac_sha256_base64(secret.as_bytes(), string_to_sign.as_bytes())
}

/// Feishu's bot signature: base64(HMAC-SHA256(key = "{timestamp_s}\n{secret}",
/// data = empty)); the key is the string to sign.
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let string_to_sign = format!("{timestamp_s}\n{secret}");
    hmac_sha256_base64(string_to_sign.as_bytes(), b"")
}

fn hmac_sha256_base64(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// At most `max` bytes of `s`, cut on a char boundary, ending in `…` when cut.
pub fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    const ELLIPSIS: &str = "…";
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &s[..end])
}

fn generic_body(m: &Message, channel: &str, links: &Links) -> Value {
    let mut v = message_json(m, channel);
    let Some(o) = v.as_object_mut() else { return v };
    o.insert("ack_url".into(), links.ack_url(&m.group_id, m.at).into());
    for (key, alerts) in [("firing", &m.firing), ("resolved", &m.resolved)] {
        if let Some(list) = o.get_mut(key).and_then(Value::as_array_mut) {
            for (j, a) in list.iter_mut().zip(alerts.iter()) {
                if let Some(j) = j.as_object_mut() {
                    j.insert("runbook_url".into(), links.runbook_url(a).into());
                }
            }
        }
    }
    v
}

/// Alertmanager's zero time, its `endsAt` for alerts still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn labels_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// How every format of a `zkalert notify test` sample starts (the
/// templates spell it too).
const TEST_MARK: &str = "TEST, not a real alert: ";

/// A test sample's alerts, marked for an Alertmanager receiver: a
/// `zkalert_test="true"` label, also in the group (so receivers can route
/// or drop it, and it never merges with a real alert or group), a
/// `zkalert_test` annotation and the mark before the summary.
fn test_alerts(alerts: &[Alert]) -> Vec<Alert> {
    alerts
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.labels.insert("zkalert_test", "true");
            a.fingerprint = Alert::fingerprint_of(&a.labels);
            let summary = a.annotation("summary").unwrap_or("a sample sent by zkalert notify test");
            let summary = format!("{TEST_MARK}{summary}");
            a.annotations.remove("summary");
            a.annotations.set("summary", &summary);
            a.annotations.set("zkalert_test", "a sample sent by zkalert notify test, not a real alert");
            a
        })
        .collect()
}

fn alertmanager_body(m: &Message, receiver: &str, links: &Links) -> Value {
    let marked;
    let m = if m.test {
        let mut group = m.group.clone();
        group.insert("zkalert_test", "true");
        marked = Message { firing: test_alerts(&m.firing), resolved: test_alerts(&m.resolved), group, ..m.clone() };
        &marked
    } else {
        m
    };
    let all: Vec<&Alert> = m.firing.iter().chain(m.resolved.iter()).collect();
    let common = |maps: Vec<BTreeMap<String, String>>| -> BTreeMap<String, String> {
        let mut it = maps.into_iter();
        let mut common = it.next().unwrap_or_default();
        for map in it {
            common.retain(|k, v| map.get(k) == Some(v));
        }
        common
    };
    let common_labels = common(all.iter().map(|a| labels_map(&a.labels)).collect());
    let common_annotations = common(
        all.iter().map(|a| a.annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect(),
    );
    let group_key =
        if m.group.is_empty() { format!("{{}}:{{group_id={:?}}}", m.group_id) } else { format!("{{}}:{}", m.group) };
    let alert = |a: &Alert, firing: bool| {
        json!({
            "status": if firing { "firing" } else { "resolved" },
            "labels": labels_map(&a.labels),
            "annotations": a.annotations.iter().collect::<BTreeMap<_, _>>(),
            "startsAt": a.fired_at.unwrap_or(a.active_at).to_rfc3339(),
            "endsAt": match (firing, a.resolved_at) {
                (false, Some(t)) => t.to_rfc3339(),
                (false, None) => m.at.to_rfc3339(),
                (true, _) => ZERO_TIME.to_string(),
            },
            "generatorURL": links.runbook_url(a).unwrap_or_default(),
            "fingerprint": a.fingerprint.to_string(),
        })
    };
    let alerts: Vec<Value> =
        m.firing.iter().map(|a| alert(a, true)).chain(m.resolved.iter().map(|a| alert(a, false))).collect();
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": if m.firing.is_empty() { "resolved" } else { "firing" },
        "receiver": receiver,
        "groupLabels": labels_map(&m.group),
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": links.external_url.clone().unwrap_or_default(),
        "alerts": alerts,
    })
}

/// Slack's limit on a section's text.
const SLACK_SECTION_MAX: usize = 3000;

fn slack_body(m: &Message, links: &Links) -> Value {
    let text = Text::render(m, links, Style::Slack);
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text.header}})];
    // Several sections when the alerts do not fit in one.
    let mut chunk = String::new();
    for line in &text.lines {
        if !chunk.is_empty() && chunk.len() + line.len() + 1 > SLACK_SECTION_MAX {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk}}));
            chunk = String::new();
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(&truncate_bytes(line, SLACK_SECTION_MAX));
    }
    if !chunk.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk}}));
    }
    if let Some(ack) = &text.ack {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": ack}]}));
    }
    // Slack allows at most 50 blocks.
    blocks.truncate(50);
    json!({"text": text.title, "blocks": blocks})
}

/// Slack's mrkdwn (`*bold*`, `<url|text>`, `&<>` escaped): the other chat
/// robots' text comes from the `markdown` and `text` templates; Slack's
/// blocks are built here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Slack,
}

impl Style {
    fn bold(self, s: &str) -> String {
        format!("*{}*", slack_escape(s))
    }
    fn text(self, s: &str) -> String {
        slack_escape(s)
    }
    fn link(self, url: &str, label: &str) -> String {
        format!("<{}|{label}>", slack_escape(url))
    }
    /// A link when `target` is a URL, else the text (a runbook path without a base URL).
    fn link_or_text(self, target: &str, label: &str) -> String {
        if is_http_url(target) { self.link(target, label) } else { format!("{label}: {}", self.text(target)) }
    }
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A message as text: a one-line plain title, a styled header, one line
/// per alert and the ack link.
struct Text {
    title: String,
    header: String,
    lines: Vec<String>,
    ack: Option<String>,
}

impl Text {
    fn render(m: &Message, links: &Links, style: Style) -> Text {
        let names: BTreeSet<&str> = m.firing.iter().chain(m.resolved.iter()).map(Alert::name).collect();
        let names = if names.is_empty() {
            m.group.get(ALERTNAME).unwrap_or("alerts").to_string()
        } else {
            names.into_iter().collect::<Vec<_>>().join(", ")
        };
        let mut counts = vec![format!("{} firing", m.firing.len())];
        if !m.new.is_empty() && !m.digest {
            counts.push(format!("{} new", m.new.len()));
        }
        if !m.resolved.is_empty() {
            counts.push(format!("{} resolved", m.resolved.len()));
        }
        let kind = if m.escalation {
            "ESCALATION (not acknowledged) "
        } else if m.digest {
            "DIGEST "
        } else {
            ""
        };
        let test = if m.test { TEST_MARK } else { "" };
        let lead = format!("{test}[{}] {kind}{names}", m.tier);
        let mut rest = counts.join(", ");
        if let Some(c) = m.group.get("cluster") {
            rest = format!("cluster {c}: {rest}");
        }
        let title = format!("{lead} — {rest}");
        let header = format!("{} — {}", style.bold(&lead), style.text(&rest));
        let lines: Vec<String> = m
            .firing
            .iter()
            .map(|a| (a, if m.is_new(a.fingerprint) { "FIRING" } else { "STILL FIRING" }))
            .chain(m.resolved.iter().map(|a| (a, "resolved")))
            .map(|(a, status)| alert_text(a, status, links, style))
            .collect();
        let ack =
            links.ack_url(&m.group_id, m.at).filter(|_| !m.firing.is_empty()).map(|u| style.link(&u, "acknowledge"));
        Text { title, header, lines, ack }
    }
}

/// `STATUS [P1] Name cluster=… instance=… {other labels} — summary — runbook`.
fn alert_text(a: &Alert, status: &str, links: &Links, style: Style) -> String {
    let mut ids: Vec<String> =
        ["cluster", "instance"].iter().filter_map(|k| a.labels.get(k).map(|v| format!("{k}={v}"))).collect();
    let others: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| ![ALERTNAME, SEVERITY, "cluster", "instance"].contains(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !others.is_empty() {
        ids.push(format!("{{{}}}", others.join(", ")));
    }
    let mut line =
        format!("{} [{}] {} {}", style.bold(status), a.severity, style.text(a.name()), style.text(&ids.join(" ")));
    if let Some(s) = a.annotation("summary") {
        line.push_str(&format!(" — {}", style.text(s)));
    }
    if let Some(r) = links.runbook_text(a) {
        line.push_str(&format!(" — {}", style.link_or_text(&r, "runbook")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        let s = "告警".repeat(2000);
        let t = truncate_bytes(&s, WECOM_MAX_BYTES);
        assert!(t.len() <= WECOM_MAX_BYTES);
        assert!(t.ends_with('…'));
        assert_eq!(truncate_bytes("short", 10), "short");
    }

    #[test]
    fn parses_flavours() {
        for f in Flavor::ALL {
            assert_eq!(Flavor::parse(f.as_str()), Some(f));
        }
        assert_eq!(Flavor::parse("Lark"), Some(Flavor::Feishu));
        assert_eq!(Flavor::parse("teams"), None);
    }

    #[test]
    fn percent_encodes_base64() {
        assert_eq!(percent_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }

    #[test]
    fn classes_bot_replies() {
        assert_eq!(check_reply(Flavor::DingTalk, r#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        assert!(matches!(check_reply(Flavor::DingTalk, r#"{"errcode":310000}"#), Err(SendError::Permanent(_))));
        assert!(matches!(check_reply(Flavor::DingTalk, r#"{"errcode":130101}"#), Err(SendError::Retryable(_))));
        assert!(matches!(check_reply(Flavor::WeCom, r#"{"errcode":45009}"#), Err(SendError::Retryable(_))));
        assert!(matches!(check_reply(Flavor::WeCom, r#"{"errcode":93000}"#), Err(SendError::Permanent(_))));
        assert!(matches!(check_reply(Flavor::Feishu, r#"{"code":9499}"#), Err(SendError::Retryable(_))));
        assert!(matches!(check_reply(Flavor::Feishu, r#"{"code":19021}"#), Err(SendError::Permanent(_))));
        assert_eq!(check_reply(Flavor::Feishu, r#"{"StatusCode":0}"#), Ok(()));
        assert_eq!(check_reply(Flavor::Slack, "invalid_payload"), Ok(()));
        assert_eq!(check_reply(Flavor::DingTalk, "not json"), Ok(()));
    }
}
