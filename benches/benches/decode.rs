//! Decode cost per frame for each venue's best bid/ask and trade fixture frames, each beside two
//! references measured in the same run on the same bytes:
//!
//! - `typed_parse`: a bare simd-json typed parse (`simd_json::serde::from_slice` into a serde
//!   struct holding just the fields that venue's decoder reads): the generic limit. For HTX it
//!   includes the gzip inflate (the `inflate` row shows that part alone); for MEXC it is prost's
//!   own `Message::decode` into the generated structs of `tickflow_decode::mexc_proto`.
//! - `floor`: copy the frame and parse the two floats every decoder must parse (bid and ask, or
//!   price and quantity); for HTX the inflate is part of the floor too.
//!
//! Every iteration first copies the frame into a reused buffer, since in-place parsing rewrites
//! it; the references make the same copy. One criterion group per venue, so each prints
//! `bbo/decoder`, `bbo/typed_parse`, `bbo/floor`, then the same for `trade`.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_decode::{
    DecodeLimits, FrameEncoding, RecordBatch, decoder_for, generic_path_decoder_for, mexc_proto,
};

/// One fixture line (`engine/decode/tests/fixtures/exchanges/*.jsonl`).
#[derive(serde::Deserialize)]
struct FixtureLine {
    kind: String,
    note: String,
    encoding: String,
    frame: String,
}

