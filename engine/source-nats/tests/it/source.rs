//! Wire-encoded records published to JetStream → NatsSource → rings → shard: spreads, applied
//! once, liveness gaps.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use tickflow_core::config::{EngineConfig, WindowsConfig};
use tickflow_core::outbound::{OutRecord, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::record::{Quote, SymbolId, VenueId, now_ns};
use tickflow_core::records::GAP_DISCONNECT;
use tickflow_core::registry::{SymbolRegistry, parse_canonical};
use tickflow_core::venue::Venue;
use tickflow_formats::wire::{self, WireBody, WireNames, WireVenueStatus};
use tickflow_source_nats::{NatsSource, SourceConfig};

use crate::server::{NatsServer, wait_until};

#[derive(Default)]
struct Recorded {
    /// (symbol, venue, bid) of every quote the shard emitted.
    quotes: Vec<(u32, u16, f64)>,
    /// (symbol, venue, kind) of every gap.
    gaps: Vec<(u32, u16, u8)>,
}

#[derive(Clone, Default)]
struct RecordingOutbound {
    seen: Arc<Mutex<Recorded>>,
}

impl Outbound for RecordingOutbound {
    fn emit(&mut self, record: &OutRecord) {
        let mut seen = self.seen.lock().expect("only the shard thread writes");
        match record {
            OutRecord::Quote(quote) => {
                seen.quotes
                    .push((quote.symbol_id.0, quote.venue_id.0, quote.bid))
            }
            OutRecord::Gap(gap) => seen.gaps.push((gap.symbol_id.0, gap.venue_id.0, gap.kind)),
            _ => {}
        }
    }
}

struct Harness {
    // Dropped in field order: the sources before the pipeline, the server last.
    sources: Vec<NatsSource>,
    pipeline: Option<Pipeline>,
    runtime: tokio::runtime::Runtime,
    registry: Arc<SymbolRegistry>,
    seen: Arc<Mutex<Recorded>>,
    publisher: jetstream::Context,
    /// Extra `[[sources]]` keys every source of this harness gets.
    extra: String,
    server: NatsServer,
}

fn source_config(url: &str, heartbeat_timeout_ms: u64, extra: &str) -> SourceConfig {
    let text = format!(
        "kind = \"nats\"\nurl = [\"{url}\"]\ndurable = \"agg-test\"\npartitions = [0]\n\
         partition_count = 1\ncreate_stream = true\nheartbeat_timeout_ms = {heartbeat_timeout_ms}\n\
         reconnect_backoff_initial_ms = 20\nstream_max_bytes = 67108864\n{extra}"
    );
    let config: SourceConfig = toml::from_str(&text).expect("valid source config");
    config.validate(0).expect("valid source config");
    config
}

impl Harness {
    fn start(heartbeat_timeout_ms: u64) -> Harness {
        Harness::start_with(heartbeat_timeout_ms, "")
    }

    fn start_with(heartbeat_timeout_ms: u64, extra: &str) -> Harness {
        let server = NatsServer::start();
        let engine = EngineConfig {
            shards: 1,
            max_symbols: 64,
            max_connection_slots: 4,
            ..EngineConfig::default()
        };
        let windows = WindowsConfig {
            max_windows: 64,
            buckets: 60,
            snapshot_interval_ms: 20,
            ..WindowsConfig::default()
        };
        let outbound = RecordingOutbound::default();
        let seen = Arc::clone(&outbound.seen);
        let pipeline =
            Pipeline::start(&engine, &windows, vec![Box::new(outbound)]).expect("pipeline starts");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let url = server.url();
        let publisher = runtime.block_on(async {
            let client = async_nats::connect(url.as_str())
                .await
                .expect("the test publisher connects");
            jetstream::new(client)
        });
        let mut harness = Harness {
            sources: Vec::new(),
            pipeline: Some(pipeline),
            runtime,
            registry: Arc::new(SymbolRegistry::new(engine.max_symbols)),
            seen,
            publisher,
            extra: extra.to_string(),
            server,
        };
        harness.start_source(heartbeat_timeout_ms);
        harness
    }

    /// Starts a source (a producer of its own) and waits until it consumes.
    fn start_source(&mut self, heartbeat_timeout_ms: u64) -> usize {
        let producer = self
            .pipeline
            .as_mut()
            .and_then(Pipeline::take_producer)
            .expect("a spare producer");
        let source = NatsSource::start(
            &source_config(&self.server.url(), heartbeat_timeout_ms, &self.extra),
            Arc::clone(&self.registry),
            producer,
            self.runtime.handle(),
        );
        let counters = source.counters();
        wait_until("the source consumes", || {
            counters.connected.load(Ordering::Relaxed)
        });
        self.sources.push(source);
        self.sources.len() - 1
    }

    fn stop_source(&mut self, index: usize) {
        let source = self.sources.remove(index);
        assert!(
            self.runtime
                .block_on(source.shutdown(std::time::Duration::from_secs(5))),
            "the source stops"
        );
    }

    /// Publishes one encoded record with a JetStream message id and waits for its ack.
    fn publish(&self, body: WireBody, names: WireNames<'_>, collector: &str, seq: u64, id: &str) {
        let mut payload = Vec::new();
        wire::encode(&body, &names, collector, seq, &mut payload).expect("encodes");
        let subject = if let WireBody::VenueStatus(_) = body {
            wire::heartbeat_subject("tickflow", collector, names.venue)
        } else {
            wire::record_subject("tickflow", &body, &names, 1)
        };
        self.runtime.block_on(async {
            self.publisher
                .send_publish(
                    subject,
                    jetstream::message::PublishMessage::build()
                        .payload(payload.into())
                        .message_id(id),
                )
                .await
                .expect("publish sent")
                .await
                .expect("publish acknowledged");
        });
    }

    fn quote(&self, venue: &str, bid: f64, collector: &str, seq: u64) {
        self.quote_with(venue, bid, bid + 0.1, now_ns(), collector, seq);
    }

    fn quote_with(
        &self,
        venue: &str,
        bid: f64,
        ask: f64,
        ts_recv_ns: i64,
        collector: &str,
        seq: u64,
    ) {
        let body = WireBody::Quote(Quote {
            bid,
            bid_qty: 1.0,
            ask,
            ask_qty: 1.0,
            ts_recv_ns,
            // The collector's own ids: the source must replace them by this engine's.
            symbol_id: SymbolId(999),
            venue_id: VenueId(77),
            ..Quote::default()
        });
        let names = WireNames {
            venue,
            sell_venue: "",
            symbol: "BTC-USDT",
        };
        self.publish(
            body,
            names,
            collector,
            seq,
            &wire::message_id(collector, seq),
        );
    }

    fn heartbeat(&self, venue: &str, connections_up: u32, collector: &str, seq: u64) {
        self.heartbeat_with(venue, connections_up, 0, collector, seq);
    }

    /// A heartbeat whose venue's last data is `data_age_ms` old by the collector's clock.
    fn heartbeat_with(
        &self,
        venue: &str,
        connections_up: u32,
        data_age_ms: i64,
        collector: &str,
        seq: u64,
    ) {
        let now = now_ns();
        let body = WireBody::VenueStatus(WireVenueStatus {
            ts_ns: now,
            last_data_ns: now - data_age_ms * 1_000_000,
            connections_up,
            connections_planned: 1,
            ..WireVenueStatus::default()
        });
        let names = WireNames {
            venue,
            ..WireNames::default()
        };
        self.publish(
            body,
            names,
            collector,
            seq,
            &wire::message_id(collector, seq),
        );
    }

    fn symbol(&self) -> u32 {
        let name = parse_canonical("BTC-USDT").expect("a canonical name");
        self.registry
            .id_of(&name)
            .expect("registered by the source")
            .0
    }

    fn quotes(&self) -> Vec<(u32, u16, f64)> {
        self.seen.lock().expect("not poisoned").quotes.clone()
    }

    fn gaps(&self) -> Vec<(u32, u16, u8)> {
        self.seen.lock().expect("not poisoned").gaps.clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for source in self.sources.drain(..) {
            let _ = self
                .runtime
                .block_on(source.shutdown(std::time::Duration::from_secs(5)));
        }
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.shutdown();
        }
    }
}

