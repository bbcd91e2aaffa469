//! The ZooKeeper source: polls each node's four-letter words (or its
//! AdminServer) and derives per-node and per-cluster metrics.

pub mod admin;
pub mod client;
pub mod parse;
