//! `zkalert run`: load the config (or the built-in default), the rules (or
//! the built-in pack) and run until SIGINT/SIGTERM. Without a config the
//! API serves on loopback with a token kept in the data dir, so the ack
//! command and runbook links the console prints work as printed.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, SourceConfig};
use crate::rule::{LoadOptions, find_rule_files, load_rules};
use crate::runner::{Loaded, Reconfig, ReloadStatus, Reloading, Runbooks, Runner, SourceSpec, run};
use crate::source::Source;
use crate::source::zk::ZkSource;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    let state_path = config.data_dir.join("state.db");
    let mut db = crate::state::StateDb::open(&state_path)?;
    // Ack links in messages carry a capability signed with it.
    let secret = db.server_secret()?;
    config.links.ack_key = Some(secret.clone());
    let loader = Loader { config_path: config_path.map(Path::to_path_buf), defaults, started: config.clone() };
    let loaded = build(&config).map_err(|problems| anyhow::anyhow!("{}", problems.join("\n")))?;
    let rules = &loaded.reconfig.rules;
    tracing::info!(
        rules = rules.rule_count(),
        sources = loaded.sources.len(),
        metrics_read =
            if rules.retention.read_all { "all".to_string() } else { rules.retention.read.len().to_string() },
        inhibit_rules = loaded.reconfig.pipeline.inhibit_rules.len(),
        "starting"
    );
    let longest_source = loaded.sources.iter().map(|s| s.source.interval()).max().unwrap_or(config.evaluation_interval);
    // Restored firing alerts are held for two polls (or their rule's window)
    // while the store refills.
    let hold = longest_source * 2;
    let Loaded { reconfig, sources, runbooks, intake, daily } = loaded;
    let rule_count = reconfig.rules.rule_count();
    let mut runner = Runner::new(reconfig.rules, reconfig.evaluation_interval, reconfig.pipeline, reconfig.channels);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    runner.reload_status = ReloadStatus::started(clock.now());
    runner.external.resolve_timeout = intake.policy.resolve_timeout;
    runner.restore_from(db, clock.now(), hold)?;
    runner.set_daily(daily, clock.now());
    runner.metrics.set_config_reload(true, clock.now());
    if let Some(ha) = &config.ha {
        // Not active until elected: no sends, no heartbeat pings.
        runner.liveness.set_active(false);
        let replica = crate::runner::Replica::join(ha)
            .await
            .map_err(|e| anyhow::anyhow!("cannot join the replicas' election: {e}"))?;
        tracing::info!(replica = %ha.replica, root = %ha.root, "joined the replicas' election (ha)");
        runner.replica = Some(replica);
    }
    // The heartbeat pings while the loop steps; the API reads its state live.
    let heartbeat = config.heartbeat.as_ref().map(|settings| {
        let heartbeat =
            crate::runner::heartbeat::Heartbeat::new(settings.clone(), runner.liveness.clone(), runner.metrics.clone());
        let status = heartbeat.status();
        tokio::spawn(heartbeat.run(clock.clone()));
        status
    });
    let (runbooks_tx, runbooks_rx) = tokio::sync::watch::channel(runbooks);
    let (intake_tx, intake_rx) = tokio::sync::watch::channel(intake);
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
            let (batches_tx, intake_batches) = crate::intake::queue(crate::intake::MAX_QUEUED_ALERTS);
            let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let status = crate::api::StatusView {
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: clock.now(),
                config_path: config.path.as_ref().map(|p| p.display().to_string()),
                rules: rule_count,
                sources: sources.len(),
                ..Default::default()
            };
            // Unpublished (the lists answer 503 until the first step), but
            // the status says what runs from the start.
            let starting = crate::api::Snapshot {
                at: clock.now(),
                status: crate::api::StatusView { reload: runner.reload_status.clone(), ..status.clone() },
                ..Default::default()
            };
            let (snapshot, snapshot_rx) = tokio::sync::watch::channel(Arc::new(starting));
            let state = crate::api::ApiState {
                snapshot: snapshot_rx,
                commands: commands_tx,
                token: server.token.clone(),
                ready: ready.clone(),
                runbooks: runbooks_rx,
                secret,
                metrics: runner.metrics.clone(),
                heartbeat,
                intake: intake_rx,
                intake_batches: batches_tx,
            };
            tokio::spawn(async move {
                if let Err(e) = crate::api::serve_limited(listener, state, limits, std::future::pending()).await {
                    tracing::error!(error = %e, "API server stopped");
                }
            });
            Some(crate::runner::Control {
                commands,
                intake: Some(intake_batches),
                snapshot,
                ready,
                status,
                published_step: None,
                last_build: None,
                owed: false,
            })
        }
    };
    let reloading = Reloading {
        load: Box::new(move || loader.load()),
        requests: reload_on_sighup(),
        runbooks: Some(runbooks_tx),
        intake: Some(intake_tx),
    };
    run(runner, sources, config.evaluation_interval, clock, control, Some(reloading), shutdown_signal()).await;
    Ok(super::EXIT_OK)
}

