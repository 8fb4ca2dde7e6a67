//! The `tickflow-load` binary: `venues` (serve the simulated venues), `storm` (reconnect storm
//! against a real engine process), `load` (CPU per quote and the highest rate without ring drops or
//! sink losses) and `real-rates` (CPU per message with every frame on its own over TLS, idle and at
//! set rates); `scenario` runs a load scenario from a file, with its report, plots and limits.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tickflow_core::config::WindowsConfig;
use tickflow_core::venue::Venue;
use tickflow_load::engine::{SinkOptions, default_engine_path};
use tickflow_load::load::{self, LoadSettings};
use tickflow_load::real_rates::{self, RealRatesSettings};
use tickflow_load::{EngineOptions, EngineProcess, FaultRates, engine_config_toml, faults};
use tickflow_sim::{SimConfig, SimVenues};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "tickflow-load",
    about = "Simulated venues, reconnect storms and load scenarios for tickflow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct VenueArgs {
    /// Symbols every venue lists (the first are BTC, ETH, SOL, ...; then synthetic T<n>-USDT).
    #[arg(long, default_value_t = 20)]
    symbols: usize,
    /// Best bid/ask updates per second per symbol per venue connection.
    #[arg(long, default_value_t = 10.0)]
    updates_per_s: f64,
    /// Trades per second per symbol per venue connection (when subscribed).
    #[arg(long, default_value_t = 1.0)]
    trades_per_s: f64,
    /// Tokio worker threads for the simulators.
    #[arg(long, default_value_t = 1)]
    sim_threads: usize,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the eight simulated venues on 127.0.0.1 until Ctrl-C.
    Venues {
        #[command(flatten)]
        venue: VenueArgs,
        /// First port (venues take this and the next seven); 0 = chosen by the OS.
        #[arg(long, default_value_t = 0)]
        port_base: u16,
        /// Write an engine config pointing at the simulators here.
        #[arg(long)]
        write_config: Option<PathBuf>,
        /// The written config discovers its universe from the simulators' instrument lists
        /// (`[universe]`) instead of listing the symbols.
        #[arg(long)]
        discover: bool,
        /// With --discover: the simulators add and remove a listing this often (0 = never).
        #[arg(long, default_value_t = 0)]
        listing_churn_interval_ms: u64,
        #[arg(long, default_value_t = 0.0)]
        disconnects_per_min: f64,
        #[arg(long, default_value_t = 0.0)]
        malformed_per_min: f64,
        #[arg(long, default_value_t = 0.0)]
        oversized_per_min: f64,
        #[arg(long, default_value_t = 0.0)]
        notices_per_min: f64,
        #[arg(long, default_value_t = 0.0)]
        stalls_per_min: f64,
        #[arg(long, default_value_t = 30_000)]
        stall_ms: u64,
    },
    /// Reconnect storm: simulators + a tickflow engine, M forced disconnects/min/venue for N s.
    Storm {
        #[command(flatten)]
        venue: VenueArgs,
        #[arg(long, default_value_t = 60)]
        duration_s: u64,
        #[arg(long, default_value_t = 100.0)]
        disconnects_per_min: f64,
        #[arg(long, default_value_t = 30)]
        warmup_s: u64,
        /// Seconds between RSS samples during the storm.
        #[arg(long, default_value_t = 10)]
        sample_every_s: u64,
        /// The tickflow binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
    },
    /// Offered load: engine CPU per quote at `--rate` quotes/s, or with `--find-max` the highest
    /// offered rate with zero ring drops and zero sink losses.
    Load {
        #[arg(long, default_value_t = 200_000)]
        rate: u64,
        /// Symbols every venue lists (all eight venues are simulated).
        #[arg(long, default_value_t = 200)]
        symbols: usize,
        /// Spread window length in 1-s buckets (`windows.buckets`; the engine's default, one hour).
        #[arg(long, default_value_t = WindowsConfig::default().buckets)]
        buckets: usize,
        /// A sink plugin's shared library, attached with policy drop_newest (the no-op:
        /// libtickflow_test_sink.so from `cargo build --release -p tickflow-test-sink`).
        #[arg(long)]
        sink: Option<PathBuf>,
        /// TOML lines for the sink's `[sinks.config]`.
        #[arg(long, default_value = "mode = \"noop\"")]
        sink_config: String,
        /// The sink's `ring_capacity_records` per shard (default: the engine's).
        #[arg(long)]
        sink_ring_capacity_records: Option<usize>,
        #[arg(long, default_value_t = 10)]
        duration_s: u64,
        #[arg(long, default_value_t = 3)]
        warmup_s: u64,
        #[arg(long)]
        find_max: bool,
        #[arg(long, default_value_t = 800_000)]
        max_rate: u64,
        #[arg(long, default_value_t = 1)]
        sim_threads: usize,
        #[arg(long, default_value_t = 1)]
        shards: usize,
        #[arg(long, default_value_t = 1)]
        engine_threads: usize,
        /// `engine.ring_capacity_records`: records each connection slot's ring to a shard holds
        /// (it absorbs a busy slot's bursts while its shard is descheduled).
        #[arg(long, default_value_t = EngineOptions::default().ring_capacity_records)]
        ring_capacity_records: usize,
        #[arg(long)]
        engine: Option<PathBuf>,
    },
    /// Engine CPU per message at real venues' rates: wss, every frame in its own TLS record and
    /// socket write; an idle phase, then one phase per aggregate rate.
    RealRates {
        /// Simulated venues (at least two, so spreads are computed).
        #[arg(long, value_delimiter = ',', default_value = "binance,okx")]
        venues: Vec<String>,
        #[arg(long, default_value_t = 100)]
        symbols: usize,
        /// Idle phase: every connection up and subscribed, keep-alive only.
        #[arg(long, default_value_t = 10)]
        idle_s: u64,
        /// Aggregate best bid/ask frames per second over every venue, one phase each.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,20000,50000")]
        rates: Vec<u64>,
        #[arg(long, default_value_t = 10)]
        phase_s: u64,
        /// Wait before measuring each phase.
        #[arg(long, default_value_t = 2)]
        settle_s: u64,
        #[arg(long, default_value_t = 1)]
        shards: usize,
        /// Threads of the engine's feeds runtime.
        #[arg(long, default_value_t = 1)]
        engine_threads: usize,
        #[arg(long, default_value_t = 1)]
        sim_threads: usize,
        /// The tickflow binary (default: next to this one).
        #[arg(long)]
        engine: Option<PathBuf>,
        /// `engine.shard_batch_wait_us` for the engine (default: the engine's default).
        #[arg(long)]
        shard_batch_wait_us: Option<u64>,
        /// `feeds.batch_wait_us` for the engine (default: the engine's default).
        #[arg(long)]
        feeds_batch_wait_us: Option<u64>,
    },
    /// Parquet sink: write throughput of the plugin path beside pyarrow and a bare ArrowWriter
    /// (same quote rows, zstd 1), and reading one pair's day from compacted spread files.
    ParquetBench(tickflow_load::parquet_bench::ParquetBenchArgs),
    /// A day of history for N pairs written through the Parquet sink plugin (spread samples,
    /// opportunity cycles, gaps) and compacted: the input of history-read and the dashboard.
    HistoryGen(tickflow_load::history_gen::HistoryGenArgs),
    /// Scale-out end to end: collector -> NATS JetStream -> aggregator beside one engine fed the
    /// same simulated venues (records/s, CPU, added latency), with a server restart or a cluster
    /// node kill mid-run (quotes stored against quotes applied).
    ScaleOut(tickflow_load::scale_out::ScaleOutArgs),
    /// tickflow-history's day_series over a history day: time to the first pair, total, RSS.
    HistoryRead(tickflow_load::history_gen::HistoryReadArgs),
    /// WebSocket broadcast: the ws-broadcast sink beside a Node `ws` server, same feed and
    /// clients (fast, then slow + dead): latency, CPU, RSS, frames and bytes per second.
    Broadcast(tickflow_load::broadcast::BroadcastArgs),
    /// Run a scenario file: simulated venues, the engine (child or --target), sinks, browsers,
    /// phases and limits; writes report.json, summary.txt and SVG plots. Exit 0: every limit
    /// held; 1: a limit failed (or the run failed or was interrupted); 2: bad scenario or usage.
    Scenario(ScenarioArgs),
    /// (Used by `broadcast`.) The ws-broadcast sink in its own process, fed over TCP.
    #[command(hide = true)]
    BroadcastServer(tickflow_load::broadcast::BroadcastServerArgs),
}

