//! The wire codec's tests: a round trip per kind, refusals, never a panic on any bytes, subjects,
//! partitions, message ids and the JSON form.

use super::*;
use tickflow_sdk::records::{
    FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, GAP_DISCONNECT, OPPORTUNITY_START, SPREAD_FLAG_WARMING,
};

/// A deterministic xorshift64* generator: the same inputs on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

fn quote() -> Quote {
    Quote {
        bid: 64_123.5,
        bid_qty: 0.25,
        ask: 64_124.0,
        ask_qty: 1.5,
        ts_exchange_ns: 1_764_000_000_000_000_000,
        ts_recv_ns: 1_764_000_000_000_500_000,
        seq: 987_654_321,
        symbol_id: SymbolId(42),
        venue_id: VenueId(3),
        flags: FLAG_HAS_TS_EXCHANGE | FLAG_HAS_SEQ,
        reserved: 0,
    }
}

fn trade() -> Trade {
    let mut trade = Trade {
        price: 3_210.75,
        qty: 0.001,
        ts_exchange_ns: -5,
        ts_recv_ns: i64::MAX,
        symbol_id: SymbolId(u32::MAX),
        venue_id: VenueId(7),
        side: 2,
        flags: FLAG_HAS_TS_EXCHANGE,
        ..Trade::default()
    };
    assert!(trade.set_trade_id(b"20f43950-d8dd-5b31-9112-a178eb6023af"));
    trade
}

fn spread_sample() -> SpreadSample {
    SpreadSample {
        bucket_start_ns: 1_764_000_000_000_000_000,
        bucket_duration_ns: 1_000_000_000,
        last_bp: 1.5,
        min_bp: -3.25,
        max_bp: 9.0,
        mean_bp: 2.0,
        window_mean_bp: 1.75,
        window_std_bp: 0.5,
        band_lower_bp: 0.75,
        band_upper_bp: 2.75,
        samples: 17,
        symbol_id: SymbolId(9),
        buy_venue_id: VenueId(1),
        sell_venue_id: VenueId(4),
        flags: SPREAD_FLAG_WARMING,
    }
}

fn opportunity() -> OpportunityEvent {
    OpportunityEvent {
        ts_ns: 1_764_000_000_123_000_000,
        started_ns: 1_764_000_000_000_000_000,
        threshold_bp: 10.0,
        spread_bp: 12.5,
        peak_bp: 14.0,
        symbol_id: SymbolId(9),
        buy_venue_id: VenueId(1),
        sell_venue_id: VenueId(4),
        kind: OPPORTUNITY_START,
        flags: 1,
        reserved: [0; 6],
    }
}

fn gap() -> GapEvent {
    GapEvent {
        ts_ns: 1_764_000_000_000_000_001,
        connection_id: 12,
        symbol_id: SymbolId(42),
        venue_id: VenueId(3),
        kind: GAP_DISCONNECT,
        reserved: [0; 5],
    }
}

fn venue_status() -> VenueStatus {
    VenueStatus {
        ts_ns: 1_764_000_001_000_000_000,
        last_data_ns: 0,
        reconnects: 3,
        connections_up: 2,
        connections_planned: 4,
        venue_id: VenueId(5),
        reserved: [0; 6],
    }
}

/// Every kind with names as a collector would send them.
fn samples() -> Vec<(WireBody, WireNames<'static>)> {
    let single = WireNames {
        venue: "binance",
        sell_venue: "",
        symbol: "BTC-USDT",
    };
    let pair = WireNames {
        venue: "okx",
        sell_venue: "bybit",
        symbol: "ETH-USDT",
    };
    vec![
        (WireBody::Quote(quote()), single),
        (WireBody::Trade(trade()), single),
        (WireBody::SpreadSample(spread_sample()), pair),
        (WireBody::Opportunity(opportunity()), pair),
        (WireBody::Gap(gap()), single),
        (
            WireBody::VenueStatus(venue_status()),
            WireNames {
                venue: "kucoin",
                ..WireNames::default()
            },
        ),
    ]
}

fn encoded(body: &WireBody, names: &WireNames<'_>, seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode(body, names, "collector-eu-1", seq, &mut out).expect("sample encodes");
    out
}

