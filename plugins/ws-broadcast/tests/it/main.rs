//! The WebSocket broadcast sink with real WebSocket clients over loopback: the sink runs through
//! its Rust API with a real ABI host table (names, published endpoints), clients are
//! fastwebsockets clients on their own runtime.

mod delivery;
mod security;
mod slow;
mod support;
