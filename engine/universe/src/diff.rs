//! What a refresh changes: symbols and (symbol, venue) listings added and retired, and listings
//! whose spelling or price multiplier changed. Pure; applying it (registry, subscriptions,
//! windows) is the engine's job.

use std::collections::{BTreeMap, BTreeSet};

use tickflow_core::venue::Venue;

use crate::select::{Universe, UniverseSymbol};

/// One (symbol, venue) listing in a diff.
#[derive(Clone, Debug, PartialEq)]
pub struct ListingChange {
    /// Canonical `BASE-QUOTE`.
    pub name: String,
    pub venue: Venue,
    pub venue_symbol: String,
    pub price_multiplier: f64,
}

/// From one universe to the next. Every list is in (name, venue) order and holds no duplicates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UniverseDiff {
    /// Symbols in the new universe only.
    pub added_symbols: Vec<String>,
    /// Symbols in the old universe only (their windows end; their ids stay).
    pub retired_symbols: Vec<String>,
    /// (symbol, venue) listings in the new universe only; includes those of added symbols.
    pub added_listings: Vec<ListingChange>,
    /// (symbol, venue) listings in the old universe only; includes those of retired symbols.
    pub retired_listings: Vec<ListingChange>,
    /// (symbol, venue) listings in both whose spelling or multiplier changed: the new values.
    pub changed_listings: Vec<ListingChange>,
}

impl UniverseDiff {
    pub fn is_empty(&self) -> bool {
        self.added_symbols.is_empty()
            && self.retired_symbols.is_empty()
            && self.added_listings.is_empty()
            && self.retired_listings.is_empty()
            && self.changed_listings.is_empty()
    }
}

fn listings_by_key(universe: &Universe) -> BTreeMap<(String, Venue), ListingChange> {
    let mut map = BTreeMap::new();
    for symbol in &universe.symbols {
        let name = symbol.name();
        for listing in &symbol.listings {
            map.insert(
                (name.clone(), listing.venue),
                ListingChange {
                    name: name.clone(),
                    venue: listing.venue,
                    venue_symbol: listing.venue_symbol.clone(),
                    price_multiplier: listing.price_multiplier,
                },
            );
        }
    }
    map
}

/// What changed from `old` to `new`.
pub fn diff(old: &Universe, new: &Universe) -> UniverseDiff {
    let old_names: BTreeSet<String> = old.symbols.iter().map(UniverseSymbol::name).collect();
    let new_names: BTreeSet<String> = new.symbols.iter().map(UniverseSymbol::name).collect();
    let old_listings = listings_by_key(old);
    let mut new_listings = listings_by_key(new);
    let mut result = UniverseDiff {
        added_symbols: new_names.difference(&old_names).cloned().collect(),
        retired_symbols: old_names.difference(&new_names).cloned().collect(),
        ..UniverseDiff::default()
    };
    for (key, old_listing) in old_listings {
        match new_listings.remove(&key) {
            None => result.retired_listings.push(old_listing),
            Some(new_listing) => {
                if new_listing.venue_symbol != old_listing.venue_symbol
                    || new_listing.price_multiplier != old_listing.price_multiplier
                {
                    result.changed_listings.push(new_listing);
                }
            }
        }
    }
    result.added_listings = new_listings.into_values().collect();
    result
}
