//! Partitions named from R, and the client's records (commits, history, partitions, tags)
//! as R data.frames.

use crate::errors::{BindingError, Outcome};
use crate::rvalues;
use batchstore_client::{
    CommitInfo, EngineStorage, GcCounts, HistoryEntry, LeaseInfo, Manifest, PartitionInfo,
    PartitionSpec, PartitionValue, TagInfo, describe_partition,
};
use chrono::{DateTime, Utc};
use extendr_api::prelude::*;

/// One partition: NULL, an atomic vector (named by key, or positional), or a list of single
/// values. Each R value becomes a [`PartitionValue`]; the client decides what it means, the
/// same for Python and tablectl.
pub fn partition(value: &Robj) -> Outcome<PartitionSpec> {
    if value.is_null() || value.is_empty() {
        return Ok(PartitionSpec::default());
    }
    let values = if value.is_list() {
        let list = List::try_from(value)
            .map_err(|_| BindingError::InvalidArgument("a partition must be a list".into()))?;
        list.values()
            .map(|item| {
                if item.len() != 1 || item.is_list() {
                    return Err(BindingError::InvalidArgument(
                        "each partition value must be a single value".to_owned(),
                    ));
                }
                Ok(values_of(&item)?.remove(0))
            })
            .collect::<Outcome<Vec<_>>>()?
    } else {
        values_of(value)?
    };
    let names: Vec<Option<String>> = match value.names() {
        Some(names) => names
            .map(|n| (!n.is_empty() && !n.is_na()).then(|| n.to_owned()))
            .collect(),
        None => vec![None; values.len()],
    };
    Ok(PartitionSpec::from_values(
        names.into_iter().zip(values).collect(),
    )?)
}

/// The values of an atomic vector (factors arrive as their labels): character, integer,
/// double (a `Date` is days, a `POSIXct` seconds), logical; NA is a missing value.
fn values_of(vector: &Robj) -> Outcome<Vec<PartitionValue>> {
    let classes = rvalues::classes(vector);
    let class = |c: &str| classes.iter().any(|k| k == c);
    if let Ok(strings) = Strings::try_from(vector) {
        return Ok(strings
            .iter()
            .map(|s| {
                if s.is_na() {
                    PartitionValue::Missing
                } else {
                    PartitionValue::Text(s.to_string())
                }
            })
            .collect());
    }
    if let Ok(logicals) = Logicals::try_from(vector) {
        return Ok(logicals
            .iter()
            .map(|b| match b.to_bool() {
                _ if b.is_na() => PartitionValue::Missing,
                value => PartitionValue::Bool(value),
            })
            .collect());
    }
    if let Some(integers) = vector.as_integer_slice() {
        return Ok(integers
            .iter()
            .map(|&i| {
                if i == i32::MIN {
                    PartitionValue::Missing
                } else {
                    PartitionValue::Int(i64::from(i))
                }
            })
            .collect());
    }
    if let Some(doubles) = vector.as_real_slice() {
        return Ok(doubles
            .iter()
            .map(|&x| {
                if rvalues::is_na_real(x) {
                    PartitionValue::Missing
                } else if class("Date") {
                    date_of_days(x)
                } else if class("POSIXct") {
                    PartitionValue::DateTime(
                        DateTime::from_timestamp_micros((x * 1e6).round() as i64)
                            .map_or_else(|| format!("{x} s"), |t| t.to_rfc3339()),
                    )
                } else {
                    PartitionValue::Float(x)
                }
            })
            .collect());
    }
    Err(BindingError::InvalidArgument(format!(
        "a partition value of class {} is not supported; use a string, a number or a Date",
        classes.first().map_or("unknown", String::as_str)
    )))
}

/// An R `Date` (days since 1970-01-01; whole for any real date).
fn date_of_days(days: f64) -> PartitionValue {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    if days.fract() == 0.0
        && days.abs() < 1e8
        && let Some(date) = epoch.checked_add_signed(chrono::TimeDelta::days(days as i64))
    {
        return PartitionValue::Date(date);
    }
    PartitionValue::DateTime(format!("{days} days after 1970-01-01"))
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

/// A record naming a partition's version: a commit, or a partition's current state.
trait VersionRecord {
    fn partition(&self) -> &[(String, String)];
    fn version(&self) -> i64;
    fn batch_id(&self) -> &str;
    fn rows(&self) -> i64;
    fn bytes(&self) -> i64;
    fn at(&self) -> &DateTime<Utc>;
}

/// The two records have the same fields but for the name of their time.
macro_rules! version_record {
    ($record:ty, $at:ident) => {
        impl VersionRecord for $record {
            fn partition(&self) -> &[(String, String)] {
                &self.partition
            }
            fn version(&self) -> i64 {
                self.version
            }
            fn batch_id(&self) -> &str {
                &self.batch_id
            }
            fn rows(&self) -> i64 {
                self.rows
            }
            fn bytes(&self) -> i64 {
                self.bytes
            }
            fn at(&self) -> &DateTime<Utc> {
                &self.$at
            }
        }
    };
}

version_record!(CommitInfo, committed_at);
version_record!(PartitionInfo, updated_at);

/// Columns partition, version, batch_id, rows, bytes and `at_name` (the record's time).
fn version_records<R: VersionRecord>(items: &[R], at_name: &str) -> Outcome<Robj> {
    let columns = vec![
        texts(items.iter().map(|r| describe_partition(r.partition()))),
        ints(items.iter().map(R::version)),
        texts(items.iter().map(R::batch_id)),
        nums(items.iter().map(R::rows)),
        nums(items.iter().map(R::bytes)),
        utc_times(items.iter().map(|r| micros_to_seconds(r.at())))?,
    ];
    let names = ["partition", "version", "batch_id", "rows", "bytes", at_name];
    Ok(rvalues::data_frame(&names, columns, items.len())?)
}

/// Commits: partition, version, batch_id, rows, bytes, committed_at.
pub fn commits(items: &[CommitInfo]) -> Outcome<Robj> {
    version_records(items, "committed_at")
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
        utc_times(items.iter().map(|h| {
            h.expired
                .as_ref()
                .map_or(rvalues::na_real(), |e| micros_to_seconds(&e.at))
        }))?,
        Strings::from_values(items.iter().map(|h| match &h.expired {
            Some(e) => Rstr::from(e.reason.replace('\0', "")),
            None => Rstr::na(),
        }))
        .into(),
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
        "expired_at",
        "expired_reason",
    ];
    Ok(rvalues::data_frame(&names, columns, items.len())?)
}

