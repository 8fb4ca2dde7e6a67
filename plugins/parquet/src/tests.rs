//! Tests of the sink's internals with real files in a temporary directory, read back with the
//! `parquet` crate's Arrow reader.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use tickflow_formats::layout::{HOUR_NS, is_data_file_name};
use tickflow_formats::{Dataset, HourPartition};
use tickflow_sdk::records::*;
use tickflow_sdk::{Batch, HostHandle, Sink};

use crate::config::{ParquetConfig, RetentionConfig, RetentionRule};
use crate::{ParquetSink, compaction, files};

/// 2024-01-01T00:00:00Z.
const T0_NS: i64 = 1_704_067_200_000_000_000;

fn test_config(root: &Path) -> ParquetConfig {
    ParquetConfig {
        root: root.to_path_buf(),
        row_group_rows: 1_024,
        memory_bound_mib: 16,
        spreads_every_n_buckets: 1,
        fault_backoff_initial_ms: 5,
        fault_backoff_max_ms: 20,
        compaction_delay_s: 60,
        retention: RetentionConfig {
            quotes: RetentionRule::default(),
            trades: RetentionRule::default(),
            spreads: RetentionRule::default(),
            opportunities: RetentionRule::default(),
            gaps: RetentionRule::default(),
        },
        ..ParquetConfig::default()
    }
}

/// A host table for tests: names for a few ids, log lines kept.
struct TestHost {
    logs: std::sync::Mutex<Vec<(u32, String)>>,
}

const SYMBOLS: [&str; 3] = ["BTC-USDT", "ETH-USDT", "SOL-USDT"];
const VENUES: [&str; 4] = ["binance", "okx", "bybit", "kraken"];

fn copy_name(name: Option<&str>, out: *mut u8, capacity: usize) -> usize {
    let Some(name) = name else {
        return 0;
    };
    let len = name.len().min(capacity);
    // SAFETY: the caller (the SDK) passes `capacity` writable bytes at `out`.
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), out, len) };
    name.len()
}

unsafe extern "C" fn test_symbol_name(
    _: *mut std::ffi::c_void,
    id: u32,
    out: *mut u8,
    capacity: usize,
) -> usize {
    copy_name(SYMBOLS.get(id as usize).copied(), out, capacity)
}

unsafe extern "C" fn test_venue_name(
    _: *mut std::ffi::c_void,
    id: u16,
    out: *mut u8,
    capacity: usize,
) -> usize {
    copy_name(VENUES.get(id as usize).copied(), out, capacity)
}

unsafe extern "C" fn test_log(
    data: *mut std::ffi::c_void,
    level: u32,
    text: *const u8,
    len: usize,
) {
    // SAFETY: `data` is the leaked `TestHost` of `test_host`; `text` holds `len` bytes.
    let (host, bytes) = unsafe {
        (
            &*(data as *const TestHost),
            std::slice::from_raw_parts(text, len),
        )
    };
    if let Ok(mut logs) = host.logs.lock() {
        logs.push((level, String::from_utf8_lossy(bytes).into_owned()));
    }
}

/// A host with names and a log (leaked, as the engine never frees its tables either).
fn test_host() -> (HostHandle, &'static TestHost) {
    let state: &'static TestHost = Box::leak(Box::new(TestHost {
        logs: std::sync::Mutex::new(Vec::new()),
    }));
    // SAFETY: every field of the table is an integer, a raw pointer or an optional function
    // pointer, for which all-zero is valid (0, null, None); the fields used are set below.
    let mut table: tickflow_sdk::abi::Host = unsafe { std::mem::zeroed() };
    table.struct_size = size_of::<tickflow_sdk::abi::Host>() as u32;
    table.abi_major = tickflow_sdk::abi::ABI_MAJOR;
    table.abi_minor = tickflow_sdk::abi::ABI_MINOR;
    table.host_data = state as *const TestHost as *mut std::ffi::c_void;
    table.log = Some(test_log);
    table.symbol_name = Some(test_symbol_name);
    table.venue_name = Some(test_venue_name);
    let table: &'static tickflow_sdk::abi::Host = Box::leak(Box::new(table));
    // SAFETY: the table is leaked: valid for the rest of the process.
    (unsafe { HostHandle::from_raw(table) }, state)
}

impl TestHost {
    fn lines_containing(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .map(|logs| {
                logs.iter()
                    .filter(|(_, line)| line.contains(needle))
                    .count()
            })
            .unwrap_or(0)
    }
}

fn start(config: ParquetConfig) -> ParquetSink {
    ParquetSink::start(HostHandle::detached(), config).expect("sink starts")
}

/// Every visible data file of a dataset, sorted by path.
fn data_files(root: &Path, dataset: Dataset) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.join(dataset.name())];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_data_file_name(&entry.file_name().to_string_lossy()) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn read_file(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).expect("file opens");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("valid parquet")
        .build()
        .expect("reader builds")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches decode")
}

