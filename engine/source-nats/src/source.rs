//! The source task: connects to NATS (reconnecting with backoff), binds one durable pull consumer
//! per subject filter (plus one for the heartbeats), and for every message decodes it with the
//! wire codec, drops what was already applied, resolves the names through the registry, pushes
//! the record into the pipeline's rings through its `SlotProducer` (waiting for room rather than
//! dropping: the message stays unacknowledged meanwhile), and acknowledges it. A timer checks
//! the collectors' liveness and pushes `GAP_DISCONNECT`s for the silent ones.
//!
//! Bounded: JetStream delivers at most `max_ack_pending` unacknowledged messages per consumer;
//! the name cache holds at most `engine.max_symbols` entries; collectors, their sequence windows
//! and liveness at most `max_collectors`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures_util::StreamExt;
use tickflow_core::pipeline::SlotProducer;
use tickflow_core::record::{FeedEvent, SymbolId, now_ns};
use tickflow_core::registry::{SymbolRegistry, parse_canonical};
use tickflow_core::venue::{VENUE_COUNT, Venue};
use tickflow_formats::nats_auth::NatsAuth;
use tickflow_formats::wire::{self, WireBody};
use tokio_util::sync::CancellationToken;

use crate::checks::{self, Refusal};
use crate::config::SourceConfig;
use crate::dedupe::{self, Admit, Collectors, Position, SequenceFilter, StreamPositions};
use crate::liveness::Liveness;
use crate::reorder::{Released, ReorderBuffer};

/// The source's counters (totals since start), written by its task, read by anyone.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Messages received (every consumer, every kind).
    pub messages: AtomicU64,
    /// Records pushed into the rings (quotes, trades, gaps; liveness gaps included).
    pub applied: AtomicU64,
    /// Redeliveries (stream sequence at or below the highest already handled on the consumer,
    /// and delivered before or its record already applied), acknowledged and skipped.
    pub redeliveries: AtomicU64,
    /// Messages at a stream sequence already handled with another payload: the stream gave the
    /// number again (its tail lost with a single node killed before writing it out, or the
    /// stream re-created). Applied, counted.
    pub sequences_reused: AtomicU64,
    /// Records stored twice (a collector sequence number already applied, inside the window),
    /// acknowledged and skipped.
    pub duplicates: AtomicU64,
    /// Records applied whose collector sequence number is below the highest applied (a re-send
    /// stored behind newer messages): applied, counted.
    pub out_of_order: AtomicU64,
    /// Records refused: timestamp zero or negative.
    pub refused_bad_timestamp: AtomicU64,
    /// Records refused: timestamp more than `max_clock_ahead_ms` ahead of local wall time.
    pub refused_clock_ahead: AtomicU64,
    /// Records refused: a price or quantity NaN or infinite.
    pub refused_non_finite: AtomicU64,
    /// Records refused: a price not positive or a quantity negative.
    pub refused_non_positive_price: AtomicU64,
    /// Quotes refused: bid above ask.
    pub refused_crossed_book: AtomicU64,
    /// Payloads the wire codec refused (acknowledged, skipped).
    pub decode_errors: AtomicU64,
    /// Records of a kind this source does not apply (`kinds`), acknowledged.
    pub skipped_kinds: AtomicU64,
    /// Records naming a venue this engine does not know.
    pub unknown_venues: AtomicU64,
    /// Records whose symbol could not be registered (a bad name, or `max_symbols` reached).
    pub symbols_refused: AtomicU64,
    /// Messages of collectors beyond `max_collectors` (applied without the duplicate filter).
    pub collectors_over_limit: AtomicU64,
    /// Times a push found its ring full and waited.
    pub ring_waits: AtomicU64,
    /// Acknowledgements that failed to send (the message will be redelivered, then skipped).
    pub ack_failures: AtomicU64,
    /// Heartbeats received.
    pub heartbeats: AtomicU64,
    /// (collector, venue)s declared not live (silent past the timeout, or reporting no
    /// connection up).
    pub venues_silenced: AtomicU64,
    /// Sessions started (connected and consuming).
    pub sessions: AtomicU64,
    /// Connection or consumer set-up attempts that failed.
    pub connect_failures: AtomicU64,
    /// Errors the message streams reported (missed server heartbeats, …).
    pub stream_errors: AtomicU64,
    /// Connected to a server now.
    pub connected: AtomicBool,
    /// Local receive time of the last message, ns (0 = none yet).
    pub last_message_ns: AtomicI64,
    /// Since when no connection is up, ns since the epoch (0 while connected).
    pub down_since_ns: AtomicI64,
    /// Records held in the reorder buffer now (`reorder_window_ms`).
    pub reorder_held: AtomicU64,
    /// Records that arrived behind what the reorder buffer had already released (applied at
    /// once, out of receive-time order).
    pub reorder_late: AtomicU64,
    /// Records the reorder buffer released before their window was over because it was full.
    pub reorder_overflow: AtomicU64,
}

