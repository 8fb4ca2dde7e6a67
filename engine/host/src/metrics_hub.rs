//! Everything `metrics_snapshot` (ABI 1.2) visits, in one place shared by every sink's host
//! context: the binary's [`EngineMetricsSource`], then each running sink's counters (by policy
//! and reason, by record kind, `on_batch` latency), then the metrics the plugins registered.
//!
//! Bounded: a snapshot copies the sinks' list (at most `MAX_SINKS`) and the plugins' metric values
//! (at most `MAX_PLUGIN_METRICS` each); no lock is held while a visitor runs.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use tickflow_sdk::records::RecordKind;

use crate::callbacks::{PluginMetricKind, PluginMetrics};
use crate::config::SinkPolicy;
use crate::engine_metrics::{EngineMetricsSource, HistogramSample, Sample, SampleKind};
use crate::lane::LaneCounters;
use crate::runner::RunnerShared;

/// What a snapshot reads of one running sink (clones of the `Arc`s its runner and lanes write).
pub(crate) struct ExportedSink {
    pub name: String,
    pub plugin_name: &'static str,
    pub policy: SinkPolicy,
    pub runner_shared: Arc<RunnerShared>,
    pub lane_counters: Vec<Arc<CachePadded<LaneCounters>>>,
    pub metrics: Arc<PluginMetrics>,
}

/// Shared by every sink's host context: the engine's source and the running sinks.
#[derive(Default)]
pub struct MetricsHub {
    engine: Mutex<Option<Arc<dyn EngineMetricsSource>>>,
    sinks: Mutex<Vec<Arc<ExportedSink>>>,
}

impl std::fmt::Debug for MetricsHub {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("MetricsHub").finish_non_exhaustive()
    }
}

impl EngineMetricsSource for MetricsHub {
    fn visit(&self, out: &mut dyn FnMut(&Sample<'_>)) {
        MetricsHub::visit(self, out);
    }
}

impl MetricsHub {
    pub(crate) fn set_engine(&self, source: Arc<dyn EngineMetricsSource>) {
        *self
            .engine
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(source);
    }

    pub(crate) fn add_sink(&self, sink: Arc<ExportedSink>) {
        self.sinks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(sink);
    }

