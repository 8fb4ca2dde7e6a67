//! Simulated venues, reconnect storms and load scenarios for tickflow.
//!
//! The venue simulators themselves live in the `tickflow-sim` crate (`engine/sim`), so that
//! `tickflow demo` can use them without depending on this crate; this crate drives them: it
//! writes an engine config pointing at them, runs the real `tickflow` binary, injects faults at a
//! rate, and samples the engine from /proc and from its `tickflow-stats` lines.

pub mod broadcast;
pub mod engine;
pub mod faults;
pub mod history_gen;
pub mod load;
pub mod parquet_bench;
pub mod parquet_read;
pub mod pki;
pub mod proc_stat;
pub mod real_rates;
pub mod scale_out;
pub mod scenario;

pub use engine::{EngineOptions, EngineProcess, SinkOptions, engine_config_toml};
pub use faults::FaultRates;
pub use proc_stat::ProcSample;

const NAMED_BASES: [&str; 8] = ["BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "LTC"];

/// `count` canonical symbols: BTC-USDT, ETH-USDT, ... for the first eight, then T<n>-USDT.
pub fn symbol_names(count: usize) -> Vec<String> {
    (0..count)
        .map(|index| match NAMED_BASES.get(index) {
            Some(base) => format!("{base}-USDT"),
            None => format!("T{index}-USDT"),
        })
        .collect()
}
