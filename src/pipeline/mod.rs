//! The notification pipeline between the alert tracker and the notifiers
//! (inhibit → silence/maintenance → group → dedup → route). This step holds
//! the stages that decide whether an alert is muted: matchers, silences,
//! maintenance windows, inhibition.

pub mod dispatch;
pub mod inhibit;
pub mod maintenance;
pub mod matcher;
pub mod silence;

pub use dispatch::{Ack, Dispatcher, Message, Policy, TierPolicy};
pub use inhibit::{InhibitRule, is_inhibited};
pub use maintenance::{MaintenanceError, MaintenanceWindow};
pub use matcher::{MatchOp, Matcher, MatcherError, Matchers};
pub use silence::{Silence, SilenceState, Silences};
