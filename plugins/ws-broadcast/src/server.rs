//! The listener: accepts connections (bounded), optionally terminates TLS, checks each upgrade
//! (path, Origin, token, client count), upgrades it with fastwebsockets over hyper, and runs the
//! client's reader and writer. Every connection is a task of one `JoinSet`, joined (or aborted
//! after `shutdown_timeout_ms`) at shutdown.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::Role;
use fastwebsockets::upgrade::UpgradeFut;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, ClientLimits, ClientShared, CloseCause};
use crate::counters::Counters;
use crate::hub::HubCommand;
use crate::protocol;

/// Connections beyond `clients_max` allowed while their HTTP upgrade is in progress.
const UPGRADING_EXTRA: usize = 64;
/// Longest wait for an HTTP request's headers (and a TLS handshake).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection task shares.
pub struct ServerShared {
    pub path: String,
    pub token: Option<String>,
    pub allowed_origins: Vec<String>,
    pub clients_max: usize,
    pub limits: ClientLimits,
    pub counters: Arc<Counters>,
    pub hub: mpsc::Sender<HubCommand>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub hello: Bytes,
    pub epoch: Instant,
    pub next_client_id: AtomicU64,
    /// Upgraded clients now (reserved at upgrade, released when the connection ends).
    pub clients_now: AtomicUsize,
    /// TCP connections now.
    pub connections_now: AtomicUsize,
    /// `SO_SNDBUF` per client socket (0: the kernel's default).
    pub socket_send_buffer_bytes: usize,
}

/// Sets `SO_SNDBUF` (best effort: a refusal leaves the kernel's default).
fn set_send_buffer(stream: &TcpStream, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: the descriptor is the stream's own, open for the call; the option value is a
    // c_int on the stack, passed with its size.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Accepts until `shutdown`, then waits up to `shutdown_timeout` for the connections (which the
/// broadcast task closes with 1001) and aborts the rest.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<ServerShared>,
    mut shutdown: watch::Receiver<bool>,
    shutdown_timeout: Duration,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of descriptors or similar: back off a little instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if shared.connections_now.load(Ordering::Relaxed) >= shared.clients_max + UPGRADING_EXTRA {
                    Counters::add(&shared.counters.refused_clients_max, 1);
                    drop(stream);
                    continue;
                }
                shared.connections_now.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                if shared.socket_send_buffer_bytes > 0 {
                    set_send_buffer(&stream, shared.socket_send_buffer_bytes);
                }
                tasks.spawn(connection(stream, shared.clone(), shutdown.clone()));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let deadline = Instant::now() + shutdown_timeout;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(_) => continue,
            Err(_) => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        }
    }
}

/// Releases a connection slot (and a client slot once upgraded) when the task ends.
struct SlotGuard {
    shared: Arc<ServerShared>,
    client: bool,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.shared.connections_now.fetch_sub(1, Ordering::Relaxed);
        if self.client {
            self.shared.clients_now.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<ServerShared>, shutdown: watch::Receiver<bool>) {
    let mut guard = SlotGuard {
        shared: shared.clone(),
        client: false,
    };
    match &shared.tls {
        Some(acceptor) => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            serve_http(TokioIo::new(stream), &shared, shutdown, &mut guard).await;
        }
        None => serve_http(TokioIo::new(stream), &shared, shutdown, &mut guard).await,
    }
}

