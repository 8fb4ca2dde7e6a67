//! One connection's write half (every socket write goes through `LinkWriter::send`) and its
//! keep-alive state. Must not read the socket, count, log, or decide rotation or gaps.

use std::time::Duration;

use bytes::BytesMut;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use tokio::time::Instant;

use crate::ws::WsWriter;

/// Whether a write is pushed on through the TLS layer.
#[derive(Clone, Copy, Debug)]
enum Flush {
    /// Pings and pongs: the slot has never flushed them, so adding a flush is a behaviour change.
    No,
    /// A failed write leaves nothing worth flushing.
    IfWritten,
    /// A close is best effort to the end: the socket is dropped right after it.
    Regardless,
}

/// A connection's write half. It exists before its `Link` (the opener subscribes through it),
/// and `send` is its only way to the socket, so a write deadline has one place to go.
pub(super) struct LinkWriter {
    writer: WsWriter,
}

impl LinkWriter {
    pub(super) fn new(writer: WsWriter) -> LinkWriter {
        LinkWriter { writer }
    }

    async fn send(&mut self, frame: Frame<'_>, flush: Flush) -> Result<(), WebSocketError> {
        let written = self.writer.write_frame(frame).await;
        match flush {
            Flush::No => written,
            Flush::IfWritten => {
                written?;
                self.writer.flush().await
            }
            Flush::Regardless => {
                let flushed = self.writer.flush().await;
                written.and(flushed)
            }
        }
    }

    pub(super) async fn write_text(&mut self, text: &str) -> Result<(), WebSocketError> {
        self.send(
            Frame::text(Payload::Borrowed(text.as_bytes())),
            Flush::IfWritten,
        )
        .await
    }

    async fn write_ping(&mut self) -> Result<(), WebSocketError> {
        let ping = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"tickflow"));
        self.send(ping, Flush::No).await
    }

    async fn write_pong(&mut self, payload: BytesMut) -> Result<(), WebSocketError> {
        self.send(Frame::pong(Payload::Bytes(payload)), Flush::No)
            .await
    }

    /// Sends a close frame, bounded by `deadline`; the caller drops the socket either way.
    async fn close(&mut self, deadline: Duration) {
        let close = self.send(Frame::close(1000, b""), Flush::Regardless);
        let _ = tokio::time::timeout(deadline, close).await;
    }
}

/// A client ping, in the venue's form.
pub(super) enum Ping<'a> {
    Frame,
    Text(&'a str),
}

/// The watchdogs that apply to a link at one check, with their limits.
pub(super) struct Watchdogs {
    pub(super) max_silence: Duration,
    /// Only where silence on a data channel means a stale feed.
    pub(super) stale_data: Option<Duration>,
    /// Only while the link still has to prove itself (a replacement, or a primary in a hole).
    pub(super) first_data: Option<Duration>,
}

/// Why a link's watchdogs declared it dead.
#[derive(Clone, Copy, Debug)]
pub(super) enum LinkFault {
    PongMissed,
    Silent,
    Stale,
    NoFirstData,
}

/// One open connection's keep-alive state.
pub(super) struct Link {
    writer: LinkWriter,
    opened_at: Instant,
    last_frame_at: Instant,
    last_data_at: Instant,
    next_ping_at: Instant,
    ping_deadline: Option<Instant>,
    has_data: bool,
}

impl Link {
    pub(super) fn new(writer: LinkWriter, now: Instant, ping_interval: Duration) -> Link {
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

    pub(super) fn has_data(&self) -> bool {
        self.has_data
    }

    pub(super) fn frame_arrived(&mut self, now: Instant) {
        self.last_frame_at = now;
    }

    pub(super) fn pong_arrived(&mut self) {
        self.ping_deadline = None;
    }

    pub(super) fn data_arrived(&mut self, now: Instant) {
        self.last_data_at = now;
        self.has_data = true;
    }

    /// The first watchdog that fails, checked in this order.
    pub(super) fn fault(&self, now: Instant, watchdogs: &Watchdogs) -> Option<LinkFault> {
        if self.ping_deadline.is_some_and(|deadline| now >= deadline) {
            return Some(LinkFault::PongMissed);
        }
        if now.duration_since(self.last_frame_at) >= watchdogs.max_silence {
            return Some(LinkFault::Silent);
        }
        if watchdogs
            .stale_data
            .is_some_and(|stale_data| now.duration_since(self.last_data_at) >= stale_data)
        {
            return Some(LinkFault::Stale);
        }
        if !self.has_data
            && watchdogs
                .first_data
                .is_some_and(|timeout| now.duration_since(self.opened_at) >= timeout)
        {
            return Some(LinkFault::NoFirstData);
        }
        None
    }

    /// One ping at a time: the next is due only once the last one's pong came back.
    pub(super) fn ping_due(&self, now: Instant) -> bool {
        self.ping_deadline.is_none() && now >= self.next_ping_at
    }

    /// Sends `ping`; once it is out, its pong is due within `pong_timeout` and the next ping
    /// `interval` after `now`.
    pub(super) async fn ping(
        &mut self,
        ping: Ping<'_>,
        now: Instant,
        pong_timeout: Duration,
        interval: Duration,
    ) -> Result<(), WebSocketError> {
        match ping {
            Ping::Frame => self.writer.write_ping().await?,
            Ping::Text(text) => self.writer.write_text(text).await?,
        }
        self.ping_deadline = Some(now + pong_timeout);
        self.next_ping_at = now + interval;
        Ok(())
    }

    pub(super) async fn write_text(&mut self, text: &str) -> Result<(), WebSocketError> {
        self.writer.write_text(text).await
    }

    /// Answers a ws ping with its payload.
    pub(super) async fn pong(&mut self, payload: BytesMut) -> Result<(), WebSocketError> {
        self.writer.write_pong(payload).await
    }

    /// Sends a close frame, bounded by `deadline`; the caller drops the link either way.
    pub(super) async fn close(&mut self, deadline: Duration) {
        self.writer.close(deadline).await;
    }
}
