//! From observations to samples: per-node metrics, per-client-IP counts and
//! per-cluster derivations (leaders, quorum, epochs, zxid lag), named as
//! `docs/metrics.md` documents them.

use super::parse::{self, Isro, Mode, Reply};
use super::poll::NodeObservation;
use crate::model::{Labels, Timestamp};
use crate::source::{PollBatch, SeriesBatch};

/// Client IPs per node with a `zk_client_connections` series: the busiest
/// ones. A `cons` can list tens of thousands of distinct IPs, and each would
/// be a series in every poll; a storm shows in the busiest thousand.
pub const MAX_CLIENT_IPS: usize = 1000;

/// Builds the batch for one poll of one ensemble, with the metrics `keep`
/// accepts (the ones rules read; ~550 `mntr` keys are mostly not).
pub fn batch(
    cluster: &str,
    extra: &Labels,
    nodes: &[NodeObservation],
    ts: Timestamp,
    keep: &dyn Fn(&str) -> bool,
) -> PollBatch {
    let mut out = PollBatch::default();
    let mut cluster_labels = extra.clone();
    cluster_labels.insert("cluster", cluster);
    let series = |labels: Labels, info: Option<Labels>| SeriesBatch { labels, info, timestamp: ts, values: Vec::new() };
    let leader_zxid = single_leader_zxid(nodes);
    for n in nodes {
        let mut labels = cluster_labels.clone();
        labels.insert("instance", n.instance.clone());
        if let Some(Reply::Ok(conns)) = &n.cons
            && keep("zk_client_connections")
        {
            let per_ip = parse::connections_per_ip(parse::client_connections(conns));
            for (ip, count) in per_ip.into_iter().take(MAX_CLIENT_IPS) {
                let mut l = labels.clone();
                l.insert("client_ip", ip.to_string());
                let mut per_ip = series(l, None);
                per_ip.values.push(("zk_client_connections".into(), count as f64));
                out.series.push(per_ip);
            }
        }
        let mut node = series(labels, Some(info_of(n)));
        node_samples(n, leader_zxid, &mut |name, value| {
            if keep(name) {
                node.values.push((name.to_string(), value));
            }
        });
        out.series.push(node);
    }
    let mut whole = series(cluster_labels, None);
    cluster_samples(nodes, leader_zxid, &mut |name, value| {
        if keep(name) {
            whole.values.push((name.to_string(), value));
        }
    });
    out.series.push(whole);
    out
}

/// Info labels of a node: its role and version, when known; why it gave
/// no reply, when down.
fn info_of(n: &NodeObservation) -> Labels {
    let mut info = Labels::new();
    if let Some(reason) = n.down_reason() {
        info.insert(crate::source::failures::POLL_ERROR, reason);
    }
    if let Some(role) = role_of(n) {
        info.insert("role", role.as_str());
    }
    if let Some(Reply::Ok(e)) = &n.envi {
        info.insert("version", e.version.clone());
    } else if let Some(s) = n.srvr() {
        info.insert("version", s.version.clone());
    }
    info
}

/// The node's role from `srvr`, else from mntr's `zk_server_state`.
pub fn role_of(n: &NodeObservation) -> Option<Mode> {
    if let Some(s) = n.srvr() {
        return Some(s.mode);
    }
    n.mntr().and_then(|m| m.server_state())
}

fn role_code(mode: Option<Mode>) -> f64 {
    match mode {
        None => 0.0,
        Some(Mode::Follower) => 1.0,
        Some(Mode::Leader) => 2.0,
        Some(Mode::Observer) => 3.0,
        Some(Mode::Standalone) => 4.0,
        Some(Mode::ReadOnly) => 5.0,
    }
}

/// The zxid of the one leader, if exactly one node says `Mode: leader`.
fn single_leader_zxid(nodes: &[NodeObservation]) -> Option<u64> {
    let mut leaders = nodes.iter().filter(|n| role_of(n) == Some(Mode::Leader));
    let leader = leaders.next()?;
    if leaders.next().is_some() {
        return None;
    }
    leader.srvr().map(|s| s.zxid)
}

