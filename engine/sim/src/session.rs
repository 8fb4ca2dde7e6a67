//! One simulated venue connection: answers subscribes and keep-alive, pings the client the way the
//! venue does, writes data for what was subscribed at the configured rate (per symbol, batched per
//! tick; or in paced mode one frame per ticket, each flushed on its own), and acts on injected
//! faults (cut, stall, malformed, oversized, shutdown notice). Subscriptions resolve against the
//! current listings: an unlisted symbol gets the venue's error reply and no data; a subscription
//! whose symbol is delisted or halted later sends nothing until it trades again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketRead, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::io::{BufWriter, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::SimShared;
use super::listings::{Instrument, ListingState};
use super::prices;
use super::wire::{self, BboUpdate, ClientRequest, ServerFrame, TradeUpdate};
use tickflow_core::venue::Venue;
use tickflow_feed::config::Channel;

type Stream = TokioIo<Upgraded>;
type Reader = WebSocketRead<ReadHalf<Stream>>;
type Writer = WebSocketWrite<BufWriter<WriteHalf<Stream>>>;

/// Largest client frame the simulator reads.
const MAX_CLIENT_FRAME_BYTES: usize = 256 * 1024;
/// A session is established (a storm may cut it) once its client has been quiet this long
/// after its last subscribe request (the widest request spacing of a venue is OKX's 350 ms).
const CUT_AFTER_SUBSCRIBES_QUIET: Duration = Duration::from_millis(500);
/// Most updates one symbol may owe after a slow tick (bounds bursts).
const MAX_CREDIT_UPDATES: f64 = 1_000.0;

type ReadResult = Result<(OpCode, BytesMut), fastwebsockets::WebSocketError>;

async fn read_next(reader: Option<Reader>) -> (Reader, ReadResult) {
    let Some(mut reader) = reader else {
        return std::future::pending().await;
    };
    let mut no_obligated_send =
        |_frame: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
    let result = match reader.read_frame(&mut no_obligated_send).await {
        Ok(frame) => {
            let opcode = frame.opcode;
            let payload = match frame.payload {
                Payload::Bytes(bytes) => bytes,
                other => BytesMut::from(&other[..]),
            };
            Ok((opcode, payload))
        }
        Err(error) => Err(error),
    };
    (reader, result)
}

impl super::VenueControl {
    /// Each live session sends, for every best bid/ask symbol it serves, one frame whose bid
    /// side is empty (a halted or one-sided book), in the venue's spelling of "no level" where
    /// that is a zero price: Binance and HTX. Other venues send nothing for it.
    pub fn send_empty_bid(&self) {
        self.empty_bid_generation.fetch_add(1, Ordering::SeqCst);
    }
}

struct Subscription {
    instrument: Arc<Instrument>,
    bbo: bool,
    trades: bool,
    bbo_credit: f64,
    trade_credit: f64,
}

/// Counts the session as live while it exists.
struct LiveGuard<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// This session's distinct topics, counted into `live_session_topics` and taken out at its end.
struct SessionTopics<'a> {
    live: &'a std::sync::atomic::AtomicU64,
    count: u64,
}

impl Drop for SessionTopics<'_> {
    fn drop(&mut self) {
        self.live.fetch_sub(self.count, Ordering::SeqCst);
    }
}

async fn send(writer: &mut Writer, frame: &ServerFrame) -> bool {
    let frame = match frame {
        ServerFrame::Text(text) => Frame::text(Payload::Borrowed(text.as_bytes())),
        ServerFrame::Binary(bytes) => Frame::binary(Payload::Borrowed(bytes)),
    };
    writer.write_frame(frame).await.is_ok()
}

