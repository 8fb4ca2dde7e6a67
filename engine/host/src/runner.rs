//! One sink's runner thread: the only thread that calls its plugin instance. It drains the sink's
//! lanes into per-kind batches of bounded size, calls `on_batch`, times each call into a
//! histogram, ticks the plugin once a second, and quarantines a plugin that keeps failing
//! (destroy, back off, create again; disable after the configured number of restarts).
//!
//! A runner moves batches and nothing else: no I/O of its own, no allocation after start.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tickflow_sdk::abi::{self, Descriptor, PluginStats, STATUS_OK, Status};
use tickflow_sdk::records::{
    GapEvent, OpportunityEvent, Quote, RecordKind, SpreadSample, Telemetry, Trade, VenueStatus,
};

use super::callbacks::BindingLease;
use super::config::SinkConfig;
use super::lane::{Item, LaneConsumer, LaneCounters, RECORD_KINDS, SinkShared};
use crossbeam_utils::CachePadded;

/// How often `on_tick` and `stats` are called.
const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// An instance that runs this long without being quarantined has recovered: the restart streak
/// (which drives the backoff and `disable_after_restarts`) starts again from zero. The
/// `restarts` counter keeps the total.
const HEALTHY_PERIOD: Duration = Duration::from_secs(60);
/// Empty passes (each followed by a yield) before the runner parks: a producer that flushes
/// again within them wakes nobody, which saves a futex wake and a context switch per flush
/// under steady load.
const IDLE_PASSES_BEFORE_PARK: u32 = 64;

/// Counters of one runner, read by the host for metrics.
#[derive(Debug, Default)]
pub struct RunnerCounters {
    /// Records an `on_batch` call accepted.
    pub delivered: AtomicU64,
    /// Records in batches the plugin failed (error or panic).
    pub failed_records: AtomicU64,
    /// Records drained while no instance was running (backing off, or disabled).
    pub dropped_unavailable: AtomicU64,
    pub batches: AtomicU64,
    /// Calls that returned an error status.
    pub errors: AtomicU64,
    /// Calls that returned the panic status.
    pub panics: AtomicU64,
    pub restarts: AtomicU64,
    pub disabled: AtomicBool,
    /// The plugin's own counters from its last `stats` call.
    pub plugin_records_written: AtomicU64,
    pub plugin_records_dropped: AtomicU64,
    pub plugin_bytes_written: AtomicU64,
    pub plugin_errors: AtomicU64,
    /// `delivered` by record kind (`RecordKind as usize`).
    pub delivered_by_kind: [AtomicU64; RECORD_KINDS],
    /// `failed_records` + `dropped_unavailable` by record kind.
    pub lost_by_kind: [AtomicU64; RECORD_KINDS],
}

/// One record kind's fate at one sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkKindCounts {
    /// Records of the kind the plugin accepted.
    pub delivered: u64,
    /// Records of the kind lost on the way (full lane, conflated, disabled, no instance, failed
    /// batch): by kind what `SinkStats::lost` counts over all kinds.
    pub lost: u64,
}

/// Per record kind (`RecordKind as usize`): what `runner` delivered and what it and `lanes` lost.
pub(crate) fn kind_counts(
    lanes: &[Arc<CachePadded<LaneCounters>>],
    runner: &RunnerCounters,
) -> [SinkKindCounts; RECORD_KINDS] {
    std::array::from_fn(|kind| SinkKindCounts {
        delivered: runner.delivered_by_kind[kind].load(Ordering::Relaxed),
        lost: runner.lost_by_kind[kind].load(Ordering::Relaxed)
            + lanes
                .iter()
                .map(|lane| lane.lost_by_kind[kind].load(Ordering::Relaxed))
                .sum::<u64>(),
    })
}

/// What a runner shares with the host: counters and its `on_batch` latency histogram.
#[derive(Debug)]
pub struct RunnerShared {
    pub counters: RunnerCounters,
    /// `on_batch` call time in ns, merged from the runner's own histogram once a second (a merge
    /// walks every bucket: too slow to do per batch) and when the runner ends.
    pub on_batch_ns: Mutex<Histogram<u64>>,
}

