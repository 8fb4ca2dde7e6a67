//! `tickflow-load scenario`: every shipped scenario file parses, and the smoke scenario runs end
//! to end on the binaries of this build (the `tickflow` binary and the sink plugins in the same
//! target directory; built here only when missing), passes its limits, and writes
//! its report with every limit's verdict and its plots. No timing is asserted: the smoke limits
//! are wide, and what is checked is that each is measured and judged.

use std::path::{Path, PathBuf};
use std::process::Command;

use tickflow_load::scenario::Scenario;

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("loadtest sits one level below the workspace root")
        .to_path_buf()
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// `<target>/<profile>`: where `tickflow-load` is, and where cargo puts `tickflow` and the
/// plugins' libraries.
fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tickflow-load"))
        .parent()
        .expect("the binary is in <target>/<profile>")
        .to_path_buf()
}

/// Builds whichever of the engine binary and the sink plugins the smoke scenario loads is not in
/// the target directory yet. The workspace's test build already made them in CI (the `tickflow`
/// binary for the engine's tests, the plugins for theirs and the engine's), so nothing is built
/// twice; a build here with fewer packages would resolve other features and rebuild shared
/// dependencies. Locally, `cargo build` refreshes them.
fn build_engine_and_plugins() {
    let profile_dir = profile_dir();
    let library = |name: &str| {
        format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )
    };
    let wanted = [
        ("tickflow", "tickflow".to_owned()),
        ("tickflow-parquet", library("tickflow_parquet")),
        ("tickflow-ws-broadcast", library("tickflow_ws_broadcast")),
        ("tickflow-metrics", library("tickflow_metrics")),
        ("tickflow-test-sink", library("tickflow_test_sink")),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(_, file)| !profile_dir.join(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return;
    }
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args(["build", "--quiet"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace_dir());
    for package in &missing {
        command.args(["-p", package]);
    }
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building {missing:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_shipped_scenario_parses() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).expect("loadtest/scenarios exists") {
        let path = entry.expect("a directory entry").path();
        if path
            .extension()
            .is_some_and(|extension| extension == "toml")
        {
            let scenario = Scenario::load(&path).unwrap_or_else(|error| panic!("{error}"));
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            assert_eq!(
                scenario.name,
                stem,
                "{}: name = the file's name",
                path.display()
            );
            names.push(stem);
        }
    }
    names.sort();
    for wanted in [
        "legacy-failure",
        "parquet-crash",
        "real-rates",
        "reconnect-storm",
        "sink-stall",
        "slow-clients",
        "smoke",
        "soak",
        "throughput",
    ] {
        assert!(
            names.iter().any(|name| name == wanted),
            "{wanted} missing: {names:?}"
        );
    }
    // Each has a README line.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("loadtest/README.md");
    for name in &names {
        assert!(
            readme.contains(&format!("`{name}`")),
            "loadtest/README.md says nothing of `{name}`"
        );
    }
}

#[test]
fn a_bad_scenario_exits_2_naming_the_key() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("scenario-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "name = \"bad\"\n[venues]\nsymbols = 3\n[[phases]]\nname = \"x\"\nduration_s = 1\n[limits]\nring_drop_max = 0\n",
    )
    .expect("scratch is writable");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow-load"))
        .arg("scenario")
        .arg(&file)
        .arg("--report")
        .arg(dir.join("report"))
        .output()
        .expect("tickflow-load runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ring_drop_max"), "{stderr}");
    assert!(!dir.join("report").exists());
}

/// An SVG the plots wrote: an `<svg>` document with drawn lines and text.
fn assert_valid_svg(path: &Path) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    assert!(!text.is_empty(), "{} is empty", path.display());
    let trimmed = text.trim();
    assert!(
        trimmed.starts_with("<svg") || trimmed.starts_with("<?xml"),
        "{} does not start as SVG",
        path.display()
    );
    assert!(
        trimmed.ends_with("</svg>"),
        "{} is not a whole SVG",
        path.display()
    );
    assert!(
        text.contains("<polyline") || text.contains("<path"),
        "{} draws no line",
        path.display()
    );
    assert!(text.contains("<text"), "{} has no labels", path.display());
}

