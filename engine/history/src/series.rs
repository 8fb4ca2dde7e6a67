//! A day's spread series, one pair at a time, from the `spreads` dataset.
//!
//! At start the day's files are opened once and their footers kept with the part of the page
//! index a pair read needs (the column index of the three sort columns, the offset index of the
//! seven read columns; the rest is dropped at once: a full day's index of every column is tens
//! of MiB at 500 pairs). For each pair, each file is read only where that pair can be: row
//! groups whose `symbol`, `buy_venue`, `sell_venue` statistics can hold it, and within them only
//! the pages whose page statistics of all three sort columns can (the rows are sorted by pair, so
//! that is the pair's contiguous run plus at most a page on either side). Memory is one pair's
//! day plus the files' index, whatever the number of pairs.
//!
//! Which pairs: with `min_cycles > 0` the day's cycle counts name them. With `min_cycles == 0`
//! every pair with samples qualifies, and they are found as they are read rather than listed up
//! front (a list would decode the sort columns of the whole day before the first pair): each
//! row group is a run sorted by pair (the Parquet sink's documented order, `sorting_columns`),
//! a cursor per run holds the run's next pair, the next pair of the day is the smallest cursor
//! (merged with the pairs that only have cycles), and reading a pair from a run reads one row
//! past its rows, which is that run's next pair. A row group without the sort order is listed
//! up front instead (its own pairs only).
//!
//! What a point is: `spread_bp` is the bucket's mean spread (`mean_bp`, what the engine's window
//! keeps per bucket), `upper_bp` / `lower_bp` the window's band at that bucket as the engine wrote
//! it (`band_upper_bp` / `band_lower_bp`: window mean ± k × window std of bucket means), NaN where
//! the window had none (null in the file). Points are in time order.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataBuilder};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::OffsetIndexMetaData;
use parquet::file::statistics::Statistics;
use tickflow_formats::Dataset;

use crate::columns::{Strings, float_or_nan, floats, strings, timestamps_ns};
use crate::files::{OpenFile, Skipped, column_position, open_hours};
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
    /// The sort and value columns.
    projection: ProjectionMask,
    /// The sort columns only.
    sort_projection: ProjectionMask,
}

/// A row group read as a run of pairs (see the module doc).
struct Run {
    file: usize,
    row_group: usize,
    /// The smallest pair of the run not read yet; None once the run is read to its end.
    next: Option<PairKey>,
    /// A row group not sorted by pair: its pairs not read yet, listed when the day opened.
    unsorted: Option<BTreeSet<PairKey>>,
}

/// Where the qualifying pairs come from.
enum Pairs {
    /// `min_cycles > 0`: the pairs with enough cycles, in pair order.
    Listed(std::vec::IntoIter<PairKey>),
    /// `min_cycles == 0`: the runs' cursors, merged with the pairs that have cycles.
    Merged {
        runs: Vec<Run>,
        with_cycles: std::iter::Peekable<std::vec::IntoIter<PairKey>>,
    },
}

/// Everything `DaySeriesIter` needs; built by [`start`].
pub(crate) struct DaySeries {
    pairs: Pairs,
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
    let files = open_hours(
        root,
        Dataset::Spreads,
        date,
        0..=23,
        true,
        &mut skipped,
        spreads_file,
    )?;
    if query.min_cycles == 0 {
        // Every pair of the day qualifies, also those without a cycle; gaps of every
        // (symbol, venue) are kept (the pairs are not known yet).
        let runs = open_runs(&files, &mut skipped);
        let gaps = day_gaps(root, date, &None, &mut skipped)?;
        return Ok(DaySeries {
            pairs: Pairs::Merged {
                runs,
                with_cycles: cycles
                    .into_keys()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .peekable(),
            },
            files,
            gaps,
            max_points: query.max_points,
            skipped,
        });
    }
    let pairs: Vec<PairKey> = cycles
        .into_iter()
        .filter(|(_, count)| *count >= query.min_cycles)
        .map(|(key, _)| key)
        .collect();
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
        pairs: Pairs::Listed(pairs.into_iter()),
        files,
        gaps,
        max_points: query.max_points,
        skipped,
    })
}

