//! Input checks: the frame-size and per-frame record limits, plain-text control words, and the
//! rules a price, a quantity and a side word must meet. Pure functions: no state, no allocation.

use super::{DecodeError, DecodeErrorKind, DecodeLimits};
use tickflow_core::records::Side;

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

#[inline]
pub(crate) fn check_price(value: f64, detail: &'static str) -> Result<(), DecodeError> {
    if !value.is_finite() {
        return Err(DecodeError::new(DecodeErrorKind::NonFinite, detail));
    }
    if value <= 0.0 {
        return Err(DecodeError::new(DecodeErrorKind::NonPositivePrice, detail));
    }
    Ok(())
}

#[inline]
pub(crate) fn check_qty(value: f64, detail: &'static str) -> Result<(), DecodeError> {
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
