//! Plain values between Python and the client: partition specs, selectors, result records.

use batchstore_client::{
    CommitInfo, HistoryEntry, PartitionInfo, PartitionSpec, Selector, TagInfo,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// A partition as the Python layer passes it: `(key or None, value)` pairs, values already
/// normalised to text.
pub type Pairs = Vec<(Option<String>, String)>;

pub fn spec(pairs: Pairs) -> PartitionSpec {
    PartitionSpec(pairs)
}

/// `kind` is one of current, version, batch, tag, as_of (microseconds since the epoch).
pub fn selector(kind: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Selector> {
    let need = |what: &str| {
        crate::errors::InvalidArgument::new_err(format!("the {kind} selector needs {what}"))
    };
    Ok(match kind {
        "current" => Selector::Current,
        "version" => Selector::Version(value.ok_or_else(|| need("a version number"))?.extract()?),
        "batch" => Selector::Batch(value.ok_or_else(|| need("a batch id"))?.extract()?),
        "tag" => Selector::Tag(value.ok_or_else(|| need("a tag name"))?.extract()?),
        "as_of" => {
            let micros: i64 = value.ok_or_else(|| need("a time"))?.extract()?;
            Selector::AsOf(
                chrono::DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| need("a time in range"))?,
            )
        }
        other => {
            return Err(crate::errors::InvalidArgument::new_err(format!(
                "unknown selector {other:?}"
            )));
        }
    })
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
    Ok(dict)
}

pub fn partition_dict<'py>(py: Python<'py>, p: &PartitionInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("partition", pairs_dict(py, &p.partition)?)?;
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
