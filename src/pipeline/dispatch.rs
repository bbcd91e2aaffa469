//! Grouping, dedup, routing by tier, acknowledgement, escalation and the P3
//! digest: which channels are told what, and when. A pure state machine
//! driven by the tracker's alerts (each marked muted or not) and the time,
//! as Alertmanager's dispatcher and dedup stage: nothing is re-sent unless
//! alerts fired, resolved, the tier rose or the repeat interval passed. Its
//! per-group state is the notification log, persisted by `state`.
//!
//! An alert held only by `keep_firing_for` (its condition has cleared) is
//! still firing for those already told, but is never told as new: after a
//! mute ends or in a group it just joined, it stays untold, and so does its
//! resolution. Nor does it alone repeat or escalate a page.

use super::{GroupKey, Policy};
use crate::model::{Alert, AlertState, Fingerprint, Labels, Severity, Timestamp};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Why a message is sent, as the dispatcher decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Alerts fired that the group's channels were not told about.
    NewAlerts,
    /// The group's highest firing tier rose (P2 to P1, say).
    TierRose,
    /// Alerts told as firing resolved.
    Resolved,
    /// Still firing and not acknowledged after the repeat interval.
    Repeat,
    /// Nobody acknowledged within `respond_within`: sent to `escalate_to`.
    Escalation,
    /// The tier's digest schedule came round.
    Digest,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NewAlerts => "new_alerts",
            Reason::TierRose => "tier_rose",
            Reason::Resolved => "resolved",
            Reason::Repeat => "repeat",
            Reason::Escalation => "escalation",
            Reason::Digest => "digest",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message to some channels about one group (or, for a digest, about
/// every group of a tier).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Stable across restarts and across replicas that saw the same
    /// history: the idempotency key of its deliveries. A fingerprint of what
    /// the message says (see [`Message::content_id`]), never of when it was
    /// decided.
    pub id: String,
    pub at: Timestamp,
    /// The group's labels (the `group_by` values); empty for a digest.
    pub group: Labels,
    pub group_id: String,
    pub tier: Severity,
    pub channels: Vec<String>,
    pub firing: Vec<Alert>,
    /// Fingerprints of the alerts in `firing` not told before.
    pub new: Vec<Fingerprint>,
    pub resolved: Vec<Alert>,
    /// Why it is sent: "why was I paged".
    pub reason: Reason,
    /// Sent to `escalate_to` because nobody acknowledged in time.
    pub escalation: bool,
    /// A scheduled batch of a tier's groups.
    pub digest: bool,
    /// A sample sent by `zkalert notify test`: every format marks it as
    /// not a real alert.
    pub test: bool,
}

/// Where a message's id places it in time.
#[derive(Debug, Clone, Copy)]
enum IdTime {
    /// A group's message: the hour (UTC) it was decided in.
    Hour(Timestamp),
    /// A digest: the scheduled time it was due for.
    Slot(Timestamp),
}

const HOUR_MS: i64 = 3_600_000;

/// Until when a group that told something and ended at `now` is kept: to
/// the end of the hour after. Its ids are unique while it is kept (its
/// count goes on) and after (a new count starts in a later hour). Replicas
/// agree on the count unless it starts again within their skew of that
/// time, which a flapping group, back within minutes, does not.
fn ended_until(now: Timestamp) -> Timestamp {
    Timestamp::from_millis((now.as_millis().div_euclid(HOUR_MS) + 2) * HOUR_MS)
}

impl Message {
    /// The id of this message as the `sequence`-th message about its group
    /// (0 for a digest), at `time`: the group, the kind, the reason, the
    /// tier, the fingerprints of the alerts it tells (sorted), the sequence
    /// and the time. Replicas polling the same sources decide the same
    /// message a few seconds apart; their ids agree, so a receiver that
    /// dedups on the idempotency key sees one page.
    ///
    /// The sequence keeps ids unique on one replica (a group that fires,
    /// resolves and fires again tells the same thing twice). The hour keeps
    /// a group that ended and began again later from repeating an old key
    /// (its count starts again). Its cost: replicas that decide a message on
    /// either side of an hour boundary give two keys, a duplicate page and
    /// never a lost one; the chance is about skew / 3600 s per message. A
    /// digest uses its slot instead, the same on every replica.
    fn content_id(&self, sequence: u64, time: IdTime) -> String {
        let fingerprints = |fps: &mut dyn Iterator<Item = Fingerprint>| {
            let mut fps: Vec<Fingerprint> = fps.collect();
            fps.sort_unstable();
            fps.iter().map(Fingerprint::to_string).collect::<Vec<_>>().join(",")
        };
        let kind = match (self.escalation, self.digest) {
            (true, _) => "escalation".to_string(),
            (false, true) => format!("digest-{}", self.tier),
            (false, false) => "notify".to_string(),
        };
        let (time_name, time) = match time {
            IdTime::Hour(now) => ("hour", now.as_millis().div_euclid(HOUR_MS)),
            IdTime::Slot(slot) => ("slot", slot.as_millis()),
        };
        Labels::from_pairs([
            ("group", self.group_id.clone()),
            ("kind", kind),
            ("reason", self.reason.as_str().to_string()),
            ("tier", self.tier.as_str().to_string()),
            ("firing", fingerprints(&mut self.firing.iter().map(|a| a.fingerprint))),
            ("new", fingerprints(&mut self.new.iter().copied())),
            ("resolved", fingerprints(&mut self.resolved.iter().map(|a| a.fingerprint))),
            ("sequence", sequence.to_string()),
            (time_name, time.to_string()),
        ])
        .fingerprint()
        .to_string()
    }

    pub fn is_new(&self, fp: Fingerprint) -> bool {
        self.new.contains(&fp)
    }
}

/// Who acknowledged a group, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub by: String,
    pub comment: String,
    pub at: Timestamp,
    pub until: Option<Timestamp>,
}

/// What the notification log keeps per group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    pub key: GroupKey,
    pub next_flush: Timestamp,
    /// The alerts the last message told as firing (and still around).
    pub notified_firing: BTreeSet<Fingerprint>,
    pub notified_tier: Option<Severity>,
    pub last_sent: Option<Timestamp>,
    /// When the on-call was first paged about the group as it is now (new
    /// alerts or a tier rise restart it): the escalation clock.
    pub paged_since: Option<Timestamp>,
    pub escalated: bool,
    pub ack: Option<Ack>,
    /// Why the last message about the group was sent.
    pub last_reason: Option<Reason>,
    /// How many messages the group was told in its lifetime (escalations
    /// and its part in digests too): the sequence in its messages' ids.
    pub told: u64,
}

