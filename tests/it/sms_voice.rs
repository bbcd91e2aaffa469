//! The SMS and voice notifiers against a real HTTP server on loopback: the
//! exact requests of Twilio's Messages and Calls APIs (method, path with the
//! account SID, form content type, basic auth, form fields, idempotency
//! token), SMS segment limits on real messages, a generic HTTP gateway's
//! JSON body, the class of failures, and a retry after a partial failure.

use crate::support;

use base64::Engine;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use support::loopback::{Receiver, Request};
use zkalert::model::{Alert, AlertState, Labels, Severity, Timestamp};
use zkalert::notify::sms::{self, HttpGateway, SmsNotifier, SmsProvider, SmsSettings, Twilio};
use zkalert::notify::template::{Links, Rendering, Templates};
use zkalert::notify::voice::{VoiceNotifier, VoiceSettings};
use zkalert::notify::{Delivery, Notifier, SendError};
use zkalert::pipeline::Message;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "s3cr3t-token";
const FROM: &str = "+15005550006";
const ALICE: &str = "+8613800138000";
const BOB: &str = "+14155550100";
const RUNBOOK_URL: &str = "https://rb.example/zk/zookeeper/node-down.md";

fn alert(instance: &str, cluster: &str, summary: &str, state: AlertState) -> Alert {
    let labels = Labels::from_pairs([
        ("alertname", "ZkNodeDown"),
        ("cluster", cluster),
        ("instance", instance),
        ("severity", "P1"),
    ]);
    let mut alert = Alert::new(labels, Severity::P1, 0.0, Timestamp::from_millis(T0));
    alert.annotations = zkalert::model::Annotations::from_pairs([("summary", summary)]);
    alert.fire(Timestamp::from_millis(T0 + 60_000));
    alert.state = state;
    alert.runbook = Some("zookeeper/node-down".into());
    alert
}

/// One firing ZkNodeDown alert in `cluster` with `summary`, at P1.
fn delivery(cluster: &str, summary: &str) -> Delivery {
    let firing = vec![alert("zk1:2181", cluster, summary, AlertState::Firing)];
    let message = Message {
        id: "9a1f3c5e7b2d4f60".into(),
        at: Timestamp::from_millis(T0 + 360_000),
        group: Labels::from_pairs([("alertname", "ZkNodeDown"), ("cluster", cluster)]),
        group_id: "c0ffee1234567890".into(),
        tier: Severity::P1,
        channels: vec!["oncall".into()],
        new: vec![firing[0].fingerprint],
        firing,
        resolved: Vec::new(),
        reason: zkalert::pipeline::Reason::NewAlerts,
        escalation: false,
        digest: false,
        test: false,
    };
    Delivery { message: Arc::new(message), channel: "oncall".into() }
}

/// The built-in templates, with runbook links.
fn rendering() -> Rendering {
    let links = Links { runbook_base_url: Some("https://rb.example/zk/".into()), ..Links::default() };
    Rendering::new(Arc::new(Templates::builtin()), links)
}

fn twilio(rx: &Receiver) -> Twilio {
    let mut t = Twilio::new(SID, TOKEN, FROM);
    t.api_base = rx.url.clone();
    t
}

fn sms_settings(provider: SmsProvider, to: &[&str]) -> SmsSettings {
    let mut s = SmsSettings::new("pager", provider, to.iter().map(|t| t.to_string()).collect());
    s.timeout = Duration::from_secs(2);
    s
}

fn twilio_sms(rx: &Receiver, to: &[&str]) -> SmsNotifier {
    SmsNotifier::new(sms_settings(SmsProvider::Twilio(twilio(rx)), to), rendering()).unwrap()
}

fn voice(rx: &Receiver, to: &[&str]) -> VoiceNotifier {
    let mut s = VoiceSettings::new("phone", twilio(rx), to.iter().map(|t| t.to_string()).collect());
    s.timeout = Duration::from_secs(2);
    VoiceNotifier::new(s, rendering()).unwrap()
}

