//! The dashboard in a real headless Chromium against a real engine: `tickflow run` over the
//! simulated venues with the Parquet and ws-broadcast sink plugins and the control plane, over a
//! history directory holding a generated multi-pair day (written through the real Parquet
//! plugin). The browser side is `engine/control/tests/browser/dashboard.test.mjs` (Debian
//! `chromium` driven by `playwright-core`, both installed by `.ci/run`; missing, the test fails
//! saying so, it never skips or installs). Screenshots go to `<target>/dashboard-artifacts/`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickflow_core::outbound::{OutRecord, Outbound};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_host::{SinkConfig, SinkHost};
use tickflow_sdk::records::{
    GAP_DISCONNECT, GAP_RECONNECT, GapEvent, OPPORTUNITY_END, OPPORTUNITY_START, OpportunityEvent,
    SpreadSample, SymbolId,
};
use tickflow_sim::{SimConfig, SimVenues};

use super::sink_budget::built_plugin;

/// Longest any awaited state may take before the test fails (a state is awaited, never a
/// duration).
const DEADLINE: Duration = Duration::from_secs(60);

/// The generated day: 2024-01-02 UTC.
const DAY: &str = "2024-01-02";
const DAY_START_NS: i64 = 1_704_153_600_000_000_000;
const SECOND_NS: i64 = 1_000_000_000;
/// One spread sample per pair every this many seconds of the day.
const SAMPLE_EVERY_S: i64 = 30;
/// The configured threshold the generated cycles are at (and the only one configured).
const THRESHOLD_BP: f64 = 40.0;
/// Pairs with at least this many cycles qualify; each generated pair has this many but one,
/// which has one fewer and must not be charted.
const MIN_CYCLES: u64 = 3;
const SYMBOLS: [&str; 3] = ["BTC-USDT", "ETH-USDT", "SOL-USDT"];
const VENUE_PAIRS: [(Venue, Venue); 3] = [
    (Venue::Binance, Venue::Okx),
    (Venue::Okx, Venue::Bybit),
    (Venue::Bybit, Venue::Binance),
];
/// Binance is disconnected for BTC-USDT from 06:00 to 07:30: the BTC pairs through Binance have
/// no samples then, and a gap.
const GAP_START_S: i64 = 6 * 3600;
const GAP_END_S: i64 = 7 * 3600 + 1800;

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root")
        .to_path_buf()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dashboard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

/// `<target>/dashboard-artifacts`: the screenshots, kept after the test.
fn artifacts_dir() -> PathBuf {
    let target_tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    target_tmp
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(target_tmp)
        .join("dashboard-artifacts")
}

/// The Parquet plugin's `[sinks.config]` (plugins/parquet/README.md) under `root`: every spread
/// sample kept, no retention (the generated day is in the past), files committed every second.
fn parquet_config_toml(root: &Path) -> String {
    format!(
        "root = {:?}\nzstd_level = 1\nroll_age_s = 1\nspreads_every_n_buckets = 1\n\
         retention = {{ quotes = {{}}, trades = {{}}, spreads = {{}}, opportunities = {{}}, gaps = {{}} }}\n",
        root.display().to_string()
    )
}

// ---------- the generated day ----------

