//! tickflow-load's integration tests, one module per area.

mod engine_config;
mod real_rates;
mod scenario;
