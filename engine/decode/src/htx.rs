//! HTX (Huobi) spot: `market.<sym>.bbo` and `market.<sym>.trade.detail`. Every server frame is
//! gzip: flate2's gzip reader (header, deflate on the zlib-rs backend, CRC-32 and length trailer),
//! reset for every frame, inflates it into a reused buffer, bounded by `max_frame_bytes` (a gzip
//! bomb is `Oversized`); the JSON is then parsed in place. `{"ping":n}` is a server ping to answer
//! with `{"pong":n}`.
//!
//! HTX documents no spelling for an empty book side; a zero `bid` or `ask` (the numeric "no
//! price") withdraws the quote. A zero `quoteTime` is no exchange time (`FLAG_HAS_TS_EXCHANGE`
//! clear), never the epoch.
//!
//! Trade ids come from `tradeId`: `data[].id` is wider than 64 bits and is never read.
//!
//! A hand-written scanner takes the exact inflated `bbo` push shape (numbers as JSON numbers);
//! anything else (or anything odd in it) falls back to the generic simd-json path.

use std::io::{Cursor, Read};
use std::sync::Arc;

use flate2::bufread::GzDecoder;

use super::check::{check_record_count, check_size, side_from_word};
use super::json::{Context, EmptySide, JsonCore, JsonVenue, TopOfBook, TradeFields, flat_side};
use super::number::ms_to_ns;
use super::scan::{QuoteText, fast_quote};
use super::tape::Json;
use super::{
    ControlEvent, DecodeError, DecodeErrorKind, DecodeLimits, Decoder, FrameEncoding, FrameOutcome,
    RecordBatch,
};
use tickflow_core::record::TimestampNs;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;

/// First size of the inflate buffer; it grows (up to `max_frame_bytes`) only for larger frames.
const INFLATE_INITIAL_CAPACITY_BYTES: usize = 4096;
/// First capacity of the copy of the compressed frame the gzip reader reads from.
const COMPRESSED_INITIAL_CAPACITY_BYTES: usize = 1024;

/// The HTX protocol after inflating (see [`JsonVenue`]).
pub struct Htx;

/// HTX's decoder: gzip inflate, then JSON.
pub struct HtxDecoder {
    core: JsonCore,
    inflater: GzipInflater,
}

impl HtxDecoder {
    pub fn new(registry: Arc<SymbolRegistry>, limits: DecodeLimits) -> HtxDecoder {
        HtxDecoder {
            core: JsonCore::new(Venue::Htx, registry, limits),
            inflater: GzipInflater::new(),
        }
    }

    /// Turns the hand-written fast path off (tests compare it with the generic path).
    pub fn set_fast_path(&mut self, enabled: bool) {
        self.core.fast_path_enabled = enabled;
    }
}

impl Decoder for HtxDecoder {
    fn venue(&self) -> Venue {
        Venue::Htx
    }

    fn decode(
        &mut self,
        frame: &mut [u8],
        encoding: FrameEncoding,
        ts_recv_ns: TimestampNs,
        out: &mut RecordBatch,
    ) -> Result<FrameOutcome, DecodeError> {
        self.core.symbols.clear_unknown();
        match encoding {
            // Not what HTX sends, but a capture may hold the inflated JSON.
            FrameEncoding::Text => self.core.decode::<Htx>(frame, ts_recv_ns, out),
            FrameEncoding::Binary => {
                check_size(frame, &self.core.limits)?;
                let max_bytes = self.core.limits.max_frame_bytes;
                let json = self.inflater.inflate(frame, max_bytes)?;
                self.core.decode::<Htx>(json, ts_recv_ns, out)
            }
        }
    }

    fn unknown_symbol(&self) -> Option<&[u8]> {
        self.core.symbols.last_unknown()
    }
}

impl JsonVenue for Htx {
    const VENUE: Venue = Venue::Htx;

    #[inline]
    fn fast_path(frame: &[u8], cx: &mut Context<'_>) -> Option<Result<FrameOutcome, DecodeError>> {
        let fields = scan_bbo(frame)?;
        // A zero quote time says there is none, as on the generic path.
        let ts_exchange_ns = match ms_to_ns(fields.quote_time_ms, "tick.quoteTime").ok()? {
            0 => None,
            ns => Some(ns),
        };
        fast_quote(fields.quote, ts_exchange_ns, Some(fields.seq_id), cx)
    }

