//! The sink plugin host: loads the plugins named in `[[sinks]]`, runs one runner thread per sink
//! with its own bounded lane from every shard, and hands the shards their `Outbound`s.
//!
//! Architecture invariant: a slow, failing or panicking sink never slows the shards or the other
//! sinks. It loses records (counted, by its policy), is restarted, and is finally disabled.
//! Libraries are never unloaded and host tables never freed; at shutdown every runner thread is
//! joined after draining its lanes, flushing and destroying its instance, or abandoned (logged)
//! when it misses its sink's `shutdown_deadline_ms` (a plugin stuck in a call).
//!
//! Wiring: `SinkHost::start` → `take_outbounds()` (one per shard, for `Pipeline::start`)
//! and `take_telemetry_outbound()` (once a second: `emit_telemetry`, `flush`) → run →
//! `Pipeline::shutdown` (drops the outbounds), drop the telemetry outbound →
//! `SinkHost::shutdown`. Metrics: `render_metrics` (text in `metrics_text`); memory budget:
//! `sinks_budget_bytes` (the lanes) and `sink_memory_bounds` (what each plugin states, ABI 1.2).

mod callbacks;
pub mod config;
mod engine_metrics;
mod lane;
pub mod loader;
mod metrics_hub;
mod metrics_text;
mod runner;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

pub use config::{SinkConfig, SinkConfigError, SinkPolicy};
pub use lane::SinkOutbound;
pub use loader::{LoadedPlugin, MemoryBound, Refusal};

use callbacks::{BindingLease, HostContext, PluginEndpoints, PluginMetrics};
pub use engine_metrics::{EngineMetricsSource, HistogramSample, Sample, SampleKind};
use lane::{LaneCounters, LaneProducer, SinkShared};
use metrics_hub::ExportedSink;
pub use metrics_hub::MetricsHub;
pub use runner::SinkKindCounts;
use runner::{Runner, RunnerShared};
use tickflow_core::outbound::Outbound;
use tickflow_core::registry::SymbolRegistry;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error(
        "sink {sink:?}: create returned status {status} ({status_name}); see the plugin's log lines above"
    )]
    Create {
        sink: String,
        status: i32,
        status_name: &'static str,
    },
    #[error("sink {sink:?}: cannot start its runner thread: {source}")]
    Spawn {
        sink: String,
        source: std::io::Error,
    },
    #[error(
        "sink {sink:?}: its runner thread ended before reporting whether create succeeded (a bug)"
    )]
    Internal { sink: String },
}

/// One running sink as the host tracks it.
pub(crate) struct RunningSink {
    name: String,
    plugin_name: &'static str,
    plugin_version: &'static str,
    policy: SinkPolicy,
    shared: Arc<SinkShared>,
    runner_shared: Arc<RunnerShared>,
    lane_counters: Vec<Arc<CachePadded<LaneCounters>>>,
    metrics: Arc<PluginMetrics>,
    /// What the plugin published through `publish_endpoint` (ABI 1.2).
    endpoints: Arc<PluginEndpoints>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the runner thread ends (its sender drops with the thread's closure).
    finished: mpsc::Receiver<()>,
    shutdown_deadline: Duration,
    /// Its runner missed the shutdown deadline and was left running.
    abandoned: bool,
}

/// A snapshot of one sink's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub name: String,
    pub plugin_name: String,
    pub plugin_version: String,
    pub policy: &'static str,
    /// Records accepted into the sink's lanes.
    pub enqueued: u64,
    pub dropped_full: u64,
    pub dropped_oldest: u64,
    pub conflated: u64,
    pub block_timeouts: u64,
    pub dropped_disabled: u64,
    /// Drained while no instance was running (restart backoff, disabled).
    pub dropped_unavailable: u64,
    /// Records the plugin accepted.
    pub delivered: u64,
    /// Records in batches the plugin failed.
    pub failed_records: u64,
    pub batches: u64,
    pub errors: u64,
    pub panics: u64,
    pub restarts: u64,
    pub disabled: bool,
    /// Its runner missed `shutdown_deadline_ms` at shutdown and was left running.
    pub abandoned: bool,
    pub on_batch_ns_p50: u64,
    pub on_batch_ns_p99: u64,
    pub on_batch_ns_p999: u64,
    pub on_batch_ns_max: u64,
    pub plugin_records_written: u64,
    pub plugin_records_dropped: u64,
    pub plugin_bytes_written: u64,
    pub plugin_errors: u64,
    /// By record kind (`RecordKind as usize`): delivered and lost (their lost sum to `lost()`).
    pub kinds: [SinkKindCounts; lane::RECORD_KINDS],
}

