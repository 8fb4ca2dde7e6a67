//! Records arrive on the right subjects with the right payload, binary and JSON; JetStream
//! de-duplicates by the sink's message id; the endpoint is published.

use async_nats::jetstream::message::PublishMessage;
use tickflow_formats::wire::{self, WireBody, WireKind};
use tickflow_sdk::{
    Batch, GapEvent, OpportunityEvent, Sink, SpreadSample, SymbolId, Trade, VenueId, VenueStatus,
};

use crate::support::{self, NatsServer, VENUES};

fn spread() -> SpreadSample {
    SpreadSample {
        bucket_start_ns: 1_764_000_000_000_000_000,
        bucket_duration_ns: 1_000_000_000,
        mean_bp: 3.5,
        samples: 9,
        symbol_id: SymbolId(1),
        buy_venue_id: VenueId(0),
        sell_venue_id: VenueId(2),
        ..SpreadSample::default()
    }
}

#[test]
fn every_kind_arrives_on_its_subject_with_its_payload() {
    let store = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(store.path());
    let runtime = support::runtime();
    let context = runtime.block_on(support::jetstream_ready(&[server.url()]));
    let mut sink = support::start(support::config(vec![server.url()], "tf1", "TF1"));

    let quotes = support::quotes(0..12);
    let mut trade = Trade {
        price: 10.5,
        qty: 2.0,
        symbol_id: SymbolId(2),
        venue_id: VenueId(1),
        side: 1,
        ..Trade::default()
    };
    assert!(trade.set_trade_id(b"T-12345"));
    let opportunity = OpportunityEvent {
        ts_ns: 5,
        started_ns: 5,
        threshold_bp: 10.0,
        spread_bp: 11.0,
        peak_bp: 11.0,
        symbol_id: SymbolId(1),
        buy_venue_id: VenueId(0),
        sell_venue_id: VenueId(2),
        kind: 1,
        ..OpportunityEvent::default()
    };
    let gap = GapEvent {
        ts_ns: 7,
        connection_id: 3,
        symbol_id: SymbolId(3),
        venue_id: VenueId(2),
        kind: 1,
        reserved: [0; 5],
    };
    let status = VenueStatus {
        ts_ns: 9,
        last_data_ns: 8,
        reconnects: 1,
        connections_up: 2,
        connections_planned: 2,
        venue_id: VenueId(1),
        reserved: [0; 6],
    };
    sink.on_batch(Batch::Quotes(&quotes)).expect("on_batch");
    sink.on_batch(Batch::Trades(&[trade])).expect("on_batch");
    sink.on_batch(Batch::Spreads(&[spread()]))
        .expect("on_batch");
    sink.on_batch(Batch::Opportunities(&[opportunity]))
        .expect("on_batch");
    sink.on_batch(Batch::Gaps(&[gap])).expect("on_batch");
    sink.on_batch(Batch::VenueStatus(&[status]))
        .expect("on_batch");
    let sent = 17;
    support::wait_for(&sink, "every record acknowledged", |counters| {
        counters.acked == sent
    });
    let counters = sink.counters();
    assert_eq!(counters.received, sent);
    assert_eq!(counters.dropped(), 0);
    assert_eq!(counters.duplicates, 0);
    assert_eq!(counters.connected, 1);
    assert_eq!(sink.stats().records_written, sent);

    let stored = runtime.block_on(support::read_stream(&context, "TF1"));
    // Heartbeats may be repeated (heartbeat_ms = 200): only the records are counted here.
    let records: Vec<_> = stored
        .iter()
        .filter(|message| !message.subject.starts_with("tf1.heartbeat."))
        .collect();
    assert_eq!(records.len(), 16, "{stored:?}");
    let mut last_seq = 0;
    for (index, message) in records.iter().enumerate() {
        let record = wire::decode(&message.payload).expect("decodes");
        assert_eq!(record.collector, "c1");
        assert!(record.seq > last_seq, "collector order kept");
        last_seq = record.seq;
        assert_eq!(
            message.message_id.as_deref(),
            Some(wire::message_id("c1", record.seq).as_str())
        );
        assert_eq!(
            message.subject,
            wire::record_subject("tf1", &record.body, &record.names, 4)
        );
        if index < 12 {
            let quote = quotes[index];
            assert_eq!(record.body, WireBody::Quote(quote));
            assert_eq!(record.names.venue, VENUES[quote.venue_id.0 as usize]);
            assert_eq!(
                message.subject,
                format!(
                    "tf1.quote.{}.{}.{}",
                    wire::partition_of(record.names.symbol, 4),
                    record.names.venue,
                    record.names.symbol
                )
            );
        }
    }
    let kinds: Vec<WireKind> = records
        .iter()
        .map(|message| wire::decode(&message.payload).expect("decodes").kind())
        .collect();
    assert_eq!(
        &kinds[12..],
        &[
            WireKind::Trade,
            WireKind::SpreadSample,
            WireKind::Opportunity,
            WireKind::Gap
        ]
    );
    assert_eq!(
        records[13].subject,
        format!(
            "tf1.spread_sample.{}.binance~bybit.ETH-USDT",
            wire::partition_of("ETH-USDT", 4)
        )
    );
    let heartbeat = stored
        .iter()
        .find(|message| message.subject == "tf1.heartbeat.c1.okx")
        .expect("the venue status went to the heartbeat subject");
    let decoded = wire::decode(&heartbeat.payload).expect("decodes");
    assert_eq!(decoded.body, WireBody::VenueStatus(status));
    assert_eq!(decoded.names.venue, "okx");

    let published = support::PUBLISHED
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    assert!(published.contains(&("nats".to_string(), server.url())));

    // JetStream de-duplicates by the sink's message id: the same id again is not stored again.
    let first_seq = wire::decode(&records[0].payload).expect("decodes").seq;
    let again = runtime.block_on(async {
        context
            .send_publish(
                "tf1.quote.0.binance.BTC-USDT",
                PublishMessage::build()
                    .payload(records[0].payload.clone().into())
                    .message_id(wire::message_id("c1", first_seq)),
            )
            .await
            .expect("sent")
            .await
            .expect("acknowledged")
    });
    assert!(again.duplicate, "the stream saw the id before");
    let after = runtime.block_on(support::read_stream(&context, "TF1"));
    assert_eq!(
        after
            .iter()
            .filter(|message| message.message_id == records[0].message_id)
            .count(),
        1
    );
    drop(sink);
}

