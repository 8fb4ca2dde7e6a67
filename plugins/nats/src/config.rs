//! `[sinks.config]` of the NATS sink: parsing (TOML, unknown keys refused), validation with errors
//! naming the key, defaults, and the memory bound the sink states to the engine.

use std::time::Duration;

use async_nats::ServerAddr;
use tickflow_formats::wire::{BODY_MAX_BYTES, HEADER_BYTES, WireKind};

/// A config that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// `url`: one server or the servers of a cluster.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    pub fn as_list(&self) -> Vec<String> {
        match self {
            Urls::One(url) => vec![url.clone()],
            Urls::Many(urls) => urls.clone(),
        }
    }
}

/// What happens to a record that finds the buffer full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The new record is dropped (the buffer keeps the oldest: a contiguous prefix survives).
    DropNewest,
    /// The oldest buffered record is dropped to make room (the buffer keeps the latest).
    DropOldest,
}

/// The payload encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `tickflow_formats::wire` binary (what the engine's NATS source reads).
    Binary,
    /// One JSON object per message, for other consumers.
    Json,
}

/// Stream storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    File,
    Memory,
}

/// The sink's configuration (see the plugin README for every key).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port`, or a list of them (a cluster's seed servers).
    pub url: Urls,
    /// The subject prefix: records go to `<prefix>.<kind>.<partition>.<venue>.<symbol>`.
    pub prefix: String,
    /// This collector's id: in every payload, the message ids and the heartbeat subjects.
    /// Required, unique per collector (two collectors with one id would have colliding message
    /// ids, and JetStream would drop one's records as duplicates of the other's).
    pub collector: Option<String>,
    /// Symbol partitions (FNV-1a of the symbol name modulo this); every collector and
    /// aggregator of one deployment must agree.
    pub partitions: u32,
    /// Record kinds published: `quote`, `trade`, `spread_sample`, `opportunity`, `gap`,
    /// `venue_status`.
    pub kinds: Vec<String>,
    pub encoding: Encoding,
    /// The JetStream stream the sink creates (or checks) with subjects `<prefix>.>`.
    /// Empty: the sink manages no stream (an operator created one that captures the subjects).
    pub stream: String,
    /// Stream replicas when the sink creates it (1, or 3 on a three-node cluster).
    pub replicas: u32,
    pub storage: Storage,
    /// JetStream de-duplication window by message id, in ms.
    pub duplicate_window_ms: u64,
    /// Stream retention: most bytes kept (oldest discarded first); 0 = unlimited.
    pub max_bytes: u64,
    /// Stream retention: oldest message age kept, in seconds; 0 = unlimited.
    pub max_age_s: u64,
    /// Publishes sent and not yet acknowledged, at most.
    pub max_in_flight: u32,
    /// Records held while the server is unreachable or slow; past it `when_full` applies.
    pub buffer_records: u32,
    pub when_full: WhenFull,
    /// Longest venue or symbol name published; a record naming a longer one is dropped
    /// (counted). Bounds the memory per buffered record.
    pub name_max_bytes: u32,
    /// How long a publish waits for its acknowledgement before it is sent again, in ms.
    pub ack_timeout_ms: u64,
    /// Reconnect and retry backoff: first delay, doubled per attempt up to the max, in ms.
    pub reconnect_delay_initial_ms: u64,
    pub reconnect_delay_max_ms: u64,
    /// One heartbeat per known venue at least this often, in ms.
    pub heartbeat_ms: u64,
    /// The sink repeats a venue's last status only for this many `heartbeat_ms` periods after
    /// the engine's last fresh one: an engine that stopped producing statuses (stalled) goes
    /// silent, and aggregators declare its venues not live.
    pub heartbeat_repeat_periods: u32,
    /// At destroy, longest wait for buffered records to be acknowledged, in ms.
    pub shutdown_drain_ms: u64,
    /// Authentication (tickflow_formats::nats_auth): a `token` (or `token_file`), or a `user`
    /// with a `password` (or `password_file`); none by default.
    pub token: Option<String>,
    pub token_file: Option<std::path::PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<std::path::PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            url: Urls::One("nats://127.0.0.1:4222".to_string()),
            prefix: "tickflow".to_string(),
            collector: None,
            partitions: 16,
            kinds: WireKind::ALL
                .iter()
                .map(|kind| kind.name().to_string())
                .collect(),
            encoding: Encoding::Binary,
            stream: "TICKFLOW".to_string(),
            replicas: 1,
            storage: Storage::File,
            duplicate_window_ms: 120_000,
            max_bytes: 1 << 30,
            max_age_s: 24 * 3600,
            max_in_flight: 1024,
            buffer_records: 65_536,
            when_full: WhenFull::DropNewest,
            name_max_bytes: 64,
            ack_timeout_ms: 5_000,
            reconnect_delay_initial_ms: 100,
            reconnect_delay_max_ms: 5_000,
            heartbeat_ms: 1_000,
            heartbeat_repeat_periods: 5,
            shutdown_drain_ms: 2_000,
            token: None,
            token_file: None,
            user: None,
            password: None,
            password_file: None,
        }
    }
}

