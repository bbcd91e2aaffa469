//! `zkalert run`: load the config (or the built-in default), the rules (or
//! the built-in pack) and run until SIGINT/SIGTERM.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, SourceConfig};
use crate::rule::{LoadOptions, find_rule_files, load_rules};
use crate::runner::{Runner, Source, run};
use crate::source::zk::ZkSource;
use std::path::Path;
use std::sync::Arc;

pub async fn main(config_path: Option<&Path>) -> anyhow::Result<i32> {
    let config = match config_path {
        Some(p) => Config::load(p).map_err(|d| anyhow::anyhow!("invalid config:\n{d}"))?,
        None => {
            tracing::info!("no config given: watching 127.0.0.1:2181 with the built-in rules, alerts to the console");
            Config::builtin()
        }
    };
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
    let sources: Vec<Arc<dyn Source>> = config
        .sources
        .iter()
        .map(|s| -> anyhow::Result<Arc<dyn Source>> {
            Ok(match s {
                SourceConfig::Zookeeper(z) => Arc::new(ZkSource::new(z.clone(), Some(keep.clone()))),
                SourceConfig::Host(h) => Arc::new(crate::source::host::HostSource::new(h.clone())),
                SourceConfig::ZookeeperAdmin(z) => {
                    Arc::new(crate::source::admin::AdminSource::new(z.clone(), Some(keep.clone()))?)
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
    let mut runner =
        Runner::new(Arc::new(rules), config.evaluation_interval, pipeline, crate::notify::from_config(&config));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state_path = config.data_dir.join("state.db");
    let db = crate::state::StateDb::open(&state_path)?;
    runner.restore_from(db, clock.now(), hold)?;
    let control = match &config.server {
        None => None,
        Some(server) => {
            let listener = tokio::net::TcpListener::bind(server.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", server.listen))?;
            tracing::info!(listen = %server.listen, writes = server.token.is_some(), "API listening");
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
            };
            tokio::spawn(async move {
                if let Err(e) = crate::api::serve(listener, state, std::future::pending()).await {
                    tracing::error!(error = %e, "API server stopped");
                }
            });
            Some(crate::runner::Control { commands, snapshot, ready, status, published_step: None })
        }
    };
    run(runner, sources, config.evaluation_interval, clock, control, shutdown_signal()).await;
    Ok(super::EXIT_OK)
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
