//! Golden parses of every fixture (every instrument, exact values) and the envelope errors.

use tickflow_core::venue::Venue;
use tickflow_universe::{Listing, ParseError, parse_instruments, request_path};

use crate::fixture;

/// Parses `venue`'s fixture and compares every listing: (spelling, base, quote, trading).
fn check(venue: Venue, expected: &[(&str, &str, &str, bool)]) {
    let parsed = parse_instruments(venue, &fixture(venue)).expect("the fixture parses");
    assert_eq!(parsed.malformed, 0, "{venue}: nothing malformed");
    let actual: Vec<(&str, &str, &str, bool)> = parsed
        .listings
        .iter()
        .map(|listing| {
            assert_eq!(listing.venue, venue);
            (
                listing.venue_symbol.as_str(),
                listing.base.as_str(),
                listing.quote.as_str(),
                listing.trading,
            )
        })
        .collect();
    assert_eq!(actual, expected, "{venue}");
}

#[test]
fn binance_status_and_spot_permission_decide_trading() {
    check(
        Venue::Binance,
        &[
            ("ETHBTC", "ETH", "BTC", true),
            ("BNBBTC", "BNB", "BTC", true),
            ("BTCUSDC", "BTC", "USDC", true),
            ("USDCUSDT", "USDC", "USDT", true),
            // status BREAK (spot trading still "allowed").
            ("BCHABCUSDT", "BCHABC", "USDT", false),
            // A leveraged token: TRADING, but isSpotTradingAllowed false.
            ("BTCUPUSDT", "BTCUP", "USDT", false),
        ],
    );
}

#[test]
fn bybit_spot_instruments() {
    check(
        Venue::Bybit,
        &[
            ("BTCUSDT", "BTC", "USDT", true),
            ("ETHUSDT", "ETH", "USDT", true),
            ("DOGEUSDT", "DOGE", "USDT", true),
        ],
    );
}

#[test]
fn okx_inst_id_is_the_spelling_and_suspend_is_not_trading() {
    check(
        Venue::Okx,
        &[
            ("BTC-USDT", "BTC", "USDT", true),
            ("BTC-USD", "BTC", "USD", true),
            ("ETH-USD", "ETH", "USD", true),
            ("USDT-USD", "USDT", "USD", true),
            // CONSTRUCTED: state "suspend".
            ("SOL-USD", "SOL", "USD", false),
        ],
    );
}

#[test]
fn mexc_status_is_the_string_one_and_api_trading_flag_is_ignored() {
    check(
        Venue::Mexc,
        &[
            // isSpotTradingAllowed is false on these three: it means API trading only.
            ("BTCUSDT", "BTC", "USDT", true),
            ("SOLUSDT", "SOL", "USDT", true),
            ("XRPUSDT", "XRP", "USDT", true),
            // CONSTRUCTED: status "3" (offline).
            ("TOMO3LUSDT", "TOMO3L", "USDT", false),
        ],
    );
}

#[test]
fn gate_id_is_the_spelling_and_only_tradable_trades() {
    check(
        Venue::Gate,
        &[
            ("ETH_USDT", "ETH", "USDT", true),
            ("BTC_USDT", "BTC", "USDT", true),
            ("BTC_USDC", "BTC", "USDC", true),
            ("ILV_USDT", "ILV", "USDT", false),
            ("SAL_USDT", "SAL", "USDT", false),
        ],
    );
}

#[test]
fn kucoin_symbol_is_kept_across_renames_and_base_comes_from_metadata() {
    check(
        Venue::Kucoin,
        &[
            ("BTC-USDT", "BTC", "USDT", true),
            ("ETH-USDT", "ETH", "USDT", true),
            // Renamed: subscribe as BCHSV-USDT, the asset is BSV.
            ("BCHSV-USDT", "BSV", "USDT", true),
            ("USDT-USDC", "USDT", "USDC", true),
            ("ZEL-BTC", "ZEL", "BTC", false),
        ],
    );
}

