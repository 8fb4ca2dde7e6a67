//! The reorder buffer (`[[sources]] reorder_window_ms`): holds the records of the source's
//! partition consumers for up to a window and releases them in receive-time order, so a shard
//! sees a symbol's quotes in the order they were received even when collectors' messages
//! interleave differently in the stream (network delay, publish batching, a collector catching
//! up after an outage). With `[windows] clock = "event"`, this is what makes an aggregator's
//! answer independent of arrival order.
//!
//! One buffer per consumer (a partition): its release order is a function of the order the
//! consumer delivers, never of timing, so two engines reading one stream, or one engine reading
//! it twice, release the same records in the same order. A record is released when its receive
//! time is at least a window behind the newest receive time the consumer delivered, when nothing
//! arrived for a window of wall time and the consumer said nothing more was pending (a quiet
//! partition, or the end of a backlog), when it has been held for `max_hold` (the consumer
//! stalled with messages pending: JetStream would redeliver held messages after its ack wait), or
//! when the buffer is over capacity (the oldest first, counted). A record arriving behind what
//! was already released is late: released at once and counted, never dropped.
//!
//! Bounded: at most `capacity` records; the caller sizes it below what JetStream delivers
//! unacknowledged to the consumer, so a full buffer never stops delivery.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Why a record left the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// A window behind the newest receive time, or the flow stopped.
    InOrder,
    /// The buffer was full: released before its window was over.
    Overflow,
    /// It arrived behind a record already released: released at once.
    Late,
}

struct Held<T> {
    ts_ns: i64,
    /// Arrival order: equal receive times leave in the order they came.
    arrival: u64,
    item: T,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Held<T> {
    /// Reversed: `BinaryHeap` is a max-heap; the earliest receive time is on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.ts_ns, other.arrival).cmp(&(self.ts_ns, self.arrival))
    }
}

/// Records held for reordering; `T` is what the caller needs to apply and acknowledge one.
pub struct ReorderBuffer<T> {
    heap: BinaryHeap<Held<T>>,
    window_ns: i64,
    window: Duration,
    max_hold: Duration,
    capacity: usize,
    /// The consumer said more messages were pending when it delivered the last one.
    more_coming: bool,
    /// The newest receive time inserted.
    newest_ns: i64,
    /// The receive time of the last record released in order.
    released_ns: i64,
    arrivals: u64,
    last_insert: Option<Instant>,
}

