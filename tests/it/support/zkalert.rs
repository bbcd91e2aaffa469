//! The real `zkalert` binary against an ensemble: `zkalert run` with a
//! generated config whose `file` notifier writes JSON lines (read back as
//! [`Event`]s), and `zkalert probe`.

use super::process::{Watchdog, is_running, kill_and_reap, tail, wait_exit};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_zkalert");

/// Rule files and configs written for these tests.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ensemble").join(name)
}

/// Milliseconds since the Unix epoch (the clock zkalert stamps `at` with).
pub fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One alert of one line of the file notifier (`notify::message_json`): a
/// message lists its group's alerts; each becomes an event — `firing` for
/// alerts new in the message, `repeat` for those told before, `resolved`.
#[derive(Debug, Clone)]
pub struct Event {
    /// `at` in ms since the epoch.
    pub at_ms: i64,
    /// firing, resolved, escalated, deescalated.
    pub event: String,
    pub alertname: String,
    pub severity: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub runbook: Option<String>,
    pub raw: serde_json::Value,
}

impl Event {
    fn parse(line: &str) -> Result<Vec<Event>, String> {
        let message: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
        let at = message.get("at").and_then(|v| v.as_str()).ok_or_else(|| format!("no `at` in {line}"))?;
        let at_ms =
            chrono::DateTime::parse_from_rfc3339(at).map_err(|e| format!("bad `at` {at:?}: {e}"))?.timestamp_millis();
        let list = |k: &str| -> Result<Vec<serde_json::Value>, String> {
            message.get(k).and_then(|v| v.as_array()).cloned().ok_or_else(|| format!("no `{k}` list in {line}"))
        };
        let mut out = Vec::new();
        for (raw, resolved) in
            list("firing")?.into_iter().map(|a| (a, false)).chain(list("resolved")?.into_iter().map(|a| (a, true)))
        {
            let s = |k: &str| raw.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let map = |k: &str| -> BTreeMap<String, String> {
                raw.get(k)
                    .and_then(|v| v.as_object())
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from)))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let event = match (resolved, raw.get("new").and_then(|v| v.as_bool())) {
                (true, _) => "resolved",
                (false, Some(true)) => "firing",
                (false, _) => "repeat",
            };
            out.push(Event {
                at_ms,
                event: event.to_string(),
                alertname: s("alertname").ok_or_else(|| format!("no `alertname` in {line}"))?,
                severity: s("severity").unwrap_or_default(),
                fingerprint: s("fingerprint").unwrap_or_default(),
                labels: map("labels"),
                annotations: map("annotations"),
                value: raw.get("value").and_then(|v| v.as_f64()),
                runbook: s("runbook"),
                raw: raw.clone(),
            });
        }
        Ok(out)
    }

    pub fn instance(&self) -> Option<&str> {
        self.labels.get("instance").map(String::as_str)
    }

    pub fn is(&self, event: &str, alertname: &str) -> bool {
        self.event == event && self.alertname == alertname
    }

    /// `at` minus `t`, in ms (negative if before).
    pub fn ms_after(&self, t: SystemTime) -> i64 {
        self.at_ms - epoch_ms(t)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = chrono::DateTime::from_timestamp_millis(self.at_ms)
            .map_or_else(|| self.at_ms.to_string(), |t| t.format("%H:%M:%S%.3f").to_string());
        write!(f, "{at} {:<9} {} [{}]", self.event, self.alertname, self.severity)?;
        for (k, v) in &self.labels {
            if !matches!(k.as_str(), "alertname" | "severity") {
                write!(f, " {k}={v}")?;
            }
        }
        if let Some(v) = self.value {
            write!(f, " value={v}")?;
        }
        Ok(())
    }
}

/// The alerts still firing after a sequence of events (by fingerprint).
pub fn active(events: &[Event]) -> BTreeMap<String, Event> {
    let mut out = BTreeMap::new();
    for e in events {
        if e.event == "resolved" {
            out.remove(&e.fingerprint);
        } else {
            out.insert(e.fingerprint.clone(), e.clone());
        }
    }
    out
}

pub fn render(events: &[Event]) -> String {
    if events.is_empty() {
        return "  (no notifications)".into();
    }
    events.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

/// What `zkalert run` polls and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub cluster: String,
    pub nodes: Vec<String>,
    /// Rule files (absolute paths).
    pub rules: Vec<PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
    pub evaluation_interval: Duration,
}

