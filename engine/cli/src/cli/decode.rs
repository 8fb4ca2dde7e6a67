//! `tickflow decode`: frames in (one per line), normalized NDJSON records out: quotes, trades, and
//! `{"type":"quote_withdrawn",...}` for a best bid/ask frame whose book has an empty side.
//!
//! Symbols are registered on first sight (a tool checks any capture); errors go to stderr with
//! their line number. Exit 0 when every line decoded, 1 when any line failed, 2 on a usage error.

use std::io::{BufRead, BufWriter, Write};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use base64::Engine as _;

use tickflow::config::Config;
use tickflow_core::record::{FeedEvent, now_ns};
use tickflow_core::records::GAP_QUOTE_WITHDRAWN;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_decode::{
    DecodeCounters, DecodeError, DecodeErrorKind, DecodeLimits, Decoder, FrameEncoding,
    RecordBatch, decoder_for,
};

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// Venue whose protocol the frames speak.
    #[arg(long)]
    pub venue: String,
    /// Each line is base64 (binary frames: HTX gzip, MEXC protobuf).
    #[arg(long)]
    pub base64: bool,
    /// Decode without writing records; print one summary line.
    #[arg(long)]
    pub stats: bool,
    /// Input file; stdin when absent.
    pub file: Option<std::path::PathBuf>,
}

/// Exit codes.
const EXIT_OK: u8 = 0;
const EXIT_FRAME_ERRORS: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Most symbols one frame may register on first sight before its remaining errors stand.
const MAX_REGISTRATIONS_PER_FRAME: usize = 16;

pub fn run(args: DecodeArgs) -> anyhow::Result<u8> {
    let Some(venue) = Venue::from_name(&args.venue) else {
        let known: Vec<&str> = Venue::ALL.iter().map(|venue| venue.name()).collect();
        eprintln!(
            "tickflow decode: unknown venue {:?}; expected one of: {}",
            args.venue,
            known.join(", ")
        );
        return Ok(EXIT_USAGE);
    };
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => match std::fs::File::open(path) {
            Ok(file) => Box::new(std::io::BufReader::new(file)),
            Err(error) => {
                eprintln!("tickflow decode: cannot open {}: {error}", path.display());
                return Ok(EXIT_USAGE);
            }
        },
        None => Box::new(std::io::stdin().lock()),
    };
    let config = Config::default();
    let limits = DecodeLimits {
        max_frame_bytes: config.engine.max_frame_bytes,
        max_records_per_frame: config.engine.max_records_per_frame,
    };
    let registry = Arc::new(SymbolRegistry::new(config.engine.max_symbols));
    let mut session = Session {
        venue,
        decoder: decoder_for(venue, registry.clone(), limits),
        registry,
        out: RecordBatch::with_capacity(limits.max_records_per_frame),
        frame: Vec::new(),
        counters: DecodeCounters::new(),
        invalid_base64_lines: 0,
        decode_ns: 0,
    };
    let stdout = std::io::stdout();
    let mut writer = BufWriter::new(stdout.lock());
    let mut stderr = std::io::stderr().lock();
    let encoding = if args.base64 {
        FrameEncoding::Binary
    } else {
        FrameEncoding::Text
    };
    let mut input = input;
    // A line longer than the largest frame (in base64 when asked) is refused, not buffered.
    let max_line_bytes = if args.base64 {
        limits.max_frame_bytes.div_ceil(3) * 4 + 2
    } else {
        limits.max_frame_bytes + 2
    };
    let mut line = Vec::new();
    let mut line_number = 0u64;
    let mut failed = false;
    let mut seen_frame = false;
    loop {
        let (read, over_limit) = read_bounded_line(&mut *input, &mut line, max_line_bytes)
            .context("reading the input")?;
        if read == 0 {
            break;
        }
        line_number += 1;
        if over_limit {
            let error = DecodeError::new(
                DecodeErrorKind::Oversized,
                "line longer than max_frame_bytes",
            );
            session.counters.count(&Err(error));
            writeln!(stderr, "line {line_number}: {error}")?;
            failed = true;
            seen_frame = true;
            continue;
        }
        let text = line.trim_ascii_end();
        if text.is_empty() {
            continue;
        }
        let is_first_frame = !seen_frame;
        seen_frame = true;
        let bytes = if args.base64 {
            match base64::engine::general_purpose::STANDARD.decode(text.trim_ascii()) {
                Ok(bytes) => bytes,
                Err(_) if is_first_frame && text.trim_ascii_start().starts_with(b"{") => {
                    writeln!(
                        stderr,
                        "tickflow decode: line {line_number} is JSON text, not base64: drop --base64"
                    )?;
                    return Ok(EXIT_USAGE);
                }
                Err(error) => {
                    writeln!(stderr, "line {line_number}: invalid base64: {error}")?;
                    // Not a frame the decoder saw: counted here, reported with the errors.
                    session.invalid_base64_lines += 1;
                    failed = true;
                    continue;
                }
            }
        } else {
            text.to_vec()
        };
        match session.decode_line(&bytes, encoding) {
            Ok(()) => {
                if !args.stats {
                    session.write_records(&mut writer)?;
                }
            }
            // With `--base64` the line was base64 already: a bad frame inside is a frame error.
            Err(LineError::Decode(error))
                if !args.base64 && is_first_frame && looks_like_base64(text, &error) =>
            {
                writeln!(
                    stderr,
                    "tickflow decode: line {line_number} looks like base64 (binary frames): pass --base64"
                )?;
                return Ok(EXIT_USAGE);
            }
            Err(LineError::Decode(error)) => {
                writeln!(stderr, "line {line_number}: {error}")?;
                failed = true;
            }
            Err(LineError::Register(message)) => {
                writeln!(
                    stderr,
                    "line {line_number}: {}: {message}",
                    DecodeErrorKind::UnknownSymbol
                )?;
                failed = true;
            }
        }
    }
    if args.stats {
        session.write_stats(&mut writer)?;
    }
    writer.flush().context("writing to stdout")?;
    Ok(if failed { EXIT_FRAME_ERRORS } else { EXIT_OK })
}

