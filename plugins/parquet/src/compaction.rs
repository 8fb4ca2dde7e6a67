//! The hourly compaction of `spreads`: a closed hour's files (each row group sorted by pair then
//! time) are merged into one file sorted as a whole, in bounded memory, and swapped in atomically.
//!
//! Merge: a k-way merge over at most `fan_in` inputs at a time, each read in batches of
//! `batch_rows` rows; more inputs are merged in passes (the first `fan_in` into a temporary file
//! that becomes an input of the next pass). Memory: `fan_in` decoded batches, the output row
//! group being encoded, and one output batch.
//!
//! Visibility: the merged file is written inside a fresh directory in the staging area; that
//! directory and the live `hour=HH` directory are then exchanged in one `renameat2
//! (RENAME_EXCHANGE)`: at every instant the live path names either the directory of the input
//! files or the directory holding only the merged file, never both or neither. The old directory
//! (now in staging) is then removed. A crash leaves one of the two states, and the next start
//! empties the staging area.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use crate::files;

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Parquet { path: PathBuf, source: ParquetError },
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("{0}")]
    Invalid(String),
    #[error("atomic directory exchange unsupported here: {0}")]
    Unsupported(io::Error),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CompactionError + '_ {
    move |source| CompactionError::Io {
        path: path.to_path_buf(),
        source,
    }
}
fn parquet_at(path: &Path) -> impl FnOnce(ParquetError) -> CompactionError + '_ {
    move |source| CompactionError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

/// The key columns of one decoded batch, ready for comparisons without allocation.
struct Keys {
    symbol: ArrayRef,
    buy: ArrayRef,
    sell: ArrayRef,
    bucket: ArrayRef,
}

fn dictionary_value(array: &ArrayRef, row: usize) -> &str {
    let dictionary = array.as_dictionary::<Int32Type>();
    let key = dictionary.keys().value(row) as usize;
    dictionary.values().as_string::<i32>().value(key)
}

impl Keys {
    fn of(batch: &RecordBatch) -> Result<Keys, CompactionError> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| CompactionError::Invalid(format!("input lacks column {name}")))
        };
        Ok(Keys {
            symbol: column("symbol")?,
            buy: column("buy_venue")?,
            sell: column("sell_venue")?,
            bucket: column("bucket_start")?,
        })
    }
    fn key(&self, row: usize) -> (&str, &str, &str, i64) {
        (
            dictionary_value(&self.symbol, row),
            dictionary_value(&self.buy, row),
            dictionary_value(&self.sell, row),
            self.bucket
                .as_primitive::<TimestampNanosecondType>()
                .value(row),
        )
    }
}

struct Cursor {
    reader: ParquetRecordBatchReader,
    batch: RecordBatch,
    keys: Keys,
    row: usize,
    path: PathBuf,
}

impl Cursor {
    /// Moves to the next row; false when the input is exhausted.
    fn advance(&mut self) -> Result<bool, CompactionError> {
        self.row += 1;
        while self.row >= self.batch.num_rows() {
            match self.reader.next() {
                None => return Ok(false),
                Some(batch) => {
                    self.batch = batch.map_err(|error| {
                        CompactionError::Invalid(format!("{}: {error}", self.path.display()))
                    })?;
                    self.keys = Keys::of(&self.batch)?;
                    self.row = 0;
                }
            }
        }
        Ok(true)
    }
}

/// Rows taken so far for the next output batch: (cursor, batch generation, row). The batches
/// they point into are kept alive here until the output batch is built.
struct Pending {
    batches: Vec<RecordBatch>,
    picks: Vec<(usize, usize)>,
}

