//! Simulated venues: WebSocket servers on 127.0.0.1 that speak each venue's protocol (subscribe
//! and ack, keep-alive both ways, HTX gzip, MEXC protobuf, KuCoin's bullet-public and welcome),
//! with prices that move together across venues and faults a caller injects through
//! `SimControl`. Used by `tickflow demo`, the feed tests and `tickflow-load`. Served over plain
//! `ws://`/`http://` by `start`, or over `wss://`/`https://` by `start_tls` with the caller's
//! certificate (accepted TCP streams go through the TLS handshake before HTTP).
//!
//! Data comes either per symbol (`bbo_per_s_per_symbol`, written in one batch per tick) or, with
//! `SimConfig::paced`, at one aggregate rate with every frame written and flushed on its own
//! (`pacer.rs`).
//!
//! Each venue also serves its spot instrument-list REST endpoint at the real path and in the real
//! response format (`rest.rs`), listing the configured symbols, a fixed set of tricky instruments
//! and, with `listing_churn_interval_ms`, listings that change over time (`listings.rs`). The
//! WebSocket side serves every listed instrument in that venue's spelling and stops data for a
//! delisted one.
//!
//! Every task (accept loops, HTTP connections, sessions, the churn timer) is owned by the
//! `SimVenues` tracker and stopped by `shutdown`, as is the pacer thread of paced mode.

mod fault_frames;
mod history;
mod listings;
mod pacer;
mod prices;
mod rest;
mod session;
mod wire;
/// The simulators' number writer, public for the benchmark that measures it beside std's.
pub use wire::{Fixed, gzip_into};

pub use history::SeedHistory;
pub use listings::{
    ListingChange, ListingError, ListingOrigin, ListingState, MAX_ADDED_INSTRUMENTS, SimListing,
    churn_listing_venues,
};
pub use rest::{RestFault, instruments_path};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tickflow_core::venue::{VENUE_COUNT, Venue};
use tickflow_feed::config::{FeedsConfig, VenueFeedConfig};

/// What the simulated venues serve.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub venues: Vec<Venue>,
    /// Canonical symbols (`BTC-USDT`) every venue lists, trading.
    pub symbols: Vec<String>,
    /// Also list the fixed tricky instruments (quotes other than USDT, `DOTUSD`/`BNBUSD`/`ARBUSD`,
    /// `1000PEPE` on Bybit and MEXC against `PEPE` elsewhere, `GT` on Gate only, `TRX` halted on
    /// Bitget, `LUNA` listed everywhere but trading on Bybit only, KuCoin's `BCHSV-USDT` for BSV;
    /// the table is in `listings.rs`). An entry whose name is also in `symbols` is skipped.
    /// Default on.
    pub tricky_instruments: bool,
    /// Every this many milliseconds, one churn step (`SimVenues::churn_listings_now`): step `n`
    /// lists `NEW<n>-USDT` on `churn_listing_venues(n, &venues)` (at least two venues) and
    /// delists the oldest churned symbol beyond the newest `listing_churn_keep`. 0 = no timer
    /// (default); steps can still be forced.
    pub listing_churn_interval_ms: u64,
    /// How many churned symbols stay listed (at least 1; default 2).
    pub listing_churn_keep: usize,
    /// Best bid/ask updates per second per subscribed symbol per connection.
    pub bbo_per_s_per_symbol: f64,
    /// Trades per second per subscribed symbol per connection.
    pub trades_per_s_per_symbol: f64,
    /// How often sessions write their due updates.
    pub tick_ms: u64,
    /// Server keep-alive: ws pings (Binance, Gate), gzip `{"ping":n}` (HTX).
    pub server_ping_interval_ms: u64,
    /// The ping interval the KuCoin bullet hands out.
    pub kucoin_ping_interval_ms: u64,
    /// `Retry-After` seconds on a refused (429) connect.
    pub retry_after_s: u64,
    /// After a shutdown notice, the server closes the connection this much later.
    pub notice_close_after_ms: u64,
    /// Fixed ports per venue (by venue index); 0 = chosen by the OS.
    pub ports: [u16; VENUE_COUNT],
    /// Paced mode: best bid/ask frames at one aggregate rate over every session
    /// (`SimVenues::set_paced_frames_per_s`, 0 until set), round robin over each session's
    /// symbols, each frame written and flushed on its own (one WebSocket frame per TLS record and
    /// per socket write); `bbo_per_s_per_symbol` and `trades_per_s_per_symbol` are then unused.
    pub paced: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            venues: Venue::ALL.to_vec(),
            symbols: ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            tricky_instruments: true,
            listing_churn_interval_ms: 0,
            listing_churn_keep: 2,
            bbo_per_s_per_symbol: 10.0,
            trades_per_s_per_symbol: 2.0,
            tick_ms: 5,
            server_ping_interval_ms: 5_000,
            kucoin_ping_interval_ms: 18_000,
            retry_after_s: 1,
            notice_close_after_ms: 2_000,
            ports: [0; VENUE_COUNT],
            paced: false,
        }
    }
}

