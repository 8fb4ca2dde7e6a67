//! The sink's `[sinks.config]`: every limit of the broadcast server, its checks (a non-loopback
//! bind needs a token, TLS needs both files) and the memory bound they imply.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `[sinks.config]` of the WebSocket broadcast sink. Every queue and table is bounded here.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Address to listen on. Loopback by default; any other address needs `token`. Port 0 lets
    /// the OS choose (the published endpoint names the real port).
    pub bind: String,
    /// The WebSocket path.
    pub path: String,
    /// Conflation and serialization interval: each channel's updates are serialized once per
    /// interval.
    pub flush_interval_ms: u64,
    /// Tokio worker threads of the plugin's own runtime.
    pub threads: usize,
    /// Most connected clients (and upgrades in progress); more are refused with HTTP 503.
    pub clients_max: usize,
    /// Most channels one client may subscribe to.
    pub subscriptions_max: usize,
    /// Shared frames queued for one client, in bytes (frames being written count separately,
    /// at most as much again).
    pub client_queue_bytes_max: usize,
    /// Shared frames queued for one client, in frames.
    pub client_queue_frames_max: usize,
    /// Frames a client may lose (skipped or lagged) since it last emptied its queue; one more
    /// and it is closed with 1008.
    pub client_lag_max_frames: u64,
    /// Deadline of every socket write; a write past it closes the client (1008, counted).
    pub write_timeout_ms: u64,
    /// Interval between server pings.
    pub ping_interval_s: f64,
    /// A client that has not answered a ping within this is closed (1008).
    pub pong_timeout_s: f64,
    /// Largest client message taken; larger ones get an error frame (and past 16× this the
    /// connection is closed with 1009).
    pub client_message_bytes_max: usize,
    /// Client messages per second (token bucket, burst of the same size); over it an error.
    pub client_messages_per_s: f64,
    /// When set, clients must present it on upgrade: as the `Sec-WebSocket-Protocol` entry
    /// `tickflow.token.<token>` or the query parameter `token=<token>`. `[A-Za-z0-9._~-]`, 16 to
    /// 256 bytes.
    pub token: Option<String>,
    /// Origins admitted (exact, case-insensitive); `"*"` admits any. Requests without an
    /// `Origin` header (not from a browser) are admitted.
    pub allowed_origins: Vec<String>,
    /// PEM certificate chain and key: serve `wss://`.
    pub tls_cert_path: Option<PathBuf>,
    pub tls_key_path: Option<PathBuf>,
    /// Records waiting between `on_batch` and the broadcast task; more are dropped (counted).
    pub ingest_queue_records_max: usize,
    /// Most channels the server tracks (symbols × kinds, including ones subscribed before their
    /// first record).
    pub channels_max: usize,
    /// Most keys (venues, venue pairs) one conflated channel keeps.
    pub keys_per_channel_max: usize,
    /// Trades, opportunities and gaps waiting for the next flush, over all channels; more are
    /// dropped (counted).
    pub pending_events_max: usize,
    /// Longest wait at shutdown for clients to receive their 1001 close.
    pub shutdown_timeout_ms: u64,
    /// `SO_SNDBUF` of each client socket (the kernel's buffer per client, outside the queue);
    /// 0 keeps the kernel's default (autotuned, up to `net.ipv4.tcp_wmem`'s maximum).
    pub socket_send_buffer_bytes: usize,
}

impl Default for WsConfig {
    fn default() -> WsConfig {
        WsConfig {
            bind: "127.0.0.1:8081".to_string(),
            path: "/ws".to_string(),
            flush_interval_ms: 100,
            threads: 1,
            clients_max: 1024,
            subscriptions_max: 256,
            client_queue_bytes_max: 256 * 1024,
            client_queue_frames_max: 4096,
            client_lag_max_frames: 2000,
            write_timeout_ms: 5000,
            ping_interval_s: 15.0,
            pong_timeout_s: 10.0,
            client_message_bytes_max: 4096,
            client_messages_per_s: 20.0,
            token: None,
            allowed_origins: vec![
                "http://127.0.0.1:8080".to_string(),
                "http://localhost:8080".to_string(),
            ],
            tls_cert_path: None,
            tls_key_path: None,
            ingest_queue_records_max: 65_536,
            channels_max: 2048,
            keys_per_channel_max: 64,
            pending_events_max: 65_536,
            shutdown_timeout_ms: 2000,
            socket_send_buffer_bytes: 0,
        }
    }
}

