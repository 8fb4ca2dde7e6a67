//! Gap events the ring refused, held per owned symbol and offered again, in order, before any
//! data record of that symbol: the slot's connection gaps and the decoders' quote withdrawals
//! (`GAP_QUOTE_WITHDRAWN`, which travel with the data); and the retirement gaps of symbols a new
//! plan no longer carries. Must not decide when a gap happens, nor drop one before shutdown.

use std::sync::Arc;

use crate::EventSink;
use crate::counters::{SlotCounters, bump};
use crate::planner::SlotPlan;
use tickflow_core::record::{FeedEvent, now_ns};
use tickflow_core::records::{
    GAP_DISCONNECT, GAP_QUOTE_WITHDRAWN, GAP_SYMBOL_RETIRED, GapEvent, SymbolId,
};

/// One symbol's held gaps, delivered in this order (disconnect, reconnect, withdrawal). At most
/// one of each kind: a new disconnect while a reconnect is held back nets to "disconnected" (the
/// shard treats both kinds as "the venue's last quote predates the hole"; only a disconnect also
/// ends open cycles), and a second withdrawal adds nothing to the first (no quote of the symbol
/// gets past a held gap in between).
#[derive(Clone, Copy, Debug, Default)]
struct SymbolGaps {
    disconnect: Option<GapEvent>,
    reconnect: Option<GapEvent>,
    withdrawn: Option<GapEvent>,
}

impl SymbolGaps {
    fn is_empty(&self) -> bool {
        self.disconnect.is_none() && self.reconnect.is_none() && self.withdrawn.is_none()
    }

    fn hold(&mut self, gap: GapEvent) {
        if gap.kind == GAP_QUOTE_WITHDRAWN {
            // The earliest withdrawal stands: the quote was gone from then on.
            if self.withdrawn.is_none() {
                self.withdrawn = Some(gap);
            }
        } else if gap.kind == GAP_DISCONNECT {
            self.reconnect = None;
            // The earliest disconnect stands: the hole began then.
            if self.disconnect.is_none() {
                self.disconnect = Some(gap);
            }
        } else {
            self.reconnect = Some(gap);
        }
    }

    /// Offers the held gaps in order; true when none is left.
    fn deliver(&mut self, sink: &mut impl EventSink) -> bool {
        if let Some(gap) = self.disconnect {
            if !sink.push(FeedEvent::Gap(gap)) {
                return false;
            }
            self.disconnect = None;
        }
        if let Some(gap) = self.reconnect {
            if !sink.push(FeedEvent::Gap(gap)) {
                return false;
            }
            self.reconnect = None;
        }
        if let Some(gap) = self.withdrawn {
            if !sink.push(FeedEvent::Gap(gap)) {
                return false;
            }
            self.withdrawn = None;
        }
        true
    }

    fn held(&self) -> impl Iterator<Item = GapEvent> {
        [self.disconnect, self.reconnect, self.withdrawn]
            .into_iter()
            .flatten()
    }
}

/// Every owned symbol's held gaps.
pub(super) struct HeldGaps {
    plan: Arc<SlotPlan>,
    /// Same order as `plan.symbol_ids`; sized once.
    by_symbol: Vec<SymbolGaps>,
    /// Symbols with held gaps (0 on the fast path: nothing to look up per record).
    symbols: usize,
    /// Retirement gaps of symbols the slot no longer owns, waiting for room (at most one per
    /// symbol a plan change removed: bounded by the slot's symbols).
    retired: Vec<GapEvent>,
}

impl HeldGaps {
    pub(super) fn new(plan: Arc<SlotPlan>) -> HeldGaps {
        let by_symbol = vec![SymbolGaps::default(); plan.symbol_ids.len()];
        HeldGaps {
            plan,
            by_symbol,
            symbols: 0,
            retired: Vec::new(),
        }
    }

