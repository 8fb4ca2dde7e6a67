//! Bybit v5 spot: `orderbook.1.<SYMBOL>` (best bid/ask) and `publicTrade.<SYMBOL>`; replies to
//! `op` requests (subscribe, ping) are control events.
//!
//! The quote's sequence is the book's cross sequence `seq`; its timestamp is the message `ts`.

use super::check::{check_record_count, side_from_word};
use super::json::{Context, JsonDecoder, JsonVenue, TopOfBook, TradeFields, best_level};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::venue::Venue;

/// The Bybit protocol (see [`JsonVenue`]).
pub struct Bybit;

/// Bybit's decoder.
pub type BybitDecoder = JsonDecoder<Bybit>;

impl JsonVenue for Bybit {
    const VENUE: Venue = Venue::Bybit;

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
