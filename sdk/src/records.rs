//! Fixed-size `#[repr(C)]` records that the engine produces and plugins receive.
//!
//! Every record is `Copy`, holds no heap pointer, and has its size and field offsets asserted at
//! compile time: these layouts are part of the ABI promise (a change is a major version bump;
//! tables only grow at the end).

use core::mem::{offset_of, size_of};

/// Nanoseconds since the Unix epoch (UTC).
pub type TimestampNs = i64;

/// Interned venue id (see the engine's venue table; names are available through host callbacks).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VenueId(pub u16);

/// Interned canonical symbol id (`BASE-QUOTE`), stable for the life of the engine process.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolId(pub u32);

/// `Quote::flags` / `Trade::flags` bit: `ts_exchange_ns` holds a venue timestamp. When clear the
/// venue sent none (Binance spot bookTicker) and `ts_exchange_ns` is 0: never the receive time.
pub const FLAG_HAS_TS_EXCHANGE: u8 = 1 << 0;
/// `Quote::flags` bit: `seq` holds the venue's sequence / update id.
pub const FLAG_HAS_SEQ: u8 = 1 << 1;
/// `Trade::flags` bit: `trade_id` holds a UUID packed as 16 raw bytes (Bybit), not text.
pub const FLAG_TRADE_ID_UUID: u8 = 1 << 2;

/// Best bid and ask of one symbol on one venue.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quote {
    pub bid: f64,
    pub bid_qty: f64,
    pub ask: f64,
    pub ask_qty: f64,
    /// Venue timestamp, valid only when `flags & FLAG_HAS_TS_EXCHANGE`.
    pub ts_exchange_ns: TimestampNs,
    /// When the engine read the frame off the socket.
    pub ts_recv_ns: TimestampNs,
    /// Venue sequence / update id, valid only when `flags & FLAG_HAS_SEQ`.
    pub seq: u64,
    pub symbol_id: SymbolId,
    pub venue_id: VenueId,
    pub flags: u8,
    pub reserved: u8,
}

impl Quote {
    pub fn ts_exchange(&self) -> Option<TimestampNs> {
        (self.flags & FLAG_HAS_TS_EXCHANGE != 0).then_some(self.ts_exchange_ns)
    }
    pub fn sequence(&self) -> Option<u64> {
        (self.flags & FLAG_HAS_SEQ != 0).then_some(self.seq)
    }
}

/// The taker's side of a trade.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Side {
    #[default]
    Unknown = 0,
    Buy = 1,
    Sell = 2,
}

impl Side {
    pub fn from_u8(value: u8) -> Side {
        match value {
            1 => Side::Buy,
            2 => Side::Sell,
            _ => Side::Unknown,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
            Side::Unknown => "unknown",
        }
    }
}

/// Longest trade id kept as text inside a [`Trade`].
pub const TRADE_ID_CAPACITY_BYTES: usize = 23;

/// One public trade (a print) on one venue.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Trade {
    pub price: f64,
    pub qty: f64,
    /// Venue timestamp, valid only when `flags & FLAG_HAS_TS_EXCHANGE`.
    pub ts_exchange_ns: TimestampNs,
    pub ts_recv_ns: TimestampNs,
    pub symbol_id: SymbolId,
    pub venue_id: VenueId,
    /// [`Side`] of the taker, as u8.
    pub side: u8,
    pub flags: u8,
    /// Bytes used in `trade_id` (16 when `FLAG_TRADE_ID_UUID`).
    pub trade_id_len: u8,
    /// The venue's trade id as ASCII text, or a UUID as 16 raw bytes (see `FLAG_TRADE_ID_UUID`).
    pub trade_id: [u8; TRADE_ID_CAPACITY_BYTES],
}

