//! No allocation on the steady-state hot path: decode (all eight venues, HTX gzip and MEXC
//! protobuf included) → ring → shard → window update, and the shard → sink hand-off (the plugin
//! host's lanes under every policy → runner threads → a loaded no-op plugin), proved with a
//! counting global allocator. A test binary of its own (it installs the allocator); its tests
//! take turns (the count is process-wide).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tickflow::config::Config;
use tickflow_core::outbound::{DiscardOutbound, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::record::now_ns;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::shard::ShardClock;
use tickflow_core::venue::Venue;
use tickflow_decode::{DecodeLimits, FrameEncoding, FrameOutcome, RecordBatch, decoder_for};

struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Where the first counted allocation came from, so a failure names the culprit.
static FIRST_ALLOCATION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Counts one allocation; the first one also records its backtrace (with counting paused, since
/// capturing allocates; allocations of other threads in that moment go uncounted, which can only
/// hide a second culprit, never invent one).
fn count_allocation() {
    if !COUNTING.load(Ordering::Relaxed) {
        return;
    }
    if ALLOCATIONS.fetch_add(1, Ordering::Relaxed) == 0 {
        COUNTING.store(false, Ordering::SeqCst);
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        let _ = FIRST_ALLOCATION.set(trace);
        COUNTING.store(true, Ordering::SeqCst);
    }
}

fn first_allocation() -> &'static str {
    FIRST_ALLOCATION.get().map(String::as_str).unwrap_or("none")
}

// SAFETY: forwards every call unchanged to the system allocator; it only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes through us).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// The allocation count is process-wide: one measuring test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one still measures correctly.
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// Frames of all eight venues (Bitget on both sockets) for one symbol, with `{bid}`/`{ask}`
/// placeholders; HTX frames are gzip-compressed and MEXC frames protobuf-encoded before the
/// measured run.
const TEMPLATES: [(Venue, &str); 9] = [
    (
        Venue::Binance,
        r#"{"u":400900217,"s":"BTCUSDT","b":"{bid}","B":"31.21000000","a":"{ask}","A":"40.66000000"}"#,
    ),
    (
        Venue::Bybit,
        r#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1709891679000,"data":{"s":"BTCUSDT","b":[["{bid}","0.500"]],"a":[["{ask}","0.750"]],"u":123456789,"seq":987654321},"cts":1709891678998}"#,
    ),
    (
        Venue::Okx,
        r#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["{ask}","415","0","13"]],"bids":[["{bid}","256","0","12"]],"ts":"1597026383085","seqId":123456}]}"#,
    ),
    (
        Venue::Gate,
        r#"{"time":1606293275,"time_ms":1606293275123,"channel":"spot.book_ticker","event":"update","result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"{bid}","B":"0.0003341504","a":"{ask}","A":"0.09"}}"#,
    ),
    (
        Venue::Kucoin,
        r#"{"topic":"/spotMarket/level1:BTC-USDT","type":"message","subject":"level1","data":{"asks":["{ask}","0.51987471"],"bids":["{bid}","1.29267802"],"timestamp":1729816058766}}"#,
    ),
    (
        Venue::Bitget,
        r#"{"action":"snapshot","arg":{"instType":"SPOT","channel":"books1","instId":"BTCUSDT"},"data":[{"asks":[["{ask}","0.6927"]],"bids":[["{bid}","3.5344"]],"checksum":0,"ts":"1730332859988"}],"ts":1730332859989}"#,
    ),
    (
        Venue::Bitget,
        r#"{"data":[{"a":[["{ask}","23.9774"]],"b":[["{bid}","0.0128"]],"checksum":0,"pseq":0,"seq":1304314508780744705,"ts":"1746698732562"}],"arg":{"instType":"spot","symbol":"BTCUSDT","topic":"books1"},"action":"snapshot","ts":1746698732563}"#,
    ),
    (
        Venue::Htx,
        r#"{"ch":"market.btcusdt.bbo","ts":1630994555540,"tick":{"seqId":137005210233,"ask":{ask},"askSize":1.502181,"bid":{bid},"bidSize":0.178567,"quoteTime":1630994555539,"symbol":"btcusdt"}}"#,
    ),
    (Venue::Mexc, "protobuf"),
];

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

fn mexc_book_ticker(bid: &str, ask: &str) -> Vec<u8> {
    use prost::Message;
    use tickflow_decode::mexc_proto as proto;
    proto::PushDataV3ApiWrapper {
        channel: "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT".to_string(),
        symbol: "BTCUSDT".to_string(),
        symbol_id: String::new(),
        create_time: 0,
        send_time: 1736412092433,
        body: Some(proto::Body::PublicAggreBookTicker(
            proto::PublicAggreBookTickerV3Api {
                bid_price: bid.to_string(),
                bid_quantity: "3.73485".to_string(),
                ask_price: ask.to_string(),
                ask_quantity: "7.669875".to_string(),
                version: String::new(),
                last_order_create_time: 0,
            },
        )),
    }
    .encode_to_vec()
}

#[test]
fn steady_state_hot_path_does_not_allocate() {
    let _turn = one_at_a_time();
    // Snapshot publishing is a reader-facing cold path (it reuses its buffers once warm, but its
    // first publications allocate); keep it out of the measured window.
    let config = Config::from_toml_str(
        "[engine]\nshards = 2\nmax_symbols = 64\n[windows]\nsnapshot_interval_ms = 3600000\n",
    )
    .unwrap();
    let registry = Arc::new(SymbolRegistry::new(config.engine.max_symbols));
    registry.register("BTC-USDT").unwrap();
    let limits = DecodeLimits {
        max_frame_bytes: config.engine.max_frame_bytes,
        max_records_per_frame: config.engine.max_records_per_frame,
    };
    // Prebuild frames with varying prices (setup: allocation allowed here).
    let frames: Vec<(usize, FrameEncoding, Vec<u8>)> = (0..64)
        .flat_map(|step| {
            TEMPLATES
                .iter()
                .enumerate()
                .map(move |(index, (venue, template))| {
                    let bid_value = 27450.0 + step as f64 * 0.5 + index as f64 * 0.1;
                    let bid = format!("{bid_value:.2}");
                    let ask = format!("{:.2}", bid_value + 0.3);
                    let text = template.replace("{bid}", &bid).replace("{ask}", &ask);
                    match venue {
                        Venue::Htx => (index, FrameEncoding::Binary, gzip(text.as_bytes())),
                        Venue::Mexc => (index, FrameEncoding::Binary, mexc_book_ticker(&bid, &ask)),
                        _ => (index, FrameEncoding::Text, text.into_bytes()),
                    }
                })
        })
        .collect();
    let mut decoders: Vec<_> = TEMPLATES
        .iter()
        .map(|(venue, _)| decoder_for(*venue, Arc::clone(&registry), limits))
        .collect();
    let outbounds: Vec<Box<dyn Outbound>> = (0..config.shard_count())
        .map(|_| Box::new(DiscardOutbound) as Box<dyn Outbound>)
        .collect();
    // A manual shard clock that the sender moves 100 ms every 1000 frames: buckets close (spread
    // samples, bucket ring writes, block min/max) inside the measured window too.
    let clock_ns = Arc::new(AtomicI64::new(now_ns()));
    let mut pipeline = Pipeline::start_with_clock(
        &config.engine,
        &config.windows,
        outbounds,
        ShardClock::Manual(Arc::clone(&clock_ns)),
    )
    .unwrap();
    let mut producer = pipeline.take_producer().unwrap();
    let mut batch = RecordBatch::with_capacity(limits.max_records_per_frame);
    let mut frame_buffer: Vec<u8> = Vec::with_capacity(64 * 1024);

    let mut run = |frames_to_send: usize| -> u64 {
        let mut records = 0u64;
        for (sent, (venue_index, encoding, frame)) in
            frames.iter().cycle().take(frames_to_send).enumerate()
        {
            if sent % 1000 == 999 {
                clock_ns.fetch_add(100_000_000, Ordering::AcqRel);
            }
            frame_buffer.clear();
            frame_buffer.extend_from_slice(frame);
            batch.clear();
            let outcome = decoders[*venue_index]
                .decode(
                    &mut frame_buffer,
                    *encoding,
                    clock_ns.load(Ordering::Acquire),
                    &mut batch,
                )
                .expect("fixture-derived frames decode");
            assert!(matches!(outcome, FrameOutcome::Records(1)));
            for event in batch.as_slice() {
                // Shards keep up at this rate; a drop here would still not allocate.
                if producer.push(*event) {
                    records += 1;
                }
            }
            producer.flush();
        }
        records
    };

    let wait_for_shards = |pipeline: &Pipeline, expected_quotes: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while pipeline.counters().quotes < expected_quotes {
            assert!(Instant::now() < deadline, "shards did not drain the rings");
            std::thread::yield_now();
        }
    };

    // Warm up: windows are created, decoder scratch buffers reach their working size.
    let warm_records = run(20_000);
    wait_for_shards(&pipeline, warm_records);
    // Every shard thread (the one that owns no symbol too) has started and published its first
    // snapshot: thread start-up is not the steady state.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipeline
        .snapshots()
        .iter()
        .any(|snapshot| snapshot.published_ns == 0)
    {
        assert!(
            Instant::now() < deadline,
            "a shard never published a snapshot"
        );
        std::thread::yield_now();
    }

    COUNTING.store(true, Ordering::SeqCst);
    let measured_records = run(200_000);
    // Wait on the shards without allocating: counters() sums atomics into a plain struct.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipeline.counters().quotes < warm_records + measured_records {
        assert!(Instant::now() < deadline, "shards did not drain the rings");
        std::thread::yield_now();
    }
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);

    drop(producer);
    let report = pipeline.shutdown();
    println!(
        "measured {measured_records} records, {} spread updates, {} windows, {allocations} allocations",
        report.counters.spread_updates, report.counters.windows_live
    );
    assert!(measured_records > 100_000);
    // 1 symbol × 8 venues = 56 directed pairs, each created once and never again.
    assert_eq!(report.counters.windows_created, 56);
    assert_eq!(report.counters.windows_live, 56);
    assert!(report.counters.spread_updates >= measured_records * 2);
    // Buckets closed during the run: 22 s of shard time, 56 windows.
    assert!(
        report.counters.samples_emitted >= 56 * 15,
        "{:?}",
        report.counters
    );
    assert_eq!(
        allocations,
        0,
        "the hot path allocated {allocations} times; the first:\n{}",
        first_allocation()
    );
}

