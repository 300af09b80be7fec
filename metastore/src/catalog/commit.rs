//! Commit: publish one or many pending batches, all or none.
//!
//! The slow, read-only checks run before the transaction (files exist with the stated sizes,
//! schemas decode and match). Then, in one transaction: compare-and-swap each partition pointer
//! (incrementing its version), append history, mark the batches committed, record files,
//! lineage and an audit event. Partitions are updated in id order so concurrent multi-partition
//! commits cannot deadlock. Marking a batch committed is guarded by `state = 'pending'` and an
//! unexpired lease, so a batch commits at most once, and a retry finds the version it created.
//! On PostgreSQL each partition's update is one call of a server-side function (migration
//! 0002); a single-partition commit is that one call, atomic without a surrounding
//! transaction. SQLite, in-process, runs the same steps one statement each in a transaction.

use super::writes::check_batch_id;
use super::{Catalog, Dialect, format_micros};
use crate::error::{CatalogError, CatalogResult};
use crate::model::{
    BatchRecord, BatchState, CommitOutcome, CommittedVersion, DataFile, ExpectedCurrent,
    PartitionUpdate,
};
use crate::names::validate_file_name;
use crate::schema;
use arrow_schema::Schema;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use std::collections::HashSet;

/// Most partition updates one commit may carry.
pub const MAX_UPDATES_PER_COMMIT: usize = 10_000;
/// Most files one batch may list.
pub const MAX_FILES_PER_BATCH: usize = 100_000;

/// Why the transaction of a commit stopped early.
enum TxStop {
    Error(CatalogError),
    /// The batch row was no longer pending with a live lease: find out why after rollback.
    BatchNotPending(String),
    /// The compare-and-swap of this batch's partition failed: say why after rollback.
    Conflict(String),
}

impl From<CatalogError> for TxStop {
    fn from(e: CatalogError) -> Self {
        TxStop::Error(e)
    }
}

impl From<sqlx::Error> for TxStop {
    fn from(e: sqlx::Error) -> Self {
        TxStop::Error(e.into())
    }
}

/// A validated update, with everything the transaction needs.
struct PreparedUpdate {
    update: PartitionUpdate,
    batch: BatchRecord,
    schema: Schema,
    rows: i64,
    bytes: i64,
}

impl Catalog {
    /// Commits one or many pending batches, all or none.
    ///
    /// # Errors
    /// `Conflict` when an expected current batch does not match; `SchemaMismatch`;
    /// `FailedPrecondition` for missing files, expired leases, aborted batches, or a batch
    /// already committed by another commit; `NotFound` for unknown batches.
    pub async fn commit(
        &self,
        updates: Vec<PartitionUpdate>,
        message: &str,
        actor: &str,
    ) -> CatalogResult<CommitOutcome> {
        validate_updates(&updates)?;
        let mut batches = Vec::with_capacity(updates.len());
        for update in &updates {
            let batch = match self.recall_began(&update.batch_id) {
                Some(batch) => batch,
                None => self.batch(&update.batch_id, false).await?,
            };
            batches.push(batch);
        }
        if let Some(outcome) = already_committed(&batches)? {
            return Ok(outcome);
        }
        let mut prepared = prepare(updates, batches)?;
        for input in prepared.iter().flat_map(|p| &p.update.inputs) {
            self.require_committed(input).await?;
        }
        let checks: Vec<_> = prepared
            .iter()
            .map(|p| {
                self.warehouse
                    .check_files(&p.batch.location, &p.update.files)
            })
            .collect();
        futures::future::try_join_all(checks).await?;
        prepared.sort_by_key(|p| p.batch.partition_id);

        let result = if self.is_single_statement(&prepared) {
            // One partition of a table with a fixed schema on PostgreSQL: one atomic call.
            let mut conn = self.pool.acquire().await?;
            let p = &prepared[0];
            let target = audit_target(std::slice::from_ref(&p.batch));
            self.commit_partition_pg(&mut conn, p, message, actor, Some(&target))
                .await
                .map(|moved| vec![committed_version(p, moved)])
        } else {
            let mut tx = self.pool.begin().await?;
            match self.commit_in(&mut tx, &prepared, message, actor).await {
                Ok(committed) => tx.commit().await.map(|()| committed).map_err(TxStop::from),
                Err(stop) => {
                    tx.rollback().await?;
                    Err(stop)
                }
            }
        };
        if result.is_ok() {
            self.forget_began(prepared.iter().map(|p| p.batch.batch_id.as_str()));
        }
        match result {
            Ok(committed) => Ok(CommitOutcome {
                committed,
                already_committed: false,
            }),
            Err(TxStop::Error(e)) => Err(e),
            Err(TxStop::BatchNotPending(batch_id)) => {
                self.explain_not_pending(&batch_id, &prepared).await
            }
            Err(TxStop::Conflict(batch_id)) => {
                let p = prepared.iter().find(|p| p.batch.batch_id == batch_id);
                Err(match p {
                    Some(p) => self.conflict(p).await,
                    None => {
                        CatalogError::Internal(format!("conflict on an unknown batch {batch_id}"))
                    }
                })
            }
        }
    }

