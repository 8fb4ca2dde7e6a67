//! Selection (quotes, venue count, allow/deny, aliases, cap, names) and diffs.

use std::collections::BTreeMap;

use tickflow_core::venue::Venue;
use tickflow_universe::{
    Listing, Universe, UniverseConfig, diff, parse_instruments, reselect, select,
};

use crate::fixture;

fn listing(venue: Venue, spelling: &str, base: &str, quote: &str) -> Listing {
    Listing {
        venue,
        venue_symbol: spelling.to_owned(),
        base: base.to_owned(),
        quote: quote.to_owned(),
        trading: true,
    }
}

fn halted(venue: Venue, spelling: &str, base: &str, quote: &str) -> Listing {
    Listing {
        trading: false,
        ..listing(venue, spelling, base, quote)
    }
}

fn lists(listings: Vec<Listing>) -> BTreeMap<Venue, Vec<Listing>> {
    let mut map: BTreeMap<Venue, Vec<Listing>> = BTreeMap::new();
    for listing in listings {
        map.entry(listing.venue).or_default().push(listing);
    }
    map
}

fn config(text: &str) -> UniverseConfig {
    let config: UniverseConfig = toml::from_str(text).expect("parses");
    config.validate(1_000_000).expect("valid");
    config
}

/// Each selected symbol as `NAME venue:spelling[xM] …`.
fn symbols(universe: &Universe) -> Vec<String> {
    universe
        .symbols
        .iter()
        .map(|symbol| {
            let mut text = symbol.name();
            for listing in &symbol.listings {
                text.push_str(&format!(" {}:{}", listing.venue, listing.venue_symbol));
                if listing.price_multiplier != 1.0 {
                    text.push_str(&format!("x{}", listing.price_multiplier));
                }
            }
            text
        })
        .collect()
}

/// Each exclusion as `reason NAME venue:spelling …`.
fn excluded(universe: &Universe) -> Vec<String> {
    universe
        .excluded
        .iter()
        .map(|exclusion| {
            let mut text = format!("{} {}", exclusion.reason.as_str(), exclusion.name);
            for listing in &exclusion.listings {
                text.push_str(&format!(" {}:{}", listing.venue, listing.venue_symbol));
            }
            text
        })
        .collect()
}

fn fixture_lists() -> BTreeMap<Venue, Vec<Listing>> {
    Venue::ALL
        .into_iter()
        .map(|venue| {
            let parsed = parse_instruments(venue, &fixture(venue)).expect("parses");
            (venue, parsed.listings)
        })
        .collect()
}

#[test]
fn the_fixtures_select_by_quote_and_venue_count() {
    let universe = select(&config(""), &fixture_lists());
    assert_eq!(
        symbols(&universe),
        [
            "BTC-USDT bybit:BTCUSDT okx:BTC-USDT mexc:BTCUSDT gate:BTC_USDT kucoin:BTC-USDT bitget:BTCUSDT htx:btcusdt",
            "DOGE-USDT bybit:DOGEUSDT bitget:DOGEUSDT",
            "ETH-USDT bybit:ETHUSDT gate:ETH_USDT kucoin:ETH-USDT bitget:ETHUSDT",
        ]
    );
    assert_eq!(
        excluded(&universe),
        [
            "not_trading BCHABC-USDT binance:BCHABCUSDT",
            "not_trading BTCUP-USDT binance:BTCUPUSDT",
            "not_trading ILV-USDT gate:ILV_USDT",
            "not_trading SAL-USDT gate:SAL_USDT",
            "not_trading TOMO3L-USDT mexc:TOMO3LUSDT",
            "not_trading TRX-USDT bitget:TRXUSDT",
            "too_few_venues 1INCH-USDT htx:1inchusdt",
            "too_few_venues BSV-USDT kucoin:BCHSV-USDT",
            "too_few_venues SOL-USDT mexc:SOLUSDT",
            "too_few_venues USDC-USDT binance:USDCUSDT",
            "too_few_venues XRP-USDT mexc:XRPUSDT",
        ]
    );
    // Not USDT: ETHBTC, BNBBTC, BTCUSDC, BTC-USD, ETH-USD, USDT-USD, SOL-USD, BTC_USDC,
    // USDT-USDC, ZEL-BTC, dothusd, usdthusd, veneth.
    assert_eq!(universe.quote_not_selected, 13);
    assert_eq!(universe.venues_answered, Venue::ALL);

    // USD and HUSD on one venue or more: HTX's dothusd is DOT / HUSD from its metadata.
    let universe = select(
        &config("quotes = [\"USD\", \"HUSD\"]\nmin_venues = 1\n"),
        &fixture_lists(),
    );
    assert_eq!(
        symbols(&universe),
        [
            "BTC-USD okx:BTC-USD",
            "DOT-HUSD htx:dothusd",
            "ETH-USD okx:ETH-USD",
            "USDT-HUSD htx:usdthusd",
            "USDT-USD okx:USDT-USD",
        ]
    );
    assert_eq!(excluded(&universe), ["not_trading SOL-USD okx:SOL-USD"]);
}

