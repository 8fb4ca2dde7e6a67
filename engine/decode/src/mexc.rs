//! MEXC spot v3: data frames are binary protobuf (`PushDataV3ApiWrapper` with an aggregated book
//! ticker or aggregated deals); acks, pongs and errors are JSON text frames.
//!
//! The message types are prost structs ([`proto`]: what simulated venues encode and what tests
//! check against), but the hot path walks the wire format with prost's key and varint primitives
//! and borrows every string from the frame: decoding into the owned structs would allocate each
//! string of every push.
//!
//! The quote's exchange time is the wrapper's `createTime`, else its `sendTime`; its sequence is the
//! ticker's `version` when present. An empty price string means that side of the book is empty: the
//! quote is withdrawn.
//!
//! A JSON reply with `code` 0 is an ack, unless its message says "Not Subscribed" or "Blocked":
//! MEXC refuses subscriptions that way, and those are error replies.

use std::sync::Arc;

use prost::encoding::WireType;

use super::check::check_size;
use super::json::{BookSide, Context, JsonCore, JsonVenue, TopOfBook, TradeFields, with_rollback};
use super::number::{ms_to_ns, parse_f64_str, parse_u64};
use super::tape::Json;
use super::{
    ControlEvent, DecodeError, DecodeErrorKind, DecodeLimits, Decoder, FrameEncoding, FrameOutcome,
    RecordBatch,
};
use tickflow_core::record::TimestampNs;
use tickflow_core::records::Side;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;

/// The MEXC push messages, written from the field numbers MEXC publishes (public so simulated
/// venues and tests can encode real frames).
pub mod proto {
    /// The envelope of every binary push.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushDataV3ApiWrapper {
        #[prost(string, tag = "1")]
        pub channel: String,
        #[prost(string, tag = "3")]
        pub symbol: String,
        #[prost(string, tag = "4")]
        pub symbol_id: String,
        #[prost(int64, tag = "5")]
        pub create_time: i64,
        #[prost(int64, tag = "6")]
        pub send_time: i64,
        #[prost(oneof = "Body", tags = "314, 315")]
        pub body: Option<Body>,
    }

    /// The wrapper's payload (the two kinds tickflow reads).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        #[prost(message, tag = "314")]
        PublicAggreDeals(PublicAggreDealsV3Api),
        #[prost(message, tag = "315")]
        PublicAggreBookTicker(PublicAggreBookTickerV3Api),
    }

    /// Best bid and ask; prices and quantities are decimal strings, empty for an empty side.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PublicAggreBookTickerV3Api {
        #[prost(string, tag = "1")]
        pub bid_price: String,
        #[prost(string, tag = "2")]
        pub bid_quantity: String,
        #[prost(string, tag = "3")]
        pub ask_price: String,
        #[prost(string, tag = "4")]
        pub ask_quantity: String,
        #[prost(string, tag = "5")]
        pub version: String,
        #[prost(int64, tag = "6")]
        pub last_order_create_time: i64,
    }

    /// Aggregated trades.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PublicAggreDealsV3Api {
        #[prost(message, repeated, tag = "1")]
        pub deals: Vec<PublicAggreDealsV3ApiItem>,
        #[prost(string, tag = "2")]
        pub event_type: String,
    }

    /// One trade: `trade_type` 1 = taker bought, 2 = taker sold; `time` in ms.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PublicAggreDealsV3ApiItem {
        #[prost(string, tag = "1")]
        pub price: String,
        #[prost(string, tag = "2")]
        pub quantity: String,
        #[prost(int32, tag = "3")]
        pub trade_type: i32,
        #[prost(int64, tag = "4")]
        pub time: i64,
        #[prost(string, tag = "5")]
        pub trade_id: String,
    }
}

/// The MEXC JSON text frames (control only).
pub struct MexcText;

/// MEXC's decoder: protobuf binary frames, JSON text frames.
pub struct MexcDecoder {
    core: JsonCore,
}