impl RunConfig {
    /// Poll every 2 s with a 1 s timeout, evaluate every second.
    pub fn new(nodes: Vec<String>, rules: &[&str]) -> RunConfig {
        RunConfig {
            cluster: "test".into(),
            nodes,
            rules: rules.iter().map(|r| fixture(r)).collect(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            evaluation_interval: Duration::from_secs(1),
        }
    }

    fn yaml(&self) -> String {
        let d = |d: Duration| match d.as_millis() {
            ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        };
        let mut y = format!("evaluation_interval: {}\ndata_dir: zkalert-data\nrules:\n", d(self.evaluation_interval));
        for r in &self.rules {
            y.push_str(&format!("  - {}\n", yaml_str(&r.display().to_string())));
        }
        y.push_str(&format!("sources:\n  - type: zookeeper\n    cluster: {}\n    nodes:\n", yaml_str(&self.cluster)));
        for n in &self.nodes {
            y.push_str(&format!("      - {}\n", yaml_str(n)));
        }
        y.push_str(&format!("    interval: {}\n    timeout: {}\n", d(self.interval), d(self.timeout)));
        y.push_str("notifiers:\n  - name: events\n    type: file\n    path: notifications.jsonl\n");
        // Every tier told at once, so the tests time the engine, not the
        // seed's group waits; no digest.
        y.push_str("routing:\n  tiers:\n");
        y.push_str(&tiers_to("events", "1h"));
        y
    }
}

/// A YAML single-quoted scalar (no escapes but `''`).
fn yaml_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `zkalert run -c config.yaml` as a child process, killed on drop.
pub struct ZkalertRun {
    child: Option<Child>,
    _watchdog: Option<Watchdog>,
    pub config: RunConfig,
    pub notifications: PathBuf,
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

impl ZkalertRun {
    pub fn start(config: RunConfig) -> ZkalertRun {
        let yaml = config.yaml();
        Self::start_yaml(config, &yaml, &[])
    }

    /// `zkalert run` with a config written by the test (its file notifier
    /// must write `notifications.jsonl`); `files` are written beside it.
    pub fn start_yaml(config: RunConfig, yaml: &str, files: &[(&str, &str)]) -> ZkalertRun {
        let dir = tempfile::Builder::new().prefix("zkalert-run-").tempdir().expect("create temp dir");
        std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
        for (name, text) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create a directory beside the config");
            }
            std::fs::write(path, text).expect("write file beside the config");
        }
        let log = dir.path().join("zkalert.log");
        let notifications = dir.path().join("notifications.jsonl");
        let mut run = ZkalertRun { child: None, _watchdog: None, config, notifications, log, dir };
        run.spawn();
        run
    }

    fn spawn(&mut self) {
        let config_path = self.dir.path().join("config.yaml");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open zkalert.log");
        let err = out.try_clone().expect("clone log handle");
        // Benchmarks run a release build (benches/*.sh set it).
        let bin = std::env::var_os("ZKALERT_BENCH_BIN").unwrap_or_else(|| BIN.into());
        let child = Command::new(bin)
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .current_dir(self.dir.path())
            .env("ZKALERT_LOG", "info")
            .env_remove("ZKALERT_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start zkalert run");
        self._watchdog = Watchdog::spawn(child.id(), &config_path.to_string_lossy());
        self.child = Some(child);
    }

    /// SIGKILL (no chance to flush or shut down), then start again on the
    /// same config and data directory.
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        self._watchdog = None;
        self.spawn();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The running process's id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("zkalert run was stopped").id()
    }

    /// Every complete notification line so far.
    pub fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(&self.notifications).unwrap_or_default();
        // A line still being written has no newline yet: skip it.
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .flat_map(|l| Event::parse(l).unwrap_or_else(|e| panic!("unparsable notification: {e}")))
            .collect()
    }

    /// Panics (with zkalert's log) if the process has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("zkalert run was stopped");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("zkalert run exited ({status}); its log:\n{}", tail(&self.log, 40));
        }
    }

    /// Waits (polling the file every 100 ms) for the first event matching
    /// `pred`; panics with every notification and zkalert's log after
    /// `timeout`. Returns the event and when it was seen.
    pub fn wait_event(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Event) -> bool) -> (Event, Instant) {
        let t0 = Instant::now();
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return (e, Instant::now());
            }
            self.assert_running();
            if t0.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; notifications so far:\n{}\nzkalert log:\n{}",
                    render(&self.events()),
                    tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until no alert (except those `ignore` accepts) is active and
    /// none has been for `quiet`; returns the events. Panics after `timeout`.
    pub fn wait_quiet(&mut self, timeout: Duration, quiet: Duration, ignore: impl Fn(&Event) -> bool) -> Vec<Event> {
        let t0 = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        loop {
            self.assert_running();
            let events = self.events();
            let still: Vec<Event> = active(&events).into_values().filter(|e| !ignore(e)).collect();
            if still.is_empty() {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= quiet {
                    return events;
                }
            } else {
                quiet_since = None;
            }
            if t0.elapsed() >= timeout {
                panic!(
                    "alerts still active after {timeout:?}:\n{}\nall notifications:\n{}\nzkalert log:\n{}",
                    render(&still),
                    render(&events),
                    tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of zkalert's own log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for ZkalertRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if std::thread::panicking() {
                eprintln!(
                    "zkalert run at failure; notifications:\n{}\nlog:\n{}",
                    render(&self.events()),
                    tail(&self.log, 20)
                );
            }
            if is_running(&mut child) {
                // A clean shutdown first (SIGTERM is handled), then SIGKILL.
                super::process::signal(child.id(), "TERM");
                if !wait_exit(&mut child, Duration::from_secs(3)) {
                    kill_and_reap(&mut child);
                }
            }
        }
    }
}

