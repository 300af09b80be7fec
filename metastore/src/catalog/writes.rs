//! The write protocol around the commit: BeginWrite reserves a pending batch with a lease and
//! hands out its location; AbortWrite gives it up; expired leases are recorded as abandoned.
//! Batch lookups used by commit, reads and tags live here too. The commit is in `commit`.

use super::{
    Catalog, Dialect, PartitionRow, TABLE_COLUMNS, expiry_from_row, partition_hash, partition_row,
};
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::layout;
use crate::model::{
    BatchCheck, BatchRecord, BatchState, DataFile, PartitionValues, PendingBatch, TableRecord,
};
use crate::names::quote_for_message;
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;
use std::time::Duration;

impl Catalog {
    /// Reserves a new pending batch for a partition and returns where to upload it.
    ///
    /// # Errors
    /// `NotFound` for a missing table; `InvalidArgument` for bad partition values or lease.
    pub async fn begin_write(
        &self,
        namespace: &str,
        table: &str,
        partition: &[(String, String)],
        lease: Option<Duration>,
        began_by: Option<&str>,
    ) -> CatalogResult<PendingBatch> {
        // SQLite writes on its one writer connection, so the table is read on it too: taking a
        // second connection for it would cost two more round trips to a worker thread.
        let mut sqlite = match self.dialect {
            Dialect::Sqlite => Some(self.pool.acquire().await?),
            Dialect::Postgres => None,
        };
        let found = match sqlite.as_deref_mut() {
            Some(conn) => self.live_table(conn, namespace, table).await?,
            None => self.live_table(&self.readers, namespace, table).await?,
        };
        let Some(table) = found else {
            drop(sqlite);
            return Err(self.table_not_found(namespace, table).await);
        };
        let values = PartitionValues::from_pairs(&table.keys, partition)?;
        let lease = self.lease(lease)?;
        let batch_id = uuid::Uuid::now_v7().to_string();
        let location = self.warehouse.location_url(&layout::batch_dir(
            &table.namespace,
            &table.name,
            &table.keys,
            &values,
            &batch_id,
        ));
        let reserve =
            |conn| self.reserve_batch(conn, &table, &values, &batch_id, &location, lease, began_by);
        // On PostgreSQL the partition and batch rows are one transaction that does not wait
        // for its log to reach disk: a pending batch needs no durability of its own (the commit
        // that publishes it flushes the log past it, and a batch lost in a crash only makes
        // its commit fail with NOT_FOUND), and that wait is most of BeginWrite's time. SQLite,
        // in process, runs the statements as they come.
        let (partition, row) = match sqlite.as_deref_mut() {
            None => {
                let mut tx = self
                    .pool
                    .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                    .await?;
                let reserved = reserve(&mut tx).await?;
                tx.commit().await?;
                reserved
            }
            Some(conn) => reserve(conn).await?,
        };
        drop(sqlite);
        let lease_expires_at: i64 = row.try_get("lease_expires_at_us")?;
        self.remember_began(BatchRecord {
            batch_id: batch_id.clone(),
            table,
            partition_id: partition.id,
            partition: values,
            state: BatchState::Pending,
            location: location.clone(),
            created_at: row.try_get("created_at_us")?,
            lease_expires_at,
            version: None,
            committed_at: None,
            rows: 0,
            bytes: 0,
            files: Vec::new(),
            began_by: began_by.map(str::to_owned),
            expired: None,
            deleted_at: None,
        });
        Ok(PendingBatch {
            batch_id,
            location,
            lease_expires_at,
            current_batch_id: partition.current_batch_id,
            current_version: partition.current_version,
        })
    }

    fn lease(&self, requested: Option<Duration>) -> CatalogResult<Duration> {
        match requested {
            None => Ok(self.settings.default_lease),
            Some(lease) if lease.is_zero() => Ok(self.settings.default_lease),
            Some(lease) if lease > self.settings.max_lease => {
                Err(CatalogError::InvalidArgument(format!(
                    "a lease of {} s is longer than the maximum of {} s",
                    lease.as_secs(),
                    self.settings.max_lease.as_secs()
                )))
            }
            Some(lease) => Ok(lease),
        }
    }

