//! The series store: recent samples per series, grouped by label set, read
//! by the rule evaluator. Memory is bounded: windows keep only what the
//! longest rule lookback needs, capped per series, and series that stop
//! reporting are dropped.

mod retention;
mod window;

pub use retention::{RangeNeed, Retention};
pub use window::{Point, Window, WindowFn};

use crate::model::{Labels, Timestamp};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How far back an instant lookup finds the latest sample (Prometheus's
/// default lookback delta).
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(5 * 60);
/// Hard cap on samples per series, whatever the retention says.
pub const DEFAULT_MAX_POINTS: usize = 4096;

/// Index of an interned metric name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(pub u32);

/// Index of a label group (one target, or one target plus extra labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);

/// All series sharing one label set (without the metric name): what a
/// `per: instance` rule sees as one instance.
#[derive(Debug, Clone)]
pub struct Group {
    pub labels: Labels,
    /// Info labels (such as a ZooKeeper node's `role`): shown with the
    /// group's labels, carried on its alerts, but not part of identity.
    pub info: Labels,
    series: FxHashMap<MetricId, Window>,
    last_seen: Timestamp,
}

impl Group {
    pub fn window(&self, metric: MetricId) -> Option<&Window> {
        self.series.get(&metric)
    }
    pub fn metrics(&self) -> impl Iterator<Item = (MetricId, &Window)> {
        self.series.iter().map(|(k, v)| (*k, v))
    }
    pub fn cluster(&self) -> Option<&str> {
        self.labels.get("cluster")
    }
}

#[derive(Debug, Clone)]
pub struct SeriesStore {
    metric_ids: HashMap<Arc<str>, MetricId>,
    metric_names: Vec<Arc<str>>,
    groups: Vec<Option<Group>>,
    free_groups: Vec<GroupId>,
    group_index: HashMap<Labels, GroupId>,
    clusters: BTreeMap<String, Vec<GroupId>>,
    /// The longest any metric is kept.
    retention: Duration,
    /// Per metric name, how long to keep it; metrics not listed keep only
    /// their latest sample (unless `keep_everything`).
    needs: FxHashMap<String, Duration>,
    keep_everything: bool,
    /// By `MetricId`: `None` = latest sample only.
    metric_retention: Vec<Option<Duration>>,
    /// Which metrics to store at all (`None`: every one).
    kept: Option<Retention>,
    lookback: Duration,
    max_points: usize,
}

impl Default for SeriesStore {
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

impl SeriesStore {
    /// A store that keeps every metric for `longest_range` (at least the
    /// lookback).
    pub fn new(longest_range: Duration) -> Self {
        Self {
            metric_ids: HashMap::new(),
            metric_names: Vec::new(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            group_index: HashMap::new(),
            clusters: BTreeMap::new(),
            retention: longest_range.max(DEFAULT_LOOKBACK),
            needs: FxHashMap::default(),
            keep_everything: true,
            metric_retention: Vec::new(),
            kept: None,
            lookback: DEFAULT_LOOKBACK,
            max_points: DEFAULT_MAX_POINTS,
        }
    }

    /// A store that keeps what the rules need: each metric a window function
    /// reads for its longest range, every other metric only its latest
    /// sample.
    pub fn for_rules(retention: &Retention) -> Self {
        let mut st = Self::new(retention.longest);
        st.keep_everything = retention.keep_everything;
        st.needs = retention.per_metric.clone();
        st.kept = Some(retention.clone());
        st
    }

    /// Keeps what `retention` says from now on (a reload): the series
    /// stay; windows trim to their new length as samples arrive.
    pub fn set_retention(&mut self, retention: &Retention) {
        let fresh = Self::for_rules(retention);
        self.retention = fresh.retention;
        self.needs = fresh.needs;
        self.keep_everything = fresh.keep_everything;
        self.kept = fresh.kept;
        self.metric_retention = self.metric_names.iter().map(|name| self.kept_for(name)).collect();
    }

    /// How long to keep a metric by this name; `None` = latest sample only.
    fn kept_for(&self, name: &str) -> Option<Duration> {
        match self.needs.get(name) {
            Some(d) => Some((*d).max(self.lookback)),
            None if self.keep_everything => Some(self.retention),
            None => None,
        }
    }

    /// Whether the rules read this metric at all; sources skip the rest.
    pub fn keeps(&self, metric: &str) -> bool {
        self.kept.as_ref().is_none_or(|k| k.keeps(metric))
    }

    /// How long a metric's samples are kept; `None` = only the latest.
    pub fn retention_of(&self, metric: MetricId) -> Option<Duration> {
        self.metric_retention.get(metric.0 as usize).copied().flatten()
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    pub fn lookback(&self) -> Duration {
        self.lookback
    }

    pub fn set_max_points(&mut self, max: usize) {
        self.max_points = max.max(2);
    }

    pub fn metric_id(&mut self, name: &str) -> MetricId {
        if let Some(id) = self.metric_ids.get(name) {
            return *id;
        }
        let id = MetricId(self.metric_names.len() as u32);
        self.metric_retention.push(self.kept_for(name));
        let name: Arc<str> = Arc::from(name);
        self.metric_names.push(name.clone());
        self.metric_ids.insert(name, id);
        id
    }

    pub fn lookup_metric(&self, name: &str) -> Option<MetricId> {
        self.metric_ids.get(name).copied()
    }

    pub fn metric_name(&self, id: MetricId) -> &str {
        &self.metric_names[id.0 as usize]
    }

    /// The group for a label set, created if new.
    pub fn group_id(&mut self, labels: &Labels) -> GroupId {
        if let Some(id) = self.group_index.get(labels) {
            return *id;
        }
        let group = Group {
            labels: labels.clone(),
            info: Labels::new(),
            series: FxHashMap::default(),
            last_seen: Timestamp::default(),
        };
        let id = match self.free_groups.pop() {
            Some(id) => {
                self.groups[id.0 as usize] = Some(group);
                id
            }
            None => {
                self.groups.push(Some(group));
                GroupId(self.groups.len() as u32 - 1)
            }
        };
        self.group_index.insert(labels.clone(), id);
        if let Some(cluster) = labels.get("cluster") {
            self.clusters.entry(cluster.to_string()).or_default().push(id);
        }
        id
    }

    /// Appends one sample. Samples older than the series' newest are
    /// ignored (a same-timestamp sample replaces it), as Prometheus does.
    pub fn append(&mut self, group: GroupId, metric: MetricId, ts: Timestamp, value: f64) {
        let (oldest, max_points) = match self.retention_of(metric) {
            Some(keep) => (ts - keep, self.max_points),
            None => (ts, 1),
        };
        let Some(Some(g)) = self.groups.get_mut(group.0 as usize) else { return };
        g.last_seen = g.last_seen.max(ts);
        let window = g.series.entry(metric).or_default();
        window.push(Point { ts, value }, oldest, max_points);
    }

    /// Convenience: ingest by name and labels.
    pub fn ingest(&mut self, name: &str, labels: &Labels, ts: Timestamp, value: f64) {
        let metric = self.metric_id(name);
        let group = self.group_id(labels);
        self.append(group, metric, ts, value);
    }

    /// Replaces a group's info labels.
    pub fn set_info(&mut self, group: GroupId, info: Labels) {
        if let Some(Some(g)) = self.groups.get_mut(group.0 as usize) {
            g.info = info;
        }
    }

    pub fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(id.0 as usize).and_then(Option::as_ref)
    }

    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &Group)> {
        self.groups.iter().enumerate().filter_map(|(i, g)| g.as_ref().map(|g| (GroupId(i as u32), g)))
    }

    pub fn group_count(&self) -> usize {
        self.group_index.len()
    }

    pub fn clusters(&self) -> impl Iterator<Item = (&str, &[GroupId])> {
        self.clusters.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The latest value of a metric in a group at `now`: the newest sample
    /// no older than the lookback, unless it is a stale marker.
    pub fn latest(&self, group: GroupId, metric: MetricId, now: Timestamp) -> Option<f64> {
        self.group(group)?.window(metric)?.latest(now, self.lookback)
    }

    /// Drops samples past retention and groups with no sample left.
    /// Call once per evaluation round.
    pub fn compact(&mut self, now: Timestamp) {
        let oldest = now - self.retention;
        let mut dead = Vec::new();
        for (i, slot) in self.groups.iter_mut().enumerate() {
            let Some(g) = slot else { continue };
            if g.last_seen < oldest {
                dead.push(GroupId(i as u32));
                continue;
            }
            g.series.retain(|_, w| {
                w.trim(oldest);
                !w.is_empty()
            });
        }
        for id in dead {
            if let Some(g) = self.groups[id.0 as usize].take() {
                self.group_index.remove(&g.labels);
                if let Some(c) = g.labels.get("cluster")
                    && let Some(members) = self.clusters.get_mut(c)
                {
                    members.retain(|m| *m != id);
                    if members.is_empty() {
                        self.clusters.remove(c);
                    }
                }
                self.free_groups.push(id);
            }
        }
    }

    /// Samples held, for memory accounting.
    pub fn point_count(&self) -> usize {
        self.groups.iter().flatten().map(|g| g.series.values().map(Window::len).sum::<usize>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    #[test]
    fn latest_respects_lookback_and_staleness() {
        let mut st = SeriesStore::new(Duration::ZERO);
        let l = Labels::from_pairs([("instance", "a")]);
        st.ingest("up", &l, ts(0), 1.0);
        let g = st.group_id(&l);
        let m = st.lookup_metric("up").unwrap();
        assert_eq!(st.latest(g, m, ts(0)), Some(1.0));
        assert_eq!(st.latest(g, m, ts(299)), Some(1.0));
        assert_eq!(st.latest(g, m, ts(300)), None, "older than 5m lookback");
        st.ingest("up", &l, ts(10), STALE_NAN);
        assert_eq!(st.latest(g, m, ts(10)), None, "stale marker hides the series");
    }

    #[test]
    fn metrics_no_rule_reads_over_time_keep_one_sample() {
        let mut needs = Retention::default();
        needs.add(&[RangeNeed { metric: Some("c".into()), range: Some(Duration::from_secs(600)) }]);
        let mut st = SeriesStore::for_rules(&needs);
        let l = Labels::from_pairs([("instance", "a")]);
        for i in 0..100 {
            st.ingest("c", &l, ts(i * 10), i as f64);
            st.ingest("g", &l, ts(i * 10), i as f64);
        }
        let g = st.group_id(&l);
        let c = st.lookup_metric("c").unwrap();
        let gm = st.lookup_metric("g").unwrap();
        assert_eq!(st.group(g).unwrap().window(c).unwrap().len(), 61, "10 min at 10 s, both ends");
        assert_eq!(st.group(g).unwrap().window(gm).unwrap().len(), 1);
        assert_eq!(st.latest(g, gm, ts(990)), Some(99.0));
    }

    #[test]
    fn memory_is_bounded_by_retention_and_cap() {
        let mut st = SeriesStore::new(Duration::from_secs(60));
        st.set_max_points(100);
        let l = Labels::from_pairs([("instance", "a")]);
        for i in 0..10_000 {
            st.ingest("x", &l, ts(i), i as f64);
        }
        assert!(st.point_count() <= 100);
        // Retention 5m (the lookback floor) at 1 sample/s is 300 points, capped to 100.
        st.compact(ts(10_000 + 301));
        assert_eq!(st.group_count(), 0, "silent groups are dropped");
        assert_eq!(st.point_count(), 0);
    }

    #[test]
    fn clusters_index_groups() {
        let mut st = SeriesStore::default();
        for i in ["a", "b"] {
            st.ingest("up", &Labels::from_pairs([("cluster", "c1"), ("instance", i)]), ts(0), 1.0);
        }
        st.ingest("up", &Labels::from_pairs([("instance", "z")]), ts(0), 1.0);
        let clusters: Vec<_> = st.clusters().map(|(c, g)| (c.to_string(), g.len())).collect();
        assert_eq!(clusters, vec![("c1".to_string(), 2)]);
    }
}
