//! The gRPC face of the catalog: `batchstore.v1.Metastore`.
//!
//! Each method converts the request (`convert`), calls the catalog, and maps errors once
//! (`status`). No catalog logic lives here.

pub mod convert;
pub mod status;

use crate::catalog::Catalog;
use crate::error::CatalogResult;
use batchstore_proto::v1 as pb;
use batchstore_proto::v1::metastore_server::Metastore;
use batchstore_proto::wire::ACTOR_KEY;
use convert::*;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The service, over one catalog.
#[derive(Debug, Clone)]
pub struct MetastoreService {
    catalog: Catalog,
}

impl MetastoreService {
    pub fn new(catalog: Catalog) -> Self {
        MetastoreService { catalog }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: CatalogResult<T>) -> Reply<T> {
    result.map(Response::new).map_err(status::to_status)
}

/// A requested lease: `None` (the default) for 0; negative is refused.
fn lease_of(seconds: i64) -> CatalogResult<Option<Duration>> {
    if seconds < 0 {
        return Err(crate::error::CatalogError::InvalidArgument(
            "lease_seconds cannot be negative; use 0 for the default".into(),
        ));
    }
    Ok((seconds > 0).then(|| Duration::from_secs(seconds as u64)))
}

/// The actor: the request's own field, else the `batchstore-actor` metadata, else "anonymous".
fn actor<T>(request: &Request<T>, field: &str) -> String {
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
        let r = request.into_inner();
        reply(
            self.catalog
                .create_namespace(&r.name, r.if_not_exists)
                .await
                .map(|(ns, created)| pb::CreateNamespaceResponse {
                    namespace: Some(namespace_to_pb(&ns)),
                    created,
                }),
        )
    }

    async fn list_namespaces(
        &self,
        request: Request<pb::ListNamespacesRequest>,
    ) -> Reply<pb::ListNamespacesResponse> {
        let r = request.into_inner();
        reply(
            self.catalog
                .list_namespaces(r.page_size, &r.page_token)
                .await
                .map(|page| pb::ListNamespacesResponse {
                    namespaces: page.items.iter().map(namespace_to_pb).collect(),
                    next_page_token: page.next_page_token,
                }),
        )
    }

    async fn drop_namespace(
        &self,
        request: Request<pb::DropNamespaceRequest>,
    ) -> Reply<pb::DropNamespaceResponse> {
        let r = request.into_inner();
        reply(
            self.catalog
                .drop_namespace(&r.name)
                .await
                .map(|()| pb::DropNamespaceResponse {}),
        )
    }

