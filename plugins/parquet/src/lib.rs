//! tickflow's Parquet sink: the engine's history as hive-partitioned, crash-safe Parquet files
//! (`<root>/<dataset>/date=YYYY-MM-DD/hour=HH/part-….parquet`) that pyarrow, polars and DuckDB
//! read. The reading contract, config keys and disk budget are in this crate's README.
//!
//! This module is the instance the runner thread calls: it copies each record into the buffer of
//! its (dataset, UTC hour) partition (at most `hours_in_flight` per dataset) and hands full
//! buffers to the writer thread (`writer`) over a bounded queue, within the memory bound
//! (`config::MemoryBudget`). Schemas and paths come from `tickflow-formats`.

pub mod compaction;
pub mod config;
pub mod convert;
pub mod files;
pub mod stats;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tickflow_formats::{Dataset, HourPartition};
use tickflow_sdk::abi::PluginStats;
use tickflow_sdk::records::SpreadSample;
use tickflow_sdk::{Batch, HostHandle, Metric, RecordKind, Sink, SinkError};

pub use config::{ConfigError, ParquetConfig, memory_bound_bytes};
use convert::{Record, Rows};
use stats::SharedStats;
use writer::{Chunk, Job, Writer};

/// Jobs waiting for the writer (their bytes are bounded by the memory budget, not this count).
const JOB_QUEUE_CAPACITY: usize = 256;

/// One partition's buffer on the runner side.
struct Buffered {
    dataset: Dataset,
    hour: HourPartition,
    rows: Rows,
}

/// Host metrics of one dataset, and the values already published.
struct DatasetMetrics {
    received: Option<Metric>,
    written: Option<Metric>,
    dropped: Option<Metric>,
    filtered: Option<Metric>,
    published: [u64; 4],
}

/// The sink instance (see the module docs).
pub struct ParquetSink {
    host: HostHandle,
    config: Arc<ParquetConfig>,
    budget: config::MemoryBudget,
    enabled: [bool; 5],
    shared: Arc<SharedStats>,
    partitions: Vec<Buffered>,
    /// Capacity bytes of every buffer in `partitions`.
    buffered_bytes: u64,
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    last_commit: Instant,
    received_since_flush: bool,
    /// Records arrived since the last commit was requested.
    received_since_commit: bool,
    metrics: Vec<DatasetMetrics>,
    errors_metric: Option<Metric>,
    errors_published: u64,
    memory_metric: Option<Metric>,
}

impl ParquetSink {
    /// Builds an instance and starts its writer thread. `create` without the SDK glue.
    pub fn start(host: HostHandle, config: ParquetConfig) -> Result<ParquetSink, SinkError> {
        config.validate().map_err(SinkError::config)?;
        // Take the root's lock and empty its staging area now, so a second writer of the same
        // root is refused at once. A root that cannot be made yet (a path component is a file)
        // is not fatal: the writer retries, as for any disk fault.
        let lock = match files::lock_root(&config.root) {
            Ok(Some(lock)) => {
                let layout = files::Layout::new(config.root.clone());
                match files::reset_staging(&layout) {
                    Ok(removed) if removed > 0 => host.info(&format!(
                        "parquet sink: removed {removed} leftover staging entries of an earlier run under {}",
                        layout.staging_dir().display()
                    )),
                    Ok(_) => {}
                    Err(error) => host.warn(&format!(
                        "parquet sink: cleaning {}: {error}",
                        layout.staging_dir().display()
                    )),
                }
                Some(lock)
            }
            Ok(None) => {
                return Err(SinkError::config(format!(
                    "root {}: another tickflow-parquet writer is using it",
                    config.root.display()
                )));
            }
            Err(error) => {
                host.warn(&format!(
                    "parquet sink: root {} not usable yet ({error}); retrying with backoff",
                    config.root.display()
                ));
                None
            }
        };
        let config = Arc::new(config);
        let shared = Arc::new(SharedStats::default());
        let (sender, receiver) = mpsc::sync_channel(JOB_QUEUE_CAPACITY);
        let writer = Writer::new(host, config.clone(), shared.clone(), lock);
        let thread = std::thread::Builder::new()
            .name("tickflow-parquet-writer".to_string())
            .spawn(move || writer.run(receiver))
            .map_err(|error| SinkError::failed(format!("starting the writer thread: {error}")))?;
        let mut enabled = [false; 5];
        for dataset in config.enabled() {
            enabled[dataset.index()] = true;
        }
        let metrics = Dataset::ALL
            .iter()
            .map(|dataset| {
                let name = dataset.name();
                let counter = |what: &str, help: &str| {
                    enabled[dataset.index()]
                        .then(|| host.counter(&format!("parquet_{name}_{what}_total"), help))
                        .flatten()
                };
                DatasetMetrics {
                    received: counter("received", "Records the Parquet sink received"),
                    written: counter("written", "Rows in committed Parquet files"),
                    dropped: counter(
                        "dropped",
                        "Records the Parquet sink dropped (memory bound full, disk fault)",
                    ),
                    filtered: counter(
                        "filtered",
                        "Spread samples left out by the sample-resolution settings",
                    ),
                    published: [0; 4],
                }
            })
            .collect();
        host.info(&format!(
            "parquet sink writing {} under {} (memory bound {} MiB)",
            config
                .enabled()
                .iter()
                .map(|dataset| dataset.name())
                .collect::<Vec<_>>()
                .join(", "),
            config.root.display(),
            config.memory_bound_mib
        ));
        Ok(ParquetSink {
            budget: config.budget(),
            host,
            enabled,
            shared,
            partitions: Vec::new(),
            buffered_bytes: 0,
            jobs: Some(sender),
            thread: Some(thread),
            last_commit: Instant::now(),
            received_since_flush: false,
            received_since_commit: false,
            metrics,
            errors_metric: host.counter(
                "parquet_errors_total",
                "Parquet sink write/commit/retention/compaction errors",
            ),
            errors_published: 0,
            memory_metric: host.gauge(
                "parquet_memory_bytes",
                "Bytes of rows the Parquet sink holds (buffered and in flight)",
            ),
            config,
        })
    }

