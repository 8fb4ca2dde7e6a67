//! Integration tests: feeds.
