//! Test clients: a plain HTTP/1.1 GET and a WebSocket client over raw TCP (no client library, so
//! the tests see exactly what the simulator wrote), and a per-venue reader of instrument lists
//! that takes only the fields a discovery parser needs.

use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tickflow_core::venue::Venue;
use tickflow_feed::config::Channel;
use tickflow_sim::{SimVenues, instruments_path};

/// Every wait in these tests gives up after this long (a hang fails the test, it never passes it).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// An HTTP response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn host_of(base_url: &str) -> &str {
    base_url
        .strip_prefix("http://")
        .or_else(|| base_url.strip_prefix("ws://"))
        .expect("a plain http:// or ws:// URL")
        .split('/')
        .next()
        .expect("a host")
}

/// `GET base_url + path_and_query` with `Connection: close`.
pub async fn http_get(base_url: &str, path_and_query: &str) -> HttpResponse {
    let host = host_of(base_url);
    let mut stream = TcpStream::connect(host)
        .await
        .expect("the simulator accepts");
    let request =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("response read");
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `venue`'s instrument list from the simulator, as JSON (status 200 required).
pub async fn instrument_list(sim: &SimVenues, venue: Venue) -> Value {
    let response = http_get(&sim.rest_url(venue), instruments_path(venue)).await;
    assert_eq!(response.status, 200, "{venue}: {}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{venue}"
    );
    serde_json::from_str(&response.body).expect("valid JSON")
}

/// One instrument as a discovery parser reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub trading: bool,
}

fn text<'a>(item: &'a Value, key: &str) -> &'a str {
    item.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{key} is a string in {item}"))
}

/// The instrument array of `venue`'s response (checking the envelope's success fields).
pub fn items(venue: Venue, body: &Value) -> Vec<Value> {
    let list = match venue {
        Venue::Binance | Venue::Mexc => &body["symbols"],
        Venue::Bybit => {
            assert_eq!(body["retCode"], 0);
            &body["result"]["list"]
        }
        Venue::Okx => {
            assert_eq!(body["code"], "0");
            &body["data"]
        }
        Venue::Gate => body,
        Venue::Kucoin => {
            assert_eq!(body["code"], "200000");
            &body["data"]
        }
        Venue::Bitget => {
            assert_eq!(body["code"], "00000");
            &body["data"]
        }
        Venue::Htx => {
            assert_eq!(body["status"], "ok");
            &body["data"]
        }
    };
    list.as_array().expect("an instrument array").clone()
}

/// Symbol, base, quote and trading status of every instrument, from the fields and values the
/// fixtures README names for `venue`.
pub fn entries(venue: Venue, body: &Value) -> Vec<Entry> {
    items(venue, body)
        .iter()
        .map(|item| {
            let (symbol, base, quote, trading) = match venue {
                Venue::Binance => (
                    "symbol",
                    "baseAsset",
                    "quoteAsset",
                    text(item, "status") == "TRADING",
                ),
                Venue::Mexc => (
                    "symbol",
                    "baseAsset",
                    "quoteAsset",
                    text(item, "status") == "1",
                ),
                Venue::Bybit => (
                    "symbol",
                    "baseCoin",
                    "quoteCoin",
                    text(item, "status") == "Trading",
                ),
                Venue::Okx => (
                    "instId",
                    "baseCcy",
                    "quoteCcy",
                    text(item, "state") == "live",
                ),
                Venue::Gate => (
                    "id",
                    "base",
                    "quote",
                    text(item, "trade_status") == "tradable",
                ),
                Venue::Kucoin => (
                    "symbol",
                    "baseCurrency",
                    "quoteCurrency",
                    item["enableTrading"]
                        .as_bool()
                        .expect("enableTrading is a bool"),
                ),
                Venue::Bitget => (
                    "symbol",
                    "baseCoin",
                    "quoteCoin",
                    text(item, "status") == "online",
                ),
                Venue::Htx => (
                    "symbol",
                    "base-currency",
                    "quote-currency",
                    text(item, "state") == "online",
                ),
            };
            Entry {
                symbol: text(item, symbol).to_owned(),
                base: text(item, base).to_owned(),
                quote: text(item, quote).to_owned(),
                trading,
            }
        })
        .collect()
}

