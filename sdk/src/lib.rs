//! The tickflow sink plugin SDK: the C ABI between the engine and its sink plugins (record
//! layouts, descriptor, host callbacks, status codes) and a safe Rust layer over it.
//!
//! This crate is the contract between the engine and every plugin. It must never depend on the
//! engine (a tidy test checks it): plugins build against `sdk/` alone. See `sdk/README.md` for the
//! author's guide and `sdk/include/tickflow_sink.h` for the same ABI in C.

pub mod abi;
pub mod records;
pub mod sink;

pub use records::*;
pub use sink::{
    Batch, HostHandle, LogLevel, Metric, MetricKind, MetricSampleView, NoConfig, Sink, SinkError,
};

/// Re-exported so plugins parse their config with the same versions the SDK uses.
pub use serde;
pub use toml;
