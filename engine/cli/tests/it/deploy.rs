//! The production deployment (docs/deploy.md): `config/production.toml` passes the real
//! `tickflow check-config` with the real plugins, and the systemd unit
//! `config/systemd/tickflow.service` is checked twice: by `systemd-analyze verify` (Debian's
//! systemd, installed by .ci/run) and by the parser here (sections, known keys, the ExecStart
//! pattern, every hardening key, and MemoryMax / LimitNOFILE / TimeoutStopSec against the formulas of
//! docs/deploy.md computed from the production config and its budget).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::sink_budget::built_plugin;

/// Where docs/deploy.md installs the plugins (the test points the config at the built ones).
const INSTALLED_PLUGIN_DIR: &str = "/usr/local/lib/tickflow/";
/// Where docs/deploy.md installs the binary.
const INSTALLED_BINARY: &str = "/usr/local/bin/tickflow";
/// The data directory: the only writable path of the unit.
const DATA_DIR: &str = "/var/lib/tickflow";
/// The control plane's default `[http] max_connections` (counted in LimitNOFILE when the
/// production config leaves it at its default).
const HTTP_MAX_CONNECTIONS_DEFAULT: u64 = 64;
/// The metrics sink's default `max_connections`.
const METRICS_MAX_CONNECTIONS_DEFAULT: u64 = 16;
/// The ws-broadcast sink's default `clients_max`.
const WS_CLIENTS_MAX_DEFAULT: u64 = 1024;
/// The host's default `shutdown_deadline_ms` of a sink.
const SINK_SHUTDOWN_DEADLINE_MS_DEFAULT: u64 = 5000;

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("engine/cli sits two levels below the workspace root")
        .to_path_buf()
}

fn read_repo_file(relative: &str) -> String {
    let path = workspace_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir is creatable");
    dir
}

// ---------- the formulas of docs/deploy.md ("Sizing") ----------

/// MemoryMax in MiB: 1.25 × the budget + 256 MiB, rounded up to a multiple of 64 MiB.
fn memory_max_mib_for(budget_mib: f64) -> u64 {
    let raw = (budget_mib * 1.25 + 256.0).ceil() as u64;
    raw.div_ceil(64) * 64
}

/// Files the engine may hold open at once: two sockets per connection slot (a rotation holds
/// the replacement beside it), one per broadcast client, scrape and control-plane connection,
/// and 1 024 for everything else (Parquet files, libraries, epoll, DNS, discovery).
fn open_files_needed(production: &toml::Value) -> u64 {
    let slots = production["engine"]["max_connection_slots"]
        .as_integer()
        .expect("engine.max_connection_slots is set") as u64;
    let sink_key = |name: &str, key: &str, default: u64| {
        sinks(production)
            .iter()
            .find(|sink| sink["name"].as_str() == Some(name))
            .and_then(|sink| sink.get("config")?.get(key)?.as_integer())
            .map_or(default, |value| value as u64)
    };
    let http = production
        .get("http")
        .and_then(|http| http.get("max_connections")?.as_integer())
        .map_or(HTTP_MAX_CONNECTIONS_DEFAULT, |value| value as u64);
    2 * slots
        + sink_key("live", "clients_max", WS_CLIENTS_MAX_DEFAULT)
        + sink_key(
            "metrics",
            "max_connections",
            METRICS_MAX_CONNECTIONS_DEFAULT,
        )
        + http
        + 1024
}

/// The longest a SIGTERM shutdown may take: the feeds' deadline twice (the connections, then
/// the runtime), the slowest sink's deadline (they stop in parallel), and 10 s for the rest.
fn stop_seconds_needed(production: &toml::Value) -> u64 {
    let feeds_ms = production["feeds"]["shutdown_deadline_ms"]
        .as_integer()
        .unwrap_or(5000) as u64;
    let sinks_ms = sinks(production)
        .iter()
        .map(|sink| {
            sink.get("shutdown_deadline_ms")
                .and_then(toml::Value::as_integer)
                .map_or(SINK_SHUTDOWN_DEADLINE_MS_DEFAULT, |value| value as u64)
        })
        .max()
        .unwrap_or(0);
    (2 * feeds_ms + sinks_ms).div_ceil(1000) + 10
}

