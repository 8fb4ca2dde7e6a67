//! Liveness across the boundary: per (collector, venue), when it was last heard from (a heartbeat
//! or data, by this process's clock, so the collectors' clocks do not matter) and what its last
//! heartbeat said. A (collector, venue) silent past the timeout, or whose heartbeat says no
//! connection is up or that its last data is older than the timeout, is not live: every symbol it carried gets a `GAP_DISCONNECT`, exactly as a
//! dropped connection of a feed slot does, and it is live again at its next data or heartbeat
//! with a connection up. Fixed-size per (collector, venue); no I/O, no clock of its own.

use tickflow_core::record::{GapEvent, SymbolId};
use tickflow_core::records::GAP_DISCONNECT;
use tickflow_core::venue::{VENUE_COUNT, Venue};
use tickflow_formats::wire::WireVenueStatus as VenueStatus;

/// `GapEvent::connection_id` of the gaps liveness emits: this bit plus the collector index.
pub const LIVENESS_CONNECTION_ID_BIT: u32 = 1 << 31;

#[derive(Debug, Default)]
struct Entry {
    /// Local time (ns) it was last heard from; 0 = never.
    heard_ns: i64,
    /// Its last heartbeat said no connection was up (and no data came since).
    reported_down: bool,
    /// It has been declared not live (gaps emitted), until heard from again.
    silenced: bool,
    /// Bit per symbol id it carried data for (allocated at its first data: `max_symbols` bits).
    symbols: Vec<u64>,
}

/// Liveness of every (collector, venue) this source heard from.
#[derive(Debug)]
pub struct Liveness {
    timeout_ns: i64,
    max_symbols: usize,
    /// `collector index * VENUE_COUNT + venue`.
    entries: Vec<Entry>,
}

/// A (collector, venue) that just stopped being live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Silenced {
    pub collector: u16,
    pub venue: Venue,
    /// Heard from within the timeout, but its heartbeat reported no connection up.
    pub reported_down: bool,
}

impl Liveness {
    /// `timeout_ms` 0 turns liveness off (nothing is ever silenced).
    pub fn new(timeout_ms: u64, max_collectors: usize, max_symbols: usize) -> Liveness {
        Liveness {
            timeout_ns: timeout_ms as i64 * 1_000_000,
            max_symbols,
            entries: (0..max_collectors * VENUE_COUNT)
                .map(|_| Entry::default())
                .collect(),
        }
    }

    fn entry(&mut self, collector: u16, venue: Venue) -> Option<&mut Entry> {
        self.entries
            .get_mut(collector as usize * VENUE_COUNT + venue.index())
    }

