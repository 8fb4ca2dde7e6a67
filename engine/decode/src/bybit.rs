//! Bybit v5 spot: `orderbook.1.<SYMBOL>` (best bid/ask) and `publicTrade.<SYMBOL>`; replies to
//! `op` requests (subscribe, ping) are control events.
//!
//! The quote's sequence is the book's cross sequence `seq`; its timestamp is the message `ts`.
//! A hand-written scanner takes the exact `orderbook.1` push shape (one level a side); anything
//! else (or anything odd in it) falls back to the generic simd-json path.

use super::check::{check_record_count, side_from_word};
use super::json::{Context, JsonDecoder, JsonVenue, TopOfBook, TradeFields, best_level};
use super::number::ms_to_ns;
use super::scan::{Cursor, QuoteText, fast_quote};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::venue::Venue;

/// The Bybit protocol (see [`JsonVenue`]).
pub struct Bybit;

/// Bybit's decoder.
pub type BybitDecoder = JsonDecoder<Bybit>;

impl JsonVenue for Bybit {
    const VENUE: Venue = Venue::Bybit;

    #[inline]
    fn fast_path(frame: &[u8], cx: &mut Context<'_>) -> Option<Result<FrameOutcome, DecodeError>> {
        let fields = scan_orderbook_1(frame)?;
        let ts_exchange_ns = ms_to_ns(fields.ts_ms, "ts").ok()?;
        fast_quote(fields.quote, Some(ts_exchange_ns), Some(fields.seq), cx)
    }

    fn decode_json(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
        if let Some(op) = root.get("op") {
            let op = op.str("op")?;
            let success = root.get("success").and_then(Json::as_bool).unwrap_or(true);
            let control = match op {
                _ if !success => ControlEvent::ErrorReply {
                    code: root
                        .get("ret_code")
                        .and_then(|code| code.i64("ret_code").ok())
                        .unwrap_or(0),
                },
                "ping" | "pong" => ControlEvent::Pong,
                "subscribe" | "unsubscribe" | "auth" => ControlEvent::SubscribeAck,
                _ => {
                    return Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "op"));
                }
            };
            return Ok(FrameOutcome::Control(control));
        }
        let topic = root.field("topic", "topic")?.str("topic")?;
        // Only level 1: every push is the whole top of book (deeper books send deltas).
        if topic.starts_with("orderbook.1.") {
            decode_quote(root, cx)
        } else if topic.starts_with("publicTrade.") {
            decode_trades(root, cx)
        } else {
            Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "topic"))
        }
    }
}

fn decode_quote(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
    let data = root.field("data", "data")?;
    let symbol_id = cx.resolve(data.field("s", "data.s")?.str("data.s")?)?;
    // An empty side (`[]`: a halted or illiquid market) withdraws the quote.
    let bid = best_level(data.field("b", "data.b")?, "data.b")?;
    let ask = best_level(data.field("a", "data.a")?, "data.a")?;
    let seq = match data.get("seq") {
        Some(seq) => Some(seq.u64("data.seq")?),
        None => None,
    };
    let ts_exchange_ns = Some(root.field("ts", "ts")?.ms_as_ns("ts")?);
    cx.top_of_book(TopOfBook {
        symbol_id,
        bid,
        ask,
        ts_exchange_ns,
        seq,
    })?;
    cx.records()
}

fn decode_trades(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
    let trades = root.field("data", "data")?.array("data")?;
    check_record_count(trades.len(), &cx.limits)?;
    for trade in trades {
        let symbol_id = cx.resolve(trade.field("s", "data[].s")?.str("data[].s")?)?;
        let mut digits = [0u8; 20];
        let trade_id = trade
            .field("i", "data[].i")?
            .trade_id(&mut digits, "data[].i")?;
        cx.trade(TradeFields {
            symbol_id,
            price: trade.field("p", "data[].p")?.f64("data[].p")?,
            qty: trade.field("v", "data[].v")?.f64("data[].v")?,
            side: side_from_word(trade.field("S", "data[].S")?.str("data[].S")?, "data[].S")?,
            trade_id,
            ts_exchange_ns: Some(trade.field("T", "data[].T")?.ms_as_ns("data[].T")?),
        })?;
    }
    cx.records()
}

/// The byte fields of an `orderbook.1` push found by [`scan_orderbook_1`].
#[derive(Debug, PartialEq)]
pub(crate) struct OrderbookText<'a> {
    pub(crate) quote: QuoteText<'a>,
    pub(crate) ts_ms: u64,
    pub(crate) seq: u64,
}

/// Matches exactly `{"topic":"orderbook.1.<sym>","type":"<s>","ts":<digits>,"data":{"s":"<sym>",
/// "b":[["<px>","<sz>"]],"a":[["<px>","<sz>"]],"u":<digits>,"seq":<digits>},"cts":<digits>}` (no
/// whitespace, no escapes, nothing after), the shape Bybit documents and sends. The symbol is
/// `data.s`, as the generic path reads it. Any deviation returns `None`.
#[inline]
pub(crate) fn scan_orderbook_1(frame: &[u8]) -> Option<OrderbookText<'_>> {
    let mut cursor = Cursor::new(frame);
    cursor.expect(br#"{"topic":"orderbook.1."#)?;
    cursor.plain_string()?;
    cursor.expect(br#","type":""#)?;
    cursor.plain_string()?;
    cursor.expect(br#","ts":"#)?;
    let ts_ms = cursor.digits()?;
    cursor.expect(br#","data":{"s":""#)?;
    let symbol = cursor.plain_string()?;
    cursor.expect(br#","b":[[""#)?;
    let (bid, bid_qty) = cursor.level_pair()?;
    cursor.expect(br#"],"a":[[""#)?;
    let (ask, ask_qty) = cursor.level_pair()?;
    cursor.expect(br#"],"u":"#)?;
    cursor.digits()?;
    cursor.expect(br#","seq":"#)?;
    let seq = cursor.digits()?;
    cursor.expect(br#"},"cts":"#)?;
    cursor.digits()?;
    cursor.expect(b"}")?;
    cursor.at_end().then_some(OrderbookText {
        quote: QuoteText {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        ts_ms,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &[u8] = br#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1709891679000,"data":{"s":"BTCUSDT","b":[["27450.00","0.500"]],"a":[["27451.00","0.750"]],"u":123456789,"seq":987654321},"cts":1709891678998}"#;

    #[test]
    fn scanner_takes_the_documented_push_and_nothing_else() {
        assert_eq!(
            scan_orderbook_1(PUSH),
            Some(OrderbookText {
                quote: QuoteText {
                    symbol: b"BTCUSDT",
                    bid: b"27450.00",
                    bid_qty: b"0.500",
                    ask: b"27451.00",
                    ask_qty: b"0.750",
                },
                ts_ms: 1_709_891_679_000,
                seq: 987_654_321,
            })
        );
        assert!(scan_orderbook_1(&PUSH[..PUSH.len() - 1]).is_none());
        let text = std::str::from_utf8(PUSH).unwrap();
        for (from, to) in [
            (r#""b":[["27450.00","0.500"]]"#, r#""b":[]"#),
            (r#"]],"a""#, r#"],["1","2"]],"a""#),
            (r#""u":123456789"#, r#""u":0123"#),
            ("orderbook.1.", "orderbook.50."),
            (r#"BTCUSDT","b"#, r#"BTC\u0055SDT","b"#),
        ] {
            let variant = text.replacen(from, to, 1);
            assert_ne!(variant, text, "{from}");
            assert!(scan_orderbook_1(variant.as_bytes()).is_none(), "{variant}");
        }
    }
}
