//! The engine's own metrics for the sink plugins' `metrics_snapshot` (ABI 1.2): per venue (from
//! the feed slots' counters), per shard (from the shard counters), and memory against the budget.
//! `tickflow run` sets one [`EngineMetrics`] on the plugin host after start; the Prometheus sink
//! (`plugins/metrics`) exports it. Reads counters only: nothing here touches the data path.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tickflow_core::budget::MemoryBudget;
use tickflow_core::pipeline::{PipelineCounters, ShardCountersHandle};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::{VENUE_COUNT, Venue};
use tickflow_decode::DecodeErrorKind;
use tickflow_feed::SlotHandle;
use tickflow_feed::counters::{EXCHANGE_LATENCY_BOUNDS_NS, SlotCounters};
use tickflow_host::{EngineMetricsSource, HistogramSample, Sample, SampleKind};

/// What the engine exports of itself. Cheap to share; the run loop refreshes its slot list
/// after a universe refresh ([`EngineMetrics::set_slots`]).
pub struct EngineMetrics {
    slots: Mutex<Vec<SlotHandle>>,
    shards: ShardCountersHandle,
    registry: Arc<SymbolRegistry>,
    budget: MemoryBudget,
    started: Instant,
    /// `[[sources]]`: (durable name, counters), set once at start.
    sources: Mutex<Vec<(String, Arc<tickflow_source_nats::SourceCounters>)>>,
}

impl std::fmt::Debug for EngineMetrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EngineMetrics")
            .finish_non_exhaustive()
    }
}

impl EngineMetrics {
    pub fn new(
        slots: &[SlotHandle],
        shards: ShardCountersHandle,
        registry: Arc<SymbolRegistry>,
        budget: MemoryBudget,
    ) -> EngineMetrics {
        EngineMetrics {
            slots: Mutex::new(slots.to_vec()),
            shards,
            registry,
            budget,
            started: Instant::now(),
            sources: Mutex::new(Vec::new()),
        }
    }

    /// The NATS sources to export (`tickflow_source_*{source="<durable>"}`).
    pub fn set_sources(&self, sources: &[tickflow_source_nats::NatsSource]) {
        *self
            .sources
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = sources
            .iter()
            .map(|source| (source.name().to_string(), source.counters()))
            .collect();
    }

    /// The feeds' slots now (after a refresh added slots or changed their plans).
    pub fn set_slots(&self, slots: &[SlotHandle]) {
        *self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = slots.to_vec();
    }
}

type SlotCounter = (&'static str, &'static str, fn(&SlotCounters) -> u64);

