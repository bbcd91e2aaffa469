//! The dead man's switch (`heartbeat`): every interval, one HTTP request to
//! an external service's ping URL, but only while the run loop is healthy
//! (a step completed within the last [`STALL_INTERVALS`] intervals) and
//! this replica is the active one. A stalled, paused or dead zkalert stops
//! pinging, and the service pages. Also the always-firing `ZkalertWatchdog`
//! alert, routed to one chosen channel (docs/heartbeat.md).

use crate::clock::Clock;
use crate::config::HeartbeatConfig;
use crate::metrics::Metrics;
use crate::model::{Alert, Labels, Severity, Timestamp};
use crate::notify::http::{Outbound, redact_url};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The heartbeat stops once no step completed for this many intervals.
pub const STALL_INTERVALS: u32 = 3;

/// The always-firing alert's name.
pub const WATCHDOG: &str = "ZkalertWatchdog";

/// A failing ping is logged once, then again at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(600);

/// What the heartbeat reads of the run loop: when it last completed a step,
/// and whether this replica is the active one (always, with one replica;
/// HA coordination sets it as roles change).
#[derive(Debug)]
pub struct Liveness {
    /// Milliseconds of the last completed step; `i64::MIN` before the first.
    last_step: AtomicI64,
    active: AtomicBool,
}

impl Default for Liveness {
    fn default() -> Self {
        Self { last_step: AtomicI64::new(i64::MIN), active: AtomicBool::new(true) }
    }
}

impl Liveness {
    /// The run loop completed a step (poll → evaluate → pipeline → commit) at `at`.
    pub fn step_completed(&self, at: Timestamp) {
        self.last_step.fetch_max(at.as_millis(), Ordering::Release);
    }

    pub fn last_step(&self) -> Option<Timestamp> {
        let ms = self.last_step.load(Ordering::Acquire);
        (ms != i64::MIN).then(|| Timestamp::from_millis(ms))
    }

    /// Whether this replica is the active one (only the active one pings).
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether a ping is due at `now`, or why not.
    pub fn check(&self, now: Timestamp, interval: Duration) -> Result<(), Hold> {
        if !self.is_active() {
            return Err(Hold::Standby);
        }
        match self.last_step() {
            None => Err(Hold::Starting),
            Some(at) if now.since(at) >= interval * STALL_INTERVALS => Err(Hold::Stalled { since: at }),
            Some(_) => Ok(()),
        }
    }
}

/// Why no ping is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// No step has completed yet (sources' first polls).
    Starting,
    /// No step completed for [`STALL_INTERVALS`] intervals; the last at `since`.
    Stalled { since: Timestamp },
    /// Another replica is active.
    Standby,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Starting => "starting",
            Hold::Stalled { .. } => "stalled",
            Hold::Standby => "standby",
        }
    }
}

/// What `GET /api/v1/status` shows of the heartbeat.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct HeartbeatStatus {
    /// The ping URL, scheme, host and port only.
    pub url: String,
    pub interval_seconds: f64,
    /// `pinging`, or why not: `starting`, `stalled`, `standby`.
    pub state: &'static str,
    pub last_ping_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    /// The last ping's error, while pings fail.
    pub last_error: Option<String>,
    /// Failed pings in a row.
    pub consecutive_failures: u64,
}

/// The heartbeat's decisions, apart from sending: due or held, and the
/// outcome of each ping (status, metrics, rate-limited logging).
pub struct Heartbeat {
    pub config: HeartbeatConfig,
    pub liveness: Arc<Liveness>,
    status: Arc<Mutex<HeartbeatStatus>>,
    metrics: Arc<Metrics>,
    last_failure_logged: Option<Timestamp>,
    held: Option<Hold>,
}

impl Heartbeat {
    pub fn new(config: HeartbeatConfig, liveness: Arc<Liveness>, metrics: Arc<Metrics>) -> Self {
        let status = HeartbeatStatus {
            url: redact_url(&config.url),
            interval_seconds: config.interval.as_secs_f64(),
            state: Hold::Starting.as_str(),
            ..Default::default()
        };
        Self { config, liveness, status: Arc::new(Mutex::new(status)), metrics, last_failure_logged: None, held: None }
    }

    /// The status the API shows, shared with the runner.
    pub fn status(&self) -> Arc<Mutex<HeartbeatStatus>> {
        self.status.clone()
    }

