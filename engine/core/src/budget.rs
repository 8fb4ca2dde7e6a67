//! The worst-case memory budget: its lines, its total and how it prints, plus the lines of the core
//! data path (feed rings, registry, latest quotes, windows, snapshots) computed from `[engine]` and
//! `[windows]` alone. The feeds and the plugin host add their own lines; the binary composes them.
//!
//! Each line follows the layout of the code it sizes (ring element size, window header and bucket
//! layout, registry tables): when a layout changes, its size function changes with it.

use crate::config::{EngineConfig, WindowsConfig};
use crate::record::FeedEvent;
use crate::registry::SymbolRegistry;
use crate::shard::window::{WindowSummary, bytes_per_window, index_bytes};
use crate::shard::{
    LATEST_QUOTE_BYTES, SNAPSHOT_BUFFERS_PER_SHARD, local_symbol_capacity, windows_per_shard,
};
use crate::venue::VENUE_COUNT;

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

/// The core data path's lines for `engine` and `windows` (every ring full, every window alive).
pub fn core_lines(engine: &EngineConfig, windows: &WindowsConfig) -> Vec<BudgetLine> {
    let shards = engine.shard_count();
    let local_symbols = local_symbol_capacity(engine.max_symbols, shards);
    // Pass-through (`windows.enabled = false`, a collector) holds one window slot per shard.
    let shard_windows = if windows.enabled {
        windows_per_shard(windows.max_windows, engine.max_symbols, shards)
    } else {
        1
    };
    let ring_bytes = engine.max_connection_slots
        * shards
        * engine.ring_capacity_records
        * size_of::<FeedEvent>();
    let window_bytes = shards
        * (shard_windows * (bytes_per_window(windows.buckets) + 2 * size_of::<u32>())
            + index_bytes(local_symbols));
    vec![
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
            bytes: shards * SNAPSHOT_BUFFERS_PER_SHARD * shard_windows * size_of::<WindowSummary>(),
            detail: format!(
                "{shards} shards × {SNAPSHOT_BUFFERS_PER_SHARD} buffers × {shard_windows} windows × {} B",
                size_of::<WindowSummary>()
            ),
        },
    ]
}

impl MemoryBudget {
    /// A budget of `lines` (lines of 0 bytes are left out).
    pub fn from_lines(mut lines: Vec<BudgetLine>) -> MemoryBudget {
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
