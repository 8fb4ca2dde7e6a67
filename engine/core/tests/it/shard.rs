//! Integration tests: shards, spreads, rolling windows, opportunity cycles and the pipeline.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tickflow_core::config::{EngineConfig, WindowsConfig};
use tickflow_core::outbound::{OutRecord, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::record::FeedEvent;
use tickflow_core::records::{
    GAP_DISCONNECT, GAP_QUOTE_WITHDRAWN, GAP_SYMBOL_RETIRED, GapEvent, OPPORTUNITY_END,
    OPPORTUNITY_FLAG_NET, OPPORTUNITY_START, OpportunityEvent, Quote, SPREAD_FLAG_WARMING,
    SpreadSample, SymbolId, Trade, VenueId,
};
use tickflow_core::shard::thread::shard_params;
use tickflow_core::shard::window::{WindowOutput, WindowParams, WindowStore};
use tickflow_core::shard::{ShardClock, ShardState};

/// `[engine]` and `[windows]` of a config file, parsed and validated as the engine does.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    engine: EngineConfig,
    windows: WindowsConfig,
}

impl Config {
    fn from_toml_str(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|error| error.to_string())?;
        config
            .engine
            .validate()
            .map_err(|error| error.to_string())?;
        config
            .windows
            .validate()
            .map_err(|error| error.to_string())?;
        Ok(config)
    }
}

const SECOND_NS: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SECOND_NS;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<OutRecord>>>);

impl Outbound for Captured {
    fn emit(&mut self, record: &OutRecord) {
        self.0.lock().unwrap().push(*record);
    }
}

impl Captured {
    fn samples(&self) -> Vec<SpreadSample> {
        let records = self.0.lock().unwrap();
        records
            .iter()
            .filter_map(|r| match r {
                OutRecord::Spread(s) => Some(*s),
                _ => None,
            })
            .collect()
    }
    fn opportunities(&self) -> Vec<OpportunityEvent> {
        let records = self.0.lock().unwrap();
        records
            .iter()
            .filter_map(|r| match r {
                OutRecord::Opportunity(o) => Some(*o),
                _ => None,
            })
            .collect()
    }
    fn count(&self, kind: fn(&OutRecord) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|r| kind(r)).count()
    }
}

fn quote(symbol: u32, venue: u16, bid: f64, ask: f64, ts_recv_ns: i64) -> FeedEvent {
    FeedEvent::Quote(Quote {
        bid,
        bid_qty: 1.0,
        ask,
        ask_qty: 1.0,
        ts_recv_ns,
        symbol_id: SymbolId(symbol),
        venue_id: VenueId(venue),
        ..Quote::default()
    })
}

fn single_shard(config: &Config) -> (ShardState, Captured, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(T0));
    let params = shard_params(
        &config.engine,
        &config.windows,
        0,
        1,
        ShardClock::Manual(Arc::clone(&now)),
    );
    let captured = Captured::default();
    (
        ShardState::new(params, Box::new(captured.clone())),
        captured,
        now,
    )
}

fn small_config() -> Config {
    Config::from_toml_str(
        "[engine]\nshards = 1\nmax_symbols = 16\nstale_after_ms = 2000\n\
         [windows]\nbucket_ms = 1000\nbuckets = 10\nmax_windows = 64\nthresholds_bp = [40.0]\n\
         warmup_buckets = 0\n",
    )
    .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn spread_for_every_ordered_venue_pair() {
    let (mut shard, captured, now) = single_shard(&small_config());
    // Venue 0: 100.00 / 100.10. Venue 1: 100.50 / 100.60.
    shard.handle(&quote(3, 0, 100.00, 100.10, T0));
    shard.handle(&quote(3, 1, 100.50, 100.60, T0 + 1));
    now.store(T0 + SECOND_NS, Ordering::Release);
    shard.housekeeping();
    let mut samples = captured.samples();
    samples.sort_by_key(|s| (s.buy_venue_id, s.sell_venue_id));
    assert_eq!(samples.len(), 2, "{samples:?}");
    // Buy on venue 0 at its ask 100.10, sell on venue 1 at its bid 100.50.
    let buy0 = samples[0];
    assert_eq!(
        (buy0.buy_venue_id, buy0.sell_venue_id),
        (VenueId(0), VenueId(1))
    );
    assert!(close(buy0.last_bp, (100.50 - 100.10) / 100.10 * 10_000.0));
    // Buy on venue 1 at 100.60, sell on venue 0 at 100.00: negative.
    let buy1 = samples[1];
    assert_eq!(
        (buy1.buy_venue_id, buy1.sell_venue_id),
        (VenueId(1), VenueId(0))
    );
    assert!(close(buy1.last_bp, (100.00 - 100.60) / 100.60 * 10_000.0));
    assert_eq!(buy0.samples, 1);
    assert_eq!(buy0.bucket_start_ns, T0);
    assert_eq!(buy0.bucket_duration_ns, SECOND_NS);
    assert_eq!(captured.count(|r| matches!(r, OutRecord::Quote(_))), 2);
}

#[test]
fn eight_venues_update_fourteen_directed_pairs_per_quote() {
    let (mut shard, _captured, _now) = single_shard(&small_config());
    for venue in 0..8u16 {
        shard.handle(&quote(1, venue, 100.0, 100.1, T0 + venue as i64));
    }
    shard.handle(&quote(1, 3, 100.0, 100.1, T0 + 10));
    shard.publish_snapshot(T0);
    let counters = shard.counters();
    // Quote k (k = 0..7) pairs with k earlier venues, twice; the last quote pairs with 7.
    let expected: u64 = (0..8u64).map(|k| 2 * k).sum::<u64>() + 14;
    assert_eq!(counters.spread_updates.load(Ordering::Relaxed), expected);
    assert_eq!(counters.windows_live.load(Ordering::Relaxed), 56);
}

#[test]
fn stale_quote_takes_no_part() {
    let (mut shard, captured, now) = single_shard(&small_config());
    shard.handle(&quote(2, 0, 100.0, 100.1, T0));
    // 2.5 s later (stale_after_ms = 2000): venue 0's quote is too old to pair with.
    shard.handle(&quote(2, 1, 200.0, 200.1, T0 + 2_500_000_000));
    now.store(T0 + 4 * SECOND_NS, Ordering::Release);
    shard.housekeeping();
    assert!(captured.samples().is_empty());
    assert!(
        captured.opportunities().is_empty(),
        "a dead venue made an opportunity"
    );
    assert_eq!(shard.counters().stale_skips.load(Ordering::Relaxed), 1);
}

#[test]
fn gap_takes_the_venue_out_until_a_fresh_quote_and_ends_its_cycles() {
    let (mut shard, captured, _now) = single_shard(&small_config());
    shard.handle(&quote(2, 0, 100.0, 100.1, T0));
    shard.handle(&quote(2, 1, 101.0, 101.1, T0 + 1)); // buy 0 sell 1: +89.9 bp → start
    assert_eq!(captured.opportunities().len(), 1);
    shard.handle(&FeedEvent::Gap(GapEvent {
        ts_ns: T0 + 2,
        connection_id: 7,
        symbol_id: SymbolId(2),
        venue_id: VenueId(0),
        kind: GAP_DISCONNECT,
        reserved: [0; 5],
    }));
    let events = captured.opportunities();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, OPPORTUNITY_END);
    assert!(
        events[1].spread_bp.is_nan(),
        "ended by the gap, not by a spread"
    );
    // Venue 1 quotes again: venue 0 is out, so no spread and no new cycle.
    shard.handle(&quote(2, 1, 101.0, 101.1, T0 + 3));
    assert_eq!(captured.opportunities().len(), 2);
    assert_eq!(captured.count(|r| matches!(r, OutRecord::Gap(_))), 1);
    // A fresh venue 0 quote brings it back.
    shard.handle(&quote(2, 0, 100.0, 100.1, T0 + 4));
    assert_eq!(captured.opportunities().len(), 3);
}

