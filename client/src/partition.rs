//! Naming a partition: the one place where a user's value becomes a partition's canonical text
//! and suggests a key type.
//!
//! Every front end converts its host values (Python objects, R vectors, command-line text) into
//! [`PartitionValue`]s and nothing more; the rules below are the only ones, so Python, R and
//! tablectl name the same partition identically and auto-create the same table:
//!
//! | value                | canonical text          | suggested key type |
//! |----------------------|-------------------------|--------------------|
//! | text                 | unchanged               | `string`           |
//! | integer              | decimal digits          | `int64`            |
//! | whole float (`3.0`)  | decimal digits (`3`)    | `int64`            |
//! | date                 | `YYYY-MM-DD`            | `date`             |
//! | bool                 | `true` / `false`        | `string`           |
//!
//! Refused, with one message each: floats that are not whole or do not fit 64 bits, dates with
//! a time, missing values (None, NA), and a partition mixing named and positional values.

use crate::error::{ClientError, Result};
use crate::types::{KeyType, PartitionKey};
use chrono::NaiveDate;

/// Most characters of a hostile value quoted in an error.
const QUOTED: usize = 60;

/// One partition value as a front end hands it over, before normalisation.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionValue {
    Text(String),
    Int(i64),
    /// Accepted only when whole (pandas and R hold integers as floats).
    Float(f64),
    Date(NaiveDate),
    Bool(bool),
    /// A date and time, as the host displays it; always refused (a partition is a date or text).
    DateTime(String),
    /// None / NA; always refused.
    Missing,
}

impl PartitionValue {
    /// The canonical text that names the partition on the wire and in the catalog.
    ///
    /// # Errors
    /// `InvalidArgument` for the refused values listed in the module docs.
    pub fn canonical(&self) -> Result<String> {
        match self {
            PartitionValue::Text(text) => Ok(text.clone()),
            PartitionValue::Int(i) => Ok(i.to_string()),
            PartitionValue::Float(f) => whole(*f).map(|i| i.to_string()),
            PartitionValue::Date(d) => Ok(d.format("%Y-%m-%d").to_string()),
            PartitionValue::Bool(b) => Ok(if *b { "true" } else { "false" }.to_owned()),
            PartitionValue::DateTime(shown) => Err(ClientError::InvalidArgument(format!(
                "partition value {} is a date and time; use a date or a string",
                quote(shown)
            ))),
            PartitionValue::Missing => Err(ClientError::InvalidArgument(
                "a partition value cannot be missing (None or NA)".to_owned(),
            )),
        }
    }

    /// The key type this value suggests when a write creates its table.
    pub fn key_type(&self) -> KeyType {
        match self {
            PartitionValue::Int(_) | PartitionValue::Float(_) => KeyType::Int64,
            PartitionValue::Date(_) => KeyType::Date,
            _ => KeyType::String,
        }
    }
}

/// A float as a whole 64-bit integer, or the error saying why it is not one.
fn whole(f: f64) -> Result<i64> {
    // 2^63 is exactly representable; every whole float below it in magnitude fits an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) {
        #[allow(clippy::cast_possible_truncation)]
        return Ok(f as i64);
    }
    let why = if f.is_finite() && f.fract() == 0.0 {
        "is too large for a partition value"
    } else {
        "is not a whole number"
    };
    Err(ClientError::InvalidArgument(format!(
        "partition value {f} {why}; use an integer, a date or a string"
    )))
}

/// At most [`QUOTED`] characters of a value, quoted.
fn quote(text: &str) -> String {
    let mut shown: String = text.chars().take(QUOTED).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// A partition as the user names it: canonical values, each with its key or positional (key
/// `None`, matched to the table's keys in order by the metastore). Remembers the key type each
/// value suggests, for a write that creates its table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionSpec {
    values: Vec<(Option<String>, String)>,
    key_types: Vec<KeyType>,
}

impl PartitionSpec {
    /// Normalises a front end's values: all named or all positional.
    ///
    /// # Errors
    /// `InvalidArgument` for a refused value or a mix of named and positional values.
    pub fn from_values(values: Vec<(Option<String>, PartitionValue)>) -> Result<Self> {
        let named = values.iter().filter(|(k, _)| k.is_some()).count();
        if named != 0 && named != values.len() {
            return Err(ClientError::InvalidArgument(
                "name every partition value, or none (then they follow the table's key order)"
                    .to_owned(),
            ));
        }
        if let Some((key, _)) = values.iter().find(|(k, _)| k.as_deref() == Some("")) {
            return Err(ClientError::InvalidArgument(format!(
                "a partition key name cannot be empty ({key:?})"
            )));
        }
        let mut spec = PartitionSpec::default();
        for (key, value) in values {
            spec.key_types.push(value.key_type());
            spec.values.push((key, value.canonical()?));
        }
        Ok(spec)
    }

