//! The data path's wiring: the feed → shard ring matrix (one SPSC ring per connection slot and
//! shard), the shard threads, and their orderly shutdown.
//!
//! Rings are created once at start for `engine.max_connection_slots` slots. A connection slot takes
//! its `SlotProducer` once and keeps it across reconnects, so nothing is created per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;

use crate::config::{EngineConfig, WindowsConfig};
use crate::outbound::Outbound;
use crate::record::FeedEvent;
use crate::ring::{self, Consumer, Producer};
use crate::shard::thread::{ReadyRings, run_shard, shard_params};
use crate::shard::{
    SeedMessage, ShardClock, ShardCounters, ShardSnapshot, ShardState, ShardWaker, WindowSeed,
};
use crate::shed::ShedControl;

/// Pairs of warm-start history queued per shard at most (each one pair's samples): the seeding
/// thread waits for room, so memory is a few pairs whatever the history holds.
pub const SEED_QUEUE_PAIRS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline needs one outbound per shard: {shards} shards, {outbounds} outbounds")]
    OutboundCount { shards: usize, outbounds: usize },
    #[error(
        "config key `engine.shard_cores` names CPU {core}, which this machine does not have (CPUs: {available:?})"
    )]
    NoSuchCore { core: usize, available: Vec<usize> },
    #[error("cannot start shard thread {index}: {source}")]
    Spawn {
        index: usize,
        source: std::io::Error,
    },
}

/// Counters of one connection slot's producer side.
#[derive(Debug, Default)]
pub struct SlotCounters {
    pub pushed: AtomicU64,
    /// Records dropped because the shard's ring was full (the newest is dropped).
    pub dropped_ring_full: AtomicU64,
}

/// The producer side a connection slot owns for its whole life.
pub struct SlotProducer {
    slot_index: usize,
    rings: Vec<Producer<FeedEvent>>,
    wakers: Vec<Arc<ShardWaker>>,
    /// Per shard: where this slot marks its ring as holding records.
    ready: Vec<Arc<ReadyRings>>,
    pending_wake: Vec<bool>,
    counters: Arc<SlotCounters>,
}

impl std::fmt::Debug for SlotProducer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SlotProducer")
            .field("slot_index", &self.slot_index)
            .finish()
    }
}

