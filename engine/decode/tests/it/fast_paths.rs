//! Integration tests: the hand-written fast paths (Binance bookTicker, Bybit orderbook.1, OKX
//! bbo-tbt, Gate book_ticker, KuCoin level1, Bitget books1 v2 and v3, HTX bbo) give exactly the
//! generic simd-json path's answer: the same outcome and the same records for the fixtures, for
//! thousands of mutated copies of each venue's push, and for hand-made edge cases.

use tickflow_core::venue::Venue;
use tickflow_decode::{
    BinanceDecoder, BitgetDecoder, BybitDecoder, DecodeLimits, Decoder, FrameEncoding, GateDecoder,
    HtxDecoder, KucoinDecoder, OkxDecoder, RecordBatch,
};

use crate::fixtures::{Xorshift, fixture_registry, wire_frames, wire_frames_of};

/// Decodes every input with the fast path on and off: the same outcome and the same records.
fn assert_fast_path_matches_generic(
    fast: &mut dyn Decoder,
    generic: &mut dyn Decoder,
    inputs: &[Vec<u8>],
) {
    for input in inputs {
        let mut fast_out = RecordBatch::with_capacity(4);
        let mut generic_out = RecordBatch::with_capacity(4);
        let fast_result = fast.decode(&mut input.clone(), FrameEncoding::Text, 5, &mut fast_out);
        let generic_result =
            generic.decode(&mut input.clone(), FrameEncoding::Text, 5, &mut generic_out);
        let text = String::from_utf8_lossy(input);
        assert_eq!(fast_result, generic_result, "{text:?}");
        assert_eq!(fast_out.as_slice(), generic_out.as_slice(), "{text:?}");
    }
}

