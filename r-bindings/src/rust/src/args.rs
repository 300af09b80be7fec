//! Reading the plain arguments R passes to the entry points (the R functions have already
//! checked their shape; these checks keep a direct `.Call` from doing harm).

use crate::errors::{BindingError, Outcome};
use crate::rvalues;
use batchstore_client::{Client, Expected, TableName};
use extendr_api::prelude::*;

/// The client behind a connection object.
pub fn client(value: &Robj) -> Outcome<Client> {
    let stale = || {
        BindingError::InvalidArgument(
            "not a live batchstore connection (connections do not survive saving and \
             restoring a session); make one with sf_connect()"
                .to_owned(),
        )
    };
    let pointer: &ExternalPtr<Client> = value.try_into().map_err(|_| stale())?;
    pointer.try_addr().cloned().map_err(|_| stale())
}

/// A required string.
pub fn text(value: &Robj, what: &str) -> Outcome<String> {
    rvalues::optional_string(value).ok_or_else(|| {
        BindingError::InvalidArgument(format!("{what} must be a single string, not NA or NULL"))
    })
}

/// An optional string (NULL or NA: none).
pub fn optional_text(value: &Robj) -> Option<String> {
    rvalues::optional_string(value)
}

pub fn table(namespace: &Robj, table: &Robj) -> Outcome<TableName> {
    Ok(TableName::new(
        text(namespace, "namespace")?,
        text(table, "resource")?,
    ))
}

pub fn flag(value: &Robj) -> bool {
    value.as_bool().unwrap_or(false)
}

/// An optional whole number (NULL or NA: none).
pub fn optional_number(value: &Robj, what: &str) -> Outcome<Option<i64>> {
    if value.is_null() {
        return Ok(None);
    }
    let number = value
        .as_real()
        .or_else(|| value.as_integer().map(f64::from))
        .ok_or_else(|| BindingError::InvalidArgument(format!("{what} must be a number")))?;
    if number.is_nan() {
        return Ok(None);
    }
    if number.fract() != 0.0 || number.abs() > 9.0e15 {
        return Err(BindingError::InvalidArgument(format!(
            "{what} must be a whole number, not {number}"
        )));
    }
    Ok(Some(number as i64))
}

/// A compare-and-swap expectation: a batch id, or "-" for "the partition must be new".
pub fn expected(value: &Robj) -> Option<Expected> {
    optional_text(value).as_deref().map(Expected::parse)
}

/// A progress setting: a delay in seconds before showing it (R passes a negative one for none).
pub fn progress_delay(value: &Robj) -> Option<std::time::Duration> {
    value
        .as_real()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(std::time::Duration::from_secs_f64)
}
