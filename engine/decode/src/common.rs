//! Shared decoder parts: the reusable in-place JSON parser (simd-json tape), a small read-only view
//! over the tape, number and timestamp parsing from venue text, symbol resolution and the checks
//! every record passes before it is appended. Nothing here allocates in the steady state.

use simd_json::{Buffers, Node, StaticNode, Tape};

use super::{ControlEvent, DecodeError, DecodeErrorKind, DecodeLimits, FrameOutcome, RecordBatch};
use tickflow_core::record::{FeedEvent, Quote, SymbolId, TimestampNs, Trade};
use tickflow_core::records::{FLAG_HAS_SEQ, FLAG_HAS_TS_EXCHANGE, Side};
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;

/// Longest symbol spelling remembered for [`super::Decoder::unknown_symbol`].
pub(crate) const UNKNOWN_SYMBOL_CAPACITY_BYTES: usize = 32;

/// The simd-json scratch of one decoder: stage-1 buffers and the tape, both reused for every frame.
pub(crate) struct JsonParser {
    buffers: Buffers,
    /// Empty between frames; its allocation is lent to each frame's lifetime and taken back.
    tape: Tape<'static>,
}

impl JsonParser {
    pub(crate) fn new(expected_frame_bytes: usize) -> JsonParser {
        JsonParser {
            buffers: Buffers::new(expected_frame_bytes),
            tape: Tape(Vec::with_capacity(expected_frame_bytes / 4 + 16)),
        }
    }

    /// Parses `frame` in place and hands the root value to `with`.
    pub(crate) fn parse<'f, R>(
        &mut self,
        frame: &'f mut [u8],
        with: impl FnOnce(Json<'_, 'f>) -> Result<R, DecodeError>,
    ) -> Result<R, DecodeError> {
        let mut tape: Tape<'f> = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape(frame, &mut self.buffers, &mut tape) {
            Ok(()) => match tape.0.first() {
                Some(_) => with(Json(&tape.0)),
                None => Err(DecodeError::new(
                    DecodeErrorKind::MalformedJson,
                    "empty document",
                )),
            },
            Err(error) => Err(match error.error() {
                simd_json::ErrorType::InvalidUtf8 => {
                    DecodeError::new(DecodeErrorKind::InvalidUtf8, "frame is not UTF-8")
                }
                _ => DecodeError::new(DecodeErrorKind::MalformedJson, "frame is not JSON"),
            }),
        };
        self.tape = tape.reset();
        result
    }
}

/// Nodes a value spans on the tape (itself plus everything nested in it).
#[inline]
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// A read-only view of one value on the tape.
#[derive(Clone, Copy)]
pub struct Json<'t, 'i>(&'t [Node<'i>]);