fn sinks(production: &toml::Value) -> Vec<toml::Value> {
    production
        .get("sinks")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default()
}

// ---------- the unit file, parsed ----------

/// Keys of each section the unit may use (a typo is an unknown key, which systemd only warns
/// about and ignores: a silently missing hardening line).
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "Unit",
        &[
            "Description",
            "Documentation",
            "Wants",
            "Requires",
            "After",
            "Before",
            "StartLimitIntervalSec",
            "StartLimitBurst",
        ],
    ),
    (
        "Service",
        &[
            "Type",
            "User",
            "Group",
            "DynamicUser",
            "ExecStartPre",
            "ExecStart",
            "ExecReload",
            "Environment",
            "EnvironmentFile",
            "Restart",
            "RestartSec",
            "RestartPreventExitStatus",
            "KillSignal",
            "KillMode",
            "TimeoutStopSec",
            "TimeoutStartSec",
            "MemoryMax",
            "MemoryHigh",
            "MemorySwapMax",
            "LimitNOFILE",
            "LimitCORE",
            "StateDirectory",
            "StateDirectoryMode",
            "LogsDirectory",
            "ReadWritePaths",
            "ReadOnlyPaths",
            "WorkingDirectory",
            "UMask",
            "NoNewPrivileges",
            "CapabilityBoundingSet",
            "AmbientCapabilities",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "DevicePolicy",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "ProtectControlGroups",
            "ProtectClock",
            "ProtectHostname",
            "ProtectProc",
            "RestrictAddressFamilies",
            "RestrictNamespaces",
            "RestrictRealtime",
            "RestrictSUIDSGID",
            "LockPersonality",
            "MemoryDenyWriteExecute",
            "RemoveIPC",
            "KeyringMode",
            "SystemCallArchitectures",
            "SystemCallFilter",
            "SystemCallErrorNumber",
            "LoadCredential",
            "StandardOutput",
            "StandardError",
            "SyslogIdentifier",
            "CPUAffinity",
            "Nice",
        ],
    ),
    ("Install", &["WantedBy", "RequiredBy", "Alias"]),
];

/// Every `Key=value` of a unit per section, in order (a key may repeat: `SystemCallFilter`).
type Unit = BTreeMap<String, Vec<(String, String)>>;

/// Parses a unit file; a line that is neither a comment, a section, nor `Key=value` is a problem.
fn parse_unit(text: &str) -> Result<Unit, Vec<String>> {
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.ends_with('\\') {
            problems.push(format!(
                "line {}: continuation lines are not used here",
                index + 1
            ));
            continue;
        }
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        match (line.split_once('='), &section) {
            (Some((key, value)), Some(section)) => unit
                .entry(section.clone())
                .or_default()
                .push((key.trim().to_string(), value.trim().to_string())),
            (Some(_), None) => {
                problems.push(format!("line {}: a key before any section", index + 1))
            }
            (None, _) => problems.push(format!("line {}: not Key=value: {line}", index + 1)),
        }
    }
    if problems.is_empty() {
        Ok(unit)
    } else {
        Err(problems)
    }
}

