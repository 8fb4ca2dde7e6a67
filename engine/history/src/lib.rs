//! Reads the Parquet history written by `tickflow-parquet` back, through the layout and schemas
//! of `tickflow-formats`: a day's opportunity cycles per pair ([`History::day_opportunities`])
//! and a day's spread series per pair, streamed one pair at a time with bounded memory
//! ([`History::day_series`]). No HTTP and no async runtime here: the control plane and the
//! binary call it from their own threads.

mod columns;
mod date;
mod error;
mod files;
mod gaps;
mod opportunities;
mod recent;
mod series;

pub use date::Date;
pub use error::HistoryError;
pub use files::Skipped;
pub use gaps::MAX_GAPS_PER_VENUE;
pub use recent::{PairSamples, RecentSamplesIter};

use std::path::{Path, PathBuf};

/// One pair's opportunity cycles of a day at one threshold: the `start` rows of the
/// `opportunities` dataset in that day's partitions whose `threshold_bp` is the threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairCycles {
    pub symbol: String,
    pub buy_venue: String,
    pub sell_venue: String,
    pub cycles: u64,
}

/// Which pairs of a day [`History::day_series`] yields, and how many points each: pairs with at
/// least `min_cycles` cycles at `threshold_bp` (0: every pair with spread samples that day, with
/// or without cycles); `max_points` downsamples each pair to at most that many points, keeping
/// the lowest and highest spread of each of `max_points / 2` equal time buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaySeriesQuery {
    pub threshold_bp: u32,
    pub min_cycles: u64,
    pub max_points: Option<usize>,
}

/// One pair's spread series of a day, points in time order (parallel vectors).
///
/// - `ts_ms`: the sample's bucket start (`bucket_start`), ms since the epoch, UTC.
/// - `spread_bp`: the bucket's mean spread (`mean_bp`: what the engine's window keeps per bucket).
/// - `upper_bp` / `lower_bp`: the window's band at that bucket as the engine wrote it
///   (`band_upper_bp` / `band_lower_bp` = window mean ± k × window std of the bucket means);
///   `f64::NAN` where the window had no band yet (null in the file; serde_json writes NaN as
///   `null`).
/// - `gaps`: `[start_ms, end_ms]` intervals of the day, sorted and disjoint, when either venue of
///   the pair had a hole for the symbol (see [`MAX_GAPS_PER_VENUE`] and the `gaps` module doc:
///   disconnect → reconnect, still open → end of day, quote withdrawn → a point).
#[derive(Clone, Debug, PartialEq)]
pub struct PairSeries {
    pub symbol: String,
    pub buy_venue: String,
    pub sell_venue: String,
    pub ts_ms: Vec<i64>,
    pub spread_bp: Vec<f64>,
    pub upper_bp: Vec<f64>,
    pub lower_bp: Vec<f64>,
    pub gaps: Vec<(i64, i64)>,
}

/// The history under one root directory (the Parquet sink's `root`).
///
/// Damaged files (not Parquet, wrong columns, a read that fails part-way) are skipped and
/// counted rather than failing the day ([`DaySeriesIter::skipped`]); a missing day or dataset
/// is empty, not an error; I/O errors on directories fail the call.
#[derive(Clone, Debug)]
pub struct History {
    root: PathBuf,
}

impl History {
    /// The history under `root`; fails when it is not a directory.
    pub fn open(root: &Path) -> Result<History, HistoryError> {
        if !root.is_dir() {
            return Err(HistoryError::MissingRoot(root.to_path_buf()));
        }
        Ok(History {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Per pair, the day's cycle count at `threshold_bp`, in pair order (string order of
    /// symbol, buy venue, sell venue). Pairs without a cycle are absent.
    pub fn day_opportunities(
        &self,
        date: Date,
        threshold_bp: u32,
    ) -> Result<Vec<PairCycles>, HistoryError> {
        let mut skipped = Skipped::default();
        let cycles = opportunities::day_cycles(&self.root, date, threshold_bp, &mut skipped)?;
        Ok(opportunities::to_pair_cycles(cycles))
    }

    /// Every pair's `(bucket_start, mean_bp)` samples with `from_ms <= bucket_start <= to_ms`
    /// (ms since the epoch, UTC), one pair per step of the iterator (warm start reads the last
    /// window length this way): the hour partitions of the range are opened here, each pair read
    /// when asked for. Damaged files are skipped and counted ([`RecentSamplesIter::skipped`]).
    pub fn recent_samples(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<RecentSamplesIter, HistoryError> {
        recent::start(&self.root, from_ms, to_ms)
    }

    /// The qualifying pairs' series of the day, read one pair at a time when the iterator is
    /// advanced (the opportunities and gaps of the day are read here, the spreads lazily).
    pub fn day_series(
        &self,
        date: Date,
        query: DaySeriesQuery,
    ) -> Result<DaySeriesIter, HistoryError> {
        Ok(DaySeriesIter {
            series: series::start(&self.root, date, query)?,
        })
    }
}

/// The qualifying pairs of a day, in pair order, each read from the spreads files when asked
/// for: memory is the day's file index plus one pair, whatever the number of pairs.
pub struct DaySeriesIter {
    series: series::DaySeries,
}

impl DaySeriesIter {
    /// Files left out so far because they could not be read (unparsable, damaged, or of another
    /// shape): the day is read without them rather than failed.
    pub fn skipped(&self) -> &Skipped {
        &self.series.skipped
    }
}

impl Iterator for DaySeriesIter {
    type Item = Result<PairSeries, HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.series.next_pair()
    }
}
