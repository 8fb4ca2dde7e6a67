//! The HTTP side: hyper HTTP/1.1 on the plugin's one runtime thread. `GET <path>` renders the
//! host's snapshot (shared by scrapes that arrive within [`CACHE_FOR`]); anything else is 404 or
//! 405; a missing or wrong token is 401. Bounded: at most `max_connections` connections (more
//! are closed at accept, counted), a header read timeout and a whole-connection timeout.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tickflow_sdk::{HostHandle, Metric};
use tokio::sync::watch;

use crate::render::{RenderError, render};

/// Scrapes within this time of a render share it (several Prometheus servers scraping at once
/// cost one render).
pub const CACHE_FOR: Duration = Duration::from_millis(500);
/// Longest wait for a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The plugin's own counters (also registered with the host, so they are in the exposition).
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub scrapes: AtomicU64,
    pub renders: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub unauthorized: AtomicU64,
    pub too_large: AtomicU64,
    pub bytes_out: AtomicU64,
    pub last_render_ns: AtomicU64,
    pub last_render_bytes: AtomicU64,
}

/// What the connection tasks share.
pub struct ServerShared {
    pub host: HostHandle,
    pub path: String,
    /// `Bearer <token>`, when a token is configured.
    pub expected_authorization: Option<String>,
    pub max_connections: usize,
    pub render_bytes_max: usize,
    pub request_timeout: Duration,
    pub connections_now: AtomicUsize,
    pub counters: Arc<ServerCounters>,
    pub cache: Mutex<Option<(Instant, Bytes)>>,
    /// The render buffer, reused (its capacity stays at the largest exposition so far).
    pub buffer: Mutex<String>,
    pub metrics: OwnMetrics,
}

/// The plugin's metrics registered with the host (`tickflow_plugin_metrics_*{sink=...}`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnMetrics {
    pub scrapes: Option<Metric>,
    pub render_seconds: Option<Metric>,
    pub render_bytes: Option<Metric>,
    pub rejected: Option<Metric>,
}

impl std::fmt::Debug for ServerShared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerShared")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl ServerShared {
    /// The exposition now: the cached one when fresh, else a new render.
    fn exposition(&self) -> Result<Bytes, RenderError> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some((at, bytes)) = cache.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(bytes.clone());
        }
        let started = Instant::now();
        let mut buffer = self
            .buffer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let rendered = render(&self.host, &mut buffer, self.render_bytes_max);
        if let Err(RenderError::TooLarge { .. }) = rendered {
            self.counters.too_large.fetch_add(1, Ordering::Relaxed);
            // Do not keep a buffer the size of a refused exposition.
            *buffer = String::new();
        }
        rendered?;
        let bytes = Bytes::copy_from_slice(buffer.as_bytes());
        let render_ns = started.elapsed().as_nanos() as u64;
        self.counters.renders.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_render_ns
            .store(render_ns, Ordering::Relaxed);
        self.counters
            .last_render_bytes
            .store(bytes.len() as u64, Ordering::Relaxed);
        if let Some(metric) = self.metrics.render_seconds {
            metric.set(render_ns as f64 / 1e9);
        }
        if let Some(metric) = self.metrics.render_bytes {
            metric.set(bytes.len() as f64);
        }
        *cache = Some((Instant::now(), bytes.clone()));
        Ok(bytes)
    }

    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != self.path {
            return text(
                StatusCode::NOT_FOUND,
                "not found: the metrics are at the configured path\n",
            );
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        if let Some(expected) = &self.expected_authorization {
            let given = request
                .headers()
                .get(AUTHORIZATION)
                .map(HeaderValue::as_bytes);
            if !given.is_some_and(|given| constant_time_eq(given, expected.as_bytes())) {
                self.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
                let mut response = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
                response.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                );
                return response;
            }
        }
        self.counters.scrapes.fetch_add(1, Ordering::Relaxed);
        if let Some(metric) = self.metrics.scrapes {
            metric.add(1);
        }
        match self.exposition() {
            Ok(bytes) => {
                self.counters
                    .bytes_out
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let mut response = Response::new(Full::new(bytes));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            Err(RenderError::TooLarge { .. }) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the exposition is over render_bytes_max: raise it in [sinks.config]\n",
            ),
            Err(RenderError::NoSnapshot) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the engine has no metrics_snapshot (a host older than ABI 1.2)\n",
            ),
        }
    }
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// Accepts until `shutdown` turns true; then waits for the connections still open (each bounded
/// by `request_timeout`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<ServerShared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tracker = tokio::task::JoinSet::new();
    let mut tracker = tracker;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // EMFILE and the like: back off a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if shared.connections_now.load(Ordering::Relaxed) >= shared.max_connections {
                    shared.counters.rejected_connections.fetch_add(1, Ordering::Relaxed);
                    if let Some(metric) = shared.metrics.rejected {
                        metric.add(1);
                    }
                    drop(stream);
                    continue;
                }
                shared.connections_now.fetch_add(1, Ordering::Relaxed);
                let connection_shared = Arc::clone(&shared);
                tracker.spawn(async move {
                    let service_shared = Arc::clone(&connection_shared);
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let response = service_shared.respond(&request);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .max_buf_size(64 * 1024)
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(connection_shared.request_timeout, connection).await;
                    connection_shared.connections_now.fetch_sub(1, Ordering::Relaxed);
                });
                // Reap finished connections so the set stays as small as the open ones.
                while tracker.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    while tracker.join_next().await.is_some() {}
}
