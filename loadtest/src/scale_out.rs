//! `tickflow-load scale-out`: the scale-out path measured end to end with real processes, beside
//! one engine fed the same simulated venues in the same run: a `nats-server -js` (one node, or a
//! three-node cluster on loopback with an R3 stream), a collector engine (pass-through, the NATS
//! sink plugin), an aggregator engine (a NATS source over every partition, event time) and a
//! reference engine reading the venues itself. Reports records per second through each path,
//! the shard latency (receive → spread update) of both, so the hop's added latency, CPU per
//! record of every process, and, across an optional fault mid-run (the server killed and
//! restarted on its store, or one cluster node killed and rejoined), the quotes JetStream stored
//! against the quotes the aggregator's shards handled (lost or applied twice: goal 0).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tickflow_core::venue::Venue;
use tickflow_sim::{SimConfig, SimVenues};

use crate::engine::{EngineOptions, EngineProcess, SinkOptions, engine_config_toml};
use crate::proc_stat::ProcSample;
use crate::real_rates::{LatencyFigures, LatencySample};

/// The fault injected halfway through the measured window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    None,
    /// One server: SIGKILL, down for `--outage-s`, restarted on the same port and store.
    Restart,
    /// A three-node cluster (R3 stream): one node SIGKILLed, down for `--outage-s`, restarted
    /// (it rejoins and catches up).
    NodeKill,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ScaleOutArgs {
    /// Simulated venues (the collector owns them all; the reference engine reads them too).
    #[arg(long, value_delimiter = ',', default_value = "binance,okx,bybit,gate")]
    pub venues: Vec<String>,
    #[arg(long, default_value_t = 50)]
    pub symbols: usize,
    /// Best bid/ask updates per second per symbol per venue.
    #[arg(long, default_value_t = 20.0)]
    pub updates_per_s: f64,
    /// Measured window (after `--warmup-s`).
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    #[arg(long, default_value_t = 5)]
    pub warmup_s: u64,
    #[arg(long, value_enum, default_value_t = Fault::None)]
    pub fault: Fault,
    /// How long the killed server or node stays down.
    #[arg(long, default_value_t = 3)]
    pub outage_s: u64,
    /// Symbol partitions (the aggregator owns them all: one consumer each).
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// The aggregator's `reorder_window_ms`.
    #[arg(long, default_value_t = 0)]
    pub reorder_window_ms: u64,
    /// The tickflow binary (default: next to this one).
    #[arg(long)]
    pub engine: Option<PathBuf>,
    /// Directory holding libtickflow_nats.so and libtickflow_test_sink.so (default: next to this
    /// binary; `cargo build --release -p tickflow-nats -p tickflow-test-sink`).
    #[arg(long)]
    pub plugin_dir: Option<PathBuf>,
    #[arg(long, default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// Scratch directory for the JetStream stores (emptied first).
    #[arg(long, default_value = "/tmp/tickflow-scale-out")]
    pub work_dir: PathBuf,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Check record by record: the aggregator writes every quote it applies to NDJSON (the
    /// example-stdout sink, libtickflow_example_stdout.so in the plugin directory), and the
    /// stream is read back whole; quotes are matched by (venue, symbol, receive time, venue
    /// sequence). Costs disk (about 200 B per quote) and a read of the stream at the end.
    #[arg(long)]
    pub audit: bool,
}

/// Record-by-record comparison of the stream with what the aggregator applied (`--audit`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Audit {
    /// Distinct quotes in the stream, and stored more than once.
    pub stream_quotes: u64,
    pub stream_repeats: u64,
    /// Distinct quotes the aggregator applied, and applied more than once.
    pub applied_quotes: u64,
    pub applied_repeats: u64,
    /// In the stream, never applied: acknowledged by JetStream, missing at the aggregator.
    pub lost: u64,
    /// Applied, not in the stream (JetStream delivered it, then lost it in the fault).
    pub applied_not_in_stream: u64,
}

/// One process's rate and CPU over the measured window.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ProcessFigures {
    pub name: String,
    pub records: u64,
    pub records_per_s: f64,
    pub cpu_ns: u64,
    pub cpu_percent_of_one_core: f64,
    pub rss_kb: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The worst stats interval's p99.9 (a fault's outage shows here).
    pub p999_worst_interval_us: f64,
    pub intervals: usize,
}

