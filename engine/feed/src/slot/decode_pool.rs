//! The decoding scratch the slots share: per feed worker thread, one decoder per venue and one
//! record batch. Owns no socket and decides nothing; a slot locks a scratch for the length of
//! one frame's decode and hand-off.
//!
//! Why shared and not one per slot: a decoder keeps the scratch of the largest frame it parsed
//! (simd-json's buffers and tape, HTX's inflate buffer: up to 19 × the frame), and venues send
//! frames of hundreds of KiB (Bybit: 1 024 trades in one message). One decoder per slot would
//! reserve that for every one of a hundred-odd slots. But decoding is synchronous inside a slot
//! task (no await between reading a frame's bytes and handing its records to the ring), so at
//! most one decode runs per worker thread at any instant, and one scratch per thread is enough.
//! Decoders keep nothing from one frame to the next but their scratch (symbols are looked up in
//! the registry every time), which is what lets any slot use any scratch. A decoded batch is
//! brought to the canonical price unit here (the registry's per-listing multipliers).
//!
//! Entries are as many as `feeds.worker_threads`. A slot tries its own entry first, then the
//! others, and waits for its own only when every entry is busy (a runtime with more threads than
//! configured); a decode holds an entry for microseconds.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use tickflow_core::record::TimestampNs;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::{VENUE_COUNT, Venue};
use tickflow_decode::{
    DecodeError, DecodeLimits, Decoder, FrameEncoding, FrameOutcome, RecordBatch, decoder_for,
};

/// Decoding scratch for `entries` threads decoding at once.
pub(crate) struct DecodePool {
    entries: Box<[Mutex<DecodeScratch>]>,
}

/// One thread's decoding scratch.
pub(crate) struct DecodeScratch {
    registry: Arc<SymbolRegistry>,
    limits: DecodeLimits,
    /// Made at a venue's first frame (then reused for every frame of that venue).
    decoders: [Option<Box<dyn Decoder>>; VENUE_COUNT],
    batch: RecordBatch,
}

impl DecodePool {
    pub(crate) fn new(
        entries: usize,
        registry: &Arc<SymbolRegistry>,
        limits: DecodeLimits,
    ) -> DecodePool {
        let entries = (0..entries.max(1))
            .map(|_| {
                Mutex::new(DecodeScratch {
                    registry: Arc::clone(registry),
                    limits,
                    decoders: std::array::from_fn(|_| None),
                    batch: RecordBatch::with_capacity(limits.max_records_per_frame),
                })
            })
            .collect();
        DecodePool { entries }
    }

    /// A scratch for one decode: entry `hint` if free, else any free one, else wait for `hint`.
    pub(crate) fn lock(&self, hint: usize) -> MutexGuard<'_, DecodeScratch> {
        let count = self.entries.len();
        for offset in 0..count {
            match self.entries[(hint + offset) % count].try_lock() {
                Ok(scratch) => return scratch,
                // A decoder panicked mid-frame (a bug): the scratch is cleared before each use.
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.entries[hint % count]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl DecodeScratch {
    /// Decodes one frame of `venue` into the batch (emptied first; empty again on error).
    pub(crate) fn decode(
        &mut self,
        venue: Venue,
        frame: &mut [u8],
        encoding: FrameEncoding,
        ts_recv_ns: TimestampNs,
    ) -> Result<FrameOutcome, DecodeError> {
        self.batch.clear();
        let registry = &self.registry;
        let limits = self.limits;
        let decoder = self.decoders[venue.index()]
            .get_or_insert_with(|| decoder_for(venue, Arc::clone(registry), limits));
        let outcome = decoder.decode(frame, encoding, ts_recv_ns, &mut self.batch);
        match outcome {
            // Listings quoted in a multiple of the asset (`1000PEPE`) to the canonical unit.
            Ok(_) => registry.apply_price_multipliers(venue, self.batch.as_mut_slice()),
            Err(_) => self.batch.clear(),
        }
        outcome
    }

    /// The records of the last decode.
    pub(crate) fn batch_mut(&mut self) -> &mut RecordBatch {
        &mut self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_scratch_is_passed_over_and_any_scratch_decodes_any_venue() {
        let registry = Arc::new(SymbolRegistry::new(8));
        registry.register("BNB-USDT").expect("room for one symbol");
        let pool = DecodePool::new(2, &registry, DecodeLimits::default());
        let held = pool.lock(0);
        // Entry 0 is busy: the same hint gets entry 1 at once instead of waiting.
        let mut free = pool.lock(0);
        assert!(!std::ptr::eq(&*held, &*free));
        let mut frame = br#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#.to_vec();
        let outcome = free.decode(Venue::Binance, &mut frame, FrameEncoding::Text, 1);
        assert_eq!(outcome, Ok(FrameOutcome::Records(1)));
        assert_eq!(free.batch_mut().len(), 1);
        // A refused frame leaves the batch empty.
        let mut bad = b"{not json".to_vec();
        assert!(
            free.decode(Venue::Okx, &mut bad, FrameEncoding::Text, 1)
                .is_err()
        );
        assert!(free.batch_mut().is_empty());
    }
}
