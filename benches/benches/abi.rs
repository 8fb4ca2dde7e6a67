//! Records/s handed to a no-op sink through the plugin ABI beside a direct in-process call of an
//! equivalent no-op, at batch sizes 1 and 256, in the same run.
//!
//! "through_abi" loads the real no-op plugin (`plugins/test-sink`, mode `noop`, built by this
//! bench with cargo) with the engine's loader (dlopen) and calls the loaded descriptor's
//! `on_batch`: an indirect call into another object plus the SDK's glue (`catch_unwind`, raw
//! batch → typed slice, the mode match). "direct" calls an in-process sink doing the same work
//! (counting the batch's records) through `Sink::on_batch`, out of line. The function pointer,
//! the instance and the records pass through `black_box`, so neither call can be folded.
//!
//! A second group measures the whole host path — a shard's `Outbound::emit` → the sink's ring →
//! its runner thread → `on_batch` of the same loaded plugin — beside a bare rtrb ring between two
//! threads feeding an in-process no-op sink in batches of 256, in the same run.

use std::ffi::c_void;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickflow_core::outbound::{OutRecord, Outbound};
use tickflow_host::{SinkConfig, SinkHost, SinkPolicy};
use tickflow_sdk::abi::{Descriptor, STATUS_OK};
use tickflow_sdk::records::{Quote, RecordKind, SymbolId, VenueId};
use tickflow_sdk::{Batch, HostHandle, NoConfig, Sink, SinkError};

/// Records delivered per measured iteration.
const RECORDS_PER_ITERATION: usize = 4096;

/// The in-process reference: what the test sink does in mode `noop` (count the records).
struct NoopSink {
    records_seen: u64,
}

impl Sink for NoopSink {
    type Config = NoConfig;
    const NAME: &'static str = "noop";
    const VERSION: &'static str = "0";
    const RECORD_KINDS: &'static [RecordKind] = &[RecordKind::Quote];

    fn create(_host: HostHandle, _config: NoConfig) -> Result<NoopSink, SinkError> {
        Ok(NoopSink { records_seen: 0 })
    }

    // Out of line, as a call into a plugin is.
    #[inline(never)]
    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        self.records_seen += batch.len() as u64;
        Ok(())
    }
}

fn quotes() -> Vec<Quote> {
    (0..RECORDS_PER_ITERATION as u64).map(quote).collect()
}

fn abi(criterion: &mut Criterion) {
    let plugin_path = test_sink_plugin();
    let plugin = tickflow_host::loader::load("noop", &plugin_path)
        .unwrap_or_else(|refusal| panic!("the test sink loads: {refusal}"));
    let descriptor: &'static Descriptor = plugin.descriptor;
    let records = quotes();
    let mut group = criterion.benchmark_group("abi");
    group.throughput(Throughput::Elements(RECORDS_PER_ITERATION as u64));
    for batch_size in [1usize, 256] {
        group.bench_with_input(
            BenchmarkId::new("direct", batch_size),
            &batch_size,
            |bencher, &batch_size| {
                let mut sink =
                    NoopSink::create(HostHandle::detached(), NoConfig {}).expect("noop creates");
                bencher.iter(|| {
                    for chunk in black_box(&records).chunks(batch_size) {
                        let sink = black_box(&mut sink);
                        black_box(sink.on_batch(Batch::Quotes(black_box(chunk))).is_ok());
                    }
                });
                black_box(sink.records_seen);
            },
        );
        group.bench_with_input(
            BenchmarkId::new("through_abi", batch_size),
            &batch_size,
            |bencher, &batch_size| {
                let create = descriptor.create.expect("the loader checked create");
                let on_batch = descriptor.on_batch.expect("the loader checked on_batch");
                let destroy = descriptor.destroy.expect("the loader checked destroy");
                let config = "mode = \"noop\"";
                let mut instance: *mut c_void = std::ptr::null_mut();
                // SAFETY: a null host is allowed by the ABI; the config is valid for the call;
                // `instance` is a writable out slot.
                let status = unsafe {
                    create(
                        std::ptr::null(),
                        config.as_ptr(),
                        config.len(),
                        &mut instance,
                    )
                };
                assert_eq!(status, STATUS_OK);
                bencher.iter(|| {
                    for chunk in black_box(&records).chunks(batch_size) {
                        let on_batch = black_box(on_batch);
                        let chunk = black_box(chunk);
                        // SAFETY: `chunk` holds `len` quotes for the call; the instance is live.
                        let status = unsafe {
                            on_batch(
                                black_box(instance),
                                RecordKind::Quote as u32,
                                chunk.as_ptr().cast(),
                                chunk.len(),
                            )
                        };
                        black_box(status);
                    }
                });
                // SAFETY: created above, destroyed once.
                unsafe { destroy(instance) };
            },
        );
    }
    group.finish();
}

