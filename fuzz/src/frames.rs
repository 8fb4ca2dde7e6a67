//! The WebSocket frame path's target (`tickflow-fuzz ws-frames`): byte streams of server frames
//! (text, binary, fragmented messages with control frames between their fragments, every length
//! encoding, messages around the size limit), often mutated (bit flips, header bytes, cuts,
//! splices, duplicated ranges), read by `tickflow_feed::framing::FrameReader` in random read
//! sizes with reads that are not ready yet in between. The oracle is a second reader written
//! here for clarity, not speed: it parses the whole stream at once by RFC 6455's rules as the
//! engine applies them (over-limit messages skipped, fragments joined up to the limit). Every
//! streamed read must give exactly what it gives (each message's bytes, each control frame,
//! each skipped message's announced size, and how the stream ends: closed, or the same protocol
//! violation), the reader must never panic, never stop making progress, and its buffer must stay
//! within `max_message_bytes + MAX_BUFFER_OVERHEAD_BYTES`.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tickflow_feed::framing::{FrameReader, Incoming, MAX_BUFFER_OVERHEAD_BYTES, ReadError};
use tokio::io::{AsyncRead, ReadBuf};

use crate::rng::Rng;

/// The target's name on the command line and its corpus directory.
pub const TARGET: &str = "ws-frames";
/// Extension of its saved inputs: a first line `max_message_bytes=N`, then the stream's bytes.
pub const CORPUS_EXTENSION: &str = "ws";

/// What one read gave, as both readers report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Message {
        binary: bool,
        payload: Vec<u8>,
    },
    Ping(Vec<u8>),
    Pong,
    Close,
    Oversized {
        announced_bytes: u64,
    },
    /// The stream ended (the last event): the peer closed it, or it broke a rule.
    Closed,
    Protocol(&'static str),
}

impl Event {
    /// The event without its bytes (a message's length instead).
    pub fn summary(&self) -> String {
        match self {
            Event::Message { binary, payload } => {
                format!("Message {{ binary: {binary}, {} bytes }}", payload.len())
            }
            Event::Ping(payload) => format!("Ping({} bytes)", payload.len()),
            other => format!("{other:?}"),
        }
    }
}

/// One input: the stream and the reader's limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInput {
    pub max_message_bytes: usize,
    pub bytes: Vec<u8>,
}

impl FrameInput {
    /// The saved form (see `CORPUS_EXTENSION`).
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut out = format!("max_message_bytes={}\n", self.max_message_bytes).into_bytes();
        out.extend_from_slice(&self.bytes);
        out
    }

    pub fn from_file_bytes(file: &[u8]) -> Option<FrameInput> {
        let newline = file.iter().position(|&byte| byte == b'\n')?;
        let header = std::str::from_utf8(&file[..newline]).ok()?;
        let max_message_bytes = header.strip_prefix("max_message_bytes=")?.parse().ok()?;
        Some(FrameInput {
            max_message_bytes,
            bytes: file[newline + 1..].to_vec(),
        })
    }
}

/// How the reader's stream hands the bytes over: read sizes taken in turn, and every how many
/// reads one is not ready at first (0: never).
#[derive(Clone, Debug)]
pub struct Chunking {
    pub read_sizes: Vec<usize>,
    pub pending_every: usize,
}

impl Chunking {
    pub fn whole() -> Chunking {
        Chunking {
            read_sizes: vec![usize::MAX],
            pending_every: 0,
        }
    }

    pub fn bytewise() -> Chunking {
        Chunking {
            read_sizes: vec![1],
            pending_every: 3,
        }
    }

    fn random(rng: &mut Rng) -> Chunking {
        match rng.below(4) {
            0 => Chunking::whole(),
            1 => Chunking::bytewise(),
            _ => Chunking {
                read_sizes: (0..rng.between(1, 8))
                    .map(|_| match rng.below(3) {
                        0 => rng.between(1, 16),
                        1 => rng.between(1, 4096),
                        _ => rng.between(1, 70_000),
                    })
                    .collect(),
                pending_every: rng.below(5),
            },
        }
    }
}

/// A stream over `bytes` that reads as `chunking` says, then ends.
struct ChunkedStream<'a> {
    bytes: &'a [u8],
    at: usize,
    chunking: &'a Chunking,
    reads: usize,
    pending_given: bool,
}

