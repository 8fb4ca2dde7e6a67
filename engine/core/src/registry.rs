//! The symbol registry: canonical `BASE-QUOTE` names interned to stable `SymbolId`s.
//!
//! Every venue spelling (BTCUSDT, BTC_USDT, btcusdt, BTC-USDT) maps to one id. Registration is
//! idempotent (a reconnect that registers its symbols again changes nothing) and bounded by
//! `max_symbols`. Lookups are lock-free and allocation-free: readers load an immutable table through
//! arc-swap; the rare writer (start-up, a new subscription) copies the table and swaps it in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustc_hash::FxBuildHasher;

use crate::records::SymbolId;

/// Longest canonical name kept (`BASE-QUOTE`, ASCII).
pub const SYMBOL_NAME_CAPACITY_BYTES: usize = 24;

/// Quote assets recognised when a venue spells a symbol without a separator (BTCUSDT). Longest
/// match wins, so FDUSD beats USD and USDT beats USD.
const KNOWN_QUOTE_ASSETS: &[&str] = &[
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDE", "USD1", "DAI", "USD", "BTC", "ETH", "BNB",
    "EUR", "TRY", "BRL", "GBP", "JPY", "AUD", "MXN", "PLN", "RON", "ZAR", "UAH", "IDR", "ARS",
    "SOL", "XRP", "DOGE", "TRX", "HT", "KCS", "BGB", "MX", "GT", "OKB",
];

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    #[error("symbol registry is full: max_symbols = {max_symbols}; cannot add {name:?}")]
    Full { max_symbols: usize, name: String },
    #[error(
        "symbol {name:?} is not a valid BASE-QUOTE name (ASCII letters and digits, a known quote asset or a separator, at most {SYMBOL_NAME_CAPACITY_BYTES} bytes)"
    )]
    Invalid { name: String },
    #[error(
        "symbol {name:?} collides with already registered {existing:?} once separators are removed"
    )]
    Collision { name: String, existing: String },
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

#[derive(Clone, Default)]
struct RegistryTable {
    names: Vec<SymbolName>,
    by_key: HashMap<CompactKey, SymbolId, FxBuildHasher>,
}