/// A validated config, in the units the sink uses.
#[derive(Clone, Debug)]
pub struct Settings {
    pub servers: Vec<ServerAddr>,
    pub urls: Vec<String>,
    pub prefix: String,
    pub collector: String,
    pub partitions: u32,
    /// Bit `kind as u8` set for each kind published.
    pub kinds_mask: u32,
    pub encoding: Encoding,
    pub stream: Option<String>,
    pub replicas: usize,
    pub storage: Storage,
    pub duplicate_window: Duration,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub max_in_flight: usize,
    pub buffer_records: usize,
    pub when_full: WhenFull,
    pub name_max_bytes: usize,
    pub ack_timeout: Duration,
    pub reconnect_delay_initial: Duration,
    pub reconnect_delay_max: Duration,
    pub heartbeat: Duration,
    /// Repeats stop this long after the engine's last fresh status of a venue.
    pub heartbeat_repeat_for: Duration,
    pub shutdown_drain: Duration,
    /// What the sink presents when it connects.
    pub auth: tickflow_formats::nats_auth::NatsAuth,
}

impl Settings {
    pub fn publishes(&self, kind: WireKind) -> bool {
        self.kinds_mask & (1 << kind as u32) != 0
    }

    /// Delay before reconnect or retry `attempt` (1-based): doubling from the initial delay.
    pub fn backoff(&self, attempt: usize) -> Duration {
        let shift = attempt.saturating_sub(1).min(20) as u32;
        self.reconnect_delay_initial
            .saturating_mul(1 << shift)
            .min(self.reconnect_delay_max)
    }
}

fn range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

/// A token of NATS subject text: printable ASCII without `.`, `*`, `>`, at most 64 bytes.
fn check_token(key: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.len() > 64 {
        return Err(invalid(key, "must be 1 to 64 bytes"));
    }
    if !value
        .bytes()
        .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'.' | b'*' | b'>'))
    {
        return Err(invalid(
            key,
            format!("{value:?} must be printable ASCII without '.', '*', '>' or spaces"),
        ));
    }
    Ok(())
}

