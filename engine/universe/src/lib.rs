//! The universe: which symbols tickflow tracks, discovered from the venues' own spot instrument
//! lists. `parse` turns each venue's public REST response into listings (spelling, base, quote,
//! trading, all from metadata); `select` applies the `[universe]` aliases and filters and caps the
//! result; `diff` says what a refresh adds and retires; `fetch` gets the lists over HTTP with
//! timeouts, a body cap, rate-limit spacing and retries.
//!
//! Architecture invariant: identity comes from metadata only (no spelling is ever split), and
//! selection is pure and deterministic (same lists and config, same universe). The engine applies
//! the universe to the registry and the feeds; nothing here touches them.

pub mod config;
pub mod diff;
pub mod fetch;
pub mod parse;
pub mod select;

pub use config::{AliasConfig, UniverseConfig, UniverseVenueConfig, default_base_url};
pub use diff::{ListingChange, UniverseDiff, diff};
pub use fetch::{
    Discovery, FetchError, Fetcher, budget_lines, discover, min_request_interval, select_discovered,
};
pub use parse::{Instruments, Listing, ParseError, parse_instruments, request_path};
pub use select::{
    ExcludedListing, Exclusion, ExclusionReason, Universe, UniverseSymbol, VenueListing, reselect,
    select,
};
