//! `tickflow run --config FILE`: the engine from a config file.

pub fn run(config: &std::path::Path) -> anyhow::Result<u8> {
    anyhow::bail!("run is not built yet: {}", config.display())
}
