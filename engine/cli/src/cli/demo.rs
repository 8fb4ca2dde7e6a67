//! `tickflow demo`: the engine against in-process simulated venues for all eight protocols over
//! loopback sockets: no network, no config. Prints what runs and a live summary (quotes/s per
//! venue, reconnects, top spreads by pair); cuts one venue's connection now and then to show a
//! reconnect; stops cleanly on Ctrl-C (or after `--duration-s`). Writes its history as Parquet
//! through the Parquet sink plugin found next to the binary, under `--data-dir` (printed), and
//! serves live data (the ws-broadcast sink) and Prometheus metrics (the metrics sink), both found
//! next to the binary too, on loopback: the default port when free, else one the OS picks
//! (printed), so demos can run side by side. With `--seed-history-hours N` it first writes N
//! simulated hours ending now (tickflow-sim's `SeedHistory`) through the same Parquet sink
//! plugin, so the dashboard's history view has a day with cycles on a first run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tickflow::budget::memory_budget;
use tickflow::config::Config;
use tickflow_core::pipeline::Pipeline;
use tickflow_core::records::VenueId;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::{VENUE_COUNT, Venue};
use tickflow_feed::Feeds;
use tickflow_feed::config::Channel;
use tickflow_host::SinkHost;
use tickflow_sim::{SimConfig, SimVenues};

use super::process::{Signals, init_logging};
use super::run::sink_outbounds;

const DEMO_SYMBOLS: [&str; 8] = [
    "BTC-USDT",
    "ETH-USDT",
    "SOL-USDT",
    "XRP-USDT",
    "DOGE-USDT",
    "BNB-USDT",
    "ADA-USDT",
    "LTC-USDT",
];

/// Seconds between the simulated venues' listing changes and the engine's universe refreshes.
const DEMO_REFRESH_S: u64 = 60;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Stop after this many seconds (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub duration_s: u64,
    /// Seconds between summaries.
    #[arg(long, default_value_t = 5)]
    pub summary_every_s: u64,
    /// Best bid/ask updates per second per symbol per venue.
    #[arg(long, default_value_t = 20.0)]
    pub updates_per_s: f64,
    /// Cut one venue's connection every this many seconds to show a reconnect (0 = never).
    #[arg(long, default_value_t = 20)]
    pub cut_every_s: u64,
    /// Where the history (Parquet files of every dataset, written by the Parquet sink plugin)
    /// goes; relative to the working directory.
    #[arg(long, default_value = "tickflow-data")]
    pub data_dir: std::path::PathBuf,
    /// Write no history.
    #[arg(long)]
    pub no_history: bool,
    /// Before going live, write this many simulated hours of history ending now (spread samples
    /// every 15 s for every venue pair, and their opportunity cycles) through the Parquet sink,
    /// so the dashboard's history view is not empty on a first run (0 = none; at most 24).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=24))]
    pub seed_history_hours: u32,
}

/// Seconds between two seeded spread samples of a pair: 448 pairs × 240 an hour, about 110 000
/// rows an hour, written in about a second per hour by a release build.
const SEED_INTERVAL_S: u64 = 15;
/// Records in the seeding sink's ring.
const SEED_RING_RECORDS: usize = 65_536;
/// Longest the seeding waits for room in the sink's ring before giving up on the seed.
const SEED_STALL: Duration = Duration::from_secs(30);

/// The Parquet sink's library, next to the running binary (where `cargo build` puts both).
const PARQUET_PLUGIN_FILE: &str = "libtickflow_parquet.so";
/// The live-data sink's library (`plugins/ws-broadcast`), next to the running binary.
const WS_BROADCAST_PLUGIN_FILE: &str = "libtickflow_ws_broadcast.so";
/// The Prometheus exporter's library (`plugins/metrics`), next to the running binary.
const METRICS_PLUGIN_FILE: &str = "libtickflow_metrics.so";

/// The control plane's default port (the dashboard; the broadcast sink admits its origin).
pub(crate) const DEFAULT_HTTP_PORT: u16 = 8080;
/// The ws-broadcast sink's default port.
const DEFAULT_WS_PORT: u16 = 8081;
/// The metrics sink's default port.
const DEFAULT_METRICS_PORT: u16 = 9464;

