//! KuCoin spot: `/spotMarket/level1` and `/market/ticker` (best bid/ask) and `/market/match`
//! (trades); `welcome`, `ack`, `pong` and `error` messages are control events.
//!
//! Match times are nanoseconds already (a string); level1 and ticker times are milliseconds.
//! An empty book side (`[]` in level1, `""` in the ticker) withdraws the quote.
//! A hand-written scanner takes the exact `/spotMarket/level1` push shape; anything else (or
//! anything odd in it) falls back to the generic simd-json path.
//!
//! Trade ids: current frames carry decimal ids, which fit the record. KuCoin's older documents
//! show 24-hex-character ids (e.g. "5c24c5da03aa673885cd67aa"), one byte more than the record's
//! 23-byte `trade_id` holds; such a frame is refused on its own as `TradeIdTooLong` (counted,
//! nothing appended) and the next frame decodes as usual.

use super::check::side_from_word;
use super::json::{
    Context, EmptySide, JsonDecoder, JsonVenue, TopOfBook, TradeFields, flat_side, level,
};
use super::number::ms_to_ns;
use super::scan::{Cursor, QuoteText, fast_quote};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::venue::Venue;

/// The KuCoin protocol (see [`JsonVenue`]).
pub struct Kucoin;

/// KuCoin's decoder.
pub type KucoinDecoder = JsonDecoder<Kucoin>;

impl JsonVenue for Kucoin {
    const VENUE: Venue = Venue::Kucoin;

    #[inline]
    fn fast_path(frame: &[u8], cx: &mut Context<'_>) -> Option<Result<FrameOutcome, DecodeError>> {
        let fields = scan_level1(frame)?;
        let ts_exchange_ns = ms_to_ns(fields.ts_ms, "data.timestamp").ok()?;
        fast_quote(fields.quote, Some(ts_exchange_ns), None, cx)
    }

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

/// The byte fields of a `/spotMarket/level1` push found by [`scan_level1`].
#[derive(Debug, PartialEq)]
pub(crate) struct Level1Text<'a> {
    pub(crate) quote: QuoteText<'a>,
    pub(crate) ts_ms: u64,
}

/// Matches exactly `{"topic":"/spotMarket/level1:<sym>","type":"message","subject":"level1",
/// "data":{"asks":["<px>","<sz>"],"bids":["<px>","<sz>"],"timestamp":<digits>}}` (no whitespace,
/// no escapes, nothing after), the shape KuCoin documents and sends. The symbol is the topic's
/// text after its first `:`, as the generic path reads it. Any deviation returns `None`.
#[inline]
pub(crate) fn scan_level1(frame: &[u8]) -> Option<Level1Text<'_>> {
    let mut cursor = Cursor::new(frame);
    cursor.expect(br#"{"topic":"/spotMarket/level1:"#)?;
    let symbol = cursor.plain_string()?;
    cursor.expect(br#","type":"message","subject":"level1","data":{"asks":[""#)?;
    let (ask, ask_qty) = cursor.level_pair()?;
    cursor.expect(br#","bids":[""#)?;
    let (bid, bid_qty) = cursor.level_pair()?;
    cursor.expect(br#","timestamp":"#)?;
    let ts_ms = cursor.digits()?;
    cursor.expect(b"}}")?;
    cursor.at_end().then_some(Level1Text {
        quote: QuoteText {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        ts_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &[u8] = br#"{"topic":"/spotMarket/level1:BTC-USDT","type":"message","subject":"level1","data":{"asks":["68145.8","0.51987471"],"bids":["68145.7","1.29267802"],"timestamp":1729816058766}}"#;

    #[test]
    fn scanner_takes_the_documented_push_and_nothing_else() {
        assert_eq!(
            scan_level1(PUSH),
            Some(Level1Text {
                quote: QuoteText {
                    symbol: b"BTC-USDT",
                    bid: b"68145.7",
                    bid_qty: b"1.29267802",
                    ask: b"68145.8",
                    ask_qty: b"0.51987471",
                },
                ts_ms: 1_729_816_058_766,
            })
        );
        assert!(scan_level1(&PUSH[..PUSH.len() - 1]).is_none());
        let text = std::str::from_utf8(PUSH).unwrap();
        for (from, to) in [
            (r#""asks":["68145.8","0.51987471"]"#, r#""asks":[]"#),
            (r#""type":"message""#, r#""type":"welcome""#),
            (
                r#""timestamp":1729816058766"#,
                r#""timestamp":"1729816058766""#,
            ),
            (
                r#""bids":["68145.7","1.29267802"]"#,
                r#""bids":["68145.7","1.29267802","1"]"#,
            ),
        ] {
            let variant = text.replacen(from, to, 1);
            assert_ne!(variant, text, "{from}");
            assert!(scan_level1(variant.as_bytes()).is_none(), "{variant}");
        }
    }
}
