//! `tickflow-load parquet-bench`: the Parquet sink plugin's write throughput beside pyarrow's
//! `write_table` and a bare parquet-rs `ArrowWriter` on the same quote rows in the same run, and
//! the time and bytes of reading one pair's day of spread samples from compacted files.
//!
//! The plugin path is the engine's: the plugin's cdylib is loaded with `dlopen`, given a host
//! table (names of symbols and venues, log, clock) and fed `on_batch` calls of quote records;
//! its time runs from the first `on_batch` until `destroy` returned (every file closed and
//! renamed into place). The same rows, as Arrow record batches of the quotes schema
//! (tickflow-formats), go to a bare `ArrowWriter` (zstd level 1, the plugin's row-group size)
//! and, through an Arrow IPC stream written first, to pyarrow's `write_table` in a Python
//! subprocess. Conversion to Arrow is outside the baselines' times; it is inside the plugin's
//! (that is the point: records → columns → Parquet).
//!
//! Rows come from a seeded generator (1 000 symbols × 8 venues, a random walk per pair).

use std::ffi::c_void;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{
    Float64Builder, StringDictionaryBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tickflow_core::venue::Venue;
use tickflow_formats::Dataset;
use tickflow_sdk::abi::{self, Descriptor, EntryFn, Host, PluginStats};
use tickflow_sdk::records::{FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, Quote, SymbolId};

/// What a run does (the command's flags).
#[derive(Clone, Debug)]
pub struct ParquetBenchSettings {
    pub rows: usize,
    pub symbols: usize,
    pub seed: u64,
    /// The plugin's cdylib (`libtickflow_parquet.so`).
    pub plugin: PathBuf,
    /// Scratch directory (emptied first).
    pub dir: PathBuf,
    /// Records per `on_batch` call (the engine's `batch_max_records`).
    pub batch_records: usize,
    /// Rows per row group, for the plugin (`row_group_rows`) and the baselines alike.
    pub row_group_rows: usize,
    /// Extra TOML lines for the plugin's `[sinks.config]`.
    pub plugin_config: String,
    pub python: String,
    /// Pairs of the read measurement (0: skip it).
    pub pairs: usize,
    /// Seconds between spread samples of one pair in the read measurement's day.
    pub spread_interval_s: u64,
}

impl Default for ParquetBenchSettings {
    fn default() -> Self {
        ParquetBenchSettings {
            rows: 10_000_000,
            symbols: 1_000,
            seed: 42,
            plugin: default_plugin_path(),
            dir: std::env::temp_dir().join("tickflow-parquet-bench"),
            batch_records: 256,
            row_group_rows: 65_536,
            plugin_config: String::new(),
            python: "python3".to_string(),
            pairs: 1_000,
            spread_interval_s: 10,
        }
    }
}

/// `libtickflow_parquet.so` beside this binary (the same target profile).
pub fn default_plugin_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join("libtickflow_parquet.so")
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("plugin {path}: {reason}")]
    Plugin { path: PathBuf, reason: String },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("python (pyarrow write_table): {0}")]
    Python(String),
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BenchError {
    move |error| BenchError::Io(what.to_string(), error)
}

/// One writer's figures.
#[derive(Clone, Debug, Default)]
pub struct WriteFigure {
    pub name: &'static str,
    pub rows: u64,
    pub seconds: f64,
    pub bytes: u64,
}

impl WriteFigure {
    pub fn rows_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The read measurement's figures.
#[derive(Clone, Debug, Default)]
pub struct PairReadFigure {
    pub pairs: usize,
    pub day_rows: u64,
    pub day_files: usize,
    pub day_bytes: u64,
    pub pair_rows: u64,
    pub seconds: f64,
    pub bytes_read: u64,
    /// Of `bytes_read`: footers and page indexes.
    pub metadata_bytes_read: u64,
}

#[derive(Clone, Debug, Default)]
pub struct ParquetBenchReport {
    pub writes: Vec<WriteFigure>,
    /// The plugin's own counters after `destroy`'s final stats.
    pub plugin_records_written: u64,
    pub plugin_records_dropped: u64,
    pub pair_read: Option<PairReadFigure>,
}

impl ParquetBenchReport {
    pub fn figure(&self, name: &str) -> Option<&WriteFigure> {
        self.writes.iter().find(|figure| figure.name == name)
    }

