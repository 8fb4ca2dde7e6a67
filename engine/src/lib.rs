//! tickflow engine library: everything the `tickflow` binary runs, exposed for tests and benches.
//!
//! Data flows feed → decode → ring → shard → window → sink; see ARCHITECTURE.md for the map.

pub mod decode;
pub mod record;
pub mod registry;
pub mod venue;

pub use record::records;
pub mod budget;
pub mod config;
pub mod feed;
pub mod outbound;
pub mod pipeline;
pub mod plugin;
pub mod ring;
pub mod shard;