/// An opened file as a spreads file keeping only the page index a pair read uses (the index of
/// the other columns is dropped here, one file at a time); refused (with why) when it is not a
/// spreads file.
pub(crate) fn spreads_file(mut open: OpenFile) -> Result<SpreadsFile, (PathBuf, String)> {
    let positions: Option<Vec<usize>> = SORT_COLUMNS
        .iter()
        .chain(VALUE_COLUMNS.iter())
        .map(|name| column_position(&open, name))
        .collect();
    let Some(positions) = positions else {
        return Err((open.path, "not a spreads file (columns missing)".into()));
    };
    let sort_positions = [positions[0], positions[1], positions[2]];
    match keep_page_index_of(&open.metadata, &sort_positions, &positions) {
        Ok(metadata) => open.metadata = metadata,
        Err(reason) => return Err((open.path, reason)),
    }
    let schema = open.metadata.metadata().file_metadata().schema_descr();
    let projection = ProjectionMask::leaves(schema, positions.iter().copied());
    let sort_projection = ProjectionMask::leaves(schema, sort_positions);
    Ok(SpreadsFile {
        open,
        sort_positions,
        projection,
        sort_projection,
    })
}

/// The file's metadata with the column index of `sort_leaves` and the offset index of
/// `read_leaves` only (the others emptied: the reader looks up only the columns it reads).
fn keep_page_index_of(
    metadata: &ArrowReaderMetadata,
    sort_leaves: &[usize],
    read_leaves: &[usize],
) -> Result<ArrowReaderMetadata, String> {
    let full = metadata.metadata();
    if full.column_index().is_none() && full.offset_index().is_none() {
        return Ok(metadata.clone());
    }
    let column_index = full.column_index().map(|row_groups| {
        row_groups
            .iter()
            .map(|columns| {
                columns
                    .iter()
                    .enumerate()
                    .map(|(leaf, index)| {
                        if sort_leaves.contains(&leaf) {
                            index.clone()
                        } else {
                            ColumnIndexMetaData::NONE
                        }
                    })
                    .collect()
            })
            .collect()
    });
    let offset_index = full.offset_index().map(|row_groups| {
        row_groups
            .iter()
            .map(|columns| {
                columns
                    .iter()
                    .enumerate()
                    .map(|(leaf, index)| {
                        if read_leaves.contains(&leaf) {
                            index.clone()
                        } else {
                            OffsetIndexMetaData {
                                page_locations: Vec::new(),
                                unencoded_byte_array_data_bytes: None,
                            }
                        }
                    })
                    .collect()
            })
            .collect()
    });
    let kept = ParquetMetaDataBuilder::new_from_metadata(ParquetMetaData::new(
        full.file_metadata().clone(),
        full.row_groups().to_vec(),
    ))
    .set_column_index(column_index)
    .set_offset_index(offset_index)
    .build();
    ArrowReaderMetadata::try_new(Arc::new(kept), ArrowReaderOptions::new())
        .map_err(|error| error.to_string())
}

/// A run per row group of every file, each with its first pair; a file that fails to read is
/// skipped (counted) with all its runs.
fn open_runs(files: &[SpreadsFile], skipped: &mut Skipped) -> Vec<Run> {
    let mut runs = Vec::new();
    'files: for (index, file) in files.iter().enumerate() {
        let metadata = file.open.metadata.metadata();
        let mut file_runs = Vec::new();
        for row_group in 0..metadata.num_row_groups() {
            let rows = row_group_rows(metadata, row_group);
            if rows == 0 {
                continue;
            }
            let opened = if is_sorted_by_pair(metadata, row_group, &file.sort_positions) {
                first_key_after(file, row_group, None, 0).map(|next| Run {
                    file: index,
                    row_group,
                    next,
                    unsorted: None,
                })
            } else {
                row_group_pairs(file, row_group).map(|pairs| Run {
                    file: index,
                    row_group,
                    next: pairs.first().cloned(),
                    unsorted: Some(pairs),
                })
            };
            match opened {
                Ok(run) => file_runs.push(run),
                Err(error) => {
                    skipped.add(&file.open.path, error.to_string());
                    continue 'files;
                }
            }
        }
        runs.extend(file_runs);
    }
    runs
}