#[test]
fn every_kind_round_trips() {
    for (seq, (body, names)) in samples().into_iter().enumerate() {
        let payload = encoded(&body, &names, seq as u64 + 1_000);
        assert!(payload.len() <= PAYLOAD_MAX_BYTES);
        let record = decode(&payload).expect("own payload decodes");
        assert_eq!(record.version, WIRE_VERSION);
        assert_eq!(record.flags, 0);
        assert_eq!(record.seq, seq as u64 + 1_000);
        assert_eq!(record.collector, "collector-eu-1");
        assert_eq!(record.names, names, "{:?}", body.kind());
        assert_eq!(record.body, body);
        assert_eq!(record.kind(), body.kind());
        assert_eq!(
            peek_header(&payload).expect("header"),
            (body.kind(), seq as u64 + 1_000)
        );
    }
}

#[test]
fn bodies_have_the_documented_sizes() {
    // Header 16 + collector (1 + 14) + names, then the body of the table in the module docs.
    let fixed = HEADER_BYTES + 1 + "collector-eu-1".len();
    let expected_body = [
        (WireKind::Quote, 63),
        (WireKind::Trade, 41 + 16),
        (WireKind::SpreadSample, 96),
        (WireKind::Opportunity, 50),
        (WireKind::Gap, 19),
        (WireKind::VenueStatus, 34),
    ];
    for (body, names) in samples() {
        let payload = encoded(&body, &names, 1);
        let names_bytes = 1
            + names.venue.len()
            + if body.kind().is_pair() {
                1 + names.sell_venue.len()
            } else {
                0
            }
            + if body.kind() == WireKind::VenueStatus {
                0
            } else {
                1 + names.symbol.len()
            };
        let body_bytes = expected_body
            .iter()
            .find(|(kind, _)| *kind == body.kind())
            .map(|(_, bytes)| *bytes)
            .expect("every kind listed");
        assert_eq!(
            payload.len(),
            fixed + names_bytes + body_bytes,
            "{:?}",
            body.kind()
        );
    }
}

#[test]
fn the_header_is_laid_out_as_documented() {
    let payload = encoded(
        &WireBody::Quote(quote()),
        &samples()[0].1,
        0x0102_0304_0506_0708,
    );
    assert_eq!(&payload[0..4], b"TFW1");
    assert_eq!(&payload[4..6], &[1, 0]);
    assert_eq!(payload[6], 0);
    assert_eq!(payload[7], 0);
    assert_eq!(&payload[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(payload[16] as usize, "collector-eu-1".len());
    // The quote's bid is the first body field, little-endian.
    let body_start = payload.len() - 63;
    assert_eq!(
        &payload[body_start..body_start + 8],
        &64_123.5f64.to_bits().to_le_bytes()
    );
}

#[test]
fn random_records_round_trip() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2_000 {
        let float = |random: &mut Random| f64::from_bits(random.next());
        let body = match random.below(6) {
            0 => WireBody::Quote(Quote {
                bid: float(&mut random),
                bid_qty: float(&mut random),
                ask: float(&mut random),
                ask_qty: float(&mut random),
                ts_exchange_ns: random.next() as i64,
                ts_recv_ns: random.next() as i64,
                seq: random.next(),
                symbol_id: SymbolId(random.next() as u32),
                venue_id: VenueId(random.next() as u16),
                flags: random.next() as u8,
                reserved: 0,
            }),
            1 => {
                let mut trade = Trade {
                    price: float(&mut random),
                    side: random.next() as u8,
                    trade_id_len: random.below(TRADE_ID_CAPACITY_BYTES as u64 + 1) as u8,
                    ..Trade::default()
                };
                for byte in &mut trade.trade_id[..usize::from(trade.trade_id_len)] {
                    *byte = random.next() as u8;
                }
                WireBody::Trade(trade)
            }
            2 => WireBody::SpreadSample(SpreadSample {
                mean_bp: float(&mut random),
                samples: random.next() as u32,
                flags: random.next() as u32,
                ..spread_sample()
            }),
            3 => WireBody::Opportunity(OpportunityEvent {
                peak_bp: float(&mut random),
                kind: random.next() as u8,
                ..opportunity()
            }),
            4 => WireBody::Gap(GapEvent {
                connection_id: random.next() as u32,
                kind: random.next() as u8,
                ..gap()
            }),
            _ => WireBody::VenueStatus(VenueStatus {
                reconnects: random.next(),
                last_data_ns: random.next() as i64,
                ..venue_status()
            }),
        };
        let seq = random.next();
        let mut payload = Vec::new();
        encode(&body, &samples()[3].1, "c", seq, &mut payload).expect("encodes");
        let record = decode(&payload).expect("decodes");
        // Compare bit patterns: NaN != NaN, but the bits must travel unchanged.
        let mut again = Vec::new();
        encode(
            &record.body,
            &record.names,
            record.collector,
            record.seq,
            &mut again,
        )
        .expect("re-encodes");
        assert_eq!(payload, again);
    }
}

#[test]
fn refusals_are_typed() {
    let payload = encoded(&WireBody::Gap(gap()), &samples()[4].1, 5);
    let mut bad_magic = payload.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        decode(&bad_magic),
        Err(WireError::BadMagic { .. })
    ));
    let mut newer = payload.clone();
    newer[4] = 2;
    assert_eq!(
        decode(&newer),
        Err(WireError::UnsupportedVersion { found: 2 })
    );
    let mut zero_version = payload.clone();
    zero_version[4] = 0;
    assert_eq!(
        decode(&zero_version),
        Err(WireError::UnsupportedVersion { found: 0 })
    );
    let mut telemetry = payload.clone();
    telemetry[6] = 5;
    assert_eq!(decode(&telemetry), Err(WireError::UnknownKind { found: 5 }));
    let mut trailing = payload.clone();
    trailing.push(0);
    assert_eq!(
        decode(&trailing),
        Err(WireError::TrailingBytes { count: 1 })
    );
    for len in 0..payload.len() {
        assert!(
            matches!(decode(&payload[..len]), Err(WireError::Truncated { .. })),
            "cut at {len}"
        );
    }
    let mut not_utf8 = payload.clone();
    not_utf8[17] = 0xff;
    assert_eq!(
        decode(&not_utf8),
        Err(WireError::NotUtf8 { field: "collector" })
    );
}

