//! Per-venue decode counters (frames, records, quote withdrawals, control frames, errors by kind)
//! shared with the metrics reader, and the rate-limited warning for refused frames that every
//! decoder from `decoder_for` writes through. Counting is a relaxed atomic add; nothing here
//! allocates or locks.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::{DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::record::{FeedEvent, TimestampNs};
use tickflow_core::records::GAP_QUOTE_WITHDRAWN;
use tickflow_core::venue::{VENUE_COUNT, Venue};

/// Counters of one venue's decoding (all connections of the venue may share one).
#[derive(Debug, Default)]
pub struct DecodeCounters {
    pub frames: AtomicU64,
    /// Records appended, withdrawals included.
    pub records: AtomicU64,
    /// Of `records`, the `GAP_QUOTE_WITHDRAWN` gaps (a book side went empty). Not errors.
    pub quotes_withdrawn: AtomicU64,
    pub control: AtomicU64,
    errors: [AtomicU64; DecodeErrorKind::COUNT],
}

/// A plain copy of [`DecodeCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeCountersSnapshot {
    pub frames: u64,
    pub records: u64,
    pub quotes_withdrawn: u64,
    pub control: u64,
    pub errors: [u64; DecodeErrorKind::COUNT],
}

impl DecodeCountersSnapshot {
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn error_count(&self, kind: DecodeErrorKind) -> u64 {
        self.errors[kind.index()]
    }
}

impl DecodeCounters {
    pub fn new() -> DecodeCounters {
        DecodeCounters::default()
    }

