//! Every pair's recent spread samples (`bucket_start`, `mean_bp`) in a time range, one pair at a
//! time: what warm start seeds the engine's windows from. Only the hour partitions the range
//! touches are opened (footer and page index kept: the range's index); each pair is then read
//! from the pages that can hold it (see `series`), so memory is that index plus one pair.

use std::path::Path;

use tickflow_formats::Dataset;

use crate::files::{Skipped, open_hours};
use crate::opportunities::PairKey;
use crate::series::{SpreadsFile, distinct_pairs, read_pair_rows, spreads_file};
use crate::{Date, HistoryError};

/// One pair's samples in the range, in time order without repeats (parallel vectors):
/// `bucket_start_ns` of each kept bucket and its mean spread `mean_bp` (finite only: a null mean
/// is left out).
#[derive(Clone, Debug, PartialEq)]
pub struct PairSamples {
    pub symbol: String,
    pub buy_venue: String,
    pub sell_venue: String,
    pub bucket_start_ns: Vec<i64>,
    pub mean_bp: Vec<f64>,
}

/// The pairs with samples in a range, read one pair per `next` (see [`crate::History::recent_samples`]).
pub struct RecentSamplesIter {
    pairs: std::vec::IntoIter<PairKey>,
    files: Vec<SpreadsFile>,
    from_ms: i64,
    to_ms: i64,
    files_found: usize,
    skipped: Skipped,
}

impl RecentSamplesIter {
    /// Data files of the range's hour partitions, readable or not (see `skipped`).
    pub fn files_found(&self) -> usize {
        self.files_found
    }

    /// Files left out because they could not be read.
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Pairs not yet read.
    pub fn pairs_left(&self) -> usize {
        self.pairs.len()
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

pub(crate) fn start(
    root: &Path,
    from_ms: i64,
    to_ms: i64,
) -> Result<RecentSamplesIter, HistoryError> {
    let mut skipped = Skipped::default();
    let mut opened = Vec::new();
    if from_ms <= to_ms {
        let mut day_start_ms = Date::of_ms(from_ms).start_ms();
        while day_start_ms <= to_ms {
            let first_hour = ((from_ms.max(day_start_ms) - day_start_ms) / HOUR_MS) as u32;
            let last_hour =
                ((to_ms.min(day_start_ms + DAY_MS - 1) - day_start_ms) / HOUR_MS) as u32;
            opened.extend(open_hours(
                root,
                Dataset::Spreads,
                Date::of_ms(day_start_ms),
                first_hour..=last_hour,
                true,
                &mut skipped,
                spreads_file,
            )?);
            day_start_ms += DAY_MS;
        }
    }
    let files_found = opened.len() + skipped.files as usize;
    let mut files = opened;
    let mut pairs = std::collections::BTreeSet::new();
    let mut index = 0;
    while index < files.len() {
        match distinct_pairs(&files[index]) {
            Ok(found) => {
                pairs.extend(found);
                index += 1;
            }
            Err(reason) => {
                let file = files.remove(index);
                skipped.add(&file.open.path, reason);
            }
        }
    }
    Ok(RecentSamplesIter {
        pairs: pairs.into_iter().collect::<Vec<_>>().into_iter(),
        files,
        from_ms,
        to_ms,
        files_found,
        skipped,
    })
}

impl Iterator for RecentSamplesIter {
    type Item = PairSamples;

    /// The next pair's samples; a file that fails to read is left out (counted in `skipped`)
    /// for this pair and the rest.
    fn next(&mut self) -> Option<PairSamples> {
        let (symbol, buy_venue, sell_venue) = self.pairs.next()?;
        let key = (symbol, buy_venue, sell_venue);
        let mut points = Vec::new();
        let mut index = 0;
        while index < self.files.len() {
            let mut file_points = Vec::new();
            match read_pair_rows(&self.files[index], &key, &mut file_points) {
                Ok(()) => {
                    points.extend(file_points.into_iter().filter(|point| {
                        point.ts_ms >= self.from_ms
                            && point.ts_ms <= self.to_ms
                            && point.spread_bp.is_finite()
                    }));
                    index += 1;
                }
                Err(error) => {
                    let file = self.files.remove(index);
                    self.skipped.add(&file.open.path, error.to_string());
                }
            }
        }
        points.sort_by_key(|point| point.ts_ms);
        points.dedup_by_key(|point| point.ts_ms);
        let (symbol, buy_venue, sell_venue) = key;
        Some(PairSamples {
            symbol,
            buy_venue,
            sell_venue,
            bucket_start_ns: points.iter().map(|point| point.ts_ms * 1_000_000).collect(),
            mean_bp: points.iter().map(|point| point.spread_bp).collect(),
        })
    }
}
