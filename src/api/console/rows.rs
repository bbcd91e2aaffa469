//! What the console's templates render: the snapshot turned into rows of
//! display strings (times relative to the snapshot, values formatted,
//! sparklines as SVG polyline points), so templates hold no logic.

use super::Frame;
use crate::api::{AlertView, NodeView, Snapshot};
use crate::model::{AlertState, Severity, Timestamp};
use crate::pipeline::{Matchers, SilenceState};
use crate::rule::RuleHealth;
use rustc_hash::FxHashMap;
use serde::Serialize;

/// "12:04:05 UTC" for a time in a page header.
pub(super) fn clock_time(t: Timestamp) -> String {
    let rfc = t.to_rfc3339();
    rfc.get(11..19).map_or(rfc.clone(), |hms| format!("{hms} UTC"))
}

/// How long before `now` `t` was: "45s", "12m", "3h 5m", "2d 4h".
pub(super) fn age(t: Timestamp, now: Timestamp) -> String {
    let secs = now.since(t).as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// How long from `now` until `t`: "in 1h 59m", or the age of a past time.
fn until(t: Timestamp, now: Timestamp) -> String {
    if t > now { format!("in {}", age(now, t)) } else { format!("{} ago", age(t, now)) }
}

/// A number as a person reads it: integers without a fraction, others to
/// 3 significant decimals.
pub(super) fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn annotation<'a>(v: &'a AlertView, name: &str) -> &'a str {
    v.alert.annotation(name).unwrap_or("")
}

/// The local runbooks this server renders, by reference.
pub(super) type LocalRunbooks = std::collections::BTreeMap<String, std::path::PathBuf>;

/// Where an alert's runbook opens: itself when it is a URL, the page this
/// server renders (`/runbooks/<reference>`) when it is a local runbook.
fn runbook_link(runbook: Option<&str>, local: &LocalRunbooks) -> Option<String> {
    let r = runbook?.trim();
    if r.starts_with("http://") || r.starts_with("https://") {
        return Some(r.to_string());
    }
    let r = r.trim_start_matches('/');
    let r = r.strip_suffix(".md").unwrap_or(r);
    local.contains_key(r).then(|| format!("/runbooks/{r}"))
}

#[derive(Serialize)]
pub(super) struct AlertRow<'a> {
    name: &'a str,
    /// `instance` or `cluster`: where it is.
    target: &'a str,
    labels: String,
    state: &'static str,
    since: String,
    since_rfc3339: String,
    value: String,
    summary: &'a str,
    runbook: Option<String>,
    group_id: &'a str,
    silenced: bool,
    inhibited: bool,
    maintenance: bool,
    acked_by: Option<&'a str>,
    /// Why the group's last message was sent.
    reason: Option<&'static str>,
}

fn alert_row<'a>(
    v: &'a AlertView,
    now: Timestamp,
    reasons: &FxHashMap<&str, &'static str>,
    runbooks: &LocalRunbooks,
) -> AlertRow<'a> {
    let a = &v.alert;
    let since = a.fired_at.unwrap_or(a.active_at);
    let labels = a.labels.get_pairs_without(&["alertname"]);
    AlertRow {
        name: a.labels.get("alertname").unwrap_or("?"),
        target: a.labels.get("instance").or_else(|| a.labels.get("cluster")).unwrap_or(""),
        labels,
        state: a.state.as_str(),
        since: age(since, now),
        since_rfc3339: since.to_rfc3339(),
        value: number(a.value),
        summary: annotation(v, "summary"),
        runbook: runbook_link(a.runbook.as_deref(), runbooks),
        group_id: &v.group_id,
        silenced: !v.mute.silenced_by.is_empty(),
        inhibited: v.mute.inhibited,
        maintenance: !v.mute.maintenance.is_empty(),
        acked_by: v.ack.as_ref().map(|a| a.by.as_str()),
        reason: reasons.get(&*v.group_id).copied(),
    }
}

trait PairsWithout {
    fn get_pairs_without(&self, skip: &[&str]) -> String;
}

