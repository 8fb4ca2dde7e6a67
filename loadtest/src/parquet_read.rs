//! `tickflow-load parquet-bench`'s read measurement: a day of spread samples for N pairs written
//! through the Parquet sink plugin and compacted (one sorted file per hour), then one pair's day
//! read back the way the plugin README's reading contract allows: every `*.parquet` file of the
//! day's 24 hour partitions, row groups kept only when their `symbol`, `buy_venue` and
//! `sell_venue` statistics can hold the pair, pages kept only when the page index of `symbol`
//! can (the rows are sorted by pair then time), and the rows of the pair picked by a filter on
//! the three columns. It measures the time and every byte read from the files (footer and page
//! index included).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, BooleanArray, RecordBatch};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowFilter, RowSelection,
    RowSelector,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;
use tickflow_core::venue::Venue;
use tickflow_formats::Dataset;
use tickflow_sdk::records::{RecordKind, SpreadSample, SymbolId};

use crate::parquet_bench::{
    BenchError, LoadedPlugin, Names, PairReadFigure, ParquetBenchSettings, parquet_files,
    plugin_write,
};

/// 2026-01-01T00:00:00Z: the day the spread samples fall in.
const DAY_START_NS: i64 = 1_767_225_600_000_000_000;
const SECOND_NS: i64 = 1_000_000_000;
/// Longest the measurement waits for the plugin to compact the day's 24 hours.
const COMPACTION_WAIT: Duration = Duration::from_secs(600);

/// The (buy, sell) venue pairs a symbol's pairs use: 8 ordered pairs of distinct venues.
fn venue_pairs() -> Vec<(Venue, Venue)> {
    (0..Venue::ALL.len())
        .map(|index| {
            (
                Venue::ALL[index],
                Venue::ALL[(index + 1 + index / 4) % Venue::ALL.len()],
            )
        })
        .collect()
}

/// The pair `index`: `(symbol id, buy venue, sell venue)`.
fn pair(index: usize) -> (SymbolId, Venue, Venue) {
    let pairs = venue_pairs();
    let (buy, sell) = pairs[index % pairs.len()];
    (SymbolId((index / pairs.len()) as u32), buy, sell)
}

/// One day of samples (every `interval_s`) for `pairs` pairs, in time order as the engine emits
/// them (every pair of a bucket, then the next bucket).
fn day_of_samples(pairs: usize, interval_s: u64) -> Vec<SpreadSample> {
    let buckets = 86_400 / interval_s.max(1) as usize;
    let mut samples = Vec::with_capacity(buckets * pairs);
    for bucket in 0..buckets {
        for index in 0..pairs {
            let (symbol_id, buy, sell) = pair(index);
            let phase = (bucket as f64 / 97.0 + index as f64).sin();
            samples.push(SpreadSample {
                bucket_start_ns: DAY_START_NS + bucket as i64 * interval_s as i64 * SECOND_NS,
                bucket_duration_ns: interval_s as i64 * SECOND_NS,
                last_bp: phase * 3.0,
                min_bp: phase * 3.0 - 1.0,
                max_bp: phase * 3.0 + 1.0,
                mean_bp: phase * 3.0,
                window_mean_bp: phase,
                window_std_bp: 0.5,
                band_lower_bp: phase - 1.0,
                band_upper_bp: phase + 1.0,
                samples: 10,
                symbol_id,
                buy_venue_id: buy.id(),
                sell_venue_id: sell.id(),
                flags: 0,
            });
        }
    }
    samples
}

/// Every day file is compacted: each of the 24 hours holds one `compacted-` file and no `part-`.
fn day_is_compacted(day_dir: &Path) -> bool {
    (0..24).all(|hour| {
        let dir = day_dir.join(format!("hour={hour:02}"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return false;
        };
        let names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().to_string())
            .filter(|name| name.ends_with(".parquet"))
            .collect();
        names.len() == 1 && names[0].starts_with("compacted-")
    })
}

