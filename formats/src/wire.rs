//! The NATS wire format: how a collector publishes one record (the NATS sink, `plugins/nats`) and
//! how an aggregator's NATS source reads it back. Owns the payload codec, the subject scheme, the
//! symbol partitioning and the message id; no I/O.
//!
//! # Payload (binary, wire schema version 1)
//!
//! One NATS message carries one record. Every integer and float is little-endian and written
//! field by field (never a copy of the C struct, so padding and reserved bytes do not travel).
//! Strings are a `u8` byte length followed by that many bytes of UTF-8 (at most 255 bytes).
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 4 | magic | `"TFW1"` (`54 46 57 31`) |
//! | 4 | 2 | version | wire schema version, `u16` = [`WIRE_VERSION`] |
//! | 6 | 1 | kind | [`WireKind`]: 0 quote, 1 trade, 2 spread sample, 3 opportunity, 4 gap, 6 venue status |
//! | 7 | 1 | flags | zero in version 1; readers ignore unknown bits |
//! | 8 | 8 | seq | `u64`, per collector, increasing by one per message the collector publishes |
//! | 16 | 1+n | collector | string: the publishing collector's id |
//! | … | 1+n each | names | strings, per kind (table below) |
//! | … | per kind | body | the record's fields, in the order below |
//!
//! Names per kind (an empty string is a name the collector did not know):
//!
//! | kind | names |
//! |---|---|
//! | quote, trade, gap | venue, symbol |
//! | spread sample, opportunity | buy venue, sell venue, symbol |
//! | venue status | venue |
//!
//! Bodies (`f64` IEEE-754, `i64` ns since the Unix epoch unless said otherwise; ids are the
//! collector's own, meaningful only with the names):
//!
//! | kind | body fields (size in bytes) | total |
//! |---|---|---|
//! | quote | bid 8, bid_qty 8, ask 8, ask_qty 8, ts_exchange_ns 8, ts_recv_ns 8, seq 8 (`u64`), symbol_id 4, venue_id 2, flags 1 | 63 |
//! | trade | price 8, qty 8, ts_exchange_ns 8, ts_recv_ns 8, symbol_id 4, venue_id 2, side 1, flags 1, trade_id 1+n (`u8` length ≤ 23, raw bytes) | 41 + n |
//! | spread sample | bucket_start_ns 8, bucket_duration_ns 8, last_bp 8, min_bp 8, max_bp 8, mean_bp 8, window_mean_bp 8, window_std_bp 8, band_lower_bp 8, band_upper_bp 8, samples 4, symbol_id 4, buy_venue_id 2, sell_venue_id 2, flags 4 (`u32`) | 96 |
//! | opportunity | ts_ns 8, started_ns 8, threshold_bp 8, spread_bp 8, peak_bp 8, symbol_id 4, buy_venue_id 2, sell_venue_id 2, kind 1, flags 1 | 50 |
//! | gap | ts_ns 8, connection_id 4, symbol_id 4, venue_id 2, kind 1 | 19 |
//! | venue status | ts_ns 8, last_data_ns 8, reconnects 8 (`u64`), connections_up 4, connections_planned 4, venue_id 2 | 34 |
//!
//! Nothing may follow the body: trailing bytes are an error. A reader refuses a different magic,
//! a newer version and an unknown kind ([`WireError`]); [`decode`] never panics on any input.
//! Evolution: a new kind is added with a new kind number; a field is never added to a version's
//! body — a new body layout is a new [`WIRE_VERSION`].
//!
//! # JSON
//!
//! [`encode_json`] writes the same record as one JSON object for other consumers:
//! `{"v":1,"kind":"quote","collector":"c1","seq":7,"venue":"binance","symbol":"BTC-USDT",
//! "bid":…}` — the header fields, the names (`venue` / `buy_venue`, `sell_venue`, `symbol`) and
//! the body's fields under their record field names (a trade id as text; non-finite floats as
//! `null`). Its version is the same [`WIRE_VERSION`].
//!
//! # Subjects
//!
//! Records: `<prefix>.<kind>.<partition>.<venue>.<symbol>` ([`subject`]), with the kind's
//! [`WireKind::name`], the symbol's [`partition_of`], the venue name (for the two-venue kinds
//! `<buy>~<sell>`, [`pair_token`]) and the canonical symbol name (`_` for a venue status).
//! Heartbeats: `<prefix>.heartbeat.<collector>.<venue>` ([`heartbeat_subject`]), carrying a
//! venue-status payload: a collector publishes every venue status there (and repeats the last
//! one per venue at least every `heartbeat_ms`), not under [`record_subject`]. Every name is made a NATS subject token ([`subject_token`]): `.`, `*`,
//! `>`, whitespace and control characters become `_`, an empty name becomes `_`.
//!
//! # Partitions
//!
//! [`partition_of`] is the 32-bit FNV-1a hash of the canonical symbol name's UTF-8 bytes
//! (offset basis `0x811c9dc5`, prime `0x01000193`), modulo the partition count. It is part of the
//! format: an aggregator that owns partitions `{p…}` of `N` subscribes to
//! `<prefix>.quote.<p>.>` for each, and every collector must use the same `N`.
//!
//! # Message ids
//!
//! [`message_id`] is `<collector>-<seq>`, sent as JetStream's `Nats-Msg-Id`, so a message
//! re-published after a lost acknowledgement is stored once within the stream's duplicate
//! window. A collector starts its `seq` at its start time in ns since the Unix epoch, so ids stay
//! unique across its restarts.

