//! Slow and dead clients: a client that never reads is closed within its limits while 100 fast
//! clients receive everything; a client that never answers pings is closed.

use std::time::Duration;

use tickflow_sdk::{Batch, Sink};
use tickflow_ws_broadcast::WsConfig;

use crate::delivery::{trade_json, trades};
use crate::support::{self, Received};

const FAST_CLIENTS: usize = 100;

#[test]
fn a_client_that_never_reads_is_closed_while_100_fast_clients_receive_everything() {
    let runtime = support::runtime();
    let mut sink = support::start(WsConfig {
        // Room for seconds of backlog, so that a fast client on a loaded machine never lags;
        // the client that never reads is caught by the write deadline (or, failing that, by
        // its lost frames).
        client_queue_bytes_max: 1024 * 1024,
        client_lag_max_frames: 20,
        write_timeout_ms: 1000,
        // Keeps the kernel from absorbing megabytes for the client that never reads.
        socket_send_buffer_bytes: 64 * 1024,
        ..support::config()
    });
    let addr = sink.local_addr();
    // The slow client asks for a tiny receive buffer so that the kernel does not absorb
    // megabytes for it; it subscribes and never reads again.
    let _slow = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("connects");
        let (mut slow, _) = support::connect_on(stream, addr, "/ws", &[])
            .await
            .expect("upgrades");
        let _hello = support::next_json(&mut slow).await;
        support::subscribe(&mut slow, &["trades:BTC-USDT"], false).await;
        slow
    });
    // The fast clients read on their own tasks and count every trade, in order.
    let (fast_tasks, stop) = runtime.block_on(async {
        // The number of trades to wait for, once known (0 until then).
        let (stop_sender, stop) = tokio::sync::watch::channel(0usize);
        let mut tasks = Vec::new();
        for _ in 0..FAST_CLIENTS {
            let mut client = support::connect(addr).await;
            support::subscribe(&mut client, &["trades:BTC-USDT"], false).await;
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut received: Vec<serde_json::Value> = Vec::new();
                let mut lagged = 0u64;
                loop {
                    let target = *stop.borrow();
                    if target > 0 && received.len() >= target {
                        break;
                    }
                    // Never cancelled mid-frame: the target is set before the last batch is
                    // sent, so every reader sees it after that batch at the latest.
                    match support::next(&mut client).await {
                        Received::Json(frame) if frame["ch"] == "trades:BTC-USDT" => {
                            received.extend(frame["data"].as_array().cloned().unwrap_or_default());
                        }
                        Received::Json(frame) if frame.get("lagged").is_some() => {
                            lagged += frame["lagged"].as_u64().unwrap_or(0);
                        }
                        Received::Json(_) => {}
                        other => panic!("a fast client lost its connection: {other:?}"),
                    }
                }
                (received, lagged)
            }));
        }
        (tasks, stop_sender)
    });
    // Feed trades, 20 per batch, a batch per flush interval, until the slow client is closed
    // (bounded: the test fails if it never is).
    let mut sent = Vec::new();
    let mut batches = 0;
    let closed = |sink: &tickflow_ws_broadcast::WsBroadcast| {
        let counters = sink.counters();
        counters.closed_lagging + counters.closed_write_timeout
    };
    while closed(&sink) == 0 && batches < 3000 {
        let batch = trades(sent.len() as u64, 20);
        sink.on_batch(Batch::Trades(&batch)).expect("on_batch");
        sent.extend(batch);
        batches += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(closed(&sink), 1, "the client that never reads was closed");
    eprintln!(
        "slow client closed after {batches} batches: {:?}",
        sink.counters()
    );
    // Each reader stops once it has every trade (one that never gets them fails on its 10 s
    // read timeout); the target is known before the last batch goes out.
    let batch = trades(sent.len() as u64, 50);
    stop.send(sent.len() + batch.len())
        .expect("the readers listen");
    sink.on_batch(Batch::Trades(&batch)).expect("on_batch");
    sent.extend(batch);
    let expected: Vec<serde_json::Value> = sent.iter().map(trade_json).collect();
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for task in fast_tasks {
            results.push(task.await.expect("a fast reader ends cleanly"));
        }
        results
    });
    for (index, (received, lagged)) in results.iter().enumerate() {
        assert_eq!(*lagged, 0, "fast client {index} never lagged");
        assert_eq!(
            received.len(),
            expected.len(),
            "fast client {index} got every trade"
        );
        assert!(
            received == &expected,
            "fast client {index}: every trade, in order, field by field"
        );
    }
    let counters = sink.counters();
    assert_eq!(counters.closed_pong_timeout, 0);
    drop(sink);
}

