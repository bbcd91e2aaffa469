//! Shared support for integration tests that need real processes: a
//! ZooKeeper ensemble (`ensemble`), the `zkalert` binary run against it
//! (`zkalert`), and the process plumbing both use (`process`).
//!
//! Each test module uses only part of it (and `cargo test --test it X`
//! compiles it all), hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod ensemble;
pub mod http;
pub mod loopback;
pub mod process;
pub mod prometheus;
pub mod smtp;
pub mod tmpfs;
pub mod zkalert;