    /// The report as printed: one line per writer, the ratios, the read measurement.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for figure in &self.writes {
            out.push_str(&format!(
                "{:<22} {:>11} rows  {:>8.3} s  {:>7.2} M rows/s  {:>9.1} MiB ({:.2} MiB per M rows)\n",
                figure.name,
                figure.rows,
                figure.seconds,
                figure.rows_per_s() / 1e6,
                figure.bytes as f64 / 1048576.0,
                figure.bytes as f64 / 1048576.0 / (figure.rows.max(1) as f64 / 1e6),
            ));
        }
        if let Some(plugin) = self.figure("plugin") {
            for other in [
                "pyarrow write_table",
                "parquet-rs ArrowWriter",
                "ArrowWriter, plugin enc.",
            ] {
                if let Some(other_figure) = self.figure(other) {
                    out.push_str(&format!(
                        "plugin / {other}: {:.2}\n",
                        plugin.rows_per_s() / other_figure.rows_per_s().max(f64::MIN_POSITIVE)
                    ));
                }
            }
        }
        out.push_str(&format!(
            "plugin stats: records_written {} records_dropped {}\n",
            self.plugin_records_written, self.plugin_records_dropped
        ));
        if let Some(read) = &self.pair_read {
            out.push_str(&format!(
                "read one pair's day: {} rows of {} in {} files ({:.1} MiB, {} pairs) in {:.1} ms, {:.2} MiB read ({:.2} MiB footers and page indexes; {:.2}% of the day's bytes)\n",
                read.pair_rows,
                read.day_rows,
                read.day_files,
                read.day_bytes as f64 / 1048576.0,
                read.pairs,
                read.seconds * 1e3,
                read.bytes_read as f64 / 1048576.0,
                read.metadata_bytes_read as f64 / 1048576.0,
                100.0 * read.bytes_read as f64 / read.day_bytes.max(1) as f64,
            ));
            out.push_str(&format!(
                "spreads: {:.2} MiB per M rows (compacted day)\n",
                read.day_bytes as f64 / 1048576.0 / (read.day_rows.max(1) as f64 / 1e6)
            ));
        }
        out
    }
}

// ---------- rows ----------

/// splitmix64: a small seeded generator (the rows are the same for a seed on every machine).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 2026-01-01T00:00:00Z: the benchmark's rows fall in one hour from here.
const BASE_NS: i64 = 1_767_225_600_000_000_000;

/// `rows` quotes over `symbols` symbols × 8 venues: a random walk per pair on a tick grid
/// (a power of ten near 1e-4 of the price), quantities to 4 decimals, every quote with
/// exchange time and sequence (the common case), receive times 100 ns apart within one hour.
pub fn quotes(rows: usize, symbols: usize, seed: u64) -> Vec<Quote> {
    let mut rng = Rng(seed);
    let venues = Venue::ALL.len();
    let pairs = symbols.max(1) * venues;
    let mut mids: Vec<f64> = (0..pairs).map(|_| 10.0 + rng.unit() * 1_000.0).collect();
    let tick_sizes: Vec<f64> = mids
        .iter()
        .map(|mid| 10f64.powi((mid * 1e-4).log10().floor() as i32))
        .collect();
    (0..rows)
        .map(|index| {
            let pair = (rng.next_u64() % pairs as u64) as usize;
            let mid = &mut mids[pair];
            *mid *= 1.0 + (rng.unit() - 0.5) * 1e-4;
            // Prices on a tick grid of 1e-4 of the pair's first price, as venues quote them.
            let tick = tick_sizes[pair];
            let bid_ticks = (*mid / tick).floor();
            let spread_ticks = 1.0 + (rng.next_u64() % 3) as f64;
            let ts_recv_ns = BASE_NS + index as i64 * 100;
            Quote {
                bid: bid_ticks * tick,
                bid_qty: (rng.unit() * 100.0 * 1e4).round() / 1e4,
                ask: (bid_ticks + spread_ticks) * tick,
                ask_qty: (rng.unit() * 100.0 * 1e4).round() / 1e4,
                ts_exchange_ns: ts_recv_ns - 1_000_000 - (rng.next_u64() % 1_000_000) as i64,
                ts_recv_ns,
                seq: index as u64,
                symbol_id: SymbolId((pair / venues) as u32),
                venue_id: Venue::ALL[pair % venues].id(),
                flags: FLAG_HAS_TS_EXCHANGE | FLAG_HAS_SEQ,
                reserved: 0,
            }
        })
        .collect()
}