impl NatsConfig {
    /// Checks every key and returns the settings the sink runs with.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let auth = tickflow_formats::nats_auth::nats_auth(
            self.token.as_deref(),
            self.token_file.as_deref(),
            self.user.as_deref(),
            self.password.as_deref(),
            self.password_file.as_deref(),
        )
        .map_err(|error| invalid(error.key, error.reason))?;
        let urls = self.url.as_list();
        if urls.is_empty() || urls.len() > 32 {
            return Err(invalid("url", "give 1 to 32 server URLs"));
        }
        let mut servers = Vec::with_capacity(urls.len());
        for url in &urls {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                return Err(invalid(
                    "url",
                    format!("{url:?} must be nats://host:port (or tls://host:port)"),
                ));
            }
            let server: ServerAddr = url
                .parse()
                .map_err(|error| invalid("url", format!("{url:?}: {error}")))?;
            servers.push(server);
        }
        if self.prefix.is_empty()
            || self.prefix.len() > 128
            || self
                .prefix
                .split('.')
                .any(|token| check_token("prefix", token).is_err())
        {
            return Err(invalid(
                "prefix",
                format!(
                    "{:?} must be 1 to 128 bytes of dot-separated tokens (printable ASCII, no '*', '>' or spaces)",
                    self.prefix
                ),
            ));
        }
        let collector = match &self.collector {
            Some(collector) => {
                check_token("collector", collector)?;
                collector.clone()
            }
            None => {
                return Err(invalid(
                    "collector",
                    "is required: a unique id per collector (e.g. \"eu-west-1-a\"); two \
                     collectors sharing one would have their records dropped as duplicates",
                ));
            }
        };
        range("partitions", u64::from(self.partitions), 1, 65_536)?;
        let mut kinds_mask = 0u32;
        if self.kinds.is_empty() {
            return Err(invalid("kinds", "name at least one record kind"));
        }
        for name in &self.kinds {
            let kind = WireKind::from_name(name).ok_or_else(|| {
                invalid(
                    "kinds",
                    format!(
                        "unknown kind {name:?} (quote, trade, spread_sample, opportunity, gap, venue_status)"
                    ),
                )
            })?;
            kinds_mask |= 1 << kind as u32;
        }
        let stream = if self.stream.is_empty() {
            None
        } else {
            check_token("stream", &self.stream)?;
            if self.stream.contains(['/', '\\']) {
                return Err(invalid("stream", "must not contain '/' or '\\'"));
            }
            Some(self.stream.clone())
        };
        range("replicas", u64::from(self.replicas), 1, 5)?;
        range(
            "duplicate_window_ms",
            self.duplicate_window_ms,
            1_000,
            86_400_000,
        )?;
        range("max_bytes", self.max_bytes, 0, i64::MAX as u64)?;
        range("max_age_s", self.max_age_s, 0, 10 * 365 * 86_400)?;
        range("max_in_flight", u64::from(self.max_in_flight), 1, 65_536)?;
        range(
            "buffer_records",
            u64::from(self.buffer_records),
            1,
            16_777_216,
        )?;
        range("name_max_bytes", u64::from(self.name_max_bytes), 8, 255)?;
        range("ack_timeout_ms", self.ack_timeout_ms, 100, 600_000)?;
        range(
            "reconnect_delay_initial_ms",
            self.reconnect_delay_initial_ms,
            10,
            60_000,
        )?;
        range(
            "reconnect_delay_max_ms",
            self.reconnect_delay_max_ms,
            self.reconnect_delay_initial_ms,
            600_000,
        )?;
        range("heartbeat_ms", self.heartbeat_ms, 100, 60_000)?;
        range(
            "heartbeat_repeat_periods",
            u64::from(self.heartbeat_repeat_periods),
            1,
            1_000,
        )?;
        range("shutdown_drain_ms", self.shutdown_drain_ms, 0, 600_000)?;
        Ok(Settings {
            auth,
            servers,
            urls,
            prefix: self.prefix.clone(),
            collector,
            partitions: self.partitions,
            kinds_mask,
            encoding: self.encoding,
            stream,
            replicas: self.replicas as usize,
            storage: self.storage,
            duplicate_window: Duration::from_millis(self.duplicate_window_ms),
            max_bytes: self.max_bytes,
            max_age: Duration::from_secs(self.max_age_s),
            max_in_flight: self.max_in_flight as usize,
            buffer_records: self.buffer_records as usize,
            when_full: self.when_full,
            name_max_bytes: self.name_max_bytes as usize,
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
            reconnect_delay_initial: Duration::from_millis(self.reconnect_delay_initial_ms),
            reconnect_delay_max: Duration::from_millis(self.reconnect_delay_max_ms),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            heartbeat_repeat_for: Duration::from_millis(self.heartbeat_ms)
                .saturating_mul(self.heartbeat_repeat_periods),
            shutdown_drain: Duration::from_millis(self.shutdown_drain_ms),
        })
    }
}

/// Bytes one buffered or in-flight message holds at most: its payload (binary, or JSON — a
/// record's JSON object stays under 1 KiB plus its names, escaped), its subject,
/// the message id and the bookkeeping around them, with allocator slack.
pub fn message_bytes_bound(settings: &Settings) -> u64 {
    let names = 3 * (1 + settings.name_max_bytes) as u64;
    let collector = (1 + settings.collector.len()) as u64;
    let payload = match settings.encoding {
        Encoding::Binary => (HEADER_BYTES + BODY_MAX_BYTES) as u64 + collector + names,
        // JSON escapes a control character as 6 bytes (`\u0000`).
        Encoding::Json => 1024 + 6 * (collector + names),
    };
    let subject = settings.prefix.len() as u64 + 32 + names;
    let message_id = collector + 21;
    // The message struct, two allocations' headers each for payload, subject and id.
    payload + subject + message_id + 128 + 6 * 16
}

