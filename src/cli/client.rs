//! `zkalert alerts | groups | silence … | ack …`: the on-call's client of a
//! running zkalert's HTTP API (`docs/api.md`). Reads need nothing; writes
//! send the bearer token from `--token`, `ZKALERT_TOKEN` or `--token-file`,
//! else the one `zkalert run` without a config keeps in
//! `./zkalert-data/api-token`.
//! Every failure is one line on stderr and exit code 1.

use super::{EXIT_FAIL, EXIT_OK, outln};
use crate::api::{AckRequest, SilenceRequest};
use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The data dir of `zkalert run` without a config, relative to where it runs.
const DEFAULT_DATA_DIR: &str = "zkalert-data";
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
    /// Read the bearer token from this file (wins over --token). Without
    /// either: ./zkalert-data/api-token if there (`zkalert run` without a
    /// config writes it).
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
    /// pending, firing or resolved (comma-separated for several; default:
    /// pending and firing).
    #[arg(long)]
    pub state: Option<String>,
    /// Every alert: resolved ones too, silenced and inhibited ones too.
    #[arg(long, short)]
    pub all: bool,
    /// Also silenced alerts (and alerts in a maintenance window), as amtool's -s.
    #[arg(long, short)]
    pub silenced: bool,
    /// Also inhibited alerts, as amtool's -i.
    #[arg(long, short)]
    pub inhibited: bool,
    /// P0…P3 (comma-separated for several).
    #[arg(long)]
    pub tier: Option<String>,
    /// Label matchers, e.g. '{cluster="prod", instance=~"zk1.*"}'.
    #[arg(long)]
    pub filter: Option<String>,
    /// Print the API's JSON (the same alerts as the table).
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

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// The cluster (its `cluster` label in the config's sources).
    #[arg(long, short = 'C')]
    pub cluster: String,
    /// How far back the history goes, e.g. 24h or 7d (at most 31d).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Show times in this IANA time zone (default: the cluster's scheduled report's, else UTC).
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Print the HTML page (as mailed and filed) instead of text.
    #[arg(long, conflicts_with = "json")]
    pub html: bool,
    /// Print the report's data as JSON.
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
#[command(group(clap::ArgGroup::new("end").args(["duration", "ends_at"])))]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["matcher", "matchers"])))]
pub struct SilenceAddArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Matchers as amtool takes them, one per argument:
    /// alertname=ZkNodeDown 'instance=~zk1.*' (values may be quoted).
    #[arg(value_name = "MATCHER")]
    pub matcher: Vec<String>,
    /// Label matchers in braces, e.g. '{instance="zk1:2181", cluster="prod"}'.
    #[arg(long, short)]
    pub matchers: Option<String>,
    /// How long from the start, e.g. 2h (default: 1h, unless --ends-at).
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
    /// Who (default: $USER, else the OS user).
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
    /// Who (default: $USER, else the OS user).
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

pub async fn report(args: ReportArgs) -> anyhow::Result<i32> {
    finish(report_inner(args).await)
}

