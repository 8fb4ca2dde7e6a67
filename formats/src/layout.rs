//! Where the files of the Parquet history live, as path rules (no file system access here).
//!
//! ```text
//! <root>/_writer.lock                                   held by the one writer of the root
//! <root>/_staging/…                                     work area: readers never look here
//! <root>/<dataset>/date=YYYY-MM-DD/hour=HH/part-….parquet       written by the sink
//! <root>/<dataset>/date=YYYY-MM-DD/hour=HH/compacted-….parquet  an hour merged into one file
//! ```
//!
//! Partitions are UTC hours of the row's own time ([`crate::Dataset::partition_time_column`]).
//! A file appears in a dataset directory only complete (written in `_staging`, synced, renamed
//! in); staging names also end in `.tmp`, so no `*.parquet` glob matches them.

use std::path::{Path, PathBuf};

/// Nanoseconds in one hour.
pub const HOUR_NS: i64 = 3_600_000_000_000;
/// The staging directory under the root (a leading `_`: pyarrow's discovery skips it too).
pub const STAGING_DIR: &str = "_staging";
/// Suffix of every file being written, so no `*.parquet` glob ever matches one.
pub const STAGING_SUFFIX: &str = ".tmp";
/// The lock file that keeps a second writer off a root.
pub const LOCK_FILE: &str = "_writer.lock";
/// Extension of every visible data file.
pub const DATA_EXTENSION: &str = ".parquet";
/// Prefix of files written by the sink as rows arrive.
pub const PART_PREFIX: &str = "part-";
/// Prefix of a file that holds a whole hour, merged and sorted by the hourly compaction.
pub const COMPACTED_PREFIX: &str = "compacted-";

/// A partition path component that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("not a partition directory name: {0:?}")]
    BadComponent(String),
}

/// One UTC hour: the partition of every row whose time falls in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourPartition {
    /// Hours since the Unix epoch.
    pub hour_index: i64,
}

impl HourPartition {
    /// The hour holding `ts_ns` (ns since the Unix epoch, UTC; negative times work too).
    pub fn of_ns(ts_ns: i64) -> HourPartition {
        HourPartition {
            hour_index: ts_ns.div_euclid(HOUR_NS),
        }
    }
    pub fn start_ns(self) -> i64 {
        self.hour_index.saturating_mul(HOUR_NS)
    }
    pub fn end_ns(self) -> i64 {
        self.start_ns().saturating_add(HOUR_NS)
    }
    /// `(year, month, day, hour)` in UTC.
    pub fn civil(self) -> (i64, u32, u32, u32) {
        let days = self.hour_index.div_euclid(24);
        let hour = self.hour_index.rem_euclid(24) as u32;
        let (year, month, day) = civil_from_days(days);
        (year, month, day, hour)
    }
    /// `date=YYYY-MM-DD`.
    pub fn date_component(self) -> String {
        let (year, month, day, _) = self.civil();
        format!("date={year:04}-{month:02}-{day:02}")
    }
    /// `hour=HH`.
    pub fn hour_component(self) -> String {
        let (_, _, _, hour) = self.civil();
        format!("hour={hour:02}")
    }
    /// `<dataset>/date=YYYY-MM-DD/hour=HH`, relative to the root.
    pub fn relative_dir(self, dataset: &str) -> PathBuf {
        Path::new(dataset)
            .join(self.date_component())
            .join(self.hour_component())
    }
    /// The days since the epoch named by a `date=YYYY-MM-DD` component.
    pub fn parse_date_component(component: &str) -> Result<i64, LayoutError> {
        let bad = || LayoutError::BadComponent(component.to_string());
        let value = component.strip_prefix("date=").ok_or_else(bad)?;
        let mut parts = value.split('-');
        let (Some(year), Some(month), Some(day), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let year: i64 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        let day: u32 = day.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(bad());
        }
        let days = days_from_civil(year, month, day);
        if civil_from_days(days) != (year, month, day) {
            return Err(bad());
        }
        Ok(days)
    }
    /// The partition named by `date=YYYY-MM-DD` and `hour=HH` components.
    pub fn parse(date_component: &str, hour_component: &str) -> Result<HourPartition, LayoutError> {
        let days = HourPartition::parse_date_component(date_component)?;
        let bad = || LayoutError::BadComponent(hour_component.to_string());
        let hour: i64 = hour_component
            .strip_prefix("hour=")
            .filter(|value| value.len() == 2)
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        if !(0..24).contains(&hour) {
            return Err(bad());
        }
        Ok(HourPartition {
            hour_index: days * 24 + hour,
        })
    }
}

