//! The sink plugin host (filled in by the plugin SDK work).
