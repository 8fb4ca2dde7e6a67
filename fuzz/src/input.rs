//! Fuzz inputs: a frame in the form the mutators work on (JSON text, JSON to be gzipped, raw
//! gzip, protobuf), turned into the wire bytes and frame encoding a decoder receives; the seeds
//! taken from the venues' fixture files; and the corpus files failing inputs are saved to.

use std::io::Write;
use std::path::{Path, PathBuf};

use tickflow_core::venue::Venue;
use tickflow_decode::{FrameEncoding, mexc_proto};

/// What the bytes of an input are, so mutators can work on the structure, not only the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// JSON text sent as a text frame.
    Text,
    /// JSON text sent as a binary frame (the JSON venues must not care; MEXC reads a binary
    /// frame starting with `{` as a JSON reply).
    TextAsBinary,
    /// JSON text sent gzipped in a binary frame, as HTX sends every frame.
    Gzip,
    /// Wire bytes of a binary frame as they are (a gzip member, a MEXC protobuf push, anything).
    Binary,
}

/// One fuzz input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub form: Form,
    pub bytes: Vec<u8>,
}

impl Input {
    pub fn new(form: Form, bytes: Vec<u8>) -> Input {
        Input { form, bytes }
    }

    /// The frame encoding and bytes a decoder receives.
    pub fn to_wire(&self) -> (FrameEncoding, Vec<u8>) {
        match self.form {
            Form::Text => (FrameEncoding::Text, self.bytes.clone()),
            Form::TextAsBinary | Form::Binary => (FrameEncoding::Binary, self.bytes.clone()),
            Form::Gzip => (FrameEncoding::Binary, gzip(&self.bytes)),
        }
    }

    /// Whether the mutators may read the bytes as JSON text.
    pub fn is_json(&self) -> bool {
        matches!(self.form, Form::Text | Form::TextAsBinary | Form::Gzip)
    }
}

/// Gzip with flate2 (what HTX sends: one member, default level).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    encoder
        .write_all(bytes)
        .expect("writing into a Vec cannot fail");
    encoder.finish().expect("writing into a Vec cannot fail")
}

/// `engine/decode/tests/fixtures/exchanges/`: one file of real frames per venue.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/decode/tests/fixtures/exchanges")
}

/// `fuzz/corpus/`: failing inputs, one directory per target.
pub fn default_corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The fixture frames of `venue` as fuzz inputs in their wire form (text, gzip, protobuf); a
/// venue with a second socket also has `<venue>_v3.jsonl` (Bitget's v3 frames).
pub fn fixture_inputs(venue: Venue) -> std::io::Result<Vec<Input>> {
    let mut inputs = fixture_file_inputs(&fixture_dir().join(format!("{}.jsonl", venue.name())))?;
    let second_socket = fixture_dir().join(format!("{}_v3.jsonl", venue.name()));
    if second_socket.exists() {
        inputs.extend(fixture_file_inputs(&second_socket)?);
    }
    Ok(inputs)
}

fn fixture_file_inputs(path: &Path) -> std::io::Result<Vec<Input>> {
    let text = std::fs::read_to_string(path)?;
    let mut inputs = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
        let frame = entry["frame"].as_str().unwrap_or_default().to_string();
        let input = match entry["encoding"].as_str().unwrap_or_default() {
            "gzip" => Input::new(Form::Gzip, frame.into_bytes()),
            "protobuf-decoded" => Input::new(Form::Binary, mexc_protobuf(&frame)),
            _ => Input::new(Form::Text, frame.into_bytes()),
        };
        inputs.push(input);
    }
    Ok(inputs)
}

