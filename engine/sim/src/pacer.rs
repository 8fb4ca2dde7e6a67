//! Paced mode (`SimConfig::paced`): one aggregate data rate over every session of every venue,
//! handed out as tickets. A pacer thread releases tickets on schedule (an OS thread, because
//! tokio's timer wheel has a 1 ms resolution and 50 000 frames/s must be spaced by 20 µs); a
//! session holding a ticket writes and flushes exactly one best bid/ask frame, so each frame
//! leaves in its own WebSocket write, TLS record and socket write, the way real venues' frames
//! arrive. The rate is set at run time (`SimVenues::set_paced_frames_per_s`) and starts at 0: no
//! data, keep-alive only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The pacer thread looks at the rate at least this often while the rate is 0.
const IDLE_POLL: Duration = Duration::from_millis(5);
/// Longest sleep between two releases at a non-zero rate (bounds how late a rate change lands).
const MAX_SLEEP: Duration = Duration::from_millis(1);
/// Shortest sleep, so that a pacer whose sessions fall behind does not spin.
const MIN_SLEEP: Duration = Duration::from_micros(10);
/// Tickets released but not yet taken are capped at this much time's worth of frames: sessions
/// that fall behind skip frames (counted) instead of bursting later.
const MAX_BACKLOG_S: f64 = 0.1;

/// Tickets shared by the pacer thread and every session.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    /// Aggregate frames per second (`f64` bits); 0 = no data.
    frames_per_s_bits: AtomicU64,
    /// Bumped on every rate change: the schedule restarts from the change.
    rate_generation: AtomicU64,
    /// Tickets released so far (monotonic).
    released: AtomicU64,
    /// Tickets taken by sessions so far (never above `released`, but for a rate change race).
    taken: AtomicU64,
    /// Frames the schedule owed but no session took in time (the sessions fell behind).
    skipped: AtomicU64,
    due: tokio::sync::Notify,
}

impl Pacer {
    pub(crate) fn set_frames_per_s(&self, frames_per_s: f64) {
        let frames_per_s = if frames_per_s.is_finite() {
            frames_per_s.max(0.0)
        } else {
            0.0
        };
        self.frames_per_s_bits
            .store(frames_per_s.to_bits(), Ordering::SeqCst);
        self.rate_generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn frames_per_s(&self) -> f64 {
        f64::from_bits(self.frames_per_s_bits.load(Ordering::SeqCst))
    }

    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::SeqCst)
    }

    /// Waits for a ticket and takes it. Cancel-safe: a ticket is only taken in the poll that
    /// returns it, so a `select!` that drops this future loses none.
    pub(crate) async fn take(&self) {
        loop {
            // Created before the check, so a release between the check and the await still
            // wakes us (`notify_waiters` reaches every `Notified` that exists).
            let notified = self.due.notified();
            if self.try_take() {
                return;
            }
            notified.await;
        }
    }

    fn try_take(&self) -> bool {
        self.taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |taken| {
                (taken < self.released.load(Ordering::SeqCst)).then_some(taken + 1)
            })
            .is_ok()
    }
}

/// Starts the pacer thread. It stops when `cancel` fires or when the pacer is dropped (the
/// simulator and all its tasks are gone), within `IDLE_POLL`.
pub(crate) fn start(
    pacer: &Arc<Pacer>,
    cancel: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    let pacer = Arc::downgrade(pacer);
    std::thread::Builder::new()
        .name("tickflow-sim-pacer".to_owned())
        .spawn(move || run(pacer, cancel))
}

/// The schedule since the last rate change.
struct Schedule {
    generation: u64,
    started: Instant,
    /// `taken` when the schedule started: tickets owed are counted from there.
    base: u64,
    /// Tickets skipped since the schedule started.
    skipped: u64,
}

fn run(pacer: Weak<Pacer>, cancel: CancellationToken) {
    let mut schedule: Option<Schedule> = None;
    while !cancel.is_cancelled() {
        let Some(pacer) = pacer.upgrade() else {
            return;
        };
        let generation = pacer.rate_generation.load(Ordering::SeqCst);
        let frames_per_s = pacer.frames_per_s();
        let schedule = match &mut schedule {
            Some(schedule) if schedule.generation == generation => schedule,
            slot => {
                // A new rate starts now, with no debt from the old one.
                let base = pacer.taken.load(Ordering::SeqCst);
                pacer.released.store(base, Ordering::SeqCst);
                slot.insert(Schedule {
                    generation,
                    started: Instant::now(),
                    base,
                    skipped: 0,
                })
            }
        };
        if frames_per_s <= 0.0 {
            drop(pacer);
            std::thread::sleep(IDLE_POLL);
            continue;
        }
        let elapsed_s = schedule.started.elapsed().as_secs_f64();
        let owed_since_start = (elapsed_s * frames_per_s) as u64;
        let mut due = schedule.base + owed_since_start.saturating_sub(schedule.skipped);
        let backlog_cap =
            pacer.taken.load(Ordering::SeqCst) + ((frames_per_s * MAX_BACKLOG_S) as u64).max(1);
        if due > backlog_cap {
            let behind = due - backlog_cap;
            schedule.skipped += behind;
            pacer.skipped.fetch_add(behind, Ordering::SeqCst);
            due = backlog_cap;
        }
        if due > pacer.released.load(Ordering::SeqCst) {
            pacer.released.store(due, Ordering::SeqCst);
            pacer.due.notify_waiters();
        }
        let next_ticket_s = (owed_since_start + 1) as f64 / frames_per_s;
        let sleep = Duration::from_secs_f64((next_ticket_s - elapsed_s).max(0.0));
        drop(pacer);
        std::thread::sleep(sleep.clamp(MIN_SLEEP, MAX_SLEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ticket_at_rate_zero_and_tickets_once_a_rate_is_set() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime starts");
        let pacer = Arc::new(Pacer::default());
        let cancel = CancellationToken::new();
        let thread = start(&pacer, cancel.clone()).expect("the pacer thread starts");
        std::thread::sleep(IDLE_POLL * 4);
        assert!(!pacer.try_take(), "rate 0 releases nothing");
        pacer.set_frames_per_s(10_000.0);
        runtime.block_on(async {
            for _ in 0..20 {
                tokio::time::timeout(Duration::from_secs(20), pacer.take())
                    .await
                    .expect("tickets are released at a non-zero rate");
            }
        });
        cancel.cancel();
        thread
            .join()
            .expect("the pacer thread exits without panicking");
    }

    #[test]
    fn the_thread_stops_when_the_pacer_is_dropped() {
        let pacer = Arc::new(Pacer::default());
        let thread = start(&pacer, CancellationToken::new()).expect("the pacer thread starts");
        drop(pacer);
        thread
            .join()
            .expect("the pacer thread exits without panicking");
    }
}
