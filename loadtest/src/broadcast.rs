//! `tickflow-load broadcast`: the WebSocket broadcast sink (`plugins/ws-broadcast`, loaded
//! through the C ABI in its own process) beside a minimal Node `ws` server doing the same
//! fan-out (`loadtest/node/broadcast.js`), under the same feed and the same clients.
//!
//! Each server runs as a child process fed over one loopback TCP connection with the same
//! binary records (a JSON name header, then `kind, count, raw tf_quote / tf_spread_sample`
//! records stamped with their generation time as `ts_recv_ns`). The clients (fastwebsockets, in
//! this process) subscribe to `quotes:` and `spreads:` of their symbols; two phases per server:
//! all fast, then a share slow (reading with a delay) and a share dead (never reading, never
//! answering pings). Fast clients record generation → client-receive latency from every
//! quote's `ts_recv_ns` in an HdrHistogram, one sample per quote: the latency is measured from
//! the record's own generation time, not from when a client asked, so a stalled server shows up
//! in every late record and no coordinated-omission correction applies. The server's CPU and RSS
//! come from /proc; frames and bytes per second are counted by the clients (each in locals,
//! added to the totals once when it ends). Client sockets get a 256 KiB `SO_RCVBUF` and the
//! sink's a 256 KiB `SO_SNDBUF` (`socket_send_buffer_bytes`), so what the kernel holds for a slow
//! or dead client is bounded; the Node server keeps the kernel's defaults.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use hdrhistogram::Histogram;
use http_body_util::Empty;
use tickflow_sdk::abi::{self, Descriptor, EntryFn, Host, PluginStats};
use tickflow_sdk::{Quote, SpreadSample, SymbolId, VenueId};

use crate::proc_stat::ProcSample;

/// Why the scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(
        "{0}/node_modules/ws is missing: run `npm ci` (or `npm install`) in {0} first (tickflow-load never installs packages), or pass --skip-node"
    )]
    NodeModulesMissing(String),
    #[error("plugin {0}: {1}")]
    Plugin(String, String),
    #[error("server {0}: {1}")]
    Server(&'static str, String),
}

fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BroadcastError {
    let context = context.to_string();
    move |error| BroadcastError::Io(context, error)
}

#[derive(clap::Args, Debug, Clone)]
pub struct BroadcastArgs {
    /// WebSocket clients per phase.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Symbols each client subscribes to (`quotes:` and `spreads:` of each).
    #[arg(long, default_value_t = 100)]
    pub symbols_per_client: usize,
    /// Symbols in the feed; client i takes a window of them starting at i × 7.
    #[arg(long, default_value_t = 1000)]
    pub universe_symbols: usize,
    /// Venues per symbol.
    #[arg(long, default_value_t = 8)]
    pub venues: usize,
    /// Updates per second into the server (quotes and spread samples).
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// Share of the updates that are spread samples (the rest are quotes).
    #[arg(long, default_value_t = 0.2)]
    pub spread_share: f64,
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Before each measurement, after the clients subscribed.
    #[arg(long, default_value_t = 3)]
    pub warmup_s: u64,
    /// Second phase: this share of clients reads with `--slow-delay-ms` between frames...
    #[arg(long, default_value_t = 5.0)]
    pub slow_pct: f64,
    /// ... and this share never reads nor answers pings.
    #[arg(long, default_value_t = 1.0)]
    pub dead_pct: f64,
    #[arg(long, default_value_t = 500)]
    pub slow_delay_ms: u64,
    #[arg(long, default_value_t = 100)]
    pub flush_interval_ms: u64,
    /// Tokio worker threads of the sink.
    #[arg(long, default_value_t = 1)]
    pub sink_threads: usize,
    /// The sink library (default: libtickflow_ws_broadcast.so next to this binary).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// The folder of broadcast.js and its node_modules.
    #[arg(long, default_value = "loadtest/node")]
    pub node_dir: PathBuf,
    /// Measure the sink only.
    #[arg(long)]
    pub skip_node: bool,
    /// Tokio worker threads of the clients.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
}

