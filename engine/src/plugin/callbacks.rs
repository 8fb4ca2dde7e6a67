//! The host side of the ABI's callback table: logging, symbol and venue names, plugin metrics
//! and the engine clock, one table per sink instance.
//!
//! Every callback is `extern "C"`, thread-safe and never panics (a panic here would abort the
//! process: nothing may unwind across the ABI in either direction).

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use tickflow_sdk::abi::{
    ABI_MAJOR, ABI_MINOR, HOST_SIZE_V1_0, Host, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN,
    METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM,
};
use tickflow_sdk::records::{SymbolId, VenueId};

use crate::registry::SymbolRegistry;
use crate::venue::Venue;

/// Most metrics one sink may register.
pub const MAX_PLUGIN_METRICS: usize = 64;
/// Longest log line taken from a plugin; the rest is cut.
const MAX_LOG_BYTES: usize = 4096;

/// A plugin metric's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginMetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl PluginMetricKind {
    fn from_abi(kind: u32) -> Option<PluginMetricKind> {
        match kind {
            METRIC_COUNTER => Some(PluginMetricKind::Counter),
            METRIC_GAUGE => Some(PluginMetricKind::Gauge),
            METRIC_HISTOGRAM => Some(PluginMetricKind::Histogram),
            _ => None,
        }
    }
}

struct MetricSlot {
    name: String,
    help: String,
    kind: PluginMetricKind,
    /// Counter total, or the gauge's f64 bits.
    value: AtomicU64,
    histogram: Option<Mutex<Histogram<u64>>>,
}

/// A plugin metric's current value, for the engine's `/metrics`.
#[derive(Clone, Debug)]
pub struct PluginMetricValue {
    pub name: String,
    pub help: String,
    pub kind: PluginMetricKind,
    /// Counter total or gauge value.
    pub value: f64,
    /// Histogram: count, p50, p99, max.
    pub histogram: Option<(u64, u64, u64, u64)>,
}

/// The metrics one sink registered. Registration takes a lock (rare: in `create`); updates are
/// one atomic (counters, gauges) or an uncontended lock (histograms).
#[derive(Default)]
pub struct PluginMetrics {
    slots: metric_slots::Slots,
}

/// A fixed array of metric slots filled once each, read without locks.
mod metric_slots {
    use super::{MAX_PLUGIN_METRICS, MetricSlot};
    use std::sync::{Mutex, OnceLock};

    pub struct Slots {
        slots: Box<[OnceLock<MetricSlot>]>,
        registration: Mutex<()>,
    }

    impl Default for Slots {
        fn default() -> Slots {
            Slots {
                slots: (0..MAX_PLUGIN_METRICS).map(|_| OnceLock::new()).collect(),
                registration: Mutex::new(()),
            }
        }
    }

    impl Slots {
        pub fn get(&self, index: usize) -> Option<&MetricSlot> {
            self.slots.get(index)?.get()
        }
        /// Finds `name` or fills the next free slot with `make()`; None when full.
        pub fn find_or_insert(
            &self,
            name: &str,
            make: impl FnOnce() -> MetricSlot,
        ) -> Option<(usize, &MetricSlot)> {
            // A poisoned lock only means another registration panicked; the slots are still whole.
            let _guard = self
                .registration
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for (index, slot) in self.slots.iter().enumerate() {
                match slot.get() {
                    Some(existing) if existing.name == name => return Some((index, existing)),
                    Some(_) => continue,
                    None => {
                        let _ = slot.set(make());
                        return slot.get().map(|filled| (index, filled));
                    }
                }
            }
            None
        }
        pub fn iter(&self) -> impl Iterator<Item = &MetricSlot> {
            self.slots.iter().map_while(|slot| slot.get())
        }
    }
}

impl std::fmt::Debug for PluginMetrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PluginMetrics")
            .field("registered", &self.slots.iter().count())
            .finish()
    }
}