impl GroupState {
    fn new(key: GroupKey, next_flush: Timestamp) -> Self {
        Self {
            key,
            next_flush,
            notified_firing: BTreeSet::new(),
            notified_tier: None,
            last_sent: None,
            paged_since: None,
            escalated: false,
            ack: None,
            last_reason: None,
            told: 0,
        }
    }
}

/// The notification-log rows a step changed, for the durable store.
#[derive(Debug, Default, Clone)]
pub struct GroupChanges {
    pub upserted: Vec<GroupState>,
    /// Ids of groups gone for good.
    pub removed: Vec<String>,
}

/// The dispatcher's state.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub policy: Arc<Policy>,
    /// Keyed by the interned key (one `Arc` per group, see `interned`).
    groups: FxHashMap<Arc<GroupKey>, Live>,
    /// One shared key per group, so alerts map to groups by pointer.
    interned: FxHashSet<Arc<GroupKey>>,
    /// Per tier with a digest: when the next one is due.
    next_digest: [Option<Timestamp>; 4],
    /// Group of each (alert, tier), and the step it was last seen in: route
    /// matching runs once per alert, not once per step.
    key_cache: FxHashMap<(Fingerprint, Severity), (Arc<GroupKey>, u64)>,
    step_no: u64,
    dirty: FxHashSet<Arc<GroupKey>>,
    removed: Vec<String>,
}

/// The group ids of alerts, as of the last step (see [`Dispatcher::group_ids`]).
pub struct GroupIds<'a> {
    key_cache: &'a FxHashMap<(Fingerprint, Severity), (Arc<GroupKey>, u64)>,
    ids: FxHashMap<usize, Arc<str>>,
}

impl GroupIds<'_> {
    /// The id of the group the last step put `alert` in, if that group has
    /// started (an alert's first unmuted firing starts it).
    pub fn of(&self, alert: &Alert) -> Option<&Arc<str>> {
        let (key, _) = self.key_cache.get(&(alert.fingerprint, alert.severity))?;
        self.ids.get(&(Arc::as_ptr(key) as usize))
    }
}

/// A group's key and its alerts in one step, each with its mute flag.
type Members<'a> = (Arc<GroupKey>, Vec<(&'a Alert, bool)>);

/// A group's log entry and what the dispatcher keeps beside it.
#[derive(Debug, Clone)]
struct Live {
    log: GroupState,
    /// The group's id, shared with the API's snapshot.
    id: Arc<str>,
    /// The membership the last full look at the group saw.
    seen: Option<Signature>,
    /// When something is next due if the membership stays as seen.
    wake: Option<Timestamp>,
    /// The group has ended (no alerts left, nothing told as firing) but is
    /// kept until then: if it starts again before, its count of messages
    /// goes on, so no id repeats (see [`ended_until`]).
    ended_until: Option<Timestamp>,
}

/// A summary of a group's members: if it is unchanged and no timer is due,
/// there is nothing to decide, and a step skips the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Signature {
    members: (usize, u64),
    firing: (usize, u64),
    resolved: (usize, u64),
    tier: Option<Severity>,
}

impl Signature {
    fn of(members: &[(&Alert, bool)]) -> Self {
        let mix = |acc: (usize, u64), a: &Alert| {
            let held = u64::from(held_only(a)) << 8;
            let h = a.fingerprint.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (a.severity as u64 + 1 + held);
            (acc.0 + 1, acc.1 ^ h)
        };
        let mut sig = Signature::default();
        for (a, muted) in members {
            sig.members = mix(sig.members, a);
            if *muted {
                continue;
            }
            match a.state {
                AlertState::Firing => {
                    sig.firing = mix(sig.firing, a);
                    sig.tier = Some(sig.tier.map_or(a.severity, |t| t.min(a.severity)));
                }
                AlertState::Resolved => sig.resolved = mix(sig.resolved, a),
                AlertState::Pending => {}
            }
        }
        sig
    }
}

/// Firing only because `keep_firing_for` holds it: its condition has cleared.
fn held_only(a: &Alert) -> bool {
    a.state == AlertState::Firing && a.keep_firing_since.is_some()
}

