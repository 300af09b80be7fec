//! Commit: publish one or many pending batches, all or none.
//!
//! The slow, read-only checks run before the transaction (files exist with the stated sizes,
//! schemas decode and match, lineage inputs are committed). Then, in one transaction, the same
//! steps on every database: record the files, lineage and audit event; lock the partitions
//! and take the commit's one timestamp (`pointer`); compare-and-swap each partition pointer,
//! append history and mark each batch committed (only while pending with a live lease, so a
//! batch commits at most once). Partition rows are locked late, for as few statements as
//! possible, since commits to one partition wait for each other there; a table's first schema
//! is set last of all, since every first write to the table waits on that row.
//!
//! A request whose batches are committed already is a retry: it is compared with what was
//! committed (`retry`) and answered with the original versions only when it is identical. A
//! commit that loses a race to its own retry (another replica committed the batch first) is
//! answered the same way, so the answer never depends on which replica a retry reaches.

mod retry;
pub(super) mod validate;

use super::pointer::{self, PointerMove};
use super::{Catalog, Dialect};
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::model::{
    BatchCheck, BatchRecord, BatchState, CommitOutcome, CommittedVersion, DataFile,
    ExpectedCurrent, Micros, NamespaceCheck, PartitionUpdate, SchemaPolicy,
};
use crate::schema;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use std::collections::HashSet;
use validate::{PreparedUpdate, not_committable, prepare, validate_updates};

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

impl Catalog {
    /// Commits one or many pending batches, all or none.
    ///
    /// # Errors
    /// `Conflict` when an expected current batch does not match; `SchemaMismatch`;
    /// `FailedPrecondition` for missing files, expired leases, aborted batches, or a retry that
    /// differs from the commit it repeats; `NotFound` for unknown batches.
    pub async fn commit(
        &self,
        updates: Vec<PartitionUpdate>,
        message: &str,
        actor: &str,
        check: BatchCheck<'_>,
        may_read_input: NamespaceCheck<'_>,
    ) -> CatalogResult<CommitOutcome> {
        validate_updates(&updates, message)?;
        let mut batches = Vec::with_capacity(updates.len());
        for update in &updates {
            let batch = match self.recall_began(&update.batch_id) {
                Some(batch) => batch,
                None => self.batch(&update.batch_id, false).await?,
            };
            check(&batch)?;
            batches.push(batch);
        }
        if let Some(outcome) = self
            .answer_retry(&updates, &batches, message, false)
            .await?
        {
            return Ok(outcome);
        }
        let mut prepared = prepare(updates, batches)?;
        for input in prepared
            .iter()
            .flat_map(|p| &p.update.inputs)
            .collect::<HashSet<_>>()
        {
            self.require_committed(input, may_read_input).await?;
        }
        let files: Vec<(&str, &DataFile)> = prepared
            .iter()
            .flat_map(|p| {
                p.update
                    .files
                    .iter()
                    .map(|f| (p.batch.location.as_str(), f))
            })
            .collect();
        let mut facts = self.warehouse.inspect_files(&files).await?.into_iter();
        for p in &mut prepared {
            let mine = facts.by_ref().take(p.update.files.len()).collect();
            p.record_facts(mine)?;
        }
        prepared.sort_by_key(|p| p.batch.partition_id);

        let mut tx = self.pool.begin().await?;
        let result = match self.commit_in(&mut tx, &prepared, message, actor).await {
            Ok(committed) => tx.commit().await.map(|()| committed).map_err(TxStop::from),
            Err(stop) => match tx.rollback().await {
                Ok(()) => Err(stop),
                Err(e) => Err(TxStop::from(e)),
            },
        };
        // Whatever the transaction ended in (a COMMIT whose reply was lost included), what
        // this process remembers of the batches as pending may be stale now: a retry reads
        // them from the catalog.
        self.forget_began(prepared.iter().map(|p| p.batch.batch_id.as_str()));
        match result {
            Ok(committed) => Ok(CommitOutcome {
                committed,
                already_committed: false,
            }),
            Err(TxStop::Error(e)) => Err(e),
            Err(TxStop::BatchNotPending(batch_id)) => {
                self.explain_stop(&batch_id, &prepared, message, false)
                    .await
            }
            Err(TxStop::Conflict(batch_id)) => {
                self.explain_stop(&batch_id, &prepared, message, true).await
            }
        }
    }