#[test]
fn trades_pass_through_to_the_outbound() {
    let (mut shard, captured, _now) = single_shard(&small_config());
    let mut trade = Trade {
        price: 5.0,
        qty: 2.0,
        symbol_id: SymbolId(4),
        venue_id: VenueId(2),
        ..Trade::default()
    };
    assert!(trade.set_trade_id(b"12345"));
    shard.handle(&FeedEvent::Trade(trade));
    assert_eq!(
        captured.0.lock().unwrap().as_slice(),
        &[OutRecord::Trade(trade)]
    );
}

#[derive(Default)]
struct WindowEvents {
    samples: Vec<SpreadSample>,
    opportunities: Vec<OpportunityEvent>,
}

impl WindowOutput for WindowEvents {
    fn spread_sample(&mut self, sample: &SpreadSample) {
        self.samples.push(*sample);
    }
    fn opportunity(&mut self, event: &OpportunityEvent) {
        self.opportunities.push(*event);
    }
}

fn store(buckets: usize, max_windows: usize, thresholds_bp: Vec<f64>) -> WindowStore {
    WindowStore::new(WindowParams {
        bucket_ns: SECOND_NS,
        buckets,
        max_windows,
        local_symbols: 4,
        band_k: 2.0,
        thresholds_bp,
        warmup_buckets: 0,
        taker_fees_bp: [0.0; 8],
        cycles_on_net: false,
        prefault: true,
    })
}

fn summary_of(store: &WindowStore) -> tickflow_core::shard::window::WindowSummary {
    let mut summaries = Vec::new();
    store.summarize_into(&mut summaries);
    assert_eq!(summaries.len(), 1);
    summaries[0]
}

#[test]
fn opportunity_cycle_rises_above_threshold_and_ends_below_half() {
    let mut windows = store(10, 4, vec![40.0]);
    let mut events = WindowEvents::default();
    let (a, b) = (VenueId(0), VenueId(1));
    for (step, spread) in [10.0, 39.9, 41.0, 55.0, 30.0, 20.1, 19.9, 45.0]
        .iter()
        .enumerate()
    {
        windows.update(SymbolId(1), 0, a, b, *spread, T0 + step as i64, &mut events);
    }
    let kinds: Vec<(u8, f64)> = events
        .opportunities
        .iter()
        .map(|o| (o.kind, o.spread_bp))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (OPPORTUNITY_START, 41.0),
            (OPPORTUNITY_END, 19.9),
            (OPPORTUNITY_START, 45.0)
        ]
    );
    let end = events.opportunities[1];
    assert_eq!(end.peak_bp, 55.0);
    assert_eq!(end.started_ns, T0 + 2);
    assert_eq!(end.threshold_bp, 40.0);
    assert!(summary_of(&windows).cycle_active);
    assert_eq!(summary_of(&windows).cycles_completed, 1);
}

#[test]
fn cycles_are_counted_per_threshold_with_the_last_start_and_end() {
    let mut windows = store(10, 4, vec![20.0, 40.0]);
    let mut events = WindowEvents::default();
    let (a, b) = (VenueId(0), VenueId(1));
    // 25 starts the 20 bp cycle; 45 starts the 40 bp one; 15 ends the 40 bp one (< 20) but not
    // the 20 bp one (>= 10); 5 ends it; 30 starts a second 20 bp cycle.
    for (step, spread) in [25.0, 45.0, 15.0, 5.0, 30.0].iter().enumerate() {
        windows.update(SymbolId(1), 0, a, b, *spread, T0 + step as i64, &mut events);
    }
    let summary = summary_of(&windows);
    let low = summary.cycles[0];
    let high = summary.cycles[1];
    assert_eq!((low.completed, low.active), (1, true));
    assert_eq!(low.last_start_ns, T0 + 4, "the running cycle's start");
    assert_eq!(low.last_end_ns, T0 + 3);
    assert_eq!((high.completed, high.active), (1, false));
    assert_eq!((high.last_start_ns, high.last_end_ns), (T0 + 1, T0 + 2));
    assert_eq!(
        summary.cycles[2],
        Default::default(),
        "an unconfigured threshold stays empty"
    );
    assert_eq!(summary.cycles_completed, 2);
    assert!(summary.cycle_active);
}

#[test]
fn a_lower_cap_sheds_the_least_recently_updated_windows_and_ends_their_cycles() {
    let mut windows = store(10, 8, vec![40.0]);
    let mut events = WindowEvents::default();
    // Eight windows (symbols 0..4, both directions of venues 0/1), updated in symbol order, so
    // symbol 0's are the least recently updated. Symbol 0's first window opens a cycle.
    for local in 0..4u32 {
        let (a, b) = (VenueId(0), VenueId(1));
        let ts = T0 + i64::from(local);
        let spread = if local == 0 { 50.0 } else { 1.0 };
        windows.update(SymbolId(local + 1), local, a, b, spread, ts, &mut events);
        windows.update(SymbolId(local + 1), local, b, a, -spread, ts, &mut events);
    }
    assert_eq!(windows.counts().live, 8);
    let starts = events.opportunities.len();
    windows.set_live_cap(5);
    assert_eq!(
        windows.shed_to_cap(T0 + 10, 2, &mut events),
        2,
        "a slice at a time"
    );
    assert_eq!(windows.shed_to_cap(T0 + 10, 100, &mut events), 1);
    assert_eq!(windows.shed_to_cap(T0 + 10, 100, &mut events), 0);
    let counts = windows.counts();
    assert_eq!((counts.live, counts.shed, counts.evicted), (5, 3, 3));
    // The evicted: symbol 1's two windows and symbol 2's first (oldest first); the cycle of
    // symbol 1 ended with them, and their open buckets were emitted.
    let ended: Vec<_> = events.opportunities[starts..]
        .iter()
        .map(|event| (event.kind, event.symbol_id))
        .collect();
    assert_eq!(ended, vec![(OPPORTUNITY_END, SymbolId(1))]);
    let emitted: Vec<u32> = events
        .samples
        .iter()
        .map(|sample| sample.symbol_id.0)
        .collect();
    assert_eq!(emitted, vec![1, 1, 2]);
    // At the cap, a new window replaces the least recently updated one instead of growing.
    windows.update(
        SymbolId(9),
        0,
        VenueId(2),
        VenueId(3),
        1.0,
        T0 + 11,
        &mut events,
    );
    let counts = windows.counts();
    assert_eq!((counts.live, counts.shed), (5, 4));
    // Back to the full capacity: new windows take free slots again.
    windows.set_live_cap(usize::MAX);
    assert_eq!(windows.live_cap(), 8);
    windows.update(
        SymbolId(9),
        0,
        VenueId(3),
        VenueId(2),
        1.0,
        T0 + 12,
        &mut events,
    );
    assert_eq!(windows.counts().live, 6);
}

