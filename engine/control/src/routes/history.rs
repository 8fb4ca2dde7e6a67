//! The history routes: a day's cycles per pair, and `/api/dashboard_data` as NDJSON streamed pair
//! by pair. Reading runs on a blocking thread (tickflow-history) and hands each line through a
//! channel of a few lines to the response body; when the client goes, the send fails and the
//! reading stops. At most `heavy_requests_max` run at once (429 + Retry-After otherwise), and none
//! start while a critical memory alert sheds load.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::{Params, json_ok};
use crate::error::ApiError;
use crate::server::AppState;

/// Lines in flight between the reader and the socket.
const STREAM_LINES_IN_FLIGHT: usize = 4;
/// What a 429 asks the client to wait, in seconds.
const RETRY_AFTER_S: u64 = 2;

fn heavy_permit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    if state.monitor.shedding() {
        return Err(ApiError::too_many(
            "shedding",
            "a critical memory alert is active: heavy requests are refused (see /api/monitoring/alerts)",
            RETRY_AFTER_S * 15,
        ));
    }
    Arc::clone(&state.heavy).try_acquire_owned().map_err(|_| {
        ApiError::too_many(
            "too_many_requests",
            format!(
                "http.heavy_requests_max = {} heavy requests already running",
                state.config.heavy_requests_max
            ),
            RETRY_AFTER_S,
        )
    })
}

fn history(state: &AppState) -> Result<tickflow_history::History, ApiError> {
    state
        .history
        .clone()
        .map_err(|reason| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_history", reason))
}

/// A configured threshold as the history stores it (whole basis points).
fn history_threshold(threshold_bp: f64) -> Result<u32, ApiError> {
    if threshold_bp.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&threshold_bp) {
        return Err(ApiError::bad_parameter(
            "threshold_bp",
            format!("{threshold_bp}: the history keys thresholds in whole basis points"),
        ));
    }
    Ok(threshold_bp as u32)
}

pub(crate) async fn opportunities(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let params = Params::parse(query.as_deref(), &["date", "threshold_bp"])?;
        let date = params.date()?;
        let threshold_bp = params.threshold_bp(&state.view.thresholds_bp)?;
        let threshold = history_threshold(threshold_bp)?;
        let history = history(&state)?;
        let permit = heavy_permit(&state)?;
        let pairs = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            history.day_opportunities(date, threshold)
        })
        .await
        .map_err(|error| ApiError::internal(format!("history reader ended: {error}")))?
        .map_err(|error| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_history", error.to_string()))?;
        let mut pairs: Vec<serde_json::Value> = pairs
            .into_iter()
            .map(|pair| json!({"symbol": pair.symbol, "buy_venue": pair.buy_venue, "sell_venue": pair.sell_venue, "cycles": pair.cycles}))
            .collect();
        pairs.sort_by(|a, b| b["cycles"].as_u64().cmp(&a["cycles"].as_u64()));
        Ok::<_, ApiError>(json!({
            "date": params.get("date"), "threshold_bp": threshold_bp, "count": pairs.len(), "pairs": pairs,
        }))
    }
    .await;
    match result {
        Ok(body) => json_ok(body),
        Err(error) => error.into_response(),
    }
}

/// The response body: lines from the reader's channel.
struct LineBody {
    lines: mpsc::Receiver<Bytes>,
}

impl http_body::Body for LineBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.lines
            .poll_recv(context)
            .map(|line| line.map(|line| Ok(http_body::Frame::data(line))))
    }
}

fn line(value: &serde_json::Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

pub(crate) async fn dashboard_data(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    match start_stream(&state, query.as_deref()).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn start_stream(state: &AppState, query: Option<&str>) -> Result<Response, ApiError> {
    let params = Params::parse(query, &["date", "min_cycles", "threshold_bp", "max_points"])?;
    let date = params.date()?;
    let date_text = params.get("date").unwrap_or_default().to_string();
    let min_cycles = params.integer("min_cycles", 50, 0, u64::from(u32::MAX))?;
    let threshold_bp = params.threshold_bp(&state.view.thresholds_bp)?;
    let threshold = history_threshold(threshold_bp)?;
    let max_points = match params.get("max_points") {
        None => None,
        Some(_) => Some(params.integer("max_points", 0, 2, 1_000_000)? as usize),
    };
    let history = history(state)?;
    let permit = heavy_permit(state)?;
    let (sender, receiver) = mpsc::channel::<Bytes>(STREAM_LINES_IN_FLIGHT);
    let (opened_sender, opened) = oneshot::channel::<Result<(), ApiError>>();
    let query = tickflow_history::DaySeriesQuery {
        threshold_bp: threshold,
        min_cycles,
        max_points,
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let started = Instant::now();
        let pairs = match history.day_series(date, query) {
            Ok(pairs) => {
                let _ = opened_sender.send(Ok(()));
                pairs
            }
            Err(error) => {
                let _ = opened_sender.send(Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_history",
                    error.to_string(),
                )));
                return;
            }
        };
        let (mut count, mut points) = (0u64, 0u64);
        for pair in pairs {
            let value = match pair {
                Ok(pair) => {
                    count += 1;
                    points += pair.ts_ms.len() as u64;
                    let gaps: Vec<[i64; 2]> =
                        pair.gaps.iter().map(|&(start, end)| [start, end]).collect();
                    json!({
                        "type": "pair", "symbol": pair.symbol, "buy_venue": pair.buy_venue, "sell_venue": pair.sell_venue,
                        "ts_ms": pair.ts_ms, "spread_bp": pair.spread_bp, "upper_bp": pair.upper_bp, "lower_bp": pair.lower_bp,
                        "gaps": gaps,
                    })
                }
                Err(error) => {
                    let _ = sender.blocking_send(line(&json!({
                        "type": "error", "api_version": crate::API_VERSION, "code": "history_error",
                        "message": error.to_string(), "pairs": count,
                    })));
                    return;
                }
            };
            if sender.blocking_send(line(&value)).is_err() {
                // The client went away: stop reading.
                return;
            }
        }
        let _ = sender.blocking_send(line(&json!({
            "type": "summary", "api_version": crate::API_VERSION, "date": date_text, "threshold_bp": threshold_bp,
            "min_cycles": min_cycles, "max_points": max_points, "pairs": count, "points": points,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })));
    });
    match opened.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            return Err(ApiError::internal(
                "history reader ended before it opened the day",
            ));
        }
    }
    let mut response = axum::body::Body::new(LineBody { lines: receiver }).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