    async fn commit_in(
        &self,
        conn: &mut AnyConnection,
        prepared: &[PreparedUpdate],
        message: &str,
        actor: &str,
    ) -> Result<Vec<CommittedVersion>, TxStop> {
        let first_schemas = self.fix_table_schemas(conn, prepared).await?;
        // What needs no partition lock comes first (files, lineage, the audit event), so that
        // a partition's row stays locked only for its pointer move, history and batch state.
        for p in prepared {
            insert_files(conn, p).await.map_err(|stop| match stop {
                // The batch's files are recorded already: a retry committed it meanwhile.
                TxStop::Error(CatalogError::AlreadyExists(_)) => {
                    TxStop::BatchNotPending(p.batch.batch_id.clone())
                }
                other => other,
            })?;
            for input in &p.update.inputs {
                sqlx::query("INSERT INTO lineage (batch_id, input_batch_id) VALUES ($1, $2)")
                    .bind(&p.batch.batch_id)
                    .bind(input)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        // One partition: its pointer update takes the stamp itself (one statement fewer).
        let table_ids: Vec<i64> = prepared.iter().map(|p| p.batch.table.id).collect();
        let stamp = if prepared.len() == 1 {
            self.share_commit_locks(conn, &table_ids).await?;
            None
        } else {
            let partition_ids: Vec<i64> = prepared.iter().map(|p| p.batch.partition_id).collect();
            Some(
                self.stamp_partitions(conn, &table_ids, &partition_ids)
                    .await?,
            )
        };
        let mut committed = Vec::with_capacity(prepared.len());
        for p in prepared {
            let change = PointerMove {
                partition_id: p.batch.partition_id,
                batch_id: &p.batch.batch_id,
                location: &p.batch.location,
                rows: p.rows,
                bytes: p.bytes,
                expected: p.update.expected.as_ref(),
            };
            let (version, stamp) = self
                .move_and_record(conn, p, &change, stamp, actor, message)
                .await?;
            committed.push((
                p.index,
                committed_version(&p.batch, version, stamp, p.rows, p.bytes),
            ));
        }
        self.fix_first_schemas(conn, prepared, first_schemas)
            .await?;
        committed.sort_by_key(|(index, _)| *index);
        let committed = committed.into_iter().map(|(_, c)| c).collect();
        #[cfg(debug_assertions)]
        if let Some(pause) = fault_pause() {
            // Fault injection for tests (debug builds only): hold the stamped, uncommitted
            // transaction open, as a slow database would.
            tokio::time::sleep(pause).await;
        }
        Ok(committed)
    }

    /// Moves the partition's pointer ([`Catalog::move_pointer`]), appends the version's history
    /// entry and marks its batch committed, the last only while the batch is pending with a
    /// live lease. Returns the new version and its stamp. On SQLite the three statements go to
    /// the database together, one round trip: each after the move runs only if the statement
    /// before it changed one row (`changes()`), so nothing follows a failed compare-and-swap,
    /// even one that failed because a racing retry made this batch current already. On
    /// PostgreSQL the move comes first, then the other two as one statement (a data-modifying
    /// `WITH`): one round trip fewer while the partition's row is locked.
    async fn move_and_record(
        &self,
        conn: &mut AnyConnection,
        p: &PreparedUpdate,
        change: &PointerMove<'_>,
        stamp: Option<Micros>,
        actor: &str,
        message: &str,
    ) -> Result<(i64, Micros), TxStop> {
        const APPEND: &str = "INSERT INTO history (partition_id, version, batch_id, operation, \
                                       actor, message, committed_at_us, rows, bytes)";
        let conflict = || TxStop::Conflict(p.batch.batch_id.clone());
        let not_pending = || TxStop::BatchNotPending(p.batch.batch_id.clone());
        let now = self.dialect.now();
        if self.dialect == Dialect::Sqlite {
            // All rows: sqlx stops a `fetch_optional` of SQLite statements sent together after
            // the first statement.
            let rows = self
                .pointer_update(change, stamp, |n| {
                    let (actor, message, schema) = (n, n + 1, n + 2);
                    format!(
                        "{APPEND} SELECT id, current_version, $1, 'write', ${actor}, ${message}, \
                                updated_at_us, $2, $3 \
                         FROM partitions WHERE id = $4 AND current_batch_id = $1 AND changes() = 1; \
                         UPDATE batches SET state = 'committed', version = p.current_version, \
                                committed_at_us = p.updated_at_us, rows = $2, bytes = $3, \
                                arrow_schema = ${schema} \
                         FROM (SELECT current_version, updated_at_us FROM partitions \
                               WHERE id = $4 AND current_batch_id = $1 AND changes() = 1) AS p \
                         WHERE batch_id = $1 AND state = 'pending' AND lease_expires_at_us > {now} \
                         RETURNING batch_id"
                    )
                })
                .bind(actor)
                .bind(message)
                .bind(&p.update.arrow_schema)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| lost_batch(e, &p.batch.batch_id))?;
            let returned = |column: &str| rows.iter().find(|row| row.try_column(column).is_ok());
            let moved = pointer::moved(returned("current_version").ok_or_else(conflict)?)?;
            returned("batch_id").ok_or_else(not_pending)?;
            return Ok(moved);
        }
        let (version, stamp) = self
            .move_pointer(conn, change, stamp)
            .await?
            .ok_or_else(conflict)?;
        let marked = sqlx::query(AssertSqlSafe(format!(
            "WITH appended AS ({APPEND} \
                 VALUES ($1, $2, $3, 'write', $4, $5, $6, $7, $8)) \
             UPDATE batches SET state = 'committed', version = $2, \
                    committed_at_us = $6, rows = $7, bytes = $8, arrow_schema = $9 \
             WHERE batch_id = $3 AND state = 'pending' AND lease_expires_at_us > {now} \
             RETURNING batch_id"
        )))
        .bind(change.partition_id)
        .bind(version)
        .bind(&p.batch.batch_id)
        .bind(actor)
        .bind(message)
        .bind(stamp)
        .bind(p.rows)
        .bind(p.bytes)
        .bind(&p.update.arrow_schema)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| lost_batch(e, &p.batch.batch_id))?;
        marked.ok_or_else(not_pending)?;
        Ok((version, stamp))
    }

