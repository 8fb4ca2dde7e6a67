//! The symbol registry: canonical `BASE-QUOTE` names interned to stable `SymbolId`s, and each
//! venue's own spellings of them.
//!
//! A symbol's identity comes from metadata, never from parsing a spelling: canonical names are
//! registered from their base and quote (`register_parts`, or `register` of a `BASE-QUOTE` name),
//! and each venue's spelling is registered as a *listing* of an id (`register_listings`), with a
//! price multiplier for venues that quote a multiple of the asset (`1000PEPE` against `PEPE`).
//! Decoders resolve a spelling through its venue's listings (`lookup_on`); a venue with no
//! listings registered resolves by the canonical name with separators ignored (tools and tests
//! that register names only).
//!
//! Ids are stable for the life of the process and never reused: retiring a listing removes the
//! venue's spelling, and a symbol no venue lists any more is marked retired but keeps its id and
//! name (sinks still resolve it). Registration is idempotent (a refresh or reconnect that
//! registers the same symbols changes nothing) and bounded by `max_symbols`: a symbol that does not
//! fit is refused and counted. Lookups are lock-free and allocation-free: readers load an immutable
//! table through arc-swap; the rare writer (start-up, a universe refresh) copies the table once per
//! batch of edits and swaps it in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustc_hash::FxBuildHasher;

use crate::record::FeedEvent;
use crate::records::SymbolId;
use crate::venue::{VENUE_COUNT, Venue};

/// Longest canonical name kept (`BASE-QUOTE`, ASCII).
pub const SYMBOL_NAME_CAPACITY_BYTES: usize = 24;

/// Quote assets recognised when a spelling has no separator (BTCUSDT). Used only by
/// [`guess_symbol`], for tools that show frames of symbols nobody registered; the engine never
/// splits a spelling this way (`DOTUSD` would become `DO-TUSD`).
const KNOWN_QUOTE_ASSETS: &[&str] = &[
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDE", "USD1", "DAI", "USD", "BTC", "ETH", "BNB",
    "EUR", "TRY", "BRL", "GBP", "JPY", "AUD", "MXN", "PLN", "RON", "ZAR", "UAH", "IDR", "ARS",
    "SOL", "XRP", "DOGE", "TRX", "HT", "KCS", "BGB", "MX", "GT", "OKB",
];

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RegistryError {
    #[error("symbol registry is full: max_symbols = {max_symbols}; cannot add {name:?}")]
    Full { max_symbols: usize, name: String },
    #[error(
        "symbol {name:?} is not a canonical BASE-QUOTE name (ASCII letters and digits on both sides of one '-', at most {SYMBOL_NAME_CAPACITY_BYTES} bytes)"
    )]
    Invalid { name: String },
    #[error(
        "symbol {name:?} collides with already registered {existing:?} once separators are removed"
    )]
    Collision { name: String, existing: String },
    #[error("{venue}: spelling {spelling:?} already names {existing:?}; cannot also name {name:?}")]
    SpellingTaken {
        venue: Venue,
        spelling: String,
        existing: String,
        name: String,
    },
    #[error(
        "{venue}: spelling {spelling:?} is not ASCII letters, digits and separators of at most {SYMBOL_NAME_CAPACITY_BYTES} bytes"
    )]
    InvalidSpelling { venue: Venue, spelling: String },
    #[error("{venue}: price multiplier {multiplier} of {spelling:?} must be finite and positive")]
    InvalidMultiplier {
        venue: Venue,
        spelling: String,
        multiplier: f64,
    },
    #[error("unknown symbol id {0}")]
    UnknownId(u32),
}

/// A canonical symbol name stored inline (no heap), e.g. `BTC-USDT`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymbolName {
    bytes: [u8; SYMBOL_NAME_CAPACITY_BYTES],
    len: u8,
    base_len: u8,
}

