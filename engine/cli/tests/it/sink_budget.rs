//! The sinks' stated memory (ABI 1.2 `memory_bound`) in the engine's budget: `tickflow
//! check-config` and the library's `memory_budget` show one line per sink, stated or not, and the
//! total counts stated bounds. Uses the real test-sink plugin (its `memory_bound_bytes` key).
//! Also the helpers that build the workspace's plugin cdylibs for these tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `<target>/<profile>` of this test binary (`<target>/<profile>/deps/it-…`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds the plugin `package` (cargo is a no-op when it is fresh) with this test binary's
/// profile and returns its shared library `lib<lib_name>.so`.
pub fn built_plugin(package: &str, lib_name: &str) -> PathBuf {
    // One cargo at a time from this process (they would queue on cargo's lock anyway).
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|poison| poison.into_inner());
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args(["build", "--quiet", "--lib", "-p", package])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    profile_dir.join(format!(
        "{}{lib_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sink-budget-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

fn two_test_sinks(plugin: &Path, bound: &str) -> String {
    format!(
        "[[sinks]]\nname = \"bounded\"\npath = {path:?}\n[sinks.config]\nmemory_bound_bytes = {bound}\n\n\
         [[sinks]]\nname = \"unbounded\"\npath = {path:?}\n",
        path = plugin.display().to_string()
    )
}

#[test]
fn check_config_prints_each_sinks_stated_bound_and_counts_it() {
    let plugin = built_plugin("tickflow-test-sink", "tickflow_test_sink");
    let dir = scratch_dir("check-config");
    let config_path = dir.join("tickflow.toml");
    std::fs::write(&config_path, two_test_sinks(&plugin, "50331648")).expect("scratch is writable");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .arg("check-config")
        .arg(&config_path)
        .output()
        .expect("tickflow runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("sink bounded: 48.0 MiB (stated by the plugin)"),
        "{stdout}"
    );
    assert!(stdout.contains("sink unbounded: not stated"), "{stdout}");

    // The library's budget: the same lines, and the total includes the stated bound.
    let config = tickflow::config::Config::from_file(&config_path).expect("the config is valid");
    let budget = tickflow::budget::memory_budget(&config);
    let plugin_lines: Vec<_> = budget
        .lines
        .iter()
        .filter(|line| line.name == tickflow::budget::SINK_PLUGIN_LINE)
        .collect();
    assert_eq!(plugin_lines.len(), 2, "{budget}");
    assert_eq!(plugin_lines[0].bytes, 48 << 20);
    assert_eq!(plugin_lines[1].bytes, 0);
    assert_eq!(
        budget.total_bytes,
        budget.lines.iter().map(|line| line.bytes).sum::<usize>()
    );
    let mut unbounded_config = config.clone();
    unbounded_config.sinks[0]
        .config
        .remove("memory_bound_bytes");
    let unbounded = tickflow::budget::memory_budget(&unbounded_config);
    assert_eq!(budget.total_bytes - unbounded.total_bytes, 48 << 20);
    // The budget check-config printed is this one.
    let total_line = format!(
        "memory budget (worst case): {:.1} MiB",
        budget.total_bytes as f64 / (1024.0 * 1024.0)
    );
    assert!(stdout.contains(&total_line), "{stdout}");
}

#[test]
fn check_config_fails_when_a_plugin_refuses_its_config() {
    let plugin = built_plugin("tickflow-test-sink", "tickflow_test_sink");
    let dir = scratch_dir("refused-config");
    let config_path = dir.join("tickflow.toml");
    std::fs::write(&config_path, two_test_sinks(&plugin, "\"lots\"")).expect("scratch is writable");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .arg("check-config")
        .arg(&config_path)
        .output()
        .expect("tickflow runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sinks[0].config") && stderr.contains("invalid_config"),
        "{stderr}"
    );
}
