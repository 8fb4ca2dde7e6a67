//! `tickflow run --config FILE`: the engine from a config file. Starts the pipeline and the feeds,
//! prints the memory budget and a periodic `tickflow-stats` line, and shuts down in order on
//! SIGTERM/SIGINT (feeds stop → producers dropped → pipeline drains); a second signal exits at once.
//!
//! The `tickflow-stats` line (stderr, every `feeds.stats_interval_ms`) is one JSON object:
//! `uptime_ms`, `slots`, `connected`, `tasks` (live slot tasks), `runtime_tasks` (every task alive
//! in the feeds runtime), `symbols` (registry size, retired included), `symbols_live`,
//! `symbols_refused` (registry full), `symbols_retired`, `listings_unplaced`,
//! `subscriptions`, `frames`, `records`, `quotes`, `ring_drops`, `reconnects`, `resume_ms_p50`,
//! `resume_ms_p99`, error counters, and the pipeline's `shard_quotes`, `shard_trades`,
//! `shard_gaps`, `ring_dropped`, and `sink_kinds` (per record kind: `emitted` by the shards,
//! `delivered` and `lost` by the sinks; also in the `tickflow-shutdown` line, exact there).
//! `tickflow-load` reads it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::process::{Signals, init_logging};
use tickflow::budget::{MemoryBudget, memory_budget};
use tickflow::config::Config;
use tickflow_core::outbound::{DiscardOutbound, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::registry::SymbolRegistry;
use tickflow_feed::Feeds;
use tickflow_host::SinkHost;

pub fn run(config_path: &Path) -> anyhow::Result<u8> {
    let config = Arc::new(Config::from_file(config_path)?);
    let _log_guard = init_logging("info");
    let budget = memory_budget(&config);
    println!("{budget}");
    // The feeds threads' batch sleeps (`feeds.batch_wait_us`), for the stats line.
    let batch_sleeps = Arc::new(tickflow_feed::BatchSleeps::default());
    let runtime = feed_runtime(&config, Arc::clone(&batch_sleeps))?;
    let registry = Arc::new(SymbolRegistry::new(config.engine.max_symbols));
    // SINKS: the single place where the sinks are wired: the plugin host gives one outbound per
    // shard (for the pipeline) and one telemetry lane.
    let mut sink_host = SinkHost::start(
        &config.sinks,
        config.shard_count(),
        Some(Arc::clone(&registry)),
    )?;
    let mut telemetry = sink_host.take_telemetry_outbound();
    let mut pipeline =
        Pipeline::start(&config.engine, &config.windows, sink_host.take_outbounds())?;
    // Memory shedding's request (a critical memory alert): the shards apply the window cap, the
    // universe refresh below holds growth back.
    let shed = pipeline.shed_control();
    // The control plane (its own runtime and thread): "starting" until the feeds are up.
    let control = super::control::start_for_engine(&config, &pipeline, &registry, &budget)?;
    if let Some((control, _)) = &control {
        println!(
            "tickflow: control plane on {}/ (dashboard, /health, /api/…: engine/control/API.md)",
            control.url()
        );
    }
    let board = control.as_ref().map(|(_, board)| Arc::clone(board));
    let result = runtime.block_on(async {
        // The universe: discovered from the venues' instrument lists unless [feeds] lists symbols.
        let mut refresher = if tickflow::universe::discovers(&config) {
            let started = Instant::now();
            let (refresher, applied) =
                tickflow::universe::Refresher::start(Arc::clone(&config), &registry).await?;
            eprintln!(
                "tickflow: universe discovered in {} ms: {}{}",
                started.elapsed().as_millis(),
                tickflow::universe::one_line(refresher.universe()),
                if applied.refused.is_empty() {
                    String::new()
                } else {
                    format!("; {} refused (registry full)", applied.refused.len())
                }
            );
            Some(refresher)
        } else {
            None
        };
        // WARM START: windows seeded from the Parquet history before any record ([windows]
        // warm_start); a missing or damaged history is a warning.
        tickflow::warm_start::warm_start_if_configured(&config, &registry, &mut pipeline);
        // SOURCES: each [[sources]] takes a connection slot's producer before the feeds take the
        // rest (the config's plan left one per source).
        let mut sources = Vec::with_capacity(config.sources.len());
        for source in &config.sources {
            let producer = pipeline
                .take_producer()
                .context("no producer left for a [[sources]] table (engine.max_connection_slots)")?;
            sources.push(tickflow_source_nats::NatsSource::start(
                source,
                Arc::clone(&registry),
                producer,
                &tokio::runtime::Handle::current(),
            ));
        }
        let mut feeds = Feeds::start(&config.feeds, &config.engine, Arc::clone(&registry), || pipeline.take_producer())?;
        // METRICS: what the sinks' `metrics_snapshot` (ABI 1.2) exports of the engine itself.
        let engine_metrics = Arc::new(tickflow::metrics::EngineMetrics::new(
            feeds.slots(),
            pipeline.shard_counters_handle(),
            Arc::clone(&registry),
            budget.clone(),
        ));
        engine_metrics.set_sources(&sources);
        sink_host.set_engine_metrics(engine_metrics.clone());
        eprintln!(
            "tickflow: {} connection slots over {} venues, {} symbols, {} shards; stats every {} ms on stderr",
            feeds.slots().len(),
            config.feeds.enabled_venues().count(),
            registry.len(),
            pipeline.shard_count(),
            config.feeds.stats_interval_ms
        );
        if let Some(board) = &board {
            board.publish_with_sources(&feeds, &pipeline, Some(&sink_host), source_statuses(&sources));
            board.set_phase(tickflow_control::Phase::Running);
        }
        if feeds.slots().is_empty() && sources.is_empty() {
            eprintln!(
                "tickflow: no feeds: add [feeds] symbols and [feeds.venue.<name>] sections (see config/live.toml)"
            );
        }
        let mut signals = Signals::new()?;
        let started = Instant::now();
        let stats_interval = Duration::from_millis(config.feeds.stats_interval_ms.max(1));
        let mut stats_tick = tokio::time::interval(stats_interval);
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut telemetry_tick = tokio::time::interval(Duration::from_secs(1));
        telemetry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let refresh_every = refresher
            .as_ref()
            .and_then(tickflow::universe::Refresher::interval)
            .unwrap_or(Duration::MAX);
        let mut refresh_tick = tokio::time::interval_at(
            tokio::time::Instant::now() + refresh_every.min(Duration::from_secs(1 << 32)),
            refresh_every.min(Duration::from_secs(1 << 32)),
        );
        refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shard_watch_tick = tokio::time::interval(SHARD_WATCH_INTERVAL);
        shard_watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut exit_code = 0u8;
        loop {
            tokio::select! {
                name = signals.next() => {
                    eprintln!("tickflow: {name}: stopping feeds (a second signal exits at once)");
                    break;
                }
                _ = refresh_tick.tick(), if refresher.is_some() && refresh_every != Duration::MAX => {
                    if let Some(refresher) = refresher.as_mut() {
                        refresher.begin();
                    }
                }
                round = async { refresher.as_mut().expect("guarded by is_some").next().await }, if refresher.is_some() => {
                    if let Some(refresher) = refresher.as_mut() {
                        let finished = refresher.finish(round, &registry, &mut feeds, shed.universe_growth_paused());
                        engine_metrics.set_slots(feeds.slots());
                        match finished {
                            Ok(refreshed) => eprintln!(
                                "tickflow: universe refreshed: {} symbols, +{} / -{} listings, {} slots re-planned, {} added, {} unplaced",
                                refreshed.symbols,
                                refreshed.applied.listings_added,
                                refreshed.applied.listings_retired,
                                refreshed.feeds.slots_changed,
                                refreshed.feeds.slots_added,
                                refreshed.feeds.listings_unplaced
                            ),
                            Err(error) => tracing::error!(%error, "universe refresh could not re-plan the feeds; the previous plan stays"),
                        }
                    }
                }
                _ = shard_watch_tick.tick() => {
                    if let Some(board) = &board {
                        board.publish_with_sources(&feeds, &pipeline, Some(&sink_host), source_statuses(&sources));
                    }
                    let dead = pipeline.dead_shards();
                    if !dead.is_empty() {
                        tracing::error!(shards = ?dead, "shard thread ended (a panic): its symbols get no spreads; stopping");
                        eprintln!("tickflow: shard thread(s) {dead:?} died; stopping with an error");
                        exit_code = EXIT_SHARD_DIED;
                        break;
                    }
                }
                _ = telemetry_tick.tick(), if telemetry.is_some() => {
                    if let Some(outbound) = telemetry.as_mut() {
                        let record = telemetry_record(&feeds, &pipeline, &sink_host, &budget, started);
                        outbound.emit_telemetry(&record);
                        // ABI 1.3: one status per enabled venue (a collector's heartbeat).
                        for status in venue_statuses(&config, &feeds, record.ts_ns) {
                            outbound.emit_venue_status(&status);
                        }
                        tickflow_core::outbound::Outbound::flush(outbound);
                    }
                }
                _ = stats_tick.tick(), if config.feeds.stats_interval_ms > 0 => {
                    eprintln!("tickflow-stats {}", with_sources(stats_json(&feeds, &pipeline, &registry, &sink_host.stats(), &batch_sleeps, started), &sources));
                }
            }
        }
        // /health and /ready answer 503 while the engine drains.
        if let Some(board) = &board {
            board.set_phase(tickflow_control::Phase::Draining);
        }
        tokio::select! {
            finished = feeds.shutdown() => {
                if !finished {
                    tracing::warn!("some connection slots did not stop within feeds.shutdown_deadline_ms");
                }
            }
            name = signals.next() => {
                eprintln!("tickflow: second {name}: exiting now");
                std::process::exit(130);
            }
        }
        // The sources stop like the feeds: their producers go with their tasks; a message not in
        // its ring yet stays unacknowledged (JetStream redelivers it to the next run).
        for source in sources {
            let name = source.name().to_string();
            if !source.shutdown(Duration::from_millis(config.feeds.shutdown_deadline_ms)).await {
                tracing::warn!(source = %name, "a NATS source did not stop within feeds.shutdown_deadline_ms");
            }
        }
        anyhow::Ok(exit_code)
    });
    // Every producer is dropped with its slot task by now (or the runtime shutdown below ends
    // it). A blocking task (a slow DNS lookup of a real venue host) is not waited for past the
    // feeds' deadline.
    runtime.shutdown_timeout(Duration::from_millis(config.feeds.shutdown_deadline_ms));
    // The control plane stops before the pipeline and the sinks (it only reads them).
    if let Some((control, _)) = control {
        control.shutdown();
    }
    let (report, sink_stats) = shut_down_pipeline_and_sinks(pipeline, telemetry, sink_host)?;
    let exit_code = result?;
    eprintln!(
        "tickflow-shutdown {}",
        serde_json::json!({
            "records_left_in_rings": report.records_left_in_rings,
            "pushed": report.counters.pushed,
            "ring_dropped": report.counters.dropped_ring_full,
            "quotes": report.counters.quotes,
            "trades": report.counters.trades,
            "gaps": report.counters.gaps,
            "sinks": sink_stats.len(),
            "sink_lost": sink_stats.iter().map(|sink| sink.lost()).sum::<u64>(),
            "sink_kinds": sink_kinds_json(&report.counters, &sink_stats),
            "shards_dead": report.counters.shards_dead,
        })
    );
    Ok(exit_code)
}

/// How often the run loop checks that every shard thread is alive.
const SHARD_WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// `tickflow run`'s exit code when a shard thread died while running.
const EXIT_SHARD_DIED: u8 = 3;

/// Pipeline, then the sinks (the shards dropped their outbounds; the telemetry lane goes too), on
/// a blocking thread while a second SIGTERM/SIGINT still exits at once. A sink stuck in a plugin
/// call is abandoned after its `shutdown_deadline_ms`.
fn shut_down_pipeline_and_sinks(
    pipeline: Pipeline,
    telemetry: Option<tickflow_host::SinkOutbound>,
    sink_host: SinkHost,
) -> anyhow::Result<(
    tickflow_core::pipeline::ShutdownReport,
    Vec<tickflow_host::SinkStats>,
)> {
    let watcher = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the shutdown signal watcher")?;
    watcher.block_on(async move {
        let mut signals = Signals::new()?;
        let shutdown = tokio::task::spawn_blocking(move || {
            let report = pipeline.shutdown();
            drop(telemetry);
            (report, sink_host.shutdown())
        });
        tokio::select! {
            finished = shutdown => finished.context("the shutdown thread panicked"),
            name = signals.next() => {
                eprintln!("tickflow: second {name}: exiting now");
                std::process::exit(130);
            }
        }
    })
}

/// One outbound per shard that discards everything (the demo has no sinks).
pub(crate) fn sink_outbounds(config: &Config) -> Vec<Box<dyn Outbound>> {
    (0..config.shard_count())
        .map(|_| Box::new(DiscardOutbound) as Box<dyn Outbound>)
        .collect()
}

/// The engine's once-a-second `Telemetry` record for the sinks.
fn telemetry_record(
    feeds: &Feeds,
    pipeline: &Pipeline,
    sink_host: &SinkHost,
    budget: &MemoryBudget,
    started: Instant,
) -> tickflow_core::records::Telemetry {
    let totals = feeds.totals();
    let counters = pipeline.counters();
    let sinks = sink_host.stats();
    tickflow_core::records::Telemetry {
        ts_ns: tickflow_core::record::now_ns(),
        uptime_ns: started.elapsed().as_nanos() as i64,
        rss_bytes: tickflow::metrics::process_resident_bytes(),
        budget_bytes: budget.total_bytes as u64,
        records_in: totals.records,
        records_out: sinks.iter().map(|sink| sink.delivered).sum(),
        ring_drops: counters.dropped_ring_full,
        decode_errors: totals.decode_errors,
        reconnects: totals.reconnects,
        windows_live: counters.windows_live,
        windows_evicted: counters.windows_evicted,
        sink_drops: sinks.iter().map(|sink| sink.lost()).sum(),
        connections_up: totals.connected as u32,
        shards: pipeline.shard_count() as u32,
        reserved: [0; 8],
    }
}

/// Each `[[sources]]`' status for `/health` (`name` = its durable).
fn source_statuses(
    sources: &[tickflow_source_nats::NatsSource],
) -> Vec<tickflow_control::SourceStatus> {
    use std::sync::atomic::Ordering::Relaxed;
    let now_ns = tickflow_core::record::now_ns();
    let age_ms = |since_ns: i64| ((now_ns - since_ns).max(0) / 1_000_000) as u64;
    sources
        .iter()
        .map(|source| {
            let counters = source.counters();
            let down_since_ns = counters.down_since_ns.load(Relaxed);
            let last_message_ns = counters.last_message_ns.load(Relaxed);
            let refused = [
                &counters.refused_bad_timestamp,
                &counters.refused_clock_ahead,
                &counters.refused_non_finite,
                &counters.refused_non_positive_price,
                &counters.refused_crossed_book,
                &counters.decode_errors,
            ]
            .iter()
            .map(|counter| counter.load(Relaxed))
            .sum();
            tickflow_control::SourceStatus {
                name: source.name().to_string(),
                kind: "nats",
                connected: counters.connected.load(Relaxed),
                down_for_ms: if down_since_ns == 0 {
                    0
                } else {
                    age_ms(down_since_ns)
                },
                last_message_age_ms: (last_message_ns > 0).then(|| age_ms(last_message_ns)),
                sessions: counters.sessions.load(Relaxed),
                messages: counters.messages.load(Relaxed),
                applied: counters.applied.load(Relaxed),
                duplicates: counters.duplicates.load(Relaxed),
                redeliveries: counters.redeliveries.load(Relaxed),
                refused,
                venues_silenced: counters.venues_silenced.load(Relaxed),
                reorder_held: counters.reorder_held.load(Relaxed),
            }
        })
        .collect()
}

/// The stats line with each `[[sources]]`' counters under `sources` (`name` = its durable).
fn with_sources(line: String, sources: &[tickflow_source_nats::NatsSource]) -> String {
    if sources.is_empty() {
        return line;
    }
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&line) else {
        return line;
    };
    let list: Vec<serde_json::Value> = sources
        .iter()
        .map(|source| {
            let mut object = serde_json::Map::new();
            object.insert("name".into(), source.name().into());
            for (key, count) in source.counters().to_json_fields() {
                object.insert(key.into(), count.into());
            }
            serde_json::Value::Object(object)
        })
        .collect();
    if let Some(object) = value.as_object_mut() {
        object.insert("sources".into(), list.into());
    }
    value.to_string()
}

