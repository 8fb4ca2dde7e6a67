//! Selection: the venues' listings → the universe. Aliases are applied to each venue's base asset
//! first, then listings are matched across venues by canonical `BASE-QUOTE` (from metadata only),
//! filtered by quote, deny/allow, trading status and venue count, and capped. Everything left out
//! is reported with its reason. Pure and deterministic: no I/O, no clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use tickflow_core::registry::{SYMBOL_NAME_CAPACITY_BYTES, parse_canonical, symbol_from_parts};
use tickflow_core::venue::Venue;

use crate::config::UniverseConfig;
use crate::parse::Listing;

/// One venue's listing of a universe symbol.
#[derive(Clone, Debug, PartialEq)]
pub struct VenueListing {
    pub venue: Venue,
    /// As the venue spells it in subscriptions.
    pub venue_symbol: String,
    /// Venue price = canonical price × this (1000 for `1000PEPE` against `PEPE`; 1 without alias).
    pub price_multiplier: f64,
}

/// A symbol of the universe: canonical `BASE-QUOTE` (upper case, at most 24 bytes) and the
/// venues that trade it, in venue order.
#[derive(Clone, Debug, PartialEq)]
pub struct UniverseSymbol {
    pub base: String,
    pub quote: String,
    pub listings: Vec<VenueListing>,
}

impl UniverseSymbol {
    /// The canonical name, `BASE-QUOTE`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.base, self.quote)
    }
}

/// Why a symbol, or some of its listings, were left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExclusionReason {
    /// The venue's status says it does not trade (halted, offline, one-sided, leveraged token).
    NotTrading,
    /// Traded on fewer than `universe.min_venues` venues.
    TooFewVenues,
    /// More symbols qualified than `universe.max_symbols`.
    OverCap,
    /// In `universe.deny`.
    Denied,
    /// `universe.allow` is set and does not name it.
    NotAllowed,
    /// In `universe.allow`, but no venue lists it with a selected quote.
    AllowedNotListed,
    /// The canonical name is longer than 24 bytes.
    NameTooLong,
    /// The base or quote is not ASCII letters and digits (`币安人生`).
    InvalidName,
    /// The venue's spelling is not ASCII letters, digits and `-` `_` `/`, or longer than 24
    /// characters without them (the registry would refuse it).
    InvalidSpelling,
    /// A second listing on one venue of a symbol that venue already lists (after aliases): the
    /// first is kept (no multiplier first, then by spelling).
    DuplicateOnVenue,
    /// The spelling equals, separators aside, another selected symbol's spelling on that venue.
    SpellingCollision,
}

impl ExclusionReason {
    /// Snake-case identifier (JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionReason::NotTrading => "not_trading",
            ExclusionReason::TooFewVenues => "too_few_venues",
            ExclusionReason::OverCap => "over_cap",
            ExclusionReason::Denied => "denied",
            ExclusionReason::NotAllowed => "not_allowed",
            ExclusionReason::AllowedNotListed => "allowed_not_listed",
            ExclusionReason::NameTooLong => "name_too_long",
            ExclusionReason::InvalidName => "invalid_name",
            ExclusionReason::InvalidSpelling => "invalid_spelling",
            ExclusionReason::DuplicateOnVenue => "duplicate_on_venue",
            ExclusionReason::SpellingCollision => "spelling_collision",
        }
    }

    /// A phrase for people (the summary).
    pub fn describe(self) -> &'static str {
        match self {
            ExclusionReason::NotTrading => "not trading",
            ExclusionReason::TooFewVenues => "on fewer venues than universe.min_venues",
            ExclusionReason::OverCap => "over the cap (universe.max_symbols)",
            ExclusionReason::Denied => "denied (universe.deny)",
            ExclusionReason::NotAllowed => "not in universe.allow",
            ExclusionReason::AllowedNotListed => {
                "in universe.allow but listed by no venue with a selected quote"
            }
            ExclusionReason::NameTooLong => "name longer than 24 bytes",
            ExclusionReason::InvalidName => "base or quote not ASCII letters and digits",
            ExclusionReason::InvalidSpelling => "venue spelling the registry cannot hold",
            ExclusionReason::DuplicateOnVenue => "a second listing on one venue",
            ExclusionReason::SpellingCollision => {
                "venue spelling equal to another symbol's, separators aside"
            }
        }
    }
}

