//! `tickflow-load real-rates` against the real `tickflow` binary (which cargo builds for this
//! test): a tiny run, one idle phase and one paced phase over TLS, checking that every figure of
//! the report is there. The measurement itself is a harness command, not a test.

use tickflow_load::real_rates::{self, RealRatesSettings};
use tokio_util::sync::CancellationToken;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

#[test]
fn a_tiny_run_against_the_engine_binary_reports_every_phase() {
    let engine = std::path::PathBuf::from(env!("CARGO_BIN_EXE_tickflow"));
    let settings = RealRatesSettings {
        symbols: 10,
        idle_s: 1,
        rates_frames_per_s: vec![500],
        phase_s: 1,
        settle_s: 1,
        stats_interval_ms: 200,
        engine,
        echo_engine_logs: false,
        ..RealRatesSettings::default()
    };
    let runtime = runtime();
    let report =
        real_rates::run(&settings, &runtime, &CancellationToken::new()).expect("the run completes");
    assert!(!report.interrupted);
    assert_eq!(report.phases.len(), 2);
    let idle = &report.phases[0];
    assert!(idle.engine_cpu_pct_of_one_core.is_finite());
    assert!(idle.engine_cpu_us_per_message.is_none());
    let paced = &report.phases[1];
    assert!(paced.sim_frames_sent > 0);
    assert!(paced.engine_frames > 0);
    assert!(paced.engine_quotes > 0);
    let per_message = paced
        .engine_cpu_us_per_message
        .expect("a rate phase has a per-message figure");
    assert!(per_message.is_finite() && per_message >= 0.0);
    assert!(
        paced.threads.contains_key("tickflow-feeds"),
        "{:?}",
        paced.threads
    );
    let json = report.to_json();
    assert_eq!(json["phases"][1]["target_frames_per_s"], 500);
    assert!(json["phases"][1]["engine_frames"].as_u64().unwrap_or(0) > 0);
    assert!(!report.table().is_empty());
}
