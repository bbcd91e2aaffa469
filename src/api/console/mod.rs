//! The web console at `/`: server-rendered HTML pages (minijinja, the
//! templates in `templates/`, autoescaped) over the snapshot the API reads,
//! usable without JavaScript and on a phone. Reads are open like the JSON
//! API; writes need a session (`session`), ack links a capability
//! (`ack_link`). Runbooks are served here too, as HTML or Markdown.

/// A template context whose values are any `Serialize` (minijinja's
/// `context!` takes only what converts into a `Value`).
macro_rules! page {
    (@value $key:ident $value:expr) => { $value };
    (@value $key:ident) => { $key };
    ($($key:ident $(=> $value:expr)?),* $(,)?) => {
        minijinja::context! { $($key => minijinja::Value::from(minijinja::value::Serde(page!(@value $key $($value)?)))),* }
    };
}

mod ack_link;
mod rows;
mod session;

use super::server::{ApiError, published};
use super::{ApiState, Snapshot};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

pub use rows::alerts_page_html;
#[cfg(test)]
pub(crate) use rows::markdown_to_html as markdown_for_test;

/// The console's routes (merged into the API's router).
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(alerts_page))
        .route("/groups", get(groups_page))
        .route("/groups/{group_id}/ack", post(session::ack_group))
        .route("/silences", get(silences_page).post(session::add_silence))
        .route("/silences/{id}/expire", post(session::expire_silence))
        .route("/clusters", get(clusters_page))
        .route("/deliveries", get(deliveries_page))
        .route("/rules", get(rules_page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/ack/{group_id}", get(ack_link::page).post(ack_link::act))
        .route("/runbooks/{*reference}", get(runbook))
        .route("/console.css", get(stylesheet))
}

const TEMPLATES: [(&str, &str); 11] = [
    ("base.html", include_str!("templates/base.html")),
    ("alerts.html", include_str!("templates/alerts.html")),
    ("groups.html", include_str!("templates/groups.html")),
    ("silences.html", include_str!("templates/silences.html")),
    ("clusters.html", include_str!("templates/clusters.html")),
    ("deliveries.html", include_str!("templates/deliveries.html")),
    ("rules.html", include_str!("templates/rules.html")),
    ("login.html", include_str!("templates/login.html")),
    ("ack.html", include_str!("templates/ack.html")),
    ("runbook.html", include_str!("templates/runbook.html")),
    ("message.html", include_str!("templates/message.html")),
];

/// The templates, parsed once; `.html` names autoescape (minijinja's default).
fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, text) in TEMPLATES {
            env.add_template(name, text).expect("the console's templates parse (tested)");
        }
        env
    })
}

/// What every page shows around its content.
#[derive(Serialize)]
struct Frame<'a> {
    /// The nav entry to highlight.
    page: &'a str,
    /// Logged in: a CSRF token for the page's forms.
    csrf: Option<String>,
    /// Writes are possible at all (a token is configured).
    writable: bool,
    at: String,
}

fn frame<'a>(state: &ApiState, headers: &HeaderMap, page: &'a str, at: crate::model::Timestamp) -> Frame<'a> {
    Frame {
        page,
        csrf: session::csrf_of(state, headers),
        writable: state.token.as_deref().is_some_and(|t| !t.is_empty()),
        at: rows::clock_time(at),
    }
}

/// Renders `template` with `ctx`; see [`respond`].
fn html(status: StatusCode, template: &str, ctx: minijinja::Value) -> Response {
    respond(status, template, env().get_template(template).and_then(|t| t.render(ctx)))
}

/// A rendered page as HTML; a render error is a 500 (logged).
fn respond(status: StatusCode, template: &str, rendered: Result<String, minijinja::Error>) -> Response {
    match rendered {
        Ok(body) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], body)
            .into_response(),
        Err(e) => {
            tracing::error!(template, error = %e, "console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("console page {template} failed to render: {e}\n"))
                .into_response()
        }
    }
}

/// A page with one message (an error or a confirmation) and a way back.
fn message(status: StatusCode, title: &str, text: &str, back: &str) -> Response {
    html(
        status,
        "message.html",
        page! { title, text, back, frame => minijinja::context! {
        page => "", csrf => None::<String>, writable => false, at => "" } },
    )
}

impl ApiError {
    /// The error as a console page.
    fn page(self, back: &str) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_string();
        message(self.status, &title, &self.message, back)
    }
}

/// Runs a write's command round trip, then waits (at most 1 s) until the
/// runner's snapshot `shows` its result, so the page shown next has the
/// change: the runner replies before it publishes.
async fn write_then_settle<T>(
    state: &ApiState,
    write: impl std::future::Future<Output = Result<Result<T, String>, ApiError>>,
    shows: impl Fn(&Snapshot, &T) -> bool,
) -> Result<Result<T, String>, ApiError> {
    let mut next = state.snapshot.clone();
    let result = write.await;
    if let Ok(Ok(value)) = &result {
        let settled = async {
            loop {
                let shown = shows(&next.borrow_and_update(), value);
                if shown || next.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), settled).await;
    }
    result
}

