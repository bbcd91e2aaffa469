//! The notification pipeline in the real binary: `zkalert run` polling a
//! Prometheus text endpoint served by the test, its file notifier, its
//! SQLite state under `data_dir`, and its HTTP API driven by the `zkalert`
//! CLI. Crash safety is tested with SIGKILL at many points of the cycle.

use crate::support;
use crate::support::http::free_port;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::http::MetricsServer;
use support::zkalert::{Event, RunConfig, ZkalertRun, render};

/// The one rule: NodeDown when a node's `svc_up` is 0.
static RULES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    support::zkalert::svc_down_rules("        runbook: https://runbooks.example.com/node-down\n")
});

fn config(metrics_port: u16, extra: &str) -> String {
    format!(
        "evaluation_interval: 1s
data_dir: data
rules: [rules.yaml]
sources:
  - type: prometheus
    url: http://127.0.0.1:{metrics_port}/metrics
    cluster: c
    instance: svc
    interval: 1s
    timeout: 500ms
notifiers:
  - name: pages
    type: file
    path: notifications.jsonl
routing:
  group_by: [alertname, node]
  tiers:
    P1: {{channels: [pages], group_wait: 0s, group_interval: 1s, repeat_interval: 1h, respond_within: 1h, escalate_to: [pages]}}
{extra}"
    )
}

fn node_events(events: &[Event]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.alertname == "NodeDown") {
        out.entry(e.labels.get("node").cloned().unwrap_or_default()).or_default().push(e.event.clone());
    }
    out
}

