//! Runs a scenario: the simulated venues (and their CA with TLS), the engine as a child process
//! (its config written from the scenario: control plane on a loopback port, the sinks' plugins
//! found next to this binary) or an engine already running (`--target`), the browsers, then each
//! phase in turn (its faults, rate, sink-stall release, engine kill and restart) with a sample
//! every `sample_interval_ms`; at the end the engine gets SIGTERM, the Parquet files are read
//! back, and the figures go to `report`. Owns every task and process it starts and stops them on
//! every path, Ctrl-C included.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tickflow_sim::{SimConfig, SimVenues};
use tokio_util::sync::CancellationToken;

use super::browsers::{self, BrowserClass, Browsers};
use super::http;
use super::report::{self, PhaseTotals, RunRecord};
use super::series::{Merge, Series};
use super::{EngineAction, Framing, Scenario, SinkKind};
use crate::engine::{EngineError, EngineOptions, EngineProcess, default_engine_path};
use crate::faults::{self, FaultCounts, FaultRates};
use crate::pki::{PkiError, TestPki};
use crate::proc_stat::{self, ProcSample};

/// Where and against what a scenario runs.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub report_dir: PathBuf,
    /// The measured phases were scaled to last this long together.
    pub duration_s: Option<u64>,
    /// The `tickflow` binary (default: next to this one).
    pub engine: Option<PathBuf>,
    /// The control-plane URL of an engine already running.
    pub target: Option<String>,
    /// Its pid, when it runs on this machine (for /proc).
    pub target_pid: Option<u32>,
    /// Where the sink plugins are (default: next to this binary).
    pub plugins_dir: Option<PathBuf>,
    /// The scenario file, for the report.
    pub scenario_path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create the report directory {path}: {source}")]
    ReportDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start a runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the simulated venues: {0}")]
    Sim(std::io::Error),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "sink plugin {path} not found: build it (`cargo build -p {package}`) or pass --plugins-dir"
    )]
    PluginMissing { path: PathBuf, package: String },
    #[error("engine config: {0}")]
    Config(String),
    #[error("no free loopback port: {0}")]
    Port(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    NotReady(String),
}

/// A finished (or interrupted) run: what `report` writes.
pub struct Outcome {
    pub record: RunRecord,
}

fn free_port() -> Result<u16, RunError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(RunError::Port)?;
    Ok(listener.local_addr().map_err(RunError::Port)?.port())
}

fn plugin_path(options: &RunOptions, kind: SinkKind) -> Result<PathBuf, RunError> {
    let dir = options.plugins_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let path = dir.join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        kind.library(),
        std::env::consts::DLL_SUFFIX
    ));
    if !path.exists() {
        return Err(RunError::PluginMissing {
            path,
            package: kind.library().replace('_', "-"),
        });
    }
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

/// Tables merge key by key, anything else replaces.
pub fn merge_toml(base: &mut toml::Table, overrides: &toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(override_table)) => {
                merge_toml(base_table, override_table);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The gate file of a stalling test sink.
fn gate_path(report_dir: &Path) -> PathBuf {
    report_dir.join("sink-stall.gate")
}

/// The engine's config for `sim` and the scenario (also written to `<report>/engine.toml`).
pub fn engine_config(
    scenario: &Scenario,
    options: &RunOptions,
    sim: &SimVenues,
    ca_path: Option<&Path>,
    http_bind: &str,
) -> Result<String, RunError> {
    let engine_options = EngineOptions {
        shards: scenario.engine.shards,
        worker_threads: scenario.engine.worker_threads,
        ring_capacity_records: scenario.engine.ring_capacity_records,
        stats_interval_ms: 1_000,
        buckets: scenario.engine.buckets,
        trades: scenario.venues.trades_per_s > 0.0 && scenario.venues.framing == Framing::Batched,
        tls_extra_roots_pem: ca_path.map(Path::to_path_buf),
        ..EngineOptions::default()
    };
    let base = crate::engine_config_toml(sim, &engine_options);
    let mut table: toml::Table = base
        .parse()
        .map_err(|error: toml::de::Error| RunError::Config(error.to_string()))?;
    let mut http_table = toml::Table::new();
    http_table.insert("bind".into(), http_bind.into());
    table.insert("http".into(), toml::Value::Table(http_table));
    let total_s = scenario.duration_s();
    let mut sinks = Vec::new();
    for sink in &scenario.sinks {
        let mut entry = toml::Table::new();
        entry.insert("name".into(), sink.sink_name().into());
        entry.insert(
            "path".into(),
            plugin_path(options, sink.kind)?
                .display()
                .to_string()
                .into(),
        );
        if let Some(policy) = &sink.policy {
            entry.insert("policy".into(), policy.clone().into());
        }
        if let Some(capacity) = sink.ring_capacity_records {
            entry.insert("ring_capacity_records".into(), (capacity as i64).into());
        }
        let mut config = toml::Table::new();
        match sink.kind {
            SinkKind::Parquet => {
                let root = options.report_dir.join("parquet");
                config.insert("root".into(), root.display().to_string().into());
            }
            SinkKind::WsBroadcast => {
                let browsers = scenario.browsers.total() as i64;
                config.insert("bind".into(), "127.0.0.1:0".into());
                config.insert("clients_max".into(), (browsers + 64).max(1024).into());
                config.insert(
                    "channels_max".into(),
                    (scenario.venues.symbols as i64 * 2 + 64).max(2048).into(),
                );
                config.insert(
                    "subscriptions_max".into(),
                    (scenario.browsers.symbols_per_browser as i64 * 2)
                        .max(256)
                        .into(),
                );
                config.insert("socket_send_buffer_bytes".into(), 262_144i64.into());
            }
            SinkKind::Metrics => {
                config.insert("bind".into(), "127.0.0.1:0".into());
            }
            SinkKind::Test => {
                let mode = sink.mode.clone().unwrap_or_else(|| "noop".into());
                if mode == "stall" {
                    config.insert(
                        "gate_path".into(),
                        gate_path(&options.report_dir).display().to_string().into(),
                    );
                    config.insert(
                        "stall_limit_ms".into(),
                        ((total_s as i64 + 60) * 1_000).into(),
                    );
                }
                config.insert("mode".into(), mode.into());
            }
        }
        merge_toml(&mut config, &sink.config);
        entry.insert("config".into(), toml::Value::Table(config));
        sinks.push(toml::Value::Table(entry));
    }
    if !sinks.is_empty() {
        table.insert("sinks".into(), toml::Value::Array(sinks));
    }
    merge_toml(&mut table, &scenario.engine.overrides);
    let text = toml::to_string(&table).map_err(|error| RunError::Config(error.to_string()))?;
    Ok(format!(
        "# written by tickflow-load scenario {}\n{text}",
        scenario.name
    ))
}

// ---- counters --------------------------------------------------------------------------------

/// The engine's cumulative counters at one sample.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub frames: Option<u64>,
    pub records: Option<u64>,
    pub ring_drops: Option<u64>,
    pub reconnects: Option<u64>,
    pub decode_errors: Option<u64>,
    /// Per sink: (delivered, lost), from /health.
    pub sinks: BTreeMap<String, (u64, u64)>,
    /// Venue timestamp → engine receive, cumulative buckets summed over venues: (le seconds,
    /// count), from the metrics sink.
    pub exchange_latency: Vec<(f64, u64)>,
}

