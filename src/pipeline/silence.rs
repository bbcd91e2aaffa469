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
    items: Vec<Silence>,
}

impl Silences {
    /// The silences persisted before a restart.
    pub fn new(items: Vec<Silence>) -> Self {
        Self { items }
    }

    /// Every silence, expired ones until [`Silences::gc`] drops them.
    pub fn items(&self) -> &[Silence] {
        &self.items
    }

    /// Adds a silence, or replaces the one with its id where it stands.
    pub fn upsert(&mut self, silence: Silence) {
        match self.items.iter_mut().find(|s| s.id == silence.id) {
            Some(slot) => *slot = silence,
            None => self.items.push(silence),
        }
    }

    /// Silence `id` as expiring it at `now` leaves it, without changing it
    /// here (to persist it before [`Silences::upsert`]); `None` if there
    /// is no such silence.
    pub fn expiring(&self, id: &str, now: Timestamp) -> Option<Silence> {
        let mut silence = self.items.iter().find(|s| s.id == id)?.clone();
        silence.expire(now);
        Some(silence)
    }

    /// Expires silence `id` at `now` (one already over stays as it is);
    /// returns it as it now is, `None` if there is no such silence.
    pub fn expire(&mut self, id: &str, now: Timestamp) -> Option<&Silence> {
        let silence = self.items.iter_mut().find(|s| s.id == id)?;
        silence.expire(now);
        Some(silence)
    }

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
        silence_with_id("s1", matchers, from, to)
    }

    fn silence_with_id(id: &str, matchers: &str, from: i64, to: i64) -> Silence {
        Silence {
            id: id.into(),
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
        let mut all = Silences::new(vec![silence(r#"{a="b"}"#, 0, 1000)]);
        let l = Labels::from_pairs([("a", "b")]);
        assert_eq!(all.silenced_by(&l, at(10)), vec!["s1"]);
        assert_eq!(all.expire("s1", at(20)).map(|s| s.ends_at), Some(at(20)));
        assert!(!all.is_silenced(&l, at(21)));
        assert_eq!(all.items()[0].state(at(21)), SilenceState::Expired);
        assert_eq!(all.gc(at(21 + 3600), std::time::Duration::from_secs(3600)), ["s1"]);
        assert!(all.items().is_empty());
    }

    #[test]
    fn upsert_adds_a_new_id_and_replaces_an_existing_one_in_place() {
        let mut all = Silences::default();
        all.upsert(silence_with_id("s1", r#"{a="b"}"#, 0, 100));
        all.upsert(silence_with_id("s2", r#"{a="c"}"#, 0, 100));
        let mut longer = silence_with_id("s1", r#"{a="d"}"#, 0, 900);
        longer.comment = "extended".into();
        all.upsert(longer.clone());
        assert_eq!(all.items(), [longer, silence_with_id("s2", r#"{a="c"}"#, 0, 100)]);
    }

    #[test]
    fn expire_of_an_unknown_id_changes_nothing() {
        let mut all = Silences::new(vec![silence(r#"{a="b"}"#, 0, 1000)]);
        assert_eq!(all.expiring("nope", at(20)), None);
        assert!(all.expire("nope", at(20)).is_none());
        assert_eq!(all.items(), [silence(r#"{a="b"}"#, 0, 1000)]);
    }

    #[test]
    fn expire_leaves_a_silence_already_over_as_it_was_and_ends_a_pending_one_at_its_start() {
        let mut all =
            Silences::new(vec![silence_with_id("over", "{}", 0, 100), silence_with_id("later", "{}", 500, 900)]);
        assert_eq!(all.expire("over", at(300)).map(|s| s.ends_at), Some(at(100)));
        // Not started yet: it ends where it starts, so it never silences.
        assert_eq!(all.expire("later", at(300)).map(|s| (s.starts_at, s.ends_at)), Some((at(500), at(500))));
        assert_eq!(all.items()[1].state(at(600)), SilenceState::Expired);
    }

    #[test]
    fn expiring_shows_the_expired_silence_without_applying_it() {
        let all = Silences::new(vec![silence(r#"{a="b"}"#, 0, 1000)]);
        let expired = all.expiring("s1", at(20)).unwrap();
        assert_eq!(expired.ends_at, at(20));
        assert_eq!(all.items()[0].ends_at, at(1000), "applied only by upsert, once persisted");
    }
}