fn row_group_rows(metadata: &ParquetMetaData, row_group: usize) -> usize {
    metadata.row_group(row_group).num_rows().max(0) as usize
}

/// Whether the row group says it is sorted ascending by the three sort columns first.
fn is_sorted_by_pair(
    metadata: &ParquetMetaData,
    row_group: usize,
    sort_leaves: &[usize; 3],
) -> bool {
    metadata
        .row_group(row_group)
        .sorting_columns()
        .is_some_and(|sorting| {
            sorting.len() >= 3
                && sorting.iter().zip(sort_leaves).all(|(column, &leaf)| {
                    usize::try_from(column.column_idx).ok() == Some(leaf) && !column.descending
                })
        })
}

impl DaySeries {
    /// The next qualifying pair's series, or None after the last.
    pub(crate) fn next_pair(&mut self) -> Option<Result<PairSeries, HistoryError>> {
        match &mut self.pairs {
            Pairs::Listed(pairs) => {
                let key = pairs.next()?;
                Some(self.read_listed_pair(key))
            }
            Pairs::Merged { runs, with_cycles } => {
                let from_runs = runs
                    .iter()
                    .filter_map(|run| run.next.as_ref())
                    .min()
                    .cloned();
                let key = match (from_runs, with_cycles.peek()) {
                    (None, None) => return None,
                    (Some(key), None) => key,
                    (None, Some(_)) => with_cycles.next()?,
                    (Some(key), Some(cycled)) if &key < cycled => key,
                    (Some(_), Some(_)) => with_cycles.next()?,
                };
                if with_cycles.peek() == Some(&key) {
                    with_cycles.next();
                }
                // Runs are in (file, row group) order: a file's points join the pair once all
                // its runs read; a file that fails to read is left out of this pair and the rest
                // of the day.
                // Sized once from the page index (the candidate rows of every run holding the
                // pair, a little more than its rows), so a day's pair is not regrown by doubling.
                let candidate_rows: usize = runs
                    .iter()
                    .filter(|run| run.next.as_ref() == Some(&key))
                    .map(|run| {
                        candidate_ranges(&self.files[run.file], run.row_group, &key)
                            .iter()
                            .map(ExactSizeIterator::len)
                            .sum::<usize>()
                    })
                    .sum();
                let mut points = Vec::with_capacity(candidate_rows);
                let mut file_start = 0;
                let mut current: Option<usize> = None;
                let mut failed: Vec<usize> = Vec::new();
                for run in runs
                    .iter_mut()
                    .filter(|run| run.next.as_ref() == Some(&key))
                {
                    if current != Some(run.file) {
                        file_start = points.len();
                        current = Some(run.file);
                    }
                    if failed.contains(&run.file) {
                        continue;
                    }
                    let file = &self.files[run.file];
                    if let Err(error) = read_run_pair(file, run, &key, &mut points) {
                        self.skipped.add(&file.open.path, error.to_string());
                        failed.push(run.file);
                        points.truncate(file_start);
                    }
                }
                if !failed.is_empty() {
                    runs.retain(|run| !failed.contains(&run.file));
                }
                Some(Ok(self.series_of(key, points)))
            }
        }
    }