impl Counters {
    /// This scrape with what it lacked (a source that did not answer) taken from `previous`:
    /// a missed scrape then adds nothing, and the next good one adds only what is new, not the
    /// whole total since the start.
    pub fn or_previous(mut self, previous: &Counters) -> Counters {
        self.frames = self.frames.or(previous.frames);
        self.records = self.records.or(previous.records);
        self.ring_drops = self.ring_drops.or(previous.ring_drops);
        self.reconnects = self.reconnects.or(previous.reconnects);
        self.decode_errors = self.decode_errors.or(previous.decode_errors);
        for (name, counts) in &previous.sinks {
            self.sinks.entry(name.clone()).or_insert(*counts);
        }
        if self.exchange_latency.is_empty() {
            self.exchange_latency.clone_from(&previous.exchange_latency);
        }
        self
    }
}

/// The counter part of one sample: the increases from `previous` to `current` (`current`
/// already filled by `Counters::or_previous`), and which counters this scrape really read
/// (`fresh`): a limit on a counter that never came is "not measured", not 0.
pub fn counter_step(previous: &Counters, current: &Counters, fresh: &Counters) -> PhaseTotals {
    let mut step = PhaseTotals {
        frames: delta(previous.frames, current.frames),
        records: delta(previous.records, current.records),
        ring_drops: delta(previous.ring_drops, current.ring_drops),
        reconnects: delta(previous.reconnects, current.reconnects),
        decode_errors: delta(previous.decode_errors, current.decode_errors),
        ..PhaseTotals::default()
    };
    step.seen.ring_drops = fresh.ring_drops.is_some();
    step.seen.decode_errors = fresh.decode_errors.is_some();
    step.seen.reconnects = fresh.reconnects.is_some();
    for (name, (delivered, lost)) in &current.sinks {
        let (last_delivered, last_lost) = previous.sinks.get(name).copied().unzip();
        let out = delta(last_delivered, Some(*delivered));
        let lost_now = delta(last_lost, Some(*lost));
        step.sink_lost += lost_now;
        step.sink_out.insert(name.clone(), out);
        step.sink_lost_by.insert(name.clone(), lost_now);
        if fresh.sinks.contains_key(name) {
            step.seen.sinks.insert(name.clone());
        }
    }
    if !current.exchange_latency.is_empty() {
        step.exchange_latency = bucket_delta(&previous.exchange_latency, &current.exchange_latency);
    }
    step
}

/// A counter's increase; a counter that went down (the engine restarted) counts from 0.
pub fn delta(previous: Option<u64>, current: Option<u64>) -> u64 {
    match (previous, current) {
        (Some(previous), Some(current)) if current >= previous => current - previous,
        (_, Some(current)) => current,
        _ => 0,
    }
}

fn sum_json(array: &serde_json::Value, field: &str) -> Option<u64> {
    array.as_array().map(|items| {
        items
            .iter()
            .filter_map(|item| item.get(field).and_then(serde_json::Value::as_u64))
            .sum()
    })
}

/// Sums a Prometheus family's samples (every label set); None when absent.
pub fn prometheus_sum(text: &str, family: &str) -> Option<u64> {
    let mut found = false;
    let mut total = 0f64;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(value) = rest
            .rsplit_once(' ')
            .and_then(|(_, value)| value.trim().parse::<f64>().ok())
        {
            found = true;
            total += value;
        }
    }
    found.then_some(total as u64)
}

