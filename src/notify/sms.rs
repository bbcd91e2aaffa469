//! The `sms` notifier: each delivery rendered with the `sms` template, cut to
//! a number of SMS segments, and sent to every recipient either through
//! Twilio's Messages API or a generic HTTP gateway.
//!
//! **Segments.** A text made only of GSM-7 characters (the GSM 03.38 basic
//! set; the extension table's `^{}\[~]|€` and form feed count 2) fits 160
//! characters in one segment and 153 per segment when concatenated. Any
//! other character (e.g. Chinese) makes the whole message UCS-2: 70 UTF-16
//! code units in one segment, 67 per segment concatenated. [`fit`] cuts a
//! text to fit, ending it with `...` (GSM-7) or `…` (UCS-2). The `sms`
//! template puts the tier, alert, cluster and runbook link first, so they
//! survive the cut.
//!
//! **Twilio.** For each recipient, `POST {api_base}/2010-04-01/Accounts/{sid}/Messages.json`
//! with a form-encoded `To`, `From` and `Body`, HTTP basic auth `sid:token`
//! and `I-Twilio-Idempotency-Token: <message id>-<channel>-<recipient index>`.
//!
//! **Generic HTTP.** For each recipient, one request with a body rendered
//! from a minijinja template (strict undefined) with the variables `to`,
//! `text`, `tier`, `id` and `idempotency_key` (the per-recipient key, also
//! sent as the `Idempotency-Key` header). Header values may use the same
//! variables. For a JSON body, quote values with the `tojson` filter (alias
//! `json`): `{"phone": {{ to | tojson }}, "content": {{ text | tojson }}}`
//! stays valid JSON whatever the text holds. `Content-Type` defaults to
//! `application/json`.
//!
//! A 2xx answer is a success, any other status is classed by
//! [`super::http::status_error`], transport errors and timeouts are
//! retryable. A delivery succeeds when every recipient got it; recipients
//! that did are remembered (per idempotency key, for a bounded number of
//! deliveries), so a retry after a partial failure only sends to the others.

use super::http::{Outbound, ProxyUrl, is_http_url};
use super::template::Rendering;
use super::{Delivery, Notifier, SendError, SendFuture};
use base64::Engine;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Segments

/// The GSM 03.38 basic character set (without the escape to the extension table).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The GSM 03.38 extension table: each costs 2 septets (escape + char).
const GSM7_EXTENSION: &str = "\x0c^{}\\[~]|€";

/// How an SMS text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 7-bit GSM 03.38: 160 septets in one segment, 153 concatenated.
    Gsm7,
    /// UCS-2 (UTF-16): 70 code units in one segment, 67 concatenated.
    Ucs2,
}

impl Encoding {
    /// The capacity of a lone segment and of each concatenated segment.
    pub fn limits(self) -> (usize, usize) {
        match self {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        }
    }
}

/// The septets of one GSM-7 character; `None` outside GSM-7.
pub fn gsm7_cost(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding a text needs: GSM-7 when every character has one.
pub fn encoding(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_cost(c).is_some()) { Encoding::Gsm7 } else { Encoding::Ucs2 }
}

fn cost(c: char, enc: Encoding) -> Option<usize> {
    match enc {
        Encoding::Gsm7 => gsm7_cost(c),
        Encoding::Ucs2 => Some(c.len_utf16()),
    }
}

/// The length of a text in its encoding's units (septets or UTF-16 code units).
pub fn units(text: &str) -> usize {
    let enc = encoding(text);
    text.chars().filter_map(|c| cost(c, enc)).sum()
}

/// Packs characters into at most `max` concatenated segments: a character
/// (an escaped GSM-7 pair, a UTF-16 surrogate pair) is never split.
#[derive(Debug, Clone, Copy)]
struct Packer {
    size: usize,
    max: usize,
    used: usize,
    fill: usize,
}

impl Packer {
    fn push(&mut self, cost: usize) -> bool {
        if self.fill + cost <= self.size {
            self.fill += cost;
            true
        } else if self.used < self.max && cost <= self.size {
            self.used += 1;
            self.fill = cost;
            true
        } else {
            false
        }
    }
}

