//! The safe Rust side of the ABI: the [`Sink`] trait a plugin implements, the [`HostHandle`] it
//! talks to the engine through, and the glue [`crate::export_sink!`] instantiates.
//!
//! The glue is the only place a Rust plugin touches raw pointers. It catches every panic
//! (`catch_unwind`) and turns it into [`STATUS_PANIC`]: nothing unwinds into the host.

use core::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::abi::*;
use crate::records::{
    GapEvent, OpportunityEvent, Quote, RecordKind, SpreadSample, SymbolId, Telemetry, Trade,
    VenueId, VenueStatus,
};

/// A batch of records borrowed from the host for one `on_batch` call.
#[derive(Clone, Copy, Debug)]
pub enum Batch<'a> {
    Quotes(&'a [Quote]),
    Trades(&'a [Trade]),
    Spreads(&'a [SpreadSample]),
    Opportunities(&'a [OpportunityEvent]),
    Gaps(&'a [GapEvent]),
    Telemetry(&'a [Telemetry]),
    /// ABI 1.3.
    VenueStatus(&'a [VenueStatus]),
}

impl Batch<'_> {
    pub fn kind(&self) -> RecordKind {
        match self {
            Batch::Quotes(_) => RecordKind::Quote,
            Batch::Trades(_) => RecordKind::Trade,
            Batch::Spreads(_) => RecordKind::SpreadSample,
            Batch::Opportunities(_) => RecordKind::Opportunity,
            Batch::Gaps(_) => RecordKind::Gap,
            Batch::Telemetry(_) => RecordKind::Telemetry,
            Batch::VenueStatus(_) => RecordKind::VenueStatus,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Batch::Quotes(records) => records.len(),
            Batch::Trades(records) => records.len(),
            Batch::Spreads(records) => records.len(),
            Batch::Opportunities(records) => records.len(),
            Batch::Gaps(records) => records.len(),
            Batch::Telemetry(records) => records.len(),
            Batch::VenueStatus(records) => records.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reinterprets a raw `(kind, records, len)` triple from the ABI. None for an unknown kind
    /// or a null `records` with `len > 0` (a broken caller).
    ///
    /// # Safety
    /// `records` must point at `len` valid, aligned records of the layout `kind` names, alive and
    /// unchanged for `'a` (or `len` must be 0).
    pub unsafe fn from_raw<'a>(kind: u32, records: *const c_void, len: usize) -> Option<Batch<'a>> {
        let kind = RecordKind::from_u32(kind)?;
        if records.is_null() && len > 0 {
            return None;
        }
        if len == 0 {
            return Some(match kind {
                RecordKind::Quote => Batch::Quotes(&[]),
                RecordKind::Trade => Batch::Trades(&[]),
                RecordKind::SpreadSample => Batch::Spreads(&[]),
                RecordKind::Opportunity => Batch::Opportunities(&[]),
                RecordKind::Gap => Batch::Gaps(&[]),
                RecordKind::Telemetry => Batch::Telemetry(&[]),
                RecordKind::VenueStatus => Batch::VenueStatus(&[]),
            });
        }
        // SAFETY: the caller guarantees `records` holds `len` records of `kind`'s layout for 'a.
        unsafe {
            Some(match kind {
                RecordKind::Quote => {
                    Batch::Quotes(core::slice::from_raw_parts(records.cast(), len))
                }
                RecordKind::Trade => {
                    Batch::Trades(core::slice::from_raw_parts(records.cast(), len))
                }
                RecordKind::SpreadSample => {
                    Batch::Spreads(core::slice::from_raw_parts(records.cast(), len))
                }
                RecordKind::Opportunity => {
                    Batch::Opportunities(core::slice::from_raw_parts(records.cast(), len))
                }
                RecordKind::Gap => Batch::Gaps(core::slice::from_raw_parts(records.cast(), len)),
                RecordKind::Telemetry => {
                    Batch::Telemetry(core::slice::from_raw_parts(records.cast(), len))
                }
                RecordKind::VenueStatus => {
                    Batch::VenueStatus(core::slice::from_raw_parts(records.cast(), len))
                }
            })
        }
    }

    /// The `(kind, records, len)` triple to pass through the ABI.
    pub fn as_raw(&self) -> (u32, *const c_void, usize) {
        let (records, len): (*const c_void, usize) = match self {
            Batch::Quotes(records) => (records.as_ptr().cast(), records.len()),
            Batch::Trades(records) => (records.as_ptr().cast(), records.len()),
            Batch::Spreads(records) => (records.as_ptr().cast(), records.len()),
            Batch::Opportunities(records) => (records.as_ptr().cast(), records.len()),
            Batch::Gaps(records) => (records.as_ptr().cast(), records.len()),
            Batch::Telemetry(records) => (records.as_ptr().cast(), records.len()),
            Batch::VenueStatus(records) => (records.as_ptr().cast(), records.len()),
        };
        (self.kind() as u32, records, len)
    }
}

/// Why a sink call failed; the message is logged through the host.
#[derive(Debug)]
pub enum SinkError {
    /// The configuration is unusable (only from `create`): the host reports it and does not retry.
    Config(String),
    /// Anything else: the host counts it and restarts the instance if failures keep coming.
    Failed(String),
}

impl SinkError {
    pub fn failed(message: impl std::fmt::Display) -> SinkError {
        SinkError::Failed(message.to_string())
    }
    pub fn config(message: impl std::fmt::Display) -> SinkError {
        SinkError::Config(message.to_string())
    }
    fn status(&self) -> Status {
        match self {
            SinkError::Config(_) => STATUS_INVALID_CONFIG,
            SinkError::Failed(_) => STATUS_ERROR,
        }
    }
    fn message(&self) -> &str {
        match self {
            SinkError::Config(message) | SinkError::Failed(message) => message,
        }
    }
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkError::Config(message) => write!(formatter, "invalid config: {message}"),
            SinkError::Failed(message) => formatter.write_str(message),
        }
    }
}

impl std::error::Error for SinkError {}

impl From<std::io::Error> for SinkError {
    fn from(error: std::io::Error) -> SinkError {
        SinkError::Failed(error.to_string())
    }
}

/// A sink with no configuration keys (an empty or absent `config` table).
#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// A sink plugin. The host calls one instance from one thread at a time (its runner thread), so
/// `&mut self` is all the synchronization an instance needs.
pub trait Sink: Sized + 'static {
    /// Parsed from the TOML text of the sink's `config` table (`#[derive(Deserialize)]`).
    type Config: serde::de::DeserializeOwned;
    /// The plugin's name, as `plugin inspect` and the logs show it.
    const NAME: &'static str;
    /// The plugin's own version.
    const VERSION: &'static str;
    /// The record kinds it wants; the host sends no others.
    const RECORD_KINDS: &'static [RecordKind];

    fn create(host: HostHandle, config: Self::Config) -> Result<Self, SinkError>;
    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn on_tick(&mut self, _now_ns: i64) -> Result<(), SinkError> {
        Ok(())
    }
    fn stats(&self) -> PluginStats {
        PluginStats::default()
    }
    /// The most memory one instance built from `config` will ever hold, in bytes (buffers, open
    /// writers, caches), shown in the engine's memory budget and counted in its total (ABI 1.2,
    /// the descriptor's `memory_bound`). Called without an instance, before `create`, from any
    /// thread. The default states no bound (`Ok(None)`). An `Err` reports the config as invalid
    /// (`TF_STATUS_INVALID_CONFIG`); `create` is where its reason is logged.
    fn memory_bound_bytes(_config: &Self::Config) -> Result<Option<u64>, SinkError> {
        Ok(None)
    }
}

/// The engine's callbacks. Cheap to copy. The engine never frees a host table (it lives for the
/// whole process, like the plugin's library), so a handle stays valid even if a plugin keeps it
/// past its instance; once the sink has ended, its calls reach nothing of that sink (log lines
/// are marked "(ended)", metric updates go nowhere). Every callback is thread-safe, so a handle
/// may be moved to threads the plugin starts (which it should join in `Drop`).
#[derive(Clone, Copy, Debug)]
pub struct HostHandle {
    raw: *const Host,
}

// SAFETY: the host never frees the table (it lives for the whole process) and every callback
// is thread-safe (see `Host`).
unsafe impl Send for HostHandle {}
// SAFETY: as above.
unsafe impl Sync for HostHandle {}

/// Log levels of [`HostHandle::log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error = LOG_ERROR as isize,
    Warn = LOG_WARN as isize,
    Info = LOG_INFO as isize,
    Debug = LOG_DEBUG as isize,
    Trace = LOG_TRACE as isize,
}

/// A metric registered with the host; updates go to the engine's metrics beside its own.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    host: HostHandle,
    id: u32,
}

impl Metric {
    /// Counter: add `delta`.
    pub fn add(&self, delta: u64) {
        if let Some(table) = self.host.table_with(offset_end_counter_add()) {
            if let Some(counter_add) = table.counter_add {
                // SAFETY: the table is never freed; the host data is its own.
                unsafe { counter_add(table.host_data, self.id, delta) }
            }
        }
    }
    /// Gauge: set to `value`.
    pub fn set(&self, value: f64) {
        if let Some(table) = self.host.table_with(offset_end_gauge_set()) {
            if let Some(gauge_set) = table.gauge_set {
                // SAFETY: as in `add`.
                unsafe { gauge_set(table.host_data, self.id, value) }
            }
        }
    }
    /// Histogram: record `value`.
    pub fn record(&self, value: u64) {
        if let Some(table) = self.host.table_with(offset_end_histogram_record()) {
            if let Some(histogram_record) = table.histogram_record {
                // SAFETY: as in `add`.
                unsafe { histogram_record(table.host_data, self.id, value) }
            }
        }
    }
}

const fn offset_end_counter_add() -> usize {
    core::mem::offset_of!(Host, counter_add) + 8
}
const fn offset_end_gauge_set() -> usize {
    core::mem::offset_of!(Host, gauge_set) + 8
}
const fn offset_end_histogram_record() -> usize {
    core::mem::offset_of!(Host, histogram_record) + 8
}

/// Longest name the host can return for a symbol or venue.
const NAME_CAPACITY_BYTES: usize = 64;

impl HostHandle {
    /// Wraps the raw table passed to `create`.
    ///
    /// # Safety
    /// `raw` must be null or point at a host table valid for as long as the handle is used.
    pub unsafe fn from_raw(raw: *const Host) -> HostHandle {
        HostHandle { raw }
    }

    /// A handle with no host behind it: logs and metrics go nowhere, names are unknown, the clock
    /// is the system clock. For testing a sink without the engine.
    pub fn detached() -> HostHandle {
        HostHandle {
            raw: std::ptr::null(),
        }
    }

    /// The table, if it is long enough to hold a field ending at `end_offset`.
    fn table_with(&self, end_offset: usize) -> Option<&Host> {
        if self.raw.is_null() {
            return None;
        }
        // SAFETY: non-null, and the host never frees the table.
        let table = unsafe { &*self.raw };
        (table.struct_size as usize >= end_offset).then_some(table)
    }

    pub fn log(&self, level: LogLevel, text: &str) {
        let end = core::mem::offset_of!(Host, log) + 8;
        if let Some(table) = self.table_with(end) {
            if let Some(log) = table.log {
                // SAFETY: `text` is valid for the call; the table is alive.
                unsafe { log(table.host_data, level as u32, text.as_ptr(), text.len()) }
            }
        }
    }
    pub fn error(&self, text: &str) {
        self.log(LogLevel::Error, text);
    }
    pub fn warn(&self, text: &str) {
        self.log(LogLevel::Warn, text);
    }
    pub fn info(&self, text: &str) {
        self.log(LogLevel::Info, text);
    }

    /// The canonical name of a symbol (`BTC-USDT`), if the engine knows the id.
    pub fn symbol_name(&self, symbol_id: SymbolId) -> Option<String> {
        let end = core::mem::offset_of!(Host, symbol_name) + 8;
        let table = self.table_with(end)?;
        let symbol_name = table.symbol_name?;
        let mut buffer = [0u8; NAME_CAPACITY_BYTES];
        // SAFETY: `buffer` is writable for its length; the table is alive.
        let len = unsafe {
            symbol_name(
                table.host_data,
                symbol_id.0,
                buffer.as_mut_ptr(),
                buffer.len(),
            )
        };
        name_from_buffer(&buffer, len)
    }

    /// The name of a venue (`binance`), if the engine knows the id.
    pub fn venue_name(&self, venue_id: VenueId) -> Option<String> {
        let end = core::mem::offset_of!(Host, venue_name) + 8;
        let table = self.table_with(end)?;
        let venue_name = table.venue_name?;
        let mut buffer = [0u8; NAME_CAPACITY_BYTES];
        // SAFETY: `buffer` is writable for its length; the table is alive.
        let len = unsafe {
            venue_name(
                table.host_data,
                venue_id.0,
                buffer.as_mut_ptr(),
                buffer.len(),
            )
        };
        name_from_buffer(&buffer, len)
    }

    fn register(&self, kind: u32, name: &str, help: &str) -> Option<Metric> {
        let end = core::mem::offset_of!(Host, metric_register) + 8;
        let table = self.table_with(end)?;
        let metric_register = table.metric_register?;
        // SAFETY: name and help are valid for the call; the table is alive.
        let id = unsafe {
            metric_register(
                table.host_data,
                kind,
                name.as_ptr(),
                name.len(),
                help.as_ptr(),
                help.len(),
            )
        };
        (id != 0).then_some(Metric { host: *self, id })
    }
    /// Registers a counter (`None` when the host refused it: bad name or too many metrics).
    pub fn counter(&self, name: &str, help: &str) -> Option<Metric> {
        self.register(METRIC_COUNTER, name, help)
    }
    pub fn gauge(&self, name: &str, help: &str) -> Option<Metric> {
        self.register(METRIC_GAUGE, name, help)
    }
    pub fn histogram(&self, name: &str, help: &str) -> Option<Metric> {
        self.register(METRIC_HISTOGRAM, name, help)
    }

    /// Announces a named endpoint of this sink (`"ws"` → `"ws://127.0.0.1:8081/ws"`) so the
    /// engine's control plane can tell clients where to connect (ABI 1.2, `publish_endpoint`).
    /// Publishing a name again replaces its URL. `false` when the host refused it (a bad name or
    /// URL, more than 16 names) or is older than 1.2 or absent (`detached`).
    pub fn publish_endpoint(&self, name: &str, url: &str) -> bool {
        let end = core::mem::offset_of!(Host, publish_endpoint) + 8;
        let Some(table) = self.table_with(end) else {
            return false;
        };
        let Some(publish_endpoint) = table.publish_endpoint else {
            return false;
        };
        // SAFETY: name and url are valid for the call; the table is alive and long enough.
        let stored = unsafe {
            publish_endpoint(
                table.host_data,
                name.as_ptr(),
                name.len(),
                url.as_ptr(),
                url.len(),
            )
        };
        stored == 1
    }

    /// Visits every sample of the engine's metrics and of the metrics the running sinks
    /// registered (ABI 1.2, `metrics_snapshot`), in family order, on this thread; returns how
    /// many samples the host visited, or `None` when the host is older than 1.2 or absent
    /// (`detached`). A panic in `visit` stops the visits (the host is not unwound through) and
    /// is resumed once the host has returned.
    pub fn metrics_snapshot(&self, mut visit: impl FnMut(&MetricSampleView<'_>)) -> Option<u32> {
        let end = core::mem::offset_of!(Host, metrics_snapshot) + 8;
        let table = self.table_with(end)?;
        let metrics_snapshot = table.metrics_snapshot?;
        struct Visit<'v> {
            visit: &'v mut dyn FnMut(&MetricSampleView<'_>),
            panic: Option<Box<dyn std::any::Any + Send>>,
        }
        unsafe extern "C" fn trampoline(visit_ctx: *mut c_void, sample: *const MetricSample) {
            // SAFETY: `visit_ctx` is the `Visit` below, alive and not aliased during the call.
            let Some(state) = (unsafe { visit_ctx.cast::<Visit<'_>>().as_mut() }) else {
                return;
            };
            // SAFETY: the host passes a sample valid for this call (or null).
            let Some(sample) = (unsafe { sample.as_ref() }) else {
                return;
            };
            if state.panic.is_some() {
                return;
            }
            let view = MetricSampleView { raw: sample };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (state.visit)(&view))) {
                state.panic = Some(payload);
            }
        }
        let mut state = Visit {
            visit: &mut visit,
            panic: None,
        };
        // SAFETY: the table is alive and long enough; `state` outlives the call and the
        // trampoline never unwinds.
        let visited = unsafe {
            metrics_snapshot(
                table.host_data,
                Some(trampoline),
                (&mut state as *mut Visit<'_>).cast::<c_void>(),
            )
        };
        if let Some(payload) = state.panic {
            std::panic::resume_unwind(payload);
        }
        Some(visited)
    }

    /// The engine clock (ns since the Unix epoch); the system clock when there is no host.
    pub fn now_ns(&self) -> i64 {
        let end = core::mem::offset_of!(Host, clock_ns) + 8;
        if let Some(table) = self.table_with(end) {
            if let Some(clock_ns) = table.clock_ns {
                // SAFETY: the table is alive.
                return unsafe { clock_ns(table.host_data) };
            }
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as i64)
            .unwrap_or(0)
    }
}

/// A metric's kind, as [`MetricSampleView::kind`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One sample visited by [`HostHandle::metrics_snapshot`], borrowed for the visit.
#[derive(Clone, Copy, Debug)]
pub struct MetricSampleView<'a> {
    raw: &'a MetricSample,
}