/// `venue`'s instruments now, over REST.
pub async fn listed_entries(sim: &SimVenues, venue: Venue) -> Vec<Entry> {
    entries(venue, &instrument_list(sim, venue).await)
}

/// A WebSocket client connection.
pub type Client = WebSocket<TcpStream>;

/// Opens a WebSocket to `url` (`ws://host/path`) with a hand-written upgrade request.
pub async fn ws_connect(url: &str) -> Client {
    let host = host_of(url);
    let path = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap_or("/");
    let mut stream = TcpStream::connect(host)
        .await
        .expect("the simulator accepts");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("upgrade written");
    // Byte by byte, so that no frame after the header block is consumed here.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.expect("upgrade response"));
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut client = WebSocket::after_handshake(stream, Role::Client);
    client.set_auto_pong(true);
    client
}

/// Sends the real client's subscribe requests for `ws_symbol` on `channel`.
pub async fn subscribe(client: &mut Client, venue: Venue, ws_symbol: &str, channel: Channel) {
    let topics = [tickflow_feed::protocol::Topic {
        venue_symbol: ws_symbol.to_owned(),
        channel,
    }];
    let mut requests = Vec::new();
    let mut request_id = 1;
    tickflow_feed::protocol::subscribe_requests(
        venue,
        &topics,
        1_700_000_000,
        &mut request_id,
        &mut requests,
    );
    for request in requests {
        client
            .write_frame(Frame::text(Payload::Owned(request.into_bytes())))
            .await
            .expect("subscribe written");
    }
}

/// One message from the server: text (HTX: inflated) or binary (MEXC protobuf).
#[derive(Clone, Debug)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

impl Message {
    /// Whether the message contains `needle` (protobuf strings are raw bytes, so a MEXC symbol
    /// is found too).
    pub fn mentions(&self, needle: &str) -> bool {
        match self {
            Message::Text(text) => text.contains(needle),
            Message::Binary(bytes) => bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes()),
        }
    }

    /// A data message (not an ack, error, welcome, ping or pong).
    pub fn is_data(&self) -> bool {
        match self {
            Message::Binary(_) => true,
            Message::Text(text) => {
                text.contains("\"ch\":\"market.")
                    || (text.contains("\"data\"")
                        && !text.contains("\"event\"")
                        && !text.contains("\"op\"")
                        && !text.contains("\"type\":\"error\""))
                    || (text.contains("\"result\":{") && text.contains("\"event\":\"update\""))
                    || text.starts_with("{\"u\":")
                    || text.starts_with("{\"e\":\"trade\"")
            }
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Message::Text(text) => text,
            Message::Binary(_) => "",
        }
    }
}

/// The next message of `venue`'s connection (pings are answered and skipped).
pub async fn next_message(client: &mut Client, venue: Venue) -> Message {
    loop {
        let frame = tokio::time::timeout(PATIENCE, client.read_frame())
            .await
            .expect("a frame within the patience")
            .expect("a readable frame");
        let payload = frame.payload.to_vec();
        match frame.opcode {
            OpCode::Text => return Message::Text(String::from_utf8(payload).expect("UTF-8")),
            OpCode::Binary if venue == Venue::Htx => {
                use std::io::Read as _;
                let mut inflated = String::new();
                flate2::read::GzDecoder::new(&payload[..])
                    .read_to_string(&mut inflated)
                    .expect("HTX frames are gzip");
                if inflated.starts_with("{\"ping\"") {
                    continue;
                }
                return Message::Text(inflated);
            }
            OpCode::Binary => return Message::Binary(payload),
            OpCode::Close => panic!("{venue}: the simulator closed the connection"),
            _ => continue,
        }
    }
}

/// Reads until a data message mentioning `needle` arrives; returns it.
pub async fn data_mentioning(client: &mut Client, venue: Venue, needle: &str) -> Message {
    loop {
        let message = next_message(client, venue).await;
        if message.is_data() && message.mentions(needle) {
            return message;
        }
    }
}