    /// Counts one decoded frame by its outcome.
    #[inline]
    pub fn count(&self, result: &Result<FrameOutcome, DecodeError>) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(FrameOutcome::Records(records)) => {
                self.records.fetch_add(*records as u64, Ordering::Relaxed);
            }
            Ok(FrameOutcome::Control(_)) => {
                self.control.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.errors[error.kind.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts one decoded frame like [`DecodeCounters::count`], and the quote withdrawals among
    /// its records: `batch` is the output the frame was decoded into, whose last `n` records are
    /// the frame's for `Records(n)`.
    #[inline]
    pub fn count_frame(&self, result: &Result<FrameOutcome, DecodeError>, batch: &[FeedEvent]) {
        self.count(result);
        if let Ok(FrameOutcome::Records(records)) = result {
            let appended = &batch[batch.len().saturating_sub(*records)..];
            let withdrawn = appended
                .iter()
                .filter(
                    |event| matches!(event, FeedEvent::Gap(gap) if gap.kind == GAP_QUOTE_WITHDRAWN),
                )
                .count();
            if withdrawn > 0 {
                self.quotes_withdrawn
                    .fetch_add(withdrawn as u64, Ordering::Relaxed);
            }
        }
    }

    pub fn error_count(&self, kind: DecodeErrorKind) -> u64 {
        self.errors[kind.index()].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> DecodeCountersSnapshot {
        let mut snapshot = DecodeCountersSnapshot {
            frames: self.frames.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            quotes_withdrawn: self.quotes_withdrawn.load(Ordering::Relaxed),
            control: self.control.load(Ordering::Relaxed),
            errors: [0; DecodeErrorKind::COUNT],
        };
        for (slot, counter) in snapshot.errors.iter_mut().zip(&self.errors) {
            *slot = counter.load(Ordering::Relaxed);
        }
        snapshot
    }
}

/// Shortest time between two warnings of one (venue, kind).
pub const DECODE_WARN_INTERVAL_NS: TimestampNs = 1_000_000_000;

/// `last_warn_ns` of a kind never warned about.
const NEVER_NS: TimestampNs = TimestampNs::MIN;

/// Logs refused frames without flooding: the first error of a kind at once, then at most one line
/// per [`DECODE_WARN_INTERVAL_NS`] per kind, saying how many were suppressed in between. Shared
/// by every decoder of one venue (all its connections, on any thread): the state is atomics, the
/// time comes from the caller, so no lock and no timer is involved.
#[derive(Debug)]
pub struct DecodeWarnLimiter {
    venue: Venue,
    last_warn_ns: [AtomicI64; DecodeErrorKind::COUNT],
    suppressed: [AtomicU64; DecodeErrorKind::COUNT],
}

/// The limiters `decoder_for` hands out, one per venue, in `Venue` discriminant order.
static VENUE_WARNINGS: [DecodeWarnLimiter; VENUE_COUNT] = [
    DecodeWarnLimiter::new(Venue::Binance),
    DecodeWarnLimiter::new(Venue::Bybit),
    DecodeWarnLimiter::new(Venue::Okx),
    DecodeWarnLimiter::new(Venue::Mexc),
    DecodeWarnLimiter::new(Venue::Gate),
    DecodeWarnLimiter::new(Venue::Kucoin),
    DecodeWarnLimiter::new(Venue::Bitget),
    DecodeWarnLimiter::new(Venue::Htx),
];

impl DecodeWarnLimiter {
    pub const fn new(venue: Venue) -> DecodeWarnLimiter {
        DecodeWarnLimiter {
            venue,
            last_warn_ns: [const { AtomicI64::new(NEVER_NS) }; DecodeErrorKind::COUNT],
            suppressed: [const { AtomicU64::new(0) }; DecodeErrorKind::COUNT],
        }
    }

    /// The process-wide limiter of `venue`, shared by every decoder `decoder_for` builds for it.
    pub fn for_venue(venue: Venue) -> &'static DecodeWarnLimiter {
        &VENUE_WARNINGS[venue.index()]
    }

    pub fn venue(&self) -> Venue {
        self.venue
    }

    /// Warns about `error` unless this kind was warned about less than a second before `now_ns`.
    /// Returns whether a line was written.
    pub fn warn(&self, error: &DecodeError, now_ns: TimestampNs) -> bool {
        let index = error.kind.index();
        let last_ns = self.last_warn_ns[index].load(Ordering::Relaxed);
        // A clock that stepped back starts a new burst rather than muting the kind until the
        // clock catches up.
        let in_burst =
            last_ns != NEVER_NS && now_ns >= last_ns && now_ns - last_ns < DECODE_WARN_INTERVAL_NS;
        // Of the threads that see the burst over at once, the one that moves the time warns.
        if in_burst
            || self.last_warn_ns[index]
                .compare_exchange(last_ns, now_ns, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed[index].fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let suppressed = self.suppressed[index].swap(0, Ordering::Relaxed);
        tracing::warn!(
            venue = self.venue.name(),
            kind = error.kind.name(),
            detail = error.detail,
            suppressed_since_last_warning = suppressed,
            "refused a frame"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ControlEvent;

    #[test]
    fn counts_by_outcome_and_kind() {
        let counters = DecodeCounters::new();
        counters.count(&Ok(FrameOutcome::Records(3)));
        counters.count(&Ok(FrameOutcome::Control(ControlEvent::Pong)));
        counters.count(&Err(DecodeError::new(DecodeErrorKind::CrossedBook, "x")));
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.frames, 3);
        assert_eq!(snapshot.records, 3);
        assert_eq!(snapshot.control, 1);
        assert_eq!(snapshot.error_count(DecodeErrorKind::CrossedBook), 1);
        assert_eq!(snapshot.errors_total(), 1);
    }

    #[test]
    fn withdrawals_are_counted_apart_from_errors() {
        use tickflow_core::record::GapEvent;
        use tickflow_core::records::GAP_DISCONNECT;
        let counters = DecodeCounters::new();
        let withdrawn = FeedEvent::Gap(GapEvent {
            kind: GAP_QUOTE_WITHDRAWN,
            ..GapEvent::default()
        });
        let disconnect = FeedEvent::Gap(GapEvent {
            kind: GAP_DISCONNECT,
            ..GapEvent::default()
        });
        let earlier = FeedEvent::Gap(GapEvent {
            kind: GAP_QUOTE_WITHDRAWN,
            ..GapEvent::default()
        });
        // The batch holds a record of an earlier frame, then this frame's two.
        let batch = [earlier, withdrawn, disconnect];
        counters.count_frame(&Ok(FrameOutcome::Records(2)), &batch);
        counters.count_frame(
            &Err(DecodeError::new(DecodeErrorKind::MissingField, "x")),
            &batch,
        );
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.records, 2);
        assert_eq!(snapshot.quotes_withdrawn, 1);
        assert_eq!(snapshot.errors_total(), 1);
    }

    #[test]
    fn every_venue_has_its_own_shared_limiter() {
        for venue in Venue::ALL {
            assert_eq!(DecodeWarnLimiter::for_venue(venue).venue(), venue);
        }
    }

    #[test]
    fn warnings_after_a_clock_step_back_are_not_muted() {
        let limiter = DecodeWarnLimiter::new(Venue::Gate);
        let error = DecodeError::new(DecodeErrorKind::MissingField, "x");
        assert!(limiter.warn(&error, 10 * DECODE_WARN_INTERVAL_NS));
        assert!(limiter.warn(&error, 5 * DECODE_WARN_INTERVAL_NS));
        assert!(!limiter.warn(&error, 5 * DECODE_WARN_INTERVAL_NS + 1));
    }

    #[test]
    fn warnings_are_rate_limited_per_kind() {
        let limiter = DecodeWarnLimiter::new(Venue::Okx);
        let crossed = DecodeError::new(DecodeErrorKind::CrossedBook, "x");
        let oversized = DecodeError::new(DecodeErrorKind::Oversized, "x");
        assert!(limiter.warn(&crossed, 0));
        assert!(!limiter.warn(&crossed, 1));
        assert!(limiter.warn(&oversized, 2));
        assert!(!limiter.warn(&crossed, DECODE_WARN_INTERVAL_NS - 1));
        assert!(limiter.warn(&crossed, DECODE_WARN_INTERVAL_NS));
    }
}