    /// The partition row (created if new) and a new pending batch row in it, within the
    /// table's and the principal's bounds on pending batches. On SQLite both statements go to
    /// the database together, one round trip; on PostgreSQL an existing partition is read
    /// first (see [`UPSERT_PARTITION`]).
    #[allow(clippy::too_many_arguments)] // the batch row's columns, each its own value
    async fn reserve_batch(
        &self,
        conn: &mut sqlx::AnyConnection,
        table: &TableRecord,
        values: &PartitionValues,
        batch_id: &str,
        location: &str,
        lease: Duration,
        began_by: Option<&str>,
    ) -> CatalogResult<(PartitionRow, sqlx::any::AnyRow)> {
        let hash = partition_hash(values);
        let json = values.to_json();
        let reservation = |sql: &str| {
            sqlx::query(self.sql(sql))
                .bind(batch_id)
                .bind(table.id)
                .bind(hash.as_str())
                .bind(location)
                .bind(lease.as_micros() as i64)
                .bind(self.settings.max_pending_per_table)
                .bind(began_by)
                .bind(self.settings.max_pending_per_principal)
                .bind(json.as_str())
        };
        let (partition, row) = match self.dialect {
            Dialect::Sqlite => {
                let mut rows = reservation(&format!("{UPSERT_PARTITION}; {INSERT_BATCH}"))
                    .fetch_all(&mut *conn)
                    .await?
                    .into_iter();
                let partition = rows.next().ok_or_else(|| {
                    CatalogError::Internal("the partition upsert returned no row".into())
                })?;
                (partition_row(&partition)?, rows.next())
            }
            Dialect::Postgres => {
                let partition = match self.partition(&mut *conn, table, values).await? {
                    Some(existing) => existing,
                    None => {
                        partition_row(&reservation(UPSERT_PARTITION).fetch_one(&mut *conn).await?)?
                    }
                };
                let row = reservation(INSERT_BATCH).fetch_optional(&mut *conn).await?;
                (partition, row)
            }
        };
        match row {
            Some(row) => Ok((partition, row)),
            None => Err(self.too_many_pending(conn, table, began_by).await),
        }
    }

