//! The history routes: a day's cycles per pair, and `/api/dashboard_data` as NDJSON streamed pair
//! by pair. Reading runs on a blocking thread (tickflow-history) that serializes each pair's line
//! straight into chunks of [`STREAM_CHUNK_BYTES`] handed through a channel of a few chunks to the
//! response body (no JSON tree, no whole line held: what is in flight is bounded in bytes
//! whatever a pair's size); when the client goes, the send fails and the reading stops. At most
//! `heavy_requests_max` run at once (429 + Retry-After otherwise), and none start while a
//! critical memory alert sheds load. `/api/history/streams` counts the streams and how they
//! ended.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Chunks in flight between the reader and the socket.
const STREAM_CHUNKS_IN_FLIGHT: usize = 4;
/// Bytes of NDJSON per chunk handed to the socket (a line's end is handed at once).
const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// How the `/api/dashboard_data` streams went since start (`/api/history/streams`).
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    started: AtomicU64,
    completed: AtomicU64,
    client_gone: AtomicU64,
    failed: AtomicU64,
    pairs_sent: AtomicU64,
}

impl StreamCounters {
    fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}
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

/// `GET /api/history/streams`: the dashboard_data streams since start, and how they ended.
pub(crate) async fn streams(State(state): State<Arc<AppState>>) -> Response {
    let counters = &state.streams;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let started = load(&counters.started);
    let ended = load(&counters.completed) + load(&counters.client_gone) + load(&counters.failed);
    json_ok(json!({
        "started": started,
        "running": started.saturating_sub(ended),
        "completed": load(&counters.completed),
        "client_gone": load(&counters.client_gone),
        "failed": load(&counters.failed),
        "pairs_sent": load(&counters.pairs_sent),
        "heavy_slots_free": state.heavy.available_permits(),
        "heavy_requests_max": state.config.heavy_requests_max,
    }))
}

/// The response body: chunks from the reader's channel.
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

/// One pair's NDJSON line, serialized from the series as it is (no JSON tree).
#[derive(serde::Serialize)]
struct PairLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    symbol: &'a str,
    buy_venue: &'a str,
    sell_venue: &'a str,
    ts_ms: &'a [i64],
    spread_bp: &'a [f64],
    upper_bp: &'a [f64],
    lower_bp: &'a [f64],
    /// `[start_ms, end_ms]` pairs.
    gaps: &'a [(i64, i64)],
}

/// The client went away (the channel to the response body is closed).
#[derive(Debug)]
struct ClientGone;

/// Serialized bytes, handed to the response body in chunks of [`STREAM_CHUNK_BYTES`].
struct ChunkSender<'a> {
    sender: &'a mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl ChunkSender<'_> {
    fn send(&mut self) -> Result<(), ClientGone> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(STREAM_CHUNK_BYTES));
        self.sender
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| ClientGone)
    }

    /// A whole line: serialized in chunks, its end handed at once.
    fn line(&mut self, value: &impl serde::Serialize) -> Result<(), ClientGone> {
        // An error here is either the client gone (the writer's) or a bug (serde_json cannot
        // fail on these types); either way the stream ends.
        serde_json::to_writer(&mut *self, value).map_err(|_| ClientGone)?;
        self.buffer.push(b'\n');
        self.send()
    }
}

impl Write for ChunkSender<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= STREAM_CHUNK_BYTES {
            self.send()
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
    let (sender, receiver) = mpsc::channel::<Bytes>(STREAM_CHUNKS_IN_FLIGHT);
    let (opened_sender, opened) = oneshot::channel::<Result<(), ApiError>>();
    let query = tickflow_history::DaySeriesQuery {
        threshold_bp: threshold,
        min_cycles,
        max_points,
    };
    let counters = Arc::clone(&state.streams);
    StreamCounters::add(&counters.started, 1);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let started = Instant::now();
        let pairs = match history.day_series(date, query) {
            Ok(pairs) => {
                let _ = opened_sender.send(Ok(()));
                pairs
            }
            Err(error) => {
                StreamCounters::add(&counters.failed, 1);
                let _ = opened_sender.send(Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_history",
                    error.to_string(),
                )));
                return;
            }
        };
        let mut out = ChunkSender {
            sender: &sender,
            buffer: Vec::with_capacity(STREAM_CHUNK_BYTES),
        };
        let (mut count, mut points) = (0u64, 0u64);
        for pair in pairs {
            let sent = match pair {
                Ok(pair) => {
                    count += 1;
                    points += pair.ts_ms.len() as u64;
                    out.line(&PairLine {
                        kind: "pair",
                        symbol: &pair.symbol,
                        buy_venue: &pair.buy_venue,
                        sell_venue: &pair.sell_venue,
                        ts_ms: &pair.ts_ms,
                        spread_bp: &pair.spread_bp,
                        upper_bp: &pair.upper_bp,
                        lower_bp: &pair.lower_bp,
                        gaps: &pair.gaps,
                    })
                }
                Err(error) => {
                    StreamCounters::add(&counters.failed, 1);
                    let _ = out.line(&json!({
                        "type": "error", "api_version": crate::API_VERSION, "code": "history_error",
                        "message": error.to_string(), "pairs": count,
                    }));
                    return;
                }
            };
            if sent.is_err() {
                // The client went away: stop reading.
                StreamCounters::add(&counters.client_gone, 1);
                return;
            }
            StreamCounters::add(&counters.pairs_sent, 1);
        }
        let summary = out.line(&json!({
            "type": "summary", "api_version": crate::API_VERSION, "date": date_text, "threshold_bp": threshold_bp,
            "min_cycles": min_cycles, "max_points": max_points, "pairs": count, "points": points,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }));
        if summary.is_err() {
            StreamCounters::add(&counters.client_gone, 1);
        } else {
            StreamCounters::add(&counters.completed, 1);
        }
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