use std::fmt::Write as _;

use serde::Serialize;
use tickflow_sdk::records::{
    GapEvent, OpportunityEvent, Quote, SpreadSample, SymbolId, TRADE_ID_CAPACITY_BYTES, Trade,
    VenueId, VenueStatus,
};

/// The first four bytes of every binary payload.
pub const WIRE_MAGIC: [u8; 4] = *b"TFW1";
/// The wire schema version this module writes and the newest it reads.
pub const WIRE_VERSION: u16 = 1;
/// Bytes of the fixed header (magic, version, kind, flags, seq).
pub const HEADER_BYTES: usize = 16;
/// Longest string (collector id, venue or symbol name) a payload carries.
pub const NAME_MAX_BYTES: usize = 255;
/// Largest body of any kind (a spread sample).
pub const BODY_MAX_BYTES: usize = 96;
/// Largest binary payload: header, four strings at their longest, the largest body.
pub const PAYLOAD_MAX_BYTES: usize = HEADER_BYTES + 4 * (1 + NAME_MAX_BYTES) + BODY_MAX_BYTES;

/// FNV-1a (32-bit) offset basis, for [`partition_of`].
pub const FNV1A_OFFSET_BASIS: u32 = 0x811c_9dc5;
/// FNV-1a (32-bit) prime, for [`partition_of`].
pub const FNV1A_PRIME: u32 = 0x0100_0193;

/// The kinds of record the wire carries. Values are the ABI's record kinds (`TF_KIND_*`);
/// telemetry (5) stays inside its engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WireKind {
    Quote = 0,
    Trade = 1,
    SpreadSample = 2,
    Opportunity = 3,
    Gap = 4,
    VenueStatus = 6,
}

impl WireKind {
    pub const ALL: [WireKind; 6] = [
        WireKind::Quote,
        WireKind::Trade,
        WireKind::SpreadSample,
        WireKind::Opportunity,
        WireKind::Gap,
        WireKind::VenueStatus,
    ];

    pub fn from_u8(value: u8) -> Option<WireKind> {
        WireKind::ALL.into_iter().find(|kind| *kind as u8 == value)
    }

    /// The kind's subject token and JSON `kind`: `quote`, `trade`, `spread_sample`,
    /// `opportunity`, `gap`, `venue_status`.
    pub fn name(self) -> &'static str {
        match self {
            WireKind::Quote => "quote",
            WireKind::Trade => "trade",
            WireKind::SpreadSample => "spread_sample",
            WireKind::Opportunity => "opportunity",
            WireKind::Gap => "gap",
            WireKind::VenueStatus => "venue_status",
        }
    }

    pub fn from_name(name: &str) -> Option<WireKind> {
        WireKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the kind names two venues (buy, sell).
    pub fn is_pair(self) -> bool {
        matches!(self, WireKind::SpreadSample | WireKind::Opportunity)
    }
}

/// The payload of a heartbeat: the ABI's venue status (`tf_venue_status`, record kind 6, ABI
/// 1.3). An alias kept for readers of the wire; the type is [`VenueStatus`].
pub type WireVenueStatus = VenueStatus;

