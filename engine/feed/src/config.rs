//! `[feeds]`: which venues to connect to, where, with which symbols and channels, and every timing
//! of the connection life (keep-alive, watchdog, backoff, rotation, shutdown). Parsing and
//! validation only; nothing here opens a socket.

use std::collections::BTreeMap;

use serde::Deserialize;

use tickflow_core::venue::Venue;

/// A data channel a slot subscribes to for each of its symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Best bid / best ask.
    Bbo,
    /// Public trades.
    Trades,
}

/// Which public socket of a venue a slot speaks, where the venue has more than one: Bitget's
/// classic `v2` (`channel`/`instId`) and its unified-account `v3` (`topic`/`symbol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketApi {
    V2,
    V3,
}

impl SocketApi {
    /// The config spelling (`feeds.venue.bitget.api`).
    pub fn name(self) -> &'static str {
        match self {
            SocketApi::V2 => "v2",
            SocketApi::V3 => "v3",
        }
    }

    pub fn from_name(name: &str) -> Option<SocketApi> {
        match name {
            "v2" => Some(SocketApi::V2),
            "v3" => Some(SocketApi::V3),
            _ => None,
        }
    }
}

/// The socket a venue gets when config names none: for Bitget the one its documentation names
/// current. The classic account's documentation says it is in maintenance mode and recommends
/// the unified trading account, whose public socket is `wss://ws.bitget.com/v3/ws/public`.
/// `None` for venues with one socket.
pub fn default_socket_api(venue: Venue) -> Option<SocketApi> {
    (venue == Venue::Bitget).then_some(SocketApi::V3)
}

/// The sockets `venue` offers (empty: one, nothing to choose).
pub fn socket_apis(venue: Venue) -> &'static [SocketApi] {
    match venue {
        Venue::Bitget => &[SocketApi::V2, SocketApi::V3],
        _ => &[],
    }
}

/// `[feeds]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedsConfig {
    /// Symbols (canonical `BASE-QUOTE`) every enabled venue subscribes to unless it lists its own.
    pub symbols: Vec<String>,
    /// Channels every venue subscribes to unless it lists its own.
    pub channels: Vec<Channel>,
    /// PEM file of CA certificates trusted in addition to webpki's roots (a private CA, a TLS
    /// simulator); empty = webpki's roots only.
    pub tls_extra_roots_pem: String,
    /// TCP connect + TLS + WebSocket upgrade (and KuCoin's bullet call) must finish within this.
    pub connect_timeout_ms: u64,
    /// First reconnect delay bound; attempt n waits a random time in [0, min(cap, base · 2^n)].
    pub backoff_base_ms: u64,
    /// Largest reconnect delay bound.
    pub backoff_cap_ms: u64,
    /// A connection that delivered data, or stayed up this long, resets the backoff to its base.
    pub healthy_after_ms: u64,
    /// A client ping not answered within this marks the connection dead.
    pub pong_timeout_ms: u64,
    /// Every socket write (pings, pongs, subscribe requests, close) must be taken by the peer
    /// within this; a venue that stops reading is replaced like one that misses a pong.
    pub write_timeout_ms: u64,
    /// No frame at all (data, control or ws ping) for this long marks the connection dead.
    pub max_silence_ms: u64,
    /// On channels that re-send even when nothing changed (Bybit level 1), no data for this long
    /// marks the connection stale and it is replaced.
    pub stale_data_ms: u64,
    /// Connections are rotated (replacement first, no gap) after this long; venues cut at 24 h.
    pub rotate_after_ms: u64,
    /// Replacement connections must deliver their first data within this, or rotation is retried.
    pub rotation_first_data_timeout_ms: u64,
    /// On shutdown, connections get this long to send close frames before they are dropped.
    pub shutdown_deadline_ms: u64,
    /// Threads of the feeds' tokio runtime (connections, decoding); 0 = 1.
    pub worker_threads: usize,
    /// CPU ids to pin the feeds' runtime threads to, round robin; empty: no pinning.
    pub worker_cores: Vec<usize>,
    /// While frames arrive at two or more per this wait, a feeds thread that ran out of
    /// frames sleeps this long before waiting for the sockets again, so the frames of the window
    /// are read in one wake-up (CPU per frame falls; each frame waits at most this much more in
    /// its socket); 0 = one wake-up per frame. The default, 5 ms, is under the 10 ms push
    /// interval of most venues' best bid/ask channels (see README: the CPU it saves).
    pub batch_wait_us: u64,
    /// How often the engine prints its `tickflow-stats` line on stderr; 0 = never.
    pub stats_interval_ms: u64,
    /// Per-venue settings, keyed by venue name (`[feeds.venue.binance]`).
    pub venue: BTreeMap<String, VenueFeedConfig>,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        FeedsConfig {
            symbols: Vec::new(),
            channels: vec![Channel::Bbo],
            tls_extra_roots_pem: String::new(),
            connect_timeout_ms: 10_000,
            backoff_base_ms: 500,
            backoff_cap_ms: 30_000,
            healthy_after_ms: 60_000,
            pong_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            max_silence_ms: 60_000,
            stale_data_ms: 30_000,
            rotate_after_ms: 23 * 3_600_000,
            rotation_first_data_timeout_ms: 30_000,
            shutdown_deadline_ms: 5_000,
            worker_threads: 1,
            worker_cores: Vec::new(),
            batch_wait_us: 5_000,
            stats_interval_ms: 10_000,
            venue: BTreeMap::new(),
        }
    }
}

