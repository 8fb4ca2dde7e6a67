//! Rotation: the primary and its replacement's seats, the replacement's open and promotion, and
//! rotation vs hole when the primary dies. Must not emit gaps or count; the slot records those.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::SlotTimings;
use super::coalesce::Coalescer;
use super::link::Link;
use super::opener::{Opened, Opener, SeatRole};
use crate::framing::{Incoming, ReadError, WriteError};
use crate::ws::{ConnectError, WsReader};

/// A rotation's open; `None` never completes (no open under way).
pub(super) async fn open_replacement(opener: Option<Opener>) -> Result<Opened, ConnectError> {
    match opener {
        Some(opener) => opener.open(SeatRole::Replacement).await,
        None => std::future::pending().await,
    }
}

/// `open_replacement`'s future, named by its output: an async fn's future type has no name.
pub(super) trait ReplacementOpen: Future<Output = Result<Opened, ConnectError>> {}
impl<F: Future<Output = Result<Opened, ConnectError>>> ReplacementOpen for F {}

/// One open connection: its keep-alive link (the write half) and its reader.
pub(super) struct Seat {
    pub(super) link: Link,
    pub(super) reader: WsReader,
    /// The plan it subscribed to.
    pub(super) plan: std::sync::Arc<crate::planner::SlotPlan>,
}

/// What the seats and the replacement's open produced.
pub(super) enum Event {
    /// A frame, or the read's failure, on `seat`. After a message, its bytes are
    /// `seat.reader.message_mut()` until the seat is read again.
    Read {
        seat: usize,
        read: Result<Incoming, ReadError>,
    },
    /// A queued write on `seat` failed (the socket is broken).
    WriteFailed { seat: usize, error: WriteError },
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
pub(super) struct Rotation<'a, O> {
    seats: [Option<Seat>; 2],
    /// The replacement's open, pinned on the session's stack and re-armed in place by
    /// `open_replacement` (storing the fn is how a type names an async fn's future).
    open: Pin<&'a mut O>,
    open_replacement: fn(Option<Opener>) -> O,
    primary: usize,
    opening: bool,
    next_at: Instant,
    rotate_after: Duration,
    /// The wait for another open after a failed one or a lost replacement.
    retry_after: Duration,
    /// The primary's message limit; a replacement reads with a smaller one until it takes over.
    max_frame_bytes: usize,
}

impl<'a, O: ReplacementOpen> Rotation<'a, O> {
    /// Seats `primary` on seat 0; the first rotation is due `rotate_after` from `now`.
    pub(super) fn new(
        open: Pin<&'a mut O>,
        open_replacement: fn(Option<Opener>) -> O,
        primary: Seat,
        now: Instant,
        timings: &SlotTimings,
        max_frame_bytes: usize,
    ) -> Self {
        Rotation {
            seats: [Some(primary), None],
            open,
            open_replacement,
            primary: 0,
            opening: false,
            next_at: now + timings.rotate_after,
            rotate_after: timings.rotate_after,
            retry_after: timings.rotation_first_data_timeout,
            max_frame_bytes,
        }
    }

    pub(super) fn primary(&self) -> usize {
        self.primary
    }

    /// The plan the primary subscribed to.
    pub(super) fn primary_plan(&self) -> Option<&std::sync::Arc<crate::planner::SlotPlan>> {
        self.seats[self.primary].as_ref().map(|seat| &seat.plan)
    }

    pub(super) fn seat_mut(&mut self, seat: usize) -> Option<&mut Seat> {
        self.seats[seat].as_mut()
    }

    /// Drives seat 0 (its queued writes, then its reads), seat 1, then the replacement's open,
    /// in that order. Writes never wait here: a socket that takes no more leaves its bytes
    /// queued (the link's write deadline judges that) and the reads go on. Before it waits,
    /// `coalescer` may hold the thread for a batch of frames (see `coalesce`) when `may_batch`
    /// (false: the caller only looks for what is ready now and flushes before it waits).
    pub(super) fn next_event<'s>(
        &'s mut self,
        coalescer: &'s mut Coalescer,
        may_batch: bool,
    ) -> impl Future<Output = Event> + 's {
        std::future::poll_fn(move |cx| {
            for seat in [0usize, 1] {
                let Some(occupied) = self.seats[seat].as_mut() else {
                    continue;
                };
                if let Poll::Ready(Err(error)) = occupied.link.poll_send(cx) {
                    return Poll::Ready(Event::WriteFailed { seat, error });
                }
                if let Poll::Ready(read) = occupied.reader.poll_next(cx) {
                    coalescer.read();
                    return Poll::Ready(Event::Read { seat, read });
                }
            }
            if let Poll::Ready(result) = self.open.as_mut().poll(cx) {
                // Re-armed before returning, so the finished future is never polled again.
                let idle = (self.open_replacement)(None);
                self.open.as_mut().set(idle);
                self.opening = false;
                return Poll::Ready(Event::Opened(result));
            }
            // Every waker is registered: what arrives during a batch wait wakes the task after.
            if may_batch {
                coalescer.before_idle();
            }
            Poll::Pending
        })
    }

    /// Starts the replacement's open when a rotation is due at `now` and none is under way.
    pub(super) fn start_if_due(&mut self, now: Instant, opener: &Opener) {
        let replacement = 1 - self.primary;
        if self.seats[replacement].is_none() && !self.opening && now >= self.next_at {
            let open = (self.open_replacement)(Some(opener.clone()));
            self.open.as_mut().set(open);
            self.opening = true;
        }
    }

    /// Seats the opened replacement beside the primary.
    pub(super) fn seat_replacement(&mut self, replacement_seat: Seat) {
        // No seat changes while the other seat is empty, so it is still free.
        let replacement = 1 - self.primary;
        self.seats[replacement] = Some(replacement_seat);
    }

    /// The replacement's open failed.
    pub(super) fn open_failed(&mut self) {
        self.next_at = Instant::now() + self.retry_after;
    }

    /// The venue announced the primary's end: rotate at the next tick.
    pub(super) fn rotate_now(&mut self) {
        self.next_at = Instant::now();
    }

    /// `seat` becomes the primary: it reads messages up to the full limit from now on.
    fn take_over(&mut self, seat: usize) {
        self.primary = seat;
        self.next_at = Instant::now() + self.rotate_after;
        if let Some(primary) = self.seats[seat].as_mut() {
            primary.reader.set_max_message_bytes(self.max_frame_bytes);
        }
    }

    /// The replacement on `seat` delivered: it becomes the primary and the old one is closed
    /// (one try at a close frame, without waiting: the reads must go on).
    pub(super) fn promote(&mut self, seat: usize) {
        if let Some(mut old) = self.seats[self.primary].take() {
            old.link.close_now();
        }
        self.take_over(seat);
    }

    /// Empties a dead seat; a dead primary's replacement, if any, takes over.
    pub(super) fn drop_seat(&mut self, seat: usize) -> Dropped {
        self.seats[seat] = None;
        if seat != self.primary {
            self.next_at = Instant::now() + self.retry_after;
            return Dropped::Replacement;
        }
        let Some(replacement) = self.seats[1 - seat].as_ref() else {
            return Dropped::Last;
        };
        let has_data = replacement.link.has_data();
        self.take_over(1 - seat);
        if has_data {
            Dropped::Rotated
        } else {
            Dropped::Hole
        }
    }

    /// Sends close frames on both seats' links, all bounded by `deadline`.
    pub(super) async fn close_all(&mut self, deadline: Duration) {
        let deadline = Instant::now() + deadline;
        for seat in self.seats.iter_mut().flatten() {
            seat.link.close(deadline).await;
        }
    }
}