/// A record's fields as the wire carries them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WireBody {
    Quote(Quote),
    Trade(Trade),
    SpreadSample(SpreadSample),
    Opportunity(OpportunityEvent),
    Gap(GapEvent),
    VenueStatus(VenueStatus),
}

impl WireBody {
    pub fn kind(&self) -> WireKind {
        match self {
            WireBody::Quote(_) => WireKind::Quote,
            WireBody::Trade(_) => WireKind::Trade,
            WireBody::SpreadSample(_) => WireKind::SpreadSample,
            WireBody::Opportunity(_) => WireKind::Opportunity,
            WireBody::Gap(_) => WireKind::Gap,
            WireBody::VenueStatus(_) => WireKind::VenueStatus,
        }
    }

    /// The record's symbol id (none for a venue status).
    pub fn symbol_id(&self) -> Option<SymbolId> {
        match self {
            WireBody::Quote(quote) => Some(quote.symbol_id),
            WireBody::Trade(trade) => Some(trade.symbol_id),
            WireBody::SpreadSample(sample) => Some(sample.symbol_id),
            WireBody::Opportunity(event) => Some(event.symbol_id),
            WireBody::Gap(gap) => Some(gap.symbol_id),
            WireBody::VenueStatus(_) => None,
        }
    }

    /// The record's venue ids: (venue or buy venue, sell venue for the two-venue kinds).
    pub fn venue_ids(&self) -> (VenueId, Option<VenueId>) {
        match self {
            WireBody::Quote(quote) => (quote.venue_id, None),
            WireBody::Trade(trade) => (trade.venue_id, None),
            WireBody::SpreadSample(sample) => (sample.buy_venue_id, Some(sample.sell_venue_id)),
            WireBody::Opportunity(event) => (event.buy_venue_id, Some(event.sell_venue_id)),
            WireBody::Gap(gap) => (gap.venue_id, None),
            WireBody::VenueStatus(status) => (status.venue_id, None),
        }
    }
}

/// The names a record refers to. `venue` is the record's venue (the buy venue of a spread
/// sample or opportunity); `sell_venue` is used by the two-venue kinds only, `symbol` by every
/// kind but venue status. Unused names are written as nothing and decoded as `""`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireNames<'a> {
    pub venue: &'a str,
    pub sell_venue: &'a str,
    pub symbol: &'a str,
}

/// One decoded payload; the strings borrow the payload bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WireRecord<'a> {
    /// The payload's wire schema version.
    pub version: u16,
    pub flags: u8,
    /// The collector's message sequence number.
    pub seq: u64,
    pub collector: &'a str,
    pub names: WireNames<'a>,
    pub body: WireBody,
}

impl WireRecord<'_> {
    pub fn kind(&self) -> WireKind {
        self.body.kind()
    }
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payload ends after {len} bytes, {needed} needed")]
    Truncated { len: usize, needed: usize },
    #[error("not a tickflow wire payload (magic {found:02x?})")]
    BadMagic { found: [u8; 4] },
    #[error(
        "wire schema version {found} is newer than {WIRE_VERSION}, the newest this reader knows"
    )]
    UnsupportedVersion { found: u16 },
    #[error("unknown record kind {found}")]
    UnknownKind { found: u8 },
    #[error("{field} is not UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("{field} is {len} bytes, at most {max} fit")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{count} bytes follow the record")]
    TrailingBytes { count: usize },
    #[error("JSON encoding failed: {message}")]
    Json { message: String },
}

