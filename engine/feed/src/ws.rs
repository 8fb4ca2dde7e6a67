//! The WebSocket client transport: TCP or TLS (rustls, webpki roots plus any extra roots from
//! `feeds.tls_extra_roots_pem`), the HTTP/1.1 upgrade with the status and `Retry-After` kept for
//! the caller, and KuCoin's bullet-public HTTP call.
//! No venue logic, no task spawning: the handshake's connection future is driven inline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Role, WebSocketRead, WebSocketWrite};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::header::{CONNECTION, HOST, RETRY_AFTER, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

pub type WsStream = TokioIo<Upgraded>;
pub type WsReader = WebSocketRead<CappedRead<ReadHalf<WsStream>>>;
pub type WsWriter = WebSocketWrite<WriteHalf<WsStream>>;

/// Most bytes one socket read may bring into a connection's frame buffer. The buffer only grows
/// when a read leaves more unparsed bytes behind than it consumed; capping reads keeps that
/// remainder small, so a client that falls behind a fast server keeps a bounded buffer instead of
/// doubling it on every read.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// An `AsyncRead` that reads at most `max_read_bytes` per call.
#[derive(Debug)]
pub struct CappedRead<R> {
    inner: R,
    max_read_bytes: usize,
}

impl<R> CappedRead<R> {
    pub fn new(inner: R, max_read_bytes: usize) -> CappedRead<R> {
        CappedRead {
            inner,
            max_read_bytes: max_read_bytes.max(1),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CappedRead<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if buffer.remaining() <= this.max_read_bytes {
            return std::pin::Pin::new(&mut this.inner).poll_read(context, buffer);
        }
        // Initialized (zeroed once) so the bytes read can be marked filled without unsafe.
        let window = buffer.initialize_unfilled_to(this.max_read_bytes);
        let mut limited = tokio::io::ReadBuf::new(window);
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(context, &mut limited);
        let read_bytes = limited.filled().len();
        if let std::task::Poll::Ready(Ok(())) = &polled {
            buffer.advance(read_bytes);
        }
        polled
    }
}

/// Largest HTTP body read from a bullet call.
const BULLET_BODY_CAPACITY_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad url {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("connect timed out")]
    Timeout,
    #[error("shutting down")]
    Cancelled,
    #[error("tcp connect failed: {0}")]
    Tcp(std::io::Error),
    #[error("tls handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("server refused the upgrade with status {status}")]
    Refused {
        status: u16,
        /// `Retry-After` seconds, when the server sent it (429, 418, 503).
        retry_after_s: Option<u64>,
    },
    #[error("websocket: {0}")]
    WebSocket(#[from] fastwebsockets::WebSocketError),
    #[error("bullet-public reply is not what KuCoin documents: {0}")]
    Bullet(&'static str),
}

/// A parsed `ws://`, `wss://`, `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, ConnectError> {
        let bad = |reason| ConnectError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("scheme must be ws, wss, http or https"));
        };
        let (authority, path_and_query) = match rest.find(['/', '?']) {
            Some(index) if rest.as_bytes()[index] == b'/' => {
                (&rest[..index], rest[index..].to_owned())
            }
            Some(index) => (&rest[..index], format!("/{}", &rest[index..])),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad("port is not a number"))?,
            ),
            None => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Endpoint {
            tls,
            host: host.to_owned(),
            port,
            path_and_query,
        })
    }

    fn host_header(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why the extra root certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsRootsError {
    #[error("cannot read PEM certificates from {path}: {source}")]
    Read {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no CERTIFICATE block")]
    NoCertificate { path: String },
    #[error("certificate {index} in {path} is not a usable root: {source}")]
    Rejected {
        path: String,
        index: usize,
        source: rustls::Error,
    },
}

/// Reads every `CERTIFICATE` block of the PEM file at `path` (other blocks are skipped).
pub fn load_pem_certificates(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsRootsError> {
    use rustls::pki_types::pem::PemObject;
    let read_error = |source| TlsRootsError::Read {
        path: path.display().to_string(),
        source,
    };
    let certificates = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certificates.is_empty() {
        return Err(TlsRootsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certificates)
}

/// The client TLS settings every connection shares: webpki's roots plus the CA certificates in
/// `extra_roots_pem`, if any. Built once when the feeds start; cloning the connector shares it.
pub fn tls_connector(
    extra_roots_pem: Option<&Path>,
) -> Result<tokio_rustls::TlsConnector, TlsRootsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_roots_pem {
        for (index, certificate) in load_pem_certificates(path)?.into_iter().enumerate() {
            roots
                .add(certificate)
                .map_err(|source| TlsRootsError::Rejected {
                    path: path.display().to_string(),
                    index,
                    source,
                })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Either a plain TCP stream or a TLS stream over one.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => std::pin::Pin::new(stream).poll_read(context, buffer),
            Transport::Tls(stream) => {
                std::pin::Pin::new(stream.as_mut()).poll_read(context, buffer)
            }
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => std::pin::Pin::new(stream).poll_write(context, buffer),
            Transport::Tls(stream) => {
                std::pin::Pin::new(stream.as_mut()).poll_write(context, buffer)
            }
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => std::pin::Pin::new(stream).poll_flush(context),
            Transport::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_flush(context),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => std::pin::Pin::new(stream).poll_shutdown(context),
            Transport::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}

async fn open_transport(
    endpoint: &Endpoint,
    tls: &tokio_rustls::TlsConnector,
) -> Result<Transport, ConnectError> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(ConnectError::Tcp)?;
    // Small frames (pings, subscribes) must leave at once.
    let _ = tcp.set_nodelay(true);
    if !endpoint.tls {
        return Ok(Transport::Plain(tcp));
    }
    let server_name =
        rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|_| {
            ConnectError::BadUrl {
                url: endpoint.host.clone(),
                reason: "host is not a valid TLS server name",
            }
        })?;
    let tls = tls
        .connect(server_name, tcp)
        .await
        .map_err(ConnectError::Tls)?;
    Ok(Transport::Tls(Box::new(tls)))
}

fn retry_after_s(response: &hyper::Response<hyper::body::Incoming>) -> Option<u64> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
}

/// Opens a WebSocket to `url` within `timeout`, split into its read and write halves.
/// `max_frame_bytes` bounds every frame read; larger ones fail the read (`FrameTooLarge`).
/// `tls` is used for `wss://` URLs.
pub async fn connect(
    url: &str,
    timeout: Duration,
    max_frame_bytes: usize,
    tls: &tokio_rustls::TlsConnector,
) -> Result<(WsReader, WsWriter), ConnectError> {
    let endpoint = Endpoint::parse(url)?;
    let upgraded = tokio::time::timeout(timeout, upgrade(&endpoint, tls))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    let (mut reader, writer) = fastwebsockets::WebSocket::after_handshake(upgraded, Role::Client)
        .split(|stream| {
            let (read, write) = tokio::io::split(stream);
            (CappedRead::new(read, READ_CHUNK_BYTES), write)
        });
    reader.set_max_message_size(max_frame_bytes);
    // The slot answers pings and close frames itself: it owns the write half.
    reader.set_auto_pong(false);
    reader.set_auto_close(false);
    Ok((reader, writer))
}

async fn upgrade(
    endpoint: &Endpoint,
    tls: &tokio_rustls::TlsConnector,
) -> Result<WsStream, ConnectError> {
    let transport = open_transport(endpoint, tls).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(transport)).await?;
    let request = Request::builder()
        .method("GET")
        .uri(endpoint.path_and_query.as_str())
        .header(HOST, endpoint.host_header())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ConnectError::BadUrl {
            url: endpoint.path_and_query.clone(),
            reason: "not a valid request target",
        })?;
    let exchange = async move {
        let mut response = sender.send_request(request).await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ConnectError::Refused {
                status: response.status().as_u16(),
                retry_after_s: retry_after_s(&response),
            });
        }
        // `sender` is dropped when this block returns, which lets `connection` finish.
        Ok(hyper::upgrade::on(&mut response).await?)
    };
    // The connection future hands the socket over once upgraded, so it is driven here rather than
    // spawned: no task outlives the handshake.
    let (upgraded, _) = tokio::join!(exchange, connection.with_upgrades());
    upgraded.map(TokioIo::new)
}

