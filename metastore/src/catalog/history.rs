//! History and rollback. History is append-only: a rollback appends an entry that points the
//! partition back at an older batch; nothing is ever deleted or rewritten.

use super::paging::{page_size, paginate, parse_token};
use super::pointer::{HistoryEntry, PointerMove};
use super::writes::check_batch_id;
use super::{Catalog, PartitionRow, expiry_from_row};
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::limits;
use crate::model::{
    CommittedVersion, ExpectedCurrent, HistoryRecord, Micros, Page, PartitionValues, RollbackTarget,
};
use sqlx::Row;

impl Catalog {
    /// A partition's history, newest first. The page token is the last version returned.
    ///
    /// # Errors
    /// `NotFound` for a missing table or a partition never written.
    pub async fn history(
        &self,
        namespace: &str,
        table: &str,
        partition: &[(String, String)],
        page_size_requested: i32,
        page_token: &str,
    ) -> CatalogResult<Page<HistoryRecord>> {
        let table = self.table(namespace, table).await?;
        let values = PartitionValues::from_pairs(&table.keys, partition)?;
        let p = self.written_partition(&table, &values).await?;
        let before = match parse_token(page_token)? {
            0 => i64::MAX,
            v => v,
        };
        let limit = page_size(page_size_requested)?;
        let rows = sqlx::query(
            "SELECT h.version, h.batch_id, h.operation, h.actor, h.message, h.committed_at_us, \
                    h.rows, h.bytes, b.expired_at_us, b.expired_reason \
             FROM history h JOIN batches b ON b.batch_id = h.batch_id \
             WHERE h.partition_id = $1 AND h.version < $2 \
             ORDER BY h.version DESC LIMIT $3",
        )
        .bind(p.id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut entries = rows
            .iter()
            .map(|row| {
                let version: i64 = row.try_get("version")?;
                Ok(HistoryRecord {
                    version,
                    batch_id: row.try_get("batch_id")?,
                    operation: row.try_get("operation")?,
                    actor: row.try_get("actor")?,
                    message: row.try_get("message")?,
                    committed_at: row.try_get("committed_at_us")?,
                    rows: row.try_get("rows")?,
                    bytes: row.try_get("bytes")?,
                    current: version == p.current_version,
                    expired: expiry_from_row(row)?,
                })
            })
            .collect::<CatalogResult<Vec<_>>>()?;
        Ok(paginate(&mut entries, limit, |e| e.version.to_string()))
    }

    /// Points a partition back at a batch from its history, as a new version.
    ///
    /// A rollback to the batch the partition already points at *because of a rollback* is
    /// answered with that rollback's version (a retry after a lost reply, or a concurrent
    /// rollback to the same target, appends nothing), provided its expectation held then.
    /// With a `request_id` (empty: none) a rollback is exactly-once even after later writes:
    /// the id is recorded with the version it created, and a rollback with an id already
    /// recorded for the partition is answered with that version.
    ///
    /// # Errors
    /// `NotFound` for a missing partition, version or batch; `FailedPrecondition` when the
    /// target is current by a write, or the request id was used for another target;
    /// `Conflict` when `expected` does not match.
    #[allow(clippy::too_many_arguments)]
    pub async fn rollback(
        &self,
        namespace: &str,
        table: &str,
        partition: &[(String, String)],
        target: &RollbackTarget,
        expected: Option<ExpectedCurrent>,
        message: &str,
        actor: &str,
        request_id: &str,
    ) -> CatalogResult<CommittedVersion> {
        limits::check_message(message)?;
        limits::check_request_id(request_id)?;
        if let Some(ExpectedCurrent::Batch(b)) = &expected {
            check_batch_id(b)?;
        }
        if let RollbackTarget::Batch(b) = target {
            check_batch_id(b)?;
        }
        let table = self.table(namespace, table).await?;
        let values = PartitionValues::from_pairs(&table.keys, partition)?;
        let name = values.describe(&table.keys);
        let p = self.written_partition(&table, &values).await?;
        let (target_batch, target_version, target_location, rows, bytes) =
            self.rollback_target(&p, target, &name).await?;
        let message = if message.is_empty() {
            format!("rollback to version {target_version}")
        } else {
            message.to_owned()
        };
        let committed = |version, committed_at| CommittedVersion {
            batch_id: target_batch.clone(),
            namespace: table.namespace.clone(),
            table: table.name.clone(),
            partition: values.pairs(&table.keys),
            version,
            committed_at,
            rows,
            bytes,
        };
        let request_id = (!request_id.is_empty()).then_some(request_id);
        if let Some(id) = request_id
            && let Some((version, stamp)) = self.rollback_done(p.id, id, &target_batch).await?
        {
            return Ok(committed(version, stamp));
        }

        let mut tx = self.pool.begin().await?;
        let stamp = self.stamp_partitions(&mut tx, &[table.id], &[p.id]).await?;
        // Under the table's shared commit lock, which GC's expiry waits for: the target is
        // either still there now, or expired before and refused.
        if let Some(expiry) = self.expiry_in(&mut tx, &target_batch).await? {
            tx.rollback().await?;
            return Err(super::leases::expired(
                &target_batch,
                expiry.at,
                &expiry.reason,
            ));
        }
        let now = sqlx::query(
            "SELECT p.current_batch_id, p.current_version, h.operation, h.committed_at_us, \
                    (SELECT h2.batch_id FROM history h2 \
                      WHERE h2.partition_id = p.id AND h2.version = p.current_version - 1) \
                      AS previous \
             FROM partitions p JOIN history h \
                  ON h.partition_id = p.id AND h.version = p.current_version \
             WHERE p.id = $1",
        )
        .bind(p.id)
        .fetch_one(&mut *tx)
        .await?;
        let current: Option<String> = now.try_get("current_batch_id")?;
        let current_version: i64 = now.try_get("current_version")?;
        if current.as_deref() == Some(target_batch.as_str()) {
            tx.rollback().await?;
            let previous: Option<String> = now.try_get("previous")?;
            let held = match &expected {
                None => true,
                Some(ExpectedCurrent::Nothing) => false,
                Some(ExpectedCurrent::Batch(e)) => previous.as_deref() == Some(e.as_str()),
            };
            if now.try_get::<String, _>("operation")? == "rollback" && held {
                return Ok(committed(current_version, now.try_get("committed_at_us")?));
            }
            return Err(CatalogError::FailedPrecondition(format!(
                "partition {name} of {} already points at batch {target_batch} (version \
                 {current_version}); there is nothing to roll back",
                table.qualified(),
            )));
        }
        let change = PointerMove {
            partition_id: p.id,
            batch_id: &target_batch,
            location: &target_location,
            rows,
            bytes,
            expected: expected.as_ref(),
        };
        let Some((version, stamp)) = self.move_pointer(&mut tx, &change, Some(stamp)).await? else {
            tx.rollback().await?;
            return Err(CatalogError::Conflict {
                message: format!(
                    "conflict on partition {name} of {}: it is now at batch {} (version \
                     {current_version}), not at the expected batch; another write committed \
                     first. Check the history and retry",
                    table.qualified(),
                    current.as_deref().unwrap_or("none")
                ),
                current_batch_id: current,
            });
        };
        let entry = HistoryEntry {
            operation: "rollback",
            actor,
            message: &message,
            request_id,
        };
        match self
            .append_history(&mut tx, &change, version, stamp, &entry)
            .await
        {
            Ok(()) => {}
            // The same request, sent twice at once, committed first by the other copy.
            Err(CatalogError::AlreadyExists(error)) if request_id.is_some() => {
                tx.rollback().await?;
                let id = request_id.unwrap_or_default();
                return match self.rollback_done(p.id, id, &target_batch).await? {
                    Some((version, stamp)) => Ok(committed(version, stamp)),
                    None => Err(CatalogError::AlreadyExists(error)),
                };
            }
            Err(error) => return Err(error),
        }
        tx.commit().await?;
        Ok(committed(version, stamp))
    }

    /// `(version, committed_at)` of the rollback of partition `partition_id` recorded with
    /// `request_id`, if there is one; refused when that rollback went to another batch.
    async fn rollback_done(
        &self,
        partition_id: i64,
        request_id: &str,
        target_batch: &str,
    ) -> CatalogResult<Option<(i64, Micros)>> {
        let Some(row) = sqlx::query(
            "SELECT version, batch_id, committed_at_us FROM history \
             WHERE partition_id = $1 AND request_id = $2",
        )
        .bind(partition_id)
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let batch_id: String = row.try_get("batch_id")?;
        let version: i64 = row.try_get("version")?;
        if batch_id != target_batch {
            return Err(CatalogError::FailedPrecondition(format!(
                "request id {request_id} was already used by the rollback that made version \
                 {version} (to batch {batch_id}), not one to batch {target_batch}; send a new \
                 request id for a new rollback"
            )));
        }
        Ok(Some((version, row.try_get("committed_at_us")?)))
    }

    /// `(batch_id, version, location, rows, bytes)` of the history entry a rollback returns to.
    async fn rollback_target(
        &self,
        p: &PartitionRow,
        target: &RollbackTarget,
        name: &str,
    ) -> CatalogResult<(String, i64, String, i64, i64)> {
        let row = match target {
            RollbackTarget::Version(v) => {
                sqlx::query(
                    "SELECT h.batch_id, h.version, b.location, h.rows, h.bytes \
                     FROM history h JOIN batches b ON b.batch_id = h.batch_id \
                     WHERE h.partition_id = $1 AND h.version = $2",
                )
                .bind(p.id)
                .bind(*v)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| {
                    CatalogError::not_found(Missing::Version, v.to_string(), format!(
                        "partition {name} has no version {v}; its versions are 1 to {}",
                        p.current_version
                    ))
                })?
            }
            RollbackTarget::Batch(batch) => {
                sqlx::query(
                    "SELECT h.batch_id, h.version, b.location, h.rows, h.bytes \
                     FROM history h JOIN batches b ON b.batch_id = h.batch_id \
                     WHERE h.partition_id = $1 AND h.batch_id = $2 ORDER BY h.version LIMIT 1",
                )
                .bind(p.id)
                .bind(batch)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| {
                    CatalogError::not_found(Missing::Batch, batch.clone(), format!(
                        "batch {batch} was never committed to partition {name}; pick a batch from its history"
                    ))
                })?
            }
        };
        Ok((
            row.try_get("batch_id")?,
            row.try_get("version")?,
            row.try_get("location")?,
            row.try_get("rows")?,
            row.try_get("bytes")?,
        ))
    }
}
