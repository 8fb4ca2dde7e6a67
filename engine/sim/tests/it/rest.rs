//! The instrument-list endpoints: the fixtures' shape, the configured and tricky instruments with
//! each venue's trading status, and the fault controls.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::client::{self, Entry, http_get, instrument_list, listed_entries};
use tickflow_core::venue::Venue;
use tickflow_sim::{ListingState, RestFault, SimConfig, SimVenues, VenueControl, instruments_path};

fn fixture(venue: Venue) -> Value {
    let text = match venue {
        Venue::Binance => include_str!("../fixtures/rest/binance_instruments.json"),
        Venue::Bybit => include_str!("../fixtures/rest/bybit_instruments.json"),
        Venue::Okx => include_str!("../fixtures/rest/okx_instruments.json"),
        Venue::Mexc => include_str!("../fixtures/rest/mexc_instruments.json"),
        Venue::Gate => include_str!("../fixtures/rest/gate_instruments.json"),
        Venue::Kucoin => include_str!("../fixtures/rest/kucoin_instruments.json"),
        Venue::Bitget => include_str!("../fixtures/rest/bitget_instruments.json"),
        Venue::Htx => include_str!("../fixtures/rest/htx_instruments.json"),
    };
    serde_json::from_str(text).expect("fixtures are JSON")
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Same keys and JSON kinds as the fixture's envelope; every instrument's keys are keys some
/// fixture instrument has, with the kind they have there (a float where the fixture has an
/// integer is allowed only for HTX's amounts, which the real response writes both ways).
fn assert_fixture_shape(venue: Venue, actual: &Value) {
    let expected = fixture(venue);
    match (&expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            let expected_keys: BTreeSet<&String> = expected.keys().collect();
            let actual_keys: BTreeSet<&String> = actual.keys().collect();
            assert_eq!(actual_keys, expected_keys, "{venue}: envelope keys");
            for (key, value) in expected {
                assert_eq!(kind(&actual[key]), kind(value), "{venue}: envelope {key}");
            }
        }
        (Value::Array(_), Value::Array(_)) => {}
        _ => panic!(
            "{venue}: envelope is {} not {}",
            kind(actual),
            kind(&expected)
        ),
    }
    let mut fixture_kinds: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for item in client::items(venue, &expected) {
        for (key, value) in item.as_object().expect("instruments are objects") {
            fixture_kinds
                .entry(key.clone())
                .or_default()
                .insert(kind(value));
        }
    }
    let items = client::items(venue, actual);
    assert!(!items.is_empty(), "{venue}: lists instruments");
    for item in items {
        for (key, value) in item.as_object().expect("instruments are objects") {
            let kinds = fixture_kinds
                .get(key)
                .unwrap_or_else(|| panic!("{venue}: {key} is not a field of the real response"));
            let mut actual_kind = kind(value);
            if actual_kind == "integer" && kinds.contains("float") {
                actual_kind = "float";
            }
            assert!(
                kinds.contains(actual_kind),
                "{venue}: {key} is {actual_kind}, the real response has {kinds:?}"
            );
        }
    }
}

fn find<'a>(entries: &'a [Entry], symbol: &str) -> Option<&'a Entry> {
    entries.iter().find(|entry| entry.symbol == symbol)
}

/// (venue, REST symbol, base, quote, trading) of the tricky set, as the lead's tests may use it.
const TRICKY_EXPECTED: &[(Venue, &str, &str, &str, bool)] = &[
    (Venue::Binance, "DOTUSD", "DOT", "USD", true),
    (Venue::Binance, "BNBUSD", "BNB", "USD", true),
    (Venue::Binance, "ARBUSD", "ARB", "USD", true),
    (Venue::Binance, "BTCUSDC", "BTC", "USDC", true),
    (Venue::Binance, "ETHFDUSD", "ETH", "FDUSD", true),
    (Venue::Binance, "ETHBTC", "ETH", "BTC", true),
    (Venue::Binance, "USDCUSDT", "USDC", "USDT", true),
    (Venue::Binance, "PEPEUSDT", "PEPE", "USDT", true),
    (Venue::Binance, "TRXUSDT", "TRX", "USDT", true),
    (Venue::Binance, "LUNAUSDT", "LUNA", "USDT", false),
    (Venue::Bybit, "1000PEPEUSDT", "1000PEPE", "USDT", true),
    (Venue::Bybit, "ARBUSD", "ARB", "USD", true),
    (Venue::Bybit, "LUNAUSDT", "LUNA", "USDT", true),
    (Venue::Okx, "DOT-USD", "DOT", "USD", true),
    (Venue::Okx, "BNB-USD", "BNB", "USD", true),
    (Venue::Okx, "BSV-USDT", "BSV", "USDT", true),
    (Venue::Okx, "LUNA-USDT", "LUNA", "USDT", false),
    (Venue::Mexc, "1000PEPEUSDT", "1000PEPE", "USDT", true),
    (Venue::Mexc, "BNBUSD", "BNB", "USD", true),
    (Venue::Mexc, "LUNAUSDT", "LUNA", "USDT", false),
    (Venue::Gate, "GT_USDT", "GT", "USDT", true),
    (Venue::Gate, "ETH_FDUSD", "ETH", "FDUSD", true),
    (Venue::Gate, "LUNA_USDT", "LUNA", "USDT", false),
    (Venue::Kucoin, "BCHSV-USDT", "BSV", "USDT", true),
    (Venue::Kucoin, "ARB-USD", "ARB", "USD", true),
    (Venue::Kucoin, "LUNA-USDT", "LUNA", "USDT", false),
    (Venue::Bitget, "DOTUSD", "DOT", "USD", true),
    (Venue::Bitget, "TRXUSDT", "TRX", "USDT", false),
    (Venue::Bitget, "LUNAUSDT", "LUNA", "USDT", false),
    (Venue::Htx, "pepeusdt", "pepe", "usdt", true),
    (Venue::Htx, "ethbtc", "eth", "btc", true),
    (Venue::Htx, "bsvusdt", "bsv", "usdt", true),
    (Venue::Htx, "lunausdt", "luna", "usdt", false),
];

