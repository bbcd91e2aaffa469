//! The API over a real socket, with a small stand-in for the runner that
//! keeps silences in a [`Silences`] and groups in the snapshot, applies
//! commands and republishes the snapshot before it replies.

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::model::AlertState;
use crate::pipeline::Silences;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "s3cret-token";

fn alert(name: &str, tier: Severity, state: AlertState, instance: &str) -> Alert {
    let labels = Labels::from_pairs([("alertname", name), ("severity", tier.as_str()), ("instance", instance)]);
    let now = SystemClock.now();
    let mut alert = Alert::new(labels, tier, 1.0, now - Duration::from_secs(600));
    alert.annotations = crate::model::Annotations::from_pairs([("summary", format!("{name} on {instance}"))]);
    alert.state = state;
    alert.fired_at = (state != AlertState::Pending).then(|| now - Duration::from_secs(300));
    alert.resolved_at = (state == AlertState::Resolved).then_some(now);
    alert.runbook = Some(format!("runbooks/{name}.md").into());
    alert
}

fn view(alert: Alert, group_id: &str, mute: Mute) -> AlertView {
    AlertView { alert: Arc::new(alert), group_id: group_id.into(), mute: Arc::new(mute), ack: None }
}

fn group(id: &str, tier: Severity, alerts: usize) -> GroupView {
    GroupView {
        id: id.into(),
        labels: Labels::from_pairs([("alertname", id)]),
        tier: Some(tier),
        ack: None,
        last_sent: Some(SystemClock.now()),
        escalated: false,
        last_reason: Some(crate::pipeline::Reason::Repeat),
        alerts,
    }
}

/// Three alerts in two groups: a firing P0, a pending P2, a silenced and
/// inhibited firing P1.
fn sample_snapshot() -> Snapshot {
    let silenced = Mute { inhibited: true, silenced_by: Box::new(["old".into()]), maintenance: Box::default() };
    let mut recovered = alert("ZkLatencyHigh", Severity::P1, AlertState::Firing, "zk3:2181");
    recovered.keep_firing_since = Some(SystemClock.now() - Duration::from_secs(30));
    Snapshot {
        published: true,
        at: SystemClock.now(),
        alerts: vec![
            view(alert("ZkNodeDown", Severity::P0, AlertState::Firing, "zk1:2181"), "g-down", Mute::default()),
            view(alert("ZkLatencyHigh", Severity::P2, AlertState::Pending, "zk2:2181"), "g-latency", Mute::default()),
            view(recovered, "g-latency", silenced),
        ],
        silences: vec![],
        groups: vec![group("g-down", Severity::P0, 1), group("g-latency", Severity::P1, 1)],
        status: StatusView {
            version: "test".into(),
            rules: 3,
            rule_errors: vec![("Broken".into(), "division by zero".into())],
            notifiers: vec!["console".into()],
            ..StatusView::default()
        },
        deliveries: vec![crate::state::DeliveryRecord {
            message_id: "m1".into(),
            channel: "sms".into(),
            group_id: "g-down".into(),
            tier: Severity::P0,
            created_at: SystemClock.now(),
            attempts: 3,
            delivered_at: None,
            failed_at: None,
            last_error: Some("HTTP 503: busy".into()),
            escalation: false,
        }],
        rules: vec![RuleView {
            group: "zk".into(),
            name: "Broken".into(),
            health: crate::rule::RuleHealth::Err("division by zero".into()),
            last_evaluation: Some(SystemClock.now()),
            last_duration: Duration::from_micros(250),
            active: 0,
        }],
        nodes: vec![NodeView {
            cluster: "prod".into(),
            instance: "zk1:2181".into(),
            role: "leader".into(),
            up: true,
            series: vec![
                NodeSeries { metric: "zk_avg_latency", recent: vec![1.0, 3.0, 2.0] },
                NodeSeries { metric: "zk_zxid_epoch", recent: vec![5.0] },
                NodeSeries { metric: "zk_zxid_counter", recent: vec![26.0] },
            ],
        }],
    }
}

