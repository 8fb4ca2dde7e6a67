//! Rotation: the primary and its replacement's seats, the replacement's open and promotion, and
//! rotation vs hole when the primary dies. Must not emit gaps or count; the slot records those.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use tokio::time::Instant;

use super::SlotTimings;
use super::link::Link;
use super::opener::{Opened, Opener};
use crate::ws::{ConnectError, WsReader};

pub(super) type ReadResult = Result<(OpCode, bool, BytesMut), WebSocketError>;

/// Reads one frame; owns the reader so the future can live across `select!` iterations and be
/// replaced with `Pin::set` (one type for every call, so no boxing per frame). `None` never
/// completes: an empty seat.
pub(super) async fn read_next(reader: Option<WsReader>) -> (WsReader, ReadResult) {
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

/// A rotation's open; `None` never completes (no open under way).
pub(super) async fn open_replacement(opener: Option<Opener>) -> Result<Opened, ConnectError> {
    match opener {
        Some(opener) => opener.open().await,
        None => std::future::pending().await,
    }
}

/// `read_next`'s future, named by its output: an async fn's future type has no name.
pub(super) trait SeatRead: Future<Output = (WsReader, ReadResult)> {}
impl<F: Future<Output = (WsReader, ReadResult)>> SeatRead for F {}

/// `open_replacement`'s future, named by its output.
pub(super) trait ReplacementOpen: Future<Output = Result<Opened, ConnectError>> {}
impl<F: Future<Output = Result<Opened, ConnectError>>> ReplacementOpen for F {}

/// The session's futures, pinned on its stack for the whole session and re-armed in place by
/// the fns that made them (storing the fns is how a type names an async fn's future).
pub(super) struct SeatFutures<'a, R, O> {
    pub(super) reads: [Pin<&'a mut R>; 2],
    pub(super) read_next: fn(Option<WsReader>) -> R,
    pub(super) open: Pin<&'a mut O>,
    pub(super) open_replacement: fn(Option<Opener>) -> O,
}

/// What one of the seats' futures produced.
pub(super) enum Event {
    /// A frame, or the read's failure, on `seat`; the seat already reads its next frame (or,
    /// after a failure, nothing).
    Frame { seat: usize, frame: ReadResult },
    /// The replacement's open finished.
    Opened(Result<Opened, ConnectError>),
}

/// What dropping a dead seat meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dropped {
    /// The primary, with no replacement to promote: the session is over.
    Last,
    /// The primary; its replacement had delivered and took over: a rotation.
    Rotated,
    /// The primary; its replacement took over before delivering: a hole, closed by the
    /// replacement's first data (its first-data timeout still applies).
    Hole,
    /// The replacement; the next try waits.
    Replacement,
}

/// The primary and, while rotating, its replacement: seat `primary` and seat `1 - primary`.
/// A seat holds a link and a read of its socket, or neither.
pub(super) struct Rotation<'a, R, O> {
    links: [Option<Link>; 2],
    futures: SeatFutures<'a, R, O>,
    primary: usize,
    opening: bool,
    next_at: Instant,
    rotate_after: Duration,
    /// The wait for another open after a failed one or a lost replacement.
    retry_after: Duration,
}

impl<'a, R: SeatRead, O: ReplacementOpen> Rotation<'a, R, O> {
    /// Seats `primary` (read by `reader`) on seat 0; the first rotation is due `rotate_after`
    /// from `now`.
    pub(super) fn new(
        mut futures: SeatFutures<'a, R, O>,
        reader: WsReader,
        primary: Link,
        now: Instant,
        timings: &SlotTimings,
    ) -> Self {
        futures.reads[0]
            .as_mut()
            .set((futures.read_next)(Some(reader)));
        Rotation {
            links: [Some(primary), None],
            futures,
            primary: 0,
            opening: false,
            next_at: now + timings.rotate_after,
            rotate_after: timings.rotate_after,
            retry_after: timings.rotation_first_data_timeout,
        }
    }

    pub(super) fn primary(&self) -> usize {
        self.primary
    }

    pub(super) fn link_mut(&mut self, seat: usize) -> Option<&mut Link> {
        self.links[seat].as_mut()
    }

    fn rearm(&mut self, seat: usize, reader: Option<WsReader>) {
        let next = (self.futures.read_next)(reader);
        self.futures.reads[seat].as_mut().set(next);
    }

    /// Polls seat 0's read, seat 1's, then the replacement's open, in that order. A finished
    /// future is re-armed before returning, so none is ever polled again after completing.
    pub(super) fn next_event(&mut self) -> impl Future<Output = Event> + '_ {
        std::future::poll_fn(move |cx| {
            for seat in [0usize, 1] {
                if let Poll::Ready((reader, frame)) = self.futures.reads[seat].as_mut().poll(cx) {
                    // A failed read's socket is done with; the slot drops its seat next.
                    self.rearm(seat, frame.is_ok().then_some(reader));
                    return Poll::Ready(Event::Frame { seat, frame });
                }
            }
            if let Poll::Ready(result) = self.futures.open.as_mut().poll(cx) {
                let idle = (self.futures.open_replacement)(None);
                self.futures.open.as_mut().set(idle);
                self.opening = false;
                return Poll::Ready(Event::Opened(result));
            }
            Poll::Pending
        })
    }

    /// Starts the replacement's open when a rotation is due at `now` and none is under way.
    pub(super) fn start_if_due(&mut self, now: Instant, opener: &Opener) {
        let replacement = 1 - self.primary;
        if self.links[replacement].is_none() && !self.opening && now >= self.next_at {
            let open = (self.futures.open_replacement)(Some(opener.clone()));
            self.futures.open.as_mut().set(open);
            self.opening = true;
        }
    }

    /// Seats the opened replacement beside the primary.
    pub(super) fn seat_replacement(&mut self, reader: WsReader, link: Link) {
        // No seat changes while the other seat is empty, so it is still free.
        let replacement = 1 - self.primary;
        self.links[replacement] = Some(link);
        self.rearm(replacement, Some(reader));
    }

    /// The replacement's open failed.
    pub(super) fn open_failed(&mut self) {
        self.next_at = Instant::now() + self.retry_after;
    }

    /// The venue announced the primary's end: rotate at the next tick.
    pub(super) fn rotate_now(&mut self) {
        self.next_at = Instant::now();
    }

    /// The replacement on `seat` delivered: it becomes the primary and the old one is closed.
    pub(super) async fn promote(&mut self, seat: usize, close_deadline: Duration) {
        let old = self.primary;
        if let Some(mut link) = self.links[old].take() {
            link.close(close_deadline).await;
        }
        self.rearm(old, None);
        self.primary = seat;
        self.next_at = Instant::now() + self.rotate_after;
    }

    /// Empties a dead seat; a dead primary's replacement, if any, takes over.
    pub(super) fn drop_seat(&mut self, seat: usize) -> Dropped {
        self.links[seat] = None;
        self.rearm(seat, None);
        if seat != self.primary {
            self.next_at = Instant::now() + self.retry_after;
            return Dropped::Replacement;
        }
        let Some(replacement) = self.links[1 - seat].as_ref() else {
            return Dropped::Last;
        };
        let has_data = replacement.has_data();
        self.primary = 1 - seat;
        self.next_at = Instant::now() + self.rotate_after;
        if has_data {
            Dropped::Rotated
        } else {
            Dropped::Hole
        }
    }

    /// Sends close frames on both seats' links, each bounded by `deadline`.
    pub(super) async fn close_all(&mut self, deadline: Duration) {
        for link in self.links.iter_mut().flatten() {
            link.close(deadline).await;
        }
    }
}
