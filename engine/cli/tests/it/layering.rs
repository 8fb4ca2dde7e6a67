//! Tidy: the crate layering of ARCHITECTURE.md, read from `cargo metadata` so it cannot drift from
//! the manifests. Every internal edge must be in the layer table; core and decode must not reach an
//! async runtime, a network, TLS or dynamic-loading crate through any chain of normal
//! dependencies; only the binary, tests and `tickflow-load` may use the simulated venues; plugins
//! depend on the SDK (and shared formats) only; core and decode sources open no sockets or files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Which workspace crates each crate may use as a normal (or build) dependency. A crate that is
/// not listed fails the test: a new crate must take its place in the table.
const LAYERS: &[(&str, &[&str])] = &[
    ("tickflow-sdk", &[]),
    ("tickflow-core", &["tickflow-sdk"]),
    ("tickflow-decode", &["tickflow-core"]),
    ("tickflow-feed", &["tickflow-core", "tickflow-decode"]),
    ("tickflow-host", &["tickflow-core", "tickflow-sdk"]),
    ("tickflow-sim", &["tickflow-core", "tickflow-feed"]),
    ("tickflow-universe", &["tickflow-core", "tickflow-feed"]),
    (
        "tickflow",
        &[
            "tickflow-sdk",
            "tickflow-core",
            "tickflow-decode",
            "tickflow-feed",
            "tickflow-universe",
            "tickflow-host",
            "tickflow-sim",
            "tickflow-history",
            "tickflow-control",
            "tickflow-source-nats",
            "tickflow-formats",
        ],
    ),
    (
        "tickflow-load",
        &[
            "tickflow-sdk",
            "tickflow-core",
            "tickflow-sim",
            "tickflow-formats",
            "tickflow-history",
        ],
    ),
    (
        "tickflow-benches",
        &[
            "tickflow-sdk",
            "tickflow-core",
            "tickflow-decode",
            "tickflow-host",
            "tickflow-sim",
        ],
    ),
    (
        "tickflow-fuzz",
        &[
            "tickflow-sdk",
            "tickflow-core",
            "tickflow-decode",
            "tickflow-feed",
        ],
    ),
    ("tickflow-example-stdout", &["tickflow-sdk"]),
    ("tickflow-test-sink", &["tickflow-sdk"]),
    ("tickflow-formats", &["tickflow-sdk"]),
    ("tickflow-history", &["tickflow-formats"]),
    (
        "tickflow-control",
        &[
            "tickflow-core",
            "tickflow-feed",
            "tickflow-host",
            "tickflow-history",
        ],
    ),
    ("tickflow-parquet", &["tickflow-sdk", "tickflow-formats"]),
    ("tickflow-ws-broadcast", &["tickflow-sdk"]),
    ("tickflow-metrics", &["tickflow-sdk"]),
    ("tickflow-nats", &["tickflow-sdk", "tickflow-formats"]),
    (
        "tickflow-source-nats",
        &["tickflow-core", "tickflow-formats"],
    ),
];

/// Crates below the line: they may not reach any of `BANNED_BELOW_THE_LINE`.
const PURE_CRATES: &[&str] = &[
    "tickflow-sdk",
    "tickflow-core",
    "tickflow-decode",
    "tickflow-formats",
];

/// Async runtimes, sockets and HTTP, TLS, and dynamic loading.
const BANNED_BELOW_THE_LINE: &[&str] = &[
    "tokio",
    "tokio-util",
    "tokio-rustls",
    "mio",
    "socket2",
    "async-std",
    "smol",
    "futures-executor",
    "hyper",
    "hyper-util",
    "h2",
    "fastwebsockets",
    "rustls",
    "webpki-roots",
    "ring",
    "libloading",
    "async-nats",
];

/// Besides a crate's own layer, what its tests (dev-dependencies) may use.
const TEST_ONLY_ALLOWED: &[&str] = &["tickflow-sim", "tickflow-load"];

