//! Scale-out on NATS JetStream (docs/scale-out.md), with real processes: a real `nats-server
//! -js`, two collector engines (`config/scale-out/collector.toml`, each owning two simulated
//! venues, pass-through, publishing through the NATS sink plugin), then one engine consuming every
//! partition and two aggregators owning half of the partitions each
//! (`config/scale-out/aggregator.toml`, event time). Per pair, the aggregators' spread samples
//! (window statistics) and opportunity cycles must equal the single engine's.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tickflow_core::venue::Venue;
use tickflow_sim::{SimConfig, SimVenues};

use crate::sink_budget::built_plugin;

const DEADLINE: Duration = Duration::from_secs(60);

/// A real `nats-server -js` on a free loopback port, killed on drop.
struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    fn start(store: &Path) -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        NatsServer::start_on(store, port)
    }

    fn start_on(store: &Path, port: u16) -> NatsServer {
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (.ci/run installs the Debian package)");
        let server = NatsServer { child, port };
        wait_until("nats-server accepts connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms; fails the test after `DEADLINE` (a bound, not a timing
/// assertion).
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `tickflow run` whose stderr goes to a file; stopped with SIGTERM.
struct Engine {
    child: Child,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    name: String,
}

impl Engine {
    fn start(dir: &Path, name: &str, config: &toml::Table) -> Engine {
        // Several engines on one machine: each control plane on a port the OS picks.
        let mut config = config.clone();
        let mut http = config
            .get("http")
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default();
        http.insert("bind".into(), "127.0.0.1:0".into());
        config.insert("http".into(), http.into());
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config_path,
            toml::to_string(&config).expect("serializable"),
        )
        .expect("scratch is writable");
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("scratch is writable");
        let stdout_path = dir.join(format!("{name}.stdout"));
        let stdout = std::fs::File::create(&stdout_path).expect("scratch is writable");
        let child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(stdout)
            .stderr(stderr)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .spawn()
            .expect("tickflow starts");
        Engine {
            child,
            stderr_path,
            stdout_path,
            name: name.to_string(),
        }
    }

    /// The control plane's address, from the line the engine prints at start.
    fn control_addr(&self) -> std::net::SocketAddr {
        let mut addr = None;
        wait_until(&format!("{} prints its control plane", self.name), || {
            addr = std::fs::read_to_string(&self.stdout_path)
                .unwrap_or_default()
                .lines()
                .find_map(|line| line.strip_prefix("tickflow: control plane on http://"))
                .and_then(|rest| rest.split('/').next())
                .and_then(|host_port| host_port.parse().ok());
            addr.is_some()
        });
        addr.expect("waited for it")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The newest `tickflow-stats` line.
    fn stats(&self) -> Option<serde_json::Value> {
        self.stderr()
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("tickflow-stats "))
            .and_then(|json| serde_json::from_str(json).ok())
    }

    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().expect("tickflow exits");
        assert!(
            exit.success(),
            "{} exited with {exit:?}:\n{}",
            self.name,
            self.stderr()
        );
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory of this test's own (emptied first), with a `store` for nats-server.
fn scratch(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("store")).expect("scratch is writable");
    dir
}

fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn scale_out_config(name: &str) -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/scale-out")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("config/scale-out is in the repository");
    text.parse::<toml::Table>().expect("valid TOML")
}

fn table<'a>(value: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    value
        .get_mut(key)
        .and_then(toml::Value::as_table_mut)
        .unwrap_or_else(|| panic!("[{key}] in the config"))
}

fn first_of<'a>(value: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    value
        .get_mut(key)
        .and_then(toml::Value::as_array_mut)
        .and_then(|array| array.first_mut())
        .and_then(toml::Value::as_table_mut)
        .unwrap_or_else(|| panic!("[[{key}]] in the config"))
}

