//! The engine's worst-case memory budget composed from every part's own lines: the process base
//! (a measured constant), the core data path (tickflow-core), the connections' buffers and the
//! decoding scratch (tickflow-feed), the instrument lists of discovery (tickflow-universe), the
//! sinks' lanes (tickflow-host) and, per sink, the memory its plugin states for its config (ABI
//! 1.2 `memory_bound`; "not stated" lines count 0). Printed at start, shown by `tickflow
//! check-config`, and checked against measured RSS by a test.

pub use tickflow_core::budget::{BudgetLine, MemoryBudget};
use tickflow_host::SinkMemoryBound;

use crate::config::Config;

/// The name of the budget line of one sink plugin's stated memory (its detail names the sink).
pub const SINK_PLUGIN_LINE: &str = "sink plugin";

/// What every engine process holds whatever its config: the binary's and libraries' resident
/// pages, the runtimes and their thread stacks, the allocator's own metadata, the control plane.
/// Measured: 57 MiB of RSS for a one-symbol engine with its control plane up, of which 9 MiB are
/// its feed rings (their own line): 48 MiB (2026-12-01, release build, /proc/PID/status); an
/// upper estimate, as it also holds what other lines' buffers had touched at start.
/// Without it a small config's RSS was over its own "worst case" and its memory alert fired (and
/// shed windows) on a healthy engine.
pub const PROCESS_BASE_BYTES: usize = 48 << 20;

/// The budget of everything `config` lets the engine hold at once. Loads each sink's plugin (as
/// config validation does) to ask its stated memory bound.
pub fn memory_budget(config: &Config) -> MemoryBudget {
    memory_budget_with_bounds(config, &tickflow_host::sink_memory_bounds(&config.sinks))
}

/// [`memory_budget`] with the plugins' statements already asked (`check-config` reports them).
pub fn memory_budget_with_bounds(
    config: &Config,
    sink_bounds: &[(String, SinkMemoryBound)],
) -> MemoryBudget {
    let engine = &config.engine;
    let shards = config.shard_count();
    let mut lines = vec![BudgetLine {
        name: "process base",
        bytes: PROCESS_BASE_BYTES,
        detail:
            "binary and libraries, runtimes and thread stacks, allocator metadata, control plane"
                .to_owned(),
    }];
    lines.extend(tickflow_core::budget::core_lines(engine, &config.windows));
    // After the feed rings (the base's line, then the rings), as the data flows: what the slots
    // hold before the rings.
    let at = 2.min(lines.len());
    lines.splice(at..at, tickflow_feed::budget_lines(engine, &config.feeds));
    // Discovery's request and the lists it keeps, when the universe is discovered.
    if config.discovers() {
        lines.extend(tickflow_universe::budget_lines(&config.universe));
    }
    lines.push(BudgetLine {
        name: "sink rings",
        bytes: tickflow_host::sinks_budget_bytes(&config.sinks, shards),
        detail: format!(
            "{} sinks × {} lanes (one per shard + telemetry)",
            config.sinks.len(),
            shards + 1
        ),
    });
    if !config.sources.is_empty() {
        lines.push(BudgetLine {
            name: "nats sources",
            bytes: config
                .sources
                .iter()
                .map(|source| tickflow_source_nats::budget_bytes(source, engine.max_symbols))
                .sum(),
            detail: format!(
                "{} sources: unacknowledged messages (max_ack_pending per consumer), duplicate filter, liveness, names",
                config.sources.len()
            ),
        });
    }
    let mut budget = MemoryBudget::from_lines(lines);
    // One line per sink, stated or not (`add` keeps a line of 0 bytes, so "not stated" shows).
    for (name, bound) in sink_bounds {
        let bytes = bound
            .stated_bytes()
            .map_or(0, |bytes| usize::try_from(bytes).unwrap_or(usize::MAX));
        budget.add(SINK_PLUGIN_LINE, bytes, format!("sink {name}: {bound}"));
    }
    budget
}