/// A listing left out: the venue and its spelling.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExcludedListing {
    pub venue: Venue,
    pub venue_symbol: String,
}

/// A symbol (or some of its listings) left out, with the reason. `listings` are the ones the
/// reason applies to (empty for `AllowedNotListed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusion {
    /// `BASE-QUOTE` after aliases (as written for names that cannot be canonical).
    pub name: String,
    pub listings: Vec<ExcludedListing>,
    pub reason: ExclusionReason,
}

impl Exclusion {
    pub fn venues(&self) -> Vec<Venue> {
        let mut venues: Vec<Venue> = self.listings.iter().map(|listing| listing.venue).collect();
        venues.dedup();
        venues
    }
}

/// The selected universe and everything left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Universe {
    /// In name order.
    pub symbols: Vec<UniverseSymbol>,
    /// In (reason, name) order.
    pub excluded: Vec<Exclusion>,
    /// Listings quoted in a currency not in `universe.quotes` (counted, not listed).
    pub quote_not_selected: usize,
    /// Venues whose list was used.
    pub venues_answered: Vec<Venue>,
    /// Venues whose list could not be fetched, with the error (set by the caller from discovery).
    pub venues_failed: Vec<(Venue, String)>,
}

/// Selects the universe from each venue's listings. When more symbols qualify than
/// `max_symbols`, the ones traded on the most venues win, ties by name.
pub fn select(config: &UniverseConfig, lists: &BTreeMap<Venue, Vec<Listing>>) -> Universe {
    reselect(config, lists, None)
}

