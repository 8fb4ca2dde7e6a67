//! Runs the real `tickflow` binary against the simulated venues: writes its config (with as many
//! connection slots as its feeds plan, and optionally a sink plugin), starts it, follows its
//! `tickflow-stats` and `tickflow-shutdown` lines on stderr (one owned reader thread), samples it
//! from /proc, and stops it with SIGTERM.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tickflow_core::config::EngineConfig;
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
    #[error("engine exited before {what} (its log lines are above when echoed)")]
    Exited { what: &'static str },
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
    /// `engine.max_connection_slots`. `None`: the key is left to the engine's default when that
    /// holds the slots the feeds plan, else it is the slots they plan. `Some(n)`: n, raised to the
    /// slots the feeds plan (a written config never asks for fewer slots than its feeds need).
    pub max_connection_slots: Option<usize>,
    /// `windows.buckets` (of 1 s each): 3 600 is the engine's default (one-hour windows).
    pub buckets: usize,
    /// Subscribe to trades too (else best bid/ask only).
    pub trades: bool,
    /// `feeds.tls_extra_roots_pem`: the CA of simulators started with `SimVenues::start_tls`.
    pub tls_extra_roots_pem: Option<PathBuf>,
    /// One `[[sinks]]` plugin, when set.
    pub sink: Option<SinkOptions>,
    /// Discover the universe from the simulators' instrument lists (`[universe]` pointing at
    /// their REST endpoints) instead of listing the symbols in `[feeds]`.
    pub discover: bool,
    /// `engine.shard_batch_wait_us` and `feeds.batch_wait_us`; `None` leaves the engine's default.
    pub shard_batch_wait_us: Option<u64>,
    pub feeds_batch_wait_us: Option<u64>,
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
            max_connection_slots: None,
            buckets: 60,
            trades: false,
            tls_extra_roots_pem: None,
            sink: None,
            discover: false,
            shard_batch_wait_us: None,
            feeds_batch_wait_us: None,
        }
    }
}

/// A sink plugin for the engine's `[[sinks]]` (policy `drop_newest`: a sink that does not keep
/// up loses records, counted by the engine as `sink_lost`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkOptions {
    /// The plugin's shared library (absolute, or relative to the engine's working directory).
    pub path: PathBuf,
    /// TOML lines for `[sinks.config]` (the test sink's no-op: `mode = "noop"`).
    pub config_toml: String,
    /// `ring_capacity_records` of each shard → sink ring; `None`: the engine's default.
    pub ring_capacity_records: Option<usize>,
}

/// Subscriptions (symbol × channel) one connection may carry on `venue`: the engine planner's
/// `VenueRules::max_streams_per_connection` (engine/feed/src/protocol.rs), repeated here because
/// this crate may not depend on the feed crate (the layer table in
/// engine/cli/tests/it/layering.rs). The ignored test `written_configs_pass_check_config` checks
/// the configs written from it with the engine's own `tickflow check-config`.
pub fn max_streams_per_connection(venue: Venue) -> usize {
    match venue {
        Venue::Binance => 1024,
        Venue::Bybit => 200,
        Venue::Okx => 240,
        Venue::Mexc => 30,
        Venue::Gate => 200,
        Venue::Kucoin => 200,
        Venue::Bitget => 50,
        Venue::Htx => 100,
    }
}

/// Connection slots the engine plans for `symbols` distinct symbols, each on `channels` channels,
/// on every venue of `venues`: a symbol's channels share one slot, so a slot holds
/// `max_streams_per_connection / channels` symbols (the planner in engine/feed/src/planner.rs).
pub fn connection_slots_needed(venues: &[Venue], symbols: usize, channels: usize) -> usize {
    if symbols == 0 || channels == 0 {
        return 0;
    }
    venues
        .iter()
        .map(|venue| {
            let symbols_per_slot = (max_streams_per_connection(*venue) / channels).max(1);
            symbols.div_ceil(symbols_per_slot)
        })
        .sum()
}

