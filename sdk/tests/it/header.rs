//! `sdk/include/tickflow_sink.h` against the Rust definitions: a C program compiled against the
//! header prints every size, offset and constant, and each must equal the Rust value.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

use tickflow_sdk::abi::*;
use tickflow_sdk::records::*;

/// (C expression, Rust value) pairs; the C side prints `expression value` per line.
fn expected() -> Vec<(String, u64)> {
    let mut rows: Vec<(String, u64)> = Vec::new();
    macro_rules! layout {
        ($c_type:literal, $rust_type:ty, [$($field:ident),* $(,)?]) => {
            rows.push((format!("sizeof({})", $c_type), size_of::<$rust_type>() as u64));
            $(rows.push((
                format!("offsetof({}, {})", $c_type, stringify!($field)),
                offset_of!($rust_type, $field) as u64,
            ));)*
        };
    }
    layout!(
        "tf_quote",
        Quote,
        [
            bid,
            bid_qty,
            ask,
            ask_qty,
            ts_exchange_ns,
            ts_recv_ns,
            seq,
            symbol_id,
            venue_id,
            flags,
            reserved
        ]
    );
    layout!(
        "tf_trade",
        Trade,
        [
            price,
            qty,
            ts_exchange_ns,
            ts_recv_ns,
            symbol_id,
            venue_id,
            side,
            flags,
            trade_id_len,
            trade_id
        ]
    );
    layout!(
        "tf_spread_sample",
        SpreadSample,
        [
            bucket_start_ns,
            bucket_duration_ns,
            last_bp,
            min_bp,
            max_bp,
            mean_bp,
            window_mean_bp,
            window_std_bp,
            band_lower_bp,
            band_upper_bp,
            samples,
            symbol_id,
            buy_venue_id,
            sell_venue_id,
            flags
        ]
    );
    layout!(
        "tf_opportunity_event",
        OpportunityEvent,
        [
            ts_ns,
            started_ns,
            threshold_bp,
            spread_bp,
            peak_bp,
            symbol_id,
            buy_venue_id,
            sell_venue_id,
            kind,
            flags,
            reserved
        ]
    );
    layout!(
        "tf_gap_event",
        GapEvent,
        [ts_ns, connection_id, symbol_id, venue_id, kind, reserved]
    );
    layout!(
        "tf_telemetry",
        Telemetry,
        [
            ts_ns,
            uptime_ns,
            rss_bytes,
            budget_bytes,
            records_in,
            records_out,
            ring_drops,
            decode_errors,
            reconnects,
            windows_live,
            windows_evicted,
            sink_drops,
            connections_up,
            shards,
            reserved
        ]
    );
    layout!(
        "tf_venue_status",
        VenueStatus,
        [
            ts_ns,
            last_data_ns,
            reconnects,
            connections_up,
            connections_planned,
            venue_id,
            reserved
        ]
    );
    layout!("tf_str", StrRef, [ptr, len]);
    layout!(
        "tf_plugin_stats",
        PluginStats,
        [
            struct_size,
            reserved,
            records_written,
            records_dropped,
            bytes_written,
            errors
        ]
    );
    layout!(
        "tf_host",
        Host,
        [
            struct_size,
            abi_major,
            abi_minor,
            host_data,
            log,
            symbol_name,
            venue_name,
            metric_register,
            counter_add,
            gauge_set,
            histogram_record,
            clock_ns,
            publish_endpoint,
            metrics_snapshot
        ]
    );
    layout!("tf_metric_label", MetricLabel, [name, value]);
    layout!(
        "tf_metric_sample",
        MetricSample,
        [
            family,
            help,
            kind,
            label_count,
            labels,
            value,
            count,
            bucket_count,
            reserved,
            bucket_upper_bounds,
            bucket_counts
        ]
    );
    layout!(
        "tf_sink_descriptor",
        Descriptor,
        [
            magic,
            abi_major,
            abi_minor,
            struct_size,
            build_flags,
            name,
            version,
            record_kinds,
            reserved,
            create,
            on_batch,
            flush,
            on_tick,
            stats,
            destroy,
            memory_bound
        ]
    );
    let constants: &[(&str, u64)] = &[
        ("TF_MAGIC", MAGIC),
        ("TF_ABI_MAJOR", ABI_MAJOR.into()),
        ("TF_ABI_MINOR", ABI_MINOR.into()),
        ("TF_STATUS_OK", STATUS_OK as u64),
        ("TF_STATUS_ERROR", STATUS_ERROR as u64),
        ("TF_STATUS_INVALID_CONFIG", STATUS_INVALID_CONFIG as u64),
        ("TF_STATUS_PANIC", STATUS_PANIC as u64),
        ("TF_STATUS_UNSUPPORTED_KIND", STATUS_UNSUPPORTED_KIND as u64),
        ("TF_STATUS_INVALID_ARGUMENT", STATUS_INVALID_ARGUMENT as u64),
        ("TF_BUILD_LITTLE_ENDIAN", BUILD_LITTLE_ENDIAN),
        ("TF_BUILD_POINTER_64", BUILD_POINTER_64),
        ("TF_BUILD_MUST_MATCH_MASK", BUILD_MUST_MATCH_MASK),
        ("TF_BUILD_DEBUG", BUILD_DEBUG),
        ("TF_BUILD_RUST_SDK", BUILD_RUST_SDK),
        (
            "(TF_BUILD_FLAGS_NATIVE & TF_BUILD_MUST_MATCH_MASK)",
            native_build_flags() & BUILD_MUST_MATCH_MASK,
        ),
        ("TF_KIND_QUOTE", RecordKind::Quote as u64),
        ("TF_KIND_TRADE", RecordKind::Trade as u64),
        ("TF_KIND_SPREAD_SAMPLE", RecordKind::SpreadSample as u64),
        ("TF_KIND_OPPORTUNITY", RecordKind::Opportunity as u64),
        ("TF_KIND_GAP", RecordKind::Gap as u64),
        ("TF_KIND_TELEMETRY", RecordKind::Telemetry as u64),
        ("TF_KIND_VENUE_STATUS", RecordKind::VenueStatus as u64),
        ("TF_FLAG_HAS_TS_EXCHANGE", FLAG_HAS_TS_EXCHANGE.into()),
        ("TF_FLAG_HAS_SEQ", FLAG_HAS_SEQ.into()),
        ("TF_FLAG_TRADE_ID_UUID", FLAG_TRADE_ID_UUID.into()),
        ("TF_SIDE_UNKNOWN", Side::Unknown as u64),
        ("TF_SIDE_BUY", Side::Buy as u64),
        ("TF_SIDE_SELL", Side::Sell as u64),
        ("TF_TRADE_ID_CAPACITY_BYTES", TRADE_ID_CAPACITY_BYTES as u64),
        ("TF_OPPORTUNITY_START", OPPORTUNITY_START.into()),
        ("TF_OPPORTUNITY_END", OPPORTUNITY_END.into()),
        ("TF_GAP_DISCONNECT", GAP_DISCONNECT.into()),
        ("TF_GAP_RECONNECT", GAP_RECONNECT.into()),
        ("TF_GAP_QUOTE_WITHDRAWN", GAP_QUOTE_WITHDRAWN.into()),
        ("TF_GAP_SYMBOL_RETIRED", GAP_SYMBOL_RETIRED.into()),
        ("TF_MEMORY_BOUND_NOT_STATED", MEMORY_BOUND_NOT_STATED),
        ("TF_DESCRIPTOR_SIZE_V1_0", DESCRIPTOR_SIZE_V1_0.into()),
        ("TF_DESCRIPTOR_SIZE_V1_2", DESCRIPTOR_SIZE_V1_2.into()),
        ("TF_HOST_SIZE_V1_0", HOST_SIZE_V1_0.into()),
        ("TF_HOST_SIZE_V1_2", HOST_SIZE_V1_2.into()),
        ("TF_METRIC_TEXT_MAX_BYTES", METRIC_TEXT_MAX_BYTES as u64),
        ("TF_SPREAD_FLAG_WARMING", SPREAD_FLAG_WARMING.into()),
        ("TF_OPPORTUNITY_FLAG_NET", OPPORTUNITY_FLAG_NET.into()),
        ("TF_LOG_ERROR", LOG_ERROR.into()),
        ("TF_LOG_WARN", LOG_WARN.into()),
        ("TF_LOG_INFO", LOG_INFO.into()),
        ("TF_LOG_DEBUG", LOG_DEBUG.into()),
        ("TF_LOG_TRACE", LOG_TRACE.into()),
        ("TF_METRIC_COUNTER", METRIC_COUNTER.into()),
        ("TF_METRIC_GAUGE", METRIC_GAUGE.into()),
        ("TF_METRIC_HISTOGRAM", METRIC_HISTOGRAM.into()),
    ];
    rows.extend(
        constants
            .iter()
            .map(|(name, value)| (name.to_string(), *value)),
    );
    rows
}