impl Trade {
    pub fn ts_exchange(&self) -> Option<TimestampNs> {
        (self.flags & FLAG_HAS_TS_EXCHANGE != 0).then_some(self.ts_exchange_ns)
    }
    pub fn side(&self) -> Side {
        Side::from_u8(self.side)
    }
    /// Stores `text` as the trade id: a canonical 36-character UUID is packed into 16 bytes, any
    /// other id of at most [`TRADE_ID_CAPACITY_BYTES`] ASCII bytes is kept verbatim.
    /// Returns `false` (and leaves the id empty) when the id fits neither form.
    pub fn set_trade_id(&mut self, text: &[u8]) -> bool {
        self.flags &= !FLAG_TRADE_ID_UUID;
        self.trade_id_len = 0;
        if let Some(packed) = pack_uuid(text) {
            self.trade_id[..16].copy_from_slice(&packed);
            self.trade_id_len = 16;
            self.flags |= FLAG_TRADE_ID_UUID;
            return true;
        }
        if text.len() > TRADE_ID_CAPACITY_BYTES || !text.iter().all(|b| b.is_ascii_graphic()) {
            return false;
        }
        self.trade_id[..text.len()].copy_from_slice(text);
        self.trade_id_len = text.len() as u8;
        true
    }
    /// Writes the trade id as text (a packed UUID comes back in canonical lowercase form).
    pub fn write_trade_id(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        let len = (self.trade_id_len as usize).min(TRADE_ID_CAPACITY_BYTES);
        if self.flags & FLAG_TRADE_ID_UUID != 0 {
            for (index, byte) in self.trade_id[..16].iter().enumerate() {
                if matches!(index, 4 | 6 | 8 | 10) {
                    out.write_char('-')?;
                }
                write!(out, "{byte:02x}")?;
            }
            Ok(())
        } else {
            for &byte in &self.trade_id[..len] {
                out.write_char(byte as char)?;
            }
            Ok(())
        }
    }
}

fn pack_uuid(text: &[u8]) -> Option<[u8; 16]> {
    if text.len() != 36 {
        return None;
    }
    let mut packed = [0u8; 16];
    let mut nibble_index = 0usize;
    for (position, &byte) in text.iter().enumerate() {
        if matches!(position, 8 | 13 | 18 | 23) {
            if byte != b'-' {
                return None;
            }
            continue;
        }
        // Only lowercase hex: an uppercase UUID would not come back byte-identical.
        let value = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => return None,
        };
        packed[nibble_index / 2] |= if nibble_index % 2 == 0 {
            value << 4
        } else {
            value
        };
        nibble_index += 1;
    }
    Some(packed)
}

/// One closed time bucket of one spread window (symbol, buy venue, sell venue): the spread in
/// basis points, `(bid_sell − ask_buy) / ask_buy × 10 000`, summarized over the bucket, and the
/// rolling window's bands at the close.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SpreadSample {
    pub bucket_start_ns: TimestampNs,
    pub bucket_duration_ns: i64,
    pub last_bp: f64,
    pub min_bp: f64,
    pub max_bp: f64,
    pub mean_bp: f64,
    /// Rolling window mean and standard deviation at this close, over the window's non-empty
    /// buckets, each bucket counting once with its mean (`mean_bp`), whatever its sample count:
    /// the statistics of the per-bucket mean series, as a chart of it would show.
    pub window_mean_bp: f64,
    pub window_std_bp: f64,
    /// `window_mean_bp ∓ k · window_std_bp`.
    pub band_lower_bp: f64,
    pub band_upper_bp: f64,
    pub samples: u32,
    pub symbol_id: SymbolId,
    pub buy_venue_id: VenueId,
    pub sell_venue_id: VenueId,
    /// `SPREAD_FLAG_*` bits (ABI 1.1; zero before, when this was `reserved`).
    pub flags: u32,
}

/// `SpreadSample::flags`: the window held fewer than `windows.warmup_buckets` buckets at this
/// close, so its mean, standard deviation and bands are not yet meaningful (and no opportunity
/// cycle starts from it). ABI 1.1.
pub const SPREAD_FLAG_WARMING: u32 = 1 << 0;

/// `OpportunityEvent::kind`.
pub const OPPORTUNITY_START: u8 = 1;
pub const OPPORTUNITY_END: u8 = 2;

/// The start or end of an opportunity cycle: the spread rose above `threshold_bp` (start) and later
/// fell back below half of it (end).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpportunityEvent {
    pub ts_ns: TimestampNs,
    /// When the cycle started (equal to `ts_ns` on a start event).
    pub started_ns: TimestampNs,
    pub threshold_bp: f64,
    pub spread_bp: f64,
    /// Highest spread seen so far in this cycle.
    pub peak_bp: f64,
    pub symbol_id: SymbolId,
    pub buy_venue_id: VenueId,
    pub sell_venue_id: VenueId,
    pub kind: u8,
    /// `OPPORTUNITY_FLAG_*` bits (ABI 1.1; zero before, when this byte was reserved).
    pub flags: u8,
    pub reserved: [u8; 6],
}