impl AsyncRead for ChunkedStream<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let every = self.chunking.pending_every;
        if every > 0 && self.reads % every == 0 && !self.pending_given {
            // The driver polls again at once (its waker does nothing).
            self.pending_given = true;
            return Poll::Pending;
        }
        self.pending_given = false;
        let sizes = &self.chunking.read_sizes;
        let size = sizes[self.reads % sizes.len()].max(1);
        self.reads += 1;
        let take = size.min(self.bytes.len() - self.at).min(buf.remaining());
        let start = self.at;
        buf.put_slice(&self.bytes[start..start + take]);
        self.at += take;
        Poll::Ready(Ok(()))
    }
}

/// Why an input failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    Panicked(String),
    /// The streamed events differ from the reference's from this index on.
    Differs {
        index: usize,
        streamed: Option<Event>,
        reference: Option<Event>,
    },
    NoProgress {
        polls: usize,
    },
    BufferOverBound {
        buffer_bytes: usize,
        bound_bytes: usize,
    },
}

impl Violation {
    /// What failed, in a line (events by `Event::summary`).
    pub fn message(&self) -> String {
        let summary =
            |event: &Option<Event>| event.as_ref().map_or("nothing".into(), Event::summary);
        match self {
            Violation::Panicked(message) => format!("the reader panicked: {message}"),
            Violation::Differs {
                index,
                streamed,
                reference,
            } => format!(
                "event {index}: the reader gave {}, the reference {}",
                summary(streamed),
                summary(reference)
            ),
            Violation::NoProgress { polls } => format!("no progress after {polls} polls"),
            Violation::BufferOverBound {
                buffer_bytes,
                bound_bytes,
            } => format!("buffer of {buffer_bytes} bytes over its bound of {bound_bytes}"),
        }
    }
}

/// Reads `input` with `FrameReader` as `chunking` says, to the end of the stream.
pub fn read_streamed(input: &FrameInput, chunking: &Chunking) -> Result<Vec<Event>, Violation> {
    let stream = ChunkedStream {
        bytes: &input.bytes,
        at: 0,
        chunking,
        reads: 0,
        pending_given: false,
    };
    let mut reader = FrameReader::new(stream, input.max_message_bytes);
    let mut context = Context::from_waker(Waker::noop());
    let mut events = Vec::new();
    // Each ready read consumes at least a byte or yields an event; each pending one is followed
    // by a ready one. Anything past this is a loop that makes no progress.
    let polls_max = 4 * (input.bytes.len() + 16);
    let mut polls = 0usize;
    let bound_bytes = input.max_message_bytes + MAX_BUFFER_OVERHEAD_BYTES;
    loop {
        polls += 1;
        if polls > polls_max {
            return Err(Violation::NoProgress { polls });
        }
        let event = match reader.poll_next(&mut context) {
            Poll::Pending => continue,
            Poll::Ready(Ok(incoming)) => match incoming {
                Incoming::Message { binary } => Event::Message {
                    binary,
                    payload: reader.message_mut().to_vec(),
                },
                Incoming::Ping(payload) => Event::Ping(payload.as_slice().to_vec()),
                Incoming::Pong => Event::Pong,
                Incoming::Close => Event::Close,
                Incoming::Oversized { announced_bytes } => Event::Oversized { announced_bytes },
            },
            Poll::Ready(Err(ReadError::Protocol(reason))) => Event::Protocol(reason),
            Poll::Ready(Err(ReadError::Closed | ReadError::Io(_))) => Event::Closed,
        };
        if reader.buffer_bytes() > bound_bytes {
            return Err(Violation::BufferOverBound {
                buffer_bytes: reader.buffer_bytes(),
                bound_bytes,
            });
        }
        let last = matches!(event, Event::Closed | Event::Protocol(_));
        events.push(event);
        if last {
            return Ok(events);
        }
    }
}

