//! Live feeds: the connection planner, one owned task per connection slot (keep-alive, watchdog,
//! rotation, reconnect), the WebSocket transport, and the simulated venues (`sim`) used by the
//! demo, the tests and `tickflow-load`.
//!
//! Architecture invariant: every task is owned by the `Feeds` tracker and joined at shutdown; a
//! slot's producer, subscription set and counters live as long as the slot, so reconnects create
//! nothing but the connection's own buffers; decoders are shared per worker thread
//! (`slot::decode_pool`).

pub mod config;
pub mod counters;
/// Public for the fuzzer (`tickflow-fuzz ws-frames`), which drives `FrameReader` directly.
pub mod framing;
mod pacer;
mod planner;
pub mod protocol;
mod slot;
mod ws;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::FeedsConfig;
use crate::counters::SlotCounters;
use tickflow_core::config::EngineConfig;
use tickflow_core::record::FeedEvent;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::{VENUE_COUNT, Venue};
use tickflow_decode::DecodeLimits;

pub use planner::{PlanError, Replan, SlotEndpoint, SlotPlan, plan, register_configured, replan};
pub use slot::{
    BatchSleepFigures, BatchSleeps, SlotTimings, backoff_delay, batch_wakeups_before_park,
};
pub use ws::{ConnectError, Endpoint, HttpResponse, TlsRootsError, http_get, tls_connector};

/// Where a slot puts decoded events: the pipeline's `SlotProducer` (or a test's ring).
pub trait EventSink: Send + 'static {
    /// Offers one event; false = dropped (ring full), counted by the slot.
    fn push(&mut self, event: FeedEvent) -> bool;
    /// Makes pushed events visible to consumers (called after each frame).
    fn flush(&mut self);
}

impl EventSink for tickflow_core::pipeline::SlotProducer {
    #[inline]
    fn push(&mut self, event: FeedEvent) -> bool {
        tickflow_core::pipeline::SlotProducer::push(self, event)
    }
    #[inline]
    fn flush(&mut self) {
        tickflow_core::pipeline::SlotProducer::flush(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("feeds.tls_extra_roots_pem: {0}")]
    TlsRoots(#[from] ws::TlsRootsError),
    #[error("{slots} connection slots planned but only {sinks} producers available")]
    NotEnoughProducers { slots: usize, sinks: usize },
}

/// A running slot as seen from outside: its plan (the latest sent to it) and counters.
#[derive(Clone, Debug)]
pub struct SlotHandle {
    pub plan: Arc<SlotPlan>,
    pub counters: Arc<SlotCounters>,
    updates: Arc<tokio::sync::watch::Sender<Arc<SlotPlan>>>,
}

/// Starts slot tasks: the spare producers (one per connection slot the pipeline has) and what
/// every slot shares. Boxed so `Feeds` need not name the producer type.
type SlotSpawner = Box<dyn FnMut(Arc<SlotPlan>) -> Option<SlotHandle> + Send>;

/// The running feeds: every slot task, owned.
pub struct Feeds {
    slots: Vec<SlotHandle>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    shutdown_deadline: Duration,
    feeds: FeedsConfig,
    registry: Arc<SymbolRegistry>,
    max_slots: usize,
    spawn_slot: SlotSpawner,
    unplaced_listings: u64,
}

impl std::fmt::Debug for Feeds {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Feeds")
            .field("slots", &self.slots.len())
            .field("max_slots", &self.max_slots)
            .finish()
    }
}

/// What a refresh changed in the running feeds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Slots given a new subscription set (each rotates to it without a gap).
    pub slots_changed: usize,
    /// Slots started for new listings.
    pub slots_added: usize,
    /// Listings that fit no slot (`engine.max_connection_slots` reached): not subscribed, counted.
    pub listings_unplaced: usize,
}

/// Totals over every slot at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedTotals {
    pub slots: u64,
    pub connected: u64,
    pub tasks: u64,
    pub subscriptions: u64,
    pub frames: u64,
    pub records: u64,
    pub quotes: u64,
    pub ring_drops: u64,
    pub connects: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub rate_limited: u64,
    pub pongs_missed: u64,
    pub write_timeouts: u64,
    pub silences: u64,
    pub stale_data: u64,
    pub server_closes: u64,
    pub oversized_frames: u64,
    pub protocol_errors: u64,
    pub decode_errors: u64,
    pub rotations: u64,
    pub gaps: u64,
    pub gap_drops: u64,
    pub records_by_venue: [u64; VENUE_COUNT],
    pub quotes_by_venue: [u64; VENUE_COUNT],
    pub reconnects_by_venue: [u64; VENUE_COUNT],
    pub resume_ms_p50: u64,
    pub resume_ms_p99: u64,
    pub resume_count: u64,
    /// Symbols some venue lists now (the registry also keeps retired ones: `symbols`).
    pub symbols_live: u64,
    /// Symbols the registry refused because it was full (`engine.max_symbols`).
    pub symbols_refused: u64,
    /// Symbols taken off a slot by a refresh (each got a retirement gap).
    pub symbols_retired: u64,
    /// Listings a refresh could place on no slot (`engine.max_connection_slots` reached).
    pub listings_unplaced: u64,
}

