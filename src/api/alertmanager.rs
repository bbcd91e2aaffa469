//! The Alertmanager API v2 surface (docs/alertmanager.md): `POST
//! /api/v2/alerts`, where Prometheus sends its alerts, and what `amtool`
//! reads and writes (alerts, groups, silences, status), in the shapes of
//! Alertmanager's OpenAPI. Posts are parsed and checked here, on the API's
//! threads, and reach the runner's loop as [`IntakeBatch`]es, so a burst of
//! posts costs the loop only the alerts. Silences are zkalert's (one store).

use super::server::{
    ApiError, ApiResult, call, json_body, now, ok, parse_matchers, published, query, silence_from, snapshot,
};
use super::{AlertView, ApiState, Command, SilenceRequest};
use crate::intake::{IntakeBatch, MAX_BODY, check_post};
use crate::model::{AlertState, Labels, Severity, Timestamp};
use crate::pipeline::{MatchOp, Matcher, Matchers, Silence};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Extension, Json};
use rustc_hash::FxHashMap;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Bodies past this size are checked off the async workers.
const BLOCKING_BODY: usize = 64 << 10;

/// How long a post waits for room in the runner's intake queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// The routes under `/api/v2`.
pub(super) fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/api/v2/alerts", alerts())
        .route("/api/v2/alerts/groups", get(get_groups))
        .route("/api/v2/silences", get(get_silences).post(post_silence))
        .route("/api/v2/silence/{id}", get(get_silence).delete(delete_silence))
        .route("/api/v2/status", get(get_status))
        .route("/api/v2/receivers", get(get_receivers))
}

/// `/api/v2/alerts`.
fn alerts() -> MethodRouter<ApiState> {
    get(get_alerts).post(post_alerts)
}

/// Takes a post of alerts: from a network in `intake.allow_from` (by
/// default loopback) without a token, from elsewhere with the bearer token.
/// 200 when every alert was taken; 400 listing the refused ones by index
/// and field (the others are still taken, as Alertmanager does); 413 past
/// [`MAX_BODY`].
async fn post_alerts(
    State(state): State<ApiState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let intake = state.intake.borrow().clone();
    let trusted = peer.is_some_and(|Extension(ConnectInfo(p))| intake.trusts(p.ip()));
    // Before reading the body: a stranger's 64 MiB is refused unread.
    if !trusted {
        super::server::authorize(&state, &headers)?;
    }
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} MiB or broke off: {e}", MAX_BODY >> 20),
        )
    })?;
    let now = now();
    let checked = if body.len() > BLOCKING_BODY {
        let policy = intake.clone();
        tokio::task::spawn_blocking(move || check_post(&body, &policy.policy, now))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("checking the post failed: {e}")))?
    } else {
        check_post(&body, &intake.policy, now)
    }
    .map_err(|e| ApiError::bad(e.to_string()))?;
    let taken = checked.batch.alerts.len();
    let (defaulted, refused) = (checked.defaulted, checked.refused);
    state.metrics.observe_intake(taken - defaulted.len(), defaulted.len(), refused.len());
    if taken > 0 {
        enqueue(&state, checked.batch).await?;
    }
    let body = json!({ "accepted": taken, "defaulted": defaulted, "refused": refused });
    if refused.is_empty() {
        return Ok(Json(body).into_response());
    }
    let mut body = body;
    body["error"] = json!(format!("{} of {} alerts refused: {}", refused.len(), refused.len() + taken, refused[0]));
    Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

async fn enqueue(state: &ApiState, batch: IntakeBatch) -> Result<(), ApiError> {
    match tokio::time::timeout(QUEUE_TIMEOUT, state.intake_batches.send(batch)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(closed)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, closed.to_string())),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the runner took no alerts for {}s: try again", QUEUE_TIMEOUT.as_secs()),
        )),
    }
}

/// Go's zero time: an alert whose end is not known (a rule's, still firing).
const NO_END: &str = "0001-01-01T00:00:00.000Z";

/// The query of `GET /api/v2/alerts` and `/alerts/groups`: `filter` may
/// repeat (`filter=a="b"&filter=c=~"d"`), as amtool sends it.
struct AlertFilter {
    matchers: Matchers,
    active: bool,
    silenced: bool,
    inhibited: bool,
}

