//! tickflow core: the data path without I/O. Venue and symbol identities, the feed → shard ring
//! matrix, shard threads with their latest quotes and rolling spread windows, the outbound hand-off
//! to sinks, the `[engine]` and `[windows]` config sections and the memory budget's core lines.
//!
//! Architecture invariant: no async runtime, no sockets, no files (checked by the layering test);
//! nothing on the shard thread takes a lock or allocates per record.

pub mod budget;
pub mod config;
pub mod outbound;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod ring;
pub mod shard;
pub mod shed;
pub mod venue;

pub use record::records;
