//! A partition's versions and what names them: batches and their lineage, the partitions of a
//! table, history, rollback and tags.

use crate::client::{Client, all_pages, missing};
use crate::commit::repeat_while_unknown;
use crate::error::{ClientError, Result};
use crate::partition::PartitionSpec;
use crate::types::*;
use crate::wire::{commit_info, expected_to_pb, pairs, spec_to_pb, table_ref, tag_info};
use batchstore_proto::v1 as pb;

impl Client {
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
            expired: expiry(batch.expired_at_micros, batch.expired_reason),
            deleted_at: (batch.deleted_at_micros != 0)
                .then(|| from_micros(batch.deleted_at_micros)),
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
                        expired: expiry(h.expired_at_micros, h.expired_reason),
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
        let request = pb::RollbackRequest {
            table: Some(table_ref(table)),
            partition: Some(spec),
            target: Some(target),
            expected_current_batch_id: expected.map(expected_to_pb),
            message: message.into(),
            actor: String::new(),
            // One id for every copy of this rollback: a copy sent after a lost reply is
            // answered with the version the first one made, never a second version.
            request_id: uuid::Uuid::now_v7().to_string(),
        };
        let response = repeat_while_unknown(|| {
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(crate::client::RPC_DEADLINE);
            let mut rpc = self.rpc.clone();
            async move { rpc.rollback(call).await }
        })
        .await
        .map_err(|(status, _)| ClientError::from(status))?
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
