//! `tickflow demo`: the engine against in-process simulated venues over loopback.

#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

pub fn run(args: DemoArgs) -> anyhow::Result<u8> {
    anyhow::bail!("demo is not built yet: {args:?}")
}
