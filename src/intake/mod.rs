//! Alerts from outside, beside the rules' own: Prometheus (or anything that
//! speaks the Alertmanager API v2) posts them to `POST /api/v2/alerts`. The
//! API's threads parse and check each post into an [`IntakeBatch`] (tier
//! from the `severity` label, runbook from the annotations); the runner
//! keeps them in [`ExternalAlerts`], where `endsAt` or the resolve timeout
//! resolves them, and hands them to the pipeline with the rules' alerts.

mod queue;

pub use queue::{Closed, IntakeReceiver, IntakeSender, MAX_QUEUED_ALERTS, queue};

use crate::model::{Alert, AlertState, Annotations, Fingerprint, Labels, Severity, Timestamp};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A post's body may be this large: 10,000 alerts as Prometheus sends them
/// are ~5 MB.
pub const MAX_BODY: usize = 64 << 20;
/// At most this many alerts in one post.
pub const MAX_ALERTS_PER_POST: usize = 100_000;
/// Per alert: labels and annotations each at most this many.
pub const MAX_PAIRS: usize = 64;
/// A label or annotation name at most this long (bytes).
pub const MAX_NAME: usize = 256;
/// A label value at most this long (bytes); an annotation value at most
/// [`MAX_ANNOTATION`].
pub const MAX_LABEL_VALUE: usize = 4096;
pub const MAX_ANNOTATION: usize = 64 << 10;

/// At most this many posted alerts held (firing or recently resolved); new
/// ones past it are refused, counted and logged.
pub const MAX_HELD: usize = 250_000;

/// The annotation that marks an alert posted without a runbook (with
/// `runbooks: mark`), set to `"true"`: a short value, as every alert a
/// Prometheus without runbook links posts carries it (the page it links
/// to says what it means).
pub const RUNBOOK_MISSING: &str = "runbook_missing";

/// How posted alerts become zkalert alerts (the `intake` section).
#[derive(Debug, Clone, PartialEq)]
pub struct IntakePolicy {
    /// A firing alert posted without `endsAt` resolves this long after it
    /// was last posted (Alertmanager's `resolve_timeout`).
    pub resolve_timeout: Duration,
    /// `severity` label value (lower case) → tier. `P0`–`P3` are always
    /// themselves.
    pub severities: BTreeMap<String, Severity>,
    /// The tier of an alert whose `severity` is missing or not in
    /// `severities`.
    pub default_tier: Severity,
    /// Alerts without a `runbook_url` / `runbook` annotation.
    pub missing_runbook: MissingRunbook,
}

/// What to do with a posted alert that names no runbook.
#[derive(Debug, Clone, PartialEq)]
pub enum MissingRunbook {
    /// Take it as it is (no runbook link).
    Accept,
    /// Give it this runbook (a URL or a path under the runbook base URL)
    /// and the [`RUNBOOK_MISSING`] annotation.
    /// Shared by every alert marked: one string, not one per alert.
    Mark { runbook: Arc<str> },
}

/// The runbook posted alerts without one get by default.
pub const DEFAULT_RUNBOOK: &str = "zkalert/external-alert-without-runbook";

impl Default for IntakePolicy {
    fn default() -> Self {
        let severities =
            [("page", Severity::P0), ("critical", Severity::P1), ("warning", Severity::P2), ("info", Severity::P3)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        Self {
            resolve_timeout: Duration::from_secs(300),
            severities,
            default_tier: Severity::P2,
            missing_runbook: MissingRunbook::Mark { runbook: DEFAULT_RUNBOOK.into() },
        }
    }
}

impl IntakePolicy {
    /// The tier of a `severity` label value, and whether it was mapped
    /// (`false`: missing or unknown, so [`Self::default_tier`]).
    pub fn tier_of(&self, severity: Option<&str>) -> (Severity, bool) {
        let Some(s) = severity else { return (self.default_tier, false) };
        if let Ok(tier) = s.parse::<Severity>() {
            return (tier, true);
        }
        match self.severities.get(&s.to_ascii_lowercase()) {
            Some(tier) => (*tier, true),
            None => (self.default_tier, false),
        }
    }
}

/// One alert as Prometheus posts it (`postableAlert` of Alertmanager's
/// OpenAPI). Unknown fields are ignored, as Alertmanager does.
/// Strings borrow from the post where they can (no escapes in them): only
/// what the alert keeps is copied, once.
#[derive(Debug, Deserialize)]
struct PostableAlert<'a> {
    #[serde(default, borrow)]
    labels: Option<Pairs<'a>>,
    #[serde(default, borrow)]
    annotations: Option<Pairs<'a>>,
    #[serde(default, borrow, rename = "startsAt")]
    starts_at: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "endsAt")]
    ends_at: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "generatorURL")]
    generator_url: Option<Cow<'a, str>>,
}

