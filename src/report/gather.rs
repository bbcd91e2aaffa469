//! A report's data: the store's latest values of a cluster's nodes and disks, the state file's alert spans,
//! leader changes and delivery problems over the period, the silences in force; and the findings they add up to.

use super::*;
use crate::duration::format_duration;
use crate::model::{Labels, Timestamp};
use crate::notify::template::Links;
use crate::pipeline::Silences;
use crate::state::{AlertSpan, LeaderChange, StateDb, StateError};
use crate::store::{GroupId, SeriesStore};
use std::time::Duration;

/// The metrics a report reads: the store keeps them (latest sample) whether rules read them or not.
pub const METRICS: [&str; 20] = [
    "up",
    // Who leads: `runner::leaders` reads it as polls land.
    "zk_cluster_leaders",
    "zk_avg_latency",
    "zk_max_latency",
    "zk_num_alive_connections",
    "zk_outstanding_requests",
    "zk_znode_count",
    "zk_watch_count",
    "zk_ephemerals_count",
    "zk_approximate_data_size",
    "zk_jvm_heap_used_bytes",
    "zk_jvm_heap_max_bytes",
    "zk_jvm_heap_used_percent",
    "zk_open_file_descriptor_count",
    "zk_max_file_descriptor_count",
    "zk_uptime",
    "zk_is_leader",
    "host_disk_used_percent",
    "host_disk_free_bytes",
    "host_disk_size_bytes",
];

/// At most this many alert spans and delivery problems in one report (a storm is summed up, not listed whole).
pub const MAX_ROWS: usize = 1_000;

/// Which cluster, over which period, shown in which time zone.
#[derive(Debug, Clone)]
pub struct Period {
    pub cluster: String,
    pub until: Timestamp,
    pub length: Duration,
    pub time_zone: chrono_tz::Tz,
}

/// Where a report's data comes from: the runner's (or a test's) store, state file and silences.
pub struct Inputs<'a> {
    pub store: &'a SeriesStore,
    /// Without a state file, the history sections are empty.
    pub db: Option<&'a StateDb>,
    pub silences: &'a Silences,
    pub links: &'a Links,
}

/// A local time in the report's zone, e.g. `2026-12-06 08:00:00` (the report names its zone once).
pub fn local_time(t: Timestamp, tz: chrono_tz::Tz) -> String {
    formatted(t, tz, "%Y-%m-%d %H:%M:%S")
}

/// A local time with the zone's abbreviation, e.g. `2026-12-06 08:00:00 CST`: the report's period.
fn zoned_time(t: Timestamp, tz: chrono_tz::Tz) -> String {
    formatted(t, tz, "%Y-%m-%d %H:%M:%S %Z")
}

fn formatted(t: Timestamp, tz: chrono_tz::Tz, format: &str) -> String {
    chrono::DateTime::from_timestamp_millis(t.as_millis())
        .map(|d| d.with_timezone(&tz).format(format).to_string())
        .unwrap_or_else(|| t.to_string())
}

/// A duration to the second, e.g. `1h5m3s` (`<1s` below a second: a leader elected within one poll).
fn span(d: Duration) -> String {
    if d < Duration::from_secs(1) { "<1s".into() } else { format_duration(Duration::from_secs(d.as_secs())) }
}

/// Builds one cluster's report.
pub fn gather(inputs: &Inputs, period: &Period) -> Result<Report, StateError> {
    let tz = period.time_zone;
    let until = period.until;
    let from = until - period.length;
    let time = |t: Timestamp| local_time(t, tz);
    let (nodes, disks) = nodes_and_disks(inputs.store, &period.cluster, until);

    let (mut elections, mut alerts, mut delivery_failures) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(db) = inputs.db {
        let (before, changes) = db.leader_changes(&period.cluster, from, until)?;
        elections = elections_of(before.map(|c| c.leader), changes, until, tz);
        alerts = db
            .alert_spans(&period.cluster, from, until, MAX_ROWS)?
            .into_iter()
            .map(|s| alert_row(s, until, inputs.links, tz))
            .collect();
        let ours = |p: &crate::state::DeliveryProblem| {
            let (m, cluster) = (&p.message, Some(period.cluster.as_str()));
            m.group.get("cluster") == cluster
                || m.firing.iter().chain(&m.resolved).any(|a| a.labels.get("cluster") == cluster)
        };
        for p in db.delivery_problems(from, until, MAX_ROWS, ours)? {
            let m = &p.message;
            delivery_failures.push(FailureRow {
                at: time(p.failed_at.or(p.last_attempt_at).unwrap_or(m.at)),
                channel: p.channel,
                tier: m.tier.as_str().to_string(),
                group: m.group.to_string(),
                attempts: p.attempts,
                error: p.last_error,
                outcome: if p.failed_at.is_some() { "gave up" } else { "retrying" },
            });
        }
    }

    let cluster_labels = Labels::from_pairs([("cluster", period.cluster.as_str())]);
    let silences: Vec<SilenceRow> = inputs
        .silences
        .items()
        .iter()
        .filter(|s| s.state(until) == crate::pipeline::SilenceState::Active)
        .filter(|s| s.matchers.0.iter().filter(|m| m.name == "cluster").all(|m| m.matches(&cluster_labels)))
        .map(|s| SilenceRow {
            id: s.id.clone(),
            matchers: s.matchers.to_string(),
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            ends_at: time(s.ends_at),
        })
        .collect();

    let summary = summarize(&nodes, &disks, &elections, &alerts, &silences, &delivery_failures, period.length);
    Ok(Report {
        cluster: period.cluster.clone(),
        time_zone: tz.name().to_string(),
        generated_at: zoned_time(until, tz),
        from: zoned_time(from, tz),
        until: zoned_time(until, tz),
        period: format_duration(period.length),
        summary,
        nodes,
        disks,
        elections,
        alerts,
        silences,
        delivery_failures,
    })
}