fn wait_for(run: &mut ZkalertRun, what: &str, timeout: Duration, done: impl Fn(&[Event]) -> bool) {
    let t0 = Instant::now();
    loop {
        let events = run.events();
        if done(&events) {
            return;
        }
        run.assert_running();
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; notifications:\n{}\nlog:\n{}",
            render(&events),
            run.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills `zkalert run` with SIGKILL at many points while ten nodes go down
/// and come back one by one: between a change and its evaluation, between
/// the state commit and the send, right after the send. Every node must
/// be paged exactly once as firing and once as resolved, in that order.
#[test]
fn sigkill_loses_no_page_and_repeats_none() {
    const NODES: usize = 10;
    let metrics = MetricsServer::start();
    let mut down = [false; NODES];
    metrics.set(&down);
    let yaml = config(metrics.port, "");
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &[("rules.yaml", RULES.as_str())]);
    std::thread::sleep(Duration::from_millis(1500));
    let mut kills = 0;
    // Delays before the kill spread over one poll + evaluation cycle.
    let delays = [0u64, 150, 300, 450, 600, 750, 900, 1050, 1200, 1350];
    for phase in [true, false] {
        for (i, delay) in delays.iter().enumerate() {
            down[i] = phase;
            metrics.set(&down);
            std::thread::sleep(Duration::from_millis(*delay));
            run.kill9_and_restart();
            kills += 1;
        }
        let want = if phase { "firing" } else { "resolved" };
        wait_for(&mut run, &format!("every node {want}"), Duration::from_secs(60), |events| {
            let by_node = node_events(events);
            (0..NODES).all(|i| by_node.get(&format!("n{i}")).is_some_and(|e| e.iter().any(|x| x == want)))
        });
    }
    // Let a few more cycles run: nothing else may arrive.
    std::thread::sleep(Duration::from_secs(3));
    let events = run.events();
    let by_node = node_events(&events);
    for i in 0..NODES {
        let seq = by_node.get(&format!("n{i}")).cloned().unwrap_or_default();
        assert_eq!(
            seq,
            ["firing", "resolved"],
            "node n{i} after {kills} SIGKILLs: every transition paged exactly once; all notifications:\n{}\nlog:\n{}",
            render(&events),
            run.log_tail(60)
        );
    }
    // Some kills land before start-up finished (the 0 ms delay): most
    // starts must have restored the state file.
    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    let restores = log.matches("state restored").count();
    assert!(restores >= kills / 2, "{restores} of {kills} restarts restored the state file");
}

/// `zkalert <args>` as the on-call would type it; panics on failure.
fn cli(url: &str, token_file: &std::path::Path, args: &[&str]) -> String {
    support::zkalert::client(url, ["--token-file".as_ref(), token_file.as_os_str()], args)
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the API");
    write!(conn, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// The NodeDown alert of node n0 as `zkalert alerts --json` shows it.
fn n0_alert(url: &str, token_file: &std::path::Path) -> serde_json::Value {
    let out = cli(url, token_file, &["alerts", "--all", "--json", "--filter", r#"{node="n0"}"#]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("alerts --json: {e}: {out}"));
    let alerts = v.get("alerts").and_then(|a| a.as_array()).cloned().unwrap_or_default();
    assert_eq!(alerts.len(), 1, "one alert for n0: {out}");
    alerts[0].clone()
}

/// Repeat pages for n0 that arrive during `d`.
fn repeats_during(run: &ZkalertRun, d: Duration) -> usize {
    let before = run.events().len();
    std::thread::sleep(d);
    run.events()[before..].iter().filter(|e| e.event == "repeat").count()
}

/// The on-call's round trip against a running `zkalert run`: the alert is
/// listed with its runbook; a silence marks it silenced and stops its
/// repeats; expiring it brings them back; an ack stops them again.
#[test]
fn api_and_cli_silence_expire_and_ack() {
    let metrics = MetricsServer::start();
    metrics.set(&[true]);
    let api_port = free_port();
    let url = format!("http://127.0.0.1:{api_port}");
    let extra = format!("server:\n  listen: 127.0.0.1:{api_port}\n  token_file: token.txt\n");
    // Repeat every 2 s, so "repeats stop" is seen in seconds.
    let yaml = config(metrics.port, &extra).replace("repeat_interval: 1h", "repeat_interval: 2s");
    let token = "s3cret-token-for-the-test";
    let mut run = ZkalertRun::start_yaml(
        RunConfig::new(Vec::new(), &[]),
        &yaml,
        &[("rules.yaml", RULES.as_str()), ("token.txt", token)],
    );
    let token_file = run.dir().join("token.txt");
    wait_for(&mut run, "n0 firing", Duration::from_secs(20), |events| {
        events.iter().any(|e| e.is("firing", "NodeDown"))
    });
    assert_eq!(http_get(api_port, "/-/healthy").0, 200);
    assert_eq!(http_get(api_port, "/-/ready").0, 200);

    let alert = n0_alert(&url, &token_file);
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["tier"], "P1");
    assert_eq!(alert["runbook"], "https://runbooks.example.com/node-down");
    assert_eq!(alert["muted"], false);
    assert!(repeats_during(&run, Duration::from_millis(4500)) >= 1, "unsilenced: repeated every 2 s");

    // Writes need the token: without it the server refuses.
    let refused = std::process::Command::new(support::zkalert::BIN)
        .args(["silence", "add", "--matchers", r#"{node="n0"}"#, "--duration", "1h", "--comment", "x", "--url", &url])
        .env_remove("ZKALERT_TOKEN")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a write without the token must fail");

    let id = cli(
        &url,
        &token_file,
        &[
            "silence",
            "add",
            "--matchers",
            r#"{node="n0"}"#,
            "--duration",
            "1h",
            "--comment",
            "disk swap",
            "--created-by",
            "alice",
        ],
    )
    .trim()
    .to_string();
    assert!(!id.is_empty());
    let alert = n0_alert(&url, &token_file);
    assert_eq!(alert["silenced_by"], serde_json::json!([id]), "{alert}");
    assert_eq!(alert["muted"], true);
    let listed = cli(&url, &token_file, &["silence", "list"]);
    assert!(listed.contains(&id) && listed.contains("alice"), "silence list shows it:\n{listed}");
    assert_eq!(repeats_during(&run, Duration::from_secs(5)), 0, "silenced: no repeats");

    cli(&url, &token_file, &["silence", "expire", &id]);
    let listed = cli(&url, &token_file, &["silence", "list", "--json"]);
    assert!(listed.contains("expired"), "expiry is visible:\n{listed}");
    assert_eq!(n0_alert(&url, &token_file)["muted"], false);
    assert!(repeats_during(&run, Duration::from_millis(4500)) >= 1, "silence expired: repeats resume");

    let acked = cli(&url, &token_file, &["ack", "--matchers", r#"{node="n0"}"#, "--comment", "on it", "--by", "bob"]);
    assert!(!acked.trim().is_empty(), "ack prints the acked group: {acked}");
    let alert = n0_alert(&url, &token_file);
    assert_eq!(alert["acked"]["by"], "bob", "{alert}");
    assert_eq!(repeats_during(&run, Duration::from_secs(5)), 0, "acked: no repeats");
    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    assert!(!log.contains(token), "the token never appears in the log");
}

/// amtool's habits: `silence add` takes matchers as arguments and lasts an
/// hour by default; `zkalert alerts` lists active alerts (pending and
/// firing, not silenced or inhibited) unless `--silenced`/`--inhibited`
/// or `--all`; logs to a file carry no colour codes.
#[test]
fn amtool_habits_positional_matchers_default_duration_active_alerts() {
    let metrics = MetricsServer::start();
    metrics.set(&[true, true, true]);
    let api_port = free_port();
    let url = format!("http://127.0.0.1:{api_port}");
    let extra = format!("server:\n  listen: 127.0.0.1:{api_port}\n  token_file: token.txt\n");
    let yaml = config(metrics.port, &extra);
    let mut run = ZkalertRun::start_yaml(
        RunConfig::new(Vec::new(), &[]),
        &yaml,
        &[("rules.yaml", RULES.as_str()), ("token.txt", "amtool-token")],
    );
    let token_file = run.dir().join("token.txt");
    let firing = |node: &str| {
        let node = node.to_string();
        move |events: &[Event]| events.iter().any(|e| e.is("firing", "NodeDown") && e.labels["node"] == node)
    };
    wait_for(&mut run, "n0, n1, n2 firing", Duration::from_secs(20), |events| {
        ["n0", "n1", "n2"].iter().all(|n| firing(n)(events))
    });
    metrics.set(&[true, false, true]);
    wait_for(&mut run, "n1 resolved", Duration::from_secs(20), |events| {
        events.iter().any(|e| e.is("resolved", "NodeDown") && e.labels["node"] == "n1")
    });

    // Matchers as arguments, one of them a regex, no duration: an hour.
    let id = cli(
        &url,
        &token_file,
        &["silence", "add", "alertname=NodeDown", "node=~n0|nX", "--comment", "swap", "--created-by", "alice"],
    )
    .trim()
    .to_string();
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&url, &token_file, &["silence", "list", "--json"])).unwrap();
    let silence = listed["silences"].as_array().unwrap().iter().find(|s| s["id"] == id.as_str()).unwrap().clone();
    let time = |k: &str| chrono::DateTime::parse_from_rfc3339(silence[k].as_str().unwrap()).unwrap();
    assert_eq!((time("ends_at") - time("starts_at")).num_seconds(), 3600, "{silence}");
    assert!(silence["matchers"].as_str().unwrap().contains("n0|nX"), "{silence}");

    // Wait for the runner to apply the silence to the snapshot.
    let nodes = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["alerts", "--json"];
        all.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&cli(&url, &token_file, &all)).unwrap();
        let mut nodes: Vec<String> = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}:{}", a["labels"]["node"].as_str().unwrap_or("-"), a["state"].as_str().unwrap()))
            .collect();
        nodes.sort();
        nodes
    };
    assert_eq!(nodes(&[]), ["n2:firing"], "active: not silenced, not resolved");
    assert_eq!(nodes(&["--silenced"]), ["n0:firing", "n2:firing"]);
    assert_eq!(nodes(&["--all"]), ["n0:firing", "n1:resolved", "n2:firing"]);
    let table = cli(&url, &token_file, &["alerts"]);
    assert!(table.contains("node=n2") && !table.contains("node=n0") && !table.contains("node=n1"), "{table}");

    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    assert!(log.contains("starting"), "{log}");
    assert!(!log.contains('\u{1b}'), "no ANSI escape codes in a log file:\n{log}");
}

/// The first run, as the README tells it: `zkalert run` without a config,
/// no ZooKeeper on the port. The console page's ack command works as
/// printed, from the same directory, without a token or `$USER` (the API
/// serves on loopback with a token it keeps in the data dir, mode 0600; the
/// client reads it there; `--by` is the OS user); its runbook line is a
/// link the API serves.
#[test]
fn first_run_without_config_the_printed_ack_command_works() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("zkalert-first-run-").tempdir().unwrap();
    let closed = free_port();
    let api_port = free_port();
    let console = dir.path().join("console.txt");
    let log = dir.path().join("zkalert.log");
    let clean_env = |c: &mut std::process::Command| {
        for var in ["USER", "LOGNAME", "ZKALERT_TOKEN", "ZKALERT_URL", "ZKALERT_CONFIG"] {
            c.env_remove(var);
        }
    };
    let mut command = std::process::Command::new(support::zkalert::BIN);
    command
        .args(["run", "--zookeeper", &format!("127.0.0.1:{closed}"), "--listen", &format!("127.0.0.1:{api_port}")])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&console).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    clean_env(&mut command);
    let mut child = command.spawn().unwrap();
    let _watchdog = support::process::Watchdog::spawn(child.id(), "--zookeeper");
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            support::process::kill_and_reap(&mut self.0);
        }
    }
    let t0 = Instant::now();
    // `for: 30s`, then P1's 30 s group wait: about a minute.
    let page = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("Acknowledge: ")) {
            break (text.clone(), line.to_string());
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("zkalert run exited ({status}):\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "no page within 150 s; console:\n{text}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let child = Stop(child);
    let (text, ack_line) = page;
    assert!(text.contains("ZkNodeDown"), "{text}");

    // The token: generated once, only for its owner.
    let token_file = dir.path().join("zkalert-data/api-token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "api-token mode {mode:o}");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(token.trim().len() >= 32, "a long random token");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains(token.trim()), "the token is not logged:\n{logged}");

    // The runbook line is a link the API serves.
    let runbook = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Runbook: "))
        .unwrap_or_else(|| panic!("no runbook line:\n{text}"))
        .to_string();
    let prefix = format!("http://127.0.0.1:{api_port}/runbooks/");
    assert!(runbook.starts_with(&prefix), "{runbook}");
    let (status, body) = http_get(api_port, &runbook[format!("http://127.0.0.1:{api_port}").len()..]);
    assert_eq!(status, 200, "{runbook}: {body}");
    assert!(body.starts_with('#') && body.contains("ZooKeeper"), "{body}");
    assert_eq!(http_get(api_port, "/runbooks/../state.db").0, 404);

    // The printed command, as printed, from the same directory.
    let command_text = ack_line["Acknowledge: ".len()..].split(" or ").next().unwrap().trim().to_string();
    let words: Vec<&str> = command_text.split_whitespace().collect();
    assert_eq!(&words[..2], ["zkalert", "ack"], "{ack_line}");
    let group_id = words[2].to_string();
    let mut ack = std::process::Command::new(support::zkalert::BIN);
    ack.args(&words[1..]).current_dir(dir.path());
    clean_env(&mut ack);
    let out = ack.output().unwrap();
    assert!(
        out.status.success(),
        "`{command_text}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("acked {group_id}")));
    let (_, groups) = http_get(api_port, "/api/v1/groups");
    let groups: serde_json::Value = serde_json::from_str(&groups).unwrap();
    let group = groups["groups"].as_array().unwrap().iter().find(|g| g["id"] == group_id.as_str()).unwrap();
    let os_user = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| {
            l.split(':').nth(2)
                == Some(
                    &std::fs::metadata("/proc/self")
                        .map(|m| {
                            use std::os::unix::fs::MetadataExt;
                            m.uid().to_string()
                        })
                        .unwrap(),
                )
        })
        .and_then(|l| l.split(':').next().map(str::to_string))
        .unwrap();
    assert_eq!(group["ack"]["by"], os_user.as_str(), "--by is the OS user without $USER: {group}");
    drop(child);
}
