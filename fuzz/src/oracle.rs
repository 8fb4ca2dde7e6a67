//! The oracle: runs one frame through a venue's decoders under `catch_unwind` and checks what
//! must always hold. A decoder never panics; a refused frame appends nothing; `Records(n)` appends
//! exactly `n` records, at most `max_records_per_frame`; every quote has finite positive prices,
//! quantities that are finite and not negative, and an uncrossed book; every trade a finite
//! positive price; every record the decoder's venue, the receive time and a registered symbol;
//! gaps are quote withdrawals from no connection; `unknown_symbol` names a spelling only after a
//! frame refused as `UnknownSymbol`; and decoding is a function of the frame alone
//! (two decoders with different histories agree, and every venue's hand-written fast path
//! agrees with its generic path).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tickflow_core::record::{FeedEvent, GapEvent, Quote, TimestampNs, Trade};
use tickflow_core::records::{
    FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, FLAG_TRADE_ID_UUID, GAP_QUOTE_WITHDRAWN,
    TRADE_ID_CAPACITY_BYTES,
};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_decode::{
    DecodeError, DecodeErrorKind, DecodeLimits, Decoder, FrameEncoding, FrameOutcome, RecordBatch,
    decoder_for, generic_path_decoder_for,
};

/// The receive time every checked frame gets.
pub const TS_RECV_NS: TimestampNs = 1_700_000_000_000_000_000;

/// Every symbol the fixtures name (and so the mutants mostly keep naming).
pub const FIXTURE_SYMBOLS: &[&str] = &[
    "BNB-USDT",
    "NKN-USDT",
    "BNB-BTC",
    "METIS-USDT",
    "BTC-USDT",
    "OP-USDT",
    "GT-USDT",
    "TRIO-ETH",
    "ETH-USDT",
];

/// Limits small enough that the oversize and too-many-records paths run often.
pub const TIGHT_LIMITS: DecodeLimits = DecodeLimits {
    max_frame_bytes: 256,
    max_records_per_frame: 2,
};

/// Something that must never happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A decoder panicked.
    Panic(String),
    /// A decoder returned something that breaks a rule.
    Invariant(String),
}

impl Violation {
    /// A short label for file names: the kind of violation.
    pub fn label(&self) -> &'static str {
        match self {
            Violation::Panic(_) => "panic",
            Violation::Invariant(_) => "invariant",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Violation::Panic(message) | Violation::Invariant(message) => message,
        }
    }
}

/// What a frame did, coarsely: the fuzzer keeps inputs that do something new.
pub type Signature = u64;

/// The registry every oracle decodes against.
pub fn fixture_registry() -> Arc<SymbolRegistry> {
    let registry = SymbolRegistry::new(64);
    registry
        .register_all(FIXTURE_SYMBOLS.iter().copied())
        .expect("fixture symbols are valid");
    Arc::new(registry)
}

