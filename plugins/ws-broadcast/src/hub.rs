//! The broadcast task: owns every channel (pending records of this flush, latest value per key
//! for snapshots, subscribers), conflates quotes, spreads and telemetry per key, serializes each
//! dirty channel once per flush into one shared frame and pushes that frame to each subscriber's
//! queue. It alone touches subscriptions, so nothing is locked or copied per message.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tickflow_sdk::{
    GapEvent, HostHandle, OpportunityEvent, Quote, SpreadSample, SymbolId, Telemetry, Trade,
    VenueId,
};
use tokio::sync::{mpsc, watch};

use crate::client::{ClientShared, CloseCause, Pushed};
use crate::counters::Counters;
use crate::protocol::{self, ChannelKind, ChannelSpec, ErrorCode, FrameBuilder};

/// Records handed over by `on_batch` (a copy of the borrowed batch).
#[derive(Debug)]
pub enum Ingest {
    Quotes(Vec<Quote>),
    Trades(Vec<Trade>),
    Spreads(Vec<SpreadSample>),
    Opportunities(Vec<OpportunityEvent>),
    Gaps(Vec<GapEvent>),
    Telemetry(Vec<Telemetry>),
}

impl Ingest {
    pub fn len(&self) -> usize {
        match self {
            Ingest::Quotes(records) => records.len(),
            Ingest::Trades(records) => records.len(),
            Ingest::Spreads(records) => records.len(),
            Ingest::Opportunities(records) => records.len(),
            Ingest::Gaps(records) => records.len(),
            Ingest::Telemetry(records) => records.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What clients' readers and connections ask of the broadcast task.
#[derive(Debug)]
pub enum HubCommand {
    Connect(Arc<ClientShared>),
    Disconnect(u64),
    Subscribe {
        client: Arc<ClientShared>,
        channels: Vec<(String, ChannelSpec)>,
        snapshot: bool,
    },
    Unsubscribe {
        client: Arc<ClientShared>,
        channels: Vec<(String, ChannelSpec)>,
    },
}

/// A channel's records: pending for the next flush, or the latest per key.
#[derive(Debug)]
enum Records {
    Quotes(Vec<Quote>),
    Trades(Vec<Trade>),
    Spreads(Vec<SpreadSample>),
    Opportunities(Vec<OpportunityEvent>),
    Gaps(Vec<GapEvent>),
    Telemetry(Vec<Telemetry>),
}

impl Records {
    fn empty(kind: ChannelKind) -> Records {
        match kind {
            ChannelKind::Quotes => Records::Quotes(Vec::new()),
            ChannelKind::Trades => Records::Trades(Vec::new()),
            ChannelKind::Spreads => Records::Spreads(Vec::new()),
            ChannelKind::Opportunities => Records::Opportunities(Vec::new()),
            ChannelKind::Gaps => Records::Gaps(Vec::new()),
            ChannelKind::Telemetry => Records::Telemetry(Vec::new()),
        }
    }
    fn len(&self) -> usize {
        match self {
            Records::Quotes(records) => records.len(),
            Records::Trades(records) => records.len(),
            Records::Spreads(records) => records.len(),
            Records::Opportunities(records) => records.len(),
            Records::Gaps(records) => records.len(),
            Records::Telemetry(records) => records.len(),
        }
    }
    fn clear(&mut self) {
        match self {
            Records::Quotes(records) => records.clear(),
            Records::Trades(records) => records.clear(),
            Records::Spreads(records) => records.clear(),
            Records::Opportunities(records) => records.clear(),
            Records::Gaps(records) => records.clear(),
            Records::Telemetry(records) => records.clear(),
        }
    }
}

struct Channel {
    /// `quotes:BTC-USDT`.
    name: Arc<str>,
    /// The symbol of a per-symbol channel.
    symbol: Option<Arc<str>>,
    kind: ChannelKind,
    pending: Records,
    /// Conflated kinds: the latest value per key, for snapshots.
    latest: Records,
    dirty: bool,
    subscribers: Vec<Arc<ClientShared>>,
}

struct ClientEntry {
    shared: Arc<ClientShared>,
    /// Exact channels subscribed.
    channels: Vec<u32>,
    wildcards: u8,
}

/// Limits the broadcast task enforces.
#[derive(Clone, Copy, Debug)]
pub struct HubLimits {
    pub channels_max: usize,
    pub keys_per_channel_max: usize,
    pub pending_events_max: usize,
    pub subscriptions_max: usize,
}

const OPPORTUNITIES: u32 = 0;
const GAPS: u32 = 1;
const TELEMETRY: u32 = 2;

/// Most symbol and venue names cached (names of ids seen in records).
const NAMES_MAX: usize = 1 << 16;

pub struct Hub {
    host: HostHandle,
    limits: HubLimits,
    counters: Arc<Counters>,
    channels: Vec<Channel>,
    by_name: HashMap<Arc<str>, u32>,
    /// Per-symbol channels by symbol id, per kind (quotes, trades, spreads).
    by_symbol: [HashMap<u32, u32>; 3],
    dirty: Vec<u32>,
    wildcards: [Vec<Arc<ClientShared>>; 6],
    clients: HashMap<u64, ClientEntry>,
    symbol_names: HashMap<u32, Arc<str>>,
    venue_names: HashMap<u16, Arc<str>>,
    pending_events: usize,
    subscriptions: u64,
    builder: FrameBuilder,
    closing: Vec<u64>,
}

impl Hub {
    pub fn new(host: HostHandle, limits: HubLimits, counters: Arc<Counters>) -> Hub {
        let mut hub = Hub {
            host,
            limits,
            counters,
            channels: Vec::new(),
            by_name: HashMap::new(),
            by_symbol: Default::default(),
            dirty: Vec::new(),
            wildcards: Default::default(),
            clients: HashMap::new(),
            symbol_names: HashMap::new(),
            venue_names: HashMap::new(),
            pending_events: 0,
            subscriptions: 0,
            builder: FrameBuilder::default(),
            closing: Vec::new(),
        };
        for kind in [
            ChannelKind::Opportunities,
            ChannelKind::Gaps,
            ChannelKind::Telemetry,
        ] {
            hub.add_channel(kind, None);
        }
        hub
    }

    /// Runs until `shutdown` turns true: then flushes what is pending and closes every client
    /// with 1001.
    pub async fn run(
        mut self,
        mut ingest: mpsc::Receiver<Ingest>,
        ingest_records: Arc<AtomicUsize>,
        mut commands: mpsc::Receiver<HubCommand>,
        mut shutdown: watch::Receiver<bool>,
        flush_interval: Duration,
    ) {
        let mut ticker = tokio::time::interval(flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = ticker.tick() => self.flush(),
                Some(command) = commands.recv() => self.command(command),
                Some(batch) = ingest.recv() => {
                    ingest_records.fetch_sub(batch.len(), Ordering::Relaxed);
                    self.ingest(batch);
                }
            }
        }
        // What arrived before the stop still goes out, then every client gets its 1001.
        while let Ok(batch) = ingest.try_recv() {
            ingest_records.fetch_sub(batch.len(), Ordering::Relaxed);
            self.ingest(batch);
        }
        self.flush();
        for entry in self.clients.values() {
            entry.shared.close(
                CloseCause::Shutdown,
                Some(protocol::close_frame(1001, "server shutting down")),
            );
        }
        // Connections ending now send their Disconnect; nobody needs the answers.
        commands.close();
    }

    fn add_channel(&mut self, kind: ChannelKind, symbol: Option<Arc<str>>) -> Option<u32> {
        if self.channels.len() >= self.limits.channels_max + 3 {
            Counters::add(&self.counters.channels_refused, 1);
            return None;
        }
        let name: Arc<str> = protocol::channel_name(kind, symbol.as_deref()).into();
        let id = self.channels.len() as u32;
        self.channels.push(Channel {
            name: name.clone(),
            symbol,
            kind,
            pending: Records::empty(kind),
            latest: Records::empty(kind),
            dirty: false,
            subscribers: Vec::new(),
        });
        self.by_name.insert(name, id);
        Some(id)
    }

    fn symbol_name(&mut self, symbol_id: SymbolId) -> Arc<str> {
        if let Some(name) = self.symbol_names.get(&symbol_id.0) {
            return name.clone();
        }
        let name: Arc<str> = match self.host.symbol_name(symbol_id) {
            Some(name) if ChannelSpec::parse(&format!("quotes:{name}")).is_some() => name.into(),
            _ => format!("#{}", symbol_id.0).into(),
        };
        if self.symbol_names.len() < NAMES_MAX {
            self.symbol_names.insert(symbol_id.0, name.clone());
        }
        name
    }

    fn venue_name(&mut self, venue_id: VenueId) -> Arc<str> {
        if let Some(name) = self.venue_names.get(&venue_id.0) {
            return name.clone();
        }
        let name: Arc<str> = match self.host.venue_name(venue_id) {
            Some(name)
                if name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte)) =>
            {
                name.into()
            }
            _ => format!("#{}", venue_id.0).into(),
        };
        if self.venue_names.len() < NAMES_MAX {
            self.venue_names.insert(venue_id.0, name.clone());
        }
        name
    }

