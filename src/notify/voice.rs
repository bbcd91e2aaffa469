//! The `voice` notifier: a phone call to every recipient, speaking the
//! `voice` template, through Twilio's Calls API (or a compatible one).
//!
//! For each recipient, `POST {api_base}/2010-04-01/Accounts/{sid}/Calls.json`
//! with a form-encoded `To`, `From` and `Twiml`, HTTP basic auth `sid:token`
//! and `I-Twilio-Idempotency-Token: <message id>-<channel>-<recipient index>`.
//! The TwiML is `<Response><Say>TEXT</Say></Response>` with the text
//! XML-escaped; with `repeat` (the default) the text is said twice with a
//! one-second pause between. A 2xx answer is a success, other statuses are
//! classed by [`super::http::status_error`], transport errors are
//! retryable. As for SMS, a retry after a partial failure only calls the
//! recipients not reached yet.

use super::http::{Outbound, ProxyUrl};
use super::sms::{Recipients, Twilio, form_encode, send_request};
use super::template::Rendering;
use super::{Delivery, Notifier, SendError, SendFuture};
use std::time::Duration;

/// Everything a [`VoiceNotifier`] is built from (plain data, read from the config).
#[derive(Debug, Clone)]
pub struct VoiceSettings {
    pub name: String,
    pub twilio: Twilio,
    /// Recipients, E.164.
    pub to: Vec<String>,
    /// Say the text twice, with a pause between (true unless set).
    pub repeat: bool,
    /// The `<Say language="…">` attribute (e.g. `en-US`, `zh-CN`); Twilio's default when unset.
    pub language: Option<String>,
    /// Bounds connecting and each request.
    pub timeout: Duration,
    /// The proxy to send through; `None`: the environment's
    /// (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
    pub proxy_url: Option<ProxyUrl>,
}

impl VoiceSettings {
    /// Repeated, Twilio's default language, a 10 s timeout.
    pub fn new(name: impl Into<String>, twilio: Twilio, to: Vec<String>) -> Self {
        Self {
            name: name.into(),
            twilio,
            to,
            repeat: true,
            language: None,
            timeout: Duration::from_secs(10),
            proxy_url: None,
        }
    }
}

/// Escapes the five XML special characters.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and newlines are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The TwiML that says `text` (once, or twice with a one-second pause).
pub fn twiml(text: &str, repeat: bool, language: Option<&str>) -> String {
    let lang = language.map(|l| format!(" language=\"{}\"", xml_escape(l))).unwrap_or_default();
    let say = format!("<Say{lang}>{}</Say>", xml_escape(text));
    if repeat {
        format!("<Response>{say}<Pause length=\"1\"/>{say}</Response>")
    } else {
        format!("<Response>{say}</Response>")
    }
}

/// Calls every recipient and says the message.
#[derive(Debug)]
pub struct VoiceNotifier {
    repeat: bool,
    language: Option<String>,
    twilio: Twilio,
    rendering: Rendering,
    http: Outbound,
    recipients: Recipients,
}

impl VoiceNotifier {
    /// Checks the settings (E.164 recipients, a positive timeout, the
    /// Twilio account) and builds the HTTP client.
    pub fn new(s: VoiceSettings, rendering: Rendering) -> Result<Self, String> {
        let what = format!("voice {}", s.name);
        let recipients = Recipients::new(what.clone(), s.to, s.timeout)?;
        s.twilio.check(&what)?;
        if let Some(l) = &s.language
            && (l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(format!("{what}: invalid language {l:?}"));
        }
        let http = Outbound::new(s.timeout, s.proxy_url.as_ref()).map_err(|e| format!("{what}: {e}"))?;
        Ok(Self { repeat: s.repeat, language: s.language, twilio: s.twilio, rendering, http, recipients })
    }

    /// The TwiML of one delivery: the `voice` template, said.
    pub fn twiml(&self, d: &Delivery) -> Result<String, SendError> {
        let text = self
            .rendering
            .render("voice", d)
            .map_err(|e| SendError::Permanent(format!("{}: {e}", self.recipients.what())))?;
        Ok(twiml(&text, self.repeat, self.language.as_deref()))
    }

    async fn call(&self, d: &Delivery, twiml: &str, index: usize, to: &str) -> Result<(), SendError> {
        let t = &self.twilio;
        let body = form_encode(&[("To", to), ("From", &t.from), ("Twiml", twiml)]);
        let req = self
            .http
            .post(&t.url("Calls"))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::AUTHORIZATION, t.authorization())
            .header("I-Twilio-Idempotency-Token", format!("{}-{index}", d.idempotency_key()))
            .body(body);
        send_request(req).await
    }

    async fn post(&self, d: &Delivery) -> Result<(), SendError> {
        let twiml = self.twiml(d)?;
        self.recipients.send_all(d, |i, to| self.call(d, &twiml, i, to)).await
    }
}

impl Notifier for VoiceNotifier {
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.post(d))
    }
    fn health(&self) -> SendFuture<'_> {
        Box::pin(self.http.reachable(&self.twilio.api_base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_is_escaped_and_repeated() {
        assert_eq!(twiml("a < b & \"c\"", false, None), "<Response><Say>a &lt; b &amp; &quot;c&quot;</Say></Response>");
        assert_eq!(
            twiml("hi", true, Some("en-US")),
            "<Response><Say language=\"en-US\">hi</Say><Pause length=\"1\"/><Say language=\"en-US\">hi</Say></Response>"
        );
    }
}
