//! The daily report against a real three-node ensemble: `zkalert report` prints it now (nodes, roles, version,
//! then the election and the page after the leader is killed, and who acked it); the scheduled report is mailed
//! to a real SMTP server (`support::smtp`) and filed as HTML, and that HTML opens in Debian's chromium
//! (`tests/browser/report.mjs`, a screenshot in `target/browser-screenshots/report.png`). The SMTP server refuses
//! the first report for now (451): it is mailed on a retry, and the failure is counted.

use crate::support;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::ensemble::{Ensemble, Options};
use support::smtp::{PASSWORD, SmtpServer, USER};
use support::zkalert::{RunConfig, ZkalertRun};

const TOKEN: &str = "report-test-token";

/// `zkalert ARGS` against the run's API.
fn cli(port: u16, args: &[&str]) -> String {
    support::zkalert::client(&format!("http://127.0.0.1:{port}"), ["--token".as_ref(), TOKEN.as_ref()], args)
}

fn wait_for<T>(what: &str, timeout: Duration, run: &mut ZkalertRun, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        run.assert_running();
        assert!(t0.elapsed() < timeout, "no {what} within {timeout:?}; zkalert log:\n{}", run.log_tail(40));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_real_ensembles_report_is_printed_now_mailed_on_schedule_filed_and_opens_in_a_browser() {
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser check needs Debian's chromium and playwright-core: run scripts/test.sh once (it installs both)"
    );
    let mut zk = Ensemble::start(3, Options::default());
    zk.wait_ready(Duration::from_secs(60)).unwrap_or_else(|e| panic!("ensemble not ready: {e}\n{}", zk.log_tails(20)));
    // The first report is refused for now (451): it is mailed on a retry.
    let smtp = SmtpServer::start("none", &["--fail-first", "1", "--fail-code", "451"]);
    let port = support::http::free_port();
    let nodes: Vec<String> = zk.client_addrs();
    let node_list = nodes.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    // Every minute, so the test sees one come: a daily report would say `0 8 * * *`.
    let yaml = format!(
        "evaluation_interval: 1s
data_dir: zkalert-data
rules: [rules.yaml]
sources:
  - {{type: zookeeper, cluster: prod, nodes: [{node_list}], interval: 1s, timeout: 800ms}}
notifiers:
  - {{name: pages, type: file, path: notifications.jsonl}}
  - {{name: mail, type: email, host: 127.0.0.1, port: {smtp}, security: plain, username: {USER}, password_file: smtp-password, from: 'zkalert <zkalert@example.com>', to: ['oncall@example.com']}}
routing:
  tiers:
{tiers}server:
  listen: 127.0.0.1:{port}
  token_file: token.txt
reports:
  - cluster: prod
    schedule: '* * * * *'
    time_zone: Asia/Shanghai
    email: [mail]
    html_dir: reports
",
        smtp = smtp.port,
        tiers = support::zkalert::tiers_to("pages", "1h"),
    );
    let rules = "groups:\n- name: nodes\n  rules:\n  - alert: NodeDown\n    expr: up == 0\n    for: 0s\n    severity: P1\n    annotations: {summary: '{{ $labels.instance }} does not answer'}\n    runbook: https://runbooks.example/zk/node-down\n";
    let files = [("rules.yaml", rules), ("token.txt", TOKEN), ("smtp-password", PASSWORD)];
    let mut run = ZkalertRun::start_yaml(RunConfig::new(nodes.clone(), &[]), &yaml, &files);
    let ready = || support::http::get(port, "/-/ready", Duration::from_secs(1)).is_some_and(|(s, _)| s == 200);
    wait_for("readiness", Duration::from_secs(30), &mut run, || ready().then_some(()));

    // Now: three nodes, one leader, their version.
    let leader = zk.leader().expect("a leader");
    let leader_addr = zk.client_addr(leader);
    let json: Value = wait_for("every node in the report", Duration::from_secs(15), &mut run, || {
        let json: Value = serde_json::from_str(&cli(port, &["report", "--cluster", "prod", "--json"])).unwrap();
        (json["nodes"].as_array()?.iter().filter(|n| n["version"].is_string()).count() == 3).then_some(json)
    });
    let roles: Vec<(&str, &str)> = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["instance"].as_str().unwrap(), n["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles.iter().filter(|(_, r)| *r == "leader").count(), 1, "{roles:?}");
    assert!(roles.contains(&(leader_addr.as_str(), "leader")), "{roles:?}");
    assert_eq!(json["summary"]["leader"], leader_addr.as_str());
    assert!(json["nodes"][0]["version"].as_str().unwrap().starts_with("3.8"), "{}", json["nodes"][0]);
    for field in [
        "latency_avg_ms",
        "latency_max_ms",
        "connections",
        "outstanding",
        "znodes",
        "watches",
        "data_size_bytes",
        "heap_used_bytes",
        "heap_max_bytes",
    ] {
        assert!(json["nodes"][0][field].is_number(), "{field} missing: {}", json["nodes"][0]);
    }
    let text = cli(port, &["report", "--cluster", "prod"]);
    assert!(text.contains("zkalert daily report: prod") && text.contains("Asia/Shanghai"), "{text}");

    // The leader dies: a page, an election; the on-call acks.
    zk.kill(leader);
    run.wait_event("the page", Duration::from_secs(20), |e| {
        e.is("firing", "NodeDown") && e.instance() == Some(leader_addr.as_str())
    });
    zk.wait_ready(Duration::from_secs(60)).unwrap_or_else(|e| panic!("no new leader: {e}\n{}", zk.log_tails(20)));
    let new_leader = zk.client_addr(zk.leader().unwrap());
    cli(port, &["ack", "--matchers", "{alertname=\"NodeDown\"}", "--by", "carol", "--comment", "looking"]);
    let json: Value = wait_for("the election in the report", Duration::from_secs(20), &mut run, || {
        let json: Value =
            serde_json::from_str(&cli(port, &["report", "--cluster", "prod", "--since", "1h", "--json"])).unwrap();
        (json["elections"].as_array()?.iter().any(|e| e["to"] == new_leader.as_str())).then_some(json)
    });
    let election = json["elections"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(election["from"], leader_addr.as_str(), "{json:#}");
    let alert =
        json["alerts"].as_array().unwrap().iter().find(|a| a["alertname"] == "NodeDown").expect("the page").clone();
    assert_eq!((alert["tier"].as_str(), alert["instance"].as_str()), (Some("P1"), Some(leader_addr.as_str())));
    assert_eq!((alert["firing"].as_bool(), alert["acked_by"].as_str()), (Some(true), Some("carol")), "{alert}");
    assert_eq!(json["summary"]["status"], "critical", "a node down: {}", json["summary"]);
    let down =
        json["nodes"].as_array().unwrap().iter().find(|n| n["instance"] == leader_addr.as_str()).unwrap().clone();
    assert_eq!(down["up"], false);

    // The scheduled report: the first mailed after the election tells it; the same HTML is filed.
    let mail = wait_for("a mailed report with the election", Duration::from_secs(75), &mut run, || {
        let received = smtp.received();
        (received > 0).then(|| smtp.wait_messages(received)).and_then(|all| {
            all.into_iter().rev().find(|m| m.to_string().contains("carol") && m.to_string().contains(&new_leader))
        })
    });
    let mail_text = mail.to_string();
    assert!(mail_text.contains("prod daily report"), "{mail:#}");
    assert!(mail_text.contains("text/html") && mail_text.contains("text/plain"), "both parts: {mail:#}");
    let dir = run.dir().join("reports");
    let html_file = wait_for("the filed report", Duration::from_secs(10), &mut run, || {
        let mut files: Vec<_> = std::fs::read_dir(&dir).ok()?.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        files.into_iter().rev().find(|p| std::fs::read_to_string(p).is_ok_and(|h| h.contains("carol")))
    });
    let name = html_file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("prod-") && name.ends_with(".html"), "{name}");
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert!(html.contains(&new_leader) && html.contains("NodeDown"), "{html}");

    // The filed HTML in a real browser.
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    let out = Command::new("node")
        .arg(browser.join("report.mjs"))
        .current_dir(&browser)
        .env("REPORT_HTML", &html_file)
        .env("SCREENSHOTS", &screenshots)
        .env("EXPECT_NODES", "3")
        .env("EXPECT_CLUSTER", "prod")
        .env("EXPECT_ALERT", "NodeDown")
        .output()
        .expect("run node (the browser check needs Node.js)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "report.mjs failed ({}):\n{stdout}\n{stderr}", out.status);
    let png = screenshots.join("report.png");
    assert!(std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000), "no screenshot at {}", png.display());
    println!("{stdout}");

    // Its outcomes are counted.
    let (_, metrics) = support::http::get(port, "/metrics", Duration::from_secs(5)).unwrap();
    for outcome in ["made", "written", "mailed", "failed"] {
        assert!(
            metrics.contains(&format!("zkalert_reports_total{{cluster=\"prod\",outcome=\"{outcome}\"}}")),
            "{outcome} not counted"
        );
    }
    assert!(metrics.contains("zkalert_report_last_success_timestamp_seconds{cluster=\"prod\"}"));
}