/// Per-venue counters summed over the venue's slots.
const VENUE_COUNTERS: [SlotCounter; 21] = [
    (
        "tickflow_venue_frames_total",
        "WebSocket frames read (pings and pongs included)",
        |c| SlotCounters::get(&c.frames),
    ),
    (
        "tickflow_venue_records_total",
        "Records decoded and offered to the pipeline",
        |c| SlotCounters::get(&c.records),
    ),
    (
        "tickflow_venue_quotes_total",
        "Quotes (best bid/ask updates) decoded",
        |c| SlotCounters::get(&c.quotes),
    ),
    (
        "tickflow_venue_ring_drops_total",
        "Records dropped because a feed-to-shard ring was full",
        |c| SlotCounters::get(&c.ring_drops),
    ),
    (
        "tickflow_venue_connects_total",
        "Successful connections (the first included)",
        |c| SlotCounters::get(&c.connects),
    ),
    (
        "tickflow_venue_reconnects_total",
        "Successful connections after the first",
        |c| SlotCounters::get(&c.reconnects),
    ),
    (
        "tickflow_venue_connect_failures_total",
        "Connect attempts that failed",
        |c| SlotCounters::get(&c.connect_failures),
    ),
    (
        "tickflow_venue_rate_limited_total",
        "Connect attempts refused with 429 or 418",
        |c| SlotCounters::get(&c.rate_limited),
    ),
    (
        "tickflow_venue_pongs_missed_total",
        "Client pings not answered in time",
        |c| SlotCounters::get(&c.pongs_missed),
    ),
    (
        "tickflow_venue_write_timeouts_total",
        "Connections replaced because the venue stopped reading",
        |c| SlotCounters::get(&c.write_timeouts),
    ),
    (
        "tickflow_venue_silences_total",
        "Connections declared dead after max_silence_ms without a frame",
        |c| SlotCounters::get(&c.silences),
    ),
    (
        "tickflow_venue_stale_data_total",
        "Connections replaced because a re-sending channel went quiet",
        |c| SlotCounters::get(&c.stale_data),
    ),
    (
        "tickflow_venue_server_closes_total",
        "Connections the server closed",
        |c| SlotCounters::get(&c.server_closes),
    ),
    (
        "tickflow_venue_oversized_frames_total",
        "Messages over engine.max_frame_bytes (skipped)",
        |c| SlotCounters::get(&c.oversized_frames),
    ),
    (
        "tickflow_venue_protocol_errors_total",
        "Frames breaking the WebSocket protocol",
        |c| SlotCounters::get(&c.protocol_errors),
    ),
    (
        "tickflow_venue_rotations_total",
        "Completed connection rotations (no gap)",
        |c| SlotCounters::get(&c.rotations),
    ),
    (
        "tickflow_venue_shutdown_notices_total",
        "Shutdown or upgrade notices received",
        |c| SlotCounters::get(&c.shutdown_notices),
    ),
    (
        "tickflow_venue_error_replies_total",
        "Error replies from the venue",
        |c| SlotCounters::get(&c.error_replies),
    ),
    (
        "tickflow_venue_gaps_total",
        "Gap events emitted (one per symbol per disconnect or reconnect)",
        |c| SlotCounters::get(&c.gaps),
    ),
    (
        "tickflow_venue_gap_drops_total",
        "Gap events never delivered (every ring try refused)",
        |c| SlotCounters::get(&c.gap_drops),
    ),
    (
        "tickflow_venue_symbols_retired_total",
        "Symbols a plan change took off a slot",
        |c| SlotCounters::get(&c.symbols_retired),
    ),
];

type ShardCounter = (&'static str, &'static str, fn(&PipelineCounters) -> u64);

const SHARD_COUNTERS: [ShardCounter; 17] = [
    (
        "tickflow_shard_quotes_total",
        "Quotes the shard applied",
        |c| c.quotes,
    ),
    (
        "tickflow_shard_trades_total",
        "Trades the shard passed on",
        |c| c.trades,
    ),
    (
        "tickflow_shard_gaps_total",
        "Gap events the shard applied",
        |c| c.gaps,
    ),
    (
        "tickflow_shard_spread_updates_total",
        "Spread updates computed",
        |c| c.spread_updates,
    ),
    (
        "tickflow_shard_stale_skips_total",
        "Quotes of another venue skipped as older than its age limit",
        |c| c.stale_skips,
    ),
    (
        "tickflow_shard_non_finite_spreads_total",
        "Spreads skipped as not finite",
        |c| c.non_finite_spreads,
    ),
    (
        "tickflow_shard_spreads_out_of_bounds_total",
        "Spreads beyond windows.max_abs_spread_bp",
        |c| c.spreads_out_of_bounds,
    ),
    (
        "tickflow_shard_windows_created_total",
        "Windows created",
        |c| c.windows_created,
    ),
    (
        "tickflow_shard_windows_evicted_total",
        "Windows evicted (least recently updated, window cap reached)",
        |c| c.windows_evicted,
    ),
    (
        "tickflow_shard_windows_shed_total",
        "Windows evicted because a critical memory alert lowered the cap (also in windows_evicted)",
        |c| c.windows_shed,
    ),
    (
        "tickflow_shard_windows_expired_total",
        "Windows expired (no update for their length)",
        |c| c.windows_expired,
    ),
    (
        "tickflow_shard_windows_retired_total",
        "Windows ended because a venue stopped listing their symbol",
        |c| c.windows_retired,
    ),
    (
        "tickflow_shard_samples_emitted_total",
        "Spread samples emitted towards the sinks",
        |c| c.samples_emitted,
    ),
    (
        "tickflow_shard_opportunities_emitted_total",
        "Opportunity events emitted towards the sinks",
        |c| c.opportunities_emitted,
    ),
    (
        "tickflow_shard_stale_cycle_ends_total",
        "Cycles ended by housekeeping (a side went stale)",
        |c| c.stale_cycle_ends,
    ),
    (
        "tickflow_shard_parks_total",
        "Times the idle shard parked",
        |c| c.shard_parks,
    ),
    (
        "tickflow_shard_batch_waits_total",
        "Times the dry shard waited engine.shard_batch_wait_us",
        |c| c.shard_batch_waits,
    ),
];

