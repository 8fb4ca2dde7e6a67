//! Event time (`[windows] clock = "event"`) and pass-through (`[windows] enabled = false`):
//! a shard whose clock is its records' receive times gives every pair the same spread samples
//! and opportunity cycles whichever other symbols it owns (one engine, or aggregators owning a
//! part each), and a pass-through shard hands records to the sinks with no window work.

use std::sync::{Arc, Mutex};

use tickflow_core::config::{EngineConfig, WindowClock, WindowsConfig};
use tickflow_core::outbound::{OutRecord, Outbound};
use tickflow_core::record::FeedEvent;
use tickflow_core::records::{
    GAP_DISCONNECT, GapEvent, OpportunityEvent, Quote, SpreadSample, SymbolId, VenueId,
};
use tickflow_core::shard::thread::shard_params;
use tickflow_core::shard::{ShardClock, ShardState};

const SECOND_NS: i64 = 1_000_000_000;
/// Far from the wall clock: only an event clock closes these buckets while running.
const T0: i64 = 946_684_800 * SECOND_NS;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<OutRecord>>>);

impl Outbound for Captured {
    fn emit(&mut self, record: &OutRecord) {
        self.0.lock().expect("not poisoned").push(*record);
    }
}

impl Captured {
    fn records(&self) -> Vec<OutRecord> {
        self.0.lock().expect("not poisoned").clone()
    }

    /// Spread samples and opportunity events of `symbol`, in emission order.
    fn of_symbol(&self, symbol: u32) -> (Vec<SpreadSample>, Vec<OpportunityEvent>) {
        let mut samples = Vec::new();
        let mut events = Vec::new();
        for record in self.records() {
            match record {
                OutRecord::Spread(sample) if sample.symbol_id.0 == symbol => samples.push(sample),
                OutRecord::Opportunity(event) if event.symbol_id.0 == symbol => events.push(event),
                _ => {}
            }
        }
        // One bucket close emits its pairs in the windows' order, which depends on what else
        // the shard holds: compare per pair.
        samples.sort_by_key(|sample| {
            (
                sample.buy_venue_id,
                sample.sell_venue_id,
                sample.bucket_start_ns,
            )
        });
        events.sort_by_key(|event| {
            (
                event.buy_venue_id,
                event.sell_venue_id,
                event.ts_ns,
                event.kind,
            )
        });
        (samples, events)
    }
}

fn configs(windows_extra: impl FnOnce(&mut WindowsConfig)) -> (EngineConfig, WindowsConfig) {
    let engine = EngineConfig {
        shards: 1,
        max_symbols: 16,
        ..EngineConfig::default()
    };
    let mut windows = WindowsConfig {
        bucket_ms: 1_000,
        buckets: 10,
        max_windows: 64,
        thresholds_bp: vec![30.0],
        warmup_buckets: 0,
        clock: WindowClock::Event,
        event_lateness_ms: 2_000,
        ..WindowsConfig::default()
    };
    windows_extra(&mut windows);
    windows.validate().expect("valid [windows]");
    engine.validate().expect("valid [engine]");
    (engine, windows)
}

fn shard(engine: &EngineConfig, windows: &WindowsConfig) -> (ShardState, Captured) {
    let clock = match windows.clock {
        WindowClock::Event => ShardClock::event(windows.event_lateness_ms as i64 * 1_000_000),
        WindowClock::System => ShardClock::System,
    };
    let captured = Captured::default();
    let params = shard_params(engine, windows, 0, 1, clock);
    (
        ShardState::new(params, Box::new(captured.clone())),
        captured,
    )
}

fn quote(symbol: u32, venue: u16, mid: f64, ts_recv_ns: i64) -> FeedEvent {
    FeedEvent::Quote(Quote {
        bid: mid - 0.05,
        bid_qty: 10.0,
        ask: mid + 0.05,
        ask_qty: 10.0,
        ts_recv_ns,
        symbol_id: SymbolId(symbol),
        venue_id: VenueId(venue),
        ..Quote::default()
    })
}