/// How many segments a text takes.
pub fn segments(text: &str) -> usize {
    let enc = encoding(text);
    let (single, multi) = enc.limits();
    if units(text) <= single {
        return 1;
    }
    let mut p = Packer { size: multi, max: usize::MAX, used: 1, fill: 0 };
    for c in text.chars() {
        p.push(cost(c, enc).unwrap_or(2));
    }
    p.used
}

/// The longest prefix of `text` that fits `segments` segments in `enc`
/// followed by the ellipsis.
fn cut(text: &str, enc: Encoding, segments: usize) -> String {
    let (single, multi) = enc.limits();
    let ellipsis = match enc {
        Encoding::Gsm7 => "...",
        Encoding::Ucs2 => "…",
    };
    let start = if segments == 1 {
        Packer { size: single, max: 1, used: 1, fill: 0 }
    } else {
        Packer { size: multi, max: segments, used: 1, fill: 0 }
    };
    let fits_ellipsis = |p: &Packer| {
        let mut p = *p;
        ellipsis.chars().all(|c| cost(c, enc).is_some_and(|k| p.push(k)))
    };
    let mut p = start;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        let Some(k) = cost(c, enc) else { break };
        if !p.push(k) || !fits_ellipsis(&p) {
            break;
        }
        end = i + c.len_utf8();
    }
    format!("{}{ellipsis}", text[..end].trim_end())
}

/// `text` cut at a character boundary to fit `segments` SMS segments (at
/// least 1), ending with `...` (GSM-7) or `…` (UCS-2) when it was cut.
pub fn fit(text: &str, segments: usize) -> String {
    let n = segments.max(1);
    if self::segments(text) <= n {
        return text.to_string();
    }
    cut(text, encoding(text), n)
}

// ---------------------------------------------------------------------------
// Settings

/// An account of Twilio's REST API (or a compatible one), for SMS and calls.
#[derive(Clone)]
pub struct Twilio {
    pub account_sid: String,
    pub auth_token: String,
    /// The sender: an E.164 number (or an alphanumeric sender ID for SMS).
    pub from: String,
    /// `https://api.twilio.com` unless set.
    pub api_base: String,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// Twilio's API address.
pub const TWILIO_API_BASE: &str = "https://api.twilio.com";

impl Twilio {
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>, from: impl Into<String>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            from: from.into(),
            api_base: TWILIO_API_BASE.to_string(),
        }
    }

    /// Checks the account settings (`what` names the notifier in errors).
    pub(crate) fn check(&self, what: &str) -> Result<(), String> {
        if self.account_sid.trim().is_empty() || self.auth_token.is_empty() {
            return Err(format!("{what}: account_sid and auth_token are required"));
        }
        if !self.account_sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("{what}: invalid account_sid {:?}", self.account_sid));
        }
        if self.from.trim().is_empty() {
            return Err(format!("{what}: from is required"));
        }
        check_url(what, "api_base", &self.api_base)
    }

    /// The URL of a resource of the account (`Messages`, `Calls`).
    pub fn url(&self, resource: &str) -> String {
        format!("{}/2010-04-01/Accounts/{}/{resource}.json", self.api_base.trim_end_matches('/'), self.account_sid)
    }

    /// The `Authorization` header value: basic auth `sid:token`.
    pub fn authorization(&self) -> String {
        let raw = format!("{}:{}", self.account_sid, self.auth_token);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// A generic HTTP SMS gateway.
#[derive(Clone)]
pub struct HttpGateway {
    /// `POST` unless set.
    pub method: String,
    pub url: String,
    /// Request headers; values may use the template variables.
    pub headers: Vec<(String, String)>,
    /// The request body, a minijinja template (see the module documentation).
    pub body_template: String,
}

impl std::fmt::Debug for HttpGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGateway")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("body_template", &self.body_template)
            .finish()
    }
}

