//! OKX v5 public: `bbo-tbt`, `books5` and `tickers` (best bid/ask) and `trades`; `event` replies (subscribe,
//! error, the 64008 notice before a forced close) and the plain-text `pong` are control events.
//!
//! Prices, sizes and times are read as strings or JSON numbers alike (live frames send either).
//! An empty book side (`[]` in `bbo-tbt`/`books5`, `""` in `tickers`) withdraws the quote; the
//! rest of the frame, `ts` included, must still be well-formed.
//! A hand-written scanner takes the exact `bbo-tbt` push shape (one book of one level a side);
//! anything else (or anything odd in it) falls back to the generic simd-json path.

use super::check::{check_record_count, is_plain_word, side_from_word};
use super::json::{
    Context, EmptySide, JsonDecoder, JsonVenue, TopOfBook, TradeFields, book_snapshots, flat_side,
};
use super::number::parse_ms_as_ns;
use super::scan::{Cursor, QuoteText, fast_quote};
use super::tape::Json;
use super::{ControlEvent, DecodeError, DecodeErrorKind, FrameOutcome};
use tickflow_core::venue::Venue;

/// OKX's notice code announcing that the connection will be closed for a service upgrade.
const NOTICE_SERVICE_UPGRADE: i64 = 64008;

/// The OKX protocol (see [`JsonVenue`]).
pub struct Okx;

/// OKX's decoder.
pub type OkxDecoder = JsonDecoder<Okx>;

impl JsonVenue for Okx {
    const VENUE: Venue = Venue::Okx;

    fn plain_control(frame: &[u8]) -> Option<ControlEvent> {
        is_plain_word(frame, b"pong").then_some(ControlEvent::Pong)
    }

    #[inline]
    fn fast_path(frame: &[u8], cx: &mut Context<'_>) -> Option<Result<FrameOutcome, DecodeError>> {
        let fields = scan_bbo_tbt(frame)?;
        let ts_exchange_ns = parse_ms_as_ns(fields.ts_ms, "data[].ts").ok()?;
        fast_quote(fields.quote, Some(ts_exchange_ns), Some(fields.seq_id), cx)
    }

