//! The control plane's history routes and TLS over real sockets, against a real Parquet history
//! (a multi-pair day written through the Parquet sink plugin by `tickflow-load`'s generator),
//! the server run as `tickflow serve` runs it (no engine): `/api/dashboard_data` NDJSON streamed
//! pair by pair (the first line is read while the server is still producing), every qualifying
//! pair exactly once, min/max downsampling, the heavy-request cap (429 + Retry-After), a client
//! that goes away mid-stream stopping the work and freeing its slot, bad parameters; and the
//! control plane behind TLS with a token on a non-loopback bind.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickflow::budget::MemoryBudget;
use tickflow_control::{ControlPlane, EngineView, HttpConfig};
use tickflow_history::Date;
use tickflow_load::history_gen;

use super::sink_budget::built_plugin;

/// Longest an awaited state may take before the test fails (a state is awaited, never a
/// duration).
const DEADLINE: Duration = Duration::from_secs(60);
const DAY: &str = "2026-01-01";
/// Pairs of the generated day: with one-second samples over two hours, each pair's line is about
/// half a MB, the whole stream tens of MB, far more than loopback socket buffers hold, so a
/// reader that stops reading holds the server mid-stream.
const PAIRS: usize = 48;
const HOURS: u32 = 2;
const TOKEN: &str = "0123456789abcdef-test-token";

/// Pairs of the small day (one hour): enough for downsampling and parameters.
const SMALL_PAIRS: usize = 8;

/// The generated day of `pairs` pairs over `hours` hours, under its own directory (written once
/// per test process).
fn history_root(pairs: usize, hours: u32) -> PathBuf {
    static WRITTEN: std::sync::Mutex<Vec<(usize, u32)>> = std::sync::Mutex::new(Vec::new());
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "control-http-{pairs}x{hours}-{}",
        std::process::id()
    ));
    let mut written = WRITTEN.lock().unwrap_or_else(|poison| poison.into_inner());
    if !written.contains(&(pairs, hours)) {
        let _ = std::fs::remove_dir_all(&root);
        let plugin = built_plugin("tickflow-parquet", "tickflow_parquet");
        let date = Date::parse(DAY).expect("a date");
        history_gen::generate(&plugin, &root, date, pairs, 1, hours, false)
            .expect("the day is written through the Parquet plugin");
        written.push((pairs, hours));
    }
    root
}

/// The history server `tickflow serve --data` runs over `root`: no engine, thresholds 20 and
/// 40 bp.
fn serve_dir(root: PathBuf, tweak: impl FnOnce(&mut HttpConfig)) -> ControlPlane {
    let mut config = HttpConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        history_dir: Some(root),
        ..HttpConfig::default()
    };
    tweak(&mut config);
    let view = EngineView {
        live: None,
        thresholds_bp: vec![20.0, 40.0],
        budget: MemoryBudget::from_lines(Vec::new()),
        allocator_stats: None,
    };
    ControlPlane::start(config, view).expect("the control plane starts")
}

/// Over the large day (tens of MB of NDJSON).
fn serve(tweak: impl FnOnce(&mut HttpConfig)) -> ControlPlane {
    serve_dir(history_root(PAIRS, HOURS), tweak)
}

/// Over the small day.
fn serve_small() -> ControlPlane {
    serve_dir(history_root(SMALL_PAIRS, 1), |_| {})
}

/// (symbol, buy venue, sell venue) of generated pair `index`.
fn pair_names(index: usize) -> (String, String, String) {
    let (symbol, buy, sell) = history_gen::pair(index);
    (
        history_gen::names(PAIRS).symbols[symbol.0 as usize].clone(),
        buy.name().to_string(),
        sell.name().to_string(),
    )
}

/// A response head, then its body (de-chunked) to read from.
struct Streaming {
    status: u16,
    head: String,
    body: BufReader<Chunked>,
}

/// A `Transfer-Encoding: chunked` body (or a plain one read to its end).
struct Chunked {
    stream: BufReader<TcpStream>,
    chunked: bool,
    left_in_chunk: usize,
    done: bool,
}

impl Read for Chunked {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if !self.chunked {
            return self.stream.read(buffer);
        }
        if self.done {
            return Ok(0);
        }
        if self.left_in_chunk == 0 {
            let mut size_line = String::new();
            self.stream.read_line(&mut size_line)?;
            let size_text = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("chunk size {size_line:?}"),
                )
            })?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left_in_chunk = size;
        }
        let wanted = buffer.len().min(self.left_in_chunk);
        let read = self.stream.read(&mut buffer[..wanted])?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left_in_chunk -= read;
        if self.left_in_chunk == 0 {
            let mut crlf = [0u8; 2];
            self.stream.read_exact(&mut crlf)?;
        }
        Ok(read)
    }
}

