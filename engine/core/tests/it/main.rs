//! tickflow-core integration tests: shards, windows and the pipeline driven directly.

mod event_time;
mod seed;
mod shard;
