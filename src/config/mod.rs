//! `zkalert.yaml`: what to watch (sources), which rules, where alerts go
//! (notifiers), where state lives. Validated like rule files: every problem
//! at `path:line:col`, all at once.

use crate::diag::{Diagnostics, Pos};
use crate::model::Labels;
use crate::yaml::{self, Node, Reader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod pipeline;

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
}

#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub name: String,
    pub kind: NotifierKind,
    /// One delivery attempt may take this long (default 10 s).
    pub timeout: Duration,
    /// At most one send per this interval (`rate_limit: 20/m`).
    pub min_interval: Option<Duration>,
}

impl NotifierConfig {
    pub fn new(name: impl Into<String>, kind: NotifierKind) -> Self {
        Self { name: name.into(), kind, timeout: Duration::from_secs(10), min_interval: None }
    }
}

#[derive(Debug, Clone)]
pub enum NotifierKind {
    /// Human-readable lines on standard output.
    Console,
    /// One JSON object per notification, appended to a file.
    File { path: PathBuf },
    /// An HTTP POST in one of the webhook flavours (generic, alertmanager,
    /// slack, dingtalk, wecom, feishu).
    Webhook(crate::notify::webhook::WebhookSettings),
    /// SMS through a Twilio-compatible Messages API or a generic HTTP gateway.
    Sms(crate::notify::sms::SmsSettings),
    /// Voice calls through a Twilio-compatible Calls API.
    Voice(crate::notify::voice::VoiceSettings),
    /// Email over SMTP (STARTTLS, implicit TLS or plain).
    Email(crate::notify::email::EmailSettings),
}

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
            })],
            notifiers: vec![NotifierConfig::new("console", NotifierKind::Console)],
            server: None,
            pipeline: crate::pipeline::PipelineConfig::defaults_to(&["console".to_string()]),
            links: Default::default(),
            templates: std::sync::Arc::new(crate::notify::template::Templates::builtin()),
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
                    for n in r.seq(value, "notifiers") {
                        if let Some(nc) = notifier(&mut r, n, base) {
                            if cfg.notifiers.iter().any(|x| x.name == nc.name) {
                                r.error(n.pos, format!("notifier name {:?} is used twice", nc.name));
                            }
                            cfg.notifiers.push(nc);
                        }
                    }
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
                _ => cfg.server = server(&mut r, value, base),
            }
        }
        if cfg.sources.is_empty() {
            r.error(root.pos, "config has no `sources`: nothing to watch");
        }
        if !saw_notifiers {
            cfg.notifiers = Config::builtin().notifiers;
        }
        let names: Vec<String> = cfg.notifiers.iter().map(|n| n.name.clone()).collect();
        cfg.pipeline = pipeline::read(&mut r, &sections, &names);
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

const SOURCE_TYPES: &str = "zookeeper, zookeeper_admin, prometheus, host";

fn source(r: &mut Reader, n: &Node, base: &Path) -> Option<SourceConfig> {
    let Some(kind) = n.get("type").and_then(|t| r.string(t, "type")) else {
        r.error(n.pos, format!("source needs a `type` ({SOURCE_TYPES})"));
        return None;
    };
    let known: &[&str] = match kind.as_str() {
        "zookeeper" | "zookeeper_admin" => &["type", "cluster", "nodes", "interval", "timeout", "labels"],
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
        "host" => &["type", "cluster", "instance", "interval", "paths", "backup_dirs", "pid_file", "labels"],
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
    if timeout >= interval {
        r.error(get("timeout").map_or(n.pos, |t| t.pos), "timeout must be shorter than interval");
    }
    let labels: Labels = get("labels")
        .map(|l| r.string_map(l, "labels").into_iter().map(|(k, v, _)| (k, v)).collect())
        .unwrap_or_default();
    let cluster = get("cluster").and_then(|c| r.string(c, "cluster"));
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
            let cluster = need_cluster(r, cluster)?;
            let config = ZkSourceConfig { cluster, nodes, interval, timeout, labels };
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
        _ => {
            let dirs = |key: &str, r: &mut Reader| -> Vec<PathBuf> {
                get(key)
                    .map(|l| r.seq(l, key).iter().filter_map(|p| r.string(p, key)).map(|p| base.join(p)).collect())
                    .unwrap_or_default()
            };
            let paths = dirs("paths", r);
            let backup_dirs = dirs("backup_dirs", r);
            let pid_file = get("pid_file").and_then(|p| r.string(p, "pid_file")).map(|p| base.join(p));
            let instance = get("instance").and_then(|i| r.string(i, "instance"));
            if instance.is_none() {
                r.error(n.pos, "host source needs `instance`: the host:port of the ZooKeeper node on this host");
            }
            if paths.is_empty() && backup_dirs.is_empty() && pid_file.is_none() {
                r.error(n.pos, "host source needs at least one of `paths`, `backup_dirs`, `pid_file`");
            }
            let cluster = need_cluster(r, cluster)?;
            Some(SourceConfig::Host(HostSourceConfig {
                cluster,
                instance: instance?,
                interval,
                paths,
                backup_dirs,
                pid_file,
                labels,
            }))
        }
    }
}

fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

const NOTIFIER_TYPES: &str = "console, file, webhook, email, sms, voice";

fn notifier(r: &mut Reader, n: &Node, base: &Path) -> Option<NotifierConfig> {
    const FIELDS: &[&str] = &[
        "name",
        "type",
        "path",
        "timeout",
        "rate_limit",
        "flavor",
        "url",
        "url_env",
        "url_file",
        "secret_env",
        "secret_file",
        "headers",
        "proxy_url",
        "provider",
        "to",
        "segments",
        "account_sid",
        "auth_token_env",
        "auth_token_file",
        "from",
        "api_base",
        "method",
        "body_template",
        "repeat",
        "language",
        "host",
        "port",
        "security",
        "username",
        "password_env",
        "password_file",
        "hello_name",
        "accept_invalid_certs",
    ];
    let fields = r.map(n, "notifier", FIELDS);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let name = get("name").and_then(|v| r.string(v, "name"));
    let kind = get("type").and_then(|v| r.string(v, "type"));
    let Some(name) = name else {
        r.error(n.pos, "notifier needs a `name`");
        return None;
    };
    let timeout = get("timeout").and_then(|v| positive_duration(r, v, "timeout")).unwrap_or(Duration::from_secs(10));
    let proxy_url = get("proxy_url").and_then(|v| proxy_url(r, v, kind.as_deref()));
    let kind = match kind.as_deref() {
        Some("console") => NotifierKind::Console,
        Some("file") => match get("path").and_then(|p| r.string(p, "path")) {
            Some(p) => NotifierKind::File { path: base.join(p) },
            None => {
                r.error(n.pos, "file notifier needs a `path`");
                return None;
            }
        },
        Some("webhook") => {
            let flavor_text = get("flavor").and_then(|v| r.string(v, "flavor")).unwrap_or_else(|| "generic".into());
            let Some(flavor) = crate::notify::webhook::Flavor::parse(&flavor_text) else {
                r.error(
                    get("flavor").map_or(n.pos, |f| f.pos),
                    format!(
                        "unknown webhook flavor {flavor_text:?}; expected generic, alertmanager, slack, dingtalk, wecom or feishu"
                    ),
                );
                return None;
            };
            let url = match get("url") {
                Some(v) => r.string(v, "url"),
                None => secret(r, &fields, "url", base),
            };
            let Some(url) = url else {
                if get("url_env").is_none() && get("url_file").is_none() {
                    r.error(n.pos, "webhook notifier needs `url` (or `url_env` / `url_file` when it holds a token)");
                }
                return None;
            };
            let mut settings = crate::notify::webhook::WebhookSettings::new(name.clone(), flavor, url);
            settings.secret = secret(r, &fields, "secret", base);
            settings.headers = get("headers")
                .map(|h| r.string_map(h, "headers").into_iter().map(|(k, v, _)| (k, v)).collect())
                .unwrap_or_default();
            settings.timeout = timeout;
            settings.proxy_url = proxy_url;
            // Checked now, so `check` reports it; built again at run time.
            if let Err(e) = crate::notify::webhook::WebhookNotifier::new(settings.clone()) {
                r.error(n.pos, e);
            }
            NotifierKind::Webhook(settings)
        }
        Some("email") => {
            let host = get("host").and_then(|v| r.string(v, "host"));
            let from = get("from").and_then(|v| r.string(v, "from"));
            let to: Vec<String> = get("to")
                .map(|t| r.seq(t, "to").iter().filter_map(|x| r.string(x, "to")).collect())
                .unwrap_or_default();
            let (Some(host), Some(from)) = (host, from) else {
                r.error(n.pos, "email notifier needs `host`, `from` and `to`");
                return None;
            };
            let mut e = crate::notify::email::EmailSettings::new(name.clone(), host, from, to);
            if let Some(v) = get("security") {
                let text = r.string(v, "security").unwrap_or_default();
                match crate::notify::email::Security::parse(&text) {
                    Some(sec) => {
                        e.security = sec;
                        e.port = sec.default_port();
                    }
                    None => r.error(v.pos, format!("security: {text:?}; expected starttls, tls or plain")),
                }
            }
            if let Some(p) = get("port").and_then(|v| r.float(v, "port")) {
                e.port = p.clamp(0.0, 65535.0) as u16;
            }
            e.username = get("username").and_then(|v| r.string(v, "username"));
            e.password = secret(r, &fields, "password", base);
            e.hello_name = get("hello_name").and_then(|v| r.string(v, "hello_name"));
            e.accept_invalid_certs =
                get("accept_invalid_certs").and_then(|v| r.boolean(v, "accept_invalid_certs")).unwrap_or(false);
            e.timeout = timeout;
            let templates = std::sync::Arc::new(crate::notify::template::Templates::builtin());
            if let Err(err) = crate::notify::email::EmailNotifier::new(e.clone(), templates, Default::default()) {
                r.error(n.pos, err);
                return None;
            }
            NotifierKind::Email(e)
        }
        Some(kind @ ("sms" | "voice")) => {
            let to: Vec<String> = get("to")
                .map(|t| r.seq(t, "to").iter().filter_map(|x| r.string(x, "to")).collect())
                .unwrap_or_default();
            let twilio = |r: &mut Reader| -> Option<crate::notify::sms::Twilio> {
                let sid = get("account_sid").and_then(|v| r.string(v, "account_sid"));
                let token = secret(r, &fields, "auth_token", base);
                let from = get("from").and_then(|v| r.string(v, "from"));
                let (Some(sid), Some(token), Some(from)) = (sid, token, from) else {
                    r.error(n.pos, format!("{kind} notifier (twilio) needs `account_sid`, `auth_token_env` or `auth_token_file`, and `from`"));
                    return None;
                };
                let mut t = crate::notify::sms::Twilio::new(sid, token, from);
                if let Some(b) = get("api_base").and_then(|v| r.string(v, "api_base")) {
                    t.api_base = b;
                }
                Some(t)
            };
            let built = if kind == "voice" {
                let mut v = crate::notify::voice::VoiceSettings::new(name.clone(), twilio(r)?, to);
                v.timeout = timeout;
                v.proxy_url = proxy_url;
                v.repeat = get("repeat").and_then(|x| r.boolean(x, "repeat")).unwrap_or(true);
                v.language = get("language").and_then(|x| r.string(x, "language"));
                crate::notify::voice::VoiceNotifier::new(v.clone()).map(|_| NotifierKind::Voice(v))
            } else {
                let provider = match get("provider").and_then(|v| r.string(v, "provider")).as_deref() {
                    Some("twilio") | None => crate::notify::sms::SmsProvider::Twilio(twilio(r)?),
                    Some("http") => {
                        let url = match get("url") {
                            Some(v) => r.string(v, "url"),
                            None => secret(r, &fields, "url", base),
                        };
                        let body = get("body_template").and_then(|v| r.string(v, "body_template"));
                        let (Some(url), Some(body)) = (url, body) else {
                            r.error(
                                n.pos,
                                "sms notifier (http) needs `url` (or `url_env`/`url_file`) and `body_template`",
                            );
                            return None;
                        };
                        let mut g = crate::notify::sms::HttpGateway::new(url, body);
                        if let Some(m) = get("method").and_then(|v| r.string(v, "method")) {
                            g.method = m;
                        }
                        g.headers = get("headers")
                            .map(|h| r.string_map(h, "headers").into_iter().map(|(k, v, _)| (k, v)).collect())
                            .unwrap_or_default();
                        crate::notify::sms::SmsProvider::Http(g)
                    }
                    Some(other) => {
                        r.error(
                            get("provider").map_or(n.pos, |p| p.pos),
                            format!("unknown sms provider {other:?}; expected twilio or http"),
                        );
                        return None;
                    }
                };
                let mut sms = crate::notify::sms::SmsSettings::new(name.clone(), provider, to);
                sms.timeout = timeout;
                sms.proxy_url = proxy_url;
                if let Some(seg) = get("segments").and_then(|v| r.float(v, "segments")) {
                    sms.segments = seg.max(0.0) as usize;
                }
                crate::notify::sms::SmsNotifier::new(sms.clone()).map(|_| NotifierKind::Sms(sms))
            };
            match built {
                Ok(k) => k,
                Err(e) => {
                    r.error(n.pos, e);
                    return None;
                }
            }
        }
        Some(other) => {
            r.error(
                get("type").map_or(n.pos, |t| t.pos),
                format!("unknown notifier type {other:?}; expected {NOTIFIER_TYPES}"),
            );
            return None;
        }
        None => {
            r.error(n.pos, format!("notifier needs a `type` ({NOTIFIER_TYPES})"));
            return None;
        }
    };
    let mut config = NotifierConfig::new(name, kind);
    config.timeout = timeout;
    if let Some(v) = get("rate_limit")
        && let Some(text) = r.string(v, "rate_limit")
    {
        match parse_rate(&text) {
            Some(every) => config.min_interval = Some(every),
            None => r.error(v.pos, format!("rate_limit: {text:?} is not a rate like 20/m (per s, m or h)")),
        }
    }
    Some(config)
}

