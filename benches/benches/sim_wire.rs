//! The simulators' per-frame work: a best bid/ask's four numbers written by `tickflow_sim::Fixed`
//! beside std's `{:.8}` / `{:.6}` formatting of the same values, and an HTX frame gzipped by
//! `tickflow_sim::gzip_into` beside flate2 (zlib-rs, level 1, one reused state reset per
//! frame, which is how the simulators gzipped before), in the same run. The simulators share the
//! machine with the engine they measure, so what they spend per frame bounds the rates a scenario
//! can offer.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tickflow_sim::Fixed;

/// Prices and sizes of the kind the simulators write (off any grid).
fn quotes() -> Vec<[f64; 4]> {
    (0..1024)
        .map(|index| {
            let mid = 0.05 + index as f64 * 97.130_7;
            [
                mid - 0.000_31,
                1.0 + index as f64 * 0.731,
                mid + 0.000_29,
                2.5 + index as f64 * 0.377,
            ]
        })
        .collect()
}

fn sim_wire_benches(criterion: &mut Criterion) {
    let quotes = quotes();
    let mut text = String::with_capacity(256);
    let mut group = criterion.benchmark_group("sim_wire/bbo_numbers");
    let mut next = 0usize;
    group.bench_function("fixed", |bencher| {
        bencher.iter(|| {
            let [bid, bid_qty, ask, ask_qty] = quotes[next % quotes.len()];
            next += 1;
            text.clear();
            let _ = write!(
                text,
                r#""b":"{}","B":"{}","a":"{}","A":"{}""#,
                Fixed::<8>(bid),
                Fixed::<6>(bid_qty),
                Fixed::<8>(ask),
                Fixed::<6>(ask_qty)
            );
            black_box(&text);
        })
    });
    group.bench_function("std_reference", |bencher| {
        bencher.iter(|| {
            let [bid, bid_qty, ask, ask_qty] = quotes[next % quotes.len()];
            next += 1;
            text.clear();
            let _ = write!(
                text,
                r#""b":"{bid:.8}","B":"{bid_qty:.6}","a":"{ask:.8}","A":"{ask_qty:.6}""#
            );
            black_box(&text);
        })
    });
    group.finish();

    let htx_frame = r#"{"ch":"market.btcusdt.bbo","ts":1764547200123,"tick":{"seqId":161499104953,"ask":97130.70029000,"askSize":2.377000,"bid":97130.69969000,"bidSize":1.731000,"quoteTime":1764547200123,"symbol":"btcusdt"}}"#;
    let mut out = Vec::with_capacity(1024);
    let mut group = criterion.benchmark_group("sim_wire/htx_gzip");
    group.bench_function("fixed_huffman", |bencher| {
        bencher.iter(|| {
            out.clear();
            tickflow_sim::gzip_into(black_box(htx_frame.as_bytes()), &mut out);
            black_box(&out);
        })
    });
    let mut compress = flate2::Compress::new(flate2::Compression::fast(), false);
    group.bench_function("flate2_reference", |bencher| {
        bencher.iter(|| {
            out.clear();
            out.extend_from_slice(&[0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff]);
            compress.reset();
            let input = black_box(htx_frame.as_bytes());
            let _ = compress.compress_vec(input, &mut out, flate2::FlushCompress::Finish);
            let mut crc = flate2::Crc::new();
            crc.update(input);
            out.extend_from_slice(&crc.sum().to_le_bytes());
            out.extend_from_slice(&(input.len() as u32).to_le_bytes());
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, sim_wire_benches);
criterion_main!(benches);
