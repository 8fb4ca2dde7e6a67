//! `tickflow-load load`: offered best bid/ask load against a fresh `tickflow` engine per rate.
//! Every step starts the simulated venues (`symbols` on all eight venues, at one rate spread
//! evenly), an engine with spread windows of `buckets` 1-s buckets and optionally a sink plugin,
//! waits until every window is live, warms up, measures the engine's CPU from /proc and its
//! counters from its `tickflow-stats` lines, and stops it to read its `tickflow-shutdown` line
//! (ring drops and sink losses over its whole run). `find_max` raises the rate until a step loses
//! records (ring or sink) or cannot be sustained. This module owns the steps, their verdicts and
//! their table and JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tickflow_core::config::WindowsConfig;
use tickflow_core::venue::Venue;
use tickflow_sim::{SimConfig, SimVenues};

use crate::engine::{
    EngineError, EngineOptions, EngineProcess, SinkOptions, default_engine_path,
    engine_config_toml, windows_per_symbol,
};
use crate::proc_stat::{self, ProcError, ProcSample};

/// What a step offers and how the engine is set up; `Default` is the command's defaults.
#[derive(Clone, Debug)]
pub struct LoadSettings {
    pub symbols: usize,
    pub duration_s: u64,
    pub warmup_s: u64,
    /// Tokio worker threads of the simulators (the runtime `run_step` is given).
    pub sim_threads: usize,
    pub shards: usize,
    pub engine_threads: usize,
    /// `engine.ring_capacity_records` (each connection slot's ring to a shard).
    pub ring_capacity_records: usize,
    /// `windows.buckets` (of 1 s each); the engine's default makes one-hour windows.
    pub buckets: usize,
    pub sink: Option<SinkOptions>,
    /// Longest wait, after every slot is connected, for every window to be live.
    pub windows_timeout_s: u64,
    pub engine: PathBuf,
    pub echo_engine_logs: bool,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            symbols: 200,
            duration_s: 10,
            warmup_s: 3,
            sim_threads: 1,
            shards: 1,
            engine_threads: 1,
            ring_capacity_records: EngineOptions::default().ring_capacity_records,
            buckets: WindowsConfig::default().buckets,
            sink: None,
            windows_timeout_s: 60,
            engine: default_engine_path(),
            echo_engine_logs: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("--symbols must be at least 1")]
    NoSymbols,
    #[error("--buckets must be at least 1")]
    NoBuckets,
    #[error("cannot start the simulated venues: {0}")]
    Sim(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Proc(#[from] ProcError),
}

/// The least share of the offered rate a step must achieve to count as sustained.
pub const SUSTAINED_SHARE: f64 = 0.9;

/// `find_max`'s first rate, and where it stops doubling and adds `RATE_STEP_ABOVE_DOUBLING`.
pub const FIRST_RATE_QUOTES_PER_S: u64 = 25_000;
pub const DOUBLING_UP_TO_QUOTES_PER_S: u64 = 200_000;
pub const RATE_STEP_ABOVE_DOUBLING: u64 = 100_000;

/// One offered rate, measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadStep {
    pub offered_quotes_per_s: u64,
    pub symbols: usize,
    pub venues: usize,
    pub buckets: usize,
    /// Windows every (symbol, buy venue, sell venue) makes, and those live at the end.
    pub windows_expected: u64,
    pub windows_live: u64,
    /// Measured window (between two stats lines), seconds of wall time.
    pub measured_s: f64,
    pub achieved_quotes_per_s: f64,
    /// Ring drops during the measured window.
    pub ring_drops: u64,
    /// Ring drops before the measured window (start, window creation, warm-up).
    pub ring_drops_before_window: u64,
    /// Ring drops over the engine's whole run (its shutdown line).
    pub ring_drops_whole_run: Option<u64>,
    /// Whether a sink was configured, and the records it lost over the engine's whole run (the
    /// shutdown line's `sink_lost`; None when the engine printed no shutdown line).
    pub sink: bool,
    pub sink_lost: Option<u64>,
    pub engine_cpu_cores: f64,
    pub engine_cpu_ns_per_quote: f64,
    /// By thread group (`tickflow-feeds`, `tickflow-shard`, `sink-load`, `tickflow`, ...).
    pub engine_cpu_cores_by_thread: BTreeMap<String, f64>,
    pub engine_cpu_ns_per_quote_by_thread: BTreeMap<String, f64>,
    pub generator_cpu_cores: f64,
    pub engine_rss_kb: u64,
    pub decode_errors: u64,
    pub engine_exit_code: Option<i32>,
    /// The engine's `tickflow-shutdown` object, verbatim.
    pub engine_shutdown: Option<serde_json::Value>,
}

