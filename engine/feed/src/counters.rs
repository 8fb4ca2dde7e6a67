//! Per-slot counters: fixed-size atomics written by the slot's task, read by anyone (stats line,
//! demo summary, tests). Nothing here grows: a reconnect reuses the same counters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use tickflow_core::record::FeedEvent;
use tickflow_core::records::FLAG_HAS_TS_EXCHANGE;

use tickflow_decode::DecodeErrorKind;

/// Largest resume time recorded (longer values are clamped).
const RESUME_MS_MAX: u64 = 3_600_000;

#[derive(Debug)]
pub struct SlotCounters {
    /// Data and control frames read (ws pings and pongs included).
    pub frames: AtomicU64,
    /// Records decoded and offered to the pipeline.
    pub records: AtomicU64,
    /// Of `records`, the quotes (best bid/ask updates).
    pub quotes: AtomicU64,
    /// Records the pipeline refused because a ring was full (dropped newest).
    pub ring_drops: AtomicU64,
    /// Successful connections (first one included).
    pub connects: AtomicU64,
    /// Successful connections after the first.
    pub reconnects: AtomicU64,
    /// Connect attempts that failed (TCP, TLS, upgrade, bullet, welcome, subscribe).
    pub connect_failures: AtomicU64,
    /// Connect attempts refused with 429 or 418.
    pub rate_limited: AtomicU64,
    /// Client pings not answered in time.
    pub pongs_missed: AtomicU64,
    /// Connections replaced because the venue stopped reading: queued writes (pongs, pings,
    /// subscribe requests) not taken within `feeds.write_timeout_ms`, or a full write queue.
    pub write_timeouts: AtomicU64,
    /// Connections declared dead after `max_silence_ms` without any frame.
    pub silences: AtomicU64,
    /// Connections replaced because a re-sending channel went quiet.
    pub stale_data: AtomicU64,
    /// Connections the server closed (close frame or EOF).
    pub server_closes: AtomicU64,
    /// Messages larger than `engine.max_frame_bytes` (skipped; the connection goes on).
    pub oversized_frames: AtomicU64,
    /// Symbols a plan change took off this slot (each got a `GAP_SYMBOL_RETIRED`).
    pub symbols_retired: AtomicU64,
    /// Frames that break the WebSocket protocol (bad opcodes, reserved bits, masked server
    /// frames, continuations out of place).
    pub protocol_errors: AtomicU64,
    /// Completed rotations (replacement delivered data, old connection closed without a gap).
    pub rotations: AtomicU64,
    /// Shutdown or upgrade notices received.
    pub shutdown_notices: AtomicU64,
    /// Error replies from the venue (bad subscription, rate limit).
    pub error_replies: AtomicU64,
    /// Gap events emitted (one per symbol per disconnect or reconnect).
    pub gaps: AtomicU64,
    /// Gap events that still could not be delivered at shutdown (every ring try refused). A full
    /// ring only delays a gap: it is held per symbol and retried before any data record.
    pub gap_drops: AtomicU64,
    /// Refused frames by decode error kind.
    pub decode_errors: [AtomicU64; DecodeErrorKind::COUNT],
    /// Subscriptions (symbol × channel) live on the current connection; 0 while disconnected.
    pub subscriptions: AtomicU64,
    pub connected: AtomicBool,
    /// When the slot last delivered data (the frame's receive clock, ns since the epoch); 0
    /// before its first. One relaxed store per data frame.
    pub last_data_ns: AtomicI64,
    /// Exchange-to-receive latency of the first timestamped record of each data frame (one per
    /// frame, not per record, so the hot path pays one branchy loop step and two atomics).
    pub exchange_latency: ExchangeLatency,
    /// Time from a reconnect to its first record, in ms. Written once per reconnect (cold path).
    resume_ms: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for SlotCounters {
    fn default() -> Self {
        SlotCounters {
            frames: AtomicU64::new(0),
            records: AtomicU64::new(0),
            quotes: AtomicU64::new(0),
            ring_drops: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            pongs_missed: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
            silences: AtomicU64::new(0),
            stale_data: AtomicU64::new(0),
            server_closes: AtomicU64::new(0),
            oversized_frames: AtomicU64::new(0),
            symbols_retired: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            shutdown_notices: AtomicU64::new(0),
            error_replies: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            gap_drops: AtomicU64::new(0),
            decode_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            subscriptions: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            last_data_ns: AtomicI64::new(0),
            exchange_latency: ExchangeLatency::default(),
            resume_ms: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, RESUME_MS_MAX, 2)
                    .expect("constant histogram bounds are valid"),
            ),
        }
    }
}