impl PairsWithout for crate::model::Labels {
    /// `a=1 b=2`, leaving out `skip`.
    fn get_pairs_without(&self, skip: &[&str]) -> String {
        let mut out = String::new();
        for (k, v) in self.iter().filter(|(k, _)| !skip.contains(k)) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

#[derive(Serialize)]
struct Tier<'a> {
    tier: &'static str,
    alerts: Vec<AlertRow<'a>>,
}

/// The alerts page: alerts by tier, firing before pending before resolved;
/// resolved ones only with `all`.
pub(super) fn render_alerts_page(
    snap: &Snapshot,
    runbooks: &LocalRunbooks,
    frame: &Frame<'_>,
    all: bool,
) -> Result<String, minijinja::Error> {
    let reasons: FxHashMap<&str, &'static str> =
        snap.groups.iter().filter_map(|g| Some((g.id.as_str(), g.last_reason?.as_str()))).collect();
    let mut views: Vec<&AlertView> =
        snap.alerts.iter().filter(|v| all || v.alert.state != AlertState::Resolved).collect();
    views.sort_by(|a, b| {
        let rank = |s: AlertState| crate::api::views::alert_state_rank(s);
        (a.alert.severity, rank(a.alert.state), &a.alert.labels).cmp(&(
            b.alert.severity,
            rank(b.alert.state),
            &b.alert.labels,
        ))
    });
    let mut tiers: Vec<Tier> = Vec::new();
    for v in views {
        let tier = v.alert.severity.as_str();
        if tiers.last().is_none_or(|t| t.tier != tier) {
            tiers.push(Tier { tier, alerts: Vec::new() });
        }
        tiers.last_mut().expect("pushed above").alerts.push(alert_row(v, snap.at, &reasons, runbooks));
    }
    let resolved_hidden =
        if all { 0 } else { snap.alerts.iter().filter(|v| v.alert.state == AlertState::Resolved).count() };
    super::env().get_template("alerts.html")?.render(page! { frame, tiers, all, resolved_hidden })
}

/// The alerts page for `snap` as a visitor who is not logged in sees it
/// (for the benchmark: the server time of the page).
pub fn alerts_page_html(snap: &Snapshot) -> Result<String, String> {
    let frame = Frame { page: "alerts", csrf: None, writable: true, at: clock_time(snap.at) };
    render_alerts_page(snap, &LocalRunbooks::new(), &frame, false).map_err(|e| e.to_string())
}

#[derive(Serialize)]
pub(super) struct GroupRow {
    id: String,
    labels: String,
    tier: Option<&'static str>,
    alerts: usize,
    last_sent: Option<String>,
    reason: Option<&'static str>,
    escalated: bool,
    ack: Option<String>,
}

pub(super) fn groups(snap: &Snapshot) -> Vec<GroupRow> {
    let mut groups: Vec<_> = snap.groups.iter().collect();
    groups.sort_by(|a, b| (a.tier.is_none(), a.tier, &a.id).cmp(&(b.tier.is_none(), b.tier, &b.id)));
    groups
        .into_iter()
        .map(|g| GroupRow {
            id: g.id.clone(),
            labels: g.labels.get_pairs_without(&[]),
            tier: g.tier.map(Severity::as_str),
            alerts: g.alerts,
            last_sent: g.last_sent.map(|t| format!("{} ago", age(t, snap.at))),
            reason: g.last_reason.map(crate::pipeline::Reason::as_str),
            escalated: g.escalated,
            ack: g.ack.as_ref().map(|a| {
                let until = a.until.map(|u| format!(", {}", until(u, snap.at))).unwrap_or_default();
                let comment = if a.comment.is_empty() { String::new() } else { format!(": {}", a.comment) };
                format!("{} ({} ago{until}){comment}", a.by, age(a.at, snap.at))
            }),
        })
        .collect()
}

#[derive(Serialize)]
pub(super) struct SilenceRow {
    id: String,
    matchers: String,
    state: &'static str,
    starts: String,
    ends: String,
    created_by: String,
    comment: String,
    /// Alerts it silences now.
    silencing: usize,
}

pub(super) fn silences(snap: &Snapshot) -> Vec<SilenceRow> {
    let mut rows: Vec<(u8, Timestamp, SilenceRow)> = snap
        .silences
        .iter()
        .map(|s| {
            let state = s.state(snap.at);
            let row = SilenceRow {
                id: s.id.clone(),
                matchers: s.matchers.to_string(),
                state: match state {
                    SilenceState::Pending => "pending",
                    SilenceState::Active => "active",
                    SilenceState::Expired => "expired",
                },
                starts: until(s.starts_at, snap.at),
                ends: until(s.ends_at, snap.at),
                created_by: s.created_by.clone(),
                comment: s.comment.clone(),
                silencing: snap.alerts.iter().filter(|v| v.mute.silenced_by.contains(&s.id)).count(),
            };
            (crate::api::views::silence_state_rank(state), s.ends_at, row)
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1, &a.2.id).cmp(&(b.0, b.1, &b.2.id)));
    rows.into_iter().map(|(_, _, r)| r).collect()
}

#[derive(Serialize)]
pub(super) struct Preview<'a> {
    error: Option<String>,
    alerts: Vec<AlertRow<'a>>,
}

