//! NATS JetStream sink: a collector engine's records published to JetStream with
//! acknowledgements, for aggregator engines (the engine's NATS source) and other consumers.
//! Built against `tickflow-sdk` and `tickflow-formats` (the wire payload and subjects) only.
//!
//! `on_batch` (the runner thread) encodes each record of a configured kind with its names into
//! one message (`tickflow_formats::wire`: payload, subject, sequence number) and hands it to a
//! bounded outbox (`outbox.rs`; `when_full` drops and counts, nothing waits). Venue-status
//! records also go to the heartbeat subject, and a venue whose status was last sent more than
//! `heartbeat_ms` ago gets it again (checked at every `on_batch` and `on_tick`, on this thread:
//! no timer touches shared state). The publisher (`publisher.rs`) runs on a current-thread tokio
//! runtime on one thread the instance owns and joins in `destroy`. Counters are atomics
//! (`counters.rs`) published to the host's metrics from `on_tick`.

pub mod config;
pub mod counters;
pub mod outbox;
pub mod publisher;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickflow_formats::wire::{self, WireBody, WireKind, WireNames};
use tickflow_sdk::abi::PluginStats;
use tickflow_sdk::{
    Batch, HostHandle, RecordKind, Sink, SinkError, SymbolId, VenueId, VenueStatus,
};
use tokio::sync::watch;

pub use config::{ConfigError, Encoding, NatsConfig, Settings, Urls, WhenFull};
pub use counters::CountersSnapshot;
use counters::HostMetrics;
use outbox::Outgoing;
use publisher::Shared;

/// Most symbol names cached by id (a full cache is cleared; names are looked up again).
pub const NAME_CACHE_MAX: usize = 65_536;
/// Most venues whose heartbeat the sink repeats.
pub const HEARTBEAT_VENUES_MAX: usize = 256;

/// The last status of one venue, when the engine gave it and when it was last handed to the
/// outbox.
struct Heartbeat {
    venue_id: VenueId,
    status: VenueStatus,
    last_sent: Instant,
    /// When the engine last gave a status of this venue (repeats stop
    /// `heartbeat_repeat_periods` periods after it).
    last_fresh: Instant,
}

/// The sink instance.
pub struct NatsSink {
    host: HostHandle,
    shared: Arc<Shared>,
    metrics: HostMetrics,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// The next message's sequence number: starts at the start time in ns since the epoch, so
    /// message ids stay unique across restarts of the collector.
    next_seq: u64,
    venue_names: HashMap<u16, Box<str>>,
    symbol_names: HashMap<u32, Box<str>>,
    heartbeats: Vec<Heartbeat>,
    scratch: Vec<u8>,
    batch: Vec<Outgoing>,
}

impl NatsSink {
    /// The counters now (what the metrics and stats report).
    pub fn counters(&self) -> CountersSnapshot {
        self.shared.counters.snapshot()
    }

