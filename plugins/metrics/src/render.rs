//! The Prometheus text exposition (version 0.0.4) of everything `metrics_snapshot` visits:
//! `# HELP` and `# TYPE` once per family, label values escaped, histograms as `_bucket` (with
//! `le`, cumulative, `+Inf` last), `_sum` and `_count`. Bounded: rendering stops with
//! [`RenderError::TooLarge`] past `render_bytes_max`.

use std::collections::HashSet;
use std::fmt::Write as _;

use tickflow_sdk::{HostHandle, MetricKind, MetricSampleView};

/// Why an exposition was not produced.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the exposition is over render_bytes_max ({limit_bytes} bytes)")]
    TooLarge { limit_bytes: usize },
    #[error("the engine has no metrics_snapshot (a host older than ABI 1.2)")]
    NoSnapshot,
}

/// What one render produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub samples: u32,
    pub families: u32,
}

/// Renders the samples of one snapshot, one family at a time.
#[derive(Debug)]
pub struct Renderer<'a> {
    out: &'a mut String,
    limit_bytes: usize,
    current_family: String,
    /// Families already closed: a family seen again later (a host bug) is skipped rather than
    /// producing a second `# TYPE` line, which the format forbids.
    closed: HashSet<String>,
    skipping: bool,
    over_limit: bool,
    rendered: Rendered,
}

impl<'a> Renderer<'a> {
    pub fn new(out: &'a mut String, limit_bytes: usize) -> Renderer<'a> {
        out.clear();
        Renderer {
            out,
            limit_bytes,
            current_family: String::new(),
            closed: HashSet::new(),
            skipping: false,
            over_limit: false,
            rendered: Rendered::default(),
        }
    }

    /// Appends one sample (its family's header first when the family changes).
    pub fn sample(&mut self, sample: &MetricSampleView<'_>) {
        if self.over_limit {
            return;
        }
        let Some(kind) = sample.kind() else {
            return;
        };
        let family = exposition_name(sample.family(), kind);
        if !name_ok(&family) {
            return;
        }
        if family != self.current_family {
            let previous = std::mem::replace(&mut self.current_family, family.clone());
            if !previous.is_empty() {
                self.closed.insert(previous);
            }
            self.skipping = self.closed.contains(&family);
            if !self.skipping {
                let type_name = match kind {
                    MetricKind::Counter => "counter",
                    MetricKind::Gauge => "gauge",
                    MetricKind::Histogram => "histogram",
                };
                let _ = writeln!(self.out, "# HELP {family} {}", escape_help(sample.help()));
                let _ = writeln!(self.out, "# TYPE {family} {type_name}");
                self.rendered.families += 1;
            }
        }
        if self.skipping {
            return;
        }
        let labels = labels_text(sample);
        match kind {
            MetricKind::Counter | MetricKind::Gauge => {
                let _ = writeln!(
                    self.out,
                    "{family}{} {}",
                    braces(&labels, None),
                    number(sample.value())
                );
            }
            MetricKind::Histogram => {
                for (bound, count) in sample.buckets() {
                    let le = format!("le=\"{}\"", number(bound));
                    let _ = writeln!(
                        self.out,
                        "{family}_bucket{} {count}",
                        braces(&labels, Some(&le))
                    );
                }
                let _ = writeln!(
                    self.out,
                    "{family}_bucket{} {}",
                    braces(&labels, Some("le=\"+Inf\"")),
                    sample.count()
                );
                let _ = writeln!(
                    self.out,
                    "{family}_sum{} {}",
                    braces(&labels, None),
                    number(sample.value())
                );
                let _ = writeln!(
                    self.out,
                    "{family}_count{} {}",
                    braces(&labels, None),
                    sample.count()
                );
            }
        }
        self.rendered.samples += 1;
        if self.out.len() > self.limit_bytes {
            self.over_limit = true;
        }
    }

    pub fn finish(self) -> Result<Rendered, RenderError> {
        if self.over_limit {
            return Err(RenderError::TooLarge {
                limit_bytes: self.limit_bytes,
            });
        }
        Ok(self.rendered)
    }
}

/// Renders the host's whole snapshot into `out`.
pub fn render(
    host: &HostHandle,
    out: &mut String,
    limit_bytes: usize,
) -> Result<Rendered, RenderError> {
    let mut renderer = Renderer::new(out, limit_bytes);
    host.metrics_snapshot(|sample| renderer.sample(sample))
        .ok_or(RenderError::NoSnapshot)?;
    renderer.finish()
}

/// A counter's exposition name ends in `_total` (the naming convention promtool checks); a
/// plugin counter registered without it gets it appended.
fn exposition_name(family: &str, kind: MetricKind) -> String {
    if kind == MetricKind::Counter && !family.ends_with("_total") {
        format!("{family}_total")
    } else {
        family.to_string()
    }
}

fn name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(first) if first.is_ascii_alphabetic() || first == b'_' || first == b':')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':')
}

fn label_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(first) if first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        && name != "le"
}

fn labels_text(sample: &MetricSampleView<'_>) -> String {
    let mut text = String::new();
    for (name, value) in sample.labels() {
        if !label_name_ok(name) {
            continue;
        }
        if !text.is_empty() {
            text.push(',');
        }
        let _ = write!(text, "{name}=\"{}\"", escape_label(value));
    }
    text
}

fn braces(labels: &str, extra: Option<&str>) -> String {
    match (labels.is_empty(), extra) {
        (true, None) => String::new(),
        (true, Some(extra)) => format!("{{{extra}}}"),
        (false, None) => format!("{{{labels}}}"),
        (false, Some(extra)) => format!("{{{labels},{extra}}}"),
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as the format spells it (`+Inf`, `-Inf`, `NaN`).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}