/// A notifier's `proxy_url`, checked where it stands: an `http(s)` URL with
/// a host, on a notifier that sends over HTTP.
fn proxy_url(r: &mut Reader, n: &Node, kind: Option<&str>) -> Option<crate::notify::http::ProxyUrl> {
    let text = r.string(n, "proxy_url")?;
    if let Some(kind) = kind
        && !matches!(kind, "webhook" | "sms" | "voice")
    {
        r.error(n.pos, format!("proxy_url: {kind} notifiers do not send over HTTP (webhook, sms and voice do)"));
        return None;
    }
    match crate::notify::http::ProxyUrl::parse(&text) {
        Ok(p) => Some(p),
        Err(e) => {
            r.error(n.pos, e);
            None
        }
    }
}

/// A secret from `<key>_env` (an environment variable) or `<key>_file` (a
/// file's contents, trimmed), never from the config text; errors name the
/// variable or file, never the value.
fn secret(r: &mut Reader, fields: &[(&str, &Node)], key: &str, base: &Path) -> Option<String> {
    let get = |k: String| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| *v);
    let (env, file) = (get(format!("{key}_env")), get(format!("{key}_file")));
    if env.is_some() && file.is_some() {
        r.error(env.map_or(Pos::new(1, 1), |n| n.pos), format!("give {key}_env or {key}_file, not both"));
        return None;
    }
    if let Some(n) = env {
        let var = r.string(n, &format!("{key}_env"))?;
        return match std::env::var(&var) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => {
                r.error(n.pos, format!("{key}_env: environment variable {var} is not set"));
                None
            }
        };
    }
    let n = file?;
    let path = base.join(r.string(n, &format!("{key}_file"))?);
    match yaml::read_file(&path) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        Ok(_) => {
            r.error(n.pos, format!("{key}_file: {} is empty", path.display()));
            None
        }
        Err(e) => {
            r.error(n.pos, format!("{key}_file: cannot read {}: {e}", path.display()));
            None
        }
    }
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