#[test]
fn window_statistics_roll_over_the_configured_buckets() {
    let buckets = 4;
    let mut windows = store(buckets, 4, vec![40.0]);
    let mut events = WindowEvents::default();
    let (a, b) = (VenueId(0), VenueId(1));
    // Bucket k holds two quotes, k and k + 2: mean k + 1.
    for k in 0..6i64 {
        let ts = T0 + k * SECOND_NS;
        windows.update(SymbolId(1), 0, a, b, k as f64, ts, &mut events);
        windows.update(SymbolId(1), 0, a, b, k as f64 + 2.0, ts + 1, &mut events);
    }
    windows.close_due_buckets(T0 + 6 * SECOND_NS, usize::MAX, &mut events);
    assert_eq!(events.samples.len(), 6);
    let last = *events.samples.last().unwrap();
    assert_eq!(
        (last.min_bp, last.max_bp, last.last_bp, last.mean_bp),
        (5.0, 7.0, 7.0, 6.0)
    );
    assert_eq!(last.samples, 2);
    // The window holds the last 4 bucket means: 3, 4, 5, 6.
    assert!(close(last.window_mean_bp, 4.5));
    let std = (((1.5f64).powi(2) * 2.0 + (0.5f64).powi(2) * 2.0) / 4.0).sqrt();
    assert!(close(last.window_std_bp, std));
    assert!(close(last.band_lower_bp, 4.5 - 2.0 * std));
    assert!(close(last.band_upper_bp, 4.5 + 2.0 * std));
    let summary = summary_of(&windows);
    assert_eq!((summary.min_bp, summary.max_bp), (3.0, 6.0));
    assert_eq!(summary.buckets_filled, 4);
}

#[test]
fn empty_buckets_leave_the_window_and_min_max_follow() {
    // 9 buckets: blocks of 3. Fill buckets 0..9 with value = bucket, then skip 5 buckets.
    let mut windows = store(9, 4, vec![]);
    let mut events = WindowEvents::default();
    let (a, b) = (VenueId(2), VenueId(5));
    let values = [5.0, -3.0, 8.0, 1.0, 0.5, 2.0, 7.0, 4.0, 6.0];
    for (k, value) in values.iter().enumerate() {
        windows.update(
            SymbolId(2),
            1,
            a,
            b,
            *value,
            T0 + k as i64 * SECOND_NS,
            &mut events,
        );
    }
    windows.close_due_buckets(T0 + 9 * SECOND_NS, usize::MAX, &mut events);
    assert_eq!(summary_of(&windows).min_bp, -3.0);
    assert_eq!(summary_of(&windows).max_bp, 8.0);
    // Quote in bucket 12: buckets 9..11 are empty, and the window (9 buckets) is now 4..=12, so
    // buckets 0..=3 (5, -3, 8, 1) leave it.
    windows.update(SymbolId(2), 1, a, b, 3.0, T0 + 12 * SECOND_NS, &mut events);
    windows.close_due_buckets(T0 + 13 * SECOND_NS, usize::MAX, &mut events);
    let summary = summary_of(&windows);
    assert_eq!((summary.min_bp, summary.max_bp), (0.5, 7.0));
    assert_eq!(summary.buckets_filled, 6); // 0.5, 2, 7, 4, 6, 3
    let expected_mean = (0.5 + 2.0 + 7.0 + 4.0 + 6.0 + 3.0) / 6.0;
    assert!(close(summary.mean_bp, expected_mean));
    // A quiet hour empties it completely.
    windows.update(SymbolId(2), 1, a, b, 9.0, T0 + 100 * SECOND_NS, &mut events);
    windows.close_due_buckets(T0 + 101 * SECOND_NS, usize::MAX, &mut events);
    let summary = summary_of(&windows);
    assert_eq!(
        (summary.min_bp, summary.max_bp, summary.buckets_filled),
        (9.0, 9.0, 1)
    );
}

#[test]
fn window_cap_evicts_least_recently_updated_and_counts_it() {
    let mut windows = store(4, 3, vec![]);
    let mut events = WindowEvents::default();
    for sell in 1..=3u16 {
        windows.update(
            SymbolId(0),
            0,
            VenueId(0),
            VenueId(sell),
            1.0,
            T0,
            &mut events,
        );
    }
    // Touch (0,1) in a later bucket (recency is kept at bucket precision) so (0,2) becomes the
    // least recently updated.
    let later = T0 + SECOND_NS;
    windows.update(
        SymbolId(0),
        0,
        VenueId(0),
        VenueId(1),
        1.0,
        later,
        &mut events,
    );
    windows.update(
        SymbolId(0),
        0,
        VenueId(0),
        VenueId(4),
        1.0,
        later + 1,
        &mut events,
    );
    let counts = windows.counts();
    assert_eq!((counts.live, counts.created, counts.evicted), (3, 4, 1));
    let mut summaries = Vec::new();
    windows.summarize_into(&mut summaries);
    let mut sells: Vec<u16> = summaries.iter().map(|s| s.sell_venue_id.0).collect();
    sells.sort();
    assert_eq!(sells, vec![1, 3, 4]);
    // The evicted window's open bucket was emitted before it went.
    assert!(events.samples.iter().any(|s| s.sell_venue_id == VenueId(2)));
}

#[test]
fn idle_windows_expire_on_housekeeping() {
    let mut windows = store(4, 8, vec![]);
    let mut events = WindowEvents::default();
    windows.update(SymbolId(0), 0, VenueId(0), VenueId(1), 1.0, T0, &mut events);
    windows.update(
        SymbolId(0),
        0,
        VenueId(1),
        VenueId(0),
        1.0,
        T0 + 5 * SECOND_NS,
        &mut events,
    );
    assert_eq!(
        windows.expire_idle(T0 + 6 * SECOND_NS, 4 * SECOND_NS, &mut events),
        1
    );
    assert_eq!(windows.counts().live, 1);
    assert_eq!(windows.counts().expired, 1);
    // The pair comes back as a new window.
    windows.update(
        SymbolId(0),
        0,
        VenueId(0),
        VenueId(1),
        1.0,
        T0 + 7 * SECOND_NS,
        &mut events,
    );
    assert_eq!(windows.counts().live, 2);
    assert_eq!(windows.counts().created, 3);
}

