//! Shard threads: each owns a subset of symbols (`symbol_id % shard_count`), the latest quote per
//! (symbol, venue) of those symbols, their spreads for every ordered venue pair, and their rolling
//! windows. A shard turns records into windows and nothing else: no I/O, no locks, no allocation on
//! the per-record path; housekeeping (bucket close, expiry, snapshots) runs on the same thread
//! between batches.

pub mod thread;
pub mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tickflow_sdk::records::{
    GAP_DISCONNECT, GAP_QUOTE_WITHDRAWN, GAP_SYMBOL_RETIRED, GapEvent, OpportunityEvent, Quote,
    SpreadSample, SymbolId, TimestampNs, VenueId,
};

use crate::config::MAX_THRESHOLDS;
use crate::outbound::{OutRecord, Outbound};
use crate::record::FeedEvent;
use crate::shed::ShedControl;
use crate::venue::VENUE_COUNT;
use window::{SeedOutcome, WindowOutput, WindowParams, WindowStore, WindowSummary};

/// Where a shard reads the time for housekeeping. Records carry their own receive time; the clock
/// only decides when buckets close, windows expire and snapshots publish.
#[derive(Clone, Debug)]
pub enum ShardClock {
    System,
    /// A clock the caller moves (tests, replays): nanoseconds since the epoch.
    Manual(Arc<AtomicI64>),
    /// Event time (`[windows] clock = "event"`): the newest receive time of a quote or trade the
    /// shard handled, less `lateness_ns` (0 until the first record). Each shard has its own
    /// (`for_shard`); only its shard moves it.
    Event {
        newest_ns: Arc<AtomicI64>,
        lateness_ns: i64,
    },
}

impl ShardClock {
    /// An event clock that trails the records by `lateness_ns`.
    pub fn event(lateness_ns: i64) -> ShardClock {
        ShardClock::Event {
            newest_ns: Arc::new(AtomicI64::new(0)),
            lateness_ns,
        }
    }

    #[inline]
    pub fn now_ns(&self) -> TimestampNs {
        match self {
            ShardClock::System => crate::record::now_ns(),
            ShardClock::Manual(now) => now.load(Ordering::Acquire),
            ShardClock::Event {
                newest_ns,
                lateness_ns,
            } => {
                let newest = newest_ns.load(Ordering::Acquire);
                if newest == 0 { 0 } else { newest - lateness_ns }
            }
        }
    }

    /// The clock one shard uses: an event clock is per shard (its own records move it); the
    /// others are shared.
    pub fn for_shard(&self) -> ShardClock {
        match self {
            ShardClock::Event { lateness_ns, .. } => ShardClock::event(*lateness_ns),
            other => other.clone(),
        }
    }

    /// A record with receive time `ts_ns` was handled: moves an event clock forward.
    #[inline]
    fn observe(&self, ts_ns: TimestampNs) {
        if let ShardClock::Event { newest_ns, .. } = self {
            // Single writer (the shard thread): load and store, no read-modify-write.
            if ts_ns > newest_ns.load(Ordering::Relaxed) {
                newest_ns.store(ts_ns, Ordering::Release);
            }
        }
    }
}

/// Per-shard counters, written only by the shard thread, read by anyone.
#[derive(Debug, Default)]
pub struct ShardCounters {
    pub quotes: AtomicU64,
    pub trades: AtomicU64,
    pub gaps: AtomicU64,
    pub spread_updates: AtomicU64,
    /// Quotes of another venue skipped because they were older than their venue's age limit
    /// (`stale_after_ms`, on channels that re-send unchanged data).
    pub stale_skips: AtomicU64,
    /// Spreads beyond `windows.max_abs_spread_bp` (a placeholder price), kept out of the windows.
    pub spreads_out_of_bounds: AtomicU64,
    /// Quotes whose top of book was thinner than `windows.min_top_notional`.
    pub quotes_below_min_notional: AtomicU64,
    /// Cycles ended by housekeeping because a side's quote stopped being live.
    pub stale_cycle_ends: AtomicU64,
    /// Exact window recomputes forced by an outlier bucket leaving its window.
    pub outlier_recomputes: AtomicU64,
    /// Windows ended because a venue stopped listing their symbol.
    pub windows_retired: AtomicU64,
    /// Warm start: windows filled from history, the bucket means written into them, and pairs
    /// with history left out because the shard had no free window (seeding never evicts).
    pub windows_seeded: AtomicU64,
    pub seed_samples: AtomicU64,
    pub seed_skipped_capacity: AtomicU64,
    /// Spreads skipped because they were not finite (a price so small the ratio overflows).
    pub non_finite_spreads: AtomicU64,
    pub windows_live: AtomicU64,
    pub windows_created: AtomicU64,
    pub windows_evicted: AtomicU64,
    /// Windows evicted because memory shedding lowered the cap (also in `windows_evicted`).
    pub windows_shed: AtomicU64,
    /// The window cap in force (capacity, or lower while memory is shed).
    pub windows_cap: AtomicU64,
    /// The fullest feed ring this shard drained over the last interval, in records.
    pub ring_fill_max_records: AtomicU64,
    pub windows_expired: AtomicU64,
    pub samples_emitted: AtomicU64,
    pub opportunities_emitted: AtomicU64,
    pub batches: AtomicU64,
    pub parks: AtomicU64,
    /// Times a shard that ran dry waited `shard_batch_wait_us` for more records.
    pub batch_waits: AtomicU64,
    /// Latency from a quote's receive time (the frame read) to the end of the batch that updated
    /// its spreads, over the last housekeeping interval (about a bucket): percentiles in ns.
    pub latency_ns_p50: AtomicU64,
    pub latency_ns_p99: AtomicU64,
    pub latency_ns_p999: AtomicU64,
    pub latency_ns_max: AtomicU64,
}

