//! The engine's worst-case memory budget composed from every part's own lines: the core data
//! path (tickflow-core), the connections' buffers and the decoding scratch (tickflow-feed) and
//! the sinks' lanes (tickflow-host). Printed at start, shown by `tickflow check-config`, and
//! checked against measured RSS by a test.

pub use tickflow_core::budget::{BudgetLine, MemoryBudget};

use crate::config::Config;

/// The budget of everything `config` lets the engine hold at once.
pub fn memory_budget(config: &Config) -> MemoryBudget {
    let engine = &config.engine;
    let shards = config.shard_count();
    let mut lines = tickflow_core::budget::core_lines(engine, &config.windows);
    // After the feed rings, as the data flows: what the slots hold before the rings.
    let at = 1.min(lines.len());
    lines.splice(at..at, tickflow_feed::budget_lines(engine, &config.feeds));
    lines.push(BudgetLine {
        name: "sink rings",
        bytes: tickflow_host::sinks_budget_bytes(&config.sinks, shards),
        detail: format!(
            "{} sinks × {} lanes (one per shard + telemetry)",
            config.sinks.len(),
            shards + 1
        ),
    });
    MemoryBudget::from_lines(lines)
}