/// A JSON object of strings as its pairs in the order posted (a repeated
/// name's last value counts, as in a map): read without building a map.
#[derive(Debug, Default)]
struct Pairs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Pairs<'a> {
    /// The value of `name`: its last, if repeated.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| &**v)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Pairs<'a>, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(8).min(MAX_PAIRS));
                while let Some((k, v)) = map.next_entry::<Borrowed<'a>, Borrowed<'a>>()? {
                    // Past the bound, the rest is read but not kept: the
                    // check reports the count, and memory stays bounded.
                    if pairs.len() <= MAX_PAIRS {
                        pairs.push((k.0, v.0));
                    }
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A string borrowed from the post unless it had escapes.
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
        Text::deserialize(deserializer).map(|t| Borrowed(t.0))
    }
}

/// A post's array of alerts, refused past [`MAX_ALERTS_PER_POST`] as it is
/// read (not after a whole array of tiny alerts was built).
struct Posted<T>(Vec<T>);

/// The message a [`Posted`] array past its bound fails with.
const TOO_MANY: &str = "too many alerts";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Posted<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Posted<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON array of alerts")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Posted<T>, S::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(1024));
                while let Some(item) = seq.next_element()? {
                    if items.len() == MAX_ALERTS_PER_POST {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                    items.push(item);
                }
                Ok(Posted(items))
            }
        }
        deserializer.deserialize_seq(Visitor(std::marker::PhantomData))
    }
}

/// One posted alert, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeAlert {
    /// Firing, with its tier, labels (the posted `severity` kept as it
    /// is), annotations and runbook; `active_at` is `startsAt` (or the
    /// time it was received). Made shared where it was parsed: the runner
    /// keeps this very allocation, and a post's batch is a list of
    /// pointers, not of alerts moved once more.
    pub alert: Arc<Alert>,
    /// When it resolves unless posted again: `endsAt`, else the time it
    /// was received plus the resolve timeout.
    pub ends_at: Timestamp,
}

/// The alerts of one post, checked on the API's thread, for the runner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntakeBatch {
    pub alerts: Vec<IntakeAlert>,
}

/// What a post got: its alerts that were taken, and a message per alert
/// that was not (by index, with the field) or was taken with a default.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    pub batch: IntakeBatch,
    /// Alerts refused: `alerts[3].labels: ...`. A post with any is a 400,
    /// the others still taken (as Alertmanager does).
    pub refused: Vec<String>,
    /// Alerts taken with the default tier (severity missing or unknown).
    pub defaulted: Vec<String>,
}

/// Why a whole post was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IntakeError {
    #[error("the body is not a JSON array of alerts: {0}")]
    Json(String),
    #[error("more than {MAX_ALERTS_PER_POST} alerts in one post")]
    TooMany,
}

/// Parses and checks one post's body at `now`.
pub fn check_post(body: &[u8], policy: &IntakePolicy, now: Timestamp) -> Result<Checked, IntakeError> {
    // One pass when the post is well formed (as a Prometheus' always is),
    // each alert checked as it is read: no list of parsed alerts in
    // between. Otherwise each alert is read again from its own text, so
    // that one bad alert is refused by its index and the others are taken.
    let mut checked = Checked::default();
    let mut one_pass = serde_json::Deserializer::from_slice(body);
    let each = CheckEach { policy, now, out: &mut checked };
    if serde::de::DeserializeSeed::deserialize(each, &mut one_pass).and_then(|()| one_pass.end()).is_ok() {
        return Ok(checked);
    }
    let raw: Posted<&serde_json::value::RawValue> = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().starts_with(TOO_MANY) { IntakeError::TooMany } else { IntakeError::Json(e.to_string()) }
    })?;
    let mut checked = Checked::default();
    for (i, raw) in raw.0.into_iter().enumerate() {
        let parsed = serde_json::from_str::<PostableAlert>(raw.get()).map_err(|e| format!("alerts[{i}]: {e}"));
        checked.take(i, parsed, policy, now);
    }
    Ok(checked)
}

