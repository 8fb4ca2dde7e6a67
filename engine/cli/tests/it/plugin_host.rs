//! Integration tests: the sink plugin host with real plugins. The Rust plugins are built with
//! cargo and the C ones with the system C compiler, into the target directory; the tests drive
//! the host's `Outbound`s directly, exactly as shards do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use tickflow_core::outbound::{OutRecord, Outbound};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_host::{SinkConfig, SinkHost, SinkPolicy, SinkStats, loader};
use tickflow_sdk::records::{
    FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, GAP_DISCONNECT, GapEvent, OPPORTUNITY_END,
    OPPORTUNITY_START, OpportunityEvent, Quote, SpreadSample, SymbolId, Trade, VenueId,
};

// ---------- building the plugins ----------

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root")
        .to_path_buf()
}

/// `<target>/<profile>` of this test binary (`<target>/<profile>/deps/it-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds the workspace's Rust plugins once (cargo is a no-op when they are fresh) and returns
/// the directory holding their shared libraries. A fresh clone's `cargo test --workspace` may run
/// this test before it builds the cdylibs itself, so the test builds them.
fn rust_plugin_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = profile_dir();
        let target_dir = profile_dir
            .parent()
            .expect("<target>/<profile>")
            .to_path_buf();
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command
            .args([
                "build",
                "--quiet",
                "-p",
                "tickflow-example-stdout",
                "-p",
                "tickflow-test-sink",
            ])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(workspace_dir());
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            command.arg("--release");
        }
        let output = command.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "building the plugins failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        profile_dir
    })
}

