//! The simulated venues' prices: one shared deterministic path per symbol (so venues move
//! together), a fixed offset per venue, a small random walk per connection, and injected
//! dislocations (one venue off by tens of basis points for a few seconds) so that spread
//! opportunities really occur. Pure computation: no clock reads, no shared mutable state.

use tickflow_core::venue::Venue;

/// Seconds between dislocation draws for a (venue, symbol).
const DISLOCATION_PERIOD_S: f64 = 10.0;
/// How long a dislocation lasts within its period.
const DISLOCATION_LENGTH_S: f64 = 3.0;

/// SplitMix64: a tiny, good-enough hash for deterministic draws.
pub fn mix(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(value: u64) -> f64 {
    (value >> 11) as f64 / (1u64 << 53) as f64
}

/// A symbol's reference price level, from its name (BTC near 60 000, the rest spread out).
pub fn base_price(symbol_index: usize, base_asset: &str) -> f64 {
    match base_asset {
        "BTC" => 60_000.0,
        "ETH" => 3_000.0,
        "SOL" => 150.0,
        "BNB" => 550.0,
        "XRP" => 0.6,
        "DOGE" => 0.12,
        _ => 1.0 + (mix(symbol_index as u64) % 10_000) as f64 / 100.0,
    }
}

/// The shared mid price of a symbol at time `t_s` (seconds): a sum of slow and fast waves with
/// per-symbol phases, within about ±1 % of the base.
pub fn shared_mid(base: f64, symbol_index: usize, t_s: f64) -> f64 {
    let seed = mix(symbol_index as u64 ^ 0xA5A5);
    let phase_a = unit(seed) * std::f64::consts::TAU;
    let phase_b = unit(mix(seed)) * std::f64::consts::TAU;
    let phase_c = unit(mix(seed ^ 7)) * std::f64::consts::TAU;
    let wave = 0.006 * (t_s / 97.0 + phase_a).sin()
        + 0.003 * (t_s / 13.0 + phase_b).sin()
        + 0.0008 * (t_s * 0.9 + phase_c).sin();
    base * (1.0 + wave)
}

/// A venue's fixed offset from the shared mid, in basis points (−3 … +3).
pub fn venue_offset_bp(venue: Venue) -> f64 {
    (venue.index() as f64 - 3.5) * 0.8
}

/// The dislocation of (venue, symbol) at `t_s`, in basis points: usually 0; in one period out of
/// four, ±30…90 bp for `DISLOCATION_LENGTH_S` seconds.
pub fn dislocation_bp(venue: Venue, symbol_index: usize, t_s: f64) -> f64 {
    let period = (t_s / DISLOCATION_PERIOD_S).floor();
    let draw =
        mix((period as u64) ^ ((symbol_index as u64) << 16) ^ ((venue.index() as u64) << 48));
    if draw % 4 != 0 {
        return 0.0;
    }
    let start = unit(mix(draw)) * (DISLOCATION_PERIOD_S - DISLOCATION_LENGTH_S);
    let within = t_s - period * DISLOCATION_PERIOD_S;
    if within < start || within > start + DISLOCATION_LENGTH_S {
        return 0.0;
    }
    let size = 30.0 + unit(mix(draw ^ 1)) * 60.0;
    if draw & 16 == 0 { size } else { -size }
}

/// A best bid and ask around `mid` with a half spread of `half_spread_bp`.
pub fn bid_ask(mid: f64, half_spread_bp: f64) -> (f64, f64) {
    let half = mid * half_spread_bp / 10_000.0;
    (mid - half, mid + half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dislocations_occur_and_venues_stay_near_the_mid() {
        let mut dislocated = 0;
        for step in 0..10_000 {
            let t_s = step as f64 * 0.1;
            let mid = shared_mid(60_000.0, 0, t_s);
            assert!((mid / 60_000.0 - 1.0).abs() < 0.011);
            if dislocation_bp(Venue::Okx, 0, t_s) != 0.0 {
                dislocated += 1;
            }
        }
        assert!(dislocated > 0, "some dislocation in 1000 s");
        assert!(dislocated < 5_000, "dislocations are the exception");
    }
}