/// The directory of the running binary (where `cargo build` also puts the plugins).
fn binary_dir() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default()
}

/// `file` next to the binary, or a sentence saying how to build it (the demo prints it and goes
/// on without that sink).
fn plugin_next_to_binary(file: &str, package: &str) -> Result<std::path::PathBuf, String> {
    let dir = binary_dir();
    let plugin = dir.join(file);
    if plugin.is_file() {
        Ok(plugin)
    } else {
        Err(format!(
            "{file} not found next to this binary (in {}): build it with `cargo build -p {package}` (the same profile as tickflow)",
            dir.display()
        ))
    }
}

/// A loopback port for a demo server: `default_port` when it is free, else `None` (the server
/// then binds port 0, the OS picks, and the real port is read back from what it publishes).
/// Probing releases the port at once; a server that loses the race fails to start and, being
/// optional, is skipped with a log line.
fn default_port_if_free(default_port: u16) -> Option<u16> {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, default_port))
        .ok()
        .map(|_| default_port)
}

/// A concrete loopback port for a server whose port must be known before it starts (the
/// control plane: the broadcast sink admits the dashboard's origin): `default_port` when free,
/// else one the OS hands out (bound and released at once). `None` only when the OS has no
/// loopback port to give.
pub(crate) fn loopback_port_or_ephemeral(default_port: u16) -> Option<u16> {
    default_port_if_free(default_port).or_else(|| {
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .ok()
            .map(|address| address.port())
    })
}

/// The live servers the demo runs beside the history: the broadcast and metrics sinks (when
/// their libraries are there) and the port of the control plane.
struct LiveServers {
    ws_plugin: Option<std::path::PathBuf>,
    metrics_plugin: Option<std::path::PathBuf>,
    /// `None`: the default was busy, the sink binds port 0.
    ws_port: Option<u16>,
    metrics_port: Option<u16>,
    http_port: u16,
}

fn live_servers() -> LiveServers {
    let found = |file: &str, package: &str, what: &str| {
        plugin_next_to_binary(file, package)
            .map_err(|reason| println!("{what}: {reason}; running without it"))
            .ok()
    };
    LiveServers {
        ws_plugin: found(
            WS_BROADCAST_PLUGIN_FILE,
            "tickflow-ws-broadcast",
            "live data (WebSocket)",
        ),
        metrics_plugin: found(
            METRICS_PLUGIN_FILE,
            "tickflow-metrics",
            "metrics (Prometheus)",
        ),
        ws_port: default_port_if_free(DEFAULT_WS_PORT),
        metrics_port: default_port_if_free(DEFAULT_METRICS_PORT),
        http_port: loopback_port_or_ephemeral(DEFAULT_HTTP_PORT).unwrap_or(DEFAULT_HTTP_PORT),
    }
}

/// The `[[sinks]]` entries of the live servers: optional (one that cannot bind is logged and
/// skipped), small client limits (the stated memory stays small), loopback only.
fn live_sinks_toml(live: &LiveServers) -> String {
    let quoted =
        |path: &std::path::Path| toml::Value::String(path.display().to_string()).to_string();
    let mut text = String::new();
    if let Some(plugin) = &live.ws_plugin {
        text.push_str(&format!(
            "[[sinks]]\nname = \"live\"\npath = {}\npolicy = \"conflate\"\noptional = true\n[sinks.config]\n\
             bind = \"127.0.0.1:{}\"\nclients_max = 64\nchannels_max = 512\n\
             allowed_origins = [\"http://127.0.0.1:{http}\", \"http://localhost:{http}\"]\n",
            quoted(plugin),
            live.ws_port.unwrap_or(0),
            http = live.http_port
        ));
    }
    if let Some(plugin) = &live.metrics_plugin {
        text.push_str(&format!(
            "[[sinks]]\nname = \"metrics\"\npath = {}\noptional = true\n[sinks.config]\nbind = \"127.0.0.1:{}\"\n",
            quoted(plugin),
            live.metrics_port.unwrap_or(0)
        ));
    }
    text
}

