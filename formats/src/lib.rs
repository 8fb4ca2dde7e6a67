//! Formats shared by tickflow's plugins and its engine, below the line: no I/O, no engine crate.
//!
//! Today it holds the Parquet history written by `tickflow-parquet` (`plugins/parquet`): each
//! dataset's Arrow schema and schema version ([`schema`]), and where its files live — the hive
//! partition layout, the staging area readers ignore, file names and the per-file sort order
//! ([`layout`]). The control plane reads the history back through the same definitions.
//!
//! And the NATS wire format ([`wire`]): the payload a collector's NATS sink (`plugins/nats`)
//! publishes and an aggregator's NATS source decodes, its subjects, partitions and message ids.

pub mod layout;
pub mod nats_auth;
pub mod schema;
pub mod wire;

pub use layout::{HourPartition, LayoutError};
pub use schema::Dataset;
