//! Venue decoders: one raw WebSocket frame in, normalized `Quote` / `Trade` records (or a
//! `GAP_QUOTE_WITHDRAWN` gap for a book with an empty side) or a control event out. Decoders parse
//! in place on the frame buffer and reuse their scratch buffers; they do no I/O, and no input can
//! make them panic. A decoder from [`decoder_for`] warns about the frames it refuses, at most once
//! per second per venue and error kind.

mod binance;
mod bitget;
mod bybit;
mod check;
mod counters;
mod gate;
mod htx;
mod json;
mod kucoin;
mod mexc;
mod number;
mod okx;
mod scan;
mod symbol;
mod tape;

pub use binance::BinanceDecoder;
pub use bitget::BitgetDecoder;
pub use bybit::BybitDecoder;
pub use counters::{DecodeCounters, DecodeCountersSnapshot, DecodeWarnLimiter};
pub use gate::GateDecoder;
pub use htx::HtxDecoder;
pub use kucoin::KucoinDecoder;
pub use mexc::proto as mexc_proto;
pub use okx::OkxDecoder;

use std::sync::Arc;

use tickflow_core::record::{FeedEvent, TimestampNs};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;

/// How a frame travelled: a WebSocket text frame or a binary frame (HTX gzip, MEXC protobuf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameEncoding {
    Text,
    Binary,
}

/// A non-data frame, recognized before any data parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlEvent {
    /// A subscription was accepted.
    SubscribeAck,
    /// A reply to our keep-alive ping.
    Pong,
    /// The server pinged in-band and expects `{"pong": n}` (HTX) or similar.
    ServerPing { nonce: u64 },
    /// The connection is ready for subscriptions (KuCoin `welcome`).
    Welcome,
    /// The server announced it will close this connection soon (Binance `serverShutdown`,
    /// OKX 64008, Gate `upgrade`): rotate to a fresh connection.
    ShutdownNotice,
    /// The venue replied with an error (bad subscription, rate limit, ...).
    ErrorReply { code: i64 },
    /// A data frame that carries nothing new (Bitget's trade snapshot right after subscribing).
    Snapshot,
}

/// What one frame turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameOutcome {
    /// This many records were appended to the output batch: quotes, trades, and
    /// `GAP_QUOTE_WITHDRAWN` gaps (a best bid/ask frame whose book has an empty side).
    Records(usize),
    Control(ControlEvent),
}

/// Why a frame was refused. Each kind has its own counter per venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("frame larger than max_frame_bytes")]
    Oversized,
    #[error("frame is not valid UTF-8")]
    InvalidUtf8,
    #[error("frame is not well-formed JSON")]
    MalformedJson,
    #[error("binary frame could not be inflated (gzip)")]
    Inflate,
    #[error("binary frame is not valid protobuf")]
    MalformedProtobuf,
    #[error("a required field is missing")]
    MissingField,
    #[error("a field has the wrong type")]
    WrongType,
    #[error("a number could not be parsed")]
    BadNumber,
    #[error("a price or quantity is NaN or infinite")]
    NonFinite,
    #[error("a price is zero or negative, or a quantity is negative")]
    NonPositivePrice,
    #[error("crossed book: bid above ask")]
    CrossedBook,
    #[error("symbol is not registered")]
    UnknownSymbol,
    #[error("channel or message type is not one this decoder knows")]
    UnknownMessage,
    #[error("trade id does not fit the record")]
    TradeIdTooLong,
    #[error("frame holds more records than the output batch can take")]
    TooManyRecords,
}