/// Appends the binary payload of `body` with its `names`, the publishing `collector` and its
/// sequence number `seq` to `out`. On error `out` is left as it was.
pub fn encode(
    body: &WireBody,
    names: &WireNames<'_>,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let start = out.len();
    let result = encode_inner(body, names, collector, seq, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_inner(
    body: &WireBody,
    names: &WireNames<'_>,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let kind = body.kind();
    out.extend_from_slice(&WIRE_MAGIC);
    out.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&seq.to_le_bytes());
    put_str(out, "collector", collector)?;
    put_str(out, "venue", names.venue)?;
    if kind.is_pair() {
        put_str(out, "sell venue", names.sell_venue)?;
    }
    if kind != WireKind::VenueStatus {
        put_str(out, "symbol", names.symbol)?;
    }
    match body {
        WireBody::Quote(quote) => {
            put_f64(out, quote.bid);
            put_f64(out, quote.bid_qty);
            put_f64(out, quote.ask);
            put_f64(out, quote.ask_qty);
            out.extend_from_slice(&quote.ts_exchange_ns.to_le_bytes());
            out.extend_from_slice(&quote.ts_recv_ns.to_le_bytes());
            out.extend_from_slice(&quote.seq.to_le_bytes());
            out.extend_from_slice(&quote.symbol_id.0.to_le_bytes());
            out.extend_from_slice(&quote.venue_id.0.to_le_bytes());
            out.push(quote.flags);
        }
        WireBody::Trade(trade) => {
            put_f64(out, trade.price);
            put_f64(out, trade.qty);
            out.extend_from_slice(&trade.ts_exchange_ns.to_le_bytes());
            out.extend_from_slice(&trade.ts_recv_ns.to_le_bytes());
            out.extend_from_slice(&trade.symbol_id.0.to_le_bytes());
            out.extend_from_slice(&trade.venue_id.0.to_le_bytes());
            out.push(trade.side);
            out.push(trade.flags);
            let id_len = usize::from(trade.trade_id_len);
            if id_len > TRADE_ID_CAPACITY_BYTES {
                return Err(WireError::TooLong {
                    field: "trade id",
                    len: id_len,
                    max: TRADE_ID_CAPACITY_BYTES,
                });
            }
            out.push(trade.trade_id_len);
            out.extend_from_slice(&trade.trade_id[..id_len]);
        }
        WireBody::SpreadSample(sample) => {
            out.extend_from_slice(&sample.bucket_start_ns.to_le_bytes());
            out.extend_from_slice(&sample.bucket_duration_ns.to_le_bytes());
            for value in [
                sample.last_bp,
                sample.min_bp,
                sample.max_bp,
                sample.mean_bp,
                sample.window_mean_bp,
                sample.window_std_bp,
                sample.band_lower_bp,
                sample.band_upper_bp,
            ] {
                put_f64(out, value);
            }
            out.extend_from_slice(&sample.samples.to_le_bytes());
            out.extend_from_slice(&sample.symbol_id.0.to_le_bytes());
            out.extend_from_slice(&sample.buy_venue_id.0.to_le_bytes());
            out.extend_from_slice(&sample.sell_venue_id.0.to_le_bytes());
            out.extend_from_slice(&sample.flags.to_le_bytes());
        }
        WireBody::Opportunity(event) => {
            out.extend_from_slice(&event.ts_ns.to_le_bytes());
            out.extend_from_slice(&event.started_ns.to_le_bytes());
            put_f64(out, event.threshold_bp);
            put_f64(out, event.spread_bp);
            put_f64(out, event.peak_bp);
            out.extend_from_slice(&event.symbol_id.0.to_le_bytes());
            out.extend_from_slice(&event.buy_venue_id.0.to_le_bytes());
            out.extend_from_slice(&event.sell_venue_id.0.to_le_bytes());
            out.push(event.kind);
            out.push(event.flags);
        }
        WireBody::Gap(gap) => {
            out.extend_from_slice(&gap.ts_ns.to_le_bytes());
            out.extend_from_slice(&gap.connection_id.to_le_bytes());
            out.extend_from_slice(&gap.symbol_id.0.to_le_bytes());
            out.extend_from_slice(&gap.venue_id.0.to_le_bytes());
            out.push(gap.kind);
        }
        WireBody::VenueStatus(status) => {
            out.extend_from_slice(&status.ts_ns.to_le_bytes());
            out.extend_from_slice(&status.last_data_ns.to_le_bytes());
            out.extend_from_slice(&status.reconnects.to_le_bytes());
            out.extend_from_slice(&status.connections_up.to_le_bytes());
            out.extend_from_slice(&status.connections_planned.to_le_bytes());
            out.extend_from_slice(&status.venue_id.0.to_le_bytes());
        }
    }
    Ok(())
}

/// [`encode`] for a quote.
pub fn encode_quote(
    quote: &Quote,
    names: &WireNames<'_>,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    encode(&WireBody::Quote(*quote), names, collector, seq, out)
}

/// [`encode`] for a trade.
pub fn encode_trade(
    trade: &Trade,
    names: &WireNames<'_>,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    encode(&WireBody::Trade(*trade), names, collector, seq, out)
}

/// [`encode`] for a spread sample.
pub fn encode_spread_sample(
    sample: &SpreadSample,
    names: &WireNames<'_>,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    encode(&WireBody::SpreadSample(*sample), names, collector, seq, out)
}

/// [`encode`] for an opportunity event.
pub fn encode_opportunity(
    event: &OpportunityEvent,
    names: &WireNames<'_>,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    encode(&WireBody::Opportunity(*event), names, collector, seq, out)
}

/// [`encode`] for a gap event.
pub fn encode_gap(
    gap: &GapEvent,
    names: &WireNames<'_>,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    encode(&WireBody::Gap(*gap), names, collector, seq, out)
}

/// [`encode`] for a venue status (a heartbeat).
pub fn encode_venue_status(
    status: &VenueStatus,
    venue: &str,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let names = WireNames {
        venue,
        ..WireNames::default()
    };
    encode(&WireBody::VenueStatus(*status), &names, collector, seq, out)
}

fn put_f64(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_bits().to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, field: &'static str, text: &str) -> Result<(), WireError> {
    let len = text.len();
    let Ok(len_byte) = u8::try_from(len) else {
        return Err(WireError::TooLong {
            field,
            len,
            max: NAME_MAX_BYTES,
        });
    };
    out.push(len_byte);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// A bounds-checked reader over a payload: every read either returns the bytes or `Truncated`.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .position
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(WireError::Truncated {
                len: self.bytes.len(),
                needed: self.position.saturating_add(count),
            })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, WireError> {
        Ok(f64::from_bits(self.u64()?))
    }
    fn str(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8 { field })
    }
}

