//! The raw C ABI between the engine (host) and a sink plugin: the descriptor a plugin exports, the
//! host callback table it receives, status codes and build flags.
//!
//! Everything here mirrors `sdk/include/tickflow_sink.h` field for field; a test compiles a C
//! program against the header and compares every size and offset with these definitions. Only C
//! types appear: fixed-width integers, pointers, `(ptr, len)` slices and nullable function
//! pointers. Tables (descriptor, host callbacks, stats) only grow at the end: a new field bumps
//! [`ABI_MINOR`], any other change bumps [`ABI_MAJOR`]. Records are not tables: a batch is a
//! `(ptr, len)` array with no per-record size, so any change to a record's layout (growing
//! included) bumps [`ABI_MAJOR`]; reserved fields may gain a meaning in a minor version.

use core::ffi::c_void;
use core::mem::{offset_of, size_of};

/// `Descriptor::magic`: the bytes `TKFLSINK` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TKFLSINK");
/// Incompatible changes bump the major version; the host refuses any other major.
pub const ABI_MAJOR: u16 = 1;
/// Compatible additions (fields at the end of a table: descriptor, host callbacks, stats; or a
/// meaning given to a record's reserved field) bump the minor version; the host refuses a plugin
/// built against a newer minor than its own. A record's layout never changes within a major.
pub const ABI_MINOR: u16 = 3;

/// The one symbol a plugin exports. Its name carries the ABI major version so that a plugin built
/// for another major is refused before anything is read.
pub const ENTRY_SYMBOL: &str = "tickflow_sink_entry_v1";
/// The entry function's type: returns a pointer to a descriptor that lives as long as the library.
pub type EntryFn = unsafe extern "C" fn() -> *const Descriptor;

/// A status returned by every plugin call (`int32_t`).
pub type Status = i32;
/// The call succeeded.
pub const STATUS_OK: Status = 0;
/// The call failed; the host counts it and restarts the instance when failures keep coming.
pub const STATUS_ERROR: Status = 1;
/// `create` refused its configuration.
pub const STATUS_INVALID_CONFIG: Status = 2;
/// The plugin caught a panic (the Rust SDK does this for every call); treated like an error.
pub const STATUS_PANIC: Status = 3;
/// `on_batch` received a record kind the plugin does not handle.
pub const STATUS_UNSUPPORTED_KIND: Status = 4;
/// A null or otherwise invalid argument.
pub const STATUS_INVALID_ARGUMENT: Status = 5;

/// A human-readable name for a status code (for logs and refusals).
pub fn status_name(status: Status) -> &'static str {
    match status {
        STATUS_OK => "ok",
        STATUS_ERROR => "error",
        STATUS_INVALID_CONFIG => "invalid_config",
        STATUS_PANIC => "panic",
        STATUS_UNSUPPORTED_KIND => "unsupported_kind",
        STATUS_INVALID_ARGUMENT => "invalid_argument",
        _ => "unknown_status",
    }
}

/// `Descriptor::build_flags` bit: the plugin was built for a little-endian target.
pub const BUILD_LITTLE_ENDIAN: u64 = 1 << 0;
/// `Descriptor::build_flags` bit: the plugin was built for a 64-bit target.
pub const BUILD_POINTER_64: u64 = 1 << 1;
/// Bits that must equal the host's own; any difference means the records cannot be shared.
pub const BUILD_MUST_MATCH_MASK: u64 = 0xFF;
/// Informational bit: a debug build (no optimization).
pub const BUILD_DEBUG: u64 = 1 << 8;
/// Informational bit: built with the Rust SDK (`export_sink!`).
pub const BUILD_RUST_SDK: u64 = 1 << 9;

/// The build flags of the code being compiled now (the host compares a plugin's with its own).
pub const fn native_build_flags() -> u64 {
    let mut flags = 0;
    if cfg!(target_endian = "little") {
        flags |= BUILD_LITTLE_ENDIAN;
    }
    if cfg!(target_pointer_width = "64") {
        flags |= BUILD_POINTER_64;
    }
    if cfg!(debug_assertions) {
        flags |= BUILD_DEBUG;
    }
    flags
}

