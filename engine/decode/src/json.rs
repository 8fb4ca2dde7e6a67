//! The decoder framework: the `JsonVenue` protocol trait, `JsonDecoder` and its `Decoder` impl,
//! the per-frame `Context`, and appending checked quotes, quote withdrawals and trades with
//! rollback. No I/O.

use super::check::{check_price, check_qty, check_size};
use super::symbol::SymbolResolver;
use super::tape::{Json, JsonArray, JsonParser};
use super::{ControlEvent, DecodeError, DecodeErrorKind, DecodeLimits, FrameOutcome, RecordBatch};
use tickflow_core::record::{FeedEvent, GapEvent, Quote, SymbolId, TimestampNs, Trade};
use tickflow_core::records::{FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, GAP_QUOTE_WITHDRAWN, Side};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;

/// Everything a quote needs, before the checks.
pub(crate) struct QuoteFields {
    pub(crate) symbol_id: SymbolId,
    pub(crate) bid: f64,
    pub(crate) bid_qty: f64,
    pub(crate) ask: f64,
    pub(crate) ask_qty: f64,
    pub(crate) ts_exchange_ns: Option<TimestampNs>,
    pub(crate) seq: Option<u64>,
}

/// Checks a quote (prices positive, quantities not negative, book not crossed) and appends it.
#[inline]
pub(crate) fn push_quote(
    out: &mut RecordBatch,
    venue: Venue,
    ts_recv_ns: TimestampNs,
    fields: QuoteFields,
) -> Result<(), DecodeError> {
    check_price(fields.bid, "bid")?;
    check_price(fields.ask, "ask")?;
    check_qty(fields.bid_qty, "bid quantity")?;
    check_qty(fields.ask_qty, "ask quantity")?;
    if fields.bid > fields.ask {
        return Err(DecodeError::new(
            DecodeErrorKind::CrossedBook,
            "bid above ask",
        ));
    }
    let mut flags = 0u8;
    if fields.ts_exchange_ns.is_some() {
        flags |= FLAG_HAS_TS_EXCHANGE;
    }
    if fields.seq.is_some() {
        flags |= FLAG_HAS_SEQ;
    }
    out.push(FeedEvent::Quote(Quote {
        bid: fields.bid,
        bid_qty: fields.bid_qty,
        ask: fields.ask,
        ask_qty: fields.ask_qty,
        ts_exchange_ns: fields.ts_exchange_ns.unwrap_or(0),
        ts_recv_ns,
        seq: fields.seq.unwrap_or(0),
        symbol_id: fields.symbol_id,
        venue_id: venue.id(),
        flags,
        reserved: 0,
    }))
}

/// One side of a top of book: its best `(price, size)`, or `None` when the side is empty.
pub(crate) type BookSide = Option<(f64, f64)>;

/// A venue's top of book as read from a frame, before the checks: both sides present make a
/// quote, an empty side withdraws the venue's quote.
pub(crate) struct TopOfBook {
    pub(crate) symbol_id: SymbolId,
    pub(crate) bid: BookSide,
    pub(crate) ask: BookSide,
    pub(crate) ts_exchange_ns: Option<TimestampNs>,
    pub(crate) seq: Option<u64>,
}

/// Appends a `GAP_QUOTE_WITHDRAWN` gap for `symbol_id`: the venue has no two-sided book, so its
/// last quote must stop making spreads. `connection_id` is 0: the decoder saw it in the data, it
/// is not a connection event.
#[inline]
pub(crate) fn push_withdrawal(
    out: &mut RecordBatch,
    venue: Venue,
    ts_recv_ns: TimestampNs,
    symbol_id: SymbolId,
) -> Result<(), DecodeError> {
    out.push(FeedEvent::Gap(GapEvent {
        ts_ns: ts_recv_ns,
        connection_id: 0,
        symbol_id,
        venue_id: venue.id(),
        kind: GAP_QUOTE_WITHDRAWN,
        reserved: [0; 5],
    }))
}

/// Checks the side that is present (a one-sided book still must not carry garbage).
#[inline]
fn check_side(
    side: BookSide,
    price_detail: &'static str,
    qty_detail: &'static str,
) -> Result<(), DecodeError> {
    if let Some((price, qty)) = side {
        check_price(price, price_detail)?;
        check_qty(qty, qty_detail)?;
    }
    Ok(())
}

