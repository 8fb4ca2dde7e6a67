//! One connection slot's task: connect, subscribe, read and decode frames into the pipeline,
//! keep-alive both ways, watchdogs, rotation without a gap, reconnect with backoff.
//!
//! The slot owns everything it uses for its whole life (scratch strings, producer, counters, the
//! opener's scratch); a reconnect reuses all of it, so nothing accumulates. Decoders and the
//! record batch are shared per worker thread (`decode_pool`). Reads and queued writes are polled
//! side by side (both keep their state in their seat, so they are cancel-safe inside `select!`)
//! and nothing in the session loop waits for a socket: a peer that stops reading cannot stop the
//! reads or the watchdogs. A rotation's open is a pinned future in the same `select!`, so the
//! primary keeps being read while its replacement connects.
//!
//! This module is the task and its session loop; what the loop drives lives beside it: `opener`
//! (connect, welcome, subscribe), `link` (one connection's writes and keep-alive), `rotation`
//! (the primary and its replacement), `held_gaps` (gap events the ring refused), `decode_pool`
//! (the decoders and record batches the slots share), `coalesce` (batched wake-ups of the
//! thread while frames come fast).

mod coalesce;
pub use coalesce::{BatchSleepFigures, BatchSleeps, before_park as batch_wakeups_before_park};
pub(crate) mod decode_pool;
mod held_gaps;
mod link;
mod opener;
mod rotation;

pub(crate) use link::MAX_QUEUED_WRITE_BYTES;
pub(crate) use opener::replacement_message_bytes;

use std::ops::ControlFlow;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::coalesce::Coalescer;
use self::decode_pool::DecodePool;
use self::held_gaps::HeldGaps;
use self::link::{Link, LinkFault, LinkWriter, Ping, Watchdogs};
use self::opener::{Opened, Opener, SeatRole};
use self::rotation::{Dropped, Event, ReplacementOpen, Rotation, Seat, open_replacement};
use crate::EventSink;
use crate::config::FeedsConfig;
use crate::counters::{ExchangeLatency, SlotCounters, bump};
use crate::framing::{ControlPayload, Incoming, ReadError, ReadStamp, WriteError};
use crate::planner::SlotPlan;
use crate::protocol::{self, ClientPing};
use crate::ws::{ConnectError, WsReader};
use tickflow_core::record::FeedEvent;
use tickflow_core::records::{GAP_DISCONNECT, GAP_QUOTE_WITHDRAWN, GAP_RECONNECT};
use tickflow_core::venue::Venue;
use tickflow_decode::{ControlEvent, DecodeErrorKind, FrameEncoding, FrameOutcome};

/// Timings every slot shares, from `[feeds]`.
#[derive(Clone, Copy, Debug)]
pub struct SlotTimings {
    pub connect_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub healthy_after: Duration,
    pub pong_timeout: Duration,
    pub write_timeout: Duration,
    pub max_silence: Duration,
    pub stale_data: Duration,
    pub rotate_after: Duration,
    pub rotation_first_data_timeout: Duration,
    pub shutdown_deadline: Duration,
    /// `feeds.batch_wait_us`; zero = one wake-up per frame.
    pub batch_wait: Duration,
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
            write_timeout: ms(feeds.write_timeout_ms),
            max_silence: ms(feeds.max_silence_ms),
            stale_data: ms(feeds.stale_data_ms),
            rotate_after: ms(feeds.rotate_after_ms),
            rotation_first_data_timeout: ms(feeds.rotation_first_data_timeout_ms),
            shutdown_deadline: ms(feeds.shutdown_deadline_ms),
            batch_wait: Duration::from_micros(feeds.batch_wait_us),
        }
    }
}

/// Full-jitter exponential backoff: a random delay in [0, min(cap, base · 2^attempt)].
pub fn backoff_delay(attempt: u32, base: Duration, cap: Duration, random_unit: f64) -> Duration {
    let bound = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    bound.mul_f64(random_unit.clamp(0.0, 1.0))
}