    /// The per-symbol channel of `kind` for a symbol id, created on its first record.
    fn symbol_channel(&mut self, kind: ChannelKind, symbol_id: SymbolId) -> Option<u32> {
        let slot = kind as usize;
        if let Some(id) = self.by_symbol[slot].get(&symbol_id.0) {
            return Some(*id);
        }
        let symbol = self.symbol_name(symbol_id);
        let name = protocol::channel_name(kind, Some(&symbol));
        let id = match self.by_name.get(name.as_str()) {
            Some(id) => *id,
            None => self.add_channel(kind, Some(symbol))?,
        };
        if self.by_symbol[slot].len() < NAMES_MAX {
            self.by_symbol[slot].insert(symbol_id.0, id);
        }
        Some(id)
    }

    fn mark_dirty(&mut self, id: u32) {
        let channel = &mut self.channels[id as usize];
        if !channel.dirty {
            channel.dirty = true;
            self.dirty.push(id);
        }
    }

    fn ingest(&mut self, batch: Ingest) {
        let keys_max = self.limits.keys_per_channel_max;
        match batch {
            Ingest::Quotes(quotes) => {
                for quote in quotes {
                    let Some(id) = self.symbol_channel(ChannelKind::Quotes, quote.symbol_id) else {
                        continue;
                    };
                    let channel = &mut self.channels[id as usize];
                    let same = |other: &Quote| other.venue_id == quote.venue_id;
                    let (Records::Quotes(pending), Records::Quotes(latest)) =
                        (&mut channel.pending, &mut channel.latest)
                    else {
                        continue;
                    };
                    let fresh = upsert(pending, quote, same, keys_max, Some(&self.counters));
                    upsert(latest, quote, same, keys_max, None);
                    if fresh {
                        self.mark_dirty(id);
                    }
                }
            }
            Ingest::Spreads(samples) => {
                for sample in samples {
                    let Some(id) = self.symbol_channel(ChannelKind::Spreads, sample.symbol_id)
                    else {
                        continue;
                    };
                    let channel = &mut self.channels[id as usize];
                    let same = |other: &SpreadSample| {
                        other.buy_venue_id == sample.buy_venue_id
                            && other.sell_venue_id == sample.sell_venue_id
                    };
                    let (Records::Spreads(pending), Records::Spreads(latest)) =
                        (&mut channel.pending, &mut channel.latest)
                    else {
                        continue;
                    };
                    let fresh = upsert(pending, sample, same, keys_max, Some(&self.counters));
                    upsert(latest, sample, same, keys_max, None);
                    if fresh {
                        self.mark_dirty(id);
                    }
                }
            }
            Ingest::Telemetry(samples) => {
                if let Some(sample) = samples.last() {
                    let channel = &mut self.channels[TELEMETRY as usize];
                    if let (Records::Telemetry(pending), Records::Telemetry(latest)) =
                        (&mut channel.pending, &mut channel.latest)
                    {
                        Counters::add(
                            &self.counters.conflated_updates,
                            (pending.len() + samples.len() - 1) as u64,
                        );
                        pending.clear();
                        pending.push(*sample);
                        latest.clear();
                        latest.push(*sample);
                    }
                    self.mark_dirty(TELEMETRY);
                }
            }
            Ingest::Trades(trades) => {
                for trade in trades {
                    if !self.take_event_room() {
                        continue;
                    }
                    let Some(id) = self.symbol_channel(ChannelKind::Trades, trade.symbol_id) else {
                        continue;
                    };
                    if let Records::Trades(pending) = &mut self.channels[id as usize].pending {
                        pending.push(trade);
                    }
                    self.mark_dirty(id);
                }
            }
            Ingest::Opportunities(events) => {
                for event in events {
                    if !self.take_event_room() {
                        continue;
                    }
                    if let Records::Opportunities(pending) =
                        &mut self.channels[OPPORTUNITIES as usize].pending
                    {
                        pending.push(event);
                    }
                }
                self.mark_dirty(OPPORTUNITIES);
            }
            Ingest::Gaps(gaps) => {
                for gap in gaps {
                    if !self.take_event_room() {
                        continue;
                    }
                    if let Records::Gaps(pending) = &mut self.channels[GAPS as usize].pending {
                        pending.push(gap);
                    }
                }
                self.mark_dirty(GAPS);
            }
        }
    }

