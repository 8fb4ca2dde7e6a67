//! Window update cost and one shard's throughput for 1000 symbols × 8 venues (each quote updates
//! 14 directed pairs), beside a reference in the same run: the same quotes written to a bare
//! latest-quote table (what any spread engine must do at minimum). And the housekeeping of one
//! shard owning the whole universe (56 000 windows) at a bucket change, pass by pass, beside the
//! same work done in one pass (every bucket close and the whole snapshot at once); the worst single
//! pass of each is printed from an HdrHistogram.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

// The engine binary's allocator, so large arrays are placed as in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tickflow_core::config::{EngineConfig, WindowsConfig};
use tickflow_core::outbound::DiscardOutbound;
use tickflow_core::record::FeedEvent;
use tickflow_core::records::{OpportunityEvent, Quote, SpreadSample, SymbolId, VenueId};
use tickflow_core::shard::thread::shard_params;
use tickflow_core::shard::window::{WindowOutput, WindowParams, WindowStore};
use tickflow_core::shard::{ShardClock, ShardState};

const SECOND_NS: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SECOND_NS;
const SYMBOLS: u32 = 1000;
const VENUES: u16 = 8;

struct Discard;
impl WindowOutput for Discard {
    fn spread_sample(&mut self, sample: &SpreadSample) {
        black_box(sample);
    }
    fn opportunity(&mut self, event: &OpportunityEvent) {
        black_box(event);
    }
}

/// Quotes for every (symbol, venue), `rounds` times, 2 µs apart in receive time (so buckets close
/// as they would at ~500k quotes/s).
fn quotes(rounds: u32) -> Vec<FeedEvent> {
    let mut events = Vec::with_capacity((rounds * SYMBOLS * VENUES as u32) as usize);
    let mut ts = T0;
    for round in 0..rounds {
        for symbol in 0..SYMBOLS {
            for venue in 0..VENUES {
                let mid = 100.0 + f64::from(symbol % 97) + f64::from(round % 13) * 0.01;
                let skew = f64::from(venue) * 0.003;
                events.push(FeedEvent::Quote(Quote {
                    bid: mid - 0.01 + skew,
                    bid_qty: 1.0,
                    ask: mid + 0.01 + skew,
                    ask_qty: 1.0,
                    ts_recv_ns: ts,
                    symbol_id: SymbolId(symbol),
                    venue_id: VenueId(venue),
                    ..Quote::default()
                }));
                ts += 2_000;
            }
        }
    }
    events
}

fn window_update(criterion: &mut Criterion) {
    let mut store = WindowStore::new(WindowParams {
        bucket_ns: SECOND_NS,
        buckets: 3600,
        max_windows: 64,
        local_symbols: 1,
        band_k: 2.0,
        thresholds_bp: vec![40.0],
        warmup_buckets: 60,
        taker_fees_bp: [0.0; 8],
        cycles_on_net: false,
        prefault: true,
    });
    let mut output = Discard;
    let mut ts = T0;
    let mut group = criterion.benchmark_group("window");
    group.throughput(Throughput::Elements(1));
    group.bench_function("update", |bench| {
        bench.iter(|| {
            ts += 1_000_000; // a bucket closes every 1000 updates
            store.update(
                SymbolId(0),
                0,
                VenueId(1),
                VenueId(2),
                black_box(12.5 + (ts % 7) as f64),
                ts,
                &mut output,
            );
        })
    });
    group.finish();
}

fn shard_throughput(criterion: &mut Criterion) {
    let engine = EngineConfig {
        shards: 1,
        ..EngineConfig::default()
    };
    let windows = WindowsConfig::default();
    let events = quotes(20);
    let mut group = criterion.benchmark_group("shard_1000x8");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    group.bench_function("shard_handle", |bench| {
        let clock = ShardClock::Manual(Arc::new(AtomicI64::new(T0)));
        let mut shard = ShardState::new(
            shard_params(&engine, &windows, 0, 1, clock),
            Box::new(DiscardOutbound),
        );
        // Each pass replays the quotes later in time, so buckets keep closing as in a live run.
        let pass_span_ns = events.len() as i64 * 2_000;
        let mut offset_ns = 0i64;
        let replay = |shard: &mut ShardState, offset_ns: i64| {
            for event in &events {
                if let FeedEvent::Quote(quote) = event {
                    let mut quote = *quote;
                    quote.ts_recv_ns += offset_ns;
                    shard.handle(&FeedEvent::Quote(black_box(quote)));
                }
            }
        };
        // Warm: create every window once.
        replay(&mut shard, offset_ns);
        bench.iter(|| {
            offset_ns += pass_span_ns;
            replay(&mut shard, offset_ns);
        })
    });
    group.bench_function("reference_latest_table_only", |bench| {
        let mut table = vec![(0f64, 0f64, 0i64); SYMBOLS as usize * VENUES as usize];
        bench.iter(|| {
            for event in &events {
                if let FeedEvent::Quote(quote) = black_box(event) {
                    let mut quote = *quote;
                    quote.ts_recv_ns += 1;
                    let cell =
                        quote.symbol_id.0 as usize * VENUES as usize + quote.venue_id.0 as usize;
                    table[cell] = (quote.bid, quote.ask, quote.ts_recv_ns);
                }
            }
            black_box(&table);
        })
    });
    group.finish();
}