/// Interns canonical symbols; shared by every feed, decoder and shard (`Arc<SymbolRegistry>`).
pub struct SymbolRegistry {
    max_symbols: usize,
    table: ArcSwap<RegistryTable>,
    writer: Mutex<()>,
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

/// Splits a symbol spelling into (base, quote): at a separator when there is one, otherwise at the
/// longest known quote-asset suffix.
pub fn parse_symbol(spelling: &str) -> Result<SymbolName, RegistryError> {
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

impl SymbolRegistry {
    pub fn new(max_symbols: usize) -> SymbolRegistry {
        SymbolRegistry {
            max_symbols,
            table: ArcSwap::from_pointee(RegistryTable::default()),
            writer: Mutex::new(()),
        }
    }

    pub fn max_symbols(&self) -> usize {
        self.max_symbols
    }

    pub fn len(&self) -> usize {
        self.table.load().names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers `spelling` (any venue spelling) and returns its id. Registering a symbol that is
    /// already known returns the same id and changes nothing. Cold path: copies the table.
    pub fn register(&self, spelling: &str) -> Result<SymbolId, RegistryError> {
        let name = parse_symbol(spelling)?;
        let key = CompactKey::from_spelling(name.as_str().as_bytes()).ok_or_else(|| {
            RegistryError::Invalid {
                name: spelling.to_string(),
            }
        })?;
        // A poisoned lock only means another registration panicked; the table itself is
        // replaced atomically, so it is still consistent.
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.table.load_full();
        if let Some(&id) = current.by_key.get(&key) {
            let existing = current.names[id.0 as usize];
            if existing != name {
                return Err(RegistryError::Collision {
                    name: name.as_str().to_string(),
                    existing: existing.as_str().to_string(),
                });
            }
            return Ok(id);
        }
        if current.names.len() >= self.max_symbols {
            return Err(RegistryError::Full {
                max_symbols: self.max_symbols,
                name: name.as_str().to_string(),
            });
        }
        let mut next = RegistryTable {
            names: Vec::with_capacity(self.max_symbols.min(current.names.len() + 64)),
            by_key: HashMap::with_capacity_and_hasher(current.names.len() + 1, FxBuildHasher),
        };
        next.names.extend_from_slice(&current.names);
        next.by_key
            .extend(current.by_key.iter().map(|(k, v)| (*k, *v)));
        let id = SymbolId(next.names.len() as u32);
        next.names.push(name);
        next.by_key.insert(key, id);
        self.table.store(Arc::new(next));
        Ok(id)
    }

    /// Registers many symbols; stops at the first error.
    pub fn register_all<'a>(
        &self,
        spellings: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<SymbolId>, RegistryError> {
        spellings
            .into_iter()
            .map(|spelling| self.register(spelling))
            .collect()
    }

    /// Finds the id of any venue spelling. Hot path: lock-free, no allocation.
    #[inline]
    pub fn lookup(&self, spelling: &[u8]) -> Option<SymbolId> {
        let key = CompactKey::from_spelling(spelling)?;
        self.table.load().by_key.get(&key).copied()
    }

    /// The canonical name of `id`.
    pub fn name(&self, id: SymbolId) -> Option<SymbolName> {
        self.table.load().names.get(id.0 as usize).copied()
    }

    /// Worst-case bytes this registry can hold at `max_symbols` (for the memory budget).
    pub fn budget_bytes(max_symbols: usize) -> usize {
        // Two tables can be alive at once (the old one while readers finish), each a names vector
        // plus a hash map (key + id + control byte, at the map's maximum load factor of 7/8).
        let names = max_symbols * size_of::<SymbolName>();
        let map_entry = size_of::<CompactKey>() + size_of::<SymbolId>() + 1;
        let map = (max_symbols * 8).div_ceil(7).next_power_of_two() * map_entry;
        2 * (names + map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(spelling: &str, expected: &str) {
        assert_eq!(
            parse_symbol(spelling).map(|n| n.to_string()),
            Ok(expected.to_string())
        );
    }

    #[test]
    fn every_venue_spelling_is_canonical() {
        check_parse("BTCUSDT", "BTC-USDT");
        check_parse("BTC_USDT", "BTC-USDT");
        check_parse("btcusdt", "BTC-USDT");
        check_parse("BTC-USDT", "BTC-USDT");
        check_parse("btc/usdt", "BTC-USDT");
        check_parse("BNBBTC", "BNB-BTC");
        check_parse("ETHFDUSD", "ETH-FDUSD");
        check_parse("trioeth", "TRIO-ETH");
        check_parse("GT_USDT", "GT-USDT");
        assert!(parse_symbol("USDT").is_err());
        assert!(parse_symbol("BTC-").is_err());
        assert!(parse_symbol("BTC USDT").is_err());
        assert!(parse_symbol("XYZQQQ").is_err());
        assert!(parse_symbol("BTC-ÜSDT").is_err());
    }

    #[test]
    fn spellings_share_one_id_and_lookup_finds_them() {
        let registry = SymbolRegistry::new(10);
        let id = registry.register("BTC-USDT").unwrap();
        for spelling in ["BTCUSDT", "btcusdt", "BTC_USDT", "btc-usdt"] {
            assert_eq!(registry.register(spelling), Ok(id));
            assert_eq!(registry.lookup(spelling.as_bytes()), Some(id));
        }
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.name(id).unwrap().as_str(), "BTC-USDT");
        assert_eq!(registry.name(id).unwrap().base(), "BTC");
        assert_eq!(registry.name(id).unwrap().quote(), "USDT");
        assert_eq!(registry.lookup(b"ETHUSDT"), None);
        assert_eq!(registry.lookup(b"BTC USDT"), None);
        assert_eq!(registry.lookup(&[0xff, 0xfe]), None);
    }

    #[test]
    fn reregistering_on_every_reconnect_never_grows() {
        let registry = SymbolRegistry::new(100);
        let symbols: Vec<String> = (0..50).map(|i| format!("C{i}-USDT")).collect();
        let first = registry
            .register_all(symbols.iter().map(String::as_str))
            .unwrap();
        for _reconnect in 0..1000 {
            let again = registry
                .register_all(symbols.iter().map(String::as_str))
                .unwrap();
            assert_eq!(again, first);
        }
        assert_eq!(registry.len(), 50);
    }

    #[test]
    fn bounded_by_max_symbols() {
        let registry = SymbolRegistry::new(2);
        registry.register("BTC-USDT").unwrap();
        registry.register("ETH-USDT").unwrap();
        assert!(matches!(
            registry.register("SOL-USDT"),
            Err(RegistryError::Full { max_symbols: 2, .. })
        ));
        // Known symbols still resolve when full.
        assert!(registry.register("ETHUSDT").is_ok());
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn separator_collisions_are_refused() {
        let registry = SymbolRegistry::new(10);
        registry.register("AB-CUSDT").unwrap();
        assert!(matches!(
            registry.register("ABC-USDT"),
            Err(RegistryError::Collision { .. })
        ));
    }
}