/// `N/s`, `N/m`, `N/h` → the interval between two sends.
fn parse_rate(text: &str) -> Option<Duration> {
    let (count, unit) = text.trim().split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|c| *c > 0)?;
    let unit = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return None,
    };
    Some(unit / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_problem() {
        let text = "sources:\n  - type: zookeeper\n    nodes: [zk1]\n    interval: 0s\n    colour: x\nnotifiers:\n  - name: a\n    type: pager\nserver:\n  listen: nowhere\n";
        let err = Config::parse(text, Path::new("z.yaml")).unwrap_err().to_string();
        for want in [
            "z.yaml:3:13: node \"zk1\" must be host:port",
            "z.yaml:4:15: interval must be greater than zero",
            "z.yaml:5:5: unknown field \"colour\"",
            "z.yaml:2:5: zookeeper source needs a `cluster` name",
            "z.yaml:8:11: unknown notifier type \"pager\"",
            "z.yaml:10:11: listen: \"nowhere\"",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }

    #[test]
    fn intervals_and_timeouts_are_bounded() {
        let text = "evaluation_interval: 1000y\nsources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181'], interval: 2h, timeout: 10m}\nnotifiers:\n  - {name: c, type: console, timeout: 1h}\n";
        let err = Config::parse(text, Path::new("z.yaml")).unwrap_err().to_string();
        for want in [
            "z.yaml:1:22: evaluation_interval: 1000y is longer than the limit of 1h",
            "z.yaml:3:64: interval: 2h is longer than the limit of 1h",
            "z.yaml:3:77: timeout: 10m is longer than the limit of 5m",
            "z.yaml:5:39: timeout: 1h is longer than the limit of 5m",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
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
        let err = Config::parse(bad, Path::new("z.yaml")).unwrap_err().to_string();
        for want in [
            "z.yaml:4:19: sample_limit must be a whole number from 1 to 10000000",
            "z.yaml:5:22: body_size_limit: \"10XB\" must be a size like 16MiB",
            "z.yaml:6:18: label_limit must be a whole number from 1 to 1000",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }

    #[test]
    fn every_source_type() {
        let text = "sources:\n  - {type: zookeeper_admin, cluster: p, nodes: ['a:8080']}\n  - {type: prometheus, url: 'http://n:9100/metrics', cluster: p}\n  - {type: host, cluster: p, instance: 'a:2181', paths: [/var/lib/zookeeper], pid_file: /run/zk.pid}\n";
        let c = Config::parse(text, Path::new("/etc/z.yaml")).unwrap();
        assert!(matches!(c.sources[0], SourceConfig::ZookeeperAdmin(_)));
        assert!(matches!(&c.sources[1], SourceConfig::Prometheus(p) if p.cluster.as_deref() == Some("p")));
        assert!(matches!(&c.sources[2], SourceConfig::Host(h) if h.paths == [PathBuf::from("/var/lib/zookeeper")]));
        let err = Config::parse(
            "sources:\n  - {type: host, cluster: p, nodes: [x]}\n  - {type: prometheus, url: 'ftp://x'}\n",
            Path::new("z.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field \"nodes\" in host source"), "{err}");
        assert!(err.contains("host source needs `instance`"), "{err}");
        assert!(err.contains("must start with http://"), "{err}");
    }

    #[test]
    fn notifier_timeout_and_rate_limit() {
        let c = Config::parse(
            "sources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181']}\nnotifiers:\n  - {name: f, type: file, path: x, timeout: 3s, rate_limit: 20/m}\n",
            Path::new("z.yaml"),
        )
        .unwrap();
        assert_eq!(c.notifiers[0].timeout, Duration::from_secs(3));
        assert_eq!(c.notifiers[0].min_interval, Some(Duration::from_secs(3)));
        let err = Config::parse(
            "sources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181']}\nnotifiers:\n  - {name: f, type: console, rate_limit: fast}\n",
            Path::new("z.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rate_limit: \"fast\" is not a rate"), "{err}");
    }

    #[test]
    fn webhook_secrets_come_from_env_or_file_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "SEC-file-4242\n").unwrap();
        let cfg = dir.path().join("z.yaml");
        let var = "ZKALERT_TEST_WEBHOOK_URL_7731";
        let text = format!(
            "sources:\n  - {{type: zookeeper, cluster: p, nodes: ['a:2181']}}\nnotifiers:\n  - {{name: ding, type: webhook, flavor: dingtalk, url_env: {var}, secret_file: secret.txt}}\n"
        );
        let err = Config::parse(&text, &cfg).unwrap_err().to_string();
        assert!(err.contains(&format!("url_env: environment variable {var} is not set")), "{err}");
        let with_url = text
            .replace(&format!("url_env: {var}"), "url: 'https://oapi.dingtalk.com/robot/send?access_token=TOKEN-9911'");
        let c = Config::parse(&with_url, &cfg).unwrap();
        let NotifierKind::Webhook(w) = &c.notifiers[0].kind else { panic!("a webhook") };
        assert_eq!(w.secret.as_deref(), Some("SEC-file-4242"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("SEC-file-4242") && !shown.contains("TOKEN-9911"), "{shown}");
        let bad = with_url.replace("dingtalk", "teams");
        let err = Config::parse(&bad, &cfg).unwrap_err().to_string();
        assert!(err.contains("unknown webhook flavor \"teams\""), "{err}");
        let both = with_url.replace("secret_file: secret.txt", "secret_file: secret.txt, secret_env: X");
        assert!(Config::parse(&both, &cfg).unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn sms_and_voice_notifiers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "tw-secret-5150").unwrap();
        let cfg = dir.path().join("z.yaml");
        let text = "sources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181']}\nnotifiers:\n  - {name: sms, type: sms, account_sid: AC1, auth_token_file: token, from: '+15550001111', to: ['+8613800138000'], segments: 2}\n  - {name: gw, type: sms, provider: http, url: 'http://127.0.0.1:9/send', body_template: '{\"to\": {{ to | tojson }}, \"text\": {{ text | tojson }}}', to: ['+8613800138000']}\n  - {name: call, type: voice, account_sid: AC1, auth_token_file: token, from: '+15550001111', to: ['+8613800138000'], language: zh-CN}\n";
        let c = Config::parse(text, &cfg).unwrap();
        assert!(matches!(&c.notifiers[0].kind, NotifierKind::Sms(s) if s.segments == 2));
        assert!(matches!(&c.notifiers[1].kind, NotifierKind::Sms(_)));
        assert!(matches!(&c.notifiers[2].kind, NotifierKind::Voice(v) if v.language.as_deref() == Some("zh-CN")));
        assert!(!format!("{c:?}").contains("tw-secret-5150"), "the token is never shown");
        let err = Config::parse(&text.replace("'+8613800138000'], segments", "'13800138000'], segments"), &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("E.164"), "{err}");
    }

    #[test]
    fn urls_are_recognised_in_any_case() {
        let cfg = std::path::Path::new("z.yaml");
        let text = "sources:\n  - {type: prometheus, url: 'HTTP://n:9100/metrics'}\nexternal_url: 'HTTPS://zkalert.example:9097'\n";
        let c = Config::parse(text, cfg).unwrap();
        assert_eq!(c.links.external_url.as_deref(), Some("HTTPS://zkalert.example:9097"));
    }

    #[test]
    fn proxy_url_is_checked_where_it_stands_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "tw-secret-5150").unwrap();
        let cfg = dir.path().join("z.yaml");
        let text = "sources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181']}\nnotifiers:\n  - {name: hook, type: webhook, url: 'http://127.0.0.1:9/x', proxy_url: 'HTTP://user:pr0xy-pass@proxy.example:3128'}\n  - {name: sms, type: sms, account_sid: AC1, auth_token_file: token, from: '+15550001111', to: ['+8613800138000'], proxy_url: 'http://proxy.example:3128'}\n  - {name: call, type: voice, account_sid: AC1, auth_token_file: token, from: '+15550001111', to: ['+8613800138000'], proxy_url: 'https://proxy.example:3129'}\n";
        let c = Config::parse(text, &cfg).unwrap();
        let proxies: Vec<_> = c
            .notifiers
            .iter()
            .map(|n| match &n.kind {
                NotifierKind::Webhook(w) => w.proxy_url.clone(),
                NotifierKind::Sms(s) => s.proxy_url.clone(),
                NotifierKind::Voice(v) => v.proxy_url.clone(),
                _ => None,
            })
            .map(|p| p.map(|p| p.as_str().to_string()))
            .collect();
        assert_eq!(
            proxies,
            [
                Some("HTTP://user:pr0xy-pass@proxy.example:3128".to_string()),
                Some("http://proxy.example:3128".into()),
                Some("https://proxy.example:3129".into())
            ]
        );
        assert!(!format!("{c:?}").contains("pr0xy-pass"), "the proxy's credentials are never shown");
        let bad = "sources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181']}\nnotifiers:\n  - {name: hook, type: webhook, url: 'http://127.0.0.1:9/x', proxy_url: 'socks5://u:pr0xy-pass@p:1080'}\n  - {name: mail, type: email, host: smtp, from: a@b, to: [c@d], proxy_url: 'http://p:3128'}\n";
        let err = Config::parse(bad, &cfg).unwrap_err().to_string();
        assert!(err.contains("z.yaml:4:73: proxy_url socks5://p:1080/… must be an http:// or https:// URL"), "{err}");
        assert!(err.contains("z.yaml:5:76: proxy_url: email notifiers do not send over HTTP"), "{err}");
        assert!(!err.contains("pr0xy-pass"), "{err}");
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
