//! The JSON the API speaks: request bodies (shared with `zkalert silence
//! add` / `zkalert ack`) and the shapes of its answers. Documented in
//! `docs/api.md`; times are RFC 3339 in UTC, tiers `P0`…`P3`.

use super::{AlertView, GroupView, StatusView};
use crate::model::{AlertState, Labels, Severity, Timestamp};
use crate::pipeline::{Ack, Silence, SilenceState};
use serde::{Deserialize, Serialize, Serializer};

/// `POST /api/v1/silences`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// `{a="b", c=~"d"}` or amtool's `a=b c=~d`.
    pub matchers: String,
    /// RFC 3339; default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// RFC 3339; exactly one of `ends_at` and `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// From `starts_at`: `2h`, `30m`, `1d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/acks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Exactly one of `group_id` and `matchers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matchers: Option<String>,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub comment: String,
    /// RFC 3339; at most one of `until` and `duration`; neither: until the
    /// group resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// Name/value pairs as a JSON object, in their order.
pub(super) struct Pairs<'a>(pub &'a crate::model::Annotations);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

#[derive(Serialize)]
pub(super) struct AckJson<'a> {
    pub by: &'a str,
    pub comment: &'a str,
    pub at: Timestamp,
    pub until: Option<Timestamp>,
}

impl<'a> AckJson<'a> {
    pub fn of(ack: Option<&'a Ack>) -> Option<Self> {
        ack.map(|a| AckJson { by: &a.by, comment: &a.comment, at: a.at, until: a.until })
    }
}

#[derive(Serialize)]
pub(super) struct AlertJson<'a> {
    pub labels: &'a Labels,
    pub annotations: Pairs<'a>,
    pub tier: Severity,
    pub state: AlertState,
    /// `null` when not a finite number.
    pub value: Option<f64>,
    pub active_at: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// Set while only `keep_firing_for` holds it: its condition has cleared.
    pub keep_firing_since: Option<Timestamp>,
    pub runbook: Option<&'a str>,
    pub fingerprint: String,
    pub group_id: &'a str,
    pub silenced_by: &'a [String],
    pub inhibited: bool,
    pub maintenance: &'a [String],
    /// Silenced, inhibited or in maintenance (acks are apart: `acked`).
    pub muted: bool,
    pub acked: Option<AckJson<'a>>,
}

impl<'a> AlertJson<'a> {
    pub fn of(v: &'a AlertView) -> Self {
        let a = &v.alert;
        AlertJson {
            labels: &a.labels,
            annotations: Pairs(&a.annotations),
            tier: a.severity,
            state: a.state,
            value: a.value.is_finite().then_some(a.value),
            active_at: a.active_at,
            fired_at: a.fired_at,
            resolved_at: a.resolved_at,
            keep_firing_since: a.keep_firing_since,
            runbook: a.runbook.as_deref(),
            fingerprint: a.fingerprint.to_string(),
            group_id: &v.group_id,
            silenced_by: &v.mute.silenced_by,
            inhibited: v.mute.inhibited,
            maintenance: &v.mute.maintenance,
            muted: v.mute.is_muted(),
            acked: AckJson::of(v.ack.as_deref()),
        }
    }
}

#[derive(Serialize)]
pub(super) struct GroupJson<'a> {
    pub id: &'a str,
    pub labels: &'a Labels,
    pub tier: Option<Severity>,
    pub ack: Option<AckJson<'a>>,
    pub last_sent: Option<Timestamp>,
    pub escalated: bool,
    pub last_reason: Option<crate::pipeline::Reason>,
    pub alerts: usize,
}

impl<'a> GroupJson<'a> {
    pub fn of(g: &'a GroupView) -> Self {
        GroupJson {
            id: &g.id,
            labels: &g.labels,
            tier: g.tier,
            ack: AckJson::of(g.ack.as_ref()),
            last_sent: g.last_sent,
            escalated: g.escalated,
            last_reason: g.last_reason,
            alerts: g.alerts,
        }
    }
}