/// Pending one-connection cuts kept at most (`VenueControl::disconnect_one`).
const DISCONNECT_TICKETS_MAX: u64 = 16;

/// Faults and counters of one simulated venue. Faults are generation counters: every session
/// compares what it saw last and acts once per bump, so one call reaches every live session.
#[derive(Debug, Default)]
pub struct VenueControl {
    disconnect_generation: AtomicU64,
    /// Cuts still to make, one connection each (`disconnect_one`): the first session to take a
    /// ticket drops its connection.
    disconnect_tickets: AtomicU64,
    malformed_generation: AtomicU64,
    oversized_generation: AtomicU64,
    /// Fragmented, many-trade and unread faults (`fault_frames`).
    frame_faults: fault_frames::FrameFaults,
    notice_generation: AtomicU64,
    /// Best bid/ask frames with an empty bid side (`send_empty_bid`, in `session`).
    empty_bid_generation: AtomicU64,
    stalled: AtomicBool,
    data_paused: AtomicBool,
    hold_new_sessions: AtomicBool,
    hold_connections: AtomicBool,
    connections_released: tokio::sync::Notify,
    held_release_generation: AtomicU64,
    reject_connects: AtomicU64,
    refusal_timing: std::sync::Mutex<RefusalTiming>,
    /// WebSocket sessions opened.
    pub sessions_opened: AtomicU64,
    /// `disconnect_one` cuts made (a session took the cut and dropped its connection).
    pub disconnects_made: AtomicU64,
    /// WebSocket sessions currently open.
    pub sessions_live: AtomicU64,
    /// Subscribe requests received.
    pub subscribe_requests: AtomicU64,
    /// Topics subscribed (over all sessions).
    pub topics_subscribed: AtomicU64,
    /// TCP connections accepted while `hold_new_connections` was on (served once it is off).
    pub connections_held: AtomicU64,
    /// Distinct topics subscribed on the sessions open now.
    pub live_session_topics: AtomicU64,
    /// The most distinct topics any one session subscribed.
    pub most_topics_in_a_session: AtomicU64,
    /// Topics a session was asked to subscribe again (already subscribed on that session).
    pub duplicate_topics: AtomicU64,
    /// Client keep-alive messages received (in-band pings, ws pings).
    pub client_pings: AtomicU64,
    /// Pongs the client sent to our pings (ws pongs, HTX `{"pong":n}`).
    pub client_pongs: AtomicU64,
    /// Data frames sent.
    pub data_frames: AtomicU64,
    /// Connects refused with 429.
    pub refused: AtomicU64,
    /// Bullet-public calls served (KuCoin).
    pub bullets: AtomicU64,
    /// TLS handshakes that failed or timed out (`start_tls` only).
    pub tls_handshake_failures: AtomicU64,
    /// Instrument-list REST requests received (faulted ones included).
    pub rest_requests: AtomicU64,
    /// Instrument-list REST requests answered with a fault (or left hanging).
    pub rest_faults: AtomicU64,
    /// Faults for the next REST requests (`fail_next_rest_requests`).
    rest_faults_pending: rest::RestFaults,
}

