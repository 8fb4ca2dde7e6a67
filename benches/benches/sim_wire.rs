//! The simulators' best bid/ask text: its four numbers written by `tickflow_sim::Fixed` beside
//! std's `{:.8}` / `{:.6}` formatting of the same values, in the same run. The simulators share
//! the machine with the engine they measure, so what they spend per frame bounds the rates a
//! scenario can offer.

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
}

criterion_group!(benches, sim_wire_benches);
criterion_main!(benches);
