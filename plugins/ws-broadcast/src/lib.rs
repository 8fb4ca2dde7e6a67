//! WebSocket broadcast sink: live records to thousands of browsers, none of which can slow the
//! others (issue 11). Built against `tickflow-sdk` only.
//!
//! `create` binds the listener, starts the plugin's own tokio runtime on a thread it owns (a
//! broadcast task and a fastwebsockets-over-hyper server) and publishes the URL through the
//! host's `publish_endpoint` (ABI 1.2). `on_batch` copies the batch into a bounded queue to the
//! broadcast task and returns (a full queue drops and counts); it never waits on a client.
//! `destroy` (Drop) stops the runtime: every client gets a 1001 close, the thread is joined.
//! The protocol is in this crate's README.

pub mod client;
pub mod config;
pub mod counters;
pub mod hub;
pub mod protocol;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tickflow_sdk::abi::PluginStats;
use tickflow_sdk::{Batch, HostHandle, RecordKind, Sink, SinkError};
use tokio::sync::{mpsc, watch};

pub use config::WsConfig;
pub use counters::CountersSnapshot;

use client::ClientLimits;
use counters::{Counters, Reporter};
use hub::{Hub, HubLimits, Ingest};
use server::ServerShared;

/// Batches (not records) the ingest channel holds at most; records are bounded separately by
/// `ingest_queue_records_max`.
const INGEST_QUEUE_BATCHES: usize = 4096;
/// Client commands (subscribe, connect, ...) waiting for the broadcast task.
const COMMAND_QUEUE: usize = 4096;

/// The sink instance.
pub struct WsBroadcast {
    host: HostHandle,
    ingest: mpsc::Sender<Ingest>,
    ingest_records: Arc<AtomicUsize>,
    ingest_records_max: usize,
    counters: Arc<Counters>,
    reporter: Reporter,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    url: String,
}

impl WsBroadcast {
    /// The address the server listens on (the real port when `bind` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL published to the engine (`ws://127.0.0.1:8081/ws`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The sink's counters now.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    fn enqueue(&self, batch: Ingest) {
        let len = batch.len();
        Counters::add(&self.counters.records_in, len as u64);
        let queued = self.ingest_records.fetch_add(len, Ordering::Relaxed);
        if queued + len > self.ingest_records_max {
            self.ingest_records.fetch_sub(len, Ordering::Relaxed);
            Counters::add(&self.counters.ingest_dropped, len as u64);
            return;
        }
        if self.ingest.try_send(batch).is_err() {
            self.ingest_records.fetch_sub(len, Ordering::Relaxed);
            Counters::add(&self.counters.ingest_dropped, len as u64);
        }
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                self.host.error("ws-broadcast runtime thread panicked");
            }
        }
        self.reporter.report(self.counters.snapshot());
    }
}

fn tls_acceptor(config: &WsConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, SinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert_path, &config.tls_key_path) else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect())
        .map_err(|error| SinkError::config(format!("{}: {error}", cert_path.display())))?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|error| SinkError::config(format!("{}: {error}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| SinkError::config(format!("TLS: {error}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| SinkError::config(format!("TLS certificate or key: {error}")))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(
        server_config,
    ))))
}