/// Per crate, what else its tests may use: the history reader's tests write real history
/// through the Parquet sink (driven in process through the SDK).
const TEST_ONLY_EDGES: &[(&str, &[&str])] =
    &[("tickflow-history", &["tickflow-sdk", "tickflow-parquet"])];

fn test_only_edge(from: &str, to: &str) -> bool {
    TEST_ONLY_EDGES
        .iter()
        .any(|(crate_name, uses)| *crate_name == from && uses.contains(&to))
}

/// What may depend on the simulated venues at all (the demo, the harness, benches).
const SIM_USERS: &[&str] = &["tickflow", "tickflow-load", "tickflow-benches"];

struct Metadata {
    /// Package id → name.
    names: BTreeMap<String, String>,
    /// Names of the workspace members.
    members: BTreeSet<String>,
    /// Name → (dependency name, is a normal or build dependency, is a dev dependency).
    edges: BTreeMap<String, Vec<(String, bool, bool)>>,
    /// Package id → ids of its normal and build dependencies (features unified).
    normal_ids: BTreeMap<String, Vec<String>>,
    /// Name → package id, for workspace members.
    member_ids: BTreeMap<String, String>,
}

fn metadata() -> Metadata {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // The host's platform only: the full graph names Windows-only crates that a Linux build never
    // downloads, and the test must not need the network.
    let rustc_version = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let host = String::from_utf8_lossy(&rustc_version.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(workspace)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let mut names = BTreeMap::new();
    for package in json["packages"].as_array().expect("packages") {
        let id = package["id"].as_str().expect("id").to_string();
        let name = package["name"].as_str().expect("name").to_string();
        names.insert(id, name);
    }
    let mut members = BTreeSet::new();
    let mut member_ids = BTreeMap::new();
    for id in json["workspace_members"].as_array().expect("members") {
        let id = id.as_str().expect("member id").to_string();
        let name = names[&id].clone();
        members.insert(name.clone());
        member_ids.insert(name, id);
    }
    let mut edges: BTreeMap<String, Vec<(String, bool, bool)>> = BTreeMap::new();
    let mut normal_ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in json["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let id = node["id"].as_str().expect("node id").to_string();
        let from = names[&id].clone();
        for dep in node["deps"].as_array().expect("deps") {
            let dep_id = dep["pkg"].as_str().expect("dep pkg").to_string();
            let kinds: Vec<&str> = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .map(|kind| kind["kind"].as_str().unwrap_or("normal"))
                .collect();
            let normal = kinds
                .iter()
                .any(|kind| *kind == "normal" || *kind == "build");
            let dev = kinds.contains(&"dev");
            if normal {
                normal_ids
                    .entry(id.clone())
                    .or_default()
                    .push(dep_id.clone());
            }
            if members.contains(&from) {
                edges
                    .entry(from.clone())
                    .or_default()
                    .push((names[&dep_id].clone(), normal, dev));
            }
        }
    }
    Metadata {
        names,
        members,
        edges,
        normal_ids,
        member_ids,
    }
}

fn allowed(name: &str) -> Option<&'static [&'static str]> {
    LAYERS
        .iter()
        .find(|(crate_name, _)| *crate_name == name)
        .map(|(_, uses)| *uses)
}

#[test]
fn every_workspace_crate_has_a_layer() {
    let metadata = metadata();
    let missing: Vec<&String> = metadata
        .members
        .iter()
        .filter(|name| allowed(name).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "workspace crates without a row in the layer table: {missing:?}"
    );
    assert!(
        metadata.members.len() >= 9,
        "cargo metadata listed too few members: {:?}",
        metadata.members
    );
}

