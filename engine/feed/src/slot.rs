//! One connection slot's task: connect, subscribe, read and decode frames into the pipeline,
//! keep-alive both ways, watchdogs, rotation without a gap, reconnect with backoff.
//!
//! The slot owns everything it uses for its whole life (decoder, record batch, scratch strings,
//! producer, counters, the opener's scratch); a reconnect reuses all of it, so nothing
//! accumulates. Reads go through a pinned future that owns the read half, which keeps them
//! cancel-safe inside `select!`; a rotation's open is another pinned future in the same
//! `select!`, so the primary keeps being read while its replacement connects.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::EventSink;
use crate::config::FeedsConfig;
use crate::counters::{SlotCounters, bump};
use crate::planner::{SlotEndpoint, SlotPlan};
use crate::protocol::{self, ClientPing};
use crate::ws::{self, ConnectError, WsReader, WsWriter};
use tickflow_core::record::{FeedEvent, now_ns};
use tickflow_core::records::{GAP_DISCONNECT, GAP_RECONNECT, GapEvent};
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

/// Gap events of one owned symbol that the ring refused, delivered in this order (disconnect,
/// then reconnect) before any data record of that symbol. At most one of each kind: a new
/// disconnect while a reconnect is held back nets to "disconnected" (the shard treats both kinds
/// as "the venue's last quote predates the hole"; only a disconnect also ends open cycles).
#[derive(Clone, Copy, Debug, Default)]
struct HeldGaps {
    disconnect: Option<GapEvent>,
    reconnect: Option<GapEvent>,
}

impl HeldGaps {
    fn is_empty(&self) -> bool {
        self.disconnect.is_none() && self.reconnect.is_none()
    }

    fn hold(&mut self, gap: GapEvent) {
        if gap.kind == GAP_DISCONNECT {
            self.reconnect = None;
            // The earliest disconnect stands: the hole began then.
            if self.disconnect.is_none() {
                self.disconnect = Some(gap);
            }
        } else {
            self.reconnect = Some(gap);
        }
    }