/// # Safety
/// `text` must be null with length 0 or point at `len` readable bytes alive for `'a`.
unsafe fn borrowed_str<'a>(text: StrRef) -> &'a str {
    if text.ptr.is_null() || text.len == 0 {
        return "";
    }
    // SAFETY: per the contract.
    let bytes = unsafe { core::slice::from_raw_parts(text.ptr, text.len) };
    // The host sends UTF-8; anything else reads as empty rather than wrong.
    core::str::from_utf8(bytes).unwrap_or("")
}

impl<'a> MetricSampleView<'a> {
    /// The full family name (`tickflow_venue_frames_total`).
    pub fn family(&self) -> &'a str {
        // SAFETY: the host's strings live for the visit (`'a`).
        unsafe { borrowed_str(self.raw.family) }
    }
    pub fn help(&self) -> &'a str {
        // SAFETY: as in `family`.
        unsafe { borrowed_str(self.raw.help) }
    }
    /// `None` for a kind this SDK does not know (a newer host): skip the sample.
    pub fn kind(&self) -> Option<MetricKind> {
        match self.raw.kind {
            METRIC_COUNTER => Some(MetricKind::Counter),
            METRIC_GAUGE => Some(MetricKind::Gauge),
            METRIC_HISTOGRAM => Some(MetricKind::Histogram),
            _ => None,
        }
    }
    /// `(name, value)` pairs.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let labels: &'a [MetricLabel] = if self.raw.labels.is_null() {
            &[]
        } else {
            // SAFETY: the host passes `label_count` labels alive for the visit.
            unsafe { core::slice::from_raw_parts(self.raw.labels, self.raw.label_count as usize) }
        };
        labels.iter().map(|label| {
            // SAFETY: as in `family`.
            unsafe { (borrowed_str(label.name), borrowed_str(label.value)) }
        })
    }
    /// Counter total or gauge value; a histogram's sum.
    pub fn value(&self) -> f64 {
        self.raw.value
    }
    /// A histogram's observations (0 otherwise).
    pub fn count(&self) -> u64 {
        self.raw.count
    }
    /// A histogram's `(upper bound, cumulative count)` buckets below `+Inf`, ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + 'a {
        let len = self.raw.bucket_count as usize;
        let (bounds, counts): (&'a [f64], &'a [u64]) = if len == 0
            || self.raw.bucket_upper_bounds.is_null()
            || self.raw.bucket_counts.is_null()
        {
            (&[], &[])
        } else {
            // SAFETY: the host passes `bucket_count` bounds and counts alive for the visit.
            unsafe {
                (
                    core::slice::from_raw_parts(self.raw.bucket_upper_bounds, len),
                    core::slice::from_raw_parts(self.raw.bucket_counts, len),
                )
            }
        };
        bounds.iter().copied().zip(counts.iter().copied())
    }
}

