//! Every integration test, compiled as one binary: linking the library and
//! its dependencies once instead of once per file saves most of a CI build.
//! Each module is one area, run against the real thing (the `zkalert`
//! binary, ZooKeeper, SMTP, HTTP receivers); `support` holds what they share.
//!
//! Run one area with `cargo test --test it ensemble::`, one test by its name.

mod support;

mod alertmanager;
mod cli;
mod console;
mod delivery;
mod durability;
mod email;
mod ensemble;
mod fd_limit;
mod ha;
mod heartbeat;
mod http_sources;
mod lifecycle;
mod logs;
mod metrics;
mod package;
mod parsers_never_panic;
mod pipeline;
mod reload;
mod reports;
mod runbooks;
mod sms_voice;
mod webhooks;
mod zk_fixtures;
