//! The cursor of the hand-written fast paths (`JsonVenue::fast_path`): each matches one exact
//! frame shape byte by byte and gives up (`None`) at the first deviation, leaving the frame to
//! the generic simd-json path, which gives the same answer (the golden tests compare them).
//! Written by hand because a frame of a known shape needs no structural index or tape: a parser
//! library would do both.

use super::json::{Context, QuoteFields};
use super::number::parse_f64;
use super::{DecodeError, FrameOutcome};
use tickflow_core::records::TimestampNs;

/// Most digits of a number [`Cursor::unsigned_number`] takes (every such mantissa fits a u64).
pub(crate) const MAX_FAST_NUMBER_DIGITS: usize = 19;

/// The text of a best bid/ask a scanner found.
#[derive(Debug, PartialEq)]
pub(crate) struct QuoteText<'a> {
    pub(crate) symbol: &'a [u8],
    pub(crate) bid: &'a [u8],
    pub(crate) bid_qty: &'a [u8],
    pub(crate) ask: &'a [u8],
    pub(crate) ask_qty: &'a [u8],
}

/// The one record of a fast path's frame, or `None` (the generic path then reports the unknown
/// symbol, bad number or refused book with a precise detail, giving the same answer): a fast
/// path only ever produces a finished record.
#[inline]
pub(crate) fn fast_quote(
    text: QuoteText<'_>,
    ts_exchange_ns: Option<TimestampNs>,
    seq: Option<u64>,
    cx: &mut Context<'_>,
) -> Option<Result<FrameOutcome, DecodeError>> {
    let symbol_id = cx.symbols.resolve(text.symbol).ok()?;
    let number = |bytes: &[u8]| parse_f64(bytes, "fast path").ok();
    cx.quote(QuoteFields {
        symbol_id,
        bid: number(text.bid)?,
        bid_qty: number(text.bid_qty)?,
        ask: number(text.ask)?,
        ask_qty: number(text.ask_qty)?,
        ts_exchange_ns,
        seq,
    })
    .ok()?;
    Some(cx.records())
}

/// A position in a frame that only moves forward over what matches.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, at: 0 }
    }

    /// Every byte was matched.
    pub(crate) fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    #[inline]
    pub(crate) fn expect(&mut self, literal: &[u8]) -> Option<()> {
        let end = self.at.checked_add(literal.len())?;
        (self.bytes.get(self.at..end)? == literal).then(|| self.at = end)
    }

    /// One or more ASCII digits whose value fits a u64; `None` on overflow (the generic path then
    /// refuses the number with a typed error).
    #[inline]
    pub(crate) fn digits(&mut self) -> Option<u64> {
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(&byte) = self.bytes.get(self.at) {
            if !byte.is_ascii_digit() {
                break;
            }
            value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
            self.at += 1;
        }
        // JSON forbids leading zeros; the generic path refuses them, so must this.
        let len = self.at - start;
        (len == 1 || (len > 1 && self.bytes[start] != b'0')).then_some(value)
    }

    /// An optional minus sign and one or more ASCII digits: a JSON integer whose value is not
    /// read (Bitget's checksum), as [`digits`](Self::digits) validates it.
    #[inline]
    pub(crate) fn signed_digits(&mut self) -> Option<()> {
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        self.digits().map(|_| ())
    }

    /// An unsigned JSON number (`0`, `52665.02`, `9.2E-7`) of at most
    /// [`MAX_FAST_NUMBER_DIGITS`] digits before its exponent, as its text. At that length every
    /// mantissa fits a u64, so std's parser (the fast path's) and simd-json's (the generic
    /// path's: an integer read as u64 then converted, or a correctly rounded float) give the same
    /// f64; anything longer, or anything that is not JSON's number grammar, is `None`.
    #[inline]
    pub(crate) fn unsigned_number(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let whole = self.skip_digits();
        if whole == 0 || (whole > 1 && self.bytes[start] == b'0') {
            return None;
        }
        let mut mantissa_digits = whole;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            let fraction = self.skip_digits();
            if fraction == 0 {
                return None;
            }
            mantissa_digits += fraction;
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.bytes.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            let exponent = self.skip_digits();
            if exponent == 0 || exponent > 3 {
                return None;
            }
        }
        (mantissa_digits <= MAX_FAST_NUMBER_DIGITS).then(|| &self.bytes[start..self.at])
    }

    /// Moves over ASCII digits; how many.
    #[inline]
    fn skip_digits(&mut self) -> usize {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    /// The two strings of a `["price","size"]` level after its opening `["`, through its `]`.
    #[inline]
    pub(crate) fn level_pair(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let price = self.plain_string()?;
        self.expect(b",\"")?;
        let size = self.plain_string()?;
        self.expect(b"]")?;
        Some((price, size))
    }

    /// The body of a string without escapes or control characters, up to its closing quote.
    #[inline]
    pub(crate) fn plain_string(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let len = rest.iter().position(|&byte| byte == b'"')?;
        let body = &rest[..len];
        if body
            .iter()
            .any(|&byte| byte == b'\\' || !(0x20..0x80).contains(&byte))
        {
            return None;
        }
        self.at += len + 1;
        Some(body)
    }
}