    /// Counters shared with the writer thread.
    pub fn shared(&self) -> &Arc<SharedStats> {
        &self.shared
    }

    /// Bytes of rows held now: buffered here plus in flight to the writer.
    pub fn rows_bytes(&self) -> u64 {
        self.buffered_bytes + self.shared.in_flight_bytes.load(Ordering::Relaxed)
    }

    /// Hands partition `index`'s rows to the writer. False when the queue is full (the rows stay).
    fn hand_off(&mut self, index: usize, wait: bool) -> bool {
        let Some(jobs) = &self.jobs else {
            return false;
        };
        let partition = &mut self.partitions[index];
        if partition.rows.is_empty() {
            return true;
        }
        let rows = std::mem::replace(&mut partition.rows, Rows::empty(partition.dataset));
        let bytes = rows.capacity_bytes();
        self.shared
            .in_flight_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        let job = Job::Chunk(Chunk {
            dataset: partition.dataset,
            hour: partition.hour,
            rows,
            bytes,
        });
        let result = if wait {
            jobs.send(job).map_err(|error| error.0)
        } else {
            jobs.try_send(job).map_err(|error| match error {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            })
        };
        match result {
            Ok(()) => {
                self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
                true
            }
            Err(job) => {
                self.shared.sub_in_flight(bytes);
                if let Job::Chunk(chunk) = job {
                    self.partitions[index].rows = chunk.rows;
                }
                false
            }
        }
    }

    fn hand_off_all(&mut self, wait: bool) {
        for index in 0..self.partitions.len() {
            self.hand_off(index, wait);
        }
    }

    fn hand_off_largest(&mut self) {
        if let Some(index) = (0..self.partitions.len())
            .filter(|&index| !self.partitions[index].rows.is_empty())
            .max_by_key(|&index| self.partitions[index].rows.capacity_bytes())
        {
            self.hand_off(index, false);
        }
    }

    /// The buffer index of (dataset, hour); a new hour takes a free slot or the oldest hour's
    /// (whose rows go to the writer first). None when neither is possible (queue full).
    fn partition_index(&mut self, dataset: Dataset, hour: HourPartition) -> Option<usize> {
        if let Some(index) = self
            .partitions
            .iter()
            .position(|partition| partition.dataset == dataset && partition.hour == hour)
        {
            return Some(index);
        }
        let slots = self
            .partitions
            .iter()
            .filter(|partition| partition.dataset == dataset)
            .count();
        if slots < self.config.hours_in_flight {
            self.partitions.push(Buffered {
                dataset,
                hour,
                rows: Rows::empty(dataset),
            });
            return Some(self.partitions.len() - 1);
        }
        let oldest = (0..self.partitions.len())
            .filter(|&index| self.partitions[index].dataset == dataset)
            .min_by_key(|&index| self.partitions[index].hour)?;
        if !self.hand_off(oldest, false) {
            return None;
        }
        self.partitions[oldest].hour = hour;
        Some(oldest)
    }

