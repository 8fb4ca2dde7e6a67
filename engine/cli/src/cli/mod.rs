//! Subcommands of the `tickflow` binary: argument handling and printing only; the work is in the
//! library. Each `run` returns the process exit code.

pub mod check_config;
pub mod control;
pub mod decode;
pub mod demo;
pub mod plugin;
pub mod process;
pub mod run;
pub mod universe;
