//! The universe in the engine: discovery at start and each refresh round (`tickflow-universe`
//! fetches and selects), and what a selection does to the registry: every symbol registered from
//! its base and quote, every listing in the venue's subscription spelling, listings no longer
//! selected retired (ids stay). The feeds re-plan from the registry afterwards
//! (`Feeds::refresh`). Also the hand-written list's universe, for `tickflow universe`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tickflow_core::records::SymbolId;
use tickflow_core::registry::{RegistryError, SymbolRegistry, symbol_from_parts};
use tickflow_core::venue::Venue;
use tickflow_feed::protocol::subscription_spelling;
use tickflow_universe::{Discovery, Fetcher, Listing, Universe, discover, select_discovered};

use crate::config::Config;

/// What applying a selection changed in the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Symbols of the selection that are registered (new or known).
    pub symbols: usize,
    pub listings_added: usize,
    pub listings_retired: usize,
    /// Symbols the registry refused (full: `engine.max_symbols` ids taken, retired ones included),
    /// with the reason. Counted in the registry too.
    pub refused: Vec<(String, String)>,
}

/// Makes the registry's listings those of `universe` on `venues` (the enabled venues): registers
/// its symbols and listings, retires listings of those venues that the universe no longer has.
/// Idempotent: applying the same universe twice changes nothing.
pub fn apply(registry: &SymbolRegistry, universe: &Universe, venues: &[Venue]) -> Applied {
    let mut applied = Applied::default();
    registry.edit(|edit| {
        let mut wanted: HashSet<(Venue, SymbolId)> = HashSet::new();
        let before: BTreeMap<Venue, Vec<SymbolId>> = venues
            .iter()
            .map(|&venue| (venue, edit.listed_ids(venue)))
            .collect();
        for symbol in &universe.symbols {
            let id = match symbol_from_parts(&symbol.base, &symbol.quote)
                .and_then(|name| edit.symbol(name))
            {
                Ok(id) => id,
                Err(error) => {
                    applied.refused.push((symbol.name(), error.to_string()));
                    continue;
                }
            };
            applied.symbols += 1;
            for listing in &symbol.listings {
                if !venues.contains(&listing.venue) {
                    continue;
                }
                let spelling = subscription_spelling(listing.venue, &listing.venue_symbol);
                let was_listed = before
                    .get(&listing.venue)
                    .is_some_and(|ids| ids.contains(&id));
                match edit.list(listing.venue, id, &spelling, listing.price_multiplier) {
                    Ok(()) => {
                        wanted.insert((listing.venue, id));
                        applied.listings_added += usize::from(!was_listed);
                    }
                    Err(error @ RegistryError::SpellingTaken { .. }) => {
                        applied.refused.push((symbol.name(), error.to_string()));
                    }
                    Err(error) => applied.refused.push((symbol.name(), error.to_string())),
                }
            }
        }
        for (&venue, ids) in &before {
            for &id in ids {
                if !wanted.contains(&(venue, id)) && edit.unlist(venue, id) {
                    applied.listings_retired += 1;
                }
            }
        }
    });
    for (name, reason) in &applied.refused {
        tracing::warn!(symbol = %name, %reason, "universe: symbol refused");
    }
    applied
}

/// The enabled venues of `config`, in venue order.
pub fn enabled_venues(config: &Config) -> Vec<Venue> {
    config
        .feeds
        .enabled_venues()
        .map(|(venue, _)| venue)
        .collect()
}

/// True when the universe is discovered (see [`Config::discovers`]).
pub fn discovers(config: &Config) -> bool {
    config.discovers()
}

/// The instrument fetcher for `config` (its TLS trusts `feeds.tls_extra_roots_pem` too).
pub fn fetcher(config: &Config) -> anyhow::Result<Arc<Fetcher>> {
    Ok(Arc::new(Fetcher::new(
        &config.universe,
        config.feeds.tls_extra_roots_pem(),
    )?))
}

/// One discovery round: fetch every enabled venue's list (`attempts` requests each; a venue that
/// fails keeps its list from `last`) and select, `previous` keeping its symbols' places under the
/// cap.
pub async fn round(
    config: &Config,
    fetcher: &Fetcher,
    last: &BTreeMap<Venue, Vec<Listing>>,
    previous: Option<&Universe>,
    attempts: u32,
) -> (Discovery, Universe) {
    let venues = enabled_venues(config);
    let discovery = discover(fetcher, &venues, last, attempts).await;
    let universe = select_discovered(&config.universe, &discovery, previous);
    (discovery, universe)
}

/// A one-line summary for logs and the console: symbols, listings per venue, left out by reason,
/// venues that failed.
pub fn one_line(universe: &Universe) -> String {
    let listings: usize = universe.symbols.iter().map(|s| s.listings.len()).sum();
    let excluded: Vec<String> = universe
        .excluded_counts()
        .into_iter()
        .map(|(reason, count)| format!("{count} {}", reason.as_str()))
        .collect();
    let failed: Vec<String> = universe
        .venues_failed
        .iter()
        .map(|(venue, _)| venue.name().to_string())
        .collect();
    format!(
        "{} symbols, {listings} listings; left out: {}; listings in other quotes: {}{}",
        universe.symbols.len(),
        if excluded.is_empty() {
            "none".to_string()
        } else {
            excluded.join(", ")
        },
        universe.quote_not_selected,
        if failed.is_empty() {
            String::new()
        } else {
            format!("; no list from {}", failed.join(", "))
        }
    )
}