    /// Which bound on pending batches refused a BeginWrite, and what to do.
    async fn too_many_pending(
        &self,
        conn: &mut sqlx::AnyConnection,
        table: &TableRecord,
        began_by: Option<&str>,
    ) -> CatalogError {
        let advice = "commit or abort them, or wait for their leases to run out";
        if let Some(principal) = began_by {
            let held = sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM batches WHERE began_by = $1 AND state = 'pending'",
            )
            .bind(principal)
            .fetch_one(&mut *conn)
            .await;
            match held {
                Ok(held) if held >= self.settings.max_pending_per_principal => {
                    return CatalogError::FailedPrecondition(format!(
                        "{} has {held} writes begun and not yet committed, the most one \
                         principal may have ({}); {advice}",
                        quote_for_message(principal),
                        self.settings.max_pending_per_principal
                    ));
                }
                Ok(_) => {}
                Err(error) => return error.into(),
            }
        }
        CatalogError::FailedPrecondition(format!(
            "{} has {} writes begun and not yet committed, the most it may have; {advice}",
            table.qualified(),
            self.settings.max_pending_per_table
        ))
    }

    /// Gives up a pending batch. Idempotent for batches already aborted or abandoned.
    ///
    /// # Errors
    /// `NotFound` for an unknown batch; `FailedPrecondition` for a committed one.
    pub async fn abort_write(&self, batch_id: &str, check: BatchCheck<'_>) -> CatalogResult<()> {
        check_batch_id(batch_id)?;
        let batch = match self.recall_began(batch_id) {
            Some(batch) => batch,
            None => self.batch_or_why_not(batch_id).await?,
        };
        check(&batch)?;
        self.forget_began([batch_id]);
        let aborted = sqlx::query(
            "UPDATE batches SET state = 'aborted' WHERE batch_id = $1 AND state = 'pending'",
        )
        .bind(batch_id)
        .execute(&self.pool)
        .await?;
        if aborted.rows_affected() > 0 {
            return Ok(());
        }
        let batch = self.batch_or_why_not(batch_id).await?;
        match batch.state {
            BatchState::Committed => Err(CatalogError::FailedPrecondition(format!(
                "batch {batch_id} is already committed (version {}) and cannot be aborted; \
                 use rollback to return to an earlier version",
                batch.version.unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }

    /// The batch, or why it cannot be found: its table (or namespace) was dropped (`NotFound`
    /// of the table: the batch may well have been committed before), or the catalog never held
    /// it (`NotFound` of the batch: it was never committed, so a client settling a commit
    /// whose reply was lost takes that as proof).
    async fn batch_or_why_not(&self, batch_id: &str) -> CatalogResult<BatchRecord> {
        match self.batch(batch_id, false).await {
            Err(CatalogError::NotFound {
                what: Missing::Batch,
                ..
            }) => Err(self.missing_batch(batch_id).await),
            found => found,
        }
    }

    async fn missing_batch(&self, batch_id: &str) -> CatalogError {
        let dropped = sqlx::query(
            "SELECT n.name AS namespace, t.name AS name FROM batches b \
             JOIN tables t ON t.id = b.table_id JOIN namespaces n ON n.id = t.namespace_id \
             WHERE b.batch_id = $1",
        )
        .bind(batch_id)
        .fetch_optional(&self.pool)
        .await;
        match dropped {
            Ok(Some(row)) => {
                let table = format!(
                    "{}.{}",
                    row.try_get::<String, _>("namespace").unwrap_or_default(),
                    row.try_get::<String, _>("name").unwrap_or_default()
                );
                CatalogError::not_found(
                    Missing::Table,
                    table.clone(),
                    format!(
                        "batch {batch_id} belongs to table {}, which was dropped",
                        quote_for_message(&table)
                    ),
                )
            }
            Ok(None) => CatalogError::not_found(
                Missing::Batch,
                batch_id,
                format!("batch {batch_id} does not exist"),
            ),
            Err(error) => error.into(),
        }
    }

    /// Extends the lease of a pending batch to `lease` from now (the default when `None`).
    /// Only a live lease can be renewed: once it has run out, the batch is abandoned for good.
    ///
    /// # Errors
    /// `NotFound` for an unknown batch; `FailedPrecondition` for a batch that is committed,
    /// aborted or whose lease ran out; `InvalidArgument` for a lease above the maximum.
    pub async fn renew_lease(
        &self,
        batch_id: &str,
        lease: Option<Duration>,
        check: BatchCheck<'_>,
    ) -> CatalogResult<i64> {
        check_batch_id(batch_id)?;
        let lease = self.lease(lease)?;
        match self.recall_began(batch_id) {
            Some(batch) => check(&batch)?,
            None => check(&self.batch(batch_id, false).await?)?,
        }
        let renewed = sqlx::query(self.sql(
            "UPDATE batches SET lease_expires_at_us = {now} + $2 \
             WHERE batch_id = $1 AND state = 'pending' AND lease_expires_at_us > {now} \
             RETURNING lease_expires_at_us",
        ))
        .bind(batch_id)
        .bind(lease.as_micros() as i64)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = renewed {
            return Ok(row.try_get("lease_expires_at_us")?);
        }
        let batch = self.get_batch(batch_id).await?;
        Err(super::commit::validate::not_committable(&batch).unwrap_or_else(|| {
            CatalogError::FailedPrecondition(format!(
                "batch {batch_id} is already committed (version {}); its lease no longer matters",
                batch.version.unwrap_or_default()
            ))
        }))
    }

    /// Returns a batch and where it stands (expired leases are recorded as abandoned first).
    ///
    /// # Errors
    /// `NotFound` for an unknown batch.
    pub async fn get_batch(&self, batch_id: &str) -> CatalogResult<BatchRecord> {
        check_batch_id(batch_id)?;
        self.sweep_expired_leases().await?;
        self.batch(batch_id, true).await
    }

    /// Marks every pending batch whose lease has run out as abandoned. Returns how many.
    ///
    /// # Errors
    /// Database errors only.
    pub async fn sweep_expired_leases(&self) -> CatalogResult<u64> {
        let swept = sqlx::query(self.sql(
            "UPDATE batches SET state = 'abandoned' \
             WHERE state = 'pending' AND lease_expires_at_us <= {now}",
        ))
        .execute(&self.pool)
        .await?;
        Ok(swept.rows_affected())
    }

    /// Loads a batch with its table and partition (and its files when asked).
    pub(super) async fn batch(
        &self,
        batch_id: &str,
        with_files: bool,
    ) -> CatalogResult<BatchRecord> {
        check_batch_id(batch_id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TABLE_COLUMNS}, \
                        b.batch_id, b.partition_id, b.state, b.location, \
                        b.created_at_us AS batch_created_at_us, b.lease_expires_at_us, \
                        b.version, b.committed_at_us, b.rows, b.bytes, b.began_by, \
                        b.expired_at_us, b.expired_reason, b.deleted_at_us, p.partition_values \
                 FROM batches b JOIN partitions p ON p.id = b.partition_id \
                      JOIN tables t ON t.id = b.table_id \
                      JOIN namespaces n ON n.id = t.namespace_id \
                 WHERE b.batch_id = $1 AND t.dropped_at_us IS NULL AND n.dropped_at_us IS NULL"
        )))
        .bind(batch_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            CatalogError::not_found(
                Missing::Batch,
                batch_id,
                format!("batch {batch_id} does not exist (or its table was dropped)"),
            )
        })?;
        let table = self.table_from_row(&row)?;
        let files = if with_files {
            self.files_of(&[batch_id.to_owned()])
                .await?
                .remove(batch_id)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(BatchRecord {
            batch_id: row.try_get("batch_id")?,
            table,
            partition_id: row.try_get("partition_id")?,
            partition: PartitionValues::from_json(&row.try_get::<String, _>("partition_values")?)?,
            state: BatchState::parse(&row.try_get::<String, _>("state")?)?,
            location: row.try_get("location")?,
            created_at: row.try_get("batch_created_at_us")?,
            lease_expires_at: row.try_get("lease_expires_at_us")?,
            version: row.try_get("version")?,
            committed_at: row.try_get("committed_at_us")?,
            rows: row.try_get("rows")?,
            bytes: row.try_get("bytes")?,
            files,
            began_by: row.try_get("began_by")?,
            expired: expiry_from_row(&row)?,
            deleted_at: row.try_get("deleted_at_us")?,
        })
    }

    /// The files of several batches, keyed by batch id, each list ordered by path.
    pub(super) async fn files_of(
        &self,
        batch_ids: &[String],
    ) -> CatalogResult<HashMap<String, Vec<DataFile>>> {
        let mut files: HashMap<String, Vec<DataFile>> = HashMap::new();
        for chunk in batch_ids.chunks(500) {
            let placeholders = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>();
            let sql = format!(
                "SELECT batch_id, path, size_bytes, rows FROM batch_files \
                 WHERE batch_id IN ({}) ORDER BY batch_id, path",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.readers).await? {
                files
                    .entry(row.try_get("batch_id")?)
                    .or_default()
                    .push(DataFile {
                        path: row.try_get("path")?,
                        size_bytes: row.try_get("size_bytes")?,
                        rows: row.try_get("rows")?,
                    });
            }
        }
        Ok(files)
    }
}