impl SymbolName {
    fn new(base: &[u8], quote: &[u8]) -> Option<SymbolName> {
        let len = base.len() + 1 + quote.len();
        if base.is_empty() || quote.is_empty() || len > SYMBOL_NAME_CAPACITY_BYTES {
            return None;
        }
        let mut bytes = [0u8; SYMBOL_NAME_CAPACITY_BYTES];
        bytes[..base.len()].copy_from_slice(base);
        bytes[base.len()] = b'-';
        bytes[base.len() + 1..len].copy_from_slice(quote);
        bytes[..len].make_ascii_uppercase();
        Some(SymbolName {
            bytes,
            len: len as u8,
            base_len: base.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // The bytes are ASCII alphanumerics and one '-', checked by `parse_symbol`.
        std::str::from_utf8(&self.bytes[..self.len as usize])
            .expect("symbol names are built from ASCII only")
    }
    pub fn base(&self) -> &str {
        &self.as_str()[..self.base_len as usize]
    }
    pub fn quote(&self) -> &str {
        &self.as_str()[self.base_len as usize + 1..]
    }
}

impl std::fmt::Debug for SymbolName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl std::fmt::Display for SymbolName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The separator-free, uppercase spelling that every venue spelling of a symbol reduces to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct CompactKey {
    bytes: [u8; SYMBOL_NAME_CAPACITY_BYTES],
    len: u8,
}

impl CompactKey {
    /// Uppercases and drops `-`, `_`, `/`; `None` for anything else that is not alphanumeric, or
    /// too long. Runs on the hot path: no allocation.
    #[inline]
    fn from_spelling(spelling: &[u8]) -> Option<CompactKey> {
        let mut bytes = [0u8; SYMBOL_NAME_CAPACITY_BYTES];
        let mut len = 0usize;
        for &byte in spelling {
            match byte {
                b'-' | b'_' | b'/' => continue,
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => {
                    if len == SYMBOL_NAME_CAPACITY_BYTES {
                        return None;
                    }
                    bytes[len] = byte.to_ascii_uppercase();
                    len += 1;
                }
                _ => return None,
            }
        }
        (len > 0).then_some(CompactKey {
            bytes,
            len: len as u8,
        })
    }
}

/// One venue's spelling of a symbol, as the planner subscribes to it.
#[derive(Clone, Debug, PartialEq)]
pub struct VenueListing {
    pub symbol_id: SymbolId,
    /// Exactly as the venue spells it in subscriptions (`BTCUSDT`, `BTC_USDT`, `btcusdt`, …).
    pub spelling: String,
    /// Venue price = canonical price × multiplier (1000 for `1000PEPE` against `PEPE`).
    pub price_multiplier: f64,
}

#[derive(Clone, Default)]
struct VenueTable {
    /// True once anything was listed: from then on the venue resolves only through its listings.
    has_listed: bool,
    by_spelling: HashMap<CompactKey, SymbolId, FxBuildHasher>,
    /// Registration order (the planner's subscription order).
    listings: Vec<VenueListing>,
    /// Multipliers other than 1, by symbol id (usually empty).
    multipliers: HashMap<SymbolId, f64, FxBuildHasher>,
}

#[derive(Clone, Default)]
struct RegistryTable {
    names: Vec<SymbolName>,
    /// Venues listing each id now.
    listed_on: Vec<u8>,
    retired: Vec<bool>,
    by_name: HashMap<SymbolName, SymbolId, FxBuildHasher>,
    /// Canonical names with separators removed (first registered wins): for venues that have no
    /// listings.
    by_key: HashMap<CompactKey, SymbolId, FxBuildHasher>,
    venues: [VenueTable; VENUE_COUNT],
}

/// Interns canonical symbols; shared by every feed, decoder and shard (`Arc<SymbolRegistry>`).
pub struct SymbolRegistry {
    max_symbols: usize,
    table: ArcSwap<RegistryTable>,
    writer: Mutex<()>,
    refused_full: AtomicU64,
}

impl std::fmt::Debug for SymbolRegistry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SymbolRegistry")
            .field("len", &self.len())
            .field("max_symbols", &self.max_symbols)
            .finish()
    }
}

/// Parses a canonical `BASE-QUOTE` name: one `-`, ASCII letters and digits on both sides. The
/// only form configs and tools accept; no other spelling is split.
pub fn parse_canonical(name: &str) -> Result<SymbolName, RegistryError> {
    let invalid = || RegistryError::Invalid {
        name: name.to_string(),
    };
    let (base, quote) = name.split_once('-').ok_or_else(invalid)?;
    let is_part = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric());
    if !is_part(base) || !is_part(quote) {
        return Err(invalid());
    }
    SymbolName::new(base.as_bytes(), quote.as_bytes()).ok_or_else(invalid)
}