/// What readers see of a shard: window summaries as of `published_ns`.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    pub shard_index: usize,
    pub published_ns: TimestampNs,
    pub windows: Vec<WindowSummary>,
}

/// One pair's history for warm start (see `Pipeline::seed_windows`): the spreads dataset's
/// `(bucket_start_ns, mean_bp)` of the last window length, in ascending time order. Plain values:
/// the binary reads the files, the shard only writes them into its window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowSeed {
    pub symbol_id: SymbolId,
    pub buy_venue_id: VenueId,
    pub sell_venue_id: VenueId,
    pub samples: Vec<(TimestampNs, f64)>,
}

/// What the seeding thread hands a shard thread (a bounded channel, before any feed runs).
pub(crate) enum SeedMessage {
    Window(WindowSeed),
    /// No more seeds: publish counts and a snapshot, then answer.
    Done(std::sync::mpsc::SyncSender<()>),
}

/// The latest quote of one (symbol, venue), as the spread calculation needs it.
#[derive(Clone, Copy, Debug, Default)]
struct LatestQuote {
    bid: f64,
    ask: f64,
    ts_recv_ns: TimestampNs,
    live: bool,
}

/// Bucket closes one housekeeping pass makes before it flushes them to the sinks and lets the
/// shard thread (and the sinks' runners) go on: an eighth of the default sink lane, so a bucket
/// change of every window (tens of thousands at the full universe) reaches the sinks in slices
/// they can take instead of one burst that overflows their lanes.
pub const BUCKET_CLOSES_PER_PASS: usize = 512;

/// Longest shutdown waits for the sinks' room while it emits the last buckets and cycle ends.
const FINISH_PACING_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Longest latency the shard's histogram holds (a longer one is recorded as this): a minute.
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// Window slots one housekeeping pass adds to the snapshot being built (each live one costs a
/// summary: ~2√buckets reads for its min and max, mostly cache misses at the full universe). With
/// the bucket closes' slice, this keeps a pass well under a millisecond (`housekeeping_1000x8`).
pub const SNAPSHOT_SLOTS_PER_PASS: usize = 256;

/// Bytes one latest-quote cell takes (the memory budget multiplies by it).
pub(crate) const LATEST_QUOTE_BYTES: usize = size_of::<LatestQuote>();

/// Snapshot buffers alive per shard at worst: the published one, the spare being refilled, and one
/// a slow reader still holds.
pub(crate) const SNAPSHOT_BUFFERS_PER_SHARD: usize = 3;

/// Everything a shard thread needs, built by the pipeline.
pub struct ShardParams {
    pub shard_index: usize,
    pub shard_count: usize,
    pub max_symbols: usize,
    /// Per venue: the age after which its quote takes no part in spreads, or `i64::MAX` for none
    /// (channels that push only on change: their quote is live until a gap or a withdrawal).
    pub quote_max_age_ns: [i64; VENUE_COUNT],
    /// A spread beyond ± this is not fed to a window (counted in `spreads_out_of_bounds`).
    pub max_abs_spread_bp: f64,
    /// A quote whose smaller top-of-book notional is below this takes no part (0: no minimum).
    pub min_top_notional: f64,
    pub windows: WindowParams,
    pub idle_expire_ns: i64,
    pub snapshot_interval_ns: i64,
    pub batch_max_records: usize,
    pub idle_spin_iterations: u32,
    pub idle_park_ms: u64,
    /// See `engine.shard_batch_wait_us`.
    pub batch_wait_us: u64,
    /// The CPU to pin this shard's thread to, if any.
    pub pinned_core: Option<usize>,
    pub clock: ShardClock,
    /// `[windows] enabled = false`: records go to the sinks with no spread or window work.
    pub pass_through: bool,
}

