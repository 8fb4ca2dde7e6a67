//! `[engine]` and `[windows]`: the sizes of the data path (rings, frames, shards) and of the
//! rolling spread windows, with their defaults and validation. Parsing the file and composing the
//! other sections is the binary's job; each section validates itself and names the offending key.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::venue::VENUE_COUNT;

/// `[engine]`: sizes of the data path.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Shard threads; 0 means one per core, at most `AUTO_SHARDS_MAX` (set it explicitly for more:
    /// the ring matrix grows with slots × shards, see the memory budget).
    pub shards: usize,
    /// Most symbols the registry will hold, over the process's life: ids are never reused, so
    /// symbols listed while running and retired ones count too. The default leaves a discovered
    /// universe of 1 000 symbols (`universe.max_symbols`) a quarter of headroom.
    pub max_symbols: usize,
    /// Capacity of each feed → shard ring.
    pub ring_capacity_records: usize,
    /// Frames larger than this are refused (counted as `oversized`).
    pub max_frame_bytes: usize,
    /// Most records one frame may produce.
    pub max_records_per_frame: usize,
    /// Most connection slots (producers) the engine will run; sizes the ring matrix.
    pub max_connection_slots: usize,
    /// On channels that re-send unchanged data, a quote older than this takes no part in spreads.
    /// Quotes of channels that push only on change stay live until a gap or a withdrawal.
    pub stale_after_ms: u64,
    /// Per venue: whether its quotes age out after `stale_after_ms` (its best-bid/ask channel
    /// re-sends unchanged data). Not read from the file: the binary derives it from the feeds'
    /// channel rules; all `true` until then (every quote ages out).
    #[serde(skip)]
    pub quote_age_limited: [bool; VENUE_COUNT],
    /// Shard iterations spent spinning before parking when idle.
    pub idle_spin_iterations: u32,
    /// Longest a parked idle shard sleeps before running its housekeeping (bucket close, expiry).
    pub idle_park_ms: u64,
    /// After running dry, a shard waits this long for more records before it asks producers to
    /// wake it: records arriving meanwhile are taken in one wake-up instead of one each, for at
    /// most this much added latency. 0 (the default): producers wake a parked shard when they
    /// flush; the feeds threads hold those wakes until they park, so a shard is woken once per
    /// feeds wake-up, not once per connection (`pipeline::wake_deferred_shards`), which is what
    /// the wait was for.
    pub shard_batch_wait_us: u64,
    /// CPU ids to pin shard threads to (shard i on `shard_cores[i % len]`); empty: no pinning.
    pub shard_cores: Vec<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            shards: 0,
            max_symbols: 1400,
            ring_capacity_records: 1024,
            // Sized from the venues' largest documented messages, with room. Bytes per trade in
            // the fixtures (engine/decode/tests/fixtures/exchanges): Bybit 139, HTX 128 (after
            // inflating), OKX 104, Bitget 98, MEXC 79 as JSON (its protobuf is smaller);
            // Binance, Gate and KuCoin send one trade per message (under 400 B). Bybit documents
            // up to 1 024 trades in one publicTrade message: 1 024 × 139 B ≈ 139 KiB, and
            // 1 024 × 200 B = 200 KiB with longer symbols, prices and ids; 256 KiB holds that
            // with room, and ~2 000 HTX, ~2 500 OKX, ~2 600 Bitget or 3 300+ MEXC trades.
            max_frame_bytes: 256 << 10,
            // 4 × Bybit's documented 1 024, and as many as a 256 KiB frame holds at 64 B each
            // (every venue's trade takes more). A frame over it loses all its records.
            max_records_per_frame: 4_096,
            // The default universe (1 000 symbols × 8 venues, best bid/ask) plans 85 slots:
            // Binance 1 (1 024 streams per connection), Bybit 5 (200), OKX 5 (240), MEXC 34
            // (30), Gate 5 (200), KuCoin 5 (200), Bitget 20 (50), HTX 10 (100). 128 leaves room
            // for lower per-venue stream limits; trades too need 168 (set it, and see the budget).
            max_connection_slots: 128,
            stale_after_ms: 5_000,
            quote_age_limited: [true; VENUE_COUNT],
            idle_spin_iterations: 100,
            idle_park_ms: 50,
            shard_batch_wait_us: 0,
            shard_cores: Vec::new(),
        }
    }
}

