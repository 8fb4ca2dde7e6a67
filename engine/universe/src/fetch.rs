//! Fetching the instrument lists: one bounded HTTP GET per venue (timeout, body cap) through the
//! feeds' HTTP client, requests of one venue spaced by its documented rate limit, HTTP 429/418
//! (and Bybit's 403) honoured through `Retry-After`, and discovery over several venues at once
//! with retries and the last list kept for a venue that fails. No selection here.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use tickflow_core::venue::{VENUE_COUNT, Venue};
use tickflow_feed::{ConnectError, TlsRootsError};

use crate::config::UniverseConfig;
use crate::parse::{Instruments, Listing, ParseError, parse_instruments, request_path};
use crate::select::{Universe, reselect};

/// How long a 418 (an IP ban) lasts when the venue does not say: Binance's shortest ban.
const DEFAULT_BAN_S: u64 = 120;
/// How long Bybit's 403 "access too frequent" lasts: its documented ban is at least 10 minutes.
const BYBIT_403_BAN_S: u64 = 600;
/// Bytes of a refused response's body quoted in the error.
const ERROR_BODY_EXCERPT_BYTES: usize = 200;

/// Shortest time between two instrument-list requests to one venue: twice the spacing the
/// venue's documented limit allows at full use (half the budget stays for anything else on the
/// same IP, such as `tickflow universe` beside a running engine).
///
/// | venue | documented limit | one request | at full use | spacing |
/// |---|---|---|---|---|
/// | binance | 6000 weight / min per IP | weight 20 | 300 / min | 400 ms |
/// | bybit | 600 requests / 5 s per IP | 1 | 120 / s | 20 ms |
/// | okx | 20 requests / 2 s per IP and type | 1 | 10 / s | 200 ms |
/// | mexc | 500 / 10 s per endpoint | weight 10 | 50 / 10 s | 400 ms |
/// | gate | 200 requests / 10 s per endpoint | 1 | 20 / s | 100 ms |
/// | kucoin | 2000 weight / 30 s (public pool) | weight 4 | 500 / 30 s | 120 ms |
/// | bitget | 20 requests / s per IP | 1 | 20 / s | 100 ms |
/// | htx | not documented for this endpoint | 1 | assumed 10 / s | 200 ms |
pub fn min_request_interval(venue: Venue) -> Duration {
    Duration::from_millis(match venue {
        Venue::Binance => 400,
        Venue::Bybit => 20,
        Venue::Okx => 200,
        Venue::Mexc => 400,
        Venue::Gate => 100,
        Venue::Kucoin => 120,
        Venue::Bitget => 100,
        Venue::Htx => 200,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{venue}: no complete answer within {timeout_ms} ms (universe.request_timeout_ms)")]
    Timeout { venue: Venue, timeout_ms: u64 },
    #[error("{venue}: response body over {max_bytes} bytes (universe.max_response_bytes)")]
    TooLarge { venue: Venue, max_bytes: usize },
    #[error("{venue}: {source}")]
    Connect { venue: Venue, source: ConnectError },
    #[error("{venue}: rate limited (HTTP {status}); waiting {retry_after_s} s before asking again")]
    RateLimited {
        venue: Venue,
        status: u16,
        retry_after_s: u64,
    },
    #[error(
        "{venue}: rate-limit ban for {remaining_s} more s, longer than universe.retry_backoff_max_ms: not asked"
    )]
    Banned { venue: Venue, remaining_s: u64 },
    #[error("{venue}: HTTP {status}: {detail}")]
    Status {
        venue: Venue,
        status: u16,
        detail: String,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

impl FetchError {
    pub fn venue(&self) -> Venue {
        match self {
            FetchError::Timeout { venue, .. }
            | FetchError::TooLarge { venue, .. }
            | FetchError::Connect { venue, .. }
            | FetchError::RateLimited { venue, .. }
            | FetchError::Banned { venue, .. }
            | FetchError::Status { venue, .. } => *venue,
            FetchError::Parse(
                ParseError::NotJson { venue, .. }
                | ParseError::Envelope { venue, .. }
                | ParseError::VenueError { venue, .. },
            ) => *venue,
        }
    }

    /// Whether asking again may help: not for a client error (a wrong URL, a refused region) nor
    /// a ban that outlasts the retries.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            FetchError::Status {
                status: 400..=499,
                ..
            } | FetchError::Banned { .. }
                | FetchError::TooLarge { .. }
        )
    }
}