impl Checked {
    /// Checks the `i`th alert of a post, read or not, and keeps what came of it.
    fn take(&mut self, i: usize, parsed: Result<PostableAlert, String>, policy: &IntakePolicy, now: Timestamp) {
        match parsed.and_then(|p| intake_alert(p, policy, now).map_err(|e| format!("alerts[{i}].{e}"))) {
            Ok((alert, unmapped)) => {
                if let Some(severity) = unmapped {
                    self.defaulted.push(format!(
                        "alerts[{i}]: severity {severity} is not mapped: taken as {}",
                        policy.default_tier
                    ));
                }
                self.batch.alerts.push(alert);
            }
            Err(e) => self.refused.push(e),
        }
    }
}

/// Reads a post's array checking each alert as it is read; fails on the
/// first alert that is not even an alert's shape, and past
/// [`MAX_ALERTS_PER_POST`].
struct CheckEach<'a> {
    policy: &'a IntakePolicy,
    now: Timestamp,
    out: &'a mut Checked,
}

impl<'de> serde::de::DeserializeSeed<'de> for CheckEach<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CheckEach<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of alerts")
    }
    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let mut i = 0;
        while let Some(alert) = seq.next_element::<PostableAlert>()? {
            if i == MAX_ALERTS_PER_POST {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            self.out.take(i, Ok(alert), self.policy, self.now);
            i += 1;
        }
        Ok(())
    }
}

/// One alert checked, and its severity as posted if it was not mapped
/// (quoted, or `(none)`). Errors name the field (`labels: ...`).
fn intake_alert(
    p: PostableAlert,
    policy: &IntakePolicy,
    now: Timestamp,
) -> Result<(IntakeAlert, Option<String>), String> {
    let labels = p.labels.unwrap_or_default();
    if labels.0.is_empty() {
        return Err("labels: at least one label is needed (alertname)".into());
    }
    check_pairs("labels", &labels, MAX_LABEL_VALUE, true)?;
    let annotations = p.annotations.unwrap_or_default();
    check_pairs("annotations", &annotations, MAX_ANNOTATION, false)?;
    let time = |field: &str, v: Option<Cow<str>>| -> Result<Option<Timestamp>, String> {
        let Some(v) = v.filter(|v| !v.is_empty()) else { return Ok(None) };
        // Go's zero time: what a client that leaves the field unset sends.
        if v.starts_with("0001-01-01") {
            return Ok(None);
        }
        chrono::DateTime::parse_from_rfc3339(&v)
            .map(|t| Some(Timestamp::from_millis(t.timestamp_millis())))
            .map_err(|e| format!("{field}: {v:?} is not an RFC 3339 time: {e}"))
    };
    let starts_at = time("startsAt", p.starts_at)?;
    let ends_at = time("endsAt", p.ends_at)?;
    if let (Some(s), Some(e)) = (starts_at, ends_at)
        && e < s
    {
        return Err("endsAt: before startsAt".into());
    }
    if let Some(g) = &p.generator_url
        && g.len() > MAX_ANNOTATION
    {
        return Err(format!("generatorURL: longer than {MAX_ANNOTATION} bytes"));
    }
    let posted_severity = labels.get(crate::model::SEVERITY);
    let (tier, mapped) = policy.tier_of(posted_severity);
    let unmapped = (!mapped).then(|| posted_severity.map_or("(none)".into(), |s| format!("{s:?}")));
    let mut identity = Labels::from_pairs(labels.iter());
    if identity.get(crate::model::SEVERITY).is_none() {
        // As the rules' alerts: the label is the tier unless one was given.
        identity.insert(crate::model::SEVERITY, tier.as_str());
    }
    let mut alert = Alert::new(identity, tier, 1.0, starts_at.unwrap_or(now).min(now));
    alert.state = AlertState::Firing;
    alert.fired_at = Some(now);
    let runbook = annotations.get("runbook_url").or_else(|| annotations.get("runbook")).filter(|r| !r.is_empty());
    alert.runbook = runbook.map(Arc::from);
    let generator_url = p.generator_url.filter(|g| !g.is_empty());
    let mut runbook_missing = None;
    if alert.runbook.is_none()
        && let MissingRunbook::Mark { runbook } = &policy.missing_runbook
    {
        alert.runbook = Some(runbook.clone());
        runbook_missing = Some((RUNBOOK_MISSING, "true"));
    }
    let posted = annotations.iter();
    let added = generator_url.as_deref().map(|g| ("generator_url", g)).into_iter().chain(runbook_missing);
    alert.annotations = Annotations::from_pairs(posted.chain(added));
    let ends_at = ends_at.unwrap_or(now + policy.resolve_timeout);
    Ok((IntakeAlert { alert: Arc::new(alert), ends_at }, unmapped))
}

