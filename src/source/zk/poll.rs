//! Polling one ensemble: every node concurrently, every command of a node
//! concurrently, each with its own deadline; then the replies are parsed
//! into a `NodeObservation` per node.

use super::client::{FetchError, four_letter};
use super::parse::{self, Conf, Connection, Envi, Isro, Mntr, Reply, Srvr};
use std::time::Duration;

/// The commands polled on every node, in a fixed order.
pub const COMMANDS: [&str; 7] = ["ruok", "srvr", "mntr", "cons", "conf", "isro", "envi"];

/// Everything learnt about one node in one poll.
#[derive(Debug, Clone, Default)]
pub struct NodeObservation {
    /// `host:port` as configured.
    pub instance: String,
    /// Any command got any reply.
    pub up: bool,
    /// Wall time of the whole node poll.
    pub duration: Duration,
    /// Round trip of `ruok` (else `srvr`), when answered.
    pub probe_latency: Option<Duration>,
    pub ruok: Option<Reply<bool>>,
    pub srvr: Option<Reply<Srvr>>,
    pub mntr: Option<Reply<Mntr>>,
    pub cons: Option<Reply<Vec<Connection>>>,
    pub conf: Option<Reply<Conf>>,
    pub isro: Option<Reply<Isro>>,
    pub envi: Option<Reply<Envi>>,
    /// Commands that failed outright (timeout, refused), with why.
    pub errors: Vec<(String, FetchError)>,
}

impl NodeObservation {
    /// Commands answered "not in the whitelist".
    pub fn blocked_commands(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        macro_rules! check {
            ($field:ident, $name:literal) => {
                if matches!(self.$field, Some(Reply::NotWhitelisted)) {
                    out.push($name);
                }
            };
        }
        check!(ruok, "ruok");
        check!(srvr, "srvr");
        check!(mntr, "mntr");
        check!(cons, "cons");
        check!(conf, "conf");
        check!(isro, "isro");
        check!(envi, "envi");
        out
    }

    /// Not serving: quorum lost or electing.
    pub fn not_serving(&self) -> bool {
        matches!(self.srvr, Some(Reply::NotServing))
            || matches!(self.mntr, Some(Reply::NotServing))
            || matches!(self.isro, Some(Reply::Ok(Isro::NotServing)))
    }

    pub fn srvr(&self) -> Option<&Srvr> {
        match &self.srvr {
            Some(Reply::Ok(s)) => Some(s),
            _ => None,
        }
    }

    pub fn mntr(&self) -> Option<&Mntr> {
        match &self.mntr {
            Some(Reply::Ok(m)) => Some(m),
            _ => None,
        }
    }

    /// Why a node that is down gave no reply: the most telling class of
    /// its commands' failures (a reply too large says more than a timeout,
    /// a timeout more than a refusal). `None` while up.
    pub fn down_reason(&self) -> Option<&'static str> {
        const TELLING: [&str; 5] = ["too_large", "read_error", "timeout", "refused", "unreachable"];
        if self.up {
            return None;
        }
        let rank = |r: &str| TELLING.iter().position(|t| *t == r).unwrap_or(TELLING.len());
        self.errors.iter().map(|(_, e)| e.reason()).min_by_key(|r| rank(r)).or(Some("no_reply"))
    }

    /// This poll's problem in short (`down: refused`, `mntr: too_large,
    /// cons: timeout`), for the failure log; `None` when every command
    /// answered.
    pub fn problem(&self) -> Option<String> {
        if let Some(reason) = self.down_reason() {
            return Some(format!("down: {reason}"));
        }
        if self.errors.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = self.errors.iter().map(|(cmd, e)| format!("{cmd}: {}", e.reason())).collect();
        parts.sort();
        Some(parts.join(", "))
    }

    pub fn conf(&self) -> Option<&Conf> {
        match &self.conf {
            Some(Reply::Ok(c)) => Some(c),
            _ => None,
        }
    }
}

/// Which numeric `mntr` keys to keep (the ones rules read).
pub type MetricFilter = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Commands whose answers change rarely (configuration, JVM memory): polled
/// every few polls, their last answer reused in between.
pub const SLOW_COMMANDS: [&str; 2] = ["conf", "envi"];

/// Polls one node: all commands at once, each bounded by `timeout`, so the
/// whole poll of a hung node costs one timeout. Without `slow`, the
/// `SLOW_COMMANDS` are skipped.
pub async fn poll_node(instance: &str, timeout: Duration, slow: bool, keep: Option<&MetricFilter>) -> NodeObservation {
    let started = std::time::Instant::now();
    let commands: Vec<&'static str> = COMMANDS.iter().copied().filter(|c| slow || !SLOW_COMMANDS.contains(c)).collect();
    let replies = futures_join(instance, &commands, timeout).await;
    let mut obs = NodeObservation { instance: instance.to_string(), ..NodeObservation::default() };
    for (cmd, reply) in commands.iter().zip(replies) {
        let fetched = match reply {
            Ok(f) => f,
            Err(e) => {
                obs.errors.push((cmd.to_string(), e));
                continue;
            }
        };
        obs.up = true;
        let bytes = &fetched.bytes;
        let garbled = |e: parse::ParseError| FetchError::Read {
            addr: instance.into(),
            reason: format!("unparsable {cmd} reply: {e}"),
        };
        let result = match *cmd {
            "ruok" => {
                obs.probe_latency = Some(fetched.elapsed);
                parse::parse_ruok(bytes).map(|r| obs.ruok = Some(r))
            }
            "srvr" => {
                obs.probe_latency.get_or_insert(fetched.elapsed);
                parse::parse_srvr(bytes).map(|r| obs.srvr = Some(r))
            }
            "mntr" => match keep {
                Some(keep) => parse::parse_mntr_keeping(bytes, keep.as_ref()),
                None => parse::parse_mntr(bytes),
            }
            .map(|r| obs.mntr = Some(r)),
            "cons" => parse::parse_cons(bytes).map(|r| obs.cons = Some(r)),
            "conf" => parse::parse_conf(bytes).map(|r| obs.conf = Some(r)),
            "isro" => parse::parse_isro(bytes).map(|r| obs.isro = Some(r)),
            _ => parse::parse_envi(bytes).map(|r| obs.envi = Some(r)),
        };
        if let Err(e) = result {
            obs.errors.push((cmd.to_string(), garbled(e)));
        }
    }
    obs.duration = started.elapsed();
    obs
}

async fn futures_join(
    instance: &str,
    commands: &[&'static str],
    timeout: Duration,
) -> Vec<Result<super::client::Fetched, FetchError>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, cmd) in commands.iter().copied().enumerate() {
        let addr = instance.to_string();
        set.spawn(async move { (i, four_letter(&addr, cmd, timeout).await) });
    }
    let mut out: Vec<Option<Result<super::client::Fetched, FetchError>>> = vec![None; commands.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(FetchError::Read { addr: instance.into(), reason: "poll task failed".into() }))
        })
        .collect()
}

/// Polls every node of an ensemble concurrently.
pub async fn poll_ensemble(
    nodes: &[String],
    timeout: Duration,
    slow: bool,
    keep: Option<MetricFilter>,
) -> Vec<NodeObservation> {
    let mut set = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let keep = keep.clone();
        set.spawn(async move { (i, poll_node(&node, timeout, slow, keep.as_ref()).await) });
    }
    let mut out: Vec<NodeObservation> =
        nodes.iter().map(|n| NodeObservation { instance: n.clone(), ..NodeObservation::default() }).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, obs)) = joined {
            out[i] = obs;
        }
    }
    out
}