/// The names the host table gives: symbol `n` is `symbol_names(symbols)[n]`.
pub struct Names {
    pub symbols: Vec<String>,
}

/// Quote records as record batches of the `quotes` dataset's schema (at most `batch_rows` each).
pub fn quote_batches(
    quotes: &[Quote],
    names: &Names,
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, BenchError> {
    let schema = Dataset::Quotes.schema();
    let mut batches = Vec::new();
    for chunk in quotes.chunks(batch_rows.max(1)) {
        let mut ts_recv = TimestampNanosecondBuilder::with_capacity(chunk.len());
        let mut ts_exchange = TimestampNanosecondBuilder::with_capacity(chunk.len());
        let mut symbol = StringDictionaryBuilder::<Int32Type>::new();
        let mut venue = StringDictionaryBuilder::<Int32Type>::new();
        let mut bid = Float64Builder::with_capacity(chunk.len());
        let mut bid_qty = Float64Builder::with_capacity(chunk.len());
        let mut ask = Float64Builder::with_capacity(chunk.len());
        let mut ask_qty = Float64Builder::with_capacity(chunk.len());
        let mut seq = UInt64Builder::with_capacity(chunk.len());
        for quote in chunk {
            ts_recv.append_value(quote.ts_recv_ns);
            ts_exchange.append_option(quote.ts_exchange());
            symbol.append_value(
                names
                    .symbols
                    .get(quote.symbol_id.0 as usize)
                    .map_or("?", String::as_str),
            );
            venue.append_value(Venue::from_id(quote.venue_id).map_or("?", Venue::name));
            bid.append_value(quote.bid);
            bid_qty.append_value(quote.bid_qty);
            ask.append_value(quote.ask);
            ask_qty.append_value(quote.ask_qty);
            seq.append_option(quote.sequence());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ts_recv.finish().with_timezone("UTC")),
            Arc::new(ts_exchange.finish().with_timezone("UTC")),
            Arc::new(symbol.finish()),
            Arc::new(venue.finish()),
            Arc::new(bid.finish()),
            Arc::new(bid_qty.finish()),
            Arc::new(ask.finish()),
            Arc::new(ask_qty.finish()),
            Arc::new(seq.finish()),
        ];
        batches.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    Ok(batches)
}

// ---------- the baselines ----------

fn zstd_1_properties(row_group_rows: usize) -> Result<WriterProperties, BenchError> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_size(row_group_rows)
        .build())
}

/// The encodings the plugin gives the `quotes` columns (plugins/parquet/src/writer.rs,
/// `writer_properties`, copied: a plugin is not linked into this tool): zstd 1, the row-group
/// size, page statistics, pages of at most 8 192 rows, no dictionary for the f64 columns, the
/// timestamps and the sequence (nearly all values distinct). The bare `ArrowWriter` given these
/// isolates the cost of the plugin's record → column conversion and hand-off.
fn plugin_like_properties(row_group_rows: usize) -> Result<WriterProperties, BenchError> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_size(row_group_rows)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
        .set_data_page_row_count_limit(8_192);
    for column in [
        "ts_recv",
        "ts_exchange",
        "bid",
        "bid_qty",
        "ask",
        "ask_qty",
        "seq",
    ] {
        builder = builder
            .set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(column), false);
    }
    Ok(builder.build())
}

/// A bare `ArrowWriter` writing `batches` to `path` (zstd 1, otherwise parquet-rs defaults).
pub fn arrow_writer(
    batches: &[RecordBatch],
    path: &Path,
    row_group_rows: usize,
) -> Result<WriteFigure, BenchError> {
    let mut figure = arrow_writer_with(batches, path, zstd_1_properties(row_group_rows)?)?;
    figure.name = "parquet-rs ArrowWriter";
    Ok(figure)
}

