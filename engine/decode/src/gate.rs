//! Gate v4 spot: `spot.book_ticker` and `spot.trades` updates; subscribe replies, `spot.pong`,
//! error replies and the `upgrade` notice are control events.
//!
//! Trade times come from `create_time_ms`, a string with a fractional millisecond part, converted to
//! nanoseconds exactly.

use super::check::side_from_word;
use super::json::{Context, EmptySide, JsonDecoder, JsonVenue, TopOfBook, TradeFields, flat_side};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::venue::Venue;

/// The Gate protocol (see [`JsonVenue`]).
pub struct Gate;

/// Gate's decoder.
pub type GateDecoder = JsonDecoder<Gate>;

impl JsonVenue for Gate {
    const VENUE: Venue = Venue::Gate;

    fn decode_json(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
        if let Some(kind) = root.get("type") {
            return match kind.str("type")? {
                "upgrade" => Ok(FrameOutcome::Control(ControlEvent::ShutdownNotice)),
                _ => Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "type")),
            };
        }
        if let Some(error) = root.get("error").filter(|error| !error.is_null()) {
            let code = error
                .get("code")
                .and_then(|code| code.i64("error.code").ok())
                .unwrap_or(0);
            return Ok(FrameOutcome::Control(ControlEvent::ErrorReply { code }));
        }
        let channel = root.field("channel", "channel")?.str("channel")?;
        if channel.ends_with(".pong") {
            return Ok(FrameOutcome::Control(ControlEvent::Pong));
        }
        let event = root.field("event", "event")?.str("event")?;
        match event {
            "subscribe" | "unsubscribe" => {
                return Ok(FrameOutcome::Control(ControlEvent::SubscribeAck));
            }
            "update" | "all" => {}
            _ => return Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "event")),
        }
        let result = root.field("result", "result")?;
        match channel {
            "spot.book_ticker" => {
                let symbol_id = cx.resolve(result.field("s", "result.s")?.str("result.s")?)?;
                // "" is an empty side: the quote is withdrawn.
                let bid = flat_side(
                    result.field("b", "result.b")?,
                    result.get("B"),
                    EmptySide::Blank,
                    "result.b",
                    "result.B",
                )?;
                let ask = flat_side(
                    result.field("a", "result.a")?,
                    result.get("A"),
                    EmptySide::Blank,
                    "result.a",
                    "result.A",
                )?;
                let seq = match result.get("u") {
                    Some(seq) => Some(seq.u64("result.u")?),
                    None => None,
                };
                let ts_exchange_ns = Some(result.field("t", "result.t")?.ms_as_ns("result.t")?);
                cx.top_of_book(TopOfBook {
                    symbol_id,
                    bid,
                    ask,
                    ts_exchange_ns,
                    seq,
                })?;
                cx.records()
            }
            "spot.trades" => {
                let symbol_id = cx.resolve(
                    result
                        .field("currency_pair", "result.currency_pair")?
                        .str("result.currency_pair")?,
                )?;
                let ts_exchange_ns = match result.get("create_time_ms") {
                    Some(time) => time.ms_as_ns("result.create_time_ms")?,
                    None => {
                        let seconds = result
                            .field("create_time", "result.create_time")?
                            .u64("result.create_time")?;
                        seconds
                            .checked_mul(1_000_000_000)
                            .and_then(|ns| i64::try_from(ns).ok())
                            .ok_or(DecodeError::new(
                                DecodeErrorKind::BadNumber,
                                "result.create_time",
                            ))?
                    }
                };
                let mut digits = [0u8; 20];
                let trade_id = result
                    .field("id", "result.id")?
                    .trade_id(&mut digits, "result.id")?;
                cx.trade(TradeFields {
                    symbol_id,
                    price: result.field("price", "result.price")?.f64("result.price")?,
                    qty: result
                        .field("amount", "result.amount")?
                        .f64("result.amount")?,
                    side: side_from_word(
                        result.field("side", "result.side")?.str("result.side")?,
                        "result.side",
                    )?,
                    trade_id,
                    ts_exchange_ns: Some(ts_exchange_ns),
                })?;
                cx.records()
            }
            _ => Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "channel")),
        }
    }
}