#[derive(clap::Args, Debug)]
struct ScenarioArgs {
    /// The scenario file (loadtest/scenarios/NAME.toml).
    file: PathBuf,
    /// Where report.json, summary.txt, the plots and the engine's config go (default:
    /// loadtest-report/<scenario name>-<unix time>).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Scale the measured phases to last this long together (unmeasured phases, a warm-up,
    /// keep their configured length).
    #[arg(long)]
    duration_s: Option<u64>,
    /// The tickflow binary (default: next to this one).
    #[arg(long, conflicts_with = "target")]
    engine: Option<PathBuf>,
    /// Drive an engine already running: its control-plane URL (http://127.0.0.1:8080).
    #[arg(long)]
    target: Option<String>,
    /// With --target: the engine's pid on this machine, for /proc sampling.
    #[arg(long, requires = "target")]
    target_pid: Option<u32>,
    /// Where the sink plugins' libraries are (default: next to this binary).
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
}

/// `tickflow-load scenario`: the exit code.
fn scenario_command(args: ScenarioArgs) -> i32 {
    use tickflow_load::scenario::{Scenario, run};
    let mut scenario = match Scenario::load(&args.file) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("error: {error}");
            return 2;
        }
    };
    if let Some(total_s) = args.duration_s {
        if total_s == 0 {
            eprintln!("error: --duration-s must be at least 1");
            return 2;
        }
        scenario.scale_to(total_s);
    }
    let report_dir = args.report.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        PathBuf::from("loadtest-report").join(format!("{}-{now}", scenario.name))
    });
    let options = run::RunOptions {
        report_dir: report_dir.clone(),
        duration_s: args.duration_s,
        engine: args.engine,
        target: args.target,
        target_pid: args.target_pid,
        plugins_dir: args.plugins_dir,
        scenario_path: args.file.display().to_string(),
    };
    // SIGINT / SIGTERM: the run stops at its next check and still writes its report. The
    // handlers are registered here, before the run starts (a signal from now on is caught), on a
    // runtime of their own that the signal thread owns and drives (`Runtime::block_on`: its
    // signal driver runs on that thread, whatever the other runtimes do).
    let cancel = CancellationToken::new();
    let signals = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the signal runtime: {error}");
            return 1;
        }
    };
    let handlers = {
        let _entered = signals.enter();
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        })
    };
    let (mut interrupt, mut terminate) = match handlers {
        Ok(handlers) => handlers,
        Err(error) => {
            eprintln!("error: cannot handle SIGINT and SIGTERM: {error}");
            return 1;
        }
    };
    let signal_thread = {
        let cancel = cancel.clone();
        std::thread::Builder::new()
            .name("load-signals".into())
            .spawn(move || {
                signals.block_on(async {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    eprintln!("scenario: interrupted; stopping and writing the report");
                    cancel.cancel();
                });
            })
    };
    if let Err(error) = &signal_thread {
        eprintln!("error: cannot start the signal thread: {error}");
        return 1;
    }
    let outcome = run::run(&scenario, &options, &cancel);
    cancel.cancel();
    if let Ok(thread) = signal_thread {
        let _ = thread.join();
    }
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("error: scenario {}: {error}", scenario.name);
            return 1;
        }
    };
    match tickflow_load::scenario::write_report(&outcome.record) {
        Ok((passed, summary)) => {
            print!("{summary}");
            println!("report: {}", report_dir.join("report.json").display());
            if passed { 0 } else { 1 }
        }
        Err(error) => {
            eprintln!("error: {error}");
            1
        }
    }
}