fn collector_config(
    name: &str,
    venues: &[Venue],
    sim: &SimVenues,
    nats_url: &str,
    plugin: &Path,
) -> toml::Table {
    let mut config = scale_out_config("collector.toml");
    let feeds = table(&mut config, "feeds");
    feeds.insert("stats_interval_ms".into(), 100.into());
    let symbols: Vec<toml::Value> = sim
        .config()
        .symbols
        .iter()
        .map(|symbol| symbol.clone().into())
        .collect();
    feeds.insert("symbols".into(), symbols.into());
    let mut venue_tables = toml::Table::new();
    for venue in venues {
        let mut venue_table = toml::Table::new();
        venue_table.insert(
            "url".into(),
            sim.url(*venue).expect("simulated venue").into(),
        );
        venue_tables.insert(venue.name().into(), venue_table.into());
    }
    feeds.insert("venue".into(), venue_tables.into());
    let sink = first_of(&mut config, "sinks");
    sink.insert("path".into(), plugin.display().to_string().into());
    let sink_config = table(sink, "config");
    sink_config.insert("url".into(), vec![toml::Value::from(nats_url)].into());
    sink_config.insert("collector".into(), name.into());
    config
}

fn aggregator_config(
    durable: &str,
    partitions: &[i64],
    shards: i64,
    nats_url: &str,
    plugin: &Path,
    output: &Path,
) -> toml::Table {
    let mut config = scale_out_config("aggregator.toml");
    table(&mut config, "engine").insert("shards".into(), shards.into());
    table(&mut config, "feeds").insert("stats_interval_ms".into(), 100.into());
    let source = first_of(&mut config, "sources");
    source.insert("url".into(), vec![toml::Value::from(nats_url)].into());
    source.insert("durable".into(), durable.into());
    source.insert(
        "partitions".into(),
        partitions
            .iter()
            .map(|partition| toml::Value::from(*partition))
            .collect::<Vec<_>>()
            .into(),
    );
    // The collectors have stopped: their silence is not what this test compares.
    source.insert("heartbeat_timeout_ms".into(), 0.into());
    let mut sink = toml::Table::new();
    sink.insert("name".into(), "records".into());
    sink.insert("path".into(), plugin.display().to_string().into());
    sink.insert("policy".into(), "block".into());
    sink.insert("block_timeout_ms".into(), 1000.into());
    sink.insert("ring_capacity_records".into(), 65_536.into());
    let mut sink_config = toml::Table::new();
    sink_config.insert("path".into(), output.display().to_string().into());
    sink_config.insert("names".into(), true.into());
    sink.insert("config".into(), sink_config.into());
    config.insert("sinks".into(), vec![toml::Value::from(sink)].into());
    config
}

/// Spread samples and opportunity events of an NDJSON file, keyed per pair and time, without
/// the engine-local symbol id (the names are the identity across engines).
fn results(path: &Path) -> BTreeMap<String, serde_json::Value> {
    let file = std::fs::File::open(path).expect("the sink wrote its file");
    let mut out = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.expect("readable");
        let mut value: serde_json::Value = serde_json::from_str(&line).expect("NDJSON");
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        if kind != "spread_sample" && kind != "opportunity" {
            continue;
        }
        let key = format!(
            "{kind} {} {} {} {} {}",
            value["symbol"],
            value["venue_id"],
            value["sell_venue_id"],
            value["bucket_start_ns"],
            value["ts_ns"]
        );
        if let Some(object) = value.as_object_mut() {
            object.remove("symbol_id");
        }
        let previous = out.insert(key.clone(), value);
        assert!(previous.is_none(), "{key} twice in {}", path.display());
    }
    out
}

/// Waits until every partition consumer of `durable` (`<durable>-p<partition>`) has nothing
/// pending and nothing unacknowledged.
fn wait_drained(
    runtime: &tokio::runtime::Runtime,
    nats_url: &str,
    durable: &str,
    partitions: &[i64],
) {
    wait_drained_stream(runtime, nats_url, "TICKFLOW", durable, partitions);
}

fn wait_drained_stream(
    runtime: &tokio::runtime::Runtime,
    nats_url: &str,
    stream_name: &str,
    durable: &str,
    partitions: &[i64],
) {
    let stream = runtime.block_on(async {
        let client = async_nats::connect(nats_url).await.expect("connects");
        async_nats::jetstream::new(client)
            .get_stream(stream_name)
            .await
            .expect("the collectors made the stream")
    });
    wait_until(&format!("{durable} consumed the stream"), || {
        runtime.block_on(async {
            for partition in partitions {
                let Ok(info) = stream
                    .consumer_info(format!("{durable}-p{partition}"))
                    .await
                else {
                    return false;
                };
                if info.num_pending > 0 || info.num_ack_pending > 0 {
                    return false;
                }
            }
            true
        })
    });
}

