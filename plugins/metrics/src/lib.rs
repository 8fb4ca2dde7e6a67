//! Prometheus metrics sink: serves `http://127.0.0.1:9464/metrics`, the text exposition of every
//! metric the engine exports through the host's `metrics_snapshot` (ABI 1.2: venues, shards,
//! sinks, memory budget) and of every metric the running plugins registered. Built against
//! `tickflow-sdk` only.
//!
//! `create` checks the config (a non-loopback bind needs a token), binds the listener, starts a
//! current-thread tokio runtime on one thread it owns (a scrape every few seconds needs no more;
//! renders are serialized there, which also bounds their CPU) with a hyper HTTP/1.1 server, and
//! publishes the URL through `publish_endpoint` under the name `"metrics"`. It takes only the
//! once-a-second telemetry record, and ignores it: the numbers come from the snapshot.
//! `destroy` (Drop) stops the server and joins the thread.

pub mod config;
pub mod render;
pub mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tickflow_sdk::abi::PluginStats;
use tickflow_sdk::{Batch, HostHandle, RecordKind, Sink, SinkError};
use tokio::sync::watch;

pub use config::{ConfigError, MetricsConfig};
use server::{OwnMetrics, ServerCounters, ServerShared};

/// The sink instance.
pub struct MetricsSink {
    host: HostHandle,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    url: String,
    counters: Arc<ServerCounters>,
}

impl MetricsSink {
    /// The address the server listens on (the real port when `bind` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL published to the engine (`http://127.0.0.1:9464/metrics`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Sink for MetricsSink {
    type Config = MetricsConfig;
    const NAME: &'static str = "metrics";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const RECORD_KINDS: &'static [RecordKind] = &[RecordKind::Telemetry];

    fn create(host: HostHandle, config: MetricsConfig) -> Result<MetricsSink, SinkError> {
        let bind = config.validate().map_err(SinkError::config)?;
        let listener = std::net::TcpListener::bind(bind).map_err(|error| {
            SinkError::failed(format!("metrics: cannot listen on {bind}: {error}"))
        })?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let counters = Arc::new(ServerCounters::default());
        let shared = Arc::new(ServerShared {
            host,
            path: config.path.clone(),
            expected_authorization: config.token.as_ref().map(|token| format!("Bearer {token}")),
            max_connections: config.max_connections,
            render_bytes_max: config.render_bytes_max,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            connections_now: AtomicUsize::new(0),
            counters: counters.clone(),
            cache: Mutex::new(None),
            buffer: Mutex::new(String::new()),
            metrics: OwnMetrics {
                scrapes: host.counter("metrics_scrapes_total", "Scrapes the metrics sink answered"),
                render_seconds: host.gauge(
                    "metrics_last_render_seconds",
                    "Time the last render of the exposition took",
                ),
                render_bytes: host.gauge(
                    "metrics_last_render_bytes",
                    "Size of the last exposition rendered",
                ),
                rejected: host.counter(
                    "metrics_rejected_connections_total",
                    "Connections closed at accept: max_connections reached",
                ),
            },
        });
        let (shutdown_sender, shutdown_receiver) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("metrics-http".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => server::serve(listener, shared, shutdown_receiver).await,
                        Err(error) => host.error(&format!("metrics listener: {error}")),
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        let shown = if local_addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local_addr.port())
        } else {
            local_addr
        };
        let url = format!("http://{shown}{}", config.path);
        if !host.publish_endpoint("metrics", &url) {
            host.warn(&format!(
                "metrics: the engine did not take the endpoint {url} (host older than ABI 1.2?)"
            ));
        }
        host.info(&format!("metrics: serving Prometheus metrics on {url}"));
        Ok(MetricsSink {
            host,
            shutdown: shutdown_sender,
            thread: Some(thread),
            local_addr,
            url,
            counters,
        })
    }

    fn on_batch(&mut self, _batch: Batch<'_>) -> Result<(), SinkError> {
        Ok(())
    }

    fn stats(&self) -> PluginStats {
        PluginStats {
            records_written: self.counters.scrapes.load(Ordering::Relaxed),
            bytes_written: self.counters.bytes_out.load(Ordering::Relaxed),
            errors: self.counters.too_large.load(Ordering::Relaxed),
            ..PluginStats::default()
        }
    }

    fn memory_bound_bytes(config: &MetricsConfig) -> Result<Option<u64>, SinkError> {
        config.validate().map_err(SinkError::config)?;
        Ok(Some(config.memory_bound_bytes()))
    }
}

impl Drop for MetricsSink {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            self.host.error("metrics runtime thread panicked");
        }
    }
}

tickflow_sdk::export_sink!(MetricsSink);