    /// Buffers `records` of one kind; `keep` filters (counted as filtered).
    fn push_all<R: Record>(&mut self, records: &[R], keep: impl Fn(&R) -> bool) {
        let dataset = R::DATASET;
        if !self.enabled[dataset.index()] || records.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let counters = shared.dataset(dataset);
        SharedStats::add(&counters.received, records.len() as u64);
        let record_bytes = size_of::<R>() as u64;
        let row_group_rows = self.config.row_group_rows;
        let (mut filtered, mut dropped) = (0u64, 0u64);
        let mut cached: Option<(HourPartition, usize)> = None;
        for record in records {
            if !keep(record) {
                filtered += 1;
                continue;
            }
            let hour = HourPartition::of_ns(record.partition_ns());
            let index = match cached {
                Some((cached_hour, index)) if cached_hour == hour => index,
                _ => match self.partition_index(dataset, hour) {
                    Some(index) => index,
                    None => {
                        dropped += 1;
                        continue;
                    }
                },
            };
            cached = Some((hour, index));
            let Some(rows) = R::rows_mut(&mut self.partitions[index].rows) else {
                dropped += 1;
                continue;
            };
            if rows.len() == rows.capacity() {
                let new_capacity = (rows.capacity() * 2).clamp(256, row_group_rows);
                let extra = (new_capacity - rows.capacity()) as u64 * record_bytes;
                let in_flight = self.shared.in_flight_bytes.load(Ordering::Relaxed);
                if self.buffered_bytes + in_flight + extra > self.budget.rows_bytes {
                    dropped += 1;
                    self.hand_off_largest();
                    cached = None;
                    continue;
                }
                let before = rows.capacity();
                rows.reserve_exact(new_capacity - rows.len());
                self.buffered_bytes += (rows.capacity() - before) as u64 * record_bytes;
            }
            rows.push(*record);
            if rows.len() >= row_group_rows {
                self.hand_off(index, false);
            }
            if self.buffered_bytes >= self.budget.handoff_bytes {
                self.hand_off_largest();
            }
        }
        SharedStats::add(&counters.filtered, filtered);
        SharedStats::add(&counters.dropped, dropped);
        self.received_since_flush = true;
        self.received_since_commit = true;
    }

    /// Hands everything to the writer and asks it to commit every open file. With a timeout,
    /// waits until the writer has written and committed everything handed to it (the jobs are
    /// done in order, so its answer to the commit comes after every chunk before it), at most
    /// `timeout` in all; true when it answered in time. Without, returns at once (false).
    pub fn commit(&mut self, timeout: Option<Duration>) -> bool {
        self.last_commit = Instant::now();
        self.received_since_commit = false;
        let Some(timeout) = timeout else {
            self.hand_off_all(false);
            if let Some(jobs) = &self.jobs {
                let _ = jobs.try_send(Job::Commit { reply: None });
            }
            return false;
        };
        let deadline = Instant::now() + timeout;
        // Compaction slices would only delay the answer: the writer skips them meanwhile.
        self.shared.draining.store(true, Ordering::Relaxed);
        let answered = self.commit_until(deadline);
        self.shared.draining.store(false, Ordering::Relaxed);
        answered
    }

    fn commit_until(&mut self, deadline: Instant) -> bool {
        // The queue may be full while the writer works through a backlog: retry until the
        // deadline, never block past it (a writer stuck on a disk must not hold up shutdown).
        let retry_pause = Duration::from_millis(1);
        for index in 0..self.partitions.len() {
            while !self.hand_off(index, false) {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(retry_pause);
            }
        }
        let Some(jobs) = &self.jobs else {
            return false;
        };
        let (reply, done) = mpsc::sync_channel(1);
        let mut job = Job::Commit { reply: Some(reply) };
        loop {
            match jobs.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    job = back;
                    std::thread::sleep(retry_pause);
                }
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Asks the writer to run retention and compaction at engine time `now_ns` (tests, tools).
    pub fn housekeeping(&mut self, now_ns: i64) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job::Housekeeping { now_ns });
        }
    }

    fn publish_metrics(&mut self) {
        for dataset in Dataset::ALL {
            let counters = self.shared.dataset(dataset);
            let values = [
                SharedStats::get(&counters.received),
                SharedStats::get(&counters.written),
                SharedStats::get(&counters.dropped),
                SharedStats::get(&counters.filtered),
            ];
            let metrics = &mut self.metrics[dataset.index()];
            let targets = [
                metrics.received,
                metrics.written,
                metrics.dropped,
                metrics.filtered,
            ];
            for ((metric, value), published) in
                targets.iter().zip(values).zip(metrics.published.iter_mut())
            {
                if let Some(metric) = metric {
                    metric.add(value.saturating_sub(*published));
                }
                *published = value;
            }
        }
        let errors = SharedStats::get(&self.shared.errors);
        if let Some(metric) = self.errors_metric {
            metric.add(errors.saturating_sub(self.errors_published));
        }
        self.errors_published = errors;
        if let Some(metric) = self.memory_metric {
            metric.set(self.rows_bytes() as f64);
        }
    }

    /// Stops the writer (everything buffered is committed) and joins it. Idempotent.
    pub fn close(&mut self) {
        if self.jobs.is_none() {
            return;
        }
        self.hand_off_all(true);
        if let Some(jobs) = self.jobs.take() {
            let _ = jobs.send(Job::Stop);
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                self.host.error("parquet sink: the writer thread panicked");
            }
        }
        self.publish_metrics();
        let summary: Vec<String> = self
            .config
            .enabled()
            .iter()
            .map(|dataset| {
                let counters = self.shared.dataset(*dataset);
                format!(
                    "{} received={} written={} filtered={} dropped={}",
                    dataset.name(),
                    SharedStats::get(&counters.received),
                    SharedStats::get(&counters.written),
                    SharedStats::get(&counters.filtered),
                    SharedStats::get(&counters.dropped)
                )
            })
            .collect();
        self.host
            .info(&format!("parquet sink closed: {}", summary.join("; ")));
    }
}

