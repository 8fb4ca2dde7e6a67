//! A three-node JetStream cluster, stream replicas 3: kill the stream's leader mid-stream;
//! publishing continues and no record is lost or stored twice.

use std::time::{Duration, Instant};

use tickflow_sdk::{Batch, Sink};

use crate::support::{self, NatsCluster};

#[test]
fn losing_the_stream_leader_loses_nothing() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut cluster = NatsCluster::start(store.path());
    let runtime = support::runtime();
    let context = runtime.block_on(support::jetstream_ready(&cluster.urls()));
    let mut config = support::config(cluster.urls(), "clu", "CLU");
    config.replicas = 3;
    config.ack_timeout_ms = 2_000;
    let mut sink = support::start(config);

    sink.on_batch(Batch::Quotes(&support::quotes(0..300)))
        .expect("on_batch");
    support::wait_for(&sink, "the first records acknowledged", |counters| {
        counters.acked == 300
    });
    let leader = runtime.block_on(async {
        let started = Instant::now();
        loop {
            if let Ok(mut stream) = context.get_stream("CLU").await
                && let Ok(info) = stream.info().await
                && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
            {
                assert_eq!(info.config.num_replicas, 3);
                return leader;
            }
            assert!(started.elapsed() < support::WAIT_LIMIT, "no stream leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    for chunk in 0..5 {
        let start = 300 + chunk * 100;
        sink.on_batch(Batch::Quotes(&support::quotes(start..start + 100)))
            .expect("on_batch");
    }
    let node = cluster
        .nodes
        .iter_mut()
        .find(|node| node.name == leader)
        .expect("the leader is one of the nodes");
    node.kill();
    for chunk in 0..5 {
        let start = 800 + chunk * 100;
        sink.on_batch(Batch::Quotes(&support::quotes(start..start + 100)))
            .expect("on_batch");
    }
    support::wait_for(
        &sink,
        "everything acknowledged by the two nodes left",
        |counters| counters.acked == 1_300 && counters.in_flight == 0 && counters.buffered == 0,
    );
    let after = sink.counters();
    eprintln!("counters after the fault: {after:?}");
    assert_eq!(after.dropped(), 0, "{after:?}");
    let survivors: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|node| node.name != leader)
        .map(|node| node.url())
        .collect();
    let context = runtime.block_on(support::jetstream_ready(&survivors));
    let stored = runtime.block_on(support::read_stream(&context, "CLU"));
    support::assert_quotes_exactly_once(&stored, 0..1_300);
    assert_eq!(stored.len(), 1_300);
    drop(sink);
}
