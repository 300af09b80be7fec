//! Conversions between wire messages and catalog types. Input is validated here only as far as
//! its shape goes; the catalog checks meaning.

use crate::access::{AuditEvent, GrantRecord, Grantee, Permission};
use crate::error::{CatalogError, CatalogResult};
use crate::model::{
    BatchRecord, BatchState, CommittedVersion, DataFile, ExpectedCurrent, GcCounts, HistoryRecord,
    KeyCondition, LeaseRecord, NamespaceRecord, Orphan, PartitionKeyDef, PartitionKeyType,
    PartitionSummary, PartitionUpdate, PredicateOp, ResolvedPartition, Retention, RollbackTarget,
    Selector, TableRecord, TagRecord, TagTarget,
};
use crate::names::{NameKind, validate_name};
use batchstore_proto::v1 as pb;
use batchstore_proto::wire;
pub use batchstore_proto::wire::partition_pairs;

/// `(namespace, table)` of a table reference, names validated.
pub fn table_ref(table: Option<&pb::TableRef>) -> CatalogResult<(String, String)> {
    let table = table.ok_or_else(|| {
        CatalogError::InvalidArgument(
            "the request names no table; set table.namespace and table.table".into(),
        )
    })?;
    validate_name(NameKind::Namespace, &table.namespace)?;
    validate_name(NameKind::Table, &table.table)?;
    Ok((table.namespace.clone(), table.table.clone()))
}

