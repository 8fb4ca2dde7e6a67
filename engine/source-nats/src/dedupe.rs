//! Applied-once filtering, no I/O, fixed-size.
//!
//! *Redeliveries* are told by JetStream's own numbers: per consumer, the stream sequences this
//! source handled ([`StreamPositions`]: the highest and, in a circle, a fingerprint of the
//! payload handled at each of the [`STREAM_WINDOW_SEQS`] numbers below it, wide enough for what
//! a restarted server redelivers). A stream sequence already handled with the same payload is a
//! redelivery (an acknowledgement lost, the ack wait expired while the record waited for ring
//! room, a restarted server that lost its consumers' state) and is skipped; with another payload
//! the stream reused the number (its tail lost with a killed node, or re-created) and the message
//! is new. A lower number
//! never handled is *not* one: a message lost in transit (a dropped connection, a session
//! restarted with messages buffered) comes back after newer ones and is applied. Below the window
//! nothing is known, so the message is applied (at least once, never lost).
//!
//! *Publish duplicates* (a collector re-sending a message JetStream already stored) are
//! JetStream's job: the sink sets `Nats-Msg-Id` (`<collector>-<seq>`) and the stream drops a
//! repeated id within its duplicate window.
//!
//! As a secondary check, [`SequenceFilter`] keeps, per (consumer, collector), the highest
//! collector sequence number (`seq`) applied and a bitmap of the [`WINDOW_SEQS`] numbers below
//! it: a number inside the window already applied is a record stored twice (re-published under
//! another id, after the duplicate window) and is skipped. A number below the highest that the
//! window cannot vouch for — older than the window, or never seen — is *applied* and reported as
//! out of order (counted by the caller): a re-send stored far behind newer messages is an
//! acknowledged record and is never dropped for its age.

use std::collections::HashMap;

/// Collector sequence numbers below the highest applied that are still told apart, per
/// (consumer, collector) (32 KiB each): what a restarted server redelivers, even when it lost
/// the delivery counts that tell a redelivery from a first delivery.
pub const WINDOW_SEQS: u64 = 1 << 18;
/// Stream sequence numbers below the highest handled on a consumer that are still told apart
/// (a 4-byte fingerprint each: 2 MiB per consumer, allocated when it handles its first message;
/// about 13 s of a 40 000 messages/s stream).
pub const STREAM_WINDOW_SEQS: u64 = 1 << 19;

/// The numbers handled from one series: the highest, and a bit per number of the `bits` up to it,
/// kept in a circle (bit `n % bits`), so moving the highest up clears only the bits it passes.
#[derive(Clone, Debug)]
struct RingWindow {
    highest: u64,
    bits: Box<[u64]>,
}

impl RingWindow {
    /// Keeps at least the `bits` numbers below the highest (a word more: the highest itself).
    fn new(seq: u64, bits: u64) -> RingWindow {
        let mut window = RingWindow {
            highest: seq,
            bits: vec![0; bits.div_ceil(64) as usize + 1].into_boxed_slice(),
        };
        window.set(seq);
        window
    }

    fn size(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let index = seq % self.size();
        ((index / 64) as usize, 1 << (index % 64))
    }

    fn set(&mut self, seq: u64) {
        let (word, bit) = self.slot(seq);
        self.bits[word] |= bit;
    }

    /// Clears the slots of `from..to` (fewer than a circle), a word at a time.
    fn clear_range(&mut self, mut from: u64, to: u64) {
        let size = self.size();
        while from < to {
            let index = from % size;
            let offset = index % 64;
            let count = (64 - offset).min(to - from);
            let mask = if count == 64 {
                u64::MAX
            } else {
                ((1u64 << count) - 1) << offset
            };
            self.bits[(index / 64) as usize] &= !mask;
            from += count;
        }
    }

    fn peek(&self, seq: u64) -> Admit {
        if seq > self.highest {
            return Admit::Apply;
        }
        if self.highest - seq >= self.size() {
            return Admit::OutOfOrder;
        }
        let (word, bit) = self.slot(seq);
        if self.bits[word] & bit != 0 {
            Admit::Duplicate
        } else {
            Admit::OutOfOrder
        }
    }

    fn admit(&mut self, seq: u64) -> Admit {
        let admit = self.peek(seq);
        if seq > self.highest {
            let passed = seq - self.highest;
            if passed >= self.size() {
                self.bits.fill(0);
            } else {
                // The numbers passed over are not handled (yet): their slots held numbers a
                // whole circle older.
                self.clear_range(self.highest + 1, seq);
            }
            self.highest = seq;
            self.set(seq);
        } else if self.highest - seq < self.size() {
            self.set(seq);
        }
        admit
    }
}