impl MexcDecoder {
    pub fn new(registry: Arc<SymbolRegistry>, limits: DecodeLimits) -> MexcDecoder {
        MexcDecoder {
            core: JsonCore::new(Venue::Mexc, registry, limits),
        }
    }
}

impl Decoder for MexcDecoder {
    fn venue(&self) -> Venue {
        Venue::Mexc
    }

    fn decode(
        &mut self,
        frame: &mut [u8],
        encoding: FrameEncoding,
        ts_recv_ns: TimestampNs,
        out: &mut RecordBatch,
    ) -> Result<FrameOutcome, DecodeError> {
        // A push never starts with `{` (0x7b would be field 15 as a deprecated group), so a binary
        // frame that does is a JSON reply that a capture stored without its frame type.
        let is_json = encoding == FrameEncoding::Text || frame.first() == Some(&b'{');
        match is_json {
            true => self.core.decode::<MexcText>(frame, ts_recv_ns, out),
            false => {
                // First: `unknown_symbol` speaks of this frame, whatever refuses it.
                self.core.symbols.clear_unknown();
                check_size(frame, &self.core.limits)?;
                let push = PushView::parse(frame)?;
                let limits = self.core.limits;
                let symbols = &mut self.core.symbols;
                with_rollback(out, &limits, |out| {
                    let mut cx = Context::new(Venue::Mexc, symbols, limits, ts_recv_ns, out);
                    decode_push(&push, &mut cx)
                })
            }
        }
    }

    fn unknown_symbol(&self) -> Option<&[u8]> {
        self.core.symbols.last_unknown()
    }
}

fn malformed(detail: &'static str) -> DecodeError {
    DecodeError::new(DecodeErrorKind::MalformedProtobuf, detail)
}

/// One field of a protobuf message, its payload borrowed from the frame.
#[derive(Clone, Copy, Debug, PartialEq)]
enum WireValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Walks the fields of one protobuf message.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, WireValue<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    fn new(message: &'a [u8]) -> Fields<'a> {
        Fields { rest: message }
    }

    fn field(&mut self) -> Result<(u32, WireValue<'a>), DecodeError> {
        let (tag, wire_type) =
            prost::encoding::decode_key(&mut self.rest).map_err(|_| malformed("bad field key"))?;
        let value = match wire_type {
            WireType::Varint => WireValue::Varint(
                prost::encoding::decode_varint(&mut self.rest)
                    .map_err(|_| malformed("bad varint"))?,
            ),
            WireType::LengthDelimited => {
                let len = prost::encoding::decode_varint(&mut self.rest)
                    .map_err(|_| malformed("bad length"))?;
                let len = usize::try_from(len).map_err(|_| malformed("length overflows"))?;
                if len > self.rest.len() {
                    return Err(malformed("length past the end of the frame"));
                }
                let (bytes, rest) = self.rest.split_at(len);
                self.rest = rest;
                WireValue::Bytes(bytes)
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let width = if wire_type == WireType::SixtyFourBit {
                    8
                } else {
                    4
                };
                if width > self.rest.len() {
                    return Err(malformed("fixed field past the end of the frame"));
                }
                self.rest = &self.rest[width..];
                WireValue::Fixed
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(malformed("groups are not used by MEXC"));
            }
        };
        Ok((tag, value))
    }
}

fn text<'a>(value: WireValue<'a>, detail: &'static str) -> Result<&'a str, DecodeError> {
    match value {
        WireValue::Bytes(bytes) => std::str::from_utf8(bytes).map_err(|_| malformed(detail)),
        _ => Err(malformed(detail)),
    }
}

fn varint(value: WireValue<'_>, detail: &'static str) -> Result<u64, DecodeError> {
    match value {
        WireValue::Varint(value) => Ok(value),
        _ => Err(malformed(detail)),
    }
}

