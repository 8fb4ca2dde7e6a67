//! Warm start (`[windows] warm_start`): history written by the real Parquet plugin through the
//! real host (one bucket in 60 kept, as by default), then a fresh pipeline seeded from it is warm
//! at once with the kept samples' mean; a missing or damaged history seeds nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tickflow::config::Config;
use tickflow::warm_start::{WarmStartError, seed_from_history};
use tickflow_core::outbound::{DiscardOutbound, OutRecord, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::shard::window::WindowSummary;
use tickflow_core::venue::Venue;
use tickflow_host::SinkHost;
use tickflow_sdk::records::{SpreadSample, SymbolId};

use super::sink_budget::built_plugin;

const SECOND_NS: i64 = 1_000_000_000;
/// One hour of one-second buckets, the default window.
const BUCKETS: i64 = 3_600;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warm-start-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

fn config(plugin: &Path, root: &Path) -> Config {
    Config::from_toml_str(&format!(
        "[engine]\nshards = 2\nmax_symbols = 16\nmax_connection_slots = 4\n\
         [windows]\nbucket_ms = 1000\nbuckets = {BUCKETS}\nwarmup_buckets = 300\nwarm_start = true\n\
         [feeds]\nsymbols = [\"BTC-USDT\", \"ETH-USDT\"]\n[feeds.venue.binance]\n[feeds.venue.okx]\n\
         [[sinks]]\nname = \"history\"\npath = {:?}\n[sinks.config]\nroot = {:?}\n\
         spreads_every_n_buckets = 60\nroll_age_s = 1\n",
        plugin.display().to_string(),
        root.display().to_string()
    ))
    .expect("a valid config")
}

fn mean_bp(bucket: i64) -> f64 {
    (bucket.rem_euclid(17)) as f64 * 0.25 - 1.0
}

/// The last hour of BTC-USDT binance → okx, every bucket, through the real plugin and host
/// (which keep one bucket in 60); returns the symbol's id.
fn write_history(config: &Config, registry: &Arc<SymbolRegistry>, now_ns: i64) -> SymbolId {
    let symbol_id = registry.register("BTC-USDT").expect("room");
    let mut host = SinkHost::start(&config.sinks, 1, Some(Arc::clone(registry)))
        .expect("the parquet plugin starts");
    let mut outbounds = host.take_sink_outbounds();
    let now_bucket = now_ns.div_euclid(SECOND_NS);
    for bucket in now_bucket - BUCKETS + 1..now_bucket {
        outbounds[0].emit(&OutRecord::Spread(SpreadSample {
            bucket_start_ns: bucket * SECOND_NS,
            bucket_duration_ns: SECOND_NS,
            mean_bp: mean_bp(bucket),
            samples: 2,
            symbol_id,
            buy_venue_id: Venue::Binance.id(),
            sell_venue_id: Venue::Okx.id(),
            ..SpreadSample::default()
        }));
        if bucket % 256 == 0 {
            outbounds[0].flush();
        }
    }
    outbounds[0].flush();
    drop(outbounds);
    let stats = host.shutdown();
    assert_eq!(stats[0].lost(), 0, "{:?}", stats[0]);
    symbol_id
}

fn start_pipeline(config: &Config) -> Pipeline {
    let outbounds: Vec<Box<dyn Outbound>> = (0..config.engine.shard_count())
        .map(|_| Box::new(DiscardOutbound) as Box<dyn Outbound>)
        .collect();
    Pipeline::start(&config.engine, &config.windows, outbounds).expect("starts")
}

fn windows(pipeline: &Pipeline) -> Vec<WindowSummary> {
    pipeline
        .snapshots()
        .iter()
        .flat_map(|snapshot| snapshot.windows.clone())
        .collect()
}

#[test]
fn a_pipeline_seeded_from_parquet_history_is_warm_at_once_with_its_mean() {
    let plugin = built_plugin("tickflow-parquet", "tickflow_parquet");
    let dir = scratch_dir("seeded");
    let config = config(&plugin, &dir.join("history"));
    let registry = Arc::new(SymbolRegistry::new(config.engine.max_symbols));
    let now_ns = tickflow_core::record::now_ns();
    let symbol_id = write_history(&config, &registry, now_ns);
    // What the history holds: the kept buckets' means (one bucket in 60 of the last hour).
    let history = tickflow_history::History::open(&dir.join("history")).expect("opens");
    let now_ms = now_ns / 1_000_000;
    let kept: Vec<_> = history
        .recent_samples(now_ms - BUCKETS * 1_000, now_ms)
        .expect("reads")
        .collect();
    assert_eq!(kept.len(), 1);
    let kept_bp = &kept[0].mean_bp;
    assert!((59..=60).contains(&kept_bp.len()), "{}", kept_bp.len());
    let kept_mean = kept_bp.iter().sum::<f64>() / kept_bp.len() as f64;

    let mut pipeline = start_pipeline(&config);
    let report = seed_from_history(&config, &registry, &mut pipeline, now_ms).expect("seeds");
    assert_eq!(report.windows_seeded, 1, "{report:?}");
    assert_eq!(report.seed_samples, kept_bp.len() as u64, "{report:?}");
    assert_eq!(
        (
            report.pairs_read,
            report.pairs_unknown,
            report.files_skipped
        ),
        (1, 0, 0)
    );
    let [window] = windows(&pipeline)[..] else {
        panic!("one seeded window: {:?}", windows(&pipeline))
    };
    assert_eq!(window.symbol_id, symbol_id);
    assert_eq!(
        (window.buy_venue_id, window.sell_venue_id),
        (Venue::Binance.id(), Venue::Okx.id())
    );
    assert!(!window.warming, "{window:?}");
    assert!(
        (window.mean_bp - kept_mean).abs() < 1e-9,
        "{window:?} vs {kept_mean}"
    );
    drop(pipeline.take_producer());
    pipeline.shutdown();
}

#[test]
fn a_missing_or_damaged_history_seeds_nothing() {
    let plugin = built_plugin("tickflow-parquet", "tickflow_parquet");
    let dir = scratch_dir("damaged");
    let registry = SymbolRegistry::new(16);

    let missing = config(&plugin, &dir.join("absent"));
    let mut pipeline = start_pipeline(&missing);
    let error = seed_from_history(&missing, &registry, &mut pipeline, 1_700_000_000_000)
        .expect_err("no history root");
    assert!(matches!(error, WarmStartError::History(_)), "{error}");
    assert_eq!(pipeline.counters().windows_seeded, 0);
    pipeline.shutdown();

    let root = dir.join("history");
    let hour_dir = root.join("spreads/date=2023-11-14/hour=22");
    std::fs::create_dir_all(&hour_dir).expect("created");
    std::fs::write(hour_dir.join("part-0.parquet"), b"PAR1 not really").expect("written");
    let damaged = config(&plugin, &root);
    let mut pipeline = start_pipeline(&damaged);
    // 2023-11-14T22:13:20Z: the damaged hour is in the window.
    let report = seed_from_history(&damaged, &registry, &mut pipeline, 1_700_000_000_000)
        .expect("a damaged file is skipped, not fatal");
    assert_eq!(
        (report.files, report.files_skipped, report.windows_seeded),
        (1, 1, 0)
    );
    pipeline.shutdown();
}