/// `[windows]`: rolling spread windows per (symbol, buy venue, sell venue).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Width of one bucket.
    pub bucket_ms: u64,
    /// Buckets per window (window length = bucket_ms × buckets).
    pub buckets: usize,
    /// Most windows alive at once, over all shards; the least recently updated is evicted.
    pub max_windows: usize,
    /// A window not updated for this long is expired by its shard; 0 = the window length.
    pub idle_expire_ms: u64,
    /// Bands are mean ± band_k · std.
    pub band_k: f64,
    /// Opportunity thresholds in basis points (a cycle: above the threshold, then below half).
    pub thresholds_bp: Vec<f64>,
    /// How often shards publish window summaries for readers.
    pub snapshot_interval_ms: u64,
    /// A window with fewer filled buckets than this (after start or creation) is warming: its
    /// statistics are flagged and no opportunity cycle starts from it. Capped at `buckets`.
    pub warmup_buckets: usize,
    /// A spread beyond ± this many basis points (a placeholder price of a new listing, a wrong
    /// pairing) is kept out of the windows and counted.
    pub max_abs_spread_bp: f64,
    /// Taker fee per venue in basis points (`{ binance = 10.0, okx = 8.0 }`; a venue not listed
    /// pays 0). The net spread of a pair is the gross spread minus both venues' fees.
    pub taker_fee_bp: BTreeMap<String, f64>,
    /// Whether opportunity cycles run on the gross or the net spread.
    pub cycles_on: SpreadBasis,
    /// A quote whose smaller side's notional (price × quantity at the top of the book) is below
    /// this takes no part in spreads (a book too thin to trade); 0 = no minimum.
    pub min_top_notional: f64,
    /// Warm start: at start, seed each window from the Parquet sink's history (its `root`) of
    /// the last window length, so bands and cycles are meaningful at once (README, `[windows]`).
    pub warm_start: bool,
    /// `false`: pass-through (a collector engine): records go from the feeds to the sinks with no
    /// spread or window work, and the budget holds no windows (docs/scale-out.md).
    pub enabled: bool,
    /// Which clock closes buckets, expires windows and ages quotes out: the shard's wall clock
    /// (`system`), or the records' own receive times (`event`: an aggregator fed by collectors
    /// computes what one engine fed the same records computes, whatever the arrival order).
    pub clock: WindowClock,
    /// `clock = "event"`: how far a shard's event clock trails the newest receive time it saw,
    /// so records of other collectors arriving late still land in their bucket.
    pub event_lateness_ms: u64,
    /// Write every window's memory at start (before any feed connects), so the OS backs it
    /// then and not on the shard thread while quotes arrive; RSS shows the windows' budget from
    /// the start. `false`: pages are backed as windows are first used (RSS follows live windows,
    /// and the shard pays for each page on first use).
    pub prefault: bool,
}

/// `[windows] clock`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowClock {
    /// The shard's wall clock.
    #[default]
    System,
    /// The newest receive time the shard has seen, less `event_lateness_ms`.
    Event,
}

/// Which spread opportunity cycles compare with their thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpreadBasis {
    /// `(bid_sell − ask_buy) / ask_buy`, as the books show it.
    #[default]
    Gross,
    /// The gross spread minus both venues' taker fees: what a trader crossing both books keeps.
    Net,
}

impl WindowsConfig {
    /// Each venue's taker fee in basis points (0 for venues not listed).
    pub fn taker_fees_bp(&self) -> [f64; VENUE_COUNT] {
        let mut fees = [0.0; VENUE_COUNT];
        for (name, fee_bp) in &self.taker_fee_bp {
            if let Some(venue) = crate::venue::Venue::from_name(name) {
                fees[venue as usize] = *fee_bp;
            }
        }
        fees
    }
}

/// Most opportunity thresholds per window (each costs state in every window).
pub const MAX_THRESHOLDS: usize = 4;

/// Most shard threads `engine.shards = 0` (one per core) starts: keeps the default budget inside
/// 1 GiB on large machines.
pub const AUTO_SHARDS_MAX: usize = 8;