fn sim_config(venue: &VenueArgs) -> SimConfig {
    SimConfig {
        symbols: tickflow_load::symbol_names(venue.symbols),
        bbo_per_s_per_symbol: venue.updates_per_s,
        trades_per_s_per_symbol: venue.trades_per_s,
        tick_ms: 2,
        ..SimConfig::default()
    }
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the simulator runtime")
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tickflow_load=info")),
        )
        .init();
    match Cli::parse().command {
        Command::Venues {
            venue,
            port_base,
            write_config,
            discover,
            listing_churn_interval_ms,
            disconnects_per_min,
            malformed_per_min,
            oversized_per_min,
            notices_per_min,
            stalls_per_min,
            stall_ms,
        } => {
            let rates = FaultRates {
                disconnects_per_min,
                malformed_per_min,
                oversized_per_min,
                notices_per_min,
                stalls_per_min,
                stall_ms,
                http_429_per_min: 0.0,
            };
            let options = EngineOptions {
                discover,
                ..EngineOptions::default()
            };
            venues(
                venue,
                port_base,
                write_config,
                options,
                listing_churn_interval_ms,
                rates,
            )
        }
        Command::Storm {
            venue,
            duration_s,
            disconnects_per_min,
            warmup_s,
            sample_every_s,
            engine,
        } => storm(
            venue,
            duration_s,
            disconnects_per_min,
            warmup_s,
            sample_every_s,
            engine,
        ),
        Command::Load {
            rate,
            symbols,
            buckets,
            sink,
            sink_config,
            sink_ring_capacity_records,
            duration_s,
            warmup_s,
            find_max,
            max_rate,
            sim_threads,
            shards,
            engine_threads,
            ring_capacity_records,
            engine,
        } => {
            let sink = sink
                .map(|path| {
                    // Absolute, so the engine finds it whatever its working directory.
                    std::fs::canonicalize(&path)
                        .with_context(|| format!("--sink {}", path.display()))
                        .map(|path| SinkOptions {
                            path,
                            config_toml: sink_config,
                            ring_capacity_records: sink_ring_capacity_records,
                        })
                })
                .transpose()?;
            let settings = LoadSettings {
                symbols,
                duration_s,
                warmup_s,
                sim_threads,
                shards,
                engine_threads,
                ring_capacity_records,
                buckets,
                sink,
                engine: engine.unwrap_or_else(default_engine_path),
                ..LoadSettings::default()
            };
            load_command(&settings, find_max.then_some(max_rate), rate)
        }
        Command::RealRates {
            venues,
            symbols,
            idle_s,
            rates,
            phase_s,
            settle_s,
            shards,
            engine_threads,
            sim_threads,
            engine,
            shard_batch_wait_us,
            feeds_batch_wait_us,
        } => {
            let venues = venues
                .iter()
                .map(|name| {
                    Venue::from_name(name.trim()).with_context(|| {
                        format!("--venues: unknown venue {name:?} (binance, okx, bybit, ...)")
                    })
                })
                .collect::<anyhow::Result<Vec<Venue>>>()?;
            let settings = RealRatesSettings {
                venues,
                symbols,
                idle_s,
                rates_frames_per_s: rates,
                phase_s,
                settle_s,
                shards,
                engine_threads,
                sim_threads,
                engine: engine.unwrap_or_else(default_engine_path),
                shard_batch_wait_us,
                feeds_batch_wait_us,
                ..RealRatesSettings::default()
            };
            real_rates_command(&settings)
        }
        Command::ParquetBench(args) => Ok(tickflow_load::parquet_bench::command(&args)?),
        Command::HistoryGen(args) => Ok(tickflow_load::history_gen::gen_command(&args)?),
        Command::ScaleOut(args) => Ok(tickflow_load::scale_out::command(&args)?),
        Command::HistoryRead(args) => Ok(tickflow_load::history_gen::read_command(&args)?),
        Command::Broadcast(args) => tickflow_load::broadcast::command(&args)
            .map(|_| ())
            .map_err(Into::into),
        Command::Scenario(args) => std::process::exit(scenario_command(args)),
        Command::BroadcastServer(args) => {
            tickflow_load::broadcast::server_command(&args).map_err(Into::into)
        }
    }
}