/// The once-a-second `VenueStatus` records (ABI 1.3), one per enabled venue, from its slots'
/// counters: connections up and planned, the latest data's receive time, reconnects.
pub(crate) fn venue_statuses(
    config: &Config,
    feeds: &Feeds,
    ts_ns: i64,
) -> Vec<tickflow_core::records::VenueStatus> {
    use std::sync::atomic::Ordering;
    config
        .feeds
        .enabled_venues()
        .map(|(venue, _)| {
            let mut status = tickflow_core::records::VenueStatus {
                ts_ns,
                venue_id: venue.id(),
                ..Default::default()
            };
            for slot in feeds.slots().iter().filter(|slot| slot.plan.venue == venue) {
                status.connections_planned += 1;
                if slot.counters.connected.load(Ordering::Relaxed) {
                    status.connections_up += 1;
                }
                status.reconnects += slot.counters.reconnects.load(Ordering::Relaxed);
                status.last_data_ns = status
                    .last_data_ns
                    .max(slot.counters.last_data_ns.load(Ordering::Relaxed));
            }
            status
        })
        .collect()
}

pub(crate) fn feed_runtime(
    config: &Config,
    batch_sleeps: Arc<tickflow_feed::BatchSleeps>,
) -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = config.feeds.worker_cores.clone();
    if !cores.is_empty() {
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|core| core.id)
            .collect();
        if let Some(core) = cores.iter().find(|core| !available.contains(core)) {
            anyhow::bail!(
                "config key `feeds.worker_cores` names CPU {core}, which this machine does not have (CPUs: {available:?})"
            );
        }
    }
    let next_core = std::sync::atomic::AtomicUsize::new(0);
    let batch_wait = std::time::Duration::from_micros(config.feeds.batch_wait_us);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.feeds.worker_threads.max(1))
        .thread_name("tickflow-feeds")
        // Batched wake-ups (`feeds.batch_wait_us`): the thread wakes the shards its slots
        // flushed to, then sleeps for a batch of frames right before it parks, so the park
        // finds them all ready (tickflow_feed's coalesce).
        .on_thread_park(move || tickflow_feed::batch_wakeups_before_park(batch_wait, &batch_sleeps))
        .on_thread_start(move || {
            if cores.is_empty() {
                return;
            }
            // Runtime threads (workers, and blocking threads such as DNS lookups) take the
            // listed CPUs round robin.
            let index = next_core.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let core = cores[index % cores.len()];
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                tracing::warn!(core, "cannot pin a feeds runtime thread; it runs unpinned");
            }
        })
        .enable_all()
        .build()
        .context("cannot start the feeds runtime")
}

