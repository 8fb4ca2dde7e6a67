//! Tidy: the SDK depends on nothing of the engine, and no plugin depends on anything of the
//! workspace but the SDK (and the shared formats crate, `tickflow-formats`).

use std::path::Path;

/// Workspace crates a plugin or the SDK must never depend on.
const ENGINE_CRATES: &[&str] = &["tickflow", "tickflow-load", "tickflow-benches"];

/// Every dependency name in a Cargo.toml (all dependency tables, target-specific ones too).
fn dependency_names(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("manifest is readable");
    let value: toml::Table = toml::from_str(&text).expect("manifest is valid TOML");
    let mut names = Vec::new();
    let mut collect = |table: &toml::Table| {
        for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(dependencies) = table.get(key).and_then(|value| value.as_table()) {
                for (name, spec) in dependencies {
                    // `package = "..."` renames count under their real name.
                    let real = spec
                        .get("package")
                        .and_then(|package| package.as_str())
                        .unwrap_or(name);
                    names.push(real.to_string());
                    if let Some(path) = spec.get("path").and_then(|path| path.as_str()) {
                        names.push(format!("path:{path}"));
                    }
                }
            }
        }
    };
    collect(&value);
    if let Some(targets) = value.get("target").and_then(|targets| targets.as_table()) {
        for target in targets.values().filter_map(|target| target.as_table()) {
            collect(target);
        }
    }
    names
}

fn engine_dependencies(manifest: &Path) -> Vec<String> {
    dependency_names(manifest)
        .into_iter()
        .filter(|name| {
            ENGINE_CRATES.contains(&name.as_str())
                || (name.starts_with("path:")
                    && !name.trim_end_matches('/').ends_with("sdk")
                    && !name.trim_end_matches('/').ends_with("formats"))
                || (name.starts_with("tickflow")
                    && name != "tickflow-sdk"
                    && name != "tickflow-formats")
        })
        .collect()
}

#[test]
fn sdk_depends_on_nothing_of_the_engine() {
    let manifest = crate::sdk_dir().join("Cargo.toml");
    let names = dependency_names(&manifest);
    let forbidden: Vec<&String> = names
        .iter()
        .filter(|name| name.starts_with("tickflow") || name.starts_with("path:"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "sdk/Cargo.toml depends on {forbidden:?}"
    );
}

#[test]
fn plugins_depend_on_the_sdk_only() {
    let plugins_dir = crate::sdk_dir().join("../plugins");
    let mut checked = 0;
    for entry in std::fs::read_dir(&plugins_dir).expect("plugins/ exists") {
        let manifest = entry
            .expect("plugins/ is listable")
            .path()
            .join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let forbidden = engine_dependencies(&manifest);
        assert!(
            forbidden.is_empty(),
            "{} depends on {forbidden:?}; plugins may depend on tickflow-sdk only",
            manifest.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no plugin manifests found under {}",
        plugins_dir.display()
    );
}