/// `OpportunityEvent::flags`: the cycle runs on the spread net of both venues' taker fees
/// (`windows.cycles_on = "net"`): `threshold_bp`, `spread_bp` and `peak_bp` are net. ABI 1.1.
pub const OPPORTUNITY_FLAG_NET: u8 = 1 << 0;

/// `GapEvent::kind`.
pub const GAP_DISCONNECT: u8 = 1;
pub const GAP_RECONNECT: u8 = 2;
/// The venue withdrew its quote for the symbol (a book side went empty: a halted or illiquid
/// market). Its quote takes no part in spreads until a fresh two-sided one arrives, and its open
/// cycles end. `connection_id` is 0: the decoder saw it in the venue's data, it is not a
/// connection event. ABI 1.1.
pub const GAP_QUOTE_WITHDRAWN: u8 = 3;
/// The venue no longer lists the symbol (a universe refresh found it delisted, or no longer
/// selected): its quote takes no part in spreads and the windows of the symbol's pairs with that
/// venue end. `connection_id` is the slot that carried it. Names still resolve. ABI 1.2.
pub const GAP_SYMBOL_RETIRED: u8 = 4;

/// A hole in the data: a connection of `venue_id` went away (or came back) and `symbol_id` had no
/// data from it in between. One event per affected symbol, so charts can break the line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GapEvent {
    pub ts_ns: TimestampNs,
    pub connection_id: u32,
    pub symbol_id: SymbolId,
    pub venue_id: VenueId,
    pub kind: u8,
    pub reserved: [u8; 5],
}

/// Once a second the engine publishes its own counters and memory as one `Telemetry` record
/// (kind [`RecordKind::Telemetry`]). Counters are totals since start; a sink computes rates.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Telemetry {
    pub ts_ns: TimestampNs,
    /// Nanoseconds since the engine started.
    pub uptime_ns: i64,
    /// Resident set size of the engine process.
    pub rss_bytes: u64,
    /// The memory budget computed from the configuration at start.
    pub budget_bytes: u64,
    /// Records decoded from the feeds.
    pub records_in: u64,
    /// Records handed to the sinks.
    pub records_out: u64,
    /// Records dropped because a feed → shard ring was full.
    pub ring_drops: u64,
    /// Frames refused by a decoder.
    pub decode_errors: u64,
    /// Feed reconnects.
    pub reconnects: u64,
    /// Spread windows alive now.
    pub windows_live: u64,
    /// Spread windows evicted because `windows.max_windows` was reached.
    pub windows_evicted: u64,
    /// Records dropped or conflated on the way to the sinks (all sinks, all policies).
    pub sink_drops: u64,
    /// Feed connections up now.
    pub connections_up: u32,
    /// Shard threads running.
    pub shards: u32,
    /// Zero now. Room for counters added by later minor versions without a layout change:
    /// readers must ignore these words (a newer engine may fill them), writers set them to 0.
    pub reserved: [u64; 8],
}

/// Once a second per enabled venue the engine publishes how that venue's feed is doing (kind
/// [`RecordKind::VenueStatus`], ABI 1.3): a collector engine's heartbeat for the venue, which an
/// aggregator uses to tell a silent or dead collector from a quiet market.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VenueStatus {
    /// When the engine took the status.
    pub ts_ns: TimestampNs,
    /// Receive time of the venue's last data (any connection), 0 = never.
    pub last_data_ns: TimestampNs,
    /// The venue's reconnects since start.
    pub reconnects: u64,
    /// The venue's connections up now.
    pub connections_up: u32,
    /// The venue's connections in the plan (slots).
    pub connections_planned: u32,
    pub venue_id: VenueId,
    pub reserved: [u8; 6],
}

/// Record kinds that cross the ABI; values are stable. Used as a bit index in a plugin's
/// `record_kinds` mask.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Quote = 0,
    Trade = 1,
    SpreadSample = 2,
    Opportunity = 3,
    Gap = 4,
    Telemetry = 5,
    /// [`VenueStatus`], ABI 1.3.
    VenueStatus = 6,
}

