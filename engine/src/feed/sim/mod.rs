//! Simulated venues (being written).
