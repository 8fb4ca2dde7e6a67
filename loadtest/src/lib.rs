//! Simulated venues and load scenarios for tickflow.
