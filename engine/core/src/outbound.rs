//! The hand-off from a shard to the sinks: every record a shard produces goes through one
//! `Outbound` owned by that shard thread. The plugin host implements it (one SPSC ring per sink);
//! tests implement it to capture what a shard emits.

use tickflow_sdk::records::{GapEvent, OpportunityEvent, Quote, SpreadSample, Trade};

/// A record on its way to the sinks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutRecord {
    Quote(Quote),
    Trade(Trade),
    Spread(SpreadSample),
    Opportunity(OpportunityEvent),
    Gap(GapEvent),
}

/// Where a shard puts its output. Called only from the owning shard thread; must never block
/// (a full sink ring drops or conflates by that sink's policy and counts it).
pub trait Outbound: Send {
    fn emit(&mut self, record: &OutRecord);
    /// Called after each batch the shard processed: make what was emitted visible to consumers.
    fn flush(&mut self) {}
    /// How many more spread samples the fullest consumer can take right now without losing any:
    /// a hint the shard paces its bucket closes by (a bucket change closes every window at once).
    /// Consumers that never lose to a full buffer (overwriting ones) do not limit it.
    fn free_slots_hint(&self) -> usize {
        usize::MAX
    }
    /// How many spread samples a paced burst (a bucket change's closes) may hand over now: the
    /// free slots less what each consumer keeps for the records that arrive while the burst
    /// waits (quotes, trades, gaps), so pacing never leaves a lane full for them. Defaults to
    /// `free_slots_hint`.
    fn burst_room_hint(&self) -> usize {
        self.free_slots_hint()
    }
}

/// Discards everything (a shard with no sinks configured).
#[derive(Debug, Default)]
pub struct DiscardOutbound;

impl Outbound for DiscardOutbound {
    fn emit(&mut self, _record: &OutRecord) {}
}
