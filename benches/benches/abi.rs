//! Records/s delivered to a no-op sink through the plugin ABI (the descriptor's `extern "C"`
//! `on_batch` pointer, the SDK's glue: `catch_unwind`, raw batch → typed slice) beside a direct
//! in-process call of the same sink's `Sink::on_batch`, at batch sizes 1 and 256.
//!
//! The no-op sink reads every record (sums `seq`), the least any real sink does, so the per-call
//! cost of the ABI is measured against per-record work, as it would be in a plugin. The descriptor
//! is the same one `export_sink!` exports from a cdylib; calling it through a function pointer
//! here costs what a call into a loaded library costs (an indirect call).

use std::ffi::c_void;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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
                        let _ = black_box(sink.on_batch(Batch::Quotes(chunk)));
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

criterion_group!(benches, abi);
criterion_main!(benches);