pub(super) async fn run(
    shared: Arc<SimShared>,
    venue: Venue,
    websocket: WebSocket<Stream>,
    connect_id: String,
) {
    let control = &shared.controls[venue.index()];
    control.sessions_opened.fetch_add(1, Ordering::SeqCst);
    control.sessions_live.fetch_add(1, Ordering::SeqCst);
    let _live = LiveGuard(&control.sessions_live);
    let mut session_topics = SessionTopics {
        live: &control.live_session_topics,
        count: 0,
    };
    let (mut reader, mut writer) = websocket.split(|stream| {
        let (read, write) = tokio::io::split(stream);
        (read, BufWriter::with_capacity(64 * 1024, write))
    });
    reader.set_auto_pong(false);
    reader.set_auto_close(false);
    reader.set_max_message_size(MAX_CLIENT_FRAME_BYTES);
    let mut read = std::pin::pin!(read_next(Some(reader)));

    let generation = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::SeqCst);
    let seen_disconnect = generation(&control.disconnect_generation);
    let mut seen_malformed = generation(&control.malformed_generation);
    let mut seen_oversized = generation(&control.oversized_generation);
    let mut seen_notice = generation(&control.notice_generation);
    let mut seen_empty_bid = generation(&control.empty_bid_generation);
    let mut seen_frame_faults = super::fault_frames::Seen::new(control);
    let held_until = control.held_release_generation();

    if venue == Venue::Kucoin && !send(&mut writer, &wire::kucoin_welcome(&connect_id)).await {
        return;
    }
    let _ = writer.flush().await;

    let config = &shared.config;
    let mut subscriptions: Vec<Subscription> = Vec::new();
    let mut replies: Vec<ServerFrame> = Vec::new();
    let mut text = String::with_capacity(512);
    let mut binary = Vec::with_capacity(512);
    let mut tick = tokio::time::interval(Duration::from_millis(config.tick_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let server_ping_interval = Duration::from_millis(config.server_ping_interval_ms.max(1));
    let mut next_server_ping = Instant::now() + server_ping_interval;
    let mut close_at: Option<Instant> = None;
    let mut last_tick = Instant::now();
    // A session takes a `disconnect_one` cut only once it is established: it has served data
    // and its client sent no subscribe request for `CUT_AFTER_SUBSCRIBES_QUIET` (venues that
    // take one topic a request, HTX, subscribe for a second while data already flows). A storm
    // cuts live connections, so every cut costs the client a whole reconnect (connect,
    // subscribe, first data), and a reconnect is never cut in the middle of its subscribes
    // (which the client rightly counts as a failed connect, not a reconnect).
    let mut served_data = false;
    let mut last_subscribe_at = Instant::now();
    let mut sequence: u64 = 1;
    let mut noise_bp: f64 = 0.0;
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::from_rng(&mut rand::rng());
    let pacer = shared.pacer.as_deref();
    let mut bbo_subscriptions = 0usize;
    // Paced mode serves this session's best bid/ask symbols round robin from here.
    let mut paced_next = 0usize;
    // Bitget: the session answers in v3's format once the client subscribed the v3 way.
    let mut bitget_v3 = false;

    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => {
                let _ = writer.write_frame(Frame::close(1001, b"simulator stopping")).await;
                let _ = writer.flush().await;
                return;
            }
            (reader, result) = &mut read, if !control.is_unread() => {
                let Ok((opcode, payload)) = result else {
                    return;
                };
                read.set(read_next(Some(reader)));
                let stalled = control.stalled.load(Ordering::SeqCst);
                match opcode {
                    OpCode::Text => {
                        let Ok(message) = std::str::from_utf8(&payload) else { continue };
                        replies.clear();
                        let now_ms = tickflow_core::record::now_ns() / 1_000_000;
                        let is_listed = |symbol: &str| shared.listed_instrument(venue, symbol).is_some();
                        match wire::parse_client_text(venue, message, now_ms, &is_listed, &mut replies) {
                            ClientRequest::Subscribe(topics) => {
                                control.subscribe_requests.fetch_add(1, Ordering::SeqCst);
                                last_subscribe_at = Instant::now();
                                // The client's request shape picks the socket it speaks.
                                if venue == Venue::Bitget {
                                    bitget_v3 = wire::is_bitget_v3_subscribe(message);
                                }
                                for (venue_symbol, channel) in topics {
                                    let Some(instrument) = shared.listed_instrument(venue, &venue_symbol) else {
                                        continue;
                                    };
                                    control.topics_subscribed.fetch_add(1, Ordering::SeqCst);
                                    let position = match subscriptions.iter().position(|sub| sub.instrument.id == instrument.id) {
                                        Some(position) => position,
                                        None => {
                                            subscriptions.push(Subscription { instrument, bbo: false, trades: false, bbo_credit: 1.0, trade_credit: 0.0 });
                                            subscriptions.len() - 1
                                        }
                                    };
                                    let already = match channel {
                                        Channel::Bbo => std::mem::replace(&mut subscriptions[position].bbo, true),
                                        Channel::Trades => std::mem::replace(&mut subscriptions[position].trades, true),
                                    };
                                    if channel == Channel::Bbo && !already {
                                        bbo_subscriptions += 1;
                                    }
                                    if already {
                                        control.duplicate_topics.fetch_add(1, Ordering::SeqCst);
                                    } else {
                                        session_topics.count += 1;
                                        control.live_session_topics.fetch_add(1, Ordering::SeqCst);
                                        control.most_topics_in_a_session.fetch_max(session_topics.count, Ordering::SeqCst);
                                    }
                                }
                            }
                            ClientRequest::Ping => {
                                control.client_pings.fetch_add(1, Ordering::SeqCst);
                            }
                            ClientRequest::Pong => {
                                control.client_pongs.fetch_add(1, Ordering::SeqCst);
                            }
                            ClientRequest::Unknown => {}
                        }
                        if !stalled {
                            for reply in &replies {
                                if !send(&mut writer, reply).await {
                                    return;
                                }
                            }
                            let _ = writer.flush().await;
                        }
                    }
                    OpCode::Ping => {
                        control.client_pings.fetch_add(1, Ordering::SeqCst);
                        if !stalled {
                            if writer.write_frame(Frame::pong(Payload::Bytes(payload))).await.is_err() {
                                return;
                            }
                            let _ = writer.flush().await;
                        }
                    }
                    OpCode::Pong => {
                        control.client_pongs.fetch_add(1, Ordering::SeqCst);
                    }
                    OpCode::Close => {
                        let _ = writer.write_frame(Frame::close(1000, b"")).await;
                        let _ = writer.flush().await;
                        return;
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let elapsed_s = now.duration_since(last_tick).as_secs_f64();
                last_tick = now;
                if generation(&control.disconnect_generation) != seen_disconnect
                    || (served_data
                        && now.duration_since(last_subscribe_at) >= CUT_AFTER_SUBSCRIBES_QUIET
                        && control.take_disconnect_ticket())
                {
                    // A network cut: no close frame.
                    return;
                }
                if generation(&control.malformed_generation) != seen_malformed {
                    seen_malformed = generation(&control.malformed_generation);
                    if !send(&mut writer, &wire::malformed(venue)).await {
                        return;
                    }
                }
                if generation(&control.oversized_generation) != seen_oversized {
                    seen_oversized = generation(&control.oversized_generation);
                    let oversized = ServerFrame::Text(" ".repeat(super::OVERSIZED_FRAME_BYTES));
                    if !send(&mut writer, &oversized).await {
                        return;
                    }
                }
                let first_symbol = subscriptions.first().map(|subscription| Arc::clone(&subscription.instrument));
                if !super::fault_frames::on_tick(&shared, venue, &mut seen_frame_faults, first_symbol.as_deref(), &mut writer).await {
                    return;
                }
                if generation(&control.notice_generation) != seen_notice {
                    seen_notice = generation(&control.notice_generation);
                    let now_ms = tickflow_core::record::now_ns() / 1_000_000;
                    if let Some(notice) = wire::shutdown_notice(venue, now_ms)
                        && !send(&mut writer, &notice).await
                    {
                        return;
                    }
                    close_at = Some(now + Duration::from_millis(config.notice_close_after_ms));
                }
                if generation(&control.empty_bid_generation) != seen_empty_bid {
                    seen_empty_bid = generation(&control.empty_bid_generation);
                    if matches!(venue, Venue::Binance | Venue::Htx) {
                        let now_ms = tickflow_core::record::now_ns() / 1_000_000;
                        for subscription in subscriptions.iter().filter(|subscription| subscription.bbo) {
                            sequence += 1;
                            let update = BboUpdate {
                                venue_symbol: &subscription.instrument.ws_symbol[venue.index()],
                                bid: 0.0,
                                bid_qty: 0.0,
                                ask: 1.0,
                                ask_qty: 1.0,
                                sequence,
                                now_ms,
                            };
                            let is_binary = wire::write_bbo(venue, &update, &mut text, &mut binary);
                            if !write_data(&mut writer, is_binary, &text, &binary).await {
                                return;
                            }
                            control.data_frames.fetch_add(1, Ordering::Relaxed);
                            served_data = true;
                        }
                    }
                }
                if close_at.is_some_and(|at| now >= at) {
                    let _ = writer.write_frame(Frame::close(1001, b"going away")).await;
                    let _ = writer.flush().await;
                    return;
                }
                let stalled = control.stalled.load(Ordering::SeqCst);
                if stalled {
                    let _ = writer.flush().await;
                    continue;
                }
                if now >= next_server_ping {
                    next_server_ping = now + server_ping_interval;
                    let sent = match venue {
                        Venue::Binance | Venue::Gate => writer
                            .write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"sim")))
                            .await
                            .is_ok(),
                        Venue::Htx => send(&mut writer, &wire::htx_ping(tickflow_core::record::now_ns() / 1_000_000)).await,
                        _ => true,
                    };
                    if !sent {
                        return;
                    }
                }
                if control.data_paused.load(Ordering::SeqCst) || control.is_held(held_until) {
                    last_tick = now;
                    let _ = writer.flush().await;
                    continue;
                }
                noise_bp = (noise_bp + rng.random_range(-0.3..0.3)).clamp(-2.0, 2.0);
                if pacer.is_some() {
                    // Paced mode writes data per ticket (the branch below), never per tick.
                    let _ = writer.flush().await;
                    continue;
                }
                let t_s = shared.started.elapsed().as_secs_f64();
                let now_ms = tickflow_core::record::now_ns() / 1_000_000;
                let bbo_per_s_per_symbol = f64::from_bits(shared.bbo_per_s_per_symbol_bits.load(Ordering::Relaxed));
                for subscription in subscriptions.iter_mut() {
                    let instrument = &subscription.instrument;
                    if instrument.state(venue) != ListingState::Trading {
                        // Delisted or halted: nothing is sent, and nothing is owed when it
                        // trades again.
                        continue;
                    }
                    let symbol = &instrument.ws_symbol[venue.index()];
                    if subscription.bbo {
                        subscription.bbo_credit = (subscription.bbo_credit + bbo_per_s_per_symbol * elapsed_s).min(MAX_CREDIT_UPDATES);
                    }
                    if subscription.trades {
                        subscription.trade_credit = (subscription.trade_credit + config.trades_per_s_per_symbol * elapsed_s).min(MAX_CREDIT_UPDATES);
                    }
                    if subscription.bbo_credit < 1.0 && subscription.trade_credit < 1.0 {
                        continue;
                    }
                    let mid = venue_mid(instrument, venue, t_s, noise_bp);
                    while subscription.bbo_credit >= 1.0 {
                        subscription.bbo_credit -= 1.0;
                        sequence += 1;
                        let (bid, ask) = prices::bid_ask(mid, 0.5);
                        let update = BboUpdate {
                            venue_symbol: symbol,
                            bid,
                            bid_qty: rng.random_range(0.1..5.0),
                            ask,
                            ask_qty: rng.random_range(0.1..5.0),
                            sequence,
                            now_ms,
                        };
                        let is_binary = write_bbo(venue, bitget_v3, &update, &mut text, &mut binary);
                        if !write_data(&mut writer, is_binary, &text, &binary).await {
                            return;
                        }
                        control.data_frames.fetch_add(1, Ordering::Relaxed);
                        served_data = true;
                    }
                    while subscription.trade_credit >= 1.0 {
                        subscription.trade_credit -= 1.0;
                        sequence += 1;
                        let update = TradeUpdate {
                            venue_symbol: symbol,
                            price: mid,
                            quantity: rng.random_range(0.001..2.0),
                            buy: rng.random_bool(0.5),
                            trade_id: sequence,
                            now_ms,
                        };
                        let is_binary = write_trade(venue, bitget_v3, &update, &mut text, &mut binary);
                        if !write_data(&mut writer, is_binary, &text, &binary).await {
                            return;
                        }
                        control.data_frames.fetch_add(1, Ordering::Relaxed);
                        served_data = true;
                    }
                }
                if writer.flush().await.is_err() {
                    return;
                }
            }
            _ = async {
                match pacer {
                    Some(pacer) => pacer.take().await,
                    None => std::future::pending().await,
                }
            }, if pacer.is_some() && bbo_subscriptions > 0 => {
                if control.stalled.load(Ordering::SeqCst) || control.data_paused.load(Ordering::SeqCst) || control.is_held(held_until) {
                    continue;
                }
                let count = subscriptions.len();
                let Some(position) = (0..count).map(|step| (paced_next + step) % count).find(|&position| {
                    subscriptions[position].bbo && subscriptions[position].instrument.state(venue) == ListingState::Trading
                }) else {
                    continue;
                };
                paced_next = position + 1;
                let instrument = &subscriptions[position].instrument;
                let t_s = shared.started.elapsed().as_secs_f64();
                let mid = venue_mid(instrument, venue, t_s, noise_bp);
                let (bid, ask) = prices::bid_ask(mid, 0.5);
                sequence += 1;
                let update = BboUpdate {
                    venue_symbol: &instrument.ws_symbol[venue.index()],
                    bid,
                    bid_qty: rng.random_range(0.1..5.0),
                    ask,
                    ask_qty: rng.random_range(0.1..5.0),
                    sequence,
                    now_ms: tickflow_core::record::now_ns() / 1_000_000,
                };
                let is_binary = write_bbo(venue, bitget_v3, &update, &mut text, &mut binary);
                // The flush is the point of paced mode: this frame alone goes out in one write
                // (one TLS record, one socket write: the socket has TCP_NODELAY).
                if !write_data(&mut writer, is_binary, &text, &binary).await || writer.flush().await.is_err() {
                    return;
                }
                control.data_frames.fetch_add(1, Ordering::Relaxed);
                served_data = true;
            }
        }
    }
}

