//! The runner's side of sending: hands written deliveries to the
//! [`Deliverer`], records each report in the state file, and when a
//! delivery gives up, falls over to the tier's next working channel and
//! raises the `NotifierFailing` meta-alert until the channel delivers again.

use super::Runner;
use crate::clock::SystemClock;
use crate::model::{Alert, AlertState, Labels, Severity, Timestamp};
use crate::notify::Delivery;
use crate::notify::delivery::{Channel, Deliverer, DeliveryPolicy, Report};
use crate::pipeline::Message;
use crate::state::{DeliveryMark, DeliveryOutcome};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The meta-alert's name.
pub const NOTIFIER_FAILING: &str = "NotifierFailing";

/// The deliverer for `channels`, giving up on a tier's deliveries after
/// its `deadline` (P0..P3).
pub(super) fn deliverer(
    channels: Vec<Channel>,
    deadline: [Duration; 4],
) -> (Deliverer, mpsc::UnboundedReceiver<Report>) {
    let channels: HashMap<String, Channel> = channels.into_iter().map(|c| (c.name.clone(), c)).collect();
    Deliverer::new(channels, DeliveryPolicy { deadline, ..DeliveryPolicy::default() }, Arc::new(SystemClock))
}

/// One attempt of one delivery, for the state file.
fn mark(
    message_id: String,
    channel: String,
    at: Timestamp,
    error: Option<String>,
    outcome: DeliveryOutcome,
) -> DeliveryMark {
    DeliveryMark { message_id, channel, attempts: 1, last_attempt_at: at, last_error: error, outcome }
}

/// Channels that gave up a delivery, as `NotifierFailing` alerts.
#[derive(Debug, Default)]
pub struct FailingChannels {
    alerts: BTreeMap<String, Alert>,
}

impl FailingChannels {
    pub fn is_failing(&self, channel: &str) -> bool {
        self.alerts.get(channel).is_some_and(|a| a.state == AlertState::Firing)
    }

    fn fail(&mut self, channel: &str, error: &str, now: Timestamp) {
        let labels = Labels::from_pairs([
            ("alertname", NOTIFIER_FAILING),
            ("notifier", channel),
            ("severity", Severity::P1.as_str()),
        ]);
        let summary = format!("Notifier {channel} cannot deliver: {error}");
        let alert = (self.alerts.entry(channel.to_string()))
            .or_insert_with(|| Alert::meta(labels, Severity::P1, "zkalert/notifier-failing", now));
        if alert.state == AlertState::Resolved {
            alert.state = AlertState::Firing;
            alert.active_at = now;
            alert.fired_at = Some(now);
            alert.resolved_at = None;
        }
        alert.annotations = crate::model::Annotations::from_pairs([("summary", summary)]);
    }

    pub(super) fn recover(&mut self, channel: &str, now: Timestamp) {
        if let Some(a) = self.alerts.get_mut(channel) {
            a.resolve(now);
        }
    }

    /// The meta-alerts at `now`, for the pipeline.
    pub fn alerts(&mut self, now: Timestamp) -> Vec<Alert> {
        self.alerts.retain(|_, a| a.resolved_at.is_none_or(|t| now.since(t) < super::META_RESOLVED_KEPT));
        self.alerts.values().cloned().collect()
    }

    /// The meta-alerts as of the last step, for the API.
    pub fn current(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// Puts back the alerts the state file kept (a restart does not page a
    /// failing channel again as new).
    pub fn restore(&mut self, alerts: Vec<Alert>, now: Timestamp) {
        for a in alerts {
            if let Some(channel) = a.labels.get("notifier").map(str::to_string)
                && a.resolved_at.is_none_or(|t| now.since(t) < super::META_RESOLVED_KEPT)
            {
                self.alerts.insert(channel, a);
            }
        }
    }
}

/// The channels a `NotifierFailing` message must not be sent through: the
/// ones it is about, while they still fail.
fn about_failing(m: &Message, failing: &FailingChannels) -> Vec<String> {
    m.firing
        .iter()
        .filter(|a| a.name() == NOTIFIER_FAILING)
        .filter_map(|a| a.labels.get("notifier"))
        .filter(|c| failing.is_failing(c))
        .map(str::to_string)
        .collect()
}

impl Runner {
    /// Hands the pending deliveries to the deliverer. A `NotifierFailing`
    /// message skips the channel it is about, and goes elsewhere instead:
    /// that delivery is over (`failed`), so a restart does not take it up.
    pub(super) fn submit_pending(&mut self, now: Timestamp) {
        self.hand_off_pending();
        // What is left skips its channel.
        for (m, channel) in std::mem::take(&mut self.pending) {
            if let Some(d) = &mut self.durable {
                let error = format!("not sent: {NOTIFIER_FAILING} is about {channel}");
                let mut skipped = mark(m.id.clone(), channel.clone(), now, Some(error), DeliveryOutcome::GaveUp);
                skipped.attempts = 0;
                d.mark(skipped, now);
            }
            self.note_delivery(&mark(m.id.clone(), channel.clone(), now, None, DeliveryOutcome::GaveUp));
            self.fail_over(&m, &channel, now);
        }
    }

