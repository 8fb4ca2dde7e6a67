//! What the simulated venues list: every instrument with its spelling per venue (WebSocket and
//! REST), its price path, and its listing state on each venue (not listed, trading, listed but not
//! trading). Built at start from `SimConfig::symbols` (listed and trading everywhere) and, with
//! `SimConfig::tricky_instruments`, the fixed tricky set below; changed while running by the churn
//! (`NEW<n>-USDT` listed, the oldest churned one delisted) and by `SimVenues::set_listing`.
//!
//! Sessions hold an `Arc<Instrument>` per subscription and read its state on every tick without
//! a lock, so data stops on the tick after a delisting. The table itself sits behind the
//! simulator's `RwLock`; churned and manually added instruments are dropped from it once no venue
//! lists them, so it stays bounded (`MAX_ADDED_INSTRUMENTS`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tickflow_core::registry::guess_symbol;
use tickflow_core::venue::{VENUE_COUNT, Venue};

use super::prices;

/// Instruments created by churn or `set_listing` that may be listed at once (beyond the
/// configured and tricky ones); one more is refused with `ListingError::Full`.
pub const MAX_ADDED_INSTRUMENTS: usize = 10_000;

/// How one venue lists one instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListingState {
    /// Not in the venue's instrument list; a subscription gets the venue's error reply (or no
    /// data) and data stops for subscriptions made before.
    Unlisted,
    /// Listed with the venue's trading status; subscriptions get data.
    Trading,
    /// Listed with the venue's not-trading status (Binance `BREAK`, OKX `suspend`, MEXC `"3"`,
    /// Gate `untradable`, KuCoin `enableTrading: false`, Bitget `halt`, HTX `offline`; Bybit's
    /// spot list shows trading instruments only, so there it is left out). Subscriptions are
    /// acknowledged but get no data.
    NotTrading,
}

impl ListingState {
    fn to_u8(self) -> u8 {
        match self {
            ListingState::Unlisted => 0,
            ListingState::Trading => 1,
            ListingState::NotTrading => 2,
        }
    }
    fn from_u8(value: u8) -> ListingState {
        match value {
            1 => ListingState::Trading,
            2 => ListingState::NotTrading,
            _ => ListingState::Unlisted,
        }
    }
}

/// Where an instrument of the simulator comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingOrigin {
    /// `SimConfig::symbols`: listed and trading on every venue.
    Configured,
    /// The fixed tricky set (`SimConfig::tricky_instruments`).
    Tricky,
    /// Added by churn step `n` (`NEW<n>-USDT`).
    Churn(u64),
    /// Added by `SimVenues::set_listing`.
    Manual,
}

/// One instrument as one venue lists it (`SimVenues::listings`).
#[derive(Clone, Debug, PartialEq)]
pub struct SimListing {
    /// `BASE-QUOTE` with the venue's own base and quote (`1000PEPE-USDT`, `BSV-USDT`).
    pub canonical: String,
    /// The base and quote fields of the REST list (HTX: lower case).
    pub base: String,
    pub quote: String,
    /// The symbol field of the REST list (Binance `DOTUSD`, OKX `DOT-USD`, HTX `dotusd`).
    pub rest_symbol: String,
    /// The spelling a WebSocket subscription uses (Binance: lower case, `dotusd`).
    pub ws_symbol: String,
    pub state: ListingState,
    pub origin: ListingOrigin,
    /// This instrument's mid is `price_multiplier` times the mid of `price_follows`
    /// (`1000PEPE-USDT` follows `PEPE-USDT` × 1000); `None` for an own price path.
    pub price_follows: Option<String>,
    pub price_multiplier: f64,
}

/// What one churn step did (`SimVenues::churn_listings_now`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingChange {
    /// The step number `n`, from 1.
    pub step: u64,
    /// `NEW<n>-USDT`.
    pub listed: String,
    /// The venues that list it (`churn_listing_venues(n, &config.venues)`).
    pub venues: Vec<Venue>,
    /// Earlier churned symbols delisted from every venue by this step (oldest first).
    pub delisted: Vec<String>,
}

