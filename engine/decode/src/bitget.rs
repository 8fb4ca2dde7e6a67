//! Bitget public spot, both sockets, told apart by the frame's `arg`: v2 (`channel`/`instId`:
//! `books1` best bid/ask and `trade`) and v3, the unified account's socket (`topic`/`symbol`:
//! `books1`, `ticker` and `publicTrade`). `event` replies and the plain-text `pong` are control
//! events. v2's trade `snapshot` pushed right after subscribing repeats recent prints, so it is
//! reported as [`ControlEvent::Snapshot`], never as new trades; v3 documents every `publicTrade`
//! push as new fills (its only example is a `snapshot`), so each of them is trades.

use super::check::{check_record_count, is_plain_word, side_from_word};
use super::json::{
    BookSide, Context, JsonDecoder, JsonVenue, TopOfBook, TradeFields, best_level, book_snapshots,
};
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