#[test]
fn bases_that_end_like_a_quote_are_named_from_metadata() {
    let universe = select(
        &config("quotes = [\"USD\", \"USDT\"]\n"),
        &lists(vec![
            listing(Venue::Binance, "DOTUSD", "DOT", "USD"),
            listing(Venue::Okx, "DOT-USD", "DOT", "USD"),
            listing(Venue::Binance, "BNBUSD", "BNB", "USD"),
            listing(Venue::Gate, "BNB_USD", "BNB", "USD"),
            listing(Venue::Bybit, "ARBUSD", "ARB", "USD"),
            listing(Venue::Kucoin, "ARB-USD", "ARB", "USD"),
            // A base that is itself a quote currency.
            listing(Venue::Binance, "USDCUSDT", "USDC", "USDT"),
            listing(Venue::Mexc, "USDCUSDT", "USDC", "USDT"),
        ]),
    );
    assert_eq!(
        symbols(&universe),
        [
            "ARB-USD bybit:ARBUSD kucoin:ARB-USD",
            "BNB-USD binance:BNBUSD gate:BNB_USD",
            "DOT-USD binance:DOTUSD okx:DOT-USD",
            "USDC-USDT binance:USDCUSDT mexc:USDCUSDT",
        ]
    );
    assert!(universe.excluded.is_empty());
}

#[test]
fn quotes_are_matched_in_any_case_and_others_are_only_counted() {
    let universe = select(
        &config("quotes = [\"usdc\"]\n"),
        &lists(vec![
            listing(Venue::Binance, "BTCUSDC", "BTC", "USDC"),
            listing(Venue::Htx, "btcusdc", "btc", "usdc"),
            listing(Venue::Binance, "BTCUSDT", "BTC", "USDT"),
            listing(Venue::Htx, "btcusdt", "btc", "usdt"),
        ]),
    );
    assert_eq!(symbols(&universe), ["BTC-USDC binance:BTCUSDC htx:btcusdc"]);
    assert_eq!(universe.quote_not_selected, 2);
}

fn pepe_lists() -> BTreeMap<Venue, Vec<Listing>> {
    lists(vec![
        listing(Venue::Binance, "PEPEUSDT", "PEPE", "USDT"),
        listing(Venue::Bybit, "1000PEPEUSDT", "1000PEPE", "USDT"),
        listing(Venue::Okx, "PEPE-USDT", "PEPE", "USDT"),
    ])
}

#[test]
fn an_alias_with_a_multiplier_pairs_1000pepe_with_pepe() {
    let without = select(&config(""), &pepe_lists());
    assert_eq!(
        symbols(&without),
        ["PEPE-USDT binance:PEPEUSDT okx:PEPE-USDT"]
    );
    assert_eq!(
        excluded(&without),
        ["too_few_venues 1000PEPE-USDT bybit:1000PEPEUSDT"]
    );
    let with = select(
        &config(
            "[[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000PEPE\"\nbase = \"PEPE\"\nmultiplier = 1000.0\n",
        ),
        &pepe_lists(),
    );
    assert_eq!(
        symbols(&with),
        ["PEPE-USDT binance:PEPEUSDT bybit:1000PEPEUSDTx1000 okx:PEPE-USDT"]
    );
    assert!(with.excluded.is_empty());
}