impl Dispatcher {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            policy,
            groups: FxHashMap::default(),
            interned: FxHashSet::default(),
            next_digest: [None; 4],
            key_cache: FxHashMap::default(),
            step_no: 0,
            dirty: FxHashSet::default(),
            removed: Vec::new(),
        }
    }

    fn intern(&mut self, key: GroupKey) -> Arc<GroupKey> {
        match self.interned.get(&key) {
            Some(k) => k.clone(),
            None => {
                let k = Arc::new(key);
                self.interned.insert(k.clone());
                k
            }
        }
    }

    /// Routes by `policy` from now on (a reload), keeping the notification
    /// log: every group is looked at again at the next step, as after a
    /// restart, so nothing already told is told again.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
        self.key_cache.clear();
        for live in self.groups.values_mut() {
            live.seen = None;
        }
    }

    /// Puts back the notification log read at start-up.
    pub fn restore(&mut self, groups: impl IntoIterator<Item = GroupState>) {
        for g in groups {
            let key = self.intern(g.key.clone());
            let id = g.key.id().into();
            self.groups.insert(key, Live { log: g, id, seen: None, wake: None, ended_until: None });
        }
    }

    /// The notification log, ordered by group; without the groups that
    /// ended (kept only for their count of messages).
    pub fn groups(&self) -> impl Iterator<Item = &GroupState> {
        let mut all: Vec<&GroupState> =
            self.groups.values().filter(|l| l.ended_until.is_none()).map(|l| &l.log).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all.into_iter()
    }

    /// The notification log by group id, in no order (see [`Self::groups`]).
    pub fn groups_by_id(&self) -> impl Iterator<Item = (&str, &GroupState)> {
        self.groups.values().filter(|l| l.ended_until.is_none()).map(|l| (&*l.id, &l.log))
    }

    /// The ids of the groups the last step put alerts in, for
    /// [`GroupIds::of`]: one lookup per alert, by the address of its
    /// interned group key (hashing a key hashes its labels).
    pub fn group_ids(&self) -> GroupIds<'_> {
        let ids = self
            .groups
            .iter()
            .filter(|(_, l)| l.ended_until.is_none())
            .map(|(k, l)| (Arc::as_ptr(k) as usize, l.id.clone()))
            .collect();
        GroupIds { key_cache: &self.key_cache, ids }
    }

    /// Acknowledges a group: no repeats, no escalation, until a new alert
    /// fires in it or its tier rises (or `until` passes).
    pub fn ack(&mut self, group_id: &str, ack: Ack) -> Option<&GroupState> {
        let (key, live) = self.groups.iter_mut().find(|(_, l)| &*l.id == group_id && l.ended_until.is_none())?;
        // Repeats and escalation wait now; look at the group again when
        // the ack runs out.
        if let Some(until) = ack.until {
            live.wake = Some(live.wake.map_or(until, |w| w.min(until)));
        }
        live.log.ack = Some(ack);
        self.dirty.insert(key.clone());
        Some(&live.log)
    }

    /// Takes the notification-log rows changed since the last call.
    pub fn take_changes(&mut self) -> GroupChanges {
        let upserted = self.dirty.drain().filter_map(|k| self.groups.get(&k).map(|l| l.log.clone())).collect();
        GroupChanges { upserted, removed: std::mem::take(&mut self.removed) }
    }

    /// Puts back changes taken by [`Self::take_changes`] whose write failed,
    /// so the next call returns them again (with the groups' latest state).
    pub fn put_back_changes(&mut self, changes: GroupChanges) {
        for g in changes.upserted {
            if let Some(key) = self.interned.get(&g.key).filter(|k| self.groups.contains_key(*k)) {
                self.dirty.insert(key.clone());
            }
        }
        let mut removed = changes.removed;
        removed.append(&mut self.removed);
        self.removed = removed;
    }

    /// The earliest time a step with the same alerts has something to
    /// tell (a group wait or interval ending, a repeat, an escalation, a
    /// digest, an ack running out), not before `now`; none if nothing will
    /// be due until the alerts change.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        // A group not looked at since a restart is due at once; one that
        // ended has nothing to tell (any later step forgets it in time).
        let due = |l: &Live| match (l.seen, l.ended_until) {
            (None, _) => Some(now),
            (Some(_), Some(_)) => None,
            (Some(_), None) => l.wake,
        };
        self.groups.values().filter_map(due).min().map(|t| t.max(now))
    }

    /// One step at `now`: `alerts` are all the tracker's alerts (pending,
    /// firing, recently resolved), each with whether it is muted (inhibited,
    /// silenced or in maintenance). Returns the messages due.
    pub fn step<'a>(&mut self, alerts: impl IntoIterator<Item = (&'a Alert, bool)>, now: Timestamp) -> Vec<Message> {
        let policy = self.policy.clone();
        self.step_no += 1;
        let step_no = self.step_no;
        // Members by group, the group found by its interned key's address.
        let mut members: FxHashMap<usize, Members> = FxHashMap::default();
        for (alert, muted) in alerts {
            if alert.state == AlertState::Pending {
                continue;
            }
            let id = (alert.fingerprint, alert.severity);
            let key = match self.key_cache.get_mut(&id) {
                Some((k, seen)) => {
                    *seen = step_no;
                    k.clone()
                }
                None => {
                    let k = self.intern(policy.group_key(alert));
                    self.key_cache.insert(id, (k.clone(), step_no));
                    k
                }
            };
            members.entry(Arc::as_ptr(&key) as usize).or_insert_with(|| (key, Vec::new())).1.push((alert, muted));
        }
        self.key_cache.retain(|_, (_, seen)| *seen == step_no);
        // A group starts with its first unmuted firing alert whose condition
        // holds; group_wait is that alert's tier's. One that ended lately
        // (still kept, see `ended_until`) starts again with its count.
        for (key, m) in members.values() {
            let Some(tier) = m
                .iter()
                .filter(|(a, muted)| !muted && a.state == AlertState::Firing && !held_only(a))
                .map(|(a, _)| a.severity)
                .min()
            else {
                continue;
            };
            let told = match self.groups.get(key) {
                None => 0,
                Some(ended) if ended.ended_until.is_some() => ended.log.told,
                Some(_) => continue,
            };
            let wait = policy.tier(tier).group_wait;
            let log = GroupState { told, ..GroupState::new(key.as_ref().clone(), now + wait) };
            let id = log.key.id().into();
            self.groups.insert(key.clone(), Live { log, id, seen: None, wake: None, ended_until: None });
            self.dirty.insert(key.clone());
        }
        let mut out = Vec::new();
        let mut digests: [Option<Message>; 4] = Default::default();
        // Per tier, the digest slot due now (the same on every replica).
        let digest_slot: [Option<Timestamp>; 4] = std::array::from_fn(|t| {
            policy.tiers[t].digest.as_ref().and_then(|d| {
                let next = *self.next_digest[t]
                    .get_or_insert_with(|| d.next_after(now).unwrap_or(Timestamp::from_millis(i64::MAX)));
                (now >= next).then_some(next)
            })
        });
        let digest_due = digest_slot.map(|slot| slot.is_some());
        for (t, due) in digest_due.iter().enumerate() {
            if *due {
                self.next_digest[t] = policy.tiers[t].digest.as_ref().and_then(|d| d.next_after(now));
            }
        }
        let next_digest = self.next_digest;
        let mut gone = Vec::new();
        for (key, live) in self.groups.iter_mut() {
            let m = members.get(&(Arc::as_ptr(key) as usize)).map_or(&[][..], |(_, m)| m.as_slice());
            let sig = Signature::of(m);
            if quiet(live, sig, now) {
                continue;
            }
            live.seen = Some(sig);
            let before = log_summary(&live.log);
            let schedule = (&digest_due, &next_digest);
            live.wake = flush_group(&policy, &mut live.log, &live.id, m, now, schedule, &mut digests, &mut out);
            if m.is_empty() && live.log.notified_firing.is_empty() {
                // Ended. Kept (and persisted) a while if it told anything:
                // a new start meanwhile continues its count.
                let until = *live.ended_until.get_or_insert_with(|| ended_until(now));
                if live.log.told == 0 || now >= until {
                    gone.push(key.clone());
                    continue;
                }
                live.wake = Some(live.wake.map_or(until, |w| w.min(until)));
            }
            if before != log_summary(&live.log) {
                self.dirty.insert(key.clone());
            }
        }
        for key in gone {
            self.dirty.remove(&key);
            if let Some(live) = self.groups.remove(&key) {
                self.removed.push(live.id.to_string());
            }
        }
        self.interned.retain(|k| Arc::strong_count(k) > 1);
        // Stable: within a group an escalation stays before the page.
        out.sort_by(|a, b| a.group.cmp(&b.group));
        let mut digests: Vec<Message> = digests
            .into_iter()
            .zip(digest_slot)
            .filter_map(|(digest, slot)| {
                let mut digest = digest?;
                digest.id = digest.content_id(0, IdTime::Slot(slot?));
                Some(digest)
            })
            .collect();
        digests.append(&mut out);
        digests
    }
}

/// Whether a group whose members are unchanged can be skipped: nothing it
/// has pending is due yet (see [`Pending`]).
fn quiet(live: &Live, sig: Signature, now: Timestamp) -> bool {
    live.seen == Some(sig) && live.wake.is_none_or(|w| now < w)
}

type LogSummary =
    (usize, Option<Severity>, Option<Timestamp>, Option<Timestamp>, bool, Option<Timestamp>, Timestamp, u64);

