//! The sinks' counters, `on_batch` latency and the plugins' own metrics in the Prometheus text
//! exposition format. Rendering only: the numbers come from `snapshot` and the plugins' metric
//! tables.

use std::fmt::Write as _;

use crate::callbacks::PluginMetricKind;
use crate::{RunningSink, SinkStats, snapshot};

/// Appends every running sink's families to `out`.
pub(crate) fn render_metrics(sinks: &[RunningSink], out: &mut String) {
    let stats: Vec<SinkStats> = sinks.iter().map(snapshot).collect();
    type Family = (&'static str, &'static str, fn(&SinkStats) -> u64);
    let families: [Family; 14] = [
        (
            "tickflow_sink_enqueued_total",
            "Records accepted into the sink's rings",
            |s| s.enqueued,
        ),
        (
            "tickflow_sink_delivered_total",
            "Records the plugin accepted",
            |s| s.delivered,
        ),
        (
            "tickflow_sink_dropped_full_total",
            "Records dropped: ring full",
            |s| s.dropped_full,
        ),
        (
            "tickflow_sink_dropped_oldest_total",
            "Records displaced by newer ones (drop_oldest)",
            |s| s.dropped_oldest,
        ),
        (
            "tickflow_sink_conflated_total",
            "Records replaced by a newer one of the same key (conflate)",
            |s| s.conflated,
        ),
        (
            "tickflow_sink_block_timeouts_total",
            "Records dropped after the block timeout",
            |s| s.block_timeouts,
        ),
        (
            "tickflow_sink_dropped_disabled_total",
            "Records dropped: sink disabled",
            |s| s.dropped_disabled,
        ),
        (
            "tickflow_sink_dropped_unavailable_total",
            "Records dropped: no instance running (restart backoff)",
            |s| s.dropped_unavailable,
        ),
        (
            "tickflow_sink_failed_records_total",
            "Records in batches the plugin failed",
            |s| s.failed_records,
        ),
        ("tickflow_sink_batches_total", "on_batch calls", |s| {
            s.batches
        }),
        (
            "tickflow_sink_errors_total",
            "Plugin calls that returned an error",
            |s| s.errors,
        ),
        (
            "tickflow_sink_panics_total",
            "Plugin calls that panicked (caught in the plugin)",
            |s| s.panics,
        ),
        (
            "tickflow_sink_restarts_total",
            "Plugin instance restarts",
            |s| s.restarts,
        ),
        (
            "tickflow_sink_disabled",
            "1 when the sink was disabled for failing",
            |s| u64::from(s.disabled),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for sink in &stats {
            let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", sink.name, value(sink));
        }
    }
    let _ = writeln!(
        out,
        "# HELP tickflow_sink_on_batch_ns on_batch call time per sink"
    );
    let _ = writeln!(out, "# TYPE tickflow_sink_on_batch_ns summary");
    for sink in &stats {
        for (quantile, value) in [
            ("0.5", sink.on_batch_ns_p50),
            ("0.99", sink.on_batch_ns_p99),
            ("0.999", sink.on_batch_ns_p999),
            ("1", sink.on_batch_ns_max),
        ] {
            let _ = writeln!(
                out,
                "tickflow_sink_on_batch_ns{{sink=\"{}\",quantile=\"{quantile}\"}} {value}",
                sink.name
            );
        }
    }
    // Plugin metrics grouped by family: two sinks of one plugin share a family, whose HELP and
    // TYPE lines appear once. A family's kind is the first registration's; a sink whose plugin
    // registered the same name with another kind is left out (the exposition allows one type).
    struct PluginFamily {
        kind: PluginMetricKind,
        help: String,
        samples: String,
    }
    let mut families: std::collections::BTreeMap<String, PluginFamily> = Default::default();
    for sink in sinks {
        for metric in sink.metrics.values() {
            let name = format!("tickflow_plugin_{}", metric.name);
            let family = families
                .entry(name.clone())
                .or_insert_with(|| PluginFamily {
                    kind: metric.kind,
                    help: metric.help.replace('\\', "\\\\").replace('\n', "\\n"),
                    samples: String::new(),
                });
            if family.kind != metric.kind {
                continue;
            }
            let out = &mut family.samples;
            match metric.kind {
                PluginMetricKind::Counter | PluginMetricKind::Gauge => {
                    let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", sink.name, metric.value);
                }
                PluginMetricKind::Histogram => {
                    let (count, p50, p99, max) = metric.histogram.unwrap_or_default();
                    for (quantile, value) in [("0.5", p50), ("0.99", p99), ("1", max)] {
                        let _ = writeln!(
                            out,
                            "{name}{{sink=\"{}\",quantile=\"{quantile}\"}} {value}",
                            sink.name
                        );
                    }
                    let _ = writeln!(out, "{name}_count{{sink=\"{}\"}} {count}", sink.name);
                }
            }
        }
    }
    for (name, family) in families {
        let kind = match family.kind {
            PluginMetricKind::Counter => "counter",
            PluginMetricKind::Gauge => "gauge",
            PluginMetricKind::Histogram => "summary",
        };
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        out.push_str(&family.samples);
    }
}
