//! A day's gap intervals per (symbol, venue), from the `gaps` dataset, in ms since the epoch.
//!
//! Per (symbol, venue), in time order: `disconnect` and `symbol_retired` open a gap, the next
//! `reconnect` closes it; a gap still open at the end of the data closes at the end of the day
//! (the next day's 00:00). A `reconnect` with no open gap closes one opened before the day
//! (from the day's start). `quote_withdrawn` is a point `[ts, ts]`: the history does not record
//! when a fresh quote came back (the spread samples resume then). Overlapping intervals are
//! merged; past [`MAX_GAPS_PER_VENUE`] intervals a (symbol, venue)'s later gaps extend its last
//! interval, so the coverage stays right and memory stays bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tickflow_formats::Dataset;

use crate::columns::{strings, timestamps_ns};
use crate::files::{Skipped, open_day};
use crate::{Date, HistoryError};

/// Most intervals kept per (symbol, venue) and day.
pub const MAX_GAPS_PER_VENUE: usize = 4096;
const MS_PER_DAY: i64 = 86_400_000;

const COLUMNS: [&str; 4] = ["ts", "kind", "symbol", "venue"];

/// Gap intervals `[start_ms, end_ms]` per (symbol, venue).
pub(crate) type GapMap = BTreeMap<(String, String), Vec<(i64, i64)>>;

/// Which (symbol, venue)s to keep gaps of; `None` keeps all.
pub(crate) type VenueFilter = Option<BTreeSet<(String, String)>>;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Open,
    Point,
    Close,
}

/// Gap intervals `[start_ms, end_ms]` per (symbol, venue), each list sorted and disjoint.
pub(crate) fn day_gaps(
    root: &Path,
    date: Date,
    wanted: &VenueFilter,
    skipped: &mut Skipped,
) -> Result<GapMap, HistoryError> {
    let mut events: BTreeMap<(String, String), Vec<(i64, Kind)>> = BTreeMap::new();
    for file in open_day(root, Dataset::Gaps, date, false, skipped)? {
        let positions: Option<Vec<usize>> = COLUMNS
            .iter()
            .map(|name| crate::files::column_position(&file, name))
            .collect();
        let Some(positions) = positions else {
            skipped.add(&file.path, "not a gaps file (columns missing)".into());
            continue;
        };
        let mask = ProjectionMask::leaves(
            file.metadata.metadata().file_metadata().schema_descr(),
            positions,
        );
        let reader = match ParquetRecordBatchReaderBuilder::new_with_metadata(
            file.file,
            file.metadata.clone(),
        )
        .with_projection(mask)
        .build()
        {
            Ok(reader) => reader,
            Err(error) => {
                skipped.add(&file.path, error.to_string());
                continue;
            }
        };
        let mut file_events: Vec<((String, String), (i64, Kind))> = Vec::new();
        let mut damaged = None;
        for batch in reader {
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    damaged = Some(error.to_string());
                    break;
                }
            };
            let (Some(ts), Some(kind), Some(symbol), Some(venue)) = (
                timestamps_ns(&batch, "ts"),
                strings(&batch, "kind"),
                strings(&batch, "symbol"),
                strings(&batch, "venue"),
            ) else {
                damaged = Some("gaps columns of unexpected types".into());
                break;
            };
            for row in 0..batch.num_rows() {
                let key = (symbol.value(row), venue.value(row));
                let keep = wanted
                    .as_ref()
                    .is_none_or(|wanted| wanted.contains(&(key.0.to_string(), key.1.to_string())));
                if !keep {
                    continue;
                }
                let kind = match kind.value(row) {
                    "disconnect" | "symbol_retired" => Kind::Open,
                    "reconnect" => Kind::Close,
                    "quote_withdrawn" => Kind::Point,
                    _ => continue,
                };
                let ts_ms = ts.value(row).div_euclid(1_000_000);
                file_events.push(((key.0.to_string(), key.1.to_string()), (ts_ms, kind)));
            }
        }
        if let Some(reason) = damaged {
            skipped.add(&file.path, reason);
            continue;
        }
        for (key, event) in file_events {
            events.entry(key).or_default().push(event);
        }
    }
    let day_start_ms = date.start_ms();
    let day_end_ms = day_start_ms + MS_PER_DAY;
    Ok(events
        .into_iter()
        .map(|(key, mut events)| {
            events.sort_unstable();
            (key, intervals(&events, day_start_ms, day_end_ms))
        })
        .collect())
}

