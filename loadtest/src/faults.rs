//! Injects faults into the simulated venues at configured rates (per venue, per minute), evenly
//! spaced and staggered across venues. Runs as one owned task until cancelled.

use std::time::Duration;

use tickflow_core::venue::Venue;
use tickflow_sim::SimVenues;
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
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Disconnect,
    Malformed,
    Oversized,
    Notice,
    Stall,
}

/// Counts of faults injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub disconnects: u64,
    pub malformed: u64,
    pub oversized: u64,
    pub notices: u64,
    pub stalls: u64,
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
    ] {
        if per_min > 0.0 {
            let period = Duration::from_secs_f64(60.0 / per_min / venues.len().max(1) as f64);
            schedule.push((fault, period, start + period));
        }
    }
    let mut counts = FaultCounts::default();
    let mut next_venue = [0usize; 5];
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
                            control.disconnect_all();
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
                    }
                }
            }
        }
    }
    for venue in &venues {
        sim.control(*venue).set_stalled(false);
    }
    counts
}
