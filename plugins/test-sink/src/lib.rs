//! A sink that misbehaves on purpose, for the plugin host's isolation tests, or does nothing, for
//! the ABI benchmark. Never configure it in production.
//!
//! `mode` (in `[sinks.config]`): `noop` accepts everything; `panic` panics in every `on_batch`;
//! `fail` returns an error from every `on_batch`; `stall` blocks in its first `on_batch` until
//! the file `gate_path` exists, then accepts everything. `memory_bound_bytes`, when set, is the
//! bound it states to the engine's memory budget (ABI 1.2); unset, it states none.

use tickflow_sdk::{Batch, HostHandle, RecordKind, Sink, SinkError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Noop,
    Panic,
    Fail,
    Stall,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestSinkConfig {
    pub mode: Mode,
    /// `stall` mode waits for this file to exist.
    pub gate_path: Option<std::path::PathBuf>,
    /// Longest a stall lasts even without the gate, so a broken test cannot hang forever.
    pub stall_limit_ms: Option<u64>,
    /// The memory bound it states to the engine (for the budget's tests); none when unset.
    pub memory_bound_bytes: Option<u64>,
}

pub struct TestSink {
    mode: Mode,
    gate_path: Option<std::path::PathBuf>,
    stall_limit_ms: u64,
    stalled: bool,
    /// Records seen; read by the benchmark through `stats`.
    pub records_seen: u64,
}

impl Sink for TestSink {
    type Config = TestSinkConfig;
    const NAME: &'static str = "test-sink";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const RECORD_KINDS: &'static [RecordKind] = &RecordKind::ALL;

    fn create(host: HostHandle, config: TestSinkConfig) -> Result<TestSink, SinkError> {
        if config.mode == Mode::Stall && config.gate_path.is_none() {
            return Err(SinkError::config("mode = \"stall\" needs gate_path"));
        }
        host.info(&format!("test sink created in mode {:?}", config.mode));
        Ok(TestSink {
            mode: config.mode,
            gate_path: config.gate_path,
            stall_limit_ms: config.stall_limit_ms.unwrap_or(60_000),
            stalled: false,
            records_seen: 0,
        })
    }

    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        match self.mode {
            Mode::Noop => {}
            Mode::Panic => panic!("test sink panics on purpose ({} records)", batch.len()),
            Mode::Fail => return Err(SinkError::failed("test sink fails on purpose")),
            Mode::Stall => {
                if !self.stalled {
                    self.stalled = true;
                    self.wait_for_gate();
                }
            }
        }
        self.records_seen += batch.len() as u64;
        Ok(())
    }

    fn memory_bound_bytes(config: &TestSinkConfig) -> Result<Option<u64>, SinkError> {
        Ok(config.memory_bound_bytes)
    }

    fn stats(&self) -> tickflow_sdk::abi::PluginStats {
        tickflow_sdk::abi::PluginStats {
            records_written: self.records_seen,
            ..Default::default()
        }
    }
}

impl TestSink {
    /// Blocks this sink's thread (the point of the mode) until the gate file appears.
    fn wait_for_gate(&self) {
        let Some(gate_path) = &self.gate_path else {
            return;
        };
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(self.stall_limit_ms);
        while !gate_path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

tickflow_sdk::export_sink!(TestSink);
