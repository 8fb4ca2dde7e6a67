//! Faults that exercise a client's WebSocket framing and its writes, injected through
//! `VenueControl`: a best bid/ask message sent in fragments with a ping between them, an
//! oversized message sent in fragments, a message of many trades (the venues' largest), and a
//! peer that stops reading (while it floods pings, so the client's pongs pile up). This module
//! builds and writes those frames; the session calls `on_tick` once per tick and stops polling
//! its reads while `is_unread`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fastwebsockets::{Frame, OpCode, Payload, WebSocketWrite};
use tokio::io::AsyncWrite;

use super::listings::Instrument;
use super::wire::{self, BboUpdate, ServerFrame};
use super::{SimShared, VenueControl, prices};
use tickflow_core::venue::Venue;

/// Fragment size of the oversized fragmented message: each fragment is small, only their sum is
/// over any sane limit.
const OVERSIZED_FRAGMENT_BYTES: usize = 64 * 1024;
/// Pings per tick while the peer is unread: enough to fill the kernel's socket buffers within
/// a second, so the client's pongs have nowhere to go.
const UNREAD_PINGS_PER_TICK: usize = 256;

/// The framing faults of one venue (a field of `VenueControl`).
#[derive(Debug, Default)]
pub(crate) struct FrameFaults {
    fragmented_generation: AtomicU64,
    fragmented_oversized_generation: AtomicU64,
    trade_burst_generation: AtomicU64,
    trade_burst_count: AtomicU64,
    unread: AtomicBool,
    /// Messages sent in fragments (oversized ones included).
    fragmented_sent: AtomicU64,
}

impl VenueControl {
    /// Each live session sends one best bid/ask message in three fragments, with a ws ping
    /// between the first two.
    pub fn send_fragmented(&self) {
        self.frame_faults
            .fragmented_generation
            .fetch_add(1, Ordering::SeqCst);
    }
    /// Each live session sends one text message of `OVERSIZED_FRAME_BYTES` in 64 KiB fragments.
    pub fn send_fragmented_oversized(&self) {
        self.frame_faults
            .fragmented_oversized_generation
            .fetch_add(1, Ordering::SeqCst);
    }
    /// Each live session sends one message of `count` trades of its first symbol (venues that
    /// batch trades: Bybit, OKX, Bitget, HTX, MEXC; the others send nothing).
    pub fn send_trade_burst(&self, count: u64) {
        self.frame_faults
            .trade_burst_count
            .store(count, Ordering::SeqCst);
        self.frame_faults
            .trade_burst_generation
            .fetch_add(1, Ordering::SeqCst);
    }
    /// While on, sessions stop reading what the client sends and send bursts of ws pings: the
    /// client's pongs fill the socket buffers (a venue that stopped reading).
    pub fn set_unread(&self, unread: bool) {
        self.frame_faults.unread.store(unread, Ordering::SeqCst);
    }
    /// Messages the sessions sent in fragments.
    pub fn fragmented_sent(&self) -> u64 {
        self.frame_faults.fragmented_sent.load(Ordering::SeqCst)
    }
    pub(crate) fn is_unread(&self) -> bool {
        self.frame_faults.unread.load(Ordering::SeqCst)
    }
}

/// The fault generations one session has acted on.
pub(crate) struct Seen {
    fragmented: u64,
    fragmented_oversized: u64,
    trade_burst: u64,
}

impl Seen {
    pub(crate) fn new(control: &VenueControl) -> Seen {
        let faults = &control.frame_faults;
        Seen {
            fragmented: faults.fragmented_generation.load(Ordering::SeqCst),
            fragmented_oversized: faults
                .fragmented_oversized_generation
                .load(Ordering::SeqCst),
            trade_burst: faults.trade_burst_generation.load(Ordering::SeqCst),
        }
    }
}

/// True when `counter` moved since `seen` (and records that it was acted on).
fn bumped(counter: &AtomicU64, seen: &mut u64) -> bool {
    let now = counter.load(Ordering::SeqCst);
    std::mem::replace(seen, now) != now
}

