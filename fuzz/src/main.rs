//! `tickflow-fuzz <target|all> --seconds N [--corpus DIR] [--seed S]`: runs the decoder targets
//! and the WebSocket frame path's (`ws-frames`; see the library and fuzz/README.md) and prints
//! executions, time and findings per target. Exits 1 when anything failed; failing inputs are
//! saved under the corpus directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;

use tickflow_core::venue::Venue;
use tickflow_fuzz::campaign::Campaign;
use tickflow_fuzz::frames::{self, FramesCampaign};
use tickflow_fuzz::input::{self, Input};

/// Fuzz the venue decoders and the WebSocket frame path.
#[derive(Parser, Debug)]
#[command(name = "tickflow-fuzz")]
struct Args {
    /// A venue name (binance, bybit, okx, mexc, gate, kucoin, bitget, htx), `ws-frames` or `all`.
    target: String,
    /// Total time; `all` shares it evenly among the nine targets.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Where failing inputs are saved (and read back as seeds): `<DIR>/<target>/`.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// The seed of the inputs; the same seed repeats a target's inputs.
    #[arg(long, default_value_t = 0x7469_636b_666c_6f77)]
    seed: u64,
}

/// How long one input may run before the run counts as hung.
const HANG_AFTER: Duration = Duration::from_secs(20);
/// How long each target runs before the next one's turn (`all`).
const SLICE: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (targets, with_frames): (Vec<Venue>, bool) = match args.target.as_str() {
        "all" => (Venue::ALL.to_vec(), true),
        frames::TARGET => (Vec::new(), true),
        name => match Venue::from_name(name) {
            Some(venue) => (vec![venue], false),
            None => bail!(
                "unknown target {:?}: a venue name, `{}` or `all`",
                args.target,
                frames::TARGET
            ),
        },
    };
    let corpus_dir = args
        .corpus
        .clone()
        .unwrap_or_else(input::default_corpus_dir);
    tickflow_fuzz::oracle::quiet_panics();

    let progress = Arc::new(AtomicU64::new(0));
    let current: Arc<Mutex<Option<(Venue, Input)>>> = Arc::new(Mutex::new(None));
    start_watchdog(
        Arc::clone(&progress),
        Arc::clone(&current),
        corpus_dir.clone(),
    );

    let mut campaigns = targets
        .iter()
        .map(|&venue| Campaign::new(venue, args.seed, Some(corpus_dir.clone())))
        .collect::<std::io::Result<Vec<_>>>()
        .context("reading the fixtures and the corpus")?;
    let target_count = targets.len() + usize::from(with_frames);
    let per_target = Duration::from_secs(args.seconds) / target_count as u32;
    let mut frames_campaign =
        with_frames.then(|| FramesCampaign::new(args.seed, Some(corpus_dir.clone())));
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let mut ran = false;
        for campaign in campaigns.iter_mut() {
            let left = per_target.saturating_sub(campaign.stats().elapsed);
            if left.is_zero() {
                continue;
            }
            ran = true;
            let mut tell = |venue: Venue, input: &Input| {
                progress.fetch_add(1, Ordering::Relaxed);
                *current.lock().unwrap_or_else(|poison| poison.into_inner()) =
                    Some((venue, input.clone()));
            };
            campaign.run_for(left.min(SLICE), Some(&mut tell));
        }
        if let Some(campaign) = frames_campaign.as_mut() {
            let left = per_target.saturating_sub(campaign.stats().elapsed);
            if !left.is_zero() {
                ran = true;
                // Each input takes well under a millisecond: the watchdog sees progress per slice,
                // and a hang here is not pinned on the last decoder input.
                *current.lock().unwrap_or_else(|poison| poison.into_inner()) = None;
                progress.fetch_add(1, Ordering::Relaxed);
                campaign.run_for(left.min(SLICE));
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !ran {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            let frames_stats = frames_campaign.as_ref().map(|c| c.stats());
            let executions: u64 = campaigns.iter().map(|c| c.stats().executions).sum::<u64>()
                + frames_stats.map_or(0, |stats| stats.executions);
            let findings: usize = campaigns.iter().map(|c| c.stats().findings).sum::<usize>()
                + frames_stats.map_or(0, |stats| stats.findings);
            eprintln!(
                "tickflow-fuzz: {:>5.0} s, {executions} executions, {findings} findings",
                started.elapsed().as_secs_f64()
            );
        }
    }

    println!(
        "{:<8} {:>8} {:>12} {:>12} {:>10} {:>10} {:>6} {:>8}",
        "target", "seconds", "executions", "decodes", "exec/s", "outcomes", "pool", "findings"
    );
    let mut findings = 0;
    for campaign in &campaigns {
        let stats = campaign.stats();
        let seconds = stats.elapsed.as_secs_f64();
        println!(
            "{:<8} {:>8.1} {:>12} {:>12} {:>10.0} {:>10} {:>6} {:>8}",
            campaign.venue().name(),
            seconds,
            stats.executions,
            stats.decodes,
            stats.executions as f64 / seconds.max(1e-9),
            stats.signatures,
            stats.pool_inputs,
            stats.findings
        );
        findings += stats.findings;
    }
    if let Some(campaign) = &frames_campaign {
        let stats = campaign.stats();
        let seconds = stats.elapsed.as_secs_f64();
        println!(
            "{:<8} {:>8.1} {:>12} {:>12} {:>10.0} {:>10} {:>6} {:>8}",
            frames::TARGET,
            seconds,
            stats.executions,
            stats.mutated,
            stats.executions as f64 / seconds.max(1e-9),
            stats.endings.len(),
            "-",
            stats.findings
        );
        println!(
            "{}: the decodes column is the mutated inputs; outcomes, the distinct endings",
            frames::TARGET
        );
        findings += stats.findings;
        for finding in campaign.findings() {
            println!(
                "FINDING {}: {} (read sizes {:?}, every {} read not ready at first){}",
                frames::TARGET,
                finding.violation.message(),
                finding.chunking.read_sizes,
                finding.chunking.pending_every,
                finding
                    .saved
                    .as_ref()
                    .map(|path| format!("\n  saved to {}", path.display()))
                    .unwrap_or_default()
            );
        }
    }
    for campaign in &campaigns {
        for finding in campaign.findings() {
            println!(
                "FINDING {}: {}{}",
                finding.venue,
                finding.violation.message(),
                finding
                    .saved
                    .as_ref()
                    .map(|path| format!("\n  saved to {}", path.display()))
                    .unwrap_or_default()
            );
        }
    }
    if findings > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Saves the running input and stops the run when no input has finished for [`HANG_AFTER`].
fn start_watchdog(
    progress: Arc<AtomicU64>,
    current: Arc<Mutex<Option<(Venue, Input)>>>,
    corpus_dir: PathBuf,
) {
    std::thread::spawn(move || {
        let mut last = progress.load(Ordering::Relaxed);
        let mut still_since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = progress.load(Ordering::Relaxed);
            if now != last {
                last = now;
                still_since = Instant::now();
                continue;
            }
            if still_since.elapsed() < HANG_AFTER {
                continue;
            }
            let running = current
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .clone();
            let Some((venue, input)) = running else {
                // The frame path's target runs with no decoder input recorded: its inputs are
                // not saved on a hang, but the same `--seed` repeats them.
                eprintln!(
                    "tickflow-fuzz: an input hangs where none is recorded (the {} target); rerun \
                     with the same --seed to repeat it",
                    frames::TARGET
                );
                std::process::exit(2);
            };
            let (encoding, wire) = input.to_wire();
            match input::save_failing_input(&corpus_dir, venue, encoding, &wire, "hang") {
                Ok(path) => eprintln!(
                    "tickflow-fuzz: {venue}: an input hangs; saved to {}",
                    path.display()
                ),
                Err(error) => {
                    eprintln!("tickflow-fuzz: {venue}: an input hangs; cannot save it: {error}")
                }
            }
            std::process::exit(2);
        }
    });
}