#[test]
fn internal_dependencies_follow_the_layer_table() {
    let metadata = metadata();
    let mut offenders = Vec::new();
    for (from, deps) in &metadata.edges {
        let uses = allowed(from).unwrap_or(&[]);
        for (to, normal, dev) in deps {
            if !metadata.members.contains(to) {
                continue;
            }
            if *normal && !uses.contains(&to.as_str()) {
                offenders.push(format!("{from} → {to}"));
            }
            if *dev
                && !uses.contains(&to.as_str())
                && !TEST_ONLY_ALLOWED.contains(&to.as_str())
                && !test_only_edge(from, to)
            {
                offenders.push(format!("{from} → {to} (dev)"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "dependencies outside the layer table (ARCHITECTURE.md): {offenders:?}"
    );
}

#[test]
fn only_the_binary_tests_and_the_harness_use_the_simulated_venues() {
    let metadata = metadata();
    let offenders: Vec<String> = metadata
        .edges
        .iter()
        .flat_map(|(from, deps)| {
            deps.iter()
                .filter(|(to, normal, _)| to == "tickflow-sim" && *normal)
                .map(move |_| from.clone())
        })
        .filter(|from| !SIM_USERS.contains(&from.as_str()))
        .collect();
    assert!(
        offenders.is_empty(),
        "normal dependencies on tickflow-sim outside {SIM_USERS:?}: {offenders:?}"
    );
}

#[test]
fn pure_crates_reach_no_runtime_network_tls_or_loader() {
    let metadata = metadata();
    for pure in PURE_CRATES {
        let root = &metadata.member_ids[*pure];
        // Every chain of normal dependencies from `pure`, remembering how each crate was reached.
        let mut reached_from: BTreeMap<String, String> = BTreeMap::new();
        let mut stack = vec![root.clone()];
        while let Some(id) = stack.pop() {
            for dep in metadata.normal_ids.get(&id).into_iter().flatten() {
                if !reached_from.contains_key(dep) && dep != root {
                    reached_from.insert(dep.clone(), id.clone());
                    stack.push(dep.clone());
                }
            }
        }
        let banned: Vec<String> = reached_from
            .iter()
            .filter(|(id, _)| BANNED_BELOW_THE_LINE.contains(&metadata.names[*id].as_str()))
            .map(|(id, via)| format!("{} (via {})", metadata.names[id], metadata.names[via]))
            .collect();
        assert!(
            banned.is_empty(),
            "{pure} must not reach an async runtime, network, TLS or dynamic loading: {banned:?}"
        );
        assert!(
            !reached_from.is_empty() || *pure == "tickflow-sdk",
            "{pure} reaches no crate at all: is the graph read right?"
        );
    }
}

#[test]
fn the_binary_reaches_what_the_pure_crates_may_not() {
    // The check above must be able to fail: the same walk from the binary finds tokio.
    let metadata = metadata();
    let root = &metadata.member_ids["tickflow"];
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(id) = stack.pop() {
        for dep in metadata.normal_ids.get(&id).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    let names: BTreeSet<&str> = seen.iter().map(|id| metadata.names[id].as_str()).collect();
    for expected in ["tokio", "rustls", "libloading", "tickflow-core"] {
        assert!(
            names.contains(expected),
            "the binary should reach {expected}"
        );
    }
}

#[test]
fn core_and_decode_sources_open_no_sockets_or_files() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root")
        .to_path_buf();
    let forbidden = ["std::net", "std::fs", "std::process", "tokio::", "File::"];
    let mut offenders = Vec::new();
    for crate_dir in ["engine/core/src", "engine/decode/src"] {
        let mut stack = vec![workspace.join(crate_dir)];
        let mut files = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)
                .expect("source dir is listable")
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                files += 1;
                let text = std::fs::read_to_string(&path).expect("sources are UTF-8");
                for (number, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if forbidden.iter().any(|pattern| code.contains(pattern)) {
                        offenders.push(format!(
                            "{}:{}: {}",
                            path.display(),
                            number + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
        assert!(files > 3, "found too few sources under {crate_dir}");
    }
    assert!(
        offenders.is_empty(),
        "I/O in a crate that must do none: {offenders:?}"
    );
}