#[test]
fn two_listings_of_one_venue_for_one_symbol_are_reported_not_duplicated() {
    let mut lists = pepe_lists();
    lists
        .entry(Venue::Bybit)
        .or_default()
        .push(listing(Venue::Bybit, "PEPEUSDT", "PEPE", "USDT"));
    let universe = select(
        &config(
            "[[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000pepe\"\nbase = \"pepe\"\nmultiplier = 1000.0\n",
        ),
        &lists,
    );
    // The listing without a multiplier is kept.
    assert_eq!(
        symbols(&universe),
        ["PEPE-USDT binance:PEPEUSDT bybit:PEPEUSDT okx:PEPE-USDT"]
    );
    assert_eq!(
        excluded(&universe),
        ["duplicate_on_venue PEPE-USDT bybit:1000PEPEUSDT"]
    );
}

#[test]
fn a_rename_pairs_and_a_ticker_naming_another_asset_is_kept_apart() {
    let lists = lists(vec![
        listing(Venue::Binance, "BTCUSDT", "BTC", "USDT"),
        listing(Venue::Kucoin, "XBT-USDT", "XBT", "USDT"),
        listing(Venue::Binance, "NEIROUSDT", "NEIRO", "USDT"),
        listing(Venue::Okx, "NEIRO-USDT", "NEIRO", "USDT"),
        // Gate's NEIRO here is another token with the same ticker.
        listing(Venue::Gate, "NEIRO_USDT", "NEIRO", "USDT"),
        listing(Venue::Htx, "neiroethusdt", "neiroeth", "usdt"),
    ]);
    let without = select(&config(""), &lists);
    assert_eq!(
        symbols(&without),
        ["NEIRO-USDT binance:NEIROUSDT okx:NEIRO-USDT gate:NEIRO_USDT"],
        "without aliases the two NEIROs pair and XBT stays alone"
    );
    let with = select(
        &config(
            "[[alias]]\nvenue = \"kucoin\"\nvenue_base = \"XBT\"\nbase = \"BTC\"\n\
             [[alias]]\nvenue = \"gate\"\nvenue_base = \"NEIRO\"\nbase = \"NEIROETH\"\n",
        ),
        &lists,
    );
    assert_eq!(
        symbols(&with),
        [
            "BTC-USDT binance:BTCUSDT kucoin:XBT-USDT",
            "NEIRO-USDT binance:NEIROUSDT okx:NEIRO-USDT",
            "NEIROETH-USDT gate:NEIRO_USDT htx:neiroethusdt",
        ]
    );
}

#[test]
fn one_venue_only_and_not_trading_are_excluded_with_their_venues() {
    let universe = select(
        &config(""),
        &lists(vec![
            listing(Venue::Binance, "AUSDT", "A", "USDT"),
            halted(Venue::Bybit, "AUSDT", "A", "USDT"),
            listing(Venue::Binance, "BUSDT", "B", "USDT"),
            listing(Venue::Okx, "B-USDT", "B", "USDT"),
            halted(Venue::Gate, "B_USDT", "B", "USDT"),
            halted(Venue::Binance, "CUSDT", "C", "USDT"),
            halted(Venue::Okx, "C-USDT", "C", "USDT"),
        ]),
    );
    assert_eq!(symbols(&universe), ["B-USDT binance:BUSDT okx:B-USDT"]);
    assert_eq!(
        excluded(&universe),
        [
            "not_trading A-USDT bybit:AUSDT",
            "not_trading B-USDT gate:B_USDT",
            "not_trading C-USDT binance:CUSDT okx:C-USDT",
            "too_few_venues A-USDT binance:AUSDT",
        ]
    );
    let text = universe.summary();
    assert!(text.contains("universe: 1 symbols from 4 venues"), "{text}");
    assert!(text.contains("B-USDT"), "{text}");
    assert!(text.contains("not trading (3):"), "{text}");
    assert!(
        text.contains("on fewer venues than universe.min_venues (1):"),
        "{text}"
    );
}