fn name_from_buffer(buffer: &[u8], len: usize) -> Option<String> {
    if len == 0 || len > buffer.len() {
        return None;
    }
    String::from_utf8(buffer[..len].to_vec()).ok()
}

/// The bitmask of a list of record kinds.
pub const fn record_kind_mask(kinds: &[RecordKind]) -> u32 {
    let mut mask = 0u32;
    let mut index = 0;
    while index < kinds.len() {
        mask |= 1 << (kinds[index] as u32);
        index += 1;
    }
    mask
}

/// What an instance pointer points at.
struct Instance<S> {
    sink: S,
    host: HostHandle,
}

thread_local! {
    /// Set while a plugin call runs under [`guard`]: the panic hook then records where the panic
    /// happened (for the host log line) instead of printing to stderr.
    static GUARDED_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once) a panic hook that stays silent for panics inside guarded plugin calls, which
/// `guard` reports through the host log instead, and defers to the previous hook for every other
/// panic. In a cdylib the hook belongs to the plugin's own copy of std, never the engine's.
fn install_panic_hook() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED_CALL.with(|guarded| guarded.get()) {
                let location = info
                    .location()
                    .map(|location| format!("{}:{}", location.file(), location.line()));
                PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `body`, turning a panic into [`STATUS_PANIC`] (logged through the host when it has one).
fn guard(host: Option<HostHandle>, body: impl FnOnce() -> Status) -> Status {
    install_panic_hook();
    // One thread-local lookup per call (in a shared library each lookup can be a
    // `__tls_get_addr` call): the flag is set and restored through the same reference.
    let result = GUARDED_CALL.with(|guarded| {
        let outer = guarded.replace(true);
        let result = catch_unwind(AssertUnwindSafe(body));
        guarded.set(outer);
        result
    });
    match result {
        Ok(status) => status,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(non-string panic payload)");
            let location = PANIC_LOCATION
                .with(|slot| slot.borrow_mut().take())
                .unwrap_or_else(|| "unknown location".to_string());
            if let Some(host) = host {
                host.error(&format!("plugin panicked at {location}: {message}"));
            }
            STATUS_PANIC
        }
    }
}

