//! The Prometheus metrics sink (`plugins/metrics`, the real cdylib) in the real `tickflow`
//! binary on the simulated venues: its exposition passes `promtool check metrics`, a real
//! Prometheus (started here on a free port, temp config and storage) scrapes it and answers a
//! query over its HTTP API; a token guards it; a non-loopback bind without a token and bad keys
//! are refused at start with a clear message.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package, installed by `.ci/run`;
//! a missing one fails the test with its name (never skipped). The tests live here because a
//! plugin may not depend on the engine, even for its tests (layering.rs).

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tickflow_core::venue::Venue;
use tickflow_sim::{SimConfig, SimVenues};

use super::sink_budget::built_plugin;

/// Longest any awaited condition may take before the test fails (a state is awaited, never a
/// duration).
const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "scrape-token-0123456789";

fn metrics_plugin() -> PathBuf {
    built_plugin("tickflow-metrics", "tickflow_metrics")
}

/// The path of a tool from Debian's `prometheus` package; fails (not skips) when missing.
fn required_tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} is missing ({}): install Debian's `prometheus` package (.ci/run does)",
        path.display()
    );
    path
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("metrics-sink-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

/// One HTTP/1.1 GET over a real socket: (status, body).
fn http_get(address: &str, path_and_query: &str, authorization: Option<&str>) -> (u16, String) {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|error| panic!("connect {address}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("socket timeout");
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("request written");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response read");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running `tickflow run`; its stderr is followed by one owned thread (joined on drop).
struct Engine {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    seen: Vec<String>,
}

impl Engine {
    fn start(config_path: &Path) -> Engine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(["run", "--config"])
            .arg(config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "warn,tickflow::plugin=info")
            .env("NO_COLOR", "1")
            .spawn()
            .expect("tickflow starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, lines) = std::sync::mpsc::sync_channel(65_536);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Engine {
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// The URL the plugin says it serves (its log line).
    fn wait_metrics_url(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(remaining).unwrap_or_else(|_| {
                panic!(
                    "the metrics sink never said where it serves; stderr:\n{}",
                    self.seen.join("\n")
                )
            });
            self.seen.push(line.clone());
            if let Some((_, url)) = line.split_once("serving Prometheus metrics on ") {
                // The log line goes on with the tracing fields (` sink="..."`).
                return url
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        }
    }

    /// Exits (the run was refused) and returns every stderr line.
    fn wait_exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + DEADLINE;
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                break status.code();
            }
            assert!(Instant::now() < deadline, "the engine did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut seen = std::mem::take(&mut self.seen);
        seen.extend(self.lines.try_iter());
        (code, seen.join("\n"))
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus server killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// `[sinks.config]` text appended to an engine config (`extra` lines go under it).
fn sink_toml(plugin: &Path, extra: &str) -> String {
    format!(
        "[[sinks]]\nname = \"prometheus\"\npath = {:?}\n[sinks.config]\n{extra}",
        plugin.display().to_string()
    )
}

fn feeds_config_toml(sim: &SimVenues) -> String {
    let quoted: Vec<String> = sim
        .config()
        .symbols
        .iter()
        .map(|symbol| format!("\"{symbol}\""))
        .collect();
    let mut text = format!(
        "[engine]\nshards = 2\nmax_symbols = 64\nmax_connection_slots = 16\n\
         [windows]\nbucket_ms = 100\nbuckets = 10\nmax_windows = 1000\n\
         [feeds]\nsymbols = [{}]\nchannels = [\"bbo\", \"trades\"]\nstats_interval_ms = 0\nshutdown_deadline_ms = 2000\n",
        quoted.join(", ")
    );
    for venue in Venue::ALL {
        text.push_str(&format!("[feeds.venue.{}]\n", venue.name()));
        if venue == Venue::Kucoin {
            text.push_str(&format!(
                "bullet_url = \"{}\"\n",
                sim.bullet_url().expect("kucoin is simulated")
            ));
        } else {
            text.push_str(&format!(
                "url = \"{}\"\n",
                sim.url(venue).expect("venue is simulated")
            ));
        }
    }
    text
}

/// The sample value of the first line of `exposition` starting with `prefix`.
fn sample_value(exposition: &str, prefix: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn exposition_passes_promtool_and_a_real_prometheus_scrapes_it() {
    let promtool = required_tool("promtool");
    let prometheus_bin = required_tool("prometheus");
    let plugin = metrics_plugin();
    let dir = scratch_dir("scrape");
    let runtime = runtime();
    let sim = runtime
        .block_on(SimVenues::start(SimConfig {
            venues: Venue::ALL.to_vec(),
            symbols: vec!["BTC-USDT".into(), "ETH-USDT".into()],
            bbo_per_s_per_symbol: 50.0,
            trades_per_s_per_symbol: 5.0,
            tick_ms: 5,
            ..SimConfig::default()
        }))
        .expect("simulator starts");
    let config_path = dir.join("tickflow.toml");
    let config = format!(
        "{}{}",
        feeds_config_toml(&sim),
        sink_toml(&plugin, "bind = \"127.0.0.1:0\"\n")
    );
    std::fs::write(&config_path, config).expect("config written");
    let mut engine = Engine::start(&config_path);
    let url = engine.wait_metrics_url();
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (address, path) = rest.split_at(rest.find('/').expect("a path"));
    let address = address.to_string();

    // Every venue delivers data, seen through the exposition.
    let deadline = Instant::now() + DEADLINE;
    let exposition = loop {
        let (status, body) = http_get(&address, path, None);
        assert_eq!(status, 200, "GET {url}: {body}");
        let all_up = Venue::ALL.iter().all(|venue| {
            sample_value(
                &body,
                &format!("tickflow_venue_records_total{{venue=\"{}\"}}", venue.name()),
            )
            .is_some_and(|records| records > 0.0)
        });
        if all_up {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "not every venue delivered; last exposition:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for family in [
        "# TYPE tickflow_venue_frames_total counter",
        "# TYPE tickflow_venue_connections_up gauge",
        "# TYPE tickflow_venue_decode_errors_total counter",
        "# TYPE tickflow_venue_exchange_latency_seconds histogram",
        "# TYPE tickflow_venue_resume_duration_seconds histogram",
        "# TYPE tickflow_venue_last_data_age_seconds gauge",
        "# TYPE tickflow_shard_quotes_total counter",
        "# TYPE tickflow_shard_windows_live gauge",
        "# TYPE tickflow_sink_records_in_total counter",
        "# TYPE tickflow_sink_dropped_total counter",
        "# TYPE tickflow_sink_on_batch_duration_seconds histogram",
        "# TYPE tickflow_memory_budget_bytes gauge",
        "# TYPE tickflow_process_resident_memory_bytes gauge",
        // A metric a plugin registered through the host (this plugin's own).
        "# TYPE tickflow_plugin_metrics_scrapes_total counter",
    ] {
        assert!(
            exposition.contains(family),
            "{family} missing from:\n{exposition}"
        );
    }
    assert!(
        exposition.contains("tickflow_shard_quotes_total{shard=\"1\"}"),
        "per-shard samples missing"
    );
    assert!(
        exposition.contains("tickflow_sink_dropped_total{sink=\"prometheus\",policy=\"drop_newest\",reason=\"ring_full\"}"),
        "per-sink drops by policy and reason missing"
    );

    // promtool reads the exposition on stdin and lints it (names, types, units).
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    check
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(exposition.as_bytes())
        .expect("exposition written to promtool");
    let checked = check.wait_with_output().expect("promtool runs");
    assert!(
        checked.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scrapes the plugin and answers a query over its HTTP API.
    let prometheus_port = free_port();
    let prometheus_config = dir.join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tickflow\n    metrics_path: {path}\n    static_configs:\n      - targets: ['{address}']\n"
        ),
    )
    .expect("prometheus config written");
    let prometheus_log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    let _prometheus = Prometheus(
        Command::new(&prometheus_bin)
            .arg(format!("--config.file={}", prometheus_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(prometheus_log)
            .spawn()
            .expect("prometheus starts"),
    );
    let prometheus_address = format!("127.0.0.1:{prometheus_port}");
    let query = "/api/v1/query?query=tickflow_venue_frames_total%7Bvenue%3D%22binance%22%7D";
    let deadline = Instant::now() + DEADLINE;
    let frames = loop {
        let answer = TcpStream::connect(&prometheus_address)
            .ok()
            .map(|_| http_get(&prometheus_address, query, None));
        if let Some((200, body)) = &answer {
            let json: serde_json::Value = serde_json::from_str(body).expect("the API answers JSON");
            let value = json["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|value| value.parse::<f64>().ok());
            if let Some(value) = value {
                break value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had tickflow_venue_frames_total; last answer {answer:?}; its log:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(frames > 0.0, "binance frames scraped: {frames}");
    // Prometheus saw the target healthy (its own `up` series).
    let (_, up) = http_get(
        &prometheus_address,
        "/api/v1/query?query=up%7Bjob%3D%22tickflow%22%7D",
        None,
    );
    assert!(up.contains("\"1\""), "the scrape target is not up: {up}");
    engine.stop();
    runtime.block_on(sim.shutdown());
}

/// An engine config with no venues: the plugin starts (or is refused) without any feed.
fn sink_only_config(dir: &Path, plugin: &Path, sink_config: &str) -> PathBuf {
    let path = dir.join("tickflow.toml");
    std::fs::write(&path, sink_toml(plugin, sink_config)).expect("config written");
    path
}

#[test]
fn a_token_guards_the_scrape() {
    let plugin = metrics_plugin();
    let dir = scratch_dir("token");
    let config = sink_only_config(
        &dir,
        &plugin,
        &format!("bind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n"),
    );
    let mut engine = Engine::start(&config);
    let url = engine.wait_metrics_url();
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (address, path) = rest.split_at(rest.find('/').expect("a path"));
    assert_eq!(http_get(address, path, None).0, 401);
    assert_eq!(
        http_get(address, path, Some("Bearer wrong-token-0000000000")).0,
        401
    );
    // The sinks start before the engine sets its own metrics: wait for them.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = http_get(address, path, Some(&format!("Bearer {TOKEN}")));
        assert_eq!(status, 200, "{body}");
        if body.contains("# TYPE tickflow_memory_budget_total_bytes gauge") {
            break;
        }
        assert!(Instant::now() < deadline, "no engine metrics in:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        http_get(address, "/other", Some(&format!("Bearer {TOKEN}"))).0,
        404
    );
    engine.stop();
}

#[test]
fn a_non_loopback_bind_without_token_and_bad_keys_are_refused_at_start() {
    let plugin = metrics_plugin();
    for (name, sink_config, expected) in [
        (
            "non-loopback",
            "bind = \"0.0.0.0:0\"\n",
            "is not a loopback address: set `token`",
        ),
        (
            "bad-bind",
            "bind = \"localhost\"\n",
            "is not an address:port",
        ),
        (
            "bad-connections",
            "max_connections = 0\n",
            "max_connections must be between 1 and 1024, got 0",
        ),
        (
            "unknown-key",
            "bindd = \"127.0.0.1:0\"\n",
            "unknown field `bindd`",
        ),
        (
            "short-token",
            "token = \"short\"\n",
            "token must be 16 to 256 bytes",
        ),
    ] {
        let dir = scratch_dir(name);
        let config = sink_only_config(&dir, &plugin, sink_config);
        let (code, stderr) = Engine::start(&config).wait_exit();
        assert_ne!(code, Some(0), "{name}: the engine started:\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: no {expected:?} in:\n{stderr}"
        );
    }
}
