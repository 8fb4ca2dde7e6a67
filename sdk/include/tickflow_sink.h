/*
 * tickflow_sink.h: the tickflow sink plugin ABI, version 1.3.
 *
 * A sink plugin is a shared library that exports one function, tickflow_sink_entry_v1, returning
 * a pointer to a static tf_sink_descriptor. The engine checks, in order: the entry symbol, magic,
 * ABI major (equal), ABI minor (not newer than the engine's), struct_size, the required functions
 * (create, on_batch, destroy) and the build flags, and refuses the plugin with one line naming
 * what did not match.
 *
 * Rules (see sdk/README.md):
 *  - Only C types cross: fixed-width integers, pointers, (ptr, len) slices, nullable function
 *    pointers. Strings are UTF-8 (ptr, len), never NUL-terminated.
 *  - Records arrive as borrowed batches (const record *, len), valid only during the call.
 *    Whoever allocates frees.
 *  - Tables (descriptor, host callbacks, stats) only grow at the end: a new field bumps
 *    TF_ABI_MINOR, anything else TF_ABI_MAJOR. Records are different: a batch is an array
 *    (const record *, len) with no per-record size, so ANY change to a record's layout, growing
 *    included, is a major bump. Reserved fields (tf_telemetry.reserved) may gain a meaning in a
 *    minor version: readers ignore them, writers zero them.
 *  - One instance is called from one thread at a time; host callbacks are thread-safe.
 *  - The host table passed to create is never freed (it lives for the whole process).
 *  - Nothing may unwind (C++ exceptions, Rust panics) out of a plugin function.
 *
 * This header mirrors the Rust definitions in sdk/src/records.rs and sdk/src/abi.rs; a test
 * compiles it and compares every size and offset. 64-bit little-endian targets only.
 */
#ifndef TICKFLOW_SINK_H
#define TICKFLOW_SINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions, magic, entry ------------------------------------------------------------- */

#define TF_MAGIC 0x4B4E49534C464B54ULL /* "TKFLSINK" as a little-endian u64 */
#define TF_ABI_MAJOR 1
#define TF_ABI_MINOR 3
#define TF_ENTRY_SYMBOL "tickflow_sink_entry_v1"

/* ---- status codes (int32_t) ------------------------------------------------------------- */

typedef int32_t tf_status;
#define TF_STATUS_OK 0
#define TF_STATUS_ERROR 1            /* failed; counted, the instance is restarted if it persists */
#define TF_STATUS_INVALID_CONFIG 2   /* create refused its config */
#define TF_STATUS_PANIC 3            /* a panic / exception was caught inside the plugin */
#define TF_STATUS_UNSUPPORTED_KIND 4 /* on_batch got a record kind it does not handle */
#define TF_STATUS_INVALID_ARGUMENT 5 /* null pointer or similar */

/* ---- build flags ------------------------------------------------------------------------ */

#define TF_BUILD_LITTLE_ENDIAN (1ULL << 0)
#define TF_BUILD_POINTER_64 (1ULL << 1)
#define TF_BUILD_MUST_MATCH_MASK 0xFFULL /* these bits must equal the engine's */
#define TF_BUILD_DEBUG (1ULL << 8)       /* informational */
#define TF_BUILD_RUST_SDK (1ULL << 9)    /* informational */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TF_BUILD_ENDIAN_FLAG_ TF_BUILD_LITTLE_ENDIAN
#else
#define TF_BUILD_ENDIAN_FLAG_ 0ULL
#endif
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFULL
#define TF_BUILD_POINTER_FLAG_ TF_BUILD_POINTER_64
#else
#define TF_BUILD_POINTER_FLAG_ 0ULL
#endif
#ifdef NDEBUG
#define TF_BUILD_DEBUG_FLAG_ 0ULL
#else
#define TF_BUILD_DEBUG_FLAG_ TF_BUILD_DEBUG
#endif
/* The flags of the code including this header: put this in tf_sink_descriptor.build_flags. */
#define TF_BUILD_FLAGS_NATIVE (TF_BUILD_ENDIAN_FLAG_ | TF_BUILD_POINTER_FLAG_ | TF_BUILD_DEBUG_FLAG_)