/// The records of the day: every pair's spread samples (a slow wave with a band around it), its
/// opportunity cycles, and one Binance disconnect for BTC-USDT.
fn day_records(registry: &SymbolRegistry) -> (Vec<OutRecord>, usize) {
    let symbol_ids: Vec<SymbolId> = SYMBOLS
        .iter()
        .map(|name| registry.register(name).expect("valid symbol"))
        .collect();
    let mut records = Vec::new();
    let mut qualifying = 0;
    for (symbol_index, &symbol_id) in symbol_ids.iter().enumerate() {
        for (pair_index, &(buy, sell)) in VENUE_PAIRS.iter().enumerate() {
            let phase = (symbol_index * VENUE_PAIRS.len() + pair_index) as f64;
            let through_gap =
                symbol_index == 0 && (buy == Venue::Binance || sell == Venue::Binance);
            for step in 0..(86_400 / SAMPLE_EVERY_S) {
                let second = step * SAMPLE_EVERY_S;
                if through_gap && (GAP_START_S..GAP_END_S).contains(&second) {
                    continue;
                }
                let wave = (second as f64 / 3_600.0 + phase).sin();
                let spread_bp = 20.0 * wave + 5.0 * (second as f64 / 617.0 + phase).sin();
                records.push(OutRecord::Spread(SpreadSample {
                    bucket_start_ns: DAY_START_NS + second * SECOND_NS,
                    bucket_duration_ns: SECOND_NS,
                    last_bp: spread_bp,
                    min_bp: spread_bp - 1.0,
                    max_bp: spread_bp + 1.0,
                    mean_bp: spread_bp,
                    window_mean_bp: 2.0 * wave,
                    window_std_bp: 10.0,
                    band_lower_bp: 2.0 * wave - 25.0,
                    band_upper_bp: 2.0 * wave + 25.0,
                    samples: 10,
                    symbol_id,
                    buy_venue_id: buy.id(),
                    sell_venue_id: sell.id(),
                    flags: 0,
                }));
            }
            // The last pair has one cycle fewer than MIN_CYCLES.
            let last_pair =
                symbol_index == SYMBOLS.len() - 1 && pair_index == VENUE_PAIRS.len() - 1;
            let cycles = if last_pair {
                MIN_CYCLES - 1
            } else {
                MIN_CYCLES
            };
            if !last_pair {
                qualifying += 1;
            }
            for cycle in 0..cycles as i64 {
                let started_ns = DAY_START_NS + (2 + 6 * cycle) * 3_600 * SECOND_NS;
                for (kind, at_ns) in [
                    (OPPORTUNITY_START, started_ns),
                    (OPPORTUNITY_END, started_ns + 90 * SECOND_NS),
                ] {
                    records.push(OutRecord::Opportunity(OpportunityEvent {
                        ts_ns: at_ns,
                        started_ns,
                        threshold_bp: THRESHOLD_BP,
                        spread_bp: THRESHOLD_BP + 1.0,
                        peak_bp: THRESHOLD_BP + 3.0,
                        symbol_id,
                        buy_venue_id: buy.id(),
                        sell_venue_id: sell.id(),
                        kind,
                        flags: 0,
                        reserved: [0; 6],
                    }));
                }
            }
        }
    }
    for (kind, second) in [(GAP_DISCONNECT, GAP_START_S), (GAP_RECONNECT, GAP_END_S)] {
        records.push(OutRecord::Gap(GapEvent {
            ts_ns: DAY_START_NS + second * SECOND_NS,
            connection_id: 1,
            symbol_id: symbol_ids[0],
            venue_id: Venue::Binance.id(),
            kind,
            reserved: [0; 5],
        }));
    }
    (records, qualifying)
}

/// Writes the generated day under `root` through the real Parquet plugin (host and ABI) and
/// returns how many pairs qualify for `MIN_CYCLES`.
fn write_day(plugin: &Path, root: &Path) -> usize {
    let registry = Arc::new(SymbolRegistry::new(16));
    let (records, qualifying) = day_records(&registry);
    let mut sink = SinkConfig::new("history", plugin);
    sink.ring_capacity_records = 65_536;
    sink.config = toml::from_str(&parquet_config_toml(root)).expect("plugin config is TOML");
    let mut host = SinkHost::start(&[sink], 1, Some(registry)).expect("the parquet plugin starts");
    let mut outbounds = host.take_sink_outbounds();
    for chunk in records.chunks(1_000) {
        for record in chunk {
            outbounds[0].emit(record);
        }
        outbounds[0].flush();
    }
    drop(outbounds);
    let stats = host.shutdown();
    assert_eq!(stats[0].lost(), 0, "{:?}", stats[0]);
    assert_eq!(stats[0].delivered, records.len() as u64, "{:?}", stats[0]);
    qualifying
}

// ---------- the engine ----------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a loopback port is free")
        .port()
}

/// `tickflow run` against `sim`: Parquet history under `root`, the broadcast sink on a port the
/// OS picks, the control plane on `http_port` reading `root`, memory trend sampled every 200 ms.
fn run_config_toml(
    sim: &SimVenues,
    parquet: &Path,
    broadcast: &Path,
    root: &Path,
    http_port: u16,
) -> String {
    let quoted: Vec<String> = sim
        .config()
        .symbols
        .iter()
        .map(|symbol| format!("\"{symbol}\""))
        .collect();
    let mut text = format!(
        "[engine]\nshards = 1\nmax_symbols = 64\nmax_connection_slots = 16\nring_capacity_records = 8192\n\
         [windows]\nbucket_ms = 100\nbuckets = 50\nmax_windows = 1000\nsnapshot_interval_ms = 100\nthresholds_bp = [{THRESHOLD_BP:?}]\n\
         [feeds]\nsymbols = [{}]\nchannels = [\"bbo\", \"trades\"]\nstats_interval_ms = 1000\nshutdown_deadline_ms = 2000\n",
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
        "[http]\nbind = \"127.0.0.1:{http_port}\"\nhistory_dir = {:?}\ntrend_interval_ms = 200\n",
        root.display().to_string()
    ));
    text.push_str(&format!(
        "[[sinks]]\nname = \"history\"\npath = {:?}\n[sinks.config]\n{}",
        parquet.display().to_string(),
        parquet_config_toml(root)
    ));
    text.push_str(&format!(
        "[[sinks]]\nname = \"live\"\npath = {:?}\npolicy = \"conflate\"\n[sinks.config]\n\
         bind = \"127.0.0.1:0\"\nflush_interval_ms = 100\nallowed_origins = [\"http://127.0.0.1:{http_port}\"]\n",
        broadcast.display().to_string()
    ));
    text
}