    /// Every sample: the engine's, then the sinks', then the plugins' registered metrics.
    pub fn visit(&self, out: &mut dyn FnMut(&Sample<'_>)) {
        // Cloned out so no lock is held while a plugin's visitor runs.
        let engine = self
            .engine
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        if let Some(engine) = engine {
            engine.visit(out);
        }
        let sinks: Vec<Arc<ExportedSink>> = self
            .sinks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        visit_sinks(&sinks, out);
        visit_plugin_metrics(&sinks, out);
    }
}

/// `on_batch` latency buckets, in seconds.
const ON_BATCH_BOUNDS_SECONDS: [f64; 14] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];
/// Buckets of plugin histograms (their unit is the plugin's): decades.
const PLUGIN_BOUNDS: [f64; 13] = [
    1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
];

/// Cumulative counts of `histogram` at `bounds` (in the histogram's unit × `scale`).
fn cumulative<const N: usize>(
    histogram: &Histogram<u64>,
    bounds: &[f64; N],
    scale: f64,
) -> [u64; N] {
    std::array::from_fn(|index| {
        let bound = (bounds[index] * scale) as u64;
        if histogram.is_empty() {
            0
        } else {
            histogram.count_between(0, bound)
        }
    })
}

fn visit_sinks(sinks: &[Arc<ExportedSink>], out: &mut dyn FnMut(&Sample<'_>)) {
    type Family = (&'static str, &'static str, fn(&ExportedSink) -> u64);
    let counters: [Family; 10] = [
        (
            "tickflow_sink_records_in_total",
            "Records accepted into the sink's lanes",
            |s| {
                s.lane_counters
                    .iter()
                    .map(|c| c.enqueued.load(Ordering::Relaxed))
                    .sum()
            },
        ),
        (
            "tickflow_sink_records_out_total",
            "Records the plugin accepted (on_batch returned OK)",
            |s| s.runner_shared.counters.delivered.load(Ordering::Relaxed),
        ),
        ("tickflow_sink_batches_total", "on_batch calls", |s| {
            s.runner_shared.counters.batches.load(Ordering::Relaxed)
        }),
        (
            "tickflow_sink_errors_total",
            "Plugin calls that returned an error status",
            |s| s.runner_shared.counters.errors.load(Ordering::Relaxed),
        ),
        (
            "tickflow_sink_panics_total",
            "Plugin calls that panicked (caught in the plugin)",
            |s| s.runner_shared.counters.panics.load(Ordering::Relaxed),
        ),
        (
            "tickflow_sink_restarts_total",
            "Plugin instance restarts",
            |s| s.runner_shared.counters.restarts.load(Ordering::Relaxed),
        ),
        (
            "tickflow_sink_plugin_records_written_total",
            "Records the plugin says it wrote (its stats)",
            |s| {
                s.runner_shared
                    .counters
                    .plugin_records_written
                    .load(Ordering::Relaxed)
            },
        ),
        (
            "tickflow_sink_plugin_records_dropped_total",
            "Records the plugin says it dropped itself (its stats)",
            |s| {
                s.runner_shared
                    .counters
                    .plugin_records_dropped
                    .load(Ordering::Relaxed)
            },
        ),
        (
            "tickflow_sink_plugin_written_bytes_total",
            "Bytes the plugin says it wrote (its stats)",
            |s| {
                s.runner_shared
                    .counters
                    .plugin_bytes_written
                    .load(Ordering::Relaxed)
            },
        ),
        (
            "tickflow_sink_plugin_errors_total",
            "Errors the plugin says it handled itself (its stats)",
            |s| {
                s.runner_shared
                    .counters
                    .plugin_errors
                    .load(Ordering::Relaxed)
            },
        ),
    ];
    for (family, help, value) in counters {
        for sink in sinks {
            let labels = [("sink", sink.name.as_str()), ("plugin", sink.plugin_name)];
            out(&Sample::counter(family, help, &labels, value(sink)));
        }
    }
    for sink in sinks {
        let disabled = sink.runner_shared.counters.disabled.load(Ordering::Relaxed);
        let labels = [("sink", sink.name.as_str())];
        out(&Sample::gauge(
            "tickflow_sink_disabled",
            "1 when the sink was disabled for failing",
            &labels,
            f64::from(u8::from(disabled)),
        ));
    }
    // Every loss by reason; the sink's policy says which reasons can occur.
    type Reason = (&'static str, fn(&ExportedSink) -> u64);
    let reasons: [Reason; 7] = [
        ("ring_full", |s| {
            s.lane_counters
                .iter()
                .map(|c| c.dropped_full.load(Ordering::Relaxed))
                .sum()
        }),
        ("displaced_oldest", |s| {
            s.lane_counters
                .iter()
                .map(|c| c.dropped_oldest.load(Ordering::Relaxed))
                .sum()
        }),
        ("conflated", |s| {
            s.lane_counters
                .iter()
                .map(|c| c.conflated.load(Ordering::Relaxed))
                .sum()
        }),
        ("block_timeout", |s| {
            s.lane_counters
                .iter()
                .map(|c| c.block_timeouts.load(Ordering::Relaxed))
                .sum()
        }),
        ("disabled", |s| {
            s.lane_counters
                .iter()
                .map(|c| c.dropped_disabled.load(Ordering::Relaxed))
                .sum()
        }),
        ("unavailable", |s| {
            s.runner_shared
                .counters
                .dropped_unavailable
                .load(Ordering::Relaxed)
        }),
        ("failed_batch", |s| {
            s.runner_shared
                .counters
                .failed_records
                .load(Ordering::Relaxed)
        }),
    ];
    for sink in sinks {
        for (reason, value) in reasons {
            let labels = [
                ("sink", sink.name.as_str()),
                ("policy", sink.policy.name()),
                ("reason", reason),
            ];
            out(&Sample::counter(
                "tickflow_sink_dropped_total",
                "Records lost on the way to the sink, by the sink's policy and the reason",
                &labels,
                value(sink),
            ));
        }
    }
    let kinds: Vec<[crate::SinkKindCounts; crate::lane::RECORD_KINDS]> = sinks
        .iter()
        .map(|sink| crate::runner::kind_counts(&sink.lane_counters, &sink.runner_shared.counters))
        .collect();
    for (family, help, delivered) in [
        (
            "tickflow_sink_kind_records_out_total",
            "Records the plugin accepted, by record kind",
            true,
        ),
        (
            "tickflow_sink_kind_dropped_total",
            "Records lost on the way to the sink, by record kind",
            false,
        ),
    ] {
        for (sink, counts) in sinks.iter().zip(&kinds) {
            for kind in RecordKind::ALL {
                let count = &counts[kind as usize];
                let value = if delivered {
                    count.delivered
                } else {
                    count.lost
                };
                let labels = [("sink", sink.name.as_str()), ("kind", kind.name())];
                out(&Sample::counter(family, help, &labels, value));
            }
        }
    }
    for sink in sinks {
        let (cumulative, count, sum) = {
            let histogram = sink
                .runner_shared
                .on_batch_ns
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let count = histogram.len();
            let sum = if count == 0 {
                0.0
            } else {
                histogram.mean() * count as f64 / 1e9
            };
            (
                cumulative(&histogram, &ON_BATCH_BOUNDS_SECONDS, 1e9),
                count,
                sum,
            )
        };
        let labels = [("sink", sink.name.as_str())];
        out(&Sample {
            family: "tickflow_sink_on_batch_duration_seconds",
            help: "on_batch call time (merged from the runner once a second)",
            kind: SampleKind::Histogram,
            labels: &labels,
            value: sum,
            histogram: Some(HistogramSample {
                upper_bounds: &ON_BATCH_BOUNDS_SECONDS,
                cumulative: &cumulative,
                count,
                sum,
            }),
        });
    }
}

/// The plugins' registered metrics, grouped by family across sinks (two sinks of one plugin
/// share a family). A family's kind is the first registration's; a sink that registered the
/// same name with another kind is left out of it.
fn visit_plugin_metrics(sinks: &[Arc<ExportedSink>], out: &mut dyn FnMut(&Sample<'_>)) {
    struct Entry {
        sink: usize,
        value: crate::callbacks::PluginMetricValue,
    }
    let mut families: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for (sink_index, sink) in sinks.iter().enumerate() {
        for value in sink.metrics.values() {
            families
                .entry(format!("tickflow_plugin_{}", value.name))
                .or_default()
                .push(Entry {
                    sink: sink_index,
                    value,
                });
        }
    }
    for (family, entries) in &families {
        let Some(first) = entries.first() else {
            continue;
        };
        let kind = first.value.kind;
        for entry in entries.iter().filter(|entry| entry.value.kind == kind) {
            let labels = [("sink", sinks[entry.sink].name.as_str())];
            let help = first.value.help.as_str();
            match kind {
                PluginMetricKind::Counter => out(&Sample::counter(
                    family,
                    help,
                    &labels,
                    entry.value.value as u64,
                )),
                PluginMetricKind::Gauge => {
                    out(&Sample::gauge(family, help, &labels, entry.value.value))
                }
                PluginMetricKind::Histogram => {
                    let (cumulative, count, sum) = sinks[entry.sink]
                        .metrics
                        .histogram_buckets(&entry.value.name, &PLUGIN_BOUNDS)
                        .unwrap_or(([0; PLUGIN_BOUNDS.len()], 0, 0.0));
                    out(&Sample {
                        family,
                        help,
                        kind: SampleKind::Histogram,
                        labels: &labels,
                        value: sum,
                        histogram: Some(HistogramSample {
                            upper_bounds: &PLUGIN_BOUNDS,
                            cumulative: &cumulative,
                            count,
                            sum,
                        }),
                    });
                }
            }
        }
    }
}
