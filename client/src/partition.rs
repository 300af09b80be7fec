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

/// How a [`KeyPredicate`] compares a partition key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PredicateOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

impl PredicateOp {
    /// `=` (or `==`), `!=` (or `<>`), `<`, `<=`, `>`, `>=`, `in`.
    ///
    /// # Errors
    /// `InvalidArgument` for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "=" | "==" => PredicateOp::Eq,
            "!=" | "<>" => PredicateOp::Ne,
            "<" => PredicateOp::Lt,
            "<=" => PredicateOp::Le,
            ">" => PredicateOp::Gt,
            ">=" => PredicateOp::Ge,
            "in" => PredicateOp::In,
            other => {
                return Err(ClientError::InvalidArgument(format!(
                    "unknown comparison {}; use =, !=, <, <=, >, >= or in",
                    quote(other)
                )));
            }
        })
    }

    /// The operator as users write it.
    pub fn symbol(self) -> &'static str {
        match self {
            PredicateOp::Eq => "==",
            PredicateOp::Ne => "!=",
            PredicateOp::Lt => "<",
            PredicateOp::Le => "<=",
            PredicateOp::Gt => ">",
            PredicateOp::Ge => ">=",
            PredicateOp::In => "in",
        }
    }
}

/// A condition on one partition key (`ds >= 2024-01-01`, `region in (eu, us)`), resolved by
/// the metastore: a read with conditions resolves only the partitions satisfying all of them,
/// comparing as the key's type. Values are canonical texts, named as partition values are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyPredicate {
    pub key: String,
    pub op: PredicateOp,
    pub values: Vec<String>,
}

impl KeyPredicate {
    /// A condition from a front end's values (one, or one or more for `in`).
    ///
    /// # Errors
    /// `InvalidArgument` for a refused value, an empty key or a wrong number of values.
    pub fn new(key: &str, op: PredicateOp, values: Vec<PartitionValue>) -> Result<Self> {
        if key.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a partition filter names an empty key".to_owned(),
            ));
        }
        let ok = match op {
            PredicateOp::In => !values.is_empty(),
            _ => values.len() == 1,
        };
        if !ok {
            return Err(ClientError::InvalidArgument(format!(
                "the filter on {key} has {} values; `in` takes one or more, every other \
                 comparison exactly one",
                values.len()
            )));
        }
        Ok(KeyPredicate {
            key: key.to_owned(),
            op,
            values: values
                .iter()
                .map(PartitionValue::canonical)
                .collect::<Result<_>>()?,
        })
    }

    /// Parses `KEY OP VALUE` or `KEY in (V1, V2, …)`, as written on the command line and in
    /// R: `ds >= 2024-01-01`, `region == 'eu'`, `ds in (1, 2)`. Values may be quoted with `'`
    /// or `"` (needed for a value holding a comma or a parenthesis).
    ///
    /// # Errors
    /// `InvalidArgument` saying what is wrong with the text.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            ClientError::InvalidArgument(format!(
                "cannot read the partition filter {}: {why}; write it as KEY OP VALUE (OP one \
                 of =, !=, <, <=, >, >=) or KEY in (V1, V2, …)",
                quote(text)
            ))
        };
        let trimmed = text.trim();
        let key_end = trimmed
            .find(|c: char| c.is_whitespace() || "=!<>".contains(c))
            .ok_or_else(|| bad("no comparison"))?;
        let (key, rest) = trimmed.split_at(key_end);
        let rest = rest.trim_start();
        let op_len = rest
            .char_indices()
            .find(|(_, c)| !"=!<>".contains(*c))
            .map_or(rest.len(), |(i, _)| i);
        let is_in = rest.get(..2).is_some_and(|w| w.eq_ignore_ascii_case("in"))
            && rest[2..]
                .chars()
                .next()
                .is_some_and(|c| c.is_whitespace() || c == '(' || c == '[');
        let (op, rest) = if op_len > 0 {
            rest.split_at(op_len)
        } else if is_in {
            rest.split_at(2)
        } else {
            return Err(bad("no comparison after the key"));
        };
        let op = PredicateOp::parse(op)?;
        let rest = rest.trim();
        let values = if op == PredicateOp::In {
            let inner = match rest.chars().next() {
                Some('(') => rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')),
                Some('[') => rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')),
                _ => Some(rest),
            }
            .ok_or_else(|| bad("the list is not closed"))?;
            split_values(inner).map_err(|why| bad(&why))?
        } else {
            vec![unquote(rest).map_err(|why| bad(&why))?]
        };
        if values.iter().any(String::is_empty) && op == PredicateOp::In {
            return Err(bad("an empty value in the list"));
        }
        KeyPredicate::new(
            key,
            op,
            values.into_iter().map(PartitionValue::Text).collect(),
        )
    }
}