#[test]
fn pipeline_routes_drains_on_shutdown_and_counts_full_rings() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 2\nmax_symbols = 16\nring_capacity_records = 16\nmax_connection_slots = 2\n",
    )
    .unwrap();
    let outputs = [Captured::default(), Captured::default()];
    let outbounds: Vec<Box<dyn Outbound>> = outputs
        .iter()
        .map(|c| Box::new(c.clone()) as Box<dyn Outbound>)
        .collect();
    let mut pipeline = Pipeline::start(&config.engine, &config.windows, outbounds).unwrap();
    let mut first = pipeline.take_producer().unwrap();
    let second = pipeline.take_producer().unwrap();
    assert_eq!((first.slot_index(), second.slot_index()), (0, 1));
    assert!(
        pipeline.take_producer().is_none(),
        "only max_connection_slots producers"
    );
    let now = tickflow_core::record::now_ns();
    let mut accepted = 0u64;
    for i in 0..1000u32 {
        if first.push(quote(i % 4, (i % 8) as u16, 100.0, 100.1, now + i as i64)) {
            accepted += 1;
        }
        if i % 10 == 0 {
            first.flush();
        }
    }
    first.flush();
    drop(first);
    drop(second);
    let report = pipeline.shutdown();
    assert_eq!(report.records_left_in_rings, 0);
    assert_eq!(report.counters.pushed, accepted);
    assert_eq!(
        report.counters.pushed + report.counters.dropped_ring_full,
        1000
    );
    assert_eq!(report.counters.quotes, accepted);
    // Shard 0 owns even symbols, shard 1 odd ones.
    let quotes_of = |captured: &Captured| -> Vec<u32> {
        captured
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                OutRecord::Quote(q) => Some(q.symbol_id.0),
                _ => None,
            })
            .collect()
    };
    assert!(quotes_of(&outputs[0]).iter().all(|s| s % 2 == 0));
    assert!(quotes_of(&outputs[1]).iter().all(|s| s % 2 == 1));
    assert_eq!(
        (quotes_of(&outputs[0]).len() + quotes_of(&outputs[1]).len()) as u64,
        accepted
    );
}

#[test]
fn idle_shards_park_instead_of_spinning_and_wake_for_work() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 2\nmax_symbols = 16\nidle_spin_iterations = 100\nidle_park_ms = 1000\n",
    )
    .unwrap();
    let outputs = [Captured::default(), Captured::default()];
    let outbounds: Vec<Box<dyn Outbound>> = outputs
        .iter()
        .map(|c| Box::new(c.clone()) as Box<dyn Outbound>)
        .collect();
    let mut pipeline = Pipeline::start(&config.engine, &config.windows, outbounds).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pipeline.counters().shard_parks < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle shards never parked"
        );
        std::thread::yield_now();
    }
    // A parked shard picks up new records (the producer's flush unparks it).
    let mut producer = pipeline.take_producer().unwrap();
    assert!(producer.push(quote(1, 0, 1.0, 1.1, tickflow_core::record::now_ns())));
    producer.flush();
    while pipeline.counters().quotes < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "a parked shard was not woken"
        );
        std::thread::yield_now();
    }
    drop(producer);
    let report = pipeline.shutdown();
    assert_eq!(report.counters.quotes, 1);
    assert_eq!(outputs[1].count(|r| matches!(r, OutRecord::Quote(_))), 1);
}

#[test]
fn readers_see_window_summaries_through_published_snapshots() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 1\nmax_symbols = 16\n[windows]\nsnapshot_interval_ms = 10\n",
    )
    .unwrap();
    let mut pipeline = Pipeline::start(
        &config.engine,
        &config.windows,
        vec![Box::new(Captured::default())],
    )
    .unwrap();
    let handles = pipeline.snapshot_handles();
    let mut producer = pipeline.take_producer().unwrap();
    let now = tickflow_core::record::now_ns();
    assert!(producer.push(quote(5, 1, 100.0, 100.2, now)));
    assert!(producer.push(quote(5, 4, 100.5, 100.6, now + 1)));
    producer.flush();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let snapshot = loop {
        let snapshot = handles[0].load_full();
        if snapshot.windows.len() == 2 {
            break snapshot;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot with both windows"
        );
        std::thread::yield_now();
    };
    let mut pairs: Vec<(u16, u16, f64)> = snapshot
        .windows
        .iter()
        .map(|w| (w.buy_venue_id.0, w.sell_venue_id.0, w.last_bp))
        .collect();
    pairs.sort_by_key(|p| (p.0, p.1));
    assert_eq!((pairs[0].0, pairs[0].1), (1, 4));
    assert!(close(pairs[0].2, (100.5 - 100.2) / 100.2 * 10_000.0));
    assert_eq!((pairs[1].0, pairs[1].1), (4, 1));
    assert!(close(pairs[1].2, (100.0 - 100.6) / 100.6 * 10_000.0));
    assert!(snapshot.windows.iter().all(|w| w.symbol_id == SymbolId(5)));
    assert_eq!(pipeline.snapshots()[0].shard_index, 0);
    drop(producer);
    pipeline.shutdown();
}

#[test]
fn evicted_and_expired_windows_end_their_cycles_and_emit_their_last_bucket() {
    let mut windows = store(4, 2, vec![40.0]);
    let mut events = WindowEvents::default();
    let (a, b, c) = (VenueId(0), VenueId(1), VenueId(2));
    windows.update(SymbolId(0), 0, a, b, 50.0, T0, &mut events); // starts a cycle
    windows.update(SymbolId(0), 0, a, c, 60.0, T0 + 1, &mut events); // starts a cycle
    assert_eq!(events.opportunities.len(), 2);
    // A third window evicts (a, b): its cycle ends (NaN spread) and its open bucket goes out.
    windows.update(SymbolId(0), 0, b, c, 1.0, T0 + SECOND_NS, &mut events);
    assert_eq!(windows.counts().evicted, 1);
    let ended = events.opportunities[2];
    assert_eq!(
        (ended.kind, ended.buy_venue_id, ended.sell_venue_id),
        (OPPORTUNITY_END, a, b)
    );
    assert!(ended.spread_bp.is_nan());
    assert!(
        events
            .samples
            .iter()
            .any(|s| (s.buy_venue_id, s.sell_venue_id) == (a, b))
    );
    // Expiry of (a, c) ends its cycle too.
    assert_eq!(
        windows.expire_idle(T0 + 3 * SECOND_NS, SECOND_NS, &mut events),
        2
    );
    let ended = events.opportunities[3];
    assert_eq!(
        (ended.kind, ended.buy_venue_id, ended.sell_venue_id),
        (OPPORTUNITY_END, a, c)
    );
    assert_eq!(windows.counts().live, 0);
    let active_cycles = events
        .opportunities
        .iter()
        .map(|o| {
            if o.kind == OPPORTUNITY_START {
                1i32
            } else {
                -1
            }
        })
        .sum::<i32>();
    assert_eq!(active_cycles, 0, "every started cycle ended");
}