impl<'t, 'i> Json<'t, 'i> {
    #[inline]
    fn head(self) -> Option<Node<'i>> {
        self.0.first().copied()
    }

    #[inline]
    fn value_at(self, index: usize) -> Option<Json<'t, 'i>> {
        let node = self.0.get(index)?;
        self.0.get(index..index + span(node)).map(Json)
    }

    /// The member `key` of an object; `None` when absent or when this is not an object.
    #[inline]
    pub(crate) fn get(self, key: &str) -> Option<Json<'t, 'i>> {
        let Some(Node::Object { len, .. }) = self.head() else {
            return None;
        };
        let mut index = 1;
        for _ in 0..len {
            let Some(Node::String(name)) = self.0.get(index).copied() else {
                return None;
            };
            index += 1;
            let value = self.value_at(index)?;
            if name == key {
                return Some(value);
            }
            index += value.0.len();
        }
        None
    }

    /// Like [`Json::get`], but absence is a `MissingField` error naming the field.
    #[inline]
    pub(crate) fn field(
        self,
        key: &str,
        detail: &'static str,
    ) -> Result<Json<'t, 'i>, DecodeError> {
        self.get(key)
            .ok_or(DecodeError::new(DecodeErrorKind::MissingField, detail))
    }

    pub(crate) fn is_object(self) -> bool {
        matches!(self.head(), Some(Node::Object { .. }))
    }

    pub(crate) fn is_null(self) -> bool {
        matches!(self.head(), Some(Node::Static(StaticNode::Null)))
    }

    #[inline]
    pub(crate) fn as_str(self) -> Option<&'i str> {
        match self.head() {
            Some(Node::String(text)) => Some(text),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn str(self, detail: &'static str) -> Result<&'i str, DecodeError> {
        self.as_str()
            .ok_or(DecodeError::new(DecodeErrorKind::WrongType, detail))
    }

    pub(crate) fn as_bool(self) -> Option<bool> {
        match self.head() {
            Some(Node::Static(StaticNode::Bool(value))) => Some(value),
            _ => None,
        }
    }

    /// The elements of an array; `WrongType` when this is not one.
    #[inline]
    pub(crate) fn array(self, detail: &'static str) -> Result<JsonArray<'t, 'i>, DecodeError> {
        match self.head() {
            Some(Node::Array { len, .. }) => Ok(JsonArray {
                rest: &self.0[1..],
                remaining: len,
            }),
            _ => Err(DecodeError::new(DecodeErrorKind::WrongType, detail)),
        }
    }

    /// A JSON number or a numeric string as f64, correctly rounded from the text.
    #[inline]
    pub(crate) fn f64(self, detail: &'static str) -> Result<f64, DecodeError> {
        let value = match self.head() {
            Some(Node::String(text)) => parse_f64_str(text, detail)?,
            Some(Node::Static(StaticNode::F64(value))) => value,
            Some(Node::Static(StaticNode::U64(value))) => value as f64,
            Some(Node::Static(StaticNode::I64(value))) => value as f64,
            _ => return Err(DecodeError::new(DecodeErrorKind::WrongType, detail)),
        };
        if !value.is_finite() {
            return Err(DecodeError::new(DecodeErrorKind::NonFinite, detail));
        }
        Ok(value)
    }

    /// A non-negative integer given as a JSON number or a decimal string.
    #[inline]
    pub(crate) fn u64(self, detail: &'static str) -> Result<u64, DecodeError> {
        match self.head() {
            Some(Node::String(text)) => parse_u64(text.as_bytes(), detail),
            Some(Node::Static(StaticNode::U64(value))) => Ok(value),
            Some(Node::Static(StaticNode::I64(value))) => u64::try_from(value)
                .map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail)),
            Some(Node::Static(StaticNode::F64(_))) => {
                Err(DecodeError::new(DecodeErrorKind::BadNumber, detail))
            }
            _ => Err(DecodeError::new(DecodeErrorKind::WrongType, detail)),
        }
    }

    /// A signed integer given as a JSON number or a decimal string (error codes).
    pub(crate) fn i64(self, detail: &'static str) -> Result<i64, DecodeError> {
        match self.head() {
            Some(Node::String(text)) => text
                .parse::<i64>()
                .map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail)),
            Some(Node::Static(StaticNode::U64(value))) => i64::try_from(value)
                .map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail)),
            Some(Node::Static(StaticNode::I64(value))) => Ok(value),
            _ => Err(DecodeError::new(DecodeErrorKind::WrongType, detail)),
        }
    }

    /// A millisecond timestamp (number or string, a fractional part allowed) as nanoseconds.
    #[inline]
    pub(crate) fn ms_as_ns(self, detail: &'static str) -> Result<TimestampNs, DecodeError> {
        match self.head() {
            Some(Node::String(text)) => parse_ms_as_ns(text.as_bytes(), detail),
            Some(Node::Static(StaticNode::U64(value))) => ms_to_ns(value, detail),
            // Fractional milliseconds as a JSON number: as exact as the f64 holds them.
            Some(Node::Static(StaticNode::F64(value)))
                if value.is_finite() && value >= 0.0 && value * 1e6 < i64::MAX as f64 =>
            {
                Ok((value * 1e6).round() as TimestampNs)
            }
            Some(Node::Static(StaticNode::I64(_))) | Some(Node::Static(StaticNode::F64(_))) => {
                Err(DecodeError::new(DecodeErrorKind::BadNumber, detail))
            }
            _ => Err(DecodeError::new(DecodeErrorKind::WrongType, detail)),
        }
    }

    /// A nanosecond timestamp (number or string).
    pub(crate) fn ns(self, detail: &'static str) -> Result<TimestampNs, DecodeError> {
        let value = self.u64(detail)?;
        i64::try_from(value).map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail))
    }

    /// The id text of a trade: a string as given, or an unsigned JSON integer in decimal.
    #[inline]
    pub(crate) fn trade_id<'a>(
        self,
        digits: &'a mut [u8; 20],
        detail: &'static str,
    ) -> Result<&'a [u8], DecodeError>
    where
        'i: 'a,
    {
        match self.head() {
            Some(Node::String(text)) => Ok(text.as_bytes()),
            Some(Node::Static(StaticNode::U64(value))) => Ok(format_u64(value, digits)),
            Some(Node::Static(StaticNode::F64(_))) | Some(Node::Static(StaticNode::I64(_))) => {
                Err(DecodeError::new(DecodeErrorKind::BadNumber, detail))
            }
            _ => Err(DecodeError::new(DecodeErrorKind::WrongType, detail)),
        }
    }
}

