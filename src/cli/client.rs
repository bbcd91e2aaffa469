//! `zkalert alerts | groups | silence … | ack …`: the on-call's client of a
//! running zkalert's HTTP API (`docs/api.md`). Reads need nothing; writes
//! send the bearer token from `--token`, `ZKALERT_TOKEN` or `--token-file`.
//! Every failure is one line on stderr and exit code 1.

use super::{EXIT_FAIL, EXIT_OK, outln};
use crate::api::{AckRequest, SilenceRequest};
use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where the API is and how to write to it.
#[derive(Debug, Clone, clap::Args)]
pub struct Endpoint {
    /// Base URL of the zkalert API.
    #[arg(long, env = "ZKALERT_URL", default_value = "http://127.0.0.1:9097")]
    pub url: String,
    /// Bearer token for writes.
    #[arg(long, env = "ZKALERT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from this file (wins over --token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Per request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, clap::Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// pending, firing or resolved (comma-separated for several).
    #[arg(long)]
    pub state: Option<String>,
    /// P0…P3 (comma-separated for several).
    #[arg(long)]
    pub tier: Option<String>,
    /// Label matchers, e.g. '{cluster="prod", instance=~"zk1.*"}'.
    #[arg(long)]
    pub filter: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SilenceCommand {
    /// Silence alerts matching the matchers for a while; prints the new id.
    Add(SilenceAddArgs),
    /// List silences.
    List {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Expire {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The silence's id.
        id: String,
    },
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("end").required(true).args(["duration", "ends_at"])))]
pub struct SilenceAddArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Label matchers, e.g. '{instance="zk1:2181"}' or 'alertname=ZkNodeDown cluster=prod'.
    #[arg(long, short)]
    pub matchers: String,
    /// How long from the start, e.g. 2h.
    #[arg(long, short)]
    pub duration: Option<String>,
    /// RFC 3339, e.g. 2025-01-31T18:00:00Z.
    #[arg(long)]
    pub ends_at: Option<String>,
    /// RFC 3339 (default: now).
    #[arg(long)]
    pub starts_at: Option<String>,
    /// Why (a ticket, a change).
    #[arg(long, short)]
    pub comment: String,
    /// Who (default: $USER).
    #[arg(long, env = "USER")]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["group_id", "matchers"])))]
pub struct AckArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// The group's id (from `zkalert alerts` or `zkalert groups`).
    pub group_id: Option<String>,
    /// Acknowledge every group with an alert matching these.
    #[arg(long, short)]
    pub matchers: Option<String>,
    #[arg(long, short, default_value = "")]
    pub comment: String,
    /// For how long (default: until the group resolves).
    #[arg(long, short)]
    pub duration: Option<String>,
    /// Who (default: $USER).
    #[arg(long, env = "USER")]
    pub by: Option<String>,
}

/// Runs a client command: failures are printed, exit code 1.
fn finish(result: anyhow::Result<()>) -> anyhow::Result<i32> {
    match result {
        Ok(()) => Ok(EXIT_OK),
        Err(e) => {
            eprintln!("zkalert: {e:#}");
            Ok(EXIT_FAIL)
        }
    }
}

pub async fn alerts(args: AlertsArgs) -> anyhow::Result<i32> {
    finish(alerts_inner(args).await)
}

pub async fn groups(args: GroupsArgs) -> anyhow::Result<i32> {
    finish(groups_inner(args).await)
}

pub async fn silence(command: SilenceCommand) -> anyhow::Result<i32> {
    let result = match command {
        SilenceCommand::Add(args) => silence_add(args).await,
        SilenceCommand::List { endpoint, json } => silence_list(endpoint, json).await,
        SilenceCommand::Expire { endpoint, id } => silence_expire(endpoint, &id).await,
    };
    finish(result)
}

pub async fn ack(args: AckArgs) -> anyhow::Result<i32> {
    finish(ack_inner(args).await)
}

// ---- HTTP ----

/// One API, as the client reaches it.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let base = endpoint.url.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| anyhow!("invalid --url {base:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("invalid --url {base:?}: expected http:// or https://");
        }
        let token = match (&endpoint.token_file, &endpoint.token) {
            (None, Some(t)) => Some(t.trim().to_string()),
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        }
        .filter(|t| !t.is_empty());
        let http = crate::source::admin::http_client(endpoint.timeout)?;
        Ok(Self { base, token, http })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| anyhow!("invalid --url {:?}: {e}", self.base))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<serde_json::Value> {
        let url = self.url(path, query)?;
        self.send(self.http.get(url)).await
    }

    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> anyhow::Result<serde_json::Value> {
        let url = self.url(path, &[])?;
        let body = serde_json::to_vec(body)?;
        let request = self.http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        self.send(self.authorized(request)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = self.url(path, &[])?;
        self.send(self.authorized(self.http.delete(url))).await
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let unreachable = |e: reqwest::Error| anyhow!("cannot reach zkalert at {}: {}", self.base, error_chain(&e));
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return json.ok_or_else(|| anyhow!("{} answered {status} with a body that is not JSON", self.base));
        }
        let message = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().chars().take(200).collect());
        let hint = match status.as_u16() {
            401 if self.token.is_none() => " (pass --token, ZKALERT_TOKEN or --token-file)",
            401 => " (check the token)",
            _ => "",
        };
        bail!("{message}{hint} (HTTP {})", status.as_u16())
    }
}

