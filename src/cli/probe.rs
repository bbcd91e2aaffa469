//! `zkalert probe HOST:PORT[,HOST:PORT...]`: the seed's health-check script
//! as one command. A table per node and cluster verdicts; exit code 0
//! healthy, 1 warning, 2 critical (for cron and scripts).

use super::outln;
use crate::report::{AVG_LATENCY_WARN_MS, CONNECTIONS_WARN, MAX_LATENCY_WARN_MS, OUTSTANDING_WARN};
use crate::source::zk::derive::{epochs_ahead, role_of, zxid_lag};
use crate::source::zk::parse::{self, Mode};
use crate::source::zk::poll::{NodeObservation, poll_ensemble};
use std::io::IsTerminal;
use std::time::Duration;

/// How bad a verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
}

impl Status {
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARN",
            Status::Critical => "CRIT",
        }
    }
    fn colour(self) -> &'static str {
        match self {
            Status::Ok => "\x1b[32m",
            Status::Warning => "\x1b[33m",
            Status::Critical => "\x1b[31m",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
}

const ZXID_LAG_WARN: u64 = 1000;

/// Judges one poll of an ensemble.
pub fn verdicts(nodes: &[NodeObservation]) -> Vec<Verdict> {
    let mut v = Vec::new();
    let configured = nodes.len();
    let roles: Vec<Option<Mode>> = nodes.iter().map(role_of).collect();
    let down: Vec<&str> = nodes.iter().filter(|n| !n.up).map(|n| n.instance.as_str()).collect();
    let voters =
        nodes.iter().filter_map(|n| n.conf()).map(|c| c.voters()).max().filter(|v| *v > 0).unwrap_or(configured);
    let quorum = voters / 2 + 1;
    let serving_voters = nodes
        .iter()
        .zip(&roles)
        .filter(|(n, r)| n.up && !n.not_serving() && matches!(r, Some(Mode::Leader | Mode::Follower)))
        .count();
    let standalone_ok = configured == 1 && roles.first() == Some(&Some(Mode::Standalone));

    v.push(if down.is_empty() {
        Verdict { check: "nodes up", status: Status::Ok, detail: format!("{configured}/{configured} answering") }
    } else {
        let status = if down.len() == configured { Status::Critical } else { Status::Warning };
        Verdict { check: "nodes up", status, detail: format!("down: {}", down.join(", ")) }
    });

    let leaders = roles.iter().filter(|r| **r == Some(Mode::Leader)).count();
    v.push(match (leaders, standalone_ok) {
        (_, true) => Verdict { check: "leader", status: Status::Ok, detail: "standalone server".into() },
        (1, _) => {
            let who =
                nodes.iter().zip(&roles).find(|(_, r)| **r == Some(Mode::Leader)).map(|(n, _)| n.instance.clone());
            Verdict { check: "leader", status: Status::Ok, detail: format!("exactly one: {}", who.unwrap_or_default()) }
        }
        (0, _) => Verdict { check: "leader", status: Status::Critical, detail: "no leader".into() },
        (n, _) => Verdict { check: "leader", status: Status::Critical, detail: format!("{n} leaders: split brain") },
    });

    let misconfigured = configured > 1 && roles.contains(&Some(Mode::Standalone));
    if misconfigured {
        v.push(Verdict {
            check: "ensemble config",
            status: Status::Critical,
            detail: "a node of a multi-node ensemble runs standalone (server.N lines missing?)".into(),
        });
    }

    if !standalone_ok {
        v.push(if serving_voters >= quorum {
            Verdict {
                check: "quorum",
                status: Status::Ok,
                detail: format!("{serving_voters}/{voters} voters serving (quorum {quorum})"),
            }
        } else {
            Verdict {
                check: "quorum",
                status: Status::Critical,
                detail: format!("only {serving_voters}/{voters} voters serving, quorum needs {quorum}"),
            }
        });
    }

    let leader_zxid =
        nodes.iter().zip(&roles).find(|(_, r)| **r == Some(Mode::Leader)).and_then(|(n, _)| n.srvr()).map(|s| s.zxid);
    if let Some(lz) = leader_zxid.filter(|_| leaders == 1) {
        let ahead = epochs_ahead(lz, nodes);
        v.push(if ahead == 0 {
            Verdict {
                check: "epochs",
                status: Status::Ok,
                detail: format!("no node ahead of the leader's epoch {}", parse::epoch(lz)),
            }
        } else {
            Verdict {
                check: "epochs",
                status: Status::Critical,
                detail: format!("{ahead} node(s) ahead of the leader's epoch: split brain?"),
            }
        });
        let worst = nodes
            .iter()
            .filter_map(|n| n.srvr().map(|s| (n.instance.as_str(), zxid_lag(lz, s.zxid))))
            .max_by_key(|(_, l)| *l);
        if let Some((who, lag)) = worst {
            v.push(if lag > ZXID_LAG_WARN {
                Verdict {
                    check: "zxid lag",
                    status: Status::Warning,
                    detail: format!("{who} is {lag} transactions behind the leader"),
                }
            } else {
                Verdict { check: "zxid lag", status: Status::Ok, detail: format!("max {lag} transactions") }
            });
        }
    }

    let blocked: Vec<String> = nodes
        .iter()
        .filter(|n| n.up)
        .filter_map(|n| {
            let b = n.blocked_commands();
            (!b.is_empty()).then(|| format!("{}: {}", n.instance, b.join(",")))
        })
        .collect();
    v.push(if blocked.is_empty() {
        Verdict { check: "4lw whitelist", status: Status::Ok, detail: "all commands answered".into() }
    } else {
        Verdict {
            check: "4lw whitelist",
            status: Status::Warning,
            detail: format!("not whitelisted: {}", blocked.join("; ")),
        }
    });

    let mut perf = Vec::new();
    for n in nodes {
        if let Some(s) = n.srvr() {
            if s.latency.avg > AVG_LATENCY_WARN_MS {
                perf.push(format!("{} avg latency {} ms", n.instance, s.latency.avg));
            }
            if s.latency.max > MAX_LATENCY_WARN_MS {
                perf.push(format!("{} max latency {} ms", n.instance, s.latency.max));
            }
            if s.connections > CONNECTIONS_WARN {
                perf.push(format!("{} {} connections", n.instance, s.connections));
            }
            if s.outstanding > OUTSTANDING_WARN {
                perf.push(format!("{} {} outstanding requests", n.instance, s.outstanding));
            }
        }
        if let Some(m) = n.mntr()
            && let (Some(synced), Some(followers)) =
                (m.get("zk_synced_followers"), m.get("zk_followers").or(m.get("zk_learners")))
            && roles_leader(n)
            && synced < followers - m.get("zk_synced_observers").unwrap_or(0.0)
        {
            perf.push(format!("{} only {synced} of {followers} followers synced", n.instance));
        }
    }
    v.push(if perf.is_empty() {
        Verdict {
            check: "performance",
            status: Status::Ok,
            detail: "latency, connections, outstanding within limits".into(),
        }
    } else {
        Verdict { check: "performance", status: Status::Warning, detail: perf.join("; ") }
    });
    v
}