/// Upper bound of every duration key: a day. Keeps `ms × 1 000 000` far from i64 overflow.
pub const MAX_DURATION_MS: u64 = 86_400_000;

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            bucket_ms: 1_000,
            buckets: 3_600,
            max_windows: 56_000,
            idle_expire_ms: 0,
            band_k: 2.0,
            thresholds_bp: vec![40.0],
            snapshot_interval_ms: 1_000,
            warmup_buckets: 60,
            max_abs_spread_bp: 10_000.0,
            taker_fee_bp: BTreeMap::new(),
            cycles_on: SpreadBasis::Gross,
            min_top_notional: 0.0,
            warm_start: false,
            enabled: true,
            clock: WindowClock::System,
            event_lateness_ms: 2_000,
            prefault: true,
        }
    }
}

impl WindowsConfig {
    pub fn window_length_ms(&self) -> u64 {
        self.bucket_ms.saturating_mul(self.buckets as u64)
    }
    pub fn idle_expire_ms_effective(&self) -> u64 {
        if self.idle_expire_ms == 0 {
            self.window_length_ms()
        } else {
            self.idle_expire_ms
        }
    }
}

/// A config value outside what it may be, naming its key: the error every section that checks
/// plain values returns (`[engine]` and `[windows]` here, `[feeds]` in tickflow-feed).
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}` = {value}: {reason}")]
pub struct ConfigValueError {
    pub key: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl ConfigValueError {
    pub fn new(
        key: &'static str,
        value: impl std::fmt::Display,
        reason: &'static str,
    ) -> ConfigValueError {
        ConfigValueError {
            key,
            value: value.to_string(),
            reason,
        }
    }
}

fn invalid(
    key: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> ConfigValueError {
    ConfigValueError::new(key, value, reason)
}

impl EngineConfig {
    /// Shard threads to run: `engine.shards`, or one per core (at most `AUTO_SHARDS_MAX`) when 0.
    pub fn shard_count(&self) -> usize {
        if self.shards == 0 {
            std::thread::available_parallelism()
                .map(|cores| cores.get())
                .unwrap_or(1)
                .min(AUTO_SHARDS_MAX)
        } else {
            self.shards
        }
    }

    pub fn validate(&self) -> Result<(), ConfigValueError> {
        let engine = self;
        if engine.shards > 256 {
            return Err(invalid(
                "engine.shards",
                engine.shards,
                "must be 0 (auto) to 256",
            ));
        }
        if engine.max_symbols == 0 || engine.max_symbols > 1_000_000 {
            return Err(invalid(
                "engine.max_symbols",
                engine.max_symbols,
                "must be 1 to 1000000",
            ));
        }
        if engine.ring_capacity_records < 16 || engine.ring_capacity_records > (1 << 24) {
            return Err(invalid(
                "engine.ring_capacity_records",
                engine.ring_capacity_records,
                "must be 16 to 16777216",
            ));
        }
        if engine.max_frame_bytes < 1024 || engine.max_frame_bytes > (64 << 20) {
            return Err(invalid(
                "engine.max_frame_bytes",
                engine.max_frame_bytes,
                "must be 1024 to 67108864",
            ));
        }
        if engine.max_records_per_frame == 0 || engine.max_records_per_frame > 65_536 {
            return Err(invalid(
                "engine.max_records_per_frame",
                engine.max_records_per_frame,
                "must be 1 to 65536",
            ));
        }
        if engine.max_connection_slots == 0 || engine.max_connection_slots > 4096 {
            return Err(invalid(
                "engine.max_connection_slots",
                engine.max_connection_slots,
                "must be 1 to 4096",
            ));
        }
        if engine.stale_after_ms == 0 || engine.stale_after_ms > MAX_DURATION_MS {
            return Err(invalid(
                "engine.stale_after_ms",
                engine.stale_after_ms,
                "must be 1 to 86400000 (a day)",
            ));
        }
        if engine.shard_batch_wait_us > 100_000 {
            return Err(invalid(
                "engine.shard_batch_wait_us",
                engine.shard_batch_wait_us,
                "must be 0 (wake on every flush) to 100000",
            ));
        }
        if engine.shard_cores.len() > 1024 || engine.shard_cores.iter().any(|core| *core >= 4096) {
            return Err(invalid(
                "engine.shard_cores",
                format!("{:?}", engine.shard_cores),
                "at most 1024 CPU ids, each below 4096",
            ));
        }
        if engine.idle_park_ms == 0 || engine.idle_park_ms > 1_000 {
            return Err(invalid(
                "engine.idle_park_ms",
                engine.idle_park_ms,
                "must be 1 to 1000",
            ));
        }
        Ok(())
    }
}

impl WindowsConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        let windows = self;
        if windows.event_lateness_ms > MAX_DURATION_MS {
            return Err(invalid(
                "windows.event_lateness_ms",
                windows.event_lateness_ms,
                "must be at most 86400000",
            ));
        }
        if windows.bucket_ms == 0 || windows.bucket_ms > 3_600_000 {
            return Err(invalid(
                "windows.bucket_ms",
                windows.bucket_ms,
                "must be 1 to 3600000",
            ));
        }
        if windows.buckets < 2 || windows.buckets > 1_000_000 {
            return Err(invalid(
                "windows.buckets",
                windows.buckets,
                "must be 2 to 1000000",
            ));
        }
        if windows.max_windows == 0 || windows.max_windows > 100_000_000 {
            return Err(invalid(
                "windows.max_windows",
                windows.max_windows,
                "must be 1 to 100000000",
            ));
        }
        if (windows.max_windows as u128) * (windows.buckets as u128) > 4_000_000_000 {
            return Err(invalid(
                "windows.max_windows",
                windows.max_windows,
                "windows.max_windows × windows.buckets must be at most 4e9 (16 GiB of buckets)",
            ));
        }
        if !windows.band_k.is_finite() || windows.band_k < 0.0 {
            return Err(invalid(
                "windows.band_k",
                windows.band_k,
                "must be a finite number >= 0",
            ));
        }
        if windows.thresholds_bp.len() > MAX_THRESHOLDS {
            return Err(invalid(
                "windows.thresholds_bp",
                format!("{:?}", windows.thresholds_bp),
                "at most 4 thresholds",
            ));
        }
        if windows
            .thresholds_bp
            .iter()
            .any(|threshold| !threshold.is_finite() || *threshold <= 0.0)
        {
            return Err(invalid(
                "windows.thresholds_bp",
                format!("{:?}", windows.thresholds_bp),
                "every threshold must be a finite number > 0",
            ));
        }
        if windows.snapshot_interval_ms == 0 || windows.snapshot_interval_ms > MAX_DURATION_MS {
            return Err(invalid(
                "windows.snapshot_interval_ms",
                windows.snapshot_interval_ms,
                "must be 1 to 86400000 (a day)",
            ));
        }
        for (name, fee_bp) in &windows.taker_fee_bp {
            if crate::venue::Venue::from_name(name).is_none() {
                return Err(invalid(
                    "windows.taker_fee_bp",
                    name,
                    "unknown venue (binance, bybit, okx, mexc, gate, kucoin, bitget, htx)",
                ));
            }
            if !fee_bp.is_finite() || !(0.0..=1_000.0).contains(fee_bp) {
                return Err(invalid(
                    "windows.taker_fee_bp",
                    format!("{name} = {fee_bp}"),
                    "a fee is 0 to 1000 basis points",
                ));
            }
        }
        if !windows.min_top_notional.is_finite() || windows.min_top_notional < 0.0 {
            return Err(invalid(
                "windows.min_top_notional",
                windows.min_top_notional,
                "must be a finite number >= 0",
            ));
        }
        if !windows.max_abs_spread_bp.is_finite() || windows.max_abs_spread_bp <= 0.0 {
            return Err(invalid(
                "windows.max_abs_spread_bp",
                windows.max_abs_spread_bp,
                "must be a finite number > 0",
            ));
        }
        if windows.idle_expire_ms != 0
            && (windows.idle_expire_ms < windows.bucket_ms
                || windows.idle_expire_ms > 30 * MAX_DURATION_MS)
        {
            return Err(invalid(
                "windows.idle_expire_ms",
                windows.idle_expire_ms,
                "must be 0 (the window length) or from windows.bucket_ms to 30 days",
            ));
        }
        Ok(())
    }
}