    fn read_listed_pair(&mut self, key: PairKey) -> Result<PairSeries, HistoryError> {
        // Where the pair can be in each file (metadata only), then the points sized once.
        let selections: Vec<Selection> = self
            .files
            .iter()
            .map(|file| pair_selection(file, &key))
            .collect();
        let candidate_rows: usize = selections
            .iter()
            .flat_map(|selection| selection.ranges.iter().map(ExactSizeIterator::len))
            .sum();
        let mut points: Vec<Point> = Vec::with_capacity(candidate_rows);
        let mut failed = Vec::new();
        for (index, (file, selection)) in self.files.iter().zip(&selections).enumerate() {
            let file_start = points.len();
            // A file that fails to read is left out of this pair and the rest of the day.
            if let Err(error) = read_selection(file, selection, &key, &mut points) {
                points.truncate(file_start);
                self.skipped.add(&file.open.path, error.to_string());
                failed.push(index);
            }
        }
        for index in failed.into_iter().rev() {
            self.files.remove(index);
        }
        Ok(self.series_of(key, points))
    }

    fn series_of(&self, key: PairKey, mut points: Vec<Point>) -> PairSeries {
        // Files are sorted within themselves; part files of one hour may interleave in time.
        points.sort_unstable_by_key(|point| point.ts_ms);
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
        PairSeries {
            ts_ms: points.iter().map(|point| point.ts_ms).collect(),
            spread_bp: points.iter().map(|point| point.spread_bp).collect(),
            upper_bp: points.iter().map(|point| point.upper_bp).collect(),
            lower_bp: points.iter().map(|point| point.lower_bp).collect(),
            symbol,
            buy_venue,
            sell_venue,
            gaps,
        }
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

/// The rows (within `row_group`) of the pages of all three sort columns that can hold `key`.
fn candidate_ranges(file: &SpreadsFile, row_group: usize, key: &PairKey) -> Vec<Range<usize>> {
    let metadata = file.open.metadata.metadata();
    let values = [key.0.as_str(), key.1.as_str(), key.2.as_str()];
    let mut ranges = page_ranges(metadata, row_group, file.sort_positions[0], values[0]);
    for (&leaf, value) in file.sort_positions.iter().zip(values).skip(1) {
        if ranges.is_empty() {
            break;
        }
        ranges = intersect(&ranges, &page_ranges(metadata, row_group, leaf, value));
    }
    ranges
}

fn corrupt(file: &SpreadsFile) -> impl Fn(String) -> HistoryError + '_ {
    |reason| HistoryError::Corrupt {
        path: file.open.path.clone(),
        reason,
    }
}

/// Reads `ranges` (rows within `row_group`) of `file` with `projection`, batch by batch, until
/// `each` returns false.
fn scan(
    file: &SpreadsFile,
    row_group: usize,
    ranges: &[Range<usize>],
    projection: &ProjectionMask,
    each: &mut dyn FnMut(&RecordBatch) -> Result<bool, HistoryError>,
) -> Result<(), HistoryError> {
    if ranges.is_empty() {
        return Ok(());
    }
    let rows = row_group_rows(file.open.metadata.metadata(), row_group);
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
            .with_projection(projection.clone())
            .with_row_groups(vec![row_group])
            .with_row_selection(RowSelection::from_consecutive_ranges(
                ranges.iter().cloned(),
                rows,
            ))
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|error| corrupt(file)(error.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|error| corrupt(file)(error.to_string()))?;
        if !each(&batch)? {
            break;
        }
    }
    Ok(())
}

/// The sort columns of a batch.
fn sort_columns(batch: &RecordBatch) -> Option<[Strings<'_>; 3]> {
    Some([
        strings(batch, "symbol")?,
        strings(batch, "buy_venue")?,
        strings(batch, "sell_venue")?,
    ])
}

fn key_at<'a>(columns: &[Strings<'a>; 3], row: usize) -> (&'a str, &'a str, &'a str) {
    (
        columns[0].value(row),
        columns[1].value(row),
        columns[2].value(row),
    )
}

fn is_after(row_key: (&str, &str, &str), key: Option<&PairKey>) -> bool {
    key.is_none_or(|key| row_key > (key.0.as_str(), key.1.as_str(), key.2.as_str()))
}

