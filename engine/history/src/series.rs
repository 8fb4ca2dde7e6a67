//! A day's spread series, one pair at a time, from the `spreads` dataset.
//!
//! At start the day's files are opened once (footer and page index kept: they are the day's
//! index, a few MiB for a full day, however many pairs qualify). For each qualifying pair, in
//! pair order, each file is read only where that pair can be: row groups whose `symbol`,
//! `buy_venue`, `sell_venue` statistics can hold it, and within them only the pages whose page
//! statistics of all three sort columns can (the rows are sorted by pair, so that is the pair's
//! contiguous run plus at most a page on either side). Memory is one pair's day plus the files'
//! index, whatever the number of pairs.
//!
//! What a point is: `spread_bp` is the bucket's mean spread (`mean_bp`, what the engine's window
//! keeps per bucket), `upper_bp` / `lower_bp` the window's band at that bucket as the engine wrote
//! it (`band_upper_bp` / `band_lower_bp`: window mean ± k × window std of bucket means), NaN where
//! the window had none (null in the file). Points are in time order.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;
use tickflow_formats::Dataset;

use crate::columns::{float_or_nan, floats, strings, timestamps_ns};
use crate::files::{OpenFile, Skipped, column_position, open_day};
use crate::gaps::{GapMap, VenueFilter, day_gaps, union};
use crate::opportunities::{PairKey, day_cycles};
use crate::{Date, DaySeriesQuery, HistoryError, PairSeries};

const SORT_COLUMNS: [&str; 3] = ["symbol", "buy_venue", "sell_venue"];
const VALUE_COLUMNS: [&str; 4] = ["bucket_start", "mean_bp", "band_lower_bp", "band_upper_bp"];
/// Rows decoded at once while reading a pair.
const BATCH_ROWS: usize = 2048;

/// One spreads file with where its columns are.
pub(crate) struct SpreadsFile {
    pub(crate) open: OpenFile,
    /// Leaf positions of `symbol`, `buy_venue`, `sell_venue`.
    sort_positions: [usize; 3],
    projection: ProjectionMask,
}

/// Everything `DaySeriesIter` needs; built by [`start`].
pub(crate) struct DaySeries {
    pairs: std::vec::IntoIter<PairKey>,
    files: Vec<SpreadsFile>,
    gaps: GapMap,
    max_points: Option<usize>,
    pub(crate) skipped: Skipped,
}

pub(crate) fn start(
    root: &Path,
    date: Date,
    query: DaySeriesQuery,
) -> Result<DaySeries, HistoryError> {
    let mut skipped = Skipped::default();
    let cycles = day_cycles(root, date, query.threshold_bp, &mut skipped)?;
    let opened = open_day(root, Dataset::Spreads, date, true, &mut skipped)?;
    let mut files = spreads_files(opened, &mut skipped);
    let pairs: Vec<PairKey> = if query.min_cycles == 0 {
        // Every pair of the day qualifies, also those without a cycle: their names come from the
        // sort columns of the spreads files.
        let mut all: BTreeSet<PairKey> = cycles.into_keys().collect();
        for file in &mut files {
            match distinct_pairs(file) {
                Ok(pairs) => all.extend(pairs),
                Err(reason) => skipped.add(&file.open.path, reason),
            }
        }
        all.into_iter().collect()
    } else {
        cycles
            .into_iter()
            .filter(|(_, count)| *count >= query.min_cycles)
            .map(|(key, _)| key)
            .collect()
    };
    let wanted: VenueFilter = Some(
        pairs
            .iter()
            .flat_map(|(symbol, buy, sell)| {
                [
                    (symbol.clone(), buy.clone()),
                    (symbol.clone(), sell.clone()),
                ]
            })
            .collect(),
    );
    let gaps = day_gaps(root, date, &wanted, &mut skipped)?;
    Ok(DaySeries {
        pairs: pairs.into_iter(),
        files,
        gaps,
        max_points: query.max_points,
        skipped,
    })
}

