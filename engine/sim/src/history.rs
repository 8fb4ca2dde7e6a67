//! Simulated history: for every ordered venue pair of each symbol, a deterministic spread series
//! (a fast swing, a slow drift and a little noise) with the window's mean and bands, and the
//! opportunity cycles it makes at one threshold, over a time range, bucket by bucket, as the
//! records a shard emits (`OutRecord`). What `tickflow demo --seed-history-hours` writes through
//! the Parquet sink before going live, so the history view has a day to show on a first run.
//! Memory is one bucket of records plus a few numbers per pair; no I/O here.

use tickflow_core::outbound::OutRecord;
use tickflow_core::records::{
    OPPORTUNITY_END, OPPORTUNITY_START, OpportunityEvent, SpreadSample, SymbolId, VenueId,
};

const SECOND_NS: i64 = 1_000_000_000;
/// The window's band half-width in standard deviations (the engine's default `band_k`).
const BAND_K: f64 = 2.0;

/// One pair's model and its cycle state.
#[derive(Clone, Debug)]
struct PairModel {
    symbol_id: SymbolId,
    buy_venue_id: VenueId,
    sell_venue_id: VenueId,
    /// The fast swing's amplitude: pairs above the threshold cross it twice a period.
    amplitude_bp: f64,
    period_s: f64,
    phase: f64,
    seed: u64,
    /// (started_ns, peak_bp) of the cycle under way.
    cycle: Option<(i64, f64)>,
}

/// The simulated history of a time range, one bucket at a time (see the module doc).
#[derive(Clone, Debug)]
pub struct SeedHistory {
    pairs: Vec<PairModel>,
    interval_ns: i64,
    threshold_bp: f64,
    next_bucket_ns: i64,
    to_ns: i64,
}

