//! Simulated browsers against the engine's WebSocket broadcast sink: fast (read every frame), slow
//! (sleep `slow_read_delay_ms` after each frame) and dead (subscribe, then never read and never
//! answer a ping). Fast and slow browsers reconnect one second after the server closes them
//! (counted). Each reading browser records, for every quote in a frame that carries the venue's
//! timestamp (`ts_exchange_ns` > 0, stamped by the simulator when it wrote the frame, millisecond
//! resolution), venue send → browser receipt in a local HdrHistogram, merged every 250 ms into its
//! class's histograms (the current sampling interval, the current phase, the whole measured run).
//! The latency is taken from each record's own send time, not from a request schedule, so no
//! coordinated-omission correction applies: a stalled path shows in every late record.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, Payload};
use hdrhistogram::Histogram;

use crate::broadcast::{connect, for_each_field};

/// The three kinds of browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrowserClass {
    Fast,
    Slow,
    Dead,
}

impl BrowserClass {
    pub const ALL: [BrowserClass; 3] = [BrowserClass::Fast, BrowserClass::Slow, BrowserClass::Dead];

    pub fn name(self) -> &'static str {
        match self {
            BrowserClass::Fast => "fast",
            BrowserClass::Slow => "slow",
            BrowserClass::Dead => "dead",
        }
    }
}

/// Latency histograms hold 1 µs .. 60 s at 2 significant digits (a few KiB each).
pub const LATENCY_US_MAX: u64 = 60_000_000;

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 2).expect("constant bounds are valid")
}

/// One class's histograms: the sampling interval (swapped out every second), one per phase, and
/// the measured phases together.
#[derive(Debug)]
pub struct ClassHistograms {
    pub interval: Histogram<u64>,
    pub phases: Vec<Histogram<u64>>,
    pub measured: Histogram<u64>,
}

/// What one class of browsers counted.
#[derive(Debug)]
pub struct ClassShared {
    pub class: BrowserClass,
    pub planned: u64,
    pub connected_now: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Sessions the server closed (or that broke) while the run was going.
    pub closed_by_server: AtomicU64,
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub histograms: Mutex<ClassHistograms>,
}

/// Shared between the browsers and the sampler.
#[derive(Debug)]
pub struct Browsers {
    pub classes: [ClassShared; 3],
    /// The phase samples are attributed to.
    pub phase: AtomicUsize,
    /// Whether that phase is measured (its samples go into `measured` too).
    pub phase_measured: AtomicBool,
    stop: tokio::sync::watch::Sender<bool>,
}

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Browsers {
    pub fn new(fast: usize, slow: usize, dead: usize, phases: usize) -> Arc<Browsers> {
        let class = |class: BrowserClass, planned: usize| ClassShared {
            class,
            planned: planned as u64,
            connected_now: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            closed_by_server: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            histograms: Mutex::new(ClassHistograms {
                interval: latency_histogram(),
                phases: (0..phases).map(|_| latency_histogram()).collect(),
                measured: latency_histogram(),
            }),
        };
        let (stop, _) = tokio::sync::watch::channel(false);
        Arc::new(Browsers {
            classes: [
                class(BrowserClass::Fast, fast),
                class(BrowserClass::Slow, slow),
                class(BrowserClass::Dead, dead),
            ],
            phase: AtomicUsize::new(0),
            phase_measured: AtomicBool::new(false),
            stop,
        })
    }

    pub fn class(&self, class: BrowserClass) -> &ClassShared {
        &self.classes[class as usize]
    }

    /// Tells every browser to close.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// The interval histogram of `class`, replaced by an empty one.
    pub fn take_interval(&self, class: BrowserClass) -> Histogram<u64> {
        let mut histograms = lock(&self.class(class).histograms);
        std::mem::replace(&mut histograms.interval, latency_histogram())
    }

    pub fn phase_histogram(&self, class: BrowserClass, phase: usize) -> Option<Histogram<u64>> {
        lock(&self.class(class).histograms)
            .phases
            .get(phase)
            .cloned()
    }

    pub fn measured_histogram(&self, class: BrowserClass) -> Histogram<u64> {
        lock(&self.class(class).histograms).measured.clone()
    }

    fn merge(&self, class: BrowserClass, local: &mut Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        let phase = self.phase.load(Ordering::Relaxed);
        let measured = self.phase_measured.load(Ordering::Relaxed);
        let mut histograms = lock(&self.class(class).histograms);
        let _ = histograms.interval.add(&*local);
        if let Some(histogram) = histograms.phases.get_mut(phase) {
            let _ = histogram.add(&*local);
        }
        if measured {
            let _ = histograms.measured.add(&*local);
        }
        drop(histograms);
        local.reset();
    }
}

/// The channels of browser `index`: `quotes:` and `spreads:` of `per_browser` symbols starting at
/// symbol `index × 7`, wrapping.
pub fn channels_of(index: usize, symbols: &[String], per_browser: usize) -> Vec<String> {
    if symbols.is_empty() {
        return Vec::new();
    }
    let count = per_browser.min(symbols.len());
    let mut channels = Vec::with_capacity(count * 2);
    for offset in 0..count {
        let symbol = &symbols[(index * 7 + offset) % symbols.len()];
        channels.push(format!("quotes:{symbol}"));
        channels.push(format!("spreads:{symbol}"));
    }
    channels
}

