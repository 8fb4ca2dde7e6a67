//! Integration tests: decode_cli. Runs the real `tickflow decode` on files made from the fixtures:
//! NDJSON output against golden files (receive times blanked; `TICKFLOW_UPDATE_GOLDEN=1` rewrites
//! them for review in the diff), exit codes 0/1/2, line numbers on stderr, `--stats`, `--base64`
//! with real HTX gzip and MEXC protobuf frames.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use tickflow_core::venue::Venue;
use tickflow_decode::FrameEncoding;

use super::fixtures::{gzip, wire_frames};

fn tickflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tickflow"))
}

/// A file in this test binary's scratch directory.
fn scratch_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("decode_cli");
    std::fs::create_dir_all(&dir).expect("scratch directory can be created");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("scratch file can be written");
    path
}

/// The fixture frames of `venue`, one per line: base64 when the venue sends binary frames.
fn input_lines(venue: Venue) -> (Vec<u8>, bool) {
    let frames = wire_frames(venue);
    let base64 = frames
        .iter()
        .any(|frame| frame.encoding == FrameEncoding::Binary);
    let mut input = Vec::new();
    for frame in frames {
        if base64 {
            input.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&frame.bytes)
                    .as_bytes(),
            );
        } else {
            input.extend_from_slice(&frame.bytes);
        }
        input.push(b'\n');
    }
    (input, base64)
}

fn run_decode(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = tickflow();
    command.arg("decode").args(args);
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the tickflow binary runs");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(bytes).expect("stdin accepts the input");
    }
    child.wait_with_output().expect("tickflow exits")
}

/// Blanks `"ts_recv_ns":<digits>` (the wall clock at decode time).
fn blank_receive_times(text: &str) -> String {
    let mut blanked = String::with_capacity(text.len());
    let key = "\"ts_recv_ns\":";
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        blanked.push_str(&rest[..at + key.len()]);
        rest = &rest[at + key.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        assert!(digits > 0, "ts_recv_ns is an integer");
        blanked.push('0');
        rest = &rest[digits..];
    }
    blanked.push_str(rest);
    blanked
}

fn check_golden(venue: Venue, stdout: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/decode_cli")
        .join(format!("{}.ndjson", venue.name()));
    let actual = blank_receive_times(stdout);
    if std::env::var_os("TICKFLOW_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden file has a directory"))
            .expect("golden directory can be created");
        std::fs::write(&path, &actual).expect("golden file can be written");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error} (run with TICKFLOW_UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "{venue}: stdout differs from {}",
        path.display()
    );
}

#[test]
fn decode_cli_every_venue_matches_golden_output() {
    for venue in Venue::ALL {
        let (input, base64) = input_lines(venue);
        let path = scratch_file(&format!("{}.lines", venue.name()), &input);
        let path_text = path.to_str().expect("scratch path is UTF-8");
        let mut args = vec!["--venue", venue.name()];
        if base64 {
            args.push("--base64");
        }
        args.push(path_text);
        let output = run_decode(&args, None);
        let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{venue}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "{venue}: stderr {:?}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in stdout.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("every line is JSON");
            assert_eq!(record["venue"], venue.name());
            assert!(
                record["ts_recv_ns"]
                    .as_i64()
                    .expect("ts_recv_ns is an integer")
                    > 0
            );
        }
        check_golden(venue, &stdout);
    }
}

#[test]
fn decode_cli_reads_stdin_and_reports_bad_lines_with_numbers() {
    let (mut input, _) = input_lines(Venue::Okx);
    input.extend_from_slice(b"not json at all\n");
    input.extend_from_slice(
        br#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["1","1","0","1"]],"bids":[["2","1","0","1"]],"ts":"1","seqId":1}]}"#,
    );
    input.push(b'\n');
    let output = run_decode(&["--venue", "okx"], Some(&input));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 6: frame is not well-formed JSON"),
        "{stderr}"
    );
    assert!(stderr.contains("line 7: crossed book"), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    // The good lines still came out.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[test]
fn decode_cli_usage_errors_exit_2() {
    let output = run_decode(&["--venue", "ftx"], Some(b""));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown venue"));
    let output = run_decode(&["--venue", "okx", "/nonexistent/capture.lines"], None);
    assert_eq!(output.status.code(), Some(2));
    let output = run_decode(&["--venue"], None);
    assert_eq!(output.status.code(), Some(2));
    let output = run_decode(&["--venue", "okx", "--no-such-flag"], None);
    assert_eq!(output.status.code(), Some(2));
    // --base64 on a text capture, and a binary capture without --base64.
    let (text_lines, _) = input_lines(Venue::Okx);
    let output = run_decode(&["--venue", "okx", "--base64"], Some(&text_lines));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("drop --base64"));
    let (binary_lines, base64) = input_lines(Venue::Htx);
    assert!(base64);
    let output = run_decode(&["--venue", "htx"], Some(&binary_lines));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("pass --base64"));
    assert!(output.stdout.is_empty());
}

#[test]
fn decode_cli_stats_prints_one_summary_line() {
    let (mut input, _) = input_lines(Venue::Kucoin);
    input.extend_from_slice(b"{\"type\":\"message\"\n");
    let output = run_decode(&["--venue", "kucoin", "--stats"], Some(&input));
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary is JSON");
    assert_eq!(summary["frames"], 7);
    assert_eq!(summary["records"], 3);
    assert_eq!(summary["control"], 3);
    assert_eq!(summary["errors"], 1);
    assert_eq!(summary["errors_by_kind"]["malformed_json"], 1);
    assert!(summary["ns_per_frame"].as_u64().is_some());
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 7:"));
}

