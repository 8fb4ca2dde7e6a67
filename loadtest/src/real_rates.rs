//! `tickflow-load real-rates`: the engine's CPU per message at the rates real venues send. The
//! simulated venues serve `wss://` with a CA made at run time and, in the simulator's paced mode,
//! write every best bid/ask frame on its own (one WebSocket frame per TLS record and per socket
//! write) at one aggregate rate; the real `tickflow` binary runs as a child process trusting the
//! CA. Phases: idle (every connection up and subscribed, keep-alive only), then one per rate, each
//! measured after a settle from /proc (process and per-thread CPU) and from the engine's
//! `tickflow-stats` lines. This module owns the run, the figures and their table and JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tickflow_core::venue::Venue;
use tickflow_sim::{SimConfig, SimVenues, VenueControl};
use tokio_util::sync::CancellationToken;

use crate::engine::{EngineError, EngineOptions, EngineProcess, default_engine_path};
use crate::pki::{PkiError, TestPki};
use crate::proc_stat::{self, ProcError, ProcSample};

/// What a run does; `Default` is the command's defaults.
#[derive(Clone, Debug)]
pub struct RealRatesSettings {
    pub venues: Vec<Venue>,
    pub symbols: usize,
    pub idle_s: u64,
    /// Aggregate frames per second over every venue, one phase each.
    pub rates_frames_per_s: Vec<u64>,
    pub phase_s: u64,
    /// Before each phase's measurement (rates settle, connections finish their handshakes).
    pub settle_s: u64,
    pub shards: usize,
    pub engine_threads: usize,
    /// Tokio worker threads of the simulators.
    pub sim_threads: usize,
    pub stats_interval_ms: u64,
    pub engine: PathBuf,
    pub echo_engine_logs: bool,
    /// `engine.shard_batch_wait_us` / `feeds.batch_wait_us` for the run (`None`: the defaults).
    pub shard_batch_wait_us: Option<u64>,
    pub feeds_batch_wait_us: Option<u64>,
}

impl Default for RealRatesSettings {
    fn default() -> Self {
        RealRatesSettings {
            venues: vec![Venue::Binance, Venue::Okx],
            symbols: 100,
            idle_s: 10,
            rates_frames_per_s: vec![1_000, 5_000, 20_000, 50_000],
            phase_s: 10,
            settle_s: 2,
            shards: 1,
            engine_threads: 1,
            sim_threads: 1,
            stats_interval_ms: 1_000,
            engine: default_engine_path(),
            echo_engine_logs: true,
            shard_batch_wait_us: None,
            feeds_batch_wait_us: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RealRatesError {
    #[error(
        "--venues needs at least two distinct venues (spreads are computed between venues), got {0}"
    )]
    TooFewVenues(usize),
    #[error("--symbols must be at least 1")]
    NoSymbols,
    #[error("--rates needs at least one rate, each above 0 frames/s")]
    BadRates,
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot write the test CA to {path}: {source}")]
    WriteCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the simulated venues: {0}")]
    Sim(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("{what} not reached within {timeout_s} s")]
    Timeout { what: &'static str, timeout_s: u64 },
}

/// Everything measured at one phase boundary, right after a fresh `tickflow-stats` line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseSnapshot {
    /// Seconds since the run started.
    pub wall_s: f64,
    pub stats_uptime_ms: u64,
    pub engine_frames: u64,
    pub engine_records: u64,
    pub engine_quotes: u64,
    pub ring_drops: u64,
    pub decode_errors: u64,
    pub reconnects: u64,
    pub engine_cpu_ns: u64,
    /// Engine CPU by thread group (`proc_stat::cpu_ns_by_thread_name`).
    pub thread_cpu_ns: BTreeMap<String, u64>,
    /// Context switches (voluntary and not) by thread group: a thread's wake-ups.
    pub thread_switches: BTreeMap<String, u64>,
    pub sim_frames_sent: u64,
    pub sim_frames_skipped: u64,
    /// This process's CPU (the simulators, which share the machine with the engine).
    pub sim_cpu_ns: u64,
}

/// One stats interval's shard latency percentiles (frame receive → spread update).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencySample {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
}

impl LatencySample {
    /// From a stats line, when it carries the percentiles and the interval saw quotes.
    pub fn from_stats(stats: &serde_json::Value) -> Option<LatencySample> {
        LatencySample::from_stats_named(stats, "shard_latency_ns")
    }