/// The cluster's nodes (its targets: groups with an `instance` and an `up`, as `per: cluster` rules see them) and
/// their hosts' watched directories (groups with a `path`), by instance.
fn nodes_and_disks(store: &SeriesStore, cluster: &str, now: Timestamp) -> (Vec<NodeRow>, Vec<DiskRow>) {
    let ids: &[GroupId] = store.clusters().find(|(c, _)| *c == cluster).map(|(_, ids)| ids).unwrap_or_default();
    let (mut nodes, mut disks) = (Vec::new(), Vec::new());
    for &id in ids {
        let Some(group) = store.group(id) else { continue };
        let Some(instance) = group.labels.get("instance") else { continue };
        let value = |metric: &str| store.lookup_metric(metric).and_then(|m| store.latest(id, m, now));
        if let Some(path) = group.labels.get("path") {
            if let Some(used) = value("host_disk_used_percent") {
                disks.push(DiskRow {
                    instance: instance.to_string(),
                    path: path.to_string(),
                    used_percent: Some(used),
                    free_bytes: value("host_disk_free_bytes"),
                    size_bytes: value("host_disk_size_bytes"),
                    over: used >= DISK_WARN_PERCENT,
                });
            }
            continue;
        }
        // A node is a target: its group has `up` (a client IP's connections do not).
        let Some(up) = value("up") else { continue };
        let info = |name: &str| group.info.get(name).map(str::to_string);
        let mut row = NodeRow {
            instance: instance.to_string(),
            up: up == 1.0,
            role: info("role").unwrap_or_else(|| "unknown".into()),
            version: info("version"),
            problem: info(crate::source::failures::POLL_ERROR),
            latency_avg_ms: value("zk_avg_latency"),
            latency_max_ms: value("zk_max_latency"),
            connections: value("zk_num_alive_connections"),
            outstanding: value("zk_outstanding_requests"),
            znodes: value("zk_znode_count"),
            watches: value("zk_watch_count"),
            ephemerals: value("zk_ephemerals_count"),
            data_size_bytes: value("zk_approximate_data_size"),
            heap_used_bytes: value("zk_jvm_heap_used_bytes"),
            heap_max_bytes: value("zk_jvm_heap_max_bytes"),
            heap_used_percent: value("zk_jvm_heap_used_percent"),
            open_fds: value("zk_open_file_descriptor_count"),
            max_fds: value("zk_max_file_descriptor_count"),
            uptime_seconds: value("zk_uptime"),
            over: BTreeSet::new(),
        };
        let over = |v: Option<f64>, limit: f64| v.is_some_and(|v| v > limit);
        for (field, is_over) in [
            ("latency_avg_ms", over(row.latency_avg_ms, AVG_LATENCY_WARN_MS)),
            ("latency_max_ms", over(row.latency_max_ms, MAX_LATENCY_WARN_MS as f64)),
            ("connections", over(row.connections, CONNECTIONS_WARN as f64)),
            ("outstanding", over(row.outstanding, OUTSTANDING_WARN as f64)),
            ("heap_used_percent", over(row.heap_used_percent, HEAP_WARN_PERCENT)),
            (
                "open_fds",
                row.open_fds.zip(row.max_fds).is_some_and(|(o, m)| m > 0.0 && o / m * 100.0 > FDS_WARN_PERCENT),
            ),
        ] {
            if is_over {
                row.over.insert(field);
            }
        }
        nodes.push(row);
    }
    nodes.sort_by(|a, b| a.instance.cmp(&b.instance));
    disks.sort_by(|a, b| (&a.instance, &a.path).cmp(&(&b.instance, &b.path)));
    (nodes, disks)
}

