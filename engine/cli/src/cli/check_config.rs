//! `tickflow check-config FILE`: validate a config and print its memory budget, with one line per
//! sink giving the memory its plugin states for its config (or "not stated"). A non-optional
//! sink whose plugin refuses its config through `memory_bound` fails the check.

use std::io::Write;

use tickflow_host::{MemoryBound, SinkMemoryBound};

pub fn run(file: &std::path::Path) -> anyhow::Result<u8> {
    let config = tickflow::config::Config::from_file(file)?;
    let sink_bounds = tickflow_host::sink_memory_bounds(&config.sinks);
    let budget = tickflow::budget::memory_budget_with_bounds(&config, &sink_bounds);
    let refused: Vec<String> = config
        .sinks
        .iter()
        .zip(&sink_bounds)
        .enumerate()
        .filter(|(_, (sink, _))| !sink.optional)
        .filter_map(|(index, (sink, (_, bound)))| match bound {
            SinkMemoryBound::Plugin(MemoryBound::Failed(status)) => Some(format!(
                "config key `sinks[{index}].config` ({}): the plugin refuses it (memory_bound returned {}; `tickflow run` logs the reason when create refuses it)",
                sink.name,
                tickflow_sdk::abi::status_name(*status)
            )),
            _ => None,
        })
        .collect();
    if !refused.is_empty() {
        anyhow::bail!("{}", refused.join("\n"));
    }
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "config {} is valid", file.display())
        .and_then(|()| write!(stdout, "{budget}"))
        .and_then(|()| stdout.flush());
    match written {
        // A closed pipe (`| head`) is the reader's choice, not an error of ours.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(0),
    }
}