/* ---- records ------------------------------------------------------------------------------ */

/* Record kinds: values are stable; bit (1u << kind) in tf_sink_descriptor.record_kinds. */
#define TF_KIND_QUOTE 0u
#define TF_KIND_TRADE 1u
#define TF_KIND_SPREAD_SAMPLE 2u
#define TF_KIND_OPPORTUNITY 3u
#define TF_KIND_GAP 4u
#define TF_KIND_TELEMETRY 5u
#define TF_KIND_VENUE_STATUS 6u /* ABI 1.3 */
#define TF_KIND_MASK(kind) (1u << (kind))

/* tf_quote.flags / tf_trade.flags bits */
#define TF_FLAG_HAS_TS_EXCHANGE (1u << 0) /* ts_exchange_ns is the venue's; else 0 */
#define TF_FLAG_HAS_SEQ (1u << 1)         /* tf_quote.seq is the venue's sequence id */
#define TF_FLAG_TRADE_ID_UUID (1u << 2)   /* tf_trade.trade_id holds a UUID as 16 raw bytes */

#define TF_SIDE_UNKNOWN 0u
#define TF_SIDE_BUY 1u
#define TF_SIDE_SELL 2u

#define TF_TRADE_ID_CAPACITY_BYTES 23

/* Times are int64_t nanoseconds since the Unix epoch (UTC). Symbol ids are uint32_t, venue ids
 * uint16_t; names through the host's symbol_name / venue_name callbacks. */

typedef struct tf_quote {
    double bid;
    double bid_qty;
    double ask;
    double ask_qty;
    int64_t ts_exchange_ns; /* valid when flags & TF_FLAG_HAS_TS_EXCHANGE */
    int64_t ts_recv_ns;     /* when the engine read the frame */
    uint64_t seq;           /* valid when flags & TF_FLAG_HAS_SEQ */
    uint32_t symbol_id;
    uint16_t venue_id;
    uint8_t flags;
    uint8_t reserved;
} tf_quote;

typedef struct tf_trade {
    double price;
    double qty;
    int64_t ts_exchange_ns; /* valid when flags & TF_FLAG_HAS_TS_EXCHANGE */
    int64_t ts_recv_ns;
    uint32_t symbol_id;
    uint16_t venue_id;
    uint8_t side;         /* TF_SIDE_* of the taker */
    uint8_t flags;
    uint8_t trade_id_len; /* bytes used in trade_id (16 for a UUID) */
    uint8_t trade_id[TF_TRADE_ID_CAPACITY_BYTES]; /* ASCII text, or a UUID as 16 raw bytes */
} tf_trade;

/* One closed bucket of a spread window (symbol, buy venue, sell venue), in basis points. */
typedef struct tf_spread_sample {
    int64_t bucket_start_ns;
    int64_t bucket_duration_ns;
    double last_bp;
    double min_bp;
    double max_bp;
    double mean_bp;
    double window_mean_bp;
    double window_std_bp;
    double band_lower_bp;
    double band_upper_bp;
    uint32_t samples;
    uint32_t symbol_id;
    uint16_t buy_venue_id;
    uint16_t sell_venue_id;
    uint32_t flags; /* TF_SPREAD_FLAG_* (ABI 1.1; was reserved, zero, before) */
} tf_spread_sample;

/* The window held fewer than windows.warmup_buckets buckets: its statistics and bands are not yet
   meaningful, and no opportunity cycle starts from it. ABI 1.1. */
#define TF_SPREAD_FLAG_WARMING 1u

#define TF_OPPORTUNITY_START 1u
#define TF_OPPORTUNITY_END 2u

