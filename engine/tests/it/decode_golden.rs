//! Integration tests: decode_golden.
