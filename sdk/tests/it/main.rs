//! The SDK's tests: the C header against the Rust definitions (compiled with the system C
//! compiler), the `export_sink!` glue (panics caught, config parsed), and the tidy check that no
//! plugin depends on the engine.

mod export;
mod header;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SDK crate's directory.
pub fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh scratch directory under the target dir (kept for inspection after a failure).
pub fn scratch_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("sdk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

/// Runs the system C compiler; panics with its output on failure.
pub fn cc(args: &[&std::ffi::OsStr], cwd: &Path) {
    let output = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the system C compiler (cc) runs");
    assert!(
        output.status.success(),
        "cc {:?} failed:\n{}",
        args,
        String::from_utf8_lossy(&output.stderr)
    );
}
