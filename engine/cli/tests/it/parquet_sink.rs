//! The Parquet sink plugin (`plugins/parquet`, the real cdylib) through the real engine host and
//! the real `tickflow` binary: every dataset round-trips through the host and reads back exactly
//! with pyarrow, polars and DuckDB (hive partitioning over the whole tree); a SIGKILL mid-write
//! leaves only valid files and loses nothing flushed before it; a SIGTERM under load writes every
//! record the sink received (the host's figures, read before destroy, are exact); `tickflow demo`
//! writes its history where it says.
//!
//! The Python side is `plugins/parquet/tests/read_tree.py` (pinned readers installed by
//! `.ci/run`); a missing reader library fails the test with its name, it is never skipped. The
//! tests live here, not in the plugin crate, because a plugin may not depend on the engine, not
//! even for its tests (engine/cli/tests/it/layering.rs).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickflow_core::outbound::{OutRecord, Outbound};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_host::{SinkConfig, SinkHost};
use tickflow_sdk::records::{
    FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, GAP_DISCONNECT, GAP_QUOTE_WITHDRAWN, GAP_RECONNECT,
    GAP_SYMBOL_RETIRED, GapEvent, OPPORTUNITY_END, OPPORTUNITY_FLAG_NET, OPPORTUNITY_START,
    OpportunityEvent, Quote, SPREAD_FLAG_WARMING, SpreadSample, SymbolId, Trade,
};
use tickflow_sim::{SimConfig, SimVenues};

use super::sink_budget::built_plugin;

const DATASETS: [&str; 5] = ["quotes", "trades", "spreads", "opportunities", "gaps"];
const READERS: [&str; 3] = ["pyarrow", "polars", "duckdb"];
/// Longest any awaited condition may take before the test fails (a state is awaited, never a
/// duration).
const DEADLINE: Duration = Duration::from_secs(60);

fn parquet_plugin() -> PathBuf {
    built_plugin("tickflow-parquet", "tickflow_parquet")
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root")
        .to_path_buf()
}

