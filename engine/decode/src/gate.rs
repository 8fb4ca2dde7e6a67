//! Gate v4 spot: `spot.book_ticker` and `spot.trades` updates; subscribe replies, `spot.pong`,
//! error replies and the `upgrade` notice are control events.
//!
//! Trade times come from `create_time_ms`, a string with a fractional millisecond part, converted to
//! nanoseconds exactly.
//!
//! A hand-written scanner takes the exact `spot.book_ticker` update shape; anything else (or
//! anything odd in it, an empty side included) falls back to the generic simd-json path.

use super::check::side_from_word;
use super::json::{Context, EmptySide, JsonDecoder, JsonVenue, TopOfBook, TradeFields, flat_side};
use super::number::ms_to_ns;
use super::scan::{Cursor, QuoteText, fast_quote};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::venue::Venue;

/// The Gate protocol (see [`JsonVenue`]).
pub struct Gate;

/// Gate's decoder.
pub type GateDecoder = JsonDecoder<Gate>;

impl JsonVenue for Gate {
    const VENUE: Venue = Venue::Gate;

    #[inline]
    fn fast_path(frame: &[u8], cx: &mut Context<'_>) -> Option<Result<FrameOutcome, DecodeError>> {
        let fields = scan_book_ticker(frame)?;
        let ts_exchange_ns = ms_to_ns(fields.ts_ms, "result.t").ok()?;
        fast_quote(
            fields.quote,
            Some(ts_exchange_ns),
            Some(fields.update_id),
            cx,
        )
    }

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

/// The byte fields of a `spot.book_ticker` update found by [`scan_book_ticker`].
#[derive(Debug, PartialEq)]
pub(crate) struct BookTickerText<'a> {
    pub(crate) quote: QuoteText<'a>,
    pub(crate) ts_ms: u64,
    pub(crate) update_id: u64,
}

/// Matches exactly `{"time":<digits>,"time_ms":<digits>,"channel":"spot.book_ticker","event":
/// "update","result":{"t":<digits>,"u":<digits>,"s":"<sym>","b":"<px>","B":"<sz>","a":"<px>",
/// "A":"<sz>"}}` (no whitespace, no escapes, nothing after), the shape Gate documents and sends.
/// Any deviation returns `None`.
#[inline]
pub(crate) fn scan_book_ticker(frame: &[u8]) -> Option<BookTickerText<'_>> {
    let mut cursor = Cursor::new(frame);
    cursor.expect(br#"{"time":"#)?;
    cursor.digits()?;
    cursor.expect(br#","time_ms":"#)?;
    cursor.digits()?;
    cursor.expect(br#","channel":"spot.book_ticker","event":"update","result":{"t":"#)?;
    let ts_ms = cursor.digits()?;
    cursor.expect(br#","u":"#)?;
    let update_id = cursor.digits()?;
    cursor.expect(br#","s":""#)?;
    let symbol = cursor.plain_string()?;
    cursor.expect(br#","b":""#)?;
    let bid = cursor.plain_string()?;
    cursor.expect(br#","B":""#)?;
    let bid_qty = cursor.plain_string()?;
    cursor.expect(br#","a":""#)?;
    let ask = cursor.plain_string()?;
    cursor.expect(br#","A":""#)?;
    let ask_qty = cursor.plain_string()?;
    cursor.expect(b"}}")?;
    cursor.at_end().then_some(BookTickerText {
        quote: QuoteText {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        ts_ms,
        update_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATE: &[u8] = br#"{"time":1606293275,"time_ms":1606293275123,"channel":"spot.book_ticker","event":"update","result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"19177.79","B":"0.0003341504","a":"19179.38","A":"0.09"}}"#;

    #[test]
    fn scanner_takes_the_documented_update_and_nothing_else() {
        assert_eq!(
            scan_book_ticker(UPDATE),
            Some(BookTickerText {
                quote: QuoteText {
                    symbol: b"BTC_USDT",
                    bid: b"19177.79",
                    bid_qty: b"0.0003341504",
                    ask: b"19179.38",
                    ask_qty: b"0.09",
                },
                ts_ms: 1_606_293_275_123,
                update_id: 48_733_182,
            })
        );
        assert!(scan_book_ticker(&UPDATE[..UPDATE.len() - 1]).is_none());
        let text = std::str::from_utf8(UPDATE).unwrap();
        for (from, to) in [
            (r#""event":"update""#, r#""event":"all""#),
            (r#""u":48733182"#, r#""u":-1"#),
            (r#""A":"0.09"}"#, r#""A":"0.09","x":1}"#),
            (r#"{"time""#, r#"{ "time""#),
        ] {
            let variant = text.replacen(from, to, 1);
            assert_ne!(variant, text, "{from}");
            assert!(scan_book_ticker(variant.as_bytes()).is_none(), "{variant}");
        }
    }
}
