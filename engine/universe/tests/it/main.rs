//! tickflow-universe integration tests: golden parses of the eight venues' real (trimmed)
//! instrument lists, envelope errors, selection, diffs, and fetching over a real local HTTP server.

mod fetch;
mod parse;
mod select;
mod server;

use std::path::PathBuf;

use tickflow_core::venue::Venue;

/// The fixture of `venue` (`tests/fixtures/<venue>_instruments.json`).
pub fn fixture(venue: Venue) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{}_instruments.json", venue.name()));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}