impl<T> ReorderBuffer<T> {
    /// A buffer holding up to `capacity` records (at least one) for `window`, and never longer
    /// than `max_hold` (at least `window`).
    pub fn new(window: Duration, capacity: usize, max_hold: Duration) -> ReorderBuffer<T> {
        ReorderBuffer {
            heap: BinaryHeap::new(),
            window_ns: i64::try_from(window.as_nanos()).unwrap_or(i64::MAX),
            window,
            max_hold: max_hold.max(window),
            capacity: capacity.max(1),
            more_coming: false,
            newest_ns: i64::MIN,
            released_ns: i64::MIN,
            arrivals: 0,
            last_insert: None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Takes a record received at `ts_ns`, delivered at `now`; `more_coming`: the consumer had
    /// more messages pending behind it. A late one (behind what was released) comes back at once,
    /// for the caller to apply now.
    pub fn insert(&mut self, ts_ns: i64, item: T, now: Instant, more_coming: bool) -> Option<T> {
        self.more_coming = more_coming;
        if ts_ns < self.released_ns {
            self.last_insert = Some(now);
            return Some(item);
        }
        self.newest_ns = self.newest_ns.max(ts_ns);
        self.arrivals += 1;
        self.last_insert = Some(now);
        self.heap.push(Held {
            ts_ns,
            arrival: self.arrivals,
            item,
        });
        None
    }

    /// How long after the last arrival everything held is released.
    fn quiet_for(&self) -> Duration {
        if self.more_coming {
            self.max_hold
        } else {
            self.window
        }
    }

    /// The next record due at `now`, if any.
    pub fn pop_ready(&mut self, now: Instant) -> Option<(T, Released)> {
        let top_ts_ns = self.heap.peek()?.ts_ns;
        let horizon_ns = self.newest_ns.saturating_sub(self.window_ns);
        let flow_stopped = self
            .last_insert
            .is_some_and(|last| now.saturating_duration_since(last) >= self.quiet_for());
        let why = if top_ts_ns <= horizon_ns || flow_stopped {
            Released::InOrder
        } else if self.heap.len() > self.capacity {
            Released::Overflow
        } else {
            return None;
        };
        let held = self.heap.pop()?;
        self.released_ns = self.released_ns.max(held.ts_ns);
        Some((held.item, why))
    }

    /// When everything held will be due if nothing else arrives; `None` when empty.
    pub fn next_due(&self) -> Option<Instant> {
        if self.heap.is_empty() {
            return None;
        }
        self.last_insert.map(|last| last + self.quiet_for())
    }

    /// Everything held, in receive-time order (the session ended; the caller applies or drops
    /// them).
    pub fn drain_in_order(&mut self) -> Vec<T> {
        let mut items = Vec::with_capacity(self.heap.len());
        while let Some(held) = self.heap.pop() {
            self.released_ns = self.released_ns.max(held.ts_ns);
            items.push(held.item);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn buffer(window_ms: u64, capacity: usize) -> ReorderBuffer<i64> {
        ReorderBuffer::new(
            Duration::from_millis(window_ms),
            capacity,
            Duration::from_secs(15),
        )
    }

    fn drain_ready(buffer: &mut ReorderBuffer<i64>, now: Instant) -> Vec<i64> {
        std::iter::from_fn(|| buffer.pop_ready(now).map(|(item, _)| item)).collect()
    }

    #[test]
    fn records_leave_in_receive_time_order_a_window_behind_the_newest() {
        let mut buffer = buffer(100, 1_000);
        let now = Instant::now();
        // Arrival order interleaves two collectors; receive times are the truth.
        for ts in [10, 30, 20, 50, 40, 60] {
            assert_eq!(buffer.insert(ts * MS, ts, now, true), None);
        }
        assert!(
            drain_ready(&mut buffer, now).is_empty(),
            "nothing is a window old yet"
        );
        buffer.insert(145 * MS, 145, now, true);
        assert_eq!(drain_ready(&mut buffer, now), vec![10, 20, 30, 40]);
        buffer.insert(200 * MS, 200, now, true);
        assert_eq!(drain_ready(&mut buffer, now), vec![50, 60]);
        assert_eq!(buffer.len(), 2);
    }

    #[test]
    fn a_quiet_consumer_releases_everything_a_window_after_its_last_arrival() {
        let mut buffer = buffer(100, 1_000);
        let start = Instant::now();
        for ts in [3, 1, 2] {
            buffer.insert(ts * MS, ts, start, false);
        }
        assert_eq!(buffer.next_due(), Some(start + Duration::from_millis(100)));
        assert!(drain_ready(&mut buffer, start + Duration::from_millis(99)).is_empty());
        assert_eq!(
            drain_ready(&mut buffer, start + Duration::from_millis(100)),
            vec![1, 2, 3]
        );
        assert_eq!(buffer.next_due(), None);
    }

    #[test]
    fn with_messages_pending_a_pause_holds_until_max_hold() {
        // A slow reader of a backlog: a pause between deliveries must not release early (the
        // next records would then be late), but nothing is held past max_hold.
        let mut buffer = buffer(100, 1_000);
        let start = Instant::now();
        buffer.insert(5 * MS, 5, start, true);
        assert!(drain_ready(&mut buffer, start + Duration::from_secs(1)).is_empty());
        assert_eq!(buffer.next_due(), Some(start + Duration::from_secs(15)));
        assert_eq!(
            drain_ready(&mut buffer, start + Duration::from_secs(15)),
            vec![5]
        );
    }

    #[test]
    fn a_full_buffer_releases_its_oldest_early_and_says_so() {
        let mut buffer = buffer(10_000, 2);
        let now = Instant::now();
        for ts in [5, 4, 3] {
            buffer.insert(ts * MS, ts, now, true);
        }
        assert_eq!(buffer.pop_ready(now), Some((3, Released::Overflow)));
        assert_eq!(buffer.pop_ready(now), None, "at capacity, not over it");
    }

    #[test]
    fn a_record_behind_what_was_released_comes_back_at_once() {
        let mut buffer = buffer(100, 1_000);
        let now = Instant::now();
        buffer.insert(10 * MS, 10, now, true);
        buffer.insert(300 * MS, 300, now, true);
        assert_eq!(drain_ready(&mut buffer, now), vec![10]);
        assert_eq!(buffer.insert(5 * MS, 5, now, true), Some(5), "late");
        assert_eq!(
            buffer.insert(10 * MS, 11, now, true),
            None,
            "equal to the last released: in order"
        );
        assert_eq!(buffer.drain_in_order(), vec![11, 300]);
    }

    #[test]
    fn equal_receive_times_keep_their_arrival_order() {
        let mut buffer = buffer(0, 1_000);
        let now = Instant::now();
        for item in [1, 2, 3] {
            buffer.insert(7 * MS, item, now, true);
        }
        assert_eq!(drain_ready(&mut buffer, now), vec![1, 2, 3]);
    }

    #[test]
    fn the_release_order_depends_on_the_delivery_order_only() {
        // The same deliveries, read fast and read with pauses, release the same sequence.
        let deliveries: Vec<i64> = (0..200).map(|i| (i * 37 % 50) + i * 3).collect();
        let run = |pause: Duration| {
            let mut buffer = buffer(60, 1_000);
            let mut now = Instant::now();
            let mut out = Vec::new();
            for (index, ts) in deliveries.iter().enumerate() {
                let more_coming = index + 1 < deliveries.len();
                if let Some(late) = buffer.insert(ts * MS, *ts, now, more_coming) {
                    out.push(late);
                }
                out.extend(drain_ready(&mut buffer, now));
                now += pause;
            }
            out.extend(drain_ready(&mut buffer, now + Duration::from_millis(60)));
            out
        };
        let fast = run(Duration::ZERO);
        assert_eq!(fast.len(), deliveries.len());
        assert_eq!(fast, run(Duration::from_secs(1)));
        let mut sorted = deliveries.clone();
        sorted.sort_unstable();
        assert_eq!(
            fast, sorted,
            "displacements within the window are all undone"
        );
    }
}