#[test]
fn a_client_that_never_answers_pings_is_closed_with_1008() {
    let runtime = support::runtime();
    let sink = support::start(WsConfig {
        ping_interval_s: 0.1,
        // Lenient enough for the answering client on a loaded machine.
        pong_timeout_s: 1.0,
        ..support::config()
    });
    let addr = sink.local_addr();
    let (silent_end, healthy_alive) = runtime.block_on(async {
        let mut silent = support::connect(addr).await;
        silent.set_auto_pong(false);
        let mut healthy = support::connect(addr).await;
        let (stop_sender, mut stop) = tokio::sync::watch::channel(false);
        let healthy_task = tokio::spawn(async move {
            // fastwebsockets answers pings while reading (and returns no ping frames).
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    frame = healthy.read_frame() => if frame.is_err() { return None },
                }
            }
            Some(healthy)
        });
        let end = support::next(&mut silent).await;
        // Several more ping rounds for the healthy client (its pongs keep it open).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop_sender.send(true).expect("the reader listens");
        // The healthy client is kept (returned) until the counters are read: dropping it here
        // would race its disconnect against the `clients` gauge.
        let alive = match healthy_task.await.expect("the healthy reader ends") {
            Some(mut healthy) => {
                support::subscribe(&mut healthy, &["gaps"], false).await;
                Some(healthy)
            }
            None => None,
        };
        (end, alive)
    });
    match silent_end {
        Received::Close(code, reason) => {
            assert_eq!(code, 1008);
            assert!(reason.contains("pong"), "{reason}");
        }
        other => panic!("expected a 1008 close, got {other:?}"),
    }
    assert!(
        healthy_alive.is_some(),
        "the client answering pings stays open"
    );
    let counters = sink.counters();
    assert_eq!(counters.closed_pong_timeout, 1);
    assert_eq!(counters.clients, 1);
    drop(healthy_alive);
    drop(sink);
}

#[test]
fn a_client_that_falls_behind_is_told_lagged_n_for_events_and_skips_conflated_frames() {
    let runtime = support::runtime();
    let mut sink = support::start(WsConfig {
        // Four frames: trades and quotes compete for the slots once the socket is full.
        client_queue_bytes_max: 64 * 1024,
        client_queue_frames_max: 4,
        client_lag_max_frames: 1_000_000,
        write_timeout_ms: 60_000,
        socket_send_buffer_bytes: 4096,
        ..support::config()
    });
    let addr = sink.local_addr();
    // The client's receive buffer is fixed at 256 KiB: large against loopback's 64 KiB MSS, so
    // that its window update goes out as soon as it reads again (a buffer near one MSS leaves
    // the sender on zero-window probes with exponential backoff).
    let mut client = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(256 * 1024).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("connects");
        let (mut client, _) = support::connect_on(stream, addr, "/ws", &[])
            .await
            .expect("upgrades");
        let _hello = support::next_json(&mut client).await;
        support::subscribe(
            &mut client,
            &["trades:BTC-USDT", "quotes:BTC-USDT", "gaps"],
            false,
        )
        .await;
        client
    });
    // The client does not read while 200 batches of trades and quotes (about 800 KiB) go out.
    let mut sent = Vec::new();
    for index in 0..200u32 {
        let batch = trades(sent.len() as u64, 20);
        sink.on_batch(Batch::Trades(&batch)).expect("on_batch");
        sent.extend(batch);
        let quote = tickflow_sdk::Quote {
            bid: f64::from(index),
            ask: f64::from(index) + 1.0,
            ..tickflow_sdk::Quote::default()
        };
        sink.on_batch(Batch::Quotes(&[quote])).expect("on_batch");
        std::thread::sleep(Duration::from_millis(10));
    }
    let during_stall = sink.counters();
    assert!(during_stall.lagged_records > 0, "{during_stall:?}");
    assert!(during_stall.skipped_frames > 0, "{during_stall:?}");
    // Now it reads: everything queued, the lag notices where records were lost, until a gap
    // sentinel arrives (sentinels are sent until one does; lost ones are in a notice too).
    let reader = runtime.spawn(async move {
        let (mut trades_received, mut gaps_received, mut lagged) = (Vec::new(), 0u64, 0u64);
        loop {
            match support::next(&mut client).await {
                Received::Json(frame) if frame["ch"] == "trades:BTC-USDT" => {
                    trades_received.extend(frame["data"].as_array().cloned().unwrap_or_default());
                }
                Received::Json(frame) if frame["ch"] == "gaps" => {
                    gaps_received += frame["data"].as_array().map_or(0, |data| data.len() as u64);
                    break;
                }
                Received::Json(frame) if frame.get("lagged").is_some() => {
                    lagged += frame["lagged"].as_u64().unwrap_or(0);
                }
                Received::Json(_) => {}
                other => panic!("the lagging client stays connected: {other:?}"),
            }
        }
        (trades_received, gaps_received, lagged)
    });
    let mut gaps_sent = 0u64;
    while !reader.is_finished() && gaps_sent < 400 {
        sink.on_batch(Batch::Gaps(&[tickflow_sdk::GapEvent::default()]))
            .expect("on_batch");
        gaps_sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (trades_received, gaps_received, lagged) =
        runtime.block_on(reader).expect("the reader ends");
    assert!(lagged > 0, "the client was told it lagged");
    // Nothing vanished silently: every trade arrived or was announced lost, and nothing was
    // announced twice (sentinels sent after the one that arrived may still be in flight).
    let events_lost_or_received = trades_received.len() as u64 + gaps_received + lagged;
    assert!(
        events_lost_or_received <= sent.len() as u64 + gaps_sent,
        "{events_lost_or_received} > {}",
        sent.len() as u64 + gaps_sent
    );
    assert!(
        trades_received.len() as u64 + lagged >= sent.len() as u64,
        "every trade arrived or was announced lost"
    );
    // What arrived is in order and exact.
    let expected: Vec<serde_json::Value> = sent.iter().map(trade_json).collect();
    let mut cursor = expected.iter();
    for trade in &trades_received {
        assert!(
            cursor.any(|candidate| candidate == trade),
            "trades arrive in order, field by field"
        );
    }
    let counters = sink.counters();
    assert_eq!(counters.lagged_records, lagged, "{counters:?}");
    assert_eq!(counters.closed_lagging + counters.closed_write_timeout, 0);
    drop(sink);
}