/// The mid price `venue` quotes for `instrument` at `t_s`: the shared path (an instrument that
/// follows another, `1000PEPE`, shares its path and dislocations, times its multiplier), the
/// venue's offset, any dislocation, and this connection's noise.
fn venue_mid(instrument: &Instrument, venue: Venue, t_s: f64, noise_bp: f64) -> f64 {
    let path = instrument.price.path_index;
    let offset_bp =
        prices::venue_offset_bp(venue) + prices::dislocation_bp(venue, path, t_s) + noise_bp;
    instrument.price.mid(t_s) * (1.0 + offset_bp / 10_000.0)
}

/// A best bid/ask frame in the session's format (Bitget: v2 or v3 by what the client spoke).
fn write_bbo(
    venue: Venue,
    bitget_v3: bool,
    update: &BboUpdate<'_>,
    text: &mut String,
    binary: &mut Vec<u8>,
) -> bool {
    if bitget_v3 {
        binary.clear();
        wire::write_bitget_v3_bbo(update, text);
        return false;
    }
    wire::write_bbo(venue, update, text, binary)
}

/// A trade frame in the session's format (see `write_bbo`).
fn write_trade(
    venue: Venue,
    bitget_v3: bool,
    update: &TradeUpdate<'_>,
    text: &mut String,
    binary: &mut Vec<u8>,
) -> bool {
    if bitget_v3 {
        binary.clear();
        wire::write_bitget_v3_trade(update, text);
        return false;
    }
    wire::write_trade(venue, update, text, binary)
}

async fn write_data(writer: &mut Writer, is_binary: bool, text: &str, binary: &[u8]) -> bool {
    let frame = if is_binary {
        Frame::binary(Payload::Borrowed(binary))
    } else {
        Frame::text(Payload::Borrowed(text.as_bytes()))
    };
    writer.write_frame(frame).await.is_ok()
}