fn real_rates_command(settings: &RealRatesSettings) -> anyhow::Result<()> {
    let runtime = runtime(settings.sim_threads)?;
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    // Ctrl-C: the run stops at its next check, stops the engine and reports what it measured.
    let watcher = runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("real-rates: interrupted; stopping");
            on_interrupt.cancel();
        }
    });
    let report = real_rates::run(settings, &runtime, &cancel);
    watcher.abort();
    let report = report.context("real-rates failed")?;
    print!("{}", report.table());
    println!("{}", report.to_json());
    Ok(())
}

fn venues(
    venue: VenueArgs,
    port_base: u16,
    write_config: Option<PathBuf>,
    options: EngineOptions,
    listing_churn_interval_ms: u64,
    rates: FaultRates,
) -> anyhow::Result<()> {
    let mut config = sim_config(&venue);
    config.listing_churn_interval_ms = listing_churn_interval_ms;
    if port_base != 0 {
        for (index, port) in config.ports.iter_mut().enumerate() {
            *port = port_base
                .checked_add(index as u16)
                .context("--port-base too high")?;
        }
    }
    let runtime = runtime(venue.sim_threads)?;
    runtime.block_on(async {
        let sim = SimVenues::start(config)
            .await
            .context("cannot bind the simulated venues")?;
        for venue in Venue::ALL {
            let url = if venue == Venue::Kucoin {
                sim.bullet_url()
            } else {
                sim.url(venue)
            };
            println!("{:<8} {}", venue.name(), url.unwrap_or_default());
        }
        if let Some(path) = write_config {
            std::fs::write(&path, engine_config_toml(&sim, &options))
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "engine config: {} (tickflow run --config {})",
                path.display(),
                path.display()
            );
        }
        println!("serving until Ctrl-C; faults: {rates:?}");
        let cancel = CancellationToken::new();
        let counts = {
            let fault_run = faults::run(&sim, rates, cancel.clone());
            tokio::pin!(fault_run);
            tokio::select! {
                counts = &mut fault_run => counts,
                _ = tokio::signal::ctrl_c() => {
                    cancel.cancel();
                    fault_run.await
                }
            }
        };
        println!("faults injected: {counts:?}");
        sim.shutdown().await;
        anyhow::Ok(())
    })
}

