//! The host side of the ABI's callback table: logging, symbol and venue names, plugin metrics,
//! the engine clock and published endpoints (ABI 1.2), one table per running sink, never freed
//! (see [`HostBinding`]).
//!
//! Every callback is `extern "C"`, thread-safe and never panics (a panic here would abort the
//! process: nothing may unwind across the ABI in either direction).

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use hdrhistogram::Histogram;
use tickflow_sdk::abi::{
    ABI_MAJOR, ABI_MINOR, HOST_SIZE_V1_2, Host, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN,
    METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM,
};
use tickflow_sdk::records::{SymbolId, VenueId};

use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;

use crate::engine_metrics::EngineMetricsSource;

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

    /// A histogram metric's cumulative counts at `bounds`, its count and its sum (approximated
    /// from the mean), for `metrics_snapshot`. None when `name` is not a histogram.
    pub(crate) fn histogram_buckets<const N: usize>(
        &self,
        name: &str,
        bounds: &[f64; N],
    ) -> Option<([u64; N], u64, f64)> {
        let slot = self.slots.iter().find(|slot| slot.name == name)?;
        let histogram = slot
            .histogram
            .as_ref()?
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = histogram.len();
        if count == 0 {
            return Some(([0; N], 0, 0.0));
        }
        let cumulative =
            std::array::from_fn(|index| histogram.count_between(0, bounds[index] as u64));
        Some((cumulative, count, histogram.mean() * count as f64))
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

/// The metrics of a detached context (an ended sink, a test): none.
pub(crate) struct NoMetrics;

impl EngineMetricsSource for NoMetrics {
    fn visit(&self, _out: &mut dyn FnMut(&crate::engine_metrics::Sample<'_>)) {}
}

/// Most endpoints one sink may publish (ABI 1.2 `publish_endpoint`).
pub const MAX_PLUGIN_ENDPOINTS: usize = 16;
/// Longest endpoint name taken from a plugin.
const MAX_ENDPOINT_NAME_BYTES: usize = 64;
/// Longest endpoint URL taken from a plugin.
const MAX_ENDPOINT_URL_BYTES: usize = 512;

/// The endpoints one sink published (`"ws"` → `"ws://127.0.0.1:8081/ws"`), at most
/// [`MAX_PLUGIN_ENDPOINTS`]; a name published again replaces its URL. Anything else (a bad name
/// or URL, a 17th name) is refused and counted.
#[derive(Debug, Default)]
pub struct PluginEndpoints {
    entries: Mutex<Vec<(String, String)>>,
    refused: AtomicU64,
}

impl PluginEndpoints {
    /// `(name, url)` in the order first published.
    pub fn list(&self) -> Vec<(String, String)> {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Publications refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn publish(&self, name: &[u8], url: &[u8]) -> bool {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_ENDPOINT_NAME_BYTES
            && name.iter().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_.-".contains(byte)
            });
        let url_ok = !url.is_empty()
            && url.len() <= MAX_ENDPOINT_URL_BYTES
            && url.iter().all(|byte| byte.is_ascii_graphic());
        if !name_ok || !url_ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Checked ASCII above.
        let name = String::from_utf8_lossy(name).into_owned();
        let url = String::from_utf8_lossy(url).into_owned();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(entry) = entries.iter_mut().find(|(existing, _)| *existing == name) {
            entry.1 = url;
            return true;
        }
        if entries.len() >= MAX_PLUGIN_ENDPOINTS {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        entries.push((name, url));
        true
    }
}

/// What a sink instance's callbacks reach through `host_data`.
pub struct HostContext {
    pub sink_name: String,
    pub registry: Option<Arc<SymbolRegistry>>,
    pub metrics: Arc<PluginMetrics>,
    pub endpoints: Arc<PluginEndpoints>,
    /// Every sink's and the engine's metrics, for `metrics_snapshot` (ABI 1.2): the host's
    /// `MetricsHub`.
    pub hub: Arc<dyn EngineMetricsSource>,
}

/// A callback table and the context its `host_data` points at, at a fixed address for the whole
/// process. A plugin may keep its `HostHandle` (a copy of the table pointer) anywhere, including
/// threads and globals that outlive its instance and its runner, so a binding is never freed:
/// it is leaked on purpose, like the libraries themselves. A binding whose sink ended goes back
/// to a process-wide free list, with a detached context, and is reused by the next sink started,
/// so the leak is bounded by the most sinks ever running at once (at most `MAX_SINKS` per host).
pub struct HostBinding {
    table: Host,
    /// Swapped when the binding is reused; callbacks read it without locks.
    context: ArcSwap<HostContext>,
}

// SAFETY: the table's only pointer is `host_data`, which points at the binding's own `context`
// (an `ArcSwap`, itself Send + Sync); the binding is never freed nor moved (it is leaked), and
// every callback is thread-safe.
unsafe impl Send for HostBinding {}
// SAFETY: as above; nothing in the table is written after construction.
unsafe impl Sync for HostBinding {}

/// Bindings whose sink ended, ready for reuse.
static FREE_BINDINGS: Mutex<Vec<&'static HostBinding>> = Mutex::new(Vec::new());

/// One sink's use of a leaked [`HostBinding`]; dropping it (when the runner ends) detaches the
/// binding from the sink and returns it to the free list.
pub struct BindingLease {
    binding: &'static HostBinding,
}

impl BindingLease {
    /// Takes a free binding, or leaks a new one, and points it at `context`.
    pub fn acquire(context: HostContext) -> BindingLease {
        let context = Arc::new(context);
        let reused = FREE_BINDINGS
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .pop();
        let binding = match reused {
            Some(binding) => {
                binding.context.store(context);
                binding
            }
            None => HostBinding::leak(context),
        };
        BindingLease { binding }
    }

    /// The pointer passed to `create`; valid for the whole process.
    pub fn table(&self) -> *const Host {
        &self.binding.table
    }
}

impl Drop for BindingLease {
    fn drop(&mut self) {
        // A handle the plugin kept still works, but reaches nothing of the ended sink.
        let ended = self.binding.context.load().sink_name.clone();
        self.binding.context.store(Arc::new(HostContext {
            sink_name: format!("{ended} (ended)"),
            registry: None,
            metrics: Arc::new(PluginMetrics::default()),
            endpoints: Arc::new(PluginEndpoints::default()),
            hub: Arc::new(NoMetrics),
        }));
        FREE_BINDINGS
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(self.binding);
    }
}

impl HostBinding {
    fn leak(context: Arc<HostContext>) -> &'static HostBinding {
        let raw = Box::into_raw(Box::new(HostBinding {
            table: Host {
                struct_size: HOST_SIZE_V1_2,
                abi_major: ABI_MAJOR,
                abi_minor: ABI_MINOR,
                host_data: std::ptr::null_mut(),
                log: Some(host_log),
                symbol_name: Some(host_symbol_name),
                venue_name: Some(host_venue_name),
                metric_register: Some(host_metric_register),
                counter_add: Some(host_counter_add),
                gauge_set: Some(host_gauge_set),
                histogram_record: Some(host_histogram_record),
                clock_ns: Some(host_clock_ns),
                publish_endpoint: Some(host_publish_endpoint),
                metrics_snapshot: Some(host_metrics_snapshot),
            },
            context: ArcSwap::new(context),
        }));
        // SAFETY: `raw` comes from `Box::into_raw` just above and is never freed; `host_data`
        // is derived from the raw pointer (not from a reference later invalidated) and points
        // at the binding's own context, which never moves.
        unsafe {
            (*raw).table.host_data = std::ptr::addr_of_mut!((*raw).context).cast::<c_void>();
            &*raw
        }
    }
}

/// # Safety
/// `host_data` must be null or the pointer a [`HostBinding`] put in its table (bindings live for
/// the whole process).
unsafe fn context(host_data: *mut c_void) -> Option<arc_swap::Guard<Arc<HostContext>>> {
    // SAFETY: per the contract, null or a leaked binding's `ArcSwap<HostContext>`.
    let context = unsafe {
        host_data
            .cast::<ArcSwap<HostContext>>()
            .cast_const()
            .as_ref()
    }?;
    Some(context.load())
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
    let Some(context) = (unsafe { context(host_data) }) else {
        return;
    };
    let slot = context.metrics.slot(metric_id);
    if let Some(slot) = slot.filter(|slot| slot.kind == PluginMetricKind::Counter) {
        slot.value.fetch_add(delta, Ordering::Relaxed);
    }
}

unsafe extern "C" fn host_gauge_set(host_data: *mut c_void, metric_id: u32, value: f64) {
    // SAFETY: the plugin passes back the table's own host_data.
    let Some(context) = (unsafe { context(host_data) }) else {
        return;
    };
    let slot = context.metrics.slot(metric_id);
    if let Some(slot) = slot.filter(|slot| slot.kind == PluginMetricKind::Gauge) {
        slot.value.store(value.to_bits(), Ordering::Relaxed);
    }
}

unsafe extern "C" fn host_histogram_record(host_data: *mut c_void, metric_id: u32, value: u64) {
    // SAFETY: the plugin passes back the table's own host_data.
    let Some(context) = (unsafe { context(host_data) }) else {
        return;
    };
    let slot = context.metrics.slot(metric_id);
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
    tickflow_core::record::now_ns()
}

unsafe extern "C" fn host_publish_endpoint(
    host_data: *mut c_void,
    name: *const u8,
    name_len: usize,
    url: *const u8,
    url_len: usize,
) -> u32 {
    // SAFETY: the plugin passes back the table's own host_data and (ptr, len) pairs it owns;
    // lengths past the limits are refused without reading more than one byte beyond them.
    let (Some(context), name, url) = (
        unsafe { context(host_data) },
        unsafe { bytes(name, name_len.min(MAX_ENDPOINT_NAME_BYTES + 1)) },
        unsafe { bytes(url, url_len.min(MAX_ENDPOINT_URL_BYTES + 1)) },
    ) else {
        return 0;
    };
    if context.endpoints.publish(name, url) {
        tracing::info!(
            target: "tickflow::plugin",
            sink = %context.sink_name,
            endpoint = %String::from_utf8_lossy(name),
            url = %String::from_utf8_lossy(url),
            "sink published an endpoint"
        );
        1
    } else {
        tracing::warn!(
            target: "tickflow::plugin",
            sink = %context.sink_name,
            name_len,
            url_len,
            "sink endpoint refused (name: 1-64 bytes of [a-z0-9_.-]; url: 1-512 printable bytes; at most 16 per sink)"
        );
        0
    }
}

unsafe extern "C" fn host_metrics_snapshot(
    host_data: *mut c_void,
    visit: Option<tickflow_sdk::abi::MetricVisitFn>,
    visit_ctx: *mut c_void,
) -> u32 {
    // SAFETY: the plugin passes back the table's own host_data.
    let (Some(context), Some(visit)) = (unsafe { context(host_data) }, visit) else {
        return 0;
    };
    // A panic in the engine's source would unwind through the plugin's frames: stop it here.
    let hub = Arc::clone(&context.hub);
    drop(context);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the plugin passes its own visitor and context (ABI contract).
        unsafe { crate::engine_metrics::visit_into_plugin(hub.as_ref(), visit, visit_ctx) }
    }))
    .unwrap_or_else(|_| {
        tracing::error!(
            "metrics_snapshot panicked in the engine (a bug); the snapshot is cut short"
        );
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(name: &str) -> (HostContext, Arc<PluginMetrics>) {
        let metrics = Arc::new(PluginMetrics::default());
        (
            HostContext {
                sink_name: name.to_string(),
                registry: None,
                metrics: metrics.clone(),
                endpoints: Arc::new(PluginEndpoints::default()),
                hub: Arc::new(NoMetrics),
            },
            metrics,
        )
    }

    fn publish(table: *const Host, name: &[u8], url: &[u8]) -> u32 {
        // SAFETY: host tables are never freed; name and url are valid for the call.
        unsafe {
            let table = &*table;
            (table
                .publish_endpoint
                .expect("the host fills every callback"))(
                table.host_data,
                name.as_ptr(),
                name.len(),
                url.as_ptr(),
                url.len(),
            )
        }
    }

    #[test]
    fn published_endpoints_are_kept_bounded_and_refusals_counted() {
        let endpoints = Arc::new(PluginEndpoints::default());
        let lease = BindingLease::acquire(HostContext {
            sink_name: "ws".to_string(),
            registry: None,
            metrics: Arc::new(PluginMetrics::default()),
            endpoints: endpoints.clone(),
            hub: Arc::new(NoMetrics),
        });
        let table = lease.table();
        // SAFETY: the table is alive (leaked).
        assert_eq!(unsafe { (*table).struct_size }, HOST_SIZE_V1_2);
        assert_eq!(publish(table, b"ws", b"ws://127.0.0.1:8081/ws"), 1);
        // Published again: replaced, not added.
        assert_eq!(publish(table, b"ws", b"ws://127.0.0.1:9000/ws"), 1);
        assert_eq!(
            endpoints.list(),
            vec![("ws".to_string(), "ws://127.0.0.1:9000/ws".to_string())]
        );
        // Bad names and URLs are refused and counted.
        assert_eq!(publish(table, b"", b"ws://x"), 0);
        assert_eq!(publish(table, b"Bad Name", b"ws://x"), 0);
        assert_eq!(publish(table, &[b'a'; 65], b"ws://x"), 0);
        assert_eq!(publish(table, b"ok", b""), 0);
        assert_eq!(publish(table, b"ok", b"ws://has space"), 0);
        assert_eq!(publish(table, b"ok", &[b'u'; 513]), 0);
        assert_eq!(endpoints.refused(), 6);
        // At most 16 names.
        for index in 1..MAX_PLUGIN_ENDPOINTS {
            let name = format!("e{index}");
            assert_eq!(publish(table, name.as_bytes(), b"ws://x"), 1);
        }
        assert_eq!(endpoints.list().len(), MAX_PLUGIN_ENDPOINTS);
        assert_eq!(publish(table, b"one_too_many", b"ws://x"), 0);
        assert_eq!(endpoints.refused(), 7);
        assert_eq!(endpoints.list().len(), MAX_PLUGIN_ENDPOINTS);
    }

    fn register_counter(table: *const Host, name: &str) -> u32 {
        // SAFETY: host tables are never freed; name is valid for the call.
        unsafe {
            let table = &*table;
            (table
                .metric_register
                .expect("the host fills every callback"))(
                table.host_data,
                METRIC_COUNTER,
                name.as_ptr(),
                name.len(),
                std::ptr::null(),
                0,
            )
        }
    }

    /// Two samples: one with too many labels, one with an overlong label value.
    struct TwoSamples;

    impl EngineMetricsSource for TwoSamples {
        fn visit(&self, out: &mut dyn FnMut(&crate::engine_metrics::Sample<'_>)) {
            let many: Vec<(&str, &str)> = (0..10).map(|_| ("venue", "binance")).collect();
            out(&crate::engine_metrics::Sample::counter(
                "tickflow_test_total",
                "help",
                &many,
                7,
            ));
            let long = "x".repeat(600);
            out(&crate::engine_metrics::Sample::gauge(
                "tickflow_test_gauge",
                "help",
                &[("long", long.as_str())],
                1.5,
            ));
        }
    }

    /// (family, kind, label count, longest label value, value) per visited sample.
    type Seen = Vec<(String, u32, u32, usize, f64)>;

    unsafe extern "C" fn record_sample(
        visit_ctx: *mut c_void,
        sample: *const tickflow_sdk::abi::MetricSample,
    ) {
        // SAFETY: the test passes its own `Seen` and the host a sample valid for the call.
        let (seen, sample) = unsafe { (&mut *visit_ctx.cast::<Seen>(), &*sample) };
        // SAFETY: the host passes label_count labels and valid (ptr, len) strings.
        let labels =
            unsafe { std::slice::from_raw_parts(sample.labels, sample.label_count as usize) };
        // SAFETY: as above.
        let family =
            unsafe { std::slice::from_raw_parts(sample.family.ptr, sample.family.len).to_vec() };
        seen.push((
            String::from_utf8(family).expect("UTF-8"),
            sample.kind,
            sample.label_count,
            labels
                .iter()
                .map(|label| label.value.len)
                .max()
                .unwrap_or(0),
            sample.value,
        ));
    }

    #[test]
    fn metrics_snapshot_visits_every_sample_with_labels_and_texts_cut_to_their_bounds() {
        let lease = BindingLease::acquire(HostContext {
            sink_name: "exporter".to_string(),
            registry: None,
            metrics: Arc::new(PluginMetrics::default()),
            endpoints: Arc::new(PluginEndpoints::default()),
            hub: Arc::new(TwoSamples),
        });
        let mut seen: Seen = Vec::new();
        // SAFETY: host tables are never freed; `seen` outlives the call.
        let visited = unsafe {
            let table = &*lease.table();
            (table
                .metrics_snapshot
                .expect("the host fills every callback"))(
                table.host_data,
                Some(record_sample),
                (&mut seen as *mut Seen).cast::<c_void>(),
            )
        };
        assert_eq!(visited, 2);
        assert_eq!(
            seen,
            vec![
                (
                    "tickflow_test_total".to_string(),
                    METRIC_COUNTER,
                    crate::engine_metrics::MAX_LABELS as u32,
                    7,
                    7.0
                ),
                (
                    "tickflow_test_gauge".to_string(),
                    METRIC_GAUGE,
                    1,
                    tickflow_sdk::abi::METRIC_TEXT_MAX_BYTES,
                    1.5
                ),
            ]
        );
    }

    #[test]
    fn a_table_kept_past_its_sink_stays_valid_and_is_reused_by_the_next_sink() {
        let (first_context, first_metrics) = context("first");
        let lease = BindingLease::acquire(first_context);
        let kept_table = lease.table();
        assert_eq!(register_counter(kept_table, "before_end"), 1);
        drop(lease);
        // The sink ended; a plugin that kept the table may still call it: it reaches a detached
        // context, not the ended sink's metrics, and not freed memory.
        assert_eq!(register_counter(kept_table, "after_end"), 1);
        assert_eq!(first_metrics.values().len(), 1);
        // The next sink reuses a free binding instead of leaking another (tests run in
        // parallel, so another test may have taken this one: then a fresh one is fine too).
        let (second_context, second_metrics) = context("second");
        let second = BindingLease::acquire(second_context);
        assert_eq!(register_counter(second.table(), "second_metric"), 1);
        assert_eq!(second_metrics.values()[0].name, "second_metric");
    }
}