/// The reference: the whole stream parsed at once.
pub fn read_reference(input: &FrameInput) -> Vec<Event> {
    let bytes = &input.bytes[..];
    let max = input.max_message_bytes as u64;
    let mut events = Vec::new();
    let mut at = 0usize;
    // The message being joined (binary?, bytes so far), or being skipped.
    let mut joining: Option<(bool, Vec<u8>)> = None;
    let mut skipping = false;
    loop {
        let rest = &bytes[at..];
        if rest.len() < 2 {
            events.push(Event::Closed);
            return events;
        }
        let (first, second) = (rest[0], rest[1]);
        if first & 0x70 != 0 {
            events.push(Event::Protocol(
                "reserved bits set (no extension was negotiated)",
            ));
            return events;
        }
        let opcode = first & 0x0F;
        if ![0x0, 0x1, 0x2, 0x8, 0x9, 0xA].contains(&opcode) {
            events.push(Event::Protocol("unknown opcode"));
            return events;
        }
        let fin = first & 0x80 != 0;
        if second & 0x80 != 0 {
            events.push(Event::Protocol("masked frame from the server"));
            return events;
        }
        let (header_bytes, length) = match second & 0x7F {
            126 if rest.len() >= 4 => (4, u64::from(u16::from_be_bytes([rest[2], rest[3]]))),
            127 if rest.len() >= 10 => {
                let mut length = [0u8; 8];
                length.copy_from_slice(&rest[2..10]);
                (10, u64::from_be_bytes(length))
            }
            126 | 127 => {
                events.push(Event::Closed);
                return events;
            }
            short => (2, u64::from(short)),
        };
        if length >> 63 != 0 {
            events.push(Event::Protocol("payload length has its top bit set"));
            return events;
        }
        let control = opcode >= 0x8;
        if control && !fin {
            events.push(Event::Protocol("fragmented control frame"));
            return events;
        }
        if control && length > 125 {
            events.push(Event::Protocol("control frame over 125 bytes"));
            return events;
        }
        let available = (rest.len() - header_bytes) as u64;
        let payload = |length: u64| &rest[header_bytes..header_bytes + length as usize];
        if control {
            if available < length {
                events.push(Event::Closed);
                return events;
            }
            events.push(match opcode {
                0x9 => Event::Ping(payload(length).to_vec()),
                0xA => Event::Pong,
                _ => Event::Close,
            });
            at += header_bytes + length as usize;
            continue;
        }
        let continuation = opcode == 0x0;
        let in_message = joining.is_some() || skipping;
        if continuation && !in_message {
            events.push(Event::Protocol(
                "continuation frame with no message to continue",
            ));
            return events;
        }
        if !continuation && in_message {
            events.push(Event::Protocol(
                "new message before the last one's final frame",
            ));
            return events;
        }
        let joined = joining
            .as_ref()
            .map_or(0, |(_, joined)| joined.len() as u64);
        let total = joined.saturating_add(length);
        if skipping || total > max {
            if !skipping {
                events.push(Event::Oversized {
                    announced_bytes: total,
                });
            }
            skipping = !fin;
            joining = None;
            if available < length {
                events.push(Event::Closed);
                return events;
            }
            at += header_bytes + length as usize;
            continue;
        }
        if available < length {
            events.push(Event::Closed);
            return events;
        }
        let (binary, mut joined) = match joining.take() {
            Some(joining) => joining,
            None => (opcode == 0x2, Vec::new()),
        };
        joined.extend_from_slice(payload(length));
        at += header_bytes + length as usize;
        if fin {
            events.push(Event::Message {
                binary,
                payload: joined,
            });
        } else {
            joining = Some((binary, joined));
        }
    }
}

/// Checks `input` under `chunking`: no panic, progress, the buffer's bound, the reference's
/// events.
pub fn check(input: &FrameInput, chunking: &Chunking) -> Result<(), Violation> {
    let streamed = std::panic::catch_unwind(|| read_streamed(input, chunking))
        .map_err(|panic| Violation::Panicked(crate::oracle::panic_message(&*panic)))??;
    let reference = read_reference(input);
    if streamed != reference {
        let index = streamed
            .iter()
            .zip(&reference)
            .position(|(streamed, reference)| streamed != reference)
            .unwrap_or(streamed.len().min(reference.len()));
        return Err(Violation::Differs {
            index,
            streamed: streamed.get(index).cloned(),
            reference: reference.get(index).cloned(),
        });
    }
    Ok(())
}

