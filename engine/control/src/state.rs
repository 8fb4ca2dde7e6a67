//! What the control plane sees of the engine: [`EngineView`], filled once by the binary (snapshot
//! handles, registry, budget, window settings), and [`EngineBoard`], where the binary's own loop
//! publishes a read-only [`EngineStatus`] (feed slots, dead shards, pipeline counters, sink stats
//! and endpoints) — the control plane never holds the feeds, the pipeline or the sink host, and
//! nothing here writes to engine state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use tickflow_core::budget::MemoryBudget;
use tickflow_core::config::SpreadBasis;
use tickflow_core::pipeline::{Pipeline, PipelineCounters};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::shard::ShardSnapshot;
use tickflow_core::shed::ShedControl;

use crate::memory::AllocatorStatsFn;
use tickflow_feed::{Feeds, SlotHandle};
use tickflow_host::{SinkEndpoint, SinkHost, SinkStats};

/// Where the engine is in its life, as `/health` and `/ready` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Running = 1,
    Draining = 2,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Draining => "draining",
        }
    }

    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Starting,
            1 => Phase::Running,
            _ => Phase::Draining,
        }
    }
}

/// One read-only picture of the running engine, published by the binary's loop.
#[derive(Clone, Debug)]
pub struct EngineStatus {
    pub published_at: Instant,
    /// Every connection slot (its plan and live counters).
    pub slots: Vec<SlotHandle>,
    /// Slot tasks alive in the feeds' tracker.
    pub feed_tasks: usize,
    pub shard_count: usize,
    pub dead_shards: Vec<usize>,
    pub counters: PipelineCounters,
    /// Records one feed → shard ring holds (`engine.ring_capacity_records`).
    pub ring_capacity_records: usize,
    pub sinks: Vec<SinkStats>,
    pub endpoints: Vec<SinkEndpoint>,
    /// The `[[sources]]` inputs (NATS consumers of an aggregator), as the binary read them.
    pub sources: Vec<SourceStatus>,
}

/// One `[[sources]]` input as `/health` reports it; the binary fills it from the source's own
/// counters (the control plane does not link the sources).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceStatus {
    pub name: String,
    pub kind: &'static str,
    pub connected: bool,
    /// How long it has been without a connection; 0 while connected.
    pub down_for_ms: u64,
    /// Since the last message of any consumer; `None` before the first.
    pub last_message_age_ms: Option<u64>,
    pub sessions: u64,
    pub messages: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub redeliveries: u64,
    /// Records refused by the checks (timestamps, prices) or the codec.
    pub refused: u64,
    /// (collector, venue)s declared not live so far.
    pub venues_silenced: u64,
    /// Records held in the reorder buffer now.
    pub reorder_held: u64,
}

/// The cell the binary publishes [`EngineStatus`] into and sets the [`Phase`] of.
#[derive(Debug)]
pub struct EngineBoard {
    phase: AtomicU8,
    status: ArcSwapOption<EngineStatus>,
}

impl Default for EngineBoard {
    fn default() -> Self {
        EngineBoard {
            phase: AtomicU8::new(Phase::Starting as u8),
            status: ArcSwapOption::empty(),
        }
    }
}

impl EngineBoard {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Draining is final: a late `Running` does not undo it.
    pub fn set_phase(&self, phase: Phase) {
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current != Phase::Draining as u8).then_some(phase as u8)
            });
    }

    /// Publishes what the engine's owner sees now (cold path: a few hundred bytes per slot and
    /// sink, a handful of times a second).
    pub fn publish(&self, feeds: &Feeds, pipeline: &Pipeline, sinks: Option<&SinkHost>) {
        self.publish_with_sources(feeds, pipeline, sinks, Vec::new());
    }

    /// [`EngineBoard::publish`] with the `[[sources]]`' status.
    pub fn publish_with_sources(
        &self,
        feeds: &Feeds,
        pipeline: &Pipeline,
        sinks: Option<&SinkHost>,
        sources: Vec<SourceStatus>,
    ) {
        self.publish_status(EngineStatus {
            published_at: Instant::now(),
            slots: feeds.slots().to_vec(),
            feed_tasks: feeds.live_tasks(),
            shard_count: pipeline.shard_count(),
            dead_shards: pipeline.dead_shards(),
            counters: pipeline.counters(),
            ring_capacity_records: pipeline.ring_capacity_records(),
            sinks: sinks.map(SinkHost::stats).unwrap_or_default(),
            endpoints: sinks.map(SinkHost::endpoints).unwrap_or_default(),
            sources,
        });
    }

    pub fn publish_status(&self, status: EngineStatus) {
        self.status.store(Some(Arc::new(status)));
    }

    pub fn status(&self) -> Option<Arc<EngineStatus>> {
        self.status.load_full()
    }
}

/// The live engine's parts the control plane reads (absent in `tickflow serve`).
#[derive(Clone)]
pub struct LiveEngine {
    pub snapshots: Vec<Arc<ArcSwap<ShardSnapshot>>>,
    pub registry: Arc<SymbolRegistry>,
    pub board: Arc<EngineBoard>,
    /// `[[sinks]]` names that are not `optional`: one disabled makes `/health` 503.
    pub required_sinks: Vec<String>,
    pub max_windows: usize,
    /// `windows.prefault`: the windows' arrays were written at start, so all of them are
    /// resident whatever the number of live windows.
    pub windows_prefault: bool,
    pub max_symbols: usize,
    /// Which spread the opportunity cycles compare with their thresholds.
    pub cycles_on: SpreadBasis,
    /// Where a critical memory alert asks the engine to shed (`Pipeline::shed_control`).
    pub shed: Arc<ShedControl>,
}

impl std::fmt::Debug for LiveEngine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LiveEngine")
            .field("shards", &self.snapshots.len())
            .field("required_sinks", &self.required_sinks)
            .finish()
    }
}

/// Everything the control plane is given at start.
#[derive(Clone, Debug)]
pub struct EngineView {
    /// None in `tickflow serve` (history only).
    pub live: Option<LiveEngine>,
    /// `windows.thresholds_bp`: the values `threshold_bp` may take.
    pub thresholds_bp: Vec<f64>,
    pub budget: MemoryBudget,
    /// The allocator's own statistics for `/api/monitoring/memory` (the binary knows which
    /// allocator it links).
    pub allocator_stats: Option<AllocatorStatsFn>,
}

impl EngineView {
    pub fn mode(&self) -> &'static str {
        if self.live.is_some() {
            "engine"
        } else {
            "history"
        }
    }
}