#[test]
fn published_quotes_reach_the_shard_and_make_spreads() {
    let harness = Harness::start(0);
    harness.quote("binance", 100.0, "c1", 1);
    harness.quote("okx", 101.0, "c1", 2);
    wait_until("both quotes reach the shard", || {
        harness.quotes().len() == 2
    });
    let symbol = harness.symbol();
    let quotes = harness.quotes();
    assert_eq!(
        quotes,
        vec![
            (symbol, Venue::Binance.id().0, 100.0),
            (symbol, Venue::Okx.id().0, 101.0)
        ]
    );
    // Buy on binance at 100.1, sell on okx at 101: (101 − 100.1) / 100.1 × 10 000 bp.
    let pipeline = harness.pipeline.as_ref().expect("running");
    wait_until("the spread window is published", || {
        pipeline.snapshots().iter().any(|snapshot| {
            snapshot.windows.iter().any(|window| {
                window.symbol_id.0 == symbol
                    && window.buy_venue_id == Venue::Binance.id()
                    && window.sell_venue_id == Venue::Okx.id()
            })
        })
    });
    let last_bp = pipeline
        .snapshots()
        .iter()
        .flat_map(|snapshot| snapshot.windows.clone())
        .find(|window| window.buy_venue_id == Venue::Binance.id())
        .map(|window| window.last_bp)
        .expect("the window");
    let expected_bp = (101.0 - 100.1) / 100.1 * 10_000.0;
    assert!(
        (last_bp - expected_bp).abs() < 1e-6,
        "{last_bp} vs {expected_bp}"
    );
    let counters = harness.sources[0].counters();
    assert_eq!(counters.applied.load(Ordering::Relaxed), 2);
    assert_eq!(counters.duplicates.load(Ordering::Relaxed), 0);
}