/// One printed line per live server that runs: its URL as the sink published it, and whether
/// the default port was busy.
fn print_live_endpoints(sink_host: &SinkHost, live: &LiveServers) {
    let endpoints = sink_host.endpoints();
    let url_of = |sink: &str, name: &str| {
        endpoints
            .iter()
            .find(|endpoint| endpoint.sink == sink && endpoint.name == name)
            .map(|endpoint| endpoint.url.clone())
    };
    let busy = |chosen: Option<u16>, default_port: u16| {
        if chosen.is_none() {
            format!(" (port {default_port} was busy: the OS picked this one)")
        } else {
            String::new()
        }
    };
    if live.ws_plugin.is_some() {
        match url_of("live", "ws") {
            Some(url) => println!(
                "  live     {url}{} — WebSocket: send {{\"op\":\"subscribe\",\"channels\":[\"quotes:*\",\"spreads:*\",\"opportunities\"]}} (plugins/ws-broadcast/README.md)",
                busy(live.ws_port, DEFAULT_WS_PORT)
            ),
            None => println!(
                "live data (WebSocket): the ws-broadcast sink did not start (see the log above); running without it"
            ),
        }
    }
    if live.metrics_plugin.is_some() {
        match url_of("metrics", "metrics") {
            Some(url) => println!(
                "  metrics  {url}{} — Prometheus text format (plugins/metrics/README.md)",
                busy(live.metrics_port, DEFAULT_METRICS_PORT)
            ),
            None => println!(
                "metrics (Prometheus): the metrics sink did not start (see the log above); running without it"
            ),
        }
    }
}

/// The demo's history: the Parquet sink plugin writing under `root`.
struct History {
    plugin: std::path::PathBuf,
    root: std::path::PathBuf,
}

/// The history the demo writes, or why not (printed; the demo goes on without it).
fn history(args: &DemoArgs) -> Result<Option<History>, String> {
    if args.no_history {
        return Ok(None);
    }
    let plugin = plugin_next_to_binary(PARQUET_PLUGIN_FILE, "tickflow-parquet")
        .map_err(|reason| format!("{reason}; running without history"))?;
    let root = std::path::absolute(&args.data_dir).unwrap_or_else(|_| args.data_dir.clone());
    Ok(Some(History { plugin, root }))
}

/// The `[[sinks]]` entry of the history: files committed every 10 s so they can be opened while
/// the demo runs, every spread sample kept (the demo's universe is small). Optional: a plugin
/// that fails to start (another demo writing the same directory) is logged and skipped.
fn history_sink_toml(history: &History) -> String {
    let quoted =
        |path: &std::path::Path| toml::Value::String(path.display().to_string()).to_string();
    format!(
        "[[sinks]]\nname = \"history\"\npath = {}\noptional = true\n[sinks.config]\nroot = {}\nroll_age_s = 10\nspreads_every_n_buckets = 1\n",
        quoted(&history.plugin),
        quoted(&history.root)
    )
}