/// Why `set_listing` refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListingError {
    #[error("{0:?} is not a canonical BASE-QUOTE name of ASCII letters and digits")]
    InvalidSymbol(String),
    #[error("{MAX_ADDED_INSTRUMENTS} added instruments are listed already")]
    Full,
}

/// The venues that list churn step `n`'s `NEW<n>-USDT`: `2 + n % (len - 1)` of `venues` (at
/// least two, at most all), taken cyclically from position `n % len`. With fewer than two venues,
/// all of them.
pub fn churn_listing_venues(step: u64, venues: &[Venue]) -> Vec<Venue> {
    let len = venues.len();
    if len <= 2 {
        return venues.to_vec();
    }
    let count = 2 + (step % (len as u64 - 1)) as usize;
    let start = (step % len as u64) as usize;
    (0..count).map(|k| venues[(start + k) % len]).collect()
}

/// A mid price path: `shared_mid(base_price, path_index, t) × multiplier`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PricePath {
    pub base_price: f64,
    pub path_index: usize,
    pub multiplier: f64,
}

impl PricePath {
    pub fn mid(&self, t_s: f64) -> f64 {
        prices::shared_mid(self.base_price, self.path_index, t_s) * self.multiplier
    }
}

/// One instrument: its spellings per venue, its price path and its state on each venue.
#[derive(Debug)]
pub(crate) struct Instrument {
    pub id: usize,
    pub canonical: String,
    pub base: String,
    pub quote: String,
    pub ws_symbol: [String; VENUE_COUNT],
    pub rest_symbol: [String; VENUE_COUNT],
    pub price: PricePath,
    /// The canonical name whose path this one follows (`price.multiplier` × its mid).
    pub price_follows: Option<String>,
    pub origin: ListingOrigin,
    /// Milliseconds since the Unix epoch when it was created (OKX `listTime`, Bitget `openTime`).
    pub listed_at_ms: i64,
    state: [AtomicU8; VENUE_COUNT],
}

impl Instrument {
    pub fn state(&self, venue: Venue) -> ListingState {
        ListingState::from_u8(self.state[venue.index()].load(Ordering::Acquire))
    }
    fn set_state(&self, venue: Venue, state: ListingState) -> ListingState {
        ListingState::from_u8(self.state[venue.index()].swap(state.to_u8(), Ordering::AcqRel))
    }
    fn listed_anywhere(&self) -> bool {
        Venue::ALL
            .iter()
            .any(|venue| self.state(*venue) != ListingState::Unlisted)
    }
    pub fn listing(&self, venue: Venue) -> SimListing {
        let (base, quote) = if venue == Venue::Htx {
            (
                self.base.to_ascii_lowercase(),
                self.quote.to_ascii_lowercase(),
            )
        } else {
            (self.base.clone(), self.quote.clone())
        };
        SimListing {
            canonical: self.canonical.clone(),
            base,
            quote,
            rest_symbol: self.rest_symbol[venue.index()].clone(),
            ws_symbol: self.ws_symbol[venue.index()].clone(),
            state: self.state(venue),
            origin: self.origin,
            price_follows: self.price_follows.clone(),
            price_multiplier: self.price.multiplier,
        }
    }
}

use ListingState::{NotTrading as Halted, Trading as On};
use Venue::{Binance, Bitget, Bybit, Gate, Htx, Kucoin, Mexc, Okx};