fn read_tree_script() -> PathBuf {
    workspace_dir().join("plugins/parquet/tests/read_tree.py")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("parquet-sink-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

/// The plugin's `[sinks.config]` (keys of plugins/parquet/README.md) writing under `root`: every
/// spread sample kept, no retention (the records are from 2023), files committed every second
/// so they become visible while the tests run; `extra` adds keys (no tables: the text also goes
/// under `[sinks.config]` of an engine config).
fn plugin_config_toml(root: &Path, extra: &str) -> String {
    format!(
        "root = {:?}\nzstd_level = 1\nroll_age_s = 1\nspreads_every_n_buckets = 1\n\
         retention = {{ quotes = {{}}, trades = {{}}, spreads = {{}}, opportunities = {{}}, gaps = {{}} }}\n{extra}",
        root.display().to_string()
    )
}

/// Runs `read_tree.py` with `args`; a failure (a missing reader library included) fails the test
/// with the script's message.
fn run_read_tree(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let output = Command::new("python3")
        .arg(read_tree_script())
        .args(args)
        .output()
        .expect("python3 runs (Python 3.11 is part of the CI machine)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "read_tree.py failed (exit {:?}); the readers are installed, pinned, by .ci/run:\n{stderr}",
        output.status.code()
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "read_tree.py printed no JSON ({error}):\n{}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Every reader's view of `datasets` under `root`.
fn read_with_every_reader(root: &Path, datasets: &[&str], counts_only: bool) -> serde_json::Value {
    let datasets = datasets.join(",");
    let readers = READERS.join(",");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        root.as_os_str(),
        datasets.as_ref(),
        "--readers".as_ref(),
        readers.as_ref(),
    ];
    if counts_only {
        args.push("--counts-only".as_ref());
    }
    run_read_tree(&args)
}

/// One visible `.parquet` file, read whole with pyarrow.
#[derive(Debug)]
struct VisibleFile {
    path: String,
    rows: Option<u64>,
    error: Option<String>,
}

/// Every `.parquet` file under `root`, each opened and read whole.
fn visible_files(root: &Path) -> Vec<VisibleFile> {
    let report = run_read_tree(&["--files".as_ref(), root.as_os_str()]);
    report["files"]
        .as_array()
        .expect("files is a list")
        .iter()
        .map(|file| VisibleFile {
            path: file["path"].as_str().unwrap_or_default().to_string(),
            rows: file["rows"].as_u64(),
            error: file["error"].as_str().map(str::to_string),
        })
        .collect()
}

/// Rows in valid visible files per dataset (the first path component under `root`).
fn rows_per_dataset(root: &Path, files: &[VisibleFile]) -> BTreeMap<String, u64> {
    let mut rows = BTreeMap::new();
    for file in files {
        let dataset = Path::new(&file.path)
            .strip_prefix(root)
            .ok()
            .and_then(|relative| relative.components().next())
            .map(|component| component.as_os_str().to_string_lossy().to_string())
            .unwrap_or_default();
        *rows.entry(dataset).or_insert(0) += file.rows.unwrap_or(0);
    }
    rows
}

fn assert_all_valid(files: &[VisibleFile], when: &str) {
    let invalid: Vec<String> = files
        .iter()
        .filter(|file| file.error.is_some())
        .map(|file| format!("{}: {}", file.path, file.error.as_deref().unwrap_or("")))
        .collect();
    assert!(
        invalid.is_empty(),
        "{when}: invalid visible files:\n{}",
        invalid.join("\n")
    );
}

// ---------- records and their expected rows ----------

struct Universe {
    registry: Arc<SymbolRegistry>,
    symbols: Vec<(SymbolId, &'static str)>,
}

fn universe() -> Universe {
    let registry = Arc::new(SymbolRegistry::new(16));
    let symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDC"]
        .into_iter()
        .map(|name| (registry.register(name).expect("valid symbol"), name))
        .collect();
    Universe { registry, symbols }
}

/// 2023-11-14 22:13:20 UTC: records spread over this hour and the one two hours later (00:13 of
/// the next UTC day), with late records back in the first hour.
const BASE_NS: i64 = 1_700_000_000_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

/// Distinct records of every kind with every optional field both present and absent: quotes
/// with and without exchange time and sequence, trades with text ids (up to the full 23 bytes)
/// and packed UUIDs, spread samples warming (NaN-free: bands absent) and warm, opportunities
/// gross and net, gaps of every kind. Times cross an hour and a day boundary.
fn records(universe: &Universe, count: usize) -> Vec<OutRecord> {
    (0..count)
        .map(|index| {
            let (symbol_id, _) = universe.symbols[index % universe.symbols.len()];
            let venue_id = Venue::ALL[index % Venue::ALL.len()].id();
            let other_venue_id = Venue::ALL[(index + 3) % Venue::ALL.len()].id();
            let step = index as f64;
            // Half at 22:xx, half at 00:xx the next day, the last record of each 50 back at
            // 22:xx (late).
            let hour = if index % 50 == 49 {
                0
            } else {
                2 * (index * 2 / count) as i64
            };
            let at = BASE_NS + hour * HOUR_NS + index as i64 * 1_000_003;
            match index % 8 {
                0..=2 => OutRecord::Quote(Quote {
                    bid: 100.0 + step * 0.25,
                    bid_qty: 0.1 + step,
                    ask: 100.5 + step * 0.25,
                    ask_qty: 3.0,
                    ts_exchange_ns: at - 500,
                    ts_recv_ns: at,
                    seq: 10_000 + index as u64,
                    symbol_id,
                    venue_id,
                    flags: match index % 3 {
                        0 => FLAG_HAS_TS_EXCHANGE | FLAG_HAS_SEQ,
                        1 => FLAG_HAS_SEQ,
                        _ => 0,
                    },
                    reserved: 0,
                }),
                3 => {
                    let mut trade = Trade {
                        price: 200.0 + step,
                        qty: 0.001 * (step + 1.0),
                        ts_exchange_ns: at - 1_000,
                        ts_recv_ns: at,
                        symbol_id,
                        venue_id,
                        side: (index % 3) as u8,
                        flags: if index % 2 == 0 {
                            FLAG_HAS_TS_EXCHANGE
                        } else {
                            0
                        },
                        ..Trade::default()
                    };
                    let trade_id = match index % 3 {
                        0 => format!("T{index}"),
                        1 => format!("{index:Z>23}"),
                        _ => format!("{index:08x}-1234-4abc-8def-{:012x}", index * 7919),
                    };
                    assert!(trade.set_trade_id(trade_id.as_bytes()), "{trade_id}");
                    OutRecord::Trade(trade)
                }
                4 | 5 => {
                    let warming = index % 4 == 0;
                    OutRecord::Spread(SpreadSample {
                        bucket_start_ns: at,
                        bucket_duration_ns: 1_000_000_000,
                        last_bp: 1.5 + step * 0.01,
                        min_bp: -0.25 - step,
                        max_bp: 7.125 + step,
                        mean_bp: step / 3.0,
                        window_mean_bp: if warming { f64::NAN } else { step / 7.0 },
                        window_std_bp: if warming { f64::NAN } else { 0.1 + step / 11.0 },
                        band_lower_bp: if warming { f64::NAN } else { -step / 13.0 },
                        band_upper_bp: if warming { f64::NAN } else { step / 17.0 },
                        samples: index as u32 + 1,
                        symbol_id,
                        buy_venue_id: venue_id,
                        sell_venue_id: other_venue_id,
                        flags: if warming { SPREAD_FLAG_WARMING } else { 0 },
                    })
                }
                6 => OutRecord::Opportunity(OpportunityEvent {
                    ts_ns: at,
                    started_ns: at - 500_000,
                    threshold_bp: 5.0,
                    spread_bp: 5.0 + step / 19.0,
                    peak_bp: 6.0 + step / 23.0,
                    symbol_id,
                    buy_venue_id: venue_id,
                    sell_venue_id: other_venue_id,
                    kind: if index % 2 == 0 {
                        OPPORTUNITY_START
                    } else {
                        OPPORTUNITY_END
                    },
                    flags: if index % 3 == 0 {
                        OPPORTUNITY_FLAG_NET
                    } else {
                        0
                    },
                    reserved: [0; 6],
                }),
                _ => OutRecord::Gap(GapEvent {
                    ts_ns: at,
                    connection_id: index as u32,
                    symbol_id,
                    venue_id,
                    kind: [
                        GAP_DISCONNECT,
                        GAP_RECONNECT,
                        GAP_QUOTE_WITHDRAWN,
                        GAP_SYMBOL_RETIRED,
                    ][index % 4],
                    reserved: [0; 5],
                }),
            }
        })
        .collect()
}

/// A value as read_tree.py prints it.
enum Cell {
    Int(i128),
    Float(f64),
    Text(String),
    Bool(bool),
    Null,
}

impl Cell {
    fn canonical(&self) -> String {
        match self {
            Cell::Int(value) => value.to_string(),
            Cell::Float(value) => format!("f:{}", hex(&value.to_le_bytes())),
            Cell::Text(text) => format!("s:{text}"),
            Cell::Bool(value) => value.to_string(),
            Cell::Null => "null".to_string(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A band or window statistic: absent (null) when NaN.
fn nan_free(value: f64) -> Cell {
    if value.is_nan() {
        Cell::Null
    } else {
        Cell::Float(value)
    }
}

fn gap_kind_name(kind: u8) -> &'static str {
    match kind {
        GAP_DISCONNECT => "disconnect",
        GAP_RECONNECT => "reconnect",
        GAP_QUOTE_WITHDRAWN => "quote_withdrawn",
        GAP_SYMBOL_RETIRED => "symbol_retired",
        _ => "unknown",
    }
}

/// `(dataset, canonical row)` of a record as the plugin must write it (the schema of
/// formats/src/schema.rs, names from the host).
fn expected_row(universe: &Universe, record: &OutRecord) -> (&'static str, String) {
    let symbol = |id: SymbolId| {
        Cell::Text(
            universe
                .symbols
                .iter()
                .find(|(known, _)| *known == id)
                .map(|(_, name)| name.to_string())
                .expect("the record's symbol is registered"),
        )
    };
    let venue = |id: tickflow_sdk::records::VenueId| {
        Cell::Text(
            Venue::from_id(id)
                .map(|venue| venue.name().to_string())
                .expect("a known venue"),
        )
    };
    let (dataset, cells): (&'static str, Vec<(&str, Cell)>) = match record {
        OutRecord::Quote(quote) => (
            "quotes",
            vec![
                ("ts_recv", Cell::Int(quote.ts_recv_ns.into())),
                (
                    "ts_exchange",
                    quote
                        .ts_exchange()
                        .map_or(Cell::Null, |ts| Cell::Int(ts.into())),
                ),
                ("symbol", symbol(quote.symbol_id)),
                ("venue", venue(quote.venue_id)),
                ("bid", Cell::Float(quote.bid)),
                ("bid_qty", Cell::Float(quote.bid_qty)),
                ("ask", Cell::Float(quote.ask)),
                ("ask_qty", Cell::Float(quote.ask_qty)),
                (
                    "seq",
                    quote
                        .sequence()
                        .map_or(Cell::Null, |seq| Cell::Int(seq.into())),
                ),
            ],
        ),
        OutRecord::Trade(trade) => {
            let mut trade_id = String::new();
            trade
                .write_trade_id(&mut trade_id)
                .expect("writing to a String cannot fail");
            (
                "trades",
                vec![
                    ("ts_recv", Cell::Int(trade.ts_recv_ns.into())),
                    (
                        "ts_exchange",
                        trade
                            .ts_exchange()
                            .map_or(Cell::Null, |ts| Cell::Int(ts.into())),
                    ),
                    ("symbol", symbol(trade.symbol_id)),
                    ("venue", venue(trade.venue_id)),
                    ("price", Cell::Float(trade.price)),
                    ("qty", Cell::Float(trade.qty)),
                    ("side", Cell::Text(trade.side().as_str().to_string())),
                    ("trade_id", Cell::Text(trade_id)),
                ],
            )
        }
        OutRecord::Spread(sample) => (
            "spreads",
            vec![
                ("bucket_start", Cell::Int(sample.bucket_start_ns.into())),
                ("symbol", symbol(sample.symbol_id)),
                ("buy_venue", venue(sample.buy_venue_id)),
                ("sell_venue", venue(sample.sell_venue_id)),
                (
                    "bucket_duration_ns",
                    Cell::Int(sample.bucket_duration_ns.into()),
                ),
                ("last_bp", Cell::Float(sample.last_bp)),
                ("min_bp", Cell::Float(sample.min_bp)),
                ("max_bp", Cell::Float(sample.max_bp)),
                ("mean_bp", Cell::Float(sample.mean_bp)),
                ("window_mean_bp", nan_free(sample.window_mean_bp)),
                ("window_std_bp", nan_free(sample.window_std_bp)),
                ("band_lower_bp", nan_free(sample.band_lower_bp)),
                ("band_upper_bp", nan_free(sample.band_upper_bp)),
                ("samples", Cell::Int(sample.samples.into())),
                (
                    "warming",
                    Cell::Bool(sample.flags & SPREAD_FLAG_WARMING != 0),
                ),
            ],
        ),
        OutRecord::Opportunity(event) => (
            "opportunities",
            vec![
                ("ts", Cell::Int(event.ts_ns.into())),
                (
                    "kind",
                    Cell::Text(
                        if event.kind == OPPORTUNITY_START {
                            "start"
                        } else {
                            "end"
                        }
                        .to_string(),
                    ),
                ),
                ("started", Cell::Int(event.started_ns.into())),
                ("symbol", symbol(event.symbol_id)),
                ("buy_venue", venue(event.buy_venue_id)),
                ("sell_venue", venue(event.sell_venue_id)),
                ("threshold_bp", Cell::Float(event.threshold_bp)),
                ("spread_bp", Cell::Float(event.spread_bp)),
                ("peak_bp", Cell::Float(event.peak_bp)),
                ("net", Cell::Bool(event.flags & OPPORTUNITY_FLAG_NET != 0)),
            ],
        ),
        OutRecord::Gap(gap) => (
            "gaps",
            vec![
                ("ts", Cell::Int(gap.ts_ns.into())),
                ("kind", Cell::Text(gap_kind_name(gap.kind).to_string())),
                ("symbol", symbol(gap.symbol_id)),
                ("venue", venue(gap.venue_id)),
                ("connection_id", Cell::Int(gap.connection_id.into())),
            ],
        ),
    };
    let mut cells: Vec<(String, String)> = cells
        .into_iter()
        .map(|(name, cell)| (name.to_string(), cell.canonical()))
        .collect();
    cells.sort();
    let row = cells
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("|");
    (dataset, row)
}

fn multiset<'a>(rows: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row).or_insert(0) += 1;
    }
    counts
}

/// Rows of one side not in the other (with multiplicity), at most `limit` of each.
fn difference<'a>(
    left: &BTreeMap<&'a str, usize>,
    right: &BTreeMap<&'a str, usize>,
    limit: usize,
) -> Vec<&'a str> {
    left.iter()
        .filter(|(row, count)| right.get(*row).copied().unwrap_or(0) < **count)
        .map(|(row, _)| *row)
        .take(limit)
        .collect()
}

fn feed(outbounds: &mut [tickflow_host::SinkOutbound], records: &[OutRecord], chunk: usize) {
    for (chunk_index, chunk) in records.chunks(chunk).enumerate() {
        let outbound = &mut outbounds[chunk_index % outbounds.len()];
        for record in chunk {
            outbound.emit(record);
        }
        outbound.flush();
    }
}

// ---------- round trip through the host, read by pyarrow, polars and DuckDB ----------

#[test]
fn every_dataset_round_trips_through_the_host_and_reads_back_exactly_in_three_readers() {
    let plugin = parquet_plugin();
    let dir = scratch_dir("round-trip");
    let root = dir.join("history");
    let universe = universe();
    let records = records(&universe, 4_000);
    let mut sink = SinkConfig::new("history", &plugin);
    // Lanes large enough that nothing is dropped: the test is about what the plugin writes.
    sink.ring_capacity_records = 8_192;
    sink.config = toml::from_str(&plugin_config_toml(&root, "")).expect("plugin config is TOML");
    let mut host = SinkHost::start(&[sink], 2, Some(Arc::clone(&universe.registry)))
        .expect("the parquet plugin starts");
    let mut outbounds = host.take_sink_outbounds();
    feed(&mut outbounds, &records, 100);
    drop(outbounds);
    let stats = host.shutdown();
    let stats = &stats[0];
    assert_eq!(stats.lost(), 0, "{stats:?}");
    assert_eq!(stats.delivered, records.len() as u64, "{stats:?}");
    assert_eq!(
        stats.plugin_records_written,
        records.len() as u64,
        "{stats:?}"
    );
    assert_eq!(stats.plugin_records_dropped, 0, "{stats:?}");

    let files = visible_files(&root);
    assert!(!files.is_empty(), "no files under {}", root.display());
    assert_all_valid(&files, "after shutdown");
    // Partitions by each record's own hour: both hours and both days are there.
    for partition in ["date=2023-11-14/hour=22", "date=2023-11-15/hour=00"] {
        assert!(
            files.iter().any(|file| file.path.contains(partition)),
            "no file in {partition}: {files:?}"
        );
    }

    let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for record in &records {
        let (dataset, row) = expected_row(&universe, record);
        expected.entry(dataset).or_default().push(row);
    }
    let read = read_with_every_reader(&root, &DATASETS, false);
    for reader in READERS {
        for dataset in DATASETS {
            let view = &read[reader][dataset];
            let rows: Vec<&str> = view["rows"]
                .as_array()
                .unwrap_or_else(|| panic!("{reader} {dataset}: no rows in {view}"))
                .iter()
                .filter_map(|row| row.as_str())
                .collect();
            let want = expected.get(dataset).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(
                view["count"].as_u64(),
                Some(want.len() as u64),
                "{reader} {dataset}: row count"
            );
            let got = multiset(rows.iter().copied());
            let wanted = multiset(want.iter().map(String::as_str));
            assert!(
                got == wanted,
                "{reader} {dataset}: rows differ\nmissing (first 3): {:#?}\nunexpected (first 3): {:#?}",
                difference(&wanted, &got, 3),
                difference(&got, &wanted, 3)
            );
        }
    }
}

#[test]
fn the_reader_script_fails_naming_a_missing_library_instead_of_skipping() {
    // `-I -S`: no site-packages, so no pyarrow, polars or duckdb: the script must fail, naming
    // them, never pass with a reader left out.
    let dir = scratch_dir("missing-readers");
    let output = Command::new("python3")
        .args(["-I", "-S"])
        .arg(read_tree_script())
        .arg(&dir)
        .arg("quotes")
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for library in READERS {
        assert!(stderr.contains(library), "{stderr}");
    }
    assert!(stderr.contains(".ci/run"), "{stderr}");
}

// ---------- the engine binary: SIGKILL mid-write, SIGTERM under load ----------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

async fn start_sims(bbo_per_s_per_symbol: f64) -> SimVenues {
    SimVenues::start(SimConfig {
        venues: Venue::ALL.to_vec(),
        symbols: vec!["BTC-USDT".into(), "ETH-USDT".into(), "SOL-USDT".into()],
        bbo_per_s_per_symbol,
        trades_per_s_per_symbol: bbo_per_s_per_symbol / 10.0,
        tick_ms: 5,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A `tickflow run` config against `sim` with the parquet sink writing under `root`.
fn run_config_toml(sim: &SimVenues, plugin: &Path, root: &Path) -> String {
    let quoted: Vec<String> = sim
        .config()
        .symbols
        .iter()
        .map(|symbol| format!("\"{symbol}\""))
        .collect();
    let mut text = format!(
        "[engine]\nshards = 1\nmax_symbols = 64\nmax_connection_slots = 16\nring_capacity_records = 8192\n\
         [windows]\nbucket_ms = 100\nbuckets = 10\nmax_windows = 1000\nsnapshot_interval_ms = 100\n\
         [feeds]\nsymbols = [{}]\nchannels = [\"bbo\", \"trades\"]\nstats_interval_ms = 100\nshutdown_deadline_ms = 2000\n",
        quoted.join(", ")
    );
    for venue in Venue::ALL {
        text.push_str(&format!("[feeds.venue.{}]\n", venue.name()));
        if venue == Venue::Kucoin {
            text.push_str(&format!(
                "bullet_url = \"{}\"\n",
                sim.bullet_url().expect("kucoin is simulated")
            ));
        } else {
            text.push_str(&format!(
                "url = \"{}\"\n",
                sim.url(venue).expect("venue is simulated")
            ));
        }
    }
    text.push_str(&format!(
        "[[sinks]]\nname = \"history\"\npath = {:?}\nring_capacity_records = 65536\nshutdown_deadline_ms = 20000\n[sinks.config]\n{}",
        plugin.display().to_string(),
        plugin_config_toml(root, "")
    ));
    text
}

/// Stderr lines of the engine held for the test at most.
const STDERR_LINES_CAPACITY: usize = 65_536;

/// A running `tickflow run` whose stderr is followed by one owned thread (joined on drop).
struct Engine {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every stderr line seen so far.
    seen: Vec<String>,
}

impl Engine {
    fn start(config_path: &Path) -> Engine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(["run", "--config"])
            .arg(config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // The host's "sink stopped" line (tickflow_host) and the plugin's own "parquet sink
            // closed" line with its per-dataset counters (tickflow::plugin) are info lines.
            .env("RUST_LOG", "error,tickflow_host=info,tickflow::plugin=info")
            .env("NO_COLOR", "1")
            .spawn()
            .expect("tickflow starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        // Bounded: the tests run seconds, the engine prints a stats line every 100 ms. A full
        // channel only holds the reader back (the engine then waits on its stderr pipe).
        let (sender, lines) = std::sync::mpsc::sync_channel(STDERR_LINES_CAPACITY);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Engine {
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits for a `tickflow-stats` line satisfying `condition`.
    fn wait_stats(&mut self, what: &str, condition: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(remaining).unwrap_or_else(|_| {
                panic!(
                    "the engine did not reach {what}; its stderr:\n{}",
                    self.seen.join("\n")
                )
            });
            self.seen.push(line.clone());
            if let Some(json) = line.strip_prefix("tickflow-stats ") {
                let stats: serde_json::Value =
                    serde_json::from_str(json).expect("the stats line is JSON");
                if condition(&stats) {
                    return;
                }
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit and returns its code and every stderr line.
    fn wait(mut self) -> (Option<i32>, Vec<String>) {
        let status = self.child.wait().expect("tickflow exits");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut seen = std::mem::take(&mut self.seen);
        seen.extend(self.lines.try_iter());
        (status.code(), seen)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
    }
}

/// `key=value` of a tracing line's fields.
fn field(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Every file under `root`, at any depth.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn polls_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_mid_write_leaves_only_valid_files_and_a_restart_loses_nothing_flushed() {
    let plugin = parquet_plugin();
    let runtime = runtime();
    let sim = runtime.block_on(start_sims(500.0));
    let dir = scratch_dir("sigkill");
    let root = dir.join("history");
    let config_path = dir.join("run.toml");
    std::fs::write(&config_path, run_config_toml(&sim, &plugin, &root)).expect("config written");

    let mut engine = Engine::start(&config_path);
    engine.wait_stats("8 connections and quotes", |stats| {
        stats["connected"] == 8 && stats["quotes"].as_u64().unwrap_or(0) > 500
    });
    // Files roll every roll_age_ms: wait until some are visible, so the kill lands mid-write
    // with committed files behind it.
    polls_until("visible quote files", || {
        visible_files(&root)
            .iter()
            .filter(|file| file.path.contains("/quotes/"))
            .count()
            >= 3
    });
    let before = visible_files(&root);
    assert_all_valid(&before, "before the kill");
    let rows_before = rows_per_dataset(&root, &before);
    engine.signal("KILL");
    let (code, _) = engine.wait();
    assert_eq!(code, None, "killed by a signal");

    let after_kill = visible_files(&root);
    assert_all_valid(&after_kill, "right after SIGKILL");

    // Restart on the same root: leftovers are cleaned or completed, then a clean stop.
    let mut engine = Engine::start(&config_path);
    engine.wait_stats("8 connections after the restart", |stats| {
        stats["connected"] == 8 && stats["quotes"].as_u64().unwrap_or(0) > 200
    });
    engine.signal("TERM");
    let (code, lines) = engine.wait();
    assert_eq!(code, Some(0), "{}", lines.join("\n"));

    let final_files = visible_files(&root);
    assert_all_valid(&final_files, "after the restart");
    // The restart emptied the staging area of the killed run; the clean stop left nothing.
    let leftovers: Vec<PathBuf> = walk(&root)
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "staging leftovers: {leftovers:?}");
    let rows_after = rows_per_dataset(&root, &final_files);
    for (dataset, rows) in &rows_before {
        let after = rows_after.get(dataset).copied().unwrap_or(0);
        assert!(
            after >= *rows,
            "{dataset}: {rows} rows were committed before the kill, {after} after the restart"
        );
    }
    // The three readers agree with the file count.
    let read = read_with_every_reader(&root, &["quotes", "trades"], true);
    for reader in READERS {
        for dataset in ["quotes", "trades"] {
            assert_eq!(
                read[reader][dataset]["count"].as_u64(),
                rows_after.get(dataset).copied(),
                "{reader} {dataset}"
            );
        }
    }
    runtime.block_on(sim.shutdown());
}

#[test]
fn sigterm_under_load_writes_every_record_the_sink_received() {
    let plugin = parquet_plugin();
    let runtime = runtime();
    let sim = runtime.block_on(start_sims(2_000.0));
    let dir = scratch_dir("sigterm");
    let root = dir.join("history");
    let config_path = dir.join("run.toml");
    std::fs::write(&config_path, run_config_toml(&sim, &plugin, &root)).expect("config written");

    let mut engine = Engine::start(&config_path);
    engine.wait_stats("load", |stats| {
        stats["connected"] == 8 && stats["quotes"].as_u64().unwrap_or(0) > 5_000
    });
    engine.signal("TERM");
    let (code, lines) = engine.wait();
    let log = lines.join("\n");
    assert_eq!(code, Some(0), "{log}");
    let stopped = lines
        .iter()
        .find(|line| line.contains("sink stopped") && line.contains("history"))
        .unwrap_or_else(|| panic!("no \"sink stopped\" line for the sink:\n{log}"));
    let delivered = field(stopped, "delivered").expect("delivered=");
    let written = field(stopped, "plugin_records_written").expect("plugin_records_written=");
    let dropped = field(stopped, "plugin_records_dropped").expect("plugin_records_dropped=");
    assert!(delivered > 5_000, "{stopped}");
    // The host reads the plugin's stats right after its final flush, which waits until the
    // writer has written and committed everything it holds: exact, before destroy.
    assert_eq!(written, delivered, "{stopped}");
    assert_eq!(dropped, 0, "{stopped}");
    assert!(
        !log.contains("did not finish within flush_timeout_ms"),
        "the shutdown flush timed out:\n{log}"
    );

    let files = visible_files(&root);
    assert_all_valid(&files, "after SIGTERM");
    let rows = rows_per_dataset(&root, &files);
    let total: u64 = rows.values().sum();
    assert_eq!(
        total, delivered,
        "rows in the files = records the sink received = rows written by the host's figures: {rows:?}\n{stopped}"
    );
    // Per dataset, from the sink's own closing line: written = received, nothing dropped or
    // filtered (every spread sample is kept), and the files hold exactly the written rows.
    let closed = lines
        .iter()
        .find(|line| line.contains("parquet sink closed:"))
        .unwrap_or_else(|| panic!("no \"parquet sink closed\" line:\n{log}"));
    let summary = &closed[closed.find("parquet sink closed:").unwrap_or(0)..];
    let mut received_total = 0;
    for dataset in DATASETS {
        let Some(start) = summary.find(&format!(" {dataset} received=")) else {
            panic!("{dataset} missing from {summary}");
        };
        let part = summary[start..].split(';').next().unwrap_or_default();
        let received = field(part, "received").expect("received=");
        let written = field(part, "written").expect("written=");
        assert_eq!(written, received, "{dataset}: {part}");
        assert_eq!(field(part, "dropped"), Some(0), "{dataset}: {part}");
        assert_eq!(field(part, "filtered"), Some(0), "{dataset}: {part}");
        assert_eq!(
            rows.get(dataset).copied().unwrap_or(0),
            written,
            "{dataset}: rows in the files = rows written: {part}"
        );
        received_total += received;
    }
    assert_eq!(received_total, delivered, "{summary}\n{stopped}");
    // Per dataset, the three readers see exactly the rows in the files.
    let present: Vec<&str> = DATASETS
        .into_iter()
        .filter(|dataset| rows.contains_key(*dataset))
        .collect();
    let read = read_with_every_reader(&root, &present, true);
    for reader in READERS {
        for dataset in &present {
            assert_eq!(
                read[reader][*dataset]["count"].as_u64(),
                rows.get(*dataset).copied(),
                "{reader} {dataset}"
            );
        }
    }
    runtime.block_on(sim.shutdown());
}

// ---------- `tickflow demo` writes its history ----------

/// Runs `tickflow demo` with `args` in `dir` (its working directory) and returns its stdout.
fn run_demo(dir: &Path, args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .arg("demo")
        .args(["--cut-every-s", "0", "--summary-every-s", "60"])
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("tickflow demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "tickflow demo failed ({:?}):\n{stdout}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn demo_writes_its_history_as_parquet_into_the_directory_it_prints() {
    // The library next to the binary, where `cargo build` puts it (the demo looks there).
    let _plugin = parquet_plugin();
    let dir = scratch_dir("demo");
    let data_dir = dir.join("history here");
    let stdout = run_demo(
        &dir,
        &[
            "--duration-s".as_ref(),
            "5".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ],
    );
    assert!(
        stdout.contains(&format!("under {}", data_dir.display())),
        "the demo prints where its history goes:\n{stdout}"
    );
    let files = visible_files(&data_dir);
    assert_all_valid(&files, "after the demo");
    let rows = rows_per_dataset(&data_dir, &files);
    assert!(
        rows.get("quotes").copied().unwrap_or(0) > 0,
        "quotes under {}: {rows:?}\n{stdout}",
        data_dir.join("quotes").display()
    );
    assert!(
        files.iter().any(|file| file.path.contains("/quotes/date=")),
        "hive partitions: {:?}",
        files.iter().map(|file| &file.path).collect::<Vec<_>>()
    );
    // The demo's closing line counts exactly the rows in the files.
    let closing = stdout
        .lines()
        .find(|line| line.starts_with("history: ") && line.contains("rows written"))
        .unwrap_or_else(|| panic!("no closing history line:\n{stdout}"));
    let written: u64 = closing["history: ".len()..]
        .split(' ')
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no row count in {closing}"));
    assert_eq!(written, rows.values().sum::<u64>(), "{closing}");
    // The three readers open the tree at once.
    let read = read_with_every_reader(&data_dir, &["quotes"], true);
    for reader in READERS {
        assert_eq!(
            read[reader]["quotes"]["count"].as_u64(),
            rows.get("quotes").copied(),
            "{reader}"
        );
    }

    // --no-history: nothing is written, and the demo says nothing about history.
    let elsewhere = dir.join("not-written");
    let stdout = run_demo(
        &dir,
        &[
            "--duration-s".as_ref(),
            "1".as_ref(),
            "--no-history".as_ref(),
            "--data-dir".as_ref(),
            elsewhere.as_os_str(),
        ],
    );
    assert!(!elsewhere.exists(), "{stdout}");
    assert!(!stdout.contains("history"), "{stdout}");
}

// ---------- the stated memory bound in the engine's budget ----------

#[test]
fn check_config_shows_the_bound_the_parquet_plugin_states() {
    let plugin = parquet_plugin();
    let dir = scratch_dir("check-config");
    let config_path = dir.join("tickflow.toml");
    let check = |sink_config: &str| {
        std::fs::write(
            &config_path,
            format!(
                "[[sinks]]\nname = \"history\"\npath = {:?}\n[sinks.config]\n{sink_config}",
                plugin.display().to_string()
            ),
        )
        .expect("scratch is writable");
        Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .arg("check-config")
            .arg(&config_path)
            .output()
            .expect("tickflow runs")
    };
    let root = dir.join("history");
    for (extra, stated) in [("", "64.0 MiB"), ("memory_bound_mib = 128\n", "128.0 MiB")] {
        let output = check(&plugin_config_toml(&root, extra));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("sink history: {stated} (stated by the plugin)")),
            "{stdout}"
        );
    }
    // A config the plugin refuses fails the check, naming the sink's config.
    let output = check(&plugin_config_toml(&root, "memory_bound_mib = 4\n"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sinks[0].config"), "{stderr}");
}
