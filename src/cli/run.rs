//! `zkalert run`: load the config (or the built-in default), the rules (or
//! the built-in pack) and run until SIGINT/SIGTERM. Without a config the
//! API serves on loopback with a token kept in the data dir, so the ack
//! command and runbook links the console prints work as printed.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, SourceConfig};
use crate::rule::{LoadOptions, find_rule_files, load_rules};
use crate::runner::{Runner, run};
use crate::source::Source;
use crate::source::zk::ZkSource;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Where the API listens without a config (the CLI's default `--url`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9097";

/// The token file in the data dir, used without a config (the CLI reads it
/// from `./zkalert-data/` when given no token).
pub const TOKEN_FILE: &str = "api-token";

/// What `zkalert run` without a config watches and where its API listens.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// HOST:PORT[,HOST:PORT...] (default 127.0.0.1:2181).
    pub zookeeper: Option<String>,
    /// Default 127.0.0.1:9097.
    pub listen: Option<SocketAddr>,
}

pub async fn main(config_path: Option<&Path>, defaults: Defaults) -> anyhow::Result<i32> {
    let fd_limit = crate::api::raise_fd_limit();
    let mut config = match config_path {
        Some(p) => Config::load(p).map_err(|d| anyhow::anyhow!("invalid config:\n{d}"))?,
        None => builtin_config(&defaults)?,
    };
    // Without a config, the API on loopback: the console's ack command and
    // runbook links then work as printed. Another zkalert on the port only
    // costs this one its API.
    let mut default_api = None;
    if config_path.is_none() {
        let listen = defaults.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().unwrap_or_else(|_| unreachable!()));
        match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => {
                let token_path = config.data_dir.join(TOKEN_FILE);
                let token = api_token(&token_path)
                    .map_err(|e| anyhow::anyhow!("cannot keep the API token in {}: {e}", token_path.display()))?;
                let base = format!("http://{listen}");
                config.links.external_url = Some(base.clone());
                config.links.runbook_base_url = Some(format!("{base}/runbooks"));
                if listen.to_string() != DEFAULT_LISTEN {
                    config.links.ack_args = format!(" --url {base}");
                }
                tracing::info!(
                    url = %base,
                    token_file = %token_path.display(),
                    "API listening on loopback; `zkalert ack`, `alerts`, `silence` in this directory use it and its token"
                );
                config.server = Some(crate::config::ServerConfig { listen, token: Some(token), token_env: None });
                default_api = Some(listener);
            }
            Err(e) => tracing::warn!(%listen, error = %e, "cannot listen: running without the API (acks need it)"),
        }
    }
    link_runbooks_to_the_api(&mut config);
    let rule_paths = if config.rules.is_empty() {
        let dir = config.data_dir.join("builtin-rules");
        crate::embedded::write_rules(&dir)
            .map_err(|e| anyhow::anyhow!("cannot write built-in rules to {}: {e}", dir.display()))?
    } else {
        config.rules.clone()
    };
    let files = find_rule_files(&rule_paths)?;
    let rules = load_rules(&files, LoadOptions::default()).map_err(|d| anyhow::anyhow!("invalid rules:\n{d}"))?;
    for w in &rules.warnings.items {
        tracing::warn!("{w}");
    }
    tracing::info!(
        files = files.len(),
        rules = rules.rule_count(),
        sources = config.sources.len(),
        metrics_read =
            if rules.retention.read_all { "all".to_string() } else { rules.retention.read.len().to_string() },
        "starting"
    );
    let keep = Arc::new(rules.retention.clone());
    // The local runbooks rules name, for the API to serve at /runbooks/.
    let runbooks: Arc<std::collections::BTreeMap<String, std::path::PathBuf>> = Arc::new(
        rules
            .rules()
            .filter_map(|r| match &r.runbook {
                Some(crate::rule::Runbook::Local { reference, path }) => Some((reference.clone(), path.clone())),
                _ => None,
            })
            .collect(),
    );
    let sources: Vec<Arc<dyn Source>> = config
        .sources
        .iter()
        .map(|s| -> anyhow::Result<Arc<dyn Source>> {
            Ok(match s {
                SourceConfig::Zookeeper(z) => Arc::new(ZkSource::new(z.clone(), Some(keep.clone()))),
                SourceConfig::Host(h) => Arc::new(crate::source::host::HostSource::new(h.clone())),
                SourceConfig::ZookeeperAdmin(z) => {
                    Arc::new(crate::source::adminserver::AdminSource::new(z.clone(), Some(keep.clone()))?)
                }
                SourceConfig::Prometheus(p) => {
                    Arc::new(crate::source::prom::PromSource::new(p.clone(), Some(keep.clone()))?)
                }
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let longest_source = sources.iter().map(|s| s.interval()).max().unwrap_or(config.evaluation_interval);
    // Restored firing alerts are held for two polls (or their rule's window)
    // while the store refills.
    let hold = longest_source * 2;
    let rule_count = rules.rule_count();
    let pipeline = config.pipeline.clone().with_rule_file_inhibitions(&rules.inhibit_rules)?;
    tracing::info!(inhibit_rules = pipeline.inhibit_rules.len(), "inhibition");
    let state_path = config.data_dir.join("state.db");
    let mut db = crate::state::StateDb::open(&state_path)?;
    // Ack links in messages carry a capability signed with it.
    let secret = db.server_secret()?;
    config.links.ack_key = Some(secret.clone());
    let mut runner =
        Runner::new(Arc::new(rules), config.evaluation_interval, pipeline, crate::runner::channels::build(&config));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    runner.restore_from(db, clock.now(), hold)?;
    runner.metrics.set_config_reload(true, clock.now());
    let control = match &config.server {
        None => None,
        Some(server) => {
            let listener = match default_api.take() {
                Some(l) => l,
                None => tokio::net::TcpListener::bind(server.listen)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", server.listen))?,
            };
            let limits = fd_limit.map_or_else(Default::default, crate::api::ConnectionLimits::for_fd_limit);
            tracing::info!(
                listen = %server.listen, writes = server.token.is_some(), fd_limit, max_connections = limits.max_connections,
                "API listening"
            );
            if server.token.is_none() {
                tracing::warn!(
                    token_env = server.token_env.as_deref().unwrap_or("-"),
                    "no API token: silences and acks over the API are refused (set server.token_env or token_file)"
                );
            }
            let (commands_tx, commands) = tokio::sync::mpsc::channel(64);
            let (snapshot, snapshot_rx) = tokio::sync::watch::channel(Arc::new(crate::api::Snapshot::default()));
            let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let status = crate::api::StatusView {
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: clock.now(),
                config_path: config.path.as_ref().map(|p| p.display().to_string()),
                rules: rule_count,
                sources: sources.len(),
                ..Default::default()
            };
            let state = crate::api::ApiState {
                snapshot: snapshot_rx,
                commands: commands_tx,
                token: server.token.clone(),
                ready: ready.clone(),
                runbooks: runbooks.clone(),
                secret,
                metrics: runner.metrics.clone(),
            };
            tokio::spawn(async move {
                if let Err(e) = crate::api::serve_limited(listener, state, limits, std::future::pending()).await {
                    tracing::error!(error = %e, "API server stopped");
                }
            });
            Some(crate::runner::Control { commands, snapshot, ready, status, published_step: None })
        }
    };
    run(runner, sources, config.evaluation_interval, clock, control, shutdown_signal()).await;
    Ok(super::EXIT_OK)
}

/// With the API reachable at `external_url` and no `runbook_base_url`,
/// local runbooks are links the API serves rather than bare references.
fn link_runbooks_to_the_api(config: &mut Config) {
    if config.server.is_some()
        && config.links.runbook_base_url.is_none()
        && let Some(external) = &config.links.external_url
    {
        config.links.runbook_base_url = Some(format!("{}/runbooks", external.trim_end_matches('/')));
    }
}

/// The built-in config, watching `defaults.zookeeper` if given.
fn builtin_config(defaults: &Defaults) -> anyhow::Result<Config> {
    let mut config = Config::builtin();
    if let Some(nodes) = &defaults.zookeeper {
        let nodes: Vec<String> = nodes.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
        for n in &nodes {
            let port = n.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                anyhow::bail!("--zookeeper: {n:?} is not HOST:PORT");
            }
        }
        if nodes.is_empty() {
            anyhow::bail!("--zookeeper: no HOST:PORT given");
        }
        for s in &mut config.sources {
            if let SourceConfig::Zookeeper(z) = s {
                z.nodes = nodes.clone();
            }
        }
    }
    let watched: Vec<String> = config
        .sources
        .iter()
        .filter_map(|s| match s {
            SourceConfig::Zookeeper(z) => Some(z.nodes.join(",")),
            _ => None,
        })
        .collect();
    tracing::info!(nodes = %watched.join(","), "no config given: watching with the built-in rules, alerts to the console");
    Ok(config)
}

/// The API token in `path`: read if it is there, else a new random one
/// written with mode 0600 (only its owner may read it). Never logged.
pub fn api_token(path: &Path) -> std::io::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_string();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = [0u8; 32];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    }
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // An existing file (too short a token) keeps its mode: set it.
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runbooks_link_to_the_api_when_it_is_reachable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.yaml");
        let base = "sources: [{type: zookeeper, cluster: c, nodes: ['127.0.0.1:2181']}]\n";
        let load = |extra: &str| {
            std::fs::write(&path, format!("{base}{extra}")).unwrap();
            let mut c = Config::load(&path).unwrap();
            link_runbooks_to_the_api(&mut c);
            c.links.runbook_base_url
        };
        let server = "server: {listen: '127.0.0.1:9097'}\n";
        assert_eq!(
            load(&format!("{server}external_url: https://zkalert.example.com/\n")).as_deref(),
            Some("https://zkalert.example.com/runbooks")
        );
        assert_eq!(load("external_url: https://zkalert.example.com\n"), None, "no API, nothing served");
        assert_eq!(load(server), None, "no external URL to link to");
        let own = "runbook_base_url: https://git.example.com/rb\n";
        assert_eq!(
            load(&format!("{server}{own}external_url: https://zkalert.example.com\n")).as_deref(),
            Some("https://git.example.com/rb")
        );
    }

    #[test]
    fn the_api_token_is_made_once_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/api-token");
        let token = api_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(api_token(&path).unwrap(), token, "kept across restarts");
        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let new = api_token(&path).unwrap();
        assert_ne!(new, token);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