/// Each collector published, through the NATS sink, the engine's once-a-second `VenueStatus`
/// (ABI 1.3) of each venue it owns on `tickflow.heartbeat.<collector>.<venue>`.
fn assert_heartbeats(runtime: &tokio::runtime::Runtime, nats_url: &str) {
    runtime.block_on(async {
        let client = async_nats::connect(nats_url).await.expect("connects");
        let stream = async_nats::jetstream::new(client)
            .get_stream("TICKFLOW")
            .await
            .expect("the collectors made the stream");
        for (collector, venue) in [
            ("collector-a", Venue::Binance),
            ("collector-a", Venue::Okx),
            ("collector-b", Venue::Bybit),
            ("collector-b", Venue::Gate),
        ] {
            let subject =
                tickflow_formats::wire::heartbeat_subject("tickflow", collector, venue.name());
            let message = stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .unwrap_or_else(|error| panic!("a heartbeat on {subject}: {error}"));
            let record = tickflow_formats::wire::decode(&message.payload).expect("decodes");
            let tickflow_formats::wire::WireBody::VenueStatus(status) = record.body else {
                panic!("{subject} carries a venue status, not {:?}", record.body);
            };
            assert_eq!(record.collector, collector);
            assert_eq!(record.names.venue, venue.name());
            assert_eq!(status.connections_planned, 1, "{subject}");
            assert!(status.last_data_ns > 0, "{subject}: {status:?}");
        }
    });
}

#[test]
fn two_collectors_and_two_aggregators_equal_one_engine_per_pair() {
    let dir = scratch("scale-out");
    let nats_plugin = built_plugin("tickflow-nats", "tickflow_nats");
    let records_plugin = built_plugin("tickflow-example-stdout", "tickflow_example_stdout");
    let server = NatsServer::start(&dir.join("store"));
    let runtime = test_runtime();
    let sim = runtime
        .block_on(SimVenues::start(SimConfig {
            venues: vec![Venue::Binance, Venue::Okx, Venue::Bybit, Venue::Gate],
            symbols: vec![
                "BTC-USDT".into(),
                "ETH-USDT".into(),
                "SOL-USDT".into(),
                "XRP-USDT".into(),
            ],
            bbo_per_s_per_symbol: 40.0,
            trades_per_s_per_symbol: 0.0,
            tick_ms: 5,
            ..SimConfig::default()
        }))
        .expect("the simulated venues start");

    // Collectors: each owns two venues and publishes; then they stop (flushing what they hold),
    // so the stream holds a fixed set of records for everyone downstream.
    let collectors = [
        ("collector-a", [Venue::Binance, Venue::Okx]),
        ("collector-b", [Venue::Bybit, Venue::Gate]),
    ]
    .map(|(name, venues)| {
        Engine::start(
            &dir,
            name,
            &collector_config(name, &venues, &sim, &server.url(), &nats_plugin),
        )
    });
    for collector in &collectors {
        wait_until(&format!("{} publishes quotes", collector.name), || {
            collector
                .stats()
                .is_some_and(|stats| stats["quotes"].as_u64().unwrap_or(0) >= 600)
        });
    }
    for collector in collectors {
        collector.stop();
    }
    drop(sim);
    assert_heartbeats(&runtime, &server.url());

    // One engine with every partition, two aggregators with half each, all in event time.
    let outputs =
        ["single", "aggregator-0", "aggregator-1"].map(|name| dir.join(format!("{name}.ndjson")));
    let engines = [
        ("single", vec![0, 1, 2, 3], 2, &outputs[0]),
        ("aggregator-0", vec![0, 1], 1, &outputs[1]),
        ("aggregator-1", vec![2, 3], 1, &outputs[2]),
    ]
    .map(|(name, partitions, shards, output)| {
        let config = aggregator_config(
            name,
            &partitions,
            shards,
            &server.url(),
            &records_plugin,
            output,
        );
        (Engine::start(&dir, name, &config), partitions)
    });
    for (engine, partitions) in &engines {
        wait_drained(&runtime, &server.url(), &engine.name, partitions);
    }
    let applied: Vec<u64> = engines
        .iter()
        .map(|(engine, _)| {
            engine.stats().map_or(0, |stats| {
                stats["sources"][0]["applied"].as_u64().unwrap_or(0)
            })
        })
        .collect();
    for (engine, _) in engines {
        engine.stop();
    }
    assert!(applied[0] > 0, "the single engine applied records");

    let single = results(&outputs[0]);
    let mut aggregated = results(&outputs[1]);
    aggregated.extend(results(&outputs[2]));
    let samples = single
        .keys()
        .filter(|key| key.starts_with("spread_sample"))
        .count();
    assert!(
        samples > 100,
        "spread samples of the single engine: {samples}"
    );
    let only_single: Vec<&String> = single
        .keys()
        .filter(|key| !aggregated.contains_key(*key))
        .take(5)
        .collect();
    let only_aggregated: Vec<&String> = aggregated
        .keys()
        .filter(|key| !single.contains_key(*key))
        .take(5)
        .collect();
    assert!(
        only_single.is_empty() && only_aggregated.is_empty(),
        "only in the single engine: {only_single:?}; only in the aggregators: {only_aggregated:?}"
    );
    for (key, value) in &single {
        assert_eq!(&aggregated[key], value, "{key}");
    }
}

