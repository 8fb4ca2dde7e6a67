//! The shard side of the sink hand-off: one bounded lane per (producer, sink), and
//! [`SinkOutbound`], the `Outbound` a shard owns, which fans each record out to the lanes of the
//! sinks that want its kind, applying each sink's full-ring policy.
//!
//! Nothing here blocks except the `block` policy's bounded wait, and nothing allocates after
//! construction: rings and the conflation table are sized at start. A `block` lane waits at most
//! `block_timeout_ms` per record and at most `block_timeout_ms` in total per second (its blocking
//! budget): a sink that is slow rather than stalled cannot make a shard wait again and again.
//! The telemetry lane never blocks (`block` acts as `drop_newest` there).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use tickflow_sdk::records::{
    GapEvent, OpportunityEvent, Quote, RecordKind, SpreadSample, Telemetry, Trade, VenueStatus,
};

use super::config::{SinkConfig, SinkPolicy};
use tickflow_core::outbound::{OutRecord, Outbound};

/// One record in a sink lane.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Item {
    Quote(Quote),
    Trade(Trade),
    Spread(SpreadSample),
    Opportunity(OpportunityEvent),
    Gap(GapEvent),
    Telemetry(TelemetryCounters),
    /// ABI 1.3, through the telemetry lane.
    VenueStatus(VenueStatus),
}

/// A [`Telemetry`] record without its reserved words (zero until a later minor version gives
/// them a meaning), so telemetry does not make every lane slot larger than the counters need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelemetryCounters {
    ts_ns: i64,
    uptime_ns: i64,
    rss_bytes: u64,
    budget_bytes: u64,
    records_in: u64,
    records_out: u64,
    ring_drops: u64,
    decode_errors: u64,
    reconnects: u64,
    windows_live: u64,
    windows_evicted: u64,
    sink_drops: u64,
    connections_up: u32,
    shards: u32,
}

impl TelemetryCounters {
    pub fn from_record(record: &Telemetry) -> TelemetryCounters {
        TelemetryCounters {
            ts_ns: record.ts_ns,
            uptime_ns: record.uptime_ns,
            rss_bytes: record.rss_bytes,
            budget_bytes: record.budget_bytes,
            records_in: record.records_in,
            records_out: record.records_out,
            ring_drops: record.ring_drops,
            decode_errors: record.decode_errors,
            reconnects: record.reconnects,
            windows_live: record.windows_live,
            windows_evicted: record.windows_evicted,
            sink_drops: record.sink_drops,
            connections_up: record.connections_up,
            shards: record.shards,
        }
    }

    /// The record as plugins receive it (reserved words zero).
    pub fn to_record(self) -> Telemetry {
        Telemetry {
            ts_ns: self.ts_ns,
            uptime_ns: self.uptime_ns,
            rss_bytes: self.rss_bytes,
            budget_bytes: self.budget_bytes,
            records_in: self.records_in,
            records_out: self.records_out,
            ring_drops: self.ring_drops,
            decode_errors: self.decode_errors,
            reconnects: self.reconnects,
            windows_live: self.windows_live,
            windows_evicted: self.windows_evicted,
            sink_drops: self.sink_drops,
            connections_up: self.connections_up,
            shards: self.shards,
            reserved: [0; 8],
        }
    }
}

/// Bytes one lane slot takes (the memory budget multiplies by it).
pub const ITEM_SIZE_BYTES: usize = std::mem::size_of::<Item>();
// The conflation slab's `Option<Item>` costs no more than an item (the memory budget counts it so).
const _: () = assert!(std::mem::size_of::<Option<Item>>() == ITEM_SIZE_BYTES);

/// Memory the sink's rings and batch buffers take with `lanes` producer lanes
/// (shards + the telemetry lane), for the engine's memory budget.
pub fn sink_budget_bytes(sink: &SinkConfig, lanes: usize) -> usize {
    let ring = sink.ring_capacity_records * ITEM_SIZE_BYTES;
    let conflation = if sink.policy == SinkPolicy::Conflate {
        // Per key: the slab's record and key, the free list and order ring entries, and two
        // to four u32 index slots (index length: 2 × keys rounded up to a power of two).
        sink.conflate_keys_max * (ITEM_SIZE_BYTES + 8 + 4 + 4 + 16)
    } else {
        0
    };
    let batches = sink.batch_max_records * ITEM_SIZE_BYTES * RECORD_KINDS;
    lanes * (ring + conflation) + batches
}

