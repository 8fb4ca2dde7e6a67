//! The default configuration holds the old system's whole universe (1000 symbols × 8 venues,
//! 56 000 directed pairs) inside 1 GiB, and a sustained run through the real shards stays inside
//! the computed budget. A test binary of its own: it measures this process's RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tickflow::budget::memory_budget;
use tickflow::config::Config;
use tickflow_core::outbound::{DiscardOutbound, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::record::FeedEvent;
use tickflow_core::records::{Quote, SymbolId, VenueId};
use tickflow_core::shard::ShardClock;

const GIB: usize = 1 << 30;
const SECOND_NS: i64 = 1_000_000_000;

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc is required");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS line in /proc/self/status");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .expect("VmRSS value in kB");
    kib * 1024
}

#[test]
fn defaults_hold_the_universe_within_budget_and_rss_stays_inside_it() {
    // The defaults, with the shard count of a 2-core machine pinned so the test is the same
    // everywhere (`it::budget` checks the budget at every automatic shard count).
    let config = Config::from_toml_str("[engine]\nshards = 2\n").unwrap();
    assert!(
        config.windows.max_windows >= 1000 * 8 * 7,
        "56 000 directed pairs must fit"
    );
    let budget = memory_budget(&config);
    println!("{budget}");
    // The 1 GiB goal is for what the config sizes (the process base is a constant beside it).
    assert!(
        budget.total_bytes - tickflow::budget::PROCESS_BASE_BYTES <= GIB,
        "default budget {} B exceeds 1 GiB beside the process base",
        budget.total_bytes
    );

    let baseline_rss = rss_bytes();
    let now = Arc::new(AtomicI64::new(1_700_000_000 * SECOND_NS));
    let outbounds: Vec<Box<dyn Outbound>> = (0..config.shard_count())
        .map(|_| Box::new(DiscardOutbound) as Box<dyn Outbound>)
        .collect();
    let mut pipeline = Pipeline::start_with_clock(
        &config.engine,
        &config.windows,
        outbounds,
        ShardClock::Manual(Arc::clone(&now)),
    )
    .unwrap();
    let mut producer = pipeline.take_producer().unwrap();
    let mut peak_rss = rss_bytes();
    let mut retries_on_full_ring = 0u64;
    // 240 buckets of data time (4 minutes at 1 s), every symbol on every venue in each: every
    // window exists from the first pass on and is updated in every bucket.
    let passes = 240;
    for pass in 0..passes {
        let ts = now.load(Ordering::Acquire);
        for symbol in 0..1000u32 {
            for venue in 0..8u16 {
                let mid = 100.0 + f64::from(symbol) * 0.01 + (pass % 7) as f64 * 0.001;
                let skew = f64::from(venue) * 0.002;
                let event = FeedEvent::Quote(Quote {
                    bid: mid - 0.01 + skew,
                    bid_qty: 1.0,
                    ask: mid + 0.01 + skew,
                    ask_qty: 1.0,
                    ts_recv_ns: ts + i64::from(venue),
                    symbol_id: SymbolId(symbol),
                    venue_id: VenueId(venue),
                    ..Quote::default()
                });
                // A test producer may wait for room; a feed never does (it drops and counts).
                while !producer.push(event) {
                    retries_on_full_ring += 1;
                    producer.flush();
                    std::thread::yield_now();
                }
            }
            producer.flush();
        }
        now.fetch_add(SECOND_NS, Ordering::AcqRel);
        if pass % 20 == 0 {
            peak_rss = peak_rss.max(rss_bytes());
        }
    }
    peak_rss = peak_rss.max(rss_bytes());
    drop(producer);
    let report = pipeline.shutdown();
    peak_rss = peak_rss.max(rss_bytes());
    let counters = &report.counters;
    println!(
        "baseline RSS {} MiB, peak RSS {} MiB, budget {} MiB, windows {} live / {} evicted, \
         {} quotes, {} spread updates, {} samples, {} full-ring waits",
        baseline_rss >> 20,
        peak_rss >> 20,
        budget.total_bytes >> 20,
        counters.windows_live,
        counters.windows_evicted,
        counters.quotes,
        counters.spread_updates,
        counters.samples_emitted,
        retries_on_full_ring
    );
    assert_eq!(counters.quotes, 1000 * 8 * passes);
    assert_eq!(counters.windows_live, 56_000);
    assert_eq!(
        counters.windows_evicted, 0,
        "the default universe must fit without evicting"
    );
    assert_eq!(report.records_left_in_rings, 0);
    assert!(counters.samples_emitted >= 56_000 * (passes - 2));
    // The baseline RSS already holds the process base: the growth is measured against the rest.
    let sized_by_config_bytes = budget.total_bytes - tickflow::budget::PROCESS_BASE_BYTES;
    assert!(
        peak_rss - baseline_rss <= sized_by_config_bytes,
        "RSS grew by {} B, over the {} B the config sizes",
        peak_rss - baseline_rss,
        sized_by_config_bytes
    );
}