#[test]
fn a_killed_collector_s_venues_stop_being_live_at_the_aggregator() {
    let dir = scratch("scale-out-liveness");
    let nats_plugin = built_plugin("tickflow-nats", "tickflow_nats");
    let records_plugin = built_plugin("tickflow-example-stdout", "tickflow_example_stdout");
    let server = NatsServer::start(&dir.join("store"));
    let runtime = test_runtime();
    let sim = runtime
        .block_on(SimVenues::start(SimConfig {
            venues: vec![Venue::Binance, Venue::Okx],
            symbols: vec!["BTC-USDT".into(), "ETH-USDT".into()],
            bbo_per_s_per_symbol: 20.0,
            trades_per_s_per_symbol: 0.0,
            tick_ms: 5,
            ..SimConfig::default()
        }))
        .expect("the simulated venues start");
    let collector = Engine::start(
        &dir,
        "collector-a",
        &collector_config(
            "collector-a",
            &[Venue::Binance, Venue::Okx],
            &sim,
            &server.url(),
            &nats_plugin,
        ),
    );
    wait_until("the collector publishes", || {
        collector
            .stats()
            .is_some_and(|stats| stats["quotes"].as_u64().unwrap_or(0) > 0)
    });
    let mut config = aggregator_config(
        "aggregator",
        &[0, 1, 2, 3],
        1,
        &server.url(),
        &records_plugin,
        &dir.join("aggregator.ndjson"),
    );
    first_of(&mut config, "sources").insert("heartbeat_timeout_ms".into(), 1_500.into());
    let aggregator = Engine::start(&dir, "aggregator", &config);
    let source = |aggregator: &Engine, key: &str| {
        aggregator
            .stats()
            .and_then(|stats| stats["sources"][0][key].as_u64())
            .unwrap_or(0)
    };
    wait_until("heartbeats and quotes reach the aggregator", || {
        source(&aggregator, "heartbeats") > 0 && source(&aggregator, "applied") > 0
    });
    assert_eq!(source(&aggregator, "venues_silenced"), 0);
    // SIGKILL: no goodbye, no gap of its own; only its silence tells.
    let mut collector = collector;
    collector.child.kill().expect("the collector is killed");
    let _ = collector.child.wait();
    wait_until("both of the collector's venues are silenced", || {
        source(&aggregator, "venues_silenced") >= 2
    });
    let gaps = aggregator
        .stats()
        .and_then(|stats| stats["shard_gaps"].as_u64())
        .unwrap_or(0);
    // One GAP_DISCONNECT per (symbol, venue) the collector carried: 2 symbols × 2 venues.
    assert!(gaps >= 4, "shard gaps after the silence: {gaps}");
    aggregator.stop();
    drop(sim);
}