#[test]
fn bitget_online_trades_and_halt_does_not() {
    check(
        Venue::Bitget,
        &[
            ("BTCUSDT", "BTC", "USDT", true),
            ("ETHUSDT", "ETH", "USDT", true),
            ("DOGEUSDT", "DOGE", "USDT", true),
            // CONSTRUCTED: status "halt".
            ("TRXUSDT", "TRX", "USDT", false),
        ],
    );
}

#[test]
fn htx_spelling_stays_lower_case_and_concatenation_traps_come_from_metadata() {
    check(
        Venue::Htx,
        &[
            ("btcusdt", "BTC", "USDT", true),
            // A `usd` suffix would wrongly give DOTH / USD.
            ("dothusd", "DOT", "HUSD", true),
            ("usdthusd", "USDT", "HUSD", true),
            ("1inchusdt", "1INCH", "USDT", true),
            ("veneth", "VEN", "ETH", false),
        ],
    );
}

#[test]
fn request_paths_are_the_documented_ones() {
    let paths: Vec<&str> = Venue::ALL
        .iter()
        .map(|&venue| request_path(venue))
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v3/exchangeInfo",
            "/v5/market/instruments-info?category=spot",
            "/api/v5/public/instruments?instType=SPOT",
            "/api/v3/exchangeInfo",
            "/api/v4/spot/currency_pairs",
            "/api/v2/symbols",
            "/api/v2/spot/public/symbols",
            "/v1/common/symbols",
        ]
    );
}

#[test]
fn a_malformed_instrument_is_skipped_and_counted() {
    // Each venue's fixture with its first instrument's base field removed, one status given the
    // wrong type, and an element that is not an object.
    let cases: &[(Venue, &str, &str)] = &[
        (Venue::Binance, "\"baseAsset\": \"ETH\",", ""),
        (Venue::Bybit, "\"baseCoin\": \"BTC\",", ""),
        (Venue::Okx, "\"baseCcy\": \"BTC\",", ""),
        (Venue::Mexc, "\"baseAsset\": \"BTC\",", ""),
        (Venue::Gate, "\"base\": \"ETH\",", ""),
        (
            Venue::Kucoin,
            "\"enableTrading\": true,",
            "\"enableTrading\": \"yes\",",
        ),
        (Venue::Bitget, "\"baseCoin\": \"BTC\",", ""),
        (Venue::Htx, "\"base-currency\": \"btc\",", ""),
    ];
    for &(venue, field, replacement) in cases {
        let text = String::from_utf8(fixture(venue)).expect("UTF-8");
        let whole = parse_instruments(venue, text.as_bytes()).expect("parses");
        assert!(text.contains(field), "{venue}: fixture has {field}");
        let broken = text.replacen(field, replacement, 1);
        let parsed = parse_instruments(venue, broken.as_bytes()).expect("still parses");
        assert_eq!(parsed.malformed, 1, "{venue}");
        assert_eq!(parsed.listings.len(), whole.listings.len() - 1, "{venue}");
        // The others are intact.
        assert_eq!(
            parsed.listings[..],
            whole.listings[whole.listings.len() - parsed.listings.len()..]
        );
    }
    let mixed = br#"[1, {"id": "A_USDT", "base": "A", "quote": "USDT", "trade_status": "tradable"}, {"id": "", "base": "B", "quote": "USDT", "trade_status": "tradable"}]"#;
    let parsed = parse_instruments(Venue::Gate, mixed).expect("parses");
    assert_eq!(parsed.malformed, 2, "a number and an empty spelling");
    assert_eq!(
        parsed.listings,
        [Listing {
            venue: Venue::Gate,
            venue_symbol: "A_USDT".into(),
            base: "A".into(),
            quote: "USDT".into(),
            trading: true
        }]
    );
}

#[test]
fn mexc_status_as_a_number_or_the_old_enabled_is_trading() {
    let body = br#"{"symbols": [
        {"symbol": "AUSDT", "status": 1, "baseAsset": "A", "quoteAsset": "USDT"},
        {"symbol": "BUSDT", "status": "ENABLED", "baseAsset": "B", "quoteAsset": "USDT"},
        {"symbol": "CUSDT", "status": "2", "baseAsset": "C", "quoteAsset": "USDT"}
    ]}"#;
    let parsed = parse_instruments(Venue::Mexc, body).expect("parses");
    let trading: Vec<bool> = parsed.listings.iter().map(|l| l.trading).collect();
    assert_eq!(trading, [true, true, false]);
}

