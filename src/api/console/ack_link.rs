//! The page a message's ack link opens, for an on-call with only a phone:
//! the link carries a capability for its group (`exp` and `sig`, see
//! [`crate::capability`]), valid while the group fires or for 24 h after
//! the message, so no login and no shared token. The page shows the
//! group's alerts and two buttons (POST): acknowledge, silence for 1 h.
//! An unknown group is 404; a forged or expired link 403.

use super::{ApiError, rows};
use crate::api::server::{ack_from, call, now, published, silence_from};
use crate::api::{AckRequest, AlertView, ApiState, Command, GroupView, SilenceRequest, Snapshot};
use crate::capability::LinkError;
use crate::model::AlertState;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Capability {
    exp: String,
    sig: String,
}

/// The group the link names, if the link is genuine and still valid.
fn admit(state: &ApiState, group_id: &str, cap: &Capability) -> Result<(Arc<Snapshot>, GroupView), ApiError> {
    let snap = published(state)?;
    let Some(group) = snap.groups.iter().find(|g| g.id == group_id).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no alert group {group_id}: it may have resolved and been forgotten"),
        ));
    };
    let refuse = |e: LinkError| ApiError::new(StatusCode::FORBIDDEN, e.to_string());
    let expires = state.secret.check_ack(group_id, &cap.exp, &cap.sig).map_err(refuse)?;
    if now() >= expires && group.alerts == 0 {
        return Err(refuse(LinkError::Expired));
    }
    Ok((snap, group))
}

fn render(status: StatusCode, snap: &Snapshot, group: &GroupView, cap: &Capability, done: Option<String>) -> Response {
    let mut shown: Vec<&AlertView> =
        snap.alerts.iter().filter(|v| *v.group_id == *group.id && v.alert.state != AlertState::Resolved).collect();
    shown.sort_by(AlertView::order);
    let alerts: Vec<_> = shown
        .into_iter()
        .map(|v| {
            minijinja::context! {
                name => v.alert.labels.get("alertname").unwrap_or("?"),
                tier => v.alert.severity.as_str(),
                state => v.alert.state.as_str(),
                target => v.alert.labels.get("instance").or_else(|| v.alert.labels.get("cluster")).unwrap_or(""),
                since => rows::age(v.alert.fired_at.unwrap_or(v.alert.active_at), snap.at),
                value => rows::number(v.alert.value),
                summary => v.alert.annotation("summary").unwrap_or(""),
            }
        })
        .collect();
    let ack = group.ack.as_ref().map(|a| format!("{} ({} ago)", a.by, rows::age(a.at, snap.at)));
    super::html(
        status,
        "ack.html",
        page! {
            frame => minijinja::context! { page => "ack", csrf => None::<String>, writable => false, at => rows::clock_time(snap.at) },
            group => minijinja::context! {
                id => &group.id, labels => group.labels.to_string(), tier => group.tier.map(|t| t.as_str()),
            },
            alerts, ack, done, exp => &cap.exp, sig => &cap.sig,
        },
    )
}

pub(super) async fn page(
    State(state): State<ApiState>,
    Path(group_id): Path<String>,
    q: Result<Query<Capability>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let cap = q.map(|Query(c)| c).unwrap_or_default();
    match admit(&state, &group_id, &cap) {
        Ok((snap, group)) => render(StatusCode::OK, &snap, &group, &cap, None),
        Err(e) => e.page("/"),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ActForm {
    exp: String,
    sig: String,
    /// `ack` or `silence`.
    action: String,
    by: String,
}

pub(super) async fn act(
    State(state): State<ApiState>,
    Path(group_id): Path<String>,
    Form(form): Form<ActForm>,
) -> Response {
    let cap = Capability { exp: form.exp, sig: form.sig };
    let (_, group) = match admit(&state, &group_id, &cap) {
        Ok(admitted) => admitted,
        Err(e) => return e.page("/"),
    };
    let by = if form.by.trim().is_empty() { "ack link".to_string() } else { form.by.trim().to_string() };
    let now = now();
    let done = match form.action.as_str() {
        "ack" => {
            let req = AckRequest { group_id: Some(group_id.clone()), by: by.clone(), ..Default::default() };
            let (group_id, matchers, ack) = match ack_from(req, now) {
                Ok(parts) => parts,
                Err(e) => return e.page("/"),
            };
            call(&state, |reply| Command::Ack { group_id, matchers, ack, reply })
                .await
                .map(|r| r.map(|_| format!("Acknowledged by {by}.")))
        }
        "silence" => {
            let req = SilenceRequest {
                matchers: group.labels.to_string(),
                duration: Some("1h".into()),
                created_by: by.clone(),
                comment: format!("silenced for 1h from the ack link of group {group_id}"),
                ..Default::default()
            };
            let silence = match silence_from(req, now) {
                Ok(s) => s,
                Err(e) => return e.page("/"),
            };
            let shown = silence.clone();
            let command = |reply| Command::AddSilence { silence, reply };
            super::write_then_settle(&state, call(&state, command), |snap, _| super::shows_silence(snap, &shown))
                .await
                .map(|r| r.map(|id| format!("Silenced for 1 hour by {by} (silence {id}).")))
        }
        other => return ApiError::bad(format!("unknown action {other:?}: ack or silence")).page("/"),
    };
    let done = match done {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return ApiError::new(StatusCode::NOT_FOUND, e).page("/"),
        Err(e) => return e.page("/"),
    };
    let snap = super::super::server::snapshot(&state);
    let group = snap.groups.iter().find(|g| g.id == group_id).cloned().unwrap_or(group);
    render(StatusCode::OK, &snap, &group, &cap, Some(done))
}
