//! The HTTP side: routes, bearer-token checks for writes, request
//! validation, and the round trip of each write to the runner. Every answer
//! but the two probes is JSON; every failure is `{"error": "..."}` with a
//! status that says whose fault it is (see `docs/api.md`).

use super::views::{
    AckRequest, AlertJson, AlertsReply, GroupJson, GroupsReply, SilenceJson, SilenceRequest, SilencesReply, StatusJson,
    alert_state_rank, silence_state_rank,
};
use super::{ApiState, Command, CommandError, Snapshot};
use crate::clock::{Clock, SystemClock};
use crate::model::{AlertState, Labels, Severity, Timestamp};
use crate::pipeline::{Ack, Matchers, Silence, SilenceState};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a write waits for the runner (it answers between steps).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/acks", post(ack))
        .route("/api/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/api/v1/deliveries", get(list_deliveries))
        .route("/api/v1/report", get(report))
        .route("/-/reload", post(reload))
        .merge(super::alertmanager::routes())
        .merge(super::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, within the
/// default [`super::ConnectionLimits`] (`zkalert run` sizes them to its
/// file-descriptor limit: `super::serve_limited`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    super::serve_limited(listener, state, Default::default(), shutdown).await
}

/// A failed request: its status and a message for the caller.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub(super) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) fn ok(body: impl serde::Serialize) -> ApiResult {
    Ok(axum::Json(body).into_response())
}

pub(super) fn now() -> Timestamp {
    SystemClock.now()
}

pub(super) fn snapshot(state: &ApiState) -> Arc<Snapshot> {
    state.snapshot.borrow().clone()
}

/// The snapshot the lists are read from, once the runner published one:
/// before its first step they would be empty, which is not true (503).
pub(super) fn published(state: &ApiState) -> Result<Arc<Snapshot>, ApiError> {
    let snap = snapshot(state);
    if snap.published {
        Ok(snap)
    } else {
        Err(ApiError::unavailable("not ready: state not loaded or no evaluation yet; try again in a few seconds"))
    }
}

async fn healthy() -> &'static str {
    "OK\n"
}

async fn ready(State(state): State<ApiState>) -> (StatusCode, String) {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: state not loaded or no evaluation yet\n".into());
    }
    match &snapshot(&state).status.state_write_failure {
        Some(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: cannot write the state file since {}: {}\n", f.since, f.error),
        ),
        None => (StatusCode::OK, "OK\n".into()),
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("not found: {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed on {}", uri.path()))
}

// ---- reads ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    /// `pending`, `firing`, `resolved`; comma-separated for several.
    state: Option<String>,
    /// `P0`…`P3`; comma-separated for several.
    tier: Option<String>,
    /// Matchers every listed alert's labels match.
    filter: Option<String>,
    silenced: Option<bool>,
    inhibited: Option<bool>,
    maintenance: Option<bool>,
    muted: Option<bool>,
    acked: Option<bool>,
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::bad(e.body_text()))
}

/// Splits a comma-separated filter and parses each item.
fn parse_list<T>(text: Option<&str>, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<Vec<T>>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).map_err(ApiError::bad))
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

/// A `state=` filter's item: one of `names` (in the order the error lists
/// them), for states of `kind` (alert, silence).
fn parse_state<T: Copy>(kind: &str, names: &[(&str, T)], text: &str) -> Result<T, String> {
    if let Some(&(_, state)) = names.iter().find(|(name, _)| *name == text) {
        return Ok(state);
    }
    let listed: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
    let (last, others) = listed.split_last().unwrap_or((&"", &[]));
    Err(format!("state: unknown {kind} state {text:?}: expected {} or {last}", others.join(", ")))
}

const ALERT_STATES: [(&str, AlertState); 3] =
    [("pending", AlertState::Pending), ("firing", AlertState::Firing), ("resolved", AlertState::Resolved)];

const SILENCE_STATES: [(&str, SilenceState); 3] =
    [("pending", SilenceState::Pending), ("active", SilenceState::Active), ("expired", SilenceState::Expired)];

pub(super) fn parse_matchers(field: &str, text: &str) -> Result<Matchers, ApiError> {
    Matchers::parse(text).map_err(|e| ApiError::bad(format!("{field}: {e}")))
}