/// Adapts the shard's `Outbound` to what windows emit.
struct EmitToOutbound<'a> {
    outbound: &'a mut dyn Outbound,
}

impl WindowOutput for EmitToOutbound<'_> {
    #[inline]
    fn spread_sample(&mut self, sample: &SpreadSample) {
        self.outbound.emit(&OutRecord::Spread(*sample));
    }
    #[inline]
    fn opportunity(&mut self, event: &OpportunityEvent) {
        self.outbound.emit(&OutRecord::Opportunity(*event));
    }
}

/// Counts kept in plain integers on the hot path and published to `ShardCounters` once per batch.
#[derive(Clone, Copy, Debug, Default)]
struct LocalCounts {
    quotes: u64,
    trades: u64,
    gaps: u64,
    spread_updates: u64,
    stale_skips: u64,
    non_finite_spreads: u64,
    spreads_out_of_bounds: u64,
    stale_cycle_ends: u64,
    quotes_below_min_notional: u64,
}

/// The state one shard thread owns.
pub struct ShardState {
    params: ShardParams,
    local_counts: LocalCounts,
    latest: Vec<LatestQuote>,
    windows: WindowStore,
    outbound: Box<dyn Outbound>,
    counters: Arc<ShardCounters>,
    snapshot: Arc<ArcSwap<ShardSnapshot>>,
    spare_snapshot: Option<Arc<ShardSnapshot>>,
    /// Receive times of the quotes handled since the last flush (at most a batch's worth).
    pending_latency_ts: Vec<TimestampNs>,
    /// Frame-read-to-spread-update latency since the last publish.
    latency_ns: hdrhistogram::Histogram<u64>,
    /// A snapshot being built a slice per housekeeping pass, and the slab slot to resume from.
    snapshot_building: Option<(Arc<ShardSnapshot>, usize)>,
    last_housekeeping_bucket: i64,
    /// Buckets of the current bucket change are still being closed (see `housekeeping`).
    closes_pending: bool,
    /// The last housekeeping pass had closes pending and the sinks had no room for any.
    closes_waiting_for_room: bool,
    /// From this time on, pending closes no longer wait for the sinks' room.
    closes_unpaced_after_ns: TimestampNs,
    last_snapshot_ns: TimestampNs,
    /// The engine's shedding request (read in housekeeping).
    shed: Arc<ShedControl>,
    /// The fullest ring seen by a drain since the last `publish_counts`, in records.
    ring_fill_max_records: usize,
}

/// Local symbols a shard owns at most: `ceil(max_symbols / shard_count)`.
pub fn local_symbol_capacity(max_symbols: usize, shard_count: usize) -> usize {
    max_symbols.div_ceil(shard_count.max(1))
}

/// Windows one shard may hold: `max_windows` shared in proportion to the symbols a shard can own.
/// Symbols map to shards by `id % shards`, so a shard can own one symbol more than the average;
/// dividing by the shard count instead would make that shard evict while the universe still fits.
pub fn windows_per_shard(max_windows: usize, max_symbols: usize, shard_count: usize) -> usize {
    let local = local_symbol_capacity(max_symbols, shard_count) as u128;
    let share = (max_windows as u128 * local).div_ceil(max_symbols.max(1) as u128);
    share.min(max_windows as u128) as usize
}

impl ShardState {
    pub fn new(params: ShardParams, outbound: Box<dyn Outbound>) -> ShardState {
        let local_symbols = params.windows.local_symbols;
        // Three significant digits up to a minute: a fixed ~100 KiB, allocated once here.
        let latency_ns = hdrhistogram::Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
            .expect("constant bounds are valid");
        ShardState {
            local_counts: LocalCounts::default(),
            latest: vec![LatestQuote::default(); local_symbols * VENUE_COUNT],
            windows: WindowStore::new(params.windows.clone()),
            outbound,
            counters: Arc::new(ShardCounters::default()),
            snapshot: Arc::new(ArcSwap::from_pointee(ShardSnapshot {
                shard_index: params.shard_index,
                ..ShardSnapshot::default()
            })),
            spare_snapshot: None,
            pending_latency_ts: Vec::with_capacity(params.batch_max_records),
            latency_ns,
            snapshot_building: None,
            last_housekeeping_bucket: i64::MIN,
            closes_pending: false,
            closes_waiting_for_room: false,
            closes_unpaced_after_ns: 0,
            last_snapshot_ns: 0,
            shed: Arc::new(ShedControl::default()),
            ring_fill_max_records: 0,
            params,
        }
    }

