//! Plain values between Python and the client: Python objects become partition values and
//! selectors here (converted only: the rules live in `batchstore_client::partition` and
//! `Selector::choose`), and client records become dicts.

use crate::errors::to_py;
use batchstore_client::{
    CommitInfo, GcCounts, HistoryEntry, KeyPredicate, LeaseInfo, PartitionInfo, PartitionSpec,
    PartitionValue, PredicateOp, Selector, TagInfo, describe_partition, parse_duration, parse_time,
};
use chrono::{DateTime, NaiveDate, Utc};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

fn invalid(message: String) -> PyErr {
    crate::errors::InvalidArgument::new_err(message)
}

/// A standard-library class values are checked against, imported once per process.
struct Class {
    module: &'static str,
    name: &'static str,
    cell: PyOnceLock<Py<PyType>>,
}

impl Class {
    const fn new(module: &'static str, name: &'static str) -> Self {
        Class {
            module,
            name,
            cell: PyOnceLock::new(),
        }
    }
}

static DATETIME: Class = Class::new("datetime", "datetime");
static DATE: Class = Class::new("datetime", "date");
static MAPPING: Class = Class::new("collections.abc", "Mapping");

/// True when `obj` is an instance of `class`.
fn instance_of(obj: &Bound<'_, PyAny>, class: &Class) -> PyResult<bool> {
    obj.is_instance(class.cell.import(obj.py(), class.module, class.name)?)
}

/// A `datetime.date` (not a datetime) as a chrono date.
fn naive_date(obj: &Bound<'_, PyAny>) -> PyResult<NaiveDate> {
    let part = |name: &str| -> PyResult<u32> { obj.getattr(name)?.extract() };
    let year: i32 = obj.getattr("year")?.extract()?;
    NaiveDate::from_ymd_opt(year, part("month")?, part("day")?)
        .ok_or_else(|| invalid(format!("{year} is not a date chrono can hold")))
}

/// One Python scalar as a partition value: str, int (and bool), float, date, datetime (refused
/// later with the one message), None; numpy and pandas scalars through `.item()`.
fn value(obj: &Bound<'_, PyAny>) -> PyResult<PartitionValue> {
    Ok(if obj.is_none() {
        PartitionValue::Missing
    } else if obj.is_instance_of::<PyBool>() {
        PartitionValue::Bool(obj.extract()?)
    } else if obj.is_instance_of::<PyString>() {
        PartitionValue::Text(obj.extract()?)
    } else if obj.is_instance_of::<PyInt>() {
        PartitionValue::Int(obj.extract().map_err(|_| {
            invalid(format!(
                "partition value {} does not fit 64 bits; use a string",
                obj.str().map(|s| s.to_string()).unwrap_or_default()
            ))
        })?)
    } else if obj.is_instance_of::<PyFloat>() {
        PartitionValue::Float(obj.extract()?)
    } else if instance_of(obj, &DATETIME)? {
        PartitionValue::DateTime(obj.str()?.to_string())
    } else if instance_of(obj, &DATE)? {
        PartitionValue::Date(naive_date(obj)?)
    } else if obj.hasattr("item")? && !obj.hasattr("__len__")? {
        return value(&obj.call_method0("item")?);
    } else {
        return Err(invalid(format!(
            "partition value of type {} is not supported; use a string, an integer or a date",
            obj.get_type().name()?
        )));
    })
}

fn is_mapping(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    instance_of(obj, &MAPPING)
}

fn is_sequence(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>()
}

/// One partition: None (unpartitioned), a mapping `{key: value}`, a list or tuple of values
/// in key order, or one scalar.
pub fn partition(obj: Option<&Bound<'_, PyAny>>) -> PyResult<PartitionSpec> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(PartitionSpec::default());
    };
    let mut values = Vec::new();
    if is_mapping(obj)? {
        for item in obj.call_method0("items")?.try_iter()? {
            let (key, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
            values.push((Some(key.str()?.to_string()), value(&v)?));
        }
    } else if is_sequence(obj) {
        for v in obj.try_iter()? {
            let v = v?;
            if is_mapping(&v)? || is_sequence(&v) {
                return Err(invalid(
                    "a partition is a dict {key: value} or a list of values, not a nested list"
                        .to_owned(),
                ));
            }
            values.push((None, value(&v)?));
        }
    } else {
        values.push((None, value(obj)?));
    }
    PartitionSpec::from_values(values).map_err(to_py)
}