impl Default for RunnerShared {
    fn default() -> RunnerShared {
        RunnerShared {
            counters: RunnerCounters::default(),
            on_batch_ns: Mutex::new(new_histogram()),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 ns to 60 s at 3 significant digits: fixed bounds, so recording never allocates.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant histogram bounds are valid")
}

/// Why a sink could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateFailure {
    pub status: Status,
}

/// Everything a runner thread owns.
pub struct Runner {
    pub sink: SinkConfig,
    pub plugin_name: &'static str,
    pub descriptor: &'static Descriptor,
    pub config_text: String,
    /// The sink's host callbacks (a process-lifetime table; see `BindingLease`).
    pub binding: BindingLease,
    pub lanes: Vec<LaneConsumer>,
    pub shared: Arc<SinkShared>,
    pub runner_shared: Arc<RunnerShared>,
}

/// A live plugin instance.
struct Instance {
    pointer: *mut c_void,
}

/// Per-kind batch buffers, each at most `batch_max_records` long (allocated once).
struct Batches {
    quotes: Vec<Quote>,
    trades: Vec<Trade>,
    spreads: Vec<SpreadSample>,
    opportunities: Vec<OpportunityEvent>,
    gaps: Vec<GapEvent>,
    telemetry: Vec<Telemetry>,
    venue_status: Vec<VenueStatus>,
}

impl Batches {
    fn with_capacity(capacity: usize) -> Batches {
        Batches {
            quotes: Vec::with_capacity(capacity),
            trades: Vec::with_capacity(capacity),
            spreads: Vec::with_capacity(capacity),
            opportunities: Vec::with_capacity(capacity),
            gaps: Vec::with_capacity(capacity),
            telemetry: Vec::with_capacity(capacity),
            venue_status: Vec::with_capacity(capacity),
        }
    }

    /// Appends; returns the kind whose buffer is now full.
    fn push(&mut self, item: Item, capacity: usize) -> Option<RecordKind> {
        let length = match item {
            Item::Quote(record) => {
                self.quotes.push(record);
                self.quotes.len()
            }
            Item::Trade(record) => {
                self.trades.push(record);
                self.trades.len()
            }
            Item::Spread(record) => {
                self.spreads.push(record);
                self.spreads.len()
            }
            Item::Opportunity(record) => {
                self.opportunities.push(record);
                self.opportunities.len()
            }
            Item::Gap(record) => {
                self.gaps.push(record);
                self.gaps.len()
            }
            Item::Telemetry(record) => {
                self.telemetry.push(record.to_record());
                self.telemetry.len()
            }
            Item::VenueStatus(record) => {
                self.venue_status.push(record);
                self.venue_status.len()
            }
        };
        (length >= capacity).then(|| item.kind())
    }

    /// `(records, len)` of one kind's buffer.
    fn raw(&self, kind: RecordKind) -> (*const c_void, usize) {
        match kind {
            RecordKind::Quote => (self.quotes.as_ptr().cast(), self.quotes.len()),
            RecordKind::Trade => (self.trades.as_ptr().cast(), self.trades.len()),
            RecordKind::SpreadSample => (self.spreads.as_ptr().cast(), self.spreads.len()),
            RecordKind::Opportunity => {
                (self.opportunities.as_ptr().cast(), self.opportunities.len())
            }
            RecordKind::Gap => (self.gaps.as_ptr().cast(), self.gaps.len()),
            RecordKind::Telemetry => (self.telemetry.as_ptr().cast(), self.telemetry.len()),
            RecordKind::VenueStatus => (self.venue_status.as_ptr().cast(), self.venue_status.len()),
        }
    }

