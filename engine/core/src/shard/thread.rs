//! The shard thread: its loop (drain the rings that have records in batches, flush, housekeeping,
//! spin then park), the batch size, `ReadyRings` (which rings of a shard have records: what the
//! loop looks at instead of every ring), and the parameters a shard gets from the configuration.
//! The ring matrix and the threads' lifetime belong to `pipeline`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use crate::config::{EngineConfig, SpreadBasis, WindowsConfig};
use crate::record::FeedEvent;
use crate::ring::{self, Consumer};
use crate::shard::window::WindowParams;
use crate::shard::{
    SeedMessage, ShardClock, ShardParams, ShardState, ShardWaker, local_symbol_capacity,
    windows_per_shard,
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
            // Pass-through holds no windows (one slot keeps the store's invariants).
            max_windows: if windows.enabled {
                windows_per_shard(windows.max_windows, engine.max_symbols, shard_count)
            } else {
                1
            },
            local_symbols: local_symbol_capacity(engine.max_symbols, shard_count),
            band_k: windows.band_k,
            thresholds_bp: windows.thresholds_bp.clone(),
            warmup_buckets: windows.warmup_buckets.min(windows.buckets),
            taker_fees_bp: windows.taker_fees_bp(),
            cycles_on_net: windows.cycles_on == SpreadBasis::Net,
            prefault: windows.prefault,
        },
        idle_expire_ns: windows.idle_expire_ms_effective() as i64 * 1_000_000,
        snapshot_interval_ns: windows.snapshot_interval_ms as i64 * 1_000_000,
        batch_max_records: SHARD_BATCH_MAX_RECORDS,
        idle_spin_iterations: engine.idle_spin_iterations,
        idle_park_ms: engine.idle_park_ms,
        batch_wait_us: engine.shard_batch_wait_us,
        pinned_core: (!engine.shard_cores.is_empty())
            .then(|| engine.shard_cores[shard_index % engine.shard_cores.len()]),
        clock: clock.for_shard(),
        pass_through: !windows.enabled,
    }
}

/// Which of a shard's rings (one per connection slot) have records the shard may not have seen:
/// a bit per slot, set by the slot's producer (`mark`) at its first push after a flush and at
/// every flush, taken by the shard (`take_into`). The shard drains only those rings, so a loop
/// pass (and every spin of a dry shard) costs a few words, not a look at all
/// `engine.max_connection_slots` rings, most of them never used.
///
/// Ordering: a producer's push (a release store of the ring's tail) comes before its `mark` (an
/// atomic RMW), and the shard's `take_into` swaps the word (an acquire RMW) before it reads the
/// ring: a shard that takes the bit sees the records pushed before it was set. A bit set after
/// the shard took the word stays set for its next pass; before the shard parks it looks at the
/// bits again after marking itself parked (`ShardWaker::park`), and the producer's wake after
/// `mark` sees that mark (the fence in `ShardWaker::wake`), so no record waits out the park.
pub(crate) struct ReadyRings {
    words: Box<[AtomicU64]>,
}

