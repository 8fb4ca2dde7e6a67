//! One connection's write half (every socket write goes through `LinkWriter::poll_send`) and its
//! keep-alive state. Must not read the socket, count, log, or decide rotation or gaps.
//!
//! Writes are queued and driven by polling, beside the reads, never awaited inside the session
//! loop: a peer that stops reading must not stop the slot from reading (its own data, or the
//! other connection while rotating) nor from running its watchdogs. The queue is bounded, and
//! bytes queued longer than `feeds.write_timeout_ms` mark the link dead like a missing pong.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Instant;

use crate::framing::{self, Opcode, WriteError};
use crate::ws::WsWriter;

/// Most bytes a link keeps queued: the largest subscribe request (Binance: 200 streams of up to
/// ~30 bytes, about 6 KiB) with room, or a few hundred pings and pongs. A queue that cannot take
/// a frame means the peer stopped reading.
pub(crate) const MAX_QUEUED_WRITE_BYTES: usize = 16 * 1024;

/// Initial room of a link's queue (pings, pongs, a subscribe request); grows up to the bound.
const INITIAL_QUEUE_BYTES: usize = 512;

/// A connection's write half. It exists before its `Link` (the opener subscribes through it),
/// and `poll_send` is its only way to the socket, so the write deadline has one place to go.
pub(super) struct LinkWriter<W = WsWriter> {
    stream: W,
    /// Encoded frames; `queue[written..]` is not on the socket yet.
    queue: Vec<u8>,
    written: usize,
    /// Bytes went to the socket since the last completed flush.
    unflushed: bool,
    /// When the oldest byte not yet flushed was queued: the write deadline runs from here.
    pending_since: Option<Instant>,
    write_timeout: Duration,
}

impl<W: AsyncWrite + Unpin> LinkWriter<W> {
    pub(super) fn new(stream: W, write_timeout: Duration) -> LinkWriter<W> {
        LinkWriter {
            stream,
            queue: Vec::with_capacity(INITIAL_QUEUE_BYTES),
            written: 0,
            unflushed: false,
            pending_since: None,
            write_timeout,
        }
    }