impl SinkStats {
    /// Every record lost on the way to (or inside the batches refused by) this sink.
    pub fn lost(&self) -> u64 {
        self.dropped_full
            + self.dropped_oldest
            + self.conflated
            + self.block_timeouts
            + self.dropped_disabled
            + self.dropped_unavailable
            + self.failed_records
    }
}

/// An endpoint a sink published (ABI 1.2 `publish_endpoint`), for the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkEndpoint {
    /// The `[[sinks]]` name.
    pub sink: String,
    /// The endpoint's name (`"ws"`).
    pub name: String,
    pub url: String,
}

/// The running sinks. Dropping it without [`SinkHost::shutdown`] still stops and joins them.
pub struct SinkHost {
    sinks: Vec<RunningSink>,
    outbounds: Vec<SinkOutbound>,
    telemetry_outbound: Option<SinkOutbound>,
    /// What `metrics_snapshot` (ABI 1.2) visits: the engine's source and the running sinks.
    metrics_hub: Arc<MetricsHub>,
}

impl std::fmt::Debug for SinkHost {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sinks.iter().map(|sink| sink.name.as_str()).collect();
        formatter
            .debug_struct("SinkHost")
            .field("sinks", &names)
            .finish()
    }
}

impl SinkHost {
    /// Loads and starts every sink of `config.sinks` with one lane per shard (`shard_count`)
    /// plus one for telemetry. A refused plugin, or one whose `create` fails, stops the start
    /// unless the sink is `optional` (then it is logged and skipped).
    pub fn start(
        sinks: &[SinkConfig],
        shard_count: usize,
        registry: Option<Arc<SymbolRegistry>>,
    ) -> Result<SinkHost, PluginError> {
        let mut host = SinkHost {
            sinks: Vec::with_capacity(sinks.len()),
            outbounds: Vec::new(),
            telemetry_outbound: None,
            metrics_hub: Arc::new(MetricsHub::default()),
        };
        let lane_count = shard_count + 1;
        let mut producers_by_lane: Vec<Vec<LaneProducer>> = (0..lane_count)
            .map(|_| Vec::with_capacity(sinks.len()))
            .collect();
        for sink in sinks {
            let plugin = match loader::load(&sink.name, &sink.path) {
                Ok(plugin) => plugin,
                Err(refusal) if sink.optional => {
                    tracing::warn!(sink = %sink.name, "optional sink skipped: {refusal}");
                    continue;
                }
                Err(refusal) => return Err(PluginError::Refused(refusal)),
            };
            match start_sink(
                sink,
                plugin,
                lane_count,
                registry.clone(),
                &host.metrics_hub,
            ) {
                Ok((running, producers)) => {
                    for (lane_index, producer) in producers.into_iter().enumerate() {
                        producers_by_lane[lane_index].push(producer);
                    }
                    let memory_bound = plugin.memory_bound(&sink.config_text());
                    tracing::info!(
                        sink = %sink.name,
                        plugin = plugin.name,
                        version = plugin.version,
                        policy = sink.policy.name(),
                        kinds = %loader::record_kind_names(plugin.record_kinds()),
                        memory_bound = %SinkMemoryBound::Plugin(memory_bound),
                        "sink started"
                    );
                    host.sinks.push(running);
                }
                Err(error) if sink.optional => {
                    tracing::warn!(sink = %sink.name, "optional sink skipped: {error}");
                }
                // `host` drops here, stopping and joining the sinks already started.
                Err(error) => return Err(error),
            }
        }
        // The last lane is telemetry's: the engine's publisher never waits for a sink.
        let telemetry_lanes = producers_by_lane.pop().unwrap_or_default();
        host.telemetry_outbound = Some(SinkOutbound::never_blocking(telemetry_lanes));
        host.outbounds = producers_by_lane
            .into_iter()
            .map(SinkOutbound::new)
            .collect();
        Ok(host)
    }