/// Iterator over the elements of a tape array.
pub struct JsonArray<'t, 'i> {
    rest: &'t [Node<'i>],
    remaining: usize,
}

impl<'t, 'i> JsonArray<'t, 'i> {
    pub(crate) fn len(&self) -> usize {
        self.remaining
    }
}

impl<'t, 'i> Iterator for JsonArray<'t, 'i> {
    type Item = Json<'t, 'i>;

    #[inline]
    fn next(&mut self) -> Option<Json<'t, 'i>> {
        if self.remaining == 0 {
            return None;
        }
        let width = span(self.rest.first()?);
        if width > self.rest.len() {
            self.remaining = 0;
            return None;
        }
        let (head, tail) = self.rest.split_at(width);
        self.rest = tail;
        self.remaining -= 1;
        Some(Json(head))
    }
}

/// Writes `value` in decimal into `digits`, returning the used tail.
fn format_u64(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &digits[start..]
}

/// Decimal text to f64, correctly rounded (std's parser). `NaN`/`inf` spellings come back
/// non-finite and are refused by the caller.
#[inline]
pub(crate) fn parse_f64(text: &[u8], detail: &'static str) -> Result<f64, DecodeError> {
    let text = std::str::from_utf8(text)
        .map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail))?;
    parse_f64_str(text, detail)
}

/// Like [`parse_f64`], for text already known to be UTF-8 (tape strings).
#[inline]
pub(crate) fn parse_f64_str(text: &str, detail: &'static str) -> Result<f64, DecodeError> {
    let value = text
        .parse::<f64>()
        .map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail))?;
    if !value.is_finite() {
        return Err(DecodeError::new(DecodeErrorKind::NonFinite, detail));
    }
    Ok(value)
}

/// Plain decimal digits to u64 (no sign, no exponent).
#[inline]
pub(crate) fn parse_u64(text: &[u8], detail: &'static str) -> Result<u64, DecodeError> {
    if text.is_empty() || text.len() > 20 {
        return Err(DecodeError::new(DecodeErrorKind::BadNumber, detail));
    }
    let mut value: u64 = 0;
    for &byte in text {
        if !byte.is_ascii_digit() {
            return Err(DecodeError::new(DecodeErrorKind::BadNumber, detail));
        }
        value = value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(byte - b'0')))
            .ok_or(DecodeError::new(DecodeErrorKind::BadNumber, detail))?;
    }
    Ok(value)
}

#[inline]
pub(crate) fn ms_to_ns(ms: u64, detail: &'static str) -> Result<TimestampNs, DecodeError> {
    ms.checked_mul(1_000_000)
        .and_then(|ns| i64::try_from(ns).ok())
        .ok_or(DecodeError::new(DecodeErrorKind::BadNumber, detail))
}

/// Milliseconds as decimal text, with an optional fraction ("1606292218213.4578"), to nanoseconds,
/// exactly (integer arithmetic; digits past the nanosecond are dropped).
pub(crate) fn parse_ms_as_ns(
    text: &[u8],
    detail: &'static str,
) -> Result<TimestampNs, DecodeError> {
    let (whole, fraction) = match text.iter().position(|&byte| byte == b'.') {
        Some(dot) => (&text[..dot], Some(&text[dot + 1..])),
        None => (text, None),
    };
    let mut ns = ms_to_ns(parse_u64(whole, detail)?, detail)?;
    if let Some(fraction) = fraction {
        // A dot must be followed by digits ("1." is not a number).
        if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::new(DecodeErrorKind::BadNumber, detail));
        }
        // At most 999_999 ns more: small, but "9223372036854.9" still passes i64::MAX.
        let mut scale = 100_000i64;
        for &digit in fraction.iter().take(6) {
            ns = i64::from(digit - b'0')
                .checked_mul(scale)
                .and_then(|step| ns.checked_add(step))
                .ok_or(DecodeError::new(DecodeErrorKind::BadNumber, detail))?;
            scale /= 10;
        }
    }
    Ok(ns)
}

/// Resolves symbols through the registry and remembers the spelling of the last unknown one.
pub struct SymbolResolver {
    registry: std::sync::Arc<SymbolRegistry>,
    unknown: [u8; UNKNOWN_SYMBOL_CAPACITY_BYTES],
    unknown_len: usize,
}