    /// Keeps each table's read schema right for the writes of this commit: a table without a
    /// schema gets all of this commit's schemas for it merged (same columns; nullable where any
    /// is; the widest dictionary index); a table whose schema another commit fixed meanwhile is
    /// checked against it; and a write that changes the table's schema (a wider dictionary
    /// index; under the additive policy a new column, a wider type) changes it, recorded in the
    /// table's schema history. The table record a batch carries may be older than the table
    /// (it is remembered from BeginWrite): what it says would change is checked again here.
    /// A first schema is only chosen here: it is set by [`Self::fix_first_schemas`], last in
    /// the transaction. Returns the tables to give one, with it.
    async fn fix_table_schemas(
        &self,
        conn: &mut AnyConnection,
        prepared: &[PreparedUpdate],
    ) -> Result<Vec<(i64, Vec<u8>)>, TxStop> {
        let mut first_schemas = Vec::new();
        let mut tables: Vec<i64> = prepared.iter().map(|p| p.batch.table.id).collect();
        tables.sort_unstable();
        tables.dedup();
        for table_id in tables {
            let updates: Vec<&PreparedUpdate> = prepared
                .iter()
                .filter(|p| p.batch.table.id == table_id)
                .collect();
            let first = updates[0];
            let table = &first.batch.table;
            let name = table.qualified();
            match &first.table_schema {
                None => {
                    // Usually some commit fixed it since the batch began: read it without a
                    // lock, so commits to one table do not queue on its row.
                    let fixed: Option<Vec<u8>> =
                        sqlx::query("SELECT arrow_schema FROM tables WHERE id = $1")
                            .bind(table_id)
                            .fetch_one(&mut *conn)
                            .await?
                            .try_get("arrow_schema")?;
                    if fixed.is_some() {
                        self.check_and_evolve(conn, table_id, &updates).await?;
                        continue;
                    }
                    let bytes = if updates.len() == 1 {
                        first.update.arrow_schema.clone()
                    } else {
                        let mut merged = first.schema.clone();
                        for q in &updates[1..] {
                            merged = schema::merge(&merged, &q.schema, &name)?;
                        }
                        schema::encode(&merged)
                    };
                    first_schemas.push((table_id, bytes));
                }
                Some(known) => {
                    let mut changes = false;
                    for q in &updates {
                        changes |=
                            schema::evolve(known, &q.schema, table.schema_policy, &name)?.is_some();
                    }
                    if changes {
                        self.check_and_evolve(conn, table_id, &updates).await?;
                    }
                }
            }
        }
        Ok(first_schemas)
    }