    /// The feeds threads' batch sleeps of a stats line (`feeds_batch_sleep_ns_*`), when the
    /// interval had any: how long a frame that arrived during one waited in its socket at most.
    pub fn batch_sleeps_from_stats(stats: &serde_json::Value) -> Option<LatencySample> {
        LatencySample::from_stats_named(stats, "feeds_batch_sleep_ns")
    }

    fn from_stats_named(stats: &serde_json::Value, name: &str) -> Option<LatencySample> {
        let field = |suffix: &str| {
            stats
                .get(format!("{name}_{suffix}"))
                .and_then(serde_json::Value::as_u64)
        };
        let sample = LatencySample {
            p50_ns: field("p50")?,
            p99_ns: field("p99")?,
            p999_ns: field("p999")?,
        };
        (sample.p50_ns > 0).then_some(sample)
    }
}

/// Shard latency over a phase: the median over its stats intervals of each interval's percentile,
/// and the worst interval's p99.9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyFigures {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p999_worst_interval_ns: u64,
    pub intervals: usize,
}

impl LatencyFigures {
    pub fn from_samples(samples: &[LatencySample]) -> Option<LatencyFigures> {
        if samples.is_empty() {
            return None;
        }
        let median = |pick: fn(&LatencySample) -> u64| {
            let mut values: Vec<u64> = samples.iter().map(pick).collect();
            values.sort_unstable();
            values[values.len() / 2]
        };
        Some(LatencyFigures {
            p50_ns: median(|sample| sample.p50_ns),
            p99_ns: median(|sample| sample.p99_ns),
            p999_ns: median(|sample| sample.p999_ns),
            p999_worst_interval_ns: samples
                .iter()
                .map(|sample| sample.p999_ns)
                .max()
                .unwrap_or(0),
            intervals: samples.len(),
        })
    }
}

/// CPU of one engine thread group over a phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThreadGroupFigures {
    pub cpu_pct_of_one_core: f64,
    /// None in the idle phase (no messages to divide by).
    pub cpu_us_per_message: Option<f64>,
    /// Context switches (wake-ups) per second.
    pub switches_per_s: f64,
}

/// The figures of one phase.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseReport {
    /// `idle` or the target rate.
    pub name: String,
    pub target_frames_per_s: u64,
    /// Wall time between the two /proc samples.
    pub duration_s: f64,
    pub sim_frames_sent: u64,
    pub sent_frames_per_s: f64,
    /// Frames the simulators' schedule owed but could not send (they fell behind).
    pub sim_frames_skipped: u64,
    /// Every WebSocket frame the engine read (data and keep-alive).
    pub engine_frames: u64,
    pub engine_records: u64,
    pub engine_quotes: u64,
    pub engine_frames_per_s: f64,
    pub engine_cpu_pct_of_one_core: f64,
    /// Engine process CPU per frame read; None in the idle phase.
    pub engine_cpu_us_per_message: Option<f64>,
    pub threads: BTreeMap<String, ThreadGroupFigures>,
    pub sim_cpu_pct_of_one_core: f64,
    pub ring_drops: u64,
    pub decode_errors: u64,
    pub reconnects: u64,
    pub shard_latency: Option<LatencyFigures>,
    /// The feeds threads' batch sleeps (`feeds.batch_wait_us`): what a frame may wait in its
    /// socket before it is read, on top of `shard_latency`.
    pub batch_sleep: Option<LatencyFigures>,
}