#[tokio::test]
async fn every_venue_serves_its_instrument_list_in_the_real_format() {
    let sim = SimVenues::start(SimConfig::default())
        .await
        .expect("simulator starts");
    for venue in Venue::ALL {
        let body = instrument_list(&sim, venue).await;
        assert_fixture_shape(venue, &body);
        let entries = client::entries(venue, &body);
        // The configured symbols, trading, in the spelling the venue subscribes with.
        for symbol in &sim.config().symbols {
            let (base, quote) = symbol.split_once('-').expect("canonical names");
            let mut spelling = String::new();
            tickflow_feed::protocol::write_venue_symbol(venue, base, quote, &mut spelling);
            if venue == Venue::Binance {
                spelling.make_ascii_uppercase();
            }
            let entry = find(&entries, &spelling)
                .unwrap_or_else(|| panic!("{venue} lists {spelling}: {entries:?}"));
            assert!(entry.trading, "{venue} {spelling} trades");
        }
        // What REST says is what `listings` says (Bybit leaves out what does not trade).
        let listings: Vec<Entry> = sim
            .listings(venue)
            .into_iter()
            .filter(|listing| venue != Venue::Bybit || listing.state == ListingState::Trading)
            .map(|listing| Entry {
                symbol: listing.rest_symbol,
                base: listing.base,
                quote: listing.quote,
                trading: listing.state == ListingState::Trading,
            })
            .collect();
        assert_eq!(entries, listings, "{venue}");
        let mut unique: Vec<&str> = entries.iter().map(|entry| entry.symbol.as_str()).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), entries.len(), "{venue}: no symbol twice");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn tricky_instruments_are_listed_with_each_venues_status() {
    let sim = SimVenues::start(SimConfig::default())
        .await
        .expect("simulator starts");
    let mut lists = BTreeMap::new();
    for venue in Venue::ALL {
        lists.insert(venue.index(), listed_entries(&sim, venue).await);
    }
    for (venue, symbol, base, quote, trading) in TRICKY_EXPECTED {
        let entries = &lists[&venue.index()];
        let entry = find(entries, symbol).unwrap_or_else(|| panic!("{venue} lists {symbol}"));
        assert_eq!(
            (entry.base.as_str(), entry.quote.as_str(), entry.trading),
            (*base, *quote, *trading),
            "{venue} {symbol}"
        );
    }
    // 1000PEPE on Bybit and MEXC only, where PEPE is not listed; GT on Gate only.
    for venue in Venue::ALL {
        let entries = &lists[&venue.index()];
        let has = |base: &str| {
            entries
                .iter()
                .any(|entry| entry.base.eq_ignore_ascii_case(base))
        };
        let numeric = matches!(venue, Venue::Bybit | Venue::Mexc);
        assert_eq!(has("1000PEPE"), numeric, "{venue} 1000PEPE");
        assert_eq!(has("PEPE"), !numeric, "{venue} PEPE");
        assert_eq!(has("GT"), venue == Venue::Gate, "{venue} GT");
    }
    // The raw not-trading values, per venue.
    let raw = |venue: Venue, body: &Value, symbol_key: &str, symbol: &str, key: &str| {
        client::items(venue, body)
            .into_iter()
            .find(|item| item[symbol_key] == symbol)
            .map(|item| item[key].clone())
            .unwrap_or_else(|| panic!("{venue} lists {symbol}"))
    };
    let cases: [(Venue, &str, &str, &str, Value); 7] = [
        (
            Venue::Binance,
            "symbol",
            "LUNAUSDT",
            "status",
            "BREAK".into(),
        ),
        (Venue::Okx, "instId", "LUNA-USDT", "state", "suspend".into()),
        (Venue::Mexc, "symbol", "LUNAUSDT", "status", "3".into()),
        (
            Venue::Gate,
            "id",
            "LUNA_USDT",
            "trade_status",
            "untradable".into(),
        ),
        (
            Venue::Kucoin,
            "symbol",
            "LUNA-USDT",
            "enableTrading",
            false.into(),
        ),
        (Venue::Bitget, "symbol", "TRXUSDT", "status", "halt".into()),
        (Venue::Htx, "symbol", "lunausdt", "state", "offline".into()),
    ];
    for (venue, symbol_key, symbol, key, expected) in cases {
        let body = instrument_list(&sim, venue).await;
        assert_eq!(
            raw(venue, &body, symbol_key, symbol, key),
            expected,
            "{venue} {symbol}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn without_tricky_instruments_only_the_configured_symbols_are_listed() {
    let sim = SimVenues::start(SimConfig {
        tricky_instruments: false,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    for venue in Venue::ALL {
        let entries = listed_entries(&sim, venue).await;
        assert_eq!(entries.len(), sim.config().symbols.len(), "{venue}");
        assert!(entries.iter().all(|entry| entry.trading), "{venue}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn rest_faults_answer_429_then_500_then_nothing_and_are_counted() {
    let sim = SimVenues::start(SimConfig {
        venues: vec![Venue::Okx, Venue::Binance],
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let control = sim.control(Venue::Okx);
    let url = sim.rest_url(Venue::Okx);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let path = instruments_path(Venue::Okx);

    control.fail_next_rest_requests(2, RestFault::TooManyRequests { retry_after_s: 7 });
    for _ in 0..2 {
        let response = http_get(&url, path).await;
        assert_eq!(response.status, 429);
        assert_eq!(response.header("retry-after"), Some("7"));
        let body: Value = serde_json::from_str(&response.body).expect("a JSON body");
        assert_eq!(body["code"], "50011");
    }
    control.fail_next_rest_requests(1, RestFault::ServerError);
    assert_eq!(http_get(&url, path).await.status, 500);

    control.fail_next_rest_requests(1, RestFault::Hang);
    let hung = tokio::time::timeout(std::time::Duration::from_millis(300), http_get(&url, path));
    assert!(hung.await.is_err(), "a hanging request gets no answer");

    let response = http_get(&url, path).await;
    assert_eq!(response.status, 200, "faults run out: {}", response.body);
    assert_eq!(VenueControl::get(&control.rest_requests), 5);
    assert_eq!(VenueControl::get(&control.rest_faults), 4);
    // Another venue is not affected.
    assert_eq!(
        VenueControl::get(&sim.control(Venue::Binance).rest_requests),
        0
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_parameters_get_the_venues_error_and_binance_reports_its_weight() {
    let sim = SimVenues::start(SimConfig::default())
        .await
        .expect("simulator starts");
    let okx = http_get(&sim.rest_url(Venue::Okx), "/api/v5/public/instruments").await;
    assert_eq!(okx.status, 400);
    assert!(okx.body.contains("50014"), "{}", okx.body);
    let bybit = http_get(
        &sim.rest_url(Venue::Bybit),
        "/v5/market/instruments-info?category=linear",
    )
    .await;
    assert!(bybit.body.contains("\"retCode\":10001"), "{}", bybit.body);
    let binance = &sim.rest_url(Venue::Binance);
    let first = http_get(binance, "/api/v3/exchangeInfo").await;
    let second = http_get(binance, "/api/v3/exchangeInfo?symbolStatus=TRADING").await;
    assert_eq!(first.header("x-mbx-used-weight-1m"), Some("20"));
    assert_eq!(second.header("x-mbx-used-weight-1m"), Some("40"));
    let trading: Value = serde_json::from_str(&second.body).expect("JSON");
    let entries = client::entries(Venue::Binance, &trading);
    assert!(entries.iter().all(|entry| entry.trading));
    assert!(find(&entries, "LUNAUSDT").is_none(), "symbolStatus filters");
    // Other paths are not the instrument list.
    assert_eq!(http_get(binance, "/api/v3/ticker").await.status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_instrument_list_is_served_over_tls_by_a_tls_simulator() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("a self-signed certificate");
    let certificate = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .expect("the key matches");
    let sim = SimVenues::start_tls(
        SimConfig {
            venues: vec![Venue::Kucoin],
            ..SimConfig::default()
        },
        Arc::new(server),
    )
    .await
    .expect("simulator starts");
    let url = sim.rest_url(Venue::Kucoin);
    let host = url.strip_prefix("https://").expect("an https URL");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).expect("a valid root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(host)
        .await
        .expect("the simulator accepts");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        instruments_path(Venue::Kucoin)
    );
    tls.write_all(request.as_bytes())
        .await
        .expect("request written");
    let mut raw = Vec::new();
    // A peer that closes without close_notify ends the read with an error after the data.
    let _ = tls.read_to_end(&mut raw).await;
    let raw = String::from_utf8(raw).expect("UTF-8");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body: Value =
        serde_json::from_str(raw.split_once("\r\n\r\n").expect("headers").1).expect("JSON");
    let entries = client::entries(Venue::Kucoin, &body);
    assert!(find(&entries, "BTC-USDT").is_some_and(|entry| entry.trading));
    sim.shutdown().await;
}