fn report(host: HostHandle, result: Result<(), SinkError>) -> Status {
    match result {
        Ok(()) => STATUS_OK,
        Err(error) => {
            host.error(error.message());
            error.status()
        }
    }
}

/// `create` for sink type `S`.
///
/// # Safety
/// Called by the host with the arguments the ABI describes.
pub unsafe extern "C" fn create_glue<S: Sink>(
    host: *const Host,
    config_ptr: *const u8,
    config_len: usize,
    out_instance: *mut *mut c_void,
) -> Status {
    // SAFETY: the host passes a table valid until destroy (or null).
    let host = unsafe { HostHandle::from_raw(host) };
    guard(Some(host), || {
        if out_instance.is_null() || (config_ptr.is_null() && config_len != 0) {
            return STATUS_INVALID_ARGUMENT;
        }
        let config_bytes: &[u8] = if config_len == 0 {
            &[]
        } else {
            // SAFETY: the host passes `config_len` readable bytes at `config_ptr` for the call.
            unsafe { core::slice::from_raw_parts(config_ptr, config_len) }
        };
        let Ok(config_text) = core::str::from_utf8(config_bytes) else {
            host.error("config text is not UTF-8");
            return STATUS_INVALID_CONFIG;
        };
        let config: S::Config = match toml::from_str(config_text) {
            Ok(config) => config,
            Err(error) => {
                host.error(&format!("invalid config: {error}"));
                return STATUS_INVALID_CONFIG;
            }
        };
        match S::create(host, config) {
            Ok(sink) => {
                let instance = Box::new(Instance { sink, host });
                // SAFETY: checked non-null above; the host owns the slot.
                unsafe { *out_instance = Box::into_raw(instance).cast() };
                STATUS_OK
            }
            Err(error) => report(host, Err(error)),
        }
    })
}