impl Item {
    pub fn from_out(record: &OutRecord) -> Item {
        match record {
            OutRecord::Quote(quote) => Item::Quote(*quote),
            OutRecord::Trade(trade) => Item::Trade(*trade),
            OutRecord::Spread(sample) => Item::Spread(*sample),
            OutRecord::Opportunity(event) => Item::Opportunity(*event),
            OutRecord::Gap(gap) => Item::Gap(*gap),
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            Item::Quote(_) => RecordKind::Quote,
            Item::Trade(_) => RecordKind::Trade,
            Item::Spread(_) => RecordKind::SpreadSample,
            Item::Opportunity(_) => RecordKind::Opportunity,
            Item::Gap(_) => RecordKind::Gap,
            Item::Telemetry(_) => RecordKind::Telemetry,
            Item::VenueStatus(_) => RecordKind::VenueStatus,
        }
    }

    /// The conflation key (kind, symbol, venues), or None for events, which never conflate.
    fn conflation_key(&self) -> Option<u64> {
        let (kind, symbol, venue_a, venue_b) = match self {
            Item::Quote(quote) => (0u64, quote.symbol_id.0, quote.venue_id.0, 0),
            Item::Trade(trade) => (1, trade.symbol_id.0, trade.venue_id.0, 0),
            Item::Spread(sample) => (
                2,
                sample.symbol_id.0,
                sample.buy_venue_id.0,
                sample.sell_venue_id.0,
            ),
            Item::Telemetry(_) => (5, 0, 0, 0),
            Item::VenueStatus(status) => (6, 0, status.venue_id.0, 0),
            Item::Opportunity(_) | Item::Gap(_) => return None,
        };
        // 3 bits of kind, 32 of symbol, 12 + 12 of venue ids (venue ids are < 4096).
        Some(
            kind << 61
                | u64::from(symbol) << 24
                | u64::from(venue_a & 0xFFF) << 12
                | u64::from(venue_b & 0xFFF),
        )
    }
}

/// Counters of one lane, written only by its producer (load + store, no read-modify-write).
#[derive(Debug, Default)]
pub struct LaneCounters {
    pub enqueued: AtomicU64,
    /// Dropped because the ring was full (`drop_newest`, events under `conflate`).
    pub dropped_full: AtomicU64,
    /// Displaced from the ring by newer records (`drop_oldest`).
    pub dropped_oldest: AtomicU64,
    /// Replaced by a newer record of the same key while waiting (`conflate`).
    pub conflated: AtomicU64,
    /// Dropped after waiting `block_timeout_ms`, or at once because the lane's blocking budget
    /// for the current second was spent (`block`).
    pub block_timeouts: AtomicU64,
    /// Dropped because the sink is disabled.
    pub dropped_disabled: AtomicU64,
    /// Every record lost above, by kind (`RecordKind as usize`): their sum per lane equals
    /// the sum of the loss counters above.
    pub lost_by_kind: [AtomicU64; RECORD_KINDS],
}

/// How many record kinds there are (`RecordKind::ALL`).
pub const RECORD_KINDS: usize = RecordKind::ALL.len();