/// Builds the no-op test plugin (cargo is a no-op when it is fresh) into this test's target
/// directory and returns its path.
fn test_sink_plugin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("test binaries live in <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root");
    let mut command =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args(["build", "--quiet", "-p", "tickflow-test-sink"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building the test sink failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    profile_dir.join(format!(
        "{}tickflow_test_sink{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

#[test]
fn steady_state_sink_hand_off_does_not_allocate() {
    use tickflow_core::outbound::OutRecord;
    use tickflow_host::{SinkConfig, SinkHost, SinkPolicy};
    use tickflow_sdk::records::{GapEvent, Quote, SpreadSample, SymbolId, Trade, VenueId};

    let _turn = one_at_a_time();
    let plugin = test_sink_plugin();
    // One sink per policy, small rings so they fill: drops, displacement, conflation (a table
    // smaller than the key space: replacement, insertion, refusal) and bounded blocking all run
    // in the measured window, beside the runners' batching and the plugin calls.
    let sinks: Vec<SinkConfig> = [
        SinkPolicy::DropNewest,
        SinkPolicy::DropOldest,
        SinkPolicy::Conflate,
        SinkPolicy::Block,
    ]
    .into_iter()
    .map(|policy| {
        let mut sink = SinkConfig::new(policy.name(), &plugin);
        sink.policy = policy;
        sink.ring_capacity_records = 64;
        sink.batch_max_records = 16;
        sink.conflate_keys_max = 48;
        sink.block_timeout_ms = 1;
        sink.config = toml::from_str("mode = \"noop\"").expect("constant TOML");
        sink
    })
    .collect();
    let mut host = SinkHost::start(&sinks, 2, None).expect("the test sinks start");
    let mut outbounds = host.take_sink_outbounds();
    // Every kind a shard emits, over 96 keys (twice the conflation table).
    let records: Vec<OutRecord> = (0..960u32)
        .map(|index| {
            let symbol_id = SymbolId(index % 96);
            let venue_id = VenueId((index % 8) as u16);
            match index % 4 {
                0 | 1 => OutRecord::Quote(Quote {
                    bid: 100.0 + f64::from(index),
                    ask: 101.0 + f64::from(index),
                    seq: u64::from(index),
                    symbol_id,
                    venue_id,
                    ..Quote::default()
                }),
                2 => OutRecord::Trade(Trade {
                    price: 100.0,
                    qty: 1.0,
                    symbol_id,
                    venue_id,
                    ..Trade::default()
                }),
                _ if index % 8 == 3 => OutRecord::Spread(SpreadSample {
                    symbol_id,
                    buy_venue_id: venue_id,
                    sell_venue_id: VenueId(((index + 1) % 8) as u16),
                    ..SpreadSample::default()
                }),
                _ => OutRecord::Gap(GapEvent {
                    connection_id: index,
                    symbol_id,
                    venue_id,
                    ..GapEvent::default()
                }),
            }
        })
        .collect();
    let run = |outbounds: &mut [tickflow_host::SinkOutbound], rounds: usize| {
        for round in 0..rounds {
            let outbound = &mut outbounds[round % 2];
            // Bursts larger than the rings between flushes: the policies act.
            for record in &records {
                outbound.emit(record);
            }
            outbound.flush();
        }
    };
    // Waits until the runners handed out what the lanes hold, flushing (which also moves
    // conflated records into rings with room) without allocating.
    let settle = |outbounds: &mut [tickflow_host::SinkOutbound], host: &SinkHost| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for outbound in outbounds.iter_mut() {
                outbound.flush();
            }
            if host.records_in_lanes() == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the sink runners did not drain");
            std::thread::yield_now();
        }
    };

    // Warm up: runners' batches, histograms and the conflation tables reach their working state,
    // and every once-a-second task of the runners (the on_batch histogram merge) has run at least
    // once: the warm-up lasts 1.5 s whatever the machine's speed.
    let warm_up_started = Instant::now();
    while warm_up_started.elapsed() < Duration::from_millis(1_500) {
        run(&mut outbounds, 50);
    }
    settle(&mut outbounds, &host);

    // The measured run also spans more than two seconds, so the once-a-second work is in it.
    COUNTING.store(true, Ordering::SeqCst);
    let measured_started = Instant::now();
    let mut measured_rounds = 0usize;
    while measured_rounds < 2_000 || measured_started.elapsed() < Duration::from_millis(2_200) {
        run(&mut outbounds, 50);
        measured_rounds += 50;
    }
    settle(&mut outbounds, &host);
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);

    drop(outbounds);
    let stats = host.shutdown();
    for sink in &stats {
        println!(
            "{}: enqueued {} delivered {} dropped_full {} dropped_oldest {} conflated {} block_timeouts {}",
            sink.name,
            sink.enqueued,
            sink.delivered,
            sink.dropped_full,
            sink.dropped_oldest,
            sink.conflated,
            sink.block_timeouts
        );
    }
    println!("{allocations} allocations");
    let by_name = |name: &str| {
        stats
            .iter()
            .find(|sink| sink.name == name)
            .unwrap_or_else(|| panic!("sink {name}"))
    };
    // The policies really acted in the run (so their paths were measured).
    assert!(by_name("drop_newest").dropped_full > 0);
    assert!(by_name("drop_oldest").dropped_oldest > 0);
    assert!(by_name("conflate").conflated > 0);
    assert!(
        stats
            .iter()
            .all(|sink| sink.delivered > 0 && sink.errors == 0)
    );
    assert_eq!(
        allocations,
        0,
        "the shard → sink hand-off allocated {allocations} times; the first:\n{}",
        first_allocation()
    );
}
