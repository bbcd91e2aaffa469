//! Sources: where samples come from (ZooKeeper four-letter words and
//! AdminServer, Prometheus text, host checks, log files). Each poll yields a `PollBatch`
//! for the series store.

pub mod adminserver;
pub mod failures;
pub mod host;
pub mod log;
pub mod prom;
pub mod scrape;
pub mod zk;

use crate::clock::Clock;
use crate::model::{Labels, Sample, Timestamp};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What one poll of a source produced: per label set, values at one time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PollBatch {
    pub series: Vec<SeriesBatch>,
}

/// The samples of one label set (a target, or a target plus extra labels)
/// at one timestamp: the store resolves the label set once for all of them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SeriesBatch {
    pub labels: Labels,
    /// Info labels (a node's `role`); `None` leaves them as they are.
    pub info: Option<Labels>,
    pub timestamp: Timestamp,
    pub values: Vec<(String, f64)>,
}

impl PollBatch {
    /// Flattens into samples (for tests, recording and replay).
    pub fn samples(&self) -> Vec<Sample> {
        self.series
            .iter()
            .flat_map(|s| {
                s.values.iter().map(|(name, value)| Sample {
                    name: name.clone(),
                    labels: s.labels.clone(),
                    timestamp: s.timestamp,
                    value: *value,
                })
            })
            .collect()
    }
}

/// Something that produces samples on a schedule.
pub trait Source: Send + Sync + 'static {
    fn name(&self) -> String;
    fn interval(&self) -> Duration;
    fn poll(&self, clock: Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = PollBatch> + Send + '_>>;

    /// Starts what tells this source to poll before its next interval
    /// (`wake`): a `zookeeper` source's held sessions. The poll task aborts
    /// the returned tasks when it stops.
    fn watch(&self, wake: Arc<tokio::sync::Notify>) -> Vec<tokio::task::JoinHandle<()>> {
        let _ = wake;
        Vec::new()
    }
}