    /// Gives tables without a schema their first one (chosen by [`Self::fix_table_schemas`]),
    /// as the transaction's last step: setting it locks the table's row until the commit
    /// ends, so concurrent first writes to a table (of other partitions) wait only for this
    /// transaction's COMMIT, not for all of its work. A table another commit gave a schema
    /// meanwhile is checked against it instead, and the whole commit fails if it does not fit.
    async fn fix_first_schemas(
        &self,
        conn: &mut AnyConnection,
        prepared: &[PreparedUpdate],
        first_schemas: Vec<(i64, Vec<u8>)>,
    ) -> Result<(), TxStop> {
        for (table_id, bytes) in first_schemas {
            let set = sqlx::query(
                "UPDATE tables SET arrow_schema = $1 WHERE id = $2 AND arrow_schema IS NULL",
            )
            .bind(&bytes)
            .bind(table_id)
            .execute(&mut *conn)
            .await?;
            if set.rows_affected() == 0 {
                let updates: Vec<&PreparedUpdate> = prepared
                    .iter()
                    .filter(|p| p.batch.table.id == table_id)
                    .collect();
                self.check_and_evolve(conn, table_id, &updates).await?;
            } else {
                self.record_schema(conn, table_id, &bytes, "fixed by the first write")
                    .await?;
            }
        }
        Ok(())
    }

    /// Checks the writes against the table's current schema and policy, and changes the schema
    /// where a write changes it (recording the change). The table row is locked only when it
    /// must change, so commits to one table do not wait for each other here.
    async fn check_and_evolve(
        &self,
        conn: &mut AnyConnection,
        table_id: i64,
        updates: &[&PreparedUpdate],
    ) -> Result<(), TxStop> {
        let mut locked = false;
        loop {
            let lock = if locked {
                self.dialect.lock_for_update()
            } else {
                ""
            };
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT arrow_schema, schema_policy FROM tables WHERE id = $1{lock}"
            )))
            .bind(table_id)
            .fetch_one(&mut *conn)
            .await?;
            let mut table_schema = schema::decode(&row.try_get::<Vec<u8>, _>("arrow_schema")?)?;
            let policy = SchemaPolicy::parse(&row.try_get::<String, _>("schema_policy")?)?;
            let mut changes = Vec::new();
            for q in updates {
                let name = q.batch.table.qualified();
                if let Some(evolved) = schema::evolve(&table_schema, &q.schema, policy, &name)? {
                    table_schema = evolved.schema;
                    changes.extend(evolved.changes);
                }
            }
            if changes.is_empty() {
                return Ok(());
            }
            if !locked {
                // Read it again under the lock: another commit may be changing it too.
                locked = true;
                continue;
            }
            let bytes = schema::encode(&table_schema);
            sqlx::query("UPDATE tables SET arrow_schema = $1 WHERE id = $2")
                .bind(&bytes)
                .bind(table_id)
                .execute(&mut *conn)
                .await?;
            self.record_schema(conn, table_id, &bytes, &changes.join("; "))
                .await?;
            return Ok(());
        }
    }

    /// Appends a table's new schema to its schema history (the table row is locked, or was
    /// just given its first schema, by this transaction).
    async fn record_schema(
        &self,
        conn: &mut AnyConnection,
        table_id: i64,
        bytes: &[u8],
        change: &str,
    ) -> Result<(), TxStop> {
        sqlx::query(self.sql(
            "INSERT INTO table_schemas (table_id, version, arrow_schema, changed_at_us, change) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, {now}, $3 FROM table_schemas \
             WHERE table_id = $1",
        ))
        .bind(table_id)
        .bind(bytes)
        .bind(change)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// After the transaction stopped on a batch no longer pending or a failed compare-and-swap:
    /// when the batches were committed meanwhile (a retry that won on another connection or
    /// replica), answer as for a retry; otherwise say why nothing was committed.
    async fn explain_stop(
        &self,
        batch_id: &str,
        prepared: &[PreparedUpdate],
        message: &str,
        conflict: bool,
    ) -> CatalogResult<CommitOutcome> {
        self.sweep_expired_leases().await?;
        let mut batches = Vec::with_capacity(prepared.len());
        for p in prepared {
            batches.push(self.batch(&p.batch.batch_id, false).await?);
        }
        let updates: Vec<PartitionUpdate> = prepared.iter().map(|p| p.update.clone()).collect();
        if let Some(outcome) = self.answer_retry(&updates, &batches, message, true).await? {
            return Ok(outcome);
        }
        let batch = self.batch(batch_id, false).await?;
        if let Some(refusal) = not_committable(&batch) {
            return Err(refusal);
        }
        if conflict && let Some(p) = prepared.iter().find(|p| p.batch.batch_id == batch_id) {
            return Err(self.conflict(p).await);
        }
        Err(CatalogError::Unavailable(format!(
            "batch {batch_id} changed state during the commit; retry the commit"
        )))
    }

    /// The refusal of a failed compare-and-swap, naming the batch that is current now.
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
        let now = match &batch {
            Some(b) => format!("batch {b} (version {version})"),
            None => "no batch".to_owned(),
        };
        CatalogError::Conflict {
            current_batch_id: batch,
            message: format!(
                "conflict on partition {} of {}: it is now at {now}, not at the expected \
                 {expected}; another write committed first. Read the partition again and retry, \
                 or commit without an expected batch to overwrite",
                p.batch.partition.describe(&p.batch.table.keys),
                p.batch.table.qualified()
            ),
        }
    }

    /// Lineage may only name batches that exist, are committed, and that the caller may read
    /// (it would otherwise learn of, and link itself to, batches it cannot see).
    async fn require_committed(
        &self,
        batch_id: &str,
        may_read: NamespaceCheck<'_>,
    ) -> CatalogResult<()> {
        let found = sqlx::query(
            "SELECT b.state, n.name AS namespace FROM batches b \
             JOIN tables t ON t.id = b.table_id JOIN namespaces n ON n.id = t.namespace_id \
             WHERE b.batch_id = $1",
        )
        .bind(batch_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = &found {
            may_read(&row.try_get::<String, _>("namespace")?)?;
        }
        match found {
            Some(row) if row.try_get::<String, _>("state")? == "committed" => Ok(()),
            Some(_) => Err(CatalogError::FailedPrecondition(format!(
                "input batch {batch_id} is not committed; lineage can only name committed batches"
            ))),
            None => Err(CatalogError::not_found(
                Missing::Batch,
                batch_id,
                format!("input batch {batch_id} does not exist"),
            )),
        }
    }
}