/// Everything a trade needs, before the checks.
pub(crate) struct TradeFields<'a> {
    pub(crate) symbol_id: SymbolId,
    pub(crate) price: f64,
    pub(crate) qty: f64,
    pub(crate) side: Side,
    pub(crate) trade_id: &'a [u8],
    pub(crate) ts_exchange_ns: Option<TimestampNs>,
}

/// Checks a trade (price positive, quantity not negative, id fits) and appends it.
#[inline]
pub(crate) fn push_trade(
    out: &mut RecordBatch,
    venue: Venue,
    ts_recv_ns: TimestampNs,
    fields: TradeFields<'_>,
) -> Result<(), DecodeError> {
    check_price(fields.price, "trade price")?;
    check_qty(fields.qty, "trade quantity")?;
    let mut trade = Trade {
        price: fields.price,
        qty: fields.qty,
        ts_exchange_ns: fields.ts_exchange_ns.unwrap_or(0),
        ts_recv_ns,
        symbol_id: fields.symbol_id,
        venue_id: venue.id(),
        side: fields.side as u8,
        flags: if fields.ts_exchange_ns.is_some() {
            FLAG_HAS_TS_EXCHANGE
        } else {
            0
        },
        ..Trade::default()
    };
    if !trade.set_trade_id(fields.trade_id) {
        return Err(DecodeError::new(
            DecodeErrorKind::TradeIdTooLong,
            "trade id longer than the record holds",
        ));
    }
    out.push(FeedEvent::Trade(trade))
}

/// Runs `decode_records` and rolls `out` back to its length at entry when it fails, so a refused
/// frame appends nothing. Also enforces `max_records_per_frame`.
#[inline]
pub(crate) fn with_rollback(
    out: &mut RecordBatch,
    limits: &DecodeLimits,
    decode_records: impl FnOnce(&mut RecordBatch) -> Result<super::FrameOutcome, DecodeError>,
) -> Result<super::FrameOutcome, DecodeError> {
    let len_at_entry = out.len();
    let result = decode_records(out).and_then(|outcome| match outcome {
        super::FrameOutcome::Records(count) if count > limits.max_records_per_frame => {
            Err(DecodeError::new(
                DecodeErrorKind::TooManyRecords,
                "frame exceeds max_records_per_frame",
            ))
        }
        other => Ok(other),
    });
    if result.is_err() {
        out.truncate(len_at_entry);
    }
    result
}

/// What a venue's frame decoder works with: where records go and how symbols resolve.
pub struct Context<'a> {
    pub(crate) venue: Venue,
    pub(crate) symbols: &'a mut SymbolResolver,
    pub(crate) limits: DecodeLimits,
    pub(crate) ts_recv_ns: TimestampNs,
    pub(crate) out: &'a mut RecordBatch,
    pushed: usize,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        venue: Venue,
        symbols: &'a mut SymbolResolver,
        limits: DecodeLimits,
        ts_recv_ns: TimestampNs,
        out: &'a mut RecordBatch,
    ) -> Context<'a> {
        Context {
            venue,
            symbols,
            limits,
            ts_recv_ns,
            out,
            pushed: 0,
        }
    }

    #[inline]
    pub(crate) fn resolve(&mut self, spelling: &str) -> Result<SymbolId, DecodeError> {
        self.symbols.resolve(spelling.as_bytes())
    }

    #[inline]
    pub(crate) fn quote(&mut self, fields: QuoteFields) -> Result<(), DecodeError> {
        push_quote(self.out, self.venue, self.ts_recv_ns, fields)?;
        self.pushed += 1;
        Ok(())
    }

    /// A quote when both sides of `book` hold a level, else a withdrawal of the venue's quote for
    /// the symbol (the side that is present is still checked).
    #[inline]
    pub(crate) fn top_of_book(&mut self, book: TopOfBook) -> Result<(), DecodeError> {
        match (book.bid, book.ask) {
            (Some((bid, bid_qty)), Some((ask, ask_qty))) => self.quote(QuoteFields {
                symbol_id: book.symbol_id,
                bid,
                bid_qty,
                ask,
                ask_qty,
                ts_exchange_ns: book.ts_exchange_ns,
                seq: book.seq,
            }),
            (bid, ask) => {
                check_side(bid, "bid", "bid quantity")?;
                check_side(ask, "ask", "ask quantity")?;
                push_withdrawal(self.out, self.venue, self.ts_recv_ns, book.symbol_id)?;
                self.pushed += 1;
                Ok(())
            }
        }
    }

    #[inline]
    pub(crate) fn trade(&mut self, fields: TradeFields<'_>) -> Result<(), DecodeError> {
        if self.pushed >= self.limits.max_records_per_frame {
            return Err(DecodeError::new(
                DecodeErrorKind::TooManyRecords,
                "frame exceeds max_records_per_frame",
            ));
        }
        push_trade(self.out, self.venue, self.ts_recv_ns, fields)?;
        self.pushed += 1;
        Ok(())
    }

    /// The outcome for the records pushed so far.
    #[inline]
    pub(crate) fn records(&self) -> Result<FrameOutcome, DecodeError> {
        Ok(FrameOutcome::Records(self.pushed))
    }
}

