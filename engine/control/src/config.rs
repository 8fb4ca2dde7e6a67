//! `[http]`: the control plane's address, security, limits, sampling and alert thresholds, with
//! its own `validate()` (each error names its key). Defaults are a loopback server with no token.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole `[http]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Start the control plane with `tickflow run` and `tickflow demo`.
    pub enabled: bool,
    pub bind: SocketAddr,
    /// Bearer token for every route but `/health` and the dashboard's static files. Required for
    /// a non-loopback `bind`.
    pub token: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The Parquet history root the history routes read.
    pub history_dir: Option<PathBuf>,
    pub max_connections: usize,
    pub request_timeout_ms: u64,
    pub header_timeout_ms: u64,
    pub max_request_bytes: usize,
    pub heavy_requests_max: usize,
    pub venue_down_after_ms: u64,
    pub monitor_interval_ms: u64,
    pub trend_interval_ms: u64,
    pub trend_samples: usize,
    pub alert_history: usize,
    pub alerts: AlertThresholds,
}

/// Warning and critical thresholds of each alert (`[http.alerts]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertThresholds {
    pub rss_budget_percent_warning: f64,
    pub rss_budget_percent_critical: f64,
    pub system_memory_percent_warning: f64,
    pub system_memory_percent_critical: f64,
    pub ring_drops_per_s_warning: f64,
    pub ring_drops_per_s_critical: f64,
    pub sink_drops_per_s_warning: f64,
    pub sink_drops_per_s_critical: f64,
    /// While a memory alert (RSS against the budget, system memory) is critical, each shard keeps
    /// at most this percent of its window capacity, evicting the least recently updated windows
    /// (1..=100; 100 sheds no windows). Universe growth pauses and new heavy requests get 429
    /// either way.
    pub shed_windows_percent: u32,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            // The budget is the worst case the config allows (every window filled, every ring
            // full) plus the process's own base: an engine at its full universe legitimately
            // nears 100 %. Beyond it something the budget does not count is growing.
            rss_budget_percent_warning: 100.0,
            rss_budget_percent_critical: 115.0,
            system_memory_percent_warning: 90.0,
            system_memory_percent_critical: 97.0,
            ring_drops_per_s_warning: 1.0,
            ring_drops_per_s_critical: 1000.0,
            sink_drops_per_s_warning: 1.0,
            sink_drops_per_s_critical: 1000.0,
            shed_windows_percent: 50,
        }
    }
}

/// Largest `max_connections`.
pub const MAX_CONNECTIONS_LIMIT: usize = 10_000;
/// Largest `heavy_requests_max` (each may hold a blocking thread reading Parquet).
pub const HEAVY_REQUESTS_LIMIT: usize = 64;
/// Largest `trend_samples` (a week at 10 s).
pub const TREND_SAMPLES_LIMIT: usize = 60_480;
/// Largest `alert_history`.
pub const ALERT_HISTORY_LIMIT: usize = 65_536;
/// Smallest `max_request_bytes` (a request line and a few headers).
pub const MIN_REQUEST_BYTES: usize = 1024;
/// Largest `max_request_bytes`.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Longest duration any `_ms` key takes (a day).
pub const MAX_DURATION_MS: u64 = 86_400_000;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            tls_cert: None,
            tls_key: None,
            history_dir: None,
            max_connections: 64,
            request_timeout_ms: 10_000,
            header_timeout_ms: 5_000,
            max_request_bytes: 16 * 1024,
            heavy_requests_max: 2,
            venue_down_after_ms: 30_000,
            monitor_interval_ms: 1_000,
            trend_interval_ms: 10_000,
            trend_samples: 8_640,
            alert_history: 256,
            alerts: AlertThresholds::default(),
        }
    }
}

/// A `[http]` value the control plane refuses, naming its key.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("config key `{key}` = {value}: {reason}")]
pub struct HttpConfigError {
    pub key: &'static str,
    pub value: String,
    pub reason: String,
}

