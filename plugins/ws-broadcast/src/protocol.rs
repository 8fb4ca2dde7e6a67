//! The wire protocol: channel names, client messages, the JSON of every record and server
//! message, and WebSocket framing of shared frames (encoded once, written to every client).

use std::fmt::Write as _;

use bytes::Bytes;
use tickflow_sdk::{GapEvent, OpportunityEvent, Quote, SpreadSample, Telemetry, Trade};

/// The protocol version the hello carries; bumped on an incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
/// The subprotocol a browser may offer (echoed when offered).
pub const SUBPROTOCOL: &str = "tickflow.v1";
/// Prefix of the subprotocol entry that carries the token.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "tickflow.token.";

/// A channel kind. Per-symbol kinds take a symbol (or `*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Quotes = 0,
    Trades = 1,
    Spreads = 2,
    Opportunities = 3,
    Gaps = 4,
    Telemetry = 5,
}

impl ChannelKind {
    pub const PER_SYMBOL: [ChannelKind; 3] = [
        ChannelKind::Quotes,
        ChannelKind::Trades,
        ChannelKind::Spreads,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            ChannelKind::Quotes => "quotes",
            ChannelKind::Trades => "trades",
            ChannelKind::Spreads => "spreads",
            ChannelKind::Opportunities => "opportunities",
            ChannelKind::Gaps => "gaps",
            ChannelKind::Telemetry => "telemetry",
        }
    }

    /// Conflated kinds keep the latest value per key and may be skipped by a lagging client;
    /// the others are events, never skipped silently.
    pub fn conflated(self) -> bool {
        matches!(
            self,
            ChannelKind::Quotes | ChannelKind::Spreads | ChannelKind::Telemetry
        )
    }

    pub fn per_symbol(self) -> bool {
        ChannelKind::PER_SYMBOL.contains(&self)
    }

    /// Bit in a client's wildcard mask.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A parsed channel name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChannelSpec {
    /// `quotes:BTC-USDT`, `opportunities`, `telemetry`...
    Exact(ChannelKind, Option<String>),
    /// `quotes:*`.
    Wildcard(ChannelKind),
}

/// Longest symbol name in a channel.
const SYMBOL_NAME_MAX_BYTES: usize = 48;

impl ChannelSpec {
    pub fn parse(text: &str) -> Option<ChannelSpec> {
        let (prefix, symbol) = match text.split_once(':') {
            Some((prefix, symbol)) => (prefix, Some(symbol)),
            None => (text, None),
        };
        let kind = match prefix {
            "quotes" => ChannelKind::Quotes,
            "trades" => ChannelKind::Trades,
            "spreads" => ChannelKind::Spreads,
            "opportunities" => ChannelKind::Opportunities,
            "gaps" => ChannelKind::Gaps,
            "telemetry" => ChannelKind::Telemetry,
            _ => return None,
        };
        match (kind.per_symbol(), symbol) {
            (false, None) => Some(ChannelSpec::Exact(kind, None)),
            (true, Some("*")) => Some(ChannelSpec::Wildcard(kind)),
            (true, Some(symbol)) if symbol_name_ok(symbol) => {
                Some(ChannelSpec::Exact(kind, Some(symbol.to_string())))
            }
            _ => None,
        }
    }
}

fn symbol_name_ok(symbol: &str) -> bool {
    !symbol.is_empty()
        && symbol.len() <= SYMBOL_NAME_MAX_BYTES
        && symbol
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_./#".contains(&byte))
}

/// The name of a channel: `quotes:BTC-USDT`, `gaps`.
pub fn channel_name(kind: ChannelKind, symbol: Option<&str>) -> String {
    match symbol {
        Some(symbol) => format!("{}:{symbol}", kind.prefix()),
        None => kind.prefix().to_string(),
    }
}