/// A bare `ArrowWriter` with the plugin's encodings ([`plugin_like_properties`]).
pub fn arrow_writer_plugin_encodings(
    batches: &[RecordBatch],
    path: &Path,
    row_group_rows: usize,
) -> Result<WriteFigure, BenchError> {
    let mut figure = arrow_writer_with(batches, path, plugin_like_properties(row_group_rows)?)?;
    figure.name = "ArrowWriter, plugin enc.";
    Ok(figure)
}

fn arrow_writer_with(
    batches: &[RecordBatch],
    path: &Path,
    properties: WriterProperties,
) -> Result<WriteFigure, BenchError> {
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .unwrap_or_else(|| Dataset::Quotes.schema());
    let started = Instant::now();
    let file = File::create(path).map_err(io(path.display()))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(WriteFigure {
        name: "parquet-rs ArrowWriter",
        rows: batches.iter().map(|batch| batch.num_rows() as u64).sum(),
        seconds,
        bytes: std::fs::metadata(path).map_err(io(path.display()))?.len(),
    })
}

/// Writes `batches` as an Arrow IPC stream (pyarrow's input; the stream format, because each
/// batch has its own dictionaries).
pub fn write_ipc(batches: &[RecordBatch], path: &Path) -> Result<(), BenchError> {
    let schema = Dataset::Quotes.schema();
    let file = File::create(path).map_err(io(path.display()))?;
    let mut writer =
        arrow_ipc::writer::StreamWriter::try_new(std::io::BufWriter::new(file), &schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    Ok(())
}

const PYARROW_WRITE: &str = r#"
import json, sys, time
import pyarrow as pa, pyarrow.ipc, pyarrow.parquet as pq
source, target, row_group_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
with pa.memory_map(source) as stream:
    table = pa.ipc.open_stream(stream).read_all()
table = table.combine_chunks()
started = time.perf_counter()
pq.write_table(table, target, compression="zstd", compression_level=1, row_group_size=row_group_rows)
seconds = time.perf_counter() - started
import os
print(json.dumps({"rows": table.num_rows, "seconds": seconds, "bytes": os.path.getsize(target), "pyarrow": pa.__version__}))
"#;

/// pyarrow's `write_table` of the IPC stream's rows (timed inside Python, the read excluded).
pub fn pyarrow_write(
    python: &str,
    ipc: &Path,
    target: &Path,
    row_group_rows: usize,
) -> Result<WriteFigure, BenchError> {
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(PYARROW_WRITE)
        .arg(ipc)
        .arg(target)
        .arg(row_group_rows.to_string())
        .output()
        .map_err(io(python))?;
    if !output.status.success() {
        return Err(BenchError::Python(
            String::from_utf8_lossy(&output.stderr).to_string(),
        ));
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| BenchError::Python(format!("no JSON ({error})")))?;
    Ok(WriteFigure {
        name: "pyarrow write_table",
        rows: report["rows"].as_u64().unwrap_or(0),
        seconds: report["seconds"].as_f64().unwrap_or(0.0),
        bytes: report["bytes"].as_u64().unwrap_or(0),
    })
}

// ---------- the plugin path ----------

/// What the host table's `host_data` points at.
struct HostData {
    names: Vec<String>,
}

unsafe extern "C" fn host_log(_host_data: *mut c_void, level: u32, text: *const u8, len: usize) {
    if text.is_null() {
        return;
    }
    // SAFETY: the plugin passes `len` readable bytes for the call.
    let bytes = unsafe { std::slice::from_raw_parts(text, len) };
    if level <= abi::LOG_WARN {
        eprintln!("plugin: {}", String::from_utf8_lossy(bytes));
    }
}

unsafe extern "C" fn host_symbol_name(
    host_data: *mut c_void,
    symbol_id: u32,
    out: *mut u8,
    capacity: usize,
) -> usize {
    // SAFETY: `host_data` is the `HostData` this module built; it outlives the plugin.
    let data = unsafe { &*host_data.cast::<HostData>() };
    let Some(name) = data.names.get(symbol_id as usize) else {
        return 0;
    };
    copy_name(name, out, capacity)
}

unsafe extern "C" fn host_venue_name(
    _host_data: *mut c_void,
    venue_id: u16,
    out: *mut u8,
    capacity: usize,
) -> usize {
    let Some(venue) = Venue::from_id(tickflow_sdk::records::VenueId(venue_id)) else {
        return 0;
    };
    copy_name(venue.name(), out, capacity)
}

fn copy_name(name: &str, out: *mut u8, capacity: usize) -> usize {
    let len = name.len().min(capacity);
    if !out.is_null() {
        // SAFETY: the plugin passes `capacity` writable bytes at `out`.
        unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), out, len) };
    }
    name.len()
}