    /// Bucket closes are pending and the last pass found no room in the sinks' lanes for any:
    /// the shard should wait for a runner to drain rather than come straight back.
    pub fn closes_waiting_for_room(&self) -> bool {
        self.closes_pending && self.closes_waiting_for_room
    }

    /// Makes this shard follow `shed` (the pipeline gives every shard the same one).
    pub fn set_shed_control(&mut self, shed: Arc<ShedControl>) {
        self.shed = shed;
    }

    /// A drain found `records` waiting in one ring (kept as the interval's maximum).
    #[inline]
    pub(crate) fn note_ring_fill(&mut self, records: usize) {
        self.ring_fill_max_records = self.ring_fill_max_records.max(records);
    }

    pub fn counters(&self) -> Arc<ShardCounters> {
        Arc::clone(&self.counters)
    }

    pub(crate) fn snapshot_handle(&self) -> Arc<ArcSwap<ShardSnapshot>> {
        Arc::clone(&self.snapshot)
    }

    /// The snapshot readers see now.
    pub fn published_snapshot(&self) -> Arc<ShardSnapshot> {
        self.snapshot.load_full()
    }

    #[inline]
    fn local_symbol(&self, symbol_id: SymbolId) -> Option<u32> {
        let local = symbol_id.0 as usize / self.params.shard_count;
        debug_assert_eq!(
            symbol_id.0 as usize % self.params.shard_count,
            self.params.shard_index
        );
        (local < self.params.windows.local_symbols).then_some(local as u32)
    }

    /// Fills one window from history before live data (cold path, at start): only for a symbol
    /// this shard owns within its capacity and two different venues of the table; see
    /// `WindowStore::seed` for what is written and how warming counts it.
    pub fn seed(&mut self, seed: &WindowSeed) -> SeedOutcome {
        let owned =
            seed.symbol_id.0 as usize % self.params.shard_count.max(1) == self.params.shard_index;
        let venues_ok = (seed.buy_venue_id.0 as usize) < VENUE_COUNT
            && (seed.sell_venue_id.0 as usize) < VENUE_COUNT
            && seed.buy_venue_id != seed.sell_venue_id;
        let local = if owned {
            self.local_symbol(seed.symbol_id)
        } else {
            None
        };
        let Some(local) = local.filter(|_| venues_ok) else {
            return SeedOutcome::NotOwned;
        };
        let now_ns = self.params.clock.now_ns();
        self.windows.seed(
            seed.symbol_id,
            local,
            seed.buy_venue_id,
            seed.sell_venue_id,
            &seed.samples,
            now_ns,
        )
    }

    /// Seeding is over: counters and a snapshot show the seeded windows at once.
    pub(crate) fn seeding_done(&mut self) {
        self.publish_counts();
        self.publish_snapshot(self.params.clock.now_ns());
    }

    /// Handles one record from a feed ring. Hot path.
    #[inline]
    pub fn handle(&mut self, event: &FeedEvent) {
        match event {
            FeedEvent::Quote(quote) => self.handle_quote(quote),
            FeedEvent::Trade(trade) => {
                self.local_counts.trades += 1;
                self.outbound.emit(&OutRecord::Trade(*trade));
            }
            FeedEvent::Gap(gap) => self.handle_gap(gap),
        }
    }