impl SlotProducer {
    /// Routes `event` to its symbol's shard. Never blocks: when that ring is full the event (the
    /// newest) is dropped, counted, and `false` returned.
    #[inline]
    pub fn push(&mut self, event: FeedEvent) -> bool {
        let shard = event.symbol_id().0 as usize % self.rings.len();
        match self.rings[shard].push(event) {
            Ok(()) => {
                self.mark_pending(shard);
                self.counters.pushed.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.counters
                    .dropped_ring_full
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Routes `event` to its symbol's shard like [`push`](Self::push), but a full ring is not a
    /// drop: `false` is returned and nothing counted, for a producer that waits and retries (the
    /// NATS source, whose unacknowledged messages JetStream keeps).
    #[inline]
    pub fn try_push(&mut self, event: FeedEvent) -> bool {
        let shard = event.symbol_id().0 as usize % self.rings.len();
        if self.rings[shard].push(event).is_err() {
            return false;
        }
        self.mark_pending(shard);
        self.counters.pushed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Pushes one frame's records; returns how many were accepted. A frame is almost always one
    /// symbol, so its records go to one shard in one batch push; a mixed frame goes record by
    /// record.
    #[inline]
    pub fn push_all(&mut self, events: &[FeedEvent]) -> usize {
        let Some(first) = events.first() else {
            return 0;
        };
        let shard = first.symbol_id().0 as usize % self.rings.len();
        let one_shard = events
            .iter()
            .all(|event| event.symbol_id().0 as usize % self.rings.len() == shard);
        if !one_shard {
            return events.iter().filter(|event| self.push(**event)).count();
        }
        let pushed = ring::push_batch(&mut self.rings[shard], events);
        if pushed > 0 {
            self.mark_pending(shard);
            self.counters
                .pushed
                .fetch_add(pushed as u64, Ordering::Relaxed);
        }
        let dropped = events.len() - pushed;
        if dropped > 0 {
            self.counters
                .dropped_ring_full
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        pushed
    }

    /// The first push since the last flush marks the ring, so a spinning shard takes it at once.
    #[inline]
    fn mark_pending(&mut self, shard: usize) {
        if !self.pending_wake[shard] {
            self.pending_wake[shard] = true;
            self.ready[shard].mark(self.slot_index);
        }
    }

    /// Makes the records pushed since the last flush visible to their shards and wakes those
    /// shards (a shard waiting for a batch is woken only when this producer's ring to it is more
    /// than half full). A shard may not look at this slot's ring before the next flush (at most
    /// `engine.idle_park_ms` later if none comes): call it after each frame or burst of frames.
    ///
    /// On a thread whose owner calls [`wake_deferred_shards`] before it parks (the feeds
    /// runtime's threads), the wake of a parked shard waits for that call, or for a flush
    /// [`DEFERRED_WAKE_MAX`] after the first deferred one: one wake-up per shard for everything
    /// the thread read in one wake-up, instead of one per connection that flushed. A ring more
    /// than half full wakes its shard at once.
    #[inline]
    pub fn flush(&mut self) {
        // A flush with nothing new still ends a held wake that is old (see `DEFERRED_WAKE_MAX`).
        wake_old_deferred();
        for (shard, pending) in self.pending_wake.iter_mut().enumerate() {
            if *pending {
                *pending = false;
                self.ready[shard].mark(self.slot_index);
                let ring = &self.rings[shard];
                if ring.slots() < ring.buffer().capacity() / 2 {
                    self.wakers[shard].wake_urgently();
                } else if !defer_wake(&self.wakers[shard]) {
                    self.wakers[shard].wake();
                }
            }
        }
    }

    pub fn slot_index(&self) -> usize {
        self.slot_index
    }

    pub fn counters(&self) -> Arc<SlotCounters> {
        Arc::clone(&self.counters)
    }
}

/// Longest a shard wake is deferred on a thread with a park hook (see [`SlotProducer::flush`]):
/// a thread that stays busy (it never parks) still wakes its shards by its next flush after
/// this, with or without new records (a feed slot flushes after every burst of events).
/// Short against the batch waits, long against one wake-up's reads.
pub const DEFERRED_WAKE_MAX: std::time::Duration = std::time::Duration::from_micros(200);

/// One thread's shard wakes held for its next park.
struct DeferredWakes {
    /// The thread's owner calls `wake_deferred_shards` before every park: flushes may defer.
    park_hook: bool,
    /// Distinct shards flushed to since the last park: at most the shards of the pipelines
    /// this thread's producers feed (one in the engine).
    wakers: Vec<Arc<ShardWaker>>,
    first_deferred_at: Option<std::time::Instant>,
}

thread_local! {
    static DEFERRED_WAKES: std::cell::RefCell<DeferredWakes> = const {
        std::cell::RefCell::new(DeferredWakes {
            park_hook: false,
            wakers: Vec::new(),
            first_deferred_at: None,
        })
    };
}

/// Holds `waker`'s wake for this thread's next park when the thread has a park hook; false
/// (wake now) without one, or when the oldest held wake is `DEFERRED_WAKE_MAX` old (then every
/// held wake is done now as well).
#[inline]
fn defer_wake(waker: &Arc<ShardWaker>) -> bool {
    DEFERRED_WAKES.with(|cell| {
        let Ok(mut deferred) = cell.try_borrow_mut() else {
            return false;
        };
        if !deferred.park_hook {
            return false;
        }
        match deferred.first_deferred_at {
            None => deferred.first_deferred_at = Some(std::time::Instant::now()),
            Some(first) if first.elapsed() >= DEFERRED_WAKE_MAX => {
                deferred.first_deferred_at = None;
                for held in deferred.wakers.drain(..) {
                    held.wake();
                }
                return false;
            }
            Some(_) => {}
        }
        if !deferred.wakers.iter().any(|held| Arc::ptr_eq(held, waker)) {
            deferred.wakers.push(Arc::clone(waker));
        }
        true
    })
}

/// Does the held wakes of this thread now when the oldest is `DEFERRED_WAKE_MAX` old. Nearly
/// free when none is held (one thread-local look).
#[inline]
fn wake_old_deferred() {
    DEFERRED_WAKES.with(|cell| {
        let Ok(mut deferred) = cell.try_borrow_mut() else {
            return;
        };
        if deferred
            .first_deferred_at
            .is_some_and(|first| first.elapsed() >= DEFERRED_WAKE_MAX)
        {
            deferred.first_deferred_at = None;
            for held in deferred.wakers.drain(..) {
                held.wake();
            }
        }
    });
}

/// Wakes the shards this thread's producers flushed to since its last call, and from then on
/// lets this thread's flushes hold their wakes for the next call (see [`SlotProducer::flush`]).
/// For a runtime's `on_thread_park` hook (the feeds runtime's, through tickflow_feed): call it
/// before the thread sleeps or parks, every time.
pub fn wake_deferred_shards() {
    DEFERRED_WAKES.with(|cell| {
        let Ok(mut deferred) = cell.try_borrow_mut() else {
            return;
        };
        deferred.park_hook = true;
        deferred.first_deferred_at = None;
        for held in deferred.wakers.drain(..) {
            held.wake();
        }
    });
}

/// A point-in-time copy of the pipeline's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    pub pushed: u64,
    pub dropped_ring_full: u64,
    pub quotes: u64,
    pub trades: u64,
    pub gaps: u64,
    pub spread_updates: u64,
    pub stale_skips: u64,
    pub non_finite_spreads: u64,
    pub windows_live: u64,
    pub windows_created: u64,
    pub windows_evicted: u64,
    /// Windows evicted by memory shedding (also in `windows_evicted`), and the cap in force
    /// (summed over shards: their capacity, or lower while memory is shed).
    pub windows_shed: u64,
    pub windows_cap: u64,
    /// The fullest feed ring any shard drained over its last interval, in records (of
    /// `engine.ring_capacity_records`).
    pub ring_fill_max_records: u64,
    pub windows_expired: u64,
    pub samples_emitted: u64,
    pub opportunities_emitted: u64,
    /// Times an idle shard parked (stopped spinning until woken or its housekeeping was due).
    pub shard_parks: u64,
    /// Times a shard that ran dry waited `engine.shard_batch_wait_us` for more records.
    pub shard_batch_waits: u64,
    pub spreads_out_of_bounds: u64,
    pub stale_cycle_ends: u64,
    pub outlier_recomputes: u64,
    /// Windows ended because a venue stopped listing their symbol.
    pub windows_retired: u64,
    /// Warm start (`Pipeline::seed_windows`): windows filled from history, bucket means written,
    /// pairs left out because their shard had no free window.
    pub windows_seeded: u64,
    pub seed_samples: u64,
    pub seed_skipped_capacity: u64,
    /// Shard threads that ended before `shutdown` (a panic: their symbols get no spreads).
    pub shards_dead: u64,
    /// Frame read to spread update over each shard's last interval: the worst shard's figure.
    pub latency_ns_p50: u64,
    pub latency_ns_p99: u64,
    pub latency_ns_p999: u64,
    pub latency_ns_max: u64,
}

/// What `shutdown` observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    pub counters: PipelineCounters,
    /// Records still in rings after the shards stopped (0 after an orderly drain).
    pub records_left_in_rings: u64,
}

struct ShardThread {
    handle: JoinHandle<Vec<Consumer<FeedEvent>>>,
    waker: Arc<ShardWaker>,
    counters: Arc<ShardCounters>,
    snapshot: Arc<ArcSwap<ShardSnapshot>>,
}

/// Owns the shard threads and the producers not yet taken.
pub struct Pipeline {
    shards: Vec<ShardThread>,
    /// Warm start's hand-off, one per shard; emptied by `seed_windows` or the first
    /// `take_producer` (seeds never follow live records).
    seed_senders: Vec<std::sync::mpsc::SyncSender<SeedMessage>>,
    producers: Vec<SlotProducer>,
    slot_counters: Vec<Arc<SlotCounters>>,
    stop: Arc<AtomicBool>,
    /// The shedding request every shard follows (see `shed_control`).
    shed: Arc<ShedControl>,
    ring_capacity_records: usize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Pipeline")
            .field("shards", &self.shards.len())
            .field("producers_left", &self.producers.len())
            .finish()
    }
}

impl Pipeline {
    /// Starts `engine.shard_count()` shard threads with the clock `windows.clock` names (the
    /// system clock, or event time: each shard's own newest receive time).
    pub fn start(
        engine: &EngineConfig,
        windows: &WindowsConfig,
        outbounds: Vec<Box<dyn Outbound>>,
    ) -> Result<Pipeline, PipelineError> {
        let clock = match windows.clock {
            crate::config::WindowClock::System => ShardClock::System,
            crate::config::WindowClock::Event => {
                ShardClock::event(windows.event_lateness_ms as i64 * 1_000_000)
            }
        };
        Pipeline::start_with_clock(engine, windows, outbounds, clock)
    }

    pub fn start_with_clock(
        engine: &EngineConfig,
        windows: &WindowsConfig,
        outbounds: Vec<Box<dyn Outbound>>,
        clock: ShardClock,
    ) -> Result<Pipeline, PipelineError> {
        let shard_count = engine.shard_count();
        if outbounds.len() != shard_count {
            return Err(PipelineError::OutboundCount {
                shards: shard_count,
                outbounds: outbounds.len(),
            });
        }
        if !engine.shard_cores.is_empty() {
            let available: Vec<usize> = core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|core| core.id)
                .collect();
            if let Some(&core) = engine
                .shard_cores
                .iter()
                .find(|core| !available.contains(core))
            {
                return Err(PipelineError::NoSuchCore { core, available });
            }
        }
        let slots = engine.max_connection_slots;
        let capacity = engine.ring_capacity_records;
        let mut producers_by_slot: Vec<Vec<Producer<FeedEvent>>> = (0..slots)
            .map(|_| Vec::with_capacity(shard_count))
            .collect();
        let mut consumers_by_shard: Vec<Vec<Consumer<FeedEvent>>> = (0..shard_count)
            .map(|_| Vec::with_capacity(slots))
            .collect();
        for slot_rings in producers_by_slot.iter_mut() {
            for shard_rings in consumers_by_shard.iter_mut() {
                let (mut producer, mut consumer) = ring::ring(capacity);
                prefault(&mut producer, &mut consumer);
                slot_rings.push(producer);
                shard_rings.push(consumer);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let shed = Arc::new(ShedControl::default());
        let ready: Vec<Arc<ReadyRings>> = (0..shard_count)
            .map(|_| Arc::new(ReadyRings::new(slots)))
            .collect();
        let mut shards = Vec::with_capacity(shard_count);
        let mut seed_senders = Vec::with_capacity(shard_count);
        for (shard_index, (consumers, outbound)) in
            consumers_by_shard.into_iter().zip(outbounds).enumerate()
        {
            let params = shard_params(engine, windows, shard_index, shard_count, clock.clone());
            let mut state = ShardState::new(params, outbound);
            state.set_shed_control(Arc::clone(&shed));
            let waker = Arc::new(ShardWaker::default());
            let counters = state.counters();
            let snapshot = state.snapshot_handle();
            let thread_waker = Arc::clone(&waker);
            let thread_stop = Arc::clone(&stop);
            let thread_ready = Arc::clone(&ready[shard_index]);
            let (seed_sender, seeds) = std::sync::mpsc::sync_channel(SEED_QUEUE_PAIRS);
            seed_senders.push(seed_sender);
            let handle = std::thread::Builder::new()
                .name(format!("tickflow-shard-{shard_index}"))
                .spawn(move || {
                    run_shard(
                        state,
                        consumers,
                        &thread_waker,
                        &thread_ready,
                        &thread_stop,
                        seeds,
                    )
                })
                .map_err(|source| PipelineError::Spawn {
                    index: shard_index,
                    source,
                })?;
            shards.push(ShardThread {
                handle,
                waker,
                counters,
                snapshot,
            });
        }
        let wakers: Vec<Arc<ShardWaker>> = shards.iter().map(|s| Arc::clone(&s.waker)).collect();
        let mut slot_counters = Vec::with_capacity(slots);
        let mut producers: Vec<SlotProducer> = producers_by_slot
            .into_iter()
            .enumerate()
            .map(|(slot_index, rings)| {
                let counters = Arc::new(SlotCounters::default());
                slot_counters.push(Arc::clone(&counters));
                SlotProducer {
                    slot_index,
                    rings,
                    wakers: wakers.clone(),
                    ready: ready.clone(),
                    pending_wake: vec![false; shard_count],
                    counters,
                }
            })
            .collect();
        // `take_producer` pops from the end: hand out slot 0 first.
        producers.reverse();
        Ok(Pipeline {
            shards,
            seed_senders,
            producers,
            slot_counters,
            stop,
            shed,
            ring_capacity_records: capacity,
        })
    }

    /// Records one feed → shard ring holds.
    pub fn ring_capacity_records(&self) -> usize {
        self.ring_capacity_records
    }

    /// The cell through which the engine is asked to shed memory (a critical memory alert):
    /// every shard reads it in housekeeping and evicts down to the lower window cap itself.
    pub fn shed_control(&self) -> Arc<ShedControl> {
        Arc::clone(&self.shed)
    }

    /// The producer for the next connection slot; `None` when all `max_connection_slots` are taken.
    pub fn take_producer(&mut self) -> Option<SlotProducer> {
        self.seed_senders.clear();
        self.producers.pop()
    }

    /// Warm start: hands each pair's history to the shard that owns its symbol (a bounded
    /// channel: this waits for room, so memory is `SEED_QUEUE_PAIRS` pairs per shard), then waits
    /// until every shard has written them and published counts and a snapshot. Call once, before
    /// the first `take_producer`; afterwards (or a second time) it seeds nothing. Returns the
    /// pairs handed over; what the shards made of them is in `counters()` (`windows_seeded`,
    /// `seed_samples`, `seed_skipped_capacity`).
    pub fn seed_windows(&mut self, seeds: impl IntoIterator<Item = WindowSeed>) -> u64 {
        let senders = std::mem::take(&mut self.seed_senders);
        if senders.is_empty() {
            return 0;
        }
        let mut handed = 0;
        for seed in seeds {
            let shard = seed.symbol_id.0 as usize % senders.len();
            // A shard that died dropped its receiver: its seeds are lost with it.
            if senders[shard].send(SeedMessage::Window(seed)).is_ok() {
                handed += 1;
            }
            // The unpark token makes a park that starts after this return at once.
            self.shards[shard].waker.wake_unconditionally();
        }
        let (answer, answers) = std::sync::mpsc::sync_channel(senders.len());
        let mut expected = 0;
        for (shard, sender) in senders.iter().enumerate() {
            if sender.send(SeedMessage::Done(answer.clone())).is_ok() {
                expected += 1;
            }
            self.shards[shard].waker.wake_unconditionally();
        }
        drop(answer);
        for _ in 0..expected {
            // Err: a shard died before answering (its `Done` was dropped with it).
            if answers.recv().is_err() {
                break;
            }
        }
        handed
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Latest published snapshot of every shard.
    pub fn snapshots(&self) -> Vec<Arc<ShardSnapshot>> {
        self.shards
            .iter()
            .map(|shard| shard.snapshot.load_full())
            .collect()
    }

    /// A cheap handle readers (control plane, demo) can keep to load snapshots without the pipeline.
    pub fn snapshot_handles(&self) -> Vec<Arc<ArcSwap<ShardSnapshot>>> {
        self.shards
            .iter()
            .map(|shard| Arc::clone(&shard.snapshot))
            .collect()
    }

    pub fn counters(&self) -> PipelineCounters {
        let mut total = PipelineCounters::default();
        for slot in &self.slot_counters {
            total.pushed += slot.pushed.load(Ordering::Relaxed);
            total.dropped_ring_full += slot.dropped_ring_full.load(Ordering::Relaxed);
        }
        for shard in &self.shards {
            add_shard_counters(&mut total, &shard.counters);
        }
        total.shards_dead = self.dead_shards().len() as u64;
        total
    }

    /// A handle on the shards' counters that outlives a borrow of the pipeline (for a metrics
    /// exporter on another thread): [`ShardCountersHandle::shard`] reads one shard.
    pub fn shard_counters_handle(&self) -> ShardCountersHandle {
        ShardCountersHandle {
            shards: self
                .shards
                .iter()
                .map(|shard| Arc::clone(&shard.counters))
                .collect(),
        }
    }

    /// Shards whose thread has ended although the pipeline was not shut down: a shard only ends on
    /// its own by panicking (a bug), and its symbols then get no spreads. The binary checks this
    /// while it runs and stops with an error rather than run on without them.
    pub fn dead_shards(&self) -> Vec<usize> {
        if self.stop.load(Ordering::SeqCst) {
            return Vec::new();
        }
        self.shards
            .iter()
            .enumerate()
            .filter(|(_, shard)| shard.handle.is_finished())
            .map(|(index, _)| index)
            .collect()
    }

    /// Stops the shards after they drained every ring, flushes their outbounds and joins them.
    /// Call once every `SlotProducer` is dropped (feeds stopped); records pushed after this are lost.
    pub fn shutdown(self) -> ShutdownReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut records_left_in_rings = 0u64;
        let mut counters = PipelineCounters::default();
        for slot in &self.slot_counters {
            counters.pushed += slot.pushed.load(Ordering::Relaxed);
            counters.dropped_ring_full += slot.dropped_ring_full.load(Ordering::Relaxed);
        }
        for shard in self.shards {
            shard.waker.wake_unconditionally();
            match shard.handle.join() {
                Ok(consumers) => {
                    records_left_in_rings += consumers.iter().map(|c| c.slots() as u64).sum::<u64>()
                }
                Err(_) => {
                    tracing::error!("a shard thread panicked; its rings are lost");
                    counters.shards_dead += 1;
                }
            }
            add_shard_counters(&mut counters, &shard.counters);
        }
        drop(self.producers);
        ShutdownReport {
            counters,
            records_left_in_rings,
        }
    }
}

/// The shards' counters, readable from any thread (see [`Pipeline::shard_counters_handle`]).
#[derive(Clone, Debug)]
pub struct ShardCountersHandle {
    shards: Vec<Arc<ShardCounters>>,
}

impl ShardCountersHandle {
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// One shard's counters (its latency figures are its own, not the worst shard's).
    pub fn shard(&self, index: usize) -> Option<PipelineCounters> {
        let mut counters = PipelineCounters::default();
        add_shard_counters(&mut counters, self.shards.get(index)?);
        Some(counters)
    }
}

fn add_shard_counters(total: &mut PipelineCounters, shard: &ShardCounters) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    total.quotes += load(&shard.quotes);
    total.trades += load(&shard.trades);
    total.gaps += load(&shard.gaps);
    total.spread_updates += load(&shard.spread_updates);
    total.stale_skips += load(&shard.stale_skips);
    total.non_finite_spreads += load(&shard.non_finite_spreads);
    total.windows_live += load(&shard.windows_live);
    total.windows_created += load(&shard.windows_created);
    total.windows_evicted += load(&shard.windows_evicted);
    total.windows_shed += load(&shard.windows_shed);
    total.windows_cap += load(&shard.windows_cap);
    total.ring_fill_max_records = total
        .ring_fill_max_records
        .max(load(&shard.ring_fill_max_records));
    total.windows_expired += load(&shard.windows_expired);
    total.samples_emitted += load(&shard.samples_emitted);
    total.opportunities_emitted += load(&shard.opportunities_emitted);
    total.shard_parks += load(&shard.parks);
    total.shard_batch_waits += load(&shard.batch_waits);
    total.spreads_out_of_bounds += load(&shard.spreads_out_of_bounds);
    total.stale_cycle_ends += load(&shard.stale_cycle_ends);
    total.outlier_recomputes += load(&shard.outlier_recomputes);
    total.windows_retired += load(&shard.windows_retired);
    total.windows_seeded += load(&shard.windows_seeded);
    total.seed_samples += load(&shard.seed_samples);
    total.seed_skipped_capacity += load(&shard.seed_skipped_capacity);
    total.latency_ns_p50 = total.latency_ns_p50.max(load(&shard.latency_ns_p50));
    total.latency_ns_p99 = total.latency_ns_p99.max(load(&shard.latency_ns_p99));
    total.latency_ns_p999 = total.latency_ns_p999.max(load(&shard.latency_ns_p999));
    total.latency_ns_max = total.latency_ns_max.max(load(&shard.latency_ns_max));
}

/// Writes every slot of a new ring once (and reads it back), so its pages are resident from the
/// start: RSS then shows the budget at start instead of creeping up the first time a burst fills a
/// ring deeper than before (which looks like a leak in a long storm).
fn prefault(producer: &mut Producer<FeedEvent>, consumer: &mut Consumer<FeedEvent>) {
    let filler = FeedEvent::Gap(tickflow_sdk::records::GapEvent::default());
    while producer.push(filler).is_ok() {}
    while consumer.pop().is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::DiscardOutbound;
    use crate::record::now_ns;
    use tickflow_sdk::records::{Quote, SymbolId, VenueId};

    fn quote(symbol: u32, venue: u16) -> FeedEvent {
        FeedEvent::Quote(Quote {
            bid: 100.0,
            bid_qty: 1.0,
            ask: 100.1,
            ask_qty: 1.0,
            ts_recv_ns: now_ns(),
            symbol_id: SymbolId(symbol),
            venue_id: VenueId(venue),
            ..Quote::default()
        })
    }

    /// Waits (a liveness bound, not a timing assertion) until the shard counted `quotes`.
    fn wait_for_quotes(pipeline: &Pipeline, quotes: u64, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pipeline.counters().quotes < quotes {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        }
    }

    /// A one-shard pipeline of `engine` (its `shards` set to 1) with a discarding sink.
    fn one_shard_pipeline(engine: EngineConfig) -> Pipeline {
        let engine = EngineConfig {
            shards: 1,
            ..engine
        };
        Pipeline::start(
            &engine,
            &WindowsConfig::default(),
            vec![Box::new(DiscardOutbound)],
        )
        .expect("the pipeline starts")
    }

    #[test]
    fn the_shard_takes_records_from_any_slot_flushed_or_not() {
        let mut pipeline = one_shard_pipeline(EngineConfig {
            max_symbols: 16,
            ring_capacity_records: 64,
            max_connection_slots: 130,
            ..EngineConfig::default()
        });
        let mut producers: Vec<SlotProducer> =
            std::iter::from_fn(|| pipeline.take_producer()).collect();
        assert_eq!(producers.len(), 130);
        // Slots in the first, second and third word of the shard's ready marks.
        for (done, slot) in [0usize, 70, 129].into_iter().enumerate() {
            assert_eq!(producers[slot].slot_index(), slot);
            assert!(producers[slot].push(quote(1, slot as u16 % 8)));
            producers[slot].flush();
            wait_for_quotes(&pipeline, done as u64 + 1, "a flushed record never arrived");
        }
        // Pushes with no flush: the first since a flush marks the ring, so it is taken at once;
        // the second finds the ring still marked pending and is taken when the shard's park
        // times out and it looks at every ring.
        assert!(producers[64].push(quote(2, 1)));
        wait_for_quotes(&pipeline, 4, "the first unflushed record never arrived");
        assert!(producers[64].push(quote(2, 2)));
        wait_for_quotes(&pipeline, 5, "the second unflushed record never arrived");
        drop(producers);
        let report = pipeline.shutdown();
        assert_eq!(report.counters.quotes, 5);
        assert_eq!(report.records_left_in_rings, 0);
    }

    /// Waits until the shard starts a new park, then long enough that it is asleep in it (its
    /// last look at the rings is over): it sleeps `idle_park_ms` (1 s here) unless woken.
    fn wait_for_a_fresh_park(pipeline: &Pipeline) {
        let parks = pipeline.counters().shard_parks;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pipeline.counters().shard_parks == parks {
            assert!(
                std::time::Instant::now() < deadline,
                "the shard never parked"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    /// Waits at most `within` (far less than the shard's 1 s park) until it counted `quotes`.
    fn quotes_arrive_within(pipeline: &Pipeline, quotes: u64, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if pipeline.counters().quotes >= quotes {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_thread_with_a_park_hook_wakes_its_shards_when_it_parks_or_when_the_wake_is_old() {
        let mut pipeline = one_shard_pipeline(EngineConfig {
            max_symbols: 16,
            ring_capacity_records: 64,
            max_connection_slots: 2,
            idle_park_ms: 1_000,
            shard_batch_wait_us: 0,
            ..EngineConfig::default()
        });
        let mut producer = pipeline.take_producer().expect("a producer");
        // The deferral is per thread: the test harness runs each test on a thread of its own,
        // so nothing else sees this test's hook.
        // Without a park hook a flush wakes the parked shard at once.
        wait_for_a_fresh_park(&pipeline);
        assert!(producer.push(quote(1, 0)));
        producer.flush();
        assert!(
            quotes_arrive_within(&pipeline, 1, std::time::Duration::from_millis(500)),
            "a flush without a park hook did not wake the shard"
        );
        // With one, the wake waits for the thread's park...
        wake_deferred_shards();
        wait_for_a_fresh_park(&pipeline);
        assert!(producer.push(quote(1, 1)));
        producer.flush();
        assert!(
            !quotes_arrive_within(&pipeline, 2, std::time::Duration::from_millis(100)),
            "the wake was not held for the park"
        );
        wake_deferred_shards();
        assert!(
            quotes_arrive_within(&pipeline, 2, std::time::Duration::from_millis(500)),
            "the park hook did not wake the shard"
        );
        // ...or for a flush once the held wake is `DEFERRED_WAKE_MAX` old, for a thread that
        // stays busy and does not park: one with a record of its own...
        wait_for_a_fresh_park(&pipeline);
        assert!(producer.push(quote(1, 2)));
        producer.flush();
        std::thread::sleep(DEFERRED_WAKE_MAX * 5);
        assert_eq!(pipeline.counters().quotes, 2, "held until the next flush");
        assert!(producer.push(quote(1, 3)));
        producer.flush();
        assert!(
            quotes_arrive_within(&pipeline, 4, std::time::Duration::from_millis(500)),
            "an old held wake was not done by the next flush"
        );
        // ...or one with nothing new (a burst of control frames, say). The park first ends
        // what the flush above held for its own record.
        wake_deferred_shards();
        wait_for_a_fresh_park(&pipeline);
        assert!(producer.push(quote(1, 4)));
        producer.flush();
        std::thread::sleep(DEFERRED_WAKE_MAX * 5);
        assert_eq!(pipeline.counters().quotes, 4, "held until the next flush");
        producer.flush();
        assert!(
            quotes_arrive_within(&pipeline, 5, std::time::Duration::from_millis(500)),
            "an old held wake was not done by a flush with nothing new"
        );
        drop(producer);
        let report = pipeline.shutdown();
        assert_eq!(report.counters.quotes, 5);
    }
}