/// A visible data file of a partition directory: ends in `.parquet`, starts with neither `.` nor
/// `_` (what pyarrow's discovery ignores).
pub fn is_data_file_name(name: &str) -> bool {
    name.ends_with(DATA_EXTENSION) && !name.starts_with('.') && !name.starts_with('_')
}

/// A data file written as rows arrive: `part-<created ms>-<writer id>-<sequence>.parquet`.
pub fn part_file_name(created_ms: i64, writer_id: u32, sequence: u64) -> String {
    format!("{PART_PREFIX}{created_ms:013}-{writer_id:08x}-{sequence:06}{DATA_EXTENSION}")
}

/// A compacted hour: `compacted-<created ms>-<writer id>-<sequence>.parquet`.
pub fn compacted_file_name(created_ms: i64, writer_id: u32, sequence: u64) -> String {
    format!("{COMPACTED_PREFIX}{created_ms:013}-{writer_id:08x}-{sequence:06}{DATA_EXTENSION}")
}

/// The staging name of a data file being written (`<name>.tmp`, in [`STAGING_DIR`]).
pub fn staging_file_name(data_file_name: &str) -> String {
    format!("{data_file_name}{STAGING_SUFFIX}")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01 (inverse of [`civil_from_days`]).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths_follow_utc_hours() {
        // 2024-02-29T23:59:59.999999999Z and the next nanosecond.
        let last_ns = 1_709_251_199_999_999_999;
        let partition = HourPartition::of_ns(last_ns);
        assert_eq!(
            partition.relative_dir("quotes"),
            Path::new("quotes/date=2024-02-29/hour=23")
        );
        let next = HourPartition::of_ns(last_ns + 1);
        assert_eq!(
            next.relative_dir("quotes"),
            Path::new("quotes/date=2024-03-01/hour=00")
        );
        assert_eq!(next.hour_index, partition.hour_index + 1);
        assert_eq!(HourPartition::of_ns(-1).civil(), (1969, 12, 31, 23));
    }

    #[test]
    fn components_parse_back_and_bad_ones_are_refused() {
        for hour_index in [0i64, 1, 23, 24, 472_000, 500_000, -5] {
            let partition = HourPartition { hour_index };
            let parsed =
                HourPartition::parse(&partition.date_component(), &partition.hour_component());
            assert_eq!(parsed, Ok(partition));
        }
        for (date, hour) in [
            ("date=2024-02-30", "hour=01"),
            ("date=2024-13-01", "hour=01"),
            ("dat=2024-01-01", "hour=01"),
            ("date=2024-01-01", "hour=24"),
            ("date=2024-01-01", "hour=1"),
            ("date=2024-01-01-01", "hour=01"),
        ] {
            assert!(HourPartition::parse(date, hour).is_err(), "{date}/{hour}");
        }
    }

    #[test]
    fn staging_names_never_look_like_data_files() {
        let name = part_file_name(1_700_000_000_000, 7, 3);
        assert!(is_data_file_name(&name));
        assert!(is_data_file_name(&compacted_file_name(1, 2, 3)));
        assert!(!is_data_file_name(&staging_file_name(&name)));
        assert!(!is_data_file_name("_manifest.parquet"));
        assert!(!is_data_file_name(".hidden.parquet"));
    }
}