#[test]
fn decode_binance_fast_path_matches_generic_path() {
    let registry = fixture_registry();
    let mut fast = BinanceDecoder::new(registry.clone(), DecodeLimits::default());
    let mut generic = BinanceDecoder::new(registry, DecodeLimits::default());
    generic.set_fast_path(false);
    let mut random = Xorshift(7);
    let mut inputs: Vec<Vec<u8>> = wire_frames(Venue::Binance)
        .into_iter()
        .map(|frame| frame.bytes)
        .collect();
    let base = inputs[0].clone();
    let digits = b"0123456789.";
    for _ in 0..2000 {
        let mut variant = base.clone();
        // Mutate inside the value strings mostly, sometimes anywhere.
        let at = (random.next() % variant.len() as u64) as usize;
        variant[at] = if random.next() % 4 == 0 {
            (random.next() % 256) as u8
        } else {
            digits[(random.next() % digits.len() as u64) as usize]
        };
        inputs.push(variant);
    }
    // Update ids at and past the u64 edge: the scanner must fall back, not overflow.
    for update_id in [
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "100000000000000000000",
        "9223372036854775808",
        "0",
        "-1",
        "01",
    ] {
        inputs.push(
            format!(
                r#"{{"u":{update_id},"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}"#
            )
            .into_bytes(),
        );
    }
    inputs.push(br#"{"u":1,"s":"BNBUSDT","b":"1e2","B":"0","a":"100","A":"5"}"#.to_vec());
    inputs.push(br#"{"u":1,"s":"bnbusdt","b":"1","B":"1","a":"2","A":"3"}"#.to_vec());
    inputs.push(br#"{"u":1,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"3","x":1}"#.to_vec());
    assert_fast_path_matches_generic(&mut fast, &mut generic, &inputs);
}

#[test]
fn decode_okx_fast_path_matches_generic_path() {
    let registry = fixture_registry();
    let mut fast = OkxDecoder::new(registry.clone(), DecodeLimits::default());
    let mut generic = OkxDecoder::new(registry, DecodeLimits::default());
    generic.set_fast_path(false);
    let mut random = Xorshift(11);
    let mut inputs: Vec<Vec<u8>> = wire_frames(Venue::Okx)
        .into_iter()
        .map(|frame| frame.bytes)
        .collect();
    let base = inputs[0].clone();
    assert!(
        base.starts_with(br#"{"arg":{"channel":"bbo-tbt""#),
        "the first OKX fixture is a bbo-tbt push"
    );
    let digits = b"0123456789.\"";
    for _ in 0..3000 {
        let mut variant = base.clone();
        // Mutate inside the values mostly, sometimes anywhere, sometimes twice.
        for _ in 0..1 + random.next() % 2 {
            let at = (random.next() % variant.len() as u64) as usize;
            variant[at] = if random.next() % 4 == 0 {
                (random.next() % 256) as u8
            } else {
                digits[(random.next() % digits.len() as u64) as usize]
            };
        }
        inputs.push(variant);
    }
    let frame = |ask: &str, bid: &str, ts: &str, seq: &str| {
        format!(
            r#"{{"arg":{{"channel":"bbo-tbt","instId":"BTC-USDT"}},"data":[{{"asks":[{ask}],"bids":[{bid}],"ts":{ts},"seqId":{seq}}}]}}"#
        )
        .into_bytes()
    };
    let level = r#"["8476.98","415","0","13"]"#;
    // Sequence ids at and past the u64 edge, leading zeros, negatives.
    for seq in [
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775808",
        "0",
        "-1",
        "01",
        "1.5",
        "\"7\"",
    ] {
        inputs.push(frame(level, level, r#""1597026383085""#, seq));
    }
    // Times: as a number, fractional, empty, too large, with a sign.
    for ts in [
        "1597026383085",
        r#""1597026383085.5""#,
        r#""""#,
        r#""99999999999999999999""#,
        r#""-1""#,
        r#""1e3""#,
    ] {
        inputs.push(frame(level, level, ts, "5"));
    }
    // Empty and deeper sides, numbers as JSON numbers, zero and non-finite prices.
    for (ask, bid) in [
        ("", level),
        (level, ""),
        (&format!("{level},{level}") as &str, level),
        (r#"[8476.98,415,"0","13"]"#, level),
        (r#"["0","0","0","0"]"#, level),
        (r#"["1e400","1","0","1"]"#, level),
        (r#"["8476.98","415"]"#, level),
        (r#"["8476.98"]"#, level),
    ] {
        inputs.push(frame(
            &format!("[{ask}]"),
            &format!("[{bid}]"),
            r#""1""#,
            "5",
        ));
    }
    inputs.push(br#"{"arg":{"channel":"bbo-tbt","instId":"NOT-LISTED"},"data":[{"asks":[["1","1","0","1"]],"bids":[["1","1","0","1"]],"ts":"1","seqId":1}]}"#.to_vec());
    inputs.push(br#"{"arg":{"channel":"books5","instId":"BTC-USDT"},"data":[{"asks":[["1","1","0","1"]],"bids":[["1","1","0","1"]],"ts":"1","seqId":1}]}"#.to_vec());
    inputs.push(br#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["1","1","0","1"]],"bids":[["1","1","0","1"]],"ts":"1","seqId":1}],"x":1}"#.to_vec());
    assert_fast_path_matches_generic(&mut fast, &mut generic, &inputs);
}

/// `count` copies of `base`, each with one or two bytes replaced: mostly by digits, dots, quotes
/// and the characters of numbers (the values change), sometimes by any byte (the shape breaks).
fn mutations(base: &[u8], seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut random = Xorshift(seed);
    let alphabet = b"0123456789.\"-eE[],";
    (0..count)
        .map(|_| {
            let mut variant = base.to_vec();
            for _ in 0..1 + random.next() % 2 {
                let at = (random.next() % variant.len() as u64) as usize;
                variant[at] = if random.next() % 4 == 0 {
                    (random.next() % 256) as u8
                } else {
                    alphabet[(random.next() % alphabet.len() as u64) as usize]
                };
            }
            variant
        })
        .collect()
}

/// Every input of `frames`, `base`, `base` with its price `price` replaced by each of `prices`,
/// `base` with each of `edits` (`(from, to)`, first occurrence) and mutations of `base`, through
/// `fast` and `generic`.
#[allow(clippy::too_many_arguments)]
fn check_venue(
    fast: &mut dyn Decoder,
    generic: &mut dyn Decoder,
    frames: Vec<Vec<u8>>,
    base: &str,
    price: &str,
    prices: &[&str],
    edits: &[(&str, &str)],
    seed: u64,
) {
    let mut inputs = frames;
    inputs.push(base.as_bytes().to_vec());
    let price_edits = prices.iter().map(|to| (price, *to));
    for (from, to) in price_edits.chain(edits.iter().copied()) {
        let edited = base.replacen(from, to, 1);
        assert_ne!(edited, base, "the edit {from:?} applies to the base frame");
        inputs.push(edited.into_bytes());
    }
    inputs.extend(mutations(base.as_bytes(), seed, 3000));
    assert_fast_path_matches_generic(fast, generic, &inputs);
}

/// Text frames of a fixture file (the gzip ones inflated back to their JSON).
fn fixture_texts(venue: Venue) -> Vec<Vec<u8>> {
    wire_frames(venue)
        .into_iter()
        .filter(|frame| frame.encoding == FrameEncoding::Text)
        .map(|frame| frame.bytes)
        .collect()
}

/// Prices at the edges both paths must agree on: zero (refused or a withdrawal), crossed, huge,
/// exponents, leading zeros, signs, blanks.
const PRICE_EDITS: &[&str] = &[
    "0",
    "0.0",
    "1e2",
    "1E-7",
    "-1",
    "",
    "00.5",
    "1.",
    ".5",
    "1e400",
    "NaN",
    "inf",
    "99999999999999999999",
    "123456789012345678.9",
    "1234567890123456789.5",
];

#[test]
fn decode_bybit_fast_path_matches_generic_path() {
    let registry = fixture_registry();
    let mut fast = BybitDecoder::new(registry.clone(), DecodeLimits::default());
    let mut generic = BybitDecoder::new(registry, DecodeLimits::default());
    generic.set_fast_path(false);
    let base = r#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1709891679000,"data":{"s":"BTCUSDT","b":[["27450.00","0.500"]],"a":[["27451.00","0.750"]],"u":123456789,"seq":987654321},"cts":1709891678998}"#;
    let edits = [
        (r#""b":[["27450.00","0.500"]]"#, r#""b":[]"#),
        (r#""a":[["27451.00","0.750"]]"#, r#""a":[]"#),
        (
            r#""a":[["27451.00","0.750"]]"#,
            r#""a":[["27451.00","0.750"],["27452","1"]]"#,
        ),
        (r#""b":[["27450.00","0.500"]]"#, r#""b":[[27450.00,0.500]]"#),
        (r#""type":"snapshot""#, r#""type":"delta""#),
        (r#""seq":987654321"#, r#""seq":18446744073709551616"#),
        (r#""seq":987654321"#, r#""seq":"987654321""#),
        (r#""ts":1709891679000"#, r#""ts":99999999999999"#),
        (r#""ts":1709891679000"#, r#""ts":0"#),
        (r#""u":123456789"#, r#""u":01"#),
        (r#""s":"BTCUSDT""#, r#""s":"NOTLISTED""#),
        (r#""s":"BTCUSDT""#, r#""s":"BTC\u0055SDT""#),
        ("orderbook.1.BTCUSDT", "orderbook.1."),
        ("orderbook.1.BTCUSDT", "orderbook.50.BTCUSDT"),
        (r#","cts":1709891678998}"#, "}"),
        (r#","cts":1709891678998}"#, r#","cts":1,"op":"ping"}"#),
    ];
    check_venue(
        &mut fast,
        &mut generic,
        fixture_texts(Venue::Bybit),
        base,
        "27450.00",
        PRICE_EDITS,
        &edits,
        13,
    );
}

#[test]
fn decode_gate_fast_path_matches_generic_path() {
    let registry = fixture_registry();
    let mut fast = GateDecoder::new(registry.clone(), DecodeLimits::default());
    let mut generic = GateDecoder::new(registry, DecodeLimits::default());
    generic.set_fast_path(false);
    let base = r#"{"time":1606293275,"time_ms":1606293275123,"channel":"spot.book_ticker","event":"update","result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"19177.79","B":"0.0003341504","a":"19179.38","A":"0.09"}}"#;
    let edits = [
        (r#""b":"19177.79""#, r#""b":"""#),
        (r#""A":"0.09""#, r#""A":"""#),
        (r#""b":"19177.79""#, r#""b":19177.79"#),
        (r#""event":"update""#, r#""event":"all""#),
        (r#""event":"update""#, r#""event":"subscribe""#),
        (r#""u":48733182"#, r#""u":18446744073709551616"#),
        (r#""t":1606293275123"#, r#""t":"1606293275123.5""#),
        (r#""s":"BTC_USDT""#, r#""s":"BTC-USDT""#),
        (r#""s":"BTC_USDT""#, r#""s":"NOT_LISTED""#),
        (r#""time":1606293275,"#, ""),
        (r#"}}"#, r#"},"error":null}"#),
    ];
    check_venue(
        &mut fast,
        &mut generic,
        fixture_texts(Venue::Gate),
        base,
        "19179.38",
        PRICE_EDITS,
        &edits,
        17,
    );
}

#[test]
fn decode_kucoin_fast_path_matches_generic_path() {
    let registry = fixture_registry();
    let mut fast = KucoinDecoder::new(registry.clone(), DecodeLimits::default());
    let mut generic = KucoinDecoder::new(registry, DecodeLimits::default());
    generic.set_fast_path(false);
    let base = r#"{"topic":"/spotMarket/level1:BTC-USDT","type":"message","subject":"level1","data":{"asks":["68145.8","0.51987471"],"bids":["68145.7","1.29267802"],"timestamp":1729816058766}}"#;
    let edits = [
        (r#""asks":["68145.8","0.51987471"]"#, r#""asks":[]"#),
        (
            r#""bids":["68145.7","1.29267802"]"#,
            r#""bids":["68145.7"]"#,
        ),
        (
            r#""bids":["68145.7","1.29267802"]"#,
            r#""bids":[68145.7,1.29267802]"#,
        ),
        (
            r#""timestamp":1729816058766"#,
            r#""timestamp":"1729816058766""#,
        ),
        (
            r#""timestamp":1729816058766"#,
            r#""timestamp":1729816058766.5"#,
        ),
        (r#""type":"message""#, r#""type":"pong""#),
        (r#""subject":"level1""#, r#""subject":"other""#),
        ("level1:BTC-USDT", "level1:BTC:USDT"),
        ("level1:BTC-USDT", "level1:"),
    ];
    check_venue(
        &mut fast,
        &mut generic,
        fixture_texts(Venue::Kucoin),
        base,
        "68145.7",
        PRICE_EDITS,
        &edits,
        19,
    );
}

#[test]
fn decode_bitget_fast_paths_match_generic_path() {
    let registry = fixture_registry();
    let mut fast = BitgetDecoder::new(registry.clone(), DecodeLimits::default());
    let mut generic = BitgetDecoder::new(registry, DecodeLimits::default());
    generic.set_fast_path(false);
    let v2 = r#"{"action":"snapshot","arg":{"instType":"SPOT","channel":"books1","instId":"METISUSDT"},"data":[{"asks":[["44.90","0.6927"]],"bids":[["44.82","3.5344"]],"checksum":0,"ts":"1730332859988"}],"ts":1730332859989}"#;
    let v3 = r#"{"data":[{"a":[["99756.7","23.9774"]],"b":[["99756.6","0.0128"]],"checksum":0,"pseq":0,"seq":1304314508780744705,"ts":"1746698732562"}],"arg":{"instType":"usdt-futures","symbol":"BTCUSDT","topic":"books1"},"action":"snapshot","ts":1746698732563}"#;
    let frames: Vec<Vec<u8>> = fixture_texts(Venue::Bitget)
        .into_iter()
        .chain(
            wire_frames_of("bitget_v3.jsonl")
                .into_iter()
                .map(|frame| frame.bytes),
        )
        .collect();
    let edits = [
        (r#""asks":[["44.90","0.6927"]]"#, r#""asks":[]"#),
        (
            r#""bids":[["44.82","3.5344"]]"#,
            r#""bids":[["44.82","3.5344"],["44.8","1"]]"#,
        ),
        (r#""checksum":0"#, r#""checksum":-1823476402"#),
        (r#""checksum":0"#, r#""checksum":-0"#),
        (r#""checksum":0"#, r#""checksum":-"#),
        (r#""ts":"1730332859988""#, r#""ts":"1730332859988.25""#),
        (r#""ts":"1730332859988""#, r#""ts":"""#),
        (r#""channel":"books1""#, r#""channel":"books5""#),
        (r#""action":"snapshot""#, r#""action":"update""#),
        (r#""instId":"METISUSDT""#, r#""instId":"NOTLISTED""#),
    ];
    check_venue(
        &mut fast,
        &mut generic,
        frames,
        v2,
        "44.82",
        PRICE_EDITS,
        &edits,
        23,
    );
    let edits = [
        (r#""b":[["99756.6","0.0128"]]"#, r#""b":[]"#),
        (
            r#""seq":1304314508780744705"#,
            r#""seq":18446744073709551616"#,
        ),
        (
            r#""seq":1304314508780744705"#,
            r#""seq":"1304314508780744705""#,
        ),
        (r#""pseq":0"#, r#""pseq":01"#),
        (r#""topic":"books1""#, r#""topic":"books5""#),
        (r#""symbol":"BTCUSDT""#, r#""symbol":"NOTLISTED""#),
    ];
    check_venue(
        &mut fast,
        &mut generic,
        Vec::new(),
        v3,
        "99756.6",
        PRICE_EDITS,
        &edits,
        29,
    );
}

#[test]
fn decode_htx_fast_path_matches_generic_path() {
    let registry = fixture_registry();
    let mut fast = HtxDecoder::new(registry.clone(), DecodeLimits::default());
    let mut generic = HtxDecoder::new(registry, DecodeLimits::default());
    generic.set_fast_path(false);
    let base = r#"{"ch":"market.btcusdt.bbo","ts":1630994555540,"tick":{"seqId":137005210233,"ask":52665.02,"askSize":1.502181,"bid":52665.01,"bidSize":0.178567,"quoteTime":1630994555539,"symbol":"btcusdt"}}"#;
    // The fixtures are gzip frames; their inflated JSON goes through the same scanner.
    let frames = wire_frames(Venue::Htx)
        .into_iter()
        .filter_map(|frame| {
            let mut text = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(&frame.bytes[..]),
                &mut text,
            )
            .ok()
            .map(|_| text)
        })
        .collect();
    let prices = &[
        "0",
        "0.0",
        "1e2",
        "1E-7",
        "9.2E-7",
        "1e+3",
        "1e",
        "-1",
        "00.5",
        "1.",
        ".5",
        "1e400",
        "1e1000",
        "\"52665.01\"",
        "52665",
        "18446744073709551615",
        "18446744073709551616",
        "1234567890123456789",
        "12345678901234567890",
        "0.1234567890123456789",
        "0.00000000000000000001",
        "4.9e-324",
        "1.7976931348623157e308",
    ];
    let edits = [
        (r#""quoteTime":1630994555539"#, r#""quoteTime":0"#),
        (
            r#""quoteTime":1630994555539"#,
            r#""quoteTime":"1630994555539""#,
        ),
        (r#""seqId":137005210233"#, r#""seqId":"137005210233""#),
        (r#""seqId":137005210233"#, r#""seqId":18446744073709551616"#),
        ("market.btcusdt.bbo", "market.btc.usdt.bbo"),
        ("market.btcusdt.bbo", "market.btcusdt.bbo.x"),
        ("market.btcusdt.bbo", "market.notlisted.bbo"),
        ("market.btcusdt.bbo", "market..bbo"),
        (r#""askSize":1.502181"#, r#""askSize":0"#),
        (r#""symbol":"btcusdt""#, r#""symbol":"ethusdt""#),
    ];
    check_venue(
        &mut fast,
        &mut generic,
        frames,
        base,
        "52665.01",
        prices,
        &edits,
        31,
    );
}
