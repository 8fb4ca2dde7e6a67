//! Integration tests: live feeds against the simulated venues over real loopback sockets, through
//! the real pipeline. Timings are short and configurable; every wait is on a condition with a
//! bounded deadline, never a sleep used as synchronization.

use std::sync::Arc;
use std::time::Duration;

use tickflow::config::Config;
use tickflow_core::outbound::{DiscardOutbound, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_feed::counters::SlotCounters;
use tickflow_feed::{Feeds, SlotHandle};
use tickflow_sim::{SimConfig, SimVenues, VenueControl};

/// Longest any condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

struct Harness {
    sim: SimVenues,
    feeds: Feeds,
    pipeline: Pipeline,
    registry: Arc<SymbolRegistry>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

fn sim_config(venues: &[Venue]) -> SimConfig {
    SimConfig {
        venues: venues.to_vec(),
        symbols: vec!["BTC-USDT".into(), "ETH-USDT".into(), "SOL-USDT".into()],
        bbo_per_s_per_symbol: 50.0,
        trades_per_s_per_symbol: 5.0,
        tick_ms: 5,
        server_ping_interval_ms: 100,
        kucoin_ping_interval_ms: 100,
        retry_after_s: 1,
        notice_close_after_ms: 2_000,
        ..SimConfig::default()
    }
}

fn engine_config(sim: &SimVenues, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::from_toml_str(
        "[engine]\nshards = 1\nmax_symbols = 64\nmax_connection_slots = 16\nring_capacity_records = 8192\n\
         [windows]\nbucket_ms = 100\nbuckets = 10\nmax_windows = 1000\nsnapshot_interval_ms = 100\n",
    )
    .expect("test config is valid");
    config.feeds = sim.feeds_config();
    config.feeds.channels = vec![
        tickflow_feed::config::Channel::Bbo,
        tickflow_feed::config::Channel::Trades,
    ];
    config.feeds.connect_timeout_ms = 5_000;
    config.feeds.backoff_base_ms = 10;
    config.feeds.backoff_cap_ms = 100;
    // Generous keep-alive and watchdog limits: several simulators share two cores under nextest,
    // and a scheduling stall must not pass for a dead connection. Tests that exercise a stall or
    // stale data tighten these for themselves.
    config.feeds.pong_timeout_ms = 5_000;
    config.feeds.max_silence_ms = 10_000;
    config.feeds.stale_data_ms = 10_000;
    config.feeds.shutdown_deadline_ms = 1_000;
    config.feeds.rotation_first_data_timeout_ms = 5_000;
    for venue_config in config.feeds.venue.values_mut() {
        venue_config.ping_interval_ms = 100;
    }
    tweak(&mut config);
    config.validate().expect("tweaked test config is valid");
    config
}

impl Harness {
    async fn start(
        venues: &[Venue],
        tweak_sim: impl FnOnce(&mut SimConfig),
        tweak: impl FnOnce(&mut Config),
    ) -> Harness {
        let mut sim_config = sim_config(venues);
        tweak_sim(&mut sim_config);
        let sim = SimVenues::start(sim_config)
            .await
            .expect("simulator binds loopback ports");
        Harness::start_with(sim, tweak)
    }

    fn start_with(sim: SimVenues, tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_with_outbounds(sim, tweak, |shards| {
            (0..shards)
                .map(|_| Box::new(DiscardOutbound) as Box<dyn Outbound>)
                .collect()
        })
    }

    fn start_with_outbounds(
        sim: SimVenues,
        tweak: impl FnOnce(&mut Config),
        outbounds: impl FnOnce(usize) -> Vec<Box<dyn Outbound>>,
    ) -> Harness {
        let config = engine_config(&sim, tweak);
        let registry = Arc::new(SymbolRegistry::new(config.engine.max_symbols));
        let outbounds = outbounds(config.shard_count());
        let mut pipeline =
            Pipeline::start(&config.engine, &config.windows, outbounds).expect("pipeline starts");
        let feeds = Feeds::start(&config.feeds, &config.engine, Arc::clone(&registry), || {
            pipeline.take_producer()
        })
        .expect("feeds start");
        Harness {
            sim,
            feeds,
            pipeline,
            registry,
        }
    }

    fn slot(&self, venue: Venue) -> &SlotHandle {
        self.feeds
            .slots()
            .iter()
            .find(|slot| slot.plan.venue == venue)
            .expect("the venue has a slot")
    }

    fn control(&self, venue: Venue) -> &VenueControl {
        self.sim.control(venue)
    }

    /// Stops feeds then pipeline; returns records left in rings.
    async fn stop(self) -> u64 {
        assert!(
            self.feeds.shutdown().await,
            "feeds stop within their deadline"
        );
        let report = self.pipeline.shutdown();
        self.sim.shutdown().await;
        report.records_left_in_rings
    }
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    SlotCounters::get(counter)
}

/// Polls `condition` until it holds or `DEADLINE` passes; false on timeout.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

async fn records_grow(slot: &SlotHandle) -> bool {
    let before = get(&slot.counters.records);
    eventually(|| get(&slot.counters.records) > before + 10).await
}

#[test]
fn every_venue_subscribes_delivers_data_and_keeps_alive_both_ways() {
    runtime().block_on(async {
        let harness = Harness::start(&Venue::ALL, |_| {}, |_| {}).await;
        for venue in Venue::ALL {
            let slot = harness.slot(venue);
            let control = harness.control(venue);
            assert!(
                records_grow(slot).await,
                "{venue}: records flow: {:?}",
                slot.counters
            );
            assert!(get(&control.subscribe_requests) > 0, "{venue}: subscribed");
            assert_eq!(
                get(&control.topics_subscribed),
                6,
                "{venue}: 3 symbols × 2 channels"
            );
            match venue {
                // Server pings us: we must answer.
                Venue::Htx => assert!(
                    eventually(|| get(&control.client_pongs) >= 2).await,
                    "{venue}: answers pings"
                ),
                Venue::Binance | Venue::Gate => {
                    assert!(
                        eventually(|| get(&control.client_pongs) >= 2).await,
                        "{venue}: answers ws pings"
                    );
                    assert!(
                        eventually(|| get(&control.client_pings) >= 2).await,
                        "{venue}: pings the server"
                    );
                }
                _ => assert!(
                    eventually(|| get(&control.client_pings) >= 2).await,
                    "{venue}: pings the server"
                ),
            }
            assert_eq!(
                get(&slot.counters.pongs_missed),
                0,
                "{venue}: no pong missed"
            );
            assert_eq!(get(&slot.counters.reconnects), 0, "{venue}: no reconnect");
            assert_eq!(
                slot.counters.decode_errors_total(),
                0,
                "{venue}: every frame decodes"
            );
        }
        assert!(
            eventually(|| harness.pipeline.counters().quotes > 100).await,
            "quotes reach the shards"
        );
        assert!(
            eventually(|| harness.pipeline.counters().trades > 10).await,
            "trades reach the shards"
        );
        assert_eq!(harness.registry.len(), 3);
        assert_eq!(harness.stop().await, 0, "rings drained");
    });
}

#[test]
fn server_close_reconnects_resubscribes_and_marks_the_gap() {
    runtime().block_on(async {
        let harness = Harness::start(&Venue::ALL, |_| {}, |_| {}).await;
        for venue in Venue::ALL {
            let slot = harness.slot(venue);
            assert!(records_grow(slot).await, "{venue}: first data");
            let subscribes = get(&harness.control(venue).subscribe_requests);
            harness.control(venue).disconnect_all();
            assert!(
                eventually(|| get(&slot.counters.reconnects) >= 1).await,
                "{venue}: reconnects"
            );
            assert!(records_grow(slot).await, "{venue}: data resumes");
            assert!(
                get(&harness.control(venue).subscribe_requests) > subscribes,
                "{venue}: resubscribed"
            );
            // One disconnect and one reconnect gap per owned symbol, for every reconnect.
            assert_eq!(
                get(&slot.counters.gaps),
                2 * 3 * get(&slot.counters.reconnects),
                "{venue}: gaps"
            );
            assert_eq!(
                get(&slot.counters.subscriptions),
                6,
                "{venue}: same subscription set"
            );
        }
        assert!(
            eventually(|| harness.pipeline.counters().gaps >= 8 * 6).await,
            "gaps reach the shards"
        );
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn a_stalled_venue_is_declared_dead_and_replaced() {
    runtime().block_on(async {
        // Tight limits so each stall is detected well within `DEADLINE`; only `>=` is asserted,
        // so a spurious detection elsewhere cannot fail the test.
        let harness = Harness::start(
            &Venue::ALL,
            |_| {},
            |config| {
                config.feeds.pong_timeout_ms = 1_000;
                config.feeds.max_silence_ms = 2_000;
            },
        )
        .await;
        for venue in Venue::ALL {
            let slot = harness.slot(venue);
            assert!(records_grow(slot).await, "{venue}: first data");
            harness.control(venue).set_stalled(true);
            assert!(
                eventually(|| get(&slot.counters.pongs_missed) + get(&slot.counters.silences) >= 1)
                    .await,
                "{venue}: the stall is detected"
            );
            harness.control(venue).set_stalled(false);
            assert!(
                eventually(|| get(&slot.counters.reconnects) >= 1).await,
                "{venue}: reconnects"
            );
            assert!(records_grow(slot).await, "{venue}: data resumes");
        }
        // HTX has no client ping: silence is its dead signal; every other venue misses a pong.
        assert!(get(&harness.slot(Venue::Htx).counters.silences) >= 1);
        assert!(get(&harness.slot(Venue::Okx).counters.pongs_missed) >= 1);
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn a_resending_channel_that_goes_quiet_is_stale_but_quiet_channels_are_not() {
    runtime().block_on(async {
        // Pings keep being answered; only data stops. Bybit level 1 re-sends, so silence is stale.
        let harness = Harness::start(
            &[Venue::Bybit, Venue::Okx],
            |_| {},
            |config| {
                config.feeds.max_silence_ms = 60_000;
                config.feeds.stale_data_ms = 1_000;
            },
        )
        .await;
        let bybit = harness.slot(Venue::Bybit);
        let okx = harness.slot(Venue::Okx);
        assert!(records_grow(bybit).await && records_grow(okx).await);
        assert!(bybit.plan.stale_watchdog && !okx.plan.stale_watchdog);
        harness.control(Venue::Bybit).set_data_paused(true);
        harness.control(Venue::Okx).set_data_paused(true);
        assert!(
            eventually(|| get(&bybit.counters.stale_data) >= 1).await,
            "bybit: stale detected"
        );
        assert_eq!(
            get(&okx.counters.stale_data),
            0,
            "okx bbo-tbt only pushes on change"
        );
        assert_eq!(
            get(&bybit.counters.pongs_missed),
            0,
            "pings were answered all along"
        );
        harness.control(Venue::Bybit).set_data_paused(false);
        harness.control(Venue::Okx).set_data_paused(false);
        assert!(
            records_grow(bybit).await,
            "bybit: data resumes on the new connection"
        );
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn rotation_opens_the_replacement_first_and_leaves_no_gap() {
    runtime().block_on(async {
        let harness = Harness::start(
            &Venue::ALL,
            |_| {},
            |config| {
                config.feeds.rotate_after_ms = 300;
            },
        )
        .await;
        for venue in Venue::ALL {
            let slot = harness.slot(venue);
            assert!(
                eventually(|| get(&slot.counters.rotations) >= 2).await,
                "{venue}: rotates"
            );
            assert!(records_grow(slot).await, "{venue}: data flows");
            // Rotation adds no gap: every gap belongs to a (spurious) reconnect.
            assert_eq!(
                get(&slot.counters.gaps),
                2 * 3 * get(&slot.counters.reconnects),
                "{venue}: no gap from rotation"
            );
        }
        // Old connections are closed: at most the current one and a replacement per venue.
        for venue in Venue::ALL {
            assert!(
                VenueControl::get(&harness.control(venue).sessions_live) <= 2,
                "{venue}"
            );
        }
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn shutdown_notices_rotate_without_a_gap() {
    runtime().block_on(async {
        let venues = [Venue::Binance, Venue::Okx, Venue::Gate];
        let harness = Harness::start(&venues, |_| {}, |_| {}).await;
        for venue in venues {
            let slot = harness.slot(venue);
            assert!(records_grow(slot).await, "{venue}: first data");
            harness.control(venue).send_shutdown_notice();
            assert!(
                eventually(|| get(&slot.counters.shutdown_notices) == 1).await,
                "{venue}: notice seen"
            );
            assert!(
                eventually(|| get(&slot.counters.rotations) >= 1).await,
                "{venue}: rotated"
            );
            assert!(records_grow(slot).await, "{venue}: data flows");
            // Rotation adds no gap: every gap belongs to a (spurious) reconnect.
            assert_eq!(
                get(&slot.counters.gaps),
                2 * 3 * get(&slot.counters.reconnects),
                "{venue}: no gap from rotation"
            );
        }
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn a_429_on_connect_is_honoured_then_the_slot_connects() {
    runtime().block_on(async {
        let sim = SimVenues::start(sim_config(&[Venue::Bybit, Venue::Kucoin]))
            .await
            .expect("simulator starts");
        sim.control(Venue::Bybit).reject_next_connects(2);
        sim.control(Venue::Kucoin).reject_next_connects(1);
        let harness = Harness::start_with(sim, |_| {});
        for (venue, refusals) in [(Venue::Bybit, 2), (Venue::Kucoin, 1)] {
            let slot = harness.slot(venue);
            assert!(
                records_grow(slot).await,
                "{venue}: connects after the refusals"
            );
            assert_eq!(
                get(&slot.counters.rate_limited),
                refusals,
                "{venue}: refusals counted"
            );
            assert_eq!(VenueControl::get(&harness.control(venue).refused), refusals);
            // The backoff base is 10 ms: only honouring Retry-After makes the next attempt wait.
            let retry_after = Duration::from_secs(harness.sim.config().retry_after_s);
            let waited = harness
                .control(venue)
                .shortest_wait_after_refusal()
                .expect("an attempt followed each refusal");
            assert!(
                waited >= retry_after,
                "{venue}: next attempt {waited:?} after a refusal, Retry-After is {retry_after:?}"
            );
            assert_eq!(
                get(&slot.counters.connects),
                get(&slot.counters.reconnects) + 1,
                "{venue}: a refusal is not a connect"
            );
        }
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn malformed_and_oversized_frames_are_counted_and_survived() {
    runtime().block_on(async {
        // The default `engine.max_frame_bytes`: the simulator's 2 MiB messages are over it.
        let harness = Harness::start(&Venue::ALL, |_| {}, |_| {}).await;
        for venue in Venue::ALL {
            let slot = harness.slot(venue);
            assert!(records_grow(slot).await, "{venue}: first data");
            harness.control(venue).send_malformed();
            assert!(
                eventually(|| slot.counters.decode_errors_total() >= 1).await,
                "{venue}: malformed counted"
            );
            assert!(records_grow(slot).await, "{venue}: data continues");
            // Over the limit in one frame, then in 64 KiB fragments: each is skipped and
            // counted, and the connection goes on (no gap, no reconnect).
            harness.control(venue).send_oversized();
            assert!(
                eventually(|| get(&slot.counters.oversized_frames) >= 1).await,
                "{venue}: oversized counted"
            );
            assert!(records_grow(slot).await, "{venue}: data continues after it");
            harness.control(venue).send_fragmented_oversized();
            assert!(
                eventually(|| get(&slot.counters.oversized_frames) >= 2).await,
                "{venue}: oversized fragmented message counted"
            );
            assert!(records_grow(slot).await, "{venue}: data continues after it");
            assert_eq!(
                get(&slot.counters.reconnects),
                0,
                "{venue}: never reconnects"
            );
            assert_eq!(get(&slot.counters.gaps), 0, "{venue}: no gap");
            assert_eq!(get(&slot.counters.protocol_errors), 0, "{venue}");
        }
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn fragmented_messages_are_reassembled_and_decoded() {
    runtime().block_on(async {
        let harness = Harness::start(&Venue::ALL, |_| {}, |_| {}).await;
        for venue in Venue::ALL {
            let slot = harness.slot(venue);
            let control = harness.control(venue);
            assert!(records_grow(slot).await, "{venue}: first data");
            control.set_data_paused(true);
            let records_before = get(&slot.counters.records);
            // One best bid/ask message in three fragments, a ws ping between the first two.
            control.send_fragmented();
            assert!(
                eventually(|| control.fragmented_sent() >= 1).await,
                "{venue}: sent"
            );
            assert!(
                eventually(|| get(&slot.counters.records) > records_before).await,
                "{venue}: the reassembled message decodes to its quote"
            );
            control.set_data_paused(false);
            assert!(records_grow(slot).await, "{venue}: data continues");
            assert_eq!(slot.counters.decode_errors_total(), 0, "{venue}");
            assert_eq!(get(&slot.counters.protocol_errors), 0, "{venue}");
            assert_eq!(get(&slot.counters.reconnects), 0, "{venue}: no reconnect");
        }
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn a_thousand_trades_in_one_message_arrive_whole_with_the_default_limits() {
    // Bybit documents up to 1 024 trades in one message; the other venues that batch trades get
    // the same. The simulator writes its longest fields (UUID ids, 8-decimal numbers): Bybit's
    // message is about 190 KiB, far over the old 64 KiB limit and its 256 records.
    const TRADES: u64 = 1_024;
    let venues = [
        Venue::Bybit,
        Venue::Okx,
        Venue::Bitget,
        Venue::Htx,
        Venue::Mexc,
    ];
    runtime().block_on(async {
        let harness = Harness::start(&venues, |_| {}, |_| {}).await;
        for venue in venues {
            let slot = harness.slot(venue);
            let control = harness.control(venue);
            assert!(records_grow(slot).await, "{venue}: first data");
            control.set_data_paused(true);
            let records_before = get(&slot.counters.records);
            control.send_trade_burst(TRADES);
            assert!(
                eventually(|| get(&slot.counters.records) >= records_before + TRADES).await,
                "{venue}: every trade of the message decoded: {:?}",
                slot.counters
            );
            control.set_data_paused(false);
            assert!(records_grow(slot).await, "{venue}: data continues");
            assert_eq!(get(&slot.counters.oversized_frames), 0, "{venue}");
            assert_eq!(slot.counters.decode_errors_total(), 0, "{venue}");
            assert_eq!(get(&slot.counters.ring_drops), 0, "{venue}");
            assert_eq!(get(&slot.counters.reconnects), 0, "{venue}: no reconnect");
        }
        assert!(
            eventually(|| harness.pipeline.counters().trades >= 5 * TRADES).await,
            "the trades reach the shards"
        );
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn a_venue_that_stops_reading_is_replaced_and_never_stalls_the_reads() {
    runtime().block_on(async {
        let harness = Harness::start(
            &[Venue::Binance, Venue::Okx],
            |_| {},
            |config| {
                config.feeds.write_timeout_ms = 1_000;
            },
        )
        .await;
        let binance = harness.slot(Venue::Binance);
        let okx = harness.slot(Venue::Okx);
        assert!(records_grow(binance).await && records_grow(okx).await);
        // The venue stops reading and floods ws pings: our pongs pile up in the socket buffers.
        harness.control(Venue::Binance).set_unread(true);
        assert!(
            eventually(|| get(&binance.counters.write_timeouts) >= 1).await,
            "binance: the stalled writes are detected: {:?}",
            binance.counters
        );
        // Detected by the watchdog, which a write waiting on the stuck socket would have held up
        // (the writes are polled beside the reads, never awaited); the other venue is unaffected.
        assert!(records_grow(okx).await, "okx: data flows");
        harness.control(Venue::Binance).set_unread(false);
        assert!(
            eventually(|| get(&binance.counters.reconnects) >= 1).await,
            "binance: replaced"
        );
        assert!(records_grow(binance).await, "binance: data resumes");
        // Replaced like a missing pong: a marked gap around the reconnect.
        assert_eq!(
            get(&binance.counters.gaps),
            2 * 3 * get(&binance.counters.reconnects),
            "binance: gaps"
        );
        assert_eq!(get(&okx.counters.write_timeouts), 0);
        assert_eq!(get(&okx.counters.reconnects), 0);
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn reconnect_storm_leaves_tasks_registry_and_subscriptions_unchanged() {
    const STORM_DISCONNECTS: usize = 25;
    runtime().block_on(async {
        let harness = Harness::start(&Venue::ALL, |_| {}, |_| {}).await;
        for venue in Venue::ALL {
            assert!(
                records_grow(harness.slot(venue)).await,
                "{venue}: first data"
            );
        }
        let tasks_before = harness.feeds.live_tasks();
        // Every task in the runtime: slot tasks, simulator accept loops, connections, sessions.
        let runtime_tasks_before = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let symbols_before = harness.registry.len();
        for round in 1..=STORM_DISCONNECTS {
            for venue in Venue::ALL {
                harness.control(venue).disconnect_all();
            }
            for venue in Venue::ALL {
                let slot = harness.slot(venue);
                assert!(
                    eventually(|| get(&slot.counters.reconnects) >= round as u64).await,
                    "{venue}: reconnect {round}"
                );
                assert!(
                    records_grow(slot).await,
                    "{venue}: data resumes after reconnect {round}"
                );
            }
        }
        let totals = harness.feeds.totals();
        assert!(totals.reconnects >= (STORM_DISCONNECTS * 8) as u64);
        assert_eq!(
            harness.feeds.live_tasks(),
            tasks_before,
            "task count unchanged"
        );
        assert_eq!(harness.registry.len(), symbols_before, "registry unchanged");
        for venue in Venue::ALL {
            let control = harness.control(venue);
            assert!(
                eventually(|| VenueControl::get(&control.sessions_live) == 1).await,
                "{venue}: one live connection"
            );
            // Counted by the venue: every session subscribed the slot's topics once each, and
            // the session open now has exactly the slot's set.
            let topics = harness.slot(venue).plan.topics.len() as u64;
            assert_eq!(topics, 6, "{venue}: 3 symbols × 2 channels");
            assert!(
                eventually(|| VenueControl::get(&control.live_session_topics) == topics).await,
                "{venue}: the live session has the slot's {topics} topics, has {}",
                VenueControl::get(&control.live_session_topics)
            );
            assert_eq!(
                VenueControl::get(&control.duplicate_topics),
                0,
                "{venue}: no topic subscribed twice on a session"
            );
            assert_eq!(
                VenueControl::get(&control.most_topics_in_a_session),
                topics,
                "{venue}: no session got more than the slot's topics"
            );
        }
        assert!(totals.resume_count >= (STORM_DISCONNECTS * 8) as u64);
        assert!(
            eventually(|| tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
                == runtime_tasks_before)
            .await,
            "no task accumulates: {} before, {} after",
            runtime_tasks_before,
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        );
        assert_eq!(harness.stop().await, 0);
    });
}

/// Cuts after data are new incidents: the backoff starts again at its base each time, so a storm
/// of cuts is resumed at once rather than after ever longer waits (with the old rule, reset only
/// after `healthy_after_ms`, the tenth reconnect waited up to 0.1 s · 2⁹ = 51 s).
#[test]
fn cuts_after_data_are_resumed_at_the_base_delay_every_time() {
    const CUTS: u64 = 10;
    runtime().block_on(async {
        let harness = Harness::start(
            &[Venue::Binance],
            |_| {},
            |config| {
                config.feeds.backoff_base_ms = 100;
                config.feeds.backoff_cap_ms = 60_000;
                config.feeds.healthy_after_ms = 60_000;
            },
        )
        .await;
        let slot = harness.slot(Venue::Binance);
        assert!(records_grow(slot).await, "first data");
        let started = tokio::time::Instant::now();
        for cut in 1..=CUTS {
            harness.control(Venue::Binance).disconnect_all();
            assert!(
                eventually(|| get(&slot.counters.reconnects) >= cut).await,
                "reconnect {cut}"
            );
            assert!(records_grow(slot).await, "data after reconnect {cut}");
        }
        let took = started.elapsed();
        // Ten delays of at most 100 ms, ten connects and first data on loopback: seconds at
        // most on a loaded machine; the old rule's delays alone sum to ~50 s on average.
        assert!(
            took < Duration::from_secs(8),
            "{CUTS} cuts took {took:?} to resume"
        );
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn shutdown_under_load_drains_every_ring() {
    runtime().block_on(async {
        let harness = Harness::start(
            &Venue::ALL,
            |sim| sim.bbo_per_s_per_symbol = 2_000.0,
            |_| {},
        )
        .await;
        for venue in Venue::ALL {
            assert!(
                records_grow(harness.slot(venue)).await,
                "{venue}: under load"
            );
        }
        assert_eq!(harness.stop().await, 0, "rings drained");
    });
}

/// Writes a `tickflow run` config pointing at `sim` (bbo + trades, fast stats).
fn run_config_toml(sim: &SimVenues) -> String {
    let quoted: Vec<String> = sim
        .config()
        .symbols
        .iter()
        .map(|symbol| format!("\"{symbol}\""))
        .collect();
    let mut text = format!(
        "[engine]\nshards = 1\nmax_symbols = 64\nmax_connection_slots = 16\nring_capacity_records = 8192\n\
         [windows]\nbucket_ms = 100\nbuckets = 10\nmax_windows = 1000\nsnapshot_interval_ms = 100\n\
         [feeds]\nsymbols = [{}]\nchannels = [\"bbo\", \"trades\"]\nstats_interval_ms = 100\nshutdown_deadline_ms = 2000\n",
        quoted.join(", ")
    );
    for venue in Venue::ALL {
        text.push_str(&format!("[feeds.venue.{}]\n", venue.name()));
        if venue == Venue::Kucoin {
            text.push_str(&format!(
                "bullet_url = \"{}\"\n",
                sim.bullet_url().expect("kucoin is simulated")
            ));
        } else {
            text.push_str(&format!(
                "url = \"{}\"\n",
                sim.url(venue).expect("venue is simulated")
            ));
        }
    }
    text
}

#[test]
fn tickflow_run_under_load_exits_zero_on_sigterm_with_empty_rings() {
    use std::io::BufRead;
    runtime().block_on(async {
        let sim = SimVenues::start(SimConfig {
            bbo_per_s_per_symbol: 1_000.0,
            ..sim_config(&Venue::ALL)
        })
        .await
        .expect("simulator starts");
        let directory =
            std::env::temp_dir().join(format!("tickflow-feeds-it-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("temp dir");
        let config_path = directory.join("run.toml");
        std::fs::write(&config_path, run_config_toml(&sim)).expect("config written");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .env("RUST_LOG", "error")
            .spawn()
            .expect("tickflow starts");
        let stderr = child.stderr.take().expect("piped");
        let pid = child.id().to_string();
        // The engine's stderr is read on a blocking thread owned by this test (joined below).
        let reader = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stderr).lines();
            let mut loaded = false;
            let mut shutdown_line = None;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(json) = line.strip_prefix("tickflow-stats ") {
                    let stats: serde_json::Value =
                        serde_json::from_str(json).expect("stats line is JSON");
                    if !loaded
                        && stats["connected"] == 8
                        && stats["quotes"].as_u64().unwrap_or(0) > 1_000
                    {
                        loaded = true;
                        let status = std::process::Command::new("kill")
                            .args(["-TERM", &pid])
                            .status()
                            .expect("kill runs");
                        assert!(status.success());
                    }
                }
                if let Some(json) = line.strip_prefix("tickflow-shutdown ") {
                    shutdown_line = Some(
                        serde_json::from_str::<serde_json::Value>(json)
                            .expect("shutdown line is JSON"),
                    );
                }
            }
            (loaded, shutdown_line)
        });
        let (loaded, shutdown_line) = reader.await.expect("reader thread joins");
        let status = child.wait().expect("tickflow exits");
        assert!(loaded, "the engine reached load before the signal");
        assert_eq!(status.code(), Some(0), "exit code 0 after SIGTERM");
        let report = shutdown_line.expect("a shutdown report");
        assert_eq!(
            report["records_left_in_rings"], 0,
            "rings drained: {report}"
        );
        assert!(report["quotes"].as_u64().unwrap_or(0) > 1_000);
        // Per kind, what the shards emitted towards the sinks (none configured: none delivered).
        assert_eq!(
            report["sink_kinds"]["quote"]["emitted"], report["quotes"],
            "{report}"
        );
        assert_eq!(report["sink_kinds"]["quote"]["delivered"], 0, "{report}");
        assert!(
            report["sink_kinds"]["spread"]["emitted"].is_u64(),
            "{report}"
        );
        std::fs::remove_dir_all(&directory).expect("temp dir removed");
        sim.shutdown().await;
    });
}

/// A CA and a server certificate for `localhost` and `127.0.0.1` signed by it, made at test time.
struct TestPki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki() -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("ring generates a P-256 key");
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).expect("no names is a valid name list");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tickflow test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("the CA self-signs");
    let server_key = KeyPair::generate().expect("ring generates a P-256 key");
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("localhost and 127.0.0.1 are valid names");
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params
        .signed_by(&server_key, &*ca)
        .expect("the CA signs the server certificate");
    let server_key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der()),
    );
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![server_cert.der().clone()], server_key_der)
    .expect("the server key matches its certificate");
    TestPki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// A file under the temp dir, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("tickflow-feeds-it-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("the temp dir is writable");
        TempFile(path)
    }

    fn path_string(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const TLS_VENUES: [Venue; 2] = [Venue::Binance, Venue::Kucoin];

#[test]
fn feeds_connect_over_tls_when_the_venue_ca_is_an_extra_root() {
    runtime().block_on(async {
        let pki = test_pki();
        let roots = TempFile::new("tls-extra-roots.pem", &pki.ca_pem);
        let sim = SimVenues::start_tls(sim_config(&TLS_VENUES), Arc::clone(&pki.server))
            .await
            .expect("simulator binds loopback ports");
        let binance_port = sim
            .address(Venue::Binance)
            .expect("binance is simulated")
            .port();
        let harness = Harness::start_with(sim, |config| {
            config.feeds.tls_extra_roots_pem = roots.path_string();
            // Binance by the certificate's DNS name; KuCoin's bullet hands out its IP address,
            // so both kinds of subject name are verified.
            config
                .feeds
                .venue
                .get_mut("binance")
                .expect("binance is configured")
                .url = format!("wss://localhost:{binance_port}/ws/binance");
        });
        use tickflow_feed::SlotEndpoint;
        match &harness.slot(Venue::Kucoin).plan.endpoint {
            SlotEndpoint::KucoinBullet(url) => assert!(
                url.starts_with("https://127.0.0.1:"),
                "KuCoin's bullet is called over https: {url}"
            ),
            other => panic!("KuCoin connects through its bullet: {other:?}"),
        }
        match &harness.slot(Venue::Binance).plan.endpoint {
            SlotEndpoint::Url(url) => assert!(
                url.starts_with("wss://localhost:"),
                "Binance is opened over wss by name: {url}"
            ),
            other => panic!("Binance connects to a URL: {other:?}"),
        }
        for venue in TLS_VENUES {
            let slot = harness.slot(venue);
            assert!(
                records_grow(slot).await,
                "{venue}: records flow over TLS: {:?}",
                slot.counters
            );
            assert_eq!(
                get(&slot.counters.connect_failures),
                0,
                "{venue}: every TLS handshake succeeded"
            );
            assert_eq!(
                get(&harness.control(venue).tls_handshake_failures),
                0,
                "{venue}: the server saw no failed handshake"
            );
            assert!(
                get(&harness.control(venue).sessions_opened) >= 1,
                "{venue}: a wss session is open"
            );
        }
        assert!(
            get(&harness.control(Venue::Kucoin).bullets) >= 1,
            "KuCoin's bullet-public was served over https"
        );
        assert!(
            eventually(|| harness.pipeline.counters().quotes > 100).await,
            "quotes from the TLS venues reach the shards"
        );
        assert_eq!(harness.stop().await, 0, "rings drained");
    });
}

#[test]
fn without_the_extra_root_tls_fails_is_counted_and_the_slots_keep_retrying() {
    runtime().block_on(async {
        let pki = test_pki();
        let sim = SimVenues::start_tls(sim_config(&TLS_VENUES), Arc::clone(&pki.server))
            .await
            .expect("simulator binds loopback ports");
        // webpki's roots only: the simulator's private CA is unknown.
        let harness = Harness::start_with(sim, |config| {
            assert!(config.feeds.tls_extra_roots_pem.is_empty());
        });
        for venue in TLS_VENUES {
            let slot = harness.slot(venue);
            assert!(
                eventually(|| get(&slot.counters.connect_failures) >= 3).await,
                "{venue}: failed handshakes are counted as connect failures: {:?}",
                slot.counters
            );
            // Still retrying: more failures come after the ones already seen.
            let failures = get(&slot.counters.connect_failures);
            assert!(
                eventually(|| get(&slot.counters.connect_failures) > failures).await,
                "{venue}: the slot keeps retrying with backoff"
            );
            assert!(
                get(&harness.control(venue).tls_handshake_failures) >= 1,
                "{venue}: the server saw the client abort the handshake"
            );
            assert_eq!(get(&slot.counters.connects), 0, "{venue}: never connected");
            assert_eq!(get(&slot.counters.records), 0, "{venue}: no data");
            assert_eq!(
                get(&harness.control(venue).sessions_opened),
                0,
                "{venue}: no WebSocket session without a trusted certificate"
            );
        }
        assert_eq!(
            get(&harness.control(Venue::Kucoin).bullets),
            0,
            "no bullet is served to a client that rejects the certificate"
        );
        assert_eq!(
            harness.feeds.live_tasks(),
            harness.feeds.slots().len(),
            "every slot task is still running (none panicked)"
        );
        harness.stop().await;
    });
}

#[test]
fn tls_extra_roots_pem_is_checked_at_config_load_naming_the_key() {
    let pki = test_pki();
    let roots = TempFile::new("tls-roots-valid.pem", &pki.ca_pem);
    let not_pem = TempFile::new("tls-roots-not-pem.pem", "no certificate here\n");
    let config_with = |path: &str| {
        Config::from_toml_str(&format!(
            "[engine]\nshards = 1\n[feeds]\ntls_extra_roots_pem = {path:?}\n"
        ))
    };
    let config = config_with(&roots.path_string()).expect("a PEM file of CA certificates is valid");
    assert_eq!(config.feeds.tls_extra_roots_pem, roots.path_string());
    for bad in [
        not_pem.path_string(),
        format!("{}.missing", roots.path_string()),
    ] {
        let error = config_with(&bad).expect_err("an unusable roots file is refused");
        assert!(
            error.to_string().contains("feeds.tls_extra_roots_pem"),
            "the error names the key: {error}"
        );
    }
    let config = Config::from_toml_str("[engine]\nshards = 1\n").expect("defaults are valid");
    assert!(
        config.feeds.tls_extra_roots_pem.is_empty(),
        "webpki's roots only by default"
    );
}

/// A shard's outbound that blocks the shard thread until the test opens it, so the feed ring fills
/// up for real; it records the gap events it is handed, in order.
struct GatedOutbound {
    gate: Arc<Gate>,
    gaps: Arc<std::sync::Mutex<Vec<(u32, u8)>>>,
}

struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn open(&self) {
        *self
            .open
            .lock()
            .expect("no test thread panics holding the gate") = true;
        self.opened.notify_all();
    }
}

impl Outbound for GatedOutbound {
    fn emit(&mut self, record: &tickflow_core::outbound::OutRecord) {
        let mut open = self
            .gate
            .open
            .lock()
            .expect("no test thread panics holding the gate");
        while !*open {
            open = self
                .gate
                .opened
                .wait(open)
                .expect("no test thread panics holding the gate");
        }
        drop(open);
        if let tickflow_core::outbound::OutRecord::Gap(gap) = record {
            self.gaps
                .lock()
                .expect("only the shard thread writes")
                .push((gap.symbol_id.0, gap.kind));
        }
    }
}

#[test]
fn gaps_refused_by_a_full_ring_are_held_and_delivered_in_order() {
    use tickflow_core::records::{GAP_DISCONNECT, GAP_RECONNECT};
    runtime().block_on(async {
        let sim = SimVenues::start(sim_config(&[Venue::Binance]))
            .await
            .expect("simulator binds loopback ports");
        let gate = Arc::new(Gate {
            open: std::sync::Mutex::new(false),
            opened: std::sync::Condvar::new(),
        });
        let gaps = Arc::new(std::sync::Mutex::new(Vec::new()));
        let harness = Harness::start_with_outbounds(
            sim,
            |config| config.engine.ring_capacity_records = 16,
            |shards| {
                (0..shards)
                    .map(|_| {
                        Box::new(GatedOutbound {
                            gate: Arc::clone(&gate),
                            gaps: Arc::clone(&gaps),
                        }) as Box<dyn Outbound>
                    })
                    .collect()
            },
        );
        let slot = harness.slot(Venue::Binance);
        // The shard is stuck on its first record: the 16-record ring fills and refuses.
        assert!(
            eventually(|| get(&slot.counters.ring_drops) > 0).await,
            "the ring fills"
        );
        harness.control(Venue::Binance).disconnect_all();
        assert!(
            eventually(|| get(&slot.counters.reconnects) >= 1).await,
            "reconnects while the ring is full"
        );
        assert!(records_grow(slot).await, "data resumes (into a full ring)");
        assert!(get(&slot.counters.gaps) >= 6, "gaps were emitted");
        gate.open();
        let symbols = harness.registry.len() as u64;
        assert_eq!(symbols, 3);
        assert!(
            eventually(|| {
                let delivered = gaps.lock().expect("the shard does not panic").len() as u64;
                delivered == get(&slot.counters.gaps)
            })
            .await,
            "every gap reaches the shard once the ring has room: {} of {}",
            gaps.lock().expect("the shard does not panic").len(),
            get(&slot.counters.gaps)
        );
        let delivered = gaps.lock().expect("the shard does not panic").clone();
        for symbol in slot.plan.symbol_ids.iter().map(|id| id.0) {
            let kinds: Vec<u8> = delivered
                .iter()
                .filter(|(id, _)| *id == symbol)
                .map(|(_, kind)| *kind)
                .collect();
            assert!(!kinds.is_empty(), "symbol {symbol}: gaps delivered");
            for pair in kinds.chunks(2) {
                assert_eq!(
                    pair,
                    [GAP_DISCONNECT, GAP_RECONNECT],
                    "symbol {symbol}: disconnect then reconnect: {kinds:?}"
                );
            }
        }
        assert_eq!(get(&slot.counters.gap_drops), 0, "no gap lost");
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn a_primary_lost_before_its_replacement_delivers_is_a_marked_reconnect() {
    runtime().block_on(async {
        // Data-only timeouts far away, so only the replacement's first-data timeout can end it.
        let harness = Harness::start(
            &[Venue::Binance],
            |_| {},
            |config| {
                config.feeds.stale_data_ms = 60_000;
                config.feeds.rotation_first_data_timeout_ms = 3_000;
            },
        )
        .await;
        let slot = harness.slot(Venue::Binance);
        let control = harness.control(Venue::Binance);
        assert!(records_grow(slot).await, "first data");
        // The replacement opened by the notice sends nothing; the old connection closes after
        // `notice_close_after_ms`: the slot is left with a connection that has given no data.
        control.hold_new_sessions();
        control.send_shutdown_notice();
        assert!(
            eventually(|| get(&slot.counters.gaps) >= 3).await,
            "the hole is marked with a disconnect gap per symbol: {:?}",
            slot.counters
        );
        assert_eq!(get(&slot.counters.rotations), 0, "not a rotation");
        assert_eq!(
            get(&slot.counters.reconnects),
            0,
            "no reconnect before the replacement delivers"
        );
        control.release_held_sessions();
        assert!(
            eventually(|| get(&slot.counters.reconnects) >= 1).await,
            "the replacement's first data is a reconnect"
        );
        assert!(records_grow(slot).await, "data flows on the replacement");
        assert_eq!(get(&slot.counters.rotations), 0, "not a rotation");
        assert_eq!(
            get(&slot.counters.gaps),
            2 * 3 * get(&slot.counters.reconnects),
            "disconnect and reconnect gaps per symbol"
        );
        assert!(
            harness.feeds.totals().resume_count >= 1,
            "the resume is measured"
        );

        // Same again, but the replacement never delivers: its first-data timeout still applies
        // after it was promoted, and the slot reconnects.
        let reconnects = get(&slot.counters.reconnects);
        let opened = get(&control.sessions_opened);
        control.hold_new_sessions();
        control.send_shutdown_notice();
        assert!(
            eventually(|| get(&control.sessions_opened) >= opened + 2).await,
            "the silent replacement is given up and a new connection opened"
        );
        control.release_held_sessions();
        assert!(
            eventually(|| get(&slot.counters.reconnects) > reconnects).await,
            "reconnects"
        );
        assert!(records_grow(slot).await, "data resumes");
        assert_eq!(get(&slot.counters.rotations), 0, "never a rotation");
        assert_eq!(
            get(&slot.counters.gaps),
            2 * 3 * get(&slot.counters.reconnects),
            "every disconnect gap has its reconnect gap"
        );
        assert_eq!(harness.stop().await, 0);
    });
}

#[test]
fn the_primary_keeps_being_read_while_its_replacement_connects() {
    runtime().block_on(async {
        // A connect that hangs for longer than `DEADLINE` must not stop the primary's reads.
        let harness = Harness::start(
            &[Venue::Binance],
            |_| {},
            |config| {
                config.feeds.rotate_after_ms = 300;
                config.feeds.connect_timeout_ms = 60_000;
            },
        )
        .await;
        let slot = harness.slot(Venue::Binance);
        let control = harness.control(Venue::Binance);
        assert!(records_grow(slot).await, "first data");
        control.hold_new_connections(true);
        assert!(
            eventually(|| get(&control.connections_held) >= 1).await,
            "a rotation starts connecting its replacement"
        );
        let sessions_opened = get(&control.sessions_opened);
        let rotations = get(&slot.counters.rotations);
        let pings = get(&control.client_pings);
        assert!(
            records_grow(slot).await,
            "the primary is read while the replacement's connect hangs"
        );
        assert!(
            eventually(|| get(&control.client_pings) >= pings + 2).await,
            "the primary keeps pinging"
        );
        assert_eq!(
            get(&control.sessions_opened),
            sessions_opened,
            "the replacement is still connecting"
        );
        control.hold_new_connections(false);
        assert!(
            eventually(|| get(&slot.counters.rotations) > rotations).await,
            "the replacement opens and takes over"
        );
        assert!(records_grow(slot).await, "data flows after the rotation");
        assert_eq!(
            get(&slot.counters.gaps),
            2 * 3 * get(&slot.counters.reconnects),
            "no gap from the rotation"
        );
        assert_eq!(harness.stop().await, 0);
    });
}

/// A shard's outbound that records which (symbol, venue) sent quotes and which gaps arrived.
#[derive(Clone, Default)]
struct RecordingOutbound {
    seen: Arc<std::sync::Mutex<RecordedFlow>>,
}

#[derive(Default)]
struct RecordedFlow {
    quotes: std::collections::HashMap<(u32, u16), u64>,
    gaps: Vec<(u32, u16, u8)>,
}

impl Outbound for RecordingOutbound {
    fn emit(&mut self, record: &tickflow_core::outbound::OutRecord) {
        let mut seen = self.seen.lock().expect("only the shard thread writes");
        match record {
            tickflow_core::outbound::OutRecord::Quote(quote) => {
                *seen
                    .quotes
                    .entry((quote.symbol_id.0, quote.venue_id.0))
                    .or_default() += 1;
            }
            tickflow_core::outbound::OutRecord::Gap(gap) => {
                seen.gaps.push((gap.symbol_id.0, gap.venue_id.0, gap.kind));
            }
            _ => {}
        }
    }
}

#[test]
fn a_refresh_moves_subscriptions_without_a_gap_for_what_stays() {
    use tickflow_core::records::{GAP_DISCONNECT, GAP_SYMBOL_RETIRED};
    use tickflow_core::registry::parse_canonical;
    runtime().block_on(async {
        let sim = SimVenues::start(sim_config(&[Venue::Binance]))
            .await
            .expect("simulator binds loopback ports");
        let recording = RecordingOutbound::default();
        let shard_outbound = recording.clone();
        let mut harness = Harness::start_with_outbounds(
            sim,
            |config| config.feeds.symbols = vec!["BTC-USDT".into(), "ETH-USDT".into()],
            move |_| vec![Box::new(shard_outbound) as Box<dyn Outbound>],
        );
        let registry = Arc::clone(&harness.registry);
        let btc = registry
            .lookup_on(Venue::Binance, b"btcusdt")
            .expect("listed");
        let eth = registry
            .lookup_on(Venue::Binance, b"ethusdt")
            .expect("listed");
        let binance = Venue::Binance.id().0;
        let quotes_of = |symbol: u32| {
            recording
                .seen
                .lock()
                .expect("no panic while recording")
                .quotes
                .get(&(symbol, binance))
                .copied()
                .unwrap_or(0)
        };
        assert!(eventually(|| quotes_of(btc.0) > 0 && quotes_of(eth.0) > 0).await);
        // A refresh: ETH delisted, SOL listed.
        let sol = registry.edit(|edit| {
            assert!(edit.unlist(Venue::Binance, eth));
            let sol = edit
                .symbol(parse_canonical("SOL-USDT").expect("canonical"))
                .expect("room");
            edit.list(Venue::Binance, sol, "solusdt", 1.0)
                .expect("a new spelling");
            sol
        });
        let report = harness.feeds.refresh().expect("replans");
        assert_eq!(report.slots_changed, 1);
        assert_eq!(report.slots_added, 0);
        assert!(eventually(|| quotes_of(sol.0) > 0).await, "SOL subscribed");
        let slot = harness.slot(Venue::Binance).clone();
        assert!(
            eventually(|| SlotCounters::get(&slot.counters.symbols_retired) == 1).await,
            "ETH taken off the slot"
        );
        let btc_before = quotes_of(btc.0);
        assert!(
            eventually(|| quotes_of(btc.0) > btc_before).await,
            "BTC goes on"
        );
        let gaps = recording
            .seen
            .lock()
            .expect("no panic while recording")
            .gaps
            .clone();
        assert!(
            gaps.iter()
                .any(|&(symbol, _, kind)| symbol == eth.0 && kind == GAP_SYMBOL_RETIRED),
            "ETH's retirement reaches the shard: {gaps:?}"
        );
        assert!(
            !gaps
                .iter()
                .any(|&(symbol, _, kind)| symbol == btc.0 && kind == GAP_DISCONNECT),
            "BTC stayed on its slot and had no gap: {gaps:?}"
        );
        assert_eq!(harness.feeds.slots().len(), 1);
        // Refreshing again with nothing new changes nothing.
        assert_eq!(
            harness.feeds.refresh().expect("replans"),
            tickflow_feed::RefreshReport::default()
        );
        harness.stop().await;
    });
}

/// A shard's outbound that counts quotes and trades per venue and keeps the gaps it is handed.
#[derive(Clone, Default)]
struct CountingOutbound {
    seen: Arc<std::sync::Mutex<CountedFlow>>,
}

#[derive(Default)]
struct CountedFlow {
    quotes_by_venue: std::collections::HashMap<u16, u64>,
    trades_by_venue: std::collections::HashMap<u16, u64>,
    /// (symbol id, gap kind), in arrival order.
    gaps: Vec<(u32, u8)>,
}

impl Outbound for CountingOutbound {
    fn emit(&mut self, record: &tickflow_core::outbound::OutRecord) {
        use tickflow_core::outbound::OutRecord;
        let mut seen = self.seen.lock().expect("only the shard thread writes");
        match record {
            OutRecord::Quote(quote) => {
                *seen.quotes_by_venue.entry(quote.venue_id.0).or_default() += 1
            }
            OutRecord::Trade(trade) => {
                *seen.trades_by_venue.entry(trade.venue_id.0).or_default() += 1
            }
            OutRecord::Gap(gap) => seen.gaps.push((gap.symbol_id.0, gap.kind)),
            _ => {}
        }
    }
}

#[test]
fn bitget_speaks_its_v3_socket_by_default_and_v2_when_configured() {
    use tickflow_feed::protocol::SocketApi;
    runtime().block_on(async {
        for (api, expected) in [
            ("", SocketApi::V3),
            ("v3", SocketApi::V3),
            ("v2", SocketApi::V2),
        ] {
            let sim = SimVenues::start(sim_config(&[Venue::Bitget]))
                .await
                .expect("simulator binds loopback ports");
            let counting = CountingOutbound::default();
            let shard_outbound = counting.clone();
            let harness = Harness::start_with_outbounds(
                sim,
                |config| {
                    config
                        .feeds
                        .venue
                        .get_mut("bitget")
                        .expect("the simulator configures bitget")
                        .api = api.to_owned();
                },
                move |shards| {
                    assert_eq!(shards, 1);
                    vec![Box::new(shard_outbound) as Box<dyn Outbound>]
                },
            );
            let slot = harness.slot(Venue::Bitget);
            assert_eq!(slot.plan.rules.api, Some(expected), "api {api:?}");
            let bitget = Venue::Bitget.id().0;
            assert!(
                eventually(|| {
                    let seen = counting.seen.lock().expect("the shard does not panic");
                    seen.quotes_by_venue.get(&bitget).copied().unwrap_or(0) > 20
                        && seen.trades_by_venue.get(&bitget).copied().unwrap_or(0) > 3
                })
                .await,
                "api {api:?}: quotes and trades arrive: {:?} {:?}",
                counting.seen.lock().expect("no panic").quotes_by_venue,
                counting.seen.lock().expect("no panic").trades_by_venue
            );
            // Every topic acked, every frame decoded: the simulator answered in the same socket.
            assert_eq!(get(&slot.counters.error_replies), 0, "api {api:?}");
            assert_eq!(slot.counters.decode_errors_total(), 0, "api {api:?}");
            assert_eq!(harness.stop().await, 0);
        }
    });
}

#[test]
fn a_withdrawal_refused_by_a_full_ring_is_held_and_reaches_the_shard() {
    use tickflow_core::records::GAP_QUOTE_WITHDRAWN;
    runtime().block_on(async {
        let sim = SimVenues::start(sim_config(&[Venue::Binance]))
            .await
            .expect("simulator binds loopback ports");
        let gate = Arc::new(Gate {
            open: std::sync::Mutex::new(false),
            opened: std::sync::Condvar::new(),
        });
        let gaps = Arc::new(std::sync::Mutex::new(Vec::new()));
        let harness = Harness::start_with_outbounds(
            sim,
            |config| config.engine.ring_capacity_records = 16,
            |shards| {
                (0..shards)
                    .map(|_| {
                        Box::new(GatedOutbound {
                            gate: Arc::clone(&gate),
                            gaps: Arc::clone(&gaps),
                        }) as Box<dyn Outbound>
                    })
                    .collect()
            },
        );
        let slot = harness.slot(Venue::Binance);
        // The shard is stuck on its first record: the 16-record ring fills and refuses.
        assert!(
            eventually(|| get(&slot.counters.ring_drops) > 0).await,
            "the ring fills"
        );
        // Every symbol's book loses its bid: the decoder withdraws the venue's quotes while the
        // ring refuses everything.
        harness.control(Venue::Binance).send_empty_bid();
        // Frames of a connection are read in order: once this much data followed, the
        // withdrawals were decoded and offered to the full ring.
        let records = get(&slot.counters.records);
        assert!(
            eventually(|| get(&slot.counters.records) > records + 100).await,
            "data goes on after the withdrawals"
        );
        gate.open();
        let withdrawn = |symbol: u32| {
            gaps.lock()
                .expect("the shard does not panic")
                .iter()
                .any(|&(id, kind)| id == symbol && kind == GAP_QUOTE_WITHDRAWN)
        };
        for symbol in slot.plan.symbol_ids.iter().map(|id| id.0) {
            assert!(
                eventually(|| withdrawn(symbol)).await,
                "symbol {symbol}: its withdrawal reaches the shard: {:?}",
                gaps.lock().expect("the shard does not panic")
            );
        }
        assert_eq!(get(&slot.counters.gap_drops), 0, "no gap lost");
        assert_eq!(harness.stop().await, 0);
    });
}