/// A borrowed UTF-8 string: `(ptr, len)`, not NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StrRef {
    pub ptr: *const u8,
    pub len: usize,
}

impl StrRef {
    pub const fn from_static(text: &'static str) -> StrRef {
        StrRef {
            ptr: text.as_ptr(),
            len: text.len(),
        }
    }
}

/// Plugin counters, filled in by the optional `stats` entry. The host sets `struct_size` to the
/// size it allocated; a plugin writes no field that ends beyond it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginStats {
    pub struct_size: u32,
    pub reserved: u32,
    /// Records the plugin wrote to its destination.
    pub records_written: u64,
    /// Records the plugin itself dropped (its own queue full, a client gone...).
    pub records_dropped: u64,
    /// Bytes the plugin wrote to its destination.
    pub bytes_written: u64,
    /// Errors the plugin hit and handled itself.
    pub errors: u64,
}

/// `create(host, config_ptr, config_len, out_instance)`: build an instance from the TOML text of
/// the sink's `config` table. The host table stays valid until `destroy` returns.
pub type CreateFn = unsafe extern "C" fn(
    host: *const Host,
    config_ptr: *const u8,
    config_len: usize,
    out_instance: *mut *mut c_void,
) -> Status;
/// `on_batch(instance, kind, records, len)`: `records` points at `len` records of the layout
/// `kind` names ([`crate::RecordKind`]), borrowed for the call only.
pub type OnBatchFn = unsafe extern "C" fn(
    instance: *mut c_void,
    kind: u32,
    records: *const c_void,
    len: usize,
) -> Status;
/// `flush(instance)`: make everything delivered so far durable / visible. Called when the host's
/// rings are drained and at shutdown before `destroy`.
pub type FlushFn = unsafe extern "C" fn(instance: *mut c_void) -> Status;
/// `on_tick(instance, now_ns)`: called about once a second from the instance's thread.
pub type OnTickFn = unsafe extern "C" fn(instance: *mut c_void, now_ns: i64) -> Status;
/// `stats(instance, out)`: fill in plugin counters.
pub type StatsFn = unsafe extern "C" fn(instance: *mut c_void, out: *mut PluginStats) -> Status;
/// `destroy(instance)`: release everything `create` acquired (join threads, close files).
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);
/// `memory_bound(config_ptr, config_len, out_bytes)` (ABI 1.2): the most memory one instance
/// built from this config text will ever hold, in bytes, for the engine's memory budget. Called
/// without an instance, from any thread, before `create`; the text is borrowed for the call.
/// Returns [`STATUS_OK`] with `*out_bytes` set (or [`MEMORY_BOUND_NOT_STATED`]), or
/// [`STATUS_INVALID_CONFIG`] when the text is not a valid config.
pub type MemoryBoundFn =
    unsafe extern "C" fn(config_ptr: *const u8, config_len: usize, out_bytes: *mut u64) -> Status;

/// `memory_bound`'s `*out_bytes` when the plugin states no bound for this config (ABI 1.2).
pub const MEMORY_BOUND_NOT_STATED: u64 = u64::MAX;

/// What a plugin's entry function returns. Lives as long as the library (a `static`).
#[repr(C)]
#[derive(Debug)]
pub struct Descriptor {
    /// [`MAGIC`].
    pub magic: u64,
    pub abi_major: u16,
    pub abi_minor: u16,
    /// `sizeof` the descriptor as the plugin was compiled; the host reads nothing beyond it.
    pub struct_size: u32,
    /// `BUILD_*` bits; the host requires `build_flags & BUILD_MUST_MATCH_MASK` equal to its own.
    pub build_flags: u64,
    pub name: StrRef,
    pub version: StrRef,
    /// Bit `1 << kind` for every [`crate::RecordKind`] the plugin wants; others are never sent.
    pub record_kinds: u32,
    pub reserved: u32,
    /// Required.
    pub create: Option<CreateFn>,
    /// Required.
    pub on_batch: Option<OnBatchFn>,
    /// Optional (null when the plugin has nothing to flush).
    pub flush: Option<FlushFn>,
    /// Optional.
    pub on_tick: Option<OnTickFn>,
    /// Optional.
    pub stats: Option<StatsFn>,
    /// Required.
    pub destroy: Option<DestroyFn>,
    /// Optional, ABI 1.2: the plugin's worst-case memory for a config. The host reads it only
    /// when `struct_size` covers it (a 1.0 or 1.1 plugin's shorter table has no such field).
    pub memory_bound: Option<MemoryBoundFn>,
}

