//! The samples of ABI 1.2 `metrics_snapshot`: [`Sample`], the [`EngineMetricsSource`] trait (the
//! binary's venues, shards and memory budget; `metrics_hub::MetricsHub` adds the sinks), and
//! their conversion to the ABI's `MetricSample` for a plugin's visitor.
//!
//! Bounded: a snapshot walks fixed counters; the only allocations are the per-snapshot copies of
//! the sinks' list and plugin metric values (at most `MAX_SINKS` × `MAX_PLUGIN_METRICS`); texts
//! passed to a plugin are cut to `METRIC_TEXT_MAX_BYTES`, labels to [`MAX_LABELS`]. Nothing here
//! touches the data path: it only loads atomics and briefly locks the histograms the runners
//! merge into once a second.

use std::ffi::c_void;

use tickflow_sdk::abi::{
    METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM, METRIC_TEXT_MAX_BYTES, MetricLabel,
    MetricSample, MetricVisitFn, StrRef,
};

/// Most labels one sample carries (more are cut).
pub const MAX_LABELS: usize = 8;

/// A sample's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    Counter,
    Gauge,
    Histogram,
}

/// A histogram's buckets: `cumulative[i]` observations were `<= upper_bounds[i]`.
#[derive(Clone, Copy, Debug)]
pub struct HistogramSample<'a> {
    pub upper_bounds: &'a [f64],
    pub cumulative: &'a [u64],
    pub count: u64,
    pub sum: f64,
}

/// One sample, borrowed for a visit. Samples of one family must be visited one after another.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// The full family name (`tickflow_venue_frames_total`).
    pub family: &'a str,
    pub help: &'a str,
    pub kind: SampleKind,
    pub labels: &'a [(&'a str, &'a str)],
    /// Counter total or gauge value (a histogram's is in `histogram`).
    pub value: f64,
    pub histogram: Option<HistogramSample<'a>>,
}

impl<'a> Sample<'a> {
    pub fn counter(
        family: &'a str,
        help: &'a str,
        labels: &'a [(&'a str, &'a str)],
        value: u64,
    ) -> Self {
        Sample {
            family,
            help,
            kind: SampleKind::Counter,
            labels,
            value: value as f64,
            histogram: None,
        }
    }
    pub fn gauge(
        family: &'a str,
        help: &'a str,
        labels: &'a [(&'a str, &'a str)],
        value: f64,
    ) -> Self {
        Sample {
            family,
            help,
            kind: SampleKind::Gauge,
            labels,
            value,
            histogram: None,
        }
    }
}

/// What the binary exports of the engine itself (feeds, shards, memory budget): set once after
/// start with [`crate::SinkHost::set_engine_metrics`]. `visit` is called on a plugin's thread
/// (an exporter's HTTP request) and must only read counters.
pub trait EngineMetricsSource: Send + Sync {
    /// Calls `out` once per sample, the samples of one family one after another.
    fn visit(&self, out: &mut dyn FnMut(&Sample<'_>));
}

/// The longest prefix of `text` of at most `METRIC_TEXT_MAX_BYTES` bytes ending on a character
/// boundary.
fn cut(text: &str) -> StrRef {
    let mut end = text.len().min(METRIC_TEXT_MAX_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    StrRef {
        ptr: text.as_ptr(),
        len: end,
    }
}

/// Hands every sample of `hub` to a plugin's `visit`; returns how many were visited.
///
/// # Safety
/// `visit` must be a function safe to call with `visit_ctx` and a sample valid for the call.
pub(crate) unsafe fn visit_into_plugin(
    hub: &dyn EngineMetricsSource,
    visit: MetricVisitFn,
    visit_ctx: *mut c_void,
) -> u32 {
    let mut visited = 0u32;
    hub.visit(&mut |sample| {
        let mut labels = [MetricLabel {
            name: StrRef::from_static(""),
            value: StrRef::from_static(""),
        }; MAX_LABELS];
        let label_count = sample.labels.len().min(MAX_LABELS);
        for (slot, (name, value)) in labels.iter_mut().zip(sample.labels) {
            *slot = MetricLabel {
                name: cut(name),
                value: cut(value),
            };
        }
        let (count, bucket_count, bounds, cumulative) = match sample.histogram {
            Some(histogram) => {
                let len = histogram.upper_bounds.len().min(histogram.cumulative.len());
                (
                    histogram.count,
                    len as u32,
                    histogram.upper_bounds.as_ptr(),
                    histogram.cumulative.as_ptr(),
                )
            }
            None => (0, 0, std::ptr::null(), std::ptr::null()),
        };
        let raw = MetricSample {
            family: cut(sample.family),
            help: cut(sample.help),
            kind: match sample.kind {
                SampleKind::Counter => METRIC_COUNTER,
                SampleKind::Gauge => METRIC_GAUGE,
                SampleKind::Histogram => METRIC_HISTOGRAM,
            },
            label_count: label_count as u32,
            labels: if label_count == 0 {
                std::ptr::null()
            } else {
                labels.as_ptr()
            },
            value: sample
                .histogram
                .map_or(sample.value, |histogram| histogram.sum),
            count,
            bucket_count,
            reserved: 0,
            bucket_upper_bounds: bounds,
            bucket_counts: cumulative,
        };
        // SAFETY: per this function's contract; `raw` and what it points at live for the call.
        unsafe { visit(visit_ctx, &raw) };
        visited = visited.saturating_add(1);
    });
    visited
}
