//! The event that travels from a connection slot to a shard: a quote, a trade or a gap.
//!
//! Records themselves are the ABI layouts of `tickflow-sdk` (re-exported here as `records`).

pub use tickflow_sdk::records;
pub use tickflow_sdk::records::{
    GapEvent, OpportunityEvent, Quote, SpreadSample, SymbolId, TimestampNs, Trade, VenueId,
};

/// One element of a feed → shard ring.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FeedEvent {
    Quote(Quote),
    Trade(Trade),
    Gap(GapEvent),
}

impl FeedEvent {
    /// The symbol that decides which shard owns this event.
    #[inline]
    pub fn symbol_id(&self) -> SymbolId {
        match self {
            FeedEvent::Quote(quote) => quote.symbol_id,
            FeedEvent::Trade(trade) => trade.symbol_id,
            FeedEvent::Gap(gap) => gap.symbol_id,
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch (the receive timestamp of every record).
#[inline]
pub fn now_ns() -> TimestampNs {
    // A clock before 1970 or after 2262 is a broken machine, not input: fall back to 0.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}