/// As [`select`], for a refresh: symbols of `previous` that still qualify win the cap before any
/// newcomer (then most venues, then name), so a new listing never pushes out a tracked symbol.
pub fn reselect(
    config: &UniverseConfig,
    lists: &BTreeMap<Venue, Vec<Listing>>,
    previous: Option<&Universe>,
) -> Universe {
    let quotes = config.quote_set();
    let aliases = config.alias_map();
    let allow: BTreeSet<String> = canonical_set(&config.allow);
    let deny: BTreeSet<String> = canonical_set(&config.deny);
    let mut universe = Universe {
        venues_answered: lists.keys().copied().collect(),
        ..Universe::default()
    };

    // Group by canonical name after aliases.
    let mut candidates: BTreeMap<String, Candidate> = BTreeMap::new();
    for (&venue, listings) in lists {
        for listing in listings {
            let quote = listing.quote.to_ascii_uppercase();
            if !quotes.contains(&quote) {
                universe.quote_not_selected += 1;
                continue;
            }
            let venue_base = listing.base.to_ascii_uppercase();
            let (base, price_multiplier) = match aliases.get(&(venue, venue_base)) {
                Some((base, multiplier)) => (base.clone(), *multiplier),
                None => (listing.base.to_ascii_uppercase(), 1.0),
            };
            let name = format!("{base}-{quote}");
            let candidate = candidates.entry(name).or_insert_with(|| Candidate {
                base,
                quote,
                trading: BTreeMap::new(),
                halted: Vec::new(),
            });
            if listing.trading {
                candidate
                    .trading
                    .entry(venue)
                    .or_default()
                    .push(VenueListing {
                        venue,
                        venue_symbol: listing.venue_symbol.clone(),
                        price_multiplier,
                    });
            } else {
                candidate.halted.push(ExcludedListing {
                    venue,
                    venue_symbol: listing.venue_symbol.clone(),
                });
            }
        }
    }

    let mut excluded = Vec::new();
    let mut exclude = |name: &str, listings: Vec<ExcludedListing>, reason| {
        excluded.push(Exclusion {
            name: name.to_owned(),
            listings,
            reason,
        });
    };
    let mut eligible = Vec::new();
    for (name, candidate) in &candidates {
        if let Err(reason) = name_check(&candidate.base, &candidate.quote) {
            exclude(name, candidate.all_listings(), reason);
            continue;
        }
        if deny.contains(name) {
            exclude(name, candidate.all_listings(), ExclusionReason::Denied);
            continue;
        }
        if !allow.is_empty() && !allow.contains(name) {
            exclude(name, candidate.all_listings(), ExclusionReason::NotAllowed);
            continue;
        }
        if !candidate.halted.is_empty() {
            exclude(name, candidate.halted.clone(), ExclusionReason::NotTrading);
        }
        let mut kept = Vec::new();
        let mut bad_spellings = Vec::new();
        let mut duplicates = Vec::new();
        for listings in candidate.trading.values() {
            let mut usable: Vec<&VenueListing> = listings
                .iter()
                .filter(|listing| {
                    let ok = spelling_ok(&listing.venue_symbol);
                    if !ok {
                        bad_spellings.push(excluded_listing(listing));
                    }
                    ok
                })
                .collect();
            usable.sort_by(|a, b| {
                (a.price_multiplier != 1.0, &a.venue_symbol)
                    .cmp(&(b.price_multiplier != 1.0, &b.venue_symbol))
            });
            let mut usable = usable.into_iter();
            if let Some(first) = usable.next() {
                kept.push(first.clone());
            }
            duplicates.extend(usable.map(excluded_listing));
        }
        if !bad_spellings.is_empty() {
            exclude(name, bad_spellings, ExclusionReason::InvalidSpelling);
        }
        if !duplicates.is_empty() {
            exclude(name, duplicates, ExclusionReason::DuplicateOnVenue);
        }
        if kept.is_empty() {
            continue;
        }
        if kept.len() < config.min_venues {
            exclude(
                name,
                kept.iter().map(excluded_listing).collect(),
                ExclusionReason::TooFewVenues,
            );
            continue;
        }
        eligible.push(UniverseSymbol {
            base: candidate.base.clone(),
            quote: candidate.quote.clone(),
            listings: kept,
        });
    }

    // A venue spelling that two symbols reduce to (separators aside) would be refused by the
    // registry for the second: the first by name keeps it, the other listing is left out, visibly.
    let mut taken: BTreeMap<(Venue, String), String> = BTreeMap::new();
    let mut distinct = Vec::with_capacity(eligible.len());
    for mut symbol in eligible {
        let name = symbol.name();
        let mut collisions = Vec::new();
        symbol.listings.retain(|listing| {
            let key = (listing.venue, compact(&listing.venue_symbol));
            match taken.entry(key) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    collisions.push(excluded_listing(listing));
                    false
                }
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(name.clone());
                    true
                }
            }
        });
        if !collisions.is_empty() {
            exclude(&name, collisions, ExclusionReason::SpellingCollision);
        }
        if symbol.listings.len() < config.min_venues {
            exclude(
                &name,
                symbol.listings.iter().map(excluded_listing).collect(),
                ExclusionReason::TooFewVenues,
            );
            continue;
        }
        distinct.push(symbol);
    }

    // The cap: incumbents first (on a refresh), then most venues, then name.
    let incumbents: BTreeSet<String> = previous
        .map(|previous| previous.symbols.iter().map(UniverseSymbol::name).collect())
        .unwrap_or_default();
    distinct.sort_by_cached_key(|symbol| {
        let name = symbol.name();
        (
            !incumbents.contains(&name),
            Reverse(symbol.listings.len()),
            name,
        )
    });
    let over_cap = distinct.split_off(config.max_symbols.min(distinct.len()));
    for symbol in over_cap {
        exclude(
            &symbol.name(),
            symbol.listings.iter().map(excluded_listing).collect(),
            ExclusionReason::OverCap,
        );
    }
    distinct.sort_by_cached_key(UniverseSymbol::name);

    let selected = distinct;

    for name in &allow {
        if !candidates.contains_key(name) {
            exclude(name, Vec::new(), ExclusionReason::AllowedNotListed);
        }
    }

    excluded.sort_by(|a, b| (a.reason, &a.name).cmp(&(b.reason, &b.name)));
    universe.symbols = selected;
    universe.excluded = excluded;
    universe
}