/// One entry of the tricky set.
struct TrickySpec {
    base: &'static str,
    quote: &'static str,
    /// Reference price in the quote currency (ignored when `follows` is set).
    price: f64,
    venues: &'static [(Venue, ListingState)],
    /// A venue whose symbol is not base+quote (KuCoin kept `BCHSV-USDT` after renaming the base
    /// to BSV).
    spelling_override: Option<(Venue, &'static str)>,
    /// Price = multiplier × this canonical instrument's mid.
    follows: Option<(&'static str, f64)>,
}

/// The tricky instruments (`SimConfig::tricky_instruments`); prices are reference levels in the
/// quote currency (PEPE is 100× its real price so that 8 decimals keep 5 significant digits).
const TRICKY: &[TrickySpec] = &[
    // Quotes other than USDT.
    TrickySpec {
        base: "BTC",
        quote: "USDC",
        price: 60_000.0,
        venues: &[
            (Binance, On),
            (Bybit, On),
            (Okx, On),
            (Gate, On),
            (Kucoin, On),
            (Bitget, On),
        ],
        spelling_override: None,
        follows: None,
    },
    TrickySpec {
        base: "ETH",
        quote: "FDUSD",
        price: 3_000.0,
        venues: &[(Binance, On), (Mexc, On), (Gate, On)],
        spelling_override: None,
        follows: None,
    },
    TrickySpec {
        base: "ETH",
        quote: "BTC",
        price: 0.05,
        venues: &[
            (Binance, On),
            (Okx, On),
            (Gate, On),
            (Kucoin, On),
            (Htx, On),
        ],
        spelling_override: None,
        follows: None,
    },
    // A stablecoin base.
    TrickySpec {
        base: "USDC",
        quote: "USDT",
        price: 1.0,
        venues: &[(Binance, On), (Bybit, On), (Okx, On), (Kucoin, On)],
        spelling_override: None,
        follows: None,
    },
    // Bases that end like a quote currency: DOTUSD is not DO-TUSD, BNBUSD and ARBUSD not *-BUSD.
    TrickySpec {
        base: "DOT",
        quote: "USD",
        price: 5.0,
        venues: &[(Binance, On), (Okx, On), (Bitget, On)],
        spelling_override: None,
        follows: None,
    },
    TrickySpec {
        base: "BNB",
        quote: "USD",
        price: 550.0,
        venues: &[(Binance, On), (Okx, On), (Mexc, On)],
        spelling_override: None,
        follows: None,
    },
    TrickySpec {
        base: "ARB",
        quote: "USD",
        price: 0.8,
        venues: &[(Binance, On), (Bybit, On), (Kucoin, On), (Bitget, On)],
        spelling_override: None,
        follows: None,
    },
    // A numeric prefix: Bybit and MEXC list 1000PEPE, priced per 1000 PEPE.
    TrickySpec {
        base: "PEPE",
        quote: "USDT",
        price: 0.001,
        venues: &[
            (Binance, On),
            (Okx, On),
            (Gate, On),
            (Kucoin, On),
            (Bitget, On),
            (Htx, On),
        ],
        spelling_override: None,
        follows: None,
    },
    TrickySpec {
        base: "1000PEPE",
        quote: "USDT",
        price: 1.0,
        venues: &[(Bybit, On), (Mexc, On)],
        spelling_override: None,
        follows: Some(("PEPE-USDT", 1_000.0)),
    },
    // Listed on one venue only.
    TrickySpec {
        base: "GT",
        quote: "USDT",
        price: 10.0,
        venues: &[(Gate, On)],
        spelling_override: None,
        follows: None,
    },
    // Trading on four venues, halted on Bitget.
    TrickySpec {
        base: "TRX",
        quote: "USDT",
        price: 0.12,
        venues: &[
            (Binance, On),
            (Bybit, On),
            (Okx, On),
            (Htx, On),
            (Bitget, Halted),
        ],
        spelling_override: None,
        follows: None,
    },
    // Listed everywhere, trading on Bybit only: each venue's not-trading status value.
    TrickySpec {
        base: "LUNA",
        quote: "USDT",
        price: 0.5,
        venues: &[
            (Binance, Halted),
            (Bybit, On),
            (Okx, Halted),
            (Mexc, Halted),
            (Gate, Halted),
            (Kucoin, Halted),
            (Bitget, Halted),
            (Htx, Halted),
        ],
        spelling_override: None,
        follows: None,
    },
    // A base renamed by one venue: KuCoin's symbol stayed BCHSV-USDT, its baseCurrency is BSV.
    TrickySpec {
        base: "BSV",
        quote: "USDT",
        price: 50.0,
        venues: &[(Okx, On), (Gate, On), (Kucoin, On), (Htx, On)],
        spelling_override: Some((Kucoin, "BCHSV-USDT")),
        follows: None,
    },
];

/// A quote currency's value in USD, for the reference price of an added instrument.
fn quote_in_usd(quote: &str) -> f64 {
    match quote {
        "BTC" => 60_000.0,
        "ETH" => 3_000.0,
        _ => 1.0,
    }
}

/// The instrument table (behind the simulator's `RwLock`).
#[derive(Debug)]
pub(crate) struct Listings {
    /// By id, ids in creation order (never reused).
    instruments: BTreeMap<usize, Arc<Instrument>>,
    by_canonical: HashMap<String, usize>,
    by_ws_symbol: [HashMap<String, usize>; VENUE_COUNT],
    next_id: usize,
    /// Instruments created by churn or `set_listing` (bounded by `MAX_ADDED_INSTRUMENTS`).
    added: usize,
    venues: Vec<Venue>,
    churn_step: u64,
    churn_keep: usize,
    /// Churned instruments still listed, oldest first.
    churn_live: VecDeque<usize>,
}

fn now_ms() -> i64 {
    tickflow_core::record::now_ns() / 1_000_000
}

impl Listings {
    /// The configured symbols on every venue, then (with `tricky`) the tricky set, skipping any
    /// tricky entry whose name is also configured.
    pub fn new(
        symbols: &[String],
        tricky: bool,
        venues: &[Venue],
        churn_keep: usize,
    ) -> std::io::Result<Listings> {
        let mut listings = Listings {
            instruments: BTreeMap::new(),
            by_canonical: HashMap::new(),
            by_ws_symbol: std::array::from_fn(|_| HashMap::new()),
            next_id: 0,
            added: 0,
            venues: venues.to_vec(),
            churn_step: 0,
            churn_keep: churn_keep.max(1),
            churn_live: VecDeque::new(),
        };
        for symbol in symbols {
            let name = guess_symbol(symbol).map_err(|error| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, error.to_string())
            })?;
            if listings.by_canonical.contains_key(name.as_str()) {
                continue;
            }
            let id = listings.next_id;
            let price = PricePath {
                base_price: prices::base_price(id, name.base()),
                path_index: id,
                multiplier: 1.0,
            };
            let instrument = listings.insert(
                name.base(),
                name.quote(),
                price,
                None,
                None,
                ListingOrigin::Configured,
            );
            for venue in Venue::ALL {
                instrument.set_state(venue, ListingState::Trading);
            }
        }
        if tricky {
            for spec in TRICKY {
                let canonical = format!("{}-{}", spec.base, spec.quote);
                if listings.by_canonical.contains_key(&canonical) {
                    continue;
                }
                let (price, follows) = match spec.follows {
                    Some((leader, multiplier)) => match listings.get(leader) {
                        Some(leader) => (
                            PricePath {
                                multiplier,
                                ..leader.price
                            },
                            Some(leader.canonical.clone()),
                        ),
                        None => continue,
                    },
                    None => (
                        PricePath {
                            base_price: spec.price,
                            path_index: listings.next_id,
                            multiplier: 1.0,
                        },
                        None,
                    ),
                };
                let instrument = listings.insert(
                    spec.base,
                    spec.quote,
                    price,
                    follows,
                    spec.spelling_override,
                    ListingOrigin::Tricky,
                );
                for (venue, state) in spec.venues {
                    instrument.set_state(*venue, *state);
                }
            }
        }
        Ok(listings)
    }