fn fixture_text(venue: Venue) -> &'static str {
    match venue {
        Venue::Binance => {
            include_str!("../../engine/decode/tests/fixtures/exchanges/binance.jsonl")
        }
        Venue::Bybit => include_str!("../../engine/decode/tests/fixtures/exchanges/bybit.jsonl"),
        Venue::Okx => include_str!("../../engine/decode/tests/fixtures/exchanges/okx.jsonl"),
        Venue::Mexc => include_str!("../../engine/decode/tests/fixtures/exchanges/mexc.jsonl"),
        Venue::Gate => include_str!("../../engine/decode/tests/fixtures/exchanges/gate.jsonl"),
        Venue::Kucoin => include_str!("../../engine/decode/tests/fixtures/exchanges/kucoin.jsonl"),
        Venue::Bitget => include_str!("../../engine/decode/tests/fixtures/exchanges/bitget.jsonl"),
        Venue::Htx => include_str!("../../engine/decode/tests/fixtures/exchanges/htx.jsonl"),
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

// ---------------------------------------------------------------------------------------------
// The typed-parse references: per venue and frame, the fields its decoder reads. Arrays whose
// length the protocol does not fix are `Vec`s (what a serde user writes); price levels are tuples.

#[allow(non_snake_case, dead_code)]
mod typed {
    use serde::Deserialize;

    /// Binance raw `bookTicker`.
    #[derive(Deserialize)]
    pub struct BinanceBbo<'a> {
        pub u: u64,
        pub s: &'a str,
        pub b: &'a str,
        pub B: &'a str,
        pub a: &'a str,
        pub A: &'a str,
    }

    /// Binance raw `trade`.
    #[derive(Deserialize)]
    pub struct BinanceTrade<'a> {
        pub e: &'a str,
        pub s: &'a str,
        pub t: u64,
        pub p: &'a str,
        pub q: &'a str,
        pub T: u64,
        pub m: bool,
    }

    #[derive(Deserialize)]
    pub struct InstArg<'a> {
        pub channel: &'a str,
        pub instId: &'a str,
    }

    /// Bitget `books1`.
    #[derive(Deserialize)]
    pub struct BitgetBbo<'a> {
        pub action: &'a str,
        #[serde(borrow)]
        pub arg: InstArg<'a>,
        #[serde(borrow)]
        pub data: Vec<BitgetBook<'a>>,
    }

    #[derive(Deserialize)]
    pub struct BitgetBook<'a> {
        #[serde(borrow)]
        pub asks: Vec<(&'a str, &'a str)>,
        #[serde(borrow)]
        pub bids: Vec<(&'a str, &'a str)>,
        pub ts: &'a str,
    }

    /// Bitget `trade` update.
    #[derive(Deserialize)]
    pub struct BitgetTrade<'a> {
        pub action: &'a str,
        #[serde(borrow)]
        pub arg: InstArg<'a>,
        #[serde(borrow)]
        pub data: Vec<BitgetTradeItem<'a>>,
    }

    #[derive(Deserialize)]
    pub struct BitgetTradeItem<'a> {
        pub ts: &'a str,
        pub price: &'a str,
        pub size: &'a str,
        pub side: &'a str,
        pub tradeId: &'a str,
    }

    /// Bybit `orderbook.1`.
    #[derive(Deserialize)]
    pub struct BybitBbo<'a> {
        pub topic: &'a str,
        pub ts: u64,
        #[serde(borrow)]
        pub data: BybitBook<'a>,
    }

    #[derive(Deserialize)]
    pub struct BybitBook<'a> {
        pub s: &'a str,
        #[serde(borrow)]
        pub b: Vec<(&'a str, &'a str)>,
        #[serde(borrow)]
        pub a: Vec<(&'a str, &'a str)>,
        pub seq: u64,
    }

    /// Bybit `publicTrade`.
    #[derive(Deserialize)]
    pub struct BybitTrade<'a> {
        pub topic: &'a str,
        #[serde(borrow)]
        pub data: Vec<BybitTradeItem<'a>>,
    }

    #[derive(Deserialize)]
    pub struct BybitTradeItem<'a> {
        pub T: u64,
        pub s: &'a str,
        pub S: &'a str,
        pub v: &'a str,
        pub p: &'a str,
        pub i: &'a str,
    }

    /// Gate `spot.book_ticker`.
    #[derive(Deserialize)]
    pub struct GateBbo<'a> {
        pub channel: &'a str,
        pub event: &'a str,
        #[serde(borrow)]
        pub result: GateBook<'a>,
    }

    #[derive(Deserialize)]
    pub struct GateBook<'a> {
        pub t: u64,
        pub u: u64,
        pub s: &'a str,
        pub b: &'a str,
        pub B: &'a str,
        pub a: &'a str,
        pub A: &'a str,
    }

    /// Gate `spot.trades`.
    #[derive(Deserialize)]
    pub struct GateTrade<'a> {
        pub channel: &'a str,
        pub event: &'a str,
        #[serde(borrow)]
        pub result: GateTradeItem<'a>,
    }

    #[derive(Deserialize)]
    pub struct GateTradeItem<'a> {
        pub id: u64,
        pub create_time_ms: &'a str,
        pub side: &'a str,
        pub currency_pair: &'a str,
        pub amount: &'a str,
        pub price: &'a str,
    }

    /// HTX `market.*.bbo` (numbers as JSON numbers).
    #[derive(Deserialize)]
    pub struct HtxBbo<'a> {
        pub ch: &'a str,
        #[serde(borrow)]
        pub tick: HtxBook<'a>,
    }

    #[derive(Deserialize)]
    pub struct HtxBook<'a> {
        pub seqId: u64,
        pub ask: f64,
        pub askSize: f64,
        pub bid: f64,
        pub bidSize: f64,
        pub quoteTime: u64,
        pub symbol: &'a str,
    }

    /// HTX `trade.detail`.
    #[derive(Deserialize)]
    pub struct HtxTrade<'a> {
        pub ch: &'a str,
        #[serde(borrow)]
        pub tick: HtxTradeTick<'a>,
    }

    #[derive(Deserialize)]
    pub struct HtxTradeTick<'a> {
        #[serde(borrow)]
        pub data: Vec<HtxTradeItem<'a>>,
    }

    #[derive(Deserialize)]
    pub struct HtxTradeItem<'a> {
        pub ts: u64,
        pub tradeId: u64,
        pub amount: f64,
        pub price: f64,
        pub direction: &'a str,
    }

    /// KuCoin `/spotMarket/level1`.
    #[derive(Deserialize)]
    pub struct KucoinBbo<'a> {
        pub topic: &'a str,
        #[serde(rename = "type")]
        pub kind: &'a str,
        #[serde(borrow)]
        pub data: KucoinLevel1<'a>,
    }

    #[derive(Deserialize)]
    pub struct KucoinLevel1<'a> {
        #[serde(borrow)]
        pub asks: (&'a str, &'a str),
        #[serde(borrow)]
        pub bids: (&'a str, &'a str),
        pub timestamp: u64,
    }

    /// KuCoin `/market/match`.
    #[derive(Deserialize)]
    pub struct KucoinTrade<'a> {
        pub topic: &'a str,
        #[serde(rename = "type")]
        pub kind: &'a str,
        #[serde(borrow)]
        pub data: KucoinMatch<'a>,
    }

    #[derive(Deserialize)]
    pub struct KucoinMatch<'a> {
        pub price: &'a str,
        pub side: &'a str,
        pub size: &'a str,
        pub symbol: &'a str,
        pub time: &'a str,
        pub tradeId: &'a str,
    }

    /// OKX `bbo-tbt` (levels are `[px, sz, deprecated, numOrders]`).
    #[derive(Deserialize)]
    pub struct OkxBbo<'a> {
        #[serde(borrow)]
        pub arg: InstArg<'a>,
        #[serde(borrow)]
        pub data: Vec<OkxBook<'a>>,
    }

    #[derive(Deserialize)]
    pub struct OkxBook<'a> {
        #[serde(borrow)]
        pub asks: Vec<(&'a str, &'a str, &'a str, &'a str)>,
        #[serde(borrow)]
        pub bids: Vec<(&'a str, &'a str, &'a str, &'a str)>,
        pub ts: &'a str,
        pub seqId: u64,
    }

    /// OKX `trades`.
    #[derive(Deserialize)]
    pub struct OkxTrade<'a> {
        #[serde(borrow)]
        pub arg: InstArg<'a>,
        #[serde(borrow)]
        pub data: Vec<OkxTradeItem<'a>>,
    }

    #[derive(Deserialize)]
    pub struct OkxTradeItem<'a> {
        pub instId: &'a str,
        pub tradeId: &'a str,
        pub px: &'a str,
        pub sz: &'a str,
        pub side: &'a str,
        pub ts: &'a str,
    }
}

