//! `tickflow-load scenario FILE.toml`: a load scenario described in a file (simulated venues, the
//! engine's config and sinks, simulated browsers, phases and pass/fail limits), run against a
//! `tickflow` child process or an engine already running, measured every second, and reported as
//! `report.json`, `summary.txt` and SVG plots. This module owns the file's schema and its checks;
//! `run` drives a run, `sampler` measures, `series` bounds the time series, `report` judges the
//! limits and writes the files, `plots` draws them, `browsers` are the simulated browsers.

pub mod browsers;
pub mod http;
pub mod plots;
pub mod report;
pub mod run;
pub mod series;

use std::path::Path;

use serde::Deserialize;
use tickflow_core::venue::Venue;

/// Why a scenario file cannot be run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read the scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path}: {message}")]
    Parse { path: String, message: String },
    #[error("scenario {path}: `{key}`: {reason}")]
    Invalid {
        path: String,
        key: String,
        reason: String,
    },
}

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// What the scenario proves (one line, shown in the summary).
    #[serde(default)]
    pub description: String,
    /// Seconds between samples.
    #[serde(default = "default_sample_interval_ms")]
    pub sample_interval_ms: u64,
    /// Points kept per time series, whatever the duration (older points are merged in pairs).
    #[serde(default = "default_series_points_max")]
    pub series_points_max: usize,
    /// Longest wait for every engine connection to be up before the first phase.
    #[serde(default = "default_ready_timeout_s")]
    pub ready_timeout_s: u64,
    pub venues: VenuesSpec,
    #[serde(default)]
    pub engine: EngineSpec,
    #[serde(default)]
    pub sinks: Vec<SinkSpec>,
    #[serde(default)]
    pub browsers: BrowsersSpec,
    pub phases: Vec<PhaseSpec>,
    #[serde(default)]
    pub limits: Limits,
    /// After the phases: raise the offered rate step by step until ring drops or sink losses
    /// appear; the highest clean step is the run's figure.
    #[serde(default)]
    pub search: Option<SearchSpec>,
}

/// A search for the highest zero-drop rate, on the same engine and connections: step `i`
/// offers `start_per_s × step_factor^i` best bid/ask updates per second over every venue (batched
/// framing: spread over the symbols; per-record framing: the paced aggregate rate) for
/// `step_duration_s`, and the search stops at the first step with a ring drop, a sink loss, or
/// fewer than `load::SUSTAINED_SHARE` of the offered records in. Search steps are not measured
/// phases: the scenario's limits do not count them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    pub start_per_s: f64,
    #[serde(default = "default_step_factor")]
    pub step_factor: f64,
    #[serde(default = "default_steps_max")]
    pub steps_max: u32,
    pub step_duration_s: u64,
    /// A limit: the highest clean step offered at least this many updates per second.
    #[serde(default)]
    pub clean_per_s_min: Option<f64>,
}

fn default_step_factor() -> f64 {
    1.5
}
fn default_steps_max() -> u32 {
    8
}

impl SearchSpec {
    /// The offered rate of step `index` (from 0).
    pub fn rate_per_s(&self, index: u32) -> f64 {
        self.start_per_s * self.step_factor.powi(index as i32)
    }
}

fn default_sample_interval_ms() -> u64 {
    1_000
}
fn default_series_points_max() -> usize {
    720
}
fn default_ready_timeout_s() -> u64 {
    60
}

/// How the simulated venues send.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Each simulator tick's frames written together (many frames per TLS record and read).
    #[default]
    Batched,
    /// The simulator's paced mode: every best bid/ask frame written and flushed on its own, at an
    /// aggregate rate (`frames_per_s` of each phase).
    PerRecord,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenuesSpec {
    /// Venue names (`binance`, `okx`, ...); default all eight.
    #[serde(default)]
    pub venues: Vec<String>,
    pub symbols: usize,
    /// Batched framing: best bid/ask updates per second per symbol per venue connection.
    #[serde(default = "default_updates_per_s")]
    pub updates_per_s: f64,
    /// Batched framing: trades per second per symbol (0: the engine subscribes best bid/ask only).
    #[serde(default)]
    pub trades_per_s: f64,
    /// Serve `wss://` with a CA made at run time (the engine trusts it).
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub framing: Framing,
    /// Simulator tick (batched framing).
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Tokio worker threads of the simulators.
    #[serde(default = "default_one")]
    pub sim_threads: usize,
    /// First port of the simulators (the venues take this and the next seven); 0 = any. Set it
    /// with `--target`, so the running engine's config can name them.
    #[serde(default)]
    pub port_base: u16,
}

