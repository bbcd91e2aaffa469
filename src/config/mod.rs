//! `zkalert.yaml`: what to watch (sources), which rules, where alerts go
//! (notifiers), where state lives. Validated like rule files: every problem
//! at `path:line:col`, all at once.

use crate::diag::{Diagnostics, Pos};
use crate::model::Labels;
use crate::yaml::{self, Node, Reader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod ha;
mod heartbeat;
mod intake;
mod notifiers;
mod pipeline;
pub mod reports;

pub use ha::{CoordinationLoss, HaConfig};
pub use heartbeat::{HeartbeatConfig, PingMethod};
pub use intake::IntakeConfig;
pub use reports::ReportConfig;

pub use notifiers::{NotifierConfig, NotifierKind};
pub(crate) use pipeline::inhibit_rule;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (`None`: the built-in default).
    pub path: Option<PathBuf>,
    /// Rule files and directories (globs already expanded). Empty: the
    /// built-in ZooKeeper rule pack.
    pub rules: Vec<PathBuf>,
    pub evaluation_interval: Duration,
    pub data_dir: PathBuf,
    pub sources: Vec<SourceConfig>,
    pub notifiers: Vec<NotifierConfig>,
    pub server: Option<ServerConfig>,
    /// Routing, inhibition, maintenance windows.
    pub pipeline: crate::pipeline::PipelineConfig,
    /// Where messages' ack and runbook links point.
    pub links: crate::notify::template::Links,
    /// Message templates: the built-in ones, some replaced by files.
    pub templates: std::sync::Arc<crate::notify::template::Templates>,
    /// Replicas coordinated through ZooKeeper (`None`: one process, SQLite only).
    pub ha: Option<HaConfig>,
    /// The dead man's switch (`heartbeat`), if configured.
    pub heartbeat: Option<HeartbeatConfig>,
    /// Alerts posted to the Alertmanager API (`intake`).
    pub intake: IntakeConfig,
    /// Scheduled daily reports, one per cluster (`reports`).
    pub reports: Vec<ReportConfig>,
}

#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Four-letter words on each node's client port.
    Zookeeper(ZkSourceConfig),
    /// The AdminServer's JSON commands (`nodes` are AdminServer host:port),
    /// for ensembles that don't whitelist four-letter words.
    ZookeeperAdmin(ZkSourceConfig),
    /// A Prometheus text exposition endpoint (node_exporter, ZooKeeper's own
    /// metrics provider, anything else).
    Prometheus(PromSourceConfig),
    /// Checks on the ZooKeeper host itself (run zkalert there as an agent).
    Host(HostSourceConfig),
    /// Log files followed on the ZooKeeper host (its log, its GC log):
    /// lines matching patterns counted.
    Log(crate::source::log::LogSourceConfig),
}