/// A reused gzip inflater for the HTX references: one deflate state and output buffer across
/// iterations, like the decoder's (GzEncoder frames carry the plain 10-byte header).
struct Inflater {
    decompress: flate2::Decompress,
    inflated: Vec<u8>,
}

impl Inflater {
    fn new() -> Inflater {
        Inflater {
            decompress: flate2::Decompress::new(false),
            inflated: Vec::with_capacity(4096),
        }
    }

    fn inflate(&mut self, frame: &[u8]) -> &mut Vec<u8> {
        const GZIP_HEADER_BYTES: usize = 10;
        self.decompress.reset(false);
        self.inflated.clear();
        let status = self
            .decompress
            .decompress_vec(
                &frame[GZIP_HEADER_BYTES..],
                &mut self.inflated,
                flate2::FlushDecompress::Finish,
            )
            .expect("fixture frame inflates");
        assert_eq!(
            status,
            flate2::Status::StreamEnd,
            "fixture frame fits the buffer"
        );
        let mut crc = flate2::Crc::new();
        crc.update(&self.inflated);
        let trailer = GZIP_HEADER_BYTES + self.decompress.total_in() as usize;
        assert_eq!(
            frame[trailer..trailer + 4],
            crc.sum().to_le_bytes(),
            "gzip checksum"
        );
        &mut self.inflated
    }
}