// SAFETY: a descriptor is immutable after construction and its pointers refer to `'static`
// strings and functions of the plugin, so sharing it between threads is sound.
unsafe impl Sync for Descriptor {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for Descriptor {}

/// Size of the descriptor at ABI 1.0 (and 1.1, which added no descriptor field): the host
/// refuses a plugin whose `struct_size` is smaller than the size of the minor version it claims.
pub const DESCRIPTOR_SIZE_V1_0: u32 = 112;
/// Size of the descriptor at ABI 1.2 (`memory_bound` appended).
pub const DESCRIPTOR_SIZE_V1_2: u32 = 120;

/// The descriptor size a plugin claiming ABI `1.minor` must provide at least (its table may be
/// longer when built against a newer SDK that claims an older minor; the host reads no further
/// than the fields it knows).
pub const fn descriptor_size_for_minor(minor: u16) -> u32 {
    if minor >= 2 {
        DESCRIPTOR_SIZE_V1_2
    } else {
        DESCRIPTOR_SIZE_V1_0
    }
}

/// `log` levels.
pub const LOG_ERROR: u32 = 1;
pub const LOG_WARN: u32 = 2;
pub const LOG_INFO: u32 = 3;
pub const LOG_DEBUG: u32 = 4;
pub const LOG_TRACE: u32 = 5;

/// `metric_register` kinds.
pub const METRIC_COUNTER: u32 = 1;
pub const METRIC_GAUGE: u32 = 2;
pub const METRIC_HISTOGRAM: u32 = 3;

/// The host's callback table, passed to `create`. The host never frees it (it lives for the
/// whole process). Every callback is thread-safe and takes `host_data` first. A plugin reads no field that ends beyond `struct_size` (a newer host may
/// pass a longer table; an older one a shorter one).
#[repr(C)]
#[derive(Debug)]
pub struct Host {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    /// Opaque to the plugin; passed back to every callback.
    pub host_data: *mut c_void,
    /// Writes a log line (UTF-8, no newline needed) at a `LOG_*` level, tagged with the sink name.
    pub log: Option<
        unsafe extern "C" fn(host_data: *mut c_void, level: u32, text: *const u8, len: usize),
    >,
    /// Copies the canonical name of a symbol id (`BTC-USDT`) into `out` (at most `capacity`
    /// bytes, no NUL) and returns its full length; 0 when the id is unknown.
    pub symbol_name: Option<
        unsafe extern "C" fn(
            host_data: *mut c_void,
            symbol_id: u32,
            out: *mut u8,
            capacity: usize,
        ) -> usize,
    >,
    /// As `symbol_name`, for a venue id (`binance`).
    pub venue_name: Option<
        unsafe extern "C" fn(
            host_data: *mut c_void,
            venue_id: u16,
            out: *mut u8,
            capacity: usize,
        ) -> usize,
    >,
    /// Registers a metric of a `METRIC_*` kind; it is exported beside the engine's own, named
    /// `tickflow_plugin_<name>` and labelled with the sink. Returns its id, or 0 when refused
    /// (bad name, unknown kind, the per-sink limit reached). Registering a name twice returns
    /// the same id.
    pub metric_register: Option<
        unsafe extern "C" fn(
            host_data: *mut c_void,
            kind: u32,
            name: *const u8,
            name_len: usize,
            help: *const u8,
            help_len: usize,
        ) -> u32,
    >,
    /// Adds to a counter.
    pub counter_add:
        Option<unsafe extern "C" fn(host_data: *mut c_void, metric_id: u32, delta: u64)>,
    /// Sets a gauge.
    pub gauge_set: Option<unsafe extern "C" fn(host_data: *mut c_void, metric_id: u32, value: f64)>,
    /// Records one value in a histogram.
    pub histogram_record:
        Option<unsafe extern "C" fn(host_data: *mut c_void, metric_id: u32, value: u64)>,
    /// The engine clock: nanoseconds since the Unix epoch, the same clock as the records'.
    pub clock_ns: Option<unsafe extern "C" fn(host_data: *mut c_void) -> i64>,
    /// ABI 1.2, read only when `struct_size` covers it ([`HOST_SIZE_V1_2`]): announces a named
    /// endpoint of the sink (`"ws"` → `"ws://127.0.0.1:8081/ws"`) so the engine's control plane
    /// can tell clients where to connect. The name is 1 to 64 bytes of `[a-z0-9_.-]`, the URL 1
    /// to 512 bytes of printable ASCII without spaces; publishing a name again replaces its URL;
    /// at most 16 names per sink. Returns 1 when stored, 0 when refused (counted by the host).
    pub publish_endpoint: Option<
        unsafe extern "C" fn(
            host_data: *mut c_void,
            name: *const u8,
            name_len: usize,
            url: *const u8,
            url_len: usize,
        ) -> u32,
    >,
    /// ABI 1.2, read only when `struct_size` covers it ([`HOST_SIZE_V1_2`]): calls `visit` once
    /// per sample of the engine's metrics (per venue, shard, sink, memory budget line) and of
    /// every metric the running sinks registered (`tickflow_plugin_<name>{sink=...}`), on the
    /// calling thread, then returns how many samples it visited. For an exporter (the
    /// Prometheus sink); about a scrape's worth of work, so call it when asked, not per record.
    pub metrics_snapshot: Option<MetricsSnapshotFn>,
}

/// Size of the host table at ABI 1.0 (and 1.1, which added no callback).
pub const HOST_SIZE_V1_0: u32 = 80;
/// Size of the host table at ABI 1.2 (`publish_endpoint` and `metrics_snapshot` appended).
pub const HOST_SIZE_V1_2: u32 = 96;

/// One `name="value"` label of a [`MetricSample`] (ABI 1.2). Both strings are borrowed for the
/// visit only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MetricLabel {
    pub name: StrRef,
    pub value: StrRef,
}