/// The book ticker of a push, borrowed from the frame.
#[derive(Debug, Default, PartialEq)]
struct BookTickerView<'a> {
    bid_price: &'a str,
    bid_quantity: &'a str,
    ask_price: &'a str,
    ask_quantity: &'a str,
    version: &'a str,
}

/// The body of a push.
#[derive(Debug, PartialEq)]
enum BodyView<'a> {
    BookTicker(BookTickerView<'a>),
    /// The `PublicAggreDealsV3Api` message, walked when records are made.
    Deals(&'a [u8]),
}

/// A `PushDataV3ApiWrapper`, borrowed from the frame.
#[derive(Debug, PartialEq)]
struct PushView<'a> {
    channel: &'a str,
    symbol: &'a str,
    create_time: i64,
    send_time: i64,
    body: Option<BodyView<'a>>,
}

impl<'a> PushView<'a> {
    fn parse(frame: &'a [u8]) -> Result<PushView<'a>, DecodeError> {
        let mut push = PushView {
            channel: "",
            symbol: "",
            create_time: 0,
            send_time: 0,
            body: None,
        };
        for field in Fields::new(frame) {
            match field? {
                (1, value) => push.channel = text(value, "channel")?,
                (3, value) => push.symbol = text(value, "symbol")?,
                (4, value) => {
                    text(value, "symbolId")?;
                }
                // int64 as prost reads it (two's complement, so a negative time stays negative);
                // `decode_push` refuses negative and overflowing times as `BadNumber`.
                (5, value) => push.create_time = varint(value, "createTime")? as i64,
                (6, value) => push.send_time = varint(value, "sendTime")? as i64,
                (314, WireValue::Bytes(deals)) => {
                    // Validate the whole message now: a malformed push is refused before any
                    // record is made, as a prost decode would refuse it.
                    for deals_field in Fields::new(deals) {
                        match deals_field? {
                            (1, WireValue::Bytes(item)) => {
                                DealView::parse(item)?;
                            }
                            (1, _) => return Err(malformed("deals[]")),
                            (2, value) => {
                                text(value, "eventType")?;
                            }
                            _ => {}
                        }
                    }
                    push.body = Some(BodyView::Deals(deals));
                }
                (315, WireValue::Bytes(ticker)) => {
                    let mut view = BookTickerView::default();
                    for ticker_field in Fields::new(ticker) {
                        match ticker_field? {
                            (1, value) => view.bid_price = text(value, "bidPrice")?,
                            (2, value) => view.bid_quantity = text(value, "bidQuantity")?,
                            (3, value) => view.ask_price = text(value, "askPrice")?,
                            (4, value) => view.ask_quantity = text(value, "askQuantity")?,
                            (5, value) => view.version = text(value, "version")?,
                            (6, value) => {
                                varint(value, "lastOrderCreateTime")?;
                            }
                            _ => {}
                        }
                    }
                    push.body = Some(BodyView::BookTicker(view));
                }
                (314 | 315, _) => return Err(malformed("body is not a message")),
                _ => {}
            }
        }
        Ok(push)
    }
}

/// One aggregated deal, borrowed from the frame.
#[derive(Debug, Default, PartialEq)]
struct DealView<'a> {
    price: &'a str,
    quantity: &'a str,
    trade_type: i32,
    time: i64,
    trade_id: &'a str,
}