impl std::fmt::Display for KeyPredicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.op {
            PredicateOp::In => write!(f, "{} in ({})", self.key, self.values.join(", ")),
            op => write!(f, "{} {} {}", self.key, op.symbol(), self.values[0]),
        }
    }
}

/// A value without its quotes (`'eu'`, `"eu"`), or as written when unquoted.
fn unquote(text: &str) -> std::result::Result<String, String> {
    let text = text.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = text.strip_prefix(q) {
            return inner
                .strip_suffix(q)
                .filter(|inner| !inner.contains(q))
                .map(str::to_owned)
                .ok_or_else(|| format!("unbalanced quote {q}"));
        }
    }
    if text.is_empty() {
        return Err("no value".to_owned());
    }
    Ok(text.to_owned())
}

/// Comma-separated values, each maybe quoted (a quoted value may hold commas).
fn split_values(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut values = Vec::new();
    let mut current = String::new();
    let mut quote_char: Option<char> = None;
    for c in text.chars() {
        match (quote_char, c) {
            (Some(q), c) if c == q => {
                quote_char = None;
                current.push(c);
            }
            (None, '\'' | '"') => {
                quote_char = Some(c);
                current.push(c);
            }
            (None, ',') => values.push(unquote(&std::mem::take(&mut current))?),
            _ => current.push(c),
        }
    }
    if quote_char.is_some() {
        return Err("unbalanced quote".to_owned());
    }
    values.push(unquote(&current)?);
    Ok(values)
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

    #[test]
    fn filters_parse_as_written_and_refuse_what_they_cannot_read() {
        let cases = [
            (
                "ds >= 2024-01-01",
                "ds",
                PredicateOp::Ge,
                vec!["2024-01-01"],
            ),
            ("ds>=3", "ds", PredicateOp::Ge, vec!["3"]),
            ("region == 'eu'", "region", PredicateOp::Eq, vec!["eu"]),
            ("region = \"a, b\"", "region", PredicateOp::Eq, vec!["a, b"]),
            ("ds != 1", "ds", PredicateOp::Ne, vec!["1"]),
            ("ds in (1, 2,3)", "ds", PredicateOp::In, vec!["1", "2", "3"]),
            ("ds IN [1]", "ds", PredicateOp::In, vec!["1"]),
            (
                "r in ('x,y', \"z\")",
                "r",
                PredicateOp::In,
                vec!["x,y", "z"],
            ),
            ("ds < 5", "ds", PredicateOp::Lt, vec!["5"]),
        ];
        for (text, key, op, values) in cases {
            let p = KeyPredicate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((p.key.as_str(), p.op), (key, op), "{text}");
            assert_eq!(p.values, values, "{text}");
            // What Display writes reads back the same (values without commas).
            if !p.values.iter().any(|v| v.contains(',')) {
                assert_eq!(KeyPredicate::parse(&p.to_string()).unwrap(), p, "{text}");
            }
        }
        for text in [
            "",
            "ds",
            "ds ~ 3",
            "ds ==",
            "ds in ()",
            "ds in (1,,2)",
            "ds = 'x",
            "= 3",
            "s 漢字",
            "s inx",
            "s in (a, b",
            "s in [a",
        ] {
            let error = KeyPredicate::parse(text).unwrap_err().to_string();
            assert!(
                error.contains("partition filter") || error.contains("comparison"),
                "{text}: {error}"
            );
        }
        assert!(KeyPredicate::new("ds", PredicateOp::Eq, vec![]).is_err());
        assert!(
            KeyPredicate::new("ds", PredicateOp::Lt, vec![PartitionValue::Float(1.5)]).is_err()
        );
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
