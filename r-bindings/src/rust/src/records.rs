//! Partitions named from R, and the client's records (commits, history, partitions, tags)
//! as R data.frames.

use crate::errors::{BindingError, Outcome};
use crate::rvalues;
use batchstore_client::{CommitInfo, HistoryEntry, PartitionInfo, PartitionSpec, TagInfo};
use chrono::{DateTime, Utc};
use extendr_api::prelude::*;

/// One partition: a character vector of normalised values, named by key or positional.
pub fn partition(value: &Robj) -> Outcome<PartitionSpec> {
    if value.is_null() {
        return Ok(PartitionSpec::default());
    }
    let values = value.as_str_vector().ok_or_else(|| {
        BindingError::InvalidArgument("a partition must be a character vector".to_owned())
    })?;
    let names: Vec<Option<String>> = match value.names() {
        Some(names) => names
            .map(|n| {
                if n.is_empty() || n.is_na() {
                    None
                } else {
                    Some(n.to_owned())
                }
            })
            .collect(),
        None => vec![None; values.len()],
    };
    Ok(PartitionSpec(
        names
            .into_iter()
            .zip(values)
            .map(|(k, v)| (k, v.to_owned()))
            .collect(),
    ))
}

/// Several partitions: a list of what [`partition`] takes.
pub fn partitions(value: &Robj) -> Outcome<Vec<PartitionSpec>> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    let list = List::try_from(value).map_err(|_| {
        BindingError::InvalidArgument("partitions must be a list of partitions".to_owned())
    })?;
    list.values().map(|p| partition(&p)).collect()
}

fn micros_to_seconds(time: &DateTime<Utc>) -> f64 {
    time.timestamp_micros() as f64 / 1e6
}

fn utc_times(times: impl ExactSizeIterator<Item = f64>) -> extendr_api::Result<Robj> {
    let mut out: Robj = Doubles::from_values(times).into();
    out.set_class(["POSIXct", "POSIXt"])?;
    out.set_attrib("tzone", "UTC")?;
    Ok(out)
}

fn ints(values: impl ExactSizeIterator<Item = i64>) -> Robj {
    Integers::from_values(values.map(|v| i32::try_from(v).unwrap_or(i32::MIN))).into()
}

fn nums(values: impl ExactSizeIterator<Item = i64>) -> Robj {
    Doubles::from_values(values.map(|v| v as f64)).into()
}

/// Text from the metastore; a NUL (which R strings cannot hold) is dropped.
fn texts<S: AsRef<str>>(values: impl ExactSizeIterator<Item = S>) -> Robj {
    Strings::from_values(values.map(|v| v.as_ref().replace('\0', ""))).into()
}

fn describe(partition: &[(String, String)]) -> String {
    batchstore_client::describe_partition(partition)
}

/// Commits as a data.frame: partition, version, batch_id, rows, bytes, committed_at.
pub fn commits(items: &[CommitInfo]) -> Outcome<Robj> {
    let columns = vec![
        texts(items.iter().map(|c| describe(&c.partition))),
        ints(items.iter().map(|c| c.version)),
        texts(items.iter().map(|c| c.batch_id.as_str())),
        nums(items.iter().map(|c| c.rows)),
        nums(items.iter().map(|c| c.bytes)),
        utc_times(items.iter().map(|c| micros_to_seconds(&c.committed_at)))?,
    ];
    let names = [
        "partition",
        "version",
        "batch_id",
        "rows",
        "bytes",
        "committed_at",
    ];
    Ok(rvalues::data_frame(&names, columns, items.len())?)
}

/// A partition's history, newest first.
pub fn history(items: &[HistoryEntry]) -> Outcome<Robj> {
    let columns = vec![
        ints(items.iter().map(|h| h.version)),
        texts(items.iter().map(|h| h.batch_id.as_str())),
        texts(items.iter().map(|h| h.operation.as_str())),
        texts(items.iter().map(|h| h.actor.as_str())),
        texts(items.iter().map(|h| h.message.as_str())),
        utc_times(items.iter().map(|h| micros_to_seconds(&h.committed_at)))?,
        nums(items.iter().map(|h| h.rows)),
        nums(items.iter().map(|h| h.bytes)),
        Logicals::from_values(items.iter().map(|h| Rbool::from_bool(h.current))).into(),
    ];
    let names = [
        "version",
        "batch_id",
        "operation",
        "actor",
        "message",
        "committed_at",
        "rows",
        "bytes",
        "current",
    ];
    Ok(rvalues::data_frame(&names, columns, items.len())?)
}

/// A table's partitions with their current batch.
pub fn partition_list(items: &[PartitionInfo]) -> Outcome<Robj> {
    let columns = vec![
        texts(items.iter().map(|p| describe(&p.partition))),
        ints(items.iter().map(|p| p.version)),
        texts(items.iter().map(|p| p.batch_id.as_str())),
        nums(items.iter().map(|p| p.rows)),
        nums(items.iter().map(|p| p.bytes)),
        utc_times(items.iter().map(|p| micros_to_seconds(&p.updated_at)))?,
    ];
    let names = [
        "partition",
        "version",
        "batch_id",
        "rows",
        "bytes",
        "updated_at",
    ];
    Ok(rvalues::data_frame(&names, columns, items.len())?)
}

/// Tags of a table.
pub fn tags(items: &[TagInfo]) -> Outcome<Robj> {
    let columns = vec![
        texts(items.iter().map(|t| t.name.as_str())),
        texts(items.iter().map(|t| describe(&t.partition))),
        ints(items.iter().map(|t| t.version)),
        texts(items.iter().map(|t| t.batch_id.as_str())),
        utc_times(items.iter().map(|t| micros_to_seconds(&t.created_at)))?,
    ];
    let names = ["name", "partition", "version", "batch_id", "created_at"];
    Ok(rvalues::data_frame(&names, columns, items.len())?)
}