/// One JSON venue protocol: how a parsed frame turns into records or a control event.
pub trait JsonVenue: 'static {
    const VENUE: Venue;

    /// Control frames that are not JSON (plain-text `pong`), checked on the raw bytes first.
    fn plain_control(_frame: &[u8]) -> Option<ControlEvent> {
        None
    }

    /// A venue-specific scanner for its hottest frame shape; `None` falls back to the generic path.
    fn fast_path(
        _frame: &[u8],
        _cx: &mut Context<'_>,
    ) -> Option<Result<FrameOutcome, DecodeError>> {
        None
    }

    /// Control frames are recognized here first; then data becomes records through `cx`.
    fn decode_json(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError>;
}

/// The venue-independent half of a JSON decoder: scratch, symbols, limits.
pub(crate) struct JsonCore {
    parser: JsonParser,
    pub(crate) symbols: SymbolResolver,
    pub(crate) limits: DecodeLimits,
    /// Off in tests that compare the fast path against the generic one.
    pub(crate) fast_path_enabled: bool,
}

impl JsonCore {
    pub(crate) fn new(
        venue: Venue,
        registry: std::sync::Arc<SymbolRegistry>,
        limits: DecodeLimits,
    ) -> JsonCore {
        JsonCore {
            parser: JsonParser::new(4096),
            symbols: SymbolResolver::new(venue, registry),
            limits,
            fast_path_enabled: true,
        }
    }

    #[inline]
    pub(crate) fn decode<V: JsonVenue>(
        &mut self,
        frame: &mut [u8],
        ts_recv_ns: TimestampNs,
        out: &mut RecordBatch,
    ) -> Result<FrameOutcome, DecodeError> {
        // First: `unknown_symbol` speaks of this frame, whatever refuses it.
        self.symbols.clear_unknown();
        check_size(frame, &self.limits)?;
        if let Some(control) = V::plain_control(frame) {
            return Ok(FrameOutcome::Control(control));
        }
        let limits = self.limits;
        let parser = &mut self.parser;
        let symbols = &mut self.symbols;
        let fast_path_enabled = self.fast_path_enabled;
        with_rollback(out, &limits, |out| {
            let mut cx = Context::new(V::VENUE, symbols, limits, ts_recv_ns, out);
            if fast_path_enabled {
                if let Some(outcome) = V::fast_path(frame, &mut cx) {
                    return outcome;
                }
            }
            parser.parse(frame, |root| {
                if !root.is_object() {
                    return Err(DecodeError::new(
                        DecodeErrorKind::UnknownMessage,
                        "frame is not a JSON object",
                    ));
                }
                V::decode_json(root, &mut cx)
            })
        })
    }
}

/// A decoder for a venue whose frames are all JSON text.
pub struct JsonDecoder<V> {
    pub(crate) core: JsonCore,
    venue: std::marker::PhantomData<fn() -> V>,
}

impl<V: JsonVenue> JsonDecoder<V> {
    pub fn new(registry: std::sync::Arc<SymbolRegistry>, limits: DecodeLimits) -> JsonDecoder<V> {
        JsonDecoder {
            core: JsonCore::new(V::VENUE, registry, limits),
            venue: std::marker::PhantomData,
        }
    }

