//! Records/s delivered to a no-op sink through the plugin ABI (the descriptor's `extern "C"`
//! `on_batch` pointer, the SDK's glue: `catch_unwind`, raw batch → typed slice) beside a direct
//! in-process call of the same sink's `Sink::on_batch`, at batch sizes 1 and 256.
//!
//! The no-op sink reads every record (sums `seq`), the least any real sink does, so the per-call
//! cost of the ABI is measured against per-record work, as it would be in a plugin. The descriptor
//! is the same one `export_sink!` exports from a cdylib; calling it through a function pointer
//! here costs what a call into a loaded library costs (an indirect call).
//!
//! A second group measures the whole host path — a shard's `Outbound::emit` → the sink's ring →
//! its runner thread → `on_batch` of the real no-op plugin (`plugins/test-sink`, loaded with
//! dlopen) — beside a bare rtrb ring between two threads feeding the same no-op sink in batches of
//! 256, in the same run.

use std::ffi::c_void;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickflow::outbound::{OutRecord, Outbound};
use tickflow::plugin::{SinkConfig, SinkHost, SinkPolicy};
use tickflow_sdk::abi::{Descriptor, STATUS_OK};
use tickflow_sdk::records::{Quote, RecordKind, SymbolId, VenueId};
use tickflow_sdk::sink::descriptor;
use tickflow_sdk::{Batch, HostHandle, NoConfig, Sink, SinkError};

/// Records delivered per measured iteration.
const RECORDS_PER_ITERATION: usize = 4096;

struct NoopSink {
    seq_sum: u64,
}

impl Sink for NoopSink {
    type Config = NoConfig;
    const NAME: &'static str = "noop";
    const VERSION: &'static str = "0";
    const RECORD_KINDS: &'static [RecordKind] = &[RecordKind::Quote];

    fn create(_host: HostHandle, _config: NoConfig) -> Result<NoopSink, SinkError> {
        Ok(NoopSink { seq_sum: 0 })
    }

    // Out of line in both paths, so the comparison is the call, not what the optimizer made of
    // the loop in two different contexts (an in-process sink is called, not inlined, too).
    #[inline(never)]
    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        if let Batch::Quotes(quotes) = batch {
            for quote in quotes {
                self.seq_sum = self.seq_sum.wrapping_add(quote.seq);
            }
        }
        Ok(())
    }
}

static DESCRIPTOR: Descriptor = descriptor::<NoopSink>();

fn quotes() -> Vec<Quote> {
    (0..RECORDS_PER_ITERATION as u64)
        .map(|seq| Quote {
            bid: 100.0,
            ask: 100.5,
            seq,
            symbol_id: SymbolId(1),
            venue_id: VenueId(2),
            ..Quote::default()
        })
        .collect()
}

fn abi(criterion: &mut Criterion) {
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
                        black_box(sink.on_batch(Batch::Quotes(chunk)).is_ok());
                    }
                });
                black_box(sink.seq_sum);
            },
        );
        group.bench_with_input(
            BenchmarkId::new("through_abi", batch_size),
            &batch_size,
            |bencher, &batch_size| {
                let create = DESCRIPTOR.create.expect("create is exported");
                let on_batch = DESCRIPTOR.on_batch.expect("on_batch is exported");
                let destroy = DESCRIPTOR.destroy.expect("destroy is exported");
                let mut instance: *mut c_void = std::ptr::null_mut();
                // SAFETY: a null host is allowed; an empty config; a writable out slot.
                let status =
                    unsafe { create(std::ptr::null(), std::ptr::null(), 0, &mut instance) };
                assert_eq!(status, STATUS_OK);
                bencher.iter(|| {
                    for chunk in black_box(&records).chunks(batch_size) {
                        // SAFETY: `chunk` holds `len` quotes for the call; the instance is live.
                        let status = unsafe {
                            on_batch(
                                instance,
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
        black_box(sink.seq_sum);
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
