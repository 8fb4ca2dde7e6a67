//! Kill the server mid-stream (SIGKILL) and start it again on the same port and store: the sink
//! reconnects by itself, publishes what it buffered, and every record is in the stream exactly
//! once; the counters show the outage.

use tickflow_sdk::{Batch, Sink};

use crate::support::{self, NatsServer};

#[test]
fn a_server_restart_loses_and_doubles_nothing() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut server = NatsServer::start(store.path());
    let runtime = support::runtime();
    runtime.block_on(support::jetstream_ready(&[server.url()]));
    let mut sink = support::start(support::config(vec![server.url()], "out", "OUT"));

    sink.on_batch(Batch::Quotes(&support::quotes(0..200)))
        .expect("on_batch");
    support::wait_for(&sink, "the first records acknowledged", |counters| {
        counters.acked == 200
    });
    // Mid-stream: a burst is on its way when the server dies.
    for chunk in 0..10 {
        let start = 200 + chunk * 100;
        sink.on_batch(Batch::Quotes(&support::quotes(start..start + 100)))
            .expect("on_batch");
    }
    server.kill();
    support::wait_for(&sink, "the disconnect seen", |counters| {
        counters.disconnects >= 1 && counters.connected == 0
    });
    // While the server is down: records wait in the bounded buffer.
    for chunk in 0..5 {
        let start = 1_200 + chunk * 100;
        sink.on_batch(Batch::Quotes(&support::quotes(start..start + 100)))
            .expect("on_batch");
    }
    let during = sink.counters();
    assert!(
        during.buffered + during.in_flight > 0,
        "records wait during the outage: {during:?}"
    );
    assert!(during.acked < 1_700, "{during:?}");

    server.restart();
    support::wait_for(
        &sink,
        "everything acknowledged after the restart",
        |counters| counters.acked == 1_700 && counters.in_flight == 0 && counters.buffered == 0,
    );
    let after = sink.counters();
    eprintln!("counters after the fault: {after:?}");
    assert!(after.reconnects >= 1, "{after:?}");
    assert_eq!(after.connected, 1);
    assert_eq!(after.dropped(), 0, "{after:?}");
    assert_eq!(after.received, 1_700);

    let context = runtime.block_on(support::jetstream_ready(&[server.url()]));
    let stored = runtime.block_on(support::read_stream(&context, "OUT"));
    support::assert_quotes_exactly_once(&stored, 0..1_700);
    assert_eq!(stored.len(), 1_700);
    drop(sink);
}

#[test]
fn a_full_buffer_drops_and_counts() {
    // No server at all: the sink starts, buffers up to buffer_records, then counts drops; at
    // destroy what is left is counted as dropped at shutdown.
    let port = support::free_port();
    let mut config = support::config(vec![format!("nats://127.0.0.1:{port}")], "full", "FULL");
    config.buffer_records = 100;
    config.max_in_flight = 10;
    config.shutdown_drain_ms = 100;
    let mut sink = support::start(config);
    sink.on_batch(Batch::Quotes(&support::quotes(0..500)))
        .expect("on_batch never blocks");
    let counters = sink.counters();
    assert_eq!(counters.received, 500);
    assert_eq!(counters.dropped_buffer_full, 400);
    assert_eq!(counters.buffered, 100);
    assert_eq!(counters.connected, 0);
    assert_eq!(sink.stats().records_dropped, 400);
    drop(sink);
}

#[test]
fn destroy_returns_while_the_server_is_down_with_a_full_buffer() {
    // The server dies with publishes in flight; their acks time out, the re-sends back off
    // (towards a minute: reconnect_delay_max_ms), the buffer fills. Destroy must not wait out
    // the backoff or a publish stuck on the dead connection: it returns after the drain.
    let store = tempfile::tempdir().expect("tempdir");
    let mut server = NatsServer::start(store.path());
    let runtime = support::runtime();
    runtime.block_on(support::jetstream_ready(&[server.url()]));
    let mut config = support::config(vec![server.url()], "down", "DOWN");
    config.buffer_records = 100;
    config.max_in_flight = 16;
    config.reconnect_delay_initial_ms = 100;
    config.reconnect_delay_max_ms = 60_000;
    config.shutdown_drain_ms = 200;
    let mut sink = support::start(config);
    sink.on_batch(Batch::Quotes(&support::quotes(0..10)))
        .expect("on_batch");
    support::wait_for(&sink, "the first records acknowledged", |counters| {
        counters.acked == 10
    });
    server.kill();
    support::wait_for(&sink, "the disconnect seen", |counters| {
        counters.connected == 0
    });
    sink.on_batch(Batch::Quotes(&support::quotes(10..510)))
        .expect("on_batch never blocks");
    // Enough failed publishes that the next re-send's pause is long (backoff(10) ≈ 51 s).
    support::wait_for(&sink, "publishes failing and backing off", |counters| {
        counters.retried >= 10
    });
    let during = sink.counters();
    assert!(during.dropped_buffer_full > 0, "{during:?}");

    let (done_sender, done) = std::sync::mpsc::sync_channel(1);
    let destroyer = std::thread::spawn(move || {
        drop(sink);
        let _ = done_sender.send(());
    });
    // A bound against hanging (the drain is 200 ms; the pause it must not wait is ~a minute).
    assert!(
        done.recv_timeout(std::time::Duration::from_secs(20))
            .is_ok(),
        "destroy did not return while the server was down"
    );
    destroyer.join().expect("the destroying thread ends");
}