/// Four symbols: on 3, 3, 2 and 2 venues.
fn cap_lists() -> BTreeMap<Venue, Vec<Listing>> {
    let mut listings = Vec::new();
    for (base, venues) in [
        ("AAA", &[Venue::Binance, Venue::Okx][..]),
        ("BBB", &[Venue::Binance, Venue::Okx][..]),
        ("YYY", &[Venue::Binance, Venue::Okx, Venue::Gate][..]),
        ("ZZZ", &[Venue::Binance, Venue::Okx, Venue::Gate][..]),
    ] {
        for &venue in venues {
            listings.push(listing(venue, &format!("{base}USDT"), base, "USDT"));
        }
    }
    lists(listings)
}

#[test]
fn the_cap_keeps_the_most_listed_then_by_name_and_incumbents_on_refresh() {
    let capped = config("max_symbols = 3\n");
    let universe = select(&capped, &cap_lists());
    assert_eq!(universe.names(), ["AAA-USDT", "YYY-USDT", "ZZZ-USDT"]);
    assert_eq!(
        excluded(&universe),
        ["over_cap BBB-USDT binance:BBBUSDT okx:BBBUSDT"]
    );
    // A refresh where BBB was tracked: it keeps its place, the newcomer waits.
    let previous = select(
        &config("max_symbols = 3\ndeny = [\"ZZZ-USDT\"]\n"),
        &cap_lists(),
    );
    assert_eq!(previous.names(), ["AAA-USDT", "BBB-USDT", "YYY-USDT"]);
    let refreshed = reselect(&capped, &cap_lists(), Some(&previous));
    assert_eq!(refreshed.names(), ["AAA-USDT", "BBB-USDT", "YYY-USDT"]);
    assert_eq!(
        excluded(&refreshed),
        ["over_cap ZZZ-USDT binance:ZZZUSDT okx:ZZZUSDT gate:ZZZUSDT"]
    );
}

#[test]
fn deny_and_allow_lists() {
    let universe = select(&config("deny = [\"yyy-usdt\"]\n"), &cap_lists());
    assert_eq!(universe.names(), ["AAA-USDT", "BBB-USDT", "ZZZ-USDT"]);
    assert_eq!(
        excluded(&universe),
        ["denied YYY-USDT binance:YYYUSDT okx:YYYUSDT gate:YYYUSDT"]
    );
    let universe = select(
        &config("allow = [\"BBB-USDT\", \"ZZZ-USDT\", \"QQQ-USDT\"]\ndeny = [\"ZZZ-USDT\"]\n"),
        &cap_lists(),
    );
    assert_eq!(universe.names(), ["BBB-USDT"]);
    assert_eq!(
        excluded(&universe),
        [
            "denied ZZZ-USDT binance:ZZZUSDT okx:ZZZUSDT gate:ZZZUSDT",
            "not_allowed AAA-USDT binance:AAAUSDT okx:AAAUSDT",
            "not_allowed YYY-USDT binance:YYYUSDT okx:YYYUSDT gate:YYYUSDT",
            "allowed_not_listed QQQ-USDT",
        ]
    );
}

