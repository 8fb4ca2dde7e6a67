//! The WebSocket client transport: TCP or TLS (rustls, webpki roots plus any extra roots from
//! `feeds.tls_extra_roots_pem`), the HTTP/1.1 upgrade with the status and `Retry-After` kept for
//! the caller, KuCoin's bullet-public HTTP call, and a bounded HTTP GET (the universe's instrument
//! lists). Frames are read and written by `framing`. No venue logic, no task spawning: each
//! connection future is driven inline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::header::{CONNECTION, HOST, RETRY_AFTER, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::framing::{FrameReader, ReadError, WriteError};

pub type WsStream = TokioIo<Upgraded>;
pub type WsReader = FrameReader<ReadHalf<WsStream>>;
pub type WsWriter = WriteHalf<WsStream>;

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
    #[error("websocket read: {0}")]
    Read(ReadError),
    #[error("websocket write: {0}")]
    Write(WriteError),
    #[error("bullet-public reply is not what KuCoin documents: {0}")]
    Bullet(&'static str),
    #[error("http body larger than {max_body_bytes} bytes")]
    BodyTooLarge { max_body_bytes: usize },
}

/// A parsed `ws://`, `wss://`, `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    /// What to connect to and the TLS server name: a DNS name or an IP address (an IPv6
    /// literal without its brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header: the URL's authority as written (`[::1]:9000`, `api.kucoin.com`).
    pub host_header: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl Endpoint {
    /// Parses `url` with `http::Uri` (RFC 3986: IPv6 literals, ports, queries).
    pub fn parse(url: &str) -> Result<Endpoint, ConnectError> {
        let bad = |reason| ConnectError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
        let tls = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("wss" | "https") => true,
            Some("ws" | "http") => false,
            _ => return Err(bad("scheme must be ws, wss, http or https")),
        };
        let authority = uri.authority().ok_or(bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info is not supported"));
        }
        let host = authority.host();
        let host = match host.strip_prefix('[') {
            Some(literal) => literal
                .strip_suffix(']')
                .ok_or(bad("unclosed IPv6 literal"))?,
            None => host,
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // `Authority::port_u16` is `None` for a missing port and a malformed one alike.
        let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
            None | Some("") => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| bad("port is not a number"))?,
        };
        let path_and_query = match uri.path_and_query().map(|value| value.as_str()) {
            None | Some("") => "/".to_owned(),
            Some(value) if value.starts_with('/') => value.to_owned(),
            Some(value) => format!("/{value}"),
        };
        Ok(Endpoint {
            tls,
            host: host.to_owned(),
            port,
            host_header: authority.as_str().to_owned(),
            path_and_query,
        })
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

/// Bytes a TLS connection reads from its socket at once (a buffer per connection, in the
/// memory budget's receive buffers). rustls asks its socket for at most 4 KiB a read, so without
/// this a wake-up that finds 10 KiB of small records waiting (a batch, see `slot::coalesce`)
/// takes three `recv` calls, each of which also sends an ACK; with it, one.
pub const TLS_SOCKET_READ_BYTES: usize = 16 * 1024;

/// Either a plain TCP stream or a TLS stream over one (read through a buffer of
/// [`TLS_SOCKET_READ_BYTES`]; writes go straight to the socket).
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::io::BufReader<TcpStream>>>),
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
    // A DNS name, or an IP address (checked against the certificate's IP SANs; no SNI is sent).
    let server_name =
        rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|_| {
            ConnectError::BadUrl {
                url: endpoint.host.clone(),
                reason: "host is not a valid TLS server name",
            }
        })?;
    let tcp = tokio::io::BufReader::with_capacity(TLS_SOCKET_READ_BYTES, tcp);
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

/// Opens a WebSocket to `url` within `timeout`, split into its read and write halves. Messages
/// over `max_message_bytes` are skipped by the reader (see `framing`). `tls` is used for
/// `wss://` URLs.
pub async fn connect(
    url: &str,
    timeout: Duration,
    max_message_bytes: usize,
    tls: &tokio_rustls::TlsConnector,
) -> Result<(WsReader, WsWriter), ConnectError> {
    let endpoint = Endpoint::parse(url)?;
    let upgraded = tokio::time::timeout(timeout, upgrade(&endpoint, tls))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    let (read, write) = tokio::io::split(upgraded);
    Ok((FrameReader::new(read, max_message_bytes), write))
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
        .header(HOST, endpoint.host_header.as_str())
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
            .header(HOST, endpoint.host_header.as_str())
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

/// What an HTTP GET returned, whatever its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// `Retry-After` seconds, when the server sent them (429, 418, 503).
    pub retry_after_s: Option<u64>,
    /// The whole body (at most the caller's cap).
    pub body: Vec<u8>,
}