    /// Data of `symbol` came from (collector, venue) at local time `now_ns`.
    pub fn data(&mut self, collector: u16, venue: Venue, symbol: SymbolId, now_ns: i64) {
        let max_symbols = self.max_symbols;
        let Some(entry) = self.entry(collector, venue) else {
            return;
        };
        entry.heard_ns = now_ns;
        entry.reported_down = false;
        entry.silenced = false;
        if entry.symbols.is_empty() {
            entry.symbols = vec![0; max_symbols.div_ceil(64).max(1)];
        }
        let index = symbol.0 as usize;
        if let Some(word) = entry.symbols.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    /// A heartbeat of (collector, venue) came at local time `now_ns`. It reports the venue not
    /// live when no connection is up, or when its last data (`last_data_ns`, by the collector's
    /// clock, compared with the heartbeat's own `ts_ns`, the same clock) is older than the
    /// timeout: a collector whose feeds stalled still sends heartbeats.
    pub fn heartbeat(&mut self, collector: u16, venue: Venue, status: &VenueStatus, now_ns: i64) {
        let timeout_ns = self.timeout_ns;
        let Some(entry) = self.entry(collector, venue) else {
            return;
        };
        let data_stale = timeout_ns > 0
            && (status.last_data_ns <= 0
                || status.ts_ns.saturating_sub(status.last_data_ns) > timeout_ns);
        let down = status.connections_up == 0 || data_stale;
        entry.heard_ns = now_ns;
        entry.reported_down = down;
        if !down {
            entry.silenced = false;
        }
    }

    /// Every (collector, venue) that stops being live at `now_ns` (each once until heard from
    /// again), with its symbols written by [`Liveness::gaps_for`].
    pub fn check(&mut self, now_ns: i64, mut on_silenced: impl FnMut(Silenced)) {
        if self.timeout_ns == 0 {
            return;
        }
        for (position, entry) in self.entries.iter_mut().enumerate() {
            if entry.heard_ns == 0 || entry.silenced {
                continue;
            }
            let silent = now_ns - entry.heard_ns > self.timeout_ns;
            if silent || entry.reported_down {
                entry.silenced = true;
                on_silenced(Silenced {
                    collector: (position / VENUE_COUNT) as u16,
                    venue: Venue::ALL[position % VENUE_COUNT],
                    reported_down: entry.reported_down && !silent,
                });
            }
        }
    }

    /// The `GAP_DISCONNECT` events for one silenced (collector, venue): one per symbol it
    /// carried, stamped `ts_ns`.
    pub fn gaps_for(&self, silenced: Silenced, ts_ns: i64, mut emit: impl FnMut(GapEvent)) {
        let Some(entry) = self
            .entries
            .get(silenced.collector as usize * VENUE_COUNT + silenced.venue.index())
        else {
            return;
        };
        for (word_index, word) in entry.symbols.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                emit(GapEvent {
                    ts_ns,
                    connection_id: LIVENESS_CONNECTION_ID_BIT | u32::from(silenced.collector),
                    symbol_id: SymbolId((word_index * 64 + bit) as u32),
                    venue_id: silenced.venue.id(),
                    kind: GAP_DISCONNECT,
                    reserved: [0; 5],
                });
            }
        }
    }

    /// Bytes at most (every entry with its symbol bits), for the memory budget.
    pub fn budget_bytes(max_collectors: usize, max_symbols: usize) -> usize {
        max_collectors * VENUE_COUNT * (std::mem::size_of::<Entry>() + max_symbols.div_ceil(64) * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: i64 = 1_000_000_000;

    /// A heartbeat's status taken at `ts_ns` with data just received.
    fn status(connections_up: u32, ts_ns: i64) -> VenueStatus {
        VenueStatus {
            ts_ns,
            last_data_ns: ts_ns,
            connections_up,
            ..VenueStatus::default()
        }
    }

    fn silenced_at(liveness: &mut Liveness, now_ns: i64) -> Vec<Silenced> {
        let mut out = Vec::new();
        liveness.check(now_ns, |silenced| out.push(silenced));
        out
    }

    #[test]
    fn silence_past_the_timeout_gaps_every_symbol_once() {
        let mut liveness = Liveness::new(3_000, 4, 100);
        liveness.heartbeat(1, Venue::Okx, &status(2, SECOND_NS), SECOND_NS);
        liveness.data(1, Venue::Okx, SymbolId(7), SECOND_NS);
        liveness.data(1, Venue::Okx, SymbolId(70), 2 * SECOND_NS);
        assert!(silenced_at(&mut liveness, 4 * SECOND_NS).is_empty());
        let silenced = silenced_at(&mut liveness, 6 * SECOND_NS);
        assert_eq!(
            silenced,
            vec![Silenced {
                collector: 1,
                venue: Venue::Okx,
                reported_down: false
            }]
        );
        let mut gaps = Vec::new();
        liveness.gaps_for(silenced[0], 6 * SECOND_NS, |gap| gaps.push(gap));
        let symbols: Vec<u32> = gaps.iter().map(|gap| gap.symbol_id.0).collect();
        assert_eq!(symbols, vec![7, 70]);
        assert!(
            gaps.iter()
                .all(|gap| gap.kind == GAP_DISCONNECT && gap.venue_id == Venue::Okx.id())
        );
        // Once only, until heard from again.
        assert!(silenced_at(&mut liveness, 7 * SECOND_NS).is_empty());
        liveness.heartbeat(1, Venue::Okx, &status(1, 8 * SECOND_NS), 8 * SECOND_NS);
        assert!(silenced_at(&mut liveness, 9 * SECOND_NS).is_empty());
        assert_eq!(silenced_at(&mut liveness, 12 * SECOND_NS).len(), 1);
    }

    #[test]
    fn a_heartbeat_with_no_connection_up_silences_at_once() {
        let mut liveness = Liveness::new(3_000, 4, 100);
        liveness.data(0, Venue::Binance, SymbolId(1), SECOND_NS);
        liveness.heartbeat(0, Venue::Binance, &status(0, SECOND_NS), SECOND_NS);
        let silenced = silenced_at(&mut liveness, SECOND_NS);
        assert_eq!(silenced.len(), 1);
        assert!(silenced[0].reported_down);
        // A later heartbeat still down does not gap again; data makes it live.
        liveness.heartbeat(0, Venue::Binance, &status(0, 2 * SECOND_NS), 2 * SECOND_NS);
        assert!(silenced_at(&mut liveness, 2 * SECOND_NS).is_empty());
        liveness.data(0, Venue::Binance, SymbolId(1), 3 * SECOND_NS);
        assert!(silenced_at(&mut liveness, 3 * SECOND_NS).is_empty());
    }

    #[test]
    fn a_heartbeat_whose_last_data_is_stale_silences() {
        let mut liveness = Liveness::new(3_000, 4, 100);
        liveness.data(2, Venue::Gate, SymbolId(4), SECOND_NS);
        // Connected, but its feeds delivered nothing for 4 s by the collector's clock.
        let stalled = VenueStatus {
            ts_ns: 5 * SECOND_NS,
            last_data_ns: SECOND_NS,
            connections_up: 1,
            ..VenueStatus::default()
        };
        liveness.heartbeat(2, Venue::Gate, &stalled, 2 * SECOND_NS);
        let silenced = silenced_at(&mut liveness, 2 * SECOND_NS);
        assert_eq!(silenced.len(), 1);
        assert!(silenced[0].reported_down);
        // Repeated stale heartbeats keep it down without gapping again; fresh data revives it.
        liveness.heartbeat(2, Venue::Gate, &stalled, 3 * SECOND_NS);
        assert!(silenced_at(&mut liveness, 3 * SECOND_NS).is_empty());
        liveness.heartbeat(2, Venue::Gate, &status(1, 6 * SECOND_NS), 4 * SECOND_NS);
        assert!(silenced_at(&mut liveness, 4 * SECOND_NS).is_empty());
    }

    #[test]
    fn off_and_out_of_range_do_nothing() {
        let mut liveness = Liveness::new(0, 1, 10);
        liveness.heartbeat(0, Venue::Htx, &status(0, 1), 1);
        assert!(silenced_at(&mut liveness, i64::MAX / 2).is_empty());
        let mut liveness = Liveness::new(1_000, 1, 10);
        // Collector 5 is beyond max_collectors; symbol 99 beyond max_symbols: ignored.
        liveness.data(5, Venue::Htx, SymbolId(1), 1);
        liveness.data(0, Venue::Htx, SymbolId(99), 1);
        let silenced = silenced_at(&mut liveness, 10 * SECOND_NS);
        assert_eq!(silenced.len(), 1);
        let mut gaps = 0;
        liveness.gaps_for(silenced[0], 0, |_| gaps += 1);
        assert_eq!(gaps, 0);
    }
}