/// The hidden child command: the sink loaded through the C ABI, fed from one TCP connection.
#[derive(clap::Args, Debug, Clone)]
pub struct BroadcastServerArgs {
    #[arg(long)]
    pub plugin: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub sink_threads: usize,
    #[arg(long, default_value_t = 100)]
    pub flush_interval_ms: u64,
    #[arg(long, default_value_t = 2048)]
    pub clients_max: usize,
}

// ---- the feed ----------------------------------------------------------------------------------

const KIND_QUOTE: u32 = 0;
const KIND_SPREAD: u32 = 2;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}

fn venue_names(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("v{index}")).collect()
}

/// The feed's JSON header.
fn feed_header(args: &BroadcastArgs) -> Vec<u8> {
    let header = serde_json::json!({
        "symbols": crate::symbol_names(args.universe_symbols),
        "venues": venue_names(args.venues),
    })
    .to_string();
    let mut out = (header.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out
}

fn record_bytes<T: Copy>(records: &[T], out: &mut Vec<u8>) {
    // SAFETY: `T` is a `repr(C)` plain-old-data record (Quote, SpreadSample) without padding
    // holes read as anything but bytes; the slice is valid for its byte length.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            records.as_ptr().cast::<u8>(),
            std::mem::size_of_val(records),
        )
    };
    out.extend_from_slice(bytes);
}

/// Sends `rate` updates per second in 5-ms slices until `stop`.
fn run_feeder(mut stream: TcpStream, args: &BroadcastArgs, stop: &AtomicBool, sent: &AtomicU64) {
    let slice = Duration::from_millis(5);
    let per_slice = (args.rate as f64 * slice.as_secs_f64()).max(1.0);
    let mut carry = 0.0f64;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next_random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut quotes = Vec::new();
    let mut spreads = Vec::new();
    let started = Instant::now();
    let mut slice_index = 0u64;
    while !stop.load(Ordering::Relaxed) {
        carry += per_slice;
        let count = carry as u64;
        carry -= count as f64;
        quotes.clear();
        spreads.clear();
        let ts = now_ns();
        for _ in 0..count {
            let random = next_random();
            let symbol = (random % args.universe_symbols as u64) as u32;
            let venue = ((random >> 20) % args.venues as u64) as u16;
            let price = 100.0 + ((random >> 32) % 10_000) as f64 / 100.0;
            if ((random >> 48) % 1000) as f64 / 1000.0 < args.spread_share {
                let sell = ((venue as u64 + 1 + (random >> 40) % (args.venues as u64 - 1).max(1))
                    % args.venues as u64) as u16;
                spreads.push(SpreadSample {
                    bucket_start_ns: ts,
                    bucket_duration_ns: 1_000_000_000,
                    last_bp: price / 100.0,
                    min_bp: -1.0,
                    max_bp: 2.0,
                    mean_bp: 0.5,
                    window_mean_bp: 0.4,
                    window_std_bp: 0.2,
                    band_lower_bp: 0.0,
                    band_upper_bp: 0.8,
                    samples: 10,
                    symbol_id: SymbolId(symbol),
                    buy_venue_id: VenueId(venue),
                    sell_venue_id: VenueId(sell),
                    flags: 0,
                });
            } else {
                quotes.push(Quote {
                    bid: price,
                    bid_qty: 1.5,
                    ask: price + 0.01,
                    ask_qty: 2.5,
                    ts_exchange_ns: ts,
                    ts_recv_ns: ts,
                    seq: random >> 16,
                    symbol_id: SymbolId(symbol),
                    venue_id: VenueId(venue),
                    flags: 3,
                    reserved: 0,
                });
            }
        }
        buffer.clear();
        if !quotes.is_empty() {
            buffer.extend_from_slice(&KIND_QUOTE.to_le_bytes());
            buffer.extend_from_slice(&(quotes.len() as u32).to_le_bytes());
            record_bytes(&quotes, &mut buffer);
        }
        if !spreads.is_empty() {
            buffer.extend_from_slice(&KIND_SPREAD.to_le_bytes());
            buffer.extend_from_slice(&(spreads.len() as u32).to_le_bytes());
            record_bytes(&spreads, &mut buffer);
        }
        if stream.write_all(&buffer).is_err() {
            return;
        }
        sent.fetch_add(count, Ordering::Relaxed);
        slice_index += 1;
        let next = started + slice * slice_index as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

// ---- the clients -------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Fast,
    Slow,
    Dead,
}

/// What the clients counted while `measuring`.
#[derive(Default)]
struct ClientTotals {
    frames: AtomicU64,
    bytes: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
}

pub(crate) struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

pub(crate) type Socket =
    fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// `SO_RCVBUF` of each client socket, and `socket_send_buffer_bytes` of the sink's.
const SOCKET_BUFFER_BYTES: u32 = 256 * 1024;

pub(crate) async fn connect(addr: SocketAddr) -> Option<Socket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .ok()?;
    // Before connect, so the window scale is negotiated for it.
    socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES).ok()?;
    let stream = socket.connect(addr).await.ok()?;
    let request = hyper::Request::builder()
        .method("GET")
        .uri(format!("http://{addr}/ws"))
        .header("Host", addr.to_string())
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let (socket, _) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream)
        .await
        .ok()?;
    Some(socket)
}

