//! tickflow-decode integration tests: golden records for every fixture frame of the eight venues
//! and bad-input tests per venue and kind.

mod fast_paths;
mod fixtures;
mod golden;
