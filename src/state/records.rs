//! The rows' JSON bodies: one record type per table, borrowed from the in-memory type when writing and turned back
//! into it when reading; times in milliseconds, fingerprints in hex, sample values as exact strings.

use super::Fail;
use crate::model::{Alert, AlertState, Fingerprint, Labels, STALE_NAN, Severity, Timestamp, is_stale};
use crate::pipeline::{Ack, GroupKey, GroupState, MatchOp, Matcher, Matchers, Message, Reason, Silence};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

pub(super) fn attempts(table: &'static str, key: impl FnOnce() -> String, n: i64) -> Result<u32, Fail> {
    u32::try_from(n).map_err(|_| Fail::decode(table, key(), format!("attempts {n} out of range")))
}

pub(super) fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: impl FnOnce() -> String,
    body: &str,
) -> Result<T, Fail> {
    serde_json::from_str(body).map_err(|e| Fail::decode(table, key(), format_args!("bad body: {e}")))
}

/// Appends `value` as JSON to `buf`.
pub(super) fn write_json<T: Serialize>(buf: &mut Vec<u8>, value: &T) -> Result<(), Fail> {
    serde_json::to_writer(buf, value).map_err(|e| Fail::Encode(e.to_string()))
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String, Fail> {
    serde_json::to_string(value).map_err(|e| Fail::Encode(e.to_string()))
}

/// Labels as a JSON object.
struct LabelsJson<'a>(Cow<'a, Labels>);

impl Serialize for LabelsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LabelsJson<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of label names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Labels::from_pairs(pairs))
            }
        }
        Ok(LabelsJson(Cow::Owned(d.deserialize_map(V)?)))
    }
}

/// A value stored as a JSON string: a fingerprint as 16 hex digits, a tier
/// or an alert state by its name ("P1", "firing"), a sample value as a
/// string that parses back to the same bits.
#[derive(Clone, Copy)]
struct Text<T>(T);

/// What [`Text`] needs: the string, and the value back from it.
trait TextForm: Sized {
    /// What the string must be, for errors.
    const EXPECTING: &'static str;
    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result;
    fn parse(text: &str) -> Option<Self>;
    /// A JSON number in its place: only sample values take one (hand-edited files).
    fn from_number(_: f64) -> Option<Self> {
        None
    }
}

impl TextForm for Fingerprint {
    const EXPECTING: &'static str = "a fingerprint as 16 hex digits";
    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
    fn parse(text: &str) -> Option<Self> {
        u64::from_str_radix(text, 16).ok().filter(|_| text.len() == 16).map(Fingerprint)
    }
}

