//! A scenario's figures: per-phase and measured totals, latency percentiles, the verdict of each
//! limit, and two files: `report.json` (every series, downsampled; every phase; every verdict;
//! the plots `plots` drew) and `summary.txt` (for a human). Also reads a Parquet tree back (every
//! visible file must read whole).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::series::Series;
use super::{Limits, Scenario};
use crate::faults::FaultCounts;

/// Below this many frames per second a phase is idle (keep-alive frames only): no CPU per
/// message.
pub const PER_MESSAGE_FRAMES_PER_S_MIN: f64 = 10.0;

/// Which engine counters were really read (not carried over from an earlier sample) at least
/// once: a limit on a counter that never came is "not measured", not held at 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountersSeen {
    pub ring_drops: bool,
    pub decode_errors: bool,
    pub reconnects: bool,
    /// Sinks whose /health counters came.
    pub sinks: std::collections::BTreeSet<String>,
}

/// Counts over a phase (or over every measured phase).
#[derive(Clone, Debug, Default)]
pub struct PhaseTotals {
    pub seen: CountersSeen,
    pub wall_s: f64,
    /// Engine process CPU over `cpu_wall_s` (the samples that had /proc).
    pub cpu_ns: u64,
    pub cpu_wall_s: f64,
    /// This process's CPU (simulators, browsers, sampler).
    pub harness_cpu_ns: u64,
    pub frames: u64,
    pub records: u64,
    pub ring_drops: u64,
    pub reconnects: u64,
    pub decode_errors: u64,
    pub sink_lost: u64,
    pub sink_out: BTreeMap<String, u64>,
    pub sink_lost_by: BTreeMap<String, u64>,
    pub health_failures: u64,
    pub samples: u64,
    pub rss_mib_first: Option<f64>,
    pub rss_mib_last: Option<f64>,
    pub rss_mib_max: Option<f64>,
    /// Highest RSS over the engine's memory budget, % (/api/monitoring/memory).
    pub rss_pct_of_budget_max: Option<f64>,
    /// Venue timestamp → engine receive, bucket counts (le seconds, count in the bucket's
    /// cumulative form).
    pub exchange_latency: Vec<(f64, u64)>,
    pub faults: FaultCounts,
    pub engine_restarts: u64,
}

impl PhaseTotals {
    pub fn add(&mut self, step: &PhaseTotals) {
        self.seen.ring_drops |= step.seen.ring_drops;
        self.seen.decode_errors |= step.seen.decode_errors;
        self.seen.reconnects |= step.seen.reconnects;
        self.seen.sinks.extend(step.seen.sinks.iter().cloned());
        self.wall_s += step.wall_s;
        self.cpu_ns += step.cpu_ns;
        self.cpu_wall_s += step.cpu_wall_s;
        self.harness_cpu_ns += step.harness_cpu_ns;
        self.frames += step.frames;
        self.records += step.records;
        self.ring_drops += step.ring_drops;
        self.reconnects += step.reconnects;
        self.decode_errors += step.decode_errors;
        self.sink_lost += step.sink_lost;
        for (name, out) in &step.sink_out {
            *self.sink_out.entry(name.clone()).or_insert(0) += out;
        }
        for (name, lost) in &step.sink_lost_by {
            *self.sink_lost_by.entry(name.clone()).or_insert(0) += lost;
        }
        self.health_failures += step.health_failures;
        self.samples += 1;
        if self.rss_mib_first.is_none() {
            self.rss_mib_first = step.rss_mib_first;
        }
        if step.rss_mib_last.is_some() {
            self.rss_mib_last = step.rss_mib_last;
        }
        self.rss_mib_max = max_of(self.rss_mib_max, step.rss_mib_max);
        self.rss_pct_of_budget_max = max_of(self.rss_pct_of_budget_max, step.rss_pct_of_budget_max);
        if self.exchange_latency.len() != step.exchange_latency.len()
            && !step.exchange_latency.is_empty()
        {
            self.exchange_latency = step
                .exchange_latency
                .iter()
                .map(|(le, _)| (*le, 0))
                .collect();
        }
        for (total, (_, count)) in self
            .exchange_latency
            .iter_mut()
            .zip(step.exchange_latency.iter())
        {
            total.1 += count;
        }
    }

