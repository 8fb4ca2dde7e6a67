//! Delivery: every channel's records arrive field by field, wildcards and unsubscribe, the
//! snapshot on subscribe, the published endpoint, shutdown with 1001.

use serde_json::{Value, json};
use tickflow_sdk::{
    Batch, FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, GAP_DISCONNECT, GapEvent, OPPORTUNITY_FLAG_NET,
    OPPORTUNITY_START, OpportunityEvent, Quote, SPREAD_FLAG_WARMING, Sink, SpreadSample, SymbolId,
    Telemetry, Trade, VenueId,
};

use crate::support::{self, Received};

fn quote(symbol: u32, venue: u16, bid: f64) -> Quote {
    Quote {
        bid,
        bid_qty: 1.25,
        ask: bid + 0.5,
        ask_qty: 0.001,
        ts_exchange_ns: 1_700_000_000_123_456_789,
        ts_recv_ns: 1_700_000_000_223_456_789,
        seq: 987_654_321_012,
        symbol_id: SymbolId(symbol),
        venue_id: VenueId(venue),
        flags: FLAG_HAS_TS_EXCHANGE | FLAG_HAS_SEQ,
        reserved: 0,
    }
}

fn quote_json(quote: &Quote) -> Value {
    json!({
        "symbol": support::SYMBOLS[quote.symbol_id.0 as usize],
        "venue": support::VENUES[quote.venue_id.0 as usize],
        "bid": quote.bid, "bid_qty": quote.bid_qty, "ask": quote.ask, "ask_qty": quote.ask_qty,
        "ts_exchange_ns": quote.ts_exchange_ns, "ts_recv_ns": quote.ts_recv_ns,
        "seq": quote.seq, "flags": quote.flags,
    })
}

fn trade(index: u64) -> Trade {
    let mut trade = Trade {
        price: 42_000.5 + index as f64,
        qty: 0.000_123,
        ts_exchange_ns: 1_700_000_000_000_000_000 + index as i64,
        ts_recv_ns: 1_700_000_000_100_000_000 + index as i64,
        symbol_id: SymbolId(0),
        venue_id: VenueId(1),
        side: 2,
        flags: FLAG_HAS_TS_EXCHANGE,
        ..Trade::default()
    };
    assert!(trade.set_trade_id(format!("T{index}").as_bytes()));
    trade
}

pub fn trade_json(trade: &Trade) -> Value {
    let mut id = String::new();
    trade.write_trade_id(&mut id).expect("a String takes it");
    json!({
        "symbol": support::SYMBOLS[trade.symbol_id.0 as usize],
        "venue": support::VENUES[trade.venue_id.0 as usize],
        "price": trade.price, "qty": trade.qty,
        "ts_exchange_ns": trade.ts_exchange_ns, "ts_recv_ns": trade.ts_recv_ns,
        "side": trade.side().as_str(), "flags": trade.flags, "trade_id": id,
    })
}

pub fn trades(first: u64, count: u64) -> Vec<Trade> {
    (first..first + count).map(trade).collect()
}

