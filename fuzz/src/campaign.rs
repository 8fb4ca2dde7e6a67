//! One target's fuzzing campaign: a pool of inputs (the venue's fixtures, its saved corpus, then
//! every mutant that did something new), mutated and checked by the oracle; failing inputs are
//! saved to the corpus directory. A target's inputs depend only on its seed, so a run repeats.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tickflow_core::venue::Venue;

use crate::input::{self, Input};
use crate::mutate::{Dictionary, Mutator};
use crate::oracle::{self, Oracle, Violation};
use crate::rng::Rng;

/// Most inputs a pool holds; past it a new one replaces a random mutant (seeds stay).
const MAX_POOL_INPUTS: usize = 4096;
/// Most files saved per distinct violation (the first few show it; thousands would not help).
const MAX_SAVED_PER_VIOLATION: usize = 3;

/// A failing input.
#[derive(Clone, Debug)]
pub struct Finding {
    pub venue: Venue,
    pub violation: Violation,
    /// Where it was saved, if a corpus directory was given.
    pub saved: Option<PathBuf>,
}

/// What a campaign did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Inputs checked.
    pub executions: u64,
    /// Decoder calls (each input runs through three to five decoders).
    pub decodes: u64,
    pub elapsed: Duration,
    /// Distinct outcomes seen.
    pub signatures: usize,
    pub pool_inputs: usize,
    pub findings: usize,
}

/// Told each input before it runs (the fuzzer's watchdog keeps it).
pub type OnInput<'a> = dyn FnMut(Venue, &Input) + 'a;

/// The fuzzing state of one target (one venue's decoders).
pub struct Campaign {
    venue: Venue,
    rng: Rng,
    oracle: Oracle,
    dictionary: Dictionary,
    /// Every venue's fixtures: splice partners.
    others: Vec<Input>,
    pool: Vec<Input>,
    seed_count: usize,
    signatures: HashSet<u64>,
    saved_per_violation: HashMap<u64, usize>,
    corpus_dir: Option<PathBuf>,
    stats: Stats,
    findings: Vec<Finding>,
}

impl Campaign {
    /// A campaign seeded from the fixtures and, when given, the target's saved corpus.
    pub fn new(venue: Venue, seed: u64, corpus_dir: Option<PathBuf>) -> std::io::Result<Campaign> {
        let mut others = Vec::new();
        for other in Venue::ALL {
            others.extend(input::fixture_inputs(other)?);
        }
        let mut pool = input::fixture_inputs(venue)?;
        if let Some(dir) = &corpus_dir {
            pool.extend(input::corpus_inputs(dir, venue)?);
        }
        let dictionary = Dictionary::from_inputs(&others);
        let seed_count = pool.len();
        Ok(Campaign {
            venue,
            // Each target its own stream, whatever order the targets run in.
            rng: Rng::new(seed ^ (venue.index() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            oracle: Oracle::new(venue),
            dictionary,
            others,
            pool,
            seed_count,
            signatures: HashSet::new(),
            saved_per_violation: HashMap::new(),
            corpus_dir,
            stats: Stats::default(),
            findings: Vec::new(),
        })
    }

    pub fn venue(&self) -> Venue {
        self.venue
    }

    pub fn stats(&self) -> Stats {
        Stats {
            decodes: self.oracle.decodes,
            signatures: self.signatures.len(),
            pool_inputs: self.pool.len(),
            findings: self.findings.len(),
            ..self.stats
        }
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Runs until `budget` has passed (checked every few inputs). `current` (if given) is told
    /// each input before it runs, so a watchdog can save an input that hangs.
    pub fn run_for(&mut self, budget: Duration, mut current: Option<&mut OnInput<'_>>) {
        let started = Instant::now();
        while started.elapsed() < budget {
            for _ in 0..64 {
                let mutant = self.next_mutant();
                if let Some(current) = current.as_mut() {
                    current(self.venue, &mutant);
                }
                self.execute(mutant);
            }
        }
        self.stats.elapsed += started.elapsed();
    }

    /// Runs exactly `executions` inputs (tests).
    pub fn run_executions(&mut self, executions: u64) {
        let started = Instant::now();
        for _ in 0..executions {
            let mutant = self.next_mutant();
            self.execute(mutant);
        }
        self.stats.elapsed += started.elapsed();
    }

    fn next_mutant(&mut self) -> Input {
        // Seeds a quarter of the time, so the pool's drift never loses the real shapes.
        let parent = if self.rng.chance(1, 4) {
            self.rng.below(self.seed_count.max(1))
        } else {
            self.rng.below(self.pool.len())
        };
        let mut mutant = self.pool[parent].clone();
        let mut mutator = Mutator {
            rng: &mut self.rng,
            dictionary: &self.dictionary,
            others: &self.others,
        };
        mutator.mutate(&mut mutant);
        mutant
    }

    fn execute(&mut self, mutant: Input) {
        self.stats.executions += 1;
        let (encoding, wire) = mutant.to_wire();
        // The history before the input: now and then the primer, whose leftover state (an unknown
        // spelling) a decoder must forget.
        let history = if self.rng.chance(1, 4) {
            oracle::primer(self.venue)
        } else {
            self.rng.pick(&self.pool).to_wire()
        };
        match self
            .oracle
            .check(encoding, &wire, Some((history.0, &history.1)))
        {
            Ok(signature) => {
                if self.signatures.insert(signature) {
                    if self.pool.len() < MAX_POOL_INPUTS {
                        self.pool.push(mutant);
                    } else {
                        let slot =
                            self.seed_count + self.rng.below(MAX_POOL_INPUTS - self.seed_count);
                        self.pool[slot] = mutant;
                    }
                }
            }
            Err(violation) => {
                let class = input::fnv1a(violation_class(violation.message()).as_bytes());
                let saved_count = self.saved_per_violation.entry(class).or_insert(0);
                if *saved_count >= MAX_SAVED_PER_VIOLATION {
                    return;
                }
                *saved_count += 1;
                let saved = self.corpus_dir.as_ref().and_then(|dir| {
                    input::save_failing_input(dir, self.venue, encoding, &wire, violation.label())
                        .ok()
                });
                self.findings.push(Finding {
                    venue: self.venue,
                    violation,
                    saved,
                });
            }
        }
    }
}

/// A violation's message without its numbers, strings and record dumps: one class per distinct
/// bug.
fn violation_class(message: &str) -> String {
    message
        .split(['{', '(', '"'])
        .next()
        .unwrap_or(message)
        .chars()
        .filter(|character| !character.is_ascii_digit())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_campaign_finds_new_outcomes_and_repeats_by_seed() {
        let mut first = Campaign::new(Venue::Okx, 11, None).unwrap();
        first.run_executions(300);
        let mut second = Campaign::new(Venue::Okx, 11, None).unwrap();
        second.run_executions(300);
        assert_eq!(first.stats().executions, 300);
        assert!(first.stats().signatures > 5, "{:?}", first.stats());
        assert_eq!(first.stats().signatures, second.stats().signatures);
        assert_eq!(first.pool, second.pool);
        assert!(first.findings().is_empty(), "{:?}", first.findings());
    }

    #[test]
    fn violation_classes_ignore_numbers_and_dumps() {
        assert_eq!(
            violation_class("okx: 3 records past the limit 2"),
            violation_class("okx: 4 records past the limit 2")
        );
        assert_eq!(
            violation_class(r#"gate: unknown_symbol() is "A" after Err(..)"#),
            violation_class(r#"gate: unknown_symbol() is "B" after Err(..)"#)
        );
    }
}
