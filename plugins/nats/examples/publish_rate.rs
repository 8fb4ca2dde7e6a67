//! Measures records/s the NATS sink publishes with JetStream acknowledgements: starts a local
//! `nats-server -js` in a temporary folder (or uses `--url nats://…`), hands the sink quotes in
//! batches of 256 as the engine's runner would (waiting while the buffer is more than half full,
//! so nothing is dropped), and reports the rate once every record is acknowledged.
//!
//! `cargo run --release -p tickflow-nats --example publish_rate -- [records] [--url URL] [--json]`

use std::ffi::c_void;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tickflow_nats::{Encoding, NatsConfig, NatsSink, Urls};
use tickflow_sdk::abi::{self, Host};
use tickflow_sdk::{Batch, HostHandle, Quote, Sink, SymbolId, VenueId};

const SYMBOLS: [&str; 8] = [
    "BTC-USDT",
    "ETH-USDT",
    "SOL-USDT",
    "XRP-USDT",
    "DOGE-USDT",
    "ADA-USDT",
    "TRX-USDT",
    "TON-USDT",
];
const VENUES: [&str; 4] = ["binance", "okx", "bybit", "kucoin"];

unsafe extern "C" fn symbol_name(_: *mut c_void, id: u32, out: *mut u8, capacity: usize) -> usize {
    copy_name(SYMBOLS.get(id as usize), out, capacity)
}

unsafe extern "C" fn venue_name(_: *mut c_void, id: u16, out: *mut u8, capacity: usize) -> usize {
    copy_name(VENUES.get(id as usize), out, capacity)
}

fn copy_name(name: Option<&&str>, out: *mut u8, capacity: usize) -> usize {
    let Some(name) = name else { return 0 };
    let count = name.len().min(capacity);
    // SAFETY: the sink passes a buffer writable for `capacity` bytes.
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), out, count) };
    name.len()
}

fn host() -> HostHandle {
    let table: &'static Host = Box::leak(Box::new(Host {
        struct_size: abi::HOST_SIZE_V1_0,
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
        publish_endpoint: None,
        metrics_snapshot: None,
    }));
    // SAFETY: the table is leaked: valid for the process.
    unsafe { HostHandle::from_raw(table) }
}

fn main() {
    let mut records: u64 = 200_000;
    let mut url = None;
    let mut encoding = Encoding::Binary;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next(),
            "--json" => encoding = Encoding::Json,
            other => records = other.parse().unwrap_or(records),
        }
    }
    let store = std::env::temp_dir().join(format!("tickflow-nats-rate-{}", std::process::id()));
    let mut server = None;
    let url = url.unwrap_or_else(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap_or(14_222);
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => server = Some(child),
            Err(error) => {
                eprintln!("cannot start nats-server: {error}");
                std::process::exit(1);
            }
        }
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        format!("nats://127.0.0.1:{port}")
    });
    let config = NatsConfig {
        url: Urls::One(url.clone()),
        collector: Some("rate".to_string()),
        stream: "RATE".to_string(),
        encoding,
        ..NatsConfig::default()
    };
    let buffer_records = config.buffer_records as u64;
    let mut sink = match NatsSink::create(host(), config) {
        Ok(sink) => sink,
        Err(error) => {
            eprintln!("the sink did not start: {error}");
            std::process::exit(1);
        }
    };
    let mut batch = Vec::with_capacity(256);
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < records {
        while sink.counters().buffered > buffer_records / 2 {
            std::thread::sleep(Duration::from_micros(200));
        }
        batch.clear();
        for index in sent..(sent + 256).min(records) {
            batch.push(Quote {
                bid: 100.0 + (index % 97) as f64,
                bid_qty: 1.0,
                ask: 100.5 + (index % 97) as f64,
                ask_qty: 1.0,
                ts_exchange_ns: 1_764_000_000_000_000_000 + index as i64,
                ts_recv_ns: 1_764_000_000_000_000_000 + index as i64,
                seq: index,
                symbol_id: SymbolId((index % SYMBOLS.len() as u64) as u32),
                venue_id: VenueId((index % VENUES.len() as u64) as u16),
                flags: 3,
                reserved: 0,
            });
        }
        sent += batch.len() as u64;
        if let Err(error) = sink.on_batch(Batch::Quotes(&batch)) {
            eprintln!("on_batch: {error}");
        }
    }
    while sink.counters().acked + sink.counters().dropped() < records {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();
    let counters = sink.counters();
    println!(
        "{} records acknowledged in {:.2} s: {:.0} records/s ({:.1} MB/s of payload), {} dropped, {} retried, encoding {:?}, server {url}",
        counters.acked,
        elapsed.as_secs_f64(),
        counters.acked as f64 / elapsed.as_secs_f64(),
        counters.acked_bytes as f64 / elapsed.as_secs_f64() / 1e6,
        counters.dropped(),
        counters.retried,
        encoding
    );
    drop(sink);
    if let Some(mut child) = server {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&store);
    }
}