/// Whether a step counts towards the highest rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepVerdict {
    /// Sustained, no ring drops, no sink losses.
    Clean,
    /// Clean in the measured window, but the rings dropped records outside it (before it: the
    /// engine's start, creating every window, first touch of their memory).
    RingDropsOutsideWindow,
    /// Ring drops during the measured window.
    RingDrops,
    SinkLosses,
    /// A sink was configured but the engine printed no shutdown line: its losses are unknown.
    SinkLossesUnknown,
    /// Below `SUSTAINED_SHARE` of the offered rate: the generator or the engine cannot keep up.
    NotSustained,
}

impl StepVerdict {
    pub fn name(self) -> &'static str {
        match self {
            StepVerdict::Clean => "clean",
            StepVerdict::RingDropsOutsideWindow => "clean; ring drops outside the window",
            StepVerdict::RingDrops => "ring drops",
            StepVerdict::SinkLosses => "sink losses",
            StepVerdict::SinkLossesUnknown => "no shutdown line",
            StepVerdict::NotSustained => "not sustained",
        }
    }

    /// Nothing lost in the measured window and no sink losses over the whole run (the
    /// steady-state figure): `Clean` or `RingDropsOutsideWindow`.
    pub fn steady_state_clean(self) -> bool {
        matches!(
            self,
            StepVerdict::Clean | StepVerdict::RingDropsOutsideWindow
        )
    }
}

impl LoadStep {
    /// Spread samples the shards emitted and the sinks delivered over the engine's whole run
    /// (its shutdown line's `sink_kinds.spread`); None without a shutdown line.
    pub fn spread_samples(&self) -> Option<(u64, u64)> {
        let spread = &self.engine_shutdown.as_ref()?["sink_kinds"]["spread"];
        Some((spread["emitted"].as_u64()?, spread["delivered"].as_u64()?))
    }