/// A running `tickflow run`, killed and reaped on drop; its stderr goes to a file (shown when the
/// test fails).
struct Engine {
    child: std::process::Child,
    log_path: PathBuf,
}

impl Engine {
    fn start(config_path: &Path, log_path: &Path) -> Engine {
        let log = std::fs::File::create(log_path).expect("the log file is creatable");
        let child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(["run", "--config"])
            .arg(config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .spawn()
            .expect("tickflow starts");
        Engine {
            child,
            log_path: log_path.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `GET path` answers `want_status`.
    fn wait_status(&mut self, port: u16, path: &str, want_status: u16) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the engine exited ({status}); its stderr:\n{}", self.log());
            }
            if http_status(port, path) == Some(want_status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} never answered {want_status}; the engine's stderr:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a plain HTTP/1.1 `GET path` on loopback, or None while nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut head = [0_u8; 32];
    let read = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..read]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

// ---------- the test ----------

#[test]
fn dashboard_in_headless_chromium_shows_live_values_streamed_history_and_memory() {
    let browser_dir = workspace_dir().join("engine/control/tests/browser");
    assert!(
        browser_dir
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in {}: .ci/run installs it \
         (npm ci --prefix engine/control/tests/browser)",
        browser_dir.display()
    );
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.is_file(),
        "{} is missing: .ci/run installs Debian's chromium package",
        chromium.display()
    );

    let parquet = built_plugin("tickflow-parquet", "tickflow_parquet");
    let broadcast = built_plugin("tickflow-ws-broadcast", "tickflow_ws_broadcast");
    let dir = scratch_dir("browser");
    let root = dir.join("history");
    let qualifying = write_day(&parquet, &root);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let sim = runtime.block_on(async {
        SimVenues::start(SimConfig {
            venues: Venue::ALL.to_vec(),
            symbols: SYMBOLS.iter().map(|symbol| symbol.to_string()).collect(),
            bbo_per_s_per_symbol: 20.0,
            trades_per_s_per_symbol: 2.0,
            tick_ms: 5,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts")
    });
    let http_port = free_port();
    let config_path = dir.join("engine.toml");
    std::fs::write(
        &config_path,
        run_config_toml(&sim, &parquet, &broadcast, &root, http_port),
    )
    .expect("config is writable");
    let mut engine = Engine::start(&config_path, &dir.join("engine.log"));
    engine.wait_status(http_port, "/ready", 200);

    let artifacts = artifacts_dir();
    let output = Command::new("node")
        .arg(browser_dir.join("dashboard.test.mjs"))
        .arg(format!("http://127.0.0.1:{http_port}"))
        .args(["--date", DAY, "--min-cycles", &MIN_CYCLES.to_string()])
        .args([
            "--threshold-bp",
            &THRESHOLD_BP.to_string(),
            "--max-points",
            "1000",
        ])
        .args(["--expect-pairs", &qualifying.to_string(), "--expect-ws"])
        .arg("--artifacts")
        .arg(&artifacts)
        .args(["--timeout-ms", &DEADLINE.as_millis().to_string()])
        .output()
        .expect("node runs (Node 20 is part of the CI machine)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "PASS"),
        "the browser test failed (exit {:?}):\n{stdout}\n{stderr}\nthe engine's stderr:\n{}",
        output.status.code(),
        engine.log()
    );
    for screenshot in ["live", "history", "history-error", "memory"] {
        let path = artifacts.join(format!("{screenshot}.png"));
        assert!(path.is_file(), "no screenshot {}", path.display());
    }
    drop(engine);
    drop(sim);
}