#[test]
fn names_and_spellings_the_registry_cannot_hold_are_excluded() {
    let long_base = "ABCDEFGHIJKLMNOPQRSTU";
    let universe = select(
        &config(""),
        &lists(vec![
            listing(
                Venue::Binance,
                &format!("{long_base}USDT"),
                long_base,
                "USDT",
            ),
            listing(Venue::Okx, &format!("{long_base}-USDT"), long_base, "USDT"),
            listing(Venue::Binance, "币安人生USDT", "币安人生", "USDT"),
            listing(Venue::Bybit, "币安人生USDT", "币安人生", "USDT"),
            listing(Venue::Binance, "AUSDT", "A", "USDT"),
            listing(Venue::Okx, "A USDT", "A", "USDT"),
            listing(Venue::Gate, "A_USDT", "A", "USDT"),
        ]),
    );
    assert_eq!(symbols(&universe), ["A-USDT binance:AUSDT gate:A_USDT"]);
    assert_eq!(
        excluded(&universe),
        [
            "name_too_long ABCDEFGHIJKLMNOPQRSTU-USDT binance:ABCDEFGHIJKLMNOPQRSTUUSDT okx:ABCDEFGHIJKLMNOPQRSTU-USDT",
            "invalid_name 币安人生-USDT binance:币安人生USDT bybit:币安人生USDT",
            "invalid_spelling A-USDT okx:A USDT",
        ]
    );
}

#[test]
fn a_spelling_two_symbols_share_separators_aside_goes_to_the_first_by_name() {
    let universe = select(
        &config("quotes = [\"USDT\", \"CUSDT\"]\n"),
        &lists(vec![
            listing(Venue::Gate, "AB_CUSDT", "AB", "CUSDT"),
            listing(Venue::Gate, "ABC_USDT", "ABC", "USDT"),
            listing(Venue::Okx, "AB-CUSDT", "AB", "CUSDT"),
            listing(Venue::Okx, "ABC-USDT", "ABC", "USDT"),
            listing(Venue::Binance, "ABCUSDT", "ABC", "USDT"),
        ]),
    );
    assert_eq!(symbols(&universe), ["AB-CUSDT okx:AB-CUSDT gate:AB_CUSDT"]);
    assert_eq!(
        excluded(&universe),
        [
            "too_few_venues ABC-USDT binance:ABCUSDT",
            "spelling_collision ABC-USDT okx:ABC-USDT gate:ABC_USDT",
        ]
    );
}

#[test]
fn selection_is_deterministic_and_json_names_everything() {
    let config = config(
        "[[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000PEPE\"\nbase = \"PEPE\"\nmultiplier = 1000.0\n",
    );
    let first = select(&config, &pepe_lists());
    assert_eq!(first, select(&config, &pepe_lists()));
    let json = first.to_json();
    assert_eq!(json["symbols"][0]["name"], "PEPE-USDT");
    assert_eq!(json["symbols"][0]["listings"][1]["venue"], "bybit");
    assert_eq!(
        json["symbols"][0]["listings"][1]["venue_symbol"],
        "1000PEPEUSDT"
    );
    assert_eq!(
        json["symbols"][0]["listings"][1]["price_multiplier"],
        1000.0
    );
    assert_eq!(json["quote_not_selected"], 0);
    assert_eq!(
        json["venues_answered"],
        serde_json::json!(["binance", "bybit", "okx"])
    );
    let universe = select(&UniverseConfig::default(), &fixture_lists());
    let json = universe.to_json();
    assert_eq!(json["excluded_counts"]["not_trading"], 6);
    assert_eq!(json["excluded_counts"]["too_few_venues"], 5);
    assert_eq!(json["excluded"][0]["reason"], "not_trading");
}