/// The cumulative buckets of a Prometheus histogram, summed over label sets, sorted by `le`.
pub fn prometheus_buckets(text: &str, family: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{family}_bucket{{");
    let mut by_le: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some(le_start) = rest.find("le=\"") else {
            continue;
        };
        let le_text = &rest[le_start + 4..];
        let Some(le_end) = le_text.find('"') else {
            continue;
        };
        let le = match &le_text[..le_end] {
            "+Inf" => f64::INFINITY,
            other => match other.parse::<f64>() {
                Ok(value) => value,
                Err(_) => continue,
            },
        };
        let Some(count) = rest
            .rsplit_once(' ')
            .and_then(|(_, value)| value.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let entry = by_le.entry(le.to_bits()).or_insert((le, 0));
        entry.1 += count as u64;
    }
    let mut buckets: Vec<(f64, u64)> = by_le.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

// ---- the run ---------------------------------------------------------------------------------

/// How often waits look at `cancel`.
const POLL: Duration = Duration::from_millis(20);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The engine, child or target.
enum Engine {
    Child {
        process: Option<EngineProcess>,
        path: PathBuf,
        config: String,
    },
    Target {
        pid: Option<u32>,
    },
}

impl Engine {
    fn pid(&self) -> Option<u32> {
        match self {
            Engine::Child { process, .. } => process.as_ref().map(EngineProcess::pid),
            Engine::Target { pid } => *pid,
        }
    }

    fn stats(&self) -> Option<serde_json::Value> {
        match self {
            Engine::Child {
                process: Some(process),
                ..
            } => process.stats(),
            _ => None,
        }
    }

    fn exited(&self) -> bool {
        match self {
            Engine::Child {
                process: Some(process),
                ..
            } => process.exited(),
            _ => false,
        }
    }
}

/// The sampler's state between samples.
struct Sampler {
    started: Instant,
    control_url: String,
    metrics_url: Option<String>,
    last_at: Instant,
    last_proc: Option<ProcSample>,
    last_harness: Option<ProcSample>,
    last_threads_cpu: BTreeMap<String, u64>,
    last_counters: Counters,
    interval_s: f64,
    series_points_max: usize,
    series: BTreeMap<String, Series>,
    health_failures_total: u64,
    last_memory: Option<serde_json::Value>,
    last_health: Option<serde_json::Value>,
}

impl Sampler {
    fn record(&mut self, name: &str, unit: &str, merge: Merge, t_s: f64, value: f64) {
        let points_max = self.series_points_max;
        self.series
            .entry(name.to_owned())
            .or_insert_with(|| Series::new(name, unit, merge, points_max))
            .push(t_s, value);
    }

    fn counters(&mut self, engine: &Engine) -> Counters {
        let mut counters = Counters::default();
        if let Some(stats) = engine.stats() {
            let field = |name: &str| stats.get(name).and_then(serde_json::Value::as_u64);
            counters.frames = field("frames");
            counters.records = field("records");
            counters.ring_drops = match (field("ring_dropped"), field("ring_drops")) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            counters.reconnects = field("reconnects");
            counters.decode_errors = field("decode_errors");
        }
        if let Some(health) = &self.last_health {
            if counters.records.is_none() {
                counters.records = sum_json(&health["venues"], "records");
            }
            if counters.reconnects.is_none() {
                counters.reconnects = sum_json(&health["venues"], "reconnects");
            }
            if let Some(sinks) = health["sinks"].as_array() {
                for sink in sinks {
                    let Some(name) = sink["name"].as_str() else {
                        continue;
                    };
                    counters.sinks.insert(
                        name.to_owned(),
                        (
                            sink["delivered"].as_u64().unwrap_or(0),
                            sink["drops"].as_u64().unwrap_or(0),
                        ),
                    );
                }
            }
        }
        if let Some(url) = &self.metrics_url
            && let Ok(response) = http::get(url, PROBE_TIMEOUT)
            && response.status == 200
        {
            let text = String::from_utf8_lossy(&response.body);
            if counters.frames.is_none() {
                counters.frames = prometheus_sum(&text, "tickflow_venue_frames_total");
            }
            if counters.ring_drops.is_none() {
                counters.ring_drops = prometheus_sum(&text, "tickflow_venue_ring_drops_total");
            }
            if counters.decode_errors.is_none() {
                counters.decode_errors =
                    prometheus_sum(&text, "tickflow_venue_decode_errors_total");
            }
            counters.exchange_latency =
                prometheus_buckets(&text, "tickflow_venue_exchange_latency_seconds");
        }
        if counters.frames.is_none() {
            counters.frames = counters.records;
        }
        counters
    }

    /// One sample: updates the series and the phase totals; returns the progress line.
    fn sample(
        &mut self,
        engine: &Engine,
        browsers: Option<&Browsers>,
        phase: &mut PhaseTotals,
        measured: Option<&mut PhaseTotals>,
        health_histograms: &mut [&mut Histogram<u64>],
    ) -> String {
        let now = Instant::now();
        let t_s = now.duration_since(self.started).as_secs_f64();
        let elapsed_s = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        self.last_at = now;
        let mut step = PhaseTotals {
            wall_s: elapsed_s,
            ..PhaseTotals::default()
        };
        // /proc.
        let mut rss_mib = None;
        if let Some(pid) = engine.pid()
            && let Ok(sample) = ProcSample::read(pid)
        {
            let mib = sample.rss_kb as f64 / 1024.0;
            rss_mib = Some(mib);
            self.record("rss_mib", "MiB", Merge::Max, t_s, mib);
            self.record("threads", "threads", Merge::Max, t_s, sample.threads as f64);
            if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                self.record("fds", "fds", Merge::Max, t_s, entries.count() as f64);
            }
            if let Some(last) = self.last_proc {
                let cpu_ns = sample.cpu_ns.saturating_sub(last.cpu_ns);
                step.cpu_ns = cpu_ns;
                step.cpu_wall_s = elapsed_s;
                self.record(
                    "cpu_pct",
                    "% of one core",
                    Merge::Mean,
                    t_s,
                    cpu_ns as f64 / 1e9 / elapsed_s * 100.0,
                );
            }
            self.last_proc = Some(sample);
            let by_thread = proc_stat::cpu_ns_by_thread_name(pid);
            for (group, cpu_ns) in &by_thread {
                let Some(last) = self.last_threads_cpu.get(group) else {
                    continue;
                };
                // A bounded set of groups: thread names of one process.
                if self.series.len() > 256 {
                    break;
                }
                let spent = cpu_ns.saturating_sub(*last);
                self.record(
                    &format!("cpu_pct.{group}"),
                    "% of one core",
                    Merge::Mean,
                    t_s,
                    spent as f64 / 1e9 / elapsed_s * 100.0,
                );
            }
            self.last_threads_cpu = by_thread;
            step.rss_mib_first = rss_mib;
            step.rss_mib_last = rss_mib;
            step.rss_mib_max = rss_mib;
        }
        // The harness itself (simulators and browsers share the machine with the engine): a
        // saturated generator shows here.
        if let Ok(sample) = ProcSample::read(std::process::id()) {
            if let Some(last) = self.last_harness {
                self.record(
                    "harness_cpu_pct",
                    "% of one core",
                    Merge::Mean,
                    t_s,
                    sample.cpu_ns.saturating_sub(last.cpu_ns) as f64 / 1e9 / elapsed_s * 100.0,
                );
                step.harness_cpu_ns = sample.cpu_ns.saturating_sub(last.cpu_ns);
            }
            self.last_harness = Some(sample);
        }
        // /health, timed; a probe sent on a schedule, so coordinated-omission corrected.
        let probe_started = Instant::now();
        let health = http::get(&format!("{}/health", self.control_url), PROBE_TIMEOUT);
        let probe_us = probe_started.elapsed().as_micros() as u64;
        let expected_interval_us = (self.interval_s * 1e6) as u64;
        for histogram in health_histograms.iter_mut() {
            let _ = histogram.record_correct(
                probe_us.clamp(1, browsers::LATENCY_US_MAX),
                expected_interval_us,
            );
        }
        self.record("health_ms", "ms", Merge::Max, t_s, probe_us as f64 / 1e3);
        match health {
            Ok(response) if response.status == 200 => {
                self.last_health = response.json();
                self.record("health_ok", "0/1", Merge::Mean, t_s, 1.0);
            }
            Ok(response) => {
                self.last_health = response.json();
                step.health_failures = 1;
                self.record("health_ok", "0/1", Merge::Mean, t_s, 0.0);
            }
            Err(_) => {
                step.health_failures = 1;
                self.record("health_ok", "0/1", Merge::Mean, t_s, 0.0);
            }
        }
        self.health_failures_total += step.health_failures;
        if let Ok(response) = http::get(
            &format!("{}/api/monitoring/memory", self.control_url),
            PROBE_TIMEOUT,
        ) && let Some(memory) = response.json()
        {
            // A budget of 0 bytes (none configured) gives 0 %: not a measurement.
            if let Some(percent) = memory["budget"]["rss_percent_of_budget"].as_f64()
                && memory["budget"]["total_bytes"].as_u64().unwrap_or(0) > 0
            {
                self.record("rss_pct_of_budget", "%", Merge::Max, t_s, percent);
                step.rss_pct_of_budget_max = Some(percent);
            }
            self.last_memory = Some(memory);
        }
        // Counters: a source that did not answer keeps its previous value.
        let fresh = self.counters(engine);
        let last = std::mem::take(&mut self.last_counters);
        let counters = fresh.clone().or_previous(&last);
        let counted = counter_step(&last, &counters, &fresh);
        step.frames = counted.frames;
        step.records = counted.records;
        step.ring_drops = counted.ring_drops;
        step.reconnects = counted.reconnects;
        step.decode_errors = counted.decode_errors;
        step.sink_lost = counted.sink_lost;
        step.seen = counted.seen;
        step.exchange_latency = counted.exchange_latency;
        self.record(
            "records_in_per_s",
            "records/s",
            Merge::Mean,
            t_s,
            step.records as f64 / elapsed_s,
        );
        self.record(
            "frames_per_s",
            "frames/s",
            Merge::Mean,
            t_s,
            step.frames as f64 / elapsed_s,
        );
        self.record(
            "ring_drops_per_s",
            "records/s",
            Merge::Max,
            t_s,
            step.ring_drops as f64 / elapsed_s,
        );
        self.record(
            "reconnects_per_s",
            "1/s",
            Merge::Max,
            t_s,
            step.reconnects as f64 / elapsed_s,
        );
        let mut sink_line = String::new();
        for (name, out) in &counted.sink_out {
            let out = *out;
            let lost_now = counted.sink_lost_by.get(name).copied().unwrap_or(0);
            self.record(
                &format!("sink.{name}.out_per_s"),
                "records/s",
                Merge::Mean,
                t_s,
                out as f64 / elapsed_s,
            );
            self.record(
                &format!("sink.{name}.in_per_s"),
                "records/s",
                Merge::Mean,
                t_s,
                (out + lost_now) as f64 / elapsed_s,
            );
            self.record(
                &format!("sink.{name}.lost_per_s"),
                "records/s",
                Merge::Max,
                t_s,
                lost_now as f64 / elapsed_s,
            );
            sink_line.push_str(&format!(" {name} {:.0}/s", out as f64 / elapsed_s));
        }
        step.sink_out = counted.sink_out;
        step.sink_lost_by = counted.sink_lost_by;
        if !fresh.exchange_latency.is_empty()
            && let Some(p99) = report::bucket_quantile(&step.exchange_latency, 0.99)
        {
            self.record("venue_to_engine_p99_ms", "ms", Merge::Max, t_s, p99 * 1e3);
        }
        self.last_counters = counters;
        // Browsers.
        let mut fast_p99_ms = None;
        if let Some(browsers) = browsers {
            for class in BrowserClass::ALL {
                let shared = browsers.class(class);
                if shared.planned == 0 {
                    continue;
                }
                let name = class.name();
                self.record(
                    &format!("browsers.{name}.connected"),
                    "browsers",
                    Merge::Mean,
                    t_s,
                    shared
                        .connected_now
                        .load(std::sync::atomic::Ordering::Relaxed) as f64,
                );
                let interval = browsers.take_interval(class);
                if !interval.is_empty() {
                    for (label, quantile) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
                        self.record(
                            &format!("latency.{name}.{label}_ms"),
                            "ms",
                            Merge::Max,
                            t_s,
                            interval.value_at_quantile(quantile) as f64 / 1e3,
                        );
                    }
                    self.record(
                        &format!("latency.{name}.max_ms"),
                        "ms",
                        Merge::Max,
                        t_s,
                        interval.max() as f64 / 1e3,
                    );
                    if class == BrowserClass::Fast {
                        fast_p99_ms = Some(interval.value_at_quantile(0.99) as f64 / 1e3);
                    }
                }
            }
        }
        phase.add(&step);
        if let Some(measured) = measured {
            measured.add(&step);
        }
        let mut line = format!(
            "in {:.0}/s | frames {:.0}/s |{} | RSS {} | drops {} | lost {} | health fails {}",
            step.records as f64 / elapsed_s,
            step.frames as f64 / elapsed_s,
            if sink_line.is_empty() {
                " no sinks".to_owned()
            } else {
                format!(" out{sink_line}")
            },
            rss_mib.map_or("n/a".to_owned(), |mib| format!("{mib:.1} MiB")),
            phase.ring_drops,
            phase.sink_lost,
            self.health_failures_total,
        );
        if let Some(p99) = fast_p99_ms {
            line.push_str(&format!(" | fast p99 {p99:.1} ms"));
        }
        line
    }
}

fn bucket_delta(previous: &[(f64, u64)], current: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let restarted = current.iter().any(|(le, count)| {
        previous
            .iter()
            .find(|(other, _)| other == le)
            .is_some_and(|(_, before)| before > count)
    });
    current
        .iter()
        .map(|(le, count)| {
            let before = if restarted {
                0
            } else {
                previous
                    .iter()
                    .find(|(other, _)| other == le)
                    .map_or(0, |(_, before)| *before)
            };
            (*le, count.saturating_sub(before))
        })
        .collect()
}

/// Sleeps until `deadline` unless cancelled (false then).
fn sleep_until(deadline: Instant, cancel: &CancellationToken) -> bool {
    while Instant::now() < deadline {
        if cancel.is_cancelled() {
            return false;
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
    !cancel.is_cancelled()
}

/// The published endpoint `name` (`ws`, `metrics`) from /api/endpoints.
fn endpoint(control_url: &str, name: &str) -> Option<String> {
    let response = http::get(&format!("{control_url}/api/endpoints"), PROBE_TIMEOUT).ok()?;
    let json = response.json()?;
    json["endpoints"]
        .as_array()?
        .iter()
        .find(|endpoint| endpoint["name"].as_str() == Some(name))
        .and_then(|endpoint| endpoint["url"].as_str().map(str::to_owned))
}

fn ws_address(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("ws://")?;
    let authority = rest.split('/').next()?;
    authority.parse().ok()
}

/// Waits until /health answers 200 (and, for a child, every slot is connected), and the
/// endpoints the scenario's sinks publish are listed; false when cancelled.
fn wait_ready(
    scenario: &Scenario,
    engine: &Engine,
    control_url: &str,
    cancel: &CancellationToken,
) -> Result<bool, RunError> {
    let deadline = Instant::now() + Duration::from_secs(scenario.ready_timeout_s);
    let wants = |kind: SinkKind| scenario.sinks.iter().any(|sink| sink.kind == kind);
    let mut last_state = String::from("no answer");
    while Instant::now() < deadline {
        if cancel.is_cancelled() {
            return Ok(false);
        }
        if engine.exited() {
            return Err(RunError::NotReady(
                "the engine exited while starting (its log lines are above)".into(),
            ));
        }
        let healthy = match http::get(&format!("{control_url}/health"), PROBE_TIMEOUT) {
            Ok(response) => {
                last_state = format!(
                    "/health {} {}",
                    response.status,
                    response
                        .json()
                        .map(|json| json["status"].to_string())
                        .unwrap_or_default()
                );
                response.status == 200
            }
            Err(error) => {
                last_state = error.to_string();
                false
            }
        };
        let connected = match engine.stats() {
            Some(stats) => {
                let slots = stats["slots"].as_u64().unwrap_or(0);
                slots > 0 && stats["connected"].as_u64() == Some(slots)
            }
            None => matches!(engine, Engine::Target { .. }),
        };
        let endpoints = (!wants(SinkKind::WsBroadcast) || endpoint(control_url, "ws").is_some())
            && (!wants(SinkKind::Metrics) || endpoint(control_url, "metrics").is_some());
        if healthy && connected && endpoints {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(RunError::NotReady(format!(
        "the engine was not ready (healthy, every connection up, endpoints published) within {} s: {last_state}",
        scenario.ready_timeout_s
    )))
}

fn runtime(threads: usize, name: &str) -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)
}

/// Runs `scenario`; `cancel` (Ctrl-C, SIGTERM) ends it early, still with a record. Errors before
/// the engine is up are returned; errors after it end the run with the error in the record.
pub fn run(
    scenario: &Scenario,
    options: &RunOptions,
    cancel: &CancellationToken,
) -> Result<Outcome, RunError> {
    std::fs::create_dir_all(&options.report_dir).map_err(|source| RunError::ReportDir {
        path: options.report_dir.clone(),
        source,
    })?;
    let venues = scenario.venue_list().map_err(RunError::Config)?;
    let sim_runtime = runtime(scenario.venues.sim_threads, "load-sim")?;
    let pki = if scenario.venues.tls {
        Some(TestPki::generate()?)
    } else {
        None
    };
    let ca_path = match &pki {
        Some(pki) => {
            let path = options.report_dir.join("sim-ca.pem");
            std::fs::write(&path, &pki.ca_pem).map_err(|source| RunError::Write {
                path: path.clone(),
                source,
            })?;
            Some(std::fs::canonicalize(&path).unwrap_or(path))
        }
        None => None,
    };
    let mut sim_config = SimConfig {
        venues,
        symbols: crate::symbol_names(scenario.venues.symbols),
        bbo_per_s_per_symbol: scenario.venues.updates_per_s,
        trades_per_s_per_symbol: scenario.venues.trades_per_s,
        tick_ms: scenario.venues.tick_ms,
        paced: scenario.venues.framing == Framing::PerRecord,
        tricky_instruments: false,
        ..SimConfig::default()
    };
    if scenario.venues.port_base != 0 {
        for (index, port) in sim_config.ports.iter_mut().enumerate() {
            *port = scenario.venues.port_base.saturating_add(index as u16);
        }
    }
    let symbols = sim_config.symbols.clone();
    let sim = sim_runtime
        .block_on(async {
            match &pki {
                Some(pki) => SimVenues::start_tls(sim_config, Arc::clone(&pki.server_config)).await,
                None => SimVenues::start(sim_config).await,
            }
        })
        .map_err(RunError::Sim)?;
    let sim = Arc::new(sim);
    let result = run_with_sim(
        scenario,
        options,
        cancel,
        &sim,
        &sim_runtime,
        ca_path.as_deref(),
        &symbols,
    );
    // Every fault task has ended (each phase awaits its own): the simulators are ours again.
    match Arc::try_unwrap(sim) {
        Ok(sim) => sim_runtime.block_on(sim.shutdown()),
        Err(_) => tracing::warn!("scenario: the simulators are still shared; not shut down"),
    }
    sim_runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

#[allow(clippy::too_many_arguments)]
fn run_with_sim(
    scenario: &Scenario,
    options: &RunOptions,
    cancel: &CancellationToken,
    sim: &Arc<SimVenues>,
    sim_runtime: &tokio::runtime::Runtime,
    ca_path: Option<&Path>,
    symbols: &[String],
) -> Result<Outcome, RunError> {
    let (control_url, http_bind) = match &options.target {
        Some(url) => {
            let url = url.trim_end_matches('/').to_owned();
            let authority = http::split_url(&url)
                .map(|(authority, _)| authority)
                .ok_or_else(|| RunError::Config(format!("--target {url}: not an http:// URL")))?;
            (url, authority)
        }
        None => {
            let port = free_port()?;
            (
                format!("http://127.0.0.1:{port}"),
                format!("127.0.0.1:{port}"),
            )
        }
    };
    // A gate left by an earlier run in the same directory would release a stall at once.
    let _ = std::fs::remove_file(gate_path(&options.report_dir));
    let config = engine_config(scenario, options, sim, ca_path, &http_bind)?;
    let config_path = options.report_dir.join("engine.toml");
    std::fs::write(&config_path, &config).map_err(|source| RunError::Write {
        path: config_path.clone(),
        source,
    })?;
    let mut engine = match &options.target {
        Some(_) => {
            eprintln!(
                "scenario: driving the engine at {control_url}; the simulated venues are up and {} is a config pointing at them",
                config_path.display()
            );
            Engine::Target {
                pid: options.target_pid,
            }
        }
        None => {
            let path = options.engine.clone().unwrap_or_else(default_engine_path);
            let process = EngineProcess::start_own_group(&path, &config, true)?;
            Engine::Child {
                process: Some(process),
                path,
                config: config.clone(),
            }
        }
    };
    let ready = wait_ready(scenario, &engine, &control_url, cancel);
    let ready = match ready {
        Ok(ready) => ready,
        Err(error) => {
            stop_engine(&mut engine);
            return Err(error);
        }
    };
    let engine_path = match &engine {
        Engine::Child { path, .. } => Some(path.display().to_string()),
        Engine::Target { .. } => None,
    };
    let mut record = RunRecord::new(
        scenario,
        &options.scenario_path,
        &options.report_dir,
        options.target.is_some(),
        &control_url,
        engine_path,
    );
    record.proc_note = match (&engine, engine.pid()) {
        (Engine::Child { .. }, _) => None,
        (Engine::Target { .. }, Some(pid)) => Some(format!("/proc of the target's pid {pid}")),
        (Engine::Target { .. }, None) => Some(
            "no --target-pid: /proc sampling (RSS, CPU, threads, fds) skipped; CPU and RSS limits cannot be judged".into(),
        ),
    };
    let run_phases = scenario.run_phases();
    let mut search_steps: Vec<report::SearchStep> = Vec::new();
    let mut search_stopped: Option<String> = None;
    let browsers_spec = &scenario.browsers;
    let browser_runtime = if browsers_spec.total() > 0 {
        Some(runtime(browsers_spec.threads, "load-browser")?)
    } else {
        None
    };
    let browsers = browser_runtime.as_ref().map(|_| {
        Browsers::new(
            browsers_spec.fast,
            browsers_spec.slow,
            browsers_spec.dead,
            run_phases.len(),
        )
    });
    let ws_address_shared: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(
        endpoint(&control_url, "ws").and_then(|url| ws_address(&url)),
    ));
    let mut browser_tasks = Vec::new();
    if let (Some(runtime), Some(browsers)) = (&browser_runtime, &browsers) {
        browser_tasks = browsers::start(
            runtime,
            browsers,
            Arc::clone(&ws_address_shared),
            symbols,
            browsers_spec.symbols_per_browser,
            Duration::from_millis(browsers_spec.slow_read_delay_ms),
        );
    }
    let mut sampler = Sampler {
        started: Instant::now(),
        control_url: control_url.clone(),
        metrics_url: endpoint(&control_url, "metrics"),
        last_at: Instant::now(),
        last_proc: None,
        last_harness: None,
        last_threads_cpu: BTreeMap::new(),
        last_counters: Counters::default(),
        interval_s: scenario.sample_interval_ms as f64 / 1e3,
        series_points_max: scenario.series_points_max,
        series: BTreeMap::new(),
        health_failures_total: 0,
        last_memory: None,
        last_health: None,
    };
    record.metrics_url = sampler.metrics_url.clone();
    // A first sample sets the baselines (its deltas count nowhere).
    let mut discard = PhaseTotals::default();
    let mut scratch = browsers::latency_histogram();
    let _ = sampler.sample(&engine, None, &mut discard, None, &mut [&mut scratch]);
    let terminal = std::io::stderr().is_terminal();
    let interval = Duration::from_millis(scenario.sample_interval_ms);
    let mut measured_totals = PhaseTotals::default();
    let mut measured_health = browsers::latency_histogram();
    let mut interrupted = !ready;
    let mut failure: Option<String> = None;
    for (index, (phase, search_rate)) in run_phases.iter().enumerate() {
        if interrupted || failure.is_some() || (search_rate.is_some() && search_stopped.is_some()) {
            break;
        }
        if let Some(rate) = search_rate
            && scenario.venues.framing == Framing::Batched
        {
            // Spread over every subscribed symbol of every venue.
            let streams = (scenario.venues.symbols * sim.config().venues.len()).max(1);
            sim.set_bbo_per_s_per_symbol(rate / streams as f64);
        }
        let phase_start_s = sampler.started.elapsed().as_secs_f64();
        let mut totals = PhaseTotals::default();
        let mut health_histogram = browsers::latency_histogram();
        if let Some(browsers) = &browsers {
            browsers
                .phase_measured
                .store(phase.measured, std::sync::atomic::Ordering::Relaxed);
            browsers
                .phase
                .store(index, std::sync::atomic::Ordering::Relaxed);
        }
        // The phase's actions.
        if phase.release_sink_stall {
            let gate = gate_path(&options.report_dir);
            if let Err(error) = std::fs::write(&gate, b"go") {
                tracing::warn!(%error, "scenario: cannot write the sink-stall gate");
            }
        }
        if phase.engine_action == EngineAction::KillRestart {
            match restart_engine(&mut engine) {
                Ok(()) => {
                    totals.engine_restarts = 1;
                    match wait_ready(scenario, &engine, &control_url, cancel) {
                        Ok(true) => {
                            *ws_address_shared
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                                endpoint(&control_url, "ws").and_then(|url| ws_address(&url));
                            sampler.metrics_url = endpoint(&control_url, "metrics");
                        }
                        Ok(false) => interrupted = true,
                        Err(error) => failure = Some(error.to_string()),
                    }
                }
                Err(note) => record.notes.push(note),
            }
            if interrupted || failure.is_some() {
                break;
            }
        }
        if scenario.venues.framing == Framing::PerRecord {
            sim.set_paced_frames_per_s(phase.frames_per_s);
        }
        let rates = FaultRates {
            disconnects_per_min: phase.disconnects_per_min,
            malformed_per_min: phase.malformed_per_min,
            oversized_per_min: phase.oversized_per_min,
            notices_per_min: phase.notices_per_min,
            stalls_per_min: phase.stalls_per_min,
            stall_ms: phase.stall_ms,
            http_429_per_min: phase.http_429_per_min,
        };
        let fault_cancel = CancellationToken::new();
        let fault_task = {
            let sim = Arc::clone(sim);
            let fault_cancel = fault_cancel.clone();
            sim_runtime.spawn(async move { faults::run(&sim, rates, fault_cancel).await })
        };
        let phase_started = Instant::now();
        let phase_end = phase_started + Duration::from_secs(phase.duration_s);
        let mut next_sample = phase_started + interval;
        loop {
            let deadline = next_sample.min(phase_end);
            if !sleep_until(deadline, cancel) {
                interrupted = true;
                break;
            }
            if Instant::now() >= next_sample || Instant::now() >= phase_end {
                let measured = phase.measured.then_some(&mut measured_totals);
                let mut histograms: Vec<&mut Histogram<u64>> = vec![&mut health_histogram];
                if phase.measured {
                    histograms.push(&mut measured_health);
                }
                let line = sampler.sample(
                    &engine,
                    browsers.as_deref(),
                    &mut totals,
                    measured,
                    &mut histograms,
                );
                let elapsed = sampler.started.elapsed().as_secs();
                let progress = format!(
                    "[{}] {} {}/{} s | elapsed {elapsed} s | {line}",
                    scenario.name,
                    phase.name,
                    phase_started.elapsed().as_secs().min(phase.duration_s),
                    phase.duration_s,
                );
                if terminal {
                    eprint!("\r\x1b[K{progress}");
                } else {
                    eprintln!("{progress}");
                }
                next_sample += interval;
                while next_sample <= Instant::now() {
                    next_sample += interval;
                }
            }
            if engine.exited() {
                failure = Some(format!("the engine exited during phase {:?}", phase.name));
                break;
            }
            if Instant::now() >= phase_end {
                break;
            }
        }
        if terminal {
            eprintln!();
        }
        fault_cancel.cancel();
        let counts: FaultCounts = sim_runtime.block_on(fault_task).unwrap_or_default();
        totals.faults = counts;
        if phase.measured {
            measured_totals.faults.disconnects += counts.disconnects;
            measured_totals.faults.disconnects_made += counts.disconnects_made;
            measured_totals.faults.stalls += counts.stalls;
            measured_totals.faults.malformed += counts.malformed;
            measured_totals.faults.oversized += counts.oversized;
            measured_totals.faults.notices += counts.notices;
            measured_totals.faults.refusals += counts.refusals;
            measured_totals.engine_restarts += totals.engine_restarts;
        }
        let latency = browsers
            .as_deref()
            .map(|browsers| {
                BrowserClass::ALL
                    .iter()
                    .filter(|class| browsers.class(**class).planned > 0)
                    .filter_map(|class| {
                        browsers
                            .phase_histogram(*class, index)
                            .map(|histogram| (class.name().to_owned(), histogram))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(rate) = search_rate {
            let step = report::SearchStep::judge(*rate, &totals);
            if !step.clean {
                search_stopped = Some(format!("{:.0}/s: {}", rate, step.why));
            }
            search_steps.push(step);
        }
        record.phases.push(report::PhaseRecord {
            name: phase.name.clone(),
            measured: phase.measured,
            start_s: phase_start_s,
            end_s: sampler.started.elapsed().as_secs_f64(),
            totals,
            browser_latency: latency,
            health_latency: health_histogram,
        });
    }
    if scenario.venues.framing == Framing::PerRecord {
        sim.set_paced_frames_per_s(0.0);
    }
    if let Some(browsers) = &browsers {
        browsers.stop();
        if let Some(runtime) = &browser_runtime {
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), async {
                    for task in browser_tasks {
                        let _ = task.await;
                    }
                })
                .await
            });
        }
        record.browsers = BrowserClass::ALL
            .iter()
            .map(|class| {
                let shared = browsers.class(*class);
                let load = |counter: &std::sync::atomic::AtomicU64| {
                    counter.load(std::sync::atomic::Ordering::Relaxed)
                };
                report::BrowserRecord {
                    class: class.name().to_owned(),
                    planned: shared.planned,
                    connects: load(&shared.connects),
                    connect_failures: load(&shared.connect_failures),
                    closed_by_server: load(&shared.closed_by_server),
                    frames: load(&shared.frames),
                    bytes: load(&shared.bytes),
                    latency_measured: browsers.measured_histogram(*class),
                }
            })
            .filter(|browser| browser.planned > 0)
            .collect();
    }
    if let Some(runtime) = browser_runtime {
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
    record.last_memory = sampler.last_memory.take();
    record.last_health = sampler.last_health.take();
    // The engine: SIGTERM, its exit code and shutdown line.
    if let Engine::Child { process, .. } = &mut engine
        && let Some(process) = process.take()
    {
        match process.terminate_with_report() {
            Ok(exit) => {
                record.engine_exit_code = Some(exit.code);
                record.engine_shutdown = exit.shutdown;
            }
            Err(error) => record.notes.push(format!("stopping the engine: {error}")),
        }
    }
    if scenario
        .sinks
        .iter()
        .any(|sink| sink.kind == SinkKind::Parquet)
        && options.target.is_none()
    {
        record.parquet = Some(report::check_parquet_tree(
            &options.report_dir.join("parquet"),
        ));
    }
    if scenario.search.is_some() {
        record.search = Some(report::SearchRecord::new(
            search_steps,
            search_stopped,
            interrupted || failure.is_some(),
        ));
    }
    record.series = sampler.series;
    record.measured = measured_totals;
    record.measured_health_latency = measured_health;
    record.interrupted = interrupted;
    record.error = failure;
    record.duration_s = record.phases.last().map_or(0.0, |phase| phase.end_s);
    Ok(Outcome { record })
}

/// SIGKILL, then the same config again (a child only).
fn restart_engine(engine: &mut Engine) -> Result<(), String> {
    let Engine::Child {
        process,
        path,
        config,
    } = engine
    else {
        return Err(
            "engine_action = \"kill_restart\" needs a child engine: skipped with --target".into(),
        );
    };
    if let Some(running) = process.take() {
        running
            .kill()
            .map_err(|error| format!("killing the engine: {error}"))?;
    }
    let started = EngineProcess::start_own_group(path, config, true)
        .map_err(|error| format!("restarting the engine: {error}"))?;
    *process = Some(started);
    Ok(())
}

fn stop_engine(engine: &mut Engine) {
    if let Engine::Child { process, .. } = engine
        && let Some(process) = process.take()
    {
        let _ = process.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "# HELP x\n\
tickflow_venue_frames_total{venue=\"binance\"} 10\n\
tickflow_venue_frames_total{venue=\"okx\"} 5\n\
tickflow_venue_frames_totally 99\n\
tickflow_venue_exchange_latency_seconds_bucket{venue=\"binance\",le=\"0.001\"} 2\n\
tickflow_venue_exchange_latency_seconds_bucket{venue=\"binance\",le=\"+Inf\"} 4\n\
tickflow_venue_exchange_latency_seconds_bucket{venue=\"okx\",le=\"0.001\"} 1\n\
tickflow_venue_exchange_latency_seconds_bucket{venue=\"okx\",le=\"+Inf\"} 1\n";

    #[test]
    fn prometheus_families_are_summed_over_labels() {
        assert_eq!(
            prometheus_sum(EXPOSITION, "tickflow_venue_frames_total"),
            Some(15)
        );
        assert_eq!(prometheus_sum(EXPOSITION, "tickflow_absent"), None);
        let buckets = prometheus_buckets(EXPOSITION, "tickflow_venue_exchange_latency_seconds");
        assert_eq!(buckets, vec![(0.001, 3), (f64::INFINITY, 5)]);
        assert_eq!(
            bucket_delta(&[(0.001, 1), (f64::INFINITY, 2)], &buckets),
            vec![(0.001, 2), (f64::INFINITY, 3)]
        );
        // A restart (counts went down) counts from zero.
        assert_eq!(bucket_delta(&[(0.001, 9)], &[(0.001, 3)]), vec![(0.001, 3)]);
    }

    #[test]
    fn deltas_survive_a_restart() {
        assert_eq!(delta(Some(5), Some(9)), 4);
        assert_eq!(delta(Some(9), Some(3)), 3);
        assert_eq!(delta(None, Some(3)), 3);
        assert_eq!(delta(Some(3), None), 0);
    }

    #[test]
    fn a_missed_scrape_does_not_count_the_totals_again() {
        let scrape = |drops: u64, delivered: u64, lost: u64, fast: u64, slow: u64| Counters {
            frames: Some(delivered),
            records: Some(delivered),
            ring_drops: Some(drops),
            reconnects: Some(1),
            decode_errors: Some(0),
            sinks: BTreeMap::from([("ws".to_owned(), (delivered, lost))]),
            exchange_latency: vec![(0.001, fast), (f64::INFINITY, fast + slow)],
        };
        let samples = [
            scrape(100, 1_000, 10, 50, 5),
            // Nothing answered: every source missed.
            Counters::default(),
            scrape(103, 1_200, 12, 60, 6),
        ];
        let mut last = Counters::default();
        let mut totals = PhaseTotals::default();
        for (index, fresh) in samples.into_iter().enumerate() {
            let current = fresh.clone().or_previous(&last);
            let step = counter_step(&last, &current, &fresh);
            if index == 1 {
                assert_eq!(step.records, 0);
                assert_eq!(step.sink_lost, 0);
                assert!(!step.seen.ring_drops && step.seen.sinks.is_empty());
                assert_eq!(step.exchange_latency, vec![(0.001, 0), (f64::INFINITY, 0)]);
            }
            // The first sample is the baseline (its deltas count nowhere).
            if index > 0 {
                totals.add(&step);
            }
            last = current;
        }
        assert_eq!(totals.ring_drops, 3);
        assert_eq!(totals.records, 200);
        assert_eq!(totals.sink_lost, 2);
        assert_eq!(totals.sink_out.get("ws"), Some(&200));
        assert_eq!(
            totals.exchange_latency,
            vec![(0.001, 10), (f64::INFINITY, 11)]
        );
        assert!(totals.seen.ring_drops && totals.seen.sinks.contains("ws"));
    }

    #[test]
    fn overrides_merge_tables_and_replace_values() {
        let mut base: toml::Table = "[a]\nx = 1\ny = 2\n[b]\nz = 3\n".parse().unwrap();
        let overrides: toml::Table = "[a]\ny = 5\n[c]\nw = 1\n".parse().unwrap();
        merge_toml(&mut base, &overrides);
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(5));
        assert_eq!(base["b"]["z"].as_integer(), Some(3));
        assert_eq!(base["c"]["w"].as_integer(), Some(1));
    }
}
