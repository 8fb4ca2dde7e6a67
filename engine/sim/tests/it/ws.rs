//! The WebSocket side of listings: every listed instrument streams in the venue's spelling, a
//! subscription to an unknown or delisted symbol gets the venue's error reply, and data stops
//! once a symbol is delisted.

use serde_json::Value;

use crate::client::{Message, data_mentioning, next_message, subscribe, ws_connect};
use tickflow_core::venue::Venue;
use tickflow_feed::config::Channel;
use tickflow_sim::{ListingState, SimConfig, SimVenues};

fn fast_config() -> SimConfig {
    SimConfig {
        bbo_per_s_per_symbol: 200.0,
        trades_per_s_per_symbol: 0.0,
        ..SimConfig::default()
    }
}

/// The ws spelling of `canonical` on `venue`, from the simulator's own listings.
fn ws_symbol(sim: &SimVenues, venue: Venue, canonical: &str) -> String {
    sim.listings(venue)
        .into_iter()
        .find(|listing| listing.canonical == canonical)
        .unwrap_or_else(|| panic!("{venue} lists {canonical}"))
        .ws_symbol
}

async fn first_bbo(sim: &SimVenues, venue: Venue, canonical: &str, needle: &str) -> Message {
    let symbol = ws_symbol(sim, venue, canonical);
    let url = sim.url(venue).expect("venue simulated");
    let mut connection = ws_connect(&url).await;
    subscribe(&mut connection, venue, &symbol, Channel::Bbo).await;
    data_mentioning(&mut connection, venue, needle).await
}

#[tokio::test]
async fn tricky_and_churned_listings_stream_in_the_venues_spelling() {
    let sim = SimVenues::start(fast_config())
        .await
        .expect("simulator starts");
    let change = sim.churn_listings_now();
    let cases: &[(Venue, &str, &str)] = &[
        (Venue::Binance, "DOT-USD", "\"s\":\"DOTUSD\""),
        (Venue::Binance, "BNB-USD", "\"s\":\"BNBUSD\""),
        (Venue::Bybit, "1000PEPE-USDT", "orderbook.1.1000PEPEUSDT"),
        (Venue::Bybit, "ARB-USD", "orderbook.1.ARBUSD"),
        (Venue::Okx, "DOT-USD", "\"instId\":\"DOT-USD\""),
        (Venue::Okx, "PEPE-USDT", "\"instId\":\"PEPE-USDT\""),
        (Venue::Mexc, "1000PEPE-USDT", "1000PEPEUSDT"),
        (Venue::Gate, "ETH-FDUSD", "\"s\":\"ETH_FDUSD\""),
        (Venue::Kucoin, "BSV-USDT", "/spotMarket/level1:BCHSV-USDT"),
        // Bitget: the default socket is v3 (`symbol`, not v2's `instId`).
        (Venue::Bitget, "DOT-USD", "\"symbol\":\"DOTUSD\""),
        (Venue::Htx, "ETH-BTC", "market.ethbtc.bbo"),
    ];
    for (venue, canonical, needle) in cases {
        first_bbo(&sim, *venue, canonical, needle).await;
    }
    for venue in &change.venues {
        let symbol = ws_symbol(&sim, *venue, &change.listed);
        let needle = if *venue == Venue::Binance {
            symbol.to_ascii_uppercase()
        } else {
            symbol
        };
        first_bbo(&sim, *venue, &change.listed, &needle).await;
    }
    sim.shutdown().await;
}

fn okx_bid(message: &Message) -> f64 {
    let value: Value = serde_json::from_str(message.text()).expect("OKX data is JSON");
    value["data"][0]["bids"][0][0]
        .as_str()
        .and_then(|price| price.parse().ok())
        .expect("a bid price")
}

