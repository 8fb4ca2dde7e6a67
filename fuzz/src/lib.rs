//! tickflow-fuzz: a mutation fuzzer for the eight venue decoders and the WebSocket frame path on
//! stable Rust, and the replay of its saved corpus. Each decoder target is one venue's decoder,
//! fed text and binary frames (HTX gzip, MEXC protobuf, JSON text as binary): inputs start from
//! the fixtures, are mutated by byte, JSON, gzip and protobuf structure, and each goes through
//! the [`oracle`]'s checks. Inputs that reach a new outcome join the pool; failing ones are saved
//! to `fuzz/corpus/<target>/`, which the crate's tests replay through every decoder.
//!
//! The WebSocket frame path (`engine/feed`'s `FrameReader`) is the ninth target, [`frames`]
//! (`ws-frames`): generated and mutated frame streams read in random read sizes, checked
//! against a whole-stream reference reader.

pub mod campaign;
pub mod frames;
pub mod input;
pub mod json;
pub mod mutate;
pub mod oracle;
pub mod proto;
pub mod rng;
