//! Rolling spread windows of one shard: a slab of window headers, one flat bucket array, a dense
//! (symbol, buy venue, sell venue) → window index, and an intrusive least-recently-updated list.
//!
//! Everything is allocated when the shard starts and sized from config; updates are O(1) and do not
//! allocate. Only the owning shard thread touches a `WindowStore`: expiry and eviction run on that
//! thread between batches, never from a timer.
//!
//! Layout (what makes 1000 symbols × 8 venues × 3600 one-second buckets fit in 1 GiB): a bucket is
//! one `f32`, the mean spread of that bucket (NaN when the bucket saw no quote). The open bucket is
//! accumulated in the header in `f64` and only its mean is stored when it closes. Window mean and
//! standard deviation run on sums over the stored bucket means (recomputed exactly once per lap to
//! bound rounding drift); window min and max use √n blocks: each block keeps the min and max of its
//! buckets, so a summary reads ~2√n values instead of n. Eviction and expiry follow the
//! least-recently-updated list at bucket precision (a window moves to the front on its first
//! update in a bucket).
//!
//! Each window's ring is rotated by its own offset (its slab index), so the once-a-lap exact
//! recompute of different windows falls in different buckets instead of all at once. The running
//! sums are also recomputed when a bucket leaves whose square dwarfs what remains (an outlier such
//! as a placeholder ask's 1e9 bp): subtracting it would leave the rounding error of a 1e18 sum in
//! a window of ordinary spreads.

use tickflow_sdk::records::{
    OPPORTUNITY_END, OPPORTUNITY_FLAG_NET, OPPORTUNITY_START, OpportunityEvent,
    SPREAD_FLAG_WARMING, SpreadSample, SymbolId, TimestampNs, VenueId,
};

use crate::config::MAX_THRESHOLDS;
use crate::venue::VENUE_COUNT;

const NONE: u32 = u32::MAX;

/// A bucket leaving the window forces an exact recompute of the running sums when its square is
/// more than this many times the square sum of the buckets that remain: the subtraction would keep
/// the leaving value's rounding error (about 2⁻⁵³ of it), which would then be more than ~2⁻³⁷ of
/// what remains. Rare (a regime change or an outlier leaving), O(buckets) when it happens.
const RECOMPUTE_WHEN_LEAVING_SQUARE_EXCEEDS_REST: f64 = 65_536.0;

/// Sizes and rules of one shard's windows.
#[derive(Clone, Debug)]
pub struct WindowParams {
    pub bucket_ns: i64,
    pub buckets: usize,
    pub max_windows: usize,
    pub local_symbols: usize,
    pub band_k: f64,
    pub thresholds_bp: Vec<f64>,
    /// A window with fewer closed buckets with data than this is warming: its statistics are
    /// flagged and no opportunity cycle starts from it (running cycles go on).
    pub warmup_buckets: usize,
    /// Per venue taker fee (bp); a pair's net spread is its gross spread minus both fees.
    pub taker_fees_bp: [f64; VENUE_COUNT],
    /// Cycles compare the net spread (gross minus fees) with their thresholds.
    pub cycles_on_net: bool,
    /// Write the buckets and blocks of every window at construction (`windows.prefault`).
    pub prefault: bool,
}

impl WindowParams {
    pub(crate) fn block_len(&self) -> usize {
        block_len_for(self.buckets)
    }
}

/// √n rounded up: the block length of the min/max decomposition.
pub(crate) fn block_len_for(buckets: usize) -> usize {
    (buckets as f64).sqrt().ceil().max(1.0) as usize
}

/// Bytes one window costs at `buckets` (header, buckets, blocks, index entry): the memory budget
/// uses this, so it must follow the layout below.
pub(crate) fn bytes_per_window(buckets: usize) -> usize {
    let blocks = buckets.div_ceil(block_len_for(buckets));
    size_of::<WindowHeader>()
        + size_of::<LruLink>()
        + buckets * size_of::<f32>()
        + blocks * 2 * size_of::<f32>()
}

/// Bytes of the dense index for `local_symbols` (one u32 per ordered venue pair).
pub(crate) fn index_bytes(local_symbols: usize) -> usize {
    local_symbols * VENUE_COUNT * VENUE_COUNT * size_of::<u32>()
}

#[derive(Clone, Copy, Debug, Default)]
struct CycleState {
    active: bool,
    /// Cycles of this threshold that ended.
    completed: u32,
    /// Start of the running cycle, or of the last one (0: none yet).
    started_ns: TimestampNs,
    /// End of the last cycle that ended (0: none yet).
    ended_ns: TimestampNs,
    peak_bp: f64,
}

/// One threshold's opportunity cycles of a window, as readers see them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThresholdCycles {
    /// Cycles at this threshold that ended.
    pub completed: u32,
    /// A cycle at this threshold is running.
    pub active: bool,
    /// Start of the running cycle, or of the last one (0: none yet).
    pub last_start_ns: TimestampNs,
    /// End of the last cycle that ended (0: none yet).
    pub last_end_ns: TimestampNs,
}

/// One window's fixed-size state (the buckets live in the shared flat array). The first cache line
/// holds everything an update touches; cycle state and identity follow.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
struct WindowHeader {
    // -- first cache line: the open bucket --
    /// Absolute index (`ts / bucket_ns`) of the open bucket.
    open_bucket: i64,
    /// Absolute index of the newest closed bucket written to the ring (-1: none yet).
    written_bucket: i64,
    last_update_ns: TimestampNs,
    open_sum: f64,
    open_min: f64,
    open_max: f64,
    /// The latest spread (also after the bucket closed).
    open_last: f64,
    open_count: u32,
    in_use: bool,
    in_open_list: bool,
    /// Bit i set: the cycle of threshold i is active (lets an update skip the cycle state).
    cycles_active_mask: u8,
    // -- second cache line on: window sums, cycles, identity --
    buy_venue: u16,
    window_sum: f64,
    window_sum_squares: f64,
    window_count: u32,
    cycles_completed: u32,
    cycles: [CycleState; MAX_THRESHOLDS],
    symbol_id: SymbolId,
    local_symbol: u32,
    sell_venue: u16,
    /// Index in the store's open list while `in_open_list`.
    open_list_position: u32,
    /// Index in the store's cycle list while `cycles_active_mask != 0`.
    cycle_list_position: u32,
    /// Seeded from history with samples spanning at least `warmup_buckets`: the window is not
    /// warming while its newest written bucket is below this (the newest seeded bucket + the
    /// window length, when the last seeded sample leaves). `i64::MIN`: not seeded.
    warm_by_seed_until_bucket: i64,
}