fn read_dataset(root: &Path, dataset: Dataset) -> Vec<RecordBatch> {
    data_files(root, dataset)
        .iter()
        .flat_map(|path| read_file(path))
        .collect()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn dict(batch: &RecordBatch, column: &str, row: usize) -> String {
    let array = batch.column_by_name(column).expect("column exists");
    let dictionary = array.as_dictionary::<Int32Type>();
    let key = dictionary.keys().value(row) as usize;
    dictionary
        .values()
        .as_string::<i32>()
        .value(key)
        .to_string()
}
fn string(batch: &RecordBatch, column: &str, row: usize) -> String {
    batch
        .column_by_name(column)
        .expect("column exists")
        .as_string::<i32>()
        .value(row)
        .to_string()
}
fn float(batch: &RecordBatch, column: &str, row: usize) -> Option<f64> {
    let array = batch
        .column_by_name(column)
        .expect("column exists")
        .as_primitive::<Float64Type>();
    array.is_valid(row).then(|| array.value(row))
}
fn timestamp(batch: &RecordBatch, column: &str, row: usize) -> Option<i64> {
    let array = batch
        .column_by_name(column)
        .expect("column exists")
        .as_primitive::<TimestampNanosecondType>();
    array.is_valid(row).then(|| array.value(row))
}

fn quote(index: i64, ts_recv_ns: i64) -> Quote {
    Quote {
        bid: 100.0 + index as f64,
        bid_qty: 1.5,
        ask: 100.5 + index as f64,
        ask_qty: 2.5,
        ts_exchange_ns: if index % 2 == 0 {
            ts_recv_ns - 1_000
        } else {
            0
        },
        ts_recv_ns,
        seq: index as u64 * 10,
        symbol_id: SymbolId((index % 3) as u32),
        venue_id: VenueId((index % 2) as u16),
        flags: if index % 2 == 0 {
            FLAG_HAS_TS_EXCHANGE | FLAG_HAS_SEQ
        } else {
            0
        },
        reserved: 0,
    }
}

fn spread(symbol: u32, buy: u16, sell: u16, bucket: i64) -> SpreadSample {
    SpreadSample {
        bucket_start_ns: T0_NS + bucket * 1_000_000_000,
        bucket_duration_ns: 1_000_000_000,
        last_bp: 1.0 + bucket as f64,
        min_bp: 0.5,
        max_bp: 2.0 + bucket as f64,
        mean_bp: 1.25,
        window_mean_bp: 1.1,
        window_std_bp: if bucket == 0 { f64::NAN } else { 0.2 },
        band_lower_bp: if bucket == 0 { f64::NAN } else { 0.7 },
        band_upper_bp: 1.5,
        samples: 7,
        symbol_id: SymbolId(symbol),
        buy_venue_id: VenueId(buy),
        sell_venue_id: VenueId(sell),
        flags: if bucket < 2 { SPREAD_FLAG_WARMING } else { 0 },
    }
}

#[test]
fn round_trip_of_every_field_of_every_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = test_host();
    let mut sink = ParquetSink::start(host, test_config(dir.path())).expect("sink starts");

    let quotes: Vec<Quote> = (0..10)
        .map(|index| quote(index, T0_NS + index * 1_000))
        .collect();
    let mut uuid_trade = Trade {
        price: 42_000.5,
        qty: 0.25,
        ts_exchange_ns: T0_NS + 5,
        ts_recv_ns: T0_NS + 9,
        symbol_id: SymbolId(1),
        venue_id: VenueId(3),
        side: Side::Sell as u8,
        flags: FLAG_HAS_TS_EXCHANGE,
        ..Trade::default()
    };
    assert!(uuid_trade.set_trade_id(b"20f43950-d8dd-5b31-9112-a178eb6023af"));
    let mut text_trade = Trade {
        price: 1.0,
        qty: 3.0,
        ts_recv_ns: T0_NS + 10,
        symbol_id: SymbolId(2),
        venue_id: VenueId(0),
        side: Side::Buy as u8,
        ..Trade::default()
    };
    assert!(text_trade.set_trade_id(b"1235670816495050754"));
    // Unsorted on purpose: the file must come back sorted by (symbol, buy, sell, bucket).
    let spreads = vec![
        spread(2, 0, 1, 3),
        spread(1, 1, 0, 2),
        spread(1, 0, 1, 1),
        spread(1, 0, 1, 0),
    ];
    let opportunities = vec![
        OpportunityEvent {
            ts_ns: T0_NS + 100,
            started_ns: T0_NS + 100,
            threshold_bp: 30.0,
            spread_bp: 31.0,
            peak_bp: 31.0,
            symbol_id: SymbolId(1),
            buy_venue_id: VenueId(0),
            sell_venue_id: VenueId(2),
            kind: OPPORTUNITY_START,
            flags: OPPORTUNITY_FLAG_NET,
            reserved: [0; 6],
        },
        OpportunityEvent {
            ts_ns: T0_NS + 200,
            started_ns: T0_NS + 100,
            threshold_bp: 30.0,
            spread_bp: 14.0,
            peak_bp: 45.5,
            symbol_id: SymbolId(1),
            buy_venue_id: VenueId(0),
            sell_venue_id: VenueId(2),
            kind: OPPORTUNITY_END,
            flags: 0,
            reserved: [0; 6],
        },
    ];
    let gaps: Vec<GapEvent> = [
        GAP_DISCONNECT,
        GAP_RECONNECT,
        GAP_QUOTE_WITHDRAWN,
        GAP_SYMBOL_RETIRED,
    ]
    .iter()
    .enumerate()
    .map(|(index, &kind)| GapEvent {
        ts_ns: T0_NS + index as i64,
        connection_id: 7 + index as u32,
        symbol_id: SymbolId(index as u32),
        venue_id: VenueId(1),
        kind,
        reserved: [0; 5],
    })
    .collect();

    sink.on_batch(Batch::Quotes(&quotes)).expect("on_batch");
    sink.on_batch(Batch::Trades(&[uuid_trade, text_trade]))
        .expect("on_batch");
    sink.on_batch(Batch::Spreads(&spreads)).expect("on_batch");
    sink.on_batch(Batch::Opportunities(&opportunities))
        .expect("on_batch");
    sink.on_batch(Batch::Gaps(&gaps)).expect("on_batch");
    sink.close();

    for dataset in Dataset::ALL {
        let counters = sink.shared().dataset(dataset);
        let received = counters.received.load(std::sync::atomic::Ordering::Relaxed);
        let written = counters.written.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(received, written, "{dataset:?}");
        let files = data_files(dir.path(), dataset);
        assert_eq!(files.len(), 1, "{dataset:?}: {files:?}");
        assert!(
            files[0].starts_with(
                dir.path()
                    .join(dataset.name())
                    .join("date=2024-01-01/hour=00")
            ),
            "{files:?}"
        );
    }
    let stats = sink.stats();
    assert_eq!(stats.records_written, 10 + 2 + 4 + 2 + 4);
    assert_eq!(stats.records_dropped, 0);
    assert!(stats.bytes_written > 0);

    let quotes_read = read_dataset(dir.path(), Dataset::Quotes);
    assert_eq!(rows(&quotes_read), 10);
    let batch = &quotes_read[0];
    assert_eq!(batch.schema().fields(), Dataset::Quotes.schema().fields());
    for (row, expected) in quotes.iter().enumerate() {
        assert_eq!(timestamp(batch, "ts_recv", row), Some(expected.ts_recv_ns));
        assert_eq!(timestamp(batch, "ts_exchange", row), expected.ts_exchange());
        assert_eq!(
            dict(batch, "symbol", row),
            SYMBOLS[expected.symbol_id.0 as usize]
        );
        assert_eq!(
            dict(batch, "venue", row),
            VENUES[expected.venue_id.0 as usize]
        );
        assert_eq!(float(batch, "bid", row), Some(expected.bid));
        assert_eq!(float(batch, "bid_qty", row), Some(expected.bid_qty));
        assert_eq!(float(batch, "ask", row), Some(expected.ask));
        assert_eq!(float(batch, "ask_qty", row), Some(expected.ask_qty));
        let seq = batch
            .column_by_name("seq")
            .expect("seq")
            .as_primitive::<UInt64Type>();
        assert_eq!(
            seq.is_valid(row).then(|| seq.value(row)),
            expected.sequence()
        );
    }

    let trades_read = read_dataset(dir.path(), Dataset::Trades);
    let batch = &trades_read[0];
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(
        string(batch, "trade_id", 0),
        "20f43950-d8dd-5b31-9112-a178eb6023af"
    );
    assert_eq!(string(batch, "trade_id", 1), "1235670816495050754");
    assert_eq!(string(batch, "side", 0), "sell");
    assert_eq!(string(batch, "side", 1), "buy");
    assert_eq!(timestamp(batch, "ts_exchange", 0), Some(T0_NS + 5));
    assert_eq!(timestamp(batch, "ts_exchange", 1), None);
    assert_eq!(timestamp(batch, "ts_recv", 1), Some(T0_NS + 10));
    assert_eq!(float(batch, "price", 0), Some(42_000.5));
    assert_eq!(float(batch, "qty", 1), Some(3.0));
    assert_eq!(dict(batch, "venue", 0), "kraken");
    assert_eq!(dict(batch, "symbol", 1), "SOL-USDT");

    let spreads_read = read_dataset(dir.path(), Dataset::Spreads);
    let batch = &spreads_read[0];
    let keys: Vec<(String, String, String, i64)> = (0..batch.num_rows())
        .map(|row| {
            (
                dict(batch, "symbol", row),
                dict(batch, "buy_venue", row),
                dict(batch, "sell_venue", row),
                timestamp(batch, "bucket_start", row).expect("not null"),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "spreads come back sorted");
    assert_eq!(
        keys[0],
        ("ETH-USDT".into(), "binance".into(), "okx".into(), T0_NS)
    );
    assert_eq!(keys[3].0, "SOL-USDT");
    // Row 0 is bucket 0: NaN statistics come back null, never NaN.
    assert_eq!(float(batch, "window_std_bp", 0), None);
    assert_eq!(float(batch, "band_lower_bp", 0), None);
    assert_eq!(float(batch, "band_upper_bp", 0), Some(1.5));
    assert_eq!(float(batch, "window_std_bp", 1), Some(0.2));
    assert_eq!(float(batch, "last_bp", 1), Some(2.0));
    assert_eq!(float(batch, "min_bp", 1), Some(0.5));
    assert_eq!(float(batch, "max_bp", 1), Some(3.0));
    assert_eq!(float(batch, "mean_bp", 1), Some(1.25));
    assert_eq!(float(batch, "window_mean_bp", 1), Some(1.1));
    let duration = batch.column_by_name("bucket_duration_ns").expect("column");
    assert_eq!(duration.as_primitive::<Int64Type>().value(0), 1_000_000_000);
    let samples = batch.column_by_name("samples").expect("column");
    assert_eq!(samples.as_primitive::<UInt32Type>().value(0), 7);
    let warming = batch
        .column_by_name("warming")
        .expect("column")
        .as_boolean();
    assert!(warming.value(0) && warming.value(1) && !warming.value(3));
    for column in [
        "band_lower_bp",
        "band_upper_bp",
        "window_mean_bp",
        "window_std_bp",
    ] {
        let array = batch
            .column_by_name(column)
            .expect("column")
            .as_primitive::<Float64Type>();
        assert!(
            array.iter().flatten().all(f64::is_finite),
            "{column} has no NaN"
        );
    }

    let opportunities_read = read_dataset(dir.path(), Dataset::Opportunities);
    let batch = &opportunities_read[0];
    assert_eq!(string(batch, "kind", 0), "start");
    assert_eq!(string(batch, "kind", 1), "end");
    assert_eq!(timestamp(batch, "started", 1), Some(T0_NS + 100));
    assert_eq!(timestamp(batch, "ts", 1), Some(T0_NS + 200));
    assert_eq!(float(batch, "peak_bp", 1), Some(45.5));
    assert_eq!(float(batch, "threshold_bp", 0), Some(30.0));
    assert_eq!(float(batch, "spread_bp", 1), Some(14.0));
    assert_eq!(dict(batch, "sell_venue", 0), "bybit");
    assert_eq!(dict(batch, "buy_venue", 0), "binance");
    let net = batch.column_by_name("net").expect("column").as_boolean();
    assert!(net.value(0) && !net.value(1));

    let gaps_read = read_dataset(dir.path(), Dataset::Gaps);
    let batch = &gaps_read[0];
    let kinds: Vec<String> = (0..4).map(|row| string(batch, "kind", row)).collect();
    assert_eq!(
        kinds,
        [
            "disconnect",
            "reconnect",
            "quote_withdrawn",
            "symbol_retired"
        ]
    );
    let connection = batch.column_by_name("connection_id").expect("column");
    assert_eq!(connection.as_primitive::<UInt32Type>().value(3), 10);
    assert_eq!(dict(batch, "symbol", 2), "SOL-USDT");
    // An id the host does not know.
    assert_eq!(dict(batch, "symbol", 3), "#3");
    assert_eq!(dict(batch, "venue", 3), "okx");
    assert_eq!(timestamp(batch, "ts", 3), Some(T0_NS + 3));
}

#[test]
fn files_carry_versions_sort_order_and_page_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = start(test_config(dir.path()));
    let samples: Vec<SpreadSample> = (0..3_000)
        .map(|index| spread((index % 50) as u32, 0, 1, index / 50))
        .collect();
    sink.on_batch(Batch::Spreads(&samples)).expect("on_batch");
    sink.close();
    let files = data_files(dir.path(), Dataset::Spreads);
    assert_eq!(files.len(), 1);
    let file = File::open(&files[0]).expect("opens");
    let options = ArrowReaderOptions::new().with_page_index(true);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).expect("valid");
    let metadata = builder.metadata();
    let key_values: BTreeMap<String, Option<String>> = metadata
        .file_metadata()
        .key_value_metadata()
        .expect("metadata present")
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(key_values["tickflow.dataset"].as_deref(), Some("spreads"));
    assert_eq!(key_values["tickflow.schema_version"].as_deref(), Some("1"));
    assert_eq!(key_values["tickflow.sorted"].as_deref(), Some("row_group"));
    assert_eq!(
        key_values["tickflow.abi_version"].as_deref(),
        Some(
            format!(
                "{}.{}",
                tickflow_sdk::abi::ABI_MAJOR,
                tickflow_sdk::abi::ABI_MINOR
            )
            .as_str()
        )
    );
    assert!(key_values.contains_key("tickflow.version"));
    assert!(
        metadata.num_row_groups() >= 3,
        "row_group_rows = 1024 splits 3000 rows"
    );
    let row_group = metadata.row_group(0);
    let sorting = row_group
        .sorting_columns()
        .expect("sorting columns recorded");
    assert_eq!(sorting.len(), 4);
    assert!(
        row_group.column(1).statistics().is_some(),
        "symbol statistics"
    );
    assert!(metadata.column_index().is_some(), "page index written");
    assert!(metadata.offset_index().is_some(), "offset index written");
}