/// The first pair after `after` (the first pair when None) in a sorted row group, looking from
/// row `from_row` on; None when the rest of the row group holds none.
fn first_key_after(
    file: &SpreadsFile,
    row_group: usize,
    after: Option<&PairKey>,
    from_row: usize,
) -> Result<Option<PairKey>, HistoryError> {
    let rows = row_group_rows(file.open.metadata.metadata(), row_group);
    let mut found = None;
    let range = from_row.min(rows)..rows;
    scan(
        file,
        row_group,
        std::slice::from_ref(&range),
        &file.sort_projection,
        &mut |batch| {
            let columns = sort_columns(batch)
                .ok_or_else(|| corrupt(file)("spreads columns of unexpected types".into()))?;
            for row in 0..batch.num_rows() {
                let row_key = key_at(&columns, row);
                if is_after(row_key, after) {
                    found = Some((
                        row_key.0.to_string(),
                        row_key.1.to_string(),
                        row_key.2.to_string(),
                    ));
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    Ok(found)
}

/// Every pair of a row group not sorted by pair (its sort columns read once).
fn row_group_pairs(
    file: &SpreadsFile,
    row_group: usize,
) -> Result<BTreeSet<PairKey>, HistoryError> {
    let rows = row_group_rows(file.open.metadata.metadata(), row_group);
    let mut pairs = BTreeSet::new();
    scan(
        file,
        row_group,
        std::slice::from_ref(&(0..rows)),
        &file.sort_projection,
        &mut |batch| {
            let columns = sort_columns(batch)
                .ok_or_else(|| corrupt(file)("spreads columns of unexpected types".into()))?;
            let mut previous = None;
            for row in 0..batch.num_rows() {
                let row_key = key_at(&columns, row);
                if previous != Some(row_key) {
                    pairs.insert((
                        row_key.0.to_string(),
                        row_key.1.to_string(),
                        row_key.2.to_string(),
                    ));
                    previous = Some(row_key);
                }
            }
            Ok(true)
        },
    )?;
    Ok(pairs)
}

/// Appends the rows of `key` (the run's cursor) in the run to `points` and moves the cursor to
/// the run's next pair.
fn read_run_pair(
    file: &SpreadsFile,
    run: &mut Run,
    key: &PairKey,
    points: &mut Vec<Point>,
) -> Result<(), HistoryError> {
    let row_group = run.row_group;
    let rows = row_group_rows(file.open.metadata.metadata(), row_group);
    let mut ranges = candidate_ranges(file, row_group, key);
    if let Some(pairs) = &mut run.unsorted {
        read_rows_of(file, row_group, &ranges, key, points, None)?;
        pairs.remove(key);
        run.next = pairs.first().cloned();
        return Ok(());
    }
    if ranges.is_empty() {
        // The statistics say no, the rows said yes: trust the rows.
        ranges.push(0..rows);
    }
    // One row past the candidates: where the pair's rows end there, the next pair starts.
    let scanned_end = match ranges.last_mut() {
        Some(last) => {
            last.end = (last.end + 1).min(rows);
            last.end
        }
        None => rows,
    };
    let mut next = None;
    read_rows_of(file, row_group, &ranges, key, points, Some(&mut next))?;
    if next.is_none() && scanned_end < rows {
        next = first_key_after(file, row_group, Some(key), scanned_end)?;
    }
    run.next = next;
    Ok(())
}

/// Appends the rows of `key` within `ranges` to `points`; with `next` (a sorted run), stops at
/// the first row after `key` and sets `next` to its pair.
fn read_rows_of(
    file: &SpreadsFile,
    row_group: usize,
    ranges: &[Range<usize>],
    key: &PairKey,
    points: &mut Vec<Point>,
    mut next: Option<&mut Option<PairKey>>,
) -> Result<(), HistoryError> {
    scan(file, row_group, ranges, &file.projection, &mut |batch| {
        push_points(file, batch, key, points, next.as_deref_mut())
    })
}

/// Where a pair can be in a file: the row groups whose statistics can hold it and, within them,
/// the candidate rows (numbered across the chosen row groups, as a row selection counts them).
struct Selection {
    row_groups: Vec<usize>,
    ranges: Vec<Range<usize>>,
    rows: usize,
}

fn pair_selection(file: &SpreadsFile, key: &PairKey) -> Selection {
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
        let ranges = candidate_ranges(file, row_group, key);
        if ranges.is_empty() {
            continue;
        }
        row_groups.push(row_group);
        selected.extend(
            ranges
                .iter()
                .map(|range| range.start + offset..range.end + offset),
        );
        offset += row_group_rows(metadata, row_group);
    }
    Selection {
        row_groups,
        ranges: selected,
        rows: offset,
    }
}

/// Appends the rows of `key` in `file` to `points`.
pub(crate) fn read_pair_rows(
    file: &SpreadsFile,
    key: &PairKey,
    points: &mut Vec<Point>,
) -> Result<(), HistoryError> {
    read_selection(file, &pair_selection(file, key), key, points)
}

/// Appends the rows of `key` within `selection` of `file` to `points`.
fn read_selection(
    file: &SpreadsFile,
    selection: &Selection,
    key: &PairKey,
    points: &mut Vec<Point>,
) -> Result<(), HistoryError> {
    let Selection {
        row_groups,
        ranges: selected,
        rows: offset,
    } = selection;
    let offset = *offset;
    if row_groups.is_empty() {
        return Ok(());
    }
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
            .with_row_groups(row_groups.clone())
            .with_row_selection(RowSelection::from_consecutive_ranges(
                selected.iter().cloned(),
                offset,
            ))
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|error| corrupt(file)(error.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|error| corrupt(file)(error.to_string()))?;
        push_points(file, &batch, key, points, None)?;
    }
    Ok(())
}

/// Appends the batch's rows of `key` to `points`. With `next` (a sorted run), stops at the first
/// row after `key`, sets `next` to its pair and returns false.
fn push_points(
    file: &SpreadsFile,
    batch: &RecordBatch,
    key: &PairKey,
    points: &mut Vec<Point>,
    mut next: Option<&mut Option<PairKey>>,
) -> Result<bool, HistoryError> {
    let (Some(columns), Some(ts), Some(mean), Some(lower), Some(upper)) = (
        sort_columns(batch),
        timestamps_ns(batch, "bucket_start"),
        floats(batch, "mean_bp"),
        floats(batch, "band_lower_bp"),
        floats(batch, "band_upper_bp"),
    ) else {
        return Err(corrupt(file)("spreads columns of unexpected types".into()));
    };
    let wanted = (key.0.as_str(), key.1.as_str(), key.2.as_str());
    for row in 0..batch.num_rows() {
        let row_key = key_at(&columns, row);
        if row_key != wanted {
            if let Some(next) = next.as_deref_mut()
                && row_key > wanted
            {
                *next = Some((
                    row_key.0.to_string(),
                    row_key.1.to_string(),
                    row_key.2.to_string(),
                ));
                return Ok(false);
            }
            continue;
        }
        points.push(Point {
            ts_ms: ts.value(row).div_euclid(1_000_000),
            spread_bp: float_or_nan(mean, row),
            upper_bp: float_or_nan(upper, row),
            lower_bp: float_or_nan(lower, row),
        });
    }
    Ok(true)
}

/// Every pair named in a spreads file (its sort columns only).
pub(crate) fn distinct_pairs(file: &SpreadsFile) -> Result<BTreeSet<PairKey>, String> {
    let metadata = file.open.metadata.metadata();
    let mut pairs = BTreeSet::new();
    for row_group in 0..metadata.num_row_groups() {
        pairs.extend(row_group_pairs(file, row_group).map_err(|error| error.to_string())?);
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