/// Whether `snap` shows the acks of groups `ids`.
fn shows_acks(snap: &Snapshot, ids: &[String]) -> bool {
    ids.iter().all(|id| snap.groups.iter().any(|g| &g.id == id && g.ack.is_some()))
}

/// Whether `snap` shows the silence `id` as it now is.
fn shows_silence(snap: &Snapshot, silence: &crate::pipeline::Silence) -> bool {
    snap.silences.iter().any(|s| s.id == silence.id && s.ends_at == silence.ends_at)
}

/// `page` of the published snapshot, or the 503 page before there is one.
fn with_snapshot(state: &ApiState, page: impl FnOnce(Arc<Snapshot>) -> Response) -> Response {
    match published(state) {
        Ok(snap) => page(snap),
        Err(e) => e.page("/"),
    }
}

/// What a page's URL may ask for.
#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    /// Alerts: `all` shows resolved alerts too.
    show: Option<String>,
    /// Silences: the new silence's fields, and its matchers to preview (the
    /// alerts they would silence now).
    matchers: Option<String>,
    comment: Option<String>,
    duration: Option<String>,
    created_by: Option<String>,
}

/// The page's query; one that does not parse asks for nothing.
type Asked = Result<Query<PageQuery>, QueryRejection>;

async fn alerts_page(State(state): State<ApiState>, headers: HeaderMap, q: Asked) -> Response {
    with_snapshot(&state, |snap| {
        let all = q.is_ok_and(|Query(q)| q.show.as_deref() == Some("all"));
        let frame = frame(&state, &headers, "alerts", snap.at);
        respond(StatusCode::OK, "alerts.html", rows::render_alerts_page(&snap, &state.runbooks.borrow(), &frame, all))
    })
}

async fn groups_page(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    listing(&state, &headers, "groups", |snap| page! { groups => rows::groups(snap) })
}

async fn silences_page(State(state): State<ApiState>, headers: HeaderMap, q: Asked) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    listing(&state, &headers, "silences", |snap| {
        let preview = q.matchers.as_deref().filter(|m| !m.trim().is_empty()).map(|m| rows::preview(snap, m));
        page! {
            silences => rows::silences(snap),
            preview,
            form => minijinja::context! {
                matchers => q.matchers.clone().unwrap_or_default(),
                comment => q.comment.unwrap_or_default(),
                duration => q.duration.unwrap_or_else(|| "2h".into()),
                created_by => q.created_by.unwrap_or_default(),
            },
        }
    })
}

async fn clusters_page(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    listing(&state, &headers, "clusters", |snap| page! { clusters => rows::clusters(snap) })
}

async fn deliveries_page(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    listing(&state, &headers, "deliveries", |snap| page! { deliveries => rows::deliveries(snap) })
}

async fn rules_page(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    listing(&state, &headers, "rules", |snap| page! { rules => rows::rules(snap), status => rows::status(snap) })
}

/// Page `name` (template `<name>.html`) of what `rows` reads from the
/// snapshot, in the frame.
fn listing(
    state: &ApiState,
    headers: &HeaderMap,
    name: &'static str,
    rows: impl FnOnce(&Snapshot) -> minijinja::Value,
) -> Response {
    with_snapshot(state, |snap| {
        let frame = minijinja::Value::from(minijinja::value::Serde(frame(state, headers, name, snap.at)));
        html(StatusCode::OK, &format!("{name}.html"), minijinja::context! { frame, ..rows(&snap) })
    })
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        ],
        include_str!("templates/console.css"),
    )
        .into_response()
}

/// A runbook a rule names: `/runbooks/zookeeper/node-down` (or `.md`, the
/// link messages carry when `runbook_base_url` points here). A browser
/// (`Accept: text/html`) gets it rendered; anything else the Markdown text.
async fn runbook(State(state): State<ApiState>, headers: HeaderMap, Path(reference): Path<String>) -> Response {
    let name = reference.strip_suffix(".md").unwrap_or(&reference);
    let missing = || ApiError::new(StatusCode::NOT_FOUND, format!("no runbook {reference:?}"));
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/html")));
    let Some(path) = state.runbooks.borrow().get(name).cloned() else {
        return if wants_html { missing().page("/") } else { missing().into_response() };
    };
    let Ok(text) = tokio::fs::read_to_string(path).await else {
        return if wants_html { missing().page("/") } else { missing().into_response() };
    };
    if !wants_html {
        return ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], text).into_response();
    }
    let body = rows::markdown_to_html(&text);
    let title = text.lines().find_map(|l| l.strip_prefix("# ")).unwrap_or(name).trim().to_string();
    html(
        StatusCode::OK,
        "runbook.html",
        page! {
            frame => frame(&state, &headers, "", state.snapshot.borrow().at),
            title,
            name,
            body => minijinja::Value::from_safe_string(body),
        },
    )
}