const _: () = assert!(std::mem::offset_of!(WindowHeader, buy_venue) == 64);

impl WindowHeader {
    const EMPTY: WindowHeader = WindowHeader {
        open_bucket: 0,
        written_bucket: -1,
        last_update_ns: 0,
        open_sum: 0.0,
        open_min: f64::INFINITY,
        open_max: f64::NEG_INFINITY,
        open_last: f64::NAN,
        open_count: 0,
        in_use: false,
        in_open_list: false,
        cycles_active_mask: 0,
        buy_venue: 0,
        window_sum: 0.0,
        window_sum_squares: 0.0,
        window_count: 0,
        cycles_completed: 0,
        cycles: [CycleState {
            active: false,
            completed: 0,
            started_ns: 0,
            ended_ns: 0,
            peak_bp: 0.0,
        }; MAX_THRESHOLDS],
        symbol_id: SymbolId(0),
        local_symbol: 0,
        sell_venue: 0,
        open_list_position: 0,
        cycle_list_position: 0,
        warm_by_seed_until_bucket: i64::MIN,
    };
}

/// Links of the least-recently-updated list, kept apart from the headers so that moving a window
/// to the front touches two small cells instead of three headers.
#[derive(Clone, Copy, Debug)]
struct LruLink {
    prev: u32,
    next: u32,
}

const LRU_UNLINKED: LruLink = LruLink {
    prev: NONE,
    next: NONE,
};

/// A reader's view of one window, published in shard snapshots. The statistics cover the
/// `buckets` buckets up to the window's last closed bucket: for a window that stopped updating,
/// that is as of `last_update_ns` (it expires after `windows.idle_expire_ms`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowSummary {
    pub symbol_id: SymbolId,
    pub buy_venue_id: VenueId,
    pub sell_venue_id: VenueId,
    pub last_update_ns: TimestampNs,
    pub last_bp: f64,
    pub mean_bp: f64,
    pub std_bp: f64,
    pub min_bp: f64,
    pub max_bp: f64,
    pub band_lower_bp: f64,
    pub band_upper_bp: f64,
    /// Closed buckets with data in the window.
    pub buckets_filled: u32,
    /// Cycles that ended, over every threshold.
    pub cycles_completed: u32,
    /// A cycle of any threshold is running.
    pub cycle_active: bool,
    /// Per configured threshold (`windows.thresholds_bp`, in its order; entries past the
    /// configured count are zero): its cycles and the last cycle's start and end.
    pub cycles: [ThresholdCycles; MAX_THRESHOLDS],
    /// Fewer than `warmup_buckets` buckets filled: the statistics are not yet meaningful.
    pub warming: bool,
    /// Both venues' taker fees: the net spread of any figure above is it minus this.
    pub fees_bp: f64,
    /// `last_bp − fees_bp`: the latest spread net of taker fees.
    pub net_last_bp: f64,
}

/// What a window operation produced, for the shard to hand to its outbound.
pub trait WindowOutput {
    fn spread_sample(&mut self, sample: &SpreadSample);
    fn opportunity(&mut self, event: &OpportunityEvent);
}

/// Counters a store keeps (read by the shard into its atomics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub live: u64,
    pub created: u64,
    pub evicted: u64,
    pub expired: u64,
    pub samples: u64,
    pub opportunities: u64,
    /// Exact recomputes of a window's sums forced by a large bucket leaving it.
    pub outlier_recomputes: u64,
    /// Windows ended because a venue no longer lists their symbol (`GAP_SYMBOL_RETIRED`).
    pub retired: u64,
    /// Windows filled from history at start (`seed`).
    pub windows_seeded: u64,
    /// Bucket means written into windows from history.
    pub seed_samples: u64,
    /// Pairs with history not seeded because the store had no free window (seeding never evicts).
    pub seed_skipped_capacity: u64,
    /// Windows evicted because memory shedding lowered the cap below the capacity (also in
    /// `evicted`).
    pub shed: u64,
}

/// What [`WindowStore::seed`] did with one pair's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedOutcome {
    /// The window was created and `samples` bucket means written into it.
    Seeded { samples: usize },
    /// No free window (counted in `seed_skipped_capacity`).
    SkippedCapacity,
    /// The window exists already (live data came first): left as it is.
    SkippedExisting,
    /// No sample falls in the window ending at `now_ns` (or none is finite).
    Empty,
    /// Not this shard's symbol, beyond its symbol capacity, or not two different venues.
    NotOwned,
}

/// Discards what a window operation emits (seeding emits nothing: the history has it already).
struct DiscardOutput;

impl WindowOutput for DiscardOutput {
    fn spread_sample(&mut self, _sample: &SpreadSample) {}
    fn opportunity(&mut self, _event: &OpportunityEvent) {}
}

