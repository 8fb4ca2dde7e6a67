//! Example sink plugin built with the SDK: writes every record it receives as one NDJSON line,
//! to stdout or to the file named by `path` in its config.
//!
//! It depends on `tickflow-sdk` only (a tidy test checks it) and shows the whole plugin surface:
//! config parsing, host logging, name lookup, a plugin metric, flush and stats.

use std::fmt::Write as _;
use std::io::Write as _;

use tickflow_sdk::abi::PluginStats;
use tickflow_sdk::{Batch, HostHandle, Metric, RecordKind, Sink, SinkError};

/// `[sinks.config]` of this plugin.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutConfig {
    /// Write here instead of stdout (created or truncated at start).
    pub path: Option<std::path::PathBuf>,
    /// Add `"symbol"` and `"venue"` names looked up through the host.
    pub names: bool,
}

pub struct StdoutSink {
    host: HostHandle,
    names: bool,
    out: std::io::BufWriter<Box<dyn std::io::Write + Send>>,
    line: String,
    records_metric: Option<Metric>,
    records_written: u64,
    bytes_written: u64,
}

impl Sink for StdoutSink {
    type Config = StdoutConfig;
    const NAME: &'static str = "example-stdout";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const RECORD_KINDS: &'static [RecordKind] = &RecordKind::ALL;

    fn create(host: HostHandle, config: StdoutConfig) -> Result<StdoutSink, SinkError> {
        let out: Box<dyn std::io::Write + Send> = match &config.path {
            Some(path) => Box::new(std::fs::File::create(path).map_err(|error| {
                SinkError::config(format!("cannot create {}: {error}", path.display()))
            })?),
            None => Box::new(std::io::stdout()),
        };
        host.info("example-stdout sink created");
        Ok(StdoutSink {
            host,
            names: config.names,
            out: std::io::BufWriter::with_capacity(64 * 1024, out),
            line: String::with_capacity(512),
            records_metric: host.counter(
                "example_stdout_records_written",
                "Records written by the example stdout sink",
            ),
            records_written: 0,
            bytes_written: 0,
        })
    }

    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        match batch {
            Batch::Quotes(quotes) => {
                for quote in quotes {
                    self.begin("quote", quote.symbol_id.0, quote.venue_id.0);
                    let _ = write!(
                        self.line,
                        ",\"bid\":{},\"bid_qty\":{},\"ask\":{},\"ask_qty\":{},\"ts_exchange_ns\":{},\"ts_recv_ns\":{},\"seq\":{},\"flags\":{}}}",
                        json_number(quote.bid),
                        json_number(quote.bid_qty),
                        json_number(quote.ask),
                        json_number(quote.ask_qty),
                        quote.ts_exchange_ns,
                        quote.ts_recv_ns,
                        quote.seq,
                        quote.flags
                    );
                    self.end()?;
                }
            }
            Batch::Trades(trades) => {
                for trade in trades {
                    self.begin("trade", trade.symbol_id.0, trade.venue_id.0);
                    let _ = write!(
                        self.line,
                        ",\"price\":{},\"qty\":{},\"ts_exchange_ns\":{},\"ts_recv_ns\":{},\"side\":{},\"flags\":{},\"trade_id\":\"",
                        json_number(trade.price),
                        json_number(trade.qty),
                        trade.ts_exchange_ns,
                        trade.ts_recv_ns,
                        trade.side,
                        trade.flags
                    );
                    // Trade ids are ASCII graphic characters or a packed UUID: no JSON escaping needed
                    // except for `"` and `\`, which we replace.
                    let start = self.line.len();
                    let _ = trade.write_trade_id(&mut self.line);
                    let escaped: String = self.line[start..]
                        .chars()
                        .map(|c| if c == '"' || c == '\\' { '_' } else { c })
                        .collect();
                    self.line.truncate(start);
                    self.line.push_str(&escaped);
                    // The exact bytes too (every one of the 23, used or not), for checking.
                    let _ = write!(
                        self.line,
                        "\",\"trade_id_len\":{},\"trade_id_hex\":\"",
                        trade.trade_id_len
                    );
                    for byte in trade.trade_id {
                        let _ = write!(self.line, "{byte:02x}");
                    }
                    self.line.push_str("\"}");
                    self.end()?;
                }
            }
            Batch::Spreads(samples) => {
                for sample in samples {
                    self.begin("spread_sample", sample.symbol_id.0, sample.buy_venue_id.0);
                    let _ = write!(
                        self.line,
                        ",\"sell_venue_id\":{},\"bucket_start_ns\":{},\"bucket_duration_ns\":{},\"last_bp\":{},\"min_bp\":{},\"max_bp\":{},\"mean_bp\":{},\"window_mean_bp\":{},\"window_std_bp\":{},\"band_lower_bp\":{},\"band_upper_bp\":{},\"samples\":{}}}",
                        sample.sell_venue_id.0,
                        sample.bucket_start_ns,
                        sample.bucket_duration_ns,
                        json_number(sample.last_bp),
                        json_number(sample.min_bp),
                        json_number(sample.max_bp),
                        json_number(sample.mean_bp),
                        json_number(sample.window_mean_bp),
                        json_number(sample.window_std_bp),
                        json_number(sample.band_lower_bp),
                        json_number(sample.band_upper_bp),
                        sample.samples
                    );
                    self.end()?;
                }
            }
            Batch::Opportunities(events) => {
                for event in events {
                    self.begin("opportunity", event.symbol_id.0, event.buy_venue_id.0);
                    let _ = write!(
                        self.line,
                        ",\"sell_venue_id\":{},\"ts_ns\":{},\"started_ns\":{},\"threshold_bp\":{},\"spread_bp\":{},\"peak_bp\":{},\"event\":{}}}",
                        event.sell_venue_id.0,
                        event.ts_ns,
                        event.started_ns,
                        json_number(event.threshold_bp),
                        json_number(event.spread_bp),
                        json_number(event.peak_bp),
                        event.kind
                    );
                    self.end()?;
                }
            }
            Batch::Gaps(gaps) => {
                for gap in gaps {
                    self.begin("gap", gap.symbol_id.0, gap.venue_id.0);
                    let _ = write!(
                        self.line,
                        ",\"ts_ns\":{},\"connection_id\":{},\"gap_kind\":{}}}",
                        gap.ts_ns, gap.connection_id, gap.kind
                    );
                    self.end()?;
                }
            }
            Batch::Telemetry(samples) => {
                for sample in samples {
                    self.line.clear();
                    let _ = write!(
                        self.line,
                        "{{\"kind\":\"telemetry\",\"ts_ns\":{},\"uptime_ns\":{},\"rss_bytes\":{},\"budget_bytes\":{},\"records_in\":{},\"records_out\":{},\"ring_drops\":{},\"decode_errors\":{},\"reconnects\":{},\"windows_live\":{},\"windows_evicted\":{},\"sink_drops\":{},\"connections_up\":{},\"shards\":{}}}",
                        sample.ts_ns,
                        sample.uptime_ns,
                        sample.rss_bytes,
                        sample.budget_bytes,
                        sample.records_in,
                        sample.records_out,
                        sample.ring_drops,
                        sample.decode_errors,
                        sample.reconnects,
                        sample.windows_live,
                        sample.windows_evicted,
                        sample.sink_drops,
                        sample.connections_up,
                        sample.shards
                    );
                    self.end()?;
                }
            }
            Batch::VenueStatus(statuses) => {
                for status in statuses {
                    self.line.clear();
                    let _ = write!(
                        self.line,
                        "{{\"kind\":\"venue_status\",\"ts_ns\":{},\"venue_id\":{},\"last_data_ns\":{},\"reconnects\":{},\"connections_up\":{},\"connections_planned\":{}}}",
                        status.ts_ns,
                        status.venue_id.0,
                        status.last_data_ns,
                        status.reconnects,
                        status.connections_up,
                        status.connections_planned
                    );
                    self.end()?;
                }
            }
        }
        if let Some(metric) = &self.records_metric {
            metric.add(batch.len() as u64);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()?;
        Ok(())
    }

