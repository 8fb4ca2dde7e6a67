//! The connection planner: turns each venue's listings in the registry (discovered, or a
//! hand-written list it registers) into connection slots, each within its venue's limits
//! (subscriptions per connection, topics per request). A symbol's channels stay on one slot so a
//! gap covers exactly the symbols that slot owns. At a refresh, `replan` keeps every symbol on its
//! slot and moves only what changed. No I/O.

use std::time::Duration;

use crate::config::{Channel, FeedsConfig, VenueFeedConfig};
use crate::protocol::{self, Topic, VenueRules};
use tickflow_core::records::SymbolId;
use tickflow_core::registry::{RegistryError, SymbolRegistry, VenueListing, parse_canonical};
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

/// Registers a hand-written symbol list (`feeds.symbols`, a venue's `symbols`): canonical names,
/// each listed on every enabled venue that subscribes to it, in that venue's spelling.
/// Idempotent; a no-op when nothing is listed by hand (discovery registers instead).
pub fn register_configured(
    feeds: &FeedsConfig,
    registry: &SymbolRegistry,
) -> Result<(), PlanError> {
    if !feeds.has_symbol_list() {
        return Ok(());
    }
    registry.edit(|edit| {
        for (venue, venue_config) in feeds.enabled_venues() {
            for name in feeds.symbols_for(venue_config) {
                let name = parse_canonical(name)?;
                let id = edit.symbol(name)?;
                let mut spelling = String::new();
                protocol::write_venue_symbol(venue, name.base(), name.quote(), &mut spelling);
                edit.list(venue, id, &spelling, 1.0)?;
            }
        }
        Ok(())
    })
}

/// How one venue's slots are cut: the same for every slot of the venue, at start and at refresh.
struct VenuePlanning {
    venue: Venue,
    rules: VenueRules,
    channels: Vec<Channel>,
    symbols_per_slot: usize,
    endpoint: SlotEndpoint,
    ping_interval: Duration,
    ping_interval_configured: bool,
    stale_watchdog: bool,
}