/// When a venue may be asked next.
#[derive(Default)]
struct VenueGate {
    /// The earliest start of the next request (spacing).
    next_request_at: Option<Instant>,
    /// The end of a rate-limit ban (`Retry-After`).
    banned_until: Option<Instant>,
}

/// Fetches instrument lists. One per process: it holds each venue's spacing and bans, so every
/// request to a venue must go through the same `Fetcher`.
pub struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    urls: [String; VENUE_COUNT],
    request_timeout: Duration,
    max_response_bytes: usize,
    max_instruments: usize,
    retry_backoff: Duration,
    retry_backoff_max: Duration,
    gates: [Mutex<VenueGate>; VENUE_COUNT],
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Fetcher")
            .field("urls", &self.urls)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl Fetcher {
    /// A fetcher for `config`, trusting webpki's roots and those in `extra_roots_pem`
    /// (`feeds.tls_extra_roots_pem`).
    pub fn new(
        config: &UniverseConfig,
        extra_roots_pem: Option<&std::path::Path>,
    ) -> Result<Fetcher, TlsRootsError> {
        Ok(Fetcher::with_tls(
            config,
            tickflow_feed::tls_connector(extra_roots_pem)?,
        ))
    }

    /// A fetcher for `config` sharing an existing TLS client configuration.
    pub fn with_tls(config: &UniverseConfig, tls: tokio_rustls::TlsConnector) -> Fetcher {
        Fetcher {
            tls,
            urls: std::array::from_fn(|index| {
                let venue = Venue::ALL[index];
                format!(
                    "{}{}",
                    config.base_url(venue).trim_end_matches('/'),
                    request_path(venue)
                )
            }),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            max_response_bytes: config.max_response_bytes,
            max_instruments: config.max_instruments_per_venue,
            retry_backoff: Duration::from_millis(config.retry_backoff_ms),
            retry_backoff_max: Duration::from_millis(config.retry_backoff_max_ms),
            gates: std::array::from_fn(|_| Mutex::new(VenueGate::default())),
        }
    }

    /// The full URL asked for `venue`'s list.
    pub fn url(&self, venue: Venue) -> &str {
        &self.urls[venue.index()]
    }

    fn gate(&self, venue: Venue) -> std::sync::MutexGuard<'_, VenueGate> {
        // The gate holds two instants, each written whole: a panic elsewhere cannot leave it torn.
        self.gates[venue.index()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves the next request slot of `venue`: when it may start.
    fn reserve(&self, venue: Venue) -> Result<Instant, FetchError> {
        let mut gate = self.gate(venue);
        let now = Instant::now();
        if let Some(until) = gate.banned_until {
            if until > now + self.retry_backoff_max {
                return Err(FetchError::Banned {
                    venue,
                    remaining_s: (until - now).as_secs_f64().ceil() as u64,
                });
            }
        }
        let start = now
            .max(gate.next_request_at.unwrap_or(now))
            .max(gate.banned_until.unwrap_or(now));
        gate.next_request_at = Some(start + min_request_interval(venue));
        Ok(start)
    }

    fn ban(&self, venue: Venue, seconds: u64) {
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut gate = self.gate(venue);
        gate.banned_until = Some(gate.banned_until.map_or(until, |old| old.max(until)));
    }

    /// Fetches and parses `venue`'s list once, after the venue's spacing and any short ban.
    pub async fn fetch(&self, venue: Venue) -> Result<Instruments, FetchError> {
        let start = self.reserve(venue)?;
        tokio::time::sleep_until(start).await;
        let response = tickflow_feed::http_get(
            self.url(venue),
            &self.tls,
            self.request_timeout,
            self.max_response_bytes,
        )
        .await
        .map_err(|error| match error {
            ConnectError::Timeout => FetchError::Timeout {
                venue,
                timeout_ms: self.request_timeout.as_millis() as u64,
            },
            ConnectError::BodyTooLarge { max_body_bytes } => FetchError::TooLarge {
                venue,
                max_bytes: max_body_bytes,
            },
            source => FetchError::Connect { venue, source },
        })?;
        let rate_limited_default_s = match (venue, response.status) {
            (_, 429) => Some(self.retry_backoff.as_secs().max(1)),
            (_, 418) => Some(DEFAULT_BAN_S),
            (Venue::Bybit, 403) => Some(BYBIT_403_BAN_S),
            _ => None,
        };
        if let Some(default_s) = rate_limited_default_s {
            let retry_after_s = response.retry_after_s.unwrap_or(default_s);
            self.ban(venue, retry_after_s);
            tracing::warn!(%venue, status = response.status, retry_after_s, "instrument list: rate limited");
            return Err(FetchError::RateLimited {
                venue,
                status: response.status,
                retry_after_s,
            });
        }
        if !(200..300).contains(&response.status) {
            let excerpt = &response.body[..response.body.len().min(ERROR_BODY_EXCERPT_BYTES)];
            return Err(FetchError::Status {
                venue,
                status: response.status,
                detail: String::from_utf8_lossy(excerpt).into_owned(),
            });
        }
        let mut instruments = parse_instruments(venue, &response.body)?;
        if instruments.listings.len() > self.max_instruments {
            instruments.over_cap = instruments.listings.len() - self.max_instruments;
            instruments.listings.truncate(self.max_instruments);
            tracing::warn!(
                %venue,
                dropped = instruments.over_cap,
                max = self.max_instruments,
                "instrument list: instruments beyond universe.max_instruments_per_venue dropped"
            );
        }
        if instruments.malformed > 0 {
            tracing::warn!(
                %venue,
                malformed = instruments.malformed,
                "instrument list: malformed instruments skipped"
            );
        }
        Ok(instruments)
    }

    /// Fetches `venue`'s list, asking up to `attempts` times (at least once) with doubling
    /// waits from `universe.retry_backoff_ms` up to `universe.retry_backoff_max_ms`.
    pub async fn fetch_with_retries(
        &self,
        venue: Venue,
        attempts: u32,
    ) -> Result<Instruments, FetchError> {
        let attempts = attempts.max(1);
        let mut wait = self.retry_backoff;
        let mut attempt = 1;
        loop {
            match self.fetch(venue).await {
                Ok(instruments) => return Ok(instruments),
                Err(error) if attempt < attempts && error.is_retryable() => {
                    tracing::warn!(%venue, attempt, attempts, %error, "instrument list: retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.retry_backoff_max);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// The lists of one discovery round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The list of every venue that answered, and the last list of each that did not but had one.
    pub lists: BTreeMap<Venue, Vec<Listing>>,
    /// Venues that answered this round.
    pub answered: Vec<Venue>,
    /// Venues that did not, with the last error.
    pub failed: Vec<(Venue, String)>,
    /// Failed venues whose last list is kept in `lists`.
    pub kept: Vec<Venue>,
    /// Malformed instruments skipped, by venue (answered venues only).
    pub malformed: BTreeMap<Venue, usize>,
}

/// Fetches the lists of `venues` concurrently, each with up to `attempts` requests (at start: the
/// configured `start_attempts`, and the engine starts with the venues that answered; on a refresh
/// 1 is enough, the next refresh retries). A venue that fails keeps its list from `last`.
pub async fn discover(
    fetcher: &Fetcher,
    venues: &[Venue],
    last: &BTreeMap<Venue, Vec<Listing>>,
    attempts: u32,
) -> Discovery {
    let mut unique: Vec<Venue> = venues.to_vec();
    unique.sort();
    unique.dedup();
    let mut discovery = Discovery::default();
    // One venue at a time: at most one response body (and its parse) is alive at once, which is
    // what the memory budget reserves; a round takes the sum of the venues' answer times (well
    // under a second each, retries aside), once an hour.
    for venue in unique {
        let result = fetcher.fetch_with_retries(venue, attempts).await;
        match result {
            Ok(instruments) => {
                tracing::info!(%venue, instruments = instruments.listings.len(), "instrument list fetched");
                discovery.answered.push(venue);
                if instruments.malformed > 0 {
                    discovery.malformed.insert(venue, instruments.malformed);
                }
                discovery.lists.insert(venue, instruments.listings);
            }
            Err(error) => {
                let kept = last.get(&venue);
                tracing::warn!(%venue, %error, kept_last_list = kept.is_some(), "instrument list not fetched");
                discovery.failed.push((venue, error.to_string()));
                if let Some(listings) = kept {
                    discovery.kept.push(venue);
                    discovery.lists.insert(venue, listings.clone());
                }
            }
        }
    }
    discovery
}

/// Selects the universe from a discovery round (`reselect` with `previous` on a refresh),
/// recording which venues answered and which failed.
pub fn select_discovered(
    config: &UniverseConfig,
    discovery: &Discovery,
    previous: Option<&Universe>,
) -> Universe {
    let mut universe = reselect(config, &discovery.lists, previous);
    universe.venues_answered = discovery.answered.clone();
    universe.venues_failed = discovery
        .failed
        .iter()
        .map(|(venue, error)| {
            if discovery.kept.contains(venue) {
                (*venue, format!("{error} (its last list is used)"))
            } else {
                (*venue, error.clone())
            }
        })
        .collect();
    universe
}

/// Heap a kept listing takes at most: the struct and its three strings (venue spelling, base and
/// quote, each in an allocation of at most 32 bytes: names the registry can hold are at most 24).
const LISTING_BYTES_MAX: usize = size_of::<Listing>() + 3 * 32;
/// Per instrument while a body is parsed: a reference to its raw JSON (`&RawValue`).
const RAW_INSTRUMENT_REF_BYTES: usize = 16;

/// The memory budget's lines for discovery, as worst cases: one response body at
/// `universe.max_response_bytes` while it is parsed (venues are asked one at a time, see
/// `discover`), held only while a round runs; and every venue's listings kept between rounds, at
/// most `universe.max_instruments_per_venue` each.
pub fn budget_lines(config: &UniverseConfig) -> Vec<tickflow_core::budget::BudgetLine> {
    let instruments = config.max_instruments_per_venue;
    let round_bytes = config
        .max_response_bytes
        .saturating_add(instruments.saturating_mul(RAW_INSTRUMENT_REF_BYTES + LISTING_BYTES_MAX));
    let kept_bytes = VENUE_COUNT
        .saturating_mul(instruments)
        .saturating_mul(LISTING_BYTES_MAX);
    vec![
        tickflow_core::budget::BudgetLine {
            name: "universe discovery",
            bytes: round_bytes,
            detail: format!(
                "one venue at a time: {} B response (universe.max_response_bytes) + {instruments} instruments parsed",
                config.max_response_bytes
            ),
        },
        tickflow_core::budget::BudgetLine {
            name: "universe lists",
            bytes: kept_bytes,
            detail: format!(
                "{VENUE_COUNT} venues × {instruments} listings × {LISTING_BYTES_MAX} B kept between rounds"
            ),
        },
    ]
}