    fn update(&self, f: impl FnOnce(&mut HeartbeatStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    /// Whether to ping at `now`; a change between pinging and holding is logged.
    pub fn due(&mut self, now: Timestamp) -> bool {
        let hold = self.liveness.check(now, self.config.interval).err();
        if hold.map(Hold::as_str) != self.held.map(Hold::as_str) {
            match hold {
                Some(Hold::Stalled { since }) => tracing::error!(
                    last_step = %since, intervals = STALL_INTERVALS,
                    "heartbeat stopped: the run loop completed no step for {STALL_INTERVALS} intervals"
                ),
                Some(h) => tracing::info!(reason = h.as_str(), "heartbeat held"),
                None => tracing::info!(url = %redact_url(&self.config.url), "heartbeat pinging"),
            }
        }
        self.held = hold;
        self.metrics.set_heartbeat_healthy(hold.is_none());
        self.update(|s| s.state = hold.map_or("pinging", Hold::as_str));
        hold.is_none()
    }

    /// Records a ping sent at `at`: counted, shown, and a failure logged
    /// (once, then every [`FAILURE_LOG_EVERY`] while it keeps failing).
    pub fn record(&mut self, at: Timestamp, result: Result<(), String>) {
        self.metrics.observe_heartbeat_ping(result.is_ok(), at);
        let mut failures = 0;
        self.update(|s| {
            s.last_ping_at = Some(at);
            match &result {
                Ok(()) => {
                    s.last_success_at = Some(at);
                    s.last_error = None;
                    s.consecutive_failures = 0;
                }
                Err(e) => {
                    s.last_error = Some(e.clone());
                    s.consecutive_failures += 1;
                    failures = s.consecutive_failures;
                }
            }
        });
        match result {
            Ok(()) if self.last_failure_logged.take().is_some() => {
                tracing::info!(url = %redact_url(&self.config.url), "heartbeat ping succeeds again")
            }
            Ok(()) => {}
            Err(e) => {
                if self.last_failure_logged.is_none_or(|t| at.since(t) >= FAILURE_LOG_EVERY) {
                    self.last_failure_logged = Some(at);
                    tracing::warn!(
                        url = %redact_url(&self.config.url), error = %e, failures,
                        "heartbeat ping failed; retried at the next interval"
                    );
                }
            }
        }
    }

    /// Pings every interval while [`Heartbeat::due`], one request at a time
    /// (bounded by the timeout, the answer by [`crate::notify::http::MAX_ANSWER`]),
    /// until the task is aborted. A missed tick (the process was paused)
    /// fires once, and the schedule restarts from it: never a burst making up
    /// the pause, never two pings closer than an interval.
    pub async fn run(mut self, clock: Arc<dyn Clock>) {
        let outbound = match Outbound::new(self.config.timeout, self.config.proxy_url.as_ref()) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "heartbeat cannot start: no pings will be sent");
                self.update(|s| s.last_error = Some(e));
                return;
            }
        };
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !self.due(clock.now()) {
                continue;
            }
            let request = outbound.request(self.config.method.as_reqwest(), &self.config.url);
            let result = crate::notify::http::send(request).await.map(|_| ()).map_err(|e| e.to_string());
            self.record(clock.now(), result);
        }
    }
}