/// Enough of a log entry to see whether a step changed it.
fn log_summary(g: &GroupState) -> LogSummary {
    (
        g.notified_firing.len(),
        g.notified_tier,
        g.last_sent,
        g.paged_since,
        g.escalated,
        g.ack.as_ref().map(|a| a.at),
        g.next_flush,
        g.told,
    )
}

/// What a group's members are against its log at one step.
struct View<'a> {
    /// Firing and unmuted; one held only by `keep_firing_for` counts only if
    /// it was told as firing (it is not news that something recovered).
    firing: Vec<&'a Alert>,
    firing_fps: BTreeSet<Fingerprint>,
    /// Some firing alert's condition still holds: repeats and escalations
    /// page only about those.
    still_holds: bool,
    /// The highest tier firing.
    tier: Option<Severity>,
    /// Resolved, told as firing, and not muted now.
    resolved: Vec<&'a Alert>,
    /// Firing and not told before.
    new: Vec<Fingerprint>,
    tier_rose: bool,
    /// The tier firing, else (only resolutions to tell) the tier last paged.
    msg_tier: Severity,
}

impl<'a> View<'a> {
    fn of(g: &GroupState, members: &[(&'a Alert, bool)]) -> Self {
        let firing: Vec<&Alert> = members
            .iter()
            .filter(|(a, muted)| {
                !muted && a.state == AlertState::Firing && (!held_only(a) || g.notified_firing.contains(&a.fingerprint))
            })
            .map(|(a, _)| *a)
            .collect();
        let firing_fps: BTreeSet<Fingerprint> = firing.iter().map(|a| a.fingerprint).collect();
        let tier = firing.iter().map(|a| a.severity).min();
        let resolved = members
            .iter()
            .filter(|(a, muted)| {
                !muted && a.state == AlertState::Resolved && g.notified_firing.contains(&a.fingerprint)
            })
            .map(|(a, _)| *a)
            .collect();
        View {
            still_holds: firing.iter().any(|a| !held_only(a)),
            new: firing_fps.difference(&g.notified_firing).copied().collect(),
            tier_rose: matches!((tier, g.notified_tier), (Some(t), Some(n)) if t < n),
            msg_tier: tier.or(g.notified_tier).unwrap_or(Severity::P3),
            firing,
            firing_fps,
            tier,
            resolved,
        }
    }

    /// The change there is to tell, the strongest first.
    fn change(&self) -> Option<Reason> {
        if self.tier_rose {
            Some(Reason::TierRose)
        } else if !self.new.is_empty() {
            Some(Reason::NewAlerts)
        } else if !self.resolved.is_empty() {
            Some(Reason::Resolved)
        } else {
            None
        }
    }
}

/// From when each thing a group could be told falls due, its members and
/// log as they are: the dispatch rules, stated once. [`due`] reads it to
/// send, [`Pending::wake`] to skip the group until then (as `needsUpdate`
/// in Alertmanager's dedup stage).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pending {
    /// Nobody acknowledged within `respond_within`, and someone is there to
    /// escalate to.
    escalation: Option<Timestamp>,
    /// A message to the group's channels: a change (after the group wait or
    /// interval) or a repeat.
    page: Option<(Reason, Timestamp)>,
    /// On a digest tier: a place in its next digest.
    digest: Option<Severity>,
    /// The ack runs out then (repeats and escalation resume).
    ack_until: Option<Timestamp>,
}

impl Pending {
    fn of(policy: &Policy, g: &GroupState, v: &View) -> Self {
        let tp = policy.tier(v.msg_tier);
        let acked = g.ack.is_some();
        let escalation = match (v.tier, tp.respond_within, g.paged_since) {
            (Some(t), Some(respond), Some(first))
                if !g.escalated && !acked && v.still_holds && !policy.escalate_to(g.key.route, t).is_empty() =>
            {
                Some(first + respond)
            }
            _ => None,
        };
        let change = v.change();
        let digest_tier = tp.digest.is_some() && !v.tier_rose;
        let page = match (digest_tier, change, g.last_sent) {
            (true, _, _) => None,
            (false, Some(reason), _) => Some((reason, g.next_flush)),
            (false, None, Some(last)) if v.still_holds && !acked => {
                Some((Reason::Repeat, (last + tp.repeat_interval).max(g.next_flush)))
            }
            _ => None,
        };
        let digest = (digest_tier && (change.is_some() || v.still_holds)).then_some(v.msg_tier);
        Pending { escalation, page, digest, ack_until: g.ack.as_ref().and_then(|a| a.until) }
    }

