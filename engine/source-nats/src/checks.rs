//! What the source refuses before a record reaches a shard: a timestamp not positive or more than
//! `max_clock_ahead_ms` ahead of this machine's wall clock (one such record would move an
//! event-time shard clock far into the future), and quotes or trades with prices or quantities
//! the feed decoders refuse (not finite, price not positive, quantity negative, bid above ask).
//! Pure; no I/O, no clock of its own.

use tickflow_core::record::FeedEvent;

/// Why a record was refused; each has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its timestamp is zero or negative.
    NonPositiveTimestamp,
    /// Its timestamp is more than the tolerance ahead of local wall time.
    ClockAhead,
    /// A price or quantity is NaN or infinite.
    NonFinite,
    /// A price is zero or negative, or a quantity negative.
    NonPositivePrice,
    /// A quote's bid is above its ask.
    CrossedBook,
}

/// The record's own timestamp (what an event-time shard clock follows).
fn timestamp_ns(event: &FeedEvent) -> i64 {
    match event {
        FeedEvent::Quote(quote) => quote.ts_recv_ns,
        FeedEvent::Trade(trade) => trade.ts_recv_ns,
        FeedEvent::Gap(gap) => gap.ts_ns,
    }
}

fn check_price(price: f64) -> Result<(), Refusal> {
    if !price.is_finite() {
        return Err(Refusal::NonFinite);
    }
    if price <= 0.0 {
        return Err(Refusal::NonPositivePrice);
    }
    Ok(())
}

fn check_qty(qty: f64) -> Result<(), Refusal> {
    if !qty.is_finite() {
        return Err(Refusal::NonFinite);
    }
    if qty < 0.0 {
        return Err(Refusal::NonPositivePrice);
    }
    Ok(())
}

/// `Err` with the reason when `event` must not reach a shard. `now_ns` is local wall time;
/// `max_ahead_ns` the tolerance for a timestamp ahead of it.
pub fn check(event: &FeedEvent, now_ns: i64, max_ahead_ns: i64) -> Result<(), Refusal> {
    let ts_ns = timestamp_ns(event);
    if ts_ns <= 0 {
        return Err(Refusal::NonPositiveTimestamp);
    }
    if ts_ns.saturating_sub(now_ns) > max_ahead_ns {
        return Err(Refusal::ClockAhead);
    }
    match event {
        FeedEvent::Quote(quote) => {
            check_price(quote.bid)?;
            check_price(quote.ask)?;
            check_qty(quote.bid_qty)?;
            check_qty(quote.ask_qty)?;
            if quote.bid > quote.ask {
                return Err(Refusal::CrossedBook);
            }
        }
        FeedEvent::Trade(trade) => {
            check_price(trade.price)?;
            check_qty(trade.qty)?;
        }
        FeedEvent::Gap(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickflow_core::record::{GapEvent, Quote, Trade};

    const NOW_NS: i64 = 1_700_000_000_000_000_000;
    const AHEAD_NS: i64 = 5_000_000_000;

    fn quote(bid: f64, ask: f64, ts_recv_ns: i64) -> FeedEvent {
        FeedEvent::Quote(Quote {
            bid,
            ask,
            bid_qty: 1.0,
            ask_qty: 1.0,
            ts_recv_ns,
            ..Quote::default()
        })
    }

    #[test]
    fn good_records_pass() {
        assert_eq!(
            check(&quote(100.0, 100.1, NOW_NS), NOW_NS, AHEAD_NS),
            Ok(())
        );
        // Behind local time is fine (replays, slow links); slightly ahead too.
        assert_eq!(check(&quote(100.0, 100.0, 1), NOW_NS, AHEAD_NS), Ok(()));
        assert_eq!(
            check(&quote(100.0, 100.1, NOW_NS + AHEAD_NS), NOW_NS, AHEAD_NS),
            Ok(())
        );
        let trade = FeedEvent::Trade(Trade {
            price: 5.0,
            qty: 0.0,
            ts_recv_ns: NOW_NS,
            ..Trade::default()
        });
        assert_eq!(check(&trade, NOW_NS, AHEAD_NS), Ok(()));
    }

    #[test]
    fn each_fault_has_its_reason() {
        use Refusal::*;
        let cases = [
            (quote(100.0, 100.1, 0), NonPositiveTimestamp),
            (quote(100.0, 100.1, -5), NonPositiveTimestamp),
            (quote(100.0, 100.1, NOW_NS + AHEAD_NS + 1), ClockAhead),
            (quote(100.0, 100.1, i64::MAX), ClockAhead),
            (quote(f64::NAN, 100.1, NOW_NS), NonFinite),
            (quote(100.0, f64::INFINITY, NOW_NS), NonFinite),
            (quote(0.0, 100.1, NOW_NS), NonPositivePrice),
            (quote(-1.0, 100.1, NOW_NS), NonPositivePrice),
            (quote(100.2, 100.1, NOW_NS), CrossedBook),
        ];
        for (event, reason) in cases {
            assert_eq!(check(&event, NOW_NS, AHEAD_NS), Err(reason), "{event:?}");
        }
        let trade = FeedEvent::Trade(Trade {
            price: 5.0,
            qty: -1.0,
            ts_recv_ns: NOW_NS,
            ..Trade::default()
        });
        assert_eq!(check(&trade, NOW_NS, AHEAD_NS), Err(NonPositivePrice));
        let gap = FeedEvent::Gap(GapEvent {
            ts_ns: NOW_NS + 2 * AHEAD_NS,
            ..GapEvent::default()
        });
        assert_eq!(check(&gap, NOW_NS, AHEAD_NS), Err(ClockAhead));
    }
}