    /// Queues one frame; `poll_send` writes it. Never touches the socket.
    fn queue_frame(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), WriteError> {
        let frame_bytes = framing::client_frame_bytes(payload.len());
        if self.queue.len() - self.written + frame_bytes > MAX_QUEUED_WRITE_BYTES {
            return Err(WriteError::QueueFull);
        }
        if self.queue.len() + frame_bytes > MAX_QUEUED_WRITE_BYTES {
            self.queue.drain(..self.written);
            self.written = 0;
        }
        // Exact, so the queue's allocation stays within its bound too.
        self.queue.reserve_exact(frame_bytes);
        // Clients mask every frame with a fresh unpredictable key (RFC 6455 §5.3).
        framing::encode_client_frame(opcode, payload, rand::random(), &mut self.queue);
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Writes what is queued, then flushes, so no frame (a pong above all: venues cut clients
    /// that do not answer) waits in a TLS buffer for the next write. The one place a socket is
    /// written. Ready(Ok) when nothing is left; Pending while the socket takes no more.
    pub(super) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        while self.written < self.queue.len() {
            let written =
                ready!(Pin::new(&mut self.stream).poll_write(cx, &self.queue[self.written..]))?;
            if written == 0 {
                return Poll::Ready(Err(WriteError::Io(std::io::ErrorKind::WriteZero.into())));
            }
            self.written += written;
            self.unflushed = true;
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
            self.unflushed = false;
        }
        self.queue.clear();
        self.written = 0;
        self.pending_since = None;
        Poll::Ready(Ok(()))
    }

    /// Sends one frame now, within the write deadline (the opener's subscribe requests, which
    /// run as their own future).
    async fn send(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), WriteError> {
        self.queue_frame(opcode, payload)?;
        tokio::time::timeout(
            self.write_timeout,
            std::future::poll_fn(|cx| self.poll_send(cx)),
        )
        .await
        .map_err(|_| WriteError::TimedOut)?
    }

    pub(super) async fn send_text(&mut self, text: &str) -> Result<(), WriteError> {
        self.send(Opcode::Text, text.as_bytes()).await
    }

    /// When the oldest unsent byte was queued, if any is.
    fn pending_since(&self) -> Option<Instant> {
        self.pending_since
    }

    /// Queues a close frame and gives it one try without waiting; the caller drops the socket.
    fn close_now(&mut self) {
        if self
            .queue_frame(Opcode::Close, &1000u16.to_be_bytes())
            .is_ok()
        {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let _ = self.poll_send(&mut cx);
        }
    }

    /// Sends a close frame, waiting at most until `deadline`; the caller drops the socket.
    async fn close(&mut self, deadline: Instant) {
        if self
            .queue_frame(Opcode::Close, &1000u16.to_be_bytes())
            .is_ok()
        {
            let sent = std::future::poll_fn(|cx| self.poll_send(cx));
            let _ = tokio::time::timeout_at(deadline, sent).await;
        }
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
    /// Queued bytes not on the socket after this long: the peer stopped reading.
    pub(super) write_timeout: Duration,
    /// Only where silence on a data channel means a stale feed.
    pub(super) stale_data: Option<Duration>,
    /// Only while the link still has to prove itself (a replacement, or a primary in a hole).
    pub(super) first_data: Option<Duration>,
}

/// Why a link's watchdogs declared it dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LinkFault {
    WriteStalled,
    PongMissed,
    Silent,
    Stale,
    NoFirstData,
}

/// One open connection's keep-alive state.
pub(super) struct Link<W = WsWriter> {
    writer: LinkWriter<W>,
    opened_at: Instant,
    last_frame_at: Instant,
    last_data_at: Instant,
    next_ping_at: Instant,
    ping_deadline: Option<Instant>,
    has_data: bool,
}

impl<W: AsyncWrite + Unpin> Link<W> {
    pub(super) fn new(writer: LinkWriter<W>, now: Instant, ping_interval: Duration) -> Link<W> {
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

    /// The first watchdog that fails, checked in this order (a stalled write explains a missing
    /// pong, so it is named first).
    pub(super) fn fault(&self, now: Instant, watchdogs: &Watchdogs) -> Option<LinkFault> {
        if self
            .writer
            .pending_since()
            .is_some_and(|since| now.duration_since(since) >= watchdogs.write_timeout)
        {
            return Some(LinkFault::WriteStalled);
        }
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

    /// Queues `ping`; its pong is due within `pong_timeout` and the next ping `interval` after
    /// `now`.
    pub(super) fn ping(
        &mut self,
        ping: Ping<'_>,
        now: Instant,
        pong_timeout: Duration,
        interval: Duration,
    ) -> Result<(), WriteError> {
        match ping {
            Ping::Frame => self.writer.queue_frame(Opcode::Ping, b"tickflow")?,
            Ping::Text(text) => self.writer.queue_frame(Opcode::Text, text.as_bytes())?,
        }
        self.ping_deadline = Some(now + pong_timeout);
        self.next_ping_at = now + interval;
        Ok(())
    }

    pub(super) fn write_text(&mut self, text: &str) -> Result<(), WriteError> {
        self.writer.queue_frame(Opcode::Text, text.as_bytes())
    }

    /// Answers a ws ping with its payload.
    pub(super) fn pong(&mut self, payload: &[u8]) -> Result<(), WriteError> {
        self.writer.queue_frame(Opcode::Pong, payload)
    }

    /// Drives the queued writes; see `LinkWriter::poll_send`.
    pub(super) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        self.writer.poll_send(cx)
    }

    /// Queues a close frame and tries it once without waiting; the caller drops the link.
    pub(super) fn close_now(&mut self) {
        self.writer.close_now();
    }

    /// Sends a close frame, bounded by `deadline`; the caller drops the link either way.
    pub(super) async fn close(&mut self, deadline: Instant) {
        self.writer.close(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket whose writes sit in a buffer until it is flushed (what a TLS stream does with
    /// bytes the TCP socket did not take yet); `accepting` false makes it take nothing.
    #[derive(Default)]
    struct BufferedSocket {
        buffered: Vec<u8>,
        on_the_wire: Vec<u8>,
        refusing: bool,
    }

    impl AsyncWrite for BufferedSocket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bytes: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if self.refusing {
                return Poll::Pending;
            }
            self.buffered.extend_from_slice(bytes);
            Poll::Ready(Ok(bytes.len()))
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.refusing {
                return Poll::Pending;
            }
            let buffered = std::mem::take(&mut self.buffered);
            self.on_the_wire.extend(buffered);
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn poll_once(link: &mut Link<BufferedSocket>) -> Poll<Result<(), WriteError>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        link.poll_send(&mut cx)
    }

    fn watchdogs() -> Watchdogs {
        Watchdogs {
            max_silence: Duration::from_secs(3600),
            write_timeout: Duration::from_millis(500),
            stale_data: None,
            first_data: None,
        }
    }

    #[test]
    fn pongs_and_pings_reach_the_wire_not_a_buffer() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime starts");
        runtime.block_on(async {
            let now = Instant::now();
            let writer = LinkWriter::new(BufferedSocket::default(), Duration::from_secs(1));
            let mut link = Link::new(writer, now, Duration::from_secs(20));
            link.pong(b"venue ping").expect("queued");
            assert!(poll_once(&mut link).is_ready());
            // A pong frame: FIN + opcode 0xA, masked, 10 bytes of payload.
            let wire = &link.writer.stream.on_the_wire;
            assert_eq!(wire.len(), 2 + 4 + 10, "the pong was flushed: {wire:?}");
            assert_eq!(wire[0], 0x8A);
            link.ping(
                Ping::Frame,
                now,
                Duration::from_secs(5),
                Duration::from_secs(20),
            )
            .expect("queued");
            assert!(poll_once(&mut link).is_ready());
            assert_eq!(link.writer.stream.on_the_wire.len(), 16 + 2 + 4 + 8);
            assert!(link.writer.stream.buffered.is_empty());
            assert_eq!(link.fault(now, &watchdogs()), None);
        });
    }

    #[test]
    fn a_peer_that_stops_reading_is_a_stalled_write_and_never_blocks() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime starts");
        runtime.block_on(async {
            let now = Instant::now();
            let socket = BufferedSocket {
                refusing: true,
                ..BufferedSocket::default()
            };
            let mut link = Link::new(
                LinkWriter::new(socket, Duration::from_millis(500)),
                now,
                Duration::from_secs(20),
            );
            link.pong(b"p").expect("queued");
            // The write does not complete, and polling it returns at once.
            assert!(poll_once(&mut link).is_pending());
            assert_eq!(link.fault(Instant::now(), &watchdogs()), None);
            let later = Instant::now() + Duration::from_millis(500);
            assert_eq!(
                link.fault(later, &watchdogs()),
                Some(LinkFault::WriteStalled)
            );
            // The queue is bounded: a peer that never reads fills it, and that is an error too.
            let full = (0..MAX_QUEUED_WRITE_BYTES)
                .map(|_| link.pong(&[0; 125]))
                .find_map(Result::err);
            assert!(matches!(full, Some(WriteError::QueueFull)), "{full:?}");
            // A send with a deadline gives up at the deadline.
            let sent = link.writer.send_text("subscribe").await;
            assert!(matches!(
                sent,
                Err(WriteError::QueueFull | WriteError::TimedOut)
            ));
            let mut fresh = LinkWriter::new(
                BufferedSocket {
                    refusing: true,
                    ..BufferedSocket::default()
                },
                Duration::from_millis(50),
            );
            assert!(matches!(
                fresh.send_text("subscribe").await,
                Err(WriteError::TimedOut)
            ));
        });
    }
}
