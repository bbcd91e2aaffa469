//! The email notifier against a real SMTP server process
//! (`tests/it/support/smtp_server.py`, Python's aiosmtpd, Debian package
//! `python3-aiosmtpd`): STARTTLS and implicit TLS with a self-signed
//! certificate, AUTH, the MIME structure and headers a mail client sees, and
//! the class of each kind of failure.

use crate::support::http::free_port;
use crate::support::smtp::{PASSWORD, SmtpServer, USER};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use zkalert::notify::email::{EmailNotifier, EmailSettings, Security};
use zkalert::notify::template::{Links, Rendering, Templates, samples};
use zkalert::notify::{Delivery, Notifier, SendError};

const RUNBOOK_URL: &str = "https://runbooks.example/zk/zookeeper/node-down.md";

fn settings(port: u16, security: Security) -> EmailSettings {
    let mut s = EmailSettings::new(
        "mail",
        "localhost",
        "zkalert <zkalert@example.com>",
        vec!["oncall@example.com".into(), "Ops Team <ops@example.com>".into()],
    );
    s.port = port;
    s.security = security;
    s.username = Some(USER.into());
    s.password = Some(PASSWORD.into());
    s.timeout = Duration::from_secs(5);
    s.hello_name = Some("zkalert.test".into());
    s.accept_invalid_certs = true;
    s
}

fn notifier(s: EmailSettings) -> EmailNotifier {
    let links = Links { runbook_base_url: Some("https://runbooks.example/zk".into()), ..Links::default() };
    EmailNotifier::new(s, Rendering::new(Arc::new(Templates::builtin()), links)).unwrap()
}

fn delivery() -> Delivery {
    Delivery { message: Arc::new(samples().remove(0)), channel: "mail".into() }
}

/// Sends, bounded in time.
async fn send(n: &EmailNotifier, d: &Delivery) -> Result<(), SendError> {
    tokio::time::timeout(Duration::from_secs(10), n.send(d)).await.expect("send did not finish within 10 s")
}

fn header<'a>(record: &'a Value, name: &str) -> &'a str {
    record["message"]["headers"][name].as_str().unwrap_or_else(|| panic!("no {name} header in {record:#}"))
}

/// The whole message as a receiver sees it.
fn check_message(record: &Value, d: &Delivery) {
    assert_eq!(record["mail_from"], "zkalert@example.com");
    assert_eq!(record["rcpt_tos"], serde_json::json!(["oncall@example.com", "ops@example.com"]));
    assert_eq!(header(record, "from"), "zkalert <zkalert@example.com>");
    let to = header(record, "to");
    assert!(to.contains("oncall@example.com") && to.contains("Ops Team <ops@example.com>"), "{to}");
    let subject = header(record, "subject");
    assert!(subject.starts_with("[P1] ZkNodeDown"), "{subject}");
    let m = &d.message;
    assert_eq!(header(record, "message-id"), format!("<{}.mail@zkalert>", m.id));
    let group = format!("<group-{}@zkalert>", m.group_id);
    assert_eq!(header(record, "in-reply-to"), group);
    assert_eq!(header(record, "references"), group);
    assert_eq!(header(record, "x-zkalert-idempotency-key"), d.idempotency_key());
    assert_eq!(record["message"]["content_type"], "multipart/alternative");
    let parts = record["message"]["parts"].as_array().unwrap();
    let types: Vec<&str> = parts.iter().map(|p| p["content_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    for p in parts {
        // minijinja's HTML escaping writes `/` as `&#x2f;`.
        let text = p["text"].as_str().unwrap().replace("&#x2f;", "/");
        assert!(text.contains(RUNBOOK_URL), "no runbook link in {text}");
        assert!(text.contains("ZkNodeDown"), "{text}");
    }
    let html = parts[1]["text"].as_str().unwrap().replace("&#x2f;", "/");
    assert!(html.contains(&format!("href=\"{RUNBOOK_URL}\"")), "{html}");
}

#[tokio::test]
async fn starttls_with_auth_delivers_one_multipart_message() {
    let server = SmtpServer::start("starttls", &[]);
    let n = notifier(settings(server.port, Security::StartTls));
    let d = delivery();
    send(&n, &d).await.unwrap();
    let records = server.wait_messages(1);
    check_message(&records[0], &d);
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers() {
    let server = SmtpServer::start("implicit", &[]);
    let n = notifier(settings(server.port, Security::Tls));
    let d = delivery();
    send(&n, &d).await.unwrap();
    check_message(&server.wait_messages(1)[0], &d);
}

#[tokio::test]
async fn wrong_password_is_permanent() {
    let server = SmtpServer::start("starttls", &[]);
    let mut s = settings(server.port, Security::StartTls);
    s.password = Some("wrong".into());
    match send(&notifier(s), &delivery()).await {
        Err(SendError::Permanent(e)) => assert!(e.contains("535"), "{e}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(server.received(), 0);
}

#[tokio::test]
async fn transient_answer_is_retryable_then_the_retry_succeeds() {
    let server = SmtpServer::start("starttls", &["--fail-first", "1", "--fail-code", "451"]);
    let n = notifier(settings(server.port, Security::StartTls));
    let d = delivery();
    match send(&n, &d).await {
        Err(SendError::Retryable(e)) => assert!(e.contains("451"), "{e}"),
        other => panic!("expected a retryable error, got {other:?}"),
    }
    assert_eq!(server.received(), 0);
    send(&n, &d).await.unwrap();
    check_message(&server.wait_messages(1)[0], &d);
}

#[tokio::test]
async fn permanent_answer_is_permanent() {
    let server = SmtpServer::start("starttls", &["--fail-first", "1", "--fail-code", "554"]);
    match send(&notifier(settings(server.port, Security::StartTls)), &delivery()).await {
        Err(SendError::Permanent(e)) => assert!(e.contains("554"), "{e}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let port = free_port();
    for security in [Security::StartTls, Security::Tls, Security::Plain] {
        match send(&notifier(settings(port, security)), &delivery()).await {
            Err(SendError::Retryable(_)) => {}
            other => panic!("{security:?}: expected a retryable error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn server_without_starttls_is_permanent_for_starttls() {
    // Plain server: STARTTLS is required by the settings but not offered.
    let server = SmtpServer::start("none", &[]);
    match send(&notifier(settings(server.port, Security::StartTls)), &delivery()).await {
        Err(SendError::Permanent(e)) => assert!(e.to_lowercase().contains("starttls"), "{e}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
}