/// Appends one server frame (unmasked), its length encoded minimally or, when `wide`, in the
/// next wider form too (the reader accepts both).
fn push_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], wide: u8) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 && wide == 0 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) && wide < 2 {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A well-formed stream: messages (some fragmented, with control frames between fragments) of
/// sizes around `max_message_bytes`.
fn generate(rng: &mut Rng) -> FrameInput {
    let max_message_bytes: usize = *rng.pick(&[1, 8, 125, 126, 300, 4_096, 40_000, 70_000]);
    let mut bytes = Vec::new();
    for _ in 0..rng.between(1, 10) {
        let size = match rng.below(6) {
            0 => 0,
            1 => max_message_bytes.saturating_sub(1),
            2 => max_message_bytes,
            3 => max_message_bytes + 1,
            4 => rng.small_len(200),
            _ => rng.below(max_message_bytes * 3 / 2 + 2).min(100_000),
        };
        let binary = rng.chance(1, 2);
        let payload: Vec<u8> = (0..size)
            .map(|index| {
                if binary {
                    rng.next_u64() as u8
                } else {
                    b"{\"p\":\"1.25\",\"q\":[3]}"[index % 20]
                }
            })
            .collect();
        let fragments = if rng.chance(1, 3) {
            rng.between(2, 5)
        } else {
            1
        };
        let mut cuts: Vec<usize> = (1..fragments).map(|_| rng.below(size + 1)).collect();
        cuts.sort_unstable();
        cuts.push(size);
        let mut start = 0;
        for (index, &end) in cuts.iter().enumerate() {
            let opcode = if index == 0 { 1 + u8::from(binary) } else { 0 };
            let fin = index + 1 == cuts.len();
            push_frame(
                &mut bytes,
                fin,
                opcode,
                &payload[start..end],
                rng.below(3) as u8,
            );
            start = end;
            if rng.chance(1, 4) {
                let control = *rng.pick(&[0x9u8, 0x9, 0xA, 0x8]);
                let ping: Vec<u8> = (0..rng.below(126)).map(|_| rng.next_u64() as u8).collect();
                push_frame(&mut bytes, true, control, &ping, 0);
            }
        }
    }
    FrameInput {
        max_message_bytes,
        bytes,
    }
}

/// One to four changes to the stream's bytes.
fn mutate(rng: &mut Rng, input: &mut FrameInput) {
    const HEADER_BYTES: [u8; 14] = [
        0x00, 0x01, 0x02, 0x08, 0x09, 0x0A, 0x80, 0x81, 0x82, 0x88, 0x7D, 0x7E, 0x7F, 0xFF,
    ];
    let bytes = &mut input.bytes;
    for _ in 0..rng.between(1, 4) {
        if bytes.is_empty() {
            bytes.push(*rng.pick(&HEADER_BYTES));
            continue;
        }
        let at = rng.below(bytes.len());
        match rng.below(7) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = *rng.pick(&HEADER_BYTES),
            2 => bytes.truncate(at),
            3 => {
                let end = (at + rng.small_len(64)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let end = (at + rng.small_len(64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
            5 => {
                // A length field set to an edge value.
                let value: u64 =
                    *rng.pick(&[0, 125, 126, 127, 65_535, 65_536, u64::MAX >> 1, u64::MAX]);
                let width = if rng.chance(1, 2) { 2 } else { 8 };
                let end = (at + width).min(bytes.len());
                let encoded = value.to_be_bytes();
                let field = &encoded[8 - (end - at)..];
                bytes[at..end].copy_from_slice(field);
            }
            _ => {
                let extra: Vec<u8> = (0..rng.small_len(16))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                bytes.splice(at..at, extra);
            }
        }
    }
    if rng.chance(1, 8) {
        input.max_message_bytes = *rng.pick(&[0, 1, 2, 126, 1_000]);
    }
}

/// A failing input and why.
#[derive(Clone, Debug)]
pub struct Finding {
    pub input: FrameInput,
    pub chunking: Chunking,
    pub violation: Violation,
    pub saved: Option<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct FramesStats {
    pub elapsed: Duration,
    pub executions: u64,
    pub mutated: u64,
    /// Distinct endings seen (closed, or each protocol violation) and skipped messages.
    pub endings: std::collections::BTreeSet<String>,
    pub findings: usize,
}

/// A seeded run of the target.
pub struct FramesCampaign {
    rng: Rng,
    corpus_dir: Option<PathBuf>,
    stats: FramesStats,
    findings: Vec<Finding>,
}

impl FramesCampaign {
    /// `corpus_dir`: where findings are saved (`<dir>/ws-frames/`); `None` saves nothing.
    pub fn new(seed: u64, corpus_dir: Option<PathBuf>) -> FramesCampaign {
        FramesCampaign {
            rng: Rng::new(seed ^ 0x7773_2d66_7261_6d65),
            corpus_dir,
            stats: FramesStats::default(),
            findings: Vec::new(),
        }
    }

    pub fn stats(&self) -> &FramesStats {
        &self.stats
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// One input: generated, maybe mutated, checked under a random chunking.
    pub fn run_one(&mut self) {
        let mut input = generate(&mut self.rng);
        if self.rng.chance(1, 2) {
            mutate(&mut self.rng, &mut input);
            self.stats.mutated += 1;
        }
        let chunking = Chunking::random(&mut self.rng);
        self.stats.executions += 1;
        match check(&input, &chunking) {
            Ok(()) => {
                if let Some(last) = read_reference(&input).last() {
                    self.stats.endings.insert(format!("{last:?}"));
                }
            }
            Err(violation) => {
                self.stats.findings += 1;
                let saved = self
                    .corpus_dir
                    .as_deref()
                    .and_then(|dir| save_finding(dir, &input).ok());
                self.findings.push(Finding {
                    input,
                    chunking,
                    violation,
                    saved,
                });
            }
        }
    }

    pub fn run_for(&mut self, duration: Duration) {
        let started = Instant::now();
        while started.elapsed() < duration {
            self.run_one();
        }
        self.stats.elapsed += started.elapsed();
    }

    pub fn run_executions(&mut self, executions: u64) {
        let started = Instant::now();
        for _ in 0..executions {
            self.run_one();
        }
        self.stats.elapsed += started.elapsed();
    }
}

fn save_finding(corpus_dir: &Path, input: &FrameInput) -> std::io::Result<PathBuf> {
    let dir = corpus_dir.join(TARGET);
    std::fs::create_dir_all(&dir)?;
    let file = input.to_file_bytes();
    // FNV-1a: a stable name, so a finding saved twice is one file.
    let hash = file.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let path = dir.join(format!("finding-{hash:016x}.{CORPUS_EXTENSION}"));
    std::fs::write(&path, file)?;
    Ok(path)
}

/// The saved inputs of this target under `corpus_dir`.
pub fn read_frames_corpus(corpus_dir: &Path) -> std::io::Result<Vec<(PathBuf, FrameInput)>> {
    let mut inputs = Vec::new();
    let Ok(entries) = std::fs::read_dir(corpus_dir.join(TARGET)) else {
        return Ok(inputs);
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|extension| extension.to_str()) != Some(CORPUS_EXTENSION) {
            continue;
        }
        let file = std::fs::read(&path)?;
        let input = FrameInput::from_file_bytes(&file).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: no max_message_bytes line", path.display()),
            )
        })?;
        inputs.push((path, input));
    }
    inputs.sort_by(|first, second| first.0.cmp(&second.0));
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_frame(&mut out, fin, opcode, payload, 0);
        out
    }

    #[test]
    fn the_reference_reads_messages_fragments_controls_and_skips() {
        let mut bytes = frame(true, 1, b"hello");
        bytes.extend(frame(false, 2, b"ab"));
        bytes.extend(frame(true, 9, b"p"));
        bytes.extend(frame(true, 0, b"cd"));
        bytes.extend(frame(true, 1, b"too long!"));
        bytes.extend(frame(true, 10, b""));
        let input = FrameInput {
            max_message_bytes: 5,
            bytes,
        };
        let expected = vec![
            Event::Message {
                binary: false,
                payload: b"hello".to_vec(),
            },
            Event::Ping(b"p".to_vec()),
            Event::Message {
                binary: true,
                payload: b"abcd".to_vec(),
            },
            Event::Oversized { announced_bytes: 9 },
            Event::Pong,
            Event::Closed,
        ];
        assert_eq!(read_reference(&input), expected);
        for chunking in [Chunking::whole(), Chunking::bytewise()] {
            assert_eq!(read_streamed(&input, &chunking).unwrap(), expected);
        }
    }

    #[test]
    fn the_reference_ends_on_the_readers_protocol_errors() {
        for (bytes, reason) in [
            (
                vec![0x81 | 0x40, 0],
                "reserved bits set (no extension was negotiated)",
            ),
            (vec![0x83, 0], "unknown opcode"),
            (vec![0x81, 0x80], "masked frame from the server"),
            (vec![0x09, 0], "fragmented control frame"),
            (vec![0x89, 126, 0, 126], "control frame over 125 bytes"),
            (
                vec![0x80, 0],
                "continuation frame with no message to continue",
            ),
        ] {
            let input = FrameInput {
                max_message_bytes: 100,
                bytes,
            };
            assert_eq!(read_reference(&input), vec![Event::Protocol(reason)]);
            check(&input, &Chunking::bytewise()).unwrap();
        }
    }

    #[test]
    fn a_wrong_reference_is_caught() {
        // The oracle can fail: a stream whose reference differs is reported with the index.
        let input = FrameInput {
            max_message_bytes: 100,
            bytes: frame(true, 1, b"x"),
        };
        let streamed = read_streamed(&input, &Chunking::whole()).unwrap();
        assert_eq!(streamed.len(), 2);
        let mut other = input.clone();
        other.bytes[2] = b'y';
        assert_ne!(read_reference(&other), streamed);
    }

    #[test]
    fn saved_inputs_read_back() {
        let input = FrameInput {
            max_message_bytes: 126,
            bytes: vec![0x81, 1, b'\n'],
        };
        assert_eq!(
            FrameInput::from_file_bytes(&input.to_file_bytes()),
            Some(input)
        );
    }
}