/// What [`SequenceFilter::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Never applied, above every number applied: apply it (it is now marked applied).
    Apply,
    /// Below the highest number applied and not known to be applied (a hole filled late, or
    /// older than the window): apply it, and count it out of order.
    OutOfOrder,
    /// Applied before (inside the window): acknowledge and skip.
    Duplicate,
}

/// Per (consumer, collector index): the applied numbers. Bounded by the number of consumers ×
/// `max_collectors` (the collectors' table is bounded by the caller).
#[derive(Debug, Default)]
pub struct SequenceFilter {
    windows: HashMap<(u16, u16), RingWindow>,
}

impl SequenceFilter {
    /// Decides whether message `seq` of `collector` on `consumer` is applied.
    pub fn admit(&mut self, consumer: u16, collector: u16, seq: u64) -> Admit {
        match self.windows.get_mut(&(consumer, collector)) {
            Some(window) => window.admit(seq),
            None => {
                self.windows
                    .insert((consumer, collector), RingWindow::new(seq, WINDOW_SEQS));
                Admit::Apply
            }
        }
    }

    /// What [`SequenceFilter::admit`] would decide, without marking anything.
    pub fn peek(&self, consumer: u16, collector: u16, seq: u64) -> Admit {
        self.windows
            .get(&(consumer, collector))
            .map_or(Admit::Apply, |window| window.peek(seq))
    }

    /// Bytes one (consumer, collector) entry takes, for the memory budget.
    pub const fn entry_bytes() -> usize {
        std::mem::size_of::<RingWindow>() + 16 + (WINDOW_SEQS / 8 + 8) as usize
    }
}

/// What a consumer's stream sequence number says about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Above everything handled: a new message.
    New,
    /// Handled before, with the same payload: a redelivery (skip it).
    Redelivered,
    /// Handled before with another payload: the stream gave this number again (its tail was
    /// lost with a killed node, or it was re-created). A new message.
    Reused,
    /// Below the highest, not handled (a message lost in transit, delivered again after newer
    /// ones), or older than the window (not known): applied rather than lost.
    Unknown,
}

/// The fingerprint of a payload: FNV-1a over its bytes, never 0 (0 marks a slot not handled).
pub fn fingerprint(payload: &[u8]) -> u32 {
    let mut hash = tickflow_formats::wire::FNV1A_OFFSET_BASIS;
    for byte in payload {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(tickflow_formats::wire::FNV1A_PRIME);
    }
    hash.max(1)
}

/// One consumer's handled stream sequences: the highest, and per number of the
/// [`STREAM_WINDOW_SEQS`] up to it the fingerprint of the payload handled (0: none), in a circle.
#[derive(Clone, Debug)]
struct FingerprintRing {
    highest: u64,
    slots: Box<[u32]>,
}

impl FingerprintRing {
    fn new(size: u64) -> FingerprintRing {
        FingerprintRing {
            highest: 0,
            slots: vec![0; size as usize].into_boxed_slice(),
        }
    }

    fn size(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&self, seq: u64) -> usize {
        (seq % self.size()) as usize
    }

    fn position(&self, seq: u64, fingerprint: u32) -> Position {
        if seq > self.highest {
            return Position::New;
        }
        if self.highest - seq >= self.size() {
            return Position::Unknown;
        }
        match self.slots[self.slot(seq)] {
            0 => Position::Unknown,
            handled if handled == fingerprint => Position::Redelivered,
            _ => Position::Reused,
        }
    }

    fn handled(&mut self, seq: u64, fingerprint: u32) {
        if seq > self.highest {
            let passed = seq - self.highest;
            if passed >= self.size() {
                self.slots.fill(0);
            } else {
                // The numbers passed over are not handled (yet): their slots held numbers a
                // whole circle older.
                for skipped in self.highest + 1..seq {
                    let slot = self.slot(skipped);
                    self.slots[slot] = 0;
                }
            }
            self.highest = seq;
        } else if self.highest - seq >= self.size() {
            return;
        }
        let slot = self.slot(seq);
        self.slots[slot] = fingerprint;
    }
}

