//! tickflow's NATS source (`[[sources]] kind = "nats"`): an aggregator engine's input from the
//! collectors. A durable JetStream pull consumer per subject filter feeds the records collectors
//! published (`tickflow-formats`' wire codec) into the same rings and shards as a feed slot
//! does, through a `SlotProducer` of its own, applied once (redeliveries told by JetStream's
//! per-consumer stream sequence, publish duplicates left to JetStream's `Nats-Msg-Id`
//! de-duplication), in receive-time order when `reorder_window_ms` asks (`reorder.rs`), refusing records with impossible timestamps or prices (`checks.rs`), and turns a collector's silence into `GAP_DISCONNECT`s (liveness).
//!
//! Entry points: [`NatsSource::start`] (a task on the caller's runtime, owned, joined by
//! [`NatsSource::shutdown`]), [`SourceConfig`] (`config.rs`), [`budget_bytes`].
//! *Invariant:* a record is acknowledged only after it is in its ring; nothing here drops a
//! record for want of room (the task waits, JetStream keeps the message).

pub mod checks;
pub mod config;
pub mod dedupe;
pub mod liveness;
pub mod reorder;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use tickflow_core::pipeline::SlotProducer;
use tickflow_core::registry::SymbolRegistry;
use tokio_util::sync::CancellationToken;

pub use config::{SourceConfig, SourceConfigError, SourceKind};
pub use source::SourceCounters;

/// One running NATS source.
#[derive(Debug)]
pub struct NatsSource {
    task: tokio::task::JoinHandle<()>,
    cancel: CancellationToken,
    counters: Arc<SourceCounters>,
    name: String,
}

impl NatsSource {
    /// Starts the source's task on `runtime` with the producer it keeps for its whole life.
    /// `config` must be validated.
    pub fn start(
        config: &SourceConfig,
        registry: Arc<SymbolRegistry>,
        producer: SlotProducer,
        runtime: &tokio::runtime::Handle,
    ) -> NatsSource {
        let counters = Arc::new(SourceCounters::default());
        let cancel = CancellationToken::new();
        let task = source::SourceTask::new(
            config.clone(),
            registry,
            producer,
            Arc::clone(&counters),
            cancel.clone(),
        );
        NatsSource {
            task: runtime.spawn(task.run()),
            cancel,
            counters,
            name: config.durable.clone(),
        }
    }

    /// The durable name (the source's name in logs and stats).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }

    /// Stops the task (a message not yet in its ring stays unacknowledged: JetStream redelivers
    /// it) and waits for it up to `deadline`; its producer is dropped with it. True when it ended
    /// in time.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.cancel.cancel();
        let mut task = self.task;
        match tokio::time::timeout(deadline, &mut task).await {
            Ok(_) => true,
            Err(_) => {
                task.abort();
                false
            }
        }
    }
}

/// The most memory one source holds: the messages JetStream may have delivered and not yet
/// acknowledged (each consumer's `max_ack_pending` payloads at their largest, plus the client's
/// per-message overhead), the duplicate filter, liveness and the name cache.
pub fn budget_bytes(config: &SourceConfig, max_symbols: usize) -> usize {
    const MESSAGE_OVERHEAD_BYTES: usize = 512;
    let consumers =
        config.subject_filters().len() + usize::from(config.heartbeat_filter().is_some());
    let in_flight = consumers
        * config.max_ack_pending as usize
        * (tickflow_formats::wire::PAYLOAD_MAX_BYTES + MESSAGE_OVERHEAD_BYTES);
    let filter = consumers * config.max_collectors * dedupe::SequenceFilter::entry_bytes()
        + consumers * dedupe::StreamPositions::entry_bytes();
    let liveness = liveness::Liveness::budget_bytes(config.max_collectors, max_symbols);
    let names = max_symbols * (64 + 16) + tickflow_core::venue::VENUE_COUNT * max_symbols / 8;
    // Held records are messages counted in flight; the buffer adds the record and its slot.
    let reorder = if config.reorder_window_ms > 0 {
        consumers
            * source::reorder_capacity(config)
            * (std::mem::size_of::<tickflow_core::record::FeedEvent>() + 64)
    } else {
        0
    };
    in_flight + filter + liveness + names + reorder
}
