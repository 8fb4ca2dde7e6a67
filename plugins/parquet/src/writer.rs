//! The writer thread: turns chunks of buffered rows into row groups of open Parquet files in the
//! staging area, commits files (by size, by age, on request), and runs retention and the hourly
//! compaction. It owns every file system operation of the sink, so they never race each other.
//!
//! Why a thread: the runner thread must not wait on a slow or faulty disk. It only copies
//! records into per-partition buffers and hands full ones over a bounded queue; everything here
//! (column conversion, zstd, fsync, rename) runs beside it. The bytes of rows in flight are
//! counted in the shared memory bound, so a stalled writer makes the runner drop (counted), never
//! grow. The thread is started in `create` and joined in `destroy`.
//!
//! Faults (disk full, file too large, a path component that is a file, a directory removed):
//! the first error of a burst is logged through the host, every attempt is counted, and work is
//! retried with exponential backoff; chunks wait in order (still counted in the bound); a file
//! whose write failed is abandoned and its rows counted as dropped; a complete file whose
//! rename failed waits for the next attempt. The first success logs that writing resumed.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use arrow_schema::DataType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use tickflow_formats::Dataset;
use tickflow_formats::layout::{self, COMPACTED_PREFIX, HourPartition};
use tickflow_formats::schema::{
    META_ABI_VERSION, META_DATASET, META_SCHEMA_VERSION, META_SORTED, META_TICKFLOW_VERSION,
};
use tickflow_sdk::HostHandle;

use crate::compaction::{Compaction, CompactionError};
use crate::config::ParquetConfig;
use crate::convert::{NameCache, Rows, sort_spreads, to_record_batch};
use crate::files::{self, Layout};
use crate::stats::SharedStats;

/// How often retention and compaction run.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);
/// Most rows in one data page of `spreads`: a pair's hour (360 rows at 10 s, 60 at the default
/// one a minute) spans one or two pages per column of a compacted file, so a per-pair read
/// decompresses little beyond its rows, while the page index stays small.
const SPREADS_DATA_PAGE_ROWS: usize = 2_048;
/// Most rows in one data page of the other datasets (read whole, in time order).
const DATA_PAGE_ROWS: usize = 8_192;
/// Rows merged per compaction slice, between two jobs.
const COMPACTION_SLICE_ROWS: usize = 16_384;
/// Hours whose failed compaction is remembered (and not retried).
const COMPACTION_FAILURES_REMEMBERED: usize = 64;
/// Longest the thread sleeps without looking at its timers.
const IDLE_WAKE: Duration = Duration::from_millis(200);

/// Work for the writer thread.
#[derive(Debug)]
pub enum Job {
    /// Rows of one partition, to append as a row group.
    Chunk(Chunk),
    /// Commit every open file; reply once done (or failed, counted).
    Commit { reply: Option<SyncSender<()>> },
    /// Run retention and compaction now (engine clock, ns), as the periodic pass does.
    Housekeeping { now_ns: i64 },
    /// Commit everything and end the thread.
    Stop,
}

/// Buffered rows of one (dataset, hour) partition.
#[derive(Debug)]
pub struct Chunk {
    pub dataset: Dataset,
    pub hour: HourPartition,
    pub rows: Rows,
    /// Bytes counted in `SharedStats::in_flight_bytes` for this chunk.
    pub bytes: u64,
}