/// What a client sends.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMessage {
    pub op: String,
    #[serde(default)]
    pub channels: Vec<String>,
    /// With `subscribe`: send the latest value per key of each conflated channel now.
    #[serde(default)]
    pub snapshot: bool,
}

/// Error codes of `{"error":…,"code":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadJson,
    UnknownOp,
    UnknownChannel,
    TooManySubscriptions,
    TooManyChannels,
    MessageTooLarge,
    RateLimited,
    BinaryNotSupported,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::UnknownChannel => "unknown_channel",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
        }
    }
}

/// `{"error":"…","code":"…"}` as a text frame.
pub fn error_frame(code: ErrorCode, message: &str) -> Bytes {
    let payload = serde_json::json!({ "error": message, "code": code.as_str() }).to_string();
    text_frame(payload.as_bytes())
}

/// `{"lagged":n}`: `n` trade / opportunity / gap records this client lost because its queue
/// was full.
pub fn lagged_frame(records: u64) -> Bytes {
    text_frame(format!("{{\"lagged\":{records}}}").as_bytes())
}

/// `{"op":"subscribed","channels":[…]}` (or `unsubscribed`).
pub fn ack_frame(op: &str, channels: &[String]) -> Bytes {
    let payload = serde_json::json!({ "op": op, "channels": channels }).to_string();
    text_frame(payload.as_bytes())
}

/// The first message of every connection.
pub fn hello_frame(flush_interval_ms: u64, limits: serde_json::Value) -> Bytes {
    let payload = serde_json::json!({
        "hello": "tickflow",
        "protocol": PROTOCOL_VERSION,
        "server": concat!("tickflow-ws-broadcast/", env!("CARGO_PKG_VERSION")),
        "flush_interval_ms": flush_interval_ms,
        "channels": ["quotes:<SYMBOL>", "trades:<SYMBOL>", "spreads:<SYMBOL>", "opportunities", "gaps", "telemetry"],
        "limits": limits,
    })
    .to_string();
    text_frame(payload.as_bytes())
}

// ---- WebSocket framing (server to client: never masked) ------------------------------------

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// Appends a final, unmasked frame header for `len` payload bytes.
fn push_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A complete text frame (header and payload) ready to be written to any client.
pub fn text_frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    push_header(&mut out, OPCODE_TEXT, payload.len());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A close frame with `code` and a reason (cut to the 123 bytes a control frame allows).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = Vec::with_capacity(4 + cut);
    push_header(&mut out, OPCODE_CLOSE, 2 + cut);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..cut]);
    Bytes::from(out)
}

pub fn ping_frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(2 + payload.len());
    push_header(&mut out, OPCODE_PING, payload.len().min(125));
    out.extend_from_slice(&payload[..payload.len().min(125)]);
    Bytes::from(out)
}

pub fn pong_frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(2 + payload.len());
    push_header(&mut out, OPCODE_PONG, payload.len().min(125));
    out.extend_from_slice(&payload[..payload.len().min(125)]);
    Bytes::from(out)
}

/// Builds `{"ch":"…","data":[…]}` payloads into one reused buffer, then frames them.
#[derive(Default)]
pub struct FrameBuilder {
    buffer: String,
    records: usize,
}

impl FrameBuilder {
    /// Starts a frame of channel `name` (`snapshot` adds `"snapshot":true`).
    pub fn begin(&mut self, name: &str, snapshot: bool) {
        self.buffer.clear();
        self.records = 0;
        // Channel names are checked ASCII without quotes or backslashes.
        self.buffer.push_str("{\"ch\":\"");
        self.buffer.push_str(name);
        self.buffer.push('"');
        if snapshot {
            self.buffer.push_str(",\"snapshot\":true");
        }
        self.buffer.push_str(",\"data\":[");
    }

    fn next_record(&mut self) {
        if self.records > 0 {
            self.buffer.push(',');
        }
        self.records += 1;
    }