impl HttpGateway {
    pub fn new(url: impl Into<String>, body_template: impl Into<String>) -> Self {
        Self { method: "POST".into(), url: url.into(), headers: Vec::new(), body_template: body_template.into() }
    }
}

/// Who sends the SMS.
#[derive(Debug, Clone)]
pub enum SmsProvider {
    Twilio(Twilio),
    Http(HttpGateway),
}

/// Everything an [`SmsNotifier`] is built from (plain data, read from the config).
#[derive(Debug, Clone)]
pub struct SmsSettings {
    pub name: String,
    pub provider: SmsProvider,
    /// Recipients, E.164 (`+8613800138000`).
    pub to: Vec<String>,
    /// The most segments a message may take (1 unless set).
    pub segments: usize,
    /// Bounds connecting and each request.
    pub timeout: Duration,
    /// The proxy to send through; `None`: the environment's
    /// (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
    pub proxy_url: Option<ProxyUrl>,
}

impl SmsSettings {
    /// One segment, a 10 s timeout.
    pub fn new(name: impl Into<String>, provider: SmsProvider, to: Vec<String>) -> Self {
        Self { name: name.into(), provider, to, segments: 1, timeout: Duration::from_secs(10), proxy_url: None }
    }
}

// ---------------------------------------------------------------------------
// Shared by the SMS and voice notifiers

fn check_url(what: &str, field: &str, url: &str) -> Result<(), String> {
    if !is_http_url(url) {
        return Err(format!("{what}: {field} must be an http:// or https:// URL, got {url:?}"));
    }
    reqwest::Url::parse(url).map(|_| ()).map_err(|e| format!("{what}: invalid {field} {url:?}: {e}"))
}

/// Whether `s` is an E.164 number: `+`, then 8 to 15 digits, the first not 0.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// `application/x-www-form-urlencoded` encoding of a form.
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

/// Sends a request: 2xx is a success, other statuses are classed by
/// [`super::http::status_error`], transport errors are retryable.
pub(crate) async fn send_request(req: reqwest::RequestBuilder) -> Result<(), SendError> {
    super::http::send(req).await.map(|_| ())
}

/// The recipients reached per idempotency key, and the keys oldest first.
type Reached = (HashMap<String, HashSet<String>>, VecDeque<String>);

/// The recipients each recent delivery already reached, so a retry skips
/// them; at most `capacity` deliveries are remembered (the oldest forgotten).
#[derive(Debug)]
pub(crate) struct Delivered {
    capacity: usize,
    inner: Mutex<Reached>,
}

impl Delivered {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reached> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn contains(&self, key: &str, recipient: &str) -> bool {
        self.lock().0.get(key).is_some_and(|s| s.contains(recipient))
    }

    pub(crate) fn insert(&self, key: &str, recipient: &str) {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        if !map.contains_key(key) {
            while order.len() >= self.capacity.max(1) {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
            order.push_back(key.to_string());
        }
        map.entry(key.to_string()).or_default().insert(recipient.to_string());
    }
}

/// How many deliveries' recipients are remembered.
const DELIVERED_CAPACITY: usize = 4096;

/// A notifier's recipients, and those each recent delivery already reached,
/// so a retry after a partial failure only sends to the others.
#[derive(Debug)]
pub(crate) struct Recipients {
    /// `sms NAME`, `voice NAME`: how errors name the notifier.
    what: String,
    to: Vec<String>,
    delivered: Delivered,
}

impl Recipients {
    /// Checks the recipients (at least one, E.164, none twice) and the timeout.
    pub(crate) fn new(what: String, to: Vec<String>, timeout: Duration) -> Result<Self, String> {
        if to.is_empty() {
            return Err(format!("{what}: at least one recipient is required"));
        }
        if let Some(bad) = to.iter().find(|t| !is_e164(t)) {
            return Err(format!("{what}: recipient {bad:?} is not an E.164 number (+ and 8 to 15 digits)"));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = to.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(format!("{what}: recipient {dup:?} is listed twice"));
        }
        if timeout.is_zero() {
            return Err(format!("{what}: timeout must be positive"));
        }
        Ok(Self { what, to, delivered: Delivered::new(DELIVERED_CAPACITY) })
    }