pub(crate) fn stats_json(
    feeds: &Feeds,
    pipeline: &Pipeline,
    registry: &SymbolRegistry,
    sinks: &[tickflow_host::SinkStats],
    batch_sleeps: &tickflow_feed::BatchSleeps,
    started: Instant,
) -> String {
    let totals = feeds.totals();
    let counters = pipeline.counters();
    let mut value: serde_json::Value = serde_json::from_str(&totals.to_json(registry.len()))
        .unwrap_or_else(|_| serde_json::json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "uptime_ms".into(),
            (started.elapsed().as_millis() as u64).into(),
        );
        // Every tokio task alive in the feeds runtime (slot tasks and anything else): must not grow.
        let runtime_tasks = tokio::runtime::Handle::try_current()
            .map(|handle| handle.metrics().num_alive_tasks())
            .unwrap_or(0);
        object.insert("runtime_tasks".into(), (runtime_tasks as u64).into());
        object.insert("shard_quotes".into(), counters.quotes.into());
        object.insert("shard_trades".into(), counters.trades.into());
        object.insert("shard_gaps".into(), counters.gaps.into());
        object.insert("ring_dropped".into(), counters.dropped_ring_full.into());
        object.insert("windows_live".into(), counters.windows_live.into());
        object.insert("shards_dead".into(), counters.shards_dead.into());
        object.insert(
            "spreads_out_of_bounds".into(),
            counters.spreads_out_of_bounds.into(),
        );
        object.insert("stale_cycle_ends".into(), counters.stale_cycle_ends.into());
        object.insert(
            "shard_latency_ns_p50".into(),
            counters.latency_ns_p50.into(),
        );
        object.insert(
            "shard_latency_ns_p99".into(),
            counters.latency_ns_p99.into(),
        );
        object.insert(
            "shard_latency_ns_p999".into(),
            counters.latency_ns_p999.into(),
        );
        object.insert(
            "shard_latency_ns_max".into(),
            counters.latency_ns_max.into(),
        );
        // The feeds threads' batch sleeps since the last line: how long a frame that arrived
        // during one waited in its socket at most (before its read, so not in the latency above).
        let sleeps = batch_sleeps.take_interval();
        object.insert("feeds_batch_sleeps".into(), batch_sleeps.total().into());
        object.insert("feeds_batch_sleep_ns_p50".into(), sleeps.p50_ns.into());
        object.insert("feeds_batch_sleep_ns_p99".into(), sleeps.p99_ns.into());
        object.insert("feeds_batch_sleep_ns_p999".into(), sleeps.p999_ns.into());
        object.insert("feeds_batch_sleep_ns_max".into(), sleeps.max_ns.into());
        object.insert("sink_kinds".into(), sink_kinds_json(&counters, sinks));
    }
    value.to_string()
}