/// Writer properties of one dataset's files (`sorted`: the `tickflow.sorted` metadata value).
pub fn writer_properties(
    config: &ParquetConfig,
    dataset: Dataset,
    sorted: &str,
) -> WriterProperties {
    let schema = dataset.schema();
    let mut metadata = vec![
        KeyValue::new(
            META_TICKFLOW_VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        KeyValue::new(
            META_ABI_VERSION.to_string(),
            format!(
                "{}.{}",
                tickflow_sdk::abi::ABI_MAJOR,
                tickflow_sdk::abi::ABI_MINOR
            ),
        ),
        KeyValue::new(META_DATASET.to_string(), dataset.name().to_string()),
        KeyValue::new(
            META_SCHEMA_VERSION.to_string(),
            dataset.schema_version().to_string(),
        ),
    ];
    let page_rows = if dataset == Dataset::Spreads {
        SPREADS_DATA_PAGE_ROWS
    } else {
        DATA_PAGE_ROWS
    };
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(config.zstd_level).unwrap_or_default(),
        ))
        .set_max_row_group_size(config.row_group_rows)
        .set_statistics_enabled(EnabledStatistics::Page)
        // Small pages: finer page-index pruning for per-pair reads, and bounded decode buffers
        // per compaction input (≤ 64 KiB per f64 column).
        .set_data_page_row_count_limit(page_rows)
        .set_created_by(format!("tickflow-parquet {}", env!("CARGO_PKG_VERSION")));
    for field in schema.fields() {
        let column = || ColumnPath::from(field.name().as_str());
        if !dictionary_encoded(dataset, field) {
            builder = builder.set_column_dictionary_enabled(column(), false);
        }
        // Spreads: page statistics (the column index) only where they prune a per-pair read,
        // on the sort columns; the others keep row-group statistics. The page index a reader
        // loads per file is then a third as big.
        if dataset == Dataset::Spreads && !dataset.sort_columns().contains(&field.name().as_str()) {
            builder = builder.set_column_statistics_enabled(column(), EnabledStatistics::Chunk);
        }
    }
    if !dataset.sort_columns().is_empty() {
        let columns = dataset
            .sort_columns()
            .iter()
            .filter_map(|name| schema.index_of(name).ok())
            .map(|column_idx| SortingColumn {
                column_idx: column_idx as i32,
                descending: false,
                nulls_first: false,
            })
            .collect();
        builder = builder.set_sorting_columns(Some(columns));
        metadata.push(KeyValue::new(META_SORTED.to_string(), sorted.to_string()));
    }
    builder.set_key_value_metadata(Some(metadata)).build()
}

/// Whether a column is dictionary-encoded: names and other categorical columns are; prices,
/// quantities and basis points (f64, nearly all distinct) and per-event timestamps, sequence
/// numbers and trade ids are not. A dictionary of distinct values only costs: hashing every
/// value on write, and a dictionary page of up to 1 MiB that a reader must fetch and decode
/// before any page of the column, however few rows it wants (a per-pair read of `spreads`).
fn dictionary_encoded(dataset: Dataset, field: &arrow_schema::Field) -> bool {
    match field.data_type() {
        DataType::Dictionary(..) => true,
        DataType::Float64 => false,
        DataType::Utf8 => field.name() != "trade_id",
        // Spreads: bucket starts repeat across pairs, durations and sample counts are few.
        _ => dataset == Dataset::Spreads || field.name() == "connection_id",
    }
}

struct OpenFile {
    dataset: Dataset,
    hour: HourPartition,
    name: String,
    staging_path: PathBuf,
    writer: ArrowWriter<File>,
    opened: Instant,
    rows: u64,
}

/// A complete file whose rename failed; retried with the other faulted work.
struct PendingCommit {
    dataset: Dataset,
    hour: HourPartition,
    name: String,
    staging_path: PathBuf,
    file: File,
    rows: u64,
}

#[derive(Default)]
struct Fault {
    active: bool,
    failures: u64,
    backoff: Duration,
    next_try: Option<Instant>,
}

enum Outcome {
    Written,
    /// Could not be written now; keep it and retry.
    Retry(String),
}

/// The writer's state; `run` is the thread's body. Tests drive it directly with `handle`.
pub struct Writer {
    host: HostHandle,
    config: Arc<ParquetConfig>,
    layout: Layout,
    shared: Arc<SharedStats>,
    names: NameCache,
    open: Vec<OpenFile>,
    pending_commits: Vec<PendingCommit>,
    retry: VecDeque<Chunk>,
    fault: Fault,
    lock: Option<File>,
    writer_id: u32,
    sequence: u64,
    last_housekeeping: Instant,
    compaction_disabled: bool,
    /// Hours whose compaction failed (skipped from then on, so one bad hour does not stall the
    /// others); bounded, oldest forgotten first.
    compaction_failed: VecDeque<HourPartition>,
    /// The spreads hour being compacted, advanced a slice at a time between jobs.
    compaction: Option<(HourPartition, Compaction)>,
    /// Set (to the engine time of the pass) when the last pass found more closed hours to
    /// compact than the one it started: the next starts as soon as this one is swapped in,
    /// not a whole housekeeping interval later, so a backlog (a restart after downtime, a day
    /// written at once) is worked through at the merge's pace, still one slice between jobs.
    compaction_backlog_ns: Option<i64>,
    max_open_files: usize,
}