/// Decodes one binary payload. Never panics: every malformed input is a [`WireError`].
pub fn decode(payload: &[u8]) -> Result<WireRecord<'_>, WireError> {
    let mut reader = Reader {
        bytes: payload,
        position: 0,
    };
    let magic: [u8; 4] = reader.array()?;
    if magic != WIRE_MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let version = reader.u16()?;
    if version == 0 || version > WIRE_VERSION {
        return Err(WireError::UnsupportedVersion { found: version });
    }
    let kind_byte = reader.u8()?;
    let kind = WireKind::from_u8(kind_byte).ok_or(WireError::UnknownKind { found: kind_byte })?;
    let flags = reader.u8()?;
    let seq = reader.u64()?;
    let collector = reader.str("collector")?;
    let venue = reader.str("venue")?;
    let sell_venue = if kind.is_pair() {
        reader.str("sell venue")?
    } else {
        ""
    };
    let symbol = if kind == WireKind::VenueStatus {
        ""
    } else {
        reader.str("symbol")?
    };
    let body = match kind {
        WireKind::Quote => WireBody::Quote(Quote {
            bid: reader.f64()?,
            bid_qty: reader.f64()?,
            ask: reader.f64()?,
            ask_qty: reader.f64()?,
            ts_exchange_ns: reader.i64()?,
            ts_recv_ns: reader.i64()?,
            seq: reader.u64()?,
            symbol_id: SymbolId(reader.u32()?),
            venue_id: VenueId(reader.u16()?),
            flags: reader.u8()?,
            reserved: 0,
        }),
        WireKind::Trade => {
            let mut trade = Trade {
                price: reader.f64()?,
                qty: reader.f64()?,
                ts_exchange_ns: reader.i64()?,
                ts_recv_ns: reader.i64()?,
                symbol_id: SymbolId(reader.u32()?),
                venue_id: VenueId(reader.u16()?),
                side: reader.u8()?,
                flags: reader.u8()?,
                ..Trade::default()
            };
            let id_len = reader.u8()?;
            if usize::from(id_len) > TRADE_ID_CAPACITY_BYTES {
                return Err(WireError::TooLong {
                    field: "trade id",
                    len: usize::from(id_len),
                    max: TRADE_ID_CAPACITY_BYTES,
                });
            }
            let id = reader.take(usize::from(id_len))?;
            trade.trade_id[..id.len()].copy_from_slice(id);
            trade.trade_id_len = id_len;
            WireBody::Trade(trade)
        }
        WireKind::SpreadSample => WireBody::SpreadSample(SpreadSample {
            bucket_start_ns: reader.i64()?,
            bucket_duration_ns: reader.i64()?,
            last_bp: reader.f64()?,
            min_bp: reader.f64()?,
            max_bp: reader.f64()?,
            mean_bp: reader.f64()?,
            window_mean_bp: reader.f64()?,
            window_std_bp: reader.f64()?,
            band_lower_bp: reader.f64()?,
            band_upper_bp: reader.f64()?,
            samples: reader.u32()?,
            symbol_id: SymbolId(reader.u32()?),
            buy_venue_id: VenueId(reader.u16()?),
            sell_venue_id: VenueId(reader.u16()?),
            flags: reader.u32()?,
        }),
        WireKind::Opportunity => WireBody::Opportunity(OpportunityEvent {
            ts_ns: reader.i64()?,
            started_ns: reader.i64()?,
            threshold_bp: reader.f64()?,
            spread_bp: reader.f64()?,
            peak_bp: reader.f64()?,
            symbol_id: SymbolId(reader.u32()?),
            buy_venue_id: VenueId(reader.u16()?),
            sell_venue_id: VenueId(reader.u16()?),
            kind: reader.u8()?,
            flags: reader.u8()?,
            reserved: [0; 6],
        }),
        WireKind::Gap => WireBody::Gap(GapEvent {
            ts_ns: reader.i64()?,
            connection_id: reader.u32()?,
            symbol_id: SymbolId(reader.u32()?),
            venue_id: VenueId(reader.u16()?),
            kind: reader.u8()?,
            reserved: [0; 5],
        }),
        WireKind::VenueStatus => WireBody::VenueStatus(VenueStatus {
            ts_ns: reader.i64()?,
            last_data_ns: reader.i64()?,
            reconnects: reader.u64()?,
            connections_up: reader.u32()?,
            connections_planned: reader.u32()?,
            venue_id: VenueId(reader.u16()?),
            reserved: [0; 6],
        }),
    };
    let trailing = payload.len() - reader.position;
    if trailing != 0 {
        return Err(WireError::TrailingBytes { count: trailing });
    }
    Ok(WireRecord {
        version,
        flags,
        seq,
        collector,
        names: WireNames {
            venue,
            sell_venue,
            symbol,
        },
        body,
    })
}