    /// Hands the pending deliveries to the deliverer, leaving those
    /// [`Self::submit_pending`] skips (to a channel a `NotifierFailing` is
    /// about: their outcome is written after the outbox row).
    pub(super) fn hand_off_pending(&mut self) {
        let (skipped, go): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(m, channel)| about_failing(m, &self.failing).contains(channel));
        self.pending = skipped;
        for (m, channel) in go {
            self.deliver(Delivery { message: m.clone(), channel }, m.at);
        }
    }

    /// Hands `d`, written to the outbox at `written_at`, to the deliverer.
    fn deliver(&mut self, d: Delivery, written_at: Timestamp) {
        self.delivering.insert((d.message.id.clone(), d.channel.clone()), (written_at, d.message.clone()));
        self.deliverer.submit(d, written_at);
    }

    /// When the oldest delivery not yet done was written to the outbox.
    pub(super) fn oldest_pending(&self) -> Option<Timestamp> {
        let waiting = self.pending.iter().map(|(m, _)| m.at);
        self.delivering.values().map(|(at, _)| *at).chain(waiting).min()
    }

    /// Records one report; a delivery that gave up falls over.
    pub fn on_report(&mut self, r: Report) {
        let (id, channel) = (r.delivery.message.id.clone(), r.delivery.channel.clone());
        self.metrics.observe_report(&r);
        if r.done {
            self.delivering.remove(&(id.clone(), channel.clone()));
            let outcome = if r.result.is_ok() { DeliveryOutcome::Delivered } else { DeliveryOutcome::GaveUp };
            self.note_delivery(&mark(id.clone(), channel.clone(), r.at, None, outcome));
        }
        match &r.result {
            Ok(()) => {
                tracing::debug!(channel = %channel, message = %id, attempts = r.attempts, "delivered");
                if let Some(d) = &mut self.durable {
                    d.mark(mark(id, channel.clone(), r.at, None, DeliveryOutcome::Delivered), r.at);
                }
                self.failing.recover(&channel, r.at);
            }
            Err(e) => {
                if let Some(d) = &mut self.durable {
                    // A delivery that gave up is over: never sent again, even after a restart.
                    let outcome = if r.done { DeliveryOutcome::GaveUp } else { DeliveryOutcome::Retrying };
                    d.mark(mark(id.clone(), channel.clone(), r.at, Some(e.to_string()), outcome), r.at);
                }
                if !r.done {
                    tracing::warn!(channel = %channel, message = %id, attempt = r.attempts, error = %e, "delivery failed: will retry");
                    return;
                }
                tracing::error!(channel = %channel, message = %id, attempts = r.attempts, error = %e, "delivery failed: giving up");
                self.failing.fail(&channel, &e.to_string(), r.at);
                let message = r.delivery.message.clone();
                self.fail_over(&message, &channel, r.at);
            }
        }
    }