fn percent(start: u64, end: u64) -> f64 {
    if start == 0 {
        0.0
    } else {
        (end as f64 - start as f64) * 100.0 / start as f64
    }
}

fn storm(
    venue: VenueArgs,
    duration_s: u64,
    disconnects_per_min: f64,
    warmup_s: u64,
    sample_every_s: u64,
    engine: Option<PathBuf>,
) -> anyhow::Result<()> {
    let runtime = runtime(venue.sim_threads)?;
    let sim = runtime.block_on(SimVenues::start(sim_config(&venue)))?;
    let options = EngineOptions {
        ring_capacity_records: 4_096,
        max_connection_slots: Some(16),
        ..EngineOptions::default()
    };
    let engine_path = engine.unwrap_or_else(default_engine_path);
    let process = EngineProcess::start(&engine_path, &engine_config_toml(&sim, &options), true)?;
    eprintln!(
        "storm: engine pid {} ({}); warming up {warmup_s} s",
        process.pid(),
        engine_path.display()
    );
    let warm = process.wait_stats(
        "all slots connected with data",
        Duration::from_secs(30),
        |stats| stats["connected"] == stats["slots"] && stats["quotes"].as_u64().unwrap_or(0) > 0,
    )?;
    let slots = warm["slots"].as_u64().unwrap_or(0);
    // The baseline is the engine after its first reconnect: one forced disconnect per venue,
    // then wait until every slot is back with data.
    for venue in &sim.config().venues {
        sim.control(*venue).disconnect_all();
    }
    process.wait_stats(
        "every slot reconnected once",
        Duration::from_secs(30),
        |stats| {
            stats["reconnects"].as_u64().unwrap_or(0) >= slots
                && stats["connected"].as_u64() == Some(slots)
        },
    )?;
    std::thread::sleep(Duration::from_secs(warmup_s));
    let start_stats = process.wait_stats("a stats line", Duration::from_secs(10), |_| true)?;
    let start_sample = process.sample()?;
    eprintln!(
        "storm: {duration_s} s at {disconnects_per_min} disconnects/min/venue; start {start_stats}"
    );
    let cancel = CancellationToken::new();
    let rates = FaultRates {
        disconnects_per_min,
        ..FaultRates::default()
    };
    // RSS every `sample_every_s` during the storm, to tell a trend from first-touch noise.
    let mut rss_kb_samples: Vec<u64> = vec![start_sample.rss_kb];
    let counts = runtime.block_on(async {
        let fault_run = faults::run(&sim, rates, cancel.clone());
        tokio::pin!(fault_run);
        let end = tokio::time::Instant::now() + Duration::from_secs(duration_s);
        let mut sample_tick = tokio::time::interval(Duration::from_secs(sample_every_s.max(1)));
        sample_tick.tick().await;
        loop {
            tokio::select! {
                counts = &mut fault_run => break counts,
                _ = tokio::time::sleep_until(end) => {
                    cancel.cancel();
                    break fault_run.await;
                }
                _ = sample_tick.tick() => {
                    if let Ok(sample) = process.sample() {
                        rss_kb_samples.push(sample.rss_kb);
                    }
                }
            }
        }
    });
    // Let the last reconnects finish, then take the end sample.
    let end_stats =
        process.wait_stats("all slots reconnected", Duration::from_secs(30), |stats| {
            stats["connected"].as_u64() == Some(slots)
        })?;
    let end_sample = process.sample()?;
    let exit_code = process.terminate()?;
    runtime.block_on(sim.shutdown());
    let field = |stats: &serde_json::Value, name: &str| stats[name].as_u64().unwrap_or(0);
    let summary = serde_json::json!({
        "duration_s": duration_s,
        "disconnects_per_min_per_venue": disconnects_per_min,
        "disconnects_forced": counts.disconnects,
        "disconnects_made": counts.disconnects_made,
        "reconnects": field(&end_stats, "reconnects") - field(&start_stats, "reconnects"),
        "rss_kb_start": start_sample.rss_kb,
        "rss_kb_end": end_sample.rss_kb,
        "rss_kb_max": rss_kb_samples.iter().copied().max().unwrap_or(0).max(end_sample.rss_kb),
        "rss_kb_samples": rss_kb_samples,
        "rss_sample_every_s": sample_every_s,
        "rss_growth_pct": (percent(start_sample.rss_kb, end_sample.rss_kb) * 100.0).round() / 100.0,
        "threads_start": start_sample.threads,
        "threads_end": end_sample.threads,
        "tasks_start": field(&start_stats, "tasks"),
        "tasks_end": field(&end_stats, "tasks"),
        "runtime_tasks_start": field(&start_stats, "runtime_tasks"),
        "runtime_tasks_end": field(&end_stats, "runtime_tasks"),
        "symbols_start": field(&start_stats, "symbols"),
        "symbols_end": field(&end_stats, "symbols"),
        "subscriptions_start": field(&start_stats, "subscriptions"),
        "subscriptions_end": field(&end_stats, "subscriptions"),
        "resume_ms_p50": field(&end_stats, "resume_ms_p50"),
        "resume_ms_p99": field(&end_stats, "resume_ms_p99"),
        "ring_drops": field(&end_stats, "ring_dropped"),
        "engine_exit_code": exit_code,
    });
    println!("{summary}");
    Ok(())
}

fn load_command(
    settings: &LoadSettings,
    find_max_up_to: Option<u64>,
    rate: u64,
) -> anyhow::Result<()> {
    let runtime = runtime(settings.sim_threads)?;
    eprintln!(
        "load: {} symbols × {} venues, {} buckets, {} shard(s), {} feeds thread(s), rings of {} records, sink {}; load average (1 min) {:?}",
        settings.symbols,
        Venue::ALL.len(),
        settings.buckets,
        settings.shards,
        settings.engine_threads,
        settings.ring_capacity_records,
        settings
            .sink
            .as_ref()
            .map_or_else(|| "none".to_owned(), |sink| sink.path.display().to_string()),
        tickflow_load::proc_stat::load_average_1m()
    );
    match find_max_up_to {
        Some(max_rate) => {
            let report = load::find_max(settings, &runtime, max_rate).context("load failed")?;
            print!("{}", load::steps_table(&report.steps));
            println!("{}", report.to_json());
        }
        None => {
            let step = load::run_step(settings, &runtime, rate).context("load failed")?;
            print!("{}", load::steps_table(std::slice::from_ref(&step)));
            println!("{}", step.to_json());
        }
    }
    Ok(())
}