/// `BATCHSTORE_FAULT_COMMIT_PAUSE_MS`: how long a commit waits between stamping and
/// committing (debug builds only; the as-of tests widen the window they check with it).
#[cfg(debug_assertions)]
fn fault_pause() -> Option<std::time::Duration> {
    static PAUSE: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("BATCHSTORE_FAULT_COMMIT_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis)
    })
}

/// What a commit reports for one partition.
fn committed_version(
    batch: &BatchRecord,
    version: i64,
    committed_at: Micros,
    rows: i64,
    bytes: i64,
) -> CommittedVersion {
    CommittedVersion {
        batch_id: batch.batch_id.clone(),
        namespace: batch.table.namespace.clone(),
        table: batch.table.name.clone(),
        partition: batch.partition.pairs(&batch.table.keys),
        version,
        committed_at,
        rows,
        bytes,
    }
}

/// Inserts a batch's file list with each file's statistics, many rows per statement.
async fn insert_files(conn: &mut AnyConnection, p: &PreparedUpdate) -> Result<(), TxStop> {
    const COLUMNS: usize = 5;
    let files: Vec<(&DataFile, &str)> = p
        .update
        .files
        .iter()
        .zip(p.stats.iter().map(String::as_str))
        .collect();
    for chunk in files.chunks(200) {
        let values = (0..chunk.len())
            .map(|i| {
                let first = COLUMNS * i + 1;
                format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    first,
                    first + 1,
                    first + 2,
                    first + 3,
                    first + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO batch_files (batch_id, path, size_bytes, rows, stats) VALUES {values}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (file, stats) in chunk {
            query = query
                .bind(&p.batch.batch_id)
                .bind(&file.path)
                .bind(file.size_bytes)
                .bind(file.rows)
                .bind(*stats);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| lost_batch(e, &p.batch.batch_id))?;
    }
    Ok(())
}

/// A foreign-key violation naming the batch means its row is gone: the catalog lost it (a
/// database restarted before the row was durable, see `writes`) although this process still
/// remembers it. The commit stops and says what became of the batch, instead of failing with
/// an internal error.
fn lost_batch(error: sqlx::Error, batch_id: &str) -> TxStop {
    match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            TxStop::BatchNotPending(batch_id.to_owned())
        }
        _ => error.into(),
    }
}

/// The state a batch must have reached for a request naming it to be a retry.
fn is_committed(batch: &BatchRecord) -> bool {
    batch.state == BatchState::Committed
}