    /// How errors name the notifier.
    pub(crate) fn what(&self) -> &str {
        &self.what
    }

    /// Sends (`send_one(index, recipient)`) to every recipient this delivery
    /// has not reached yet, one after the other; all are tried even when one
    /// fails. The error names every failed recipient; it is retryable when
    /// any failure is.
    pub(crate) async fn send_all<'a, F, Fut>(&'a self, d: &Delivery, send_one: F) -> Result<(), SendError>
    where
        F: Fn(usize, &'a str) -> Fut,
        Fut: std::future::Future<Output = Result<(), SendError>>,
    {
        let key = d.idempotency_key();
        let mut failures = Vec::new();
        let mut retryable = false;
        for (i, recipient) in self.to.iter().enumerate() {
            if self.delivered.contains(&key, recipient) {
                continue;
            }
            match send_one(i, recipient).await {
                Ok(()) => self.delivered.insert(&key, recipient),
                Err(e) => {
                    retryable |= e.is_retryable();
                    failures.push(format!("{recipient}: {e}"));
                }
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        let (what, total) = (&self.what, self.to.len());
        let text = format!("{what}: {} of {total} recipients failed: {}", failures.len(), failures.join("; "));
        Err(if retryable { SendError::Retryable(text) } else { SendError::Permanent(text) })
    }
}

// ---------------------------------------------------------------------------
// The notifier

/// Headers set by the notifier itself, which the config may not set.
const RESERVED_HEADERS: [&str; 4] = ["content-length", "idempotency-key", "host", "user-agent"];

/// A generic gateway's compiled templates.
struct Gateway {
    method: reqwest::Method,
    url: String,
    /// Header names and whether their value is a template.
    headers: Vec<(String, String, bool)>,
    env: minijinja::Environment<'static>,
}

/// The JSON form of a value (`tojson` and `json` filters).
fn tojson(v: minijinja::Value) -> Result<String, minijinja::Error> {
    serde_json::to_string(&v).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))
}

impl Gateway {
    fn new(what: &str, g: &HttpGateway) -> Result<Gateway, String> {
        let method = reqwest::Method::from_bytes(g.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("{what}: invalid method {:?}", g.method))?;
        let url = g.url.trim().to_string();
        check_url(what, "url", &url)?;
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_fuel(Some(100_000));
        env.add_filter("tojson", tojson);
        env.add_filter("json", tojson);
        env.add_template_owned("body", g.body_template.clone()).map_err(|e| format!("{what}: body_template: {e}"))?;
        let mut headers = Vec::new();
        for (i, (k, v)) in g.headers.iter().enumerate() {
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("{what}: invalid header name {k:?}"))?;
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(format!("{what}: header {k:?} is set by zkalert"));
            }
            let templated = v.contains("{{") || v.contains("{%");
            if templated {
                env.add_template_owned(format!("header{i}"), v.clone())
                    .map_err(|e| format!("{what}: header {k:?}: {e}"))?;
            } else {
                reqwest::header::HeaderValue::from_str(v)
                    .map_err(|_| format!("{what}: invalid value for header {k:?}"))?;
            }
            headers.push((k.clone(), v.clone(), templated));
        }
        let gw = Gateway { method, url, headers, env };
        // Strict undefined: a template naming an unknown variable fails now, not at 3 am.
        gw.render(&Vars { to: "+10000000000", text: "check", tier: "P1", id: "check", idempotency_key: "check-0" })
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(gw)
    }

    /// The body and headers of one request.
    fn render(&self, vars: &Vars<'_>) -> Result<(String, Vec<(String, String)>), String> {
        let ctx = minijinja::context! {
            to => vars.to, text => vars.text, tier => vars.tier, id => vars.id, idempotency_key => vars.idempotency_key,
        };
        let render = |name: &str| {
            self.env.get_template(name).and_then(|t| t.render(&ctx)).map_err(|e| format!("{name} template: {e}"))
        };
        let body = render("body")?;
        let mut headers = Vec::new();
        for (i, (k, v, templated)) in self.headers.iter().enumerate() {
            let v = if *templated { render(&format!("header{i}"))? } else { v.clone() };
            headers.push((k.clone(), v));
        }
        Ok((body, headers))
    }
}

