//! Wiring of the control plane (tickflow-control) for `run` and `demo`, and `tickflow serve
//! --data DIR`: the same server over a Parquet history directory with no feeds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tickflow::budget::MemoryBudget;
use tickflow::config::Config;
use tickflow_control::{ControlPlane, EngineBoard, EngineView, LiveEngine};
use tickflow_core::pipeline::Pipeline;
use tickflow_core::registry::SymbolRegistry;

use super::process::{Signals, init_logging};

/// Starts the control plane over a running pipeline (phase "starting"; the caller publishes
/// into the board and sets the phase). None when `[http] enabled = false`.
pub(crate) fn start_for_engine(
    config: &Config,
    pipeline: &Pipeline,
    registry: &Arc<SymbolRegistry>,
    budget: &MemoryBudget,
) -> anyhow::Result<Option<(ControlPlane, Arc<EngineBoard>)>> {
    if !config.http.enabled {
        return Ok(None);
    }
    let board = Arc::new(EngineBoard::default());
    let view = EngineView {
        live: Some(LiveEngine {
            snapshots: pipeline.snapshot_handles(),
            registry: Arc::clone(registry),
            board: Arc::clone(&board),
            required_sinks: config
                .sinks
                .iter()
                .filter(|sink| !sink.optional)
                .map(|sink| sink.name.clone())
                .collect(),
            max_windows: config.windows.max_windows,
            windows_prefault: config.windows.prefault,
            max_symbols: config.engine.max_symbols,
            cycles_on: config.windows.cycles_on,
            shed: pipeline.shed_control(),
        }),
        thresholds_bp: config.windows.thresholds_bp.clone(),
        budget: budget.clone(),
        allocator_stats: Some(tickflow::metrics::allocator_stats),
    };
    let control = ControlPlane::start(config.http.clone(), view)
        .context("cannot start the control plane ([http])")?;
    Ok(Some((control, board)))
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The Parquet history root (the Parquet sink's `root`).
    #[arg(long)]
    pub data: PathBuf,
    /// An engine config whose `[http]` and `[windows] thresholds_bp` apply (defaults otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `tickflow serve --data DIR [--config FILE]`: history routes, /health and the dashboard.
pub fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let _log_guard = init_logging("info");
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if !args.data.is_dir() {
        anyhow::bail!("--data {}: not a directory", args.data.display());
    }
    config.http.history_dir = Some(std::path::absolute(&args.data).unwrap_or(args.data.clone()));
    let view = EngineView {
        live: None,
        thresholds_bp: config.windows.thresholds_bp.clone(),
        budget: MemoryBudget::from_lines(Vec::new()),
        allocator_stats: Some(tickflow::metrics::allocator_stats),
    };
    let control = ControlPlane::start(config.http.clone(), view)
        .context("cannot start the control plane ([http])")?;
    println!("tickflow serve: history under {}", display(&args.data));
    println!("  dashboard  {}/", control.url());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let name = runtime.block_on(async { Signals::new()?.next().await.pipe_ok() })?;
    eprintln!("tickflow: {name}: stopping");
    control.shutdown();
    Ok(0)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

trait PipeOk: Sized {
    fn pipe_ok(self) -> anyhow::Result<Self> {
        Ok(self)
    }
}

impl PipeOk for &'static str {}
