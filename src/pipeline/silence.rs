//! Silences: matchers with a start, an end, who and why. A silenced alert
//! is not notified while the silence is active; its resolution is still
//! notified when it resolves after the silence ended.

use super::Matchers;
use crate::model::{Labels, Timestamp};

/// Where a silence is in its life, at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts later.
    Pending,
    Active,
    Expired,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: String,
    pub matchers: Matchers,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn state(&self, now: Timestamp) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    pub fn silences(&self, labels: &Labels, now: Timestamp) -> bool {
        self.state(now) == SilenceState::Active && self.matchers.matches(labels)
    }

    /// Ends the silence now (or leaves it if already over).
    pub fn expire(&mut self, now: Timestamp) {
        if self.ends_at > now {
            self.ends_at = now.max(self.starts_at);
        }
    }
}

/// All silences; answers which silence an alert falls under.
#[derive(Debug, Clone, Default)]
pub struct Silences {
    pub items: Vec<Silence>,
}

impl Silences {
    /// The ids of the active silences matching these labels.
    pub fn silenced_by(&self, labels: &Labels, now: Timestamp) -> Vec<&str> {
        self.items.iter().filter(|s| s.silences(labels, now)).map(|s| s.id.as_str()).collect()
    }

    pub fn is_silenced(&self, labels: &Labels, now: Timestamp) -> bool {
        self.items.iter().any(|s| s.silences(labels, now))
    }

    /// Drops silences expired longer than `retention` ago; returns their ids.
    pub fn gc(&mut self, now: Timestamp, retention: std::time::Duration) -> Vec<String> {
        let mut dropped = Vec::new();
        self.items.retain(|s| {
            let keep = now.since(s.ends_at) < retention || s.ends_at > now;
            if !keep {
                dropped.push(s.id.clone());
            }
            keep
        });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    fn silence(matchers: &str, from: i64, to: i64) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: Matchers::parse(matchers).unwrap(),
            starts_at: at(from),
            ends_at: at(to),
            created_by: "oncall".into(),
            comment: "maintenance of zk1".into(),
        }
    }

    #[test]
    fn active_between_start_and_end() {
        let s = silence(r#"{instance="zk1:2181"}"#, 100, 200);
        let l = Labels::from_pairs([("instance", "zk1:2181")]);
        assert_eq!(s.state(at(50)), SilenceState::Pending);
        assert!(!s.silences(&l, at(50)));
        assert!(s.silences(&l, at(100)));
        assert!(s.silences(&l, at(199)));
        assert_eq!(s.state(at(200)), SilenceState::Expired);
        assert!(!s.silences(&l, at(200)), "expiry is visible at the end time");
        assert!(!s.silences(&Labels::from_pairs([("instance", "zk2:2181")]), at(150)));
    }

    #[test]
    fn expire_and_gc() {
        let mut all = Silences { items: vec![silence(r#"{a="b"}"#, 0, 1000)] };
        let l = Labels::from_pairs([("a", "b")]);
        assert_eq!(all.silenced_by(&l, at(10)), vec!["s1"]);
        all.items[0].expire(at(20));
        assert!(!all.is_silenced(&l, at(21)));
        assert_eq!(all.items[0].state(at(21)), SilenceState::Expired);
        assert_eq!(all.gc(at(21 + 3600), std::time::Duration::from_secs(3600)), ["s1"]);
        assert!(all.items.is_empty());
    }
}