typedef struct tf_opportunity_event {
    int64_t ts_ns;
    int64_t started_ns;
    double threshold_bp;
    double spread_bp;
    double peak_bp;
    uint32_t symbol_id;
    uint16_t buy_venue_id;
    uint16_t sell_venue_id;
    uint8_t kind; /* TF_OPPORTUNITY_* */
    uint8_t flags; /* TF_OPPORTUNITY_FLAG_* (ABI 1.1; was reserved, zero, before) */
    uint8_t reserved[6];
} tf_opportunity_event;

/* The cycle runs on the spread net of both venues' taker fees: threshold_bp, spread_bp and
   peak_bp are net. ABI 1.1. */
#define TF_OPPORTUNITY_FLAG_NET 1u

#define TF_GAP_DISCONNECT 1u
#define TF_GAP_RECONNECT 2u
/* The venue withdrew its quote (an empty book side): no spreads from it until a fresh two-sided
   quote. connection_id is 0: the decoder saw it in the venue's data, it is not a connection
   event. ABI 1.1. */
#define TF_GAP_QUOTE_WITHDRAWN 3u
/* The venue no longer lists the symbol (or the configured universe retired it): the venue's
   windows for that symbol end, and no more records of it come from that venue. connection_id is
   the slot's. ABI 1.2. */
#define TF_GAP_SYMBOL_RETIRED 4u

typedef struct tf_gap_event {
    int64_t ts_ns;
    uint32_t connection_id;
    uint32_t symbol_id;
    uint16_t venue_id;
    uint8_t kind; /* TF_GAP_* */
    uint8_t reserved[5];
} tf_gap_event;

/* Once a second: the engine's counters (totals since start) and memory. */
typedef struct tf_telemetry {
    int64_t ts_ns;
    int64_t uptime_ns;
    uint64_t rss_bytes;
    uint64_t budget_bytes;
    uint64_t records_in;
    uint64_t records_out;
    uint64_t ring_drops;
    uint64_t decode_errors;
    uint64_t reconnects;
    uint64_t windows_live;
    uint64_t windows_evicted;
    uint64_t sink_drops;
    uint32_t connections_up;
    uint32_t shards;
    uint64_t reserved[8]; /* zero now; later minors may fill them: readers ignore them */
} tf_telemetry;

/* ABI 1.3: once a second per enabled venue, how the engine's feed of that venue is doing. A
 * collector engine publishes it as its heartbeat for the venue; an aggregator treats a venue whose
 * heartbeat stops (or says connections_up == 0) like a dropped connection. */
typedef struct tf_venue_status {
    int64_t ts_ns;                /* when the engine took the status */
    int64_t last_data_ns;         /* receive time of the venue's last data, 0 = never */
    uint64_t reconnects;          /* total since start */
    uint32_t connections_up;
    uint32_t connections_planned;
    uint16_t venue_id;
    uint8_t reserved[6];
} tf_venue_status;

/* ---- host callbacks ------------------------------------------------------------------------ */

#define TF_LOG_ERROR 1u
#define TF_LOG_WARN 2u
#define TF_LOG_INFO 3u
#define TF_LOG_DEBUG 4u
#define TF_LOG_TRACE 5u

#define TF_METRIC_COUNTER 1u
#define TF_METRIC_GAUGE 2u
#define TF_METRIC_HISTOGRAM 3u

/* ABI 1.2: the visitor passed to tf_host.metrics_snapshot, called once per sample (struct
 * tf_metric_sample is defined below), on the calling thread, before metrics_snapshot returns.
 * It must not call metrics_snapshot again and must not unwind. */
struct tf_metric_sample;
typedef void (*tf_metric_visit_fn)(void *visit_ctx, const struct tf_metric_sample *sample);

/* Passed to create; never freed (lives for the whole process). Read no field ending beyond
 * struct_size. */