impl SymbolResolver {
    pub(crate) fn new(registry: std::sync::Arc<SymbolRegistry>) -> SymbolResolver {
        SymbolResolver {
            registry,
            unknown: [0; UNKNOWN_SYMBOL_CAPACITY_BYTES],
            unknown_len: 0,
        }
    }

    #[inline]
    pub(crate) fn resolve(&mut self, spelling: &[u8]) -> Result<SymbolId, DecodeError> {
        match self.registry.lookup(spelling) {
            Some(id) => Ok(id),
            None => {
                let len = spelling.len().min(UNKNOWN_SYMBOL_CAPACITY_BYTES);
                self.unknown[..len].copy_from_slice(&spelling[..len]);
                self.unknown_len = len;
                Err(DecodeError::new(
                    DecodeErrorKind::UnknownSymbol,
                    "symbol is not registered",
                ))
            }
        }
    }

    pub(crate) fn last_unknown(&self) -> Option<&[u8]> {
        (self.unknown_len > 0).then(|| &self.unknown[..self.unknown_len])
    }

    pub(crate) fn clear_unknown(&mut self) {
        self.unknown_len = 0;
    }
}

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

#[inline]
fn check_price(value: f64, detail: &'static str) -> Result<(), DecodeError> {
    if !value.is_finite() {
        return Err(DecodeError::new(DecodeErrorKind::NonFinite, detail));
    }
    if value <= 0.0 {
        return Err(DecodeError::new(DecodeErrorKind::NonPositivePrice, detail));
    }
    Ok(())
}

#[inline]
fn check_qty(value: f64, detail: &'static str) -> Result<(), DecodeError> {
    if !value.is_finite() {
        return Err(DecodeError::new(DecodeErrorKind::NonFinite, detail));
    }
    if value < 0.0 {
        return Err(DecodeError::new(DecodeErrorKind::NonPositivePrice, detail));
    }
    Ok(())
}

/// Taker side from a venue's word for it (`buy`, `Buy`, `BUY`, `sell`, ...).
#[inline]
pub(crate) fn side_from_word(word: &str, detail: &'static str) -> Result<Side, DecodeError> {
    if word.eq_ignore_ascii_case("buy") {
        Ok(Side::Buy)
    } else if word.eq_ignore_ascii_case("sell") {
        Ok(Side::Sell)
    } else {
        Err(DecodeError::new(DecodeErrorKind::WrongType, detail))
    }
}

/// The frame-size limit, checked before any parsing.
#[inline]
pub(crate) fn check_size(frame: &[u8], limits: &DecodeLimits) -> Result<(), DecodeError> {
    if frame.len() > limits.max_frame_bytes {
        return Err(DecodeError::new(
            DecodeErrorKind::Oversized,
            "frame larger than max_frame_bytes",
        ));
    }
    Ok(())
}