/// GETs `url` (`http://` or `https://`, through `tls`) and reads the whole body, all within
/// `timeout`. Every status is returned as a response for the caller to judge; a body over
/// `max_body_bytes` is an error (`BodyTooLarge`), found while reading, so at most that much is held.
/// One request per connection: the connection is dropped with the response.
pub async fn http_get(
    url: &str,
    tls: &tokio_rustls::TlsConnector,
    timeout: Duration,
    max_body_bytes: usize,
) -> Result<HttpResponse, ConnectError> {
    let endpoint = Endpoint::parse(url)?;
    tokio::time::timeout(timeout, async {
        let transport = open_transport(&endpoint, tls).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(transport)).await?;
        let request = Request::builder()
            .method("GET")
            .uri(endpoint.path_and_query.as_str())
            .header(HOST, endpoint.host_header.as_str())
            .header("accept", "application/json")
            .header("user-agent", "tickflow")
            .body(Empty::<Bytes>::new())
            .map_err(|_| ConnectError::BadUrl {
                url: url.to_owned(),
                reason: "not a valid request target",
            })?;
        let exchange = async move {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let retry_after_s = retry_after_s(&response);
            let body = Limited::new(response.into_body(), max_body_bytes)
                .collect()
                .await
                .map_err(|error| {
                    match error.downcast::<hyper::Error>() {
                        Ok(error) => ConnectError::Http(*error),
                        // The only other error `Limited` yields is its length limit.
                        Err(_) => ConnectError::BodyTooLarge { max_body_bytes },
                    }
                })?
                .to_bytes();
            Ok(HttpResponse {
                status,
                retry_after_s,
                body: Vec::from(body),
            })
        };
        tokio::pin!(exchange);
        tokio::pin!(connection);
        let mut connection_open = true;
        loop {
            tokio::select! {
                biased;
                result = &mut exchange => return result,
                // However the connection ends, the reply reads what it handed over first (a body
                // over the cap is refused as such) and then fails or ends on its own.
                _ = &mut connection, if connection_open => connection_open = false,
            }
        }
    })
    .await
    .map_err(|_| ConnectError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let endpoint = Endpoint::parse("wss://stream.binance.com:9443/ws").unwrap();
        assert_eq!(
            endpoint,
            Endpoint {
                tls: true,
                host: "stream.binance.com".into(),
                port: 9443,
                host_header: "stream.binance.com:9443".into(),
                path_and_query: "/ws".into()
            }
        );
        let endpoint = Endpoint::parse("ws://127.0.0.1:4000?token=x").unwrap();
        assert_eq!(endpoint.path_and_query, "/?token=x");
        let endpoint = Endpoint::parse("https://api.kucoin.com/api/v1/bullet-public").unwrap();
        assert_eq!(
            (endpoint.port, endpoint.host_header.as_str()),
            (443, "api.kucoin.com")
        );
        let endpoint = Endpoint::parse("WSS://Ws.Okx.com:8443/ws/v5/public?a=1&b=2").unwrap();
        assert!(endpoint.tls);
        assert_eq!(endpoint.path_and_query, "/ws/v5/public?a=1&b=2");
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("ws://:80/").is_err());
        assert!(Endpoint::parse("ws://host:port/").is_err());
        assert!(Endpoint::parse("ws://user:secret@host/").is_err());
        assert!(Endpoint::parse("/just/a/path").is_err());
    }

    #[test]
    fn ipv6_literals_connect_without_brackets_and_keep_them_in_the_host_header() {
        let endpoint = Endpoint::parse("ws://[::1]:9000/path").unwrap();
        assert_eq!(
            endpoint,
            Endpoint {
                tls: false,
                host: "::1".into(),
                port: 9000,
                host_header: "[::1]:9000".into(),
                path_and_query: "/path".into()
            }
        );
        let endpoint = Endpoint::parse("wss://[2001:db8::7]/ws").unwrap();
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port),
            ("2001:db8::7", 443)
        );
        assert_eq!(endpoint.host_header, "[2001:db8::7]");
        // The TLS server name of an IPv6 literal is an IP address, of a hostname a DNS name.
        assert!(matches!(
            rustls::pki_types::ServerName::try_from(endpoint.host.clone()),
            Ok(rustls::pki_types::ServerName::IpAddress(_))
        ));
        let hostname = Endpoint::parse("wss://ws.bitget.com/v2/ws/public").unwrap();
        assert!(matches!(
            rustls::pki_types::ServerName::try_from(hostname.host.clone()),
            Ok(rustls::pki_types::ServerName::DnsName(_))
        ));
        assert!(Endpoint::parse("ws://[::1/").is_err());
    }

    #[test]
    fn an_ipv6_literal_is_connected_to_with_its_host_header() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
                // No IPv6 loopback on this machine: parsing is covered above.
                return;
            };
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 4096];
                let read = stream.read(&mut request).await.unwrap();
                stream
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
                String::from_utf8_lossy(&request[..read]).into_owned()
            });
            let tls = tls_connector(None).unwrap();
            let url = format!("ws://[::1]:{port}/path?x=1");
            let result = connect(&url, Duration::from_secs(5), 1024, &tls).await;
            assert!(
                matches!(result, Err(ConnectError::Refused { status: 404, .. })),
                "{:?}",
                result.err()
            );
            let request = server.await.unwrap();
            assert!(
                request.starts_with("GET /path?x=1 HTTP/1.1\r\n"),
                "{request}"
            );
            assert!(
                request
                    .to_ascii_lowercase()
                    .contains(&format!("host: [::1]:{port}\r\n")),
                "{request}"
            );
        });
    }
}
