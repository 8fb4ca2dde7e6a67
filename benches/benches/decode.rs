//! Decode cost per frame for each venue's best bid/ask and trade fixture frames, beside two
//! references measured in the same run on the same Binance bookTicker bytes: a bare simd-json
//! typed parse (serde struct of the bookTicker fields: the generic limit) and "copy the frame +
//! two float parses" (the floor). Every iteration first copies the frame into a reused buffer,
//! since in-place parsing rewrites it; the references do the same copy.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;
use tickflow::decode::{
    BinanceDecoder, DecodeLimits, Decoder, FrameEncoding, RecordBatch, decoder_for, mexc_proto,
};
use tickflow::registry::SymbolRegistry;
use tickflow::venue::Venue;

/// One fixture line (`engine/tests/fixtures/exchanges/*.jsonl`).
#[derive(serde::Deserialize)]
struct FixtureLine {
    kind: String,
    note: String,
    encoding: String,
    frame: String,
}

fn fixture_text(venue: Venue) -> &'static str {
    match venue {
        Venue::Binance => include_str!("../../engine/tests/fixtures/exchanges/binance.jsonl"),
        Venue::Bybit => include_str!("../../engine/tests/fixtures/exchanges/bybit.jsonl"),
        Venue::Okx => include_str!("../../engine/tests/fixtures/exchanges/okx.jsonl"),
        Venue::Mexc => include_str!("../../engine/tests/fixtures/exchanges/mexc.jsonl"),
        Venue::Gate => include_str!("../../engine/tests/fixtures/exchanges/gate.jsonl"),
        Venue::Kucoin => include_str!("../../engine/tests/fixtures/exchanges/kucoin.jsonl"),
        Venue::Bitget => include_str!("../../engine/tests/fixtures/exchanges/bitget.jsonl"),
        Venue::Htx => include_str!("../../engine/tests/fixtures/exchanges/htx.jsonl"),
    }
}

