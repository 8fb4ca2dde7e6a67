//! Integration tests: shard.