#[test]
fn diff_adds_retires_and_changes_listings() {
    let alias = "[[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000PEPE\"\nbase = \"PEPE\"\nmultiplier = 1000.0\n";
    let old = select(
        &config(alias),
        &lists(vec![
            listing(Venue::Binance, "BTCUSDT", "BTC", "USDT"),
            listing(Venue::Okx, "BTC-USDT", "BTC", "USDT"),
            listing(Venue::Gate, "BTC_USDT", "BTC", "USDT"),
            listing(Venue::Binance, "LUNAUSDT", "LUNA", "USDT"),
            listing(Venue::Okx, "LUNA-USDT", "LUNA", "USDT"),
            listing(Venue::Binance, "PEPEUSDT", "PEPE", "USDT"),
            listing(Venue::Bybit, "1000PEPEUSDT", "1000PEPE", "USDT"),
        ]),
    );
    let new = select(
        &config(alias),
        &lists(vec![
            listing(Venue::Binance, "BTCUSDT", "BTC", "USDT"),
            listing(Venue::Okx, "BTC-USDT", "BTC", "USDT"),
            // Gate delisted BTC; HTX listed it.
            listing(Venue::Htx, "btcusdt", "btc", "usdt"),
            // LUNA delisted on OKX: one venue left, the symbol retires.
            listing(Venue::Binance, "LUNAUSDT", "LUNA", "USDT"),
            // Bybit now lists PEPE per unit.
            listing(Venue::Binance, "PEPEUSDT", "PEPE", "USDT"),
            listing(Venue::Bybit, "PEPEUSDT", "PEPE", "USDT"),
            // New on two venues.
            listing(Venue::Binance, "WIFUSDT", "WIF", "USDT"),
            listing(Venue::Okx, "WIF-USDT", "WIF", "USDT"),
        ]),
    );
    let change = diff(&old, &new);
    assert_eq!(change.added_symbols, ["WIF-USDT"]);
    assert_eq!(change.retired_symbols, ["LUNA-USDT"]);
    let show = |changes: &[tickflow_universe::ListingChange]| -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                format!(
                    "{} {}:{} x{}",
                    c.name, c.venue, c.venue_symbol, c.price_multiplier
                )
            })
            .collect()
    };
    assert_eq!(
        show(&change.added_listings),
        [
            "BTC-USDT htx:btcusdt x1",
            "WIF-USDT binance:WIFUSDT x1",
            "WIF-USDT okx:WIF-USDT x1",
        ]
    );
    assert_eq!(
        show(&change.retired_listings),
        [
            "BTC-USDT gate:BTC_USDT x1",
            "LUNA-USDT binance:LUNAUSDT x1",
            "LUNA-USDT okx:LUNA-USDT x1",
        ]
    );
    assert_eq!(
        show(&change.changed_listings),
        ["PEPE-USDT bybit:PEPEUSDT x1"]
    );
    assert!(diff(&new, &new).is_empty());
    let back = diff(&new, &old);
    assert_eq!(back.added_symbols, ["LUNA-USDT"]);
    assert_eq!(back.retired_symbols, ["WIF-USDT"]);
}

#[test]
fn without_growth_keeps_only_what_the_previous_universe_had_and_still_retires() {
    let config = config("");
    let before = select(
        &config,
        &lists(vec![
            listing(Venue::Binance, "BTCUSDT", "BTC", "USDT"),
            listing(Venue::Okx, "BTC-USDT", "BTC", "USDT"),
            listing(Venue::Binance, "ETHUSDT", "ETH", "USDT"),
            listing(Venue::Okx, "ETH-USDT", "ETH", "USDT"),
        ]),
    );
    // The next round: SOL is new, Bybit newly lists BTC, ETH left OKX (so ETH is on one venue).
    let after = reselect(
        &config,
        &lists(vec![
            listing(Venue::Binance, "BTCUSDT", "BTC", "USDT"),
            listing(Venue::Okx, "BTC-USDT", "BTC", "USDT"),
            listing(Venue::Bybit, "BTCUSDT", "BTC", "USDT"),
            listing(Venue::Binance, "ETHUSDT", "ETH", "USDT"),
            listing(Venue::Binance, "SOLUSDT", "SOL", "USDT"),
            listing(Venue::Okx, "SOL-USDT", "SOL", "USDT"),
        ]),
        Some(&before),
    );
    assert_eq!(
        symbols(&after),
        vec![
            "BTC-USDT binance:BTCUSDT bybit:BTCUSDT okx:BTC-USDT",
            "SOL-USDT binance:SOLUSDT okx:SOL-USDT"
        ]
    );
    let (held, held_back) = after.without_growth(&before);
    assert_eq!(
        symbols(&held),
        vec!["BTC-USDT binance:BTCUSDT okx:BTC-USDT"]
    );
    assert_eq!(
        held_back, 3,
        "Bybit's BTC and SOL's two listings wait for a later round"
    );
}
