//! Injects faults into the simulated venues at configured rates (per venue, per minute), evenly
//! spaced and staggered across venues. Runs as one owned task until cancelled.

use std::time::Duration;

use tickflow_core::venue::Venue;
use tickflow_sim::{SimVenues, VenueControl};
use tokio_util::sync::CancellationToken;

/// Faults per minute per venue; 0 = never.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultRates {
    pub disconnects_per_min: f64,
    pub malformed_per_min: f64,
    pub oversized_per_min: f64,
    pub notices_per_min: f64,
    /// Stalls (no data, no pongs) per minute per venue, each lasting `stall_ms`.
    pub stalls_per_min: f64,
    pub stall_ms: u64,
    /// Refused connects per minute per venue: the venue's next connect gets HTTP 429 with
    /// `Retry-After`, and its connections are cut so that one comes.
    pub http_429_per_min: f64,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Disconnect,
    Malformed,
    Oversized,
    Notice,
    Stall,
    Refuse,
}

/// Counts of faults injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// One-connection cuts asked (`disconnect_one`).
    pub disconnects: u64,
    /// Cuts made: a live session that had served data took the cut and dropped its connection
    /// (asked cuts wait, bounded, while a venue has no such session, and are forgotten at the
    /// end).
    pub disconnects_made: u64,
    pub malformed: u64,
    pub oversized: u64,
    pub notices: u64,
    pub stalls: u64,
    pub refusals: u64,
}

/// Runs the fault schedule against `sim` until `cancel`; returns what was injected.
pub async fn run(sim: &SimVenues, rates: FaultRates, cancel: CancellationToken) -> FaultCounts {
    let venues: Vec<Venue> = sim.config().venues.clone();
    let mut schedule: Vec<(Fault, Duration, tokio::time::Instant)> = Vec::new();
    let start = tokio::time::Instant::now();
    for (fault, per_min) in [
        (Fault::Disconnect, rates.disconnects_per_min),
        (Fault::Malformed, rates.malformed_per_min),
        (Fault::Oversized, rates.oversized_per_min),
        (Fault::Notice, rates.notices_per_min),
        (Fault::Stall, rates.stalls_per_min),
        (Fault::Refuse, rates.http_429_per_min),
    ] {
        if per_min > 0.0 {
            let period = Duration::from_secs_f64(60.0 / per_min / venues.len().max(1) as f64);
            schedule.push((fault, period, start + period));
        }
    }
    let mut counts = FaultCounts::default();
    let cuts_made = |sim: &SimVenues| -> u64 {
        venues
            .iter()
            .map(|venue| VenueControl::get(&sim.control(*venue).disconnects_made))
            .sum()
    };
    let made_before = cuts_made(sim);
    let mut next_venue = [0usize; 6];
    let mut stalled_until: Vec<Option<tokio::time::Instant>> = vec![None; venues.len()];
    let mut housekeeping = tokio::time::interval(Duration::from_millis(50));
    loop {
        let next = schedule.iter().map(|(_, _, at)| *at).min();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = housekeeping.tick() => {
                let now = tokio::time::Instant::now();
                for (index, until) in stalled_until.iter_mut().enumerate() {
                    if until.is_some_and(|until| now >= until) {
                        *until = None;
                        sim.control(venues[index]).set_stalled(false);
                    }
                }
            }
            _ = async { tokio::time::sleep_until(next.expect("guarded")).await }, if next.is_some() => {
                let now = tokio::time::Instant::now();
                for (fault, period, at) in schedule.iter_mut() {
                    if *at > now {
                        continue;
                    }
                    *at += *period;
                    let slot = *fault as usize;
                    let index = next_venue[slot] % venues.len();
                    next_venue[slot] += 1;
                    let control = sim.control(venues[index]);
                    match fault {
                        Fault::Disconnect => {
                            // One connection per event: a storm of 100 a minute cuts 100
                            // connections, not the whole venue 100 times.
                            control.disconnect_one();
                            counts.disconnects += 1;
                        }
                        Fault::Malformed => {
                            control.send_malformed();
                            counts.malformed += 1;
                        }
                        Fault::Oversized => {
                            control.send_oversized();
                            counts.oversized += 1;
                        }
                        Fault::Notice => {
                            control.send_shutdown_notice();
                            counts.notices += 1;
                        }
                        Fault::Stall => {
                            control.set_stalled(true);
                            stalled_until[index] = Some(now + Duration::from_millis(rates.stall_ms));
                            counts.stalls += 1;
                        }
                        Fault::Refuse => {
                            control.reject_next_connects(1);
                            control.disconnect_all();
                            counts.refusals += 1;
                        }
                    }
                }
            }
        }
    }
    for venue in &venues {
        let control = sim.control(*venue);
        control.set_stalled(false);
        if rates.disconnects_per_min > 0.0 {
            // Cuts asked but not yet taken must not land after the storm.
            control.clear_disconnects();
        }
    }
    counts.disconnects_made = cuts_made(sim).saturating_sub(made_before);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickflow_sim::SimConfig;

    #[test]
    fn cuts_not_taken_when_the_storm_ends_are_cleared() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let sim = SimVenues::start(SimConfig {
                venues: vec![Venue::Binance, Venue::Okx],
                symbols: crate::symbol_names(2),
                ..SimConfig::default()
            })
            .await
            .unwrap();
            // No session is up: every cut stays pending until the schedule ends.
            let rates = FaultRates {
                disconnects_per_min: 600_000.0,
                ..FaultRates::default()
            };
            let cancel = CancellationToken::new();
            let storm = run(&sim, rates, cancel.clone());
            let stop = async {
                while sim.control(Venue::Okx).pending_disconnects() == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                cancel.cancel();
            };
            let (counts, ()) = tokio::join!(storm, stop);
            assert!(counts.disconnects > 0);
            assert_eq!(
                counts.disconnects_made, 0,
                "no session was up to take a cut"
            );
            for venue in [Venue::Binance, Venue::Okx] {
                assert_eq!(sim.control(venue).pending_disconnects(), 0, "{venue:?}");
            }
            sim.shutdown().await;
        });
    }
}
