//! The publisher task, on the sink's own runtime thread: connects (retrying with backoff, also at
//! start), creates or checks the stream, then moves messages from the outbox to JetStream with at
//! most `max_in_flight` unacknowledged publishes, sends again (same message id, so the stream
//! stores each once) what was not acknowledged, and at shutdown drains for at most
//! `shutdown_drain_ms`. It owns every task it starts (a `JoinSet`) and no state of the runner.
//! Every wait while running (stream set-up, a retry's pause, a publish waiting for the client)
//! is raced against the shutdown signal, so `destroy` returns within the drain time even while
//! the server is unreachable.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event};
use tickflow_formats::nats_auth::NatsAuth;
use tickflow_formats::wire;
use tickflow_sdk::HostHandle;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{Settings, Storage};
use crate::counters::Counters;
use crate::outbox::{Outbox, Outgoing};

/// What the runner and the publisher share: the outbox and the counters (and the settings).
#[derive(Debug)]
pub struct Shared {
    pub settings: Settings,
    pub outbox: Outbox,
    pub counters: Counters,
    /// Set at the first connection, so later ones count as reconnects.
    ever_connected: AtomicBool,
}

impl Shared {
    pub fn new(settings: Settings) -> Shared {
        Shared {
            outbox: Outbox::new(settings.buffer_records, settings.when_full),
            settings,
            counters: Counters::default(),
            ever_connected: AtomicBool::new(false),
        }
    }
}

type AckResult = (Outgoing, Result<PublishAck, PublishError>);

