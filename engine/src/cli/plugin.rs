//! `tickflow plugin ...`: inspect sink plugins.

#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// Print a plugin's descriptor, or the exact reason the engine would refuse it.
    Inspect { path: std::path::PathBuf },
}

pub fn run(command: PluginCommand) -> anyhow::Result<u8> {
    anyhow::bail!("plugin tools are not built yet: {command:?}")
}
