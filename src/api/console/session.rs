//! Console writes: the API token typed once per browser session into a
//! login form sets an HttpOnly, SameSite=Strict cookie (signed, never the
//! token itself); every form carries a CSRF token derived from that cookie,
//! checked on POST; a cross-site `Origin` is refused. Writes then take the
//! same validation and command round trip as the JSON API.

use super::{ApiError, message};
use crate::api::server::{ack_from, call, constant_time_eq, now, silence_from};
use crate::api::{AckRequest, ApiState, Command, SilenceRequest};
use crate::model::Timestamp;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::time::Duration;

const COOKIE: &str = "zkalert_session";
/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// A session issued at `issued`: `<ms>.<hmac>`. The MAC covers the API
/// token, so changing the token ends every session.
fn session_for(state: &ApiState, token: &str, issued: Timestamp) -> String {
    let issued = issued.as_millis().to_string();
    let sig = state.secret.sign("session", &[&issued, token]);
    format!("{issued}.{sig}")
}

/// The request's session cookie, if it is one this server signed under the
/// current token and it has not expired.
fn session(state: &ApiState, headers: &HeaderMap) -> Option<String> {
    let token = state.token.as_deref().filter(|t| !t.is_empty())?;
    let value = cookie_value(headers, COOKIE)?;
    let (issued, sig) = value.split_once('.')?;
    let issued_at = Timestamp::from_millis(issued.parse().ok()?);
    let fresh = issued_at <= now() && now() < issued_at + SESSION_LIFETIME;
    (fresh && state.secret.verify("session", &[issued, token], sig)).then(|| value.to_string())
}

/// The CSRF token forms carry while logged in.
pub(super) fn csrf_of(state: &ApiState, headers: &HeaderMap) -> Option<String> {
    session(state, headers).map(|s| state.secret.sign("csrf", &[&s]))
}

/// A browser's `Origin`, when sent, must be this host: a form posted from
/// another site is refused even before its cookie would be.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

/// A write's checks: writes enabled, same origin, logged in, the form's
/// CSRF token matches the session.
fn check_write(state: &ApiState, headers: &HeaderMap, csrf: &str, back: &str) -> Result<(), Box<Response>> {
    if state.token.as_deref().is_none_or(str::is_empty) {
        return Err(Box::new(
            ApiError::new(StatusCode::FORBIDDEN, "writes are disabled: set server.token_env or server.token_file")
                .page(back),
        ));
    }
    if !same_origin(headers) {
        return Err(Box::new(
            ApiError::new(StatusCode::FORBIDDEN, "refused: the form was posted from another site").page(back),
        ));
    }
    let Some(expected) = csrf_of(state, headers) else {
        return Err(Box::new(message(
            StatusCode::UNAUTHORIZED,
            "Log in first",
            "Writes need the API token once per browser session.",
            &format!("/login?next={}", crate::notify::percent_encode(back)),
        )));
    };
    if !constant_time_eq(csrf.as_bytes(), expected.as_bytes()) {
        return Err(Box::new(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "refused: the form's CSRF token does not match this session; reload the page and try again",
            )
            .page(back),
        ));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

/// Only a local path is a place to go after logging in.
fn local(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\')).unwrap_or("/")
}

pub(super) async fn login_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = q.ok().and_then(|Query(q)| q.next);
    let frame = super::frame(&state, &headers, "login", state.snapshot.borrow().at);
    super::html(StatusCode::OK, "login.html", page! { frame, next => local(next.as_deref()), error => None::<String> })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LoginForm {
    token: String,
    next: Option<String>,
}

pub(super) async fn login(State(state): State<ApiState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let next = local(form.next.as_deref()).to_string();
    let refuse = |status: StatusCode, error: &str| {
        let frame = super::frame(&state, &headers, "login", state.snapshot.borrow().at);
        super::html(status, "login.html", page! { frame, next => &next, error })
    };
    let Some(token) = state.token.as_deref().filter(|t| !t.is_empty()) else {
        return refuse(StatusCode::FORBIDDEN, "writes are disabled: set server.token_env or server.token_file");
    };
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "refused: the form was posted from another site");
    }
    if !constant_time_eq(form.token.trim().as_bytes(), token.as_bytes()) {
        return refuse(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        session_for(&state, token, now()),
        SESSION_LIFETIME.as_secs()
    );
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn logout(State(state): State<ApiState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Err(page) = check_write(&state, &headers, &form.csrf, "/") {
        return *page;
    }
    with_cookie(Redirect::to("/").into_response(), &format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"))
}

/// Runs a validated write and redirects to `back` once the snapshot
/// `shows` it; its refusal is a page.
async fn run_write<T>(
    state: &ApiState,
    back: &str,
    not_found: StatusCode,
    command: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, crate::api::CommandError>>) -> Command,
    shows: impl Fn(&crate::api::Snapshot, &T) -> bool,
) -> Response {
    match super::write_then_settle(state, call(state, command), shows).await {
        Ok(Ok(_)) => Redirect::to(back).into_response(),
        Ok(Err(e)) => ApiError::new(not_found, e).page(back),
        Err(e) => e.page(back),
    }
}

fn non_empty(text: String) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct AckForm {
    csrf: String,
    by: String,
    comment: String,
    duration: String,
}

pub(super) async fn ack_group(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    Form(form): Form<AckForm>,
) -> Response {
    if let Err(page) = check_write(&state, &headers, &form.csrf, "/groups") {
        return *page;
    }
    let req = AckRequest {
        group_id: Some(group_id),
        by: form.by,
        comment: form.comment,
        duration: non_empty(form.duration),
        ..Default::default()
    };
    match ack_from(req, now()) {
        Ok((group_id, matchers, ack)) => {
            let command = |reply| Command::Ack { group_id, matchers, ack, reply };
            run_write(&state, "/groups", StatusCode::NOT_FOUND, command, |snap, ids| super::shows_acks(snap, ids)).await
        }
        Err(e) => e.page("/groups"),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SilenceForm {
    csrf: String,
    matchers: String,
    duration: String,
    created_by: String,
    comment: String,
}

pub(super) async fn add_silence(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(form): Form<SilenceForm>,
) -> Response {
    if let Err(page) = check_write(&state, &headers, &form.csrf, "/silences") {
        return *page;
    }
    let req = SilenceRequest {
        matchers: form.matchers,
        duration: Some(form.duration),
        created_by: form.created_by,
        comment: form.comment,
        ..Default::default()
    };
    match silence_from(req, now()) {
        Ok(silence) => {
            let shown = silence.clone();
            let command = |reply| Command::AddSilence { silence, reply };
            run_write(&state, "/silences", StatusCode::BAD_REQUEST, command, |snap, _| {
                super::shows_silence(snap, &shown)
            })
            .await
        }
        Err(e) => e.page("/silences"),
    }
}

pub(super) async fn expire_silence(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(page) = check_write(&state, &headers, &form.csrf, "/silences") {
        return *page;
    }
    let command = |reply| Command::ExpireSilence { id, reply };
    run_write(&state, "/silences", StatusCode::NOT_FOUND, command, super::shows_silence).await
}