/// Several partitions: None (all), one partition in any form of [`partition`], or a list of
/// them (a list whose items are all dicts or lists).
pub fn partitions(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<PartitionSpec>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    if is_sequence(obj) && obj.len()? > 0 {
        let items: Vec<Bound<'_, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
        let mut nested = true;
        for item in &items {
            nested &= is_mapping(item)? || is_sequence(item);
        }
        if nested {
            return items.iter().map(|p| partition(Some(p))).collect();
        }
    }
    Ok(vec![partition(Some(obj))?])
}

/// A time: an aware or naive (UTC) `datetime`, a `date` (midnight UTC) or text (see
/// `batchstore_client::parse_time`).
pub fn time(obj: &Bound<'_, PyAny>) -> PyResult<DateTime<Utc>> {
    if obj.is_instance_of::<PyString>() {
        return parse_time(&obj.extract::<String>()?).map_err(to_py);
    }
    if instance_of(obj, &DATETIME)? {
        let utc = obj
            .py()
            .import("datetime")?
            .getattr("timezone")?
            .getattr("utc")?;
        let aware = if obj.getattr("tzinfo")?.is_none() {
            let kwargs = PyDict::new(obj.py());
            kwargs.set_item("tzinfo", &utc)?;
            obj.call_method("replace", (), Some(&kwargs))?
        } else {
            obj.call_method1("astimezone", (&utc,))?
        };
        let part = |name: &str| -> PyResult<u32> { aware.getattr(name)?.extract() };
        return naive_date(&aware)?
            .and_hms_micro_opt(
                part("hour")?,
                part("minute")?,
                part("second")?,
                part("microsecond")?,
            )
            .map(|t| t.and_utc())
            .ok_or_else(|| invalid("as_of is not a valid time".to_owned()));
    }
    if instance_of(obj, &DATE)? {
        return naive_date(obj)?
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| invalid("as_of is not a valid date".to_owned()));
    }
    Err(invalid(
        "as_of must be a datetime, a date or text such as \"2024-05-01 12:00:00\"".to_owned(),
    ))
}

/// The version to read: at most one of the four (the client's one rule).
/// Conditions on partition keys: `(key, op, value)` tuples, the value a list for `in`.
pub fn key_predicates(
    items: Vec<(String, String, Bound<'_, PyAny>)>,
) -> PyResult<Vec<KeyPredicate>> {
    items
        .into_iter()
        .map(|(key, op, v)| {
            let op = PredicateOp::parse(&op).map_err(to_py)?;
            let values = if op == PredicateOp::In
                && (is_sequence(&v) || v.hasattr("__iter__")?)
                && !v.is_instance_of::<PyString>()
            {
                v.try_iter()?
                    .map(|item| value(&item?))
                    .collect::<PyResult<Vec<_>>>()?
            } else {
                vec![value(&v)?]
            };
            KeyPredicate::new(&key, op, values).map_err(to_py)
        })
        .collect()
}

pub fn selector(
    version: Option<i64>,
    batch_id: Option<String>,
    tag: Option<String>,
    as_of: Option<&Bound<'_, PyAny>>,
) -> PyResult<Selector> {
    let as_of = as_of.filter(|t| !t.is_none()).map(time).transpose()?;
    Selector::choose(version, batch_id, tag, as_of).map_err(to_py)
}

fn pairs_dict<'py>(py: Python<'py>, pairs: &[(String, String)]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in pairs {
        dict.set_item(k, v)?;
    }
    Ok(dict)
}

pub fn commit_dict<'py>(py: Python<'py>, c: &CommitInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("batch_id", &c.batch_id)?;
    dict.set_item("version", c.version)?;
    dict.set_item("rows", c.rows)?;
    dict.set_item("bytes", c.bytes)?;
    dict.set_item("committed_at_us", c.committed_at.timestamp_micros())?;
    dict.set_item("partition", pairs_dict(py, &c.partition)?)?;
    Ok(dict)
}