/// Reads one line (through its `\n`) into `line`, keeping at most `max_bytes` of it. Returns the
/// bytes consumed (0 at the end of the input) and whether the line was longer than `max_bytes`.
fn read_bounded_line(
    input: &mut dyn BufRead,
    line: &mut Vec<u8>,
    max_bytes: usize,
) -> std::io::Result<(usize, bool)> {
    line.clear();
    let mut consumed = 0usize;
    let mut over_limit = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok((consumed, over_limit));
        }
        let (take, done) = match available.iter().position(|&byte| byte == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (available.len(), false),
        };
        let room = max_bytes.saturating_sub(line.len());
        if take > room {
            over_limit = true;
        }
        line.extend_from_slice(&available[..take.min(room)]);
        input.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, over_limit));
        }
    }
}

/// A line that failed as a text frame but is well-formed base64: the user forgot `--base64`.
fn looks_like_base64(text: &[u8], error: &DecodeError) -> bool {
    matches!(
        error.kind,
        DecodeErrorKind::MalformedJson | DecodeErrorKind::InvalidUtf8
    ) && !text.starts_with(b"{")
        && base64::engine::general_purpose::STANDARD
            .decode(text.trim_ascii())
            .is_ok_and(|bytes| bytes.len() >= 4)
}

enum LineError {
    Decode(DecodeError),
    /// The frame named a symbol the registry refused.
    Register(String),
}

struct Session {
    venue: Venue,
    decoder: Box<dyn Decoder>,
    registry: Arc<SymbolRegistry>,
    out: RecordBatch,
    frame: Vec<u8>,
    counters: DecodeCounters,
    /// `--base64` lines that did not decode as base64: frames and errors in `--stats`, under the
    /// `invalid_base64` kind (they never reached the decoder, so no `DecodeErrorKind` fits).
    invalid_base64_lines: u64,
    decode_ns: u128,
}

impl Session {
    /// Decodes one frame into `self.out`, registering unknown symbols on first sight.
    fn decode_line(&mut self, bytes: &[u8], encoding: FrameEncoding) -> Result<(), LineError> {
        for _attempt in 0..=MAX_REGISTRATIONS_PER_FRAME {
            self.out.clear();
            // In-place parsing rewrites the buffer, so every attempt starts from the line.
            self.frame.clear();
            self.frame.extend_from_slice(bytes);
            let started = Instant::now();
            let result = self
                .decoder
                .decode(&mut self.frame, encoding, now_ns(), &mut self.out);
            self.decode_ns += started.elapsed().as_nanos();
            let unknown = match &result {
                Err(error) if error.kind == DecodeErrorKind::UnknownSymbol => self
                    .decoder
                    .unknown_symbol()
                    .map(|spelling| String::from_utf8_lossy(spelling).into_owned()),
                _ => None,
            };
            match (result, unknown) {
                (Err(_), Some(spelling)) => {
                    // A tool showing frames: the symbol's split is guessed from its spelling
                    // (the engine itself takes names from the venues' metadata).
                    let registered = tickflow_core::registry::guess_symbol(&spelling)
                        .and_then(|name| self.registry.edit(|edit| edit.symbol(name)));
                    if let Err(error) = registered {
                        self.counters.count(&Err(DecodeError::new(
                            DecodeErrorKind::UnknownSymbol,
                            "registration refused",
                        )));
                        return Err(LineError::Register(error.to_string()));
                    }
                }
                (result, _) => {
                    self.counters.count_frame(&result, self.out.as_slice());
                    return result.map(|_| ()).map_err(LineError::Decode);
                }
            }
        }
        let error = DecodeError::new(
            DecodeErrorKind::UnknownSymbol,
            "too many new symbols in one frame",
        );
        self.counters.count(&Err(error));
        Err(LineError::Decode(error))
    }