pub struct WindowStore {
    params: WindowParams,
    block_len: usize,
    blocks_per_window: usize,
    headers: Vec<WindowHeader>,
    lru_links: Vec<LruLink>,
    /// `max_windows × buckets` bucket means (NaN = empty).
    buckets: Vec<f32>,
    /// `max_windows × blocks × 2` (min, max) per block.
    blocks: Vec<f32>,
    /// `local_symbols × VENUE_COUNT × VENUE_COUNT` → window index or NONE.
    index: Vec<u32>,
    free: Vec<u32>,
    /// Windows whose open bucket has data and is not yet closed.
    open_list: Vec<u32>,
    /// Windows with at least one active opportunity cycle (housekeeping checks their quotes).
    cycle_list: Vec<u32>,
    /// Where an unfinished `close_due_buckets` resumes in `open_list` (entries before it are not
    /// due; 0 when the last call finished).
    close_scan_position: usize,
    lru_head: u32,
    lru_tail: u32,
    /// Spreads at or below this cannot start a cycle.
    lowest_threshold_bp: f64,
    /// The bucket of the last timestamp seen and its bounds: a quote updates up to 14 windows
    /// with one timestamp, and a 64-bit division per update would cost more than the update.
    cached_bucket: i64,
    cached_bucket_start_ns: i64,
    cached_bucket_end_ns: i64,
    counts: WindowCounts,
    /// Most live windows allowed now: `max_windows`, or lower while memory is shed
    /// (`set_live_cap`).
    live_cap: usize,
}

impl std::fmt::Debug for WindowStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WindowStore")
            .field("params", &self.params)
            .field("counts", &self.counts)
            .finish()
    }
}

