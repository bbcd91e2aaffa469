//! The webhook notifier against a real HTTP server on loopback: for each
//! flavour, the exact request a receiver gets (method, path and query,
//! headers, JSON fields, DingTalk's and Feishu's signatures recomputed from
//! their documented algorithms), and the class of each kind of failure.

use crate::support;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use support::loopback::{Receiver, Request};
use zkalert::model::{Alert, AlertState, Labels, Severity, Timestamp};
use zkalert::notify::template::{Links, Rendering, Templates};
use zkalert::notify::webhook::{Flavor, WebhookNotifier, WebhookSettings};
use zkalert::notify::{Delivery, Notifier, SendError};
use zkalert::pipeline::Message;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn alert(instance: &str, state: AlertState) -> Alert {
    let labels = Labels::from_pairs([
        ("alertname", "ZkNodeDown"),
        ("cluster", "prod"),
        ("instance", instance),
        ("severity", "P1"),
    ]);
    let mut alert = Alert::new(labels, Severity::P1, 0.0, Timestamp::from_millis(T0));
    alert.annotations = zkalert::model::Annotations::from_pairs([
        ("summary", format!("ZooKeeper node {instance} is down")),
        ("description", format!("{instance} has not answered ruok for 1m")),
    ]);
    alert.fire(Timestamp::from_millis(T0 + 60_000));
    alert.state = state;
    alert.resolved_at = (state == AlertState::Resolved).then_some(Timestamp::from_millis(T0 + 300_000));
    alert.runbook = Some("zookeeper/node-down".into());
    alert
}

/// Two firing ZkNodeDown alerts (zk2 new) and one resolved, in group
/// {alertname="ZkNodeDown", cluster="prod"} at P1.
fn message(escalation: bool) -> Message {
    let firing = vec![alert("zk1:2181", AlertState::Firing), alert("zk2:2181", AlertState::Firing)];
    let new = vec![firing[1].fingerprint];
    Message {
        id: "9a1f3c5e7b2d4f60".into(),
        at: Timestamp::from_millis(T0 + 360_000),
        group: Labels::from_pairs([("alertname", "ZkNodeDown"), ("cluster", "prod")]),
        group_id: "c0ffee1234567890".into(),
        tier: Severity::P1,
        channels: vec!["im".into()],
        firing,
        new,
        resolved: vec![alert("zk3:2181", AlertState::Resolved)],
        reason: if escalation { zkalert::pipeline::Reason::Escalation } else { zkalert::pipeline::Reason::NewAlerts },
        escalation,
        digest: false,
        test: false,
    }
}

fn delivery(escalation: bool) -> Delivery {
    Delivery { message: Arc::new(message(escalation)), channel: "im".into() }
}

const RUNBOOK_URL: &str = "https://runbooks.example.com/zk/zookeeper/node-down.md";

fn settings(flavor: Flavor, url: String) -> WebhookSettings {
    let mut s = WebhookSettings::new("im", flavor, url);
    s.timeout = Duration::from_secs(2);
    s
}

/// The built-in templates, with the ack and runbook links.
fn rendering() -> Rendering {
    let links = Links {
        external_url: Some("https://zkalert.example.com/".into()),
        runbook_base_url: Some("https://runbooks.example.com/zk/".into()),
        ..Links::default()
    };
    Rendering::new(Arc::new(Templates::builtin()), links)
}

fn notifier(flavor: Flavor, url: String) -> WebhookNotifier {
    WebhookNotifier::new(settings(flavor, url), rendering()).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The headers every flavour sends.
fn assert_common(req: &Request, d: &Delivery, path: &str) {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), path);
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("idempotency-key"), Some(d.idempotency_key().as_str()));
    assert_eq!(req.header("idempotency-key"), Some("9a1f3c5e7b2d4f60-im"));
    assert_eq!(req.header("user-agent"), Some(concat!("zkalert/", env!("CARGO_PKG_VERSION"))));
}