#[test]
fn over_long_names_are_refused_and_leave_the_buffer_alone() {
    let long = "x".repeat(NAME_MAX_BYTES + 1);
    let mut out = vec![1, 2, 3];
    let names = WireNames {
        venue: "binance",
        sell_venue: "",
        symbol: &long,
    };
    assert_eq!(
        encode(&WireBody::Quote(quote()), &names, "c", 1, &mut out),
        Err(WireError::TooLong {
            field: "symbol",
            len: NAME_MAX_BYTES + 1,
            max: NAME_MAX_BYTES
        })
    );
    assert_eq!(out, vec![1, 2, 3]);
    let longest = "y".repeat(NAME_MAX_BYTES);
    let names = WireNames {
        venue: &longest,
        sell_venue: &longest,
        symbol: &longest,
    };
    encode(
        &WireBody::SpreadSample(spread_sample()),
        &names,
        &longest,
        1,
        &mut out,
    )
    .expect("longest names fit");
    assert_eq!(out.len() - 3, PAYLOAD_MAX_BYTES);
}

#[test]
fn decode_never_panics_on_any_bytes() {
    let mut random = Random(0x0123_4567_89ab_cdef);
    let valid: Vec<Vec<u8>> = samples()
        .iter()
        .map(|(body, names)| encoded(body, names, 77))
        .collect();
    let mut accepted = 0usize;
    for round in 0..200_000u32 {
        let input: Vec<u8> = if round % 2 == 0 {
            // Pure noise, sometimes behind a valid header so the body parsers are reached.
            let len = random.below(160) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| random.next() as u8).collect();
            if round % 4 == 0 && bytes.len() >= 8 {
                bytes[..4].copy_from_slice(&WIRE_MAGIC);
                bytes[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
                bytes[6] = [0u8, 1, 2, 3, 4, 6][random.below(6) as usize];
            }
            bytes
        } else {
            // A valid payload with a few bytes changed, cut or extended.
            let mut bytes = valid[random.below(valid.len() as u64) as usize].clone();
            for _ in 0..=random.below(4) {
                let index = random.below(bytes.len() as u64) as usize;
                bytes[index] = random.next() as u8;
            }
            match random.below(3) {
                0 => bytes.truncate(random.below(bytes.len() as u64 + 1) as usize),
                1 => bytes.extend((0..random.below(8)).map(|_| random.next() as u8)),
                _ => {}
            }
            bytes
        };
        if let Ok(record) = decode(&input) {
            accepted += 1;
            // Whatever decodes re-encodes to the same bytes, but for the flags byte.
            let mut again = Vec::new();
            encode(
                &record.body,
                &record.names,
                record.collector,
                record.seq,
                &mut again,
            )
            .expect("decoded names fit");
            assert_eq!(again[..7], input[..7]);
            assert_eq!(again[8..], input[8..]);
        }
    }
    // The mutations leave some payloads valid (a changed float): the test reached the bodies.
    assert!(accepted > 0);
}