typedef struct tf_host {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    void *host_data; /* pass back to every callback */
    void (*log)(void *host_data, uint32_t level, const uint8_t *text, size_t len);
    /* Copy the name into out (no NUL), return its full length; 0 = unknown id. */
    size_t (*symbol_name)(void *host_data, uint32_t symbol_id, uint8_t *out, size_t capacity);
    size_t (*venue_name)(void *host_data, uint16_t venue_id, uint8_t *out, size_t capacity);
    /* Returns a metric id, 0 = refused. Exported as tickflow_plugin_<name>{sink="..."}. */
    uint32_t (*metric_register)(void *host_data, uint32_t kind, const uint8_t *name, size_t name_len,
                                const uint8_t *help, size_t help_len);
    void (*counter_add)(void *host_data, uint32_t metric_id, uint64_t delta);
    void (*gauge_set)(void *host_data, uint32_t metric_id, double value);
    void (*histogram_record)(void *host_data, uint32_t metric_id, uint64_t value);
    int64_t (*clock_ns)(void *host_data); /* ns since the Unix epoch, the records' clock */
    /* ABI 1.2 (read it only when struct_size >= TF_HOST_SIZE_V1_2): announce a named endpoint of
     * this sink, e.g. "ws" -> "ws://127.0.0.1:8081/ws", so the engine's control plane can tell
     * clients where to connect. name: 1..64 bytes of [a-z0-9_.-]; url: 1..512 bytes of printable
     * ASCII, no spaces. Publishing a name again replaces its URL; at most 16 names per sink.
     * Returns 1 when stored, 0 when refused (bad name or URL, too many names; counted). */
    uint32_t (*publish_endpoint)(void *host_data, const uint8_t *name, size_t name_len,
                                 const uint8_t *url, size_t url_len);
    /* ABI 1.2 (read it only when struct_size >= TF_HOST_SIZE_V1_2): calls visit(visit_ctx,
     * sample) once per sample of the engine's metrics (per venue, shard, sink, memory budget
     * line) and of every metric the running sinks registered (tickflow_plugin_<name>{sink=...}),
     * then returns how many samples it visited. A scrape's worth of work: call it when asked
     * (an exporter's HTTP request), not per record. */
    uint32_t (*metrics_snapshot)(void *host_data, tf_metric_visit_fn visit, void *visit_ctx);
} tf_host;

/* sizeof(tf_host) per minor version: a plugin reads no callback beyond host->struct_size. */
#define TF_HOST_SIZE_V1_0 80u
#define TF_HOST_SIZE_V1_2 96u

/* ---- the plugin descriptor ------------------------------------------------------------------ */

typedef struct tf_str {
    const uint8_t *ptr;
    size_t len;
} tf_str;

#define TF_STR(literal) {(const uint8_t *)(literal), sizeof(literal) - 1}

/* ABI 1.2: one label of a tf_metric_sample; borrowed for the visit. */
typedef struct tf_metric_label {
    tf_str name;
    tf_str value;
} tf_metric_label;

/* ABI 1.2: one sample visited by tf_host.metrics_snapshot; everything it points at is borrowed
 * for the visit only (copy what you keep). Samples of one family come one after another (same
 * family, help, kind). family is the full exposition name (tickflow_venue_frames_total), in the
 * unit it names (_seconds, _bytes); names, help and label values are at most
 * TF_METRIC_TEXT_MAX_BYTES bytes. */
typedef struct tf_metric_sample {
    tf_str family;
    tf_str help;
    uint32_t kind;        /* TF_METRIC_COUNTER, TF_METRIC_GAUGE or TF_METRIC_HISTOGRAM */
    uint32_t label_count;
    const tf_metric_label *labels; /* label_count labels (NULL when 0) */
    double value;         /* counter total or gauge value; a histogram's sum */
    uint64_t count;       /* histogram: observations (the +Inf bucket); 0 otherwise */
    uint32_t bucket_count; /* histogram: buckets below +Inf; 0 otherwise */
    uint32_t reserved;
    const double *bucket_upper_bounds; /* ascending */
    const uint64_t *bucket_counts;     /* cumulative: observations <= each bound */
} tf_metric_sample;

#define TF_METRIC_TEXT_MAX_BYTES 512u

/* Filled in by the optional stats entry; the host sets struct_size, write nothing beyond it. */
typedef struct tf_plugin_stats {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t records_written;
    uint64_t records_dropped;
    uint64_t bytes_written;
    uint64_t errors;
} tf_plugin_stats;