    fn insert(
        &mut self,
        base: &str,
        quote: &str,
        price: PricePath,
        price_follows: Option<String>,
        spelling_override: Option<(Venue, &str)>,
        origin: ListingOrigin,
    ) -> Arc<Instrument> {
        let id = self.next_id;
        self.next_id += 1;
        let ws_symbol: [String; VENUE_COUNT] = std::array::from_fn(|index| {
            let venue = Venue::ALL[index];
            match spelling_override {
                Some((override_venue, spelling)) if override_venue == venue => spelling.to_owned(),
                _ => {
                    let mut spelling = String::new();
                    tickflow_feed::protocol::write_venue_symbol(venue, base, quote, &mut spelling);
                    spelling
                }
            }
        });
        // Binance subscribes in lower case but lists upper case; the others list what they
        // subscribe.
        let rest_symbol = std::array::from_fn(|index| {
            if Venue::ALL[index] == Venue::Binance {
                ws_symbol[index].to_ascii_uppercase()
            } else {
                ws_symbol[index].clone()
            }
        });
        let canonical = format!("{base}-{quote}");
        let instrument = Arc::new(Instrument {
            id,
            canonical: canonical.clone(),
            base: base.to_owned(),
            quote: quote.to_owned(),
            ws_symbol,
            rest_symbol,
            price,
            price_follows,
            origin,
            listed_at_ms: now_ms(),
            state: std::array::from_fn(|_| AtomicU8::new(0)),
        });
        for venue in Venue::ALL {
            self.by_ws_symbol[venue.index()]
                .insert(instrument.ws_symbol[venue.index()].clone(), id);
        }
        self.by_canonical.insert(canonical, id);
        self.instruments.insert(id, Arc::clone(&instrument));
        instrument
    }