/// The first fixture frame of `kind` (`bbo` or `trade`) of `venue`, as wire bytes.
fn wire_frame(venue: Venue, kind: &str) -> (Vec<u8>, FrameEncoding) {
    let line = fixture_text(venue)
        .lines()
        .map(|line| {
            let mut bytes = line.as_bytes().to_vec();
            simd_json::serde::from_slice::<FixtureLine>(&mut bytes).expect("fixture line is JSON")
        })
        // Bitget's first trade frame is the subscribe snapshot (a control event): take the update.
        .find(|line| line.kind == kind && !line.note.starts_with("first trade push"))
        .expect("every venue has bbo and trade fixtures");
    match line.encoding.as_str() {
        "gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(line.frame.as_bytes())
                .expect("writing to a Vec cannot fail");
            let bytes = encoder.finish().expect("writing to a Vec cannot fail");
            (bytes, FrameEncoding::Binary)
        }
        "protobuf-decoded" => (mexc_frame(&line.frame), FrameEncoding::Binary),
        _ => (line.frame.into_bytes(), FrameEncoding::Text),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MexcJson {
    channel: String,
    symbol: String,
    #[serde(default)]
    send_time: i64,
    public_aggre_book_ticker: Option<MexcTickerJson>,
    public_aggre_deals: Option<MexcDealsJson>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MexcTickerJson {
    bid_price: String,
    bid_quantity: String,
    ask_price: String,
    ask_quantity: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MexcDealsJson {
    deals: Vec<MexcDealJson>,
    event_type: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MexcDealJson {
    price: String,
    quantity: String,
    trade_type: i32,
    time: i64,
}

/// Encodes the decoded form the fixture shows into the real binary protobuf frame.
fn mexc_frame(json: &str) -> Vec<u8> {
    let mut bytes = json.as_bytes().to_vec();
    let push: MexcJson = simd_json::serde::from_slice(&mut bytes).expect("fixture frame is JSON");
    let body = match (push.public_aggre_book_ticker, push.public_aggre_deals) {
        (Some(ticker), _) => {
            mexc_proto::Body::PublicAggreBookTicker(mexc_proto::PublicAggreBookTickerV3Api {
                bid_price: ticker.bid_price,
                bid_quantity: ticker.bid_quantity,
                ask_price: ticker.ask_price,
                ask_quantity: ticker.ask_quantity,
                version: String::new(),
                last_order_create_time: 0,
            })
        }
        (None, Some(deals)) => {
            mexc_proto::Body::PublicAggreDeals(mexc_proto::PublicAggreDealsV3Api {
                deals: deals
                    .deals
                    .into_iter()
                    .map(|deal| mexc_proto::PublicAggreDealsV3ApiItem {
                        price: deal.price,
                        quantity: deal.quantity,
                        trade_type: deal.trade_type,
                        time: deal.time,
                        trade_id: String::new(),
                    })
                    .collect(),
                event_type: deals.event_type,
            })
        }
        (None, None) => panic!("MEXC fixture without a body"),
    };
    mexc_proto::PushDataV3ApiWrapper {
        channel: push.channel,
        symbol: push.symbol,
        symbol_id: String::new(),
        create_time: 0,
        send_time: push.send_time,
        body: Some(body),
    }
    .encode_to_vec()
}

fn registry() -> Arc<SymbolRegistry> {
    let registry = SymbolRegistry::new(64);
    registry
        .register_all([
            "BNB-USDT",
            "NKN-USDT",
            "BNB-BTC",
            "METIS-USDT",
            "BTC-USDT",
            "OP-USDT",
            "GT-USDT",
            "TRIO-ETH",
        ])
        .expect("fixture symbols are valid");
    Arc::new(registry)
}

/// The Binance bookTicker fields, as a bare typed parse sees them.
#[derive(serde::Deserialize)]
#[allow(non_snake_case, dead_code)]
struct BookTicker<'a> {
    u: u64,
    s: &'a str,
    b: &'a str,
    B: &'a str,
    a: &'a str,
    A: &'a str,
}

fn decode_benches(criterion: &mut Criterion) {
    let registry = registry();
    let limits = DecodeLimits::default();
    let mut group = criterion.benchmark_group("decode");
    for venue in Venue::ALL {
        for kind in ["bbo", "trade"] {
            let (frame, encoding) = wire_frame(venue, kind);
            let mut decoder = decoder_for(venue, registry.clone(), limits);
            let mut buffer = Vec::with_capacity(frame.len());
            let mut out = RecordBatch::with_capacity(limits.max_records_per_frame);
            group.bench_function(format!("{venue}/{kind}"), |bencher| {
                bencher.iter(|| {
                    buffer.clear();
                    buffer.extend_from_slice(&frame);
                    out.clear();
                    let outcome = decoder.decode(&mut buffer, encoding, 1, &mut out);
                    black_box(outcome).expect("fixture frames decode");
                })
            });
        }
    }

    let (book_ticker, _) = wire_frame(Venue::Binance, "bbo");
    let mut buffer = Vec::with_capacity(book_ticker.len());
    let mut out = RecordBatch::with_capacity(limits.max_records_per_frame);
    let mut generic = BinanceDecoder::new(registry.clone(), limits);
    generic.set_fast_path(false);
    group.bench_function("binance/bbo_generic_path", |bencher| {
        bencher.iter(|| {
            buffer.clear();
            buffer.extend_from_slice(&book_ticker);
            out.clear();
            let outcome = generic.decode(&mut buffer, FrameEncoding::Text, 1, &mut out);
            black_box(outcome).expect("fixture frames decode");
        })
    });
    group.bench_function("reference/binance_bbo_simd_json_typed_parse", |bencher| {
        bencher.iter(|| {
            buffer.clear();
            buffer.extend_from_slice(&book_ticker);
            let parsed: BookTicker<'_> =
                simd_json::serde::from_slice(&mut buffer).expect("fixture frame is JSON");
            black_box(parsed.u);
            black_box(parsed.b);
        })
    });
    // The floor: the copy every path makes, and the two price parses every decoder must do.
    let text = std::str::from_utf8(&book_ticker).expect("fixture frame is UTF-8");
    let bid_at = text.find("\"b\":\"").expect("bookTicker has b") + 5;
    let ask_at = text.find("\"a\":\"").expect("bookTicker has a") + 5;
    let bid_len = text[bid_at..].find('"').expect("b is a string");
    let ask_len = text[ask_at..].find('"').expect("a is a string");
    group.bench_function(
        "reference/binance_bbo_copy_and_two_float_parses",
        |bencher| {
            bencher.iter(|| {
                buffer.clear();
                buffer.extend_from_slice(&book_ticker);
                let bid: f64 = std::str::from_utf8(&buffer[bid_at..bid_at + bid_len])
                    .expect("ASCII")
                    .parse()
                    .expect("a number");
                let ask: f64 = std::str::from_utf8(&buffer[ask_at..ask_at + ask_len])
                    .expect("ASCII")
                    .parse()
                    .expect("a number");
                black_box((bid, ask));
            })
        },
    );
    group.finish();
}

criterion_group!(benches, decode_benches);
criterion_main!(benches);