fn now_ms(host: &HostHandle) -> i64 {
    host.now_ns().div_euclid(1_000_000)
}

impl Writer {
    /// `lock`: the root's lock when `create` already took it (and emptied the staging area).
    pub fn new(
        host: HostHandle,
        config: Arc<ParquetConfig>,
        shared: Arc<SharedStats>,
        lock: Option<File>,
    ) -> Writer {
        let datasets = config.enabled().len().max(1);
        Writer {
            names: NameCache::new(host, config.name_cache_entries),
            layout: Layout::new(config.root.clone()),
            max_open_files: config.hours_in_flight * datasets,
            host,
            shared,
            open: Vec::new(),
            pending_commits: Vec::new(),
            retry: VecDeque::new(),
            fault: Fault::default(),
            lock,
            writer_id: std::process::id() ^ (host.now_ns() as u32).rotate_left(16),
            sequence: 0,
            last_housekeeping: Instant::now(),
            compaction_disabled: false,
            compaction_failed: VecDeque::new(),
            compaction: None,
            compaction_backlog_ns: None,
            config,
        }
    }

    /// The thread's body: handle jobs until `Stop` (or the sink is gone), then commit all.
    pub fn run(mut self, jobs: Receiver<Job>) {
        loop {
            let wait = match self.fault.next_try {
                Some(next) if self.fault.active => next
                    .saturating_duration_since(Instant::now())
                    .min(IDLE_WAKE),
                _ => IDLE_WAKE,
            };
            // A compaction in progress runs a slice between jobs: do not sleep while it does.
            let draining = self
                .shared
                .draining
                .load(std::sync::atomic::Ordering::Relaxed);
            let wait = if self.compaction.is_some() && !draining {
                Duration::ZERO
            } else {
                wait
            };
            match jobs.recv_timeout(wait) {
                Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(job) => self.handle(job),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.periodic();
            if !self
                .shared
                .draining
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                self.compaction_step(COMPACTION_SLICE_ROWS);
            }
        }
        self.finish();
    }