/// The stand-in runner: answers commands as the real one does.
async fn fake_runner(mut rx: mpsc::Receiver<Command>, tx: watch::Sender<Arc<Snapshot>>, mut snap: Snapshot) {
    let mut silences = Silences::default();
    while let Some(command) = rx.recv().await {
        let now = SystemClock.now();
        match command {
            Command::AddSilence { silence, reply } => {
                let id = silence.id.clone();
                silences.upsert(silence);
                let _ = reply.send(Ok(id));
            }
            Command::ExpireSilence { id, reply } => match silences.expire(&id, now) {
                Some(s) => {
                    let _ = reply.send(Ok(s.clone()));
                }
                None => {
                    let _ = reply.send(Err(CommandError::NotFound(format!("no silence with id {id:?}"))));
                }
            },
            Command::Ack { group_id, matchers, ack, reply } => {
                let ids: Vec<String> = match (&group_id, &matchers) {
                    (Some(id), _) => snap.groups.iter().filter(|g| &g.id == id).map(|g| g.id.clone()).collect(),
                    (None, Some(m)) => {
                        let mut ids: Vec<String> = snap
                            .alerts
                            .iter()
                            .filter(|a| m.matches(&a.alert.labels))
                            .map(|a| a.group_id.to_string())
                            .collect();
                        ids.dedup();
                        ids
                    }
                    (None, None) => vec![],
                };
                if ids.is_empty() {
                    let _ = reply.send(Err(CommandError::NotFound("no group matched".to_string())));
                    continue;
                }
                for g in snap.groups.iter_mut().filter(|g| ids.contains(&g.id)) {
                    g.ack = Some(ack.clone());
                }
                for a in snap.alerts.iter_mut().filter(|a| ids.iter().any(|id| **id == *a.group_id)) {
                    a.ack = Some(Arc::new(ack.clone()));
                }
                let _ = reply.send(Ok(ids));
            }
            Command::ExportSeries { reply } => {
                let mut store = crate::store::SeriesStore::default();
                let node = Labels::from_pairs([("cluster", "c1"), ("instance", "zk1:2181")]);
                store.ingest("zk_avg_latency", &node, now, 2.5);
                let _ = reply.send(crate::metrics::export_series(&store, now));
            }
            Command::Reload { reply } => {
                let _ = reply.send(Err(CommandError::NotFound("no config to reload".to_string())));
            }
            Command::Report { cluster, period, time_zone, reply } => {
                let mut report = crate::report::render::samples().remove(0);
                if cluster != report.cluster {
                    let _ = reply.send(Err(CommandError::NotFound(format!("no cluster named {cluster:?}"))));
                    continue;
                }
                report.period = crate::duration::format_duration(period);
                report.time_zone = time_zone.map_or("UTC".into(), |tz| tz.name().to_string());
                let templates = crate::report::render::ReportTemplates::shared_builtin();
                let _ = reply.send(Ok((Box::new(report), templates)));
            }
        }
        snap.at = now;
        snap.silences = silences.items().to_vec();
        tx.send_replace(Arc::new(snap.clone()));
    }
}

mod console;

struct Api {
    base: String,
    http: reqwest::Client,
    ready: Arc<AtomicBool>,
    /// What the heartbeat task shows, as the test sets it.
    heartbeat: Arc<std::sync::Mutex<crate::runner::heartbeat::HeartbeatStatus>>,
    /// What posts to the intake sent the runner.
    intake: tokio::sync::Mutex<crate::intake::IntakeReceiver>,
    /// The intake's settings, as a reload would change them.
    intake_config: watch::Sender<Arc<crate::config::IntakeConfig>>,
    _shutdown: oneshot::Sender<()>,
}

impl Api {
    async fn start(token: Option<&str>) -> Api {
        let snap = sample_snapshot();
        let (snap_tx, snap_rx) = watch::channel(Arc::new(snap.clone()));
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        tokio::spawn(fake_runner(cmd_rx, snap_tx, snap));
        Self::serve(snap_rx, cmd_tx, token, true).await
    }