impl Pending {
    fn flush(
        &mut self,
        schema: &SchemaRef,
        writer: &mut ArrowWriter<File>,
        output: &Path,
    ) -> Result<u64, CompactionError> {
        if self.picks.is_empty() {
            self.batches.clear();
            return Ok(0);
        }
        let mut columns = Vec::with_capacity(schema.fields().len());
        for index in 0..schema.fields().len() {
            let arrays: Vec<&dyn Array> = self
                .batches
                .iter()
                .map(|batch| batch.column(index).as_ref())
                .collect();
            columns.push(arrow_select::interleave::interleave(&arrays, &self.picks)?);
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        writer.write(&batch).map_err(parquet_at(output))?;
        let rows = self.picks.len() as u64;
        self.picks.clear();
        self.batches.clear();
        Ok(rows)
    }
}

/// A sorted stream of rows: one row group of a file (each row group of a sink file is sorted),
/// or a whole file (`None`: a merged file is sorted as a whole).
pub type Run = (PathBuf, Option<usize>);

/// The runs of a file written by the sink: one per row group.
pub fn row_group_runs(path: &Path) -> Result<Vec<Run>, CompactionError> {
    let file = File::open(path).map_err(io_at(path))?;
    let row_groups = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet_at(path))?
        .metadata()
        .num_row_groups();
    Ok((0..row_groups)
        .map(|index| (path.to_path_buf(), Some(index)))
        .collect())
}

/// A k-way merge of sorted runs into one file sorted as a whole, done in steps.
pub struct Merge {
    cursors: Vec<Cursor>,
    live: Vec<usize>,
    pending: Pending,
    /// Index in `pending.batches` of each cursor's current batch, if already referenced.
    batch_slot: Vec<Option<usize>>,
    writer: ArrowWriter<File>,
    output: PathBuf,
    schema: SchemaRef,
    batch_rows: usize,
    runs: usize,
    written: u64,
}

impl Merge {
    pub fn open(
        runs: &[Run],
        output: &Path,
        schema: &SchemaRef,
        properties: WriterProperties,
        batch_rows: usize,
    ) -> Result<Merge, CompactionError> {
        let file = File::create(output).map_err(io_at(output))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .map_err(parquet_at(output))?;
        let mut cursors = Vec::with_capacity(runs.len());
        for (path, row_group) in runs {
            let file = File::open(path).map_err(io_at(path))?;
            let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(parquet_at(path))?
                .with_batch_size(batch_rows);
            if let Some(row_group) = row_group {
                builder = builder.with_row_groups(vec![*row_group]);
            }
            let reader = builder.build().map_err(parquet_at(path))?;
            if let Some(cursor) = Cursor::from_reader(reader, path)? {
                cursors.push(cursor);
            }
        }
        Ok(Merge {
            live: (0..cursors.len()).collect(),
            batch_slot: vec![None; cursors.len()],
            cursors,
            pending: Pending {
                batches: Vec::new(),
                picks: Vec::with_capacity(batch_rows),
            },
            writer,
            output: output.to_path_buf(),
            schema: schema.clone(),
            batch_rows,
            runs: runs.len(),
            written: 0,
        })
    }

    /// Merges up to `max_rows` rows; true once every input is exhausted.
    pub fn step(&mut self, max_rows: usize) -> Result<bool, CompactionError> {
        let mut taken = 0usize;
        while !self.live.is_empty() {
            if taken >= max_rows {
                return Ok(false);
            }
            taken += 1;
            let mut best = 0;
            for candidate in 1..self.live.len() {
                let a = &self.cursors[self.live[candidate]];
                let b = &self.cursors[self.live[best]];
                if a.keys.key(a.row) < b.keys.key(b.row) {
                    best = candidate;
                }
            }
            let cursor_index = self.live[best];
            let slot = match self.batch_slot[cursor_index] {
                Some(slot) => slot,
                None => {
                    self.pending
                        .batches
                        .push(self.cursors[cursor_index].batch.clone());
                    let slot = self.pending.batches.len() - 1;
                    self.batch_slot[cursor_index] = Some(slot);
                    slot
                }
            };
            self.pending
                .picks
                .push((slot, self.cursors[cursor_index].row));
            let row_before = self.cursors[cursor_index].row;
            let more = self.cursors[cursor_index].advance()?;
            if !more {
                self.live.remove(best);
            }
            if !more || self.cursors[cursor_index].row <= row_before {
                // The cursor moved to a new batch (or ended): the next pick references anew.
                self.batch_slot[cursor_index] = None;
            }
            if self.pending.picks.len() >= self.batch_rows
                || self.pending.batches.len() > 2 * self.runs.max(8)
            {
                self.written += self
                    .pending
                    .flush(&self.schema, &mut self.writer, &self.output)?;
                self.batch_slot.iter_mut().for_each(|slot| *slot = None);
            }
        }
        Ok(true)
    }

