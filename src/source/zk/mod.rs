//! The ZooKeeper source: polls each node's four-letter words (or its
//! AdminServer) and derives per-node and per-cluster metrics.

pub mod admin;
pub mod client;
pub mod derive;
pub mod parse;
pub mod poll;

use crate::clock::Clock;
use crate::config::ZkSourceConfig;
use crate::runner::{PollBatch, Source};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// One ensemble, polled over four-letter words.
pub struct ZkSource {
    pub config: ZkSourceConfig,
    /// Which metrics to report (those the rules read); `None`: all.
    pub keep: Option<Arc<crate::rule::Retention>>,
    slow: std::sync::Mutex<SlowCache>,
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
    pub fn new(config: ZkSourceConfig, keep: Option<Arc<crate::rule::Retention>>) -> Self {
        Self { config, keep, slow: std::sync::Mutex::new(SlowCache::default()) }
    }
}

impl Source for ZkSource {
    fn name(&self) -> String {
        format!("zookeeper/{}", self.config.cluster)
    }

    fn interval(&self) -> Duration {
        self.config.interval
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
            let keep = |name: &str| self.keep.as_ref().is_none_or(|k| k.keeps(name));
            derive::batch(&self.config.cluster, &self.config.labels, &nodes, ts, &keep)
        })
    }
}
