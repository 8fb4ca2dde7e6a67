//! `tickflow decode`: frames in (one per line), normalized NDJSON records out.

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// Venue whose protocol the frames speak.
    #[arg(long)]
    pub venue: String,
    /// Each line is base64 (binary frames: HTX gzip, MEXC protobuf).
    #[arg(long)]
    pub base64: bool,
    /// Decode without writing records; print one summary line.
    #[arg(long)]
    pub stats: bool,
    /// Input file; stdin when absent.
    pub file: Option<std::path::PathBuf>,
}

pub fn run(args: DecodeArgs) -> anyhow::Result<u8> {
    anyhow::bail!("decode is not built yet: {args:?}")
}
