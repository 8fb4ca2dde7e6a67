//! `[[sources]]`: a NATS JetStream source's settings, their defaults and validation (errors name
//! the key, `sources[i].<key>`). No I/O but reading the secret files (`token_file`,
//! `password_file`).

use serde::Deserialize;

/// `[[sources]] kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A durable JetStream pull consumer (this crate).
    Nats,
}

/// One `[[sources]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// Server addresses, `nats://host:port` (several for a cluster).
    pub url: Vec<String>,
    /// The JetStream stream the collectors publish into.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Durable consumer name; the source's consumers are `<durable>-p<partition>` per partition
    /// (or `<durable>-<n>` per entry of `subjects`) and `<durable>-hb` for the heartbeats (one
    /// per subject filter: nats-server 2.9 filters a consumer by one subject). Named by what they
    /// read, so editing `partitions` keeps every other partition's position.
    pub durable: String,
    /// Subject filters, one consumer each (`tickflow.*.3.>`). Empty: made from `partitions`.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// The symbol partitions this aggregator owns (`<prefix>.*.<p>.>` each).
    #[serde(default)]
    pub partitions: Vec<u32>,
    /// Partitions the collectors cut the symbols into (every collector uses the same number).
    #[serde(default = "default_partition_count")]
    pub partition_count: u32,
    /// The collectors' subject prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Record kinds applied (`quote`, `trade`, `gap`); messages of other kinds are acknowledged
    /// and counted as skipped.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    /// A (collector, venue) not heard from (heartbeat or data) for this long, or whose heartbeat
    /// says no connection is up, is not live: its quotes get `GAP_DISCONNECT`. 0: no liveness.
    #[serde(default = "default_heartbeat_timeout_ms")]
    pub heartbeat_timeout_ms: u64,
    /// Most messages delivered and not yet acknowledged, per consumer (JetStream's
    /// `max_ack_pending`): bounds what the client buffers.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: u32,
    /// Records whose timestamp is more than this ahead of local wall time are refused and
    /// counted (`refused_clock_ahead`): one bad clock must not move an event-time shard clock.
    #[serde(default = "default_max_clock_ahead_ms")]
    pub max_clock_ahead_ms: u64,
    /// JetStream redelivers a message not acknowledged within this.
    #[serde(default = "default_ack_wait_ms")]
    pub ack_wait_ms: u64,
    /// Most collectors told apart (duplicate filter, liveness); others are applied unfiltered and
    /// counted.
    #[serde(default = "default_max_collectors")]
    pub max_collectors: usize,
    /// Longest a connection attempt waits.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Reconnect backoff: first wait, doubled up to `reconnect_backoff_max_ms`.
    #[serde(default = "default_reconnect_backoff_initial_ms")]
    pub reconnect_backoff_initial_ms: u64,
    #[serde(default = "default_reconnect_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
    /// Create the stream (subjects `<prefix>.>`, file storage, limits below) when it does not
    /// exist. Production streams are made by the operator (docs/scale-out.md).
    #[serde(default)]
    pub create_stream: bool,
    /// `create_stream`: the stream's age limit (0: none).
    #[serde(default = "default_stream_max_age_ms")]
    pub stream_max_age_ms: u64,
    /// `create_stream`: the stream's size limit (oldest messages go first).
    #[serde(default = "default_stream_max_bytes")]
    pub stream_max_bytes: i64,
    /// `create_stream`: replicas of the stream (3 on a three-node cluster).
    #[serde(default = "default_stream_replicas")]
    pub stream_replicas: usize,
    /// `create_stream`: the window within which JetStream drops a message id it already stored.
    #[serde(default = "default_duplicate_window_ms")]
    pub duplicate_window_ms: u64,
    /// Hold records up to this long and release them in receive-time order (`reorder.rs`), so
    /// collectors' messages interleaved differently in the stream reach the shards in the order
    /// they were received: with `[windows] clock = "event"`, the aggregators' answer then does not
    /// depend on arrival order. Adds up to this much latency. 0: records go on as they arrive.
    /// Must stay below half of `ack_wait_ms` (held records are not acknowledged yet).
    #[serde(default)]
    pub reorder_window_ms: u64,
    /// Authentication (tickflow_formats::nats_auth): a `token` (or `token_file`), or a `user`
    /// with a `password` (or `password_file`); none by default.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
}

