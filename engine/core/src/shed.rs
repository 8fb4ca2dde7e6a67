//! Load shedding under memory pressure: [`ShedControl`], the one command cell through which the
//! control plane's monitor asks the engine to shed (on a critical memory alert) and to stop
//! shedding (when it clears). It holds a request, not state: each shard thread reads it in
//! housekeeping and evicts its own least-recently-updated windows down to the lower cap, and the
//! universe refresh reads it before adding symbols. Nobody else's data is written from outside.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The cap while nothing is shed: every window a shard was sized for.
pub const WINDOWS_PERCENT_FULL: u32 = 100;

/// What the engine is asked to shed.
#[derive(Debug)]
pub struct ShedControl {
    /// Windows a shard may keep, in percent of its capacity (100: no shedding).
    windows_percent: AtomicU32,
    /// The universe refresh adds no symbol and no listing while set (retirements still apply).
    universe_growth_paused: AtomicBool,
}

impl Default for ShedControl {
    fn default() -> Self {
        ShedControl {
            windows_percent: AtomicU32::new(WINDOWS_PERCENT_FULL),
            universe_growth_paused: AtomicBool::new(false),
        }
    }
}

impl ShedControl {
    /// Asks the shards to keep at most `windows_percent` of their windows (clamped to 1..=100;
    /// they evict the least recently updated ones first) and pauses universe growth.
    pub fn engage(&self, windows_percent: u32) {
        self.windows_percent.store(
            windows_percent.clamp(1, WINDOWS_PERCENT_FULL),
            Ordering::Relaxed,
        );
        self.universe_growth_paused.store(true, Ordering::Relaxed);
    }

    /// Back to normal: full window capacity (windows evicted are not restored; new quotes
    /// recreate them) and universe growth resumes.
    pub fn release(&self) {
        self.windows_percent
            .store(WINDOWS_PERCENT_FULL, Ordering::Relaxed);
        self.universe_growth_paused.store(false, Ordering::Relaxed);
    }

    pub fn engaged(&self) -> bool {
        self.windows_percent() < WINDOWS_PERCENT_FULL || self.universe_growth_paused()
    }

    pub fn windows_percent(&self) -> u32 {
        self.windows_percent.load(Ordering::Relaxed)
    }

    pub fn universe_growth_paused(&self) -> bool {
        self.universe_growth_paused.load(Ordering::Relaxed)
    }

    /// The window cap for a shard sized for `capacity` windows: at least one.
    pub fn window_cap(&self, capacity: usize) -> usize {
        let percent = self.windows_percent() as usize;
        if percent >= WINDOWS_PERCENT_FULL as usize {
            capacity
        } else {
            (capacity * percent / WINDOWS_PERCENT_FULL as usize).max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engage_lowers_the_cap_and_pauses_growth_until_released() {
        let shed = ShedControl::default();
        assert!(!shed.engaged());
        assert_eq!(shed.window_cap(1000), 1000);
        shed.engage(60);
        assert!(shed.engaged() && shed.universe_growth_paused());
        assert_eq!(shed.window_cap(1000), 600);
        assert_eq!(shed.window_cap(1), 1, "never below one window");
        shed.engage(0);
        assert_eq!(shed.windows_percent(), 1, "clamped");
        shed.release();
        assert!(!shed.engaged());
        assert_eq!(shed.window_cap(1000), 1000);
    }
}
