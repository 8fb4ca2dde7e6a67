//! tickflow-core integration tests: shards, windows and the pipeline driven directly.

mod seed;
mod shard;
