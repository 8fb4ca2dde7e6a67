//! The NATS source's figures (docs/scale-out.md): starts a `nats-server -js` on a free loopback
//! port, then
//! 1. backlog: publishes `N` wire-encoded quotes (100 symbols × 2 venues), starts a pipeline
//!    (2 shards) and a `NatsSource`, and times draining them into the shards;
//! 2. live: publishes quotes stamped with their send time at a steady rate while the source
//!    consumes, and reads the shards' receive-to-spread latency (p50/p99): the time from a
//!    collector's receive stamp to the aggregator's spread update, through JetStream.
//!
//! `cargo run --release -p tickflow-source-nats --example throughput [N] [live_per_s]`

use std::collections::VecDeque;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tickflow_core::config::{EngineConfig, WindowsConfig};
use tickflow_core::outbound::DiscardOutbound;
use tickflow_core::pipeline::Pipeline;
use tickflow_core::record::{Quote, now_ns};
use tickflow_core::registry::SymbolRegistry;
use tickflow_formats::wire::{self, WireBody, WireNames};
use tickflow_source_nats::{NatsSource, SourceConfig};

const SYMBOLS: usize = 100;
const IN_FLIGHT: usize = 4_096;

fn payload(seq: u64, stamp_now: bool) -> (String, Vec<u8>) {
    let symbol = format!("S{}-USDT", seq as usize % SYMBOLS);
    let venue = if seq % 2 == 0 { "binance" } else { "okx" };
    let bid = 100.0 + (seq % 7) as f64 * 0.01;
    let body = WireBody::Quote(Quote {
        bid,
        bid_qty: 1.0,
        ask: bid + 0.05,
        ask_qty: 1.0,
        ts_recv_ns: if stamp_now { now_ns() } else { 1 },
        ..Quote::default()
    });
    let names = WireNames {
        venue,
        sell_venue: "",
        symbol: &symbol,
    };
    let mut out = Vec::with_capacity(128);
    wire::encode(&body, &names, "bench", seq, &mut out).expect("encodes");
    (wire::record_subject("tickflow", &body, &names, 1), out)
}

async fn publish_range(
    publisher: &jetstream::Context,
    seqs: std::ops::Range<u64>,
    per_s: Option<u64>,
) {
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(IN_FLIGHT);
    for (index, seq) in seqs.enumerate() {
        if let Some(per_s) = per_s {
            let due = started + Duration::from_secs_f64(index as f64 / per_s as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let (subject, bytes) = payload(seq, per_s.is_some());
        let acknowledgement = publisher
            .send_publish(
                subject,
                jetstream::message::PublishMessage::build()
                    .payload(bytes.into())
                    .message_id(wire::message_id("bench", seq)),
            )
            .await
            .expect("publish sent");
        in_flight.push_back(acknowledgement);
        if in_flight.len() >= IN_FLIGHT
            && let Some(oldest) = in_flight.pop_front()
        {
            oldest.await.expect("acknowledged");
        }
    }
    for acknowledgement in in_flight {
        acknowledgement.await.expect("acknowledged");
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let backlog: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let live_per_s: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let store = tempfile::tempdir().expect("a temporary directory");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut server = Command::new(if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    })
    .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
    .arg(store.path())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("nats-server is installed");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let publisher = runtime.block_on(async {
        let context = jetstream::new(async_nats::connect(url.as_str()).await.expect("connects"));
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: "TICKFLOW".into(),
                subjects: vec!["tickflow.>".into()],
                max_bytes: 1 << 30,
                ..Default::default()
            })
            .await
            .expect("stream");
        context
    });
    let started = Instant::now();
    runtime.block_on(publish_range(&publisher, 1..backlog + 1, None));
    let publish_s = started.elapsed().as_secs_f64();
    println!(
        "published {backlog} quotes (acknowledged, {IN_FLIGHT} in flight) in {publish_s:.2} s: {:.0} msgs/s",
        backlog as f64 / publish_s
    );

    let engine = EngineConfig {
        shards: 2,
        max_symbols: 1_000,
        max_connection_slots: 2,
        ring_capacity_records: 8_192,
        ..EngineConfig::default()
    };
    let windows = WindowsConfig {
        max_windows: 1_000,
        buckets: 60,
        ..WindowsConfig::default()
    };
    let mut pipeline = Pipeline::start(
        &engine,
        &windows,
        (0..2)
            .map(|_| Box::new(DiscardOutbound) as Box<dyn tickflow_core::outbound::Outbound>)
            .collect(),
    )
    .expect("pipeline");
    let config: SourceConfig = toml::from_str(&format!(
        "kind = \"nats\"\nurl = [\"{url}\"]\ndurable = \"bench\"\npartitions = [0]\n\
         partition_count = 1\nheartbeat_timeout_ms = 0\nmax_ack_pending = 8192\n"
    ))
    .expect("config");
    config.validate(0).expect("valid");
    let started = Instant::now();
    let source = NatsSource::start(
        &config,
        Arc::new(SymbolRegistry::new(engine.max_symbols)),
        pipeline.take_producer().expect("a producer"),
        runtime.handle(),
    );
    let counters = source.counters();
    while counters.applied.load(Ordering::Relaxed) < backlog {
        std::thread::sleep(Duration::from_millis(5));
    }
    let drain_s = started.elapsed().as_secs_f64();
    println!(
        "backlog: {backlog} quotes into the shards in {drain_s:.2} s: {:.0} records/s (connect included)",
        backlog as f64 / drain_s
    );

    let live = live_per_s * 3;
    runtime.block_on(publish_range(
        &publisher,
        backlog + 1..backlog + 1 + live,
        Some(live_per_s),
    ));
    while counters.applied.load(Ordering::Relaxed) < backlog + live {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The shards publish their latency at housekeeping: give them a snapshot interval.
    std::thread::sleep(Duration::from_millis(1_500));
    let shards = pipeline.counters();
    println!(
        "live: {live} quotes at {live_per_s}/s; receive stamp → spread update p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; duplicates {}",
        shards.latency_ns_p50 as f64 / 1e6,
        shards.latency_ns_p99 as f64 / 1e6,
        shards.latency_ns_max as f64 / 1e6,
        counters.duplicates.load(Ordering::Relaxed)
    );
    runtime.block_on(source.shutdown(Duration::from_secs(5)));
    pipeline.shutdown();
    let _ = server.kill();
    let _ = server.wait();
}