fn default_stream() -> String {
    "TICKFLOW".into()
}
fn default_partition_count() -> u32 {
    16
}
fn default_prefix() -> String {
    "tickflow".into()
}
fn default_kinds() -> Vec<String> {
    vec!["quote".into(), "trade".into(), "gap".into()]
}
fn default_heartbeat_timeout_ms() -> u64 {
    5_000
}
fn default_max_ack_pending() -> u32 {
    4_096
}
fn default_max_clock_ahead_ms() -> u64 {
    5_000
}
fn default_ack_wait_ms() -> u64 {
    30_000
}
fn default_max_collectors() -> usize {
    64
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_reconnect_backoff_initial_ms() -> u64 {
    100
}
fn default_reconnect_backoff_max_ms() -> u64 {
    5_000
}
fn default_stream_max_age_ms() -> u64 {
    24 * 3_600_000
}
fn default_stream_max_bytes() -> i64 {
    1 << 30
}
fn default_stream_replicas() -> usize {
    1
}
fn default_duplicate_window_ms() -> u64 {
    120_000
}

/// Largest `max_ack_pending` (bounds the client's buffered messages).
pub const MAX_ACK_PENDING_LIMIT: u32 = 1 << 20;
/// Most subject filters (consumers) one source runs.
pub const MAX_SUBJECTS: usize = 256;
/// Longest any duration key may be.
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// A `[[sources]]` value out of range; names its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `sources[{index}].{key}` {reason} (got {value})")]
pub struct SourceConfigError {
    pub index: usize,
    pub key: &'static str,
    pub value: String,
    pub reason: String,
}

/// A NATS subject token or name: non-empty, no whitespace, no `.`, `*`, `>`.
fn is_plain_token(text: &str) -> bool {
    !text.is_empty()
        && !text
            .chars()
            .any(|character| matches!(character, '.' | '*' | '>') || character.is_whitespace())
}

/// A subject (filter): dot-separated non-empty tokens without whitespace; `>` only last.
fn is_subject_filter(text: &str) -> bool {
    let tokens: Vec<&str> = text.split('.').collect();
    !text.is_empty()
        && tokens.iter().enumerate().all(|(position, token)| {
            !token.is_empty()
                && !token.chars().any(char::is_whitespace)
                && (*token == "*"
                    || *token == ">" && position + 1 == tokens.len()
                    || !token.contains(['*', '>']))
        })
}

impl SourceConfig {
    /// The subject filters, one consumer each: `subjects`, or `<prefix>.*.<p>.>` per partition.
    pub fn subject_filters(&self) -> Vec<String> {
        if !self.subjects.is_empty() {
            return self.subjects.clone();
        }
        self.partitions
            .iter()
            .map(|partition| format!("{}.*.{partition}.>", self.prefix))
            .collect()
    }

    /// The durable consumer names, one per [`SourceConfig::subject_filters`] entry, in order.
    pub fn consumer_names(&self) -> Vec<String> {
        if !self.subjects.is_empty() {
            return (0..self.subjects.len())
                .map(|index| format!("{}-{index}", self.durable))
                .collect();
        }
        self.partitions
            .iter()
            .map(|partition| format!("{}-p{partition}", self.durable))
            .collect()
    }

    /// The heartbeat consumer's durable name, `<durable>-hb`.
    pub fn heartbeat_consumer_name(&self) -> String {
        format!("{}-hb", self.durable)
    }

    /// The heartbeat filter, `<prefix>.heartbeat.>` (a consumer of its own), when liveness is on.
    pub fn heartbeat_filter(&self) -> Option<String> {
        (self.heartbeat_timeout_ms > 0).then(|| format!("{}.heartbeat.>", self.prefix))
    }

    /// Checks every key; `index` is the table's position (for the error's key).
    pub fn validate(&self, index: usize) -> Result<(), SourceConfigError> {
        let fail = |key: &'static str, value: &dyn std::fmt::Display, reason: &str| {
            Err(SourceConfigError {
                index,
                key,
                value: value.to_string(),
                reason: reason.to_string(),
            })
        };
        if self.url.is_empty() {
            return fail("url", &"[]", "must list at least one nats://host:port");
        }
        for url in &self.url {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                return fail("url", url, "is not a server address (nats://host:port)");
            }
        }
        if !is_plain_token(&self.stream) {
            return fail(
                "stream",
                &self.stream,
                "must be a non-empty name without spaces, `.`, `*` or `>`",
            );
        }
        if !is_plain_token(&self.durable) {
            return fail(
                "durable",
                &self.durable,
                "must be a non-empty name without spaces, `.`, `*` or `>`",
            );
        }
        if !is_subject_filter(&self.prefix) || self.prefix.contains(['*', '>']) {
            return fail(
                "prefix",
                &self.prefix,
                "must be a subject without wildcards (`tickflow`)",
            );
        }
        if self.partition_count == 0 || self.partition_count > 65_536 {
            return fail(
                "partition_count",
                &self.partition_count,
                "must be 1 to 65536",
            );
        }
        if let Some(partition) = self
            .partitions
            .iter()
            .find(|partition| **partition >= self.partition_count)
        {
            return fail(
                "partitions",
                partition,
                "must each be below partition_count",
            );
        }
        if self.subjects.is_empty() == self.partitions.is_empty() {
            return fail(
                "subjects",
                &format!("{:?}", self.subjects),
                "give either subjects or partitions (one of them, not both)",
            );
        }
        if let Some(subject) = self
            .subjects
            .iter()
            .find(|subject| !is_subject_filter(subject))
        {
            return fail("subjects", subject, "must be NATS subject filters");
        }
        let filters = self.subject_filters().len() + usize::from(self.heartbeat_timeout_ms > 0);
        if filters > MAX_SUBJECTS {
            return fail(
                "subjects",
                &filters,
                "make too many consumers (at most 256)",
            );
        }
        for kind in &self.kinds {
            if !matches!(kind.as_str(), "quote" | "trade" | "gap") {
                return fail("kinds", kind, "must each be quote, trade or gap");
            }
        }
        if self.kinds.is_empty() {
            return fail("kinds", &"[]", "must name at least one kind");
        }
        if self.heartbeat_timeout_ms > MAX_DURATION_MS {
            return fail(
                "heartbeat_timeout_ms",
                &self.heartbeat_timeout_ms,
                "must be at most 86400000",
            );
        }
        if self.max_ack_pending == 0 || self.max_ack_pending > MAX_ACK_PENDING_LIMIT {
            return fail(
                "max_ack_pending",
                &self.max_ack_pending,
                "must be 1 to 1048576",
            );
        }
        for (key, value) in [
            ("ack_wait_ms", self.ack_wait_ms),
            ("max_clock_ahead_ms", self.max_clock_ahead_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            (
                "reconnect_backoff_initial_ms",
                self.reconnect_backoff_initial_ms,
            ),
            ("reconnect_backoff_max_ms", self.reconnect_backoff_max_ms),
            ("duplicate_window_ms", self.duplicate_window_ms),
        ] {
            if value == 0 || value > MAX_DURATION_MS {
                return fail(key, &value, "must be 1 to 86400000");
            }
        }
        if self.stream_max_age_ms > 365 * MAX_DURATION_MS {
            return fail(
                "stream_max_age_ms",
                &self.stream_max_age_ms,
                "must be at most a year",
            );
        }
        if self.stream_max_bytes < 1 << 20 {
            return fail(
                "stream_max_bytes",
                &self.stream_max_bytes,
                "must be at least 1 MiB",
            );
        }
        if self.stream_replicas == 0 || self.stream_replicas > 5 {
            return fail("stream_replicas", &self.stream_replicas, "must be 1 to 5");
        }
        if self.max_collectors == 0 || self.max_collectors > 4_096 {
            return fail("max_collectors", &self.max_collectors, "must be 1 to 4096");
        }
        if let Err(error) = self.auth() {
            return Err(SourceConfigError {
                index,
                key: error.key,
                value: "(secret not shown)".into(),
                reason: error.reason,
            });
        }
        if self.reorder_window_ms > 0 && self.reorder_window_ms * 2 > self.ack_wait_ms {
            return fail(
                "reorder_window_ms",
                &self.reorder_window_ms,
                "must be below half of ack_wait_ms (held records are not acknowledged yet)",
            );
        }
        Ok(())
    }

    /// The credentials the source connects with (reads the secret files).
    pub fn auth(
        &self,
    ) -> Result<tickflow_formats::nats_auth::NatsAuth, tickflow_formats::nats_auth::NatsAuthError>
    {
        tickflow_formats::nats_auth::nats_auth(
            self.token.as_deref(),
            self.token_file.as_deref(),
            self.user.as_deref(),
            self.password.as_deref(),
            self.password_file.as_deref(),
        )
    }

    /// Whether records of `kind` (`quote`, `trade`, `gap`) are applied.
    pub fn applies(&self, kind: &str) -> bool {
        self.kinds.iter().any(|wanted| wanted == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SourceConfig {
        toml::from_str(text).expect("valid TOML for SourceConfig")
    }

    const BASE: &str = "kind = \"nats\"\nurl = [\"nats://127.0.0.1:4222\"]\ndurable = \"agg-0\"\n";

    #[test]
    fn partitions_make_one_filter_each() {
        let config = parse(&format!("{BASE}partitions = [0, 3]\n"));
        config.validate(0).expect("valid");
        assert_eq!(
            config.subject_filters(),
            vec!["tickflow.*.0.>".to_string(), "tickflow.*.3.>".to_string()]
        );
        assert_eq!(
            config.heartbeat_filter().as_deref(),
            Some("tickflow.heartbeat.>")
        );
        assert_eq!(
            config.consumer_names(),
            vec!["agg-0-p0".to_string(), "agg-0-p3".to_string()]
        );
        assert_eq!(config.heartbeat_consumer_name(), "agg-0-hb");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("partitions = [16]\n", "sources[2].partitions"),
            ("subjects = [\"a..b\"]\n", "sources[2].subjects"),
            (
                "partitions = [1]\nmax_ack_pending = 0\n",
                "sources[2].max_ack_pending",
            ),
            (
                "partitions = [1]\nkinds = [\"spread\"]\n",
                "sources[2].kinds",
            ),
            ("", "sources[2].subjects"),
            (
                "partitions = [1]\nack_wait_ms = 1000\nreorder_window_ms = 600\n",
                "sources[2].reorder_window_ms",
            ),
            ("partitions = [1]\nuser = \"agg\"\n", "sources[2].user"),
            (
                "partitions = [1]\ntoken = \"t\"\npassword = \"p\"\nuser = \"u\"\n",
                "sources[2].token",
            ),
        ];
        for (extra, key) in cases {
            let error = parse(&format!("{BASE}{extra}"))
                .validate(2)
                .expect_err(extra);
            assert!(error.to_string().contains(key), "{extra}: {error}");
        }
        let mut config = parse(&format!("{BASE}partitions = [1]\n"));
        config.url = vec!["not a url at all".into()];
        let error = config.validate(0).expect_err("bad url");
        assert!(error.to_string().contains("sources[0].url"), "{error}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let result: Result<SourceConfig, _> =
            toml::from_str(&format!("{BASE}partitions = [1]\nbogus = 1\n"));
        assert!(result.is_err());
    }
}
