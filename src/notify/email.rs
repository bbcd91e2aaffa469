//! The `email` notifier: each delivery sent over SMTP (lettre's async tokio
//! transport, TLS by rustls on the ring provider) as one
//! `multipart/alternative` message rendered with the `subject`, `text` and
//! `html` templates.
//!
//! Headers: `From`, `To` (every recipient), `Subject`, `Message-ID:
//! <{message id}.{channel}@zkalert>`, `In-Reply-To` and `References:
//! <group-{group_id}@zkalert>` (so mail clients thread the repeats,
//! escalations and resolution of one group together) and
//! `X-Zkalert-Idempotency-Key: {message id}-{channel}` (the same on every
//! retry of one delivery).
//!
//! Error classes: SMTP 4xx answers, connection errors, timeouts and TLS
//! failures are retryable; SMTP 5xx answers (a refused login, a refused
//! recipient), a server lacking what the settings require (STARTTLS, a
//! common AUTH mechanism) and template errors are permanent.

use super::template::Rendering;
use super::{Delivery, Notifier, SendError, SendFuture};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Plain connection upgraded with `STARTTLS`, which is required (usually port 587).
    #[default]
    StartTls,
    /// Implicit TLS from the first byte ("SMTPS", usually port 465).
    Tls,
    /// No encryption at all: only for a relay on localhost or a trusted network.
    Plain,
}

impl Security {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::StartTls => "starttls",
            Security::Tls => "tls",
            Security::Plain => "plain",
        }
    }

    /// Parses a config name (`ssl` and `smtps` are accepted for `tls`, `none` for `plain`).
    pub fn parse(s: &str) -> Option<Security> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Some(Security::StartTls),
            "tls" | "ssl" | "smtps" => Some(Security::Tls),
            "plain" | "none" => Some(Security::Plain),
            _ => None,
        }
    }

    /// The usual port of the security mode.
    pub fn default_port(self) -> u16 {
        match self {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::Plain => 25,
        }
    }
}

/// Everything an [`EmailNotifier`] is built from (plain data, read from the config).
#[derive(Clone)]
pub struct EmailSettings {
    pub name: String,
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Both or neither: `AUTH` (PLAIN or LOGIN) is used when set.
    pub username: Option<String>,
    pub password: Option<String>,
    /// `From` address, e.g. `zkalert <zkalert@example.com>`.
    pub from: String,
    /// `To` addresses: at least one.
    pub to: Vec<String>,
    /// Bounds connecting and each SMTP command.
    pub timeout: Duration,
    /// The name given in `EHLO` (default `localhost`).
    pub hello_name: Option<String>,
    /// Accepts any server certificate (self-signed, expired, wrong name).
    /// Only for tests and local relays: it removes the protection TLS gives
    /// against a man in the middle, password included.
    pub accept_invalid_certs: bool,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("timeout", &self.timeout)
            .field("hello_name", &self.hello_name)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

impl EmailSettings {
    /// Settings with STARTTLS on port 587, no login and a 10 s timeout.
    pub fn new(name: impl Into<String>, host: impl Into<String>, from: impl Into<String>, to: Vec<String>) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            port: Security::StartTls.default_port(),
            security: Security::StartTls,
            username: None,
            password: None,
            from: from.into(),
            to,
            timeout: Duration::from_secs(10),
            hello_name: None,
            accept_invalid_certs: false,
        }
    }
}

/// Sends each delivery as an email over SMTP.
pub struct EmailNotifier {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    rendering: Rendering,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("name", &self.name)
            .field("from", &self.from.to_string())
            .field("to", &self.to.iter().map(ToString::to_string).collect::<Vec<_>>())
            .finish()
    }
}

impl EmailNotifier {
    /// Checks the settings (a host, valid addresses, at least one recipient,
    /// a username and password given together, a non-zero timeout) and
    /// builds the SMTP transport (no connection is made yet).
    pub fn new(s: EmailSettings, rendering: Rendering) -> Result<Self, String> {
        let name = &s.name;
        let host = s.host.trim();
        if host.is_empty() {
            return Err(format!("email {name}: host is empty"));
        }
        if s.port == 0 {
            return Err(format!("email {name}: port must not be 0"));
        }
        if s.timeout.is_zero() {
            return Err(format!("email {name}: timeout must be positive"));
        }
        let from: Mailbox =
            s.from.trim().parse().map_err(|e| format!("email {name}: invalid from address {:?}: {e}", s.from))?;
        if s.to.is_empty() {
            return Err(format!("email {name}: no recipient (to)"));
        }
        let to = s
            .to
            .iter()
            .map(|a| a.trim().parse::<Mailbox>().map_err(|e| format!("email {name}: invalid to address {a:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;

        let tls_parameters = || {
            TlsParameters::builder(host.to_string())
                .dangerous_accept_invalid_certs(s.accept_invalid_certs)
                .dangerous_accept_invalid_hostnames(s.accept_invalid_certs)
                .build_rustls()
                .map_err(|e| format!("email {name}: TLS settings: {e}"))
        };
        let tls = match s.security {
            Security::StartTls => Tls::Required(tls_parameters()?),
            Security::Tls => Tls::Wrapper(tls_parameters()?),
            Security::Plain => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(s.port)
            .tls(tls)
            .timeout(Some(s.timeout));
        if let Some(hello) = s.hello_name.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
            builder = builder.hello_name(ClientId::Domain(hello.to_string()));
        }
        match (s.username, s.password) {
            (Some(user), Some(password)) => builder = builder.credentials(Credentials::new(user, password)),
            (None, None) => {}
            _ => return Err(format!("email {name}: username and password must be given together")),
        }
        Ok(Self { name: s.name, from, to, rendering, transport: builder.build() })
    }

    /// The email for one delivery (public so tests and `zkalert check` can
    /// look at it without a server).
    pub fn build_message(&self, d: &Delivery) -> Result<lettre::Message, SendError> {
        // A broken template is a config error: retrying cannot fix it.
        let render = |t: &str| self.rendering.render(t, d).map_err(|e| SendError::Permanent(e.to_string()));
        let subject = render("subject")?.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = render("text")?;
        let html = render("html")?;

        let group_ref = format!("<group-{}@zkalert>", msg_id_part(&d.message.group_id));
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id(d)))
            .in_reply_to(group_ref.clone())
            .references(group_ref)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Zkalert-Idempotency-Key"),
                d.idempotency_key(),
            ));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
            )
            .map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))
    }
}