#[test]
fn duplicates_and_redeliveries_are_applied_once() {
    let mut harness = Harness::start(0);
    harness.quote("binance", 100.0, "c1", 10);
    // The same message again: JetStream drops it by its id (within the duplicate window).
    harness.quote("binance", 100.0, "c1", 10);
    // The same record stored twice (re-published under another id, as after the window):
    // the source's sequence filter drops it.
    let body = WireBody::Quote(Quote {
        bid: 100.0,
        ..Quote::default()
    });
    let names = WireNames {
        venue: "binance",
        sell_venue: "",
        symbol: "BTC-USDT",
    };
    harness.publish(body, names, "c1", 10, "republished-c1-10");
    harness.quote("okx", 101.0, "c1", 11);
    let counters = harness.sources[0].counters();
    wait_until("every stored message is seen", || {
        counters.messages.load(Ordering::Relaxed) == 3
    });
    wait_until("the applied quotes reach the shard", || {
        harness.quotes().len() == 2
    });
    assert_eq!(counters.duplicates.load(Ordering::Relaxed), 1);
    assert_eq!(counters.applied.load(Ordering::Relaxed), 2);

    // A restarted aggregator (same durable consumers) resumes after what was acknowledged:
    // nothing applied again, and the next record arrives.
    harness.stop_source(0);
    let restarted = harness.start_source(0);
    harness.quote("okx", 102.0, "c1", 12);
    wait_until("the record after the restart arrives", || {
        harness.quotes().len() == 3
    });
    let counters = harness.sources[restarted].counters();
    assert_eq!(counters.messages.load(Ordering::Relaxed), 1);
    let bids: Vec<f64> = harness.quotes().iter().map(|quote| quote.2).collect();
    assert_eq!(bids, vec![100.0, 101.0, 102.0]);
}