/// The variables of a generic gateway's templates.
struct Vars<'a> {
    to: &'a str,
    text: &'a str,
    tier: &'a str,
    id: &'a str,
    idempotency_key: &'a str,
}

enum Backend {
    Twilio(Twilio),
    Http(Box<Gateway>),
}

/// Sends each delivery as an SMS to every recipient.
pub struct SmsNotifier {
    segments: usize,
    rendering: Rendering,
    backend: Backend,
    http: Outbound,
    recipients: Recipients,
}

impl std::fmt::Debug for SmsNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let provider = match &self.backend {
            Backend::Twilio(_) => "twilio",
            Backend::Http(_) => "http",
        };
        f.debug_struct("SmsNotifier")
            .field("provider", &provider)
            .field("recipients", &self.recipients)
            .field("segments", &self.segments)
            .finish()
    }
}

impl SmsNotifier {
    /// Checks the settings (E.164 recipients, 1 to 10 segments, a
    /// positive timeout; Twilio's account; the gateway's method, URL,
    /// headers and templates, rendered once against sample values) and
    /// builds the HTTP client.
    pub fn new(s: SmsSettings, rendering: Rendering) -> Result<Self, String> {
        let what = format!("sms {}", s.name);
        let recipients = Recipients::new(what.clone(), s.to, s.timeout)?;
        if !(1..=10).contains(&s.segments) {
            return Err(format!("{what}: segments must be 1 to 10, got {}", s.segments));
        }
        let backend = match s.provider {
            SmsProvider::Twilio(t) => {
                t.check(&what)?;
                Backend::Twilio(t)
            }
            SmsProvider::Http(g) => Backend::Http(Box::new(Gateway::new(&what, &g)?)),
        };
        let http = Outbound::new(s.timeout, s.proxy_url.as_ref()).map_err(|e| format!("{what}: {e}"))?;
        Ok(Self { segments: s.segments, rendering, backend, http, recipients })
    }

    /// The text of one delivery: the `sms` template, cut to the segments.
    pub fn text(&self, d: &Delivery) -> Result<String, SendError> {
        let text = self
            .rendering
            .render("sms", d)
            .map_err(|e| SendError::Permanent(format!("{}: {e}", self.recipients.what())))?;
        Ok(fit(&text, self.segments))
    }

    async fn send_one(&self, d: &Delivery, text: &str, index: usize, to: &str) -> Result<(), SendError> {
        let key = format!("{}-{index}", d.idempotency_key());
        match &self.backend {
            Backend::Twilio(t) => {
                let body = form_encode(&[("To", to), ("From", &t.from), ("Body", text)]);
                let req = self
                    .http
                    .post(&t.url("Messages"))
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(reqwest::header::AUTHORIZATION, t.authorization())
                    .header("I-Twilio-Idempotency-Token", key)
                    .body(body);
                send_request(req).await
            }
            Backend::Http(g) => {
                let tier = d.message.tier.as_str();
                let vars = Vars { to, text, tier, id: &d.message.id, idempotency_key: &key };
                let (body, headers) = g.render(&vars).map_err(SendError::Permanent)?;
                let mut req = self.http.request(g.method.clone(), &g.url).header("Idempotency-Key", &key);
                if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                    req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
                }
                for (k, v) in &headers {
                    let v = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|_| SendError::Permanent(format!("invalid value for header {k:?}")))?;
                    req = req.header(k.as_str(), v);
                }
                send_request(req.body(body)).await
            }
        }
    }

    async fn post(&self, d: &Delivery) -> Result<(), SendError> {
        let text = self.text(d)?;
        self.recipients.send_all(d, |i, to| self.send_one(d, &text, i, to)).await
    }
}