/// The current alerts `matchers` would silence.
pub(super) fn preview<'a>(snap: &'a Snapshot, matchers: &str) -> Preview<'a> {
    match Matchers::parse(matchers) {
        Err(e) => Preview { error: Some(e.to_string()), alerts: Vec::new() },
        Ok(m) => {
            let (reasons, runbooks) = (FxHashMap::default(), LocalRunbooks::new());
            let alerts = snap
                .alerts
                .iter()
                .filter(|v| v.alert.state != AlertState::Resolved && m.matches(&v.alert.labels))
                .map(|v| alert_row(v, snap.at, &reasons, &runbooks))
                .collect();
            Preview { error: None, alerts }
        }
    }
}

#[derive(Serialize)]
pub(super) struct ClusterRow<'a> {
    name: &'a str,
    nodes: Vec<NodeRow<'a>>,
}

#[derive(Serialize)]
pub(super) struct NodeRow<'a> {
    instance: &'a str,
    role: &'a str,
    up: bool,
    zxid: Option<String>,
    series: Vec<SeriesCell>,
}

#[derive(Serialize)]
struct SeriesCell {
    label: &'static str,
    latest: Option<String>,
    /// SVG polyline points in a 100×24 box ("" with fewer than 2 values).
    points: String,
}

/// What the clusters page names each node metric.
const SHOWN: [(&str, &str); 3] =
    [("zk_avg_latency", "latency ms"), ("zk_connections", "connections"), ("zk_outstanding_requests", "outstanding")];

/// `values` as polyline points scaled into a `width`×`height` box.
pub(super) fn sparkline(values: &[f64], width: f64, height: f64) -> String {
    if values.len() < 2 {
        return String::new();
    }
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let step = width / (values.len() - 1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, height - 1.0 - (v - lo) / span * (height - 2.0)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn node_row(n: &NodeView) -> NodeRow<'_> {
    let latest = |metric: &str| n.series.iter().find(|s| s.metric == metric).and_then(|s| s.recent.last().copied());
    let zxid = match (latest("zk_zxid_epoch"), latest("zk_zxid_counter")) {
        (Some(epoch), Some(counter)) => Some(format!("0x{:x}{:08x}", epoch as u64, counter as u64)),
        _ => None,
    };
    let series = SHOWN
        .iter()
        .map(|&(metric, label)| {
            let recent = n.series.iter().find(|s| s.metric == metric).map_or(&[][..], |s| &s.recent[..]);
            SeriesCell { label, latest: recent.last().map(|v| number(*v)), points: sparkline(recent, 100.0, 24.0) }
        })
        .collect();
    NodeRow { instance: &n.instance, role: if n.role.is_empty() { "?" } else { &n.role }, up: n.up, zxid, series }
}

pub(super) fn clusters(snap: &Snapshot) -> Vec<ClusterRow<'_>> {
    let mut clusters: Vec<ClusterRow> = Vec::new();
    for n in &snap.nodes {
        if clusters.last().is_none_or(|c| c.name != n.cluster) {
            clusters.push(ClusterRow { name: &n.cluster, nodes: Vec::new() });
        }
        clusters.last_mut().expect("pushed above").nodes.push(node_row(n));
    }
    clusters
}