    fn decode_json(root: Json<'_, '_>, cx: &mut Context<'_>) -> Result<FrameOutcome, DecodeError> {
        if let Some(ping) = root.get("ping") {
            let nonce = ping.u64("ping")?;
            return Ok(FrameOutcome::Control(ControlEvent::ServerPing { nonce }));
        }
        if root.get("pong").is_some() {
            return Ok(FrameOutcome::Control(ControlEvent::Pong));
        }
        if let Some(action) = root.get("action").and_then(Json::as_str) {
            // The v2 (account) protocol's ping, should a capture hold one.
            if action == "ping" {
                let nonce = root
                    .field("data", "data")?
                    .field("ts", "data.ts")?
                    .u64("data.ts")?;
                return Ok(FrameOutcome::Control(ControlEvent::ServerPing { nonce }));
            }
        }
        if let Some(status) = root.get("status") {
            let control = match status.str("status")? {
                "ok" => ControlEvent::SubscribeAck,
                _ => ControlEvent::ErrorReply {
                    code: root
                        .get("err-code")
                        .and_then(|code| code.i64("err-code").ok())
                        .unwrap_or(-1),
                },
            };
            return Ok(FrameOutcome::Control(control));
        }
        let channel = root.field("ch", "ch")?.str("ch")?;
        let rest = channel
            .strip_prefix("market.")
            .ok_or(DecodeError::new(DecodeErrorKind::UnknownMessage, "ch"))?;
        let (symbol, topic) = rest
            .split_once('.')
            .ok_or(DecodeError::new(DecodeErrorKind::UnknownMessage, "ch"))?;
        let tick = root.field("tick", "tick")?;
        match topic {
            "bbo" => {
                let symbol_id = cx.resolve(symbol)?;
                let time =
                    tick.get("quoteTime")
                        .or_else(|| root.get("ts"))
                        .ok_or(DecodeError::new(
                            DecodeErrorKind::MissingField,
                            "tick.quoteTime",
                        ))?;
                // A zero quote time says there is none: no exchange time, never the epoch.
                let ts_exchange_ns = match time.ms_as_ns("tick.quoteTime")? {
                    0 => None,
                    ns => Some(ns),
                };
                let seq = match tick.get("seqId") {
                    Some(seq) => Some(seq.u64("tick.seqId")?),
                    None => None,
                };
                let bid = flat_side(
                    tick.field("bid", "tick.bid")?,
                    tick.get("bidSize"),
                    EmptySide::Zero,
                    "tick.bid",
                    "tick.bidSize",
                )?;
                let ask = flat_side(
                    tick.field("ask", "tick.ask")?,
                    tick.get("askSize"),
                    EmptySide::Zero,
                    "tick.ask",
                    "tick.askSize",
                )?;
                cx.top_of_book(TopOfBook {
                    symbol_id,
                    bid,
                    ask,
                    ts_exchange_ns,
                    seq,
                })?;
                cx.records()
            }
            "trade.detail" => {
                let symbol_id = cx.resolve(symbol)?;
                let trades = tick.field("data", "tick.data")?.array("tick.data")?;
                check_record_count(trades.len(), &cx.limits)?;
                for trade in trades {
                    let mut digits = [0u8; 20];
                    let trade_id = trade
                        .field("tradeId", "tick.data[].tradeId")?
                        .trade_id(&mut digits, "tick.data[].tradeId")?;
                    cx.trade(TradeFields {
                        symbol_id,
                        price: trade
                            .field("price", "tick.data[].price")?
                            .f64("tick.data[].price")?,
                        qty: trade
                            .field("amount", "tick.data[].amount")?
                            .f64("tick.data[].amount")?,
                        side: side_from_word(
                            trade
                                .field("direction", "tick.data[].direction")?
                                .str("tick.data[].direction")?,
                            "tick.data[].direction",
                        )?,
                        trade_id,
                        ts_exchange_ns: Some(
                            trade
                                .field("ts", "tick.data[].ts")?
                                .ms_as_ns("tick.data[].ts")?,
                        ),
                    })?;
                }
                cx.records()
            }
            _ => Err(DecodeError::new(DecodeErrorKind::UnknownMessage, "ch")),
        }
    }
}

/// The byte fields of an inflated `bbo` push found by [`scan_bbo`].
#[derive(Debug, PartialEq)]
pub(crate) struct BboText<'a> {
    pub(crate) quote: QuoteText<'a>,
    pub(crate) quote_time_ms: u64,
    pub(crate) seq_id: u64,
}

