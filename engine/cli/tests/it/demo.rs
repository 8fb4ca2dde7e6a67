//! `tickflow demo` serves what it prints: with the default ports taken, it falls back to ports
//! the OS picks and says so; its metrics URL answers with `tickflow_` metrics (the engine's own
//! per venue included) and its broadcast URL accepts a WebSocket upgrade and sends the hello.
//! The real binary with the real plugins over real loopback sockets. (Its Parquet history is
//! tested in parquet_sink.rs.) `--seed-history-hours` writes simulated hours through the Parquet
//! sink first: the control plane's history route then has pairs with cycles today.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::sink_budget::built_plugin;

/// Longest any awaited state may take before the test fails (a state is awaited, never a
/// duration).
const DEADLINE: Duration = Duration::from_secs(60);
const DEFAULT_WS_PORT: u16 = 8081;
const DEFAULT_METRICS_PORT: u16 = 9464;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("demo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

/// The running demo; SIGTERM and reaped on drop (a failing assertion leaves no process behind).
struct Demo {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    /// The next stdout line, or `None` once the demo closed stdout.
    fn next_line(&mut self) -> Option<String> {
        let line = self.lines.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            panic!(
                "no line from the demo within {DEADLINE:?}:\n{}",
                self.seen.join("\n")
            )
        });
        self.seen.push(line.clone());
        Some(line).filter(|line| line != "\u{0}eof")
    }

    /// Reads stdout until a line starts with `prefix` (after trimming); the rest of that line.
    fn line_starting(&mut self, prefix: &str) -> String {
        while let Some(line) = self.next_line() {
            if let Some(rest) = line.trim_start().strip_prefix(prefix) {
                return rest.to_string();
            }
        }
        panic!(
            "the demo ended without a `{prefix}` line:\n{}",
            self.seen.join("\n")
        );
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("the demo is reaped")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

fn start_demo(dir: &std::path::Path) -> Demo {
    start_demo_with(dir, &["--no-history"])
}

/// The demo for ten minutes, no cuts, no summaries, with `extra` flags.
fn start_demo_with(dir: &std::path::Path, extra: &[&str]) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args([
            "demo",
            "--duration-s",
            "600",
            "--cut-every-s",
            "0",
            "--summary-every-s",
            "600",
        ])
        .args(extra)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tickflow demo starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    // Bounded: the demo prints a few dozen lines before the test reads them; a full channel
    // only makes the reader thread wait.
    let (sender, lines) = mpsc::sync_channel(4096);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                return;
            }
        }
        let _ = sender.send("\u{0}eof".to_string());
    });
    Demo {
        child,
        lines,
        seen: Vec::new(),
    }
}

/// `url` (`scheme://127.0.0.1:PORT/path`) as (port, path).
fn port_and_path(url: &str) -> (u16, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in {url}"));
    assert_eq!(host, "127.0.0.1", "loopback: {url}");
    (port.parse().expect("a port number"), path.to_string())
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("the printed port accepts");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("timeout set");
    stream
        .set_write_timeout(Some(DEADLINE))
        .expect("timeout set");
    stream
}

/// One HTTP/1.1 GET; the whole response (the server closes it).
fn http_get(port: u16, path: &str) -> String {
    let mut stream = connect(port);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).to_string()
}