    fn handle_quote(&mut self, quote: &Quote) {
        self.local_counts.quotes += 1;
        if self.pending_latency_ts.len() == self.pending_latency_ts.capacity() {
            self.record_latencies();
        }
        self.pending_latency_ts.push(quote.ts_recv_ns);
        self.outbound.emit(&OutRecord::Quote(*quote));
        if self.params.pass_through {
            return;
        }
        self.params.clock.observe(quote.ts_recv_ns);
        let venue = quote.venue_id.0 as usize;
        let Some(local) = self.local_symbol(quote.symbol_id) else {
            return;
        };
        if venue >= VENUE_COUNT {
            return;
        }
        let row = local as usize * VENUE_COUNT;
        let min_notional = self.params.min_top_notional;
        if min_notional > 0.0
            && (quote.bid * quote.bid_qty).min(quote.ask * quote.ask_qty) < min_notional
        {
            // Too thin to trade: the venue takes no part until a deep enough quote arrives (its
            // open cycles end at the next housekeeping, as for any quote that stops being live).
            self.latest[row + venue].live = false;
            self.local_counts.quotes_below_min_notional += 1;
            return;
        }
        self.latest[row + venue] = LatestQuote {
            bid: quote.bid,
            ask: quote.ask,
            ts_recv_ns: quote.ts_recv_ns,
            live: true,
        };
        let mut output = EmitToOutbound {
            outbound: self.outbound.as_mut(),
        };
        let mut updates = 0u64;
        let mut stale = 0u64;
        let mut non_finite = 0u64;
        let mut out_of_bounds = 0u64;
        let max_abs_spread_bp = self.params.max_abs_spread_bp;
        for other in 0..VENUE_COUNT {
            if other == venue {
                continue;
            }
            let other_quote = self.latest[row + other];
            if !other_quote.live {
                continue;
            }
            let oldest_fresh_ns = quote
                .ts_recv_ns
                .saturating_sub(self.params.quote_max_age_ns[other]);
            if other_quote.ts_recv_ns < oldest_fresh_ns {
                // A dead venue's last quote must never make a false opportunity, nor keep one open.
                stale += 1;
                self.windows.end_cycles_for_pair(
                    local,
                    VenueId(other as u16),
                    quote.venue_id,
                    quote.ts_recv_ns,
                    &mut output,
                );
                continue;
            }
            // Buy on `other` (pay its ask), sell on this venue (hit this bid), and the reverse.
            let buy_other_bp = (quote.bid - other_quote.ask) / other_quote.ask * 10_000.0;
            let buy_here_bp = (other_quote.bid - quote.ask) / quote.ask * 10_000.0;
            if !buy_other_bp.is_finite() || !buy_here_bp.is_finite() {
                // Decoders refuse non-positive and non-finite prices, but a tiny positive one
                // (1e-320) still makes an infinite spread: it would poison the window sums.
                non_finite += 1;
                continue;
            }
            if buy_other_bp.abs() > max_abs_spread_bp || buy_here_bp.abs() > max_abs_spread_bp {
                // A placeholder price (a new listing's 1e9 ask) is not a spread anyone can trade:
                // it would dominate the window's statistics for its whole length.
                out_of_bounds += 1;
                continue;
            }
            self.windows.update(
                quote.symbol_id,
                local,
                VenueId(other as u16),
                quote.venue_id,
                buy_other_bp,
                quote.ts_recv_ns,
                &mut output,
            );
            self.windows.update(
                quote.symbol_id,
                local,
                quote.venue_id,
                VenueId(other as u16),
                buy_here_bp,
                quote.ts_recv_ns,
                &mut output,
            );
            updates += 2;
        }
        self.local_counts.spread_updates += updates;
        self.local_counts.stale_skips += stale;
        self.local_counts.non_finite_spreads += non_finite;
        self.local_counts.spreads_out_of_bounds += out_of_bounds;
    }

    fn handle_gap(&mut self, gap: &GapEvent) {
        self.local_counts.gaps += 1;
        self.outbound.emit(&OutRecord::Gap(*gap));
        if self.params.pass_through {
            return;
        }
        let venue = gap.venue_id.0 as usize;
        let Some(local) = self.local_symbol(gap.symbol_id) else {
            return;
        };
        if venue >= VENUE_COUNT {
            return;
        }
        // Disconnect, reconnect or withdrawal: either way the venue's last quote is not a price
        // now, so it takes no part until a fresh quote arrives.
        self.latest[local as usize * VENUE_COUNT + venue].live = false;
        if gap.kind == GAP_DISCONNECT || gap.kind == GAP_QUOTE_WITHDRAWN {
            let mut output = EmitToOutbound {
                outbound: self.outbound.as_mut(),
            };
            self.windows
                .end_cycles_for_venue(local, gap.venue_id, gap.ts_ns, &mut output);
        } else if gap.kind == GAP_SYMBOL_RETIRED {
            // The venue no longer lists it: its windows with every other venue end and free
            // their room (a relisting starts them afresh).
            let mut output = EmitToOutbound {
                outbound: self.outbound.as_mut(),
            };
            self.windows
                .retire_venue(local, gap.venue_id, gap.ts_ns, &mut output);
        }
    }

