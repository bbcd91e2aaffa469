//! Delivery through the real binary: `zkalert run` paging a webhook
//! receiver on loopback that is down for a while, refuses for good, or
//! hangs while zkalert is killed. Every message must arrive exactly once,
//! fall over when a channel gives up, and keep its idempotency key across
//! a crash.

use crate::support;

use std::time::{Duration, Instant};
use support::http::{Answer, ForwardProxy, MetricsServer, Receiver};
use support::zkalert::{RunConfig, ZkalertRun};

/// The one rule: NodeDown when a node's `svc_up` is 0.
static RULES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| support::zkalert::svc_down_rules("        runbook: zookeeper/node-down\n"));

/// `notifiers` is the YAML list; P1 goes to `channels`.
fn config(metrics_port: u16, notifiers: &str, channels: &str) -> String {
    format!(
        "evaluation_interval: 1s
data_dir: data
rules: [rules.yaml]
runbook_base_url: https://runbooks.example.com
sources:
  - type: prometheus
    url: http://127.0.0.1:{metrics_port}/metrics
    cluster: c
    instance: svc
    interval: 1s
    timeout: 500ms
notifiers:
{notifiers}
  - {{name: events, type: file, path: notifications.jsonl}}
routing:
  group_by: [alertname, node]
  tiers:
    P1: {{channels: [{channels}], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}
"
    )
}

fn start(metrics: &MetricsServer, notifiers: &str, channels: &str) -> ZkalertRun {
    let yaml = config(metrics.port, notifiers, channels);
    let runbook = "# Node down\nCheck the node.\n";
    ZkalertRun::start_yaml(
        RunConfig::new(Vec::new(), &[]),
        &yaml,
        &[("rules.yaml", RULES.as_str()), ("runbooks/zookeeper/node-down.md", runbook)],
    )
}

fn wait(what: &str, timeout: Duration, run: &mut ZkalertRun, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() {
        run.assert_running();
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}; log:\n{}", run.log_tail(40));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_receiver_down_for_a_while_gets_each_message_exactly_once_after_it_recovers() {
    let metrics = MetricsServer::start();
    metrics.set(&[true, true]);
    let hook =
        Receiver::start(vec![Answer::Status(503), Answer::Status(503), Answer::Status(503)], Answer::Status(200));
    let notifiers = format!("  - {{name: hook, type: webhook, url: '{}'}}", hook.url());
    let mut run = start(&metrics, &notifiers, "hook");
    let delivered = |r: &Receiver| r.received().iter().filter(|x| x.answered == Some(200)).count();
    wait("both pages delivered", Duration::from_secs(40), &mut run, || delivered(&hook) == 2);
    std::thread::sleep(Duration::from_secs(3));
    let got = hook.received();
    let mut ok_keys: Vec<&str> =
        got.iter().filter(|r| r.answered == Some(200)).map(|r| r.idempotency_key.as_str()).collect();
    ok_keys.sort();
    ok_keys.dedup();
    assert_eq!(ok_keys.len(), 2, "two messages (one per node), each accepted once: {got:#?}");
    assert_eq!(got.iter().filter(|r| r.answered == Some(503)).count(), 3, "three refused attempts");
    for r in got.iter().filter(|r| r.answered == Some(503)) {
        assert!(ok_keys.contains(&r.idempotency_key.as_str()), "a retry carries its first attempt's key");
    }
    let body = &got.iter().find(|r| r.answered == Some(200)).unwrap().body;
    assert_eq!(body["tier"], "P1");
    assert_eq!(body["firing"][0]["runbook_url"], "https://runbooks.example.com/zookeeper/node-down.md");
}

#[test]
fn a_permanent_refusal_falls_over_and_raises_notifier_failing() {
    let metrics = MetricsServer::start();
    metrics.set(&[true]);
    let bad = Receiver::start(vec![], Answer::Status(400));
    let backup = Receiver::start(vec![], Answer::Status(200));
    let notifiers = format!(
        "  - {{name: primary, type: webhook, url: '{}'}}\n  - {{name: backup, type: webhook, flavor: alertmanager, url: '{}'}}",
        bad.url(),
        backup.url()
    );
    let mut run = start(&metrics, &notifiers, "primary");
    let has = |r: &Receiver, name: &str| {
        r.received()
            .iter()
            .any(|x| x.body["alerts"].as_array().is_some_and(|a| a.iter().any(|a| a["labels"]["alertname"] == name)))
    };
    wait("the page fell over to backup", Duration::from_secs(30), &mut run, || has(&backup, "NodeDown"));
    wait("NotifierFailing through backup", Duration::from_secs(30), &mut run, || has(&backup, "NotifierFailing"));
    let failing = backup
        .received()
        .into_iter()
        .find(|x| x.body["alerts"][0]["labels"]["alertname"] == "NotifierFailing")
        .unwrap();
    assert_eq!(failing.body["alerts"][0]["labels"]["notifier"], "primary");
    assert_eq!(failing.body["version"], "4", "the Alertmanager webhook payload");
    assert!(
        bad.received().iter().all(|x| x.body["firing"][0]["alertname"] != "NotifierFailing"),
        "NotifierFailing is never sent through the channel it is about"
    );
    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    assert!(log.contains("falling over"), "the log says so");
}

#[test]
fn a_delivery_interrupted_by_sigkill_is_sent_after_restart_with_the_same_key() {
    let metrics = MetricsServer::start();
    metrics.set(&[true]);
    // The first request hangs: zkalert has written the outbox and is
    // sending when it is killed.
    let hook = Receiver::start(vec![Answer::Hang(Duration::from_secs(30))], Answer::Status(200));
    let notifiers = format!("  - {{name: hook, type: webhook, url: '{}'}}", hook.url());
    let mut run = start(&metrics, &notifiers, "hook");
    wait("the first attempt", Duration::from_secs(20), &mut run, || !hook.received().is_empty());
    let first = hook.received()[0].idempotency_key.clone();
    assert!(!first.is_empty());
    run.kill9_and_restart();
    wait("delivery after the restart", Duration::from_secs(30), &mut run, || {
        hook.received().iter().any(|r| r.answered == Some(200))
    });
    let ok: Vec<String> =
        hook.received().iter().filter(|r| r.answered == Some(200)).map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(ok, [first], "the same delivery, recognisable by its key");
}

#[test]
fn secrets_never_appear_in_logs_check_output_or_the_api() {
    let metrics = MetricsServer::start();
    metrics.set(&[true]);
    let hook = Receiver::start(vec![], Answer::Status(200));
    let secret_url = format!("{}?access_token=TOKEN-s3cr3t-url-1234", hook.url());
    let signing = "SIGN-s3cr3t-5678";
    let api_token = "API-s3cr3t-9012";
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let notifiers = "  - {name: hook, type: webhook, flavor: dingtalk, url_file: hook.url, secret_file: hook.secret}";
    let server = format!("server: {{listen: '127.0.0.1:{port}', token_file: api.token}}\n");
    let yaml = config(metrics.port, notifiers, "hook") + server.as_str();
    let files = [
        ("rules.yaml", RULES.as_str()),
        ("runbooks/zookeeper/node-down.md", "# Node down\n"),
        ("hook.url", secret_url.as_str()),
        ("hook.secret", signing),
        ("api.token", api_token),
    ];
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &files);
    wait("the page", Duration::from_secs(30), &mut run, || !hook.received().is_empty());
    let signed = hook.received()[0].head.lines().next().unwrap_or_default().to_string();
    assert!(signed.contains("access_token=TOKEN-s3cr3t-url-1234") && signed.contains("&sign="), "{signed}");
    let check = std::process::Command::new(support::zkalert::BIN)
        .arg("check")
        .arg(run.dir().join("config.yaml"))
        .output()
        .unwrap();
    let api = std::process::Command::new(support::zkalert::BIN)
        .args(["alerts", "--json", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = conn.read_to_string(&mut text);
        text
    };
    let status = get("/api/v1/status");
    assert!(status.contains("\"notifiers\""), "{status}");
    // The API shows the state as of the runner's last step (every second).
    let t0 = Instant::now();
    let mut deliveries = get("/api/v1/deliveries");
    while !deliveries.contains("\"state\":\"delivered\"") && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        deliveries = get("/api/v1/deliveries");
    }
    assert!(
        deliveries.contains("\"channel\":\"hook\"") && deliveries.contains("\"state\":\"delivered\""),
        "the delivery history: {deliveries}"
    );
    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    let shown = [
        String::from_utf8_lossy(&check.stdout).into_owned(),
        String::from_utf8_lossy(&check.stderr).into_owned(),
        String::from_utf8_lossy(&api.stdout).into_owned(),
        status,
        deliveries,
        log,
    ]
    .join("\n");
    assert!(shown.contains("NodeDown"), "the outputs were captured: {shown}");
    for secret in ["TOKEN-s3cr3t-url-1234", signing, api_token] {
        assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
    }
}