    /// The shards' outbounds, one per shard in shard order (for `Pipeline::start`). Empty after
    /// the first call.
    pub fn take_outbounds(&mut self) -> Vec<Box<dyn Outbound>> {
        std::mem::take(&mut self.outbounds)
            .into_iter()
            .map(|outbound| Box::new(outbound) as Box<dyn Outbound>)
            .collect()
    }

    /// The shards' outbounds as concrete values (tests and benches drive them directly).
    pub fn take_sink_outbounds(&mut self) -> Vec<SinkOutbound> {
        std::mem::take(&mut self.outbounds)
    }

    /// The lane the engine's once-a-second telemetry goes through
    /// ([`SinkOutbound::emit_telemetry`], then `flush`). None after the first call.
    pub fn take_telemetry_outbound(&mut self) -> Option<SinkOutbound> {
        self.telemetry_outbound.take()
    }

    pub fn sink_count(&self) -> usize {
        self.sinks.len()
    }

    /// Records accepted into the sinks' lanes and not yet handed out (to `on_batch`, or dropped
    /// as unavailable, or displaced by `drop_oldest`), over all sinks. Reads atomics only: never
    /// allocates (for waiting on the runners in allocation tests and benches).
    pub fn records_in_lanes(&self) -> u64 {
        let mut accepted = 0u64;
        let mut handed_out = 0u64;
        for sink in &self.sinks {
            for counters in &sink.lane_counters {
                accepted += counters.enqueued.load(Ordering::Relaxed);
                handed_out += counters.dropped_oldest.load(Ordering::Relaxed);
            }
            let runner = &sink.runner_shared.counters;
            handed_out += runner.delivered.load(Ordering::Relaxed)
                + runner.failed_records.load(Ordering::Relaxed)
                + runner.dropped_unavailable.load(Ordering::Relaxed);
        }
        accepted.saturating_sub(handed_out)
    }

    /// Every endpoint the running sinks published (at most 16 per sink; the latest URL per
    /// name), in sink order, for the control plane to hand to clients.
    pub fn endpoints(&self) -> Vec<SinkEndpoint> {
        self.sinks
            .iter()
            .flat_map(|sink| {
                sink.endpoints
                    .list()
                    .into_iter()
                    .map(|(name, url)| SinkEndpoint {
                        sink: sink.name.clone(),
                        name,
                        url,
                    })
            })
            .collect()
    }

    /// Endpoint publications the host refused (bad name or URL, too many), over all sinks.
    pub fn endpoints_refused(&self) -> u64 {
        self.sinks.iter().map(|sink| sink.endpoints.refused()).sum()
    }

    /// Sets what `metrics_snapshot` (ABI 1.2) exports of the engine itself (venues, shards,
    /// memory); the sinks' own counters and the plugins' registered metrics are always there.
    /// Set once after start; setting it again replaces it.
    pub fn set_engine_metrics(&self, source: Arc<dyn EngineMetricsSource>) {
        self.metrics_hub.set_engine(source);
    }

    /// Every sample a plugin's `metrics_snapshot` visits (engine, sinks, plugin metrics), in
    /// the same order, for tests and in-process exporters.
    pub fn visit_metrics(&self, out: &mut dyn FnMut(&Sample<'_>)) {
        self.metrics_hub.visit(out);
    }

    /// Counters of every running sink.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks.iter().map(snapshot).collect()
    }

