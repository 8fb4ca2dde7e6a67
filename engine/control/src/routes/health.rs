//! `/health` and `/ready`: liveness with the checks of API.md (503 while starting, draining, a
//! shard dead, a venue or a `[[sources]]` input down too long, a required sink disabled) and
//! readiness.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use tickflow_core::venue::Venue;

use super::json_status;
use crate::memory::process_memory;
use crate::server::AppState;
use crate::state::Phase;

pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    let now = Instant::now();
    let rss_bytes = process_memory().rss_bytes;
    let budget_bytes = state.view.budget.total_bytes as u64;
    let memory = json!({
        "rss_bytes": rss_bytes,
        "budget_bytes": budget_bytes,
        "rss_percent_of_budget": if budget_bytes > 0 { 100.0 * rss_bytes as f64 / budget_bytes as f64 } else { 0.0 },
    });
    let control_tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let Some(live) = &state.view.live else {
        return json_status(
            StatusCode::OK,
            json!({
                "status": "ok", "mode": "history", "reasons": [],
                "uptime_ms": state.started.elapsed().as_millis() as u64,
                "venues": [], "shards": [], "sinks": [], "sources": [],
                "tasks": {"feeds": 0, "shards": 0, "sinks": 0, "control": control_tasks},
                "memory": memory,
            }),
        );
    };
    let phase = live.board.phase();
    let status = live.board.status();
    let mut reasons: Vec<String> = Vec::new();
    let tracks = state.monitor.venue_tracks();
    let down_after = std::time::Duration::from_millis(state.config.venue_down_after_ms);
    let mut venues = Vec::new();
    let mut shards = Vec::new();
    let mut sinks = Vec::new();
    let mut sources = Vec::new();
    let mut tasks = json!({"feeds": 0, "shards": 0, "sinks": 0, "control": control_tasks});
    if let Some(status) = &status {
        for venue in Venue::ALL {
            let slots = status.slots.iter().filter(|slot| slot.plan.venue == venue);
            let (mut planned, mut up, mut reconnects, mut records) = (0u64, 0u64, 0u64, 0u64);
            for slot in slots {
                planned += 1;
                up += u64::from(
                    slot.counters
                        .connected
                        .load(std::sync::atomic::Ordering::Relaxed),
                );
                reconnects += slot
                    .counters
                    .reconnects
                    .load(std::sync::atomic::Ordering::Relaxed);
                records += slot
                    .counters
                    .records
                    .load(std::sync::atomic::Ordering::Relaxed);
            }
            if planned == 0 {
                continue;
            }
            let track = tracks[venue.index()];
            let down_for = track
                .down_since
                .map_or(std::time::Duration::ZERO, |since| now.duration_since(since));
            if up == 0 && down_for >= down_after {
                reasons.push(format!(
                    "venue {venue}: every connection down for {} ms",
                    down_for.as_millis()
                ));
            }
            venues.push(json!({
                "venue": venue.name(), "connections_up": up, "connections_planned": planned,
                "last_data_age_ms": track.last_data_at.map(|at| now.duration_since(at).as_millis() as u64),
                "down_for_ms": down_for.as_millis() as u64, "reconnects": reconnects, "records": records,
            }));
        }
        for (index, handle) in live.snapshots.iter().enumerate() {
            let snapshot = handle.load();
            let alive = !status.dead_shards.contains(&index);
            if !alive {
                reasons.push(format!("shard {index}: thread is dead"));
            }
            let age_ms =
                (tickflow_core::record::now_ns() - snapshot.published_ns).max(0) / 1_000_000;
            shards.push(json!({"shard": index, "alive": alive, "windows_live": snapshot.windows.len(), "snapshot_age_ms": age_ms}));
        }
        let mut running = 0usize;
        for sink in &status.sinks {
            let required = live.required_sinks.contains(&sink.name);
            let state_name = if sink.disabled {
                "disabled"
            } else if sink.restarts > 0 && sink.dropped_unavailable > 0 {
                "quarantined"
            } else {
                "running"
            };
            if sink.disabled && required {
                reasons.push(format!("sink {}: disabled (required)", sink.name));
            }
            running += usize::from(!sink.disabled);
            sinks.push(json!({
                "name": sink.name, "plugin": sink.plugin_name, "state": state_name, "required": required,
                "drops": sink.lost(), "delivered": sink.delivered, "restarts": sink.restarts,
            }));
        }
        for source in &status.sources {
            if !source.connected && source.down_for_ms >= down_after.as_millis() as u64 {
                reasons.push(format!(
                    "source {}: no connection for {} ms",
                    source.name, source.down_for_ms
                ));
            }
            sources.push(json!({
                "name": source.name, "kind": source.kind, "connected": source.connected,
                "down_for_ms": source.down_for_ms, "last_message_age_ms": source.last_message_age_ms,
                "sessions": source.sessions, "messages": source.messages, "applied": source.applied,
                "duplicates": source.duplicates, "redeliveries": source.redeliveries,
                "refused": source.refused, "venues_silenced": source.venues_silenced,
                "reorder_held": source.reorder_held,
            }));
        }
        tasks = json!({
            "feeds": status.feed_tasks,
            "shards": status.shard_count - status.dead_shards.len(),
            "sinks": running,
            "control": control_tasks,
        });
    }
    let status_name = match phase {
        Phase::Starting => "starting",
        Phase::Draining => "draining",
        Phase::Running if status.is_none() => "starting",
        Phase::Running if !reasons.is_empty() => "unhealthy",
        Phase::Running => "ok",
    };
    let code = if status_name == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_status(
        code,
        json!({
            "status": status_name, "mode": "engine", "reasons": reasons,
            "uptime_ms": state.started.elapsed().as_millis() as u64,
            "venues": venues, "shards": shards, "sinks": sinks, "sources": sources,
            "tasks": tasks, "memory": memory,
        }),
    )
}

pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let Some(live) = &state.view.live else {
        return json_status(
            StatusCode::OK,
            json!({"ready": true, "phase": "running", "waiting_for": []}),
        );
    };
    let phase = live.board.phase();
    let mut waiting_for = Vec::new();
    match live.board.status() {
        None => waiting_for.push("engine".to_string()),
        Some(status) => {
            for venue in Venue::ALL {
                let mut planned = false;
                let mut records = 0u64;
                for slot in status.slots.iter().filter(|slot| slot.plan.venue == venue) {
                    planned = true;
                    records += slot
                        .counters
                        .records
                        .load(std::sync::atomic::Ordering::Relaxed);
                }
                if planned && records == 0 {
                    waiting_for.push(venue.name().to_string());
                }
            }
        }
    }
    let ready = phase == Phase::Running && waiting_for.is_empty();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_status(
        code,
        json!({"ready": ready, "phase": phase.name(), "waiting_for": waiting_for}),
    )
}
