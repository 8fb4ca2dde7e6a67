//! Test support: a host table naming symbols and venues and recording published endpoints, the
//! sink started on an OS-chosen loopback port, and a WebSocket client that reads JSON frames.

use std::ffi::c_void;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketError};
use http_body_util::Empty;
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tickflow_sdk::abi::{self, Host};
use tickflow_sdk::{HostHandle, Sink};
use tickflow_ws_broadcast::{WsBroadcast, WsConfig};
use tokio::net::TcpStream;

pub const SYMBOLS: [&str; 3] = ["BTC-USDT", "ETH-USDT", "SOL-USDT"];
pub const VENUES: [&str; 3] = ["binance", "okx", "bybit"];

/// Endpoints published through any test host table: (name, url).
pub static PUBLISHED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn symbol_name(
    _host_data: *mut c_void,
    symbol_id: u32,
    out: *mut u8,
    capacity: usize,
) -> usize {
    copy_name(SYMBOLS.get(symbol_id as usize), out, capacity)
}

unsafe extern "C" fn venue_name(
    _host_data: *mut c_void,
    venue_id: u16,
    out: *mut u8,
    capacity: usize,
) -> usize {
    copy_name(VENUES.get(venue_id as usize), out, capacity)
}

fn copy_name(name: Option<&&str>, out: *mut u8, capacity: usize) -> usize {
    let Some(name) = name else { return 0 };
    let count = name.len().min(capacity);
    // SAFETY: the plugin passes a buffer writable for `capacity` bytes.
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), out, count) };
    name.len()
}

unsafe extern "C" fn publish_endpoint(
    _host_data: *mut c_void,
    name: *const u8,
    name_len: usize,
    url: *const u8,
    url_len: usize,
) -> u32 {
    // SAFETY: the plugin passes (ptr, len) pairs valid for the call.
    let (name, url) = unsafe {
        (
            std::slice::from_raw_parts(name, name_len),
            std::slice::from_raw_parts(url, url_len),
        )
    };
    PUBLISHED
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(url).into_owned(),
        ));
    1
}

/// A 1.2 host table (leaked, like the engine's).
pub fn host() -> HostHandle {
    let table: &'static Host = Box::leak(Box::new(Host {
        struct_size: abi::HOST_SIZE_V1_2,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        host_data: std::ptr::null_mut(),
        log: None,
        symbol_name: Some(symbol_name),
        venue_name: Some(venue_name),
        metric_register: None,
        counter_add: None,
        gauge_set: None,
        histogram_record: None,
        clock_ns: None,
        publish_endpoint: Some(publish_endpoint),
        metrics_snapshot: None,
    }));
    // SAFETY: the table is leaked: valid for the process.
    unsafe { HostHandle::from_raw(table) }
}

/// A config on an OS-chosen loopback port with a short flush interval.
pub fn config() -> WsConfig {
    WsConfig {
        bind: "127.0.0.1:0".to_string(),
        flush_interval_ms: 20,
        ..WsConfig::default()
    }
}

pub fn start(config: WsConfig) -> WsBroadcast {
    match WsBroadcast::create(host(), config) {
        Ok(sink) => sink,
        Err(error) => panic!("the sink starts: {error}"),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime builds")
}

struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

pub type Socket = WebSocket<TokioIo<Upgraded>>;

/// Opens a WebSocket to `target` (path and query) with extra headers; the HTTP status on a
/// refusal.
pub async fn try_connect(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<(Socket, hyper::Response<hyper::body::Incoming>), WebSocketError> {
    let stream = TcpStream::connect(addr).await?;
    connect_on(stream, addr, target, headers).await
}

pub async fn connect_on(
    stream: TcpStream,
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<(Socket, hyper::Response<hyper::body::Incoming>), WebSocketError> {
    let mut request = Request::builder()
        .method("GET")
        .uri(format!("http://{addr}{target}"))
        .header("Host", addr.to_string())
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    fastwebsockets::handshake::client(&SpawnExecutor, request, stream).await
}

/// Opens a WebSocket over an established stream (TLS).
pub async fn connect_over<S>(
    stream: S,
    addr: SocketAddr,
    target: &str,
) -> Result<
    (
        fastwebsockets::WebSocket<TokioIo<Upgraded>>,
        hyper::Response<hyper::body::Incoming>,
    ),
    WebSocketError,
>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let request = Request::builder()
        .method("GET")
        .uri(format!("https://{addr}{target}"))
        .header("Host", addr.to_string())
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    fastwebsockets::handshake::client(&SpawnExecutor, request, stream).await
}

/// Connects to the sink's path and reads the hello.
pub async fn connect(addr: SocketAddr) -> Socket {
    let (mut socket, _) = try_connect(addr, "/ws", &[])
        .await
        .expect("the upgrade succeeds");
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["hello"], "tickflow", "the first message is the hello");
    assert_eq!(hello["protocol"], 1);
    socket
}

/// Sends a JSON text message.
pub async fn send(socket: &mut Socket, text: &str) {
    socket
        .write_frame(Frame::text(Payload::Owned(text.as_bytes().to_vec())))
        .await
        .expect("the client writes");
}

/// Subscribes and waits for the ack.
pub async fn subscribe(socket: &mut Socket, channels: &[&str], snapshot: bool) {
    let message =
        serde_json::json!({"op": "subscribe", "channels": channels, "snapshot": snapshot});
    send(socket, &message.to_string()).await;
    let ack = next_json(socket).await;
    assert_eq!(ack["op"], "subscribed", "{ack}");
}

/// What a read ended with.
#[derive(Debug)]
pub enum Received {
    Json(serde_json::Value),
    Close(u16, String),
    Ended(#[allow(dead_code)] String),
}

/// The next text or close frame (pings are answered by fastwebsockets), within 10 s.
pub async fn next(socket: &mut Socket) -> Received {
    loop {
        let frame = match tokio::time::timeout(Duration::from_secs(10), socket.read_frame()).await {
            Err(_) => return Received::Ended("no frame within 10 s".to_string()),
            Ok(Err(error)) => return Received::Ended(error.to_string()),
            Ok(Ok(frame)) => frame,
        };
        match frame.opcode {
            OpCode::Text => {
                return Received::Json(
                    serde_json::from_slice(&frame.payload).expect("the server sends JSON"),
                );
            }
            OpCode::Close => {
                let code = if frame.payload.len() >= 2 {
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                } else {
                    1005
                };
                let reason =
                    String::from_utf8_lossy(frame.payload.get(2..).unwrap_or(&[])).into_owned();
                return Received::Close(code, reason);
            }
            _ => continue,
        }
    }
}

pub async fn next_json(socket: &mut Socket) -> serde_json::Value {
    match next(socket).await {
        Received::Json(value) => value,
        other => panic!("expected a JSON frame, got {other:?}"),
    }
}

/// Reads until a frame of channel `ch` arrives (skipping others); returns its data.
pub async fn next_on(socket: &mut Socket, ch: &str) -> Vec<serde_json::Value> {
    loop {
        let value = next_json(socket).await;
        if value["ch"] == ch {
            return value["data"].as_array().cloned().unwrap_or_default();
        }
    }
}