#[test]
fn subjects_follow_the_scheme() {
    assert_eq!(
        subject("tickflow", WireKind::Quote, 3, "binance", "BTC-USDT"),
        "tickflow.quote.3.binance.BTC-USDT"
    );
    assert_eq!(
        subject("acme.tickflow", WireKind::Trade, 0, "b in.ance", "A*B>C\tD"),
        "acme.tickflow.trade.0.b_in_ance.A_B_C_D"
    );
    assert_eq!(
        subject("tickflow", WireKind::Gap, 1, "", ""),
        "tickflow.gap.1._._"
    );
    assert_eq!(pair_token("okx", "by.bit"), "okx~by_bit");
    let (body, names) = samples()[2];
    assert_eq!(
        record_subject("tickflow", &body, &names, 16),
        format!(
            "tickflow.spread_sample.{}.okx~bybit.ETH-USDT",
            partition_of("ETH-USDT", 16)
        )
    );
    let (body, names) = samples()[5];
    assert_eq!(
        record_subject("tickflow", &body, &names, 16),
        "tickflow.venue_status.0.kucoin._"
    );
    assert_eq!(
        heartbeat_subject("tickflow", "eu.1", "okx"),
        "tickflow.heartbeat.eu_1.okx"
    );
    for kind in WireKind::ALL {
        assert_eq!(WireKind::from_name(kind.name()), Some(kind));
        assert_eq!(WireKind::from_u8(kind as u8), Some(kind));
    }
    assert_eq!(WireKind::from_u8(5), None);
}

#[test]
fn partitions_are_fnv1a_and_stable() {
    // FNV-1a 32 reference values.
    assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
    assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    assert_eq!(partition_of("BTC-USDT", 1), 0);
    assert_eq!(partition_of("BTC-USDT", 0), 0);
    assert_eq!(partition_of("BTC-USDT", 16), fnv1a_32(b"BTC-USDT") % 16);
    let mut seen = [false; 4];
    for symbol in [
        "BTC-USDT",
        "ETH-USDT",
        "SOL-USDT",
        "XRP-USDT",
        "DOGE-USDT",
        "ADA-USDT",
    ] {
        let partition = partition_of(symbol, 4);
        assert!(partition < 4);
        seen[partition as usize] = true;
    }
    assert!(
        seen.iter().filter(|seen| **seen).count() > 1,
        "spreads symbols"
    );
}

#[test]
fn message_ids_name_collector_and_seq() {
    assert_eq!(message_id("eu-1", 42), "eu-1-42");
    let mut reused = String::from("old");
    push_message_id(&mut reused, "c", u64::MAX);
    assert_eq!(reused, format!("c-{}", u64::MAX));
}

#[test]
fn json_carries_the_names_and_fields() {
    for (body, names) in samples() {
        let mut out = Vec::new();
        encode_json(&body, &names, "c1", 9, &mut out).expect("json");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(value["v"], 1);
        assert_eq!(value["kind"], body.kind().name());
        assert_eq!(value["collector"], "c1");
        assert_eq!(value["seq"], 9);
        match body {
            WireBody::Quote(quote) => {
                assert_eq!(value["venue"], "binance");
                assert_eq!(value["symbol"], "BTC-USDT");
                assert_eq!(value["bid"], quote.bid);
                assert_eq!(value["venue_seq"], quote.seq);
            }
            WireBody::Trade(_) => {
                assert_eq!(value["trade_id"], "20f43950-d8dd-5b31-9112-a178eb6023af");
                assert_eq!(value["side"], "sell");
            }
            WireBody::SpreadSample(sample) => {
                assert_eq!(value["buy_venue"], "okx");
                assert_eq!(value["sell_venue"], "bybit");
                assert!(value.get("venue").is_none());
                assert_eq!(value["band_upper_bp"], sample.band_upper_bp);
            }
            WireBody::Opportunity(_) => assert_eq!(value["event"], "start"),
            WireBody::Gap(gap) => assert_eq!(value["gap_kind"], gap.kind),
            WireBody::VenueStatus(status) => {
                assert_eq!(value["venue"], "kucoin");
                assert!(value.get("symbol").is_none());
                assert_eq!(value["connections_planned"], status.connections_planned);
            }
        }
    }
    let mut out = Vec::new();
    let nan_quote = Quote {
        bid: f64::NAN,
        ..quote()
    };
    encode_json(
        &WireBody::Quote(nan_quote),
        &samples()[0].1,
        "c1",
        1,
        &mut out,
    )
    .expect("json");
    let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    assert!(value["bid"].is_null());
}
