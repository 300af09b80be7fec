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

/// A character vector (NULL: empty), without NA.
pub fn texts(value: &Robj, what: &str) -> Outcome<Vec<String>> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    let strings = Strings::try_from(value)
        .map_err(|_| BindingError::InvalidArgument(format!("{what} must be a character vector")))?;
    strings
        .iter()
        .map(|s| {
            if s.is_na() {
                Err(BindingError::InvalidArgument(format!(
                    "{what} cannot hold NA"
                )))
            } else {
                Ok(s.to_string())
            }
        })
        .collect()
}

/// An optional time (NULL or NA: none): POSIXct (seconds), Date (days; midnight UTC) or text
/// read by the client's one time parser.
pub fn optional_time(value: &Robj) -> Outcome<Option<chrono::DateTime<chrono::Utc>>> {
    if value.is_null() {
        return Ok(None);
    }
    if value.len() != 1 {
        return Err(BindingError::InvalidArgument(
            "as_of must be a single time".to_owned(),
        ));
    }
    if let Some(text) = value.as_str() {
        if text.is_na() {
            return Ok(None);
        }
        return Ok(Some(batchstore_client::parse_time(text)?));
    }
    let classes = rvalues::classes(value);
    let number = value.as_real().filter(|x| !rvalues::is_na_real(*x));
    let seconds = match number {
        None => return Ok(None),
        Some(days) if classes.iter().any(|c| c == "Date") => days * 86_400.0,
        Some(seconds) if classes.iter().any(|c| c == "POSIXct") => seconds,
        Some(_) => {
            return Err(BindingError::InvalidArgument(
                "as_of must be a POSIXct time, a Date or text such as \"2024-05-01 12:00:00\""
                    .to_owned(),
            ));
        }
    };
    chrono::DateTime::from_timestamp_micros((seconds * 1e6).round() as i64)
        .filter(|_| seconds.is_finite())
        .map(Some)
        .ok_or_else(|| BindingError::InvalidArgument("as_of is out of range".to_owned()))
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

/// An optional duration (NULL or NA: none): seconds as a number, a difftime, or text such as
/// "7d" read by the client's one duration parser.
pub fn optional_duration(value: &Robj, what: &str) -> Outcome<Option<std::time::Duration>> {
    if value.is_null() {
        return Ok(None);
    }
    if value.len() != 1 {
        return Err(BindingError::InvalidArgument(format!(
            "{what} must be a single duration"
        )));
    }
    if let Some(text) = value.as_str() {
        if text.is_na() {
            return Ok(None);
        }
        return Ok(Some(batchstore_client::parse_duration(text)?));
    }
    let Some(number) = value
        .as_real()
        .or_else(|| value.as_integer().map(f64::from))
        .filter(|x| !rvalues::is_na_real(*x))
    else {
        return Err(BindingError::InvalidArgument(format!(
            "{what} must be seconds, a difftime or text such as \"7d\""
        )));
    };
    let seconds = match rvalues::difftime_units(value).as_deref() {
        None | Some("secs") => number,
        Some("mins") => number * 60.0,
        Some("hours") => number * 3600.0,
        Some("days") => number * 86_400.0,
        Some("weeks") => number * 604_800.0,
        Some(other) => {
            return Err(BindingError::InvalidArgument(format!(
                "{what} is a difftime in {other}; use secs, mins, hours, days or weeks"
            )));
        }
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(BindingError::InvalidArgument(format!(
            "{what} must be positive, not {seconds}"
        )));
    }
    Ok(Some(std::time::Duration::from_secs_f64(seconds)))
}
