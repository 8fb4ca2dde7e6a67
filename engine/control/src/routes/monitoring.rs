//! `/api/monitoring/*`: memory against the budget, the trend ring, alerts. Reads the monitor's
//! state and /proc; writes nothing.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Params, json_ok};
use crate::memory::{process_memory, system_memory};
use crate::monitor::shed_actions;
use crate::server::AppState;

pub(crate) async fn memory(State(state): State<Arc<AppState>>) -> Response {
    let process = process_memory();
    let system = system_memory();
    let budget = &state.view.budget;
    let live = state.view.live.as_ref();
    let status = live.and_then(|live| live.board.status());
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
                        "windows live {windows_live} / capacity {}{}",
                        live.max_windows,
                        if line.name == "spread windows" && live.windows_prefault {
                            " (the windows' arrays are written at start: windows.prefault)"
                        } else {
                            ""
                        }
                    ),
                )),
                "feed rings" => status.as_ref().filter(|status| status.ring_capacity_records > 0).map(|status| (
                    status.counters.ring_fill_max_records as f64 / status.ring_capacity_records as f64,
                    format!(
                        "fullest ring over the last interval: {} of {} records (the rings are allocated and touched at start)",
                        status.counters.ring_fill_max_records, status.ring_capacity_records
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
            // The feed rings are allocated and touched at start: all resident whatever their fill;
            // so are the windows' arrays when they are prefaulted (`windows.prefault`).
            let resident_from_start = line.name == "feed rings"
                || (line.name == "spread windows"
                    && live.is_some_and(|live| live.windows_prefault));
            let used_bytes = if resident_from_start && fill.is_some() {
                Some(line.bytes as u64)
            } else {
                fill.map(|fill| (fill * line.bytes as f64) as u64)
            };
            json!({
                "name": line.name, "detail": line.detail, "budget_bytes": line.bytes,
                "used_bytes": used_bytes,
                "fill": fill, "basis": basis,
            })
        })
        .collect();
    let shedding = state.monitor.shedding();
    json_ok(json!({
        "process": {"rss_bytes": process.rss_bytes, "rss_peak_bytes": process.rss_peak_bytes, "virtual_bytes": process.virtual_bytes},
        "system": {"total_bytes": system.total_bytes, "available_bytes": system.available_bytes, "used_percent": system.used_percent()},
        "allocator": state.view.allocator_stats.and_then(|read| read()),
        "budget": {
            "total_bytes": budget.total_bytes,
            "rss_percent_of_budget": if budget.total_bytes > 0 { 100.0 * process.rss_bytes as f64 / budget.total_bytes as f64 } else { 0.0 },
        },
        "components": components,
        "shedding": {
            "active": shedding,
            "actions": if shedding { shed_actions(&state.config, live.is_some()) } else { Vec::new() },
            "windows_shed_total": status.as_ref().map(|status| status.counters.windows_shed),
            "windows_cap": status.as_ref().map(|status| status.counters.windows_cap),
            "universe_growth_paused": live.map(|live| live.shed.universe_growth_paused()),
        },
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
