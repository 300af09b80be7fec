//! The gRPC face of the catalog: `batchstore.v1.Metastore`.
//!
//! Each method passes the guard (`guard`: who calls, may it, the audit event), converts the
//! request (`convert`), calls the catalog, and maps errors once (`status`). No catalog logic
//! lives here.

pub mod convert;
pub mod gate;
pub mod guard;
mod lifecycle;
pub mod malformed;
pub mod status;

use crate::access::{AuditFilter, Permission};
use crate::catalog::Catalog;
use crate::error::{CatalogError, CatalogResult};
use crate::model::SchemaPolicy;
use batchstore_proto::v1 as pb;
use batchstore_proto::v1::metastore_server::Metastore;
use batchstore_proto::wire::{ACTOR_KEY, ALL_NAMESPACES};
use convert::*;
use guard::{Caller, Guard};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The service, over one catalog.
#[derive(Debug, Clone)]
pub struct MetastoreService {
    catalog: Catalog,
    guard: Arc<Guard>,
}

impl MetastoreService {
    pub fn new(catalog: Catalog, guard: Arc<Guard>) -> Self {
        MetastoreService { catalog, guard }
    }

    /// Runs one call: authenticate, run `body` (which authorizes what it touches), audit, and
    /// count it in the metrics.
    async fn guarded<Req, Resp>(
        &self,
        method: &'static str,
        request: Request<Req>,
        claimed_actor: impl FnOnce(&Req) -> &str,
        body: impl AsyncFnOnce(&Caller, Req) -> CatalogResult<Resp>,
    ) -> Reply<Resp> {
        let started = std::time::Instant::now();
        let reply = self.answer(method, request, claimed_actor, body).await;
        let code = reply
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        crate::metrics::rpc(method, code, started.elapsed());
        reply
    }

    /// [`Self::guarded`]'s work, unmeasured.
    async fn answer<Req, Resp>(
        &self,
        method: &'static str,
        request: Request<Req>,
        claimed_actor: impl FnOnce(&Req) -> &str,
        body: impl AsyncFnOnce(&Caller, Req) -> CatalogResult<Resp>,
    ) -> Reply<Resp> {
        let claimed = claimed(&request, claimed_actor(request.get_ref()));
        let proven = request
            .extensions()
            .get::<gate::Authenticated>()
            .map(|a| a.0.clone());
        let mut slot = self
            .guard
            .audit_slot(method, &claimed, proven.as_deref())
            .await;
        let caller = match self.guard.caller(proven, request.metadata(), claimed).await {
            Ok(caller) => caller,
            Err(error) => {
                slot.refuse(&error);
                return Err(status::to_status(error));
            }
        };
        slot.attach(&caller);
        let result = body(&caller, request.into_inner()).await;
        slot.finish(&result);
        result.map(Response::new).map_err(status::to_status)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// A request without an actor field of its own.
fn no_actor<T>(_: &T) -> &str {
    ""
}

/// A requested duration in seconds (a lease, a time to live): `None` (the default) for 0;
/// negative is refused, naming the request's `field`.
fn seconds_of(seconds: i64, field: &str) -> CatalogResult<Option<Duration>> {
    if seconds < 0 {
        return Err(CatalogError::InvalidArgument(format!(
            "{field} cannot be negative; use 0 for the default"
        )));
    }
    Ok((seconds > 0).then(|| Duration::from_secs(seconds as u64)))
}

/// The actor a client claims: the request's own field, else the `batchstore-actor` metadata,
/// else "anonymous". Recorded as the actor only without authentication.
fn claimed<T>(request: &Request<T>, field: &str) -> String {
    if !field.is_empty() {
        return field.chars().take(256).collect();
    }
    request
        .metadata()
        .get(ACTOR_KEY)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect())
        .unwrap_or_else(|| "anonymous".to_owned())
}

#[tonic::async_trait]
impl Metastore for MetastoreService {
    async fn create_namespace(
        &self,
        request: Request<pb::CreateNamespaceRequest>,
    ) -> Reply<pb::CreateNamespaceResponse> {
        self.guarded("CreateNamespace", request, no_actor, async |caller, r| {
            caller.require(Permission::Admin, &r.name)?;
            let (ns, created) = self
                .catalog
                .create_namespace(&r.name, r.if_not_exists)
                .await?;
            Ok(pb::CreateNamespaceResponse {
                namespace: Some(namespace_to_pb(&ns)),
                created,
            })
        })
        .await
    }