impl TextForm for Severity {
    const EXPECTING: &'static str = "a tier P0, P1, P2 or P3";
    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl TextForm for AlertState {
    const EXPECTING: &'static str = "an alert state pending, firing or resolved";
    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
    fn parse(text: &str) -> Option<Self> {
        [AlertState::Pending, AlertState::Firing, AlertState::Resolved].into_iter().find(|s| s.as_str() == text)
    }
}

/// Shortest round-trip digits for finite values (JSON numbers are not
/// guaranteed to round-trip), "NaN", "StaleNaN", "+Inf", "-Inf" otherwise.
impl TextForm for f64 {
    const EXPECTING: &'static str = "a number or \"NaN\", \"StaleNaN\", \"+Inf\", \"-Inf\"";
    fn write(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let v = *self;
        if is_stale(v) {
            f.write_str("StaleNaN")
        } else if v.is_nan() {
            f.write_str("NaN")
        } else if v.is_infinite() {
            f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            write!(f, "{v:?}")
        }
    }
    fn parse(text: &str) -> Option<Self> {
        match text {
            "NaN" => Some(f64::NAN),
            "StaleNaN" => Some(STALE_NAN),
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            _ => text.parse().ok(),
        }
    }
    fn from_number(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl<T: TextForm> fmt::Display for Text<T> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.write(f)
    }
}

impl<T: TextForm> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, T: TextForm> Deserialize<'de> for Text<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: TextForm> Visitor<'_> for V<T> {
            type Value = Text<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<T>, E> {
                T::parse(v).map(Text).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text<T>, E> {
                T::from_number(v).map(Text).ok_or_else(|| E::invalid_type(de::Unexpected::Float(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text<T>, E> {
                T::from_number(v as f64).map(Text).ok_or_else(|| E::invalid_type(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text<T>, E> {
                T::from_number(v as f64).map(Text).ok_or_else(|| E::invalid_type(de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

type Fp = Text<Fingerprint>;
type Sev = Text<Severity>;

fn ms(t: Timestamp) -> i64 {
    t.as_millis()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[derive(Serialize, Deserialize)]
pub(super) struct AlertRecord<'a> {
    fingerprint: Fp,
    labels: LabelsJson<'a>,
    annotations: Cow<'a, crate::model::Annotations>,
    severity: Sev,
    state: Text<AlertState>,
    value: Text<f64>,
    active_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fired_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_since: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runbook: Option<Cow<'a, str>>,
}

impl<'a> AlertRecord<'a> {
    pub(super) fn from_alert(a: &'a Alert) -> Self {
        AlertRecord {
            fingerprint: Text(a.fingerprint),
            labels: LabelsJson(Cow::Borrowed(&a.labels)),
            annotations: Cow::Borrowed(&a.annotations),
            severity: Text(a.severity),
            state: Text(a.state),
            value: Text(a.value),
            active_at: ms(a.active_at),
            fired_at: a.fired_at.map(ms),
            resolved_at: a.resolved_at.map(ms),
            keep_firing_since: a.keep_firing_since.map(ms),
            runbook: a.runbook.as_deref().map(Cow::Borrowed),
        }
    }

    pub(super) fn into_alert(self) -> Alert {
        let mut alert = Alert::new(self.labels.0.into_owned(), self.severity.0, self.value.0, ts(self.active_at));
        // The stored fingerprint is the identity, not one recomputed: the
        // labels include the info labels the alert was made with (`role`,
        // `poll_error`), which are not part of it and are not stored apart,
        // so recomputing would make a restored alert another alert. The
        // store checks it against the row's key (`step::load`).
        alert.fingerprint = self.fingerprint.0;
        alert.annotations = self.annotations.into_owned();
        alert.state = self.state.0;
        alert.fired_at = self.fired_at.map(ts);
        alert.resolved_at = self.resolved_at.map(ts);
        alert.keep_firing_since = self.keep_firing_since.map(ts);
        alert.runbook = self.runbook.map(|r| (&*r).into());
        alert
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct AckRecord<'a> {
    by: Cow<'a, str>,
    comment: Cow<'a, str>,
    at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

impl<'a> AckRecord<'a> {
    pub(super) fn from_ack(a: &'a Ack) -> Self {
        AckRecord { by: Cow::Borrowed(&a.by), comment: Cow::Borrowed(&a.comment), at: ms(a.at), until: a.until.map(ms) }
    }

    pub(super) fn into_ack(self) -> Ack {
        Ack { by: self.by.into_owned(), comment: self.comment.into_owned(), at: ts(self.at), until: self.until.map(ts) }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct GroupRecord<'a> {
    route: u16,
    labels: LabelsJson<'a>,
    next_flush: i64,
    notified_firing: Vec<Fp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notified_tier: Option<Sev>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sent: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paged_since: Option<i64>,
    escalated: bool,
    // Always written (null when none): `record_ack` sets it in place.
    ack: Option<AckRecord<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_reason: Option<Reason>,
    /// Absent (0) in state written before message ids counted it.
    #[serde(default, skip_serializing_if = "is_zero")]
    told: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl<'a> GroupRecord<'a> {
    pub(super) fn from_group(g: &'a GroupState) -> Self {
        GroupRecord {
            route: g.key.route,
            labels: LabelsJson(Cow::Borrowed(&g.key.labels)),
            next_flush: ms(g.next_flush),
            notified_firing: g.notified_firing.iter().copied().map(Text).collect(),
            notified_tier: g.notified_tier.map(Text),
            last_sent: g.last_sent.map(ms),
            paged_since: g.paged_since.map(ms),
            escalated: g.escalated,
            ack: g.ack.as_ref().map(AckRecord::from_ack),
            last_reason: g.last_reason,
            told: g.told,
        }
    }

    pub(super) fn into_group(self) -> GroupState {
        GroupState {
            key: GroupKey { route: self.route, labels: self.labels.0.into_owned() },
            next_flush: ts(self.next_flush),
            notified_firing: self.notified_firing.into_iter().map(|f| f.0).collect(),
            notified_tier: self.notified_tier.map(|s| s.0),
            last_sent: self.last_sent.map(ts),
            paged_since: self.paged_since.map(ts),
            escalated: self.escalated,
            ack: self.ack.map(AckRecord::into_ack),
            last_reason: self.last_reason,
            told: self.told,
        }
    }
}

/// One matcher, kept as its parts (the text form does not round-trip every value).
#[derive(Serialize, Deserialize)]
struct MatcherRecord<'a> {
    name: Cow<'a, str>,
    op: Cow<'a, str>,
    value: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct SilenceRecord<'a> {
    matchers: Vec<MatcherRecord<'a>>,
    starts_at: i64,
    ends_at: i64,
    created_by: Cow<'a, str>,
    comment: Cow<'a, str>,
}

impl<'a> SilenceRecord<'a> {
    pub(super) fn from_silence(s: &'a Silence) -> Self {
        SilenceRecord {
            matchers: s
                .matchers
                .0
                .iter()
                .map(|m| MatcherRecord {
                    name: Cow::Borrowed(&m.name),
                    op: Cow::Borrowed(m.op.as_str()),
                    value: Cow::Borrowed(&m.value),
                })
                .collect(),
            starts_at: ms(s.starts_at),
            ends_at: ms(s.ends_at),
            created_by: Cow::Borrowed(&s.created_by),
            comment: Cow::Borrowed(&s.comment),
        }
    }

    pub(super) fn into_silence(self, id: String) -> Result<Silence, String> {
        let mut matchers = Vec::with_capacity(self.matchers.len());
        for m in self.matchers {
            let op = match &*m.op {
                "=" => MatchOp::Eq,
                "!=" => MatchOp::Ne,
                "=~" => MatchOp::Re,
                "!~" => MatchOp::NotRe,
                other => return Err(format!("unknown matcher operator {other:?}")),
            };
            matchers.push(Matcher::new(m.name, op, m.value).map_err(|e| e.to_string())?);
        }
        Ok(Silence {
            id,
            matchers: Matchers(matchers),
            starts_at: ts(self.starts_at),
            ends_at: ts(self.ends_at),
            created_by: self.created_by.into_owned(),
            comment: self.comment.into_owned(),
        })
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct MessageRecord<'a> {
    at: i64,
    group: LabelsJson<'a>,
    group_id: Cow<'a, str>,
    tier: Sev,
    channels: Cow<'a, [String]>,
    firing: Vec<AlertRecord<'a>>,
    new: Vec<Fp>,
    resolved: Vec<AlertRecord<'a>>,
    // Absent in messages written before reasons were recorded.
    #[serde(default)]
    reason: Option<Reason>,
    escalation: bool,
    digest: bool,
}

impl<'a> MessageRecord<'a> {
    pub(super) fn from_message(m: &'a Message) -> Self {
        MessageRecord {
            at: ms(m.at),
            group: LabelsJson(Cow::Borrowed(&m.group)),
            group_id: Cow::Borrowed(&m.group_id),
            tier: Text(m.tier),
            channels: Cow::Borrowed(&m.channels),
            firing: m.firing.iter().map(AlertRecord::from_alert).collect(),
            new: m.new.iter().copied().map(Text).collect(),
            resolved: m.resolved.iter().map(AlertRecord::from_alert).collect(),
            reason: Some(m.reason),
            escalation: m.escalation,
            digest: m.digest,
        }
    }

    pub(super) fn into_message(self, id: String) -> Message {
        Message {
            id,
            at: ts(self.at),
            group: self.group.0.into_owned(),
            group_id: self.group_id.into_owned(),
            tier: self.tier.0,
            channels: self.channels.into_owned(),
            firing: self.firing.into_iter().map(AlertRecord::into_alert).collect(),
            new: self.new.into_iter().map(|f| f.0).collect(),
            resolved: self.resolved.into_iter().map(AlertRecord::into_alert).collect(),
            reason: self.reason.unwrap_or(match (self.escalation, self.digest) {
                (true, _) => Reason::Escalation,
                (_, true) => Reason::Digest,
                _ => Reason::NewAlerts,
            }),
            escalation: self.escalation,
            digest: self.digest,
            test: false,
        }
    }
}

/// The bodies the shared state in ZooKeeper stores (`crate::ha::shared`): the same JSON records as the rows here, so
/// both stores read and write one format. Errors are the reason, as text.
pub(crate) mod shared {
    use super::*;
    use crate::ha::requests::{Request, Write};
    use crate::state::OutboxEntry;

    fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }

    fn from_slice<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, String> {
        serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))
    }

    pub(crate) fn group(g: &GroupState) -> Result<Vec<u8>, String> {
        to_vec(&GroupRecord::from_group(g))
    }

    pub(crate) fn read_group(body: &[u8]) -> Result<GroupState, String> {
        from_slice::<GroupRecord>(body).map(GroupRecord::into_group)
    }

    pub(crate) fn silence(s: &Silence) -> Result<Vec<u8>, String> {
        to_vec(&SilenceRecord::from_silence(s))
    }

    pub(crate) fn read_silence(id: String, body: &[u8]) -> Result<Silence, String> {
        from_slice::<SilenceRecord>(body)?.into_silence(id)
    }

    /// A group's acknowledgement alone (`state/acks/<group id>`: what a standby reads to show acks).
    pub(crate) fn ack(a: &Ack) -> Result<Vec<u8>, String> {
        to_vec(&AckRecord::from_ack(a))
    }

    pub(crate) fn read_ack(body: &[u8]) -> Result<Ack, String> {
        from_slice::<AckRecord>(body).map(AckRecord::into_ack)
    }

    /// An API write a standby sends to the active replica (`crate::ha::requests`).
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum WriteRecord<'a> {
        AddSilence { id: Cow<'a, str>, silence: SilenceRecord<'a> },
        ExpireSilence { id: Cow<'a, str>, at: i64 },
        Ack { group_ids: Cow<'a, [String]>, ack: AckRecord<'a> },
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RequestRecord<'a> {
        from: Cow<'a, str>,
        write: WriteRecord<'a>,
    }

    pub(crate) fn request(r: &Request) -> Result<Vec<u8>, String> {
        let write = match &r.write {
            Write::AddSilence(s) => {
                WriteRecord::AddSilence { id: Cow::Borrowed(&s.id), silence: SilenceRecord::from_silence(s) }
            }
            Write::ExpireSilence { id, at } => WriteRecord::ExpireSilence { id: Cow::Borrowed(id), at: ms(*at) },
            Write::Ack { group_ids, ack } => {
                WriteRecord::Ack { group_ids: Cow::Borrowed(group_ids), ack: AckRecord::from_ack(ack) }
            }
        };
        to_vec(&RequestRecord { from: Cow::Borrowed(&r.from), write })
    }

    pub(crate) fn read_request(body: &[u8]) -> Result<Request, String> {
        let r: RequestRecord = from_slice(body)?;
        let write = match r.write {
            WriteRecord::AddSilence { id, silence } => Write::AddSilence(silence.into_silence(id.into_owned())?),
            WriteRecord::ExpireSilence { id, at } => Write::ExpireSilence { id: id.into_owned(), at: ts(at) },
            WriteRecord::Ack { group_ids, ack } => {
                Write::Ack { group_ids: group_ids.into_owned(), ack: ack.into_ack() }
            }
        };
        Ok(Request { from: r.from.into_owned(), write })
    }

    /// One pending delivery: the message (with its id, the idempotency key), the channel, attempts and time.
    #[derive(Serialize, Deserialize)]
    struct OutboxRecord<'a> {
        id: Cow<'a, str>,
        channel: Cow<'a, str>,
        attempts: u32,
        created_at: i64,
        message: MessageRecord<'a>,
    }

    pub(crate) fn outbox(e: &OutboxEntry) -> Result<Vec<u8>, String> {
        to_vec(&OutboxRecord {
            id: Cow::Borrowed(&e.message.id),
            channel: Cow::Borrowed(&e.channel),
            attempts: e.attempts,
            created_at: ms(e.created_at),
            message: MessageRecord::from_message(&e.message),
        })
    }

    pub(crate) fn read_outbox(body: &[u8]) -> Result<OutboxEntry, String> {
        let r: OutboxRecord = from_slice(body)?;
        Ok(OutboxEntry {
            message: r.message.into_message(r.id.into_owned()),
            channel: r.channel.into_owned(),
            attempts: r.attempts,
            created_at: ts(r.created_at),
        })
    }

    pub(crate) fn maintenance(windows: &[(String, Timestamp, Timestamp)]) -> Result<Vec<u8>, String> {
        to_vec(&windows.iter().map(|(name, opened, closes)| (name, ms(*opened), ms(*closes))).collect::<Vec<_>>())
    }

    pub(crate) fn read_maintenance(body: &[u8]) -> Result<Vec<(String, Timestamp, Timestamp)>, String> {
        let rows: Vec<(String, i64, i64)> = from_slice(body)?;
        Ok(rows.into_iter().map(|(name, opened, closes)| (name, ts(opened), ts(closes))).collect())
    }
}