    /// Writes what is left, closes and fsyncs the output. Returns the rows written.
    pub fn finish(mut self) -> Result<u64, CompactionError> {
        self.written += self
            .pending
            .flush(&self.schema, &mut self.writer, &self.output)?;
        let output = self.output;
        let mut file = self.writer.into_inner().map_err(parquet_at(&output))?;
        io::Write::flush(&mut file).map_err(io_at(&output))?;
        file.sync_all().map_err(io_at(&output))?;
        Ok(self.written)
    }
}

/// Merges sorted `runs` into one file at `output` sorted as a whole. Returns the rows written.
pub fn merge_sorted(
    runs: &[Run],
    output: &Path,
    schema: &SchemaRef,
    properties: WriterProperties,
    batch_rows: usize,
) -> Result<u64, CompactionError> {
    let mut merge = Merge::open(runs, output, schema, properties, batch_rows)?;
    while !merge.step(usize::MAX)? {}
    merge.finish()
}

impl Cursor {
    fn from_reader(
        mut reader: ParquetRecordBatchReader,
        path: &Path,
    ) -> Result<Option<Cursor>, CompactionError> {
        loop {
            match reader.next() {
                None => return Ok(None),
                Some(batch) => {
                    let batch = batch?;
                    if batch.num_rows() > 0 {
                        return Ok(Some(Cursor {
                            keys: Keys::of(&batch)?,
                            batch,
                            reader,
                            row: 0,
                            path: path.to_path_buf(),
                        }));
                    }
                }
            }
        }
    }
}