fn duration_s(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

impl Sink for WsBroadcast {
    type Config = WsConfig;
    const NAME: &'static str = "ws-broadcast";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const RECORD_KINDS: &'static [RecordKind] = &RecordKind::ALL;

    fn create(host: HostHandle, config: WsConfig) -> Result<WsBroadcast, SinkError> {
        let bind = config.validate().map_err(SinkError::config)?;
        let tls = tls_acceptor(&config)?;
        let listener = std::net::TcpListener::bind(bind)
            .map_err(|error| SinkError::failed(format!("cannot listen on {bind}: {error}")))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .thread_name("ws-broadcast")
            .enable_all()
            .build()?;
        let counters = Arc::new(Counters::default());
        let (ingest_sender, ingest_receiver) = mpsc::channel(INGEST_QUEUE_BATCHES);
        let (command_sender, command_receiver) = mpsc::channel(COMMAND_QUEUE);
        let (shutdown_sender, shutdown_receiver) = watch::channel(false);
        let ingest_records = Arc::new(AtomicUsize::new(0));
        let limits = ClientLimits {
            queue_bytes_max: config.client_queue_bytes_max,
            queue_frames_max: config.client_queue_frames_max,
            lag_max_frames: config.client_lag_max_frames,
            write_timeout: Duration::from_millis(config.write_timeout_ms),
            ping_interval: duration_s(config.ping_interval_s),
            pong_timeout: duration_s(config.pong_timeout_s),
            message_bytes_max: config.client_message_bytes_max,
            messages_per_s: config.client_messages_per_s,
            subscriptions_max: config.subscriptions_max,
        };
        let hello = protocol::hello_frame(
            config.flush_interval_ms,
            serde_json::json!({
                "subscriptions_max": config.subscriptions_max,
                "client_message_bytes_max": config.client_message_bytes_max,
                "client_messages_per_s": config.client_messages_per_s,
                "ping_interval_s": config.ping_interval_s,
                "pong_timeout_s": config.pong_timeout_s,
            }),
        );
        let server_shared = Arc::new(ServerShared {
            path: config.path.clone(),
            token: config.token.clone(),
            allowed_origins: config.allowed_origins.clone(),
            clients_max: config.clients_max,
            limits,
            counters: counters.clone(),
            hub: command_sender,
            tls,
            hello,
            epoch: tokio::time::Instant::now(),
            next_client_id: AtomicU64::new(1),
            clients_now: AtomicUsize::new(0),
            connections_now: AtomicUsize::new(0),
            socket_send_buffer_bytes: config.socket_send_buffer_bytes,
        });
        let hub = Hub::new(
            host,
            HubLimits {
                channels_max: config.channels_max,
                keys_per_channel_max: config.keys_per_channel_max,
                pending_events_max: config.pending_events_max,
                subscriptions_max: config.subscriptions_max,
            },
            counters.clone(),
        );
        let flush_interval = Duration::from_millis(config.flush_interval_ms);
        let shutdown_timeout = Duration::from_millis(config.shutdown_timeout_ms);
        let hub_ingest_records = ingest_records.clone();
        let thread = std::thread::Builder::new()
            .name("ws-broadcast-main".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            host.error(&format!("ws-broadcast listener: {error}"));
                            return;
                        }
                    };
                    let hub_task = tokio::spawn(hub.run(
                        ingest_receiver,
                        hub_ingest_records,
                        command_receiver,
                        shutdown_receiver.clone(),
                        flush_interval,
                    ));
                    server::serve(listener, server_shared, shutdown_receiver, shutdown_timeout)
                        .await;
                    let _ = hub_task.await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        let scheme = if config.tls() { "wss" } else { "ws" };
        let url = format!("{scheme}://{local_addr}{}", config.path);
        if !host.publish_endpoint("ws", &url) {
            host.warn(&format!(
                "ws-broadcast: the engine did not take the endpoint {url} (host older than ABI 1.2?)"
            ));
        }
        host.info(&format!("ws-broadcast listening on {url}"));
        Ok(WsBroadcast {
            host,
            ingest: ingest_sender,
            ingest_records,
            ingest_records_max: config.ingest_queue_records_max,
            reporter: Reporter::register(host),
            counters,
            shutdown: shutdown_sender,
            thread: Some(thread),
            local_addr,
            url,
        })
    }

    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let ingest = match batch {
            Batch::Quotes(records) => Ingest::Quotes(records.to_vec()),
            Batch::Trades(records) => Ingest::Trades(records.to_vec()),
            Batch::Spreads(records) => Ingest::Spreads(records.to_vec()),
            Batch::Opportunities(records) => Ingest::Opportunities(records.to_vec()),
            Batch::Gaps(records) => Ingest::Gaps(records.to_vec()),
            Batch::Telemetry(records) => Ingest::Telemetry(records.to_vec()),
            // ABI 1.3 venue heartbeats: not broadcast (the control plane shows venue health).
            Batch::VenueStatus(_) => return Ok(()),
        };
        self.enqueue(ingest);
        Ok(())
    }

    fn on_tick(&mut self, _now_ns: i64) -> Result<(), SinkError> {
        self.reporter.report(self.counters.snapshot());
        Ok(())
    }

    fn stats(&self) -> PluginStats {
        let now = self.counters.snapshot();
        PluginStats {
            records_written: now.records_framed,
            records_dropped: now.ingest_dropped + now.pending_dropped,
            bytes_written: now.bytes_out,
            errors: 0,
            ..PluginStats::default()
        }
    }

    fn memory_bound_bytes(config: &WsConfig) -> Result<Option<u64>, SinkError> {
        config.validate().map_err(SinkError::config)?;
        Ok(Some(config.memory_bound_bytes()))
    }
}

impl Drop for WsBroadcast {
    fn drop(&mut self) {
        self.stop();
    }
}

tickflow_sdk::export_sink!(WsBroadcast);