/// Every `"ts_recv_ns":<digits>` value in a frame.
fn for_each_ts_recv(payload: &[u8], each: impl FnMut(i64)) {
    for_each_field(payload, b"\"ts_recv_ns\":", each);
}

/// Every `<key><digits>` value in a frame (`key` is `"name":` with its quotes and colon).
pub(crate) fn for_each_field(payload: &[u8], key: &[u8], mut each: impl FnMut(i64)) {
    let key_len = key.len();
    let mut index = 0;
    while index + key_len < payload.len() {
        let Some(offset) = payload[index..].iter().position(|byte| *byte == b'"') else {
            return;
        };
        index += offset;
        if payload[index..].starts_with(key) {
            index += key_len;
            let mut value: i64 = 0;
            while index < payload.len() && payload[index].is_ascii_digit() {
                value = value
                    .saturating_mul(10)
                    .saturating_add(i64::from(payload[index] - b'0'));
                index += 1;
            }
            each(value);
        } else {
            index += 1;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_client(
    addr: SocketAddr,
    channels: Vec<String>,
    role: Role,
    slow_delay: Duration,
    measuring: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    totals: Arc<ClientTotals>,
) -> Option<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).ok()?;
    let Some(mut socket) = connect(addr).await else {
        totals.failed.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let subscribe = serde_json::json!({"op": "subscribe", "channels": channels}).to_string();
    if socket
        .write_frame(Frame::text(Payload::Owned(subscribe.into_bytes())))
        .await
        .is_err()
    {
        totals.failed.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    // Hello, then the ack.
    let mut acked = false;
    while !acked {
        match socket.read_frame().await {
            Ok(frame) if frame.opcode == OpCode::Text => {
                acked = frame
                    .payload
                    .windows(10)
                    .any(|window| window == b"subscribed");
            }
            Ok(_) => {}
            Err(_) => {
                totals.failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }
    totals.connected.fetch_add(1, Ordering::Relaxed);
    if role == Role::Dead {
        // Never reads, never answers pings; holds the socket until the phase ends.
        let _ = stop.changed().await;
        return None;
    }
    // Counted here, added to the shared totals once at the end.
    let (mut frames, mut bytes) = (0u64, 0u64);
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = socket.read_frame() => frame,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) => {
                totals.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        match frame.opcode {
            OpCode::Text => {}
            OpCode::Close => {
                totals.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            _ => continue,
        }
        if measuring.load(Ordering::Relaxed) {
            frames += 1;
            bytes += frame.payload.len() as u64;
            if role == Role::Fast {
                let received = now_ns();
                for_each_ts_recv(&frame.payload, |sent| {
                    let latency_us = ((received - sent).max(1) / 1000) as u64;
                    let _ = histogram.record(latency_us.max(1));
                });
            }
        }
        if role == Role::Slow {
            tokio::time::sleep(slow_delay).await;
        }
    }
    totals.frames.fetch_add(frames, Ordering::Relaxed);
    totals.bytes.fetch_add(bytes, Ordering::Relaxed);
    (role == Role::Fast).then_some(histogram)
}

// ---- servers -----------------------------------------------------------------------------------

/// A server child process and its ports.
struct ServerProcess {
    child: Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    ws_addr: SocketAddr,
    feed_addr: SocketAddr,
}

impl ServerProcess {
    fn start(name: &'static str, mut command: Command) -> Result<ServerProcess, BroadcastError> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io(format!("starting the {name} server")))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(BroadcastError::Server(name, "no stdout".to_string()));
        };
        let mut stdout = std::io::BufReader::new(stdout);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .map_err(io(format!("reading the {name} server's ready line")))?;
        let ready: serde_json::Value = serde_json::from_str(line.trim()).map_err(|error| {
            BroadcastError::Server(name, format!("bad ready line {line:?}: {error}"))
        })?;
        let port = |key: &str| -> Result<SocketAddr, BroadcastError> {
            let port = ready[key].as_u64().ok_or_else(|| {
                BroadcastError::Server(name, format!("no {key} in the ready line {line:?}"))
            })?;
            Ok(SocketAddr::from(([127, 0, 0, 1], port as u16)))
        };
        Ok(ServerProcess {
            ws_addr: port("port")?,
            feed_addr: port("feed_port")?,
            child,
            stdout,
        })
    }

    /// Waits for the server to end after the feed's EOF (killed after 10 s) and prints its
    /// counters line.
    fn stop(mut self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        for line in rest.lines().filter(|line| !line.trim().is_empty()) {
            println!("  {name} counters: {line}");
        }
    }
}

/// One phase's figures.
#[derive(Debug, Default)]
pub struct PhaseFigures {
    pub server: &'static str,
    pub phase: &'static str,
    pub fast: usize,
    pub slow: usize,
    pub dead: usize,
    pub connected: u64,
    pub failed: u64,
    pub closed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub latency_samples: u64,
    pub cpu_pct: f64,
    pub rss_mib: f64,
    pub rss_per_client_kib: f64,
    pub frames_per_s: f64,
    pub mib_per_s: f64,
    pub updates_per_s: f64,
}

fn channels_of(client: usize, args: &BroadcastArgs) -> Vec<String> {
    let names = crate::symbol_names(args.universe_symbols);
    let mut channels = Vec::with_capacity(2 * args.symbols_per_client);
    for offset in 0..args.symbols_per_client.min(args.universe_symbols) {
        let symbol = &names[(client * 7 + offset) % args.universe_symbols];
        channels.push(format!("quotes:{symbol}"));
        channels.push(format!("spreads:{symbol}"));
    }
    channels
}

fn run_phase(
    server: &'static str,
    phase: &'static str,
    process: &ServerProcess,
    args: &BroadcastArgs,
    slow_pct: f64,
    dead_pct: f64,
    sent: &AtomicU64,
) -> Result<PhaseFigures, BroadcastError> {
    let pid = process.child.id();
    let before =
        ProcSample::read(pid).map_err(|error| BroadcastError::Server(server, error.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()
        .map_err(io("client runtime"))?;
    let dead = (args.clients as f64 * dead_pct / 100.0).round() as usize;
    let slow = (args.clients as f64 * slow_pct / 100.0).round() as usize;
    let measuring = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(ClientTotals::default());
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..args.clients)
        .map(|client| {
            let role = if client < dead {
                Role::Dead
            } else if client < dead + slow {
                Role::Slow
            } else {
                Role::Fast
            };
            runtime.spawn(run_client(
                process.ws_addr,
                channels_of(client, args),
                role,
                Duration::from_millis(args.slow_delay_ms),
                measuring.clone(),
                stop.clone(),
                totals.clone(),
            ))
        })
        .collect();
    // Connected and subscribed (or failed), then the warm-up.
    let connect_deadline = Instant::now() + Duration::from_secs(120);
    while totals.connected.load(Ordering::Relaxed) + totals.failed.load(Ordering::Relaxed)
        < args.clients as u64
        && Instant::now() < connect_deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(args.warmup_s));
    let start =
        ProcSample::read(pid).map_err(|error| BroadcastError::Server(server, error.to_string()))?;
    let sent_start = sent.load(Ordering::Relaxed);
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(args.duration_s));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let end =
        ProcSample::read(pid).map_err(|error| BroadcastError::Server(server, error.to_string()))?;
    let sent_end = sent.load(Ordering::Relaxed);
    let _ = stop_sender.send(true);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|error| BroadcastError::Server(server, error.to_string()))?;
    runtime.block_on(async {
        for task in tasks {
            if let Ok(Some(client)) = task.await {
                let _ = histogram.add(&client);
            }
        }
    });
    drop(runtime);
    let quantile_ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let connected = totals.connected.load(Ordering::Relaxed);
    Ok(PhaseFigures {
        server,
        phase,
        fast: args.clients - slow - dead,
        slow,
        dead,
        connected,
        failed: totals.failed.load(Ordering::Relaxed),
        closed: totals.closed.load(Ordering::Relaxed),
        p50_ms: quantile_ms(0.5),
        p99_ms: quantile_ms(0.99),
        p999_ms: quantile_ms(0.999),
        max_ms: histogram.max() as f64 / 1000.0,
        latency_samples: histogram.len(),
        cpu_pct: (end.cpu_ns.saturating_sub(start.cpu_ns)) as f64 / (elapsed * 1e9) * 100.0,
        rss_mib: end.rss_kb as f64 / 1024.0,
        rss_per_client_kib: end.rss_kb.saturating_sub(before.rss_kb) as f64
            / connected.max(1) as f64,
        frames_per_s: totals.frames.load(Ordering::Relaxed) as f64 / elapsed,
        mib_per_s: totals.bytes.load(Ordering::Relaxed) as f64 / elapsed / (1024.0 * 1024.0),
        updates_per_s: (sent_end - sent_start) as f64 / elapsed,
    })
}

fn run_server(
    server: &'static str,
    process: ServerProcess,
    args: &BroadcastArgs,
) -> Result<Vec<PhaseFigures>, BroadcastError> {
    let mut feed = TcpStream::connect(process.feed_addr).map_err(io("connecting the feed"))?;
    feed.write_all(&feed_header(args))
        .map_err(io("sending the feed header"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, sent, args) = (stop.clone(), sent.clone(), args.clone());
        std::thread::Builder::new()
            .name("broadcast-feed".to_string())
            .spawn(move || run_feeder(feed, &args, &stop, &sent))
            .map_err(io("starting the feeder"))?
    };
    let mut figures = Vec::new();
    let phases: [(&'static str, f64, f64); 2] = [
        ("all fast", 0.0, 0.0),
        ("slow+dead", args.slow_pct, args.dead_pct),
    ];
    let mut outcome = Ok(());
    for (phase, slow_pct, dead_pct) in phases {
        match run_phase(server, phase, &process, args, slow_pct, dead_pct, &sent) {
            Ok(phase_figures) => {
                print_row(&phase_figures);
                figures.push(phase_figures);
            }
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
        // Let the server notice the departed clients.
        std::thread::sleep(Duration::from_secs(2));
    }
    // The feed's EOF ends both servers (they print their counters).
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    process.stop(server);
    outcome.map(|()| figures)
}

fn print_header() {
    println!(
        "{:<14} {:<10} {:>5} {:>4} {:>4} {:>6} {:>4} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>9} {:>9} {:>8} {:>9}",
        "server",
        "phase",
        "fast",
        "slow",
        "dead",
        "conn",
        "fail",
        "closed",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "CPU %",
        "RSS MiB",
        "KiB/clnt",
        "frames/s",
        "MiB/s",
        "updates/s"
    );
}

fn print_row(row: &PhaseFigures) {
    println!(
        "{:<14} {:<10} {:>5} {:>4} {:>4} {:>6} {:>4} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7.1} {:>8.1} {:>9.1} {:>9.0} {:>8.1} {:>9.0}",
        row.server,
        row.phase,
        row.fast,
        row.slow,
        row.dead,
        row.connected,
        row.failed,
        row.closed,
        row.p50_ms,
        row.p99_ms,
        row.p999_ms,
        row.max_ms,
        row.cpu_pct,
        row.rss_mib,
        row.rss_per_client_kib,
        row.frames_per_s,
        row.mib_per_s,
        row.updates_per_s
    );
}

/// `tickflow-load broadcast`.
pub fn command(args: &BroadcastArgs) -> Result<Vec<PhaseFigures>, BroadcastError> {
    let exe = std::env::current_exe().map_err(io("finding this binary"))?;
    let plugin = match &args.plugin {
        Some(plugin) => plugin.clone(),
        None => exe
            .parent()
            .map(|dir| dir.join("libtickflow_ws_broadcast.so"))
            .unwrap_or_else(|| PathBuf::from("libtickflow_ws_broadcast.so")),
    };
    if !plugin.exists() {
        return Err(BroadcastError::Plugin(
            plugin.display().to_string(),
            "not found: build it with `cargo build --release -p tickflow-ws-broadcast`".to_string(),
        ));
    }
    if !args.skip_node && !args.node_dir.join("node_modules/ws").is_dir() {
        return Err(BroadcastError::NodeModulesMissing(
            args.node_dir.display().to_string(),
        ));
    }
    println!(
        "broadcast: {} clients × {} symbols (quotes + spreads), {} symbols × {} venues, {} updates/s ({}% spreads), flush {} ms, phases: all fast, then {}% slow ({} ms delay) + {}% dead; {} s measured after {} s warm-up",
        args.clients,
        args.symbols_per_client,
        args.universe_symbols,
        args.venues,
        args.rate,
        args.spread_share * 100.0,
        args.flush_interval_ms,
        args.slow_pct,
        args.slow_delay_ms,
        args.dead_pct,
        args.duration_s,
        args.warmup_s
    );
    print_header();
    let mut figures = Vec::new();
    let mut rust = Command::new(&exe);
    rust.arg("broadcast-server")
        .arg("--plugin")
        .arg(&plugin)
        .arg("--sink-threads")
        .arg(args.sink_threads.to_string())
        .arg("--flush-interval-ms")
        .arg(args.flush_interval_ms.to_string())
        .arg("--clients-max")
        .arg((args.clients + 64).to_string());
    let process = ServerProcess::start("ws-broadcast", rust)?;
    figures.extend(run_server("ws-broadcast", process, args)?);
    if !args.skip_node {
        let mut node = Command::new("node");
        node.arg(args.node_dir.join("broadcast.js"))
            .arg("--flush-ms")
            .arg(args.flush_interval_ms.to_string());
        let process = ServerProcess::start("node-ws", node)?;
        figures.extend(run_server("node-ws", process, args)?);
    }
    Ok(figures)
}

// ---- the Rust server child ---------------------------------------------------------------------

/// Names from the feed header, for the host table's callbacks.
static NAMES: std::sync::RwLock<(Vec<String>, Vec<String>)> =
    std::sync::RwLock::new((Vec::new(), Vec::new()));
/// The URL the sink published.
static PUBLISHED_URL: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn copy_name(name: Option<&String>, out: *mut u8, capacity: usize) -> usize {
    let Some(name) = name else { return 0 };
    let count = name.len().min(capacity);
    // SAFETY: the plugin passes a buffer writable for `capacity` bytes.
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), out, count) };
    name.len()
}

unsafe extern "C" fn host_symbol_name(
    _data: *mut std::ffi::c_void,
    symbol_id: u32,
    out: *mut u8,
    capacity: usize,
) -> usize {
    let names = NAMES.read().unwrap_or_else(|poison| poison.into_inner());
    copy_name(names.0.get(symbol_id as usize), out, capacity)
}

unsafe extern "C" fn host_venue_name(
    _data: *mut std::ffi::c_void,
    venue_id: u16,
    out: *mut u8,
    capacity: usize,
) -> usize {
    let names = NAMES.read().unwrap_or_else(|poison| poison.into_inner());
    copy_name(names.1.get(venue_id as usize), out, capacity)
}

unsafe extern "C" fn host_log(
    _data: *mut std::ffi::c_void,
    _level: u32,
    text: *const u8,
    len: usize,
) {
    // SAFETY: the plugin passes (ptr, len) valid for the call.
    let text = unsafe { std::slice::from_raw_parts(text, len) };
    eprintln!("ws-broadcast: {}", String::from_utf8_lossy(text));
}

unsafe extern "C" fn host_publish_endpoint(
    _data: *mut std::ffi::c_void,
    _name: *const u8,
    _name_len: usize,
    url: *const u8,
    url_len: usize,
) -> u32 {
    // SAFETY: the plugin passes (ptr, len) valid for the call.
    let url = unsafe { std::slice::from_raw_parts(url, url_len) };
    *PUBLISHED_URL
        .lock()
        .unwrap_or_else(|poison| poison.into_inner()) =
        Some(String::from_utf8_lossy(url).into_owned());
    1
}

fn host_table() -> &'static Host {
    Box::leak(Box::new(Host {
        struct_size: abi::HOST_SIZE_V1_2,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        host_data: std::ptr::null_mut(),
        log: Some(host_log),
        symbol_name: Some(host_symbol_name),
        venue_name: Some(host_venue_name),
        metric_register: None,
        counter_add: None,
        gauge_set: None,
        histogram_record: None,
        clock_ns: None,
        publish_endpoint: Some(host_publish_endpoint),
        metrics_snapshot: None,
    }))
}