    fn decode_json(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
        if let Some(event) = root.get("event") {
            let code = root
                .get("code")
                .and_then(|code| code.i64("code").ok())
                .unwrap_or(0);
            let control = match event.str("event")? {
                "subscribe" | "unsubscribe" | "login" | "channel-conn-count" => {
                    ControlEvent::SubscribeAck
                }
                "notice" if code == NOTICE_SERVICE_UPGRADE => ControlEvent::ShutdownNotice,
                "error" | "notice" | "channel-conn-count-error" => {
                    ControlEvent::ErrorReply { code }
                }
                _ => return Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "event")),
            };
            return Ok(FrameOutcome::Control(control));
        }
        let arg = root.field("arg", "arg")?;
        let channel = arg.field("channel", "arg.channel")?.str("arg.channel")?;
        let symbol = arg.field("instId", "arg.instId")?.str("arg.instId")?;
        let data = root.field("data", "data")?.array("data")?;
        match channel {
            // Each push of these is a whole top-of-book snapshot, best level first.
            "bbo-tbt" | "books5" => {
                let symbol_id = cx.resolve(symbol)?;
                book_snapshots(data, symbol_id, "seqId", "data[].seqId", cx)
            }
            "tickers" => {
                let symbol_id = cx.resolve(symbol)?;
                for ticker in data {
                    // Prices come as strings or as JSON numbers; "" is an empty side.
                    let bid = flat_side(
                        ticker.field("bidPx", "data[].bidPx")?,
                        ticker.get("bidSz"),
                        EmptySide::Blank,
                        "data[].bidPx",
                        "data[].bidSz",
                    )?;
                    let ask = flat_side(
                        ticker.field("askPx", "data[].askPx")?,
                        ticker.get("askSz"),
                        EmptySide::Blank,
                        "data[].askPx",
                        "data[].askSz",
                    )?;
                    let ts_exchange_ns =
                        Some(ticker.field("ts", "data[].ts")?.ms_as_ns("data[].ts")?);
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
            "trades" | "trades-all" => {
                check_record_count(data.len(), &cx.limits)?;
                for trade in data {
                    let trade_symbol = match trade.get("instId") {
                        Some(inst) => inst.str("data[].instId")?,
                        None => symbol,
                    };
                    let symbol_id = cx.resolve(trade_symbol)?;
                    let mut digits = [0u8; 20];
                    let trade_id = trade
                        .field("tradeId", "data[].tradeId")?
                        .trade_id(&mut digits, "data[].tradeId")?;
                    cx.trade(TradeFields {
                        symbol_id,
                        price: trade.field("px", "data[].px")?.f64("data[].px")?,
                        qty: trade.field("sz", "data[].sz")?.f64("data[].sz")?,
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

/// The byte fields of a `bbo-tbt` push found by [`scan_bbo_tbt`].
#[derive(Debug, PartialEq)]
pub(crate) struct BboTbtText<'a> {
    pub(crate) quote: QuoteText<'a>,
    pub(crate) ts_ms: &'a [u8],
    pub(crate) seq_id: u64,
}

/// Matches exactly `{"arg":{"channel":"bbo-tbt","instId":"<sym>"},"data":[{"asks":[["<px>",
/// "<sz>","<s>","<s>"]],"bids":[[…]],"ts":"<ms>","seqId":<digits>}]}` (no whitespace, no
/// escapes, nothing after), the shape OKX documents and sends. Any deviation returns `None`.
#[inline]
pub(crate) fn scan_bbo_tbt(frame: &[u8]) -> Option<BboTbtText<'_>> {
    let mut cursor = Cursor::new(frame);
    cursor.expect(br#"{"arg":{"channel":"bbo-tbt","instId":""#)?;
    let symbol = cursor.plain_string()?;
    cursor.expect(br#"},"data":[{"asks":[[""#)?;
    let (ask, ask_qty) = level_rest(&mut cursor)?;
    cursor.expect(br#","bids":[[""#)?;
    let (bid, bid_qty) = level_rest(&mut cursor)?;
    cursor.expect(br#","ts":""#)?;
    let ts_ms = cursor.plain_string()?;
    cursor.expect(br#","seqId":"#)?;
    let seq_id = cursor.digits()?;
    cursor.expect(b"}]}")?;
    cursor.at_end().then_some(BboTbtText {
        quote: QuoteText {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        ts_ms,
        seq_id,
    })
}

/// The rest of a one-level side after its opening `[["`: price, size and the two trailing
/// strings (deprecated, order count), then `]]`.
#[inline]
fn level_rest<'a>(cursor: &mut Cursor<'a>) -> Option<(&'a [u8], &'a [u8])> {
    let price = cursor.plain_string()?;
    cursor.expect(b",\"")?;
    let size = cursor.plain_string()?;
    cursor.expect(b",\"")?;
    cursor.plain_string()?;
    cursor.expect(b",\"")?;
    cursor.plain_string()?;
    cursor.expect(b"]]")?;
    Some((price, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &[u8] = br#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["8476.98","415","0","13"]],"bids":[["8476.97","256","0","12"]],"ts":"1597026383085","seqId":123456}]}"#;

    #[test]
    fn scanner_takes_the_documented_push() {
        assert_eq!(
            scan_bbo_tbt(PUSH),
            Some(BboTbtText {
                quote: QuoteText {
                    symbol: b"BTC-USDT",
                    bid: b"8476.97",
                    bid_qty: b"256",
                    ask: b"8476.98",
                    ask_qty: b"415",
                },
                ts_ms: b"1597026383085",
                seq_id: 123_456,
            })
        );
    }

    #[test]
    fn scanner_leaves_every_other_shape_to_the_generic_path() {
        let text = std::str::from_utf8(PUSH).expect("ASCII");
        let variants = [
            text.replace("bbo-tbt", "books5"),
            text.replace(r#"[["8476.98","415","0","13"]]"#, "[]"),
            text.replace(
                r#"[["8476.98","415","0","13"]]"#,
                r#"[["8476.98","415","0","13"],["8477","1","0","1"]]"#,
            ),
            text.replace(r#""8476.98""#, "8476.98"),
            text.replace(r#""ts":"1597026383085""#, r#""ts":1597026383085"#),
            text.replace("123456", "0123456"),
            text.replace("123456", "18446744073709551616"),
            text.replace("BTC-USDT", r#"BTC\u002dUSDT"#),
            text.replace(r#""data""#, r#" "data""#),
            format!("{text} "),
            text.replace("}]}", r#"}],"x":1}"#),
            text[..text.len() - 1].to_string(),
        ];
        for variant in &variants {
            assert_eq!(scan_bbo_tbt(variant.as_bytes()), None, "{variant}");
        }
    }
}