/// Rows in a Parquet file, from its footer.
pub fn row_count(path: &Path) -> Result<u64, CompactionError> {
    let file = File::open(path).map_err(io_at(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_at(path))?;
    Ok(builder.metadata().file_metadata().num_rows().max(0) as u64)
}

/// What one compaction did.
#[derive(Debug, PartialEq, Eq)]
pub struct Compacted {
    pub inputs: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// One hour's compaction, run in steps so the writer thread can interleave it with its other
/// work (see `Compaction::step`). Dropping it unfinished leaves the live hour untouched; the
/// caller removes `work_dir` (`Compaction::abort`).
pub struct Compaction {
    hour_dir: PathBuf,
    work_dir: PathBuf,
    output_name: String,
    schema: SchemaRef,
    properties: Box<dyn Fn() -> WriterProperties + Send>,
    batch_rows: usize,
    fan_in: usize,
    queue: Vec<Run>,
    expected_rows: u64,
    inputs: usize,
    passes: usize,
    /// The merge in progress, its output, and whether it is the final one.
    current: Option<(Merge, PathBuf, bool)>,
    /// Temporaries the current merge reads, removed once it is done.
    pending_removal: Vec<PathBuf>,
}

impl Compaction {
    /// Plans the compaction of the live hour directory `hour_dir` (its data files `inputs`)
    /// through `work_dir` (in the staging area; must not exist). `properties` builds the writer
    /// properties of each merged file.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        hour_dir: &Path,
        inputs: &[String],
        work_dir: &Path,
        output_name: &str,
        schema: &SchemaRef,
        properties: Box<dyn Fn() -> WriterProperties + Send>,
        batch_rows: usize,
        fan_in: usize,
    ) -> Result<Compaction, CompactionError> {
        let swap_dir = work_dir.join("hour");
        fs::create_dir_all(&swap_dir).map_err(io_at(&swap_dir))?;
        let mut expected_rows = 0u64;
        let mut queue: Vec<Run> = Vec::new();
        for name in inputs {
            let path = hour_dir.join(name);
            expected_rows += row_count(&path)?;
            queue.extend(row_group_runs(&path)?);
        }
        Ok(Compaction {
            hour_dir: hour_dir.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            output_name: output_name.to_string(),
            schema: schema.clone(),
            properties,
            batch_rows,
            fan_in: fan_in.max(2),
            queue,
            expected_rows,
            inputs: inputs.len(),
            passes: 0,
            current: None,
            pending_removal: Vec::new(),
        })
    }

    /// The live hour directory being compacted.
    pub fn hour_dir(&self) -> &Path {
        &self.hour_dir
    }

    /// Merges up to about `max_rows` rows. `Some` once the merged file has been swapped in.
    pub fn step(&mut self, max_rows: usize) -> Result<Option<Compacted>, CompactionError> {
        if self.current.is_none() {
            // Passes: merge the first `fan_in` runs into a temporary (one run) until one
            // merge remains.
            let last = self.queue.len() <= self.fan_in;
            let take = self.queue.len().min(self.fan_in);
            let group: Vec<Run> = self.queue.drain(..take).collect();
            let output = if last {
                self.work_dir.join("hour").join(&self.output_name)
            } else {
                self.passes += 1;
                self.work_dir
                    .join(format!("pass-{}.parquet.tmp", self.passes))
            };
            let merge = Merge::open(
                &group,
                &output,
                &self.schema,
                (self.properties)(),
                self.batch_rows,
            )?;
            self.current = Some((merge, output, last));
            self.pending_removal = group
                .into_iter()
                .filter(|(path, _)| path.starts_with(&self.work_dir))
                .map(|(path, _)| path)
                .collect();
        }
        let Some((merge, _, _)) = self.current.as_mut() else {
            return Ok(None);
        };
        if !merge.step(max_rows)? {
            return Ok(None);
        }
        let Some((merge, output, last)) = self.current.take() else {
            return Ok(None);
        };
        let rows = merge.finish()?;
        for path in std::mem::take(&mut self.pending_removal) {
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        if !last {
            self.queue.push((output, None));
            return Ok(None);
        }
        self.swap_in(&output, rows).map(Some)
    }

    fn swap_in(&self, output: &Path, rows: u64) -> Result<Compacted, CompactionError> {
        if rows != self.expected_rows {
            return Err(CompactionError::Invalid(format!(
                "merged {rows} rows from inputs holding {}: not swapped in",
                self.expected_rows
            )));
        }
        let bytes = fs::metadata(output).map_err(io_at(output))?.len();
        let swap_dir = self.work_dir.join("hour");
        files::sync_dir(&swap_dir).map_err(io_at(&swap_dir))?;
        files::exchange_dirs(&swap_dir, &self.hour_dir).map_err(|error| {
            if error.kind() == io::ErrorKind::Unsupported {
                CompactionError::Unsupported(error)
            } else {
                CompactionError::Io {
                    path: self.hour_dir.clone(),
                    source: error,
                }
            }
        })?;
        if let Some(parent) = self.hour_dir.parent() {
            files::sync_dir(parent).map_err(io_at(parent))?;
        }
        // The work directory now holds the old inputs: never needed again.
        let _ = fs::remove_dir_all(&self.work_dir);
        Ok(Compacted {
            inputs: self.inputs,
            rows,
            bytes,
        })
    }

    /// Gives up: the live hour stays as it is; the work directory is removed.
    pub fn abort(self) {
        let work_dir = self.work_dir.clone();
        drop(self);
        let _ = fs::remove_dir_all(work_dir);
    }
}

/// Runs a whole compaction at once (see [`Compaction`]); the work directory is removed whatever
/// the outcome.
#[allow(clippy::too_many_arguments)]
pub fn compact_hour(
    hour_dir: &Path,
    inputs: &[String],
    work_dir: &Path,
    output_name: &str,
    schema: &SchemaRef,
    properties: Box<dyn Fn() -> WriterProperties + Send>,
    batch_rows: usize,
    fan_in: usize,
) -> Result<Compacted, CompactionError> {
    let result = Compaction::start(
        hour_dir,
        inputs,
        work_dir,
        output_name,
        schema,
        properties,
        batch_rows,
        fan_in,
    )
    .and_then(|mut compaction| {
        loop {
            if let Some(done) = compaction.step(usize::MAX)? {
                break Ok(done);
            }
        }
    });
    let _ = fs::remove_dir_all(work_dir);
    result
}