impl Drop for ParquetSink {
    fn drop(&mut self) {
        self.close();
    }
}

fn spread_keep(config: &ParquetConfig) -> impl Fn(&SpreadSample) -> bool + use<> {
    let every = config.spreads_every_n_buckets.max(1) as i64;
    let above = config.spreads_keep_above_bp;
    move |sample: &SpreadSample| {
        if every == 1 || sample.bucket_duration_ns <= 0 {
            return true;
        }
        let bucket_index = sample.bucket_start_ns.div_euclid(sample.bucket_duration_ns);
        bucket_index.rem_euclid(every) == 0 || above.is_some_and(|above| sample.max_bp >= above)
    }
}

impl Sink for ParquetSink {
    type Config = ParquetConfig;
    const NAME: &'static str = "parquet";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const RECORD_KINDS: &'static [RecordKind] = &[
        RecordKind::Quote,
        RecordKind::Trade,
        RecordKind::SpreadSample,
        RecordKind::Opportunity,
        RecordKind::Gap,
    ];

    fn create(host: HostHandle, config: ParquetConfig) -> Result<Self, SinkError> {
        ParquetSink::start(host, config)
    }

    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        match batch {
            Batch::Quotes(records) => self.push_all(records, |_| true),
            Batch::Trades(records) => self.push_all(records, |_| true),
            Batch::Spreads(records) => {
                let keep = spread_keep(&self.config);
                self.push_all(records, keep)
            }
            Batch::Opportunities(records) => self.push_all(records, |_| true),
            Batch::Gaps(records) => self.push_all(records, |_| true),
            Batch::Telemetry(_) | Batch::VenueStatus(_) => {}
        }
        Ok(())
    }

    /// The host flushes after each delivery that drained its rings (often) and once more at
    /// shutdown, before reading stats and destroying. A flush right after records arrived does
    /// nothing (files roll by size and age); a flush with no record since the previous one — the
    /// shutdown flush — hands everything over and waits until the writer has written and
    /// committed all of it (at most `flush_timeout_ms`, which must leave the host's
    /// `shutdown_deadline_ms` room for destroy), so the stats read next count every row.
    fn flush(&mut self) -> Result<(), SinkError> {
        if self.received_since_flush {
            self.received_since_flush = false;
            return Ok(());
        }
        if self.received_since_commit || self.rows_bytes() > 0 {
            let timeout = Duration::from_millis(self.config.flush_timeout_ms);
            if !self.commit(Some(timeout)) && self.jobs.is_some() {
                let (received, written, dropped, _) = self.shared.totals();
                self.host.warn(&format!(
                    "parquet sink: the writer did not finish within flush_timeout_ms ({} ms); stats read now count {written} rows written and {dropped} dropped of {received} received, destroy commits the rest",
                    self.config.flush_timeout_ms
                ));
            }
            self.partitions
                .retain(|partition| !partition.rows.is_empty());
        }
        self.publish_metrics();
        Ok(())
    }

    fn on_tick(&mut self, _now_ns: i64) -> Result<(), SinkError> {
        if self.last_commit.elapsed() >= Duration::from_secs(self.config.roll_age_s) {
            self.commit(None);
        }
        self.publish_metrics();
        Ok(())
    }

    fn stats(&self) -> PluginStats {
        let (_, written, dropped, bytes_written) = self.shared.totals();
        PluginStats {
            struct_size: size_of::<PluginStats>() as u32,
            reserved: 0,
            records_written: written,
            records_dropped: dropped,
            bytes_written,
            errors: SharedStats::get(&self.shared.errors),
        }
    }

    fn memory_bound_bytes(config: &ParquetConfig) -> Result<Option<u64>, SinkError> {
        config.validate().map_err(SinkError::config)?;
        Ok(Some(config.budget().total_bytes))
    }
}

tickflow_sdk::export_sink!(ParquetSink);

#[cfg(test)]
mod tests;