/// `[feeds.venue.<name>]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VenueFeedConfig {
    pub enabled: bool,
    /// WebSocket URL (`wss://` or `ws://`); empty = the venue's public endpoint. For KuCoin the
    /// endpoint comes from the bullet call instead and this is ignored unless `bullet_url` is empty.
    pub url: String,
    /// KuCoin only: the bullet-public URL (`https://` or `http://`); empty = the public one.
    pub bullet_url: String,
    /// Symbols for this venue; empty = `feeds.symbols`.
    pub symbols: Vec<String>,
    /// Channels for this venue; empty = `feeds.channels`.
    pub channels: Vec<Channel>,
    /// Client keep-alive ping interval; 0 = the venue's default.
    pub ping_interval_ms: u64,
    /// Most subscriptions (symbol × channel) per connection; 0 = the venue's limit.
    pub max_streams_per_connection: usize,
    /// Bitget only: which public socket, `"v2"` (classic) or `"v3"` (unified account); empty =
    /// `v3`, the one Bitget's documentation names current.
    pub api: String,
}

impl Default for VenueFeedConfig {
    fn default() -> Self {
        VenueFeedConfig {
            enabled: true,
            url: String::new(),
            bullet_url: String::new(),
            symbols: Vec::new(),
            channels: Vec::new(),
            ping_interval_ms: 0,
            max_streams_per_connection: 0,
            api: String::new(),
        }
    }
}

/// A value of `[feeds]` that cannot work, naming the key (the engine's one value error type).
pub use tickflow_core::config::ConfigValueError as FeedsConfigError;