    /// Ends the frame: the complete WebSocket frame, shared by every client it goes to.
    pub fn finish(&mut self) -> Bytes {
        self.buffer.push_str("]}");
        text_frame(self.buffer.as_bytes())
    }

    pub fn records(&self) -> usize {
        self.records
    }

    pub fn quote(&mut self, quote: &Quote, symbol: &str, venue: &str) {
        self.next_record();
        let _ = write!(
            self.buffer,
            "{{\"symbol\":\"{symbol}\",\"venue\":\"{venue}\",\"bid\":{},\"bid_qty\":{},\"ask\":{},\"ask_qty\":{},\"ts_exchange_ns\":{},\"ts_recv_ns\":{},\"seq\":{},\"flags\":{}}}",
            Number(quote.bid),
            Number(quote.bid_qty),
            Number(quote.ask),
            Number(quote.ask_qty),
            quote.ts_exchange_ns,
            quote.ts_recv_ns,
            quote.seq,
            quote.flags
        );
    }

    pub fn trade(&mut self, trade: &Trade, symbol: &str, venue: &str) {
        self.next_record();
        let _ = write!(
            self.buffer,
            "{{\"symbol\":\"{symbol}\",\"venue\":\"{venue}\",\"price\":{},\"qty\":{},\"ts_exchange_ns\":{},\"ts_recv_ns\":{},\"side\":\"{}\",\"flags\":{},\"trade_id\":\"",
            Number(trade.price),
            Number(trade.qty),
            trade.ts_exchange_ns,
            trade.ts_recv_ns,
            trade.side().as_str(),
            trade.flags
        );
        let start = self.buffer.len();
        let _ = trade.write_trade_id(&mut self.buffer);
        // Trade ids are ASCII graphic text or a UUID; only `"` and `\` need escaping.
        if self.buffer[start..].contains(['"', '\\']) {
            let id: String = self.buffer[start..].to_string();
            self.buffer.truncate(start);
            for character in id.chars() {
                if character == '"' || character == '\\' {
                    self.buffer.push('\\');
                }
                self.buffer.push(character);
            }
        }
        self.buffer.push_str("\"}");
    }

    pub fn spread(&mut self, sample: &SpreadSample, symbol: &str, buy: &str, sell: &str) {
        self.next_record();
        let _ = write!(
            self.buffer,
            "{{\"symbol\":\"{symbol}\",\"buy_venue\":\"{buy}\",\"sell_venue\":\"{sell}\",\"bucket_start_ns\":{},\"bucket_duration_ns\":{},\"last_bp\":{},\"min_bp\":{},\"max_bp\":{},\"mean_bp\":{},\"window_mean_bp\":{},\"window_std_bp\":{},\"band_lower_bp\":{},\"band_upper_bp\":{},\"samples\":{},\"flags\":{}}}",
            sample.bucket_start_ns,
            sample.bucket_duration_ns,
            Number(sample.last_bp),
            Number(sample.min_bp),
            Number(sample.max_bp),
            Number(sample.mean_bp),
            Number(sample.window_mean_bp),
            Number(sample.window_std_bp),
            Number(sample.band_lower_bp),
            Number(sample.band_upper_bp),
            sample.samples,
            sample.flags
        );
    }

    pub fn opportunity(&mut self, event: &OpportunityEvent, symbol: &str, buy: &str, sell: &str) {
        self.next_record();
        let kind = match event.kind {
            tickflow_sdk::OPPORTUNITY_START => "start",
            tickflow_sdk::OPPORTUNITY_END => "end",
            _ => "unknown",
        };
        let _ = write!(
            self.buffer,
            "{{\"symbol\":\"{symbol}\",\"buy_venue\":\"{buy}\",\"sell_venue\":\"{sell}\",\"ts_ns\":{},\"started_ns\":{},\"threshold_bp\":{},\"spread_bp\":{},\"peak_bp\":{},\"kind\":\"{kind}\",\"flags\":{}}}",
            event.ts_ns,
            event.started_ns,
            Number(event.threshold_bp),
            Number(event.spread_bp),
            Number(event.peak_bp),
            event.flags
        );
    }

