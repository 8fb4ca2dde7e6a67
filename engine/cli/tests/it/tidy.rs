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
    for member in [
        "engine", "sdk", "plugins", "benches", "loadtest", "fuzz", "xtask",
    ] {
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

/// The module path of `file` inside the crate whose sources are under `src`: `shard::window` for
/// `src/shard/window.rs`, `shard` for `src/shard/mod.rs`, the empty path for `src/lib.rs`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("file is under src");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Sibling-or-cousin modules `text` imports through `crate::` or `super::` paths (outside its
/// tests), resolved against `modules`. A module naming its own ancestor or descendant is the
/// normal parent/child relation, not a circle, and is left out.
fn imported_modules(
    own: &[String],
    text: &str,
    modules: &std::collections::BTreeSet<Vec<String>>,
) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut found = Vec::new();
    for (marker, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            let mut parent = own.to_vec();
            parent.pop();
            parent
        }),
    ] {
        for (start, _) in code.match_indices(marker) {
            if code[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[start + marker.len()..];
            let segments: Vec<String> = rest
                .split("::")
                .map(|segment| {
                    segment
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|segment| !segment.is_empty())
                .collect();
            // The longest prefix that names a module.
            let mut target = None;
            for length in (1..=segments.len()).rev() {
                let mut candidate = base.clone();
                candidate.extend_from_slice(&segments[..length]);
                if modules.contains(&candidate) {
                    target = Some(candidate);
                    break;
                }
            }
            if let Some(target) = target {
                let related = target.starts_with(own) || own.starts_with(&target);
                if !related {
                    found.push(target);
                }
            }
        }
    }
    found
}

#[test]
fn no_import_circles_between_modules() {
    let root = workspace_root();
    let mut crates_checked = 0;
    for crate_dir in [
        "engine/core",
        "engine/decode",
        "engine/feed",
        "engine/host",
        "engine/sim",
        "engine/cli",
    ] {
        let src = root.join(crate_dir).join("src");
        let mut files = Vec::new();
        rust_sources(&src, &mut files);
        let modules: std::collections::BTreeSet<Vec<String>> =
            files.iter().map(|file| module_path(&src, file)).collect();
        let mut edges: std::collections::BTreeMap<Vec<String>, Vec<Vec<String>>> =
            Default::default();
        for file in &files {
            let own = module_path(&src, file);
            let text = std::fs::read_to_string(file).expect("sources are UTF-8");
            edges.insert(own.clone(), imported_modules(&own, &text, &modules));
        }
        // A circle: some module reaches itself through imports of modules that are not its
        // ancestors or descendants.
        for start in edges.keys() {
            let mut stack: Vec<Vec<Vec<String>>> = vec![vec![start.clone()]];
            let mut seen = std::collections::BTreeSet::new();
            while let Some(chain) = stack.pop() {
                let last = chain.last().expect("chains are never empty");
                for next in edges.get(last).into_iter().flatten() {
                    if next == start {
                        let names: Vec<String> =
                            chain.iter().map(|module| module.join("::")).collect();
                        panic!(
                            "import circle in {crate_dir}: {} → {}",
                            names.join(" → "),
                            start.join("::")
                        );
                    }
                    if seen.insert(next.clone()) {
                        let mut longer = chain.clone();
                        longer.push(next.clone());
                        stack.push(longer);
                    }
                }
            }
        }
        crates_checked += 1;
    }
    assert_eq!(crates_checked, 6);
}

#[test]
fn the_circle_check_finds_a_circle() {
    let modules: std::collections::BTreeSet<Vec<String>> =
        [vec![], vec!["config".to_string()], vec!["lane".to_string()]]
            .into_iter()
            .collect();
    let config = vec!["config".to_string()];
    let lane = vec!["lane".to_string()];
    assert_eq!(
        imported_modules(&config, "use super::lane::ITEM;\n", &modules),
        vec![lane.clone()]
    );
    assert_eq!(
        imported_modules(&lane, "use crate::config::{SinkConfig};\n", &modules),
        vec![config.clone()]
    );
    // Parent and child are not a circle; imports inside tests do not count.
    assert!(imported_modules(&lane, "use crate::Thing;\n", &modules).is_empty());
    assert!(
        imported_modules(
            &lane,
            "#[cfg(test)]\nmod tests { use crate::config::X; }",
            &modules
        )
        .is_empty()
    );
}
