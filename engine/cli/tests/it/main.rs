//! The engine's integration tests: one binary, one module per area.

mod budget;
mod control;
mod control_http;
mod dashboard;
mod decode_cli;
mod demo;
mod deploy;
mod feeds;
#[path = "../../../decode/tests/it/fixtures.rs"]
mod fixtures;
mod layering;
mod metrics_sink;
mod parquet_sink;
mod plugin_host;
mod real_rates_smoke;
mod scale_out;
mod sink_budget;
mod tidy;
mod universe;
mod warm_start;