    /// Whether the commit can run as one server-side call without a transaction around it.
    fn is_single_statement(&self, prepared: &[PreparedUpdate]) -> bool {
        self.dialect == Dialect::Postgres
            && prepared.len() == 1
            && prepared[0].batch.table.arrow_schema.is_some()
            && prepared[0].update.inputs.is_empty()
    }

    async fn commit_in(
        &self,
        conn: &mut AnyConnection,
        prepared: &[PreparedUpdate],
        message: &str,
        actor: &str,
    ) -> Result<Vec<CommittedVersion>, TxStop> {
        self.fix_table_schemas(conn, prepared).await?;
        let mut committed = Vec::with_capacity(prepared.len());
        for p in prepared {
            let moved = match self.dialect {
                Dialect::Postgres => {
                    self.commit_partition_pg(conn, p, message, actor, None)
                        .await?
                }
                Dialect::Sqlite => self.apply_step_by_step(conn, p, message, actor).await?,
            };
            for input in &p.update.inputs {
                sqlx::query("INSERT INTO lineage (batch_id, input_batch_id) VALUES ($1, $2)")
                    .bind(&p.batch.batch_id)
                    .bind(input)
                    .execute(&mut *conn)
                    .await?;
            }
            committed.push(committed_version(p, moved));
        }
        let batches: Vec<BatchRecord> = prepared.iter().map(|p| p.batch.clone()).collect();
        self.audit(conn, actor, "commit", &audit_target(&batches), message)
            .await?;
        Ok(committed)
    }

    /// One partition's update as separate statements: swap the pointer, append history, mark
    /// the batch committed, record its files. Returns `(version, committed_at)`.
    async fn apply_step_by_step(
        &self,
        conn: &mut AnyConnection,
        p: &PreparedUpdate,
        message: &str,
        actor: &str,
    ) -> Result<(i64, i64), TxStop> {
        let (version, committed_at) = self.swap_partition(conn, p).await?;
        sqlx::query(
            "INSERT INTO history (partition_id, version, batch_id, operation, actor, message, \
                                  committed_at_us, rows, bytes) \
             VALUES ($1, $2, $3, 'write', $4, $5, $6, $7, $8)",
        )
        .bind(p.batch.partition_id)
        .bind(version)
        .bind(&p.batch.batch_id)
        .bind(actor)
        .bind(message)
        .bind(committed_at)
        .bind(p.rows)
        .bind(p.bytes)
        .execute(&mut *conn)
        .await?;
        let marked = sqlx::query(self.sql(
            "UPDATE batches SET state = 'committed', version = $1, committed_at_us = $2, \
                    rows = $3, bytes = $4, arrow_schema = $5 \
             WHERE batch_id = $6 AND state = 'pending' AND lease_expires_at_us > {now}",
        ))
        .bind(version)
        .bind(committed_at)
        .bind(p.rows)
        .bind(p.bytes)
        .bind(&p.update.arrow_schema)
        .bind(&p.batch.batch_id)
        .execute(&mut *conn)
        .await?;
        if marked.rows_affected() != 1 {
            return Err(TxStop::BatchNotPending(p.batch.batch_id.clone()));
        }
        insert_files(conn, &p.batch.batch_id, &p.update.files).await?;
        Ok((version, committed_at))
    }