    /// Offers the held gaps in order; true when none is left.
    fn deliver(&mut self, sink: &mut impl EventSink) -> bool {
        if let Some(gap) = self.disconnect {
            if !sink.push(FeedEvent::Gap(gap)) {
                return false;
            }
            self.disconnect = None;
        }
        if let Some(gap) = self.reconnect {
            if !sink.push(FeedEvent::Gap(gap)) {
                return false;
            }
            self.reconnect = None;
        }
        true
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionEnd {
    Shutdown,
    /// The connection is gone or declared dead; reconnect.
    Lost,
}

/// One open connection's keep-alive state.
struct Link {
    writer: WsWriter,
    opened_at: Instant,
    last_frame_at: Instant,
    last_data_at: Instant,
    next_ping_at: Instant,
    ping_deadline: Option<Instant>,
    has_data: bool,
}

impl Link {
    fn new(writer: WsWriter, now: Instant, ping_interval: Duration) -> Link {
        Link {
            writer,
            opened_at: now,
            last_frame_at: now,
            last_data_at: now,
            next_ping_at: now + ping_interval,
            ping_deadline: None,
            has_data: false,
        }
    }
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

type ReadResult = Result<(OpCode, bool, BytesMut), WebSocketError>;

/// Reads one frame; owns the reader so the future can live across `select!` iterations and be
/// replaced with `Pin::set` (one type for every call, so no boxing per frame). `None` never
/// completes: an empty rotation seat.
async fn read_next(reader: Option<WsReader>) -> (WsReader, ReadResult) {
    let Some(mut reader) = reader else {
        return std::future::pending().await;
    };
    // Pings and closes are answered by the slot (auto-pong/close are off), so there is never
    // anything to send from inside the read.
    let mut no_obligated_send =
        |_frame: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
    let result = match reader.read_frame(&mut no_obligated_send).await {
        Ok(frame) => {
            let fin = frame.fin;
            let opcode = frame.opcode;
            let payload = match frame.payload {
                Payload::Bytes(bytes) => bytes,
                other => BytesMut::from(&other[..]),
            };
            Ok((opcode, fin, payload))
        }
        Err(error) => Err(error),
    };
    (reader, result)
}

/// What opening a connection needs, all shared or cloned, so a rotation's open runs as its own
/// future in the session's `select!` while the slot keeps reading the primary.
#[derive(Clone)]
struct Opener {
    plan: Arc<SlotPlan>,
    counters: Arc<SlotCounters>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    max_frame_bytes: usize,
    cancel: CancellationToken,
    /// Reused between opens; locked only between awaits (one open runs at a time).
    scratch: Arc<std::sync::Mutex<OpenScratch>>,
}

/// An opener's reusable state.
struct OpenScratch {
    /// KuCoin only: decodes the `welcome` (the slot's own decoder serves the primary meanwhile).
    welcome: Option<(Box<dyn Decoder>, RecordBatch)>,
    requests: Vec<String>,
    request_id: u64,
}

/// An open, subscribed connection.
struct Opened {
    reader: WsReader,
    writer: WsWriter,
    /// KuCoin's ping interval from its bullet, unless one is configured.
    ping_interval: Option<Duration>,
}

impl Opener {
    fn scratch(&self) -> std::sync::MutexGuard<'_, OpenScratch> {
        // Poisoned only if a decoder panicked mid-welcome; the scratch is still usable.
        self.scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a connection: (KuCoin bullet), upgrade, (KuCoin welcome), subscribe.
    async fn open(self) -> Result<Opened, ConnectError> {
        let timeout = self.connect_timeout;
        let connect = async {
            let mut ping_interval = None;
            let url = match &self.plan.endpoint {
                SlotEndpoint::Url(url) => url.clone(),
                SlotEndpoint::KucoinBullet(bullet_url) => {
                    let connect_id: u64 = rand::rng().random();
                    let bullet =
                        ws::kucoin_bullet(bullet_url, connect_id, timeout, &self.tls).await?;
                    if !self.plan.ping_interval_configured {
                        ping_interval = Some(Duration::from_millis(bullet.ping_interval_ms));
                    }
                    bullet.url
                }
            };
            let (mut reader, mut writer) =
                ws::connect(&url, timeout, self.max_frame_bytes, &self.tls).await?;
            if self.plan.venue == Venue::Kucoin {
                tokio::time::timeout(timeout, self.wait_welcome(&mut reader))
                    .await
                    .map_err(|_| ConnectError::Timeout)??;
            }
            self.subscribe(&mut writer).await?;
            Ok::<_, ConnectError>(Opened {
                reader,
                writer,
                ping_interval,
            })
        };
        tokio::select! {
            result = connect => result,
            _ = self.cancel.cancelled() => Err(ConnectError::Cancelled),
        }
    }

    /// Reads frames until KuCoin's `welcome`; the connection is unusable before it.
    async fn wait_welcome(&self, reader: &mut WsReader) -> Result<(), ConnectError> {
        let mut no_obligated_send =
            |_frame: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        loop {
            let frame = reader.read_frame(&mut no_obligated_send).await?;
            bump(&self.counters.frames);
            let encoding = match frame.opcode {
                OpCode::Text => FrameEncoding::Text,
                OpCode::Binary => FrameEncoding::Binary,
                OpCode::Close => {
                    return Err(ConnectError::WebSocket(WebSocketError::ConnectionClosed));
                }
                _ => continue,
            };
            let mut payload = frame.payload;
            let mut scratch = self.scratch();
            let Some((decoder, batch)) = scratch.welcome.as_mut() else {
                // Only a KuCoin slot waits for a welcome, and it has the decoder for it.
                return Ok(());
            };
            batch.clear();
            let outcome = decoder.decode(payload.to_mut(), encoding, now_ns(), batch);
            batch.clear();
            match outcome {
                Ok(FrameOutcome::Control(ControlEvent::Welcome)) => return Ok(()),
                Ok(_) => {}
                Err(error) => bump(&self.counters.decode_errors[error.kind.index()]),
            }
        }
    }

    /// Sends the slot's subscription set, paced by the venue's request rate.
    async fn subscribe(&self, writer: &mut WsWriter) -> Result<(), ConnectError> {
        let unix_s = now_ns() / 1_000_000_000;
        // Taken out while writing (no lock across an await), put back for the next open.
        let mut requests = {
            let mut scratch = self.scratch();
            let mut requests = std::mem::take(&mut scratch.requests);
            requests.clear();
            protocol::subscribe_requests(
                self.plan.venue,
                &self.plan.topics,
                unix_s,
                &mut scratch.request_id,
                &mut requests,
            );
            requests
        };
        let interval = Duration::from_millis(self.plan.rules.min_request_interval_ms);
        for (index, request) in requests.iter().enumerate() {
            if index > 0 {
                // Rate limiting, not synchronization: venues cut clients that send too fast.
                tokio::time::sleep(interval).await;
            }
            write_text(writer, request).await?;
        }
        requests.clear();
        self.scratch().requests = requests;
        Ok(())
    }
}

/// A rotation's open; `None` never completes (no open under way).
async fn open_replacement(opener: Option<Opener>) -> Result<Opened, ConnectError> {
    match opener {
        Some(opener) => opener.open().await,
        None => std::future::pending().await,
    }
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
    /// Gaps the ring refused, by owned symbol (same order as `plan.symbol_ids`); sized once.
    held_gaps: Vec<HeldGaps>,
    /// Symbols with held gaps (0 on the fast path: nothing to look up per record).
    held_gap_symbols: usize,
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
        let limits = settings.limits;
        let held_gaps = vec![HeldGaps::default(); plan.symbol_ids.len()];
        let opener = Opener {
            plan: Arc::clone(&plan),
            counters: Arc::clone(&counters),
            tls: settings.tls.clone(),
            connect_timeout: settings.timings.connect_timeout,
            max_frame_bytes: limits.max_frame_bytes,
            cancel: cancel.clone(),
            scratch: Arc::new(std::sync::Mutex::new(OpenScratch {
                welcome: welcome_decoder.map(|decoder| {
                    (
                        decoder,
                        RecordBatch::with_capacity(limits.max_records_per_frame),
                    )
                }),
                requests: Vec::new(),
                request_id: 0,
            })),
        };
        Slot {
            plan,
            counters,
            timings: settings.timings,
            decoder,
            sink,
            batch: RecordBatch::with_capacity(limits.max_records_per_frame),
            reply: String::with_capacity(128),
            opener,
            ping_nonce: 0,
            ping_interval,
            resume_started: None,
            hole_open: false,
            held_gaps,
            held_gap_symbols: 0,
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
        let mut dropped = 0u64;
        for held in &mut self.held_gaps {
            dropped +=
                held.disconnect.take().is_some() as u64 + held.reconnect.take().is_some() as u64;
        }
        self.held_gap_symbols = 0;
        self.counters
            .gap_drops
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, dropped, "gap events undeliverable at shutdown");
    }

    /// Offers every held gap again; true when none is left.
    fn deliver_held_gaps(&mut self) -> bool {
        if self.held_gap_symbols == 0 {
            return true;
        }
        let mut left = 0usize;
        for held in &mut self.held_gaps {
            if !held.is_empty() && !held.deliver(&mut self.sink) {
                left += 1;
            }
        }
        self.held_gap_symbols = left;
        self.sink.flush();
        left == 0
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

    /// One gap of `kind` per owned symbol. A gap the ring refuses is held and retried before any
    /// data record of its symbol, so a full ring delays it but never loses it.
    fn push_gaps(&mut self, kind: u8) {
        self.deliver_held_gaps();
        let ts_ns = now_ns();
        for (symbol_id, held) in self.plan.symbol_ids.iter().zip(&mut self.held_gaps) {
            let gap = GapEvent {
                ts_ns,
                connection_id: self.plan.connection_id,
                symbol_id: *symbol_id,
                venue_id: self.plan.venue.id(),
                kind,
                reserved: [0; 5],
            };
            bump(&self.counters.gaps);
            // Behind a held gap of the same symbol: keep the order.
            if !held.is_empty() || !self.sink.push(FeedEvent::Gap(gap)) {
                held.hold(gap);
            }
        }
        self.held_gap_symbols = self
            .held_gaps
            .iter()
            .filter(|held| !held.is_empty())
            .count();
        self.sink.flush();
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
    async fn session(&mut self, reader: WsReader, writer: WsWriter) -> SessionEnd {
        let now = Instant::now();
        let mut links: [Option<Link>; 2] = [Some(Link::new(writer, now, self.ping_interval)), None];
        let mut primary = 0usize;
        let mut read_0 = std::pin::pin!(read_next(Some(reader)));
        let mut read_1 = std::pin::pin!(read_next(None));
        // The replacement's open runs here, beside the reads, so the primary is never left unread.
        let mut replacement_open = std::pin::pin!(open_replacement(None));
        let mut opening_replacement = false;
        let mut next_rotation_at = now + self.timings.rotate_after;
        let mut tick = tokio::time::interval(self.housekeeping_period());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cancel = self.cancel.clone();

        macro_rules! seat_reader {
            ($seat:expr, $value:expr) => {
                if $seat == 0 {
                    read_0.as_mut().set(read_next($value));
                } else {
                    read_1.as_mut().set(read_next($value));
                }
            };
        }
        // Drops a dead seat; when it was the primary, promotes the replacement or ends.
        macro_rules! drop_seat {
            ($seat:expr) => {{
                let seat: usize = $seat;
                links[seat] = None;
                seat_reader!(seat, None);
                if seat == primary {
                    if let Some(replacement) = links[1 - seat].as_ref() {
                        primary = 1 - seat;
                        next_rotation_at = Instant::now() + self.timings.rotate_after;
                        if replacement.has_data {
                            bump(&self.counters.rotations);
                        } else if !self.hole_open {
                            // The replacement has not proven itself: this is a hole, not a
                            // rotation. Its reconnect gap (and the reconnect) come with its first
                            // data; its first-data timeout still applies.
                            self.push_gaps(GAP_DISCONNECT);
                            self.hole_open = true;
                            self.resume_started = Some(Instant::now());
                        }
                    } else {
                        return SessionEnd::Lost;
                    }
                } else {
                    next_rotation_at = Instant::now() + self.timings.rotation_first_data_timeout;
                }
            }};
        }

        loop {
            let (seat, reader, result) = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.close_links(&mut links).await;
                    return SessionEnd::Shutdown;
                }
                (reader, result) = &mut read_0 => (0usize, reader, result),
                (reader, result) = &mut read_1 => (1usize, reader, result),
                result = &mut replacement_open => {
                    replacement_open.as_mut().set(open_replacement(None));
                    opening_replacement = false;
                    // No seat changes while the other seat is empty, so it is still free.
                    let replacement = 1 - primary;
                    match result {
                        Ok(opened) => {
                            if let Some(ping_interval) = opened.ping_interval {
                                self.ping_interval = ping_interval;
                            }
                            links[replacement] = Some(Link::new(opened.writer, Instant::now(), self.ping_interval));
                            seat_reader!(replacement, Some(opened.reader));
                        }
                        // Shutdown: the cancel branch ends the session next.
                        Err(ConnectError::Cancelled) => {}
                        Err(error) => {
                            tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, %error, "rotation connect failed");
                            next_rotation_at = Instant::now() + self.timings.rotation_first_data_timeout;
                        }
                    }
                    continue;
                }
                _ = tick.tick() => {
                    self.deliver_held_gaps();
                    let now = Instant::now();
                    for seat in [0usize, 1] {
                        let alive = match links[seat].as_mut() {
                            Some(link) => self.check_link(link, seat == primary, now).await,
                            None => true,
                        };
                        if !alive {
                            drop_seat!(seat);
                        }
                    }
                    let replacement = 1 - primary;
                    if links[replacement].is_none() && !opening_replacement && now >= next_rotation_at {
                        replacement_open.as_mut().set(open_replacement(Some(self.opener.clone())));
                        opening_replacement = true;
                    }
                    continue;
                }
            };
            let (opcode, fin, payload) = match result {
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
                    drop(reader);
                    drop_seat!(seat);
                    continue;
                }
            };
            seat_reader!(seat, Some(reader));
            let Some(link) = links[seat].as_mut() else {
                continue;
            };
            let action = self.handle_frame(link, seat == primary, opcode, fin, payload);
            let Some(link) = links[seat].as_mut() else {
                continue;
            };
            let alive = match action {
                FrameAction::Continue => true,
                FrameAction::ReplyText => write_text(&mut link.writer, &self.reply).await.is_ok(),
                FrameAction::ReplyPong(payload) => link
                    .writer
                    .write_frame(Frame::pong(Payload::Bytes(payload)))
                    .await
                    .is_ok(),
                FrameAction::Data => {
                    if seat != primary {
                        // The replacement delivers: retire the old connection, no gap.
                        if let Some(mut old) = links[primary].take() {
                            close_link(&mut old, self.timings.shutdown_deadline).await;
                        }
                        seat_reader!(primary, None);
                        primary = seat;
                        next_rotation_at = Instant::now() + self.timings.rotate_after;
                        bump(&self.counters.rotations);
                    }
                    true
                }
                FrameAction::Rotate => {
                    next_rotation_at = Instant::now();
                    true
                }
                FrameAction::Dead => false,
            };
            if !alive {
                drop_seat!(seat);
            }
        }
    }

