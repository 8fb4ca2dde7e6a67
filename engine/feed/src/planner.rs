//! The connection planner: turns `[feeds]` into connection slots, each within its venue's limits
//! (subscriptions per connection, topics per request). A symbol's channels stay on one slot so a
//! gap covers exactly the symbols that slot owns. Registers the symbols (idempotent); no I/O.

use std::time::Duration;

use crate::config::{Channel, FeedsConfig, VenueFeedConfig};
use crate::protocol::{self, Topic, VenueRules};
use tickflow_core::records::SymbolId;
use tickflow_core::registry::{RegistryError, SymbolRegistry};
use tickflow_core::venue::Venue;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("feeds: {0}")]
    Symbol(#[from] RegistryError),
    #[error("feeds plan needs {needed} connection slots but engine.max_connection_slots = {max}")]
    TooManySlots { needed: usize, max: usize },
    #[error(
        "feeds.venue.{venue}.max_streams_per_connection: {max_streams} streams cannot hold one symbol's {channels} channels"
    )]
    StreamsBelowChannels {
        venue: Venue,
        max_streams: usize,
        channels: usize,
    },
    #[error(
        "feeds: a {venue} connection would send {requests} subscribe requests but the venue allows {max_per_hour} per hour per connection"
    )]
    SubscribeRequestBudget {
        venue: Venue,
        requests: usize,
        max_per_hour: usize,
    },
}

/// Checks that one connection's subscription set fits the venue's hourly request budget.
pub fn check_subscribe_budget(
    venue: Venue,
    rules: &VenueRules,
    topics: &[Topic],
) -> Result<(), PlanError> {
    let max_per_hour = rules.max_subscribe_requests_per_hour;
    let requests = protocol::subscribe_request_count(venue, rules, topics);
    if max_per_hour != 0 && requests > max_per_hour {
        return Err(PlanError::SubscribeRequestBudget {
            venue,
            requests,
            max_per_hour,
        });
    }
    Ok(())
}

/// Where and how a slot connects.
#[derive(Clone, Debug)]
pub enum SlotEndpoint {
    /// A WebSocket URL.
    Url(String),
    /// KuCoin: POST this bullet-public URL for the WebSocket URL, token and ping interval.
    KucoinBullet(String),
}

/// One connection slot: a venue, a fixed subscription set, and the symbols it owns.
#[derive(Clone, Debug)]
pub struct SlotPlan {
    pub venue: Venue,
    /// Unique over the engine; also the gap events' `connection_id`.
    pub connection_id: u32,
    pub endpoint: SlotEndpoint,
    pub topics: Vec<Topic>,
    /// Symbols this slot owns (each once), in subscription order.
    pub symbol_ids: Vec<SymbolId>,
    pub rules: VenueRules,
    /// Client ping interval (KuCoin's comes from the bullet unless configured).
    pub ping_interval: Duration,
    /// True when `ping_interval` was set in config (KuCoin then ignores the bullet's).
    pub ping_interval_configured: bool,
    /// True when a subscribed channel re-sends unchanged data, so silence means a stale feed.
    pub stale_watchdog: bool,
}

/// Plans every enabled venue's slots, registering their symbols in `registry`.
pub fn plan(
    feeds: &FeedsConfig,
    registry: &SymbolRegistry,
    max_slots: usize,
) -> Result<Vec<SlotPlan>, PlanError> {
    let mut plans = Vec::new();
    for (venue, venue_config) in feeds.enabled_venues() {
        plan_venue(feeds, venue, venue_config, registry, &mut plans)?;
    }
    if plans.len() > max_slots {
        return Err(PlanError::TooManySlots {
            needed: plans.len(),
            max: max_slots,
        });
    }
    Ok(plans)
}