/// Reads the config and rules again for a reload, keeping what start-up
/// decided that cannot change while running.
struct Loader {
    config_path: Option<PathBuf>,
    defaults: Defaults,
    /// The config as start-up adjusted it (the built-in API, the secret).
    started: Config,
}

impl Loader {
    /// The config and rules as they are now, checked; or every problem.
    /// The data dir (where the state file is), the API's address and
    /// token, the heartbeat and the `ha:` section cannot change while running: a reload that changes them is
    /// refused (restart zkalert for those).
    fn load(&self) -> Result<Loaded, Vec<String>> {
        let mut config = match &self.config_path {
            Some(p) => Config::load(p).map_err(|d| d.items.iter().map(ToString::to_string).collect::<Vec<_>>())?,
            None => builtin_config(&self.defaults).map_err(|e| vec![e.to_string()])?,
        };
        let started = &self.started;
        let mut problems = Vec::new();
        let file = config.path.as_ref().map_or_else(|| "the built-in config".to_string(), |p| p.display().to_string());
        if config.data_dir != started.data_dir {
            problems.push(format!(
                "{file}: data_dir cannot change while running (it holds the state file): {} is in use, the file says {}; restart zkalert to move it",
                started.data_dir.display(),
                config.data_dir.display()
            ));
        }
        if self.config_path.is_none() {
            // The built-in API start-up opened, and its links.
            config.server = started.server.clone();
            config.links = started.links.clone();
        }
        let api = |c: &Config| c.server.as_ref().map(|s| (s.listen, s.token.clone()));
        if api(&config) != api(started) {
            problems.push(format!(
                "{file}: server (the API's listen address and token) cannot change while running; restart zkalert to change it"
            ));
        }
        if config.heartbeat.as_ref().map(|h| (&h.url, h.interval, h.method, h.timeout, &h.proxy_url))
            != started.heartbeat.as_ref().map(|h| (&h.url, h.interval, h.method, h.timeout, &h.proxy_url))
        {
            problems.push(format!(
                "{file}: heartbeat (the ping URL and how it is pinged) cannot change while running; restart zkalert to change it"
            ));
        }
        if config.ha != started.ha {
            problems.push(format!(
                "{file}: ha (the coordination ensemble and this replica) cannot change while running; restart zkalert to change it"
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        config.links.ack_key = started.links.ack_key.clone();
        link_runbooks_to_the_api(&mut config);
        build(&config)
    }
}

/// The rules, sources, routing and notifiers `config` describes, checked:
/// what start-up runs and a reload applies. Every problem, with its
/// `path:line:col` where it comes from a file.
fn build(config: &Config) -> Result<Loaded, Vec<String>> {
    let rule_paths = if config.rules.is_empty() {
        let dir = config.data_dir.join("builtin-rules");
        crate::embedded::write_rules(&dir)
            .map_err(|e| vec![format!("cannot write built-in rules to {}: {e}", dir.display())])?
    } else {
        config.rules.clone()
    };
    let files = find_rule_files(&rule_paths).map_err(|e| vec![format!("cannot list rule files: {e}")])?;
    let rules = load_rules(&files, LoadOptions::default())
        .map_err(|d| d.items.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    for w in &rules.warnings.items {
        tracing::warn!("{w}");
    }
    // Sources drop what the store would not keep.
    let keep = Arc::new(crate::runner::store_retention(&rules.retention));
    // The local runbooks rules name, for the API to serve at /runbooks/.
    let runbooks: Runbooks = rules
        .rules()
        .filter_map(|r| match &r.runbook {
            Some(crate::rule::Runbook::Local { reference, path }) => Some((reference.clone(), path.clone())),
            _ => None,
        })
        .collect();
    let sources = config
        .sources
        .iter()
        .map(|s| -> anyhow::Result<SourceSpec> {
            let source: Arc<dyn Source> = match s {
                SourceConfig::Zookeeper(z) => Arc::new(ZkSource::new(z.clone(), Some(keep.clone()))),
                SourceConfig::Host(h) => Arc::new(crate::source::host::HostSource::new(h.clone())),
                SourceConfig::Log(l) => Arc::new(crate::source::log::LogSource::new(l.clone(), &config.data_dir)?),
                SourceConfig::ZookeeperAdmin(z) => {
                    Arc::new(crate::source::adminserver::AdminSource::new(z.clone(), Some(keep.clone()))?)
                }
                SourceConfig::Prometheus(p) => {
                    Arc::new(crate::source::prom::PromSource::new(p.clone(), Some(keep.clone()))?)
                }
            };
            Ok(SourceSpec { settings: format!("{s:?}"), source })
        })
        .collect::<anyhow::Result<_>>()
        .map_err(|e| vec![format!("source: {e:#}")])?;
    let pipeline =
        config.pipeline.clone().with_rule_file_inhibitions(&rules.inhibit_rules).map_err(|e| vec![e.to_string()])?;
    Ok(Loaded {
        reconfig: Reconfig {
            rules: Arc::new(rules),
            evaluation_interval: config.evaluation_interval,
            pipeline,
            channels: crate::runner::channels::build(config),
        },
        sources,
        runbooks: Arc::new(runbooks),
        intake: Arc::new(config.intake.clone()),
        daily: crate::runner::daily::DailyPlan::from_config(config).map_err(|e| vec![e])?,
    })
}

/// Reload requests, one per SIGHUP (what `systemctl reload` sends; without
/// a handler it would end the process).
fn reload_on_sighup() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading");
                    // A reload already asked for and not yet done covers this one.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP: reload with POST /-/reload"),
    }
    rx
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

    /// A config in `dir` with a Prometheus source (nothing listens there),
    /// rules in `rules.yaml`, a file notifier, and the API on loopback.
    fn config_in(dir: &Path, listen: SocketAddr) -> PathBuf {
        let path = dir.join("zkalert.yaml");
        let text = format!(
            "data_dir: {data}\nrules: [{rules}]\nserver: {{listen: '{listen}', token_file: {token}}}\nsources:\n  - {{type: prometheus, url: 'http://127.0.0.1:9/metrics', cluster: c, interval: 2s, timeout: 1s}}\nnotifiers:\n  - {{name: log, type: file, path: {log}}}\n",
            data = dir.join("data").display(),
            rules = dir.join("rules.yaml").display(),
            log = dir.join("log.jsonl").display(),
            token = dir.join("token").display(),
        );
        std::fs::write(dir.join("token"), "t0ken-for-the-reload-test\n").unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    async fn json(response: reqwest::Response) -> serde_json::Value {
        serde_json::from_str(&response.text().await.unwrap()).unwrap()
    }

    const RULES: &str = "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    severity: P1\n";

    #[tokio::test]
    async fn post_reload_applies_a_good_config_and_refuses_a_broken_one_with_every_problem_and_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = listener.local_addr().unwrap();
        let path = config_in(dir.path(), listen);
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        let config = Config::load(&path).unwrap();
        let loader = Loader { config_path: Some(path.clone()), defaults: Defaults::default(), started: config.clone() };
        let Loaded { reconfig, sources, runbooks, intake, .. } = loader.load().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut runner =
            Runner::new(reconfig.rules, reconfig.evaluation_interval, reconfig.pipeline, reconfig.channels);
        runner.reload_status = ReloadStatus::started(clock.now());
        let (commands_tx, commands) = tokio::sync::mpsc::channel(8);
        let (snapshot, snapshot_rx) = tokio::sync::watch::channel(Arc::new(crate::api::Snapshot::default()));
        let (runbooks_tx, runbooks_rx) = tokio::sync::watch::channel(runbooks);
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = crate::api::ApiState {
            snapshot: snapshot_rx,
            commands: commands_tx,
            token: config.server.as_ref().and_then(|s| s.token.clone()),
            ready: ready.clone(),
            runbooks: runbooks_rx,
            secret: crate::capability::Secret::from_bytes([1; 32]),
            metrics: runner.metrics.clone(),
            heartbeat: None,
            intake: tokio::sync::watch::channel(intake).1,
            intake_batches: crate::intake::queue(1).0,
        };
        tokio::spawn(crate::api::serve(listener, state, std::future::pending()));
        let control = crate::runner::Control {
            commands,
            intake: None,
            snapshot,
            ready,
            status: Default::default(),
            published_step: None,
            last_build: None,
            owed: false,
        };
        let (_sighup, requests) = tokio::sync::mpsc::channel(1);
        let reloading =
            Reloading { load: Box::new(move || loader.load()), requests, runbooks: Some(runbooks_tx), intake: None };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(run(
            runner,
            sources,
            std::time::Duration::from_secs(1),
            clock,
            Some(control),
            Some(reloading),
            async {
                let _ = stopped.await;
            },
        ));

        let http = reqwest::Client::new();
        let url = format!("http://{listen}/-/reload");
        let post = |token: Option<&str>| {
            let request = http.post(&url);
            match token {
                Some(t) => request.bearer_auth(t),
                None => request,
            }
            .send()
        };
        assert_eq!(post(None).await.unwrap().status(), 401);
        assert_eq!(post(Some("wrong")).await.unwrap().status(), 401);

        // A second rule: applied.
        let two = format!("{RULES}  - alert: Up\n    expr: up == 1\n    severity: P3\n");
        std::fs::write(dir.path().join("rules.yaml"), &two).unwrap();
        let ok = post(Some("t0ken-for-the-reload-test")).await.unwrap();
        assert_eq!(ok.status(), 200);
        let body = json(ok).await;
        assert_eq!((body["successful"].as_bool(), body["problems"].as_array().map(Vec::len)), (Some(true), Some(0)));

        // A broken rule file and a broken config: refused, every problem
        // with its position, nothing changed.
        std::fs::write(
            dir.path().join("rules.yaml"),
            "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up ==\n",
        )
        .unwrap();
        let refused = post(Some("t0ken-for-the-reload-test")).await.unwrap();
        assert_eq!(refused.status(), 422);
        let body = json(refused).await;
        assert_eq!(body["successful"], false);
        let problems: Vec<&str> = body["problems"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
        let rules_file = dir.path().join("rules.yaml").display().to_string();
        assert!(problems.iter().any(|p| p.starts_with(&format!("{rules_file}:5:"))), "{problems:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("interval: 2s", "interval: soon")).unwrap();
        std::fs::write(dir.path().join("rules.yaml"), &two).unwrap();
        let refused = json(post(Some("t0ken-for-the-reload-test")).await.unwrap()).await;
        let problems = refused["problems"].to_string();
        assert!(problems.contains(&format!("{}:5:", path.display())), "{problems}");

        // The status shows the refused reload and when the config in force
        // was loaded (once the first step published a snapshot).
        let mut status = serde_json::Value::Null;
        for _ in 0..100 {
            status = json(http.get(format!("http://{listen}/api/v1/status")).send().await.unwrap()).await;
            if status["ready"] == true {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let reload = &status["config_reload"];
        assert_eq!(reload["successful"], false, "{status}");
        assert!(reload["last_success_at"].is_string() && reload["last_attempt_at"].is_string(), "{status}");
        assert_eq!(reload["problems"].to_string(), problems);
        assert_eq!(status["rules"], 2, "the two rules of the last good reload stay: {status}");
        // And /metrics, for an alert on a config nobody can reload.
        let metrics = http.get(format!("http://{listen}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.lines().any(|l| l == "zkalert_config_last_reload_successful 0"), "{metrics}");
        let good_at =
            metrics.lines().find_map(|l| l.strip_prefix("zkalert_config_last_reload_success_timestamp_seconds "));
        assert!(good_at.and_then(|t| t.parse::<f64>().ok()).is_some_and(|t| t > 0.0), "{metrics}");
        let _ = stop.send(());
        let runner = running.await.unwrap();
        assert_eq!(runner.evaluator.rules.rule_count(), 2);
    }

    #[test]
    fn a_reload_cannot_move_the_data_dir_or_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_in(dir.path(), "127.0.0.1:9097".parse().unwrap());
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        let started = Config::load(&path).unwrap();
        let loader = Loader { config_path: Some(path.clone()), defaults: Defaults::default(), started };
        assert!(loader.load().is_ok());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("/data", "/elsewhere").replace("9097", "9098")).unwrap();
        let problems = loader.load().err().unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("data_dir cannot change while running"), "{problems:?}");
        assert!(problems[1].contains("server (the API's listen address and token) cannot change"), "{problems:?}");
    }

    #[test]
    fn a_reload_cannot_change_the_heartbeat_or_ha_but_can_the_watchdogs_channel() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_in(dir.path(), "127.0.0.1:9097".parse().unwrap());
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        let text = std::fs::read_to_string(&path).unwrap()
            + "  - {name: dead, type: file, path: w.jsonl}\nheartbeat: {url: 'http://127.0.0.1:9/ping', interval: 30s}\n"
            + "ha: {zookeeper: ['127.0.0.1:2181'], root: /zkalert/a, replica: a}\n";
        std::fs::write(&path, &text).unwrap();
        let started = Config::load(&path).unwrap();
        let loader = Loader { config_path: Some(path.clone()), defaults: Defaults::default(), started };
        std::fs::write(&path, text.replace("interval: 30s", "interval: 30s, watchdog: {channel: dead}")).unwrap();
        assert!(loader.load().is_ok_and(|l| l.reconfig.pipeline.watchdog), "the watchdog follows the routing");
        std::fs::write(&path, text.replace("/ping'", "/other'")).unwrap();
        let problems = loader.load().err().unwrap();
        assert!(problems[0].contains("heartbeat (the ping URL and how it is pinged) cannot change"), "{problems:?}");
        std::fs::write(&path, text.replace("/zkalert/a", "/zkalert/b")).unwrap();
        let problems = loader.load().err().unwrap();
        assert!(problems[0].contains("ha (the coordination ensemble and this replica) cannot change"), "{problems:?}");
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