#[test]
fn late_hours_go_to_their_own_partition_and_commits_roll_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ParquetConfig {
        hours_in_flight: 1,
        ..test_config(dir.path())
    };
    let mut sink = start(config);
    // Hour 0, hour 1, then a late record of hour 0 again: with one hour in flight the buffer of
    // hour 1 is handed over first; nothing is dropped.
    let batch = [
        quote(0, T0_NS),
        quote(1, T0_NS + HOUR_NS),
        quote(2, T0_NS + 5),
    ];
    sink.on_batch(Batch::Quotes(&batch)).expect("on_batch");
    sink.commit(Some(Duration::from_secs(10)));
    sink.on_batch(Batch::Quotes(&[quote(3, T0_NS + 6)]))
        .expect("on_batch");
    sink.close();
    let hour0 = dir.path().join("quotes/date=2024-01-01/hour=00");
    let hour1 = dir.path().join("quotes/date=2024-01-01/hour=01");
    let in_hour0: Vec<PathBuf> = data_files(dir.path(), Dataset::Quotes)
        .into_iter()
        .filter(|path| path.starts_with(&hour0))
        .collect();
    let in_hour1 = data_files(dir.path(), Dataset::Quotes).len() - in_hour0.len();
    assert!(
        in_hour0.len() >= 2,
        "the commit rolled hour 0's file: {in_hour0:?}"
    );
    assert_eq!(in_hour1, 1);
    assert_eq!(
        rows(&read_file(
            &fs::read_dir(&hour1)
                .expect("dir")
                .flatten()
                .next()
                .expect("file")
                .path()
        )),
        1
    );
    let total: usize = in_hour0.iter().map(|path| rows(&read_file(path))).sum();
    assert_eq!(total, 3);
    assert_eq!(sink.stats().records_dropped, 0);
}

