//! The notification pipeline between the alert tracker and the notifiers
//! (inhibit → silence/maintenance → group → dedup → route). This step holds
//! what its stages share: label matchers.

pub mod matcher;

pub use matcher::{MatchOp, Matcher, MatcherError, Matchers};
