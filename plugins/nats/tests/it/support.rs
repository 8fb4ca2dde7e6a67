//! Test support: real `nats-server` processes with JetStream (one server, or a three-node cluster
//! on loopback ports), killed in `Drop`; a host table naming symbols and venues; the sink started
//! through its Rust API; a reader of the whole stream back.
//!
//! The server is the Debian package's `/usr/bin/nats-server` (2.9), or `$NATS_SERVER`. A missing
//! binary fails the test: `.ci/run` installs it.

use std::ffi::c_void;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use tickflow_formats::wire;
use tickflow_nats::{CountersSnapshot, NatsConfig, NatsSink, Urls};
use tickflow_sdk::abi::{self, Host};
use tickflow_sdk::{HostHandle, Quote, Sink, SymbolId, VenueId};

pub const SYMBOLS: [&str; 4] = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"];
pub const VENUES: [&str; 3] = ["binance", "okx", "bybit"];

/// Longest a test waits for a condition before it fails.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Endpoints published through any test host table: (name, url).
pub static PUBLISHED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn nats_server_binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".to_string())
}

/// A free loopback port (the OS chooses; the listener is closed before the server binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// One `nats-server -js` process; killed (SIGKILL) and reaped in `Drop`.
pub struct NatsServer {
    child: Option<Child>,
    args: Vec<String>,
    pub port: u16,
    pub name: String,
    pub store: PathBuf,
}

impl NatsServer {
    /// A single server with JetStream on a free loopback port, storing under `store`.
    pub fn start(store: &Path) -> NatsServer {
        NatsServer::start_with(store, free_port(), "single", &[])
    }

    /// A single server with extra command-line arguments (authorization, …).
    pub fn start_with_args(store: &Path, extra: &[&str]) -> NatsServer {
        let extra: Vec<String> = extra.iter().map(|arg| arg.to_string()).collect();
        NatsServer::start_with(store, free_port(), "single", &extra)
    }

    fn start_with(store: &Path, port: u16, name: &str, extra: &[String]) -> NatsServer {
        let mut args = vec![
            "-js".to_string(),
            "-a".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            port.to_string(),
            "-sd".to_string(),
            store.display().to_string(),
            "-n".to_string(),
            name.to_string(),
        ];
        args.extend(extra.iter().cloned());
        let mut server = NatsServer {
            child: None,
            args,
            port,
            name: name.to_string(),
            store: store.to_path_buf(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log_path = self.store.join(format!("{}.log", self.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("server log file");
        let log_err = log.try_clone().expect("server log file");
        let child = Command::new(nats_server_binary())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `{}` ({error}): install the Debian package nats-server (.ci/run does)",
                    nats_server_binary()
                )
            });
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "nats-server {} exited ({status}) before listening; its log: {}",
                    self.name,
                    std::fs::read_to_string(self.store.join(format!("{}.log", self.name)))
                        .unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < WAIT_LIMIT,
                "nats-server {} did not listen on {}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye to clients, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again with the same port, name and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three JetStream servers in one cluster on loopback ports, each storing in its own folder.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(store: &Path) -> NatsCluster {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = (0..3)
            .map(|index| {
                let routes: Vec<String> = (0..3)
                    .filter(|other| *other != index)
                    .map(|other| format!("nats://127.0.0.1:{}", cluster_ports[other]))
                    .collect();
                let dir = store.join(format!("n{index}"));
                std::fs::create_dir_all(&dir).expect("node store");
                NatsServer::start_with(
                    &dir,
                    client_ports[index],
                    &format!("n{index}"),
                    &[
                        "--cluster_name".to_string(),
                        "tickflow-test".to_string(),
                        "--cluster".to_string(),
                        format!("nats://127.0.0.1:{}", cluster_ports[index]),
                        "--routes".to_string(),
                        routes.join(","),
                    ],
                )
            })
            .collect();
        NatsCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }
}

/// A test runtime for the test's own NATS client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime builds")
}

/// A JetStream context on `urls` once JetStream answers (a cluster has elected its meta leader).
pub async fn jetstream_ready(urls: &[String]) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(urls.to_vec())
        .await
        .expect("the test client starts");
    let mut context = jetstream::new(client);
    context.set_timeout(Duration::from_secs(2));
    let started = Instant::now();
    loop {
        // (The account-info call needs a newer server's reply; asking for a stream that does not
        // exist gets "stream not found" from a ready JetStream, of any version.)
        let answer = context.get_stream("READINESS_PROBE").await.map(|_| ());
        let ready = match &answer {
            Ok(()) => true,
            Err(error) => matches!(
                error.kind(),
                GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == ErrorCode::STREAM_NOT_FOUND
            ),
        };
        if ready {
            return context;
        }
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "JetStream never answered on {urls:?}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One message of the stream.
#[derive(Debug)]
pub struct Stored {
    pub subject: String,
    pub message_id: Option<String>,
    pub payload: Vec<u8>,
}

/// Every message of `stream`, in stream order.
pub async fn read_stream(context: &jetstream::Context, stream: &str) -> Vec<Stored> {
    let started = Instant::now();
    let (handle, info) = loop {
        if let Ok(mut handle) = context.get_stream(stream).await
            && let Ok(info) = handle.info().await.cloned()
        {
            break (handle, info);
        }
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "stream {stream} never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stored = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        let message = loop {
            match handle.get_raw_message(sequence).await {
                Ok(message) => break message,
                Err(error) => {
                    assert!(
                        started.elapsed() < WAIT_LIMIT,
                        "stream {stream} message {sequence}: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        stored.push(Stored {
            subject: message.subject.to_string(),
            message_id: message
                .headers
                .get("Nats-Msg-Id")
                .map(|value| value.as_str().to_string()),
            payload: message.payload.to_vec(),
        });
    }
    stored
}

unsafe extern "C" fn symbol_name(
    _host_data: *mut c_void,
    symbol_id: u32,
    out: *mut u8,
    capacity: usize,
) -> usize {
    copy_name(SYMBOLS.get(symbol_id as usize), out, capacity)
}

unsafe extern "C" fn venue_name(
    _host_data: *mut c_void,
    venue_id: u16,
    out: *mut u8,
    capacity: usize,
) -> usize {
    copy_name(VENUES.get(venue_id as usize), out, capacity)
}

fn copy_name(name: Option<&&str>, out: *mut u8, capacity: usize) -> usize {
    let Some(name) = name else { return 0 };
    let count = name.len().min(capacity);
    // SAFETY: the plugin passes a buffer writable for `capacity` bytes.
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), out, count) };
    name.len()
}

