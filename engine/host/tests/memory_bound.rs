//! ABI 1.2 in the host: a plugin's stated memory bound (`memory_bound`) read from real C plugins
//! compiled from the SDK's fixture, and the older (1.1, 112-byte) descriptor still loading with
//! nothing read beyond its `struct_size`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tickflow_host::loader;
use tickflow_host::{MemoryBound, SinkConfig, SinkHost, SinkMemoryBound, sink_memory_bounds};

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/host sits two levels below the workspace root")
        .to_path_buf()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("host-memory-bound-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

/// Compiles the SDK's fixture plugin with `define` into `<dir>/lib<define>.so`.
fn c_fixture(dir: &Path, define: &str) -> PathBuf {
    let sdk = workspace_dir().join("sdk");
    let output_path = dir.join(format!("lib{}.so", define.to_lowercase()));
    let output = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
        .args(["-std=c11", "-shared", "-fPIC", "-O1", "-Wall", "-Werror"])
        .arg("-I")
        .arg(sdk.join("include"))
        .arg(format!("-D{define}"))
        .arg("-o")
        .arg(&output_path)
        .arg(sdk.join("tests/fixtures/fixture_sink.c"))
        .output()
        .expect("the system C compiler (cc) runs");
    assert!(
        output.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output_path
}

fn sink(name: &str, path: &Path, config: &str) -> SinkConfig {
    let mut sink = SinkConfig::new(name, path);
    sink.config = toml::from_str(config).expect("test config is TOML");
    sink
}

#[test]
fn a_plugin_states_its_bound_from_its_config() {
    let dir = scratch_dir("stated");
    let path = c_fixture(&dir, "FIXTURE_MEMORY_BOUND");
    let plugin = loader::load("bounded", &path).expect("a 1.2 plugin loads");
    assert!(plugin.functions().memory_bound);
    // The fixture claims the header's minor (1.2 or newer: memory_bound exists).
    assert_eq!(plugin.descriptor.abi_minor, tickflow_sdk::abi::ABI_MINOR);
    assert_eq!(
        plugin.memory_bound("bound_bytes = 12345678\n"),
        MemoryBound::Stated(12_345_678)
    );
    assert_eq!(plugin.memory_bound("other = 1\n"), MemoryBound::NotStated);
    assert_eq!(
        plugin.memory_bound("bound_bytes = lots\n"),
        MemoryBound::Failed(tickflow_sdk::abi::STATUS_INVALID_CONFIG)
    );

    // Through the sinks' own config tables, one answer per sink in order.
    let bounds = sink_memory_bounds(&[
        sink("a", &path, "bound_bytes = 67108864"),
        sink("b", &path, ""),
        sink("c", &dir.join("libmissing.so"), ""),
    ]);
    assert_eq!(bounds.len(), 3);
    assert_eq!(
        bounds[0],
        (
            "a".to_string(),
            SinkMemoryBound::Plugin(MemoryBound::Stated(64 << 20))
        )
    );
    assert_eq!(bounds[0].1.to_string(), "64.0 MiB (stated by the plugin)");
    assert_eq!(bounds[1].1, SinkMemoryBound::Plugin(MemoryBound::NotStated));
    assert!(bounds[1].1.to_string().starts_with("not stated"));
    assert!(matches!(bounds[2].1, SinkMemoryBound::Refused(_)));
    assert!(bounds[2].1.to_string().starts_with("not stated (refused: "));

    // The host starts it like any plugin.
    let host = SinkHost::start(&[sink("a", &path, "bound_bytes = 1024")], 1, None)
        .expect("the bounded fixture starts");
    assert_eq!(host.sink_count(), 1);
    host.shutdown();
}

#[test]
fn an_abi_1_1_plugin_with_the_shorter_descriptor_still_loads() {
    let dir = scratch_dir("abi-1-1");
    // Minor 1, struct_size 112: its table has a memory_bound entry past struct_size, which the
    // host must not read (it would state 1 MiB here).
    let path = c_fixture(&dir, "FIXTURE_ABI_1_1");
    let plugin = loader::load("old", &path).expect("a 1.1 plugin loads");
    assert_eq!(plugin.descriptor.abi_minor, 1);
    assert_eq!(
        plugin.descriptor.struct_size,
        tickflow_sdk::abi::DESCRIPTOR_SIZE_V1_0
    );
    assert!(!plugin.functions().memory_bound);
    assert_eq!(
        plugin.memory_bound("bound_bytes = 1048576\n"),
        MemoryBound::NotStated
    );
    let host = SinkHost::start(&[sink("old", &path, "bound_bytes = 1048576")], 2, None)
        .expect("a 1.1 plugin starts");
    assert_eq!(host.sink_count(), 1);
    let stats = host.shutdown();
    assert_eq!(stats.len(), 1);
    assert!(!stats[0].disabled);
}

#[test]
fn a_plugin_claiming_1_2_with_the_1_1_size_is_refused() {
    let dir = scratch_dir("short-for-minor");
    let path = c_fixture(&dir, "FIXTURE_SHORT_FOR_MINOR");
    let refusal = loader::load("short", &path).expect_err("struct_size below 1.2's is refused");
    let message = refusal.to_string();
    assert!(
        message.contains("struct_size is 112 bytes")
            && message.contains(&format!(
                "at least 120 bytes for ABI 1.{}",
                tickflow_sdk::abi::ABI_MINOR
            )),
        "{message}"
    );
}

#[test]
fn a_newer_minor_than_the_engine_is_refused() {
    let dir = scratch_dir("newer-minor");
    let path = c_fixture(&dir, "FIXTURE_NEWER_MINOR");
    let message = loader::load("newer", &path)
        .expect_err("a newer minor is refused")
        .to_string();
    let expected = format!(
        "abi_minor is {}, the engine expects at most {}",
        tickflow_sdk::abi::ABI_MINOR + 1,
        tickflow_sdk::abi::ABI_MINOR
    );
    assert!(message.contains(&expected), "{message}");
}
