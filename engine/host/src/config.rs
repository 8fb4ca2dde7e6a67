//! `[[sinks]]` in the engine's config: which plugins to load and how each one's rings behave.
//!
//! Validation checks every value and then inspects every non-optional plugin's descriptor, so
//! `tickflow check-config` reports a plugin the engine would refuse, in the same words.

use std::path::PathBuf;

use serde::Deserialize;

use super::loader::{self, Refusal};

/// Most sinks one engine runs (each costs a thread and a ring per shard).
pub const MAX_SINKS: usize = 32;

/// What a sink's ring does when it is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkPolicy {
    /// Wait up to `block_timeout_ms` for room (and at most that much per second in total), then
    /// drop the record and count it: fewer drops for a briefly slow sink, never lossless.
    Block,
    /// Drop the record that does not fit and count it.
    #[default]
    DropNewest,
    /// Make room by dropping the oldest record in the ring and count it.
    DropOldest,
    /// Keep the latest record per (kind, symbol, venues) while the ring is full; events
    /// (opportunities, gaps) that do not fit are dropped and counted.
    Conflate,
}

impl SinkPolicy {
    pub fn name(self) -> &'static str {
        match self {
            SinkPolicy::Block => "block",
            SinkPolicy::DropNewest => "drop_newest",
            SinkPolicy::DropOldest => "drop_oldest",
            SinkPolicy::Conflate => "conflate",
        }
    }
}

/// One `[[sinks]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// This sink's name in logs and metrics (`[A-Za-z0-9_-]`, unique).
    pub name: String,
    /// The plugin's shared library (relative paths are relative to the working directory).
    pub path: PathBuf,
    /// When true, a plugin that is refused or fails to start is logged and skipped instead of
    /// stopping the engine.
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub policy: SinkPolicy,
    /// Capacity of each shard → sink ring (one per shard).
    #[serde(default = "default_ring_capacity_records")]
    pub ring_capacity_records: usize,
    /// Most records handed to the plugin in one `on_batch` call.
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// `block` policy: the longest a shard waits for room for one record, and the most it waits
    /// in total per second on this sink's lane (its blocking budget); past either it drops and
    /// counts. `block` reduces drops for a briefly slow sink; it is not lossless.
    #[serde(default = "default_block_timeout_ms")]
    pub block_timeout_ms: u64,
    /// `conflate` policy: most distinct keys held per shard while the ring is full.
    #[serde(default = "default_conflate_keys_max")]
    pub conflate_keys_max: usize,
    /// At shutdown, the longest the host waits for this sink's runner (draining, flush,
    /// destroy); past it the runner thread is abandoned (logged) so a plugin stuck in a call
    /// cannot keep the engine from exiting. Its library and host table stay valid meanwhile.
    #[serde(default = "default_shutdown_deadline_ms")]
    pub shutdown_deadline_ms: u64,
    /// Consecutive failed calls (error or panic) after which the instance is restarted.
    #[serde(default = "default_restart_after_failures")]
    pub restart_after_failures: u32,
    /// First wait before a restart; doubles with each restart up to `restart_backoff_max_ms`.
    #[serde(default = "default_restart_backoff_initial_ms")]
    pub restart_backoff_initial_ms: u64,
    #[serde(default = "default_restart_backoff_max_ms")]
    pub restart_backoff_max_ms: u64,
    /// Restarts after which the sink is disabled for the rest of the run (0: disable at once).
    #[serde(default = "default_disable_after_restarts")]
    pub disable_after_restarts: u32,
    /// Passed to the plugin's `create` as TOML text.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_ring_capacity_records() -> usize {
    4096
}
fn default_batch_max_records() -> usize {
    256
}
fn default_block_timeout_ms() -> u64 {
    10
}
fn default_conflate_keys_max() -> usize {
    4096
}
fn default_restart_after_failures() -> u32 {
    3
}
fn default_restart_backoff_initial_ms() -> u64 {
    100
}
fn default_restart_backoff_max_ms() -> u64 {
    10_000
}
fn default_shutdown_deadline_ms() -> u64 {
    5_000
}

