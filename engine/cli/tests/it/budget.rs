//! Integration tests: the memory budget and `tickflow check-config`.

use std::process::Command;

use tickflow::budget::{MemoryBudget, memory_budget};
use tickflow::config::Config;

fn write_config(text: &str) -> tempfile_path::TempConfig {
    tempfile_path::TempConfig::new(text)
}

/// A config file in the system temp dir, removed on drop.
mod tempfile_path {
    pub struct TempConfig(pub std::path::PathBuf);
    impl TempConfig {
        pub fn new(text: &str) -> TempConfig {
            static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "tickflow-budget-{}-{unique}.toml",
                std::process::id()
            ));
            std::fs::write(&path, text).expect("temp dir is writable");
            TempConfig(path)
        }
    }
    impl Drop for TempConfig {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn budget_follows_resolution_traded_for_memory() {
    let fine = Config::from_toml_str("[engine]\nshards = 2\n").unwrap();
    let coarse = Config::from_toml_str(
        "[engine]\nshards = 2\n[windows]\nbucket_ms = 10000\nbuckets = 360\n",
    )
    .unwrap();
    let fine_budget = memory_budget(&fine);
    let coarse_budget = memory_budget(&coarse);
    let windows = |budget: &MemoryBudget| {
        budget
            .lines
            .iter()
            .find(|line| line.name == "spread windows")
            .unwrap()
            .bytes
    };
    // Same hour, a tenth of the buckets: about a tenth of the window memory.
    assert!(windows(&coarse_budget) * 8 < windows(&fine_budget));
    assert!(fine_budget.total_bytes <= 1 << 30);
    assert_eq!(
        fine_budget.total_bytes,
        fine_budget
            .lines
            .iter()
            .map(|line| line.bytes)
            .sum::<usize>()
    );
}

#[test]
fn check_config_prints_the_budget_and_names_bad_keys() {
    let good = write_config("[engine]\nshards = 2\nmax_symbols = 1400\n");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["check-config"])
        .arg(&good.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("memory budget (worst case)"), "{stdout}");
    assert!(stdout.contains("spread windows"), "{stdout}");

    let bad = write_config("[windows]\nbuckets = 0\n");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["check-config"])
        .arg(&bad.0)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("windows.buckets"), "{stderr}");

    let unknown = write_config("[engine]\nmax_symbolz = 3\n");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["check-config"])
        .arg(&unknown.0)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_symbolz"));

    // A discovered universe must leave the registry headroom for listings added while running.
    let no_headroom = write_config(
        "[engine]\nmax_symbols = 1000\n[universe]\nmax_symbols = 1000\n[feeds.venue.okx]\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["check-config"])
        .arg(&no_headroom.0)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("universe.max_symbols"), "{stderr}");
    // A hand-written list replaces discovery: [universe] is not checked then.
    let listed = write_config(
        "[engine]\nmax_symbols = 1000\n[universe]\nmax_symbols = 1000\n[feeds]\nsymbols = [\"BTC-USDT\"]\n[feeds.venue.okx]\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["check-config"])
        .arg(&listed.0)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the config sizes: the budget without the process base (a constant of the binary, its own
/// line), the part the 1 GiB goal of the full universe is about.
fn config_sized_bytes(budget: &MemoryBudget) -> usize {
    assert!(
        budget.lines.iter().any(|line| line.name == "process base"
            && line.bytes == tickflow::budget::PROCESS_BASE_BYTES),
        "the base is a line of the budget: {budget}"
    );
    budget.total_bytes - tickflow::budget::PROCESS_BASE_BYTES
}

#[test]
fn default_universe_fits_one_gib_at_every_automatic_shard_count() {
    for shards in 1..=tickflow::config::AUTO_SHARDS_MAX {
        let config = Config::from_toml_str(&format!("[engine]\nshards = {shards}\n")).unwrap();
        let budget = memory_budget(&config);
        assert!(
            config_sized_bytes(&budget) <= 1 << 30,
            "{shards} shards: {} B over 1 GiB\n{budget}",
            config_sized_bytes(&budget)
        );
        // Every shard can hold all the windows of the symbols it owns.
        let local = tickflow_core::shard::local_symbol_capacity(1000, shards);
        assert!(tickflow_core::shard::windows_per_shard(56_000, 1000, shards) >= local * 56);
    }
}

/// A config of the full universe: 1 000 symbols on all eight venues, the default channels.
fn universe_config(shards: usize) -> Config {
    let symbols: Vec<String> = (0..1000)
        .map(|index| format!("\"C{index}-USDT\""))
        .collect();
    let mut text = format!(
        "[engine]\nshards = {shards}\n[feeds]\nsymbols = [{}]\n",
        symbols.join(", ")
    );
    for venue in tickflow_core::venue::Venue::ALL {
        text.push_str(&format!("[feeds.venue.{}]\n", venue.name()));
    }
    Config::from_toml_str(&text).expect("the universe config is valid")
}

#[test]
fn the_default_universe_plans_within_the_default_slots_and_fits_one_gib() {
    for shards in [2, tickflow::config::AUTO_SHARDS_MAX] {
        let config = universe_config(shards);
        let registry = tickflow_core::registry::SymbolRegistry::new(config.engine.max_symbols);
        let plans =
            tickflow_feed::plan(&config.feeds, &registry, config.engine.max_connection_slots)
                .expect("the default universe plans within engine.max_connection_slots");
        assert_eq!(plans.len(), 85, "best bid/ask of 1000 symbols on 8 venues");
        assert_eq!(registry.len(), 1000);
        let budget = memory_budget(&config);
        assert!(
            config_sized_bytes(&budget) <= 1 << 30,
            "{shards} shards: {} B over 1 GiB\n{budget}",
            config_sized_bytes(&budget)
        );
        // The feeds' lines count every slot the engine can run and every decoding thread.
        for name in ["receive buffers", "decode scratch", "feed rings"] {
            assert!(
                budget.lines.iter().any(|line| line.name == name),
                "{name}: {budget}"
            );
        }
    }
}

#[test]
fn check_config_refuses_a_universe_that_needs_more_slots_than_it_allows() {
    let symbols: Vec<String> = (0..1000)
        .map(|index| format!("\"C{index}-USDT\""))
        .collect();
    let mut text = format!(
        "[engine]\nmax_connection_slots = 64\n[feeds]\nsymbols = [{}]\n",
        symbols.join(", ")
    );
    for venue in tickflow_core::venue::Venue::ALL {
        text.push_str(&format!("[feeds.venue.{}]\n", venue.name()));
    }
    let too_few = write_config(&text);
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["check-config"])
        .arg(&too_few.0)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("85 connection slots") && stderr.contains("engine.max_connection_slots"),
        "{stderr}"
    );
}
