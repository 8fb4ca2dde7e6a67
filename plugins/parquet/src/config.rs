//! `[sinks.config]` of the Parquet sink: parsing (TOML, unknown keys refused), validation with
//! errors naming the key, defaults, and the memory bound the sink states to the engine.

use std::path::PathBuf;

use tickflow_formats::Dataset;

const MIB: u64 = 1024 * 1024;
/// The largest record the sink buffers (`SpreadSample`, 96 bytes).
pub const MAX_RECORD_BYTES: u64 = 96;

/// A config that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Retention of one dataset: whole hour partitions are deleted, oldest first, once they are older
/// than `max_age_hours` (by the hour's end) or while the dataset holds more than `max_bytes`.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionRule {
    pub max_age_hours: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// `[sinks.config.retention]`: one rule per dataset.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub quotes: RetentionRule,
    pub trades: RetentionRule,
    pub spreads: RetentionRule,
    pub opportunities: RetentionRule,
    pub gaps: RetentionRule,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        let rule = |max_age_hours, max_gib: u64| RetentionRule {
            max_age_hours: Some(max_age_hours),
            max_bytes: Some(max_gib * GIB),
        };
        // Disk is bounded by default: at most 90 GiB in all (README, "Disk budget").
        RetentionConfig {
            quotes: rule(72, 32),
            trades: rule(72, 16),
            spreads: rule(7 * 24, 40),
            opportunities: rule(90 * 24, 1),
            gaps: rule(90 * 24, 1),
        }
    }
}

impl RetentionConfig {
    pub fn rule(&self, dataset: Dataset) -> &RetentionRule {
        match dataset {
            Dataset::Quotes => &self.quotes,
            Dataset::Trades => &self.trades,
            Dataset::Spreads => &self.spreads,
            Dataset::Opportunities => &self.opportunities,
            Dataset::Gaps => &self.gaps,
        }
    }
}

/// The sink's configuration (see the plugin README for every key).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    /// Directory holding one sub-directory per dataset.
    pub root: PathBuf,
    /// Datasets written; the others are not requested from the engine's records.
    pub datasets: Vec<String>,
    /// zstd compression level, 1 (fast) ..= 22.
    pub zstd_level: i32,
    /// Rows per row group (and the most rows handed to the writer at once).
    pub row_group_rows: usize,
    /// A file is committed once it holds this many bytes.
    pub roll_bytes: u64,
    /// Every file is committed at most this long after it was opened (rows become visible).
    pub roll_age_s: u64,
    /// The most memory the sink holds: buffered rows, the writer and compaction.
    pub memory_bound_mib: u64,
    /// Hour partitions buffered at once per dataset; a row of another hour commits the oldest.
    pub hours_in_flight: usize,
    /// Merge each closed hour of `spreads` into one file sorted by pair then time.
    pub compaction: bool,
    /// An hour is compacted this long after its end (late rows written after that are merged by
    /// a later pass).
    pub compaction_delay_s: u64,
    /// Keep one spread sample in `n` per pair: those whose bucket index (bucket start ÷ bucket
    /// duration) is a multiple of `n`. 1 keeps every sample.
    pub spreads_every_n_buckets: u64,
    /// Also keep every sample whose `max_bp` is at least this (full resolution where spreads are
    /// wide). Absent: only the `spreads_every_n_buckets` rule applies.
    pub spreads_keep_above_bp: Option<f64>,
    /// Names of symbols and venues cached by the writer.
    pub name_cache_entries: usize,
    /// First retry delay after a write fault; doubles per failure up to `fault_backoff_max_ms`.
    pub fault_backoff_initial_ms: u64,
    pub fault_backoff_max_ms: u64,
    /// Longest the shutdown flush waits for the writer to write and commit everything it holds
    /// (the stats the host reads next are exact when it did). Keep it below the sink's
    /// `shutdown_deadline_ms` (host default 5 000), which also covers draining and `destroy`.
    pub flush_timeout_ms: u64,
    pub retention: RetentionConfig,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            root: PathBuf::from("tickflow-data"),
            datasets: Dataset::ALL
                .iter()
                .map(|dataset| dataset.name().to_string())
                .collect(),
            zstd_level: 1,
            row_group_rows: 65_536,
            roll_bytes: 128 * MIB,
            roll_age_s: 60,
            memory_bound_mib: 64,
            hours_in_flight: 2,
            compaction: true,
            compaction_delay_s: 300,
            spreads_every_n_buckets: 60,
            spreads_keep_above_bp: None,
            name_cache_entries: 16_384,
            fault_backoff_initial_ms: 100,
            fault_backoff_max_ms: 10_000,
            // The host's default shutdown_deadline_ms is 5 000: 1 s is left for draining the
            // rings before and destroy after. With the default memory bound the writer holds
            // at most 32 MiB of rows, well under a second of writing.
            flush_timeout_ms: 4_000,
            retention: RetentionConfig::default(),
        }
    }
}