#[test]
fn a_silent_or_dead_collector_gaps_its_quotes() {
    let harness = Harness::start(300);
    harness.heartbeat("okx", 1, "c1", 1);
    harness.quote("okx", 101.0, "c1", 2);
    harness.quote("binance", 100.0, "c2", 1);
    wait_until("the quotes arrive", || harness.quotes().len() == 2);
    let symbol = harness.symbol();
    // c1 goes silent: past heartbeat_timeout_ms its okx quote is not live.
    wait_until("c1's okx quote gets a disconnect gap", || {
        harness
            .gaps()
            .contains(&(symbol, Venue::Okx.id().0, GAP_DISCONNECT))
    });
    // c2 reports its bybit connection down: a gap without waiting for silence.
    harness.quote("bybit", 100.5, "c2", 2);
    harness.heartbeat("bybit", 0, "c2", 3);
    wait_until("c2's bybit quote gets a disconnect gap", || {
        harness
            .gaps()
            .contains(&(symbol, Venue::Bybit.id().0, GAP_DISCONNECT))
    });
    // c3 keeps sending heartbeats with its gate connection up, but its feed stalled: the
    // heartbeat's last data is older than the timeout, so its quote is not live either.
    harness.quote("gate", 100.2, "c3", 1);
    harness.heartbeat_with("gate", 1, 10_000, "c3", 2);
    wait_until("c3's stalled gate quote gets a disconnect gap", || {
        harness
            .gaps()
            .contains(&(symbol, Venue::Gate.id().0, GAP_DISCONNECT))
    });
    let counters = harness.sources[0].counters();
    assert!(counters.venues_silenced.load(Ordering::Relaxed) >= 3);
    assert_eq!(counters.heartbeats.load(Ordering::Relaxed), 3);
    // Each silenced (collector, venue) gapped once per symbol, not once per check.
    let okx_gaps = harness
        .gaps()
        .iter()
        .filter(|gap| **gap == (symbol, Venue::Okx.id().0, GAP_DISCONNECT))
        .count();
    assert_eq!(okx_gaps, 1);
}

#[test]
fn a_server_killed_and_restarted_loses_nothing_acknowledged_and_applies_nothing_twice() {
    let mut harness = Harness::start(0);
    for seq in 1..=20 {
        harness.quote("binance", 100.0 + seq as f64, "c1", seq);
    }
    wait_until("the first records arrive", || harness.quotes().len() == 20);
    harness.server.kill_and_restart();
    // The test's publisher reconnects on its own too; every publish below is acknowledged by
    // the restarted server (its file store kept the stream and the durable consumers).
    for seq in 21..=40 {
        harness.quote("okx", 100.0 + seq as f64, "c1", seq);
    }
    wait_until("the records after the restart arrive", || {
        harness.quotes().len() >= 40
    });
    let bids: Vec<f64> = harness.quotes().iter().map(|quote| quote.2).collect();
    let expected: Vec<f64> = (1..=40).map(|seq| 100.0 + seq as f64).collect();
    assert_eq!(bids, expected, "every acknowledged record once, in order");
    let counters = harness.sources[0].counters();
    assert_eq!(counters.applied.load(Ordering::Relaxed), 40);
}