/// # Safety
/// `instance` must come from `create_glue::<S>` and not be destroyed.
unsafe fn instance_mut<'a, S: Sink>(instance: *mut c_void) -> Option<&'a mut Instance<S>> {
    // SAFETY: per the caller, a live `Instance<S>` used by one thread at a time.
    unsafe { instance.cast::<Instance<S>>().as_mut() }
}

/// `on_batch` for sink type `S`.
///
/// # Safety
/// Called by the host with an instance from `create_glue::<S>` and a valid batch.
pub unsafe extern "C" fn on_batch_glue<S: Sink>(
    instance: *mut c_void,
    kind: u32,
    records: *const c_void,
    len: usize,
) -> Status {
    // SAFETY: per this function's contract.
    let Some(instance) = (unsafe { instance_mut::<S>(instance) }) else {
        return STATUS_INVALID_ARGUMENT;
    };
    let host = instance.host;
    guard(Some(host), || {
        if records.is_null() && len > 0 {
            return STATUS_INVALID_ARGUMENT;
        }
        // SAFETY: the host passes `len` records of `kind` borrowed for this call.
        let Some(batch) = (unsafe { Batch::from_raw(kind, records, len) }) else {
            return STATUS_UNSUPPORTED_KIND;
        };
        report(host, instance.sink.on_batch(batch))
    })
}