/// The next plan sent to the slot; never completes without a sender (or after it is dropped).
async fn next_plan(updates: Option<&mut watch::Receiver<Arc<SlotPlan>>>) -> Arc<SlotPlan> {
    match updates {
        Some(updates) => match updates.changed().await {
            Ok(()) => Arc::clone(&updates.borrow_and_update()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Most events handled in a row between two looks at cancellation and the housekeeping tick.
const DRAIN_EVENTS: usize = 64;

/// `future`'s output if it is ready at its first poll, else `None` (its wakers stay registered).
async fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionEnd {
    Shutdown,
    /// The connection is gone or declared dead; reconnect.
    Lost,
    /// The slot's new plan carries no symbol: the connection was closed on purpose.
    Emptied,
}

/// What the read loop must do after a frame.
enum FrameAction {
    Continue,
    /// Send the text in `Slot::reply` on the link the frame came from.
    ReplyText,
    /// Answer a ws ping with this payload.
    ReplyPong(ControlPayload),
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
    decode_pool: Arc<DecodePool>,
    max_frame_bytes: usize,
    sink: S,
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
    /// New plans for this slot (a universe refresh); taken by `run`.
    plan_updates: Option<watch::Receiver<Arc<SlotPlan>>>,
    /// When an oversized message was last logged (at most one line per second).
    oversized_logged_at: Option<Instant>,
    cancel: CancellationToken,
}

/// What every slot of one `Feeds` shares: timings, the frame limit, the decoding scratch and the
/// TLS client settings.
pub(crate) struct SlotSettings {
    pub timings: SlotTimings,
    pub max_frame_bytes: usize,
    pub decode_pool: Arc<DecodePool>,
    pub tls: tokio_rustls::TlsConnector,
    /// One connection-rate bucket per venue, shared by its slots.
    pub pacers: [Arc<crate::pacer::ConnectPacer>; tickflow_core::venue::VENUE_COUNT],
}

impl<S: EventSink> Slot<S> {
    pub(crate) fn new(
        plan_updates: watch::Receiver<Arc<SlotPlan>>,
        counters: Arc<SlotCounters>,
        settings: &SlotSettings,
        sink: S,
        cancel: CancellationToken,
    ) -> Slot<S> {
        let plan = Arc::clone(&plan_updates.borrow());
        let ping_interval = plan.ping_interval;
        let held_gaps = HeldGaps::new(Arc::clone(&plan));
        let opener = Opener::new(&plan, &counters, settings, &cancel);
        Slot {
            plan,
            counters,
            timings: settings.timings,
            decode_pool: Arc::clone(&settings.decode_pool),
            max_frame_bytes: settings.max_frame_bytes,
            sink,
            reply: String::with_capacity(128),
            opener,
            ping_nonce: 0,
            ping_interval,
            resume_started: None,
            hole_open: false,
            held_gaps,
            plan_updates: Some(plan_updates),
            oversized_logged_at: None,
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
        let mut plan_updates = self.plan_updates.take();
        while !self.cancel.is_cancelled() {
            if self.opener.plan().symbol_ids.is_empty() {
                // Nothing to carry: no connection until a plan brings symbols.
                let empty = Arc::clone(self.opener.plan());
                self.adopt(empty);
                let cancel = self.cancel.clone();
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    next = next_plan(plan_updates.as_mut()) => self.opener = self.opener.with_plan(&next),
                }
                continue;
            }
            let (reader, writer, plan) = match self.opener.clone().open(SeatRole::Primary).await {
                Ok(opened) => {
                    if let Some(ping_interval) = opened.ping_interval {
                        self.ping_interval = ping_interval;
                    }
                    (opened.reader, opened.writer, opened.plan)
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
                        ConnectError::Write(write_error) if write_error.is_stall() => {
                            bump(&self.counters.write_timeouts);
                            None
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
            self.adopt(Arc::clone(&plan));
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
            let records_before = self
                .counters
                .records
                .load(std::sync::atomic::Ordering::Relaxed);
            let end = self.session(reader, writer, plan, &mut plan_updates).await;
            // The records of the session's last frames.
            self.sink.flush();
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
            if end == SessionEnd::Emptied {
                first_connection = true;
                continue;
            }
            // A connection that delivered data worked: its end is a new incident (a cut, a
            // venue restart), not a venue refusing us, so the next reconnect starts again at the
            // base delay (a reconnect storm is resumed at once, within the venue's
            // connection-rate window). One that never delivered counts as a failed attempt
            // unless it stayed up `healthy_after` (a quiet market).
            let delivered_data = self
                .counters
                .records
                .load(std::sync::atomic::Ordering::Relaxed)
                > records_before;
            if delivered_data || connected_at.elapsed() >= self.timings.healthy_after {
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
            .min(self.timings.write_timeout)
            .min(self.timings.max_silence)
            .min(self.timings.rotation_first_data_timeout);
        if self.plan.stale_watchdog {
            shortest = shortest.min(self.timings.stale_data);
        }
        (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    /// Runs one connection (and, while rotating, its replacement) until it is lost or shutdown.
    async fn session(
        &mut self,
        reader: WsReader,
        writer: LinkWriter,
        plan: Arc<SlotPlan>,
        plan_updates: &mut Option<watch::Receiver<Arc<SlotPlan>>>,
    ) -> SessionEnd {
        let now = Instant::now();
        let primary = Seat {
            link: Link::new(writer, now, self.ping_interval),
            reader,
            plan,
        };
        // The replacement's open runs here, beside the reads, so the primary is never left unread.
        let open = pin!(open_replacement(None));
        let mut rotation = Rotation::new(
            open,
            open_replacement,
            primary,
            now,
            &self.timings,
            self.max_frame_bytes,
        );
        // One reference for the session, so a frame's decode can hold its scratch while the
        // slot's own methods run (the pool is shared, never the slot's to lend).
        let decode_pool = Arc::clone(&self.decode_pool);
        let mut tick = tokio::time::interval(self.housekeeping_period());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cancel = self.cancel.clone();
        let mut coalescer = Coalescer::new(self.timings.batch_wait);
        loop {
            let flow = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    rotation.close_all(self.timings.shutdown_deadline).await;
                    return SessionEnd::Shutdown;
                }
                event = rotation.next_event(&mut coalescer, true) => self.on_event(&decode_pool, &mut rotation, event),
                _ = tick.tick() => self.housekeeping(&mut rotation),
                next = next_plan(plan_updates.as_mut()) => {
                    self.opener = self.opener.with_plan(&next);
                    if next.symbol_ids.is_empty() {
                        rotation.close_all(self.timings.shutdown_deadline).await;
                        return SessionEnd::Emptied;
                    }
                    // The replacement subscribes to the new plan and takes over when it
                    // delivers, as in any rotation: no gap for the symbols both plans carry.
                    rotation.rotate_now();
                    ControlFlow::Continue(())
                }
            };
            if let ControlFlow::Break(end) = flow {
                return end;
            }
            // The frames one wake-up read (a batch, see `coalesce`) are handled here rather than
            // through the select! one by one, which would set up and tear down the cancellation
            // waiter and poll the tick per frame. Bounded, so cancellation and the tick are
            // still looked at every `DRAIN_EVENTS` events.
            // Not waiting in between (no batch wait), so the records are flushed (the shards
            // woken) once per burst, before the thread sleeps or waits.
            for _ in 0..DRAIN_EVENTS {
                let Some(event) = ready_now(rotation.next_event(&mut coalescer, false)).await
                else {
                    break;
                };
                if let ControlFlow::Break(end) = self.on_event(&decode_pool, &mut rotation, event) {
                    return end;
                }
            }
            self.sink.flush();
        }
    }

    /// One event of the seats or of the replacement's open.
    fn on_event(
        &mut self,
        decode_pool: &DecodePool,
        rotation: &mut Rotation<'_, impl ReplacementOpen>,
        event: Event,
    ) -> ControlFlow<SessionEnd> {
        let flow = match event {
            Event::Read { seat, read } => self.on_read(decode_pool, rotation, seat, read),
            Event::WriteFailed { seat, error } => {
                self.write_failed(&error);
                self.drop_seat(rotation, seat)
            }
            Event::Opened(result) => {
                self.on_replacement_opened(rotation, result);
                ControlFlow::Continue(())
            }
        };
        self.adopt_primary_plan(rotation);
        flow
    }

    /// After a promotion: the new primary's plan is the slot's. A replacement that was opened
    /// before the latest plan change is promoted with an older plan: rotate again at once.
    fn adopt_primary_plan(&mut self, rotation: &mut Rotation<'_, impl ReplacementOpen>) {
        let Some(primary_plan) = rotation.primary_plan() else {
            return;
        };
        if Arc::ptr_eq(primary_plan, &self.plan) {
            return;
        }
        let primary_plan = Arc::clone(primary_plan);
        self.adopt(primary_plan);
        if !Arc::ptr_eq(self.opener.plan(), &self.plan) {
            rotation.rotate_now();
        }
    }

    /// Makes `plan` the slot's: symbols it no longer carries get their retirement gap.
    fn adopt(&mut self, plan: Arc<SlotPlan>) {
        if Arc::ptr_eq(&plan, &self.plan) {
            return;
        }
        let retired = self
            .held_gaps
            .replan(Arc::clone(&plan), &self.counters, &mut self.sink);
        if retired > 0 {
            self.counters
                .symbols_retired
                .fetch_add(retired as u64, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::info!(
            venue = %self.venue(),
            slot = self.plan.connection_id,
            symbols = plan.symbol_ids.len(),
            retired,
            "slot plan changed"
        );
        if self
            .counters
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.counters.subscriptions.store(
                plan.topics.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.plan = plan;
    }

    /// The periodic tick: held gaps, both links' keep-alive and watchdogs, a due rotation.
    fn housekeeping(
        &mut self,
        rotation: &mut Rotation<'_, impl ReplacementOpen>,
    ) -> ControlFlow<SessionEnd> {
        self.deliver_held_gaps();
        let now = Instant::now();
        for seat in [0usize, 1] {
            let is_primary = seat == rotation.primary();
            let alive = match rotation.seat_mut(seat) {
                Some(occupied) => self.check_link(&mut occupied.link, is_primary, now),
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
        rotation: &mut Rotation<'_, impl ReplacementOpen>,
        result: Result<Opened, ConnectError>,
    ) {
        match result {
            Ok(opened) => {
                if let Some(ping_interval) = opened.ping_interval {
                    self.ping_interval = ping_interval;
                }
                let link = Link::new(opened.writer, Instant::now(), self.ping_interval);
                rotation.seat_replacement(Seat {
                    link,
                    reader: opened.reader,
                    plan: opened.plan,
                });
            }
            // Shutdown: the cancel branch ends the session next.
            Err(ConnectError::Cancelled) => {}
            Err(error) => {
                if let ConnectError::Write(write_error) = &error
                    && write_error.is_stall()
                {
                    bump(&self.counters.write_timeouts);
                }
                tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, %error, "rotation connect failed");
                rotation.open_failed();
            }
        }
    }

    /// A queued write could not be done: counted (a peer that stops reading like a missing pong)
    /// and logged; the caller drops the link.
    fn write_failed(&self, error: &WriteError) {
        if error.is_stall() {
            bump(&self.counters.write_timeouts);
        }
        tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, %error, "write failed");
    }

    /// True when `written` queued; otherwise counts and logs why not (the link is then dead).
    fn queued(&self, written: Result<(), WriteError>) -> bool {
        match written {
            Ok(()) => true,
            Err(error) => {
                self.write_failed(&error);
                false
            }
        }
    }

    /// One frame, or a failed read, from `seat`.
    fn on_read(
        &mut self,
        decode_pool: &DecodePool,
        rotation: &mut Rotation<'_, impl ReplacementOpen>,
        seat: usize,
        read: Result<Incoming, ReadError>,
    ) -> ControlFlow<SessionEnd> {
        let incoming = match read {
            Ok(incoming) => incoming,
            Err(error) => {
                match error {
                    ReadError::Closed | ReadError::Io(_) => bump(&self.counters.server_closes),
                    ReadError::Protocol(_) => bump(&self.counters.protocol_errors),
                }
                tracing::debug!(venue = %self.venue(), slot = self.plan.connection_id, %error, "read failed");
                return self.drop_seat(rotation, seat);
            }
        };
        let is_primary = seat == rotation.primary();
        let Some(occupied) = rotation.seat_mut(seat) else {
            return ControlFlow::Continue(());
        };
        let action = self.handle_incoming(decode_pool, occupied, is_primary, incoming);
        let alive = match action {
            FrameAction::Continue => true,
            FrameAction::ReplyText => self.queued(occupied.link.write_text(&self.reply)),
            FrameAction::ReplyPong(payload) => self.queued(occupied.link.pong(payload.as_slice())),
            FrameAction::Data => {
                if !is_primary {
                    // The replacement delivers: retire the old connection, no gap.
                    rotation.promote(seat);
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
        rotation: &mut Rotation<'_, impl ReplacementOpen>,
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

    /// Keep-alive and watchdogs for one link; queues its ping when due. False = dead.
    fn check_link(&mut self, link: &mut Link, is_primary: bool, now: Instant) -> bool {
        let watchdogs = Watchdogs {
            max_silence: self.timings.max_silence,
            write_timeout: self.timings.write_timeout,
            stale_data: (is_primary && self.plan.stale_watchdog).then_some(self.timings.stale_data),
            first_data: (!is_primary || self.hole_open)
                .then_some(self.timings.rotation_first_data_timeout),
        };
        if let Some(fault) = link.fault(now, &watchdogs) {
            match fault {
                LinkFault::WriteStalled => {
                    bump(&self.counters.write_timeouts);
                    tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "write stalled: the venue stopped reading");
                }
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
        let queued = link.ping(ping, now, self.timings.pong_timeout, self.ping_interval);
        self.queued(queued)
    }

    /// Decodes one frame into the pipeline and says what the connection must do next.
    fn handle_incoming(
        &mut self,
        decode_pool: &DecodePool,
        seat: &mut Seat,
        is_primary: bool,
        incoming: Incoming,
    ) -> FrameAction {
        let Seat { link, reader, .. } = seat;
        bump(&self.counters.frames);
        // The time of the read that brought the frame's last bytes (one clock read per read).
        let ReadStamp {
            monotonic: now,
            wall_ns: received_ns,
        } = reader.read_at();
        link.frame_arrived(now);
        let encoding = match incoming {
            Incoming::Ping(payload) => return FrameAction::ReplyPong(payload),
            Incoming::Pong => {
                link.pong_arrived();
                return FrameAction::Continue;
            }
            Incoming::Close => {
                bump(&self.counters.server_closes);
                return FrameAction::Dead;
            }
            Incoming::Oversized { announced_bytes } => {
                // Skipped by the reader, which goes on with the next message. Only the primary
                // counts: a replacement also skips what its smaller limit refuses, and whatever
                // it skips the primary reads.
                if is_primary {
                    bump(&self.counters.oversized_frames);
                    let quiet = self
                        .oversized_logged_at
                        .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
                    if !quiet {
                        self.oversized_logged_at = Some(now);
                        let skipped = SlotCounters::get(&self.counters.oversized_frames);
                        tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, announced_bytes, skipped, "message over engine.max_frame_bytes skipped (at most one line per second)");
                    }
                }
                return FrameAction::Continue;
            }
            Incoming::Message { binary: false } => FrameEncoding::Text,
            Incoming::Message { binary: true } => FrameEncoding::Binary,
        };
        // Held for the decode and the hand-off to the ring: no await until it is released.
        let mut scratch = decode_pool.lock(self.plan.connection_id as usize);
        match scratch.decode(self.plan.venue, reader.message_mut(), encoding, received_ns) {
            Ok(FrameOutcome::Records(count)) => {
                let mut quotes = 0u64;
                // One exchange-to-receive sample per frame: its first timestamped record.
                let mut exchange_latency_ns = None;
                // A replacement that delivers during a hole is promoted right after this frame.
                if count > 0 && self.hole_open {
                    self.close_hole();
                }
                self.deliver_held_gaps();
                for event in scratch.batch_mut().drain() {
                    quotes += matches!(event, FeedEvent::Quote(_)) as u64;
                    if exchange_latency_ns.is_none() {
                        exchange_latency_ns = ExchangeLatency::of(&event);
                    }
                    if !self.held_gaps.blocks(event.symbol_id()) && self.sink.push(event) {
                        continue;
                    }
                    // A withdrawal is a gap: held like the slot's own (it ends the venue's
                    // cycles), delivered before the symbol's next record, never dropped.
                    if let FeedEvent::Gap(gap) = event
                        && gap.kind == GAP_QUOTE_WITHDRAWN
                        && self.held_gaps.hold_data_gap(gap)
                    {
                        continue;
                    }
                    // Held back by its symbol's gap, a record is dropped like a full ring's.
                    bump(&self.counters.ring_drops);
                }
                // No flush (shard wake-up) per frame: the session flushes once the frames one
                // wake-up read are handled.
                if count == 0 {
                    return FrameAction::Continue;
                }
                self.counters
                    .records
                    .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
                self.counters
                    .quotes
                    .fetch_add(quotes, std::sync::atomic::Ordering::Relaxed);
                self.counters
                    .last_data_ns
                    .store(received_ns, std::sync::atomic::Ordering::Relaxed);
                if let Some(latency_ns) = exchange_latency_ns {
                    self.counters.exchange_latency.record(latency_ns);
                }
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
