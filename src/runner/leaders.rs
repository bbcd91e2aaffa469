//! Who leads each cluster, from the polls as they land: the report's elections (`report::gather`). A poll of a
//! whole ensemble (it carries the cluster's `zk_cluster_leaders`) says who leads now; a change from what the
//! last such poll said is a `LeaderChange`, written with the next step.

use crate::model::Timestamp;
use crate::source::PollBatch;
use crate::state::LeaderChange;
use std::collections::HashMap;

/// The leader each cluster had at its last whole-ensemble poll (`None`: no single leader).
#[derive(Debug, Default)]
pub struct Leaders {
    current: HashMap<String, Option<String>>,
}

impl Leaders {
    /// Starts from what the state file recorded last, so a restart is not an election.
    pub fn restore(&mut self, last: impl IntoIterator<Item = (String, Option<String>)>) {
        self.current.extend(last);
    }

    /// The changes `batch` shows: for each cluster it polled whole, the node reporting `leader` when exactly one
    /// does, else none. The first poll of a cluster is recorded too, as where its history starts.
    pub fn observe(&mut self, batch: &PollBatch) -> Vec<LeaderChange> {
        let mut polled: Vec<(&str, usize, Timestamp)> = Vec::new();
        for s in &batch.series {
            if s.labels.get("instance").is_none()
                && let (Some(cluster), Some((_, n))) =
                    (s.labels.get("cluster"), s.values.iter().find(|(name, _)| name == "zk_cluster_leaders"))
            {
                polled.push((cluster, *n as usize, s.timestamp));
            }
        }
        let mut changes = Vec::new();
        for (cluster, count, at) in polled {
            let leader = (count == 1)
                .then(|| {
                    batch.series.iter().find(|s| {
                        s.labels.get("cluster") == Some(cluster)
                            && s.values.iter().any(|(name, v)| name == "zk_is_leader" && *v == 1.0)
                    })
                })
                .flatten()
                .and_then(|s| s.labels.get("instance"))
                .map(str::to_string);
            if self.current.get(cluster) != Some(&leader) {
                self.current.insert(cluster.to_string(), leader.clone());
                changes.push(LeaderChange { cluster: cluster.to_string(), at, leader });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::source::SeriesBatch;

    fn poll(t: i64, leader: Option<&str>, nodes: &[&str]) -> PollBatch {
        let at = Timestamp::from_millis(t);
        let mut series: Vec<SeriesBatch> = nodes
            .iter()
            .map(|n| SeriesBatch {
                labels: Labels::from_pairs([("cluster", "prod"), ("instance", *n)]),
                info: None,
                timestamp: at,
                values: vec![("zk_is_leader".into(), f64::from(u8::from(Some(*n) == leader)))],
            })
            .collect();
        series.push(SeriesBatch {
            labels: Labels::from_pairs([("cluster", "prod")]),
            info: None,
            timestamp: at,
            values: vec![("zk_cluster_leaders".into(), f64::from(u8::from(leader.is_some())))],
        });
        PollBatch { series }
    }

    #[test]
    fn a_change_of_leader_is_recorded_once_and_a_restart_is_not_an_election() {
        let nodes = ["zk1:2181", "zk2:2181", "zk3:2181"];
        let mut leaders = Leaders::default();
        let first = leaders.observe(&poll(1_000, Some("zk1:2181"), &nodes));
        assert_eq!(first.len(), 1, "where the history starts");
        assert!(leaders.observe(&poll(2_000, Some("zk1:2181"), &nodes)).is_empty());
        let lost = leaders.observe(&poll(3_000, None, &nodes));
        assert_eq!(lost, [LeaderChange { cluster: "prod".into(), at: Timestamp::from_millis(3_000), leader: None }]);
        let elected = leaders.observe(&poll(4_000, Some("zk2:2181"), &nodes));
        assert_eq!(elected[0].leader.as_deref(), Some("zk2:2181"));

        let mut restarted = Leaders::default();
        restarted.restore([("prod".to_string(), Some("zk2:2181".to_string()))]);
        assert!(restarted.observe(&poll(5_000, Some("zk2:2181"), &nodes)).is_empty());
        // A batch without the cluster's count (another source's) says nothing.
        let host = PollBatch { series: poll(6_000, None, &nodes).series.into_iter().take(3).collect() };
        assert!(restarted.observe(&host).is_empty());
    }
}
