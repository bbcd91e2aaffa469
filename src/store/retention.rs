//! What the series store keeps: which metrics at all, and for how long.
//! The rule loader fills it from what expressions and scripts read.

use std::time::Duration;

/// What the store must keep for the rules: which metrics they read at all,
/// and per metric the longest range a window function reads it over.
/// Metrics no rule reads are not stored; metrics no window function reads
/// keep only their latest sample. That keeps memory flat however many
/// metrics a source reports (a ZooKeeper `mntr` has ~550).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub per_metric: rustc_hash::FxHashMap<String, Duration>,
    pub longest: Duration,
    /// Some window function takes a non-literal metric or range: keep every
    /// metric for `longest` (at least the default lookback).
    pub keep_everything: bool,
    /// Names rules may read (variables, properties, literal indexes, and
    /// the string literals of scripts that compute names).
    pub read: rustc_hash::FxHashSet<String>,
    /// Store every metric regardless (set by tests and tools that want the
    /// whole picture).
    pub read_all: bool,
}

impl Retention {
    /// Records names a script may read.
    pub fn add_reads(&mut self, names: impl IntoIterator<Item = String>) {
        self.read.extend(names);
    }

    /// Whether the store should keep this metric at all. A target's `up`
    /// and poll duration always: staleness and `/metrics` need them.
    pub fn keeps(&self, metric: &str) -> bool {
        self.read_all
            || self.keep_everything
            || metric == "up"
            || metric == "scrape_duration_seconds"
            || self.read.contains(metric)
            || self.per_metric.contains_key(metric)
    }

    /// Keeps each metric a window function reads for its longest range.
    pub fn add(&mut self, needs: &[RangeNeed]) {
        for need in needs {
            match (&need.metric, need.range) {
                (Some(m), Some(r)) => {
                    let slot = self.per_metric.entry(m.clone()).or_default();
                    *slot = (*slot).max(r);
                    self.longest = self.longest.max(r);
                }
                (_, r) => {
                    self.keep_everything = true;
                    self.longest = self.longest.max(r.unwrap_or(Duration::from_secs(3600)));
                }
            }
        }
    }
}

/// A window function's use of a series: which metric over how long. `None`
/// where the argument is not a literal (then the store keeps every metric
/// for the longest range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeNeed {
    pub metric: Option<String>,
    pub range: Option<Duration>,
}