/// Quotes with incompressible prices: about 40 bytes a row on disk.
fn noisy_quotes(count: i64) -> Vec<Quote> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..count)
        .map(|index| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut record = quote(index, T0_NS + index);
            record.bid = f64::from_bits((state >> 12) | 0x3ff0_0000_0000_0000);
            record.ask = f64::from_bits((state.rotate_left(29) >> 12) | 0x3ff0_0000_0000_0000);
            record.seq = state;
            record
        })
        .collect()
}

#[test]
fn files_roll_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ParquetConfig {
        roll_bytes: 1 << 20,
        ..test_config(dir.path())
    };
    let mut sink = start(config);
    let quotes = noisy_quotes(60_000);
    for chunk in quotes.chunks(4_096) {
        sink.on_batch(Batch::Quotes(chunk)).expect("on_batch");
    }
    sink.close();
    let files = data_files(dir.path(), Dataset::Quotes);
    assert!(files.len() >= 2, "rolled by size: {files:?}");
    assert_eq!(
        files
            .iter()
            .map(|path| rows(&read_file(path)))
            .sum::<usize>(),
        60_000
    );
}

#[test]
fn a_restart_removes_staging_leftovers_and_a_second_writer_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staging = dir.path().join("_staging");
    fs::create_dir_all(staging.join("compact-3/hour")).expect("mkdir");
    fs::write(staging.join("part-1-2-3.parquet.tmp"), b"half a file").expect("write");
    fs::write(staging.join("compact-3/hour/compacted-1.parquet"), b"PAR1").expect("write");
    let mut sink = start(test_config(dir.path()));
    assert_eq!(
        fs::read_dir(&staging).expect("staging exists").count(),
        0,
        "leftovers removed at start"
    );
    let second = ParquetSink::start(HostHandle::detached(), test_config(dir.path()));
    assert!(
        matches!(second, Err(tickflow_sdk::SinkError::Config(ref message)) if message.contains("another")),
        "second writer refused"
    );
    sink.on_batch(Batch::Quotes(&[quote(0, T0_NS)]))
        .expect("on_batch");
    sink.close();
    // Staging files never match a *.parquet glob and live outside the dataset directories.
    assert_eq!(data_files(dir.path(), Dataset::Quotes).len(), 1);
    // After close the lock is free again.
    let again = ParquetSink::start(HostHandle::detached(), test_config(dir.path()));
    assert!(again.is_ok());
}

/// Writes `hours` hour partitions of quotes (one row each) and returns the root's sink config.
fn write_hours(root: &Path, hours: &[i64]) {
    let mut sink = start(test_config(root));
    for &hour in hours {
        sink.on_batch(Batch::Quotes(&[quote(hour, T0_NS + hour * HOUR_NS)]))
            .expect("on_batch");
        sink.commit(Some(Duration::from_secs(10)));
    }
    sink.close();
}