    /// Keep-alive and watchdogs for one link; sends its ping when due. False = dead.
    async fn check_link(&mut self, link: &mut Link, is_primary: bool, now: Instant) -> bool {
        if link.ping_deadline.is_some_and(|deadline| now >= deadline) {
            bump(&self.counters.pongs_missed);
            tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "pong missed");
            return false;
        }
        if now.duration_since(link.last_frame_at) >= self.timings.max_silence {
            bump(&self.counters.silences);
            tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "connection silent");
            return false;
        }
        if is_primary
            && self.plan.stale_watchdog
            && now.duration_since(link.last_data_at) >= self.timings.stale_data
        {
            bump(&self.counters.stale_data);
            tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "data stale");
            return false;
        }
        if (!is_primary || self.hole_open)
            && !link.has_data
            && now.duration_since(link.opened_at) >= self.timings.rotation_first_data_timeout
        {
            tracing::warn!(venue = %self.venue(), slot = self.plan.connection_id, "replacement sent no data in time");
            return false;
        }
        if link.ping_deadline.is_none() && now >= link.next_ping_at {
            self.ping_nonce += 1;
            let sent = match self.plan.rules.client_ping {
                ClientPing::None => return true,
                ClientPing::WsFrame => link
                    .writer
                    .write_frame(Frame::new(
                        true,
                        OpCode::Ping,
                        None,
                        Payload::Borrowed(b"tickflow"),
                    ))
                    .await
                    .is_ok(),
                ClientPing::Text => {
                    protocol::write_client_ping(self.plan.venue, self.ping_nonce, &mut self.reply);
                    write_text(&mut link.writer, &self.reply).await.is_ok()
                }
            };
            if !sent {
                return false;
            }
            link.ping_deadline = Some(now + self.timings.pong_timeout);
            link.next_ping_at = now + self.ping_interval;
        }
        true
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
        link.last_frame_at = now;
        let encoding = match opcode {
            OpCode::Ping => return FrameAction::ReplyPong(payload),
            OpCode::Pong => {
                link.ping_deadline = None;
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
                    // A record never overtakes its symbol's held gap (the shard would take the
                    // venue's quote as live across the hole): it is dropped like a full ring's.
                    let behind_gap = self.held_gap_symbols > 0
                        && self
                            .plan
                            .symbol_ids
                            .iter()
                            .position(|id| *id == event.symbol_id())
                            .is_some_and(|index| !self.held_gaps[index].is_empty());
                    if behind_gap || !self.sink.push(event) {
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
                link.last_data_at = now;
                link.has_data = true;
                if is_primary && let Some(started) = self.resume_started.take() {
                    self.counters
                        .record_resume_ms(now.duration_since(started).as_millis() as u64);
                }
                FrameAction::Data
            }
            Ok(FrameOutcome::Control(event)) => match event {
                ControlEvent::SubscribeAck | ControlEvent::Welcome => FrameAction::Continue,
                ControlEvent::Pong => {
                    link.ping_deadline = None;
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
                    link.last_data_at = now;
                    link.has_data = true;
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

    async fn close_links(&mut self, links: &mut [Option<Link>; 2]) {
        for link in links.iter_mut().flatten() {
            close_link(link, self.timings.shutdown_deadline).await;
        }
    }
}

/// Sends a close frame, bounded by `deadline`; the socket is dropped by the caller either way.
async fn close_link(link: &mut Link, deadline: Duration) {
    let _ = tokio::time::timeout(deadline, async {
        let _ = link.writer.write_frame(Frame::close(1000, b"")).await;
        let _ = link.writer.flush().await;
    })
    .await;
}

async fn write_text(writer: &mut WsWriter, text: &str) -> Result<(), WebSocketError> {
    writer
        .write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
        .await?;
    writer.flush().await
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