/// A small frame of `venue` that is refused as `UnknownSymbol`: decoded right before an input, it
/// leaves the state (the unknown spelling) that a later frame must not see.
pub fn primer(venue: Venue) -> (FrameEncoding, Vec<u8>) {
    let text = |frame: &str| (FrameEncoding::Text, frame.as_bytes().to_vec());
    match venue {
        Venue::Binance => text(r#"{"u":1,"s":"ZZZUSDT","b":"1","B":"1","a":"2","A":"1"}"#),
        Venue::Bybit => text(
            r#"{"topic":"orderbook.1.ZZZUSDT","ts":1,"data":{"s":"ZZZUSDT","b":[["1","1"]],"a":[["2","1"]]}}"#,
        ),
        Venue::Okx => text(
            r#"{"arg":{"channel":"bbo-tbt","instId":"ZZZ-USDT"},"data":[{"asks":[["2","1"]],"bids":[["1","1"]],"ts":"1"}]}"#,
        ),
        Venue::Mexc => (
            FrameEncoding::Binary,
            crate::input::mexc_protobuf(
                r#"{"channel":"spot@public.aggre.bookTicker.v3.api.pb@100ms@ZZZUSDT","publicAggreBookTicker":{"bidPrice":"1","bidQuantity":"1","askPrice":"2","askQuantity":"1"},"symbol":"ZZZUSDT","sendTime":1}"#,
            ),
        ),
        Venue::Gate => text(
            r#"{"channel":"spot.book_ticker","event":"update","result":{"t":1,"s":"ZZZ_USDT","b":"1","B":"1","a":"2","A":"1"}}"#,
        ),
        Venue::Kucoin => text(
            r#"{"topic":"/spotMarket/level1:ZZZ-USDT","type":"message","data":{"asks":["2","1"],"bids":["1","1"],"timestamp":1}}"#,
        ),
        Venue::Bitget => text(
            r#"{"action":"snapshot","arg":{"channel":"books1","instId":"ZZZUSDT"},"data":[{"asks":[["2","1"]],"bids":[["1","1"]],"ts":"1"}]}"#,
        ),
        Venue::Htx => (
            FrameEncoding::Binary,
            crate::input::gzip(
                br#"{"ch":"market.zzzusdt.bbo","tick":{"bid":1,"bidSize":1,"ask":2,"askSize":1,"quoteTime":1}}"#,
            ),
        ),
    }
}

/// One venue's decoders and the checks.
pub struct Oracle {
    venue: Venue,
    registry: Arc<SymbolRegistry>,
    /// Decodes every frame; its result is the one checked and compared.
    primary: Box<dyn Decoder>,
    /// Decodes every frame after one other frame: different history, same answers.
    twin: Box<dyn Decoder>,
    /// [`TIGHT_LIMITS`].
    tight: Box<dyn Decoder>,
    /// The venue's generic path (its fast path off), for comparison with the fast path; `None`
    /// for MEXC, whose protobuf decoder has one path.
    generic: Option<Box<dyn Decoder>>,
    out: RecordBatch,
    twin_out: RecordBatch,
    /// Decodes run so far (an input costs three to five).
    pub decodes: u64,
}

/// The first thing a batch holds before a frame is decoded: a refused frame must leave it alone.
fn sentinel() -> FeedEvent {
    FeedEvent::Trade(Trade {
        price: 1.0,
        ..Trade::default()
    })
}

/// Where the last panic happened, when [`quiet_panics`] installed its hook (the payload holds
/// only the message).
static LAST_PANIC_LOCATION: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Replaces the panic hook with one that only notes where a panic happened: the fuzzer reports
/// panics as findings, the default hook would print each one as it happens.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        if let Some(location) = info.location() {
            *LAST_PANIC_LOCATION
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()) =
                Some(format!("{}:{}", location.file(), location.line()));
        }
    }));
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let message = if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_string()
    };
    let location = LAST_PANIC_LOCATION
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take();
    match location {
        Some(location) => format!("{message} at {location}"),
        None => message,
    }
}

impl Oracle {
    pub fn new(venue: Venue) -> Oracle {
        let registry = fixture_registry();
        let limits = DecodeLimits::default();
        Oracle {
            venue,
            primary: decoder_for(venue, registry.clone(), limits),
            twin: decoder_for(venue, registry.clone(), limits),
            tight: decoder_for(venue, registry.clone(), TIGHT_LIMITS),
            generic: generic_path_decoder_for(venue, registry.clone(), limits),
            registry,
            out: RecordBatch::with_capacity(limits.max_records_per_frame + 1),
            twin_out: RecordBatch::with_capacity(limits.max_records_per_frame + 1),
            decodes: 0,
        }
    }

    pub fn venue(&self) -> Venue {
        self.venue
    }

