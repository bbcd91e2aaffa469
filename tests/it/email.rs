//! The email notifier against a real SMTP server process
//! (`tests/it/support/smtp_server.py`, Python's aiosmtpd, Debian package
//! `python3-aiosmtpd`): STARTTLS and implicit TLS with a self-signed
//! certificate, AUTH, the MIME structure and headers a mail client sees, and
//! the class of each kind of failure.

use crate::support::http::free_port;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zkalert::notify::email::{EmailNotifier, EmailSettings, Security};
use zkalert::notify::template::{Links, Rendering, Templates, samples};
use zkalert::notify::{Delivery, Notifier, SendError};

const USER: &str = "zkalert";
const PASSWORD: &str = "s3cret";
const RUNBOOK_URL: &str = "https://runbooks.example/zk/zookeeper/node-down.md";

/// A Python interpreter with aiosmtpd: `python3` from PATH, else the system
/// one (a pyenv or venv python does not see Debian's packages).
fn python() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("these tests need Python's aiosmtpd: apt-get install python3-aiosmtpd (or pip install aiosmtpd)")
}

/// A running `smtp_server.py`, killed on drop. It also exits by itself
/// when its standard input closes, i.e. when this test process dies.
struct SmtpServer {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
}

impl SmtpServer {
    fn start(tls_mode: &str, extra: &[&str]) -> SmtpServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/smtp_server.py");
        // A port taken by someone else between free_port() and the bind: try again.
        for _ in 0..3 {
            let out = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut child = Command::new(python())
                .arg(&script)
                .args(["--port", &port.to_string(), "--out"])
                .arg(out.path())
                .args(["--user", USER, "--password", PASSWORD, "--tls-mode", tls_mode])
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("cannot start the SMTP server");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.trim() == "READY");
                let _ = tx.send(ready);
            });
            let server = SmtpServer { child, port, out };
            if rx.recv_timeout(Duration::from_secs(15)) == Ok(true) {
                return server;
            }
        }
        panic!("the SMTP server did not start ({tls_mode} {extra:?})")
    }

    /// Waits (at most 5 s) until `n` messages were received, and returns
    /// their JSON records (envelope and parsed MIME) in order.
    fn wait_messages(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let count = (1..).take_while(|i| self.record(*i).exists()).count();
            if count >= n || Instant::now() >= deadline {
                assert_eq!(count, n, "messages received");
                return (1..=n)
                    .map(|i| serde_json::from_slice(&std::fs::read(self.record(i)).unwrap()).unwrap())
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn record(&self, i: usize) -> PathBuf {
        self.out.path().join(format!("{i}.json"))
    }

    /// The number of messages received so far.
    fn received(&self) -> usize {
        (1..).take_while(|i| self.record(*i).exists()).count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