unsafe extern "C" fn host_clock_ns(_host_data: *mut c_void) -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as i64)
}

/// The plugin, loaded and checked enough to call (the engine's loader does the full check).
pub struct LoadedPlugin {
    descriptor: &'static Descriptor,
    path: PathBuf,
}

impl LoadedPlugin {
    pub fn load(path: &Path) -> Result<LoadedPlugin, BenchError> {
        let refuse = |reason: String| BenchError::Plugin {
            path: path.to_path_buf(),
            reason,
        };
        // SAFETY: the operator names a tickflow plugin; its initializers follow the ABI rules.
        let library = unsafe { libloading::Library::new(path) }
            .map_err(|error| refuse(format!("not loadable: {error}")))?;
        // Never unloaded: the descriptor and the plugin's threads point into it.
        let library: &'static libloading::Library = Box::leak(Box::new(library));
        // SAFETY: the entry symbol's type is fixed by the ABI.
        let entry: EntryFn = *unsafe { library.get::<EntryFn>(b"tickflow_sink_entry_v1\0") }
            .map_err(|error| refuse(format!("no entry symbol: {error}")))?;
        // SAFETY: the entry takes nothing and returns a pointer to a static descriptor.
        let descriptor = unsafe { entry() };
        if descriptor.is_null() {
            return Err(refuse("null descriptor".into()));
        }
        // SAFETY: non-null static descriptor; the header is read before anything else.
        let descriptor: &'static Descriptor = unsafe { &*descriptor };
        if descriptor.magic != abi::MAGIC
            || descriptor.abi_major != abi::ABI_MAJOR
            || descriptor.struct_size < abi::descriptor_size_for_minor(descriptor.abi_minor)
            || descriptor.abi_minor > abi::ABI_MINOR
        {
            return Err(refuse(format!(
                "not a tickflow {}.{} plugin (abi {}.{}, struct_size {})",
                abi::ABI_MAJOR,
                abi::ABI_MINOR,
                descriptor.abi_major,
                descriptor.abi_minor,
                descriptor.struct_size
            )));
        }
        if descriptor.create.is_none()
            || descriptor.on_batch.is_none()
            || descriptor.destroy.is_none()
        {
            return Err(refuse("create, on_batch or destroy missing".into()));
        }
        Ok(LoadedPlugin {
            descriptor,
            path: path.to_path_buf(),
        })
    }
}

