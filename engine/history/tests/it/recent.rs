//! `History::recent_samples` (warm start's read) against spreads written by the real Parquet
//! sink: a range across midnight, exact values per pair in time order, only the range's hours,
//! a damaged file skipped.

use std::path::Path;
use std::time::Duration;

use tickflow_history::History;
use tickflow_parquet::{ParquetConfig, ParquetSink};
use tickflow_sdk::records::{SpreadSample, SymbolId, VenueId};
use tickflow_sdk::sink::{Batch, HostHandle, Sink};

/// 2024-01-01T23:00:00Z.
const START_NS: i64 = 1_704_150_000_000_000_000;
const SECOND_NS: i64 = 1_000_000_000;
const MINUTE_NS: i64 = 60 * SECOND_NS;
/// Two hours of 10 s buckets: 23:00 to 01:00 across midnight.
const BUCKETS: i64 = 720;
const BUCKET_NS: i64 = 10 * SECOND_NS;

fn mean_bp(pair: u32, bucket: i64) -> f64 {
    f64::from(pair) * 1000.0 + bucket as f64 * 0.5
}

fn sample(pair: u32, bucket: i64) -> SpreadSample {
    SpreadSample {
        bucket_start_ns: START_NS + bucket * BUCKET_NS,
        bucket_duration_ns: BUCKET_NS,
        mean_bp: mean_bp(pair, bucket),
        samples: 3,
        symbol_id: SymbolId(pair),
        buy_venue_id: VenueId(0),
        sell_venue_id: VenueId(1),
        ..SpreadSample::default()
    }
}

fn write(root: &Path) {
    let retention: String = ["quotes", "trades", "spreads", "opportunities", "gaps"]
        .iter()
        .map(|dataset| format!("[retention.{dataset}]\n"))
        .collect();
    let config = ParquetConfig::parse(&format!(
        "root = {:?}\nspreads_every_n_buckets = 1\ncompaction = false\n{retention}",
        root.display().to_string()
    ))
    .expect("a valid sink config");
    let mut sink = ParquetSink::start(HostHandle::detached(), config).expect("the sink starts");
    let samples: Vec<SpreadSample> = (0..BUCKETS)
        .flat_map(|bucket| [1u32, 2].map(|pair| sample(pair, bucket)))
        .collect();
    sink.on_batch(Batch::Spreads(&samples)).expect("on_batch");
    assert!(sink.commit(Some(Duration::from_secs(30))), "committed");
    sink.close();
}

#[test]
fn recent_samples_read_every_pair_of_a_range_across_midnight() {
    let dir = tempfile::tempdir().expect("a temp dir");
    write(dir.path());
    let history = History::open(dir.path()).expect("the root opens");
    // 23:40 to 00:20: 40 minutes, 10 s buckets, both ends included.
    let from_ms = (START_NS + 40 * MINUTE_NS) / 1_000_000;
    let to_ms = (START_NS + 80 * MINUTE_NS) / 1_000_000;
    let mut recent = history.recent_samples(from_ms, to_ms).expect("opens");
    // Only hours 23 of the first day and 00 of the second are looked at.
    assert_eq!(recent.files_found(), 2);
    assert_eq!(recent.pairs_left(), 2);
    let pairs: Vec<_> = recent.by_ref().collect();
    assert_eq!(recent.skipped().files, 0);
    for (pair, samples) in [1u32, 2].into_iter().zip(&pairs) {
        assert_eq!(
            (
                samples.symbol.as_str(),
                samples.buy_venue.as_str(),
                samples.sell_venue.as_str()
            ),
            (format!("#{pair}").as_str(), "#0", "#1")
        );
        let buckets: Vec<i64> = (240..=480).collect();
        let expected_ns: Vec<i64> = buckets.iter().map(|b| START_NS + b * BUCKET_NS).collect();
        let expected_bp: Vec<f64> = buckets.iter().map(|&b| mean_bp(pair, b)).collect();
        assert_eq!(samples.bucket_start_ns, expected_ns);
        assert_eq!(samples.mean_bp, expected_bp);
    }
}

#[test]
fn a_damaged_file_is_skipped_and_an_empty_range_has_no_pairs() {
    let dir = tempfile::tempdir().expect("a temp dir");
    write(dir.path());
    let hour_dir = dir.path().join("spreads/date=2024-01-01/hour=23");
    std::fs::write(hour_dir.join("damaged.parquet"), b"not parquet").expect("written");
    let history = History::open(dir.path()).expect("the root opens");
    let from_ms = (START_NS + 50 * MINUTE_NS) / 1_000_000;
    let to_ms = (START_NS + 55 * MINUTE_NS) / 1_000_000;
    let mut recent = history.recent_samples(from_ms, to_ms).expect("opens");
    let pairs: Vec<_> = recent.by_ref().collect();
    assert_eq!(recent.skipped().files, 1);
    assert_eq!(pairs.len(), 2);
    assert!(pairs.iter().all(|pair| pair.mean_bp.len() == 31));
    // Three hours later: nothing there.
    let later_ms = to_ms + 3 * 3_600_000;
    assert_eq!(
        history
            .recent_samples(later_ms, later_ms + 60_000)
            .expect("opens")
            .count(),
        0
    );
}
