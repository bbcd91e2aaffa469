//! The web console and ack links on the real binary: `zkalert run` polling a
//! Prometheus text endpoint where three nodes are down, paging a file
//! notifier, its API token set. Ack links from the file notifier's messages
//! work without the token; the whole console runs in Debian's chromium
//! driven by Playwright (`tests/browser/console.mjs`; `scripts/test.sh`
//! installs both).

use crate::support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use support::http::MetricsServer;
use support::zkalert::{RunConfig, ZkalertRun};

const RUNBOOK: &str = "# Node down\n\nCheck the node:\n\n```\necho ruok | nc zk1 2181\n```\n";
const TOKEN: &str = "console-test-token";

struct Console {
    run: ZkalertRun,
    port: u16,
    _metrics: MetricsServer,
}

/// `zkalert run` with nodes n0, n1, n2 down, until each has paged.
fn start() -> Console {
    let metrics = MetricsServer::start();
    metrics.set(&[true, true, true]);
    let port = crate::support::http::free_port();
    let rest = format!(
        "external_url: http://127.0.0.1:{port}
routing:
  group_by: [alertname, node]
  tiers:
    P1: {{channels: [pages], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}
server:
  listen: 127.0.0.1:{port}
  token_file: token.txt
"
    );
    let yaml = support::zkalert::svc_config(metrics.port, &rest);
    let rules = support::zkalert::svc_down_rules("        runbook: zookeeper/node-down\n");
    let files = [("rules.yaml", rules.as_str()), ("token.txt", TOKEN), ("runbooks/zookeeper/node-down.md", RUNBOOK)];
    let mut run = ZkalertRun::start_yaml(RunConfig::new(Vec::new(), &[]), &yaml, &files);
    let t0 = Instant::now();
    while (0..3)
        .any(|i| !run.events().iter().any(|e| e.is("firing", "NodeDown") && e.labels["node"] == format!("n{i}")))
    {
        run.assert_running();
        assert!(t0.elapsed() < Duration::from_secs(30), "no pages for n0..n2; log:\n{}", run.log_tail(40));
        std::thread::sleep(Duration::from_millis(100));
    }
    Console { run, port, _metrics: metrics }
}

/// One HTTP/1.1 request on loopback: (status, body).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the console");
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    conn.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The ack link of the first message about node `node`.
fn ack_link(notifications: &Path, node: &str) -> String {
    let text = std::fs::read_to_string(notifications).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|m| m["group"]["node"] == node)
        .and_then(|m| m["ack_url"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no message with an ack_url for {node}:\n{text}"))
}

fn group_ack(port: u16, node: &str) -> serde_json::Value {
    let (_, body) = http(port, "GET", "/api/v1/groups", &[], "");
    let groups: serde_json::Value = serde_json::from_str(&body).unwrap();
    groups["groups"].as_array().unwrap().iter().find(|g| g["labels"]["node"] == node).unwrap()["ack"].clone()
}

#[test]
fn a_messages_ack_link_acks_without_the_token_and_a_forged_one_is_refused() {
    let c = start();
    let link = ack_link(&c.run.notifications, "n0");
    let path = link.strip_prefix(&format!("http://127.0.0.1:{}", c.port)).unwrap_or_else(|| panic!("{link}"));
    let (status, page) = http(c.port, "GET", path, &[], "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("node n0 is down") && !page.contains("node n1 is down"), "{page}");

    let sig = path.find("sig=").unwrap() + "sig=".len();
    let flipped = if &path[sig..=sig] == "0" { "1" } else { "0" };
    let forged = format!("{}{flipped}{}", &path[..sig], &path[sig + 1..]);
    assert_eq!(http(c.port, "GET", &forged, &[], "").0, 403, "{forged}");
    let other_group = path.replace(&path["/ack/".len()..path.find('?').unwrap()], "0123456789abcdef");
    assert_eq!(http(c.port, "GET", &other_group, &[], "").0, 404);

    let query = &path[path.find('?').unwrap() + 1..];
    let group = &path["/ack/".len()..path.find('?').unwrap()];
    let form = format!("{query}&action=ack&by=phone");
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(http(c.port, "POST", &format!("/ack/{group}"), &headers, &form.replace("sig=", "sig=f")).0, 403);
    assert!(group_ack(c.port, "n0").is_null(), "a forged POST acks nothing");
    let (status, page) = http(c.port, "POST", &format!("/ack/{group}"), &headers, &form);
    assert_eq!(status, 200, "{page}");
    // The API shows the runner's next snapshot: published right after.
    let t0 = Instant::now();
    while group_ack(c.port, "n0").is_null() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(group_ack(c.port, "n0")["by"], "phone");

    // The runbook link renders for a browser and stays Markdown for tools.
    let (status, html) = http(c.port, "GET", "/runbooks/zookeeper/node-down", &[("Accept", "text/html")], "");
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Node down</h1>") && html.contains("<pre><code>echo ruok | nc zk1 2181"), "{html}");
    assert_eq!(http(c.port, "GET", "/runbooks/zookeeper/node-down.md", &[], "").1, RUNBOOK);
}

/// The directory the browser test lives in (its package.json and lock).
fn browser_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[test]
fn the_console_in_a_real_browser() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and playwright-core: run scripts/test.sh once (it installs both)"
    );
    let c = start();
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    let mut child = std::process::Command::new("node")
        .arg(dir.join("console.mjs"))
        .current_dir(&dir)
        .env("ZKALERT_URL", format!("http://127.0.0.1:{}", c.port))
        .env("ZKALERT_TOKEN", TOKEN)
        .env("NOTIFICATIONS", &c.run.notifications)
        .env("SCREENSHOTS", &screenshots)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run node (the browser test needs Node.js)");
    // The script bounds itself at 60 s; this is the backstop.
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(status.success(), "browser test failed ({status}):\n{out}\n{err}\nzkalert log:\n{}", c.run.log_tail(30));
    for shot in ["01-alerts", "03-groups-acked", "05-silence-active", "07-runbook", "11-ack-link", "12-ack-link-done"] {
        let png = screenshots.join(format!("{shot}.png"));
        assert!(std::fs::metadata(&png).is_ok_and(|m| m.len() > 1000), "no screenshot {}", png.display());
    }
    println!("{out}");
}