/// Transactions a node is behind the leader. A follower shows the last zxid
/// it processed, so right after an election it still shows the previous
/// epoch until the first write: then it has missed the leader's counter's
/// worth of transactions (0 on a fresh epoch), not "an epoch".
pub fn zxid_lag(leader: u64, node: u64) -> u64 {
    let (le, ne) = (parse::epoch(leader), parse::epoch(node));
    match ne.cmp(&le) {
        std::cmp::Ordering::Equal => u64::from(parse::counter(leader).saturating_sub(parse::counter(node))),
        std::cmp::Ordering::Less => u64::from(parse::counter(leader)),
        std::cmp::Ordering::Greater => 0,
    }
}

/// Nodes whose zxid epoch is newer than the leader's: they followed a newer
/// leader elsewhere (split brain), which a lagging follower never shows.
pub fn epochs_ahead(leader: u64, nodes: &[NodeObservation]) -> usize {
    nodes.iter().filter_map(|n| n.srvr()).filter(|s| parse::epoch(s.zxid) > parse::epoch(leader)).count()
}

fn node_samples(n: &NodeObservation, leader_zxid: Option<u64>, push: &mut impl FnMut(&str, f64)) {
    push("up", f64::from(u8::from(n.up)));
    push("scrape_duration_seconds", n.duration.as_secs_f64());
    if !n.up {
        return;
    }
    if let Some(l) = n.probe_latency {
        push("zk_probe_latency_ms", l.as_secs_f64() * 1000.0);
    }
    if let Some(r) = &n.ruok {
        push("zk_ruok", f64::from(u8::from(matches!(r, Reply::Ok(true)))));
    }
    let blocked = n.blocked_commands();
    push("zk_4lw_blocked", blocked.len() as f64);
    push("zk_mntr_blocked", f64::from(u8::from(blocked.contains(&"mntr"))));
    let serving_known = n.srvr.is_some() || n.mntr.is_some();
    if serving_known {
        push("zk_serving", f64::from(u8::from(!n.not_serving() && (n.srvr().is_some() || n.mntr().is_some()))));
    }
    let mode = role_of(n);
    let read_only = mode == Some(Mode::ReadOnly) || matches!(n.isro, Some(Reply::Ok(Isro::ReadOnly)));
    if n.isro.is_some() || mode.is_some() {
        push("zk_read_only", f64::from(u8::from(read_only)));
    }
    push("zk_role_code", role_code(mode));
    if mode.is_some() {
        push("zk_is_leader", f64::from(u8::from(mode == Some(Mode::Leader))));
    }
    if let Some(s) = n.srvr() {
        push("zk_zxid_epoch", parse::epoch(s.zxid) as f64);
        push("zk_zxid_counter", parse::counter(s.zxid) as f64);
        if let Some(leader) = leader_zxid {
            push("zk_zxid_lag", zxid_lag(leader, s.zxid) as f64);
        }
    }
    if let Some(m) = n.mntr() {
        for (name, value) in m.numbers() {
            push(name, value);
        }
    }
    if let Some(Reply::Ok(conns)) = &n.cons {
        push("zk_connections", parse::client_connections(conns).count() as f64);
        let per_ip = parse::connections_per_ip(parse::client_connections(conns));
        push("zk_max_connections_per_ip", per_ip.first().map_or(0.0, |(_, c)| *c as f64));
    }
    if let Some(c) = n.conf() {
        let mut opt = |name: &str, v: Option<i64>| {
            if let Some(v) = v {
                push(name, v as f64);
            }
        };
        opt("zk_conf_max_client_cnxns", Some(i64::from(c.max_client_cnxns)));
        opt("zk_conf_tick_time", Some(i64::from(c.tick_time)));
        opt("zk_conf_init_limit", c.init_limit.map(i64::from));
        opt("zk_conf_sync_limit", c.sync_limit.map(i64::from));
        push("zk_conf_voters", c.voters() as f64);
        push("zk_conf_observers", c.observers() as f64);
    }
    if let Some(Reply::Ok(e)) = &n.envi {
        if let (Some(total), Some(free), Some(max)) = (e.memory_total, e.memory_free, e.memory_max) {
            let used = total.saturating_sub(free) as f64;
            push("zk_jvm_heap_used_bytes", used);
            push("zk_jvm_heap_max_bytes", max as f64);
            if max > 0 {
                push("zk_jvm_heap_used_percent", used / max as f64 * 100.0);
            }
        }
        push("zk_info", 1.0);
    }
}

