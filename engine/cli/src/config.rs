//! The engine's configuration file (TOML): the sections composed, parsed and validated.
//!
//! Each section belongs to the crate that uses it and validates itself with its own error:
//! `[engine]` and `[windows]` (tickflow-core), `[feeds]` (tickflow-feed), `[universe]`
//! (tickflow-universe), `[[sinks]]` (tickflow-host). This module only reads the file, refuses unknown keys and wraps the sections'
//! errors; every bound the engine has comes from one of those sections or a named constant, and
//! the memory budget is computed from the same values.

use serde::Deserialize;

pub use tickflow_control::HttpConfig;
pub use tickflow_core::config::{
    AUTO_SHARDS_MAX, ConfigValueError, EngineConfig, MAX_DURATION_MS, MAX_THRESHOLDS, WindowsConfig,
};
use tickflow_core::venue::Venue;
pub use tickflow_feed::config::{Channel, FeedsConfig};
pub use tickflow_host::config::{SinkConfig, SinkConfigError};
pub use tickflow_source_nats::{SourceConfig, SourceConfigError};
pub use tickflow_universe::UniverseConfig;

/// Records a sink lane holds beyond two per window of its shard (quotes, trades, events).
const SINK_LANE_HEADROOM_RECORDS: usize = 4_096;
/// The largest lane `[[sinks]] ring_capacity_records` allows.
const SINK_LANE_MAX_RECORDS: usize = 1 << 20;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineConfig,
    pub windows: WindowsConfig,
    pub feeds: FeedsConfig,
    pub universe: UniverseConfig,
    /// `[http]`: the control plane (tickflow-control).
    pub http: HttpConfig,
    pub sinks: Vec<SinkConfig>,
    /// `[[sources]]`: inputs beside the feeds (a NATS JetStream consumer, tickflow-source-nats);
    /// each takes one connection slot's producer.
    pub sources: Vec<SourceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let mut config = Config {
            engine: EngineConfig::default(),
            windows: WindowsConfig::default(),
            feeds: FeedsConfig::default(),
            universe: UniverseConfig::default(),
            http: HttpConfig::default(),
            sinks: Vec::new(),
            sources: Vec::new(),
        };
        config.derive_across_sections();
        config
    }
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
    /// A value of `[engine]`, `[windows]` or `[feeds]`.
    #[error(transparent)]
    Value(#[from] ConfigValueError),
    #[error(transparent)]
    Sinks(#[from] SinkConfigError),
    /// A value of `[[sources]]`.
    #[error(transparent)]
    Sources(#[from] SourceConfigError),
    /// A value of `[http]`.
    #[error(transparent)]
    Http(#[from] tickflow_control::HttpConfigError),
    /// The feeds cannot be planned within `[engine]` (too many slots or symbols).
    #[error(transparent)]
    Plan(#[from] tickflow_feed::PlanError),
}

impl Config {
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|error| ConfigError::Parse(error.to_string()))?;
        // Derived first, so the derived lane sizes are validated like configured ones (the
        // derivation only reads sizes, and saturates, so unvalidated values cannot hurt it).
        config.derive_across_sections();
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

    /// True when the universe is discovered from the venues: venues are enabled
    /// (`[feeds.venue.<name>]`) and `[feeds]` lists no symbols by hand (a hand-written list
    /// replaces discovery; without venues there is nothing to discover).
    pub fn discovers(&self) -> bool {
        !self.feeds.has_symbol_list() && self.feeds.enabled_venues().next().is_some()
    }

    /// Shard threads to run: `engine.shards`, or one per core (at most `AUTO_SHARDS_MAX`) when 0.
    pub fn shard_count(&self) -> usize {
        self.engine.shard_count()
    }

    /// Settings one section takes from another's rules: a venue's quotes age out after
    /// `engine.stale_after_ms` only when its best-bid/ask channel re-sends unchanged data (Bybit,
    /// Bitget level 1); on channels that push only on change, a quote is live until its
    /// connection drops (a gap) or the venue withdraws it.
    ///
    /// A sink's lanes hold at least two records per window of their shard plus
    /// `SINK_LANE_HEADROOM_RECORDS`: a bucket change, or shutdown, emits one sample per window
    /// at once, and a sink that keeps up must lose none of them even when its runner is not
    /// scheduled for a while. The shard paces those closes by the lanes' room (keeping a quarter
    /// of each lane for the live records that arrive meanwhile), but at full rate most windows
    /// are closed within milliseconds of the change by their next quote, unpaced: one sample per
    /// window and as many quotes behind them. Measured at 1 000 symbols × 8 venues and 800 000
    /// quotes/s on 2 saturated cores: one sample per window plus 4 096 lost 44 099 records in a
    /// minute, two per window none.
    fn derive_across_sections(&mut self) {
        for venue in Venue::ALL {
            self.engine.quote_age_limited[venue as usize] =
                tickflow_feed::protocol::channel_resends_when_unchanged(venue, Channel::Bbo);
        }
        // Pass-through (a collector) emits no spread samples: the headroom alone.
        let windows_per_shard = if self.windows.enabled {
            tickflow_core::shard::windows_per_shard(
                self.windows.max_windows,
                self.engine.max_symbols,
                self.engine.shard_count(),
            )
        } else {
            0
        };
        let lane_records = windows_per_shard
            .saturating_mul(2)
            .saturating_add(SINK_LANE_HEADROOM_RECORDS)
            .min(SINK_LANE_MAX_RECORDS);
        for sink in &mut self.sinks {
            sink.ring_capacity_records = sink.ring_capacity_records.max(lane_records);
        }
    }

    /// Every section's own checks, in file order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine.validate()?;
        self.feeds.validate()?;
        // `[universe]` matters only when it discovers: a hand-written list replaces it, and
        // without venues there is nothing to discover.
        if self.discovers() {
            self.universe.validate(self.engine.max_symbols)?;
        }
        self.windows.validate()?;
        tickflow_host::config::validate_sinks(&self.sinks)?;
        self.http.validate()?;
        // The connection plan the feeds will start with (on a throwaway registry), so a config
        // that needs more slots or symbols than `[engine]` allows is refused here, not at start.
        for (index, source) in self.sources.iter().enumerate() {
            source.validate(index)?;
        }
        // Each source takes a connection slot's producer: the feeds plan within the rest.
        let Some(feed_slots) = self
            .engine
            .max_connection_slots
            .checked_sub(self.sources.len())
        else {
            return Err(ConfigValueError::new(
                "engine.max_connection_slots",
                self.engine.max_connection_slots,
                "must leave one slot per [[sources]]",
            )
            .into());
        };
        let registry = tickflow_core::registry::SymbolRegistry::new(self.engine.max_symbols);
        tickflow_feed::plan(&self.feeds, &registry, feed_slots)?;
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
    fn a_hand_written_list_takes_canonical_names_only() {
        // Guessing where the base ends is how DOTUSD became DO-TUSD: refused, naming the key.
        for name in ["DOTUSD", "BTC_USDT", "btc/usdt", "BTC-", "BTC-USDT-X"] {
            check_invalid(
                &format!("[feeds]\nsymbols = [\"{name}\"]\n"),
                "feeds.symbols",
            );
            check_invalid(
                &format!("[feeds.venue.okx]\nsymbols = [\"{name}\"]\n"),
                "feeds.venue.*.symbols",
            );
        }
        let config = Config::from_toml_str(
            "[feeds]\nsymbols = [\"DOT-USD\", \"1000PEPE-USDT\"]\n[feeds.venue.binance]\n",
        )
        .expect("canonical names");
        assert!(config.feeds.has_symbol_list());
    }

    #[test]
    fn sources_are_validated_and_take_their_slots() {
        let source = "[[sources]]\nkind = \"nats\"\nurl = [\"nats://127.0.0.1:4222\"]\n\
                      durable = \"agg-0\"\npartition_count = 4\n";
        let config = Config::from_toml_str(&format!("{source}partitions = [0, 3]\n"))
            .expect("a valid source");
        assert_eq!(config.sources.len(), 1);
        check_invalid(
            &format!("{source}partitions = [4]\n"),
            "sources[0].partitions",
        );
        check_invalid(&format!("{source}partitions = [0]\nbogus = 1\n"), "bogus");
        check_invalid(
            &format!(
                "[engine]\nmax_connection_slots = 1\n{source}partitions = [0]\n{source}partitions = [1]\n"
            ),
            "engine.max_connection_slots",
        );
        // Pass-through and event time parse as keys of [windows].
        let config = Config::from_toml_str(
            "[windows]\nenabled = false\nclock = \"event\"\nevent_lateness_ms = 500\n",
        )
        .expect("valid [windows]");
        assert!(!config.windows.enabled);
        check_invalid("[windows]\nclock = \"wall\"\n", "clock");
    }

    #[test]
    fn empty_config_is_the_defaults() {
        let config = Config::from_toml_str("").unwrap();
        assert_eq!(config.engine.max_symbols, 1400);
        assert_eq!(config.windows.buckets, 3600);
        assert_eq!(config.windows.bucket_ms, 1000);
        assert_eq!(config.windows.max_windows, 56_000);
        assert_eq!(config.windows.thresholds_bp, vec![40.0]);
    }

    #[test]
    fn only_channels_that_resend_age_their_quotes_out() {
        for config in [Config::default(), Config::from_toml_str("").unwrap()] {
            let limited = config.engine.quote_age_limited;
            assert!(limited[Venue::Bybit as usize] && limited[Venue::Bitget as usize]);
            for venue in [
                Venue::Binance,
                Venue::Okx,
                Venue::Kucoin,
                Venue::Gate,
                Venue::Htx,
                Venue::Mexc,
            ] {
                assert!(!limited[venue as usize], "{venue:?} pushes only on change");
            }
        }
    }

    #[test]
    fn sink_lanes_hold_two_records_per_window_of_their_shard() {
        let config = Config::from_toml_str(
            "[engine]\nshards = 2\n[[sinks]]\nname = \"a\"\npath = \"x\"\noptional = true\n\
             [[sinks]]\nname = \"b\"\npath = \"y\"\noptional = true\nring_capacity_records = 100000\n",
        )
        .unwrap();
        // 1 000 symbols and 56 000 windows over 2 shards: 28 000 windows each, two records a
        // window, plus headroom.
        assert_eq!(config.sinks[0].ring_capacity_records, 2 * 28_000 + 4_096);
        // A larger configured lane stays as configured.
        assert_eq!(config.sinks[1].ring_capacity_records, 100_000);
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
