//! A day's opportunity cycles per pair, from the `opportunities` dataset: a cycle is counted
//! once, by its `start` row, on the day its start falls in (the partition of the row's `ts`).
//! Rows of both cycle modes count (`net` says whether the engine ran cycles on the spread net of
//! fees; it runs one mode at a time, so a threshold's starts are never counted twice).

use std::collections::BTreeMap;
use std::path::Path;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tickflow_formats::Dataset;

use crate::columns::{floats, strings};
use crate::files::{Skipped, open_day};
use crate::{Date, HistoryError, PairCycles};

/// (symbol, buy venue, sell venue).
pub(crate) type PairKey = (String, String, String);

const COLUMNS: [&str; 5] = ["kind", "symbol", "buy_venue", "sell_venue", "threshold_bp"];

/// Cycles per pair at `threshold_bp`, sorted by pair (string order of the names).
pub(crate) fn day_cycles(
    root: &Path,
    date: Date,
    threshold_bp: u32,
    skipped: &mut Skipped,
) -> Result<BTreeMap<PairKey, u64>, HistoryError> {
    let threshold = f64::from(threshold_bp);
    let mut cycles: BTreeMap<PairKey, u64> = BTreeMap::new();
    for file in open_day(root, Dataset::Opportunities, date, false, skipped)? {
        let positions: Option<Vec<usize>> = COLUMNS
            .iter()
            .map(|name| crate::files::column_position(&file, name))
            .collect();
        let Some(positions) = positions else {
            skipped.add(
                &file.path,
                "not an opportunities file (columns missing)".into(),
            );
            continue;
        };
        let mask = ProjectionMask::leaves(
            file.metadata.metadata().file_metadata().schema_descr(),
            positions,
        );
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file.file, file.metadata.clone())
                .with_projection(mask)
                .build();
        let reader = match reader {
            Ok(reader) => reader,
            Err(error) => {
                skipped.add(&file.path, error.to_string());
                continue;
            }
        };
        let mut counts: BTreeMap<PairKey, u64> = BTreeMap::new();
        let mut damaged = None;
        for batch in reader {
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    damaged = Some(error.to_string());
                    break;
                }
            };
            let (Some(kind), Some(symbol), Some(buy), Some(sell), Some(thresholds)) = (
                strings(&batch, "kind"),
                strings(&batch, "symbol"),
                strings(&batch, "buy_venue"),
                strings(&batch, "sell_venue"),
                floats(&batch, "threshold_bp"),
            ) else {
                damaged = Some("opportunities columns of unexpected types".into());
                break;
            };
            for row in 0..batch.num_rows() {
                if kind.value(row) != "start" || (thresholds.value(row) - threshold).abs() > 1e-9 {
                    continue;
                }
                let key = (
                    symbol.value(row).to_string(),
                    buy.value(row).to_string(),
                    sell.value(row).to_string(),
                );
                *counts.entry(key).or_default() += 1;
            }
        }
        // A file that fails half-way counts not at all: its rows are either all in or all out.
        if let Some(reason) = damaged {
            skipped.add(&file.path, reason);
            continue;
        }
        for (key, count) in counts {
            *cycles.entry(key).or_default() += count;
        }
    }
    Ok(cycles)
}

pub(crate) fn to_pair_cycles(cycles: BTreeMap<PairKey, u64>) -> Vec<PairCycles> {
    cycles
        .into_iter()
        .map(|((symbol, buy_venue, sell_venue), cycles)| PairCycles {
            symbol,
            buy_venue,
            sell_venue,
            cycles,
        })
        .collect()
}
