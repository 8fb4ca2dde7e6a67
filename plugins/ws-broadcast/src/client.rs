//! One client: its bounded queue of shared frames (filled by the broadcast task, emptied by the
//! client's writer), the writer (vectored writes with a deadline, pings, pong timeout, close) and
//! the reader (client messages: size, rate, JSON, subscribe / unsubscribe).
//!
//! Nothing here waits on another client: the broadcast task only locks this client's queue for
//! a push; a full queue skips conflated frames or counts lagged records, never waits. Skipping
//! is O(1): a channel's queued conflated frame is overwritten in place (found through a map
//! channel → sequence number), and older conflated frames are emptied in place, oldest first,
//! never removed from the middle of the queue.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{OpCode, WebSocketRead};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::counters::Counters;
use crate::hub::HubCommand;
use crate::protocol::{self, ChannelSpec, ClientMessage, ErrorCode};

/// Why a client was closed (each counted once, by whoever closed it first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// Lost more than `client_lag_max_frames`, or overflowed its queue with control frames.
    Lagging,
    WriteTimeout,
    PongTimeout,
    Protocol,
    ByClient,
    Shutdown,
}

impl CloseCause {
    fn counter(self, counters: &Counters) -> &AtomicU64 {
        match self {
            CloseCause::Lagging => &counters.closed_lagging,
            CloseCause::WriteTimeout => &counters.closed_write_timeout,
            CloseCause::PongTimeout => &counters.closed_pong_timeout,
            CloseCause::Protocol => &counters.closed_protocol,
            CloseCause::ByClient => &counters.closed_by_client,
            CloseCause::Shutdown => &counters.closed_shutdown,
        }
    }
}

/// A close to perform: the frame to send (if the socket can still take one).
#[derive(Clone, Debug)]
struct CloseRequest {
    frame: Option<Bytes>,
}

/// The per-client limits of the config.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    pub queue_bytes_max: usize,
    pub queue_frames_max: usize,
    pub lag_max_frames: u64,
    pub write_timeout: Duration,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub message_bytes_max: usize,
    pub messages_per_s: f64,
    pub subscriptions_max: usize,
}

struct Queued {
    /// `None` once skipped (emptied in place); the writer passes over it.
    frame: Option<Bytes>,
    /// The channel of a shared conflated frame (skippable), or `None`.
    conflated_channel: Option<u32>,
}

#[derive(Default)]
struct QueueState {
    /// Live and emptied slots; slot `i` has sequence number `head_seq + i`. Emptied slots
    /// are popped from the front and all dropped by `take`, so the length stays below
    /// `queue_frames_max + lag_max_frames + 2` (past that many losses the client is closed).
    frames: VecDeque<Queued>,
    /// Sequence number of `frames[0]`.
    head_seq: u64,
    /// Slots holding a frame (what `queue_frames_max` bounds).
    live: usize,
    /// No live conflated frame sits before this sequence number (where the oldest-first skip
    /// resumes).
    scan_seq: u64,
    /// Channel → sequence number of its newest queued conflated frame. One entry per live
    /// conflated slot at most, so bounded by `queue_frames_max`.
    conflated_seq: HashMap<u32, u64>,
    bytes: usize,
    /// Frames lost (skipped or lagged) since the writer last took the queue.
    lost_since_taken: u64,
    /// Lagged records not yet told to the client.
    lagged_untold: u64,
    close: Option<CloseRequest>,
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Conflated: older frames (or this one) skipped; events: lost, `{"lagged":n}` follows.
    Lost,
    /// The client is closing (now or before): stop sending to it.
    Closing,
}

/// The part of a client shared by the broadcast task, its reader and its writer.
pub struct ClientShared {
    pub id: u64,
    limits: ClientLimits,
    counters: Arc<Counters>,
    state: Mutex<QueueState>,
    /// Frames were queued or a close requested.
    wake: Notify,
    /// A close was requested (wakes a writer blocked in a write).
    closing: Notify,
    /// Kinds this client subscribed with `*` ([`protocol::ChannelKind::bit`]); written by the
    /// broadcast task only, read by it to skip a duplicate delivery.
    pub wildcard_mask: AtomicU8,
    /// Milliseconds (since the runtime's start instant) of the last pong.
    last_pong_ms: AtomicU64,
}

