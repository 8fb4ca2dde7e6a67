//! `tickflow-load history-gen` and `history-read`: a day of history for N pairs written through
//! the real Parquet sink plugin (spread samples every `interval_s`, opportunity cycles, gaps),
//! compacted as the sink does; and `tickflow_history::History::day_series` measured over such a
//! day (time to the first pair, total time, points, peak RSS). The control plane's
//! `/api/dashboard_data` and the dashboard's tests use the same generator.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tickflow_core::venue::Venue;
use tickflow_formats::Dataset;
use tickflow_history::{Date, DaySeriesQuery, History};
use tickflow_sdk::records::{
    GAP_DISCONNECT, GAP_RECONNECT, GapEvent, OpportunityEvent, RecordKind, SpreadSample, SymbolId,
};

use crate::parquet_bench::{
    BenchError, LoadedPlugin, Names, default_plugin_path, plugin_config, plugin_write, tick_until,
};

const SECOND_NS: i64 = 1_000_000_000;
/// Longest the generator waits for the plugin to compact the day's 24 hours.
const COMPACTION_WAIT: Duration = Duration::from_secs(1_800);

/// `tickflow-load history-gen` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryGenArgs {
    /// Pairs (8 ordered venue pairs per symbol).
    #[arg(long, default_value_t = 500)]
    pub pairs: usize,
    /// The UTC day, YYYY-MM-DD.
    #[arg(long, default_value = "2026-01-01")]
    pub date: String,
    /// The history root (the Parquet sink's `root`); created if missing.
    #[arg(long)]
    pub out: PathBuf,
    /// Seconds between two spread samples of a pair.
    #[arg(long, default_value_t = 1)]
    pub interval_s: u64,
    /// Hours of the day written (from 00:00).
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Leave the hours as part files (no compaction).
    #[arg(long)]
    pub no_compaction: bool,
    /// The plugin's cdylib; default: libtickflow_parquet.so beside this binary.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

/// `tickflow-load history-read` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryReadArgs {
    /// The history root.
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value = "2026-01-01")]
    pub date: String,
    #[arg(long, default_value_t = 40)]
    pub threshold_bp: u32,
    #[arg(long, default_value_t = 50)]
    pub min_cycles: u64,
    #[arg(long)]
    pub max_points: Option<usize>,
}

/// The generated pair `index`: (symbol id, buy venue, sell venue).
pub fn pair(index: usize) -> (SymbolId, Venue, Venue) {
    let count = Venue::ALL.len();
    let slot = index % count;
    let (buy, sell) = (Venue::ALL[slot], Venue::ALL[(slot + 1 + slot / 4) % count]);
    (SymbolId((index / count) as u32), buy, sell)
}

/// The names of the generated symbols (`SYM0000-USDT`, …).
pub fn names(pairs: usize) -> Names {
    Names {
        symbols: (0..pairs.div_ceil(Venue::ALL.len()).max(1))
            .map(|index| format!("SYM{index:04}-USDT"))
            .collect(),
    }
}

/// Opportunity cycles of pair `index` at 40 bp (every pair at least 50, so all qualify at the
/// dashboard's default `min_cycles=50`); 20 bp gets twice as many.
pub fn cycles_of(index: usize) -> u64 {
    50 + (index as u64 * 37) % 100
}

fn spread(index: usize, bucket_start_ns: i64, interval_s: u64) -> SpreadSample {
    let (symbol_id, buy, sell) = pair(index);
    let t = bucket_start_ns as f64 / 1e9;
    let spread =
        10.0 * (t / 600.0 + index as f64).sin() + 3.0 * (t / 37.0 + index as f64 * 0.7).sin();
    let mean = 2.0 * (t / 3_600.0 + index as f64).sin();
    SpreadSample {
        bucket_start_ns,
        bucket_duration_ns: interval_s as i64 * SECOND_NS,
        last_bp: spread,
        min_bp: spread - 0.5,
        max_bp: spread + 0.5,
        mean_bp: spread,
        window_mean_bp: mean,
        window_std_bp: 4.0,
        band_lower_bp: mean - 8.0,
        band_upper_bp: mean + 8.0,
        samples: 10,
        symbol_id,
        buy_venue_id: buy.id(),
        sell_venue_id: sell.id(),
        flags: 0,
    }
}

/// What `generate` wrote.
#[derive(Clone, Debug, Default)]
pub struct GeneratedDay {
    pub spread_rows: u64,
    pub opportunity_rows: u64,
    pub gap_rows: u64,
    pub seconds: f64,
    pub compaction_seconds: f64,
}

fn wrote_all(rows: u64, expected: usize, what: &str, plugin: &Path) -> Result<(), BenchError> {
    if rows == expected as u64 {
        return Ok(());
    }
    Err(BenchError::Plugin {
        path: plugin.to_path_buf(),
        reason: format!("wrote {rows} {what} rows of {expected} (see its records_dropped)"),
    })
}