#[test]
fn every_channel_delivers_its_records_field_by_field_and_the_endpoint_is_published() {
    let runtime = support::runtime();
    let mut sink = support::start(support::config());
    let addr = sink.local_addr();
    assert!(
        support::PUBLISHED
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .contains(&("ws".to_string(), format!("ws://{addr}/ws"))),
        "the sink published its URL through the host"
    );
    assert_eq!(sink.url(), format!("ws://{addr}/ws"));

    let mut client = runtime.block_on(async {
        let mut client = support::connect(addr).await;
        support::subscribe(
            &mut client,
            &[
                "quotes:BTC-USDT",
                "trades:BTC-USDT",
                "spreads:BTC-USDT",
                "opportunities",
                "gaps",
                "telemetry",
            ],
            false,
        )
        .await;
        client
    });

    let quotes = [quote(0, 0, 42_000.1), quote(0, 1, 42_000.3)];
    let sent_trades = trades(0, 3);
    let spread = SpreadSample {
        bucket_start_ns: 1_700_000_000_000_000_000,
        bucket_duration_ns: 1_000_000_000,
        last_bp: 1.5,
        min_bp: -0.25,
        max_bp: 3.125,
        mean_bp: 1.0 / 3.0,
        window_mean_bp: 0.1,
        window_std_bp: f64::NAN,
        band_lower_bp: -1e-9,
        band_upper_bp: 1e10,
        samples: 17,
        symbol_id: SymbolId(0),
        buy_venue_id: VenueId(0),
        sell_venue_id: VenueId(2),
        flags: SPREAD_FLAG_WARMING,
    };
    let opportunity = OpportunityEvent {
        ts_ns: 1_700_000_000_500_000_000,
        started_ns: 1_700_000_000_500_000_000,
        threshold_bp: 5.0,
        spread_bp: 7.5,
        peak_bp: 7.75,
        symbol_id: SymbolId(1),
        buy_venue_id: VenueId(1),
        sell_venue_id: VenueId(2),
        kind: OPPORTUNITY_START,
        flags: OPPORTUNITY_FLAG_NET,
        reserved: [0; 6],
    };
    let gap = GapEvent {
        ts_ns: 1_700_000_000_600_000_000,
        connection_id: 7,
        symbol_id: SymbolId(2),
        venue_id: VenueId(0),
        kind: GAP_DISCONNECT,
        reserved: [0; 5],
    };
    let telemetry = Telemetry {
        ts_ns: 1,
        uptime_ns: 2,
        rss_bytes: 3,
        budget_bytes: 4,
        records_in: 5,
        records_out: 6,
        ring_drops: 7,
        decode_errors: 8,
        reconnects: 9,
        windows_live: 10,
        windows_evicted: 11,
        sink_drops: 12,
        connections_up: 13,
        shards: 14,
        reserved: [0; 8],
    };
    sink.on_batch(Batch::Quotes(&quotes)).expect("on_batch");
    sink.on_batch(Batch::Trades(&sent_trades))
        .expect("on_batch");
    sink.on_batch(Batch::Spreads(&[spread])).expect("on_batch");
    sink.on_batch(Batch::Opportunities(&[opportunity]))
        .expect("on_batch");
    sink.on_batch(Batch::Gaps(&[gap])).expect("on_batch");
    sink.on_batch(Batch::Telemetry(&[telemetry]))
        .expect("on_batch");

    let mut received: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    runtime.block_on(async {
        while received.len() < 6 {
            let frame = support::next_json(&mut client).await;
            let channel = frame["ch"].as_str().expect("a data frame").to_string();
            received
                .entry(channel)
                .or_default()
                .extend(frame["data"].as_array().cloned().unwrap_or_default());
        }
    });
    assert_eq!(
        received["quotes:BTC-USDT"],
        quotes.iter().map(quote_json).collect::<Vec<_>>()
    );
    assert_eq!(
        received["trades:BTC-USDT"],
        sent_trades.iter().map(trade_json).collect::<Vec<_>>()
    );
    assert_eq!(
        received["spreads:BTC-USDT"],
        vec![json!({
            "symbol": "BTC-USDT", "buy_venue": "binance", "sell_venue": "bybit",
            "bucket_start_ns": spread.bucket_start_ns, "bucket_duration_ns": spread.bucket_duration_ns,
            "last_bp": 1.5, "min_bp": -0.25, "max_bp": 3.125, "mean_bp": 1.0 / 3.0,
            "window_mean_bp": 0.1, "window_std_bp": null, "band_lower_bp": -1e-9,
            "band_upper_bp": 1e10, "samples": 17, "flags": SPREAD_FLAG_WARMING,
        })]
    );
    assert_eq!(
        received["opportunities"],
        vec![json!({
            "symbol": "ETH-USDT", "buy_venue": "okx", "sell_venue": "bybit",
            "ts_ns": opportunity.ts_ns, "started_ns": opportunity.started_ns,
            "threshold_bp": 5.0, "spread_bp": 7.5, "peak_bp": 7.75, "kind": "start",
            "flags": OPPORTUNITY_FLAG_NET,
        })]
    );
    assert_eq!(
        received["gaps"],
        vec![json!({
            "symbol": "SOL-USDT", "venue": "binance", "ts_ns": gap.ts_ns,
            "connection_id": 7, "kind": "disconnect", "kind_id": GAP_DISCONNECT,
        })]
    );
    assert_eq!(
        received["telemetry"],
        vec![json!({
            "ts_ns": 1, "uptime_ns": 2, "rss_bytes": 3, "budget_bytes": 4, "records_in": 5,
            "records_out": 6, "ring_drops": 7, "decode_errors": 8, "reconnects": 9,
            "windows_live": 10, "windows_evicted": 11, "sink_drops": 12, "connections_up": 13,
            "shards": 14,
        })]
    );
    let counters = sink.counters();
    assert_eq!(counters.records_in, 9);
    assert_eq!(counters.records_framed, 9);
    assert_eq!(counters.ingest_dropped, 0);
    drop(sink);
    drop(runtime);
}

