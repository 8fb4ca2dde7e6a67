//! Integration tests: decode_golden. Every fixture frame of every venue through its decoder, with
//! the expected records written out by hand from the frames; bad frames of every kind per venue;
//! truncations and byte flips of every fixture through every decoder (no panic, ever).

use tickflow_core::record::FeedEvent;
use tickflow_core::records::{
    FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, GAP_QUOTE_WITHDRAWN, GapEvent, Side, TimestampNs,
};
use tickflow_core::venue::Venue;
use tickflow_decode::{
    ControlEvent, DecodeErrorKind, DecodeLimits, Decoder, FrameEncoding, FrameOutcome, RecordBatch,
    decoder_for, mexc_proto,
};

const TS_RECV_NS: TimestampNs = 42;

use crate::fixtures::{
    WireFrame, Xorshift, fixture_dir, fixture_registry, gzip, mexc_protobuf, wire_frames,
    wire_frames_of,
};

/// What one frame must turn into, written by hand.
#[derive(Debug)]
enum Expected {
    Quote {
        symbol: &'static str,
        bid: f64,
        bid_qty: f64,
        ask: f64,
        ask_qty: f64,
        ts_exchange_ns: Option<i64>,
        seq: Option<u64>,
    },
    Trade {
        symbol: &'static str,
        price: f64,
        qty: f64,
        side: Side,
        trade_id: &'static str,
        ts_exchange_ns: Option<i64>,
    },
    Control(ControlEvent),
    /// A `GAP_QUOTE_WITHDRAWN` gap: the frame's book has an empty side.
    Withdrawn {
        symbol: &'static str,
    },
}

use Expected::{Control, Quote, Trade, Withdrawn};

const MS: i64 = 1_000_000;

/// Decodes `frame` with `venue`'s decoder and compares with `expected` (one record, or control).
fn check(venue: Venue, frame: &WireFrame, expected: &Expected) {
    let registry = fixture_registry();
    let mut decoder = decoder_for(venue, registry.clone(), DecodeLimits::default());
    let mut out = RecordBatch::with_capacity(16);
    let mut bytes = frame.bytes.clone();
    let outcome = decoder
        .decode(&mut bytes, frame.encoding, TS_RECV_NS, &mut out)
        .unwrap_or_else(|error| panic!("{venue} {frame:?}: {error}"));
    let name = |id| {
        registry
            .name(id)
            .expect("record symbol is registered")
            .to_string()
    };
    match expected {
        Control(event) => {
            assert_eq!(outcome, FrameOutcome::Control(*event), "{venue} {frame:?}");
            assert!(out.is_empty());
        }
        Withdrawn { symbol } => {
            assert_eq!(outcome, FrameOutcome::Records(1), "{venue} {frame:?}");
            let FeedEvent::Gap(gap) = out.as_slice()[0] else {
                panic!(
                    "{venue}: expected a withdrawal, got {:?}",
                    out.as_slice()[0]
                );
            };
            assert_eq!(name(gap.symbol_id), *symbol);
            assert_eq!(
                gap,
                GapEvent {
                    ts_ns: TS_RECV_NS,
                    connection_id: 0,
                    symbol_id: gap.symbol_id,
                    venue_id: venue.id(),
                    kind: GAP_QUOTE_WITHDRAWN,
                    reserved: [0; 5],
                },
                "{venue} {frame:?}"
            );
        }
        Quote {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
            ts_exchange_ns,
            seq,
        } => {
            assert_eq!(outcome, FrameOutcome::Records(1), "{venue} {frame:?}");
            let FeedEvent::Quote(quote) = out.as_slice()[0] else {
                panic!("{venue}: expected a quote, got {:?}", out.as_slice()[0]);
            };
            assert_eq!(name(quote.symbol_id), *symbol);
            assert_eq!(quote.venue_id, venue.id());
            assert_eq!(
                (quote.bid, quote.bid_qty, quote.ask, quote.ask_qty),
                (*bid, *bid_qty, *ask, *ask_qty),
                "{venue} prices"
            );
            assert_eq!(quote.ts_exchange(), *ts_exchange_ns, "{venue} ts_exchange");
            assert_eq!(
                quote.flags & FLAG_HAS_TS_EXCHANGE != 0,
                ts_exchange_ns.is_some()
            );
            if ts_exchange_ns.is_none() {
                assert_eq!(
                    quote.ts_exchange_ns, 0,
                    "absent exchange time is 0, never ts_recv"
                );
            }
            assert_eq!(quote.sequence(), *seq, "{venue} seq");
            assert_eq!(quote.flags & FLAG_HAS_SEQ != 0, seq.is_some());
            assert_eq!(quote.ts_recv_ns, TS_RECV_NS);
        }
        Trade {
            symbol,
            price,
            qty,
            side,
            trade_id,
            ts_exchange_ns,
        } => {
            assert_eq!(outcome, FrameOutcome::Records(1), "{venue} {frame:?}");
            let FeedEvent::Trade(trade) = out.as_slice()[0] else {
                panic!("{venue}: expected a trade, got {:?}", out.as_slice()[0]);
            };
            assert_eq!(name(trade.symbol_id), *symbol);
            assert_eq!(trade.venue_id, venue.id());
            assert_eq!(
                (trade.price, trade.qty),
                (*price, *qty),
                "{venue} price/qty"
            );
            assert_eq!(trade.side(), *side, "{venue} side");
            let mut id = String::new();
            trade
                .write_trade_id(&mut id)
                .expect("writing to a String cannot fail");
            assert_eq!(id, *trade_id, "{venue} trade id");
            assert_eq!(trade.ts_exchange(), *ts_exchange_ns, "{venue} ts_exchange");
            assert_eq!(trade.ts_recv_ns, TS_RECV_NS);
        }
    }
}

/// Every line of `venue`'s fixture file, in order, against the expectations.
fn check_venue(venue: Venue, expected: &[Expected]) {
    let frames = wire_frames(venue);
    assert_eq!(
        frames.len(),
        expected.len(),
        "{venue}: one expectation per fixture line"
    );
    for (frame, expected) in frames.iter().zip(expected) {
        // Bitget's trade snapshot is a trade frame that carries nothing new.
        let is_control = matches!(expected, Control(event) if *event != ControlEvent::Snapshot);
        assert_eq!(
            frame.kind == "control",
            is_control,
            "{venue}: fixture kind {frame:?}"
        );
        check(venue, frame, expected);
    }
}

#[test]
fn decode_golden_binance() {
    check_venue(
        Venue::Binance,
        &[
            Quote {
                symbol: "BNB-USDT",
                bid: 25.3519,
                bid_qty: 31.21,
                ask: 25.3652,
                ask_qty: 40.66,
                ts_exchange_ns: None,
                seq: Some(400900217),
            },
            Quote {
                symbol: "NKN-USDT",
                bid: 0.3521,
                bid_qty: 672.0,
                ask: 0.3526,
                ask_qty: 3199.0,
                ts_exchange_ns: None,
                seq: Some(499869768),
            },
            Trade {
                symbol: "BNB-BTC",
                price: 0.001,
                qty: 100.0,
                side: Side::Sell,
                trade_id: "12345",
                ts_exchange_ns: Some(1672515782136 * MS),
            },
            Trade {
                symbol: "NKN-USDT",
                price: 0.3528,
                qty: 58.0,
                side: Side::Buy,
                trade_id: "15683430",
                ts_exchange_ns: Some(1633998523963 * MS),
            },
            Control(ControlEvent::SubscribeAck),
            Control(ControlEvent::ShutdownNotice),
        ],
    );
}

#[test]
fn decode_golden_bitget() {
    check_venue(
        Venue::Bitget,
        &[
            Quote {
                symbol: "METIS-USDT",
                bid: 44.82,
                bid_qty: 3.5344,
                ask: 44.90,
                ask_qty: 0.6927,
                ts_exchange_ns: Some(1730332859988 * MS),
                seq: None,
            },
            // The trade snapshot right after subscribing is not new prints.
            Control(ControlEvent::Snapshot),
            Trade {
                symbol: "OP-USDT",
                price: 1.717,
                qty: 56.16,
                side: Side::Buy,
                trade_id: "1235670816495050754",
                ts_exchange_ns: Some(1730332800983 * MS),
            },
            Control(ControlEvent::SubscribeAck),
            Control(ControlEvent::Pong),
        ],
    );
}

/// Bitget's v3 (unified account) socket: its documented frames (`bitget_v3.jsonl`).
const BITGET_V3_FIXTURES: &str = "bitget_v3.jsonl";