fn hmac_sha256_b64(key: &[u8], data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The text every chat flavour carries.
fn assert_text(text: &str, escalation: bool) {
    assert!(text.contains("[P1]"), "{text}");
    assert!(text.contains("ZkNodeDown"), "{text}");
    for i in ["zk1:2181", "zk2:2181", "zk3:2181"] {
        assert!(text.contains(&format!("instance={i}")), "{text}");
        assert!(text.contains(&format!("ZooKeeper node {i} is down")), "{text}");
    }
    assert!(text.contains("cluster=prod"), "{text}");
    assert!(text.contains(RUNBOOK_URL), "{text}");
    assert!(text.contains("resolved"), "{text}");
    assert_eq!(text.contains("ESCALATION (not acknowledged)"), escalation, "{text}");
    assert!(text.find("[P1]").unwrap() < text.find("zk1:2181").unwrap(), "tier first: {text}");
}

#[tokio::test]
async fn generic_posts_the_documented_json_with_links() {
    let rx = Receiver::start().await;
    let n = notifier(Flavor::Generic, format!("{}/hooks/zk", rx.url));
    let d = delivery(false);
    n.send(&d).await.unwrap();
    let req = rx.only_request();
    assert_common(&req, &d, "/hooks/zk");
    let body = req.json();
    let mut expected = zkalert::notify::message_json(&d.message, "im");
    let o = expected.as_object_mut().unwrap();
    o.insert("ack_url".into(), "https://zkalert.example.com/ack/c0ffee1234567890".into());
    for key in ["firing", "resolved"] {
        for a in o[key].as_array_mut().unwrap() {
            a.as_object_mut().unwrap().insert("runbook_url".into(), RUNBOOK_URL.into());
        }
    }
    assert_eq!(body, expected);
    assert_eq!(body["firing"].as_array().unwrap().len(), 2);
    assert_eq!(body["resolved"][0]["labels"]["instance"], "zk3:2181");

    // Without links: nulls.
    let rx = Receiver::start().await;
    let n = WebhookNotifier::new(WebhookSettings::new("im", Flavor::Generic, rx.url.clone()), Rendering::builtin())
        .unwrap();
    n.send(&d).await.unwrap();
    let body = rx.only_request().json();
    assert_eq!(rx.only_request().path(), "/");
    assert_eq!(body["ack_url"], Value::Null);
    assert_eq!(body["firing"][0]["runbook_url"], Value::Null);
}

#[tokio::test]
async fn alertmanager_payload_is_webhook_v4() {
    let rx = Receiver::start().await;
    let n = notifier(Flavor::Alertmanager, format!("{}/am?x=1", rx.url));
    let d = delivery(false);
    n.send(&d).await.unwrap();
    let req = rx.only_request();
    assert_common(&req, &d, "/am");
    assert_eq!(req.target, "/am?x=1");
    let b = req.json();
    assert_eq!(b["version"], "4");
    assert_eq!(b["groupKey"], r#"{}:{alertname="ZkNodeDown", cluster="prod"}"#);
    assert_eq!(b["truncatedAlerts"], 0);
    assert_eq!(b["status"], "firing");
    assert_eq!(b["receiver"], "im");
    assert_eq!(b["groupLabels"], serde_json::json!({"alertname": "ZkNodeDown", "cluster": "prod"}));
    assert_eq!(b["commonLabels"], serde_json::json!({"alertname": "ZkNodeDown", "cluster": "prod", "severity": "P1"}));
    assert_eq!(b["commonAnnotations"], serde_json::json!({}));
    assert_eq!(b["externalURL"], "https://zkalert.example.com/");
    let alerts = b["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 3);
    let m = &d.message;
    for (a, src, status) in [(&alerts[0], &m.firing[0], "firing"), (&alerts[1], &m.firing[1], "firing")]
        .into_iter()
        .chain([(&alerts[2], &m.resolved[0], "resolved")])
    {
        assert_eq!(a["status"], status);
        assert_eq!(a["labels"]["instance"], src.labels.get("instance").unwrap());
        assert_eq!(a["labels"]["severity"], "P1");
        assert_eq!(a["annotations"]["summary"], src.annotation("summary").unwrap());
        assert_eq!(a["startsAt"], "2026-01-01T00:01:00Z");
        assert!(chrono::DateTime::parse_from_rfc3339(a["startsAt"].as_str().unwrap()).is_ok());
        assert_eq!(a["generatorURL"], RUNBOOK_URL);
        let fp = a["fingerprint"].as_str().unwrap();
        assert_eq!(fp.len(), 16);
        assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(fp, format!("{:016x}", src.fingerprint.0));
    }
    assert_eq!(alerts[0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alerts[2]["endsAt"], "2026-01-01T00:05:00Z");

    // Only resolved alerts: the group is resolved.
    let rx = Receiver::start().await;
    let n = notifier(Flavor::Alertmanager, rx.url.clone());
    let mut m = message(false);
    m.firing.clear();
    m.new.clear();
    n.send(&Delivery { message: Arc::new(m), channel: "im".into() }).await.unwrap();
    let b = rx.only_request().json();
    assert_eq!(b["status"], "resolved");
    assert_eq!(b["alerts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn slack_incoming_webhook_blocks() {
    let rx = Receiver::start().await;
    let n = notifier(Flavor::Slack, format!("{}/services/T000/B000/XXXX", rx.url));
    rx.answer(200, "ok");
    let d = delivery(true);
    n.send(&d).await.unwrap();
    let req = rx.only_request();
    assert_common(&req, &d, "/services/T000/B000/XXXX");
    let b = req.json();
    let fallback = b["text"].as_str().unwrap();
    assert!(fallback.starts_with("[P1] ESCALATION (not acknowledged) ZkNodeDown"), "{fallback}");
    let blocks = b["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    let header = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(header.starts_with("*[P1] ESCALATION (not acknowledged) ZkNodeDown*"), "{header}");
    let all: String = blocks
        .iter()
        .filter_map(|b| b["text"]["text"].as_str().or(b["elements"][0]["text"].as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    assert_text(&all, true);
    assert!(all.contains(&format!("<{RUNBOOK_URL}|runbook>")), "{all}");
    assert!(all.contains("<https://zkalert.example.com/ack/c0ffee1234567890|acknowledge>"), "{all}");
}

#[tokio::test]
async fn dingtalk_markdown_is_signed() {
    let rx = Receiver::start().await;
    let secret = "SEC0123456789abcdef+/=";
    let mut s = settings(Flavor::DingTalk, format!("{}/robot/send?access_token=tok123", rx.url));
    s.secret = Some(secret.into());
    let n = WebhookNotifier::new(s, rendering()).unwrap();
    rx.answer(200, r#"{"errcode":0,"errmsg":"ok"}"#);
    let d = delivery(false);
    let before = now_ms();
    n.send(&d).await.unwrap();
    let req = rx.only_request();
    assert_common(&req, &d, "/robot/send");
    let q = req.query();
    assert_eq!(q["access_token"], "tok123");
    let ts: i64 = q["timestamp"].parse().unwrap();
    assert!((before - 1000..=now_ms() + 1000).contains(&ts), "timestamp in ms");
    let expected = hmac_sha256_b64(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes());
    assert_eq!(q["sign"], expected);
    // The raw query carries the URL-encoded signature.
    assert!(!req.target.contains('+') && !req.target.split("sign=").nth(1).unwrap().contains('/'));
    let b = req.json();
    assert_eq!(b["msgtype"], "markdown");
    let title = b["markdown"]["title"].as_str().unwrap();
    assert!(title.starts_with("[P1] ZkNodeDown"), "{title}");
    let text = b["markdown"]["text"].as_str().unwrap();
    assert!(text.starts_with("### [P1] ZkNodeDown"), "the `markdown` template: {text}");
    assert_text(text, false);
    assert!(text.contains(&format!("[runbook]({RUNBOOK_URL})")), "{text}");

    // Without a secret the URL is unchanged (and `?` starts a query).
    let rx = Receiver::start().await;
    let n = notifier(Flavor::DingTalk, format!("{}/robot/send", rx.url));
    n.send(&d).await.unwrap();
    assert_eq!(rx.only_request().target, "/robot/send");
    let rx = Receiver::start().await;
    let mut s = settings(Flavor::DingTalk, format!("{}/robot/send", rx.url));
    s.secret = Some(secret.into());
    WebhookNotifier::new(s, rendering()).unwrap().send(&d).await.unwrap();
    assert!(rx.only_request().target.starts_with("/robot/send?timestamp="));
}

#[tokio::test]
async fn wecom_markdown_fits_4096_bytes() {
    let rx = Receiver::start().await;
    let n = notifier(Flavor::WeCom, format!("{}/cgi-bin/webhook/send?key=k-1", rx.url));
    rx.answer(200, r#"{"errcode":0,"errmsg":"ok"}"#);
    let d = delivery(true);
    n.send(&d).await.unwrap();
    let req = rx.only_request();
    assert_common(&req, &d, "/cgi-bin/webhook/send");
    assert_eq!(req.query()["key"], "k-1");
    let b = req.json();
    assert_eq!(b["msgtype"], "markdown");
    let content = b["markdown"]["content"].as_str().unwrap();
    assert_text(content, true);

    // Many alerts with multi-byte summaries: cut on a char boundary.
    let rx = Receiver::start().await;
    let n = notifier(Flavor::WeCom, rx.url.clone());
    let mut m = message(false);
    for i in 0..100 {
        let mut a = alert(&format!("zk{i}:2181"), AlertState::Firing);
        a.annotations.set("summary", &"节点宕机，请立即处理".repeat(3));
        m.firing.push(a);
    }
    n.send(&Delivery { message: Arc::new(m), channel: "im".into() }).await.unwrap();
    let b = rx.only_request().json();
    let content = b["markdown"]["content"].as_str().unwrap();
    assert!(content.len() <= 4096, "{}", content.len());
    assert!(content.len() > 4000);
    assert!(content.ends_with('…'));
}

#[tokio::test]
async fn feishu_text_is_signed() {
    let rx = Receiver::start().await;
    let secret = "feishu-secret-42";
    let mut s = settings(Flavor::Feishu, format!("{}/open-apis/bot/v2/hook/abc", rx.url));
    s.secret = Some(secret.into());
    let n = WebhookNotifier::new(s, rendering()).unwrap();
    rx.answer(200, r#"{"code":0,"msg":"success","data":{}}"#);
    let d = delivery(false);
    let before = now_ms() / 1000;
    n.send(&d).await.unwrap();
    let req = rx.only_request();
    assert_common(&req, &d, "/open-apis/bot/v2/hook/abc");
    let b = req.json();
    assert_eq!(b["msg_type"], "text");
    let ts_str = b["timestamp"].as_str().expect("timestamp is a string");
    let ts: i64 = ts_str.parse().unwrap();
    assert!((before - 1..=now_ms() / 1000 + 1).contains(&ts), "timestamp in seconds");
    // Feishu: the string to sign is the HMAC key, the data is empty.
    let expected = hmac_sha256_b64(format!("{ts}\n{secret}").as_bytes(), b"");
    assert_eq!(b["sign"], expected);
    let text = b["content"]["text"].as_str().unwrap();
    assert!(text.starts_with("[P1] ZkNodeDown"), "{text}");
    assert_text(text, false);

    // Unsigned: no timestamp or sign fields.
    let rx = Receiver::start().await;
    notifier(Flavor::Feishu, rx.url.clone()).send(&d).await.unwrap();
    let b = rx.only_request().json();
    assert!(b.get("sign").is_none() && b.get("timestamp").is_none());
}

fn assert_class(r: Result<(), SendError>, retryable: bool, what: &str) {
    match r {
        Err(e) => assert_eq!(e.is_retryable(), retryable, "{what}: {e:?}"),
        Ok(()) => panic!("{what}: expected an error"),
    }
}

#[tokio::test]
async fn failures_are_classed() {
    let rx = Receiver::start().await;
    let d = delivery(false);
    let generic = notifier(Flavor::Generic, rx.url.clone());
    let slack = notifier(Flavor::Slack, rx.url.clone());
    let dingtalk = notifier(Flavor::DingTalk, rx.url.clone());
    let wecom = notifier(Flavor::WeCom, rx.url.clone());
    let feishu = notifier(Flavor::Feishu, rx.url.clone());
    let cases: [(&WebhookNotifier, u16, &str, Option<bool>); 13] = [
        (&generic, 503, "unavailable", Some(true)),
        (&generic, 400, "bad request", Some(false)),
        (&generic, 429, "slow down", Some(true)),
        (&generic, 404, "", Some(false)),
        (&generic, 204, "", None),
        (&slack, 200, "ok", None),
        (&slack, 403, "invalid_token", Some(false)),
        (&dingtalk, 200, r#"{"errcode":310000,"errmsg":"keywords not in content"}"#, Some(false)),
        (&dingtalk, 200, r#"{"errcode":130101,"errmsg":"send too fast"}"#, Some(true)),
        (&wecom, 200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#, Some(true)),
        (&wecom, 200, r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#, Some(false)),
        (&feishu, 200, r#"{"code":9499,"msg":"too many request"}"#, Some(true)),
        (&feishu, 200, r#"{"code":19021,"msg":"sign match fail"}"#, Some(false)),
    ];
    for (n, status, body, class) in cases {
        rx.answer(status, body);
        let r = n.send(&d).await;
        let what = format!("{} {status} {body}", n.flavor());
        match class {
            None => assert_eq!(r, Ok(()), "{what}"),
            Some(retryable) => assert_class(r, retryable, &what),
        }
    }
    assert_eq!(rx.requests().len(), cases.len());
    assert!(rx.requests().iter().all(|r| r.header("idempotency-key") == Some("9a1f3c5e7b2d4f60-im")));
}

#[tokio::test]
async fn transport_failures_are_retryable() {
    // Connection refused: a port just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let n = notifier(Flavor::Generic, format!("http://127.0.0.1:{port}/hook"));
    assert_class(n.send(&delivery(false)).await, true, "refused");

    // A receiver that never answers: the client's timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let mut s = settings(Flavor::Slack, format!("http://{addr}/hook"));
    s.timeout = Duration::from_millis(300);
    let n = WebhookNotifier::new(s, rendering()).unwrap();
    let started = std::time::Instant::now();
    assert_class(n.send(&delivery(false)).await, true, "timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    hold.abort();
}

#[tokio::test]
async fn settings_are_checked() {
    let bad = |f: fn(&mut WebhookSettings)| {
        let mut s = settings(Flavor::Generic, "https://hooks.example.com/x".into());
        f(&mut s);
        WebhookNotifier::new(s, rendering()).unwrap_err()
    };
    assert!(bad(|s| s.url = "ftp://x".into()).contains("http"));
    assert!(bad(|s| s.secret = Some("s".into())).contains("secret"));
    assert!(bad(|s| s.headers = vec![("Idempotency-Key".into(), "x".into())]).contains("Idempotency-Key"));
    assert!(bad(|s| s.headers = vec![("bad header".into(), "x".into())]).contains("header"));
    assert!(bad(|s| s.timeout = Duration::ZERO).contains("timeout"));

    // Extra headers are sent.
    let rx = Receiver::start().await;
    let mut s = settings(Flavor::Generic, rx.url.clone());
    s.headers = vec![("Authorization".into(), "Bearer t0k".into())];
    WebhookNotifier::new(s, rendering()).unwrap().send(&delivery(false)).await.unwrap();
    assert_eq!(rx.only_request().header("authorization"), Some("Bearer t0k"));
}