    fn take_event_room(&mut self) -> bool {
        if self.pending_events >= self.limits.pending_events_max {
            Counters::add(&self.counters.pending_dropped, 1);
            return false;
        }
        self.pending_events += 1;
        true
    }

    /// Serializes every dirty channel once and pushes the frame to its subscribers.
    pub fn flush(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let channel = &mut self.channels[id as usize];
            channel.dirty = false;
            let kind = channel.kind;
            let listened =
                !channel.subscribers.is_empty() || !self.wildcards[kind as usize].is_empty();
            if channel.pending.len() == 0 || !listened {
                channel.pending.clear();
                continue;
            }
            let mut pending = std::mem::replace(&mut channel.pending, Records::empty(kind));
            let frame = self.build_frame(id, &pending, false);
            pending.clear();
            self.channels[id as usize].pending = pending;
            self.fan_out(id, &frame);
        }
        self.dirty = dirty;
        self.dirty.clear();
        self.pending_events = 0;
        self.remove_closing();
    }

    fn build_frame(&mut self, id: u32, records: &Records, snapshot: bool) -> (Bytes, u64) {
        let name = self.channels[id as usize].name.clone();
        let symbol = self.channels[id as usize].symbol.clone();
        let mut builder = std::mem::take(&mut self.builder);
        builder.begin(&name, snapshot);
        let symbol_or = |hub: &mut Hub, symbol_id: SymbolId| match &symbol {
            Some(symbol) => symbol.clone(),
            None => hub.symbol_name(symbol_id),
        };
        match records {
            Records::Quotes(quotes) => {
                for quote in quotes {
                    let symbol = symbol_or(self, quote.symbol_id);
                    let venue = self.venue_name(quote.venue_id);
                    builder.quote(quote, &symbol, &venue);
                }
            }
            Records::Trades(trades) => {
                for trade in trades {
                    let symbol = symbol_or(self, trade.symbol_id);
                    let venue = self.venue_name(trade.venue_id);
                    builder.trade(trade, &symbol, &venue);
                }
            }
            Records::Spreads(samples) => {
                for sample in samples {
                    let symbol = symbol_or(self, sample.symbol_id);
                    let buy = self.venue_name(sample.buy_venue_id);
                    let sell = self.venue_name(sample.sell_venue_id);
                    builder.spread(sample, &symbol, &buy, &sell);
                }
            }
            Records::Opportunities(events) => {
                for event in events {
                    let symbol = self.symbol_name(event.symbol_id);
                    let buy = self.venue_name(event.buy_venue_id);
                    let sell = self.venue_name(event.sell_venue_id);
                    builder.opportunity(event, &symbol, &buy, &sell);
                }
            }
            Records::Gaps(gaps) => {
                for gap in gaps {
                    let symbol = self.symbol_name(gap.symbol_id);
                    let venue = self.venue_name(gap.venue_id);
                    builder.gap(gap, &symbol, &venue);
                }
            }
            Records::Telemetry(samples) => {
                for sample in samples {
                    builder.telemetry(sample);
                }
            }
        }
        let records = builder.records() as u64;
        let frame = builder.finish();
        self.builder = builder;
        Counters::add(&self.counters.frames_built, 1);
        (frame, records)
    }

    fn fan_out(&mut self, id: u32, (frame, records): &(Bytes, u64)) {
        let channel = &self.channels[id as usize];
        let kind = channel.kind;
        let conflated = kind.conflated();
        let bit = kind.bit();
        Counters::add(&self.counters.records_framed, *records);
        for subscriber in &channel.subscribers {
            // A wildcard subscriber of this kind gets the frame once, below.
            if subscriber.wildcard_mask.load(Ordering::Relaxed) & bit != 0 {
                continue;
            }
            if subscriber.push_shared(frame, id, conflated, *records) == Pushed::Closing {
                self.closing.push(subscriber.id);
            }
        }
        for subscriber in &self.wildcards[kind as usize] {
            if subscriber.push_shared(frame, id, conflated, *records) == Pushed::Closing {
                self.closing.push(subscriber.id);
            }
        }
    }

    fn remove_closing(&mut self) {
        let closing = std::mem::take(&mut self.closing);
        for id in &closing {
            self.remove_client(*id);
        }
        self.closing = closing;
        self.closing.clear();
    }

    fn command(&mut self, command: HubCommand) {
        match command {
            HubCommand::Connect(shared) => {
                self.clients.insert(
                    shared.id,
                    ClientEntry {
                        shared,
                        channels: Vec::new(),
                        wildcards: 0,
                    },
                );
                self.counters
                    .clients
                    .store(self.clients.len() as u64, Ordering::Relaxed);
            }
            HubCommand::Disconnect(id) => self.remove_client(id),
            HubCommand::Subscribe {
                client,
                channels,
                snapshot,
            } => self.subscribe(&client, channels, snapshot),
            HubCommand::Unsubscribe { client, channels } => self.unsubscribe(&client, channels),
        }
    }

    fn remove_client(&mut self, id: u64) {
        let Some(entry) = self.clients.remove(&id) else {
            return;
        };
        for channel in &entry.channels {
            self.channels[*channel as usize]
                .subscribers
                .retain(|subscriber| subscriber.id != id);
        }
        for kind_subscribers in &mut self.wildcards {
            kind_subscribers.retain(|subscriber| subscriber.id != id);
        }
        self.subscriptions -= entry.channels.len() as u64 + entry.wildcards.count_ones() as u64;
        self.counters
            .subscriptions
            .store(self.subscriptions, Ordering::Relaxed);
        self.counters
            .clients
            .store(self.clients.len() as u64, Ordering::Relaxed);
    }

    fn error(&self, client: &ClientShared, code: ErrorCode, message: &str) {
        Counters::add(&self.counters.errors_sent, 1);
        client.push_control(protocol::error_frame(code, message));
    }

    fn subscribe(
        &mut self,
        client: &Arc<ClientShared>,
        channels: Vec<(String, ChannelSpec)>,
        snapshot: bool,
    ) {
        let Some(entry) = self.clients.get(&client.id) else {
            return;
        };
        let mut held = entry.channels.len() + entry.wildcards.count_ones() as usize;
        let mut added_exact: Vec<u32> = Vec::new();
        let mut added_wildcards = 0u8;
        let mut names = Vec::with_capacity(channels.len());
        let mut snapshot_channels: Vec<u32> = Vec::new();
        for (name, spec) in channels {
            match spec {
                ChannelSpec::Exact(kind, symbol) => {
                    let full = protocol::channel_name(kind, symbol.as_deref());
                    let id = match self.by_name.get(full.as_str()) {
                        Some(id) => *id,
                        None => match self.add_channel(kind, symbol.map(Arc::from)) {
                            Some(id) => id,
                            None => {
                                self.error(
                                    client,
                                    ErrorCode::TooManyChannels,
                                    &format!(
                                        "{name}: the server tracks at most {} channels",
                                        self.limits.channels_max
                                    ),
                                );
                                continue;
                            }
                        },
                    };
                    let entry = self.clients.get(&client.id);
                    let already = entry.is_some_and(|entry| entry.channels.contains(&id))
                        || added_exact.contains(&id);
                    if !already {
                        if held >= self.limits.subscriptions_max {
                            self.error(
                                client,
                                ErrorCode::TooManySubscriptions,
                                &format!(
                                    "{name}: at most {} subscriptions per client",
                                    self.limits.subscriptions_max
                                ),
                            );
                            continue;
                        }
                        held += 1;
                        added_exact.push(id);
                        self.channels[id as usize].subscribers.push(client.clone());
                    }
                    if kind.conflated() {
                        snapshot_channels.push(id);
                    }
                }
                ChannelSpec::Wildcard(kind) => {
                    let mask = client.wildcard_mask.load(Ordering::Relaxed) | added_wildcards;
                    if mask & kind.bit() == 0 {
                        if held >= self.limits.subscriptions_max {
                            self.error(
                                client,
                                ErrorCode::TooManySubscriptions,
                                &format!(
                                    "{name}: at most {} subscriptions per client",
                                    self.limits.subscriptions_max
                                ),
                            );
                            continue;
                        }
                        held += 1;
                        added_wildcards |= kind.bit();
                        self.wildcards[kind as usize].push(client.clone());
                    }
                    if kind.conflated() {
                        snapshot_channels.extend(
                            self.channels
                                .iter()
                                .enumerate()
                                .filter(|(_, channel)| channel.kind == kind)
                                .map(|(id, _)| id as u32),
                        );
                    }
                }
            }
            names.push(name);
        }
        client
            .wildcard_mask
            .fetch_or(added_wildcards, Ordering::Relaxed);
        if let Some(entry) = self.clients.get_mut(&client.id) {
            self.subscriptions += added_exact.len() as u64 + added_wildcards.count_ones() as u64;
            entry.channels.extend(added_exact);
            entry.wildcards |= added_wildcards;
        }
        self.counters
            .subscriptions
            .store(self.subscriptions, Ordering::Relaxed);
        client.push_control(protocol::ack_frame("subscribed", &names));
        if snapshot {
            snapshot_channels.sort_unstable();
            snapshot_channels.dedup();
            for id in snapshot_channels {
                if self.channels[id as usize].latest.len() == 0 {
                    continue;
                }
                let kind = self.channels[id as usize].kind;
                let latest =
                    std::mem::replace(&mut self.channels[id as usize].latest, Records::empty(kind));
                let (frame, _) = self.build_frame(id, &latest, true);
                self.channels[id as usize].latest = latest;
                if client.push_control(frame) == Pushed::Closing {
                    break;
                }
            }
        }
    }

    fn unsubscribe(&mut self, client: &Arc<ClientShared>, channels: Vec<(String, ChannelSpec)>) {
        let Some(entry) = self.clients.get_mut(&client.id) else {
            return;
        };
        let mut names = Vec::with_capacity(channels.len());
        for (name, spec) in channels {
            match spec {
                ChannelSpec::Exact(kind, symbol) => {
                    let full = protocol::channel_name(kind, symbol.as_deref());
                    if let Some(id) = self.by_name.get(full.as_str()) {
                        if let Some(position) = entry.channels.iter().position(|held| held == id) {
                            entry.channels.swap_remove(position);
                            self.subscriptions -= 1;
                            self.channels[*id as usize]
                                .subscribers
                                .retain(|subscriber| subscriber.id != client.id);
                        }
                    }
                }
                ChannelSpec::Wildcard(kind) => {
                    if entry.wildcards & kind.bit() != 0 {
                        entry.wildcards &= !kind.bit();
                        self.subscriptions -= 1;
                        client
                            .wildcard_mask
                            .fetch_and(!kind.bit(), Ordering::Relaxed);
                        self.wildcards[kind as usize]
                            .retain(|subscriber| subscriber.id != client.id);
                    }
                }
            }
            names.push(name);
        }
        self.counters
            .subscriptions
            .store(self.subscriptions, Ordering::Relaxed);
        client.push_control(protocol::ack_frame("unsubscribed", &names));
    }
}

/// Replaces the record with the same key (counted as conflated) or appends it (up to
/// `keys_max`, else counted as dropped); counts only when given `counters` (the pending
/// table; the latest table mirrors it). True when the record is in.
fn upsert<T: Copy>(
    records: &mut Vec<T>,
    record: T,
    same: impl Fn(&T) -> bool,
    keys_max: usize,
    counters: Option<&Counters>,
) -> bool {
    if let Some(existing) = records.iter_mut().find(|existing| same(existing)) {
        *existing = record;
        if let Some(counters) = counters {
            Counters::add(&counters.conflated_updates, 1);
        }
        return true;
    }
    if records.len() >= keys_max {
        if let Some(counters) = counters {
            Counters::add(&counters.pending_dropped, 1);
        }
        return false;
    }
    records.push(record);
    true
}
