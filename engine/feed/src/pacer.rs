//! Connection-start pacing: one token bucket per venue, shared by every slot of that venue, so a
//! start (85 connections at once), a refresh that adds slots, or a reconnect storm stays within
//! the venue's documented connection-rate limit (`protocol::VenueRules::connect_rate`) instead of
//! walking into 429s. Owns no task: a slot waits for its token before it dials.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::ConnectRate;

/// A token bucket that never lets more than `rate.max` starts into any window of
/// `rate.window_ms`: a burst of a tenth of the limit (at least one), refilled with the other nine
/// tenths per window, so a burst plus a window's refill is the limit. A bigger burst costs
/// sustained rate (half and half allowed a reconnect storm only half the venue's limit), and an
/// exact sliding-window count would let the whole limit through at once and then nothing for
/// the rest of the window (a venue left down for minutes in a storm); a tenth keeps the storm at
/// 90 % of the limit with no such hole.
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
        // Within rounding of a whole token counts as one: a waiter woken exactly when its token
        // is due gets it, instead of a wait of a few nanoseconds (rounded to zero).
        if bucket.tokens >= 1.0 - TOKEN_EPSILON {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
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

/// Rounding slack of the token count (a billionth of a token).
const TOKEN_EPSILON: f64 = 1e-9;

/// Starts allowed at once: a tenth of the limit, at least one.
fn burst(rate: ConnectRate) -> u32 {
    (rate.max / 10).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_a_tenth_of_the_limit_then_the_rest_evenly() {
        // OKX: 3 per second: a burst of one, then two per second.
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
        // Binance: 300 per 5 minutes: a burst of 30, then one every 300 s / 270.
        let pacer = ConnectPacer::new(ConnectRate {
            max: 300,
            window_ms: 300_000,
        });
        for _ in 0..30 {
            assert_eq!(pacer.try_take(start), Ok(()));
        }
        let wait = pacer.try_take(start).expect_err("the burst is 30");
        assert!(wait > Duration::from_millis(1_100) && wait <= Duration::from_millis(1_112));
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
        // And 90 % of the limit is used: 85 starts take (85 − 3) / 27 minutes.
        let took = *started.last().expect("85 starts") - start;
        assert!(took <= Duration::from_secs(183), "{took:?}");
    }
}