impl VenuePlanning {
    fn new(
        feeds: &FeedsConfig,
        venue: Venue,
        venue_config: &VenueFeedConfig,
    ) -> Result<Option<VenuePlanning>, PlanError> {
        let rules = protocol::rules_for(venue, feeds.socket_api(venue, venue_config));
        let mut channels: Vec<Channel> = feeds.channels_for(venue_config).to_vec();
        channels.sort();
        channels.dedup();
        if channels.is_empty() {
            return Ok(None);
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
        Ok(Some(VenuePlanning {
            venue,
            rules,
            symbols_per_slot: max_streams / channels.len(),
            channels,
            endpoint,
            ping_interval: Duration::from_millis(ping_interval_ms),
            ping_interval_configured: venue_config.ping_interval_ms != 0,
            stale_watchdog,
        }))
    }

    /// A slot carrying `listings` (at most `symbols_per_slot`).
    fn slot(&self, connection_id: u32, listings: &[&VenueListing]) -> Result<SlotPlan, PlanError> {
        let mut topics = Vec::with_capacity(listings.len() * self.channels.len());
        for listing in listings {
            for channel in &self.channels {
                topics.push(Topic {
                    venue_symbol: listing.spelling.clone(),
                    channel: *channel,
                });
            }
        }
        check_subscribe_budget(self.venue, &self.rules, &topics)?;
        Ok(SlotPlan {
            venue: self.venue,
            connection_id,
            endpoint: self.endpoint.clone(),
            topics,
            symbol_ids: listings.iter().map(|listing| listing.symbol_id).collect(),
            rules: self.rules,
            ping_interval: self.ping_interval,
            ping_interval_configured: self.ping_interval_configured,
            stale_watchdog: self.stale_watchdog,
        })
    }
}

/// Plans every enabled venue's slots from the registry's listings (registering a hand-written
/// list first, see [`register_configured`]).
pub fn plan(
    feeds: &FeedsConfig,
    registry: &SymbolRegistry,
    max_slots: usize,
) -> Result<Vec<SlotPlan>, PlanError> {
    register_configured(feeds, registry)?;
    let mut plans = Vec::new();
    for (venue, venue_config) in feeds.enabled_venues() {
        let Some(planning) = VenuePlanning::new(feeds, venue, venue_config)? else {
            continue;
        };
        let listings = registry.listings(venue);
        let listings: Vec<&VenueListing> = listings.iter().collect();
        for chunk in listings.chunks(planning.symbols_per_slot) {
            plans.push(planning.slot(plans.len() as u32, chunk)?);
        }
    }
    if plans.len() > max_slots {
        return Err(PlanError::TooManySlots {
            needed: plans.len(),
            max: max_slots,
        });
    }
    Ok(plans)
}

/// What a refresh changes in the running slots.
#[derive(Debug, Default)]
pub struct Replan {
    /// (index into the current slots, its new plan): slots whose symbol set changed.
    pub changed: Vec<(usize, SlotPlan)>,
    /// Slots to start (connection ids continue after the current ones).
    pub added: Vec<SlotPlan>,
    /// Listings that fit no slot (every slot of the venue full and `max_slots` reached).
    pub unplaced: Vec<(Venue, SymbolId)>,
}

/// Re-plans the running `current` slots for the registry's listings now, keeping every symbol
/// that is still listed on the slot it is on (its subscription goes on without a gap): retired
/// listings leave their slot, new ones fill slots with room first (fewest symbols first), then
/// new slots up to `max_slots`. Never duplicates a symbol: each listing ends on exactly one slot.
pub fn replan(
    feeds: &FeedsConfig,
    registry: &SymbolRegistry,
    current: &[std::sync::Arc<SlotPlan>],
    max_slots: usize,
) -> Result<Replan, PlanError> {
    let mut replan = Replan::default();
    let mut slot_count = current.len();
    for (venue, venue_config) in feeds.enabled_venues() {
        let Some(planning) = VenuePlanning::new(feeds, venue, venue_config)? else {
            continue;
        };
        let listings = registry.listings(venue);
        let by_id: std::collections::HashMap<SymbolId, &VenueListing> = listings
            .iter()
            .map(|listing| (listing.symbol_id, listing))
            .collect();
        // Each slot of the venue keeps what is still listed, in its order.
        let mut slots: Vec<(usize, Vec<&VenueListing>, bool)> = Vec::new();
        let mut placed = std::collections::HashSet::new();
        for (index, plan) in current.iter().enumerate() {
            if plan.venue != venue {
                continue;
            }
            let mut kept = Vec::with_capacity(plan.symbol_ids.len());
            let mut changed = false;
            for id in &plan.symbol_ids {
                match by_id.get(id) {
                    // A spelling change is a change of subscription too.
                    Some(listing) if placed.insert(*id) => {
                        let spelled_as_before = plan
                            .topics
                            .iter()
                            .any(|topic| topic.venue_symbol == listing.spelling);
                        changed |= !spelled_as_before;
                        kept.push(*listing);
                    }
                    _ => changed = true,
                }
            }
            slots.push((index, kept, changed));
        }
        let mut added: Vec<Vec<&VenueListing>> = Vec::new();
        for listing in &listings {
            if placed.contains(&listing.symbol_id) {
                continue;
            }
            let emptiest = slots
                .iter_mut()
                .filter(|(_, kept, _)| kept.len() < planning.symbols_per_slot)
                .min_by_key(|(_, kept, _)| kept.len());
            if let Some((_, kept, changed)) = emptiest {
                kept.push(listing);
                *changed = true;
                continue;
            }
            match added.last_mut() {
                Some(slot) if slot.len() < planning.symbols_per_slot => slot.push(listing),
                _ if slot_count < max_slots => {
                    slot_count += 1;
                    added.push(vec![listing]);
                }
                _ => replan.unplaced.push((venue, listing.symbol_id)),
            }
        }
        for (index, kept, changed) in slots {
            if changed {
                let connection_id = current[index].connection_id;
                replan
                    .changed
                    .push((index, planning.slot(connection_id, &kept)?));
            }
        }
        for listings in added {
            let connection_id = (current.len() + replan.added.len()) as u32;
            replan.added.push(planning.slot(connection_id, &listings)?);
        }
    }
    Ok(replan)
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

    #[test]
    fn replan_keeps_symbols_on_their_slots_and_never_duplicates() {
        let symbols: Vec<String> = (0..40).map(|index| format!("\"C{index}-USDT\"")).collect();
        let feeds = feeds(&format!(
            "[feeds]\nsymbols = [{}]\nchannels = [\"bbo\", \"trades\"]\n[feeds.venue.mexc]\n",
            symbols.join(",")
        ));
        let registry = SymbolRegistry::new(100);
        let plans: Vec<std::sync::Arc<SlotPlan>> = plan(&feeds, &registry, 4)
            .unwrap()
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
        assert_eq!(plans.len(), 3, "15 + 15 + 10 symbols");
        // Nothing changed: nothing to do.
        let unchanged = replan(&feeds, &registry, &plans, 4).unwrap();
        assert!(unchanged.changed.is_empty() && unchanged.added.is_empty());
        // C0 delisted; six new listings: five fill the 10-symbol slot, one opens slot 4.
        let retired = registry.lookup_on(Venue::Mexc, b"C0USDT").unwrap();
        registry.edit(|edit| {
            assert!(edit.unlist(Venue::Mexc, retired));
            for index in 100..106 {
                let name = parse_canonical(&format!("N{index}-USDT")).unwrap();
                let id = edit.symbol(name).unwrap();
                edit.list(Venue::Mexc, id, &format!("N{index}USDT"), 1.0)
                    .unwrap();
            }
        });
        let replanned = replan(&feeds, &registry, &plans, 4).unwrap();
        // Slot 0 lost C0 and gained one new listing (it had room after C0 left); slot 2 took
        // the rest up to 15.
        let changed: Vec<usize> = replanned.changed.iter().map(|(index, _)| *index).collect();
        assert_eq!(changed, vec![0, 2]);
        assert!(replanned.added.is_empty());
        let (_, slot0) = &replanned.changed[0];
        assert!(!slot0.symbol_ids.contains(&retired));
        for id in &plans[0].symbol_ids[1..] {
            assert!(
                slot0.symbol_ids.contains(id),
                "kept symbols stay on their slot"
            );
        }
        let mut all: Vec<SymbolId> = replanned
            .changed
            .iter()
            .flat_map(|(_, plan)| plan.symbol_ids.iter().copied())
            .chain(plans[1].symbol_ids.iter().copied())
            .collect();
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(all.len(), before, "no symbol on two slots");
        assert_eq!(all.len(), 45);
        // With every slot full and the slot cap reached, a listing is unplaced, not dropped.
        registry.edit(|edit| {
            for index in 200..220 {
                let name = parse_canonical(&format!("M{index}-USDT")).unwrap();
                let id = edit.symbol(name).unwrap();
                edit.list(Venue::Mexc, id, &format!("M{index}USDT"), 1.0)
                    .unwrap();
            }
        });
        let crowded = replan(&feeds, &registry, &plans, 4).unwrap();
        assert_eq!(crowded.added.len(), 1);
        assert_eq!(crowded.added[0].connection_id, 3);
        let placed: usize = crowded
            .changed
            .iter()
            .map(|(_, plan)| plan.symbol_ids.len())
            .chain(crowded.added.iter().map(|plan| plan.symbol_ids.len()))
            .sum::<usize>()
            + plans[1].symbol_ids.len();
        assert_eq!(placed + crowded.unplaced.len(), 65);
        assert_eq!(crowded.unplaced.len(), 5);
    }
}