impl SourceCounters {
    /// The counters as one JSON object's fields (for the binary's stats line).
    pub fn to_json_fields(&self) -> Vec<(&'static str, u64)> {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        vec![
            ("messages", get(&self.messages)),
            ("applied", get(&self.applied)),
            ("redeliveries", get(&self.redeliveries)),
            ("sequences_reused", get(&self.sequences_reused)),
            ("duplicates", get(&self.duplicates)),
            ("out_of_order", get(&self.out_of_order)),
            ("refused_bad_timestamp", get(&self.refused_bad_timestamp)),
            ("refused_clock_ahead", get(&self.refused_clock_ahead)),
            ("refused_non_finite", get(&self.refused_non_finite)),
            (
                "refused_non_positive_price",
                get(&self.refused_non_positive_price),
            ),
            ("refused_crossed_book", get(&self.refused_crossed_book)),
            ("decode_errors", get(&self.decode_errors)),
            ("skipped_kinds", get(&self.skipped_kinds)),
            ("unknown_venues", get(&self.unknown_venues)),
            ("symbols_refused", get(&self.symbols_refused)),
            ("collectors_over_limit", get(&self.collectors_over_limit)),
            ("ring_waits", get(&self.ring_waits)),
            ("ack_failures", get(&self.ack_failures)),
            ("heartbeats", get(&self.heartbeats)),
            ("venues_silenced", get(&self.venues_silenced)),
            ("sessions", get(&self.sessions)),
            ("connect_failures", get(&self.connect_failures)),
            ("stream_errors", get(&self.stream_errors)),
            ("reorder_held", get(&self.reorder_held)),
            ("reorder_late", get(&self.reorder_late)),
            ("reorder_overflow", get(&self.reorder_overflow)),
            (
                "connected",
                u64::from(self.connected.load(Ordering::Relaxed)),
            ),
        ]
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// How long one pull request waits on the server, and the idle heartbeat within it.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
const PULL_IDLE_HEARTBEAT: Duration = Duration::from_secs(1);

/// What the task owns across sessions.
pub(crate) struct SourceTask {
    pub(crate) config: SourceConfig,
    pub(crate) registry: Arc<SymbolRegistry>,
    pub(crate) producer: SlotProducer,
    pub(crate) counters: Arc<SourceCounters>,
    pub(crate) cancel: CancellationToken,
    filter: SequenceFilter,
    positions: StreamPositions,
    collectors: Collectors,
    liveness: Liveness,
    /// Canonical name → id, for names already resolved (at most `max_symbols`).
    symbols: HashMap<Box<str>, SymbolId>,
    /// Per venue, bit per symbol id: listed on that venue in the registry by this source.
    listed: Vec<Vec<u64>>,
    applies: [bool; 3],
    /// `max_clock_ahead_ms` in ns.
    max_clock_ahead_ns: i64,
    /// Records held for receive-time order with the messages that acknowledge them
    /// (`reorder_window_ms` > 0), one buffer per consumer, in the order of `connect`'s streams
    /// (empty when off).
    reorder: Vec<ReorderBuffer<(FeedEvent, jetstream::Message)>>,
    /// Messages whose records were pushed, acknowledged once the batch is flushed (reused).
    to_ack: Vec<jetstream::Message>,
}

const KIND_QUOTE: usize = 0;
const KIND_TRADE: usize = 1;
const KIND_GAP: usize = 2;

/// Why a session ended.
enum SessionEnd {
    Cancelled,
    Failed(String),
}

impl SourceTask {
    pub(crate) fn new(
        config: SourceConfig,
        registry: Arc<SymbolRegistry>,
        producer: SlotProducer,
        counters: Arc<SourceCounters>,
        cancel: CancellationToken,
    ) -> SourceTask {
        let max_symbols = registry.max_symbols();
        let applies = [
            config.applies("quote"),
            config.applies("trade"),
            config.applies("gap"),
        ];
        SourceTask {
            filter: SequenceFilter::default(),
            positions: StreamPositions::default(),
            collectors: Collectors::new(config.max_collectors),
            liveness: Liveness::new(
                config.heartbeat_timeout_ms,
                config.max_collectors,
                max_symbols,
            ),
            symbols: HashMap::new(),
            listed: vec![vec![0; max_symbols.div_ceil(64)]; VENUE_COUNT],
            applies,
            max_clock_ahead_ns: config.max_clock_ahead_ms as i64 * 1_000_000,
            reorder: if config.reorder_window_ms > 0 {
                let consumers = config.subject_filters().len()
                    + usize::from(config.heartbeat_filter().is_some());
                (0..consumers)
                    .map(|_| {
                        ReorderBuffer::new(
                            Duration::from_millis(config.reorder_window_ms),
                            reorder_capacity(&config),
                            // Held records are unacknowledged: JetStream redelivers them after
                            // `ack_wait_ms`.
                            Duration::from_millis(config.ack_wait_ms / 2),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            to_ack: Vec::new(),
            config,
            registry,
            producer,
            counters,
            cancel,
        }
    }

    /// Sessions until cancelled, with a doubling backoff between failed ones.
    pub(crate) async fn run(mut self) {
        self.counters
            .down_since_ns
            .store(now_ns(), Ordering::Relaxed);
        let initial = Duration::from_millis(self.config.reconnect_backoff_initial_ms);
        let most = Duration::from_millis(self.config.reconnect_backoff_max_ms);
        let mut backoff = initial;
        loop {
            let sessions_before = self.counters.sessions.load(Ordering::Relaxed);
            let end = self.session().await;
            if self.counters.sessions.load(Ordering::Relaxed) != sessions_before {
                // It connected and consumed: the next failure is a new outage, not this one's
                // continuation, so its backoff starts over.
                backoff = initial;
            }
            self.counters.connected.store(false, Ordering::Relaxed);
            let _ = self.counters.down_since_ns.compare_exchange(
                0,
                now_ns(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            match end {
                SessionEnd::Cancelled => return,
                SessionEnd::Failed(reason) => {
                    tracing::warn!(
                        stream = %self.config.stream,
                        durable = %self.config.durable,
                        %reason,
                        backoff_ms = backoff.as_millis() as u64,
                        "NATS source session ended; reconnecting"
                    );
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(most);
        }
    }

    async fn session(&mut self) -> SessionEnd {
        let config = self.config.clone();
        let connected = tokio::select! {
            _ = self.cancel.cancelled() => return SessionEnd::Cancelled,
            connected = connect(&config) => connected,
        };
        let end = self.consume(connected).await;
        match end {
            // Held records are applied: they were taken for handled, so their redeliveries in
            // the next session are skipped (their acknowledgements through the old connection
            // may fail; JetStream redelivers, the positions say handled).
            SessionEnd::Failed(_) => {
                if !self.apply_held().await {
                    return SessionEnd::Cancelled;
                }
            }
            // Stopping: held records were never acknowledged; the next run gets them again.
            SessionEnd::Cancelled => {
                for reorder in &mut self.reorder {
                    reorder.drain_in_order();
                }
            }
        }
        self.counters.reorder_held.store(0, Ordering::Relaxed);
        end
    }
}

/// One reorder buffer's capacity: half of what JetStream delivers unacknowledged to its consumer,
/// so holding records never stops the consumer's deliveries (the event horizon would stall).
pub fn reorder_capacity(config: &SourceConfig) -> usize {
    (config.max_ack_pending as usize / 2).max(1)
}

/// A record's receive time (a gap's own time).
fn received_ns(event: &FeedEvent) -> i64 {
    match event {
        FeedEvent::Quote(quote) => quote.ts_recv_ns,
        FeedEvent::Trade(trade) => trade.ts_recv_ns,
        FeedEvent::Gap(gap) => gap.ts_ns,
    }
}

/// Sleeps until `due`, or forever when there is nothing due.
async fn sleep_until_due(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
        None => std::future::pending().await,
    }
}

/// Connects, binds the stream and one durable pull consumer per filter, and opens their
/// message streams.
async fn connect(config: &SourceConfig) -> Result<(async_nats::Client, Vec<pull::Stream>), String> {
    let addresses: Vec<async_nats::ServerAddr> = config
        .url
        .iter()
        .filter_map(|url| url.parse().ok())
        .collect();
    let options = async_nats::ConnectOptions::new()
        .name(format!("tickflow-source-{}", config.durable))
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms));
    let options = match config
        .auth()
        .map_err(|error| format!("credentials: {error}"))?
    {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(token),
        NatsAuth::UserPassword { user, password } => options.user_and_password(user, password),
    };
    let client = options
        .connect(addresses)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let context = jetstream::new(client.clone());
    let stream = if config.create_stream {
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: vec![format!("{}.>", config.prefix)],
                max_age: Duration::from_millis(config.stream_max_age_ms),
                max_bytes: config.stream_max_bytes,
                duplicate_window: Duration::from_millis(config.duplicate_window_ms),
                num_replicas: config.stream_replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|error| format!("stream {}: {error}", config.stream))?
    } else {
        context
            .get_stream(&config.stream)
            .await
            .map_err(|error| format!("stream {}: {error}", config.stream))?
    };
    let mut filters: Vec<(String, String, DeliverPolicy)> = config
        .consumer_names()
        .into_iter()
        .zip(config.subject_filters())
        .map(|(name, filter)| (name, filter, DeliverPolicy::All))
        .collect();
    if let Some(heartbeats) = config.heartbeat_filter() {
        // Old heartbeats say nothing about now: a new consumer starts at the newest.
        filters.push((
            config.heartbeat_consumer_name(),
            heartbeats,
            DeliverPolicy::New,
        ));
    }
    let mut streams = Vec::with_capacity(filters.len());
    for (name, filter, deliver_policy) in filters {
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name),
                filter_subject: filter.clone(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_millis(config.ack_wait_ms),
                max_ack_pending: i64::from(config.max_ack_pending),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|error| format!("consumer for {filter}: {error}"))?;
        // Short pulls with a 1 s idle heartbeat (the client's defaults: 30 s and 15 s): after a
        // server restart the lost pull is noticed and re-issued within seconds, not half a minute.
        let messages = consumer
            .stream()
            .max_messages_per_batch(config.max_ack_pending.min(1_024) as usize)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_IDLE_HEARTBEAT)
            .messages()
            .await
            .map_err(|error| format!("messages of {filter}: {error}"))?;
        streams.push(messages);
    }
    Ok((client, streams))
}

impl SourceTask {
    async fn consume(
        &mut self,
        connected: Result<(async_nats::Client, Vec<pull::Stream>), String>,
    ) -> SessionEnd {
        let (client, streams) = match connected {
            Ok(connected) => connected,
            Err(reason) => {
                bump(&self.counters.connect_failures);
                return SessionEnd::Failed(reason);
            }
        };
        bump(&self.counters.sessions);
        self.counters.connected.store(true, Ordering::Relaxed);
        self.counters.down_since_ns.store(0, Ordering::Relaxed);
        tracing::info!(
            stream = %self.config.stream,
            durable = %self.config.durable,
            consumers = streams.len(),
            "NATS source consuming"
        );
        // Each consumer's stream ends with a `None` of its own: one consumer ending fails the
        // session (its partition would otherwise go unread while the others run).
        let mut merged = futures_util::stream::select_all(streams.into_iter().enumerate().map(
            |(index, stream)| {
                stream
                    .map(move |message| (index as u16, Some(message)))
                    .chain(futures_util::stream::iter([(index as u16, None)]))
            },
        ));
        let check_every =
            Duration::from_millis((self.config.heartbeat_timeout_ms / 4).clamp(50, 1_000));
        let mut liveness_tick = tokio::time::interval(check_every);
        liveness_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reorder_due = self
                .reorder
                .iter()
                .filter_map(ReorderBuffer::next_due)
                .min();
            tokio::select! {
                _ = self.cancel.cancelled() => return SessionEnd::Cancelled,
                _ = sleep_until_due(reorder_due) => {
                    if !self.release_ready().await {
                        return SessionEnd::Cancelled;
                    }
                }
                _ = liveness_tick.tick() => {
                    // The client reconnects on its own within a session: tell it apart here.
                    let connected =
                        client.connection_state() == async_nats::connection::State::Connected;
                    self.counters.connected.store(connected, Ordering::Relaxed);
                    if connected {
                        self.counters.down_since_ns.store(0, Ordering::Relaxed);
                    } else {
                        let _ = self.counters.down_since_ns.compare_exchange(
                            0,
                            now_ns(),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    if !self.check_liveness().await {
                        return SessionEnd::Cancelled;
                    }
                }
                next = merged.next() => match next {
                    None => return SessionEnd::Failed("every message stream ended".into()),
                    Some((consumer, None)) => {
                        return SessionEnd::Failed(format!(
                            "the message stream of consumer {consumer} ended"
                        ));
                    }
                    Some((_, Some(Err(error)))) => {
                        bump(&self.counters.stream_errors);
                        tracing::debug!(%error, "NATS source stream error");
                    }
                    Some((consumer, Some(Ok(message)))) => {
                        // A stream sequence already handled on this consumer with the same
                        // payload is a redelivery (exact: JetStream's numbers and the payload's
                        // fingerprint); with another payload the stream reused the number. No
                        // reply subject (no info): treated as new. The reply subject is parsed
                        // once: the sequence, and whether messages are pending behind this one
                        // (the reorder buffer's flow rule).
                        let (stream_sequence, more_coming) = message.info().map_or(
                            (None, false),
                            |info| (Some(info.stream_sequence), info.pending > 0),
                        );
                        let fingerprint = dedupe::fingerprint(&message.payload);
                        let position = stream_sequence.map_or(Position::New, |sequence| {
                            self.positions.position(consumer, sequence, fingerprint)
                        });
                        let redelivered = position == Position::Redelivered;
                        if position == Position::Reused {
                            bump(&self.counters.sequences_reused);
                        }
                        let event = if redelivered {
                            bump(&self.counters.messages);
                            bump(&self.counters.redeliveries);
                            None
                        } else {
                            self.prepare(consumer, &message.payload)
                        };
                        let Some(event) = event else {
                            if let Some(sequence) = stream_sequence {
                                self.positions.handled(consumer, sequence, fingerprint);
                            }
                            if message.ack().await.is_err() {
                                bump(&self.counters.ack_failures);
                            }
                            continue;
                        };
                        let late = match self.reorder.get_mut(usize::from(consumer)) {
                            None => Some((event, message)),
                            Some(reorder) => {
                                let late = reorder.insert(
                                    received_ns(&event),
                                    (event, message),
                                    std::time::Instant::now(),
                                    more_coming,
                                );
                                if late.is_some() {
                                    bump(&self.counters.reorder_late);
                                }
                                late
                            }
                        };
                        let applied = match late {
                            // Cancelled while waiting for ring room: not acknowledged, so
                            // JetStream redelivers it to the next run.
                            Some((event, message)) => self.apply_now(event, message).await,
                            None => self.release_ready().await,
                        };
                        if !applied {
                            return SessionEnd::Cancelled;
                        }
                        // Handled once its record is in a ring or held (held records are
                        // applied even when the session fails: `session`).
                        if let Some(sequence) = stream_sequence {
                            self.positions.handled(consumer, sequence, fingerprint);
                        }
                    }
                }
            }
        }
    }

    /// Pushes one record, flushes, then acknowledges its message; false when cancelled before
    /// it was in its ring (not acknowledged).
    async fn apply_now(&mut self, event: FeedEvent, message: jetstream::Message) -> bool {
        if !self.push_waiting(event).await {
            return false;
        }
        self.producer.flush();
        if message.ack().await.is_err() {
            bump(&self.counters.ack_failures);
        }
        true
    }

    /// Applies the records the reorder buffers release now (pushed, flushed, then
    /// acknowledged); false when cancelled meanwhile.
    async fn release_ready(&mut self) -> bool {
        let now = std::time::Instant::now();
        for index in 0..self.reorder.len() {
            while let Some(((event, message), why)) = self.reorder[index].pop_ready(now) {
                if why == Released::Overflow {
                    bump(&self.counters.reorder_overflow);
                }
                if !self.push_waiting(event).await {
                    return false;
                }
                self.to_ack.push(message);
            }
        }
        self.ack_pushed().await;
        true
    }

    /// Applies everything held, in receive-time order per consumer; false when cancelled
    /// meanwhile.
    async fn apply_held(&mut self) -> bool {
        for index in 0..self.reorder.len() {
            for (event, message) in self.reorder[index].drain_in_order() {
                if !self.push_waiting(event).await {
                    return false;
                }
                self.to_ack.push(message);
            }
        }
        self.ack_pushed().await;
        true
    }

    /// Flushes what was pushed, then acknowledges its messages.
    async fn ack_pushed(&mut self) {
        if !self.to_ack.is_empty() {
            self.producer.flush();
        }
        let mut to_ack = std::mem::take(&mut self.to_ack);
        for message in to_ack.drain(..) {
            if message.ack().await.is_err() {
                bump(&self.counters.ack_failures);
            }
        }
        self.to_ack = to_ack;
        let held: usize = self.reorder.iter().map(ReorderBuffer::len).sum();
        self.counters
            .reorder_held
            .store(held as u64, Ordering::Relaxed);
    }

    /// Decodes and checks one payload: the record to push, or `None` when there is nothing to
    /// push (counted: a duplicate, a heartbeat, a refusal, …).
    fn prepare(&mut self, consumer: u16, payload: &[u8]) -> Option<FeedEvent> {
        bump(&self.counters.messages);
        let now = now_ns();
        self.counters.last_message_ns.store(now, Ordering::Relaxed);
        let record = match wire::decode(payload) {
            Ok(record) => record,
            Err(error) => {
                bump(&self.counters.decode_errors);
                tracing::debug!(%error, "NATS source: payload refused");
                return None;
            }
        };
        let collector = match self.collectors.index(record.collector) {
            Some(index) => Some(index),
            None => {
                bump(&self.counters.collectors_over_limit);
                None
            }
        };
        // Secondary check (the window only vouches for what it holds): a number already applied
        // is a record stored twice; one below the highest is applied and counted, never dropped
        // for its age. Marked only for records that pass the checks below.
        let admit = collector.map(|index| self.filter.peek(consumer, index, record.seq));
        if admit == Some(Admit::Duplicate) {
            bump(&self.counters.duplicates);
            return None;
        }
        let Some(venue) = Venue::from_name(record.names.venue) else {
            bump(&self.counters.unknown_venues);
            return None;
        };
        let event = match record.body {
            WireBody::VenueStatus(status) => {
                bump(&self.counters.heartbeats);
                if let Some(collector) = collector {
                    self.filter.admit(consumer, collector, record.seq);
                    self.liveness.heartbeat(collector, venue, &status, now);
                }
                return None;
            }
            WireBody::Quote(quote) if self.applies[KIND_QUOTE] => FeedEvent::Quote(quote),
            WireBody::Trade(trade) if self.applies[KIND_TRADE] => FeedEvent::Trade(trade),
            WireBody::Gap(gap) if self.applies[KIND_GAP] => FeedEvent::Gap(gap),
            _ => {
                bump(&self.counters.skipped_kinds);
                return None;
            }
        };
        if let Err(refusal) = checks::check(&event, now, self.max_clock_ahead_ns) {
            bump(match refusal {
                Refusal::NonPositiveTimestamp => &self.counters.refused_bad_timestamp,
                Refusal::ClockAhead => &self.counters.refused_clock_ahead,
                Refusal::NonFinite => &self.counters.refused_non_finite,
                Refusal::NonPositivePrice => &self.counters.refused_non_positive_price,
                Refusal::CrossedBook => &self.counters.refused_crossed_book,
            });
            tracing::debug!(
                ?refusal,
                collector = record.collector,
                "NATS source: record refused"
            );
            return None;
        }
        if let Some(collector) = collector
            && self.filter.admit(consumer, collector, record.seq) == Admit::OutOfOrder
        {
            bump(&self.counters.out_of_order);
        }
        let Some(symbol) = self.resolve(venue, record.names.symbol) else {
            bump(&self.counters.symbols_refused);
            return None;
        };
        let event = match event {
            FeedEvent::Quote(mut quote) => {
                quote.symbol_id = symbol;
                quote.venue_id = venue.id();
                FeedEvent::Quote(quote)
            }
            FeedEvent::Trade(mut trade) => {
                trade.symbol_id = symbol;
                trade.venue_id = venue.id();
                FeedEvent::Trade(trade)
            }
            FeedEvent::Gap(mut gap) => {
                gap.symbol_id = symbol;
                gap.venue_id = venue.id();
                FeedEvent::Gap(gap)
            }
        };
        if let Some(collector) = collector {
            self.liveness.data(collector, venue, symbol, now);
        }
        Some(event)
    }

    /// Pushes into the ring, waiting while it is full; false when cancelled meanwhile.
    async fn push_waiting(&mut self, event: FeedEvent) -> bool {
        let mut waited = false;
        loop {
            if self.producer.try_push(event) {
                bump(&self.counters.applied);
                return true;
            }
            if !waited {
                waited = true;
                bump(&self.counters.ring_waits);
                self.producer.flush();
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
    }

    /// The id of a canonical symbol name, registered and listed on `venue` when new.
    fn resolve(&mut self, venue: Venue, name: &str) -> Option<SymbolId> {
        let id = match self.symbols.get(name) {
            Some(id) => *id,
            None => {
                let canonical = parse_canonical(name).ok()?;
                let id = self.registry.edit(|edit| edit.symbol(canonical)).ok()?;
                if self.symbols.len() < self.registry.max_symbols() {
                    self.symbols.insert(name.into(), id);
                }
                id
            }
        };
        let index = id.0 as usize;
        let listed = self.listed.get_mut(venue.index())?.get_mut(index / 64)?;
        if *listed & (1 << (index % 64)) == 0 {
            // The venue lists it now (as the feeds register listings): the control plane and
            // the metrics count it live. A spelling clash is not this source's concern.
            let _ = self.registry.edit(|edit| edit.list(venue, id, name, 1.0));
            *listed |= 1 << (index % 64);
        }
        Some(id)
    }

    /// Gaps for every (collector, venue) that stopped being live; false when cancelled.
    async fn check_liveness(&mut self) -> bool {
        let now = now_ns();
        let mut silenced = Vec::new();
        self.liveness.check(now, |entry| silenced.push(entry));
        for entry in silenced {
            bump(&self.counters.venues_silenced);
            tracing::warn!(
                collector = self.collectors.name(entry.collector).unwrap_or("?"),
                venue = entry.venue.name(),
                reported_down = entry.reported_down,
                "collector's venue not live: its quotes take no part until it is heard from again"
            );
            let mut gaps = Vec::new();
            self.liveness.gaps_for(entry, now, |gap| gaps.push(gap));
            for gap in gaps {
                if !self.push_waiting(FeedEvent::Gap(gap)).await {
                    return false;
                }
            }
            self.producer.flush();
        }
        true
    }
}