/// The `engine.max_connection_slots` a config for these feeds writes (`None`: leave the key to
/// the engine's default, which holds them).
pub fn max_connection_slots_to_write(requested: Option<usize>, needed: usize) -> Option<usize> {
    match requested {
        Some(slots) => Some(slots.max(needed)),
        None if needed <= EngineConfig::default().max_connection_slots => None,
        None => Some(needed),
    }
}

/// Spread windows per symbol with `venues` venues: one per ordered (buy venue, sell venue) pair.
pub fn windows_per_symbol(venues: usize) -> usize {
    venues * venues.saturating_sub(1)
}

/// An engine config (TOML) whose feeds point at `sim`.
/// Symbols a discovered universe may hold beyond the configured ones: the simulators' tricky
/// instruments and churned listings.
const DISCOVERY_EXTRA_SYMBOLS: usize = 32;

pub fn engine_config_toml(sim: &SimVenues, options: &EngineOptions) -> String {
    let symbols = &sim.config().symbols;
    let venues = &sim.config().venues;
    let quoted: Vec<String> = symbols
        .iter()
        .map(|symbol| format!("\"{symbol}\""))
        .collect();
    let (channels, channel_count) = if options.trades {
        (r#"["bbo", "trades"]"#, 2)
    } else {
        (r#"["bbo"]"#, 1)
    };
    // Discovered: the simulators also list their tricky instruments and churned listings.
    let universe_symbols = if options.discover {
        symbols.len() + DISCOVERY_EXTRA_SYMBOLS
    } else {
        symbols.len()
    };
    // A discovered universe leaves the registry a quarter of headroom (`[universe]`).
    let max_symbols = if options.discover {
        universe_symbols * 4 / 3 + 8
    } else {
        symbols.len().max(1)
    };
    let slots_needed = connection_slots_needed(venues, universe_symbols, channel_count);
    let mut text = format!(
        "# written by tickflow-load\n\
         [engine]\nshards = {}\nmax_symbols = {}\nring_capacity_records = {}\n",
        options.shards, max_symbols, options.ring_capacity_records,
    );
    match max_connection_slots_to_write(options.max_connection_slots, slots_needed) {
        Some(slots) => text.push_str(&format!(
            "# the feeds plan {slots_needed} connection slots\nmax_connection_slots = {slots}\n"
        )),
        None => text.push_str(&format!(
            "# the feeds plan {slots_needed} connection slots: the default max_connection_slots holds them\n"
        )),
    }
    if let Some(wait_us) = options.shard_batch_wait_us {
        text.push_str(&format!("shard_batch_wait_us = {wait_us}\n"));
    }
    text.push_str(&format!(
        "[windows]\nbucket_ms = 1000\nbuckets = {}\nmax_windows = {}\nsnapshot_interval_ms = 1000\n\
         [feeds]\n{}channels = {channels}\nworker_threads = {}\nstats_interval_ms = {}\n\
         backoff_base_ms = {}\nbackoff_cap_ms = {}\nconnect_timeout_ms = 5000\nshutdown_deadline_ms = 2000\n",
        options.buckets,
        (universe_symbols * windows_per_symbol(venues.len())).max(64),
        if options.discover {
            String::new()
        } else {
            format!("symbols = [{}]\n", quoted.join(", "))
        },
        options.worker_threads,
        options.stats_interval_ms,
        options.backoff_base_ms,
        options.backoff_cap_ms,
    ));
    if let Some(path) = &options.tls_extra_roots_pem {
        text.push_str(&format!("tls_extra_roots_pem = {}\n", toml_string(path)));
    }
    if let Some(wait_us) = options.feeds_batch_wait_us {
        text.push_str(&format!("batch_wait_us = {wait_us}\n"));
    }
    for venue in venues.iter().copied() {
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
    if options.discover {
        text.push_str(&format!(
            "[universe]\nmax_symbols = {universe_symbols}\nrefresh_interval_s = 60\n"
        ));
        for venue in venues.iter().copied() {
            text.push_str(&format!(
                "[universe.venue.{}]\nurl = \"{}\"\n",
                venue.name(),
                sim.rest_url(venue)
            ));
        }
        // The simulated Bybit and MEXC list 1000PEPE, priced per 1 000 PEPE.
        for venue in ["bybit", "mexc"] {
            text.push_str(&format!(
                "[[universe.alias]]\nvenue = \"{venue}\"\nvenue_base = \"1000PEPE\"\nbase = \"PEPE\"\nmultiplier = 1000.0\n"
            ));
        }
    }
    if let Some(sink) = &options.sink {
        text.push_str(&format!(
            "[[sinks]]\nname = \"load\"\npath = {}\npolicy = \"drop_newest\"\n",
            toml_string(&sink.path)
        ));
        if let Some(capacity) = sink.ring_capacity_records {
            text.push_str(&format!("ring_capacity_records = {capacity}\n"));
        }
        text.push_str("[sinks.config]\n");
        text.push_str(sink.config_toml.trim_end());
        text.push('\n');
    }
    text
}

/// A path as a TOML basic string (TOML takes the same escapes as Rust's Debug for a path's
/// characters).
fn toml_string(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
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
    /// The `tickflow-shutdown` object, once the engine printed it.
    shutdown_line: Arc<Mutex<Option<serde_json::Value>>>,
    /// Set by the reader when the engine's stderr closed (it exited).
    stderr_closed: Arc<AtomicBool>,
    stderr_reader: Option<JoinHandle<()>>,
    config_path: PathBuf,
}

/// How a terminated engine ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineExit {
    /// Exit code (None = killed by a signal).
    pub code: Option<i32>,
    /// Its `tickflow-shutdown` object (`ring_dropped`, `sinks`, `sink_lost`, ... over the whole
    /// run), when it printed one.
    pub shutdown: Option<serde_json::Value>,
}

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        Self::start_with(engine_path, config_toml, echo_logs, false)
    }

    /// `start`, with the engine in a process group of its own: a terminal's Ctrl-C (sent to
    /// the foreground group) does not reach it, so the only signal it gets is the harness's own
    /// SIGTERM (a second signal would make the engine exit at once, skipping its drain). The
    /// caller must stop it on every path (Ctrl-C included): `Drop` kills it.
    pub fn start_own_group(
        engine_path: &Path,
        config_toml: &str,
        echo_logs: bool,
    ) -> Result<EngineProcess, EngineError> {
        Self::start_with(engine_path, config_toml, echo_logs, true)
    }

    fn start_with(
        engine_path: &Path,
        config_toml: &str,
        echo_logs: bool,
        own_group: bool,
    ) -> Result<EngineProcess, EngineError> {
        // One file per engine started: a harness may run several engines at once.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let config_path = std::env::temp_dir().join(format!(
            "tickflow-load-{}-{}.toml",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&config_path, config_toml).map_err(|source| EngineError::WriteConfig {
            path: config_path.clone(),
            source,
        })?;
        let mut command = Command::new(engine_path);
        command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "error");
        if own_group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let mut child = command.spawn().map_err(|source| EngineError::Spawn {
            path: engine_path.to_owned(),
            source,
        })?;
        let latest_stats = Arc::new(Mutex::new(None));
        let shutdown_line = Arc::new(Mutex::new(None));
        let stderr_closed = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().expect("stderr was piped");
        let reader_stats = Arc::clone(&latest_stats);
        let reader_shutdown = Arc::clone(&shutdown_line);
        let reader_closed = Arc::clone(&stderr_closed);
        let stderr_reader = std::thread::spawn(move || {
            // Ends when the engine closes its stderr (it exited).
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(json) = line.strip_prefix("tickflow-stats ") {
                    if let Ok(value) = serde_json::from_str(json) {
                        *lock(&reader_stats) = Some(value);
                    }
                    continue;
                }
                if let Some(json) = line.strip_prefix("tickflow-shutdown ")
                    && let Ok(value) = serde_json::from_str(json)
                {
                    *lock(&reader_shutdown) = Some(value);
                }
                if echo_logs {
                    eprintln!("engine: {line}");
                }
            }
            reader_closed.store(true, Ordering::Release);
        });
        Ok(EngineProcess {
            child,
            latest_stats,
            shutdown_line,
            stderr_closed,
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
        lock(&self.latest_stats).clone()
    }

    /// A numeric field of the latest stats (0 when absent).
    pub fn stat(&self, field: &str) -> u64 {
        self.stats()
            .and_then(|stats| stats.get(field).and_then(|value| value.as_u64()))
            .unwrap_or(0)
    }

    /// Waits until `condition` holds on a stats line newer than now (bounded by `timeout`; an
    /// engine that exits meanwhile ends the wait with `EngineError::Exited`).
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
            if self.stderr_closed.load(Ordering::Acquire) {
                return Err(EngineError::Exited { what });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(EngineError::Timeout {
            what,
            timeout_s: timeout.as_secs(),
        })
    }

    /// Whether the engine exited (its stderr closed).
    pub fn exited(&self) -> bool {
        self.stderr_closed.load(Ordering::Acquire)
    }

    /// SIGKILL (no shutdown at all: a crash, mid-write for a sink) and waits for it to go.
    pub fn kill(mut self) -> Result<(), EngineError> {
        self.child.kill().map_err(EngineError::Signal)?;
        self.child.wait().map_err(EngineError::Signal)?;
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.config_path);
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit code (None = killed by a signal).
    pub fn terminate(self) -> Result<Option<i32>, EngineError> {
        Ok(self.terminate_with_report()?.code)
    }

    /// Sends SIGTERM and waits for the exit code and the `tickflow-shutdown` line.
    pub fn terminate_with_report(mut self) -> Result<EngineExit, EngineError> {
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
        Ok(EngineExit {
            code: exit.code(),
            shutdown: lock(&self.shutdown_line).take(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The process group of `pid` (the fifth field of /proc/PID/stat).
    fn process_group(pid: &str) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let (_, after_name) = stat.rsplit_once(')').unwrap();
        after_name
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn an_engine_in_its_own_group_is_out_of_reach_of_the_terminals_ctrl_c() {
        // A stand-in for the engine binary: a real process that waits (killed on drop).
        let dir = std::env::temp_dir().join(format!("tf-load-pgrp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("engine.sh");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let ours = process_group("self");
        let own = EngineProcess::start_own_group(&script, "", false).unwrap();
        assert_eq!(process_group(&own.pid().to_string()), own.pid());
        assert_ne!(own.pid(), ours);
        let shared = EngineProcess::start(&script, "", false).unwrap();
        assert_eq!(process_group(&shared.pid().to_string()), ours);
        drop(own);
        drop(shared);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn slots_needed_follow_the_engines_plan_of_the_default_universe() {
        // The engine's own figures (engine/core/src/config.rs, `max_connection_slots`): 1 000
        // symbols on eight venues plan 85 slots for best bid/ask, 168 with trades too.
        assert_eq!(connection_slots_needed(&Venue::ALL, 1000, 1), 85);
        assert_eq!(connection_slots_needed(&Venue::ALL, 1000, 2), 168);
        assert_eq!(connection_slots_needed(&Venue::ALL, 20, 1), 8);
        assert_eq!(connection_slots_needed(&[Venue::Mexc], 31, 1), 2);
        assert_eq!(connection_slots_needed(&Venue::ALL, 0, 1), 0);
        assert_eq!(connection_slots_needed(&Venue::ALL, 10, 0), 0);
    }

    #[test]
    fn written_slots_are_never_fewer_than_the_plan_needs() {
        let default_slots = EngineConfig::default().max_connection_slots;
        assert_eq!(max_connection_slots_to_write(None, 85), None);
        assert_eq!(max_connection_slots_to_write(None, default_slots), None);
        assert_eq!(
            max_connection_slots_to_write(None, default_slots + 1),
            Some(default_slots + 1)
        );
        assert_eq!(max_connection_slots_to_write(Some(16), 8), Some(16));
        assert_eq!(max_connection_slots_to_write(Some(16), 85), Some(85));
    }

    #[test]
    fn every_ordered_venue_pair_is_a_window() {
        assert_eq!(windows_per_symbol(Venue::ALL.len()), 56);
        assert_eq!(windows_per_symbol(2), 2);
        assert_eq!(windows_per_symbol(1), 0);
        assert_eq!(windows_per_symbol(0), 0);
    }
}
