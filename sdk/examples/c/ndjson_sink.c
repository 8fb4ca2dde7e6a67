/*
 * ndjson_sink.c: a tickflow sink plugin in plain C. Writes one NDJSON line per quote, trade and
 * gap record to the file named by `path` in its config (stdout when absent).
 *
 * Build:  cc -shared -fPIC -O2 -I sdk/include -o libndjson_sink.so sdk/examples/c/ndjson_sink.c
 * Config: [[sinks]] name = "c-ndjson"  path = "./libndjson_sink.so"
 *         [sinks.config] path = "/tmp/records.ndjson"
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tickflow_sink.h"

typedef struct ndjson_sink {
    const tf_host *host;
    FILE *out;
    int owns_out;
    uint32_t records_metric;
    uint64_t records_written;
    uint64_t bytes_written;
} ndjson_sink;

static void host_log(const tf_host *host, uint32_t level, const char *text) {
    if (host != NULL && host->log != NULL) {
        host->log(host->host_data, level, (const uint8_t *)text, strlen(text));
    }
}

/* Finds `path = "..."` in the config text (a real plugin would use a TOML parser). Writes the
 * NUL-terminated value into out; returns 1 when found, 0 when absent, -1 when malformed. */
static int config_path(const uint8_t *text, size_t len, char *out, size_t capacity) {
    const char *key = "path";
    size_t key_len = strlen(key);
    for (size_t i = 0; i + key_len <= len; i++) {
        if ((i != 0 && text[i - 1] != '\n') || memcmp(text + i, key, key_len) != 0) {
            continue;
        }
        size_t j = i + key_len;
        while (j < len && text[j] == ' ') j++;
        if (j >= len || text[j] != '=') continue;
        j++;
        while (j < len && text[j] == ' ') j++;
        if (j >= len || text[j] != '"') return -1;
        j++;
        size_t start = j;
        while (j < len && text[j] != '"' && text[j] != '\\') j++;
        if (j >= len || text[j] != '"' || j - start + 1 > capacity) return -1;
        memcpy(out, text + start, j - start);
        out[j - start] = '\0';
        return 1;
    }
    return 0;
}

static tf_status ndjson_create(const tf_host *host, const uint8_t *config, size_t config_len,
                               void **out_instance) {
    if (out_instance == NULL) return TF_STATUS_INVALID_ARGUMENT;
    char path[4096];
    int found = config_path(config, config_len, path, sizeof path);
    if (found < 0) {
        host_log(host, TF_LOG_ERROR, "config key `path` must be a plain quoted string");
        return TF_STATUS_INVALID_CONFIG;
    }
    ndjson_sink *sink = calloc(1, sizeof *sink);
    if (sink == NULL) return TF_STATUS_ERROR;
    sink->host = host;
    if (found) {
        sink->out = fopen(path, "w");
        if (sink->out == NULL) {
            host_log(host, TF_LOG_ERROR, "cannot open the output file");
            free(sink);
            return TF_STATUS_ERROR;
        }
        sink->owns_out = 1;
    } else {
        sink->out = stdout;
    }
    if (host->struct_size >= offsetof(tf_host, metric_register) + sizeof(void *) &&
        host->metric_register != NULL) {
        const char *name = "c_ndjson_records_written";
        const char *help = "Records written by the C example sink";
        sink->records_metric = host->metric_register(host->host_data, TF_METRIC_COUNTER,
                                                     (const uint8_t *)name, strlen(name),
                                                     (const uint8_t *)help, strlen(help));
    }
    host_log(host, TF_LOG_INFO, "c ndjson sink created");
    *out_instance = sink;
    return TF_STATUS_OK;
}