impl PluginMetrics {
    pub fn values(&self) -> Vec<PluginMetricValue> {
        self.slots
            .iter()
            .map(|slot| {
                let raw = slot.value.load(Ordering::Relaxed);
                let value = match slot.kind {
                    PluginMetricKind::Gauge => f64::from_bits(raw),
                    _ => raw as f64,
                };
                let histogram = slot.histogram.as_ref().map(|histogram| {
                    let histogram = histogram
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner());
                    (
                        histogram.len(),
                        histogram.value_at_quantile(0.5),
                        histogram.value_at_quantile(0.99),
                        histogram.max(),
                    )
                });
                PluginMetricValue {
                    name: slot.name.clone(),
                    help: slot.help.clone(),
                    kind: slot.kind,
                    value,
                    histogram,
                }
            })
            .collect()
    }

    fn register(&self, kind: PluginMetricKind, name: &str, help: &str) -> Option<u32> {
        let (index, slot) = self.slots.find_or_insert(name, || MetricSlot {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            value: AtomicU64::new(if kind == PluginMetricKind::Gauge {
                0f64.to_bits()
            } else {
                0
            }),
            histogram: (kind == PluginMetricKind::Histogram)
                .then(|| Histogram::new(3).ok().map(Mutex::new))
                .flatten(),
        })?;
        // The same name registered again with another kind is refused.
        (slot.kind == kind).then_some(index as u32 + 1)
    }

    fn slot(&self, metric_id: u32) -> Option<&MetricSlot> {
        self.slots.get((metric_id as usize).checked_sub(1)?)
    }
}

/// What a sink instance's callbacks reach through `host_data`.
pub struct HostContext {
    pub sink_name: String,
    pub registry: Option<Arc<SymbolRegistry>>,
    pub metrics: Arc<PluginMetrics>,
}

/// A callback table and its context, with stable addresses for the instance's life.
pub struct HostBinding {
    table: Box<Host>,
    _context: Box<HostContext>,
}

// SAFETY: the table's only pointer is to the boxed context, owned alongside it and only read
// (through thread-safe callbacks); moving the binding between threads moves neither box.
unsafe impl Send for HostBinding {}

impl HostBinding {
    pub fn new(context: HostContext) -> HostBinding {
        let context = Box::new(context);
        let host_data = (&*context as *const HostContext)
            .cast_mut()
            .cast::<c_void>();
        let table = Box::new(Host {
            struct_size: HOST_SIZE_V1_0,
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            host_data,
            log: Some(host_log),
            symbol_name: Some(host_symbol_name),
            venue_name: Some(host_venue_name),
            metric_register: Some(host_metric_register),
            counter_add: Some(host_counter_add),
            gauge_set: Some(host_gauge_set),
            histogram_record: Some(host_histogram_record),
            clock_ns: Some(host_clock_ns),
        });
        HostBinding {
            table,
            _context: context,
        }
    }

    /// The pointer passed to `create`; valid while the binding lives.
    pub fn table(&self) -> *const Host {
        &*self.table
    }
}

/// # Safety
/// `host_data` must be the pointer a [`HostBinding`] put in its table, and the binding alive.
unsafe fn context<'a>(host_data: *mut c_void) -> Option<&'a HostContext> {
    // SAFETY: per the contract, null or a live `HostContext`.
    unsafe { host_data.cast::<HostContext>().cast_const().as_ref() }
}

/// # Safety
/// `ptr` must be null or point at `len` readable bytes.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Copies `name` into the plugin's buffer; returns the full length (the ABI's contract).
///
/// # Safety
/// `out` must be null or writable for `capacity` bytes.
unsafe fn copy_name(name: &[u8], out: *mut u8, capacity: usize) -> usize {
    if !out.is_null() {
        let count = name.len().min(capacity);
        // SAFETY: `out` is writable for `capacity` >= `count` bytes and cannot overlap `name`
        // (host memory).
        unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), out, count) };
    }
    name.len()
}