impl<'a> DealView<'a> {
    fn parse(item: &'a [u8]) -> Result<DealView<'a>, DecodeError> {
        let mut deal = DealView::default();
        for field in Fields::new(item) {
            match field? {
                (1, value) => deal.price = text(value, "price")?,
                (2, value) => deal.quantity = text(value, "quantity")?,
                (3, value) => deal.trade_type = varint(value, "tradeType")? as i32,
                (4, value) => deal.time = varint(value, "time")? as i64,
                (5, value) => deal.trade_id = text(value, "tradeId")?,
                _ => {}
            }
        }
        Ok(deal)
    }
}

fn decode_push(push: &PushView<'_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
    // The symbol is the wrapper's `symbol`, else the channel's last `@` part.
    let symbol = if push.symbol.is_empty() {
        push.channel.rsplit('@').next().unwrap_or("")
    } else {
        push.symbol
    };
    let millis = |value: i64, detail| {
        u64::try_from(value)
            .map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail))
            .and_then(|ms| ms_to_ns(ms, detail))
    };
    match &push.body {
        Some(BodyView::BookTicker(ticker)) => {
            let symbol_id = cx.resolve(symbol)?;
            let ts_exchange_ns = match (push.create_time, push.send_time) {
                (0, 0) => None,
                (0, sent) => Some(millis(sent, "sendTime")?),
                (created, _) => Some(millis(created, "createTime")?),
            };
            let seq = match ticker.version {
                "" => None,
                version => Some(parse_u64(version.as_bytes(), "version")?),
            };
            cx.top_of_book(TopOfBook {
                symbol_id,
                bid: ticker_side(
                    ticker.bid_price,
                    ticker.bid_quantity,
                    "bidPrice",
                    "bidQuantity",
                )?,
                ask: ticker_side(
                    ticker.ask_price,
                    ticker.ask_quantity,
                    "askPrice",
                    "askQuantity",
                )?,
                ts_exchange_ns,
                seq,
            })?;
            cx.records()
        }
        Some(BodyView::Deals(deals)) => {
            let symbol_id = cx.resolve(symbol)?;
            for field in Fields::new(deals) {
                let (1, WireValue::Bytes(item)) = field? else {
                    continue;
                };
                let deal = DealView::parse(item)?;
                let side = match deal.trade_type {
                    1 => Side::Buy,
                    2 => Side::Sell,
                    _ => return Err(DecodeError::new(DecodeErrorKind::WrongType, "tradeType")),
                };
                cx.trade(TradeFields {
                    symbol_id,
                    price: parse_f64_str(deal.price, "price")?,
                    qty: parse_f64_str(deal.quantity, "quantity")?,
                    side,
                    trade_id: deal.trade_id.as_bytes(),
                    ts_exchange_ns: Some(millis(deal.time, "time")?),
                })?;
            }
            cx.records()
        }
        None => Err(DecodeError::new(
            DecodeErrorKind::UnknownMessage,
            "push carries no book ticker or deals",
        )),
    }
}

/// One side of the book ticker: an empty price string is an empty side (the quote is withdrawn),
/// and its quantity, blank too, is not read.
fn ticker_side(
    price: &str,
    quantity: &str,
    price_detail: &'static str,
    quantity_detail: &'static str,
) -> Result<BookSide, DecodeError> {
    if price.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        parse_f64_str(price, price_detail)?,
        parse_f64_str(quantity, quantity_detail)?,
    )))
}

impl JsonVenue for MexcText {
    const VENUE: Venue = Venue::Mexc;

    fn decode_json(root: Json<'_, '_>, _cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
        let code = root.field("code", "code")?.i64("code")?;
        if code != 0 {
            return Ok(FrameOutcome::Control(ControlEvent::ErrorReply { code }));
        }
        let message = root.field("msg", "msg")?.str("msg")?;
        Ok(FrameOutcome::Control(
            if message.eq_ignore_ascii_case("pong") {
                ControlEvent::Pong
            } else if is_refusal(message) {
                // MEXC refuses a subscription with code 0 and says so only in the message.
                ControlEvent::ErrorReply { code }
            } else {
                ControlEvent::SubscribeAck
            },
        ))
    }
}