/// Writes `hours` hours of `date` for `pairs` pairs under `root` through the plugin, one hour
/// per plugin instance (memory: one hour of samples), then (when `compact`) waits for the
/// plugin to compact every hour into one sorted file.
pub fn generate(
    plugin_path: &Path,
    root: &Path,
    date: Date,
    pairs: usize,
    interval_s: u64,
    hours: u32,
    compact: bool,
) -> Result<GeneratedDay, BenchError> {
    let started = Instant::now();
    std::fs::create_dir_all(root)
        .map_err(|error| BenchError::Io(root.display().to_string(), error))?;
    let plugin = LoadedPlugin::load(plugin_path)?;
    let names = names(pairs);
    let day_start_ns = date.start_ms() * 1_000_000;
    let interval_s = interval_s.max(1);
    let hours = hours.clamp(1, 24);
    let mut day = GeneratedDay::default();
    let spreads_config = plugin_config(
        root,
        Dataset::Spreads,
        65_536,
        "spreads_every_n_buckets = 1\ncompaction = false",
    );
    for hour in 0..i64::from(hours) {
        let hour_start_ns = day_start_ns + hour * 3_600 * SECOND_NS;
        let samples: Vec<SpreadSample> = (0..3_600 / interval_s as i64)
            .flat_map(|bucket| {
                let at_ns = hour_start_ns + bucket * interval_s as i64 * SECOND_NS;
                (0..pairs).map(move |index| spread(index, at_ns, interval_s))
            })
            .collect();
        let (figure, _) = plugin_write(
            &plugin,
            &spreads_config,
            &names,
            RecordKind::SpreadSample,
            &samples,
            4_096,
            root,
        )?;
        // plugin_write counts the rows of every committed file under the root.
        day.spread_rows += samples.len() as u64;
        wrote_all(figure.rows, day.spread_rows as usize, "spread", plugin_path)?;
    }
    let span_ns = i64::from(hours) * 3_600 * SECOND_NS;
    let mut opportunities = Vec::new();
    for index in 0..pairs {
        let (symbol_id, buy, sell) = pair(index);
        for (threshold_bp, count) in [(40.0, cycles_of(index)), (20.0, 2 * cycles_of(index))] {
            for cycle in 0..count as i64 {
                let start_ns = day_start_ns
                    + (cycle * 7_919 + index as i64 * 13) * SECOND_NS % (span_ns - 60 * SECOND_NS);
                for (kind, ts_ns) in [(1u8, start_ns), (2u8, start_ns + 30 * SECOND_NS)] {
                    opportunities.push(OpportunityEvent {
                        ts_ns,
                        started_ns: start_ns,
                        threshold_bp,
                        spread_bp: threshold_bp + 1.0,
                        peak_bp: threshold_bp + 5.0,
                        symbol_id,
                        buy_venue_id: buy.id(),
                        sell_venue_id: sell.id(),
                        kind,
                        flags: 0,
                        reserved: [0; 6],
                    });
                }
            }
        }
    }
    opportunities.sort_by_key(|event| event.ts_ns);
    let (figure, _) = plugin_write(
        &plugin,
        &plugin_config(root, Dataset::Opportunities, 65_536, ""),
        &names,
        RecordKind::Opportunity,
        &opportunities,
        4_096,
        root,
    )?;
    day.opportunity_rows = opportunities.len() as u64;
    let expected = day.spread_rows + day.opportunity_rows;
    wrote_all(
        figure.rows,
        expected as usize,
        "spread and opportunity",
        plugin_path,
    )?;
    // One disconnect of 2 minutes per (symbol, venue) every 6 hours, staggered.
    let mut gaps = Vec::new();
    for symbol in 0..names.symbols.len() {
        for venue in Venue::ALL {
            let offset_ns =
                ((symbol * 8 + venue.id().0 as usize) as i64 * 131 % 21_600) * SECOND_NS;
            let mut at_ns = day_start_ns + offset_ns;
            while at_ns + 120 * SECOND_NS < day_start_ns + span_ns {
                for (kind, ts_ns) in [
                    (GAP_DISCONNECT, at_ns),
                    (GAP_RECONNECT, at_ns + 120 * SECOND_NS),
                ] {
                    gaps.push(GapEvent {
                        ts_ns,
                        connection_id: 1,
                        symbol_id: SymbolId(symbol as u32),
                        venue_id: venue.id(),
                        kind,
                        reserved: [0; 5],
                    });
                }
                at_ns += 6 * 3_600 * SECOND_NS;
            }
        }
    }
    gaps.sort_by_key(|event| event.ts_ns);
    let (figure, _) = plugin_write(
        &plugin,
        &plugin_config(root, Dataset::Gaps, 65_536, ""),
        &names,
        RecordKind::Gap,
        &gaps,
        4_096,
        root,
    )?;
    day.gap_rows = gaps.len() as u64;
    let expected = day.spread_rows + day.opportunity_rows + day.gap_rows;
    wrote_all(figure.rows, expected as usize, "history", plugin_path)?;
    day.seconds = started.elapsed().as_secs_f64();
    if compact {
        let compaction_started = Instant::now();
        let day_dir = root
            .join(Dataset::Spreads.name())
            .join(date.partition_component());
        let config = plugin_config(
            root,
            Dataset::Spreads,
            65_536,
            "spreads_every_n_buckets = 1\ncompaction = true\ncompaction_delay_s = 0",
        );
        let done =
            || (0..hours).all(|hour| hour_is_compacted(&day_dir.join(format!("hour={hour:02}"))));
        if !tick_until(&plugin, &config, &names, COMPACTION_WAIT, done)? {
            return Err(BenchError::Plugin {
                path: plugin_path.to_path_buf(),
                reason: format!(
                    "{} was not compacted within {} s",
                    day_dir.display(),
                    COMPACTION_WAIT.as_secs()
                ),
            });
        }
        day.compaction_seconds = compaction_started.elapsed().as_secs_f64();
    }
    Ok(day)
}