#[test]
fn a_stale_counterpart_ends_the_open_cycle() {
    let (mut shard, captured, _now) = single_shard(&small_config());
    shard.handle(&quote(2, 0, 100.0, 100.1, T0));
    shard.handle(&quote(2, 1, 101.0, 101.1, T0 + 1)); // buy 0 sell 1: +89.9 bp → start
    assert_eq!(captured.opportunities().len(), 1);
    // Venue 0 goes quiet; venue 1 keeps quoting 3 s later (stale_after_ms = 2000).
    shard.handle(&quote(2, 1, 101.0, 101.1, T0 + 3 * SECOND_NS));
    let events = captured.opportunities();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, OPPORTUNITY_END);
    assert!(events[1].spread_bp.is_nan());
}

#[test]
fn non_finite_spreads_are_skipped_and_counted() {
    let (mut shard, captured, now) = single_shard(&small_config());
    shard.handle(&quote(2, 0, 1e-320, 1e-320, T0));
    shard.handle(&quote(2, 1, 100.0, 100.1, T0 + 1));
    now.store(T0 + SECOND_NS, Ordering::Release);
    shard.housekeeping();
    assert!(captured.samples().is_empty());
    assert!(captured.opportunities().is_empty());
    assert_eq!(
        shard.counters().non_finite_spreads.load(Ordering::Relaxed),
        1
    );
}

#[test]
fn uneven_symbol_split_across_shards_never_evicts_a_universe_that_fits() {
    // 3 shards over 30 symbols: shard 0 owns 10, and max_windows covers exactly 30 × 56 pairs.
    let config = Config::from_toml_str(
        "[engine]\nshards = 3\nmax_symbols = 31\n[windows]\nmax_windows = 1736\n",
    )
    .unwrap();
    let outbounds: Vec<Box<dyn Outbound>> = (0..3)
        .map(|_| Box::new(Captured::default()) as Box<dyn Outbound>)
        .collect();
    let mut pipeline = Pipeline::start(&config.engine, &config.windows, outbounds).unwrap();
    let mut producer = pipeline.take_producer().unwrap();
    let now = tickflow_core::record::now_ns();
    for symbol in 0..31u32 {
        for venue in 0..8u16 {
            while !producer.push(quote(symbol, venue, 100.0, 100.1, now + i64::from(venue))) {
                producer.flush();
                std::thread::yield_now();
            }
        }
        producer.flush();
    }
    drop(producer);
    let report = pipeline.shutdown();
    assert_eq!(report.counters.windows_live, 31 * 56);
    assert_eq!(report.counters.windows_evicted, 0);
}

#[test]
fn a_frame_of_one_symbol_is_pushed_as_one_batch_and_a_full_ring_drops_the_rest() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 2\nmax_symbols = 16\nring_capacity_records = 16\n",
    )
    .unwrap();
    let outputs = [Captured::default(), Captured::default()];
    let outbounds: Vec<Box<dyn Outbound>> = outputs
        .iter()
        .map(|c| Box::new(c.clone()) as Box<dyn Outbound>)
        .collect();
    let mut pipeline = Pipeline::start(&config.engine, &config.windows, outbounds).unwrap();
    let mut producer = pipeline.take_producer().unwrap();
    let frame: Vec<FeedEvent> = (0..20).map(|i| quote(3, 0, 1.0, 1.1, T0 + i)).collect();
    // The shard may drain concurrently, so between 16 and 20 are accepted; the rest are counted.
    let accepted = producer.push_all(&frame);
    assert!((16..=20).contains(&accepted), "{accepted}");
    let mixed = [quote(1, 0, 1.0, 1.1, T0), quote(2, 0, 1.0, 1.1, T0)];
    let accepted_mixed = producer.push_all(&mixed);
    producer.flush();
    drop(producer);
    let report = pipeline.shutdown();
    assert_eq!(report.counters.pushed, (accepted + accepted_mixed) as u64);
    assert_eq!(
        report.counters.pushed + report.counters.dropped_ring_full,
        22,
        "every record is either delivered or counted"
    );
    assert_eq!(report.counters.quotes, report.counters.pushed);
}

/// The exact population standard deviation of `values` (what a window's std must equal).
fn exact_std(values: &[f64]) -> f64 {
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count).sqrt()
}

#[test]
fn an_outlier_bucket_leaving_the_window_leaves_no_trace_in_its_statistics() {
    let buckets = 100;
    let mut windows = store(buckets, 4, vec![40.0]);
    let mut events = WindowEvents::default();
    let (a, b) = (VenueId(0), VenueId(1));
    // Bucket means as the window stores them (f32), newest last.
    let mut stored: Vec<f64> = Vec::new();
    let mut worst_relative_error = 0f64;
    for step in 0..(3 * buckets as i64) {
        // A placeholder ask's 1e9 bp first, then ordinary spreads around 12 bp.
        let spread = if step == 0 {
            1e9
        } else {
            12.0 + ((step * 7919) % 23) as f64 * 0.37 - 4.0
        };
        let ts = T0 + step * SECOND_NS;
        windows.update(SymbolId(1), 0, a, b, spread, ts, &mut events);
        // The next bucket's first update closes this one.
        windows.close_due_buckets(ts + SECOND_NS, usize::MAX, &mut events);
        stored.push(f64::from(spread as f32));
        let in_window = &stored[stored.len().saturating_sub(buckets)..];
        let summary = summary_of(&windows);
        let exact = exact_std(in_window);
        // One bucket has a std of exactly 0; from two on, the error is relative to the std.
        let relative = (summary.std_bp - exact).abs() / exact.max(f64::MIN_POSITIVE);
        worst_relative_error = worst_relative_error.max(relative);
        assert!(
            relative <= 1e-6,
            "step {step}: window std {} against the exact {exact} (relative error {relative})",
            summary.std_bp
        );
        let sample = events.samples.last().expect("a bucket closed");
        assert!((sample.window_std_bp - exact).abs() / exact.max(f64::MIN_POSITIVE) <= 1e-6);
    }
    assert_eq!(windows.counts().outlier_recomputes, 1);
    assert!(worst_relative_error < 1e-6);
}

