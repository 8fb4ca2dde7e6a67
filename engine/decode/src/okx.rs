//! OKX v5 public: `bbo-tbt`, `books5` and `tickers` (best bid/ask) and `trades`; `event` replies (subscribe,
//! error, the 64008 notice before a forced close) and the plain-text `pong` are control events.
//!
//! Prices, sizes and times are read as strings or JSON numbers alike (live frames send either).
//! An empty book side (`[]` in `bbo-tbt`/`books5`, `""` in `tickers`) withdraws the quote; the
//! rest of the frame, `ts` included, must still be well-formed.

use super::check::{check_record_count, is_plain_word, side_from_word};
use super::json::{
    Context, EmptySide, JsonDecoder, JsonVenue, TopOfBook, TradeFields, book_snapshots, flat_side,
};
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
