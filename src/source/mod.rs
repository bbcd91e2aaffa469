//! Sources: where samples come from (ZooKeeper four-letter words and
//! AdminServer, Prometheus text, host checks). Each poll yields `Sample`s
//! for the series store.

pub mod admin;
pub mod failures;
pub mod host;
pub mod prom;
pub mod zk;