/// Listings of one canonical name, gathered over venues.
struct Candidate {
    base: String,
    quote: String,
    trading: BTreeMap<Venue, Vec<VenueListing>>,
    halted: Vec<ExcludedListing>,
}

impl Candidate {
    fn all_listings(&self) -> Vec<ExcludedListing> {
        let mut listings: Vec<ExcludedListing> = self
            .trading
            .values()
            .flatten()
            .map(excluded_listing)
            .chain(self.halted.iter().cloned())
            .collect();
        listings.sort();
        listings
    }
}

fn excluded_listing(listing: &VenueListing) -> ExcludedListing {
    ExcludedListing {
        venue: listing.venue,
        venue_symbol: listing.venue_symbol.clone(),
    }
}

fn canonical_set(names: &[String]) -> BTreeSet<String> {
    // `validate` refuses names that are not canonical; any left are kept as written (they match
    // nothing).
    names
        .iter()
        .map(|name| match parse_canonical(name) {
            Ok(symbol) => symbol.as_str().to_owned(),
            Err(_) => name.clone(),
        })
        .collect()
}

fn name_check(base: &str, quote: &str) -> Result<(), ExclusionReason> {
    let alphanumeric = |part: &str| part.bytes().all(|byte| byte.is_ascii_alphanumeric());
    if !alphanumeric(base) || !alphanumeric(quote) {
        return Err(ExclusionReason::InvalidName);
    }
    if base.len() + 1 + quote.len() > SYMBOL_NAME_CAPACITY_BYTES {
        return Err(ExclusionReason::NameTooLong);
    }
    symbol_from_parts(base, quote)
        .map(|_| ())
        .map_err(|_| ExclusionReason::InvalidName)
}

/// What the registry accepts as a venue spelling: ASCII letters, digits and `-` `_` `/`, with 1
/// to 24 letters and digits.
fn spelling_ok(spelling: &str) -> bool {
    let mut alphanumerics = 0usize;
    for byte in spelling.bytes() {
        match byte {
            b'-' | b'_' | b'/' => {}
            byte if byte.is_ascii_alphanumeric() => alphanumerics += 1,
            _ => return false,
        }
    }
    (1..=SYMBOL_NAME_CAPACITY_BYTES).contains(&alphanumerics)
}

/// The spelling upper-cased without separators (the registry's key for it).
fn compact(spelling: &str) -> String {
    spelling
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|byte| byte.to_ascii_uppercase() as char)
        .collect()
}

impl Universe {
    /// Canonical names of the selected symbols, in order.
    pub fn names(&self) -> Vec<String> {
        self.symbols.iter().map(UniverseSymbol::name).collect()
    }

    /// This universe without growth past `previous` (memory shedding pauses growth): only the
    /// symbols `previous` has, each with only the listings it had there; what left since is
    /// still gone. Returns it and the number of listings held back.
    pub fn without_growth(&self, previous: &Universe) -> (Universe, usize) {
        let mut held_back = 0;
        let mut kept = self.clone();
        kept.symbols.retain_mut(|symbol| {
            let Some(before) = previous
                .symbols
                .iter()
                .find(|old| old.base == symbol.base && old.quote == symbol.quote)
            else {
                held_back += symbol.listings.len();
                return false;
            };
            let listings_before = symbol.listings.len();
            symbol.listings.retain(|listing| {
                before.listings.iter().any(|old| {
                    old.venue == listing.venue && old.venue_symbol == listing.venue_symbol
                })
            });
            held_back += listings_before - symbol.listings.len();
            !symbol.listings.is_empty()
        });
        (kept, held_back)
    }

