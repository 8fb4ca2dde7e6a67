//! MEXC spot v3: data frames are binary protobuf (`PushDataV3ApiWrapper` with an aggregated book
//! ticker or aggregated deals), decoded with prost; acks, pongs and errors are JSON text frames.
//!
//! The quote's exchange time is the wrapper's `createTime`, else its `sendTime`; its sequence is the
//! ticker's `version` when present. An empty price string means that side of the book is empty.

use std::sync::Arc;

use prost::Message;

use super::common::{
    Context, Json, JsonCore, JsonVenue, QuoteFields, TradeFields, check_record_count, check_size,
    ms_to_ns, parse_f64, parse_u64, with_rollback,
};
use super::{
    ControlEvent, DecodeError, DecodeErrorKind, DecodeLimits, Decoder, FrameEncoding, FrameOutcome,
    RecordBatch,
};
use crate::record::TimestampNs;
use crate::record::records::Side;
use crate::registry::SymbolRegistry;
use crate::venue::Venue;

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
            core: JsonCore::new(registry, limits),
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
                check_size(frame, &self.core.limits)?;
                self.core.symbols.clear_unknown();
                let push = proto::PushDataV3ApiWrapper::decode(&frame[..]).map_err(|_| {
                    DecodeError::new(
                        DecodeErrorKind::MalformedProtobuf,
                        "not a PushDataV3ApiWrapper",
                    )
                })?;
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

fn decode_push(
    push: &proto::PushDataV3ApiWrapper,
    cx: &mut Context<'_>,
) -> Result<FrameOutcome, DecodeError> {
    // The symbol is the wrapper's `symbol`, else the channel's last `@` part.
    let symbol = if push.symbol.is_empty() {
        push.channel.rsplit('@').next().unwrap_or("")
    } else {
        push.symbol.as_str()
    };
    let millis = |value: i64, detail| {
        u64::try_from(value)
            .map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail))
            .and_then(|ms| ms_to_ns(ms, detail))
    };
    match &push.body {
        Some(proto::Body::PublicAggreBookTicker(ticker)) => {
            let symbol_id = cx.resolve(symbol)?;
            if ticker.bid_price.is_empty() || ticker.ask_price.is_empty() {
                return cx.records();
            }
            let ts_exchange_ns = match (push.create_time, push.send_time) {
                (0, 0) => None,
                (0, sent) => Some(millis(sent, "sendTime")?),
                (created, _) => Some(millis(created, "createTime")?),
            };
            let seq = match ticker.version.as_str() {
                "" => None,
                version => Some(parse_u64(version.as_bytes(), "version")?),
            };
            cx.quote(QuoteFields {
                symbol_id,
                bid: parse_f64(ticker.bid_price.as_bytes(), "bidPrice")?,
                bid_qty: parse_f64(ticker.bid_quantity.as_bytes(), "bidQuantity")?,
                ask: parse_f64(ticker.ask_price.as_bytes(), "askPrice")?,
                ask_qty: parse_f64(ticker.ask_quantity.as_bytes(), "askQuantity")?,
                ts_exchange_ns,
                seq,
            })?;
            cx.records()
        }
        Some(proto::Body::PublicAggreDeals(deals)) => {
            let symbol_id = cx.resolve(symbol)?;
            check_record_count(deals.deals.len(), &cx.limits)?;
            for deal in &deals.deals {
                let side = match deal.trade_type {
                    1 => Side::Buy,
                    2 => Side::Sell,
                    _ => return Err(DecodeError::new(DecodeErrorKind::WrongType, "tradeType")),
                };
                cx.trade(TradeFields {
                    symbol_id,
                    price: parse_f64(deal.price.as_bytes(), "price")?,
                    qty: parse_f64(deal.quantity.as_bytes(), "quantity")?,
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
            } else {
                ControlEvent::SubscribeAck
            },
        ))
    }
}