/// `flush` for sink type `S`.
///
/// # Safety
/// As [`on_batch_glue`].
pub unsafe extern "C" fn flush_glue<S: Sink>(instance: *mut c_void) -> Status {
    // SAFETY: per this function's contract.
    let Some(instance) = (unsafe { instance_mut::<S>(instance) }) else {
        return STATUS_INVALID_ARGUMENT;
    };
    let host = instance.host;
    guard(Some(host), || report(host, instance.sink.flush()))
}

/// `on_tick` for sink type `S`.
///
/// # Safety
/// As [`on_batch_glue`].
pub unsafe extern "C" fn on_tick_glue<S: Sink>(instance: *mut c_void, now_ns: i64) -> Status {
    // SAFETY: per this function's contract.
    let Some(instance) = (unsafe { instance_mut::<S>(instance) }) else {
        return STATUS_INVALID_ARGUMENT;
    };
    let host = instance.host;
    guard(Some(host), || report(host, instance.sink.on_tick(now_ns)))
}

/// `stats` for sink type `S`.
///
/// # Safety
/// As [`on_batch_glue`]; `out` points at a stats table of `(*out).struct_size` bytes.
pub unsafe extern "C" fn stats_glue<S: Sink>(
    instance: *mut c_void,
    out: *mut PluginStats,
) -> Status {
    // SAFETY: per this function's contract.
    let Some(instance) = (unsafe { instance_mut::<S>(instance) }) else {
        return STATUS_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return STATUS_INVALID_ARGUMENT;
    }
    let host = instance.host;
    guard(Some(host), || {
        let stats = instance.sink.stats();
        // SAFETY: `out` is non-null and writable for `struct_size` bytes (host contract).
        let capacity = unsafe { (*out).struct_size } as usize;
        if capacity < core::mem::size_of::<PluginStats>() {
            // An older, shorter table: write only the fields that fit.
            let fields = [
                stats.records_written,
                stats.records_dropped,
                stats.bytes_written,
                stats.errors,
            ];
            for (index, value) in fields.iter().enumerate() {
                let offset = 8 + index * 8;
                if offset + 8 <= capacity {
                    // SAFETY: the field lies within the `capacity` bytes the host provided.
                    unsafe {
                        out.cast::<u8>()
                            .add(offset)
                            .cast::<u64>()
                            .write_unaligned(*value)
                    };
                }
            }
        } else {
            // SAFETY: the whole table fits.
            unsafe {
                *out = PluginStats {
                    struct_size: (*out).struct_size,
                    ..stats
                }
            };
        }
        STATUS_OK
    })
}