/// Writes `hours` simulated hours ending now under the history's root through the Parquet sink
/// plugin (its own sink host, shut down before the live one starts: one writer at a time),
/// printing progress. Pairs are the demo symbols' ordered venue pairs; cycles are at the demo's
/// threshold. Returns a line saying what was written.
fn seed_history(history: &History, hours: u32, threshold_bp: f64) -> anyhow::Result<String> {
    use tickflow_core::outbound::OutRecord;
    let started = Instant::now();
    let registry = Arc::new(SymbolRegistry::new(DEMO_SYMBOLS.len()));
    let mut symbols = Vec::with_capacity(DEMO_SYMBOLS.len());
    for name in DEMO_SYMBOLS {
        symbols.push(registry.register(name)?);
    }
    let venues: Vec<VenueId> = Venue::ALL.iter().map(|venue| venue.id()).collect();
    let now_ns = tickflow_core::record::now_ns();
    let from_ns = now_ns - i64::from(hours) * 3_600 * 1_000_000_000;
    let mut seed = tickflow_sim::SeedHistory::new(
        &symbols,
        &venues,
        from_ns,
        now_ns,
        SEED_INTERVAL_S,
        threshold_bp,
    );
    let quoted =
        |path: &std::path::Path| toml::Value::String(path.display().to_string()).to_string();
    let mut sink = tickflow_host::SinkConfig::new("history-seed", &history.plugin);
    sink.policy = tickflow_host::SinkPolicy::Block;
    sink.ring_capacity_records = SEED_RING_RECORDS;
    sink.config = toml::from_str(&format!(
        "root = {}\nspreads_every_n_buckets = 1\n",
        quoted(&history.root)
    ))?;
    let mut host = SinkHost::start(&[sink], 1, Some(Arc::clone(&registry)))?;
    let mut outbound = host
        .take_outbounds()
        .pop()
        .ok_or_else(|| anyhow::anyhow!("the seeding sink has no lane"))?;
    println!(
        "  seeding  {hours} simulated hours of history ({} pairs, a sample every {SEED_INTERVAL_S} s) under {}",
        seed.pairs(),
        history.root.display()
    );
    let total_buckets = seed.buckets_left().max(1);
    let per_hour = (3_600 / SEED_INTERVAL_S).max(1);
    let mut bucket = Vec::with_capacity(seed.pairs() * 2);
    let (mut written, mut done_buckets, mut cycles) = (0u64, 0u64, 0u64);
    while seed.next_bucket(&mut bucket) {
        // Paced by the lane's room: a bucket goes in whole, nothing is dropped.
        let waiting = Instant::now();
        while outbound.free_slots_hint() < bucket.len() {
            outbound.flush();
            if waiting.elapsed() > SEED_STALL {
                anyhow::bail!("the Parquet sink took no records for {SEED_STALL:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for record in bucket.drain(..) {
            if let OutRecord::Opportunity(event) = &record
                && event.kind == tickflow_core::records::OPPORTUNITY_START
            {
                cycles += 1;
            }
            outbound.emit(&record);
            written += 1;
        }
        outbound.flush();
        done_buckets += 1;
        if done_buckets % per_hour == 0 {
            println!(
                "  seeding  {:>3.0} % ({written} records)",
                done_buckets as f64 * 100.0 / total_buckets as f64
            );
        }
    }
    drop(outbound);
    let stats = host.shutdown();
    let lost: u64 = stats.iter().map(|sink| sink.lost()).sum();
    Ok(format!(
        "  seeded   {written} records ({cycles} opportunity cycles at {threshold_bp} bp) in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if lost > 0 {
            format!(", {lost} lost (see the log)")
        } else {
            String::new()
        }
    ))
}

fn demo_config(
    sim: &SimVenues,
    history: Option<&History>,
    live: &LiveServers,
) -> anyhow::Result<Config> {
    let mut config = Config::from_toml_str(&format!(
        "[engine]\nmax_symbols = 64\nmax_connection_slots = 16\n\
         [windows]\nbucket_ms = 1000\nbuckets = 60\nmax_windows = 4096\nthresholds_bp = [20.0]\nsnapshot_interval_ms = 1000\n\
         warmup_buckets = 5\n[universe]\nmax_symbols = 40\n{}{}",
        history.map(history_sink_toml).unwrap_or_default(),
        live_sinks_toml(live)
    ))?;
    config.feeds = sim.feeds_config();
    // With history, windows start from the last window length of it (what an earlier demo run
    // wrote), as `tickflow run` does with `[windows] warm_start`.
    config.windows.warm_start = history.is_some();
    // The universe is discovered from the simulated venues' instrument lists, and refreshed as
    // their listings change.
    config.feeds.symbols.clear();
    config.universe.refresh_interval_s = DEMO_REFRESH_S;
    for venue in Venue::ALL {
        config.universe.venue.insert(
            venue.name().to_string(),
            tickflow_universe::UniverseVenueConfig {
                url: sim.rest_url(venue),
            },
        );
    }
    // Bybit and MEXC list 1000PEPE, priced per 1 000 PEPE.
    for venue in ["bybit", "mexc"] {
        config
            .universe
            .aliases
            .push(tickflow_universe::AliasConfig {
                venue: venue.to_string(),
                venue_base: "1000PEPE".to_string(),
                base: "PEPE".to_string(),
                multiplier: 1000.0,
            });
    }
    config.feeds.channels = vec![Channel::Bbo, Channel::Trades];
    config.feeds.backoff_base_ms = 200;
    config.feeds.backoff_cap_ms = 5_000;
    config.feeds.stats_interval_ms = 0;
    config.validate()?;
    Ok(config)
}

pub fn run(args: DemoArgs) -> anyhow::Result<u8> {
    let _log_guard = init_logging("warn");
    let sim_config = SimConfig {
        symbols: DEMO_SYMBOLS
            .iter()
            .map(|symbol| symbol.to_string())
            .collect(),
        bbo_per_s_per_symbol: args.updates_per_s.max(0.1),
        trades_per_s_per_symbol: (args.updates_per_s / 10.0).max(0.1),
        listing_churn_interval_ms: DEMO_REFRESH_S * 1000,
        ..SimConfig::default()
    };
    // The simulator and the feeds share one small runtime; the shards run on their own threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sim = runtime.block_on(SimVenues::start(sim_config))?;
    let history = history(&args).unwrap_or_else(|reason| {
        println!("history: {reason}");
        None
    });
    let live = live_servers();
    let config = Arc::new(demo_config(&sim, history.as_ref(), &live)?);
    match (&history, args.seed_history_hours) {
        (Some(history), hours) if hours > 0 => {
            let threshold_bp = config
                .windows
                .thresholds_bp
                .first()
                .copied()
                .unwrap_or(20.0);
            match seed_history(history, hours, threshold_bp) {
                Ok(line) => println!("{line}"),
                Err(error) => println!("history: seeding failed: {error:#}; going on without it"),
            }
        }
        (None, hours) if hours > 0 => {
            println!("history: none is written, so --seed-history-hours {hours} is ignored");
        }
        _ => {}
    }
    let registry = Arc::new(SymbolRegistry::new(config.engine.max_symbols));
    // The history sink (if any) through the plugin host, as `tickflow run` wires `[[sinks]]`.
    let mut sink_host = SinkHost::start(
        &config.sinks,
        config.shard_count(),
        Some(Arc::clone(&registry)),
    )?;
    let history_running = sink_host.stats().iter().any(|sink| sink.name == "history");
    let outbounds = if config.sinks.is_empty() {
        sink_outbounds(&config)
    } else {
        sink_host.take_outbounds()
    };
    let mut pipeline = Pipeline::start(&config.engine, &config.windows, outbounds)?;
    // Memory shedding's request (a critical memory alert): the shards apply the window cap, the
    // universe refresh below holds growth back.
    let shed = pipeline.shed_control();

    println!(
        "tickflow demo: the engine against simulated venues on 127.0.0.1 (no network, no config)"
    );
    for venue in Venue::ALL {
        let endpoint = if venue == Venue::Kucoin {
            format!(
                "{} (bullet-public, then its WebSocket)",
                sim.bullet_url().unwrap_or_default()
            )
        } else {
            sim.url(venue).unwrap_or_default()
        };
        println!("  {:<8} {endpoint}", venue.name());
    }
    println!(
        "  symbols  discovered from each venue's instrument list (REST, as on the real venues); the simulators list {} and tricky instruments, and add and remove listings over time",
        DEMO_SYMBOLS.join(" ")
    );
    println!(
        "  load     {} best bid/ask updates/s per symbol per venue, prices move together with injected dislocations",
        args.updates_per_s
    );
    if let Some(history) = &history {
        if history_running {
            println!(
                "  history  Parquet files (quotes, trades, spreads, opportunities, gaps) under {} — committed every 10 s; open them with pyarrow, polars or DuckDB (plugins/parquet/README.md)",
                history.root.display()
            );
        } else {
            println!(
                "history: the Parquet sink did not start (see the log above); running without history"
            );
        }
    }
    print_live_endpoints(&sink_host, &live);
    let budget = memory_budget(&config);
    println!("{budget}");
    println!(
        "Every {} s: quotes/s per venue, reconnects, top spreads by pair.{} Ctrl-C stops.",
        args.summary_every_s.max(1),
        if args.cut_every_s > 0 {
            format!(
                " Every {} s one venue's connection is cut to show a reconnect.",
                args.cut_every_s
            )
        } else {
            String::new()
        }
    );
    println!("Real venues: tickflow run --config config/live.toml");
    // The control plane over this engine and its history (a busy port is reported, not fatal).
    let mut control_config = (*config).clone();
    control_config.http.history_dir = history.as_ref().map(|history| history.root.clone());
    let control =
        match super::control::start_for_engine(&control_config, &pipeline, &registry, &budget) {
            Ok(control) => control,
            Err(error) => {
                println!("control plane: not started: {error:#}");
                None
            }
        };
    if let Some((control, _)) = &control {
        println!(
            "  dashboard {}/  (API: engine/control/API.md)",
            control.url()
        );
    }
    let board = control.as_ref().map(|(_, board)| Arc::clone(board));

    let result = runtime.block_on(async {
        let (mut refresher, _) =
            tickflow::universe::Refresher::start(Arc::clone(&config), &registry).await?;
        println!(
            "  universe discovered from the venues' instrument lists: {} (refreshed every {DEMO_REFRESH_S} s as listings change)",
            tickflow::universe::one_line(refresher.universe())
        );
        // WARM START: windows seeded from the Parquet history before any record ([windows]
        // warm_start); a missing or damaged history is a warning.
        if let Some(report) =
            tickflow::warm_start::warm_start_if_configured(&config, &registry, &mut pipeline)
        {
            println!(
                "  warm start: {} windows seeded from {} history samples in {} files ({} ms)",
                report.windows_seeded, report.seed_samples, report.files, report.elapsed_ms
            );
        }
        let mut feeds = Feeds::start(&config.feeds, &config.engine, Arc::clone(&registry), || pipeline.take_producer())?;
        // What the metrics sink's `metrics_snapshot` (ABI 1.2) exports of the engine, as in `run`.
        let engine_metrics = Arc::new(tickflow::metrics::EngineMetrics::new(
            feeds.slots(),
            pipeline.shard_counters_handle(),
            Arc::clone(&registry),
            budget.clone(),
        ));
        sink_host.set_engine_metrics(engine_metrics.clone());
        if let Some(board) = &board {
            board.publish(&feeds, &pipeline, Some(&sink_host));
            board.set_phase(tickflow_control::Phase::Running);
        }
        let mut control_tick = tokio::time::interval(Duration::from_millis(250));
        let refresh_every = Duration::from_secs(DEMO_REFRESH_S);
        let mut refresh_tick = tokio::time::interval_at(tokio::time::Instant::now() + refresh_every, refresh_every);
        let mut signals = Signals::new()?;
        let started = Instant::now();
        let mut summary_tick = tokio::time::interval(Duration::from_secs(args.summary_every_s.max(1)));
        summary_tick.tick().await;
        let cut_period = Duration::from_secs(args.cut_every_s.max(1));
        let mut cut_tick = tokio::time::interval_at(tokio::time::Instant::now() + cut_period, cut_period);
        let mut next_cut = 0usize;
        let mut previous_quotes = [0u64; VENUE_COUNT];
        let mut previous_at = Instant::now();
        let end = (args.duration_s > 0).then(|| tokio::time::Instant::now() + Duration::from_secs(args.duration_s));
        loop {
            tokio::select! {
                name = signals.next() => {
                    println!("{name}: stopping");
                    break;
                }
                _ = async { tokio::time::sleep_until(end.expect("guarded by is_some")).await }, if end.is_some() => {
                    println!("--duration-s reached: stopping");
                    break;
                }
                _ = refresh_tick.tick() => refresher.begin(),
                round = refresher.next() => {
                    let finished = refresher.finish(round, &registry, &mut feeds, shed.universe_growth_paused());
                    engine_metrics.set_slots(feeds.slots());
                    match finished {
                        Ok(refreshed) => println!(
                            "universe refreshed: {} symbols, +{} / -{} listings, {} connections re-subscribed, {} added",
                            refreshed.symbols,
                            refreshed.applied.listings_added,
                            refreshed.applied.listings_retired,
                            refreshed.feeds.slots_changed,
                            refreshed.feeds.slots_added
                        ),
                        Err(error) => println!("universe refresh failed: {error:#}"),
                    }
                }
                _ = cut_tick.tick(), if args.cut_every_s > 0 => {
                    let venue = Venue::ALL[next_cut % VENUE_COUNT];
                    next_cut += 1;
                    println!("[{:>4} s] cutting {venue}'s connection", started.elapsed().as_secs());
                    sim.control(venue).disconnect_all();
                }
                _ = control_tick.tick(), if board.is_some() => {
                    if let Some(board) = &board {
                        board.publish(&feeds, &pipeline, Some(&sink_host));
                    }
                }
                _ = summary_tick.tick() => {
                    print_summary(&feeds, &pipeline, &registry, started, &mut previous_quotes, &mut previous_at);
                }
            }
        }
        if let Some(board) = &board {
            board.set_phase(tickflow_control::Phase::Draining);
        }
        let finished = tokio::select! {
            finished = feeds.shutdown() => finished,
            name = signals.next() => {
                println!("second {name}: exiting now");
                std::process::exit(130);
            }
        };
        sim.shutdown().await;
        anyhow::Ok(finished)
    });
    runtime.shutdown_timeout(Duration::from_millis(config.feeds.shutdown_deadline_ms));
    if let Some((control, _)) = control {
        control.shutdown();
    }
    let report = pipeline.shutdown();
    let sinks = sink_host.shutdown();
    let finished = result?;
    println!(
        "stopped: {} quotes, {} trades, {} gap records through the shards; {} left in rings; feeds stopped in time: {finished}",
        report.counters.quotes,
        report.counters.trades,
        report.counters.gaps,
        report.records_left_in_rings
    );
    if let (Some(history), Some(sink)) =
        (&history, sinks.iter().find(|sink| sink.name == "history"))
    {
        println!(
            "history: {} rows written under {} ({} dropped); e.g. python3 -c \"import pyarrow.dataset as ds; print(ds.dataset('{}/quotes', partitioning='hive').to_table())\"",
            sink.plugin_records_written,
            history.root.display(),
            sink.plugin_records_dropped,
            history.root.display()
        );
    }
    Ok(0)
}

fn print_summary(
    feeds: &Feeds,
    pipeline: &Pipeline,
    registry: &SymbolRegistry,
    started: Instant,
    previous_quotes: &mut [u64; VENUE_COUNT],
    previous_at: &mut Instant,
) {
    let totals = feeds.totals();
    let elapsed_s = previous_at.elapsed().as_secs_f64().max(0.001);
    *previous_at = Instant::now();
    let mut line = format!("[{:>4} s] quotes/s", started.elapsed().as_secs());
    for venue in Venue::ALL {
        let quotes = totals.quotes_by_venue[venue.index()];
        let rate = (quotes - previous_quotes[venue.index()]) as f64 / elapsed_s;
        previous_quotes[venue.index()] = quotes;
        line.push_str(&format!(" {}={rate:.0}", venue.name()));
    }
    println!("{line}");
    let counters = pipeline.counters();
    println!(
        "         reconnects {} (resume p50 {} ms, p99 {} ms), decode errors {}, ring drops {}, windows {}, opportunities {}",
        totals.reconnects,
        totals.resume_ms_p50,
        totals.resume_ms_p99,
        totals.decode_errors,
        counters.dropped_ring_full,
        counters.windows_live,
        counters.opportunities_emitted
    );
    let mut windows: Vec<_> = pipeline
        .snapshots()
        .iter()
        .flat_map(|snapshot| snapshot.windows.iter().copied())
        .filter(|window| window.last_bp.is_finite())
        .collect();
    windows.sort_by(|a, b| b.last_bp.total_cmp(&a.last_bp));
    let venue_name = |id: VenueId| Venue::from_id(id).map(Venue::name).unwrap_or("?");
    for window in windows.iter().take(3) {
        let symbol = registry
            .name(window.symbol_id)
            .map(|name| name.as_str().to_owned())
            .unwrap_or_else(|| format!("#{}", window.symbol_id.0));
        println!(
            "         top spread {symbol:<9} buy {:<7} sell {:<7} now {:>6.1} bp  window mean {:>6.1} max {:>6.1} bp  opportunities {}",
            venue_name(window.buy_venue_id),
            venue_name(window.sell_venue_id),
            window.last_bp,
            window.mean_bp,
            window.max_bp,
            window.cycles_completed
        );
    }
}