    /// This process's CPU over the phase, % of one core.
    pub fn harness_cpu_pct_of_one_core(&self) -> f64 {
        self.harness_cpu_ns as f64 / 1e9 / self.wall_s.max(1e-3) * 100.0
    }

    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.wall_s.max(1e-3)
    }

    pub fn cpu_pct_of_one_core(&self) -> Option<f64> {
        (self.cpu_wall_s > 0.0).then(|| self.cpu_ns as f64 / 1e9 / self.cpu_wall_s * 100.0)
    }

    /// CPU per frame the engine read: CPU rate over frame rate; None below
    /// `PER_MESSAGE_FRAMES_PER_S_MIN` (keep-alive only: an idle engine's CPU is its figure).
    pub fn cpu_us_per_msg(&self) -> Option<f64> {
        let frames_per_s = self.frames as f64 / self.wall_s.max(1e-3);
        (self.cpu_wall_s > 0.0 && frames_per_s >= PER_MESSAGE_FRAMES_PER_S_MIN)
            .then(|| self.cpu_ns as f64 / self.cpu_wall_s / frames_per_s / 1e3)
    }

    pub fn rss_growth_pct(&self) -> Option<f64> {
        match (self.rss_mib_first, self.rss_mib_last) {
            (Some(first), Some(last)) if first > 0.0 => Some((last - first) / first * 100.0),
            _ => None,
        }
    }
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The cores the harness can use: its simulator and browser threads plus one (the sampler and
/// the main thread), at most the machine's.
pub fn harness_cores(record: &RunRecord) -> f64 {
    let threads = record.scenario.venues.sim_threads
        + if record.scenario.browsers.total() > 0 {
            record.scenario.browsers.threads
        } else {
            0
        }
        + 1;
    let cpus = if record.cpus == 0 {
        threads
    } else {
        record.cpus
    };
    threads.min(cpus).max(1) as f64
}

/// The highest of a per-phase figure over the measured phases, and that phase's name.
fn worst_measured_phase(
    record: &RunRecord,
    figure: impl Fn(&PhaseTotals) -> Option<f64>,
) -> Option<(f64, String)> {
    record
        .phases
        .iter()
        .filter(|phase| phase.measured)
        .filter_map(|phase| figure(&phase.totals).map(|value| (value, phase.name.clone())))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The upper bound (seconds) of the bucket holding quantile `q` of cumulative buckets.
pub fn bucket_quantile(buckets: &[(f64, u64)], quantile: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (quantile * total as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(_, count)| *count >= rank.max(1))
        .map(|(le, _)| *le)
}

/// One phase as run.
#[derive(Debug)]
pub struct PhaseRecord {
    pub name: String,
    pub measured: bool,
    pub start_s: f64,
    pub end_s: f64,
    pub totals: PhaseTotals,
    /// Per browser class: venue stamp → browser receipt, µs.
    pub browser_latency: Vec<(String, Histogram<u64>)>,
    /// /health response time, µs, corrected for coordinated omission.
    pub health_latency: Histogram<u64>,
}

#[derive(Debug)]
pub struct BrowserRecord {
    pub class: String,
    pub planned: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub closed_by_server: u64,
    pub frames: u64,
    pub bytes: u64,
    pub latency_measured: Histogram<u64>,
}

/// Every visible Parquet file read back.
#[derive(Debug, Default)]
pub struct ParquetCheck {
    pub root: String,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    pub invalid: Vec<String>,
}

/// Most files the check reads (a bound on a long soak's tree).
const PARQUET_FILES_MAX: usize = 100_000;

/// Reads every visible `*.parquet` file under `root` (not hidden: the sink writes under a dot
/// name and renames) whole; each that does not read is listed with its error.
pub fn check_parquet_tree(root: &Path) -> ParquetCheck {
    let mut check = ParquetCheck {
        root: root.display().to_string(),
        ..ParquetCheck::default()
    };
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut files = Vec::new();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".parquet") && files.len() < PARQUET_FILES_MAX {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in files {
        check.files += 1;
        check.bytes += std::fs::metadata(&path).map_or(0, |meta| meta.len());
        match read_whole(&path) {
            Ok(rows) => check.rows += rows,
            Err(error) => check.invalid.push(format!("{}: {error}", path.display())),
        }
    }
    check
}

fn read_whole(path: &Path) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|error| error.to_string())?
        .build()
        .map_err(|error| error.to_string())?;
    let mut rows = 0u64;
    for batch in reader {
        rows += batch.map_err(|error| error.to_string())?.num_rows() as u64;
    }
    Ok(rows)
}

/// One step of a rate search.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchStep {
    pub offered_per_s: f64,
    pub records_per_s: f64,
    pub ring_drops: u64,
    pub sink_lost: u64,
    pub clean: bool,
    /// Why not clean (empty when clean).
    pub why: String,
}

impl SearchStep {
    /// Clean: the ring-drop counter came and read 0, no sink lost a record, and at least
    /// `load::SUSTAINED_SHARE` of the offered rate came in.
    pub fn judge(offered_per_s: f64, totals: &PhaseTotals) -> SearchStep {
        let records_per_s = totals.records_per_s();
        let why = if !totals.seen.ring_drops {
            "ring drops not measured".to_owned()
        } else if totals.ring_drops > 0 {
            format!("{} ring drops", totals.ring_drops)
        } else if totals.sink_lost > 0 {
            format!("{} records lost by sinks", totals.sink_lost)
        } else if records_per_s < offered_per_s * crate::load::SUSTAINED_SHARE {
            format!("{records_per_s:.0} records/s in: the offered rate was not sustained")
        } else {
            String::new()
        };
        SearchStep {
            offered_per_s,
            records_per_s,
            ring_drops: totals.ring_drops,
            sink_lost: totals.sink_lost,
            clean: why.is_empty(),
            why,
        }
    }
}

/// A rate search's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchRecord {
    pub steps: Vec<SearchStep>,
    /// The highest offered rate of a clean step (every step below it was clean too).
    pub highest_clean_per_s: Option<f64>,
    pub stopped_because: String,
}

impl SearchRecord {
    pub fn new(steps: Vec<SearchStep>, stopped: Option<String>, cut_short: bool) -> SearchRecord {
        let highest_clean_per_s = steps
            .iter()
            .take_while(|step| step.clean)
            .map(|step| step.offered_per_s)
            .last();
        let stopped_because = match stopped {
            Some(step) => format!("first step not clean: {step}"),
            None if cut_short => "the run ended early (interrupted or an error)".to_owned(),
            None => "every step was clean: raise steps_max or start_per_s".to_owned(),
        };
        SearchRecord {
            steps,
            highest_clean_per_s,
            stopped_because,
        }
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunRecord {
    pub scenario: Scenario,
    pub scenario_path: String,
    pub report_dir: PathBuf,
    pub control_url: String,
    pub metrics_url: Option<String>,
    pub engine_path: Option<String>,
    pub mode: &'static str,
    pub started_unix_s: u64,
    pub cpus: usize,
    pub load_average_1m_start: Option<f64>,
    pub duration_s: f64,
    pub phases: Vec<PhaseRecord>,
    pub measured: PhaseTotals,
    pub measured_health_latency: Histogram<u64>,
    pub browsers: Vec<BrowserRecord>,
    pub series: BTreeMap<String, Series>,
    pub engine_exit_code: Option<Option<i32>>,
    pub engine_shutdown: Option<Value>,
    pub parquet: Option<ParquetCheck>,
    pub search: Option<SearchRecord>,
    pub last_memory: Option<Value>,
    pub last_health: Option<Value>,
    pub proc_note: Option<String>,
    pub notes: Vec<String>,
    pub interrupted: bool,
    pub error: Option<String>,
}

impl RunRecord {
    /// `target`: the run drives an engine already running (else a child).
    pub fn new(
        scenario: &Scenario,
        scenario_path: &str,
        report_dir: &Path,
        target: bool,
        control_url: &str,
        engine_path: Option<String>,
    ) -> RunRecord {
        RunRecord {
            scenario: scenario.clone(),
            scenario_path: scenario_path.to_owned(),
            report_dir: report_dir.to_path_buf(),
            control_url: control_url.to_owned(),
            metrics_url: None,
            mode: if target { "target" } else { "child" },
            engine_path,
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs()),
            cpus: std::thread::available_parallelism().map_or(0, |cpus| cpus.get()),
            load_average_1m_start: crate::proc_stat::load_average_1m(),
            duration_s: 0.0,
            phases: Vec::new(),
            measured: PhaseTotals::default(),
            measured_health_latency: super::browsers::latency_histogram(),
            browsers: Vec::new(),
            series: BTreeMap::new(),
            engine_exit_code: None,
            engine_shutdown: None,
            parquet: None,
            search: None,
            last_memory: None,
            last_health: None,
            proc_note: None,
            notes: Vec::new(),
            interrupted: false,
            error: None,
        }
    }
}

/// A limit's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub limit: &'static str,
    /// The bound, as written.
    pub bound: Value,
    pub observed: Value,
    /// None: could not be measured (counts as not held).
    pub held: Option<bool>,
    pub note: String,
}