fn default_updates_per_s() -> f64 {
    10.0
}
fn default_tick_ms() -> u64 {
    5
}
fn default_one() -> usize {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    #[serde(default = "default_one")]
    pub shards: usize,
    /// Threads of the feeds runtime.
    #[serde(default = "default_one")]
    pub worker_threads: usize,
    #[serde(default = "default_ring_capacity_records")]
    pub ring_capacity_records: usize,
    /// `windows.buckets` (1-s buckets).
    #[serde(default = "default_buckets")]
    pub buckets: usize,
    /// Any engine config keys, merged over the written config (tables merge, values replace):
    /// `[engine.overrides.windows]`, `[engine.overrides.http]`, ...
    #[serde(default)]
    pub overrides: toml::Table,
}

fn default_ring_capacity_records() -> usize {
    16_384
}
fn default_buckets() -> usize {
    60
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec {
            shards: 1,
            worker_threads: 1,
            ring_capacity_records: default_ring_capacity_records(),
            buckets: default_buckets(),
            overrides: toml::Table::new(),
        }
    }
}

/// Which plugin a sink is.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// `libtickflow_parquet.so`, its `root` under the report directory.
    Parquet,
    /// `libtickflow_ws_broadcast.so` on a loopback port (the browsers connect to it).
    WsBroadcast,
    /// `libtickflow_metrics.so` on a loopback port (the harness scrapes it).
    Metrics,
    /// `libtickflow_test_sink.so`: `mode = "noop"`, or `"stall"` (blocks until a phase says
    /// `release_sink_stall`).
    Test,
}

