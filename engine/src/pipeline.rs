//! The pipeline (being written).