impl ReadyRings {
    pub(crate) fn new(slots: usize) -> ReadyRings {
        ReadyRings {
            words: (0..slots.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Words `take_into` needs.
    pub(crate) fn word_count(&self) -> usize {
        self.words.len()
    }

    /// Slot `slot`'s ring to this shard has records (called by its producer).
    #[inline]
    pub(crate) fn mark(&self, slot: usize) {
        let bit = 1u64 << (slot % 64);
        let word = &self.words[slot / 64];
        // Most marks find the bit clear (the shard took it); the check saves nothing worth the
        // lost ordering (see the type's docs), so the RMW is unconditional.
        word.fetch_or(bit, Ordering::SeqCst);
    }

    /// Adds the marked rings to `pending` and clears the marks.
    #[inline]
    fn take_into(&self, pending: &mut [u64]) {
        for (word, pending) in self.words.iter().zip(pending.iter_mut()) {
            if word.load(Ordering::Relaxed) != 0 {
                *pending |= word.swap(0, Ordering::SeqCst);
            }
        }
    }

    /// Whether any ring is marked.
    pub(crate) fn any(&self) -> bool {
        self.words
            .iter()
            .any(|word| word.load(Ordering::SeqCst) != 0)
    }
}

/// How long a shard waits for room in a full sink lane before it looks again (bucket closes
/// pending): short against the half bucket the closes may wait, long against a yield's spin.
const ROOM_WAIT: Duration = Duration::from_millis(1);

/// Drains every ring once, up to `SHARD_BATCH_MAX_RECORDS` each; returns records handled. The
/// slow path: at shutdown and after a park no producer ended (records pushed without a flush).
pub(crate) fn drain_once(state: &mut ShardState, consumers: &mut [Consumer<FeedEvent>]) -> usize {
    let mut handled = 0;
    for consumer in consumers.iter_mut() {
        state.note_ring_fill(consumer.slots());
        handled += ring::pop_batch(consumer, SHARD_BATCH_MAX_RECORDS, |event| {
            state.handle(event)
        });
    }
    handled
}

/// Drains the rings marked in `ready` or left in `pending` by the last pass (a ring that gave a
/// whole batch may hold more), up to `SHARD_BATCH_MAX_RECORDS` each; returns records handled.
fn drain_marked(
    state: &mut ShardState,
    consumers: &mut [Consumer<FeedEvent>],
    ready: &ReadyRings,
    pending: &mut [u64],
) -> usize {
    ready.take_into(pending);
    let mut handled = 0;
    for (word_index, word) in pending.iter_mut().enumerate() {
        let mut bits = *word;
        while bits != 0 {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let Some(consumer) = consumers.get_mut(word_index * 64 + bit) else {
                *word &= !(1u64 << bit);
                continue;
            };
            state.note_ring_fill(consumer.slots());
            let count = ring::pop_batch(consumer, SHARD_BATCH_MAX_RECORDS, |event| {
                state.handle(event)
            });
            handled += count;
            if count < SHARD_BATCH_MAX_RECORDS {
                *word &= !(1u64 << bit);
            }
        }
    }
    handled
}

pub(crate) fn run_shard(
    mut state: ShardState,
    mut consumers: Vec<Consumer<FeedEvent>>,
    waker: &ShardWaker,
    ready: &ReadyRings,
    stop: &AtomicBool,
    seeds: Receiver<SeedMessage>,
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
    // The thread's first arc-swap publication registers it with arc-swap (an allocation): done
    // here, at start, so the steady state never allocates for a snapshot's hand-over.
    state.publish_snapshot(state.now_ns());
    let mut pending = vec![0u64; ready.word_count()];
    let mut idle_iterations = 0u32;
    // Whether to wait for a batch when the rings run dry: only while records come faster than
    // one per batch wait (a batch arrived within one wait of the previous one). Waiting again
    // after a wait that found a batch was measured to cost the shard more (its timed waits then
    // often miss the feeds' cadence and it parks anyway). Slower than
    // that, a wait would mostly find nothing and cost a timed sleep per record on top of the
    // wake-up, so the shard parks until a producer wakes it.
    let mut batching = false;
    let mut last_batch_at = std::time::Instant::now();
    // What the last housekeeping pass left: bucket closes, or a snapshot's next slices.
    let mut housekeeping_due = false;
    // Warm start: seeds come before any record (the pipeline closes the channel when it hands
    // out its first producer); once it is closed the loop no longer looks at it.
    let mut seeds = Some(seeds);
    loop {
        if let Some(receiver) = &seeds {
            match receiver.try_recv() {
                Ok(SeedMessage::Window(seed)) => {
                    state.seed(&seed);
                    continue;
                }
                Ok(SeedMessage::Done(answer)) => {
                    state.seeding_done();
                    // The seeding thread may have stopped waiting: nothing to do then.
                    let _ = answer.send(());
                    seeds = None;
                }
                Err(TryRecvError::Disconnected) => seeds = None,
                Err(TryRecvError::Empty) => {}
            }
        }
        let handled = drain_marked(&mut state, &mut consumers, ready, &mut pending);
        if handled > 0 {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            state.flush();
            housekeeping_due = state.housekeeping() || state.snapshot_in_progress();
            idle_iterations = 0;
            let now = std::time::Instant::now();
            batching = !batch_wait.is_zero() && now.duration_since(last_batch_at) < batch_wait;
            last_batch_at = now;
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            // One last look at every ring: producers are gone, so empty now means empty for good.
            if drain_once(&mut state, &mut consumers) == 0 {
                break;
            }
            continue;
        }
        // Housekeeping runs after every batch, pass after pass while it has work left (bucket
        // closes, a snapshot's slices), and before the shard waits; not at every spin (each
        // pass reads the clock).
        if housekeeping_due || idle_iterations + 1 >= spin_limit {
            let closes_pending = state.housekeeping();
            housekeeping_due = closes_pending || state.snapshot_in_progress();
            if closes_pending {
                if state.closes_waiting_for_room() {
                    // A sink's lane has no room for closes (full but for the quarter kept for
                    // live records: a stalled or slow sink): wait a little for its runner to
                    // drain instead of spinning on yield until half a bucket has passed (records
                    // arriving meanwhile wait in the rings, taken next).
                    std::thread::park_timeout(ROOM_WAIT);
                } else {
                    // Let the sinks' runners take the slice just flushed, then come back for
                    // the next instead of spinning or parking.
                    std::thread::yield_now();
                }
                idle_iterations = 0;
                continue;
            }
            if housekeeping_due {
                continue;
            }
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
        waker.park(park_timeout, || stop.load(Ordering::SeqCst) || ready.any());
        if !ready.any() {
            // Woken by the timeout (or spuriously): records pushed without a flush are taken
            // now, at most `idle_park_ms` late.
            let handled = drain_once(&mut state, &mut consumers);
            if handled > 0 {
                state.flush();
                housekeeping_due = state.housekeeping() || state.snapshot_in_progress();
                idle_iterations = 0;
                continue;
            }
        }
        idle_iterations = spin_limit / 2;
    }
    // finish() closes whatever bucket closes are still pending, without waiting for room.
    state.housekeeping();
    state.finish();
    state.publish_snapshot(crate::record::now_ns());
    consumers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_rings_are_taken_once_across_words() {
        let ready = ReadyRings::new(130);
        assert_eq!(ready.word_count(), 3);
        assert!(!ready.any());
        for slot in [3, 70, 129, 70] {
            ready.mark(slot);
        }
        assert!(ready.any());
        let mut pending = vec![0u64; ready.word_count()];
        ready.take_into(&mut pending);
        assert_eq!(pending, vec![1 << 3, 1 << (70 - 64), 1 << (129 - 128)]);
        // Taken: nothing is marked any more, and a second take adds nothing.
        assert!(!ready.any());
        ready.take_into(&mut pending);
        assert_eq!(pending, vec![1 << 3, 1 << 6, 1 << 1]);
    }
}