unsafe extern "C" fn host_log(host_data: *mut c_void, level: u32, text: *const u8, len: usize) {
    // SAFETY: the plugin passes back the table's own host_data and a (ptr, len) it owns.
    let (Some(context), text) = (unsafe { context(host_data) }, unsafe {
        bytes(text, len.min(MAX_LOG_BYTES))
    }) else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let sink = context.sink_name.as_str();
    match level {
        LOG_ERROR => tracing::error!(target: "tickflow::plugin", sink, "{text}"),
        LOG_WARN => tracing::warn!(target: "tickflow::plugin", sink, "{text}"),
        LOG_INFO => tracing::info!(target: "tickflow::plugin", sink, "{text}"),
        LOG_DEBUG => tracing::debug!(target: "tickflow::plugin", sink, "{text}"),
        _ => tracing::trace!(target: "tickflow::plugin", sink, "{text}"),
    }
}

unsafe extern "C" fn host_symbol_name(
    host_data: *mut c_void,
    symbol_id: u32,
    out: *mut u8,
    capacity: usize,
) -> usize {
    // SAFETY: the plugin passes back the table's own host_data.
    let Some(context) = (unsafe { context(host_data) }) else {
        return 0;
    };
    let Some(name) = context
        .registry
        .as_ref()
        .and_then(|registry| registry.name(SymbolId(symbol_id)))
    else {
        return 0;
    };
    // SAFETY: the plugin passes a buffer writable for `capacity` bytes.
    unsafe { copy_name(name.as_str().as_bytes(), out, capacity) }
}

unsafe extern "C" fn host_venue_name(
    _host_data: *mut c_void,
    venue_id: u16,
    out: *mut u8,
    capacity: usize,
) -> usize {
    let Some(venue) = Venue::from_id(VenueId(venue_id)) else {
        return 0;
    };
    // SAFETY: the plugin passes a buffer writable for `capacity` bytes.
    unsafe { copy_name(venue.name().as_bytes(), out, capacity) }
}

fn metric_name_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name[0].is_ascii_lowercase()
        && name
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'_')
}

unsafe extern "C" fn host_metric_register(
    host_data: *mut c_void,
    kind: u32,
    name: *const u8,
    name_len: usize,
    help: *const u8,
    help_len: usize,
) -> u32 {
    // SAFETY: the plugin passes back the table's own host_data and (ptr, len) pairs it owns.
    let (Some(context), name, help) = (
        unsafe { context(host_data) },
        unsafe { bytes(name, name_len) },
        unsafe { bytes(help, help_len.min(512)) },
    ) else {
        return 0;
    };
    let Some(kind) = PluginMetricKind::from_abi(kind) else {
        return 0;
    };
    if !metric_name_ok(name) {
        return 0;
    }
    // Checked ASCII above.
    let name = String::from_utf8_lossy(name);
    let help = String::from_utf8_lossy(help).replace('\n', " ");
    context.metrics.register(kind, &name, &help).unwrap_or(0)
}

unsafe extern "C" fn host_counter_add(host_data: *mut c_void, metric_id: u32, delta: u64) {
    // SAFETY: the plugin passes back the table's own host_data.
    let slot = unsafe { context(host_data) }.and_then(|context| context.metrics.slot(metric_id));
    if let Some(slot) = slot.filter(|slot| slot.kind == PluginMetricKind::Counter) {
        slot.value.fetch_add(delta, Ordering::Relaxed);
    }
}

unsafe extern "C" fn host_gauge_set(host_data: *mut c_void, metric_id: u32, value: f64) {
    // SAFETY: the plugin passes back the table's own host_data.
    let slot = unsafe { context(host_data) }.and_then(|context| context.metrics.slot(metric_id));
    if let Some(slot) = slot.filter(|slot| slot.kind == PluginMetricKind::Gauge) {
        slot.value.store(value.to_bits(), Ordering::Relaxed);
    }
}

unsafe extern "C" fn host_histogram_record(host_data: *mut c_void, metric_id: u32, value: u64) {
    // SAFETY: the plugin passes back the table's own host_data.
    let slot = unsafe { context(host_data) }.and_then(|context| context.metrics.slot(metric_id));
    if let Some((slot, histogram)) =
        slot.and_then(|slot| slot.histogram.as_ref().map(|histogram| (slot, histogram)))
    {
        let mut histogram = histogram
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        histogram.saturating_record(value);
        slot.value.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe extern "C" fn host_clock_ns(_host_data: *mut c_void) -> i64 {
    crate::record::now_ns()
}