impl WindowStore {
    pub fn new(params: WindowParams) -> WindowStore {
        assert!(params.buckets >= 2, "config validation keeps buckets >= 2");
        assert!(
            params.bucket_ns > 0,
            "config validation keeps bucket_ms > 0"
        );
        assert!(params.thresholds_bp.len() <= MAX_THRESHOLDS);
        let block_len = params.block_len();
        let blocks_per_window = params.buckets.div_ceil(block_len);
        // Prefaulted: every value is written now (NaN, an empty bucket), so every page is
        // resident before the first quote. Otherwise zeroed allocations are mapped lazily by the
        // OS: a window's pages become resident when it is first used (RSS follows live windows up
        // to the budget), and the shard thread pays for the page faults while quotes wait. That
        // cost is real: at the full universe (56 000 one-hour windows, 800 MiB) on a 2-core VM
        // the shard spent seconds zeroing pages after start while the rings overflowed.
        let initial = if params.prefault { f32::NAN } else { 0.0 };
        let buckets = vec![initial; params.max_windows * params.buckets];
        let blocks = vec![initial; params.max_windows * blocks_per_window * 2];
        let headers = vec![WindowHeader::EMPTY; params.max_windows];
        let lru_links = vec![LRU_UNLINKED; params.max_windows];
        let index = vec![NONE; params.local_symbols * VENUE_COUNT * VENUE_COUNT];
        let free = (0..params.max_windows as u32).rev().collect();
        WindowStore {
            block_len,
            blocks_per_window,
            headers,
            lru_links,
            buckets,
            blocks,
            index,
            free,
            open_list: Vec::with_capacity(params.max_windows),
            cycle_list: Vec::with_capacity(params.max_windows),
            close_scan_position: 0,
            lru_head: NONE,
            lru_tail: NONE,
            lowest_threshold_bp: params
                .thresholds_bp
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min),
            counts: WindowCounts::default(),
            cached_bucket: 0,
            cached_bucket_start_ns: 0,
            cached_bucket_end_ns: 0,
            live_cap: params.max_windows,
            params,
        }
    }

    /// Sets the most live windows allowed (memory shedding), clamped to `1..=max_windows`. A
    /// lower cap takes effect as windows are created (each new one beyond it replaces the least
    /// recently updated) and through `shed_to_cap`; freed slots are reused first, so the bucket
    /// pages in use stop growing.
    pub fn set_live_cap(&mut self, cap: usize) {
        self.live_cap = cap.clamp(1, self.params.max_windows.max(1));
    }

    pub fn live_cap(&self) -> usize {
        self.live_cap
    }

    /// Evicts least-recently-updated windows while more than the cap are live, at most
    /// `max_removals` in this call (each emits its open bucket and ends its cycles first); returns
    /// how many it evicted.
    pub fn shed_to_cap(
        &mut self,
        now_ns: TimestampNs,
        max_removals: usize,
        output: &mut impl WindowOutput,
    ) -> usize {
        let mut removed = 0;
        while removed < max_removals
            && self.counts.live as usize > self.live_cap
            && self.lru_tail != NONE
        {
            let window = self.lru_tail;
            self.remove(window, now_ns, output);
            self.counts.evicted += 1;
            self.counts.shed += 1;
            removed += 1;
        }
        removed
    }

    pub fn counts(&self) -> WindowCounts {
        self.counts
    }

    pub fn params(&self) -> &WindowParams {
        &self.params
    }

    /// `ts_ns / bucket_ns` (floor), without a division when `ts_ns` is in the last bucket seen.
    #[inline]
    fn bucket_of(&mut self, ts_ns: TimestampNs) -> i64 {
        if ts_ns >= self.cached_bucket_start_ns && ts_ns < self.cached_bucket_end_ns {
            return self.cached_bucket;
        }
        let bucket = ts_ns.div_euclid(self.params.bucket_ns);
        self.cached_bucket = bucket;
        self.cached_bucket_start_ns = bucket.saturating_mul(self.params.bucket_ns);
        self.cached_bucket_end_ns = self
            .cached_bucket_start_ns
            .saturating_add(self.params.bucket_ns);
        bucket
    }

    /// Where absolute bucket `absolute` of `window` sits in its ring: rotated by the window's slab
    /// index, so that windows finish their laps (and recompute) in different buckets.
    #[inline]
    fn ring_slot(&self, window: u32, absolute: i64) -> usize {
        let buckets = self.params.buckets as i64;
        (absolute + i64::from(window) % buckets).rem_euclid(buckets) as usize
    }

    #[inline]
    fn index_slot(local_symbol: u32, buy: u16, sell: u16) -> usize {
        (local_symbol as usize * VENUE_COUNT + buy as usize) * VENUE_COUNT + sell as usize
    }

    /// Adds one spread observation to the window (symbol, buy, sell), creating it (and evicting the
    /// least recently updated window when full) if needed.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        symbol_id: SymbolId,
        local_symbol: u32,
        buy: VenueId,
        sell: VenueId,
        spread_bp: f64,
        ts_ns: TimestampNs,
        output: &mut impl WindowOutput,
    ) {
        debug_assert!((buy.0 as usize) < VENUE_COUNT && (sell.0 as usize) < VENUE_COUNT);
        debug_assert!((local_symbol as usize) < self.params.local_symbols);
        let slot = Self::index_slot(local_symbol, buy.0, sell.0);
        let mut window = self.index[slot];
        if window == NONE {
            window = self.create(symbol_id, local_symbol, buy.0, sell.0, ts_ns, output);
            self.index[slot] = window;
        }
        let bucket = self.bucket_of(ts_ns);
        let header = &self.headers[window as usize];
        if header.open_count > 0 && bucket > header.open_bucket {
            self.close_open_bucket(window, output);
        }
        if self.headers[window as usize].open_count == 0 {
            // Recency is kept at bucket precision: a window moves to the front of the LRU list on
            // its first update in a bucket, not on every update (most updates skip the list).
            self.lru_touch(window);
        }
        let header = &mut self.headers[window as usize];
        if header.open_count == 0 {
            // A late quote for an already closed bucket is folded into the next open bucket.
            header.open_bucket = bucket.max(header.written_bucket + 1);
            header.open_sum = 0.0;
            header.open_min = f64::INFINITY;
            header.open_max = f64::NEG_INFINITY;
        }
        header.open_count += 1;
        header.open_sum += spread_bp;
        header.open_min = header.open_min.min(spread_bp);
        header.open_max = header.open_max.max(spread_bp);
        header.open_last = spread_bp;
        header.last_update_ns = header.last_update_ns.max(ts_ns);
        let needs_open_list = !header.in_open_list;
        if needs_open_list {
            self.open_list_push(window);
        }
        let header = &self.headers[window as usize];
        // Most updates are below every threshold with no cycle open: skip the cycle state (fees
        // only lower the net spread, so the gross one is a safe filter for either basis).
        if header.cycles_active_mask != 0 || spread_bp > self.lowest_threshold_bp {
            let cycle_spread_bp = if self.params.cycles_on_net {
                spread_bp - self.pair_fees_bp(buy.0, sell.0)
            } else {
                spread_bp
            };
            self.update_cycles(window, cycle_spread_bp, ts_ns, output);
        }
    }

    /// Both venues' taker fees for buying on `buy` and selling on `sell`.
    #[inline]
    fn pair_fees_bp(&self, buy: u16, sell: u16) -> f64 {
        self.params.taker_fees_bp[buy as usize] + self.params.taker_fees_bp[sell as usize]
    }

    /// The flags every opportunity event of this store carries.
    #[inline]
    fn opportunity_flags(&self) -> u8 {
        if self.params.cycles_on_net {
            OPPORTUNITY_FLAG_NET
        } else {
            0
        }
    }

    /// True while `window` has fewer filled buckets than `warmup_buckets`, unless history seeded
    /// it with samples spanning `warmup_buckets` and a seeded bucket is still in the window (see
    /// `seed`).
    #[inline]
    fn is_warming(&self, window: u32) -> bool {
        let header = &self.headers[window as usize];
        (header.window_count as usize) < self.params.warmup_buckets
            && header.written_bucket >= header.warm_by_seed_until_bucket
    }

    /// Fills window (symbol, buy, sell) from history before live data: `samples` are
    /// `(bucket_start_ns, mean_bp)` of closed buckets in ascending time order; those in the
    /// window that ends at `now_ns`'s bucket (exclusive) and finite are written through the path
    /// of a live closed bucket (`store_bucket`: running sums, block min/max), nothing is emitted.
    /// A sample out of order or in an already written bucket is ignored. Seeding never evicts: a
    /// full store counts `seed_skipped_capacity`; an existing window is left alone.
    ///
    /// Warming: history may keep one bucket in N (the Parquet sink's `spreads_every_n_buckets`),
    /// so counting filled buckets would keep a seeded window warming. A window whose seeded
    /// samples span at least `warmup_buckets` buckets (first to last) counts as warm until its
    /// newest seeded bucket leaves the window; by then live buckets filled a whole window and the
    /// ordinary count decides again.
    #[allow(clippy::too_many_arguments)]
    pub fn seed(
        &mut self,
        symbol_id: SymbolId,
        local_symbol: u32,
        buy: VenueId,
        sell: VenueId,
        samples: &[(TimestampNs, f64)],
        now_ns: TimestampNs,
    ) -> SeedOutcome {
        assert!((buy.0 as usize) < VENUE_COUNT && (sell.0 as usize) < VENUE_COUNT);
        assert!((local_symbol as usize) < self.params.local_symbols);
        let slot = Self::index_slot(local_symbol, buy.0, sell.0);
        if self.index[slot] != NONE {
            return SeedOutcome::SkippedExisting;
        }
        let bucket_ns = self.params.bucket_ns;
        let now_bucket = now_ns.div_euclid(bucket_ns);
        let oldest_bucket = now_bucket - self.params.buckets as i64 + 1;
        let in_window = |&(bucket_start_ns, mean_bp): &(TimestampNs, f64)| {
            let bucket = bucket_start_ns.div_euclid(bucket_ns);
            (bucket >= oldest_bucket && bucket < now_bucket && mean_bp.is_finite())
                .then_some((bucket, mean_bp))
        };
        let Some((first_bucket, _)) = samples.iter().find_map(in_window) else {
            return SeedOutcome::Empty;
        };
        if self.free.is_empty() {
            self.counts.seed_skipped_capacity += 1;
            return SeedOutcome::SkippedCapacity;
        }
        let window = self.create(
            symbol_id,
            local_symbol,
            buy.0,
            sell.0,
            first_bucket * bucket_ns,
            &mut DiscardOutput,
        );
        self.index[slot] = window;
        let mut written = 0;
        for (bucket, mean_bp) in samples.iter().filter_map(in_window) {
            if bucket <= self.headers[window as usize].written_bucket {
                continue;
            }
            self.store_bucket(window, bucket, mean_bp);
            written += 1;
        }
        let header = &mut self.headers[window as usize];
        let span_buckets = header.written_bucket - first_bucket + 1;
        if span_buckets >= self.params.warmup_buckets as i64 {
            header.warm_by_seed_until_bucket = header.written_bucket + self.params.buckets as i64;
        }
        header.last_update_ns = now_ns;
        self.counts.windows_seeded += 1;
        self.counts.seed_samples += written as u64;
        SeedOutcome::Seeded { samples: written }
    }

    fn update_cycles(
        &mut self,
        window: u32,
        spread_bp: f64,
        ts_ns: TimestampNs,
        output: &mut impl WindowOutput,
    ) {
        let may_start = !self.is_warming(window);
        let flags = self.opportunity_flags();
        let was_active = self.headers[window as usize].cycles_active_mask != 0;
        let header = &mut self.headers[window as usize];
        for (threshold_index, &threshold_bp) in self.params.thresholds_bp.iter().enumerate() {
            let cycle = &mut header.cycles[threshold_index];
            let kind = if !cycle.active && may_start && spread_bp > threshold_bp {
                cycle.active = true;
                header.cycles_active_mask |= 1 << threshold_index;
                cycle.started_ns = ts_ns;
                cycle.peak_bp = spread_bp;
                OPPORTUNITY_START
            } else if cycle.active {
                cycle.peak_bp = cycle.peak_bp.max(spread_bp);
                if spread_bp < threshold_bp / 2.0 {
                    cycle.active = false;
                    cycle.completed += 1;
                    cycle.ended_ns = ts_ns;
                    header.cycles_active_mask &= !(1 << threshold_index);
                    header.cycles_completed += 1;
                    OPPORTUNITY_END
                } else {
                    continue;
                }
            } else {
                continue;
            };
            self.counts.opportunities += 1;
            output.opportunity(&OpportunityEvent {
                ts_ns,
                started_ns: cycle.started_ns,
                threshold_bp,
                spread_bp,
                peak_bp: cycle.peak_bp,
                symbol_id: header.symbol_id,
                buy_venue_id: VenueId(header.buy_venue),
                sell_venue_id: VenueId(header.sell_venue),
                kind,
                flags,
                reserved: [0; 6],
            });
        }
        self.sync_cycle_list(window, was_active);
    }

    /// Keeps `window`'s membership of the cycle list in step with its active mask.
    fn sync_cycle_list(&mut self, window: u32, was_active: bool) {
        let active = self.headers[window as usize].cycles_active_mask != 0;
        if active && !was_active {
            self.headers[window as usize].cycle_list_position = self.cycle_list.len() as u32;
            self.cycle_list.push(window);
        } else if !active && was_active {
            let position = self.headers[window as usize].cycle_list_position as usize;
            debug_assert_eq!(self.cycle_list[position], window);
            self.cycle_list.swap_remove(position);
            if let Some(&moved) = self.cycle_list.get(position) {
                self.headers[moved as usize].cycle_list_position = position as u32;
            }
        }
    }

    /// Ends the active cycles of every window for which `is_stale(local_symbol, buy, sell)` says
    /// a side's quote is no longer live (housekeeping: when both venues of a pair go quiet, no
    /// quote arrives to notice it). Costs one call per window with an active cycle.
    pub(crate) fn end_stale_cycles(
        &mut self,
        ts_ns: TimestampNs,
        mut is_stale: impl FnMut(u32, u16, u16) -> bool,
        output: &mut impl WindowOutput,
    ) -> usize {
        let mut ended = 0;
        let mut position = 0;
        while position < self.cycle_list.len() {
            let window = self.cycle_list[position];
            let header = &self.headers[window as usize];
            if is_stale(header.local_symbol, header.buy_venue, header.sell_venue) {
                // end_cycles takes the window out of the list (the last entry moves here).
                self.end_cycles(window, ts_ns, output);
                ended += 1;
            } else {
                position += 1;
            }
        }
        ended
    }

    /// Shutdown: closes every open bucket and ends every active cycle, so sinks see each bucket
    /// that had data and never a cycle start without its end.
    pub fn finish(&mut self, ts_ns: TimestampNs, output: &mut impl WindowOutput) {
        while !self.finish_slice(ts_ns, usize::MAX, output) {}
    }

    /// `finish` a slice at a time: closes up to `max_windows` open buckets, then ends the cycles
    /// of up to `max_windows` windows; returns true once nothing is left open.
    pub fn finish_slice(
        &mut self,
        ts_ns: TimestampNs,
        max_windows: usize,
        output: &mut impl WindowOutput,
    ) -> bool {
        let mut done = 0;
        while done < max_windows {
            let Some(&window) = self.open_list.last() else {
                break;
            };
            if self.headers[window as usize].open_count > 0 {
                self.close_open_bucket(window, output);
            }
            self.open_list_remove(window);
            done += 1;
        }
        while done < max_windows {
            let Some(&window) = self.cycle_list.last() else {
                break;
            };
            self.end_cycles(window, ts_ns, output);
            done += 1;
        }
        self.open_list.is_empty() && self.cycle_list.is_empty()
    }

    /// Ends every active cycle of the windows of `local_symbol` that involve `venue` (its data went
    /// away: a gap must never hold an opportunity open). `spread_bp` is NaN.
    pub(crate) fn end_cycles_for_venue(
        &mut self,
        local_symbol: u32,
        venue: VenueId,
        ts_ns: TimestampNs,
        output: &mut impl WindowOutput,
    ) {
        for other in 0..VENUE_COUNT as u16 {
            if other != venue.0 {
                self.end_cycles_for_pair(local_symbol, venue, VenueId(other), ts_ns, output);
            }
        }
    }

    /// Ends and frees every window of `local_symbol` that involves `venue` (the venue no longer
    /// lists the symbol): their open buckets are emitted and their cycles end first, as at an
    /// eviction. Returns how many were removed.
    pub(crate) fn retire_venue(
        &mut self,
        local_symbol: u32,
        venue: VenueId,
        ts_ns: TimestampNs,
        output: &mut impl WindowOutput,
    ) -> usize {
        let mut removed = 0;
        for other in 0..VENUE_COUNT as u16 {
            if other == venue.0 {
                continue;
            }
            for (buy, sell) in [(venue.0, other), (other, venue.0)] {
                let window = self.index[Self::index_slot(local_symbol, buy, sell)];
                if window != NONE {
                    self.remove(window, ts_ns, output);
                    removed += 1;
                }
            }
        }
        self.counts.retired += removed as u64;
        removed
    }

    /// Ends the active cycles of both directions of the pair (`first`, `second`): one side's quote
    /// went stale, so the pair has no spread until it is fresh again. Cheap when none is active.
    #[inline]
    pub(crate) fn end_cycles_for_pair(
        &mut self,
        local_symbol: u32,
        first: VenueId,
        second: VenueId,
        ts_ns: TimestampNs,
        output: &mut impl WindowOutput,
    ) {
        for (buy, sell) in [(first.0, second.0), (second.0, first.0)] {
            let window = self.index[Self::index_slot(local_symbol, buy, sell)];
            if window != NONE && self.headers[window as usize].cycles_active_mask != 0 {
                self.end_cycles(window, ts_ns, output);
            }
        }
    }

    /// Ends every active cycle of `window` with a NaN spread (its data went away).
    fn end_cycles(&mut self, window: u32, ts_ns: TimestampNs, output: &mut impl WindowOutput) {
        let flags = self.opportunity_flags();
        let was_active = self.headers[window as usize].cycles_active_mask != 0;
        let header = &mut self.headers[window as usize];
        for (threshold_index, &threshold_bp) in self.params.thresholds_bp.iter().enumerate() {
            let cycle = &mut header.cycles[threshold_index];
            if !cycle.active {
                continue;
            }
            cycle.active = false;
            cycle.completed += 1;
            cycle.ended_ns = ts_ns;
            header.cycles_active_mask &= !(1 << threshold_index);
            header.cycles_completed += 1;
            self.counts.opportunities += 1;
            output.opportunity(&OpportunityEvent {
                ts_ns,
                started_ns: cycle.started_ns,
                threshold_bp,
                spread_bp: f64::NAN,
                peak_bp: cycle.peak_bp,
                symbol_id: header.symbol_id,
                buy_venue_id: VenueId(header.buy_venue),
                sell_venue_id: VenueId(header.sell_venue),
                kind: OPPORTUNITY_END,
                flags,
                reserved: [0; 6],
            });
        }
        self.sync_cycle_list(window, was_active);
    }

    /// Closes open buckets that ended before `now_ns` (housekeeping between batches), so a
    /// window that stopped receiving quotes still emits its last bucket: at most `max_closes` in
    /// one call, resuming where the previous call stopped. Returns true once none is left due.
    /// Closing a bucket's worth of windows in slices lets the shard hand each slice to the sinks
    /// (and let their runners drain it) before the next, instead of one burst larger than a lane.
    pub fn close_due_buckets(
        &mut self,
        now_ns: TimestampNs,
        max_closes: usize,
        output: &mut impl WindowOutput,
    ) -> bool {
        let current_bucket = now_ns.div_euclid(self.params.bucket_ns);
        let mut position = self.close_scan_position.min(self.open_list.len());
        let mut closed = 0;
        while position < self.open_list.len() {
            if closed == max_closes {
                self.close_scan_position = position;
                return false;
            }
            let window = self.open_list[position];
            let header = &self.headers[window as usize];
            if header.open_count > 0 && header.open_bucket < current_bucket {
                self.close_open_bucket(window, output);
                closed += 1;
            }
            if self.headers[window as usize].open_count == 0 {
                self.open_list_remove(window);
            } else {
                position += 1;
            }
        }
        self.close_scan_position = 0;
        true
    }

    fn open_list_push(&mut self, window: u32) {
        let header = &mut self.headers[window as usize];
        debug_assert!(!header.in_open_list);
        header.in_open_list = true;
        header.open_list_position = self.open_list.len() as u32;
        self.open_list.push(window);
    }

    /// O(1): the last entry takes the removed one's place.
    fn open_list_remove(&mut self, window: u32) {
        let position = self.headers[window as usize].open_list_position as usize;
        debug_assert_eq!(self.open_list[position], window);
        self.open_list.swap_remove(position);
        if let Some(&moved) = self.open_list.get(position) {
            self.headers[moved as usize].open_list_position = position as u32;
        }
        self.headers[window as usize].in_open_list = false;
    }

    /// Removes windows not updated since `now_ns − idle_ns` (oldest first, from the LRU tail).
    pub fn expire_idle(
        &mut self,
        now_ns: TimestampNs,
        idle_ns: i64,
        output: &mut impl WindowOutput,
    ) -> usize {
        let cutoff = now_ns.saturating_sub(idle_ns);
        let mut expired = 0;
        while self.lru_tail != NONE && self.headers[self.lru_tail as usize].last_update_ns < cutoff
        {
            let window = self.lru_tail;
            self.remove(window, now_ns, output);
            self.counts.expired += 1;
            expired += 1;
        }
        expired
    }

    fn create(
        &mut self,
        symbol_id: SymbolId,
        local_symbol: u32,
        buy: u16,
        sell: u16,
        ts_ns: TimestampNs,
        output: &mut impl WindowOutput,
    ) -> u32 {
        let at_cap = self.counts.live as usize >= self.live_cap;
        let window = match if at_cap { None } else { self.free.pop() } {
            Some(window) => window,
            None => {
                let victim = self.lru_tail;
                debug_assert!(
                    victim != NONE,
                    "a full store has a least recently used window"
                );
                self.remove(victim, ts_ns, output);
                self.counts.evicted += 1;
                if self.live_cap < self.params.max_windows {
                    self.counts.shed += 1;
                }
                self.free
                    .pop()
                    .expect("remove() just returned a window to the free list")
            }
        };
        let buckets = self.params.buckets;
        let start = window as usize * buckets;
        self.buckets[start..start + buckets].fill(f32::NAN);
        let blocks_start = window as usize * self.blocks_per_window * 2;
        self.blocks[blocks_start..blocks_start + self.blocks_per_window * 2].fill(f32::NAN);
        let header = &mut self.headers[window as usize];
        *header = WindowHeader::EMPTY;
        header.symbol_id = symbol_id;
        header.local_symbol = local_symbol;
        header.buy_venue = buy;
        header.sell_venue = sell;
        header.in_use = true;
        header.last_update_ns = ts_ns;
        header.written_bucket = ts_ns.div_euclid(self.params.bucket_ns) - 1;
        self.lru_push_front(window);
        self.counts.created += 1;
        self.counts.live += 1;
        window
    }

    /// Takes a window out (eviction, expiry): its open bucket is still emitted and its active
    /// cycles end, so nothing it started is left dangling for the sinks.
    fn remove(&mut self, window: u32, ts_ns: TimestampNs, output: &mut impl WindowOutput) {
        if self.headers[window as usize].open_count > 0 {
            self.close_open_bucket(window, output);
        }
        if self.headers[window as usize].cycles_active_mask != 0 {
            self.end_cycles(window, ts_ns, output);
        }
        let header = self.headers[window as usize];
        debug_assert!(header.in_use);
        self.lru_unlink(window);
        self.index[Self::index_slot(header.local_symbol, header.buy_venue, header.sell_venue)] =
            NONE;
        if header.in_open_list {
            self.open_list_remove(window);
        }
        self.headers[window as usize] = WindowHeader::EMPTY;
        self.free.push(window);
        self.counts.live -= 1;
    }

    /// Writes the open bucket's mean into the ring (empty buckets in between become NaN), expires
    /// what falls out of the window, and emits the spread sample.
    fn close_open_bucket(&mut self, window: u32, output: &mut impl WindowOutput) {
        let header = &self.headers[window as usize];
        debug_assert!(header.open_count > 0);
        let open_bucket = header.open_bucket;
        let mean_bp = header.open_sum / f64::from(header.open_count);
        self.store_bucket(window, open_bucket, mean_bp);
        let header = &mut self.headers[window as usize];
        let (window_mean_bp, window_std_bp) = mean_and_std(
            header.window_sum,
            header.window_sum_squares,
            header.window_count,
        );
        let band_k = self.params.band_k;
        let warming = self.is_warming(window);
        let header = &mut self.headers[window as usize];
        let sample = SpreadSample {
            bucket_start_ns: open_bucket * self.params.bucket_ns,
            bucket_duration_ns: self.params.bucket_ns,
            last_bp: header.open_last,
            min_bp: header.open_min,
            max_bp: header.open_max,
            mean_bp,
            window_mean_bp,
            window_std_bp,
            band_lower_bp: window_mean_bp - band_k * window_std_bp,
            band_upper_bp: window_mean_bp + band_k * window_std_bp,
            samples: header.open_count,
            symbol_id: header.symbol_id,
            buy_venue_id: VenueId(header.buy_venue),
            sell_venue_id: VenueId(header.sell_venue),
            flags: if warming { SPREAD_FLAG_WARMING } else { 0 },
        };
        header.open_count = 0;
        self.counts.samples += 1;
        output.spread_sample(&sample);
    }

    /// Writes bucket `absolute`'s mean into `window`'s ring (the empty buckets since the last
    /// written one become NaN; at most one lap matters), expires what falls out of the window and
    /// keeps the running sums and block min/max: what every closed bucket goes through, live
    /// (`close_open_bucket`) or seeded from history (`seed`).
    fn store_bucket(&mut self, window: u32, absolute_bucket: i64, mean_bp: f64) {
        let buckets = self.params.buckets;
        let block_len = self.block_len;
        let ring_start = window as usize * buckets;
        let blocks_start = window as usize * self.blocks_per_window * 2;
        let ring_offset = i64::from(window) % buckets as i64;
        let open_bucket = absolute_bucket;
        let header = &mut self.headers[window as usize];
        debug_assert!(open_bucket > header.written_bucket);
        // Buckets from written+1 to open_bucket-1 are empty; at most one lap matters.
        let first = (header.written_bucket + 1).max(open_bucket - buckets as i64 + 1);
        let mut lap_complete = false;
        let mut outlier_left = false;
        for absolute in first..=open_bucket {
            let value = if absolute == open_bucket {
                mean_bp as f32
            } else {
                f32::NAN
            };
            let ring_slot = (absolute + ring_offset).rem_euclid(buckets as i64) as usize;
            let expiring = self.buckets[ring_start + ring_slot];
            if !expiring.is_nan() {
                let expiring = f64::from(expiring);
                let expiring_square = expiring * expiring;
                outlier_left |= expiring_square
                    > RECOMPUTE_WHEN_LEAVING_SQUARE_EXCEEDS_REST
                        * (header.window_sum_squares - expiring_square);
                header.window_sum -= expiring;
                header.window_sum_squares -= expiring * expiring;
                header.window_count -= 1;
            }
            self.buckets[ring_start + ring_slot] = value;
            if !value.is_nan() {
                let stored = f64::from(value);
                header.window_sum += stored;
                header.window_sum_squares += stored * stored;
                header.window_count += 1;
            }
            let block = ring_slot / block_len;
            let (min_slot, max_slot) = (blocks_start + block * 2, blocks_start + block * 2 + 1);
            if ring_slot % block_len == 0 {
                self.blocks[min_slot] = value;
                self.blocks[max_slot] = value;
            } else {
                self.blocks[min_slot] = self.blocks[min_slot].min(value);
                self.blocks[max_slot] = self.blocks[max_slot].max(value);
            }
            lap_complete |= ring_slot == buckets - 1;
        }
        header.written_bucket = open_bucket;
        if outlier_left {
            self.counts.outlier_recomputes += 1;
        }
        if lap_complete || outlier_left {
            // Once per lap, recompute the sums exactly so rounding drift cannot accumulate; and
            // when a value that dwarfed the rest left, whose rounding error would remain.
            let (mut sum, mut sum_squares, mut count) = (0f64, 0f64, 0u32);
            for &value in &self.buckets[ring_start..ring_start + buckets] {
                if !value.is_nan() {
                    let value = f64::from(value);
                    sum += value;
                    sum_squares += value * value;
                    count += 1;
                }
            }
            header.window_sum = sum;
            header.window_sum_squares = sum_squares;
            header.window_count = count;
        }
    }

    /// Appends the summaries of live windows in slab slots `from..`, looking at no more than
    /// `max_slots` slots; returns the slot to continue from, or `None` when the slab is done.
    /// Builds a snapshot a slice at a time between batches (slab order is stable, unlike the
    /// LRU list, so a window alive throughout appears exactly once).
    pub fn summarize_slots_into(
        &self,
        from: usize,
        max_slots: usize,
        summaries: &mut Vec<WindowSummary>,
    ) -> Option<usize> {
        let end = from.saturating_add(max_slots).min(self.headers.len());
        for window in from..end {
            if self.headers[window].in_use {
                summaries.push(self.summary(window as u32));
            }
        }
        (end < self.headers.len()).then_some(end)
    }

    /// Fills `summaries` with every live window's summary (cold path: snapshot publishing).
    pub fn summarize_into(&self, summaries: &mut Vec<WindowSummary>) {
        summaries.clear();
        let mut window = self.lru_head;
        while window != NONE {
            summaries.push(self.summary(window));
            window = self.lru_links[window as usize].next;
        }
    }

    fn summary(&self, window: u32) -> WindowSummary {
        let header = &self.headers[window as usize];
        let (mean_bp, std_bp) = mean_and_std(
            header.window_sum,
            header.window_sum_squares,
            header.window_count,
        );
        let (min_bp, max_bp) = self.window_min_max(window);
        let cycle_active = header.cycles.iter().any(|cycle| cycle.active);
        WindowSummary {
            symbol_id: header.symbol_id,
            buy_venue_id: VenueId(header.buy_venue),
            sell_venue_id: VenueId(header.sell_venue),
            last_update_ns: header.last_update_ns,
            last_bp: header.open_last,
            mean_bp,
            std_bp,
            min_bp,
            max_bp,
            band_lower_bp: mean_bp - self.params.band_k * std_bp,
            band_upper_bp: mean_bp + self.params.band_k * std_bp,
            buckets_filled: header.window_count,
            cycles_completed: header.cycles_completed,
            cycle_active,
            cycles: header.cycles.map(|cycle| ThresholdCycles {
                completed: cycle.completed,
                active: cycle.active,
                last_start_ns: cycle.started_ns,
                last_end_ns: cycle.ended_ns,
            }),
            warming: self.is_warming(window),
            fees_bp: self.pair_fees_bp(header.buy_venue, header.sell_venue),
            net_last_bp: header.open_last - self.pair_fees_bp(header.buy_venue, header.sell_venue),
        }
    }

    /// Min and max of the closed bucket means in the window: whole blocks from their summaries,
    /// the block being overwritten by scanning its not-yet-overwritten part.
    fn window_min_max(&self, window: u32) -> (f64, f64) {
        let header = &self.headers[window as usize];
        let buckets = self.params.buckets;
        let ring_start = window as usize * buckets;
        let blocks_start = window as usize * self.blocks_per_window * 2;
        let (mut min, mut max) = (f32::NAN, f32::NAN);
        let head_slot = self.ring_slot(window, header.written_bucket);
        let head_block = head_slot / self.block_len;
        for block in 0..self.blocks_per_window {
            min = min.min(self.blocks[blocks_start + block * 2]);
            max = max.max(self.blocks[blocks_start + block * 2 + 1]);
        }
        // The head block's summary covers only its rewritten part; the rest of it still holds the
        // previous lap's buckets, which are the oldest ones in the window.
        let block_end = ((head_block + 1) * self.block_len).min(buckets);
        for &value in &self.buckets[ring_start + head_slot + 1..ring_start + block_end] {
            min = min.min(value);
            max = max.max(value);
        }
        (f64::from(min), f64::from(max))
    }

    fn lru_push_front(&mut self, window: u32) {
        let old_head = self.lru_head;
        self.lru_links[window as usize] = LruLink {
            prev: NONE,
            next: old_head,
        };
        if old_head != NONE {
            self.lru_links[old_head as usize].prev = window;
        } else {
            self.lru_tail = window;
        }
        self.lru_head = window;
    }

    fn lru_unlink(&mut self, window: u32) {
        let LruLink { prev, next } = self.lru_links[window as usize];
        if prev != NONE {
            self.lru_links[prev as usize].next = next;
        } else {
            self.lru_head = next;
        }
        if next != NONE {
            self.lru_links[next as usize].prev = prev;
        } else {
            self.lru_tail = prev;
        }
        self.lru_links[window as usize] = LRU_UNLINKED;
    }

    #[inline]
    fn lru_touch(&mut self, window: u32) {
        if self.lru_head != window {
            self.lru_unlink(window);
            self.lru_push_front(window);
        }
    }
}

fn mean_and_std(sum: f64, sum_squares: f64, count: u32) -> (f64, f64) {
    if count == 0 {
        return (f64::NAN, f64::NAN);
    }
    let count = f64::from(count);
    let mean = sum / count;
    let variance = (sum_squares / count - mean * mean).max(0.0);
    (mean, variance.sqrt())
}