impl SinkKind {
    pub fn library(self) -> &'static str {
        match self {
            SinkKind::Parquet => "tickflow_parquet",
            SinkKind::WsBroadcast => "tickflow_ws_broadcast",
            SinkKind::Metrics => "tickflow_metrics",
            SinkKind::Test => "tickflow_test_sink",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    pub kind: SinkKind,
    /// The sink's name (default: the kind).
    #[serde(default)]
    pub name: Option<String>,
    /// `policy` (default: the engine's for the plugin).
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub ring_capacity_records: Option<usize>,
    /// Test sink: `noop` or `stall`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Plugin config keys, merged over what the harness writes (`bind`, `root`, ...).
    #[serde(default)]
    pub config: toml::Table,
}

impl SinkSpec {
    pub fn sink_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            match self.kind {
                SinkKind::Parquet => "parquet",
                SinkKind::WsBroadcast => "ws",
                SinkKind::Metrics => "metrics",
                SinkKind::Test => "test",
            }
            .to_owned()
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowsersSpec {
    #[serde(default)]
    pub fast: usize,
    /// Read one frame, then sleep `slow_read_delay_ms`.
    #[serde(default)]
    pub slow: usize,
    /// Never read, never answer pings.
    #[serde(default)]
    pub dead: usize,
    #[serde(default = "default_slow_read_delay_ms")]
    pub slow_read_delay_ms: u64,
    /// Symbols each browser subscribes to (`quotes:` and `spreads:` of each; browser i starts at
    /// symbol i × 7, wrapping).
    #[serde(default = "default_symbols_per_browser")]
    pub symbols_per_browser: usize,
    /// Tokio worker threads of the browsers.
    #[serde(default = "default_one")]
    pub threads: usize,
}

fn default_slow_read_delay_ms() -> u64 {
    500
}
fn default_symbols_per_browser() -> usize {
    5
}

impl Default for BrowsersSpec {
    fn default() -> Self {
        BrowsersSpec {
            fast: 0,
            slow: 0,
            dead: 0,
            slow_read_delay_ms: default_slow_read_delay_ms(),
            symbols_per_browser: default_symbols_per_browser(),
            threads: 1,
        }
    }
}

impl BrowsersSpec {
    pub fn total(&self) -> usize {
        self.fast + self.slow + self.dead
    }
}

/// What the engine undergoes at the start of a phase.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EngineAction {
    #[default]
    None,
    /// SIGKILL (mid-write), then start it again with the same config.
    KillRestart,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// `warm-up`, `steady`, `storm`, `drain`, ... (free text).
    pub name: String,
    pub duration_s: u64,
    /// Limits and per-phase figures count this phase (false for a warm-up).
    #[serde(default = "default_true")]
    pub measured: bool,
    /// Per-record framing: aggregate frames per second over every venue during this phase.
    #[serde(default)]
    pub frames_per_s: f64,
    /// Faults per minute per venue during the phase.
    #[serde(default)]
    pub disconnects_per_min: f64,
    #[serde(default)]
    pub stalls_per_min: f64,
    #[serde(default = "default_stall_ms")]
    pub stall_ms: u64,
    #[serde(default)]
    pub malformed_per_min: f64,
    #[serde(default)]
    pub oversized_per_min: f64,
    #[serde(default)]
    pub notices_per_min: f64,
    /// Each: the venue's next connect gets HTTP 429 (`Retry-After`) and its connections are cut.
    #[serde(default)]
    pub http_429_per_min: f64,
    /// Create the test sink's gate file at the start of the phase (a stalled sink resumes).
    #[serde(default)]
    pub release_sink_stall: bool,
    #[serde(default)]
    pub engine_action: EngineAction,
}

fn default_true() -> bool {
    true
}
fn default_stall_ms() -> u64 {
    10_000
}

/// Pass/fail limits; each one set is judged and reported. All over the measured phases.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// RSS at the end of the last measured phase over RSS at the start of the first, in %.
    pub rss_growth_max_pct: Option<f64>,
    pub rss_max_mib: Option<f64>,
    pub ring_drops_max: Option<u64>,
    /// Records lost on the way to any sink (ring full, stalled, disabled, failed batches).
    pub sink_lost_max: Option<u64>,
    /// The same for named sinks: `[limits.sink_lost_max_by_sink]` `ws = 0`.
    #[serde(default)]
    pub sink_lost_max_by_sink: std::collections::BTreeMap<String, u64>,
    /// Fast browsers' p99 latency, venue stamp → browser receipt, over every measured phase.
    pub fast_p99_ms_max: Option<f64>,
    /// Engine CPU (process, /proc) per frame the engine read, over the measured phases.
    pub cpu_us_per_msg_max: Option<f64>,
    /// /health answers that were not 200 (or did not come) during measured phases.
    pub health_failures_max: Option<u64>,
    pub decode_errors_max: Option<u64>,
    /// Fast browsers the server closed or that could not connect.
    pub fast_browsers_lost_max: Option<u64>,
    /// At least this many records per second into the engine, on average over measured phases.
    pub records_per_s_min: Option<f64>,
    /// At least this many reconnects over the measured phases (a storm really happened).
    pub reconnects_min: Option<u64>,
    /// At most this many cuts the simulators made (a live connection that had served data
    /// dropped) without an engine reconnect for it, over the measured phases: every cut resumed.
    pub cuts_unresumed_max: Option<u64>,
    /// Visible Parquet files that do not read back whole.
    pub parquet_invalid_files_max: Option<u64>,
    /// The engine exits 0 on SIGTERM at the end.
    pub engine_exit_clean: Option<bool>,
    /// Highest engine RSS over its own memory budget (/api/monitoring/memory
    /// `budget.rss_percent_of_budget`), in %, sampled during measured phases.
    pub rss_pct_of_budget_max: Option<f64>,
    /// A sanity check of the run itself: this process's CPU (simulators, browsers, sampler) in
    /// % of the cores it can use (its simulator and browser threads plus one, at most the
    /// machine's), the highest of the measured phases. Above it the harness, not the engine, was
    /// the bottleneck: the run is invalid (a failed verdict, "harness saturated").
    pub harness_cpu_pct_max: Option<f64>,
    /// At least this many records lost on the way to a sink: `[[limits.sink_lost_min_by_sink]]`
    /// `sink = "stalled"`, `min = 1`, `phase = "stalled"` (no phase: every measured phase).
    #[serde(default)]
    pub sink_lost_min_by_sink: Vec<SinkCountMin>,
    /// At least this many records delivered to a sink (it works, or resumed after a stall): the
    /// same form as `sink_lost_min_by_sink`.
    #[serde(default)]
    pub sink_out_min_by_sink: Vec<SinkCountMin>,
}