    fn get(&self, canonical: &str) -> Option<&Arc<Instrument>> {
        self.by_canonical
            .get(canonical)
            .and_then(|id| self.instruments.get(id))
    }

    /// The instrument `venue` knows by WebSocket spelling `ws_symbol`, whatever its state.
    pub fn by_ws_symbol(&self, venue: Venue, ws_symbol: &str) -> Option<&Arc<Instrument>> {
        self.by_ws_symbol[venue.index()]
            .get(ws_symbol)
            .and_then(|id| self.instruments.get(id))
    }

    /// Every instrument `venue` lists (trading or not), in creation order.
    pub fn listed(&self, venue: Venue) -> impl Iterator<Item = &Arc<Instrument>> {
        self.instruments
            .values()
            .filter(move |instrument| instrument.state(venue) != ListingState::Unlisted)
    }

    /// Drops an added instrument no venue lists any more (sessions keep their `Arc`, which now
    /// says unlisted everywhere).
    fn drop_if_unlisted(&mut self, id: usize) {
        let Some(instrument) = self.instruments.get(&id) else {
            return;
        };
        let added = matches!(
            instrument.origin,
            ListingOrigin::Churn(_) | ListingOrigin::Manual
        );
        if !added || instrument.listed_anywhere() {
            return;
        }
        let instrument = Arc::clone(instrument);
        self.instruments.remove(&id);
        self.by_canonical.remove(&instrument.canonical);
        for venue in Venue::ALL {
            self.by_ws_symbol[venue.index()].remove(&instrument.ws_symbol[venue.index()]);
        }
        self.churn_live.retain(|live| *live != id);
        self.added = self.added.saturating_sub(1);
    }

    fn add_instrument(
        &mut self,
        base: &str,
        quote: &str,
        origin: ListingOrigin,
    ) -> Result<Arc<Instrument>, ListingError> {
        if self.added >= MAX_ADDED_INSTRUMENTS {
            return Err(ListingError::Full);
        }
        self.added += 1;
        let id = self.next_id;
        let price = PricePath {
            base_price: prices::base_price(id, base) / quote_in_usd(quote),
            path_index: id,
            multiplier: 1.0,
        };
        Ok(self.insert(base, quote, price, None, None, origin))
    }

    /// One churn step: lists `NEW<n>-USDT` on `churn_listing_venues(n, venues)` and delists the
    /// oldest churned symbols beyond the newest `churn_keep`.
    pub fn churn(&mut self) -> ListingChange {
        self.churn_step += 1;
        let step = self.churn_step;
        let base = format!("NEW{step}");
        let listed = format!("{base}-USDT");
        let venues = churn_listing_venues(step, &self.venues);
        let instrument = match self.get(&listed) {
            Some(instrument) => Some(Arc::clone(instrument)),
            None => self
                .add_instrument(&base, "USDT", ListingOrigin::Churn(step))
                .ok(),
        };
        match instrument {
            Some(instrument) => {
                for venue in &venues {
                    instrument.set_state(*venue, ListingState::Trading);
                }
                if !self.churn_live.contains(&instrument.id) {
                    self.churn_live.push_back(instrument.id);
                }
            }
            None => tracing::warn!(%listed, "sim: churn refused, too many added instruments"),
        }
        let mut delisted = Vec::new();
        while self.churn_live.len() > self.churn_keep {
            let Some(oldest) = self.churn_live.pop_front() else {
                break;
            };
            if let Some(instrument) = self.instruments.get(&oldest).cloned() {
                for venue in Venue::ALL {
                    instrument.set_state(venue, ListingState::Unlisted);
                }
                delisted.push(instrument.canonical.clone());
                self.drop_if_unlisted(oldest);
            }
        }
        ListingChange {
            step,
            listed,
            venues,
            delisted,
        }
    }

