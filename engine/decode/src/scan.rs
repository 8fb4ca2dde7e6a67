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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::json::{Context, JsonVenue};
    use super::super::symbol::SymbolResolver;
    use super::super::{DecodeLimits, RecordBatch};
    use super::*;
    use tickflow_core::registry::SymbolRegistry;

    /// What a fast path returned, and the records it appended.
    type FastPathRun = (Option<Result<FrameOutcome, DecodeError>>, RecordBatch);

    /// `V`'s fast path on `frame` (the generic path is not involved), and what it appended.
    fn fast_path<V: JsonVenue>(frame: &[u8]) -> FastPathRun {
        let registry = Arc::new(SymbolRegistry::new(16));
        registry
            .register_all(["BTC-USDT", "METIS-USDT", "BNB-USDT", "BTC-ETH"])
            .expect("valid symbols");
        let mut symbols = SymbolResolver::new(V::VENUE, registry);
        let mut out = RecordBatch::with_capacity(4);
        let outcome = {
            let mut cx = Context::new(V::VENUE, &mut symbols, DecodeLimits::default(), 7, &mut out);
            V::fast_path(frame, &mut cx)
        };
        (outcome, out)
    }

    /// The documented push of every venue with a fast path is taken by it (a fast path that
    /// always fell back would still agree with the generic path in the golden tests), with the
    /// venue's exchange time and sequence, and a frame the scanner refuses is left alone.
    #[test]
    fn every_venues_documented_push_takes_its_fast_path() {
        use tickflow_core::record::FeedEvent;
        let cases: Vec<(&str, FastPathRun, i64, u64)> = vec![
            (
                "binance",
                fast_path::<crate::binance::Binance>(br#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#),
                0,
                400_900_217,
            ),
            (
                "bybit",
                fast_path::<crate::bybit::Bybit>(br#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1709891679000,"data":{"s":"BTCUSDT","b":[["27450.00","0.500"]],"a":[["27451.00","0.750"]],"u":123456789,"seq":987654321},"cts":1709891678998}"#),
                1_709_891_679_000_000_000,
                987_654_321,
            ),
            (
                "okx",
                fast_path::<crate::okx::Okx>(br#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["8476.98","415","0","13"]],"bids":[["8476.97","256","0","12"]],"ts":"1597026383085","seqId":123456}]}"#),
                1_597_026_383_085_000_000,
                123_456,
            ),
            (
                "gate",
                fast_path::<crate::gate::Gate>(br#"{"time":1606293275,"time_ms":1606293275123,"channel":"spot.book_ticker","event":"update","result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"19177.79","B":"0.0003341504","a":"19179.38","A":"0.09"}}"#),
                1_606_293_275_123_000_000,
                48_733_182,
            ),
            (
                "kucoin",
                fast_path::<crate::kucoin::Kucoin>(br#"{"topic":"/spotMarket/level1:BTC-USDT","type":"message","subject":"level1","data":{"asks":["68145.8","0.51987471"],"bids":["68145.7","1.29267802"],"timestamp":1729816058766}}"#),
                1_729_816_058_766_000_000,
                0,
            ),
            (
                "bitget v2",
                fast_path::<crate::bitget::Bitget>(br#"{"action":"snapshot","arg":{"instType":"SPOT","channel":"books1","instId":"METISUSDT"},"data":[{"asks":[["44.90","0.6927"]],"bids":[["44.82","3.5344"]],"checksum":0,"ts":"1730332859988"}],"ts":1730332859989}"#),
                1_730_332_859_988_000_000,
                0,
            ),
            (
                "bitget v3",
                fast_path::<crate::bitget::Bitget>(br#"{"data":[{"a":[["99756.7","23.9774"]],"b":[["99756.6","0.0128"]],"checksum":0,"pseq":0,"seq":1304314508780744705,"ts":"1746698732562"}],"arg":{"instType":"usdt-futures","symbol":"BTCUSDT","topic":"books1"},"action":"snapshot","ts":1746698732563}"#),
                1_746_698_732_562_000_000,
                1_304_314_508_780_744_705,
            ),
            (
                "htx",
                fast_path::<crate::htx::Htx>(br#"{"ch":"market.btcusdt.bbo","ts":1630994555540,"tick":{"seqId":137005210233,"ask":52665.02,"askSize":1.502181,"bid":52665.01,"bidSize":0.178567,"quoteTime":1630994555539,"symbol":"btcusdt"}}"#),
                1_630_994_555_539_000_000,
                137_005_210_233,
            ),
        ];
        for (venue, (outcome, out), ts_exchange_ns, seq) in cases {
            assert_eq!(outcome, Some(Ok(FrameOutcome::Records(1))), "{venue}");
            let [FeedEvent::Quote(quote)] = out.as_slice() else {
                panic!("{venue}: one quote, got {:?}", out.as_slice());
            };
            assert_eq!(quote.ts_exchange_ns, ts_exchange_ns, "{venue}");
            assert_eq!(quote.seq, seq, "{venue}");
            assert_eq!(quote.ts_recv_ns, 7, "{venue}");
            assert!(quote.bid > 0.0 && quote.bid < quote.ask, "{venue}");
        }
        // A shape the scanner does not take is left to the generic path, untouched.
        let (outcome, out) = fast_path::<crate::bybit::Bybit>(br#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[["1","1"]],"u":1,"seq":1},"cts":1}"#);
        assert!(outcome.is_none() && out.is_empty());
    }
}