    /// Takes `plan` as the slot's symbols: a symbol it keeps keeps its held gaps; each symbol it
    /// drops gets a `GAP_SYMBOL_RETIRED` after whatever it still held (held until the ring takes
    /// it, like any gap). Returns how many symbols were retired.
    pub(super) fn replan(
        &mut self,
        plan: Arc<SlotPlan>,
        counters: &SlotCounters,
        sink: &mut impl EventSink,
    ) -> usize {
        let ts_ns = now_ns();
        let mut by_symbol = vec![SymbolGaps::default(); plan.symbol_ids.len()];
        let mut retired = 0;
        for (symbol_id, held) in self.plan.symbol_ids.iter().zip(&self.by_symbol) {
            match plan.symbol_ids.iter().position(|id| id == symbol_id) {
                Some(index) => by_symbol[index] = *held,
                None => {
                    retired += 1;
                    // What it held goes first, in order, then the retirement.
                    for gap in held.held() {
                        self.retired.push(gap);
                    }
                    bump(&counters.gaps);
                    self.retired.push(GapEvent {
                        ts_ns,
                        connection_id: self.plan.connection_id,
                        symbol_id: *symbol_id,
                        venue_id: self.plan.venue.id(),
                        kind: GAP_SYMBOL_RETIRED,
                        reserved: [0; 5],
                    });
                }
            }
        }
        self.plan = plan;
        self.by_symbol = by_symbol;
        self.symbols = self
            .by_symbol
            .iter()
            .filter(|held| !held.is_empty())
            .count();
        self.deliver(sink);
        retired
    }

    /// Offers every held gap again; true when none is left.
    pub(super) fn deliver(&mut self, sink: &mut impl EventSink) -> bool {
        if !self.retired.is_empty() {
            let offered = self.retired.len();
            let taken = self
                .retired
                .iter()
                .take_while(|gap| sink.push(FeedEvent::Gap(**gap)))
                .count();
            self.retired.drain(..taken);
            if taken > 0 {
                sink.flush();
            }
            if taken < offered {
                return false;
            }
        }
        if self.symbols == 0 {
            return true;
        }
        let mut left = 0usize;
        for held in &mut self.by_symbol {
            if !held.is_empty() && !held.deliver(sink) {
                left += 1;
            }
        }
        self.symbols = left;
        sink.flush();
        left == 0
    }

    /// One gap of `kind` per owned symbol. A gap the ring refuses is held and retried before any
    /// data record of its symbol, so a full ring delays it but never loses it.
    pub(super) fn emit(&mut self, kind: u8, counters: &SlotCounters, sink: &mut impl EventSink) {
        self.deliver(sink);
        let ts_ns = now_ns();
        for (symbol_id, held) in self.plan.symbol_ids.iter().zip(&mut self.by_symbol) {
            let gap = GapEvent {
                ts_ns,
                connection_id: self.plan.connection_id,
                symbol_id: *symbol_id,
                venue_id: self.plan.venue.id(),
                kind,
                reserved: [0; 5],
            };
            bump(&counters.gaps);
            // Behind a held gap of the same symbol: keep the order.
            if !held.is_empty() || !sink.push(FeedEvent::Gap(gap)) {
                held.hold(gap);
            }
        }
        self.symbols = self
            .by_symbol
            .iter()
            .filter(|held| !held.is_empty())
            .count();
        sink.flush();
    }

    /// Holds a gap the decoders produced (a quote withdrawal) that the ring refused, or that
    /// would overtake its symbol's held gap: it is delivered before the symbol's next record,
    /// never dropped. False when the slot does not own the symbol (then nothing can hold it).
    pub(super) fn hold_data_gap(&mut self, gap: GapEvent) -> bool {
        let Some(index) = self
            .plan
            .symbol_ids
            .iter()
            .position(|id| *id == gap.symbol_id)
        else {
            return false;
        };
        let held = &mut self.by_symbol[index];
        if held.is_empty() {
            self.symbols += 1;
        }
        held.hold(gap);
        true
    }

    /// True when a record of `symbol_id` must not be delivered yet: it would overtake its
    /// symbol's held gap, and the shard would take the venue's quote as live across the hole.
    pub(super) fn blocks(&self, symbol_id: SymbolId) -> bool {
        self.symbols > 0
            && self
                .plan
                .symbol_ids
                .iter()
                .position(|id| *id == symbol_id)
                .is_some_and(|index| !self.by_symbol[index].is_empty())
    }

    /// Gives up on every held gap (shutdown only); returns how many there were.
    pub(super) fn drop_all(&mut self) -> u64 {
        let mut dropped = self.retired.len() as u64;
        self.retired.clear();
        for held in &mut self.by_symbol {
            dropped += held.held().count() as u64;
            *held = SymbolGaps::default();
        }
        self.symbols = 0;
        dropped
    }
}
