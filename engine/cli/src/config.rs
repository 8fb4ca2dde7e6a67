//! The engine's configuration file (TOML): the sections composed, parsed and validated.
//!
//! Each section belongs to the crate that uses it and validates itself with its own error:
//! `[engine]` and `[windows]` (tickflow-core), `[feeds]` (tickflow-feed), `[[sinks]]`
//! (tickflow-host). This module only reads the file, refuses unknown keys and wraps the sections'
//! errors; every bound the engine has comes from one of those sections or a named constant, and
//! the memory budget is computed from the same values.

use serde::Deserialize;

pub use tickflow_core::config::{
    AUTO_SHARDS_MAX, CoreConfigError, EngineConfig, MAX_DURATION_MS, MAX_THRESHOLDS, WindowsConfig,
};
pub use tickflow_feed::config::{FeedsConfig, FeedsConfigError};
pub use tickflow_host::config::{SinkConfig, SinkConfigError};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineConfig,
    pub windows: WindowsConfig,
    pub feeds: FeedsConfig,
    pub sinks: Vec<SinkConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config is not valid TOML or has an unknown key: {0}")]
    Parse(String),
    #[error(transparent)]
    Core(#[from] CoreConfigError),
    #[error(transparent)]
    Feeds(#[from] FeedsConfigError),
    #[error(transparent)]
    Sinks(#[from] SinkConfigError),
}

impl Config {
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|error| ConfigError::Parse(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    /// Shard threads to run: `engine.shards`, or one per core (at most `AUTO_SHARDS_MAX`) when 0.
    pub fn shard_count(&self) -> usize {
        self.engine.shard_count()
    }

    /// Every section's own checks, in file order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine.validate()?;
        self.feeds.validate()?;
        self.windows.validate()?;
        tickflow_host::config::validate_sinks(&self.sinks)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_invalid(text: &str, key: &str) {
        let error = Config::from_toml_str(text).expect_err("config should be refused");
        let message = error.to_string();
        assert!(message.contains(key), "{message:?} should name {key:?}");
    }

    #[test]
    fn empty_config_is_the_defaults() {
        let config = Config::from_toml_str("").unwrap();
        assert_eq!(config.engine.max_symbols, 1000);
        assert_eq!(config.windows.buckets, 3600);
        assert_eq!(config.windows.bucket_ms, 1000);
        assert_eq!(config.windows.max_windows, 56_000);
        assert_eq!(config.windows.thresholds_bp, vec![40.0]);
    }

    #[test]
    fn bad_values_name_their_key() {
        check_invalid("[engine]\nmax_symbols = 0", "engine.max_symbols");
        check_invalid(
            "[engine]\nring_capacity_records = 3",
            "engine.ring_capacity_records",
        );
        check_invalid("[windows]\nbuckets = 1", "windows.buckets");
        check_invalid("[windows]\nband_k = -1.0", "windows.band_k");
        check_invalid(
            "[windows]\nthresholds_bp = [40.0, -3.0]",
            "windows.thresholds_bp",
        );
        check_invalid("[windows]\nbucket_ms = 0", "windows.bucket_ms");
        check_invalid("[engine]\nmax_symbol = 5", "max_symbol");
        check_invalid("[engine]\nmax_symbols = \"many\"", "max_symbols");
    }
}