    /// The same update as [`Self::apply_step_by_step`] as one call of the PostgreSQL function
    /// `batchstore_commit_partition` (migration 0002), which also records the audit event when
    /// `audit_target` is given.
    async fn commit_partition_pg(
        &self,
        conn: &mut AnyConnection,
        p: &PreparedUpdate,
        message: &str,
        actor: &str,
        audit_target: Option<&str>,
    ) -> Result<(i64, i64), TxStop> {
        let (guard, expected) = match &p.update.expected {
            None => (0, ""),
            Some(ExpectedCurrent::Nothing) => (1, ""),
            Some(ExpectedCurrent::Batch(b)) => (2, b.as_str()),
        };
        let files: Vec<(&str, i64, i64)> = p
            .update
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.size_bytes, f.rows))
            .collect();
        let files = serde_json::to_string(&files)
            .map_err(|e| CatalogError::Internal(format!("encoding the file list: {e}")))?;
        let called = sqlx::query(
            "SELECT new_version, new_committed_at_us FROM batchstore_commit_partition(\
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&p.batch.batch_id)
        .bind(p.batch.partition_id)
        .bind(p.rows)
        .bind(p.bytes)
        .bind(&p.update.arrow_schema)
        .bind(guard)
        .bind(expected)
        .bind(actor)
        .bind(message)
        .bind(files)
        .bind(audit_target)
        .fetch_one(&mut *conn)
        .await;
        match called {
            Ok(row) => Ok((
                row.try_get("new_version")?,
                row.try_get("new_committed_at_us")?,
            )),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("BS001") => {
                Err(TxStop::Conflict(p.batch.batch_id.clone()))
            }
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("BS002") => {
                Err(TxStop::BatchNotPending(p.batch.batch_id.clone()))
            }
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("BS003") => {
                Err(TxStop::Error(CatalogError::NotFound(format!(
                    "table {} was dropped after batch {} began; nothing was committed",
                    p.batch.table.qualified(),
                    p.batch.batch_id
                ))))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Fixes the schema of tables that have none yet (first write), or checks against the
    /// schema another commit fixed meanwhile.
    async fn fix_table_schemas(
        &self,
        conn: &mut AnyConnection,
        prepared: &[PreparedUpdate],
    ) -> Result<(), TxStop> {
        let mut done = HashSet::new();
        for p in prepared
            .iter()
            .filter(|p| p.batch.table.arrow_schema.is_none())
        {
            if !done.insert(p.batch.table.id) {
                continue;
            }
            let set = sqlx::query(
                "UPDATE tables SET arrow_schema = $1 WHERE id = $2 AND arrow_schema IS NULL",
            )
            .bind(&p.update.arrow_schema)
            .bind(p.batch.table.id)
            .execute(&mut *conn)
            .await?;
            if set.rows_affected() == 0 {
                let row = sqlx::query("SELECT arrow_schema FROM tables WHERE id = $1")
                    .bind(p.batch.table.id)
                    .fetch_one(&mut *conn)
                    .await?;
                let bytes: Vec<u8> = row.try_get("arrow_schema")?;
                let table_schema = schema::decode(&bytes)?;
                for q in prepared
                    .iter()
                    .filter(|q| q.batch.table.id == p.batch.table.id)
                {
                    schema::check_compatible(&table_schema, &q.schema, &q.batch.table.qualified())?;
                }
            }
        }
        Ok(())
    }

    /// Moves the partition pointer to the batch, incrementing the version; with an expected
    /// current batch, only if it still matches. Returns `(version, committed_at)`.
    async fn swap_partition(
        &self,
        conn: &mut AnyConnection,
        p: &PreparedUpdate,
    ) -> Result<(i64, i64), TxStop> {
        let moved = self
            .move_pointer(
                conn,
                p.batch.partition_id,
                &p.batch.batch_id,
                (p.rows, p.bytes),
                p.update.expected.as_ref(),
            )
            .await?;
        match moved {
            Some(moved) => Ok(moved),
            None => Err(TxStop::Conflict(p.batch.batch_id.clone())),
        }
    }

    /// The refusal of a failed compare-and-swap, naming the batch that is current now (read
    /// after the transaction was rolled back).
    async fn conflict(&self, p: &PreparedUpdate) -> CatalogError {
        let current =
            sqlx::query("SELECT current_batch_id, current_version FROM partitions WHERE id = $1")
                .bind(p.batch.partition_id)
                .fetch_one(&self.pool)
                .await;
        let (batch, version): (Option<String>, i64) = match current {
            Ok(row) => (
                row.try_get("current_batch_id").unwrap_or_default(),
                row.try_get("current_version").unwrap_or_default(),
            ),
            Err(e) => return e.into(),
        };
        let expected = match &p.update.expected {
            Some(ExpectedCurrent::Batch(b)) => format!("batch {b}"),
            _ => "no batch (a partition never written)".to_owned(),
        };
        let now = match batch {
            Some(b) => format!("batch {b} (version {version})"),
            None => "no batch".to_owned(),
        };
        CatalogError::Conflict(format!(
            "conflict on partition {} of {}: it is now at {now}, not at the expected {expected}; \
             another write committed first. Read the partition again and retry, or commit \
             without an expected batch to overwrite",
            p.batch.partition.describe(&p.batch.table.keys),
            p.batch.table.qualified()
        ))
    }

    /// After a commit found a batch no longer pending: either a concurrent retry committed it
    /// (answer with the original versions) or its lease ran out (record it, refuse).
    async fn explain_not_pending(
        &self,
        batch_id: &str,
        prepared: &[PreparedUpdate],
    ) -> CatalogResult<CommitOutcome> {
        self.sweep_expired_leases().await?;
        let mut batches = Vec::with_capacity(prepared.len());
        for p in prepared {
            batches.push(self.batch(&p.batch.batch_id, false).await?);
        }
        if let Some(outcome) = already_committed(&batches)? {
            return Ok(outcome);
        }
        let batch = self.batch(batch_id, false).await?;
        Err(not_committable(&batch).unwrap_or_else(|| {
            CatalogError::Unavailable(format!(
                "batch {batch_id} changed state during the commit; retry the commit"
            ))
        }))
    }

    /// Lineage may only name batches that exist and are committed.
    async fn require_committed(&self, batch_id: &str) -> CatalogResult<()> {
        let found = sqlx::query("SELECT state FROM batches WHERE batch_id = $1")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await?;
        match found {
            Some(row) if row.try_get::<String, _>("state")? == "committed" => Ok(()),
            Some(_) => Err(CatalogError::FailedPrecondition(format!(
                "input batch {batch_id} is not committed; lineage can only name committed batches"
            ))),
            None => Err(CatalogError::NotFound(format!(
                "input batch {batch_id} does not exist"
            ))),
        }
    }
}

/// What a commit reports for one partition, from its update and `(version, committed_at)`.
fn committed_version(p: &PreparedUpdate, (version, committed_at): (i64, i64)) -> CommittedVersion {
    CommittedVersion {
        batch_id: p.batch.batch_id.clone(),
        namespace: p.batch.table.namespace.clone(),
        table: p.batch.table.name.clone(),
        partition: p.batch.partition.pairs(&p.batch.table.keys),
        version,
        committed_at,
        rows: p.rows,
        bytes: p.bytes,
    }
}

/// The audit target of a commit: `namespace.table@batch` for each batch.
fn audit_target(batches: &[BatchRecord]) -> String {
    batches
        .iter()
        .map(|b| format!("{}.{}@{}", b.table.namespace, b.table.name, b.batch_id))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Inserts a batch's file list, many rows per statement.
async fn insert_files(
    conn: &mut AnyConnection,
    batch_id: &str,
    files: &[DataFile],
) -> Result<(), TxStop> {
    for chunk in files.chunks(200) {
        let values = (0..chunk.len())
            .map(|i| {
                format!(
                    "(${}, ${}, ${}, ${})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql =
            format!("INSERT INTO batch_files (batch_id, path, size_bytes, rows) VALUES {values}");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for file in chunk {
            query = query
                .bind(batch_id)
                .bind(&file.path)
                .bind(file.size_bytes)
                .bind(file.rows);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Checks the shape of a commit request before anything is read.
fn validate_updates(updates: &[PartitionUpdate]) -> CatalogResult<()> {
    if updates.is_empty() {
        return Err(CatalogError::InvalidArgument(
            "the commit lists no partition updates; send at least one".into(),
        ));
    }
    if updates.len() > MAX_UPDATES_PER_COMMIT {
        return Err(CatalogError::InvalidArgument(format!(
            "a commit carries at most {MAX_UPDATES_PER_COMMIT} partition updates; split it"
        )));
    }
    let mut seen = HashSet::new();
    for update in updates {
        check_batch_id(&update.batch_id)?;
        if !seen.insert(update.batch_id.as_str()) {
            return Err(CatalogError::InvalidArgument(format!(
                "batch {} is listed twice in one commit",
                update.batch_id
            )));
        }
        if update.files.len() > MAX_FILES_PER_BATCH {
            return Err(CatalogError::InvalidArgument(format!(
                "batch {} lists {} files; at most {MAX_FILES_PER_BATCH} are allowed",
                update.batch_id,
                update.files.len()
            )));
        }
        let mut paths = HashSet::new();
        for file in &update.files {
            validate_file_name(&file.path)?;
            if !paths.insert(file.path.as_str()) {
                return Err(CatalogError::InvalidArgument(format!(
                    "file {} is listed twice for batch {}",
                    file.path, update.batch_id
                )));
            }
            if file.size_bytes < 0 || file.rows < 0 {
                return Err(CatalogError::InvalidArgument(format!(
                    "file {} has a negative size or row count",
                    file.path
                )));
            }
        }
        for input in &update.inputs {
            check_batch_id(input)?;
        }
        if let Some(ExpectedCurrent::Batch(expected)) = &update.expected {
            check_batch_id(expected)?;
        }
    }
    Ok(())
}

/// When every batch of the request is committed already, the answer to a retried commit.
/// A mix of committed and uncommitted batches is refused: those belong to different commits.
fn already_committed(batches: &[BatchRecord]) -> CatalogResult<Option<CommitOutcome>> {
    let committed = batches
        .iter()
        .filter(|b| b.state == BatchState::Committed)
        .count();
    if committed == 0 {
        return Ok(None);
    }
    if committed < batches.len() {
        let done = batches.iter().find(|b| b.state == BatchState::Committed);
        return Err(CatalogError::FailedPrecondition(format!(
            "batch {} was already committed by an earlier commit, but other batches of this \
             commit were not; commit the remaining batches on their own",
            done.map(|b| b.batch_id.as_str()).unwrap_or_default()
        )));
    }
    let committed = batches
        .iter()
        .map(|b| CommittedVersion {
            batch_id: b.batch_id.clone(),
            namespace: b.table.namespace.clone(),
            table: b.table.name.clone(),
            partition: b.partition.pairs(&b.table.keys),
            version: b.version.unwrap_or_default(),
            committed_at: b.committed_at.unwrap_or_default(),
            rows: b.rows,
            bytes: b.bytes,
        })
        .collect();
    Ok(Some(CommitOutcome {
        committed,
        already_committed: true,
    }))
}

/// The refusal for a batch that cannot be committed, if it cannot.
fn not_committable(batch: &BatchRecord) -> Option<CatalogError> {
    match batch.state {
        BatchState::Aborted => Some(CatalogError::FailedPrecondition(format!(
            "batch {} was aborted and can never be committed; begin a new write",
            batch.batch_id
        ))),
        BatchState::Abandoned => Some(CatalogError::FailedPrecondition(format!(
            "the lease of batch {} ran out at {} before it was committed, so it was abandoned; \
             begin a new write (ask for a longer lease if uploads take this long)",
            batch.batch_id,
            format_micros(batch.lease_expires_at)
        ))),
        BatchState::Pending | BatchState::Committed => None,
    }
}

/// Decodes and checks schemas, refuses dead batches and two updates of one partition.
fn prepare(
    updates: Vec<PartitionUpdate>,
    batches: Vec<BatchRecord>,
) -> CatalogResult<Vec<PreparedUpdate>> {
    let mut partitions = HashSet::new();
    let mut prepared = Vec::with_capacity(updates.len());
    for (update, batch) in updates.into_iter().zip(batches) {
        if let Some(refusal) = not_committable(&batch) {
            return Err(refusal);
        }
        if !partitions.insert(batch.partition_id) {
            return Err(CatalogError::InvalidArgument(format!(
                "two batches of this commit write partition {} of {}; a commit updates each \
                 partition at most once",
                batch.partition.describe(&batch.table.keys),
                batch.table.qualified()
            )));
        }
        let write_schema = schema::decode(&update.arrow_schema)?;
        schema::validate_for_table(&write_schema, &batch.table.keys)?;
        if let Some(bytes) = &batch.table.arrow_schema {
            let table_schema = schema::decode(bytes)?;
            schema::check_compatible(&table_schema, &write_schema, &batch.table.qualified())?;
        }
        let rows = update.files.iter().map(|f| f.rows).sum();
        let bytes = update.files.iter().map(|f| f.size_bytes).sum();
        prepared.push(PreparedUpdate {
            update,
            batch,
            schema: write_schema,
            rows,
            bytes,
        });
    }
    // Within one commit, updates of the same new table must agree with each other too.
    for (i, p) in prepared.iter().enumerate() {
        if p.batch.table.arrow_schema.is_none()
            && let Some(first) = prepared[..i]
                .iter()
                .find(|q| q.batch.table.id == p.batch.table.id)
        {
            schema::check_compatible(&first.schema, &p.schema, &p.batch.table.qualified())?;
        }
    }
    Ok(prepared)
}