    fn clear(&mut self, kind: RecordKind) {
        match kind {
            RecordKind::Quote => self.quotes.clear(),
            RecordKind::Trade => self.trades.clear(),
            RecordKind::SpreadSample => self.spreads.clear(),
            RecordKind::Opportunity => self.opportunities.clear(),
            RecordKind::Gap => self.gaps.clear(),
            RecordKind::Telemetry => self.telemetry.clear(),
            RecordKind::VenueStatus => self.venue_status.clear(),
        }
    }
}

impl Runner {
    /// Creates an instance on the calling thread.
    fn create(&self) -> Result<Instance, CreateFailure> {
        let create = self
            .descriptor
            .create
            .expect("the loader refuses descriptors without create");
        let mut pointer: *mut c_void = std::ptr::null_mut();
        // SAFETY: the host table is never freed (bindings are leaked on purpose);
        // the config text is valid for the call; `pointer` is a writable out slot.
        let status = unsafe {
            create(
                self.binding.table(),
                self.config_text.as_ptr(),
                self.config_text.len(),
                &mut pointer,
            )
        };
        if status != STATUS_OK {
            return Err(CreateFailure { status });
        }
        if pointer.is_null() {
            // OK without an instance breaks the ABI: every later call would get null.
            tracing::error!(
                sink = %self.sink.name,
                plugin = self.plugin_name,
                "create returned OK but no instance (a null pointer): treated as a failure"
            );
            return Err(CreateFailure {
                status: abi::STATUS_ERROR,
            });
        }
        Ok(Instance { pointer })
    }

    fn destroy(&self, instance: Instance) {
        let destroy = self
            .descriptor
            .destroy
            .expect("the loader refuses descriptors without destroy");
        // SAFETY: the instance came from this descriptor's create and is destroyed once
        // (`Instance` is moved in).
        unsafe { destroy(instance.pointer) }
    }

    /// The runner thread's body. `started` receives the first `create`'s outcome.
    pub fn run(mut self, started: std::sync::mpsc::SyncSender<Result<(), CreateFailure>>) {
        let mut instance = match self.create() {
            Ok(instance) => {
                let _ = started.send(Ok(()));
                Some(instance)
            }
            Err(failure) => {
                let _ = started.send(Err(failure));
                return;
            }
        };
        drop(started);
        let batch_max = self.sink.batch_max_records;
        let mut batches = Batches::with_capacity(batch_max);
        let mut histogram = new_histogram();
        let mut consecutive_failures: u32 = 0;
        // Restarts since the last healthy period, and when the running instance was created.
        let mut restart_streak: u64 = 0;
        let mut instance_created = Instant::now();
        let mut delivered_since_flush = false;
        let mut next_tick = Instant::now() + TICK_INTERVAL;
        let mut lanes = std::mem::take(&mut self.lanes);
        // After the stop flag, drain at most what the rings can hold (plus a batch per lane) so a
        // producer that keeps pushing cannot keep this thread from being joined.
        let drain_limit_after_stop =
            lanes.len() * (self.sink.ring_capacity_records + self.sink.batch_max_records);
        let mut drained_after_stop = 0usize;
        let mut idle_passes: u32 = 0;

        loop {
            // Read the stop flag before draining: whatever was pushed before it was set is
            // drained by this pass or a later one.
            let stopping = self.shared.stop.load(Ordering::Acquire);
            let mut moved = 0usize;
            for lane in &mut lanes {
                // At most one batch per lane per pass, so one busy shard cannot starve the others.
                for _ in 0..batch_max {
                    let Some(item) = lane.pop() else { break };
                    moved += 1;
                    if let Some(full_kind) = batches.push(item, batch_max) {
                        self.deliver(
                            &mut instance,
                            &mut batches,
                            full_kind,
                            &mut histogram,
                            &mut consecutive_failures,
                        );
                    }
                }
            }
            for kind in RecordKind::ALL {
                if batches.raw(kind).1 > 0 {
                    self.deliver(
                        &mut instance,
                        &mut batches,
                        kind,
                        &mut histogram,
                        &mut consecutive_failures,
                    );
                }
            }
            if moved > 0 {
                delivered_since_flush = true;
            }
            if stopping {
                drained_after_stop += moved;
            }
            if consecutive_failures >= self.sink.restart_after_failures {
                consecutive_failures = 0;
                instance = self.quarantine(instance.take(), &mut restart_streak);
                instance_created = Instant::now();
            }
            let now = Instant::now();
            if restart_streak > 0
                && instance.is_some()
                && now.duration_since(instance_created) >= HEALTHY_PERIOD
            {
                tracing::info!(
                    sink = %self.sink.name,
                    plugin = self.plugin_name,
                    "sink healthy again: restart backoff reset"
                );
                restart_streak = 0;
            }
            if now >= next_tick {
                next_tick = now + TICK_INTERVAL;
                self.tick(instance.as_ref(), &mut consecutive_failures);
                self.publish_histogram(&mut histogram);
            }
            if stopping && drained_after_stop > drain_limit_after_stop {
                break;
            }
            if moved == 0 {
                if delivered_since_flush {
                    delivered_since_flush = false;
                    self.flush(instance.as_ref(), &mut consecutive_failures);
                }
                if stopping {
                    break;
                }
                if idle_passes < IDLE_PASSES_BEFORE_PARK {
                    idle_passes += 1;
                    std::thread::yield_now();
                } else {
                    idle_passes = 0;
                    std::thread::park_timeout(next_tick.saturating_duration_since(Instant::now()));
                }
            } else {
                idle_passes = 0;
            }
        }
        if let Some(instance) = instance.take() {
            self.flush(Some(&instance), &mut consecutive_failures);
            self.read_stats(&instance);
            self.destroy(instance);
        }
        self.publish_histogram(&mut histogram);
    }