fn check_pairs(field: &str, pairs: &Pairs, max_value: usize, names_as_labels: bool) -> Result<(), String> {
    if pairs.0.len() > MAX_PAIRS {
        return Err(format!("{field}: more than {MAX_PAIRS} entries"));
    }
    for (k, v) in pairs.iter() {
        if k.len() > MAX_NAME {
            return Err(format!("{field}: a name longer than {MAX_NAME} bytes"));
        }
        if names_as_labels && !is_label_name(k) {
            return Err(format!("{field}: {k:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
        }
        if v.len() > max_value {
            return Err(format!("{field}: {k} is longer than {max_value} bytes"));
        }
    }
    Ok(())
}

/// Prometheus' label names: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The external alerts the runner holds: firing until `endsAt` or the
/// resolve timeout, then resolved (told by the pipeline) and kept for
/// [`crate::rule::tracker::RESOLVED_RETENTION`].
#[derive(Debug)]
pub struct ExternalAlerts {
    alerts: FxHashMap<Fingerprint, Held>,
    /// The earliest time [`Self::expire`] has something to do (an end, a
    /// resolved alert to forget); `None`: nothing held.
    next_change: Option<Timestamp>,
    /// New alerts refused because [`MAX_HELD`] were held, since the start.
    pub dropped: u64,
    /// For alerts restored after a restart (the config's, set at start
    /// and at each reload).
    pub resolve_timeout: Duration,
    /// Alerts whose persisted part (lifecycle, tier) changed, or that were
    /// forgotten, since the state file last took them
    /// ([`Self::take_unwritten`]): a step writes what changed, it does not
    /// compare every alert.
    unwritten: FxHashSet<Fingerprint>,
}

impl Default for ExternalAlerts {
    fn default() -> Self {
        Self {
            alerts: FxHashMap::default(),
            next_change: None,
            dropped: 0,
            resolve_timeout: IntakePolicy::default().resolve_timeout,
            unwritten: FxHashSet::default(),
        }
    }
}

#[derive(Debug, Clone)]
struct Held {
    /// Shared with the API's snapshot (a change copies it if that still
    /// shows it).
    alert: Arc<Alert>,
    ends_at: Timestamp,
}

impl ExternalAlerts {
    /// Takes a post's alerts at `now`: new ones fire, known ones are
    /// refreshed (tier, labels, annotations, end), ones whose `endsAt` has
    /// passed resolve. Returns whether anything the pipeline tells changed.
    pub fn receive(&mut self, batch: IntakeBatch, now: Timestamp) -> bool {
        let mut changed = false;
        for IntakeAlert { alert, ends_at } in batch.alerts {
            let fp = alert.fingerprint;
            let ended = ends_at <= now;
            let full = self.alerts.len() >= MAX_HELD;
            match self.alerts.get_mut(&fp) {
                Some(held) if held.alert.state == AlertState::Firing => {
                    let retiered = held.alert.severity != alert.severity;
                    changed |= retiered;
                    if retiered || ended {
                        self.unwritten.insert(fp);
                    }
                    let mut alert = alert;
                    let refreshed = Arc::make_mut(&mut alert); // the only holder: not copied
                    (refreshed.active_at, refreshed.fired_at) = (held.alert.active_at, held.alert.fired_at);
                    if ended {
                        resolve(refreshed, now);
                        changed = true;
                    }
                    held.alert = alert;
                    held.ends_at = ends_at;
                }
                // A resolution of an alert not firing here: nothing to tell.
                _ if ended => continue,
                None if full => {
                    self.dropped += 1;
                    continue;
                }
                _ => {
                    self.alerts.insert(fp, Held { alert, ends_at });
                    self.unwritten.insert(fp);
                    changed = true;
                }
            }
            let next = if ended { now + crate::rule::tracker::RESOLVED_RETENTION } else { ends_at };
            self.next_change = Some(self.next_change.map_or(next, |t| t.min(next)));
        }
        changed
    }

    /// Resolves the alerts whose end has come and forgets those resolved
    /// long enough ago. Returns whether any resolved.
    pub fn expire(&mut self, now: Timestamp) -> bool {
        if self.next_change.is_none_or(|t| now < t) {
            return false;
        }
        let retention = crate::rule::tracker::RESOLVED_RETENTION;
        let mut changed = false;
        let mut next: Option<Timestamp> = None;
        let unwritten = &mut self.unwritten;
        self.alerts.retain(|fp, held| {
            if held.alert.state != AlertState::Resolved && held.ends_at <= now {
                resolve(Arc::make_mut(&mut held.alert), now);
                unwritten.insert(*fp);
                changed = true;
            }
            let at = match held.alert.state {
                AlertState::Resolved => held.alert.resolved_at.unwrap_or(now) + retention,
                _ => held.ends_at,
            };
            let keep = at > now || held.alert.state != AlertState::Resolved;
            if keep {
                next = Some(next.map_or(at, |t| t.min(at)));
            } else {
                unwritten.insert(*fp);
            }
            keep
        });
        self.next_change = next;
        changed
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().map(|h| h.alert.as_ref())
    }

    /// The alerts as the API's snapshot shares them.
    pub fn shared(&self) -> impl Iterator<Item = &Arc<Alert>> {
        self.alerts.values().map(|h| &h.alert)
    }

    pub fn contains(&self, fp: &Fingerprint) -> bool {
        self.alerts.contains_key(fp)
    }

    /// The alerts changed or forgotten since the last call, each as it is
    /// now (`None`: forgotten). A write that fails hands them back
    /// ([`Self::unwritten_again`]).
    pub fn take_unwritten(&mut self) -> Vec<(Fingerprint, Option<Arc<Alert>>)> {
        let alerts = &self.alerts;
        self.unwritten.drain().map(|fp| (fp, alerts.get(&fp).map(|h| h.alert.clone()))).collect()
    }

    /// Puts back what [`Self::take_unwritten`] gave, for the next write.
    pub fn unwritten_again(&mut self, fingerprints: impl IntoIterator<Item = Fingerprint>) {
        self.unwritten.extend(fingerprints);
    }

    pub fn firing_count(&self) -> usize {
        self.alerts.values().filter(|h| h.alert.state == AlertState::Firing).count()
    }

    /// Puts back alerts persisted before a restart: they resolve after the
    /// resolve timeout unless posted again (Prometheus re-sends firing
    /// alerts every minute).
    pub fn restore(&mut self, alerts: impl IntoIterator<Item = Alert>, now: Timestamp) {
        for alert in alerts {
            let resolved_at = alert.resolved_at.filter(|_| alert.state == AlertState::Resolved);
            let next = resolved_at.map_or(now + self.resolve_timeout, |t| t + crate::rule::tracker::RESOLVED_RETENTION);
            self.next_change = Some(self.next_change.map_or(next, |t| t.min(next)));
            let ends_at = now + self.resolve_timeout;
            self.alerts.insert(alert.fingerprint, Held { alert: Arc::new(alert), ends_at });
        }
    }
}

fn resolve(alert: &mut Alert, now: Timestamp) {
    alert.state = AlertState::Resolved;
    alert.resolved_at = Some(now);
}

#[cfg(test)]
mod tests;