fn load_descriptor(path: &Path) -> Result<&'static Descriptor, BroadcastError> {
    let fail = |message: String| BroadcastError::Plugin(path.display().to_string(), message);
    // SAFETY: loading a tickflow plugin runs its initializers; it is the library under test.
    let library =
        unsafe { libloading::Library::new(path) }.map_err(|error| fail(error.to_string()))?;
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the entry symbol has the ABI's `EntryFn` type.
    let entry: libloading::Symbol<'static, EntryFn> =
        unsafe { library.get(abi::ENTRY_SYMBOL.as_bytes()) }
            .map_err(|error| fail(error.to_string()))?;
    // SAFETY: the entry returns a pointer to a static descriptor (or null).
    let descriptor =
        unsafe { entry().as_ref() }.ok_or_else(|| fail("null descriptor".to_string()))?;
    if descriptor.magic != abi::MAGIC || descriptor.abi_major != abi::ABI_MAJOR {
        return Err(fail("not a tickflow 1.x plugin".to_string()));
    }
    Ok(descriptor)
}

/// Reads exactly `len` bytes into `buffer` (resized).
fn read_exact_into(
    stream: &mut impl Read,
    buffer: &mut Vec<u8>,
    len: usize,
) -> std::io::Result<()> {
    buffer.resize(len, 0);
    stream.read_exact(buffer)
}

