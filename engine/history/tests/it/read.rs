//! A day written by the Parquet sink, read back: exact values, pair filtering by threshold and
//! min_cycles, downsampling, gaps attached to the right pairs, part files and compacted hours,
//! a damaged file skipped, an empty day, bad input.

use std::path::Path;
use std::time::Duration;

use tickflow_history::{Date, DaySeriesQuery, History, HistoryError, PairCycles, PairSeries};
use tickflow_parquet::{ParquetConfig, ParquetSink};
use tickflow_sdk::records::{
    GAP_DISCONNECT, GAP_QUOTE_WITHDRAWN, GAP_RECONNECT, GapEvent, OpportunityEvent, SpreadSample,
    SymbolId, VenueId,
};
use tickflow_sdk::sink::{Batch, HostHandle, Sink};

/// 2024-01-01T00:00:00Z.
const DAY_START_NS: i64 = 1_704_067_200_000_000_000;
const DAY_START_MS: i64 = DAY_START_NS / 1_000_000;
const SECOND_NS: i64 = 1_000_000_000;
/// Three hours of one-second buckets.
const BUCKETS: i64 = 3 * 3_600;

/// (symbol id, buy venue id, sell venue id) of the day's pairs.
const PAIRS: [(u32, u16, u16); 5] = [(1, 0, 1), (1, 1, 0), (2, 1, 2), (3, 0, 2), (4, 3, 4)];

fn date() -> Date {
    Date::parse("2024-01-01").expect("a date")
}

/// The names the sink writes with a detached host.
fn names(pair: (u32, u16, u16)) -> (String, String, String) {
    (
        format!("#{}", pair.0),
        format!("#{}", pair.1),
        format!("#{}", pair.2),
    )
}

fn mean_bp(pair_index: usize, bucket: i64) -> f64 {
    (pair_index as f64) * 100.0 + ((bucket * 7919) % 1_000) as f64 * 0.25
}

fn spread(pair_index: usize, bucket: i64) -> SpreadSample {
    let (symbol, buy, sell) = PAIRS[pair_index];
    let mean = mean_bp(pair_index, bucket);
    SpreadSample {
        bucket_start_ns: DAY_START_NS + bucket * SECOND_NS,
        bucket_duration_ns: SECOND_NS,
        last_bp: mean + 0.5,
        min_bp: mean - 1.0,
        max_bp: mean + 1.0,
        mean_bp: mean,
        window_mean_bp: mean,
        window_std_bp: 1.0,
        band_lower_bp: if bucket == 0 { f64::NAN } else { mean - 2.0 },
        band_upper_bp: mean + 2.0,
        samples: 4,
        symbol_id: SymbolId(symbol),
        buy_venue_id: VenueId(buy),
        sell_venue_id: VenueId(sell),
        flags: 0,
    }
}

/// Cycle starts per pair at 40 bp (and at 20 bp: twice as many); pair 4 has none.
fn cycles_at(pair_index: usize, threshold_bp: u32) -> u64 {
    let base = [50u64, 10, 35, 1, 0][pair_index];
    if threshold_bp == 20 { base * 2 } else { base }
}

fn opportunities() -> Vec<OpportunityEvent> {
    let mut events = Vec::new();
    for (pair_index, &(symbol, buy, sell)) in PAIRS.iter().enumerate() {
        for threshold_bp in [20u32, 40] {
            for cycle in 0..cycles_at(pair_index, threshold_bp) as i64 {
                let ts_ns = DAY_START_NS + (cycle * 37 % BUCKETS) * SECOND_NS;
                for (kind, at_ns) in [(1u8, ts_ns), (2u8, ts_ns + SECOND_NS)] {
                    events.push(OpportunityEvent {
                        ts_ns: at_ns,
                        started_ns: ts_ns,
                        threshold_bp: f64::from(threshold_bp),
                        spread_bp: 45.0,
                        peak_bp: 50.0,
                        symbol_id: SymbolId(symbol),
                        buy_venue_id: VenueId(buy),
                        sell_venue_id: VenueId(sell),
                        kind,
                        flags: 0,
                        reserved: [0; 6],
                    });
                }
            }
        }
    }
    events
}