    /// Makes everything emitted since the last call visible to sinks and publishes the per-record
    /// counters. Call after each batch.
    pub fn flush(&mut self) {
        self.outbound.flush();
        self.record_latencies();
        self.publish_local_counts();
    }

    /// Records how long ago each pending quote was read from its socket: one clock read per
    /// batch, so the figure includes the whole batch's processing (an upper bound per quote).
    fn record_latencies(&mut self) {
        if self.pending_latency_ts.is_empty() {
            return;
        }
        let now_ns = crate::record::now_ns();
        for &ts_recv_ns in &self.pending_latency_ts {
            let latency_ns = now_ns
                .saturating_sub(ts_recv_ns)
                .clamp(1, LATENCY_NS_MAX as i64);
            // In bounds by the clamp: recording cannot fail.
            let _ = self.latency_ns.record(latency_ns as u64);
        }
        self.pending_latency_ts.clear();
    }

    fn publish_local_counts(&self) {
        let (local, counters) = (&self.local_counts, &self.counters);
        counters.quotes.store(local.quotes, Ordering::Relaxed);
        counters.trades.store(local.trades, Ordering::Relaxed);
        counters.gaps.store(local.gaps, Ordering::Relaxed);
        counters
            .spread_updates
            .store(local.spread_updates, Ordering::Relaxed);
        counters
            .stale_skips
            .store(local.stale_skips, Ordering::Relaxed);
        counters
            .non_finite_spreads
            .store(local.non_finite_spreads, Ordering::Relaxed);
        counters
            .spreads_out_of_bounds
            .store(local.spreads_out_of_bounds, Ordering::Relaxed);
        counters
            .stale_cycle_ends
            .store(local.stale_cycle_ends, Ordering::Relaxed);
        counters
            .quotes_below_min_notional
            .store(local.quotes_below_min_notional, Ordering::Relaxed);
    }

    /// Between batches: closes due buckets (in slices of `BUCKET_CLOSES_PER_PASS`, each flushed
    /// to the sinks), ends cycles whose quotes went stale, expires idle windows, publishes the
    /// snapshot when due. Cheap when nothing is due (one clock read and two compares). Returns
    /// true while bucket closes are still pending: the caller should come back soon instead of
    /// parking.
    pub fn housekeeping(&mut self) -> bool {
        let now_ns = self.params.clock.now_ns();
        let bucket = now_ns.div_euclid(self.params.windows.bucket_ns);
        if bucket != self.last_housekeeping_bucket {
            self.last_housekeeping_bucket = bucket;
            self.closes_pending = true;
            // Pace by the sinks' room (less the quarter of each lane kept for live records)
            // until half the bucket has passed; then close regardless
            // (a sink that cannot take a bucket's samples in half a bucket does not keep up).
            self.closes_unpaced_after_ns = bucket
                .saturating_mul(self.params.windows.bucket_ns)
                .saturating_add(self.params.windows.bucket_ns / 2);
        }
        if self.closes_pending {
            let room = self.outbound.burst_room_hint();
            let slice = if now_ns >= self.closes_unpaced_after_ns {
                BUCKET_CLOSES_PER_PASS
            } else {
                room.min(BUCKET_CLOSES_PER_PASS)
            };
            self.closes_waiting_for_room = slice == 0;
            if slice == 0 {
                return true;
            }
            let mut output = EmitToOutbound {
                outbound: self.outbound.as_mut(),
            };
            let done = self.windows.close_due_buckets(now_ns, slice, &mut output);
            if done {
                self.closes_pending = false;
                // A pair whose venues both went quiet gets no quote to notice it: end its
                // cycles here.
                let (latest, max_age_ns) = (&self.latest, &self.params.quote_max_age_ns);
                let ended = self.windows.end_stale_cycles(
                    now_ns,
                    |local, buy, sell| {
                        let row = local as usize * VENUE_COUNT;
                        [buy, sell].into_iter().any(|venue| {
                            let quote = latest[row + venue as usize];
                            !quote.live
                                || quote.ts_recv_ns
                                    < now_ns.saturating_sub(max_age_ns[venue as usize])
                        })
                    },
                    &mut output,
                );
                self.local_counts.stale_cycle_ends += ended as u64;
                self.windows
                    .expire_idle(now_ns, self.params.idle_expire_ns, &mut output);
                self.publish_counts();
            }
            self.flush();
        }
        self.apply_shedding(now_ns);
        if self.snapshot_building.is_none()
            && now_ns - self.last_snapshot_ns >= self.params.snapshot_interval_ns
        {
            self.last_snapshot_ns = now_ns;
            self.publish_counts();
            let mut next = self.take_spare_snapshot();
            if let Some(snapshot) = Arc::get_mut(&mut next) {
                snapshot.windows.clear();
            }
            self.snapshot_building = Some((next, 0));
        }
        self.continue_snapshot(now_ns);
        self.closes_pending
    }