    /// Checks one frame. `history` is decoded first by the twin and the tight-limits decoder (any
    /// other frame, or [`primer`]), so state left over from an earlier frame shows as a
    /// disagreement or a broken rule within one check, and a saved input reproduces alone.
    pub fn check(
        &mut self,
        encoding: FrameEncoding,
        frame: &[u8],
        history: Option<(FrameEncoding, &[u8])>,
    ) -> Result<Signature, Violation> {
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.check_unguarded(encoding, frame, history)
        }));
        match result {
            Ok(result) => result,
            Err(payload) => {
                // A decoder that panicked may hold broken state: start over.
                *self = Oracle::new(self.venue);
                Err(Violation::Panic(panic_message(payload.as_ref())))
            }
        }
    }

    fn check_unguarded(
        &mut self,
        encoding: FrameEncoding,
        frame: &[u8],
        history: Option<(FrameEncoding, &[u8])>,
    ) -> Result<Signature, Violation> {
        let limits = DecodeLimits::default();
        let (result, records) = decode_checked(
            self.primary.as_mut(),
            &mut self.out,
            encoding,
            frame,
            &limits,
        )?;
        self.decodes += 1;
        self.check_records(&records)?;
        let unknown = self.primary.unknown_symbol().map(<[u8]>::to_vec);

        if let Some((history_encoding, history_frame)) = history {
            for decoder in [&mut self.twin, &mut self.tight] {
                let mut scratch = history_frame.to_vec();
                self.twin_out.clear();
                let _ = decoder.decode(
                    &mut scratch,
                    history_encoding,
                    TS_RECV_NS,
                    &mut self.twin_out,
                );
                self.decodes += 1;
            }
        }
        let (twin_result, twin_records) = decode_checked(
            self.twin.as_mut(),
            &mut self.twin_out,
            encoding,
            frame,
            &limits,
        )?;
        self.decodes += 1;
        if twin_result != result || twin_records != records {
            return Err(Violation::Invariant(format!(
                "{}: decoders with different histories disagree: {result:?} {records:?} vs {twin_result:?} {twin_records:?}",
                self.venue
            )));
        }
        if self.twin.unknown_symbol().map(<[u8]>::to_vec) != unknown {
            return Err(Violation::Invariant(format!(
                "{}: unknown_symbol depends on history",
                self.venue
            )));
        }

        if let Some(generic) = self.generic.as_mut() {
            let (generic_result, generic_records) = decode_checked(
                generic.as_mut(),
                &mut self.twin_out,
                encoding,
                frame,
                &limits,
            )?;
            self.decodes += 1;
            if generic_result != result || generic_records != records {
                return Err(Violation::Invariant(format!(
                    "{}: fast path {result:?} {records:?} vs generic path {generic_result:?} {generic_records:?}",
                    self.venue
                )));
            }
        }

        let (_, tight_records) = decode_checked(
            self.tight.as_mut(),
            &mut self.twin_out,
            encoding,
            frame,
            &TIGHT_LIMITS,
        )?;
        self.decodes += 1;
        self.check_records(&tight_records)?;

        Ok(signature(&result, &records))
    }

    /// The rules every appended record must meet.
    fn check_records(&self, records: &[FeedEvent]) -> Result<(), Violation> {
        for record in records {
            let (venue_id, symbol_id) = match record {
                FeedEvent::Quote(quote) => {
                    check_quote(quote)?;
                    (quote.venue_id, quote.symbol_id)
                }
                FeedEvent::Trade(trade) => {
                    check_trade(trade)?;
                    (trade.venue_id, trade.symbol_id)
                }
                FeedEvent::Gap(gap) => {
                    check_gap(gap)?;
                    (gap.venue_id, gap.symbol_id)
                }
            };
            if venue_id != self.venue.id() {
                return Err(Violation::Invariant(format!(
                    "{}: record of another venue: {record:?}",
                    self.venue
                )));
            }
            if self.registry.name(symbol_id).is_none() {
                return Err(Violation::Invariant(format!(
                    "{}: record of an unregistered symbol: {record:?}",
                    self.venue
                )));
            }
        }
        Ok(())
    }
}

fn invariant(message: String) -> Result<(), Violation> {
    Err(Violation::Invariant(message))
}