    /// Serves the API on loopback: writes need `token`; `ready` as after
    /// (or before) the runner's first step.
    async fn serve(
        snapshot: watch::Receiver<Arc<Snapshot>>,
        commands: mpsc::Sender<Command>,
        token: Option<&str>,
        ready: bool,
    ) -> Api {
        let (intake_config, intake_rx) = watch::channel(Arc::new(crate::config::IntakeConfig::default()));
        let (batches_tx, batches) = crate::intake::queue(crate::intake::MAX_QUEUED_ALERTS);
        let state = ApiState {
            snapshot,
            commands,
            token: token.map(str::to_string),
            ready: Arc::new(AtomicBool::new(ready)),
            runbooks: watch::channel(Arc::new(
                [("runbooks/ZkNodeDown".to_string(), "/nonexistent/ZkNodeDown.md".into())].into(),
            ))
            .1,
            secret: crate::capability::Secret::from_bytes([7; 32]),
            metrics: Arc::default(),
            heartbeat: Some(Arc::default()),
            intake: intake_rx,
            intake_batches: batches_tx,
        };
        let heartbeat = state.heartbeat.clone().unwrap_or_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let ready = state.ready.clone();
        tokio::spawn(serve(listener, state, async move {
            let _ = stop_rx.await;
        }));
        let http = crate::source::scrape::http_client(Duration::from_secs(5)).unwrap();
        Api {
            base,
            http,
            ready,
            heartbeat,
            intake: tokio::sync::Mutex::new(batches),
            intake_config,
            _shutdown: stop_tx,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        Self::reply(self.http.get(format!("{}{path}", self.base)).send().await.unwrap()).await
    }

    async fn write(&self, method: reqwest::Method, path: &str, body: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::reply(req.header("content-type", "application/json").send().await.unwrap()).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.write(reqwest::Method::POST, path, &body.to_string(), Some(TOKEN)).await
    }

    async fn reply(r: reqwest::Response) -> (StatusCode, Value) {
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"))
}

#[tokio::test]
async fn healthy_and_ready() {
    let api = Api::start(None).await;
    assert_eq!(api.get("/-/healthy").await, (StatusCode::OK, Value::String("OK\n".into())));
    assert_eq!(api.get("/-/ready").await.0, StatusCode::OK);
    api.ready.store(false, Ordering::Release);
    assert_eq!(api.get("/-/ready").await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_status_shows_the_heartbeat_live_not_as_of_the_last_snapshot() {
    let api = Api::start(None).await;
    api.heartbeat.lock().unwrap().state = "pinging";
    assert_eq!(api.get("/api/v1/status").await.1["heartbeat"]["state"], "pinging");
    // The loop stalled: it publishes no snapshot, the heartbeat task says so.
    api.heartbeat.lock().unwrap().state = "stalled";
    assert_eq!(api.get("/api/v1/status").await.1["heartbeat"]["state"], "stalled");
}

#[tokio::test]
async fn a_clusters_report_comes_as_data_text_or_html_and_bad_queries_are_named() {
    let api = Api::start(None).await;
    let (status, json) = api.get("/api/v1/report?cluster=prod&since=7d&time_zone=Europe/Berlin").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!((json["period"].as_str(), json["time_zone"].as_str()), (Some("1w"), Some("Europe/Berlin")));
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(3));
    let text = api.http.get(format!("{}/api/v1/report?cluster=prod&format=text", api.base)).send().await.unwrap();
    assert_eq!(text.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(text.text().await.unwrap().contains("ZkNodeDown"));
    let html = api.http.get(format!("{}/api/v1/report?cluster=prod&format=html", api.base)).send().await.unwrap();
    assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
    assert!(html.text().await.unwrap().starts_with("<!DOCTYPE html>"));
    for (query, wanted) in [
        ("cluster=staging", "no cluster named \"staging\""),
        ("cluster=prod&since=40d", "since: \"40d\" is not a duration from 1s to 31d"),
        ("cluster=prod&since=soon", "since: \"soon\""),
        ("cluster=prod&time_zone=Mars/Base", "time_zone: \"Mars/Base\" is not an IANA time zone"),
        ("cluster=prod&format=pdf", "format: \"pdf\"; expected json, text or html"),
        ("since=24h", "missing field `cluster`"),
        ("cluster=prod&colour=red", "unknown field `colour`"),
        (&*format!("cluster={}", "a".repeat(300)), "cluster: a name of 300 bytes; at most 256"),
    ] {
        let (status, body) = api.get(&format!("/api/v1/report?{query}")).await;
        let want_status = if query == "cluster=staging" { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
        assert_eq!(status, want_status, "{query}: {body}");
        assert!(error(&body).contains(wanted), "{query}: {body}");
    }
}

#[tokio::test]
async fn delivery_history_is_listed() {
    let api = Api::start(None).await;
    let (status, body) = api.get("/api/v1/deliveries").await;
    assert_eq!(status, StatusCode::OK);
    let d = &body["deliveries"][0];
    assert_eq!(
        (d["channel"].as_str(), d["attempts"].as_u64(), d["state"].as_str()),
        (Some("sms"), Some(3), Some("pending"))
    );
    assert_eq!(d["last_error"], "HTTP 503: busy");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let api = Api::start(None).await;
    let (status, body) = api.get("/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error(&body).contains("/api/v1/nope"));
    let (status, body) = api.write(reqwest::Method::PUT, "/api/v1/alerts", "", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error(&body).contains("method not allowed"));
}

#[tokio::test]
async fn writes_without_a_configured_token_are_forbidden() {
    let api = Api::start(None).await;
    let body = json!({"matchers": "{a=\"b\"}", "duration": "1h", "created_by": "me", "comment": "x"}).to_string();
    let (status, reply) = api.write(reqwest::Method::POST, "/api/v1/silences", &body, Some("anything")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error(&reply), "writes are disabled: set server.token_env or server.token_file");
    let (status, _) = api.write(reqwest::Method::DELETE, "/api/v1/silences/x", "", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn writes_need_the_right_bearer_token() {
    let api = Api::start(Some(TOKEN)).await;
    let body = json!({"group_id": "g-down", "by": "me"}).to_string();
    for token in [None, Some("wrong"), Some("s3cret-toke"), Some("s3cret-token-and-more")] {
        let (status, reply) = api.write(reqwest::Method::POST, "/api/v1/acks", &body, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert!(!reply.to_string().contains(TOKEN), "the token is never echoed");
    }
    let (status, reply) = api.write(reqwest::Method::POST, "/api/v1/acks", &body, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // The scheme is case-insensitive.
    let resp = api
        .http
        .post(format!("{}/api/v1/acks", api.base))
        .header("authorization", format!("bearer {TOKEN}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn add_silence_list_and_expire() {
    let api = Api::start(Some(TOKEN)).await;
    let (status, reply) = api
        .post(
            "/api/v1/silences",
            json!({"matchers": "instance=zk1:2181", "duration": "2h", "created_by": "alice", "comment": "disk swap"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let id = reply["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);

    let (status, list) = api.get("/api/v1/silences").await;
    assert_eq!(status, StatusCode::OK);
    let s = &list["silences"][0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["matchers"], r#"{instance="zk1:2181"}"#);
    assert_eq!(s["created_by"], "alice");
    assert_eq!(s["comment"], "disk swap");
    assert_eq!(s["state"], "active");
    let starts = chrono::DateTime::parse_from_rfc3339(s["starts_at"].as_str().unwrap()).unwrap();
    let ends = chrono::DateTime::parse_from_rfc3339(s["ends_at"].as_str().unwrap()).unwrap();
    assert_eq!(ends - starts, chrono::Duration::hours(2));
    let (_, active) = api.get("/api/v1/silences?state=active").await;
    assert_eq!(active["silences"].as_array().unwrap().len(), 1);

    let (status, expired) =
        api.write(reqwest::Method::DELETE, &format!("/api/v1/silences/{id}"), "", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{expired}");
    assert_eq!(expired["id"], id.as_str());
    assert_eq!(expired["state"], "expired");
    let (_, list) = api.get("/api/v1/silences").await;
    assert_eq!(list["silences"][0]["state"], "expired");
    let (_, active) = api.get("/api/v1/silences?state=active,pending").await;
    assert!(active["silences"].as_array().unwrap().is_empty());

    let (status, reply) = api.write(reqwest::Method::DELETE, "/api/v1/silences/nope", "", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error(&reply).contains("nope"));
}

/// A `state=` filter naming no state is refused with the states there are.
#[tokio::test]
async fn an_unknown_state_filter_lists_the_states() {
    let api = Api::start(Some(TOKEN)).await;
    for (path, want) in [
        (
            "/api/v1/alerts?state=firing,burning",
            r#"state: unknown alert state "burning": expected pending, firing or resolved"#,
        ),
        (
            "/api/v1/silences?state=lapsed",
            r#"state: unknown silence state "lapsed": expected pending, active or expired"#,
        ),
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!((status, error(&body)), (StatusCode::BAD_REQUEST, want), "{path}");
    }
}

#[tokio::test]
async fn silence_ids_are_unique() {
    let api = Api::start(Some(TOKEN)).await;
    let body = json!({"matchers": "{a=\"b\"}", "duration": "1h", "created_by": "me", "comment": "x"});
    let (_, a) = api.post("/api/v1/silences", body.clone()).await;
    let (_, b) = api.post("/api/v1/silences", body).await;
    assert_ne!(a["id"], b["id"]);
}

#[tokio::test]
async fn silence_with_explicit_times() {
    let api = Api::start(Some(TOKEN)).await;
    let starts = chrono::Utc::now() + chrono::Duration::hours(1);
    let ends = starts + chrono::Duration::hours(1);
    let (status, reply) = api
        .post(
            "/api/v1/silences",
            json!({"matchers": "{a=\"b\"}", "starts_at": starts.to_rfc3339(), "ends_at": ends.to_rfc3339(),
                   "created_by": "me", "comment": "later"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, list) = api.get("/api/v1/silences").await;
    assert_eq!(list["silences"][0]["state"], "pending");
}

#[tokio::test]
async fn bad_silences_are_400_with_a_message() {
    let api = Api::start(Some(TOKEN)).await;
    let base = json!({"matchers": "{a=\"b\"}", "duration": "1h", "created_by": "me", "comment": "why"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let cases = [
        (with("matchers", json!("{a=~\"(\"}")), "invalid regex"),
        (with("matchers", json!("{a \"b\"}")), "cannot parse matcher"),
        (with("matchers", json!("")), "at least one matcher"),
        (with("matchers", json!("{a=~\".*\"}")), "must not match the empty string"),
        (with("comment", json!("x".repeat(4097))), "comment is 4097 bytes, over the limit of 4096"),
        (with("created_by", json!("x".repeat(5000))), "created_by is 5000 bytes"),
        (with("matchers", json!(format!("{{a=\"{}\"}}", "b".repeat(5000)))), "matchers is 5006 bytes"),
        (with("duration", json!("soon")), "invalid duration"),
        (with("duration", json!("0s")), "longer than zero"),
        (with("ends_at", json!("2030-01-01T00:00:00Z")), "not both"),
        (with("duration", Value::Null), "ends_at or duration is required"),
        (
            with("duration", Value::Null)
                .as_object()
                .cloned()
                .map(|mut o| {
                    o.insert("ends_at".into(), json!("tomorrow"));
                    Value::Object(o)
                })
                .unwrap(),
            "invalid RFC 3339",
        ),
        (
            with("duration", Value::Null)
                .as_object()
                .cloned()
                .map(|mut o| {
                    o.insert("ends_at".into(), json!(past));
                    Value::Object(o)
                })
                .unwrap(),
            "is in the past",
        ),
        (
            with("starts_at", json!("2999-01-01T00:00:00Z"))
                .as_object()
                .cloned()
                .map(|mut o| {
                    o.remove("duration");
                    o.insert("ends_at".into(), json!("2998-01-01T00:00:00Z"));
                    Value::Object(o)
                })
                .unwrap(),
            "must be after starts_at",
        ),
        (with("created_by", json!(" ")), "created_by is required"),
        (with("comment", Value::Null), "comment is required"),
        (with("endsAt", json!("x")), "unknown field `endsAt`"),
        (with("matchers", json!(5)), "invalid type"),
    ];
    for (body, want) in cases {
        let (status, reply) = api.post("/api/v1/silences", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {reply}");
        assert!(error(&reply).contains(want), "{body}: {:?} lacks {want:?}", error(&reply));
    }
    let (_, list) = api.get("/api/v1/silences").await;
    assert!(list["silences"].as_array().unwrap().is_empty(), "nothing was added");
}

#[tokio::test]
async fn silence_and_ack_ends_are_at_most_a_year_ahead() {
    let api = Api::start(Some(TOKEN)).await;
    let silence = |end: (&str, String)| {
        let mut b = json!({"matchers": "{a=\"b\"}", "created_by": "me", "comment": "why"});
        b[end.0] = json!(end.1);
        b
    };
    let in_days = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).to_rfc3339();
    for body in [
        silence(("duration", "10000y".into())),
        silence(("duration", "366d".into())),
        silence(("ends_at", "9999-12-31T00:00:00Z".into())),
        silence(("ends_at", in_days(367))),
    ] {
        let (status, reply) = api.post("/api/v1/silences", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {reply}");
        assert!(error(&reply).contains("more than 1 year ahead"), "{body}: {reply}");
    }
    let (status, reply) = api.post("/api/v1/silences", silence(("duration", "365d".into()))).await;
    assert_eq!(status, StatusCode::OK, "a year is allowed: {reply}");
    for body in [
        json!({"group_id": "g-down", "by": "bob", "duration": "10000y"}),
        json!({"group_id": "g-down", "by": "bob", "until": "2999-01-01T00:00:00Z"}),
    ] {
        let (status, reply) = api.post("/api/v1/acks", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {reply}");
        assert!(error(&reply).contains("more than 1 year ahead"), "{body}: {reply}");
    }
    // Every time the API prints is RFC 3339.
    let (_, list) = api.get("/api/v1/silences").await;
    for s in list["silences"].as_array().unwrap() {
        for field in ["starts_at", "ends_at"] {
            let text = s[field].as_str().unwrap();
            assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "{field}: {text}");
        }
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let api = Api::start(Some(TOKEN)).await;
    for (body, want) in [
        ("{not json", "invalid JSON body"),
        ("", "empty request body"),
        ("[1,2]", "invalid JSON body"),
        ("{\"matchers\": \"{a=\\\"b\\\"}\"", "invalid JSON body"),
    ] {
        for path in ["/api/v1/silences", "/api/v1/acks"] {
            let (status, reply) = api.write(reqwest::Method::POST, path, body, Some(TOKEN)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body:?} → {reply}");
            assert!(error(&reply).contains(want), "{path} {body:?}: {reply}");
        }
    }
}

#[tokio::test]
async fn ack_by_group_id_and_by_matchers() {
    let api = Api::start(Some(TOKEN)).await;
    let (status, reply) = api
        .post("/api/v1/acks", json!({"group_id": "g-down", "by": "bob", "comment": "on it", "duration": "1h"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply, json!({"acked": ["g-down"]}));
    let (_, groups) = api.get("/api/v1/groups").await;
    let down = &groups["groups"][0];
    assert_eq!(down["id"], "g-down");
    assert_eq!(down["ack"]["by"], "bob");
    assert_eq!(down["ack"]["comment"], "on it");
    assert!(down["ack"]["until"].is_string());
    let (_, alerts) = api.get("/api/v1/alerts?state=firing&tier=P0").await;
    assert_eq!(alerts["alerts"][0]["acked"]["by"], "bob");

    let (status, reply) = api.post("/api/v1/acks", json!({"group_id": "g-nope", "by": "bob"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&reply), "no group matched");

    let (status, reply) =
        api.post("/api/v1/acks", json!({"matchers": "{alertname=\"ZkLatencyHigh\"}", "by": "bob"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply, json!({"acked": ["g-latency"]}));
    let (status, _) = api.post("/api/v1/acks", json!({"matchers": "{alertname=\"Nothing\"}", "by": "bob"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    for (body, want) in [
        (json!({"by": "bob"}), "group_id or matchers is required"),
        (json!({"group_id": "g-down", "matchers": "{a=\"b\"}", "by": "bob"}), "not both"),
        (json!({"group_id": "g-down"}), "by is required"),
        (json!({"group_id": "g-down", "by": "bob", "until": "2001-01-01T00:00:00Z"}), "in the past"),
        (json!({"group_id": "g-down", "by": "bob", "until": "2999-01-01T00:00:00Z", "duration": "1h"}), "not both"),
        (json!({"matchers": "{a=~\"[\"}", "by": "bob"}), "matchers: invalid regex"),
    ] {
        let (status, reply) = api.post("/api/v1/acks", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(error(&reply).contains(want), "{body}: {reply}");
    }
}

#[tokio::test]
async fn alerts_with_filters() {
    let api = Api::start(None).await;
    let names = |body: &Value| -> Vec<String> {
        body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}/{}", a["labels"]["alertname"].as_str().unwrap(), a["tier"].as_str().unwrap()))
            .collect()
    };
    let (status, all) = api.get("/api/v1/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(all["at"].is_string());
    assert_eq!(names(&all), ["ZkNodeDown/P0", "ZkLatencyHigh/P1", "ZkLatencyHigh/P2"], "most severe first");
    let first = &all["alerts"][0];
    assert_eq!(first["state"], "firing");
    assert_eq!(first["group_id"], "g-down");
    assert_eq!(first["annotations"]["summary"], "ZkNodeDown on zk1:2181");
    assert_eq!(first["runbook"], "runbooks/ZkNodeDown.md");
    assert_eq!(first["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(first["value"], 1.0);
    assert_eq!(first["muted"], false);
    assert!(first["acked"].is_null());
    assert!(first["resolved_at"].is_null());
    assert!(first["keep_firing_since"].is_null());
    let muted = &all["alerts"][1];
    assert!(muted["keep_firing_since"].as_str().is_some_and(|t| t.ends_with('Z')), "{muted}");
    assert_eq!(muted["silenced_by"], json!(["old"]));
    assert_eq!(muted["inhibited"], true);
    assert_eq!(muted["muted"], true);

    let cases = [
        ("state=firing", vec!["ZkNodeDown/P0", "ZkLatencyHigh/P1"]),
        ("state=pending", vec!["ZkLatencyHigh/P2"]),
        ("state=pending,firing&tier=P1,P2", vec!["ZkLatencyHigh/P1", "ZkLatencyHigh/P2"]),
        ("tier=P0", vec!["ZkNodeDown/P0"]),
        ("filter=%7Binstance%3D~%22zk%5B23%5D.*%22%7D", vec!["ZkLatencyHigh/P1", "ZkLatencyHigh/P2"]),
        ("filter=alertname%3DZkNodeDown", vec!["ZkNodeDown/P0"]),
        ("silenced=false", vec!["ZkNodeDown/P0", "ZkLatencyHigh/P2"]),
        ("silenced=true", vec!["ZkLatencyHigh/P1"]),
        ("muted=false&state=firing", vec!["ZkNodeDown/P0"]),
        ("acked=true", vec![]),
    ];
    for (q, want) in cases {
        let (status, body) = api.get(&format!("/api/v1/alerts?{q}")).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        assert_eq!(names(&body), want, "{q}");
    }
    for (q, want) in [
        ("state=burning", "unknown alert state"),
        ("tier=p0", "unknown tier"),
        ("filter=%7Ba%3D~%22(%22%7D", "filter: invalid regex"),
        ("silenced=maybe", "silenced"),
        ("colour=red", "unknown field"),
    ] {
        let (status, body) = api.get(&format!("/api/v1/alerts?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(error(&body).contains(want), "{q}: {body}");
    }
}

#[tokio::test]
async fn status_and_groups() {
    let api = Api::start(None).await;
    let (status, body) = api.get("/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], "test");
    assert_eq!(body["rules"], 3);
    assert_eq!(body["rule_errors"], json!([{"rule": "Broken", "error": "division by zero"}]));
    assert_eq!(body["notifiers"], json!(["console"]));
    assert_eq!(body["ready"], true);
    assert!(body["at"].is_string());
    let (status, body) = api.get("/api/v1/groups").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["groups"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["g-down", "g-latency"]);
    assert_eq!(body["groups"][0]["tier"], "P0");
    assert_eq!(body["groups"][0]["escalated"], false);
    assert_eq!(body["groups"][0]["last_reason"], "repeat");
    assert_eq!(body["groups"][0]["alerts"], 1);
}

#[tokio::test]
async fn metrics_are_prometheus_text_without_a_token() {
    let api = Api::start(Some(TOKEN)).await;
    let reply = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["content-type"], crate::metrics::CONTENT_TYPE);
    let text = reply.text().await.unwrap();
    assert!(text.contains(&format!("zkalert_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("zk_avg_latency{cluster=\"c1\",instance=\"zk1:2181\"} 2.5\n"), "{text}");
    let firing_p0 = sample_snapshot()
        .alerts
        .iter()
        .filter(|a| a.alert.state == AlertState::Firing && a.alert.severity == Severity::P0)
        .count();
    assert!(firing_p0 > 0);
    assert!(text.contains(&format!("zkalert_alerts{{state=\"firing\",tier=\"P0\"}} {firing_p0}\n")), "{text}");
}

#[tokio::test]
async fn metrics_without_the_runner_still_serve_zkalerts_own() {
    let (_snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (cmd_tx, cmd_rx) = mpsc::channel(8);
    drop(cmd_rx);
    let api = Api::serve(snap_rx, cmd_tx, None, false).await;
    let reply = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let text = reply.text().await.unwrap();
    assert!(text.contains("zkalert_build_info{"), "{text}");
    assert!(!text.contains("zk_avg_latency"), "{text}");
}

#[tokio::test]
async fn writes_are_503_when_the_runner_is_gone() {
    let (_snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (cmd_tx, cmd_rx) = mpsc::channel(1);
    drop(cmd_rx);
    let api = Api::serve(snap_rx, cmd_tx, Some(TOKEN), false).await;
    let (status, reply) = api.post("/api/v1/acks", json!({"group_id": "g", "by": "me"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(error(&reply).contains("runner"));
    let (status, _) = api.write(reqwest::Method::DELETE, "/api/v1/silences/x", "", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = api.get("/api/v1/status").await;
    assert_eq!((status, &body["ready"]), (StatusCode::OK, &json!(false)), "status still answers");
}

/// Before the runner's first step the lists would be empty, not true:
/// every read of them is 503 "not ready" (and the CLI says so); the probes
/// and the status answer.
#[tokio::test]
async fn reads_are_503_not_ready_until_the_first_step() {
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (cmd_tx, _cmd_rx) = mpsc::channel(1);
    let api = Api::serve(snap_rx, cmd_tx, Some(TOKEN), false).await;
    for path in ["/api/v1/alerts", "/api/v1/groups", "/api/v1/silences", "/api/v1/deliveries"] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(error(&body).starts_with("not ready"), "{path}: {body}");
    }
    assert_eq!(api.get("/-/healthy").await.0, StatusCode::OK);
    let (status, body) = api.get("/api/v1/status").await;
    assert_eq!((status, &body["ready"]), (StatusCode::OK, &json!(false)));
    let endpoint = crate::cli::client::Endpoint {
        url: api.base.clone(),
        token: None,
        token_file: None,
        timeout: Duration::from_secs(5),
    };
    let client = crate::cli::client::Client::new(&endpoint).unwrap();
    let e = client.get("/api/v1/alerts", &[]).await.unwrap_err().to_string();
    assert!(e.starts_with("not ready") && e.contains("HTTP 503"), "{e}");
    // Once the runner publishes its first step, the lists answer.
    snap_tx.send_replace(Arc::new(sample_snapshot()));
    let (status, body) = api.get("/api/v1/alerts").await;
    assert_eq!((status, body["alerts"].as_array().map(Vec::len)), (StatusCode::OK, Some(3)), "{body}");
}

#[tokio::test]
async fn the_cli_client_reports_server_errors() {
    use crate::cli::client::{Client, Endpoint};
    let api = Api::start(Some(TOKEN)).await;
    let endpoint = |url: &str, token: Option<&str>| Endpoint {
        url: url.into(),
        token: token.map(str::to_string),
        token_file: None,
        timeout: Duration::from_secs(5),
    };
    let body = SilenceRequest {
        matchers: "{a=\"b\"}".into(),
        duration: Some("1h".into()),
        created_by: "me".into(),
        comment: "x".into(),
        ..SilenceRequest::default()
    };
    let anonymous = Client::new(&endpoint(&api.base, None)).unwrap();
    let e = anonymous.post("/api/v1/silences", &body).await.unwrap_err().to_string();
    assert!(e.contains("missing bearer token") && e.contains("HTTP 401"), "{e}");
    let client = Client::new(&endpoint(&api.base, Some(TOKEN))).unwrap();
    let reply = client.post("/api/v1/silences", &body).await.unwrap();
    assert!(reply["id"].is_string());
    let forever = SilenceRequest { duration: Some("10000y".into()), ..body.clone() };
    let e = client.post("/api/v1/silences", &forever).await.unwrap_err().to_string();
    assert!(e.contains("more than 1 year ahead") && e.contains("HTTP 400"), "{e}");
    let bad = SilenceRequest { matchers: "{a=~\"(\"}".into(), ..body };
    let e = client.post("/api/v1/silences", &bad).await.unwrap_err().to_string();
    assert!(e.contains("invalid regex") && e.contains("HTTP 400"), "{e}");
    let alerts = client.get("/api/v1/alerts", &[("tier", "P0")]).await.unwrap();
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1);

    // A port nobody listens on: bind, note, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}");
    let e = Client::new(&endpoint(&url, None)).unwrap().get("/api/v1/alerts", &[]).await.unwrap_err().to_string();
    assert!(e.starts_with(&format!("cannot reach zkalert at {url}: ")), "{e}");
}

#[tokio::test]
async fn posted_alerts_reach_the_runner_from_loopback_without_a_token_and_from_elsewhere_with_it() {
    let api = Api::start(Some(TOKEN)).await;
    let body = r#"[{"labels":{"alertname":"DiskFull","severity":"critical","instance":"h1"},"annotations":{"runbook_url":"https://rb/disk"}}]"#;
    let (status, reply) = api.write(reqwest::Method::POST, "/api/v2/alerts", body, None).await;
    assert_eq!((status, &reply), (StatusCode::OK, &json!({"accepted": 1, "defaulted": [], "refused": []})));
    let batch = api.intake.lock().await.recv().await.expect("a batch");
    let alert = &batch.alerts[0].alert;
    assert_eq!(
        (alert.name(), alert.severity, alert.runbook.as_deref()),
        ("DiskFull", Severity::P1, Some("https://rb/disk"))
    );

    // The API's peer is 127.0.0.1: trusted only while allow_from says so.
    let nobody = crate::config::IntakeConfig { allow_from: Vec::new(), ..Default::default() };
    api.intake_config.send_replace(Arc::new(nobody));
    let (status, reply) = api.write(reqwest::Method::POST, "/api/v2/alerts", body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, _) = api.write(reqwest::Method::POST, "/api/v2/alerts", body, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.intake.lock().await.recv().await.expect("a batch").alerts.len(), 1);
}

#[tokio::test]
async fn bad_posts_get_clear_answers_and_the_good_alerts_in_them_are_taken() {
    let api = Api::start(None).await;
    let api = &api;
    let post = |body: String| async move { api.write(reqwest::Method::POST, "/api/v2/alerts", &body, None).await };
    let (status, reply) = post(r#"{"labels":{}}"#.into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error(&reply).starts_with("the body is not a JSON array of alerts"), "{reply}");
    let (status, reply) =
        post(r#"[{"labels":{"alertname":"A","severity":"sev9"}},{"labels":{"bad-name":"x"}}]"#.into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["accepted"], 1);
    assert_eq!(reply["defaulted"], json!(["alerts[0]: severity \"sev9\" is not mapped: taken as P2"]));
    assert!(error(&reply).starts_with("1 of 2 alerts refused: alerts[1].labels: \"bad-name\""), "{reply}");
    assert_eq!(api.intake.lock().await.recv().await.expect("the good one").alerts[0].alert.name(), "A");
    let huge = format!("[{}]", " ".repeat(crate::intake::MAX_BODY));
    let (status, _) = post(huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A connection's read buffer is capped (`listen::READ_BUFFER`): a post many
/// times larger still arrives whole, again on the same connection; headers
/// past the cap are refused.
#[tokio::test]
async fn posts_larger_than_a_connections_read_buffer_arrive_whole() {
    let api = Api::start(None).await;
    let alerts: Vec<Value> = (0..5_000)
        .map(|i| json!({"labels": {"alertname": "Big", "instance": format!("host-{i:06}")}, "annotations": {"summary": "x".repeat(200)}}))
        .collect();
    let body = Value::Array(alerts).to_string();
    assert!(body.len() > 16 * super::listen::READ_BUFFER, "{} bytes", body.len());
    for _ in 0..2 {
        let (status, reply) = api.write(reqwest::Method::POST, "/api/v2/alerts", &body, None).await;
        assert_eq!((status, &reply["accepted"]), (StatusCode::OK, &json!(5_000)), "{reply}");
        assert_eq!(api.intake.lock().await.recv().await.expect("a batch").alerts.len(), 5_000);
    }
    let huge_header = "x".repeat(super::listen::READ_BUFFER);
    let reply = api.http.get(format!("{}/-/healthy", api.base)).header("x-padding", huge_header).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}