/// Acts on this tick's framing faults for a session whose first subscribed symbol is
/// `instrument`. False when a write failed (the session ends).
pub(crate) async fn on_tick<S: AsyncWrite + Unpin>(
    shared: &SimShared,
    venue: Venue,
    seen: &mut Seen,
    instrument: Option<&Instrument>,
    writer: &mut WebSocketWrite<S>,
) -> bool {
    let faults = &shared.controls[venue.index()].frame_faults;
    let now_ms = tickflow_core::record::now_ns() / 1_000_000;
    if bumped(&faults.fragmented_generation, &mut seen.fragmented)
        && let Some(instrument) = instrument
    {
        let frame = bbo_frame(shared, venue, instrument, now_ms);
        if !send_fragmented(writer, &frame).await {
            return false;
        }
        faults.fragmented_sent.fetch_add(1, Ordering::SeqCst);
    }
    if bumped(
        &faults.fragmented_oversized_generation,
        &mut seen.fragmented_oversized,
    ) {
        if !send_fragmented_oversized(writer).await {
            return false;
        }
        faults.fragmented_sent.fetch_add(1, Ordering::SeqCst);
    }
    if bumped(&faults.trade_burst_generation, &mut seen.trade_burst)
        && let Some(instrument) = instrument
    {
        let count = faults.trade_burst_count.load(Ordering::SeqCst) as usize;
        if let Some(frame) = trade_burst(shared, venue, instrument, count, now_ms)
            && !send(writer, true, &frame).await
        {
            return false;
        }
    }
    if faults.unread.load(Ordering::SeqCst) {
        for _ in 0..UNREAD_PINGS_PER_TICK {
            let ping = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[b'p'; 125]));
            if writer.write_frame(ping).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// One frame of `frame`'s message with `fin`: the first carries its opcode, the rest continue.
async fn send<S: AsyncWrite + Unpin>(
    writer: &mut WebSocketWrite<S>,
    fin: bool,
    frame: &ServerFrame,
) -> bool {
    send_part(writer, fin, Some(frame), bytes(frame)).await
}

fn bytes(frame: &ServerFrame) -> &[u8] {
    match frame {
        ServerFrame::Text(text) => text.as_bytes(),
        ServerFrame::Binary(binary) => binary,
    }
}

/// Writes `part` as the first frame of `first`'s message (`Some`), or as a continuation.
async fn send_part<S: AsyncWrite + Unpin>(
    writer: &mut WebSocketWrite<S>,
    fin: bool,
    first: Option<&ServerFrame>,
    part: &[u8],
) -> bool {
    let opcode = match first {
        Some(ServerFrame::Text(_)) => OpCode::Text,
        Some(ServerFrame::Binary(_)) => OpCode::Binary,
        None => OpCode::Continuation,
    };
    writer
        .write_frame(Frame::new(fin, opcode, None, Payload::Borrowed(part)))
        .await
        .is_ok()
}

/// `frame` in three fragments, with a ws ping between the first two (control frames may come
/// between a message's fragments).
async fn send_fragmented<S: AsyncWrite + Unpin>(
    writer: &mut WebSocketWrite<S>,
    frame: &ServerFrame,
) -> bool {
    let message = bytes(frame);
    let (first, rest) = message.split_at(message.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    let ping = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"between"));
    send_part(writer, false, Some(frame), first).await
        && writer.write_frame(ping).await.is_ok()
        && send_part(writer, false, None, second).await
        && send_part(writer, true, None, third).await
}

/// A text message of `OVERSIZED_FRAME_BYTES` spaces in `OVERSIZED_FRAGMENT_BYTES` fragments.
async fn send_fragmented_oversized<S: AsyncWrite + Unpin>(writer: &mut WebSocketWrite<S>) -> bool {
    let fragment = vec![b' '; OVERSIZED_FRAGMENT_BYTES];
    let first = ServerFrame::Text(String::new());
    let fragments = super::OVERSIZED_FRAME_BYTES.div_ceil(OVERSIZED_FRAGMENT_BYTES);
    for index in 0..fragments {
        let fin = index + 1 == fragments;
        let opener = (index == 0).then_some(&first);
        if !send_part(writer, fin, opener, &fragment).await {
            return false;
        }
    }
    true
}

/// A best bid/ask message of `instrument` at the current shared price.
fn bbo_frame(
    shared: &SimShared,
    venue: Venue,
    instrument: &Instrument,
    now_ms: i64,
) -> ServerFrame {
    let t_s = shared.started.elapsed().as_secs_f64();
    let mid = instrument.price.mid(t_s);
    let (bid, ask) = prices::bid_ask(mid, 0.5);
    let update = BboUpdate {
        venue_symbol: &instrument.ws_symbol[venue.index()],
        bid,
        bid_qty: 1.0,
        ask,
        ask_qty: 1.0,
        sequence: now_ms as u64,
        now_ms,
    };
    let mut text = String::new();
    let mut binary = Vec::new();
    if wire::write_bbo(venue, &update, &mut text, &mut binary) {
        ServerFrame::Binary(binary)
    } else {
        ServerFrame::Text(text)
    }
}