    /// Turns the venue's hand-written fast path off (tests compare it with the generic path).
    pub fn set_fast_path(&mut self, enabled: bool) {
        self.core.fast_path_enabled = enabled;
    }
}

impl<V: JsonVenue> super::Decoder for JsonDecoder<V> {
    fn venue(&self) -> Venue {
        V::VENUE
    }

    fn decode(
        &mut self,
        frame: &mut [u8],
        _encoding: super::FrameEncoding,
        ts_recv_ns: TimestampNs,
        out: &mut RecordBatch,
    ) -> Result<FrameOutcome, DecodeError> {
        self.core.decode::<V>(frame, ts_recv_ns, out)
    }

    fn unknown_symbol(&self) -> Option<&[u8]> {
        self.core.symbols.last_unknown()
    }
}

/// A `[price, size, ...]` level: `None` for `[]` (KuCoin's level1 spells an empty side so), a
/// `MissingField` error for a price without a size.
#[inline]
pub(crate) fn level(value: Json<'_, '_>, detail: &'static str) -> Result<BookSide, DecodeError> {
    let mut items = value.array(detail)?;
    let Some(price) = items.next() else {
        return Ok(None);
    };
    let size = items
        .next()
        .ok_or(DecodeError::new(DecodeErrorKind::MissingField, detail))?;
    Ok(Some((price.f64(detail)?, size.f64(detail)?)))
}

/// The best level of a `[[price, size, ...], ...]` book side; `None` when the side is `[]`.
#[inline]
pub(crate) fn best_level(
    side: Json<'_, '_>,
    detail: &'static str,
) -> Result<BookSide, DecodeError> {
    match side.array(detail)?.next() {
        Some(first) => level(first, detail)?
            .map(Some)
            .ok_or(DecodeError::new(DecodeErrorKind::MissingField, detail)),
        None => Ok(None),
    }
}

/// How a venue spells an empty side in a flat best-price field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptySide {
    /// An empty string (`""`): OKX tickers, Gate, KuCoin's ticker.
    Blank,
    /// A zero price (`"0.00000000"`, `0`): Binance, HTX.
    Zero,
}

/// One side given as a flat best price and its size: `None` when `price` says the side is
/// empty (then the size, often blank too, is not read), else the level with the size required.
#[inline]
pub(crate) fn flat_side(
    price: Json<'_, '_>,
    size: Option<Json<'_, '_>>,
    empty: EmptySide,
    price_detail: &'static str,
    size_detail: &'static str,
) -> Result<BookSide, DecodeError> {
    if empty == EmptySide::Blank && price.as_str() == Some("") {
        return Ok(None);
    }
    let value = price.f64(price_detail)?;
    if empty == EmptySide::Zero && value == 0.0 {
        return Ok(None);
    }
    let size = size.ok_or(DecodeError::new(DecodeErrorKind::MissingField, size_detail))?;
    Ok(Some((value, size.f64(size_detail)?)))
}

/// Top-of-book snapshots in the shape OKX and Bitget share (OKX `bbo-tbt`/`books5`, Bitget
/// `books1`/`books5`): each element of `data` holds `bids` and `asks` level arrays (best first), a
/// millisecond `ts`, and optionally a sequence under `seq_field`. A side with no level (`[]`)
/// withdraws the quote; the rest of the element is read and checked either way.
pub(crate) fn book_snapshots(
    data: JsonArray<'_, '_>,
    symbol_id: SymbolId,
    seq_field: &'static str,
    seq_detail: &'static str,
    cx: &mut Context<'_>,
) -> Result<FrameOutcome, DecodeError> {
    for book in data {
        let bid = best_level(book.field("bids", "data[].bids")?, "data[].bids")?;
        let ask = best_level(book.field("asks", "data[].asks")?, "data[].asks")?;
        let seq = match book.get(seq_field) {
            Some(seq) => Some(seq.u64(seq_detail)?),
            None => None,
        };
        let ts_exchange_ns = Some(book.field("ts", "data[].ts")?.ms_as_ns("data[].ts")?);
        cx.top_of_book(TopOfBook {
            symbol_id,
            bid,
            ask,
            ts_exchange_ns,
            seq,
        })?;
    }
    cx.records()
}