fn hour_is_compacted(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".parquet"))
        .collect();
    names.len() == 1 && names[0].starts_with("compacted-")
}

fn parse_date(text: &str) -> Result<Date, BenchError> {
    Date::parse(text).map_err(|error| BenchError::Plugin {
        path: PathBuf::from("--date"),
        reason: error.to_string(),
    })
}

pub fn gen_command(args: &HistoryGenArgs) -> Result<(), BenchError> {
    let date = parse_date(&args.date)?;
    let plugin = args.plugin.clone().unwrap_or_else(default_plugin_path);
    let day = generate(
        &plugin,
        &args.out,
        date,
        args.pairs,
        args.interval_s,
        args.hours,
        !args.no_compaction,
    )?;
    println!(
        "history-gen: {} under {}: {} spread rows, {} opportunity rows, {} gap rows written in {:.1} s; compaction {:.1} s",
        date,
        args.out.display(),
        day.spread_rows,
        day.opportunity_rows,
        day.gap_rows,
        day.seconds,
        day.compaction_seconds
    );
    Ok(())
}

/// `VmHWM` and `VmRSS` of this process, in KiB (0 when unknown).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// What one `day_series` read took.
#[derive(Clone, Debug, Default)]
pub struct DayReadFigure {
    pub pairs: usize,
    pub points: u64,
    pub first_pair_seconds: f64,
    pub total_seconds: f64,
    pub rss_before_kib: u64,
    /// RSS once the day's files are open (their footers and page indexes read).
    pub rss_after_open_kib: u64,
    pub peak_rss_kib: u64,
    pub skipped_files: u64,
}

/// Reads every qualifying pair of the day, keeping nothing but counts.
pub fn read_day(
    root: &Path,
    date: Date,
    query: DaySeriesQuery,
) -> Result<DayReadFigure, BenchError> {
    let history_error = |error: tickflow_history::HistoryError| BenchError::Plugin {
        path: root.to_path_buf(),
        reason: error.to_string(),
    };
    let (_, rss_before_kib) = memory_kib();
    let started = Instant::now();
    let history = History::open(root).map_err(history_error)?;
    let mut day = history.day_series(date, query).map_err(history_error)?;
    let mut figure = DayReadFigure {
        rss_after_open_kib: memory_kib().1,
        rss_before_kib,
        ..DayReadFigure::default()
    };
    for pair in day.by_ref() {
        let pair = pair.map_err(history_error)?;
        if figure.pairs == 0 {
            figure.first_pair_seconds = started.elapsed().as_secs_f64();
        }
        figure.pairs += 1;
        figure.points += pair.ts_ms.len() as u64;
    }
    figure.total_seconds = started.elapsed().as_secs_f64();
    figure.skipped_files = day.skipped().files;
    figure.peak_rss_kib = memory_kib().0;
    Ok(figure)
}

pub fn read_command(args: &HistoryReadArgs) -> Result<(), BenchError> {
    let date = parse_date(&args.date)?;
    let query = DaySeriesQuery {
        threshold_bp: args.threshold_bp,
        min_cycles: args.min_cycles,
        max_points: args.max_points,
    };
    let figure = read_day(&args.dir, date, query)?;
    println!(
        "history-read: {} pairs, {} points; first pair {:.1} ms, total {:.2} s; RSS before {:.1} MiB, with the day's files open {:.1} MiB, peak {:.1} MiB (+{:.1} MiB); {} files skipped",
        figure.pairs,
        figure.points,
        figure.first_pair_seconds * 1e3,
        figure.total_seconds,
        figure.rss_before_kib as f64 / 1024.0,
        figure.rss_after_open_kib as f64 / 1024.0,
        figure.peak_rss_kib as f64 / 1024.0,
        figure.peak_rss_kib.saturating_sub(figure.rss_before_kib) as f64 / 1024.0,
        figure.skipped_files
    );
    Ok(())
}
