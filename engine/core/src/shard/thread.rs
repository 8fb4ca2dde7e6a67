//! The shard thread: its loop (drain every ring in batches, flush, housekeeping, spin then park),
//! the batch size, and the parameters a shard gets from the configuration. The ring matrix and the
//! threads' lifetime belong to `pipeline`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{EngineConfig, SpreadBasis, WindowsConfig};
use crate::record::FeedEvent;
use crate::ring::{self, Consumer};
use crate::shard::window::WindowParams;
use crate::shard::{
    ShardClock, ShardParams, ShardState, ShardWaker, local_symbol_capacity, windows_per_shard,
};

/// Records a shard takes from one ring before looking at the next.
pub(crate) const SHARD_BATCH_MAX_RECORDS: usize = 256;

/// The shard parameters `engine` and `windows` imply for shard `shard_index` of `shard_count`.
pub fn shard_params(
    engine: &EngineConfig,
    windows: &WindowsConfig,
    shard_index: usize,
    shard_count: usize,
    clock: ShardClock,
) -> ShardParams {
    let bucket_ns = windows.bucket_ms as i64 * 1_000_000;
    ShardParams {
        shard_index,
        shard_count,
        max_symbols: engine.max_symbols,
        quote_max_age_ns: std::array::from_fn(|venue| {
            if engine.quote_age_limited[venue] {
                engine.stale_after_ms as i64 * 1_000_000
            } else {
                i64::MAX
            }
        }),
        max_abs_spread_bp: windows.max_abs_spread_bp,
        min_top_notional: windows.min_top_notional,
        windows: WindowParams {
            bucket_ns,
            buckets: windows.buckets,
            max_windows: windows_per_shard(windows.max_windows, engine.max_symbols, shard_count),
            local_symbols: local_symbol_capacity(engine.max_symbols, shard_count),
            band_k: windows.band_k,
            thresholds_bp: windows.thresholds_bp.clone(),
            warmup_buckets: windows.warmup_buckets.min(windows.buckets),
            taker_fees_bp: windows.taker_fees_bp(),
            cycles_on_net: windows.cycles_on == SpreadBasis::Net,
        },
        idle_expire_ns: windows.idle_expire_ms_effective() as i64 * 1_000_000,
        snapshot_interval_ns: windows.snapshot_interval_ms as i64 * 1_000_000,
        batch_max_records: SHARD_BATCH_MAX_RECORDS,
        idle_spin_iterations: engine.idle_spin_iterations,
        idle_park_ms: engine.idle_park_ms,
        batch_wait_us: engine.shard_batch_wait_us,
        pinned_core: (!engine.shard_cores.is_empty())
            .then(|| engine.shard_cores[shard_index % engine.shard_cores.len()]),
        clock,
    }
}

/// Drains every ring once, up to `SHARD_BATCH_MAX_RECORDS` each; returns records handled.
pub(crate) fn drain_once(state: &mut ShardState, consumers: &mut [Consumer<FeedEvent>]) -> usize {
    let mut handled = 0;
    for consumer in consumers.iter_mut() {
        handled += ring::pop_batch(consumer, SHARD_BATCH_MAX_RECORDS, |event| {
            state.handle(event)
        });
    }
    handled
}

pub(crate) fn run_shard(
    mut state: ShardState,
    mut consumers: Vec<Consumer<FeedEvent>>,
    waker: &ShardWaker,
    stop: &AtomicBool,
) -> Vec<Consumer<FeedEvent>> {
    waker.register_current_thread();
    if let Some(core) = state.params_pinned_core() {
        // The core was checked to exist at start; the OS can still refuse (a cpuset).
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            tracing::warn!(core, "cannot pin the shard thread; it runs unpinned");
        }
    }
    let spin_limit = state.params_idle_spin_iterations();
    let park_timeout = Duration::from_millis(state.params_idle_park_ms());
    let batch_wait = Duration::from_micros(state.params_batch_wait_us());
    let counters = state.counters();
    let mut idle_iterations = 0u32;
    // Whether to wait for a batch when the rings run dry: only while records come faster than
    // one per batch wait (a batch arrived within one wait of the previous one). Slower than
    // that, a wait would mostly find nothing and cost a timed sleep per record on top of the
    // wake-up, so the shard parks until a producer wakes it.
    let mut batching = false;
    let mut last_batch_at = std::time::Instant::now();
    loop {
        let handled = drain_once(&mut state, &mut consumers);
        if handled > 0 {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            state.flush();
            state.housekeeping();
            idle_iterations = 0;
            let now = std::time::Instant::now();
            batching = !batch_wait.is_zero() && now.duration_since(last_batch_at) < batch_wait;
            last_batch_at = now;
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            // One last look: producers are gone, so empty now means empty for good.
            if drain_once(&mut state, &mut consumers) == 0 {
                break;
            }
            continue;
        }
        if state.housekeeping() {
            // Bucket closes are pending: let the sinks' runners take the slice just flushed,
            // then come back for the next instead of spinning or parking.
            std::thread::yield_now();
            idle_iterations = 0;
            continue;
        }
        idle_iterations += 1;
        if idle_iterations < spin_limit {
            std::hint::spin_loop();
            continue;
        }
        if batching {
            // Not marked parked: producers' flushes do not wake us (only a filling ring does),
            // so what arrives during the wait is taken in one go.
            batching = false;
            counters.batch_waits.fetch_add(1, Ordering::Relaxed);
            std::thread::park_timeout(batch_wait);
            idle_iterations = spin_limit;
            continue;
        }
        counters.parks.fetch_add(1, Ordering::Relaxed);
        waker.park(park_timeout, || {
            stop.load(Ordering::SeqCst) || consumers.iter().any(|c| !c.is_empty())
        });
        idle_iterations = spin_limit / 2;
    }
    // finish() closes whatever bucket closes are still pending, without waiting for room.
    state.housekeeping();
    state.finish();
    state.publish_snapshot(crate::record::now_ns());
    consumers
}
