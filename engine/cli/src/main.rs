//! The `tickflow` binary: parses the command line and hands each subcommand to `cli/`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tickflow",
    version,
    about = "Lock-free, low-latency market-data ingest engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the engine with in-process simulated venues for all eight protocols (no network, no config).
    Demo(cli::demo::DemoArgs),
    /// Run the engine from a config file.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Decode captured frames (one per line) to normalized NDJSON records.
    Decode(cli::decode::DecodeArgs),
    /// Show the universe `run` would start with: discovered from the venues' instrument lists (or
    /// the hand-written list), with each venue's spelling and what was left out and why.
    Universe(cli::universe::UniverseArgs),
    /// Serve the control plane's history routes and the dashboard over a Parquet history
    /// directory, with no feeds.
    Serve(cli::control::ServeArgs),
    /// Validate a config file and print its memory budget.
    CheckConfig { file: PathBuf },
    /// Sink plugin tools.
    Plugin {
        #[command(subcommand)]
        command: cli::plugin::PluginCommand,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            // Printing help or a usage error to the terminal can only fail if stdout is gone.
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Demo(args) => cli::demo::run(args),
        Command::Run { config } => cli::run::run(&config),
        Command::Decode(args) => cli::decode::run(args),
        Command::Serve(args) => cli::control::serve(args),
        Command::CheckConfig { file } => cli::check_config::run(&file),
        Command::Universe(args) => cli::universe::run(args),
        Command::Plugin { command } => cli::plugin::run(command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("tickflow: {error:#}");
            ExitCode::from(1)
        }
    }
}
