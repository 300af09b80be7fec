//! Arrow record batches → an R data.frame, column by column in Rust.
//!
//! Types map the way R users expect (and the way the R `arrow` package maps them):
//! integers that fit become `integer`, wider ones `numeric`; floats and decimals `numeric`;
//! booleans `logical`; strings `character`; dictionaries (and columns with recorded levels)
//! `factor`, with the recorded levels in order; dates `Date`; timestamps `POSIXct` with the
//! column's time zone. Nulls become NA. Other types are turned into text.

use crate::errors::{BindingError, Outcome};
use crate::rstrings;
use crate::rvalues::{self, CATEGORIES_KEY};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::cast;
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use extendr_api::prelude::*;
use std::collections::HashMap;

/// One data.frame from the batches (all of `schema`).
pub fn to_data_frame(schema: &SchemaRef, batches: &[RecordBatch]) -> Outcome<Robj> {
    let empty;
    let batches = if batches.is_empty() {
        empty = [RecordBatch::new_empty(schema.clone())];
        &empty[..]
    } else {
        batches
    };
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let categories = recorded_levels(schema);
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let arrays: Vec<&ArrayRef> = batches.iter().map(|b| b.column(index)).collect();
        let levels = categories.get(field.name());
        columns.push(column(field.name(), &arrays, rows, levels)?);
    }
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    Ok(rvalues::data_frame(&names, columns, rows)?)
}