/// A client's own request (`{"op":...}`), which the fixture file keeps beside the server's replies.
fn is_client_request(frame: &WireFrame) -> bool {
    frame.bytes.starts_with(br#"{"op":"#)
}

#[test]
fn decode_golden_bitget_v3() {
    let frames = wire_frames_of(BITGET_V3_FIXTURES);
    // Per documented channel: the client's subscribe request, the server's ack, one push.
    let expected = [
        None,
        Some(Control(ControlEvent::SubscribeAck)),
        // books1: `a`/`b` levels; `seq` above 2^53 survives exactly; the inner `ts` is a string.
        Some(Quote {
            symbol: "BTC-USDT",
            bid: 99756.6,
            bid_qty: 0.0128,
            ask: 99756.7,
            ask_qty: 23.9774,
            ts_exchange_ns: Some(1746698732562 * MS),
            seq: Some(1304314508780744705),
        }),
        None,
        Some(Control(ControlEvent::SubscribeAck)),
        // ticker: best bid/ask among the 24 h figures; the time is the push's own `ts`.
        Some(Quote {
            symbol: "BTC-USDT",
            bid: 99999.0,
            bid_qty: 186.183209,
            ask: 100000.0,
            ask_qty: 188.312553,
            ts_exchange_ns: Some(1736371332162 * MS),
            seq: None,
        }),
        None,
        Some(Control(ControlEvent::SubscribeAck)),
        // publicTrade: documented as a `snapshot` push of new fills, decoded as trades.
        Some(Trade {
            symbol: "BTC-USDT",
            price: 100000.0,
            qty: 0.00118,
            side: Side::Buy,
            trade_id: "1260903622036942849",
            ts_exchange_ns: Some(1736348770627 * MS),
        }),
    ];
    assert_eq!(frames.len(), expected.len(), "one expectation per line");
    let registry = fixture_registry();
    for (frame, expected) in frames.iter().zip(&expected) {
        assert_eq!(
            frame.kind == "control",
            !matches!(expected, Some(Quote { .. }) | Some(Trade { .. })),
            "fixture kind {frame:?}"
        );
        match expected {
            Some(expected) => check(Venue::Bitget, frame, expected),
            None => {
                // Never data: the decoder refuses a client's request and appends nothing.
                assert!(is_client_request(frame), "{frame:?}");
                let mut decoder =
                    decoder_for(Venue::Bitget, registry.clone(), DecodeLimits::default());
                let mut out = RecordBatch::with_capacity(16);
                let mut bytes = frame.bytes.clone();
                decoder
                    .decode(&mut bytes, frame.encoding, TS_RECV_NS, &mut out)
                    .expect_err("a subscribe request is not a server frame");
                assert!(out.is_empty());
            }
        }
    }
}

/// v3 frames the documentation implies but does not show: spot pushes, an error reply, an empty
/// book side (a withdrawal), a blank ticker side, and the v3 refusals of bad values.
#[test]
fn decode_bitget_v3_variants() {
    let text = |frame: &str| WireFrame {
        kind: "bbo".to_string(),
        encoding: FrameEncoding::Text,
        bytes: frame.as_bytes().to_vec(),
    };
    check(
        Venue::Bitget,
        &text(
            r#"{"data":[{"a":[["44.90","0.6927"]],"b":[["44.82","3.5344"]],"checksum":0,"pseq":7,"seq":8,"ts":"1730332859988"}],"arg":{"instType":"spot","symbol":"METISUSDT","topic":"books1"},"action":"snapshot","ts":1730332859989}"#,
        ),
        &Quote {
            symbol: "METIS-USDT",
            bid: 44.82,
            bid_qty: 3.5344,
            ask: 44.90,
            ask_qty: 0.6927,
            ts_exchange_ns: Some(1730332859988 * MS),
            seq: Some(8),
        },
    );
    check(
        Venue::Bitget,
        &text(
            r#"{"data":[{"a":[],"b":[["44.82","3.5344"]],"checksum":0,"seq":9,"ts":"1730332859990"}],"arg":{"instType":"spot","symbol":"METISUSDT","topic":"books1"},"action":"snapshot","ts":1730332859991}"#,
        ),
        &Withdrawn {
            symbol: "METIS-USDT",
        },
    );
    check(
        Venue::Bitget,
        &text(
            r#"{"data":[{"bid1Price":"","bid1Size":"","ask1Price":"100000","ask1Size":"1"}],"arg":{"instType":"spot","symbol":"BTCUSDT","topic":"ticker"},"action":"snapshot","ts":1736371332162}"#,
        ),
        &Withdrawn { symbol: "BTC-USDT" },
    );
    check(
        Venue::Bitget,
        &text(
            r#"{"data":[{"p":"1.717","S":"sell","T":"1730332800983","v":"56.16","i":"1235670816495050754","L":"1"}],"arg":{"instType":"spot","symbol":"OPUSDT","topic":"publicTrade"},"action":"update","ts":1730332800989}"#,
        ),
        &Trade {
            symbol: "OP-USDT",
            price: 1.717,
            qty: 56.16,
            side: Side::Sell,
            trade_id: "1235670816495050754",
            ts_exchange_ns: Some(1730332800983 * MS),
        },
    );
    check(
        Venue::Bitget,
        &text(
            r#"{"event":"error","arg":{"instType":"spot","topic":"books1","symbol":"NOPEUSDT"},"code":"30001","msg":"symbol doesn't exist"}"#,
        ),
        &Control(ControlEvent::ErrorReply { code: 30001 }),
    );
    use DecodeErrorKind::{BadNumber, CrossedBook, MissingField, UnknownMessage, UnknownSymbol};
    for (frame, kind) in [
        (
            r#"{"data":[{"a":[["44.80","1"]],"b":[["44.82","1"]],"seq":1,"ts":"1"}],"arg":{"instType":"spot","symbol":"METISUSDT","topic":"books1"},"action":"snapshot","ts":1}"#,
            CrossedBook,
        ),
        (
            r#"{"data":[{"a":[["44.90","1"]],"b":[["44.82","1"]],"seq":-1,"ts":"1"}],"arg":{"instType":"spot","symbol":"METISUSDT","topic":"books1"},"action":"snapshot","ts":1}"#,
            BadNumber,
        ),
        (
            r#"{"data":[{"p":"1","S":"buy","T":"1","v":"1"}],"arg":{"instType":"spot","symbol":"OPUSDT","topic":"publicTrade"},"action":"snapshot","ts":1}"#,
            MissingField,
        ),
        (
            r#"{"data":[],"arg":{"instType":"spot","symbol":"NOPEUSDT","topic":"books1"},"action":"snapshot","ts":1}"#,
            UnknownSymbol,
        ),
        (
            r#"{"data":[],"arg":{"instType":"spot","symbol":"OPUSDT","topic":"kline"},"action":"snapshot","ts":1}"#,
            UnknownMessage,
        ),
    ] {
        let mut decoder = decoder_for(Venue::Bitget, fixture_registry(), DecodeLimits::default());
        let mut out = RecordBatch::with_capacity(16);
        let mut bytes = frame.as_bytes().to_vec();
        let error = decoder
            .decode(&mut bytes, FrameEncoding::Text, TS_RECV_NS, &mut out)
            .expect_err(frame);
        assert_eq!(error.kind, kind, "{frame}: {error}");
        assert!(out.is_empty(), "{frame}: nothing appended");
    }
}

#[test]
fn decode_golden_bybit() {
    check_venue(
        Venue::Bybit,
        &[
            Quote {
                symbol: "BTC-USDT",
                bid: 27450.0,
                bid_qty: 0.5,
                ask: 27451.0,
                ask_qty: 0.75,
                ts_exchange_ns: Some(1709891679000 * MS),
                seq: Some(987654321),
            },
            Trade {
                symbol: "BTC-USDT",
                price: 16578.5,
                qty: 0.001,
                side: Side::Buy,
                trade_id: "20f43950-d8dd-5b31-9112-a178eb6023af",
                ts_exchange_ns: Some(1672304486865 * MS),
            },
            Control(ControlEvent::SubscribeAck),
            Control(ControlEvent::Pong),
        ],
    );
}

#[test]
fn decode_golden_gate() {
    check_venue(
        Venue::Gate,
        &[
            Quote {
                symbol: "BTC-USDT",
                bid: 19177.79,
                bid_qty: 0.0003341504,
                ask: 19179.38,
                ask_qty: 0.09,
                ts_exchange_ns: Some(1606293275123 * MS),
                seq: Some(48733182),
            },
            Trade {
                symbol: "GT-USDT",
                price: 0.4705,
                qty: 16.47,
                side: Side::Sell,
                trade_id: "309143071",
                // "1606292218213.4578" ms, exactly.
                ts_exchange_ns: Some(1_606_292_218_213_457_800),
            },
            Control(ControlEvent::SubscribeAck),
            Control(ControlEvent::Pong),
            Control(ControlEvent::ShutdownNotice),
        ],
    );
}

#[test]
fn decode_golden_htx() {
    check_venue(
        Venue::Htx,
        &[
            Quote {
                symbol: "BTC-USDT",
                bid: 52665.01,
                bid_qty: 0.178567,
                ask: 52665.02,
                ask_qty: 1.502181,
                ts_exchange_ns: Some(1630994555539 * MS),
                seq: Some(137005210233),
            },
            Quote {
                symbol: "BTC-USDT",
                bid: 10008.31,
                bid_qty: 0.01,
                ask: 10009.54,
                ask_qty: 0.3,
                ts_exchange_ns: Some(1489474082811 * MS),
                seq: Some(10242474683),
            },
            Trade {
                symbol: "BTC-USDT",
                price: 52648.62,
                qty: 0.006754,
                side: Side::Buy,
                trade_id: "102523573486",
                ts_exchange_ns: Some(1630994963173 * MS),
            },
            Trade {
                symbol: "TRIO-ETH",
                price: 9.2e-7,
                qty: 20995.88,
                side: Side::Buy,
                trade_id: "100045088885",
                ts_exchange_ns: Some(1618678027940 * MS),
            },
            Control(ControlEvent::ServerPing {
                nonce: 1618678073643,
            }),
            Control(ControlEvent::SubscribeAck),
        ],
    );
}

#[test]
fn decode_golden_kucoin() {
    check_venue(
        Venue::Kucoin,
        &[
            Quote {
                symbol: "BTC-USDT",
                bid: 68145.7,
                bid_qty: 1.29267802,
                ask: 68145.8,
                ask_qty: 0.51987471,
                ts_exchange_ns: Some(1729816058766 * MS),
                seq: None,
            },
            Quote {
                symbol: "BTC-USDT",
                bid: 0.049,
                bid_qty: 0.036,
                ask: 0.08,
                ask_qty: 0.18,
                ts_exchange_ns: Some(1704873323416 * MS),
                seq: Some(1545896668986),
            },
            Trade {
                symbol: "BTC-USDT",
                price: 67523.0,
                qty: 0.003,
                side: Side::Buy,
                trade_id: "11067996711960577",
                // Already nanoseconds on the wire.
                ts_exchange_ns: Some(1_729_843_222_921_000_000),
            },
            Control(ControlEvent::Welcome),
            Control(ControlEvent::SubscribeAck),
            Control(ControlEvent::Pong),
        ],
    );
}

#[test]
fn decode_golden_mexc() {
    check_venue(
        Venue::Mexc,
        &[
            Quote {
                symbol: "BTC-USDT",
                bid: 93387.28,
                bid_qty: 3.73485,
                ask: 93387.29,
                ask_qty: 7.669875,
                ts_exchange_ns: Some(1736412092433 * MS),
                seq: None,
            },
            Trade {
                symbol: "BTC-USDT",
                price: 93220.0,
                qty: 0.04438243,
                side: Side::Sell,
                trade_id: "",
                ts_exchange_ns: Some(1736409765051 * MS),
            },
            Control(ControlEvent::SubscribeAck),
            Control(ControlEvent::Pong),
        ],
    );
}

#[test]
fn decode_golden_okx() {
    check_venue(
        Venue::Okx,
        &[
            Quote {
                symbol: "BTC-USDT",
                bid: 8476.97,
                bid_qty: 256.0,
                ask: 8476.98,
                ask_qty: 415.0,
                ts_exchange_ns: Some(1597026383085 * MS),
                seq: Some(123456),
            },
            Quote {
                symbol: "BTC-USDT",
                bid: 30228.6,
                bid_qty: 0.23393,
                ask: 30228.7,
                ask_qty: 1.55896972,
                ts_exchange_ns: Some(1652459224956 * MS),
                seq: None,
            },
            Trade {
                symbol: "BTC-USDT",
                price: 30236.0,
                qty: 0.0002,
                side: Side::Buy,
                trade_id: "338476307",
                ts_exchange_ns: Some(1652459224818 * MS),
            },
            Control(ControlEvent::SubscribeAck),
            Control(ControlEvent::Pong),
        ],
    );
}

/// More control frames than the fixtures hold: notices and error replies of each venue.
#[test]
fn decode_golden_control_variants() {
    let cases: &[(Venue, &str, ControlEvent)] = &[
        (
            Venue::Binance,
            r#"{"error":{"code":2,"msg":"Invalid request"},"id":7}"#,
            ControlEvent::ErrorReply { code: 2 },
        ),
        (
            Venue::Okx,
            r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade.","connId":"a4d3ae55"}"#,
            ControlEvent::ShutdownNotice,
        ),
        (
            Venue::Okx,
            r#"{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}"#,
            ControlEvent::ErrorReply { code: 60012 },
        ),
        (
            Venue::Bybit,
            r#"{"success":false,"ret_msg":"error:handler not found","conn_id":"x","op":"subscribe"}"#,
            ControlEvent::ErrorReply { code: 0 },
        ),
        (
            Venue::Gate,
            r#"{"time":1,"channel":"spot.trades","event":"subscribe","error":{"code":2,"message":"unknown currency pair"},"result":null}"#,
            ControlEvent::ErrorReply { code: 2 },
        ),
        (
            Venue::Kucoin,
            r#"{"id":"1","type":"error","code":404,"data":"topic /x is not found"}"#,
            ControlEvent::ErrorReply { code: 404 },
        ),
        (
            Venue::Bitget,
            r#"{"event":"error","code":30001,"msg":"instType:SPOT,channel:books1,instId:XXX doesn't exist"}"#,
            ControlEvent::ErrorReply { code: 30001 },
        ),
        (
            Venue::Mexc,
            r#"{"id":0,"code":100403,"msg":"Blocked"}"#,
            ControlEvent::ErrorReply { code: 100403 },
        ),
        // A refused subscription still says code 0: the message is what tells.
        (
            Venue::Mexc,
            r#"{"id":0,"code":0,"msg":"Not Subscribed successfully! [spot@public.deals.v3.api@BTCUSDT].  Reason： Blocked! "}"#,
            ControlEvent::ErrorReply { code: 0 },
        ),
        (
            Venue::Mexc,
            r#"{"id":0,"code":0,"msg":"spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT Blocked"}"#,
            ControlEvent::ErrorReply { code: 0 },
        ),
        (
            Venue::Htx,
            r#"{"status":"error","err-code":"bad-request","err-msg":"invalid topic","id":"id1"}"#,
            ControlEvent::ErrorReply { code: -1 },
        ),
    ];
    for (venue, frame, event) in cases {
        let wire = WireFrame {
            kind: "control".to_string(),
            encoding: if *venue == Venue::Htx {
                FrameEncoding::Binary
            } else {
                FrameEncoding::Text
            },
            bytes: if *venue == Venue::Htx {
                gzip(frame.as_bytes())
            } else {
                frame.as_bytes().to_vec()
            },
        };
        check(*venue, &wire, &Control(*event));
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: each kind of error, per venue.

fn decode_error(
    venue: Venue,
    bytes: &[u8],
    encoding: FrameEncoding,
    limits: DecodeLimits,
) -> Option<DecodeErrorKind> {
    let mut decoder = decoder_for(venue, fixture_registry(), limits);
    let mut out = RecordBatch::with_capacity(limits.max_records_per_frame + 8);
    // A record already in the batch must survive a refused frame untouched.
    let mut sentinel_frame = b"pong".to_vec();
    let _ = decoder.decode(&mut sentinel_frame, FrameEncoding::Text, 0, &mut out);
    out.push(FeedEvent::Trade(Default::default()))
        .expect("batch has room");
    let mut frame = bytes.to_vec();
    let result = decoder.decode(&mut frame, encoding, TS_RECV_NS, &mut out);
    match result {
        Ok(_) => None,
        Err(error) => {
            assert_eq!(
                out.len(),
                1,
                "{venue}: a refused frame appended records ({error})"
            );
            Some(error.kind)
        }
    }
}

/// The wire bytes of `venue`'s fixture line `line` after replacing `from` with `to` in its text.
fn mutated(venue: Venue, line: usize, from: &str, to: &str) -> (Vec<u8>, FrameEncoding) {
    let path = fixture_dir().join(format!("{}.jsonl", venue.name()));
    let text = std::fs::read_to_string(path).expect("fixture file is in the repository");
    let entry: serde_json::Value =
        serde_json::from_str(text.lines().nth(line).expect("fixture line exists")).expect("JSON");
    let frame = entry["frame"].as_str().expect("frame").to_string();
    assert!(frame.contains(from), "{venue} line {line} has no {from:?}");
    let frame = frame.replacen(from, to, 1);
    match entry["encoding"].as_str().expect("encoding") {
        "gzip" => (gzip(frame.as_bytes()), FrameEncoding::Binary),
        "protobuf-decoded" => (mexc_protobuf(&frame), FrameEncoding::Binary),
        _ => (frame.into_bytes(), FrameEncoding::Text),
    }
}

/// (venue, fixture line, replace this, with this, expected error).
type Mutation = (Venue, usize, &'static str, &'static str, DecodeErrorKind);

const MUTATIONS: &[Mutation] = {
    use DecodeErrorKind::*;
    use Venue::*;
    &[
        // Binance
        (
            Binance,
            0,
            r#""b":"25.35190000""#,
            r#""b":"NaN""#,
            NonFinite,
        ),
        (
            Binance,
            0,
            r#""b":"25.35190000""#,
            r#""b":"-0.5""#,
            NonPositivePrice,
        ),
        (
            Binance,
            0,
            r#""B":"31.21000000""#,
            r#""B":"-1""#,
            NonPositivePrice,
        ),
        (
            Binance,
            0,
            r#""b":"25.35190000""#,
            r#""b":"26""#,
            CrossedBook,
        ),
        (Binance, 0, r#""b":"25.35190000""#, r#""b":true"#, WrongType),
        (
            Binance,
            0,
            r#""b":"25.35190000""#,
            r#""b":"2x5""#,
            BadNumber,
        ),
        (
            Binance,
            0,
            r#""s":"BNBUSDT""#,
            r#""s":"DOGEUSDT""#,
            UnknownSymbol,
        ),
        (Binance, 0, r#""a":"25.36520000","#, "", MissingField),
        (
            Binance,
            2,
            r#""p":"0.001""#,
            r#""p":"-0.001""#,
            NonPositivePrice,
        ),
        (Binance, 2, r#""m":true"#, r#""m":"yes""#, WrongType),
        (
            Binance,
            3,
            r#""q":"58.00000000""#,
            r#""q":"inf""#,
            NonFinite,
        ),
        (
            Binance,
            3,
            r#""e":"aggTrade""#,
            r#""e":"kline""#,
            UnknownMessage,
        ),
        // Bybit
        (
            Bybit,
            0,
            r#"[["27450.00","0.500"]]"#,
            r#"[["27452.00","0.500"]]"#,
            CrossedBook,
        ),
        (
            Bybit,
            0,
            r#""s":"BTCUSDT""#,
            r#""s":"XRPUSDT""#,
            UnknownSymbol,
        ),
        (
            Bybit,
            0,
            r#""b":[["27450.00""#,
            r#""b":[["0""#,
            NonPositivePrice,
        ),
        (Bybit, 1, r#""p":"16578.50""#, r#""p":"NaN""#, NonFinite),
        (Bybit, 1, r#""S":"Buy""#, r#""S":"Up""#, WrongType),
        (
            Bybit,
            1,
            r#""i":"20f43950-d8dd-5b31-9112-a178eb6023af""#,
            r#""i":"20F43950-D8DD-5B31-9112-A178EB6023AF-X""#,
            TradeIdTooLong,
        ),
        // OKX
        (Okx, 0, r#"[["8476.97""#, r#"[["8477.00""#, CrossedBook),
        (
            Okx,
            1,
            r#""bidPx":"30228.6""#,
            r#""bidPx":"-30228.6""#,
            NonPositivePrice,
        ),
        (
            Okx,
            1,
            r#""askSz":"1.55896972""#,
            r#""askSz":{}"#,
            WrongType,
        ),
        (
            Okx,
            2,
            r#""instId":"BTC-USDT","tradeId""#,
            r#""instId":"ZZZ-USDT","tradeId""#,
            UnknownSymbol,
        ),
        (
            Okx,
            2,
            r#""ts":"1652459224818""#,
            r#""ts":"16524592x4818""#,
            BadNumber,
        ),
        (
            Okx,
            2,
            r#""channel":"trades""#,
            r#""channel":"candle1m""#,
            UnknownMessage,
        ),
        // Gate
        (Gate, 0, r#""b":"19177.79""#, r#""b":"19180""#, CrossedBook),
        (Gate, 0, r#""A":"0.09""#, r#""A":"NaN""#, NonFinite),
        (
            Gate,
            0,
            r#""s":"BTC_USDT""#,
            r#""s":"QQQ_USDT""#,
            UnknownSymbol,
        ),
        (
            Gate,
            1,
            r#""price":"0.4705000000""#,
            r#""price":"0""#,
            NonPositivePrice,
        ),
        (
            Gate,
            1,
            r#""create_time_ms":"1606292218213.4578""#,
            r#""create_time_ms":"soon""#,
            BadNumber,
        ),
        (Gate, 1, r#""side":"sell","#, "", MissingField),
        // KuCoin
        (
            Kucoin,
            0,
            r#""bids":["68145.7""#,
            r#""bids":["68146.0""#,
            CrossedBook,
        ),
        (
            Kucoin,
            0,
            r#"level1:BTC-USDT"#,
            r#"level1:ABC-USDT"#,
            UnknownSymbol,
        ),
        (
            Kucoin,
            1,
            r#""bestBid":"0.049""#,
            r#""bestBid":null"#,
            WrongType,
        ),
        (
            Kucoin,
            2,
            r#""price":"67523""#,
            r#""price":"-1""#,
            NonPositivePrice,
        ),
        (
            Kucoin,
            2,
            r#""time":"1729843222921000000""#,
            r#""time":"-5""#,
            BadNumber,
        ),
        // Bitget
        (
            Bitget,
            0,
            r#""bids":[["44.82""#,
            r#""bids":[["45.00""#,
            CrossedBook,
        ),
        (
            Bitget,
            0,
            r#""instId":"METISUSDT""#,
            r#""instId":"NOPEUSDT""#,
            UnknownSymbol,
        ),
        (
            Bitget,
            2,
            r#""size":"56.16""#,
            r#""size":"-56.16""#,
            NonPositivePrice,
        ),
        (
            Bitget,
            2,
            r#""price":"1.717""#,
            r#""price":"Infinity""#,
            NonFinite,
        ),
        // HTX (gzip)
        (
            Htx,
            0,
            r#""bid":52665.01"#,
            r#""bid":52665.03"#,
            CrossedBook,
        ),
        (Htx, 0, r#""bid":52665.01"#, r#""bid":-1"#, NonPositivePrice),
        (
            Htx,
            0,
            r#"market.btcusdt.bbo"#,
            r#"market.xyzusdt.bbo"#,
            UnknownSymbol,
        ),
        (
            Htx,
            1,
            r#""bidSize":"0.01""#,
            r#""bidSize":"nan""#,
            NonFinite,
        ),
        (
            Htx,
            2,
            r#""tradeId":102523573486"#,
            r#""tradeId":1.5"#,
            BadNumber,
        ),
        (
            Htx,
            3,
            r#""price":9.2E-7"#,
            r#""price":-9.2E-7"#,
            NonPositivePrice,
        ),
        (
            Htx,
            3,
            r#""direction":"buy""#,
            r#""direction":7"#,
            WrongType,
        ),
        // MEXC (protobuf)
        (
            Mexc,
            0,
            r#""bidPrice":"93387.28""#,
            r#""bidPrice":"93388""#,
            CrossedBook,
        ),
        (
            Mexc,
            0,
            r#""bidQuantity":"3.73485""#,
            r#""bidQuantity":"NaN""#,
            NonFinite,
        ),
        (
            Mexc,
            0,
            r#""symbol":"BTCUSDT""#,
            r#""symbol":"LOLUSDT""#,
            UnknownSymbol,
        ),
        (
            Mexc,
            1,
            r#""price":"93220.00""#,
            r#""price":"0.0""#,
            NonPositivePrice,
        ),
        (Mexc, 1, r#""tradeType":2"#, r#""tradeType":9"#, WrongType),
        (
            Mexc,
            1,
            r#""price":"93220.00""#,
            r#""price":"9e""#,
            BadNumber,
        ),
    ]
};

#[test]
fn decode_bad_frames_are_typed_errors_and_append_nothing() {
    for &(venue, line, from, to, kind) in MUTATIONS {
        let (bytes, encoding) = mutated(venue, line, from, to);
        assert_eq!(
            decode_error(venue, &bytes, encoding, DecodeLimits::default()),
            Some(kind),
            "{venue} line {line}: {from} -> {to}"
        );
    }
}

#[test]
fn decode_bad_framing_per_venue() {
    let limits = DecodeLimits::default();
    for venue in Venue::ALL {
        let frames = wire_frames(venue);
        let data = frames
            .iter()
            .find(|frame| frame.kind == "bbo")
            .expect("every venue has a bbo");
        // Truncated.
        let truncated = &data.bytes[..data.bytes.len() / 2];
        let expected_truncated = match venue {
            Venue::Htx => DecodeErrorKind::Inflate,
            Venue::Mexc => DecodeErrorKind::MalformedProtobuf,
            _ => DecodeErrorKind::MalformedJson,
        };
        assert_eq!(
            decode_error(venue, truncated, data.encoding, limits),
            Some(expected_truncated),
            "{venue} truncated"
        );
        // Over the size limit (checked before anything else).
        let small = DecodeLimits {
            max_frame_bytes: 16,
            ..limits
        };
        assert_eq!(
            decode_error(venue, &data.bytes, data.encoding, small),
            Some(DecodeErrorKind::Oversized),
            "{venue} oversized"
        );
        // Text frames that are not JSON, or not UTF-8.
        for (bytes, kind) in [
            (&b"hello there"[..], DecodeErrorKind::MalformedJson),
            (&b"{\"a\":\"\xff\xfe\"}"[..], DecodeErrorKind::InvalidUtf8),
            (&b""[..], DecodeErrorKind::MalformedJson),
            (&b"[1,2,3]"[..], DecodeErrorKind::UnknownMessage),
        ] {
            let (bytes, encoding) = match venue {
                Venue::Htx => (gzip(bytes), FrameEncoding::Binary),
                _ => (bytes.to_vec(), FrameEncoding::Text),
            };
            let got = decode_error(venue, &bytes, encoding, limits);
            assert_eq!(
                got,
                Some(kind),
                "{venue} {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    // A gzip bomb: 2 MiB of spaces in a few KiB of gzip.
    let bomb = gzip(&vec![b' '; 2 << 20]);
    assert!(bomb.len() < 16 << 10);
    assert_eq!(
        decode_error(Venue::Htx, &bomb, FrameEncoding::Binary, limits),
        Some(DecodeErrorKind::Oversized)
    );
    // Binary garbage for the binary venues.
    assert_eq!(
        decode_error(
            Venue::Htx,
            b"\x1f\x8b\x08\x00garbage!",
            FrameEncoding::Binary,
            limits
        ),
        Some(DecodeErrorKind::Inflate)
    );
    assert_eq!(
        decode_error(
            Venue::Mexc,
            b"\xff\xff\xff\xff\xff",
            FrameEncoding::Binary,
            limits
        ),
        Some(DecodeErrorKind::MalformedProtobuf)
    );
}

#[test]
fn decode_too_many_records_is_refused_whole() {
    let limits = DecodeLimits {
        max_records_per_frame: 2,
        ..DecodeLimits::default()
    };
    let trade = r#"{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"1","BT":false}"#;
    let frame = format!(
        r#"{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{trade},{trade},{trade}]}}"#
    );
    assert_eq!(
        decode_error(Venue::Bybit, frame.as_bytes(), FrameEncoding::Text, limits),
        Some(DecodeErrorKind::TooManyRecords)
    );
    // A bad record after good ones rolls the good ones back.
    let bad = trade.replace("16578.50", "-1");
    let frame = format!(
        r#"{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{trade},{bad}]}}"#
    );
    assert_eq!(
        decode_error(Venue::Bybit, frame.as_bytes(), FrameEncoding::Text, limits),
        Some(DecodeErrorKind::NonPositivePrice)
    );
    // Every data frame of every venue is refused whole when the limit is zero.
    let none_allowed = DecodeLimits {
        max_records_per_frame: 0,
        ..DecodeLimits::default()
    };
    for venue in Venue::ALL {
        for frame in wire_frames(venue) {
            if frame.kind == "control"
                || frame.bytes.starts_with(
                    br#"{"action":"snapshot","arg":{"instType":"SPOT","channel":"trade""#,
                )
            {
                continue;
            }
            assert_eq!(
                decode_error(venue, &frame.bytes, frame.encoding, none_allowed),
                Some(DecodeErrorKind::TooManyRecords),
                "{venue} {frame:?}"
            );
        }
    }
    // Exactly at the limit is fine.
    let frame = format!(
        r#"{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{trade},{trade}]}}"#
    );
    assert_eq!(
        decode_error(Venue::Bybit, frame.as_bytes(), FrameEncoding::Text, limits),
        None
    );
}

#[test]
fn decode_unknown_symbol_names_the_spelling() {
    let mut decoder = decoder_for(Venue::Gate, fixture_registry(), DecodeLimits::default());
    let (mut bytes, encoding) = mutated(Venue::Gate, 0, r#""s":"BTC_USDT""#, r#""s":"QQQ_USDT""#);
    let mut out = RecordBatch::with_capacity(4);
    let error = decoder
        .decode(&mut bytes, encoding, 1, &mut out)
        .unwrap_err();
    assert_eq!(error.kind, DecodeErrorKind::UnknownSymbol);
    assert_eq!(decoder.unknown_symbol(), Some(&b"QQQ_USDT"[..]));
}

// ---------------------------------------------------------------------------------------------
// No input can panic.

/// A small deterministic generator (xorshift64*), so failures reproduce.
#[test]
fn decode_never_panics_on_truncations_and_byte_flips() {
    let registry = fixture_registry();
    let limits = DecodeLimits::default();
    let mut decoders: Vec<Box<dyn Decoder>> = Venue::ALL
        .iter()
        .map(|&venue| decoder_for(venue, registry.clone(), limits))
        .collect();
    let mut out = RecordBatch::with_capacity(limits.max_records_per_frame);
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for venue in Venue::ALL {
        for frame in wire_frames(venue) {
            inputs.push(frame.bytes.clone());
        }
    }
    for frame in wire_frames_of(BITGET_V3_FIXTURES) {
        inputs.push(frame.bytes);
    }
    let mut decoded = 0u64;
    for input in &inputs {
        let mut variants: Vec<Vec<u8>> =
            (0..=input.len()).map(|cut| input[..cut].to_vec()).collect();
        for _ in 0..64 {
            let mut flipped = input.clone();
            let flips = 1 + random.next() % 3;
            for _ in 0..flips {
                let at = (random.next() % flipped.len() as u64) as usize;
                flipped[at] ^= 1 << (random.next() % 8);
            }
            variants.push(flipped);
            let mut replaced = input.clone();
            let at = (random.next() % replaced.len() as u64) as usize;
            replaced[at] = b"\"{}[],:0-.eE\\"[(random.next() % 13) as usize];
            variants.push(replaced);
        }
        for variant in &variants {
            for decoder in decoders.iter_mut() {
                for encoding in [FrameEncoding::Text, FrameEncoding::Binary] {
                    let mut frame = variant.clone();
                    out.clear();
                    let before = out.len();
                    match decoder.decode(&mut frame, encoding, TS_RECV_NS, &mut out) {
                        Ok(FrameOutcome::Records(count)) => assert_eq!(out.len() - before, count),
                        Ok(FrameOutcome::Control(_)) => assert_eq!(out.len(), before),
                        Err(_) => assert_eq!(out.len(), before),
                    }
                    decoded += 1;
                }
            }
        }
    }
    assert!(decoded > 10_000);
}

/// Live variants the fixtures do not show: numbers as JSON numbers, the futures bookTicker with
/// its transaction time, KuCoin's lowercase `time`, Gate without `create_time_ms`, inflated HTX
/// text, and one-sided books (no record, no error).
#[test]
fn decode_golden_live_variants() {
    let text = |frame: &str| WireFrame {
        kind: "bbo".to_string(),
        encoding: FrameEncoding::Text,
        bytes: frame.as_bytes().to_vec(),
    };
    check(
        Venue::Binance,
        &text(
            r#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":25.3519,"B":"31.21000000","a":"25.36520000","A":40.66}"#,
        ),
        &Quote {
            symbol: "BNB-USDT",
            bid: 25.3519,
            bid_qty: 31.21,
            ask: 25.3652,
            ask_qty: 40.66,
            ts_exchange_ns: Some(1568014460891 * MS),
            seq: Some(400900217),
        },
    );
    check(
        Venue::Kucoin,
        &text(
            r#"{"type":"message","topic":"/market/ticker:BTC-USDT","subject":"trade.ticker","data":{"sequence":"7","price":"0.08","size":"0.011","bestAsk":"0.08","bestAskSize":"0.18","bestBid":"0.049","bestBidSize":"0.036","time":1704873323416}}"#,
        ),
        &Quote {
            symbol: "BTC-USDT",
            bid: 0.049,
            bid_qty: 0.036,
            ask: 0.08,
            ask_qty: 0.18,
            ts_exchange_ns: Some(1704873323416 * MS),
            seq: Some(7),
        },
    );
    check(
        Venue::Gate,
        &text(
            r#"{"time":1606292218,"channel":"spot.trades","event":"update","result":{"id":1,"create_time":1606292218,"side":"buy","currency_pair":"GT_USDT","amount":"1","price":"0.5"}}"#,
        ),
        &Trade {
            symbol: "GT-USDT",
            price: 0.5,
            qty: 1.0,
            side: Side::Buy,
            trade_id: "1",
            ts_exchange_ns: Some(1606292218 * 1_000_000_000),
        },
    );
    check(
        Venue::Htx,
        &text(
            r#"{"ch":"market.trioeth.bbo","ts":1,"tick":{"seqId":"5","ask":"1.2E-6","askSize":3,"bid":9.2E-7,"bidSize":2,"quoteTime":"1618678027940","symbol":"trioeth"}}"#,
        ),
        &Quote {
            symbol: "TRIO-ETH",
            bid: 9.2e-7,
            bid_qty: 2.0,
            ask: 1.2e-6,
            ask_qty: 3.0,
            ts_exchange_ns: Some(1618678027940 * MS),
            seq: Some(5),
        },
    );
    // OKX tickers with prices and sizes as JSON numbers (live frames send either form).
    check(
        Venue::Okx,
        &text(
            r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT","instId":"BTC-USDT","last":30236,"askPx":30228.7,"askSz":1.55896972,"bidPx":30228.6,"bidSz":"0.23393","ts":1652459224956}]}"#,
        ),
        &Quote {
            symbol: "BTC-USDT",
            bid: 30228.6,
            bid_qty: 0.23393,
            ask: 30228.7,
            ask_qty: 1.55896972,
            ts_exchange_ns: Some(1652459224956 * MS),
            seq: None,
        },
    );
    // One-sided books withdraw the quote: see `decode_golden_empty_side_withdraws_the_quote`.
}

// ---------------------------------------------------------------------------------------------
// Numeric boundaries: integers and timestamps at and past the i64/u64 edges, negatives, huge
// exponents, non-finite spellings and empty strings, through every venue.

/// Values written over every numeric field of every fixture frame.
const NUMERIC_EDGES: &[&str] = &[
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
    "9223372036854775",
    "9223372036854.9",
    "9223372036854.775807",
    "9223372036854.775808",
    "9223372036855",
    "-1",
    "-0",
    "-9223372036854775808",
    "-9223372036854775809",
    "1e30",
    "-1e30",
    "1e308",
    "1e309",
    "1.7976931348623157e308",
    "4.9e-324",
    "0.0000001",
    "1.",
    ".5",
    "00012",
    "1e",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "",
];

/// Byte spans of the numbers in a JSON text: bare numbers, and strings that hold one (`true`
/// when quoted, the span then being the string's body).
fn numeric_spans(text: &str) -> Vec<(usize, usize, bool)> {
    let bytes = text.as_bytes();
    let is_number_byte = |byte: u8| byte.is_ascii_digit() || b"-+.eE".contains(&byte);
    let mut spans = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                let start = at + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let body = &bytes[start..end.min(bytes.len())];
                if !body.is_empty()
                    && body.iter().all(|&byte| is_number_byte(byte))
                    && body.iter().any(u8::is_ascii_digit)
                {
                    spans.push((start, end, true));
                }
                at = end + 1;
            }
            byte if byte == b'-' || byte.is_ascii_digit() => {
                let start = at;
                while at < bytes.len() && is_number_byte(bytes[at]) {
                    at += 1;
                }
                spans.push((start, at, false));
            }
            _ => at += 1,
        }
    }
    spans
}

/// Every fixture line of `venue` as (encoding name, frame text).
fn fixture_texts(venue: Venue) -> Vec<(String, String)> {
    let path = fixture_dir().join(format!("{}.jsonl", venue.name()));
    let text = std::fs::read_to_string(path).expect("fixture file is in the repository");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let entry: serde_json::Value =
                serde_json::from_str(line).expect("fixture line is JSON");
            (
                entry["encoding"].as_str().expect("encoding").to_string(),
                entry["frame"].as_str().expect("frame").to_string(),
            )
        })
        .collect()
}

fn encode_as(encoding: &str, frame: &str) -> (Vec<u8>, FrameEncoding) {
    match encoding {
        "gzip" => (gzip(frame.as_bytes()), FrameEncoding::Binary),
        "protobuf-decoded" => (mexc_protobuf(frame), FrameEncoding::Binary),
        _ => (frame.as_bytes().to_vec(), FrameEncoding::Text),
    }
}

#[test]
fn decode_numeric_boundaries_never_panic_and_append_nothing_when_refused() {
    let mut decoded = 0usize;
    for venue in Venue::ALL {
        for (encoding, frame) in fixture_texts(venue) {
            for (start, end, quoted) in numeric_spans(&frame) {
                for edge in NUMERIC_EDGES {
                    // Quoted where the venue quoted it; bare numbers also get the quoted form.
                    let mut spellings = vec![edge.to_string()];
                    if !quoted {
                        spellings.push(format!("\"{edge}\""));
                    }
                    for spelling in spellings {
                        let text = format!("{}{spelling}{}", &frame[..start], &frame[end..]);
                        if encoding == "protobuf-decoded"
                            && serde_json::from_str::<serde_json::Value>(&text).is_err()
                        {
                            // Not encodable as protobuf; the varint edges have their own test.
                            continue;
                        }
                        let (bytes, frame_encoding) = encode_as(&encoding, &text);
                        // `decode_error` checks that a refused frame appends nothing.
                        let _ =
                            decode_error(venue, &bytes, frame_encoding, DecodeLimits::default());
                        decoded += 1;
                    }
                }
            }
        }
    }
    assert!(decoded > 1_000, "{decoded}");
}

/// Timestamps, sequence numbers and ids past what the record holds are `BadNumber`, per venue.
#[test]
fn decode_numeric_overflow_is_bad_number_per_venue() {
    use DecodeErrorKind::BadNumber;
    use Venue::*;
    let cases: &[Mutation] = &[
        // Binance: the bookTicker fast path and the generic path agree.
        (
            Binance,
            0,
            r#""u":400900217"#,
            r#""u":99999999999999999999"#,
            BadNumber,
        ),
        (
            Binance,
            0,
            r#""u":400900217"#,
            r#""u":18446744073709551616"#,
            BadNumber,
        ),
        (Binance, 0, r#""u":400900217"#, r#""u":-1"#, BadNumber),
        (
            Binance,
            1,
            r#""u":499869768"#,
            r#""u":"18446744073709551616""#,
            BadNumber,
        ),
        (
            Binance,
            2,
            r#""T":1672515782136"#,
            r#""T":9223372036855"#,
            BadNumber,
        ),
        (
            Binance,
            2,
            r#""T":1672515782136"#,
            r#""T":"9223372036854.9""#,
            BadNumber,
        ),
        (
            Binance,
            2,
            r#""T":1672515782136"#,
            r#""T":9223372036854.9"#,
            BadNumber,
        ),
        (Binance, 2, r#""T":1672515782136"#, r#""T":1e30"#, BadNumber),
        (Binance, 2, r#""T":1672515782136"#, r#""T":-1"#, BadNumber),
        (Binance, 2, r#""T":1672515782136"#, r#""T":"""#, BadNumber),
        (
            Binance,
            2,
            r#""T":1672515782136"#,
            r#""T":"NaN""#,
            BadNumber,
        ),
        (Binance, 2, r#""t":12345"#, r#""t":-1"#, BadNumber),
        (Binance, 2, r#""t":12345"#, r#""t":1e30"#, BadNumber),
        // Bitget
        (
            Bitget,
            0,
            r#""ts":"1730332859988""#,
            r#""ts":"9223372036854.9""#,
            BadNumber,
        ),
        (
            Bitget,
            2,
            r#""ts":"1730332800983""#,
            r#""ts":"18446744073709551616""#,
            BadNumber,
        ),
        (
            Bitget,
            2,
            r#""ts":"1730332800983""#,
            r#""ts":"inf""#,
            BadNumber,
        ),
        // Bybit
        (
            Bybit,
            0,
            r#""ts":1709891679000"#,
            r#""ts":9223372036855"#,
            BadNumber,
        ),
        (
            Bybit,
            0,
            r#""seq":987654321"#,
            r#""seq":18446744073709551616"#,
            BadNumber,
        ),
        (Bybit, 0, r#""seq":987654321"#, r#""seq":-5"#, BadNumber),
        (
            Bybit,
            1,
            r#""T":1672304486865"#,
            r#""T":"9223372036854.775808""#,
            BadNumber,
        ),
        // Gate: milliseconds with a fraction, and whole seconds.
        (
            Gate,
            0,
            r#""t":1606293275123"#,
            r#""t":9223372036855"#,
            BadNumber,
        ),
        (Gate, 0, r#""u":48733182"#, r#""u":"-1""#, BadNumber),
        (
            Gate,
            1,
            r#""1606292218213.4578""#,
            r#""9223372036854.9""#,
            BadNumber,
        ),
        (
            Gate,
            1,
            r#""1606292218213.4578""#,
            r#""-1606292218213.4578""#,
            BadNumber,
        ),
        (
            Gate,
            1,
            r#""1606292218213.4578""#,
            r#""1606292218213.""#,
            BadNumber,
        ),
        // HTX (gzip frames)
        (
            Htx,
            0,
            r#""quoteTime":1630994555539"#,
            r#""quoteTime":9223372036855"#,
            BadNumber,
        ),
        (
            Htx,
            0,
            r#""seqId":137005210233"#,
            r#""seqId":1e30"#,
            BadNumber,
        ),
        (
            Htx,
            1,
            r#""quoteTime":"1489474082811""#,
            r#""quoteTime":"9223372036854.9""#,
            BadNumber,
        ),
        (
            Htx,
            2,
            r#""ts":1630994963173,"tradeId""#,
            r#""ts":-1,"tradeId""#,
            BadNumber,
        ),
        // KuCoin: milliseconds, and the match channel's nanosecond string.
        (
            Kucoin,
            0,
            r#""timestamp":1729816058766"#,
            r#""timestamp":9223372036855"#,
            BadNumber,
        ),
        (
            Kucoin,
            1,
            r#""sequence":"1545896668986""#,
            r#""sequence":"99999999999999999999""#,
            BadNumber,
        ),
        // OKX
        (
            Okx,
            0,
            r#""ts":"1597026383085""#,
            r#""ts":"9223372036854.9""#,
            BadNumber,
        ),
        (
            Okx,
            0,
            r#""seqId":123456"#,
            r#""seqId":18446744073709551616"#,
            BadNumber,
        ),
        (Okx, 2, r#""ts":"1652459224818""#, r#""ts":"""#, BadNumber),
        // MEXC (protobuf): the version string is the sequence.
        (
            Mexc,
            0,
            r#""askQuantity":"7.669875""#,
            r#""askQuantity":"7.669875","version":"18446744073709551616""#,
            BadNumber,
        ),
    ];
    for &(venue, line, from, to, kind) in cases {
        let (bytes, encoding) = mutated(venue, line, from, to);
        assert_eq!(
            decode_error(venue, &bytes, encoding, DecodeLimits::default()),
            Some(kind),
            "{venue} line {line}: {from} -> {to}"
        );
    }
}

/// KuCoin's older 24-hex-character trade ids do not fit the record's trade id: that one frame is
/// refused as `TradeIdTooLong` (nothing appended), and the decoder goes on with the next.
#[test]
fn decode_kucoin_24_hex_trade_id_is_refused_per_frame() {
    let (bytes, encoding) = mutated(
        Venue::Kucoin,
        2,
        r#""tradeId":"11067996711960577""#,
        r#""tradeId":"5c24c5da03aa673885cd67aa""#,
    );
    assert_eq!(
        decode_error(Venue::Kucoin, &bytes, encoding, DecodeLimits::default()),
        Some(DecodeErrorKind::TradeIdTooLong)
    );
    let mut decoder = decoder_for(Venue::Kucoin, fixture_registry(), DecodeLimits::default());
    let mut out = RecordBatch::with_capacity(4);
    let refused = decoder.decode(&mut bytes.clone(), encoding, TS_RECV_NS, &mut out);
    assert_eq!(
        refused.map_err(|error| error.kind),
        Err(DecodeErrorKind::TradeIdTooLong)
    );
    let mut next = wire_frames(Venue::Kucoin)[2].bytes.clone();
    assert_eq!(
        decoder.decode(&mut next, FrameEncoding::Text, TS_RECV_NS, &mut out),
        Ok(FrameOutcome::Records(1))
    );
    assert_eq!(out.len(), 1);
}

/// MEXC's int64 times come as protobuf varints: negative (ten-byte) and overflowing ones are
/// `BadNumber`, never a wrapped timestamp.
#[test]
fn decode_mexc_varint_times_at_the_edges() {
    use prost::Message;
    let deals = |time: i64| mexc_proto::PushDataV3ApiWrapper {
        channel: "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT".to_string(),
        symbol: "BTCUSDT".to_string(),
        symbol_id: String::new(),
        create_time: 0,
        send_time: 1,
        body: Some(mexc_proto::Body::PublicAggreDeals(
            mexc_proto::PublicAggreDealsV3Api {
                deals: vec![mexc_proto::PublicAggreDealsV3ApiItem {
                    price: "1".to_string(),
                    quantity: "1".to_string(),
                    trade_type: 1,
                    time,
                    trade_id: "7".to_string(),
                }],
                event_type: String::new(),
            },
        )),
    };
    let ticker = |create_time: i64, send_time: i64| mexc_proto::PushDataV3ApiWrapper {
        channel: "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT".to_string(),
        symbol: "BTCUSDT".to_string(),
        symbol_id: String::new(),
        create_time,
        send_time,
        body: Some(mexc_proto::Body::PublicAggreBookTicker(
            mexc_proto::PublicAggreBookTickerV3Api {
                bid_price: "1".to_string(),
                bid_quantity: "1".to_string(),
                ask_price: "2".to_string(),
                ask_quantity: "1".to_string(),
                version: String::new(),
                last_order_create_time: i64::MIN,
            },
        )),
    };
    let max_ms = i64::MAX / 1_000_000;
    for (frame, expected) in [
        (deals(max_ms).encode_to_vec(), None),
        (
            deals(max_ms + 1).encode_to_vec(),
            Some(DecodeErrorKind::BadNumber),
        ),
        (
            deals(i64::MAX).encode_to_vec(),
            Some(DecodeErrorKind::BadNumber),
        ),
        (deals(-1).encode_to_vec(), Some(DecodeErrorKind::BadNumber)),
        (
            deals(i64::MIN).encode_to_vec(),
            Some(DecodeErrorKind::BadNumber),
        ),
        (ticker(0, max_ms).encode_to_vec(), None),
        (
            ticker(-1, 5).encode_to_vec(),
            Some(DecodeErrorKind::BadNumber),
        ),
        (
            ticker(0, i64::MAX).encode_to_vec(),
            Some(DecodeErrorKind::BadNumber),
        ),
        (
            ticker(i64::MIN, 0).encode_to_vec(),
            Some(DecodeErrorKind::BadNumber),
        ),
    ] {
        assert_eq!(
            decode_error(
                Venue::Mexc,
                &frame,
                FrameEncoding::Binary,
                DecodeLimits::default()
            ),
            expected,
            "{frame:?}"
        );
    }
    // A varint longer than ten bytes (past u64) is malformed protobuf.
    let mut frame = vec![0x28]; // field 5 (createTime), varint
    frame.extend_from_slice(&[0xff; 10]);
    frame.push(0x01);
    assert_eq!(
        decode_error(
            Venue::Mexc,
            &frame,
            FrameEncoding::Binary,
            DecodeLimits::default()
        ),
        Some(DecodeErrorKind::MalformedProtobuf)
    );
}

// ---------------------------------------------------------------------------------------------
// Empty book sides: a halted or illiquid market withdraws the venue's quote.

/// A text frame as a venue sends it.
fn text_frame(frame: &str) -> WireFrame {
    WireFrame {
        kind: "bbo".to_string(),
        encoding: FrameEncoding::Text,
        bytes: frame.as_bytes().to_vec(),
    }
}

/// An HTX frame: gzip, as HTX sends every frame.
fn gzip_frame(frame: &str) -> WireFrame {
    WireFrame {
        kind: "bbo".to_string(),
        encoding: FrameEncoding::Binary,
        bytes: gzip(frame.as_bytes()),
    }
}

/// A MEXC push, from the decoded-JSON form the fixtures show.
fn protobuf_frame(frame: &str) -> WireFrame {
    WireFrame {
        kind: "bbo".to_string(),
        encoding: FrameEncoding::Binary,
        bytes: mexc_protobuf(frame),
    }
}

/// Every venue's best bid/ask frame with its bid side empty, its ask side empty and both empty,
/// in each venue's own spelling of "no level" (fixture shapes, prices kept).
fn empty_side_frames() -> Vec<(Venue, WireFrame, &'static str)> {
    let mut frames = Vec::new();
    let mut both = |venue: Venue,
                    symbol: &'static str,
                    make: &dyn Fn(&str, &str) -> WireFrame,
                    bid: &str,
                    ask: &str,
                    empty_bid: &str,
                    empty_ask: &str| {
        frames.push((venue, make(empty_bid, ask), symbol));
        frames.push((venue, make(bid, empty_ask), symbol));
        frames.push((venue, make(empty_bid, empty_ask), symbol));
    };
    // Binance: a zero price and size (raw stream and combined-stream form).
    both(
        Venue::Binance,
        "BNB-USDT",
        &|bid, ask| text_frame(&format!(r#"{{"u":400900218,"s":"BNBUSDT",{bid},{ask}}}"#)),
        r#""b":"25.35190000","B":"31.21000000""#,
        r#""a":"25.36520000","A":"40.66000000""#,
        r#""b":"0.00000000","B":"0.00000000""#,
        r#""a":"0.00000000","A":"0.00000000""#,
    );
    both(
        Venue::Binance,
        "NKN-USDT",
        &|bid, ask| {
            text_frame(&format!(
                r#"{{"stream":"nknusdt@bookTicker","data":{{"u":499869769,"s":"NKNUSDT",{bid},{ask}}}}}"#
            ))
        },
        r#""b":"0.35210000","B":"672.00000000""#,
        r#""a":"0.35260000","A":"3199.00000000""#,
        r#""b":"0.00000000","B":"0.00000000""#,
        r#""a":"0.00000000","A":"0.00000000""#,
    );
    // Bybit orderbook.1: an empty level array.
    both(
        Venue::Bybit,
        "BTC-USDT",
        &|bid, ask| {
            text_frame(&format!(
                r#"{{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1709891679000,"data":{{"s":"BTCUSDT","b":{bid},"a":{ask},"u":123456790,"seq":987654322}},"cts":1709891678998}}"#
            ))
        },
        r#"[["27450.00","0.500"]]"#,
        r#"[["27451.00","0.750"]]"#,
        "[]",
        "[]",
    );
    // OKX bbo-tbt: an empty level array; tickers: an empty price string.
    both(
        Venue::Okx,
        "BTC-USDT",
        &|bid, ask| {
            text_frame(&format!(
                r#"{{"arg":{{"channel":"bbo-tbt","instId":"BTC-USDT"}},"data":[{{"asks":{ask},"bids":{bid},"ts":"1597026383085","seqId":123457}}]}}"#
            ))
        },
        r#"[["8476.97","256","0","12"]]"#,
        r#"[["8476.98","415","0","13"]]"#,
        "[]",
        "[]",
    );
    both(
        Venue::Okx,
        "BTC-USDT",
        &|bid, ask| {
            text_frame(&format!(
                r#"{{"arg":{{"channel":"tickers","instId":"BTC-USDT"}},"data":[{{"instType":"SPOT","instId":"BTC-USDT","last":"30236",{ask},{bid},"ts":"1652459224956"}}]}}"#
            ))
        },
        r#""bidPx":"30228.6","bidSz":"0.23393""#,
        r#""askPx":"30228.7","askSz":"1.55896972""#,
        r#""bidPx":"","bidSz":"""#,
        r#""askPx":"","askSz":"""#,
    );
    // Bitget books1: an empty level array.
    both(
        Venue::Bitget,
        "METIS-USDT",
        &|bid, ask| {
            text_frame(&format!(
                r#"{{"action":"snapshot","arg":{{"instType":"SPOT","channel":"books1","instId":"METISUSDT"}},"data":[{{"asks":{ask},"bids":{bid},"checksum":0,"ts":"1730332859988"}}],"ts":1730332859989}}"#
            ))
        },
        r#"[["44.82","3.5344"]]"#,
        r#"[["44.90","0.6927"]]"#,
        "[]",
        "[]",
    );
    // Gate book_ticker: an empty price string.
    both(
        Venue::Gate,
        "BTC-USDT",
        &|bid, ask| {
            text_frame(&format!(
                r#"{{"time":1606293275,"time_ms":1606293275123,"channel":"spot.book_ticker","event":"update","result":{{"t":1606293275123,"u":48733183,"s":"BTC_USDT",{bid},{ask}}}}}"#
            ))
        },
        r#""b":"19177.79","B":"0.0003341504""#,
        r#""a":"19179.38","A":"0.09""#,
        r#""b":"","B":"""#,
        r#""a":"","A":"""#,
    );
    // KuCoin level1: `[]` for a side; ticker: an empty price string.
    both(
        Venue::Kucoin,
        "BTC-USDT",
        &|bid, ask| {
            text_frame(&format!(
                r#"{{"topic":"/spotMarket/level1:BTC-USDT","type":"message","subject":"level1","data":{{"asks":{ask},"bids":{bid},"timestamp":1729816058766}}}}"#
            ))
        },
        r#"["68145.7","1.29267802"]"#,
        r#"["68145.8","0.51987471"]"#,
        "[]",
        "[]",
    );
    both(
        Venue::Kucoin,
        "BTC-USDT",
        &|bid, ask| {
            text_frame(&format!(
                r#"{{"type":"message","topic":"/market/ticker:BTC-USDT","subject":"trade.ticker","data":{{"sequence":"1545896668987","price":"0.08","size":"0.011",{ask},{bid},"time":1704873323416}}}}"#
            ))
        },
        r#""bestBid":"0.049","bestBidSize":"0.036""#,
        r#""bestAsk":"0.08","bestAskSize":"0.18""#,
        r#""bestBid":"","bestBidSize":"""#,
        r#""bestAsk":"","bestAskSize":"""#,
    );
    // HTX bbo (gzip): a zero price, as a JSON number or as a string.
    both(
        Venue::Htx,
        "BTC-USDT",
        &|bid, ask| {
            gzip_frame(&format!(
                r#"{{"ch":"market.btcusdt.bbo","ts":1630994555540,"tick":{{"seqId":137005210234,{ask},{bid},"quoteTime":1630994555539,"symbol":"btcusdt"}}}}"#
            ))
        },
        r#""bid":52665.01,"bidSize":0.178567"#,
        r#""ask":52665.02,"askSize":1.502181"#,
        r#""bid":0,"bidSize":0"#,
        r#""ask":"0","askSize":"0""#,
    );
    // MEXC (protobuf): an empty price string.
    both(
        Venue::Mexc,
        "BTC-USDT",
        &|bid, ask| {
            protobuf_frame(&format!(
                r#"{{"channel":"spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT","publicAggreBookTicker":{{{bid},{ask}}},"symbol":"BTCUSDT","sendTime":1736412092433}}"#
            ))
        },
        r#""bidPrice":"93387.28","bidQuantity":"3.73485""#,
        r#""askPrice":"93387.29","askQuantity":"7.669875""#,
        r#""bidPrice":"","bidQuantity":"""#,
        r#""askPrice":"","askQuantity":"""#,
    );
    frames
}

#[test]
fn decode_golden_empty_side_withdraws_the_quote() {
    let frames = empty_side_frames();
    for venue in Venue::ALL {
        assert!(
            frames.iter().filter(|(of, _, _)| *of == venue).count() >= 3,
            "{venue}: bid, ask and both sides empty"
        );
    }
    for (venue, frame, symbol) in &frames {
        check(*venue, frame, &Withdrawn { symbol });
    }
}

/// Withdrawals are records like quotes: counted in `records` and `quotes_withdrawn`, not as
/// errors; a frame of two books makes a quote and a withdrawal.
#[test]
fn decode_withdrawals_are_counted_and_mix_with_quotes() {
    let counters = tickflow_decode::DecodeCounters::new();
    // One batch for every frame: each frame's records are the last ones in it.
    let mut out = RecordBatch::with_capacity(64);
    for (venue, frame, _) in empty_side_frames() {
        let mut decoder = decoder_for(venue, fixture_registry(), DecodeLimits::default());
        let mut bytes = frame.bytes.clone();
        let result = decoder.decode(&mut bytes, frame.encoding, TS_RECV_NS, &mut out);
        counters.count_frame(&result, out.as_slice());
    }
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.errors_total(), 0);
    assert_eq!(snapshot.quotes_withdrawn, snapshot.records);
    assert_eq!(snapshot.records, empty_side_frames().len() as u64);

    let frame = r#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["2","1"]],"bids":[["1","1"]],"ts":"1","seqId":1},{"asks":[],"bids":[["1","1"]],"ts":"2","seqId":2}]}"#;
    let mut decoder = decoder_for(Venue::Okx, fixture_registry(), DecodeLimits::default());
    let mut out = RecordBatch::with_capacity(4);
    let outcome = decoder.decode(
        &mut frame.as_bytes().to_vec(),
        FrameEncoding::Text,
        TS_RECV_NS,
        &mut out,
    );
    assert_eq!(outcome, Ok(FrameOutcome::Records(2)));
    assert!(matches!(out.as_slice()[0], FeedEvent::Quote(_)));
    assert!(matches!(out.as_slice()[1], FeedEvent::Gap(gap) if gap.kind == GAP_QUOTE_WITHDRAWN));
}

/// A frame with an empty side is still read whole: a bad or missing time, sequence or symbol, or
/// a bad price on the side that is there, refuses it (counted) instead of withdrawing.
#[test]
fn decode_empty_side_frames_are_still_checked() {
    use DecodeErrorKind::*;
    let cases: &[(Venue, &str, DecodeErrorKind)] = &[
        // OKX: `ts` missing or not a number (it used to pass unread with an empty side).
        (
            Venue::Okx,
            r#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[["1","1"]],"seqId":1}]}"#,
            MissingField,
        ),
        (
            Venue::Okx,
            r#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[],"ts":"soon","seqId":1}]}"#,
            BadNumber,
        ),
        (
            Venue::Okx,
            r#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["1","1"]],"bids":[],"ts":{},"seqId":1}]}"#,
            WrongType,
        ),
        (
            Venue::Okx,
            r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","askPx":"30228.7","askSz":"1","bidPx":"","bidSz":""}]}"#,
            MissingField,
        ),
        (
            Venue::Okx,
            r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","askPx":"30228.7","askSz":"1","bidPx":"","bidSz":"","ts":"x"}]}"#,
            BadNumber,
        ),
        // The side that is there must still be a price.
        (
            Venue::Bybit,
            r#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[["-1","0.750"]],"u":1,"seq":2}}"#,
            NonPositivePrice,
        ),
        (
            Venue::Bybit,
            r#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","data":{"s":"BTCUSDT","b":[],"a":[],"u":1,"seq":2}}"#,
            MissingField,
        ),
        // A level with a price and no size is malformed, not an empty side.
        (
            Venue::Bitget,
            r#"{"action":"snapshot","arg":{"instType":"SPOT","channel":"books1","instId":"METISUSDT"},"data":[{"asks":[["44.90"]],"bids":[],"ts":"1"}]}"#,
            MissingField,
        ),
        (
            Venue::Kucoin,
            r#"{"topic":"/spotMarket/level1:BTC-USDT","type":"message","subject":"level1","data":{"asks":["68145.8"],"bids":[],"timestamp":1}}"#,
            MissingField,
        ),
        (
            Venue::Kucoin,
            r#"{"topic":"/spotMarket/level1:NOPE-USDT","type":"message","subject":"level1","data":{"asks":[],"bids":[],"timestamp":1}}"#,
            UnknownSymbol,
        ),
        (
            Venue::Gate,
            r#"{"channel":"spot.book_ticker","event":"update","result":{"t":1,"u":"-1","s":"BTC_USDT","b":"","B":"","a":"","A":""}}"#,
            BadNumber,
        ),
        (
            Venue::Gate,
            r#"{"channel":"spot.book_ticker","event":"update","result":{"t":1,"s":"BTC_USDT","b":"","B":"","a":"19179.38"}}"#,
            MissingField,
        ),
        (
            Venue::Binance,
            r#"{"u":1,"s":"BNBUSDT","b":"0.00000000","B":"0.00000000","a":"NaN","A":"1"}"#,
            NonFinite,
        ),
        (
            Venue::Binance,
            r#"{"u":-1,"s":"BNBUSDT","b":"0.00000000","B":"0.00000000","a":"0.00000000","A":"0.00000000"}"#,
            BadNumber,
        ),
    ];
    for &(venue, frame, kind) in cases {
        assert_eq!(
            decode_error(
                venue,
                frame.as_bytes(),
                FrameEncoding::Text,
                DecodeLimits::default()
            ),
            Some(kind),
            "{venue}: {frame}"
        );
    }
    // HTX (gzip): a zero bid with a bad sequence.
    let frame = r#"{"ch":"market.btcusdt.bbo","ts":1,"tick":{"seqId":-4,"ask":2,"askSize":1,"bid":0,"bidSize":0,"quoteTime":1}}"#;
    assert_eq!(
        decode_error(
            Venue::Htx,
            &gzip(frame.as_bytes()),
            FrameEncoding::Binary,
            DecodeLimits::default()
        ),
        Some(BadNumber)
    );
    // MEXC (protobuf): an empty bid with a bad version.
    let frame = r#"{"channel":"spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT","publicAggreBookTicker":{"bidPrice":"","bidQuantity":"","askPrice":"1","askQuantity":"1","version":"v9"},"symbol":"BTCUSDT","sendTime":1}"#;
    assert_eq!(
        decode_error(
            Venue::Mexc,
            &mexc_protobuf(frame),
            FrameEncoding::Binary,
            DecodeLimits::default()
        ),
        Some(BadNumber)
    );
}

/// HTX's `quoteTime` 0 (number or string) is no exchange time, never the epoch.
#[test]
fn decode_htx_zero_quote_time_is_absent() {
    for quote_time in ["0", r#""0""#] {
        let frame = format!(
            r#"{{"ch":"market.btcusdt.bbo","ts":1630994555540,"tick":{{"seqId":7,"ask":2.5,"askSize":1,"bid":2.25,"bidSize":3,"quoteTime":{quote_time},"symbol":"btcusdt"}}}}"#
        );
        check(
            Venue::Htx,
            &gzip_frame(&frame),
            &Quote {
                symbol: "BTC-USDT",
                bid: 2.25,
                bid_qty: 3.0,
                ask: 2.5,
                ask_qty: 1.0,
                ts_exchange_ns: None,
                seq: Some(7),
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Refused frames are logged: at most one warning per second per venue and kind.

/// Captures what a thread's `tracing` events print while `with` runs.
fn captured_log(with: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let shared = Shared::default();
    let writer = shared.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, with);
    let bytes = shared
        .0
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    String::from_utf8(bytes).expect("log lines are UTF-8")
}

#[test]
fn decode_refused_frames_warn_once_per_burst_per_kind() {
    static WARNINGS: tickflow_decode::DecodeWarnLimiter =
        tickflow_decode::DecodeWarnLimiter::new(Venue::Gate);
    let log = captured_log(|| {
        let mut decoder = tickflow_decode::decoder_with_warnings(
            Venue::Gate,
            fixture_registry(),
            DecodeLimits::default(),
            &WARNINGS,
        );
        let mut out = RecordBatch::with_capacity(4);
        let second_ns = 1_000_000_000;
        // A burst of one kind, another kind inside it, then the first kind a second later.
        for (frame, ts_recv_ns) in [
            ("not json", 0),
            ("not json either", 1),
            ("{}", 2),
            ("still not json", second_ns - 1),
            ("not json a second later", second_ns),
        ] {
            let _ = decoder.decode(
                &mut frame.as_bytes().to_vec(),
                FrameEncoding::Text,
                ts_recv_ns,
                &mut out,
            );
        }
    });
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines
            .iter()
            .all(|line| line.contains("WARN") && line.contains("venue=\"gate\"")),
        "{log}"
    );
    assert!(
        lines[0].contains("kind=\"malformed_json\"")
            && lines[0].contains("suppressed_since_last_warning=0"),
        "{log}"
    );
    assert!(lines[1].contains("kind=\"missing_field\""), "{log}");
    assert!(
        lines[2].contains("kind=\"malformed_json\"")
            && lines[2].contains("suppressed_since_last_warning=2"),
        "{log}"
    );
}

/// `unknown_symbol` names the spelling of the last frame only: a frame refused for another reason
/// (here, before any parsing: too large) forgets the spelling of the frame before it. Found by
/// tickflow-fuzz (`fuzz/corpus/*/invariant-*`).
#[test]
fn decode_unknown_symbol_is_forgotten_by_the_next_refused_frame() {
    let limits = DecodeLimits {
        max_frame_bytes: 512,
        ..DecodeLimits::default()
    };
    for venue in Venue::ALL {
        let frames = wire_frames(venue);
        let bbo = frames
            .iter()
            .find(|frame| frame.kind == "bbo")
            .expect("every venue has a bbo");
        let mut decoder = decoder_for(venue, fixture_registry(), limits);
        let mut out = RecordBatch::with_capacity(4);
        // The bbo with its symbol spelled so no registry knows it.
        let unknown = match venue {
            Venue::Htx => gzip(
                br#"{"ch":"market.zzzusdt.bbo","tick":{"bid":1,"bidSize":1,"ask":2,"askSize":1,"quoteTime":1}}"#,
            ),
            Venue::Mexc => mexc_protobuf(
                r#"{"channel":"spot@public.aggre.bookTicker.v3.api.pb@100ms@ZZZUSDT","publicAggreBookTicker":{"bidPrice":"1","bidQuantity":"1","askPrice":"2","askQuantity":"1"},"symbol":"ZZZUSDT","sendTime":1}"#,
            ),
            _ => String::from_utf8(bbo.bytes.clone())
                .expect("text fixtures are UTF-8")
                .replace("BNBUSDT", "ZZZUSDT")
                .replace("BTCUSDT", "ZZZUSDT")
                .replace("BTC-USDT", "ZZZ-USDT")
                .replace("BTC_USDT", "ZZZ_USDT")
                .replace("METISUSDT", "ZZZUSDT")
                .into_bytes(),
        };
        let refused = decoder.decode(&mut unknown.clone(), bbo.encoding, TS_RECV_NS, &mut out);
        assert_eq!(
            refused.map_err(|error| error.kind),
            Err(DecodeErrorKind::UnknownSymbol),
            "{venue}"
        );
        assert!(decoder.unknown_symbol().is_some(), "{venue}");
        let mut oversized = vec![b' '; 600];
        let encoding = match venue {
            Venue::Mexc => FrameEncoding::Binary,
            _ => FrameEncoding::Text,
        };
        let refused = decoder.decode(&mut oversized, encoding, TS_RECV_NS, &mut out);
        assert_eq!(
            refused.map_err(|error| error.kind),
            Err(DecodeErrorKind::Oversized),
            "{venue}"
        );
        assert_eq!(decoder.unknown_symbol(), None, "{venue}");
    }
}
