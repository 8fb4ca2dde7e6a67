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
    name: String,
}

impl Engine {
    fn start(dir: &Path, name: &str, config: &toml::Table) -> Engine {
        // Several engines on one machine: each control plane on a port the OS picks.
        let mut config = config.clone();
        let mut http = toml::Table::new();
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
        let child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(stderr)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .spawn()
            .expect("tickflow starts");
        Engine {
            child,
            stderr_path,
            name: name.to_string(),
        }
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
    let stream = runtime.block_on(async {
        let client = async_nats::connect(nats_url).await.expect("connects");
        async_nats::jetstream::new(client)
            .get_stream("TICKFLOW")
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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("scale-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("store")).expect("scratch is writable");
    let nats_plugin = built_plugin("tickflow-nats", "tickflow_nats");
    let records_plugin = built_plugin("tickflow-example-stdout", "tickflow_example_stdout");
    let server = NatsServer::start(&dir.join("store"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("scale-out-liveness-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("store")).expect("scratch is writable");
    let nats_plugin = built_plugin("tickflow-nats", "tickflow_nats");
    let records_plugin = built_plugin("tickflow-example-stdout", "tickflow_example_stdout");
    let server = NatsServer::start(&dir.join("store"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
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
