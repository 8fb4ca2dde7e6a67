//! The bounded buffer between the runner thread (`on_batch`) and the publisher task, with the
//! sink's `when_full` policy. The runner never waits on it beyond a short lock; every record that
//! does not fit is counted.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tickflow_formats::wire::WireKind;
use tokio::sync::Notify;

use crate::config::WhenFull;
use crate::counters::Counters;

/// One message ready to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub subject: String,
    pub payload: Bytes,
    /// The collector's sequence number (its message id is `<collector>-<seq>`).
    pub seq: u64,
    pub kind: WireKind,
}

/// A bounded FIFO of [`Outgoing`] messages.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    capacity: usize,
    when_full: WhenFull,
    notify: Notify,
}

impl Outbox {
    pub fn new(capacity: usize, when_full: WhenFull) -> Outbox {
        Outbox {
            // Grown on demand up to `capacity`: an idle sink holds little.
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
            when_full,
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Outgoing>> {
        // A panic while holding the lock leaves a consistent deque (push/pop only).
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds messages under one lock; returns how many were dropped by the policy (counted).
    pub fn push_all(&self, messages: impl IntoIterator<Item = Outgoing>, counters: &Counters) {
        let mut dropped = 0u64;
        let buffered = {
            let mut queue = self.lock();
            for message in messages {
                if queue.len() >= self.capacity {
                    dropped += 1;
                    match self.when_full {
                        WhenFull::DropNewest => continue,
                        WhenFull::DropOldest => {
                            queue.pop_front();
                        }
                    }
                }
                queue.push_back(message);
            }
            queue.len()
        };
        if dropped > 0 {
            counters
                .dropped_buffer_full
                .fetch_add(dropped, Ordering::Relaxed);
        }
        counters.buffered.store(buffered as u64, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Takes the oldest message.
    pub fn pop(&self, counters: &Counters) -> Option<Outgoing> {
        let mut queue = self.lock();
        let message = queue.pop_front();
        counters
            .buffered
            .store(queue.len() as u64, Ordering::Relaxed);
        message
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Removes everything (at the end of a shutdown drain); returns how many.
    pub fn clear(&self, counters: &Counters) -> usize {
        let mut queue = self.lock();
        let count = queue.len();
        queue.clear();
        counters.buffered.store(0, Ordering::Relaxed);
        count
    }

    /// Completes once something was pushed since the last wait (no wake-up is lost).
    pub async fn pushed(&self) {
        self.notify.notified().await;
    }
}