fn hours_on_disk(root: &Path, dataset: Dataset) -> Vec<i64> {
    let layout = files::Layout::new(root.to_path_buf());
    files::list_partitions(&layout, dataset)
        .expect("listing")
        .iter()
        .map(|partition| partition.hour.hour_index - HourPartition::of_ns(T0_NS).hour_index)
        .collect()
}

#[test]
fn retention_by_age_deletes_the_oldest_hours_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_hours(dir.path(), &[0, 1, 2, 3, 30]);
    // Trades are not under a rule: untouched.
    let config = ParquetConfig {
        retention: RetentionConfig {
            quotes: RetentionRule {
                max_age_hours: Some(24),
                max_bytes: None,
            },
            ..test_config(dir.path()).retention
        },
        ..test_config(dir.path())
    };
    let mut sink = start(config);
    sink.on_batch(Batch::Trades(&[Trade {
        ts_recv_ns: T0_NS,
        ..Trade::default()
    }]))
    .expect("on_batch");
    sink.commit(Some(Duration::from_secs(10)));
    // At hour 27 + 0.5: hours whose end is ≥ 24 h ago are 0, 1 and 2 (hour 2 ends at 3:00).
    sink.housekeeping(T0_NS + 27 * HOUR_NS + HOUR_NS / 2);
    sink.commit(Some(Duration::from_secs(10)));
    assert_eq!(hours_on_disk(dir.path(), Dataset::Quotes), vec![3, 30]);
    assert_eq!(hours_on_disk(dir.path(), Dataset::Trades), vec![0]);
    assert_eq!(
        sink.shared()
            .partitions_deleted
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    // The emptied date directory stays (hour 3 is in it); hour 30 is the next day.
    assert!(dir.path().join("quotes/date=2024-01-02/hour=06").is_dir());
    sink.close();
}

#[test]
fn retention_by_bytes_deletes_oldest_first_until_under_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_hours(dir.path(), &[0, 1, 2, 3]);
    let layout = files::Layout::new(dir.path().to_path_buf());
    let partitions = files::list_partitions(&layout, Dataset::Quotes).expect("list");
    let one = partitions[0].bytes();
    let rule = RetentionRule {
        max_age_hours: None,
        max_bytes: Some(2 * one + one / 2),
    };
    // Four partitions of about `one` bytes each, limit 2.5 × one: the two oldest go.
    let victims = files::retention_victims(&partitions, &rule, T0_NS, &[]);
    assert_eq!(victims, vec![0, 1]);
    // A busy (open) hour is kept, the next oldest goes instead.
    let victims = files::retention_victims(&partitions, &rule, T0_NS, &[partitions[0].hour]);
    assert_eq!(victims, vec![1, 2]);
    for (sequence, index) in [0usize, 1].into_iter().enumerate() {
        files::remove_partition(&layout, &partitions[index], sequence as u64).expect("removes");
    }
    assert_eq!(hours_on_disk(dir.path(), Dataset::Quotes), vec![2, 3]);
    assert_eq!(rows(&read_dataset(dir.path(), Dataset::Quotes)), 2);
}

fn spread_keys(batches: &[RecordBatch]) -> Vec<(String, String, String, i64, u64)> {
    let mut keys = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            keys.push((
                dict(batch, "symbol", row),
                dict(batch, "buy_venue", row),
                dict(batch, "sell_venue", row),
                timestamp(batch, "bucket_start", row).expect("not null"),
                float(batch, "last_bp", row).expect("not null").to_bits(),
            ));
        }
    }
    keys
}

#[test]
fn compaction_merges_an_hour_into_one_sorted_file_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = start(test_config(dir.path()));
    // Three files in hour 0, each of several row groups, pairs interleaved across files.
    let mut fed = 0;
    for round in 0..3i64 {
        let samples: Vec<SpreadSample> = (0..2_500i64)
            .map(|index| {
                spread(
                    ((index * 7 + round) % 40) as u32,
                    (round % 2) as u16,
                    5,
                    index % 1_000 + round * 1_000,
                )
            })
            .collect();
        fed += samples.len();
        sink.on_batch(Batch::Spreads(&samples)).expect("on_batch");
        sink.commit(Some(Duration::from_secs(10)));
    }
    assert_eq!(data_files(dir.path(), Dataset::Spreads).len(), 3);
    let mut before = spread_keys(&read_dataset(dir.path(), Dataset::Spreads));
    before.sort();
    // Not yet closed: nothing happens.
    sink.housekeeping(T0_NS + HOUR_NS);
    sink.commit(Some(Duration::from_secs(10)));
    assert_eq!(data_files(dir.path(), Dataset::Spreads).len(), 3);
    sink.housekeeping(T0_NS + 2 * HOUR_NS);
    sink.commit(Some(Duration::from_secs(10)));
    let files = data_files(dir.path(), Dataset::Spreads);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0]
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("compacted-"))
    );
    let after = spread_keys(&read_file(&files[0]));
    assert_eq!(after.len(), fed);
    assert_eq!(after, before, "same rows, sorted as a whole");
    // A late file for the compacted hour is merged by the next pass.
    sink.on_batch(Batch::Spreads(&[spread(0, 0, 0, 10)]))
        .expect("on_batch");
    sink.commit(Some(Duration::from_secs(10)));
    sink.housekeeping(T0_NS + 2 * HOUR_NS);
    sink.commit(Some(Duration::from_secs(10)));
    let files = data_files(dir.path(), Dataset::Spreads);
    assert_eq!(files.len(), 1);
    assert_eq!(rows(&read_file(&files[0])), fed + 1);
    assert_eq!(
        sink.shared()
            .hours_compacted
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    sink.close();
}