impl SourceConfig {
    /// The cluster whose series it brings (a Prometheus source without one: empty).
    pub fn cluster(&self) -> &str {
        match self {
            SourceConfig::Zookeeper(z) | SourceConfig::ZookeeperAdmin(z) => &z.cluster,
            SourceConfig::Prometheus(p) => p.cluster.as_deref().unwrap_or_default(),
            SourceConfig::Host(h) => &h.cluster,
            SourceConfig::Log(l) => &l.cluster,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PromSourceConfig {
    pub url: String,
    /// Sets the `cluster` label.
    pub cluster: Option<String>,
    /// Sets the `instance` label (default: the URL's host:port).
    pub instance: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub labels: Labels,
    /// What one scrape may bring (`sample_limit`, `body_size_limit`, …).
    pub limits: crate::source::prom::ScrapeLimits,
}

#[derive(Debug, Clone)]
pub struct HostSourceConfig {
    pub cluster: String,
    /// The ZooKeeper node on this host (`host:port`), so host metrics join
    /// that node's.
    pub instance: String,
    pub interval: Duration,
    /// Directories whose filesystems to watch (dataDir, dataLogDir).
    pub paths: Vec<PathBuf>,
    /// Backup directories: filesystem and age of the newest file.
    pub backup_dirs: Vec<PathBuf>,
    /// ZooKeeper's pid file: is the process alive.
    pub pid_file: Option<PathBuf>,
    /// ZooKeeper's config file (zoo.cfg): its dataDir and dataLogDir are
    /// watched too, with their transaction logs and snapshots, and autopurge.
    pub zoo_cfg: Option<PathBuf>,
    pub labels: Labels,
}

/// One ZooKeeper ensemble polled over four-letter words.
#[derive(Debug, Clone)]
pub struct ZkSourceConfig {
    pub cluster: String,
    /// `host:port` of each node's client port.
    pub nodes: Vec<String>,
    pub interval: Duration,
    /// Per command: connect + read.
    pub timeout: Duration,
    /// Extra labels on every sample of this source.
    pub labels: Labels,
    /// `zookeeper` sources: hold one client session per node with this
    /// timeout, and poll at once when one drops (`sessions: false`: `None`).
    pub sessions: Option<Duration>,
}

/// A held session's timeout: 4 s by default (a hung node shows in about a
/// third of it); the server bounds it to 2–20 × its tickTime.
pub const DEFAULT_NODE_SESSION_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The bearer token API writes need, read from `token_env` or
    /// `token_file` (never from the config itself). `None`: writes refused.
    pub token: Option<String>,
    /// Where the token was to come from (for the "writes disabled" warning).
    pub token_env: Option<String>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .finish()
    }
}

impl Config {
    /// The built-in default: watch `127.0.0.1:2181`, built-in rules, alerts
    /// to the console.
    pub fn builtin() -> Self {
        Config {
            path: None,
            rules: Vec::new(),
            evaluation_interval: Duration::from_secs(15),
            data_dir: PathBuf::from("zkalert-data"),
            sources: vec![SourceConfig::Zookeeper(ZkSourceConfig {
                cluster: "local".into(),
                nodes: vec!["127.0.0.1:2181".into()],
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(2),
                labels: Labels::new(),
                sessions: Some(DEFAULT_NODE_SESSION_TIMEOUT),
            })],
            notifiers: vec![NotifierConfig::new("console", NotifierKind::Console)],
            server: None,
            pipeline: crate::pipeline::PipelineConfig::defaults_to(&["console".to_string()]),
            links: Default::default(),
            templates: std::sync::Arc::new(crate::notify::template::Templates::builtin()),
            ha: None,
            heartbeat: None,
            intake: IntakeConfig::default(),
            reports: Vec::new(),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let text = yaml::read_file(path).map_err(|e| {
            let mut d = Diagnostics::default();
            d.push(path, Pos::new(1, 1), format!("cannot read config: {e}"));
            d
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, Diagnostics> {
        let root = yaml::parse(text, path)?;
        let mut diags = Diagnostics::default();
        let base = path.parent().unwrap_or(Path::new("."));
        let mut r = Reader::new(path, &mut diags);
        let mut cfg =
            Config { path: Some(path.to_path_buf()), sources: Vec::new(), notifiers: Vec::new(), ..Config::builtin() };
        cfg.data_dir = base.join("zkalert-data");
        let mut saw_notifiers = false;
        let mut sections = pipeline::Sections::default();
        let mut template_files: Vec<(String, PathBuf)> = Vec::new();
        let mut heartbeat = None;
        let mut reports = None;
        const KEYS: &[&str] = &[
            "rules",
            "evaluation_interval",
            "data_dir",
            "sources",
            "notifiers",
            "server",
            "routing",
            "inhibit_rules",
            "maintenance",
            "external_url",
            "runbook_base_url",
            "templates",
            "ha",
            "heartbeat",
            "intake",
            "reports",
        ];
        for (key, value) in r.map(&root, "config", KEYS) {
            match key {
                "rules" => {
                    for n in r.seq(value, "rules") {
                        if let Some(pattern) = r.string(n, "rules entry") {
                            cfg.rules.extend(expand_glob(&mut r, n.pos, base, &pattern));
                        }
                    }
                }
                "evaluation_interval" => {
                    if let Some(d) = positive_duration(&mut r, value, "evaluation_interval") {
                        cfg.evaluation_interval = d;
                    }
                }
                "data_dir" => {
                    if let Some(d) = r.string(value, "data_dir") {
                        cfg.data_dir = base.join(d);
                    }
                }
                "sources" => {
                    for n in r.seq(value, "sources") {
                        if let Some(s) = source(&mut r, n, base) {
                            cfg.sources.push(s);
                        }
                    }
                }
                "notifiers" => {
                    saw_notifiers = true;
                    cfg.notifiers = notifiers::read(&mut r, value, base);
                }
                "routing" => sections.routing = Some(value),
                "inhibit_rules" => sections.inhibit_rules = Some(value),
                "maintenance" => sections.maintenance = Some(value),
                "external_url" => cfg.links.external_url = url(&mut r, value, key),
                "runbook_base_url" => cfg.links.runbook_base_url = url(&mut r, value, key),
                "templates" => {
                    for (name, path, _) in r.string_map(value, "templates") {
                        template_files.push((name, base.join(path)));
                    }
                }
                "ha" => cfg.ha = ha::read(&mut r, value),
                "heartbeat" => heartbeat = heartbeat::read(&mut r, value, base),
                "intake" => cfg.intake = intake::read(&mut r, value),
                "reports" => reports = Some(value),
                _ => cfg.server = server(&mut r, value, base),
            }
        }
        // Without sources, zkalert can still take alerts posted to its API
        // (Prometheus' alerts: docs/alertmanager.md).
        if cfg.sources.is_empty() && cfg.server.is_none() {
            r.error(root.pos, "config has no `sources` and no `server`: nothing to watch, nowhere to take alerts from");
        }
        if !saw_notifiers {
            cfg.notifiers = Config::builtin().notifiers;
        }
        let names: Vec<String> = cfg.notifiers.iter().map(|n| n.name.clone()).collect();
        cfg.pipeline = pipeline::read(&mut r, &sections, &names);
        if let Some((config, channel_pos)) = heartbeat {
            heartbeat::check_channel(&mut r, &config, channel_pos, &names);
            if let Some(channel) = &config.watchdog_channel {
                std::sync::Arc::make_mut(&mut cfg.pipeline.policy)
                    .route_only(crate::runner::heartbeat::WATCHDOG, channel);
                cfg.pipeline.watchdog = true;
            }
            cfg.heartbeat = Some(config);
        }
        if let Some(n) = reports {
            let clusters: Vec<&str> = cfg.sources.iter().map(SourceConfig::cluster).collect();
            let email: Vec<&str> = cfg
                .notifiers
                .iter()
                .filter(|n| matches!(n.kind, NotifierKind::Email(_)))
                .map(|n| n.name.as_str())
                .collect();
            cfg.reports = reports::read(&mut r, n, base, &clusters, &email);
        }
        // Templates compile and render every sample message, or their
        // problems are reported at the template's file and line.
        let problems = match crate::notify::template::Templates::load(&template_files) {
            Ok(t) => {
                let problems = t.check();
                cfg.templates = std::sync::Arc::new(t);
                problems
            }
            Err(problems) => problems,
        };
        for p in problems {
            diags.push(Path::new(&p.file), Pos::new(p.line, 1), format!("template: {}", p.message));
        }
        if diags.is_empty() { Ok(cfg) } else { Err(diags.sorted()) }
    }
}

fn url(r: &mut Reader, n: &Node, what: &str) -> Option<String> {
    let u = r.string(n, what)?;
    if !crate::notify::http::is_http_url(&u) {
        r.error(n.pos, format!("{what}: {u:?} must start with http:// or https://"));
        return None;
    }
    Some(u)
}

fn server(r: &mut Reader, n: &Node, base: &Path) -> Option<ServerConfig> {
    let mut listen = None;
    let mut token = None;
    let mut token_env = None;
    for (k, v) in r.map(n, "server", &["listen", "token_env", "token_file"]) {
        let Some(s) = r.string(v, k) else { continue };
        match k {
            "listen" => match s.parse() {
                Ok(addr) => listen = Some(addr),
                Err(_) => r.error(v.pos, format!("listen: {s:?} is not an address like 127.0.0.1:9097")),
            },
            // An unset variable is not an error: the API runs read-only
            // (`run` says so), and `check` works without the secret.
            "token_env" => {
                if let Ok(t) = std::env::var(&s)
                    && !t.trim().is_empty()
                {
                    token = Some(t.trim().to_string());
                }
                token_env = Some(s);
            }
            _ => match yaml::read_file(&base.join(&s)) {
                Ok(t) if !t.trim().is_empty() => token = Some(t.trim().to_string()),
                Ok(_) => r.error(v.pos, format!("token_file: {s} is empty")),
                Err(e) => r.error(v.pos, format!("token_file: cannot read {s}: {e}")),
            },
        }
    }
    match listen {
        Some(listen) => Some(ServerConfig { listen, token, token_env }),
        None => {
            r.error(n.pos, "server needs `listen` (host:port, e.g. 127.0.0.1:9097)");
            None
        }
    }
}

/// Longest poll or evaluation interval: beyond it an alert would wait
/// hours for its first evaluation (evaluation waits for every source's
/// first poll), which no on-call expects.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Longest poll or delivery timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

fn positive_duration(r: &mut Reader, n: &Node, what: &str) -> Option<Duration> {
    let d = r.duration(n, what)?;
    let max = if what == "timeout" { MAX_TIMEOUT } else { MAX_INTERVAL };
    if d.is_zero() {
        r.error(n.pos, format!("{what} must be greater than zero"));
        return None;
    }
    if d > max {
        let fmt = crate::duration::format_duration;
        r.error(n.pos, format!("{what}: {} is longer than the limit of {}", fmt(d), fmt(max)));
        return None;
    }
    Some(d)
}

fn expand_glob(r: &mut Reader, pos: Pos, base: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = base.join(pattern);
    if !pattern.contains(['*', '?', '[']) {
        if !full.exists() {
            r.error(pos, format!("rules: {} does not exist", full.display()));
        }
        return vec![full];
    }
    match glob::glob(&full.to_string_lossy()) {
        Ok(paths) => {
            let found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            if found.is_empty() {
                r.error(pos, format!("rules: {pattern:?} matches no file"));
            }
            found
        }
        Err(e) => {
            r.error(pos, format!("rules: bad pattern {pattern:?}: {e}"));
            Vec::new()
        }
    }
}

const SOURCE_TYPES: &str = "zookeeper, zookeeper_admin, prometheus, host, log";

fn source(r: &mut Reader, n: &Node, base: &Path) -> Option<SourceConfig> {
    let Some(kind) = n.get("type").and_then(|t| r.string(t, "type")) else {
        r.error(n.pos, format!("source needs a `type` ({SOURCE_TYPES})"));
        return None;
    };
    let known: &[&str] = match kind.as_str() {
        "zookeeper" => &["type", "cluster", "nodes", "interval", "timeout", "labels", "sessions", "session_timeout"],
        "zookeeper_admin" => &["type", "cluster", "nodes", "interval", "timeout", "labels"],
        "prometheus" => &[
            "type",
            "url",
            "cluster",
            "instance",
            "interval",
            "timeout",
            "labels",
            "sample_limit",
            "body_size_limit",
            "label_limit",
            "label_name_length_limit",
            "label_value_length_limit",
        ],
        "host" => &["type", "cluster", "instance", "interval", "paths", "backup_dirs", "pid_file", "zoo_cfg", "labels"],
        "log" => &["type", "cluster", "instance", "interval", "paths", "patterns", "from", "labels"],
        other => {
            r.error(
                n.get("type").map_or(n.pos, |t| t.pos),
                format!("unknown source type {other:?}; expected one of {SOURCE_TYPES}"),
            );
            return None;
        }
    };
    let fields = r.map(n, &format!("{kind} source"), known);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let interval = get("interval").and_then(|v| positive_duration(r, v, "interval")).unwrap_or(Duration::from_secs(15));
    let timeout = get("timeout").and_then(|v| positive_duration(r, v, "timeout")).unwrap_or(Duration::from_secs(2));
    // Only sources that take a `timeout` (host and log read local files).
    if known.contains(&"timeout") && timeout >= interval {
        r.error(get("timeout").map_or(n.pos, |t| t.pos), "timeout must be shorter than interval");
    }
    let labels: Labels = get("labels")
        .map(|l| r.string_map(l, "labels").into_iter().map(|(k, v, _)| (k, v)).collect())
        .unwrap_or_default();
    let cluster = get("cluster").and_then(|c| r.string(c, "cluster"));
    // A list of paths, relative to the config's directory.
    let path_list = |key: &str, r: &mut Reader| -> Vec<PathBuf> {
        get(key)
            .map(|l| r.seq(l, key).iter().filter_map(|p| r.string(p, key)).map(|p| base.join(p)).collect())
            .unwrap_or_default()
    };
    let need_cluster = |r: &mut Reader, cluster: Option<String>| {
        if cluster.is_none() {
            r.error(n.pos, format!("{kind} source needs a `cluster` name"));
        }
        cluster
    };
    match kind.as_str() {
        "zookeeper" | "zookeeper_admin" => {
            let mut nodes = Vec::new();
            for node in get("nodes").map(|ns| r.seq(ns, "nodes")).unwrap_or_default() {
                if let Some(addr) = r.string(node, "node") {
                    if !is_host_port(&addr) {
                        r.error(node.pos, format!("node {addr:?} must be host:port"));
                    }
                    nodes.push(addr);
                }
            }
            if nodes.is_empty() {
                let what = if kind == "zookeeper" { "client port" } else { "AdminServer port" };
                r.error(n.pos, format!("{kind} source needs `nodes` (host:port of each server's {what})"));
            }
            let sessions = get("sessions").and_then(|v| r.boolean(v, "sessions")).unwrap_or(true);
            let session_timeout = match get("session_timeout") {
                Some(v) => match positive_duration(r, v, "session_timeout") {
                    Some(d) if (Duration::from_secs(2)..=Duration::from_secs(60)).contains(&d) => d,
                    Some(d) => {
                        let d = crate::duration::format_duration(d);
                        r.error(v.pos, format!("session_timeout: {d} must be from 2s to 1m"));
                        DEFAULT_NODE_SESSION_TIMEOUT
                    }
                    None => DEFAULT_NODE_SESSION_TIMEOUT,
                },
                None => DEFAULT_NODE_SESSION_TIMEOUT,
            };
            let sessions = (kind == "zookeeper" && sessions).then_some(session_timeout);
            let cluster = need_cluster(r, cluster)?;
            let config = ZkSourceConfig { cluster, nodes, interval, timeout, labels, sessions };
            Some(if kind == "zookeeper" {
                SourceConfig::Zookeeper(config)
            } else {
                SourceConfig::ZookeeperAdmin(config)
            })
        }
        "prometheus" => {
            let url = get("url").and_then(|u| r.string(u, "url"));
            let Some(url) = url else {
                r.error(n.pos, "prometheus source needs a `url` (http://host:port/metrics)");
                return None;
            };
            if !crate::notify::http::is_http_url(&url) {
                r.error(
                    get("url").map_or(n.pos, |u| u.pos),
                    format!("url {url:?} must start with http:// or https://"),
                );
            }
            let instance = get("instance").and_then(|i| r.string(i, "instance"));
            let mut limits = crate::source::prom::ScrapeLimits::default();
            for (key, slot, max) in [
                ("sample_limit", &mut limits.sample_limit, 10_000_000),
                ("label_limit", &mut limits.label_limit, 1_000),
                ("label_name_length_limit", &mut limits.label_name_length_limit, 1 << 16),
                ("label_value_length_limit", &mut limits.label_value_length_limit, 1 << 20),
            ] {
                if let Some(v) = get(key) {
                    match r.float(v, key) {
                        Some(n) if n.fract() == 0.0 && n >= 1.0 && n <= max as f64 => *slot = n as usize,
                        Some(_) => r.error(v.pos, format!("{key} must be a whole number from 1 to {max}")),
                        None => {}
                    }
                }
            }
            if let Some(v) = get("body_size_limit")
                && let Some(text) = r.string(v, "body_size_limit")
            {
                match parse_size(&text) {
                    Some(n) if (1..=MAX_BODY_SIZE_LIMIT).contains(&n) => limits.body_size_limit = n,
                    _ => r.error(
                        v.pos,
                        format!("body_size_limit: {text:?} must be a size like 16MiB (B, KiB, MiB, GiB; at most 1GiB)"),
                    ),
                }
            }
            Some(SourceConfig::Prometheus(PromSourceConfig {
                url,
                cluster,
                instance,
                interval,
                timeout,
                labels,
                limits,
            }))
        }
        "log" => {
            let paths = path_list("paths", r);
            if paths.is_empty() {
                r.error(n.pos, "log source needs `paths`: the log files to follow (paths or globs)");
            }
            let instance = get("instance").and_then(|i| r.string(i, "instance"));
            if instance.is_none() {
                r.error(n.pos, "log source needs `instance`: the host:port of the ZooKeeper node whose logs these are");
            }
            let patterns = match get("patterns") {
                None => crate::source::log::zookeeper_patterns(),
                Some(list) => log_patterns(r, list),
            };
            let from_start = match get("from") {
                None => false,
                Some(v) => match r.string(v, "from").as_deref() {
                    Some("end") => false,
                    Some("start") => true,
                    Some(other) => {
                        r.error(v.pos, format!("from: {other:?}; expected start or end (where a first start reads)"));
                        false
                    }
                    None => false,
                },
            };
            let cluster = need_cluster(r, cluster)?;
            Some(SourceConfig::Log(crate::source::log::LogSourceConfig {
                cluster,
                instance: instance?,
                paths,
                interval,
                patterns,
                from_start,
                labels,
            }))
        }
        _ => {
            let paths = path_list("paths", r);
            let backup_dirs = path_list("backup_dirs", r);
            let pid_file = get("pid_file").and_then(|p| r.string(p, "pid_file")).map(|p| base.join(p));
            let zoo_cfg = get("zoo_cfg").and_then(|p| r.string(p, "zoo_cfg")).map(|p| base.join(p));
            let instance = get("instance").and_then(|i| r.string(i, "instance"));
            if instance.is_none() {
                r.error(n.pos, "host source needs `instance`: the host:port of the ZooKeeper node on this host");
            }
            if paths.is_empty() && backup_dirs.is_empty() && pid_file.is_none() && zoo_cfg.is_none() {
                r.error(n.pos, "host source needs at least one of `paths`, `backup_dirs`, `pid_file`, `zoo_cfg`");
            }
            let cluster = need_cluster(r, cluster)?;
            Some(SourceConfig::Host(HostSourceConfig {
                cluster,
                instance: instance?,
                interval,
                paths,
                backup_dirs,
                pid_file,
                zoo_cfg,
                labels,
            }))
        }
    }
}

/// A log source's `patterns`: `{name, regex}` each, names unique, each
/// regex compiled here so that `zkalert check` names the bad one.
fn log_patterns(r: &mut Reader, list: &Node) -> Vec<crate::source::log::PatternConfig> {
    use crate::source::log::{MAX_PATTERNS, PatternConfig};
    let items = r.seq(list, "patterns");
    if items.len() > MAX_PATTERNS {
        r.error(list.pos, format!("patterns: {} of them; at most {MAX_PATTERNS}", items.len()));
    }
    let mut out: Vec<PatternConfig> = Vec::new();
    for item in items.iter().take(MAX_PATTERNS) {
        let fields = r.map(item, "pattern", &["name", "regex"]);
        let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let name = get("name").and_then(|v| r.string(v, "name"));
        let regex = get("regex").and_then(|v| r.string(v, "regex"));
        let (Some(name), Some(regex)) = (name, regex) else {
            r.error(item.pos, "a pattern needs `name` and `regex`");
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
            r.error(item.pos, format!("pattern name {name:?}: letters, digits and _ only"));
        }
        if out.iter().any(|p| p.name == name) {
            r.error(item.pos, format!("pattern name {name:?} given twice"));
        }
        let pattern = PatternConfig { name, regex };
        if let Err(e) = crate::source::log::check_pattern(&pattern) {
            r.error(get("regex").map_or(item.pos, |v| v.pos), e.to_string());
        }
        out.push(pattern);
    }
    out
}

fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// Largest `body_size_limit` a source may set.
const MAX_BODY_SIZE_LIMIT: usize = 1 << 30;

/// A size: bytes, or with a unit `B`, `KiB`/`KB`, `MiB`/`MB`, `GiB`/`GB`
/// (powers of 1024, as Prometheus reads `body_size_limit`).
fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: usize = number.parse().ok()?;
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" => 1 << 10,
        "MiB" | "MB" => 1 << 20,
        "GiB" | "GB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_contains_all;

    /// One ZooKeeper source: the least a config needs.
    pub(super) const SOURCES: &str = "sources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181']}\n";

    /// The problems `text` has, read from `path`.
    pub(super) fn problems(text: &str, path: &Path) -> String {
        Config::parse(text, path).unwrap_err().to_string()
    }

    #[test]
    fn reports_every_problem() {
        let text = "sources:\n  - type: zookeeper\n    nodes: [zk1]\n    interval: 0s\n    colour: x\nnotifiers:\n  - name: a\n    type: pager\nserver:\n  listen: nowhere\n";
        let want = [
            "z.yaml:3:13: node \"zk1\" must be host:port",
            "z.yaml:4:15: interval must be greater than zero",
            "z.yaml:5:5: unknown field \"colour\"",
            "z.yaml:2:5: zookeeper source needs a `cluster` name",
            "z.yaml:8:11: unknown notifier type \"pager\"",
            "z.yaml:10:11: listen: \"nowhere\"",
        ];
        assert_contains_all(&problems(text, Path::new("z.yaml")), &want);
    }

    #[test]
    fn intervals_and_timeouts_are_bounded() {
        let text = "evaluation_interval: 1000y\nsources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181'], interval: 2h, timeout: 10m}\nnotifiers:\n  - {name: c, type: console, timeout: 1h}\n";
        let want = [
            "z.yaml:1:22: evaluation_interval: 1000y is longer than the limit of 1h",
            "z.yaml:3:64: interval: 2h is longer than the limit of 1h",
            "z.yaml:3:77: timeout: 10m is longer than the limit of 5m",
            "z.yaml:5:39: timeout: 1h is longer than the limit of 5m",
        ];
        assert_contains_all(&problems(text, Path::new("z.yaml")), &want);
    }

    #[test]
    fn scrape_limits() {
        let ok = "sources:\n  - {type: prometheus, url: 'http://n:9100/metrics', sample_limit: 1000, body_size_limit: 2MiB, label_limit: 30, label_name_length_limit: 100, label_value_length_limit: 200}\n";
        let c = Config::parse(ok, Path::new("z.yaml")).unwrap();
        let SourceConfig::Prometheus(p) = &c.sources[0] else { panic!("a prometheus source") };
        let want = crate::source::prom::ScrapeLimits {
            sample_limit: 1000,
            body_size_limit: 2 << 20,
            label_limit: 30,
            label_name_length_limit: 100,
            label_value_length_limit: 200,
        };
        assert_eq!(p.limits, want);
        let bad = "sources:\n  - type: prometheus\n    url: 'http://n:9100/metrics'\n    sample_limit: 0\n    body_size_limit: 10XB\n    label_limit: 1.5\n";
        let want = [
            "z.yaml:4:19: sample_limit must be a whole number from 1 to 10000000",
            "z.yaml:5:22: body_size_limit: \"10XB\" must be a size like 16MiB",
            "z.yaml:6:18: label_limit must be a whole number from 1 to 1000",
        ];
        assert_contains_all(&problems(bad, Path::new("z.yaml")), &want);
    }

    #[test]
    fn every_source_type() {
        let text = "sources:\n  - {type: zookeeper_admin, cluster: p, nodes: ['a:8080']}\n  - {type: prometheus, url: 'http://n:9100/metrics', cluster: p}\n  - {type: host, cluster: p, instance: 'a:2181', paths: [/var/lib/zookeeper], pid_file: /run/zk.pid}\n";
        let c = Config::parse(text, Path::new("/etc/z.yaml")).unwrap();
        assert!(matches!(c.sources[0], SourceConfig::ZookeeperAdmin(_)));
        assert!(matches!(&c.sources[1], SourceConfig::Prometheus(p) if p.cluster.as_deref() == Some("p")));
        assert!(matches!(&c.sources[2], SourceConfig::Host(h) if h.paths == [PathBuf::from("/var/lib/zookeeper")]));
        let bad = "sources:\n  - {type: host, cluster: p, nodes: [x]}\n  - {type: prometheus, url: 'ftp://x'}\n";
        let want =
            ["unknown field \"nodes\" in host source", "host source needs `instance`", "must start with http://"];
        assert_contains_all(&problems(bad, Path::new("z.yaml")), &want);
    }

    #[test]
    fn log_sources_take_the_zookeeper_patterns_unless_they_list_their_own() {
        let text = "sources:\n  - {type: log, cluster: p, instance: 'a:2181', paths: [/var/log/zookeeper/zookeeper.log]}\n  - type: log\n    cluster: p\n    instance: 'a:2181'\n    paths: ['gc*.log']\n    from: start\n    patterns:\n      - {name: gc_pause_ms, regex: 'Pause.* ([0-9.]+)ms'}\n";
        let c = Config::parse(text, Path::new("/etc/zkalert/z.yaml")).unwrap();
        let SourceConfig::Log(zk) = &c.sources[0] else { panic!("{:?}", c.sources[0]) };
        assert_eq!(zk.patterns, crate::source::log::zookeeper_patterns());
        assert!(!zk.from_start);
        let SourceConfig::Log(gc) = &c.sources[1] else { panic!("{:?}", c.sources[1]) };
        assert_eq!(gc.paths, [PathBuf::from("/etc/zkalert/gc*.log")], "relative to the config's directory");
        assert_eq!((gc.patterns.len(), gc.from_start), (1, true));
        let bad = "sources:\n  - type: log\n    cluster: p\n    paths: [x.log]\n    from: middle\n    patterns:\n      - {name: a, regex: '(unclosed'}\n      - {name: a, regex: x}\n      - {name: 'b c', regex: x}\n";
        let want = [
            "log source needs `instance`",
            "from: \"middle\"; expected start or end",
            "z.yaml:7:",
            "pattern \"a\": regex parse error",
            "pattern name \"a\" given twice",
            "pattern name \"b c\": letters, digits and _ only",
        ];
        assert_contains_all(&problems(bad, Path::new("z.yaml")), &want);
    }

    #[test]
    fn urls_are_recognised_in_any_case() {
        let cfg = std::path::Path::new("z.yaml");
        let text = "sources:\n  - {type: prometheus, url: 'HTTP://n:9100/metrics'}\nexternal_url: 'HTTPS://zkalert.example:9097'\n";
        let c = Config::parse(text, cfg).unwrap();
        assert_eq!(c.links.external_url.as_deref(), Some("HTTPS://zkalert.example:9097"));
    }

    #[test]
    fn template_problems_at_their_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subject.j2"), "[{{ tier }}]\n{{ alerts.first }}\n").unwrap();
        std::fs::write(dir.path().join("sms.j2"), "{{ tier }").unwrap();
        let cfg = dir.path().join("z.yaml");
        let text = "sources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181']}\ntemplates: {subject: subject.j2, sms: sms.j2}\nexternal_url: ftp://x\n";
        let err = Config::parse(text, &cfg).unwrap_err().to_string();
        let subject = dir.path().join("subject.j2").display().to_string();
        let sms = dir.path().join("sms.j2").display().to_string();
        assert!(err.contains(&format!("{sms}:1:1: template: syntax error")), "{err}");
        assert!(err.contains("external_url: \"ftp://x\" must start with http://"), "{err}");
        // The syntax error stops loading; fixed, the undefined field shows.
        std::fs::write(dir.path().join("sms.j2"), "{{ tier }}").unwrap();
        let err = Config::parse(text.replace("ftp://x", "http://zkalert:9097").as_str(), &cfg).unwrap_err().to_string();
        assert!(err.contains(&format!("{subject}:2:1: template: undefined value")), "{err}");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(
            "sources:\n  - {type: zookeeper, cluster: prod, nodes: ['a:2181']}\n",
            Path::new("/etc/z.yaml"),
        )
        .unwrap();
        assert_eq!(c.evaluation_interval, Duration::from_secs(15));
        assert_eq!(c.notifiers.len(), 1);
        assert_eq!(c.data_dir, PathBuf::from("/etc/zkalert-data"));
    }
}