    pub fn gap(&mut self, gap: &GapEvent, symbol: &str, venue: &str) {
        self.next_record();
        let kind = match gap.kind {
            tickflow_sdk::GAP_DISCONNECT => "disconnect",
            tickflow_sdk::GAP_RECONNECT => "reconnect",
            tickflow_sdk::GAP_QUOTE_WITHDRAWN => "quote_withdrawn",
            tickflow_sdk::GAP_SYMBOL_RETIRED => "symbol_retired",
            _ => "unknown",
        };
        let _ = write!(
            self.buffer,
            "{{\"symbol\":\"{symbol}\",\"venue\":\"{venue}\",\"ts_ns\":{},\"connection_id\":{},\"kind\":\"{kind}\",\"kind_id\":{}}}",
            gap.ts_ns, gap.connection_id, gap.kind
        );
    }

    pub fn telemetry(&mut self, sample: &Telemetry) {
        self.next_record();
        let _ = write!(
            self.buffer,
            "{{\"ts_ns\":{},\"uptime_ns\":{},\"rss_bytes\":{},\"budget_bytes\":{},\"records_in\":{},\"records_out\":{},\"ring_drops\":{},\"decode_errors\":{},\"reconnects\":{},\"windows_live\":{},\"windows_evicted\":{},\"sink_drops\":{},\"connections_up\":{},\"shards\":{}}}",
            sample.ts_ns,
            sample.uptime_ns,
            sample.rss_bytes,
            sample.budget_bytes,
            sample.records_in,
            sample.records_out,
            sample.ring_drops,
            sample.decode_errors,
            sample.reconnects,
            sample.windows_live,
            sample.windows_evicted,
            sample.sink_drops,
            sample.connections_up,
            sample.shards
        );
    }
}

/// An f64 as JSON: the shortest text that reads back to the same value; NaN and infinities
/// (which JSON lacks) become `null`.
struct Number(f64);

impl std::fmt::Display for Number {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_finite() {
            write!(formatter, "{:?}", self.0)
        } else {
            formatter.write_str("null")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_parse() {
        assert_eq!(
            ChannelSpec::parse("quotes:BTC-USDT"),
            Some(ChannelSpec::Exact(
                ChannelKind::Quotes,
                Some("BTC-USDT".to_string())
            ))
        );
        assert_eq!(
            ChannelSpec::parse("spreads:*"),
            Some(ChannelSpec::Wildcard(ChannelKind::Spreads))
        );
        assert_eq!(
            ChannelSpec::parse("gaps"),
            Some(ChannelSpec::Exact(ChannelKind::Gaps, None))
        );
        for bad in [
            "quotes",
            "gaps:BTC",
            "nope:BTC",
            "quotes:",
            "quotes:a\"b",
            "telemetry:*",
        ] {
            assert_eq!(ChannelSpec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn frames_have_the_right_length_headers() {
        assert_eq!(&text_frame(b"hi")[..], b"\x81\x02hi");
        let medium = text_frame(&[b'a'; 300]);
        assert_eq!(&medium[..4], &[0x81, 126, 1, 44]);
        let large = text_frame(&vec![b'a'; 70_000]);
        assert_eq!(large[1], 127);
        assert_eq!(large.len(), 70_010);
        let close = close_frame(1008, "slow");
        assert_eq!(&close[..], b"\x88\x06\x03\xf0slow");
    }

    #[test]
    fn numbers_round_trip() {
        for value in [0.1, 1e-300, 123_456_789.123_456_79, -0.0, 1e21] {
            let text = Number(value).to_string();
            assert_eq!(text.parse::<f64>().ok(), Some(value), "{text}");
        }
        assert_eq!(Number(f64::NAN).to_string(), "null");
    }
}
