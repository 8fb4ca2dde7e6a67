//! One connection slot's task: connect, subscribe, read and decode frames into the pipeline,
//! keep-alive both ways, watchdogs, rotation without a gap, reconnect with backoff.
//!
//! The slot owns everything it uses for its whole life (decoder, record batch, scratch strings,
//! producer, counters, the opener's scratch); a reconnect reuses all of it, so nothing
//! accumulates. Reads go through a pinned future that owns the read half, which keeps them
//! cancel-safe inside `select!`; a rotation's open is another pinned future in the same
//! `select!`, so the primary keeps being read while its replacement connects.
//!
//! This module is the task and its session loop; what the loop drives lives beside it: `opener`
//! (connect, welcome, subscribe), `link` (one connection's writes and keep-alive), `rotation`
//! (the primary and its replacement), `held_gaps` (gap events the ring refused).

mod held_gaps;
mod link;
mod opener;
mod rotation;

use std::ops::ControlFlow;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fastwebsockets::{OpCode, WebSocketError};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::held_gaps::HeldGaps;
use self::link::{Link, LinkFault, LinkWriter, Ping, Watchdogs};
use self::opener::{Opened, Opener};
use self::rotation::{
    Dropped, Event, ReadResult, ReplacementOpen, Rotation, SeatFutures, SeatRead, open_replacement,
    read_next,
};
use crate::EventSink;
use crate::config::FeedsConfig;
use crate::counters::{SlotCounters, bump};
use crate::planner::SlotPlan;
use crate::protocol::{self, ClientPing};
use crate::ws::{ConnectError, WsReader};
use tickflow_core::record::{FeedEvent, now_ns};
use tickflow_core::records::{GAP_DISCONNECT, GAP_RECONNECT};
use tickflow_core::venue::Venue;
use tickflow_decode::{
    ControlEvent, DecodeErrorKind, DecodeLimits, Decoder, FrameEncoding, FrameOutcome, RecordBatch,
};

/// Timings every slot shares, from `[feeds]`.
#[derive(Clone, Copy, Debug)]
pub struct SlotTimings {
    pub connect_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub healthy_after: Duration,
    pub pong_timeout: Duration,
    pub max_silence: Duration,
    pub stale_data: Duration,
    pub rotate_after: Duration,
    pub rotation_first_data_timeout: Duration,
    pub shutdown_deadline: Duration,
}

impl SlotTimings {
    pub fn from_config(feeds: &FeedsConfig) -> SlotTimings {
        let ms = Duration::from_millis;
        SlotTimings {
            connect_timeout: ms(feeds.connect_timeout_ms),
            backoff_base: ms(feeds.backoff_base_ms),
            backoff_cap: ms(feeds.backoff_cap_ms),
            healthy_after: ms(feeds.healthy_after_ms),
            pong_timeout: ms(feeds.pong_timeout_ms),
            max_silence: ms(feeds.max_silence_ms),
            stale_data: ms(feeds.stale_data_ms),
            rotate_after: ms(feeds.rotate_after_ms),
            rotation_first_data_timeout: ms(feeds.rotation_first_data_timeout_ms),
            shutdown_deadline: ms(feeds.shutdown_deadline_ms),
        }
    }
}