fn refuse(key: &'static str, value: impl std::fmt::Display, reason: &str) -> HttpConfigError {
    HttpConfigError {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

impl HttpConfig {
    /// The token, if one is configured and not empty.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|token| !token.is_empty())
    }

    pub fn validate(&self) -> Result<(), HttpConfigError> {
        if !self.bind.ip().is_loopback() && self.token().is_none() {
            return Err(refuse(
                "http.token",
                "(none)",
                &format!(
                    "http.bind = {} is not a loopback address: set http.token (every route but /health then needs it)",
                    self.bind
                ),
            ));
        }
        if let Some(token) = self.token()
            && (token.len() < 16 || !token.bytes().all(|byte| byte.is_ascii_graphic()))
        {
            return Err(refuse(
                "http.token",
                "(hidden)",
                "must be at least 16 printable ASCII characters without spaces",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(refuse(
                if self.tls_cert.is_some() {
                    "http.tls_key"
                } else {
                    "http.tls_cert"
                },
                "(none)",
                "http.tls_cert and http.tls_key go together",
            ));
        }
        let ranges: [(&'static str, u64, u64, u64); 5] = [
            (
                "http.request_timeout_ms",
                self.request_timeout_ms,
                1,
                MAX_DURATION_MS,
            ),
            (
                "http.header_timeout_ms",
                self.header_timeout_ms,
                1,
                MAX_DURATION_MS,
            ),
            (
                "http.venue_down_after_ms",
                self.venue_down_after_ms,
                1,
                MAX_DURATION_MS,
            ),
            (
                "http.monitor_interval_ms",
                self.monitor_interval_ms,
                10,
                MAX_DURATION_MS,
            ),
            (
                "http.trend_interval_ms",
                self.trend_interval_ms,
                10,
                MAX_DURATION_MS,
            ),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(refuse(key, value, &format!("must be in {low}..={high}")));
            }
        }
        let counts: [(&'static str, usize, usize, usize); 5] = [
            (
                "http.max_connections",
                self.max_connections,
                1,
                MAX_CONNECTIONS_LIMIT,
            ),
            (
                "http.heavy_requests_max",
                self.heavy_requests_max,
                1,
                HEAVY_REQUESTS_LIMIT,
            ),
            (
                "http.trend_samples",
                self.trend_samples,
                1,
                TREND_SAMPLES_LIMIT,
            ),
            (
                "http.alert_history",
                self.alert_history,
                1,
                ALERT_HISTORY_LIMIT,
            ),
            (
                "http.max_request_bytes",
                self.max_request_bytes,
                MIN_REQUEST_BYTES,
                MAX_REQUEST_BYTES,
            ),
        ];
        for (key, value, low, high) in counts {
            if !(low..=high).contains(&value) {
                return Err(refuse(key, value, &format!("must be in {low}..={high}")));
            }
        }
        let alerts = &self.alerts;
        if !(1..=100).contains(&alerts.shed_windows_percent) {
            return Err(refuse(
                "http.alerts.shed_windows_percent",
                alerts.shed_windows_percent,
                "must be in 1..=100 (percent of each shard's window capacity kept while memory is shed)",
            ));
        }
        let pairs = [
            (
                "http.alerts.rss_budget_percent_critical",
                alerts.rss_budget_percent_warning,
                alerts.rss_budget_percent_critical,
            ),
            (
                "http.alerts.system_memory_percent_critical",
                alerts.system_memory_percent_warning,
                alerts.system_memory_percent_critical,
            ),
            (
                "http.alerts.ring_drops_per_s_critical",
                alerts.ring_drops_per_s_warning,
                alerts.ring_drops_per_s_critical,
            ),
            (
                "http.alerts.sink_drops_per_s_critical",
                alerts.sink_drops_per_s_warning,
                alerts.sink_drops_per_s_critical,
            ),
        ];
        for (key, warning, critical) in pairs {
            if !(warning.is_finite() && critical.is_finite() && warning >= 0.0) {
                return Err(refuse(key, critical, "thresholds must be finite and ≥ 0"));
            }
            if critical < warning {
                return Err(refuse(key, critical, "must be ≥ its warning threshold"));
            }
        }
        Ok(())
    }
}