/// Sends `GET path` and reads the response head; the body is left to read.
fn open(addr: SocketAddr, path: &str) -> Streaming {
    let mut stream = TcpStream::connect(addr).expect("the control plane accepts");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("timeout set");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request written");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect("a response head");
        if read == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let chunked = head.contains("transfer-encoding: chunked");
    Streaming {
        status,
        head,
        body: BufReader::new(Chunked {
            stream: reader,
            chunked,
            left_in_chunk: 0,
            done: false,
        }),
    }
}

impl Streaming {
    /// The next NDJSON line, or None at the end of the body.
    fn next_line(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        let read = self.body.read_line(&mut line).expect("the body reads");
        if read == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "a line ends with a newline");
        Some(serde_json::from_str(&line).expect("each line is JSON"))
    }

    fn json(mut self) -> serde_json::Value {
        let mut text = String::new();
        self.body.read_to_string(&mut text).expect("the body reads");
        serde_json::from_str(&text).expect("a JSON body")
    }

    /// Every line to the end.
    fn lines(mut self) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| self.next_line()).collect()
    }
}

fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let response = open(addr, path);
    (response.status, response.json())
}

fn streams(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = get_json(addr, "/api/history/streams");
    assert_eq!(status, 200, "{body}");
    body
}

/// Asks `/api/history/streams` until `accept` holds.
fn wait_streams(addr: SocketAddr, what: &str, accept: impl Fn(&serde_json::Value) -> bool) {
    let start = Instant::now();
    loop {
        let body = streams(addr);
        if accept(&body) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "never {what}: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn key_of(line: &serde_json::Value) -> (String, String, String) {
    let text = |field: &str| line[field].as_str().unwrap_or_default().to_string();
    (text("symbol"), text("buy_venue"), text("sell_venue"))
}

fn dashboard_path(min_cycles: u64, extra: &str) -> String {
    format!("/api/dashboard_data?date={DAY}&threshold_bp=40&min_cycles={min_cycles}{extra}")
}

#[test]
fn control_dashboard_data_streams_every_qualifying_pair_once() {
    let control = serve(|_| {});
    let addr = control.local_addr();
    let mut response = open(addr, &dashboard_path(0, ""));
    assert_eq!(response.status, 200, "{}", response.head);
    assert!(
        response.head.contains("content-type: application/x-ndjson"),
        "{}",
        response.head
    );
    // The first line is here while the server is still producing: the rest of the day (tens of
    // MB) cannot fit in the socket buffers while this client reads nothing more.
    let first = response.next_line().expect("a first line");
    assert_eq!(first["type"], "pair", "{first}");
    let running = streams(addr);
    assert_eq!(
        (running["running"].as_u64(), running["completed"].as_u64()),
        (Some(1), Some(0)),
        "{running}"
    );
    let mut lines = vec![first];
    lines.extend(response.lines());
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["type"], "summary", "{summary}");
    assert_eq!(summary["pairs"], PAIRS as u64);
    let keys: Vec<_> = lines.iter().map(key_of).collect();
    let expected: BTreeSet<_> = (0..PAIRS).map(pair_names).collect();
    assert_eq!(keys.len(), PAIRS, "every pair once");
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "pairs come in pair order");
    for line in &lines {
        let points = line["ts_ms"].as_array().map_or(0, Vec::len);
        assert_eq!(
            points,
            HOURS as usize * 3_600,
            "one point a second: {}",
            key_of(line).0
        );
        for field in ["spread_bp", "upper_bp", "lower_bp"] {
            assert_eq!(line[field].as_array().map_or(0, Vec::len), points);
        }
        // The generator disconnects every (symbol, venue) for two minutes every six hours,
        // staggered: some pairs have a gap in these two hours, each one an interval.
        for gap in line["gaps"].as_array().expect("gaps") {
            assert!(gap[0].as_i64() <= gap[1].as_i64(), "{gap}");
        }
    }
    wait_streams(addr, "completed", |body| body["completed"] == 1);

    // min_cycles at 40 bp: the pairs with at least that many cycles, once each.
    let min_cycles = 120;
    let lines = open(addr, &dashboard_path(min_cycles, "")).lines();
    let expected: BTreeSet<_> = (0..PAIRS)
        .filter(|&index| history_gen::cycles_of(index) >= min_cycles)
        .map(pair_names)
        .collect();
    assert!(!expected.is_empty() && expected.len() < PAIRS);
    let keys: Vec<_> = lines
        .iter()
        .filter(|line| line["type"] == "pair")
        .map(key_of)
        .collect();
    assert_eq!(keys.len(), expected.len());
    assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), expected);
}