/// Two symbols, three venues, 40 s of quotes every 100 ms per (symbol, venue), with a
/// dislocation every ~7 s; symbol 2's receive times run up to 1.5 s ahead of symbol 1's (two
/// collectors' clocks and paths), in the order one consumer of the stream would see them.
fn stream() -> Vec<FeedEvent> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1_000) as f64 / 1_000.0
    };
    let mut events = Vec::new();
    for step in 0..400i64 {
        for symbol in [1u32, 2] {
            let skew_ns = if symbol == 2 { 1_500_000_000 } else { 0 };
            for venue in 0..3u16 {
                let base = if symbol == 1 { 100.0 } else { 50.0 };
                let dislocated = venue == 2 && step % 70 >= 60;
                let mid = base * (1.0 + 0.0004 * next()) * if dislocated { 1.006 } else { 1.0 };
                let ts = T0 + step * 100_000_000 + i64::from(venue) * 1_000 + skew_ns;
                events.push(quote(symbol, venue, mid, ts));
            }
        }
    }
    events
}

/// Handles `events` as the shard thread would (housekeeping between records), then shuts down.
fn run(events: &[FeedEvent], windows_extra: impl FnOnce(&mut WindowsConfig)) -> Captured {
    let (engine, windows) = configs(windows_extra);
    let (mut shard, captured) = shard(&engine, &windows);
    for event in events {
        shard.handle(event);
        shard.flush();
        shard.housekeeping();
    }
    shard.finish();
    captured
}

fn only(events: &[FeedEvent], symbol: u32) -> Vec<FeedEvent> {
    events
        .iter()
        .filter(|event| event.symbol_id().0 == symbol)
        .copied()
        .collect()
}

#[test]
fn event_time_gives_each_pair_the_same_result_whatever_else_the_shard_owns() {
    let events = stream();
    let single = run(&events, |_| {});
    let aggregator_one = run(&only(&events, 1), |_| {});
    let aggregator_two = run(&only(&events, 2), |_| {});
    for (symbol, aggregator) in [(1, &aggregator_one), (2, &aggregator_two)] {
        let (single_samples, single_events) = single.of_symbol(symbol);
        let (samples, events) = aggregator.of_symbol(symbol);
        // 3 venues → 6 ordered pairs, 40 buckets each.
        assert!(single_samples.len() >= 6 * 39, "{}", single_samples.len());
        assert!(!single_events.is_empty(), "the dislocations make cycles");
        assert_eq!(samples, single_samples, "symbol {symbol}: spread samples");
        assert_eq!(events, single_events, "symbol {symbol}: opportunity events");
    }
    // The buckets closed while running, by the records' time: the samples are in T0's era.
    let (samples, _) = single.of_symbol(1);
    assert!(
        samples
            .iter()
            .all(|sample| sample.bucket_start_ns >= T0
                && sample.bucket_start_ns < T0 + 42 * SECOND_NS)
    );
}

#[test]
fn without_lateness_a_lagging_symbol_loses_its_buckets_to_the_other() {
    // The control: with no lateness, symbol 2 (1.5 s ahead) closes symbol 1's buckets before
    // their last quotes arrive, so one engine and an aggregator owning symbol 1 alone disagree.
    let events = stream();
    let single = run(&events, |windows| windows.event_lateness_ms = 0);
    let alone = run(&only(&events, 1), |windows| windows.event_lateness_ms = 0);
    assert_ne!(single.of_symbol(1).0, alone.of_symbol(1).0);
}

#[test]
fn pass_through_hands_records_to_the_sinks_with_no_window_work() {
    let (engine, windows) = configs(|windows| {
        windows.enabled = false;
        windows.clock = WindowClock::System;
    });
    let (mut shard, captured) = shard(&engine, &windows);
    let events = stream();
    for event in &events[..60] {
        shard.handle(event);
    }
    shard.handle(&FeedEvent::Gap(GapEvent {
        ts_ns: T0,
        symbol_id: SymbolId(1),
        venue_id: VenueId(0),
        kind: GAP_DISCONNECT,
        ..GapEvent::default()
    }));
    shard.flush();
    shard.housekeeping();
    shard.finish();
    let records = captured.records();
    let quotes = records
        .iter()
        .filter(|record| matches!(record, OutRecord::Quote(_)))
        .count();
    let gaps = records
        .iter()
        .filter(|record| matches!(record, OutRecord::Gap(_)))
        .count();
    assert_eq!((quotes, gaps, records.len()), (60, 1, 61));
    assert_eq!(shard.windows().counts().created, 0);
    let counters = shard.counters();
    assert_eq!(
        counters
            .spread_updates
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