/// A table's partitions with their current batch: partition, version, batch_id, rows, bytes,
/// updated_at.
pub fn partition_list(items: &[PartitionInfo]) -> Outcome<Robj> {
    version_records(items, "updated_at")
}

/// Tags of a table.
pub fn tags(items: &[TagInfo]) -> Outcome<Robj> {
    let columns = vec![
        texts(items.iter().map(|t| t.name.as_str())),
        texts(items.iter().map(|t| describe_partition(&t.partition))),
        ints(items.iter().map(|t| t.version)),
        texts(items.iter().map(|t| t.batch_id.as_str())),
        utc_times(items.iter().map(|t| micros_to_seconds(&t.created_at)))?,
    ];
    let names = ["name", "partition", "version", "batch_id", "created_at"];
    Ok(rvalues::data_frame(&names, columns, items.len())?)
}

/// Leases: name, namespace, table, holder, selection, created_at, expires_at.
pub fn leases(items: &[LeaseInfo]) -> Outcome<Robj> {
    let columns = vec![
        texts(items.iter().map(|l| l.name.as_str())),
        texts(items.iter().map(|l| l.table.namespace.as_str())),
        texts(items.iter().map(|l| l.table.table.as_str())),
        texts(items.iter().map(|l| l.holder.as_str())),
        texts(items.iter().map(|l| l.selection.as_str())),
        utc_times(items.iter().map(|l| micros_to_seconds(&l.created_at)))?,
        utc_times(items.iter().map(|l| micros_to_seconds(&l.expires_at)))?,
    ];
    let names = [
        "name",
        "namespace",
        "table",
        "holder",
        "selection",
        "created_at",
        "expires_at",
    ];
    Ok(rvalues::data_frame(&names, columns, items.len())?)
}

/// What a garbage collection run did, as a one-row data.frame.
pub fn gc_counts(c: &GcCounts) -> Outcome<Robj> {
    let columns = vec![
        nums([c.batches_expired].into_iter()),
        nums([c.batches_deleted].into_iter()),
        nums([c.files_deleted].into_iter()),
        nums([c.bytes_deleted].into_iter()),
        nums([c.tables_purged].into_iter()),
        nums([c.batches_failed].into_iter()),
    ];
    let names = [
        "batches_expired",
        "batches_deleted",
        "files_deleted",
        "bytes_deleted",
        "tables_purged",
        "batches_failed",
    ];
    Ok(rvalues::data_frame(&names, columns, 1)?)
}

/// A manifest: one row per file (path, uri, size_bytes, rows, batch_id, version,
/// committed_at, then one character column per partition key), with its schema (name, type,
/// nullable) as the attribute `schema` and its storage as `storage`.
pub fn manifest(m: &Manifest) -> Outcome<Robj> {
    let files = &m.files;
    let mut columns = vec![
        texts(files.iter().map(|f| f.path.as_str())),
        texts(files.iter().map(|f| f.uri.as_str())),
        nums(files.iter().map(|f| f.size_bytes)),
        nums(files.iter().map(|f| f.rows)),
        texts(files.iter().map(|f| f.batch_id.as_str())),
        ints(files.iter().map(|f| f.version)),
        utc_times(files.iter().map(|f| micros_to_seconds(&f.committed_at)))?,
    ];
    let mut names: Vec<&str> = vec![
        "path",
        "uri",
        "size_bytes",
        "rows",
        "batch_id",
        "version",
        "committed_at",
    ];
    for key in &m.partition_keys {
        columns.push(texts(files.iter().map(|f| {
            f.partition
                .iter()
                .find(|(k, _)| k == &key.name)
                .map_or("", |(_, v)| v.as_str())
        })));
        names.push(&key.name);
    }
    let mut frame = rvalues::data_frame(&names, columns, files.len())?;
    let fields = m.schema.fields();
    let schema = rvalues::data_frame(
        &["name", "type", "nullable"],
        vec![
            texts(fields.iter().map(|f| f.name().as_str())),
            texts(fields.iter().map(|f| f.data_type().to_string())),
            Logicals::from_values(fields.iter().map(|f| Rbool::from_bool(f.is_nullable()))).into(),
        ],
        fields.len(),
    )?;
    frame.set_attrib("schema", schema)?;
    let (kind, endpoint, region) = match &m.storage {
        EngineStorage::Local => ("local", None, None),
        EngineStorage::S3 { endpoint, region } => ("s3", endpoint.as_deref(), region.as_deref()),
    };
    let storage = Strings::from_values([kind, endpoint.unwrap_or(""), region.unwrap_or("")]);
    let mut storage: Robj = storage.into();
    storage.set_names(["kind", "endpoint", "region"])?;
    frame.set_attrib("storage", storage)?;
    Ok(frame)
}

/// A time as R's POSIXct (UTC).
pub fn time(at: &DateTime<Utc>) -> Outcome<Robj> {
    Ok(utc_times([micros_to_seconds(at)].into_iter())?)
}