fn gap(at_s: i64, kind: u8, symbol: u32, venue: u16) -> GapEvent {
    GapEvent {
        ts_ns: DAY_START_NS + at_s * SECOND_NS,
        connection_id: 3,
        symbol_id: SymbolId(symbol),
        venue_id: VenueId(venue),
        kind,
        reserved: [0; 5],
    }
}

fn gaps() -> Vec<GapEvent> {
    vec![
        // Symbol 1 on venue 0: both pairs of symbol 1 (venue 0 buys in one, sells in the other).
        gap(100, GAP_DISCONNECT, 1, 0),
        gap(200, GAP_RECONNECT, 1, 0),
        // Symbol 2 on venue 2 (pair 2 sells there): withdrawn, and a disconnect never closed.
        gap(500, GAP_QUOTE_WITHDRAWN, 2, 2),
        gap(9_000, GAP_DISCONNECT, 2, 2),
        // Symbol 2 on venue 0: no pair of symbol 2 uses venue 0.
        gap(300, GAP_DISCONNECT, 2, 0),
        gap(400, GAP_RECONNECT, 2, 0),
    ]
}

fn config(root: &Path, compaction: bool) -> ParquetConfig {
    let retention: String = ["quotes", "trades", "spreads", "opportunities", "gaps"]
        .iter()
        .map(|dataset| format!("[retention.{dataset}]\n"))
        .collect();
    ParquetConfig::parse(&format!(
        "root = {:?}\nrow_group_rows = 4096\nspreads_every_n_buckets = 1\ncompaction = {compaction}\ncompaction_delay_s = 0\n{retention}",
        root.display().to_string()
    ))
    .expect("a valid sink config")
}

