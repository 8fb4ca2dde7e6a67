//! Simulated venues, reconnect storms and load scenarios for tickflow.
//!
//! The venue simulators themselves live in the `tickflow-sim` crate (`engine/sim`), so that
//! `tickflow demo` can use them without depending on this crate; this crate drives them: it
//! writes an engine config pointing at them, runs the real `tickflow` binary, injects faults at a
//! rate, and samples the engine from /proc and from its `tickflow-stats` lines.

pub mod engine;
pub mod faults;
pub mod proc_stat;

pub use engine::{EngineOptions, EngineProcess, engine_config_toml};
pub use faults::FaultRates;
pub use proc_stat::ProcSample;