    /// The validated settings the sink runs with.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    fn venue_name(&mut self, venue_id: VenueId) -> Box<str> {
        if let Some(name) = self.venue_names.get(&venue_id.0) {
            return name.clone();
        }
        let name: Box<str> = self.host.venue_name(venue_id).unwrap_or_default().into();
        // Venue ids are few (u16); the map is bounded like the symbol cache.
        if self.venue_names.len() >= NAME_CACHE_MAX {
            self.venue_names.clear();
        }
        self.venue_names.insert(venue_id.0, name.clone());
        name
    }

    fn symbol_name(&mut self, symbol_id: SymbolId) -> Box<str> {
        if let Some(name) = self.symbol_names.get(&symbol_id.0) {
            return name.clone();
        }
        let name: Box<str> = self.host.symbol_name(symbol_id).unwrap_or_default().into();
        if self.symbol_names.len() >= NAME_CACHE_MAX {
            self.symbol_names.clear();
        }
        self.symbol_names.insert(symbol_id.0, name.clone());
        name
    }

    /// Encodes one record into `self.batch` (or counts it dropped). `from_engine` is false for
    /// the sink's own repeated heartbeats, which are not counted as received.
    fn add(&mut self, body: WireBody, from_engine: bool) {
        let settings = &self.shared.settings;
        let counters = &self.shared.counters;
        let kind = body.kind();
        if !settings.publishes(kind) {
            return;
        }
        if from_engine {
            counters.received.fetch_add(1, Ordering::Relaxed);
        }
        let (venue_id, sell_venue_id) = body.venue_ids();
        let venue = self.venue_name(venue_id);
        let sell_venue = match sell_venue_id {
            Some(id) => self.venue_name(id),
            None => Box::default(),
        };
        let symbol = match body.symbol_id() {
            Some(id) => self.symbol_name(id),
            None => Box::default(),
        };
        let settings = &self.shared.settings;
        let counters = &self.shared.counters;
        let longest = venue.len().max(sell_venue.len()).max(symbol.len());
        if longest > settings.name_max_bytes {
            counters.dropped_encode.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let names = WireNames {
            venue: &venue,
            sell_venue: &sell_venue,
            symbol: &symbol,
        };
        let seq = self.next_seq;
        self.scratch.clear();
        let encoded = match settings.encoding {
            Encoding::Binary => {
                wire::encode(&body, &names, &settings.collector, seq, &mut self.scratch)
            }
            Encoding::Json => {
                wire::encode_json(&body, &names, &settings.collector, seq, &mut self.scratch)
            }
        };
        if encoded.is_err() {
            counters.dropped_encode.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        let subject = if kind == WireKind::VenueStatus {
            wire::heartbeat_subject(&settings.prefix, &settings.collector, &venue)
        } else {
            wire::record_subject(&settings.prefix, &body, &names, settings.partitions)
        };
        self.batch.push(Outgoing {
            subject,
            payload: Bytes::copy_from_slice(&self.scratch),
            seq,
            kind,
        });
    }

    /// Remembers a venue's status and when it was sent (bounded to `HEARTBEAT_VENUES_MAX`).
    fn note_heartbeat(&mut self, status: &VenueStatus, now: Instant) {
        if let Some(known) = self
            .heartbeats
            .iter_mut()
            .find(|known| known.venue_id == status.venue_id)
        {
            known.status = *status;
            known.last_sent = now;
            known.last_fresh = now;
        } else if self.heartbeats.len() < HEARTBEAT_VENUES_MAX {
            self.heartbeats.push(Heartbeat {
                venue_id: status.venue_id,
                status: *status,
                last_sent: now,
                last_fresh: now,
            });
        }
    }

    /// Sends again the status of every venue not heard of for `heartbeat_ms` (its fields as the
    /// engine took them: `ts_ns` tells a reader how old the status is, the message that the
    /// collector is alive), but only within `heartbeat_repeat_periods` periods of the engine's
    /// last fresh status: a stalled engine must not look alive forever.
    fn repeat_heartbeats(&mut self, now: Instant) {
        if !self.shared.settings.publishes(WireKind::VenueStatus) {
            return;
        }
        let period = self.shared.settings.heartbeat;
        let repeat_for = self.shared.settings.heartbeat_repeat_for;
        let mut due = 0u64;
        for index in 0..self.heartbeats.len() {
            let known = &self.heartbeats[index];
            if now.duration_since(known.last_fresh) >= repeat_for {
                continue;
            }
            if now.duration_since(known.last_sent) >= period {
                self.heartbeats[index].last_sent = now;
                let status = self.heartbeats[index].status;
                self.add(WireBody::VenueStatus(status), false);
                due += 1;
            }
        }
        if due > 0 {
            self.shared
                .counters
                .heartbeats_repeated
                .fetch_add(due, Ordering::Relaxed);
        }
    }

    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.shared
            .outbox
            .push_all(self.batch.drain(..), &self.shared.counters);
    }
}

