//! The ZooKeeper source: polls each node's four-letter words (or its
//! AdminServer) and derives per-node and per-cluster metrics; `session`
//! holds a client session per node so a dying node is polled at once.

pub mod admin_json;
pub mod client;
pub mod derive;
pub mod parse;
pub mod poll;
pub mod session;

use crate::clock::Clock;
use crate::config::ZkSourceConfig;
use crate::source::{PollBatch, Source};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// One ensemble, polled over four-letter words.
pub struct ZkSource {
    pub config: ZkSourceConfig,
    /// Which metrics to report (those the rules read); `None`: all.
    pub keep: Option<Arc<crate::store::Retention>>,
    slow: std::sync::Mutex<SlowCache>,
    failures: crate::source::failures::FailureLog,
}

/// `conf` and `envi` are polled every `SLOW_EVERY` polls (configuration
/// and JVM memory move slowly; the seed polls configuration hourly and
/// resources every 5 minutes); their last answers fill the polls between.
const SLOW_EVERY: u64 = 6;

#[derive(Default)]
struct SlowCache {
    polls: u64,
    by_node: std::collections::HashMap<String, SlowAnswers>,
}

/// A node's last answers to the slow commands.
struct SlowAnswers {
    conf: Option<parse::Reply<parse::Conf>>,
    envi: Option<parse::Reply<parse::Envi>>,
}

impl ZkSource {
    pub fn new(config: ZkSourceConfig, keep: Option<Arc<crate::store::Retention>>) -> Self {
        Self { config, keep, slow: std::sync::Mutex::new(SlowCache::default()), failures: Default::default() }
    }
}

impl Source for ZkSource {
    fn name(&self) -> String {
        format!("zookeeper/{}", self.config.cluster)
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn watch(&self, wake: Arc<tokio::sync::Notify>) -> Vec<tokio::task::JoinHandle<()>> {
        match self.config.sessions {
            Some(timeout) => session::hold(&self.config.nodes, timeout, wake),
            None => Vec::new(),
        }
    }

    fn poll(&self, clock: Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = PollBatch> + Send + '_>> {
        Box::pin(async move {
            let ts = clock.now();
            let slow = {
                let mut cache = self.slow.lock().unwrap_or_else(|p| p.into_inner());
                cache.polls += 1;
                (cache.polls - 1).is_multiple_of(SLOW_EVERY)
            };
            let filter: Option<poll::MetricFilter> =
                self.keep.clone().map(|k| std::sync::Arc::new(move |name: &str| k.keeps(name)) as poll::MetricFilter);
            let mut nodes = poll::poll_ensemble(&self.config.nodes, self.config.timeout, slow, filter).await;
            {
                let mut cache = self.slow.lock().unwrap_or_else(|p| p.into_inner());
                for n in nodes.iter_mut().filter(|n| n.up) {
                    if slow {
                        cache
                            .by_node
                            .insert(n.instance.clone(), SlowAnswers { conf: n.conf.clone(), envi: n.envi.clone() });
                    } else if let Some(last) = cache.by_node.get(&n.instance) {
                        n.conf = last.conf.clone();
                        n.envi = last.envi.clone();
                    }
                }
            }
            crate::source::failures::log_nodes(&self.failures, &self.name(), &nodes, ts);
            let keep = |name: &str| self.keep.as_ref().is_none_or(|k| k.keeps(name));
            derive::batch(&self.config.cluster, &self.config.labels, &nodes, ts, &keep)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, Timestamp};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A hostile "ZooKeeper" on loopback: every connection gets `serve`.
    async fn hostile<F, Fut>(serve: F) -> String
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let serve = Arc::new(serve);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn));
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn why_a_node_gave_no_reply_is_its_poll_error_label() {
        // Refuses: a port nothing listens on (bound, noted, closed).
        let refuses = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        // Trickles: a byte every 100 ms, never done.
        let trickles = hostile(|mut conn| async move {
            for _ in 0..100 {
                if conn.write_all(b"z").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        // Sends too much: 1 MiB over the reply limit.
        let floods = hostile(|mut conn| async move {
            let mut cmd = [0u8; 4];
            let _ = conn.read_exact(&mut cmd).await;
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..=client::MAX_REPLY >> 20 {
                if conn.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let config = ZkSourceConfig {
            cluster: "c".into(),
            nodes: vec![refuses.clone(), trickles.clone(), floods.clone()],
            interval: Duration::from_secs(15),
            timeout: Duration::from_millis(800),
            labels: Labels::new(),
            sessions: None,
        };
        let source = ZkSource::new(config, None);
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::ManualClock::new(Timestamp::from_millis(0)));
        let batch = source.poll(clock).await;
        let reason = |node: &str| {
            let series = batch
                .series
                .iter()
                .find(|s| s.labels.get("instance") == Some(node) && s.labels.get("client_ip").is_none())
                .unwrap_or_else(|| panic!("no series for {node}"));
            assert!(series.values.contains(&("up".to_string(), 0.0)), "{node} is down: {:?}", series.values);
            series.info.as_ref().and_then(|i| i.get(crate::source::failures::POLL_ERROR)).map(str::to_string)
        };
        assert_eq!(reason(&refuses).as_deref(), Some("refused"));
        assert_eq!(reason(&trickles).as_deref(), Some("timeout"));
        assert_eq!(reason(&floods).as_deref(), Some("too_large"));
    }
}