pub fn history_dict<'py>(py: Python<'py>, h: &HistoryEntry) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("version", h.version)?;
    dict.set_item("batch_id", &h.batch_id)?;
    dict.set_item("operation", &h.operation)?;
    dict.set_item("actor", &h.actor)?;
    dict.set_item("message", &h.message)?;
    dict.set_item("committed_at_us", h.committed_at.timestamp_micros())?;
    dict.set_item("rows", h.rows)?;
    dict.set_item("bytes", h.bytes)?;
    dict.set_item("current", h.current)?;
    dict.set_item(
        "expired_at_us",
        h.expired.as_ref().map(|e| e.at.timestamp_micros()),
    )?;
    dict.set_item(
        "expired_reason",
        h.expired.as_ref().map(|e| e.reason.as_str()),
    )?;
    Ok(dict)
}

/// A duration: a `timedelta`, seconds (int or float), or text ("7d", "36h", "90m").
pub fn duration(obj: &Bound<'_, PyAny>) -> PyResult<std::time::Duration> {
    if obj.is_instance_of::<PyString>() {
        return parse_duration(&obj.extract::<String>()?).map_err(to_py);
    }
    let seconds: f64 = if obj.hasattr("total_seconds")? {
        obj.call_method0("total_seconds")?.extract()?
    } else {
        obj.extract().map_err(|_| {
            invalid("a duration is a timedelta, a number of seconds, or text such as \"7d\"".into())
        })?
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(invalid(format!(
            "a duration must be positive, not {seconds}"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

pub fn lease_dict<'py>(py: Python<'py>, l: &LeaseInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("lease_id", &l.lease_id)?;
    dict.set_item("name", &l.name)?;
    dict.set_item("namespace", &l.table.namespace)?;
    dict.set_item("table", &l.table.table)?;
    dict.set_item("holder", &l.holder)?;
    dict.set_item("selection", &l.selection)?;
    dict.set_item("created_at_us", l.created_at.timestamp_micros())?;
    dict.set_item("expires_at_us", l.expires_at.timestamp_micros())?;
    dict.set_item("batch_ids", &l.batch_ids)?;
    Ok(dict)
}

pub fn gc_dict<'py>(py: Python<'py>, c: &GcCounts) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("batches_expired", c.batches_expired)?;
    dict.set_item("batches_deleted", c.batches_deleted)?;
    dict.set_item("files_deleted", c.files_deleted)?;
    dict.set_item("bytes_deleted", c.bytes_deleted)?;
    dict.set_item("tables_purged", c.tables_purged)?;
    dict.set_item("batches_failed", c.batches_failed)?;
    Ok(dict)
}

pub fn partition_dict<'py>(py: Python<'py>, p: &PartitionInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("partition", pairs_dict(py, &p.partition)?)?;
    dict.set_item("name", describe_partition(&p.partition))?;
    dict.set_item("batch_id", &p.batch_id)?;
    dict.set_item("version", p.version)?;
    dict.set_item("rows", p.rows)?;
    dict.set_item("bytes", p.bytes)?;
    dict.set_item("updated_at_us", p.updated_at.timestamp_micros())?;
    Ok(dict)
}

pub fn tag_dict<'py>(py: Python<'py>, t: &TagInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("name", &t.name)?;
    dict.set_item("batch_id", &t.batch_id)?;
    dict.set_item("partition", pairs_dict(py, &t.partition)?)?;
    dict.set_item("version", t.version)?;
    dict.set_item("created_at_us", t.created_at.timestamp_micros())?;
    Ok(dict)
}

/// A Python list of dicts, one per item.
pub fn dict_list<'py, T>(
    py: Python<'py>,
    items: &[T],
    to_dict: fn(Python<'py>, &T) -> PyResult<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for item in items {
        list.append(to_dict(py, item)?)?;
    }
    Ok(list)
}