    fn symbol_name(&self, event: &FeedEvent) -> String {
        self.registry
            .name(event.symbol_id())
            .map(|name| name.to_string())
            .unwrap_or_default()
    }

    fn write_records(&self, writer: &mut impl Write) -> std::io::Result<()> {
        let venue = self.venue.name();
        for event in self.out.as_slice() {
            let symbol = self.symbol_name(event);
            match event {
                FeedEvent::Quote(quote) => {
                    write!(
                        writer,
                        r#"{{"type":"quote","venue":"{venue}","symbol":"{symbol}","bid":{},"bid_qty":{},"ask":{},"ask_qty":{},"ts_exchange_ns":"#,
                        quote.bid, quote.bid_qty, quote.ask, quote.ask_qty
                    )?;
                    write_optional(writer, quote.ts_exchange())?;
                    write!(writer, r#","ts_recv_ns":{},"seq":"#, quote.ts_recv_ns)?;
                    write_optional(writer, quote.sequence())?;
                    writer.write_all(b"}\n")?;
                }
                FeedEvent::Trade(trade) => {
                    let mut trade_id = String::new();
                    // Writing into a String cannot fail.
                    let _ = trade.write_trade_id(&mut trade_id);
                    write!(
                        writer,
                        r#"{{"type":"trade","venue":"{venue}","symbol":"{symbol}","price":{},"qty":{},"side":"{}","trade_id":""#,
                        trade.price,
                        trade.qty,
                        trade.side().as_str()
                    )?;
                    write_json_string_body(writer, &trade_id)?;
                    write!(writer, r#"","ts_exchange_ns":"#)?;
                    write_optional(writer, trade.ts_exchange())?;
                    writeln!(writer, r#","ts_recv_ns":{}}}"#, trade.ts_recv_ns)?;
                }
                FeedEvent::Gap(gap) if gap.kind == GAP_QUOTE_WITHDRAWN => {
                    writeln!(
                        writer,
                        r#"{{"type":"quote_withdrawn","venue":"{venue}","symbol":"{symbol}","ts_recv_ns":{}}}"#,
                        gap.ts_ns
                    )?;
                }
                // Decoders emit no other gap (connection gaps come from the feed).
                FeedEvent::Gap(_) => {}
            }
        }
        Ok(())
    }

    fn write_stats(&self, writer: &mut impl Write) -> std::io::Result<()> {
        let snapshot = self.counters.snapshot();
        let ns_per_frame = if snapshot.frames == 0 {
            0
        } else {
            self.decode_ns / u128::from(snapshot.frames)
        };
        write!(
            writer,
            r#"{{"venue":"{}","frames":{},"records":{},"quotes_withdrawn":{},"control":{},"errors":{},"errors_by_kind":{{"#,
            self.venue.name(),
            snapshot.frames + self.invalid_base64_lines,
            snapshot.records,
            snapshot.quotes_withdrawn,
            snapshot.control,
            snapshot.errors_total() + self.invalid_base64_lines
        )?;
        let mut first = true;
        if self.invalid_base64_lines > 0 {
            write!(writer, r#""invalid_base64":{}"#, self.invalid_base64_lines)?;
            first = false;
        }
        for kind in DecodeErrorKind::ALL {
            let count = snapshot.error_count(kind);
            if count == 0 {
                continue;
            }
            if !first {
                writer.write_all(b",")?;
            }
            first = false;
            write!(writer, r#""{}":{count}"#, kind.name())?;
        }
        writeln!(writer, r#"}},"ns_per_frame":{ns_per_frame}}}"#)
    }
}

fn write_optional(
    writer: &mut impl Write,
    value: Option<impl std::fmt::Display>,
) -> std::io::Result<()> {
    match value {
        Some(value) => write!(writer, "{value}"),
        None => writer.write_all(b"null"),
    }
}

/// Writes `text` escaped for the inside of a JSON string.
fn write_json_string_body(writer: &mut impl Write, text: &str) -> std::io::Result<()> {
    for character in text.chars() {
        match character {
            '"' => writer.write_all(b"\\\"")?,
            '\\' => writer.write_all(b"\\\\")?,
            control if (control as u32) < 0x20 => write!(writer, "\\u{:04x}", control as u32)?,
            other => write!(writer, "{other}")?,
        }
    }
    Ok(())
}
