//! Ring throughput between two threads with 64-byte records: rtrb single and batched (the
//! engine's feed → shard ring) beside crossbeam's `ArrayQueue` in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use tickflow_core::ring::{pop_batch, push_batch, ring};
use tickflow_sdk::records::Quote;

const RECORDS: u64 = 1 << 20;
const CAPACITY: usize = 4096;
const BATCH: usize = 64;

fn record(i: u64) -> Quote {
    Quote {
        bid: i as f64,
        seq: i,
        ..Quote::default()
    }
}

fn rtrb_single(records: u64) -> Duration {
    let (mut producer, mut consumer) = ring::<Quote>(CAPACITY);
    let start = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut seen = 0u64;
        while seen < records {
            if let Ok(quote) = consumer.pop() {
                black_box(quote);
                seen += 1;
            } else {
                std::hint::spin_loop();
            }
        }
    });
    let mut i = 0;
    while i < records {
        if producer.push(record(i)).is_ok() {
            i += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    reader.join().expect("reader thread");
    start.elapsed()
}

fn rtrb_batched(records: u64) -> Duration {
    let (mut producer, mut consumer) = ring::<Quote>(CAPACITY);
    let start = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut seen = 0u64;
        while seen < records {
            let popped = pop_batch(&mut consumer, BATCH * 4, |quote| {
                black_box(quote);
            });
            if popped == 0 {
                std::hint::spin_loop();
            }
            seen += popped as u64;
        }
    });
    let mut batch = [Quote::default(); BATCH];
    let mut i = 0;
    while i < records {
        let len = BATCH.min((records - i) as usize);
        for (offset, slot) in batch[..len].iter_mut().enumerate() {
            *slot = record(i + offset as u64);
        }
        let mut sent = 0;
        while sent < len {
            let pushed = push_batch(&mut producer, &batch[sent..len]);
            if pushed == 0 {
                std::hint::spin_loop();
            }
            sent += pushed;
        }
        i += len as u64;
    }
    reader.join().expect("reader thread");
    start.elapsed()
}

fn crossbeam_array_queue(records: u64) -> Duration {
    let queue = Arc::new(ArrayQueue::<Quote>::new(CAPACITY));
    let reader_queue = Arc::clone(&queue);
    let start = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut seen = 0u64;
        while seen < records {
            if let Some(quote) = reader_queue.pop() {
                black_box(quote);
                seen += 1;
            } else {
                std::hint::spin_loop();
            }
        }
    });
    let mut i = 0;
    while i < records {
        if queue.push(record(i)).is_ok() {
            i += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    reader.join().expect("reader thread");
    start.elapsed()
}

fn ring_throughput(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("ring_64B_two_threads");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.bench_function("rtrb_single", |bench| {
        bench.iter_custom(|iterations| (0..iterations).map(|_| rtrb_single(RECORDS)).sum())
    });
    group.bench_function("rtrb_batched_64", |bench| {
        bench.iter_custom(|iterations| (0..iterations).map(|_| rtrb_batched(RECORDS)).sum())
    });
    group.bench_function("crossbeam_array_queue", |bench| {
        bench.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| crossbeam_array_queue(RECORDS))
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, ring_throughput);
criterion_main!(benches);