/// The Debian package installs `nats-server` in /usr/sbin, which a non-root PATH may lack.
fn nats_server_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

/// Quotes of three venues (one collector each) for two symbols, 25 ms apart per venue with the
/// venues' phases interleaved, prices on a deterministic walk; receive times from `start_ns`.
/// Each collector's sequence numbers follow receive time.
fn interleaved_quotes(start_ns: i64) -> Vec<(String, tickflow_core::record::Quote, String, u64)> {
    let venues = [(Venue::Binance, 0), (Venue::Okx, 7), (Venue::Bybit, 13)];
    let symbols = [("BTC-USDT", 100.0), ("ETH-USDT", 10.0)];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut records = Vec::new();
    for step in 0..60i64 {
        for (venue, phase_ms) in venues {
            for (symbol_index, (symbol, base)) in symbols.into_iter().enumerate() {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let wobble = ((state >> 33) % 200) as f64 / 10_000.0 - 0.01;
                let mid = base * (1.0 + wobble);
                let quote = tickflow_core::record::Quote {
                    bid: mid * 0.9999,
                    bid_qty: 1.0,
                    ask: mid * 1.0001,
                    ask_qty: 1.0,
                    ts_exchange_ns: 0,
                    ts_recv_ns: start_ns + (step * 25 + phase_ms) * 1_000_000,
                    seq: 0,
                    symbol_id: tickflow_core::record::SymbolId(0),
                    venue_id: tickflow_core::record::VenueId(venue.id().0),
                    flags: 0,
                    reserved: 0,
                };
                records.push((
                    venue.name().to_string(),
                    quote,
                    symbol.to_string(),
                    step as u64 * symbols.len() as u64 + symbol_index as u64 + 1,
                ));
            }
        }
    }
    records
}