/// Records per measured run of the host group.
const HOST_RECORDS: u64 = 1 << 18;
const HOST_BATCH_RECORDS: usize = 256;
const HOST_RING_RECORDS: usize = 4096;

/// Builds the no-op test plugin in this bench's profile directory and returns its path.
fn test_sink_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("bench binaries live in <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--quiet", "--release", "-p", "tickflow-test-sink"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(workspace)
            .status()
            .expect("cargo runs");
    assert!(status.success(), "building tickflow-test-sink failed");
    profile_dir.join("libtickflow_test_sink.so")
}

fn quote(seq: u64) -> Quote {
    Quote {
        bid: 100.0,
        ask: 100.5,
        seq,
        symbol_id: SymbolId(1),
        venue_id: VenueId(2),
        ..Quote::default()
    }
}

/// Reference: a bare SPSC ring to a thread that hands batches of 256 to the no-op sink directly.
/// Both sides yield when the ring is empty or full, as the host's do (on a shared machine a spinning
/// pair measures the scheduler).
fn bare_ring(records: u64) -> Duration {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<Quote>::new(HOST_RING_RECORDS);
    let start = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut sink = NoopSink::create(HostHandle::detached(), NoConfig {}).expect("noop creates");
        let mut batch: Vec<Quote> = Vec::with_capacity(HOST_BATCH_RECORDS);
        let mut seen = 0u64;
        while seen < records {
            while batch.len() < HOST_BATCH_RECORDS {
                match consumer.pop() {
                    Ok(quote) => batch.push(quote),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                std::thread::yield_now();
                continue;
            }
            seen += batch.len() as u64;
            let _ = black_box(sink.on_batch(Batch::Quotes(&batch)));
            batch.clear();
        }
        black_box(sink.records_seen);
    });
    let mut seq = 0;
    while seq < records {
        if producer.push(quote(seq)).is_ok() {
            seq += 1;
        } else {
            std::thread::yield_now();
        }
    }
    reader.join().expect("reader thread");
    start.elapsed()
}

/// The host path: emit through the sink host's `Outbound` (block policy: nothing dropped) until
/// the plugin has been handed every record.
fn through_host(plugin: &std::path::Path, records: u64) -> Duration {
    let mut sink = SinkConfig::new("noop", plugin);
    sink.policy = SinkPolicy::Block;
    sink.block_timeout_ms = 10_000;
    sink.ring_capacity_records = HOST_RING_RECORDS;
    sink.batch_max_records = HOST_BATCH_RECORDS;
    let mut host = SinkHost::start(&[sink], 1, None).expect("the no-op plugin starts");
    let mut outbounds = host.take_sink_outbounds();
    let outbound = &mut outbounds[0];
    let start = Instant::now();
    for seq in 0..records {
        outbound.emit(&OutRecord::Quote(quote(seq)));
        if seq % 64 == 63 {
            outbound.flush();
        }
    }
    outbound.flush();
    while host.stats()[0].delivered < records {
        std::thread::yield_now();
    }
    let elapsed = start.elapsed();
    drop(outbounds);
    host.shutdown();
    elapsed
}

fn host(criterion: &mut Criterion) {
    let plugin = test_sink_plugin();
    let mut group = criterion.benchmark_group("sink_host_delivery");
    group.throughput(Throughput::Elements(HOST_RECORDS));
    group.sample_size(10);
    group.bench_function("bare_ring_batch_256", |bencher| {
        bencher.iter_custom(|iterations| (0..iterations).map(|_| bare_ring(HOST_RECORDS)).sum())
    });
    group.bench_function("host_to_plugin_batch_256", |bencher| {
        bencher.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| through_host(&plugin, HOST_RECORDS))
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, abi, host);
criterion_main!(benches);