#[test]
fn heartbeats_repeat_for_a_quiet_venue() {
    let store = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(store.path());
    let runtime = support::runtime();
    let context = runtime.block_on(support::jetstream_ready(&[server.url()]));
    let mut config = support::config(vec![server.url()], "tf3", "TF3");
    config.kinds = vec!["venue_status".to_string()];
    let mut sink = support::start(config);
    let status = VenueStatus {
        ts_ns: 1,
        venue_id: VenueId(2),
        connections_up: 1,
        connections_planned: 1,
        ..VenueStatus::default()
    };
    sink.on_batch(Batch::VenueStatus(&[status]))
        .expect("on_batch");
    // The engine calls on_tick about once a second; here faster, until two repeats went out.
    let started = std::time::Instant::now();
    while sink.counters().heartbeats_repeated < 2 {
        sink.on_tick(0).expect("on_tick");
        assert!(started.elapsed() < support::WAIT_LIMIT, "no repeat");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    support::wait_for(&sink, "heartbeats acknowledged", |counters| {
        counters.acked >= 3
    });
    let stored = runtime.block_on(support::read_stream(&context, "TF3"));
    assert!(stored.len() >= 3);
    for message in &stored {
        assert_eq!(message.subject, "tf3.heartbeat.c1.bybit");
        let record = wire::decode(&message.payload).expect("decodes");
        assert_eq!(record.body, WireBody::VenueStatus(status));
    }
    assert_eq!(sink.counters().received, 1, "repeats are the sink's own");
}

#[test]
fn heartbeats_stop_when_the_engine_stops_giving_statuses() {
    // A stalled engine gives no fresh VenueStatus: the sink repeats the last one only for
    // heartbeat_repeat_periods periods, then goes silent (aggregators then silence the venue).
    let store = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(store.path());
    let runtime = support::runtime();
    runtime.block_on(support::jetstream_ready(&[server.url()]));
    let mut config = support::config(vec![server.url()], "tf4", "TF4");
    config.kinds = vec!["venue_status".to_string()];
    config.heartbeat_repeat_periods = 5;
    let period = std::time::Duration::from_millis(config.heartbeat_ms);
    let mut sink = support::start(config);
    let status = VenueStatus {
        ts_ns: 1,
        venue_id: VenueId(2),
        connections_up: 1,
        connections_planned: 1,
        ..VenueStatus::default()
    };
    sink.on_batch(Batch::VenueStatus(&[status]))
        .expect("on_batch");
    let fresh = std::time::Instant::now();
    // Tick (as the engine does) until well past the repeat limit.
    while fresh.elapsed() < period * 7 {
        sink.on_tick(0).expect("on_tick");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let repeated = sink.counters().heartbeats_repeated;
    // Repeats only inside the 5 periods after the fresh status (one per period at most).
    assert!(repeated <= 4, "{repeated} repeats");
    for _ in 0..10 {
        sink.on_tick(0).expect("on_tick");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        sink.counters().heartbeats_repeated,
        repeated,
        "no repeat after the limit"
    );
    // A fresh status from the engine starts the repeats again.
    sink.on_batch(Batch::VenueStatus(&[status]))
        .expect("on_batch");
    let started = std::time::Instant::now();
    while sink.counters().heartbeats_repeated == repeated {
        sink.on_tick(0).expect("on_tick");
        assert!(started.elapsed() < support::WAIT_LIMIT, "no repeat");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn json_encoding_publishes_json_objects() {
    let store = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(store.path());
    let runtime = support::runtime();
    let context = runtime.block_on(support::jetstream_ready(&[server.url()]));
    let mut config = support::config(vec![server.url()], "tf2", "TF2");
    config.encoding = tickflow_nats::Encoding::Json;
    let mut sink = support::start(config);
    sink.on_batch(Batch::Quotes(&support::quotes(0..3)))
        .expect("on_batch");
    support::wait_for(&sink, "acknowledged", |counters| counters.acked == 3);
    let stored = runtime.block_on(support::read_stream(&context, "TF2"));
    assert_eq!(stored.len(), 3);
    for (index, message) in stored.iter().enumerate() {
        let value: serde_json::Value =
            serde_json::from_slice(&message.payload).expect("a JSON object");
        assert_eq!(value["kind"], "quote");
        assert_eq!(value["collector"], "c1");
        assert_eq!(value["venue_seq"], index as u64);
        assert_eq!(value["symbol"], support::SYMBOLS[index]);
        assert!(message.subject.starts_with("tf2.quote."));
    }
}

/// A server that requires a token: the sink with the token publishes; one with a wrong token
/// never connects and holds its records (counted), a user and password work the same way.
#[test]
fn credentials_are_presented_and_a_wrong_one_publishes_nothing() {
    for (server_args, good, bad) in [
        (
            vec!["--auth", "s3cret"],
            (Some("s3cret"), None, None),
            (Some("wrong"), None, None),
        ),
        (
            vec!["--user", "collector", "--pass", "pw"],
            (None, Some("collector"), Some("pw")),
            (None, Some("collector"), Some("nope")),
        ),
    ] {
        let store = tempfile::tempdir().expect("tempdir");
        let server = NatsServer::start_with_args(store.path(), &server_args);
        let with = |(token, user, password): (Option<&str>, Option<&str>, Option<&str>)| {
            let mut config = support::config(vec![server.url()], "tfa", "TFA");
            config.token = token.map(str::to_string);
            config.user = user.map(str::to_string);
            config.password = password.map(str::to_string);
            config
        };
        let mut refused = support::start(with(bad));
        refused
            .on_batch(Batch::Quotes(&support::quotes(0..5)))
            .expect("on_batch");
        let mut sink = support::start(with(good));
        sink.on_batch(Batch::Quotes(&support::quotes(0..5)))
            .expect("on_batch");
        support::wait_for(&sink, "the quotes acknowledged", |counters| {
            counters.acked >= 5
        });
        let counters = refused.counters();
        assert_eq!((counters.acked, counters.connected), (0, 0), "{counters:?}");
        assert_eq!(counters.received, 5, "{counters:?}");
    }
}