impl AlertFilter {
    fn of(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut f = AlertFilter { matchers: Matchers::default(), active: true, silenced: true, inhibited: true };
        for (k, v) in pairs {
            let flag = || match v.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(ApiError::bad(format!("{k}: {other:?}; expected true or false"))),
            };
            match k.as_str() {
                "filter" => f.matchers.0.extend(parse_matchers("filter", v)?.0),
                "active" => f.active = flag()?,
                "silenced" => f.silenced = flag()?,
                "inhibited" => f.inhibited = flag()?,
                // Receivers are zkalert's channels per tier, not a tree.
                "receiver" | "unprocessed" => {}
                other => return Err(ApiError::bad(format!("unknown parameter {other:?}"))),
            }
        }
        Ok(f)
    }

    fn keeps(&self, v: &AlertView) -> bool {
        let silenced = !v.mute.silenced_by.is_empty() || !v.mute.maintenance.is_empty();
        let suppressed = silenced || v.mute.inhibited;
        v.alert.state == AlertState::Firing
            && self.matchers.matches(&v.alert.labels)
            && (suppressed || self.active)
            && (!silenced || self.silenced)
            && (!v.mute.inhibited || self.inhibited)
    }
}

/// An alert as `gettableAlert`.
fn gettable_alert(v: &AlertView, updated: Timestamp) -> Value {
    let a = &v.alert;
    let suppressed = v.mute.is_muted();
    // Maintenance windows mute as silences do: listed by name.
    let silenced_by: Vec<&String> = v.mute.silenced_by.iter().chain(&v.mute.maintenance).collect();
    let annotations: BTreeMap<&str, &str> = a.annotations.iter().collect();
    let generator = annotations.get("generator_url").copied().unwrap_or_default();
    json!({
        "labels": a.labels,
        "annotations": annotations,
        "receivers": [{"name": a.severity.as_str()}],
        "fingerprint": a.fingerprint.to_string(),
        "startsAt": a.fired_at.unwrap_or(a.active_at).to_rfc3339(),
        "updatedAt": updated.to_rfc3339(),
        "endsAt": a.resolved_at.map_or(NO_END.to_string(), Timestamp::to_rfc3339),
        "generatorURL": generator,
        "status": {
            "state": if suppressed { "suppressed" } else { "active" },
            "silencedBy": silenced_by,
            "inhibitedBy": if v.mute.inhibited { vec!["inhibit_rules"] } else { Vec::new() },
        },
    })
}

async fn get_alerts(
    State(state): State<ApiState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let filter = AlertFilter::of(&query(q)?)?;
    let snap = published(&state)?;
    let mut shown: Vec<&AlertView> = snap.alerts.iter().filter(|v| filter.keeps(v)).collect();
    shown.sort_by(AlertView::order);
    ok(shown.into_iter().map(|v| gettable_alert(v, snap.at)).collect::<Vec<Value>>())
}

async fn get_groups(
    State(state): State<ApiState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let filter = AlertFilter::of(&query(q)?)?;
    let snap = published(&state)?;
    // One pass over the alerts, not one per group.
    let mut by_group: FxHashMap<&str, Vec<&AlertView>> = FxHashMap::default();
    for v in snap.alerts.iter().filter(|v| filter.keeps(v)) {
        by_group.entry(&v.group_id).or_default().push(v);
    }
    let groups: Vec<Value> = snap
        .groups
        .iter()
        .filter_map(|g| {
            let mut alerts = by_group.remove(g.id.as_str())?;
            alerts.sort_by(AlertView::order);
            let alerts: Vec<Value> = alerts.into_iter().map(|v| gettable_alert(v, snap.at)).collect();
            let tier = g.tier.map_or("", Severity::as_str);
            Some(json!({ "labels": g.labels, "receiver": {"name": tier}, "alerts": alerts }))
        })
        .collect();
    ok(groups)
}

