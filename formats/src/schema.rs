//! The Arrow schema of each dataset of the Parquet history, its schema version, the column it
//! is partitioned by and the order rows are sorted in within a row group.
//!
//! Evolution rules (the reading contract in `plugins/parquet/README.md`): within one schema
//! version a dataset's columns never change. A new version may only append nullable columns at
//! the end; readers select columns by name and treat a missing column as all-null. Renaming,
//! removing or retyping a column is not an evolution: it becomes a new dataset (a new directory
//! name such as `quotes_v2`), so one directory never mixes incompatible files.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// File key-value metadata: the tickflow version that wrote the file.
pub const META_TICKFLOW_VERSION: &str = "tickflow.version";
/// File key-value metadata: the sink ABI version (`major.minor`) the writer was built against.
pub const META_ABI_VERSION: &str = "tickflow.abi_version";
/// File key-value metadata: the dataset name (`quotes`, …).
pub const META_DATASET: &str = "tickflow.dataset";
/// File key-value metadata: [`Dataset::schema_version`] of the file's rows.
pub const META_SCHEMA_VERSION: &str = "tickflow.schema_version";
/// File key-value metadata: `row_group` when each row group is sorted by
/// [`Dataset::sort_columns`], `file` when the whole file is (a compacted file).
pub const META_SORTED: &str = "tickflow.sorted";

/// One dataset of the history: one directory under the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataset {
    Quotes,
    Trades,
    Spreads,
    Opportunities,
    Gaps,
}

/// `Timestamp(ns, "UTC")`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// Dictionary-encoded UTF-8 (`Int32` keys): symbol and venue names.
pub fn dictionary_string_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn timestamp(name: &str, nullable: bool) -> Field {
    Field::new(name, timestamp_type(), nullable)
}
fn dictionary(name: &str) -> Field {
    Field::new(name, dictionary_string_type(), false)
}
fn float(name: &str) -> Field {
    Field::new(name, DataType::Float64, false)
}
fn nullable_float(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

impl Dataset {
    pub const ALL: [Dataset; 5] = [
        Dataset::Quotes,
        Dataset::Trades,
        Dataset::Spreads,
        Dataset::Opportunities,
        Dataset::Gaps,
    ];

    /// The directory name under the root, and the name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Quotes => "quotes",
            Dataset::Trades => "trades",
            Dataset::Spreads => "spreads",
            Dataset::Opportunities => "opportunities",
            Dataset::Gaps => "gaps",
        }
    }

    pub fn from_name(name: &str) -> Option<Dataset> {
        Dataset::ALL
            .into_iter()
            .find(|dataset| dataset.name() == name)
    }

    /// Index in [`Dataset::ALL`] (for per-dataset arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The version of [`Dataset::schema`], written in every file's metadata.
    pub fn schema_version(self) -> u32 {
        1
    }

    /// The timestamp column whose UTC hour names the row's partition: the engine's receive time
    /// for quotes and trades (always present; a venue's clock may be absent or skewed), the
    /// bucket start for spread samples, the event time for opportunities and gaps.
    pub fn partition_time_column(self) -> &'static str {
        match self {
            Dataset::Quotes | Dataset::Trades => "ts_recv",
            Dataset::Spreads => "bucket_start",
            Dataset::Opportunities | Dataset::Gaps => "ts",
        }
    }

    /// The order of rows within each row group (and within each compacted file), ascending, by
    /// string order of names. Empty: arrival order.
    pub fn sort_columns(self) -> &'static [&'static str] {
        match self {
            Dataset::Spreads => &["symbol", "buy_venue", "sell_venue", "bucket_start"],
            _ => &[],
        }
    }

    /// The Arrow schema of the dataset's files (without the hive partition columns `date` and
    /// `hour`, which readers add from the path).
    pub fn schema(self) -> SchemaRef {
        let fields = match self {
            Dataset::Quotes => vec![
                timestamp("ts_recv", false),
                timestamp("ts_exchange", true),
                dictionary("symbol"),
                dictionary("venue"),
                float("bid"),
                float("bid_qty"),
                float("ask"),
                float("ask_qty"),
                Field::new("seq", DataType::UInt64, true),
            ],
            Dataset::Trades => vec![
                timestamp("ts_recv", false),
                timestamp("ts_exchange", true),
                dictionary("symbol"),
                dictionary("venue"),
                float("price"),
                float("qty"),
                Field::new("side", DataType::Utf8, false),
                Field::new("trade_id", DataType::Utf8, false),
            ],
            Dataset::Spreads => vec![
                timestamp("bucket_start", false),
                dictionary("symbol"),
                dictionary("buy_venue"),
                dictionary("sell_venue"),
                Field::new("bucket_duration_ns", DataType::Int64, false),
                float("last_bp"),
                float("min_bp"),
                float("max_bp"),
                float("mean_bp"),
                nullable_float("window_mean_bp"),
                nullable_float("window_std_bp"),
                nullable_float("band_lower_bp"),
                nullable_float("band_upper_bp"),
                Field::new("samples", DataType::UInt32, false),
                Field::new("warming", DataType::Boolean, false),
            ],
            Dataset::Opportunities => vec![
                timestamp("ts", false),
                Field::new("kind", DataType::Utf8, false),
                timestamp("started", false),
                dictionary("symbol"),
                dictionary("buy_venue"),
                dictionary("sell_venue"),
                float("threshold_bp"),
                float("spread_bp"),
                float("peak_bp"),
                Field::new("net", DataType::Boolean, false),
            ],
            Dataset::Gaps => vec![
                timestamp("ts", false),
                Field::new("kind", DataType::Utf8, false),
                dictionary("symbol"),
                dictionary("venue"),
                Field::new("connection_id", DataType::UInt32, false),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// `GapEvent::kind` as written in the `kind` column of `gaps`.
pub fn gap_kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "disconnect",
        2 => "reconnect",
        3 => "quote_withdrawn",
        4 => "symbol_retired",
        _ => "unknown",
    }
}

/// `OpportunityEvent::kind` as written in the `kind` column of `opportunities`.
pub fn opportunity_kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "start",
        2 => "end",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_columns_exist() {
        for dataset in Dataset::ALL {
            assert_eq!(Dataset::from_name(dataset.name()), Some(dataset));
            let schema = dataset.schema();
            assert!(
                schema
                    .field_with_name(dataset.partition_time_column())
                    .is_ok()
            );
            for column in dataset.sort_columns() {
                assert!(schema.field_with_name(column).is_ok(), "{column}");
            }
        }
        assert_eq!(Dataset::from_name("nope"), None);
    }
}