/// Per record kind: what the shards emitted towards the sinks, and what the sinks (summed over
/// those configured) delivered to their plugins and lost. With one sink that takes the kind,
/// `emitted = delivered + lost + in flight`; spread and opportunity counts are published by the
/// shards once per bucket, so they lag up to a bucket while running and are exact at shutdown.
pub(crate) fn sink_kinds_json(
    counters: &tickflow_core::pipeline::PipelineCounters,
    sinks: &[tickflow_host::SinkStats],
) -> serde_json::Value {
    use tickflow_core::records::RecordKind;
    let kinds = [
        ("quote", RecordKind::Quote, counters.quotes),
        ("trade", RecordKind::Trade, counters.trades),
        ("spread", RecordKind::SpreadSample, counters.samples_emitted),
        (
            "opportunity",
            RecordKind::Opportunity,
            counters.opportunities_emitted,
        ),
        ("gap", RecordKind::Gap, counters.gaps),
    ];
    let mut object = serde_json::Map::new();
    for (name, kind, emitted) in kinds {
        let sum = |field: fn(&tickflow_host::SinkKindCounts) -> u64| -> u64 {
            sinks
                .iter()
                .map(|sink| field(&sink.kinds[kind as usize]))
                .sum()
        };
        object.insert(
            name.into(),
            serde_json::json!({
                "emitted": emitted,
                "delivered": sum(|counts| counts.delivered),
                "lost": sum(|counts| counts.lost),
            }),
        );
    }
    serde_json::Value::Object(object)
}