fn records_from<T: Copy + Default>(bytes: &[u8]) -> Vec<T> {
    let size = std::mem::size_of::<T>();
    bytes
        .chunks_exact(size)
        .map(|chunk| {
            // SAFETY: `chunk` holds `size_of::<T>()` bytes of a `repr(C)` plain record written
            // by `record_bytes`; read_unaligned copes with the buffer's alignment.
            unsafe { chunk.as_ptr().cast::<T>().read_unaligned() }
        })
        .collect()
}

/// `tickflow-load broadcast-server`: the child process.
pub fn server_command(args: &BroadcastServerArgs) -> Result<(), BroadcastError> {
    let descriptor = load_descriptor(&args.plugin)?;
    let fail = |message: String| BroadcastError::Plugin(args.plugin.display().to_string(), message);
    let (Some(create), Some(on_batch), Some(destroy)) =
        (descriptor.create, descriptor.on_batch, descriptor.destroy)
    else {
        return Err(fail("missing create, on_batch or destroy".to_string()));
    };
    let config = format!(
        "bind = \"127.0.0.1:0\"\nthreads = {}\nflush_interval_ms = {}\nclients_max = {}\nsubscriptions_max = 1024\nclient_message_bytes_max = 65536\nchannels_max = 65536\nsocket_send_buffer_bytes = {SOCKET_BUFFER_BYTES}\n",
        args.sink_threads, args.flush_interval_ms, args.clients_max
    );
    let mut instance: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: the host table is leaked; the config is valid for the call; out_instance is ours.
    let status = unsafe { create(host_table(), config.as_ptr(), config.len(), &mut instance) };
    if status != abi::STATUS_OK || instance.is_null() {
        return Err(fail(format!(
            "create returned {}",
            abi::status_name(status)
        )));
    }
    let url = PUBLISHED_URL
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone()
        .ok_or_else(|| fail("no endpoint published".to_string()))?;
    let ws_port: u16 = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| fail(format!("cannot read the port of {url}")))?;
    let feed_listener = TcpListener::bind("127.0.0.1:0").map_err(io("feed listener"))?;
    let feed_port = feed_listener
        .local_addr()
        .map_err(io("feed listener"))?
        .port();
    println!(
        "{}",
        serde_json::json!({"ready": true, "port": ws_port, "feed_port": feed_port})
    );
    let _ = std::io::stdout().flush();
    let (mut feed, _) = feed_listener.accept().map_err(io("feed accept"))?;
    let mut buffer = Vec::new();
    let mut word = [0u8; 4];
    feed.read_exact(&mut word).map_err(io("feed header"))?;
    read_exact_into(&mut feed, &mut buffer, u32::from_le_bytes(word) as usize)
        .map_err(io("feed header"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&buffer).map_err(|error| fail(format!("feed header: {error}")))?;
    let strings = |key: &str| -> Vec<String> {
        header[key]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|value| value.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    *NAMES.write().unwrap_or_else(|poison| poison.into_inner()) =
        (strings("symbols"), strings("venues"));
    let mut batches = 0u64;
    loop {
        let mut head = [0u8; 8];
        if feed.read_exact(&mut head).is_err() {
            break;
        }
        let kind = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let count = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let size = if kind == KIND_QUOTE {
            std::mem::size_of::<Quote>()
        } else {
            std::mem::size_of::<SpreadSample>()
        };
        if read_exact_into(&mut feed, &mut buffer, count * size).is_err() {
            break;
        }
        // The engine hands at most batch_max_records (256) per call.
        let status = if kind == KIND_QUOTE {
            let records: Vec<Quote> = records_from(&buffer);
            records
                .chunks(256)
                .map(|chunk| {
                    // SAFETY: a live instance, `chunk.len()` quotes borrowed for the call.
                    unsafe { on_batch(instance, KIND_QUOTE, chunk.as_ptr().cast(), chunk.len()) }
                })
                .max()
                .unwrap_or(abi::STATUS_OK)
        } else {
            let records: Vec<SpreadSample> = records_from(&buffer);
            records
                .chunks(256)
                .map(|chunk| {
                    // SAFETY: as above, for spread samples.
                    unsafe { on_batch(instance, KIND_SPREAD, chunk.as_ptr().cast(), chunk.len()) }
                })
                .max()
                .unwrap_or(abi::STATUS_OK)
        };
        if status != abi::STATUS_OK {
            return Err(fail(format!(
                "on_batch returned {}",
                abi::status_name(status)
            )));
        }
        batches += 1;
    }
    let mut stats = PluginStats {
        struct_size: std::mem::size_of::<PluginStats>() as u32,
        ..PluginStats::default()
    };
    if let Some(stats_fn) = descriptor.stats {
        // SAFETY: a live instance and a full stats table.
        unsafe { stats_fn(instance, &mut stats) };
    }
    // SAFETY: created above, destroyed once.
    unsafe { destroy(instance) };
    println!(
        "{}",
        serde_json::json!({
            "batches": batches,
            "records_written": stats.records_written,
            "records_dropped": stats.records_dropped,
            "bytes_written": stats.bytes_written,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_recv_values_are_found_in_a_frame() {
        let frame = br#"{"ch":"quotes:X","data":[{"ts_exchange_ns":5,"ts_recv_ns":123},{"ts_recv_ns":4567}]}"#;
        let mut values = Vec::new();
        for_each_ts_recv(frame, |value| values.push(value));
        assert_eq!(values, vec![123, 4567]);
    }
}
