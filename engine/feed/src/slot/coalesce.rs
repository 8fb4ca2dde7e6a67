//! Batched wake-ups of a feeds worker thread (`feeds.batch_wait_us`): while frames arrive at two
//! or more per batch wait, the thread sleeps one batch wait before it goes back to
//! `epoll_wait`, so every frame that arrives meanwhile, on every connection of the thread, is
//! read in the next wake-up. Must not read, decode, count or decide anything about a connection.
//!
//! Why: a venue sends each best bid/ask in its own TLS record, and read one wake-up per frame,
//! the feeds thread spent about 4.7 µs per frame in `epoll_wait` and the context switches around
//! it and 3 µs in `recv` (which also sends an ACK per frame), against about 2.7 µs of its own
//! work (TLS, decoding, hand-off) — measured with `perf` at 20 000 frames/s. After one sleep, a
//! wake-up finds all the window's frames: one `epoll_wait` that does not block, one `recv` (and
//! one ACK) per connection for all of them.
//!
//! Why a blocking sleep: readiness of any socket ends `epoll_wait` at once (mio registers sockets
//! edge-triggered, and every arriving segment is an edge), so waiting for a batch has to happen
//! outside the driver; tokio's timers have a 1 ms resolution anyway. The sleep costs one context
//! switch, which is what one wake-up per frame cost, and happens at most once per park of the
//! runtime (tokio's park count): the first slot of a busy wake-up that runs out of frames sleeps,
//! the others find their frames read in the same turn. At low rates (less than two frames per
//! batch wait, where a sleep would find one frame or none and cost a second context switch)
//! nothing sleeps and nothing changes. After a sleep that found frames, the next idle moment
//! comes right after handling them, so batching goes on; after one that found none, the next
//! frame comes later than half a batch wait, so it stops. Watchdogs, pings and writes are delayed by
//! at most one batch wait; frames by at most one batch wait as well.
//!
//! Where the runtime's owner installs [`before_park`] as the feeds runtime's
//! `on_thread_park` hook (the `tickflow` binary does), the sleep moves there: the thread
//! sleeps right before it parks, once per park, when a slot read frames since the last park and
//! frames come fast — and the slots' own `before_idle` does nothing. The difference: slept in a
//! slot, a batch is followed by a park that blocks in `epoll_wait` until the next single frame
//! (a second context switch per batch, for one frame); slept before the park, `epoll_wait`
//! finds the whole batch ready and does not block, so a steady flow costs one context switch
//! per batch wait.
//!
//! The hook also wakes, first, the shards the thread's slots flushed to since its last park
//! (`tickflow_core::pipeline::wake_deferred_shards`): on a thread with the hook a flush holds
//! its shard's wake for the park, so a wake-up that read ten connections wakes each shard once,
//! before the sleep. Each sleep's real length goes into [`BatchSleeps`] (the stats line's
//! `feeds_batch_sleep_ns_*`): a frame that arrived during a sleep waited at most that long in
//! its socket, which the shard's frame-read-to-update latency cannot see.
//!
//! Measured with `tickflow-load real-rates` (binance + okx over TLS, a frame per record, this
//! 2-core VM): a wake-up of the feeds thread costs about 70 µs here and a frame's own work about
//! 2 µs, so the CPU per message at 20 000 frames/s falls with the wait: 3.2–3.4 µs at 3 ms,
//! 2.4–3.0 µs at 5 ms (the default; runs vary with the host), 16.8 µs at 0 (a wake-up per frame).

use std::cell::Cell;
use std::time::{Duration, Instant};

use tokio::runtime::RuntimeMetrics;

/// What the thread's slots share about its last sleep and idle moment.
#[derive(Clone, Copy)]
struct ThreadState {
    /// The runtime's park count when this thread last slept; a new park is a new wake-up.
    parks_at_sleep: u64,
    /// When a slot of this thread last ran out of frames after reading some.
    idle_at: Option<Instant>,
    /// Batch waits this thread has slept (what the tests observe, instead of timing).
    sleeps: u64,
    /// A slot of this thread read something since the thread last parked.
    read_since_park: bool,
    /// The runtime calls [`before_park`] on this thread: the slots leave the sleeping to it.
    park_hook: bool,
}

thread_local! {
    static THREAD: Cell<ThreadState> = const {
        Cell::new(ThreadState {
            parks_at_sleep: u64::MAX,
            idle_at: None,
            sleeps: 0,
            read_since_park: false,
            park_hook: false,
        })
    };
}

/// Longest batch sleep the histogram holds (a longer one, a descheduled thread, is recorded as
/// this): a second.
const SLEEP_NS_MAX: u64 = 1_000_000_000;