#[tokio::test]
async fn pepe_1000_is_priced_at_1000_pepe() {
    let sim = SimVenues::start(fast_config())
        .await
        .expect("simulator starts");
    let pepe = first_bbo(&sim, Venue::Okx, "PEPE-USDT", "PEPE-USDT").await;
    let pepe_1000 = first_bbo(&sim, Venue::Bybit, "1000PEPE-USDT", "1000PEPEUSDT").await;
    let value: Value = serde_json::from_str(pepe_1000.text()).expect("Bybit data is JSON");
    let bid_1000: f64 = value["data"]["b"][0][0]
        .as_str()
        .and_then(|price| price.parse().ok())
        .expect("a bid price");
    let ratio = bid_1000 / okx_bid(&pepe);
    // Venue offsets, noise and dislocations stay well within 2 %.
    assert!((980.0..1020.0).contains(&ratio), "{ratio}");
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_symbols_get_the_venues_error_reply() {
    let sim = SimVenues::start(fast_config())
        .await
        .expect("simulator starts");
    // (venue, error marker); Binance acks any stream and sends nothing.
    let cases: &[(Venue, &str)] = &[
        (Venue::Bybit, "\"success\":false"),
        (Venue::Okx, "\"code\":\"60018\""),
        (Venue::Mexc, "Not Subscribed successfully"),
        (Venue::Gate, "unknown currency pair"),
        (Venue::Kucoin, "\"type\":\"error\""),
        (Venue::Bitget, "\"code\":\"30001\""),
        (Venue::Htx, "\"status\":\"error\""),
    ];
    for (venue, marker) in cases {
        let mut spelling = String::new();
        tickflow_feed::protocol::write_venue_symbol(*venue, "NOPE", "USDT", &mut spelling);
        let mut connection = ws_connect(&sim.url(*venue).expect("simulated")).await;
        subscribe(&mut connection, *venue, &spelling, Channel::Bbo).await;
        loop {
            let message = next_message(&mut connection, *venue).await;
            if message.text().contains("welcome") {
                continue;
            }
            assert!(
                message.text().contains(marker),
                "{venue}: {}",
                message.text()
            );
            break;
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn data_stops_for_a_delisted_symbol_and_goes_on_for_the_others() {
    let sim = SimVenues::start(fast_config())
        .await
        .expect("simulator starts");
    let venue = Venue::Okx;
    let mut connection = ws_connect(&sim.url(venue).expect("simulated")).await;
    subscribe(&mut connection, venue, "DOT-USD", Channel::Bbo).await;
    subscribe(&mut connection, venue, "BTC-USDT", Channel::Bbo).await;
    data_mentioning(&mut connection, venue, "\"instId\":\"DOT-USD\"").await;

    assert_eq!(
        sim.set_listing(venue, "DOT-USD", ListingState::Unlisted),
        Ok(ListingState::Trading)
    );
    // Subscribing again now gets the error reply; everything after it comes from ticks that
    // saw the delisting.
    subscribe(&mut connection, venue, "DOT-USD", Channel::Bbo).await;
    loop {
        let message = next_message(&mut connection, venue).await;
        if message.text().contains("\"event\":\"error\"") {
            assert!(message.text().contains("DOT-USD"), "{}", message.text());
            break;
        }
    }
    let mut btc_frames = 0;
    while btc_frames < 50 {
        let message = next_message(&mut connection, venue).await;
        assert!(
            !(message.is_data() && message.mentions("DOT-USD")),
            "no DOT-USD data after its delisting: {}",
            message.text()
        );
        if message.is_data() && message.mentions("BTC-USDT") {
            btc_frames += 1;
        }
    }
    // Listed again (on the same connection, after a new subscribe): data again.
    sim.set_listing(venue, "DOT-USD", ListingState::Trading)
        .expect("valid name");
    subscribe(&mut connection, venue, "DOT-USD", Channel::Bbo).await;
    data_mentioning(&mut connection, venue, "\"instId\":\"DOT-USD\"").await;
    sim.shutdown().await;
}
