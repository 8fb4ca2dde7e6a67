//! The server: binds at start (errors returned to the caller), runs a current-thread tokio
//! runtime on a thread it owns, accepts at most `max_connections` at once (TLS optional), applies
//! header and request timeouts, the request-size limit, the token and the API-version header, and
//! on shutdown stops accepting, lets open requests finish briefly and joins the thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{HttpConfig, HttpConfigError};
use crate::error::ApiError;
use crate::monitor::Monitor;
use crate::state::EngineView;

/// How long open connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The header every response carries.
pub const API_VERSION_HEADER: &str = "x-tickflow-api-version";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Config(#[from] HttpConfigError),
    #[error("cannot listen on http.bind = {bind}: {source}")]
    Bind {
        bind: SocketAddr,
        source: std::io::Error,
    },
    #[error("http TLS: {0}")]
    Tls(String),
    #[error("cannot start the control plane's runtime: {0}")]
    Runtime(std::io::Error),
}

/// What every handler shares.
pub(crate) struct AppState {
    pub config: HttpConfig,
    pub view: EngineView,
    pub monitor: Monitor,
    pub heavy: Arc<Semaphore>,
    pub started: Instant,
    pub history: Result<tickflow_history::History, String>,
    /// How the `/api/dashboard_data` streams went.
    pub streams: Arc<crate::routes::StreamCounters>,
}

/// The running control plane. Dropping it stops and joins it.
pub struct ControlPlane {
    local_addr: SocketAddr,
    url: String,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ControlPlane")
            .field("url", &self.url)
            .finish()
    }
}

impl ControlPlane {
    /// Validates `config`, binds, and starts serving on the control plane's own thread.
    pub fn start(config: HttpConfig, view: EngineView) -> Result<ControlPlane, ControlError> {
        config.validate()?;
        let tls = tls_acceptor(&config)?;
        let listener =
            std::net::TcpListener::bind(config.bind).map_err(|source| ControlError::Bind {
                bind: config.bind,
                source,
            })?;
        let bind_error = |source| ControlError::Bind {
            bind: config.bind,
            source,
        };
        listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{local_addr}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(config.heavy_requests_max + 1)
            .thread_name("tickflow-control")
            .build()
            .map_err(ControlError::Runtime)?;
        let history = match &config.history_dir {
            None => Err("no history directory configured (http.history_dir, or `tickflow serve --data DIR`)".to_string()),
            Some(dir) => tickflow_history::History::open(dir).map_err(|error| error.to_string()),
        };
        let state = Arc::new(AppState {
            monitor: Monitor::new(&config),
            heavy: Arc::new(Semaphore::new(config.heavy_requests_max)),
            started: Instant::now(),
            history,
            streams: Arc::default(),
            view,
            config,
        });
        let cancel = CancellationToken::new();
        let thread_cancel = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("tickflow-control".into())
            .spawn(move || {
                runtime.block_on(serve(listener, tls, state, thread_cancel));
                runtime.shutdown_timeout(SHUTDOWN_GRACE);
            })
            .map_err(ControlError::Runtime)?;
        Ok(ControlPlane {
            local_addr,
            url,
            cancel,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://127.0.0.1:8080` (or `https://…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting, lets open requests finish (at most a couple of seconds) and joins.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the control plane's thread panicked");
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tls_acceptor(config: &HttpConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, ControlError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect())
        .map_err(|error| {
            ControlError::Tls(format!("http.tls_cert {}: {error}", cert_path.display()))
        })?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| {
        ControlError::Tls(format!("http.tls_key {}: {error}", key_path.display()))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ControlError::Tls(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| ControlError::Tls(format!("certificate or key: {error}")))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(
        server_config,
    ))))
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
    cancel: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "control plane cannot use its listener");
            return;
        }
    };
    let tracker = TaskTracker::new();
    tracker.spawn(monitor_loop(Arc::clone(&state), cancel.clone()));
    let router = crate::routes::router(Arc::clone(&state));
    let connections = Arc::new(Semaphore::new(state.config.max_connections));
    let header_timeout = Duration::from_millis(state.config.header_timeout_ms);
    let max_buf_bytes = state.config.max_request_bytes.max(8192);
    loop {
        // Past `max_connections`, new connections wait in the OS backlog.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "control plane accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let cancel = cancel.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    serve_connection(stream, router, cancel, header_timeout, max_buf_bytes).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, router, cancel, header_timeout, max_buf_bytes)
                                .await
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
}

async fn serve_connection<S>(
    stream: S,
    router: axum::Router,
    cancel: CancellationToken,
    header_timeout: Duration,
    max_buf_bytes: usize,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_buf_bytes);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "control plane connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}

async fn monitor_loop(state: Arc<AppState>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(state.config.monitor_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => state.monitor.tick(Instant::now(), &state.view, &state.config),
        }
    }
}

/// Routes that need no token: the liveness probe and the dashboard's static files (no data).
fn is_public(path: &str) -> bool {
    path == "/health" || path == "/" || path.starts_with("/assets/")
}

/// Size limit, token, request timeout and the API-version header, around every route.
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = guarded(&state, request, next).await;
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from(crate::API_VERSION));
    response
}

async fn guarded(state: &AppState, request: Request, next: Next) -> Response {
    let content_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if chunked
        || content_length.is_some_and(|length| length > state.config.max_request_bytes as u64)
    {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "request body over http.max_request_bytes = {} (the API takes no bodies)",
                state.config.max_request_bytes
            ),
        )
        .into_response();
    }
    if let Some(token) = state.config.token()
        && !is_public(request.uri().path())
    {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if !presented
            .is_some_and(|presented| constant_time_eq(presented.as_bytes(), token.as_bytes()))
        {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs `Authorization: Bearer <http.token>`",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "not answered within http.request_timeout_ms = {}",
                state.config.request_timeout_ms
            ),
        )
        .into_response(),
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