#[test]
fn notify_test_checks_health_and_sends_a_sample_through_the_real_channel() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(vec![], Answer::Status(200));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let yaml = format!(
        "sources:\n  - {{type: zookeeper, cluster: c, nodes: ['127.0.0.1:1']}}\nnotifiers:\n  - {{name: hook, type: webhook, flavor: slack, url: '{}'}}\n  - {{name: gone, type: webhook, url: 'http://127.0.0.1:{closed}/x', timeout: 2s}}\n",
        hook.url()
    );
    std::fs::write(dir.path().join("z.yaml"), yaml).unwrap();
    let run = |notifier: &str| {
        std::process::Command::new(support::zkalert::BIN)
            .args(["notify", "test", "-c"])
            .arg(dir.path().join("z.yaml"))
            .args(["--notifier", notifier, "--tier", "P0"])
            .output()
            .unwrap()
    };
    let ok = run("hook");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(out.contains("health: hook (webhook) reachable") && out.contains("delivered a sample P0 message"), "{out}");
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].body["text"].as_str().unwrap_or_default().starts_with("TEST, not a real alert: [P0]"),
        "{:?}",
        got[0].body
    );
    let failed = run("gone");
    let out = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{out}");
    assert!(out.contains("NOT reachable") && out.contains("retryable"), "{out}");
}