/// Collectors' messages interleave in the stream in an order of their own (publish batching, a
/// collector catching up): with `reorder_window_ms`, an aggregator in event time computes from
/// a shuffled stream exactly what it computes from the same records in receive-time order;
/// without it, the answer changes (so this test can tell).
#[test]
fn the_reorder_window_makes_the_stream_order_irrelevant() {
    let dir = scratch("scale-out-reorder");
    let records_plugin = built_plugin("tickflow-example-stdout", "tickflow_example_stdout");
    let server = NatsServer::start(&dir.join("store"));
    let runtime = test_runtime();
    let jetstream = runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connects");
        let jetstream = async_nats::jetstream::new(client);
        for (name, prefix) in [("SORTED", "sorted"), ("SHUFFLED", "shuffled")] {
            jetstream
                .create_stream(async_nats::jetstream::stream::Config {
                    name: name.into(),
                    subjects: vec![format!("{prefix}.>")],
                    ..Default::default()
                })
                .await
                .expect("the stream is created");
        }
        jetstream
    });

    // The aggregators consume before anything is published, as they would live.
    let outputs =
        ["sorted", "reordered", "arrival-order"].map(|name| dir.join(format!("{name}.ndjson")));
    let engines = [
        ("sorted", "SORTED", "sorted", 1_000, &outputs[0]),
        ("reordered", "SHUFFLED", "shuffled", 1_000, &outputs[1]),
        ("arrival-order", "SHUFFLED", "shuffled", 0, &outputs[2]),
    ]
    .map(|(name, stream, prefix, reorder_window_ms, output)| {
        let mut config = aggregator_config(name, &[0], 1, &server.url(), &records_plugin, output);
        let source = first_of(&mut config, "sources");
        source.insert("stream".into(), stream.into());
        source.insert("prefix".into(), prefix.into());
        source.insert("partition_count".into(), 1.into());
        source.insert("reorder_window_ms".into(), reorder_window_ms.into());
        (Engine::start(&dir, name, &config), stream)
    });
    for (engine, _) in &engines {
        wait_until(&format!("{} consumes", engine.name), || {
            engine
                .stats()
                .is_some_and(|stats| stats["sources"][0]["sessions"].as_u64().unwrap_or(0) >= 1)
        });
    }

    // Receive times a minute old: the release order depends on the delivery order only, never
    // on the wall clock. The shuffle moves each record by up to 300 ms of receive time, well
    // inside the 1 000 ms window.
    let start_ns = tickflow_core::record::now_ns() - 60_000_000_000;
    let records = interleaved_quotes(start_ns);
    let mut shuffled: Vec<usize> = (0..records.len()).collect();
    shuffled.sort_by_key(|index| {
        let jitter_ns = (*index as i64 * 7_919 % 300) * 1_000_000;
        records[*index].1.ts_recv_ns + jitter_ns
    });
    assert_ne!(shuffled, (0..records.len()).collect::<Vec<_>>());
    runtime.block_on(async {
        for (prefix, order) in [
            ("sorted", (0..records.len()).collect::<Vec<_>>()),
            ("shuffled", shuffled),
        ] {
            for index in order {
                let (venue, quote, symbol, seq) = &records[index];
                let mut payload = Vec::new();
                tickflow_formats::wire::encode_quote(
                    quote,
                    &tickflow_formats::wire::WireNames {
                        venue,
                        sell_venue: "",
                        symbol,
                    },
                    &format!("collector-{venue}"),
                    *seq,
                    &mut payload,
                )
                .expect("encodes");
                let subject = tickflow_formats::wire::subject(
                    prefix,
                    tickflow_formats::wire::WireKind::Quote,
                    0,
                    venue,
                    symbol,
                );
                jetstream
                    .publish(subject, payload.into())
                    .await
                    .expect("published")
                    .await
                    .expect("stored");
            }
        }
    });

    for (engine, stream) in &engines {
        wait_drained_stream(&runtime, &server.url(), stream, &engine.name, &[0]);
        // A stats line written after the last release (they come every 100 ms).
        wait_until(
            &format!("{}'s stats show every record applied", engine.name),
            || {
                engine.stats().is_some_and(|stats| {
                    stats["sources"][0]["applied"] == records.len() as u64
                        && stats["sources"][0]["reorder_held"] == 0
                })
            },
        );
    }
    let counters: Vec<serde_json::Value> = engines
        .iter()
        .map(|(engine, _)| engine.stats().expect("stats")["sources"][0].clone())
        .collect();
    for (engine, _) in engines {
        engine.stop();
    }
    for (name, source) in ["sorted", "reordered", "arrival-order"]
        .iter()
        .zip(&counters)
    {
        assert_eq!(source["applied"], records.len() as u64, "{name}: {source}");
        assert_eq!(source["reorder_late"], 0, "{name}: {source}");
        assert_eq!(source["reorder_overflow"], 0, "{name}: {source}");
    }
    assert!(
        counters[1]["out_of_order"].as_u64().unwrap_or(0) > 0,
        "the shuffled stream holds collector sequences out of order: {}",
        counters[1]
    );

    let sorted = results(&outputs[0]);
    let reordered = results(&outputs[1]);
    let arrival_order = results(&outputs[2]);
    assert!(
        sorted
            .keys()
            .filter(|key| key.starts_with("spread_sample"))
            .count()
            > 20,
        "spread samples from the sorted stream: {}",
        sorted.len()
    );
    assert_eq!(
        sorted.keys().collect::<Vec<_>>(),
        reordered.keys().collect::<Vec<_>>()
    );
    for (key, value) in &sorted {
        assert_eq!(&reordered[key], value, "{key}");
    }
    assert_ne!(
        sorted, arrival_order,
        "without the reorder window the shuffled stream gives another answer"
    );
}