/// A shard owning the full universe with every window alive, on a manual clock at `T0`.
fn full_universe_shard() -> (ShardState, Arc<AtomicI64>) {
    let engine = EngineConfig {
        shards: 1,
        ..EngineConfig::default()
    };
    let windows = WindowsConfig::default();
    let clock = Arc::new(AtomicI64::new(T0));
    let shard = ShardState::new(
        shard_params(
            &engine,
            &windows,
            0,
            1,
            ShardClock::Manual(Arc::clone(&clock)),
        ),
        Box::new(DiscardOutbound),
    );
    (shard, clock)
}

/// Gives every window data in the bucket starting at `bucket_start_ns`.
fn fill_bucket(shard: &mut ShardState, events: &[FeedEvent], bucket_start_ns: i64) {
    for (index, event) in events.iter().enumerate() {
        if let FeedEvent::Quote(quote) = event {
            let mut quote = *quote;
            quote.ts_recv_ns = bucket_start_ns + index as i64;
            shard.handle(&FeedEvent::Quote(quote));
        }
    }
    shard.flush();
}

/// Bucket changes left out of the pass histograms: the first ones touch the snapshot buffers
/// and window pages for the first time (page faults), which a running engine did long before.
const COLD_BUCKET_CHANGES: i64 = 2;

fn housekeeping(criterion: &mut Criterion) {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let events = quotes(1);
    let mut group = criterion.benchmark_group("housekeeping_1000x8");
    group.sample_size(10);
    // Sliced: passes of at most 1 024 bucket closes and 2 048 snapshot slots, as the shard runs.
    let mut sliced_passes = hdrhistogram::Histogram::<u64>::new(3).expect("valid histogram");
    // The same passes on the thread's own CPU clock: a pass the VM preempts is long by the wall
    // clock but not on this one, which tells the engine's cost from the machine's noise.
    let mut sliced_passes_on_cpu = hdrhistogram::Histogram::<u64>::new(3).expect("valid histogram");
    let thread_cpu_ns = || {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
    };
    let mut sliced_passes_per_change = 0u64;
    {
        let (mut shard, clock) = full_universe_shard();
        let mut bucket = 0i64;
        fill_bucket(&mut shard, &events, T0);
        group.bench_function("bucket_change_sliced_passes", |bench| {
            bench.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    bucket += 1;
                    let start_ns = T0 + bucket * SECOND_NS;
                    clock.store(start_ns, Ordering::Release);
                    let mut passes = 0;
                    loop {
                        let started = Instant::now();
                        let cpu_started_ns = thread_cpu_ns();
                        let pending = shard.housekeeping();
                        let on_cpu_ns = thread_cpu_ns().saturating_sub(cpu_started_ns);
                        let elapsed = started.elapsed();
                        total += elapsed;
                        passes += 1;
                        if bucket > COLD_BUCKET_CHANGES {
                            let _ = sliced_passes.record(elapsed.as_nanos() as u64);
                            let _ = sliced_passes_on_cpu.record(on_cpu_ns);
                        }
                        // Until the snapshot started at this change is published too.
                        if !pending && shard.published_snapshot().published_ns == start_ns {
                            break;
                        }
                    }
                    sliced_passes_per_change = passes;
                    fill_bucket(&mut shard, &events, start_ns);
                }
                total
            })
        });
    }
    // Reference: the same work in one pass (all closes, then the whole snapshot).
    let mut single_passes = hdrhistogram::Histogram::<u64>::new(3).expect("valid histogram");
    {
        let (mut shard, _clock) = full_universe_shard();
        let mut bucket = 0i64;
        fill_bucket(&mut shard, &events, T0);
        let mut output = Discard;
        group.bench_function("reference_bucket_change_in_one_pass", |bench| {
            bench.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    bucket += 1;
                    let start_ns = T0 + bucket * SECOND_NS;
                    let started = Instant::now();
                    let windows = shard.windows_mut();
                    windows.close_due_buckets(start_ns, usize::MAX, &mut output);
                    shard.publish_snapshot(start_ns);
                    let elapsed = started.elapsed();
                    total += elapsed;
                    if bucket > COLD_BUCKET_CHANGES {
                        let _ = single_passes.record(elapsed.as_nanos() as u64);
                    }
                    fill_bucket(&mut shard, &events, start_ns);
                }
                total
            })
        });
    }
    group.finish();
    let micros = |nanos: u64| nanos as f64 / 1000.0;
    eprintln!(
        "housekeeping_1000x8: sliced: {sliced_passes_per_change} passes per bucket change, pass p50 {:.1} µs, p99 {:.1} µs, worst {:.1} µs \
         (on the thread's CPU clock: p99 {:.1} µs, p99.99 {:.1} µs, worst {:.1} µs; {} passes); one pass (reference): p50 {:.1} µs, worst {:.1} µs",
        micros(sliced_passes.value_at_quantile(0.5)),
        micros(sliced_passes.value_at_quantile(0.99)),
        micros(sliced_passes.max()),
        micros(sliced_passes_on_cpu.value_at_quantile(0.99)),
        micros(sliced_passes_on_cpu.value_at_quantile(0.9999)),
        micros(sliced_passes_on_cpu.max()),
        sliced_passes.len(),
        micros(single_passes.value_at_quantile(0.5)),
        micros(single_passes.max()),
    );
}

criterion_group!(benches, window_update, shard_throughput, housekeeping);
criterion_main!(benches);
