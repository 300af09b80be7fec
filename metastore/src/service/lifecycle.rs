//! The lifecycle RPCs: retention, undrop, leases, garbage collection, orphans and schema
//! evolution. Each checks
//! what the caller holds, converts, and calls the catalog, like the rest of the service.

use super::convert::*;
use super::guard::Caller;
use super::{MetastoreService, Reply, no_actor, seconds_of};
use crate::access::Permission;
use crate::catalog::{LeaseRef, PinTo};
use crate::error::{CatalogError, CatalogResult};
use crate::model::{GcScope, SchemaPolicy};
use batchstore_proto::v1 as pb;
use batchstore_proto::wire::ALL_NAMESPACES;
use std::time::Duration;
use tonic::Request;

/// The lease a request names: by id, or by table and name.
fn lease_ref<'a>(
    lease_id: &'a str,
    table: Option<&pb::TableRef>,
    name: &'a str,
    names: &'a mut (String, String),
) -> CatalogResult<LeaseRef<'a>> {
    if !lease_id.is_empty() {
        return Ok(LeaseRef::Id(lease_id));
    }
    if name.is_empty() {
        return Err(CatalogError::InvalidArgument(
            "name the lease: its lease_id, or its table and name".into(),
        ));
    }
    *names = table_ref(table)?;
    Ok(LeaseRef::Named {
        namespace: &names.0,
        table: &names.1,
        name,
    })
}

impl MetastoreService {
    pub(super) async fn do_set_retention(
        &self,
        request: Request<pb::SetRetentionRequest>,
    ) -> Reply<pb::SetRetentionResponse> {
        self.guarded("SetRetention", request, no_actor, async |caller, r| {
            let retention = retention_from_pb(r.retention.as_ref())?;
            let table = (!r.table.is_empty()).then_some(r.table.as_str());
            match table {
                Some(t) => caller.require_table(Permission::Admin, &r.namespace, t)?,
                None => caller.require(Permission::Admin, &r.namespace)?,
            }
            caller.note(retention.describe());
            let effective = self
                .catalog
                .set_retention(&r.namespace, table, retention)
                .await?;
            Ok(pb::SetRetentionResponse {
                retention: Some(retention_to_pb(retention)),
                effective_retention: Some(retention_to_pb(effective)),
            })
        })
        .await
    }