/// The figures of a phase from its boundary snapshots. CPU is over the wall time between the
/// /proc samples and messages over the stats lines' uptime span: each is turned into a rate first,
/// so a few milliseconds between reading a stats line and sampling /proc do not skew the ratio.
pub fn phase_report(
    name: &str,
    target_frames_per_s: u64,
    start: &PhaseSnapshot,
    end: &PhaseSnapshot,
    latency: &[LatencySample],
    batch_sleeps: &[LatencySample],
) -> PhaseReport {
    let duration_s = (end.wall_s - start.wall_s).max(1e-3);
    let stats_span_s = end.stats_uptime_ms.saturating_sub(start.stats_uptime_ms) as f64 / 1_000.0;
    let stats_span_s = if stats_span_s > 0.0 {
        stats_span_s
    } else {
        duration_s
    };
    let engine_frames = end.engine_frames.saturating_sub(start.engine_frames);
    let engine_frames_per_s = engine_frames as f64 / stats_span_s;
    let per_message = target_frames_per_s > 0 && engine_frames > 0;
    let pct_of_one_core = |cpu_ns: u64| cpu_ns as f64 / 1e9 / duration_s * 100.0;
    let us_per_message = |cpu_ns: u64| {
        per_message.then(|| cpu_ns as f64 / duration_s / engine_frames_per_s / 1_000.0)
    };
    let engine_cpu_ns = end.engine_cpu_ns.saturating_sub(start.engine_cpu_ns);
    let threads = end
        .thread_cpu_ns
        .iter()
        .map(|(group, end_ns)| {
            let spent_ns =
                end_ns.saturating_sub(start.thread_cpu_ns.get(group).copied().unwrap_or(0));
            let switches = end
                .thread_switches
                .get(group)
                .copied()
                .unwrap_or(0)
                .saturating_sub(start.thread_switches.get(group).copied().unwrap_or(0));
            let figures = ThreadGroupFigures {
                cpu_pct_of_one_core: pct_of_one_core(spent_ns),
                cpu_us_per_message: us_per_message(spent_ns),
                switches_per_s: switches as f64 / duration_s,
            };
            (group.clone(), figures)
        })
        .collect();
    let sim_frames_sent = end.sim_frames_sent.saturating_sub(start.sim_frames_sent);
    PhaseReport {
        name: name.to_owned(),
        target_frames_per_s,
        duration_s,
        sim_frames_sent,
        sent_frames_per_s: sim_frames_sent as f64 / duration_s,
        sim_frames_skipped: end
            .sim_frames_skipped
            .saturating_sub(start.sim_frames_skipped),
        engine_frames,
        engine_records: end.engine_records.saturating_sub(start.engine_records),
        engine_quotes: end.engine_quotes.saturating_sub(start.engine_quotes),
        engine_frames_per_s,
        engine_cpu_pct_of_one_core: pct_of_one_core(engine_cpu_ns),
        engine_cpu_us_per_message: us_per_message(engine_cpu_ns),
        threads,
        sim_cpu_pct_of_one_core: pct_of_one_core(end.sim_cpu_ns.saturating_sub(start.sim_cpu_ns)),
        ring_drops: end.ring_drops.saturating_sub(start.ring_drops),
        decode_errors: end.decode_errors.saturating_sub(start.decode_errors),
        reconnects: end.reconnects.saturating_sub(start.reconnects),
        shard_latency: LatencyFigures::from_samples(latency),
        batch_sleep: LatencyFigures::from_samples(batch_sleeps),
    }
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct RealRatesReport {
    pub settings: RealRatesSettings,
    pub cpus: usize,
    pub load_average_1m_start: Option<f64>,
    pub phases: Vec<PhaseReport>,
    /// Ctrl-C stopped the run before its last phase.
    pub interrupted: bool,
    pub engine_exit_code: Option<i32>,
}

/// Runs the simulators on `runtime` and the engine as a child process through every phase.
/// `cancel` (Ctrl-C) ends the run at the next check (every few milliseconds) with the phases
/// measured so far; the engine is stopped and the simulators shut down on every path.
pub fn run(
    settings: &RealRatesSettings,
    runtime: &tokio::runtime::Runtime,
    cancel: &CancellationToken,
) -> Result<RealRatesReport, RealRatesError> {
    let mut venues: Vec<Venue> = Vec::new();
    for venue in &settings.venues {
        if !venues.contains(venue) {
            venues.push(*venue);
        }
    }
    if venues.len() < 2 {
        return Err(RealRatesError::TooFewVenues(venues.len()));
    }
    if settings.symbols == 0 {
        return Err(RealRatesError::NoSymbols);
    }
    if settings.rates_frames_per_s.is_empty() || settings.rates_frames_per_s.contains(&0) {
        return Err(RealRatesError::BadRates);
    }
    let load_average_1m_start = proc_stat::load_average_1m();
    let pki = TestPki::generate()?;
    let ca_file = TempFile::write("real-rates-ca.pem", &pki.ca_pem)?;
    let sim_config = SimConfig {
        venues,
        symbols: crate::symbol_names(settings.symbols),
        trades_per_s_per_symbol: 0.0,
        paced: true,
        ..SimConfig::default()
    };
    let sim = runtime
        .block_on(SimVenues::start_tls(
            sim_config,
            std::sync::Arc::clone(&pki.server_config),
        ))
        .map_err(RealRatesError::Sim)?;
    let measured = run_phases(settings, &sim, &ca_file.path, cancel);
    runtime.block_on(sim.shutdown());
    let (phases, interrupted, engine_exit_code) = measured?;
    Ok(RealRatesReport {
        settings: settings.clone(),
        cpus: std::thread::available_parallelism().map_or(0, |cpus| cpus.get()),
        load_average_1m_start,
        phases,
        interrupted,
        engine_exit_code,
    })
}

type PhasesOutcome = (Vec<PhaseReport>, bool, Option<i32>);

fn run_phases(
    settings: &RealRatesSettings,
    sim: &SimVenues,
    ca_path: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<PhasesOutcome, RealRatesError> {
    let options = EngineOptions {
        shards: settings.shards,
        worker_threads: settings.engine_threads,
        stats_interval_ms: settings.stats_interval_ms,
        tls_extra_roots_pem: Some(ca_path.to_owned()),
        shard_batch_wait_us: settings.shard_batch_wait_us,
        feeds_batch_wait_us: settings.feeds_batch_wait_us,
        ..EngineOptions::default()
    };
    let process = EngineProcess::start(
        &settings.engine,
        &crate::engine_config_toml(sim, &options),
        settings.echo_engine_logs,
    )?;
    tracing::info!(
        pid = process.pid(),
        engine = %settings.engine.display(),
        "real-rates: engine started; waiting for every connection to subscribe"
    );
    let run = Run {
        settings,
        sim,
        process: &process,
        cancel,
        started: Instant::now(),
    };
    let mut phases = Vec::new();
    let measured = run.measure_all(&mut phases);
    sim.set_paced_frames_per_s(0.0);
    let exit_code = process.terminate()?;
    let interrupted = measured?;
    Ok((phases, interrupted, exit_code))
}

/// A run in progress: what each step needs.
struct Run<'a> {
    settings: &'a RealRatesSettings,
    sim: &'a SimVenues,
    process: &'a EngineProcess,
    cancel: &'a CancellationToken,
    started: Instant,
}

/// How often waits look at the engine's latest stats line and at `cancel`.
const POLL: Duration = Duration::from_millis(5);
/// Every connection must be up and subscribed within this (TLS handshakes on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl Run<'_> {
    /// Every phase in order; Ok(true) when cancelled before the end.
    fn measure_all(&self, phases: &mut Vec<PhaseReport>) -> Result<bool, RealRatesError> {
        if !self.wait_ready()? {
            return Ok(true);
        }
        let settle = Duration::from_secs(self.settings.settle_s);
        if !self.sleep(settle) {
            return Ok(true);
        }
        let idle = Duration::from_secs(self.settings.idle_s);
        let Some(report) = self.measure_phase("idle", 0, idle)? else {
            return Ok(true);
        };
        tracing::info!(
            cpu_pct_of_one_core = report.engine_cpu_pct_of_one_core,
            "real-rates: idle"
        );
        phases.push(report);
        for &rate in &self.settings.rates_frames_per_s {
            self.sim.set_paced_frames_per_s(rate as f64);
            if !self.sleep(settle) {
                return Ok(true);
            }
            let phase = Duration::from_secs(self.settings.phase_s);
            let Some(report) = self.measure_phase(&rate.to_string(), rate, phase)? else {
                return Ok(true);
            };
            tracing::info!(
                rate,
                sent_frames_per_s = report.sent_frames_per_s,
                engine_cpu_us_per_message = report.engine_cpu_us_per_message,
                "real-rates: phase done"
            );
            phases.push(report);
        }
        Ok(false)
    }

    /// Waits until every engine slot is connected and every simulated venue has every symbol
    /// subscribed; false when cancelled.
    fn wait_ready(&self) -> Result<bool, RealRatesError> {
        let symbols = self.settings.symbols as u64;
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.cancel.is_cancelled() {
                return Ok(false);
            }
            let engine_connected = self.process.stats().is_some_and(|stats| {
                let slots = stats["slots"].as_u64().unwrap_or(0);
                slots > 0 && stats["connected"].as_u64() == Some(slots)
            });
            let venues_subscribed = self.sim.config().venues.iter().all(|venue| {
                VenueControl::get(&self.sim.control(*venue).live_session_topics) >= symbols
            });
            if engine_connected && venues_subscribed {
                return Ok(true);
            }
            std::thread::sleep(POLL);
        }
        Err(RealRatesError::Timeout {
            what: "every connection up and subscribed",
            timeout_s: READY_TIMEOUT.as_secs(),
        })
    }

    /// Sleeps `duration` unless cancelled (false then).
    fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            if self.cancel.is_cancelled() {
                return false;
            }
            std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
        !self.cancel.is_cancelled()
    }

    /// The first stats line newer than `after_uptime_ms`; None when cancelled.
    fn fresh_stats(
        &self,
        after_uptime_ms: u64,
    ) -> Result<Option<serde_json::Value>, RealRatesError> {
        // Three missed lines mean the engine is gone or stuck.
        let timeout = Duration::from_millis(self.settings.stats_interval_ms.max(1) * 3)
            + Duration::from_secs(5);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.cancel.is_cancelled() {
                return Ok(None);
            }
            if let Some(stats) = self.process.stats()
                && stats["uptime_ms"].as_u64().unwrap_or(0) > after_uptime_ms
            {
                return Ok(Some(stats));
            }
            std::thread::sleep(POLL);
        }
        Err(RealRatesError::Timeout {
            what: "a fresh tickflow-stats line",
            timeout_s: timeout.as_secs(),
        })
    }

    fn snapshot(&self, stats: &serde_json::Value) -> Result<PhaseSnapshot, RealRatesError> {
        let field = |name: &str| stats[name].as_u64().unwrap_or(0);
        // /proc first: it is what must sit closest to the stats line just read.
        let engine = ProcSample::read(self.process.pid())?;
        let thread_cpu_ns = proc_stat::cpu_ns_by_thread_name(self.process.pid());
        let thread_switches = switches_by_thread_name(self.process.pid());
        let wall_s = self.started.elapsed().as_secs_f64();
        let sim = ProcSample::read(std::process::id())?;
        Ok(PhaseSnapshot {
            wall_s,
            stats_uptime_ms: field("uptime_ms"),
            engine_frames: field("frames"),
            engine_records: field("records"),
            engine_quotes: field("quotes"),
            ring_drops: field("ring_dropped"),
            decode_errors: field("decode_errors"),
            reconnects: field("reconnects"),
            engine_cpu_ns: engine.cpu_ns,
            thread_cpu_ns,
            thread_switches,
            sim_frames_sent: self.sim.data_frames_sent(),
            sim_frames_skipped: self.sim.paced_frames_skipped(),
            sim_cpu_ns: sim.cpu_ns,
        })
    }

    /// One phase: a snapshot at a fresh stats line, `duration`, a snapshot at the next fresh
    /// line. None when cancelled.
    fn measure_phase(
        &self,
        name: &str,
        target_frames_per_s: u64,
        duration: Duration,
    ) -> Result<Option<PhaseReport>, RealRatesError> {
        let last_uptime_ms = self.process.stat("uptime_ms");
        let Some(start_stats) = self.fresh_stats(last_uptime_ms)? else {
            return Ok(None);
        };
        let start = self.snapshot(&start_stats)?;
        let mut latency = Vec::new();
        let mut batch_sleeps = Vec::new();
        let mut seen_uptime_ms = start.stats_uptime_ms;
        let end_at = Instant::now() + duration;
        while Instant::now() < end_at {
            if self.cancel.is_cancelled() {
                return Ok(None);
            }
            if let Some(stats) = self.process.stats() {
                let uptime_ms = stats["uptime_ms"].as_u64().unwrap_or(0);
                if uptime_ms > seen_uptime_ms {
                    seen_uptime_ms = uptime_ms;
                    latency.extend(LatencySample::from_stats(&stats));
                    batch_sleeps.extend(LatencySample::batch_sleeps_from_stats(&stats));
                }
            }
            std::thread::sleep(POLL);
        }
        let Some(end_stats) = self.fresh_stats(seen_uptime_ms)? else {
            return Ok(None);
        };
        let end = self.snapshot(&end_stats)?;
        latency.extend(LatencySample::from_stats(&end_stats));
        batch_sleeps.extend(LatencySample::batch_sleeps_from_stats(&end_stats));
        Ok(Some(phase_report(
            name,
            target_frames_per_s,
            &start,
            &end,
            &latency,
            &batch_sleeps,
        )))
    }
}