/// Why a config is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("bind {0:?} is not an address:port")]
    Bind(String),
    #[error(
        "bind {0} is not a loopback address: set `token` (and preferably TLS) to serve other hosts"
    )]
    NonLoopbackWithoutToken(SocketAddr),
    #[error("path must start with '/' and hold no '?' or spaces, got {0:?}")]
    Path(String),
    #[error("{key} must be {rule}")]
    Limit {
        key: &'static str,
        rule: &'static str,
    },
    #[error("token must be 16 to 256 bytes of [A-Za-z0-9._~-]")]
    Token,
    #[error("tls_cert_path and tls_key_path go together")]
    TlsHalf,
}

/// Fixed per-client overhead beside its queue: the read buffer, the task, socket halves and
/// HTTP state (an estimate, rounded up).
pub const CLIENT_OVERHEAD_BYTES: u64 = 48 * 1024;
/// Bytes one record takes in the ingest queue or a conflation table (the largest record, 168
/// bytes of telemetry, is rare; spreads are 96).
const RECORD_SLOT_BYTES: u64 = 112;

impl WsConfig {
    /// Checks every rule; returns the parsed bind address.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        let bind: SocketAddr = self
            .bind
            .parse()
            .map_err(|_| ConfigError::Bind(self.bind.clone()))?;
        if !self.path.starts_with('/') || self.path.contains(['?', ' ', '#']) {
            return Err(ConfigError::Path(self.path.clone()));
        }
        let positive: [(&'static str, u64); 12] = [
            ("flush_interval_ms", self.flush_interval_ms),
            ("threads", self.threads as u64),
            ("clients_max", self.clients_max as u64),
            ("subscriptions_max", self.subscriptions_max as u64),
            ("client_queue_bytes_max", self.client_queue_bytes_max as u64),
            (
                "client_queue_frames_max",
                self.client_queue_frames_max as u64,
            ),
            ("write_timeout_ms", self.write_timeout_ms),
            (
                "client_message_bytes_max",
                self.client_message_bytes_max as u64,
            ),
            (
                "ingest_queue_records_max",
                self.ingest_queue_records_max as u64,
            ),
            ("channels_max", self.channels_max as u64),
            ("keys_per_channel_max", self.keys_per_channel_max as u64),
            ("pending_events_max", self.pending_events_max as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Limit {
                    key,
                    rule: "at least 1",
                });
            }
        }
        if self.threads > 64 {
            return Err(ConfigError::Limit {
                key: "threads",
                rule: "at most 64",
            });
        }
        for (key, value) in [
            ("ping_interval_s", self.ping_interval_s),
            ("pong_timeout_s", self.pong_timeout_s),
            ("client_messages_per_s", self.client_messages_per_s),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
                return Err(ConfigError::Limit {
                    key,
                    rule: "a number above 0 and at most 86400",
                });
            }
        }
        if let Some(token) = &self.token {
            let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || b"._~-".contains(byte);
            if token.len() < 16 || token.len() > 256 || !token.as_bytes().iter().all(allowed) {
                return Err(ConfigError::Token);
            }
        }
        if !bind.ip().is_loopback() && self.token.is_none() {
            return Err(ConfigError::NonLoopbackWithoutToken(bind));
        }
        if self.tls_cert_path.is_some() != self.tls_key_path.is_some() {
            return Err(ConfigError::TlsHalf);
        }
        Ok(bind)
    }

    /// The most memory one instance holds with this config: every client's queue (twice: the
    /// queue and the batch being written) and overhead, the ingest queue, the conflation tables
    /// (pending and latest) and the pending events.
    pub fn memory_bound_bytes(&self) -> u64 {
        let clients = self.clients_max as u64
            * (2 * self.client_queue_bytes_max as u64 + CLIENT_OVERHEAD_BYTES);
        let ingest = self.ingest_queue_records_max as u64 * RECORD_SLOT_BYTES;
        let tables = self.channels_max as u64
            * (2 * self.keys_per_channel_max as u64 * RECORD_SLOT_BYTES + 512);
        let events = self.pending_events_max as u64 * RECORD_SLOT_BYTES;
        // The serialized frames of one flush are shared by every client's queue (counted
        // there); the flush buffer itself is at most one frame of a channel's pending records.
        let flush_buffer =
            (self.keys_per_channel_max as u64).max(self.pending_events_max as u64) * 512;
        clients + ingest + tables + events + flush_buffer
    }

    pub fn tls(&self) -> bool {
        self.tls_cert_path.is_some()
    }
}