/// Writes `records` (of the layout `kind` names) through the plugin: create with
/// `config_toml`, `on_batch` in batches of `batch_records`, flush, stats, destroy. Returns the
/// figure (timed from the first `on_batch` until `destroy` returned) and the final stats.
pub fn plugin_write<T: Copy>(
    plugin: &LoadedPlugin,
    config_toml: &str,
    names: &Names,
    kind: tickflow_sdk::records::RecordKind,
    records: &[T],
    batch_records: usize,
    root: &Path,
) -> Result<(WriteFigure, PluginStats), BenchError> {
    let failed = |call: &str, status: i32| BenchError::Plugin {
        path: plugin.path.clone(),
        reason: format!("{call} returned {} ({status})", abi::status_name(status)),
    };
    let host = host_table(names);
    let descriptor = plugin.descriptor;
    let (Some(create), Some(on_batch), Some(destroy)) =
        (descriptor.create, descriptor.on_batch, descriptor.destroy)
    else {
        return Err(failed("descriptor", abi::STATUS_INVALID_ARGUMENT));
    };
    let mut instance: *mut c_void = std::ptr::null_mut();
    // SAFETY: a live host table, the config text for the call, a writable out pointer.
    let status = unsafe { create(host, config_toml.as_ptr(), config_toml.len(), &mut instance) };
    if status != abi::STATUS_OK || instance.is_null() {
        return Err(failed("create", status));
    }
    let started = Instant::now();
    let mut result = Ok(());
    for batch in records.chunks(batch_records.max(1)) {
        // SAFETY: a live instance called from this one thread; `T` is the record layout of
        // `kind` (the caller's contract) and the batch outlives the call.
        let status = unsafe { on_batch(instance, kind as u32, batch.as_ptr().cast(), batch.len()) };
        if status != abi::STATUS_OK {
            result = Err(failed("on_batch", status));
            break;
        }
    }
    if let (Ok(()), Some(flush)) = (&result, descriptor.flush) {
        // As the host at shutdown: a flush after the last delivery, then the final one.
        for _ in 0..2 {
            // SAFETY: as above.
            let status = unsafe { flush(instance) };
            if status != abi::STATUS_OK {
                result = Err(failed("flush", status));
                break;
            }
        }
    }
    let mut stats = PluginStats {
        struct_size: size_of::<PluginStats>() as u32,
        ..PluginStats::default()
    };
    if let Some(read_stats) = descriptor.stats {
        // SAFETY: as above; `stats` is a whole table.
        let _ = unsafe { read_stats(instance, &mut stats) };
    }
    // SAFETY: created above, destroyed once.
    unsafe { destroy(instance) };
    let seconds = started.elapsed().as_secs_f64();
    result?;
    // The rows in the committed files (the stats above may miss what destroy committed).
    let mut rows = 0u64;
    let mut bytes = 0u64;
    for path in parquet_files(root)? {
        let file = File::open(&path).map_err(io(path.display()))?;
        bytes += file.metadata().map_err(io(path.display()))?.len();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)?;
        rows += parquet::file::reader::FileReader::metadata(&reader)
            .file_metadata()
            .num_rows() as u64;
    }
    Ok((
        WriteFigure {
            name: "plugin",
            rows,
            seconds,
            bytes,
        },
        stats,
    ))
}

/// Runs an instance built from `config_toml` with nothing to write, calling `on_tick` every
/// 100 ms, until `done()` holds or `limit` passed (the plugin's own housekeeping, compaction
/// included, runs meanwhile). Returns whether `done()` held.
pub fn tick_until(
    plugin: &LoadedPlugin,
    config_toml: &str,
    names: &Names,
    limit: std::time::Duration,
    done: impl Fn() -> bool,
) -> Result<bool, BenchError> {
    let failed = |call: &str, status: i32| BenchError::Plugin {
        path: plugin.path.clone(),
        reason: format!("{call} returned {} ({status})", abi::status_name(status)),
    };
    let host = host_table(names);
    let descriptor = plugin.descriptor;
    let (Some(create), Some(destroy)) = (descriptor.create, descriptor.destroy) else {
        return Err(failed("descriptor", abi::STATUS_INVALID_ARGUMENT));
    };
    let mut instance: *mut c_void = std::ptr::null_mut();
    // SAFETY: a live host table, the config text for the call, a writable out pointer.
    let status = unsafe { create(host, config_toml.as_ptr(), config_toml.len(), &mut instance) };
    if status != abi::STATUS_OK || instance.is_null() {
        return Err(failed("create", status));
    }
    let started = Instant::now();
    let mut finished = done();
    while !finished && started.elapsed() < limit {
        if let Some(on_tick) = descriptor.on_tick {
            // SAFETY: a live instance called from this one thread.
            let _ = unsafe { on_tick(instance, host_clock_ns_now()) };
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        finished = done();
    }
    // SAFETY: created above, destroyed once.
    unsafe { destroy(instance) };
    Ok(finished)
}

fn host_clock_ns_now() -> i64 {
    // SAFETY: the clock callback reads nothing through its argument.
    unsafe { host_clock_ns(std::ptr::null_mut()) }
}

/// A host table naming `names`' symbols, living for the process (like the engine's).
fn host_table(names: &Names) -> &'static Host {
    let data: &'static mut HostData = Box::leak(Box::new(HostData {
        names: names.symbols.clone(),
    }));
    Box::leak(Box::new(Host {
        struct_size: abi::HOST_SIZE_V1_0,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        host_data: (data as *mut HostData).cast(),
        log: Some(host_log),
        symbol_name: Some(host_symbol_name),
        venue_name: Some(host_venue_name),
        metric_register: None,
        counter_add: None,
        gauge_set: None,
        histogram_record: None,
        clock_ns: Some(host_clock_ns),
        publish_endpoint: None,
        metrics_snapshot: None,
    }))
}