/// An error with its causes: reqwest's own message alone hides "connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn print_json(value: &serde_json::Value) {
    outln!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(value).map_err(|e| anyhow!("unexpected {what} from the API: {e}"))
}

// ---- commands ----

#[derive(Debug, Deserialize)]
struct AckOut {
    by: String,
    #[serde(default)]
    until: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AlertOut {
    labels: BTreeMap<String, String>,
    tier: String,
    state: String,
    active_at: String,
    fired_at: Option<String>,
    resolved_at: Option<String>,
    #[serde(default)]
    keep_firing_since: Option<String>,
    runbook: Option<String>,
    #[serde(default)]
    silenced_by: Vec<String>,
    #[serde(default)]
    inhibited: bool,
    #[serde(default)]
    maintenance: Vec<String>,
    acked: Option<AckOut>,
}

#[derive(Debug, Deserialize)]
struct AlertsOut {
    alerts: Vec<AlertOut>,
    at: String,
}

async fn alerts_inner(args: AlertsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.endpoint)?;
    let mut query = Vec::new();
    for (name, value) in [("state", &args.state), ("tier", &args.tier), ("filter", &args.filter)] {
        if let Some(v) = value {
            query.push((name, v.as_str()));
        }
    }
    let value = client.get("/api/v1/alerts", &query).await?;
    if args.json {
        print_json(&value);
        return Ok(());
    }
    let out: AlertsOut = decode(value, "alerts")?;
    let at = parse_time(&out.at);
    let mut rows = vec![row(["TIER", "STATE", "ALERT", "LABELS", "SINCE", "MARKERS", "RUNBOOK"])];
    for a in &out.alerts {
        let since = match a.state.as_str() {
            "firing" => a.fired_at.as_deref().unwrap_or(&a.active_at),
            "resolved" => a.resolved_at.as_deref().unwrap_or(&a.active_at),
            _ => &a.active_at,
        };
        let mut markers = Vec::new();
        if !a.silenced_by.is_empty() {
            markers.push(format!("silenced({})", a.silenced_by.join(",")));
        }
        if a.inhibited {
            markers.push("inhibited".to_string());
        }
        if !a.maintenance.is_empty() {
            markers.push(format!("maint({})", a.maintenance.join(",")));
        }
        if let Some(ack) = &a.acked {
            markers.push(format!("acked({})", ack.by));
        }
        if a.keep_firing_since.is_some() {
            markers.push("keep_firing_for".to_string());
        }
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rows.push(vec![
            a.tier.clone(),
            a.state.clone(),
            a.labels.get("alertname").cloned().unwrap_or_default(),
            dash(labels.join(",")),
            age(at, since),
            dash(markers.join(",")),
            dash(a.runbook.clone().unwrap_or_default()),
        ]);
    }
    if out.alerts.is_empty() {
        outln!("no alerts");
    } else {
        print_table(&rows);
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct GroupOut {
    id: String,
    labels: BTreeMap<String, String>,
    tier: Option<String>,
    ack: Option<AckOut>,
    last_sent: Option<String>,
    escalated: bool,
    alerts: usize,
}

#[derive(Debug, Deserialize)]
struct GroupsOut {
    groups: Vec<GroupOut>,
    at: String,
}

async fn groups_inner(args: GroupsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.endpoint)?;
    let value = client.get("/api/v1/groups", &[]).await?;
    if args.json {
        print_json(&value);
        return Ok(());
    }
    let out: GroupsOut = decode(value, "groups")?;
    let at = parse_time(&out.at);
    let mut rows = vec![row(["ID", "TIER", "ALERTS", "LABELS", "LAST SENT", "ESCALATED", "ACK"])];
    for g in &out.groups {
        let labels: Vec<String> = g.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let ack = g.ack.as_ref().map(|a| match &a.until {
            Some(until) => format!("{} until {until}", a.by),
            None => a.by.clone(),
        });
        rows.push(vec![
            g.id.clone(),
            dash(g.tier.clone().unwrap_or_default()),
            g.alerts.to_string(),
            dash(labels.join(",")),
            g.last_sent.as_deref().map(|t| format!("{} ago", age(at, t))).unwrap_or_else(|| "-".into()),
            if g.escalated { "yes" } else { "no" }.to_string(),
            dash(ack.unwrap_or_default()),
        ]);
    }
    if out.groups.is_empty() {
        outln!("no groups");
    } else {
        print_table(&rows);
    }
    Ok(())
}

async fn silence_add(args: SilenceAddArgs) -> anyhow::Result<()> {
    let created_by = args
        .created_by
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| anyhow!("--created-by is required ($USER is not set)"))?;
    let client = Client::new(&args.endpoint)?;
    let request = SilenceRequest {
        matchers: args.matchers,
        starts_at: args.starts_at,
        ends_at: args.ends_at,
        duration: args.duration,
        created_by,
        comment: args.comment,
    };
    let value = client.post("/api/v1/silences", &request).await?;
    let id = value.get("id").and_then(|v| v.as_str()).ok_or_else(|| anyhow!("the API answered without an id"))?;
    outln!("{id}");
    Ok(())
}