impl FeedTotals {
    /// One JSON object (the `tickflow-stats` line's payload); `symbols` is the registry size.
    pub fn to_json(&self, symbols: usize) -> String {
        serde_json::json!({
            "slots": self.slots,
            "connected": self.connected,
            "tasks": self.tasks,
            "symbols": symbols,
            "subscriptions": self.subscriptions,
            "frames": self.frames,
            "records": self.records,
            "quotes": self.quotes,
            "ring_drops": self.ring_drops,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "rate_limited": self.rate_limited,
            "pongs_missed": self.pongs_missed,
            "write_timeouts": self.write_timeouts,
            "silences": self.silences,
            "stale_data": self.stale_data,
            "server_closes": self.server_closes,
            "oversized_frames": self.oversized_frames,
            "protocol_errors": self.protocol_errors,
            "decode_errors": self.decode_errors,
            "rotations": self.rotations,
            "gaps": self.gaps,
            "gap_drops": self.gap_drops,
            "resume_ms_p50": self.resume_ms_p50,
            "resume_ms_p99": self.resume_ms_p99,
            "resume_count": self.resume_count,
            "symbols_live": self.symbols_live,
            "symbols_refused": self.symbols_refused,
            "symbols_retired": self.symbols_retired,
            "listings_unplaced": self.listings_unplaced,
        })
        .to_string()
    }
}

impl Feeds {
    /// Plans the slots for `feeds` (registering their symbols) and starts one task per slot, each
    /// with a sink from `take_sink`; `engine` gives the slot and frame limits. Must run inside a
    /// tokio runtime.
    pub fn start<S: EventSink>(
        feeds: &FeedsConfig,
        engine: &EngineConfig,
        registry: Arc<SymbolRegistry>,
        mut take_sink: impl FnMut() -> Option<S>,
    ) -> Result<Feeds, FeedError> {
        let plans = planner::plan(feeds, &registry, engine.max_connection_slots)?;
        // Every producer the pipeline has: the ones not used now start slots a refresh adds.
        let mut sinks = Vec::with_capacity(engine.max_connection_slots);
        while sinks.len() < engine.max_connection_slots {
            match take_sink() {
                Some(sink) => sinks.push(sink),
                None => break,
            }
        }
        if sinks.len() < plans.len() {
            return Err(FeedError::NotEnoughProducers {
                slots: plans.len(),
                sinks: sinks.len(),
            });
        }
        // Handed out from the front, in slot order.
        sinks.reverse();
        let limits = DecodeLimits {
            max_frame_bytes: engine.max_frame_bytes,
            max_records_per_frame: engine.max_records_per_frame,
        };
        let settings = slot::SlotSettings {
            timings: SlotTimings::from_config(feeds),
            max_frame_bytes: engine.max_frame_bytes,
            decode_pool: Arc::new(slot::decode_pool::DecodePool::new(
                decode_threads(feeds),
                &registry,
                limits,
            )),
            // One TLS client config for every slot and every reconnect.
            tls: ws::tls_connector(feeds.tls_extra_roots_pem())?,
            pacers: std::array::from_fn(|index| {
                Arc::new(pacer::ConnectPacer::new(
                    protocol::rules(Venue::ALL[index]).connect_rate,
                ))
            }),
        };
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let shutdown_deadline = settings.timings.shutdown_deadline;
        let mut spawn_slot: SlotSpawner = {
            let (tracker, cancel) = (tracker.clone(), cancel.clone());
            Box::new(move |plan: Arc<SlotPlan>| {
                let sink = sinks.pop()?;
                let counters = Arc::new(SlotCounters::default());
                let (updates, receiver) = tokio::sync::watch::channel(Arc::clone(&plan));
                let slot = slot::Slot::new(
                    receiver,
                    Arc::clone(&counters),
                    &settings,
                    sink,
                    cancel.child_token(),
                );
                tracker.spawn(slot.run());
                Some(SlotHandle {
                    plan,
                    counters,
                    updates: Arc::new(updates),
                })
            })
        };
        let mut slots = Vec::with_capacity(plans.len());
        for plan in plans {
            // Checked above: there is a producer for every planned slot.
            if let Some(handle) = spawn_slot(Arc::new(plan)) {
                slots.push(handle);
            }
        }
        tracker.close();
        Ok(Feeds {
            slots,
            tracker,
            cancel,
            shutdown_deadline,
            feeds: feeds.clone(),
            registry,
            max_slots: engine.max_connection_slots,
            spawn_slot,
            unplaced_listings: 0,
        })
    }

