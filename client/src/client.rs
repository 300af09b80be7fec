//! The client: one connection to a metastore plus the stores batch locations live in.
//!
//! Metadata calls (namespaces, tables, history, rollback, tags) are here; the data path is in
//! `write` and `read`. A `Client` is cheap to clone and safe to share between tasks.

use crate::error::{ClientError, Result};
use crate::partition::PartitionSpec;
use crate::storage::Stores;
use crate::types::*;
use batchstore_proto::v1 as pb;
use batchstore_proto::v1::metastore_client::MetastoreClient;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::{Channel, Endpoint};

/// Where to find the metastore when no endpoint is given and `BATCHSTORE_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// Deadline of a metadata call (the commit has its own, longer one).
pub(crate) const RPC_DEADLINE: Duration = Duration::from_secs(60);
/// No call waits longer than this for its answer, however stalled the server;
/// `BATCHSTORE_CALL_TIMEOUT_SECONDS` sets another bound.
const CALL_LIMIT: Duration = Duration::from_secs(600);
/// How often an open connection is checked for life while a call waits.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// The metastore's gRPC client, every call stamped with the actor.
pub(crate) type Rpc = MetastoreClient<InterceptedService<Channel, Actor>>;

/// Names who acts on every call (`batchstore-actor` metadata), so every audited change, tags
/// included, records the same actor: `BATCHSTORE_ACTOR`, else `USER`, else `anonymous`.
/// Characters metadata cannot carry (non-ASCII, control) become `?`.
#[derive(Debug, Clone)]
pub(crate) struct Actor(MetadataValue<Ascii>);

impl Actor {
    fn from_environment() -> Self {
        let name = std::env::var("BATCHSTORE_ACTOR")
            .or_else(|_| std::env::var("USER"))
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "anonymous".to_owned());
        let shown: String = name
            .chars()
            .take(256)
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        Actor(
            MetadataValue::try_from(shown.as_str())
                .unwrap_or_else(|_| MetadataValue::from_static("anonymous")),
        )
    }
}

impl Interceptor for Actor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(batchstore_proto::wire::ACTOR_KEY, self.0.clone());
        Ok(request)
    }
}

/// A connection to a batchstore metastore.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) rpc: Rpc,
    pub(crate) stores: Arc<Stores>,
    endpoint: String,
}