/// The batch sleeps the feeds threads took (see [`before_park`]): how long each really lasted,
/// which bounds how long a frame that arrived during it waited in its socket (the latency
/// batching adds before the frame is read; a frame read after a sleep waited part of it).
/// Shared by the runtime's threads; a sleep takes the lock once (at most one sleep per batch
/// wait per thread).
#[derive(Debug)]
pub struct BatchSleeps {
    slept_ns: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
    sleeps: std::sync::atomic::AtomicU64,
}

/// Percentiles of the batch sleeps over one interval (see [`BatchSleeps::take_interval`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchSleepFigures {
    pub sleeps: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl Default for BatchSleeps {
    fn default() -> Self {
        BatchSleeps {
            // Fixed bounds, 3 significant digits: about 170 KiB of counts, allocated once.
            slept_ns: std::sync::Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, SLEEP_NS_MAX, 3)
                    .expect("constant bounds are valid"),
            ),
            sleeps: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl BatchSleeps {
    fn record(&self, slept: Duration) {
        self.sleeps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slept_ns = (slept.as_nanos() as u64).clamp(1, SLEEP_NS_MAX);
        // A poisoned lock (a panic mid-record) only loses figures.
        if let Ok(mut histogram) = self.slept_ns.lock() {
            let _ = histogram.record(slept_ns);
        }
    }

    /// Batch sleeps since the start.
    pub fn total(&self) -> u64 {
        self.sleeps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The sleeps' percentiles since the last call, and a fresh interval.
    pub fn take_interval(&self) -> BatchSleepFigures {
        let Ok(mut histogram) = self.slept_ns.lock() else {
            return BatchSleepFigures::default();
        };
        let figures = BatchSleepFigures {
            sleeps: histogram.len(),
            p50_ns: histogram.value_at_quantile(0.5),
            p99_ns: histogram.value_at_quantile(0.99),
            p999_ns: histogram.value_at_quantile(0.999),
            max_ns: histogram.max(),
        };
        histogram.reset();
        figures
    }
}

/// The feeds runtime's `on_thread_park` hook (`tokio::runtime::Builder::on_thread_park`), for a
/// runtime whose threads run connection slots. First wakes the shards this thread's slots
/// flushed to (their wakes wait for this call: one per shard and wake-up, see
/// `tickflow_core::pipeline::wake_deferred_shards`); then sleeps `batch_wait` before the thread
/// parks when a slot read frames since the last park and the previous park was less than half
/// a wait ago (frames come at two or more per wait), recording the sleep in `sleeps`. Zero:
/// never sleeps.
pub fn before_park(batch_wait: Duration, sleeps: &BatchSleeps) {
    tickflow_core::pipeline::wake_deferred_shards();
    let mut state = THREAD.get();
    state.park_hook = true;
    if batch_wait.is_zero() {
        THREAD.set(state);
        return;
    }
    let read = std::mem::take(&mut state.read_since_park);
    let mut now = Instant::now();
    let busy = state
        .idle_at
        .is_some_and(|idle_at| now.duration_since(idle_at) < batch_wait / 2);
    if read && busy {
        let asleep_at = now;
        std::thread::sleep(batch_wait);
        state.sleeps += 1;
        now = Instant::now();
        sleeps.record(now.duration_since(asleep_at));
    }
    if read {
        state.idle_at = Some(now);
    }
    THREAD.set(state);
}

/// One slot's view of its thread's batched wake-ups.
pub(super) struct Coalescer {
    batch_wait: Duration,
    /// The runtime's park counts; `None` when batching is off (or outside a runtime).
    metrics: Option<RuntimeMetrics>,
    /// A frame or a failed read came out of the slot since it was last idle.
    read_since_idle: bool,
}

impl Coalescer {
    /// Off when `batch_wait` is zero. Call from inside the feeds runtime.
    pub(super) fn new(batch_wait: Duration) -> Coalescer {
        let metrics = if batch_wait.is_zero() {
            None
        } else {
            tokio::runtime::Handle::try_current()
                .ok()
                .map(|handle| handle.metrics())
        };
        Coalescer {
            batch_wait,
            metrics,
            read_since_idle: false,
        }
    }

    /// The slot got something from a socket. The thread's state is told once per burst (the
    /// slot's flag is cleared when it next runs out of frames, `before_idle`).
    #[inline]
    pub(super) fn read(&mut self) {
        if self.read_since_idle {
            return;
        }
        self.read_since_idle = true;
        let mut state = THREAD.get();
        state.read_since_park = true;
        THREAD.set(state);
    }

    /// The slot has nothing ready and is about to wait: sleeps one batch wait if frames are
    /// coming fast and the thread has not slept in this wake-up yet.
    pub(super) fn before_idle(&mut self) {
        let read_since_idle = std::mem::take(&mut self.read_since_idle);
        let Some(metrics) = &self.metrics else {
            return;
        };
        if !read_since_idle {
            // A housekeeping tick or a write: not a frame, so no evidence of the rate.
            return;
        }
        let mut state = THREAD.get();
        if state.park_hook {
            // The runtime sleeps before it parks (`before_park`).
            return;
        }
        let mut now = Instant::now();
        let busy = state
            .idle_at
            .is_some_and(|idle_at| now.duration_since(idle_at) < self.batch_wait / 2);
        if busy {
            let parks = (0..metrics.num_workers())
                .map(|worker| metrics.worker_park_count(worker))
                .fold(0u64, u64::wrapping_add);
            if parks != state.parks_at_sleep {
                state.parks_at_sleep = parks;
                std::thread::sleep(self.batch_wait);
                state.sleeps += 1;
                now = Instant::now();
            }
        }
        state.idle_at = Some(now);
        THREAD.set(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batch waits this thread has slept so far.
    fn sleeps() -> u64 {
        THREAD.get().sleeps
    }

    #[test]
    fn sleeps_once_per_park_and_only_while_frames_come_fast() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime starts");
        // Long enough that "busy" (two idle moments within half a wait, 250 ms) holds between
        // consecutive statements even on a loaded machine; sleeps are counted, not timed.
        let wait = Duration::from_millis(500);
        runtime.block_on(async {
            let mut first = Coalescer::new(wait);
            let mut second = Coalescer::new(wait);
            // No read, or the first idle moment: no evidence of a rate, no sleep.
            let before = sleeps();
            first.before_idle();
            first.read();
            first.before_idle();
            assert_eq!(sleeps(), before);
            // Right after the last idle moment: busy, so one sleep...
            first.read();
            first.before_idle();
            assert_eq!(sleeps(), before + 1);
            // ...and only one until the runtime parks again.
            second.read();
            second.before_idle();
            assert_eq!(sleeps(), before + 1);
            // A park (the timer below), then frames: a new wake-up may sleep again.
            tokio::time::sleep(Duration::from_millis(1)).await;
            second.read();
            second.before_idle();
            assert_eq!(sleeps(), before + 2);
            // Frames further apart than half a wait (the gap is the input, not a wait for
            // something): no sleep.
            std::thread::sleep(wait / 2 + Duration::from_millis(50));
            tokio::time::sleep(Duration::from_millis(1)).await;
            first.read();
            first.before_idle();
            assert_eq!(sleeps(), before + 2);
        });
        let off = Coalescer::new(Duration::ZERO);
        assert!(off.metrics.is_none());
    }

    #[test]
    fn the_park_hook_sleeps_before_parks_that_follow_fast_frames_and_the_slots_leave_it_to_it() {
        // A thread of its own: the hook marks its thread-local state for good.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime starts");
            let wait = Duration::from_millis(400);
            let stats = BatchSleeps::default();
            runtime.block_on(async {
                // As in a session: a slot that read frames runs out of them (`before_idle`)
                // before its thread parks.
                let mut slot = Coalescer::new(wait);
                // A park with nothing read, then the first frames: no evidence of a rate.
                before_park(wait, &stats);
                slot.read();
                slot.before_idle();
                before_park(wait, &stats);
                assert_eq!(sleeps(), 0);
                // Frames again right after the last park: the hook sleeps before this park.
                slot.read();
                slot.before_idle();
                before_park(wait, &stats);
                assert_eq!(sleeps(), 1);
                // With the hook installed the slot itself never sleeps.
                slot.read();
                slot.before_idle();
                assert_eq!(sleeps(), 1);
                // The batch the sleep gathered was read: the next park sleeps again (one
                // sleep per park while the flow goes on, no blocking park in between).
                before_park(wait, &stats);
                assert_eq!(sleeps(), 2);
                // A park with nothing read since: no sleep.
                before_park(wait, &stats);
                assert_eq!(sleeps(), 2);
                // Frames further apart than half a wait (the gap is the input): no sleep.
                std::thread::sleep(wait / 2 + Duration::from_millis(50));
                slot.read();
                slot.before_idle();
                before_park(wait, &stats);
                assert_eq!(sleeps(), 2);
                // Zero turns it off.
                slot.read();
                slot.before_idle();
                before_park(Duration::ZERO, &stats);
                slot.read();
                slot.before_idle();
                before_park(Duration::ZERO, &stats);
                assert_eq!(sleeps(), 2);
                // Every sleep was recorded, each at least the wait long.
                assert_eq!(stats.total(), 2);
                let figures = stats.take_interval();
                assert_eq!(figures.sleeps, 2);
                assert!(
                    figures.p50_ns >= wait.as_nanos() as u64 * 999 / 1000,
                    "{figures:?}"
                );
                assert!(figures.max_ns >= figures.p999_ns && figures.p999_ns >= figures.p50_ns);
                // A new interval starts empty.
                assert_eq!(stats.take_interval().sleeps, 0);
            });
        })
        .join()
        .expect("the test thread ends");
    }
}