pub fn partition_spec(pairs: &[(String, String)]) -> pb::PartitionSpec {
    pb::PartitionSpec {
        values: pairs
            .iter()
            .map(|(key, value)| pb::PartitionValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

pub fn key_from_pb(key: &pb::PartitionKey) -> CatalogResult<PartitionKeyDef> {
    let key_type = match pb::PartitionKeyType::try_from(key.r#type) {
        Ok(pb::PartitionKeyType::Unspecified | pb::PartitionKeyType::String) => {
            PartitionKeyType::String
        }
        Ok(pb::PartitionKeyType::Int64) => PartitionKeyType::Int64,
        Ok(pb::PartitionKeyType::Date) => PartitionKeyType::Date,
        Err(_) => {
            return Err(CatalogError::InvalidArgument(format!(
                "partition key {} has an unknown type {}; use string, int64 or date",
                key.name, key.r#type
            )));
        }
    };
    Ok(PartitionKeyDef {
        name: key.name.clone(),
        key_type,
    })
}

fn key_to_pb(key: &PartitionKeyDef) -> pb::PartitionKey {
    let key_type = match key.key_type {
        PartitionKeyType::String => pb::PartitionKeyType::String,
        PartitionKeyType::Int64 => pb::PartitionKeyType::Int64,
        PartitionKeyType::Date => pb::PartitionKeyType::Date,
    };
    pb::PartitionKey {
        name: key.name.clone(),
        r#type: key_type as i32,
    }
}

pub fn table_to_pb(table: &TableRecord) -> pb::Table {
    pb::Table {
        namespace: table.namespace.clone(),
        name: table.name.clone(),
        partition_keys: table.keys.iter().map(key_to_pb).collect(),
        arrow_schema: table.arrow_schema.clone().unwrap_or_default(),
        created_at_micros: table.created_at,
        location: table.location.clone(),
        partition_count: table.partition_count.unwrap_or(-1),
        retention: Some(retention_to_pb(table.retention)),
        effective_retention: Some(retention_to_pb(table.effective_retention())),
        dropped_at_micros: table.dropped_at.unwrap_or_default(),
        purge_after_micros: 0,
        schema_policy: table.schema_policy.as_str().to_owned(),
    }
}

pub fn retention_to_pb(r: Retention) -> pb::Retention {
    pb::Retention {
        keep_versions: r.keep_versions,
        keep_seconds: r.keep_for.map(|us| us / 1_000_000),
    }
}

/// A retention from the wire; an absent message clears every rule.
///
/// # Errors
/// `InvalidArgument` for a duration that overflows.
pub fn retention_from_pb(r: Option<&pb::Retention>) -> CatalogResult<Retention> {
    let Some(r) = r else {
        return Ok(Retention::default());
    };
    let keep_for = r
        .keep_seconds
        .map(|s| {
            s.checked_mul(1_000_000).ok_or_else(|| {
                CatalogError::InvalidArgument(format!("keep_seconds {s} is out of range"))
            })
        })
        .transpose()?;
    Ok(Retention {
        keep_versions: r.keep_versions,
        keep_for,
    })
}

pub fn lease_to_pb(l: LeaseRecord) -> pb::Lease {
    pb::Lease {
        lease_id: l.lease_id,
        name: l.name.unwrap_or_default(),
        namespace: l.namespace,
        table: l.table,
        holder: l.holder,
        selection: l.selection,
        created_at_micros: l.created_at,
        expires_at_micros: l.expires_at,
        batch_ids: l.batch_ids,
    }
}

pub fn gc_counts_to_pb(c: GcCounts) -> pb::GcCounts {
    pb::GcCounts {
        batches_expired: c.batches_expired,
        batches_deleted: c.batches_deleted,
        files_deleted: c.files_deleted,
        bytes_deleted: c.bytes_deleted,
        tables_purged: c.tables_purged,
        batches_failed: c.batches_failed,
    }
}

pub fn orphan_to_pb(o: Orphan) -> pb::Orphan {
    pb::Orphan {
        path: o.path,
        size_bytes: o.size_bytes,
        last_modified_micros: o.last_modified,
        reason: o.reason,
    }
}

pub fn namespace_to_pb(ns: &NamespaceRecord) -> pb::Namespace {
    pb::Namespace {
        name: ns.name.clone(),
        created_at_micros: ns.created_at,
    }
}

fn file_from_pb(file: &pb::DataFile) -> DataFile {
    DataFile {
        path: file.path.clone(),
        size_bytes: file.size_bytes,
        rows: file.rows,
    }
}

fn file_to_pb(file: &DataFile) -> pb::DataFile {
    pb::DataFile {
        path: file.path.clone(),
        size_bytes: file.size_bytes,
        rows: file.rows,
    }
}

/// Unset is no expectation; "-" or "" expects a partition never written (see
/// [`wire::expects_new`]); anything else a batch id.
pub fn expected_from_pb(expected: Option<&String>) -> Option<ExpectedCurrent> {
    match expected {
        None => None,
        Some(value) if wire::expects_new(value) => Some(ExpectedCurrent::Nothing),
        Some(batch) => Some(ExpectedCurrent::Batch(batch.to_owned())),
    }
}

pub fn update_from_pb(update: pb::PartitionUpdate) -> PartitionUpdate {
    PartitionUpdate {
        expected: expected_from_pb(update.expected_current_batch_id.as_ref()),
        files: update.files.iter().map(file_from_pb).collect(),
        batch_id: update.batch_id,
        arrow_schema: update.arrow_schema,
        inputs: update.input_batch_ids,
    }
}

pub fn committed_to_pb(c: &CommittedVersion) -> pb::CommittedPartition {
    pb::CommittedPartition {
        batch_id: c.batch_id.clone(),
        namespace: c.namespace.clone(),
        table: c.table.clone(),
        partition: Some(partition_spec(&c.partition)),
        version: c.version,
        committed_at_micros: c.committed_at,
        rows: c.rows,
        bytes: c.bytes,
    }
}

pub fn batch_to_pb(b: &BatchRecord) -> pb::Batch {
    let state = match b.state {
        BatchState::Pending => pb::BatchState::Pending,
        BatchState::Committed => pb::BatchState::Committed,
        BatchState::Aborted => pb::BatchState::Aborted,
        BatchState::Abandoned => pb::BatchState::Abandoned,
    };
    pb::Batch {
        batch_id: b.batch_id.clone(),
        namespace: b.table.namespace.clone(),
        table: b.table.name.clone(),
        partition: Some(partition_spec(&b.partition.pairs(&b.table.keys))),
        state: state as i32,
        location: b.location.clone(),
        created_at_micros: b.created_at,
        lease_expires_at_micros: b.lease_expires_at,
        version: b.version.unwrap_or_default(),
        rows: b.rows,
        bytes: b.bytes,
        files: b.files.iter().map(file_to_pb).collect(),
        expired_at_micros: b.expired.as_ref().map(|e| e.at).unwrap_or_default(),
        expired_reason: b
            .expired
            .as_ref()
            .map(|e| e.reason.clone())
            .unwrap_or_default(),
        deleted_at_micros: b.deleted_at.unwrap_or_default(),
    }
}

/// A read's partition filter, as conditions for the catalog to check against the table.
///
/// # Errors
/// `InvalidArgument` for a condition without a comparison.
pub fn filter_from_pb(predicates: &[pb::KeyPredicate]) -> CatalogResult<Vec<KeyCondition>> {
    predicates
        .iter()
        .map(|p| {
            let op = match pb::PredicateOp::try_from(p.op) {
                Ok(pb::PredicateOp::Eq) => PredicateOp::Eq,
                Ok(pb::PredicateOp::Ne) => PredicateOp::Ne,
                Ok(pb::PredicateOp::Lt) => PredicateOp::Lt,
                Ok(pb::PredicateOp::Le) => PredicateOp::Le,
                Ok(pb::PredicateOp::Gt) => PredicateOp::Gt,
                Ok(pb::PredicateOp::Ge) => PredicateOp::Ge,
                Ok(pb::PredicateOp::In) => PredicateOp::In,
                Ok(pb::PredicateOp::Unspecified) | Err(_) => {
                    return Err(CatalogError::InvalidArgument(format!(
                        "the partition filter on {} has no comparison (=, !=, <, <=, >, >= or in)",
                        crate::names::quote_for_message(&p.key)
                    )));
                }
            };
            Ok((p.key.clone(), op, p.values.clone()))
        })
        .collect()
}

pub fn selector_from_pb(selector: Option<&pb::Selector>) -> CatalogResult<Selector> {
    use pb::selector::Kind;
    Ok(match selector.and_then(|s| s.kind.as_ref()) {
        None | Some(Kind::Current(_)) => Selector::Current,
        Some(Kind::Version(v)) if *v >= 1 => Selector::Version(*v),
        Some(Kind::Version(v)) => {
            return Err(CatalogError::InvalidArgument(format!(
                "version {v} does not exist; versions start at 1"
            )));
        }
        Some(Kind::BatchId(b)) => Selector::Batch(b.clone()),
        Some(Kind::Tag(t)) => Selector::Tag(t.clone()),
        Some(Kind::AsOfMicros(t)) => Selector::AsOf(*t),
    })
}

pub fn resolved_to_pb(r: ResolvedPartition) -> pb::ResolvedPartition {
    pb::ResolvedPartition {
        partition: Some(partition_spec(&r.partition)),
        files: r.files.iter().map(file_to_pb).collect(),
        batch_id: r.batch_id,
        version: r.version,
        location: r.location,
        rows: r.rows,
        bytes: r.bytes,
        committed_at_micros: r.committed_at,
        arrow_schema: Vec::new(),
    }
}

pub fn summary_to_pb(s: PartitionSummary) -> pb::PartitionInfo {
    pb::PartitionInfo {
        partition: Some(partition_spec(&s.partition)),
        batch_id: s.batch_id,
        version: s.version,
        rows: s.rows,
        bytes: s.bytes,
        updated_at_micros: s.updated_at,
    }
}

pub fn history_to_pb(h: HistoryRecord) -> pb::HistoryEntry {
    pb::HistoryEntry {
        version: h.version,
        batch_id: h.batch_id,
        operation: h.operation,
        actor: h.actor,
        message: h.message,
        committed_at_micros: h.committed_at,
        rows: h.rows,
        bytes: h.bytes,
        current: h.current,
        expired_at_micros: h.expired.as_ref().map(|e| e.at).unwrap_or_default(),
        expired_reason: h.expired.map(|e| e.reason).unwrap_or_default(),
    }
}

pub fn rollback_target_from_pb(
    target: Option<&pb::rollback_request::Target>,
) -> CatalogResult<RollbackTarget> {
    use pb::rollback_request::Target;
    match target {
        Some(Target::ToVersion(v)) if *v >= 1 => Ok(RollbackTarget::Version(*v)),
        Some(Target::ToVersion(v)) => Err(CatalogError::InvalidArgument(format!(
            "cannot roll back to version {v}; versions start at 1"
        ))),
        Some(Target::ToBatchId(b)) => Ok(RollbackTarget::Batch(b.clone())),
        None => Err(CatalogError::InvalidArgument(
            "a rollback needs a target: to_version or to_batch_id".into(),
        )),
    }
}

pub fn tag_target_from_pb(
    target: Option<&pb::create_tag_request::Target>,
) -> CatalogResult<TagTarget> {
    use pb::create_tag_request::Target;
    match target {
        Some(Target::BatchId(b)) => Ok(TagTarget::Batch(b.clone())),
        Some(Target::PartitionVersion(pv)) if pv.version >= 0 => Ok(TagTarget::PartitionVersion(
            partition_pairs(pv.partition.as_ref()),
            pv.version,
        )),
        Some(Target::PartitionVersion(pv)) => Err(CatalogError::InvalidArgument(format!(
            "version {} does not exist; versions start at 1 (0 means current)",
            pv.version
        ))),
        None => Err(CatalogError::InvalidArgument(
            "a tag needs a target: batch_id or partition_version".into(),
        )),
    }
}

pub fn tag_to_pb(t: TagRecord) -> pb::Tag {
    pb::Tag {
        partition: Some(partition_spec(&t.partition)),
        name: t.name,
        batch_id: t.batch_id,
        version: t.version,
        created_at_micros: t.created_at,
        created_by: t.created_by,
    }
}

pub fn permission_from_pb(value: i32) -> CatalogResult<Permission> {
    match pb::Permission::try_from(value) {
        Ok(pb::Permission::Read) => Ok(Permission::Read),
        Ok(pb::Permission::Write) => Ok(Permission::Write),
        Ok(pb::Permission::Admin) => Ok(Permission::Admin),
        _ => Err(CatalogError::InvalidArgument(
            "a grant needs a permission: read, write or admin".into(),
        )),
    }
}

fn permission_to_pb(p: Permission) -> pb::Permission {
    match p {
        Permission::Read => pb::Permission::Read,
        Permission::Write => pb::Permission::Write,
        Permission::Admin => pb::Permission::Admin,
    }
}

/// A grantee: exactly one of principal and group, each a bounded printable name.
pub fn grantee_from_pb(grantee: Option<&pb::Grantee>) -> CatalogResult<Grantee> {
    let check = |name: &str| {
        let ok = !name.trim().is_empty()
            && name.len() <= 256
            && !name.chars().any(char::is_control)
            && name.trim() == name;
        if ok {
            Ok(name.to_owned())
        } else {
            Err(CatalogError::InvalidArgument(format!(
                "{} is not a principal or group name (1 to 256 printable characters, no \
                 surrounding spaces)",
                crate::names::quote_for_message(name)
            )))
        }
    };
    match grantee {
        Some(g) if !g.principal.is_empty() && g.group.is_empty() => {
            Ok(Grantee::Principal(check(&g.principal)?))
        }
        Some(g) if g.principal.is_empty() && !g.group.is_empty() => {
            Ok(Grantee::Group(check(&g.group)?))
        }
        _ => Err(CatalogError::InvalidArgument(
            "a grant is for exactly one principal or one group".into(),
        )),
    }
}

/// A grant's namespace: a namespace name, or `*` for every namespace.
pub fn grant_namespace(namespace: &str) -> CatalogResult<String> {
    if namespace != batchstore_proto::wire::ALL_NAMESPACES {
        validate_name(NameKind::Namespace, namespace)?;
    }
    Ok(namespace.to_owned())
}

pub fn grant_to_pb(g: &GrantRecord) -> pb::GrantEntry {
    let (principal, group) = match &g.grantee {
        Grantee::Principal(n) => (n.clone(), String::new()),
        Grantee::Group(n) => (String::new(), n.clone()),
    };
    pb::GrantEntry {
        namespace: g.namespace.clone(),
        grantee: Some(pb::Grantee { principal, group }),
        permission: permission_to_pb(g.permission).into(),
        granted_by: g.granted_by.clone(),
        granted_at_micros: g.granted_at,
    }
}

pub fn audit_to_pb(e: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: e.id,
        at_micros: e.at,
        principal: e.principal,
        method: e.method,
        namespace: e.namespace,
        target: e.target,
        outcome: e.outcome,
        detail: e.detail,
        claimed_actor: e.claimed_actor,
    }
}
