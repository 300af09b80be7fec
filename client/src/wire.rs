//! Conversions between the wire messages (`batchstore.v1`) and the client's own types, in one
//! place.

use crate::error::Result;
use crate::partition::{KeyPredicate, PartitionSpec, PredicateOp};
use crate::types::*;
use batchstore_proto::v1 as pb;
pub(crate) use batchstore_proto::wire::partition_pairs as pairs;

pub(crate) fn table_ref(table: &TableName) -> pb::TableRef {
    pb::TableRef {
        namespace: table.namespace.clone(),
        table: table.table.clone(),
    }
}

pub(crate) fn expected_to_pb(expected: Expected) -> String {
    match expected {
        Expected::Nothing => batchstore_proto::wire::EXPECT_NEW.to_owned(),
        Expected::Batch(b) => b,
    }
}

pub(crate) fn commit_info(c: pb::CommittedPartition, already_committed: bool) -> CommitInfo {
    CommitInfo {
        partition: pairs(c.partition.as_ref()),
        batch_id: c.batch_id,
        version: c.version,
        rows: c.rows,
        bytes: c.bytes,
        committed_at: from_micros(c.committed_at_micros),
        already_committed,
    }
}

pub(crate) fn key_to_pb(key: &PartitionKey) -> pb::PartitionKey {
    let key_type = match key.key_type {
        KeyType::String => pb::PartitionKeyType::String,
        KeyType::Int64 => pb::PartitionKeyType::Int64,
        KeyType::Date => pb::PartitionKeyType::Date,
    };
    pb::PartitionKey {
        name: key.name.clone(),
        r#type: key_type as i32,
    }
}

fn key_from_pb(key: &pb::PartitionKey) -> PartitionKey {
    let key_type = match pb::PartitionKeyType::try_from(key.r#type) {
        Ok(pb::PartitionKeyType::Int64) => KeyType::Int64,
        Ok(pb::PartitionKeyType::Date) => KeyType::Date,
        _ => KeyType::String,
    };
    PartitionKey {
        name: key.name.clone(),
        key_type,
    }
}

/// Column name and type of an encoded schema (none when empty).
pub(crate) fn columns(arrow_schema: &[u8]) -> Result<Vec<(String, String)>> {
    if arrow_schema.is_empty() {
        return Ok(Vec::new());
    }
    Ok(crate::schema::decode(arrow_schema)?
        .fields()
        .iter()
        .map(|f| {
            let nullable = if f.is_nullable() { "" } else { " not null" };
            (f.name().clone(), format!("{}{nullable}", f.data_type()))
        })
        .collect())
}

pub(crate) fn table_info(t: pb::Table) -> Result<TableInfo> {
    let columns = columns(&t.arrow_schema)?;
    Ok(TableInfo {
        name: TableName::new(t.namespace, t.name),
        partition_keys: t.partition_keys.iter().map(key_from_pb).collect(),
        columns,
        created_at: from_micros(t.created_at_micros),
        location: t.location,
        partition_count: t.partition_count,
        arrow_schema: t.arrow_schema,
        retention: retention_from_pb(t.retention.as_ref()),
        effective_retention: retention_from_pb(t.effective_retention.as_ref()),
        dropped_at: (t.dropped_at_micros != 0).then(|| from_micros(t.dropped_at_micros)),
        purge_after: (t.purge_after_micros != 0).then(|| from_micros(t.purge_after_micros)),
        schema_policy: if t.schema_policy.is_empty() {
            "strict".to_owned()
        } else {
            t.schema_policy
        },
    })
}

pub(crate) fn retention_from_pb(r: Option<&pb::Retention>) -> Retention {
    let Some(r) = r else {
        return Retention::default();
    };
    Retention {
        keep_versions: r.keep_versions,
        keep_for: r
            .keep_seconds
            .map(|s| std::time::Duration::from_secs(s.max(0) as u64)),
    }
}

pub(crate) fn retention_to_pb(r: &Retention) -> pb::Retention {
    pb::Retention {
        keep_versions: r.keep_versions,
        keep_seconds: r.keep_for.map(|d| d.as_secs().min(i64::MAX as u64) as i64),
    }
}

pub(crate) fn tag_info(t: pb::Tag) -> TagInfo {
    TagInfo {
        partition: pairs(t.partition.as_ref()),
        name: t.name,
        batch_id: t.batch_id,
        version: t.version,
        created_at: from_micros(t.created_at_micros),
        created_by: t.created_by,
    }
}

/// A user's partition spec on the wire: named values with their keys, positional values with
/// an empty key (the metastore matches them to the table's keys in order).
pub(crate) fn spec_to_pb(spec: &PartitionSpec) -> pb::PartitionSpec {
    pb::PartitionSpec {
        values: spec
            .values()
            .iter()
            .map(|(k, v)| pb::PartitionValue {
                key: k.clone().unwrap_or_default(),
                value: v.clone(),
            })
            .collect(),
    }
}

pub(crate) fn predicate_to_pb(p: &KeyPredicate) -> pb::KeyPredicate {
    let op = match p.op {
        PredicateOp::Eq => pb::PredicateOp::Eq,
        PredicateOp::Ne => pb::PredicateOp::Ne,
        PredicateOp::Lt => pb::PredicateOp::Lt,
        PredicateOp::Le => pb::PredicateOp::Le,
        PredicateOp::Gt => pb::PredicateOp::Gt,
        PredicateOp::Ge => pb::PredicateOp::Ge,
        PredicateOp::In => pb::PredicateOp::In,
    };
    pb::KeyPredicate {
        key: p.key.clone(),
        op: op as i32,
        values: p.values.clone(),
    }
}