/// Reads only the kind and sequence number of a payload (a consumer's cheap first look).
pub fn peek_header(payload: &[u8]) -> Result<(WireKind, u64), WireError> {
    let mut reader = Reader {
        bytes: payload,
        position: 0,
    };
    let magic: [u8; 4] = reader.array()?;
    if magic != WIRE_MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let version = reader.u16()?;
    if version == 0 || version > WIRE_VERSION {
        return Err(WireError::UnsupportedVersion { found: version });
    }
    let kind_byte = reader.u8()?;
    let kind = WireKind::from_u8(kind_byte).ok_or(WireError::UnknownKind { found: kind_byte })?;
    let _flags = reader.u8()?;
    Ok((kind, reader.u64()?))
}

// ---- JSON ---------------------------------------------------------------------------------

#[derive(Serialize)]
struct JsonRecord<'a> {
    v: u16,
    kind: &'static str,
    collector: &'a str,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    venue: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buy_venue: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sell_venue: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
    #[serde(flatten)]
    body: JsonBody,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonBody {
    Quote {
        bid: f64,
        bid_qty: f64,
        ask: f64,
        ask_qty: f64,
        ts_exchange_ns: i64,
        ts_recv_ns: i64,
        venue_seq: u64,
        symbol_id: u32,
        venue_id: u16,
        flags: u8,
    },
    Trade {
        price: f64,
        qty: f64,
        ts_exchange_ns: i64,
        ts_recv_ns: i64,
        symbol_id: u32,
        venue_id: u16,
        side: &'static str,
        flags: u8,
        trade_id: String,
    },
    SpreadSample {
        bucket_start_ns: i64,
        bucket_duration_ns: i64,
        last_bp: f64,
        min_bp: f64,
        max_bp: f64,
        mean_bp: f64,
        window_mean_bp: f64,
        window_std_bp: f64,
        band_lower_bp: f64,
        band_upper_bp: f64,
        samples: u32,
        symbol_id: u32,
        buy_venue_id: u16,
        sell_venue_id: u16,
        flags: u32,
    },
    Opportunity {
        ts_ns: i64,
        started_ns: i64,
        threshold_bp: f64,
        spread_bp: f64,
        peak_bp: f64,
        symbol_id: u32,
        buy_venue_id: u16,
        sell_venue_id: u16,
        event: &'static str,
        flags: u8,
    },
    Gap {
        ts_ns: i64,
        connection_id: u32,
        symbol_id: u32,
        venue_id: u16,
        gap_kind: u8,
    },
    VenueStatus {
        ts_ns: i64,
        last_data_ns: i64,
        reconnects: u64,
        connections_up: u32,
        connections_planned: u32,
        venue_id: u16,
    },
}

