//! Delivery, after the outbox: each (message, channel) is sent in its own
//! task, bounded per attempt by the channel's timeout and paced by its rate
//! limit, retried with exponential backoff and jitter until the tier's
//! deadline. Every attempt's outcome goes back to the runner as a
//! [`Report`], which records it and, when a delivery gives up, falls over to
//! another channel and raises `NotifierFailing`.

use super::{Delivery, Notifier, SendError};
use crate::clock::Clock;
use crate::model::{Severity, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// How long and how hard to try.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPolicy {
    /// Per tier (P0..P3): give up this long after the message was written.
    pub deadline: [Duration; 4],
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DeliveryPolicy {
    /// A page is worth trying for a while: P0 30 min, P1 1 h, P2 4 h, P3 a
    /// day; retries from 1 s, doubling, at most every 5 min.
    fn default() -> Self {
        DeliveryPolicy {
            deadline: [30 * 60, 3600, 4 * 3600, 24 * 3600].map(Duration::from_secs),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl DeliveryPolicy {
    pub fn deadline(&self, tier: Severity) -> Duration {
        self.deadline[tier as usize]
    }

    /// The wait before attempt `attempt + 1`: doubling from `first_backoff`,
    /// capped, with ±20 % jitter derived from the delivery (so concurrent
    /// retries spread out, and a test can predict them).
    pub fn backoff(&self, key: &str, attempt: u32) -> Duration {
        let base = self.first_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.max_backoff);
        let seed = crate::model::Labels::from_pairs([("k", key), ("a", &attempt.to_string())]).fingerprint().0;
        let jitter = (seed % 401) as f64 / 1000.0 - 0.2; // -0.2 ..= +0.2
        base.mul_f64(1.0 + jitter)
    }
}

/// Sends in flight per channel at most: a burst reuses a few connections
/// instead of opening one per message (measured in BENCHMARKS.md: 20k
/// webhooks all at once ran out of file descriptors and took 10 s; 32 in
/// flight took 1.5 s).
pub const MAX_IN_FLIGHT: usize = 32;

/// A channel: its name (what routes name) and notifier type, its notifier,
/// how long one attempt may take, how often it may be called.
#[derive(Clone)]
pub struct Channel {
    pub name: String,
    /// The notifier type, as in the config (`console`, `file`, `webhook`…).
    pub kind: &'static str,
    pub notifier: Arc<dyn Notifier>,
    pub timeout: Duration,
    /// At most one send per this interval (`None`: no limit).
    pub min_interval: Option<Duration>,
    next_slot: Arc<Mutex<Option<tokio::time::Instant>>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Channel {
    pub fn new(
        name: impl Into<String>,
        kind: &'static str,
        notifier: Arc<dyn Notifier>,
        timeout: Duration,
        min_interval: Option<Duration>,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            notifier,
            timeout,
            min_interval,
            next_slot: Arc::new(Mutex::new(None)),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Waits for this channel's next send slot.
    async fn pace(&self) {
        let Some(every) = self.min_interval else { return };
        let wait_until = {
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + every);
            slot
        };
        tokio::time::sleep_until(wait_until).await;
    }

    async fn attempt(&self, d: &Delivery, lease: &mut watch::Receiver<Lease>) -> Result<(), SendError> {
        // Never closed, so acquiring only waits.
        let _permit = self.in_flight.acquire().await;
        self.pace().await;
        Lease::wait_valid(lease).await;
        match tokio::time::timeout(self.timeout, self.notifier.send(d)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Retryable(format!("timed out after {:?}", self.timeout))),
        }
    }
}

/// Whether this process may send now. Alone, always; as a replica, only
/// while its last fenced write to the shared state is recent enough that
/// its coordination session cannot have expired since (each successful
/// commit renews it), or while it sends on its own (coordination lost). A
/// replica paused past its session (SIGSTOP, a long GC) finds its lease
/// expired when it resumes, and its deliveries wait instead of racing the
/// replica that took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Open,
    Until(tokio::time::Instant),
    Closed,
}

impl Lease {
    fn valid(self, now: tokio::time::Instant) -> bool {
        match self {
            Lease::Open => true,
            Lease::Until(t) => now < t,
            Lease::Closed => false,
        }
    }

    /// Returns once the lease is valid (right before an attempt is sent).
    async fn wait_valid(lease: &mut watch::Receiver<Lease>) {
        loop {
            let current = *lease.borrow_and_update();
            if current.valid(tokio::time::Instant::now()) {
                return;
            }
            // A deadline passed, or closed: wait for a renewal. The sender
            // lives as long as the deliverer, which aborts its tasks on drop.
            if lease.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What happened to one attempt.
#[derive(Debug, Clone)]
pub struct Report {
    pub delivery: Delivery,
    pub at: Timestamp,
    pub attempts: u32,
    pub result: Result<(), SendError>,
    /// No more attempts: delivered, or given up.
    pub done: bool,
}

/// Runs deliveries; reports go to the receiver returned by [`Deliverer::new`].
pub struct Deliverer {
    channels: HashMap<String, Channel>,
    policy: DeliveryPolicy,
    clock: Arc<dyn Clock>,
    reports: mpsc::UnboundedSender<Report>,
    tasks: JoinSet<()>,
    lease: watch::Sender<Lease>,
}

impl Deliverer {
    pub fn new(
        channels: HashMap<String, Channel>,
        policy: DeliveryPolicy,
        clock: Arc<dyn Clock>,
    ) -> (Self, mpsc::UnboundedReceiver<Report>) {
        let (reports, rx) = mpsc::unbounded_channel();
        let lease = watch::Sender::new(Lease::Open);
        (Self { channels, policy, clock, reports, tasks: JoinSet::new(), lease }, rx)
    }

    /// Where deadlines and report times come from (tests: virtual time).
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    pub fn channel_names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    pub fn has_channel(&self, name: &str) -> bool {
        self.channels.contains_key(name)
    }

    /// Starts delivering `d`, written to the outbox at `written_at`.
    pub fn submit(&mut self, d: Delivery, written_at: Timestamp) {
        while self.tasks.try_join_next().is_some() {}
        let reports = self.reports.clone();
        let clock = self.clock.clone();
        let Some(channel) = self.channels.get(&d.channel).cloned() else {
            let error = SendError::Permanent(format!("no notifier named {:?}", d.channel));
            let _ = reports.send(Report { delivery: d, at: clock.now(), attempts: 0, result: Err(error), done: true });
            return;
        };
        let policy = self.policy.clone();
        let mut lease = self.lease.subscribe();
        self.tasks.spawn(async move {
            let deadline = written_at + policy.deadline(d.message.tier);
            let key = d.idempotency_key();
            let mut attempts = 0;
            loop {
                attempts += 1;
                let result = channel.attempt(&d, &mut lease).await;
                let now = clock.now();
                let wait = policy.backoff(&key, attempts);
                let done = match &result {
                    Ok(()) => true,
                    Err(SendError::Permanent(_)) => true,
                    Err(SendError::Retryable(_)) => now + wait > deadline,
                };
                let report = Report { delivery: d.clone(), at: now, attempts, result, done };
                if reports.send(report).is_err() || done {
                    return;
                }
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// Replaces the channels (a reload) and the tiers' deadlines. Deliveries
    /// already started keep the channel they started on, finish there and
    /// are reported as before; later ones go to the new channels.
    pub fn replace_channels(&mut self, channels: Vec<Channel>, deadline: [Duration; 4]) {
        self.channels = channels.into_iter().map(|c| (c.name.clone(), c)).collect();
        self.policy.deadline = deadline;
    }

    /// Sets when attempts may be sent (see [`Lease`]); attempts waiting for
    /// it go out once it is valid.
    pub fn set_lease(&self, lease: Lease) {
        self.lease.send_replace(lease);
    }

    /// Stops every delivery being tried, with no report (a replica that
    /// stepped down must send nothing more; the active one sends them).
    pub fn abort_all(&mut self) {
        self.tasks.abort_all();
    }

    /// Deliveries still being tried.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::model::Labels;
    use crate::notify::SendFuture;
    use crate::pipeline::Message;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A channel that fails its first `fail` attempts with `error`.
    struct Flaky {
        fail: u32,
        error: SendError,
        calls: AtomicU32,
    }

    impl Notifier for Flaky {
        fn send<'a>(&'a self, _: &'a Delivery) -> SendFuture<'a> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let result = if n < self.fail { Err(self.error.clone()) } else { Ok(()) };
            Box::pin(std::future::ready(result))
        }
    }

    fn delivery(tier: Severity) -> Delivery {
        let m = Message {
            id: "m1".into(),
            at: Timestamp::from_millis(0),
            group: Labels::new(),
            group_id: "g".into(),
            tier,
            channels: vec!["flaky".into()],
            firing: vec![],
            new: vec![],
            resolved: vec![],
            reason: crate::pipeline::Reason::NewAlerts,
            escalation: false,
            digest: false,
            test: false,
        };
        Delivery { message: Arc::new(m), channel: "flaky".into() }
    }

    fn deliverer(n: Arc<Flaky>, policy: DeliveryPolicy) -> (Deliverer, mpsc::UnboundedReceiver<Report>) {
        let channel = Channel::new("flaky", "test", n, Duration::from_secs(5), None);
        Deliverer::new(HashMap::from([("flaky".to_string(), channel)]), policy, Arc::new(SystemClock))
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_with_backoff_until_delivered() {
        let n = Arc::new(Flaky { fail: 3, error: SendError::Retryable("HTTP 503".into()), calls: AtomicU32::new(0) });
        let (mut d, mut rx) = deliverer(n.clone(), DeliveryPolicy::default());
        d.submit(delivery(Severity::P1), SystemClock.now());
        let mut seen = Vec::new();
        while let Some(r) = rx.recv().await {
            seen.push((r.attempts, r.result.is_ok(), r.done));
            if r.done {
                break;
            }
        }
        assert_eq!(seen, [(1, false, false), (2, false, false), (3, false, false), (4, true, true)]);
        assert_eq!(n.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_holds_every_attempt_until_it_is_renewed() {
        let n = Arc::new(Flaky { fail: 1, error: SendError::Retryable("HTTP 503".into()), calls: AtomicU32::new(0) });
        let (mut d, mut rx) = deliverer(n.clone(), DeliveryPolicy::default());
        let start = tokio::time::Instant::now();
        d.set_lease(Lease::Until(start + Duration::from_millis(500)));
        d.submit(delivery(Severity::P1), SystemClock.now());
        // The first attempt goes out within the lease and fails; the retry
        // (about 1 s later) finds the lease expired and waits.
        let first = rx.recv().await.expect("a report");
        assert_eq!((first.attempts, first.done), (1, false));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(rx.try_recv().is_err(), "an attempt was sent with the lease expired");
        assert_eq!(n.calls.load(Ordering::SeqCst), 1);
        // Renewed (a fenced commit): the held retry goes out at once.
        d.set_lease(Lease::Until(tokio::time::Instant::now() + Duration::from_secs(1)));
        let second = rx.recv().await.expect("a report");
        assert_eq!((second.attempts, second.result.is_ok(), second.done), (2, true, true));
        // Closed (stepped down): nothing goes out, whatever the time.
        d.set_lease(Lease::Closed);
        d.submit(delivery(Severity::P1), SystemClock.now());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(n.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_give_up_at_once() {
        let n = Arc::new(Flaky { fail: 10, error: SendError::Permanent("HTTP 400".into()), calls: AtomicU32::new(0) });
        let (mut d, mut rx) = deliverer(n.clone(), DeliveryPolicy::default());
        d.submit(delivery(Severity::P0), SystemClock.now());
        let r = rx.recv().await.unwrap();
        assert!(r.done && r.result.is_err() && r.attempts == 1);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_cap() {
        let p = DeliveryPolicy::default();
        for attempt in 1..=12 {
            let base = Duration::from_secs(1 << (attempt - 1)).min(Duration::from_secs(300));
            let b = p.backoff("m1-sms", attempt);
            assert!(b >= base.mul_f64(0.8) && b <= base.mul_f64(1.2), "attempt {attempt}: {b:?} vs {base:?}");
        }
        assert_ne!(p.backoff("a", 3), p.backoff("b", 3), "different deliveries spread out");
    }

    /// Time from tokio's (paused, auto-advancing) clock.
    struct TokioClock(tokio::time::Instant);

    impl Clock for TokioClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_millis(0) + self.0.elapsed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_tier_deadline() {
        let n =
            Arc::new(Flaky { fail: u32::MAX, error: SendError::Retryable("down".into()), calls: AtomicU32::new(0) });
        let policy = DeliveryPolicy { deadline: [Duration::from_secs(60); 4], ..DeliveryPolicy::default() };
        let channel = Channel::new("flaky", "test", n.clone(), Duration::from_secs(5), None);
        let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
        let (mut d, mut rx) = Deliverer::new(HashMap::from([("flaky".to_string(), channel)]), policy, clock.clone());
        d.submit(delivery(Severity::P2), Timestamp::from_millis(0));
        let mut reports = Vec::new();
        while let Some(r) = rx.recv().await {
            let done = r.done;
            reports.push(r);
            if done {
                break;
            }
        }
        let last = reports.last().unwrap();
        assert!(last.result.is_err());
        // Attempts at about 0, 1, 3, 7, 15, 31 s; the next wait (~32 s) would
        // pass the 60 s deadline.
        assert_eq!(last.attempts, 6, "{:?}", reports.iter().map(|r| r.at).collect::<Vec<_>>());
        assert!(last.at <= Timestamp::from_millis(60_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_spaces_sends_and_a_timeout_is_retryable() {
        struct Slow;
        impl Notifier for Slow {
            fn send<'a>(&'a self, _: &'a Delivery) -> SendFuture<'a> {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(())
                })
            }
        }
        let slow = Channel::new("slow", "test", Arc::new(Slow), Duration::from_secs(2), None);
        let d = delivery(Severity::P1);
        let mut open = watch::Sender::new(Lease::Open).subscribe();
        assert!(matches!(slow.attempt(&d, &mut open).await, Err(SendError::Retryable(e)) if e.contains("timed out")));
        let n = Arc::new(Flaky { fail: 0, error: SendError::Permanent(String::new()), calls: AtomicU32::new(0) });
        let paced = Channel::new("flaky", "test", n, Duration::from_secs(5), Some(Duration::from_secs(1)));
        let t0 = tokio::time::Instant::now();
        for _ in 0..3 {
            paced.attempt(&d, &mut open).await.unwrap();
        }
        assert_eq!(t0.elapsed(), Duration::from_secs(2), "three sends at most one per second");
    }
}
