//! Small facts about R values shared by both conversion directions.

use extendr_api::prelude::*;

/// Schema metadata key holding factor levels / pandas categories (shared with Python).
pub const CATEGORIES_KEY: &str = "batchstore.categories";

/// R's `NA_real_` is one particular NaN (low word 1954); every other NaN is `NaN`.
pub fn is_na_real(x: f64) -> bool {
    x.is_nan() && (x.to_bits() & 0xFFFF_FFFF) == 1954
}

/// The bits of R's `NA_real_`.
pub fn na_real() -> f64 {
    f64::from_bits(0x7FF0_0000_0000_07A2)
}

/// The `class` attribute, or nothing.
pub fn classes(value: &Robj) -> Vec<String> {
    value
        .get_attrib("class")
        .and_then(|c| {
            c.as_str_vector()
                .map(|v| v.iter().map(|s| (*s).to_owned()).collect())
        })
        .unwrap_or_default()
}

/// A POSIXct column's `tzone`; `None` for none or "" (R's local time).
pub fn time_zone(value: &Robj) -> Option<String> {
    value
        .get_attrib("tzone")
        .and_then(|t| {
            t.as_str_vector()
                .and_then(|v| v.first().map(|s| (*s).to_owned()))
        })
        .filter(|t| !t.is_empty())
}

/// `Some(text)` for a non-NA string scalar.
pub fn optional_string(value: &Robj) -> Option<String> {
    if value.is_null() || value.len() != 1 {
        return None;
    }
    let text = value.as_str()?;
    if text.is_na() {
        None
    } else {
        Some(text.to_owned())
    }
}

/// A data.frame from named columns of equal length.
pub fn data_frame(names: &[&str], columns: Vec<Robj>, rows: usize) -> extendr_api::Result<Robj> {
    let mut frame: Robj = List::from_values(columns).into();
    frame.set_names(names)?;
    frame.set_attrib(
        "row.names",
        Integers::from_values([i32::MIN, -(i32::try_from(rows).unwrap_or(i32::MAX))]),
    )?;
    frame.set_class(["data.frame"])?;
    Ok(frame)
}

/// The units of a difftime (`None` for anything else).
pub fn difftime_units(value: &Robj) -> Option<String> {
    if !classes(value).iter().any(|c| c == "difftime") {
        return None;
    }
    value
        .get_attrib("units")
        .and_then(|u| u.as_str().map(str::to_owned))
}