async fn serve_http<IO>(
    io: TokioIo<IO>,
    shared: &Arc<ServerShared>,
    mut shutdown: watch::Receiver<bool>,
    guard: &mut SlotGuard,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrade_slot: Arc<Mutex<Option<UpgradeFut>>> = Arc::new(Mutex::new(None));
    let service = {
        let shared = shared.clone();
        let upgrade_slot = upgrade_slot.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let response = handle_request(&shared, request, &upgrade_slot);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::select! {
        _ = connection => {}
        _ = shutdown.changed() => return,
    }
    let upgrade = upgrade_slot
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take();
    let Some(upgrade) = upgrade else {
        return;
    };
    // handle_request reserved the client slot with the upgrade.
    guard.client = true;
    let Ok(websocket) = upgrade.await else {
        return;
    };
    run_client(websocket.into_inner(), shared, shutdown).await;
}

async fn run_client<S>(io: S, shared: &Arc<ServerShared>, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(ClientShared::new(
        id,
        shared.limits,
        shared.counters.clone(),
    ));
    Counters::add(&shared.counters.connections_total, 1);
    client.push_control(shared.hello.clone());
    let (read_half, write_half) = tokio::io::split(io);
    let (mut reader, _) =
        fastwebsockets::after_handshake_split(read_half, tokio::io::sink(), Role::Server);
    reader.set_auto_pong(false);
    reader.set_auto_close(false);
    // Past this the connection is closed (1009); up to it, a long message gets an error frame.
    reader.set_max_message_size((shared.limits.message_bytes_max * 16).max(64 * 1024));
    if *shutdown.borrow()
        || shared
            .hub
            .send(HubCommand::Connect(client.clone()))
            .await
            .is_err()
    {
        client.close(
            CloseCause::Shutdown,
            Some(protocol::close_frame(1001, "server shutting down")),
        );
    }
    let reader_task = tokio::spawn(client::run_reader(
        reader,
        client.clone(),
        shared.hub.clone(),
        shared.counters.clone(),
        shared.epoch,
    ));
    client::run_writer(
        write_half,
        client.clone(),
        shared.counters.clone(),
        shared.epoch,
    )
    .await;
    reader_task.abort();
    let _ = reader_task.await;
    // The broadcast task may be gone at shutdown; then there is nothing to tell it.
    // Waits only for room in the command queue (bounded); fails once the task has ended.
    let _ = shared.hub.send(HubCommand::Disconnect(id)).await;
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Checks an upgrade request; on success stores its upgrade future in `slot` and answers 101.
fn handle_request(
    shared: &ServerShared,
    mut request: Request<Incoming>,
    slot: &Mutex<Option<UpgradeFut>>,
) -> Response<Full<Bytes>> {
    let counters = &shared.counters;
    if request.uri().path() != shared.path {
        Counters::add(&counters.refused_bad_request, 1);
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        Counters::add(&counters.refused_bad_request, 1);
        return plain(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required\n");
    }
    if let Some(origin) = request.headers().get(ORIGIN) {
        let allowed = shared.allowed_origins.iter().any(|allowed| {
            allowed == "*" || origin.as_bytes().eq_ignore_ascii_case(allowed.as_bytes())
        });
        if !allowed {
            Counters::add(&counters.refused_origin, 1);
            return plain(StatusCode::FORBIDDEN, "origin not allowed\n");
        }
    }
    let offered: Vec<String> = request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|entry| entry.trim().to_string())
        .filter(|entry| !entry.is_empty())
        .collect();
    if let Some(token) = &shared.token {
        let from_protocol = offered
            .iter()
            .filter_map(|entry| entry.strip_prefix(protocol::TOKEN_SUBPROTOCOL_PREFIX))
            .any(|presented| same_secret(presented, token));
        let from_query = request
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|pair| pair.strip_prefix("token="))
            .any(|presented| same_secret(presented, token));
        if !from_protocol && !from_query {
            Counters::add(&counters.refused_token, 1);
            return plain(StatusCode::UNAUTHORIZED, "missing or wrong token\n");
        }
    }
    // Reserve a client slot.
    let reserved = shared
        .clients_now
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
            (now < shared.clients_max).then_some(now + 1)
        })
        .is_ok();
    if !reserved {
        Counters::add(&counters.refused_clients_max, 1);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "too many clients\n");
    }
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(parts) => parts,
        Err(_) => {
            shared.clients_now.fetch_sub(1, Ordering::Relaxed);
            Counters::add(&counters.refused_bad_request, 1);
            return plain(StatusCode::BAD_REQUEST, "bad WebSocket upgrade\n");
        }
    };
    *slot.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(upgrade);
    let mut response = response.map(|_| Full::new(Bytes::new()));
    // A browser that offered subprotocols needs one echoed: ours, else the token entry.
    let chosen = offered
        .iter()
        .find(|entry| *entry == protocol::SUBPROTOCOL)
        .or_else(|| {
            offered
                .iter()
                .find(|entry| entry.starts_with(protocol::TOKEN_SUBPROTOCOL_PREFIX))
        });
    if let Some(chosen) = chosen.and_then(|chosen| HeaderValue::from_str(chosen).ok()) {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, chosen);
    }
    response
}

/// Compares secrets without an early exit on the first differing byte.
fn same_secret(presented: &str, expected: &str) -> bool {
    let (presented, expected) = (presented.as_bytes(), expected.as_bytes());
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}