    async fn create_table(
        &self,
        request: Request<pb::CreateTableRequest>,
    ) -> Reply<pb::CreateTableResponse> {
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let keys = r
                .partition_keys
                .iter()
                .map(key_from_pb)
                .collect::<CatalogResult<Vec<_>>>()?;
            let schema = (!r.arrow_schema.is_empty()).then_some(r.arrow_schema);
            let (table, created) = self
                .catalog
                .create_table(&ns, &table, keys, schema, r.if_not_exists)
                .await?;
            Ok(pb::CreateTableResponse {
                table: Some(table_to_pb(&table)),
                created,
            })
        };
        reply(result.await)
    }

    async fn get_table(
        &self,
        request: Request<pb::GetTableRequest>,
    ) -> Reply<pb::GetTableResponse> {
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let table = self.catalog.get_table(&ns, &table).await?;
            Ok(pb::GetTableResponse {
                table: Some(table_to_pb(&table)),
            })
        };
        reply(result.await)
    }

    async fn list_tables(
        &self,
        request: Request<pb::ListTablesRequest>,
    ) -> Reply<pb::ListTablesResponse> {
        let r = request.into_inner();
        let namespace = (!r.namespace.is_empty()).then_some(r.namespace.as_str());
        reply(
            self.catalog
                .list_tables(namespace, r.page_size, &r.page_token)
                .await
                .map(|page| pb::ListTablesResponse {
                    tables: page.items.iter().map(table_to_pb).collect(),
                    next_page_token: page.next_page_token,
                }),
        )
    }

    async fn drop_table(
        &self,
        request: Request<pb::DropTableRequest>,
    ) -> Reply<pb::DropTableResponse> {
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            self.catalog.drop_table(&ns, &table).await?;
            Ok(pb::DropTableResponse {})
        };
        reply(result.await)
    }

    async fn begin_write(
        &self,
        request: Request<pb::BeginWriteRequest>,
    ) -> Reply<pb::BeginWriteResponse> {
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let lease = lease_of(r.lease_seconds)?;
            let pending = self
                .catalog
                .begin_write(&ns, &table, &partition_pairs(r.partition.as_ref()), lease)
                .await?;
            Ok(pb::BeginWriteResponse {
                batch_id: pending.batch_id,
                location: pending.location,
                lease_expires_at_micros: pending.lease_expires_at,
                current_batch_id: pending.current_batch_id.unwrap_or_default(),
                current_version: pending.current_version,
            })
        };
        reply(result.await)
    }

    async fn commit(&self, request: Request<pb::CommitRequest>) -> Reply<pb::CommitResponse> {
        let actor = actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        let updates = r.updates.into_iter().map(update_from_pb).collect();
        reply(
            self.catalog
                .commit(updates, &r.message, &actor)
                .await
                .map(|outcome| pb::CommitResponse {
                    committed: outcome.committed.iter().map(committed_to_pb).collect(),
                    already_committed: outcome.already_committed,
                }),
        )
    }

    async fn abort_write(
        &self,
        request: Request<pb::AbortWriteRequest>,
    ) -> Reply<pb::AbortWriteResponse> {
        let r = request.into_inner();
        reply(
            self.catalog
                .abort_write(&r.batch_id)
                .await
                .map(|()| pb::AbortWriteResponse {}),
        )
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Reply<pb::RenewLeaseResponse> {
        let r = request.into_inner();
        let result = async {
            let lease = lease_of(r.lease_seconds)?;
            let lease_expires_at_micros = self.catalog.renew_lease(&r.batch_id, lease).await?;
            Ok(pb::RenewLeaseResponse {
                lease_expires_at_micros,
            })
        };
        reply(result.await)
    }

    async fn get_batch(
        &self,
        request: Request<pb::GetBatchRequest>,
    ) -> Reply<pb::GetBatchResponse> {
        let r = request.into_inner();
        reply(
            self.catalog
                .get_batch(&r.batch_id)
                .await
                .map(|b| pb::GetBatchResponse {
                    batch: Some(batch_to_pb(&b)),
                }),
        )
    }

    async fn resolve_partitions(
        &self,
        request: Request<pb::ResolvePartitionsRequest>,
    ) -> Reply<pb::ResolvePartitionsResponse> {
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let selector = selector_from_pb(r.selector.as_ref())?;
            let specs: Vec<_> = r
                .partitions
                .iter()
                .map(|p| partition_pairs(Some(p)))
                .collect();
            let (table, page) = self
                .catalog
                .resolve(&ns, &table, &specs, &selector, r.page_size, &r.page_token)
                .await?;
            Ok(pb::ResolvePartitionsResponse {
                partitions: page.items.into_iter().map(resolved_to_pb).collect(),
                table: Some(table_to_pb(&table)),
                next_page_token: page.next_page_token,
            })
        };
        reply(result.await)
    }

    async fn list_partitions(
        &self,
        request: Request<pb::ListPartitionsRequest>,
    ) -> Reply<pb::ListPartitionsResponse> {
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let (_, page) = self
                .catalog
                .list_partitions(&ns, &table, r.page_size, &r.page_token)
                .await?;
            Ok(pb::ListPartitionsResponse {
                partitions: page.items.into_iter().map(summary_to_pb).collect(),
                next_page_token: page.next_page_token,
            })
        };
        reply(result.await)
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Reply<pb::GetHistoryResponse> {
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let pairs = partition_pairs(r.partition.as_ref());
            let page = self
                .catalog
                .history(&ns, &table, &pairs, r.page_size, &r.page_token)
                .await?;
            Ok(pb::GetHistoryResponse {
                entries: page.items.into_iter().map(history_to_pb).collect(),
                next_page_token: page.next_page_token,
            })
        };
        reply(result.await)
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Reply<pb::RollbackResponse> {
        let actor = actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let target = rollback_target_from_pb(r.target.as_ref())?;
            let expected = expected_from_pb(r.expected_current_batch_id.as_ref());
            let pairs = partition_pairs(r.partition.as_ref());
            let committed = self
                .catalog
                .rollback(&ns, &table, &pairs, &target, expected, &r.message, &actor)
                .await?;
            Ok(pb::RollbackResponse {
                committed: Some(committed_to_pb(&committed)),
            })
        };
        reply(result.await)
    }

    async fn create_tag(
        &self,
        request: Request<pb::CreateTagRequest>,
    ) -> Reply<pb::CreateTagResponse> {
        let actor = actor(&request, "");
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let target = tag_target_from_pb(r.target.as_ref())?;
            let tag = self
                .catalog
                .create_tag(&ns, &table, &r.name, &target, &actor)
                .await?;
            Ok(pb::CreateTagResponse {
                tag: Some(tag_to_pb(tag)),
            })
        };
        reply(result.await)
    }

    async fn list_tags(
        &self,
        request: Request<pb::ListTagsRequest>,
    ) -> Reply<pb::ListTagsResponse> {
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            let tags = self.catalog.list_tags(&ns, &table).await?;
            Ok(pb::ListTagsResponse {
                tags: tags.into_iter().map(tag_to_pb).collect(),
            })
        };
        reply(result.await)
    }

    async fn delete_tag(
        &self,
        request: Request<pb::DeleteTagRequest>,
    ) -> Reply<pb::DeleteTagResponse> {
        let actor = actor(&request, "");
        let r = request.into_inner();
        let result = async {
            let (ns, table) = table_ref(r.table.as_ref())?;
            self.catalog
                .delete_tag(&ns, &table, &r.name, &actor)
                .await?;
            Ok(pb::DeleteTagResponse {})
        };
        reply(result.await)
    }

    async fn get_lineage(
        &self,
        request: Request<pb::GetLineageRequest>,
    ) -> Reply<pb::GetLineageResponse> {
        let r = request.into_inner();
        reply(
            self.catalog
                .lineage(&r.batch_id)
                .await
                .map(|(inputs, outputs)| pb::GetLineageResponse { inputs, outputs }),
        )
    }
}