#[test]
fn compaction_in_passes_stays_exact_and_readers_never_see_a_row_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = start(test_config(dir.path()));
    let mut fed = 0usize;
    for round in 0..6i64 {
        let samples: Vec<SpreadSample> = (0..1_500i64)
            .map(|index| spread((index % 13) as u32, 1, 2, index / 2 + round * 500))
            .collect();
        fed += samples.len();
        sink.on_batch(Batch::Spreads(&samples)).expect("on_batch");
        sink.commit(Some(Duration::from_secs(10)));
    }
    sink.close();
    let hour_dir = dir.path().join("spreads/date=2024-01-01/hour=00");
    let root = dir.path().to_path_buf();
    // A reader globbing the tree again and again while the hour is compacted (fan-in 2: several
    // passes): every complete read sees exactly the fed rows; a read may only fail because a
    // listed file went away (retry), never return more or fewer rows.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let root = root.clone();
        std::thread::spawn(move || {
            let mut complete_reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || complete_reads == 0 {
                let mut total = 0usize;
                let mut failed = false;
                for path in data_files(&root, Dataset::Spreads) {
                    let Ok(file) = File::open(&path) else {
                        failed = true;
                        break;
                    };
                    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
                        failed = true;
                        break;
                    };
                    total += builder.metadata().file_metadata().num_rows() as usize;
                }
                if !failed {
                    assert_eq!(total, 9_000, "a read saw a row twice or missed one");
                    complete_reads += 1;
                }
            }
            complete_reads
        })
    };
    let inputs: Vec<String> = fs::read_dir(&hour_dir)
        .expect("dir")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(inputs.len(), 6);
    let config = test_config(dir.path());
    let properties =
        Box::new(move || crate::writer::writer_properties(&config, Dataset::Spreads, "file"));
    let outcome = compaction::compact_hour(
        &hour_dir,
        &inputs,
        &root.join("_staging/compact-test"),
        "compacted-test.parquet",
        &Dataset::Spreads.schema(),
        properties,
        100,
        2,
    )
    .expect("compacts");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().expect("reader thread") > 0);
    assert_eq!(outcome.rows as usize, fed);
    assert!(
        !root.join("_staging/compact-test").exists(),
        "work directory removed"
    );
    let files = data_files(&root, Dataset::Spreads);
    assert_eq!(files.len(), 1);
    let keys = spread_keys(&read_file(&files[0]));
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), fed);
}

#[test]
fn a_failed_compaction_leaves_the_hour_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_hours(dir.path(), &[0]);
    let hour_dir = dir.path().join("quotes/date=2024-01-01/hour=00");
    let inputs: Vec<String> = fs::read_dir(&hour_dir)
        .expect("dir")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let config = test_config(dir.path());
    let properties =
        Box::new(move || crate::writer::writer_properties(&config, Dataset::Spreads, "file"));
    // Quotes have no spread key columns: the merge fails before any swap.
    let result = compaction::compact_hour(
        &hour_dir,
        &inputs,
        &dir.path().join("_staging/compact-x"),
        "compacted-x.parquet",
        &Dataset::Spreads.schema(),
        properties,
        100,
        4,
    );
    assert!(result.is_err());
    assert_eq!(data_files(dir.path(), Dataset::Quotes).len(), 1);
    assert_eq!(rows(&read_dataset(dir.path(), Dataset::Quotes)), 1);
    assert!(!dir.path().join("_staging/compact-x").exists());
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_path_component_that_is_a_file_is_a_fault_that_clears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("blocker");
    fs::write(&blocker, b"not a directory").expect("write");
    let root = blocker.join("history");
    let (host, logs) = test_host();
    let mut sink = ParquetSink::start(host, test_config(&root)).expect("sink starts");
    let shared = sink.shared().clone();
    // The memory bound: rows (half of 16 MiB = 8 MiB) fill up while the writer cannot write;
    // beyond that records are dropped and counted, never buffered without bound.
    let quotes: Vec<Quote> = (0..50_000)
        .map(|index| quote(index, T0_NS + index))
        .collect();
    for _ in 0..4 {
        sink.on_batch(Batch::Quotes(&quotes))
            .expect("on_batch never fails");
        assert!(sink.rows_bytes() <= sink.config.budget().rows_bytes);
    }
    let received = 200_000u64;
    let dropped = shared
        .dataset(Dataset::Quotes)
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "the bound was reached and drops counted");
    wait_until("errors counted", || {
        shared.errors.load(std::sync::atomic::Ordering::Relaxed) > 0
    });
    // Fix the fault: writing resumes and everything kept is written.
    fs::remove_file(&blocker).expect("remove");
    sink.close();
    let written = shared
        .dataset(Dataset::Quotes)
        .written
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(written + dropped, received);
    assert_eq!(rows(&read_dataset(&root, Dataset::Quotes)) as u64, written);
    assert!(written > 0);
    // Many failed attempts, one error line for the burst, one line when writing resumed.
    assert!(shared.errors.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(logs.lines_containing("write failed"), 1);
    assert_eq!(logs.lines_containing("writing resumed"), 1);
    assert_eq!(
        logs.lines_containing("parquet sink closed: quotes received=200000"),
        1
    );
}

#[test]
fn directories_removed_while_writing_are_made_again_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = start(test_config(dir.path()));
    sink.on_batch(Batch::Quotes(&[quote(0, T0_NS)]))
        .expect("on_batch");
    sink.commit(Some(Duration::from_secs(10)));
    // A file is open in staging; remove the dataset tree and the staging directory under it.
    sink.on_batch(Batch::Quotes(&[quote(1, T0_NS + 1)]))
        .expect("on_batch");
    sink.hand_off_all(true);
    wait_until("the chunk written", || {
        sink.shared()
            .in_flight_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    });
    fs::remove_dir_all(dir.path().join("quotes")).expect("remove dataset dir");
    fs::remove_dir_all(dir.path().join("_staging")).expect("remove staging");
    sink.on_batch(Batch::Quotes(&[quote(2, T0_NS + 2)]))
        .expect("on_batch");
    sink.close();
    // The first file went with the removed directory; the open one and the next are written.
    assert_eq!(rows(&read_dataset(dir.path(), Dataset::Quotes)), 2);
    assert_eq!(sink.stats().records_dropped, 0);
}