/// Prints one cluster's report now, as the running zkalert renders it.
async fn report_inner(args: ReportArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.endpoint)?;
    let format = if args.json {
        "json"
    } else if args.html {
        "html"
    } else {
        "text"
    };
    let mut query = vec![("cluster", args.cluster.as_str()), ("since", args.since.as_str()), ("format", format)];
    if let Some(tz) = &args.time_zone {
        query.push(("time_zone", tz));
    }
    if args.json {
        print_json(&client.get("/api/v1/report", &query).await?);
        return Ok(());
    }
    let body = client.get_text("/api/v1/report", &query).await?;
    outln!("{}", body.trim_end());
    Ok(())
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
            // What `zkalert run` without a config started in this directory uses.
            (None, None) => std::fs::read_to_string(Path::new(DEFAULT_DATA_DIR).join(super::run::TOKEN_FILE))
                .ok()
                .map(|t| t.trim().to_string()),
        }
        .filter(|t| !t.is_empty());
        let http = crate::source::scrape::http_client(endpoint.timeout)?;
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

    /// A text body (`GET` of a rendered report).
    pub async fn get_text(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<String> {
        let url = self.url(path, query)?;
        let body = self.fetch(self.http.get(url)).await?;
        String::from_utf8(body).map_err(|_| anyhow!("{} answered with a body that is not UTF-8", self.base))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let body = self.fetch(request).await?;
        serde_json::from_slice(&body).map_err(|_| anyhow!("{} answered with a body that is not JSON", self.base))
    }

    /// The body of a successful answer; otherwise the API's error, with a hint where one helps.
    async fn fetch(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Vec<u8>> {
        let unreachable = |e: reqwest::Error| {
            anyhow!("cannot reach zkalert at {}: {}", self.base, crate::notify::http::error_chain(&e))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
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

fn print_json(value: &serde_json::Value) {
    outln!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// `--json`: prints the API's reply as it is (`None`); otherwise decodes
/// it for a table.
fn decode_unless_json<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    json: bool,
    what: &str,
) -> anyhow::Result<Option<T>> {
    if json {
        print_json(&value);
        return Ok(None);
    }
    decode(value, what).map(Some)
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
    // Active, as amtool: pending and firing, not silenced or inhibited.
    let state = args.state.clone().or_else(|| (!args.all).then(|| "pending,firing".to_string()));
    let mut query = Vec::new();
    for (name, value) in [("state", &state), ("tier", &args.tier), ("filter", &args.filter)] {
        if let Some(v) = value {
            query.push((name, v.as_str()));
        }
    }
    let mut value = client.get("/api/v1/alerts", &query).await?;
    let mut hidden = 0;
    if !args.all
        && let Some(list) = value.get_mut("alerts").and_then(|a| a.as_array_mut())
    {
        let before = list.len();
        list.retain(|a| {
            let silenced = a["silenced_by"].as_array().is_some_and(|s| !s.is_empty())
                || a["maintenance"].as_array().is_some_and(|m| !m.is_empty());
            let inhibited = a["inhibited"].as_bool().unwrap_or(false);
            (!silenced || args.silenced) && (!inhibited || args.inhibited)
        });
        hidden = before - list.len();
    }
    let Some(out) = decode_unless_json::<AlertsOut>(value, args.json, "alerts")? else { return Ok(()) };
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
    match (out.alerts.is_empty(), args.all) {
        (true, true) => outln!("no alerts"),
        (true, false) => outln!("no active alerts (--all shows resolved, silenced and inhibited ones too)"),
        (false, _) => print_table(&rows),
    }
    if hidden > 0 {
        outln!("({hidden} silenced or inhibited not shown: --silenced, --inhibited or --all)");
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
    let Some(out) = decode_unless_json::<GroupsOut>(value, args.json, "groups")? else { return Ok(()) };
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
    let created_by = acting_user(args.created_by, "--created-by")?;
    let client = Client::new(&args.endpoint)?;
    let matchers = join_matchers(args.matchers.as_deref(), &args.matcher);
    // amtool's default: an hour from the start.
    let duration = match (&args.duration, &args.ends_at) {
        (None, None) => Some(DEFAULT_SILENCE.to_string()),
        (d, _) => d.clone(),
    };
    let request = SilenceRequest {
        matchers,
        starts_at: args.starts_at,
        ends_at: args.ends_at,
        duration,
        created_by,
        comment: args.comment,
    };
    let value = client.post("/api/v1/silences", &request).await?;
    let id = value.get("id").and_then(|v| v.as_str()).ok_or_else(|| anyhow!("the API answered without an id"))?;
    outln!("{id}");
    Ok(())
}

/// How long a silence lasts without --duration or --ends-at (as amtool).
const DEFAULT_SILENCE: &str = "1h";

/// One matcher list from `--matchers '{…}'` and amtool-style arguments
/// (`name=value`, `name=~regex`, …): each argument's value is quoted as
/// the shell took the quotes away, so a value may hold `,` or spaces.
pub fn join_matchers(braced: Option<&str>, args: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(b) = braced {
        let b = b.trim();
        let inner = b.strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or(b).trim();
        if !inner.is_empty() {
            parts.push(inner.to_string());
        }
    }
    for arg in args {
        let arg = arg.trim();
        let name_end = arg.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(arg.len());
        let (name, rest) = arg.split_at(name_end);
        let op = ["=~", "!~", "!=", "="].into_iter().find(|op| rest.starts_with(op));
        match op {
            Some(op) => {
                let value = rest[op.len()..].trim();
                let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
                if quoted {
                    parts.push(format!("{name}{op}{value}"));
                } else {
                    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
                    parts.push(format!("{name}{op}\"{escaped}\""));
                }
            }
            // Not `name op value`: passed on for the server to explain.
            None => parts.push(arg.to_string()),
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Who acts: the name given by `flag` (or `$USER`, its default), else the
/// OS user.
fn acting_user(given: Option<String>, flag: &str) -> anyhow::Result<String> {
    given
        .filter(|g| !g.trim().is_empty())
        .or_else(os_user)
        .ok_or_else(|| anyhow!("{flag} is required ($USER is not set and the OS user has no name)"))
}

/// The OS user's name when `$USER` is not set (cron, containers, sudo -i):
/// `$LOGNAME`, else the name of the process's uid in /etc/passwd (the uid
/// is the owner of /proc/self: no libc call, no unsafe).
pub fn os_user() -> Option<String> {
    if let Ok(name) = std::env::var("LOGNAME")
        && !name.trim().is_empty()
    {
        return Some(name.trim().to_string());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").ok()?.uid();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        user_of_uid(&passwd, uid).or_else(|| Some(format!("uid-{uid}")))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The name of `uid` in a passwd file (`name:x:uid:gid:…`).
pub fn user_of_uid(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?.trim();
        let id: u32 = fields.nth(1)?.trim().parse().ok()?;
        (id == uid && !name.is_empty() && !name.starts_with('#')).then(|| name.to_string())
    })
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
    let Some(out) = decode_unless_json::<SilencesOut>(value, json, "silences")? else { return Ok(()) };
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
    let by = acting_user(args.by, "--by")?;
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
    fn amtool_matchers_join_into_one_list_that_parses() {
        let args: Vec<String> =
            ["alertname=ZkNodeDown", "instance=~zk1.*", r#"cluster!="a, b""#, r#"x=a"b\c"#].map(String::from).to_vec();
        let text = join_matchers(Some(r#"{team="storage"}"#), &args);
        assert_eq!(
            text,
            r#"{team="storage", alertname="ZkNodeDown", instance=~"zk1.*", cluster!="a, b", x="a\"b\\c"}"#
        );
        let parsed = crate::pipeline::Matchers::parse(&text).unwrap();
        assert_eq!(parsed.0.len(), 5);
        let labels = crate::model::Labels::from_pairs([
            ("team", "storage"),
            ("alertname", "ZkNodeDown"),
            ("instance", "zk1:2181"),
            ("cluster", "prod"),
            ("x", r#"a"b\c"#),
        ]);
        assert!(parsed.matches(&labels), "{parsed:?}");
        assert_eq!(join_matchers(Some("{a=\"b\"}"), &[]), "{a=\"b\"}");
    }

    #[test]
    fn the_os_user_is_found_by_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n";
        assert_eq!(user_of_uid(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_of_uid(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_of_uid(passwd, 7), None);
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