/// Context switches (`voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of
/// /proc/PID/task/*/status) by thread group, named like `proc_stat::cpu_ns_by_thread_name`.
fn switches_by_thread_name(pid: u32) -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(name), Ok(status)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("status")),
        ) else {
            continue;
        };
        let switches: u64 = status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        let name = name
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_owned();
        *by_name.entry(name).or_insert(0) += switches;
    }
    by_name
}

/// A file in the temp dir, removed when dropped.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn write(name: &str, contents: &str) -> Result<TempFile, RealRatesError> {
        let path =
            std::env::temp_dir().join(format!("tickflow-load-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).map_err(|source| RealRatesError::WriteCa {
            path: path.clone(),
            source,
        })?;
        Ok(TempFile { path })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

impl PhaseReport {
    pub fn to_json(&self) -> serde_json::Value {
        let threads: serde_json::Map<String, serde_json::Value> = self
            .threads
            .iter()
            .map(|(group, figures)| {
                let value = serde_json::json!({
                    "cpu_pct_of_one_core": round(figures.cpu_pct_of_one_core, 2),
                    "cpu_us_per_message": figures.cpu_us_per_message.map(|value| round(value, 3)),
                    "context_switches_per_s": round(figures.switches_per_s, 1),
                });
                (group.clone(), value)
            })
            .collect();
        let mut value = serde_json::json!({
            "phase": self.name,
            "target_frames_per_s": self.target_frames_per_s,
            "duration_s": round(self.duration_s, 3),
            "sim_frames_sent": self.sim_frames_sent,
            "sent_frames_per_s": round(self.sent_frames_per_s, 1),
            "sim_frames_skipped": self.sim_frames_skipped,
            "engine_frames": self.engine_frames,
            "engine_records": self.engine_records,
            "engine_quotes": self.engine_quotes,
            "engine_frames_per_s": round(self.engine_frames_per_s, 1),
            "engine_cpu_pct_of_one_core": round(self.engine_cpu_pct_of_one_core, 2),
            "engine_cpu_us_per_message": self.engine_cpu_us_per_message.map(|value| round(value, 3)),
            "engine_cpu_by_thread": threads,
            "sim_cpu_pct_of_one_core": round(self.sim_cpu_pct_of_one_core, 2),
            "ring_drops": self.ring_drops,
            "decode_errors": self.decode_errors,
            "reconnects": self.reconnects,
        });
        if let (Some(latency), Some(object)) = (self.shard_latency, value.as_object_mut()) {
            object.insert("shard_latency_ns_p50".into(), latency.p50_ns.into());
            object.insert("shard_latency_ns_p99".into(), latency.p99_ns.into());
            object.insert("shard_latency_ns_p999".into(), latency.p999_ns.into());
            object.insert(
                "shard_latency_ns_p999_worst_interval".into(),
                latency.p999_worst_interval_ns.into(),
            );
            object.insert(
                "shard_latency_intervals".into(),
                (latency.intervals as u64).into(),
            );
        }
        if let (Some(sleeps), Some(object)) = (self.batch_sleep, value.as_object_mut()) {
            object.insert("feeds_batch_sleep_ns_p50".into(), sleeps.p50_ns.into());
            object.insert("feeds_batch_sleep_ns_p99".into(), sleeps.p99_ns.into());
            object.insert("feeds_batch_sleep_ns_p999".into(), sleeps.p999_ns.into());
            object.insert(
                "feeds_batch_sleep_ns_p999_worst_interval".into(),
                sleeps.p999_worst_interval_ns.into(),
            );
        }
        value
    }
}