fn venue_error(venue: Venue, body: &str) -> (String, String) {
    match parse_instruments(venue, body.as_bytes()) {
        Err(ParseError::VenueError {
            venue: error_venue,
            code,
            message,
        }) => {
            assert_eq!(error_venue, venue);
            (code, message)
        }
        other => panic!("{venue}: expected a venue error, got {other:?}"),
    }
}

#[test]
fn error_envelopes_are_errors_with_the_venues_code() {
    assert_eq!(
        venue_error(Venue::Binance, r#"{"code":-1121,"msg":"Invalid symbol."}"#),
        ("-1121".into(), "Invalid symbol.".into())
    );
    assert_eq!(
        venue_error(Venue::Mexc, r#"{"code":-1121,"msg":"Invalid symbol."}"#).0,
        "-1121"
    );
    assert_eq!(
        venue_error(
            Venue::Bybit,
            r#"{"retCode":10001,"retMsg":"params error","result":{},"retExtInfo":{},"time":1}"#
        ),
        ("10001".into(), "params error".into())
    );
    assert_eq!(
        venue_error(
            Venue::Okx,
            r#"{"code":"51001","msg":"Instrument ID does not exist","data":[]}"#
        ),
        ("51001".into(), "Instrument ID does not exist".into())
    );
    assert_eq!(
        venue_error(
            Venue::Kucoin,
            r#"{"code":"400100","msg":"Parameter Error"}"#
        )
        .0,
        "400100"
    );
    assert_eq!(
        venue_error(
            Venue::Bitget,
            r#"{"code":"40034","msg":"Parameter does not exist","requestTime":1,"data":null}"#
        )
        .0,
        "40034"
    );
    assert_eq!(
        venue_error(
            Venue::Htx,
            r#"{"status":"error","err-code":"invalid-parameter","err-msg":"invalid symbol","data":null}"#
        ),
        ("invalid-parameter".into(), "invalid symbol".into())
    );
    assert_eq!(
        venue_error(
            Venue::Gate,
            r#"{"label":"INVALID_PARAM_VALUE","message":"invalid currency_pair"}"#
        ),
        ("INVALID_PARAM_VALUE".into(), "invalid currency_pair".into())
    );
}

#[test]
fn not_json_and_truncated_bodies_are_errors() {
    for venue in Venue::ALL {
        for body in [
            b"<html><body>502 Bad Gateway</body></html>".to_vec(),
            Vec::new(),
        ] {
            let result = parse_instruments(venue, &body);
            assert!(
                matches!(result, Err(ParseError::NotJson { .. })),
                "{venue}: {result:?}"
            );
        }
        let whole = fixture(venue);
        let truncated = &whole[..whole.len() / 2];
        let result = parse_instruments(venue, truncated);
        assert!(
            matches!(result, Err(ParseError::NotJson { .. })),
            "{venue} truncated: {result:?}"
        );
    }
}

#[test]
fn wrong_shapes_are_envelope_errors() {
    let cases: &[(Venue, &str)] = &[
        (Venue::Binance, r#"{"timezone":"UTC"}"#),
        (Venue::Binance, r#"[]"#),
        (Venue::Mexc, r#"{"symbols": {}}"#),
        (Venue::Bybit, r#"{"retCode":0,"retMsg":"OK","result":{}}"#),
        (Venue::Okx, r#"{"code":"0","msg":""}"#),
        (Venue::Okx, r#"[]"#),
        (Venue::Kucoin, r#"{"data":[]}"#),
        (Venue::Bitget, r#"{"code":"00000","data":{}}"#),
        (Venue::Gate, r#"{}"#),
        (Venue::Gate, r#""text""#),
        (Venue::Htx, r#"{"status":"ok"}"#),
    ];
    for (venue, body) in cases {
        let result = parse_instruments(*venue, body.as_bytes());
        assert!(
            matches!(result, Err(ParseError::Envelope { .. })),
            "{venue} {body}: {result:?}"
        );
    }
}