/// What `zkalert probe` printed and returned.
#[derive(Debug)]
pub struct ProbeOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ProbeOutput {
    /// The node table: the header, then one row per node. Cells are
    /// separated by two or more spaces (cells themselves hold single spaces,
    /// as in `not serving` or `LAT avg/max ms`).
    pub fn table(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect())
            .collect()
    }

    /// The row of one node (`127.0.0.1:PORT`), by the NODE column.
    pub fn row(&self, instance: &str) -> Option<Vec<String>> {
        self.table().into_iter().skip(1).find(|r| r.first().is_some_and(|c| c == instance))
    }
}

impl fmt::Display for ProbeOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit {:?} after {:?}\n{}{}", self.code, self.elapsed, self.stdout, self.stderr)
    }
}

/// Runs `zkalert probe NODES --timeout TIMEOUT`; killed if it takes longer
/// than `timeout` + 20 s.
pub fn probe(nodes: &[String], timeout: &str) -> ProbeOutput {
    let dir = tempfile::Builder::new().prefix("zkalert-probe-").tempdir().expect("create temp dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .arg("probe")
        .arg(nodes.join(","))
        .arg("--timeout")
        .arg(timeout)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .expect("start zkalert probe");
    let limit = humantime_secs(timeout) + Duration::from_secs(20);
    let deadline = t0 + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let elapsed = t0.elapsed();
    let status = status.unwrap_or_else(|| panic!("zkalert probe still running after {limit:?}: killed"));
    ProbeOutput {
        code: status.code(),
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
        elapsed,
    }
}

/// `"1s"`, `"500ms"` → a duration (only what these tests pass).
fn humantime_secs(s: &str) -> Duration {
    if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse().expect("timeout in ms"))
    } else if let Some(secs) = s.strip_suffix('s') {
        Duration::from_secs_f64(secs.parse().expect("timeout in s"))
    } else {
        panic!("unsupported duration {s:?}")
    }
}

/// A rule file whose one rule, `NodeDown` (P1, summary `node <node> is
/// down`), fires for each `svc_up{node=…}` at 0 that a
/// [`http::MetricsServer`](super::http::MetricsServer) serves; `extra` is
/// appended to the rule (e.g. a `runbook:` line).
pub fn svc_down_rules(extra: &str) -> String {
    format!(
        "groups:
  - name: svc
    interval: 1s
    rules:
      - alert: NodeDown
        expr: svc_up == 0
        severity: P1
        annotations:
          summary: 'node {{{{ labels.node }}}} is down'
{extra}"
    )
}

/// A config that polls the metrics server on `metrics_port` every second
/// (cluster `c`, instance `svc`), evaluates `rules.yaml` and pages the file
/// notifier `pages` (`notifications.jsonl`); `rest` follows (routing,
/// server, links).
pub fn svc_config(metrics_port: u16, rest: &str) -> String {
    format!(
        "evaluation_interval: 1s
data_dir: data
rules: [rules.yaml]
sources:
  - {{type: prometheus, url: 'http://127.0.0.1:{metrics_port}/metrics', cluster: c, instance: svc, interval: 1s, timeout: 500ms}}
notifiers:
  - {{name: pages, type: file, path: notifications.jsonl}}
{rest}"
    )
}

/// The four tiers of a `routing: tiers:` block, each to `channel` at once
/// (no group wait, group interval 1 s), repeating every `repeat_interval`,
/// no digest.
pub fn tiers_to(channel: &str, repeat_interval: &str) -> String {
    ["P0", "P1", "P2", "P3"]
        .iter()
        .map(|tier| {
            format!(
                "    {tier}: {{channels: [{channel}], group_wait: 0s, group_interval: 1s, repeat_interval: {repeat_interval}, digest: 'off'}}\n"
            )
        })
        .collect()
}

/// `zkalert ARGS --url URL AUTH…` as the on-call types it (`AUTH`: `--token T` or `--token-file F`); its standard
/// output, or the test fails with what it printed.
pub fn client(url: &str, auth: [&std::ffi::OsStr; 2], args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--url")
        .arg(url)
        .args(auth)
        .env_remove("ZKALERT_TOKEN")
        .output()
        .expect("run the zkalert client");
    assert!(
        out.status.success(),
        "zkalert {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