unsafe extern "C" fn publish_endpoint(
    _host_data: *mut c_void,
    name: *const u8,
    name_len: usize,
    url: *const u8,
    url_len: usize,
) -> u32 {
    // SAFETY: the plugin passes (ptr, len) pairs valid for the call.
    let (name, url) = unsafe {
        (
            std::slice::from_raw_parts(name, name_len),
            std::slice::from_raw_parts(url, url_len),
        )
    };
    PUBLISHED
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(url).into_owned(),
        ));
    1
}

/// A 1.2 host table (leaked, like the engine's).
pub fn host() -> HostHandle {
    let table: &'static Host = Box::leak(Box::new(Host {
        struct_size: abi::HOST_SIZE_V1_2,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        host_data: std::ptr::null_mut(),
        log: None,
        symbol_name: Some(symbol_name),
        venue_name: Some(venue_name),
        metric_register: None,
        counter_add: None,
        gauge_set: None,
        histogram_record: None,
        clock_ns: None,
        publish_endpoint: Some(publish_endpoint),
        metrics_snapshot: None,
    }));
    // SAFETY: the table is leaked: valid for the process.
    unsafe { HostHandle::from_raw(table) }
}

/// A config for tests: short timeouts and backoffs, its own prefix and stream.
pub fn config(urls: Vec<String>, prefix: &str, stream: &str) -> NatsConfig {
    NatsConfig {
        url: Urls::Many(urls),
        prefix: prefix.to_string(),
        collector: Some("c1".to_string()),
        partitions: 4,
        stream: stream.to_string(),
        ack_timeout_ms: 1_000,
        reconnect_delay_initial_ms: 50,
        reconnect_delay_max_ms: 500,
        heartbeat_ms: 200,
        ..NatsConfig::default()
    }
}

pub fn start(config: NatsConfig) -> NatsSink {
    match NatsSink::create(host(), config) {
        Ok(sink) => sink,
        Err(error) => panic!("the sink starts: {error}"),
    }
}

/// Waits until `done` holds for the sink's counters; fails with them after `WAIT_LIMIT`.
pub fn wait_for(sink: &NatsSink, what: &str, done: impl Fn(&CountersSnapshot) -> bool) {
    let started = Instant::now();
    loop {
        let counters = sink.counters();
        if done(&counters) {
            return;
        }
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "waiting for {what}: counters {counters:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Quote number `index`: symbols and venues in turn, the index in `seq` and the bid.
pub fn quote(index: u64) -> Quote {
    Quote {
        bid: 100.0 + index as f64,
        bid_qty: 1.0,
        ask: 101.0 + index as f64,
        ask_qty: 2.0,
        ts_exchange_ns: 1_764_000_000_000_000_000 + index as i64,
        ts_recv_ns: 1_764_000_000_000_000_000 + index as i64 + 500,
        seq: index,
        symbol_id: SymbolId((index % SYMBOLS.len() as u64) as u32),
        venue_id: VenueId((index % VENUES.len() as u64) as u16),
        flags: 0,
        reserved: 0,
    }
}

pub fn quotes(range: std::ops::Range<u64>) -> Vec<Quote> {
    range.map(quote).collect()
}

/// Decodes every stored quote and checks each quote index in `expected` is there exactly once.
pub fn assert_quotes_exactly_once(stored: &[Stored], expected: std::ops::Range<u64>) {
    let mut seen = vec![0u32; expected.end as usize];
    let mut collector_seqs = std::collections::BTreeSet::new();
    for message in stored {
        let record = wire::decode(&message.payload).expect("stored payload decodes");
        assert!(
            collector_seqs.insert(record.seq),
            "collector seq {} stored twice",
            record.seq
        );
        assert_eq!(
            message.message_id.as_deref(),
            Some(wire::message_id(record.collector, record.seq).as_str())
        );
        if let wire::WireBody::Quote(quote) = record.body {
            seen[quote.seq as usize] += 1;
        }
    }
    let missing: Vec<u64> = expected
        .clone()
        .filter(|index| seen[*index as usize] == 0)
        .collect();
    let doubled: Vec<u64> = expected.filter(|index| seen[*index as usize] > 1).collect();
    assert!(
        missing.is_empty(),
        "quotes missing from the stream: {missing:?}"
    );
    assert!(doubled.is_empty(), "quotes stored twice: {doubled:?}");
}