    /// Appends the sinks' counters, `on_batch` latency and the plugins' own metrics in the
    /// Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        metrics_text::render_metrics(&self.sinks, out);
    }

    /// Stops every runner after it drained its lanes, flushed and destroyed its instance, and
    /// joins it; a runner still busy `shutdown_deadline_ms` after the stop (a plugin stuck in a
    /// call) is abandoned instead (`SinkStats::abandoned`). Call after the shards have dropped
    /// their outbounds (`Pipeline::shutdown`).
    pub fn shutdown(mut self) -> Vec<SinkStats> {
        self.stop_and_join();
        let stats: Vec<SinkStats> = self.sinks.iter().map(snapshot).collect();
        for sink in &stats {
            // One line per sink with its final counters: what the plugin accepted against what
            // it says it wrote (tests of a sink's shutdown read it).
            tracing::info!(
                sink = %sink.name,
                plugin = %sink.plugin_name,
                enqueued = sink.enqueued,
                delivered = sink.delivered,
                lost = sink.lost(),
                plugin_records_written = sink.plugin_records_written,
                plugin_records_dropped = sink.plugin_records_dropped,
                plugin_bytes_written = sink.plugin_bytes_written,
                plugin_errors = sink.plugin_errors,
                abandoned = sink.abandoned,
                "sink stopped"
            );
        }
        stats
    }

    fn stop_and_join(&mut self) {
        // Lanes still held here would otherwise keep records the runners never see.
        self.outbounds.clear();
        self.telemetry_outbound = None;
        for sink in &self.sinks {
            sink.shared.stop.store(true, Ordering::Release);
            if let Some(thread) = &sink.thread {
                thread.thread().unpark();
            }
        }
        let stopped_at = Instant::now();
        for sink in &mut self.sinks {
            let Some(thread) = sink.thread.take() else {
                continue;
            };
            let deadline = stopped_at + sink.shutdown_deadline;
            let remaining = deadline.saturating_duration_since(Instant::now());
            match sink.finished.recv_timeout(remaining) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Abandoned, not joined: the plugin is stuck in a call. Its library and host
                    // table are never unloaded or freed, so the thread may go on safely until the
                    // process exits.
                    tracing::error!(
                        sink = %sink.name,
                        plugin = sink.plugin_name,
                        shutdown_deadline_ms = sink.shutdown_deadline.as_millis() as u64,
                        "sink runner did not stop within shutdown_deadline_ms (a plugin call is stuck): abandoned"
                    );
                    sink.abandoned = true;
                }
                // Nothing is ever sent: Ok is as good as Disconnected.
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if thread.join().is_err() {
                        tracing::error!(sink = %sink.name, "sink runner thread panicked (a bug in the host)");
                    }
                }
            }
        }
    }
}

impl Drop for SinkHost {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Memory the configured sinks' rings, conflation tables and batch buffers take (for the
/// engine's memory budget): every sink has one lane per shard plus the telemetry lane.
pub fn sinks_budget_bytes(sinks: &[SinkConfig], shard_count: usize) -> usize {
    let lanes = shard_count + 1;
    sinks
        .iter()
        .map(|sink| lane::sink_budget_bytes(sink, lanes))
        .sum()
}

/// What one `[[sinks]]` entry's plugin states about its memory, for the engine's budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkMemoryBound {
    /// The plugin loaded and answered (or has no `memory_bound`).
    Plugin(MemoryBound),
    /// The plugin was refused (an optional sink the engine would skip; a non-optional one fails
    /// config validation before the budget is computed).
    Refused(Refusal),
}

impl SinkMemoryBound {
    /// The bytes it counts in the budget (0 unless stated).
    pub fn stated_bytes(&self) -> Option<u64> {
        match self {
            SinkMemoryBound::Plugin(MemoryBound::Stated(bytes)) => Some(*bytes),
            _ => None,
        }
    }
}

