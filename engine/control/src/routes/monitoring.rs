//! `/api/monitoring/*`: memory against the budget, the trend ring, alerts. Reads the monitor's
//! state and /proc; writes nothing.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Params, json_ok};
use crate::memory::{process_memory, system_memory};
use crate::monitor::SHED_HEAVY_REQUESTS;
use crate::server::AppState;

pub(crate) async fn memory(State(state): State<Arc<AppState>>) -> Response {
    let process = process_memory();
    let system = system_memory();
    let budget = &state.view.budget;
    let live = state.view.live.as_ref();
    let windows_live: usize = live.map_or(0, |live| {
        live.snapshots
            .iter()
            .map(|handle| handle.load().windows.len())
            .sum()
    });
    let components: Vec<serde_json::Value> = budget
        .lines
        .iter()
        .map(|line| {
            let fill = live.and_then(|live| match line.name {
                "spread windows" | "window snapshots" if live.max_windows > 0 => Some((
                    windows_live as f64 / live.max_windows as f64,
                    format!(
                        "windows live {windows_live} / capacity {}",
                        live.max_windows
                    ),
                )),
                "symbol registry" if live.max_symbols > 0 => Some((
                    live.registry.len() as f64 / live.max_symbols as f64,
                    format!(
                        "symbols {} / max_symbols {}",
                        live.registry.len(),
                        live.max_symbols
                    ),
                )),
                _ => None,
            });
            let (fill, basis) = match fill {
                Some((fill, basis)) => (Some(fill.clamp(0.0, 1.0)), basis),
                None => (
                    None,
                    "not measured while running: the line is the configured worst case".to_string(),
                ),
            };
            json!({
                "name": line.name, "detail": line.detail, "budget_bytes": line.bytes,
                "used_bytes": fill.map(|fill| (fill * line.bytes as f64) as u64),
                "fill": fill, "basis": basis,
            })
        })
        .collect();
    let shedding = state.monitor.shedding();
    json_ok(json!({
        "process": {"rss_bytes": process.rss_bytes, "rss_peak_bytes": process.rss_peak_bytes, "virtual_bytes": process.virtual_bytes},
        "system": {"total_bytes": system.total_bytes, "available_bytes": system.available_bytes, "used_percent": system.used_percent()},
        "budget": {
            "total_bytes": budget.total_bytes,
            "rss_percent_of_budget": if budget.total_bytes > 0 { 100.0 * process.rss_bytes as f64 / budget.total_bytes as f64 } else { 0.0 },
        },
        "components": components,
        "shedding": {"active": shedding, "actions": if shedding { vec![SHED_HEAVY_REQUESTS] } else { Vec::new() }},
    }))
}

pub(crate) async fn trend(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let minutes = match Params::parse(query.as_deref(), &["minutes"])
        .and_then(|params| params.integer("minutes", 60, 1, 1440))
    {
        Ok(minutes) => minutes,
        Err(error) => return error.into_response(),
    };
    json_ok(json!({
        "interval_ms": state.config.trend_interval_ms,
        "capacity": state.monitor.trend_capacity(),
        "minutes": minutes,
        "samples": state.monitor.trend(minutes),
    }))
}

pub(crate) async fn alerts(State(state): State<Arc<AppState>>) -> Response {
    let (active, history) = state.monitor.alerts();
    json_ok(json!({
        "active": active,
        "history": history,
        "history_capacity": state.monitor.history_capacity(),
    }))
}
