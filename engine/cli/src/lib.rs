//! The `tickflow` binary's library side: the configuration file composed from each crate's
//! section, the memory budget composed from each crate's lines, and the universe (discovery
//! applied to the registry). The subcommands in `cli/` wire
//! the crates together with these; tests and `tickflow-load` use them too.
//!
//! Data flows feed → decode → ring → shard → window → sink; see ARCHITECTURE.md for the crates.

pub mod budget;
pub mod config;
pub mod metrics;
pub mod universe;
pub mod warm_start;