impl RealRatesReport {
    /// Every figure, one JSON object (the command's last line).
    pub fn to_json(&self) -> serde_json::Value {
        let settings = &self.settings;
        serde_json::json!({
            "command": "real-rates",
            "venues": settings.venues.iter().map(|venue| venue.name()).collect::<Vec<_>>(),
            "symbols": settings.symbols,
            "transport": "wss, one frame per TLS record and socket write",
            "idle_s": settings.idle_s,
            "phase_s": settings.phase_s,
            "settle_s": settings.settle_s,
            "rates_frames_per_s": settings.rates_frames_per_s,
            "shards": settings.shards,
            "engine_threads": settings.engine_threads,
            "sim_threads": settings.sim_threads,
            "cpus": self.cpus,
            "load_average_1m_start": self.load_average_1m_start,
            "phases": self.phases.iter().map(PhaseReport::to_json).collect::<Vec<_>>(),
            "interrupted": self.interrupted,
            "engine_exit_code": self.engine_exit_code,
        })
    }

    /// The human tables: one row per phase, then CPU per message by engine thread group.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let settings = &self.settings;
        let mut out = String::new();
        let venues: Vec<&str> = settings.venues.iter().map(|venue| venue.name()).collect();
        let _ = writeln!(
            out,
            "real-rates: {} x {} symbols over wss, one frame per TLS record; engine {} shard(s), {} feeds thread(s); {} CPUs, load average {} at start{}",
            venues.join(","),
            settings.symbols,
            settings.shards,
            settings.engine_threads,
            self.cpus,
            self.load_average_1m_start
                .map_or_else(|| "?".to_owned(), |load| format!("{load:.2}")),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        );
        let _ = writeln!(
            out,
            "{:<7} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8} {:>22} {:>22} {:>6} {:>6}",
            "phase",
            "target/s",
            "sent/s",
            "engine/s",
            "CPU %1c",
            "us/msg",
            "sim %1c",
            "latency us p50/99/99.9",
            "batch sleep us p50/99",
            "drops",
            "skip"
        );
        for phase in &self.phases {
            let latency = phase.shard_latency.map_or_else(
                || "-".to_owned(),
                |latency| {
                    format!(
                        "{:.1}/{:.1}/{:.1}",
                        latency.p50_ns as f64 / 1e3,
                        latency.p99_ns as f64 / 1e3,
                        latency.p999_ns as f64 / 1e3
                    )
                },
            );
            let batch_sleep = phase.batch_sleep.map_or_else(
                || "-".to_owned(),
                |sleeps| {
                    format!(
                        "{:.0}/{:.0}",
                        sleeps.p50_ns as f64 / 1e3,
                        sleeps.p99_ns as f64 / 1e3
                    )
                },
            );
            let _ = writeln!(
                out,
                "{:<7} {:>9} {:>10.1} {:>10.1} {:>9.2} {:>9} {:>8.2} {:>22} {:>22} {:>6} {:>6}",
                phase.name,
                phase.target_frames_per_s,
                phase.sent_frames_per_s,
                phase.engine_frames_per_s,
                phase.engine_cpu_pct_of_one_core,
                phase
                    .engine_cpu_us_per_message
                    .map_or_else(|| "-".to_owned(), |value| format!("{value:.2}")),
                phase.sim_cpu_pct_of_one_core,
                latency,
                batch_sleep,
                phase.ring_drops,
                phase.sim_frames_skipped,
            );
        }
        let groups: std::collections::BTreeSet<&String> = self
            .phases
            .iter()
            .flat_map(|phase| phase.threads.keys())
            .collect();
        let _ = writeln!(
            out,
            "engine CPU by thread group: idle in % of one core, rates in us per message"
        );
        let _ = write!(out, "{:<22}", "thread group");
        for phase in &self.phases {
            let _ = write!(out, " {:>9}", phase.name);
        }
        let _ = writeln!(out);
        for group in &groups {
            let _ = write!(out, "{group:<22}");
            for phase in &self.phases {
                let cell = match phase.threads.get(*group) {
                    Some(figures) => match figures.cpu_us_per_message {
                        Some(per_message) => format!("{per_message:.2}"),
                        None => format!("{:.2}%", figures.cpu_pct_of_one_core),
                    },
                    None => "-".to_owned(),
                };
                let _ = write!(out, " {cell:>9}");
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "context switches (wake-ups) per second by thread group"
        );
        for group in &groups {
            let _ = write!(out, "{group:<22}");
            for phase in &self.phases {
                let cell = phase.threads.get(*group).map_or_else(
                    || "-".to_owned(),
                    |figures| format!("{:.0}", figures.switches_per_s),
                );
                let _ = write!(out, " {cell:>9}");
            }
            let _ = writeln!(out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(wall_s: f64, uptime_ms: u64, frames: u64, cpu_ns: u64) -> PhaseSnapshot {
        PhaseSnapshot {
            wall_s,
            stats_uptime_ms: uptime_ms,
            engine_frames: frames,
            engine_cpu_ns: cpu_ns,
            thread_cpu_ns: [("tickflow-shard".to_owned(), cpu_ns / 2)].into(),
            thread_switches: [("tickflow-shard".to_owned(), frames / 10)].into(),
            sim_frames_sent: frames,
            ..PhaseSnapshot::default()
        }
    }

    #[test]
    fn cpu_per_message_is_cpu_rate_over_message_rate() {
        // 10 s, 10 000 frames, 0.5 s of CPU: 50 us per message, 5 % of one core.
        let start = snapshot(1.0, 1_000, 5_000, 1_000_000_000);
        let end = snapshot(11.0, 11_000, 15_000, 1_500_000_000);
        let report = phase_report("1000", 1_000, &start, &end, &[], &[]);
        assert_eq!(report.engine_frames, 10_000);
        assert!((report.engine_frames_per_s - 1_000.0).abs() < 1e-9);
        assert!((report.engine_cpu_pct_of_one_core - 5.0).abs() < 1e-9);
        let per_message = report.engine_cpu_us_per_message.unwrap();
        assert!((per_message - 50.0).abs() < 1e-9, "{per_message}");
        let shard = report.threads["tickflow-shard"].cpu_us_per_message.unwrap();
        assert!((shard - 25.0).abs() < 1e-9, "{shard}");
        // 1 000 more switches over 10 s.
        let switches = report.threads["tickflow-shard"].switches_per_s;
        assert!((switches - 100.0).abs() < 1e-9, "{switches}");
        assert!(report.shard_latency.is_none());
    }

    #[test]
    fn idle_has_cpu_percent_but_no_per_message_figure() {
        let start = snapshot(0.0, 1_000, 10, 0);
        let end = snapshot(10.0, 11_000, 12, 100_000_000);
        let report = phase_report("idle", 0, &start, &end, &[], &[]);
        assert!(report.engine_cpu_us_per_message.is_none());
        assert!((report.engine_cpu_pct_of_one_core - 1.0).abs() < 1e-9);
        let json = report.to_json();
        assert!(json["engine_cpu_us_per_message"].is_null());
        assert!(json.get("shard_latency_ns_p50").is_none());
    }

    #[test]
    fn latency_is_the_median_interval_with_the_worst_p999_beside_it() {
        let samples = [
            LatencySample {
                p50_ns: 10,
                p99_ns: 100,
                p999_ns: 1_000,
            },
            LatencySample {
                p50_ns: 30,
                p99_ns: 300,
                p999_ns: 9_000,
            },
            LatencySample {
                p50_ns: 20,
                p99_ns: 200,
                p999_ns: 2_000,
            },
        ];
        let figures = LatencyFigures::from_samples(&samples).unwrap();
        assert_eq!(
            (figures.p50_ns, figures.p99_ns, figures.p999_ns),
            (20, 200, 2_000)
        );
        assert_eq!(figures.p999_worst_interval_ns, 9_000);
        assert_eq!(figures.intervals, 3);
        let stats = serde_json::json!({ "shard_latency_ns_p50": 5, "shard_latency_ns_p99": 6 });
        assert!(
            LatencySample::from_stats(&stats).is_none(),
            "a line without p99.9 carries no sample"
        );
        // The batch sleeps of the same line are read from their own fields, not the shard's.
        let stats = serde_json::json!({
            "shard_latency_ns_p50": 5, "shard_latency_ns_p99": 6, "shard_latency_ns_p999": 7,
            "feeds_batch_sleep_ns_p50": 5_050_000, "feeds_batch_sleep_ns_p99": 5_200_000,
            "feeds_batch_sleep_ns_p999": 5_900_000,
        });
        assert_eq!(
            LatencySample::batch_sleeps_from_stats(&stats),
            Some(LatencySample {
                p50_ns: 5_050_000,
                p99_ns: 5_200_000,
                p999_ns: 5_900_000,
            })
        );
        assert_eq!(
            LatencySample::from_stats(&stats).map(|s| s.p999_ns),
            Some(7)
        );
    }
}
