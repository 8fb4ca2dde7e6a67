//! Example sink plugin (filled in by the plugin SDK work).