typedef struct tf_sink_descriptor {
    uint64_t magic;       /* TF_MAGIC */
    uint16_t abi_major;   /* TF_ABI_MAJOR */
    uint16_t abi_minor;   /* TF_ABI_MINOR */
    uint32_t struct_size; /* sizeof(tf_sink_descriptor) */
    uint64_t build_flags; /* TF_BUILD_FLAGS_NATIVE */
    tf_str name;
    tf_str version;
    uint32_t record_kinds; /* OR of TF_KIND_MASK(kind) */
    uint32_t reserved;
    /* required */
    tf_status (*create)(const tf_host *host, const uint8_t *config_toml, size_t config_len,
                        void **out_instance);
    /* required: records points at len records of the layout kind names, borrowed for the call */
    tf_status (*on_batch)(void *instance, uint32_t kind, const void *records, size_t len);
    /* optional (may be NULL) */
    tf_status (*flush)(void *instance);
    tf_status (*on_tick)(void *instance, int64_t now_ns);
    tf_status (*stats)(void *instance, tf_plugin_stats *out);
    /* required */
    void (*destroy)(void *instance);
    /* ABI 1.2, optional (may be NULL; the host reads it only when struct_size covers it): the
     * most memory one instance built from this config text will ever hold (buffers, open
     * writers, threads' stacks it sizes, caches), in bytes, for the engine's memory budget.
     * Called without an instance, from any thread, before create (by `tickflow check-config`
     * and at start); it must not keep config_toml. Return TF_STATUS_OK with *out_bytes set, or
     * *out_bytes = TF_MEMORY_BOUND_NOT_STATED when this config states no bound;
     * TF_STATUS_INVALID_CONFIG when the text is not a valid config. */
    tf_status (*memory_bound)(const uint8_t *config_toml, size_t config_len, uint64_t *out_bytes);
} tf_sink_descriptor;

/* tf_sink_descriptor.memory_bound's *out_bytes when the plugin states no bound. ABI 1.2. */
#define TF_MEMORY_BOUND_NOT_STATED UINT64_MAX

/* sizeof(tf_sink_descriptor) per minor version: a plugin's struct_size must cover its minor's. */
#define TF_DESCRIPTOR_SIZE_V1_0 112u
#define TF_DESCRIPTOR_SIZE_V1_2 120u

/* The one function a plugin exports. */
typedef const tf_sink_descriptor *(*tf_sink_entry_fn)(void);

/* ---- layout, asserted at compile time (the Rust side asserts the same numbers) ------------- */

#ifdef __cplusplus
#define TF_STATIC_ASSERT_ static_assert
#else
#define TF_STATIC_ASSERT_ _Static_assert
#endif