/// Starts every browser on `runtime`; they run until `Browsers::stop`. The address is read from
/// `address` at each (re)connect, so an engine restarted on another port is followed.
pub fn start(
    runtime: &tokio::runtime::Runtime,
    browsers: &Arc<Browsers>,
    address: Arc<Mutex<Option<SocketAddr>>>,
    symbols: &[String],
    per_browser: usize,
    slow_read_delay: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut index = 0;
    for class in BrowserClass::ALL {
        for _ in 0..browsers.class(class).planned {
            let channels = channels_of(index, symbols, per_browser);
            index += 1;
            let browsers = Arc::clone(browsers);
            let address = Arc::clone(&address);
            let stop = browsers.stop.subscribe();
            tasks.push(runtime.spawn(async move {
                run_browser(class, browsers, address, channels, slow_read_delay, stop).await;
            }));
        }
    }
    tasks
}

const RECONNECT_AFTER: Duration = Duration::from_secs(1);
const MERGE_EVERY: Duration = Duration::from_millis(250);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}

/// Connects and subscribes; None when that failed.
async fn session(
    address: &Mutex<Option<SocketAddr>>,
    channels: &[String],
) -> Option<crate::broadcast::Socket> {
    let address = (*lock(address))?;
    let mut socket = connect(address).await?;
    let subscribe = serde_json::json!({"op": "subscribe", "channels": channels}).to_string();
    socket
        .write_frame(Frame::text(Payload::Owned(subscribe.into_bytes())))
        .await
        .ok()?;
    // The hello, then the ack.
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
        loop {
            let frame = socket.read_frame().await.ok()?;
            if frame.opcode == OpCode::Text
                && frame
                    .payload
                    .windows(10)
                    .any(|window| window == b"subscribed")
            {
                return Some(());
            }
        }
    })
    .await
    .ok()??;
    Some(socket)
}

async fn run_browser(
    class: BrowserClass,
    browsers: Arc<Browsers>,
    address: Arc<Mutex<Option<SocketAddr>>>,
    channels: Vec<String>,
    slow_read_delay: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let shared = browsers.class(class);
    let mut local = latency_histogram();
    while !*stop.borrow() {
        let Some(mut socket) = session(&address, &channels).await else {
            shared.connect_failures.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(RECONNECT_AFTER) => continue,
            }
        };
        shared.connects.fetch_add(1, Ordering::Relaxed);
        shared.connected_now.fetch_add(1, Ordering::Relaxed);
        if class == BrowserClass::Dead {
            // Never reads, never answers pings; holds the socket until the run ends.
            let _ = stop.changed().await;
            shared.connected_now.fetch_sub(1, Ordering::Relaxed);
            break;
        }
        // Counted here, added to the shared totals at each merge.
        let (mut frames, mut bytes) = (0u64, 0u64);
        let mut last_merge = Instant::now();
        let closed = loop {
            let frame = tokio::select! {
                _ = stop.changed() => break false,
                frame = socket.read_frame() => frame,
            };
            let Ok(frame) = frame else { break true };
            match frame.opcode {
                OpCode::Text => {}
                OpCode::Close => break true,
                _ => continue,
            }
            frames += 1;
            bytes += frame.payload.len() as u64;
            let received_ns = now_ns();
            for_each_field(&frame.payload, b"\"ts_exchange_ns\":", |sent_ns| {
                if sent_ns > 0 {
                    let latency_us = (received_ns.saturating_sub(sent_ns) / 1_000).max(1) as u64;
                    let _ = local.record(latency_us.min(LATENCY_US_MAX));
                }
            });
            drop(frame);
            if last_merge.elapsed() >= MERGE_EVERY {
                browsers.merge(class, &mut local);
                shared.frames.fetch_add(frames, Ordering::Relaxed);
                shared.bytes.fetch_add(bytes, Ordering::Relaxed);
                (frames, bytes) = (0, 0);
                last_merge = Instant::now();
            }
            if class == BrowserClass::Slow {
                tokio::select! {
                    _ = stop.changed() => break false,
                    _ = tokio::time::sleep(slow_read_delay) => {}
                }
            }
        };
        browsers.merge(class, &mut local);
        shared.frames.fetch_add(frames, Ordering::Relaxed);
        shared.bytes.fetch_add(bytes, Ordering::Relaxed);
        shared.connected_now.fetch_sub(1, Ordering::Relaxed);
        if !closed {
            break;
        }
        shared.closed_by_server.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_take_staggered_symbols() {
        let symbols: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            channels_of(1, &symbols, 2),
            vec!["quotes:B", "spreads:B", "quotes:C", "spreads:C"]
        );
        assert_eq!(channels_of(0, &symbols, 10).len(), 6);
        assert!(channels_of(0, &[], 3).is_empty());
    }

    #[test]
    fn merged_samples_land_in_the_phase_and_the_measured_run() {
        let browsers = Browsers::new(1, 0, 0, 2);
        let mut local = latency_histogram();
        local.record(1_000).unwrap();
        browsers.phase.store(1, Ordering::Relaxed);
        browsers.phase_measured.store(true, Ordering::Relaxed);
        browsers.merge(BrowserClass::Fast, &mut local);
        assert!(local.is_empty());
        assert_eq!(
            browsers
                .phase_histogram(BrowserClass::Fast, 1)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            browsers
                .phase_histogram(BrowserClass::Fast, 0)
                .unwrap()
                .len(),
            0
        );
        assert_eq!(browsers.measured_histogram(BrowserClass::Fast).len(), 1);
        assert_eq!(browsers.take_interval(BrowserClass::Fast).len(), 1);
        assert_eq!(browsers.take_interval(BrowserClass::Fast).len(), 0);
    }
}
