//! Warm start (`[windows] warm_start = true`): before the feeds start, every window the engine
//! would create is seeded from the Parquet history of the last window length, so bands and cycles
//! are meaningful at once. Owns finding the history (the Parquet sink's `root`), reading it pair
//! by pair through `tickflow-history`, turning names into ids (the registry, the enabled venues)
//! and handing plain values to the pipeline; what a seed does to a window is the core's
//! (`WindowStore::seed`). Memory is one pair read plus `SEED_QUEUE_PAIRS` per shard in flight.

use std::path::PathBuf;
use std::time::Instant;

use tickflow_core::pipeline::Pipeline;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::shard::WindowSeed;
use tickflow_core::venue::Venue;
use tickflow_history::{History, HistoryError};

use crate::config::Config;

/// The file name of the Parquet sink's plugin, by which its `[[sinks]]` entry is recognised.
pub const PARQUET_PLUGIN_FILE: &str = "libtickflow_parquet.so";

/// What one warm start did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WarmStartReport {
    /// Pairs with samples in the range.
    pub pairs_read: u64,
    /// Pairs whose symbol is not in the registry (or retired) or whose venues are not enabled.
    pub pairs_unknown: u64,
    pub windows_seeded: u64,
    pub seed_samples: u64,
    /// Pairs not seeded because their shard had no free window.
    pub seed_skipped_capacity: u64,
    /// Spreads files of the range, and of them those skipped as unreadable.
    pub files: u64,
    pub files_skipped: u64,
    pub elapsed_ms: u64,
}

/// Why warm start seeded nothing.
#[derive(Debug, thiserror::Error)]
pub enum WarmStartError {
    #[error(
        "no Parquet sink ([[sinks]] with path …/{PARQUET_PLUGIN_FILE} and a [sinks.config] root) to read history from"
    )]
    NoParquetSink,
    #[error("cannot register the configured symbols: {0}")]
    Symbols(String),
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// The `root` of the first Parquet sink in `[[sinks]]`, if any.
pub fn history_root(config: &Config) -> Option<PathBuf> {
    config
        .sinks
        .iter()
        .filter(|sink| {
            sink.path
                .file_name()
                .is_some_and(|name| name == PARQUET_PLUGIN_FILE)
        })
        .find_map(|sink| sink.config.get("root")?.as_str().map(PathBuf::from))
}

/// Seeds the pipeline's windows from the history of `[now_ms − window length, now_ms]`. Call
/// after the universe is in the registry and before the feeds take their producers.
pub fn seed_from_history(
    config: &Config,
    registry: &SymbolRegistry,
    pipeline: &mut Pipeline,
    now_ms: i64,
) -> Result<WarmStartReport, WarmStartError> {
    let started = Instant::now();
    let root = history_root(config).ok_or(WarmStartError::NoParquetSink)?;
    // A hand-written symbol list is registered by the feeds' planner; doing it now (idempotent)
    // lets its windows be seeded too.
    tickflow_feed::register_configured(&config.feeds, registry)
        .map_err(|error| WarmStartError::Symbols(error.to_string()))?;
    let history = History::open(&root)?;
    let window_length_ms = i64::try_from(config.windows.window_length_ms()).unwrap_or(i64::MAX);
    let mut recent = history.recent_samples(now_ms.saturating_sub(window_length_ms), now_ms)?;
    let enabled: Vec<Venue> = config
        .feeds
        .enabled_venues()
        .map(|(venue, _)| venue)
        .collect();
    let venue_id = |name: &str| {
        Venue::from_name(name)
            .filter(|venue| enabled.contains(venue))
            .map(Venue::id)
    };
    let before = pipeline.counters();
    let (mut pairs_read, mut pairs_unknown) = (0u64, 0u64);
    let seeds = recent.by_ref().filter_map(|pair| {
        pairs_read += 1;
        let seed = registry
            .lookup(pair.symbol.as_bytes())
            .filter(|&symbol_id| !registry.is_retired(symbol_id))
            .zip(venue_id(&pair.buy_venue).zip(venue_id(&pair.sell_venue)))
            .map(|(symbol_id, (buy_venue_id, sell_venue_id))| WindowSeed {
                symbol_id,
                buy_venue_id,
                sell_venue_id,
                samples: pair.bucket_start_ns.into_iter().zip(pair.mean_bp).collect(),
            });
        if seed.is_none() {
            pairs_unknown += 1;
        }
        seed
    });
    pipeline.seed_windows(seeds);
    let after = pipeline.counters();
    Ok(WarmStartReport {
        pairs_read,
        pairs_unknown,
        windows_seeded: after.windows_seeded - before.windows_seeded,
        seed_samples: after.seed_samples - before.seed_samples,
        seed_skipped_capacity: after.seed_skipped_capacity - before.seed_skipped_capacity,
        files: recent.files_found() as u64,
        files_skipped: recent.skipped().files,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// `seed_from_history` when `[windows] warm_start` is on, with its one log line; a missing or
/// unreadable history is a warning and the engine starts cold (`None`).
pub fn warm_start_if_configured(
    config: &Config,
    registry: &SymbolRegistry,
    pipeline: &mut Pipeline,
) -> Option<WarmStartReport> {
    if !config.windows.warm_start {
        return None;
    }
    let now_ms = tickflow_core::record::now_ns().div_euclid(1_000_000);
    match seed_from_history(config, registry, pipeline, now_ms) {
        Ok(report) => {
            tracing::info!(
                windows_seeded = report.windows_seeded,
                seed_samples = report.seed_samples,
                seed_skipped_capacity = report.seed_skipped_capacity,
                pairs_unknown = report.pairs_unknown,
                files_skipped = report.files_skipped,
                "warm start: {} windows seeded from {} samples in {} files in {} ms",
                report.windows_seeded,
                report.seed_samples,
                report.files,
                report.elapsed_ms
            );
            if report.files_skipped > 0 {
                tracing::warn!(
                    files_skipped = report.files_skipped,
                    "warm start: unreadable history files were left out"
                );
            }
            Some(report)
        }
        Err(error) => {
            tracing::warn!("warm start: {error}; starting without history");
            None
        }
    }
}
