//! Runs the real `tickflow` binary against the simulated venues: writes its config, starts it,
//! follows its `tickflow-stats` lines on stderr (one owned reader thread), samples it from /proc,
//! and stops it with SIGTERM.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tickflow_core::venue::Venue;
use tickflow_sim::SimVenues;

use crate::proc_stat::{ProcError, ProcSample};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot write the engine config {path}: {source}")]
    WriteConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot signal the engine: {0}")]
    Signal(std::io::Error),
    #[error("engine did not reach {what} within {timeout_s} s")]
    Timeout { what: &'static str, timeout_s: u64 },
    #[error(transparent)]
    Proc(#[from] ProcError),
}

/// Engine settings a scenario chooses.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub shards: usize,
    pub worker_threads: usize,
    pub ring_capacity_records: usize,
    pub stats_interval_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub max_connection_slots: usize,
    /// Subscribe to trades too (else best bid/ask only).
    pub trades: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            shards: 1,
            worker_threads: 1,
            ring_capacity_records: 16_384,
            stats_interval_ms: 1_000,
            backoff_base_ms: 50,
            backoff_cap_ms: 1_000,
            max_connection_slots: 64,
            trades: false,
        }
    }
}

/// An engine config (TOML) whose feeds point at `sim`.
pub fn engine_config_toml(sim: &SimVenues, options: &EngineOptions) -> String {
    let symbols = &sim.config().symbols;
    let quoted: Vec<String> = symbols
        .iter()
        .map(|symbol| format!("\"{symbol}\""))
        .collect();
    let channels = if options.trades {
        r#"["bbo", "trades"]"#
    } else {
        r#"["bbo"]"#
    };
    let mut text = format!(
        "# written by tickflow-load\n\
         [engine]\nshards = {}\nmax_symbols = {}\nring_capacity_records = {}\nmax_connection_slots = {}\n\
         [windows]\nbucket_ms = 1000\nbuckets = 60\nmax_windows = {}\nsnapshot_interval_ms = 1000\n\
         [feeds]\nsymbols = [{}]\nchannels = {channels}\nworker_threads = {}\nstats_interval_ms = {}\n\
         backoff_base_ms = {}\nbackoff_cap_ms = {}\nconnect_timeout_ms = 5000\nshutdown_deadline_ms = 2000\n",
        options.shards,
        symbols.len().max(1),
        options.ring_capacity_records,
        options.max_connection_slots,
        (symbols.len() * 56).max(64),
        quoted.join(", "),
        options.worker_threads,
        options.stats_interval_ms,
        options.backoff_base_ms,
        options.backoff_cap_ms,
    );
    for venue in sim.config().venues.iter().copied() {
        text.push_str(&format!("[feeds.venue.{}]\n", venue.name()));
        if venue == Venue::Kucoin {
            text.push_str(&format!(
                "bullet_url = \"{}\"\n",
                sim.bullet_url().unwrap_or_default()
            ));
        } else {
            text.push_str(&format!(
                "url = \"{}\"\n",
                sim.url(venue).unwrap_or_default()
            ));
        }
    }
    text
}

/// The `tickflow` binary next to this one (both are built into the same target directory).
pub fn default_engine_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("tickflow")))
        .unwrap_or_else(|| PathBuf::from("tickflow"))
}

/// A running engine process.
pub struct EngineProcess {
    child: Child,
    latest_stats: Arc<Mutex<Option<serde_json::Value>>>,
    stderr_reader: Option<JoinHandle<()>>,
    config_path: PathBuf,
}

impl std::fmt::Debug for EngineProcess {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EngineProcess")
            .field("pid", &self.child.id())
            .finish()
    }
}

impl EngineProcess {
    /// Writes `config_toml` to a file and starts `engine_path run --config FILE`. Engine log
    /// lines are echoed to our stderr when `echo_logs`.
    pub fn start(
        engine_path: &Path,
        config_toml: &str,
        echo_logs: bool,
    ) -> Result<EngineProcess, EngineError> {
        let config_path =
            std::env::temp_dir().join(format!("tickflow-load-{}.toml", std::process::id()));
        std::fs::write(&config_path, config_toml).map_err(|source| EngineError::WriteConfig {
            path: config_path.clone(),
            source,
        })?;
        let mut child = Command::new(engine_path)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "error")
            .spawn()
            .map_err(|source| EngineError::Spawn {
                path: engine_path.to_owned(),
                source,
            })?;
        let latest_stats = Arc::new(Mutex::new(None));
        let stderr = child.stderr.take().expect("stderr was piped");
        let reader_stats = Arc::clone(&latest_stats);
        let stderr_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(json) = line.strip_prefix("tickflow-stats ") {
                    if let Ok(value) = serde_json::from_str(json) {
                        *reader_stats
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(value);
                    }
                } else if echo_logs {
                    eprintln!("engine: {line}");
                }
            }
        });
        Ok(EngineProcess {
            child,
            latest_stats,
            stderr_reader: Some(stderr_reader),
            config_path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sample(&self) -> Result<ProcSample, EngineError> {
        Ok(ProcSample::read(self.pid())?)
    }

    /// The latest `tickflow-stats` object, if one arrived.
    pub fn stats(&self) -> Option<serde_json::Value> {
        self.latest_stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A numeric field of the latest stats (0 when absent).
    pub fn stat(&self, field: &str) -> u64 {
        self.stats()
            .and_then(|stats| stats.get(field).and_then(|value| value.as_u64()))
            .unwrap_or(0)
    }

    /// Waits until `condition` holds on a stats line newer than now (bounded by `timeout`).
    pub fn wait_stats(
        &self,
        what: &'static str,
        timeout: Duration,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, EngineError> {
        let start = Instant::now();
        let started_uptime = self.stat("uptime_ms");
        while start.elapsed() < timeout {
            if let Some(stats) = self.stats() {
                let fresh = stats
                    .get("uptime_ms")
                    .and_then(|value| value.as_u64())
                    .unwrap_or(0)
                    > started_uptime;
                if fresh && condition(&stats) {
                    return Ok(stats);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(EngineError::Timeout {
            what,
            timeout_s: timeout.as_secs(),
        })
    }

    /// Sends SIGTERM and waits for the exit code (None = killed by a signal).
    pub fn terminate(mut self) -> Result<Option<i32>, EngineError> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .map_err(EngineError::Signal)?;
        if !status.success() {
            return Err(EngineError::Signal(std::io::Error::other(
                "kill -TERM failed",
            )));
        }
        let exit = self.child.wait().map_err(EngineError::Signal)?;
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.config_path);
        Ok(exit.code())
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        // Only reached when `terminate` was not called (an error path): don't leave it running.
        if self.stderr_reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(reader) = self.stderr_reader.take() {
                let _ = reader.join();
            }
            let _ = std::fs::remove_file(&self.config_path);
        }
    }
}