#[test]
fn spread_resolution_keeps_every_nth_bucket_and_wide_spreads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ParquetConfig {
        spreads_every_n_buckets: 10,
        spreads_keep_above_bp: Some(50.0),
        ..test_config(dir.path())
    };
    let mut sink = start(config);
    let mut samples: Vec<SpreadSample> = (0..100)
        .map(|bucket| SpreadSample {
            max_bp: 2.0,
            ..spread(1, 0, 1, bucket)
        })
        .collect();
    samples[15].max_bp = 80.0;
    sink.on_batch(Batch::Spreads(&samples)).expect("on_batch");
    sink.close();
    let counters = sink.shared().dataset(Dataset::Spreads);
    assert_eq!(
        counters.filtered.load(std::sync::atomic::Ordering::Relaxed),
        89
    );
    assert_eq!(
        counters.written.load(std::sync::atomic::Ordering::Relaxed),
        11
    );
    let buckets: Vec<i64> = spread_keys(&read_dataset(dir.path(), Dataset::Spreads))
        .iter()
        .map(|key| (key.3 - T0_NS) / 1_000_000_000)
        .collect();
    assert_eq!(buckets, vec![0, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90]);
}

#[test]
fn disabled_datasets_write_nothing_and_the_shutdown_flush_commits_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ParquetConfig {
        datasets: vec!["quotes".into()],
        ..test_config(dir.path())
    };
    let mut sink = start(config);
    sink.on_batch(Batch::Quotes(&[quote(0, T0_NS)]))
        .expect("on_batch");
    sink.on_batch(Batch::Gaps(&[GapEvent::default()]))
        .expect("on_batch");
    // The host's pattern: flush after the delivery, then at shutdown flush, stats, destroy.
    sink.flush().expect("flush");
    assert_eq!(
        sink.stats().records_written,
        0,
        "an ordinary flush does not commit"
    );
    sink.flush().expect("flush");
    assert_eq!(
        sink.stats().records_written,
        1,
        "the shutdown flush committed"
    );
    assert!(!dir.path().join("gaps").exists());
    sink.close();
}

#[test]
fn the_shutdown_flush_waits_until_a_backlog_is_written_so_the_stats_are_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ParquetConfig {
        memory_bound_mib: 256,
        row_group_rows: 8_192,
        // The contract under test is "wait until written", not the default's size.
        flush_timeout_ms: 120_000,
        ..test_config(dir.path())
    };
    let mut sink = start(config);
    // Offered far faster than the writer encodes them (a copy per record against column
    // conversion, statistics and zstd), in the host's batch size, over two hours: a backlog of
    // chunks in flight when the shutdown flush comes.
    let quotes: Vec<Quote> = noisy_quotes(150_000)
        .into_iter()
        .enumerate()
        .map(|(index, mut quote)| {
            quote.ts_recv_ns = T0_NS + (index as i64 % 2) * HOUR_NS + index as i64;
            quote
        })
        .collect();
    let spreads: Vec<SpreadSample> = (0..50_000i64)
        .map(|index| spread((index % 3) as u32, 0, 1, index % 3_000))
        .collect();
    for (quotes, spreads) in quotes.chunks(256).zip(spreads.chunks(256).cycle()) {
        sink.on_batch(Batch::Quotes(quotes)).expect("on_batch");
        sink.on_batch(Batch::Spreads(spreads)).expect("on_batch");
    }
    let shared = sink.shared().clone();
    let received =
        |dataset: Dataset| crate::stats::SharedStats::get(&shared.dataset(dataset).received);
    let spreads_received = received(Dataset::Spreads);
    assert_eq!(received(Dataset::Quotes), 150_000);
    // The host's shutdown: a flush after the last delivery, the final flush, then stats.
    sink.flush().expect("flush");
    sink.flush().expect("flush");
    let stats = sink.stats();
    assert_eq!(stats.records_dropped, 0);
    assert_eq!(stats.records_written, 150_000 + spreads_received);
    for dataset in [Dataset::Quotes, Dataset::Spreads] {
        let counters = shared.dataset(dataset);
        assert_eq!(
            crate::stats::SharedStats::get(&counters.written),
            received(dataset),
            "{}",
            dataset.name()
        );
    }
    assert_eq!(
        sink.rows_bytes(),
        0,
        "nothing held after the shutdown flush"
    );
    // The files hold exactly what the stats say, before destroy.
    assert_eq!(rows(&read_dataset(dir.path(), Dataset::Quotes)), 150_000);
    assert_eq!(
        rows(&read_dataset(dir.path(), Dataset::Spreads)) as u64,
        spreads_received
    );
    sink.close();
    assert_eq!(sink.stats().records_written, stats.records_written);
}

#[test]
fn memory_bound_is_stated_from_the_config() {
    assert_eq!(
        <ParquetSink as Sink>::memory_bound_bytes(&ParquetConfig::default()).expect("valid"),
        Some(64 << 20)
    );
    let invalid = ParquetConfig {
        zstd_level: 0,
        ..ParquetConfig::default()
    };
    assert!(<ParquetSink as Sink>::memory_bound_bytes(&invalid).is_err());
}

#[test]
fn gap_and_opportunity_kind_names_match_the_sdk_constants() {
    use tickflow_formats::schema::{gap_kind_name, opportunity_kind_name};
    assert_eq!(gap_kind_name(GAP_DISCONNECT), "disconnect");
    assert_eq!(gap_kind_name(GAP_RECONNECT), "reconnect");
    assert_eq!(gap_kind_name(GAP_QUOTE_WITHDRAWN), "quote_withdrawn");
    assert_eq!(gap_kind_name(GAP_SYMBOL_RETIRED), "symbol_retired");
    assert_eq!(opportunity_kind_name(OPPORTUNITY_START), "start");
    assert_eq!(opportunity_kind_name(OPPORTUNITY_END), "end");
}

/// Set (to a root directory) in the child process of the `EFBIG` test.
const EFBIG_CHILD_ENV: &str = "TICKFLOW_PARQUET_EFBIG_CHILD_ROOT";
const EFBIG_CHILD_DONE: &str = "efbig child: all checks passed";

#[test]
fn a_file_size_limit_efbig_is_counted_and_writing_resumes() {
    // RLIMIT_FSIZE is per process: the fault runs in a child process (this test binary again,
    // running only `efbig_child`), so no other test sees the limit.
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "tests::efbig_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EFBIG_CHILD_ENV, dir.path())
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(EFBIG_CHILD_DONE),
        "child failed: {stdout}\n{stderr}"
    );
}

