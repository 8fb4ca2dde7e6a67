//! A three-node JetStream cluster on loopback: an R3 stream keeps taking and delivering records
//! while one node is killed, and again after that node restarted, rejoined and caught up while
//! another is killed; the source applies every acknowledged record once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use tickflow_core::config::{EngineConfig, WindowsConfig};
use tickflow_core::outbound::{OutRecord, Outbound};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::record::{Quote, now_ns};
use tickflow_core::registry::SymbolRegistry;
use tickflow_formats::wire::{self, WireBody, WireNames};
use tickflow_source_nats::{NatsSource, SourceConfig};

use crate::server::{NatsCluster, wait_until, wait_until_within};

/// How long a step that follows a node's loss or return may take (leader elections) before the
/// test gives up: a bound against hanging, not a timing assertion.
const CLUSTER_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Default)]
struct Bids(Arc<Mutex<Vec<f64>>>);

impl Outbound for Bids {
    fn emit(&mut self, record: &OutRecord) {
        if let OutRecord::Quote(quote) = record {
            self.0.lock().expect("not poisoned").push(quote.bid);
        }
    }
}

/// Publishes quote `seq` until the cluster acknowledges it (a publish may fail while a node is
/// down and the stream elects a leader; the retry has the same message id).
async fn publish_acknowledged(publisher: &jetstream::Context, seq: u64) {
    let body = WireBody::Quote(Quote {
        bid: seq as f64,
        ask: seq as f64 + 0.1,
        ts_recv_ns: now_ns(),
        ..Quote::default()
    });
    let names = WireNames {
        venue: "binance",
        sell_venue: "",
        symbol: "BTC-USDT",
    };
    let mut payload = Vec::new();
    wire::encode(&body, &names, "c1", seq, &mut payload).expect("encodes");
    let subject = wire::record_subject("tickflow", &body, &names, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sent = publisher
            .send_publish(
                subject.clone(),
                jetstream::message::PublishMessage::build()
                    .payload(payload.clone().into())
                    .message_id(wire::message_id("c1", seq)),
            )
            .await;
        if let Ok(acknowledgement) = sent
            && acknowledgement.await.is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster never acknowledged {seq}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_three_node_cluster_losing_a_node_loses_nothing_acknowledged() {
    let mut cluster = NatsCluster::start();
    let urls = cluster.urls();
    let quoted: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
    let config: SourceConfig = toml::from_str(&format!(
        "kind = \"nats\"\nurl = [{}]\ndurable = \"agg-cluster\"\npartitions = [0]\n\
         partition_count = 1\ncreate_stream = true\nstream_replicas = 3\n\
         stream_max_bytes = 67108864\nheartbeat_timeout_ms = 0\nreconnect_backoff_initial_ms = 50\n\
         reconnect_backoff_max_ms = 500\nconnect_timeout_ms = 2000\n",
        quoted.join(", ")
    ))
    .expect("valid source config");
    config.validate(0).expect("valid source config");
    let engine = EngineConfig {
        shards: 1,
        max_symbols: 16,
        max_connection_slots: 2,
        ..EngineConfig::default()
    };
    let windows = WindowsConfig {
        max_windows: 16,
        buckets: 10,
        ..WindowsConfig::default()
    };
    let bids = Bids::default();
    let mut pipeline =
        Pipeline::start(&engine, &windows, vec![Box::new(bids.clone())]).expect("pipeline starts");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let source = NatsSource::start(
        &config,
        Arc::new(SymbolRegistry::new(engine.max_symbols)),
        pipeline.take_producer().expect("a producer"),
        runtime.handle(),
    );
    let counters = source.counters();
    // The cluster elects its JetStream leader first; the source retries until the R3 stream
    // and its consumer exist.
    wait_until("the source consumes from the cluster", || {
        counters.connected.load(Ordering::Relaxed)
    });
    let addresses: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|url| url.parse().expect("a server address"))
        .collect();
    let publisher = runtime.block_on(async {
        jetstream::new(
            async_nats::connect(addresses)
                .await
                .expect("the publisher connects"),
        )
    });
    runtime.block_on(async {
        for seq in 1..=20 {
            publish_acknowledged(&publisher, seq).await;
        }
    });
    wait_until("the first records arrive", || {
        bids.0.lock().expect("not poisoned").len() == 20
    });
    cluster.kill(0);
    runtime.block_on(async {
        for seq in 21..=40 {
            publish_acknowledged(&publisher, seq).await;
        }
    });
    wait_until_within("every acknowledged record arrives", CLUSTER_WAIT, || {
        bids.0.lock().expect("not poisoned").len() >= 40
    });

    // Node 0 comes back and rejoins: every replica of the stream is current again. Then node 1
    // goes: the stream's majority is node 0 and node 2, so it holds only if node 0 caught up.
    cluster.restart(0);
    wait_until_within(
        "the restarted node is a current replica again",
        CLUSTER_WAIT,
        || {
            runtime.block_on(async {
                let Ok(mut stream) = publisher.get_stream("TICKFLOW").await else {
                    return false;
                };
                let Ok(info) = stream.info().await else {
                    return false;
                };
                info.cluster.as_ref().is_some_and(|cluster| {
                    cluster.leader.is_some()
                        && cluster.replicas.len() == 2
                        && cluster.replicas.iter().all(|replica| replica.current)
                })
            })
        },
    );
    cluster.kill(1);
    runtime.block_on(async {
        for seq in 41..=60 {
            publish_acknowledged(&publisher, seq).await;
        }
    });
    wait_until_within(
        "every record acknowledged after the rejoin arrives",
        CLUSTER_WAIT,
        || bids.0.lock().expect("not poisoned").len() >= 60,
    );
    let seen = bids.0.lock().expect("not poisoned").clone();
    let expected: Vec<f64> = (1..=60).map(|seq| seq as f64).collect();
    assert_eq!(seen, expected, "every acknowledged record once, in order");
    assert!(runtime.block_on(source.shutdown(Duration::from_secs(5))));
    pipeline.shutdown();
}
