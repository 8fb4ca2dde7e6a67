//! KuCoin spot: `/spotMarket/level1` and `/market/ticker` (best bid/ask) and `/market/match`
//! (trades); `welcome`, `ack`, `pong` and `error` messages are control events.
//!
//! Match times are nanoseconds already (a string); level1 and ticker times are milliseconds.
//!
//! Trade ids: current frames carry decimal ids, which fit the record. KuCoin's older documents
//! show 24-hex-character ids (e.g. "5c24c5da03aa673885cd67aa"), one byte more than the record's
//! 23-byte `trade_id` holds; such a frame is refused on its own as `TradeIdTooLong` (counted,
//! nothing appended) and the next frame decodes as usual.

use super::check::side_from_word;
use super::json::{Context, JsonDecoder, JsonVenue, QuoteFields, TradeFields, level};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::venue::Venue;

/// The KuCoin protocol (see [`JsonVenue`]).
pub struct Kucoin;

/// KuCoin's decoder.
pub type KucoinDecoder = JsonDecoder<Kucoin>;

impl JsonVenue for Kucoin {
    const VENUE: Venue = Venue::Kucoin;

    fn decode_json(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
        let kind = root.field("type", "type")?.str("type")?;
        let control = match kind {
            "message" => None,
            "welcome" => Some(ControlEvent::Welcome),
            "ack" => Some(ControlEvent::SubscribeAck),
            "pong" => Some(ControlEvent::Pong),
            "error" => Some(ControlEvent::ErrorReply {
                code: root
                    .get("code")
                    .and_then(|code| code.i64("code").ok())
                    .unwrap_or(0),
            }),
            _ => return Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "type")),
        };
        if let Some(control) = control {
            return Ok(FrameOutcome::Control(control));
        }
        let topic = root.field("topic", "topic")?.str("topic")?;
        let (channel, symbol) = topic
            .split_once(':')
            .ok_or(DecodeError::new(DecodeErrorKind::UnknownMessage, "topic"))?;
        let data = root.field("data", "data")?;
        match channel {
            "/spotMarket/level1" => {
                let symbol_id = cx.resolve(symbol)?;
                let bid = level(data.field("bids", "data.bids")?, "data.bids")?;
                let ask = level(data.field("asks", "data.asks")?, "data.asks")?;
                let (Some((bid, bid_qty)), Some((ask, ask_qty))) = (bid, ask) else {
                    return cx.records();
                };
                cx.quote(QuoteFields {
                    symbol_id,
                    bid,
                    bid_qty,
                    ask,
                    ask_qty,
                    ts_exchange_ns: Some(
                        data.field("timestamp", "data.timestamp")?
                            .ms_as_ns("data.timestamp")?,
                    ),
                    seq: None,
                })?;
                cx.records()
            }
            "/market/ticker" => {
                let symbol_id = cx.resolve(symbol)?;
                // Live frames spell it `time`; the documentation sample spells it `Time`.
                let time = data
                    .get("time")
                    .or_else(|| data.get("Time"))
                    .ok_or(DecodeError::new(DecodeErrorKind::MissingField, "data.time"))?;
                let seq = match data.get("sequence") {
                    Some(seq) => Some(seq.u64("data.sequence")?),
                    None => None,
                };
                cx.quote(QuoteFields {
                    symbol_id,
                    bid: data.field("bestBid", "data.bestBid")?.f64("data.bestBid")?,
                    bid_qty: data
                        .field("bestBidSize", "data.bestBidSize")?
                        .f64("data.bestBidSize")?,
                    ask: data.field("bestAsk", "data.bestAsk")?.f64("data.bestAsk")?,
                    ask_qty: data
                        .field("bestAskSize", "data.bestAskSize")?
                        .f64("data.bestAskSize")?,
                    ts_exchange_ns: Some(time.ms_as_ns("data.time")?),
                    seq,
                })?;
                cx.records()
            }
            "/market/match" => {
                let trade_symbol = match data.get("symbol") {
                    Some(name) => name.str("data.symbol")?,
                    None => symbol,
                };
                let symbol_id = cx.resolve(trade_symbol)?;
                let mut digits = [0u8; 20];
                let trade_id = data
                    .field("tradeId", "data.tradeId")?
                    .trade_id(&mut digits, "data.tradeId")?;
                cx.trade(TradeFields {
                    symbol_id,
                    price: data.field("price", "data.price")?.f64("data.price")?,
                    qty: data.field("size", "data.size")?.f64("data.size")?,
                    side: side_from_word(
                        data.field("side", "data.side")?.str("data.side")?,
                        "data.side",
                    )?,
                    trade_id,
                    ts_exchange_ns: Some(data.field("time", "data.time")?.ns("data.time")?),
                })?;
                cx.records()
            }
            _ => Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "topic")),
        }
    }
}
