//! The engine configs the harness writes: for the issue's universe (1 000 symbols on all eight
//! venues) they hold the connection slots the engine plans, the windows asked for and the sink.
//! This crate may not use the engine's `Config` (the layer table in
//! engine/cli/tests/it/layering.rs), so these tests read the written TOML's keys; the engine's
//! tests can validate the same text with `tickflow::config::Config::from_toml_str`.

use std::path::PathBuf;

use tickflow_load::engine::{EngineOptions, SinkOptions, engine_config_toml};
use tickflow_sim::{SimConfig, SimVenues};

/// `key = value` of `section` (`[engine]`, `[[sinks]]`, ...) in `text`, the value as written.
fn value_of<'a>(text: &'a str, section: &str, key: &str) -> Option<&'a str> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == section;
            continue;
        }
        if in_section
            && let Some((name, value)) = line.split_once('=')
            && name.trim() == key
        {
            return Some(value.trim());
        }
    }
    None
}

fn config_for(symbols: usize, options: &EngineOptions) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(async {
        let sim = SimVenues::start(SimConfig {
            symbols: tickflow_load::symbol_names(symbols),
            ..SimConfig::default()
        })
        .await
        .expect("the simulated venues bind on loopback");
        let text = engine_config_toml(&sim, options);
        sim.shutdown().await;
        text
    })
}

#[test]
fn the_issue_universe_leaves_its_85_slots_to_the_engine_default() {
    let options = EngineOptions {
        buckets: 3600,
        sink: Some(SinkOptions {
            path: PathBuf::from("/opt/tickflow/libtickflow_test_sink.so"),
            config_toml: "mode = \"noop\"".into(),
            ring_capacity_records: None,
        }),
        ..EngineOptions::default()
    };
    let text = config_for(1000, &options);
    // 85 slots fit the engine's default of 128: the key is left out.
    assert_eq!(value_of(&text, "[engine]", "max_connection_slots"), None);
    assert!(text.contains("plan 85 connection slots"), "{text}");
    assert_eq!(value_of(&text, "[engine]", "max_symbols"), Some("1000"));
    assert_eq!(value_of(&text, "[windows]", "buckets"), Some("3600"));
    assert_eq!(value_of(&text, "[windows]", "max_windows"), Some("56000"));
    assert_eq!(value_of(&text, "[feeds]", "channels"), Some("[\"bbo\"]"));
    for venue in tickflow_core::venue::Venue::ALL {
        assert!(
            text.contains(&format!("[feeds.venue.{}]", venue.name())),
            "{venue:?}"
        );
    }
    assert_eq!(
        value_of(&text, "[[sinks]]", "path"),
        Some("\"/opt/tickflow/libtickflow_test_sink.so\"")
    );
    assert_eq!(
        value_of(&text, "[[sinks]]", "policy"),
        Some("\"drop_newest\"")
    );
    assert_eq!(value_of(&text, "[[sinks]]", "ring_capacity_records"), None);
    assert_eq!(value_of(&text, "[sinks.config]", "mode"), Some("\"noop\""));
}

#[test]
fn trades_too_write_the_168_slots_they_plan() {
    let options = EngineOptions {
        trades: true,
        ..EngineOptions::default()
    };
    let text = config_for(1000, &options);
    assert_eq!(
        value_of(&text, "[engine]", "max_connection_slots"),
        Some("168")
    );
    assert_eq!(
        value_of(&text, "[feeds]", "channels"),
        Some("[\"bbo\", \"trades\"]")
    );
    assert_eq!(value_of(&text, "[[sinks]]", "path"), None);
}

#[test]
fn a_requested_slot_count_is_raised_to_what_the_feeds_plan() {
    let storm = EngineOptions {
        max_connection_slots: Some(16),
        ..EngineOptions::default()
    };
    assert_eq!(
        value_of(&config_for(20, &storm), "[engine]", "max_connection_slots"),
        Some("16")
    );
    assert_eq!(
        value_of(
            &config_for(1000, &storm),
            "[engine]",
            "max_connection_slots"
        ),
        Some("85")
    );
}

#[test]
fn the_venues_command_config_for_1000_symbols_is_one_the_engine_accepts() {
    // `tickflow-load venues --symbols 1000 --write-config FILE` writes the default options.
    let text = config_for(1000, &EngineOptions::default());
    let written = value_of(&text, "[engine]", "max_connection_slots")
        .map(|slots| slots.parse::<usize>().expect("a number"));
    let allowed =
        written.unwrap_or(tickflow_core::config::EngineConfig::default().max_connection_slots);
    assert!(allowed >= 85, "{text}");
    assert_eq!(value_of(&text, "[windows]", "buckets"), Some("60"));
}