#[test]
fn windows_finish_their_laps_in_different_buckets() {
    // Each window's ring is rotated by its slab index: two windows created together write the
    // same absolute bucket into different ring slots, so their exact recomputes do not coincide.
    let buckets = 8;
    let mut windows = store(buckets, 4, vec![40.0]);
    let mut events = WindowEvents::default();
    for step in 0..(3 * buckets as i64) {
        let ts = T0 + step * SECOND_NS;
        windows.update(
            SymbolId(1),
            0,
            VenueId(0),
            VenueId(1),
            1.0 + step as f64,
            ts,
            &mut events,
        );
        windows.update(
            SymbolId(1),
            0,
            VenueId(1),
            VenueId(0),
            2.0 + step as f64,
            ts,
            &mut events,
        );
        windows.close_due_buckets(ts + SECOND_NS, usize::MAX, &mut events);
    }
    // Statistics are the same as without rotation: the last `buckets` values of each series.
    let mut summaries = Vec::new();
    windows.summarize_into(&mut summaries);
    for summary in summaries {
        let first = if summary.buy_venue_id == VenueId(0) {
            1.0
        } else {
            2.0
        };
        let values: Vec<f64> = (16..24).map(|step| first + step as f64).collect();
        assert!(close(summary.mean_bp, values.iter().sum::<f64>() / 8.0));
        assert!(close(summary.std_bp, exact_std(&values)));
        assert_eq!(summary.min_bp, first + 16.0);
        assert_eq!(summary.max_bp, first + 23.0);
    }
}

#[test]
fn a_warming_window_flags_its_samples_and_starts_no_cycle() {
    let mut windows = WindowStore::new(WindowParams {
        bucket_ns: SECOND_NS,
        buckets: 10,
        max_windows: 4,
        local_symbols: 4,
        band_k: 2.0,
        thresholds_bp: vec![40.0],
        warmup_buckets: 3,
        taker_fees_bp: [0.0; 8],
        cycles_on_net: false,
        prefault: true,
    });
    let mut events = WindowEvents::default();
    for step in 0..5i64 {
        let ts = T0 + step * SECOND_NS;
        windows.update(
            SymbolId(1),
            0,
            VenueId(0),
            VenueId(1),
            50.0 + step as f64,
            ts,
            &mut events,
        );
        windows.close_due_buckets(ts + SECOND_NS, usize::MAX, &mut events);
    }
    let flags: Vec<bool> = events
        .samples
        .iter()
        .map(|sample| sample.flags & SPREAD_FLAG_WARMING != 0)
        .collect();
    // Closed buckets 1 and 2 are warming; from the third on, the window has its 3 buckets.
    assert_eq!(flags, vec![true, true, false, false, false]);
    // Spreads were above 40 bp all along: the cycle starts with the first update after warm-up.
    let starts: Vec<i64> = events
        .opportunities
        .iter()
        .filter(|o| o.kind == OPPORTUNITY_START)
        .map(|o| o.ts_ns)
        .collect();
    assert_eq!(starts, vec![T0 + 3 * SECOND_NS]);
    assert!(!summary_of(&windows).warming);
}

#[test]
fn housekeeping_ends_a_cycle_whose_venues_both_went_quiet() {
    let (mut shard, captured, now) = single_shard(&small_config());
    shard.handle(&quote(2, 0, 100.0, 100.1, T0));
    shard.handle(&quote(2, 1, 101.0, 101.1, T0 + 1)); // +89.9 bp: a cycle starts
    assert_eq!(captured.opportunities().len(), 1);
    // No quote arrives to notice that both went stale (stale_after_ms = 2000).
    now.store(T0 + SECOND_NS, Ordering::Release);
    shard.housekeeping();
    assert_eq!(captured.opportunities().len(), 1, "still fresh after 1 s");
    now.store(T0 + 3 * SECOND_NS, Ordering::Release);
    shard.housekeeping();
    let events = captured.opportunities();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, OPPORTUNITY_END);
    assert!(events[1].spread_bp.is_nan());
    assert_eq!(shard.counters().stale_cycle_ends.load(Ordering::Relaxed), 1);
}

#[test]
fn a_push_on_change_venue_stays_live_until_a_gap() {
    let mut config = small_config();
    // Venue 0 pushes only on change: its unchanged quote is still the price after 10 s.
    config.engine.quote_age_limited[0] = false;
    let (mut shard, captured, now) = single_shard(&config);
    shard.handle(&quote(2, 0, 100.0, 100.1, T0));
    shard.handle(&quote(2, 1, 100.5, 100.6, T0 + 10 * SECOND_NS));
    now.store(T0 + 12 * SECOND_NS, Ordering::Release);
    shard.housekeeping();
    assert_eq!(captured.samples().len(), 2, "the quiet venue still pairs");
    shard.flush();
    assert_eq!(shard.counters().stale_skips.load(Ordering::Relaxed), 0);
    // The age-limited venue 1 ages out as before.
    shard.handle(&quote(2, 0, 100.0, 100.1, T0 + 13 * SECOND_NS));
    shard.flush();
    assert_eq!(shard.counters().stale_skips.load(Ordering::Relaxed), 1);
}

#[test]
fn a_withdrawn_quote_ends_its_cycles_and_takes_no_part() {
    let (mut shard, captured, now) = single_shard(&small_config());
    shard.handle(&quote(2, 0, 100.0, 100.1, T0));
    shard.handle(&quote(2, 1, 101.0, 101.1, T0 + 1));
    assert_eq!(captured.opportunities().len(), 1);
    shard.handle(&FeedEvent::Gap(GapEvent {
        ts_ns: T0 + 2,
        connection_id: 3,
        symbol_id: SymbolId(2),
        venue_id: VenueId(0),
        kind: GAP_QUOTE_WITHDRAWN,
        reserved: [0; 5],
    }));
    let events = captured.opportunities();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, OPPORTUNITY_END);
    // Venue 1 quotes again: venue 0's withdrawn quote makes no spread.
    shard.flush();
    let updates = shard.counters().spread_updates.load(Ordering::Relaxed);
    shard.handle(&quote(2, 1, 101.0, 101.1, T0 + 3));
    shard.flush();
    assert_eq!(
        shard.counters().spread_updates.load(Ordering::Relaxed),
        updates
    );
    now.store(T0 + SECOND_NS, Ordering::Release);
    assert_eq!(
        captured.count(|r| matches!(r, OutRecord::Gap(gap) if gap.kind == GAP_QUOTE_WITHDRAWN)),
        1,
        "the withdrawal reaches sinks"
    );
}