    pub fn verdict(&self) -> StepVerdict {
        if self.ring_drops > 0 {
            StepVerdict::RingDrops
        } else if self.sink && self.sink_lost.is_none() {
            StepVerdict::SinkLossesUnknown
        } else if self.sink_lost.is_some_and(|lost| lost > 0) {
            StepVerdict::SinkLosses
        } else if self.achieved_quotes_per_s < self.offered_quotes_per_s as f64 * SUSTAINED_SHARE {
            StepVerdict::NotSustained
        } else if self.ring_drops_before_window > 0
            || self.ring_drops_whole_run.is_some_and(|drops| drops > 0)
        {
            StepVerdict::RingDropsOutsideWindow
        } else {
            StepVerdict::Clean
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "offered_quotes_per_s": self.offered_quotes_per_s,
            "symbols": self.symbols,
            "venues": self.venues,
            "buckets": self.buckets,
            "windows_expected": self.windows_expected,
            "windows_live": self.windows_live,
            "measured_s": round(self.measured_s, 2),
            "achieved_quotes_per_s": self.achieved_quotes_per_s.round(),
            "ring_drops": self.ring_drops,
            "ring_drops_before_window": self.ring_drops_before_window,
            "ring_drops_whole_run": self.ring_drops_whole_run,
            "sink": self.sink,
            "sink_lost": self.sink_lost,
            "spread_samples_emitted": self.spread_samples().map(|(emitted, _)| emitted),
            "spread_samples_delivered": self.spread_samples().map(|(_, delivered)| delivered),
            "verdict": self.verdict().name(),
            "engine_cpu_cores": round(self.engine_cpu_cores, 2),
            "engine_cpu_ns_per_quote": self.engine_cpu_ns_per_quote.round(),
            "engine_cpu_cores_by_thread": rounded(&self.engine_cpu_cores_by_thread, 2),
            "engine_cpu_ns_per_quote_by_thread": rounded(&self.engine_cpu_ns_per_quote_by_thread, 0),
            "generator_cpu_cores": round(self.generator_cpu_cores, 2),
            "engine_rss_kb": self.engine_rss_kb,
            "decode_errors": self.decode_errors,
            "engine_exit_code": self.engine_exit_code,
            "engine_shutdown": self.engine_shutdown,
        })
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn rounded(values: &BTreeMap<String, f64>, decimals: i32) -> BTreeMap<String, f64> {
    values
        .iter()
        .map(|(name, value)| (name.clone(), round(*value, decimals)))
        .collect()
}

/// A fixed-width table of steps, one row each, and a note on what the sink figures cover.
pub fn steps_table(steps: &[LoadStep]) -> String {
    let mut table = format!(
        "{:>10} {:>10} {:>8} {:>8} {:>9} {:>21} {:>8} {:>8} {:>7} {:>8} {:>7} {:>8}  {}\n",
        "offered/s",
        "achieved/s",
        "ring_drp",
        "drp_run",
        "sink_lost",
        "spreads_dlv/emitted",
        "windows",
        "engine",
        "shard",
        "ns/quote",
        "gen",
        "rss_MiB",
        "verdict"
    );
    for step in steps {
        let shard_cores = step
            .engine_cpu_cores_by_thread
            .get("tickflow-shard")
            .copied()
            .unwrap_or(0.0);
        let sink_lost = match (step.sink, step.sink_lost) {
            (false, _) => "-".to_owned(),
            (true, None) => "?".to_owned(),
            (true, Some(lost)) => lost.to_string(),
        };
        let spreads = match (step.sink, step.spread_samples()) {
            (false, _) => "-".to_owned(),
            (true, None) => "?".to_owned(),
            (true, Some((emitted, delivered))) => format!("{delivered}/{emitted}"),
        };
        let ring_drops_whole_run = step
            .ring_drops_whole_run
            .map_or_else(|| "?".to_owned(), |drops| drops.to_string());
        table.push_str(&format!(
            "{:>10} {:>10.0} {:>8} {:>8} {:>9} {:>21} {:>8} {:>8.2} {:>7.2} {:>8.0} {:>7.2} {:>8}  {}\n",
            step.offered_quotes_per_s,
            step.achieved_quotes_per_s,
            step.ring_drops,
            ring_drops_whole_run,
            sink_lost,
            spreads,
            step.windows_live,
            step.engine_cpu_cores,
            shard_cores,
            step.engine_cpu_ns_per_quote,
            step.generator_cpu_cores,
            step.engine_rss_kb / 1024,
            step.verdict().name()
        ));
    }
    table.push_str(
        "engine/shard/gen: CPU cores (engine process, its tickflow-shard threads, the simulators); \
         ring_drp: during the measured window; drp_run, sink_lost and spreads_dlv/emitted (spread \
         samples the sinks received / the shards emitted): over the engine's whole run (its \
         tickflow-shutdown line)\n",
    );
    table
}

/// The outcome of `find_max`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FindMaxReport {
    /// The highest offered rate whose step was clean in steady state: no ring drops in the
    /// measured window, no sink losses over the whole run, sustained (0: none was).
    pub highest_clean_offered_quotes_per_s: u64,
    /// The highest offered rate up to which no step lost anything at all, ring drops outside the
    /// measured window included (0: none).
    pub highest_clean_whole_run_offered_quotes_per_s: u64,
    /// Why the search stopped: the first step that was not clean, or the rate ceiling.
    pub stopped_because: String,
    pub steps: Vec<LoadStep>,
}