fn roles_leader(n: &NodeObservation) -> bool {
    role_of(n) == Some(Mode::Leader)
}

fn node_row(n: &NodeObservation) -> Vec<String> {
    let role = if !n.up {
        "down".to_string()
    } else if n.not_serving() {
        "not serving".to_string()
    } else {
        role_of(n).map_or("?".to_string(), |m| m.as_str().to_string())
    };
    let s = n.srvr();
    let m = n.mntr();
    let dash = || "-".to_string();
    let synced = m
        .filter(|_| roles_leader(n))
        .and_then(|m| {
            Some(format!("{}/{}", m.get("zk_synced_followers")?, m.get("zk_followers").or(m.get("zk_learners"))?))
        })
        .unwrap_or_else(dash);
    vec![
        n.instance.clone(),
        role,
        s.map_or_else(dash, |s| format!("{}/{}", crate::model::format_value(s.latency.avg), s.latency.max)),
        n.probe_latency.map_or_else(dash, |d| format!("{:.1}", d.as_secs_f64() * 1000.0)),
        s.map_or_else(dash, |s| s.connections.to_string()),
        s.map_or_else(dash, |s| s.outstanding.to_string()),
        s.map_or_else(dash, |s| s.node_count.to_string()),
        s.map_or_else(dash, |s| format!("0x{:x}", s.zxid)),
        s.map_or_else(dash, |s| s.epoch().to_string()),
        synced,
    ]
}

const HEADERS: [&str; 10] =
    ["NODE", "ROLE", "LAT avg/max ms", "PROBE ms", "CONNS", "OUTST", "ZNODES", "ZXID", "EPOCH", "SYNCED"];

fn render_table(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(HEADERS.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub async fn main(targets: &str, timeout: Duration, json: bool) -> anyhow::Result<i32> {
    let nodes: Vec<String> = targets.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if nodes.is_empty() {
        anyhow::bail!("no nodes given: zkalert probe HOST:PORT[,HOST:PORT...]");
    }
    let observations = poll_ensemble(&nodes, timeout, true, None).await;
    let verdicts = verdicts(&observations);
    let overall = verdicts.iter().map(|v| v.status).max().unwrap_or(Status::Ok);
    if json {
        let nodes_json: Vec<serde_json::Value> = observations
            .iter()
            .map(|n| {
                let row = node_row(n);
                serde_json::json!({
                    "instance": n.instance, "up": n.up, "role": row[1], "serving": n.up && !n.not_serving(),
                    "latency_avg_ms": n.srvr().map(|s| s.latency.avg), "latency_max_ms": n.srvr().map(|s| s.latency.max),
                    "probe_ms": n.probe_latency.map(|d| d.as_secs_f64() * 1000.0),
                    "connections": n.srvr().map(|s| s.connections), "outstanding": n.srvr().map(|s| s.outstanding),
                    "znodes": n.srvr().map(|s| s.node_count), "zxid": n.srvr().map(|s| format!("0x{:x}", s.zxid)),
                    "epoch": n.srvr().map(|s| s.epoch()), "blocked_commands": n.blocked_commands(),
                    "errors": n.errors.iter().map(|(c, e)| format!("{c}: {e}")).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "status": overall, "nodes": nodes_json, "verdicts": verdicts })
            )?
        );
        return Ok(overall.exit_code());
    }
    let colour = std::io::stdout().is_terminal();
    let rows: Vec<Vec<String>> = observations.iter().map(node_row).collect();
    outln!("{}", render_table(&rows).trim_end());
    outln!();
    for v in &verdicts {
        let label = if colour {
            format!("{}{:<4}\x1b[0m", v.status.colour(), v.status.label())
        } else {
            format!("{:<4}", v.status.label())
        };
        outln!("{label}  {:<16} {}", v.check, v.detail);
    }
    let summary = match overall {
        Status::Ok => "healthy",
        Status::Warning => "warning",
        Status::Critical => "critical",
    };
    outln!("\nensemble {summary} (exit {})", overall.exit_code());
    Ok(overall.exit_code())
}
