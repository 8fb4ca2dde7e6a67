//! The worst-case memory budget, computed from the configuration alone: what the engine can hold
//! when every ring is full, every window exists and every buffer is at its limit. Printed at start,
//! shown by `tickflow check-config`, and checked against measured RSS by a test.
//!
//! Each line follows the layout of the code it sizes (ring element size, window header and bucket
//! layout, registry tables): when a layout changes, its size function changes with it.

use crate::config::Config;
use crate::record::FeedEvent;
use crate::registry::SymbolRegistry;
use crate::shard::window::{WindowSummary, bytes_per_window, index_bytes};
use crate::shard::{local_symbol_capacity, windows_per_shard};
use crate::venue::VENUE_COUNT;

/// Bytes of one latest-quote cell in a shard (bid, ask, receive time, liveness).
const LATEST_QUOTE_BYTES: usize = 32;
/// Bytes per slot, in multiples of `max_frame_bytes`, that a frame can make a connection hold at
/// worst: the socket's read buffer (1), the HTX inflate buffer (1), and simd-json's scratch for a
/// frame of only structural characters (input copy 1, string buffer 1, u32 structural indexes 4,
/// 24-byte tape nodes for 2-byte values 12): 20 in all.
const FRAME_BUFFER_MULTIPLE: usize = 20;
/// Snapshot buffers alive per shard at worst: the published one, the spare being refilled, and one
/// a slow reader still holds.
const SNAPSHOT_BUFFERS_PER_SHARD: usize = 3;

/// One line of the budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetLine {
    pub name: &'static str,
    pub bytes: usize,
    pub detail: String,
}

/// The engine's worst-case memory, line by line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    pub lines: Vec<BudgetLine>,
    pub total_bytes: usize,
}

impl MemoryBudget {
    pub fn from_config(config: &Config) -> MemoryBudget {
        let engine = &config.engine;
        let windows = &config.windows;
        let shards = config.shard_count();
        let local_symbols = local_symbol_capacity(engine.max_symbols, shards);
        let shard_windows = windows_per_shard(windows.max_windows, engine.max_symbols, shards);
        let ring_bytes = engine.max_connection_slots
            * shards
            * engine.ring_capacity_records
            * size_of::<FeedEvent>();
        let window_bytes = shards
            * (shard_windows * (bytes_per_window(windows.buckets) + 2 * size_of::<u32>())
                + index_bytes(local_symbols));
        let mut lines = vec![
            BudgetLine {
                name: "feed rings",
                bytes: ring_bytes,
                detail: format!(
                    "{} slots × {shards} shards × {} records × {} B",
                    engine.max_connection_slots,
                    engine.ring_capacity_records,
                    size_of::<FeedEvent>()
                ),
            },
            BudgetLine {
                name: "frame buffers",
                bytes: engine.max_connection_slots
                    * (FRAME_BUFFER_MULTIPLE * engine.max_frame_bytes
                        + engine.max_records_per_frame * size_of::<FeedEvent>()),
                detail: format!(
                    "{} slots × ({FRAME_BUFFER_MULTIPLE} × {} B: socket read, inflate, JSON parser scratch; + {} records)",
                    engine.max_connection_slots,
                    engine.max_frame_bytes,
                    engine.max_records_per_frame
                ),
            },
            BudgetLine {
                name: "symbol registry",
                bytes: SymbolRegistry::budget_bytes(engine.max_symbols),
                detail: format!("{} symbols", engine.max_symbols),
            },
            BudgetLine {
                name: "latest quotes",
                bytes: shards * local_symbols * VENUE_COUNT * LATEST_QUOTE_BYTES,
                detail: format!("{shards} shards × {local_symbols} symbols × {VENUE_COUNT} venues"),
            },
            BudgetLine {
                name: "spread windows",
                bytes: window_bytes,
                detail: format!(
                    "{shards} shards × {shard_windows} windows × {} B ({} buckets of {} ms as f32 means + header + blocks)",
                    bytes_per_window(windows.buckets),
                    windows.buckets,
                    windows.bucket_ms
                ),
            },
            BudgetLine {
                name: "window snapshots",
                bytes: shards
                    * SNAPSHOT_BUFFERS_PER_SHARD
                    * shard_windows
                    * size_of::<WindowSummary>(),
                detail: format!(
                    "{shards} shards × {SNAPSHOT_BUFFERS_PER_SHARD} buffers × {shard_windows} windows × {} B",
                    size_of::<WindowSummary>()
                ),
            },
        ];
        lines.push(BudgetLine {
            name: "sink rings",
            bytes: crate::plugin::sinks_budget_bytes(config),
            detail: format!(
                "{} sinks × {} lanes (one per shard + telemetry)",
                config.sinks.len(),
                shards + 1
            ),
        });
        lines.retain(|line| line.bytes > 0);
        let total_bytes = lines.iter().map(|line| line.bytes).sum();
        MemoryBudget { lines, total_bytes }
    }

    /// Adds a line computed elsewhere (sinks size their own rings).
    pub fn add(&mut self, name: &'static str, bytes: usize, detail: String) {
        self.lines.push(BudgetLine {
            name,
            bytes,
            detail,
        });
        self.total_bytes += bytes;
    }
}

fn mebibytes(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            formatter,
            "memory budget (worst case): {:.1} MiB",
            mebibytes(self.total_bytes)
        )?;
        for line in &self.lines {
            writeln!(
                formatter,
                "  {:<18} {:>9.1} MiB  {}",
                line.name,
                mebibytes(line.bytes),
                line.detail
            )?;
        }
        Ok(())
    }
}
