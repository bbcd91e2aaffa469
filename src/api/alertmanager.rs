//! The Alertmanager API v2 surface (docs/alertmanager.md): `POST
//! /api/v2/alerts`, where Prometheus sends its alerts. Posts are parsed and
//! checked here, on the API's threads, and reach the runner's loop as
//! [`IntakeBatch`]es, so a burst of posts costs the loop only the alerts.

use super::ApiState;
use super::server::{ApiError, now};
use crate::intake::{IntakeBatch, MAX_BODY, check_post};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use axum::{Extension, Json};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// Bodies past this size are checked off the async workers.
const BLOCKING_BODY: usize = 64 << 10;

/// How long a post waits for room in the runner's intake queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// `/api/v2/alerts`.
pub(super) fn alerts() -> MethodRouter<ApiState> {
    post(post_alerts).layer(DefaultBodyLimit::max(MAX_BODY))
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let intake = state.intake.borrow().clone();
    let trusted = peer.is_some_and(|Extension(ConnectInfo(p))| intake.trusts(p.ip()));
    if !trusted {
        super::server::authorize(&state, &headers)?;
    }
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
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
        Ok(Err(_)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the runner is not running")),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the runner took no alerts for {}s: try again", QUEUE_TIMEOUT.as_secs()),
        )),
    }
}
