//! Reading named columns out of Arrow batches of the history: dictionary or plain strings,
//! timestamps, floats and booleans. A column of the wrong type reads as absent; callers decide
//! whether that skips the file.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};

/// A string column (dictionary-encoded with `Int32` keys, as the sink writes, or plain UTF-8).
pub(crate) enum Strings<'a> {
    Dictionary {
        keys: &'a arrow_array::Int32Array,
        values: &'a arrow_array::StringArray,
    },
    Plain(&'a arrow_array::StringArray),
}

impl<'a> Strings<'a> {
    pub(crate) fn of(column: &'a ArrayRef) -> Option<Strings<'a>> {
        if let Some(dictionary) = column.as_dictionary_opt::<Int32Type>() {
            let values = dictionary.values().as_string_opt::<i32>()?;
            return Some(Strings::Dictionary {
                keys: dictionary.keys(),
                values,
            });
        }
        column.as_string_opt::<i32>().map(Strings::Plain)
    }

    /// The value of `row` ("" for a null, which the sink never writes).
    pub(crate) fn value(&self, row: usize) -> &'a str {
        match self {
            Strings::Dictionary { keys, values } => {
                if keys.is_null(row) {
                    return "";
                }
                let key = keys.value(row);
                usize::try_from(key)
                    .ok()
                    .filter(|&key| key < values.len())
                    .map_or("", |key| values.value(key))
            }
            Strings::Plain(values) => {
                if values.is_null(row) {
                    ""
                } else {
                    values.value(row)
                }
            }
        }
    }
}

pub(crate) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    batch.column_by_name(name)
}

pub(crate) fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Option<Strings<'a>> {
    column(batch, name).and_then(Strings::of)
}

pub(crate) fn timestamps_ns<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Option<&'a arrow_array::TimestampNanosecondArray> {
    column(batch, name)?.as_primitive_opt::<TimestampNanosecondType>()
}

pub(crate) fn floats<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a Float64Array> {
    column(batch, name)?.as_primitive_opt::<Float64Type>()
}

/// A nullable float: NaN for a null (the sink writes null instead of NaN, so NaN means "none").
pub(crate) fn float_or_nan(values: &Float64Array, row: usize) -> f64 {
    if values.is_null(row) {
        f64::NAN
    } else {
        values.value(row)
    }
}
