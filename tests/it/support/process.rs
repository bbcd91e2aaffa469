//! Child processes started by the tests: signals through the `kill` command,
//! bounded waits, and a watchdog that kills a child once the test process is
//! gone (so not even a test binary killed by SIGKILL leaves a JVM behind).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sends `sig` (`STOP`, `CONT`, `TERM`, `KILL`, ...) to `pid` with kill(1).
/// Only ever called with the pid of a child we have not reaped yet, so the
/// pid cannot have been recycled.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the child is still running (a stopped child counts as running).
/// Reaps it if it has exited.
pub fn is_running(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

/// Waits at most `timeout` for the child to exit; true once it has (reaped).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends a child for good: SIGCONT first (so a SIGSTOPped child is never left
/// stopped), then SIGKILL, then reap it, waiting at most 10 s.
pub fn kill_and_reap(child: &mut Child) {
    if is_running(child) {
        signal(child.id(), "CONT");
        signal(child.id(), "KILL");
        if !wait_exit(child, Duration::from_secs(10)) {
            eprintln!("support: pid {} did not exit within 10 s of SIGKILL", child.id());
        }
    }
}

/// A `sh` loop that SIGKILLs one child once this test process has died
/// (checked every 0.5 s), provided the pid still runs a command line
/// containing `marker` (so a recycled pid is never killed). Dropping the
/// watchdog stops it.
pub struct Watchdog(Child);

const WATCHDOG_SCRIPT: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
if tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null | grep -qF -- "$3"; then kill -9 "$2"; fi
"#;

impl Watchdog {
    pub fn spawn(pid: u32, marker: &str) -> Option<Watchdog> {
        Command::new("sh")
            .args(["-c", WATCHDOG_SCRIPT, "zkalert-test-watchdog"])
            .arg(std::process::id().to_string())
            .arg(pid.to_string())
            .arg(marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("support: cannot start a watchdog for pid {pid}: {e}"))
            .ok()
            .map(Watchdog)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        wait_exit(&mut self.0, Duration::from_secs(5));
    }
}

/// The last `n` lines of a file (empty if it does not exist).
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `done` every 50 ms; panics with `context()` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(50));
    }
}