/// A lower bound on one sink's count, over one phase or every measured phase.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SinkCountMin {
    pub sink: String,
    pub min: u64,
    /// A phase's name (measured or not); none: every measured phase together.
    #[serde(default)]
    pub phase: Option<String>,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&path.display().to_string(), &text)
    }

    /// Parses and checks a scenario's text (`path` names it in errors).
    pub fn parse(path: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|error| ScenarioError::Parse {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        scenario.validate(path)?;
        Ok(scenario)
    }

    fn validate(&self, path: &str) -> Result<(), ScenarioError> {
        let invalid = |key: &str, reason: String| ScenarioError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        if !(100..=60_000).contains(&self.sample_interval_ms) {
            return Err(invalid(
                "sample_interval_ms",
                format!("{} is outside 100..=60000", self.sample_interval_ms),
            ));
        }
        if !(16..=100_000).contains(&self.series_points_max) {
            return Err(invalid(
                "series_points_max",
                format!("{} is outside 16..=100000", self.series_points_max),
            ));
        }
        self.venue_list()
            .map_err(|reason| invalid("venues.venues", reason))?;
        if self.venues.symbols == 0 || self.venues.symbols > 100_000 {
            return Err(invalid(
                "venues.symbols",
                format!("{} is outside 1..=100000", self.venues.symbols),
            ));
        }
        if !(self.venues.updates_per_s.is_finite() && self.venues.updates_per_s >= 0.0) {
            return Err(invalid("venues.updates_per_s", "must be ≥ 0".into()));
        }
        if !(self.venues.trades_per_s.is_finite() && self.venues.trades_per_s >= 0.0) {
            return Err(invalid("venues.trades_per_s", "must be ≥ 0".into()));
        }
        if self.venues.tick_ms == 0 || self.venues.tick_ms > 1_000 {
            return Err(invalid("venues.tick_ms", "must be 1..=1000".into()));
        }
        if self.venues.sim_threads == 0 || self.venues.sim_threads > 64 {
            return Err(invalid("venues.sim_threads", "must be 1..=64".into()));
        }
        if self.engine.shards == 0 || self.engine.shards > 64 {
            return Err(invalid("engine.shards", "must be 1..=64".into()));
        }
        if self.engine.worker_threads == 0 || self.engine.worker_threads > 64 {
            return Err(invalid("engine.worker_threads", "must be 1..=64".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, sink) in self.sinks.iter().enumerate() {
            if !names.insert(sink.sink_name()) {
                return Err(invalid(
                    &format!("sinks[{index}].name"),
                    format!("{:?} names two sinks", sink.sink_name()),
                ));
            }
            match (&sink.kind, sink.mode.as_deref()) {
                (SinkKind::Test, None | Some("noop" | "stall")) => {}
                (SinkKind::Test, Some(other)) => {
                    return Err(invalid(
                        &format!("sinks[{index}].mode"),
                        format!("{other:?}: the harness runs the test sink as noop or stall"),
                    ));
                }
                (_, Some(_)) => {
                    return Err(invalid(
                        &format!("sinks[{index}].mode"),
                        "only the test sink has a mode".into(),
                    ));
                }
                (_, None) => {}
            }
        }
        let kinds = |kind: SinkKind| self.sinks.iter().filter(|sink| sink.kind == kind).count();
        if kinds(SinkKind::WsBroadcast) > 1 || kinds(SinkKind::Metrics) > 1 {
            return Err(invalid(
                "sinks",
                "at most one ws_broadcast and one metrics sink".into(),
            ));
        }
        if self.browsers.total() > 0 && kinds(SinkKind::WsBroadcast) == 0 {
            return Err(invalid(
                "browsers",
                "browsers need a sink of kind = \"ws_broadcast\"".into(),
            ));
        }
        if self.browsers.total() > 20_000 {
            return Err(invalid("browsers", "at most 20000 browsers".into()));
        }
        if self.browsers.symbols_per_browser == 0 || self.browsers.symbols_per_browser > 100 {
            return Err(invalid(
                "browsers.symbols_per_browser",
                "must be 1..=100".into(),
            ));
        }
        if self.browsers.threads == 0 || self.browsers.threads > 64 {
            return Err(invalid("browsers.threads", "must be 1..=64".into()));
        }
        if self.phases.is_empty() {
            return Err(invalid("phases", "needs at least one [[phases]]".into()));
        }
        for (index, phase) in self.phases.iter().enumerate() {
            let key = |field: &str| format!("phases[{index}].{field}");
            if phase.duration_s == 0 {
                return Err(invalid(&key("duration_s"), "must be at least 1".into()));
            }
            for (field, value) in [
                ("frames_per_s", phase.frames_per_s),
                ("disconnects_per_min", phase.disconnects_per_min),
                ("stalls_per_min", phase.stalls_per_min),
                ("malformed_per_min", phase.malformed_per_min),
                ("oversized_per_min", phase.oversized_per_min),
                ("notices_per_min", phase.notices_per_min),
                ("http_429_per_min", phase.http_429_per_min),
            ] {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(invalid(&key(field), format!("{value} must be ≥ 0")));
                }
            }
            if phase.frames_per_s > 0.0 && self.venues.framing != Framing::PerRecord {
                return Err(invalid(
                    &key("frames_per_s"),
                    "only with venues.framing = \"per_record\" (batched venues send updates_per_s)"
                        .into(),
                ));
            }
            if phase.release_sink_stall
                && !self.sinks.iter().any(|sink| {
                    sink.kind == SinkKind::Test && sink.mode.as_deref() == Some("stall")
                })
            {
                return Err(invalid(
                    &key("release_sink_stall"),
                    "no test sink with mode = \"stall\"".into(),
                ));
            }
        }
        for name in self.limits.sink_lost_max_by_sink.keys() {
            if !names.contains(name) {
                return Err(invalid(
                    &format!("limits.sink_lost_max_by_sink.{name}"),
                    "no sink of that name".into(),
                ));
            }
        }
        for (key, bounds) in [
            ("sink_lost_min_by_sink", &self.limits.sink_lost_min_by_sink),
            ("sink_out_min_by_sink", &self.limits.sink_out_min_by_sink),
        ] {
            for (index, bound) in bounds.iter().enumerate() {
                if !names.contains(&bound.sink) {
                    return Err(invalid(
                        &format!("limits.{key}[{index}].sink"),
                        format!("no sink named {:?}", bound.sink),
                    ));
                }
                if let Some(phase) = &bound.phase
                    && !self.phases.iter().any(|candidate| &candidate.name == phase)
                {
                    return Err(invalid(
                        &format!("limits.{key}[{index}].phase"),
                        format!("no phase named {phase:?}"),
                    ));
                }
            }
        }
        if let Some(search) = &self.search {
            if !(search.start_per_s.is_finite() && search.start_per_s > 0.0) {
                return Err(invalid("search.start_per_s", "must be > 0".into()));
            }
            if !(search.step_factor.is_finite() && search.step_factor > 1.0) {
                return Err(invalid("search.step_factor", "must be > 1".into()));
            }
            if !(1..=64).contains(&search.steps_max) {
                return Err(invalid("search.steps_max", "must be 1..=64".into()));
            }
            if search.step_duration_s == 0 {
                return Err(invalid(
                    "search.step_duration_s",
                    "must be at least 1".into(),
                ));
            }
            if let Some(min) = search.clean_per_s_min
                && !(min.is_finite() && min >= 0.0)
            {
                return Err(invalid("search.clean_per_s_min", "must be ≥ 0".into()));
            }
        }
        if !self.phases.iter().any(|phase| phase.measured) {
            return Err(invalid(
                "phases",
                "at least one phase must be measured".into(),
            ));
        }
        Ok(())
    }

    /// The simulated venues (deduplicated, in order).
    pub fn venue_list(&self) -> Result<Vec<Venue>, String> {
        if self.venues.venues.is_empty() {
            return Ok(Venue::ALL.to_vec());
        }
        let mut venues = Vec::new();
        for name in &self.venues.venues {
            let venue = Venue::from_name(name.trim())
                .ok_or_else(|| format!("unknown venue {name:?} (binance, okx, bybit, ...)"))?;
            if !venues.contains(&venue) {
                venues.push(venue);
            }
        }
        if venues.len() < 2 {
            return Err("needs at least two venues (spreads are between venues)".into());
        }
        Ok(venues)
    }

    /// Total of the phases' durations (a search's steps included, all of them).
    pub fn duration_s(&self) -> u64 {
        self.phases
            .iter()
            .map(|phase| phase.duration_s)
            .sum::<u64>()
            + self.search.as_ref().map_or(0, |search| {
                u64::from(search.steps_max).saturating_mul(search.step_duration_s)
            })
    }

    /// The phases to run: the scenario's, then a search's steps (each with its offered rate).
    pub fn run_phases(&self) -> Vec<(PhaseSpec, Option<f64>)> {
        let mut phases: Vec<(PhaseSpec, Option<f64>)> = self
            .phases
            .iter()
            .map(|phase| (phase.clone(), None))
            .collect();
        if let Some(search) = &self.search {
            for index in 0..search.steps_max {
                let rate = search.rate_per_s(index);
                phases.push((
                    PhaseSpec {
                        name: format!("search-{}", index + 1),
                        duration_s: search.step_duration_s,
                        measured: false,
                        frames_per_s: if self.venues.framing == Framing::PerRecord {
                            rate
                        } else {
                            0.0
                        },
                        disconnects_per_min: 0.0,
                        stalls_per_min: 0.0,
                        stall_ms: default_stall_ms(),
                        malformed_per_min: 0.0,
                        oversized_per_min: 0.0,
                        notices_per_min: 0.0,
                        http_429_per_min: 0.0,
                        release_sink_stall: false,
                        engine_action: EngineAction::None,
                    },
                    Some(rate),
                ));
            }
        }
        phases
    }

    /// Total of the measured phases' durations.
    pub fn measured_duration_s(&self) -> u64 {
        self.phases
            .iter()
            .filter(|phase| phase.measured)
            .map(|phase| phase.duration_s)
            .sum()
    }

    /// The measured phases scaled so that they last `measured_s` together (each at least 1 s);
    /// unmeasured phases (a warm-up) keep their configured length: a shorter run still warms up
    /// as long as the scenario says.
    pub fn scale_to(&mut self, measured_s: u64) {
        let current = self.measured_duration_s().max(1) as f64;
        let factor = measured_s as f64 / current;
        for phase in self.phases.iter_mut().filter(|phase| phase.measured) {
            phase.duration_s = ((phase.duration_s as f64 * factor).round() as u64).max(1);
        }
    }
}

/// Draws the plots and writes `report.json` and `summary.txt` into the record's report
/// directory; returns whether the run passed and the summary. Plots that cannot be drawn are
/// warned about and left out of the report.
pub fn write_report(record: &report::RunRecord) -> Result<(bool, String), report::WriteError> {
    let plots = match plots::draw_all(record, &record.report_dir) {
        Ok(names) => names,
        Err(error) => {
            tracing::warn!(%error, "scenario: plots not drawn");
            Vec::new()
        }
    };
    let (_, passed, summary) = report::write(record, &plots)?;
    Ok((passed, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[venues]
symbols = 4
[[phases]]
name = "steady"
duration_s = 3
"#;

    fn error_of(text: &str) -> String {
        Scenario::parse("t.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_scenario_parses_with_defaults() {
        let scenario = Scenario::parse("t.toml", MINIMAL).unwrap();
        assert_eq!(scenario.venue_list().unwrap().len(), 8);
        assert_eq!(scenario.sample_interval_ms, 1_000);
        assert!(scenario.phases[0].measured);
        assert_eq!(scenario.limits, Limits::default());
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = error_of(&format!("{MINIMAL}\n[limits]\nrss_growth_pct = 3\n"));
        assert!(unknown.contains("rss_growth_pct"), "{unknown}");
        let zero = error_of(&MINIMAL.replace("duration_s = 3", "duration_s = 0"));
        assert!(zero.contains("phases[0].duration_s"), "{zero}");
        let venue =
            error_of(&MINIMAL.replace("symbols = 4", "symbols = 4\nvenues = [\"nyse\", \"okx\"]"));
        assert!(
            venue.contains("venues.venues") && venue.contains("nyse"),
            "{venue}"
        );
        let browsers = error_of(&format!("{MINIMAL}\n[browsers]\nfast = 2\n"));
        assert!(browsers.contains("ws_broadcast"), "{browsers}");
        let rate =
            error_of(&MINIMAL.replace("duration_s = 3", "duration_s = 3\nframes_per_s = 10"));
        assert!(rate.contains("phases[0].frames_per_s"), "{rate}");
        let kind = error_of(&format!("{MINIMAL}\n[[sinks]]\nkind = \"kafka\"\n"));
        assert!(kind.contains("kafka"), "{kind}");
    }

    #[test]
    fn a_search_adds_unmeasured_steps_at_rising_rates() {
        let text = format!(
            "{MINIMAL}\n[search]\nstart_per_s = 1000.0\nstep_factor = 2.0\nsteps_max = 3\nstep_duration_s = 4\n"
        );
        let scenario = Scenario::parse("t.toml", &text).unwrap();
        let phases = scenario.run_phases();
        assert_eq!(phases.len(), 4);
        assert_eq!(phases[0].1, None);
        let rates: Vec<Option<f64>> = phases[1..].iter().map(|(_, rate)| *rate).collect();
        assert_eq!(rates, vec![Some(1000.0), Some(2000.0), Some(4000.0)]);
        assert!(phases[1..].iter().all(|(phase, _)| !phase.measured
            && phase.duration_s == 4
            && phase.frames_per_s == 0.0));
        assert_eq!(scenario.duration_s(), 3 + 12);
        let factor = error_of(&text.replace("step_factor = 2.0", "step_factor = 1.0"));
        assert!(factor.contains("search.step_factor"), "{factor}");
        // Per-record framing: the step's rate is the paced aggregate rate.
        let paced = Scenario::parse(
            "t.toml",
            &text.replace("symbols = 4", "symbols = 4\nframing = \"per_record\""),
        )
        .unwrap();
        assert_eq!(paced.run_phases()[2].0.frames_per_s, 2000.0);
    }

    #[test]
    fn scaling_keeps_every_phase_and_the_warm_up() {
        let mut scenario = Scenario::parse(
            "t.toml",
            &format!(
                "{MINIMAL}\n[[phases]]\nname = \"drain\"\nduration_s = 1\n\
                 [[phases]]\nname = \"warm-up\"\nduration_s = 7\nmeasured = false\n"
            ),
        )
        .unwrap();
        scenario.scale_to(40);
        assert_eq!(scenario.phases[0].duration_s, 30);
        assert_eq!(scenario.phases[1].duration_s, 10);
        assert_eq!(
            scenario.phases[2].duration_s, 7,
            "the warm-up keeps its length"
        );
        assert_eq!(scenario.measured_duration_s(), 40);
        scenario.scale_to(1);
        assert!(scenario.phases.iter().all(|phase| phase.duration_s >= 1));
        assert_eq!(scenario.phases[2].duration_s, 7);
    }
}
