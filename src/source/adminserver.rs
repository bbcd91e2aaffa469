//! Sources → store → rules…: the first stage, the ZooKeeper AdminServer
//! source. It polls each node's AdminServer (`GET /commands/<name>` over
//! HTTP) instead of its four-letter words, turns the replies into the same
//! [`NodeObservation`]s as the 4lw poller (parsers in
//! [`crate::source::zk::admin_json`]) and derives the same metrics with
//! [`derive::batch`], so rules read one vocabulary (`docs/metrics.md`).

use crate::clock::Clock;
use crate::config::ZkSourceConfig;
use crate::source::scrape::{HttpReply, fetch, http_client};
use crate::source::zk::admin_json::{self as parsers, AdminError};
use crate::source::zk::client::FetchError;
use crate::source::zk::derive;
use crate::source::zk::parse::Reply;
use crate::source::zk::poll::NodeObservation;
use crate::source::{PollBatch, Source};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest AdminServer reply read (as for 4lw replies).
const MAX_REPLY: usize = crate::source::zk::client::MAX_REPLY;

/// The AdminServer commands polled, in their long names.
pub const COMMANDS: [&str; 4] = ["monitor", "stats", "is_read_only", "connections"];

/// One ensemble, polled over the AdminServer.
pub struct AdminSource {
    pub config: ZkSourceConfig,
    /// Which metrics to report (those the rules read); `None`: all.
    pub keep: Option<Arc<crate::store::Retention>>,
    client: reqwest::Client,
    failures: crate::source::failures::FailureLog,
}

impl AdminSource {
    /// `config.nodes` are AdminServer addresses (`host:port`, or a base URL
    /// such as `https://host:8443`).
    pub fn new(config: ZkSourceConfig, keep: Option<Arc<crate::store::Retention>>) -> anyhow::Result<Self> {
        let client = http_client(config.timeout)?;
        Ok(Self { config, keep, client, failures: Default::default() })
    }

    /// Polls every node concurrently, all commands of a node concurrently.
    pub async fn observe(&self) -> Vec<NodeObservation> {
        let mut set = tokio::task::JoinSet::new();
        for (i, node) in self.config.nodes.iter().enumerate() {
            let (client, node, timeout) = (self.client.clone(), node.clone(), self.config.timeout);
            set.spawn(async move { (i, poll_node(&client, &node, timeout).await) });
        }
        let mut out: Vec<NodeObservation> = self
            .config
            .nodes
            .iter()
            .map(|n| NodeObservation { instance: n.clone(), ..NodeObservation::default() })
            .collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, obs)) = joined
                && let Some(slot) = out.get_mut(i)
            {
                *slot = obs;
            }
        }
        out
    }

    /// One poll as a batch at `ts`.
    pub async fn collect(&self, ts: crate::model::Timestamp) -> PollBatch {
        let nodes = self.observe().await;
        crate::source::failures::log_nodes(&self.failures, &self.name(), &nodes, ts);
        let keep = |name: &str| self.keep.as_ref().is_none_or(|k| k.keeps(name));
        derive::batch(&self.config.cluster, &self.config.labels, &nodes, ts, &keep)
    }
}