/// `destroy` for sink type `S`.
///
/// # Safety
/// `instance` must come from `create_glue::<S>`; it is invalid afterwards.
pub unsafe extern "C" fn destroy_glue<S: Sink>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: created by `Box::into_raw` in `create_glue::<S>` and destroyed once (host contract).
    let instance = unsafe { Box::from_raw(instance.cast::<Instance<S>>()) };
    let host = instance.host;
    // A panicking Drop must not unwind into the host either.
    let _ = guard(Some(host), move || {
        drop(instance);
        STATUS_OK
    });
}

/// `memory_bound` for sink type `S` (ABI 1.2): parses the config as `create` does and asks
/// [`Sink::memory_bound_bytes`].
///
/// # Safety
/// Called by the host with `config_len` readable bytes at `config_ptr` (or `config_len` 0) and a
/// writable `out_bytes`.
pub unsafe extern "C" fn memory_bound_glue<S: Sink>(
    config_ptr: *const u8,
    config_len: usize,
    out_bytes: *mut u64,
) -> Status {
    // No host table here: a panic is reported by its status alone.
    guard(None, || {
        if out_bytes.is_null() || (config_ptr.is_null() && config_len != 0) {
            return STATUS_INVALID_ARGUMENT;
        }
        let config_bytes: &[u8] = if config_len == 0 {
            &[]
        } else {
            // SAFETY: the host passes `config_len` readable bytes at `config_ptr` for the call.
            unsafe { core::slice::from_raw_parts(config_ptr, config_len) }
        };
        let Ok(config_text) = core::str::from_utf8(config_bytes) else {
            return STATUS_INVALID_CONFIG;
        };
        let Ok(config) = toml::from_str::<S::Config>(config_text) else {
            return STATUS_INVALID_CONFIG;
        };
        let bound = match S::memory_bound_bytes(&config) {
            Ok(bound) => bound.unwrap_or(MEMORY_BOUND_NOT_STATED),
            Err(error) => return error.status(),
        };
        // SAFETY: checked non-null; the host passes a writable u64.
        unsafe { out_bytes.write(bound) };
        STATUS_OK
    })
}