fn histogram_json(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return json!({"count": 0});
    }
    let ms = |value: u64| value as f64 / 1e3;
    json!({
        "count": histogram.len(),
        "p50_ms": ms(histogram.value_at_quantile(0.5)),
        "p99_ms": ms(histogram.value_at_quantile(0.99)),
        "p999_ms": ms(histogram.value_at_quantile(0.999)),
        "max_ms": ms(histogram.max()),
    })
}

fn buckets_json(buckets: &[(f64, u64)]) -> Value {
    let total = buckets.last().map_or(0, |bucket| bucket.1);
    if total == 0 {
        return Value::Null;
    }
    let ms = |quantile: f64| bucket_quantile(buckets, quantile).map(|le| le * 1e3);
    json!({
        "count": total,
        "p50_ms_at_most": ms(0.5),
        "p99_ms_at_most": ms(0.99),
        "p999_ms_at_most": ms(0.999),
    })
}

/// RSS slope over the measured phases, MiB per hour: a least-squares line through the `rss_mib`
/// points that fall in a measured phase. None with fewer than two points.
pub fn rss_slope_mib_per_h(record: &RunRecord) -> Option<f64> {
    let series = record.series.get("rss_mib")?;
    let points: Vec<(f64, f64)> = series
        .all_points()
        .into_iter()
        .filter(|(t, _)| {
            record
                .phases
                .iter()
                .any(|phase| phase.measured && *t >= phase.start_s && *t <= phase.end_s)
        })
        .collect();
    if points.len() < 2 {
        return None;
    }
    let count = points.len() as f64;
    let mean_t = points.iter().map(|point| point.0).sum::<f64>() / count;
    let mean_v = points.iter().map(|point| point.1).sum::<f64>() / count;
    let covariance: f64 = points
        .iter()
        .map(|(t, v)| (t - mean_t) * (v - mean_v))
        .sum();
    let variance: f64 = points.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance * 3_600.0)
}