fn check_quote(quote: &Quote) -> Result<(), Violation> {
    let price_ok = |price: f64| price.is_finite() && price > 0.0;
    let qty_ok = |qty: f64| qty.is_finite() && qty >= 0.0;
    if !price_ok(quote.bid) || !price_ok(quote.ask) {
        return invariant(format!("quote price not finite and positive: {quote:?}"));
    }
    if !qty_ok(quote.bid_qty) || !qty_ok(quote.ask_qty) {
        return invariant(format!("quote quantity negative or not finite: {quote:?}"));
    }
    if quote.bid > quote.ask {
        return invariant(format!("crossed quote: {quote:?}"));
    }
    if quote.ts_recv_ns != TS_RECV_NS {
        return invariant(format!("quote receive time is not the frame's: {quote:?}"));
    }
    if quote.flags & !(FLAG_HAS_TS_EXCHANGE | FLAG_HAS_SEQ) != 0 || quote.reserved != 0 {
        return invariant(format!("quote flags: {quote:?}"));
    }
    match quote.ts_exchange() {
        Some(ts) if ts < 0 => return invariant(format!("negative exchange time: {quote:?}")),
        None if quote.ts_exchange_ns != 0 => {
            return invariant(format!("exchange time without its flag: {quote:?}"));
        }
        _ => {}
    }
    if quote.sequence().is_none() && quote.seq != 0 {
        return invariant(format!("sequence without its flag: {quote:?}"));
    }
    Ok(())
}

fn check_trade(trade: &Trade) -> Result<(), Violation> {
    if !(trade.price.is_finite() && trade.price > 0.0) {
        return invariant(format!("trade price not finite and positive: {trade:?}"));
    }
    if !(trade.qty.is_finite() && trade.qty >= 0.0) {
        return invariant(format!("trade quantity negative or not finite: {trade:?}"));
    }
    if trade.ts_recv_ns != TS_RECV_NS {
        return invariant(format!("trade receive time is not the frame's: {trade:?}"));
    }
    if !matches!(trade.side, 1 | 2) {
        return invariant(format!("trade side: {trade:?}"));
    }
    if usize::from(trade.trade_id_len) > TRADE_ID_CAPACITY_BYTES
        || (trade.flags & FLAG_TRADE_ID_UUID != 0 && trade.trade_id_len != 16)
        || trade.flags & !(FLAG_HAS_TS_EXCHANGE | FLAG_TRADE_ID_UUID) != 0
    {
        return invariant(format!("trade id or flags: {trade:?}"));
    }
    match trade.ts_exchange() {
        Some(ts) if ts < 0 => invariant(format!("negative exchange time: {trade:?}")),
        None if trade.ts_exchange_ns != 0 => {
            invariant(format!("exchange time without its flag: {trade:?}"))
        }
        _ => Ok(()),
    }
}

fn check_gap(gap: &GapEvent) -> Result<(), Violation> {
    if gap.kind != GAP_QUOTE_WITHDRAWN
        || gap.connection_id != 0
        || gap.ts_ns != TS_RECV_NS
        || gap.reserved != [0; 5]
    {
        return invariant(format!("a decoder's gap must be a withdrawal: {gap:?}"));
    }
    Ok(())
}

/// Decodes `frame` into `out` behind a sentinel record and checks the batch rules: a refused frame
/// appends nothing, `Records(n)` appends `n` (at most the limit), a control frame nothing.
/// Returns the result and the appended records.
fn decode_checked(
    decoder: &mut dyn Decoder,
    out: &mut RecordBatch,
    encoding: FrameEncoding,
    frame: &[u8],
    limits: &DecodeLimits,
) -> Result<(Result<FrameOutcome, DecodeError>, Vec<FeedEvent>), Violation> {
    out.clear();
    // The batch has room for the sentinel and the limit.
    let _ = out.push(sentinel());
    let mut bytes = frame.to_vec();
    let result = decoder.decode(&mut bytes, encoding, TS_RECV_NS, out);
    let appended = out.len() - 1;
    if out.as_slice()[0] != sentinel() {
        return Err(Violation::Invariant(format!(
            "{}: a decode changed a record it did not append ({result:?})",
            decoder.venue()
        )));
    }
    let expected = match &result {
        Ok(FrameOutcome::Records(count)) => {
            if *count > limits.max_records_per_frame {
                return Err(Violation::Invariant(format!(
                    "{}: {count} records past the limit {}",
                    decoder.venue(),
                    limits.max_records_per_frame
                )));
            }
            *count
        }
        Ok(FrameOutcome::Control(_)) | Err(_) => 0,
    };
    if appended != expected {
        return Err(Violation::Invariant(format!(
            "{}: {result:?} but {appended} records appended",
            decoder.venue()
        )));
    }
    // `unknown_symbol` speaks of the last frame only, and only when it failed that way.
    let failed_on_symbol =
        matches!(&result, Err(error) if error.kind == DecodeErrorKind::UnknownSymbol);
    if let Some(spelling) = decoder.unknown_symbol().filter(|_| !failed_on_symbol) {
        return Err(Violation::Invariant(format!(
            "{}: unknown_symbol() is {:?} after {result:?}",
            decoder.venue(),
            String::from_utf8_lossy(spelling)
        )));
    }
    Ok((result, out.as_slice()[1..].to_vec()))
}