impl DecodeErrorKind {
    pub const ALL: [DecodeErrorKind; 15] = [
        DecodeErrorKind::Oversized,
        DecodeErrorKind::InvalidUtf8,
        DecodeErrorKind::MalformedJson,
        DecodeErrorKind::Inflate,
        DecodeErrorKind::MalformedProtobuf,
        DecodeErrorKind::MissingField,
        DecodeErrorKind::WrongType,
        DecodeErrorKind::BadNumber,
        DecodeErrorKind::NonFinite,
        DecodeErrorKind::NonPositivePrice,
        DecodeErrorKind::CrossedBook,
        DecodeErrorKind::UnknownSymbol,
        DecodeErrorKind::UnknownMessage,
        DecodeErrorKind::TradeIdTooLong,
        DecodeErrorKind::TooManyRecords,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Stable snake_case name, used in counters and `--stats`.
    pub fn name(self) -> &'static str {
        match self {
            DecodeErrorKind::Oversized => "oversized",
            DecodeErrorKind::InvalidUtf8 => "invalid_utf8",
            DecodeErrorKind::MalformedJson => "malformed_json",
            DecodeErrorKind::Inflate => "inflate",
            DecodeErrorKind::MalformedProtobuf => "malformed_protobuf",
            DecodeErrorKind::MissingField => "missing_field",
            DecodeErrorKind::WrongType => "wrong_type",
            DecodeErrorKind::BadNumber => "bad_number",
            DecodeErrorKind::NonFinite => "non_finite",
            DecodeErrorKind::NonPositivePrice => "non_positive_price",
            DecodeErrorKind::CrossedBook => "crossed_book",
            DecodeErrorKind::UnknownSymbol => "unknown_symbol",
            DecodeErrorKind::UnknownMessage => "unknown_message",
            DecodeErrorKind::TradeIdTooLong => "trade_id_too_long",
            DecodeErrorKind::TooManyRecords => "too_many_records",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A refused frame: the kind (counted) and which field or rule refused it (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub detail: &'static str,
}

impl DecodeError {
    pub fn new(kind: DecodeErrorKind, detail: &'static str) -> DecodeError {
        DecodeError { kind, detail }
    }
}

/// Limits every decoder enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Frames (after inflating, for gzip) larger than this are refused as `Oversized`.
    pub max_frame_bytes: usize,
    /// Most records one frame may produce (trade arrays); more is `TooManyRecords`.
    pub max_records_per_frame: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_frame_bytes: 1 << 20,
            max_records_per_frame: 256,
        }
    }
}

/// A bounded output buffer of records, allocated once and reused for every frame.
#[derive(Debug)]
pub struct RecordBatch {
    records: Vec<FeedEvent>,
    capacity_records: usize,
}

impl RecordBatch {
    pub fn with_capacity(capacity_records: usize) -> RecordBatch {
        RecordBatch {
            records: Vec::with_capacity(capacity_records),
            capacity_records,
        }
    }
    /// Appends a record; `TooManyRecords` when full (never reallocates).
    #[inline]
    pub fn push(&mut self, event: FeedEvent) -> Result<(), DecodeError> {
        if self.records.len() >= self.capacity_records {
            return Err(DecodeError::new(
                DecodeErrorKind::TooManyRecords,
                "record batch full",
            ));
        }
        self.records.push(event);
        Ok(())
    }
    pub fn clear(&mut self) {
        self.records.clear();
    }
    pub fn truncate(&mut self, len: usize) {
        self.records.truncate(len);
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    pub fn as_slice(&self) -> &[FeedEvent] {
        &self.records
    }
    pub fn as_mut_slice(&mut self) -> &mut [FeedEvent] {
        &mut self.records
    }
    pub fn drain(&mut self) -> std::vec::Drain<'_, FeedEvent> {
        self.records.drain(..)
    }
}

/// One venue's decoder. Owned by one connection slot; reused for every frame.
pub trait Decoder: Send {
    fn venue(&self) -> Venue;

    /// Decodes one frame. `frame` may be modified (in-place parsing). On success with
    /// `FrameOutcome::Records(n)`, exactly `n` records were appended to `out`; on error nothing was
    /// appended (a partially decoded frame is rolled back).
    fn decode(
        &mut self,
        frame: &mut [u8],
        encoding: FrameEncoding,
        ts_recv_ns: TimestampNs,
        out: &mut RecordBatch,
    ) -> Result<FrameOutcome, DecodeError>;

    /// The spelling of the symbol behind the last `UnknownSymbol` error of this decoder, if the
    /// last frame failed that way (cold path: lets tools register symbols on first sight).
    fn unknown_symbol(&self) -> Option<&[u8]> {
        None
    }
}