/// One sample of the engine's metrics, passed to a [`MetricVisitFn`] by `metrics_snapshot`
/// (ABI 1.2). Everything it points at is borrowed for the visit only: copy what you keep.
///
/// Samples of one family come one after another (same `family`, `help`, `kind`); label names and
/// values are at most [`METRIC_TEXT_MAX_BYTES`] bytes. `family` is the full exposition name
/// (`tickflow_venue_frames_total`), in the unit it names (`_seconds`, `_bytes`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MetricSample {
    pub family: StrRef,
    pub help: StrRef,
    /// `METRIC_COUNTER`, `METRIC_GAUGE` or `METRIC_HISTOGRAM`.
    pub kind: u32,
    pub label_count: u32,
    /// `label_count` labels (null when 0).
    pub labels: *const MetricLabel,
    /// Counter total or gauge value; a histogram's sum of observations.
    pub value: f64,
    /// Histogram: observations (the `+Inf` bucket); 0 otherwise.
    pub count: u64,
    /// Histogram: buckets below `+Inf` (0 otherwise).
    pub bucket_count: u32,
    pub reserved: u32,
    /// Histogram: `bucket_count` upper bounds, ascending (null when 0).
    pub bucket_upper_bounds: *const f64,
    /// Histogram: `bucket_count` cumulative counts (observations <= each bound).
    pub bucket_counts: *const u64,
}