/// Every `.parquet` file under `root`, sorted.
pub fn parquet_files(root: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(BenchError::Io(directory.display().to_string(), error)),
        };
        for entry in entries {
            let path = entry.map_err(io(directory.display()))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "parquet")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The plugin's memory bound in the benchmark: the rows are offered far faster than any disk
/// takes them, and the plugin drops (never blocks) past its bound, so the bound holds every row
/// in flight (10 M quotes are 640 MB) and the figure is the plugin's end-to-end throughput.
pub const PLUGIN_MEMORY_BOUND_MIB: u64 = 2_048;

/// The plugin's config (keys of plugins/parquet/README.md) for a write under `root` with only
/// `dataset` on, zstd level 1, `row_group_rows`, the benchmark's memory bound, a shutdown flush
/// that waits for every row (so the stats read before `destroy` are final), no retention (the
/// rows' times are fixed), then `extra` lines.
pub fn plugin_config(root: &Path, dataset: Dataset, row_group_rows: usize, extra: &str) -> String {
    format!(
        "root = {:?}\ndatasets = [\"{}\"]\nzstd_level = 1\nrow_group_rows = {row_group_rows}\n\
         memory_bound_mib = {PLUGIN_MEMORY_BOUND_MIB}\nflush_timeout_ms = 3600000\n\
         retention = {{ quotes = {{}}, trades = {{}}, spreads = {{}}, opportunities = {{}}, gaps = {{}} }}\n{extra}\n",
        root.display().to_string(),
        dataset.name()
    )
}

// ---------- the run ----------

/// `tickflow-load parquet-bench` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ParquetBenchArgs {
    /// Quote rows written by each writer.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Symbols of the quote rows (each on the 8 venues).
    #[arg(long, default_value_t = 1_000)]
    pub symbols: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The plugin's cdylib; default: libtickflow_parquet.so beside this binary.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Scratch directory (emptied first; keep it on the disk being measured).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Records per on_batch call (the engine's batch_max_records default).
    #[arg(long, default_value_t = 256)]
    pub batch_records: usize,
    /// Rows per row group, for the plugin and both baselines.
    #[arg(long, default_value_t = 65_536)]
    pub row_group_rows: usize,
    /// Extra TOML lines for the plugin's config (e.g. "memory_bound_mib = 128").
    #[arg(long, default_value = "")]
    pub plugin_config: String,
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Pairs of the read measurement's day of spread samples (0: skip the read measurement).
    #[arg(long, default_value_t = 1_000)]
    pub pairs: usize,
    /// Seconds between two spread samples of a pair in that day.
    #[arg(long, default_value_t = 10)]
    pub spread_interval_s: u64,
}

/// Runs the benchmark and prints its table.
pub fn command(args: &ParquetBenchArgs) -> Result<(), BenchError> {
    let defaults = ParquetBenchSettings::default();
    let settings = ParquetBenchSettings {
        rows: args.rows,
        symbols: args.symbols,
        seed: args.seed,
        plugin: args.plugin.clone().unwrap_or(defaults.plugin),
        dir: args.dir.clone().unwrap_or(defaults.dir),
        batch_records: args.batch_records,
        row_group_rows: args.row_group_rows,
        plugin_config: args.plugin_config.clone(),
        python: args.python.clone(),
        pairs: args.pairs,
        spread_interval_s: args.spread_interval_s,
    };
    let report = run(&settings)?;
    print!("{}", report.table());
    Ok(())
}

