//! `tickflow universe --config FILE [--json]`: the universe `tickflow run` would start with. With
//! discovery, fetches each enabled venue's instrument list (or the simulator's) and applies the
//! selection; with a hand-written list in `[feeds]`, shows that list in each venue's spelling.
//! Prints each symbol with its venues and their spellings, then what was left out and why.
//! Exit 0; 1 when no venue's list could be fetched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use tickflow::config::Config;
use tickflow::universe;

#[derive(clap::Args, Debug)]
pub struct UniverseArgs {
    /// The engine's config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Print the universe as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: UniverseArgs) -> anyhow::Result<u8> {
    let config = Config::from_file(&args.config)?;
    let _log_guard = super::process::init_logging("warn");
    let started = Instant::now();
    let (selected, discovered) = if universe::discovers(&config) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let fetcher = universe::fetcher(&config)?;
        let (_, selected) = runtime.block_on(universe::round(
            &config,
            &fetcher,
            &BTreeMap::new(),
            None,
            config.universe.start_attempts,
        ));
        (selected, true)
    } else {
        (universe::hand_written(&config)?, false)
    };
    let elapsed_ms = started.elapsed().as_millis();
    if args.json {
        let mut json = selected.to_json();
        if let Some(object) = json.as_object_mut() {
            object.insert("discovered".into(), discovered.into());
            object.insert("elapsed_ms".into(), (elapsed_ms as u64).into());
        }
        println!("{json}");
    } else {
        if discovered {
            println!(
                "discovered from {} venue(s) in {elapsed_ms} ms",
                selected.venues_answered.len()
            );
        } else {
            println!("hand-written list in [feeds] (discovery is off)");
        }
        print!("{}", selected.summary());
        println!("{}", universe::one_line(&selected));
    }
    let nothing_answered = discovered && selected.venues_answered.is_empty();
    Ok(u8::from(nothing_answered))
}