/// Per consumer (by its index in the session's consumer list, stable for a configuration): the
/// stream sequences handled and a fingerprint of each payload, exact for the
/// [`STREAM_WINDOW_SEQS`] below the highest: a redelivery is told from a new message at a
/// reused number by its payload, not by JetStream's delivery count (a restarted server may have
/// lost its consumers' counts and redeliver far back as first deliveries). Bounded by the number
/// of consumers (`MAX_SUBJECTS` + 1).
#[derive(Debug, Default)]
pub struct StreamPositions {
    rings: Vec<Option<FingerprintRing>>,
}

impl StreamPositions {
    /// What `stream_sequence` on `consumer`, carrying a payload of `fingerprint`, is.
    pub fn position(&self, consumer: u16, stream_sequence: u64, fingerprint: u32) -> Position {
        self.rings
            .get(consumer as usize)
            .and_then(Option::as_ref)
            .map_or(Position::New, |ring| {
                ring.position(stream_sequence, fingerprint)
            })
    }

    /// `stream_sequence` on `consumer` is handled (applied, or skipped on purpose).
    pub fn handled(&mut self, consumer: u16, stream_sequence: u64, fingerprint: u32) {
        let index = consumer as usize;
        if self.rings.len() <= index {
            self.rings.resize_with(index + 1, || None);
        }
        self.rings[index]
            .get_or_insert_with(|| FingerprintRing::new(STREAM_WINDOW_SEQS))
            .handled(stream_sequence, fingerprint);
    }

    /// Bytes one consumer's entry takes, for the memory budget.
    pub const fn entry_bytes() -> usize {
        std::mem::size_of::<FingerprintRing>() + (STREAM_WINDOW_SEQS * 4) as usize
    }
}

/// Collector ids seen, interned to small indexes; at most `capacity` (then `None`, counted by
/// the caller).
#[derive(Debug)]
pub struct Collectors {
    indexes: HashMap<String, u16>,
    names: Vec<String>,
    capacity: usize,
}

impl Collectors {
    pub fn new(capacity: usize) -> Collectors {
        Collectors {
            indexes: HashMap::with_capacity(capacity),
            names: Vec::with_capacity(capacity),
            capacity: capacity.min(u16::MAX as usize),
        }
    }

    /// The index of `name`, interning it when new and there is room.
    pub fn index(&mut self, name: &str) -> Option<u16> {
        if let Some(index) = self.indexes.get(name) {
            return Some(*index);
        }
        if self.names.len() >= self.capacity {
            return None;
        }
        let index = self.names.len() as u16;
        self.names.push(name.to_string());
        self.indexes.insert(name.to_string(), index);
        Some(index)
    }