fn hour_files(root: &Path, hour: u32) -> Vec<String> {
    let dir = root.join(format!("spreads/date=2024-01-01/hour={hour:02}"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Writes the day through the sink: spreads in two deliveries per hour, each its own committed
/// file (so an hour's part files interleave in time), then compacts when asked.
fn write_day(root: &Path, compaction: bool) {
    let mut sink = ParquetSink::start(HostHandle::detached(), config(root, compaction))
        .expect("the sink starts");
    for half in 0..2i64 {
        let samples: Vec<SpreadSample> = (0..BUCKETS)
            .filter(|bucket| (bucket / 60) % 2 == half)
            .flat_map(|bucket| (0..PAIRS.len()).map(move |pair_index| spread(pair_index, bucket)))
            .collect();
        sink.on_batch(Batch::Spreads(&samples)).expect("on_batch");
        assert!(sink.commit(Some(Duration::from_secs(30))), "committed");
    }
    sink.on_batch(Batch::Opportunities(&opportunities()))
        .expect("on_batch");
    sink.on_batch(Batch::Gaps(&gaps())).expect("on_batch");
    assert!(sink.commit(Some(Duration::from_secs(30))), "committed");
    if compaction {
        let later_ns = DAY_START_NS + 6 * 3_600 * SECOND_NS;
        for _ in 0..200 {
            if (0..3).all(|hour| {
                let files = hour_files(root, hour);
                files.len() == 1 && files[0].starts_with("compacted-")
            }) {
                break;
            }
            sink.housekeeping(later_ns);
            sink.commit(Some(Duration::from_secs(30)));
        }
    }
    sink.close();
    for hour in 0..3 {
        let files = hour_files(root, hour);
        if compaction {
            assert!(
                files.len() == 1 && files[0].starts_with("compacted-"),
                "{files:?}"
            );
        } else {
            assert_eq!(files.len(), 2, "{files:?}");
        }
    }
}

fn series(history: &History, query: DaySeriesQuery) -> Vec<PairSeries> {
    history
        .day_series(date(), query)
        .expect("the day opens")
        .collect::<Result<Vec<_>, _>>()
        .expect("every pair reads")
}

fn query(threshold_bp: u32, min_cycles: u64, max_points: Option<usize>) -> DaySeriesQuery {
    DaySeriesQuery {
        threshold_bp,
        min_cycles,
        max_points,
    }
}

fn pair_index_of(series: &PairSeries) -> usize {
    PAIRS
        .iter()
        .position(|&pair| {
            names(pair)
                == (
                    series.symbol.clone(),
                    series.buy_venue.clone(),
                    series.sell_venue.clone(),
                )
        })
        .expect("a pair of the day")
}

fn check_exact(series: &PairSeries) {
    let pair_index = pair_index_of(series);
    assert_eq!(series.ts_ms.len(), BUCKETS as usize);
    for (bucket, &ts_ms) in series.ts_ms.iter().enumerate() {
        let bucket = bucket as i64;
        assert_eq!(ts_ms, DAY_START_MS + bucket * 1_000);
        let mean = mean_bp(pair_index, bucket);
        assert_eq!(series.spread_bp[bucket as usize], mean);
        assert_eq!(series.upper_bp[bucket as usize], mean + 2.0);
        if bucket == 0 {
            assert!(series.lower_bp[0].is_nan(), "no band: NaN");
        } else {
            assert_eq!(series.lower_bp[bucket as usize], mean - 2.0);
        }
    }
}

fn expected_gaps(pair_index: usize) -> Vec<(i64, i64)> {
    let at = |s: i64| DAY_START_MS + s * 1_000;
    match pair_index {
        0 | 1 => vec![(at(100), at(200))],
        2 => vec![(at(500), at(500)), (at(9_000), DAY_START_MS + 86_400_000)],
        _ => Vec::new(),
    }
}

fn check_day(root: &Path) {
    let history = History::open(root).expect("the root opens");
    let mut cycles = history.day_opportunities(date(), 40).expect("cycles");
    cycles.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    let expected: Vec<PairCycles> = (0..PAIRS.len())
        .filter(|&pair_index| cycles_at(pair_index, 40) > 0)
        .map(|pair_index| {
            let (symbol, buy_venue, sell_venue) = names(PAIRS[pair_index]);
            PairCycles {
                symbol,
                buy_venue,
                sell_venue,
                cycles: cycles_at(pair_index, 40),
            }
        })
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    assert_eq!(cycles, expected_sorted);
    assert_eq!(
        history.day_opportunities(date(), 20).expect("cycles")[0].cycles,
        cycles_at(0, 20)
    );
    assert!(
        history
            .day_opportunities(date(), 30)
            .expect("cycles")
            .is_empty()
    );

    // min_cycles 35 at 40 bp: pairs 0 (50) and 2 (35); at 20 bp pairs 0 (100), 2 (70): plus none
    // else (10 × 2 = 20 < 35).
    for threshold_bp in [40, 20] {
        let day = series(&history, query(threshold_bp, 35, None));
        let mut indexes: Vec<usize> = day.iter().map(pair_index_of).collect();
        indexes.sort();
        assert_eq!(indexes, [0, 2], "threshold {threshold_bp}");
        for pair in &day {
            check_exact(pair);
            assert_eq!(pair.gaps, expected_gaps(pair_index_of(pair)), "{pair:?}");
        }
    }
    // Every pair with at least one cycle; then every pair of the day, also pair 4 (no cycles).
    assert_eq!(series(&history, query(40, 1, None)).len(), 4);
    let all = series(&history, query(40, 0, None));
    assert_eq!(all.len(), PAIRS.len());
    let keys: Vec<(String, String, String)> = all
        .iter()
        .map(|pair| {
            (
                pair.symbol.clone(),
                pair.buy_venue.clone(),
                pair.sell_venue.clone(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "pairs come in pair order");
    for pair in &all {
        check_exact(pair);
        assert_eq!(pair.gaps, expected_gaps(pair_index_of(pair)));
    }
    assert!(series(&history, query(40, 51, None)).is_empty());

    // Downsampled: at most max_points, the extremes of every bucket kept with their bands.
    let full = series(&history, query(40, 50, None));
    let thin = series(&history, query(40, 50, Some(200)));
    assert_eq!((full.len(), thin.len()), (1, 1));
    let (full, thin) = (&full[0], &thin[0]);
    assert!(
        thin.ts_ms.len() <= 200 && thin.ts_ms.len() >= 100,
        "{}",
        thin.ts_ms.len()
    );
    assert!(thin.ts_ms.windows(2).all(|pair| pair[0] < pair[1]));
    let span = full.ts_ms[full.ts_ms.len() - 1] - full.ts_ms[0] + 1;
    for bucket in 0..100i64 {
        let in_bucket = |ts: i64| (ts - full.ts_ms[0]) * 100 / span == bucket;
        let values: Vec<f64> = (0..full.ts_ms.len())
            .filter(|&index| in_bucket(full.ts_ms[index]))
            .map(|index| full.spread_bp[index])
            .collect();
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let kept: Vec<usize> = (0..thin.ts_ms.len())
            .filter(|&index| in_bucket(thin.ts_ms[index]))
            .collect();
        assert!(
            kept.iter().any(|&index| thin.spread_bp[index] == low),
            "bucket {bucket}"
        );
        assert!(
            kept.iter().any(|&index| thin.spread_bp[index] == high),
            "bucket {bucket}"
        );
        for &index in &kept {
            assert_eq!(thin.upper_bp[index], thin.spread_bp[index] + 2.0);
        }
    }
    assert_eq!(thin.gaps, full.gaps);
}

#[test]
fn a_day_of_part_files_reads_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_day(dir.path(), false);
    check_day(dir.path());
}

#[test]
fn a_compacted_day_reads_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_day(dir.path(), true);
    check_day(dir.path());
}

#[test]
fn a_damaged_file_is_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_day(dir.path(), false);
    let hour = dir.path().join("spreads/date=2024-01-01/hour=01");
    let victim = hour.join(&hour_files(dir.path(), 1)[0]);
    std::fs::write(&victim, b"PAR1 this is not a parquet file PAR1").expect("overwrite");
    std::fs::write(hour.join("part-garbage.parquet"), b"garbage").expect("write");
    let history = History::open(dir.path()).expect("opens");
    let mut day = history
        .day_series(date(), query(40, 50, None))
        .expect("the day opens");
    let pair = day.next().expect("one pair").expect("reads");
    assert!(day.next().is_none());
    assert_eq!(day.skipped().files, 2, "{:?}", day.skipped());
    // Hour 1 lost the half of its buckets that were in the damaged file.
    assert_eq!(pair.ts_ms.len(), BUCKETS as usize - 1_800);
    // Every pair (found run by run rather than listed): the same files skipped, the same loss.
    let mut day = history
        .day_series(date(), query(40, 0, None))
        .expect("the day opens");
    let pairs: Vec<PairSeries> = day
        .by_ref()
        .collect::<Result<_, _>>()
        .expect("every pair reads");
    assert_eq!(pairs.len(), PAIRS.len());
    assert_eq!(day.skipped().files, 2, "{:?}", day.skipped());
    for pair in &pairs {
        assert_eq!(pair.ts_ms.len(), BUCKETS as usize - 1_800, "{pair:?}");
    }
}

#[test]
fn an_empty_day_a_missing_root_and_bad_dates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let history = History::open(dir.path()).expect("opens");
    let other = Date::parse("2024-01-02").expect("a date");
    assert!(
        history
            .day_opportunities(other, 40)
            .expect("empty")
            .is_empty()
    );
    assert_eq!(
        history
            .day_series(other, query(40, 0, Some(10)))
            .expect("empty")
            .count(),
        0
    );
    assert!(matches!(
        History::open(&dir.path().join("nope")),
        Err(HistoryError::MissingRoot(_))
    ));
    for bad in [
        "2024-02-30",
        "2024-13-01",
        "2024-1-01",
        "24-01-01",
        "2024/01/01",
        "",
        "2024-01-01x",
        "２０２４-01-01",
    ] {
        let error = Date::parse(bad).expect_err(bad);
        assert!(matches!(error, HistoryError::BadDate { .. }), "{bad}");
        assert!(error.to_string().contains("YYYY-MM-DD"), "{error}");
    }
    let leap = Date::parse("2024-02-29").expect("leap day");
    assert_eq!((leap.year, leap.month, leap.day), (2024, 2, 29));
    assert_eq!(leap.to_string(), "2024-02-29");
}

#[test]
fn the_iterator_can_move_to_another_thread() {
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().expect("tempdir");
    let history = History::open(dir.path()).expect("opens");
    let day = history
        .day_series(date(), query(40, 1, None))
        .expect("opens");
    send(&day);
    let handle = std::thread::spawn(move || day.count());
    assert_eq!(handle.join().expect("joins"), 0);
}
