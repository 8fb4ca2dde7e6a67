//! Listings that change: churn steps (forced and on the timer) and `set_listing`, seen over REST.

use std::time::Duration;

use crate::client::{PATIENCE, listed_entries};
use tickflow_core::venue::Venue;
use tickflow_sim::{
    ListingError, ListingOrigin, ListingState, SimConfig, SimVenues, churn_listing_venues,
};

/// The REST symbol of `canonical` on `venue` (base and quote given).
fn spelling(venue: Venue, base: &str, quote: &str) -> String {
    let mut spelling = String::new();
    tickflow_feed::protocol::write_venue_symbol(venue, base, quote, &mut spelling);
    if venue == Venue::Binance {
        spelling.make_ascii_uppercase();
    }
    spelling
}

async fn lists(sim: &SimVenues, venue: Venue, symbol: &str) -> bool {
    listed_entries(sim, venue)
        .await
        .iter()
        .any(|entry| entry.symbol == symbol && entry.trading)
}

#[tokio::test]
async fn churn_steps_list_new_symbols_and_delist_the_oldest_as_predicted() {
    let sim = SimVenues::start(SimConfig::default())
        .await
        .expect("simulator starts");
    for step in 1..=4u64 {
        let change = sim.churn_listings_now();
        assert_eq!(change.step, step);
        assert_eq!(change.listed, format!("NEW{step}-USDT"));
        assert_eq!(change.venues, churn_listing_venues(step, &Venue::ALL));
        assert!(change.venues.len() >= 2);
        // The default keeps the newest two.
        let expected_delisted: Vec<String> = if step >= 3 {
            vec![format!("NEW{}-USDT", step - 2)]
        } else {
            Vec::new()
        };
        assert_eq!(change.delisted, expected_delisted, "step {step}");
        let base = format!("NEW{step}");
        for venue in Venue::ALL {
            let listed = lists(&sim, venue, &spelling(venue, &base, "USDT")).await;
            assert_eq!(
                listed,
                change.venues.contains(&venue),
                "{venue} step {step}"
            );
        }
        for gone in &change.delisted {
            let (base, quote) = gone.split_once('-').expect("canonical");
            for venue in Venue::ALL {
                assert!(
                    !lists(&sim, venue, &spelling(venue, base, quote)).await,
                    "{venue} delisted {gone}"
                );
                assert!(
                    sim.listings(venue)
                        .iter()
                        .all(|listing| &listing.canonical != gone),
                    "{venue} {gone}"
                );
            }
        }
        let listing = sim
            .listings(change.venues[0])
            .into_iter()
            .find(|listing| listing.canonical == change.listed)
            .expect("listed");
        assert_eq!(listing.origin, ListingOrigin::Churn(step));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_churn_timer_changes_listings_by_itself() {
    let sim = SimVenues::start(SimConfig {
        listing_churn_interval_ms: 20,
        listing_churn_keep: 1,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    // Wait until NEW2 is listed: by then NEW1 is gone (keep 1).
    let venues = churn_listing_venues(2, &Venue::ALL);
    loop {
        let listings = sim.listings(venues[0]);
        if listings
            .iter()
            .any(|listing| matches!(listing.origin, ListingOrigin::Churn(step) if step >= 2))
        {
            assert!(
                Venue::ALL.iter().all(|venue| sim
                    .listings(*venue)
                    .iter()
                    .all(|listing| listing.canonical != "NEW1-USDT")),
                "NEW1 delisted once NEW2 is listed"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the timer churns");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn set_listing_lists_halts_and_delists_one_symbol_on_one_venue() {
    let sim = SimVenues::start(SimConfig::default())
        .await
        .expect("simulator starts");
    // A new symbol on Gate only.
    assert_eq!(
        sim.set_listing(Venue::Gate, "ZK-USDT", ListingState::Trading),
        Ok(ListingState::Unlisted)
    );
    assert!(lists(&sim, Venue::Gate, "ZK_USDT").await);
    assert!(!lists(&sim, Venue::Okx, "ZK-USDT").await);
    // Halting a configured one on OKX: still listed, not trading.
    assert_eq!(
        sim.set_listing(Venue::Okx, "ETH-USDT", ListingState::NotTrading),
        Ok(ListingState::Trading)
    );
    let entries = listed_entries(&sim, Venue::Okx).await;
    let eth = entries
        .iter()
        .find(|entry| entry.symbol == "ETH-USDT")
        .expect("still listed");
    assert!(!eth.trading);
    // Delisting it from Binance.
    sim.set_listing(Venue::Binance, "ETH-USDT", ListingState::Unlisted)
        .expect("valid name");
    assert!(
        listed_entries(&sim, Venue::Binance)
            .await
            .iter()
            .all(|entry| entry.symbol != "ETHUSDT")
    );
    assert!(
        lists(&sim, Venue::Bybit, "ETHUSDT").await,
        "other venues keep it"
    );
    assert!(matches!(
        sim.set_listing(Venue::Okx, "eth-usdt", ListingState::Trading),
        Err(ListingError::InvalidSymbol(_))
    ));
    sim.shutdown().await;
}
