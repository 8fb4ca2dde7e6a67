//! `HistoryError`: what reading the history can fail with.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("not a date (want YYYY-MM-DD): {input:?}: {reason}")]
    BadDate { input: String, reason: &'static str },
    #[error("history root {0} does not exist or is not a directory")]
    MissingRoot(PathBuf),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unreadable Parquet file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}