/// Appends the JSON form of a record (see the module docs) to `out`. The quote's venue sequence
/// id is `venue_seq` (the message's is `seq`), an opportunity's kind `event` (`start`, `end`),
/// a gap's kind `gap_kind`.
pub fn encode_json(
    body: &WireBody,
    names: &WireNames<'_>,
    collector: &str,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let kind = body.kind();
    let json_body = match body {
        WireBody::Quote(quote) => JsonBody::Quote {
            bid: quote.bid,
            bid_qty: quote.bid_qty,
            ask: quote.ask,
            ask_qty: quote.ask_qty,
            ts_exchange_ns: quote.ts_exchange_ns,
            ts_recv_ns: quote.ts_recv_ns,
            venue_seq: quote.seq,
            symbol_id: quote.symbol_id.0,
            venue_id: quote.venue_id.0,
            flags: quote.flags,
        },
        WireBody::Trade(trade) => {
            let mut trade_id = String::new();
            // Writing into a String cannot fail.
            let _ = trade.write_trade_id(&mut trade_id);
            JsonBody::Trade {
                price: trade.price,
                qty: trade.qty,
                ts_exchange_ns: trade.ts_exchange_ns,
                ts_recv_ns: trade.ts_recv_ns,
                symbol_id: trade.symbol_id.0,
                venue_id: trade.venue_id.0,
                side: trade.side().as_str(),
                flags: trade.flags,
                trade_id,
            }
        }
        WireBody::SpreadSample(sample) => JsonBody::SpreadSample {
            bucket_start_ns: sample.bucket_start_ns,
            bucket_duration_ns: sample.bucket_duration_ns,
            last_bp: sample.last_bp,
            min_bp: sample.min_bp,
            max_bp: sample.max_bp,
            mean_bp: sample.mean_bp,
            window_mean_bp: sample.window_mean_bp,
            window_std_bp: sample.window_std_bp,
            band_lower_bp: sample.band_lower_bp,
            band_upper_bp: sample.band_upper_bp,
            samples: sample.samples,
            symbol_id: sample.symbol_id.0,
            buy_venue_id: sample.buy_venue_id.0,
            sell_venue_id: sample.sell_venue_id.0,
            flags: sample.flags,
        },
        WireBody::Opportunity(event) => JsonBody::Opportunity {
            ts_ns: event.ts_ns,
            started_ns: event.started_ns,
            threshold_bp: event.threshold_bp,
            spread_bp: event.spread_bp,
            peak_bp: event.peak_bp,
            symbol_id: event.symbol_id.0,
            buy_venue_id: event.buy_venue_id.0,
            sell_venue_id: event.sell_venue_id.0,
            event: match event.kind {
                tickflow_sdk::records::OPPORTUNITY_START => "start",
                tickflow_sdk::records::OPPORTUNITY_END => "end",
                _ => "unknown",
            },
            flags: event.flags,
        },
        WireBody::Gap(gap) => JsonBody::Gap {
            ts_ns: gap.ts_ns,
            connection_id: gap.connection_id,
            symbol_id: gap.symbol_id.0,
            venue_id: gap.venue_id.0,
            gap_kind: gap.kind,
        },
        WireBody::VenueStatus(status) => JsonBody::VenueStatus {
            ts_ns: status.ts_ns,
            last_data_ns: status.last_data_ns,
            reconnects: status.reconnects,
            connections_up: status.connections_up,
            connections_planned: status.connections_planned,
            venue_id: status.venue_id.0,
        },
    };
    let pair = kind.is_pair();
    let record = JsonRecord {
        v: WIRE_VERSION,
        kind: kind.name(),
        collector,
        seq,
        venue: (!pair).then_some(names.venue),
        buy_venue: pair.then_some(names.venue),
        sell_venue: pair.then_some(names.sell_venue),
        symbol: (kind != WireKind::VenueStatus).then_some(names.symbol),
        body: json_body,
    };
    serde_json::to_writer(&mut *out, &record).map_err(|error| WireError::Json {
        message: error.to_string(),
    })
}