impl FindMaxReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "highest_zero_loss_offered_quotes_per_s": self.highest_clean_offered_quotes_per_s,
            "criteria": "zero ring drops in the measured window, zero sink losses over the run, achieved >= 90% of offered",
            "highest_zero_loss_whole_run_offered_quotes_per_s": self.highest_clean_whole_run_offered_quotes_per_s,
            "stopped_because": self.stopped_because,
            "steps": self.steps.iter().map(LoadStep::to_json).collect::<Vec<_>>(),
        })
    }
}

/// The rate after `rate` in `find_max`: doubling up to 200 000/s, then steps of 100 000/s.
pub fn next_rate(rate: u64) -> u64 {
    if rate < DOUBLING_UP_TO_QUOTES_PER_S {
        (rate * 2).min(DOUBLING_UP_TO_QUOTES_PER_S)
    } else {
        rate + RATE_STEP_ABOVE_DOUBLING
    }
}

/// Raises the offered rate from 25 000/s to at most `max_rate` until a step is not clean in
/// steady state.
pub fn find_max(
    settings: &LoadSettings,
    runtime: &tokio::runtime::Runtime,
    max_rate: u64,
) -> Result<FindMaxReport, LoadError> {
    let mut report = FindMaxReport::default();
    let mut rate = FIRST_RATE_QUOTES_PER_S.min(max_rate.max(1));
    let mut nothing_lost_so_far = true;
    // Bounded: the rate grows every step up to `max_rate`.
    while rate <= max_rate {
        let step = run_step(settings, runtime, rate)?;
        eprintln!("load: {}", step.to_json());
        let verdict = step.verdict();
        report.steps.push(step);
        if !verdict.steady_state_clean() {
            report.stopped_because = format!("{}/s: {}", rate, verdict.name());
            return Ok(report);
        }
        report.highest_clean_offered_quotes_per_s = rate;
        nothing_lost_so_far &= verdict == StepVerdict::Clean;
        if nothing_lost_so_far {
            report.highest_clean_whole_run_offered_quotes_per_s = rate;
        }
        rate = next_rate(rate);
    }
    report.stopped_because = format!("reached --max-rate {max_rate}/s");
    Ok(report)
}

fn field(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or(0)
}

/// One offered rate on fresh simulators and a fresh engine.
pub fn run_step(
    settings: &LoadSettings,
    runtime: &tokio::runtime::Runtime,
    rate: u64,
) -> Result<LoadStep, LoadError> {
    if settings.symbols == 0 {
        return Err(LoadError::NoSymbols);
    }
    if settings.buckets == 0 {
        return Err(LoadError::NoBuckets);
    }
    let venues = Venue::ALL.len();
    let per_symbol = rate as f64 / venues as f64 / settings.symbols as f64;
    let sim_config = SimConfig {
        symbols: crate::symbol_names(settings.symbols),
        bbo_per_s_per_symbol: per_symbol,
        trades_per_s_per_symbol: 0.0,
        tick_ms: 2,
        ..SimConfig::default()
    };
    let sim = runtime
        .block_on(SimVenues::start(sim_config))
        .map_err(LoadError::Sim)?;
    let measured = measure(settings, &sim, rate);
    runtime.block_on(sim.shutdown());
    measured
}