/// How the memory bound is split (see `ParquetConfig::budget`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The whole bound.
    pub total_bytes: u64,
    /// Rows buffered by the runner plus rows handed to the writer and not yet written.
    pub rows_bytes: u64,
    /// Buffered rows past which the largest partition is handed to the writer.
    pub handoff_bytes: u64,
    /// Rows read at once per compaction input.
    pub compaction_batch_rows: usize,
    /// Files merged in one compaction pass.
    pub compaction_fan_in: usize,
}

impl ParquetConfig {
    pub fn parse(text: &str) -> Result<ParquetConfig, ConfigError> {
        let config: ParquetConfig =
            toml::from_str(text).map_err(|error| ConfigError::Parse(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The enabled datasets, in [`Dataset::ALL`] order.
    pub fn enabled(&self) -> Vec<Dataset> {
        Dataset::ALL
            .into_iter()
            .filter(|dataset| self.datasets.iter().any(|name| name == dataset.name()))
            .collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.root.as_os_str().is_empty() {
            return Err(invalid("root", "must not be empty"));
        }
        for name in &self.datasets {
            if Dataset::from_name(name).is_none() {
                return Err(invalid(
                    "datasets",
                    format!(
                        "unknown dataset {name:?} (known: quotes, trades, spreads, opportunities, gaps)"
                    ),
                ));
            }
        }
        if self.enabled().is_empty() {
            return Err(invalid("datasets", "at least one dataset must be enabled"));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(invalid(
                "zstd_level",
                format!("must be 1..=22, got {}", self.zstd_level),
            ));
        }
        if !(1_024..=1_048_576).contains(&self.row_group_rows) {
            return Err(invalid(
                "row_group_rows",
                format!("must be 1024..=1048576, got {}", self.row_group_rows),
            ));
        }
        if self.roll_bytes < MIB {
            return Err(invalid("roll_bytes", "must be at least 1 MiB (1048576)"));
        }
        if !(1..=3_600).contains(&self.roll_age_s) {
            return Err(invalid("roll_age_s", "must be 1..=3600"));
        }
        if !(1..=24).contains(&self.hours_in_flight) {
            return Err(invalid("hours_in_flight", "must be 1..=24"));
        }
        if self.spreads_every_n_buckets == 0 {
            return Err(invalid("spreads_every_n_buckets", "must be at least 1"));
        }
        if let Some(threshold) = self.spreads_keep_above_bp {
            if !threshold.is_finite() {
                return Err(invalid("spreads_keep_above_bp", "must be a finite number"));
            }
        }
        if !(16..=1_000_000).contains(&self.name_cache_entries) {
            return Err(invalid("name_cache_entries", "must be 16..=1000000"));
        }
        if self.fault_backoff_initial_ms == 0
            || self.fault_backoff_max_ms < self.fault_backoff_initial_ms
        {
            return Err(invalid(
                "fault_backoff_initial_ms",
                "must be at least 1 and at most fault_backoff_max_ms",
            ));
        }
        if !(1..=3_600_000).contains(&self.flush_timeout_ms) {
            return Err(invalid("flush_timeout_ms", "must be 1..=3600000"));
        }
        if self.memory_bound_mib > 1 << 20 {
            return Err(invalid(
                "memory_bound_mib",
                "must be at most 1048576 (1 TiB)",
            ));
        }
        // Rows of one row group are converted to columns and encoded at once: that working set
        // (≈ 3 × the raw rows) and the buffered rows must both fit the bound.
        let chunk_bytes = self.row_group_rows as u64 * MAX_RECORD_BYTES;
        let needed = (8 * chunk_bytes).max(8 * MIB);
        if self.memory_bound_mib * MIB < needed {
            return Err(invalid(
                "memory_bound_mib",
                format!(
                    "must be at least {} MiB with row_group_rows = {} (8 × row_group_rows × 96 bytes, and at least 8 MiB)",
                    needed.div_ceil(MIB),
                    self.row_group_rows
                ),
            ));
        }
        for dataset in Dataset::ALL {
            let rule = self.retention.rule(dataset);
            if rule.max_age_hours == Some(0) {
                return Err(invalid(
                    "retention.<dataset>.max_age_hours",
                    format!("{}: must be at least 1", dataset.name()),
                ));
            }
        }
        Ok(())
    }

    /// The memory bound split into its parts. Half the bound is for rows (buffered and in flight
    /// to the writer); the other half is the writer's working set: one row group being encoded
    /// (≤ 3 × `row_group_rows` × 96 bytes, checked by `validate`), compaction's read batches
    /// and output row group, the name cache and open file metadata.
    pub fn budget(&self) -> MemoryBudget {
        let total_bytes = self.memory_bound_mib * MIB;
        let rows_bytes = total_bytes / 2;
        // Compaction: fan_in inputs × batch rows × (raw + decoded ≈ 2 × 160 bytes) ≤ 1/8.
        let compaction_fan_in = 16;
        let compaction_batch_rows =
            ((total_bytes / 8) / (compaction_fan_in as u64 * 320)).clamp(256, 8_192) as usize;
        MemoryBudget {
            total_bytes,
            rows_bytes,
            handoff_bytes: rows_bytes / 2,
            compaction_batch_rows,
            compaction_fan_in,
        }
    }
}

/// The most memory a sink built from `config_toml` holds, in bytes (the engine's budget line).
pub fn memory_bound_bytes(config_toml: &str) -> Result<u64, ConfigError> {
    Ok(ParquetConfig::parse(config_toml)?.budget().total_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_the_defaults() {
        let config = ParquetConfig::parse("").expect("defaults are valid");
        assert_eq!(config, ParquetConfig::default());
        assert_eq!(config.enabled(), Dataset::ALL.to_vec());
        assert_eq!(memory_bound_bytes("").expect("valid"), 64 * MIB);
        assert_eq!(
            memory_bound_bytes("memory_bound_mib = 128").expect("valid"),
            128 * MIB
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("zstd_level = 30", "zstd_level"),
            ("datasets = [\"quotes\", \"candles\"]", "datasets"),
            ("datasets = []", "datasets"),
            ("row_group_rows = 10", "row_group_rows"),
            ("memory_bound_mib = 4", "memory_bound_mib"),
            ("roll_age_s = 0", "roll_age_s"),
            ("flush_timeout_ms = 0", "flush_timeout_ms"),
            ("spreads_every_n_buckets = 0", "spreads_every_n_buckets"),
            ("colour = \"blue\"", "colour"),
            ("[retention.quotes]\nmax_days = 3", "max_days"),
            ("[retention.quotes]\nmax_age_hours = 0", "max_age_hours"),
        ];
        for (text, key) in cases {
            let error = ParquetConfig::parse(text).expect_err(text).to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }
}