/// Leader changes as elections, given the leader before them (`None`: zkalert's history starts in the period; the
/// first change then only says who led). A quorum lost, then a leader: one election, from the leader before to the
/// new one, with how long the cluster had none.
fn elections_of(
    before: Option<Option<String>>,
    changes: Vec<LeaderChange>,
    until: Timestamp,
    tz: chrono_tz::Tz,
) -> Vec<ElectionRow> {
    let mut out: Vec<ElectionRow> = Vec::new();
    let mut previous = before;
    let mut leaderless_since = None;
    for change in changes {
        let Some(was) = previous.replace(change.leader.clone()) else { continue };
        let at = local_time(change.at, tz);
        match change.leader {
            None => {
                leaderless_since = Some(change.at);
                out.push(ElectionRow { at, from: was, to: None, leaderless_for: None });
            }
            Some(leader) => {
                let leaderless_for = leaderless_since.take().map(|t| span(change.at.since(t)));
                match out.last_mut() {
                    Some(lost) if leaderless_for.is_some() && lost.to.is_none() => {
                        lost.to = Some(leader);
                        lost.leaderless_for = leaderless_for;
                    }
                    _ => out.push(ElectionRow { at, from: was, to: Some(leader), leaderless_for }),
                }
            }
        }
    }
    if let (Some(since), Some(last)) = (leaderless_since, out.last_mut()) {
        last.leaderless_for = Some(format!("{} so far", span(until.since(since))));
    }
    out
}

fn alert_row(s: AlertSpan, until: Timestamp, links: &Links, tz: chrono_tz::Tz) -> AlertRow {
    let end = s.resolved_at.unwrap_or(until).min(until);
    let label = |name: &str| s.alert.labels.get(name).map(str::to_string);
    AlertRow {
        alertname: label("alertname").unwrap_or_default(),
        tier: s.tier.as_str().to_string(),
        instance: label("instance"),
        summary: s.alert.annotations.get("summary").map(str::to_string),
        fired_at: local_time(s.fired_at, tz),
        resolved_at: s.resolved_at.filter(|r| *r <= until).map(|r| local_time(r, tz)),
        duration: span(end.since(s.fired_at)),
        firing: s.resolved_at.is_none_or(|r| r > until),
        acked_by: s.acked.as_ref().map(|(_, by)| by.clone()),
        acked_at: s.acked.as_ref().map(|(at, _)| local_time(*at, tz)),
        runbook: links.runbook_url(&s.alert).or_else(|| s.alert.runbook.as_deref().map(str::to_string)),
    }
}