async fn list_alerts(State(state): State<ApiState>, q: Result<Query<AlertQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let states = parse_list(q.state.as_deref(), |s| parse_state("alert", &ALERT_STATES, s))?;
    let tiers = parse_list(q.tier.as_deref(), |s| s.parse::<Severity>().map_err(|e| format!("tier: {e}")))?;
    let filter = q.filter.as_deref().map(|f| parse_matchers("filter", f)).transpose()?;
    let snap = published(&state)?;
    let want = |wanted: Option<bool>, is: bool| wanted.is_none_or(|w| w == is);
    let mut alerts: Vec<_> = snap
        .alerts
        .iter()
        .filter(|v| states.as_ref().is_none_or(|s| s.contains(&v.alert.state)))
        .filter(|v| tiers.as_ref().is_none_or(|t| t.contains(&v.alert.severity)))
        .filter(|v| filter.as_ref().is_none_or(|m| m.matches(&v.alert.labels)))
        .filter(|v| want(q.silenced, !v.mute.silenced_by.is_empty()))
        .filter(|v| want(q.inhibited, v.mute.inhibited))
        .filter(|v| want(q.maintenance, !v.mute.maintenance.is_empty()))
        .filter(|v| want(q.muted, v.mute.is_muted()))
        .filter(|v| want(q.acked, v.ack.is_some()))
        .collect();
    alerts.sort_by(|a, b| {
        let (a, b) = (&a.alert, &b.alert);
        (a.severity, alert_state_rank(a.state), &a.labels).cmp(&(b.severity, alert_state_rank(b.state), &b.labels))
    });
    let alerts: Vec<_> = alerts.into_iter().map(AlertJson::of).collect();
    ok(AlertsReply { alerts, at: snap.at })
}

async fn list_groups(State(state): State<ApiState>) -> ApiResult {
    let snap = published(&state)?;
    let mut groups: Vec<_> = snap.groups.iter().collect();
    groups.sort_by(|a, b| (a.tier.is_none(), a.tier, &a.id).cmp(&(b.tier.is_none(), b.tier, &b.id)));
    let groups: Vec<_> = groups.into_iter().map(GroupJson::of).collect();
    ok(GroupsReply { groups, at: snap.at })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceQuery {
    /// `pending`, `active`, `expired`; comma-separated for several.
    state: Option<String>,
}

async fn list_silences(State(state): State<ApiState>, q: Result<Query<SilenceQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let states = parse_list(q.state.as_deref(), |s| parse_state("silence", &SILENCE_STATES, s))?;
    let snap = published(&state)?;
    let mut silences: Vec<_> = snap
        .silences
        .iter()
        .map(|s| SilenceJson::of(s, snap.at))
        .filter(|s| states.as_ref().is_none_or(|w| w.contains(&s.state)))
        .collect();
    silences.sort_by(|a, b| {
        (silence_state_rank(a.state), a.ends_at, a.id).cmp(&(silence_state_rank(b.state), b.ends_at, b.id))
    });
    ok(SilencesReply { silences, at: snap.at })
}

/// The latest deliveries, newest first: channel, attempts, when delivered,
/// the last error (the delivery history).
async fn list_deliveries(State(state): State<ApiState>) -> ApiResult {
    let snap = published(&state)?;
    let deliveries: Vec<serde_json::Value> = snap
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "message_id": d.message_id,
                "channel": d.channel,
                "group_id": d.group_id,
                "tier": d.tier.as_str(),
                "created_at": d.created_at.to_rfc3339(),
                "attempts": d.attempts,
                "delivered_at": d.delivered_at.map(Timestamp::to_rfc3339),
                "last_error": d.last_error,
                "escalation": d.escalation,
                "failed_at": d.failed_at.map(Timestamp::to_rfc3339),
                "state": match (d.delivered_at, d.failed_at) {
                    (Some(_), _) => "delivered",
                    (None, Some(_)) => "failed",
                    (None, None) => "pending",
                },
            })
        })
        .collect();
    ok(json!({ "deliveries": deliveries, "at": snap.at.to_rfc3339() }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    cluster: String,
    /// How far back (default 24h, at most 31d).
    since: Option<String>,
    /// IANA name (default: the cluster's scheduled report's, else UTC).
    time_zone: Option<String>,
    /// `json` (default: the report's data), `text` or `html` (rendered).
    format: Option<String>,
}

/// Longer is no cluster's name: refused rather than echoed back in the error.
const MAX_CLUSTER_NAME: usize = 256;

/// `GET /api/v1/report?cluster=…`: one cluster's report now (`zkalert report`; docs/reports.md).
async fn report(State(state): State<ApiState>, q: Result<Query<ReportQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    if q.cluster.len() > MAX_CLUSTER_NAME {
        return Err(ApiError::bad(format!("cluster: a name of {} bytes; at most {MAX_CLUSTER_NAME}", q.cluster.len())));
    }
    let period = match q.since.as_deref() {
        None => crate::config::reports::DEFAULT_PERIOD,
        Some(s) => crate::duration::parse_duration(s)
            .ok()
            .filter(|d| !d.is_zero() && *d <= crate::config::reports::MAX_PERIOD)
            .ok_or_else(|| ApiError::bad(format!("since: {s:?} is not a duration from 1s to 31d (e.g. 24h)")))?,
    };
    let time_zone =
        match q.time_zone.as_deref() {
            None => None,
            Some(tz) => Some(tz.parse::<chrono_tz::Tz>().map_err(|_| {
                ApiError::bad(format!("time_zone: {tz:?} is not an IANA time zone (e.g. Asia/Shanghai)"))
            })?),
        };
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "text" | "html") {
        return Err(ApiError::bad(format!("format: {format:?}; expected json, text or html")));
    }
    let cluster = q.cluster;
    let (report, templates) = match call(&state, |reply| Command::Report { cluster, period, time_zone, reply }).await? {
        Ok(r) => r,
        Err(e) => return Err(ApiError::new(StatusCode::NOT_FOUND, e)),
    };
    if format == "json" {
        return ok(report);
    }
    let rendered = tokio::task::spawn_blocking(move || templates.render(&report))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render the report: {e}")))?;
    Ok(if format == "text" {
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], rendered.text).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], rendered.html).into_response()
    })
}