impl std::fmt::Display for SinkMemoryBound {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkMemoryBound::Plugin(MemoryBound::Stated(bytes)) => write!(
                formatter,
                "{:.1} MiB (stated by the plugin)",
                *bytes as f64 / (1024.0 * 1024.0)
            ),
            SinkMemoryBound::Plugin(MemoryBound::NotStated) => {
                formatter.write_str("not stated (only its rings are counted)")
            }
            SinkMemoryBound::Plugin(MemoryBound::Failed(status)) => write!(
                formatter,
                "not stated (memory_bound returned {} for this config)",
                tickflow_sdk::abi::status_name(*status)
            ),
            SinkMemoryBound::Refused(refusal) => {
                write!(formatter, "not stated (refused: {refusal})")
            }
        }
    }
}

/// What every configured sink's plugin states about its worst-case memory with the sink's own
/// `config` table (loading the library, as validation does; libraries stay loaded). One entry
/// per `[[sinks]]`, in order.
pub fn sink_memory_bounds(sinks: &[SinkConfig]) -> Vec<(String, SinkMemoryBound)> {
    sinks
        .iter()
        .map(|sink| {
            let bound = match loader::load(&sink.name, &sink.path) {
                Ok(plugin) => SinkMemoryBound::Plugin(plugin.memory_bound(&sink.config_text())),
                Err(refusal) => SinkMemoryBound::Refused(refusal),
            };
            (sink.name.clone(), bound)
        })
        .collect()
}