fn measure(settings: &LoadSettings, sim: &SimVenues, rate: u64) -> Result<LoadStep, LoadError> {
    let venues = sim.config().venues.len();
    let options = EngineOptions {
        shards: settings.shards,
        worker_threads: settings.engine_threads,
        ring_capacity_records: settings.ring_capacity_records,
        buckets: settings.buckets,
        sink: settings.sink.clone(),
        ..EngineOptions::default()
    };
    let process = EngineProcess::start(
        &settings.engine,
        &engine_config_toml(sim, &options),
        settings.echo_engine_logs,
    )?;
    process.wait_stats(
        "all slots connected with data",
        Duration::from_secs(30),
        |stats| stats["connected"] == stats["slots"] && field(stats, "quotes") > 0,
    )?;
    let windows_expected = (settings.symbols * windows_per_symbol(venues)) as u64;
    match process.wait_stats(
        "every window live",
        Duration::from_secs(settings.windows_timeout_s),
        |stats| field(stats, "windows_live") >= windows_expected,
    ) {
        Ok(_) => {}
        Err(EngineError::Timeout { .. }) => tracing::warn!(
            windows_live = process.stat("windows_live"),
            windows_expected,
            "load: not every window is live; measuring anyway"
        ),
        Err(error) => return Err(error.into()),
    }
    std::thread::sleep(Duration::from_secs(settings.warmup_s));
    let start_stats = process.wait_stats("a stats line", Duration::from_secs(10), |_| true)?;
    let start_sample = process.sample()?;
    let threads_start = proc_stat::cpu_ns_by_thread_name(process.pid());
    let generator_start = ProcSample::read(std::process::id())?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(settings.duration_s));
    let end_stats = process.wait_stats("a stats line", Duration::from_secs(10), |_| true)?;
    let elapsed_s = started.elapsed().as_secs_f64().max(0.001);
    let end_sample = process.sample()?;
    let threads_end = proc_stat::cpu_ns_by_thread_name(process.pid());
    let generator_end = ProcSample::read(std::process::id())?;
    let exit = process.terminate_with_report()?;
    let quotes = field(&end_stats, "quotes").saturating_sub(field(&start_stats, "quotes"));
    let stats_span_s = (field(&end_stats, "uptime_ms")
        .saturating_sub(field(&start_stats, "uptime_ms")) as f64
        / 1000.0)
        .max(0.001);
    // CPU over wall time, quotes over the stats lines' span: the lag between a stats line and its
    // /proc sample cancels out.
    let quotes_per_s = quotes as f64 / stats_span_s;
    let per_quote_ns = |cpu_ns: u64| {
        if quotes_per_s > 0.0 {
            cpu_ns as f64 / elapsed_s / quotes_per_s
        } else {
            0.0
        }
    };
    let cpu_ns = end_sample.cpu_ns.saturating_sub(start_sample.cpu_ns);
    let mut cores_by_thread = BTreeMap::new();
    let mut per_quote_by_thread = BTreeMap::new();
    for (name, end_ns) in &threads_end {
        let spent_ns = end_ns.saturating_sub(threads_start.get(name).copied().unwrap_or(0));
        cores_by_thread.insert(name.clone(), spent_ns as f64 / 1e9 / elapsed_s);
        per_quote_by_thread.insert(name.clone(), per_quote_ns(spent_ns));
    }
    let shutdown_field = |name: &str| {
        exit.shutdown
            .as_ref()
            .and_then(|shutdown| shutdown[name].as_u64())
    };
    Ok(LoadStep {
        offered_quotes_per_s: rate,
        symbols: settings.symbols,
        venues,
        buckets: settings.buckets,
        windows_expected,
        windows_live: field(&end_stats, "windows_live"),
        measured_s: elapsed_s,
        achieved_quotes_per_s: quotes_per_s,
        ring_drops: field(&end_stats, "ring_dropped")
            .saturating_sub(field(&start_stats, "ring_dropped")),
        ring_drops_before_window: field(&start_stats, "ring_dropped"),
        ring_drops_whole_run: shutdown_field("ring_dropped"),
        sink: settings.sink.is_some(),
        sink_lost: shutdown_field("sink_lost"),
        engine_cpu_cores: cpu_ns as f64 / 1e9 / elapsed_s,
        engine_cpu_ns_per_quote: per_quote_ns(cpu_ns),
        engine_cpu_cores_by_thread: cores_by_thread,
        engine_cpu_ns_per_quote_by_thread: per_quote_by_thread,
        generator_cpu_cores: generator_end.cpu_ns.saturating_sub(generator_start.cpu_ns) as f64
            / 1e9
            / elapsed_s,
        engine_rss_kb: end_sample.rss_kb,
        decode_errors: field(&end_stats, "decode_errors"),
        engine_exit_code: exit.code,
        engine_shutdown: exit.shutdown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean_step() -> LoadStep {
        LoadStep {
            offered_quotes_per_s: 100_000,
            achieved_quotes_per_s: 99_000.0,
            ring_drops_whole_run: Some(0),
            sink: true,
            sink_lost: Some(0),
            ..LoadStep::default()
        }
    }

    #[test]
    fn a_step_is_clean_only_without_drops_losses_or_shortfall() {
        assert_eq!(clean_step().verdict(), StepVerdict::Clean);
        let ring = LoadStep {
            ring_drops: 1,
            ..clean_step()
        };
        assert_eq!(ring.verdict(), StepVerdict::RingDrops);
        let ring_outside_window = LoadStep {
            ring_drops_whole_run: Some(3),
            ..clean_step()
        };
        assert_eq!(
            ring_outside_window.verdict(),
            StepVerdict::RingDropsOutsideWindow
        );
        let ring_before_window = LoadStep {
            ring_drops_before_window: 3,
            ring_drops_whole_run: Some(3),
            ..clean_step()
        };
        assert_eq!(
            ring_before_window.verdict(),
            StepVerdict::RingDropsOutsideWindow
        );
        assert!(ring_before_window.verdict().steady_state_clean());
        assert!(!ring.verdict().steady_state_clean());
        let sink = LoadStep {
            sink_lost: Some(7),
            ..clean_step()
        };
        assert_eq!(sink.verdict(), StepVerdict::SinkLosses);
        let unknown = LoadStep {
            sink_lost: None,
            ..clean_step()
        };
        assert_eq!(unknown.verdict(), StepVerdict::SinkLossesUnknown);
        let no_sink = LoadStep {
            sink: false,
            sink_lost: None,
            ..clean_step()
        };
        assert_eq!(no_sink.verdict(), StepVerdict::Clean);
        let short = LoadStep {
            achieved_quotes_per_s: 89_000.0,
            ..clean_step()
        };
        assert_eq!(short.verdict(), StepVerdict::NotSustained);
    }

    #[test]
    fn rates_double_to_200k_then_rise_by_100k() {
        let mut rates = vec![FIRST_RATE_QUOTES_PER_S];
        for _ in 0..6 {
            let last = *rates.last().unwrap_or(&0);
            rates.push(next_rate(last));
        }
        assert_eq!(
            rates,
            [25_000, 50_000, 100_000, 200_000, 300_000, 400_000, 500_000]
        );
    }

    #[test]
    fn spread_samples_emitted_and_delivered_come_from_the_shutdown_line() {
        let step = LoadStep {
            engine_shutdown: Some(serde_json::json!({
                "sink_lost": 3,
                "sink_kinds": {"spread": {"emitted": 56000, "delivered": 55997, "lost": 3}},
            })),
            ..clean_step()
        };
        assert_eq!(step.spread_samples(), Some((56_000, 55_997)));
        assert!(steps_table(std::slice::from_ref(&step)).contains("55997/56000"));
        assert_eq!(step.to_json()["spread_samples_delivered"], 55_997);
        assert_eq!(clean_step().spread_samples(), None);
        assert!(
            steps_table(&[clean_step()])
                .lines()
                .nth(1)
                .is_some_and(|row| row.contains('?'))
        );
    }

    #[test]
    fn the_table_has_a_row_per_step_and_marks_missing_sink_figures() {
        let steps = [
            clean_step(),
            LoadStep {
                sink_lost: None,
                ..clean_step()
            },
        ];
        let table = steps_table(&steps);
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.contains("clean") && table.contains("no shutdown line"));
        let report = FindMaxReport {
            highest_clean_offered_quotes_per_s: 100_000,
            highest_clean_whole_run_offered_quotes_per_s: 50_000,
            stopped_because: "200000/s: sink losses".into(),
            steps: steps.to_vec(),
        };
        let json = report.to_json();
        assert_eq!(json["highest_zero_loss_offered_quotes_per_s"], 100_000);
        assert_eq!(
            json["highest_zero_loss_whole_run_offered_quotes_per_s"],
            50_000
        );
        assert_eq!(json["steps"][1]["sink_lost"], serde_json::Value::Null);
        assert_eq!(json["steps"][0]["verdict"], "clean");
    }
}