impl Source for AdminSource {
    fn name(&self) -> String {
        format!("zookeeper-admin/{}", self.config.cluster)
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn poll(&self, clock: Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = PollBatch> + Send + '_>> {
        Box::pin(async move { self.collect(clock.now()).await })
    }
}

/// `http://host:port/commands/<cmd>` for a configured node.
pub fn command_url(node: &str, cmd: &str) -> String {
    let base = node.trim_end_matches('/');
    if base.contains("://") { format!("{base}/commands/{cmd}") } else { format!("http://{base}/commands/{cmd}") }
}

/// Polls one node's AdminServer: the [`COMMANDS`] at once, each bounded by
/// `timeout`. `up` once any command got any HTTP answer.
pub async fn poll_node(client: &reqwest::Client, node: &str, timeout: Duration) -> NodeObservation {
    let started = Instant::now();
    let get = |cmd: &str| {
        let url = command_url(node, cmd);
        async move { fetch(client, &url, Some("application/json"), MAX_REPLY).await }
    };
    let (monitor, stats, isro, conns) =
        tokio::join!(get("monitor"), get("stats"), get("is_read_only"), get("connections"));
    let mut obs = NodeObservation { instance: node.to_string(), ..NodeObservation::default() };
    let mut answered = |cmd: &str, r: Result<HttpReply, FetchError>| -> Option<HttpReply> {
        match r {
            Ok(reply) => Some(reply),
            Err(e) => {
                let e = match e {
                    FetchError::Timeout { addr, .. } => FetchError::Timeout { addr, timeout },
                    other => other,
                };
                obs.errors.push((cmd.to_string(), e));
                None
            }
        }
    };
    let monitor = answered("monitor", monitor);
    let stats = answered("stats", stats);
    let isro = answered("is_read_only", isro);
    let conns = answered("connections", conns);
    obs.up = monitor.is_some() || stats.is_some() || isro.is_some() || conns.is_some();
    let mut failed = Vec::new();
    let mut garbled = |cmd: &str, e: AdminError| {
        failed.push((cmd.to_string(), FetchError::Read { addr: command_url(node, cmd), reason: e.to_string() }));
    };
    if let Some(r) = &monitor {
        match parsers::parse_monitor(r.status, &r.body) {
            Ok(m) => obs.mntr = Some(m),
            Err(_) if is_not_serving_error(r) => obs.mntr = Some(Reply::NotServing),
            Err(e) => garbled("monitor", e),
        }
    }
    if let Some(r) = &stats {
        obs.probe_latency = Some(r.elapsed);
        match parsers::parse_stats(r.status, &r.body) {
            Ok(s) => obs.srvr = Some(s.map(|s| s.srvr)),
            Err(_) if is_not_serving_error(r) => obs.srvr = Some(Reply::NotServing),
            Err(e) => garbled("stats", e),
        }
    }
    if let Some(r) = &isro {
        match parsers::parse_is_read_only(r.status, &r.body) {
            Ok(i) => obs.isro = Some(i),
            Err(e) => garbled("is_read_only", e),
        }
    }
    if let Some(r) = &conns {
        match parsers::parse_connections(r.status, &r.body) {
            Ok(c) => obs.cons = Some(c),
            Err(e) => garbled("connections", e),
        }
    }
    for (cmd, e) in &failed {
        tracing::debug!(node, cmd, error = %e, "AdminServer reply not understood");
    }
    obs.errors.extend(failed);
    obs.duration = started.elapsed();
    obs
}

/// An HTTP 500 from a peer without quorum whose page is not the known
/// `monitor` one (other JDKs, other commands) but still says so.
fn is_not_serving_error(r: &HttpReply) -> bool {
    let text = String::from_utf8_lossy(&r.body);
    r.status == 500 && (text.contains("not currently serving") || text.contains("zkServer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_urls() {
        assert_eq!(command_url("127.0.0.1:8080", "stats"), "http://127.0.0.1:8080/commands/stats");
        assert_eq!(command_url("https://zk1:8443/", "monitor"), "https://zk1:8443/commands/monitor");
    }

    #[tokio::test]
    async fn a_node_that_refuses_is_down_with_errors() {
        // A port nothing listens on: bind, note, drop.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = http_client(Duration::from_secs(1)).unwrap();
        let obs = poll_node(&client, &format!("127.0.0.1:{port}"), Duration::from_secs(1)).await;
        assert!(!obs.up);
        assert_eq!(obs.errors.len(), COMMANDS.len(), "{:?}", obs.errors);
        assert!(obs.mntr.is_none() && obs.srvr.is_none());
    }
}