/// The universe a hand-written list makes: each name on every enabled venue that subscribes to
/// it, in the venue's spelling (what `tickflow universe` prints when discovery is replaced).
pub fn hand_written(config: &Config) -> anyhow::Result<Universe> {
    let registry = SymbolRegistry::new(config.engine.max_symbols);
    tickflow_feed::register_configured(&config.feeds, &registry)?;
    let mut symbols: BTreeMap<String, tickflow_universe::UniverseSymbol> = BTreeMap::new();
    for venue in enabled_venues(config) {
        for listing in registry.listings(venue) {
            let Some(name) = registry.name(listing.symbol_id) else {
                continue;
            };
            symbols
                .entry(name.as_str().to_string())
                .or_insert_with(|| tickflow_universe::UniverseSymbol {
                    base: name.base().to_string(),
                    quote: name.quote().to_string(),
                    listings: Vec::new(),
                })
                .listings
                .push(tickflow_universe::VenueListing {
                    venue,
                    venue_symbol: listing.spelling,
                    price_multiplier: listing.price_multiplier,
                });
        }
    }
    Ok(Universe {
        symbols: symbols.into_values().collect(),
        venues_answered: enabled_venues(config),
        ..Universe::default()
    })
}

/// A discovery round under way: owns everything it reads, so the engine's loop can poll it beside
/// its other work and drop it at shutdown.
type Round = std::pin::Pin<Box<dyn std::future::Future<Output = (Discovery, Universe)> + Send>>;

/// The discovered universe while the engine runs: the last lists and selection, and the refresh
/// round under way (at most one).
pub struct Refresher {
    config: Arc<Config>,
    fetcher: Arc<Fetcher>,
    venues: Vec<Venue>,
    lists: BTreeMap<Venue, Vec<Listing>>,
    current: Universe,
    round: Option<Round>,
}

/// What a refresh round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub applied: Applied,
    pub feeds: tickflow_feed::RefreshReport,
    /// Symbols in the universe after the round.
    pub symbols: usize,
    /// New listings not added because universe growth was paused (memory shedding).
    pub listings_held_back: usize,
}

impl Refresher {
    /// Discovers the universe at start (each venue asked up to `universe.start_attempts` times;
    /// the engine starts with the venues that answered) and applies it to `registry`.
    pub async fn start(
        config: Arc<Config>,
        registry: &SymbolRegistry,
    ) -> anyhow::Result<(Refresher, Applied)> {
        let fetcher = fetcher(&config)?;
        let (discovery, selected) = round(
            &config,
            &fetcher,
            &BTreeMap::new(),
            None,
            config.universe.start_attempts,
        )
        .await;
        let venues = enabled_venues(&config);
        let applied = apply(registry, &selected, &venues);
        tracing::info!(summary = %one_line(&selected), "universe discovered");
        tracing::debug!(universe = %selected.summary(), "universe at start");
        Ok((
            Refresher {
                config,
                fetcher,
                venues,
                lists: discovery.lists,
                current: selected,
                round: None,
            },
            applied,
        ))
    }

    pub fn universe(&self) -> &Universe {
        &self.current
    }

    /// Seconds between rounds; `None` when refresh is off.
    pub fn interval(&self) -> Option<std::time::Duration> {
        (self.config.universe.refresh_interval_s > 0)
            .then(|| std::time::Duration::from_secs(self.config.universe.refresh_interval_s))
    }

    /// Starts a round unless one is under way (one request per venue: the next round retries).
    pub fn begin(&mut self) {
        if self.round.is_some() {
            return;
        }
        let (config, fetcher) = (Arc::clone(&self.config), Arc::clone(&self.fetcher));
        let (lists, previous) = (self.lists.clone(), self.current.clone());
        self.round = Some(Box::pin(async move {
            round(&config, &fetcher, &lists, Some(&previous), 1).await
        }));
    }

    /// The round under way's result; never completes when none is.
    pub async fn next(&mut self) -> (Discovery, Universe) {
        match self.round.as_mut() {
            Some(round) => {
                let result = round.await;
                self.round = None;
                result
            }
            None => std::future::pending().await,
        }
    }

    /// Applies a finished round: the registry gets the new listings (retired ones leave it) and
    /// the feeds re-plan. A venue that failed kept its last list, so its symbols stay.
    ///
    /// With `growth_paused` (memory is being shed) the round adds nothing: symbols and listings
    /// that are new are held back (counted, logged) and come with a later round; retirements
    /// still apply.
    pub fn finish(
        &mut self,
        (discovery, selected): (Discovery, Universe),
        registry: &SymbolRegistry,
        feeds: &mut tickflow_feed::Feeds,
        growth_paused: bool,
    ) -> anyhow::Result<Refreshed> {
        let (selected, held_back) = if growth_paused {
            selected.without_growth(&self.current)
        } else {
            (selected, 0)
        };
        if held_back > 0 {
            tracing::warn!(
                listings_held_back = held_back,
                "universe growth paused while memory is shed: new listings held back"
            );
        }
        let applied = apply(registry, &selected, &self.venues);
        let feeds_report = feeds.refresh()?;
        let refreshed = Refreshed {
            applied,
            feeds: feeds_report,
            symbols: selected.symbols.len(),
            listings_held_back: held_back,
        };
        tracing::info!(
            summary = %one_line(&selected),
            listings_added = refreshed.applied.listings_added,
            listings_retired = refreshed.applied.listings_retired,
            slots_changed = refreshed.feeds.slots_changed,
            slots_added = refreshed.feeds.slots_added,
            listings_unplaced = refreshed.feeds.listings_unplaced,
            "universe refreshed"
        );
        self.lists = discovery.lists;
        self.current = selected;
        Ok(refreshed)
    }
}