/// Matches exactly `{"ch":"market.<sym>.bbo","ts":<digits>,"tick":{"seqId":<digits>,"ask":<num>,
/// "askSize":<num>,"bid":<num>,"bidSize":<num>,"quoteTime":<digits>,"symbol":"<s>"}}` (no
/// whitespace, no escapes, nothing after; numbers as [`Cursor::unsigned_number`] takes them), the
/// shape HTX documents and sends. The symbol is the channel's text between `market.` and its next
/// `.`, as the generic path reads it. Any deviation returns `None`.
#[inline]
pub(crate) fn scan_bbo(frame: &[u8]) -> Option<BboText<'_>> {
    let mut cursor = super::scan::Cursor::new(frame);
    cursor.expect(br#"{"ch":"market."#)?;
    let channel_rest = cursor.plain_string()?;
    let symbol = channel_rest.strip_suffix(b".bbo")?;
    if symbol.contains(&b'.') {
        return None;
    }
    cursor.expect(br#","ts":"#)?;
    cursor.digits()?;
    cursor.expect(br#","tick":{"seqId":"#)?;
    let seq_id = cursor.digits()?;
    cursor.expect(br#","ask":"#)?;
    let ask = cursor.unsigned_number()?;
    cursor.expect(br#","askSize":"#)?;
    let ask_qty = cursor.unsigned_number()?;
    cursor.expect(br#","bid":"#)?;
    let bid = cursor.unsigned_number()?;
    cursor.expect(br#","bidSize":"#)?;
    let bid_qty = cursor.unsigned_number()?;
    cursor.expect(br#","quoteTime":"#)?;
    let quote_time_ms = cursor.digits()?;
    cursor.expect(br#","symbol":""#)?;
    cursor.plain_string()?;
    cursor.expect(b"}}")?;
    cursor.at_end().then_some(BboText {
        quote: QuoteText {
            symbol,
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        quote_time_ms,
        seq_id,
    })
}

/// A reusable gzip inflater: flate2's gzip reader and the output buffer live across frames, so
/// a frame allocates nothing once the buffers reached their working size.
pub(crate) struct GzipInflater {
    /// Reads one gzip member from a copy of the frame (flate2's reader owns its input; the copy of
    /// a compressed frame is small next to inflating it). Reset for every frame.
    reader: GzDecoder<Cursor<Vec<u8>>>,
    /// The inflated bytes of the current frame are its first `filled` bytes (see `inflate`). It
    /// stays initialized to its full length, so a frame never zero-fills it again.
    inflated: Vec<u8>,
}

fn inflate_error(detail: &'static str) -> DecodeError {
    DecodeError::new(DecodeErrorKind::Inflate, detail)
}

fn oversized() -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::Oversized,
        "inflated frame larger than max_frame_bytes",
    )
}

impl GzipInflater {
    pub(crate) fn new() -> GzipInflater {
        GzipInflater {
            reader: GzDecoder::new(Cursor::new(Vec::with_capacity(
                COMPRESSED_INITIAL_CAPACITY_BYTES,
            ))),
            inflated: vec![0; INFLATE_INITIAL_CAPACITY_BYTES],
        }
    }

    /// Inflates one gzip member (bytes after it are ignored); more than `max_bytes` of output is
    /// `Oversized`, a bad header, deflate stream or trailer (CRC-32, length) is `Inflate`.
    pub(crate) fn inflate(
        &mut self,
        frame: &[u8],
        max_bytes: usize,
    ) -> Result<&mut [u8], DecodeError> {
        let mut compressed = std::mem::take(self.reader.get_mut().get_mut());
        compressed.clear();
        compressed.extend_from_slice(frame);
        // The previous frame's reader comes back holding the empty vector left by `take`.
        self.reader.reset(Cursor::new(compressed));
        // One byte past the limit is enough to tell an oversized frame.
        let cap_bytes = max_bytes.saturating_add(1);
        let mut filled = 0usize;
        loop {
            if filled == self.inflated.len() {
                if filled >= cap_bytes {
                    return Err(oversized());
                }
                // Grow geometrically, never past one byte over the limit.
                let target = (filled * 2).max(64).min(cap_bytes);
                self.inflated.resize(target, 0);
            }
            let room = (self.inflated.len()).min(cap_bytes);
            match self.reader.read(&mut self.inflated[filled..room]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(_) => return Err(inflate_error("corrupt or truncated gzip frame")),
            }
            if filled > max_bytes {
                return Err(oversized());
            }
        }
        Ok(&mut self.inflated[..filled])
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn inflates_and_bounds_output() {
        let mut inflater = GzipInflater::new();
        let text = br#"{"ping":1618678073643}"#;
        assert_eq!(inflater.inflate(&gzip(text), 1024).unwrap(), text);
        let big = vec![b' '; 100_000];
        assert_eq!(
            inflater.inflate(&gzip(&big), 100_000).unwrap().len(),
            100_000
        );
        let error = inflater.inflate(&gzip(&big), 99_999).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::Oversized);
        let frame = gzip(text);
        for cut in 0..frame.len() {
            assert_eq!(
                inflater.inflate(&frame[..cut], 1024).unwrap_err().kind,
                DecodeErrorKind::Inflate,
                "cut at {cut}"
            );
        }
        assert_eq!(
            inflater.inflate(text, 1024).unwrap_err().kind,
            DecodeErrorKind::Inflate
        );
    }

    #[test]
    fn checks_header_and_trailer_and_recovers_after_errors() {
        let mut inflater = GzipInflater::new();
        let text = br#"{"ping":1}"#;
        let frame = gzip(text);
        // The trailer: CRC-32, then the length mod 2^32.
        let crc_at = frame.len() - 8;
        for at in [crc_at, frame.len() - 4] {
            let mut bad = frame.clone();
            bad[at] ^= 1;
            assert_eq!(
                inflater.inflate(&bad, 1024).unwrap_err().kind,
                DecodeErrorKind::Inflate,
                "trailer byte {at}"
            );
            // The same inflater takes the next good frame.
            assert_eq!(inflater.inflate(&frame, 1024).unwrap(), text);
        }
        // Reserved flags and a wrong method are refused.
        for (at, value) in [(3, 0x20u8), (2, 7)] {
            let mut bad = frame.clone();
            bad[at] = value;
            assert_eq!(
                inflater.inflate(&bad, 1024).unwrap_err().kind,
                DecodeErrorKind::Inflate
            );
        }
        // Optional header fields (extra, name, comment) are skipped.
        let named = flate2::GzBuilder::new()
            .filename("frame.json")
            .comment("c")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::default());
        let mut named = named;
        named.write_all(text).unwrap();
        let named = named.finish().unwrap();
        assert_eq!(inflater.inflate(&named, 1024).unwrap(), text);
        // Bytes after the member are ignored; an empty member is an empty frame.
        let mut trailing = frame.clone();
        trailing.extend_from_slice(b"junk");
        assert_eq!(inflater.inflate(&trailing, 1024).unwrap(), text);
        assert_eq!(inflater.inflate(&gzip(b""), 1024).unwrap(), b"");
        // A limit below the first buffer size still bounds the output exactly.
        assert_eq!(inflater.inflate(&frame, text.len()).unwrap(), text);
        assert_eq!(
            inflater.inflate(&frame, text.len() - 1).unwrap_err().kind,
            DecodeErrorKind::Oversized
        );
    }

    const BBO: &[u8] = br#"{"ch":"market.btcusdt.bbo","ts":1630994555540,"tick":{"seqId":137005210233,"ask":52665.02,"askSize":1.502181,"bid":52665.01,"bidSize":0.178567,"quoteTime":1630994555539,"symbol":"btcusdt"}}"#;

    #[test]
    fn scanner_takes_the_documented_bbo_and_nothing_else() {
        assert_eq!(
            scan_bbo(BBO),
            Some(BboText {
                quote: QuoteText {
                    symbol: b"btcusdt",
                    bid: b"52665.01",
                    bid_qty: b"0.178567",
                    ask: b"52665.02",
                    ask_qty: b"1.502181",
                },
                quote_time_ms: 1_630_994_555_539,
                seq_id: 137_005_210_233,
            })
        );
        assert!(scan_bbo(&BBO[..BBO.len() - 1]).is_none());
        let text = std::str::from_utf8(BBO).unwrap();
        for (from, to) in [
            // The older variant: numbers as strings.
            (r#""ask":52665.02"#, r#""ask":"52665.02""#),
            ("market.btcusdt.bbo", "market.btc.usdt.bbo"),
            ("market.btcusdt.bbo", "market.btcusdt.depth"),
            (r#""ask":52665.02"#, r#""ask":052665.02"#),
            (r#""ask":52665.02"#, r#""ask":52665."#),
            (r#""ask":52665.02"#, r#""ask":-52665.02"#),
            (r#""ask":52665.02"#, r#""ask":5266502000000000000.1"#),
            (r#""ask":52665.02"#, r#""ask":5.266502e1000"#),
        ] {
            let variant = text.replacen(from, to, 1);
            assert_ne!(variant, text, "{from}");
            assert!(scan_bbo(variant.as_bytes()).is_none(), "{variant}");
        }
        let exponent = text.replacen(r#""bidSize":0.178567"#, r#""bidSize":1.78567E-1"#, 1);
        assert_eq!(
            scan_bbo(exponent.as_bytes()).map(|fields| fields.quote.bid_qty),
            Some(&b"1.78567E-1"[..])
        );
    }
}