    fn stats(&self) -> PluginStats {
        PluginStats {
            records_written: self.records_written,
            bytes_written: self.bytes_written,
            ..PluginStats::default()
        }
    }
}

impl StdoutSink {
    /// Starts a line with the fields every record has.
    fn begin(&mut self, kind: &str, symbol_id: u32, venue_id: u16) {
        self.line.clear();
        let _ = write!(
            self.line,
            "{{\"kind\":\"{kind}\",\"symbol_id\":{symbol_id},\"venue_id\":{venue_id}"
        );
        if self.names {
            if let Some(symbol) = self.host.symbol_name(tickflow_sdk::SymbolId(symbol_id)) {
                let _ = write!(self.line, ",\"symbol\":\"{symbol}\"");
            }
            if let Some(venue) = self.host.venue_name(tickflow_sdk::VenueId(venue_id)) {
                let _ = write!(self.line, ",\"venue\":\"{venue}\"");
            }
        }
    }

    /// Ends the line and writes it.
    fn end(&mut self) -> Result<(), SinkError> {
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        self.records_written += 1;
        self.bytes_written += self.line.len() as u64;
        Ok(())
    }
}

/// JSON has no NaN or infinity: those become `null`.
fn json_number(value: f64) -> JsonNumber {
    JsonNumber(value)
}

struct JsonNumber(f64);

impl std::fmt::Display for JsonNumber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_finite() {
            write!(formatter, "{}", self.0)
        } else {
            formatter.write_str("null")
        }
    }
}

tickflow_sdk::export_sink!(StdoutSink);