#[test]
fn c_header_matches_rust_definitions() {
    let rows = expected();
    let mut program = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"tickflow_sink.h\"\nint main(void) {\n",
    );
    for (expression, _) in &rows {
        program.push_str(&format!(
            "    printf(\"%s %llu\\n\", \"{expression}\", (unsigned long long)({expression}));\n"
        ));
    }
    program.push_str("    return 0;\n}\n");
    let dir = crate::scratch_dir("header");
    std::fs::write(dir.join("layout.c"), program).expect("scratch dir is writable");
    let include = crate::sdk_dir().join("include");
    crate::cc(
        &[
            "-std=c11".as_ref(),
            "-Wall".as_ref(),
            "-Wextra".as_ref(),
            "-Werror".as_ref(),
            "-I".as_ref(),
            include.as_os_str(),
            "-o".as_ref(),
            "layout".as_ref(),
            "layout.c".as_ref(),
        ],
        &dir,
    );
    let output = std::process::Command::new(dir.join("layout"))
        .output()
        .expect("the compiled layout program runs");
    assert!(output.status.success());
    let printed: BTreeMap<String, u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect();
    let mismatches: Vec<String> = rows
        .iter()
        .filter(|(name, value)| printed.get(name) != Some(value))
        .map(|(name, value)| format!("{name}: C has {:?}, Rust has {value}", printed.get(name)))
        .collect();
    assert!(
        mismatches.is_empty(),
        "header and Rust disagree:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn c_example_plugin_compiles_warning_free() {
    let dir = crate::scratch_dir("c-example");
    let include = crate::sdk_dir().join("include");
    let source = crate::sdk_dir().join("examples/c/ndjson_sink.c");
    crate::cc(
        &[
            "-std=c11".as_ref(),
            "-shared".as_ref(),
            "-fPIC".as_ref(),
            "-Wall".as_ref(),
            "-Wextra".as_ref(),
            "-Werror".as_ref(),
            "-I".as_ref(),
            include.as_os_str(),
            "-o".as_ref(),
            "libndjson_sink.so".as_ref(),
            source.as_os_str(),
        ],
        &dir,
    );
    assert!(dir.join("libndjson_sink.so").exists());
}
