//! Counters shared by the runner thread (the sink instance) and the writer thread, per dataset,
//! and the bytes of rows in flight between them (part of the memory bound).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tickflow_formats::Dataset;

/// One dataset's counters. `received = filtered + written + dropped + (rows still buffered or
/// in files not yet committed)`; after `destroy` the last term is zero.
#[derive(Debug, Default)]
pub struct DatasetCounters {
    /// Records the engine delivered.
    pub received: AtomicU64,
    /// Spread samples left out by the sample-resolution rules (by config, not a loss).
    pub filtered: AtomicU64,
    /// Rows in committed (visible) files.
    pub written: AtomicU64,
    /// Rows lost: no room in the memory bound, or a faulted file that had to be abandoned.
    pub dropped: AtomicU64,
    /// Bytes of committed files.
    pub bytes_written: AtomicU64,
}

/// Everything both threads count.
#[derive(Debug, Default)]
pub struct SharedStats {
    pub datasets: [DatasetCounters; 5],
    /// Write, commit, retention and compaction errors (each failed attempt).
    pub errors: AtomicU64,
    /// Bytes of rows handed to the writer and not yet written into a file.
    pub in_flight_bytes: AtomicU64,
    pub files_committed: AtomicU64,
    pub partitions_deleted: AtomicU64,
    pub retention_bytes_deleted: AtomicU64,
    pub hours_compacted: AtomicU64,
    /// Name cache resets (the cache was full).
    pub name_cache_resets: AtomicU64,
    /// Set while the runner waits for the writer to commit everything (the shutdown flush):
    /// the writer runs no compaction slice meanwhile.
    pub draining: AtomicBool,
}

impl SharedStats {
    pub fn dataset(&self, dataset: Dataset) -> &DatasetCounters {
        &self.datasets[dataset.index()]
    }
    pub fn add(counter: &AtomicU64, delta: u64) {
        counter.fetch_add(delta, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    pub fn sub_in_flight(&self, bytes: u64) {
        // Never below zero: every sub matches an earlier add of the same chunk.
        let _ = self
            .in_flight_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
                Some(value.saturating_sub(bytes))
            });
    }
    /// Sums over datasets: (received, written, dropped, bytes written).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        self.datasets.iter().fold((0, 0, 0, 0), |sum, counters| {
            (
                sum.0 + SharedStats::get(&counters.received),
                sum.1 + SharedStats::get(&counters.written),
                sum.2 + SharedStats::get(&counters.dropped),
                sum.3 + SharedStats::get(&counters.bytes_written),
            )
        })
    }
}
