//! Number parsing: decimal text and tape numbers to f64, integers and nanosecond timestamps, and
//! trade ids as text. Pure conversions: no I/O, no allocation, no state.

use simd_json::{Node, StaticNode};

use super::tape::Json;
use super::{DecodeError, DecodeErrorKind};
use tickflow_core::record::TimestampNs;

/// Typed reads of a tape value as a number, a timestamp or a trade id.
impl<'t, 'i> Json<'t, 'i> {
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
    if let Some(value) = parse_short_decimal(text) {
        return Ok(value);
    }
    let text = std::str::from_utf8(text)
        .map_err(|_| DecodeError::new(DecodeErrorKind::BadNumber, detail))?;
    parse_f64_str(text, detail)
}

/// Most digits [`parse_short_decimal`] takes: every such mantissa is below 2^53, so it and its
/// power of ten are exact f64 values.
const SHORT_DECIMAL_MAX_DIGITS: usize = 15;

/// Exact powers of ten up to 10^15 (every one is an f64 without rounding).
const POWERS_OF_TEN: [f64; SHORT_DECIMAL_MAX_DIGITS + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The prices and sizes venues send (`27450.00`, `0.00012345`: digits with at most one dot, at
/// most 15 digits) without std's general parser: the digits as an integer below 2^53 divided by
/// an exact power of ten is one correctly rounded division of two exact values, so the result is
/// the correctly rounded value of the text, the same f64 std's parser returns (Clinger's fast
/// path; a test compares them). Anything else (a sign, an exponent, more digits, no digit) is
/// `None` and goes to std's parser. Written by hand because the shortcut needs no UTF-8 check and
/// no general grammar, which were a tenth of a feeds thread's time at 800 000 quotes/s.
#[inline]
fn parse_short_decimal(text: &[u8]) -> Option<f64> {
    if text.is_empty() || text.len() > SHORT_DECIMAL_MAX_DIGITS + 1 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut dot_at: Option<usize> = None;
    for (at, &byte) in text.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(byte - b'0');
                digits += 1;
            }
            b'.' if dot_at.is_none() => dot_at = Some(at),
            _ => return None,
        }
    }
    if digits == 0 || digits > SHORT_DECIMAL_MAX_DIGITS {
        return None;
    }
    let fraction_digits = dot_at.map_or(0, |dot| text.len() - dot - 1);
    Some(mantissa as f64 / POWERS_OF_TEN[fraction_digits])
}

/// Like [`parse_f64`], for text already known to be UTF-8 (tape strings).
#[inline]
pub(crate) fn parse_f64_str(text: &str, detail: &'static str) -> Result<f64, DecodeError> {
    if let Some(value) = parse_short_decimal(text.as_bytes()) {
        return Ok(value);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_decimals_parse_to_exactly_what_std_parses() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        for _ in 0..200_000 {
            // Random digits (leading zeros included) with a dot anywhere or nowhere.
            let len = 1 + (next() % 17) as usize;
            let mut text: Vec<u8> = (0..len).map(|_| b'0' + (next() % 10) as u8).collect();
            if next() % 4 != 0 {
                let dot = (next() % (len as u64 + 1)) as usize;
                text.insert(dot, b'.');
            }
            let expected = std::str::from_utf8(&text).unwrap().parse::<f64>().ok();
            if let Some(value) = parse_short_decimal(&text) {
                assert_eq!(Some(value), expected, "{}", String::from_utf8_lossy(&text));
                checked += 1;
            }
            assert_eq!(
                parse_f64(&text, "t").ok(),
                expected,
                "{}",
                String::from_utf8_lossy(&text)
            );
        }
        assert!(checked > 100_000, "the shortcut took {checked} inputs");
        // Edges: the largest mantissa, halfway cases, and what the shortcut leaves to std.
        for text in [
            "999999999999999",
            "0.999999999999999",
            "9007199254740993",
            "0.1",
            "0.3",
            "123456.789012345",
            "5.",
            ".5",
            ".",
            "",
            "-1",
            "1e5",
            "+1",
            "1..2",
            "0x1",
            "0000000000000000.1",
            "NaN",
        ] {
            assert_eq!(
                parse_f64(text.as_bytes(), "t").ok(),
                text.parse::<f64>().ok().filter(|value| value.is_finite()),
                "{text}"
            );
        }
    }

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
}