impl Sink for NatsSink {
    type Config = NatsConfig;
    const NAME: &'static str = "nats";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const RECORD_KINDS: &'static [RecordKind] = &[
        RecordKind::Quote,
        RecordKind::Trade,
        RecordKind::SpreadSample,
        RecordKind::Opportunity,
        RecordKind::Gap,
        RecordKind::VenueStatus,
    ];

    fn create(host: HostHandle, config: NatsConfig) -> Result<NatsSink, SinkError> {
        let settings = config.validate().map_err(SinkError::config)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared::new(settings));
        let (shutdown_sender, shutdown_receiver) = watch::channel(false);
        let task_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nats-sink".to_string())
            .spawn(move || {
                runtime.block_on(publisher::run(task_shared, host, shutdown_receiver));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        let settings = &shared.settings;
        let endpoint = settings.urls.join(",");
        let endpoint = if endpoint.len() <= 512 {
            endpoint
        } else {
            settings.urls[0].clone()
        };
        if !host.publish_endpoint("nats", &endpoint) {
            host.warn(&format!(
                "nats: the engine did not take the endpoint {endpoint} (host older than ABI 1.2?)"
            ));
        }
        let now_ns = host.now_ns();
        Ok(NatsSink {
            host,
            metrics: HostMetrics::register(host),
            shared,
            shutdown: shutdown_sender,
            thread: Some(thread),
            next_seq: u64::try_from(now_ns).unwrap_or(1).max(1),
            venue_names: HashMap::new(),
            symbol_names: HashMap::new(),
            heartbeats: Vec::new(),
            scratch: Vec::with_capacity(wire::PAYLOAD_MAX_BYTES),
            batch: Vec::new(),
        })
    }

    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        let now = Instant::now();
        match batch {
            Batch::Quotes(records) => {
                for record in records {
                    self.add(WireBody::Quote(*record), true);
                }
            }
            Batch::Trades(records) => {
                for record in records {
                    self.add(WireBody::Trade(*record), true);
                }
            }
            Batch::Spreads(records) => {
                for record in records {
                    self.add(WireBody::SpreadSample(*record), true);
                }
            }
            Batch::Opportunities(records) => {
                for record in records {
                    self.add(WireBody::Opportunity(*record), true);
                }
            }
            Batch::Gaps(records) => {
                for record in records {
                    self.add(WireBody::Gap(*record), true);
                }
            }
            Batch::VenueStatus(records) => {
                for record in records {
                    self.add(WireBody::VenueStatus(*record), true);
                    self.note_heartbeat(record, now);
                }
            }
            Batch::Telemetry(_) => {}
        }
        self.repeat_heartbeats(now);
        self.hand_over();
        Ok(())
    }

    fn on_tick(&mut self, _now_ns: i64) -> Result<(), SinkError> {
        self.repeat_heartbeats(Instant::now());
        self.hand_over();
        let snapshot = self.shared.counters.snapshot();
        self.metrics.publish(&snapshot);
        Ok(())
    }

    fn stats(&self) -> PluginStats {
        let snapshot = self.shared.counters.snapshot();
        PluginStats {
            records_written: snapshot.acked,
            records_dropped: snapshot.dropped(),
            bytes_written: snapshot.acked_bytes,
            errors: snapshot.retried + snapshot.stream_errors,
            ..PluginStats::default()
        }
    }

    fn memory_bound_bytes(config: &NatsConfig) -> Result<Option<u64>, SinkError> {
        let settings = config.validate().map_err(SinkError::config)?;
        Ok(Some(config::memory_bound_bytes(&settings)))
    }
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        self.hand_over();
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            self.host.error("nats: publisher thread panicked");
        }
        let snapshot = self.shared.counters.snapshot();
        self.metrics.publish(&snapshot);
    }
}

tickflow_sdk::export_sink!(NatsSink);