impl From<LatencyFigures> for Latency {
    fn from(figures: LatencyFigures) -> Latency {
        Latency {
            p50_us: figures.p50_ns as f64 / 1_000.0,
            p99_us: figures.p99_ns as f64 / 1_000.0,
            p999_us: figures.p999_ns as f64 / 1_000.0,
            p999_worst_interval_us: figures.p999_worst_interval_ns as f64 / 1_000.0,
            intervals: figures.intervals,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ScaleOutReport {
    pub fault: Fault,
    pub venues: usize,
    pub symbols: usize,
    pub offered_quotes_per_s: f64,
    pub measured_s: f64,
    pub reorder_window_ms: u64,
    pub collector: ProcessFigures,
    pub nats_servers: ProcessFigures,
    pub aggregator: ProcessFigures,
    pub reference: ProcessFigures,
    /// Receive (collector's frame read) → aggregator spread update.
    pub aggregator_latency: Option<Latency>,
    /// Receive → spread update inside one engine.
    pub reference_latency: Option<Latency>,
    /// Quote messages JetStream stored (after its de-duplication by message id).
    pub quotes_stored: u64,
    /// The stream at the end: messages of every kind, last sequence assigned, interior deletes.
    pub stream_messages: u64,
    pub stream_last_sequence: u64,
    pub stream_deleted: u64,
    /// Messages the aggregator's source took as new (received − redeliveries − duplicates).
    pub source_messages_new: u64,
    /// Quotes the aggregator's shards handled.
    pub quotes_applied: u64,
    /// `quotes_stored − quotes_applied` when positive: acknowledged by JetStream, never applied.
    pub quotes_lost: u64,
    /// `quotes_applied − quotes_stored` when positive: applied twice.
    pub quotes_applied_twice: u64,
    /// Removed before the shards by the source: redeliveries and duplicates.
    pub redeliveries_removed: u64,
    pub duplicates_removed: u64,
    /// Behind the consumer's handled position yet new (the stream reused a lost tail's numbers).
    pub sequences_reused: u64,
    pub source_sessions: u64,
    /// The collector's NATS sink: records dropped (buffer full while the server was away).
    pub collector_sink_lost: u64,
    pub load_average_1m: Option<f64>,
    pub audit: Option<Audit>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleOutError {
    #[error("{0}")]
    Setup(String),
    #[error("engine: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("NATS: {0}")]
    Nats(String),
}

fn free_port() -> Result<u16, ScaleOutError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `nats-server` processes (one, or a cluster of three), killed on drop.
struct NatsServers {
    binary: PathBuf,
    dir: PathBuf,
    client_ports: Vec<u16>,
    route_ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
}

impl NatsServers {
    fn start(binary: &Path, dir: &Path, count: usize) -> Result<NatsServers, ScaleOutError> {
        let mut servers = NatsServers {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            client_ports: (0..count).map(|_| free_port()).collect::<Result<_, _>>()?,
            route_ports: (0..count).map(|_| free_port()).collect::<Result<_, _>>()?,
            nodes: (0..count).map(|_| None).collect(),
        };
        for index in 0..count {
            servers.start_node(index)?;
        }
        Ok(servers)
    }

    fn start_node(&mut self, index: usize) -> Result<(), ScaleOutError> {
        let store = self.dir.join(format!("n{index}"));
        let mut config = format!(
            "server_name: n{index}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: {:?} }}\n",
            self.client_ports[index],
            store.display().to_string(),
        );
        if self.client_ports.len() > 1 {
            let routes: Vec<String> = self
                .route_ports
                .iter()
                .map(|port| format!("nats-route://127.0.0.1:{port}"))
                .collect();
            config.push_str(&format!(
                "cluster {{ name: tickflow, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                self.route_ports[index],
                routes.join(", ")
            ));
        }
        let config_path = self.dir.join(format!("n{index}.conf"));
        std::fs::write(&config_path, config)?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| ScaleOutError::Setup(format!("{}: {error}", self.binary.display())))?;
        self.nodes[index] = Some(child);
        let port = self.client_ports[index];
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(ScaleOutError::Setup(format!(
                    "nats-server node {index} never listened on {port}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn kill_node(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn urls(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect()
    }

    fn cpu_ns(&self) -> u64 {
        self.nodes
            .iter()
            .flatten()
            .filter_map(|child| ProcSample::read(child.id()).ok())
            .map(|sample| sample.cpu_ns)
            .sum()
    }

    fn rss_kb(&self) -> u64 {
        self.nodes
            .iter()
            .flatten()
            .filter_map(|child| ProcSample::read(child.id()).ok())
            .map(|sample| sample.rss_kb)
            .sum()
    }
}

impl Drop for NatsServers {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill_node(index);
        }
    }
}

fn toml_list(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|url| format!("{url:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn aggregator_toml(
    args: &ScaleOutArgs,
    urls: &[String],
    sink_toml: &str,
    symbols: usize,
    venues: usize,
) -> String {
    let partitions: Vec<String> = (0..args.partitions).map(|p| p.to_string()).collect();
    format!(
        "# written by tickflow-load scale-out: an aggregator of every partition\n\
         [engine]\nshards = 1\nmax_symbols = {max_symbols}\nring_capacity_records = 65536\nmax_connection_slots = 2\n\
         [windows]\nbucket_ms = 1000\nbuckets = 60\nmax_windows = {max_windows}\nsnapshot_interval_ms = 1000\n\
         clock = \"event\"\nevent_lateness_ms = 2000\n\
         [feeds]\nstats_interval_ms = 1000\n\
         [http]\nbind = \"127.0.0.1:0\"\n\
         [[sources]]\nkind = \"nats\"\nurl = {urls}\nstream = \"TICKFLOW\"\ndurable = \"aggregator\"\n\
         prefix = \"tickflow\"\npartition_count = {partition_count}\npartitions = [{partitions}]\n\
         kinds = [\"quote\", \"gap\"]\n\
         # No liveness: the outage's silence would add gaps to what is counted.\n\
         heartbeat_timeout_ms = 0\nmax_ack_pending = 16384\nreorder_window_ms = {reorder}\n\
         {sink_toml}",
        max_symbols = symbols + 8,
        max_windows = (symbols * venues * venues).max(64),
        urls = toml_list(urls),
        partition_count = args.partitions,
        partitions = partitions.join(", "),
        reorder = args.reorder_window_ms,
    )
}

/// The collector's config: the load harness's engine config for the simulators, pass-through,
/// with the NATS sink.
fn collector_toml(
    sim: &SimVenues,
    args: &ScaleOutArgs,
    urls: &[String],
    nats_plugin: &Path,
) -> Result<String, ScaleOutError> {
    let replicas = if args.fault == Fault::NodeKill { 3 } else { 1 };
    let options = EngineOptions {
        sink: Some(SinkOptions {
            path: nats_plugin.to_owned(),
            config_toml: format!(
                "url = {}\ncollector = \"collector-1\"\nprefix = \"tickflow\"\npartitions = {}\n\
                 kinds = [\"quote\", \"gap\", \"venue_status\"]\nstream = \"TICKFLOW\"\nreplicas = {replicas}\n\
                 buffer_records = 1000000\n",
                toml_list(urls),
                args.partitions
            ),
            ring_capacity_records: Some(65_536),
        }),
        ..EngineOptions::default()
    };
    let text = engine_config_toml(sim, &options);
    let mut table: toml::Table = text
        .parse()
        .map_err(|error| ScaleOutError::Setup(format!("collector config: {error}")))?;
    if let Some(windows) = table.get_mut("windows").and_then(toml::Value::as_table_mut) {
        windows.insert("enabled".into(), false.into());
    }
    toml::to_string(&table)
        .map_err(|error| ScaleOutError::Setup(format!("collector config: {error}")))
        .and_then(|text| control_plane_on_any_port(&text))
}

/// Several engines on one machine: each control plane on a port the OS picks.
fn control_plane_on_any_port(text: &str) -> Result<String, ScaleOutError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|error| ScaleOutError::Setup(format!("engine config: {error}")))?;
    let mut http = toml::Table::new();
    http.insert("bind".into(), "127.0.0.1:0".into());
    table.insert("http".into(), http.into());
    toml::to_string(&table).map_err(|error| ScaleOutError::Setup(format!("engine config: {error}")))
}

fn stat_u64(stats: &serde_json::Value, path: &[&str]) -> u64 {
    let mut value = stats;
    for key in path {
        value = match key.parse::<usize>() {
            Ok(index) => &value[index],
            Err(_) => &value[*key],
        };
    }
    value.as_u64().unwrap_or(0)
}

/// What JetStream says: quotes stored, and whether every aggregator consumer is drained.
struct StreamProbe {
    runtime: tokio::runtime::Runtime,
    jetstream: async_nats::jetstream::Context,
}

impl StreamProbe {
    fn connect(urls: &[String]) -> Result<StreamProbe, ScaleOutError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let servers: Vec<async_nats::ServerAddr> = urls
            .iter()
            .map(|url| url.parse())
            .collect::<Result<_, _>>()
            .map_err(|error: std::io::Error| ScaleOutError::Nats(error.to_string()))?;
        let client = runtime
            .block_on(async_nats::connect(servers.as_slice()))
            .map_err(|error| ScaleOutError::Nats(error.to_string()))?;
        // The context spawns nothing, but async-nats asks for a runtime to be entered.
        let jetstream = {
            let _entered = runtime.enter();
            async_nats::jetstream::new(client)
        };
        Ok(StreamProbe { runtime, jetstream })
    }

    fn quotes_stored(&self) -> Result<u64, ScaleOutError> {
        self.runtime.block_on(async {
            use futures_util::TryStreamExt;
            let stream = self
                .jetstream
                .get_stream("TICKFLOW")
                .await
                .map_err(|error| ScaleOutError::Nats(error.to_string()))?;
            let counts: Vec<(String, usize)> = stream
                .info_with_subjects("tickflow.quote.>")
                .await
                .map_err(|error| ScaleOutError::Nats(error.to_string()))?
                .try_collect()
                .await
                .map_err(|error| ScaleOutError::Nats(error.to_string()))?;
            Ok(counts.iter().map(|(_, count)| *count as u64).sum())
        })
    }

    /// Every quote in the stream (`expected` of them), read through an ephemeral consumer.
    fn read_quotes(&self, expected: u64) -> Result<Vec<QuoteKey>, ScaleOutError> {
        use futures_util::StreamExt;
        self.runtime.block_on(async {
            let nats = |error: &dyn std::fmt::Display| ScaleOutError::Nats(error.to_string());
            let stream = self
                .jetstream
                .get_stream("TICKFLOW")
                .await
                .map_err(|error| nats(&error))?;
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::Config {
                    filter_subject: "tickflow.quote.>".into(),
                    ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .map_err(|error| nats(&error))?;
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(4_096)
                .messages()
                .await
                .map_err(|error| nats(&error))?;
            let mut keys = Vec::with_capacity(expected as usize);
            let mut read = 0u64;
            while read < expected {
                let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
                let Ok(Some(Ok(message))) = next else {
                    return Err(ScaleOutError::Nats(format!(
                        "the stream read back stopped after {read} of {expected} quotes"
                    )));
                };
                read += 1;
                if let Ok(record) = tickflow_formats::wire::decode(&message.payload)
                    && let tickflow_formats::wire::WireBody::Quote(quote) = record.body
                {
                    keys.push((
                        record.names.venue.to_string(),
                        record.names.symbol.to_string(),
                        quote.ts_recv_ns,
                        quote.seq,
                    ));
                }
            }
            Ok(keys)
        })
    }

    /// (messages, last sequence, interior deletes) of the stream.
    fn stream_state(&self) -> Result<(u64, u64, u64), ScaleOutError> {
        self.runtime.block_on(async {
            let mut stream = self
                .jetstream
                .get_stream("TICKFLOW")
                .await
                .map_err(|error| ScaleOutError::Nats(error.to_string()))?;
            let info = stream
                .info()
                .await
                .map_err(|error| ScaleOutError::Nats(error.to_string()))?;
            Ok((
                info.state.messages,
                info.state.last_sequence,
                info.state.deleted_count.unwrap_or(0),
            ))
        })
    }

    fn drained(&self, partitions: u32) -> bool {
        self.runtime.block_on(async {
            let Ok(stream) = self.jetstream.get_stream("TICKFLOW").await else {
                return false;
            };
            for partition in 0..partitions {
                let Ok(info) = stream
                    .consumer_info(format!("aggregator-p{partition}"))
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
    }
}

struct Window {
    started: Instant,
    collector: (u64, u64),
    aggregator: (u64, u64),
    reference: (u64, u64),
    nats_cpu_ns: u64,
}

fn cpu_of(engine: &EngineProcess) -> u64 {
    engine.sample().map(|sample| sample.cpu_ns).unwrap_or(0)
}

fn figures(
    name: &str,
    engine: &EngineProcess,
    records: (u64, u64),
    cpu: (u64, u64),
    seconds: f64,
) -> ProcessFigures {
    let records = records.1.saturating_sub(records.0);
    let cpu_ns = cpu.1.saturating_sub(cpu.0);
    ProcessFigures {
        name: name.into(),
        records,
        records_per_s: records as f64 / seconds,
        cpu_ns,
        cpu_percent_of_one_core: cpu_ns as f64 / 1e9 / seconds * 100.0,
        rss_kb: engine.sample().map(|sample| sample.rss_kb).unwrap_or(0),
    }
}

pub fn run(args: &ScaleOutArgs) -> Result<ScaleOutReport, ScaleOutError> {
    let venues: Vec<Venue> = args
        .venues
        .iter()
        .map(|name| {
            Venue::from_name(name)
                .ok_or_else(|| ScaleOutError::Setup(format!("unknown venue {name:?}")))
        })
        .collect::<Result<_, _>>()?;
    if venues.len() < 2 {
        return Err(ScaleOutError::Setup("give at least two venues".into()));
    }
    if args.partitions == 0 || args.duration_s == 0 {
        return Err(ScaleOutError::Setup(
            "--partitions and --duration-s must be at least 1".into(),
        ));
    }
    let beside_me = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let engine_path = args
        .engine
        .clone()
        .unwrap_or_else(crate::engine::default_engine_path);
    let plugin_dir = args.plugin_dir.clone().unwrap_or(beside_me);
    let nats_plugin = plugin_dir.join("libtickflow_nats.so");
    let noop_plugin = plugin_dir.join("libtickflow_test_sink.so");
    for plugin in [&nats_plugin, &noop_plugin] {
        if !plugin.exists() {
            return Err(ScaleOutError::Setup(format!(
                "{} is missing (cargo build --release -p tickflow-nats -p tickflow-test-sink)",
                plugin.display()
            )));
        }
    }
    let _ = std::fs::remove_dir_all(&args.work_dir);
    std::fs::create_dir_all(&args.work_dir)?;

    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sim = sim_runtime
        .block_on(SimVenues::start(SimConfig {
            venues: venues.clone(),
            symbols: crate::symbol_names(args.symbols),
            bbo_per_s_per_symbol: args.updates_per_s,
            trades_per_s_per_symbol: 0.0,
            ..SimConfig::default()
        }))
        .map_err(|error| ScaleOutError::Setup(format!("simulated venues: {error}")))?;
    let node_count = if args.fault == Fault::NodeKill { 3 } else { 1 };
    let mut servers = NatsServers::start(&args.nats_server, &args.work_dir, node_count)?;
    let urls = servers.urls();

    let collector_config = collector_toml(&sim, args, &urls, &nats_plugin)?;
    let reference_config = control_plane_on_any_port(&engine_config_toml(
        &sim,
        &EngineOptions {
            sink: Some(SinkOptions {
                path: noop_plugin.clone(),
                config_toml: "mode = \"noop\"\n".into(),
                ring_capacity_records: None,
            }),
            ..EngineOptions::default()
        },
    ))?;
    let applied_path = args.work_dir.join("applied.ndjson");
    let aggregator_sink = if args.audit {
        let plugin = plugin_dir.join("libtickflow_example_stdout.so");
        if !plugin.exists() {
            return Err(ScaleOutError::Setup(format!(
                "{} is missing (cargo build --release -p tickflow-example-stdout)",
                plugin.display()
            )));
        }
        // Blocking: an audit must not lose a record on the way to its file.
        format!(
            "[[sinks]]\nname = \"audit\"\npath = {:?}\npolicy = \"block\"\nblock_timeout_ms = 1000\n\
             ring_capacity_records = 65536\n[sinks.config]\npath = {:?}\nnames = true\n",
            plugin.display().to_string(),
            applied_path.display().to_string()
        )
    } else {
        format!(
            "[[sinks]]\nname = \"load\"\npath = {:?}\npolicy = \"drop_newest\"\n[sinks.config]\nmode = \"noop\"\n",
            noop_plugin.display().to_string()
        )
    };
    let aggregator_config =
        aggregator_toml(args, &urls, &aggregator_sink, args.symbols, venues.len());

    // The collector makes the stream; the aggregator's consumers then bind to it.
    let collector = EngineProcess::start(&engine_path, &collector_config, true)?;
    collector.wait_stats(
        "the collector's first quotes",
        Duration::from_secs(60),
        |stats| stat_u64(stats, &["quotes"]) > 0,
    )?;
    let probe = StreamProbe::connect(&urls)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.quotes_stored().unwrap_or(0) == 0 {
        if Instant::now() > deadline {
            return Err(ScaleOutError::Nats("no quote reached the stream".into()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let aggregator = EngineProcess::start(&engine_path, &aggregator_config, true)?;
    let reference = EngineProcess::start(&engine_path, &reference_config, true)?;
    for (name, engine, path) in [
        (
            "the aggregator's first records",
            &aggregator,
            &["sources", "0", "applied"][..],
        ),
        (
            "the reference engine's first quotes",
            &reference,
            &["shard_quotes"][..],
        ),
    ] {
        engine.wait_stats(name, Duration::from_secs(60), |stats| {
            stat_u64(stats, path) > 0
        })?;
    }
    std::thread::sleep(Duration::from_secs(args.warmup_s));

    let aggregator_applied = |engine: &EngineProcess| {
        engine
            .stats()
            .map(|stats| stat_u64(&stats, &["shard_quotes"]))
            .unwrap_or(0)
    };
    let collector_quotes = |engine: &EngineProcess| engine.stat("quotes");
    let reference_quotes = |engine: &EngineProcess| engine.stat("shard_quotes");
    let window = Window {
        started: Instant::now(),
        collector: (collector_quotes(&collector), cpu_of(&collector)),
        aggregator: (aggregator_applied(&aggregator), cpu_of(&aggregator)),
        reference: (reference_quotes(&reference), cpu_of(&reference)),
        nats_cpu_ns: servers.cpu_ns(),
    };
    let mut aggregator_samples = Vec::new();
    let mut reference_samples = Vec::new();
    let mut last_uptimes = (0u64, 0u64);
    let fault_at = Duration::from_secs(args.duration_s / 2);
    let mut fault_done = args.fault == Fault::None;
    let mut fault_cpu_ns = 0u64;
    while window.started.elapsed() < Duration::from_secs(args.duration_s) {
        std::thread::sleep(Duration::from_millis(200));
        for (engine, samples, last) in [
            (&aggregator, &mut aggregator_samples, &mut last_uptimes.0),
            (&reference, &mut reference_samples, &mut last_uptimes.1),
        ] {
            if let Some(stats) = engine.stats() {
                let uptime = stat_u64(&stats, &["uptime_ms"]);
                if uptime > *last {
                    *last = uptime;
                    if let Some(sample) = LatencySample::from_stats(&stats) {
                        samples.push(sample);
                    }
                }
            }
        }
        if !fault_done && window.started.elapsed() >= fault_at {
            fault_done = true;
            // The killed node's CPU so far would vanish from the sum: keep it.
            fault_cpu_ns = servers
                .nodes
                .first()
                .and_then(Option::as_ref)
                .and_then(|child| ProcSample::read(child.id()).ok())
                .map_or(0, |sample| sample.cpu_ns);
            eprintln!(
                "scale-out: killing nats-server node 0 for {} s",
                args.outage_s
            );
            servers.kill_node(0);
            std::thread::sleep(Duration::from_secs(args.outage_s));
            servers.start_node(0)?;
            eprintln!("scale-out: node 0 restarted");
        }
    }
    let seconds = window.started.elapsed().as_secs_f64();
    let collector_figures = figures(
        "collector",
        &collector,
        (window.collector.0, collector_quotes(&collector)),
        (window.collector.1, cpu_of(&collector)),
        seconds,
    );
    let aggregator_figures = figures(
        "aggregator",
        &aggregator,
        (window.aggregator.0, aggregator_applied(&aggregator)),
        (window.aggregator.1, cpu_of(&aggregator)),
        seconds,
    );
    let reference_figures = figures(
        "reference",
        &reference,
        (window.reference.0, reference_quotes(&reference)),
        (window.reference.1, cpu_of(&reference)),
        seconds,
    );
    // The restarted node's CPU counts from zero again.
    let nats_cpu_ns = (servers.cpu_ns() + fault_cpu_ns).saturating_sub(window.nats_cpu_ns);
    let nats_figures = ProcessFigures {
        name: format!("nats-server x{node_count}"),
        records: 0,
        records_per_s: 0.0,
        cpu_ns: nats_cpu_ns,
        cpu_percent_of_one_core: nats_cpu_ns as f64 / 1e9 / seconds * 100.0,
        rss_kb: servers.rss_kb(),
    };
    let load_average_1m = crate::proc_stat::load_average_1m();

    // The collector stops (its sink flushes what it holds); the aggregator drains the stream.
    let collector_exit = collector.terminate_with_report()?;
    drop(sim);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !probe.drained(args.partitions) {
        if Instant::now() > deadline {
            return Err(ScaleOutError::Nats(
                "the aggregator did not drain the stream within 120 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A stats line written after the drain.
    let drained_stats = aggregator.wait_stats(
        "the aggregator's stats after the drain",
        Duration::from_secs(30),
        |_| true,
    )?;
    let quotes_stored = probe.quotes_stored()?;
    let (stream_messages, stream_last_sequence, stream_deleted) = probe.stream_state()?;
    let quotes_applied = stat_u64(&drained_stats, &["shard_quotes"]);
    let source = &drained_stats["sources"][0];
    let collector_sink_lost = collector_exit
        .shutdown
        .as_ref()
        .map(|line| stat_u64(line, &["sink_lost"]))
        .unwrap_or(0);
    let report = ScaleOutReport {
        fault: args.fault,
        venues: venues.len(),
        symbols: args.symbols,
        offered_quotes_per_s: args.updates_per_s * (args.symbols * venues.len()) as f64,
        measured_s: seconds,
        reorder_window_ms: args.reorder_window_ms,
        collector: collector_figures,
        nats_servers: nats_figures,
        aggregator: aggregator_figures,
        reference: reference_figures,
        aggregator_latency: LatencyFigures::from_samples(&aggregator_samples).map(Latency::from),
        reference_latency: LatencyFigures::from_samples(&reference_samples).map(Latency::from),
        quotes_stored,
        stream_messages,
        stream_last_sequence,
        stream_deleted,
        source_messages_new: stat_u64(source, &["messages"])
            .saturating_sub(stat_u64(source, &["redeliveries"]))
            .saturating_sub(stat_u64(source, &["duplicates"])),
        quotes_applied,
        quotes_lost: quotes_stored.saturating_sub(quotes_applied),
        quotes_applied_twice: quotes_applied.saturating_sub(quotes_stored),
        redeliveries_removed: stat_u64(source, &["redeliveries"]),
        duplicates_removed: stat_u64(source, &["duplicates"]),
        sequences_reused: stat_u64(source, &["sequences_reused"]),
        source_sessions: stat_u64(source, &["sessions"]),
        collector_sink_lost,
        load_average_1m,
        audit: None,
    };
    aggregator.terminate()?;
    let mut report = report;
    if args.audit {
        report.audit = Some(audit(&probe, &applied_path, quotes_stored)?);
    }
    reference.terminate()?;
    drop(servers);
    let _ = std::fs::remove_dir_all(&args.work_dir);
    Ok(report)
}

/// A quote's identity across the stream and the aggregator's file.
type QuoteKey = (String, String, i64, u64);

fn count(keys: impl Iterator<Item = QuoteKey>) -> std::collections::HashMap<QuoteKey, u32> {
    let mut counts = std::collections::HashMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0u32) += 1;
    }
    counts
}

/// `--audit`: the stream's quotes read back whole, against the quotes the aggregator wrote.
fn audit(probe: &StreamProbe, applied_path: &Path, expected: u64) -> Result<Audit, ScaleOutError> {
    use std::io::BufRead;
    let file = std::fs::File::open(applied_path)?;
    let mut applied_keys = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if !line.starts_with("{\"kind\":\"quote\"") {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        applied_keys.push((
            value["venue"].as_str().unwrap_or_default().to_string(),
            value["symbol"].as_str().unwrap_or_default().to_string(),
            value["ts_recv_ns"].as_i64().unwrap_or(0),
            value["seq"].as_u64().unwrap_or(0),
        ));
    }
    let stream_keys = probe.read_quotes(expected)?;
    let applied = count(applied_keys.into_iter());
    let stored = count(stream_keys.into_iter());
    let repeats = |counts: &std::collections::HashMap<QuoteKey, u32>| {
        counts
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum()
    };
    Ok(Audit {
        stream_quotes: stored.len() as u64,
        stream_repeats: repeats(&stored),
        applied_quotes: applied.len() as u64,
        applied_repeats: repeats(&applied),
        lost: stored
            .keys()
            .filter(|key| !applied.contains_key(*key))
            .count() as u64,
        applied_not_in_stream: applied
            .keys()
            .filter(|key| !stored.contains_key(*key))
            .count() as u64,
    })
}

/// The report as the lines `tickflow-load scale-out` prints.
pub fn render(report: &ScaleOutReport) -> String {
    let mut out = format!(
        "scale-out: {} venues x {} symbols, offered {:.0} quotes/s, {:.1} s measured, fault {:?}, reorder window {} ms, load average {:.2}\n",
        report.venues,
        report.symbols,
        report.offered_quotes_per_s,
        report.measured_s,
        report.fault,
        report.reorder_window_ms,
        report.load_average_1m.unwrap_or(f64::NAN),
    );
    for process in [
        &report.collector,
        &report.nats_servers,
        &report.aggregator,
        &report.reference,
    ] {
        let per_record = if process.records > 0 {
            format!(
                "{:.1} us/record",
                process.cpu_ns as f64 / process.records as f64 / 1_000.0
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {:<16} {:>10.0} records/s  cpu {:>6.1} % of a core  {per_record}  rss {} MiB\n",
            process.name,
            process.records_per_s,
            process.cpu_percent_of_one_core,
            process.rss_kb / 1024,
        ));
    }
    for (name, latency) in [
        ("aggregator", &report.aggregator_latency),
        ("reference", &report.reference_latency),
    ] {
        match latency {
            Some(latency) => out.push_str(&format!(
                "  receive -> spread update, {name:<10}: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us (medians over {} intervals); worst interval's p99.9 {:.0} us\n",
                latency.p50_us, latency.p99_us, latency.p999_us, latency.intervals, latency.p999_worst_interval_us
            )),
            None => out.push_str(&format!("  receive -> spread update, {name}: no samples\n")),
        }
    }
    out.push_str(&format!(
        "  quotes stored by JetStream {}, applied by the aggregator {}: lost {}, applied twice {}; removed before the shards: {} redeliveries, {} duplicates; source sessions {}; collector sink lost {}\n",
        report.quotes_stored,
        report.quotes_applied,
        report.quotes_lost,
        report.quotes_applied_twice,
        report.redeliveries_removed,
        report.duplicates_removed,
        report.source_sessions,
        report.collector_sink_lost,
    ));
    if let Some(audit) = &report.audit {
        out.push_str(&format!(
            "  audit, quote by quote: stream {} distinct ({} stored twice), aggregator {} distinct ({} applied twice); lost {}, applied but not in the stream {}\n",
            audit.stream_quotes,
            audit.stream_repeats,
            audit.applied_quotes,
            audit.applied_repeats,
            audit.lost,
            audit.applied_not_in_stream,
        ));
    }
    out.push_str(&format!(
        "  stream: {} messages, last sequence {}, {} deleted; the aggregator's source took {} messages as new ({} at reused sequence numbers)\n",
        report.stream_messages,
        report.stream_last_sequence,
        report.stream_deleted,
        report.source_messages_new,
        report.sequences_reused,
    ));
    out
}

/// `tickflow-load scale-out`.
pub fn command(args: &ScaleOutArgs) -> Result<(), ScaleOutError> {
    let report = run(args)?;
    print!("{}", render(&report));
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|error| ScaleOutError::Setup(error.to_string()))?;
        std::fs::write(path, json)?;
    }
    Ok(())
}