/// Writes the day through the plugin, waits for its compaction (an instance ticking once a
/// second), then reads one pair's day.
pub fn pair_day(
    plugin: &LoadedPlugin,
    names: &Names,
    settings: &ParquetBenchSettings,
    root: &Path,
) -> Result<PairReadFigure, BenchError> {
    let samples = day_of_samples(settings.pairs, settings.spread_interval_s);
    let config = crate::parquet_bench::plugin_config(
        root,
        Dataset::Spreads,
        settings.row_group_rows,
        &format!(
            "spreads_every_n_buckets = 1\ncompaction = true\ncompaction_delay_s = 0\n{}",
            settings.plugin_config
        ),
    );
    let (written, _) = plugin_write(
        plugin,
        &config,
        names,
        RecordKind::SpreadSample,
        &samples,
        settings.batch_records,
        root,
    )?;
    if written.rows != samples.len() as u64 {
        return Err(BenchError::Plugin {
            path: settings.plugin.clone(),
            reason: format!(
                "wrote {} spread rows of {} (see its records_dropped)",
                written.rows,
                samples.len()
            ),
        });
    }
    drop(samples);
    let day_dir = root.join("spreads").join("date=2026-01-01");
    // An instance with nothing to write: its writer's housekeeping compacts the closed hours
    // (one after another once a pass finds them, each in slices between the writer's jobs).
    let compaction_started = Instant::now();
    let compacted =
        crate::parquet_bench::tick_until(plugin, &config, names, COMPACTION_WAIT, || {
            day_is_compacted(&day_dir)
        })?;
    if !compacted {
        return Err(BenchError::Plugin {
            path: settings.plugin.clone(),
            reason: format!(
                "the day under {} was not compacted within {} s",
                day_dir.display(),
                COMPACTION_WAIT.as_secs()
            ),
        });
    }
    eprintln!(
        "parquet-bench: the day's 24 hours compacted in {:.0} s",
        compaction_started.elapsed().as_secs_f64()
    );
    let files = parquet_files(&day_dir)?;
    let day_bytes = files
        .iter()
        .map(|path| std::fs::metadata(path).map_or(0, |meta| meta.len()))
        .sum();
    let (symbol_id, buy, sell) = pair(settings.pairs / 2);
    let symbol = names
        .symbols
        .get(symbol_id.0 as usize)
        .cloned()
        .unwrap_or_default();
    let counter = Arc::new(AtomicU64::new(0));
    let read_started = Instant::now();
    let mut pair_rows = 0u64;
    let mut day_rows = 0u64;
    let mut metadata_bytes_read = 0u64;
    for path in &files {
        let read = read_pair(path, &symbol, buy.name(), sell.name(), Arc::clone(&counter))?;
        pair_rows += read.pair_rows;
        day_rows += read.file_rows;
        metadata_bytes_read += read.metadata_bytes;
    }
    let seconds = read_started.elapsed().as_secs_f64();
    Ok(PairReadFigure {
        pairs: settings.pairs,
        day_rows,
        day_files: files.len(),
        day_bytes,
        pair_rows,
        seconds,
        bytes_read: counter.load(Ordering::Relaxed),
        metadata_bytes_read,
    })
}

/// A file whose every read is counted.
struct CountingFile {
    file: File,
    bytes_read: Arc<AtomicU64>,
}

impl Length for CountingFile {
    fn len(&self) -> u64 {
        self.file.metadata().map_or(0, |meta| meta.len())
    }
}

struct CountingRead {
    file: File,
    bytes_read: Arc<AtomicU64>,
}

impl Read for CountingRead {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read(buffer)?;
        self.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

impl ChunkReader for CountingFile {
    type T = CountingRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<CountingRead> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        Ok(CountingRead {
            file,
            bytes_read: Arc::clone(&self.bytes_read),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buffer = vec![0u8; length];
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buffer)?;
        self.bytes_read.fetch_add(length as u64, Ordering::Relaxed);
        Ok(buffer.into())
    }
}

fn column_position(metadata: &ParquetMetaData, name: &str) -> Option<usize> {
    metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|column| column.name() == name)
}

/// Whether a row group's byte-array statistics of column `index` can hold `value`.
fn may_hold(metadata: &ParquetMetaData, row_group: usize, index: usize, value: &str) -> bool {
    match metadata.row_group(row_group).column(index).statistics() {
        Some(Statistics::ByteArray(stats)) => match (stats.min_opt(), stats.max_opt()) {
            (Some(min), Some(max)) => {
                min.data() <= value.as_bytes() && value.as_bytes() <= max.data()
            }
            _ => true,
        },
        _ => true,
    }
}

