//! Binance spot: `bookTicker` (raw and combined-stream form), `trade` and `aggTrade`; subscribe
//! acks, error replies and the `serverShutdown` notice are control events.
//!
//! Spot bookTicker carries no exchange timestamp: such quotes leave `FLAG_HAS_TS_EXCHANGE` clear.
//! An empty side comes as a zero price (`"b":"0.00000000","B":"0.00000000"`) and withdraws the
//! quote (the fast path leaves such frames to the generic path).
//! A hand-written scanner takes the exact raw bookTicker shape; anything else (or anything odd in
//! it) falls back to the generic simd-json path.

use super::json::{Context, EmptySide, JsonDecoder, JsonVenue, TopOfBook, TradeFields, flat_side};
use super::scan::{Cursor, QuoteText, fast_quote};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::records::Side;
use tickflow_core::venue::Venue;

/// The Binance protocol (see [`JsonVenue`]).
pub struct Binance;

/// Binance's decoder.
pub type BinanceDecoder = JsonDecoder<Binance>;

impl JsonVenue for Binance {
    const VENUE: Venue = Venue::Binance;

    #[inline]
    fn fast_path(frame: &[u8], cx: &mut Context<'_>) -> Option<Result<FrameOutcome, DecodeError>> {
        let fields = scan_book_ticker(frame)?;
        fast_quote(fields.quote, None, Some(fields.update_id), cx)
    }

    fn decode_json(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
        // Control frames first: acks (`result` + `id`), error replies, the shutdown notice.
        if let Some(error) = root.get("error") {
            let code = error.get("code").and_then(|code| code.i64("code").ok());
            return Ok(FrameOutcome::Control(ControlEvent::ErrorReply {
                code: code.unwrap_or(0),
            }));
        }
        if root.get("result").is_some() && root.get("id").is_some() {
            return Ok(FrameOutcome::Control(ControlEvent::SubscribeAck));
        }
        if let (Some(code), Some(_)) = (root.get("code"), root.get("msg")) {
            return Ok(FrameOutcome::Control(ControlEvent::ErrorReply {
                code: code.i64("code").unwrap_or(0),
            }));
        }
        if let Some(event) = root.get("e").and_then(Json::as_str) {
            if event == "serverShutdown" {
                return Ok(FrameOutcome::Control(ControlEvent::ShutdownNotice));
            }
        }
        // Data: the combined-stream envelope wraps the raw payload in `data`.
        let payload = match (root.get("stream"), root.get("data")) {
            (Some(_), Some(data)) if data.is_object() => data,
            (Some(_), Some(_)) => {
                return Err(DecodeError::new(DecodeErrorKind::WrongType, "data"));
            }
            _ => root,
        };
        match payload.get("e").map(|event| event.str("e")).transpose()? {
            Some("trade") => decode_trade(payload, "t", cx),
            Some("aggTrade") => decode_trade(payload, "a", cx),
            Some("bookTicker") => decode_quote(payload, cx),
            None if payload.get("u").is_some() => decode_quote(payload, cx),
            Some("serverShutdown") => Ok(FrameOutcome::Control(ControlEvent::ShutdownNotice)),
            _ => Err(DecodeError::new(
                DecodeErrorKind::UnknownMessage,
                "not a bookTicker, trade or aggTrade",
            )),
        }
    }
}

fn decode_quote(payload: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
    let symbol_id = cx.resolve(payload.field("s", "s")?.str("s")?)?;
    // Futures bookTicker has a transaction time `T`; spot has none.
    let ts_exchange_ns = payload
        .get("T")
        .map(|time| time.ms_as_ns("T"))
        .transpose()?;
    // Binance spells an empty side as a zero price (and size): the quote is withdrawn.
    let bid = flat_side(
        payload.field("b", "b")?,
        payload.get("B"),
        EmptySide::Zero,
        "b",
        "B",
    )?;
    let ask = flat_side(
        payload.field("a", "a")?,
        payload.get("A"),
        EmptySide::Zero,
        "a",
        "A",
    )?;
    cx.top_of_book(TopOfBook {
        symbol_id,
        bid,
        ask,
        ts_exchange_ns,
        seq: Some(payload.field("u", "u")?.u64("u")?),
    })?;
    cx.records()
}