    /// Text values by position, matched to the table's partition keys in order.
    pub fn positional<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::texts(values.into_iter().map(|v| (None, v.into())))
    }

    /// Text values by key.
    pub fn named<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::texts(pairs.into_iter().map(|(k, v)| (Some(k.into()), v.into())))
    }

    fn texts(values: impl Iterator<Item = (Option<String>, String)>) -> Self {
        let values: Vec<_> = values.collect();
        let key_types = vec![KeyType::String; values.len()];
        PartitionSpec { values, key_types }
    }

    /// The canonical values, each with its key when named.
    pub fn values(&self) -> &[(Option<String>, String)] {
        &self.values
    }

    /// The partition keys a write creating the table would declare: the names with the types
    /// the values suggest. `None` when the values are positional (their keys are unknown).
    pub fn suggested_keys(&self) -> Option<Vec<PartitionKey>> {
        self.values
            .iter()
            .zip(&self.key_types)
            .map(|((key, _), key_type)| {
                key.as_ref().map(|name| PartitionKey {
                    name: name.clone(),
                    key_type: *key_type,
                })
            })
            .collect()
    }
}

/// `ds=20161031/region=eu`, for messages and tables.
pub fn describe_partition(partition: &[(String, String)]) -> String {
    if partition.is_empty() {
        return "(unpartitioned)".to_owned();
    }
    partition
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(v: PartitionValue) -> Result<String> {
        v.canonical()
    }

    #[test]
    fn values_have_one_canonical_text_and_key_type() {
        let date = NaiveDate::from_ymd_opt(2016, 10, 31).unwrap();
        let cases = [
            (PartitionValue::Text("eu".into()), "eu", KeyType::String),
            (PartitionValue::Int(20161031), "20161031", KeyType::Int64),
            (
                PartitionValue::Float(20161031.0),
                "20161031",
                KeyType::Int64,
            ),
            (PartitionValue::Float(-0.0), "0", KeyType::Int64),
            (PartitionValue::Date(date), "2016-10-31", KeyType::Date),
            (PartitionValue::Bool(true), "true", KeyType::String),
        ];
        for (value, canonical, key_type) in cases {
            assert_eq!(text(value.clone()).unwrap(), canonical, "{value:?}");
            assert_eq!(value.key_type(), key_type, "{value:?}");
        }
    }

    #[test]
    fn refused_values_say_why() {
        for (value, why) in [
            (PartitionValue::Float(1.5), "not a whole number"),
            (PartitionValue::Float(f64::NAN), "not a whole number"),
            (PartitionValue::Float(f64::INFINITY), "not a whole number"),
            (PartitionValue::Float(1e19), "too large"),
            (
                PartitionValue::DateTime("2016-10-31 12:00".into()),
                "date and time",
            ),
            (PartitionValue::Missing, "missing"),
        ] {
            let error = text(value.clone()).unwrap_err().to_string();
            assert!(error.contains(why), "{value:?}: {error}");
        }
    }

    #[test]
    fn a_partition_is_all_named_or_all_positional() {
        let mixed = vec![
            (Some("ds".to_owned()), PartitionValue::Int(1)),
            (None, PartitionValue::Int(2)),
        ];
        assert!(PartitionSpec::from_values(mixed).is_err());
        let named = PartitionSpec::from_values(vec![
            (Some("ds".to_owned()), PartitionValue::Float(3.0)),
            (Some("region".to_owned()), PartitionValue::Text("eu".into())),
        ])
        .unwrap();
        let keys = named.suggested_keys().unwrap();
        assert_eq!(keys[0].key_type, KeyType::Int64);
        assert_eq!(keys[1].key_type, KeyType::String);
        let positional = PartitionSpec::from_values(vec![(None, PartitionValue::Int(3))]).unwrap();
        assert!(positional.suggested_keys().is_none());
        assert_eq!(PartitionSpec::default().suggested_keys(), Some(Vec::new()));
    }

    proptest! {
        /// An integer and the same number held as a float name one partition with one key type.
        #[test]
        fn whole_floats_name_the_integer_partition(i in -(1i64 << 53)..(1i64 << 53)) {
            #[allow(clippy::cast_precision_loss)]
            let float = PartitionValue::Float(i as f64);
            prop_assert_eq!(float.canonical().unwrap(), PartitionValue::Int(i).canonical().unwrap());
            prop_assert_eq!(float.key_type(), PartitionValue::Int(i).key_type());
        }
    }
}