fn invalid(
    key: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> FeedsConfigError {
    FeedsConfigError::new(key, value, reason)
}

impl FeedsConfig {
    /// The enabled venues with their settings, in venue order.
    pub fn enabled_venues(&self) -> impl Iterator<Item = (Venue, &VenueFeedConfig)> {
        Venue::ALL.into_iter().filter_map(|venue| {
            self.venue
                .get(venue.name())
                .filter(|venue_config| venue_config.enabled)
                .map(|venue_config| (venue, venue_config))
        })
    }

    /// True when symbols are listed by hand (`feeds.symbols` or a venue's `symbols`): they replace
    /// discovery.
    pub fn has_symbol_list(&self) -> bool {
        !self.symbols.is_empty()
            || self
                .enabled_venues()
                .any(|(_, venue_config)| !venue_config.symbols.is_empty())
    }

    /// Symbols `venue_config` subscribes to.
    pub fn symbols_for<'a>(&'a self, venue_config: &'a VenueFeedConfig) -> &'a [String] {
        if venue_config.symbols.is_empty() {
            &self.symbols
        } else {
            &venue_config.symbols
        }
    }

    /// Channels `venue_config` subscribes to.
    pub fn channels_for<'a>(&'a self, venue_config: &'a VenueFeedConfig) -> &'a [Channel] {
        if venue_config.channels.is_empty() {
            &self.channels
        } else {
            &venue_config.channels
        }
    }

    /// The socket `venue_config` asks for (`api`), or `None` for the venue's default (and for
    /// venues with one socket). Validation refuses a name that is not one of the venue's.
    pub fn socket_api(&self, venue: Venue, venue_config: &VenueFeedConfig) -> Option<SocketApi> {
        SocketApi::from_name(&venue_config.api).filter(|api| socket_apis(venue).contains(api))
    }

    /// The extra roots file, if one is configured.
    pub fn tls_extra_roots_pem(&self) -> Option<&std::path::Path> {
        (!self.tls_extra_roots_pem.is_empty())
            .then(|| std::path::Path::new(&self.tls_extra_roots_pem))
    }

    pub fn validate(&self) -> Result<(), FeedsConfigError> {
        for name in self.venue.keys() {
            if Venue::from_name(name).is_none() {
                return Err(invalid(
                    "feeds.venue",
                    name,
                    "unknown venue (binance, bybit, okx, mexc, gate, kucoin, bitget, htx)",
                ));
            }
        }
        let positive: [(&'static str, u64); 10] = [
            ("feeds.connect_timeout_ms", self.connect_timeout_ms),
            ("feeds.backoff_base_ms", self.backoff_base_ms),
            ("feeds.backoff_cap_ms", self.backoff_cap_ms),
            ("feeds.healthy_after_ms", self.healthy_after_ms),
            ("feeds.pong_timeout_ms", self.pong_timeout_ms),
            ("feeds.write_timeout_ms", self.write_timeout_ms),
            ("feeds.max_silence_ms", self.max_silence_ms),
            ("feeds.stale_data_ms", self.stale_data_ms),
            ("feeds.rotate_after_ms", self.rotate_after_ms),
            ("feeds.shutdown_deadline_ms", self.shutdown_deadline_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, value, "must be > 0"));
            }
        }
        if self.rotation_first_data_timeout_ms == 0 {
            return Err(invalid(
                "feeds.rotation_first_data_timeout_ms",
                self.rotation_first_data_timeout_ms,
                "must be > 0",
            ));
        }
        if self.backoff_cap_ms < self.backoff_base_ms {
            return Err(invalid(
                "feeds.backoff_cap_ms",
                self.backoff_cap_ms,
                "must be >= feeds.backoff_base_ms",
            ));
        }
        if self.worker_threads > 64 {
            return Err(invalid(
                "feeds.worker_threads",
                self.worker_threads,
                "must be 0 to 64",
            ));
        }
        if self.batch_wait_us > 10_000 {
            return Err(invalid(
                "feeds.batch_wait_us",
                self.batch_wait_us,
                "must be 0 to 10000",
            ));
        }
        if self.worker_cores.len() > 1024 || self.worker_cores.iter().any(|core| *core >= 4096) {
            return Err(invalid(
                "feeds.worker_cores",
                format!("{:?}", self.worker_cores),
                "at most 1024 CPU ids, each below 4096",
            ));
        }
        if self.channels.is_empty() {
            return Err(invalid("feeds.channels", "[]", "at least one channel"));
        }
        if let Some(path) = self.tls_extra_roots_pem() {
            // Same check as at start: every CERTIFICATE block must be a usable root.
            if let Err(error) = crate::ws::tls_connector(Some(path)) {
                return Err(FeedsConfigError {
                    key: "feeds.tls_extra_roots_pem",
                    value: format!("{:?} ({error})", self.tls_extra_roots_pem),
                    reason: "must be a readable PEM file of CA certificates",
                });
            }
        }
        // A hand-written list names symbols canonically; nothing is split by guessing.
        for name in &self.symbols {
            if tickflow_core::registry::parse_canonical(name).is_err() {
                return Err(FeedsConfigError {
                    key: "feeds.symbols",
                    value: format!("{name:?}"),
                    reason: "must be canonical BASE-QUOTE, e.g. BTC-USDT (one '-', letters and digits)",
                });
            }
        }
        for (venue, venue_config) in self.enabled_venues() {
            for name in &venue_config.symbols {
                if tickflow_core::registry::parse_canonical(name).is_err() {
                    return Err(FeedsConfigError {
                        key: "feeds.venue.*.symbols",
                        value: format!("{name:?} in feeds.venue.{venue}.symbols"),
                        reason: "must be canonical BASE-QUOTE, e.g. BTC-USDT (one '-', letters and digits)",
                    });
                }
            }
        }
        for (name, venue_config) in &self.venue {
            let Some(venue) = Venue::from_name(name) else {
                continue;
            };
            validate_socket_api(venue, venue_config)?;
        }
        for (venue, venue_config) in self.enabled_venues() {
            let mut channels: Vec<Channel> = self.channels_for(venue_config).to_vec();
            channels.sort();
            channels.dedup();
            let max_streams = venue_config.max_streams_per_connection;
            if max_streams != 0 && max_streams < channels.len() {
                return Err(FeedsConfigError {
                    key: "feeds.venue.*.max_streams_per_connection",
                    value: format!("{max_streams} ({})", venue.name()),
                    reason: "must be 0 (the venue's limit) or at least the number of channels: a symbol's channels share one connection",
                });
            }
            for url in [&venue_config.url, &venue_config.bullet_url] {
                if !url.is_empty() && crate::ws::Endpoint::parse(url).is_err() {
                    return Err(invalid(
                        "feeds.venue.*.url",
                        url,
                        "must be ws://, wss://, http:// or https:// with a host",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `api` names one of the venue's sockets (only Bitget has two), and a URL that names the other
/// socket's path is refused rather than sent requests it does not understand.
fn validate_socket_api(
    venue: Venue,
    venue_config: &VenueFeedConfig,
) -> Result<(), FeedsConfigError> {
    let apis = socket_apis(venue);
    if !venue_config.api.is_empty() && apis.is_empty() {
        return Err(FeedsConfigError {
            key: "feeds.venue.*.api",
            value: format!("{:?} ({})", venue_config.api, venue.name()),
            reason: "only bitget has more than one socket to choose from",
        });
    }
    if apis.is_empty() {
        return Ok(());
    }
    let api = if venue_config.api.is_empty() {
        default_socket_api(venue)
    } else {
        match SocketApi::from_name(&venue_config.api).filter(|api| apis.contains(api)) {
            Some(api) => Some(api),
            None => {
                return Err(FeedsConfigError {
                    key: "feeds.venue.bitget.api",
                    value: format!("{:?}", venue_config.api),
                    reason: "must be \"v2\" or \"v3\" (empty: v3, the current one)",
                });
            }
        }
    };
    for other in apis.iter().filter(|other| Some(**other) != api) {
        if venue_config.url.contains(&format!("/{}/ws/", other.name())) {
            return Err(FeedsConfigError {
                key: "feeds.venue.bitget.api",
                value: format!(
                    "{} (url {})",
                    api.map_or("", SocketApi::name),
                    venue_config.url
                ),
                reason: "the url names the other socket: set api to match it, or change the url",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::FeedsConfig;

    #[test]
    fn bitget_api_is_v2_or_v3_and_a_mismatched_url_is_refused_naming_the_key() {
        let feeds = |section: &str| {
            let feeds: FeedsConfig = toml::from_str(section).expect("parses");
            feeds.validate().map(|()| feeds)
        };
        for bad in [
            "[venue.bitget]\napi = \"v4\"\n",
            "[venue.bitget]\napi = \"V3\"\n",
            "[venue.bitget]\nurl = \"wss://ws.bitget.com/v2/ws/public\"\n",
            "[venue.bitget]\napi = \"v2\"\nurl = \"wss://ws.bitget.com/v3/ws/public\"\n",
        ] {
            let error = feeds(bad).expect_err(bad).to_string();
            assert!(error.contains("feeds.venue.bitget.api"), "{bad}: {error}");
        }
        let error = feeds("[venue.okx]\napi = \"v3\"\n")
            .expect_err("okx has one socket")
            .to_string();
        assert!(
            error.contains("feeds.venue.*.api") && error.contains("okx"),
            "{error}"
        );
        let bitget = tickflow_core::venue::Venue::Bitget;
        let parsed = feeds("[venue.bitget]\n").expect("the default is valid");
        assert_eq!(parsed.socket_api(bitget, &parsed.venue["bitget"]), None);
        assert_eq!(
            super::default_socket_api(bitget),
            Some(super::SocketApi::V3),
            "the default is v3"
        );
        let parsed =
            feeds("[venue.bitget]\napi = \"v2\"\nurl = \"wss://ws.bitget.com/v2/ws/public\"\n")
                .expect("v2 with its own url");
        assert_eq!(
            parsed.socket_api(bitget, &parsed.venue["bitget"]),
            Some(super::SocketApi::V2)
        );
        feeds("[venue.bitget]\napi = \"v3\"\nurl = \"ws://127.0.0.1:9000\"\n")
            .expect("a simulator's url names neither");
    }

    #[test]
    fn max_streams_below_the_channel_count_is_refused_naming_the_key() {
        let config = |max_streams: usize| {
            let feeds: FeedsConfig = toml::from_str(&format!(
                "channels = [\"bbo\", \"trades\"]\n\
                 [venue.okx]\nmax_streams_per_connection = {max_streams}\n"
            ))
            .expect("parses");
            feeds.validate()
        };
        let error = config(1).expect_err("one stream cannot hold a symbol's two channels");
        let text = error.to_string();
        assert!(
            text.contains("feeds.venue.*.max_streams_per_connection") && text.contains("okx"),
            "names the key and the venue: {text}"
        );
        config(0).expect("0 = the venue's limit");
        config(2).expect("two streams hold one symbol's two channels");
    }

    #[test]
    fn a_zero_write_timeout_is_refused_naming_the_key() {
        let feeds: FeedsConfig = toml::from_str("write_timeout_ms = 0\n").expect("parses");
        let error = feeds.validate().expect_err("writes need a deadline");
        assert!(
            error.to_string().contains("feeds.write_timeout_ms"),
            "{error}"
        );
        let feeds: FeedsConfig = toml::from_str("").expect("parses");
        assert_eq!(feeds.write_timeout_ms, 10_000);
        feeds.validate().expect("the default is valid");
    }

    #[test]
    fn batch_wait_is_bounded_and_zero_turns_it_off() {
        let feeds: FeedsConfig = toml::from_str("batch_wait_us = 10001\n").expect("parses");
        let error = feeds
            .validate()
            .expect_err("a batch wait over 10 ms is refused");
        assert!(error.to_string().contains("feeds.batch_wait_us"), "{error}");
        let feeds: FeedsConfig = toml::from_str("batch_wait_us = 0\n").expect("parses");
        feeds.validate().expect("0 = one wake-up per frame");
        let feeds: FeedsConfig = toml::from_str("").expect("parses");
        assert_eq!(feeds.batch_wait_us, 5_000);
    }
}
