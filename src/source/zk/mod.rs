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
            let nodes = poll::poll_ensemble(&self.config.nodes, self.config.timeout).await;
            derive::batch(&self.config.cluster, &self.config.labels, &nodes, ts)
        })
    }
}
