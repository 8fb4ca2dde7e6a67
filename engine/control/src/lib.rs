//! tickflow's control plane: an HTTP API (health, readiness, memory with trend and alerts, live
//! opportunities, published endpoints, history as NDJSON) and the embedded dashboard, served by
//! axum on its own small tokio runtime in a thread this crate owns and joins. It reads the engine
//! through [`EngineView`] / [`EngineBoard`] and never writes engine state. API: `API.md`.

pub mod assets;
pub mod config;
pub mod error;
pub mod memory;
pub mod monitor;
mod routes;
mod server;
pub mod state;

pub use config::{AlertThresholds, HttpConfig, HttpConfigError};
pub use server::{ControlError, ControlPlane};
pub use state::{EngineBoard, EngineStatus, EngineView, LiveEngine, Phase, SourceStatus};

/// The API version every JSON response carries (`api_version`).
pub const API_VERSION: u32 = 1;