/// The canonical name of `base` and `quote` from metadata (upper-cased).
pub fn symbol_from_parts(base: &str, quote: &str) -> Result<SymbolName, RegistryError> {
    let is_part = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric());
    if !is_part(base) || !is_part(quote) {
        return Err(RegistryError::Invalid {
            name: format!("{base}-{quote}"),
        });
    }
    SymbolName::new(base.as_bytes(), quote.as_bytes()).ok_or_else(|| RegistryError::Invalid {
        name: format!("{base}-{quote}"),
    })
}

/// Splits a spelling into (base, quote) at a separator, or failing that at the longest known
/// quote-asset suffix. A guess: only for tools that display frames of unregistered symbols (the
/// `decode` command, the simulators' own names); the engine registers from metadata.
pub fn guess_symbol(spelling: &str) -> Result<SymbolName, RegistryError> {
    let invalid = || RegistryError::Invalid {
        name: spelling.to_string(),
    };
    let bytes = spelling.as_bytes();
    let is_part = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_alphanumeric);
    if let Some(position) = bytes.iter().position(|b| matches!(b, b'-' | b'_' | b'/')) {
        let (base, quote) = (&bytes[..position], &bytes[position + 1..]);
        if !is_part(base) || !is_part(quote) {
            return Err(invalid());
        }
        return SymbolName::new(base, quote).ok_or_else(invalid);
    }
    if !is_part(bytes) {
        return Err(invalid());
    }
    let upper = spelling.to_ascii_uppercase();
    let quote = KNOWN_QUOTE_ASSETS
        .iter()
        .filter(|quote| upper.len() > quote.len() && upper.ends_with(*quote))
        .max_by_key(|quote| quote.len())
        .ok_or_else(invalid)?;
    let split = upper.len() - quote.len();
    SymbolName::new(&upper.as_bytes()[..split], quote.as_bytes()).ok_or_else(invalid)
}

/// A batch of registry changes, applied at once by [`SymbolRegistry::edit`].
pub struct RegistryEdit<'a> {
    table: RegistryTable,
    max_symbols: usize,
    refused_full: &'a AtomicU64,
}