    /// Exclusions counted by reason.
    pub fn excluded_counts(&self) -> BTreeMap<ExclusionReason, usize> {
        let mut counts = BTreeMap::new();
        for exclusion in &self.excluded {
            *counts.entry(exclusion.reason).or_insert(0) += 1;
        }
        counts
    }

    /// The universe as JSON (`tickflow universe --json`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let symbols: Vec<serde_json::Value> = self
            .symbols
            .iter()
            .map(|symbol| {
                json!({
                    "name": symbol.name(),
                    "base": symbol.base,
                    "quote": symbol.quote,
                    "listings": symbol.listings.iter().map(|listing| json!({
                        "venue": listing.venue.name(),
                        "venue_symbol": listing.venue_symbol,
                        "price_multiplier": listing.price_multiplier,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let excluded: Vec<serde_json::Value> = self
            .excluded
            .iter()
            .map(|exclusion| {
                json!({
                    "name": exclusion.name,
                    "reason": exclusion.reason.as_str(),
                    "listings": exclusion.listings.iter().map(|listing| json!({
                        "venue": listing.venue.name(),
                        "venue_symbol": listing.venue_symbol,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let excluded_counts: serde_json::Map<String, serde_json::Value> = self
            .excluded_counts()
            .into_iter()
            .map(|(reason, count)| (reason.as_str().to_owned(), json!(count)))
            .collect();
        json!({
            "symbols": symbols,
            "excluded": excluded,
            "excluded_counts": excluded_counts,
            "quote_not_selected": self.quote_not_selected,
            "venues_answered": self.venues_answered.iter().map(|venue| venue.name()).collect::<Vec<_>>(),
            "venues_failed": self.venues_failed.iter().map(|(venue, error)| json!({
                "venue": venue.name(),
                "error": error,
            })).collect::<Vec<_>>(),
        })
    }

    /// The universe for people: a headline, each symbol with its venues and their spellings,
    /// then what was left out, grouped by reason.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut text = String::new();
        let names = |venues: &mut dyn Iterator<Item = Venue>| {
            venues
                .map(|venue| venue.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            text,
            "universe: {} symbols from {} venues ({})",
            self.symbols.len(),
            self.venues_answered.len(),
            names(&mut self.venues_answered.iter().copied()),
        );
        for (venue, error) in &self.venues_failed {
            let _ = writeln!(text, "venue failed: {venue}: {error}");
        }
        for symbol in &self.symbols {
            let listings: Vec<String> = symbol
                .listings
                .iter()
                .map(|listing| {
                    if listing.price_multiplier == 1.0 {
                        format!("{} {}", listing.venue, listing.venue_symbol)
                    } else {
                        format!(
                            "{} {} (×{})",
                            listing.venue, listing.venue_symbol, listing.price_multiplier
                        )
                    }
                })
                .collect();
            let _ = writeln!(
                text,
                "  {:<24} {} venues: {}",
                symbol.name(),
                symbol.listings.len(),
                listings.join(", ")
            );
        }
        let counts = self.excluded_counts();
        let total: usize = counts.values().sum();
        let _ = writeln!(text, "left out: {total}");
        for (reason, count) in counts {
            let _ = writeln!(text, "  {} ({count}):", reason.describe());
            for exclusion in self.excluded.iter().filter(|e| e.reason == reason) {
                let listings: Vec<String> = exclusion
                    .listings
                    .iter()
                    .map(|listing| format!("{} {}", listing.venue, listing.venue_symbol))
                    .collect();
                if listings.is_empty() {
                    let _ = writeln!(text, "    {}", exclusion.name);
                } else {
                    let _ = writeln!(text, "    {:<24} {}", exclusion.name, listings.join(", "));
                }
            }
        }
        let _ = writeln!(
            text,
            "listings with a quote not in universe.quotes: {}",
            self.quote_not_selected
        );
        text
    }
}