#[test]
fn a_retired_listing_ends_and_frees_the_windows_with_its_venue_only() {
    let (mut shard, captured, now) = single_shard(&small_config());
    // Three venues: pairs (0,1), (0,2), (1,2), both directions: six windows.
    shard.handle(&quote(2, 0, 100.0, 100.1, T0));
    shard.handle(&quote(2, 1, 101.0, 101.1, T0 + 1));
    shard.handle(&quote(2, 2, 100.5, 100.6, T0 + 2));
    shard.flush();
    now.store(T0 + 3, Ordering::Release);
    shard.housekeeping();
    assert_eq!(shard.counters().windows_live.load(Ordering::Relaxed), 6);
    let opened = captured.opportunities().len();
    assert!(opened >= 1, "venue 0 against venue 1 crosses the threshold");
    shard.handle(&FeedEvent::Gap(GapEvent {
        ts_ns: T0 + 4,
        connection_id: 5,
        symbol_id: SymbolId(2),
        venue_id: VenueId(0),
        kind: GAP_SYMBOL_RETIRED,
        reserved: [0; 5],
    }));
    shard.flush();
    now.store(T0 + SECOND_NS, Ordering::Release);
    shard.housekeeping();
    // Venue 0's four windows are gone; (1,2) and (2,1) stay.
    assert_eq!(shard.counters().windows_live.load(Ordering::Relaxed), 2);
    assert_eq!(shard.counters().windows_retired.load(Ordering::Relaxed), 4);
    let events = captured.opportunities();
    assert!(
        events[opened..]
            .iter()
            .all(|event| event.kind == OPPORTUNITY_END),
        "every cycle of venue 0 ended"
    );
    assert_eq!(
        captured.count(|r| matches!(r, OutRecord::Gap(gap) if gap.kind == GAP_SYMBOL_RETIRED)),
        1,
        "the retirement reaches sinks"
    );
    // Listed again and quoting: its windows start anew.
    shard.handle(&quote(2, 0, 100.0, 100.1, T0 + SECOND_NS + 1));
    shard.flush();
    now.store(T0 + 2 * SECOND_NS, Ordering::Release);
    shard.housekeeping();
    assert_eq!(shard.counters().windows_live.load(Ordering::Relaxed), 6);
}

#[test]
fn a_spread_beyond_the_sanity_bound_is_kept_out_of_the_windows() {
    let (mut shard, captured, now) = single_shard(&small_config());
    shard.handle(&quote(2, 0, 100.0, 100.1, T0));
    // A new listing's placeholder ask: 1e9 bp one way.
    shard.handle(&quote(2, 1, 1e9, 1e9, T0 + 1));
    now.store(T0 + SECOND_NS, Ordering::Release);
    shard.housekeeping();
    assert!(captured.samples().is_empty());
    assert_eq!(shard.counters().windows_live.load(Ordering::Relaxed), 0);
    assert_eq!(
        shard
            .counters()
            .spreads_out_of_bounds
            .load(Ordering::Relaxed),
        1
    );
}

#[test]
fn shutdown_emits_every_open_bucket_and_ends_every_cycle() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 1\nmax_symbols = 16\n[windows]\nwarmup_buckets = 0\n",
    )
    .unwrap();
    let captured = Captured::default();
    let mut pipeline = Pipeline::start(
        &config.engine,
        &config.windows,
        vec![Box::new(captured.clone())],
    )
    .unwrap();
    let mut producer = pipeline.take_producer().unwrap();
    let now = tickflow_core::record::now_ns();
    assert!(producer.push(quote(4, 0, 100.0, 100.1, now)));
    assert!(producer.push(quote(4, 1, 101.0, 101.1, now + 1)));
    producer.flush();
    drop(producer);
    pipeline.shutdown();
    let opportunities = captured.opportunities();
    let starts = opportunities
        .iter()
        .filter(|o| o.kind == OPPORTUNITY_START)
        .count();
    let ends = opportunities
        .iter()
        .filter(|o| o.kind == OPPORTUNITY_END)
        .count();
    assert_eq!((starts, ends), (1, 1), "{opportunities:?}");
    // Both directed windows had data in their open bucket: both are emitted.
    assert_eq!(captured.samples().len(), 2);
}

/// An outbound that panics on its first record: a bug in the shard's path, as a test can cause one.
struct PanicsOnEmit;

impl Outbound for PanicsOnEmit {
    fn emit(&mut self, _record: &OutRecord) {
        panic!("test: the shard's outbound panics");
    }
}

#[test]
fn a_shard_that_panics_is_noticed_while_running() {
    let config = Config::from_toml_str("[engine]\nshards = 2\nmax_symbols = 16\n").unwrap();
    let outbounds: Vec<Box<dyn Outbound>> =
        vec![Box::new(Captured::default()), Box::new(PanicsOnEmit)];
    let mut pipeline = Pipeline::start(&config.engine, &config.windows, outbounds).unwrap();
    assert!(pipeline.dead_shards().is_empty());
    let mut producer = pipeline.take_producer().unwrap();
    // Symbol 1 belongs to shard 1 (1 % 2), whose outbound panics on the quote.
    assert!(producer.push(quote(1, 0, 100.0, 100.1, tickflow_core::record::now_ns())));
    producer.flush();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pipeline.dead_shards().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(pipeline.dead_shards(), vec![1]);
    assert_eq!(pipeline.counters().shards_dead, 1);
    drop(producer);
    let report = pipeline.shutdown();
    assert_eq!(report.counters.shards_dead, 1);
}

#[test]
fn bucket_closes_go_out_in_slices_that_resume_where_they_stopped() {
    let mut windows = WindowStore::new(WindowParams {
        bucket_ns: SECOND_NS,
        buckets: 10,
        max_windows: 2560,
        local_symbols: 40,
        band_k: 2.0,
        thresholds_bp: vec![40.0],
        warmup_buckets: 0,
        taker_fees_bp: [0.0; 8],
        cycles_on_net: false,
        prefault: true,
    });
    let mut events = WindowEvents::default();
    for local in 0..40u32 {
        for buy in 0..8u16 {
            for sell in 0..8u16 {
                windows.update(
                    SymbolId(local),
                    local,
                    VenueId(buy),
                    VenueId(sell),
                    1.0,
                    T0,
                    &mut events,
                );
            }
        }
    }
    // 40 × 64 ordered pairs (a venue with itself included: the store does not care).
    assert_eq!(windows.counts().live, 2560);
    let next_bucket = T0 + SECOND_NS;
    assert!(!windows.close_due_buckets(next_bucket, 1000, &mut events));
    assert_eq!(events.samples.len(), 1000);
    // A window updated in the new bucket meanwhile is not due; it stays open.
    windows.update(
        SymbolId(0),
        0,
        VenueId(7),
        VenueId(6),
        2.0,
        next_bucket,
        &mut events,
    );
    assert!(!windows.close_due_buckets(next_bucket, 1000, &mut events));
    assert!(windows.close_due_buckets(next_bucket, 1000, &mut events));
    assert_eq!(
        events.samples.len(),
        2560,
        "every window's bucket exactly once"
    );
    let mut keys: Vec<_> = events
        .samples
        .iter()
        .map(|s| {
            (
                s.symbol_id,
                s.buy_venue_id,
                s.sell_venue_id,
                s.bucket_start_ns,
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2560);
    // Nothing more is due until the next bucket ends.
    assert!(windows.close_due_buckets(next_bucket, 1000, &mut events));
    assert_eq!(events.samples.len(), 2560);
}

#[test]
fn snapshots_are_built_a_slice_per_housekeeping_pass() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 1\nmax_symbols = 64\n[windows]\nbuckets = 10\nmax_windows = 4000\n",
    )
    .unwrap();
    let (mut shard, _captured, now) = single_shard(&config);
    for symbol in 0..64u32 {
        for venue in 0..8u16 {
            shard.handle(&quote(symbol, venue, 100.0, 100.1, T0 + i64::from(venue)));
        }
    }
    let windows = 64 * 56;
    assert_eq!(shard.windows().counts().live, windows);
    // The first pass after the interval starts a snapshot; each pass adds a slice of the 4 000
    // slots, and the snapshot is published when the slab is done.
    now.store(T0 + 2 * SECOND_NS, Ordering::Release);
    let slots_per_pass = tickflow_core::shard::SNAPSHOT_SLOTS_PER_PASS;
    let passes_needed = 4000usize.div_ceil(slots_per_pass);
    assert!(passes_needed > 1);
    for _ in 1..passes_needed {
        shard.housekeeping();
        assert!(shard.published_snapshot().published_ns < T0 + 2 * SECOND_NS);
    }
    shard.housekeeping();
    let snapshot = shard.published_snapshot();
    assert_eq!(snapshot.published_ns, T0 + 2 * SECOND_NS);
    let mut keys: Vec<_> = snapshot
        .windows
        .iter()
        .map(|w| (w.symbol_id, w.buy_venue_id, w.sell_venue_id))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), windows as usize, "every window exactly once");
}

