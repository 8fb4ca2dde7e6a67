//! A minimal blocking HTTP/1.0 GET for the harness's probes (control plane, metrics sink): one
//! connection per request, a deadline on connect, write and read, a bounded body. Plain `http://`
//! only (the harness binds everything on loopback).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest body read (a Prometheus exposition of a big universe fits).
pub const BODY_BYTES_MAX: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}: not an http:// URL")]
    Url(String),
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{0}: malformed response")]
    Malformed(String),
    #[error("{0}: body larger than {BODY_BYTES_MAX} bytes")]
    TooLarge(String),
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// `http://host:port` and the path (`/` when none).
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    (!authority.is_empty()).then(|| (authority.to_owned(), path.to_owned()))
}

/// GET `url` (`path` appended when given).
pub fn get(url: &str, timeout: Duration) -> Result<Response, HttpError> {
    let (authority, path) = split_url(url).ok_or_else(|| HttpError::Url(url.to_owned()))?;
    let io = |source| HttpError::Io {
        url: url.to_owned(),
        source,
    };
    let address = authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| HttpError::Url(url.to_owned()))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(BODY_BYTES_MAX as u64 + 65_536)
        .read_to_end(&mut raw)
        .map_err(io)?;
    if raw.len() > BODY_BYTES_MAX + 65_535 {
        return Err(HttpError::TooLarge(url.to_owned()));
    }
    let head_end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| HttpError::Malformed(url.to_owned()))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| HttpError::Malformed(url.to_owned()))?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body).ok_or_else(|| HttpError::Malformed(url.to_owned()))?
    } else {
        body.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|window| window == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:80/health"),
            Some(("127.0.0.1:80".into(), "/health".into()))
        );
        assert_eq!(split_url("http://h:1"), Some(("h:1".into(), "/".into())));
        assert_eq!(split_url("https://h/"), None);
        assert_eq!(
            dechunk(b"3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n"),
            Some(b"abcd".to_vec())
        );
    }

    #[test]
    fn gets_from_a_real_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 13\r\n\r\n{\"ok\":false}\n")
                .unwrap();
        });
        let response = get(&format!("http://{address}/health"), Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.json().unwrap()["ok"], false);
    }
}
