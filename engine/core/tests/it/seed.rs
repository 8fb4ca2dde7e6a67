//! Warm start: `WindowStore::seed` fills a window from history samples as live closed buckets
//! would, counts what it did, never evicts, and decides warming by the samples' time span.

use tickflow_core::records::{OpportunityEvent, SpreadSample, SymbolId, VenueId};
use tickflow_core::shard::window::{
    SeedOutcome, WindowOutput, WindowParams, WindowStore, WindowSummary,
};

const SECOND_NS: i64 = 1_000_000_000;
/// A bucket boundary (1 s buckets), well after the epoch.
const NOW_NS: i64 = 1_700_000_000 * SECOND_NS;

#[derive(Default)]
struct Emitted {
    samples: Vec<SpreadSample>,
}

impl WindowOutput for Emitted {
    fn spread_sample(&mut self, sample: &SpreadSample) {
        self.samples.push(*sample);
    }
    fn opportunity(&mut self, _event: &OpportunityEvent) {}
}

fn store(buckets: usize, max_windows: usize, warmup_buckets: usize) -> WindowStore {
    WindowStore::new(WindowParams {
        bucket_ns: SECOND_NS,
        buckets,
        max_windows,
        local_symbols: 4,
        band_k: 2.0,
        thresholds_bp: vec![50.0],
        warmup_buckets,
        taker_fees_bp: [0.0; 8],
        cycles_on_net: false,
        prefault: true,
    })
}

fn summaries(store: &WindowStore) -> Vec<WindowSummary> {
    let mut summaries = Vec::new();
    store.summarize_into(&mut summaries);
    summaries
}

/// One sample every `every_n` buckets over the `buckets - 1` closed buckets before `NOW_NS` (a
/// window of `buckets` ending at `NOW_NS`'s bucket, as the Parquet sink keeps them), values exact
/// in f32.
fn history(buckets: i64, every_n: i64, value_of: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (1..buckets)
        .rev()
        .filter(|back| back % every_n == 0)
        .map(|back| (NOW_NS - back * SECOND_NS, value_of(back)))
        .collect()
}

#[test]
fn a_seeded_window_is_warm_at_once_with_the_samples_statistics() {
    let mut windows = store(100, 4, 30);
    // One bucket in 10 kept: 9 samples spanning 81 buckets ≥ warmup 30.
    let samples = history(100, 10, |back| (back / 10) as f64 * 0.5);
    let outcome = windows.seed(SymbolId(1), 0, VenueId(0), VenueId(1), &samples, NOW_NS);
    assert_eq!(outcome, SeedOutcome::Seeded { samples: 9 });
    let [summary] = summaries(&windows)[..] else {
        panic!("one window")
    };
    let values: Vec<f64> = samples.iter().map(|(_, value)| *value).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!(!summary.warming);
    assert_eq!(summary.buckets_filled, 9);
    assert!((summary.mean_bp - mean).abs() < 1e-12, "{summary:?}");
    assert_eq!(summary.min_bp, 0.5);
    assert_eq!(summary.max_bp, 4.5);
    let counts = windows.counts();
    assert_eq!(
        (counts.windows_seeded, counts.seed_samples, counts.live),
        (1, 9, 1)
    );

    // Live data goes on from there, through the same window: its first closed bucket's sample
    // is not flagged warming and the window statistics include the seeded buckets.
    let mut emitted = Emitted::default();
    windows.update(
        SymbolId(1),
        0,
        VenueId(0),
        VenueId(1),
        7.0,
        NOW_NS,
        &mut emitted,
    );
    windows.update(
        SymbolId(1),
        0,
        VenueId(0),
        VenueId(1),
        7.0,
        NOW_NS + SECOND_NS,
        &mut emitted,
    );
    let [sample] = emitted.samples[..] else {
        panic!("one closed bucket: {:?}", emitted.samples)
    };
    assert_eq!(sample.flags, 0);
    assert_eq!(
        sample.window_mean_bp,
        (values.iter().sum::<f64>() + 7.0) / 10.0
    );
}

#[test]
fn samples_spanning_less_than_warmup_leave_the_window_warming() {
    let mut windows = store(100, 4, 30);
    // Only the last 20 buckets have history (the engine was down before).
    let samples = history(20, 10, |_| 3.0);
    windows.seed(SymbolId(1), 0, VenueId(2), VenueId(3), &samples, NOW_NS);
    let [summary] = summaries(&windows)[..] else {
        panic!("one window")
    };
    assert!(summary.warming);
    assert_eq!(summary.mean_bp, 3.0);
}