/// A coarse summary of what a frame did: the outcome, the error kind and rule, the record kinds.
fn signature(result: &Result<FrameOutcome, DecodeError>, records: &[FeedEvent]) -> Signature {
    let mut text = match result {
        // The variant only: a ping nonce or an error code is no new behaviour.
        Ok(FrameOutcome::Control(event)) => format!("{:?}", std::mem::discriminant(event)),
        other => format!("{other:?}"),
    };
    if let Ok(FrameOutcome::Records(count)) = result {
        // Counts past two say nothing new.
        text = format!("records {}", (*count).min(3));
        for record in records.iter().take(3) {
            text.push_str(match record {
                FeedEvent::Quote(quote) => {
                    if quote.flags & FLAG_HAS_SEQ != 0 {
                        " quote+seq"
                    } else {
                        " quote"
                    }
                }
                FeedEvent::Trade(trade) => {
                    if trade.flags & FLAG_TRADE_ID_UUID != 0 {
                        " trade+uuid"
                    } else {
                        " trade"
                    }
                }
                FeedEvent::Gap(_) => " withdrawn",
            });
        }
    }
    crate::input::fnv1a(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::fixture_inputs;

    #[test]
    fn every_fixture_frame_passes_every_check() {
        for venue in Venue::ALL {
            let mut oracle = Oracle::new(venue);
            for input in fixture_inputs(venue).unwrap() {
                let (encoding, bytes) = input.to_wire();
                oracle
                    .check(encoding, &bytes, Some((FrameEncoding::Text, b"pong")))
                    .unwrap();
            }
        }
    }

    #[test]
    fn every_primer_fails_on_its_symbol() {
        for venue in Venue::ALL {
            let (encoding, frame) = primer(venue);
            assert!(frame.len() <= TIGHT_LIMITS.max_frame_bytes, "{venue}");
            let mut decoder = decoder_for(venue, fixture_registry(), TIGHT_LIMITS);
            let mut out = RecordBatch::with_capacity(4);
            let error = decoder
                .decode(&mut frame.clone(), encoding, TS_RECV_NS, &mut out)
                .unwrap_err();
            assert_eq!(error.kind, DecodeErrorKind::UnknownSymbol, "{venue}");
            assert!(decoder.unknown_symbol().is_some(), "{venue}");
        }
    }

    #[test]
    fn broken_records_are_caught() {
        let quote = Quote {
            bid: 2.0,
            ask: 1.0,
            ts_recv_ns: TS_RECV_NS,
            ..Quote::default()
        };
        assert!(check_quote(&quote).is_err());
        let quote = Quote {
            bid: f64::NAN,
            ask: 1.0,
            ts_recv_ns: TS_RECV_NS,
            ..Quote::default()
        };
        assert!(check_quote(&quote).is_err());
        let gap = GapEvent {
            kind: GAP_QUOTE_WITHDRAWN,
            connection_id: 3,
            ts_ns: TS_RECV_NS,
            ..GapEvent::default()
        };
        assert!(check_gap(&gap).is_err());
    }
}