fn plan_venue(
    feeds: &FeedsConfig,
    venue: Venue,
    venue_config: &VenueFeedConfig,
    registry: &SymbolRegistry,
    plans: &mut Vec<SlotPlan>,
) -> Result<(), PlanError> {
    let rules = protocol::rules(venue);
    let mut channels: Vec<Channel> = feeds.channels_for(venue_config).to_vec();
    channels.sort();
    channels.dedup();
    let mut symbols: Vec<SymbolId> = Vec::new();
    for spelling in feeds.symbols_for(venue_config) {
        let id = registry.register(spelling)?;
        if !symbols.contains(&id) {
            symbols.push(id);
        }
    }
    if symbols.is_empty() || channels.is_empty() {
        return Ok(());
    }
    let max_streams = if venue_config.max_streams_per_connection == 0 {
        rules.max_streams_per_connection
    } else {
        venue_config
            .max_streams_per_connection
            .min(rules.max_streams_per_connection)
    };
    // A symbol's channels share one slot, so a slot needs room for all of them (validation
    // refuses such a config; this guards plans made from unvalidated settings).
    if max_streams < channels.len() {
        return Err(PlanError::StreamsBelowChannels {
            venue,
            max_streams,
            channels: channels.len(),
        });
    }
    let symbols_per_slot = max_streams / channels.len();
    let endpoint = if venue == Venue::Kucoin && venue_config.url.is_empty() {
        let bullet = if venue_config.bullet_url.is_empty() {
            protocol::KUCOIN_BULLET_URL
        } else {
            venue_config.bullet_url.as_str()
        };
        SlotEndpoint::KucoinBullet(bullet.to_owned())
    } else if venue_config.url.is_empty() {
        SlotEndpoint::Url(rules.default_url.to_owned())
    } else {
        SlotEndpoint::Url(venue_config.url.clone())
    };
    let ping_interval_ms = if venue_config.ping_interval_ms == 0 {
        rules.ping_interval_ms
    } else {
        venue_config.ping_interval_ms
    };
    let stale_watchdog = channels
        .iter()
        .any(|channel| protocol::channel_resends_when_unchanged(venue, *channel));
    for chunk in symbols.chunks(symbols_per_slot) {
        let mut topics = Vec::with_capacity(chunk.len() * channels.len());
        for symbol_id in chunk {
            let name = registry
                .name(*symbol_id)
                .expect("the id was just returned by register");
            for channel in &channels {
                let mut venue_symbol = String::new();
                protocol::write_venue_symbol(venue, name.base(), name.quote(), &mut venue_symbol);
                topics.push(Topic {
                    venue_symbol,
                    channel: *channel,
                });
            }
        }
        check_subscribe_budget(venue, &rules, &topics)?;
        plans.push(SlotPlan {
            venue,
            connection_id: plans.len() as u32,
            endpoint: endpoint.clone(),
            topics,
            symbol_ids: chunk.to_vec(),
            rules,
            ping_interval: Duration::from_millis(ping_interval_ms),
            ping_interval_configured: venue_config.ping_interval_ms != 0,
            stale_watchdog,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[feeds]` from a config file's text (the `[feeds]` section of `text`).
    fn feeds(text: &str) -> FeedsConfig {
        #[derive(serde::Deserialize)]
        struct File {
            feeds: FeedsConfig,
        }
        let file: File = toml::from_str(text).expect("valid config");
        file.feeds.validate().expect("valid [feeds]");
        file.feeds
    }

    #[test]
    fn mexc_splits_at_thirty_streams_and_keeps_a_symbol_on_one_slot() {
        let symbols: Vec<String> = (0..40).map(|index| format!("\"C{index}-USDT\"")).collect();
        let feeds = feeds(&format!(
            "[feeds]\nsymbols = [{}]\nchannels = [\"bbo\", \"trades\"]\n[feeds.venue.mexc]\n",
            symbols.join(",")
        ));
        let registry = SymbolRegistry::new(100);
        let plans = plan(&feeds, &registry, 64).unwrap();
        assert_eq!(plans.len(), 3);
        assert!(plans.iter().all(|slot| slot.topics.len() <= 30));
        assert_eq!(
            plans
                .iter()
                .map(|slot| slot.symbol_ids.len())
                .sum::<usize>(),
            40
        );
        assert_eq!(registry.len(), 40);
        // Planning again registers nothing new.
        plan(&feeds, &registry, 64).unwrap();
        assert_eq!(registry.len(), 40);
    }

    #[test]
    fn streams_below_the_channel_count_are_refused() {
        let mut feeds = feeds(
            "[feeds]\nsymbols = [\"BTC-USDT\"]\nchannels = [\"bbo\", \"trades\"]\n[feeds.venue.okx]\n",
        );
        feeds
            .venue
            .get_mut("okx")
            .expect("okx is configured")
            .max_streams_per_connection = 1;
        let registry = SymbolRegistry::new(10);
        let error = plan(&feeds, &registry, 64).expect_err("one stream cannot carry two channels");
        assert!(matches!(
            error,
            PlanError::StreamsBelowChannels {
                max_streams: 1,
                channels: 2,
                ..
            }
        ));
        assert!(
            error
                .to_string()
                .contains("feeds.venue.okx.max_streams_per_connection")
        );
    }

    #[test]
    fn a_slot_needing_more_subscribe_requests_than_the_hourly_budget_is_refused() {
        let topic = |index: usize| Topic {
            venue_symbol: format!("C{index}-USDT"),
            channel: Channel::Bbo,
        };
        let mut rules = protocol::rules(Venue::Okx);
        rules.max_topics_per_request = 2;
        rules.max_subscribe_requests_per_hour = 3;
        let six: Vec<Topic> = (0..6).map(topic).collect();
        let seven: Vec<Topic> = (0..7).map(topic).collect();
        check_subscribe_budget(Venue::Okx, &rules, &six).expect("3 requests fit 3 per hour");
        assert!(matches!(
            check_subscribe_budget(Venue::Okx, &rules, &seven),
            Err(PlanError::SubscribeRequestBudget {
                requests: 4,
                max_per_hour: 3,
                ..
            })
        ));
        // No documented limit: anything goes.
        rules.max_subscribe_requests_per_hour = 0;
        check_subscribe_budget(Venue::Okx, &rules, &seven).expect("no budget");
        // OKX's real rules: its largest slot needs 4 of its 480 requests an hour.
        let okx = protocol::rules(Venue::Okx);
        let largest: Vec<Topic> = (0..okx.max_streams_per_connection).map(topic).collect();
        check_subscribe_budget(Venue::Okx, &okx, &largest).expect("fits");
    }

    #[test]
    fn too_many_slots_is_refused() {
        let symbols: Vec<String> = (0..100).map(|index| format!("\"C{index}-USDT\"")).collect();
        let feeds = feeds(&format!(
            "[feeds]\nsymbols = [{}]\n[feeds.venue.mexc]\n",
            symbols.join(",")
        ));
        let registry = SymbolRegistry::new(1000);
        assert!(matches!(
            plan(&feeds, &registry, 2),
            Err(PlanError::TooManySlots { needed: 4, max: 2 })
        ));
    }
}