/// The typed parse of one venue frame: copies `frame` into `buffer` (inflating HTX frames) and
/// parses it into that venue's reference struct.
fn typed_parse(
    venue: Venue,
    kind: &str,
    frame: &[u8],
    buffer: &mut Vec<u8>,
    inflater: &mut Inflater,
) {
    macro_rules! parse {
        ($bytes:expr, $ty:ty) => {{
            let parsed: $ty = simd_json::serde::from_slice($bytes).expect("fixture frame parses");
            black_box(&parsed);
        }};
    }
    if venue == Venue::Mexc {
        let push = mexc_proto::PushDataV3ApiWrapper::decode(frame).expect("fixture frame decodes");
        black_box(&push);
        return;
    }
    let bytes: &mut Vec<u8> = if venue == Venue::Htx {
        inflater.inflate(frame)
    } else {
        buffer.clear();
        buffer.extend_from_slice(frame);
        buffer
    };
    match (venue, kind) {
        (Venue::Binance, "bbo") => parse!(bytes, typed::BinanceBbo<'_>),
        (Venue::Binance, _) => parse!(bytes, typed::BinanceTrade<'_>),
        (Venue::Bitget, "bbo") => parse!(bytes, typed::BitgetBbo<'_>),
        (Venue::Bitget, _) => parse!(bytes, typed::BitgetTrade<'_>),
        (Venue::Bybit, "bbo") => parse!(bytes, typed::BybitBbo<'_>),
        (Venue::Bybit, _) => parse!(bytes, typed::BybitTrade<'_>),
        (Venue::Gate, "bbo") => parse!(bytes, typed::GateBbo<'_>),
        (Venue::Gate, _) => parse!(bytes, typed::GateTrade<'_>),
        (Venue::Htx, "bbo") => parse!(bytes, typed::HtxBbo<'_>),
        (Venue::Htx, _) => parse!(bytes, typed::HtxTrade<'_>),
        (Venue::Kucoin, "bbo") => parse!(bytes, typed::KucoinBbo<'_>),
        (Venue::Kucoin, _) => parse!(bytes, typed::KucoinTrade<'_>),
        (Venue::Okx, "bbo") => parse!(bytes, typed::OkxBbo<'_>),
        (Venue::Okx, _) => parse!(bytes, typed::OkxTrade<'_>),
        (Venue::Mexc, _) => unreachable!("MEXC returned above"),
    }
}

/// Where the two floats of the floor sit in the (inflated) frame: bid and ask for `bbo`, price
/// and quantity for `trade`, found by their values in the fixture text.
fn floor_spans(venue: Venue, kind: &str, text: &[u8]) -> [(usize, usize); 2] {
    let values: [&str; 2] = match (venue, kind) {
        (Venue::Binance, "bbo") => ["25.35190000", "25.36520000"],
        (Venue::Binance, _) => ["0.001", "100"],
        (Venue::Bitget, "bbo") => ["44.82", "44.90"],
        (Venue::Bitget, _) => ["1.717", "56.16"],
        (Venue::Bybit, "bbo") => ["27450.00", "27451.00"],
        (Venue::Bybit, _) => ["16578.50", "0.001"],
        (Venue::Gate, "bbo") => ["19177.79", "19179.38"],
        (Venue::Gate, _) => ["0.4705000000", "16.4700000000"],
        (Venue::Htx, "bbo") => ["52665.01", "52665.02"],
        (Venue::Htx, _) => ["52648.62", "0.006754"],
        (Venue::Kucoin, "bbo") => ["68145.7", "68145.8"],
        (Venue::Kucoin, _) => ["67523", "0.003"],
        (Venue::Mexc, "bbo") => ["93387.28", "93387.29"],
        (Venue::Mexc, _) => ["93220.00", "0.04438243"],
        (Venue::Okx, "bbo") => ["8476.97", "8476.98"],
        (Venue::Okx, _) => ["30236", "0.0002"],
    };
    values.map(|value| {
        let at = text
            .windows(value.len())
            .position(|window| window == value.as_bytes())
            .unwrap_or_else(|| panic!("{venue} {kind} frame holds {value}"));
        (at, value.len())
    })
}

fn parse_float(bytes: &[u8]) -> f64 {
    std::str::from_utf8(bytes)
        .expect("ASCII")
        .parse()
        .expect("a number")
}

/// A decoder with its fast path off, for the venues that have one.
type GenericDecode =
    dyn FnMut(
        &mut [u8],
        &mut RecordBatch,
    ) -> Result<tickflow_decode::FrameOutcome, tickflow_decode::DecodeError>;

fn decode_benches(criterion: &mut Criterion) {
    let registry = registry();
    let limits = DecodeLimits::default();
    for venue in Venue::ALL {
        let mut group = criterion.benchmark_group(format!("decode/{venue}"));
        for kind in ["bbo", "trade"] {
            let (frame, encoding) = wire_frame(venue, kind);
            let mut decoder = decoder_for(venue, registry.clone(), limits);
            let mut buffer = Vec::with_capacity(frame.len() * 4);
            let mut out = RecordBatch::with_capacity(limits.max_records_per_frame);
            let mut inflater = Inflater::new();
            group.bench_function(format!("{kind}/decoder"), |bencher| {
                bencher.iter(|| {
                    buffer.clear();
                    buffer.extend_from_slice(&frame);
                    out.clear();
                    let outcome = decoder.decode(&mut buffer, encoding, 1, &mut out);
                    black_box(outcome).expect("fixture frames decode");
                })
            });
            typed_parse(venue, kind, &frame, &mut buffer, &mut inflater);
            group.bench_function(format!("{kind}/typed_parse"), |bencher| {
                bencher.iter(|| typed_parse(venue, kind, &frame, &mut buffer, &mut inflater))
            });
            // The floor: the copy (and for HTX the inflate) every path makes, plus the two float
            // parses every decoder must do.
            let spans = if venue == Venue::Htx {
                floor_spans(venue, kind, inflater.inflate(&frame))
            } else {
                floor_spans(venue, kind, &frame)
            };
            let [(first_at, first_len), (second_at, second_len)] = spans;
            group.bench_function(format!("{kind}/floor"), |bencher| {
                bencher.iter(|| {
                    let bytes: &[u8] = if venue == Venue::Htx {
                        inflater.inflate(&frame)
                    } else {
                        buffer.clear();
                        buffer.extend_from_slice(&frame);
                        &buffer
                    };
                    let first = parse_float(&bytes[first_at..first_at + first_len]);
                    let second = parse_float(&bytes[second_at..second_at + second_len]);
                    black_box((first, second));
                })
            });
            if venue == Venue::Htx {
                group.bench_function(format!("{kind}/inflate"), |bencher| {
                    bencher.iter(|| {
                        black_box(inflater.inflate(&frame).len());
                    })
                });
            }
        }
        // The venues with a fast path (all but MEXC, whose protobuf has no generic path): the
        // generic simd-json path of the same best bid/ask frame, fast path off.
        let (_, bbo_encoding) = wire_frame(venue, "bbo");
        let generic: Option<Box<GenericDecode>> =
            generic_path_decoder_for(venue, registry.clone(), limits).map(|mut decoder| {
                Box::new(move |frame: &mut [u8], out: &mut RecordBatch| {
                    decoder.decode(frame, bbo_encoding, 1, out)
                }) as Box<GenericDecode>
            });
        if let Some(mut generic) = generic {
            let (frame, _) = wire_frame(venue, "bbo");
            let mut buffer = Vec::with_capacity(frame.len());
            let mut out = RecordBatch::with_capacity(limits.max_records_per_frame);
            group.bench_function("bbo/decoder_generic_path", |bencher| {
                bencher.iter(|| {
                    buffer.clear();
                    buffer.extend_from_slice(&frame);
                    out.clear();
                    let outcome = generic(&mut buffer, &mut out);
                    black_box(outcome).expect("fixture frames decode");
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, decode_benches);
criterion_main!(benches);