#[test]
fn control_dashboard_data_downsamples_keeping_each_buckets_min_and_max() {
    let control = serve_small();
    let addr = control.local_addr();
    // The one pair of the small day with the most cycles (135 at 40 bp).
    let most = (0..SMALL_PAIRS)
        .map(history_gen::cycles_of)
        .max()
        .expect("pairs");
    assert_eq!(
        (0..SMALL_PAIRS)
            .filter(|&index| history_gen::cycles_of(index) == most)
            .count(),
        1
    );
    let path = dashboard_path(most, "");
    let full = open(addr, &path).lines();
    let max_points = 100;
    let thin = open(addr, &format!("{path}&max_points={max_points}")).lines();
    assert_eq!((full.len(), thin.len()), (2, 2), "one pair and the summary");
    assert_eq!(thin[1]["max_points"], max_points);
    let series = |line: &serde_json::Value, field: &str| -> Vec<f64> {
        line[field]
            .as_array()
            .expect("an array")
            .iter()
            .map(|value| value.as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let (full_ts, full_spread) = (series(&full[0], "ts_ms"), series(&full[0], "spread_bp"));
    let (thin_ts, thin_spread) = (series(&thin[0], "ts_ms"), series(&thin[0], "spread_bp"));
    assert!(thin_ts.len() <= max_points && thin_ts.len() >= max_points / 2);
    assert!(
        thin_ts.windows(2).all(|pair| pair[0] < pair[1]),
        "time order"
    );
    let first = full_ts[0];
    let span = full_ts[full_ts.len() - 1] - first + 1.0;
    let buckets = (max_points / 2) as f64;
    let bucket_of = |ts: f64| ((ts - first) * buckets / span).floor() as i64;
    for bucket in 0..(max_points / 2) as i64 {
        let values: Vec<f64> = (0..full_ts.len())
            .filter(|&index| bucket_of(full_ts[index]) == bucket)
            .map(|index| full_spread[index])
            .collect();
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let kept: Vec<f64> = (0..thin_ts.len())
            .filter(|&index| bucket_of(thin_ts[index]) == bucket)
            .map(|index| thin_spread[index])
            .collect();
        assert!(kept.contains(&low), "bucket {bucket}: min {low} kept");
        assert!(kept.contains(&high), "bucket {bucket}: max {high} kept");
    }
    assert_eq!(thin[0]["gaps"], full[0]["gaps"]);
}

#[test]
fn control_heavy_cap_429_and_a_client_gone_frees_its_slot() {
    let control = serve(|http| http.heavy_requests_max = 1);
    let addr = control.local_addr();
    let mut first = open(addr, &dashboard_path(0, ""));
    assert_eq!(first.status, 200);
    assert!(first.next_line().is_some());
    // The one heavy slot is taken: the next heavy request is refused with Retry-After.
    let refused = open(addr, &dashboard_path(0, ""));
    assert_eq!(refused.status, 429, "{}", refused.head);
    assert!(refused.head.contains("retry-after:"), "{}", refused.head);
    let head = refused.head.clone();
    let body = refused.json();
    assert_eq!(body["error"]["code"], "too_many_requests", "{head} {body}");
    let (status, _) = get_json(
        addr,
        &format!("/api/history/opportunities?date={DAY}&threshold_bp=40"),
    );
    assert_eq!(status, 429, "the cycles route is heavy too");
    // The client goes away mid-stream: the reader stops and frees the slot.
    drop(first);
    wait_streams(addr, "stopped for a client gone", |body| {
        body["client_gone"] == 1 && body["running"] == 0 && body["heavy_slots_free"] == 1
    });
    let body = streams(addr);
    assert!(
        body["pairs_sent"].as_u64().unwrap_or(u64::MAX) < PAIRS as u64,
        "the stream stopped early: {body}"
    );
    let mut again = open(addr, &dashboard_path(0, ""));
    assert_eq!(again.status, 200, "{}", again.head);
    assert!(again.next_line().is_some());
}

#[test]
fn control_dashboard_data_bad_parameters_are_400_naming_them() {
    let control = serve_small();
    let addr = control.local_addr();
    let check = |query: &str, parameter: &str| {
        let (status, body) = get_json(addr, &format!("/api/dashboard_data?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["parameter"], parameter, "{query}: {body}");
        assert_eq!(body["api_version"], 1);
        body
    };
    check("threshold_bp=40", "date");
    check("date=2026-02-30&threshold_bp=40", "date");
    check(
        &format!("date={DAY}&threshold_bp=40&min_cycles=-1"),
        "min_cycles",
    );
    check(
        &format!("date={DAY}&threshold_bp=40&min_cycles=many"),
        "min_cycles",
    );
    check(
        &format!("date={DAY}&threshold_bp=40&max_points=1"),
        "max_points",
    );
    let body = check(&format!("date={DAY}&threshold_bp=30"), "threshold_bp");
    assert_eq!(body["error"]["allowed"], serde_json::json!([20.0, 40.0]));
    let (status, body) = get_json(addr, &format!("/api/dashboard_data?date={DAY}&colour=red"));
    assert_eq!(status, 400, "{body}");
    let (status, body) = get_json(
        addr,
        &format!("/api/history/opportunities?date={DAY}&threshold_bp=25"),
    );
    assert_eq!(
        (status, &body["error"]["parameter"]),
        (400, &serde_json::json!("threshold_bp"))
    );
    // Nothing heavy ran for any of them.
    assert_eq!(streams(addr)["started"], 0);
}

// ---------- TLS ----------

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files under `dir`, and the
/// certificate (DER) for the client to trust.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, rustls::pki_types::CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("a self-signed certificate");
    let cert_path = dir.join("control.crt");
    let key_path = dir.join("control.key");
    std::fs::write(&cert_path, certified.cert.pem()).expect("certificate written");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("key written");
    (cert_path, key_path, certified.cert.der().clone())
}

/// `GET path` over TLS (trusting `root`): status and body.
fn tls_get(
    addr: SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("a valid root");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let tcp = TcpStream::connect(addr).expect("the control plane accepts");
    tcp.set_read_timeout(Some(DEADLINE)).expect("timeout set");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{authorization}\r\n"
    )
    .expect("the TLS handshake and the request go through");
    let mut raw = Vec::new();
    // A peer that closes without close_notify ends the read with an error after the data.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn control_over_tls_with_a_token_off_loopback() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("control-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (cert_path, key_path, root) = certificate(&dir);
    let off_loopback = SocketAddr::from(([0, 0, 0, 0], 0));
    let view = || EngineView {
        live: None,
        thresholds_bp: vec![40.0],
        budget: MemoryBudget::from_lines(Vec::new()),
        allocator_stats: None,
    };
    // Off loopback without a token: refused at start, naming the key.
    let refused = ControlPlane::start(
        HttpConfig {
            bind: off_loopback,
            tls_cert: Some(cert_path.clone()),
            tls_key: Some(key_path.clone()),
            ..HttpConfig::default()
        },
        view(),
    )
    .expect_err("a non-loopback bind without a token is refused");
    assert!(refused.to_string().contains("http.token"), "{refused}");

    let control = ControlPlane::start(
        HttpConfig {
            bind: off_loopback,
            token: Some(TOKEN.into()),
            tls_cert: Some(cert_path),
            tls_key: Some(key_path),
            history_dir: Some(dir.clone()),
            ..HttpConfig::default()
        },
        view(),
    )
    .expect("with a token and TLS it starts");
    assert!(control.url().starts_with("https://"), "{}", control.url());
    let addr = SocketAddr::from(([127, 0, 0, 1], control.local_addr().port()));
    let (status, body) = tls_get(addr, &root, "/health", None);
    assert_eq!(status, 200, "/health needs no token: {body}");
    let (status, body) = tls_get(addr, &root, "/api/endpoints", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unauthorized"), "{body}");
    let (status, body) = tls_get(addr, &root, "/api/endpoints", Some("wrong-token-0000000"));
    assert_eq!(status, 401, "{body}");
    let (status, body) = tls_get(addr, &root, "/api/endpoints", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let endpoints: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(endpoints["api_version"], 1);

    // Plain HTTP to the TLS port gets no HTTP answer: the handshake fails and the connection
    // closes.
    let mut plain = TcpStream::connect(addr).expect("the port accepts TCP");
    plain.set_read_timeout(Some(DEADLINE)).expect("timeout set");
    let _ =
        plain.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP must not be answered: {:?}",
        String::from_utf8_lossy(&raw)
    );
}