#[derive(Serialize)]
pub(super) struct DeliveryRow<'a> {
    channel: &'a str,
    group_id: &'a str,
    tier: &'static str,
    created: String,
    attempts: u32,
    state: &'static str,
    error: Option<&'a str>,
    escalation: bool,
}

pub(super) fn deliveries(snap: &Snapshot) -> Vec<DeliveryRow<'_>> {
    snap.deliveries
        .iter()
        .map(|d| DeliveryRow {
            channel: &d.channel,
            group_id: &d.group_id,
            tier: d.tier.as_str(),
            created: format!("{} ago", age(d.created_at, snap.at)),
            attempts: d.attempts,
            state: match (d.delivered_at, d.failed_at) {
                (Some(_), _) => "delivered",
                (None, Some(_)) => "failed",
                (None, None) => "pending",
            },
            error: d.last_error.as_deref(),
            escalation: d.escalation,
        })
        .collect()
}

#[derive(Serialize)]
pub(super) struct RuleRow<'a> {
    name: &'a str,
    health: &'static str,
    error: Option<&'a str>,
    last_evaluation: Option<String>,
    duration: String,
    active: usize,
}

pub(super) fn rules(snap: &Snapshot) -> Vec<RuleRow<'_>> {
    let mut rows: Vec<RuleRow> = snap
        .rules
        .iter()
        .map(|r| RuleRow {
            name: &r.name,
            health: r.health.as_str(),
            error: match &r.health {
                RuleHealth::Err(e) => Some(e),
                _ => None,
            },
            last_evaluation: r.last_evaluation.map(|t| format!("{} ago", age(t, snap.at))),
            duration: format!("{:.2} ms", r.last_duration.as_secs_f64() * 1000.0),
            active: r.active,
        })
        .collect();
    // Failing rules first.
    rows.sort_by(|a, b| (a.health != "err", a.name).cmp(&(b.health != "err", b.name)));
    rows
}

#[derive(Serialize)]
pub(super) struct StatusRow {
    version: String,
    up_for: String,
    rules: usize,
    sources: usize,
    last_evaluation: Option<String>,
    outbox_pending: usize,
    notifiers: String,
    state_write_failure: Option<String>,
}

pub(super) fn status(snap: &Snapshot) -> StatusRow {
    let s = &snap.status;
    StatusRow {
        version: s.version.clone(),
        up_for: age(s.started_at, snap.at),
        rules: s.rules,
        sources: s.sources,
        last_evaluation: s.last_evaluation.map(|t| format!("{} ago", age(t, snap.at))),
        outbox_pending: s.outbox_pending,
        notifiers: s.notifiers.join(", "),
        state_write_failure: s.state_write_failure.as_ref().map(|f| format!("since {}: {}", f.since, f.error)),
    }
}

/// Markdown to HTML; raw HTML in the text is shown as text, not run, and
/// links other than http(s), mailto and relative ones go nowhere.
pub(crate) fn markdown_to_html(text: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    let safe = |url: &str| {
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        scheme.is_none_or(|s| s.contains('/') || s.contains('#') || ["http", "https", "mailto"].contains(&s.as_str()))
    };
    let parser = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|e| match e {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) if !safe(&dest_url) => {
            Event::Start(Tag::Link { link_type, dest_url: "#".into(), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) if !safe(&dest_url) => {
            Event::Start(Tag::Image { link_type, dest_url: "#".into(), title, id })
        }
        other => other,
    });
    let mut out = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}
