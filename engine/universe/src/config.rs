//! `[universe]`: which quotes, how many venues, allow/deny lists, the cap, the per-venue aliases
//! applied before matching, and the fetch limits (timeouts, body cap, retries, refresh interval).
//! Parsing and validation only; nothing here opens a socket.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use tickflow_core::config::ConfigValueError;
use tickflow_core::registry::parse_canonical;
use tickflow_core::venue::Venue;

/// Most names in `universe.allow` or `universe.deny`, and most `[[universe.alias]]` entries.
pub const MAX_LIST_ENTRIES: usize = 100_000;
/// Most quote currencies in `universe.quotes`.
pub const MAX_QUOTES: usize = 64;
/// Longest asset code accepted in config (a canonical name holds at most 24 bytes in all).
pub const MAX_ASSET_BYTES: usize = 22;

/// `[universe]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UniverseConfig {
    /// Quote currencies kept (`["USDT"]`): a listing quoted in anything else is not selected.
    pub quotes: Vec<String>,
    /// A symbol is kept when at least this many venues trade it (a spread needs two).
    pub min_venues: usize,
    /// Most symbols in the universe. When more qualify, the ones listed on the most venues win,
    /// ties by name; on a refresh, symbols already in the universe keep their place.
    pub max_symbols: usize,
    /// Share of `engine.max_symbols` kept free for symbols added while running (ids are never
    /// reused, so every symbol ever added takes a registry entry): `max_symbols` may be at most
    /// `engine.max_symbols × (100 − registry_headroom_percent) / 100`.
    pub registry_headroom_percent: u32,
    /// Canonical `BASE-QUOTE` names; when not empty, only these are kept.
    pub allow: Vec<String>,
    /// Canonical `BASE-QUOTE` names never kept.
    pub deny: Vec<String>,
    /// Seconds between refreshes of the lists; 0 = discover once at start.
    pub refresh_interval_s: u64,
    /// One instrument-list request (connect, TLS, request, whole body) must finish within this.
    pub request_timeout_ms: u64,
    /// A response body larger than this is refused (Binance's full exchangeInfo is several MiB).
    pub max_response_bytes: usize,
    /// Most instruments kept from one venue's list (Binance lists about 3 000, Gate and MEXC
    /// about as many): beyond it, instruments are dropped and counted.
    pub max_instruments_per_venue: usize,
    /// Requests per venue at start (the first one included) before starting without it.
    pub start_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub retry_backoff_ms: u64,
    /// Longest wait between attempts, and longest rate-limit ban (`Retry-After`) waited out
    /// before a request; a venue banned for longer fails at once until the ban ends.
    pub retry_backoff_max_ms: u64,
    /// Per-venue settings (`[universe.venue.binance]`).
    pub venue: BTreeMap<String, UniverseVenueConfig>,
    /// Identity overrides applied to a venue's base asset before symbols are matched across venues
    /// (`[[universe.alias]]`).
    #[serde(rename = "alias")]
    pub aliases: Vec<AliasConfig>,
}

impl Default for UniverseConfig {
    fn default() -> Self {
        UniverseConfig {
            quotes: vec!["USDT".to_owned()],
            min_venues: 2,
            max_symbols: 1000,
            registry_headroom_percent: 25,
            allow: Vec::new(),
            deny: Vec::new(),
            refresh_interval_s: 3600,
            request_timeout_ms: 10_000,
            max_response_bytes: 16 << 20,
            max_instruments_per_venue: 10_000,
            start_attempts: 3,
            retry_backoff_ms: 1_000,
            retry_backoff_max_ms: 30_000,
            venue: BTreeMap::new(),
            aliases: Vec::new(),
        }
    }
}

/// `[universe.venue.<name>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UniverseVenueConfig {
    /// REST base URL (`https://` or `http://`, optionally with a path prefix); the instrument
    /// path (`request_path`) is appended. Empty = the venue's public API (`default_base_url`).
    pub url: String,
}

/// `[[universe.alias]]`: on `venue`, the base asset `venue_base` is the canonical `base`, and the
/// venue's prices are `multiplier` × the canonical price (`1000PEPE` against `PEPE`: 1000).
/// A rename is an alias with multiplier 1; a ticker that names another asset than the same
/// ticker elsewhere gets a base of its own (`NEIRO` → `NEIROETH`) so it is never paired.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    pub venue: String,
    pub venue_base: String,
    pub base: String,
    #[serde(default = "unit_multiplier")]
    pub multiplier: f64,
}