    pub(super) async fn do_undrop_table(
        &self,
        request: Request<pb::UndropTableRequest>,
    ) -> Reply<pb::UndropTableResponse> {
        self.guarded("UndropTable", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Admin, &ns, &table)?;
            let table = self.catalog.undrop_table(&ns, &table).await?;
            Ok(pb::UndropTableResponse {
                table: Some(table_to_pb(&table)),
            })
        })
        .await
    }

    /// A table listing entry, with when a dropped table's storage may be freed.
    pub(super) fn listed_table(&self, table: &crate::model::TableRecord) -> pb::Table {
        let mut out = table_to_pb(table);
        if let Some(dropped) = table.dropped_at {
            out.purge_after_micros = self.catalog.purge_after(dropped);
        }
        out
    }

    /// ResolvePartitions with a read lease on what it resolved.
    pub(super) async fn resolve_leased(
        &self,
        caller: &Caller,
        r: pb::ResolvePartitionsRequest,
    ) -> CatalogResult<pb::ResolvePartitionsResponse> {
        let (ns, table) = table_ref(r.table.as_ref())?;
        let selector = selector_from_pb(r.selector.as_ref())?;
        let specs: Vec<_> = r
            .partitions
            .iter()
            .map(|p| partition_pairs(Some(p)))
            .collect();
        let holder = caller.actor();
        let ttl = self.catalog.read_lease_ttl(
            seconds_of(r.lease_seconds, "lease_seconds")?.unwrap_or(Duration::from_secs(120)),
        );
        let to = if r.lease_id.is_empty() {
            PinTo::New {
                name: None,
                holder: &holder,
                selection: "a read".to_owned(),
                ttl,
            }
        } else {
            PinTo::Existing {
                lease_id: &r.lease_id,
                holder: &holder,
                ttl,
            }
        };
        let (table, page, lease_id, expires_at) = self
            .catalog
            .resolve_leased(
                &ns,
                &table,
                &specs,
                &selector,
                &filter_from_pb(&r.partition_filter)?,
                r.page_size,
                &r.page_token,
                to,
            )
            .await?;
        Ok(pb::ResolvePartitionsResponse {
            partitions: page.items.into_iter().map(resolved_to_pb).collect(),
            table: Some(table_to_pb(&table)),
            next_page_token: page.next_page_token,
            lease_id,
            lease_expires_at_micros: expires_at,
        })
    }

    pub(super) async fn do_acquire_lease(
        &self,
        request: Request<pb::AcquireLeaseRequest>,
    ) -> Reply<pb::AcquireLeaseResponse> {
        self.guarded("AcquireLease", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Read, &ns, &table)?;
            let selector = selector_from_pb(r.selector.as_ref())?;
            let specs: Vec<_> = r
                .partitions
                .iter()
                .map(|p| partition_pairs(Some(p)))
                .collect();
            let lease = self
                .catalog
                .acquire_lease(
                    &ns,
                    &table,
                    &specs,
                    &selector,
                    &r.name,
                    &caller.actor(),
                    seconds_of(r.ttl_seconds, "ttl_seconds")?,
                )
                .await?;
            caller.note(format!("lease {}", r.name));
            Ok(pb::AcquireLeaseResponse {
                lease: Some(lease_to_pb(lease)),
            })
        })
        .await
    }

    pub(super) async fn do_extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Reply<pb::ExtendLeaseResponse> {
        self.guarded("ExtendLease", request, no_actor, async |caller, r| {
            let mut names = Default::default();
            let lease = lease_ref(&r.lease_id, r.table.as_ref(), &r.name, &mut names)?;
            let (ns, table) = self.catalog.lease_table(&lease).await?;
            caller.require_table(Permission::Read, &ns, &table)?;
            let expires_at = self
                .catalog
                .extend_lease(
                    &lease,
                    &caller.actor(),
                    caller.can(Permission::Admin, &ns),
                    seconds_of(r.ttl_seconds, "ttl_seconds")?,
                )
                .await?;
            Ok(pb::ExtendLeaseResponse {
                expires_at_micros: expires_at,
            })
        })
        .await
    }

    pub(super) async fn do_release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> Reply<pb::ReleaseLeaseResponse> {
        self.guarded("ReleaseLease", request, no_actor, async |caller, r| {
            let mut names = Default::default();
            let lease = lease_ref(&r.lease_id, r.table.as_ref(), &r.name, &mut names)?;
            let (ns, table) = match self.catalog.lease_table(&lease).await {
                Ok(found) => found,
                Err(CatalogError::NotFound { .. }) => {
                    return Ok(pb::ReleaseLeaseResponse { released: false });
                }
                Err(other) => return Err(other),
            };
            caller.require_table(Permission::Read, &ns, &table)?;
            let released = self
                .catalog
                .release_lease(&lease, &caller.actor(), caller.can(Permission::Admin, &ns))
                .await?;
            Ok(pb::ReleaseLeaseResponse { released })
        })
        .await
    }

    pub(super) async fn do_list_leases(
        &self,
        request: Request<pb::ListLeasesRequest>,
    ) -> Reply<pb::ListLeasesResponse> {
        self.guarded("ListLeases", request, no_actor, async |caller, r| {
            if !r.namespace.is_empty() {
                caller.require(Permission::Read, &r.namespace)?;
            }
            let page = self
                .catalog
                .list_leases(
                    &r.namespace,
                    &r.table,
                    r.include_reads,
                    r.page_size,
                    &r.page_token,
                )
                .await?;
            Ok(pb::ListLeasesResponse {
                leases: page
                    .items
                    .into_iter()
                    .filter(|l| caller.can(Permission::Read, &l.namespace))
                    .map(lease_to_pb)
                    .collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    pub(super) async fn do_collect_garbage(
        &self,
        request: Request<pb::CollectGarbageRequest>,
    ) -> Reply<pb::CollectGarbageResponse> {
        self.guarded("CollectGarbage", request, no_actor, async |caller, r| {
            let scope = match (r.namespace.is_empty(), r.table.is_empty()) {
                (true, true) => {
                    caller.require(Permission::Admin, ALL_NAMESPACES)?;
                    GcScope::All
                }
                (false, true) => {
                    caller.require(Permission::Admin, &r.namespace)?;
                    GcScope::Namespace(r.namespace.clone())
                }
                (false, false) => {
                    caller.require_table(Permission::Admin, &r.namespace, &r.table)?;
                    GcScope::Table(r.namespace.clone(), r.table.clone())
                }
                (true, false) => {
                    return Err(CatalogError::InvalidArgument(
                        "a table needs its namespace".into(),
                    ));
                }
            };
            let step = self
                .catalog
                .collect_garbage(&scope, r.dry_run, &r.resume_token)
                .await?;
            Ok(pb::CollectGarbageResponse {
                counts: Some(gc_counts_to_pb(step.counts)),
                more: !step.resume_token.is_empty(),
                resume_token: step.resume_token,
                remaining: step.remaining,
                errors: step.errors,
            })
        })
        .await
    }

    pub(super) async fn do_find_orphans(
        &self,
        request: Request<pb::FindOrphansRequest>,
    ) -> Reply<pb::FindOrphansResponse> {
        self.guarded("FindOrphans", request, no_actor, async |caller, r| {
            // The warehouse spans every namespace.
            caller.require(Permission::Admin, ALL_NAMESPACES)?;
            if !r.delete.is_empty() {
                let deleted = self.catalog.delete_orphans(&r.delete).await?;
                caller.note(format!("deleted {} orphans", deleted.len()));
                return Ok(pb::FindOrphansResponse {
                    deleted,
                    ..Default::default()
                });
            }
            let limit = usize::try_from(r.limit.max(0)).unwrap_or(0);
            let report = self.catalog.find_orphans(limit).await?;
            Ok(pb::FindOrphansResponse {
                orphans: report.orphans.into_iter().map(orphan_to_pb).collect(),
                total: report.total,
                total_bytes: report.total_bytes,
                deleted: Vec::new(),
                scanned: report.scanned,
                unreadable: report.unreadable,
                first_unreadable: report.first_unreadable.unwrap_or_default(),
            })
        })
        .await
    }

    pub(super) async fn do_set_schema_policy(
        &self,
        request: Request<pb::SetSchemaPolicyRequest>,
    ) -> Reply<pb::SetSchemaPolicyResponse> {
        self.guarded("SetSchemaPolicy", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Admin, &ns, &table)?;
            let policy = SchemaPolicy::parse(&r.schema_policy)?;
            caller.note(policy.as_str());
            let table = self.catalog.set_schema_policy(&ns, &table, policy).await?;
            Ok(pb::SetSchemaPolicyResponse {
                table: Some(table_to_pb(&table)),
            })
        })
        .await
    }

    pub(super) async fn do_get_schema_history(
        &self,
        request: Request<pb::GetSchemaHistoryRequest>,
    ) -> Reply<pb::GetSchemaHistoryResponse> {
        self.guarded("GetSchemaHistory", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Read, &ns, &table)?;
            let versions = self.catalog.schema_history(&ns, &table).await?;
            Ok(pb::GetSchemaHistoryResponse {
                versions: versions
                    .into_iter()
                    .map(|v| pb::SchemaVersion {
                        version: v.version,
                        arrow_schema: v.arrow_schema,
                        changed_at_micros: v.changed_at,
                        change: v.change,
                    })
                    .collect(),
            })
        })
        .await
    }
}