/// Judges every limit that is set.
pub fn verdicts(record: &RunRecord) -> Vec<Verdict> {
    let limits: &Limits = &record.scenario.limits;
    let measured = &record.measured;
    let mut out = Vec::new();
    let mut judge_max =
        |limit: &'static str, bound: Option<f64>, observed: Option<f64>, note: &str| {
            if let Some(bound) = bound {
                out.push(Verdict {
                    limit,
                    bound: json!(bound),
                    observed: json!(observed),
                    held: observed.map(|value| value <= bound),
                    note: if observed.is_none() {
                        format!("not measured: {note}")
                    } else {
                        note.to_owned()
                    },
                });
            }
        };
    // A counter that never came during the measured phases is not measured (not 0).
    let sinks_seen = !measured.seen.sinks.is_empty()
        && record
            .scenario
            .sinks
            .iter()
            .all(|sink| measured.seen.sinks.contains(&sink.sink_name()));
    judge_max(
        "rss_growth_max_pct",
        limits.rss_growth_max_pct,
        measured.rss_growth_pct(),
        "RSS at the end of the last measured phase over its start in the first (needs /proc)",
    );
    judge_max(
        "rss_max_mib",
        limits.rss_max_mib,
        measured.rss_mib_max,
        "highest RSS sampled in a measured phase (needs /proc)",
    );
    judge_max(
        "rss_pct_of_budget_max",
        limits.rss_pct_of_budget_max,
        measured.rss_pct_of_budget_max,
        "highest RSS over the engine's memory budget in a measured phase (/api/monitoring/memory)",
    );
    judge_max(
        "ring_drops_max",
        limits.ring_drops_max.map(|value| value as f64),
        measured
            .seen
            .ring_drops
            .then_some(measured.ring_drops as f64),
        "feed ring drops during measured phases (stats line or metrics sink)",
    );
    judge_max(
        "sink_lost_max",
        limits.sink_lost_max.map(|value| value as f64),
        sinks_seen.then_some(measured.sink_lost as f64),
        "records lost on the way to every sink during measured phases (/health sinks[].drops; every sink must report)",
    );
    let fast = record
        .browsers
        .iter()
        .find(|browser| browser.class == "fast");
    judge_max(
        "fast_p99_ms_max",
        limits.fast_p99_ms_max,
        fast.filter(|browser| !browser.latency_measured.is_empty())
            .map(|browser| browser.latency_measured.value_at_quantile(0.99) as f64 / 1e3),
        "fast browsers, venue stamp → browser receipt, p99 over measured phases",
    );
    let cpu_worst = worst_measured_phase(record, PhaseTotals::cpu_us_per_msg);
    judge_max(
        "cpu_us_per_msg_max",
        limits.cpu_us_per_msg_max,
        cpu_worst.as_ref().map(|(value, _)| *value),
        &match &cpu_worst {
            Some((_, phase)) => format!(
                "engine process CPU per frame read, the highest measured phase: {phase:?} (needs /proc)"
            ),
            None => {
                "engine process CPU per frame read, per measured phase (needs /proc and frames)"
                    .to_owned()
            }
        },
    );
    judge_max(
        "health_failures_max",
        limits.health_failures_max.map(|value| value as f64),
        Some(measured.health_failures as f64),
        "/health answers other than 200, or none, during measured phases",
    );
    judge_max(
        "decode_errors_max",
        limits.decode_errors_max.map(|value| value as f64),
        measured
            .seen
            .decode_errors
            .then_some(measured.decode_errors as f64),
        "decode errors during measured phases (stats line or metrics sink)",
    );
    judge_max(
        "fast_browsers_lost_max",
        limits.fast_browsers_lost_max.map(|value| value as f64),
        fast.map(|browser| (browser.closed_by_server + browser.connect_failures) as f64)
            .or(Some(0.0)),
        "fast browser sessions the server closed, and failed connects",
    );
    judge_max(
        "parquet_invalid_files_max",
        limits.parquet_invalid_files_max.map(|value| value as f64),
        record
            .parquet
            .as_ref()
            .filter(|check| check.files > 0)
            .map(|check| check.invalid.len() as f64),
        "visible Parquet files that do not read back whole (needs a parquet sink, child mode, and at least one visible file)",
    );
    for (sink, bound) in &limits.sink_lost_max_by_sink {
        let observed = measured
            .seen
            .sinks
            .contains(sink)
            .then(|| measured.sink_lost_by.get(sink).copied().unwrap_or(0));
        out.push(Verdict {
            limit: "sink_lost_max_by_sink",
            bound: json!({ sink: bound }),
            observed: json!(observed),
            held: observed.map(|lost| lost <= *bound),
            note: format!(
                "{}records lost on the way to sink {sink:?} during measured phases",
                if observed.is_none() {
                    "not measured: "
                } else {
                    ""
                }
            ),
        });
    }
    for (limit, bounds, what) in [
        (
            "sink_lost_min_by_sink",
            &limits.sink_lost_min_by_sink,
            "records lost on the way to",
        ),
        (
            "sink_out_min_by_sink",
            &limits.sink_out_min_by_sink,
            "records delivered to",
        ),
    ] {
        for bound in bounds {
            let totals = match &bound.phase {
                Some(name) => record
                    .phases
                    .iter()
                    .find(|phase| &phase.name == name)
                    .map(|phase| &phase.totals),
                None => Some(measured),
            };
            let counts = |totals: &PhaseTotals| {
                if limit == "sink_lost_min_by_sink" {
                    totals.sink_lost_by.get(&bound.sink).copied().unwrap_or(0)
                } else {
                    totals.sink_out.get(&bound.sink).copied().unwrap_or(0)
                }
            };
            let observed = totals
                .filter(|totals| totals.seen.sinks.contains(&bound.sink))
                .map(counts);
            let during = match &bound.phase {
                Some(phase) => format!("during phase {phase:?}"),
                None => "during measured phases".to_owned(),
            };
            out.push(Verdict {
                limit,
                bound: json!({ "sink": bound.sink, "min": bound.min, "phase": bound.phase }),
                observed: json!(observed),
                held: observed.map(|count| count >= bound.min),
                note: if observed.is_none() {
                    format!("not measured: {what} sink {:?} {during}", bound.sink)
                } else {
                    format!("{what} sink {:?} {during}", bound.sink)
                },
            });
        }
    }
    if let Some(bound) = limits.records_per_s_min {
        let observed = measured.records_per_s();
        out.push(Verdict {
            limit: "records_per_s_min",
            bound: json!(bound),
            observed: json!(observed),
            held: Some(observed >= bound),
            note: "records the engine decoded per second, measured phases".into(),
        });
    }
    if let Some(bound) = limits.reconnects_min {
        let observed = measured.seen.reconnects.then_some(measured.reconnects);
        out.push(Verdict {
            limit: "reconnects_min",
            bound: json!(bound),
            observed: json!(observed),
            held: observed.map(|reconnects| reconnects >= bound),
            note: if observed.is_none() {
                "not measured: engine reconnects during measured phases".into()
            } else {
                "engine reconnects during measured phases".into()
            },
        });
    }
    if let Some(bound) = limits.cuts_unresumed_max {
        let observed = measured.seen.reconnects.then(|| {
            measured
                .faults
                .disconnects_made
                .saturating_sub(measured.reconnects)
        });
        out.push(Verdict {
            limit: "cuts_unresumed_max",
            bound: json!(bound),
            observed: json!(observed),
            held: observed.map(|unresumed| unresumed <= bound),
            note: format!(
                "{}connections the simulators cut ({} made of {} asked) minus engine reconnects, measured phases",
                if observed.is_none() { "not measured: " } else { "" },
                measured.faults.disconnects_made,
                measured.faults.disconnects
            ),
        });
    }
    if let Some(wanted) = limits.engine_exit_clean {
        let code = record.engine_exit_code.flatten();
        out.push(Verdict {
            limit: "engine_exit_clean",
            bound: json!(wanted),
            observed: json!(code),
            held: record
                .engine_exit_code
                .map(|code| (code == Some(0)) == wanted),
            note: "the engine's exit code after SIGTERM (child mode)".into(),
        });
    }
    if let Some(bound) = record
        .scenario
        .search
        .as_ref()
        .and_then(|search| search.clean_per_s_min)
    {
        let observed = record
            .search
            .as_ref()
            .and_then(|search| search.highest_clean_per_s);
        out.push(Verdict {
            limit: "search.clean_per_s_min",
            bound: json!(bound),
            observed: json!(observed),
            held: observed.map(|rate| rate >= bound),
            note: match &record.search {
                Some(search) => format!(
                    "highest offered rate whose step (and every step below) had no ring drop or sink loss; {}",
                    search.stopped_because
                ),
                None => "not measured: the search did not run".into(),
            },
        });
    }
    if let Some(bound) = limits.harness_cpu_pct_max {
        let cores = harness_cores(record);
        let worst = worst_measured_phase(record, |totals| {
            (totals.wall_s > 0.0).then(|| totals.harness_cpu_pct_of_one_core() / cores)
        });
        let held = worst.as_ref().map(|(value, _)| *value <= bound);
        out.push(Verdict {
            limit: "harness_cpu_pct_max",
            bound: json!(bound),
            observed: json!(worst.as_ref().map(|(value, _)| *value)),
            held,
            note: match (&worst, held) {
                (Some((_, phase)), Some(false)) => format!(
                    "harness saturated in phase {phase:?}: the simulators and browsers, not the engine, were the bottleneck; the run is invalid ({cores} cores usable)"
                ),
                (Some((_, phase)), _) => format!(
                    "this process's CPU over the {cores} cores it can use, the highest measured phase: {phase:?}"
                ),
                (None, _) => "not measured: this process's CPU (/proc/self)".into(),
            },
        });
    }
    out
}