fn summarize(
    nodes: &[NodeRow],
    disks: &[DiskRow],
    elections: &[ElectionRow],
    alerts: &[AlertRow],
    silences: &[SilenceRow],
    failures: &[FailureRow],
    length: Duration,
) -> Summary {
    let leaders: Vec<&NodeRow> = nodes.iter().filter(|n| n.up && n.role == "leader").collect();
    // One node is a standalone server: no leader to have. With none up, "down" says it all.
    let leaderless_matters = nodes.len() > 1 && nodes.iter().any(|n| n.up);
    let mut critical = Vec::new();
    let mut warning = Vec::new();
    for n in nodes.iter().filter(|n| !n.up) {
        let why = n.problem.as_deref().map(|p| format!(" ({p})")).unwrap_or_default();
        critical.push(format!("{} is down{why}", n.instance));
    }
    if nodes.is_empty() {
        warning.push("no node of this cluster has reported (yet)".to_string());
    }
    if leaderless_matters {
        match leaders.len() {
            0 => critical.push("no node reports itself leader".to_string()),
            1 => {}
            n => critical.push(format!("{n} nodes report themselves leader (split brain)")),
        }
    }
    let firing: Vec<&AlertRow> = alerts.iter().filter(|a| a.firing).collect();
    for a in &firing {
        let at = a.instance.as_deref().map(|i| format!(" on {i}")).unwrap_or_default();
        let line = format!("{} {}{at} is firing (since {}, {})", a.tier, a.alertname, a.fired_at, a.duration);
        if matches!(a.tier.as_str(), "P0" | "P1") { critical.push(line) } else { warning.push(line) }
    }
    for n in nodes {
        let value = |v: Option<f64>| v.unwrap_or_default();
        for field in &n.over {
            let what = match *field {
                "latency_avg_ms" => {
                    format!("average latency {:.1} ms (over {AVG_LATENCY_WARN_MS} ms)", value(n.latency_avg_ms))
                }
                "latency_max_ms" => {
                    format!("max latency {:.0} ms (over {MAX_LATENCY_WARN_MS} ms)", value(n.latency_max_ms))
                }
                "connections" => format!("{:.0} connections (over {CONNECTIONS_WARN})", value(n.connections)),
                "outstanding" => format!("{:.0} outstanding requests (over {OUTSTANDING_WARN})", value(n.outstanding)),
                "heap_used_percent" => {
                    format!("heap {:.0} % used (over {HEAP_WARN_PERCENT} %)", value(n.heap_used_percent))
                }
                "open_fds" => format!(
                    "{:.0} of {:.0} file descriptors open (over {FDS_WARN_PERCENT} %)",
                    value(n.open_fds),
                    value(n.max_fds)
                ),
                other => other.replace('_', " "),
            };
            warning.push(format!("{}: {what}", n.instance));
        }
    }
    for d in disks.iter().filter(|d| d.over) {
        warning.push(format!(
            "{} {}: disk {:.0} % used (over {DISK_WARN_PERCENT:.0} %)",
            d.instance,
            d.path,
            d.used_percent.unwrap_or(0.0)
        ));
    }
    if !elections.is_empty() {
        warning.push(format!("{} election(s) in the last {}", elections.len(), format_duration(length)));
    }
    let unacked = alerts.iter().filter(|a| a.acked_by.is_none() && matches!(a.tier.as_str(), "P0" | "P1")).count();
    if unacked > 0 {
        warning.push(format!("{unacked} P0/P1 alert(s) never acknowledged"));
    }
    if !failures.is_empty() {
        warning.push(format!("{} delivery failure(s)", failures.len()));
    }
    let status = if !critical.is_empty() {
        "critical"
    } else if !warning.is_empty() {
        "warning"
    } else {
        "ok"
    };
    let mut by_tier = [0; 4];
    for a in alerts {
        if let Some(i) = ["P0", "P1", "P2", "P3"].iter().position(|t| *t == a.tier) {
            by_tier[i] += 1;
        }
    }
    critical.extend(warning);
    Summary {
        status,
        nodes_up: nodes.iter().filter(|n| n.up).count(),
        nodes_total: nodes.len(),
        leader: (leaders.len() == 1).then(|| leaders[0].instance.clone()),
        elections: elections.len(),
        alerts: alerts.len(),
        alerts_firing: firing.len(),
        alerts_by_tier: by_tier,
        alerts_unacked: alerts.iter().filter(|a| a.acked_by.is_none()).count(),
        silences: silences.len(),
        delivery_failures: failures.len(),
        findings: critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_changes_read_as_elections() {
        let change = |s: i64, leader: Option<&str>| LeaderChange {
            cluster: "prod".into(),
            at: Timestamp::from_millis(s * 1000),
            leader: leader.map(str::to_string),
        };
        let row = |at: &str, from: Option<&str>, to: Option<&str>, leaderless: Option<&str>| ElectionRow {
            at: format!("1970-01-01 {at}"),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            leaderless_for: leaderless.map(str::to_string),
        };
        let changes = vec![
            change(0, Some("zk1")),
            change(60, Some("zk2")),
            change(120, None),
            change(122, Some("zk3")),
            change(3600, None),
        ];
        // zkalert's history starts in the period: the first change is who led.
        let rows = elections_of(None, changes.clone(), Timestamp::from_millis(3_900_000), chrono_tz::UTC);
        assert_eq!(
            rows,
            [
                row("00:01:00", Some("zk1"), Some("zk2"), None),
                row("00:02:00", Some("zk2"), Some("zk3"), Some("2s")),
                row("01:00:00", Some("zk3"), None, Some("5m so far")),
            ]
        );
        // A leader before the period: its first change is an election too.
        let rows = elections_of(Some(Some("zk9".into())), changes, Timestamp::from_millis(3_900_000), chrono_tz::UTC);
        assert_eq!(rows[0], row("00:00:00", Some("zk9"), Some("zk1"), None));
        // No leader before the period, then one: an election from none (how long is not known).
        let rows =
            elections_of(Some(None), vec![change(5, Some("zk1"))], Timestamp::from_millis(10_000), chrono_tz::UTC);
        assert_eq!(rows, [row("00:00:05", None, Some("zk1"), None)]);
    }
}