#[derive(Debug, Deserialize)]
struct SilenceOut {
    id: String,
    matchers: String,
    starts_at: String,
    ends_at: String,
    created_by: String,
    comment: String,
    state: String,
}

#[derive(Debug, Deserialize)]
struct SilencesOut {
    silences: Vec<SilenceOut>,
}

async fn silence_list(endpoint: Endpoint, json: bool) -> anyhow::Result<()> {
    let client = Client::new(&endpoint)?;
    let value = client.get("/api/v1/silences", &[]).await?;
    if json {
        print_json(&value);
        return Ok(());
    }
    let out: SilencesOut = decode(value, "silences")?;
    if out.silences.is_empty() {
        outln!("no silences");
        return Ok(());
    }
    let mut rows = vec![row(["ID", "STATE", "MATCHERS", "STARTS", "ENDS", "CREATED BY", "COMMENT"])];
    for s in out.silences {
        rows.push(vec![s.id, s.state, s.matchers, s.starts_at, s.ends_at, s.created_by, s.comment]);
    }
    print_table(&rows);
    Ok(())
}

async fn silence_expire(endpoint: Endpoint, id: &str) -> anyhow::Result<()> {
    let client = Client::new(&endpoint)?;
    let path = format!("/api/v1/silences/{}", crate::notify::percent_encode(id));
    let value = client.delete(&path).await?;
    let s: SilenceOut = decode(value, "silence")?;
    outln!("expired {} {} (ended {})", s.id, s.matchers, s.ends_at);
    Ok(())
}

async fn ack_inner(args: AckArgs) -> anyhow::Result<()> {
    let by = args.by.filter(|b| !b.trim().is_empty()).ok_or_else(|| anyhow!("--by is required ($USER is not set)"))?;
    let client = Client::new(&args.endpoint)?;
    let request = AckRequest {
        group_id: args.group_id,
        matchers: args.matchers,
        by,
        comment: args.comment,
        until: None,
        duration: args.duration,
    };
    let value = client.post("/api/v1/acks", &request).await?;
    let ids: Vec<String> = decode(value.get("acked").cloned().unwrap_or_default(), "ack reply")?;
    for id in ids {
        outln!("acked {id}");
    }
    Ok(())
}

// ---- formatting ----

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn dash(s: String) -> String {
    if s.is_empty() { "-".to_string() } else { s }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count() + 2));
            }
        }
        outln!("{}", line.trim_end());
    }
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text).ok()
}

/// How long before `at` the time `since` was: `3h12m`, `45s`.
fn age(at: Option<chrono::DateTime<chrono::FixedOffset>>, since: &str) -> String {
    let (Some(at), Some(since)) = (at, parse_time(since)) else { return since.to_string() };
    let secs = (at - since).num_seconds().max(0);
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match () {
        _ if d > 0 => format!("{d}d{h}h"),
        _ if h > 0 => format!("{h}h{m}m"),
        _ if m > 0 => format!("{m}m{s}s"),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_compact() {
        let at = parse_time("2025-01-31T18:00:00Z");
        assert_eq!(age(at, "2025-01-31T17:59:15Z"), "45s");
        assert_eq!(age(at, "2025-01-31T14:48:00Z"), "3h12m");
        assert_eq!(age(at, "2025-01-29T17:00:00Z"), "2d1h");
        assert_eq!(age(at, "garbage"), "garbage");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(crate::notify::percent_encode("ab12-x"), "ab12-x");
        assert_eq!(crate::notify::percent_encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn endpoint_urls() {
        let endpoint = Endpoint {
            url: "http://127.0.0.1:9097/".into(),
            token: None,
            token_file: None,
            timeout: Duration::from_secs(1),
        };
        let client = Client::new(&endpoint).unwrap();
        let url = client.url("/api/v1/alerts", &[("filter", "{a=\"b\"}")]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9097/api/v1/alerts?filter=%7Ba%3D%22b%22%7D");
        let bad = Endpoint { url: "ftp://x".into(), ..endpoint };
        assert!(Client::new(&bad).is_err());
    }
}
