//! Finding and opening a day's files of one dataset, following the reading contract of
//! `plugins/parquet/README.md`: every `*.parquet` file (not starting with `.` or `_`) of
//! `<root>/<dataset>/date=YYYY-MM-DD/hour=HH/`, nothing under `_staging`.
//!
//! A file listed just before a compaction exchanged its hour directory may be gone when opened:
//! the hour is listed again and opened again (up to [`LIST_ATTEMPTS`] times). An opened file
//! stays readable through its descriptor whatever happens to its name. A file that does not
//! parse as Parquet is skipped and counted ([`Skipped`]), so one damaged file does not hide the
//! rest of the day.

use std::fs::File;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use tickflow_formats::Dataset;

use crate::{Date, HistoryError};

/// How many times an hour is listed and opened when a listed file vanished meanwhile.
const LIST_ATTEMPTS: usize = 4;
/// How many skipped files keep their reason (the count goes on).
const SKIPPED_REASONS_KEPT: usize = 16;

/// An opened data file with its footer (and page index when asked for).
pub(crate) struct OpenFile {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) metadata: ArrowReaderMetadata,
}

/// Files left out of a read because they could not be parsed.
#[derive(Clone, Debug, Default)]
pub struct Skipped {
    /// Files skipped.
    pub files: u64,
    /// The first few of them, with why.
    pub reasons: Vec<(PathBuf, String)>,
}

impl Skipped {
    pub(crate) fn add(&mut self, path: &Path, reason: String) {
        self.files += 1;
        if self.reasons.len() < SKIPPED_REASONS_KEPT {
            self.reasons.push((path.to_path_buf(), reason));
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The hour directories of a dataset's day within `wanted_hours`, in hour order (none when the day has
/// no data).
fn hour_dirs(
    root: &Path,
    dataset: Dataset,
    date: Date,
    wanted_hours: &RangeInclusive<u32>,
) -> Result<Vec<PathBuf>, HistoryError> {
    let day_dir = root.join(dataset.name()).join(date.partition_component());
    let entries = match std::fs::read_dir(&day_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(&day_dir)(error)),
    };
    let mut hours = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(&day_dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let hour_ok = name
            .strip_prefix("hour=")
            .filter(|hour| hour.len() == 2)
            .and_then(|hour| hour.parse::<u32>().ok())
            .is_some_and(|hour| hour < 24 && wanted_hours.contains(&hour));
        if hour_ok {
            hours.push(entry.path());
        }
    }
    hours.sort();
    Ok(hours)
}

/// The data files of one hour directory, by name.
fn data_files(hour_dir: &Path) -> Result<Vec<PathBuf>, HistoryError> {
    let entries = match std::fs::read_dir(hour_dir) {
        Ok(entries) => entries,
        // Retention removed the hour meanwhile: it holds nothing any more.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(hour_dir)(error)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(hour_dir))?;
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(tickflow_formats::layout::is_data_file_name)
        {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Opens every data file of a dataset's day, in (hour, name) order. Unparsable files are
/// skipped and counted in `skipped`; other I/O errors fail the read.
pub(crate) fn open_day(
    root: &Path,
    dataset: Dataset,
    date: Date,
    page_index: bool,
    skipped: &mut Skipped,
) -> Result<Vec<OpenFile>, HistoryError> {
    open_hours(root, dataset, date, 0..=23, page_index, skipped, Ok)
}

/// [`open_day`] for the hours `hours` (UTC) of the day only, each file handed to `prepare` as
/// soon as it is open (so what a caller drops of a file's metadata is dropped before the next
/// file is read); a file `prepare` refuses is skipped with its reason.
pub(crate) fn open_hours<T>(
    root: &Path,
    dataset: Dataset,
    date: Date,
    hours: RangeInclusive<u32>,
    page_index: bool,
    skipped: &mut Skipped,
    mut prepare: impl FnMut(OpenFile) -> Result<T, (PathBuf, String)>,
) -> Result<Vec<T>, HistoryError> {
    let mut opened = Vec::new();
    for hour_dir in hour_dirs(root, dataset, date, &hours)? {
        let mut attempt = 0;
        'hour: loop {
            attempt += 1;
            let mut hour_files = Vec::new();
            let mut hour_skipped = Skipped::default();
            for path in data_files(&hour_dir)? {
                let file = match File::open(&path) {
                    Ok(file) => file,
                    Err(error)
                        if error.kind() == std::io::ErrorKind::NotFound
                            && attempt < LIST_ATTEMPTS =>
                    {
                        continue 'hour;
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        hour_skipped.add(&path, "vanished while the hour was read".into());
                        continue;
                    }
                    Err(error) => return Err(io_error(&path)(error)),
                };
                let options = ArrowReaderOptions::new().with_page_index(page_index);
                match ArrowReaderMetadata::load(&file, options) {
                    Ok(metadata) => match prepare(OpenFile {
                        path,
                        file,
                        metadata,
                    }) {
                        Ok(prepared) => hour_files.push(prepared),
                        Err((path, reason)) => hour_skipped.add(&path, reason),
                    },
                    Err(error) => hour_skipped.add(&path, error.to_string()),
                }
            }
            opened.extend(hour_files);
            skipped.files += hour_skipped.files;
            for (path, reason) in hour_skipped.reasons {
                if skipped.reasons.len() < SKIPPED_REASONS_KEPT {
                    skipped.reasons.push((path, reason));
                }
            }
            break;
        }
    }
    Ok(opened)
}

/// The position of a column (a leaf of the flat schema) by name.
pub(crate) fn column_position(file: &OpenFile, name: &str) -> Option<usize> {
    file.metadata
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|column| column.name() == name)
}