#[test]
fn the_smoke_scenario_passes_and_writes_its_report_and_plots() {
    build_engine_and_plugins();
    let report_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("scenario-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&report_dir);
    let scenario_file = scenarios_dir().join("smoke.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow-load"))
        .arg("scenario")
        .arg(&scenario_file)
        .arg("--report")
        .arg(&report_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("tickflow-load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the smoke scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("verdict: every limit held"), "{stdout}");
    // The live progress line.
    assert!(stderr.contains("[smoke] steady"), "{stderr}");

    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report_dir.join("report.json")).expect("report.json is written"),
    )
    .expect("report.json is JSON");
    assert_eq!(report["all_limits_held"], true);
    assert_eq!(report["interrupted"], false);
    let scenario = Scenario::load(&scenario_file).expect("smoke parses");
    let limits = report["limits"].as_array().expect("limits is a list");
    let limit_table = toml::to_string(
        &toml::from_str::<toml::Table>(&std::fs::read_to_string(&scenario_file).unwrap()).unwrap()
            ["limits"],
    )
    .unwrap();
    let set: Vec<&str> = limit_table
        .lines()
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key.trim()))
        .collect();
    assert!(set.len() >= 10, "{set:?}");
    for key in &set {
        let verdict = limits
            .iter()
            .find(|limit| limit["limit"] == *key)
            .unwrap_or_else(|| panic!("no verdict for {key}: {limits:?}"));
        assert_eq!(verdict["verdict"], "held", "{verdict}");
        assert!(!verdict["observed"].is_null(), "{verdict}");
    }
    assert_eq!(limits.len(), set.len());
    assert_eq!(
        report["phases"].as_array().map(Vec::len),
        Some(scenario.phases.len())
    );
    // Every series is there and bounded.
    for series in [
        "rss_mib",
        "cpu_pct",
        "records_in_per_s",
        "sink.parquet.out_per_s",
        "latency.fast.p99_ms",
        "health_ms",
        "fds",
    ] {
        let points = report["series"][series]["points"]
            .as_array()
            .unwrap_or_else(|| panic!("no series {series}"));
        assert!(
            !points.is_empty() && points.len() <= scenario.series_points_max,
            "{series}"
        );
    }
    assert!(
        report["browsers"][0]["latency_measured"]["count"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert!(report["parquet"]["files"].as_u64().unwrap_or(0) > 0);
    // The summary and the plots.
    let summary = std::fs::read_to_string(report_dir.join("summary.txt")).expect("summary.txt");
    assert!(summary.contains("limits:"), "{summary}");
    let plots = report["plots"].as_array().expect("plots listed");
    assert_eq!(plots.len(), 4, "{plots:?}");
    for plot in plots {
        assert_valid_svg(&report_dir.join(plot.as_str().expect("a file name")));
    }
    let _ = std::fs::remove_dir_all(&report_dir);
}

#[test]
fn sigterm_stops_the_run_and_still_writes_the_report() {
    interrupt_the_run("sigterm", false);
}

/// A terminal's Ctrl-C: SIGINT to the harness's whole process group. The engine child is in a
/// group of its own, so the only signal it gets is the harness's SIGTERM, and it drains and exits
/// cleanly (a second signal would make it exit at once).
#[test]
fn ctrl_c_to_the_process_group_stops_the_engine_once_and_cleanly() {
    interrupt_the_run("ctrl-c", true);
}

/// Runs a light scenario, and once its measured phase is under way sends SIGTERM to the
/// harness (`to_group` false) or SIGINT to its process group (true).
fn interrupt_the_run(label: &str, to_group: bool) {
    build_engine_and_plugins();
    let report_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("scenario-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&report_dir);
    // A light scenario (no sinks, no browsers): what is tested is the stop, not the load.
    std::fs::create_dir_all(&report_dir).expect("scratch dir");
    let scenario_file = report_dir.join("interrupted.toml");
    std::fs::write(
        &scenario_file,
        "name = \"interrupted\"\n[venues]\nvenues = [\"binance\", \"okx\"]\nsymbols = 3\n\
         [[phases]]\nname = \"warm-up\"\nduration_s = 1\nmeasured = false\n\
         [[phases]]\nname = \"steady\"\nduration_s = 600\n\
         [limits]\nring_drops_max = 0\nhealth_failures_max = 0\n",
    )
    .expect("scratch is writable");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickflow-load"));
    command
        .arg("scenario")
        .arg(&scenario_file)
        .arg("--report")
        .arg(&report_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if to_group {
        // Its own group, as a shell gives a foreground job (and the test's group is spared).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
    }
    let mut child = command.spawn().expect("tickflow-load starts");
    // Its stderr, line by line, until the first measured phase is under way.
    let stderr = child.stderr.take().expect("stderr is piped");
    // Bounded; the receiver is dropped once the line came, and later sends just fail.
    let (lines, received) = std::sync::mpsc::sync_channel::<String>(4096);
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line.clone());
            seen.push(line);
        }
        seen
    });
    loop {
        let line = received
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the run reaches its steady phase (its stderr ended or went quiet)");
        if line.starts_with("[interrupted] steady") {
            break;
        }
    }
    drop(received);
    let status = if to_group {
        Command::new("kill")
            .arg("-INT")
            .arg("--")
            .arg(format!("-{}", child.id()))
            .status()
    } else {
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
    }
    .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("tickflow-load exits");
    let stderr_lines = reader.join().expect("the reader ends with the process");
    assert_eq!(exit.code(), Some(1), "{}", stderr_lines.join("\n"));
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report_dir.join("report.json")).expect("report.json is written"),
    )
    .expect("report.json is JSON");
    assert_eq!(report["interrupted"], true);
    assert!(!report["limits"].as_array().expect("limits").is_empty());
    assert_eq!(
        report["engine_exit_code"], 0,
        "the engine got SIGTERM and stopped cleanly"
    );
    // The engine's own lines (echoed by the harness): one signal, the harness's SIGTERM.
    let engine_signals: Vec<&String> = stderr_lines
        .iter()
        .filter(|line| line.contains("stopping feeds"))
        .collect();
    assert_eq!(engine_signals.len(), 1, "{}", stderr_lines.join("\n"));
    assert!(engine_signals[0].contains("SIGTERM"), "{engine_signals:?}");
    let summary = std::fs::read_to_string(report_dir.join("summary.txt")).expect("summary.txt");
    assert!(summary.contains("INTERRUPTED"), "{summary}");
    let _ = std::fs::remove_dir_all(&report_dir);
}

