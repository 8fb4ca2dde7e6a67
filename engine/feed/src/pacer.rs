//! Connection-start pacing: one token bucket per venue, shared by every slot of that venue, so a
//! start (85 connections at once), a refresh that adds slots, or a reconnect storm stays within
//! the venue's documented connection-rate limit (`protocol::VenueRules::connect_rate`) instead of
//! walking into 429s. Owns no task: a slot waits for its token before it dials.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::ConnectRate;

/// A token bucket that never lets more than `rate.max` starts into any window of
/// `rate.window_ms`: a burst of half the limit, refilled with the other half per window (a
/// bucket of the full limit refilled at the full rate would let through twice the limit in the
/// window after a burst).
#[derive(Debug)]
pub(crate) struct ConnectPacer {
    rate: ConnectRate,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl ConnectPacer {
    pub(crate) fn new(rate: ConnectRate) -> ConnectPacer {
        ConnectPacer {
            rate,
            state: Mutex::new(Bucket {
                tokens: f64::from(burst(rate)),
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Takes a token now, or returns how long to wait before trying again.
    pub(crate) fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(burst(self.rate));
        let refill_per_window = f64::from(self.rate.max.saturating_sub(burst(self.rate)).max(1));
        let per_token_s = self.rate.window_ms as f64 / 1000.0 / refill_per_window;
        // Poisoned only if a holder panicked between two float operations: the bucket is valid.
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed_s = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        if per_token_s > 0.0 {
            bucket.tokens = (bucket.tokens + elapsed_s / per_token_s).min(capacity);
        } else {
            bucket.tokens = capacity;
        }
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) * per_token_s))
        }
    }

    /// Waits for a token. Cancel-safe: dropping the future takes nothing.
    pub(crate) async fn take(&self) {
        loop {
            match self.try_take(Instant::now()) {
                Ok(()) => return,
                // Rate limiting, not synchronization: the bucket refills with time.
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }
}

/// Starts allowed at once: half the limit, at least one.
fn burst(rate: ConnectRate) -> u32 {
    (rate.max / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_half_the_limit_then_one_token_per_interval() {
        // OKX: 3 per second.
        let pacer = ConnectPacer::new(ConnectRate {
            max: 3,
            window_ms: 1_000,
        });
        let start = Instant::now();
        assert_eq!(pacer.try_take(start), Ok(()));
        let wait = pacer.try_take(start).expect_err("the burst is one");
        assert!(wait > Duration::from_millis(450) && wait <= Duration::from_millis(500));
        // Half a second later one token is back, not two.
        let later = start + Duration::from_millis(500);
        assert_eq!(pacer.try_take(later), Ok(()));
        assert!(pacer.try_take(later).is_err());
    }

    #[test]
    fn eighty_five_starts_within_kucoins_thirty_a_minute() {
        let pacer = ConnectPacer::new(ConnectRate {
            max: 30,
            window_ms: 60_000,
        });
        let start = Instant::now();
        let mut now = start;
        let mut started = Vec::new();
        while started.len() < 85 {
            match pacer.try_take(now) {
                Ok(()) => started.push(now),
                Err(wait) => now += wait,
            }
        }
        // No 60 s window holds more than 30 starts.
        for (index, &at) in started.iter().enumerate() {
            let in_window = started[index..]
                .iter()
                .take_while(|&&other| other < at + Duration::from_secs(60))
                .count();
            assert!(in_window <= 30, "{in_window} starts in one minute");
        }
        // And the limit is used: 85 starts take about (85 − 15) / 15 minutes.
        let took = *started.last().expect("85 starts") - start;
        assert!(took <= Duration::from_secs(281), "{took:?}");
    }
}