/// Intervals from one (symbol, venue)'s events in time order.
fn intervals(events: &[(i64, Kind)], day_start_ms: i64, day_end_ms: i64) -> Vec<(i64, i64)> {
    let mut intervals = Vec::new();
    let mut open: Option<i64> = None;
    for &(ts_ms, kind) in events {
        match kind {
            Kind::Open => {
                open.get_or_insert(ts_ms);
            }
            Kind::Close => {
                let start = open.take().unwrap_or(day_start_ms);
                push_interval(&mut intervals, (start, ts_ms));
            }
            Kind::Point => {
                if open.is_none() {
                    push_interval(&mut intervals, (ts_ms, ts_ms));
                }
            }
        }
    }
    if let Some(start) = open {
        push_interval(&mut intervals, (start, day_end_ms.max(start)));
    }
    intervals
}

/// Appends an interval that starts at or after the last one's start: merged into the last one
/// when they overlap (or when the list is full).
pub(crate) fn push_interval(intervals: &mut Vec<(i64, i64)>, interval: (i64, i64)) {
    let full = intervals.len() >= MAX_GAPS_PER_VENUE;
    if let Some(last) = intervals.last_mut()
        && (interval.0 <= last.1 || full)
    {
        last.1 = last.1.max(interval.1);
        return;
    }
    intervals.push(interval);
}

/// The union of two sorted, disjoint interval lists.
pub(crate) fn union(first: &[(i64, i64)], second: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut all: Vec<(i64, i64)> = first.iter().chain(second).copied().collect();
    all.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(all.len());
    for interval in all {
        match merged.last_mut() {
            Some(last) if interval.0 <= last.1 => last.1 = last.1.max(interval.1),
            _ => merged.push(interval),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_intervals() {
        let day = (0, MS_PER_DAY);
        let check = |events: &[(i64, Kind)], expected: &[(i64, i64)]| {
            assert_eq!(intervals(events, day.0, day.1), expected);
        };
        check(&[(10, Kind::Open), (20, Kind::Close)], &[(10, 20)]);
        check(
            &[(10, Kind::Open), (15, Kind::Open), (20, Kind::Close)],
            &[(10, 20)],
        );
        check(&[(20, Kind::Close)], &[(0, 20)]);
        check(&[(30, Kind::Open)], &[(30, MS_PER_DAY)]);
        check(&[(5, Kind::Point), (30, Kind::Point)], &[(5, 5), (30, 30)]);
        check(
            &[(10, Kind::Open), (12, Kind::Point), (20, Kind::Close)],
            &[(10, 20)],
        );
        assert_eq!(
            union(&[(1, 5), (10, 12)], &[(4, 8), (20, 21)]),
            [(1, 8), (10, 12), (20, 21)]
        );
    }

    #[test]
    fn intervals_past_the_cap_extend_the_last_one() {
        let mut list = Vec::new();
        for index in 0..(MAX_GAPS_PER_VENUE as i64 + 10) {
            push_interval(&mut list, (index * 10, index * 10 + 1));
        }
        assert_eq!(list.len(), MAX_GAPS_PER_VENUE);
        assert_eq!(
            list.last().map(|last| last.1),
            Some((MAX_GAPS_PER_VENUE as i64 + 9) * 10 + 1)
        );
    }
}
