//! Benchmarks live in benches/; this crate holds only the workloads they
//! share with its measuring binaries.

pub mod pipeline_workload;