/// `zkalert notify test` through real channels on loopback: every format
/// says the sample is a test, first thing, and the JSON says `"test": true`.
#[test]
fn notify_test_messages_say_they_are_tests_in_every_channel() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(vec![], Answer::Status(200));
    let url = hook.url();
    let api_base = format!("http://127.0.0.1:{}", hook.port);
    let yaml = format!(
        "sources:\n  - {{type: zookeeper, cluster: c, nodes: ['127.0.0.1:1']}}\nnotifiers:
  - {{name: generic, type: webhook, url: '{url}'}}
  - {{name: am, type: webhook, flavor: alertmanager, url: '{url}'}}
  - {{name: slack, type: webhook, flavor: slack, url: '{url}'}}
  - {{name: ding, type: webhook, flavor: dingtalk, url: '{url}'}}
  - {{name: sms, type: sms, account_sid: AC1, auth_token_env: TEST_TWILIO_TOKEN, from: '+15550001111', to: ['+15550002222'], api_base: '{api_base}'}}
  - {{name: voice, type: voice, account_sid: AC1, auth_token_env: TEST_TWILIO_TOKEN, from: '+15550001111', to: ['+15550002222'], api_base: '{api_base}'}}
  - {{name: jsonl, type: file, path: sent.jsonl}}
"
    );
    std::fs::write(dir.path().join("z.yaml"), yaml).unwrap();
    let mut bodies = Vec::new();
    for notifier in ["generic", "am", "slack", "ding", "sms", "voice", "jsonl"] {
        let before = hook.received().len();
        let o = std::process::Command::new(support::zkalert::BIN)
            .args(["notify", "test", "-c"])
            .arg(dir.path().join("z.yaml"))
            .args(["--notifier", notifier])
            .env("TEST_TWILIO_TOKEN", "t0ken")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{notifier}: {out}{}", String::from_utf8_lossy(&o.stderr));
        let got = hook.received();
        bodies.push(if notifier == "jsonl" {
            assert_eq!(got.len(), before);
            let line = std::fs::read_to_string(dir.path().join("sent.jsonl")).unwrap();
            (notifier, serde_json::from_str(&line).unwrap(), line)
        } else {
            assert_eq!(got.len(), before + 1, "{notifier}");
            let r = got.last().unwrap();
            (notifier, r.body.clone(), r.raw.clone())
        });
    }
    for (notifier, json, raw) in &bodies {
        let first = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        match *notifier {
            "generic" | "jsonl" => assert_eq!(json["test"], serde_json::json!(true), "{notifier}: {json}"),
            "am" => {
                assert_eq!(json["commonLabels"]["zkalert_test"], "true", "{json}");
                assert_eq!(json["groupLabels"]["zkalert_test"], "true", "{json}");
                assert!(first(&json["commonAnnotations"]["zkalert_test"]).contains("not a real alert"), "{json}");
                let summary = first(&json["alerts"][0]["annotations"]["summary"]);
                assert!(summary.starts_with("TEST, not a real alert: ZooKeeper node"), "{json}");
            }
            "slack" => assert!(first(&json["text"]).starts_with("TEST, not a real alert: [P1]"), "{json}"),
            "ding" => {
                assert!(first(&json["markdown"]["title"]).starts_with("TEST, not a real alert: [P1]"), "{json}");
                assert!(first(&json["markdown"]["text"]).starts_with("### TEST, not a real alert: [P1]"), "{json}");
            }
            "sms" => {
                let body = raw.split('&').find_map(|kv| kv.strip_prefix("Body=")).unwrap_or_default();
                let body = support::loopback::percent_decode(&body.replace('+', " "));
                assert!(body.starts_with("TEST, not a real alert: [P1] ZkNodeDown"), "{raw}");
                assert!(body.chars().count() <= 160, "one GSM-7 segment (the default): {body}");
            }
            "voice" => {
                let twiml = raw.split('&').find_map(|kv| kv.strip_prefix("Twiml=")).unwrap_or_default();
                let twiml = support::loopback::percent_decode(&twiml.replace('+', " "));
                assert!(twiml.contains("This is a zkalert test call, not a real alert."), "{raw}");
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn after_a_restart_a_given_up_delivery_is_failed_not_resent_and_notifier_failing_is_not_paged_again() {
    let metrics = MetricsServer::start();
    metrics.set(&[true]);
    let bad = Receiver::start(vec![], Answer::Status(400));
    let backup = Receiver::start(vec![], Answer::Status(200));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let notifiers = format!(
        "  - {{name: primary, type: webhook, url: '{}'}}\n  - {{name: backup, type: webhook, url: '{}'}}",
        bad.url(),
        backup.url()
    );
    let server = format!("server: {{listen: '127.0.0.1:{port}'}}\n");
    let yaml = config(metrics.port, &notifiers, "primary") + server.as_str();
    let files = [("rules.yaml", RULES.as_str()), ("runbooks/zookeeper/node-down.md", "# Node down\n")];
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &files);
    // Messages (by idempotency key: a re-send of one is not a new page).
    let pages = |r: &Receiver, name: &str| {
        let mut keys: Vec<String> = r
            .received()
            .into_iter()
            .filter(|x| x.body["firing"].as_array().is_some_and(|a| a.iter().any(|a| a["alertname"] == name)))
            .map(|x| x.idempotency_key)
            .collect();
        keys.dedup();
        keys.len()
    };
    wait("the page fell over to backup", Duration::from_secs(30), &mut run, || pages(&backup, "NodeDown") == 1);
    wait("NotifierFailing through backup", Duration::from_secs(30), &mut run, || {
        pages(&backup, "NotifierFailing") == 1
    });
    let get = |path: &str| -> serde_json::Value {
        use std::io::{Read, Write};
        let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return serde_json::Value::Null };
        write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = conn.read_to_string(&mut text);
        text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or_default()
    };
    let refused_before = bad.received().len();
    assert_eq!(refused_before, 1, "one attempt: a 400 is not retried");
    let backup_delivered = || {
        let d = get("/api/v1/deliveries");
        let rows = d["deliveries"].as_array().cloned().unwrap_or_default();
        rows.iter().filter(|d| d["channel"] == "backup" && d["state"] == "delivered").count() == 2
    };
    wait("both fallbacks recorded as delivered", Duration::from_secs(20), &mut run, backup_delivered);

    run.kill9_and_restart();
    // Long enough for the outbox to be sent at start-up and for two
    // pipeline steps after the restored alerts' hold.
    let t0 = Instant::now();
    wait("the API after the restart", Duration::from_secs(20), &mut run, || get("/api/v1/status")["ready"] == true);
    std::thread::sleep(Duration::from_secs(6).saturating_sub(t0.elapsed()));
    assert_eq!(bad.received().len(), refused_before, "the given-up delivery is not sent again to the broken channel");
    assert_eq!(pages(&backup, "NotifierFailing"), 1, "NotifierFailing is not paged again: {:#?}", backup.received());
    assert_eq!(pages(&backup, "NodeDown"), 1, "nor the page");
    let deliveries = get("/api/v1/deliveries");
    let to_primary: Vec<&serde_json::Value> =
        deliveries["deliveries"].as_array().unwrap().iter().filter(|d| d["channel"] == "primary").collect();
    // The page that gave up, and NotifierFailing, never sent through the
    // channel it is about: both over, neither pending.
    assert_eq!(to_primary.len(), 2, "{deliveries}");
    for d in &to_primary {
        assert_eq!(d["state"], "failed", "{deliveries}");
        assert!(d["failed_at"].is_string() && d["delivered_at"].is_null(), "{deliveries}");
    }
    assert!(to_primary.iter().any(|d| d["last_error"].as_str().is_some_and(|e| e.contains("HTTP 400"))));
    let alerts = get("/api/v1/alerts");
    let failing = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "NotifierFailing")
        .unwrap_or_else(|| panic!("NotifierFailing listed: {alerts}"));
    assert_eq!((failing["state"].as_str(), failing["labels"]["notifier"].as_str()), (Some("firing"), Some("primary")));
    let cli = std::process::Command::new(support::zkalert::BIN)
        .args(["alerts", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(out.lines().any(|l| l.contains("NotifierFailing") && l.contains("notifier=primary")), "{out}");
}

/// Webhooks follow the environment's proxy variables, as curl does:
/// `HTTP_PROXY` for an http:// receiver (loopback included), `NO_PROXY`
/// to go direct; a notifier's own `proxy_url` wins over both. Each run is
/// the real binary with its own environment (proxy variables are
/// process-wide), and the proxy records what it was sent.
#[test]
fn webhooks_go_through_the_proxy_the_environment_or_proxy_url_names() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(vec![], Answer::Status(200));
    let env_proxy = ForwardProxy::start();
    let own_proxy = ForwardProxy::start();
    let yaml = format!(
        "sources:\n  - {{type: zookeeper, cluster: c, nodes: ['127.0.0.1:1']}}\nnotifiers:
  - {{name: plain, type: webhook, url: '{hook}'}}
  - {{name: own, type: webhook, url: '{hook}', proxy_url: '{own}'}}
",
        hook = hook.url(),
        own = own_proxy.url().replace("http://", "http://user:s3cret@"),
    );
    std::fs::write(dir.path().join("z.yaml"), yaml).unwrap();
    let run = |notifier: &str, env: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(support::zkalert::BIN);
        cmd.args(["notify", "test", "-c"]).arg(dir.path().join("z.yaml")).args(["--notifier", notifier]);
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD"] {
            cmd.env_remove(var).env_remove(var.to_ascii_lowercase());
        }
        let o = cmd.envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
        let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.status.code(), Some(0), "{notifier} {env:?}: {out}");
        assert!(!out.contains("s3cret"), "{out}");
    };
    let through = format!("POST {} HTTP/1.1", hook.url());

    run("plain", &[("HTTP_PROXY", env_proxy.url())]);
    assert_eq!(env_proxy.seen(), std::slice::from_ref(&through), "HTTP_PROXY is used, loopback too");
    assert_eq!(hook.received().len(), 1, "the proxy forwarded it");

    run("plain", &[("http_proxy", env_proxy.url()), ("NO_PROXY", "127.0.0.1".into())]);
    assert_eq!(env_proxy.seen().len(), 1, "NO_PROXY bypasses the proxy");
    assert_eq!(hook.received().len(), 2);

    run("own", &[]);
    run("own", &[("HTTP_PROXY", env_proxy.url()), ("NO_PROXY", "127.0.0.1".into())]);
    assert_eq!(own_proxy.seen(), [through.clone(), through], "proxy_url wins over the environment");
    assert_eq!(env_proxy.seen().len(), 1);
    assert_eq!(hook.received().len(), 4);
}
