//! The fuzzer's seeded pseudo-random numbers (SplitMix64): fast, and the same seed gives the same
//! inputs, so a run can be repeated. Not for anything that needs real randomness.

/// A SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        debug_assert!(bound > 0);
        (self.next_u64() % bound as u64) as usize
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: usize, denominator: usize) -> bool {
        self.below(denominator) < numerator
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length that is usually small: half the time below 8, rarely up to `max`.
    pub fn small_len(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 | 1 => self.between(1, 8.min(max.max(1))),
            2 => self.between(1, 64.min(max.max(1))),
            _ => self.between(1, max.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_and_bounds_hold() {
        let mut first = Rng::new(7);
        let mut second = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(first.next_u64(), second.next_u64());
            assert!(first.below(3) < 3);
            let value = first.between(2, 5);
            assert!((2..=5).contains(&value));
            assert!(first.small_len(10) <= 10);
            second.below(3);
            second.between(2, 5);
            second.small_len(10);
        }
    }
}
