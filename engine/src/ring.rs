//! Feed → shard rings (being written).