/// A silence as `gettableSilence`.
fn gettable_silence(s: &Silence, at: Timestamp) -> Value {
    let matchers: Vec<Value> = s
        .matchers
        .0
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "value": m.value,
                "isRegex": matches!(m.op, MatchOp::Re | MatchOp::NotRe),
                "isEqual": matches!(m.op, MatchOp::Eq | MatchOp::Re),
            })
        })
        .collect();
    json!({
        "id": s.id,
        "status": {"state": s.state(at)},
        "updatedAt": s.starts_at.min(at).to_rfc3339(),
        "matchers": matchers,
        "startsAt": s.starts_at.to_rfc3339(),
        "endsAt": s.ends_at.to_rfc3339(),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

async fn get_silences(
    State(state): State<ApiState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let mut filter = Matchers::default();
    for (k, v) in query(q)? {
        match k.as_str() {
            "filter" => filter.0.extend(parse_matchers("filter", &v)?.0),
            "creator" => {}
            other => return Err(ApiError::bad(format!("unknown parameter {other:?}"))),
        }
    }
    let snap = published(&state)?;
    // As Alertmanager: a silence is listed when the labels its equality
    // matchers name pass the filter.
    let listed = snap.silences.iter().filter(|s| {
        let labels = Labels::from_pairs(
            s.matchers.0.iter().filter(|m| m.op == MatchOp::Eq).map(|m| (m.name.as_str(), m.value.as_str())),
        );
        filter.matches(&labels)
    });
    ok(listed.map(|s| gettable_silence(s, snap.at)).collect::<Vec<_>>())
}

async fn get_silence(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let snap = published(&state)?;
    match snap.silences.iter().find(|s| s.id == id) {
        Some(s) => ok(gettable_silence(s, snap.at)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no silence {id:?}"))),
    }
}

/// `postableSilence`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<PostableMatcher>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableMatcher {
    name: String,
    value: String,
    is_regex: bool,
    #[serde(default = "yes")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

/// Adds a silence as amtool posts it (`silence add`); with the `id` of an
/// existing silence, replaces it (`silence update`).
async fn post_silence(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    super::server::authorize(&state, &headers)?;
    let posted: PostableSilence = json_body(body)?;
    let matchers = posted
        .matchers
        .iter()
        .map(|m| {
            let op = match (m.is_regex, m.is_equal) {
                (false, true) => MatchOp::Eq,
                (false, false) => MatchOp::Ne,
                (true, true) => MatchOp::Re,
                (true, false) => MatchOp::NotRe,
            };
            Matcher::new(m.name.clone(), op, m.value.clone())
                .map(|m| m.to_string())
                .map_err(|e| ApiError::bad(format!("matchers: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = SilenceRequest {
        matchers: format!("{{{}}}", matchers.join(",")),
        starts_at: Some(posted.starts_at),
        ends_at: Some(posted.ends_at),
        duration: None,
        created_by: posted.created_by,
        comment: posted.comment,
    };
    let mut silence = silence_from(request, now())?;
    if let Some(id) = posted.id.filter(|id| !id.is_empty()) {
        if !snapshot(&state).silences.iter().any(|s| s.id == id) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no silence {id:?}")));
        }
        silence.id = id;
    }
    match call(&state, |reply| Command::AddSilence { silence, reply }).await? {
        Ok(id) => ok(json!({ "silenceID": id })),
        Err(e) => Err(ApiError::bad(e)),
    }
}

async fn delete_silence(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    super::server::authorize(&state, &headers)?;
    match call(&state, |reply| Command::ExpireSilence { id, reply }).await? {
        Ok(_) => ok(json!({})),
        Err(e) => Err(ApiError::new(StatusCode::NOT_FOUND, e)),
    }
}

async fn get_status(State(state): State<ApiState>) -> ApiResult {
    let snap = snapshot(&state);
    let status = &snap.status;
    let config = match &status.config_path {
        Some(p) => format!("# zkalert: the configuration is {p} (zkalert.yaml), not an Alertmanager config\n"),
        None => "# zkalert: the built-in configuration\n".to_string(),
    };
    ok(json!({
        "cluster": {"status": "disabled", "peers": []},
        "versionInfo": {
            "version": status.version,
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        },
        "config": {"original": config},
        "uptime": status.started_at.to_rfc3339(),
    }))
}

async fn get_receivers(State(state): State<ApiState>) -> ApiResult {
    let snap = snapshot(&state);
    ok(snap.status.notifiers.iter().map(|n| json!({ "name": n })).collect::<Vec<_>>())
}