/// What every Twilio request carries.
fn assert_twilio(req: &Request, resource: &str, d: &Delivery, index: usize) {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), format!("/2010-04-01/Accounts/{SID}/{resource}.json"));
    assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(req.header("authorization"), Some(format!("Basic {basic}").as_str()));
    assert_eq!(req.header("i-twilio-idempotency-token"), Some(format!("9a1f3c5e7b2d4f60-oncall-{index}").as_str()));
    assert_eq!(req.header("i-twilio-idempotency-token"), Some(format!("{}-{index}", d.idempotency_key()).as_str()));
    let form = req.form();
    assert_eq!(form.get("From").map(String::as_str), Some(FROM));
}

#[tokio::test]
async fn twilio_sms_sends_one_form_per_recipient_within_one_gsm7_segment() {
    let rx = Receiver::start().await;
    let n = twilio_sms(&rx, &[ALICE, BOB]);
    let long = "ZooKeeper node zk1:2181 has not answered ruok for 5 minutes; followers lost quorum \
                and clients see CONNECTION_LOSS, see {the} [runbook] ~now~";
    let d = delivery("prod", long);
    n.send(&d).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for (i, (req, to)) in reqs.iter().zip([ALICE, BOB]).enumerate() {
        assert_twilio(req, "Messages", &d, i);
        let form = req.form();
        assert_eq!(form.keys().map(String::as_str).collect::<Vec<_>>(), ["Body", "From", "To"]);
        assert_eq!(form["To"], to);
        let body = &form["Body"];
        assert_eq!(sms::encoding(body), sms::Encoding::Gsm7, "{body}");
        assert!(sms::units(body) <= 160, "{} units: {body}", sms::units(body));
        assert_eq!(sms::segments(body), 1);
        assert!(body.starts_with(&format!("[P1] ZkNodeDown prod {RUNBOOK_URL} zk1:2181 ZooKeeper node")), "{body}");
        assert!(body.ends_with("..."), "{body}");
    }
}

#[tokio::test]
async fn chinese_sms_is_ucs2_cut_to_70_units_with_the_runbook_first() {
    let rx = Receiver::start().await;
    let s = sms_settings(SmsProvider::Twilio(twilio(&rx)), &[ALICE]);
    let links = Links { runbook_base_url: Some("https://r.cn".into()), ..Links::default() };
    let n = SmsNotifier::new(s, Rendering::new(Arc::new(Templates::builtin()), links)).unwrap();
    let d = delivery("prod", "节点无响应，集群可能失去法定人数，请立即按照运行手册处理故障");
    n.send(&d).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    assert_twilio(&reqs[0], "Messages", &d, 0);
    let body = &reqs[0].form()["Body"];
    assert_eq!(sms::encoding(body), sms::Encoding::Ucs2);
    assert!(body.encode_utf16().count() <= 70, "{} units: {body}", body.encode_utf16().count());
    assert!(body.starts_with("[P1] ZkNodeDown prod https://r.cn/zookeeper/node-down.md zk1:2181 "), "{body}");
    assert!(body.ends_with('…'), "{body}");
    assert!(body.contains("节点"), "{body}");

    // Two segments: up to 2 × 67 units.
    let rx = Receiver::start().await;
    let mut s = sms_settings(SmsProvider::Twilio(twilio(&rx)), &[ALICE]);
    s.segments = 2;
    let long = "集群失去法定人数".repeat(20);
    SmsNotifier::new(s, rendering()).unwrap().send(&delivery("prod", &long)).await.unwrap();
    let body = &rx.requests()[0].form()["Body"];
    let units = body.encode_utf16().count();
    assert!(units > 70 && units <= 134, "{units} units: {body}");
    assert_eq!(sms::segments(body), 2);
}

