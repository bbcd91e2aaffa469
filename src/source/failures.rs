//! Why polls fail, said once: the reason class of a target that gave no
//! reply (the `poll_error` info label, which alerts on the target carry),
//! and a per-target log that reports a failure when it starts or changes,
//! then at most every [`LOG_REPEAT`], and the recovery once.

use crate::model::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The info label naming why a target is down (`up` 0).
pub const POLL_ERROR: &str = "poll_error";

/// A failure that goes on unchanged is logged again after this long.
pub const LOG_REPEAT: Duration = Duration::from_secs(300);

/// What to log about a target after this poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Nothing new.
    Quiet,
    /// The target fails: newly, differently, or still after [`LOG_REPEAT`].
    Failing { repeated: bool },
    /// The target is healthy again after failing with this problem.
    Recovered { was: String },
}

/// The last problem logged per target.
#[derive(Debug, Default)]
pub struct FailureLog {
    by_target: Mutex<HashMap<String, (String, Timestamp)>>,
}

impl FailureLog {
    /// Notes this poll's problem for `target` (`None`: healthy); `problem`
    /// is a short class ("down: refused", "mntr: too_large"), not the error
    /// text, so a changing detail does not count as a change.
    pub fn note(&self, target: &str, problem: Option<&str>, now: Timestamp) -> Report {
        let mut map = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
        match (problem, map.get(target)) {
            (None, None) => Report::Quiet,
            (None, Some(_)) => {
                let was = map.remove(target).map(|(p, _)| p).unwrap_or_default();
                Report::Recovered { was }
            }
            (Some(p), Some((last, at))) if last == p => {
                if now.since(*at) < LOG_REPEAT {
                    return Report::Quiet;
                }
                map.insert(target.to_string(), (p.to_string(), now));
                Report::Failing { repeated: true }
            }
            (Some(p), _) => {
                map.insert(target.to_string(), (p.to_string(), now));
                Report::Failing { repeated: false }
            }
        }
    }
}

/// Logs each node's failures of this poll as [`FailureLog`] allows: the
/// first error's text with every command's class, so "refused", "timeout"
/// and "too large" read apart.
pub fn log_nodes(log: &FailureLog, source: &str, nodes: &[crate::source::zk::poll::NodeObservation], now: Timestamp) {
    for n in nodes {
        let problem = n.problem();
        match log.note(&n.instance, problem.as_deref(), now) {
            Report::Quiet => {}
            Report::Failing { repeated } => {
                let first = n.errors.first().map(|(cmd, e)| format!("{cmd}: {e}")).unwrap_or_default();
                let problem = problem.unwrap_or_default();
                if n.up {
                    tracing::warn!(source, node = %n.instance, problem, first_error = first, repeated, "some commands got no usable reply");
                } else {
                    tracing::warn!(source, node = %n.instance, problem, first_error = first, repeated, "node gave no reply");
                }
            }
            Report::Recovered { was } => {
                tracing::info!(source, node = %n.instance, was, "node answers every command again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::zk::client::FetchError;
    use crate::source::zk::poll::NodeObservation;

    #[test]
    fn each_node_is_logged_with_its_reason_once_until_it_changes() {
        let node = |instance: &str, error: Option<FetchError>| NodeObservation {
            instance: instance.into(),
            up: error.is_none(),
            errors: error.into_iter().map(|e| ("srvr".to_string(), e)).collect(),
            ..NodeObservation::default()
        };
        let refused = || FetchError::Connect { addr: "a".into(), reason: "Connection refused".into(), refused: true };
        let timeout = || FetchError::Timeout { addr: "b".into(), timeout: Duration::from_secs(2) };
        let log = FailureLog::default();
        let at = |s: i64| Timestamp::from_millis(s * 1000);
        let ((), lines) = crate::test_support::logged(|| {
            log_nodes(&log, "zookeeper/c", &[node("a", Some(refused())), node("b", Some(timeout()))], at(0));
            log_nodes(&log, "zookeeper/c", &[node("a", Some(refused())), node("b", Some(timeout()))], at(15));
            log_nodes(&log, "zookeeper/c", &[node("a", None), node("b", Some(timeout()))], at(30));
        });
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].contains("node gave no reply") && lines[0].contains("node=a"), "{}", lines[0]);
        assert!(lines[0].contains("problem=\"down: refused\""), "{}", lines[0]);
        assert!(lines[1].contains("node=b") && lines[1].contains("problem=\"down: timeout\""), "{}", lines[1]);
        assert!(lines[2].contains("node answers every command again") && lines[2].contains("node=a"), "{}", lines[2]);
    }

    #[test]
    fn logs_when_a_failure_starts_changes_repeats_and_ends() {
        let log = FailureLog::default();
        let at = |s: i64| Timestamp::from_millis(s * 1000);
        assert_eq!(log.note("a", None, at(0)), Report::Quiet);
        assert_eq!(log.note("a", Some("down: refused"), at(15)), Report::Failing { repeated: false });
        assert_eq!(log.note("a", Some("down: refused"), at(30)), Report::Quiet);
        assert_eq!(log.note("b", Some("down: timeout"), at(30)), Report::Failing { repeated: false });
        assert_eq!(log.note("a", Some("down: refused"), at(314)), Report::Quiet);
        assert_eq!(log.note("a", Some("down: refused"), at(315)), Report::Failing { repeated: true });
        assert_eq!(log.note("a", Some("down: timeout"), at(330)), Report::Failing { repeated: false });
        assert_eq!(log.note("a", None, at(345)), Report::Recovered { was: "down: timeout".into() });
        assert_eq!(log.note("a", None, at(360)), Report::Quiet);
    }
}