    /// Brings the slots in line with the registry's listings now (after a universe refresh):
    /// slots whose symbols changed get their new plan (they rotate to it: no gap for what they
    /// keep; what they drop gets `GAP_SYMBOL_RETIRED`), new listings fill slots with room, then
    /// new slots. Must run inside the feeds' runtime.
    pub fn refresh(&mut self) -> Result<RefreshReport, FeedError> {
        let current: Vec<Arc<SlotPlan>> = self
            .slots
            .iter()
            .map(|slot| Arc::clone(&slot.plan))
            .collect();
        let replan = planner::replan(&self.feeds, &self.registry, &current, self.max_slots)?;
        let mut report = RefreshReport {
            slots_changed: replan.changed.len(),
            listings_unplaced: replan.unplaced.len(),
            ..RefreshReport::default()
        };
        for (index, plan) in replan.changed {
            let plan = Arc::new(plan);
            let slot = &mut self.slots[index];
            slot.plan = Arc::clone(&plan);
            // The slot task outlives the handle unless the feeds stopped: then nobody listens.
            let _ = slot.updates.send(plan);
        }
        for plan in replan.added {
            let count = plan.symbol_ids.len();
            match (self.spawn_slot)(Arc::new(plan)) {
                Some(handle) => {
                    self.slots.push(handle);
                    report.slots_added += 1;
                }
                None => report.listings_unplaced += count,
            }
        }
        self.unplaced_listings += report.listings_unplaced as u64;
        if report.listings_unplaced > 0 {
            tracing::warn!(
                unplaced = report.listings_unplaced,
                max_connection_slots = self.max_slots,
                "listings fit no connection slot: not subscribed (raise engine.max_connection_slots)"
            );
        }
        Ok(report)
    }

    /// Listings not subscribed since start because no slot had room.
    pub fn unplaced_listings(&self) -> u64 {
        self.unplaced_listings
    }

    pub fn slots(&self) -> &[SlotHandle] {
        &self.slots
    }

    /// Slot tasks still running.
    pub fn live_tasks(&self) -> usize {
        self.tracker.len()
    }

    pub fn totals(&self) -> FeedTotals {
        let load = SlotCounters::get;
        let mut totals = FeedTotals {
            slots: self.slots.len() as u64,
            tasks: self.tracker.len() as u64,
            symbols_live: self.registry.live_len() as u64,
            symbols_refused: self.registry.refused_full(),
            listings_unplaced: self.unplaced_listings,
            ..FeedTotals::default()
        };
        let mut resume = SlotCounters::new_resume_histogram();
        for slot in &self.slots {
            let counters = &slot.counters;
            totals.connected += counters.connected.load(Ordering::Relaxed) as u64;
            totals.subscriptions += load(&counters.subscriptions);
            totals.frames += load(&counters.frames);
            totals.records += load(&counters.records);
            totals.quotes += load(&counters.quotes);
            totals.ring_drops += load(&counters.ring_drops);
            totals.connects += load(&counters.connects);
            totals.reconnects += load(&counters.reconnects);
            totals.connect_failures += load(&counters.connect_failures);
            totals.rate_limited += load(&counters.rate_limited);
            totals.pongs_missed += load(&counters.pongs_missed);
            totals.write_timeouts += load(&counters.write_timeouts);
            totals.silences += load(&counters.silences);
            totals.stale_data += load(&counters.stale_data);
            totals.server_closes += load(&counters.server_closes);
            totals.oversized_frames += load(&counters.oversized_frames);
            totals.protocol_errors += load(&counters.protocol_errors);
            totals.decode_errors += counters.decode_errors_total();
            totals.rotations += load(&counters.rotations);
            totals.gaps += load(&counters.gaps);
            totals.gap_drops += load(&counters.gap_drops);
            totals.symbols_retired += load(&counters.symbols_retired);
            totals.records_by_venue[slot.plan.venue.index()] += load(&counters.records);
            totals.reconnects_by_venue[slot.plan.venue.index()] += load(&counters.reconnects);
            totals.quotes_by_venue[slot.plan.venue.index()] += load(&counters.quotes);
            counters.merge_resume_ms(&mut resume);
        }
        totals.resume_count = resume.len();
        if !resume.is_empty() {
            totals.resume_ms_p50 = resume.value_at_quantile(0.50);
            totals.resume_ms_p99 = resume.value_at_quantile(0.99);
        }
        totals
    }

