//! Integration tests: the universe discovered from the simulated venues' instrument lists (their
//! REST endpoints over loopback), applied to the registry, subscribed by the feeds, and refreshed
//! as listings change; and `tickflow universe` on a config pointing at the simulators.

use std::sync::Arc;
use std::time::Duration;

use tickflow::config::Config;
use tickflow::universe::Refresher;
use tickflow_core::outbound::{DiscardOutbound, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_feed::Feeds;
use tickflow_feed::counters::SlotCounters;
use tickflow_sim::{SimConfig, SimVenues};

/// Longest any condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// The engine's config file for `sim`: its WebSocket endpoints, its REST endpoints for
/// discovery, no hand-written symbols, the 1000PEPE alias.
fn config_text(sim: &SimVenues) -> String {
    let mut text = String::from(
        "[engine]\nshards = 1\nmax_symbols = 64\nmax_connection_slots = 32\n\
         [windows]\nbucket_ms = 100\nbuckets = 10\nmax_windows = 2000\n\
         [universe]\nmax_symbols = 40\nquotes = [\"USDT\", \"USD\"]\n\
         [feeds]\nchannels = [\"bbo\"]\nbackoff_base_ms = 10\nbackoff_cap_ms = 100\n",
    );
    for venue in Venue::ALL {
        let url = sim.url(venue).expect("every venue is simulated");
        text.push_str(&format!("[feeds.venue.{venue}]\nurl = \"{url}\"\n"));
        if venue == Venue::Kucoin {
            let bullet = sim.bullet_url().expect("kucoin is simulated");
            text.push_str(&format!("url = \"\"\nbullet_url = \"{bullet}\"\n"));
        }
    }
    for venue in Venue::ALL {
        text.push_str(&format!(
            "[universe.venue.{venue}]\nurl = \"{}\"\n",
            sim.rest_url(venue)
        ));
    }
    for venue in ["bybit", "mexc"] {
        text.push_str(&format!(
            "[[universe.alias]]\nvenue = \"{venue}\"\nvenue_base = \"1000PEPE\"\nbase = \"PEPE\"\nmultiplier = 1000.0\n"
        ));
    }
    text
}

fn config(sim: &SimVenues) -> Config {
    Config::from_toml_str(&config_text(sim).replace("url = \"\"\n", ""))
        .expect("the simulators' config is valid")
}

fn sim_config() -> SimConfig {
    SimConfig {
        venues: Venue::ALL.to_vec(),
        symbols: vec!["BTC-USDT".into(), "ETH-USDT".into()],
        bbo_per_s_per_symbol: 20.0,
        trades_per_s_per_symbol: 1.0,
        tick_ms: 5,
        ..SimConfig::default()
    }
}

#[test]
fn the_universe_comes_from_metadata_and_a_refresh_follows_listings() {
    runtime().block_on(async {
        let sim = SimVenues::start(sim_config())
            .await
            .expect("simulator binds loopback ports");
        let config = Arc::new(config(&sim));
        let registry = Arc::new(SymbolRegistry::new(config.engine.max_symbols));
        let (mut refresher, applied) = Refresher::start(Arc::clone(&config), &registry)
            .await
            .expect("discovery starts");
        assert!(applied.refused.is_empty(), "{:?}", applied.refused);
        let names: Vec<String> = refresher.universe().names();
        // Names from metadata, never split by guessing: DOTUSD is DOT-USD, BNBUSD is BNB-USD.
        for expected in [
            "BTC-USDT",
            "ETH-USDT",
            "DOT-USD",
            "BNB-USD",
            "ARB-USD",
            "PEPE-USDT",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        for never in [
            "DO-TUSD",
            "BN-BUSD",
            "AR-BUSD",
            "1000PEPE-USDT",
            "GT-USDT",
            "LUNA-USDT",
        ] {
            assert!(!names.iter().any(|n| n == never), "{never} in {names:?}");
        }
        let dot = registry
            .lookup_on(Venue::Binance, b"dotusd")
            .expect("DOT-USD listed");
        assert_eq!(registry.name(dot).expect("named").as_str(), "DOT-USD");
        // Bybit's 1000PEPEUSDT is PEPE-USDT, quoted per 1 000.
        let pepe = registry
            .lookup_on(Venue::Bybit, b"1000PEPEUSDT")
            .expect("1000PEPE is PEPE on bybit");
        assert_eq!(registry.name(pepe).expect("named").as_str(), "PEPE-USDT");
        let bybit_pepe = registry
            .listings(Venue::Bybit)
            .into_iter()
            .find(|listing| listing.symbol_id == pepe)
            .expect("listed");
        assert_eq!(bybit_pepe.price_multiplier, 1000.0);
        // KuCoin spells BSV as BCHSV-USDT: subscribed as the venue lists it.
        let bsv = registry
            .lookup_on(Venue::Kucoin, b"BCHSV-USDT")
            .expect("BSV on kucoin");
        assert_eq!(registry.name(bsv).expect("named").as_str(), "BSV-USDT");

        let outbounds: Vec<Box<dyn Outbound>> = vec![Box::new(DiscardOutbound)];
        let mut pipeline =
            Pipeline::start(&config.engine, &config.windows, outbounds).expect("pipeline starts");
        let mut feeds = Feeds::start(&config.feeds, &config.engine, Arc::clone(&registry), || {
            pipeline.take_producer()
        })
        .expect("feeds start");
        let slots_before = feeds.slots().len();
        let records = |feeds: &Feeds| feeds.totals().records;
        assert!(eventually(|| records(&feeds) > 100).await, "data flows");
        assert_eq!(feeds.totals().decode_errors, 0, "every spelling resolves");

        // The venues list NEW1 (on three venues); a refresh subscribes it and never duplicates.
        let change = sim.churn_listings_now();
        assert_eq!(change.listed, "NEW1-USDT");
        refresher.begin();
        let round = refresher.next().await;
        let refreshed = refresher
            .finish(round, &registry, &mut feeds, false)
            .expect("re-plans");
        assert_eq!(refreshed.applied.listings_added, change.venues.len());
        assert_eq!(refreshed.applied.listings_retired, 0);
        assert_eq!(refreshed.feeds.listings_unplaced, 0);
        let new1 = registry
            .id_of(&tickflow_core::registry::parse_canonical("NEW1-USDT").expect("canonical"))
            .expect("registered");
        for venue in &change.venues {
            assert!(
                registry
                    .listings(*venue)
                    .iter()
                    .any(|l| l.symbol_id == new1)
            );
        }
        let subscriptions = |feeds: &Feeds| feeds.totals().subscriptions;
        let expected_subscriptions: u64 = Venue::ALL
            .iter()
            .map(|&venue| registry.listings(venue).len() as u64)
            .sum();
        assert!(
            eventually(|| subscriptions(&feeds) == expected_subscriptions).await,
            "every listing subscribed once: {} of {expected_subscriptions}",
            subscriptions(&feeds)
        );
        // Refreshing again with nothing new changes nothing.
        refresher.begin();
        let round = refresher.next().await;
        let again = refresher
            .finish(round, &registry, &mut feeds, false)
            .expect("re-plans");
        assert_eq!(
            again.applied.listings_added + again.applied.listings_retired,
            0
        );
        assert_eq!(again.feeds, tickflow_feed::RefreshReport::default());

        // NEW2 and NEW3 listed: NEW1 goes (the sim keeps two churned listings).
        sim.churn_listings_now();
        let change = sim.churn_listings_now();
        assert_eq!(change.delisted, vec!["NEW1-USDT".to_string()]);
        refresher.begin();
        let round = refresher.next().await;
        let refreshed = refresher
            .finish(round, &registry, &mut feeds, false)
            .expect("re-plans");
        assert!(refreshed.applied.listings_retired >= 1);
        assert!(registry.is_retired(new1), "NEW1 is listed nowhere now");
        assert_eq!(
            registry
                .name(new1)
                .expect("a retired id keeps its name")
                .as_str(),
            "NEW1-USDT"
        );
        let retired: u64 = feeds
            .slots()
            .iter()
            .map(|slot| SlotCounters::get(&slot.counters.symbols_retired))
            .sum();
        let expected_retired = refreshed.applied.listings_retired as u64;
        assert!(
            eventually(|| feeds
                .slots()
                .iter()
                .map(|slot| SlotCounters::get(&slot.counters.symbols_retired))
                .sum::<u64>()
                >= expected_retired)
            .await,
            "every retired listing left its slot ({retired} so far)"
        );
        assert!(feeds.slots().len() >= slots_before);
        assert!(feeds.shutdown().await, "slots stop in time");
        pipeline.shutdown();
        sim.shutdown().await;
    });
}

#[test]
fn a_venue_that_does_not_answer_is_left_out_at_start_and_keeps_its_last_list_later() {
    runtime().block_on(async {
        let sim = SimVenues::start(sim_config())
            .await
            .expect("simulator binds loopback ports");
        let mut config = config(&sim);
        config.universe.start_attempts = 2;
        config.universe.retry_backoff_ms = 10;
        let config = Arc::new(config);
        sim.control(Venue::Gate)
            .fail_next_rest_requests(2, tickflow_sim::RestFault::ServerError);
        let registry = Arc::new(SymbolRegistry::new(config.engine.max_symbols));
        let (mut refresher, _) = Refresher::start(Arc::clone(&config), &registry)
            .await
            .expect("discovery starts without gate");
        assert!(
            refresher
                .universe()
                .venues_failed
                .iter()
                .any(|(v, _)| *v == Venue::Gate)
        );
        assert!(registry.listings(Venue::Gate).is_empty());
        assert!(!registry.listings(Venue::Okx).is_empty());
        // Gate answers at the next round; then fails again and its list is kept.
        let outbounds: Vec<Box<dyn Outbound>> = vec![Box::new(DiscardOutbound)];
        let mut pipeline =
            Pipeline::start(&config.engine, &config.windows, outbounds).expect("pipeline starts");
        let mut feeds = Feeds::start(&config.feeds, &config.engine, Arc::clone(&registry), || {
            pipeline.take_producer()
        })
        .expect("feeds start");
        refresher.begin();
        let round = refresher.next().await;
        refresher
            .finish(round, &registry, &mut feeds, false)
            .expect("re-plans");
        let gate_listings = registry.listings(Venue::Gate).len();
        assert!(gate_listings > 0);
        sim.control(Venue::Gate).fail_next_rest_requests(
            1,
            tickflow_sim::RestFault::TooManyRequests { retry_after_s: 1 },
        );
        refresher.begin();
        let round = refresher.next().await;
        let kept = refresher
            .finish(round, &registry, &mut feeds, false)
            .expect("re-plans");
        assert_eq!(
            kept.applied.listings_retired, 0,
            "a failed venue keeps its last list"
        );
        assert_eq!(registry.listings(Venue::Gate).len(), gate_listings);
        assert!(feeds.shutdown().await);
        pipeline.shutdown();
        sim.shutdown().await;
    });
}

#[test]
fn tickflow_universe_prints_the_simulators_universe() {
    let runtime = runtime();
    let sim = runtime
        .block_on(SimVenues::start(sim_config()))
        .expect("simulator binds loopback ports");
    let path = std::env::temp_dir().join(format!("tickflow-universe-{}.toml", std::process::id()));
    std::fs::write(&path, config_text(&sim).replace("url = \"\"\n", ""))
        .expect("temp dir is writable");
    // The simulators run on this runtime's threads while the binary asks them.
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["universe", "--json", "--config"])
        .arg(&path)
        .output()
        .expect("tickflow runs");
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["universe", "--config"])
        .arg(&path)
        .output()
        .expect("tickflow runs");
    let _ = std::fs::remove_file(&path);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(parsed["discovered"], true);
    let rendered = parsed.to_string();
    for expected in [
        "DOT-USD",
        "BCHSV-USDT",
        "1000PEPEUSDT",
        "not_trading",
        "too_few_venues",
    ] {
        assert!(rendered.contains(expected), "{expected} in {rendered}");
    }
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("discovered from 8 venue(s)"), "{stdout}");
    assert!(stdout.contains("DOT-USD"), "{stdout}");
    runtime.block_on(sim.shutdown());
}