fn default_disable_after_restarts() -> u32 {
    5
}

impl SinkConfig {
    /// A sink with every default, for `name` at `path`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> SinkConfig {
        SinkConfig {
            name: name.into(),
            path: path.into(),
            optional: false,
            policy: SinkPolicy::default(),
            ring_capacity_records: default_ring_capacity_records(),
            batch_max_records: default_batch_max_records(),
            block_timeout_ms: default_block_timeout_ms(),
            conflate_keys_max: default_conflate_keys_max(),
            shutdown_deadline_ms: default_shutdown_deadline_ms(),
            restart_after_failures: default_restart_after_failures(),
            restart_backoff_initial_ms: default_restart_backoff_initial_ms(),
            restart_backoff_max_ms: default_restart_backoff_max_ms(),
            disable_after_restarts: default_disable_after_restarts(),
            config: toml::Table::new(),
        }
    }

    /// The `config` table as the TOML text the plugin receives.
    pub fn config_text(&self) -> String {
        toml::to_string(&self.config).unwrap_or_default()
    }
}

/// A bad `[[sinks]]` entry.
#[derive(Debug, thiserror::Error)]
pub enum SinkConfigError {
    #[error("config key `sinks[{index}].{key}` ({name}) = {value}: {reason}")]
    Invalid {
        index: usize,
        name: String,
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("config key `sinks`: {count} sinks, at most {MAX_SINKS}")]
    TooMany { count: usize },
    #[error("config key `sinks[{index}].path`: {refusal}")]
    Refused { index: usize, refusal: Refusal },
}

