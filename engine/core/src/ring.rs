//! Bounded single-producer single-consumer rings between pipeline stages (rtrb), with batch push
//! and pop helpers.
//!
//! rtrb is used as-is: its indices are cache-padded and its chunk API gives batch operations; the
//! ring benchmark (`benches/benches/ring.rs`) compares it with crossbeam's `ArrayQueue` in the same
//! run, and nothing here is hand-written lock-free code. A full ring never blocks the producer: the
//! caller drops the newest record and counts it.

pub use rtrb::{Consumer, Producer, RingBuffer};

/// Creates a ring of `capacity_records` slots.
pub fn ring<T>(capacity_records: usize) -> (Producer<T>, Consumer<T>) {
    RingBuffer::new(capacity_records)
}

/// Pushes as many of `records` as fit, in order; returns how many were pushed. The rest are the
/// newest and are the caller's to count as dropped.
#[inline]
pub fn push_batch<T: Copy>(producer: &mut Producer<T>, records: &[T]) -> usize {
    let count = records.len().min(producer.slots());
    if count == 0 {
        return 0;
    }
    match producer.write_chunk_uninit(count) {
        Ok(chunk) => chunk.fill_from_iter(records[..count].iter().copied()),
        // `slots()` said `count` were free and only this producer fills them.
        Err(_) => 0,
    }
}

/// Pops up to `max_records` records, handing each to `handle` in order; returns how many.
#[inline]
pub fn pop_batch<T: Copy>(
    consumer: &mut Consumer<T>,
    max_records: usize,
    mut handle: impl FnMut(&T),
) -> usize {
    let count = consumer.slots().min(max_records);
    if count == 0 {
        return 0;
    }
    match consumer.read_chunk(count) {
        Ok(chunk) => {
            let (first, second) = chunk.as_slices();
            first.iter().chain(second.iter()).for_each(&mut handle);
            chunk.commit_all();
            count
        }
        // `slots()` said `count` were readable and only this consumer takes them.
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_order_and_full_ring_refuses_newest() {
        let (mut producer, mut consumer) = ring::<u64>(8);
        let values: Vec<u64> = (0..12).collect();
        assert_eq!(push_batch(&mut producer, &values), 8);
        assert_eq!(push_batch(&mut producer, &values[8..]), 0);
        let mut seen = Vec::new();
        assert_eq!(pop_batch(&mut consumer, 5, |v| seen.push(*v)), 5);
        assert_eq!(push_batch(&mut producer, &values[8..]), 4);
        assert_eq!(pop_batch(&mut consumer, 100, |v| seen.push(*v)), 7);
        assert_eq!(seen, values);
        assert_eq!(pop_batch(&mut consumer, 100, |_| {}), 0);
    }
}