/// A text frame that is exactly `word` (after trimming ASCII whitespace), e.g. plain `pong`.
#[inline]
pub(crate) fn is_plain_word(frame: &[u8], word: &[u8]) -> bool {
    frame.trim_ascii() == word
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

/// Checks an array's length against the per-frame record limit before decoding its elements.
#[inline]
pub(crate) fn check_record_count(count: usize, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if count > limits.max_records_per_frame {
        return Err(DecodeError::new(
            DecodeErrorKind::TooManyRecords,
            "frame exceeds max_records_per_frame",
        ));
    }
    Ok(())
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
    pub(crate) fn new(registry: std::sync::Arc<SymbolRegistry>, limits: DecodeLimits) -> JsonCore {
        JsonCore {
            parser: JsonParser::new(4096),
            symbols: SymbolResolver::new(registry),
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
        check_size(frame, &self.limits)?;
        self.symbols.clear_unknown();
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
            core: JsonCore::new(registry, limits),
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

/// The first element of a `[price, size, ...]` level array and its size.
#[inline]
pub(crate) fn level(
    value: Json<'_, '_>,
    detail: &'static str,
) -> Result<Option<(f64, f64)>, DecodeError> {
    let mut items = value.array(detail)?;
    let (Some(price), Some(size)) = (items.next(), items.next()) else {
        return Ok(None);
    };
    Ok(Some((price.f64(detail)?, size.f64(detail)?)))
}

/// Top-of-book snapshots in the shape OKX and Bitget share (OKX `bbo-tbt`/`books5`, Bitget
/// `books1`/`books5`): each element of `data` holds `bids` and `asks` level arrays (best first), a
/// millisecond `ts`, and optionally a sequence under `seq_field`. A side with no level makes no
/// quote (not an error).
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
        let (Some((bid, bid_qty)), Some((ask, ask_qty))) = (bid, ask) else {
            continue;
        };
        let seq = match book.get(seq_field) {
            Some(seq) => Some(seq.u64(seq_detail)?),
            None => None,
        };
        cx.quote(QuoteFields {
            symbol_id,
            bid,
            bid_qty,
            ask,
            ask_qty,
            ts_exchange_ns: Some(book.field("ts", "data[].ts")?.ms_as_ns("data[].ts")?),
            seq,
        })?;
    }
    cx.records()
}

/// The best level of a `[[price, size, ...], ...]` book side; `None` when the side is empty.
#[inline]
pub(crate) fn best_level(
    side: Json<'_, '_>,
    detail: &'static str,
) -> Result<Option<(f64, f64)>, DecodeError> {
    match side.array(detail)?.next() {
        Some(first) => level(first, detail),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_milliseconds_become_exact_nanoseconds() {
        assert_eq!(
            parse_ms_as_ns(b"1606292218213.4578", "t"),
            Ok(1_606_292_218_213_457_800)
        );
        assert_eq!(parse_ms_as_ns(b"1", "t"), Ok(1_000_000));
        assert_eq!(parse_ms_as_ns(b"1.0000009", "t"), Ok(1_000_000));
        assert!(parse_ms_as_ns(b"1.x", "t").is_err());
        assert!(parse_ms_as_ns(b"", "t").is_err());
        assert!(parse_ms_as_ns(b"99999999999999999999", "t").is_err());
        // The fraction alone can carry the sum past i64::MAX.
        let bad = |text: &[u8]| parse_ms_as_ns(text, "t").map_err(|error| error.kind);
        assert_eq!(bad(b"9223372036854.9"), Err(DecodeErrorKind::BadNumber));
        assert_eq!(
            bad(b"9223372036854.775808"),
            Err(DecodeErrorKind::BadNumber)
        );
        assert_eq!(bad(b"9223372036854.775807"), Ok(i64::MAX));
        assert_eq!(bad(b"9223372036855"), Err(DecodeErrorKind::BadNumber));
        assert_eq!(
            bad(b"18446744073709551616"),
            Err(DecodeErrorKind::BadNumber)
        );
        for refused in [
            &b"-1"[..],
            b".5",
            b"1.",
            b"1e3",
            b"NaN",
            b"inf",
            b" 1",
            b"1.-2",
        ] {
            assert_eq!(bad(refused), Err(DecodeErrorKind::BadNumber), "{refused:?}");
        }
    }

    #[test]
    fn numbers_parse_from_text_and_refuse_non_finite() {
        assert_eq!(parse_f64(b"9.2E-7", "p"), Ok(9.2e-7));
        assert_eq!(parse_f64(b"0.35210000", "p"), Ok(0.3521));
        assert_eq!(
            parse_f64(b"NaN", "p").map_err(|error| error.kind),
            Err(DecodeErrorKind::NonFinite)
        );
        assert_eq!(
            parse_f64(b"1e999", "p").map_err(|error| error.kind),
            Err(DecodeErrorKind::NonFinite)
        );
        assert_eq!(
            parse_f64(b"abc", "p").map_err(|error| error.kind),
            Err(DecodeErrorKind::BadNumber)
        );
        assert_eq!(format_u64(0, &mut [0; 20]), b"0");
        assert_eq!(format_u64(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }

    #[test]
    fn tape_view_reads_nested_values() {
        let mut parser = JsonParser::new(256);
        let mut frame = br#"{"a":{"b":[1,"2",[3]],"c":null},"d":"x\"y"}"#.to_vec();
        parser
            .parse(&mut frame, |root| {
                let a = root.get("a").unwrap();
                let mut items = a.get("b").unwrap().array("b").unwrap();
                assert_eq!(items.len(), 3);
                assert_eq!(items.next().unwrap().u64("1"), Ok(1));
                assert_eq!(items.next().unwrap().f64("2"), Ok(2.0));
                assert!(items.next().unwrap().array("3").is_ok());
                assert!(items.next().is_none());
                assert!(a.get("c").unwrap().is_null());
                assert_eq!(root.get("d").unwrap().as_str(), Some("x\"y"));
                assert!(root.get("zz").is_none());
                Ok(())
            })
            .unwrap();
    }
}