#[test]
fn wildcards_deliver_every_symbol_once_and_unsubscribe_stops_delivery() {
    let runtime = support::runtime();
    let mut sink = support::start(support::config());
    let addr = sink.local_addr();
    let mut client = runtime.block_on(async {
        let mut client = support::connect(addr).await;
        // The exact channel and the wildcard: each frame still arrives once.
        support::subscribe(&mut client, &["quotes:*", "quotes:BTC-USDT"], false).await;
        client
    });
    sink.on_batch(Batch::Quotes(&[quote(0, 0, 1.0), quote(1, 0, 2.0)]))
        .expect("on_batch");
    sink.on_batch(Batch::Telemetry(&[Telemetry::default()]))
        .expect("on_batch");
    let mut channels = Vec::new();
    runtime.block_on(async {
        while channels.len() < 2 {
            let frame = support::next_json(&mut client).await;
            channels.push(frame["ch"].as_str().unwrap_or_default().to_string());
        }
    });
    channels.sort();
    assert_eq!(channels, ["quotes:BTC-USDT", "quotes:ETH-USDT"]);

    runtime.block_on(async {
        support::send(
            &mut client,
            r#"{"op":"unsubscribe","channels":["quotes:*","quotes:BTC-USDT"]}"#,
        )
        .await;
        let ack = support::next_json(&mut client).await;
        assert_eq!(ack["op"], "unsubscribed");
        support::subscribe(&mut client, &["quotes:ETH-USDT", "telemetry"], false).await;
    });
    // BTC and ETH in the same flush, then a telemetry sentinel in a later one: between the
    // acks and the sentinel only ETH may arrive.
    sink.on_batch(Batch::Quotes(&[quote(0, 0, 3.0), quote(1, 0, 4.0)]))
        .expect("on_batch");
    let mut seen = Vec::new();
    runtime.block_on(async {
        let eth = support::next_on(&mut client, "quotes:ETH-USDT").await;
        assert_eq!(eth[0]["bid"], 4.0);
        sink.on_batch(Batch::Telemetry(&[Telemetry::default()]))
            .expect("on_batch");
        loop {
            let frame = support::next_json(&mut client).await;
            let channel = frame["ch"].as_str().unwrap_or_default().to_string();
            if channel == "telemetry" {
                break;
            }
            seen.push(channel);
        }
    });
    assert!(seen.is_empty(), "after unsubscribing, only ETH: {seen:?}");
    assert_eq!(sink.counters().subscriptions, 2);
    drop(sink);
}

#[test]
fn a_subscription_with_snapshot_gets_the_latest_value_per_key_first() {
    let runtime = support::runtime();
    let mut sink = support::start(support::config());
    let addr = sink.local_addr();
    // A watcher proves the updates went through a flush before the late subscriber comes.
    let mut watcher = runtime.block_on(async {
        let mut watcher = support::connect(addr).await;
        support::subscribe(&mut watcher, &["quotes:BTC-USDT"], false).await;
        watcher
    });
    sink.on_batch(Batch::Quotes(&[
        quote(0, 0, 10.0),
        quote(0, 1, 20.0),
        quote(0, 0, 11.0),
    ]))
    .expect("on_batch");
    runtime.block_on(async {
        let data = support::next_on(&mut watcher, "quotes:BTC-USDT").await;
        // Conflated within the flush: the latest per venue.
        assert_eq!(data.len(), 2);
    });
    assert!(sink.counters().conflated_updates >= 1);
    let (snapshot, plain_start) = runtime.block_on(async {
        let mut late = support::connect(addr).await;
        support::subscribe(&mut late, &["quotes:*"], true).await;
        let snapshot = support::next_json(&mut late).await;
        let mut plain = support::connect(addr).await;
        support::subscribe(&mut plain, &["quotes:BTC-USDT"], false).await;
        (snapshot, plain)
    });
    assert_eq!(snapshot["ch"], "quotes:BTC-USDT");
    assert_eq!(snapshot["snapshot"], true);
    assert_eq!(
        snapshot["data"],
        json!([
            quote_json(&quote(0, 0, 11.0)),
            quote_json(&quote(0, 1, 20.0))
        ])
    );
    // Without snapshot, nothing until the next update.
    let mut plain = plain_start;
    sink.on_batch(Batch::Quotes(&[quote(0, 2, 30.0)]))
        .expect("on_batch");
    runtime.block_on(async {
        let data = support::next_on(&mut plain, "quotes:BTC-USDT").await;
        assert_eq!(data, vec![quote_json(&quote(0, 2, 30.0))]);
    });
    drop(sink);
}

#[test]
fn shutdown_closes_every_client_with_1001() {
    let runtime = support::runtime();
    let sink = support::start(support::config());
    let addr = sink.local_addr();
    let mut clients = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..5 {
            let mut client = support::connect(addr).await;
            support::subscribe(&mut client, &["quotes:*"], false).await;
            clients.push(client);
        }
        clients
    });
    assert_eq!(sink.counters().clients, 5);
    // destroy: joins the plugin's runtime after every client got its close.
    let counters_before = sink.counters();
    drop(sink);
    runtime.block_on(async {
        for client in &mut clients {
            match support::next(client).await {
                Received::Close(code, _) => assert_eq!(code, 1001),
                other => panic!("expected a 1001 close, got {other:?}"),
            }
        }
    });
    assert_eq!(counters_before.closed_shutdown, 0);
}
