//! Integration tests: corpus. Every file under `fuzz/corpus/` (inputs that once failed, kept
//! after their fix) and every fixture frame goes through every venue's decoders, as the frame
//! encoding it was saved with and as the other one, right after the venue's primer frame (one
//! refused as `UnknownSymbol`), and must pass every oracle check; then each
//! target fuzzes briefly from a fixed seed. Runs in a few seconds.

use tickflow_core::venue::Venue;
use tickflow_decode::FrameEncoding;
use tickflow_fuzz::campaign::Campaign;
use tickflow_fuzz::frames::{self, Chunking, FramesCampaign, read_frames_corpus};
use tickflow_fuzz::input::{default_corpus_dir, fixture_inputs, read_corpus};
use tickflow_fuzz::oracle::{Oracle, primer};

fn other_encoding(encoding: FrameEncoding) -> FrameEncoding {
    match encoding {
        FrameEncoding::Text => FrameEncoding::Binary,
        FrameEncoding::Binary => FrameEncoding::Text,
    }
}

#[test]
fn corpus_every_saved_input_passes_every_decoder() {
    let files = read_corpus(&default_corpus_dir()).expect("the corpus directory reads");
    let mut failures = Vec::new();
    for venue in Venue::ALL {
        let mut oracle = Oracle::new(venue);
        let (primer_encoding, primer_frame) = primer(venue);
        for file in &files {
            for encoding in [file.encoding, other_encoding(file.encoding)] {
                // After the primer: a decoder's leftover state must not show (see `primer`).
                let history = Some((primer_encoding, &primer_frame[..]));
                if let Err(violation) = oracle.check(encoding, &file.bytes, history) {
                    failures.push(format!(
                        "{} as {encoding:?} through {venue}: {violation:?}",
                        file.path.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_every_fixture_frame_passes_every_decoder() {
    let mut frames = Vec::new();
    for venue in Venue::ALL {
        for input in fixture_inputs(venue).expect("fixtures read") {
            frames.push(input.to_wire());
        }
    }
    for venue in Venue::ALL {
        let mut oracle = Oracle::new(venue);
        for (encoding, bytes) in &frames {
            for encoding in [*encoding, other_encoding(*encoding)] {
                let history = frames
                    .first()
                    .map(|(encoding, bytes)| (*encoding, &bytes[..]));
                oracle
                    .check(encoding, bytes, history)
                    .unwrap_or_else(|violation| panic!("{venue}: {violation:?}"));
            }
        }
    }
}

#[test]
fn corpus_short_fuzz_run_of_every_target_finds_nothing() {
    for venue in Venue::ALL {
        // No corpus directory: a test never writes into the repository.
        let mut campaign = Campaign::new(venue, 0x5eed, None).expect("fixtures read");
        campaign.run_executions(400);
        assert!(
            campaign.findings().is_empty(),
            "{venue}: {:?}",
            campaign.findings()
        );
        assert!(
            campaign.stats().signatures > 3,
            "{venue}: {:?}",
            campaign.stats()
        );
    }
}

/// Every saved frame stream (`fuzz/corpus/ws-frames/`: inputs that once failed, kept after their
/// fix) reads exactly like the reference under several read schedules.
#[test]
fn corpus_every_saved_frame_stream_reads_like_the_reference() {
    let inputs = read_frames_corpus(&default_corpus_dir()).expect("the corpus directory reads");
    let schedules = [
        Chunking::whole(),
        Chunking::bytewise(),
        Chunking {
            read_sizes: vec![7, 4096, 3],
            pending_every: 2,
        },
        Chunking {
            read_sizes: vec![70_000, 1],
            pending_every: 0,
        },
    ];
    let mut failures = Vec::new();
    for (path, input) in &inputs {
        for chunking in &schedules {
            if let Err(violation) = frames::check(input, chunking) {
                failures.push(format!(
                    "{} read as {chunking:?}: {}",
                    path.display(),
                    violation.message()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_short_fuzz_run_of_the_frame_path_finds_nothing() {
    let mut campaign = FramesCampaign::new(0x5eed, None);
    campaign.run_executions(1_500);
    let messages: Vec<String> = campaign
        .findings()
        .iter()
        .map(|finding| finding.violation.message())
        .collect();
    assert!(messages.is_empty(), "{messages:?}");
    let stats = campaign.stats();
    // Mutated streams reach several of the reader's protocol violations besides a clean end.
    assert!(stats.endings.len() > 4, "{stats:?}");
    assert!(stats.mutated > 500, "{stats:?}");
}
