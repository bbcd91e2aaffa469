//! The notification pipeline between the alert tracker and the notifiers,
//! as composed stages: inhibit → silence → maintenance (each marks an alert
//! muted) → group → dedup → route (the dispatcher). [`Pipeline::step`] runs
//! them all on the tracker's alerts at one time; everything here is pure
//! and runs the same on the wall clock and on virtual time.

pub mod dispatch;
pub mod inhibit;
pub mod maintenance;
pub mod matcher;
pub mod silence;

pub use dispatch::{Ack, Digest, Dispatcher, GroupChanges, GroupKey, GroupState, Message, Policy, Route, TierPolicy};
pub use inhibit::{InhibitRule, Inhibitor};
pub use maintenance::{MaintenanceError, MaintenanceWindow};
pub use matcher::{MatchOp, Matcher, MatcherError, Matchers};
pub use silence::{Silence, SilenceState, Silences};

use crate::model::{Alert, Timestamp};
use std::sync::Arc;

/// What the configuration decides: routing, inhibition, maintenance.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub policy: Arc<Policy>,
    pub inhibit_rules: Vec<InhibitRule>,
    pub maintenance: Vec<MaintenanceWindow>,
}

impl PipelineConfig {
    /// The seed's tiers to these channels, the default inhibition rules.
    pub fn defaults_to(channels: &[String]) -> Self {
        Self {
            policy: Arc::new(Policy::seed_defaults_to(channels)),
            inhibit_rules: inhibit::default_rules(),
            maintenance: Vec::new(),
        }
    }
}

/// Why an alert is not being told, if it is not.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Mute {
    pub inhibited: bool,
    /// Ids of the active silences matching it.
    pub silenced_by: Vec<String>,
    /// Names of the open maintenance windows matching it.
    pub maintenance: Vec<String>,
}

impl Mute {
    pub fn is_muted(&self) -> bool {
        self.inhibited || !self.silenced_by.is_empty() || !self.maintenance.is_empty()
    }
}

/// The pipeline's state: the config, the silences, the dispatcher.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub config: PipelineConfig,
    pub silences: Silences,
    pub dispatcher: Dispatcher,
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        let dispatcher = Dispatcher::new(config.policy.clone());
        Self { config, silences: Silences::default(), dispatcher }
    }

    /// Why each alert is muted at `now` (same order as `alerts`).
    pub fn mutes(&self, alerts: &[&Alert], now: Timestamp) -> Vec<Mute> {
        let inhibitor = Inhibitor::new(&self.config.inhibit_rules, alerts.iter().copied());
        let windows: Vec<&MaintenanceWindow> =
            self.config.maintenance.iter().filter(|w| w.open_at(now).is_some()).collect();
        let silences: Vec<&Silence> =
            self.silences.items.iter().filter(|s| s.state(now) == SilenceState::Active).collect();
        alerts
            .iter()
            .map(|a| Mute {
                inhibited: inhibitor.is_inhibited(&a.labels),
                silenced_by: silences.iter().filter(|s| s.matchers.matches(&a.labels)).map(|s| s.id.clone()).collect(),
                maintenance: windows.iter().filter(|w| w.matchers.matches(&a.labels)).map(|w| w.name.clone()).collect(),
            })
            .collect()
    }

    /// Runs every stage on the tracker's alerts at `now`; returns the
    /// messages due.
    pub fn step(&mut self, alerts: &[&Alert], now: Timestamp) -> Vec<Message> {
        let mutes = self.mutes(alerts, now);
        self.dispatcher.step(alerts.iter().copied().zip(mutes.iter().map(Mute::is_muted)), now)
    }
}
