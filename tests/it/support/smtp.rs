//! A real SMTP server process for the email tests: `smtp_server.py` beside this file (Python's aiosmtpd, Debian
//! package `python3-aiosmtpd`), STARTTLS, implicit TLS or plain, with AUTH; each message it accepts written as JSON
//! (envelope and parsed MIME) for the test to read.

use super::http::free_port;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "zkalert";
pub const PASSWORD: &str = "s3cret";

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
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    out: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start(tls_mode: &str, extra: &[&str]) -> SmtpServer {
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
    pub fn wait_messages(&self, n: usize) -> Vec<Value> {
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

    pub fn record(&self, i: usize) -> PathBuf {
        self.out.path().join(format!("{i}.json"))
    }

    /// The number of messages received so far.
    pub fn received(&self) -> usize {
        (1..).take_while(|i| self.record(*i).exists()).count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