pub fn run(settings: &ParquetBenchSettings) -> Result<ParquetBenchReport, BenchError> {
    let _ = std::fs::remove_dir_all(&settings.dir);
    std::fs::create_dir_all(&settings.dir).map_err(io(settings.dir.display()))?;
    // Checked first: a run that cannot load the plugin measures nothing.
    let plugin = LoadedPlugin::load(&settings.plugin)?;
    let names = Names {
        symbols: crate::symbol_names(settings.symbols),
    };
    eprintln!("parquet-bench: generating {} quote rows", settings.rows);
    let rows = quotes(settings.rows, settings.symbols, settings.seed);
    let mut report = ParquetBenchReport::default();

    let batches = quote_batches(&rows, &names, 65_536)?;
    eprintln!("parquet-bench: parquet-rs ArrowWriter");
    report.writes.push(arrow_writer(
        &batches,
        &settings.dir.join("arrow_writer.parquet"),
        settings.row_group_rows,
    )?);
    eprintln!("parquet-bench: parquet-rs ArrowWriter with the plugin's encodings");
    report.writes.push(arrow_writer_plugin_encodings(
        &batches,
        &settings.dir.join("arrow_writer_plugin_encodings.parquet"),
        settings.row_group_rows,
    )?);
    let ipc = settings.dir.join("quotes.arrow");
    write_ipc(&batches, &ipc)?;
    drop(batches);
    eprintln!("parquet-bench: pyarrow write_table");
    report.writes.push(pyarrow_write(
        &settings.python,
        &ipc,
        &settings.dir.join("pyarrow.parquet"),
        settings.row_group_rows,
    )?);
    let _ = std::fs::remove_file(&ipc);
    eprint!("{}", report.table());

    eprintln!("parquet-bench: plugin path");
    let root = settings.dir.join("plugin");
    let config = plugin_config(
        &root,
        Dataset::Quotes,
        settings.row_group_rows,
        &settings.plugin_config,
    );
    let (figure, stats) = plugin_write(
        &plugin,
        &config,
        &names,
        tickflow_sdk::records::RecordKind::Quote,
        &rows,
        settings.batch_records,
        &root,
    )?;
    drop(rows);
    report.plugin_records_written = stats.records_written;
    report.plugin_records_dropped = stats.records_dropped;
    report.writes.insert(0, figure);

    if settings.pairs > 0 {
        eprintln!(
            "parquet-bench: a day of spread samples for {} pairs",
            settings.pairs
        );
        report.pair_read = Some(crate::parquet_read::pair_day(
            &plugin,
            &names,
            settings,
            &settings.dir.join("spreads"),
        )?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_are_the_same_for_a_seed_and_convert_to_the_quotes_schema() {
        let first = quotes(5_000, 10, 7);
        assert_eq!(first, quotes(5_000, 10, 7));
        assert_ne!(first, quotes(5_000, 10, 8));
        assert!(first.iter().all(|quote| quote.ask > quote.bid));
        let names = Names {
            symbols: crate::symbol_names(10),
        };
        let batches = quote_batches(&first, &names, 2_048).expect("quotes convert");
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].schema(), Dataset::Quotes.schema());
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            5_000
        );

        // The bare ArrowWriter baseline writes every row (read back from the footer).
        let dir = std::env::temp_dir().join(format!("parquet-bench-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("rows.parquet");
        let figure = arrow_writer(&batches, &path, 1_024).expect("ArrowWriter writes");
        assert_eq!(figure.rows, 5_000);
        let file = File::open(&path).expect("written");
        let reader =
            parquet::file::serialized_reader::SerializedFileReader::new(file).expect("valid");
        let metadata = parquet::file::reader::FileReader::metadata(&reader);
        assert_eq!(metadata.file_metadata().num_rows(), 5_000);
        assert_eq!(metadata.num_row_groups(), 5);
        std::fs::remove_dir_all(&dir).expect("temp dir removed");
    }
}