/// Resume-time buckets, seconds (the slots record ms).
const RESUME_BOUNDS_SECONDS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// One venue's view: its slots' counters.
struct VenueView<'a> {
    venue: Venue,
    slots: Vec<&'a SlotCounters>,
}

impl EngineMetricsSource for EngineMetrics {
    fn visit(&self, out: &mut dyn FnMut(&Sample<'_>)) {
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        let mut venues: Vec<VenueView<'_>> = Venue::ALL
            .iter()
            .map(|venue| VenueView {
                venue: *venue,
                slots: Vec::new(),
            })
            .collect();
        for slot in &slots {
            venues[slot.plan.venue.index()].slots.push(&slot.counters);
        }
        venues.retain(|view| !view.slots.is_empty());
        debug_assert!(venues.len() <= VENUE_COUNT);
        visit_venues(&venues, out);
        visit_shards(&self.shards, out);
        self.visit_engine(out);
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        visit_sources(&sources, out);
    }
}

/// Per NATS source: its counters as `tickflow_source_<name>_total`, and whether it is connected.
fn visit_sources(
    sources: &[(String, Arc<tickflow_source_nats::SourceCounters>)],
    out: &mut dyn FnMut(&Sample<'_>),
) {
    for (name, counters) in sources {
        let labels = [("source", name.as_str())];
        for (field, value) in counters.to_json_fields() {
            if field == "connected" {
                out(&Sample::gauge(
                    "tickflow_source_connected",
                    "1 while the NATS source is connected to a server",
                    &labels,
                    value as f64,
                ));
                continue;
            }
            if field == "reorder_held" {
                out(&Sample::gauge(
                    "tickflow_source_reorder_held",
                    "Records the NATS source holds for receive-time order now",
                    &labels,
                    value as f64,
                ));
                continue;
            }
            let family = format!("tickflow_source_{field}_total");
            let help = format!(
                "NATS source: {} (see docs/scale-out.md)",
                field.replace('_', " ")
            );
            out(&Sample::counter(&family, &help, &labels, value));
        }
    }
}

fn visit_venues(venues: &[VenueView<'_>], out: &mut dyn FnMut(&Sample<'_>)) {
    let now_ns = tickflow_core::record::now_ns();
    for view in venues {
        let labels = [("venue", view.venue.name())];
        out(&Sample::gauge(
            "tickflow_venue_connections_planned",
            "Connection slots planned for the venue",
            &labels,
            view.slots.len() as f64,
        ));
    }
    for view in venues {
        let up = view
            .slots
            .iter()
            .filter(|counters| {
                counters
                    .connected
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .count();
        let labels = [("venue", view.venue.name())];
        out(&Sample::gauge(
            "tickflow_venue_connections_up",
            "Connection slots connected now",
            &labels,
            up as f64,
        ));
    }
    for view in venues {
        let subscriptions: u64 = view
            .slots
            .iter()
            .map(|c| SlotCounters::get(&c.subscriptions))
            .sum();
        let labels = [("venue", view.venue.name())];
        out(&Sample::gauge(
            "tickflow_venue_subscriptions",
            "Subscriptions (symbol x channel) live on the venue's connections",
            &labels,
            subscriptions as f64,
        ));
    }
    for view in venues {
        let last_ns = view
            .slots
            .iter()
            .map(|c| c.last_data_ns.load(std::sync::atomic::Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        // A venue that never delivered has no age (absent, not a made-up number).
        if last_ns > 0 {
            let labels = [("venue", view.venue.name())];
            out(&Sample::gauge(
                "tickflow_venue_last_data_age_seconds",
                "Seconds since any of the venue's connections last delivered data",
                &labels,
                (now_ns - last_ns).max(0) as f64 / 1e9,
            ));
        }
    }
    for (family, help, value) in VENUE_COUNTERS {
        for view in venues {
            let total: u64 = view.slots.iter().map(|counters| value(counters)).sum();
            let labels = [("venue", view.venue.name())];
            out(&Sample::counter(family, help, &labels, total));
        }
    }
    for view in venues {
        for kind in DecodeErrorKind::ALL {
            let total: u64 = view
                .slots
                .iter()
                .map(|counters| SlotCounters::get(&counters.decode_errors[kind.index()]))
                .sum();
            let labels = [("venue", view.venue.name()), ("kind", kind.name())];
            out(&Sample::counter(
                "tickflow_venue_decode_errors_total",
                "Frames the decoder refused, by error kind",
                &labels,
                total,
            ));
        }
    }
    for view in venues {
        let mut resume = SlotCounters::new_resume_histogram();
        for counters in &view.slots {
            counters.merge_resume_ms(&mut resume);
        }
        let count = resume.len();
        let cumulative: [u64; RESUME_BOUNDS_SECONDS.len()] = std::array::from_fn(|index| {
            if count == 0 {
                0
            } else {
                resume.count_between(0, (RESUME_BOUNDS_SECONDS[index] * 1e3) as u64)
            }
        });
        let sum = if count == 0 {
            0.0
        } else {
            resume.mean() * count as f64 / 1e3
        };
        let labels = [("venue", view.venue.name())];
        out(&Sample {
            family: "tickflow_venue_resume_duration_seconds",
            help: "Time from a reconnect to its first record",
            kind: SampleKind::Histogram,
            labels: &labels,
            value: sum,
            histogram: Some(HistogramSample {
                upper_bounds: &RESUME_BOUNDS_SECONDS,
                cumulative: &cumulative,
                count,
                sum,
            }),
        });
    }
    let bounds_seconds: [f64; EXCHANGE_LATENCY_BOUNDS_NS.len()] =
        std::array::from_fn(|index| EXCHANGE_LATENCY_BOUNDS_NS[index] as f64 / 1e9);
    for view in venues {
        let mut buckets = [0u64; EXCHANGE_LATENCY_BOUNDS_NS.len() + 1];
        let mut sum_ns = 0u64;
        for counters in &view.slots {
            counters
                .exchange_latency
                .add_into(&mut buckets, &mut sum_ns);
        }
        let mut running = 0u64;
        let cumulative: [u64; EXCHANGE_LATENCY_BOUNDS_NS.len()] = std::array::from_fn(|index| {
            running += buckets[index];
            running
        });
        let count = buckets.iter().sum();
        let sum = sum_ns as f64 / 1e9;
        let labels = [("venue", view.venue.name())];
        out(&Sample {
            family: "tickflow_venue_exchange_latency_seconds",
            help: "Exchange timestamp to receive time, first timestamped record of each data frame",
            kind: SampleKind::Histogram,
            labels: &labels,
            value: sum,
            histogram: Some(HistogramSample {
                upper_bounds: &bounds_seconds,
                cumulative: &cumulative,
                count,
                sum,
            }),
        });
    }
}

fn visit_shards(shards: &ShardCountersHandle, out: &mut dyn FnMut(&Sample<'_>)) {
    let counters: Vec<(String, PipelineCounters)> = (0..shards.shard_count())
        .filter_map(|index| Some((index.to_string(), shards.shard(index)?)))
        .collect();
    for (family, help, value) in [
        (
            "tickflow_shard_windows_live",
            "Windows live in the shard",
            (|c| c.windows_live) as fn(&PipelineCounters) -> u64,
        ),
        (
            "tickflow_shard_windows_cap",
            "Windows the shard may hold now (its capacity, lower while memory is shed)",
            |c| c.windows_cap,
        ),
        (
            "tickflow_shard_ring_fill_max_records",
            "The fullest feed ring the shard drained over its last interval, in records",
            |c| c.ring_fill_max_records,
        ),
    ] {
        for (index, shard) in &counters {
            let labels = [("shard", index.as_str())];
            out(&Sample::gauge(family, help, &labels, value(shard) as f64));
        }
    }
    for (family, help, value) in SHARD_COUNTERS {
        for (index, shard) in &counters {
            let labels = [("shard", index.as_str())];
            out(&Sample::counter(family, help, &labels, value(shard)));
        }
    }
    for (index, shard) in &counters {
        for (percentile, value_ns) in [
            ("p50", shard.latency_ns_p50),
            ("p99", shard.latency_ns_p99),
            ("p999", shard.latency_ns_p999),
            ("max", shard.latency_ns_max),
        ] {
            let labels = [("shard", index.as_str()), ("percentile", percentile)];
            out(&Sample::gauge(
                "tickflow_shard_spread_latency_seconds",
                "Frame read to spread update over the shard's last housekeeping interval",
                &labels,
                value_ns as f64 / 1e9,
            ));
        }
    }
}

impl EngineMetrics {
    fn visit_engine(&self, out: &mut dyn FnMut(&Sample<'_>)) {
        out(&Sample::gauge(
            "tickflow_uptime_seconds",
            "Seconds since the engine started",
            &[],
            self.started.elapsed().as_secs_f64(),
        ));
        out(&Sample::gauge(
            "tickflow_symbols_registered",
            "Symbols in the registry (retired ones included)",
            &[],
            self.registry.len() as f64,
        ));
        out(&Sample::gauge(
            "tickflow_symbols_live",
            "Symbols some venue lists now",
            &[],
            self.registry.live_len() as f64,
        ));
        out(&Sample::counter(
            "tickflow_symbols_refused_total",
            "Symbols refused because the registry was full (engine.max_symbols)",
            &[],
            self.registry.refused_full(),
        ));
        out(&Sample::gauge(
            "tickflow_process_resident_memory_bytes",
            "Resident memory of the engine process (VmRSS)",
            &[],
            process_resident_bytes() as f64,
        ));
        out(&Sample::gauge(
            "tickflow_memory_budget_total_bytes",
            "The engine's worst-case memory budget for its config",
            &[],
            self.budget.total_bytes as f64,
        ));
        // One sample per budget line name (lines of one name, e.g. one per sink, summed).
        let mut seen: Vec<&str> = Vec::with_capacity(self.budget.lines.len());
        for line in &self.budget.lines {
            if seen.contains(&line.name) {
                continue;
            }
            seen.push(line.name);
            let bytes: usize = self
                .budget
                .lines
                .iter()
                .filter(|other| other.name == line.name)
                .map(|other| other.bytes)
                .sum();
            let labels = [("line", line.name)];
            out(&Sample::gauge(
                "tickflow_memory_budget_bytes",
                "The memory budget per line (worst case for the config)",
                &labels,
                bytes as f64,
            ));
        }
    }
}

/// mimalloc's own statistics (the binary's global allocator; in a process that links another
/// allocator they describe only what went through mimalloc's API, which is nothing).
pub fn allocator_stats() -> Option<tickflow_control::memory::AllocatorStats> {
    let json = mimalloc::MiMalloc::stats_json().ok()?;
    let value: serde_json::Value = serde_json::from_slice(json.to_bytes()).ok()?;
    let number = |pointer: &str| value.pointer(pointer).and_then(serde_json::Value::as_u64);
    let version = number("/mimalloc_version").unwrap_or(0);
    Some(tickflow_control::memory::AllocatorStats {
        allocator: "mimalloc",
        // mimalloc 3 spells 3.3.2 as 30302 (major, two digits of minor, two of patch).
        version: format!(
            "{}.{}.{}",
            version / 10_000,
            version / 100 % 100,
            version % 100
        ),
        committed_bytes: number("/process/commit_current")?,
        committed_peak_bytes: number("/process/commit_peak").unwrap_or(0),
        reserved_bytes: number("/reserved/current"),
        page_faults: number("/process/page_faults").unwrap_or(0),
    })
}

/// This process's resident memory from /proc (0 where /proc is unavailable): the metrics' RSS
/// gauge and the telemetry record's `rss_bytes`.
pub fn process_resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