/// What KuCoin's bullet-public call returns that the client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bullet {
    /// WebSocket URL with token and connect id.
    pub url: String,
    pub ping_interval_ms: u64,
}

#[derive(serde::Deserialize)]
struct BulletReply {
    code: String,
    data: Option<BulletData>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulletData {
    token: String,
    instance_servers: Vec<BulletServer>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulletServer {
    endpoint: String,
    ping_interval: u64,
}

/// POSTs KuCoin's bullet-public and returns the WebSocket URL to open and the ping interval.
/// `tls` is used for `https://` URLs.
pub async fn kucoin_bullet(
    bullet_url: &str,
    connect_id: u64,
    timeout: Duration,
    tls: &tokio_rustls::TlsConnector,
) -> Result<Bullet, ConnectError> {
    let endpoint = Endpoint::parse(bullet_url)?;
    tokio::time::timeout(timeout, async {
        let transport = open_transport(&endpoint, tls).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(transport)).await?;
        let request = Request::builder()
            .method("POST")
            .uri(endpoint.path_and_query.as_str())
            .header(HOST, endpoint.host_header())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| ConnectError::Bullet("request target"))?;
        let exchange = async move {
            let response = sender.send_request(request).await?;
            if !response.status().is_success() {
                return Err(ConnectError::Refused {
                    status: response.status().as_u16(),
                    retry_after_s: retry_after_s(&response),
                });
            }
            let body = Limited::new(response.into_body(), BULLET_BODY_CAPACITY_BYTES)
                .collect()
                .await
                .map_err(|_| ConnectError::Bullet("body unreadable or too large"))?
                .to_bytes();
            let reply: BulletReply =
                serde_json::from_slice(&body).map_err(|_| ConnectError::Bullet("not JSON"))?;
            if reply.code != "200000" {
                return Err(ConnectError::Bullet("code is not 200000"));
            }
            let data = reply.data.ok_or(ConnectError::Bullet("no data"))?;
            let server = data
                .instance_servers
                .into_iter()
                .next()
                .ok_or(ConnectError::Bullet("no instance server"))?;
            let separator = if server.endpoint.contains('?') {
                '&'
            } else {
                '?'
            };
            Ok(Bullet {
                url: format!(
                    "{}{separator}token={}&connectId={connect_id}",
                    server.endpoint, data.token
                ),
                ping_interval_ms: server.ping_interval.max(1),
            })
        };
        tokio::select! {
            result = exchange => result,
            // The connection ends only on error before the reply; report it.
            result = connection => match result {
                Err(error) => Err(ConnectError::Http(error)),
                Ok(()) => Err(ConnectError::Bullet("connection closed before the reply")),
            },
        }
    })
    .await
    .map_err(|_| ConnectError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reads_never_bring_more_than_the_cap() {
        use tokio::io::AsyncReadExt;
        let source = vec![7u8; 10_000];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut reader = CappedRead::new(&source[..], 1_000);
            let mut buffer = bytes::BytesMut::with_capacity(8_192);
            let mut reads = Vec::new();
            loop {
                let read_bytes = reader.read_buf(&mut buffer).await.unwrap();
                if read_bytes == 0 {
                    break;
                }
                reads.push(read_bytes);
                buffer.reserve(8_192);
            }
            assert!(
                reads.iter().all(|read_bytes| *read_bytes <= 1_000),
                "{reads:?}"
            );
            assert_eq!(buffer.len(), 10_000);
            assert!(buffer.iter().all(|byte| *byte == 7));
        });
    }

    #[test]
    fn endpoints_parse() {
        let endpoint = Endpoint::parse("wss://stream.binance.com:9443/ws").unwrap();
        assert_eq!(
            endpoint,
            Endpoint {
                tls: true,
                host: "stream.binance.com".into(),
                port: 9443,
                path_and_query: "/ws".into()
            }
        );
        let endpoint = Endpoint::parse("ws://127.0.0.1:4000?token=x").unwrap();
        assert_eq!(endpoint.path_and_query, "/?token=x");
        assert_eq!(
            Endpoint::parse("https://api.kucoin.com/api/v1/bullet-public")
                .unwrap()
                .port,
            443
        );
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("ws://:80/").is_err());
        assert!(Endpoint::parse("ws://host:port/").is_err());
    }
}