    /// Follows the engine's shedding request: the window cap it sets, and while more windows are
    /// live than that, evicts the least recently updated ones a slice per pass (each emits its
    /// open bucket and ends its cycles first, flushed to the sinks).
    fn apply_shedding(&mut self, now_ns: TimestampNs) {
        let cap = self.shed.window_cap(self.params.windows.max_windows);
        if cap != self.windows.live_cap() {
            self.windows.set_live_cap(cap);
        }
        if self.windows.counts().live as usize > self.windows.live_cap() {
            let mut output = EmitToOutbound {
                outbound: self.outbound.as_mut(),
            };
            self.windows
                .shed_to_cap(now_ns, BUCKET_CLOSES_PER_PASS, &mut output);
            self.publish_counts();
            self.flush();
        }
    }

    fn publish_counts(&mut self) {
        self.publish_local_counts();
        if !self.latency_ns.is_empty() {
            let histogram = &self.latency_ns;
            let counters = &self.counters;
            counters
                .latency_ns_p50
                .store(histogram.value_at_quantile(0.5), Ordering::Relaxed);
            counters
                .latency_ns_p99
                .store(histogram.value_at_quantile(0.99), Ordering::Relaxed);
            counters
                .latency_ns_p999
                .store(histogram.value_at_quantile(0.999), Ordering::Relaxed);
            counters
                .latency_ns_max
                .store(histogram.max(), Ordering::Relaxed);
            self.latency_ns.reset();
        }
        let counts = self.windows.counts();
        let counters = &self.counters;
        counters.windows_live.store(counts.live, Ordering::Relaxed);
        counters
            .windows_created
            .store(counts.created, Ordering::Relaxed);
        counters
            .windows_evicted
            .store(counts.evicted, Ordering::Relaxed);
        counters
            .windows_expired
            .store(counts.expired, Ordering::Relaxed);
        counters
            .samples_emitted
            .store(counts.samples, Ordering::Relaxed);
        counters
            .opportunities_emitted
            .store(counts.opportunities, Ordering::Relaxed);
        counters
            .outlier_recomputes
            .store(counts.outlier_recomputes, Ordering::Relaxed);
        counters
            .windows_retired
            .store(counts.retired, Ordering::Relaxed);
        counters
            .windows_seeded
            .store(counts.windows_seeded, Ordering::Relaxed);
        counters
            .seed_samples
            .store(counts.seed_samples, Ordering::Relaxed);
        counters
            .seed_skipped_capacity
            .store(counts.seed_skipped_capacity, Ordering::Relaxed);
        counters.windows_shed.store(counts.shed, Ordering::Relaxed);
        counters
            .windows_cap
            .store(self.windows.live_cap() as u64, Ordering::Relaxed);
        counters
            .ring_fill_max_records
            .store(self.ring_fill_max_records as u64, Ordering::Relaxed);
        self.ring_fill_max_records = 0;
    }

    /// Shutdown: emits every open bucket and ends every open cycle (a sink never sees a cycle
    /// start without its end), then flushes.
    ///
    /// Paced like a bucket change (slices the sinks have room for, each flushed, the sinks'
    /// runners still draining) for up to `FINISH_PACING_MAX`, then the rest at once: at the full
    /// universe this is tens of thousands of samples, more than a sink lane holds.
    pub fn finish(&mut self) {
        let now_ns = self.params.clock.now_ns();
        let pacing_ends = std::time::Instant::now() + FINISH_PACING_MAX;
        loop {
            let room = self.outbound.free_slots_hint();
            let slice = if std::time::Instant::now() >= pacing_ends {
                usize::MAX
            } else {
                // Ending a window's cycles emits up to one event per threshold.
                (room / MAX_THRESHOLDS).min(BUCKET_CLOSES_PER_PASS)
            };
            if slice == 0 {
                std::thread::yield_now();
                continue;
            }
            let mut output = EmitToOutbound {
                outbound: self.outbound.as_mut(),
            };
            let done = self.windows.finish_slice(now_ns, slice, &mut output);
            self.flush();
            if done {
                break;
            }
        }
        self.publish_counts();
        self.flush();
    }

