//! zkalert: a rule-driven alerting engine for Apache ZooKeeper operations.
//!
//! The module list is the architecture map (see ARCHITECTURE.md):
//! samples enter the [`store`], the [`rule`] evaluator turns them into
//! candidates, the tracker turns candidates into alerts; [`testing`] drives
//! the same path on virtual time for `zkalert test`, [`replay`] over recorded
//! samples.
#![forbid(unsafe_code)]

pub mod api;
pub mod capability;
pub mod cli;
pub mod clock;
pub mod config;
pub mod diag;
pub mod duration;
pub mod embedded;
pub mod ha;
pub mod intake;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod replay;
pub mod report;
pub mod rule;
pub mod runner;
pub mod source;
pub mod state;
pub mod store;
pub mod testing;
pub mod yaml;

#[cfg(test)]
mod test_support;