fn decode_trade(
    payload: Json<'_, '_>,
    id_key: &'static str,
    cx: &mut Context<'_>,
) -> Result<FrameOutcome, DecodeError> {
    let symbol_id = cx.resolve(payload.field("s", "s")?.str("s")?)?;
    let buyer_is_maker = payload
        .field("m", "m")?
        .as_bool()
        .ok_or(DecodeError::new(DecodeErrorKind::WrongType, "m"))?;
    let mut digits = [0u8; 20];
    let trade_id = payload
        .field(id_key, "trade id")?
        .trade_id(&mut digits, "trade id")?;
    cx.trade(TradeFields {
        symbol_id,
        price: payload.field("p", "p")?.f64("p")?,
        qty: payload.field("q", "q")?.f64("q")?,
        // The buyer was the maker, so the taker sold.
        side: if buyer_is_maker {
            Side::Sell
        } else {
            Side::Buy
        },
        trade_id,
        ts_exchange_ns: Some(payload.field("T", "T")?.ms_as_ns("T")?),
    })?;
    cx.records()
}

/// The byte fields of a raw bookTicker frame found by [`scan_book_ticker`].
#[derive(Debug, PartialEq)]
pub(crate) struct BookTickerText<'a> {
    pub(crate) update_id: u64,
    pub(crate) quote: QuoteText<'a>,
}

/// Matches exactly `{"u":<digits>,"s":"<sym>","b":"<num>","B":"<num>","a":"<num>","A":"<num>"}`
/// (no whitespace, no escapes, nothing after). Any deviation returns `None`.
#[inline]
pub(crate) fn scan_book_ticker(frame: &[u8]) -> Option<BookTickerText<'_>> {
    let mut cursor = Cursor::new(frame);
    cursor.expect(b"{\"u\":")?;
    let update_id = cursor.digits()?;
    cursor.expect(b",\"s\":\"")?;
    let symbol = cursor.plain_string()?;
    cursor.expect(b",\"b\":\"")?;
    let bid = cursor.plain_string()?;
    cursor.expect(b",\"B\":\"")?;
    let bid_qty = cursor.plain_string()?;
    cursor.expect(b",\"a\":\"")?;
    let ask = cursor.plain_string()?;
    cursor.expect(b",\"A\":\"")?;
    let ask_qty = cursor.plain_string()?;
    cursor.expect(b"}")?;
    cursor.at_end().then_some(BookTickerText {
        update_id,
        quote: QuoteText {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_takes_only_the_exact_shape() {
        let frame = br#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#;
        let fields = scan_book_ticker(frame).unwrap();
        assert_eq!(fields.update_id, 400900217);
        assert_eq!(fields.quote.symbol, b"BNBUSDT");
        assert_eq!(fields.quote.ask_qty, b"40.66000000");
        assert!(scan_book_ticker(&frame[..frame.len() - 1]).is_none());
        assert!(
            scan_book_ticker(br#"{"u":1,"s":"B\"X","b":"1","B":"1","a":"1","A":"1"}"#).is_none()
        );
        assert!(
            scan_book_ticker(br#"{"u":1,"s":"BX","b":"1","B":"1","a":"1","A":"1"} "#).is_none()
        );
        // Update ids up to u64::MAX are taken; one past it (or a 20-digit overflow) is not.
        let max = br#"{"u":18446744073709551615,"s":"BX","b":"1","B":"1","a":"1","A":"1"}"#;
        assert_eq!(scan_book_ticker(max).unwrap().update_id, u64::MAX);
        for overflow in [
            &br#"{"u":18446744073709551616,"s":"BX","b":"1","B":"1","a":"1","A":"1"}"#[..],
            br#"{"u":99999999999999999999,"s":"BX","b":"1","B":"1","a":"1","A":"1"}"#,
            br#"{"u":100000000000000000000,"s":"BX","b":"1","B":"1","a":"1","A":"1"}"#,
        ] {
            assert!(scan_book_ticker(overflow).is_none());
        }
        assert!(
            scan_book_ticker(br#"{"u":01,"s":"BX","b":"1","B":"1","a":"1","A":"1"}"#).is_none()
        );
        assert!(scan_book_ticker(br#"{"u":,"s":"BX","b":"1","B":"1","a":"1","A":"1"}"#).is_none());
        assert!(scan_book_ticker(b"").is_none());
    }
}
