//! `zkalert run`: the main loop. Sources poll on their own schedules and
//! send batches of samples; the loop ingests them into the store, evaluates
//! rules on the evaluation interval and hands notifications to notifiers,
//! until shutdown.

use crate::clock::Clock;
use crate::model::{Labels, Sample};
use crate::notify::{Notification, Notifier};
use crate::rule::{Evaluator, RuleSet};
use crate::store::SeriesStore;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What one poll of a source produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PollBatch {
    pub samples: Vec<Sample>,
    /// Info labels per target (identity labels → info labels).
    pub infos: Vec<(Labels, Labels)>,
}

/// Something that produces samples on a schedule.
pub trait Source: Send + Sync + 'static {
    fn name(&self) -> String;
    fn interval(&self) -> Duration;
    fn poll(&self, clock: Arc<dyn Clock>) -> Pin<Box<dyn Future<Output = PollBatch> + Send + '_>>;
}

/// The engine's state between batches.
pub struct Runner {
    pub store: Arc<SeriesStore>,
    pub evaluator: Evaluator,
    pub notifiers: Vec<Box<dyn Notifier>>,
}

impl Runner {
    pub fn new(rules: Arc<RuleSet>, evaluation_interval: Duration, notifiers: Vec<Box<dyn Notifier>>) -> Self {
        let store = Arc::new(SeriesStore::new(rules.longest_range));
        Self { store, evaluator: Evaluator::new(rules, evaluation_interval), notifiers }
    }

    pub fn ingest(&mut self, batch: PollBatch) {
        let store = Arc::make_mut(&mut self.store);
        for s in batch.samples {
            store.ingest(&s.name, &s.labels, s.timestamp, s.value);
        }
        for (target, info) in batch.infos {
            let g = store.group_id(&target);
            store.set_info(g, info);
        }
    }

    /// Evaluates what is due and notifies; returns the notifications sent.
    pub fn evaluate(&mut self, clock: &dyn Clock) -> Vec<Notification> {
        let now = clock.now();
        Arc::make_mut(&mut self.store).compact(now);
        let events = self.evaluator.evaluate_due(&self.store, now);
        let notifications: Vec<Notification> = events.iter().filter_map(|e| Notification::from_event(e, now)).collect();
        for n in &notifications {
            for notifier in &self.notifiers {
                if let Err(e) = notifier.send(n) {
                    tracing::error!(error = %e, alert = n.alert.name(), "notification failed");
                }
            }
        }
        for state in &self.evaluator.tracker.rules {
            if let crate::rule::RuleHealth::Err(e) = &state.health {
                tracing::warn!(rule = %state.name, error = %e, "rule evaluation failed");
            }
        }
        notifications
    }
}

/// Runs until `shutdown` completes: sources poll concurrently, each on its
/// interval; rules are evaluated every `evaluation_interval`.
pub async fn run(
    mut runner: Runner,
    sources: Vec<Arc<dyn Source>>,
    evaluation_interval: Duration,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Runner {
    let (tx, mut rx) = mpsc::channel::<PollBatch>(64);
    let mut tasks = Vec::new();
    for source in sources {
        let tx = tx.clone();
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(source.interval());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let batch = source.poll(clock.clone()).await;
                tracing::debug!(source = %source.name(), samples = batch.samples.len(), "polled");
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut eval_ticker = tokio::time::interval(evaluation_interval);
    eval_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(batch) = rx.recv() => {
                runner.ingest(batch);
                // Evaluate as soon as fresh data arrives if a group is due,
                // so a poll's result reaches the rules without waiting a tick.
                runner.evaluate(clock.as_ref());
            }
            _ = eval_ticker.tick() => {
                runner.evaluate(clock.as_ref());
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    tracing::info!("shut down");
    runner
}
