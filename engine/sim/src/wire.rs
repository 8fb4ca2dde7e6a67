//! What the simulated venues say on the wire: parsing client requests (subscribe, ping, pong) and
//! writing acks, pongs, notices, server pings and data frames in each venue's format (JSON text,
//! HTX gzip JSON, MEXC protobuf). No I/O: bytes in, bytes out.

use std::fmt::Write as _;

use tickflow_core::venue::Venue;
use tickflow_feed::config::Channel;

/// A frame the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Text(String),
    Binary(Vec<u8>),
}

/// What a client text frame asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// Subscribe to these (venue spelling, channel) topics.
    Subscribe(Vec<(String, Channel)>),
    /// An in-band ping; the reply is in `reply`.
    Ping,
    /// HTX's answer to our in-band ping.
    Pong,
    /// Something the simulator does not understand (ignored, as venues mostly do).
    Unknown,
}

/// MEXC's protobuf push wrapper (the field numbers the fixtures README documents).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushDataV3ApiWrapper {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(string, tag = "3")]
    pub symbol: String,
    #[prost(int64, tag = "6")]
    pub send_time: i64,
    #[prost(oneof = "PushBody", tags = "314, 315")]
    pub body: Option<PushBody>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PushBody {
    #[prost(message, tag = "314")]
    PublicAggreDeals(PublicAggreDealsV3Api),
    #[prost(message, tag = "315")]
    PublicAggreBookTicker(PublicAggreBookTickerV3Api),
}

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
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PublicAggreDealsV3Api {
    #[prost(message, repeated, tag = "1")]
    pub deals: Vec<PublicAggreDealsV3ApiItem>,
    #[prost(string, tag = "2")]
    pub event_type: String,
}

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
}

/// Gzips `json` (HTX sends every frame this way).
pub fn gzip(json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    gzip_into(json.as_bytes(), &mut out);
    out
}

/// Each byte's code in deflate's fixed Huffman table (RFC 1951 3.2.6), bit-reversed for the
/// LSB-first stream, and its length: literals 0–143 take 8 bits (0x30 + byte), 144–255 take 9
/// (0x190 + byte − 144).
const FIXED_LITERALS: [(u16, u8); 256] = {
    let mut table = [(0u16, 0u8); 256];
    let mut byte = 0;
    while byte < 256 {
        let (code, bits) = if byte < 144 {
            (0x30 + byte as u16, 8)
        } else {
            (0x190 + (byte as u16 - 144), 9)
        };
        table[byte] = (code.reverse_bits() >> (16 - bits), bits);
        byte += 1;
    }
    table
};

/// Appends the gzip member of `input` to `out`: header, one final deflate block of fixed
/// Huffman literals, CRC-32, size. Any inflater reads it (the engine's included), and it costs
/// the inflater a Huffman decode per byte like a real HTX frame (which has back-references too,
/// so is smaller and, if anything, cheaper to inflate).
///
/// Written by hand because a compressor library starts every stream by clearing its hash tables:
/// zlib-rs at level 1 spent a 128 KiB memset per ~250-byte frame, about half of the simulators'
/// CPU at the full universe, which they share with the engine they measure. This encoder keeps
/// no state at all.
pub fn gzip_into(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(input.len() * 9 / 8 + 24);
    out.extend_from_slice(&[0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff]);
    // BFINAL = 1, BTYPE = 01 (fixed Huffman), LSB first.
    let mut bit_buffer: u64 = 0b011;
    let mut bit_count: u32 = 3;
    for &byte in input {
        let (code, bits) = FIXED_LITERALS[usize::from(byte)];
        bit_buffer |= u64::from(code) << bit_count;
        bit_count += u32::from(bits);
        if bit_count >= 32 {
            out.extend_from_slice(&(bit_buffer as u32).to_le_bytes());
            bit_buffer >>= 32;
            bit_count -= 32;
        }
    }
    // End of block: symbol 256, seven zero bits; then pad to a byte.
    bit_count += 7;
    while bit_count > 0 {
        out.push(bit_buffer as u8);
        bit_buffer >>= 8;
        bit_count = bit_count.saturating_sub(8);
    }
    let mut crc = flate2::Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
}

fn text_or_gzip(venue: Venue, json: String) -> ServerFrame {
    if venue == Venue::Htx {
        ServerFrame::Binary(gzip(&json))
    } else {
        ServerFrame::Text(json)
    }
}

fn str_field<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(|field| field.as_str())
}