/// `/health` lists the `[[sources]]` and turns 503 while the aggregator has no connection to
/// NATS for longer than `venue_down_after_ms`, naming the source; back to 200 once the server is
/// back and the source has reconnected on its own.
#[test]
fn health_lists_the_sources_and_fails_while_nats_is_unreachable() {
    let dir = scratch("scale-out-health");
    let records_plugin = built_plugin("tickflow-example-stdout", "tickflow_example_stdout");
    let mut server = NatsServer::start(&dir.join("store"));
    let mut config = aggregator_config(
        "health",
        &[0, 1],
        1,
        &server.url(),
        &records_plugin,
        &dir.join("records.ndjson"),
    );
    first_of(&mut config, "sources").insert("create_stream".into(), true.into());
    let mut http = toml::Table::new();
    http.insert("venue_down_after_ms".into(), 1_000.into());
    config.insert("http".into(), http.into());
    let engine = Engine::start(&dir, "health", &config);
    let addr = engine.control_addr();
    let health = || crate::control::get(addr, "/health");

    wait_until("/health is ok with the source connected", || {
        let response = health();
        response.status == 200 && response.body["sources"][0]["connected"] == true
    });
    let body = health().body;
    let source = &body["sources"][0];
    assert_eq!(source["name"], "health", "{body}");
    assert_eq!(source["kind"], "nats", "{body}");
    assert_eq!(source["down_for_ms"], 0, "{body}");

    let port = server.port;
    drop(server);
    wait_until("/health is 503 naming the source", || {
        let response = health();
        response.status == 503
            && response.body["sources"][0]["connected"] == false
            && response.body["reasons"].as_array().is_some_and(|reasons| {
                reasons.iter().any(|reason| {
                    reason
                        .as_str()
                        .is_some_and(|text| text.starts_with("source health: no connection"))
                })
            })
    });
    assert!(
        health().body["sources"][0]["down_for_ms"]
            .as_u64()
            .unwrap_or(0)
            >= 1_000,
        "{}",
        health().body
    );

    server = NatsServer::start_on(&dir.join("store"), port);
    wait_until("/health is ok again after the source reconnected", || {
        let response = health();
        response.status == 200 && response.body["sources"][0]["connected"] == true
    });
    engine.stop();
    drop(server);
}

/// `tickflow-load scale-out` (the figures' harness) in miniature: a collector, a JetStream server
/// killed and restarted mid-run, an aggregator and a reference engine, all real processes; every
/// quote JetStream stored is applied once. The measurement itself is a harness command.
#[test]
fn the_scale_out_harness_runs_a_restart_end_to_end() {
    let nats_plugin = built_plugin("tickflow-nats", "tickflow_nats");
    let noop_plugin = built_plugin("tickflow-test-sink", "tickflow_test_sink");
    let audit_plugin = built_plugin("tickflow-example-stdout", "tickflow_example_stdout");
    assert_eq!(nats_plugin.parent(), noop_plugin.parent());
    assert_eq!(nats_plugin.parent(), audit_plugin.parent());
    let args = tickflow_load::scale_out::ScaleOutArgs {
        venues: vec!["binance".into(), "okx".into()],
        symbols: 5,
        updates_per_s: 20.0,
        duration_s: 4,
        warmup_s: 1,
        fault: tickflow_load::scale_out::Fault::Restart,
        outage_s: 1,
        partitions: 2,
        reorder_window_ms: 0,
        engine: Some(PathBuf::from(env!("CARGO_BIN_EXE_tickflow"))),
        plugin_dir: nats_plugin.parent().map(Path::to_path_buf),
        nats_server: PathBuf::from(nats_server_binary()),
        work_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("scale-out-harness-{}", std::process::id())),
        report: None,
        audit: true,
    };
    let report = tickflow_load::scale_out::run(&args).expect("the harness run completes");
    assert!(report.quotes_stored > 0, "{report:?}");
    assert_eq!(report.quotes_applied, report.quotes_stored, "{report:?}");
    assert_eq!(report.quotes_lost, 0);
    assert_eq!(report.quotes_applied_twice, 0);
    assert!(
        report.collector.records > 0 && report.aggregator.records > 0,
        "{report:?}"
    );
    assert!(report.reference.records > 0, "{report:?}");
    assert!(report.aggregator_latency.is_some(), "{report:?}");
    let audit = report.audit.clone().expect("the audit ran");
    assert_eq!(audit.stream_quotes, report.quotes_stored, "{audit:?}");
    assert_eq!(audit.applied_quotes, report.quotes_applied, "{audit:?}");
    assert_eq!(
        (audit.lost, audit.applied_repeats, audit.stream_repeats),
        (0, 0, 0),
        "{audit:?}"
    );
    let rendered = tickflow_load::scale_out::render(&report);
    assert!(rendered.contains("lost 0, applied twice 0"), "{rendered}");
}
