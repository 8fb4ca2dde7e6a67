//! Per-venue decode counters (frames, records, control frames, errors by kind) shared with the
//! metrics reader, and a rate-limited warning for refused frames. Counting is a relaxed atomic add;
//! nothing here allocates or locks.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::record::TimestampNs;
use tickflow_core::venue::Venue;

/// Counters of one venue's decoding (all connections of the venue may share one).
#[derive(Debug, Default)]
pub struct DecodeCounters {
    pub frames: AtomicU64,
    pub records: AtomicU64,
    pub control: AtomicU64,
    errors: [AtomicU64; DecodeErrorKind::COUNT],
}

/// A plain copy of [`DecodeCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeCountersSnapshot {
    pub frames: u64,
    pub records: u64,
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

    pub fn error_count(&self, kind: DecodeErrorKind) -> u64 {
        self.errors[kind.index()].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> DecodeCountersSnapshot {
        let mut snapshot = DecodeCountersSnapshot {
            frames: self.frames.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
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

/// Logs refused frames without flooding: the first error of a kind at once, then at most one line
/// per [`DECODE_WARN_INTERVAL_NS`] per kind, saying how many were suppressed in between. Owned by
/// one connection task (one venue); the time comes from the caller, so no timer is involved.
#[derive(Debug)]
pub struct DecodeWarnLimiter {
    venue: Venue,
    last_warn_ns: [Option<TimestampNs>; DecodeErrorKind::COUNT],
    suppressed: [u64; DecodeErrorKind::COUNT],
}

impl DecodeWarnLimiter {
    pub fn new(venue: Venue) -> DecodeWarnLimiter {
        DecodeWarnLimiter {
            venue,
            last_warn_ns: [None; DecodeErrorKind::COUNT],
            suppressed: [0; DecodeErrorKind::COUNT],
        }
    }

    /// Warns about `error` unless this kind was warned about less than a second ago. Returns
    /// whether a line was written.
    pub fn warn(&mut self, error: &DecodeError, now_ns: TimestampNs) -> bool {
        let index = error.kind.index();
        if let Some(last) = self.last_warn_ns[index] {
            if now_ns.saturating_sub(last) < DECODE_WARN_INTERVAL_NS {
                self.suppressed[index] += 1;
                return false;
            }
        }
        let suppressed = std::mem::take(&mut self.suppressed[index]);
        self.last_warn_ns[index] = Some(now_ns);
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
    fn warnings_are_rate_limited_per_kind() {
        let mut limiter = DecodeWarnLimiter::new(Venue::Okx);
        let crossed = DecodeError::new(DecodeErrorKind::CrossedBook, "x");
        let oversized = DecodeError::new(DecodeErrorKind::Oversized, "x");
        assert!(limiter.warn(&crossed, 0));
        assert!(!limiter.warn(&crossed, 1));
        assert!(limiter.warn(&oversized, 2));
        assert!(!limiter.warn(&crossed, DECODE_WARN_INTERVAL_NS - 1));
        assert!(limiter.warn(&crossed, DECODE_WARN_INTERVAL_NS));
    }
}