impl Client {
    /// Connects to `endpoint`, or `BATCHSTORE_ENDPOINT`, or the local default.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed endpoint; `Unavailable` when nothing answers there.
    pub async fn connect(endpoint: Option<&str>) -> Result<Self> {
        let endpoint = match endpoint {
            Some(e) if !e.is_empty() => e.to_owned(),
            _ => std::env::var("BATCHSTORE_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
        };
        let endpoint = if endpoint.contains("://") {
            endpoint
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| {
                ClientError::InvalidArgument(format!("bad metastore endpoint {endpoint:?}: {e}"))
            })?
            .connect_timeout(Duration::from_secs(10))
            .timeout(call_limit())
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                ClientError::Unavailable(format!(
                    "cannot reach the metastore at {endpoint} ({e}); start it (make run) or set \
                     BATCHSTORE_ENDPOINT to its address"
                ))
            })?;
        let rpc = MetastoreClient::with_interceptor(channel, Actor::from_environment())
            .max_decoding_message_size(512 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        Ok(Client {
            rpc,
            stores: Arc::new(Stores::default()),
            endpoint,
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates a namespace; returns false when it already existed and `if_not_exists` is set.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name; `AlreadyExists` unless `if_not_exists`.
    pub async fn create_namespace(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        let response = self
            .rpc
            .clone()
            .create_namespace(pb::CreateNamespaceRequest {
                name: name.into(),
                if_not_exists,
            })
            .await?;
        Ok(response.into_inner().created)
    }

    /// Every namespace, by name.
    ///
    /// # Errors
    /// When the metastore cannot be reached.
    pub async fn list_namespaces(&self) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
        all_pages(|page_token| {
            let mut rpc = self.rpc.clone();
            async move {
                let page = rpc
                    .list_namespaces(pb::ListNamespacesRequest {
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                let items = page
                    .namespaces
                    .into_iter()
                    .map(|n| (n.name, from_micros(n.created_at_micros)))
                    .collect();
                Ok((items, page.next_page_token))
            }
        })
        .await
    }

    /// Drops an empty namespace.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` while it has tables.
    pub async fn drop_namespace(&self, name: &str) -> Result<()> {
        self.rpc
            .clone()
            .drop_namespace(pb::DropNamespaceRequest { name: name.into() })
            .await?;
        Ok(())
    }

    /// Creates a table with partition keys and, optionally, its schema.
    ///
    /// # Errors
    /// `NotFound` for a missing namespace; `AlreadyExists`; `InvalidArgument`.
    pub async fn create_table(
        &self,
        table: &TableName,
        keys: &[PartitionKey],
        schema: Option<&arrow_schema::Schema>,
        if_not_exists: bool,
    ) -> Result<(TableInfo, bool)> {
        let response = self
            .rpc
            .clone()
            .create_table(pb::CreateTableRequest {
                table: Some(table_ref(table)),
                partition_keys: keys.iter().map(key_to_pb).collect(),
                arrow_schema: schema.map(crate::schema::encode).unwrap_or_default(),
                if_not_exists,
            })
            .await?
            .into_inner();
        let info = table_info(response.table.ok_or_else(|| missing("table"))?)?;
        Ok((info, response.created))
    }

    /// Describes a table.
    ///
    /// # Errors
    /// `NotFound` naming the missing namespace or table.
    pub async fn get_table(&self, table: &TableName) -> Result<TableInfo> {
        let response = self
            .rpc
            .clone()
            .get_table(pb::GetTableRequest {
                table: Some(table_ref(table)),
            })
            .await?
            .into_inner();
        table_info(response.table.ok_or_else(|| missing("table"))?)
    }

    /// Tables, in one namespace or all.
    ///
    /// # Errors
    /// `NotFound` for a missing namespace.
    pub async fn list_tables(&self, namespace: Option<&str>) -> Result<Vec<TableInfo>> {
        let namespace = namespace.unwrap_or_default().to_owned();
        all_pages(|page_token| {
            let mut rpc = self.rpc.clone();
            let namespace = namespace.clone();
            async move {
                let page = rpc
                    .list_tables(pb::ListTablesRequest {
                        namespace,
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                let items = page
                    .tables
                    .into_iter()
                    .map(table_info)
                    .collect::<Result<_>>()?;
                Ok((items, page.next_page_token))
            }
        })
        .await
    }

    /// Drops a table (its batches stay until garbage collection).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn drop_table(&self, table: &TableName) -> Result<()> {
        self.rpc
            .clone()
            .drop_table(pb::DropTableRequest {
                table: Some(table_ref(table)),
            })
            .await?;
        Ok(())
    }

    /// A batch and where it stands: settles a commit whose outcome was unknown.
    ///
    /// # Errors
    /// `NotFound` for an unknown batch.
    pub async fn get_batch(&self, batch_id: &str) -> Result<BatchInfo> {
        let batch = self
            .rpc
            .clone()
            .get_batch(pb::GetBatchRequest {
                batch_id: batch_id.into(),
            })
            .await?
            .into_inner()
            .batch
            .ok_or_else(|| missing("batch"))?;
        let state = pb::BatchState::try_from(batch.state)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("BATCH_STATE_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|_| "unknown".into());
        Ok(BatchInfo {
            batch_id: batch.batch_id,
            table: TableName::new(batch.namespace, batch.table),
            partition: pairs(batch.partition.as_ref()),
            state,
            version: batch.version,
            rows: batch.rows,
            bytes: batch.bytes,
            created_at: from_micros(batch.created_at_micros),
            lease_expires_at: from_micros(batch.lease_expires_at_micros),
            files: batch.files.len(),
        })
    }

    /// A batch's lineage: the batches it was computed from, and those computed from it.
    ///
    /// # Errors
    /// `NotFound` for an unknown batch.
    pub async fn lineage(&self, batch_id: &str) -> Result<Lineage> {
        let reply = self
            .rpc
            .clone()
            .get_lineage(pb::GetLineageRequest {
                batch_id: batch_id.into(),
            })
            .await?
            .into_inner();
        Ok(Lineage {
            batch_id: batch_id.to_owned(),
            inputs: reply.inputs,
            outputs: reply.outputs,
        })
    }

    /// Every partition with its current batch.
    ///
    /// # Errors
    /// `NotFound` for a missing table.
    pub async fn partitions(&self, table: &TableName) -> Result<Vec<PartitionInfo>> {
        all_pages(|page_token| {
            let mut rpc = self.rpc.clone();
            let request = pb::ListPartitionsRequest {
                table: Some(table_ref(table)),
                page_size: 0,
                page_token,
            };
            async move {
                let page = rpc.list_partitions(request).await?.into_inner();
                let items = page
                    .partitions
                    .into_iter()
                    .map(|p| PartitionInfo {
                        partition: pairs(p.partition.as_ref()),
                        batch_id: p.batch_id,
                        version: p.version,
                        rows: p.rows,
                        bytes: p.bytes,
                        updated_at: from_micros(p.updated_at_micros),
                    })
                    .collect();
                Ok((items, page.next_page_token))
            }
        })
        .await
    }

    /// A partition's history, newest first.
    ///
    /// # Errors
    /// `NotFound` for a missing table or a partition never written.
    pub async fn history(
        &self,
        table: &TableName,
        partition: &PartitionSpec,
    ) -> Result<Vec<HistoryEntry>> {
        let spec = spec_to_pb(partition);
        all_pages(|page_token| {
            let mut rpc = self.rpc.clone();
            let request = pb::GetHistoryRequest {
                table: Some(table_ref(table)),
                partition: Some(spec.clone()),
                page_size: 0,
                page_token,
            };
            async move {
                let page = rpc.get_history(request).await?.into_inner();
                let items = page
                    .entries
                    .into_iter()
                    .map(|h| HistoryEntry {
                        version: h.version,
                        batch_id: h.batch_id,
                        operation: h.operation,
                        actor: h.actor,
                        message: h.message,
                        committed_at: from_micros(h.committed_at_micros),
                        rows: h.rows,
                        bytes: h.bytes,
                        current: h.current,
                    })
                    .collect();
                Ok((items, page.next_page_token))
            }
        })
        .await
    }

    /// Points a partition back at an earlier version or batch (a new version; nothing deleted).
    ///
    /// # Errors
    /// `NotFound`; `Conflict` when `expected` does not match; `FailedPrecondition` when the
    /// target is already current.
    pub async fn rollback(
        &self,
        table: &TableName,
        partition: &PartitionSpec,
        target: RollbackTo,
        expected: Option<Expected>,
        message: &str,
    ) -> Result<CommitInfo> {
        let spec = spec_to_pb(partition);
        let target = match target {
            RollbackTo::Version(v) => pb::rollback_request::Target::ToVersion(v),
            RollbackTo::Batch(b) => pb::rollback_request::Target::ToBatchId(b),
        };
        let response = self
            .rpc
            .clone()
            .rollback(pb::RollbackRequest {
                table: Some(table_ref(table)),
                partition: Some(spec),
                target: Some(target),
                expected_current_batch_id: expected.map(expected_to_pb),
                message: message.into(),
                actor: String::new(),
            })
            .await?
            .into_inner();
        Ok(commit_info(
            response.committed.ok_or_else(|| missing("committed"))?,
            false,
        ))
    }

    /// Tags a partition's version (0 = current) or a batch.
    ///
    /// # Errors
    /// `AlreadyExists`; `NotFound`.
    pub async fn create_tag(
        &self,
        table: &TableName,
        name: &str,
        target: TagTarget,
    ) -> Result<TagInfo> {
        let target = match target {
            TagTarget::Batch(b) => pb::create_tag_request::Target::BatchId(b),
            TagTarget::Version(partition, version) => {
                let spec = spec_to_pb(&partition);
                pb::create_tag_request::Target::PartitionVersion(pb::PartitionVersion {
                    partition: Some(spec),
                    version,
                })
            }
        };
        let response = self
            .rpc
            .clone()
            .create_tag(pb::CreateTagRequest {
                table: Some(table_ref(table)),
                name: name.into(),
                target: Some(target),
            })
            .await?
            .into_inner();
        Ok(tag_info(response.tag.ok_or_else(|| missing("tag"))?))
    }

    /// The tags of a table.
    ///
    /// # Errors
    /// `NotFound` for a missing table.
    pub async fn list_tags(&self, table: &TableName) -> Result<Vec<TagInfo>> {
        let response = self
            .rpc
            .clone()
            .list_tags(pb::ListTagsRequest {
                table: Some(table_ref(table)),
            })
            .await?;
        Ok(response
            .into_inner()
            .tags
            .into_iter()
            .map(tag_info)
            .collect())
    }

    /// Deletes a tag.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete_tag(&self, table: &TableName, name: &str) -> Result<()> {
        self.rpc
            .clone()
            .delete_tag(pb::DeleteTagRequest {
                table: Some(table_ref(table)),
                name: name.into(),
            })
            .await?;
        Ok(())
    }
}

/// What a rollback returns to.
#[derive(Debug, Clone)]
pub enum RollbackTo {
    Version(i64),
    Batch(String),
}

/// What a tag names.
#[derive(Debug, Clone)]
pub enum TagTarget {
    Batch(String),
    /// A partition's version; 0 = its current version.
    Version(PartitionSpec, i64),
}

/// Follows `next_page_token` to the last page. `fetch` gets a page token and returns that page's
/// items and the next token ("" after the last page).
async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String)>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token).await?;
        out.extend(items);
        if next.is_empty() {
            return Ok(out);
        }
        token = next;
    }
}

fn missing(what: &str) -> ClientError {
    ClientError::Internal(format!("the metastore's reply has no {what}"))
}

pub(crate) fn table_ref(table: &TableName) -> pb::TableRef {
    pb::TableRef {
        namespace: table.namespace.clone(),
        table: table.table.clone(),
    }
}

pub(crate) fn pairs(spec: Option<&pb::PartitionSpec>) -> Vec<(String, String)> {
    spec.map(|s| {
        s.values
            .iter()
            .map(|v| (v.key.clone(), v.value.clone()))
            .collect()
    })
    .unwrap_or_default()
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

fn key_to_pb(key: &PartitionKey) -> pb::PartitionKey {
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

pub(crate) fn table_info(t: pb::Table) -> Result<TableInfo> {
    let columns = if t.arrow_schema.is_empty() {
        Vec::new()
    } else {
        crate::schema::decode(&t.arrow_schema)?
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect()
    };
    Ok(TableInfo {
        name: TableName::new(t.namespace, t.name),
        partition_keys: t.partition_keys.iter().map(key_from_pb).collect(),
        columns,
        created_at: from_micros(t.created_at_micros),
        location: t.location,
        partition_count: t.partition_count,
        arrow_schema: t.arrow_schema,
    })
}

fn tag_info(t: pb::Tag) -> TagInfo {
    TagInfo {
        partition: pairs(t.partition.as_ref()),
        name: t.name,
        batch_id: t.batch_id,
        version: t.version,
        created_at: from_micros(t.created_at_micros),
    }
}

/// The longest any call waits: [`CALL_LIMIT`], or `BATCHSTORE_CALL_TIMEOUT_SECONDS`.
fn call_limit() -> Duration {
    std::env::var("BATCHSTORE_CALL_TIMEOUT_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(CALL_LIMIT, Duration::from_secs)
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
