//! The venues' fixture frames (`engine/decode/tests/fixtures/exchanges/*.jsonl`, real frames of
//! every venue) turned into wire bytes as each venue sends them (gzip for HTX, protobuf for MEXC).
//! Shared by the decoder golden tests and the `tickflow decode` CLI tests (included by path).
#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;

use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;
use tickflow_decode::{FrameEncoding, mexc_proto};

/// Every symbol the fixtures name.
pub(crate) const FIXTURE_SYMBOLS: &[&str] = &[
    "BNB-USDT",
    "NKN-USDT",
    "BNB-BTC",
    "METIS-USDT",
    "BTC-USDT",
    "OP-USDT",
    "GT-USDT",
    "TRIO-ETH",
];

/// One fixture line as it travels on the wire.
#[derive(Clone, Debug)]
pub(crate) struct WireFrame {
    pub(crate) kind: String,
    pub(crate) encoding: FrameEncoding,
    pub(crate) bytes: Vec<u8>,
}

pub(crate) fn fixture_dir() -> std::path::PathBuf {
    // Relative to either crate that includes this module (tickflow-decode, tickflow's CLI tests).
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures/exchanges")
}

/// The fixture frames of `venue`, turned into wire bytes (gzip, protobuf) as the venue sends them.
pub(crate) fn wire_frames(venue: Venue) -> Vec<WireFrame> {
    wire_frames_of(&format!("{}.jsonl", venue.name()))
}

/// The frames of one fixture file (`bitget_v3.jsonl`: Bitget's v3 socket), as wire bytes.
pub(crate) fn wire_frames_of(file_name: &str) -> Vec<WireFrame> {
    let path = fixture_dir().join(file_name);
    let text = std::fs::read_to_string(&path).expect("fixture file is in the repository");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let entry: serde_json::Value =
                serde_json::from_str(line).expect("fixture line is JSON");
            let frame = entry["frame"]
                .as_str()
                .expect("fixture has a frame")
                .to_string();
            let (encoding, bytes) =
                match entry["encoding"].as_str().expect("fixture has an encoding") {
                    "text" => (FrameEncoding::Text, frame.into_bytes()),
                    "gzip" => (FrameEncoding::Binary, gzip(frame.as_bytes())),
                    "protobuf-decoded" => (FrameEncoding::Binary, mexc_protobuf(&frame)),
                    other => panic!("unknown fixture encoding {other}"),
                };
            WireFrame {
                kind: entry["kind"].as_str().unwrap_or_default().to_string(),
                encoding,
                bytes,
            }
        })
        .collect()
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Encodes the decoded-JSON form of a MEXC push (as the fixtures show it) into the binary frame.
pub(crate) fn mexc_protobuf(json: &str) -> Vec<u8> {
    use prost::Message;
    let value: serde_json::Value = serde_json::from_str(json).expect("fixture frame is JSON");
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
                .expect("deals is an array")
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

pub(crate) fn fixture_registry() -> Arc<SymbolRegistry> {
    let registry = SymbolRegistry::new(64);
    registry
        .register_all(FIXTURE_SYMBOLS.iter().copied())
        .expect("fixture symbols are valid");
    Arc::new(registry)
}

/// A small deterministic generator for mutated inputs.
pub(crate) struct Xorshift(pub(crate) u64);

impl Xorshift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
