//! Bitget public spot, both sockets, told apart by the frame's `arg`: v2 (`channel`/`instId`:
//! `books1` best bid/ask and `trade`) and v3, the unified account's socket (`topic`/`symbol`:
//! `books1`, `ticker` and `publicTrade`). `event` replies and the plain-text `pong` are control
//! events. v2's trade `snapshot` pushed right after subscribing repeats recent prints, so it is
//! reported as [`ControlEvent::Snapshot`], never as new trades; v3 documents every `publicTrade`
//! push as new fills (its only example is a `snapshot`), so each of them is trades.
//!
//! Hand-written scanners take the exact `books1` push shapes of both sockets (one level a side);
//! anything else (or anything odd in it) falls back to the generic simd-json path.

use super::check::{check_record_count, is_plain_word, side_from_word};
use super::json::{
    BookSide, Context, JsonDecoder, JsonVenue, TopOfBook, TradeFields, best_level, book_snapshots,
};
use super::number::parse_ms_as_ns;
use super::scan::{Cursor, QuoteText, fast_quote};
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

    #[inline]
    fn fast_path(frame: &[u8], cx: &mut Context<'_>) -> Option<Result<FrameOutcome, DecodeError>> {
        let fields = scan_books1_v2(frame).or_else(|| scan_books1_v3(frame))?;
        let ts_exchange_ns = parse_ms_as_ns(fields.ts_ms, "data[].ts").ok()?;
        fast_quote(fields.quote, Some(ts_exchange_ns), fields.seq, cx)
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
        // v3 names the stream `topic`; v2 names it `channel`.
        if let Some(topic) = arg.get("topic") {
            return decode_v3(root, arg, topic.str("arg.topic")?, cx);
        }
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

/// A v3 (unified account) push: `arg.topic` and `arg.symbol`.
fn decode_v3(
    root: Json<'_, '_>,
    arg: Json<'_, '_>,
    topic: &str,
    cx: &mut Context<'_>,
) -> Result<FrameOutcome, DecodeError> {
    let symbol = arg.field("symbol", "arg.symbol")?.str("arg.symbol")?;
    let data = root.field("data", "data")?.array("data")?;
    match topic {
        // Every push is a whole top-of-book snapshot: `a`/`b` level arrays, best first; `seq`
        // is a JSON number wider than 53 bits, read as an integer.
        "books1" | "books5" => {
            let symbol_id = cx.resolve(symbol)?;
            for book in data {
                let bid = best_level(book.field("b", "data[].b")?, "data[].b")?;
                let ask = best_level(book.field("a", "data[].a")?, "data[].a")?;
                let seq = match book.get("seq") {
                    Some(seq) => Some(seq.u64("data[].seq")?),
                    None => None,
                };
                let ts_exchange_ns = Some(book.field("ts", "data[].ts")?.ms_as_ns("data[].ts")?);
                cx.top_of_book(TopOfBook {
                    symbol_id,
                    bid,
                    ask,
                    ts_exchange_ns,
                    seq,
                })?;
            }
            cx.records()
        }
        // Best bid/ask among the 24 h figures; only the push itself carries a time.
        "ticker" => {
            let symbol_id = cx.resolve(symbol)?;
            let ts_exchange_ns = Some(root.field("ts", "ts")?.ms_as_ns("ts")?);
            for ticker in data {
                let bid = ticker_side(
                    ticker,
                    ["bid1Price", "bid1Size"],
                    ["data[].bid1Price", "data[].bid1Size"],
                )?;
                let ask = ticker_side(
                    ticker,
                    ["ask1Price", "ask1Size"],
                    ["data[].ask1Price", "data[].ask1Size"],
                )?;
                cx.top_of_book(TopOfBook {
                    symbol_id,
                    bid,
                    ask,
                    ts_exchange_ns,
                    seq: None,
                })?;
            }
            cx.records()
        }
        "publicTrade" => {
            let symbol_id = cx.resolve(symbol)?;
            check_record_count(data.len(), &cx.limits)?;
            for trade in data {
                let mut digits = [0u8; 20];
                let trade_id = trade
                    .field("i", "data[].i")?
                    .trade_id(&mut digits, "data[].i")?;
                cx.trade(TradeFields {
                    symbol_id,
                    price: trade.field("p", "data[].p")?.f64("data[].p")?,
                    qty: trade.field("v", "data[].v")?.f64("data[].v")?,
                    side: side_from_word(
                        trade.field("S", "data[].S")?.str("data[].S")?,
                        "data[].S",
                    )?,
                    trade_id,
                    ts_exchange_ns: Some(trade.field("T", "data[].T")?.ms_as_ns("data[].T")?),
                })?;
            }
            cx.records()
        }
        _ => Err(DecodeError::new(
            DecodeErrorKind::UnknownMessage,
            "arg.topic",
        )),
    }
}

/// One side of a v3 ticker: `None` when its price is blank or zero (no level), else the level
/// with its size required.
#[inline]
fn ticker_side(
    ticker: Json<'_, '_>,
    [price_key, size_key]: [&str; 2],
    [price_detail, size_detail]: [&'static str; 2],
) -> Result<BookSide, DecodeError> {
    let price = ticker.field(price_key, price_detail)?;
    if price.as_str() == Some("") {
        return Ok(None);
    }
    let price = price.f64(price_detail)?;
    if price == 0.0 {
        return Ok(None);
    }
    let size = ticker.field(size_key, size_detail)?.f64(size_detail)?;
    Ok(Some((price, size)))
}

/// The byte fields of a `books1` push found by [`scan_books1_v2`] or [`scan_books1_v3`].
#[derive(Debug, PartialEq)]
pub(crate) struct Books1Text<'a> {
    pub(crate) quote: QuoteText<'a>,
    pub(crate) ts_ms: &'a [u8],
    pub(crate) seq: Option<u64>,
}

/// Matches exactly the v2 push `{"action":"<s>","arg":{"instType":"<s>","channel":"books1",
/// "instId":"<sym>"},"data":[{"asks":[["<px>","<sz>"]],"bids":[["<px>","<sz>"]],"checksum":
/// <integer>,"ts":"<ms>"}],"ts":<digits>}` (no whitespace, no escapes, nothing after), the shape
/// Bitget documents and sends. Any deviation returns `None`.
#[inline]
pub(crate) fn scan_books1_v2(frame: &[u8]) -> Option<Books1Text<'_>> {
    let mut cursor = Cursor::new(frame);
    cursor.expect(br#"{"action":""#)?;
    cursor.plain_string()?;
    cursor.expect(br#","arg":{"instType":""#)?;
    cursor.plain_string()?;
    cursor.expect(br#","channel":"books1","instId":""#)?;
    let symbol = cursor.plain_string()?;
    cursor.expect(br#"},"data":[{"asks":[[""#)?;
    let (ask, ask_qty) = cursor.level_pair()?;
    cursor.expect(br#"],"bids":[[""#)?;
    let (bid, bid_qty) = cursor.level_pair()?;
    cursor.expect(br#"],"checksum":"#)?;
    cursor.signed_digits()?;
    cursor.expect(br#","ts":""#)?;
    let ts_ms = cursor.plain_string()?;
    cursor.expect(br#"}],"ts":"#)?;
    cursor.digits()?;
    cursor.expect(b"}")?;
    cursor.at_end().then_some(Books1Text {
        quote: QuoteText {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        ts_ms,
        seq: None,
    })
}

/// Matches exactly the v3 push `{"data":[{"a":[["<px>","<sz>"]],"b":[["<px>","<sz>"]],
/// "checksum":<integer>,"pseq":<digits>,"seq":<digits>,"ts":"<ms>"}],"arg":{"instType":"<s>",
/// "symbol":"<sym>","topic":"books1"},"action":"<s>","ts":<digits>}` (no whitespace, no escapes,
/// nothing after), the shape Bitget documents. Any deviation returns `None`.
#[inline]
pub(crate) fn scan_books1_v3(frame: &[u8]) -> Option<Books1Text<'_>> {
    let mut cursor = Cursor::new(frame);
    cursor.expect(br#"{"data":[{"a":[[""#)?;
    let (ask, ask_qty) = cursor.level_pair()?;
    cursor.expect(br#"],"b":[[""#)?;
    let (bid, bid_qty) = cursor.level_pair()?;
    cursor.expect(br#"],"checksum":"#)?;
    cursor.signed_digits()?;
    cursor.expect(br#","pseq":"#)?;
    cursor.digits()?;
    cursor.expect(br#","seq":"#)?;
    let seq = cursor.digits()?;
    cursor.expect(br#","ts":""#)?;
    let ts_ms = cursor.plain_string()?;
    cursor.expect(br#"}],"arg":{"instType":""#)?;
    cursor.plain_string()?;
    cursor.expect(br#","symbol":""#)?;
    let symbol = cursor.plain_string()?;
    cursor.expect(br#","topic":"books1"},"action":""#)?;
    cursor.plain_string()?;
    cursor.expect(br#","ts":"#)?;
    cursor.digits()?;
    cursor.expect(b"}")?;
    cursor.at_end().then_some(Books1Text {
        quote: QuoteText {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        ts_ms,
        seq: Some(seq),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &[u8] = br#"{"action":"snapshot","arg":{"instType":"SPOT","channel":"books1","instId":"METISUSDT"},"data":[{"asks":[["44.90","0.6927"]],"bids":[["44.82","3.5344"]],"checksum":0,"ts":"1730332859988"}],"ts":1730332859989}"#;
    const V3: &[u8] = br#"{"data":[{"a":[["99756.7","23.9774"]],"b":[["99756.6","0.0128"]],"checksum":0,"pseq":0,"seq":1304314508780744705,"ts":"1746698732562"}],"arg":{"instType":"usdt-futures","symbol":"BTCUSDT","topic":"books1"},"action":"snapshot","ts":1746698732563}"#;

    #[test]
    fn scanners_take_the_documented_pushes_and_nothing_else() {
        assert_eq!(
            scan_books1_v2(V2),
            Some(Books1Text {
                quote: QuoteText {
                    symbol: b"METISUSDT",
                    bid: b"44.82",
                    bid_qty: b"3.5344",
                    ask: b"44.90",
                    ask_qty: b"0.6927",
                },
                ts_ms: b"1730332859988",
                seq: None,
            })
        );
        assert_eq!(
            scan_books1_v3(V3),
            Some(Books1Text {
                quote: QuoteText {
                    symbol: b"BTCUSDT",
                    bid: b"99756.6",
                    bid_qty: b"0.0128",
                    ask: b"99756.7",
                    ask_qty: b"23.9774",
                },
                ts_ms: b"1746698732562",
                seq: Some(1_304_314_508_780_744_705),
            })
        );
        assert!(scan_books1_v2(V3).is_none() && scan_books1_v3(V2).is_none());
        let v2 = std::str::from_utf8(V2).unwrap();
        let v3 = std::str::from_utf8(V3).unwrap();
        for (text, from, to) in [
            (v2, r#""channel":"books1""#, r#""channel":"books5""#),
            (v2, r#""asks":[["44.90","0.6927"]]"#, r#""asks":[]"#),
            (v2, r#""checksum":0"#, r#""checksum":-"#),
            (v2, r#""ts":"1730332859988""#, r#""ts":1730332859988"#),
            (
                v3,
                r#""seq":1304314508780744705"#,
                r#""seq":99999999999999999999"#,
            ),
            (v3, r#""topic":"books1""#, r#""topic":"ticker""#),
        ] {
            let variant = text.replacen(from, to, 1);
            assert_ne!(variant, text, "{from}");
            assert!(
                scan_books1_v2(variant.as_bytes()).is_none()
                    && scan_books1_v3(variant.as_bytes()).is_none(),
                "{variant}"
            );
        }
        // A negative checksum is a JSON integer like any other.
        let negative = v2.replacen(r#""checksum":0"#, r#""checksum":-1823476402"#, 1);
        assert!(scan_books1_v2(negative.as_bytes()).is_some());
    }
}
