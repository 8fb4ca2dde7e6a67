//! The engine's integration tests: one binary, one module per area.

mod budget;
mod decode_cli;
mod decode_golden;
mod feeds;
mod plugin_host;
mod shard;
mod tidy;