fn mix(mut value: u64) -> u64 {
    // splitmix64's finalizer: a well-spread hash of the pair index and bucket.
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

impl SeedHistory {
    /// Every ordered pair of distinct `venues` for each of `symbols`, buckets of `interval_s`
    /// (at least 1) from `from_ns` (rounded down to a bucket) while before `to_ns`, cycles at
    /// `threshold_bp` (a cycle starts above it and ends below half of it, as the engine's).
    pub fn new(
        symbols: &[SymbolId],
        venues: &[VenueId],
        from_ns: i64,
        to_ns: i64,
        interval_s: u64,
        threshold_bp: f64,
    ) -> SeedHistory {
        let interval_ns = i64::try_from(interval_s.max(1))
            .unwrap_or(i64::MAX / SECOND_NS)
            .saturating_mul(SECOND_NS);
        let mut pairs = Vec::new();
        for &symbol_id in symbols {
            for &buy_venue_id in venues {
                for &sell_venue_id in venues {
                    if buy_venue_id == sell_venue_id {
                        continue;
                    }
                    let seed = mix(pairs.len() as u64);
                    pairs.push(PairModel {
                        symbol_id,
                        buy_venue_id,
                        sell_venue_id,
                        // 6 to 30 bp: with a threshold of 20 bp, about four pairs in ten cross it.
                        amplitude_bp: 6.0 + (seed % 25) as f64,
                        // 1.5 to 5 minutes: a crossing pair makes 12 to 40 cycles an hour.
                        period_s: 90.0 + ((seed >> 8) % 8) as f64 * 30.0,
                        phase: ((seed >> 16) % 1_000) as f64 / 1_000.0 * std::f64::consts::TAU,
                        seed,
                        cycle: None,
                    });
                }
            }
        }
        SeedHistory {
            pairs,
            interval_ns,
            threshold_bp,
            next_bucket_ns: from_ns - from_ns.rem_euclid(interval_ns),
            to_ns,
        }
    }

    /// Ordered venue pairs (spread samples per bucket).
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Buckets not yet produced.
    pub fn buckets_left(&self) -> u64 {
        if self.next_bucket_ns >= self.to_ns {
            return 0;
        }
        ((self.to_ns - self.next_bucket_ns - 1) / self.interval_ns + 1) as u64
    }

    /// The start of the next bucket (ns since the epoch).
    pub fn next_bucket_ns(&self) -> i64 {
        self.next_bucket_ns
    }

    /// Appends the next bucket's records to `out` (every pair's spread sample, then the cycle
    /// starts and ends it makes); false once the range is done.
    pub fn next_bucket(&mut self, out: &mut Vec<OutRecord>) -> bool {
        let bucket_ns = self.next_bucket_ns;
        if bucket_ns >= self.to_ns {
            return false;
        }
        self.next_bucket_ns = bucket_ns.saturating_add(self.interval_ns);
        let t_s = bucket_ns as f64 / 1e9;
        let bucket_index = (bucket_ns / self.interval_ns) as u64;
        let mut events = Vec::new();
        for model in &mut self.pairs {
            let drift_bp = 3.0 * (t_s / 3_600.0 * std::f64::consts::TAU + model.phase).sin();
            let swing_bp = model.amplitude_bp
                * (t_s / model.period_s * std::f64::consts::TAU + model.phase).sin();
            let noise_bp = (mix(model.seed ^ bucket_index) % 4_001) as f64 / 1_000.0 - 2.0;
            let spread_bp = drift_bp + swing_bp + noise_bp;
            let std_bp = model.amplitude_bp / std::f64::consts::SQRT_2;
            out.push(OutRecord::Spread(SpreadSample {
                bucket_start_ns: bucket_ns,
                bucket_duration_ns: self.interval_ns,
                last_bp: spread_bp,
                min_bp: spread_bp - 1.0,
                max_bp: spread_bp + 1.0,
                mean_bp: spread_bp,
                window_mean_bp: drift_bp,
                window_std_bp: std_bp,
                band_lower_bp: drift_bp - BAND_K * std_bp,
                band_upper_bp: drift_bp + BAND_K * std_bp,
                samples: 10,
                symbol_id: model.symbol_id,
                buy_venue_id: model.buy_venue_id,
                sell_venue_id: model.sell_venue_id,
                flags: 0,
            }));
            let event = |kind, started_ns, peak_bp| {
                OutRecord::Opportunity(OpportunityEvent {
                    ts_ns: bucket_ns,
                    started_ns,
                    threshold_bp: self.threshold_bp,
                    spread_bp,
                    peak_bp,
                    symbol_id: model.symbol_id,
                    buy_venue_id: model.buy_venue_id,
                    sell_venue_id: model.sell_venue_id,
                    kind,
                    flags: 0,
                    reserved: [0; 6],
                })
            };
            match model.cycle {
                None if spread_bp >= self.threshold_bp => {
                    model.cycle = Some((bucket_ns, spread_bp));
                    events.push(event(OPPORTUNITY_START, bucket_ns, spread_bp));
                }
                Some((started_ns, peak_bp)) if spread_bp < self.threshold_bp / 2.0 => {
                    model.cycle = None;
                    events.push(event(OPPORTUNITY_END, started_ns, peak_bp));
                }
                Some((started_ns, peak_bp)) => {
                    model.cycle = Some((started_ns, peak_bp.max(spread_bp)));
                }
                None => {}
            }
        }
        out.append(&mut events);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_has_a_sample_per_bucket_and_cycles_alternate() {
        let symbols = [SymbolId(0), SymbolId(1)];
        let venues = [VenueId(0), VenueId(1), VenueId(2)];
        let hour_ns = 3_600 * SECOND_NS;
        let mut history = SeedHistory::new(&symbols, &venues, 7, hour_ns, 15, 20.0);
        assert_eq!(history.pairs(), 12);
        assert_eq!(history.buckets_left(), 240);
        let mut records = Vec::new();
        let mut buckets = 0;
        while history.next_bucket(&mut records) {
            buckets += 1;
        }
        assert_eq!(buckets, 240);
        let samples = records
            .iter()
            .filter(|record| matches!(record, OutRecord::Spread(_)))
            .count();
        assert_eq!(samples, 12 * 240);
        // Per pair, starts and ends alternate, beginning with a start; some pairs cycle.
        let mut starts = 0;
        let mut open = std::collections::BTreeMap::new();
        for record in &records {
            if let OutRecord::Opportunity(event) = record {
                let key = (event.symbol_id, event.buy_venue_id, event.sell_venue_id);
                let was_open = open.insert(key, event.kind == OPPORTUNITY_START);
                if event.kind == OPPORTUNITY_START {
                    starts += 1;
                    assert_ne!(was_open, Some(true), "a start while a cycle is open");
                } else {
                    assert_eq!(was_open, Some(true), "an end without a start");
                }
            }
        }
        assert!(starts > 12, "{starts} cycles");
        assert!(!history.next_bucket(&mut records));
    }
}