    /// The earliest time something here falls due, given when each tier's
    /// next digest is.
    fn wake(&self, next_digest: &[Option<Timestamp>; 4]) -> Option<Timestamp> {
        let digest = self.digest.and_then(|tier| next_digest[tier as usize]);
        [self.escalation, self.page.map(|(_, t)| t), digest, self.ack_until].into_iter().flatten().min()
    }
}

/// What a group is to be told at `now`, if anything: an escalation first.
fn due(p: &Pending, now: Timestamp, digest_due: &[bool; 4]) -> Option<Reason> {
    if p.escalation.is_some_and(|t| now >= t) {
        return Some(Reason::Escalation);
    }
    if let Some((reason, t)) = p.page
        && now >= t
    {
        return Some(reason);
    }
    match p.digest {
        Some(tier) if digest_due[tier as usize] => Some(Reason::Digest),
        _ => None,
    }
}

/// Tells one group what is due at `now` (an escalation, then a message or
/// its part of a digest), pushing messages to `out`, and updates its log
/// entry. Returns when something is next due if its members stay the same.
#[allow(clippy::too_many_arguments)]
fn flush_group(
    policy: &Policy,
    g: &mut GroupState,
    group_id: &str,
    members: &[(&Alert, bool)],
    now: Timestamp,
    (digest_due, next_digest): (&[bool; 4], &[Option<Timestamp>; 4]),
    digests: &mut [Option<Message>; 4],
    out: &mut Vec<Message>,
) -> Option<Timestamp> {
    // A new group within its group wait: nothing to decide before its
    // first page (no ack, no escalation, nothing told to resolve).
    if g.last_sent.is_none() && now < g.next_flush {
        return Some(g.next_flush);
    }
    if g.notified_firing.len() > members.len()
        || g.notified_firing.iter().any(|fp| !members.iter().any(|(a, _)| a.fingerprint == *fp))
    {
        // Alerts the tracker forgot (resolved long ago) leave the log.
        let present: FxHashSet<Fingerprint> = members.iter().map(|(a, _)| a.fingerprint).collect();
        g.notified_firing.retain(|fp| present.contains(fp));
    }
    if g.ack.as_ref().is_some_and(|a| a.until.is_some_and(|u| now >= u)) {
        g.ack = None;
    }
    let sorted = |v: &[&Alert]| {
        let mut v: Vec<Alert> = v.iter().map(|a| (*a).clone()).collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    };
    let mut told = false;
    loop {
        let v = View::of(g, members);
        if !v.new.is_empty() || v.tier_rose {
            g.ack = None;
            g.escalated = false;
            g.paged_since = None;
        }
        let pending = Pending::of(policy, g, &v);
        let reason = match due(&pending, now, digest_due) {
            Some(r) if r == Reason::Escalation || !told => r,
            _ => return pending.wake(next_digest),
        };
        let tp = policy.tier(v.msg_tier);
        g.last_reason = Some(reason);
        match reason {
            Reason::Escalation => {
                g.escalated = true;
                let tier = v.tier.unwrap_or(v.msg_tier);
                let escalation = Message {
                    id: String::new(),
                    at: now,
                    group: g.key.labels.clone(),
                    group_id: group_id.to_string(),
                    tier,
                    channels: policy.escalate_to(g.key.route, tier).to_vec(),
                    firing: sorted(&v.firing),
                    new: Vec::new(),
                    resolved: Vec::new(),
                    reason,
                    escalation: true,
                    digest: false,
                    test: false,
                };
                out.push(told_next(g, escalation, now));
                continue;
            }
            Reason::Digest => {
                let digest = digests[v.msg_tier as usize].get_or_insert_with(|| Message {
                    // Its id once it is complete (see `step`).
                    id: String::new(),
                    at: now,
                    group: Labels::new(),
                    group_id: String::new(),
                    tier: v.msg_tier,
                    channels: tp.channels.clone(),
                    firing: Vec::new(),
                    new: Vec::new(),
                    resolved: Vec::new(),
                    reason,
                    escalation: false,
                    digest: true,
                    test: false,
                });
                digest.firing.extend(v.firing.iter().map(|a| (*a).clone()));
                digest.new.extend(&v.new);
                digest.resolved.extend(v.resolved.iter().map(|a| (*a).clone()));
                g.told = g.told.wrapping_add(1);
            }
            _ => {
                let message = Message {
                    id: String::new(),
                    at: now,
                    group: g.key.labels.clone(),
                    group_id: group_id.to_string(),
                    tier: v.msg_tier,
                    channels: policy.channels(g.key.route, v.msg_tier).to_vec(),
                    firing: sorted(&v.firing),
                    new: v.new.clone(),
                    resolved: sorted(&v.resolved),
                    reason,
                    escalation: false,
                    digest: false,
                    test: false,
                };
                out.push(told_next(g, message, now));
            }
        }
        mark_sent(g, &v.firing_fps, &v.resolved, v.tier, now, now + tp.group_interval);
        told = true;
    }
}

/// `message` as the next message the group is told, with its id.
fn told_next(g: &mut GroupState, mut message: Message, now: Timestamp) -> Message {
    message.id = message.content_id(g.told, IdTime::Hour(now));
    g.told = g.told.wrapping_add(1);
    message
}

fn mark_sent(
    g: &mut GroupState,
    firing: &BTreeSet<Fingerprint>,
    resolved: &[&Alert],
    tier: Option<Severity>,
    now: Timestamp,
    next_flush: Timestamp,
) {
    for a in resolved {
        g.notified_firing.remove(&a.fingerprint);
    }
    g.notified_firing.extend(firing);
    if !firing.is_empty() {
        g.paged_since.get_or_insert(now);
        g.notified_tier = tier;
    }
    g.last_sent = Some(now);
    g.next_flush = next_flush;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pipeline::{Matchers, Route};
    use std::collections::BTreeMap;

    fn at(s: u64) -> Timestamp {
        Timestamp::from_millis(s as i64 * 1000)
    }

    pub fn alert(name: &str, instance: &str, tier: Severity, state: AlertState) -> Alert {
        let labels = Labels::from_pairs([
            ("alertname", name),
            ("cluster", "prod"),
            ("instance", instance),
            ("severity", tier.as_str()),
        ]);
        let mut alert = Alert::new(labels, tier, 0.0, at(0));
        alert.fire(at(0));
        alert.state = state;
        alert
    }

    /// `a` resolved, keeping its times.
    pub fn resolved(a: &Alert) -> Alert {
        let mut a = a.clone();
        a.state = AlertState::Resolved;
        a
    }

    fn summary(m: &[Message]) -> Vec<(u64, Severity, String, usize, usize, bool)> {
        m.iter()
            .map(|m| {
                (
                    (m.at.as_millis() / 1000) as u64,
                    m.tier,
                    m.channels.join("+"),
                    m.firing.len(),
                    m.resolved.len(),
                    m.escalation,
                )
            })
            .collect()
    }

    fn step(d: &mut Dispatcher, alerts: &[&Alert], t: u64) -> Vec<Message> {
        d.step(alerts.iter().map(|a| (*a, false)), at(t))
    }

    fn seed() -> Dispatcher {
        Dispatcher::new(Arc::new(Policy::seed_defaults()))
    }

    #[test]
    fn a_three_node_outage_is_one_page_after_group_wait() {
        let mut d = seed();
        let alerts: Vec<Alert> =
            ["zk1", "zk2", "zk3"].iter().map(|i| alert("ZkNodeDown", i, Severity::P1, AlertState::Firing)).collect();
        let refs: Vec<&Alert> = alerts.iter().collect();
        assert!(step(&mut d, &refs[..1], 0).is_empty());
        assert!(step(&mut d, &refs, 10).is_empty(), "P1 waits 30 s for the rest of the burst");
        let m = step(&mut d, &refs, 30);
        assert_eq!(summary(&m), [(30, Severity::P1, "sms+im".into(), 3, 0, false)]);
        assert_eq!(m[0].new.len(), 3);
        assert!(step(&mut d, &refs, 40).is_empty(), "nothing new: dedup");
        assert!(step(&mut d, &refs, 600).is_empty(), "no repeat before 15 min");
    }

    #[test]
    fn repeat_resolve_and_tier_rise() {
        let mut d = seed();
        let p2 = alert("ZkHighAvgLatency", "zk1", Severity::P2, AlertState::Firing);
        assert!(step(&mut d, &[&p2], 0).is_empty());
        assert_eq!(step(&mut d, &[&p2], 30).len(), 1);
        assert!(step(&mut d, &[&p2], 1800).is_empty(), "P2 repeats hourly");
        let m = step(&mut d, &[&p2], 3630);
        assert_eq!(summary(&m), [(3630, Severity::P2, "im+email".into(), 1, 0, false)]);
        assert!(m[0].new.is_empty(), "a repeat tells nothing new");
        // The tier rises within the same alert: re-notified at once.
        let p1 = alert("ZkHighAvgLatency", "zk1", Severity::P1, AlertState::Firing);
        assert_eq!(summary(&step(&mut d, &[&p1], 3700)), [(3700, Severity::P1, "sms+im".into(), 1, 0, false)]);
        // Resolved: told once, on the tier last paged.
        assert_eq!(
            summary(&step(&mut d, &[&resolved(&p1)], 3800)),
            [(3800, Severity::P1, "sms+im".into(), 0, 1, false)]
        );
        assert!(step(&mut d, &[&resolved(&p1)], 3900).is_empty());
        assert!(step(&mut d, &[], 9000).is_empty());
        assert_eq!(d.groups().count(), 0, "the group is forgotten");
    }

    #[test]
    fn group_interval_batches_changes() {
        let mut d = seed();
        let a = alert("ZkNodeDown", "zk1", Severity::P0, AlertState::Firing);
        let b = alert("ZkNodeDown", "zk2", Severity::P0, AlertState::Firing);
        assert_eq!(step(&mut d, &[&a], 0).len(), 1, "P0 has no group wait");
        assert!(step(&mut d, &[&a, &b], 20).is_empty(), "a second alert waits for the group interval");
        let m = step(&mut d, &[&a, &b], 60);
        assert_eq!(summary(&m), [(60, Severity::P0, "voice+sms+im".into(), 2, 0, false)]);
        assert_eq!(m[0].new, [b.fingerprint]);
    }

    #[test]
    fn ack_stops_repeats_and_escalation_until_a_new_alert() {
        let mut d = seed();
        let q = alert("ZkQuorumLost", "", Severity::P0, AlertState::Firing);
        assert_eq!(summary(&step(&mut d, &[&q], 0)), [(0, Severity::P0, "voice+sms+im".into(), 1, 0, false)]);
        let id = d.groups().next().unwrap().key.id();
        assert!(d.ack(&id, Ack { by: "alice".into(), comment: "on it".into(), at: at(60), until: None }).is_some());
        assert!(step(&mut d, &[&q], 301).is_empty(), "acked: no repeat, no escalation");
        assert!(step(&mut d, &[&q], 1000).is_empty());
        // A new alert in the group clears the ack.
        let q2 = alert("ZkQuorumLost", "x", Severity::P0, AlertState::Firing);
        assert_eq!(
            summary(&step(&mut d, &[&q, &q2], 1001)),
            [(1001, Severity::P0, "voice+sms+im".into(), 2, 0, false)]
        );
        assert!(d.groups().next().unwrap().ack.is_none());
    }

    #[test]
    fn ack_expires() {
        let mut d = seed();
        let q = alert("ZkQuorumLost", "", Severity::P0, AlertState::Firing);
        step(&mut d, &[&q], 0);
        let id = d.groups().next().unwrap().key.id();
        d.ack(&id, Ack { by: "bob".into(), comment: String::new(), at: at(10), until: Some(at(400)) });
        assert!(step(&mut d, &[&q], 300).is_empty());
        let m = step(&mut d, &[&q], 400);
        assert!(m.iter().any(|m| m.escalation), "ack expired at 400 s: escalation is overdue");
        assert!(m.iter().any(|m| !m.escalation), "and the repeat too");
    }

    #[test]
    fn unacked_p0_escalates_once_after_respond_within() {
        let mut d = seed();
        let s = alert("ZkSplitBrain", "", Severity::P0, AlertState::Firing);
        step(&mut d, &[&s], 0);
        assert!(step(&mut d, &[&s], 299).is_empty());
        let m = step(&mut d, &[&s], 300);
        assert_eq!(
            summary(&m),
            [
                (300, Severity::P0, "escalation".into(), 1, 0, true),
                (300, Severity::P0, "voice+sms+im".into(), 1, 0, false)
            ],
            "escalation and the 5-minute repeat"
        );
        assert!(step(&mut d, &[&s], 900).iter().all(|m| !m.escalation), "escalated once");
    }

    #[test]
    fn muted_alerts_are_not_told_and_resolve_quietly_while_muted() {
        let mut d = seed();
        let a = alert("ZkNodeDown", "zk1", Severity::P0, AlertState::Firing);
        assert_eq!(step(&mut d, &[&a], 0).len(), 1);
        // Silenced now: no repeats, and a resolution while silenced is not told.
        assert!(d.step([(&a, true)], at(400)).is_empty());
        let r = resolved(&a);
        assert!(d.step([(&r, true)], at(500)).is_empty());
        // The silence ends while the resolved alert is still around: told.
        assert_eq!(summary(&d.step([(&r, false)], at(600))), [(600, Severity::P0, "voice+sms+im".into(), 0, 1, false)]);
        // A muted alert never starts a group.
        let b = alert("ZkNodeDown", "zk9", Severity::P2, AlertState::Firing);
        assert!(d.step([(&b, true)], at(700)).is_empty());
        assert!(d.step([(&b, true)], at(9000)).is_empty());
    }

    /// `a` as `keep_firing_for` holds it from `since`: its condition cleared.
    pub fn held(a: &Alert, since: Timestamp) -> Alert {
        let mut a = a.clone();
        a.keep_firing_since = Some(since);
        a
    }

    #[test]
    fn a_told_alert_held_by_keep_firing_for_neither_repeats_nor_escalates() {
        let mut d = seed();
        let a = alert("ZkNodeDown", "zk1", Severity::P0, AlertState::Firing);
        assert_eq!(step(&mut d, &[&a], 0).len(), 1);
        // The node is back at 240 s; keep_firing_for holds the alert past
        // the 5-minute repeat and escalation.
        let h = held(&a, at(240));
        assert!(step(&mut d, &[&h], 240).is_empty());
        assert!(step(&mut d, &[&h], 300).is_empty(), "no repeat, no escalation about a recovered node");
        assert!(step(&mut d, &[&h], 330).is_empty());
        // Still firing for those told: its resolution is told.
        assert_eq!(
            summary(&step(&mut d, &[&resolved(&h)], 360)),
            [(360, Severity::P0, "voice+sms+im".into(), 0, 1, false)]
        );
        // A held alert told before stays in the list when another fires.
        let b = alert("ZkNodeDown", "zk2", Severity::P0, AlertState::Firing);
        assert_eq!(step(&mut d, &[&b], 420).len(), 1, "after the group interval");
        let m = step(&mut d, &[&held(&b, at(450)), &a], 480);
        assert_eq!(summary(&m), [(480, Severity::P0, "voice+sms+im".into(), 2, 0, false)]);
        assert_eq!(m[0].new, [a.fingerprint]);
    }

    #[test]
    fn an_alert_already_held_when_it_reaches_a_group_is_not_told() {
        let mut d = seed();
        let h = held(&alert("ZkNodeDown", "zk1", Severity::P1, AlertState::Firing), at(0));
        for t in [0, 30, 60, 1000] {
            assert!(step(&mut d, &[&h], t).is_empty(), "at {t}s");
        }
        assert_eq!(d.groups().count(), 0, "it starts no group");
        assert!(step(&mut d, &[&resolved(&h)], 1100).is_empty());
        // The P3 digest does not list it either.
        let t0 = 1_795_593_600; // 2026-11-25T08:00:00Z: the digest is at 09:00.
        let p3 = held(&alert("ZkSnapshotOld", "zk1", Severity::P3, AlertState::Firing), at(t0));
        assert!(step(&mut d, &[&p3], t0).is_empty());
        assert!(step(&mut d, &[&p3], t0 + 3600).is_empty());
    }

    #[test]
    fn p3_goes_out_in_the_daily_digest() {
        // 2026-11-25T08:00:00Z
        let t0 = 1_795_593_600;
        let mut d = seed();
        let a = alert("ZkSnapshotOld", "zk1", Severity::P3, AlertState::Firing);
        let mut b = alert("ZkTooManyZnodes", "zk2", Severity::P3, AlertState::Firing);
        b.labels.insert("cluster", "dev");
        b.fingerprint = Alert::fingerprint_of(&b.labels);
        assert!(step(&mut d, &[&a, &b], t0).is_empty());
        assert!(step(&mut d, &[&a, &b], t0 + 3599).is_empty(), "not before 09:00");
        let m = step(&mut d, &[&a, &b], t0 + 3600);
        assert_eq!(summary(&m), [(t0 + 3600, Severity::P3, "email".into(), 2, 0, false)]);
        assert!(m[0].digest && m[0].group.is_empty(), "one message for both groups");
        assert!(step(&mut d, &[&a, &b], t0 + 7200).is_empty());
        // The next morning: still firing, a reminder; b resolved meanwhile.
        let m = step(&mut d, &[&a, &resolved(&b)], t0 + 3600 + 86_400);
        assert_eq!(summary(&m), [(t0 + 3600 + 86_400, Severity::P3, "email".into(), 1, 1, false)]);
    }

    #[test]
    fn sub_routes_override_channels_and_split_groups() {
        let mut policy = Policy::seed_defaults();
        policy.routes.push(Route {
            matchers: Matchers::parse(r#"{instance="zk2"}"#).unwrap(),
            channels: BTreeMap::from([(Severity::P1, vec!["storage-sms".to_string()])]),
            escalate_to: None,
        });
        let mut d = Dispatcher::new(Arc::new(policy));
        let a = alert("ZkNodeDown", "zk1", Severity::P1, AlertState::Firing);
        let b = alert("ZkNodeDown", "zk2", Severity::P1, AlertState::Firing);
        let mut m = step(&mut d, &[&a, &b], 30);
        assert!(m.is_empty());
        m = step(&mut d, &[&a, &b], 60);
        let mut s = summary(&m);
        s.sort();
        assert_eq!(
            s,
            [(60, Severity::P1, "sms+im".into(), 1, 0, false), (60, Severity::P1, "storage-sms".into(), 1, 0, false)]
        );
    }

    #[test]
    fn changes_report_the_log_rows_to_persist() {
        let mut d = seed();
        let a = alert("ZkNodeDown", "zk1", Severity::P0, AlertState::Firing);
        step(&mut d, &[&a], 0);
        let c = d.take_changes();
        assert_eq!(c.upserted.len(), 1);
        assert_eq!(c.upserted[0].notified_firing.len(), 1);
        step(&mut d, &[&a], 10);
        assert!(d.take_changes().upserted.is_empty(), "nothing changed");
        step(&mut d, &[&resolved(&a)], 20);
        step(&mut d, &[], 30);
        // Ended: kept until the hour after has passed, for its count of
        // messages (the ids' sequence), but no longer listed.
        assert!(d.take_changes().removed.is_empty());
        assert_eq!(d.groups().count(), 0);
        assert_eq!(d.next_due(at(31)), None, "nothing to tell");
        step(&mut d, &[], 7200);
        let c = d.take_changes();
        assert_eq!(c.removed.len(), 1);
        // A restored log keeps dedup across a restart.
        let mut d2 = seed();
        let mut d1 = seed();
        step(&mut d1, &[&a], 0);
        d2.restore(d1.take_changes().upserted);
        assert!(step(&mut d2, &[&a], 5).is_empty(), "already told before the restart");
    }

    #[test]
    fn a_route_that_escalates_to_nobody_leaves_no_timer_due() {
        let mut policy = Policy::seed_defaults();
        policy.routes.push(Route {
            matchers: Matchers::parse(r#"{cluster="prod"}"#).unwrap(),
            channels: BTreeMap::new(),
            escalate_to: Some(Vec::new()),
        });
        let mut d = Dispatcher::new(Arc::new(policy));
        let q = alert("ZkQuorumLost", "", Severity::P0, AlertState::Firing);
        assert_eq!(step(&mut d, &[&q], 0).len(), 1);
        // P0 escalates after 5 min, but this route escalates to nobody: the
        // 5-minute repeat is all that is sent, and then nothing is due
        // before the next repeat.
        let m = step(&mut d, &[&q], 300);
        assert_eq!(summary(&m), [(300, Severity::P0, "voice+sms+im".into(), 1, 0, false)]);
        for t in 301..=310 {
            assert!(step(&mut d, &[&q], t).is_empty());
            assert_eq!(d.next_due(at(t)), Some(at(600)), "at {t}s: a timer due at once, on every tick");
        }
        assert_eq!(step(&mut d, &[&q], 600).len(), 1, "the next repeat");
    }

    #[test]
    fn each_message_and_the_group_log_say_why_it_was_sent() {
        let mut d = seed();
        let reasons = |m: &[Message]| m.iter().map(|m| m.reason).collect::<Vec<_>>();
        let last = |d: &Dispatcher| d.groups().next().unwrap().last_reason;
        let p1 = alert("ZkHighAvgLatency", "zk1", Severity::P1, AlertState::Firing);
        assert!(step(&mut d, &[&p1], 0).is_empty());
        assert_eq!(last(&d), None, "nothing sent yet");
        assert_eq!(reasons(&step(&mut d, &[&p1], 30)), [Reason::NewAlerts]);
        assert_eq!(last(&d), Some(Reason::NewAlerts));
        let p0 = alert("ZkHighAvgLatency", "zk1", Severity::P0, AlertState::Firing);
        assert_eq!(reasons(&step(&mut d, &[&p0], 100)), [Reason::TierRose]);
        let m = step(&mut d, &[&p0], 400);
        assert_eq!(reasons(&m), [Reason::Escalation, Reason::Repeat]);
        assert!(m[0].escalation && !m[1].escalation);
        assert_eq!(last(&d), Some(Reason::Repeat));
        assert_eq!(reasons(&step(&mut d, &[&resolved(&p0)], 500)), [Reason::Resolved]);
        assert_eq!(last(&d), Some(Reason::Resolved));
        // A digest tier: the digest.
        let t0 = 1_795_593_600; // 2026-11-25T08:00:00Z: the digest is at 09:00.
        let p3 = alert("ZkSnapshotOld", "zk1", Severity::P3, AlertState::Firing);
        assert!(step(&mut d, &[&p3], t0).is_empty());
        assert_eq!(d.next_due(at(t0)), Some(at(t0 + 60)), "the group wait");
        assert!(step(&mut d, &[&p3], t0 + 60).is_empty());
        assert_eq!(d.next_due(at(t0 + 61)), Some(at(t0 + 3600)), "the digest, not every tick until then");
        assert_eq!(reasons(&step(&mut d, &[&p3], t0 + 3600)), [Reason::Digest]);
        assert_eq!(d.next_due(at(t0 + 3601)), Some(at(t0 + 3600 + 86_400)));
    }

    #[test]
    fn a_told_alert_held_by_keep_firing_for_leaves_no_timer_due() {
        let mut d = seed();
        let a = alert("ZkNodeDown", "zk1", Severity::P0, AlertState::Firing);
        assert_eq!(step(&mut d, &[&a], 0).len(), 1);
        let h = held(&a, at(240));
        for t in 240..=400 {
            assert!(step(&mut d, &[&h], t).is_empty());
        }
        assert_eq!(d.next_due(at(400)), None, "no repeat or escalation about a recovered node");
    }
}

#[cfg(test)]
mod id_tests {
    use super::tests::{alert, resolved};
    use super::*;
    use std::collections::HashSet;

    /// 2026-11-25T08:00:00Z: the P3 digest is at 09:00.
    const T0: u64 = 1_795_593_600;

    fn at(s: u64) -> Timestamp {
        Timestamp::from_millis(s as i64 * 1000)
    }

    fn seed() -> Dispatcher {
        Dispatcher::new(Arc::new(Policy::seed_defaults()))
    }

    /// The alerts a replica's tracker has `s` seconds into a flapping hour:
    /// zk1 fires for 2 minutes, is resolved for one and forgotten for one,
    /// every 4 minutes (its group ends and starts again); a split brain
    /// fires long enough to repeat and escalate, twice; a latency
    /// alert rises from P1 to P0 and escalates; a P3 alert waits for the
    /// 09:00 digest. Each stretch starts on a multiple of 10 s.
    fn flapping_alerts(s: u64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let zk1 = alert("ZkNodeDown", "zk1", Severity::P0, AlertState::Firing);
        match s % 240 {
            0..120 => alerts.push(zk1),
            120..180 => alerts.push(resolved(&zk1)),
            _ => {}
        }
        let zk2 = alert("ZkSplitBrain", "zk2", Severity::P0, AlertState::Firing);
        match s {
            600..1500 | 2000..2800 => alerts.push(zk2),
            1500..1600 | 2800..2900 => alerts.push(resolved(&zk2)),
            _ => {}
        }
        let latency = |tier| alert("ZkHighAvgLatency", "zk1", tier, AlertState::Firing);
        match s {
            300..900 => alerts.push(latency(Severity::P1)),
            900..2500 => alerts.push(latency(Severity::P0)),
            2500..2600 => alerts.push(resolved(&latency(Severity::P0))),
            _ => {}
        }
        if s >= 3000 {
            alerts.push(alert("ZkSnapshotOld", "zk1", Severity::P3, AlertState::Firing));
        }
        alerts
    }

    /// The messages a replica whose clock is `skew` s ahead decides over the
    /// flapping hour and a little more, stepping every 5 s; restarted (its
    /// log restored from what it persisted) at `restart_at` s if given.
    fn flapping_hour(skew: u64, restart_at: Option<u64>) -> Vec<Message> {
        let mut d = seed();
        let mut persisted: FxHashMap<String, GroupState> = FxHashMap::default();
        let mut out = Vec::new();
        for s in (0..=3900).step_by(5) {
            if restart_at == Some(s) {
                d = seed();
                d.restore(persisted.values().cloned());
            }
            let alerts = flapping_alerts(s);
            out.extend(d.step(alerts.iter().map(|a| (a, false)), at(T0 + s + skew)));
            let changes = d.take_changes();
            for id in changes.removed {
                persisted.remove(&id);
            }
            persisted.extend(changes.upserted.into_iter().map(|g| (g.key.id(), g)));
        }
        out
    }

    fn ids(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn a_flapping_hour_never_repeats_an_id() {
        for restart_at in [None, Some(1800), Some(190)] {
            let messages = flapping_hour(0, restart_at);
            let kinds = |pred: fn(&Message) -> bool| messages.iter().filter(|m| pred(m)).count();
            assert!(kinds(|m| m.reason == Reason::NewAlerts) >= 14, "zk1 starts its group 15 times");
            assert!(kinds(|m| m.reason == Reason::Resolved) >= 14);
            assert!(kinds(|m| m.reason == Reason::Repeat) >= 2);
            assert!(kinds(|m| m.reason == Reason::TierRose) >= 1);
            assert!(kinds(|m| m.escalation) >= 2);
            assert_eq!(kinds(|m| m.digest), 1);
            let mut seen = HashSet::new();
            for m in &messages {
                assert!(seen.insert(&m.id), "restart at {restart_at:?}: id {} twice, again for {m:?}", m.id);
            }
        }
    }

    #[test]
    fn replicas_whose_clocks_differ_by_seconds_give_the_same_ids() {
        let reference = flapping_hour(0, None);
        for skew in [1, 7, 14] {
            let skewed = flapping_hour(skew, None);
            let what = |m: &[Message]| m.iter().map(|m| (m.group_id.clone(), m.reason)).collect::<Vec<_>>();
            assert_eq!(what(&skewed), what(&reference), "the same messages, {skew} s later");
            assert_eq!(ids(&skewed), ids(&reference), "{skew} s apart");
        }
        // A replica restarted meanwhile restores the count with its log.
        assert_eq!(ids(&flapping_hour(7, Some(1800))), ids(&reference));
    }

    #[test]
    fn replicas_deciding_on_either_side_of_an_hour_give_two_ids() {
        // The trade-off of the hour in the id: a duplicate page, never a lost one.
        let a = alert("ZkNodeDown", "zk1", Severity::P0, AlertState::Firing);
        let first = |now: u64| seed().step([(&a, false)], at(now)).remove(0).id;
        assert_eq!(first(T0 + 3590), first(T0 + 3599));
        assert_ne!(first(T0 + 3595), first(T0 + 3600));
    }
}