#[test]
fn demo_serves_live_data_and_metrics_on_the_urls_it_prints_falling_back_when_ports_are_busy() {
    // The demo finds the plugins next to the binary.
    built_plugin("tickflow-ws-broadcast", "tickflow_ws_broadcast");
    built_plugin("tickflow-metrics", "tickflow_metrics");
    // Take the default ports (a bind that fails means something else holds it: busy either way).
    let _held: Vec<std::net::TcpListener> = [DEFAULT_WS_PORT, DEFAULT_METRICS_PORT]
        .into_iter()
        .filter_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
        .collect();
    let dir = scratch_dir("live");
    let mut demo = start_demo(&dir);

    let ws_line = demo.line_starting("live ");
    let metrics_line = demo.line_starting("metrics ");
    let ws_url = ws_line
        .split_whitespace()
        .next()
        .expect("a URL")
        .to_string();
    let metrics_url = metrics_line
        .split_whitespace()
        .next()
        .expect("a URL")
        .to_string();
    assert!(ws_url.starts_with("ws://127.0.0.1:"), "{ws_line}");
    assert!(
        metrics_url.starts_with("http://127.0.0.1:"),
        "{metrics_line}"
    );
    let (ws_port, ws_path) = port_and_path(&ws_url);
    let (metrics_port, metrics_path) = port_and_path(&metrics_url);
    assert_ne!(ws_port, DEFAULT_WS_PORT, "8081 is held: {ws_line}");
    assert_ne!(
        metrics_port, DEFAULT_METRICS_PORT,
        "9464 is held: {metrics_line}"
    );
    assert!(ws_line.contains("port 8081 was busy"), "{ws_line}");
    assert!(
        metrics_line.contains("port 9464 was busy"),
        "{metrics_line}"
    );

    // The metrics URL: Prometheus text with the engine's own metrics (per venue once the feeds
    // run: awaited).
    let started = Instant::now();
    let exposition = loop {
        let response = http_get(metrics_port, &metrics_path);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        if response.contains("tickflow_venue_connections_planned{") {
            break response;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no per-venue metrics within {DEADLINE:?}:\n{response}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let body = exposition
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body);
    assert!(
        body.lines()
            .any(|line| line.starts_with("tickflow_uptime_seconds")),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|line| line.starts_with("tickflow_sink_records_in_total{")),
        "{body}"
    );

    // The ws URL: a WebSocket upgrade gets 101 with the right accept key, then the hello.
    let mut stream = connect(ws_port);
    write!(
        stream,
        "GET {ws_path} HTTP/1.1\r\nHost: 127.0.0.1:{ws_port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("upgrade sent");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the upgrade answer");
        head.push(byte[0]);
        assert!(head.len() < 8192, "{}", String::from_utf8_lossy(&head));
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // The first frame: unmasked text, the hello.
    let mut frame_head = [0u8; 2];
    stream.read_exact(&mut frame_head).expect("a first frame");
    assert_eq!(frame_head[0], 0x81, "a final text frame");
    let length = match frame_head[1] & 0x7f {
        126 => {
            let mut extended = [0u8; 2];
            stream.read_exact(&mut extended).expect("length");
            u16::from_be_bytes(extended) as usize
        }
        127 => panic!("a hello is not that large"),
        short => short as usize,
    };
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).expect("the hello");
    let hello: serde_json::Value = serde_json::from_slice(&payload).expect("the hello is JSON");
    assert_eq!(hello["hello"], "tickflow", "{hello}");
    drop(stream);

    let status = demo.terminate();
    assert!(
        status.success(),
        "SIGTERM stops the demo cleanly: {status:?}"
    );
    let mut stopped = false;
    while let Some(line) = demo.next_line() {
        stopped |= line.starts_with("stopped: ");
    }
    assert!(stopped, "{}", demo.seen.join("\n"));
}

#[test]
fn demo_seeds_simulated_hours_of_history_the_history_route_reads() {
    built_plugin("tickflow-parquet", "tickflow_parquet");
    let dir = scratch_dir("seed");
    let mut demo = start_demo_with(
        &dir,
        &["--seed-history-hours", "2", "--data-dir", "history"],
    );
    let seeded = demo.line_starting("seeded ");
    assert!(
        seeded.contains("records") && !seeded.contains("lost"),
        "{seeded}"
    );
    let dashboard = demo.line_starting("dashboard ");
    let url = dashboard.split_whitespace().next().expect("a URL");
    let (port, _) = port_and_path(url);
    // The two hours end now: today's partition has them (and yesterday's too just after 00:00
    // UTC, when the hours straddle midnight).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let mut pairs = 0;
    for at_ms in [now_ms, now_ms - 2 * 3_600_000] {
        let date = tickflow_history::Date::of_ms(at_ms);
        let response = http_get(
            port,
            &format!("/api/history/opportunities?date={date}&threshold_bp=20"),
        );
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let body: serde_json::Value =
            serde_json::from_str(response.split_once("\r\n\r\n").map_or("", |(_, body)| body))
                .expect("JSON");
        let listed = body["pairs"].as_array().expect("pairs");
        for pair in listed {
            assert!(pair["cycles"].as_u64().unwrap_or(0) > 0, "{pair}");
            assert!(
                pair["symbol"]
                    .as_str()
                    .is_some_and(|symbol| symbol.ends_with("-USDT"))
            );
        }
        pairs += listed.len();
        if date == tickflow_history::Date::of_ms(now_ms) {
            assert!(!listed.is_empty(), "today has seeded cycles: {body}");
        }
    }
    assert!(pairs > 0);
    // Stopped (killed) on drop: a clean stop is the test above's; here the demo may still be
    // starting its feeds, before it handles SIGTERM.
    drop(demo);
}
