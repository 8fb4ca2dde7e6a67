//! What the sink counts, shared by the runner thread and the publisher task as atomics, and
//! handed to the engine as host metrics (deltas, published from the runner thread once a tick)
//! and as the stats entry.

use std::sync::atomic::{AtomicU64, Ordering};

use tickflow_sdk::{HostHandle, Metric};

/// Totals since the instance started; gauges are the current value.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records the engine delivered of a kind the sink publishes.
    pub received: AtomicU64,
    /// Publishes sent to the server (a retry counts again).
    pub published: AtomicU64,
    /// Messages the stream acknowledged (each message once).
    pub acked: AtomicU64,
    /// Acknowledgements that said "duplicate": a retry of a message already stored.
    pub duplicates: AtomicU64,
    /// Bytes of acknowledged payloads.
    pub acked_bytes: AtomicU64,
    /// Publishes sent again after an error or a missing acknowledgement.
    pub retried: AtomicU64,
    /// Dropped: the buffer was full (`when_full`).
    pub dropped_buffer_full: AtomicU64,
    /// Dropped: a name longer than `name_max_bytes`, or a record that cannot be encoded.
    pub dropped_encode: AtomicU64,
    /// Dropped: the server refused the message for good (larger than its max payload).
    pub dropped_rejected: AtomicU64,
    /// Dropped: still buffered or unacknowledged when `shutdown_drain_ms` ran out at destroy.
    pub dropped_shutdown: AtomicU64,
    /// Heartbeats the sink added for venues whose status record was older than `heartbeat_ms`.
    pub heartbeats_repeated: AtomicU64,
    /// Connections to a server after the first.
    pub reconnects: AtomicU64,
    pub disconnects: AtomicU64,
    /// Failed stream creations or checks.
    pub stream_errors: AtomicU64,
    /// Gauge: 1 while connected.
    pub connected: AtomicU64,
    /// Gauge: publishes waiting for their acknowledgement.
    pub in_flight: AtomicU64,
    /// Gauge: messages in the buffer.
    pub buffered: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let get = Counters::get;
        CountersSnapshot {
            received: get(&self.received),
            published: get(&self.published),
            acked: get(&self.acked),
            duplicates: get(&self.duplicates),
            acked_bytes: get(&self.acked_bytes),
            retried: get(&self.retried),
            dropped_buffer_full: get(&self.dropped_buffer_full),
            dropped_encode: get(&self.dropped_encode),
            dropped_rejected: get(&self.dropped_rejected),
            dropped_shutdown: get(&self.dropped_shutdown),
            heartbeats_repeated: get(&self.heartbeats_repeated),
            reconnects: get(&self.reconnects),
            disconnects: get(&self.disconnects),
            stream_errors: get(&self.stream_errors),
            connected: get(&self.connected),
            in_flight: get(&self.in_flight),
            buffered: get(&self.buffered),
        }
    }
}

/// A plain copy of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub received: u64,
    pub published: u64,
    pub acked: u64,
    pub duplicates: u64,
    pub acked_bytes: u64,
    pub retried: u64,
    pub dropped_buffer_full: u64,
    pub dropped_encode: u64,
    pub dropped_rejected: u64,
    pub dropped_shutdown: u64,
    pub heartbeats_repeated: u64,
    pub reconnects: u64,
    pub disconnects: u64,
    pub stream_errors: u64,
    pub connected: u64,
    pub in_flight: u64,
    pub buffered: u64,
}

impl CountersSnapshot {
    pub fn dropped(&self) -> u64 {
        self.dropped_buffer_full
            + self.dropped_encode
            + self.dropped_rejected
            + self.dropped_shutdown
    }
}

/// Reads one figure of a snapshot.
type Field = fn(&CountersSnapshot) -> u64;

/// The host metrics (`tickflow_plugin_nats_*{sink="…"}`) and the totals already added to them.
#[derive(Debug)]
pub struct HostMetrics {
    counters: Vec<(Option<Metric>, Field, u64)>,
    gauges: Vec<(Option<Metric>, Field)>,
}

impl HostMetrics {
    pub fn register(host: HostHandle) -> HostMetrics {
        let counter_table: [(&str, &str, Field); 14] = [
            (
                "nats_received_total",
                "Records the NATS sink received to publish",
                |s| s.received,
            ),
            (
                "nats_published_total",
                "Publishes sent to NATS JetStream (retries included)",
                |s| s.published,
            ),
            ("nats_acked_total", "Messages JetStream acknowledged", |s| {
                s.acked
            }),
            (
                "nats_duplicates_total",
                "Acknowledgements of a message already stored (a retry de-duplicated by id)",
                |s| s.duplicates,
            ),
            (
                "nats_acked_bytes_total",
                "Payload bytes JetStream acknowledged",
                |s| s.acked_bytes,
            ),
            (
                "nats_retried_total",
                "Publishes sent again after an error or a missing acknowledgement",
                |s| s.retried,
            ),
            (
                "nats_dropped_buffer_full_total",
                "Records dropped: the outage buffer was full",
                |s| s.dropped_buffer_full,
            ),
            (
                "nats_dropped_encode_total",
                "Records dropped: a name too long to publish",
                |s| s.dropped_encode,
            ),
            (
                "nats_dropped_rejected_total",
                "Records dropped: the server refused them for good",
                |s| s.dropped_rejected,
            ),
            (
                "nats_dropped_shutdown_total",
                "Records dropped: not acknowledged before the shutdown drain ended",
                |s| s.dropped_shutdown,
            ),
            (
                "nats_heartbeats_repeated_total",
                "Heartbeats repeated for venues whose status was older than heartbeat_ms",
                |s| s.heartbeats_repeated,
            ),
            (
                "nats_reconnects_total",
                "Connections to a NATS server after the first",
                |s| s.reconnects,
            ),
            (
                "nats_disconnects_total",
                "Connections to a NATS server lost",
                |s| s.disconnects,
            ),
            (
                "nats_stream_errors_total",
                "Failed attempts to create or check the JetStream stream",
                |s| s.stream_errors,
            ),
        ];
        let gauge_table: [(&str, &str, Field); 3] = [
            (
                "nats_connected",
                "1 while the NATS sink is connected to a server",
                |s| s.connected,
            ),
            (
                "nats_in_flight",
                "Publishes waiting for their JetStream acknowledgement",
                |s| s.in_flight,
            ),
            (
                "nats_buffered_records",
                "Records in the NATS sink's outage buffer",
                |s| s.buffered,
            ),
        ];
        HostMetrics {
            counters: counter_table
                .iter()
                .map(|(name, help, field)| (host.counter(name, help), *field, 0))
                .collect(),
            gauges: gauge_table
                .iter()
                .map(|(name, help, field)| (host.gauge(name, help), *field))
                .collect(),
        }
    }

    /// Adds what each counter gained since the last call and sets the gauges.
    pub fn publish(&mut self, snapshot: &CountersSnapshot) {
        for (metric, field, published) in &mut self.counters {
            let total = field(snapshot);
            if let Some(metric) = metric
                && total > *published
            {
                metric.add(total - *published);
            }
            *published = total;
        }
        for (metric, field) in &self.gauges {
            if let Some(metric) = metric {
                metric.set(field(snapshot) as f64);
            }
        }
    }
}