    fn publish_histogram(&self, histogram: &mut Histogram<u64>) {
        if histogram.is_empty() {
            return;
        }
        let mut shared = self
            .runner_shared
            .on_batch_ns
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Same bounds on both sides: adding cannot fail.
        let _ = shared.add(&*histogram);
        histogram.reset();
    }

    /// Hands one kind's buffered records to the plugin (or drops them, counted, when no instance
    /// is running) and clears the buffer.
    fn deliver(
        &self,
        instance: &mut Option<Instance>,
        batches: &mut Batches,
        kind: RecordKind,
        histogram: &mut Histogram<u64>,
        consecutive_failures: &mut u32,
    ) {
        let (records, len) = batches.raw(kind);
        let counters = &self.runner_shared.counters;
        match instance {
            None => {
                counters
                    .dropped_unavailable
                    .fetch_add(len as u64, Ordering::Relaxed);
                counters.lost_by_kind[kind as usize].fetch_add(len as u64, Ordering::Relaxed);
            }
            Some(live) => {
                let on_batch = self
                    .descriptor
                    .on_batch
                    .expect("the loader refuses descriptors without on_batch");
                let started = Instant::now();
                // SAFETY: `records` holds `len` records of `kind`'s layout, alive and unchanged
                // during the call; the instance is live and only this thread calls it.
                let status = unsafe { on_batch(live.pointer, kind as u32, records, len) };
                histogram.saturating_record(started.elapsed().as_nanos() as u64);
                counters.batches.fetch_add(1, Ordering::Relaxed);
                if status == STATUS_OK {
                    counters.delivered.fetch_add(len as u64, Ordering::Relaxed);
                    counters.delivered_by_kind[kind as usize]
                        .fetch_add(len as u64, Ordering::Relaxed);
                    *consecutive_failures = 0;
                } else {
                    counters
                        .failed_records
                        .fetch_add(len as u64, Ordering::Relaxed);
                    counters.lost_by_kind[kind as usize].fetch_add(len as u64, Ordering::Relaxed);
                    self.count_failure(status, "on_batch", consecutive_failures);
                }
            }
        }
        batches.clear(kind);
    }