/// A code-0 reply whose message refuses the subscription ("Not Subscribed successfully! ...
/// Reason: Blocked!").
fn is_refusal(message: &str) -> bool {
    ["not subscribed", "blocked"].iter().any(|word| {
        message
            .as_bytes()
            .windows(word.len())
            .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn deal(price: &str, trade_type: i32) -> proto::PublicAggreDealsV3ApiItem {
        proto::PublicAggreDealsV3ApiItem {
            price: price.to_string(),
            quantity: "0.5".to_string(),
            trade_type,
            time: 1736409765051,
            trade_id: "77".to_string(),
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        let ticker = proto::PushDataV3ApiWrapper {
            channel: "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT".to_string(),
            symbol: "BTCUSDT".to_string(),
            symbol_id: "abc".to_string(),
            create_time: 5,
            send_time: 1736412092433,
            body: Some(proto::Body::PublicAggreBookTicker(
                proto::PublicAggreBookTickerV3Api {
                    bid_price: "93387.28".to_string(),
                    bid_quantity: "3.73485".to_string(),
                    ask_price: "93387.29".to_string(),
                    ask_quantity: "7.669875".to_string(),
                    version: "42".to_string(),
                    last_order_create_time: 9,
                },
            )),
        };
        let deals = proto::PushDataV3ApiWrapper {
            channel: "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT".to_string(),
            symbol: String::new(),
            symbol_id: String::new(),
            create_time: 0,
            send_time: 1736409765052,
            body: Some(proto::Body::PublicAggreDeals(
                proto::PublicAggreDealsV3Api {
                    deals: vec![deal("93220.00", 2), deal("93221.5", 1), deal("1", -1)],
                    event_type: "spot@public.aggre.deals.v3.api.pb@100ms".to_string(),
                },
            )),
        };
        vec![ticker.encode_to_vec(), deals.encode_to_vec()]
    }

    /// The borrowed walk must read exactly what prost's own decode reads.
    fn check_against_prost(frame: &[u8]) {
        let Ok(view) = PushView::parse(frame) else {
            return;
        };
        let Ok(owned) = proto::PushDataV3ApiWrapper::decode(frame) else {
            panic!("walker accepted what prost refuses: {frame:?}");
        };
        assert_eq!(view.channel, owned.channel);
        assert_eq!(view.symbol, owned.symbol);
        assert_eq!(view.create_time, owned.create_time);
        assert_eq!(view.send_time, owned.send_time);
        match (&view.body, &owned.body) {
            (Some(BodyView::BookTicker(view)), Some(proto::Body::PublicAggreBookTicker(owned))) => {
                assert_eq!(view.bid_price, owned.bid_price);
                assert_eq!(view.bid_quantity, owned.bid_quantity);
                assert_eq!(view.ask_price, owned.ask_price);
                assert_eq!(view.ask_quantity, owned.ask_quantity);
                assert_eq!(view.version, owned.version);
            }
            (Some(BodyView::Deals(deals)), Some(proto::Body::PublicAggreDeals(owned))) => {
                let items: Vec<DealView<'_>> = Fields::new(deals)
                    .filter_map(|field| match field.unwrap() {
                        (1, WireValue::Bytes(item)) => Some(DealView::parse(item).unwrap()),
                        _ => None,
                    })
                    .collect();
                assert_eq!(items.len(), owned.deals.len());
                for (view, owned) in items.iter().zip(&owned.deals) {
                    assert_eq!(view.price, owned.price);
                    assert_eq!(view.quantity, owned.quantity);
                    assert_eq!(view.trade_type, owned.trade_type);
                    assert_eq!(view.time, owned.time);
                    assert_eq!(view.trade_id, owned.trade_id);
                }
            }
            (None, None) => {}
            // A frame with both bodies: prost keeps the last oneof member, so does the walker.
            (view, owned) => panic!("bodies differ: {view:?} vs {owned:?}"),
        }
    }

    #[test]
    fn wire_walk_matches_prost_decode() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for frame in samples() {
            check_against_prost(&frame);
            for cut in 0..frame.len() {
                check_against_prost(&frame[..cut]);
            }
            for _ in 0..3000 {
                let mut mutated = frame.clone();
                let at = (next() % mutated.len() as u64) as usize;
                mutated[at] ^= 1 << (next() % 8);
                check_against_prost(&mutated);
            }
        }
    }
}