fn unit_multiplier() -> f64 {
    1.0
}

/// The venue's public REST base URL.
pub fn default_base_url(venue: Venue) -> &'static str {
    match venue {
        Venue::Binance => "https://api.binance.com",
        Venue::Bybit => "https://api.bybit.com",
        Venue::Okx => "https://www.okx.com",
        Venue::Mexc => "https://api.mexc.com",
        Venue::Gate => "https://api.gateio.ws",
        Venue::Kucoin => "https://api.kucoin.com",
        Venue::Bitget => "https://api.bitget.com",
        Venue::Htx => "https://api.huobi.pro",
    }
}

fn invalid(
    key: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> ConfigValueError {
    ConfigValueError::new(key, value, reason)
}

fn is_asset(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_ASSET_BYTES
        && code.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

impl UniverseConfig {
    /// The REST base URL used for `venue` (configured, or the public one).
    pub fn base_url(&self, venue: Venue) -> &str {
        match self.venue.get(venue.name()) {
            Some(venue_config) if !venue_config.url.is_empty() => &venue_config.url,
            _ => default_base_url(venue),
        }
    }

    /// The quote currencies, upper-cased.
    pub fn quote_set(&self) -> BTreeSet<String> {
        self.quotes
            .iter()
            .map(|quote| quote.to_ascii_uppercase())
            .collect()
    }

    /// Largest `max_symbols` that `engine_max_symbols` leaves the configured headroom for.
    pub fn max_symbols_allowed(&self, engine_max_symbols: usize) -> usize {
        let kept_percent = 100usize.saturating_sub(self.registry_headroom_percent as usize);
        let allowed = engine_max_symbols.saturating_mul(kept_percent) / 100;
        // At least one registry entry stays free whatever the percentage.
        allowed.min(engine_max_symbols.saturating_sub(1))
    }

    /// Checks every value, naming the key (`universe.<key>`); `engine_max_symbols` is
    /// `engine.max_symbols`, which the cap must leave headroom below.
    pub fn validate(&self, engine_max_symbols: usize) -> Result<(), ConfigValueError> {
        if self.quotes.is_empty() || self.quotes.len() > MAX_QUOTES {
            return Err(invalid(
                "universe.quotes",
                format!("{:?}", self.quotes),
                "must list 1 to 64 quote currencies, e.g. [\"USDT\"]",
            ));
        }
        if let Some(quote) = self.quotes.iter().find(|quote| !is_asset(quote)) {
            return Err(invalid(
                "universe.quotes",
                format!("{quote:?}"),
                "a quote currency is 1 to 22 ASCII letters and digits",
            ));
        }
        if self.min_venues == 0 || self.min_venues > tickflow_core::venue::VENUE_COUNT {
            return Err(invalid(
                "universe.min_venues",
                self.min_venues,
                "must be 1 to 8 (a spread needs 2)",
            ));
        }
        if self.registry_headroom_percent > 90 {
            return Err(invalid(
                "universe.registry_headroom_percent",
                self.registry_headroom_percent,
                "must be 0 to 90",
            ));
        }
        let allowed = self.max_symbols_allowed(engine_max_symbols);
        if self.max_symbols == 0 || self.max_symbols > allowed {
            return Err(ConfigValueError {
                key: "universe.max_symbols",
                value: format!(
                    "{} (engine.max_symbols = {engine_max_symbols}, universe.registry_headroom_percent = {}: at most {allowed})",
                    self.max_symbols, self.registry_headroom_percent
                ),
                reason: "must be at least 1 and leave engine.max_symbols room for symbols added while running: raise engine.max_symbols or lower universe.max_symbols",
            });
        }
        for (key, names) in [
            ("universe.allow", &self.allow),
            ("universe.deny", &self.deny),
        ] {
            if names.len() > MAX_LIST_ENTRIES {
                return Err(invalid(key, names.len(), "at most 100000 names"));
            }
            if let Some(name) = names.iter().find(|name| parse_canonical(name).is_err()) {
                return Err(invalid(
                    key,
                    format!("{name:?}"),
                    "must be canonical BASE-QUOTE, e.g. BTC-USDT (one '-', letters and digits, at most 24 bytes)",
                ));
            }
        }
        if self.refresh_interval_s != 0 && !(60..=604_800).contains(&self.refresh_interval_s) {
            return Err(invalid(
                "universe.refresh_interval_s",
                self.refresh_interval_s,
                "must be 0 (no refresh) or 60 to 604800 (a week)",
            ));
        }
        if !(100..=300_000).contains(&self.request_timeout_ms) {
            return Err(invalid(
                "universe.request_timeout_ms",
                self.request_timeout_ms,
                "must be 100 to 300000",
            ));
        }
        if !((64 << 10)..=(1 << 30)).contains(&self.max_response_bytes) {
            return Err(invalid(
                "universe.max_response_bytes",
                self.max_response_bytes,
                "must be 65536 to 1073741824",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_instruments_per_venue) {
            return Err(ConfigValueError::new(
                "universe.max_instruments_per_venue",
                self.max_instruments_per_venue,
                "must be 1 to 1000000",
            ));
        }
        if !(1..=20).contains(&self.start_attempts) {
            return Err(invalid(
                "universe.start_attempts",
                self.start_attempts,
                "must be 1 to 20",
            ));
        }
        if !(1..=600_000).contains(&self.retry_backoff_ms) {
            return Err(invalid(
                "universe.retry_backoff_ms",
                self.retry_backoff_ms,
                "must be 1 to 600000",
            ));
        }
        if self.retry_backoff_max_ms < self.retry_backoff_ms
            || self.retry_backoff_max_ms > 3_600_000
        {
            return Err(invalid(
                "universe.retry_backoff_max_ms",
                self.retry_backoff_max_ms,
                "must be universe.retry_backoff_ms to 3600000",
            ));
        }
        for (name, venue_config) in &self.venue {
            if Venue::from_name(name).is_none() {
                return Err(invalid(
                    "universe.venue",
                    name,
                    "unknown venue (binance, bybit, okx, mexc, gate, kucoin, bitget, htx)",
                ));
            }
            let url = &venue_config.url;
            if !url.is_empty() {
                let scheme_ok = url
                    .get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
                    || url
                        .get(..8)
                        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
                if !scheme_ok || tickflow_feed::Endpoint::parse(url).is_err() {
                    return Err(invalid(
                        "universe.venue.*.url",
                        format!("{url:?} (universe.venue.{name}.url)"),
                        "must be an http:// or https:// URL with a host",
                    ));
                }
            }
        }
        if self.aliases.len() > MAX_LIST_ENTRIES {
            return Err(invalid(
                "universe.alias",
                self.aliases.len(),
                "at most 100000 entries",
            ));
        }
        let mut seen = BTreeSet::new();
        for alias in &self.aliases {
            let Some(venue) = Venue::from_name(&alias.venue) else {
                return Err(invalid(
                    "universe.alias.venue",
                    format!("{:?}", alias.venue),
                    "unknown venue (binance, bybit, okx, mexc, gate, kucoin, bitget, htx)",
                ));
            };
            if !is_asset(&alias.venue_base) {
                return Err(invalid(
                    "universe.alias.venue_base",
                    format!("{:?}", alias.venue_base),
                    "a base asset is 1 to 22 ASCII letters and digits",
                ));
            }
            if !is_asset(&alias.base) {
                return Err(invalid(
                    "universe.alias.base",
                    format!("{:?}", alias.base),
                    "a base asset is 1 to 22 ASCII letters and digits",
                ));
            }
            if !(alias.multiplier.is_finite() && alias.multiplier > 0.0) {
                return Err(invalid(
                    "universe.alias.multiplier",
                    alias.multiplier,
                    "must be finite and > 0",
                ));
            }
            if !seen.insert((venue, alias.venue_base.to_ascii_uppercase())) {
                return Err(invalid(
                    "universe.alias",
                    format!("{} {:?}", alias.venue, alias.venue_base),
                    "one alias per (venue, venue_base)",
                ));
            }
        }
        Ok(())
    }

    /// The aliases by (venue, upper-case venue base): (canonical base, multiplier). Entries with
    /// an unknown venue are skipped (`validate` refuses them).
    pub fn alias_map(&self) -> BTreeMap<(Venue, String), (String, f64)> {
        self.aliases
            .iter()
            .filter_map(|alias| {
                let venue = Venue::from_name(&alias.venue)?;
                Some((
                    (venue, alias.venue_base.to_ascii_uppercase()),
                    (alias.base.to_ascii_uppercase(), alias.multiplier),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> UniverseConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn defaults_are_valid_with_room_in_the_registry() {
        let config = parse("");
        assert_eq!(config.quotes, ["USDT"]);
        assert_eq!((config.min_venues, config.max_symbols), (2, 1000));
        assert_eq!(config.refresh_interval_s, 3600);
        config.validate(2000).expect("1000 of 2000 leaves room");
        // 1000 × 4/3 rounds up to 1334.
        config.validate(1334).expect("exactly 25 % headroom");
        let error = config.validate(1333).expect_err("less than 25 % headroom");
        let text = error.to_string();
        assert!(
            text.contains("universe.max_symbols") && text.contains("engine.max_symbols"),
            "names both keys: {text}"
        );
    }

    #[test]
    fn the_cap_always_leaves_one_free_entry() {
        let config = parse("max_symbols = 10\nregistry_headroom_percent = 0\n");
        config.validate(11).expect("one entry free");
        assert!(config.validate(10).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<UniverseConfig>("quote = [\"USDT\"]\n").is_err());
        assert!(toml::from_str::<UniverseConfig>("[venue.binance]\nuri = \"x\"\n").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("quotes = []\n", "universe.quotes"),
            ("quotes = [\"US-DT\"]\n", "universe.quotes"),
            ("min_venues = 0\n", "universe.min_venues"),
            ("min_venues = 9\n", "universe.min_venues"),
            ("max_symbols = 0\n", "universe.max_symbols"),
            ("allow = [\"DOTUSD\"]\n", "universe.allow"),
            ("deny = [\"BTC_USDT\"]\n", "universe.deny"),
            ("refresh_interval_s = 5\n", "universe.refresh_interval_s"),
            ("request_timeout_ms = 0\n", "universe.request_timeout_ms"),
            ("max_response_bytes = 10\n", "universe.max_response_bytes"),
            ("start_attempts = 0\n", "universe.start_attempts"),
            ("retry_backoff_ms = 0\n", "universe.retry_backoff_ms"),
            (
                "retry_backoff_ms = 5000\nretry_backoff_max_ms = 4000\n",
                "universe.retry_backoff_max_ms",
            ),
            ("[venue.ftx]\nurl = \"http://x\"\n", "universe.venue"),
            ("[venue.okx]\nurl = \"wss://x\"\n", "universe.venue.*.url"),
            ("[venue.okx]\nurl = \"http://\"\n", "universe.venue.*.url"),
            (
                "[[alias]]\nvenue = \"ftx\"\nvenue_base = \"A\"\nbase = \"B\"\n",
                "universe.alias.venue",
            ),
            (
                "[[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000-PEPE\"\nbase = \"PEPE\"\n",
                "universe.alias.venue_base",
            ),
            (
                "[[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000PEPE\"\nbase = \"\"\n",
                "universe.alias.base",
            ),
            (
                "[[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000PEPE\"\nbase = \"PEPE\"\nmultiplier = 0.0\n",
                "universe.alias.multiplier",
            ),
            (
                "[[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000PEPE\"\nbase = \"PEPE\"\n\
                 [[alias]]\nvenue = \"Bybit\"\nvenue_base = \"1000pepe\"\nbase = \"X\"\n",
                "universe.alias",
            ),
        ];
        for (text, key) in cases {
            let error = parse(text)
                .validate(2000)
                .expect_err(&format!("refused: {text}"));
            assert_eq!(error.key, *key, "{text}: {error}");
        }
    }

    #[test]
    fn venue_urls_and_aliases_are_read() {
        let config = parse(
            "[venue.binance]\nurl = \"http://127.0.0.1:9000/binance\"\n\
             [[alias]]\nvenue = \"bybit\"\nvenue_base = \"1000pepe\"\nbase = \"pepe\"\nmultiplier = 1000.0\n\
             [[alias]]\nvenue = \"gate\"\nvenue_base = \"NEIRO\"\nbase = \"NEIROETH\"\n",
        );
        config.validate(2000).expect("valid");
        assert_eq!(
            config.base_url(Venue::Binance),
            "http://127.0.0.1:9000/binance"
        );
        assert_eq!(config.base_url(Venue::Okx), "https://www.okx.com");
        let aliases = config.alias_map();
        assert_eq!(
            aliases.get(&(Venue::Bybit, "1000PEPE".to_owned())),
            Some(&("PEPE".to_owned(), 1000.0))
        );
        assert_eq!(
            aliases.get(&(Venue::Gate, "NEIRO".to_owned())),
            Some(&("NEIROETH".to_owned(), 1.0))
        );
    }
}