/// One message of `count` trades of `instrument`, in the venue's batched form with its
/// longest fields (UUID trade ids on Bybit, 8-decimal prices), or `None` for venues that send
/// one trade per message.
fn trade_burst(
    shared: &SimShared,
    venue: Venue,
    instrument: &Instrument,
    count: usize,
    now_ms: i64,
) -> Option<ServerFrame> {
    use std::fmt::Write as _;
    let symbol = &instrument.ws_symbol[venue.index()];
    let t_s = shared.started.elapsed().as_secs_f64();
    let price = instrument.price.mid(t_s);
    let mut elements = String::new();
    for trade in 0..count {
        if trade > 0 {
            elements.push(',');
        }
        let quantity = 0.001 + trade as f64 * 1e-6;
        let id = now_ms as u64 * 10_000 + trade as u64;
        let _ = match venue {
            Venue::Bybit => write!(
                elements,
                r#"{{"T":{now_ms},"s":"{symbol}","S":"Buy","v":"{quantity:.8}","p":"{price:.8}","L":"ZeroMinusTick","i":"{:08x}-d8dd-5b31-9112-{:012x}","BT":false,"seq":{id}}}"#,
                trade,
                id & 0xFFFF_FFFF_FFFF
            ),
            Venue::Okx => write!(
                elements,
                r#"{{"instId":"{symbol}","tradeId":"{id}","px":"{price:.8}","sz":"{quantity:.8}","side":"sell","ts":"{now_ms}","count":"1"}}"#
            ),
            Venue::Bitget => write!(
                elements,
                r#"{{"ts":"{now_ms}","price":"{price:.8}","size":"{quantity:.8}","side":"buy","tradeId":"{id}"}}"#
            ),
            Venue::Htx => write!(
                elements,
                r#"{{"id":{id}00000000000000,"ts":{now_ms},"tradeId":{id},"amount":{quantity:.8},"price":{price:.8},"direction":"buy"}}"#
            ),
            Venue::Mexc => Ok(()),
            Venue::Binance | Venue::Gate | Venue::Kucoin => return None,
        };
    }
    Some(match venue {
        Venue::Bybit => ServerFrame::Text(format!(
            r#"{{"topic":"publicTrade.{symbol}","type":"snapshot","ts":{now_ms},"data":[{elements}]}}"#
        )),
        Venue::Okx => ServerFrame::Text(format!(
            r#"{{"arg":{{"channel":"trades","instId":"{symbol}"}},"data":[{elements}]}}"#
        )),
        Venue::Bitget => ServerFrame::Text(format!(
            r#"{{"action":"update","arg":{{"instType":"SPOT","channel":"trade","instId":"{symbol}"}},"data":[{elements}],"ts":{now_ms}}}"#
        )),
        Venue::Htx => ServerFrame::Binary(wire::gzip(&format!(
            r#"{{"ch":"market.{symbol}.trade.detail","ts":{now_ms},"tick":{{"id":{now_ms},"ts":{now_ms},"data":[{elements}]}}}}"#
        ))),
        Venue::Mexc => {
            let deals = (0..count)
                .map(|trade| wire::PublicAggreDealsV3ApiItem {
                    price: format!("{price:.8}"),
                    quantity: format!("{:.8}", 0.001 + trade as f64 * 1e-6),
                    trade_type: 1,
                    time: now_ms,
                })
                .collect();
            let message = wire::PushDataV3ApiWrapper {
                channel: format!("spot@public.aggre.deals.v3.api.pb@10ms@{symbol}"),
                symbol: symbol.clone(),
                send_time: now_ms,
                body: Some(wire::PushBody::PublicAggreDeals(
                    wire::PublicAggreDealsV3Api {
                        deals,
                        event_type: "spot@public.aggre.deals.v3.api.pb@10ms".to_owned(),
                    },
                )),
            };
            ServerFrame::Binary(prost::Message::encode_to_vec(&message))
        }
        Venue::Binance | Venue::Gate | Venue::Kucoin => return None,
    })
}