fn invalid(
    index: usize,
    sink: &SinkConfig,
    key: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> SinkConfigError {
    SinkConfigError::Invalid {
        index,
        name: sink.name.clone(),
        key,
        value: value.to_string(),
        reason,
    }
}

/// Checks every `[[sinks]]` value, then each non-optional plugin's descriptor (loading the
/// library; libraries stay loaded). Optional plugins are checked when the host starts.
pub fn validate_sinks(sinks: &[SinkConfig]) -> Result<(), SinkConfigError> {
    validate_sink_values(sinks)?;
    for (index, sink) in sinks.iter().enumerate() {
        if sink.optional {
            continue;
        }
        loader::load(&sink.name, &sink.path)
            .map_err(|refusal| SinkConfigError::Refused { index, refusal })?;
    }
    Ok(())
}

/// The value checks of [`validate_sinks`], without loading anything.
pub fn validate_sink_values(sinks: &[SinkConfig]) -> Result<(), SinkConfigError> {
    if sinks.len() > MAX_SINKS {
        return Err(SinkConfigError::TooMany { count: sinks.len() });
    }
    for (index, sink) in sinks.iter().enumerate() {
        let name_ok = !sink.name.is_empty()
            && sink.name.len() <= 64
            && sink
                .name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
        if !name_ok {
            return Err(invalid(
                index,
                sink,
                "name",
                format!("{:?}", sink.name),
                "must be 1 to 64 of A-Z a-z 0-9 _ -",
            ));
        }
        if sinks[..index]
            .iter()
            .any(|earlier| earlier.name == sink.name)
        {
            return Err(invalid(index, sink, "name", &sink.name, "must be unique"));
        }
        if sink.path.as_os_str().is_empty() {
            return Err(invalid(
                index,
                sink,
                "path",
                "\"\"",
                "must name a shared library",
            ));
        }
        if sink.ring_capacity_records < 16 || sink.ring_capacity_records > (1 << 20) {
            return Err(invalid(
                index,
                sink,
                "ring_capacity_records",
                sink.ring_capacity_records,
                "must be 16 to 1048576",
            ));
        }
        if sink.batch_max_records == 0 || sink.batch_max_records > 65_536 {
            return Err(invalid(
                index,
                sink,
                "batch_max_records",
                sink.batch_max_records,
                "must be 1 to 65536",
            ));
        }
        if sink.block_timeout_ms == 0 || sink.block_timeout_ms > 10_000 {
            return Err(invalid(
                index,
                sink,
                "block_timeout_ms",
                sink.block_timeout_ms,
                "must be 1 to 10000",
            ));
        }
        if sink.conflate_keys_max == 0 || sink.conflate_keys_max > (1 << 20) {
            return Err(invalid(
                index,
                sink,
                "conflate_keys_max",
                sink.conflate_keys_max,
                "must be 1 to 1048576",
            ));
        }
        if sink.restart_after_failures == 0 {
            return Err(invalid(
                index,
                sink,
                "restart_after_failures",
                sink.restart_after_failures,
                "must be > 0",
            ));
        }
        if sink.restart_backoff_initial_ms == 0
            || sink.restart_backoff_initial_ms > sink.restart_backoff_max_ms
        {
            return Err(invalid(
                index,
                sink,
                "restart_backoff_initial_ms",
                sink.restart_backoff_initial_ms,
                "must be > 0 and <= restart_backoff_max_ms",
            ));
        }
        if sink.shutdown_deadline_ms > 600_000 {
            return Err(invalid(
                index,
                sink,
                "shutdown_deadline_ms",
                sink.shutdown_deadline_ms,
                "must be at most 600000",
            ));
        }
        if sink.restart_backoff_max_ms > 600_000 {
            return Err(invalid(
                index,
                sink,
                "restart_backoff_max_ms",
                sink.restart_backoff_max_ms,
                "must be at most 600000",
            ));
        }
        if sink.disable_after_restarts > 1_000 {
            return Err(invalid(
                index,
                sink,
                "disable_after_restarts",
                sink.disable_after_restarts,
                "must be at most 1000",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<SinkConfig> {
        #[derive(Deserialize)]
        struct Wrapper {
            sinks: Vec<SinkConfig>,
        }
        toml::from_str::<Wrapper>(text)
            .expect("test config parses")
            .sinks
    }

    fn check_invalid(text: &str, key: &str) {
        let error = validate_sink_values(&parse(text)).expect_err("should be refused");
        let message = error.to_string();
        assert!(message.contains(key), "{message:?} should name {key:?}");
    }

    #[test]
    fn defaults_and_config_text() {
        let sinks = parse(
            "[[sinks]]\nname = \"a\"\npath = \"x.so\"\n[sinks.config]\npath = \"/tmp/out\"\nnames = true\n",
        );
        assert_eq!(sinks[0].policy, SinkPolicy::DropNewest);
        assert_eq!(sinks[0].ring_capacity_records, 4096);
        let text = sinks[0].config_text();
        assert!(text.contains("path = \"/tmp/out\""), "{text}");
        validate_sink_values(&sinks).expect("defaults are valid");
    }

    #[test]
    fn bad_values_name_their_key() {
        check_invalid("[[sinks]]\nname = \"a b\"\npath = \"x\"", "sinks[0].name");
        check_invalid(
            "[[sinks]]\nname = \"a\"\npath = \"x\"\n[[sinks]]\nname = \"a\"\npath = \"y\"",
            "sinks[1].name",
        );
        check_invalid(
            "[[sinks]]\nname = \"a\"\npath = \"x\"\nring_capacity_records = 2",
            "sinks[0].ring_capacity_records",
        );
        check_invalid(
            "[[sinks]]\nname = \"a\"\npath = \"x\"\nbatch_max_records = 0",
            "sinks[0].batch_max_records",
        );
        check_invalid(
            "[[sinks]]\nname = \"a\"\npath = \"x\"\nrestart_backoff_initial_ms = 20000",
            "sinks[0].restart_backoff_initial_ms",
        );
    }
}