fn totals_json(totals: &PhaseTotals) -> Value {
    json!({
        "wall_s": totals.wall_s,
        "records": totals.records,
        "records_per_s": totals.records_per_s(),
        "frames": totals.frames,
        "frames_per_s": totals.frames as f64 / totals.wall_s.max(1e-3),
        "ring_drops": totals.ring_drops,
        "sink_lost": totals.sink_lost,
        "sink_out": totals.sink_out,
        "sink_lost_by_sink": totals.sink_lost_by,
        "reconnects": totals.reconnects,
        "decode_errors": totals.decode_errors,
        "health_failures": totals.health_failures,
        "cpu_pct_of_one_core": totals.cpu_pct_of_one_core(),
        "cpu_us_per_msg": totals.cpu_us_per_msg(),
        "harness_cpu_pct_of_one_core": totals.harness_cpu_ns as f64 / 1e9 / totals.wall_s.max(1e-3) * 100.0,
        "rss_mib_first": totals.rss_mib_first,
        "rss_mib_last": totals.rss_mib_last,
        "rss_mib_max": totals.rss_mib_max,
        "rss_growth_pct": totals.rss_growth_pct(),
        "rss_pct_of_budget_max": totals.rss_pct_of_budget_max,
        "venue_to_engine_latency": buckets_json(&totals.exchange_latency),
        "faults": {
            "disconnects": totals.faults.disconnects,
            "disconnects_made": totals.faults.disconnects_made,
            "stalls": totals.faults.stalls,
            "malformed": totals.faults.malformed,
            "oversized": totals.faults.oversized,
            "notices": totals.faults.notices,
            "http_429": totals.faults.refusals,
        },
        "engine_restarts": totals.engine_restarts,
    })
}

/// What each latency figure measures (also in the README).
pub const WHAT_IS_MEASURED: &[(&str, &str)] = &[
    (
        "browser latency",
        "venue send → browser receipt, end to end through the engine and the ws-broadcast sink: each quote's ts_exchange_ns (the simulator's stamp when it wrote the frame, millisecond resolution) against the browser's clock when the frame arrived; includes the sink's flush interval (conflation). Per record, not per request: no coordinated-omission correction applies.",
    ),
    (
        "venue_to_engine_latency",
        "venue stamp → engine receive, from the engine's own histogram (metrics sink, tickflow_venue_exchange_latency_seconds, first timestamped record of each frame); bucket upper bounds, so figures are 'at most'.",
    ),
    (
        "health latency",
        "/health response time, a probe sent every sample_interval_ms: recorded with coordinated-omission correction (HdrHistogram record_correct at the probe interval).",
    ),
    (
        "cpu_us_per_msg",
        "engine process user+system CPU (/proc/PID/stat) per WebSocket frame the engine read.",
    ),
];

/// The report as JSON.
pub fn report_json(record: &RunRecord, verdicts: &[Verdict], plots: &[String]) -> Value {
    let phases: Vec<Value> = record
        .phases
        .iter()
        .map(|phase| {
            let mut latency = serde_json::Map::new();
            for (class, histogram) in &phase.browser_latency {
                latency.insert(class.clone(), histogram_json(histogram));
            }
            let mut value = totals_json(&phase.totals);
            value["name"] = json!(phase.name);
            value["measured"] = json!(phase.measured);
            value["start_s"] = json!(phase.start_s);
            value["end_s"] = json!(phase.end_s);
            value["browser_latency"] = Value::Object(latency);
            value["health_latency"] = histogram_json(&phase.health_latency);
            value
        })
        .collect();
    let browsers: Vec<Value> = record
        .browsers
        .iter()
        .map(|browser| {
            json!({
                "class": browser.class,
                "planned": browser.planned,
                "connects": browser.connects,
                "connect_failures": browser.connect_failures,
                "closed_by_server": browser.closed_by_server,
                "frames": browser.frames,
                "bytes": browser.bytes,
                "latency_measured": histogram_json(&browser.latency_measured),
            })
        })
        .collect();
    let series: serde_json::Map<String, Value> = record
        .series
        .iter()
        .map(|(name, series)| {
            (
                name.clone(),
                json!({
                    "unit": series.unit,
                    "merge": series.merge,
                    "samples_per_point": series.stride,
                    "points": series.all_points(),
                }),
            )
        })
        .collect();
    let limits: Vec<Value> = verdicts
        .iter()
        .map(|verdict| {
            json!({
                "limit": verdict.limit,
                "bound": verdict.bound,
                "observed": verdict.observed,
                "held": verdict.held,
                "verdict": match verdict.held {
                    Some(true) => "held",
                    Some(false) => "failed",
                    None => "not measured",
                },
                "note": verdict.note,
            })
        })
        .collect();
    json!({
        "scenario": record.scenario.name,
        "description": record.scenario.description,
        "scenario_file": record.scenario_path,
        "mode": record.mode,
        "engine": record.engine_path,
        "control_url": record.control_url,
        "metrics_url": record.metrics_url,
        "started_unix_s": record.started_unix_s,
        "machine": {
            "cpus": record.cpus,
            "load_average_1m_start": record.load_average_1m_start,
        },
        "duration_s": record.duration_s,
        "interrupted": record.interrupted,
        "error": record.error,
        "all_limits_held": all_held(verdicts),
        "limits": limits,
        "measured": {
            "totals": totals_json(&record.measured),
            "rss_slope_mib_per_h": rss_slope_mib_per_h(record),
            "health_latency": histogram_json(&record.measured_health_latency),
        },
        "phases": phases,
        "browsers": browsers,
        "engine_exit_code": record.engine_exit_code.flatten(),
        "engine_shutdown": record.engine_shutdown,
        "parquet": record.parquet.as_ref().map(|check| json!({
            "root": check.root,
            "files": check.files,
            "rows": check.rows,
            "bytes": check.bytes,
            "invalid": check.invalid,
        })),
        "search": record.search.as_ref().map(|search| json!({
            "highest_clean_per_s": search.highest_clean_per_s,
            "stopped_because": search.stopped_because,
            "steps": search.steps.iter().map(|step| json!({
                "offered_per_s": step.offered_per_s,
                "records_per_s": step.records_per_s,
                "ring_drops": step.ring_drops,
                "sink_lost": step.sink_lost,
                "clean": step.clean,
                "why": step.why,
            })).collect::<Vec<_>>(),
        })),
        "last_health": record.last_health,
        "last_memory": record.last_memory,
        "proc": record.proc_note.clone().unwrap_or_else(|| "/proc of the engine child".into()),
        "notes": record.notes,
        "what_is_measured": WHAT_IS_MEASURED.iter().map(|(name, text)| json!({"figure": name, "measures": text})).collect::<Vec<_>>(),
        "series": series,
        "plots": plots,
    })
}

pub fn all_held(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|verdict| verdict.held == Some(true))
}

fn optional(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.2}{unit}"))
}