// ---- subjects, partitions, message ids ------------------------------------------------------

/// Writes `name` as one NATS subject token: `.`, `*`, `>`, whitespace and control characters
/// become `_`; an empty name becomes `_`.
pub fn push_subject_token(out: &mut String, name: &str) {
    if name.is_empty() {
        out.push('_');
        return;
    }
    for character in name.chars() {
        if matches!(character, '.' | '*' | '>')
            || character.is_whitespace()
            || character.is_control()
        {
            out.push('_');
        } else {
            out.push(character);
        }
    }
}

/// `name` as one NATS subject token (see [`push_subject_token`]).
pub fn subject_token(name: &str) -> String {
    let mut token = String::with_capacity(name.len().max(1));
    push_subject_token(&mut token, name);
    token
}

/// The venue token of a two-venue record's subject: `<buy>~<sell>`.
pub fn pair_token(buy_venue: &str, sell_venue: &str) -> String {
    let mut token = String::with_capacity(buy_venue.len() + sell_venue.len() + 1);
    push_subject_token(&mut token, buy_venue);
    token.push('~');
    push_subject_token(&mut token, sell_venue);
    token
}

/// A record's subject, `<prefix>.<kind>.<partition>.<venue>.<symbol>`. `prefix` is used as
/// given (it may hold dots: `acme.tickflow`); `venue` and `symbol` are made tokens; a venue token
/// already made by [`pair_token`] passes unchanged.
pub fn subject(prefix: &str, kind: WireKind, partition: u32, venue: &str, symbol: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + venue.len() + symbol.len() + 32);
    push_subject(&mut out, prefix, kind, partition, venue, symbol);
    out
}

/// [`subject`] written into `out` (cleared first), for a caller reusing one buffer.
pub fn push_subject(
    out: &mut String,
    prefix: &str,
    kind: WireKind,
    partition: u32,
    venue: &str,
    symbol: &str,
) {
    out.clear();
    out.push_str(prefix);
    out.push('.');
    out.push_str(kind.name());
    // Writing into a String cannot fail.
    let _ = write!(out, ".{partition}.");
    push_subject_token(out, venue);
    out.push('.');
    push_subject_token(out, symbol);
}

/// The subject of a whole record, from its decoded or to-be-encoded parts.
pub fn record_subject(
    prefix: &str,
    body: &WireBody,
    names: &WireNames<'_>,
    partitions: u32,
) -> String {
    let kind = body.kind();
    if kind == WireKind::VenueStatus {
        return subject(prefix, kind, 0, names.venue, "");
    }
    let partition = partition_of(names.symbol, partitions);
    if kind.is_pair() {
        subject(
            prefix,
            kind,
            partition,
            &pair_token(names.venue, names.sell_venue),
            names.symbol,
        )
    } else {
        subject(prefix, kind, partition, names.venue, names.symbol)
    }
}

/// The heartbeat subject of one (collector, venue): `<prefix>.heartbeat.<collector>.<venue>`.
pub fn heartbeat_subject(prefix: &str, collector: &str, venue: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + collector.len() + venue.len() + 12);
    out.push_str(prefix);
    out.push_str(".heartbeat.");
    push_subject_token(&mut out, collector);
    out.push('.');
    push_subject_token(&mut out, venue);
    out
}

/// 32-bit FNV-1a of `bytes` (see the module docs).
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    let mut hash = FNV1A_OFFSET_BASIS;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(FNV1A_PRIME);
    }
    hash
}

/// The partition of a canonical symbol name among `partitions`: FNV-1a 32 of its UTF-8 bytes
/// modulo `partitions` (0 when `partitions` is 0 or 1). Stable across processes and versions.
pub fn partition_of(symbol_name: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    fnv1a_32(symbol_name.as_bytes()) % partitions
}

/// JetStream's `Nats-Msg-Id` for a collector's message: `<collector>-<seq>`.
pub fn message_id(collector: &str, seq: u64) -> String {
    let mut id = String::with_capacity(collector.len() + 21);
    push_message_id(&mut id, collector, seq);
    id
}

/// [`message_id`] written into `out` (cleared first).
pub fn push_message_id(out: &mut String, collector: &str, seq: u64) {
    out.clear();
    out.push_str(collector);
    // Writing into a String cannot fail.
    let _ = write!(out, "-{seq}");
}

#[cfg(test)]
mod tests;