    /// A snapshot buffer no reader holds: the previous one when it is free, else a new one.
    fn take_spare_snapshot(&mut self) -> Arc<ShardSnapshot> {
        match self.spare_snapshot.take() {
            Some(mut spare) => match Arc::get_mut(&mut spare) {
                Some(_) => spare,
                None => Arc::new(ShardSnapshot::default()),
            },
            None => Arc::new(ShardSnapshot::default()),
        }
    }

    /// Adds the next `SNAPSHOT_SLOTS_PER_PASS` window slots to the snapshot being built and
    /// publishes it once the slab is done: one housekeeping pass never summarizes the whole
    /// universe (tens of thousands of windows, milliseconds) at once.
    fn continue_snapshot(&mut self, now_ns: TimestampNs) {
        let Some((mut next, from)) = self.snapshot_building.take() else {
            return;
        };
        let Some(snapshot) = Arc::get_mut(&mut next) else {
            unreachable!("the snapshot being built is not shared until it is published")
        };
        match self.windows.summarize_slots_into(
            from,
            SNAPSHOT_SLOTS_PER_PASS,
            &mut snapshot.windows,
        ) {
            Some(resume) => self.snapshot_building = Some((next, resume)),
            None => {
                snapshot.shard_index = self.params.shard_index;
                snapshot.published_ns = now_ns;
                self.spare_snapshot = Some(self.snapshot.swap(next));
            }
        }
    }

    /// Publishes every window's summary at once (shutdown, tests). Reuses the previous
    /// snapshot's buffer when no reader holds it.
    pub fn publish_snapshot(&mut self, now_ns: TimestampNs) {
        self.publish_counts();
        self.snapshot_building = None;
        let mut next = self.take_spare_snapshot();
        {
            let snapshot = Arc::get_mut(&mut next).expect("a fresh or unshared Arc is unique");
            snapshot.shard_index = self.params.shard_index;
            snapshot.published_ns = now_ns;
            self.windows.summarize_into(&mut snapshot.windows);
        }
        self.spare_snapshot = Some(self.snapshot.swap(next));
    }

    pub fn windows(&self) -> &WindowStore {
        &self.windows
    }

    /// The window store itself, for benchmarks that drive its parts directly.
    pub fn windows_mut(&mut self) -> &mut WindowStore {
        &mut self.windows
    }

    /// A snapshot is being built a slice per housekeeping pass.
    pub(crate) fn snapshot_in_progress(&self) -> bool {
        self.snapshot_building.is_some()
    }

    /// The shard's housekeeping clock.
    pub(crate) fn now_ns(&self) -> TimestampNs {
        self.params.clock.now_ns()
    }

    pub(crate) fn params_idle_spin_iterations(&self) -> u32 {
        self.params.idle_spin_iterations
    }

    pub(crate) fn params_idle_park_ms(&self) -> u64 {
        self.params.idle_park_ms
    }

    pub(crate) fn params_batch_wait_us(&self) -> u64 {
        self.params.batch_wait_us
    }

    pub(crate) fn params_pinned_core(&self) -> Option<usize> {
        self.params.pinned_core
    }
}

/// Wakes a parked shard when a producer has pushed records.
#[derive(Debug)]
pub(crate) struct ShardWaker {
    parked: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Default for ShardWaker {
    fn default() -> Self {
        ShardWaker {
            parked: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        }
    }
}

impl ShardWaker {
    /// Called by producers after pushing. Nearly free when the shard is awake.
    #[inline]
    pub fn wake(&self) {
        // Pairs with the fence in `park`: either the shard sees our records when it re-checks
        // its rings, or we see `parked` and unpark it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }

    /// Unparks the shard even while it waits for a batch without asking to be woken: a producer
    /// whose ring is filling up must not wait out the batch wait.
    #[inline]
    pub(crate) fn wake_urgently(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Unparks the shard whether or not it is parked (shutdown).
    pub(crate) fn wake_unconditionally(&self) {
        self.parked.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    pub(crate) fn register_current_thread(&self) {
        // Set once by the shard thread itself, before it first parks.
        let _ = self.thread.set(std::thread::current());
    }

    /// Marks the shard parked; returns false if `has_work` shows records arrived meanwhile.
    pub(crate) fn park(&self, timeout: std::time::Duration, has_work: impl Fn() -> bool) {
        self.parked.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !has_work() {
            std::thread::park_timeout(timeout);
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}