/// Builds the decoder for `venue`. It warns about refused frames through the limiter all
/// decoders of `venue` share ([`DecodeWarnLimiter::for_venue`]): one line per second per kind.
pub fn decoder_for(
    venue: Venue,
    registry: Arc<SymbolRegistry>,
    limits: DecodeLimits,
) -> Box<dyn Decoder> {
    decoder_with_warnings(venue, registry, limits, DecodeWarnLimiter::for_venue(venue))
}

/// Like [`decoder_for`], warning through `warnings` (tests give each decoder its own limiter).
pub fn decoder_with_warnings(
    venue: Venue,
    registry: Arc<SymbolRegistry>,
    limits: DecodeLimits,
    warnings: &'static DecodeWarnLimiter,
) -> Box<dyn Decoder> {
    fn warned<D: Decoder + 'static>(
        inner: D,
        warnings: &'static DecodeWarnLimiter,
    ) -> Box<dyn Decoder> {
        Box::new(Warned { inner, warnings })
    }
    match venue {
        Venue::Binance => warned(binance::BinanceDecoder::new(registry, limits), warnings),
        Venue::Bybit => warned(bybit::BybitDecoder::new(registry, limits), warnings),
        Venue::Okx => warned(okx::OkxDecoder::new(registry, limits), warnings),
        Venue::Mexc => warned(mexc::MexcDecoder::new(registry, limits), warnings),
        Venue::Gate => warned(gate::GateDecoder::new(registry, limits), warnings),
        Venue::Kucoin => warned(kucoin::KucoinDecoder::new(registry, limits), warnings),
        Venue::Bitget => warned(bitget::BitgetDecoder::new(registry, limits), warnings),
        Venue::Htx => warned(htx::HtxDecoder::new(registry, limits), warnings),
    }
}

/// `venue`'s decoder with its hand-written fast path off: the generic simd-json path alone, for
/// the tests, benchmarks and fuzzer that compare the two paths (the engine never uses it). `None`
/// for MEXC, whose protobuf decoder has one path.
pub fn generic_path_decoder_for(
    venue: Venue,
    registry: Arc<SymbolRegistry>,
    limits: DecodeLimits,
) -> Option<Box<dyn Decoder>> {
    fn generic<V: json::JsonVenue>(mut decoder: json::JsonDecoder<V>) -> Box<dyn Decoder> {
        decoder.set_fast_path(false);
        Box::new(decoder)
    }
    Some(match venue {
        Venue::Binance => generic(binance::BinanceDecoder::new(registry, limits)),
        Venue::Bybit => generic(bybit::BybitDecoder::new(registry, limits)),
        Venue::Okx => generic(okx::OkxDecoder::new(registry, limits)),
        Venue::Gate => generic(gate::GateDecoder::new(registry, limits)),
        Venue::Kucoin => generic(kucoin::KucoinDecoder::new(registry, limits)),
        Venue::Bitget => generic(bitget::BitgetDecoder::new(registry, limits)),
        Venue::Htx => {
            let mut decoder = htx::HtxDecoder::new(registry, limits);
            decoder.set_fast_path(false);
            Box::new(decoder)
        }
        Venue::Mexc => return None,
    })
}

/// A venue decoder that warns about every frame it refuses, rate-limited: every caller of a
/// decoder (the feed's connection slots, `tickflow decode`) gets the warning without wiring it,
/// so a venue that changes its schema is loud at the default log level.
struct Warned<D> {
    inner: D,
    warnings: &'static DecodeWarnLimiter,
}

impl<D: Decoder> Decoder for Warned<D> {
    fn venue(&self) -> Venue {
        self.inner.venue()
    }

    #[inline]
    fn decode(
        &mut self,
        frame: &mut [u8],
        encoding: FrameEncoding,
        ts_recv_ns: TimestampNs,
        out: &mut RecordBatch,
    ) -> Result<FrameOutcome, DecodeError> {
        let result = self.inner.decode(frame, encoding, ts_recv_ns, out);
        if let Err(error) = &result {
            // The receive time is the wall clock the burst is measured on.
            self.warnings.warn(error, ts_recv_ns);
        }
        result
    }

    fn unknown_symbol(&self) -> Option<&[u8]> {
        self.inner.unknown_symbol()
    }
}
