//! The tickflow sink plugin SDK: the record layouts that cross the plugin ABI unchanged.
//!
//! This crate is the contract between the engine and every plugin. It must never depend on the
//! engine (a tidy test checks it): plugins build against `sdk/` alone.

pub mod records;

pub use records::*;