/// When the last 429 was sent, and the shortest time from a 429 to the client's next attempt.
#[derive(Debug, Default)]
struct RefusalTiming {
    refused_at: Option<std::time::Instant>,
    shortest_wait: Option<std::time::Duration>,
}

impl VenueControl {
    /// The shortest time from a refused connect to the next attempt (bullet or upgrade), if any
    /// attempt followed a refusal.
    pub fn shortest_wait_after_refusal(&self) -> Option<std::time::Duration> {
        self.refusal_timing().shortest_wait
    }

    fn refusal_timing(&self) -> std::sync::MutexGuard<'_, RefusalTiming> {
        // A poisoned lock only means a test thread panicked mid-update; the times stay valid.
        self.refusal_timing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes a connect attempt (and whether it is refused) for `shortest_wait_after_refusal`.
    fn note_attempt(&self, refused: bool) {
        let now = std::time::Instant::now();
        let mut timing = self.refusal_timing();
        if let Some(refused_at) = timing.refused_at.take() {
            let wait = now.duration_since(refused_at);
            timing.shortest_wait = Some(
                timing
                    .shortest_wait
                    .map_or(wait, |shortest| shortest.min(wait)),
            );
        }
        if refused {
            timing.refused_at = Some(now);
        }
    }

    /// Drops every live connection of this venue at once (no close frame: a network cut).
    pub fn disconnect_all(&self) {
        self.disconnect_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Drops one live connection of this venue (whichever session looks first among those that
    /// have served data; no close frame), the others stay up: one event of a reconnect storm.
    /// Cuts taken are counted in `disconnects_made`.
    pub fn disconnect_one(&self) {
        // Bounded: cuts asked while no session is up do not pile up into a burst later.
        let _ =
            self.disconnect_tickets
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |tickets| {
                    Some((tickets + 1).min(DISCONNECT_TICKETS_MAX))
                });
    }

    /// Forgets every pending `disconnect_one` cut (a storm ended: cuts not yet taken must not
    /// land after it).
    pub fn clear_disconnects(&self) {
        self.disconnect_tickets.store(0, Ordering::SeqCst);
    }

    /// Pending `disconnect_one` cuts not yet taken by a session.
    pub fn pending_disconnects(&self) -> u64 {
        self.disconnect_tickets.load(Ordering::SeqCst)
    }

    /// A session takes one pending `disconnect_one` cut, if any.
    pub(crate) fn take_disconnect_ticket(&self) -> bool {
        let taken = self
            .disconnect_tickets
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |tickets| {
                tickets.checked_sub(1)
            })
            .is_ok();
        if taken {
            self.disconnects_made.fetch_add(1, Ordering::SeqCst);
        }
        taken
    }
    /// Each live session sends one malformed frame.
    pub fn send_malformed(&self) {
        self.malformed_generation.fetch_add(1, Ordering::SeqCst);
    }
    /// Each live session sends one frame larger than `bytes`.
    pub fn send_oversized(&self) {
        self.oversized_generation.fetch_add(1, Ordering::SeqCst);
    }
    /// Each live session sends the venue's shutdown notice and closes `notice_close_after_ms` later.
    pub fn send_shutdown_notice(&self) {
        self.notice_generation.fetch_add(1, Ordering::SeqCst);
    }
    /// While stalled, sessions send no data and answer no pings.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }
    /// While paused, sessions send no data but still answer and send pings.
    pub fn set_data_paused(&self, paused: bool) {
        self.data_paused.store(paused, Ordering::SeqCst);
    }
    /// Sessions opened from now on send no data (they still answer and send pings) until
    /// `release_held_sessions`; sessions already open are not affected.
    pub fn hold_new_sessions(&self) {
        self.hold_new_sessions.store(true, Ordering::SeqCst);
    }
    /// While on, accepted TCP connections wait (no TLS, no HTTP answer) until it is turned off:
    /// a client's connect hangs in the middle.
    pub fn hold_new_connections(&self, hold: bool) {
        self.hold_connections.store(hold, Ordering::SeqCst);
        if !hold {
            self.connections_released.notify_waiters();
        }
    }
    /// Waits while connections are held; false when the simulator stops meanwhile.
    async fn wait_while_connections_held(&self, cancel: &CancellationToken) -> bool {
        let mut counted = false;
        loop {
            let released = self.connections_released.notified();
            if !self.hold_connections.load(Ordering::SeqCst) {
                return true;
            }
            if !counted {
                counted = true;
                self.connections_held.fetch_add(1, Ordering::SeqCst);
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = released => {}
            }
        }
    }
    /// Held sessions start sending data; new sessions are no longer held.
    pub fn release_held_sessions(&self) {
        self.hold_new_sessions.store(false, Ordering::SeqCst);
        self.held_release_generation.fetch_add(1, Ordering::SeqCst);
    }
    pub(crate) fn held_release_generation(&self) -> Option<u64> {
        self.hold_new_sessions
            .load(Ordering::SeqCst)
            .then(|| self.held_release_generation.load(Ordering::SeqCst))
    }
    pub(crate) fn is_held(&self, held_until: Option<u64>) -> bool {
        held_until.is_some_and(|generation| {
            self.held_release_generation.load(Ordering::SeqCst) == generation
        })
    }
    /// The next `count` connects are refused with 429 and `Retry-After`.
    pub fn reject_next_connects(&self, count: u64) {
        self.reject_connects.store(count, Ordering::SeqCst);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

/// A TLS client gets this long to finish its handshake before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Size of the oversized frames the simulator sends.
pub(crate) const OVERSIZED_FRAME_BYTES: usize = 2 << 20;

pub(crate) struct SimShared {
    pub config: SimConfig,
    /// What each venue lists (`listings.rs`).
    listings: std::sync::RwLock<listings::Listings>,
    pub controls: [VenueControl; VENUE_COUNT],
    pub addresses: [Option<SocketAddr>; VENUE_COUNT],
    /// Set by `start_tls`: every accepted stream is a TLS server stream.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub started: std::time::Instant,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// Paced mode's tickets (`SimConfig::paced`).
    pub pacer: Option<Arc<pacer::Pacer>>,
    /// Batched mode's best bid/ask rate per symbol (f64 bits): `config.bbo_per_s_per_symbol`
    /// until `SimVenues::set_bbo_per_s_per_symbol`.
    pub bbo_per_s_per_symbol_bits: std::sync::atomic::AtomicU64,
}

impl SimShared {
    /// The listings, for reading (a poisoned lock only means a thread panicked mid-update of a
    /// table whose every step leaves it consistent).
    pub(crate) fn listings(&self) -> std::sync::RwLockReadGuard<'_, listings::Listings> {
        self.listings
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn listings_mut(&self) -> std::sync::RwLockWriteGuard<'_, listings::Listings> {
        self.listings
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The instrument `venue` knows by WebSocket spelling `ws_symbol`, if it lists it now.
    pub(crate) fn listed_instrument(
        &self,
        venue: Venue,
        ws_symbol: &str,
    ) -> Option<Arc<listings::Instrument>> {
        self.listings()
            .by_ws_symbol(venue, ws_symbol)
            .filter(|instrument| instrument.state(venue) != ListingState::Unlisted)
            .cloned()
    }

    fn churn(&self) -> ListingChange {
        let change = self.listings_mut().churn();
        tracing::debug!(?change, "sim: listings changed");
        change
    }
}

/// Running simulated venues.
pub struct SimVenues {
    shared: Arc<SimShared>,
    pacer_thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SimVenues {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SimVenues")
            .field("addresses", &self.shared.addresses)
            .finish()
    }
}

impl SimVenues {
    /// Binds one listener per venue on 127.0.0.1 and starts serving plain `ws://` and `http://`.
    /// Must run inside a tokio runtime.
    pub async fn start(config: SimConfig) -> std::io::Result<SimVenues> {
        SimVenues::start_with(config, None).await
    }

    /// Like `start`, but every venue serves `wss://` (and KuCoin's bullet `https://`, handing out
    /// a `wss://` endpoint) with `tls`'s certificate, which must be valid for `127.0.0.1`.
    pub async fn start_tls(
        config: SimConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<SimVenues> {
        SimVenues::start_with(config, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(
        config: SimConfig,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<SimVenues> {
        let listings = listings::Listings::new(
            &config.symbols,
            config.tricky_instruments,
            &config.venues,
            config.listing_churn_keep,
        )?;
        let pacer = config.paced.then(|| Arc::new(pacer::Pacer::default()));
        let mut listeners = Vec::new();
        let mut addresses = [None; VENUE_COUNT];
        for venue in config.venues.iter().copied() {
            let listener = TcpListener::bind(("127.0.0.1", config.ports[venue.index()])).await?;
            addresses[venue.index()] = Some(listener.local_addr()?);
            listeners.push((venue, listener));
        }
        let bbo_per_s_per_symbol_bits =
            std::sync::atomic::AtomicU64::new(config.bbo_per_s_per_symbol.to_bits());
        let shared = Arc::new(SimShared {
            bbo_per_s_per_symbol_bits,
            config,
            listings: std::sync::RwLock::new(listings),
            controls: std::array::from_fn(|_| VenueControl::default()),
            addresses,
            tls,
            started: std::time::Instant::now(),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            pacer,
        });
        let pacer_thread = match &shared.pacer {
            Some(pacer) => Some(pacer::start(pacer, shared.cancel.clone())?),
            None => None,
        };
        for (venue, listener) in listeners {
            let accept_shared = Arc::clone(&shared);
            shared
                .tracker
                .spawn(accept_loop(accept_shared, venue, listener));
        }
        if shared.config.listing_churn_interval_ms > 0 {
            shared.tracker.spawn(churn_loop(Arc::clone(&shared)));
        }
        Ok(SimVenues {
            shared,
            pacer_thread,
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    pub fn address(&self, venue: Venue) -> Option<SocketAddr> {
        self.shared.addresses[venue.index()]
    }

    /// Whether the venues serve TLS (`start_tls`).
    pub(crate) fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// The WebSocket URL of `venue` (KuCoin: its bullet URL is `bullet_url`).
    pub fn url(&self, venue: Venue) -> Option<String> {
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        self.address(venue)
            .map(|address| format!("{scheme}://{address}/ws/{venue}"))
    }

    pub fn bullet_url(&self) -> Option<String> {
        let scheme = if self.is_tls() { "https" } else { "http" };
        self.address(Venue::Kucoin)
            .map(|address| format!("{scheme}://{address}/api/v1/bullet-public"))
    }

    /// The base URL of `venue`'s REST endpoints (`http://127.0.0.1:port`, `https://` with
    /// `start_tls`); empty when `venue` is not simulated (not in `SimConfig::venues`). The
    /// instrument list is at `instruments_path(venue)` below it.
    pub fn rest_url(&self, venue: Venue) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        self.address(venue)
            .map(|address| format!("{scheme}://{address}"))
            .unwrap_or_default()
    }

    /// One churn step now (besides the timer of `listing_churn_interval_ms`): lists
    /// `NEW<n>-USDT` on `churn_listing_venues(n, &config.venues)` and delists the oldest churned
    /// symbol beyond the newest `listing_churn_keep` from every venue. Steps count from 1.
    pub fn churn_listings_now(&self) -> ListingChange {
        self.shared.churn()
    }

    /// Sets how `venue` lists `symbol` (canonical `BASE-QUOTE` in upper case, the venue's own
    /// base: `1000PEPE-USDT`), creating the instrument when new; returns the previous state.
    /// Unlisting stops data for subscriptions to it on that venue on their next tick.
    pub fn set_listing(
        &self,
        venue: Venue,
        symbol: &str,
        state: ListingState,
    ) -> Result<ListingState, ListingError> {
        let previous = self.shared.listings_mut().set_listing(venue, symbol, state);
        tracing::debug!(%venue, symbol, ?state, ?previous, "sim: listing set");
        previous
    }

    /// What `venue`'s instrument list holds now (trading or not; Bybit's REST list leaves out
    /// the not-trading ones), in listing order.
    pub fn listings(&self, venue: Venue) -> Vec<SimListing> {
        self.shared
            .listings()
            .listed(venue)
            .map(|instrument| instrument.listing(venue))
            .collect()
    }

    pub fn control(&self, venue: Venue) -> &VenueControl {
        &self.shared.controls[venue.index()]
    }

    /// Paced mode: sets the aggregate data rate over every session of every venue (frames per
    /// second, 0 = keep-alive only). Without `SimConfig::paced` this does nothing.
    pub fn set_paced_frames_per_s(&self, frames_per_s: f64) {
        match &self.shared.pacer {
            Some(pacer) => pacer.set_frames_per_s(frames_per_s),
            None => tracing::warn!("sim: set_paced_frames_per_s without SimConfig::paced"),
        }
    }

    /// Batched mode: sets the best bid/ask updates per second per symbol of every session from
    /// their next tick on (a rate search raises it step by step on the same connections).
    /// Negative or non-finite rates count as 0.
    pub fn set_bbo_per_s_per_symbol(&self, updates_per_s: f64) {
        let rate = if updates_per_s.is_finite() {
            updates_per_s.max(0.0)
        } else {
            0.0
        };
        self.shared
            .bbo_per_s_per_symbol_bits
            .store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Batched mode: the best bid/ask rate per symbol now.
    pub fn bbo_per_s_per_symbol(&self) -> f64 {
        f64::from_bits(
            self.shared
                .bbo_per_s_per_symbol_bits
                .load(Ordering::Relaxed),
        )
    }

    /// Paced mode: frames the schedule owed that no session took in time, because the sessions
    /// (or the client reading them) fell behind the rate.
    pub fn paced_frames_skipped(&self) -> u64 {
        self.shared
            .pacer
            .as_ref()
            .map_or(0, |pacer| pacer.skipped())
    }

    /// Data frames sent by every venue so far.
    pub fn data_frames_sent(&self) -> u64 {
        self.shared
            .config
            .venues
            .iter()
            .map(|venue| VenueControl::get(&self.control(*venue).data_frames))
            .sum()
    }

    /// A `[feeds]` section pointing every simulated venue's client at this simulator.
    pub fn feeds_config(&self) -> FeedsConfig {
        let mut feeds = FeedsConfig {
            symbols: self.shared.config.symbols.clone(),
            ..FeedsConfig::default()
        };
        for venue in self.shared.config.venues.iter().copied() {
            let mut venue_config = VenueFeedConfig::default();
            if venue == Venue::Kucoin {
                venue_config.bullet_url = self.bullet_url().unwrap_or_default();
            } else {
                venue_config.url = self.url(venue).unwrap_or_default();
            }
            feeds.venue.insert(venue.name().to_owned(), venue_config);
        }
        feeds
    }

    /// Stops accepting, closes every session and waits for every task.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        if let Some(thread) = self.pacer_thread.take() {
            // The thread sees the cancellation within a few milliseconds (it never blocks longer).
            let _ = thread.join();
        }
    }
}

/// Runs one churn step every `listing_churn_interval_ms` until the simulator stops.
async fn churn_loop(shared: Arc<SimShared>) {
    let period = std::time::Duration::from_millis(shared.config.listing_churn_interval_ms);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = interval.tick() => {
                shared.churn();
            }
        }
    }
}

async fn accept_loop(shared: Arc<SimShared>, venue: Venue, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection_shared = Arc::clone(&shared);
        shared.tracker.spawn(async move {
            if !connection_shared.controls[venue.index()]
                .wait_while_connections_held(&connection_shared.cancel)
                .await
            {
                return;
            }
            let Some(acceptor) = connection_shared.tls.clone() else {
                serve_connection(connection_shared, venue, stream).await;
                return;
            };
            let handshake = tokio::select! {
                _ = connection_shared.cancel.cancelled() => return,
                handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => handshake,
            };
            match handshake {
                Ok(Ok(tls_stream)) => serve_connection(connection_shared, venue, tls_stream).await,
                Ok(Err(error)) => {
                    connection_shared.controls[venue.index()]
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(%venue, %error, "sim: tls handshake failed");
                }
                Err(_) => {
                    connection_shared.controls[venue.index()]
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(%venue, "sim: tls handshake timed out");
                }
            }
        });
    }
}

/// Serves HTTP/1.1 (instrument lists, bullet-public, WebSocket upgrades) on one accepted stream until it ends or the
/// simulator stops.
async fn serve_connection<S>(shared: Arc<SimShared>, venue: Venue, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let shared = Arc::clone(&service_shared);
        async move {
            if rest::is_instruments_path(venue, request.uri().path()) {
                let method = request.method().clone();
                let query = request.uri().query().map(str::to_owned);
                return Ok::<_, std::convert::Infallible>(
                    rest::serve(shared, venue, method, query).await,
                );
            }
            Ok(handle_http(shared, venue, request))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        _ = connection => {}
        _ = shared.cancel.cancelled() => {}
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn handle_http(
    shared: Arc<SimShared>,
    venue: Venue,
    mut request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let control = &shared.controls[venue.index()];
    if request.uri().path().ends_with("/bullet-public") {
        control.bullets.fetch_add(1, Ordering::SeqCst);
        control.note_attempt(false);
        let Some(address) = shared.addresses[venue.index()] else {
            return respond(StatusCode::NOT_FOUND, String::new());
        };
        let body = serde_json::json!({
            "code": "200000",
            "data": {
                "token": "sim-token",
                "instanceServers": [{
                    "endpoint": format!(
                        "{}://{address}/ws/kucoin",
                        if shared.tls.is_some() { "wss" } else { "ws" }
                    ),
                    "encrypt": false,
                    "protocol": "websocket",
                    "pingInterval": shared.config.kucoin_ping_interval_ms,
                    "pingTimeout": 10_000,
                }]
            }
        });
        return respond(StatusCode::OK, body.to_string());
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return respond(StatusCode::NOT_FOUND, String::new());
    }
    let reject = control
        .reject_connects
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    control.note_attempt(reject);
    if reject {
        control.refused.fetch_add(1, Ordering::SeqCst);
        let mut response = respond(StatusCode::TOO_MANY_REQUESTS, String::new());
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from(shared.config.retry_after_s),
        );
        return response;
    }
    let connect_id = request
        .uri()
        .query()
        .and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("connectId="))
        })
        .unwrap_or("sim")
        .to_owned();
    match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok((response, upgrade)) => {
            let session_shared = Arc::clone(&shared);
            shared.tracker.spawn(async move {
                if let Ok(websocket) = upgrade.await {
                    session::run(session_shared, venue, websocket, connect_id).await;
                }
            });
            let (parts, _) = response.into_parts();
            Response::from_parts(parts, Full::new(Bytes::new()))
        }
        Err(_) => respond(StatusCode::BAD_REQUEST, String::new()),
    }
}

#[cfg(test)]
mod disconnect_tests {
    use super::*;

    #[test]
    fn pending_cuts_are_bounded_and_cleared() {
        let control = VenueControl::default();
        for _ in 0..40 {
            control.disconnect_one();
        }
        assert_eq!(control.pending_disconnects(), DISCONNECT_TICKETS_MAX);
        assert!(control.take_disconnect_ticket());
        assert_eq!(control.pending_disconnects(), DISCONNECT_TICKETS_MAX - 1);
        control.clear_disconnects();
        assert_eq!(control.pending_disconnects(), 0);
        assert!(!control.take_disconnect_ticket());
    }
}