fn cluster_samples(nodes: &[NodeObservation], leader_zxid: Option<u64>, push: &mut impl FnMut(&str, f64)) {
    let configured = nodes.len();
    let up = nodes.iter().filter(|n| n.up).count();
    // Voters from any node's `conf` (all agree on a healthy ensemble);
    // without it, every configured node counts as a voter.
    let voters =
        nodes.iter().filter_map(|n| n.conf()).map(|c| c.voters()).max().filter(|v| *v > 0).unwrap_or(configured);
    let roles: Vec<Option<Mode>> = nodes.iter().map(role_of).collect();
    let serving_voters = nodes
        .iter()
        .zip(&roles)
        .filter(|(n, r)| {
            // A single configured server serves as its own quorum.
            let voter =
                matches!(r, Some(Mode::Leader | Mode::Follower)) || (configured == 1 && **r == Some(Mode::Standalone));
            n.up && !n.not_serving() && voter
        })
        .count();
    let leaders = roles.iter().filter(|r| **r == Some(Mode::Leader)).count();
    let standalone = if configured > 1 { roles.iter().filter(|r| **r == Some(Mode::Standalone)).count() } else { 0 };
    push("zk_cluster_nodes", configured as f64);
    push("zk_cluster_nodes_up", up as f64);
    push("zk_cluster_voters", voters as f64);
    push("zk_cluster_quorum", (voters / 2 + 1) as f64);
    push("zk_cluster_serving_voters", serving_voters as f64);
    push("zk_cluster_leaders", leaders as f64);
    push("zk_cluster_standalone", standalone as f64);
    push("zk_cluster_mntr_blocked", nodes.iter().filter(|n| n.blocked_commands().contains(&"mntr")).count() as f64);
    if let Some(leader) = leader_zxid {
        let max_lag = nodes.iter().filter_map(|n| n.srvr()).map(|s| zxid_lag(leader, s.zxid)).max().unwrap_or(0);
        push("zk_cluster_max_zxid_lag", max_lag as f64);
        push("zk_cluster_epochs_ahead", epochs_ahead(leader, nodes) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_series_are_the_busiest_thousand() {
        // 1,500 distinct client IPs, the last one with 3 connections.
        let mut cons = String::new();
        for i in 0..1500u32 {
            cons.push_str(&format!(
                " /10.{}.{}.{}:5000[1](queued=0,recved=1,sent=1)\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ));
        }
        for port in 0..2 {
            cons.push_str(&format!(" /10.0.5.219:{port}[1](queued=0,recved=1,sent=1)\n"));
        }
        cons.push('\n');
        let n = NodeObservation {
            instance: "zk1:2181".into(),
            up: true,
            cons: Some(parse::parse_cons(cons.as_bytes()).unwrap()),
            ..NodeObservation::default()
        };
        let per_ip = |keep: &dyn Fn(&str) -> bool| -> Vec<(String, f64)> {
            let b = batch("c", &Labels::new(), std::slice::from_ref(&n), Timestamp::from_millis(0), keep);
            b.series
                .iter()
                .filter_map(|s| s.labels.get("client_ip").map(|ip| (ip.to_string(), s.values[0].1)))
                .collect()
        };
        let all = per_ip(&|_| true);
        assert_eq!(all.len(), MAX_CLIENT_IPS);
        assert_eq!(all[0], ("10.0.5.219".to_string(), 3.0));
        assert!(per_ip(&|m| m != "zk_client_connections").is_empty(), "not read by any rule: not sent");
    }
}