impl EmailNotifier {
    /// The notifier's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The email of a report (`report::render`): its subject, text and HTML as alternatives; `id` names it (the
    /// same on retries, so a mail client shows a retried report once).
    pub fn report_message(&self, id: &str, r: &crate::report::render::Rendered) -> Result<lettre::Message, SendError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(r.subject.clone())
            .message_id(Some(format!("<{}.{}@zkalert>", msg_id_part(id), msg_id_part(&self.name))));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(r.text.clone()))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(r.html.clone())),
            )
            .map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))
    }

    /// Sends a report (one attempt; the caller bounds it in time and retries).
    pub async fn send_report(&self, id: &str, r: &crate::report::render::Rendered) -> Result<(), SendError> {
        let email = self.report_message(id, r)?;
        self.transport.send(email).await.map(drop).map_err(|e| classify(&e))
    }
}

/// `<{message id}.{channel}@zkalert>`: unique per delivery, the same on retries.
pub fn message_id(d: &Delivery) -> String {
    format!("<{}.{}@zkalert>", msg_id_part(&d.message.id), msg_id_part(&d.channel))
}

/// Keeps a value usable inside a `Message-ID` (RFC 5322 dot-atom text):
/// anything but letters, digits and `-_.+=` becomes `_`.
fn msg_id_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.+=".contains(c) { c } else { '_' }).collect()
}

/// The class of an SMTP failure.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let text = format!("SMTP: {e}");
    if e.is_permanent() || e.is_client() { SendError::Permanent(text) } else { SendError::Retryable(text) }
}

impl Notifier for EmailNotifier {
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(async move {
            let email = self.build_message(d)?;
            self.transport.send(email).await.map(drop).map_err(|e| classify(&e))
        })
    }
    fn health(&self) -> SendFuture<'_> {
        Box::pin(async move {
            match self.transport.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(SendError::Retryable("the SMTP server did not answer NOOP".into())),
                Err(e) => Err(classify(&e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::template::samples;
    use std::sync::Arc;

    fn settings() -> EmailSettings {
        EmailSettings::new(
            "mail",
            "smtp.example.com",
            "zkalert <zkalert@example.com>",
            vec!["oncall@example.com".into(), "Ops <ops@example.com>".into()],
        )
    }

    fn notifier(s: EmailSettings) -> Result<EmailNotifier, String> {
        EmailNotifier::new(s, Rendering::builtin())
    }

    #[test]
    fn settings_are_checked() {
        assert!(notifier(settings()).is_ok());
        let mut s = settings();
        s.to.clear();
        assert!(notifier(s).unwrap_err().contains("no recipient"));
        let mut s = settings();
        s.to.push("not an address".into());
        assert!(notifier(s).unwrap_err().contains("invalid to address"));
        let mut s = settings();
        s.from = "nobody".into();
        assert!(notifier(s).unwrap_err().contains("invalid from address"));
        let mut s = settings();
        s.username = Some("u".into());
        assert!(notifier(s).unwrap_err().contains("together"));
        let mut s = settings();
        s.timeout = Duration::ZERO;
        assert!(notifier(s).is_err());
        let mut s = settings();
        s.password = Some("secret".into());
        s.username = Some("u".into());
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn security_names() {
        for s in [Security::StartTls, Security::Tls, Security::Plain] {
            assert_eq!(Security::parse(s.as_str()), Some(s));
        }
        assert_eq!(Security::parse("SMTPS"), Some(Security::Tls));
        assert_eq!(Security::parse("x"), None);
    }

    #[test]
    fn message_headers() {
        let n = notifier(settings()).unwrap();
        let m = Arc::new(samples().remove(0));
        let d = Delivery { message: m.clone(), channel: "mail ops".into() };
        let raw = String::from_utf8(n.build_message(&d).unwrap().formatted()).unwrap();
        let group = format!("<group-{}@zkalert>", m.group_id);
        assert!(raw.contains(&format!("Message-ID: <{}.mail_ops@zkalert>", m.id)), "{raw}");
        assert!(raw.contains(&format!("In-Reply-To: {group}")), "{raw}");
        assert!(raw.contains(&format!("References: {group}")), "{raw}");
        assert!(raw.contains(&format!("X-Zkalert-Idempotency-Key: {}-mail ops", m.id)), "{raw}");
        assert!(raw.contains("Subject: [P1]"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
    }
}
