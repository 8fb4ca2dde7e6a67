//! Integration tests: plugin_host.