/// Levels recorded at write time: `{column: (levels, ordered)}`.
fn recorded_levels(schema: &SchemaRef) -> HashMap<String, (Vec<String>, bool)> {
    let Some(raw) = schema.metadata().get(CATEGORIES_KEY) else {
        return HashMap::new();
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(raw) else {
        return HashMap::new();
    };
    map.into_iter()
        .filter_map(|(name, spec)| {
            let levels = spec
                .get("categories")?
                .as_array()?
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            let ordered = spec
                .get("ordered")
                .and_then(|o| o.as_bool())
                .unwrap_or(false);
            Some((name, (levels, ordered)))
        })
        .collect()
}

fn column(
    name: &str,
    arrays: &[&ArrayRef],
    rows: usize,
    levels: Option<&(Vec<String>, bool)>,
) -> Outcome<Robj> {
    let data_type = arrays
        .first()
        .map_or(DataType::Null, |a| a.data_type().clone());
    match &data_type {
        DataType::Dictionary(_, _) => factor(arrays, rows, levels),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if levels.is_some() => {
            factor(arrays, rows, levels)
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => strings(arrays, rows),
        DataType::Boolean => Ok(logicals(arrays, rows)),
        DataType::Null => Ok(Logicals::from_values((0..rows).map(|_| Rbool::na_value())).into()),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            let ints = cast_all(arrays, &DataType::Int32)?;
            if ints.iter().any(holds_na_int) {
                doubles(&cast_all(arrays, &DataType::Float64)?, rows)
            } else {
                Ok(integers(&ints, rows))
            }
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => wide_integers(arrays, rows),
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => doubles(&cast_all(arrays, &DataType::Float64)?, rows),
        DataType::Date32 | DataType::Date64 => dates(arrays, rows),
        DataType::Timestamp(unit, tz) => timestamps(arrays, rows, *unit, tz.as_deref()),
        other => match cast_all(arrays, &DataType::Utf8) {
            Ok(text) => strings(&text.iter().collect::<Vec<_>>(), rows),
            Err(_) => Err(BindingError::Data(format!(
                "column {name:?} has Arrow type {other}, which R cannot represent; \
                 leave it out with columns = c(...)"
            ))),
        },
    }
}

/// An iterator that knows its length, over values spread across batches.
struct Exact<I> {
    inner: I,
    left: usize,
}

impl<I: Iterator> Iterator for Exact<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.left = self.left.saturating_sub(1);
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator> ExactSizeIterator for Exact<I> {}

fn exact<I: Iterator>(inner: I, len: usize) -> Exact<I> {
    Exact { inner, left: len }
}

fn cast_all(arrays: &[&ArrayRef], to: &DataType) -> Outcome<Vec<ArrayRef>> {
    Ok(arrays
        .iter()
        .map(|a| cast(a.as_ref(), to))
        .collect::<Result<Vec<_>, _>>()?)
}

fn holds_na_int(array: &ArrayRef) -> bool {
    array
        .as_primitive::<Int32Type>()
        .iter()
        .any(|v| v == Some(i32::MIN))
}

fn integers(arrays: &[ArrayRef], rows: usize) -> Robj {
    let values = arrays
        .iter()
        .flat_map(|a| a.as_primitive::<Int32Type>().iter())
        .map(|v| v.unwrap_or(i32::MIN));
    Integers::from_values(exact(values, rows)).into()
}

fn doubles(arrays: &[ArrayRef], rows: usize) -> Outcome<Robj> {
    let na = rvalues::na_real();
    let values = arrays
        .iter()
        .flat_map(|a| a.as_primitive::<Float64Type>().iter())
        .map(|v| v.unwrap_or(na));
    Ok(Doubles::from_values(exact(values, rows)).into())
}

/// int64 and unsigned: `integer` when every value fits, else `numeric`.
fn wide_integers(arrays: &[&ArrayRef], rows: usize) -> Outcome<Robj> {
    let Ok(wide) = cast_all(arrays, &DataType::Int64) else {
        return doubles(&cast_all(arrays, &DataType::Float64)?, rows);
    };
    let fits = wide.iter().all(|a| {
        a.as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .all(|v| v > i64::from(i32::MIN) && v <= i64::from(i32::MAX))
    });
    if fits {
        let values = wide
            .iter()
            .flat_map(|a| a.as_primitive::<Int64Type>().iter())
            .map(|v| v.map_or(i32::MIN, |v| v as i32));
        Ok(Integers::from_values(exact(values, rows)).into())
    } else {
        let na = rvalues::na_real();
        let values = wide
            .iter()
            .flat_map(|a| a.as_primitive::<Int64Type>().iter())
            .map(|v| v.map_or(na, |v| v as f64));
        Ok(Doubles::from_values(exact(values, rows)).into())
    }
}

fn logicals(arrays: &[&ArrayRef], rows: usize) -> Robj {
    let values = arrays
        .iter()
        .flat_map(|a| a.as_boolean().iter())
        .map(|v| match v {
            Some(b) => Rbool::from_bool(b),
            None => Rbool::na_value(),
        });
    Logicals::from_values(exact(values, rows)).into()
}

fn strings(arrays: &[&ArrayRef], rows: usize) -> Outcome<Robj> {
    let text = cast_all(arrays, &DataType::Utf8)?;
    let values = text.iter().flat_map(|a| a.as_string::<i32>().iter());
    rstrings::character_vector(values, rows)
}

fn dates(arrays: &[&ArrayRef], rows: usize) -> Outcome<Robj> {
    let days = cast_all(arrays, &DataType::Date32)?;
    let na = rvalues::na_real();
    let values = days
        .iter()
        .flat_map(|a| a.as_primitive::<arrow_array::types::Date32Type>().iter())
        .map(|v| v.map_or(na, f64::from));
    let mut out: Robj = Doubles::from_values(exact(values, rows)).into();
    out.set_class(["Date"])?;
    Ok(out)
}

fn timestamps(
    arrays: &[&ArrayRef],
    rows: usize,
    unit: TimeUnit,
    tz: Option<&str>,
) -> Outcome<Robj> {
    let per_second = match unit {
        TimeUnit::Second => 1.0,
        TimeUnit::Millisecond => 1e3,
        TimeUnit::Microsecond => 1e6,
        TimeUnit::Nanosecond => 1e9,
    };
    let ticks = cast_all(arrays, &DataType::Int64)?;
    let na = rvalues::na_real();
    let values = ticks
        .iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().iter())
        .map(|v| v.map_or(na, |t| t as f64 / per_second));
    let mut out: Robj = Doubles::from_values(exact(values, rows)).into();
    out.set_class(["POSIXct", "POSIXt"])?;
    if let Some(tz) = tz {
        out.set_attrib("tzone", tz)?;
    }
    Ok(out)
}

/// A factor: levels as recorded (else as met), codes mapped batch by batch.
fn factor(
    arrays: &[&ArrayRef],
    rows: usize,
    recorded: Option<&(Vec<String>, bool)>,
) -> Outcome<Robj> {
    let (mut levels, ordered) = recorded.cloned().unwrap_or_default();
    let mut index: HashMap<String, i32> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i as i32 + 1))
        .collect();
    let mut codes: Vec<i32> = Vec::with_capacity(rows);
    for array in arrays {
        let (keys, values) = match array.data_type() {
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary();
                (
                    Some(cast(dict.keys(), &DataType::Int32)?),
                    cast(dict.values().as_ref(), &DataType::Utf8)?,
                )
            }
            _ => (None, cast(array.as_ref(), &DataType::Utf8)?),
        };
        let mut code_of = |text: &str| -> i32 {
            if let Some(code) = index.get(text) {
                return *code;
            }
            levels.push(text.to_owned());
            let code = levels.len() as i32;
            index.insert(text.to_owned(), code);
            code
        };
        let values = values.as_string::<i32>();
        match keys {
            Some(keys) => {
                let mapped: Vec<i32> = values
                    .iter()
                    .map(|v| v.map_or(i32::MIN, &mut code_of))
                    .collect();
                codes.extend(keys.as_primitive::<Int32Type>().iter().map(|k| {
                    k.and_then(|k| mapped.get(k as usize).copied())
                        .unwrap_or(i32::MIN)
                }));
            }
            None => codes.extend(values.iter().map(|v| v.map_or(i32::MIN, &mut code_of))),
        }
    }
    let mut out: Robj = Integers::from_values(codes).into();
    out.set_attrib(
        "levels",
        rstrings::character_vector(levels.iter().map(|l| Some(l.as_str())), levels.len())?,
    )?;
    if ordered {
        out.set_class(["ordered", "factor"])?;
    } else {
        out.set_class(["factor"])?;
    }
    Ok(out)
}