#[tokio::test]
async fn generic_gateway_gets_valid_json_whatever_the_text() {
    let rx = Receiver::start().await;
    let mut g = HttpGateway::new(
        format!("{}/sms/send", rx.url),
        r#"{"phone": {{ to | tojson }}, "content": {{ text | tojson }}, "tier": "{{ tier }}", "ref": {{ id | json }}}"#,
    );
    g.headers = vec![
        ("Authorization".into(), "Bearer gw-token".into()),
        ("X-Request-Id".into(), "{{ idempotency_key }}".into()),
    ];
    let n = SmsNotifier::new(sms_settings(SmsProvider::Http(g), &[ALICE, BOB]), rendering()).unwrap();
    let d = delivery("prod", r#"node "zk1" said \ "imok" {not}"#);
    n.send(&d).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    for (i, (req, to)) in reqs.iter().zip([ALICE, BOB]).enumerate() {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path(), "/sms/send");
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.header("authorization"), Some("Bearer gw-token"));
        let key = format!("9a1f3c5e7b2d4f60-oncall-{i}");
        assert_eq!(req.header("idempotency-key"), Some(key.as_str()));
        assert_eq!(req.header("x-request-id"), Some(key.as_str()));
        let v: Value = req.json();
        assert_eq!(v["phone"], to);
        assert_eq!(v["tier"], "P1");
        assert_eq!(v["ref"], "9a1f3c5e7b2d4f60");
        let content = v["content"].as_str().unwrap();
        assert!(content.starts_with(&format!("[P1] ZkNodeDown prod {RUNBOOK_URL}")), "{content}");
        assert!(content.contains(r#"node "zk1" said \ "imok""#), "{content}");
        assert!(sms::units(content) <= 160);
    }
}

#[tokio::test]
async fn generic_gateway_method_and_content_type_are_configurable_and_templates_checked() {
    let rx = Receiver::start().await;
    let mut g = HttpGateway::new(format!("{}/api/sms", rx.url), "to={{ to }}&msg={{ text }}");
    g.method = "put".into();
    g.headers = vec![("Content-Type".into(), "text/plain; charset=utf-8".into())];
    let n = SmsNotifier::new(sms_settings(SmsProvider::Http(g), &[BOB]), rendering()).unwrap();
    n.send(&delivery("prod", "down")).await.unwrap();
    let req = &rx.requests()[0];
    assert_eq!(req.method, "PUT");
    assert_eq!(req.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(String::from_utf8_lossy(&req.body).starts_with(&format!("to={BOB}&msg=[P1] ZkNodeDown")));

    // Strict undefined: an unknown variable is a config error.
    let g = HttpGateway::new(format!("{}/x", rx.url), r#"{"to": {{ phone }}}"#);
    let e = SmsNotifier::new(sms_settings(SmsProvider::Http(g), &[BOB]), rendering()).unwrap_err();
    assert!(e.contains("sms pager"), "{e}");
    let g = HttpGateway::new(format!("{}/x", rx.url), "{{ text ");
    assert!(SmsNotifier::new(sms_settings(SmsProvider::Http(g), &[BOB]), rendering()).is_err());
    let mut g = HttpGateway::new(format!("{}/x", rx.url), "{{ text }}");
    g.headers = vec![("Idempotency-Key".into(), "x".into())];
    assert!(SmsNotifier::new(sms_settings(SmsProvider::Http(g), &[BOB]), rendering()).is_err());
}

#[tokio::test]
async fn settings_are_checked() {
    let rx = Receiver::start().await;
    let t = || SmsProvider::Twilio(twilio(&rx));
    assert!(SmsNotifier::new(sms_settings(t(), &["13800138000"]), rendering()).unwrap_err().contains("E.164"));
    assert!(SmsNotifier::new(sms_settings(t(), &[]), rendering()).is_err());
    assert!(SmsNotifier::new(sms_settings(t(), &[ALICE, ALICE]), rendering()).is_err());
    let mut s = sms_settings(t(), &[ALICE]);
    s.segments = 0;
    assert!(SmsNotifier::new(s, rendering()).is_err());
    let mut bad = twilio(&rx);
    bad.api_base = "ftp://api.example".into();
    assert!(SmsNotifier::new(sms_settings(SmsProvider::Twilio(bad.clone()), &[ALICE]), rendering()).is_err());
    assert!(VoiceNotifier::new(VoiceSettings::new("phone", bad, vec![ALICE.into()]), rendering()).is_err());
    assert_eq!(Twilio::new(SID, TOKEN, FROM).api_base, "https://api.twilio.com");
    // The token is not in the debug output.
    assert!(!format!("{:?}", twilio(&rx)).contains(TOKEN));
}

#[tokio::test]
async fn voice_calls_say_the_text_xml_escaped() {
    let rx = Receiver::start().await;
    let n = voice(&rx, &[ALICE, BOB]);
    let d = delivery("R&D <east>", "down");
    n.send(&d).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    let spoken = "This is zkalert. Priority 1 alert. ZkNodeDown on cluster R&amp;D &lt;east&gt;. \
                  Please check your pager for the runbook.";
    let twiml = format!("<Response><Say>{spoken}</Say><Pause length=\"1\"/><Say>{spoken}</Say></Response>");
    for (i, (req, to)) in reqs.iter().zip([ALICE, BOB]).enumerate() {
        assert_twilio(req, "Calls", &d, i);
        let form = req.form();
        assert_eq!(form.keys().map(String::as_str).collect::<Vec<_>>(), ["From", "To", "Twiml"]);
        assert_eq!(form["To"], to);
        assert_eq!(form["Twiml"], twiml);
    }

    // Said once, in a language.
    let rx = Receiver::start().await;
    let mut s = VoiceSettings::new("phone", twilio(&rx), vec![ALICE.into()]);
    s.repeat = false;
    s.language = Some("en-US".into());
    VoiceNotifier::new(s, rendering()).unwrap().send(&delivery("prod", "down")).await.unwrap();
    let twiml = &rx.requests()[0].form()["Twiml"];
    assert!(twiml.starts_with("<Response><Say language=\"en-US\">This is zkalert."), "{twiml}");
    assert!(twiml.ends_with("</Say></Response>") && !twiml.contains("Pause"), "{twiml}");
}

#[tokio::test]
async fn failures_are_classed_by_status() {
    let rx = Receiver::start().await;
    let n = twilio_sms(&rx, &[ALICE]);
    rx.answer(503, "busy");
    let e = n.send(&delivery("prod", "down")).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable(_)), "{e:?}");
    assert!(e.to_string().contains("503") && e.to_string().contains(ALICE), "{e}");
    rx.answer(400, r#"{"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}"#);
    let e = n.send(&delivery("prod", "other")).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent(_)), "{e:?}");
    assert!(e.to_string().contains("21211"), "{e}");
    rx.answer(429, "slow down");
    assert!(n.send(&delivery("prod", "third")).await.unwrap_err().is_retryable());

    let v = voice(&rx, &[ALICE]);
    rx.answer(500, "oops");
    assert!(v.send(&delivery("prod", "down")).await.unwrap_err().is_retryable());
    rx.answer(401, "auth");
    assert!(matches!(v.send(&delivery("prod", "down")).await, Err(SendError::Permanent(_))));

    // Nobody listening: retryable.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut t = Twilio::new(SID, TOKEN, FROM);
    t.api_base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let n = SmsNotifier::new(sms_settings(SmsProvider::Twilio(t), &[ALICE]), rendering()).unwrap();
    assert!(n.send(&delivery("prod", "down")).await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn a_retry_after_a_partial_failure_only_sends_to_the_rest() {
    let rx = Receiver::start().await;
    let n = twilio_sms(&rx, &[ALICE, BOB]);
    let d = delivery("prod", "down");
    rx.answer(201, r#"{"sid": "SM1"}"#);
    rx.answer(503, "busy");
    let e = n.send(&d).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains(BOB) && !e.to_string().contains(ALICE), "{e}");
    assert_eq!(rx.requests().len(), 2);
    n.send(&d).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_eq!(reqs[2].form()["To"], BOB);
    assert_twilio(&reqs[2], "Messages", &d, 1);
    // Delivered to everyone: a further retry sends nothing.
    n.send(&d).await.unwrap();
    assert_eq!(rx.requests().len(), 3);
    // Another delivery is sent to everyone again.
    n.send(&delivery("prod", "again")).await.unwrap();
    assert_eq!(rx.requests().len(), 3, "same message id and channel: same key");
    let mut other = delivery("prod", "again");
    other.channel = "backup".into();
    n.send(&other).await.unwrap();
    assert_eq!(rx.requests().len(), 5);

    // The same for calls.
    let rx = Receiver::start().await;
    let v = voice(&rx, &[ALICE, BOB]);
    rx.answer(503, "busy");
    rx.answer(201, "{}");
    assert!(v.send(&d).await.unwrap_err().is_retryable());
    v.send(&d).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[2].form()["To"], ALICE);
    assert_twilio(&reqs[2], "Calls", &d, 0);
}