fn example_stdout_plugin() -> PathBuf {
    rust_plugin_dir().join(format!(
        "{}tickflow_example_stdout{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn test_sink_plugin() -> PathBuf {
    rust_plugin_dir().join(format!(
        "{}tickflow_test_sink{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// A fresh scratch directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("plugin-host-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

/// Compiles `source` (relative to the sdk) into `<dir>/<name>.so` with `defines`.
fn compile_c_plugin(dir: &Path, name: &str, source: &str, defines: &[&str]) -> PathBuf {
    let sdk = workspace_dir().join("sdk");
    let output_path = dir.join(format!("lib{name}.so"));
    let mut command = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    command
        .args(["-std=c11", "-shared", "-fPIC", "-O1", "-Wall"])
        .arg("-I")
        .arg(sdk.join("include"))
        .arg("-o")
        .arg(&output_path)
        .arg(sdk.join(source));
    for define in defines {
        command.arg(format!("-D{define}"));
    }
    let output = command.output().expect("the system C compiler (cc) runs");
    assert!(
        output.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output_path
}

fn c_example_plugin(dir: &Path) -> PathBuf {
    compile_c_plugin(dir, "ndjson_sink", "examples/c/ndjson_sink.c", &[])
}

fn c_fixture(dir: &Path, define: &str) -> PathBuf {
    compile_c_plugin(
        dir,
        &define.to_lowercase(),
        "tests/fixtures/fixture_sink.c",
        &[define],
    )
}

// ---------- records ----------

struct Universe {
    registry: Arc<SymbolRegistry>,
    symbols: Vec<SymbolId>,
}

fn universe() -> Universe {
    let registry = Arc::new(SymbolRegistry::new(16));
    let symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDC"]
        .iter()
        .map(|name| registry.register(name).expect("valid symbol"))
        .collect();
    Universe { registry, symbols }
}

/// Distinct, checkable records of every kind a shard emits: quotes, trades (text ids of every
/// length up to the full 23 bytes, and packed UUIDs), spread samples, opportunity events, gaps.
fn records(universe: &Universe, count: usize) -> Vec<OutRecord> {
    (0..count)
        .map(|index| {
            let symbol_id = universe.symbols[index % universe.symbols.len()];
            let venue_id = Venue::ALL[index % Venue::ALL.len()].id();
            let other_venue_id = Venue::ALL[(index + 3) % Venue::ALL.len()].id();
            let step = index as f64;
            match index % 7 {
                0..=2 => OutRecord::Quote(Quote {
                    bid: 100.0 + step * 0.25,
                    bid_qty: 0.1 + step,
                    ask: 100.5 + step * 0.25,
                    ask_qty: 3.0,
                    ts_exchange_ns: 1_700_000_000_000_000_000 + index as i64,
                    ts_recv_ns: 1_700_000_000_000_000_500 + index as i64,
                    seq: 10_000 + index as u64,
                    symbol_id,
                    venue_id,
                    flags: FLAG_HAS_TS_EXCHANGE | FLAG_HAS_SEQ,
                    reserved: 0,
                }),
                3 => {
                    let mut trade = Trade {
                        price: 200.0 + step,
                        qty: 0.001 * (step + 1.0),
                        ts_exchange_ns: 1_700_000_000_000_001_000 + index as i64,
                        ts_recv_ns: 1_700_000_000_000_002_000 + index as i64,
                        symbol_id,
                        venue_id,
                        side: 1 + (index % 2) as u8,
                        flags: FLAG_HAS_TS_EXCHANGE,
                        ..Trade::default()
                    };
                    let trade_id = match index % 3 {
                        0 => format!("T{index}"),
                        // The whole capacity: the last byte (offset 63) must survive too.
                        1 => format!("{index:Z>23}"),
                        _ => format!("{index:08x}-1234-4abc-8def-{:012x}", index * 7919),
                    };
                    assert!(trade.set_trade_id(trade_id.as_bytes()), "{trade_id}");
                    OutRecord::Trade(trade)
                }
                5 => OutRecord::Spread(SpreadSample {
                    bucket_start_ns: 1_700_000_000_000_004_000 + index as i64,
                    bucket_duration_ns: 1_000_000_000,
                    last_bp: 1.5 + step * 0.01,
                    min_bp: -0.25 - step,
                    max_bp: 7.125 + step,
                    mean_bp: step / 3.0,
                    window_mean_bp: step / 7.0,
                    window_std_bp: 0.1 + step / 11.0,
                    band_lower_bp: -step / 13.0,
                    band_upper_bp: step / 17.0,
                    samples: index as u32 + 1,
                    symbol_id,
                    buy_venue_id: venue_id,
                    sell_venue_id: other_venue_id,
                    flags: 0,
                }),
                6 => OutRecord::Opportunity(OpportunityEvent {
                    ts_ns: 1_700_000_000_000_005_000 + index as i64,
                    started_ns: 1_700_000_000_000_004_500 + index as i64,
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
                    flags: 0,
                    reserved: [0; 6],
                }),
                _ => OutRecord::Gap(GapEvent {
                    ts_ns: 1_700_000_000_000_003_000 + index as i64,
                    connection_id: index as u32,
                    symbol_id,
                    venue_id,
                    kind: GAP_DISCONNECT,
                    reserved: [0; 5],
                }),
            }
        })
        .collect()
}

/// A record's identity and content as one comparable line (floats by value, ints exactly).
fn expected_line(record: &OutRecord) -> String {
    match record {
        OutRecord::Quote(quote) => format!(
            "quote {} {} {:?} {:?} {:?} {:?} {} {} {} {}",
            quote.symbol_id.0,
            quote.venue_id.0,
            quote.bid,
            quote.bid_qty,
            quote.ask,
            quote.ask_qty,
            quote.ts_exchange_ns,
            quote.ts_recv_ns,
            quote.seq,
            quote.flags
        ),
        OutRecord::Trade(trade) => format!(
            "trade {} {} {:?} {:?} {} {} {} {} {} {}",
            trade.symbol_id.0,
            trade.venue_id.0,
            trade.price,
            trade.qty,
            trade.ts_exchange_ns,
            trade.ts_recv_ns,
            trade.side,
            trade.flags,
            trade.trade_id_len,
            trade
                .trade_id
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        ),
        OutRecord::Spread(sample) => format!(
            "spread {} {} {} {} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {}",
            sample.symbol_id.0,
            sample.buy_venue_id.0,
            sample.sell_venue_id.0,
            sample.bucket_start_ns,
            sample.bucket_duration_ns,
            sample.last_bp,
            sample.min_bp,
            sample.max_bp,
            sample.mean_bp,
            sample.window_mean_bp,
            sample.window_std_bp,
            sample.band_lower_bp,
            sample.band_upper_bp,
            sample.samples
        ),
        OutRecord::Opportunity(event) => format!(
            "opportunity {} {} {} {} {} {:?} {:?} {:?} {}",
            event.symbol_id.0,
            event.buy_venue_id.0,
            event.sell_venue_id.0,
            event.ts_ns,
            event.started_ns,
            event.threshold_bp,
            event.spread_bp,
            event.peak_bp,
            event.kind
        ),
        OutRecord::Gap(gap) => format!(
            "gap {} {} {} {} {}",
            gap.symbol_id.0, gap.venue_id.0, gap.ts_ns, gap.connection_id, gap.kind
        ),
    }
}

/// The same line from one NDJSON record a plugin wrote.
fn written_line(json: &serde_json::Value) -> String {
    let int = |key: &str| {
        json[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} is an integer in {json}"))
    };
    // serde_json's default float parsing is not correctly rounded for 17-digit text (C's
    // `%.17g`), so floats are parsed from their raw text with Rust's exact parser.
    let raw = json["raw"]
        .as_str()
        .expect("read_ndjson keeps the raw line");
    let float = |key: &str| -> f64 {
        let pattern = format!("\"{key}\":");
        let start = raw
            .find(&pattern)
            .unwrap_or_else(|| panic!("{key} in {raw}"))
            + pattern.len();
        let text: String = raw[start..]
            .chars()
            .take_while(|c| !matches!(c, ',' | '}'))
            .collect();
        text.parse()
            .unwrap_or_else(|_| panic!("{key} is a number in {raw}"))
    };
    match json["kind"].as_str() {
        Some("quote") => format!(
            "quote {} {} {:?} {:?} {:?} {:?} {} {} {} {}",
            int("symbol_id"),
            int("venue_id"),
            float("bid"),
            float("bid_qty"),
            float("ask"),
            float("ask_qty"),
            int("ts_exchange_ns"),
            int("ts_recv_ns"),
            int("seq"),
            int("flags")
        ),
        Some("trade") => format!(
            "trade {} {} {:?} {:?} {} {} {} {} {} {}",
            int("symbol_id"),
            int("venue_id"),
            float("price"),
            float("qty"),
            int("ts_exchange_ns"),
            int("ts_recv_ns"),
            int("side"),
            int("flags"),
            int("trade_id_len"),
            json["trade_id_hex"]
                .as_str()
                .unwrap_or_else(|| panic!("trade_id_hex is a string in {json}"))
        ),
        Some("spread_sample") => format!(
            "spread {} {} {} {} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {}",
            int("symbol_id"),
            int("venue_id"),
            int("sell_venue_id"),
            int("bucket_start_ns"),
            int("bucket_duration_ns"),
            float("last_bp"),
            float("min_bp"),
            float("max_bp"),
            float("mean_bp"),
            float("window_mean_bp"),
            float("window_std_bp"),
            float("band_lower_bp"),
            float("band_upper_bp"),
            int("samples")
        ),
        Some("opportunity") => format!(
            "opportunity {} {} {} {} {} {:?} {:?} {:?} {}",
            int("symbol_id"),
            int("venue_id"),
            int("sell_venue_id"),
            int("ts_ns"),
            int("started_ns"),
            float("threshold_bp"),
            float("spread_bp"),
            float("peak_bp"),
            int("event")
        ),
        Some("gap") => format!(
            "gap {} {} {} {} {}",
            int("symbol_id"),
            int("venue_id"),
            int("ts_ns"),
            int("connection_id"),
            int("gap_kind")
        ),
        other => panic!("unexpected kind {other:?} in {json}"),
    }
}

/// Multiset of lines (order across shards and kinds is not promised; content and count are).
fn multiset(lines: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line).or_insert(0) += 1;
    }
    counts
}

fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("the sink wrote its output file")
        .lines()
        .map(|line| {
            let mut json: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
            json["raw"] = serde_json::Value::String(line.to_string());
            json
        })
        .collect()
}

/// Feeds `records` round-robin over the outbounds (as shards would), flushing every `chunk`.
fn feed(outbounds: &mut [tickflow_host::SinkOutbound], records: &[OutRecord], chunk: usize) {
    for (chunk_index, chunk) in records.chunks(chunk).enumerate() {
        let outbound = &mut outbounds[chunk_index % outbounds.len()];
        for record in chunk {
            outbound.emit(record);
        }
        outbound.flush();
    }
}

fn stats_of<'a>(stats: &'a [SinkStats], name: &str) -> &'a SinkStats {
    stats
        .iter()
        .find(|stats| stats.name == name)
        .unwrap_or_else(|| panic!("no sink named {name}"))
}

/// Polls `condition` (a state, not a time) until it holds; a generous deadline turns a hang
/// into a failure naming what was awaited.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The test sink named "stalled" in `stall` mode: its first `on_batch` blocks until `gate`
/// exists (two minutes at most, so a broken test cannot hang).
fn stalled_test_sink(gate: &Path) -> SinkConfig {
    sink_with_config(
        "stalled",
        &test_sink_plugin(),
        &format!(
            "mode = \"stall\"\ngate_path = {:?}\nstall_limit_ms = 120000",
            gate.display().to_string()
        ),
    )
}

fn sink_with_config(name: &str, path: &Path, config: &str) -> SinkConfig {
    let mut sink = SinkConfig::new(name, path);
    sink.config = toml::from_str(config).expect("test sink config is TOML");
    sink
}

// ---------- delivery ----------

fn check_delivery(sink: SinkConfig, output: &Path, with_names: bool) {
    let universe = universe();
    let fed = records(&universe, 5_000);
    let mut sink = sink;
    sink.policy = SinkPolicy::Block;
    sink.block_timeout_ms = 10_000;
    sink.ring_capacity_records = 1024;
    sink.batch_max_records = 100;
    let name = sink.name.clone();
    let mut host =
        SinkHost::start(&[sink], 3, Some(universe.registry.clone())).expect("sink starts");
    let mut outbounds = host.take_sink_outbounds();
    assert_eq!(outbounds.len(), 3);
    feed(&mut outbounds, &fed, 37);
    drop(outbounds);
    let stats = host.shutdown();
    let stats = stats_of(&stats, &name);
    assert_eq!(stats.delivered, fed.len() as u64, "{stats:?}");
    assert_eq!(stats.lost(), 0, "{stats:?}");
    let written = read_ndjson(output);
    assert_eq!(written.len(), fed.len());
    let written_lines = multiset(written.iter().map(written_line));
    let expected_lines = multiset(fed.iter().map(expected_line));
    let differences: Vec<String> = expected_lines
        .iter()
        .filter(|(line, count)| written_lines.get(*line) != Some(count))
        .map(|(line, count)| format!("expected {count}× {line}"))
        .chain(
            written_lines
                .iter()
                .filter(|(line, _)| !expected_lines.contains_key(*line))
                .map(|(line, count)| format!("unexpected {count}× {line}")),
        )
        .take(10)
        .collect();
    assert!(
        differences.is_empty(),
        "the plugin must write exactly the records fed in:\n{}",
        differences.join("\n")
    );
    if with_names {
        let first_quote = written
            .iter()
            .find(|json| json["kind"] == "quote" && json["symbol_id"] == universe.symbols[0].0)
            .expect("a quote of the first symbol");
        assert_eq!(
            first_quote["symbol"], "BTC-USDT",
            "names come through the host callback"
        );
        let venue = Venue::from_id(VenueId(
            first_quote["venue_id"].as_u64().expect("venue id") as u16
        ))
        .expect("a known venue");
        assert_eq!(first_quote["venue"], venue.name());
        // Trade ids are also written as text (byte-exact content is compared above).
        let trades = written.iter().filter(|json| json["kind"] == "trade");
        assert!(trades.clone().count() > 0);
        assert!(
            trades
                .into_iter()
                .all(|json| json["trade_id"].as_str().is_some_and(|id| !id.is_empty()))
        );
    }
}

#[test]
fn rust_example_plugin_receives_exactly_the_records_fed_in() {
    let dir = scratch_dir("rust-example");
    let output = dir.join("records.ndjson");
    let sink = sink_with_config(
        "rust-example",
        &example_stdout_plugin(),
        &format!("path = {:?}\nnames = true", output.display().to_string()),
    );
    check_delivery(sink, &output, true);
}

#[test]
fn c_example_plugin_receives_exactly_the_records_fed_in() {
    let dir = scratch_dir("c-example");
    let output = dir.join("records.ndjson");
    let sink = sink_with_config(
        "c-example",
        &c_example_plugin(&dir),
        &format!("path = {:?}", output.display().to_string()),
    );
    check_delivery(sink, &output, false);
}

// ---------- refusals ----------

/// Every fixture the host must refuse, with the field its one-line message must name and a
/// fragment of what it says.
fn refused_fixtures(dir: &Path) -> Vec<(PathBuf, &'static str, &'static str)> {
    let not_a_library = dir.join("libnot_a_library.so");
    std::fs::write(&not_a_library, b"this is not a shared library\n").expect("scratch is writable");
    vec![
        (
            c_fixture(dir, "FIXTURE_WRONG_MAGIC"),
            "magic is 0x1122334455667788",
            "the engine expects 0x4b4e49534c464b54",
        ),
        (
            c_fixture(dir, "FIXTURE_OTHER_MAJOR"),
            "abi_major is 2",
            "the engine expects 1",
        ),
        (
            c_fixture(dir, "FIXTURE_NEWER_MINOR"),
            "abi_minor is 4",
            "the engine expects at most 3",
        ),
        (
            c_fixture(dir, "FIXTURE_SHORT_STRUCT"),
            "struct_size is 64 bytes",
            "at least 120 bytes",
        ),
        (
            c_fixture(dir, "FIXTURE_MISSING_ON_BATCH"),
            "required functions is missing on_batch",
            "create, on_batch and destroy",
        ),
        (
            c_fixture(dir, "FIXTURE_BAD_BUILD_FLAGS"),
            "build_flags is",
            "0x3 in the low byte",
        ),
        (
            c_fixture(dir, "FIXTURE_NO_ENTRY"),
            "entry symbol is absent",
            "tickflow_sink_entry_v1",
        ),
        (
            not_a_library,
            "library is not loadable",
            "a shared library exporting tickflow_sink_entry_v1",
        ),
        (
            // Loads under lazy binding and would kill the engine at its first on_batch.
            c_fixture(dir, "FIXTURE_UNRESOLVED_SYMBOL"),
            "undefined symbol: tickflow_fixture_function_nobody_defines",
            "with every symbol resolved",
        ),
    ]
}

#[test]
fn bad_plugins_are_refused_with_one_clear_line() {
    let dir = scratch_dir("refusals");
    for (path, has, expects) in refused_fixtures(&dir) {
        let refusal = loader::load("bad", &path).expect_err("the fixture must be refused");
        let message = refusal.to_string();
        assert!(
            message.contains(has) && message.contains(expects),
            "{message}"
        );
        assert!(
            message.contains("\"bad\"") && message.contains(&path.display().to_string()),
            "{message}"
        );
        assert_eq!(message.lines().count(), 1, "{message}");

        // `tickflow plugin inspect` prints the same reason and exits non-zero.
        let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(["plugin", "inspect"])
            .arg(&path)
            .output()
            .expect("tickflow runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(has) && stderr.contains(expects), "{stderr}");

        // The config names it too, and the host will not start with it ...
        let config_text = format!(
            "[[sinks]]\nname = \"bad\"\npath = {:?}\n",
            path.display().to_string()
        );
        let error =
            tickflow::config::Config::from_toml_str(&config_text).expect_err("config refused");
        assert!(
            error.to_string().contains("sinks[0].path") && error.to_string().contains(has),
            "{error}"
        );
        let start = SinkHost::start(&[SinkConfig::new("bad", &path)], 1, None);
        assert!(start.is_err_and(|error| error.to_string().contains(has)));

        // ... unless the sink is optional.
        let mut optional = SinkConfig::new("bad", &path);
        optional.optional = true;
        let host = SinkHost::start(&[optional], 1, None).expect("an optional bad sink is skipped");
        assert_eq!(host.sink_count(), 0);
        let optional_text = format!("{config_text}optional = true\n");
        tickflow::config::Config::from_toml_str(&optional_text)
            .expect("optional bad sink passes validation");
    }
}

#[test]
fn check_config_reports_a_refused_plugin() {
    let dir = scratch_dir("check-config");
    let plugin = c_fixture(&dir, "FIXTURE_OTHER_MAJOR");
    let config_path = dir.join("tickflow.toml");
    std::fs::write(
        &config_path,
        format!(
            "[[sinks]]\nname = \"old\"\npath = {:?}\n",
            plugin.display().to_string()
        ),
    )
    .expect("scratch is writable");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .arg("check-config")
        .arg(&config_path)
        .output()
        .expect("tickflow runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sinks[0].path") && stderr.contains("abi_major is 2, the engine expects 1"),
        "{stderr}"
    );
}

#[test]
fn plugin_inspect_prints_the_descriptor() {
    let dir = scratch_dir("inspect");
    for (path, name, kinds, absent) in [
        (
            example_stdout_plugin(),
            "example-stdout",
            "quote, trade, spread_sample, opportunity, gap, telemetry",
            None,
        ),
        (
            c_example_plugin(&dir),
            "c-ndjson",
            "quote, trade, spread_sample, opportunity, gap",
            Some("on_tick      absent"),
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(["plugin", "inspect"])
            .arg(&path)
            .output()
            .expect("tickflow runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(&format!("name         {name}")), "{stdout}");
        let abi = format!(
            "abi          {major}.{minor} (engine {major}.{minor})",
            major = tickflow_sdk::abi::ABI_MAJOR,
            minor = tickflow_sdk::abi::ABI_MINOR
        );
        assert!(stdout.contains(&abi), "{stdout}");
        assert!(stdout.contains(kinds), "{stdout}");
        assert!(stdout.contains("on_batch     present"), "{stdout}");
        if let Some(absent) = absent {
            assert!(stdout.contains(absent), "{stdout}");
        }
    }
}

// ---------- isolation ----------

#[test]
fn panicking_and_failing_plugins_are_quarantined_while_another_sink_gets_everything() {
    let dir = scratch_dir("quarantine");
    let output = dir.join("good.ndjson");
    let mut good = sink_with_config(
        "good",
        &example_stdout_plugin(),
        &format!("path = {:?}", output.display().to_string()),
    );
    good.ring_capacity_records = 4096;
    let mut panicking = sink_with_config("panicking", &test_sink_plugin(), "mode = \"panic\"");
    let mut failing_c = SinkConfig::new("failing-c", c_fixture(&dir, "FIXTURE_ALWAYS_FAIL"));
    for bad in [&mut panicking, &mut failing_c] {
        bad.ring_capacity_records = 16;
        bad.batch_max_records = 4;
        bad.restart_after_failures = 2;
        bad.restart_backoff_initial_ms = 1;
        bad.restart_backoff_max_ms = 2;
        bad.disable_after_restarts = 2;
    }
    let universe = universe();
    let mut host = SinkHost::start(&[good, panicking, failing_c], 2, None).expect("sinks start");
    let mut outbounds = host.take_sink_outbounds();
    let mut fed: Vec<OutRecord> = Vec::new();
    // Rounds of records until both bad sinks are disabled; each round waits until the good sink
    // has taken it, so its ring never overflows and it must receive everything.
    for round in 0..10_000 {
        let batch = records(&universe, 40);
        feed(&mut outbounds, &batch, 40);
        fed.extend(batch);
        wait_until("the good sink to take the round", || {
            stats_of(&host.stats(), "good").delivered == fed.len() as u64
        });
        let stats = host.stats();
        if stats_of(&stats, "panicking").disabled && stats_of(&stats, "failing-c").disabled {
            break;
        }
        assert!(
            round < 9_999,
            "the bad sinks were never disabled: {stats:?}"
        );
    }
    // Once disabled, a sink is skipped: more records go to the good sink only.
    let after = records(&universe, 500);
    feed(&mut outbounds, &after, 50);
    fed.extend(after);
    drop(outbounds);
    let stats = host.shutdown();
    let good = stats_of(&stats, "good");
    assert_eq!(good.delivered, fed.len() as u64, "{good:?}");
    assert_eq!(good.lost(), 0);
    assert_eq!(read_ndjson(&output).len(), fed.len());
    let panicking = stats_of(&stats, "panicking");
    assert!(
        panicking.disabled && panicking.restarts == 2 && panicking.panics >= 6,
        "{panicking:?}"
    );
    assert_eq!(panicking.delivered, 0);
    assert!(panicking.dropped_disabled >= 500, "{panicking:?}");
    let failing = stats_of(&stats, "failing-c");
    assert!(
        failing.disabled && failing.restarts == 2 && failing.errors >= 6,
        "{failing:?}"
    );
    assert_eq!(failing.panics, 0);
    // Every record offered to a bad sink is accounted for: delivered or lost, by reason.
    // (The C fixture wants quotes, trades and gaps only; the test sink every kind.)
    let fixture_kinds = fed
        .iter()
        .filter(|record| {
            matches!(
                record,
                OutRecord::Quote(_) | OutRecord::Trade(_) | OutRecord::Gap(_)
            )
        })
        .count();
    for (bad, offered) in [(panicking, fed.len()), (failing, fixture_kinds)] {
        assert_eq!(
            bad.enqueued + bad.dropped_full + bad.dropped_disabled,
            offered as u64,
            "{bad:?}"
        );
    }
}

#[test]
fn a_stalled_sink_does_not_reduce_what_another_sink_receives() {
    let dir = scratch_dir("stall");
    let output = dir.join("good.ndjson");
    let gate = dir.join("gate");
    let good = sink_with_config(
        "good",
        &example_stdout_plugin(),
        &format!("path = {:?}", output.display().to_string()),
    );
    let mut stalled = stalled_test_sink(&gate);
    stalled.ring_capacity_records = 16;
    stalled.batch_max_records = 8;
    let universe = universe();
    let mut host = SinkHost::start(&[good, stalled], 2, None).expect("sinks start");
    let mut outbounds = host.take_sink_outbounds();
    let mut fed = Vec::new();
    for _ in 0..50 {
        let batch = records(&universe, 100);
        feed(&mut outbounds, &batch, 25);
        fed.extend(batch);
        wait_until("the good sink to take the round", || {
            stats_of(&host.stats(), "good").delivered == fed.len() as u64
        });
    }
    // Release the stalled sink, then shut down (it drains what its rings still hold).
    std::fs::write(&gate, b"go").expect("scratch is writable");
    drop(outbounds);
    let stats = host.shutdown();
    let good = stats_of(&stats, "good");
    assert_eq!(good.delivered, fed.len() as u64);
    assert_eq!(good.lost(), 0);
    assert_eq!(read_ndjson(&output).len(), fed.len());
    let stalled = stats_of(&stats, "stalled");
    assert!(
        stalled.dropped_full > 0,
        "the stalled sink's rings overflowed: {stalled:?}"
    );
    assert!(stalled.delivered < fed.len() as u64);
    assert_eq!(
        stalled.delivered + stalled.dropped_full,
        fed.len() as u64,
        "{stalled:?}"
    );
}

#[test]
fn a_stalled_sink_with_policy_block_does_not_reduce_what_another_sink_receives() {
    let dir = scratch_dir("stall_block");
    let output = dir.join("good.ndjson");
    let gate = dir.join("gate");
    let good = sink_with_config(
        "good",
        &example_stdout_plugin(),
        &format!("path = {:?}", output.display().to_string()),
    );
    let mut stalled = stalled_test_sink(&gate);
    // The shard waits for it, but at most block_timeout_ms per second in total.
    stalled.policy = SinkPolicy::Block;
    stalled.block_timeout_ms = 5;
    stalled.ring_capacity_records = 16;
    stalled.batch_max_records = 8;
    let universe = universe();
    let mut host = SinkHost::start(&[good, stalled], 2, None).expect("sinks start");
    let mut outbounds = host.take_sink_outbounds();
    let mut fed = Vec::new();
    for _ in 0..50 {
        let batch = records(&universe, 100);
        feed(&mut outbounds, &batch, 25);
        fed.extend(batch);
        wait_until("the good sink to take the round", || {
            stats_of(&host.stats(), "good").delivered == fed.len() as u64
        });
    }
    // Release the stalled sink, then shut down (it drains what its rings still hold).
    std::fs::write(&gate, b"go").expect("scratch is writable");
    drop(outbounds);
    let stats = host.shutdown();
    let good = stats_of(&stats, "good");
    assert_eq!(good.delivered, fed.len() as u64);
    assert_eq!(good.lost(), 0);
    assert_eq!(read_ndjson(&output).len(), fed.len());
    let stalled = stats_of(&stats, "stalled");
    assert!(
        stalled.block_timeouts > 0,
        "the stalled sink's rings overflowed: {stalled:?}"
    );
    assert!(stalled.delivered < fed.len() as u64);
    assert_eq!(
        stalled.delivered + stalled.block_timeouts,
        fed.len() as u64,
        "{stalled:?}"
    );
}

#[test]
fn a_sink_stuck_in_a_call_is_abandoned_at_the_shutdown_deadline() {
    let dir = scratch_dir("stuck_at_shutdown");
    let output = dir.join("good.ndjson");
    let gate = dir.join("gate");
    let good = sink_with_config(
        "good",
        &example_stdout_plugin(),
        &format!("path = {:?}", output.display().to_string()),
    );
    // Stalls in its first on_batch until the gate exists (written only after the shutdown) or
    // for ten minutes: without a deadline, shutdown would wait that long.
    let mut stuck = sink_with_config(
        "stuck",
        &test_sink_plugin(),
        &format!(
            "mode = \"stall\"\ngate_path = {:?}\nstall_limit_ms = 600000",
            gate.display().to_string()
        ),
    );
    stuck.shutdown_deadline_ms = 200;
    let universe = universe();
    let mut host = SinkHost::start(&[good, stuck], 1, None).expect("sinks start");
    let mut outbounds = host.take_sink_outbounds();
    let fed = records(&universe, 100);
    feed(&mut outbounds, &fed, 25);
    drop(outbounds);
    // Whatever was pushed before the stop is drained, so the stuck sink's first on_batch (which
    // never returns) happens before or during shutdown; shutdown still returns.
    let stats = host.shutdown();
    std::fs::write(&gate, b"go").expect("scratch is writable");
    let good = stats_of(&stats, "good");
    assert!(!good.abandoned, "{good:?}");
    assert_eq!(good.delivered, fed.len() as u64);
    assert_eq!(read_ndjson(&output).len(), fed.len());
    let stuck = stats_of(&stats, "stuck");
    assert!(stuck.abandoned, "{stuck:?}");
    assert_eq!(stuck.delivered, 0, "{stuck:?}");
}

#[test]
fn create_returning_ok_without_an_instance_is_a_failed_start() {
    let dir = scratch_dir("null_instance");
    let plugin = c_fixture(&dir, "FIXTURE_NULL_INSTANCE");
    let error = SinkHost::start(&[SinkConfig::new("null", &plugin)], 1, None)
        .expect_err("a sink without an instance does not start");
    assert!(
        error
            .to_string()
            .contains("sink \"null\": create returned status 1"),
        "{error}"
    );
}

#[test]
fn telemetry_reaches_sinks_that_want_it() {
    let dir = scratch_dir("telemetry");
    let output = dir.join("telemetry.ndjson");
    let sink = sink_with_config(
        "telemetry",
        &example_stdout_plugin(),
        &format!("path = {:?}", output.display().to_string()),
    );
    let mut host = SinkHost::start(&[sink], 1, None).expect("sink starts");
    let mut telemetry = host.take_telemetry_outbound().expect("one telemetry lane");
    for second in 0..3u64 {
        telemetry.emit_telemetry(&tickflow_sdk::records::Telemetry {
            ts_ns: 1_700_000_000_000_000_000 + second as i64,
            rss_bytes: 1 << 20,
            records_in: second * 10,
            shards: 1,
            ..Default::default()
        });
        telemetry.flush();
    }
    drop(telemetry);
    host.shutdown();
    let written = read_ndjson(&output);
    assert_eq!(written.len(), 3);
    assert!(
        written
            .iter()
            .all(|json| json["kind"] == "telemetry" && json["rss_bytes"] == 1 << 20)
    );
    assert_eq!(written[2]["records_in"], 20);
}

#[test]
fn plugin_metrics_appear_beside_the_hosts() {
    let dir = scratch_dir("metrics");
    let output = dir.join("records.ndjson");
    let other_output = dir.join("other.ndjson");
    let plugin = c_example_plugin(&dir);
    let sink = sink_with_config(
        "c-metrics",
        &plugin,
        &format!("path = {:?}", output.display().to_string()),
    );
    // A second sink of the same plugin: same metric family, one HELP/TYPE, two samples.
    let other = sink_with_config(
        "c-metrics-2",
        &plugin,
        &format!("path = {:?}", other_output.display().to_string()),
    );
    let universe = universe();
    let mut host = SinkHost::start(&[sink, other], 1, None).expect("sinks start");
    let mut outbounds = host.take_sink_outbounds();
    let fed = records(&universe, 300);
    feed(&mut outbounds, &fed, 30);
    wait_until("delivery", || {
        host.stats().iter().all(|stats| stats.delivered == 300)
    });
    let mut text = String::new();
    host.render_metrics(&mut text);
    assert!(
        text.contains("tickflow_sink_delivered_total{sink=\"c-metrics\"} 300"),
        "{text}"
    );
    for sink in ["c-metrics", "c-metrics-2"] {
        assert!(
            text.contains(&format!(
                "tickflow_plugin_c_ndjson_records_written{{sink=\"{sink}\"}} 300"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains("tickflow_sink_on_batch_ns{sink=\"c-metrics\",quantile=\"0.99\"}"),
        "{text}"
    );
    // Valid exposition: each family's HELP and TYPE lines appear once.
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines().filter(|line| line.starts_with('#')) {
        assert!(seen.insert(line), "repeated {line:?} in\n{text}");
    }
    assert!(seen.contains("# TYPE tickflow_plugin_c_ndjson_records_written counter"));
    drop(outbounds);
    host.shutdown();
}

// ---------- spread samples at a bucket change ----------

/// One shard on a manual clock, set in the middle of the current bucket, emitting into `host`'s
/// sinks (`[engine]` of `max_symbols` symbols, 2 048-record rings; windows warm at once).
/// Returns the config, the pipeline, the clock, the clock's start and the bucket length.
fn bucket_change_pipeline(
    max_symbols: u32,
    host: &mut SinkHost,
) -> (
    tickflow::config::Config,
    tickflow_core::pipeline::Pipeline,
    Arc<std::sync::atomic::AtomicI64>,
    i64,
    i64,
) {
    let config = tickflow::config::Config::from_toml_str(&format!(
        "[engine]\nshards = 1\nmax_symbols = {max_symbols}\nring_capacity_records = 2048\n\
         [windows]\nwarmup_buckets = 0\n"
    ))
    .expect("valid config");
    let bucket_ns = 1_000_000_000i64;
    let start_ns = (tickflow_core::record::now_ns() / bucket_ns) * bucket_ns + bucket_ns / 2;
    let clock = Arc::new(std::sync::atomic::AtomicI64::new(start_ns));
    let pipeline = tickflow_core::pipeline::Pipeline::start_with_clock(
        &config.engine,
        &config.windows,
        host.take_outbounds(),
        tickflow_core::shard::ShardClock::Manual(Arc::clone(&clock)),
    )
    .expect("pipeline starts");
    (config, pipeline, clock, start_ns, bucket_ns)
}

/// Pushes a quote of every venue for each of `symbols`, received from `first_ts_ns` on (a
/// nanosecond apart), waiting for ring room (the shard always makes some), then flushes.
/// Returns how many.
fn push_quote_round(
    producer: &mut tickflow_core::pipeline::SlotProducer,
    symbols: std::ops::Range<u32>,
    first_ts_ns: i64,
) -> u64 {
    let mut pushed = 0u64;
    for symbol in symbols {
        for venue in 0..8u16 {
            let quote = tickflow_core::record::FeedEvent::Quote(Quote {
                bid: 100.0 + f64::from(venue) * 0.01,
                bid_qty: 1.0,
                ask: 100.1 + f64::from(venue) * 0.01,
                ask_qty: 1.0,
                ts_recv_ns: first_ts_ns + pushed as i64,
                symbol_id: SymbolId(symbol),
                venue_id: VenueId(venue),
                ..Quote::default()
            });
            while !producer.push(quote) {
                producer.flush();
                std::thread::yield_now();
            }
            pushed += 1;
        }
    }
    producer.flush();
    pushed
}

/// A bucket change closes every window at once: 200 symbols × 8 venues = 11 200 windows on one
/// shard, more than twice a default sink lane (4 096). The shard hands them over in slices, so a
/// no-op sink on `drop_newest` at the defaults receives every sample.
#[test]
fn every_spread_sample_of_a_bucket_change_reaches_a_sink_that_keeps_up() {
    use std::sync::atomic::Ordering;

    const SYMBOLS: u32 = 200;
    let registry = Arc::new(SymbolRegistry::new(SYMBOLS as usize));
    let sink = sink_with_config("noop", &test_sink_plugin(), "mode = \"noop\"");
    assert_eq!(sink.policy, SinkPolicy::DropNewest);
    assert_eq!(sink.ring_capacity_records, 4096);
    let mut host = SinkHost::start(&[sink], 1, Some(registry)).expect("sink starts");
    // The shard clock sits in the middle of a bucket; quotes carry times inside that bucket.
    let (_config, mut pipeline, clock, start_ns, bucket_ns) =
        bucket_change_pipeline(SYMBOLS, &mut host);
    let mut producer = pipeline.take_producer().expect("a producer");
    let pushed = push_quote_round(&mut producer, 0..SYMBOLS, start_ns);
    let windows = u64::from(SYMBOLS) * 56;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Quote counts are published after every batch (window counts only at housekeeping).
    while pipeline.counters().quotes < pushed && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(pipeline.counters().quotes, pushed);
    // The bucket ends: every window's bucket closes (the clock at the very start of the next
    // bucket, where closes are paced by the sinks' room).
    clock.store(start_ns - bucket_ns / 2 + bucket_ns, Ordering::Release);
    while pipeline.counters().samples_emitted < windows && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(producer);
    let report = pipeline.shutdown();
    assert_eq!(report.counters.samples_emitted, windows);
    assert_eq!(report.counters.dropped_ring_full, 0);
    let stats = host.shutdown();
    let stats = stats_of(&stats, "noop");
    assert_eq!(stats.lost(), 0, "{stats:?}");
    assert_eq!(stats.delivered, pushed + windows, "{stats:?}");
}

/// While a bucket change's samples wait for a sink's runner, the quotes that keep arriving still
/// find room in its lane: the shard's paced closes leave a quarter of each lane free
/// (`Outbound::burst_room_hint`). The sink is stalled (its runner blocked in its first
/// `on_batch`), so its 2 000-record lane cannot drain while 50 symbols × 8 venues = 2 800
/// windows close, and 400 quotes of 50 other symbols arrive after the closes took what room they
/// may (other symbols: a quote of a window still open would close that window's bucket itself,
/// unpaced). Before the reserve the closes filled the lane to its last slot and those quotes
/// were lost.
#[test]
fn quotes_keep_room_in_a_lane_while_a_bucket_change_waits_for_it() {
    use std::sync::atomic::Ordering;
    use tickflow_core::records::RecordKind;

    const SYMBOLS: u32 = 50;
    const LANE_RECORDS: usize = 2_000;
    let registry = Arc::new(SymbolRegistry::new(2 * SYMBOLS as usize));
    let gate = scratch_dir("burst-reserve").join("gate");
    let mut stalled = stalled_test_sink(&gate);
    assert_eq!(stalled.policy, SinkPolicy::DropNewest);
    stalled.ring_capacity_records = LANE_RECORDS;
    let mut host = SinkHost::start(&[stalled], 1, Some(registry)).expect("the sink starts");
    let (_config, mut pipeline, clock, start_ns, bucket_ns) =
        bucket_change_pipeline(2 * SYMBOLS, &mut host);
    let mut producer = pipeline.take_producer().expect("a producer");
    let quotes_per_round = u64::from(SYMBOLS) * 8;
    push_quote_round(&mut producer, 0..SYMBOLS, start_ns);
    wait_until("the shard handled the first quotes", || {
        pipeline.counters().quotes == quotes_per_round
    });
    // The bucket ends; its 2 800 closes take the stalled lane's room they may (microseconds),
    // then wait for the runner.
    let next_bucket_ns = start_ns - bucket_ns / 2 + bucket_ns;
    clock.store(next_bucket_ns, Ordering::Release);
    std::thread::sleep(std::time::Duration::from_millis(300));
    push_quote_round(&mut producer, SYMBOLS..2 * SYMBOLS, next_bucket_ns + 1);
    wait_until("the shard handled the quotes of the new bucket", || {
        pipeline.counters().quotes == 2 * quotes_per_round
    });
    std::fs::write(&gate, b"open").expect("the gate file is writable");
    let windows = u64::from(SYMBOLS) * 56;
    wait_until("every window's bucket closed", || {
        pipeline.counters().samples_emitted == windows
    });
    drop(producer);
    let report = pipeline.shutdown();
    let stats = host.shutdown();
    let stalled = stats_of(&stats, "stalled");
    let quotes = stalled.kinds[RecordKind::Quote as usize];
    assert_eq!(
        (quotes.delivered, quotes.lost),
        (2 * quotes_per_round, 0),
        "every quote found room: {stalled:?}"
    );
    let spreads = stalled.kinds[RecordKind::SpreadSample as usize];
    assert_eq!(
        (spreads.delivered, spreads.lost),
        (report.counters.samples_emitted, 0),
        "the closes waited for room instead of losing samples: {stalled:?}"
    );
}

// ---------- per-kind sink counters ----------

/// Per record kind, what the shard emitted against what each sink delivered and lost: a no-op
/// sink that keeps up gets every spread sample (delivered = emitted, nothing lost); a sink that
/// is stalled while the samples come (`drop_oldest`, a small ring) shows lost = emitted −
/// delivered, kind by kind.
#[test]
fn sink_kind_counters_match_what_the_shard_emitted() {
    use std::sync::atomic::Ordering;
    use tickflow_core::records::RecordKind;

    const SYMBOLS: u32 = 50;
    let registry = Arc::new(SymbolRegistry::new(SYMBOLS as usize));
    let gate = scratch_dir("sink-kinds").join("gate");
    let noop = sink_with_config("noop", &test_sink_plugin(), "mode = \"noop\"");
    let mut stalled = stalled_test_sink(&gate);
    stalled.policy = SinkPolicy::DropOldest;
    stalled.ring_capacity_records = 256;
    let mut host = SinkHost::start(&[noop, stalled], 1, Some(registry)).expect("sinks start");
    let (_config, mut pipeline, clock, start_ns, bucket_ns) =
        bucket_change_pipeline(SYMBOLS, &mut host);
    let mut producer = pipeline.take_producer().expect("a producer");
    let pushed = push_quote_round(&mut producer, 0..SYMBOLS, start_ns);
    let windows = u64::from(SYMBOLS) * 56;
    wait_until("the shard handled every quote", || {
        pipeline.counters().quotes == pushed
    });
    clock.store(start_ns - bucket_ns / 2 + bucket_ns, Ordering::Release);
    wait_until("every window's bucket closed", || {
        pipeline.counters().samples_emitted == windows
    });
    drop(producer);
    let report = pipeline.shutdown();
    // The stalled sink may go on: it drains what its ring kept.
    std::fs::write(&gate, b"open").expect("the gate file is writable");
    let stats = host.shutdown();
    let emitted = [
        (RecordKind::Quote, report.counters.quotes),
        (RecordKind::SpreadSample, report.counters.samples_emitted),
    ];
    assert_eq!(report.counters.samples_emitted, windows);
    let noop = stats_of(&stats, "noop");
    for (kind, emitted) in emitted {
        let counts = noop.kinds[kind as usize];
        assert_eq!(
            (counts.delivered, counts.lost),
            (emitted, 0),
            "noop {kind:?}: {noop:?}"
        );
    }
    let stalled = stats_of(&stats, "stalled");
    for (kind, emitted) in emitted {
        let counts = stalled.kinds[kind as usize];
        assert_eq!(
            counts.lost,
            emitted - counts.delivered,
            "stalled {kind:?}: {stalled:?}"
        );
    }
    let spread = stalled.kinds[RecordKind::SpreadSample as usize];
    assert!(
        spread.lost > 0 && spread.delivered > 0,
        "a 256-record ring cannot hold {windows} samples: {spread:?}"
    );
    for sink in [noop, stalled] {
        assert_eq!(
            sink.kinds.iter().map(|counts| counts.lost).sum::<u64>(),
            sink.lost(),
            "{}: the kinds' losses add up",
            sink.name
        );
        assert_eq!(
            sink.kinds
                .iter()
                .map(|counts| counts.delivered)
                .sum::<u64>(),
            sink.delivered,
            "{}: the kinds' deliveries add up",
            sink.name
        );
    }
}