fn bump(counter: &AtomicU64, by: u64) {
    // Single writer: a plain load and store is exact and cheaper than fetch_add.
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// State a sink's lanes share with its runner.
#[derive(Debug)]
pub struct SinkShared {
    /// Set by the runner when the sink is disabled: producers stop offering it records.
    pub disabled: AtomicBool,
    /// Set by the host at shutdown.
    pub stop: AtomicBool,
}

/// The consumer end of a lane (owned by the sink's runner).
pub enum LaneConsumer {
    Ring(rtrb::Consumer<Item>),
    Overwrite(Arc<ArrayQueue<Item>>),
}

impl LaneConsumer {
    pub fn pop(&mut self) -> Option<Item> {
        match self {
            LaneConsumer::Ring(consumer) => consumer.pop().ok(),
            LaneConsumer::Overwrite(queue) => queue.pop(),
        }
    }
}

enum LaneQueue {
    Ring(rtrb::Producer<Item>),
    /// `drop_oldest`: an SPSC-used `ArrayQueue`, whose `force_push` displaces the oldest record
    /// (an rtrb producer cannot remove from the consumer's end).
    Overwrite(Arc<ArrayQueue<Item>>),
}

/// `conflate`: records waiting for room, the latest per key, in first-waiting order.
///
/// Fixed-size: a slab of `capacity_keys` entries, an open-addressing index over it (linear
/// probing with backward-shift deletion, so no tombstones and never a rehash) and a ring of slab
/// entries for the order. Everything is allocated at start; a shard's insert, replace and
/// removal never allocate, however the keys churn.
struct ConflationTable {
    /// Index slot → slab entry + 1 (0 = empty). Length a power of two ≥ 2 × `capacity_keys`, so
    /// probes stay short (load factor ≤ 1/2).
    index: Box<[u32]>,
    /// `64 - log2(index.len())`: the home slot is the top bits of a Fibonacci hash.
    hash_shift: u32,
    keys: Box<[u64]>,
    items: Box<[Option<Item>]>,
    /// Slab entries not in use.
    free: Vec<u32>,
    /// Slab entries in use, in first-waiting order.
    order: VecDeque<u32>,
}

impl ConflationTable {
    fn new(capacity_keys: usize) -> ConflationTable {
        let capacity_keys = capacity_keys.max(1);
        let index_len = (2 * capacity_keys).next_power_of_two();
        ConflationTable {
            index: vec![0; index_len].into_boxed_slice(),
            hash_shift: 64 - index_len.trailing_zeros(),
            keys: vec![0; capacity_keys].into_boxed_slice(),
            items: vec![None; capacity_keys].into_boxed_slice(),
            free: (0..capacity_keys as u32).rev().collect(),
            order: VecDeque::with_capacity(capacity_keys),
        }
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.hash_shift) as usize
    }

    /// The index slot holding `key`.
    fn find(&self, key: u64) -> Option<usize> {
        let mask = self.index.len() - 1;
        let mut slot = self.home(key);
        loop {
            let entry = self.index[slot];
            if entry == 0 {
                return None;
            }
            if self.keys[entry as usize - 1] == key {
                return Some(slot);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Replaces the record waiting under `key`, or adds it at the back (refused when the key is
    /// new and the table is full).
    fn offer(&mut self, key: u64, item: Item) -> Offered {
        if let Some(slot) = self.find(key) {
            self.items[self.index[slot] as usize - 1] = Some(item);
            return Offered::Replaced;
        }
        let Some(entry) = self.free.pop() else {
            return Offered::Full;
        };
        self.keys[entry as usize] = key;
        self.items[entry as usize] = Some(item);
        let mask = self.index.len() - 1;
        let mut slot = self.home(key);
        // The load factor is at most 1/2: an empty slot exists.
        while self.index[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.index[slot] = entry + 1;
        self.order.push_back(entry);
        Offered::Added
    }

    /// The record waiting longest.
    fn front(&self) -> Option<Item> {
        self.items[*self.order.front()? as usize]
    }

    /// Removes the record waiting longest.
    fn pop_front(&mut self) {
        let Some(entry) = self.order.pop_front() else {
            return;
        };
        let key = self.keys[entry as usize];
        self.items[entry as usize] = None;
        self.free.push(entry);
        let Some(mut hole) = self.find(key) else {
            return;
        };
        // Backward-shift deletion: pull later entries of the probe run into the hole when their
        // home slot does not lie cyclically in (hole, next].
        let mask = self.index.len() - 1;
        let mut next = (hole + 1) & mask;
        loop {
            let moved = self.index[next];
            if moved == 0 {
                break;
            }
            let home = self.home(self.keys[moved as usize - 1]);
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.index[hole] = moved;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.index[hole] = 0;
    }
}

/// What [`ConflationTable::offer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offered {
    Replaced,
    Added,
    Full,
}

/// The producer end of one lane, with its sink's policy.
pub struct LaneProducer {
    queue: LaneQueue,
    policy: SinkPolicy,
    kind_mask: u32,
    block_timeout: Duration,
    /// A `block` wait timed out and no push has succeeded since: drop at once instead of waiting
    /// again for a sink that is not draining.
    blocked_out: bool,
    /// Waiting allowed per `budget_window` (equal to `block_timeout`), and what was used.
    block_budget: Duration,
    budget_window: Duration,
    budget_window_start: Instant,
    blocked_in_window: Duration,
    conflation: Option<ConflationTable>,
    pushed_since_flush: bool,
    counters: Arc<CachePadded<LaneCounters>>,
    shared: Arc<SinkShared>,
    runner: Thread,
}

/// A paced burst (a bucket change's spread samples) leaves `1 / BURST_RESERVE_DIVISOR` of a
/// lane free for the quotes, trades and gaps that keep arriving meanwhile.
pub const BURST_RESERVE_DIVISOR: usize = 4;

/// The period over which a `block` lane's waiting is budgeted.
const BLOCK_BUDGET_WINDOW: Duration = Duration::from_secs(1);

/// Builds one lane for `sink`: its producer (for a shard) and consumer (for the runner).
pub fn lane(
    sink: &SinkConfig,
    kind_mask: u32,
    shared: Arc<SinkShared>,
    runner: Thread,
) -> (LaneProducer, LaneConsumer, Arc<CachePadded<LaneCounters>>) {
    let counters = Arc::new(CachePadded::new(LaneCounters::default()));
    let (queue, consumer) = if sink.policy == SinkPolicy::DropOldest {
        let queue = Arc::new(ArrayQueue::new(sink.ring_capacity_records));
        (
            LaneQueue::Overwrite(queue.clone()),
            LaneConsumer::Overwrite(queue),
        )
    } else {
        let (producer, consumer) = rtrb::RingBuffer::new(sink.ring_capacity_records);
        (LaneQueue::Ring(producer), LaneConsumer::Ring(consumer))
    };
    let conflation =
        (sink.policy == SinkPolicy::Conflate).then(|| ConflationTable::new(sink.conflate_keys_max));
    let producer = LaneProducer {
        queue,
        policy: sink.policy,
        kind_mask,
        block_timeout: Duration::from_millis(sink.block_timeout_ms),
        blocked_out: false,
        block_budget: Duration::from_millis(sink.block_timeout_ms),
        budget_window: BLOCK_BUDGET_WINDOW,
        budget_window_start: Instant::now(),
        blocked_in_window: Duration::ZERO,
        conflation,
        pushed_since_flush: false,
        counters: counters.clone(),
        shared,
        runner,
    };
    (producer, consumer, counters)
}

impl LaneProducer {
    fn try_push(&mut self, item: Item) -> Result<(), Item> {
        match &mut self.queue {
            LaneQueue::Ring(producer) => producer
                .push(item)
                .map_err(|rtrb::PushError::Full(item)| item),
            LaneQueue::Overwrite(queue) => queue.push(item),
        }
    }

    fn accepted(&mut self) {
        self.pushed_since_flush = true;
        bump(&self.counters.enqueued, 1);
    }

    /// Counts one record of `kind` lost, in `counter` (why) and by kind.
    #[inline]
    fn lost(&self, counter: &AtomicU64, kind: RecordKind) {
        bump(counter, 1);
        bump(&self.counters.lost_by_kind[kind as usize], 1);
    }

    /// Offers one record under the sink's policy. Never blocks except `block`'s bounded wait.
    pub fn offer(&mut self, item: Item) {
        if self.kind_mask & item.kind().mask_bit() == 0 {
            return;
        }
        if self.shared.disabled.load(Ordering::Relaxed) {
            self.lost(&self.counters.dropped_disabled, item.kind());
            return;
        }
        match self.policy {
            SinkPolicy::DropNewest => match self.try_push(item) {
                Ok(()) => self.accepted(),
                Err(_) => self.lost(&self.counters.dropped_full, item.kind()),
            },
            SinkPolicy::DropOldest => {
                let LaneQueue::Overwrite(queue) = &self.queue else {
                    unreachable!("drop_oldest lanes are built with an overwrite queue")
                };
                if let Some(displaced) = queue.force_push(item) {
                    self.lost(&self.counters.dropped_oldest, displaced.kind());
                }
                self.accepted();
            }
            SinkPolicy::Block => self.offer_blocking(item),
            SinkPolicy::Conflate => self.offer_conflating(item),
        }
    }

    fn offer_blocking(&mut self, item: Item) {
        let kind = item.kind();
        let mut item = match self.try_push(item) {
            Ok(()) => {
                self.blocked_out = false;
                self.accepted();
                return;
            }
            Err(item) => item,
        };
        if self.blocked_out {
            self.lost(&self.counters.block_timeouts, kind);
            return;
        }
        let started = Instant::now();
        if started.duration_since(self.budget_window_start) >= self.budget_window {
            self.budget_window_start = started;
            self.blocked_in_window = Duration::ZERO;
        }
        // This second's blocking budget: a slow sink gets at most `block_timeout` of waiting per
        // second in total, then records drop at once until the next second.
        let allowed = self
            .block_timeout
            .min(self.block_budget.saturating_sub(self.blocked_in_window));
        if allowed.is_zero() {
            self.lost(&self.counters.block_timeouts, kind);
            return;
        }
        // The sink may be parked with a full ring: wake it before waiting for room.
        self.runner.unpark();
        let deadline = started + allowed;
        loop {
            std::thread::yield_now();
            let pushed = self.try_push(item);
            let now = Instant::now();
            match pushed {
                Ok(()) => {
                    self.blocked_in_window += now.duration_since(started);
                    self.accepted();
                    return;
                }
                Err(returned) => item = returned,
            }
            if now >= deadline || self.shared.disabled.load(Ordering::Relaxed) {
                self.blocked_in_window += now.duration_since(started);
                self.blocked_out = true;
                self.lost(&self.counters.block_timeouts, kind);
                return;
            }
        }
    }

    fn offer_conflating(&mut self, item: Item) {
        self.drain_conflation();
        let waiting = self
            .conflation
            .as_ref()
            .is_some_and(|table| table.len() > 0);
        let key = item.conflation_key();
        let kind = item.kind();
        // Nothing waits (or the record is an event): straight into the ring if it fits.
        if !waiting || key.is_none() {
            match self.try_push(item) {
                Ok(()) => return self.accepted(),
                Err(_) if key.is_none() => return self.lost(&self.counters.dropped_full, kind),
                Err(_) => {}
            }
        }
        let Some(key) = key else { return };
        let Some(table) = self.conflation.as_mut() else {
            unreachable!("conflate lanes are built with a conflation table")
        };
        // A replaced record had the same key, so the same kind.
        match table.offer(key, item) {
            Offered::Replaced => self.lost(&self.counters.conflated, kind),
            Offered::Added => {}
            Offered::Full => self.lost(&self.counters.dropped_full, kind),
        }
    }

    /// Moves waiting conflated records into the ring while it has room.
    fn drain_conflation(&mut self) {
        loop {
            let Some(item) = self.conflation.as_ref().and_then(ConflationTable::front) else {
                return;
            };
            if self.try_push(item).is_err() {
                return;
            }
            if let Some(table) = self.conflation.as_mut() {
                table.pop_front();
            }
            self.accepted();
        }
    }

    /// Room for spread samples before this lane loses one: its free ring slots, or unlimited when
    /// it overwrites (`drop_oldest`), takes no spread samples, or its sink is disabled.
    fn free_spread_slots(&self) -> usize {
        if self.kind_mask & RecordKind::SpreadSample.mask_bit() == 0
            || self.shared.disabled.load(Ordering::Relaxed)
        {
            return usize::MAX;
        }
        match &self.queue {
            LaneQueue::Ring(producer) => producer.slots(),
            LaneQueue::Overwrite(_) => usize::MAX,
        }
    }

    /// Room for a paced burst of spread samples: `free_spread_slots` less the quarter of the
    /// lane kept for the live records that arrive while the burst waits for its runner. Without
    /// it a bucket change at the full universe filled the lane to its last slot, and the next
    /// pass's quotes were lost whenever the runner was off its core for a few milliseconds
    /// (measured at 400 000 quotes/s on 2 cores with the default lanes).
    fn free_burst_slots(&self) -> usize {
        let free = self.free_spread_slots();
        match &self.queue {
            LaneQueue::Ring(producer) if free != usize::MAX => {
                free.saturating_sub(producer.buffer().capacity() / BURST_RESERVE_DIVISOR)
            }
            _ => free,
        }
    }

    /// Makes what was offered visible: wakes the runner if anything was pushed.
    pub fn flush(&mut self) {
        self.drain_conflation();
        if self.pushed_since_flush {
            self.pushed_since_flush = false;
            self.runner.unpark();
        }
    }
}

impl Drop for LaneProducer {
    fn drop(&mut self) {
        self.flush();
        // Conflated records that never found room are lost with the producer: count them.
        if let Some(table) = &self.conflation {
            for entry in &table.order {
                if let Some(item) = table.items[*entry as usize] {
                    self.lost(&self.counters.dropped_full, item.kind());
                }
            }
        }
    }
}

impl LaneProducer {
    /// Makes this lane's `block` policy act as `drop_newest` (the telemetry lane: the engine's
    /// once-a-second publisher must never wait for a sink).
    fn never_block(&mut self) {
        if self.policy == SinkPolicy::Block {
            self.policy = SinkPolicy::DropNewest;
        }
    }
}

/// What a shard (or the telemetry publisher) owns: one lane to every sink.
pub struct SinkOutbound {
    lanes: Vec<LaneProducer>,
}

impl std::fmt::Debug for SinkOutbound {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SinkOutbound")
            .field("lanes", &self.lanes.len())
            .finish()
    }
}

impl SinkOutbound {
    pub fn new(lanes: Vec<LaneProducer>) -> SinkOutbound {
        SinkOutbound { lanes }
    }

    /// An outbound whose offers never wait, whatever the sinks' policies (`block` drops the
    /// newest record instead, counted in `dropped_full`): for the telemetry lane.
    pub fn never_blocking(mut lanes: Vec<LaneProducer>) -> SinkOutbound {
        for lane in &mut lanes {
            lane.never_block();
        }
        SinkOutbound { lanes }
    }

    fn offer(&mut self, item: Item) {
        for lane in &mut self.lanes {
            lane.offer(item);
        }
    }

    /// Hands the once-a-second telemetry record to the sinks that want it.
    pub fn emit_telemetry(&mut self, telemetry: &Telemetry) {
        self.offer(Item::Telemetry(TelemetryCounters::from_record(telemetry)));
    }

    /// Hands one venue's once-a-second status (ABI 1.3) to the sinks that want it.
    pub fn emit_venue_status(&mut self, status: &VenueStatus) {
        self.offer(Item::VenueStatus(*status));
    }
}

impl Outbound for SinkOutbound {
    fn emit(&mut self, record: &OutRecord) {
        self.offer(Item::from_out(record));
    }

    fn flush(&mut self) {
        for lane in &mut self.lanes {
            lane.flush();
        }
    }

    fn free_slots_hint(&self) -> usize {
        self.lanes
            .iter()
            .map(LaneProducer::free_spread_slots)
            .min()
            .unwrap_or(usize::MAX)
    }

    fn burst_room_hint(&self) -> usize {
        self.lanes
            .iter()
            .map(LaneProducer::free_burst_slots)
            .min()
            .unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickflow_sdk::records::{SymbolId, VenueId};

    fn quote(symbol: u32, venue: u16, seq: u64) -> Item {
        Item::Quote(Quote {
            symbol_id: SymbolId(symbol),
            venue_id: VenueId(venue),
            seq,
            ..Quote::default()
        })
    }

    fn gap(connection_id: u32) -> Item {
        Item::Gap(GapEvent {
            connection_id,
            ..GapEvent::default()
        })
    }

    fn lane_with(policy: SinkPolicy, capacity: usize) -> (LaneProducer, LaneConsumer) {
        let mut sink = SinkConfig::new("test", "unused.so");
        sink.policy = policy;
        sink.ring_capacity_records = capacity;
        sink.block_timeout_ms = 1;
        let shared = Arc::new(SinkShared {
            disabled: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let (producer, consumer, _) = lane(&sink, u32::MAX, shared, std::thread::current());
        (producer, consumer)
    }

    fn drain(consumer: &mut LaneConsumer) -> Vec<Item> {
        std::iter::from_fn(|| consumer.pop()).collect()
    }

    fn seqs(items: &[Item]) -> Vec<u64> {
        items
            .iter()
            .map(|item| match item {
                Item::Quote(quote) => quote.seq,
                other => panic!("expected quotes, got {other:?}"),
            })
            .collect()
    }

    fn lost_by_kind(producer: &LaneProducer) -> [u64; RECORD_KINDS] {
        std::array::from_fn(|kind| producer.counters.lost_by_kind[kind].load(Ordering::Relaxed))
    }

    fn lost_total(producer: &LaneProducer) -> u64 {
        let counters = &producer.counters;
        [
            &counters.dropped_full,
            &counters.dropped_oldest,
            &counters.conflated,
            &counters.block_timeouts,
            &counters.dropped_disabled,
        ]
        .iter()
        .map(|counter| counter.load(Ordering::Relaxed))
        .sum()
    }

    #[test]
    fn every_loss_is_counted_by_kind_under_every_policy() {
        let quote_kind = RecordKind::Quote as usize;
        let gap_kind = RecordKind::Gap as usize;
        for policy in [
            SinkPolicy::DropNewest,
            SinkPolicy::DropOldest,
            SinkPolicy::Conflate,
            SinkPolicy::Block,
        ] {
            let (mut producer, _consumer) = lane_with(policy, 16);
            // 16 gaps fill the ring, then 24 quotes (4 keys) and 8 gaps do not fit.
            for connection in 0..16 {
                producer.offer(gap(connection));
            }
            for seq in 0..24 {
                producer.offer(quote((seq % 4) as u32, 0, seq));
            }
            for connection in 100..108 {
                producer.offer(gap(connection));
            }
            let lost = lost_by_kind(&producer);
            assert_eq!(
                lost.iter().sum::<u64>(),
                lost_total(&producer),
                "{policy:?}"
            );
            match policy {
                // The newest go: 24 quotes and 8 gaps.
                SinkPolicy::DropNewest | SinkPolicy::Block => {
                    assert_eq!((lost[quote_kind], lost[gap_kind]), (24, 8), "{policy:?}")
                }
                // The oldest are displaced: the 16 first gaps, then the first 16 quotes.
                SinkPolicy::DropOldest => {
                    assert_eq!((lost[quote_kind], lost[gap_kind]), (16, 16), "{policy:?}")
                }
                // 20 quotes replaced by a newer one of their key, 8 gaps refused; the 4 quotes
                // still waiting are lost with the producer.
                SinkPolicy::Conflate => {
                    assert_eq!((lost[quote_kind], lost[gap_kind]), (20, 8), "{policy:?}");
                    let counters = Arc::clone(&producer.counters);
                    drop(producer);
                    assert_eq!(
                        counters.lost_by_kind[quote_kind].load(Ordering::Relaxed),
                        24
                    );
                }
            }
        }
        // A disabled sink loses by kind too.
        let (mut producer, _consumer) = lane_with(SinkPolicy::DropNewest, 16);
        producer.shared.disabled.store(true, Ordering::Relaxed);
        producer.offer(quote(1, 0, 1));
        assert_eq!(lost_by_kind(&producer)[quote_kind], 1);
        assert_eq!(lost_total(&producer), 1);
    }

    #[test]
    fn drop_newest_keeps_the_first_records_and_counts_the_rest() {
        let (mut producer, mut consumer) = lane_with(SinkPolicy::DropNewest, 16);
        for seq in 0..40 {
            producer.offer(quote(1, 0, seq));
        }
        assert_eq!(seqs(&drain(&mut consumer)), (0..16).collect::<Vec<_>>());
        assert_eq!(producer.counters.dropped_full.load(Ordering::Relaxed), 24);
        assert_eq!(producer.counters.enqueued.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn drop_oldest_keeps_the_latest_records_and_counts_the_displaced() {
        let (mut producer, mut consumer) = lane_with(SinkPolicy::DropOldest, 16);
        for seq in 0..40 {
            producer.offer(quote(1, 0, seq));
        }
        assert_eq!(seqs(&drain(&mut consumer)), (24..40).collect::<Vec<_>>());
        assert_eq!(producer.counters.dropped_oldest.load(Ordering::Relaxed), 24);
    }

    #[test]
    fn conflate_keeps_the_latest_per_key_while_the_ring_is_full() {
        let (mut producer, mut consumer) = lane_with(SinkPolicy::Conflate, 16);
        // Fill the ring, then 100 updates over 4 keys wait in the conflation table.
        for seq in 0..16 {
            producer.offer(quote(9, 0, seq));
        }
        for seq in 100..200 {
            producer.offer(quote((seq % 4) as u32, 1, seq));
        }
        // An event that does not fit is dropped, never conflated.
        producer.offer(gap(7));
        assert_eq!(producer.counters.conflated.load(Ordering::Relaxed), 96);
        assert_eq!(producer.counters.dropped_full.load(Ordering::Relaxed), 1);
        assert_eq!(seqs(&drain(&mut consumer)), (0..16).collect::<Vec<_>>());
        // Room again: flushing moves the latest of each key, in first-waiting order.
        producer.flush();
        assert_eq!(seqs(&drain(&mut consumer)), vec![196, 197, 198, 199]);
        // Nothing waits any more: records go straight through, in order.
        producer.offer(quote(0, 1, 500));
        producer.offer(gap(8));
        let items = drain(&mut consumer);
        assert_eq!(items, vec![quote(0, 1, 500), gap(8)]);
    }

    #[test]
    fn block_waits_a_bounded_time_then_drops_and_counts() {
        let (mut producer, mut consumer) = lane_with(SinkPolicy::Block, 16);
        for seq in 0..20 {
            producer.offer(quote(1, 0, seq));
        }
        // Nobody drains: the first overflow waits block_timeout_ms, the rest drop at once.
        assert_eq!(producer.counters.block_timeouts.load(Ordering::Relaxed), 4);
        assert_eq!(drain(&mut consumer).len(), 16);
        // Room again: the next push succeeds and clears the "blocked out" state.
        producer.offer(quote(1, 0, 99));
        assert!(!producer.blocked_out);
        assert_eq!(seqs(&drain(&mut consumer)), vec![99]);
    }

    #[test]
    fn the_conflation_table_matches_a_map_under_churn() {
        // Against a simple model (latest per key, first-waiting order), with keys that collide
        // and a table kept near full, so probe runs wrap and deletions shift entries back.
        let capacity = 37;
        let mut table = ConflationTable::new(capacity);
        let mut model: VecDeque<(u64, u64)> = VecDeque::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for step in 0..200_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state % 3 == 0 {
                table.pop_front();
                model.pop_front();
            } else {
                // Keys a multiple of the index length apart share a home slot.
                let key = (state % 61) << 40;
                let expected = if let Some(waiting) = model.iter_mut().find(|(k, _)| *k == key) {
                    waiting.1 = step;
                    Offered::Replaced
                } else if model.len() < capacity {
                    model.push_back((key, step));
                    Offered::Added
                } else {
                    Offered::Full
                };
                assert_eq!(table.offer(key, quote(1, 0, step)), expected, "step {step}");
            }
            assert_eq!(table.len(), model.len());
            let front = table.front().map(|item| seqs(&[item])[0]);
            assert_eq!(front, model.front().map(|(_, seq)| *seq), "step {step}");
            assert_eq!(table.free.len() + table.len(), capacity);
        }
        for (key, seq) in &model {
            let slot = table.find(*key).expect("every waiting key is indexed");
            let item =
                table.items[table.index[slot] as usize - 1].expect("indexed entries hold a record");
            assert_eq!(seqs(&[item]), vec![*seq]);
        }
    }

    #[test]
    fn block_waits_at_most_its_budget_per_second_for_a_slow_sink() {
        let (mut producer, mut consumer) = lane_with(SinkPolicy::Block, 16);
        // One budget window for the whole test, so the outcome cannot depend on the clock.
        producer.budget_window = Duration::from_secs(3_600);
        for seq in 0..16 {
            producer.offer(quote(1, 0, seq));
        }
        // Nobody drains: the overflow waits out the timeout, which spends the budget.
        producer.offer(quote(1, 0, 16));
        assert!(producer.blocked_in_window >= producer.block_budget);
        // A slow sink takes one record: the next offer fits, the one after overflows again and
        // drops at once (no budget left), without waiting.
        let _ = consumer.pop();
        producer.offer(quote(1, 0, 17));
        assert!(!producer.blocked_out);
        let spent = producer.blocked_in_window;
        producer.offer(quote(1, 0, 18));
        assert_eq!(producer.blocked_in_window, spent);
        assert_eq!(producer.counters.block_timeouts.load(Ordering::Relaxed), 2);
        // The next window restores the budget.
        producer.budget_window_start -= producer.budget_window;
        producer.blocked_out = false;
        producer.offer(quote(1, 0, 19));
        assert!(producer.blocked_in_window > Duration::ZERO);
        assert_eq!(producer.counters.block_timeouts.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_telemetry_lane_never_blocks() {
        let (producer, mut consumer) = lane_with(SinkPolicy::Block, 16);
        let mut outbound = SinkOutbound::never_blocking(vec![producer]);
        for second in 0..20 {
            outbound.emit_telemetry(&Telemetry {
                ts_ns: second,
                ..Telemetry::default()
            });
        }
        let counters = &outbound.lanes[0].counters;
        assert_eq!(counters.dropped_full.load(Ordering::Relaxed), 4);
        assert_eq!(counters.block_timeouts.load(Ordering::Relaxed), 0);
        assert_eq!(drain(&mut consumer).len(), 16);
    }

    #[test]
    fn records_of_unwanted_kinds_or_for_disabled_sinks_are_not_offered() {
        let mut sink = SinkConfig::new("test", "unused.so");
        sink.ring_capacity_records = 16;
        let shared = Arc::new(SinkShared {
            disabled: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let (mut producer, mut consumer, counters) = lane(
            &sink,
            RecordKind::Gap.mask_bit(),
            shared.clone(),
            std::thread::current(),
        );
        producer.offer(quote(1, 0, 1));
        producer.offer(gap(1));
        assert_eq!(drain(&mut consumer), vec![gap(1)]);
        shared.disabled.store(true, Ordering::Relaxed);
        producer.offer(gap(2));
        assert!(drain(&mut consumer).is_empty());
        assert_eq!(counters.dropped_disabled.load(Ordering::Relaxed), 1);
    }
}