/// Parses one client text frame of `venue`, appending the server's replies to `replies`: an ack,
/// or for topics whose symbol `is_listed` refuses, the venue's error reply (Binance acks any
/// stream and just sends no data). The returned topics include refused ones.
pub fn parse_client_text(
    venue: Venue,
    text: &str,
    now_ms: i64,
    is_listed: &dyn Fn(&str) -> bool,
    replies: &mut Vec<ServerFrame>,
) -> ClientRequest {
    let trimmed = text.trim();
    if trimmed == "ping" && matches!(venue, Venue::Okx | Venue::Bitget) {
        replies.push(ServerFrame::Text("pong".to_owned()));
        return ClientRequest::Ping;
    }
    let Ok(message) = serde_json::from_str::<serde_json::Value>(trimmed) else {
        return ClientRequest::Unknown;
    };
    match venue {
        Venue::Binance => {
            if str_field(&message, "method") != Some("SUBSCRIBE") {
                return ClientRequest::Unknown;
            }
            let id = message
                .get("id")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let topics = message
                .get("params")
                .and_then(|params| params.as_array())
                .map(|params| {
                    params
                        .iter()
                        .filter_map(|param| param.as_str())
                        .filter_map(|param| {
                            let (symbol, stream) = param.split_once('@')?;
                            let channel = match stream {
                                "bookTicker" => Channel::Bbo,
                                "trade" => Channel::Trades,
                                _ => return None,
                            };
                            Some((symbol.to_owned(), channel))
                        })
                        .collect()
                })
                .unwrap_or_default();
            replies.push(ServerFrame::Text(format!(r#"{{"result":null,"id":{id}}}"#)));
            ClientRequest::Subscribe(topics)
        }
        Venue::Bybit => match str_field(&message, "op") {
            Some("ping") => {
                replies.push(ServerFrame::Text(
                    r#"{"success":true,"ret_msg":"pong","conn_id":"sim","req_id":"","op":"ping"}"#
                        .to_owned(),
                ));
                ClientRequest::Ping
            }
            Some("subscribe") => {
                let mut topics = Vec::new();
                let mut refused = Vec::new();
                for arg in message
                    .get("args")
                    .and_then(|args| args.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|arg| arg.as_str())
                {
                    let topic = if let Some(symbol) = arg.strip_prefix("orderbook.1.") {
                        (symbol.to_owned(), Channel::Bbo)
                    } else if let Some(symbol) = arg.strip_prefix("publicTrade.") {
                        (symbol.to_owned(), Channel::Trades)
                    } else {
                        continue;
                    };
                    if !is_listed(&topic.0) {
                        refused.push(arg);
                    }
                    topics.push(topic);
                }
                replies.push(ServerFrame::Text(if refused.is_empty() {
                        r#"{"success":true,"ret_msg":"","conn_id":"sim","req_id":"","op":"subscribe"}"#.to_owned()
                    } else {
                        format!(
                            r#"{{"success":false,"ret_msg":"Invalid symbol :[{}]","conn_id":"sim","req_id":"","op":"subscribe"}}"#,
                            refused.join(",")
                        )
                    }));
                ClientRequest::Subscribe(topics)
            }
            _ => ClientRequest::Unknown,
        },
        Venue::Okx | Venue::Bitget => {
            if str_field(&message, "op") != Some("subscribe") {
                return ClientRequest::Unknown;
            }
            let mut topics = Vec::new();
            for arg in message
                .get("args")
                .and_then(|args| args.as_array())
                .into_iter()
                .flatten()
            {
                // Bitget v3 names the stream `topic` and the symbol `symbol`.
                let v3 = venue == Venue::Bitget && arg.get("topic").is_some();
                let (channel, symbol) = if v3 {
                    (str_field(arg, "topic"), str_field(arg, "symbol"))
                } else {
                    (str_field(arg, "channel"), str_field(arg, "instId"))
                };
                let (Some(channel), Some(symbol)) = (channel, symbol) else {
                    continue;
                };
                let channel_kind = match (channel, v3) {
                    ("bbo-tbt" | "books1", _) => Channel::Bbo,
                    ("trades" | "trade", false) | ("publicTrade", true) => Channel::Trades,
                    _ => continue,
                };
                topics.push((symbol.to_owned(), channel_kind));
                replies.push(ServerFrame::Text(if is_listed(symbol) {
                    format!(r#"{{"event":"subscribe","arg":{arg}}}"#)
                } else if v3 {
                    format!(
                        r#"{{"event":"error","arg":{arg},"code":"30001","msg":"topic:{channel},symbol:{symbol} doesn't exist"}}"#
                    )
                } else if venue == Venue::Okx {
                    format!(
                        r#"{{"event":"error","code":"60018","msg":"Wrong URL or channel:{channel},instId:{symbol} doesn't exist. Please use the correct URL, channel and parameters referring to API document.","connId":"sim"}}"#
                    )
                } else {
                    format!(
                        r#"{{"event":"error","arg":{arg},"code":30001,"msg":"instType:SPOT,channel:{channel},instId:{symbol} doesn't exist","op":"subscribe"}}"#
                    )
                }));
            }
            ClientRequest::Subscribe(topics)
        }
        Venue::Mexc => match str_field(&message, "method") {
            Some("PING") => {
                replies.push(ServerFrame::Text(
                    r#"{"id":0,"code":0,"msg":"PONG"}"#.to_owned(),
                ));
                ClientRequest::Ping
            }
            Some("SUBSCRIPTION") => {
                let mut topics = Vec::new();
                for param in message
                    .get("params")
                    .and_then(|params| params.as_array())
                    .into_iter()
                    .flatten()
                {
                    let Some(param) = param.as_str() else {
                        continue;
                    };
                    let channel = if param.starts_with("spot@public.aggre.bookTicker") {
                        Channel::Bbo
                    } else if param.starts_with("spot@public.aggre.deals") {
                        Channel::Trades
                    } else {
                        continue;
                    };
                    let Some((_, symbol)) = param.rsplit_once('@') else {
                        continue;
                    };
                    topics.push((symbol.to_owned(), channel));
                    replies.push(ServerFrame::Text(if is_listed(symbol) {
                        format!(r#"{{"id":0,"code":0,"msg":"{param}"}}"#)
                    } else {
                        format!(
                            r#"{{"id":0,"code":0,"msg":"Not Subscribed successfully! [{param}].  Reason： Blocked! "}}"#
                        )
                    }));
                }
                ClientRequest::Subscribe(topics)
            }
            _ => ClientRequest::Unknown,
        },
        Venue::Gate => {
            let channel = str_field(&message, "channel").unwrap_or_default();
            let now_s = now_ms / 1000;
            if channel == "spot.ping" {
                replies.push(ServerFrame::Text(format!(
                    r#"{{"time":{now_s},"channel":"spot.pong","event":"","error":null,"result":null}}"#
                )));
                return ClientRequest::Ping;
            }
            if str_field(&message, "event") != Some("subscribe") {
                return ClientRequest::Unknown;
            }
            let channel_kind = match channel {
                "spot.book_ticker" => Channel::Bbo,
                "spot.trades" => Channel::Trades,
                _ => return ClientRequest::Unknown,
            };
            let topics: Vec<(String, Channel)> = message
                .get("payload")
                .and_then(|payload| payload.as_array())
                .map(|payload| {
                    payload
                        .iter()
                        .filter_map(|symbol| symbol.as_str())
                        .map(|symbol| (symbol.to_owned(), channel_kind))
                        .collect()
                })
                .unwrap_or_default();
            let refused: Vec<&str> = topics
                .iter()
                .map(|(symbol, _)| symbol.as_str())
                .filter(|symbol| !is_listed(symbol))
                .collect();
            replies.push(ServerFrame::Text(if refused.is_empty() {
                format!(
                    r#"{{"time":{now_s},"time_ms":{now_ms},"channel":"{channel}","event":"subscribe","error":null,"result":{{"status":"success"}}}}"#
                )
            } else {
                format!(
                    r#"{{"time":{now_s},"time_ms":{now_ms},"channel":"{channel}","event":"subscribe","error":{{"code":2,"message":"unknown currency pair: {}"}},"result":null}}"#,
                    refused.join(",")
                )
            }));
            ClientRequest::Subscribe(topics)
        }
        Venue::Kucoin => {
            let id = str_field(&message, "id")
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    message
                        .get("id")
                        .map(|id| id.to_string())
                        .unwrap_or_default()
                });
            match str_field(&message, "type") {
                Some("ping") => {
                    replies.push(ServerFrame::Text(format!(
                        r#"{{"id":"{id}","type":"pong"}}"#
                    )));
                    ClientRequest::Ping
                }
                Some("subscribe") => {
                    let topic = str_field(&message, "topic").unwrap_or_default();
                    let (channel, symbols) =
                        if let Some(symbols) = topic.strip_prefix("/spotMarket/level1:") {
                            (Channel::Bbo, symbols)
                        } else if let Some(symbols) = topic.strip_prefix("/market/match:") {
                            (Channel::Trades, symbols)
                        } else {
                            return ClientRequest::Unknown;
                        };
                    let topics: Vec<(String, Channel)> = symbols
                        .split(',')
                        .filter(|symbol| !symbol.is_empty())
                        .map(|symbol| (symbol.to_owned(), channel))
                        .collect();
                    replies.push(ServerFrame::Text(
                        if topics.iter().all(|(symbol, _)| is_listed(symbol)) {
                            format!(r#"{{"id":"{id}","type":"ack"}}"#)
                        } else {
                            format!(
                                r#"{{"id":"{id}","type":"error","code":404,"data":"topic {topic} is not found"}}"#
                            )
                        },
                    ));
                    ClientRequest::Subscribe(topics)
                }
                _ => ClientRequest::Unknown,
            }
        }
        Venue::Htx => {
            if message.get("pong").is_some() {
                return ClientRequest::Pong;
            }
            let Some(topic) = str_field(&message, "sub") else {
                return ClientRequest::Unknown;
            };
            let id = str_field(&message, "id").unwrap_or_default();
            let parsed = topic.strip_prefix("market.").and_then(|rest| {
                if let Some(symbol) = rest.strip_suffix(".bbo") {
                    Some((symbol.to_owned(), Channel::Bbo))
                } else {
                    rest.strip_suffix(".trade.detail")
                        .map(|symbol| (symbol.to_owned(), Channel::Trades))
                }
            });
            let reply = match &parsed {
                Some((symbol, _)) if !is_listed(symbol) => format!(
                    r#"{{"id":"{id}","status":"error","err-code":"bad-request","err-msg":"invalid symbol {symbol}","ts":{now_ms}}}"#
                ),
                _ => format!(r#"{{"id":"{id}","status":"ok","subbed":"{topic}","ts":{now_ms}}}"#),
            };
            replies.push(text_or_gzip(venue, reply));
            ClientRequest::Subscribe(parsed.into_iter().collect())
        }
    }
}

/// True when `text` is a Bitget subscribe request in the v3 (unified account) shape: the session
/// then writes its data in v3's format.
pub fn is_bitget_v3_subscribe(text: &str) -> bool {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
        return false;
    };
    str_field(&message, "op") == Some("subscribe")
        && message
            .get("args")
            .and_then(|args| args.as_array())
            .is_some_and(|args| args.iter().any(|arg| arg.get("topic").is_some()))
}

/// A Bitget v3 `books1` push (every push a one-level snapshot).
pub fn write_bitget_v3_bbo(update: &BboUpdate<'_>, text: &mut String) {
    text.clear();
    let BboUpdate {
        venue_symbol: symbol,
        bid,
        bid_qty,
        ask,
        ask_qty,
        sequence,
        now_ms,
    } = *update;
    let previous = sequence.saturating_sub(1);
    let (bid8, ask8) = (Fixed::<8>(bid), Fixed::<8>(ask));
    let (bid_qty6, ask_qty6) = (Fixed::<6>(bid_qty), Fixed::<6>(ask_qty));
    let _ = write!(
        text,
        r#"{{"data":[{{"a":[["{ask8}","{ask_qty6}"]],"b":[["{bid8}","{bid_qty6}"]],"checksum":0,"pseq":{previous},"seq":{sequence},"ts":"{now_ms}"}}],"arg":{{"instType":"spot","symbol":"{symbol}","topic":"books1"}},"action":"snapshot","ts":{now_ms}}}"#
    );
}

/// A Bitget v3 `publicTrade` push.
pub fn write_bitget_v3_trade(update: &TradeUpdate<'_>, text: &mut String) {
    text.clear();
    let TradeUpdate {
        venue_symbol: symbol,
        price,
        quantity,
        buy,
        trade_id,
        now_ms,
    } = *update;
    let side = if buy { "buy" } else { "sell" };
    let (price8, quantity6) = (Fixed::<8>(price), Fixed::<6>(quantity));
    let _ = write!(
        text,
        r#"{{"data":[{{"p":"{price8}","S":"{side}","T":"{now_ms}","v":"{quantity6}","i":"{trade_id}","L":"{trade_id}"}}],"arg":{{"instType":"spot","symbol":"{symbol}","topic":"publicTrade"}},"action":"snapshot","ts":{now_ms}}}"#
    );
}

/// KuCoin's `welcome`, sent as soon as the socket opens.
pub fn kucoin_welcome(connect_id: &str) -> ServerFrame {
    ServerFrame::Text(format!(r#"{{"id":"{connect_id}","type":"welcome"}}"#))
}

/// HTX's in-band heartbeat (gzip).
pub fn htx_ping(nonce: i64) -> ServerFrame {
    ServerFrame::Binary(gzip(&format!(r#"{{"ping":{nonce}}}"#)))
}

/// The venue's "this connection closes soon" notice, where it has one.
pub fn shutdown_notice(venue: Venue, now_ms: i64) -> Option<ServerFrame> {
    match venue {
        Venue::Binance => Some(ServerFrame::Text(format!(r#"{{"e":"serverShutdown","E":{now_ms}}}"#))),
        Venue::Okx => Some(ServerFrame::Text(
            r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"sim"}"#.to_owned(),
        )),
        Venue::Gate => Some(ServerFrame::Text(
            r#"{"type":"upgrade","msg":"The connection will soon be closed for a service upgrade. Please reconnect."}"#.to_owned(),
        )),
        _ => None,
    }
}

/// A frame that is not valid for the venue (truncated JSON; for HTX and MEXC a broken binary).
pub fn malformed(venue: Venue) -> ServerFrame {
    match venue {
        Venue::Htx | Venue::Mexc => ServerFrame::Binary(vec![0x1f, 0x8b, 0x08, 0xff, 0x00, 0x13]),
        _ => ServerFrame::Text(r#"{"topic":"orderbook.1.BTCUSDT","data":{"b":[["1.0","#.to_owned()),
    }
}

/// `value` with `PLACES` decimals, as `format!("{value:.PLACES$}")` writes it (the same digits
/// but for a tie at the last place, which a simulated price never cares about), without the
/// exact decimal expansion std does for every float: the simulators write four of these per
/// best bid/ask, and at the full universe they share the machine with the engine they measure.
/// Values too large for the fast way (or not finite) are written by std.
#[derive(Clone, Copy)]
pub struct Fixed<const PLACES: u32>(pub f64);

impl<const PLACES: u32> std::fmt::Display for Fixed<PLACES> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The digit buffer below and `10^PLACES` as a u64 hold at most 18 places.
        const { assert!(PLACES <= 18, "Fixed writes at most 18 decimal places") };
        let unit = 10u64.pow(PLACES);
        let product = self.0.abs() * unit as f64;
        // Below 2^46 the product is within 1/128 of the exact one, so unless its fraction is
        // that close to a half, rounding it rounds the exact value as std does; near a half
        // (about 2 % of values), or beyond, std writes it.
        let fraction = product - product.floor();
        if !product.is_finite() || product >= 7.0e13 || (fraction - 0.5).abs() < 0.01 {
            return write!(formatter, "{:.*}", PLACES as usize, self.0);
        }
        let scaled = product.round() as u64;
        let mut digits = [0u8; 24];
        let mut at = digits.len();
        let mut rest = scaled;
        for place in 0..PLACES {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if place + 1 == PLACES {
                at -= 1;
                digits[at] = b'.';
            }
        }
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if self.0.is_sign_negative() {
            at -= 1;
            digits[at] = b'-';
        }
        // Only ASCII digits, '.' and '-' were written.
        formatter.write_str(std::str::from_utf8(&digits[at..]).map_err(|_| std::fmt::Error)?)
    }
}

/// One best bid/ask update.
#[derive(Clone, Copy, Debug)]
pub struct BboUpdate<'a> {
    /// The symbol in the venue's spelling.
    pub venue_symbol: &'a str,
    pub bid: f64,
    pub bid_qty: f64,
    pub ask: f64,
    pub ask_qty: f64,
    pub sequence: u64,
    pub now_ms: i64,
}

/// One trade.
#[derive(Clone, Copy, Debug)]
pub struct TradeUpdate<'a> {
    pub venue_symbol: &'a str,
    pub price: f64,
    pub quantity: f64,
    pub buy: bool,
    pub trade_id: u64,
    pub now_ms: i64,
}

/// Writes a bbo frame for `venue` into `text` (JSON venues) or `binary` (HTX, MEXC); returns
/// whether the frame is binary. Both buffers are cleared first and reused by the caller.
pub fn write_bbo(
    venue: Venue,
    update: &BboUpdate<'_>,
    text: &mut String,
    binary: &mut Vec<u8>,
) -> bool {
    text.clear();
    binary.clear();
    let BboUpdate {
        venue_symbol: symbol,
        bid,
        bid_qty,
        ask,
        ask_qty,
        sequence,
        now_ms,
    } = *update;
    let (bid8, ask8, bid_qty8, ask_qty8) = (
        Fixed::<8>(bid),
        Fixed::<8>(ask),
        Fixed::<8>(bid_qty),
        Fixed::<8>(ask_qty),
    );
    let (bid_qty6, ask_qty6) = (Fixed::<6>(bid_qty), Fixed::<6>(ask_qty));
    match venue {
        Venue::Binance => {
            let _ = write!(
                text,
                r#"{{"u":{sequence},"s":"{}","b":"{bid8}","B":"{bid_qty8}","a":"{ask8}","A":"{ask_qty8}"}}"#,
                symbol.to_ascii_uppercase()
            );
        }
        Venue::Bybit => {
            let _ = write!(
                text,
                r#"{{"topic":"orderbook.1.{symbol}","type":"snapshot","ts":{now_ms},"data":{{"s":"{symbol}","b":[["{bid8}","{bid_qty6}"]],"a":[["{ask8}","{ask_qty6}"]],"u":{sequence},"seq":{sequence}}},"cts":{now_ms}}}"#
            );
        }
        Venue::Okx => {
            let _ = write!(
                text,
                r#"{{"arg":{{"channel":"bbo-tbt","instId":"{symbol}"}},"data":[{{"asks":[["{ask8}","{ask_qty6}","0","3"]],"bids":[["{bid8}","{bid_qty6}","0","2"]],"ts":"{now_ms}","seqId":{sequence}}}]}}"#
            );
        }
        Venue::Gate => {
            let now_s = now_ms / 1000;
            let _ = write!(
                text,
                r#"{{"time":{now_s},"time_ms":{now_ms},"channel":"spot.book_ticker","event":"update","result":{{"t":{now_ms},"u":{sequence},"s":"{symbol}","b":"{bid8}","B":"{bid_qty6}","a":"{ask8}","A":"{ask_qty6}"}}}}"#
            );
        }
        Venue::Kucoin => {
            let _ = write!(
                text,
                r#"{{"topic":"/spotMarket/level1:{symbol}","type":"message","subject":"level1","data":{{"asks":["{ask8}","{ask_qty6}"],"bids":["{bid8}","{bid_qty6}"],"timestamp":{now_ms}}}}}"#
            );
        }
        Venue::Bitget => {
            let _ = write!(
                text,
                r#"{{"action":"snapshot","arg":{{"instType":"SPOT","channel":"books1","instId":"{symbol}"}},"data":[{{"asks":[["{ask8}","{ask_qty6}"]],"bids":[["{bid8}","{bid_qty6}"]],"checksum":0,"ts":"{now_ms}"}}],"ts":{now_ms}}}"#
            );
        }
        Venue::Htx => {
            let _ = write!(
                text,
                r#"{{"ch":"market.{symbol}.bbo","ts":{now_ms},"tick":{{"seqId":{sequence},"ask":{ask8},"askSize":{ask_qty6},"bid":{bid8},"bidSize":{bid_qty6},"quoteTime":{now_ms},"symbol":"{symbol}"}}}}"#
            );
            gzip_into(text.as_bytes(), binary);
            return true;
        }
        Venue::Mexc => {
            let message = PushDataV3ApiWrapper {
                channel: format!("spot@public.aggre.bookTicker.v3.api.pb@10ms@{symbol}"),
                symbol: symbol.to_owned(),
                send_time: now_ms,
                body: Some(PushBody::PublicAggreBookTicker(
                    PublicAggreBookTickerV3Api {
                        bid_price: bid8.to_string(),
                        bid_quantity: bid_qty6.to_string(),
                        ask_price: ask8.to_string(),
                        ask_quantity: ask_qty6.to_string(),
                    },
                )),
            };
            prost::Message::encode(&message, binary).expect("a Vec grows as needed");
            return true;
        }
    }
    false
}

/// Writes a trade frame (see `write_bbo`).
pub fn write_trade(
    venue: Venue,
    update: &TradeUpdate<'_>,
    text: &mut String,
    binary: &mut Vec<u8>,
) -> bool {
    text.clear();
    binary.clear();
    let TradeUpdate {
        venue_symbol: symbol,
        price,
        quantity,
        buy,
        trade_id,
        now_ms,
    } = *update;
    let (price8, quantity6) = (Fixed::<8>(price), Fixed::<6>(quantity));
    let side_lower = if buy { "buy" } else { "sell" };
    match venue {
        Venue::Binance => {
            let _ = write!(
                text,
                r#"{{"e":"trade","E":{now_ms},"s":"{}","t":{trade_id},"p":"{price8}","q":"{quantity6}","T":{now_ms},"m":{},"M":true}}"#,
                symbol.to_ascii_uppercase(),
                !buy
            );
        }
        Venue::Bybit => {
            let side = if buy { "Buy" } else { "Sell" };
            let _ = write!(
                text,
                r#"{{"topic":"publicTrade.{symbol}","type":"snapshot","ts":{now_ms},"data":[{{"T":{now_ms},"s":"{symbol}","S":"{side}","v":"{quantity6}","p":"{price8}","L":"PlusTick","i":"{trade_id}","BT":false}}]}}"#
            );
        }
        Venue::Okx => {
            let _ = write!(
                text,
                r#"{{"arg":{{"channel":"trades","instId":"{symbol}"}},"data":[{{"instId":"{symbol}","tradeId":"{trade_id}","px":"{price8}","sz":"{quantity6}","side":"{side_lower}","ts":"{now_ms}"}}]}}"#
            );
        }
        Venue::Gate => {
            let now_s = now_ms / 1000;
            let _ = write!(
                text,
                r#"{{"time":{now_s},"channel":"spot.trades","event":"update","result":{{"id":{trade_id},"create_time":{now_s},"create_time_ms":"{now_ms}.0000","side":"{side_lower}","currency_pair":"{symbol}","amount":"{quantity6}","price":"{price8}","range":"{trade_id}-{trade_id}"}}}}"#
            );
        }
        Venue::Kucoin => {
            let now_ns = now_ms * 1_000_000;
            let _ = write!(
                text,
                r#"{{"topic":"/market/match:{symbol}","type":"message","subject":"trade.l3match","data":{{"makerOrderId":"m{trade_id}","price":"{price8}","sequence":"{trade_id}","side":"{side_lower}","size":"{quantity6}","symbol":"{symbol}","takerOrderId":"t{trade_id}","time":"{now_ns}","tradeId":"{trade_id}","type":"match"}}}}"#
            );
        }
        Venue::Bitget => {
            let _ = write!(
                text,
                r#"{{"action":"update","arg":{{"instType":"SPOT","channel":"trade","instId":"{symbol}"}},"data":[{{"ts":"{now_ms}","price":"{price8}","size":"{quantity6}","side":"{side_lower}","tradeId":"{trade_id}"}}],"ts":{now_ms}}}"#
            );
        }
        Venue::Htx => {
            let _ = write!(
                text,
                r#"{{"ch":"market.{symbol}.trade.detail","ts":{now_ms},"tick":{{"id":{trade_id},"ts":{now_ms},"data":[{{"id":{trade_id},"ts":{now_ms},"tradeId":{trade_id},"amount":{quantity6},"price":{price8},"direction":"{side_lower}"}}]}}}}"#
            );
            gzip_into(text.as_bytes(), binary);
            return true;
        }
        Venue::Mexc => {
            let message = PushDataV3ApiWrapper {
                channel: format!("spot@public.aggre.deals.v3.api.pb@10ms@{symbol}"),
                symbol: symbol.to_owned(),
                send_time: now_ms,
                body: Some(PushBody::PublicAggreDeals(PublicAggreDealsV3Api {
                    deals: vec![PublicAggreDealsV3ApiItem {
                        price: price8.to_string(),
                        quantity: quantity6.to_string(),
                        trade_type: if buy { 1 } else { 2 },
                        time: now_ms,
                    }],
                    event_type: "spot@public.aggre.deals.v3.api.pb@10ms".to_owned(),
                })),
            };
            prost::Message::encode(&message, binary).expect("a Vec grows as needed");
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_writes_what_std_writes() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            0.5,
            0.000_000_01,
            123_456.789,
            9.999_999_999,
            -42.125,
        ];
        // Prices and sizes across the magnitudes the simulators use, off any grid.
        let mut value = 1.234_567_891e-5;
        while value < 1e7 {
            values.push(value);
            values.push(value * 1.000_000_37);
            value *= 1.013;
        }
        for value in values {
            assert_eq!(
                Fixed::<8>(value).to_string(),
                format!("{value:.8}"),
                "{value:e}"
            );
            assert_eq!(
                Fixed::<6>(value).to_string(),
                format!("{value:.6}"),
                "{value:e}"
            );
        }
        // Beyond the fast way's range, and not finite: std's own text.
        for value in [1e12, 3.5e300, f64::INFINITY, f64::NAN] {
            assert_eq!(Fixed::<8>(value).to_string(), format!("{value:.8}"));
        }
    }

    #[test]
    fn gzip_frames_inflate_back() {
        use std::io::Read as _;
        let every_byte: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for input in [
            &b""[..],
            b"{\"ping\":1}",
            "x".repeat(100_000).as_bytes(),
            &every_byte,
        ] {
            let mut out = vec![7];
            gzip_into(input, &mut out);
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&out[1..])
                .read_to_end(&mut inflated)
                .unwrap();
            assert_eq!(inflated, input);
        }
        let mut inflated = String::new();
        flate2::read::GzDecoder::new(&gzip("{\"ping\":1}")[..])
            .read_to_string(&mut inflated)
            .unwrap();
        assert_eq!(inflated, "{\"ping\":1}");
    }

    #[test]
    fn bitget_v3_requests_are_acked_refused_and_answered_in_v3() {
        use tickflow_feed::protocol::{SocketApi, Topic, subscribe_requests_for};
        let topics = [Channel::Bbo, Channel::Trades].map(|channel| Topic {
            venue_symbol: "BTCUSDT".to_owned(),
            channel,
        });
        for (api, v3) in [(SocketApi::V2, false), (SocketApi::V3, true)] {
            let mut requests = Vec::new();
            subscribe_requests_for(Venue::Bitget, Some(api), &topics, 1, &mut 0, &mut requests);
            assert_eq!(requests.len(), 1);
            assert_eq!(is_bitget_v3_subscribe(&requests[0]), v3, "{api:?}");
            let mut replies = Vec::new();
            let parsed = parse_client_text(Venue::Bitget, &requests[0], 1, &|_| true, &mut replies);
            assert_eq!(
                parsed,
                ClientRequest::Subscribe(vec![
                    ("BTCUSDT".to_owned(), Channel::Bbo),
                    ("BTCUSDT".to_owned(), Channel::Trades)
                ])
            );
            for reply in &replies {
                let ServerFrame::Text(reply) = reply else {
                    panic!("bitget replies in text")
                };
                assert!(reply.starts_with(r#"{"event":"subscribe""#), "{reply}");
                assert_eq!(reply.contains(r#""topic""#), v3, "{reply}");
            }
            let mut replies = Vec::new();
            parse_client_text(Venue::Bitget, &requests[0], 1, &|_| false, &mut replies);
            assert!(
                replies
                    .iter()
                    .all(|reply| matches!(reply, ServerFrame::Text(text) if text.contains(r#""event":"error""#))),
                "{replies:?}"
            );
        }
        let mut text = String::new();
        write_bitget_v3_bbo(
            &BboUpdate {
                venue_symbol: "BTCUSDT",
                bid: 1.0,
                bid_qty: 2.0,
                ask: 1.5,
                ask_qty: 3.0,
                sequence: 7,
                now_ms: 9,
            },
            &mut text,
        );
        let push: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(push["arg"]["topic"], "books1");
        assert_eq!(push["data"][0]["seq"], 7);
        write_bitget_v3_trade(
            &TradeUpdate {
                venue_symbol: "BTCUSDT",
                price: 1.0,
                quantity: 2.0,
                buy: false,
                trade_id: 5,
                now_ms: 9,
            },
            &mut text,
        );
        let push: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(push["arg"]["topic"], "publicTrade");
        assert_eq!(push["data"][0]["S"], "sell");
    }

    #[test]
    fn subscribe_requests_round_trip_through_the_simulator() {
        let topics = vec![tickflow_feed::protocol::Topic {
            venue_symbol: String::new(),
            channel: Channel::Bbo,
        }];
        for venue in Venue::ALL {
            let mut topics = topics.clone();
            let mut venue_symbol = String::new();
            tickflow_feed::protocol::write_venue_symbol(venue, "BTC", "USDT", &mut venue_symbol);
            topics[0].venue_symbol = venue_symbol.clone();
            topics.push(tickflow_feed::protocol::Topic {
                venue_symbol: venue_symbol.clone(),
                channel: Channel::Trades,
            });
            let mut requests = Vec::new();
            let mut request_id = 0;
            tickflow_feed::protocol::subscribe_requests(
                venue,
                &topics,
                1,
                &mut request_id,
                &mut requests,
            );
            let mut seen = Vec::new();
            for request in &requests {
                let mut replies = Vec::new();
                match parse_client_text(venue, request, 1_000, &|_| true, &mut replies) {
                    ClientRequest::Subscribe(parsed) => seen.extend(parsed),
                    other => panic!("{venue}: {request} parsed as {other:?}"),
                }
                assert!(!replies.is_empty(), "{venue} acks");
            }
            assert_eq!(
                seen,
                vec![
                    (venue_symbol.clone(), Channel::Bbo),
                    (venue_symbol, Channel::Trades)
                ],
                "{venue}"
            );
        }
    }
}