    pub fn name(&self, index: u16) -> Option<&str> {
        self.names.get(index as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(seqs: &[u64], expected: &[Admit]) {
        let mut filter = SequenceFilter::default();
        let got: Vec<Admit> = seqs.iter().map(|seq| filter.admit(0, 0, *seq)).collect();
        assert_eq!(got, expected, "seqs {seqs:?}");
    }

    #[test]
    fn in_order_then_redelivered() {
        use Admit::*;
        check(
            &[10, 11, 12, 11, 12, 10],
            &[Apply, Apply, Apply, Duplicate, Duplicate, Duplicate],
        );
    }

    #[test]
    fn a_hole_filled_later_is_applied_once() {
        use Admit::*;
        // 101 arrives after 103 (a re-publish stored late): applied once, then a duplicate.
        check(
            &[100, 102, 103, 101, 101, 102],
            &[Apply, Apply, Apply, OutOfOrder, Duplicate, Duplicate],
        );
    }

    #[test]
    fn far_jumps_and_the_window_edge() {
        use Admit::*;
        let high = 1_000_000;
        check(
            &[5, high, high - WINDOW_SEQS, high - WINDOW_SEQS - 1, 6],
            &[Apply, Apply, OutOfOrder, OutOfOrder, OutOfOrder],
        );
        // Shifting by exactly the window keeps the old highest as the window's last number.
        check(
            &[7, 7 + WINDOW_SEQS, 7, 8],
            &[Apply, Apply, Duplicate, OutOfOrder],
        );
        // Shifts across word boundaries keep every bit.
        let seqs: Vec<u64> = (0..300).map(|step| step * 3).collect();
        let mut filter = SequenceFilter::default();
        for seq in &seqs {
            assert_eq!(filter.admit(1, 2, *seq), Apply);
        }
        for seq in &seqs {
            assert_eq!(filter.peek(1, 2, *seq), Duplicate, "{seq}");
            assert_eq!(filter.admit(1, 2, *seq), Duplicate, "{seq}");
        }
        assert_eq!(filter.peek(1, 2, 1), OutOfOrder);
        assert_eq!(filter.admit(1, 2, 1), OutOfOrder);
        // Another consumer or collector has its own numbers.
        assert_eq!(filter.admit(2, 2, 3), Apply);
        assert_eq!(filter.admit(1, 3, 3), Apply);
    }

    #[test]
    fn numbers_older_than_the_window_are_applied_not_dropped() {
        use Admit::*;
        // A re-send stored 10 000 numbers behind newer messages: applied (out of order).
        check(&[20_000, 20_001, 10_000], &[Apply, Apply, OutOfOrder]);
    }

    #[test]
    fn the_ring_window_agrees_with_a_set_of_every_number_handled() {
        // A small circle, numbers moving up by 0 to 300 with some below the highest: the window
        // says Duplicate exactly for numbers handled within a circle of the highest.
        let mut window = RingWindow::new(1, 128);
        let size = window.size();
        assert!(size >= 128);
        let mut handled = std::collections::HashSet::from([1u64]);
        let mut state: u64 = 12_345;
        let mut highest = 1u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let step = (state >> 33) % 300;
            let seq = if state % 5 == 0 {
                highest.saturating_sub(step % 200)
            } else {
                highest + step % 70
            };
            window.admit(seq);
            handled.insert(seq);
            highest = highest.max(seq);
            for probe in highest.saturating_sub(size + 12)..=highest + 1 {
                let expected = if probe > highest {
                    Admit::Apply
                } else if highest - probe >= size || !handled.contains(&probe) {
                    Admit::OutOfOrder
                } else {
                    Admit::Duplicate
                };
                assert_eq!(window.peek(probe), expected, "{probe} (highest {highest})");
            }
        }
    }

    #[test]
    fn stream_positions_tell_redeliveries_from_reused_numbers_per_consumer() {
        use Position::*;
        let mut positions = StreamPositions::default();
        assert_eq!(positions.position(0, 1, 11), New);
        positions.handled(0, 1, 11);
        positions.handled(0, 5, 55);
        assert_eq!(positions.position(0, 1, 11), Redelivered);
        assert_eq!(positions.position(0, 5, 55), Redelivered);
        assert_eq!(positions.position(0, 6, 66), New);
        // The same number with another payload: the stream gave it again.
        assert_eq!(positions.position(0, 5, 99), Reused);
        // A number below the highest never handled (lost in transit, delivered again after
        // newer ones) is not a redelivery: applied, then known.
        assert_eq!(positions.position(0, 3, 33), Unknown);
        positions.handled(0, 3, 33);
        assert_eq!(positions.position(0, 3, 33), Redelivered);
        // Another consumer has its own numbers.
        assert_eq!(positions.position(3, 2, 22), New);
        positions.handled(3, 2, 22);
        assert_eq!(positions.position(3, 2, 22), Redelivered);
        // A restarted server redelivers from its acknowledgement floor: far back, still known.
        let far = 5 + STREAM_WINDOW_SEQS / 2;
        positions.handled(0, far, 7);
        assert_eq!(positions.position(0, 5, 55), Redelivered);
        assert_eq!(positions.position(0, 4, 44), Unknown);
        // The circle moves on: numbers passed over are not handled, whatever their slot held.
        positions.handled(0, far + 10, 8);
        assert_eq!(positions.position(0, far + 5, 9), Unknown);
        // Below the window: not known, so applied rather than lost.
        positions.handled(0, 100 + 2 * STREAM_WINDOW_SEQS, 10);
        assert_eq!(positions.position(0, far, 7), Unknown);
        assert_eq!(
            positions.position(0, 100 + 2 * STREAM_WINDOW_SEQS, 10),
            Redelivered
        );
    }

    #[test]
    fn fingerprints_are_never_zero_and_tell_payloads_apart() {
        assert_ne!(fingerprint(b""), 0);
        assert_ne!(fingerprint(b"quote 1"), fingerprint(b"quote 2"));
        assert_eq!(fingerprint(b"quote 1"), fingerprint(b"quote 1"));
    }

    #[test]
    fn collectors_are_bounded() {
        let mut collectors = Collectors::new(2);
        assert_eq!(collectors.index("a"), Some(0));
        assert_eq!(collectors.index("b"), Some(1));
        assert_eq!(collectors.index("a"), Some(0));
        assert_eq!(collectors.index("c"), None);
        assert_eq!(collectors.name(1), Some("b"));
    }
}