    fn count_failure(&self, status: Status, call: &str, consecutive_failures: &mut u32) {
        let counters = &self.runner_shared.counters;
        if status == abi::STATUS_PANIC {
            counters.panics.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        *consecutive_failures = consecutive_failures.saturating_add(1);
        if *consecutive_failures == 1 {
            tracing::warn!(
                sink = %self.sink.name,
                plugin = self.plugin_name,
                status = abi::status_name(status),
                "{call} failed"
            );
        }
    }

    fn flush(&self, instance: Option<&Instance>, consecutive_failures: &mut u32) {
        let (Some(live), Some(flush)) = (instance, self.descriptor.flush) else {
            return;
        };
        // SAFETY: live instance, called from its only thread.
        let status = unsafe { flush(live.pointer) };
        if status != STATUS_OK {
            self.count_failure(status, "flush", consecutive_failures);
        }
    }

    fn tick(&self, instance: Option<&Instance>, consecutive_failures: &mut u32) {
        let Some(live) = instance else { return };
        if let Some(on_tick) = self.descriptor.on_tick {
            // SAFETY: live instance, called from its only thread.
            let status = unsafe { on_tick(live.pointer, tickflow_core::record::now_ns()) };
            if status != STATUS_OK {
                self.count_failure(status, "on_tick", consecutive_failures);
            }
        }
        self.read_stats(live);
    }

    fn read_stats(&self, live: &Instance) {
        let Some(stats) = self.descriptor.stats else {
            return;
        };
        let mut out = PluginStats {
            struct_size: std::mem::size_of::<PluginStats>() as u32,
            ..PluginStats::default()
        };
        // SAFETY: live instance, called from its only thread; `out` is a whole stats table.
        if unsafe { stats(live.pointer, &mut out) } == STATUS_OK {
            let counters = &self.runner_shared.counters;
            counters
                .plugin_records_written
                .store(out.records_written, Ordering::Relaxed);
            counters
                .plugin_records_dropped
                .store(out.records_dropped, Ordering::Relaxed);
            counters
                .plugin_bytes_written
                .store(out.bytes_written, Ordering::Relaxed);
            counters.plugin_errors.store(out.errors, Ordering::Relaxed);
        }
    }

    /// Destroys a failing instance, then restarts it after a backoff, or disables the sink once
    /// it has been restarted `disable_after_restarts` times without a healthy period in between
    /// (`restart_streak`). Returns the new instance, if any.
    fn quarantine(&self, failing: Option<Instance>, restart_streak: &mut u64) -> Option<Instance> {
        if let Some(failing) = failing {
            self.destroy(failing);
        }
        let counters = &self.runner_shared.counters;
        loop {
            let restarts_so_far = *restart_streak;
            if restarts_so_far >= u64::from(self.sink.disable_after_restarts) {
                counters.disabled.store(true, Ordering::Relaxed);
                self.shared.disabled.store(true, Ordering::Relaxed);
                tracing::error!(
                    sink = %self.sink.name,
                    plugin = self.plugin_name,
                    restarts = restarts_so_far,
                    "sink disabled: it kept failing after {restarts_so_far} restarts; the engine and other sinks carry on"
                );
                return None;
            }
            let backoff_ms = self
                .sink
                .restart_backoff_initial_ms
                .saturating_mul(1u64 << restarts_so_far.min(20))
                .min(self.sink.restart_backoff_max_ms);
            tracing::warn!(
                sink = %self.sink.name,
                plugin = self.plugin_name,
                backoff_ms,
                "sink keeps failing: restarting it"
            );
            if !self.wait_unless_stopping(Duration::from_millis(backoff_ms)) {
                return None;
            }
            counters.restarts.fetch_add(1, Ordering::Relaxed);
            *restart_streak += 1;
            match self.create() {
                Ok(instance) => return Some(instance),
                Err(failure) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        sink = %self.sink.name,
                        status = abi::status_name(failure.status),
                        "sink restart: create failed"
                    );
                }
            }
        }
    }

    /// Waits `duration` (the restart backoff); false when the host is stopping meanwhile.
    fn wait_unless_stopping(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}