#[test]
fn decode_cli_base64_binary_frames() {
    let engine = &base64::engine::general_purpose::STANDARD;
    // HTX: a gzip bbo, a gzip ping, then a line that is not base64 and one that is not gzip.
    let bbo = r#"{"ch":"market.ethusdt.bbo","ts":1,"tick":{"seqId":5,"ask":2000.5,"askSize":1,"bid":2000.25,"bidSize":2,"quoteTime":1700000000000,"symbol":"ethusdt"}}"#;
    let input = format!(
        "{}\n{}\n%%% not base64\n{}\n",
        engine.encode(gzip(bbo.as_bytes())),
        engine.encode(gzip(br#"{"ping":123}"#)),
        engine.encode(b"plain bytes"),
    );
    let output = run_decode(&["--venue", "htx", "--base64"], Some(input.as_bytes()));
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    assert_eq!(
        blank_receive_times(&stdout),
        "{\"type\":\"quote\",\"venue\":\"htx\",\"symbol\":\"ETH-USDT\",\"bid\":2000.25,\"bid_qty\":2,\"ask\":2000.5,\"ask_qty\":1,\"ts_exchange_ns\":1700000000000000000,\"ts_recv_ns\":0,\"seq\":5}\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3: invalid base64"), "{stderr}");
    assert!(
        stderr.contains("line 4: binary frame could not be inflated"),
        "{stderr}"
    );
    // The same input with --stats: the line that is not base64 is a counted error too.
    let output = run_decode(
        &["--venue", "htx", "--base64", "--stats"],
        Some(input.as_bytes()),
    );
    assert_eq!(output.status.code(), Some(1));
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("summary is JSON");
    assert_eq!(summary["frames"], 4, "{summary}");
    assert_eq!(summary["records"], 1, "{summary}");
    assert_eq!(summary["control"], 1, "{summary}");
    assert_eq!(summary["errors"], 2, "{summary}");
    assert_eq!(summary["errors_by_kind"]["invalid_base64"], 1, "{summary}");
    assert_eq!(summary["errors_by_kind"]["inflate"], 1, "{summary}");
    // MEXC: protobuf data and JSON replies mixed in one base64 capture.
    let (input, base64) = input_lines(Venue::Mexc);
    assert!(base64);
    let output = run_decode(&["--venue", "mexc", "--base64", "--stats"], Some(&input));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("summary is JSON");
    assert_eq!(
        (summary["records"].as_u64(), summary["control"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn decode_cli_refuses_a_line_longer_than_max_frame_bytes() {
    let mut input = vec![b'{'; 3 << 20];
    input.push(b'\n');
    input.extend_from_slice(b"pong\n");
    let (okx, _) = input_lines(Venue::Okx);
    input.extend_from_slice(&okx);
    let output = run_decode(&["--venue", "okx", "--stats"], Some(&input));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("line 1: frame larger than max_frame_bytes"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("summary is JSON");
    assert_eq!(summary["frames"], 7);
    assert_eq!(summary["records"], 3);
    assert_eq!(summary["errors_by_kind"]["oversized"], 1);
}

/// With `--base64`, a first line that is base64 but whose frame is bad (truncated JSON, not JSON,
/// not UTF-8) is a frame error (exit 1, the error on stderr), never "pass --base64".
#[test]
fn decode_cli_base64_bad_first_frame_is_a_frame_error() {
    let engine = &base64::engine::general_purpose::STANDARD;
    let cases: &[(&str, Vec<u8>, &str)] = &[
        (
            "okx",
            br#"{"arg":{"channel":"bbo-tbt","instId":"BTC-"#.to_vec(),
            "line 1: frame is not well-formed JSON",
        ),
        (
            "okx",
            b"definitely not json".to_vec(),
            "line 1: frame is not well-formed JSON",
        ),
        (
            "okx",
            b"{\"a\":\"\xff\xfe\"}".to_vec(),
            "line 1: frame is not valid UTF-8",
        ),
        (
            "htx",
            gzip(br#"{"ch":"market.btcusdt.bbo","tick":"#),
            "line 1: frame is not well-formed JSON",
        ),
        (
            "mexc",
            br#"{"id":0,"code":"#.to_vec(),
            "line 1: frame is not well-formed JSON",
        ),
    ];
    for (venue, frame, expected) in cases {
        let input = format!("{}\n", engine.encode(frame));
        let output = run_decode(&["--venue", venue, "--base64"], Some(input.as_bytes()));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{venue}: {stderr}");
        assert!(stderr.contains(expected), "{venue}: {stderr}");
        assert!(!stderr.contains("--base64"), "{venue}: {stderr}");
    }
}

/// A book with an empty side comes out as a `quote_withdrawn` line, counted apart from errors.
#[test]
fn decode_cli_prints_and_counts_quote_withdrawals() {
    let frame = r#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[["8476.97","256","0","12"]],"ts":"1597026383085","seqId":123457}]}"#;
    let input = format!("{frame}\n");
    let output = run_decode(&["--venue", "okx"], Some(input.as_bytes()));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    assert_eq!(
        blank_receive_times(&stdout),
        "{\"type\":\"quote_withdrawn\",\"venue\":\"okx\",\"symbol\":\"BTC-USDT\",\"ts_recv_ns\":0}\n"
    );
    let output = run_decode(&["--venue", "okx", "--stats"], Some(input.as_bytes()));
    assert_eq!(output.status.code(), Some(0));
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("summary is JSON");
    assert_eq!(summary["records"], 1, "{summary}");
    assert_eq!(summary["quotes_withdrawn"], 1, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
}