/// The most memory one instance holds: the buffer and the in-flight publishes at their bound
/// (the NATS client's own command queue holds at most the in-flight ones), the name caches, the
/// runtime thread's stack and the client's read and write buffers.
pub fn memory_bound_bytes(settings: &Settings) -> u64 {
    let per_message = message_bytes_bound(settings);
    let messages = settings.buffer_records as u64 + 2 * settings.max_in_flight as u64;
    let name_cache = crate::NAME_CACHE_MAX as u64 * (settings.name_max_bytes as u64 + 64);
    messages * per_message + name_cache + 4 * 1024 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, String> {
        let config: NatsConfig =
            tickflow_sdk::toml::from_str(text).map_err(|error| error.to_string())?;
        config.validate().map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_valid_given_a_collector() {
        let settings = parse(r#"collector = "c1""#).expect("defaults validate");
        assert_eq!(settings.prefix, "tickflow");
        assert_eq!(settings.partitions, 16);
        assert!(WireKind::ALL.iter().all(|kind| settings.publishes(*kind)));
        assert_eq!(settings.collector, "c1");
        assert_eq!(settings.stream.as_deref(), Some("TICKFLOW"));
        let bound = memory_bound_bytes(&settings);
        assert!(bound > 65_536 * 300 && bound < 256 * 1024 * 1024, "{bound}");
    }

    #[test]
    fn a_cluster_is_a_list() {
        let settings = parse(
            r#"url = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
collector = "eu-1"
kinds = ["quote", "venue_status"]
encoding = "json""#,
        )
        .expect("valid");
        assert_eq!(settings.servers.len(), 2);
        assert!(settings.publishes(WireKind::Quote));
        assert!(!settings.publishes(WireKind::Trade));
        assert_eq!(settings.encoding, Encoding::Json);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            (r#"url = "http://x:1""#, "url"),
            (r#"url = []"#, "url"),
            (r#"prefix = "a.*""#, "prefix"),
            (r#"prefix = """#, "prefix"),
            (r#"collector = "a.b""#, "collector"),
            ("", "collector"),
            ("partitions = 0", "partitions"),
            (r#"kinds = ["telemetry"]"#, "kinds"),
            (r#"kinds = []"#, "kinds"),
            (r#"stream = "a b""#, "stream"),
            ("max_in_flight = 0", "max_in_flight"),
            ("buffer_records = 0", "buffer_records"),
            (
                "reconnect_delay_initial_ms = 500\nreconnect_delay_max_ms = 100",
                "reconnect_delay_max_ms",
            ),
            ("heartbeat_ms = 1", "heartbeat_ms"),
            ("heartbeat_repeat_periods = 0", "heartbeat_repeat_periods"),
        ] {
            let text = if key == "collector" {
                text.to_string()
            } else {
                format!("collector = \"c1\"\n{text}")
            };
            let error = parse(&text).expect_err(&text);
            assert!(error.contains(key), "{text}: {error}");
        }
        assert!(
            parse("collector = \"c1\"\nunknown_key = 1")
                .expect_err("refused")
                .contains("unknown_key")
        );
        assert!(parse(r#"encoding = "xml""#).is_err());
        assert!(parse(r#"when_full = "block""#).is_err());
    }

    #[test]
    fn backoff_doubles_to_the_max() {
        let settings = parse(
            "collector = \"c1\"\nreconnect_delay_initial_ms = 100\nreconnect_delay_max_ms = 1000",
        )
        .expect("valid");
        assert_eq!(settings.backoff(1), Duration::from_millis(100));
        assert_eq!(settings.backoff(2), Duration::from_millis(200));
        assert_eq!(settings.backoff(4), Duration::from_millis(800));
        assert_eq!(settings.backoff(5), Duration::from_millis(1000));
        assert_eq!(settings.backoff(500), Duration::from_millis(1000));
    }

    #[test]
    fn the_memory_bound_grows_with_the_buffers_and_refuses_bad_configs() {
        use tickflow_sdk::Sink;
        let base = NatsConfig {
            collector: Some("c1".into()),
            ..NatsConfig::default()
        };
        let small = NatsConfig {
            buffer_records: 1_000,
            ..base.clone()
        };
        let large = NatsConfig {
            buffer_records: 100_000,
            ..base.clone()
        };
        let bound = |config: &NatsConfig| {
            <crate::NatsSink as Sink>::memory_bound_bytes(config)
                .expect("valid")
                .expect("stated")
        };
        assert!(bound(&large) > bound(&small) + 99_000 * 300);
        let invalid = NatsConfig {
            partitions: 0,
            ..base.clone()
        };
        assert!(<crate::NatsSink as Sink>::memory_bound_bytes(&NatsConfig::default()).is_err());
        assert!(<crate::NatsSink as Sink>::memory_bound_bytes(&invalid).is_err());
    }
}