/// Batch ids are UUIDs in the form the catalog hands out (lowercase, hyphenated); anything else
/// is refused before it reaches SQL or a message, since another spelling would never match.
pub(super) fn check_batch_id(batch_id: &str) -> CatalogResult<()> {
    match uuid::Uuid::try_parse(batch_id) {
        Ok(id) if id.hyphenated().to_string() == batch_id => Ok(()),
        Ok(id) => Err(CatalogError::InvalidArgument(format!(
            "{} is not written the way batch ids are; write it as {}",
            quote_for_message(batch_id),
            id.hyphenated()
        ))),
        Err(_) => Err(CatalogError::InvalidArgument(format!(
            "{} is not a batch id (batch ids are UUIDs such as 0193a5c2-…)",
            quote_for_message(batch_id)
        ))),
    }
}

/// Creates a partition's row if it is new. A no-op update on conflict makes RETURNING answer
/// for a row another writer just inserted too. On PostgreSQL that update would lock an existing
/// row until the transaction ends and leave a dead row version behind, so there an existing
/// partition is read first. Binds as [`Catalog::reserve_batch`]: $2 table id, $3 partition
/// hash, $9 partition values (JSON).
const UPSERT_PARTITION: &str = "INSERT INTO partitions (table_id, partition_hash, partition_values, \
                                 updated_at_us) \
     VALUES ($2, $3, $9, {now}) \
     ON CONFLICT (table_id, partition_hash) DO UPDATE SET table_id = excluded.table_id \
     RETURNING id, current_batch_id, current_version";

/// A new pending batch in the partition, only within the table's ($6) and the principal's
/// ($8) bounds on pending batches: the bounds cost no extra round trip. $1 batch id, $2 table
/// id, $3 partition hash, $4 location, $5 lease (µs), $7 the principal beginning it.
const INSERT_BATCH: &str = "INSERT INTO batches (batch_id, table_id, partition_id, state, location, \
                          created_at_us, lease_expires_at_us, began_by) \
     SELECT $1, $2, (SELECT id FROM partitions WHERE table_id = $2 AND partition_hash = $3), \
            'pending', $4, {now}, {now} + $5, $7 \
     WHERE (SELECT COUNT(*) FROM batches WHERE table_id = $2 AND state = 'pending') < $6 \
       AND (CAST($7 AS TEXT) IS NULL \
            OR (SELECT COUNT(*) FROM batches WHERE began_by = $7 AND state = 'pending') < $8) \
     RETURNING created_at_us, lease_expires_at_us";
