//! Live feeds: the connection planner, one owned task per connection slot (keep-alive, watchdog,
//! rotation, reconnect), the WebSocket transport, and the simulated venues (`sim`) used by the
//! demo, the tests and `tickflow-load`.
//!
//! Architecture invariant: every task is owned by the `Feeds` tracker and joined at shutdown; a
//! slot's producer, decoder, buffers, subscription set and counters live as long as the slot, so
//! reconnects create nothing.

pub mod config;
pub mod counters;
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
use tickflow_core::venue::VENUE_COUNT;
use tickflow_decode::{DecodeLimits, decoder_for};

pub use planner::{PlanError, SlotEndpoint, SlotPlan, plan};
pub use slot::{SlotTimings, backoff_delay};

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

/// A running slot as seen from outside: its plan and counters.
#[derive(Clone, Debug)]
pub struct SlotHandle {
    pub plan: Arc<SlotPlan>,
    pub counters: Arc<SlotCounters>,
}

/// The running feeds: every slot task, owned.
#[derive(Debug)]
pub struct Feeds {
    slots: Vec<SlotHandle>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    shutdown_deadline: Duration,
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
        let mut sinks = Vec::with_capacity(plans.len());
        for _ in 0..plans.len() {
            match take_sink() {
                Some(sink) => sinks.push(sink),
                None => {
                    return Err(FeedError::NotEnoughProducers {
                        slots: plans.len(),
                        sinks: sinks.len(),
                    });
                }
            }
        }
        let settings = slot::SlotSettings {
            timings: SlotTimings::from_config(feeds),
            limits: DecodeLimits {
                max_frame_bytes: engine.max_frame_bytes,
                max_records_per_frame: engine.max_records_per_frame,
            },
            // One TLS client config for every slot and every reconnect.
            tls: ws::tls_connector(feeds.tls_extra_roots_pem())?,
        };
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let mut slots = Vec::with_capacity(plans.len());
        for (plan, sink) in plans.into_iter().zip(sinks) {
            let plan = Arc::new(plan);
            let counters = Arc::new(SlotCounters::default());
            let decoder = decoder_for(plan.venue, Arc::clone(&registry), settings.limits);
            // KuCoin's opens read its `welcome` with their own decoder (see `slot::opener::Opener`).
            let welcome_decoder = (plan.venue == tickflow_core::venue::Venue::Kucoin)
                .then(|| decoder_for(plan.venue, Arc::clone(&registry), settings.limits));
            let slot = slot::Slot::new(
                Arc::clone(&plan),
                Arc::clone(&counters),
                &settings,
                decoder,
                welcome_decoder,
                sink,
                cancel.child_token(),
            );
            tracker.spawn(slot.run());
            slots.push(SlotHandle { plan, counters });
        }
        tracker.close();
        Ok(Feeds {
            slots,
            tracker,
            cancel,
            shutdown_deadline: settings.timings.shutdown_deadline,
        })
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
            totals.silences += load(&counters.silences);
            totals.stale_data += load(&counters.stale_data);
            totals.server_closes += load(&counters.server_closes);
            totals.oversized_frames += load(&counters.oversized_frames);
            totals.protocol_errors += load(&counters.protocol_errors);
            totals.decode_errors += counters.decode_errors_total();
            totals.rotations += load(&counters.rotations);
            totals.gaps += load(&counters.gaps);
            totals.gap_drops += load(&counters.gap_drops);
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

/// Bytes per slot, in multiples of `max_frame_bytes`, that a frame can make a connection hold at
/// worst: the socket's read buffer (1), the HTX inflate buffer (1), and simd-json's scratch for a
/// frame of only structural characters (input copy 1, string buffer 1, u32 structural indexes 4,
/// 24-byte tape nodes for 2-byte values 12): 20 in all.
const FRAME_BUFFER_MULTIPLE: usize = 20;

/// The memory budget's line for every connection slot's frame buffers and record batch.
pub fn frame_buffers_budget_line(engine: &EngineConfig) -> tickflow_core::budget::BudgetLine {
    tickflow_core::budget::BudgetLine {
        name: "frame buffers",
        bytes: engine.max_connection_slots
            * (FRAME_BUFFER_MULTIPLE * engine.max_frame_bytes
                + engine.max_records_per_frame * size_of::<FeedEvent>()),
        detail: format!(
            "{} slots × ({FRAME_BUFFER_MULTIPLE} × {} B: socket read, inflate, JSON parser scratch; + {} records)",
            engine.max_connection_slots, engine.max_frame_bytes, engine.max_records_per_frame
        ),
    }
}