#[test]
fn collector_numbers_far_out_of_order_and_redeliveries_are_each_applied_once() {
    let mut harness = Harness::start_with(0, "ack_wait_ms = 500\n");
    // A sink's re-send is stored far behind newer messages: 10 000 after 20 001 is more than the
    // old 4 096-number window below the highest. Every one is an acknowledged record.
    let seqs = [20_000, 20_001, 10_000, 3, 15_000];
    for (index, seq) in seqs.iter().enumerate() {
        harness.quote("binance", 100.0 + index as f64, "c1", *seq);
    }
    // The same re-send again under its id: JetStream drops it (duplicate window).
    harness.quote("binance", 102.0, "c1", 10_000);
    wait_until("every record reaches the shard", || {
        harness.quotes().len() == seqs.len()
    });
    let counters = harness.sources[0].counters();
    assert_eq!(counters.applied.load(Ordering::Relaxed), 5);
    assert_eq!(counters.out_of_order.load(Ordering::Relaxed), 3);
    assert_eq!(counters.duplicates.load(Ordering::Relaxed), 0);
    assert_eq!(counters.redeliveries.load(Ordering::Relaxed), 0);

    // Redeliveries: with the source stopped, another client takes the next two messages from
    // the same durable consumer and never acknowledges them (as a source that died before its
    // acks went out). A restarted source gets newer messages first, then, after the ack wait,
    // the two again, with stream sequences below what it already handled: each applied once.
    harness.stop_source(0);
    harness.quote("okx", 200.0, "c1", 20_002);
    harness.quote("okx", 201.0, "c1", 20_003);
    harness.runtime.block_on(async {
        let stream = harness
            .publisher
            .get_stream("TICKFLOW")
            .await
            .expect("the stream exists");
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_consumer("agg-test-p0")
            .await
            .expect("the durable consumer outlives its source");
        // A fetch returns what is ready now; the stopped source's last pull may still hold a
        // message for a moment (it comes back after the ack wait): fetch until both are taken.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut count = 0;
        while count < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the two messages are taken, not acknowledged (got {count})"
            );
            let mut taken = consumer
                .fetch()
                .max_messages(2 - count)
                .messages()
                .await
                .expect("a fetch");
            while let Some(message) = futures_util::StreamExt::next(&mut taken).await {
                message.expect("a message");
                count += 1;
            }
        }
    });
    harness.quote("okx", 202.0, "c1", 20_004);
    let restarted = harness.start_source(0);
    wait_until("the newer record and both redeliveries arrive", || {
        harness.quotes().len() == 8
    });
    let counters = harness.sources[restarted].counters();
    let bids: Vec<f64> = harness.quotes().iter().map(|quote| quote.2).collect();
    assert_eq!(bids[..5], [100.0, 101.0, 102.0, 103.0, 104.0]);
    let mut after: Vec<f64> = bids[5..].to_vec();
    after.sort_by(f64::total_cmp);
    assert_eq!(after, vec![200.0, 201.0, 202.0]);
    assert_eq!(counters.applied.load(Ordering::Relaxed), 3);
    // Nothing more arrives: a later record is the next one applied.
    harness.quote("okx", 203.0, "c1", 20_005);
    wait_until("the last record arrives", || harness.quotes().len() == 9);
    let last = harness.quotes().last().map(|quote| quote.2);
    assert_eq!(last, Some(203.0));
}

#[test]
fn records_with_impossible_times_or_prices_are_refused_and_counted() {
    let harness = Harness::start_with(0, "max_clock_ahead_ms = 5000\n");
    let now = now_ns();
    let hour_ns = 3_600_000_000_000;
    harness.quote_with("binance", 100.0, 100.1, now + hour_ns, "c1", 1);
    harness.quote_with("binance", 100.0, 100.1, 0, "c1", 2);
    harness.quote_with("binance", f64::NAN, 100.1, now, "c1", 3);
    harness.quote_with("binance", -1.0, 100.1, now, "c1", 4);
    harness.quote_with("binance", 100.2, 100.1, now, "c1", 5);
    harness.quote_with("okx", 100.0, 100.1, now, "c1", 6);
    let counters = harness.sources[0].counters();
    wait_until("every message is handled", || {
        counters.messages.load(Ordering::Relaxed) == 6
    });
    wait_until("the good quote reaches the shard", || {
        !harness.quotes().is_empty()
    });
    let symbol = harness.symbol();
    assert_eq!(harness.quotes(), vec![(symbol, Venue::Okx.id().0, 100.0)]);
    let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    assert_eq!(get(&counters.refused_clock_ahead), 1);
    assert_eq!(get(&counters.refused_bad_timestamp), 1);
    assert_eq!(get(&counters.refused_non_finite), 1);
    assert_eq!(get(&counters.refused_non_positive_price), 1);
    assert_eq!(get(&counters.refused_crossed_book), 1);
    assert_eq!(get(&counters.applied), 1);
}