async fn status(State(state): State<ApiState>) -> ApiResult {
    let snap = snapshot(&state);
    let ready = state.ready.load(Ordering::Acquire);
    let heartbeat = state.heartbeat.as_ref().map(|h| h.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone());
    ok(StatusJson { heartbeat: heartbeat.as_ref(), ..StatusJson::of(&snap.status, ready, snap.at) })
}

/// How long a scrape waits for the runner's ZooKeeper series; without
/// them it still answers with zkalert's own metrics.
const SERIES_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics`, without a token (as Prometheus serves it): the
/// exposition is rendered off the async workers.
async fn metrics(State(state): State<ApiState>) -> Response {
    let (reply, answer) = oneshot::channel();
    // A full queue drops the request, and with it `reply`: no wait.
    let _ = state.commands.try_send(Command::ExportSeries { reply });
    let series = match tokio::time::timeout(SERIES_TIMEOUT, answer).await {
        Ok(Ok(series)) => Some(series),
        _ => {
            tracing::warn!("/metrics: the runner did not hand over the ZooKeeper series; serving zkalert's own");
            None
        }
    };
    let snap = snapshot(&state);
    let rendered = tokio::task::spawn_blocking(move || state.metrics.render(&snap, series.as_ref(), now())).await;
    match rendered {
        Ok(body) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render metrics: {e}")).into_response()
        }
    }
}

// ---- writes ----

/// Writes need `Authorization: Bearer <token>`; without a configured token
/// they are refused. The token is never echoed.
pub(super) fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "writes are disabled: set server.token_env or server.token_file",
        ));
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    match given {
        None => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token: send Authorization: Bearer <token>"))
        }
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong bearer token")),
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// Parses a JSON body with a message that says what is wrong and where.
pub(super) fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("empty request body: expected a JSON object"));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

fn parse_time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).map(|t| Timestamp::from_millis(t.timestamp_millis())).map_err(
        |e| ApiError::bad(format!("{field}: invalid RFC 3339 time {text:?}: {e} (example: 2025-01-31T18:00:00Z)")),
    )
}

/// How far ahead a silence may end or an acknowledgement last: a year. A
/// longer mute is a config change, not a silence.
pub const MAX_AHEAD: Duration = Duration::from_secs(365 * 24 * 3600);

/// Refuses an end more than [`MAX_AHEAD`] from now; `field` is what set it.
fn within_a_year(field: &str, end: Timestamp, now: Timestamp) -> Result<(), ApiError> {
    if end > now + MAX_AHEAD {
        let end = if end >= Timestamp::RFC3339_MAX { "beyond year 9999".to_string() } else { end.to_rfc3339() };
        return Err(ApiError::bad(format!(
            "{field}: ends {end}, more than 1 year ahead (at most {}); renew it then if still needed",
            (now + MAX_AHEAD).to_rfc3339()
        )));
    }
    Ok(())
}

fn parse_positive_duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    let d = crate::duration::parse_duration(text).map_err(|e| ApiError::bad(format!("{field}: {e}")))?;
    if d.is_zero() {
        return Err(ApiError::bad(format!("{field}: must be longer than zero")));
    }
    Ok(d)
}

/// Matchers for a write: they must select something specific, as
/// Alertmanager requires (`{a=~".*"}` would mute everything).
fn write_matchers(field: &str, text: &str) -> Result<Matchers, ApiError> {
    within_limit(field, text)?;
    let matchers = parse_matchers(field, text)?;
    if matchers.0.is_empty() {
        return Err(ApiError::bad(format!(
            "{field}: at least one matcher is required, e.g. {{instance=\"zk1:2181\"}}"
        )));
    }
    if matchers.matches(&Labels::new()) {
        return Err(ApiError::bad(format!("{field}: at least one matcher must not match the empty string")));
    }
    Ok(matchers)
}

/// The longest `created_by`, `comment` and `matchers` of a silence or an
/// ack: a silence is stored in every replica's state and as one znode of
/// the shared state, so a huge one must not get that far.
pub const MAX_TEXT: usize = 4096;

fn required(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::bad(format!("{field} is required")));
    }
    within_limit(field, v)?;
    Ok(v.to_string())
}

fn within_limit(field: &str, v: &str) -> Result<(), ApiError> {
    if v.len() > MAX_TEXT {
        return Err(ApiError::bad(format!("{field} is {} bytes, over the limit of {MAX_TEXT}", v.len())));
    }
    Ok(())
}

/// A new silence id: unique in this process (a counter) and across
/// restarts (the time), 16 hex digits.
fn new_silence_id(now: Timestamp, salt: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts: [&[u8]; 5] = [
        &now.as_millis().to_le_bytes(),
        &nanos.to_le_bytes(),
        &std::process::id().to_le_bytes(),
        &n.to_le_bytes(),
        salt.as_bytes(),
    ];
    for part in parts {
        for &b in part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Sends a command and waits for its reply; 503 if the runner is gone or
/// does not answer in time, or could not save the change.
pub(super) async fn call<T>(
    state: &ApiState,
    command: impl FnOnce(oneshot::Sender<Result<T, CommandError>>) -> Command,
) -> Result<Result<T, String>, ApiError> {
    let (tx, rx) = oneshot::channel();
    let round_trip = async {
        state.commands.send(command(tx)).await.map_err(|_| ApiError::unavailable("the runner is not running"))?;
        rx.await.map_err(|_| ApiError::unavailable("the runner stopped before answering"))
    };
    let reply = tokio::time::timeout(COMMAND_TIMEOUT, round_trip).await.unwrap_or_else(|_| {
        Err(ApiError::unavailable(format!("the runner did not answer within {}s", COMMAND_TIMEOUT.as_secs())))
    })?;
    match reply {
        Err(e @ (CommandError::NotPersisted(_) | CommandError::Unconfirmed(_))) => {
            Err(ApiError::unavailable(e.to_string()))
        }
        Err(CommandError::TooLarge(e)) => Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e)),
        Err(CommandError::Failed(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(CommandError::NotFound(e)) => Ok(Err(e)),
        Ok(v) => Ok(Ok(v)),
    }
}

/// `POST /-/reload`: answers once the reload is applied (200) or refused
/// (422, nothing changed), with the outcome and every problem found.
async fn reload(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult {
    authorize(&state, &headers)?;
    match call(&state, |reply| Command::Reload { reply }).await? {
        Ok(outcome) => {
            let status = if outcome.successful { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
            Ok((status, axum::Json(outcome)).into_response())
        }
        Err(e) => Err(ApiError::new(StatusCode::NOT_FOUND, e)),
    }
}

async fn add_silence(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&state, &headers)?;
    let silence = silence_from(json_body(body)?, now())?;
    match call(&state, |reply| Command::AddSilence { silence, reply }).await? {
        Ok(id) => ok(json!({ "id": id })),
        Err(e) => Err(ApiError::bad(e)),
    }
}

/// A new silence as `req` asks for it at `now`, validated.
pub(super) fn silence_from(req: SilenceRequest, now: Timestamp) -> Result<Silence, ApiError> {
    let matchers = write_matchers("matchers", &req.matchers)?;
    let starts_at = req.starts_at.as_deref().map(|t| parse_time("starts_at", t)).transpose()?.unwrap_or(now);
    let ends_at = match (req.ends_at.as_deref(), req.duration.as_deref()) {
        (Some(t), None) => parse_time("ends_at", t)?,
        (None, Some(d)) => starts_at + parse_positive_duration("duration", d)?,
        (Some(_), Some(_)) => return Err(ApiError::bad("give either ends_at or duration, not both")),
        (None, None) => return Err(ApiError::bad("ends_at or duration is required")),
    };
    if ends_at <= now {
        return Err(ApiError::bad(format!("ends_at ({ends_at}) is in the past")));
    }
    if ends_at <= starts_at {
        return Err(ApiError::bad(format!("ends_at ({ends_at}) must be after starts_at ({starts_at})")));
    }
    within_a_year(if req.duration.is_some() { "duration" } else { "ends_at" }, ends_at, now)?;
    let created_by = required("created_by", &req.created_by)?;
    let comment = required("comment", &req.comment)?;
    Ok(Silence { id: new_silence_id(now, &req.matchers), matchers, starts_at, ends_at, created_by, comment })
}

async fn expire_silence(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    authorize(&state, &headers)?;
    match call(&state, |reply| Command::ExpireSilence { id, reply }).await? {
        Ok(silence) => {
            // As it is now: over (its end is at or before the reply).
            let at = snapshot(&state).at.max(silence.ends_at).max(now());
            ok(SilenceJson::of(&silence, at))
        }
        Err(e) => Err(ApiError::new(StatusCode::NOT_FOUND, e)),
    }
}

async fn ack(State(state): State<ApiState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult {
    authorize(&state, &headers)?;
    let (group_id, matchers, ack) = ack_from(json_body(body)?, now())?;
    match call(&state, |reply| Command::Ack { group_id, matchers, ack, reply }).await? {
        Ok(ids) => ok(json!({ "acked": ids })),
        Err(e) => Err(ApiError::new(StatusCode::NOT_FOUND, e)),
    }
}

/// What an acknowledgement `req` at `now` names (a group or matchers) and
/// the ack itself, validated.
pub(super) fn ack_from(req: AckRequest, now: Timestamp) -> Result<(Option<String>, Option<Matchers>, Ack), ApiError> {
    let (group_id, matchers) = match (req.group_id.as_deref().map(str::trim), req.matchers.as_deref()) {
        (Some(id), None) if !id.is_empty() => (Some(id.to_string()), None),
        (Some(_), None) => return Err(ApiError::bad("group_id must not be empty")),
        (None, Some(m)) => (None, Some(write_matchers("matchers", m)?)),
        (Some(_), Some(_)) => return Err(ApiError::bad("give either group_id or matchers, not both")),
        (None, None) => return Err(ApiError::bad("group_id or matchers is required")),
    };
    let until = match (req.until.as_deref(), req.duration.as_deref()) {
        (Some(t), None) => Some(parse_time("until", t)?),
        (None, Some(d)) => Some(now + parse_positive_duration("duration", d)?),
        (Some(_), Some(_)) => return Err(ApiError::bad("give either until or duration, not both")),
        (None, None) => None,
    };
    if let Some(until) = until.filter(|u| *u <= now) {
        return Err(ApiError::bad(format!("until ({until}) is in the past")));
    }
    if let Some(until) = until {
        within_a_year(if req.duration.is_some() { "duration" } else { "until" }, until, now)?;
    }
    within_limit("comment", req.comment.trim())?;
    let ack = Ack { by: required("by", &req.by)?, comment: req.comment.trim().to_string(), at: now, until };
    Ok((group_id, matchers, ack))
}