/// Encodes the decoded-JSON form of a MEXC push (as the fixtures show it) into the binary frame.
pub fn mexc_protobuf(json: &str) -> Vec<u8> {
    use prost::Message;
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
    let body = if let Some(ticker) = value.get("publicAggreBookTicker") {
        mexc_proto::Body::PublicAggreBookTicker(mexc_proto::PublicAggreBookTickerV3Api {
            bid_price: text(&ticker["bidPrice"]),
            bid_quantity: text(&ticker["bidQuantity"]),
            ask_price: text(&ticker["askPrice"]),
            ask_quantity: text(&ticker["askQuantity"]),
            version: text(&ticker["version"]),
            last_order_create_time: ticker["lastOrderCreateTime"].as_i64().unwrap_or(0),
        })
    } else {
        let deals = &value["publicAggreDeals"];
        mexc_proto::Body::PublicAggreDeals(mexc_proto::PublicAggreDealsV3Api {
            deals: deals["deals"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|deal| mexc_proto::PublicAggreDealsV3ApiItem {
                    price: text(&deal["price"]),
                    quantity: text(&deal["quantity"]),
                    trade_type: deal["tradeType"].as_i64().unwrap_or(0) as i32,
                    time: deal["time"].as_i64().unwrap_or(0),
                    trade_id: text(&deal["tradeId"]),
                })
                .collect(),
            event_type: text(&deals["eventType"]),
        })
    };
    mexc_proto::PushDataV3ApiWrapper {
        channel: text(&value["channel"]),
        symbol: text(&value["symbol"]),
        symbol_id: String::new(),
        create_time: value["createTime"].as_i64().unwrap_or(0),
        send_time: value["sendTime"].as_i64().unwrap_or(0),
        body: Some(body),
    }
    .encode_to_vec()
}

/// The file name extension that records a corpus file's frame encoding.
fn extension(encoding: FrameEncoding) -> &'static str {
    match encoding {
        FrameEncoding::Text => "text",
        FrameEncoding::Binary => "binary",
    }
}

/// A corpus file: the wire bytes of one frame; the extension (`.text`, `.binary`) says how the
/// frame travelled.
#[derive(Clone, Debug)]
pub struct CorpusFile {
    pub path: PathBuf,
    pub encoding: FrameEncoding,
    pub bytes: Vec<u8>,
}

/// Every corpus file under `dir` (all targets' directories), sorted by path.
pub fn read_corpus(dir: &Path) -> std::io::Result<Vec<CorpusFile>> {
    let mut files = Vec::new();
    let Ok(targets) = std::fs::read_dir(dir) else {
        return Ok(files);
    };
    for target in targets {
        let target = target?.path();
        if !target.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&target)? {
            let path = entry?.path();
            let encoding = match path.extension().and_then(|extension| extension.to_str()) {
                Some("text") => FrameEncoding::Text,
                Some("binary") => FrameEncoding::Binary,
                _ => continue,
            };
            let bytes = std::fs::read(&path)?;
            files.push(CorpusFile {
                path,
                encoding,
                bytes,
            });
        }
    }
    files.sort_by(|first, second| first.path.cmp(&second.path));
    Ok(files)
}

/// The corpus files of one target, as fuzz inputs (seeds for that target).
pub fn corpus_inputs(dir: &Path, venue: Venue) -> std::io::Result<Vec<Input>> {
    let target = dir.join(venue.name());
    let files = read_corpus(dir)?;
    Ok(files
        .into_iter()
        .filter(|file| file.path.starts_with(&target))
        .map(|file| match file.encoding {
            FrameEncoding::Text => Input::new(Form::Text, file.bytes),
            FrameEncoding::Binary => Input::new(Form::Binary, file.bytes),
        })
        .collect())
}

/// FNV-1a, for stable file names and signatures.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Saves a failing input under `dir/<target>/`; returns the path (the same input twice is one
/// file).
pub fn save_failing_input(
    dir: &Path,
    venue: Venue,
    encoding: FrameEncoding,
    bytes: &[u8],
    label: &str,
) -> std::io::Result<PathBuf> {
    let target = dir.join(venue.name());
    std::fs::create_dir_all(&target)?;
    let path = target.join(format!(
        "{label}-{:016x}.{}",
        fnv1a(bytes),
        extension(encoding)
    ));
    std::fs::write(&path, bytes)?;
    Ok(path)
}