impl RecordKind {
    pub const ALL: [RecordKind; 7] = [
        RecordKind::Quote,
        RecordKind::Trade,
        RecordKind::SpreadSample,
        RecordKind::Opportunity,
        RecordKind::Gap,
        RecordKind::Telemetry,
        RecordKind::VenueStatus,
    ];
    pub fn mask_bit(self) -> u32 {
        1 << (self as u32)
    }
    pub fn from_u32(value: u32) -> Option<RecordKind> {
        RecordKind::ALL.get(value as usize).copied()
    }
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Quote => "quote",
            RecordKind::Trade => "trade",
            RecordKind::SpreadSample => "spread_sample",
            RecordKind::Opportunity => "opportunity",
            RecordKind::Gap => "gap",
            RecordKind::Telemetry => "telemetry",
            RecordKind::VenueStatus => "venue_status",
        }
    }
}

// Layout is ABI: asserted at compile time. The C header asserts the same numbers.
const _: () = assert!(size_of::<Quote>() == 64);
const _: () = assert!(offset_of!(Quote, ts_exchange_ns) == 32);
const _: () = assert!(offset_of!(Quote, ts_recv_ns) == 40);
const _: () = assert!(offset_of!(Quote, seq) == 48);
const _: () = assert!(offset_of!(Quote, symbol_id) == 56);
const _: () = assert!(offset_of!(Quote, venue_id) == 60);
const _: () = assert!(offset_of!(Quote, flags) == 62);
const _: () = assert!(size_of::<Trade>() == 64);
const _: () = assert!(offset_of!(Trade, symbol_id) == 32);
const _: () = assert!(offset_of!(Trade, venue_id) == 36);
const _: () = assert!(offset_of!(Trade, side) == 38);
const _: () = assert!(offset_of!(Trade, flags) == 39);
const _: () = assert!(offset_of!(Trade, trade_id_len) == 40);
const _: () = assert!(offset_of!(Trade, trade_id) == 41);
const _: () = assert!(size_of::<SpreadSample>() == 96);
const _: () = assert!(offset_of!(SpreadSample, samples) == 80);
const _: () = assert!(offset_of!(SpreadSample, symbol_id) == 84);
const _: () = assert!(size_of::<OpportunityEvent>() == 56);
const _: () = assert!(offset_of!(OpportunityEvent, symbol_id) == 40);
const _: () = assert!(size_of::<GapEvent>() == 24);

const _: () = assert!(size_of::<Telemetry>() == 168);
const _: () = assert!(offset_of!(Telemetry, rss_bytes) == 16);
const _: () = assert!(offset_of!(Telemetry, sink_drops) == 88);
const _: () = assert!(offset_of!(Telemetry, connections_up) == 96);
const _: () = assert!(offset_of!(Telemetry, shards) == 100);
const _: () = assert!(offset_of!(Telemetry, reserved) == 104);
const _: () = assert!(size_of::<VenueStatus>() == 40);
const _: () = assert!(offset_of!(VenueStatus, reconnects) == 16);
const _: () = assert!(offset_of!(VenueStatus, connections_up) == 24);
const _: () = assert!(offset_of!(VenueStatus, connections_planned) == 28);
const _: () = assert!(offset_of!(VenueStatus, venue_id) == 32);
const _: () = assert!(offset_of!(VenueStatus, reserved) == 34);

#[cfg(test)]
mod tests {
    use super::*;

    fn trade_id_text(trade: &Trade) -> String {
        let mut text = String::new();
        trade
            .write_trade_id(&mut text)
            .expect("writing to a String cannot fail");
        text
    }

    #[test]
    fn uuid_trade_id_round_trips() {
        let mut trade = Trade::default();
        assert!(trade.set_trade_id(b"20f43950-d8dd-5b31-9112-a178eb6023af"));
        assert_eq!(trade.flags & FLAG_TRADE_ID_UUID, FLAG_TRADE_ID_UUID);
        assert_eq!(
            trade_id_text(&trade),
            "20f43950-d8dd-5b31-9112-a178eb6023af"
        );
    }

    #[test]
    fn numeric_trade_id_kept_as_text() {
        let mut trade = Trade::default();
        assert!(trade.set_trade_id(b"1235670816495050754"));
        assert_eq!(trade_id_text(&trade), "1235670816495050754");
    }

    #[test]
    fn overlong_trade_id_refused() {
        let mut trade = Trade::default();
        assert!(!trade.set_trade_id(b"100182534526255757567432481")); // 27 digits
        assert!(!trade.set_trade_id(b"20F43950-D8DD-5B31-9112-A178EB6023AF-extra"));
        assert_eq!(trade.trade_id_len, 0);
    }
}