/// Longest label value, family name or help text in a [`MetricSample`] (the host cuts longer).
pub const METRIC_TEXT_MAX_BYTES: usize = 512;

/// The visitor a plugin passes to `metrics_snapshot`: called once per sample, on the calling
/// thread, before `metrics_snapshot` returns. It must not call back into the host's
/// `metrics_snapshot`, and must not unwind.
pub type MetricVisitFn = unsafe extern "C" fn(visit_ctx: *mut c_void, sample: *const MetricSample);

/// `metrics_snapshot(host_data, visit, visit_ctx)` (ABI 1.2): see [`Host::metrics_snapshot`].
pub type MetricsSnapshotFn = unsafe extern "C" fn(
    host_data: *mut c_void,
    visit: Option<MetricVisitFn>,
    visit_ctx: *mut c_void,
) -> u32;

// Layout is ABI: the C header asserts the same numbers and a test compares them.
const _: () = assert!(size_of::<StrRef>() == 16);
const _: () = assert!(size_of::<PluginStats>() == 40);
const _: () = assert!(offset_of!(PluginStats, records_written) == 8);
const _: () = assert!(offset_of!(PluginStats, errors) == 32);
const _: () = assert!(offset_of!(Descriptor, magic) == 0);
const _: () = assert!(offset_of!(Descriptor, abi_major) == 8);
const _: () = assert!(offset_of!(Descriptor, abi_minor) == 10);
const _: () = assert!(offset_of!(Descriptor, struct_size) == 12);
const _: () = assert!(offset_of!(Descriptor, build_flags) == 16);
const _: () = assert!(offset_of!(Descriptor, name) == 24);
const _: () = assert!(offset_of!(Descriptor, version) == 40);
const _: () = assert!(offset_of!(Descriptor, record_kinds) == 56);
const _: () = assert!(offset_of!(Descriptor, create) == 64);
const _: () = assert!(offset_of!(Descriptor, on_batch) == 72);
const _: () = assert!(offset_of!(Descriptor, flush) == 80);
const _: () = assert!(offset_of!(Descriptor, on_tick) == 88);
const _: () = assert!(offset_of!(Descriptor, stats) == 96);
const _: () = assert!(offset_of!(Descriptor, destroy) == 104);
const _: () = assert!(offset_of!(Descriptor, memory_bound) == DESCRIPTOR_SIZE_V1_0 as usize);
const _: () = assert!(size_of::<Descriptor>() == DESCRIPTOR_SIZE_V1_2 as usize);
const _: () = assert!(offset_of!(Host, host_data) == 8);
const _: () = assert!(offset_of!(Host, log) == 16);
const _: () = assert!(offset_of!(Host, symbol_name) == 24);
const _: () = assert!(offset_of!(Host, venue_name) == 32);
const _: () = assert!(offset_of!(Host, metric_register) == 40);
const _: () = assert!(offset_of!(Host, counter_add) == 48);
const _: () = assert!(offset_of!(Host, gauge_set) == 56);
const _: () = assert!(offset_of!(Host, histogram_record) == 64);
const _: () = assert!(offset_of!(Host, clock_ns) == 72);
const _: () = assert!(offset_of!(Host, publish_endpoint) == HOST_SIZE_V1_0 as usize);
const _: () = assert!(offset_of!(Host, metrics_snapshot) == HOST_SIZE_V1_0 as usize + 8);
const _: () = assert!(size_of::<Host>() == HOST_SIZE_V1_2 as usize);
const _: () = assert!(size_of::<MetricLabel>() == 32);
const _: () = assert!(size_of::<MetricSample>() == 88);
const _: () = assert!(offset_of!(MetricSample, kind) == 32);
const _: () = assert!(offset_of!(MetricSample, labels) == 40);
const _: () = assert!(offset_of!(MetricSample, value) == 48);
const _: () = assert!(offset_of!(MetricSample, bucket_counts) == 80);
// A nullable function pointer is exactly a C function pointer.
const _: () = assert!(size_of::<Option<CreateFn>>() == size_of::<usize>());