    /// A token cancelled when the feeds stop (for helpers that live as long as the feeds).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Sends close frames on every connection, stops every slot and waits for their tasks (which
    /// drops their producers). False when some task did not finish within the deadline.
    pub async fn shutdown(self) -> bool {
        self.cancel.cancel();
        // Each slot bounds its close by the deadline; the extra second covers scheduling.
        let waited = tokio::time::timeout(
            self.shutdown_deadline + Duration::from_secs(1),
            self.tracker.wait(),
        )
        .await;
        waited.is_ok()
    }
}

/// Threads that decode at once: the feeds runtime's workers (`feeds.worker_threads`, 0 = 1).
fn decode_threads(feeds: &FeedsConfig) -> usize {
    feeds.worker_threads.max(1)
}

/// Bytes of JSON parser scratch a decoder may keep per byte of the largest frame it parsed:
/// simd-json's padded input copy (1), string buffer (1), u32 structural indexes (4) and tape
/// (24-byte nodes; 12 per byte for a frame of 2-byte values such as `1,1,1,…`): 18. Every venue's
/// decoder has one (MEXC's for its JSON control frames; its protobuf is read in place).
const JSON_SCRATCH_MULTIPLE: usize = 18;
/// HTX's inflate buffer: one frame (no other venue inflates).
const INFLATE_SCRATCH_MULTIPLE: usize = 1;

/// Connections a slot holds at once: its primary and, while rotating, a replacement.
const CONNECTIONS_PER_SLOT: usize = 2;

/// The memory budget's lines for the feeds, as worst cases:
///
/// * receive buffers — per slot, the primary's read buffer, which grows for a large message up
///   to `max_frame_bytes` + a frame header and keeps that size for the connection's life (every
///   slot may be receiving a largest message at once); a replacement's, which stays at its first
///   size (it skips larger messages until it takes over: the primary reads them); and both
///   connections' write queues and socket read buffers (TLS).
/// * decode scratch — per feed worker thread (decoding is synchronous in a slot task, see
///   `slot::decode_pool`): one decoder per venue, each holding the scratch of a largest frame,
///   and one record batch.
pub fn budget_lines(
    engine: &EngineConfig,
    feeds: &FeedsConfig,
) -> Vec<tickflow_core::budget::BudgetLine> {
    use tickflow_core::budget::BudgetLine;
    let max_frame_bytes = engine.max_frame_bytes;
    // Its first size is at most this too (`FrameReader::new`).
    let primary_bytes = max_frame_bytes + framing::MAX_BUFFER_OVERHEAD_BYTES;
    let replacement_bytes =
        slot::replacement_message_bytes(max_frame_bytes) + framing::MAX_BUFFER_OVERHEAD_BYTES;
    let queues_bytes = CONNECTIONS_PER_SLOT * slot::MAX_QUEUED_WRITE_BYTES;
    let socket_reads_bytes = CONNECTIONS_PER_SLOT * ws::TLS_SOCKET_READ_BYTES;
    let per_slot_bytes = primary_bytes + replacement_bytes + queues_bytes + socket_reads_bytes;
    let threads = decode_threads(feeds);
    let decoders_bytes = VENUE_COUNT * JSON_SCRATCH_MULTIPLE * max_frame_bytes
        + INFLATE_SCRATCH_MULTIPLE * max_frame_bytes;
    let batch_bytes = engine.max_records_per_frame * size_of::<FeedEvent>();
    vec![
        BudgetLine {
            name: "receive buffers",
            bytes: engine.max_connection_slots * per_slot_bytes,
            detail: format!(
                "{} slots × ({primary_bytes} B primary read + {replacement_bytes} B replacement read + {CONNECTIONS_PER_SLOT} × {} B write queues + {CONNECTIONS_PER_SLOT} × {} B TLS socket reads)",
                engine.max_connection_slots,
                slot::MAX_QUEUED_WRITE_BYTES,
                ws::TLS_SOCKET_READ_BYTES
            ),
        },
        BudgetLine {
            name: "decode scratch",
            bytes: threads * (decoders_bytes + batch_bytes),
            detail: format!(
                "{threads} feed threads × ({VENUE_COUNT} venues × {JSON_SCRATCH_MULTIPLE} × {max_frame_bytes} B JSON scratch + {max_frame_bytes} B inflate + {} records)",
                engine.max_records_per_frame
            ),
        },
    ]
}
