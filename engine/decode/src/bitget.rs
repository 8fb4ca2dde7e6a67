//! Bitget v2 public spot: `books1` (best bid/ask) and `trade`; `event` replies and the plain-text
//! `pong` are control events. The trade `snapshot` pushed right after subscribing repeats recent
//! prints, so it is reported as [`ControlEvent::Snapshot`], never as new trades.

use super::check::{check_record_count, is_plain_word, side_from_word};
use super::json::{Context, JsonDecoder, JsonVenue, TradeFields, book_snapshots};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::venue::Venue;

/// The Bitget protocol (see [`JsonVenue`]).
pub struct Bitget;

/// Bitget's decoder.
pub type BitgetDecoder = JsonDecoder<Bitget>;

impl JsonVenue for Bitget {
    const VENUE: Venue = Venue::Bitget;

    fn plain_control(frame: &[u8]) -> Option<ControlEvent> {
        is_plain_word(frame, b"pong").then_some(ControlEvent::Pong)
    }

    fn decode_json(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
        if let Some(event) = root.get("event") {
            let control = match event.str("event")? {
                "subscribe" | "unsubscribe" | "login" => ControlEvent::SubscribeAck,
                "error" => ControlEvent::ErrorReply {
                    code: root
                        .get("code")
                        .and_then(|code| code.i64("code").ok())
                        .unwrap_or(0),
                },
                _ => return Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "event")),
            };
            return Ok(FrameOutcome::Control(control));
        }
        let arg = root.field("arg", "arg")?;
        let channel = arg.field("channel", "arg.channel")?.str("arg.channel")?;
        let symbol = arg.field("instId", "arg.instId")?.str("arg.instId")?;
        let action = root.field("action", "action")?.str("action")?;
        let data = root.field("data", "data")?.array("data")?;
        match channel {
            // Each push of these is a whole top-of-book snapshot, best level first.
            "books1" | "books5" => {
                let symbol_id = cx.resolve(symbol)?;
                book_snapshots(data, symbol_id, "seq", "data[].seq", cx)
            }
            "trade" => {
                if action == "snapshot" {
                    // Recent prints replayed on subscribe: nothing new happened.
                    return Ok(FrameOutcome::Control(ControlEvent::Snapshot));
                }
                let symbol_id = cx.resolve(symbol)?;
                check_record_count(data.len(), &cx.limits)?;
                for trade in data {
                    let mut digits = [0u8; 20];
                    let trade_id = trade
                        .field("tradeId", "data[].tradeId")?
                        .trade_id(&mut digits, "data[].tradeId")?;
                    cx.trade(TradeFields {
                        symbol_id,
                        price: trade.field("price", "data[].price")?.f64("data[].price")?,
                        qty: trade.field("size", "data[].size")?.f64("data[].size")?,
                        side: side_from_word(
                            trade.field("side", "data[].side")?.str("data[].side")?,
                            "data[].side",
                        )?,
                        trade_id,
                        ts_exchange_ns: Some(
                            trade.field("ts", "data[].ts")?.ms_as_ns("data[].ts")?,
                        ),
                    })?;
                }
                cx.records()
            }
            _ => Err(DecodeError::new(
                DecodeErrorKind::UnknownMessage,
                "arg.channel",
            )),
        }
    }
}