/// The task's body: runs until `shutdown` turns true, then drains.
pub async fn run(shared: Arc<Shared>, host: HostHandle, mut shutdown: watch::Receiver<bool>) {
    let settings = &shared.settings;
    let counters = &shared.counters;
    let events = shared.clone();
    let backoff_settings = settings.clone();
    let options = ConnectOptions::new()
        .name(format!("tickflow-nats {}", settings.collector))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(settings.ack_timeout)
        .client_capacity(settings.max_in_flight + 256)
        .reconnect_delay_callback(move |attempts| backoff_settings.backoff(attempts))
        .event_callback(move |event| {
            let shared = events.clone();
            async move {
                let counters = &shared.counters;
                match event {
                    Event::Connected => {
                        counters.connected.store(1, Ordering::Relaxed);
                        if shared.ever_connected.swap(true, Ordering::Relaxed) {
                            counters.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Event::Disconnected => {
                        counters.connected.store(0, Ordering::Relaxed);
                        counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
    let options = match settings.auth.clone() {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(token),
        NatsAuth::UserPassword { user, password } => options.user_and_password(user, password),
    };
    let client = match options.connect(settings.servers.clone()).await {
        Ok(client) => client,
        Err(error) => {
            host.error(&format!("nats: cannot start the client: {error}"));
            drain_nothing(&shared);
            return;
        }
    };
    let context = jetstream::ContextBuilder::new()
        .timeout(settings.ack_timeout)
        .max_ack_inflight(settings.max_in_flight + 16)
        .backpressure_on_inflight(true)
        .build(client.clone());

    if let Some(stream_name) = &settings.stream {
        let mut attempt = 0usize;
        loop {
            let ensured = tokio::select! {
                _ = shutdown_signal(Some(&mut shutdown)) => {
                    drain_nothing(&shared);
                    return;
                }
                ensured = ensure_stream(&context, settings, stream_name) => ensured,
            };
            match ensured {
                Ok(Some(warning)) => {
                    host.warn(&warning);
                    break;
                }
                Ok(None) => break,
                Err(error) => {
                    attempt += 1;
                    counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                    if attempt == 1 || attempt.is_power_of_two() {
                        host.warn(&format!(
                            "nats: stream {stream_name} not ready (attempt {attempt}): {error}"
                        ));
                    }
                    tokio::select! {
                        _ = shutdown.changed() => {
                            drain_nothing(&shared);
                            return;
                        }
                        _ = tokio::time::sleep(settings.backoff(attempt)) => {}
                    }
                }
            }
        }
        host.info(&format!(
            "nats: publishing to stream {stream_name} at {} as collector {}",
            settings.urls.join(","),
            settings.collector
        ));
    }

    let mut publisher = Publisher {
        shared: &shared,
        context,
        retry: VecDeque::with_capacity(settings.max_in_flight),
        acks: JoinSet::new(),
        failures: 0,
        message_id: String::new(),
    };
    publisher.publish_until(Some(&mut shutdown), None).await;
    let deadline = Instant::now() + settings.shutdown_drain;
    publisher.publish_until(None, Some(deadline)).await;
    let left = publisher.retry.len() + publisher.acks.len() + shared.outbox.clear(counters);
    publisher.acks.shutdown().await;
    counters.in_flight.store(0, Ordering::Relaxed);
    if left > 0 {
        counters
            .dropped_shutdown
            .fetch_add(left as u64, Ordering::Relaxed);
        host.warn(&format!(
            "nats: {left} records not acknowledged within shutdown_drain_ms, dropped"
        ));
    }
    if counters.connected.load(Ordering::Relaxed) == 1 {
        let _ = tokio::time::timeout(settings.ack_timeout, client.flush()).await;
    }
    drop(client);
}

/// Resolves once shutdown is asked (or its sender is gone); never without a receiver.
async fn shutdown_signal(shutdown: Option<&mut watch::Receiver<bool>>) {
    match shutdown {
        Some(receiver) => {
            let _ = receiver.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

/// Counts what the outbox holds as dropped at shutdown (the task never got to publish).
fn drain_nothing(shared: &Shared) {
    let left = shared.outbox.clear(&shared.counters);
    shared
        .counters
        .dropped_shutdown
        .fetch_add(left as u64, Ordering::Relaxed);
}

/// Creates the stream, or checks the one there. `Ok(Some(text))` is a warning to log.
async fn ensure_stream(
    context: &jetstream::Context,
    settings: &Settings,
    name: &str,
) -> Result<Option<String>, String> {
    let subjects = format!("{}.>", settings.prefix);
    let config = stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.clone()],
        duplicate_window: settings.duplicate_window,
        max_bytes: if settings.max_bytes == 0 {
            -1
        } else {
            settings.max_bytes as i64
        },
        max_messages: -1,
        max_age: settings.max_age,
        num_replicas: settings.replicas,
        storage: match settings.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        ..stream::Config::default()
    };
    let stream = context
        .get_or_create_stream(config)
        .await
        .map_err(|error| error.to_string())?;
    let existing = &stream.cached_info().config;
    let covered = existing
        .subjects
        .iter()
        .any(|subject| subject == &subjects || subject == ">");
    if !covered {
        return Ok(Some(format!(
            "nats: stream {name} exists with subjects {:?}, which do not include {subjects}: publishes may find no stream",
            existing.subjects
        )));
    }
    if existing.duplicate_window != settings.duplicate_window
        || existing.num_replicas != settings.replicas
    {
        return Ok(Some(format!(
            "nats: stream {name} exists with duplicate_window {:?} and {} replicas (config: {:?}, {}); it is used as it is",
            existing.duplicate_window,
            existing.num_replicas,
            settings.duplicate_window,
            settings.replicas
        )));
    }
    Ok(None)
}

struct Publisher<'a> {
    shared: &'a Shared,
    context: jetstream::Context,
    /// Messages to send again, in `seq` order (at most `max_in_flight`: each held a slot).
    retry: VecDeque<Outgoing>,
    acks: JoinSet<AckResult>,
    /// Consecutive failed publishes; paces retries.
    failures: usize,
    message_id: String,
}

impl Publisher<'_> {
    fn has_work(&self) -> bool {
        !self.retry.is_empty() || !self.shared.outbox.is_empty()
    }

    /// Publishes until `shutdown` turns true (running), or until everything is acknowledged or
    /// `deadline` passes (draining).
    async fn publish_until(
        &mut self,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
        deadline: Option<Instant>,
    ) {
        let settings = &self.shared.settings;
        loop {
            if shutdown.as_ref().is_some_and(|receiver| *receiver.borrow()) {
                return;
            }
            let has_work = self.has_work();
            if deadline.is_some() && !has_work && self.acks.is_empty() {
                return;
            }
            let room = self.acks.len() < settings.max_in_flight;
            let stop = async {
                match (shutdown.as_mut(), deadline) {
                    (Some(receiver), _) => {
                        let _ = receiver.changed().await;
                    }
                    (None, Some(deadline)) => tokio::time::sleep_until(deadline).await,
                    (None, None) => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop => {
                    if deadline.is_some() {
                        return;
                    }
                }
                Some(joined) = self.acks.join_next(), if !self.acks.is_empty() => {
                    self.acknowledged(joined);
                }
                _ = self.shared.outbox.pushed(), if !(has_work && room) => {}
                _ = std::future::ready(()), if has_work && room => {
                    self.send_next(shutdown.as_deref_mut(), deadline).await;
                }
            }
        }
    }

    fn acknowledged(&mut self, joined: Result<AckResult, tokio::task::JoinError>) {
        let counters = &self.shared.counters;
        counters
            .in_flight
            .store(self.acks.len() as u64, Ordering::Relaxed);
        let (message, result) = match joined {
            Ok(done) => done,
            // Only a panic inside the ack future (a bug in the client) gets here: the message
            // is lost with its task.
            Err(_) => {
                counters.dropped_rejected.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match result {
            Ok(ack) => {
                self.failures = 0;
                counters.acked.fetch_add(1, Ordering::Relaxed);
                counters
                    .acked_bytes
                    .fetch_add(message.payload.len() as u64, Ordering::Relaxed);
                if ack.duplicate {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(error) => self.failed(message, &error),
        }
    }

    fn failed(&mut self, message: Outgoing, error: &PublishError) {
        let counters = &self.shared.counters;
        if error.kind() == PublishErrorKind::MaxPayloadExceeded {
            counters.dropped_rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.failures += 1;
        counters.retried.fetch_add(1, Ordering::Relaxed);
        self.requeue(message);
    }

    /// Puts a message back to be sent again, keeping the retries in sequence order (a re-sent
    /// burst keeps the collector's order).
    fn requeue(&mut self, message: Outgoing) {
        let position = self
            .retry
            .partition_point(|queued| queued.seq < message.seq);
        self.retry.insert(position, message);
    }

    /// Sends one message. A shutdown asked meanwhile (running: `shutdown` is given) puts it
    /// back unsent and returns at once; the drain (with its deadline) sends it or counts it.
    async fn send_next(
        &mut self,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
        deadline: Option<Instant>,
    ) {
        let settings = &self.shared.settings;
        let counters = &self.shared.counters;
        let from_retry = !self.retry.is_empty();
        let Some(message) = self
            .retry
            .pop_front()
            .or_else(|| self.shared.outbox.pop(counters))
        else {
            return;
        };
        if from_retry && self.failures > 0 {
            // Pace re-sends while the server keeps failing them (a stream not there yet, a
            // cluster electing a leader); an acknowledgement resets the pace.
            let pause = tokio::time::sleep(settings.backoff(self.failures));
            let paused = async {
                match deadline {
                    Some(deadline) => {
                        let _ = tokio::time::timeout_at(deadline, pause).await;
                    }
                    None => pause.await,
                }
            };
            let stopped = tokio::select! {
                _ = shutdown_signal(shutdown.as_deref_mut()) => true,
                _ = paused => false,
            };
            if stopped {
                self.requeue(message);
                return;
            }
        }
        wire::push_message_id(&mut self.message_id, &settings.collector, message.seq);
        let publish = PublishMessage::build()
            .payload(message.payload.clone())
            .message_id(&self.message_id);
        let send = self.context.send_publish(message.subject.clone(), publish);
        let limited = async {
            match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, send).await {
                    Ok(sent) => sent,
                    Err(_) => Err(PublishError::new(PublishErrorKind::TimedOut)),
                },
                None => send.await,
            }
        };
        let sent = tokio::select! {
            _ = shutdown_signal(shutdown) => None,
            sent = limited => Some(sent),
        };
        let Some(sent) = sent else {
            self.requeue(message);
            return;
        };
        counters.published.fetch_add(1, Ordering::Relaxed);
        match sent {
            Ok(ack) => {
                self.acks.spawn(async move {
                    let result = ack.await;
                    (message, result)
                });
                counters
                    .in_flight
                    .store(self.acks.len() as u64, Ordering::Relaxed);
            }
            Err(error) => self.failed(message, &error),
        }
    }
}