/// A `[search]` raises the simulated rate step by step on the same engine and reports each step
/// and the highest clean one.
#[test]
fn a_rate_search_runs_its_steps_and_reports_them() {
    build_engine_and_plugins();
    let report_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("scenario-search-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&report_dir);
    std::fs::create_dir_all(&report_dir).expect("scratch dir");
    let scenario_file = report_dir.join("search.toml");
    std::fs::write(
        &scenario_file,
        "name = \"search\"\n[venues]\nvenues = [\"binance\", \"okx\"]\nsymbols = 3\nupdates_per_s = 2.0\n\
         [[sinks]]\nkind = \"test\"\nmode = \"noop\"\n\
         [[phases]]\nname = \"warm-up\"\nduration_s = 1\nmeasured = false\n\
         [[phases]]\nname = \"steady\"\nduration_s = 1\n\
         [search]\nstart_per_s = 30.0\nstep_factor = 2.0\nsteps_max = 2\nstep_duration_s = 2\n",
    )
    .expect("scratch is writable");
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow-load"))
        .arg("scenario")
        .arg(&scenario_file)
        .arg("--report")
        .arg(&report_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("tickflow-load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report_dir.join("report.json")).expect("report.json is written"),
    )
    .unwrap_or_else(|error| panic!("report.json is JSON: {error}\n{stdout}\n{stderr}"));
    assert_eq!(report["interrupted"], false, "{stdout}\n{stderr}");
    assert!(report["error"].is_null(), "{}", report["error"]);
    let steps = report["search"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no search in the report: {stdout}"));
    assert!(!steps.is_empty() && steps.len() <= 2, "{steps:?}");
    assert_eq!(steps[0]["offered_per_s"], 30.0);
    if let Some(second) = steps.get(1) {
        assert_eq!(second["offered_per_s"], 60.0);
    }
    for step in steps {
        assert!(
            step["records_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{step}"
        );
    }
    // The steps are phases of their own, outside the measured ones.
    let phases = report["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 2 + steps.len());
    assert_eq!(phases[2]["name"], "search-1");
    assert_eq!(phases[2]["measured"], false);
    assert!(stdout.contains("search: highest clean rate"), "{stdout}");
    let _ = std::fs::remove_dir_all(&report_dir);
}
