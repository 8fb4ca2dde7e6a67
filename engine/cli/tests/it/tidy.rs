//! Tidy checks over the workspace's sources, run under `cargo test` so CI needs nothing extra:
//! module headers, no unbounded queues, a SAFETY comment on every unsafe block.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root")
        .to_path_buf()
}

fn rust_sources(directory: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != "fixtures" && !name.to_string_lossy().starts_with('.') {
                rust_sources(&path, found);
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

fn all_sources() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    let mut paths = Vec::new();
    for member in ["engine", "sdk", "plugins", "benches", "loadtest", "xtask"] {
        rust_sources(&root.join(member), &mut paths);
    }
    assert!(paths.len() > 20, "tidy found too few sources: {paths:?}");
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("sources are UTF-8");
            (path, text)
        })
        .collect()
}

#[test]
fn every_module_says_what_it_owns() {
    let missing: Vec<_> = all_sources()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:?}"
    );
}

#[test]
fn no_unbounded_queues() {
    let forbidden = [
        "unbounded_channel",
        "mpsc::channel()",
        "crossbeam_channel::unbounded",
    ];
    let offenders: Vec<_> = all_sources()
        .into_iter()
        .filter(|(path, _)| !path.ends_with("tidy.rs"))
        .filter(|(_, text)| forbidden.iter().any(|pattern| text.contains(pattern)))
        .map(|(path, _)| path)
        .collect();
    assert!(offenders.is_empty(), "unbounded queues in: {offenders:?}");
}

#[test]
fn every_unsafe_block_has_a_safety_comment() {
    let mut offenders = Vec::new();
    for (path, text) in all_sources() {
        if path.ends_with("tidy.rs") {
            continue; // this file names the patterns it looks for
        }
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let opens_unsafe = code.contains("unsafe {") || code.contains("unsafe impl");
            if !opens_unsafe {
                continue;
            }
            // The SAFETY comment sits on one of the lines just above (or on the same line).
            let window = &lines[index.saturating_sub(6)..=index];
            if !window.iter().any(|l| l.contains("SAFETY")) {
                offenders.push(format!("{}:{}", path.display(), index + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe without a SAFETY comment: {offenders:?}"
    );
}