/// The values of `key` in `section`, in order.
fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .map(|entries| {
            entries
                .iter()
                .filter(|(name, _)| name == key)
                .map(|(_, value)| value.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The one value of `key` in `[Service]` (the last wins, as in systemd).
fn service<'a>(unit: &'a Unit, key: &str) -> Option<&'a str> {
    values(unit, "Service", key).last().copied()
}

/// A size such as `2240M`, `2G` or `2348810240` in MiB.
fn size_mib(value: &str) -> Option<u64> {
    let (number, multiplier_mib) = match value.chars().last()? {
        'K' => (&value[..value.len() - 1], 1.0 / 1024.0),
        'M' => (&value[..value.len() - 1], 1.0),
        'G' => (&value[..value.len() - 1], 1024.0),
        'T' => (&value[..value.len() - 1], 1024.0 * 1024.0),
        _ => (value, 1.0 / (1024.0 * 1024.0)),
    };
    let number: f64 = number.parse().ok()?;
    Some((number * multiplier_mib).floor() as u64)
}

/// A duration such as `30s`, `2min` or `30` (seconds) in seconds.
fn duration_s(value: &str) -> Option<u64> {
    if let Some(minutes) = value.strip_suffix("min") {
        return minutes
            .trim()
            .parse::<u64>()
            .ok()
            .map(|minutes| minutes * 60);
    }
    value.strip_suffix('s').unwrap_or(value).trim().parse().ok()
}

/// What the production unit must say, given the figures derived from the config. Returns every
/// problem (empty: the unit is fine).
fn check_unit(text: &str, budget_mib: f64, production: &toml::Value) -> Vec<String> {
    let unit = match parse_unit(text) {
        Ok(unit) => unit,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    for section in ["Unit", "Service", "Install"] {
        if !unit.contains_key(section) {
            problems.push(format!("no [{section}] section"));
        }
    }
    for (section, entries) in &unit {
        let Some((_, known)) = KNOWN_KEYS.iter().find(|(name, _)| name == section) else {
            problems.push(format!("unknown section [{section}]"));
            continue;
        };
        for (key, _) in entries {
            if !known.contains(&key.as_str()) {
                problems.push(format!("[{section}] unknown key {key}"));
            }
        }
    }
    // The exact hardening lines.
    let expected: &[(&str, &str)] = &[
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("MemorySwapMax", "0"),
        ("ReadWritePaths", DATA_DIR),
    ];
    for (key, value) in expected {
        match service(&unit, key) {
            Some(found) if found == *value => {}
            found => problems.push(format!("[Service] {key}={value} expected, found {found:?}")),
        }
    }
    let families: std::collections::BTreeSet<&str> = service(&unit, "RestrictAddressFamilies")
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if families != ["AF_INET", "AF_INET6", "AF_UNIX"].into_iter().collect() {
        problems.push(format!(
            "RestrictAddressFamilies must be exactly AF_INET AF_INET6 AF_UNIX, found {families:?}"
        ));
    }
    let filters = values(&unit, "Service", "SystemCallFilter");
    if !filters.contains(&"@system-service") {
        problems.push(format!(
            "SystemCallFilter=@system-service missing: {filters:?}"
        ));
    }
    // A dedicated user: a static one that is not root, or a dynamic one.
    let dynamic = service(&unit, "DynamicUser") == Some("yes");
    match service(&unit, "User") {
        Some("root") | Some("0") => problems.push("User=root".to_string()),
        None if !dynamic => problems.push("neither User= nor DynamicUser=yes".to_string()),
        _ => {}
    }
    if service(&unit, "StateDirectory") != DATA_DIR.strip_prefix("/var/lib/") {
        problems.push(format!(
            "StateDirectory= must create {DATA_DIR}, found {:?}",
            service(&unit, "StateDirectory")
        ));
    }
    if service(&unit, "StartLimitBurst").is_some() || service(&unit, "RestartSec").is_none() {
        problems.push("RestartSec in [Service], the start limit in [Unit]".to_string());
    }
    if values(&unit, "Unit", "StartLimitBurst").is_empty()
        || values(&unit, "Unit", "StartLimitIntervalSec").is_empty()
    {
        problems.push("no restart limit ([Unit] StartLimitIntervalSec, StartLimitBurst)".into());
    }
    // ExecStart: the installed binary running one config file; check-config on the same file first.
    let exec_start = service(&unit, "ExecStart").unwrap_or_default();
    let config_path = match exec_start.split_whitespace().collect::<Vec<_>>().as_slice() {
        [binary, "run", "--config", config]
            if *binary == INSTALLED_BINARY
                && config.starts_with("/etc/tickflow/")
                && config.ends_with(".toml") =>
        {
            Some(*config)
        }
        _ => {
            problems.push(format!(
                "ExecStart must be `{INSTALLED_BINARY} run --config /etc/tickflow/<name>.toml`, found {exec_start:?}"
            ));
            None
        }
    };
    if let Some(config_path) = config_path {
        let check = format!("{INSTALLED_BINARY} check-config {config_path}");
        if service(&unit, "ExecStartPre") != Some(check.as_str()) {
            problems.push(format!("ExecStartPre={check} expected"));
        }
    }
    // Sizing.
    let required_mib = memory_max_mib_for(budget_mib);
    match service(&unit, "MemoryMax").and_then(size_mib) {
        Some(mib) if (required_mib..=required_mib + 512).contains(&mib) => {}
        found => problems.push(format!(
            "MemoryMax must be round_up_64(1.25 × {budget_mib} MiB budget + 256 MiB) = {required_mib}M (up to 512 MiB more), found {found:?} MiB"
        )),
    }
    let open_files = open_files_needed(production);
    match service(&unit, "LimitNOFILE").and_then(|value| value.parse::<u64>().ok()) {
        Some(limit) if limit >= open_files => {}
        found => problems.push(format!(
            "LimitNOFILE must be at least {open_files} (docs/deploy.md), found {found:?}"
        )),
    }
    let stop_s = stop_seconds_needed(production);
    match service(&unit, "TimeoutStopSec").and_then(duration_s) {
        Some(seconds) if seconds >= stop_s => {}
        found => problems.push(format!(
            "TimeoutStopSec must be at least {stop_s} s (above the engine's shutdown deadlines), found {found:?}"
        )),
    }
    // The history is written inside the only writable directory.
    let history_roots: Vec<String> = sinks(production)
        .iter()
        .filter_map(|sink| {
            sink.get("config")?
                .get("root")?
                .as_str()
                .map(str::to_string)
        })
        .collect();
    if history_roots.is_empty() {
        problems.push("the production config has no Parquet sink root".into());
    }
    for root in history_roots {
        if !Path::new(&root).starts_with(DATA_DIR) {
            problems.push(format!(
                "Parquet root {root} is outside ReadWritePaths={DATA_DIR}"
            ));
        }
    }
    problems
}

/// `config/production.toml` with its plugin paths pointing at the plugins this test built.
fn production_config_with_built_plugins(dir: &Path) -> PathBuf {
    let parquet = built_plugin("tickflow-parquet", "tickflow_parquet");
    built_plugin("tickflow-ws-broadcast", "tickflow_ws_broadcast");
    built_plugin("tickflow-metrics", "tickflow_metrics");
    let plugin_dir = parquet.parent().expect("a plugin lives in a directory");
    let text = read_repo_file("config/production.toml");
    assert!(
        text.contains(INSTALLED_PLUGIN_DIR),
        "plugins come from {INSTALLED_PLUGIN_DIR}"
    );
    let path = dir.join("production.toml");
    std::fs::write(
        &path,
        text.replace(INSTALLED_PLUGIN_DIR, &format!("{}/", plugin_dir.display())),
    )
    .expect("scratch is writable");
    path
}

/// Runs `tickflow check-config` on `config`; returns its stdout (the test fails on refusal).
fn check_config(config: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .arg("check-config")
        .arg(config)
        .output()
        .expect("tickflow runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "check-config refused config/production.toml:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The total of "memory budget (worst case): X MiB".
fn budget_mib(check_config_stdout: &str) -> f64 {
    check_config_stdout
        .lines()
        .find_map(|line| line.strip_prefix("memory budget (worst case): "))
        .and_then(|rest| rest.strip_suffix(" MiB"))
        .and_then(|mib| mib.parse().ok())
        .unwrap_or_else(|| panic!("no budget line:\n{check_config_stdout}"))
}

fn production() -> toml::Value {
    toml::from_str(&read_repo_file("config/production.toml")).expect("production.toml is TOML")
}

#[test]
fn production_config_passes_check_config_with_every_plugin_stating_its_bound() {
    let dir = scratch_dir("check-config");
    let stdout = check_config(&production_config_with_built_plugins(&dir));
    for sink in ["history", "live", "metrics"] {
        assert!(
            stdout.contains(&format!("sink {sink}: "))
                && stdout
                    .lines()
                    .any(|line| line.contains(&format!("sink {sink}: "))
                        && line.contains("stated by the plugin")),
            "sink {sink} loads and states its memory:\n{stdout}"
        );
    }
    assert!(budget_mib(&stdout) > 0.0);
}

#[test]
fn systemd_unit_is_hardened_and_sized_from_the_budget() {
    let dir = scratch_dir("unit");
    let budget = budget_mib(&check_config(&production_config_with_built_plugins(&dir)));
    let text = read_repo_file("config/systemd/tickflow.service");
    let problems = check_unit(&text, budget, &production());
    assert!(
        problems.is_empty(),
        "config/systemd/tickflow.service (see docs/deploy.md, \"Sizing\"):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("systemd-analyze").is_file())
    });
    assert!(
        on_path,
        "systemd-analyze is not on PATH: .ci/run installs Debian's systemd package"
    );
    // verify checks that the executables exist: the installed path becomes the built binary.
    let dir = scratch_dir("verify");
    let unit = dir.join("tickflow.service");
    std::fs::write(
        &unit,
        read_repo_file("config/systemd/tickflow.service")
            .replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_tickflow")),
    )
    .expect("scratch is writable");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // verify exits 0 on unknown keys and bad values (it ignores them): its messages about the
    // unit fail the test too.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("tickflow.service"))
        .collect();
    assert!(
        output.status.success() && about_unit.is_empty(),
        "systemd-analyze verify (exit {:?}):\n{stderr}",
        output.status.code()
    );
}

#[test]
fn the_unit_check_finds_what_is_wrong() {
    let production = production();
    let good = read_repo_file("config/systemd/tickflow.service");
    let budget = 1562.0;
    let fixed_memory = good
        .lines()
        .map(|line| {
            if line.starts_with("MemoryMax=") {
                format!("MemoryMax={}M", memory_max_mib_for(budget))
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        check_unit(&fixed_memory, budget, &production),
        Vec::<String>::new()
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "ProtectSystem=strict",
            "ProtectSystem=full",
            "ProtectSystem=strict expected",
        ),
        (
            "NoNewPrivileges=yes",
            "NoNewPrivilege=yes",
            "unknown key NoNewPrivilege",
        ),
        ("MemoryMax=", "MemoryMax=512M\n#", "MemoryMax must be"),
        (
            "LimitNOFILE=",
            "LimitNOFILE=1024\n#",
            "LimitNOFILE must be at least",
        ),
        (
            "TimeoutStopSec=",
            "TimeoutStopSec=5s\n#",
            "TimeoutStopSec must be at least",
        ),
        ("User=tickflow", "User=root", "User=root"),
        ("AF_UNIX", "AF_UNIX AF_NETLINK", "RestrictAddressFamilies"),
        (
            "ExecStart=/usr/local/bin/tickflow run",
            "ExecStart=/usr/local/bin/tickflow demo",
            "ExecStart must be",
        ),
        (
            "ReadWritePaths=/var/lib/tickflow",
            "ReadWritePaths=/",
            "ReadWritePaths",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(fixed_memory.contains(from), "{from}");
        let broken = fixed_memory.replacen(from, to, 1);
        let problems = check_unit(&broken, budget, &production);
        assert!(
            problems.iter().any(|problem| problem.contains(expected)),
            "{from} → {to}: expected a problem containing {expected:?}, got {problems:?}"
        );
    }
    // Sizes and durations in systemd's spellings.
    assert_eq!(size_mib("2240M"), Some(2240));
    assert_eq!(size_mib("2G"), Some(2048));
    assert_eq!(size_mib("1048576"), Some(1));
    assert_eq!(duration_s("30s"), Some(30));
    assert_eq!(duration_s("2min"), Some(120));
    assert_eq!(memory_max_mib_for(1562.0), 2240);
}