    /// Sets how `venue` lists `canonical` (`BASE-QUOTE`), creating the instrument when new;
    /// returns the previous state.
    pub fn set_listing(
        &mut self,
        venue: Venue,
        canonical: &str,
        state: ListingState,
    ) -> Result<ListingState, ListingError> {
        let invalid = || ListingError::InvalidSymbol(canonical.to_owned());
        let (base, quote) = canonical.split_once('-').ok_or_else(invalid)?;
        let is_part = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
        };
        if !is_part(base) || !is_part(quote) {
            return Err(invalid());
        }
        let instrument = match self.get(canonical) {
            Some(instrument) => Arc::clone(instrument),
            None if state == ListingState::Unlisted => return Ok(ListingState::Unlisted),
            None => self.add_instrument(base, quote, ListingOrigin::Manual)?,
        };
        let previous = instrument.set_state(venue, state);
        self.drop_if_unlisted(instrument.id);
        Ok(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Listings {
        Listings::new(
            &["BTC-USDT".to_owned(), "ETH-USDT".to_owned()],
            true,
            &Venue::ALL,
            1,
        )
        .expect("valid symbols")
    }

    #[test]
    fn churn_venues_are_at_least_two_and_predictable() {
        for step in 1..50 {
            let venues = churn_listing_venues(step, &Venue::ALL);
            assert!(venues.len() >= 2, "step {step}");
            let mut unique = venues.clone();
            unique.sort_by_key(|venue| venue.index());
            unique.dedup();
            assert_eq!(unique.len(), venues.len(), "no venue twice at step {step}");
        }
        assert_eq!(
            churn_listing_venues(1, &Venue::ALL).len(),
            3,
            "step 1: 2 + 1 % 7"
        );
        assert_eq!(churn_listing_venues(5, &[Venue::Okx]), vec![Venue::Okx]);
    }

    #[test]
    fn pepe_1000_follows_pepe_times_1000() {
        let listings = table();
        let pepe = listings.get("PEPE-USDT").expect("listed");
        let pepe_1000 = listings.get("1000PEPE-USDT").expect("listed");
        for t_s in [0.0, 12.5, 400.0] {
            let ratio = pepe_1000.price.mid(t_s) / pepe.price.mid(t_s);
            assert!((ratio - 1_000.0).abs() < 1e-6, "{ratio}");
        }
        assert_eq!(pepe_1000.state(Venue::Bybit), ListingState::Trading);
        assert_eq!(pepe_1000.state(Venue::Binance), ListingState::Unlisted);
        assert_eq!(pepe.state(Venue::Bybit), ListingState::Unlisted);
    }

    #[test]
    fn a_configured_name_wins_over_the_tricky_entry() {
        let listings =
            Listings::new(&["TRX-USDT".to_owned()], true, &Venue::ALL, 1).expect("valid symbols");
        let trx = listings.get("TRX-USDT").expect("listed");
        assert_eq!(trx.origin, ListingOrigin::Configured);
        assert_eq!(trx.state(Venue::Bitget), ListingState::Trading);
    }

    #[test]
    fn set_listing_adds_and_drops_manual_instruments() {
        let mut listings = table();
        assert_eq!(
            listings.set_listing(Venue::Okx, "ABC-USDT", ListingState::Trading),
            Ok(ListingState::Unlisted)
        );
        assert!(listings.by_ws_symbol(Venue::Okx, "ABC-USDT").is_some());
        assert_eq!(
            listings.set_listing(Venue::Okx, "ABC-USDT", ListingState::Unlisted),
            Ok(ListingState::Trading)
        );
        assert!(listings.by_ws_symbol(Venue::Okx, "ABC-USDT").is_none());
        assert_eq!(listings.added, 0);
        for bad in ["abc-usdt", "ABCUSDT", "A-B-C", "-USDT", "AB_C-USDT"] {
            assert!(
                matches!(
                    listings.set_listing(Venue::Okx, bad, ListingState::Trading),
                    Err(ListingError::InvalidSymbol(_))
                ),
                "{bad}"
            );
        }
    }
}