#[test]
fn a_shard_that_ran_dry_waits_for_a_batch_before_asking_to_be_woken() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 1\nmax_symbols = 16\nidle_spin_iterations = 0\nshard_batch_wait_us = 2000\n",
    )
    .unwrap();
    let captured = Captured::default();
    let mut pipeline = Pipeline::start(
        &config.engine,
        &config.windows,
        vec![Box::new(captured.clone())],
    )
    .unwrap();
    let mut producer = pipeline.take_producer().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for round in 0..20u32 {
        assert!(producer.push(quote(
            1,
            (round % 8) as u16,
            1.0,
            1.1,
            tickflow_core::record::now_ns()
        )));
        producer.flush();
        // Every record is taken, whether the shard was parked (woken) or waiting for a batch.
        while pipeline.counters().quotes < u64::from(round) + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "a record was never taken"
            );
            std::thread::yield_now();
        }
    }
    // After taking records, the shard waits for a batch (not marked parked) before it parks.
    while pipeline.counters().shard_batch_waits == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the shard never waited for a batch"
        );
        std::thread::yield_now();
    }
    drop(producer);
    let report = pipeline.shutdown();
    assert_eq!(report.counters.quotes, 20);
}

#[test]
fn pinning_a_shard_to_a_cpu_the_machine_lacks_is_refused_naming_the_key() {
    let config =
        Config::from_toml_str("[engine]\nshards = 1\nmax_symbols = 16\nshard_cores = [4000]\n")
            .unwrap();
    let error = Pipeline::start(
        &config.engine,
        &config.windows,
        vec![Box::new(Captured::default())],
    )
    .expect_err("CPU 4000 does not exist here");
    assert!(error.to_string().contains("engine.shard_cores"), "{error}");
    let config =
        Config::from_toml_str("[engine]\nshards = 1\nmax_symbols = 16\nshard_cores = [0]\n")
            .unwrap();
    let pipeline = Pipeline::start(
        &config.engine,
        &config.windows,
        vec![Box::new(Captured::default())],
    )
    .expect("CPU 0 exists");
    pipeline.shutdown();
}

#[test]
fn cycles_can_run_on_the_spread_net_of_taker_fees() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 1\nmax_symbols = 16\n\
         [windows]\nbuckets = 10\nwarmup_buckets = 0\nthresholds_bp = [40.0]\ncycles_on = \"net\"\n\
         taker_fee_bp = { binance = 10.0, okx = 10.0 }\n",
    )
    .unwrap();
    let (mut shard, captured, _now) = single_shard(&config);
    // Binance (0) and OKX (2): buying on Binance at 100.10 and selling on OKX at 100.55 is
    // +45 bp gross, +25 bp net: no cycle on the net basis.
    shard.handle(&quote(2, 0, 100.0, 100.10, T0));
    shard.handle(&quote(2, 2, 100.55, 100.65, T0 + 1));
    assert!(
        captured.opportunities().is_empty(),
        "45 bp gross is 25 bp net"
    );
    // Selling at 100.76: +65.9 bp gross, +45.9 bp net: a cycle, reported net.
    shard.handle(&quote(2, 2, 100.76, 100.86, T0 + 2));
    let events = captured.opportunities();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, OPPORTUNITY_START);
    assert_eq!(events[0].flags & OPPORTUNITY_FLAG_NET, OPPORTUNITY_FLAG_NET);
    let gross = (100.76 - 100.10) / 100.10 * 10_000.0;
    assert!(
        close(events[0].spread_bp, gross - 20.0),
        "{}",
        events[0].spread_bp
    );
    // Readers see the fees and the net spread beside the gross one.
    shard.publish_snapshot(T0 + 3);
    let snapshot = shard.published_snapshot();
    let window = snapshot
        .windows
        .iter()
        .find(|w| w.buy_venue_id == VenueId(0) && w.sell_venue_id == VenueId(2))
        .expect("the pair's window");
    assert_eq!(window.fees_bp, 20.0);
    assert!(close(window.net_last_bp, window.last_bp - 20.0));
}

#[test]
fn a_quote_too_thin_to_trade_takes_no_part() {
    let config = Config::from_toml_str(
        "[engine]\nshards = 1\nmax_symbols = 16\n[windows]\nbuckets = 10\nmin_top_notional = 1000.0\n",
    )
    .unwrap();
    let (mut shard, _captured, _now) = single_shard(&config);
    let deep = |venue: u16, ts: i64| {
        FeedEvent::Quote(Quote {
            bid: 100.0,
            bid_qty: 50.0,
            ask: 100.1,
            ask_qty: 50.0,
            ts_recv_ns: ts,
            symbol_id: SymbolId(2),
            venue_id: VenueId(venue),
            ..Quote::default()
        })
    };
    shard.handle(&deep(0, T0));
    // 100 × 1 = 100 of notional on each side: below the 1 000 minimum.
    shard.handle(&quote(2, 1, 100.5, 100.6, T0 + 1));
    shard.flush();
    let counters = shard.counters();
    assert_eq!(counters.spread_updates.load(Ordering::Relaxed), 0);
    assert_eq!(
        counters.quotes_below_min_notional.load(Ordering::Relaxed),
        1
    );
    shard.handle(&deep(1, T0 + 2));
    shard.flush();
    assert_eq!(counters.spread_updates.load(Ordering::Relaxed), 2);
}

#[test]
fn taker_fees_name_known_venues() {
    let error = Config::from_toml_str("[windows]\ntaker_fee_bp = { binanse = 10.0 }\n")
        .err()
        .expect("a misspelt venue is refused");
    assert!(
        error.contains("windows.taker_fee_bp") && error.contains("binanse"),
        "{error}"
    );
    let error = Config::from_toml_str("[windows]\ntaker_fee_bp = { okx = -1.0 }\n")
        .err()
        .expect("a negative fee is refused");
    assert!(error.contains("windows.taker_fee_bp"), "{error}");
}