/// The stream numbers its messages from 1 again (an operator deleted and re-created it; a single
/// node killed before writing out its tail gives the lost numbers to new messages): new records
/// at stream sequences the consumer already handled are applied, not skipped as redeliveries.
#[test]
fn new_records_at_reused_stream_sequences_are_applied_not_skipped() {
    let harness = Harness::start(0);
    for seq in 1..=10 {
        harness.quote("binance", 100.0 + seq as f64, "c1", seq);
    }
    wait_until("the first records arrive", || harness.quotes().len() == 10);
    let counters = harness.sources[0].counters();
    harness.runtime.block_on(async {
        harness
            .publisher
            .delete_stream("TICKFLOW")
            .await
            .expect("the stream is deleted");
    });
    // Its consumer went with it: the source's session ends, and the next one creates both again.
    wait_until("the source consumes the re-created stream", || {
        counters.sessions.load(Ordering::Relaxed) >= 2 && counters.connected.load(Ordering::Relaxed)
    });
    for seq in 11..=15 {
        harness.quote("okx", 100.0 + seq as f64, "c1", seq);
    }
    wait_until("the records at reused numbers arrive", || {
        harness.quotes().len() >= 15
    });
    let bids: Vec<f64> = harness.quotes().iter().map(|quote| quote.2).collect();
    let expected: Vec<f64> = (1..=15).map(|seq| 100.0 + seq as f64).collect();
    assert_eq!(bids, expected);
    assert_eq!(counters.sequences_reused.load(Ordering::Relaxed), 5);
    assert_eq!(counters.redeliveries.load(Ordering::Relaxed), 0);
}

/// A server that requires credentials: the source with the right token, or user and password,
/// consumes; one with a wrong secret never connects and counts its failed attempts.
#[test]
fn credentials_are_presented_and_a_wrong_one_never_connects() {
    for (server_args, good, bad) in [
        (
            vec!["--auth", "s3cret"],
            "token = \"s3cret\"\n",
            "token = \"wrong\"\n",
        ),
        (
            vec!["--user", "aggregator", "--pass", "pw"],
            "user = \"aggregator\"\npassword = \"pw\"\n",
            "user = \"aggregator\"\npassword = \"nope\"\n",
        ),
    ] {
        let server = NatsServer::start_with_args(&server_args);
        let engine = EngineConfig {
            shards: 1,
            max_symbols: 16,
            max_connection_slots: 4,
            ..EngineConfig::default()
        };
        let windows = WindowsConfig {
            max_windows: 16,
            buckets: 10,
            ..WindowsConfig::default()
        };
        let mut pipeline = Pipeline::start(
            &engine,
            &windows,
            vec![Box::new(RecordingOutbound::default())],
        )
        .expect("pipeline starts");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let registry = Arc::new(SymbolRegistry::new(engine.max_symbols));
        let start = |credentials: &str, pipeline: &mut Pipeline| {
            NatsSource::start(
                &source_config(&server.url(), 0, credentials),
                Arc::clone(&registry),
                pipeline.take_producer().expect("a producer"),
                runtime.handle(),
            )
        };
        let refused = start(bad, &mut pipeline);
        let accepted = start(good, &mut pipeline);
        let accepted_counters = accepted.counters();
        wait_until("the source with the right credentials consumes", || {
            accepted_counters.connected.load(Ordering::Relaxed)
        });
        let refused_counters = refused.counters();
        wait_until("the wrong credentials are refused again and again", || {
            refused_counters.connect_failures.load(Ordering::Relaxed) >= 2
        });
        assert!(!refused_counters.connected.load(Ordering::Relaxed));
        assert_eq!(refused_counters.sessions.load(Ordering::Relaxed), 0);
        for source in [refused, accepted] {
            assert!(runtime.block_on(source.shutdown(std::time::Duration::from_secs(5))));
        }
        pipeline.shutdown();
    }
}
