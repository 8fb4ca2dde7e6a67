//! Integration tests: decode_cli.