TF_STATIC_ASSERT_(sizeof(void *) == 8, "tickflow ABI v1 is defined for 64-bit targets");
TF_STATIC_ASSERT_(sizeof(tf_quote) == 64, "tf_quote layout");
TF_STATIC_ASSERT_(offsetof(tf_quote, ts_exchange_ns) == 32, "tf_quote layout");
TF_STATIC_ASSERT_(offsetof(tf_quote, seq) == 48, "tf_quote layout");
TF_STATIC_ASSERT_(offsetof(tf_quote, symbol_id) == 56, "tf_quote layout");
TF_STATIC_ASSERT_(offsetof(tf_quote, venue_id) == 60, "tf_quote layout");
TF_STATIC_ASSERT_(offsetof(tf_quote, flags) == 62, "tf_quote layout");
TF_STATIC_ASSERT_(sizeof(tf_trade) == 64, "tf_trade layout");
TF_STATIC_ASSERT_(offsetof(tf_trade, symbol_id) == 32, "tf_trade layout");
TF_STATIC_ASSERT_(offsetof(tf_trade, side) == 38, "tf_trade layout");
TF_STATIC_ASSERT_(offsetof(tf_trade, trade_id_len) == 40, "tf_trade layout");
TF_STATIC_ASSERT_(offsetof(tf_trade, trade_id) == 41, "tf_trade layout");
TF_STATIC_ASSERT_(sizeof(tf_spread_sample) == 96, "tf_spread_sample layout");
TF_STATIC_ASSERT_(offsetof(tf_spread_sample, samples) == 80, "tf_spread_sample layout");
TF_STATIC_ASSERT_(offsetof(tf_spread_sample, symbol_id) == 84, "tf_spread_sample layout");
TF_STATIC_ASSERT_(sizeof(tf_opportunity_event) == 56, "tf_opportunity_event layout");
TF_STATIC_ASSERT_(offsetof(tf_opportunity_event, symbol_id) == 40, "tf_opportunity_event layout");
TF_STATIC_ASSERT_(sizeof(tf_gap_event) == 24, "tf_gap_event layout");
TF_STATIC_ASSERT_(sizeof(tf_telemetry) == 168, "tf_telemetry layout");
TF_STATIC_ASSERT_(offsetof(tf_telemetry, sink_drops) == 88, "tf_telemetry layout");
TF_STATIC_ASSERT_(offsetof(tf_telemetry, connections_up) == 96, "tf_telemetry layout");
TF_STATIC_ASSERT_(offsetof(tf_telemetry, reserved) == 104, "tf_telemetry layout");
TF_STATIC_ASSERT_(sizeof(tf_venue_status) == 40, "tf_venue_status layout");
TF_STATIC_ASSERT_(offsetof(tf_venue_status, connections_up) == 24, "tf_venue_status layout");
TF_STATIC_ASSERT_(offsetof(tf_venue_status, venue_id) == 32, "tf_venue_status layout");
TF_STATIC_ASSERT_(sizeof(tf_str) == 16, "tf_str layout");
TF_STATIC_ASSERT_(sizeof(tf_plugin_stats) == 40, "tf_plugin_stats layout");
TF_STATIC_ASSERT_(sizeof(tf_host) == TF_HOST_SIZE_V1_2, "tf_host layout");
TF_STATIC_ASSERT_(offsetof(tf_host, clock_ns) == 72, "tf_host layout");
TF_STATIC_ASSERT_(offsetof(tf_host, publish_endpoint) == TF_HOST_SIZE_V1_0,
                  "tf_host layout: publish_endpoint (1.2) follows the 1.0 table");
TF_STATIC_ASSERT_(offsetof(tf_host, metrics_snapshot) == TF_HOST_SIZE_V1_0 + 8,
                  "tf_host layout: metrics_snapshot (1.2) follows publish_endpoint");
TF_STATIC_ASSERT_(sizeof(tf_metric_label) == 32, "tf_metric_label layout");
TF_STATIC_ASSERT_(sizeof(tf_metric_sample) == 88, "tf_metric_sample layout");
TF_STATIC_ASSERT_(offsetof(tf_metric_sample, value) == 48, "tf_metric_sample layout");
TF_STATIC_ASSERT_(sizeof(tf_sink_descriptor) == TF_DESCRIPTOR_SIZE_V1_2, "tf_sink_descriptor layout");
TF_STATIC_ASSERT_(offsetof(tf_sink_descriptor, name) == 24, "tf_sink_descriptor layout");
TF_STATIC_ASSERT_(offsetof(tf_sink_descriptor, record_kinds) == 56, "tf_sink_descriptor layout");
TF_STATIC_ASSERT_(offsetof(tf_sink_descriptor, create) == 64, "tf_sink_descriptor layout");
TF_STATIC_ASSERT_(offsetof(tf_sink_descriptor, destroy) == 104, "tf_sink_descriptor layout");
TF_STATIC_ASSERT_(offsetof(tf_sink_descriptor, memory_bound) == TF_DESCRIPTOR_SIZE_V1_0,
                  "tf_sink_descriptor layout: memory_bound (1.2) follows the 1.0 table");

#ifdef __cplusplus
}
#endif

#endif /* TICKFLOW_SINK_H */