/// The opened files that are spreads files (the others are skipped and counted).
pub(crate) fn spreads_files(opened: Vec<OpenFile>, skipped: &mut Skipped) -> Vec<SpreadsFile> {
    let mut files = Vec::with_capacity(opened.len());
    for open in opened {
        let positions: Option<Vec<usize>> = SORT_COLUMNS
            .iter()
            .chain(VALUE_COLUMNS.iter())
            .map(|name| column_position(&open, name))
            .collect();
        let Some(positions) = positions else {
            skipped.add(&open.path, "not a spreads file (columns missing)".into());
            continue;
        };
        let projection = ProjectionMask::leaves(
            open.metadata.metadata().file_metadata().schema_descr(),
            positions.iter().copied(),
        );
        files.push(SpreadsFile {
            open,
            sort_positions: [positions[0], positions[1], positions[2]],
            projection,
        });
    }
    files
}

impl DaySeries {
    /// The next qualifying pair's series, or None after the last.
    pub(crate) fn next_pair(&mut self) -> Option<Result<PairSeries, HistoryError>> {
        let key = self.pairs.next()?;
        Some(self.read_pair(key))
    }

    fn read_pair(&mut self, key: PairKey) -> Result<PairSeries, HistoryError> {
        let mut points: Vec<Point> = Vec::new();
        let mut index = 0;
        while index < self.files.len() {
            let mut file_points = Vec::new();
            match read_pair_rows(&self.files[index], &key, &mut file_points) {
                Ok(()) => {
                    points.append(&mut file_points);
                    index += 1;
                }
                // A file that fails to read is left out of this pair and the rest of the day.
                Err(error) => {
                    let file = self.files.remove(index);
                    self.skipped.add(&file.open.path, error.to_string());
                }
            }
        }
        // Files are sorted within themselves; part files of one hour may interleave in time.
        points.sort_by_key(|point| point.ts_ms);
        if let Some(max_points) = self.max_points {
            points = downsample(points, max_points);
        }
        let (symbol, buy_venue, sell_venue) = key;
        let empty = Vec::new();
        let buy_gaps = self
            .gaps
            .get(&(symbol.clone(), buy_venue.clone()))
            .unwrap_or(&empty);
        let sell_gaps = self
            .gaps
            .get(&(symbol.clone(), sell_venue.clone()))
            .unwrap_or(&empty);
        let gaps = union(buy_gaps, sell_gaps);
        Ok(PairSeries {
            ts_ms: points.iter().map(|point| point.ts_ms).collect(),
            spread_bp: points.iter().map(|point| point.spread_bp).collect(),
            upper_bp: points.iter().map(|point| point.upper_bp).collect(),
            lower_bp: points.iter().map(|point| point.lower_bp).collect(),
            symbol,
            buy_venue,
            sell_venue,
            gaps,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    pub(crate) ts_ms: i64,
    pub(crate) spread_bp: f64,
    upper_bp: f64,
    lower_bp: f64,
}

/// Keeps, of each of `max_points / 2` equal time buckets over the points' span, the point with
/// the lowest and the one with the highest spread (in time order; one when they are the same
/// point), so peaks and troughs survive. `max_points` 1 keeps the single highest point.
fn downsample(points: Vec<Point>, max_points: usize) -> Vec<Point> {
    if points.len() <= max_points {
        return points;
    }
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return points;
    };
    if max_points <= 1 {
        return points
            .iter()
            .copied()
            .max_by(|a, b| a.spread_bp.total_cmp(&b.spread_bp))
            .into_iter()
            .collect();
    }
    let buckets = (max_points / 2) as i128;
    let span = i128::from(last.ts_ms) - i128::from(first.ts_ms) + 1;
    let first_ms = first.ts_ms;
    let bucket_of =
        |ts_ms: i64| ((i128::from(ts_ms) - i128::from(first_ms)) * buckets / span) as i64;
    let mut kept = Vec::with_capacity(max_points);
    let mut index = 0;
    while index < points.len() {
        let bucket = bucket_of(points[index].ts_ms);
        let mut end = index;
        let (mut low, mut high) = (index, index);
        while end < points.len() && bucket_of(points[end].ts_ms) == bucket {
            if points[end].spread_bp < points[low].spread_bp {
                low = end;
            }
            if points[end].spread_bp > points[high].spread_bp {
                high = end;
            }
            end += 1;
        }
        let (earlier, later) = (low.min(high), low.max(high));
        kept.push(points[earlier]);
        if later != earlier {
            kept.push(points[later]);
        }
        index = end;
    }
    kept
}

/// Whether byte-array statistics `[min, max]` can hold `value`; true when unknown.
fn may_hold_bytes(min: Option<&[u8]>, max: Option<&[u8]>, value: &[u8]) -> bool {
    match (min, max) {
        (Some(min), Some(max)) => min <= value && value <= max,
        _ => true,
    }
}

fn row_group_may_hold(
    metadata: &ParquetMetaData,
    row_group: usize,
    leaf: usize,
    value: &str,
) -> bool {
    match metadata.row_group(row_group).column(leaf).statistics() {
        Some(Statistics::ByteArray(stats)) => may_hold_bytes(
            stats.min_opt().map(|min| min.data()),
            stats.max_opt().map(|max| max.data()),
            value.as_bytes(),
        ),
        _ => true,
    }
}

/// The rows (within the row group) of the pages of one column that can hold `value`; every row
/// when the page index is missing.
fn page_ranges(
    metadata: &ParquetMetaData,
    row_group: usize,
    leaf: usize,
    value: &str,
) -> Vec<Range<usize>> {
    let rows = metadata.row_group(row_group).num_rows().max(0) as usize;
    let everything = std::iter::once(0..rows).collect::<Vec<_>>();
    let (Some(column_index), Some(offset_index)) =
        (metadata.column_index(), metadata.offset_index())
    else {
        return everything;
    };
    let (Some(ColumnIndexMetaData::BYTE_ARRAY(index)), Some(offsets)) = (
        column_index
            .get(row_group)
            .and_then(|columns| columns.get(leaf)),
        offset_index
            .get(row_group)
            .and_then(|columns| columns.get(leaf)),
    ) else {
        return everything;
    };
    let locations = offsets.page_locations();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (page, location) in locations.iter().enumerate() {
        let first = (location.first_row_index.max(0) as usize).min(rows);
        let end = locations.get(page + 1).map_or(rows, |next| {
            (next.first_row_index.max(0) as usize).min(rows)
        });
        if first >= end
            || !may_hold_bytes(
                index.min_value(page),
                index.max_value(page),
                value.as_bytes(),
            )
        {
            continue;
        }
        match ranges.last_mut() {
            Some(last) if last.end == first => last.end = end,
            _ => ranges.push(first..end),
        }
    }
    ranges
}

fn intersect(first: &[Range<usize>], second: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < first.len() && j < second.len() {
        let start = first[i].start.max(second[j].start);
        let end = first[i].end.min(second[j].end);
        if start < end {
            out.push(start..end);
        }
        if first[i].end < second[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Appends the rows of `key` in `file` to `points`.
pub(crate) fn read_pair_rows(
    file: &SpreadsFile,
    key: &PairKey,
    points: &mut Vec<Point>,
) -> Result<(), HistoryError> {
    let metadata = file.open.metadata.metadata();
    let values = [key.0.as_str(), key.1.as_str(), key.2.as_str()];
    let mut row_groups = Vec::new();
    let mut selected: Vec<Range<usize>> = Vec::new();
    let mut offset = 0usize;
    for row_group in 0..metadata.num_row_groups() {
        let holds = file
            .sort_positions
            .iter()
            .zip(values)
            .all(|(&leaf, value)| row_group_may_hold(metadata, row_group, leaf, value));
        if !holds {
            continue;
        }
        let mut ranges = page_ranges(metadata, row_group, file.sort_positions[0], values[0]);
        for (&leaf, value) in file.sort_positions.iter().zip(values).skip(1) {
            if ranges.is_empty() {
                break;
            }
            ranges = intersect(&ranges, &page_ranges(metadata, row_group, leaf, value));
        }
        if ranges.is_empty() {
            continue;
        }
        row_groups.push(row_group);
        selected.extend(
            ranges
                .iter()
                .map(|range| range.start + offset..range.end + offset),
        );
        offset += metadata.row_group(row_group).num_rows().max(0) as usize;
    }
    if row_groups.is_empty() {
        return Ok(());
    }
    let corrupt = |reason: String| HistoryError::Corrupt {
        path: file.open.path.clone(),
        reason,
    };
    let file_handle = file
        .open
        .file
        .try_clone()
        .map_err(|source| HistoryError::Io {
            path: file.open.path.clone(),
            source,
        })?;
    let reader =
        ParquetRecordBatchReaderBuilder::new_with_metadata(file_handle, file.open.metadata.clone())
            .with_projection(file.projection.clone())
            .with_row_groups(row_groups)
            .with_row_selection(RowSelection::from_consecutive_ranges(
                selected.into_iter(),
                offset,
            ))
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|error| corrupt(error.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|error| corrupt(error.to_string()))?;
        let (Some(symbol), Some(buy), Some(sell), Some(ts), Some(mean), Some(lower), Some(upper)) = (
            strings(&batch, "symbol"),
            strings(&batch, "buy_venue"),
            strings(&batch, "sell_venue"),
            timestamps_ns(&batch, "bucket_start"),
            floats(&batch, "mean_bp"),
            floats(&batch, "band_lower_bp"),
            floats(&batch, "band_upper_bp"),
        ) else {
            return Err(corrupt("spreads columns of unexpected types".into()));
        };
        for row in 0..batch.num_rows() {
            if symbol.value(row) != values[0]
                || buy.value(row) != values[1]
                || sell.value(row) != values[2]
            {
                continue;
            }
            points.push(Point {
                ts_ms: ts.value(row).div_euclid(1_000_000),
                spread_bp: float_or_nan(mean, row),
                upper_bp: float_or_nan(upper, row),
                lower_bp: float_or_nan(lower, row),
            });
        }
    }
    Ok(())
}

/// Every pair named in a spreads file (its sort columns only).
pub(crate) fn distinct_pairs(file: &SpreadsFile) -> Result<BTreeSet<PairKey>, String> {
    let schema = file
        .open
        .metadata
        .metadata()
        .file_metadata()
        .schema_descr_ptr();
    let file_handle = file
        .open
        .file
        .try_clone()
        .map_err(|error| error.to_string())?;
    let reader =
        ParquetRecordBatchReaderBuilder::new_with_metadata(file_handle, file.open.metadata.clone())
            .with_projection(ProjectionMask::leaves(&schema, file.sort_positions))
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|error| error.to_string())?;
    let mut pairs = BTreeSet::new();
    for batch in reader {
        let batch = batch.map_err(|error| error.to_string())?;
        let (Some(symbol), Some(buy), Some(sell)) = (
            strings(&batch, "symbol"),
            strings(&batch, "buy_venue"),
            strings(&batch, "sell_venue"),
        ) else {
            return Err("spreads columns of unexpected types".into());
        };
        let mut previous: Option<(&str, &str, &str)> = None;
        for row in 0..batch.num_rows() {
            let key = (symbol.value(row), buy.value(row), sell.value(row));
            if previous != Some(key) {
                if !pairs.contains(&(key.0.to_string(), key.1.to_string(), key.2.to_string())) {
                    pairs.insert((key.0.to_string(), key.1.to_string(), key.2.to_string()));
                }
                previous = Some(key);
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts_ms: i64, spread_bp: f64) -> Point {
        Point {
            ts_ms,
            spread_bp,
            upper_bp: spread_bp + 1.0,
            lower_bp: spread_bp - 1.0,
        }
    }

    #[test]
    fn downsampling_keeps_each_buckets_min_and_max_in_time_order() {
        let points: Vec<Point> = (0..100)
            .map(|index| point(index, ((index * 37) % 101) as f64))
            .collect();
        let kept = downsample(points.clone(), 10);
        assert!(kept.len() <= 10, "{}", kept.len());
        for bucket in 0..5 {
            let members: Vec<&Point> = points
                .iter()
                .filter(|p| p.ts_ms * 5 / 100 == bucket)
                .collect();
            let low = members
                .iter()
                .map(|p| p.spread_bp)
                .fold(f64::INFINITY, f64::min);
            let high = members
                .iter()
                .map(|p| p.spread_bp)
                .fold(f64::NEG_INFINITY, f64::max);
            let kept_here: Vec<&Point> = kept
                .iter()
                .filter(|p| p.ts_ms * 5 / 100 == bucket)
                .collect();
            assert!(
                kept_here
                    .iter()
                    .any(|p| p.spread_bp == low && p.lower_bp == low - 1.0)
            );
            assert!(
                kept_here
                    .iter()
                    .any(|p| p.spread_bp == high && p.upper_bp == high + 1.0)
            );
        }
        assert!(kept.windows(2).all(|pair| pair[0].ts_ms < pair[1].ts_ms));
        assert_eq!(downsample(points.clone(), 1000), points);
        assert_eq!(downsample(points, 1).len(), 1);
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn ranges_intersect() {
        assert_eq!(intersect(&[0..10, 20..30], &[5..25]), vec![5..10, 20..25]);
        assert_eq!(intersect(&[0..10], &[10..20]), Vec::<Range<usize>>::new());
    }
}