/// The rows of `row_groups` whose `symbol` pages (page index) can hold `symbol`; None when the
/// file has no page index.
fn page_selection(
    metadata: &ParquetMetaData,
    row_groups: &[usize],
    symbol_column: usize,
    symbol: &str,
) -> Option<RowSelection> {
    let column_index = metadata.column_index()?;
    let offset_index = metadata.offset_index()?;
    let mut selectors = Vec::new();
    for &row_group in row_groups {
        let rows = metadata.row_group(row_group).num_rows() as usize;
        let ColumnIndexMetaData::BYTE_ARRAY(index) = &column_index[row_group][symbol_column] else {
            selectors.push(RowSelector::select(rows));
            continue;
        };
        let locations = offset_index[row_group][symbol_column].page_locations();
        for (page, location) in locations.iter().enumerate() {
            let first = location.first_row_index as usize;
            let end = locations
                .get(page + 1)
                .map_or(rows, |next| next.first_row_index as usize);
            let keep = match (index.min_value(page), index.max_value(page)) {
                (Some(min), Some(max)) => min <= symbol.as_bytes() && symbol.as_bytes() <= max,
                _ => true,
            };
            selectors.push(if keep {
                RowSelector::select(end - first)
            } else {
                RowSelector::skip(end - first)
            });
        }
    }
    Some(selectors.into())
}

/// Whether each row of a dictionary (or plain) string column equals `value`.
fn equals(column: &dyn Array, value: &str) -> BooleanArray {
    if let Some(dictionary) = column.as_dictionary_opt::<Int32Type>() {
        let values = dictionary.values().as_string::<i32>();
        let matching: Vec<bool> = (0..values.len())
            .map(|key| values.value(key) == value)
            .collect();
        return dictionary
            .keys()
            .iter()
            .map(|key| Some(key.is_some_and(|key| matching[key as usize])))
            .collect();
    }
    column
        .as_string::<i32>()
        .iter()
        .map(|text| Some(text == Some(value)))
        .collect()
}

/// One file's part of a per-pair read.
struct FileRead {
    pair_rows: u64,
    file_rows: u64,
    /// Bytes read for the footer and the page index.
    metadata_bytes: u64,
}

/// Reads the rows of one pair from `path`.
fn read_pair(
    path: &PathBuf,
    symbol: &str,
    buy_venue: &str,
    sell_venue: &str,
    bytes_read: Arc<AtomicU64>,
) -> Result<FileRead, BenchError> {
    let file =
        File::open(path).map_err(|error| BenchError::Io(path.display().to_string(), error))?;
    let before = bytes_read.load(Ordering::Relaxed);
    let reader = CountingFile {
        file,
        bytes_read: Arc::clone(&bytes_read),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        reader,
        ArrowReaderOptions::new().with_page_index(true),
    )?;
    let metadata_bytes = bytes_read.load(Ordering::Relaxed) - before;
    let metadata = Arc::clone(builder.metadata());
    let file_rows = metadata.file_metadata().num_rows() as u64;
    let nothing = FileRead {
        pair_rows: 0,
        file_rows,
        metadata_bytes,
    };
    let (Some(symbol_column), Some(buy_column), Some(sell_column)) = (
        column_position(&metadata, "symbol"),
        column_position(&metadata, "buy_venue"),
        column_position(&metadata, "sell_venue"),
    ) else {
        return Ok(nothing);
    };
    let row_groups: Vec<usize> = (0..metadata.num_row_groups())
        .filter(|&row_group| {
            may_hold(&metadata, row_group, symbol_column, symbol)
                && may_hold(&metadata, row_group, buy_column, buy_venue)
                && may_hold(&metadata, row_group, sell_column, sell_venue)
        })
        .collect();
    if row_groups.is_empty() {
        return Ok(nothing);
    }
    let selection = page_selection(&metadata, &row_groups, symbol_column, symbol);
    let schema_descr = metadata.file_metadata().schema_descr_ptr();
    let keys = ProjectionMask::leaves(&schema_descr, [symbol_column, buy_column, sell_column]);
    let (symbol, buy, sell) = (
        symbol.to_string(),
        buy_venue.to_string(),
        sell_venue.to_string(),
    );
    let predicate = ArrowPredicateFn::new(keys, move |batch: RecordBatch| {
        let by_symbol = equals(batch.column(0).as_ref(), &symbol);
        let by_buy = equals(batch.column(1).as_ref(), &buy);
        let by_sell = equals(batch.column(2).as_ref(), &sell);
        Ok((0..batch.num_rows())
            .map(|row| Some(by_symbol.value(row) && by_buy.value(row) && by_sell.value(row)))
            .collect())
    });
    let mut builder = builder
        .with_row_groups(row_groups.clone())
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    let mut pair_rows = 0u64;
    for batch in builder.build()? {
        pair_rows += batch?.num_rows() as u64;
    }
    Ok(FileRead {
        pair_rows,
        ..nothing
    })
}