    /// Handles one job (not `Stop`: see [`Writer::finish`]).
    pub fn handle(&mut self, job: Job) {
        match job {
            Job::Chunk(chunk) => {
                if self.fault.active || !self.retry.is_empty() {
                    self.retry.push_back(chunk);
                    return;
                }
                self.write_or_queue(chunk);
            }
            Job::Commit { reply } => {
                self.commit_all();
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Job::Housekeeping { now_ns } => {
                self.housekeeping(now_ns);
                // Asked for explicitly: run the compaction it started to its end.
                while self.compaction.is_some() {
                    self.compaction_step(usize::MAX);
                }
            }
            Job::Stop => self.finish(),
        }
    }

    fn write_or_queue(&mut self, mut chunk: Chunk) {
        match self.write_chunk(&mut chunk) {
            Outcome::Written => self.shared.sub_in_flight(chunk.bytes),
            Outcome::Retry(error) => {
                self.fault_seen(&error);
                self.retry.push_front(chunk);
            }
        }
    }

    /// Timers: retry after a fault, roll files by age, housekeeping.
    pub fn periodic(&mut self) {
        let now = Instant::now();
        if self.fault.active && self.fault.next_try.is_some_and(|next| now >= next) {
            self.retry_faulted();
        }
        let roll_age = Duration::from_secs(self.config.roll_age_s);
        while let Some(index) = self
            .open
            .iter()
            .position(|file| now.duration_since(file.opened) >= roll_age)
        {
            self.commit(index);
        }
        if now.duration_since(self.last_housekeeping) >= HOUSEKEEPING_INTERVAL {
            self.last_housekeeping = now;
            if !self.fault.active {
                self.housekeeping(self.host.now_ns());
            }
        }
    }

    fn ensure_ready(&mut self) -> Result<(), String> {
        if self.lock.is_some() {
            return Ok(());
        }
        let root = self.layout.root.display().to_string();
        match files::lock_root(&self.layout.root) {
            Ok(Some(lock)) => {
                files::reset_staging(&self.layout)
                    .map_err(|error| format!("{root}: cleaning the staging area: {error}"))?;
                self.lock = Some(lock);
                Ok(())
            }
            Ok(None) => Err(format!(
                "{root}: another writer holds {}",
                layout::LOCK_FILE
            )),
            Err(error) => Err(format!("{root}: {error}")),
        }
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    fn open_index(&mut self, dataset: Dataset, hour: HourPartition) -> Result<usize, String> {
        if let Some(index) = self
            .open
            .iter()
            .position(|file| file.dataset == dataset && file.hour == hour)
        {
            return Ok(index);
        }
        while self.open.len() >= self.max_open_files {
            // The oldest hour's file makes room (a late hour is written anyway, to its own hour).
            let Some(oldest) = (0..self.open.len()).min_by_key(|&index| self.open[index].hour)
            else {
                break;
            };
            self.commit(oldest);
        }
        let sequence = self.next_sequence();
        let name = layout::part_file_name(now_ms(&self.host), self.writer_id, sequence);
        let staging_path = self
            .layout
            .staging_dir()
            .join(layout::staging_file_name(&name));
        // Readable too: a commit whose staging name vanished copies the content from this handle.
        let create = |path: &PathBuf| {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
        };
        let file = match create(&staging_path) {
            // The staging directory was removed under the writer: make it again.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(self.layout.staging_dir()).and_then(|()| create(&staging_path))
            }
            other => other,
        }
        .map_err(|error| format!("{}: {error}", staging_path.display()))?;
        let writer = ArrowWriter::try_new(
            file,
            dataset.schema(),
            Some(writer_properties(&self.config, dataset, "row_group")),
        )
        .map_err(|error| format!("{}: {error}", staging_path.display()))?;
        self.open.push(OpenFile {
            dataset,
            hour,
            name,
            staging_path,
            writer,
            opened: Instant::now(),
            rows: 0,
        });
        Ok(self.open.len() - 1)
    }

    fn write_chunk(&mut self, chunk: &mut Chunk) -> Outcome {
        if let Err(error) = self.ensure_ready() {
            return Outcome::Retry(error);
        }
        if chunk.rows.is_empty() {
            return Outcome::Written;
        }
        if let Rows::Spreads(rows) = &mut chunk.rows {
            sort_spreads(rows, &mut self.names);
        }
        let batch = match to_record_batch(&chunk.rows, &mut self.names) {
            Ok(batch) => batch,
            Err(error) => {
                // The columns are built to the schema: only a bug lands here. Count, not retry.
                SharedStats::add(&self.shared.errors, 1);
                SharedStats::add(
                    &self.shared.dataset(chunk.dataset).dropped,
                    chunk.rows.len() as u64,
                );
                self.host.error(&format!(
                    "parquet sink: building {} columns: {error}",
                    chunk.dataset.name()
                ));
                return Outcome::Written;
            }
        };
        self.shared
            .name_cache_resets
            .store(self.names.resets, std::sync::atomic::Ordering::Relaxed);
        let index = match self.open_index(chunk.dataset, chunk.hour) {
            Ok(index) => index,
            Err(error) => return Outcome::Retry(error),
        };
        let file = &mut self.open[index];
        let result = file.writer.write(&batch).and_then(|()| file.writer.flush());
        match result {
            Ok(()) => {
                file.rows += batch.num_rows() as u64;
                if file.writer.bytes_written() as u64 >= self.config.roll_bytes {
                    self.commit(index);
                }
                self.fault_cleared();
                Outcome::Written
            }
            Err(error) => {
                let message = format!("{}: {error}", file.staging_path.display());
                self.abandon(index);
                Outcome::Retry(message)
            }
        }
    }

    /// Drops an open file whose write failed: its earlier rows are lost (counted as dropped).
    fn abandon(&mut self, index: usize) {
        let file = self.open.swap_remove(index);
        SharedStats::add(&self.shared.dataset(file.dataset).dropped, file.rows);
        drop(file.writer);
        let _ = fs::remove_file(&file.staging_path);
    }

    /// Finishes and commits open file `index`.
    fn commit(&mut self, index: usize) {
        let open = self.open.swap_remove(index);
        let staging_path = open.staging_path.clone();
        let file = match open.writer.into_inner() {
            Ok(file) => file,
            Err(error) => {
                SharedStats::add(&self.shared.dataset(open.dataset).dropped, open.rows);
                let _ = fs::remove_file(&staging_path);
                self.fault_seen(&format!("{}: {error}", staging_path.display()));
                return;
            }
        };
        let pending = PendingCommit {
            dataset: open.dataset,
            hour: open.hour,
            name: open.name,
            staging_path,
            file,
            rows: open.rows,
        };
        if let Err((pending, error)) = self.try_commit(pending) {
            self.pending_commits.push(pending);
            self.fault_seen(&error);
        }
    }

    fn try_commit(&mut self, mut pending: PendingCommit) -> Result<(), (PendingCommit, String)> {
        // A late file for the hour being compacted: the compaction would swap it out of sight.
        self.abort_compaction_of(pending.dataset, pending.hour);
        let final_dir = self.layout.partition_dir(pending.dataset, pending.hour);
        match files::commit_file(
            &mut pending.file,
            &pending.staging_path,
            &final_dir,
            &pending.name,
        ) {
            Ok(bytes) => {
                let counters = self.shared.dataset(pending.dataset);
                SharedStats::add(&counters.written, pending.rows);
                SharedStats::add(&counters.bytes_written, bytes);
                SharedStats::add(&self.shared.files_committed, 1);
                Ok(())
            }
            Err(error) => {
                let message = format!(
                    "committing {}: {error}",
                    final_dir.join(&pending.name).display()
                );
                Err((pending, message))
            }
        }
    }

    /// Commits every open file, after one attempt at faulted work.
    pub fn commit_all(&mut self) {
        if self.fault.active {
            self.retry_faulted();
        }
        while !self.open.is_empty() {
            self.commit(self.open.len() - 1);
        }
    }

    /// Retries faulted work in order: pending renames, then waiting chunks.
    fn retry_faulted(&mut self) -> bool {
        let pendings = std::mem::take(&mut self.pending_commits);
        let mut pendings = pendings.into_iter();
        while let Some(pending) = pendings.next() {
            if let Err((pending, error)) = self.try_commit(pending) {
                self.pending_commits.push(pending);
                self.pending_commits.extend(pendings);
                self.fault_seen(&error);
                return false;
            }
        }
        while let Some(mut chunk) = self.retry.pop_front() {
            match self.write_chunk(&mut chunk) {
                Outcome::Written => self.shared.sub_in_flight(chunk.bytes),
                Outcome::Retry(error) => {
                    self.retry.push_front(chunk);
                    self.fault_seen(&error);
                    return false;
                }
            }
        }
        self.fault_cleared();
        true
    }

    fn fault_seen(&mut self, error: &str) {
        SharedStats::add(&self.shared.errors, 1);
        let initial = Duration::from_millis(self.config.fault_backoff_initial_ms);
        let max = Duration::from_millis(self.config.fault_backoff_max_ms);
        if !self.fault.active {
            self.fault.active = true;
            self.fault.failures = 0;
            self.fault.backoff = initial;
            self.host.error(&format!(
                "parquet sink: write failed: {error}; retrying with backoff (this burst's further errors are counted, not logged)"
            ));
        } else {
            self.fault.backoff = (self.fault.backoff * 2).min(max);
        }
        self.fault.failures += 1;
        self.fault.next_try = Some(Instant::now() + self.fault.backoff);
    }

    fn fault_cleared(&mut self) {
        if self.fault.active && self.retry.is_empty() && self.pending_commits.is_empty() {
            self.host.info(&format!(
                "parquet sink: writing resumed after {} failed attempts",
                self.fault.failures
            ));
            self.fault = Fault::default();
        }
    }

    /// Whether writing is currently failing (for tests and stats).
    pub fn faulted(&self) -> bool {
        self.fault.active
    }

    /// Hours with open or uncommitted files of `dataset`: retention and compaction leave them.
    fn busy_hours(&self, dataset: Dataset) -> Vec<HourPartition> {
        self.open
            .iter()
            .filter(|file| file.dataset == dataset)
            .map(|file| file.hour)
            .chain(
                self.pending_commits
                    .iter()
                    .filter(|pending| pending.dataset == dataset)
                    .map(|pending| pending.hour),
            )
            .collect()
    }

    /// Retention for every enabled dataset, then compaction of at most one closed spreads hour.
    pub fn housekeeping(&mut self, now_ns: i64) {
        if self.ensure_ready().is_err() {
            return;
        }
        for dataset in self.config.enabled() {
            self.retention(dataset, now_ns);
        }
        if self.config.compaction
            && !self.compaction_disabled
            && self.config.enabled().contains(&Dataset::Spreads)
        {
            self.compact_one(now_ns);
        }
    }

    fn retention(&mut self, dataset: Dataset, now_ns: i64) {
        let rule = self.config.retention.rule(dataset).clone();
        if rule.max_age_hours.is_none() && rule.max_bytes.is_none() {
            return;
        }
        let partitions = match files::list_partitions(&self.layout, dataset) {
            Ok(partitions) => partitions,
            Err(error) => {
                SharedStats::add(&self.shared.errors, 1);
                self.host.warn(&format!(
                    "parquet sink: retention: listing {}: {error}",
                    dataset.name()
                ));
                return;
            }
        };
        let busy = self.busy_hours(dataset);
        for index in files::retention_victims(&partitions, &rule, now_ns, &busy) {
            let partition = &partitions[index];
            self.abort_compaction_of(dataset, partition.hour);
            let sequence = self.next_sequence();
            match files::remove_partition(&self.layout, partition, sequence) {
                Ok(()) => {
                    SharedStats::add(&self.shared.partitions_deleted, 1);
                    SharedStats::add(&self.shared.retention_bytes_deleted, partition.bytes());
                    self.host.info(&format!(
                        "parquet sink: retention deleted {} ({} files, {} bytes)",
                        partition.dir.display(),
                        partition.files.len(),
                        partition.bytes()
                    ));
                }
                Err(error) => {
                    SharedStats::add(&self.shared.errors, 1);
                    self.host.warn(&format!(
                        "parquet sink: retention could not delete {}: {error}",
                        partition.dir.display()
                    ));
                }
            }
        }
    }

    /// Starts compacting the oldest closed spreads hour that is not yet one compacted file
    /// (unless a compaction is in progress); `compaction_step` advances it.
    fn compact_one(&mut self, now_ns: i64) {
        if self.compaction.is_some() {
            return;
        }
        let partitions = match files::list_partitions(&self.layout, Dataset::Spreads) {
            Ok(partitions) => partitions,
            Err(_) => return,
        };
        let busy = self.busy_hours(Dataset::Spreads);
        let delay_ns = (self.config.compaction_delay_s as i64).saturating_mul(1_000_000_000);
        let already_compacted = |partition: &files::PartitionOnDisk| {
            partition.files.len() == 1 && partition.files[0].0.starts_with(COMPACTED_PREFIX)
        };
        let mut candidates = partitions.into_iter().filter(|partition| {
            let closed = partition.hour.end_ns().saturating_add(delay_ns) <= now_ns;
            closed
                && !busy.contains(&partition.hour)
                && !partition.files.is_empty()
                && !already_compacted(partition)
                && !self.compaction_failed.contains(&partition.hour)
        });
        let Some(partition) = candidates.next() else {
            self.compaction_backlog_ns = None;
            return;
        };
        self.compaction_backlog_ns = candidates.next().is_some().then_some(now_ns);
        let sequence = self.next_sequence();
        let work_dir = self
            .layout
            .staging_dir()
            .join(format!("compact-{sequence}"));
        let output_name = layout::compacted_file_name(now_ms(&self.host), self.writer_id, sequence);
        let inputs: Vec<String> = partition
            .files
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let budget = self.config.budget();
        let config = self.config.clone();
        match Compaction::start(
            &partition.dir,
            &inputs,
            &work_dir,
            &output_name,
            &Dataset::Spreads.schema(),
            Box::new(move || writer_properties(&config, Dataset::Spreads, "file")),
            budget.compaction_batch_rows,
            budget.compaction_fan_in,
        ) {
            Ok(compaction) => self.compaction = Some((partition.hour, compaction)),
            Err(error) => {
                let _ = fs::remove_dir_all(&work_dir);
                self.compaction_failed_at(partition.hour, &partition.dir, error);
            }
        }
    }

    /// Advances the compaction in progress by up to `max_rows` rows.
    pub fn compaction_step(&mut self, max_rows: usize) {
        let Some((hour, compaction)) = self.compaction.as_mut() else {
            return;
        };
        let hour = *hour;
        match compaction.step(max_rows) {
            Ok(None) => {}
            Ok(Some(_)) => {
                self.compaction = None;
                SharedStats::add(&self.shared.hours_compacted, 1);
                // Behind: start the next closed hour now (it too runs a slice between jobs).
                if let Some(now_ns) = self.compaction_backlog_ns.take() {
                    if !self.fault.active {
                        self.compact_one(now_ns);
                    }
                }
            }
            Err(error) => {
                if let Some((_, compaction)) = self.compaction.take() {
                    let dir = compaction.hour_dir().to_path_buf();
                    compaction.abort();
                    self.compaction_failed_at(hour, &dir, error);
                }
            }
        }
    }

    fn abort_compaction_of(&mut self, dataset: Dataset, hour: HourPartition) {
        if dataset != Dataset::Spreads {
            return;
        }
        if self
            .compaction
            .as_ref()
            .is_some_and(|(compacting, _)| *compacting == hour)
        {
            if let Some((_, compaction)) = self.compaction.take() {
                // Not a failure: the hour is compacted again by a later pass.
                compaction.abort();
            }
        }
    }

    fn compaction_failed_at(
        &mut self,
        hour: HourPartition,
        dir: &std::path::Path,
        error: CompactionError,
    ) {
        if let CompactionError::Unsupported(error) = error {
            self.compaction_disabled = true;
            self.host.warn(&format!(
                "parquet sink: compaction disabled: this file system cannot exchange directories atomically ({error}); spreads files stay sorted per row group"
            ));
            return;
        }
        SharedStats::add(&self.shared.errors, 1);
        if self.compaction_failed.len() >= COMPACTION_FAILURES_REMEMBERED {
            self.compaction_failed.pop_front();
        }
        self.compaction_failed.push_back(hour);
        self.host.warn(&format!(
            "parquet sink: compacting {} failed, the hour stays as it is: {error}",
            dir.display()
        ));
    }

    /// End of the thread: commit everything (one more attempt at faulted work); what still
    /// cannot be written is counted as dropped and logged.
    pub fn finish(&mut self) {
        if let Some((_, compaction)) = self.compaction.take() {
            compaction.abort();
        }
        self.commit_all();
        let mut lost = [0u64; 5];
        for chunk in self.retry.drain(..) {
            lost[chunk.dataset.index()] += chunk.rows.len() as u64;
            self.shared.sub_in_flight(chunk.bytes);
        }
        for pending in self.pending_commits.drain(..) {
            lost[pending.dataset.index()] += pending.rows;
            let _ = fs::remove_file(&pending.staging_path);
        }
        for dataset in Dataset::ALL {
            let rows = lost[dataset.index()];
            if rows > 0 {
                SharedStats::add(&self.shared.dataset(dataset).dropped, rows);
                self.host.error(&format!(
                    "parquet sink: {rows} {} rows could not be written before shutdown (disk fault)",
                    dataset.name()
                ));
            }
        }
    }
}