impl RegistryEdit<'_> {
    /// The id of `name`, registering it when new (`Full` when `max_symbols` are taken; counted).
    pub fn symbol(&mut self, name: SymbolName) -> Result<SymbolId, RegistryError> {
        if let Some(&id) = self.table.by_name.get(&name) {
            return Ok(id);
        }
        if self.table.names.len() >= self.max_symbols {
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(RegistryError::Full {
                max_symbols: self.max_symbols,
                name: name.as_str().to_string(),
            });
        }
        let id = SymbolId(self.table.names.len() as u32);
        self.table.names.push(name);
        self.table.listed_on.push(0);
        self.table.retired.push(false);
        self.table.by_name.insert(name, id);
        if let Some(key) = CompactKey::from_spelling(name.as_str().as_bytes()) {
            self.table.by_key.entry(key).or_insert(id);
        }
        Ok(id)
    }

    /// Lists `id` on `venue` under `spelling`. Listing it again with the same spelling updates the
    /// multiplier; a spelling that already names another symbol on that venue is refused.
    pub fn list(
        &mut self,
        venue: Venue,
        id: SymbolId,
        spelling: &str,
        price_multiplier: f64,
    ) -> Result<(), RegistryError> {
        let name = *self
            .table
            .names
            .get(id.0 as usize)
            .ok_or(RegistryError::UnknownId(id.0))?;
        if !(price_multiplier.is_finite() && price_multiplier > 0.0) {
            return Err(RegistryError::InvalidMultiplier {
                venue,
                spelling: spelling.to_string(),
                multiplier: price_multiplier,
            });
        }
        let key = CompactKey::from_spelling(spelling.as_bytes()).ok_or_else(|| {
            RegistryError::InvalidSpelling {
                venue,
                spelling: spelling.to_string(),
            }
        })?;
        let table = &mut self.table.venues[venue.index()];
        if let Some(&existing) = table.by_spelling.get(&key) {
            if existing != id {
                return Err(RegistryError::SpellingTaken {
                    venue,
                    spelling: spelling.to_string(),
                    existing: self.table.names[existing.0 as usize].as_str().to_string(),
                    name: name.as_str().to_string(),
                });
            }
        }
        // One spelling per (venue, symbol): a new spelling replaces the old one.
        if let Some(position) = table.listings.iter().position(|l| l.symbol_id == id) {
            let old = table.listings.remove(position);
            if let Some(old_key) = CompactKey::from_spelling(old.spelling.as_bytes()) {
                table.by_spelling.remove(&old_key);
            }
        } else {
            self.table.listed_on[id.0 as usize] += 1;
        }
        table.has_listed = true;
        table.by_spelling.insert(key, id);
        table.listings.push(VenueListing {
            symbol_id: id,
            spelling: spelling.to_string(),
            price_multiplier,
        });
        if price_multiplier == 1.0 {
            table.multipliers.remove(&id);
        } else {
            table.multipliers.insert(id, price_multiplier);
        }
        self.table.retired[id.0 as usize] = false;
        Ok(())
    }

    /// Removes `venue`'s listing of `id`; a symbol no venue lists any more is retired (its id and
    /// name stay). False when it was not listed there.
    pub fn unlist(&mut self, venue: Venue, id: SymbolId) -> bool {
        let table = &mut self.table.venues[venue.index()];
        let Some(position) = table.listings.iter().position(|l| l.symbol_id == id) else {
            return false;
        };
        let old = table.listings.remove(position);
        if let Some(key) = CompactKey::from_spelling(old.spelling.as_bytes()) {
            table.by_spelling.remove(&key);
        }
        table.multipliers.remove(&id);
        let listed_on = &mut self.table.listed_on[id.0 as usize];
        *listed_on = listed_on.saturating_sub(1);
        if *listed_on == 0 {
            self.table.retired[id.0 as usize] = true;
        }
        true
    }

    /// The ids listed on `venue` now.
    pub fn listed_ids(&self, venue: Venue) -> Vec<SymbolId> {
        self.table.venues[venue.index()]
            .listings
            .iter()
            .map(|listing| listing.symbol_id)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.table.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.names.is_empty()
    }
}

impl SymbolRegistry {
    pub fn new(max_symbols: usize) -> SymbolRegistry {
        SymbolRegistry {
            max_symbols,
            table: ArcSwap::from_pointee(RegistryTable::default()),
            writer: Mutex::new(()),
            refused_full: AtomicU64::new(0),
        }
    }

    pub fn max_symbols(&self) -> usize {
        self.max_symbols
    }