static tf_status ndjson_on_batch(void *instance, uint32_t kind, const void *records, size_t len) {
    ndjson_sink *sink = instance;
    if (sink == NULL || (records == NULL && len != 0)) return TF_STATUS_INVALID_ARGUMENT;
    for (size_t i = 0; i < len; i++) {
        int written;
        if (kind == TF_KIND_QUOTE) {
            const tf_quote *q = (const tf_quote *)records + i;
            written = fprintf(sink->out,
                              "{\"kind\":\"quote\",\"symbol_id\":%" PRIu32 ",\"venue_id\":%u,"
                              "\"bid\":%.17g,\"bid_qty\":%.17g,\"ask\":%.17g,\"ask_qty\":%.17g,"
                              "\"ts_exchange_ns\":%" PRId64 ",\"ts_recv_ns\":%" PRId64
                              ",\"seq\":%" PRIu64 ",\"flags\":%u}\n",
                              q->symbol_id, (unsigned)q->venue_id, q->bid, q->bid_qty, q->ask,
                              q->ask_qty, q->ts_exchange_ns, q->ts_recv_ns, q->seq,
                              (unsigned)q->flags);
        } else if (kind == TF_KIND_TRADE) {
            const tf_trade *t = (const tf_trade *)records + i;
            /* The trade id's bytes as hex (all of them: text or a packed UUID, see flags). */
            static const char digits[] = "0123456789abcdef";
            char id_hex[2 * TF_TRADE_ID_CAPACITY_BYTES + 1];
            for (size_t b = 0; b < TF_TRADE_ID_CAPACITY_BYTES; b++) {
                id_hex[2 * b] = digits[t->trade_id[b] >> 4];
                id_hex[2 * b + 1] = digits[t->trade_id[b] & 0xF];
            }
            id_hex[2 * TF_TRADE_ID_CAPACITY_BYTES] = '\0';
            written = fprintf(sink->out,
                              "{\"kind\":\"trade\",\"symbol_id\":%" PRIu32 ",\"venue_id\":%u,"
                              "\"price\":%.17g,\"qty\":%.17g,\"ts_exchange_ns\":%" PRId64
                              ",\"ts_recv_ns\":%" PRId64 ",\"side\":%u,\"flags\":%u,"
                              "\"trade_id_len\":%u,\"trade_id_hex\":\"%s\"}\n",
                              t->symbol_id, (unsigned)t->venue_id, t->price, t->qty,
                              t->ts_exchange_ns, t->ts_recv_ns, (unsigned)t->side,
                              (unsigned)t->flags, (unsigned)t->trade_id_len, id_hex);
        } else if (kind == TF_KIND_SPREAD_SAMPLE) {
            const tf_spread_sample *s = (const tf_spread_sample *)records + i;
            written = fprintf(sink->out,
                              "{\"kind\":\"spread_sample\",\"symbol_id\":%" PRIu32
                              ",\"venue_id\":%u,\"sell_venue_id\":%u,\"bucket_start_ns\":%" PRId64
                              ",\"bucket_duration_ns\":%" PRId64
                              ",\"last_bp\":%.17g,\"min_bp\":%.17g,\"max_bp\":%.17g,"
                              "\"mean_bp\":%.17g,\"window_mean_bp\":%.17g,"
                              "\"window_std_bp\":%.17g,\"band_lower_bp\":%.17g,"
                              "\"band_upper_bp\":%.17g,\"samples\":%" PRIu32 "}\n",
                              s->symbol_id, (unsigned)s->buy_venue_id, (unsigned)s->sell_venue_id,
                              s->bucket_start_ns, s->bucket_duration_ns, s->last_bp, s->min_bp,
                              s->max_bp, s->mean_bp, s->window_mean_bp, s->window_std_bp,
                              s->band_lower_bp, s->band_upper_bp, s->samples);
        } else if (kind == TF_KIND_OPPORTUNITY) {
            const tf_opportunity_event *o = (const tf_opportunity_event *)records + i;
            written = fprintf(sink->out,
                              "{\"kind\":\"opportunity\",\"symbol_id\":%" PRIu32
                              ",\"venue_id\":%u,\"sell_venue_id\":%u,\"ts_ns\":%" PRId64
                              ",\"started_ns\":%" PRId64
                              ",\"threshold_bp\":%.17g,\"spread_bp\":%.17g,\"peak_bp\":%.17g,"
                              "\"event\":%u}\n",
                              o->symbol_id, (unsigned)o->buy_venue_id, (unsigned)o->sell_venue_id,
                              o->ts_ns, o->started_ns, o->threshold_bp, o->spread_bp, o->peak_bp,
                              (unsigned)o->kind);
        } else if (kind == TF_KIND_GAP) {
            const tf_gap_event *g = (const tf_gap_event *)records + i;
            written = fprintf(sink->out,
                              "{\"kind\":\"gap\",\"symbol_id\":%" PRIu32 ",\"venue_id\":%u,"
                              "\"ts_ns\":%" PRId64 ",\"connection_id\":%" PRIu32
                              ",\"gap_kind\":%u}\n",
                              g->symbol_id, (unsigned)g->venue_id, g->ts_ns, g->connection_id,
                              (unsigned)g->kind);
        } else {
            return TF_STATUS_UNSUPPORTED_KIND;
        }
        if (written < 0) return TF_STATUS_ERROR;
        sink->bytes_written += (uint64_t)written;
    }
    sink->records_written += len;
    if (sink->records_metric != 0 && sink->host->counter_add != NULL) {
        sink->host->counter_add(sink->host->host_data, sink->records_metric, len);
    }
    return TF_STATUS_OK;
}

static tf_status ndjson_flush(void *instance) {
    ndjson_sink *sink = instance;
    return fflush(sink->out) == 0 ? TF_STATUS_OK : TF_STATUS_ERROR;
}

static tf_status ndjson_stats(void *instance, tf_plugin_stats *out) {
    ndjson_sink *sink = instance;
    if (out == NULL || out->struct_size < sizeof(tf_plugin_stats)) return TF_STATUS_INVALID_ARGUMENT;
    out->records_written = sink->records_written;
    out->bytes_written = sink->bytes_written;
    return TF_STATUS_OK;
}

static void ndjson_destroy(void *instance) {
    ndjson_sink *sink = instance;
    if (sink == NULL) return;
    fflush(sink->out);
    if (sink->owns_out) fclose(sink->out);
    free(sink);
}

static const tf_sink_descriptor DESCRIPTOR = {
    .magic = TF_MAGIC,
    .abi_major = TF_ABI_MAJOR,
    .abi_minor = TF_ABI_MINOR,
    .struct_size = sizeof(tf_sink_descriptor),
    .build_flags = TF_BUILD_FLAGS_NATIVE,
    .name = TF_STR("c-ndjson"),
    .version = TF_STR("1.0.0"),
    .record_kinds = TF_KIND_MASK(TF_KIND_QUOTE) | TF_KIND_MASK(TF_KIND_TRADE) |
                    TF_KIND_MASK(TF_KIND_SPREAD_SAMPLE) | TF_KIND_MASK(TF_KIND_OPPORTUNITY) |
                    TF_KIND_MASK(TF_KIND_GAP),
    .create = ndjson_create,
    .on_batch = ndjson_on_batch,
    .flush = ndjson_flush,
    .on_tick = NULL,
    .stats = ndjson_stats,
    .destroy = ndjson_destroy,
};

__attribute__((visibility("default"))) const tf_sink_descriptor *tickflow_sink_entry_v1(void) {
    return &DESCRIPTOR;
}