impl std::fmt::Debug for ClientShared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClientShared")
            .field("id", &self.id)
            .finish()
    }
}

impl ClientShared {
    pub fn new(id: u64, limits: ClientLimits, counters: Arc<Counters>) -> ClientShared {
        ClientShared {
            id,
            limits,
            counters,
            state: Mutex::new(QueueState::default()),
            wake: Notify::new(),
            closing: Notify::new(),
            wildcard_mask: AtomicU8::new(0),
            last_pong_ms: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A poisoned lock only means a panic elsewhere; the queue itself is whole.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Requests a close; the first request wins and is counted. `frame`: the close frame to
    /// send if the socket takes it.
    pub fn close(&self, cause: CloseCause, frame: Option<Bytes>) -> bool {
        let mut state = self.lock();
        if state.close.is_some() {
            return false;
        }
        state.close = Some(CloseRequest { frame });
        drop(state);
        Counters::add(cause.counter(&self.counters), 1);
        self.wake.notify_one();
        self.closing.notify_one();
        true
    }

    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Queues a shared frame of a channel (the broadcast task's fan-out). Never waits.
    pub fn push_shared(
        &self,
        frame: &Bytes,
        channel: u32,
        conflated: bool,
        records: u64,
    ) -> Pushed {
        let mut state = self.lock();
        if state.close.is_some() {
            return Pushed::Closing;
        }
        let len = frame.len();
        let limits = self.limits;
        let fits = |state: &QueueState| {
            state.bytes + len <= limits.queue_bytes_max && state.live < limits.queue_frames_max
        };
        if !fits(&state) {
            let mut skipped = 0u64;
            if conflated {
                // Skip to the newest: overwrite this channel's queued frame in place if the
                // bytes allow, else empty it, then the oldest conflated frames of any channel.
                if let Some(seq) = state.conflated_seq.get(&channel).copied() {
                    let old_len = state.slot_len(seq);
                    if state.bytes - old_len + len <= limits.queue_bytes_max {
                        state.replace_in_place(seq, frame.clone());
                        state.lost_since_taken += 1;
                        Counters::add(&self.counters.skipped_frames, 1);
                        return self.after_skip(state, limits);
                    }
                    state.empty_slot(seq);
                    skipped += 1;
                }
                if !fits(&state) {
                    skipped += state.empty_oldest_conflated(&fits);
                }
                state.pop_empty_front();
            }
            Counters::add(&self.counters.skipped_frames, skipped);
            state.lost_since_taken += skipped;
            if !fits(&state) {
                state.lost_since_taken += 1;
                if conflated {
                    Counters::add(&self.counters.skipped_frames, 1);
                } else {
                    state.lagged_untold += records;
                    Counters::add(&self.counters.lagged_records, records);
                }
                let lost = state.lost_since_taken;
                drop(state);
                if lost > limits.lag_max_frames {
                    self.close(
                        CloseCause::Lagging,
                        Some(protocol::close_frame(
                            1008,
                            &format!("too slow: lost {lost} frames"),
                        )),
                    );
                    return Pushed::Closing;
                }
                return Pushed::Lost;
            }
        }
        // Before the notice: the writer sleeps until the queue turns non-empty.
        let was_empty = state.live == 0;
        state.push_lagged_notice();
        let seq = state.push_back(frame.clone(), conflated.then_some(channel));
        if conflated {
            state.conflated_seq.insert(channel, seq);
        }
        drop(state);
        if was_empty {
            self.wake.notify_one();
        }
        Pushed::Queued
    }

    /// Queues a frame for this client only (hello, acks, errors, snapshots, pongs). These
    /// count against the queue too; past twice its byte limit the client is closed (1008).
    pub fn push_control(&self, frame: Bytes) -> Pushed {
        let mut state = self.lock();
        if state.close.is_some() {
            return Pushed::Closing;
        }
        if state.bytes + frame.len() > 2 * self.limits.queue_bytes_max {
            drop(state);
            self.close(
                CloseCause::Lagging,
                Some(protocol::close_frame(1008, "queue overflow")),
            );
            return Pushed::Closing;
        }
        state.push_back(frame, None);
        drop(state);
        self.wake.notify_one();
        Pushed::Queued
    }

    /// After an in-place overwrite (the queue still holds frames, the writer is awake): the
    /// lagged notice if one is owed, or the lag limit's close.
    fn after_skip(
        &self,
        mut state: std::sync::MutexGuard<'_, QueueState>,
        limits: ClientLimits,
    ) -> Pushed {
        let lost = state.lost_since_taken;
        if lost > limits.lag_max_frames {
            drop(state);
            self.close(
                CloseCause::Lagging,
                Some(protocol::close_frame(
                    1008,
                    &format!("too slow: lost {lost} frames"),
                )),
            );
            return Pushed::Closing;
        }
        state.push_lagged_notice();
        Pushed::Queued
    }

    /// Takes every queued frame (the writer), or the close to perform.
    fn take(&self, into: &mut Vec<Bytes>) -> Option<CloseRequest> {
        let mut state = self.lock();
        if let Some(close) = &state.close {
            return Some(close.clone());
        }
        let taken = state.frames.len() as u64;
        into.extend(state.frames.drain(..).filter_map(|queued| queued.frame));
        state.head_seq += taken;
        state.scan_seq = state.head_seq;
        state.live = 0;
        state.conflated_seq.clear();
        state.bytes = 0;
        state.lost_since_taken = 0;
        None
    }
}

impl QueueState {
    /// Appends a frame; returns its sequence number.
    fn push_back(&mut self, frame: Bytes, conflated_channel: Option<u32>) -> u64 {
        let seq = self.head_seq + self.frames.len() as u64;
        self.bytes += frame.len();
        self.live += 1;
        self.frames.push_back(Queued {
            frame: Some(frame),
            conflated_channel,
        });
        seq
    }

    /// Queues `{"lagged":n}` if records were lost since the last notice.
    fn push_lagged_notice(&mut self) {
        if self.lagged_untold > 0 {
            let notice = protocol::lagged_frame(self.lagged_untold);
            self.lagged_untold = 0;
            self.push_back(notice, None);
        }
    }

    fn slot(&mut self, seq: u64) -> Option<&mut Queued> {
        let index = usize::try_from(seq.checked_sub(self.head_seq)?).ok()?;
        self.frames.get_mut(index)
    }

    /// Bytes of the frame in slot `seq` (0 if emptied or gone).
    fn slot_len(&mut self, seq: u64) -> usize {
        self.slot(seq)
            .and_then(|queued| queued.frame.as_ref())
            .map_or(0, Bytes::len)
    }

    /// Overwrites the frame in slot `seq`, keeping its place.
    fn replace_in_place(&mut self, seq: u64, frame: Bytes) {
        let new_len = frame.len();
        let Some(queued) = self.slot(seq) else {
            return;
        };
        let old_len = queued.frame.replace(frame).map_or(0, |old| old.len());
        if old_len == 0 {
            // Only live slots are in `conflated_seq`; keep the counts whole regardless.
            self.live += 1;
        }
        self.bytes = self.bytes - old_len + new_len;
    }

    /// Empties slot `seq` (a skipped conflated frame); returns whether it held one.
    fn empty_slot(&mut self, seq: u64) -> bool {
        let Some(queued) = self.slot(seq) else {
            return false;
        };
        let channel = queued.conflated_channel;
        let Some(old) = queued.frame.take() else {
            return false;
        };
        self.bytes -= old.len();
        self.live -= 1;
        if let Some(channel) = channel
            && self.conflated_seq.get(&channel) == Some(&seq)
        {
            self.conflated_seq.remove(&channel);
        }
        true
    }

    /// Empties conflated frames of any channel, oldest first, until `fits`; returns how many.
    /// Resumes where the last call stopped, so a push costs O(1) amortized.
    fn empty_oldest_conflated(&mut self, fits: &impl Fn(&QueueState) -> bool) -> u64 {
        let mut emptied = 0u64;
        let end = self.head_seq + self.frames.len() as u64;
        let mut seq = self.scan_seq.max(self.head_seq);
        while seq < end && !fits(self) {
            let conflated = self
                .slot(seq)
                .is_some_and(|queued| queued.conflated_channel.is_some());
            if conflated && self.empty_slot(seq) {
                emptied += 1;
            }
            seq += 1;
        }
        self.scan_seq = seq;
        emptied
    }

    /// Drops emptied slots at the front.
    fn pop_empty_front(&mut self) {
        while self
            .frames
            .front()
            .is_some_and(|queued| queued.frame.is_none())
        {
            self.frames.pop_front();
            self.head_seq += 1;
        }
    }
}

/// Most frames in one vectored write.
const IOV_MAX_FRAMES: usize = 64;

/// Writes `frames` in order with vectored writes.
async fn write_frames<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: &[Bytes],
) -> std::io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < frames.len() {
        let end = (index + IOV_MAX_FRAMES).min(frames.len());
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(end - index);
        slices.push(IoSlice::new(&frames[index][offset..]));
        for frame in &frames[index + 1..end] {
            slices.push(IoSlice::new(frame));
        }
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while index < frames.len() && written > 0 {
            let left = frames[index].len() - offset;
            if written >= left {
                written -= left;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    writer.flush().await
}

/// The writer: waits for frames, writes them with a deadline, pings and checks pongs, performs
/// the close. Returns when the connection is done.
pub async fn run_writer<W: AsyncWrite + Unpin>(
    mut writer: W,
    client: Arc<ClientShared>,
    counters: Arc<Counters>,
    epoch: Instant,
) {
    let limits = client.limits;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut next_ping = Instant::now() + limits.ping_interval;
    // When the oldest unanswered ping was sent.
    let mut ping_outstanding: Option<Instant> = None;
    loop {
        let pong_deadline = ping_outstanding.map(|sent| sent + limits.pong_timeout);
        let wake_at = match pong_deadline {
            Some(deadline) => deadline.min(next_ping),
            None => next_ping,
        };
        tokio::select! {
            _ = client.wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
        let now = Instant::now();
        if let Some(sent) = ping_outstanding {
            // Both in whole milliseconds since the epoch: a pong in the ping's own millisecond
            // counts as an answer.
            let sent_ms = sent.duration_since(epoch).as_millis() as u64;
            if client.last_pong_ms.load(Ordering::Relaxed) >= sent_ms {
                ping_outstanding = None;
            } else if now >= sent + limits.pong_timeout {
                client.close(
                    CloseCause::PongTimeout,
                    Some(protocol::close_frame(1008, "no pong within pong_timeout_s")),
                );
            }
        }
        batch.clear();
        let close = client.take(&mut batch);
        if close.is_none() && now >= next_ping {
            let stamp = now.duration_since(epoch).as_millis() as u64;
            batch.push(protocol::ping_frame(&stamp.to_be_bytes()));
            ping_outstanding.get_or_insert(now);
            next_ping = now + limits.ping_interval;
        }
        if let Some(close) = close {
            // The socket may still take a close frame; a short deadline either way.
            if let Some(frame) = close.frame {
                let deadline = limits.write_timeout.min(Duration::from_secs(1));
                let _ = tokio::time::timeout(deadline, write_frames(&mut writer, &[frame])).await;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), writer.shutdown()).await;
            return;
        }
        if batch.is_empty() {
            continue;
        }
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(limits.write_timeout, write_frames(&mut writer, &batch)) => Some(outcome),
            _ = client.closing.notified() => None,
        };
        match outcome {
            Some(Ok(Ok(()))) => {
                Counters::add(&counters.frames_out, batch.len() as u64);
                Counters::add(&counters.bytes_out, bytes as u64);
            }
            Some(Ok(Err(_))) => {
                client.close(CloseCause::ByClient, None);
                return;
            }
            Some(Err(_)) => {
                // Mid-frame: no close frame can follow; the connection is dropped.
                client.close(CloseCause::WriteTimeout, None);
                return;
            }
            // Closed by the broadcast task while the write was blocked: drop the connection.
            None => return,
        }
    }
}

/// Token bucket for client messages.
struct RateLimit {
    tokens: f64,
    per_s: f64,
    last: Instant,
}

impl RateLimit {
    fn allow(&mut self, now: Instant) -> bool {
        let burst = self.per_s.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_s).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The reader: client messages until the client closes, errs, or the connection is closed.
pub async fn run_reader<R: AsyncRead + Unpin>(
    mut reader: WebSocketRead<R>,
    client: Arc<ClientShared>,
    hub: mpsc::Sender<HubCommand>,
    counters: Arc<Counters>,
    epoch: Instant,
) {
    let limits = client.limits;
    let mut rate = RateLimit {
        tokens: limits.messages_per_s.max(1.0),
        per_s: limits.messages_per_s,
        last: Instant::now(),
    };
    // Control replies are queued by hand (auto_pong is off); nothing is obligated.
    let mut no_send = |_frame: fastwebsockets::Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    loop {
        let frame = match reader.read_frame(&mut no_send).await {
            Ok(frame) => frame,
            Err(fastwebsockets::WebSocketError::ConnectionClosed)
            | Err(fastwebsockets::WebSocketError::UnexpectedEOF)
            | Err(fastwebsockets::WebSocketError::IoError(_)) => {
                client.close(CloseCause::ByClient, None);
                return;
            }
            Err(fastwebsockets::WebSocketError::FrameTooLarge) => {
                client.close(
                    CloseCause::Protocol,
                    Some(protocol::close_frame(1009, "message too large")),
                );
                return;
            }
            Err(error) => {
                client.close(
                    CloseCause::Protocol,
                    Some(protocol::close_frame(
                        1002,
                        &format!("protocol error: {error}"),
                    )),
                );
                return;
            }
        };
        match frame.opcode {
            OpCode::Close => {
                client.close(CloseCause::ByClient, Some(protocol::close_frame(1000, "")));
                return;
            }
            OpCode::Ping => {
                let _ = client.push_control(protocol::pong_frame(&frame.payload));
            }
            OpCode::Pong => {
                let now_ms = Instant::now().duration_since(epoch).as_millis() as u64;
                client.last_pong_ms.store(now_ms, Ordering::Relaxed);
            }
            OpCode::Binary => {
                send_error(
                    &client,
                    &counters,
                    ErrorCode::BinaryNotSupported,
                    "send JSON text frames",
                );
            }
            OpCode::Text | OpCode::Continuation => {
                if frame.payload.len() > limits.message_bytes_max {
                    let message = format!(
                        "message of {} bytes; at most {} bytes",
                        frame.payload.len(),
                        limits.message_bytes_max
                    );
                    send_error(&client, &counters, ErrorCode::MessageTooLarge, &message);
                    continue;
                }
                if !rate.allow(Instant::now()) {
                    let message =
                        format!("more than {} messages per second", limits.messages_per_s);
                    send_error(&client, &counters, ErrorCode::RateLimited, &message);
                    continue;
                }
                if let Some(command) = parse_command(&client, &counters, &frame.payload) {
                    // Bounded: a flood waits here, on this client's reader only.
                    if hub.send(command).await.is_err() {
                        return;
                    }
                }
            }
        }
        if client.is_closing() {
            return;
        }
    }
}

fn send_error(client: &ClientShared, counters: &Counters, code: ErrorCode, message: &str) {
    Counters::add(&counters.errors_sent, 1);
    let _ = client.push_control(protocol::error_frame(code, message));
}

/// A client message as a broadcast-task command, or an error frame sent.
fn parse_command(
    client: &Arc<ClientShared>,
    counters: &Counters,
    payload: &[u8],
) -> Option<HubCommand> {
    let message: ClientMessage = match serde_json::from_slice(payload) {
        Ok(message) => message,
        Err(error) => {
            send_error(
                client,
                counters,
                ErrorCode::BadJson,
                &format!("not a valid message: {error}"),
            );
            return None;
        }
    };
    let subscribe = match message.op.as_str() {
        "subscribe" => true,
        "unsubscribe" => false,
        other => {
            send_error(
                client,
                counters,
                ErrorCode::UnknownOp,
                &format!("unknown op {other:?}: use \"subscribe\" or \"unsubscribe\""),
            );
            return None;
        }
    };
    if message.channels.len() > client.limits.subscriptions_max {
        send_error(
            client,
            counters,
            ErrorCode::TooManySubscriptions,
            &format!(
                "at most {} channels per client",
                client.limits.subscriptions_max
            ),
        );
        return None;
    }
    let mut specs = Vec::with_capacity(message.channels.len());
    for name in &message.channels {
        match ChannelSpec::parse(name) {
            Some(spec) => specs.push((name.clone(), spec)),
            None => {
                send_error(
                    client,
                    counters,
                    ErrorCode::UnknownChannel,
                    &format!("unknown channel {name:?}"),
                );
                return None;
            }
        }
    }
    Some(if subscribe {
        HubCommand::Subscribe {
            client: client.clone(),
            channels: specs,
            snapshot: message.snapshot,
        }
    } else {
        HubCommand::Unsubscribe {
            client: client.clone(),
            channels: specs,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(queue_frames_max: usize, queue_bytes_max: usize) -> ClientShared {
        let limits = ClientLimits {
            queue_bytes_max,
            queue_frames_max,
            lag_max_frames: 1000,
            write_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(10),
            message_bytes_max: 1024,
            messages_per_s: 10.0,
            subscriptions_max: 16,
        };
        ClientShared::new(1, limits, Arc::new(Counters::default()))
    }

    fn taken(client: &ClientShared) -> Vec<Bytes> {
        let mut frames = Vec::new();
        assert!(client.take(&mut frames).is_none());
        frames
    }

    #[test]
    fn a_full_queue_overwrites_the_channels_frame_in_place() {
        let client = client(3, 1 << 20);
        for frame in ["a1", "b1", "c1"] {
            let channel = u32::from(frame.as_bytes()[0]);
            let pushed = client.push_shared(&Bytes::from(frame), channel, true, 1);
            assert_eq!(pushed, Pushed::Queued);
        }
        // Full: channel b's newest replaces its queued frame, keeping its place.
        let b2 = Bytes::from_static(b"b2");
        assert_eq!(
            client.push_shared(&b2, u32::from(b'b'), true, 1),
            Pushed::Queued
        );
        let b3 = Bytes::from_static(b"b3");
        assert_eq!(
            client.push_shared(&b3, u32::from(b'b'), true, 1),
            Pushed::Queued
        );
        assert_eq!(client.counters.skipped_frames.load(Ordering::Relaxed), 2);
        assert_eq!(taken(&client), ["a1", "b3", "c1"]);
        assert_eq!(client.lock().bytes, 0);
    }

    #[test]
    fn a_full_queue_empties_the_oldest_conflated_frames_when_in_place_cannot_fit() {
        // Room for 9 bytes, 7 queued: a 6-byte frame of a new channel empties the two oldest
        // conflated frames (not the control frame before them).
        let client = client(10, 9);
        client.push_control(Bytes::from_static(b"h"));
        for frame in ["a1", "b1", "c1"] {
            let channel = u32::from(frame.as_bytes()[0]);
            client.push_shared(&Bytes::from(frame), channel, true, 1);
        }
        let big = Bytes::from_static(b"d12345");
        assert_eq!(
            client.push_shared(&big, u32::from(b'd'), true, 1),
            Pushed::Queued
        );
        assert_eq!(client.counters.skipped_frames.load(Ordering::Relaxed), 2);
        {
            let state = client.lock();
            assert_eq!((state.live, state.bytes), (3, 9));
            assert!(!state.conflated_seq.contains_key(&u32::from(b'a')));
            assert!(state.conflated_seq.contains_key(&u32::from(b'c')));
        }
        // Channel c fits in place; the emptied slots are passed over.
        let c2 = Bytes::from_static(b"c2");
        assert_eq!(
            client.push_shared(&c2, u32::from(b'c'), true, 1),
            Pushed::Queued
        );
        assert_eq!(client.counters.skipped_frames.load(Ordering::Relaxed), 3);
        assert_eq!(taken(&client), ["h", "c2", "d12345"]);
        // After a take the queue starts afresh.
        client.push_shared(&Bytes::from_static(b"a3"), u32::from(b'a'), true, 1);
        assert_eq!(taken(&client), ["a3"]);
    }
}