    /// Sends `m` to the next channel of its tier after `failed` that works
    /// and does not have it already (or, failing that, any such channel);
    /// written to the outbox first like every delivery.
    fn fail_over(&mut self, m: &Arc<Message>, failed: &str, now: Timestamp) {
        let tier_channels = &self.pipeline.config.policy.tier(m.tier).channels;
        let start = tier_channels.iter().position(|c| c == failed).map_or(0, |i| i + 1);
        let ordered = tier_channels[start..].iter().chain(&tier_channels[..start.min(tier_channels.len())]);
        let mut others: Vec<&str> = self.deliverer.channel_names().collect();
        others.sort();
        let usable = |c: &&str| *c != failed && !m.channels.iter().any(|x| x == c) && !self.failing.is_failing(c);
        let fallback = ordered
            .map(String::as_str)
            .find(usable)
            .or_else(|| others.iter().copied().find(usable))
            .map(str::to_string);
        let Some(fallback) = fallback else {
            tracing::error!(failed = %failed, message = %m.id, "no working channel left to fall over to");
            return;
        };
        tracing::warn!(failed = %failed, fallback = %fallback, message = %m.id, "falling over");
        let moved = Arc::new(Message { channels: vec![fallback.clone()], ..m.as_ref().clone() });
        if let Some(d) = &mut self.durable {
            d.add_outbox(moved.clone(), now);
        }
        if self.replica.is_some() {
            // Sent once written to the shared state (`commit_shared`).
            self.note_shared(std::slice::from_ref(&moved));
            self.pending.push((moved, fallback));
            return;
        }
        self.deliver(Delivery { message: moved, channel: fallback }, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{NotifierConfig, NotifierKind};
    use crate::notify::template::Rendering;
    use crate::pipeline::PipelineConfig;
    use crate::test_support::{json_lines as lines, poll, rules_from_yaml, settle};

    #[tokio::test]
    async fn a_channel_that_gives_up_falls_over_and_raises_notifier_failing_until_it_delivers_again() {
        let dir = tempfile::tempdir().unwrap();
        let rules =
            rules_from_yaml("groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    severity: P0\n");
        let rules = Arc::new(rules.unwrap());
        // `bad` writes under a path whose parent is a file: it fails until
        // the file is replaced by a directory.
        let blocker = dir.path().join("blocked");
        std::fs::write(&blocker, "").unwrap();
        let (bad, good) = (blocker.join("bad.jsonl"), dir.path().join("good.jsonl"));
        let file =
            |name: &str, path: &std::path::Path| NotifierConfig::new(name, NotifierKind::File { path: path.into() });
        let channels = super::super::channels::of(&[file("bad", &bad), file("good", &good)], &Rendering::builtin());
        let mut config = PipelineConfig::defaults_to(&["bad".into(), "good".into()]);
        let policy = Arc::make_mut(&mut config.policy);
        policy.tiers[0].channels = vec!["bad".into()];
        for t in &mut policy.tiers {
            t.group_wait = Duration::ZERO;
        }
        let mut runner = Runner::new(rules, Duration::from_secs(5), config, channels);
        let mut rx = runner.reports.take().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        runner.deliverer.set_clock(clock.clone());
        let down = |runner: &mut Runner, t: i64| runner.ingest(0, poll("a", t, &[("up", 0.0)]));
        down(&mut runner, 0);
        let sent = runner.evaluate(clock.as_ref());
        assert_eq!(sent.len(), 1, "the P0 page, to `bad` only");
        // The P0 deadline (30 min) passes before the first attempt ends.
        clock.set(Timestamp::from_millis(3_600_000));
        settle(&mut runner, &mut rx).await;
        assert!(runner.failing.is_failing("bad"));
        let fell_over = lines(&good);
        assert_eq!(fell_over.len(), 1, "the page fell over to `good`: {fell_over:?}");
        assert_eq!(fell_over[0]["firing"][0]["alertname"], "Down");

        // The next step raises NotifierFailing, told through `good` only.
        down(&mut runner, 3600);
        runner.evaluate(clock.as_ref());
        settle(&mut runner, &mut rx).await;
        let told = lines(&good);
        let meta = told.iter().find(|m| m["firing"][0]["alertname"] == NOTIFIER_FAILING).expect("NotifierFailing");
        assert_eq!(meta["firing"][0]["labels"]["notifier"], "bad");
        assert_eq!(meta["tier"], "P1");

        // `bad` works again: the next delivery to it (the P0 repeat, 5 min
        // later) succeeds, and NotifierFailing resolves.
        std::fs::remove_file(&blocker).unwrap();
        std::fs::create_dir(&blocker).unwrap();
        clock.set(Timestamp::from_millis(3_600_000 + 301_000));
        down(&mut runner, 3901);
        runner.evaluate(clock.as_ref());
        settle(&mut runner, &mut rx).await;
        assert!(!runner.failing.is_failing("bad"), "a delivery succeeded");
        assert_eq!(lines(&bad).len(), 1, "the repeat reached `bad`");
        clock.set(Timestamp::from_millis(3_600_000 + 370_000));
        down(&mut runner, 3970);
        runner.evaluate(clock.as_ref());
        settle(&mut runner, &mut rx).await;
        let resolved = lines(&good)
            .into_iter()
            .chain(lines(&bad))
            .any(|m| m["resolved"].as_array().is_some_and(|r| r.iter().any(|a| a["alertname"] == NOTIFIER_FAILING)));
        assert!(resolved, "NotifierFailing resolved: good {:?} bad {:?}", lines(&good), lines(&bad));
    }
}