impl Notifier for SmsNotifier {
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.post(d))
    }
    fn health(&self) -> SendFuture<'_> {
        let url = match &self.backend {
            Backend::Twilio(t) => t.api_base.clone(),
            Backend::Http(g) => g.url.clone(),
        };
        Box::pin(async move { self.http.reachable(&url).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_single_segment() {
        let s = "a".repeat(160);
        assert_eq!(encoding(&s), Encoding::Gsm7);
        assert_eq!(fit(&s, 1), s);
        let long = "b".repeat(200);
        let f = fit(&long, 1);
        assert_eq!(f.chars().count(), 160);
        assert!(f.ends_with("..."), "{f}");
        assert_eq!(units(&f), 160);
        // Accented letters of the basic set stay GSM-7.
        assert_eq!(encoding("Zoë? Ça va @ 5€"), Encoding::Ucs2);
        assert_eq!(encoding("Ça va @ 5$ è é ü Ø"), Encoding::Gsm7);
    }

    #[test]
    fn extension_chars_count_two() {
        assert_eq!(units("{}[]~^|\\€"), 18);
        let s = "{".repeat(80);
        assert_eq!(units(&s), 160);
        assert_eq!(fit(&s, 1), s);
        let s = "{".repeat(81);
        let f = fit(&s, 1);
        assert!(units(&f) <= 160, "{}", units(&f));
        assert_eq!(f, format!("{}...", "{".repeat(78)));
        assert_eq!(segments(&"€".repeat(81)), 2);
    }

    #[test]
    fn ucs2_counts_utf16_units() {
        let s = "告警".repeat(35);
        assert_eq!(encoding(&s), Encoding::Ucs2);
        assert_eq!(fit(&s, 1), s);
        let s = format!("{s}!");
        let f = fit(&s, 1);
        assert_eq!(f.encode_utf16().count(), 70);
        assert!(f.ends_with('…'));
        // An astral character is two units and is never split.
        let s = "😀".repeat(40);
        let f = fit(&s, 1);
        assert!(f.encode_utf16().count() <= 70);
        assert_eq!(f, format!("{}…", "😀".repeat(34)));
    }

    #[test]
    fn multi_segment() {
        let s = "x".repeat(400);
        assert_eq!(segments(&s), 3);
        let f = fit(&s, 2);
        assert_eq!(f.len(), 306);
        assert!(f.ends_with("..."));
        assert_eq!(segments(&f), 2);
        assert_eq!(fit(&"x".repeat(306), 2), "x".repeat(306));
        let s = "警".repeat(250);
        let f = fit(&s, 3);
        assert_eq!(f.encode_utf16().count(), 201);
        assert_eq!(segments(&f), 3);
        // An extension char does not straddle two segments.
        let s = format!("{}{}", "a".repeat(152), "€".repeat(100));
        let f = fit(&s, 2);
        assert_eq!(segments(&f), 2);
        assert_eq!(f, format!("{}{}...", "a".repeat(152), "€".repeat(75)));
        // Zero segments means one.
        assert_eq!(fit(&"y".repeat(170), 0).len(), 160);
    }

    #[test]
    fn one_non_gsm_char_makes_it_all_ucs2() {
        let s = format!("{}告警", "a".repeat(200));
        assert_eq!(encoding(&s), Encoding::Ucs2);
        assert_eq!(fit(&s, 1), format!("{}…", "a".repeat(69)));
    }

    #[test]
    fn delivered_is_bounded() {
        let d = Delivered::new(2);
        d.insert("k1", "+1");
        d.insert("k2", "+1");
        d.insert("k2", "+2");
        assert!(d.contains("k1", "+1") && d.contains("k2", "+2"));
        d.insert("k3", "+1");
        assert!(!d.contains("k1", "+1"));
        assert!(d.contains("k2", "+1") && d.contains("k3", "+1"));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("To", "+8613800138000"), ("Body", "a b&c=d/é")]),
            "To=%2B8613800138000&Body=a+b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn e164() {
        assert!(is_e164("+8613800138000"));
        assert!(!is_e164("8613800138000"));
        assert!(!is_e164("+0123456789"));
        assert!(!is_e164("+1 555 0100"));
    }
}
