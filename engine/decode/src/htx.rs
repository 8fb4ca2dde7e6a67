//! HTX (Huobi) spot: `market.<sym>.bbo` and `market.<sym>.trade.detail`. Every server frame is
//! gzip: it is inflated (flate2, zlib-rs backend) into a reused buffer, bounded by `max_frame_bytes` (a gzip bomb is
//! `Oversized`), then parsed in place. `{"ping":n}` is a server ping to answer with `{"pong":n}`.
//!
//! Trade ids come from `tradeId`: `data[].id` is wider than 64 bits and is never read.

use std::sync::Arc;

use flate2::{Decompress, FlushDecompress, Status};

use super::check::{check_record_count, side_from_word};
use super::json::{Context, JsonCore, JsonVenue, QuoteFields, TradeFields};
use super::tape::Json;
use super::{
    ControlEvent, DecodeError, DecodeErrorKind, DecodeLimits, Decoder, FrameEncoding, FrameOutcome,
    RecordBatch,
};
use tickflow_core::record::TimestampNs;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;

/// First capacity of the inflate buffer; it grows (up to `max_frame_bytes`) only for larger frames.
const INFLATE_INITIAL_CAPACITY_BYTES: usize = 4096;

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
            core: JsonCore::new(registry, limits),
            inflater: GzipInflater::new(),
        }
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
                let seq = match tick.get("seqId") {
                    Some(seq) => Some(seq.u64("tick.seqId")?),
                    None => None,
                };
                cx.quote(QuoteFields {
                    symbol_id,
                    bid: tick.field("bid", "tick.bid")?.f64("tick.bid")?,
                    bid_qty: tick.field("bidSize", "tick.bidSize")?.f64("tick.bidSize")?,
                    ask: tick.field("ask", "tick.ask")?.f64("tick.ask")?,
                    ask_qty: tick.field("askSize", "tick.askSize")?.f64("tick.askSize")?,
                    ts_exchange_ns: Some(time.ms_as_ns("tick.quoteTime")?),
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

/// A reusable gzip inflater: the deflate state and the output buffer live across frames.
pub(crate) struct GzipInflater {
    decompress: Decompress,
    inflated: Vec<u8>,
}

fn inflate_error(detail: &'static str) -> DecodeError {
    DecodeError::new(DecodeErrorKind::Inflate, detail)
}

impl GzipInflater {
    pub(crate) fn new() -> GzipInflater {
        GzipInflater {
            decompress: Decompress::new(false),
            inflated: Vec::with_capacity(INFLATE_INITIAL_CAPACITY_BYTES),
        }
    }

    /// Inflates one gzip member; more than `max_bytes` of output is `Oversized`.
    pub(crate) fn inflate(
        &mut self,
        frame: &[u8],
        max_bytes: usize,
    ) -> Result<&mut [u8], DecodeError> {
        let body_start = gzip_header_len(frame)?;
        let body = &frame[body_start..];
        self.decompress.reset(false);
        self.inflated.clear();
        loop {
            let consumed = self.decompress.total_in() as usize;
            let produced = self.inflated.len();
            let input = body
                .get(consumed..)
                .ok_or(inflate_error("deflate overran input"))?;
            let status = self
                .decompress
                .decompress_vec(input, &mut self.inflated, FlushDecompress::None)
                .map_err(|_| inflate_error("corrupt deflate stream"))?;
            if self.inflated.len() > max_bytes {
                return Err(DecodeError::new(
                    DecodeErrorKind::Oversized,
                    "inflated frame larger than max_frame_bytes",
                ));
            }
            match status {
                Status::StreamEnd => break,
                Status::Ok | Status::BufError => {
                    if self.inflated.len() == self.inflated.capacity() {
                        if self.inflated.len() >= max_bytes {
                            return Err(DecodeError::new(
                                DecodeErrorKind::Oversized,
                                "inflated frame larger than max_frame_bytes",
                            ));
                        }
                        // Grow geometrically, never past one byte over the limit.
                        let target = (self.inflated.capacity() * 2).clamp(64, max_bytes + 1);
                        self.inflated.reserve_exact(target - self.inflated.len());
                    } else if self.decompress.total_in() as usize == consumed
                        && self.inflated.len() == produced
                    {
                        return Err(inflate_error("truncated gzip frame"));
                    }
                }
            }
        }
        let consumed = self.decompress.total_in() as usize;
        let trailer = body
            .get(consumed..consumed + 8)
            .ok_or(inflate_error("gzip trailer missing"))?;
        let expected_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let expected_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        let mut crc = flate2::Crc::new();
        crc.update(&self.inflated);
        if crc.sum() != expected_crc || expected_len != self.inflated.len() as u32 {
            return Err(inflate_error("gzip checksum mismatch"));
        }
        Ok(&mut self.inflated)
    }
}

/// Length of the gzip member header (RFC 1952), optional fields included.
fn gzip_header_len(frame: &[u8]) -> Result<usize, DecodeError> {
    const FLAG_HCRC: u8 = 0x02;
    const FLAG_EXTRA: u8 = 0x04;
    const FLAG_NAME: u8 = 0x08;
    const FLAG_COMMENT: u8 = 0x10;
    const FLAG_RESERVED: u8 = 0xe0;
    let header = frame
        .get(..10)
        .ok_or(inflate_error("gzip header truncated"))?;
    if header[0] != 0x1f || header[1] != 0x8b || header[2] != 8 {
        return Err(inflate_error("not a gzip frame"));
    }
    let flags = header[3];
    if flags & FLAG_RESERVED != 0 {
        return Err(inflate_error("reserved gzip flags set"));
    }
    let mut at = 10usize;
    if flags & FLAG_EXTRA != 0 {
        let len = frame
            .get(at..at + 2)
            .ok_or(inflate_error("gzip header truncated"))?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FLAG_NAME, FLAG_COMMENT] {
        if flags & flag != 0 {
            let rest = frame
                .get(at..)
                .ok_or(inflate_error("gzip header truncated"))?;
            let end = rest
                .iter()
                .position(|&byte| byte == 0)
                .ok_or(inflate_error("gzip header truncated"))?;
            at += end + 1;
        }
    }
    if flags & FLAG_HCRC != 0 {
        at += 2;
    }
    if at > frame.len() {
        return Err(inflate_error("gzip header truncated"));
    }
    Ok(at)
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
}
