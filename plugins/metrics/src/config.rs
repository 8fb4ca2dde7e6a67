//! The sink's `[sinks.config]`: where the exporter listens, who may scrape it, and its limits.
//! A non-loopback bind without a token is refused at start.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[sinks.config]` of the metrics sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to listen on. Loopback by default; any other address needs `token`. Port 0 lets
    /// the OS choose (the published URL carries the real port).
    pub bind: String,
    /// The exposition's path.
    pub path: String,
    /// When set, every scrape needs `Authorization: Bearer <token>` (16 to 256 bytes of
    /// `[A-Za-z0-9._~-]`). Required for a non-loopback bind.
    pub token: Option<String>,
    /// Connections served at once; more are closed at accept (counted).
    pub max_connections: usize,
    /// Largest exposition rendered, in bytes; a bigger one is refused with 503 (counted).
    pub render_bytes_max: usize,
    /// Longest a connection may take from accept to the end of its response, in ms.
    pub request_timeout_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            bind: "127.0.0.1:9464".to_string(),
            path: "/metrics".to_string(),
            token: None,
            max_connections: 16,
            render_bytes_max: 16 * 1024 * 1024,
            request_timeout_ms: 10_000,
        }
    }
}

/// Why a config is refused (the message names the key).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("bind {0:?} is not an address:port (e.g. \"127.0.0.1:9464\")")]
    Bind(String),
    #[error(
        "bind {0} is not a loopback address: set `token` to let other hosts scrape (every scrape then needs `Authorization: Bearer <token>`)"
    )]
    NonLoopbackWithoutToken(SocketAddr),
    #[error("token must be 16 to 256 bytes of [A-Za-z0-9._~-]")]
    Token,
    #[error("path must start with '/' and be at most 256 bytes of printable ASCII, got {0:?}")]
    Path(String),
    #[error("{key} must be between {min} and {max}, got {value}")]
    Range {
        key: &'static str,
        min: u64,
        max: u64,
        value: u64,
    },
}

fn range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Range {
            key,
            min,
            max,
            value,
        });
    }
    Ok(())
}

impl MetricsConfig {
    /// Checks every key; returns the address to bind.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        let bind: SocketAddr = self
            .bind
            .parse()
            .map_err(|_| ConfigError::Bind(self.bind.clone()))?;
        if let Some(token) = &self.token {
            let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || b"._~-".contains(byte);
            if token.len() < 16 || token.len() > 256 || !token.as_bytes().iter().all(allowed) {
                return Err(ConfigError::Token);
            }
        }
        if !bind.ip().is_loopback() && self.token.is_none() {
            return Err(ConfigError::NonLoopbackWithoutToken(bind));
        }
        if !self.path.starts_with('/')
            || self.path.len() > 256
            || !self.path.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(ConfigError::Path(self.path.clone()));
        }
        range("max_connections", self.max_connections as u64, 1, 1024)?;
        range(
            "render_bytes_max",
            self.render_bytes_max as u64,
            4096,
            1 << 30,
        )?;
        range("request_timeout_ms", self.request_timeout_ms, 100, 600_000)?;
        Ok(bind)
    }

    /// The most memory one instance holds: the buffer being rendered, the cached exposition
    /// every concurrent scrape shares and the previous one still being sent, plus the thread's
    /// stack and per-connection buffers.
    pub fn memory_bound_bytes(&self) -> u64 {
        (self.render_bytes_max as u64) * 3
            + (self.max_connections as u64) * 128 * 1024
            + 2 * 1024 * 1024
    }
}