#[derive(Serialize)]
pub(super) struct SilenceJson<'a> {
    pub id: &'a str,
    pub matchers: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: &'a str,
    pub comment: &'a str,
    pub state: SilenceState,
}

impl<'a> SilenceJson<'a> {
    /// With its state at `at`.
    pub fn of(s: &'a Silence, at: Timestamp) -> Self {
        SilenceJson {
            id: &s.id,
            matchers: s.matchers.to_string(),
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            created_by: &s.created_by,
            comment: &s.comment,
            state: s.state(at),
        }
    }
}

#[derive(Serialize)]
pub(super) struct RuleErrorJson<'a> {
    pub rule: &'a str,
    pub error: &'a str,
}

#[derive(Serialize)]
pub(super) struct StatusJson<'a> {
    pub version: &'a str,
    pub started_at: Timestamp,
    pub config_path: Option<&'a str>,
    pub rules: usize,
    pub rule_errors: Vec<RuleErrorJson<'a>>,
    pub sources: usize,
    pub last_evaluation: Option<Timestamp>,
    pub outbox_pending: usize,
    pub notifiers: &'a [String],
    pub ready: bool,
    /// Why the state file cannot be written, while it cannot.
    pub state_write_error: Option<&'a str>,
    pub state_write_failing_since: Option<Timestamp>,
    /// Changes held in memory until the state file can be written.
    pub state_unwritten: usize,
    /// The last reload's outcome (`successful`, `last_success_at`,
    /// `last_attempt_at`, `problems`).
    pub config_reload: &'a crate::runner::ReloadStatus,
    /// The heartbeat (dead man's switch): `null` when not configured.
    pub heartbeat: Option<&'a crate::runner::heartbeat::HeartbeatStatus>,
    /// With `ha:` configured: `name`, `role`, the `active` replica (`name`,
    /// `advertise_url`) and the coordination `session` state; else `null`.
    pub replica: Option<&'a crate::runner::ReplicaStatus>,
    pub at: Timestamp,
}

impl<'a> StatusJson<'a> {
    pub fn of(s: &'a StatusView, ready: bool, at: Timestamp) -> Self {
        StatusJson {
            version: &s.version,
            started_at: s.started_at,
            config_path: s.config_path.as_deref(),
            rules: s.rules,
            rule_errors: s.rule_errors.iter().map(|(rule, error)| RuleErrorJson { rule, error }).collect(),
            sources: s.sources,
            last_evaluation: s.last_evaluation,
            outbox_pending: s.outbox_pending,
            notifiers: &s.notifiers,
            ready,
            state_write_error: s.state_write_failure.as_ref().map(|f| f.error.as_str()),
            state_write_failing_since: s.state_write_failure.as_ref().map(|f| f.since),
            state_unwritten: s.state_unwritten,
            config_reload: &s.reload,
            heartbeat: None,
            replica: s.replica.as_ref(),
            at,
        }
    }
}

/// `GET /api/v1/alerts`.
#[derive(Serialize)]
pub(super) struct AlertsReply<'a> {
    pub alerts: Vec<AlertJson<'a>>,
    pub at: Timestamp,
}

/// `GET /api/v1/groups`.
#[derive(Serialize)]
pub(super) struct GroupsReply<'a> {
    pub groups: Vec<GroupJson<'a>>,
    pub at: Timestamp,
}

/// `GET /api/v1/silences`.
#[derive(Serialize)]
pub(super) struct SilencesReply<'a> {
    pub silences: Vec<SilenceJson<'a>>,
    pub at: Timestamp,
}

/// Order of states in listings: what needs attention first.
pub(super) fn alert_state_rank(s: AlertState) -> u8 {
    match s {
        AlertState::Firing => 0,
        AlertState::Pending => 1,
        AlertState::Resolved => 2,
    }
}

pub(super) fn silence_state_rank(s: SilenceState) -> u8 {
    match s {
        SilenceState::Active => 0,
        SilenceState::Pending => 1,
        SilenceState::Expired => 2,
    }
}
