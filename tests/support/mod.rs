//! Shared support for integration tests that need real processes: a
//! ZooKeeper ensemble (`ensemble`), the `zkalert` binary run against it
//! (`zkalert`), and the process plumbing both use (`process`).
//!
//! Each test crate includes this with `mod support;` and uses only part of
//! it, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod ensemble;
pub mod http;
pub mod loopback;
pub mod process;
pub mod tmpfs;
pub mod zkalert;