/// The `ZkalertWatchdog` alert, firing since `since`: P2, with its own route
/// to the chosen channel only (see `Policy::route_watchdog`).
pub fn watchdog_alert(since: Timestamp) -> Alert {
    let labels = Labels::from_pairs([("alertname", WATCHDOG), ("severity", Severity::P2.as_str())]);
    let mut alert = Alert::meta(labels, Severity::P2, "zkalert/watchdog", since);
    alert.annotations = crate::model::Annotations::from_pairs([(
        "summary",
        "zkalert is alive: this alert always fires; its absence at the receiver means zkalert is down",
    )]);
    alert
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn heartbeat(interval: u64) -> (Heartbeat, Arc<Metrics>) {
        let config = crate::config::Config::parse(
            &format!(
                "sources: [{{type: zookeeper, cluster: c, nodes: ['a:2181']}}]\nheartbeat: {{url: 'http://127.0.0.1:9/ping/t0k', interval: {interval}s}}\n"
            ),
            std::path::Path::new("z.yaml"),
        )
        .unwrap()
        .heartbeat
        .unwrap();
        let metrics = Arc::new(Metrics::new());
        (Heartbeat::new(config, Arc::default(), metrics.clone()), metrics)
    }

    #[test]
    fn pings_while_steps_complete_stop_after_three_intervals_without_one_and_resume_with_them() {
        let (mut hb, _) = heartbeat(10);
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let tick = Duration::from_secs(10);
        assert!(!hb.due(clock.now()), "no step yet: starting");
        assert_eq!(hb.status().lock().unwrap().state, "starting");
        // Steps every second: every tick pings.
        let mut pings = 0;
        for _ in 0..5 {
            for _ in 0..10 {
                clock.advance(Duration::from_secs(1));
                hb.liveness.step_completed(clock.now());
            }
            pings += usize::from(hb.due(clock.now()));
        }
        assert_eq!(pings, 5);
        // The loop stalls: due for ticks under 3 intervals since the last
        // step, then never, however long the stall.
        let stalled_at = clock.now();
        let mut due = Vec::new();
        for _ in 0..8 {
            clock.advance(tick);
            due.push((clock.now().since(stalled_at).as_secs(), hb.due(clock.now())));
        }
        assert_eq!(
            due,
            [(10, true), (20, true), (30, false), (40, false), (50, false), (60, false), (70, false), (80, false)]
        );
        assert_eq!(hb.status().lock().unwrap().state, "stalled");
        // Steps resume: so do pings, at the next tick.
        clock.advance(Duration::from_secs(3));
        hb.liveness.step_completed(clock.now());
        assert!(hb.due(clock.now()));
        assert_eq!(hb.status().lock().unwrap().state, "pinging");
        // A standby never pings, however healthy its loop.
        hb.liveness.set_active(false);
        assert!(!hb.due(clock.now()));
        assert_eq!(hb.status().lock().unwrap().state, "standby");
    }

    #[test]
    fn each_ping_is_counted_and_shown_and_failures_are_logged_rate_limited() {
        let (mut hb, metrics) = heartbeat(60);
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let ((), log) = crate::test_support::logged(|| {
            for i in 0..20 {
                clock.advance(Duration::from_secs(60));
                let result = if i < 15 { Err(format!("HTTP 503: down {i}")) } else { Ok(()) };
                hb.record(clock.now(), result);
            }
        });
        let failed_lines = log.iter().filter(|l| l.contains("heartbeat ping failed")).count();
        assert_eq!(failed_lines, 2, "the first failure and one 10 minutes later: {log:#?}");
        assert_eq!(log.iter().filter(|l| l.contains("succeeds again")).count(), 1, "{log:#?}");
        let status = hb.status().lock().unwrap().clone();
        assert_eq!((status.consecutive_failures, status.last_error.as_deref()), (0, None));
        assert_eq!(status.last_success_at, Some(clock.now()));
        assert!(!status.url.contains("t0k"), "{status:?}");
        let text = metrics.render(&Default::default(), None, clock.now());
        assert!(text.contains("zkalert_heartbeat_pings_total{result=\"failure\"} 15"), "{text}");
        assert!(text.contains("zkalert_heartbeat_pings_total{result=\"success\"} 5"), "{text}");
        let last = clock.now().as_secs_f64();
        assert!(text.contains(&format!("zkalert_heartbeat_last_success_timestamp_seconds {last}")), "{text}");
    }

    #[test]
    fn the_watchdog_fires_on_every_step_and_goes_to_its_channel_only_before_any_route() {
        let text = "sources: [{type: zookeeper, cluster: c, nodes: ['a:2181']}]\nnotifiers:\n  - {name: pager, type: console}\n  - {name: deadman, type: console}\nrouting:\n  tiers: {P2: {group_wait: 0s}}\n  routes:\n    - {matchers: '{severity=~\".+\"}', channels: [pager]}\nheartbeat: {url: 'http://127.0.0.1:9/p', watchdog: {channel: deadman}}\n";
        let config = crate::config::Config::parse(text, std::path::Path::new("z.yaml")).unwrap();
        let rules = Arc::new(crate::test_support::rules_from_yaml("groups: []\n").unwrap());
        let mut runner = super::super::Runner::new(rules, Duration::from_secs(10), config.pipeline, Vec::new());
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let sent = runner.evaluate(&clock);
        let [message] = &sent[..] else { panic!("one message: {sent:#?}") };
        assert_eq!(message.channels, ["deadman"], "not the catch-all route's pager");
        assert_eq!(message.firing.iter().map(|a| a.name()).collect::<Vec<_>>(), [WATCHDOG]);
        assert_eq!(message.firing[0].severity, Severity::P2);
        let since = message.firing[0].fired_at;
        // Still firing, since the first step, and never escalated.
        clock.advance(Duration::from_secs(4 * 3600));
        let later = runner.evaluate(&clock);
        assert!(later.iter().all(|m| m.channels == ["deadman"] && !m.escalation), "{later:#?}");
        assert!(later.iter().all(|m| m.firing.iter().all(|a| a.fired_at == since)), "{later:#?}");
        assert!(!later.is_empty(), "repeated at P2's repeat interval");
        // A standby raises nothing (the active replica's pipeline sends).
        runner.liveness.set_active(false);
        clock.advance(Duration::from_secs(60));
        let sent = runner.evaluate(&clock);
        assert!(sent.iter().all(|m| m.firing.is_empty()), "{sent:#?}");
    }
}