/// Spawns one sink's runner, waits for its `create`, and builds its lanes.
fn start_sink(
    sink: &SinkConfig,
    plugin: LoadedPlugin,
    lane_count: usize,
    registry: Option<Arc<SymbolRegistry>>,
    metrics_hub: &Arc<MetricsHub>,
) -> Result<(RunningSink, Vec<LaneProducer>), PluginError> {
    let shared = Arc::new(SinkShared {
        disabled: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let runner_shared = Arc::new(RunnerShared::default());
    let metrics = Arc::new(PluginMetrics::default());
    let endpoints = Arc::new(PluginEndpoints::default());
    let binding = BindingLease::acquire(HostContext {
        sink_name: sink.name.clone(),
        registry,
        metrics: metrics.clone(),
        endpoints: endpoints.clone(),
        hub: Arc::clone(metrics_hub) as Arc<dyn EngineMetricsSource>,
    });
    // The runner needs its lanes' consumers and the lanes need the runner's thread handle (to
    // wake it): the consumers go through a one-slot channel once the thread exists.
    let (lanes_sender, lanes_receiver) = mpsc::sync_channel::<Vec<lane::LaneConsumer>>(1);
    let (started_sender, started_receiver) = mpsc::sync_channel(1);
    let (finished_sender, finished) = mpsc::sync_channel::<()>(0);
    let runner = Runner {
        sink: sink.clone(),
        plugin_name: plugin.name,
        descriptor: plugin.descriptor,
        config_text: sink.config_text(),
        binding,
        lanes: Vec::new(),
        shared: shared.clone(),
        runner_shared: runner_shared.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("sink-{}", sink.name))
        .spawn(move || {
            // Dropped when this thread ends (even by unwinding): the host's deadline wait sees it.
            let _finished = finished_sender;
            let mut runner = runner;
            // The host sends the lanes right after spawning; a closed channel means it gave up.
            let Ok(lanes) = lanes_receiver.recv() else {
                return;
            };
            runner.lanes = lanes;
            runner.run(started_sender);
        })
        .map_err(|source| PluginError::Spawn {
            sink: sink.name.clone(),
            source,
        })?;
    let mut producers = Vec::with_capacity(lane_count);
    let mut consumers = Vec::with_capacity(lane_count);
    let mut lane_counters = Vec::with_capacity(lane_count);
    for _ in 0..lane_count {
        let (producer, consumer, counters) = lane::lane(
            sink,
            plugin.record_kinds(),
            shared.clone(),
            thread.thread().clone(),
        );
        producers.push(producer);
        consumers.push(consumer);
        lane_counters.push(counters);
    }
    let running = RunningSink {
        name: sink.name.clone(),
        plugin_name: plugin.name,
        plugin_version: plugin.version,
        policy: sink.policy,
        shared,
        runner_shared,
        lane_counters,
        metrics,
        endpoints,
        thread: Some(thread),
        finished,
        shutdown_deadline: Duration::from_millis(sink.shutdown_deadline_ms),
        abandoned: false,
    };
    // If the runner is gone already the send fails and `started` below reports it.
    let _ = lanes_sender.send(consumers);
    match started_receiver.recv() {
        Ok(Ok(())) => {
            metrics_hub.add_sink(Arc::new(ExportedSink {
                name: running.name.clone(),
                plugin_name: running.plugin_name,
                policy: running.policy,
                runner_shared: Arc::clone(&running.runner_shared),
                lane_counters: running.lane_counters.clone(),
                metrics: Arc::clone(&running.metrics),
            }));
            Ok((running, producers))
        }
        Ok(Err(failure)) => {
            join_failed(running);
            Err(PluginError::Create {
                sink: sink.name.clone(),
                status: failure.status,
                status_name: tickflow_sdk::abi::status_name(failure.status),
            })
        }
        Err(_) => {
            join_failed(running);
            Err(PluginError::Internal {
                sink: sink.name.clone(),
            })
        }
    }
}

fn join_failed(mut running: RunningSink) {
    if let Some(thread) = running.thread.take() {
        let _ = thread.join();
    }
}

pub(crate) fn snapshot(sink: &RunningSink) -> SinkStats {
    let sum = |field: fn(&LaneCounters) -> &std::sync::atomic::AtomicU64| -> u64 {
        sink.lane_counters
            .iter()
            .map(|counters| field(counters).load(Ordering::Relaxed))
            .sum()
    };
    let counters = &sink.runner_shared.counters;
    let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
    let histogram = sink
        .runner_shared
        .on_batch_ns
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let quantile = |q: f64| {
        if histogram.is_empty() {
            0
        } else {
            histogram.value_at_quantile(q)
        }
    };
    SinkStats {
        name: sink.name.clone(),
        plugin_name: sink.plugin_name.to_string(),
        plugin_version: sink.plugin_version.to_string(),
        policy: sink.policy.name(),
        enqueued: sum(|c| &c.enqueued),
        dropped_full: sum(|c| &c.dropped_full),
        dropped_oldest: sum(|c| &c.dropped_oldest),
        conflated: sum(|c| &c.conflated),
        block_timeouts: sum(|c| &c.block_timeouts),
        dropped_disabled: sum(|c| &c.dropped_disabled),
        dropped_unavailable: load(&counters.dropped_unavailable),
        delivered: load(&counters.delivered),
        failed_records: load(&counters.failed_records),
        batches: load(&counters.batches),
        errors: load(&counters.errors),
        panics: load(&counters.panics),
        restarts: load(&counters.restarts),
        disabled: counters.disabled.load(Ordering::Relaxed),
        abandoned: sink.abandoned,
        on_batch_ns_p50: quantile(0.5),
        on_batch_ns_p99: quantile(0.99),
        on_batch_ns_p999: quantile(0.999),
        on_batch_ns_max: if histogram.is_empty() {
            0
        } else {
            histogram.max()
        },
        kinds: runner::kind_counts(&sink.lane_counters, counters),
        plugin_records_written: load(&counters.plugin_records_written),
        plugin_records_dropped: load(&counters.plugin_records_dropped),
        plugin_bytes_written: load(&counters.plugin_bytes_written),
        plugin_errors: load(&counters.plugin_errors),
    }
}