/// The human summary.
pub fn summary_text(record: &RunRecord, verdicts: &[Verdict]) -> String {
    let mut text = String::new();
    let line = |text: &mut String, value: String| {
        text.push_str(&value);
        text.push('\n');
    };
    line(
        &mut text,
        format!(
            "scenario {} ({}): {:.0} s, {} mode, {} CPUs, load {} at start",
            record.scenario.name,
            record.scenario_path,
            record.duration_s,
            record.mode,
            record.cpus,
            optional(record.load_average_1m_start, ""),
        ),
    );
    if !record.scenario.description.is_empty() {
        line(&mut text, format!("  {}", record.scenario.description));
    }
    if record.interrupted {
        line(
            &mut text,
            "INTERRUPTED: the figures cover the part that ran".into(),
        );
    }
    if let Some(error) = &record.error {
        line(&mut text, format!("ERROR: {error}"));
    }
    line(&mut text, String::new());
    line(
        &mut text,
        format!(
            "{:<12} {:>6} {:>10} {:>8} {:>8} {:>6} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "phase",
            "s",
            "records/s",
            "drops",
            "lost",
            "recon",
            "CPU %",
            "µs/msg",
            "RSS MiB",
            "fast p99",
            "health",
            "harness %"
        ),
    );
    for phase in &record.phases {
        let fast = phase
            .browser_latency
            .iter()
            .find(|(class, _)| class == "fast")
            .filter(|(_, histogram)| !histogram.is_empty())
            .map(|(_, histogram)| histogram.value_at_quantile(0.99) as f64 / 1e3);
        line(
            &mut text,
            format!(
                "{:<12} {:>6.0} {:>10.0} {:>8} {:>8} {:>6} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9.1}",
                format!("{}{}", phase.name, if phase.measured { "" } else { "*" }),
                phase.end_s - phase.start_s,
                phase.totals.records_per_s(),
                phase.totals.ring_drops,
                phase.totals.sink_lost,
                phase.totals.reconnects,
                optional(phase.totals.cpu_pct_of_one_core(), ""),
                optional(phase.totals.cpu_us_per_msg(), ""),
                optional(phase.totals.rss_mib_last, ""),
                optional(fast, " ms"),
                format!("{} fail", phase.totals.health_failures),
                phase.totals.harness_cpu_ns as f64 / 1e9 / phase.totals.wall_s.max(1e-3) * 100.0,
            ),
        );
    }
    line(
        &mut text,
        "(* not measured: excluded from the limits. CPU %: the engine's; harness %: this process's, the simulators and browsers, which share the machine)".into(),
    );
    line(&mut text, String::new());
    for browser in &record.browsers {
        let latency = &browser.latency_measured;
        line(
            &mut text,
            format!(
                "browsers {:<4} {:>5} planned, {} connects, {} closed by the server, {} failed connects, {} frames; venue→browser p50 {} p99 {} p99.9 {} max {}",
                browser.class,
                browser.planned,
                browser.connects,
                browser.closed_by_server,
                browser.connect_failures,
                browser.frames,
                quantile_ms(latency, 0.5),
                quantile_ms(latency, 0.99),
                quantile_ms(latency, 0.999),
                if latency.is_empty() {
                    "n/a".into()
                } else {
                    format!("{:.1} ms", latency.max() as f64 / 1e3)
                },
            ),
        );
    }
    line(
        &mut text,
        format!(
            "measured: {:.0} records/s, RSS {} → {} MiB (slope {} MiB/h), engine CPU {} % of a core, {} µs/msg",
            record.measured.records_per_s(),
            optional(record.measured.rss_mib_first, ""),
            optional(record.measured.rss_mib_last, ""),
            optional(rss_slope_mib_per_h(record), ""),
            optional(record.measured.cpu_pct_of_one_core(), ""),
            optional(record.measured.cpu_us_per_msg(), ""),
        ),
    );
    if let Some(check) = &record.parquet {
        line(
            &mut text,
            format!(
                "parquet: {} visible files, {} rows, {:.1} MiB, {} invalid",
                check.files,
                check.rows,
                check.bytes as f64 / (1 << 20) as f64,
                check.invalid.len()
            ),
        );
        for invalid in check.invalid.iter().take(10) {
            line(&mut text, format!("  invalid: {invalid}"));
        }
    }
    if let Some(search) = &record.search {
        line(
            &mut text,
            format!(
                "search: highest clean rate {} updates/s offered ({} steps; {})",
                optional(search.highest_clean_per_s, ""),
                search.steps.len(),
                search.stopped_because
            ),
        );
    }
    if let Some(code) = record.engine_exit_code {
        line(&mut text, format!("engine exit code: {code:?}"));
    }
    if let Some(note) = &record.proc_note {
        line(&mut text, format!("/proc: {note}"));
    }
    for note in &record.notes {
        line(&mut text, format!("note: {note}"));
    }
    line(&mut text, String::new());
    line(&mut text, "limits:".into());
    for verdict in verdicts {
        line(
            &mut text,
            format!(
                "  {:<8} {:<26} bound {:<10} observed {}   ({})",
                match verdict.held {
                    Some(true) => "HELD",
                    Some(false) => "FAILED",
                    None => "UNKNOWN",
                },
                verdict.limit,
                verdict.bound.to_string(),
                match verdict.observed.as_f64() {
                    Some(value) if value.fract() != 0.0 => format!("{value:.2}"),
                    _ => verdict.observed.to_string(),
                },
                verdict.note
            ),
        );
    }
    line(
        &mut text,
        format!(
            "verdict: {}",
            if all_held(verdicts) && !record.interrupted && record.error.is_none() {
                "every limit held"
            } else if verdicts.iter().any(|verdict| {
                verdict.limit == "harness_cpu_pct_max" && verdict.held == Some(false)
            }) {
                "FAILED (run invalid: harness saturated)"
            } else {
                "FAILED"
            }
        ),
    );
    text
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> String {
    if histogram.is_empty() {
        "n/a".into()
    } else {
        format!(
            "{:.1} ms",
            histogram.value_at_quantile(quantile) as f64 / 1e3
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes `report.json` (listing `plots`, already drawn) and `summary.txt` into the report
/// directory; returns the verdicts, whether the run passed (every limit held, not interrupted,
/// no error) and the summary.
pub fn write(
    record: &RunRecord,
    plots: &[String],
) -> Result<(Vec<Verdict>, bool, String), WriteError> {
    let dir = &record.report_dir;
    let write_file = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| WriteError { path, source })
    };
    let verdicts = verdicts(record);
    let json = report_json(record, &verdicts, plots);
    write_file(
        "report.json",
        serde_json::to_string_pretty(&json)
            .unwrap_or_else(|_| json.to_string())
            .as_bytes(),
    )?;
    let summary = summary_text(record, &verdicts);
    write_file("summary.txt", summary.as_bytes())?;
    let passed = all_held(&verdicts) && !record.interrupted && record.error.is_none();
    Ok((verdicts, passed, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantiles_are_upper_bounds() {
        let buckets = [(0.001, 50), (0.01, 99), (f64::INFINITY, 100)];
        assert_eq!(bucket_quantile(&buckets, 0.5), Some(0.001));
        assert_eq!(bucket_quantile(&buckets, 0.99), Some(0.01));
        assert_eq!(bucket_quantile(&buckets, 0.999), Some(f64::INFINITY));
        assert_eq!(bucket_quantile(&[(0.1, 0)], 0.5), None);
    }

    #[test]
    fn totals_add_up_and_keep_the_first_rss() {
        let mut totals = PhaseTotals::default();
        let step = |rss: f64| PhaseTotals {
            wall_s: 1.0,
            cpu_ns: 500_000_000,
            cpu_wall_s: 1.0,
            frames: 1_000,
            records: 1_000,
            rss_mib_first: Some(rss),
            rss_mib_last: Some(rss),
            rss_mib_max: Some(rss),
            ..PhaseTotals::default()
        };
        totals.add(&step(100.0));
        totals.add(&step(110.0));
        assert_eq!(totals.records, 2_000);
        assert_eq!(totals.rss_growth_pct(), Some(10.0));
        assert_eq!(totals.rss_mib_max, Some(110.0));
        assert!((totals.cpu_us_per_msg().unwrap() - 500.0).abs() < 1e-9);
        assert!((totals.cpu_pct_of_one_core().unwrap() - 50.0).abs() < 1e-9);
    }

    fn record_of(limits: &str, phases: Vec<(&str, bool, PhaseTotals)>) -> RunRecord {
        let text = format!(
            "name = \"t\"\n[venues]\nsymbols = 4\n\
             [[sinks]]\nkind = \"test\"\nname = \"stalled\"\nmode = \"stall\"\n\
             [[phases]]\nname = \"stalled\"\nduration_s = 3\n\
             [[phases]]\nname = \"released\"\nduration_s = 3\nrelease_sink_stall = true\n\
             [limits]\n{limits}"
        );
        let scenario = Scenario::parse("t.toml", &text).unwrap();
        let mut record = RunRecord::new(
            &scenario,
            "t.toml",
            Path::new("/nonexistent"),
            false,
            "http://127.0.0.1:1",
            None,
        );
        for (name, measured, totals) in phases {
            if measured {
                record.measured.add(&totals);
            }
            record.phases.push(PhaseRecord {
                name: name.to_owned(),
                measured,
                start_s: 0.0,
                end_s: 1.0,
                totals,
                browser_latency: Vec::new(),
                health_latency: super::super::browsers::latency_histogram(),
            });
        }
        record
    }

    fn held(verdicts: &[Verdict], limit: &str) -> Vec<Option<bool>> {
        verdicts
            .iter()
            .filter(|verdict| verdict.limit == limit)
            .map(|verdict| verdict.held)
            .collect()
    }

    #[test]
    fn every_cut_the_simulators_made_needs_an_engine_reconnect() {
        let storm = |made: u64, reconnects: u64| {
            let mut totals = PhaseTotals {
                wall_s: 1.0,
                reconnects,
                ..PhaseTotals::default()
            };
            totals.seen.reconnects = true;
            let mut record = record_of("cuts_unresumed_max = 0\n", vec![("storm", true, totals)]);
            // The run adds each phase's faults to the measured totals itself.
            record.measured.faults = FaultCounts {
                disconnects: 100,
                disconnects_made: made,
                ..FaultCounts::default()
            };
            held(&verdicts(&record), "cuts_unresumed_max")
        };
        assert_eq!(storm(80, 80), vec![Some(true)]);
        assert_eq!(
            storm(80, 95),
            vec![Some(true)],
            "other reconnects (stale data) count too"
        );
        assert_eq!(storm(80, 79), vec![Some(false)], "one cut never resumed");
    }

    #[test]
    fn counters_that_never_came_and_an_empty_parquet_tree_are_not_measured() {
        let limits = "ring_drops_max = 0\nsink_lost_max = 0\ndecode_errors_max = 0\n\
                      reconnects_min = 0\nparquet_invalid_files_max = 0\n\
                      [limits.sink_lost_max_by_sink]\nstalled = 0\n";
        let quiet = PhaseTotals {
            wall_s: 1.0,
            ..PhaseTotals::default()
        };
        let mut record = record_of(limits, vec![("stalled", true, quiet.clone())]);
        record.parquet = Some(ParquetCheck::default());
        let judged = verdicts(&record);
        assert_eq!(judged.len(), 6);
        for verdict in &judged {
            assert_eq!(verdict.held, None, "{verdict:?}");
            assert!(verdict.note.starts_with("not measured"), "{verdict:?}");
        }
        assert!(!all_held(&judged));
        // The same run with every counter read and one good file holds.
        let mut seen = quiet;
        seen.seen = CountersSeen {
            ring_drops: true,
            decode_errors: true,
            reconnects: true,
            sinks: ["stalled".to_owned()].into(),
        };
        let mut record = record_of(limits, vec![("stalled", true, seen)]);
        record.parquet = Some(ParquetCheck {
            files: 1,
            ..ParquetCheck::default()
        });
        let verdicts = verdicts(&record);
        assert!(all_held(&verdicts), "{verdicts:?}");
    }

    #[test]
    fn cpu_per_message_is_judged_on_the_worst_measured_phase() {
        let phase = |cpu_ns: u64| PhaseTotals {
            wall_s: 1.0,
            cpu_wall_s: 1.0,
            cpu_ns,
            frames: 1_000,
            ..PhaseTotals::default()
        };
        // 100 and 500 µs/msg: together 300, under the bound; the second phase alone is over.
        let record = record_of(
            "cpu_us_per_msg_max = 400.0\n",
            vec![
                ("stalled", true, phase(100_000_000)),
                ("released", true, phase(500_000_000)),
            ],
        );
        assert!((record.measured.cpu_us_per_msg().unwrap() - 300.0).abs() < 1e-9);
        let verdicts = verdicts(&record);
        assert_eq!(held(&verdicts, "cpu_us_per_msg_max"), vec![Some(false)]);
        assert!(verdicts[0].note.contains("\"released\""), "{verdicts:?}");
        assert_eq!(verdicts[0].observed, json!(500.0));
    }

    #[test]
    fn a_stall_and_the_resume_are_judged_per_phase() {
        let limits = "[[limits.sink_lost_min_by_sink]]\nsink = \"stalled\"\nmin = 1\nphase = \"stalled\"\n\
                      [[limits.sink_out_min_by_sink]]\nsink = \"stalled\"\nmin = 1\nphase = \"released\"\n";
        let phase = |out: u64, lost: u64| PhaseTotals {
            wall_s: 1.0,
            sink_out: [("stalled".to_owned(), out)].into(),
            sink_lost_by: [("stalled".to_owned(), lost)].into(),
            seen: CountersSeen {
                sinks: ["stalled".to_owned()].into(),
                ..CountersSeen::default()
            },
            ..PhaseTotals::default()
        };
        let stalled_then_resumed = record_of(
            limits,
            vec![
                ("stalled", true, phase(0, 40)),
                ("released", true, phase(90, 0)),
            ],
        );
        assert!(all_held(&verdicts(&stalled_then_resumed)));
        // Never stalled (lost nothing), never resumed (delivered nothing after the release).
        let neither = record_of(
            limits,
            vec![
                ("stalled", true, phase(50, 0)),
                ("released", true, phase(0, 0)),
            ],
        );
        let verdicts = verdicts(&neither);
        assert_eq!(held(&verdicts, "sink_lost_min_by_sink"), vec![Some(false)]);
        assert_eq!(held(&verdicts, "sink_out_min_by_sink"), vec![Some(false)]);
        // An unknown sink or phase is a scenario error.
        let text = "name = \"t\"\n[venues]\nsymbols = 4\n[[phases]]\nname = \"a\"\nduration_s = 1\n\
                    [[limits.sink_out_min_by_sink]]\nsink = \"nope\"\nmin = 1\n";
        let error = Scenario::parse("t.toml", text).unwrap_err().to_string();
        assert!(error.contains("sink_out_min_by_sink[0].sink"), "{error}");
    }

    #[test]
    fn budget_and_a_saturated_harness_are_judged() {
        let phase = |harness_cpu_ns: u64, budget_pct: f64| PhaseTotals {
            wall_s: 1.0,
            harness_cpu_ns,
            rss_pct_of_budget_max: Some(budget_pct),
            ..PhaseTotals::default()
        };
        let limits = "rss_pct_of_budget_max = 80.0\nharness_cpu_pct_max = 90.0\n";
        // One simulator thread + the sampler: two cores usable (when the machine has them).
        let calm = record_of(limits, vec![("stalled", true, phase(200_000_000, 40.0))]);
        assert!(all_held(&verdicts(&calm)), "{:?}", verdicts(&calm));
        let mut busy = record_of(
            limits,
            vec![
                ("stalled", true, phase(200_000_000, 40.0)),
                ("released", true, phase(4_000_000_000, 95.0)),
            ],
        );
        busy.cpus = 2;
        let verdicts = verdicts(&busy);
        assert_eq!(held(&verdicts, "rss_pct_of_budget_max"), vec![Some(false)]);
        assert_eq!(held(&verdicts, "harness_cpu_pct_max"), vec![Some(false)]);
        let harness = verdicts
            .iter()
            .find(|verdict| verdict.limit == "harness_cpu_pct_max")
            .unwrap();
        assert!(harness.note.contains("harness saturated"), "{harness:?}");
        assert!(summary_text(&busy, &verdicts).contains("harness saturated"));
    }

    #[test]
    fn a_search_reports_the_highest_clean_step() {
        let step = |records: u64, drops: u64, lost: u64| PhaseTotals {
            wall_s: 1.0,
            records,
            ring_drops: drops,
            sink_lost: lost,
            seen: CountersSeen {
                ring_drops: true,
                ..CountersSeen::default()
            },
            ..PhaseTotals::default()
        };
        let clean = SearchStep::judge(1_000.0, &step(1_000, 0, 0));
        assert!(clean.clean, "{clean:?}");
        assert!(!SearchStep::judge(2_000.0, &step(2_000, 3, 0)).clean);
        assert!(!SearchStep::judge(2_000.0, &step(2_000, 0, 1)).clean);
        assert!(!SearchStep::judge(2_000.0, &step(1_000, 0, 0)).clean);
        assert!(!SearchStep::judge(2_000.0, &PhaseTotals::default()).clean);
        let steps = vec![
            SearchStep::judge(1_000.0, &step(1_000, 0, 0)),
            SearchStep::judge(2_000.0, &step(2_000, 0, 0)),
            SearchStep::judge(4_000.0, &step(4_000, 9, 0)),
        ];
        let search = SearchRecord::new(steps, Some("4000/s: 9 ring drops".into()), false);
        assert_eq!(search.highest_clean_per_s, Some(2_000.0));
        assert!(search.stopped_because.contains("9 ring drops"));
        let mut record = record_of("", vec![("stalled", true, step(10, 0, 0))]);
        record.scenario.search = Some(crate::scenario::SearchSpec {
            start_per_s: 1_000.0,
            step_factor: 2.0,
            steps_max: 3,
            step_duration_s: 1,
            clean_per_s_min: Some(3_000.0),
        });
        record.search = Some(search);
        let judged = verdicts(&record);
        assert_eq!(held(&judged, "search.clean_per_s_min"), vec![Some(false)]);
        assert!(summary_text(&record, &judged).contains("highest clean rate 2000.00"));
        assert_eq!(
            report_json(&record, &judged, &[])["search"]["highest_clean_per_s"],
            json!(2_000.0)
        );
    }

    #[test]
    fn a_missing_parquet_root_reads_as_empty_and_junk_is_invalid() {
        let dir = std::env::temp_dir().join(format!("tf-load-pq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(check_parquet_tree(&dir).files, 0);
        std::fs::create_dir_all(dir.join("quotes")).unwrap();
        std::fs::write(dir.join("quotes/a.parquet"), b"not parquet").unwrap();
        std::fs::write(dir.join("quotes/.b.parquet"), b"in flight").unwrap();
        let check = check_parquet_tree(&dir);
        assert_eq!(check.files, 1);
        assert_eq!(check.invalid.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
