//! R data.frame → one Arrow record batch, column by column in Rust.
//!
//! Each column is copied once into Arrow buffers (R's memory belongs to R's garbage collector
//! and its main thread; the encoder runs on other threads). NA becomes a null. Factor levels
//! (with their order, unused ones included) are recorded in the schema metadata under
//! `batchstore.categories`, the same key the Python package uses for pandas categories, so
//! Parquet's rebuilt dictionaries lose nothing.

use crate::errors::{BindingError, Outcome};
use crate::rvalues::{self, CATEGORIES_KEY};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int32Array,
    LargeStringArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{Field, Schema};
use extendr_api::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// Converts a data.frame (R side has already made every string UTF-8) to a record batch.
pub fn to_record_batch(frame: &Robj, rows: usize) -> Outcome<RecordBatch> {
    let list = List::try_from(frame)
        .map_err(|_| BindingError::InvalidArgument("data must be a data.frame".to_owned()))?;
    let names: Vec<String> = match frame.names() {
        Some(names) => names.map(str::to_owned).collect(),
        None => (1..=list.len()).map(|i| format!("V{i}")).collect(),
    };
    let mut fields = Vec::with_capacity(list.len());
    let mut columns = Vec::with_capacity(list.len());
    let mut categories = serde_json::Map::new();
    for (name, column) in names.iter().zip(list.values()) {
        let converted = convert(name, &column)?;
        if converted.array.len() != rows {
            return Err(BindingError::InvalidArgument(format!(
                "column {name:?} has {} values but the frame has {rows} rows",
                converted.array.len()
            )));
        }
        if let Some(levels) = converted.levels {
            categories.insert(name.clone(), levels);
        }
        fields.push(Field::new(
            name,
            converted.array.data_type().clone(),
            // Nullable even without NA here, so later frames with NA still match the schema.
            true,
        ));
        columns.push(converted.array);
    }
    let mut metadata = HashMap::new();
    if !categories.is_empty() {
        metadata.insert(
            CATEGORIES_KEY.to_owned(),
            serde_json::Value::Object(categories).to_string(),
        );
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

struct Converted {
    array: ArrayRef,
    /// `{"categories": [...], "ordered": bool}` for factors.
    levels: Option<serde_json::Value>,
}

impl Converted {
    fn plain(array: ArrayRef) -> Self {
        Converted {
            array,
            levels: None,
        }
    }
}

fn convert(name: &str, column: &Robj) -> Outcome<Converted> {
    let classes = rvalues::classes(column);
    let has = |c: &str| classes.iter().any(|k| k == c);
    if has("factor") {
        return factor(name, column, has("ordered"));
    }
    if has("Date") {
        return date(name, column).map(Converted::plain);
    }
    if has("POSIXct") {
        return timestamp(name, column).map(Converted::plain);
    }
    if let Some(other) = classes.iter().find(|c| {
        !matches!(
            c.as_str(),
            "AsIs" | "integer" | "numeric" | "character" | "logical"
        )
    }) {
        return Err(unsupported(name, &format!("class {other:?}")));
    }
    let array: ArrayRef = match column.rtype() {
        Rtype::Doubles => Arc::new(doubles(column)),
        Rtype::Integers => Arc::new(integers(column)),
        Rtype::Logicals => Arc::new(logicals(column)),
        Rtype::Strings => strings(column)?,
        other => return Err(unsupported(name, &format!("R type {other:?}"))),
    };
    Ok(Converted::plain(array))
}

fn unsupported(name: &str, what: &str) -> BindingError {
    BindingError::InvalidArgument(format!(
        "column {name:?} has {what}, which batchstore cannot store; use numeric, integer, \
         logical, character, factor, Date or POSIXct columns (convert others first, for \
         example with as.character())"
    ))
}

fn real_slice(column: &Robj) -> &[f64] {
    column.as_real_slice().unwrap_or(&[])
}

fn int_slice(column: &Robj) -> &[i32] {
    column.as_integer_slice().unwrap_or(&[])
}

/// Nulls where `is_null` holds; `None` when there are none.
fn nulls<T>(values: &[T], is_null: impl Fn(&T) -> bool) -> Option<NullBuffer> {
    if !values.iter().any(&is_null) {
        return None;
    }
    Some(NullBuffer::new(BooleanBuffer::collect_bool(
        values.len(),
        |i| !is_null(&values[i]),
    )))
}

fn doubles(column: &Robj) -> Float64Array {
    let values = real_slice(column);
    Float64Array::new(
        values.to_vec().into(),
        nulls(values, |x| rvalues::is_na_real(*x)),
    )
}

fn integers(column: &Robj) -> Int32Array {
    let values = int_slice(column);
    Int32Array::new(values.to_vec().into(), nulls(values, |x| *x == i32::MIN))
}

fn logicals(column: &Robj) -> BooleanArray {
    let values = column.as_logical_slice().unwrap_or(&[]);
    let bits = BooleanBuffer::collect_bool(values.len(), |i| values[i].is_true());
    BooleanArray::new(bits, nulls(values, |x| x.is_na()))
}

fn strings(column: &Robj) -> Outcome<ArrayRef> {
    let values = Strings::try_from(column)?;
    let slice = values.as_slice();
    let total: usize = slice
        .iter()
        .filter(|s| !s.is_na())
        .map(|s| s.as_ref().len())
        .sum();
    let iter = slice
        .iter()
        .map(|s| if s.is_na() { None } else { Some(s.as_ref()) });
    if total < i32::MAX as usize {
        Ok(Arc::new(iter.collect::<StringArray>()))
    } else {
        Ok(Arc::new(iter.collect::<LargeStringArray>()))
    }
}

fn factor(name: &str, column: &Robj, ordered: bool) -> Outcome<Converted> {
    let levels: Vec<String> = column
        .get_attrib("levels")
        .and_then(|l| {
            l.as_str_vector()
                .map(|v| v.iter().map(|s| (*s).to_owned()).collect())
        })
        .unwrap_or_default();
    let codes = int_slice(column);
    let count = levels.len() as i32;
    if let Some(bad) = codes
        .iter()
        .find(|c| **c != i32::MIN && (**c < 1 || **c > count))
    {
        return Err(BindingError::InvalidArgument(format!(
            "factor column {name:?} has code {bad} but only {count} levels"
        )));
    }
    let keys = Int32Array::new(
        codes
            .iter()
            .map(|c| c.wrapping_sub(1))
            .collect::<Vec<_>>()
            .into(),
        nulls(codes, |c| *c == i32::MIN),
    );
    let dictionary = Arc::new(StringArray::from_iter_values(&levels));
    let array = DictionaryArray::<Int32Type>::try_new(keys, dictionary)?;
    Ok(Converted {
        array: Arc::new(array),
        levels: Some(serde_json::json!({ "categories": levels, "ordered": ordered })),
    })
}

/// Days since 1970-01-01 (R stores Dates as doubles, sometimes as integers).
fn date(name: &str, column: &Robj) -> Outcome<ArrayRef> {
    if column.rtype() == Rtype::Integers {
        let days = int_slice(column);
        return Ok(Arc::new(Date32Array::new(
            days.to_vec().into(),
            nulls(days, |d| *d == i32::MIN),
        )));
    }
    let days = real_slice(column);
    let mut out = Vec::with_capacity(days.len());
    for d in days {
        if d.is_nan() {
            out.push(0);
        } else if d.is_finite() && d.abs() < f64::from(i32::MAX) {
            out.push(d.floor() as i32);
        } else {
            return Err(BindingError::InvalidArgument(format!(
                "Date column {name:?} has the value {d}, which is not a date"
            )));
        }
    }
    Ok(Arc::new(Date32Array::new(
        out.into(),
        nulls(days, |d| d.is_nan()),
    )))
}

/// Seconds since the epoch → microseconds, with the column's time zone.
fn timestamp(name: &str, column: &Robj) -> Outcome<ArrayRef> {
    let tz = rvalues::time_zone(column);
    let seconds: Vec<f64> = match column.rtype() {
        Rtype::Integers => int_slice(column)
            .iter()
            .map(|s| {
                if *s == i32::MIN {
                    f64::NAN
                } else {
                    f64::from(*s)
                }
            })
            .collect(),
        _ => real_slice(column).to_vec(),
    };
    let mut micros = Vec::with_capacity(seconds.len());
    for s in &seconds {
        if s.is_nan() {
            micros.push(0);
        } else if s.is_finite() && s.abs() < 9.2e12 {
            micros.push((s * 1e6).round() as i64);
        } else {
            return Err(BindingError::InvalidArgument(format!(
                "POSIXct column {name:?} has the value {s}, which is not a time"
            )));
        }
    }
    let array = TimestampMicrosecondArray::new(micros.into(), nulls(&seconds, |s| s.is_nan()))
        .with_timezone_opt(tz);
    Ok(Arc::new(array))
}