/// The body of the test above; does nothing unless run as its child.
#[test]
fn efbig_child() {
    let Some(root) = std::env::var_os(EFBIG_CHILD_ENV) else {
        return;
    };
    let root = PathBuf::from(root);
    // SAFETY: ignoring a signal has no memory effects; without it the kernel kills the process
    // at the limit instead of failing the write with EFBIG.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let mut original = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `original` is a valid rlimit to fill.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut original) },
        0
    );
    let limited = libc::rlimit {
        rlim_cur: 256 * 1024,
        rlim_max: original.rlim_max,
    };
    // SAFETY: a valid rlimit; lowering the soft limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limited) }, 0);

    let mut sink = start(test_config(&root));
    let shared = sink.shared().clone();
    let quotes = noisy_quotes(30_000);
    for chunk in quotes.chunks(2_048) {
        sink.on_batch(Batch::Quotes(chunk))
            .expect("on_batch never fails");
    }
    sink.hand_off_all(true);
    wait_until("an EFBIG counted", || {
        shared.errors.load(std::sync::atomic::Ordering::Relaxed) > 0
    });
    // SAFETY: a valid rlimit, at most the hard limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &original) }, 0);
    let more = noisy_quotes(5_000);
    sink.on_batch(Batch::Quotes(&more)).expect("on_batch");
    sink.close();

    let counters = shared.dataset(Dataset::Quotes);
    let written = counters.written.load(std::sync::atomic::Ordering::Relaxed);
    let dropped = counters.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dropped > 0,
        "rows of files abandoned at the limit are counted"
    );
    assert_eq!(written + dropped, 35_000);
    assert!(
        written >= 5_000,
        "writing resumed once the limit was lifted"
    );
    // Every visible file is valid and together they hold exactly the rows counted as written.
    assert_eq!(rows(&read_dataset(&root, Dataset::Quotes)) as u64, written);
    println!("{EFBIG_CHILD_DONE}");
}

#[test]
fn a_backlog_of_closed_hours_is_compacted_one_after_another_without_waiting_for_a_pass() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Arc::new(test_config(dir.path()));
    let shared = Arc::new(crate::stats::SharedStats::default());
    let mut writer =
        crate::writer::Writer::new(HostHandle::detached(), config, shared.clone(), None);
    let hours = 3i64;
    for hour in 0..hours {
        for round in 0..2i64 {
            let samples: Vec<SpreadSample> = (0..500i64)
                .map(|index| spread((index % 7) as u32, 0, 1, hour * 3_600 + index + round))
                .collect();
            writer.handle(crate::writer::Job::Chunk(crate::writer::Chunk {
                dataset: Dataset::Spreads,
                hour: HourPartition::of_ns(T0_NS + hour * HOUR_NS),
                bytes: 0,
                rows: crate::convert::Rows::Spreads(samples),
            }));
            writer.handle(crate::writer::Job::Commit { reply: None });
        }
    }
    assert_eq!(data_files(dir.path(), Dataset::Spreads).len(), 6);
    // One pass starts the oldest hour; each one swapped in starts the next, in slices, with no
    // further pass.
    writer.housekeeping(T0_NS + (hours + 1) * HOUR_NS);
    for _ in 0..1_000 {
        writer.compaction_step(256);
    }
    let files = data_files(dir.path(), Dataset::Spreads);
    assert_eq!(files.len(), hours as usize, "{files:?}");
    assert!(files.iter().all(|path| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("compacted-"))
    }));
    assert_eq!(rows(&read_dataset(dir.path(), Dataset::Spreads)), 3_000);
    assert_eq!(
        shared
            .hours_compacted
            .load(std::sync::atomic::Ordering::Relaxed),
        hours as u64
    );
    writer.finish();
}

#[test]
fn a_late_file_during_a_compaction_aborts_it_and_nothing_is_lost() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Arc::new(test_config(dir.path()));
    let shared = Arc::new(crate::stats::SharedStats::default());
    let mut writer =
        crate::writer::Writer::new(HostHandle::detached(), config, shared.clone(), None);
    let hour = HourPartition::of_ns(T0_NS);
    let chunk = |samples: Vec<SpreadSample>| {
        crate::writer::Job::Chunk(crate::writer::Chunk {
            dataset: Dataset::Spreads,
            hour,
            bytes: 0,
            rows: crate::convert::Rows::Spreads(samples),
        })
    };
    for round in 0..3i64 {
        let samples = (0..2_000i64)
            .map(|index| spread((index % 17) as u32, 0, 1, index / 4 + round * 600))
            .collect();
        writer.handle(chunk(samples));
        writer.handle(crate::writer::Job::Commit { reply: None });
    }
    assert_eq!(data_files(dir.path(), Dataset::Spreads).len(), 3);
    // Start a compaction and advance it part of the way.
    writer.housekeeping(T0_NS + 2 * HOUR_NS);
    writer.compaction_step(1_000);
    assert_eq!(data_files(dir.path(), Dataset::Spreads).len(), 3);
    // A late row for the hour is committed: the compaction in progress is abandoned.
    writer.handle(chunk(vec![spread(99, 0, 1, 5)]));
    writer.handle(crate::writer::Job::Commit { reply: None });
    writer.compaction_step(usize::MAX);
    assert_eq!(data_files(dir.path(), Dataset::Spreads).len(), 4);
    assert_eq!(rows(&read_dataset(dir.path(), Dataset::Spreads)), 6_001);
    // The next pass compacts all four files.
    writer.handle(crate::writer::Job::Housekeeping {
        now_ns: T0_NS + 2 * HOUR_NS,
    });
    let files = data_files(dir.path(), Dataset::Spreads);
    assert_eq!(files.len(), 1);
    assert_eq!(rows(&read_file(&files[0])), 6_001);
    assert_eq!(
        shared
            .hours_compacted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    writer.finish();
    // Nothing left in the staging area.
    assert_eq!(
        fs::read_dir(dir.path().join("_staging"))
            .expect("staging")
            .count(),
        0
    );
}