    /// Symbols ever registered (retired ones included: ids are never reused).
    pub fn len(&self) -> usize {
        self.table.load().names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Symbols refused because the registry was full, since start.
    pub fn refused_full(&self) -> u64 {
        self.refused_full.load(Ordering::Relaxed)
    }

    /// Applies a batch of changes: one copy of the table, one swap. Cold path.
    pub fn edit<R>(&self, change: impl FnOnce(&mut RegistryEdit<'_>) -> R) -> R {
        // A poisoned lock only means another edit panicked; the table itself is replaced
        // atomically, so it is still consistent.
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut edit = RegistryEdit {
            table: RegistryTable::clone(&self.table.load_full()),
            max_symbols: self.max_symbols,
            refused_full: &self.refused_full,
        };
        let result = change(&mut edit);
        self.table.store(Arc::new(edit.table));
        result
    }

    /// Registers a canonical `BASE-QUOTE` name and returns its id (the same id if known).
    pub fn register(&self, name: &str) -> Result<SymbolId, RegistryError> {
        let name = parse_canonical(name)?;
        self.edit(|edit| edit.symbol(name))
    }

    /// Registers many canonical names; stops at the first error.
    pub fn register_all<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<SymbolId>, RegistryError> {
        let names = names
            .into_iter()
            .map(parse_canonical)
            .collect::<Result<Vec<_>, _>>()?;
        self.edit(|edit| names.into_iter().map(|name| edit.symbol(name)).collect())
    }

    /// Finds the id of a canonical name with separators ignored (any venue spelling that is the
    /// canonical name without its `-`). Hot path: lock-free, no allocation.
    #[inline]
    pub fn lookup(&self, spelling: &[u8]) -> Option<SymbolId> {
        let key = CompactKey::from_spelling(spelling)?;
        self.table.load().by_key.get(&key).copied()
    }

    /// Finds the id `venue` means by `spelling`: through its listings once it has any, else as
    /// [`lookup`](Self::lookup). Hot path: lock-free, no allocation.
    #[inline]
    pub fn lookup_on(&self, venue: Venue, spelling: &[u8]) -> Option<SymbolId> {
        let key = CompactKey::from_spelling(spelling)?;
        let table = self.table.load();
        let venue_table = &table.venues[venue.index()];
        if venue_table.has_listed {
            venue_table.by_spelling.get(&key).copied()
        } else {
            table.by_key.get(&key).copied()
        }
    }

    /// Rescales the quotes and trades of `venue` whose listing has a price multiplier to the
    /// canonical unit (price ÷ multiplier, quantity × multiplier). Nothing to do (one load and one
    /// check) when the venue has none.
    #[inline]
    pub fn apply_price_multipliers(&self, venue: Venue, events: &mut [FeedEvent]) {
        let table = self.table.load();
        let multipliers = &table.venues[venue.index()].multipliers;
        if multipliers.is_empty() {
            return;
        }
        for event in events {
            match event {
                FeedEvent::Quote(quote) => {
                    if let Some(&multiplier) = multipliers.get(&quote.symbol_id) {
                        quote.bid /= multiplier;
                        quote.ask /= multiplier;
                        quote.bid_qty *= multiplier;
                        quote.ask_qty *= multiplier;
                    }
                }
                FeedEvent::Trade(trade) => {
                    if let Some(&multiplier) = multipliers.get(&trade.symbol_id) {
                        trade.price /= multiplier;
                        trade.qty *= multiplier;
                    }
                }
                FeedEvent::Gap(_) => {}
            }
        }
    }

    /// The canonical name of `id` (retired symbols keep theirs).
    pub fn name(&self, id: SymbolId) -> Option<SymbolName> {
        self.table.load().names.get(id.0 as usize).copied()
    }

    /// The id of a canonical name, if registered.
    pub fn id_of(&self, name: &SymbolName) -> Option<SymbolId> {
        self.table.load().by_name.get(name).copied()
    }

    /// True when no venue lists `id` any more (it was listed before).
    pub fn is_retired(&self, id: SymbolId) -> bool {
        self.table
            .load()
            .retired
            .get(id.0 as usize)
            .copied()
            .unwrap_or(false)
    }

    /// `venue`'s listings, in registration order.
    pub fn listings(&self, venue: Venue) -> Vec<VenueListing> {
        self.table.load().venues[venue.index()].listings.clone()
    }

    /// Symbols listed on at least one venue now.
    pub fn live_len(&self) -> usize {
        let table = self.table.load();
        table.listed_on.iter().filter(|&&count| count > 0).count()
    }

    /// Worst-case bytes this registry can hold at `max_symbols` (for the memory budget).
    pub fn budget_bytes(max_symbols: usize) -> usize {
        // Two tables can be alive at once (the old one while readers finish). Each: the names and
        // per-id vectors, two name maps, and per venue a spelling map, a listing vector (with the
        // spelling's heap bytes) and at worst a multiplier per symbol. Maps at their maximum load
        // factor of 7/8 (key + value + control byte).
        let map_bytes =
            |entry: usize| (max_symbols * 8).div_ceil(7).next_power_of_two() * (entry + 1);
        let names = max_symbols * (size_of::<SymbolName>() + 2);
        let name_maps = map_bytes(size_of::<SymbolName>() + size_of::<SymbolId>())
            + map_bytes(size_of::<CompactKey>() + size_of::<SymbolId>());
        let per_venue = map_bytes(size_of::<CompactKey>() + size_of::<SymbolId>())
            + max_symbols * (size_of::<VenueListing>() + SYMBOL_NAME_CAPACITY_BYTES)
            + map_bytes(size_of::<SymbolId>() + size_of::<f64>());
        2 * (names + name_maps + VENUE_COUNT * per_venue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Quote, VenueId};

    fn check_guess(spelling: &str, expected: &str) {
        assert_eq!(
            guess_symbol(spelling).map(|n| n.to_string()),
            Ok(expected.to_string())
        );
    }

    #[test]
    fn canonical_names_need_exactly_base_dash_quote() {
        assert_eq!(parse_canonical("BTC-USDT").unwrap().as_str(), "BTC-USDT");
        assert_eq!(parse_canonical("dot-usd").unwrap().as_str(), "DOT-USD");
        assert_eq!(parse_canonical("1000PEPE-USDT").unwrap().base(), "1000PEPE");
        for refused in [
            "BTCUSDT",
            "DOTUSD",
            "BTC_USDT",
            "BTC/USDT",
            "BTC-",
            "-USDT",
            "A-B-C",
            "BTC-ÜSDT",
            "",
        ] {
            assert!(
                parse_canonical(refused).is_err(),
                "{refused:?} must be refused"
            );
        }
    }

    #[test]
    fn guessing_is_only_for_tools_and_splits_what_it_can() {
        check_guess("BTCUSDT", "BTC-USDT");
        check_guess("BTC_USDT", "BTC-USDT");
        check_guess("btc/usdt", "BTC-USDT");
        check_guess("ETHFDUSD", "ETH-FDUSD");
        assert!(guess_symbol("XYZQQQ").is_err());
    }

    #[test]
    fn names_from_metadata_are_never_split_by_guessing() {
        let registry = SymbolRegistry::new(10);
        let (dot, bnb) = registry.edit(|edit| {
            let dot = edit
                .symbol(symbol_from_parts("DOT", "USD").unwrap())
                .unwrap();
            let bnb = edit
                .symbol(symbol_from_parts("BNB", "USD").unwrap())
                .unwrap();
            edit.list(Venue::Binance, dot, "DOTUSD", 1.0).unwrap();
            edit.list(Venue::Binance, bnb, "BNBUSD", 1.0).unwrap();
            edit.list(Venue::Kucoin, dot, "DOT-USD", 1.0).unwrap();
            (dot, bnb)
        });
        assert_eq!(registry.name(dot).unwrap().as_str(), "DOT-USD");
        assert_eq!(registry.name(bnb).unwrap().base(), "BNB");
        assert_eq!(registry.lookup_on(Venue::Binance, b"DOTUSD"), Some(dot));
        assert_eq!(registry.lookup_on(Venue::Binance, b"dotusd"), Some(dot));
        assert_eq!(registry.lookup_on(Venue::Kucoin, b"DOT-USD"), Some(dot));
        // KuCoin does not list BNB-USD: its spelling does not resolve there.
        assert_eq!(registry.lookup_on(Venue::Kucoin, b"BNB-USD"), None);
        // A venue with no listings resolves canonical names without separators.
        assert_eq!(registry.lookup_on(Venue::Okx, b"BNB-USD"), Some(bnb));
        let listings = registry.listings(Venue::Binance);
        assert_eq!(listings.len(), 2);
        assert_eq!(listings[0].spelling, "DOTUSD");
    }

    #[test]
    fn one_spelling_names_one_symbol_per_venue() {
        let registry = SymbolRegistry::new(10);
        let error = registry.edit(|edit| {
            let a = edit.symbol(parse_canonical("AB-CUSDT").unwrap()).unwrap();
            let b = edit.symbol(parse_canonical("ABC-USDT").unwrap()).unwrap();
            assert_ne!(a, b, "different canonical names are different symbols");
            edit.list(Venue::Gate, a, "ABCUSDT", 1.0).unwrap();
            edit.list(Venue::Gate, b, "ABC_USDT", 1.0).unwrap_err()
        });
        assert!(
            matches!(error, RegistryError::SpellingTaken { .. }),
            "{error}"
        );
    }

    #[test]
    fn reregistering_on_every_refresh_never_grows() {
        let registry = SymbolRegistry::new(100);
        let names: Vec<String> = (0..50).map(|i| format!("C{i}-USDT")).collect();
        let first = registry
            .register_all(names.iter().map(String::as_str))
            .unwrap();
        for _refresh in 0..200 {
            let again = registry.edit(|edit| {
                names
                    .iter()
                    .map(|name| {
                        let id = edit.symbol(parse_canonical(name).unwrap()).unwrap();
                        edit.list(Venue::Mexc, id, &name.replace('-', ""), 1.0)
                            .unwrap();
                        id
                    })
                    .collect::<Vec<_>>()
            });
            assert_eq!(again, first);
        }
        assert_eq!(registry.len(), 50);
        assert_eq!(registry.listings(Venue::Mexc).len(), 50);
    }

    #[test]
    fn retired_symbols_keep_their_id_and_name_and_ids_are_never_reused() {
        let registry = SymbolRegistry::new(3);
        let old = registry.edit(|edit| {
            let id = edit.symbol(parse_canonical("OLD-USDT").unwrap()).unwrap();
            edit.list(Venue::Okx, id, "OLD-USDT", 1.0).unwrap();
            edit.list(Venue::Bybit, id, "OLDUSDT", 1.0).unwrap();
            id
        });
        registry.edit(|edit| assert!(edit.unlist(Venue::Okx, old)));
        assert!(!registry.is_retired(old), "Bybit still lists it");
        registry.edit(|edit| assert!(edit.unlist(Venue::Bybit, old)));
        assert!(registry.is_retired(old));
        assert_eq!(registry.name(old).unwrap().as_str(), "OLD-USDT");
        assert_eq!(registry.lookup_on(Venue::Bybit, b"OLDUSDT"), None);
        assert_eq!(registry.live_len(), 0);
        let new = registry.register("NEW-USDT").unwrap();
        assert_ne!(new, old);
        // Relisted: the same id comes back to life.
        registry.edit(|edit| edit.list(Venue::Okx, old, "OLD-USDT", 1.0).unwrap());
        assert!(!registry.is_retired(old));
        assert_eq!(registry.lookup_on(Venue::Okx, b"OLD-USDT"), Some(old));
    }

    #[test]
    fn full_registry_refuses_and_counts() {
        let registry = SymbolRegistry::new(2);
        registry.register("BTC-USDT").unwrap();
        registry.register("ETH-USDT").unwrap();
        assert!(matches!(
            registry.register("SOL-USDT"),
            Err(RegistryError::Full { max_symbols: 2, .. })
        ));
        assert_eq!(registry.refused_full(), 1);
        // Known symbols still resolve when full.
        assert!(registry.register("ETH-USDT").is_ok());
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn price_multipliers_bring_a_venue_to_the_canonical_unit() {
        let registry = SymbolRegistry::new(4);
        let pepe = registry.edit(|edit| {
            let pepe = edit.symbol(parse_canonical("PEPE-USDT").unwrap()).unwrap();
            edit.list(Venue::Bybit, pepe, "1000PEPEUSDT", 1000.0)
                .unwrap();
            edit.list(Venue::Binance, pepe, "PEPEUSDT", 1.0).unwrap();
            assert!(edit.list(Venue::Okx, pepe, "PEPE-USDT", 0.0).is_err());
            pepe
        });
        assert_eq!(
            registry.lookup_on(Venue::Bybit, b"1000PEPEUSDT"),
            Some(pepe)
        );
        let quote = |venue: Venue| {
            FeedEvent::Quote(Quote {
                bid: 0.012,
                bid_qty: 5.0,
                ask: 0.013,
                ask_qty: 7.0,
                ts_exchange_ns: 0,
                ts_recv_ns: 1,
                seq: 0,
                symbol_id: pepe,
                venue_id: VenueId(venue.id().0),
                flags: 0,
                reserved: 0,
            })
        };
        let mut events = [quote(Venue::Bybit)];
        registry.apply_price_multipliers(Venue::Bybit, &mut events);
        let FeedEvent::Quote(scaled) = events[0] else {
            unreachable!("a quote stays a quote")
        };
        assert!((scaled.bid - 0.000012).abs() < 1e-15);
        assert!((scaled.ask_qty - 7000.0).abs() < 1e-9);
        let mut untouched = [quote(Venue::Binance)];
        registry.apply_price_multipliers(Venue::Binance, &mut untouched);
        let FeedEvent::Quote(same) = untouched[0] else {
            unreachable!("a quote stays a quote")
        };
        assert_eq!(same.bid, 0.012);
    }
}
