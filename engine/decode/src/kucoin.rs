//! KuCoin spot: `/spotMarket/level1` and `/market/ticker` (best bid/ask) and `/market/match`
//! (trades); `welcome`, `ack`, `pong` and `error` messages are control events.
//!
//! Match times are nanoseconds already (a string); level1 and ticker times are milliseconds.
//! An empty book side (`[]` in level1, `""` in the ticker) withdraws the quote.
//!
//! Trade ids: current frames carry decimal ids, which fit the record. KuCoin's older documents
//! show 24-hex-character ids (e.g. "5c24c5da03aa673885cd67aa"), one byte more than the record's
//! 23-byte `trade_id` holds; such a frame is refused on its own as `TradeIdTooLong` (counted,
//! nothing appended) and the next frame decodes as usual.

use super::check::side_from_word;
use super::json::{
    Context, EmptySide, JsonDecoder, JsonVenue, TopOfBook, TradeFields, flat_side, level,
};
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
                // `[price, size]` per side; `[]` is an empty side and withdraws the quote.
                let bid = level(data.field("bids", "data.bids")?, "data.bids")?;
                let ask = level(data.field("asks", "data.asks")?, "data.asks")?;
                let ts_exchange_ns = Some(
                    data.field("timestamp", "data.timestamp")?
                        .ms_as_ns("data.timestamp")?,
                );
                cx.top_of_book(TopOfBook {
                    symbol_id,
                    bid,
                    ask,
                    ts_exchange_ns,
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
                // "" is an empty side, as in KuCoin's other best-price fields.
                let bid = flat_side(
                    data.field("bestBid", "data.bestBid")?,
                    data.get("bestBidSize"),
                    EmptySide::Blank,
                    "data.bestBid",
                    "data.bestBidSize",
                )?;
                let ask = flat_side(
                    data.field("bestAsk", "data.bestAsk")?,
                    data.get("bestAskSize"),
                    EmptySide::Blank,
                    "data.bestAsk",
                    "data.bestAskSize",
                )?;
                cx.top_of_book(TopOfBook {
                    symbol_id,
                    bid,
                    ask,
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