#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl SlotCounters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.iter().map(Self::get).sum()
    }

    pub(crate) fn record_resume_ms(&self, resume_ms: u64) {
        // A poisoned lock only means a reader panicked mid-copy; the histogram is still valid.
        let mut histogram = self
            .resume_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        histogram.saturating_record(resume_ms.clamp(1, RESUME_MS_MAX));
    }

    /// Adds this slot's resume times into `into` (a histogram from [`Self::new_resume_histogram`]).
    pub fn merge_resume_ms(&self, into: &mut hdrhistogram::Histogram<u64>) {
        let histogram = self
            .resume_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Same bounds on both sides, so adding cannot fail.
        let _ = into.add(&*histogram);
    }

    /// An empty histogram with the resume times' bounds (ms).
    pub fn new_resume_histogram() -> hdrhistogram::Histogram<u64> {
        hdrhistogram::Histogram::new_with_bounds(1, RESUME_MS_MAX, 2)
            .expect("constant histogram bounds are valid")
    }
}

/// Upper bounds (ns) of the exchange-to-receive latency buckets: 1 ms to 10 s.
pub const EXCHANGE_LATENCY_BOUNDS_NS: [i64; 12] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// A fixed-bucket histogram of exchange-to-receive latency, written by one slot task with
/// relaxed atomics (no lock, no allocation). A record whose exchange time is after its receive
/// time (clock skew) counts in the first bucket.
#[derive(Debug, Default)]
pub struct ExchangeLatency {
    /// Per bucket (not cumulative); the last is above every bound.
    buckets: [AtomicU64; EXCHANGE_LATENCY_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl ExchangeLatency {
    /// The latency of `event` when it carries the venue's time: `ts_recv_ns - ts_exchange_ns`.
    #[inline]
    pub fn of(event: &FeedEvent) -> Option<i64> {
        match event {
            FeedEvent::Quote(quote) if quote.flags & FLAG_HAS_TS_EXCHANGE != 0 => {
                Some(quote.ts_recv_ns - quote.ts_exchange_ns)
            }
            FeedEvent::Trade(trade) if trade.flags & FLAG_HAS_TS_EXCHANGE != 0 => {
                Some(trade.ts_recv_ns - trade.ts_exchange_ns)
            }
            _ => None,
        }
    }

    #[inline]
    pub fn record(&self, latency_ns: i64) {
        let latency_ns = latency_ns.max(0);
        let index = EXCHANGE_LATENCY_BOUNDS_NS
            .iter()
            .position(|bound| latency_ns <= *bound)
            .unwrap_or(EXCHANGE_LATENCY_BOUNDS_NS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(latency_ns as u64, Ordering::Relaxed);
    }

    /// Adds this slot's buckets (not cumulative, the last above every bound) and sum into the
    /// totals given.
    pub fn add_into(
        &self,
        buckets: &mut [u64; EXCHANGE_LATENCY_BOUNDS_NS.len() + 1],
        sum_ns: &mut u64,
    ) {
        for (total, bucket) in buckets.iter_mut().zip(&self.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
        *sum_ns += self.sum_ns.load(Ordering::Relaxed);
    }
}