    async fn list_namespaces(
        &self,
        request: Request<pb::ListNamespacesRequest>,
    ) -> Reply<pb::ListNamespacesResponse> {
        self.guarded("ListNamespaces", request, no_actor, async |caller, r| {
            let page = self
                .catalog
                .list_namespaces(r.page_size, &r.page_token)
                .await?;
            Ok(pb::ListNamespacesResponse {
                namespaces: page
                    .items
                    .iter()
                    .filter(|ns| caller.can(Permission::Read, &ns.name))
                    .map(namespace_to_pb)
                    .collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    async fn drop_namespace(
        &self,
        request: Request<pb::DropNamespaceRequest>,
    ) -> Reply<pb::DropNamespaceResponse> {
        self.guarded("DropNamespace", request, no_actor, async |caller, r| {
            caller.require(Permission::Admin, &r.name)?;
            self.catalog.drop_namespace(&r.name).await?;
            Ok(pb::DropNamespaceResponse {})
        })
        .await
    }

    async fn create_table(
        &self,
        request: Request<pb::CreateTableRequest>,
    ) -> Reply<pb::CreateTableResponse> {
        self.guarded("CreateTable", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Admin, &ns, &table)?;
            let keys = r
                .partition_keys
                .iter()
                .map(key_from_pb)
                .collect::<CatalogResult<Vec<_>>>()?;
            let schema = (!r.arrow_schema.is_empty()).then_some(r.arrow_schema);
            let policy = SchemaPolicy::parse(&r.schema_policy)?;
            let (table, created) = self
                .catalog
                .create_table(&ns, &table, keys, schema, policy, r.if_not_exists)
                .await?;
            Ok(pb::CreateTableResponse {
                table: Some(table_to_pb(&table)),
                created,
            })
        })
        .await
    }

    async fn get_table(
        &self,
        request: Request<pb::GetTableRequest>,
    ) -> Reply<pb::GetTableResponse> {
        self.guarded("GetTable", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Read, &ns, &table)?;
            let table = self.catalog.get_table(&ns, &table).await?;
            Ok(pb::GetTableResponse {
                table: Some(table_to_pb(&table)),
            })
        })
        .await
    }

    async fn list_tables(
        &self,
        request: Request<pb::ListTablesRequest>,
    ) -> Reply<pb::ListTablesResponse> {
        self.guarded("ListTables", request, no_actor, async |caller, r| {
            let namespace = (!r.namespace.is_empty()).then_some(r.namespace.as_str());
            if let Some(ns) = namespace {
                caller.require(Permission::Read, ns)?;
            }
            let page = self
                .catalog
                .list_tables(namespace, r.dropped, r.page_size, &r.page_token)
                .await?;
            Ok(pb::ListTablesResponse {
                tables: page
                    .items
                    .iter()
                    .filter(|t| caller.can(Permission::Read, &t.namespace))
                    .map(|t| self.listed_table(t))
                    .collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    async fn drop_table(
        &self,
        request: Request<pb::DropTableRequest>,
    ) -> Reply<pb::DropTableResponse> {
        self.guarded("DropTable", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Admin, &ns, &table)?;
            self.catalog.drop_table(&ns, &table).await?;
            Ok(pb::DropTableResponse {})
        })
        .await
    }

    async fn begin_write(
        &self,
        request: Request<pb::BeginWriteRequest>,
    ) -> Reply<pb::BeginWriteResponse> {
        self.guarded("BeginWrite", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Write, &ns, &table)?;
            let lease = seconds_of(r.lease_seconds, "lease_seconds")?;
            let began_by = caller.principal().map(|p| p.name.as_str());
            let pending = self
                .catalog
                .begin_write(
                    &ns,
                    &table,
                    &partition_pairs(r.partition.as_ref()),
                    lease,
                    began_by,
                )
                .await?;
            caller.note(format!("batch {}", pending.batch_id));
            Ok(pb::BeginWriteResponse {
                batch_id: pending.batch_id,
                location: pending.location,
                lease_expires_at_micros: pending.lease_expires_at,
                current_batch_id: pending.current_batch_id.unwrap_or_default(),
                current_version: pending.current_version,
            })
        })
        .await
    }

    async fn commit(&self, request: Request<pb::CommitRequest>) -> Reply<pb::CommitResponse> {
        self.guarded(
            "Commit",
            request,
            |r| r.actor.as_str(),
            async |caller, r| {
                let updates = r.updates.into_iter().map(update_from_pb).collect();
                let check = caller.batch_check(Permission::Write, true);
                let may_read_input = |ns: &str| caller.check(Permission::Read, ns);
                let outcome = self
                    .catalog
                    .commit(
                        updates,
                        &r.message,
                        &caller.actor(),
                        &check,
                        &may_read_input,
                    )
                    .await?;
                caller.note(
                    outcome
                        .committed
                        .iter()
                        .map(|c| format!("{} v{}", c.batch_id, c.version))
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                if !outcome.already_committed {
                    crate::metrics::committed(outcome.committed.len());
                }
                Ok(pb::CommitResponse {
                    committed: outcome.committed.iter().map(committed_to_pb).collect(),
                    already_committed: outcome.already_committed,
                })
            },
        )
        .await
    }

    async fn abort_write(
        &self,
        request: Request<pb::AbortWriteRequest>,
    ) -> Reply<pb::AbortWriteResponse> {
        self.guarded("AbortWrite", request, no_actor, async |caller, r| {
            let check = caller.batch_check(Permission::Write, true);
            self.catalog.abort_write(&r.batch_id, &check).await?;
            Ok(pb::AbortWriteResponse {})
        })
        .await
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Reply<pb::RenewLeaseResponse> {
        self.guarded("RenewLease", request, no_actor, async |caller, r| {
            let lease = seconds_of(r.lease_seconds, "lease_seconds")?;
            let check = caller.batch_check(Permission::Write, true);
            let lease_expires_at_micros =
                self.catalog.renew_lease(&r.batch_id, lease, &check).await?;
            Ok(pb::RenewLeaseResponse {
                lease_expires_at_micros,
            })
        })
        .await
    }

    async fn get_batch(
        &self,
        request: Request<pb::GetBatchRequest>,
    ) -> Reply<pb::GetBatchResponse> {
        self.guarded("GetBatch", request, no_actor, async |caller, r| {
            let batch = self.catalog.get_batch(&r.batch_id).await?;
            caller.batch_check(Permission::Read, false)(&batch)?;
            Ok(pb::GetBatchResponse {
                batch: Some(batch_to_pb(&batch)),
            })
        })
        .await
    }

    async fn resolve_partitions(
        &self,
        request: Request<pb::ResolvePartitionsRequest>,
    ) -> Reply<pb::ResolvePartitionsResponse> {
        self.guarded("ResolvePartitions", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Read, &ns, &table)?;
            if r.lease_seconds != 0 || !r.lease_id.is_empty() {
                return self.resolve_leased(caller, r).await;
            }
            let selector = selector_from_pb(r.selector.as_ref())?;
            let specs: Vec<_> = r
                .partitions
                .iter()
                .map(|p| partition_pairs(Some(p)))
                .collect();
            let filter = filter_from_pb(&r.partition_filter)?;
            let (table, page) = self
                .catalog
                .resolve(
                    &ns,
                    &table,
                    &specs,
                    &selector,
                    &filter,
                    r.page_size,
                    &r.page_token,
                )
                .await?;
            Ok(pb::ResolvePartitionsResponse {
                partitions: page.items.into_iter().map(resolved_to_pb).collect(),
                table: Some(table_to_pb(&table)),
                next_page_token: page.next_page_token,
                lease_id: String::new(),
                lease_expires_at_micros: 0,
            })
        })
        .await
    }

    async fn list_partitions(
        &self,
        request: Request<pb::ListPartitionsRequest>,
    ) -> Reply<pb::ListPartitionsResponse> {
        self.guarded("ListPartitions", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Read, &ns, &table)?;
            let (_, page) = self
                .catalog
                .list_partitions(&ns, &table, r.page_size, &r.page_token)
                .await?;
            Ok(pb::ListPartitionsResponse {
                partitions: page.items.into_iter().map(summary_to_pb).collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Reply<pb::GetHistoryResponse> {
        self.guarded("GetHistory", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Read, &ns, &table)?;
            let pairs = partition_pairs(r.partition.as_ref());
            let page = self
                .catalog
                .history(&ns, &table, &pairs, r.page_size, &r.page_token)
                .await?;
            Ok(pb::GetHistoryResponse {
                entries: page.items.into_iter().map(history_to_pb).collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Reply<pb::RollbackResponse> {
        self.guarded(
            "Rollback",
            request,
            |r| r.actor.as_str(),
            async |caller, r| {
                let (ns, table) = table_ref(r.table.as_ref())?;
                caller.require_table(Permission::Write, &ns, &table)?;
                let target = rollback_target_from_pb(r.target.as_ref())?;
                let expected = expected_from_pb(r.expected_current_batch_id.as_ref());
                let pairs = partition_pairs(r.partition.as_ref());
                let committed = self
                    .catalog
                    .rollback(
                        &ns,
                        &table,
                        &pairs,
                        &target,
                        expected,
                        &r.message,
                        &caller.actor(),
                        &r.request_id,
                    )
                    .await?;
                caller.note(format!("{} v{}", committed.batch_id, committed.version));
                crate::metrics::rolled_back();
                Ok(pb::RollbackResponse {
                    committed: Some(committed_to_pb(&committed)),
                })
            },
        )
        .await
    }

    async fn create_tag(
        &self,
        request: Request<pb::CreateTagRequest>,
    ) -> Reply<pb::CreateTagResponse> {
        self.guarded("CreateTag", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Write, &ns, &table)?;
            let target = tag_target_from_pb(r.target.as_ref())?;
            let tag = self
                .catalog
                .create_tag(&ns, &table, &r.name, &target, &caller.actor())
                .await?;
            caller.note(format!("tag {} on {}", tag.name, tag.batch_id));
            Ok(pb::CreateTagResponse {
                tag: Some(tag_to_pb(tag)),
            })
        })
        .await
    }

    async fn list_tags(
        &self,
        request: Request<pb::ListTagsRequest>,
    ) -> Reply<pb::ListTagsResponse> {
        self.guarded("ListTags", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Read, &ns, &table)?;
            let tags = self.catalog.list_tags(&ns, &table).await?;
            Ok(pb::ListTagsResponse {
                tags: tags.into_iter().map(tag_to_pb).collect(),
            })
        })
        .await
    }

    async fn delete_tag(
        &self,
        request: Request<pb::DeleteTagRequest>,
    ) -> Reply<pb::DeleteTagResponse> {
        self.guarded("DeleteTag", request, no_actor, async |caller, r| {
            let (ns, table) = table_ref(r.table.as_ref())?;
            caller.require_table(Permission::Write, &ns, &table)?;
            self.catalog.delete_tag(&ns, &table, &r.name).await?;
            caller.note(format!("tag {}", crate::names::quote_for_message(&r.name)));
            Ok(pb::DeleteTagResponse {})
        })
        .await
    }

    async fn get_lineage(
        &self,
        request: Request<pb::GetLineageRequest>,
    ) -> Reply<pb::GetLineageResponse> {
        self.guarded("GetLineage", request, no_actor, async |caller, r| {
            let batch = self.catalog.get_batch(&r.batch_id).await?;
            caller.batch_check(Permission::Read, false)(&batch)?;
            let (inputs, outputs) = self.catalog.lineage(&r.batch_id).await?;
            // Only the linked batches the caller may read are named.
            let visible = |linked: Vec<(String, String)>| {
                linked
                    .into_iter()
                    .filter(|(_, ns)| caller.can(Permission::Read, ns))
                    .map(|(id, _)| id)
                    .collect()
            };
            Ok(pb::GetLineageResponse {
                inputs: visible(inputs),
                outputs: visible(outputs),
            })
        })
        .await
    }

    async fn grant(&self, request: Request<pb::GrantRequest>) -> Reply<pb::GrantResponse> {
        self.guarded("Grant", request, no_actor, async |caller, r| {
            caller.require_authentication("grants")?;
            let namespace = grant_namespace(&r.namespace)?;
            caller.require(Permission::Admin, &namespace)?;
            let grantee = grantee_from_pb(r.grantee.as_ref())?;
            let permission = permission_from_pb(r.permission)?;
            let grant = self
                .catalog
                .grant(&namespace, &grantee, permission, &caller.actor())
                .await?;
            self.guard.grants_changed();
            caller.note(format!("{} to {grantee}", permission.as_str()));
            Ok(pb::GrantResponse {
                grant: Some(grant_to_pb(&grant)),
            })
        })
        .await
    }

    async fn revoke(&self, request: Request<pb::RevokeRequest>) -> Reply<pb::RevokeResponse> {
        self.guarded("Revoke", request, no_actor, async |caller, r| {
            caller.require_authentication("grants")?;
            let namespace = grant_namespace(&r.namespace)?;
            caller.require(Permission::Admin, &namespace)?;
            let grantee = grantee_from_pb(r.grantee.as_ref())?;
            let revoked = self.catalog.revoke(&namespace, &grantee).await?;
            self.guard.grants_changed();
            caller.note(format!("from {grantee}"));
            Ok(pb::RevokeResponse { revoked })
        })
        .await
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Reply<pb::ListGrantsResponse> {
        self.guarded("ListGrants", request, no_actor, async |caller, r| {
            if !r.namespace.is_empty() {
                let namespace = grant_namespace(&r.namespace)?;
                caller.require(Permission::Admin, &namespace)?;
            }
            let grants = self.catalog.all_grants().await?;
            Ok(pb::ListGrantsResponse {
                grants: grants
                    .iter()
                    .filter(|g| r.namespace.is_empty() || g.namespace == r.namespace)
                    .filter(|g| caller.can(Permission::Admin, &g.namespace))
                    .map(grant_to_pb)
                    .collect(),
            })
        })
        .await
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Reply<pb::ListAuditEventsResponse> {
        self.guarded("ListAuditEvents", request, no_actor, async |caller, r| {
            if r.namespace.is_empty() {
                if !r.table.is_empty() {
                    return Err(CatalogError::InvalidArgument(
                        "an audit filter by table needs its namespace too".into(),
                    ));
                }
                caller.require(Permission::Admin, ALL_NAMESPACES)?;
            } else {
                caller.require(Permission::Admin, &r.namespace)?;
            }
            self.guard.flush_audit().await;
            let non_empty = |s: String| (!s.is_empty()).then_some(s);
            let filter = AuditFilter {
                since: r.since_micros,
                principal: non_empty(r.principal),
                namespace: non_empty(r.namespace),
                table: non_empty(r.table),
            };
            let page = self
                .catalog
                .list_audit(&filter, r.page_size, &r.page_token)
                .await?;
            Ok(pb::ListAuditEventsResponse {
                events: page.items.into_iter().map(audit_to_pb).collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Reply<pb::WhoAmIResponse> {
        self.guarded("WhoAmI", request, no_actor, async |caller, _| {
            Ok(match caller.principal() {
                Some(p) => pb::WhoAmIResponse {
                    principal: p.name.clone(),
                    groups: p.groups.clone(),
                    authenticated: true,
                },
                None => pb::WhoAmIResponse {
                    principal: caller.actor(),
                    groups: Vec::new(),
                    authenticated: false,
                },
            })
        })
        .await
    }

    async fn set_retention(
        &self,
        request: Request<pb::SetRetentionRequest>,
    ) -> Reply<pb::SetRetentionResponse> {
        self.do_set_retention(request).await
    }

    async fn undrop_table(
        &self,
        request: Request<pb::UndropTableRequest>,
    ) -> Reply<pb::UndropTableResponse> {
        self.do_undrop_table(request).await
    }

    async fn acquire_lease(
        &self,
        request: Request<pb::AcquireLeaseRequest>,
    ) -> Reply<pb::AcquireLeaseResponse> {
        self.do_acquire_lease(request).await
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Reply<pb::ExtendLeaseResponse> {
        self.do_extend_lease(request).await
    }

    async fn release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> Reply<pb::ReleaseLeaseResponse> {
        self.do_release_lease(request).await
    }

    async fn list_leases(
        &self,
        request: Request<pb::ListLeasesRequest>,
    ) -> Reply<pb::ListLeasesResponse> {
        self.do_list_leases(request).await
    }

    async fn collect_garbage(
        &self,
        request: Request<pb::CollectGarbageRequest>,
    ) -> Reply<pb::CollectGarbageResponse> {
        self.do_collect_garbage(request).await
    }

    async fn find_orphans(
        &self,
        request: Request<pb::FindOrphansRequest>,
    ) -> Reply<pb::FindOrphansResponse> {
        self.do_find_orphans(request).await
    }

    async fn set_schema_policy(
        &self,
        request: Request<pb::SetSchemaPolicyRequest>,
    ) -> Reply<pb::SetSchemaPolicyResponse> {
        self.do_set_schema_policy(request).await
    }

    async fn get_schema_history(
        &self,
        request: Request<pb::GetSchemaHistoryRequest>,
    ) -> Reply<pb::GetSchemaHistoryResponse> {
        self.do_get_schema_history(request).await
    }
}