#[test]
fn seeding_skips_old_future_and_non_finite_samples_and_never_evicts() {
    let mut windows = store(10, 1, 2);
    let samples = vec![
        (NOW_NS - 50 * SECOND_NS, 100.0), // older than the window
        (NOW_NS - 5 * SECOND_NS, f64::NAN),
        (NOW_NS - 4 * SECOND_NS, 2.0),
        (NOW_NS - 4 * SECOND_NS, 9.0), // the same bucket again
        (NOW_NS - 2 * SECOND_NS, 4.0),
        (NOW_NS, 100.0), // the current bucket: live data's
    ];
    let outcome = windows.seed(SymbolId(1), 0, VenueId(0), VenueId(1), &samples, NOW_NS);
    assert_eq!(outcome, SeedOutcome::Seeded { samples: 2 });
    assert_eq!(summaries(&windows)[0].mean_bp, 3.0);
    assert_eq!(
        windows.seed(SymbolId(1), 0, VenueId(0), VenueId(1), &samples, NOW_NS),
        SeedOutcome::SkippedExisting
    );
    assert_eq!(
        windows.seed(SymbolId(1), 0, VenueId(1), VenueId(0), &samples, NOW_NS),
        SeedOutcome::SkippedCapacity
    );
    assert_eq!(
        windows.seed(
            SymbolId(1),
            0,
            VenueId(1),
            VenueId(0),
            &samples[..1],
            NOW_NS
        ),
        SeedOutcome::Empty
    );
    let counts = windows.counts();
    assert_eq!(
        (
            counts.windows_seeded,
            counts.seed_skipped_capacity,
            counts.evicted,
            counts.live
        ),
        (1, 1, 0, 1)
    );
}

#[test]
fn the_pipeline_hands_seeds_to_their_shards_before_any_record() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicI64;
    use tickflow_core::config::{EngineConfig, WindowsConfig};
    use tickflow_core::outbound::{DiscardOutbound, Outbound};
    use tickflow_core::pipeline::Pipeline;
    use tickflow_core::shard::{ShardClock, WindowSeed};

    let engine = EngineConfig {
        shards: 2,
        max_symbols: 16,
        max_connection_slots: 1,
        ring_capacity_records: 16,
        ..EngineConfig::default()
    };
    let windows = WindowsConfig {
        bucket_ms: 1000,
        buckets: 100,
        warmup_buckets: 30,
        ..WindowsConfig::default()
    };
    let outbounds: Vec<Box<dyn Outbound>> = (0..2)
        .map(|_| Box::new(DiscardOutbound) as Box<dyn Outbound>)
        .collect();
    let clock = ShardClock::Manual(Arc::new(AtomicI64::new(NOW_NS)));
    let mut pipeline = Pipeline::start_with_clock(&engine, &windows, outbounds, clock).unwrap();
    let samples = history(100, 10, |back| back as f64);
    let seeds: Vec<WindowSeed> = (0..5u32)
        .map(|symbol| WindowSeed {
            symbol_id: SymbolId(symbol),
            buy_venue_id: VenueId(0),
            sell_venue_id: VenueId(3),
            samples: samples.clone(),
        })
        .chain(std::iter::once(WindowSeed {
            // Beyond max_symbols: no shard owns it.
            symbol_id: SymbolId(10_000),
            buy_venue_id: VenueId(0),
            sell_venue_id: VenueId(3),
            samples: samples.clone(),
        }))
        .collect();
    assert_eq!(pipeline.seed_windows(seeds), 6);
    let counters = pipeline.counters();
    assert_eq!((counters.windows_seeded, counters.seed_samples), (5, 45));
    // Seeded windows are in the snapshots at once, warm, with the samples' mean.
    let seeded: Vec<WindowSummary> = pipeline
        .snapshots()
        .iter()
        .flat_map(|snapshot| snapshot.windows.clone())
        .collect();
    assert_eq!(seeded.len(), 5);
    assert!(
        seeded
            .iter()
            .all(|summary| !summary.warming && summary.mean_bp == 50.0)
    );
    // Once producers are out, seeding is closed.
    let producer = pipeline.take_producer();
    assert!(producer.is_some());
    assert_eq!(pipeline.seed_windows(Vec::new()), 0);
    drop(producer);
    pipeline.shutdown();
}