/// The descriptor for sink type `S` (what [`crate::export_sink!`] returns from the entry).
pub const fn descriptor<S: Sink>() -> Descriptor {
    Descriptor {
        magic: MAGIC,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        struct_size: core::mem::size_of::<Descriptor>() as u32,
        build_flags: native_build_flags() | BUILD_RUST_SDK,
        name: StrRef::from_static(S::NAME),
        version: StrRef::from_static(S::VERSION),
        record_kinds: record_kind_mask(S::RECORD_KINDS),
        reserved: 0,
        create: Some(create_glue::<S>),
        on_batch: Some(on_batch_glue::<S>),
        flush: Some(flush_glue::<S>),
        on_tick: Some(on_tick_glue::<S>),
        stats: Some(stats_glue::<S>),
        destroy: Some(destroy_glue::<S>),
        memory_bound: Some(memory_bound_glue::<S>),
    }
}

/// Exports `$sink` (a type implementing [`Sink`]) as this library's plugin: generates the
/// `tickflow_sink_entry_v1` function returning its descriptor. Use once per cdylib.
#[macro_export]
macro_rules! export_sink {
    ($sink:ty) => {
        /// The plugin entry point the tickflow engine looks up.
        #[unsafe(no_mangle)]
        pub extern "C" fn tickflow_sink_entry_v1() -> *const $crate::abi::Descriptor {
            static DESCRIPTOR: $crate::abi::Descriptor = $crate::sink::descriptor::<$sink>();
            &DESCRIPTOR
        }
    };
}