/// Full-jitter exponential backoff: a random delay in [0, min(cap, base · 2^attempt)].
pub fn backoff_delay(attempt: u32, base: Duration, cap: Duration, random_unit: f64) -> Duration {
    let bound = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    bound.mul_f64(random_unit.clamp(0.0, 1.0))
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionEnd {
    Shutdown,
    /// The connection is gone or declared dead; reconnect.
    Lost,
}

/// What the read loop must do after a frame.
enum FrameAction {
    Continue,
    /// Send the text in `Slot::reply` on the link the frame came from.
    ReplyText,
    /// Answer a ws ping with this payload.
    ReplyPong(BytesMut),
    /// The link got data (rotation waits for this on the replacement).
    Data,
    /// A shutdown notice: rotate.
    Rotate,
    /// The link is unusable.
    Dead,
}

/// The slot's task state; see the module docs.
pub(crate) struct Slot<S: EventSink> {
    plan: Arc<SlotPlan>,
    counters: Arc<SlotCounters>,
    timings: SlotTimings,
    decoder: Box<dyn Decoder>,
    sink: S,
    batch: RecordBatch,
    /// Scratch for replies and pings (reused).
    reply: String,
    opener: Opener,
    ping_nonce: u64,
    ping_interval: Duration,
    /// Set at a reconnect; cleared (and recorded) at its first record.
    resume_started: Option<Instant>,
    /// A disconnect gap was emitted and its reconnect gap not yet: the primary died while an
    /// unproven replacement was open, which was promoted and owes the reconnect at its first data.
    hole_open: bool,
    held_gaps: HeldGaps,
    cancel: CancellationToken,
}

/// What every slot of one `Feeds` shares: timings, decode limits and the TLS client settings.
pub(crate) struct SlotSettings {
    pub timings: SlotTimings,
    pub limits: DecodeLimits,
    pub tls: tokio_rustls::TlsConnector,
}

impl<S: EventSink> Slot<S> {
    pub(crate) fn new(
        plan: Arc<SlotPlan>,
        counters: Arc<SlotCounters>,
        settings: &SlotSettings,
        decoder: Box<dyn Decoder>,
        welcome_decoder: Option<Box<dyn Decoder>>,
        sink: S,
        cancel: CancellationToken,
    ) -> Slot<S> {
        let ping_interval = plan.ping_interval;
        let held_gaps = HeldGaps::new(Arc::clone(&plan));
        let opener = Opener::new(&plan, &counters, settings, welcome_decoder, &cancel);
        Slot {
            plan,
            counters,
            timings: settings.timings,
            decoder,
            sink,
            batch: RecordBatch::with_capacity(settings.limits.max_records_per_frame),
            reply: String::with_capacity(128),
            opener,
            ping_nonce: 0,
            ping_interval,
            resume_started: None,
            hole_open: false,
            held_gaps,
            cancel,
        }
    }

    fn venue(&self) -> Venue {
        self.plan.venue
    }

    /// The slot's whole life: connect, run, reconnect with backoff, until cancelled.
    pub(crate) async fn run(mut self) {
        let mut attempt: u32 = 0;
        let mut first_connection = true;
        while !self.cancel.is_cancelled() {
            let (reader, writer) = match self.opener.clone().open().await {
                Ok(opened) => {
                    if let Some(ping_interval) = opened.ping_interval {
                        self.ping_interval = ping_interval;
                    }
                    (opened.reader, opened.writer)
                }
                Err(ConnectError::Cancelled) => break,
                Err(error) => {
                    let retry_after = match &error {
                        ConnectError::Refused {
                            status: 429 | 418,
                            retry_after_s,
                        } => {
                            bump(&self.counters.rate_limited);
                            Some(Duration::from_secs(retry_after_s.unwrap_or(1)))
                        }
                        _ => None,
                    };
                    bump(&self.counters.connect_failures);
                    tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, %error, "connect failed");
                    if !self.wait_backoff(&mut attempt, retry_after).await {
                        break;
                    }
                    continue;
                }
            };
            let connected_at = Instant::now();
            bump(&self.counters.connects);
            if first_connection {
                first_connection = false;
            } else {
                bump(&self.counters.reconnects);
                self.push_gaps(GAP_RECONNECT);
                self.hole_open = false;
                self.resume_started = Some(connected_at);
            }
            self.counters
                .connected
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.counters.subscriptions.store(
                self.plan.topics.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let end = self.session(reader, writer).await;
            self.counters
                .connected
                .store(false, std::sync::atomic::Ordering::Relaxed);
            self.counters
                .subscriptions
                .store(0, std::sync::atomic::Ordering::Relaxed);
            // A hole already opened during the session has had its disconnect gap.
            if !self.hole_open {
                self.push_gaps(GAP_DISCONNECT);
                self.hole_open = true;
            }
            if end == SessionEnd::Shutdown {
                break;
            }
            if connected_at.elapsed() >= self.timings.healthy_after {
                attempt = 0;
            }
            if !self.wait_backoff(&mut attempt, None).await {
                break;
            }
        }
        self.deliver_gaps_at_shutdown().await;
        self.sink.flush();
    }

    /// Last tries for held gaps (shards are still draining); what is left is counted as dropped.
    async fn deliver_gaps_at_shutdown(&mut self) {
        const LAST_TRIES: u32 = 100;
        for _ in 0..LAST_TRIES {
            if self.deliver_held_gaps() {
                return;
            }
            // Retry pacing while the shard drains the ring, not synchronization.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let dropped = self.held_gaps.drop_all();
        self.counters
            .gap_drops
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, dropped, "gap events undeliverable at shutdown");
    }

    /// Offers every held gap again; true when none is left.
    fn deliver_held_gaps(&mut self) -> bool {
        self.held_gaps.deliver(&mut self.sink)
    }

    /// Sleeps the next backoff delay (at least `retry_after`); false when cancelled meanwhile.
    async fn wait_backoff(&mut self, attempt: &mut u32, retry_after: Option<Duration>) -> bool {
        let random_unit: f64 = rand::rng().random();
        let mut delay = backoff_delay(
            *attempt,
            self.timings.backoff_base,
            self.timings.backoff_cap,
            random_unit,
        );
        if let Some(retry_after) = retry_after {
            delay = delay.max(retry_after);
        }
        *attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// One gap of `kind` per owned symbol; see `HeldGaps::emit`.
    fn push_gaps(&mut self, kind: u8) {
        self.held_gaps.emit(kind, &self.counters, &mut self.sink);
    }

    fn housekeeping_period(&self) -> Duration {
        let mut shortest = self
            .ping_interval
            .min(self.timings.pong_timeout)
            .min(self.timings.max_silence)
            .min(self.timings.rotation_first_data_timeout);
        if self.plan.stale_watchdog {
            shortest = shortest.min(self.timings.stale_data);
        }
        (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    /// Runs one connection (and, while rotating, its replacement) until it is lost or shutdown.
    async fn session(&mut self, reader: WsReader, writer: LinkWriter) -> SessionEnd {
        let now = Instant::now();
        let primary = Link::new(writer, now, self.ping_interval);
        // The replacement's open runs here, beside the reads, so the primary is never left unread.
        let futures = SeatFutures {
            reads: [pin!(read_next(None)), pin!(read_next(None))],
            read_next,
            open: pin!(open_replacement(None)),
            open_replacement,
        };
        let mut rotation = Rotation::new(futures, reader, primary, now, &self.timings);
        let mut tick = tokio::time::interval(self.housekeeping_period());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cancel = self.cancel.clone();
        loop {
            let flow = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    rotation.close_all(self.timings.shutdown_deadline).await;
                    return SessionEnd::Shutdown;
                }
                event = rotation.next_event() => match event {
                    Event::Frame { seat, frame } => self.on_frame(&mut rotation, seat, frame).await,
                    Event::Opened(result) => {
                        self.on_replacement_opened(&mut rotation, result);
                        ControlFlow::Continue(())
                    }
                },
                _ = tick.tick() => self.housekeeping(&mut rotation).await,
            };
            if let ControlFlow::Break(end) = flow {
                return end;
            }
        }
    }

    /// The periodic tick: held gaps, both links' keep-alive and watchdogs, a due rotation.
    async fn housekeeping(
        &mut self,
        rotation: &mut Rotation<'_, impl SeatRead, impl ReplacementOpen>,
    ) -> ControlFlow<SessionEnd> {
        self.deliver_held_gaps();
        let now = Instant::now();
        for seat in [0usize, 1] {
            let is_primary = seat == rotation.primary();
            let alive = match rotation.link_mut(seat) {
                Some(link) => self.check_link(link, is_primary, now).await,
                None => true,
            };
            if !alive {
                self.drop_seat(rotation, seat)?;
            }
        }
        rotation.start_if_due(now, &self.opener);
        ControlFlow::Continue(())
    }

    fn on_replacement_opened(
        &mut self,
        rotation: &mut Rotation<'_, impl SeatRead, impl ReplacementOpen>,
        result: Result<Opened, ConnectError>,
    ) {
        match result {
            Ok(opened) => {
                if let Some(ping_interval) = opened.ping_interval {
                    self.ping_interval = ping_interval;
                }
                let link = Link::new(opened.writer, Instant::now(), self.ping_interval);
                rotation.seat_replacement(opened.reader, link);
            }
            // Shutdown: the cancel branch ends the session next.
            Err(ConnectError::Cancelled) => {}
            Err(error) => {
                tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, %error, "rotation connect failed");
                rotation.open_failed();
            }
        }
    }

    /// One frame, or a failed read, from `seat`.
    async fn on_frame(
        &mut self,
        rotation: &mut Rotation<'_, impl SeatRead, impl ReplacementOpen>,
        seat: usize,
        frame: ReadResult,
    ) -> ControlFlow<SessionEnd> {
        let (opcode, fin, payload) = match frame {
            Ok(frame) => frame,
            Err(error) => {
                match error {
                    WebSocketError::FrameTooLarge => bump(&self.counters.oversized_frames),
                    WebSocketError::UnexpectedEOF | WebSocketError::IoError(_) => {
                        bump(&self.counters.server_closes)
                    }
                    _ => bump(&self.counters.protocol_errors),
                }
                tracing::debug!(venue = %self.venue(), slot = self.plan.connection_id, %error, "read failed");
                return self.drop_seat(rotation, seat);
            }
        };
        let is_primary = seat == rotation.primary();
        let Some(link) = rotation.link_mut(seat) else {
            return ControlFlow::Continue(());
        };
        let action = self.handle_frame(link, is_primary, opcode, fin, payload);
        let alive = match action {
            FrameAction::Continue => true,
            FrameAction::ReplyText => link.write_text(&self.reply).await.is_ok(),
            FrameAction::ReplyPong(payload) => link.pong(payload).await.is_ok(),
            FrameAction::Data => {
                if !is_primary {
                    // The replacement delivers: retire the old connection, no gap.
                    rotation.promote(seat, self.timings.shutdown_deadline).await;
                    bump(&self.counters.rotations);
                }
                true
            }
            FrameAction::Rotate => {
                rotation.rotate_now();
                true
            }
            FrameAction::Dead => false,
        };
        if alive {
            ControlFlow::Continue(())
        } else {
            self.drop_seat(rotation, seat)
        }
    }

    /// Drops a dead seat and records what that meant; breaks when the session is over.
    fn drop_seat(
        &mut self,
        rotation: &mut Rotation<'_, impl SeatRead, impl ReplacementOpen>,
        seat: usize,
    ) -> ControlFlow<SessionEnd> {
        match rotation.drop_seat(seat) {
            Dropped::Last => return ControlFlow::Break(SessionEnd::Lost),
            Dropped::Rotated => bump(&self.counters.rotations),
            // The reconnect gap (and the reconnect) come with the promoted link's first data.
            Dropped::Hole if !self.hole_open => {
                self.push_gaps(GAP_DISCONNECT);
                self.hole_open = true;
                self.resume_started = Some(Instant::now());
            }
            Dropped::Hole | Dropped::Replacement => {}
        }
        ControlFlow::Continue(())
    }

    /// Keep-alive and watchdogs for one link; sends its ping when due. False = dead.
    async fn check_link(&mut self, link: &mut Link, is_primary: bool, now: Instant) -> bool {
        let watchdogs = Watchdogs {
            max_silence: self.timings.max_silence,
            stale_data: (is_primary && self.plan.stale_watchdog).then_some(self.timings.stale_data),
            first_data: (!is_primary || self.hole_open)
                .then_some(self.timings.rotation_first_data_timeout),
        };
        if let Some(fault) = link.fault(now, &watchdogs) {
            match fault {
                LinkFault::PongMissed => {
                    bump(&self.counters.pongs_missed);
                    tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "pong missed");
                }
                LinkFault::Silent => {
                    bump(&self.counters.silences);
                    tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "connection silent");
                }
                LinkFault::Stale => {
                    bump(&self.counters.stale_data);
                    tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "data stale");
                }
                LinkFault::NoFirstData => {
                    tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "replacement sent no data in time");
                }
            }
            return false;
        }
        if !link.ping_due(now) {
            return true;
        }
        self.ping_nonce += 1;
        let ping = match self.plan.rules.client_ping {
            ClientPing::None => return true,
            ClientPing::WsFrame => Ping::Frame,
            ClientPing::Text => {
                protocol::write_client_ping(self.plan.venue, self.ping_nonce, &mut self.reply);
                Ping::Text(&self.reply)
            }
        };
        link.ping(ping, now, self.timings.pong_timeout, self.ping_interval)
            .await
            .is_ok()
    }

    /// Decodes one frame into the pipeline and says what the connection must do next.
    fn handle_frame(
        &mut self,
        link: &mut Link,
        is_primary: bool,
        opcode: OpCode,
        fin: bool,
        mut payload: BytesMut,
    ) -> FrameAction {
        bump(&self.counters.frames);
        let now = Instant::now();
        link.frame_arrived(now);
        let encoding = match opcode {
            OpCode::Ping => return FrameAction::ReplyPong(payload),
            OpCode::Pong => {
                link.pong_arrived();
                return FrameAction::Continue;
            }
            OpCode::Close => {
                bump(&self.counters.server_closes);
                return FrameAction::Dead;
            }
            OpCode::Continuation => {
                bump(&self.counters.protocol_errors);
                return FrameAction::Dead;
            }
            OpCode::Text => FrameEncoding::Text,
            OpCode::Binary => FrameEncoding::Binary,
        };
        if !fin {
            // Venues never fragment market data; a fragment can't be decoded alone.
            bump(&self.counters.protocol_errors);
            return FrameAction::Dead;
        }
        self.batch.clear();
        match self
            .decoder
            .decode(&mut payload, encoding, now_ns(), &mut self.batch)
        {
            Ok(FrameOutcome::Records(count)) => {
                let mut quotes = 0u64;
                // A replacement that delivers during a hole is promoted right after this frame.
                if count > 0 && self.hole_open {
                    self.close_hole();
                }
                self.deliver_held_gaps();
                for event in self.batch.drain() {
                    quotes += matches!(event, FeedEvent::Quote(_)) as u64;
                    // Held back by its symbol's gap, a record is dropped like a full ring's.
                    if self.held_gaps.blocks(event.symbol_id()) || !self.sink.push(event) {
                        bump(&self.counters.ring_drops);
                    }
                }
                self.sink.flush();
                if count == 0 {
                    return FrameAction::Continue;
                }
                self.counters
                    .records
                    .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
                self.counters
                    .quotes
                    .fetch_add(quotes, std::sync::atomic::Ordering::Relaxed);
                link.data_arrived(now);
                if is_primary && let Some(started) = self.resume_started.take() {
                    self.counters
                        .record_resume_ms(now.duration_since(started).as_millis() as u64);
                }
                FrameAction::Data
            }
            Ok(FrameOutcome::Control(event)) => match event {
                ControlEvent::SubscribeAck | ControlEvent::Welcome => FrameAction::Continue,
                ControlEvent::Pong => {
                    link.pong_arrived();
                    FrameAction::Continue
                }
                ControlEvent::ServerPing { nonce } => {
                    protocol::write_server_pong(nonce, &mut self.reply);
                    FrameAction::ReplyText
                }
                ControlEvent::ShutdownNotice => {
                    bump(&self.counters.shutdown_notices);
                    tracing::info!(venue = %self.venue(), slot = self.plan.connection_id, "shutdown notice: rotating");
                    FrameAction::Rotate
                }
                ControlEvent::ErrorReply { code } => {
                    bump(&self.counters.error_replies);
                    tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, code, "venue error reply");
                    FrameAction::Continue
                }
                ControlEvent::Snapshot => {
                    if self.hole_open {
                        self.close_hole();
                    }
                    link.data_arrived(now);
                    FrameAction::Data
                }
            },
            Err(error) => {
                self.batch.clear();
                bump(&self.counters.decode_errors[error.kind.index()]);
                if error.kind == DecodeErrorKind::Oversized {
                    bump(&self.counters.oversized_frames);
                }
                tracing::debug!(venue = %self.venue(), slot = self.plan.connection_id, %error, "frame refused");
                FrameAction::Continue
            }
        }
    }

    /// The promoted replacement delivers after a hole: it is a reconnect, marked like one.
    fn close_hole(&mut self) {
        bump(&self.counters.reconnects);
        self.push_gaps(GAP_RECONNECT);
        self.hole_open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_by_cap_and_grows() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(1_000);
        assert_eq!(backoff_delay(0, base, cap, 1.0), base);
        assert_eq!(backoff_delay(2, base, cap, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(40, base, cap, 1.0), cap);
        assert_eq!(backoff_delay(3, base, cap, 0.0), Duration::ZERO);
        assert!(backoff_delay(3, base, cap, 0.5) <= cap);
    }
}
