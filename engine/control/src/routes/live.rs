//! `/api/opportunities` (from the shards' latest snapshots) and `/api/endpoints` (what sink
//! plugins published). Reads only.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tickflow_core::config::SpreadBasis;
use tickflow_core::shard::window::WindowSummary;
use tickflow_core::venue::Venue;

use super::{Params, json_ok};
use crate::error::ApiError;
use crate::server::AppState;

const SORTS: [&str; 5] = ["spread", "net_spread", "cycles", "deviation", "symbol"];

fn deviation(window: &WindowSummary) -> f64 {
    if window.std_bp > 0.0 {
        (window.last_bp - window.mean_bp) / window.std_bp
    } else {
        f64::NEG_INFINITY
    }
}

pub(crate) async fn opportunities(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    match opportunities_json(&state, query.as_deref()) {
        Ok(body) => json_ok(body),
        Err(error) => error.into_response(),
    }
}

fn opportunities_json(
    state: &AppState,
    query: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let params = Params::parse(query, &["threshold_bp", "min_cycles", "sort", "limit"])?;
    let threshold_bp = params.threshold_bp(&state.view.thresholds_bp)?;
    let min_cycles = params.integer("min_cycles", 0, 0, u64::from(u32::MAX))?;
    let limit = params.integer("limit", 100, 1, 1000)? as usize;
    let sort = params.get("sort").unwrap_or("spread");
    if !SORTS.contains(&sort) {
        return Err(
            ApiError::bad_parameter("sort", format!("`{sort}` is not one of {SORTS:?}"))
                .with_allowed(json!(SORTS)),
        );
    }
    let Some(live) = &state.view.live else {
        return Ok(json!({
            "threshold_bp": threshold_bp, "min_cycles": min_cycles, "sort": sort, "limit": limit,
            "total": 0, "count": 0, "snapshot_age_ms": null, "opportunities": [], "engine": false,
        }));
    };
    let snapshots: Vec<_> = live
        .snapshots
        .iter()
        .map(|handle| handle.load_full())
        .collect();
    let oldest_ns = snapshots.iter().map(|snapshot| snapshot.published_ns).min();
    let name = |window: &WindowSummary| {
        live.registry
            .name(window.symbol_id)
            .map(|name| name.as_str().to_owned())
            .unwrap_or_else(|| format!("#{}", window.symbol_id.0))
    };
    // The threshold's place in the configured list (the parameter is one of them) picks its
    // cycles out of each window's per-threshold counts.
    let threshold_index = state
        .view
        .thresholds_bp
        .iter()
        .position(|&configured| configured == threshold_bp)
        .unwrap_or(0);
    let at_threshold =
        |window: &WindowSummary| window.cycles[threshold_index.min(window.cycles.len() - 1)];
    let mut windows: Vec<&WindowSummary> = snapshots
        .iter()
        .flat_map(|snapshot| snapshot.windows.iter())
        .filter(|window| u64::from(at_threshold(window).completed) >= min_cycles)
        .collect();
    let total = windows.len();
    match sort {
        "net_spread" => windows.sort_by(|a, b| b.net_last_bp.total_cmp(&a.net_last_bp)),
        "cycles" => windows.sort_by_key(|window| std::cmp::Reverse(at_threshold(window).completed)),
        "deviation" => windows.sort_by(|a, b| deviation(b).total_cmp(&deviation(a))),
        "symbol" => windows.sort_by_cached_key(|window| name(window)),
        _ => windows.sort_by(|a, b| b.last_bp.total_cmp(&a.last_bp)),
    }
    let venue_name = |id| Venue::from_id(id).map_or("?", Venue::name);
    let list: Vec<serde_json::Value> = windows
        .iter()
        .take(limit)
        .map(|window| {
            let cycles = at_threshold(window);
            let cycle_spread = match live.cycles_on {
                SpreadBasis::Gross => window.last_bp,
                SpreadBasis::Net => window.net_last_bp,
            };
            json!({
                "symbol": name(window),
                "buy_venue": venue_name(window.buy_venue_id),
                "sell_venue": venue_name(window.sell_venue_id),
                "spread_bp": window.last_bp, "net_spread_bp": window.net_last_bp, "fees_bp": window.fees_bp,
                "mean_bp": window.mean_bp, "std_bp": window.std_bp, "min_bp": window.min_bp, "max_bp": window.max_bp,
                "upper_bp": window.band_upper_bp, "lower_bp": window.band_lower_bp,
                "cycles": cycles.completed, "cycle_active": cycles.active,
                "cycles_all_thresholds": window.cycles_completed,
                "last_cycle_start_ms": (cycles.last_start_ns > 0).then_some(cycles.last_start_ns / 1_000_000),
                "last_cycle_end_ms": (cycles.last_end_ns > 0).then_some(cycles.last_end_ns / 1_000_000),
                "above_threshold": cycle_spread > threshold_bp,
                "warming": window.warming, "buckets_filled": window.buckets_filled,
                "last_update_ms": window.last_update_ns / 1_000_000,
            })
        })
        .collect();
    Ok(json!({
        "threshold_bp": threshold_bp, "min_cycles": min_cycles, "sort": sort, "limit": limit,
        "total": total, "count": list.len(),
        "snapshot_age_ms": oldest_ns.map(|ns| (tickflow_core::record::now_ns() - ns).max(0) / 1_000_000),
        "opportunities": list,
    }))
}

pub(crate) async fn endpoints(State(state): State<Arc<AppState>>) -> Response {
    let endpoints: Vec<serde_json::Value> = state
        .view
        .live
        .as_ref()
        .and_then(|live| live.board.status())
        .map(|status| {
            status
                .endpoints
                .iter()
                .map(|endpoint| json!({"sink": endpoint.sink, "name": endpoint.name, "url": endpoint.url}))
                .collect()
        })
        .unwrap_or_default();
    json_ok(json!({
        "mode": state.view.mode(),
        "endpoints": endpoints,
        "thresholds_bp": state.view.thresholds_bp,
        "history": state.history.is_ok(),
    }))
}
