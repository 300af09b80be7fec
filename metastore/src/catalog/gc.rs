//! Garbage collection: exact, two-phase, idempotent and resumable.
//!
//! 1. **Expire** (mark), table by table in transactions: batches beyond the table's retention
//!    that are not current, tagged or leased; aborted batches; pending batches whose write
//!    lease ran out; and every batch of a table dropped longer ago than the grace period. A
//!    table's batches are expired under its commit lock held exclusively (PostgreSQL), which
//!    every pointer move, tag and lease of the table shares: what they pin is either seen here
//!    and kept, or was expired first and they refuse it. An expired batch is never readable
//!    again; its history entries stay, marked expired.
//! 2. **Delete** exactly the files of expired batches (the list recorded at commit; for a
//!    batch never committed, its own batch directory), then record the deletion.
//!
//! A run is a sequence of bounded steps. Its state lives in the catalog (what is expired and
//! not yet deleted) plus a resume token (where the expire phase got to), so a run killed at any
//! point converges when run again. One run at a time across replicas: each step holds the
//! `gc_lock` row for a while.

use super::{Catalog, format_micros};
use crate::error::{CatalogError, CatalogResult};
use crate::model::{GcCounts, GcScope, GcStep, Micros, Retention};
use crate::warehouse::BatchFiles;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use std::time::Duration;

/// Batches expired per statement, and deleted per step.
const CHUNK: i64 = 1000;
/// Tables looked at per step of the expire phase.
const TABLES_PER_STEP: i64 = 200;
/// How long a step holds the GC lock; the next step of the same run renews it.
const LOCK_HOLD: Duration = Duration::from_secs(120);

/// Filters `tables t JOIN namespaces n` to a scope: `$1` namespace, `$2` table ("" = any).
const IN_SCOPE: &str = "($1 = '' OR n.name = $1) AND ($2 = '' OR t.name = $2)";

/// Where a run's expire phase got to: the run's id, the table, and the last batch expired in it.
#[derive(Debug, Clone, Default)]
struct Resume {
    run_id: String,
    table_id: i64,
    after_batch: String,
}

impl Resume {
    fn parse(token: &str) -> CatalogResult<Self> {
        if token.is_empty() {
            return Ok(Resume {
                run_id: uuid::Uuid::now_v7().to_string(),
                ..Resume::default()
            });
        }
        let mut parts = token.splitn(3, ':');
        let (Some(run_id), Some(table_id), Some(after_batch)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_resume());
        };
        if uuid::Uuid::try_parse(run_id).is_err() {
            return Err(bad_resume());
        }
        Ok(Resume {
            run_id: run_id.to_owned(),
            table_id: table_id.parse().map_err(|_| bad_resume())?,
            after_batch: after_batch.to_owned(),
        })
    }

    fn token(&self) -> String {
        format!("{}:{}:{}", self.run_id, self.table_id, self.after_batch)
    }
}

fn bad_resume() -> CatalogError {
    CatalogError::InvalidArgument(
        "the resume token is not one a garbage collection step handed out; start a new run".into(),
    )
}

/// A table the expire phase looks at.
struct GcTable {
    id: i64,
    qualified: String,
    dropped_at: Option<Micros>,
}

/// What one table's expiry found: batch ids, in order.
type Expired = Vec<String>;

impl Catalog {
    /// Runs one bounded step of garbage collection in `scope`; call again with the returned
    /// resume token until it is empty. With `dry_run`, changes nothing and answers for the
    /// whole scope in one call.
    ///
    /// # Errors
    /// `FailedPrecondition` while another run holds the GC lock; `InvalidArgument` for a bad
    /// resume token; `NotFound` for a missing namespace or table; `Unavailable` when storage
    /// cannot be reached (the run resumes where it stopped).
    pub async fn collect_garbage(
        &self,
        scope: &GcScope,
        dry_run: bool,
        resume_token: &str,
    ) -> CatalogResult<GcStep> {
        let (namespace, table) = match scope {
            GcScope::All => ("", ""),
            GcScope::Namespace(ns) => {
                self.namespace_id(ns).await?;
                (ns.as_str(), "")
            }
            GcScope::Table(ns, t) => {
                self.namespace_id(ns).await?;
                (ns.as_str(), t.as_str())
            }
        };
        if dry_run {
            return self.dry_run(namespace, table).await;
        }
        let mut resume = Resume::parse(resume_token)?;
        self.take_gc_lock(&resume.run_id).await?;
        let mut step = GcStep::default();
        // Deletions first: an earlier step (or a killed run) may have expired batches whose
        // files are not gone yet.
        let attempted = self
            .delete_expired(namespace, table, &resume.run_id, &mut step)
            .await?;
        if attempted == 0 {
            self.expire_step(namespace, table, &mut resume, &mut step.counts)
                .await?;
        }
        let (remaining, failed) = self.remaining(namespace, table, &resume.run_id).await?;
        step.remaining = remaining + failed;
        let expire_done = resume.table_id == i64::MAX;
        if expire_done && attempted == 0 && remaining == 0 {
            step.counts.tables_purged = self.finish_purges(namespace, table).await?;
            // Leases that ran out a day ago: nobody can extend them any more.
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM leases WHERE expires_at_us <= {now} - 86400000000 \
                   AND table_id IN (SELECT t.id FROM tables t \
                                    JOIN namespaces n ON n.id = t.namespace_id WHERE {IN_SCOPE})",
                now = self.dialect.now()
            )))
            .bind(namespace)
            .bind(table)
            .execute(&self.pool)
            .await?;
            self.release_gc_lock(&resume.run_id).await?;
        } else {
            step.resume_token = resume.token();
        }
        Ok(step)
    }

    /// Holds the GC lock for this run for a while, or says who holds it.
    async fn take_gc_lock(&self, run_id: &str) -> CatalogResult<()> {
        let taken = sqlx::query(self.sql(
            "UPDATE gc_lock SET holder = $1, expires_at_us = {now} + $2 \
             WHERE id = 1 AND (holder = $1 OR holder = '' OR expires_at_us <= {now})",
        ))
        .bind(run_id)
        .bind(LOCK_HOLD.as_micros() as i64)
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(());
        }
        let row = sqlx::query("SELECT holder, expires_at_us FROM gc_lock WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Err(CatalogError::FailedPrecondition(format!(
            "another garbage collection run is in progress; only one runs at a time. Wait for \
             it to finish (its hold lapses at {} if it stopped)",
            format_micros(row.try_get("expires_at_us")?)
        )))
    }

    async fn release_gc_lock(&self, run_id: &str) -> CatalogResult<()> {
        sqlx::query(
            "UPDATE gc_lock SET holder = '', expires_at_us = 0 WHERE id = 1 AND holder = $1",
        )
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes the files of up to [`CHUNK`] expired batches and records it; a batch whose
    /// files cannot be deleted is recorded as failed in this run (the run goes on without it; a
    /// later run tries again). Returns how many batches were tried.
    async fn delete_expired(
        &self,
        namespace: &str,
        table: &str,
        run_id: &str,
        step: &mut GcStep,
    ) -> CatalogResult<i64> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT b.batch_id, b.location, b.version \
             FROM batches b JOIN tables t ON t.id = b.table_id \
                  JOIN namespaces n ON n.id = t.namespace_id \
             WHERE b.expired_at_us IS NOT NULL AND b.deleted_at_us IS NULL AND {IN_SCOPE} \
               AND (b.gc_error_run IS NULL OR b.gc_error_run <> $4) \
             ORDER BY b.batch_id LIMIT $3"
        )))
        .bind(namespace)
        .bind(table)
        .bind(CHUNK)
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("batch_id"))
            .collect::<Result<_, _>>()?;
        let mut recorded = self.files_of(&ids).await?;
        let mut batches = Vec::with_capacity(rows.len());
        for row in &rows {
            let batch_id: String = row.try_get("batch_id")?;
            let committed = row.try_get::<Option<i64>, _>("version")?.is_some();
            batches.push(BatchFiles {
                location: row.try_get("location")?,
                // A committed batch: exactly its recorded files. Never committed: whatever
                // its own directory holds.
                files: committed.then(|| recorded.remove(&batch_id).unwrap_or_default()),
            });
        }
        let outcomes = self.warehouse.delete_batches(batches).await;
        let mut deleted = Vec::new();
        for (id, outcome) in ids.iter().zip(outcomes) {
            match outcome {
                Ok(freed) => {
                    step.counts.files_deleted += freed.files;
                    step.counts.bytes_deleted += freed.bytes;
                    deleted.push(id.clone());
                }
                Err(CatalogError::Unavailable(message)) => {
                    // Storage is down: stop here; the run resumes where it stopped.
                    self.record_deleted(&deleted).await?;
                    return Err(CatalogError::Unavailable(message));
                }
                Err(error) => {
                    let error = format!("batch {id}: {error}");
                    tracing::warn!(%error, "garbage collection could not delete a batch");
                    sqlx::query(
                        "UPDATE batches SET gc_error = $1, gc_error_run = $2 WHERE batch_id = $3",
                    )
                    .bind(&error)
                    .bind(run_id)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                    step.counts.batches_failed += 1;
                    if step.errors.len() < 10 {
                        step.errors.push(error);
                    }
                }
            }
        }
        self.record_deleted(&deleted).await?;
        step.counts.batches_deleted += deleted.len() as i64;
        Ok(ids.len() as i64)
    }

    /// Records that these batches' files are gone.
    async fn record_deleted(&self, ids: &[String]) -> CatalogResult<()> {
        for chunk in ids.chunks(500) {
            let placeholders = super::placeholders(1, chunk.len());
            let mut update = sqlx::query(AssertSqlSafe(format!(
                "UPDATE batches SET deleted_at_us = {}, gc_error = NULL, gc_error_run = NULL \
                 WHERE batch_id IN ({placeholders})",
                self.dialect.now()
            )));
            for id in chunk {
                update = update.bind(id);
            }
            update.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Expires batches table by table from where the run got to, until a chunk's worth is
    /// expired or [`TABLES_PER_STEP`] tables were looked at. Sets `resume.table_id` to
    /// `i64::MAX` once every table in scope was looked at.
    async fn expire_step(
        &self,
        namespace: &str,
        table: &str,
        resume: &mut Resume,
        counts: &mut GcCounts,
    ) -> CatalogResult<()> {
        let tables = self
            .gc_tables(namespace, table, resume.table_id, TABLES_PER_STEP)
            .await?;
        let last_page = (tables.len() as i64) < TABLES_PER_STEP;
        for t in &tables {
            if t.id != resume.table_id {
                resume.table_id = t.id;
                resume.after_batch.clear();
            }
            let expired = self
                .expire_in_table(t, &resume.after_batch, false, true)
                .await?;
            counts.batches_expired += expired.len() as i64;
            if expired.len() as i64 >= CHUNK {
                // More may follow in this table: go on after the last one, next step.
                resume.after_batch = expired.last().cloned().unwrap_or_default();
                return Ok(());
            }
            // This table is done; the next step starts after it.
            resume.after_batch = "~".to_owned();
            if counts.batches_expired >= CHUNK {
                return Ok(());
            }
        }
        if last_page {
            resume.table_id = i64::MAX;
        }
        Ok(())
    }

    /// Tables in scope after `after` (by id, `after` itself included while its batches are
    /// not all looked at), that GC may have work in: not yet purged.
    async fn gc_tables(
        &self,
        namespace: &str,
        table: &str,
        after: i64,
        limit: i64,
    ) -> CatalogResult<Vec<GcTable>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT t.id, n.name AS namespace, t.name, t.dropped_at_us \
             FROM tables t JOIN namespaces n ON n.id = t.namespace_id \
             WHERE t.purged_at_us IS NULL AND t.id >= $3 AND {IN_SCOPE} \
             ORDER BY t.id LIMIT $4"
        )))
        .bind(namespace)
        .bind(table)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(gc_table).collect()
    }

    /// Expires (or with `count_only`, finds) up to [`CHUNK`] batches of one table after batch
    /// id `after` ("~" = the table is done), in one transaction under the table's exclusive
    /// commit lock.
    async fn expire_in_table(
        &self,
        t: &GcTable,
        after: &str,
        count_only: bool,
        committed: bool,
    ) -> CatalogResult<Expired> {
        if after == "~" {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        // A dry run only reads: it holds up no commit.
        if !count_only {
            self.exclusive_commit_lock(&mut tx, t.id).await?;
        }
        let grace = self.settings.drop_grace.as_micros() as i64;
        // A dropped table past its grace period is purged: once this is set (under the table's
        // row lock, re-checked after any concurrent undrop), it can no longer be undropped.
        if t.dropped_at.is_some() && !count_only {
            sqlx::query(self.sql(
                "UPDATE tables SET purge_started_at_us = {now} \
                 WHERE id = $1 AND dropped_at_us IS NOT NULL AND dropped_at_us <= {now} - $2 \
                   AND purge_started_at_us IS NULL",
            ))
            .bind(t.id)
            .bind(grace)
            .execute(&mut *tx)
            .await?;
        }
        // The table's state and retention now, under the lock (not as listed before it).
        let state = sqlx::query(self.sql(
            "SELECT t.dropped_at_us, t.purge_started_at_us, \
                    CASE WHEN t.dropped_at_us IS NOT NULL AND t.dropped_at_us <= {now} - $2 \
                         THEN 1 ELSE 0 END AS past_grace, \
                    t.keep_versions, t.keep_for_us, n.keep_versions AS ns_keep_versions, \
                    n.keep_for_us AS ns_keep_for_us \
             FROM tables t JOIN namespaces n ON n.id = t.namespace_id WHERE t.id = $1",
        ))
        .bind(t.id)
        .bind(grace)
        .fetch_one(&mut *tx)
        .await?;
        let retention = effective_retention(&state)?;
        let dropped_at: Option<Micros> = state.try_get("dropped_at_us")?;
        let purging = state
            .try_get::<Option<i64>, _>("purge_started_at_us")?
            .is_some()
            || (count_only && state.try_get::<i32, _>("past_grace")? == 1);
        let (candidates, reason, binds) = if purging {
            (
                PURGE_CANDIDATES,
                format!(
                    "table {} was dropped at {}",
                    t.qualified,
                    format_micros(dropped_at.unwrap_or_default())
                ),
                (0, 0),
            )
        } else if dropped_at.is_some() {
            // Dropped, within its grace period: kept exactly as it was, for undrop.
            tx.rollback().await?;
            return Ok(Vec::new());
        } else if committed && retention.is_set() {
            (
                RETENTION_CANDIDATES,
                format!(
                    "beyond the retention of {}: {}",
                    t.qualified,
                    retention.describe()
                ),
                (
                    retention.keep_versions.unwrap_or(0),
                    retention.keep_for.unwrap_or(0),
                ),
            )
        } else {
            (
                UNCOMMITTED_CANDIDATES,
                "never committed: aborted, or its write lease ran out".to_owned(),
                (0, 0),
            )
        };
        let select = candidates
            .replace("{pinned}", PINNED)
            .replace("{now}", self.dialect.now());
        let sql = if count_only {
            format!("{select} ORDER BY b.batch_id LIMIT $5")
        } else {
            format!(
                "UPDATE batches SET expired_at_us = {now}, expired_reason = $6, \
                        state = CASE WHEN state = 'pending' THEN 'abandoned' ELSE state END \
                 WHERE batch_id IN ({select} ORDER BY b.batch_id LIMIT $5) RETURNING batch_id",
                now = self.dialect.now()
            )
        };
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(t.id)
            .bind(after)
            .bind(binds.0)
            .bind(binds.1)
            .bind(CHUNK);
        if !count_only {
            query = query.bind(&reason);
        }
        let rows = query.fetch_all(&mut *tx).await?;
        let mut expired: Expired = rows
            .iter()
            .map(|r| r.try_get("batch_id"))
            .collect::<Result<_, _>>()?;
        expired.sort_unstable();
        // A table with retention also sheds what was never committed, after its old versions.
        if expired.len() < CHUNK as usize && !purging && committed && retention.is_set() {
            tx.commit().await?;
            let more = Box::pin(self.expire_in_table(t, "", count_only, false)).await?;
            expired.extend(more);
            return Ok(expired);
        }
        if count_only {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(expired)
    }

    /// Batches expired and not yet deleted in scope: `(to try, failed in this run)`.
    async fn remaining(
        &self,
        namespace: &str,
        table: &str,
        run_id: &str,
    ) -> CatalogResult<(i64, i64)> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n, \
                    COALESCE(SUM(CASE WHEN b.gc_error_run = $3 THEN 1 ELSE 0 END), 0) AS failed \
             FROM batches b JOIN tables t ON t.id = b.table_id \
                  JOIN namespaces n ON n.id = t.namespace_id \
             WHERE b.expired_at_us IS NOT NULL AND b.deleted_at_us IS NULL AND {IN_SCOPE}"
        )))
        .bind(namespace)
        .bind(table)
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        let all: i64 = row.try_get("n")?;
        let failed: i64 = row.try_get::<i64, _>("failed")?;
        Ok((all - failed, failed))
    }

    /// Records as purged every dropped table in scope whose batches are all deleted.
    async fn finish_purges(&self, namespace: &str, table: &str) -> CatalogResult<i64> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE tables SET purged_at_us = {} \
             WHERE purge_started_at_us IS NOT NULL AND purged_at_us IS NULL \
               AND id IN (SELECT t.id FROM tables t JOIN namespaces n ON n.id = t.namespace_id \
                          WHERE {IN_SCOPE}) \
               AND NOT EXISTS (SELECT 1 FROM batches b \
                               WHERE b.table_id = tables.id AND b.deleted_at_us IS NULL)",
            self.dialect.now()
        )))
        .bind(namespace)
        .bind(table)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() as i64)
    }

    /// What a run would do now in scope, changing nothing.
    async fn dry_run(&self, namespace: &str, table: &str) -> CatalogResult<GcStep> {
        let mut step = GcStep::default();
        let mut after_table = 0;
        loop {
            let tables = self
                .gc_tables(namespace, table, after_table, TABLES_PER_STEP)
                .await?;
            for t in &tables {
                let mut after = String::new();
                loop {
                    let found = self.expire_in_table(t, &after, true, true).await?;
                    step.counts.batches_expired += found.len() as i64;
                    self.add_sizes(&found, &mut step.counts).await?;
                    if (found.len() as i64) < CHUNK {
                        break;
                    }
                    after = found.last().cloned().unwrap_or_default();
                }
                if t.dropped_at.is_some() && self.would_purge(t).await? {
                    step.counts.tables_purged += 1;
                }
            }
            match tables.last() {
                Some(last) if tables.len() as i64 == TABLES_PER_STEP => after_table = last.id + 1,
                _ => break,
            }
        }
        // Expired earlier, files not yet deleted: a run deletes these too.
        let pending = sqlx::query(AssertSqlSafe(format!(
            "SELECT b.batch_id FROM batches b JOIN tables t ON t.id = b.table_id \
                  JOIN namespaces n ON n.id = t.namespace_id \
             WHERE b.expired_at_us IS NOT NULL AND b.deleted_at_us IS NULL AND {IN_SCOPE}"
        )))
        .bind(namespace)
        .bind(table)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("batch_id"))
        .collect::<Result<Vec<String>, _>>()?;
        self.add_sizes(&pending, &mut step.counts).await?;
        step.remaining = pending.len() as i64;
        step.counts.batches_deleted = step.counts.batches_expired + step.remaining;
        Ok(step)
    }

    /// Adds the recorded files and bytes of batches to a dry run's counts.
    async fn add_sizes(&self, batch_ids: &[String], counts: &mut GcCounts) -> CatalogResult<()> {
        for chunk in batch_ids.chunks(500) {
            let placeholders = super::placeholders(1, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT COUNT(*) AS files, CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) AS bytes \
                 FROM batch_files WHERE batch_id IN ({placeholders})"
            )));
            for id in chunk {
                query = query.bind(id);
            }
            let row = query.fetch_one(&self.pool).await?;
            counts.files_deleted += row.try_get::<i64, _>("files")?;
            counts.bytes_deleted += row.try_get::<i64, _>("bytes")?;
        }
        Ok(())
    }

    /// Whether a dropped table is past its grace period.
    async fn would_purge(&self, t: &GcTable) -> CatalogResult<bool> {
        let row =
            sqlx::query(self.sql(
                "SELECT COUNT(*) AS n FROM tables WHERE id = $1 AND dropped_at_us <= {now} - $2",
            ))
            .bind(t.id)
            .bind(self.settings.drop_grace.as_micros() as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }
}

/// The retention a row of `tables t JOIN namespaces n` says GC applies.
fn effective_retention(row: &AnyRow) -> CatalogResult<Retention> {
    let own = Retention {
        keep_versions: row.try_get("keep_versions")?,
        keep_for: row.try_get("keep_for_us")?,
    };
    Ok(if own.is_set() {
        own
    } else {
        Retention {
            keep_versions: row.try_get("ns_keep_versions")?,
            keep_for: row.try_get("ns_keep_for_us")?,
        }
    })
}

fn gc_table(row: &AnyRow) -> CatalogResult<GcTable> {
    Ok(GcTable {
        id: row.try_get("id")?,
        qualified: format!(
            "{}.{}",
            row.try_get::<String, _>("namespace")?,
            row.try_get::<String, _>("name")?
        ),
        dropped_at: row.try_get("dropped_at_us")?,
    })
}

/// Batches of a live table (`$1`, after `$2`) that were never committed and never can be:
/// aborted, abandoned, or pending with a write lease that ran out. (`$3`, `$4` unused.)
const UNCOMMITTED_CANDIDATES: &str = "SELECT b.batch_id FROM batches b \
     WHERE b.table_id = $1 AND b.batch_id > $2 AND b.expired_at_us IS NULL AND $3 = $4 \
       AND (b.state IN ('aborted', 'abandoned') \
            OR (b.state = 'pending' AND b.lease_expires_at_us <= {now}))";

/// Committed batches of table `$1` (after `$2`) beyond its retention: not current, not
/// tagged, not leased, and every history entry naming the batch is older than the last `$3`
/// versions (0: no count rule) and stopped being current more than `$4` µs ago (0: no time
/// rule). A version stops being current when the next version is committed.
const RETENTION_CANDIDATES: &str = "SELECT b.batch_id FROM batches b JOIN partitions p ON p.id = b.partition_id \
     WHERE b.table_id = $1 AND b.batch_id > $2 AND b.state = 'committed' \
       AND b.expired_at_us IS NULL \
       AND (p.current_batch_id IS NULL OR p.current_batch_id <> b.batch_id) \
       AND NOT EXISTS (SELECT 1 FROM tags g WHERE g.batch_id = b.batch_id) \
       AND {pinned} \
       AND NOT EXISTS (SELECT 1 FROM history h WHERE h.batch_id = b.batch_id AND ( \
             h.version > p.current_version - $3 \
             OR COALESCE((SELECT h2.committed_at_us FROM history h2 \
                          WHERE h2.partition_id = h.partition_id AND h2.version = h.version + 1), \
                         {now}) > {now} - $4))";

/// Every batch of a table being purged (`$1`, after `$2`) that no lease pins.
const PURGE_CANDIDATES: &str = "SELECT b.batch_id FROM batches b \
     WHERE b.table_id = $1 AND b.batch_id > $2 AND b.expired_at_us IS NULL AND $3 = $4 \
       AND {pinned}";

/// No live lease pins batch `b`: neither by name (its rows in `lease_batches`) nor by moment
/// (a paged read's lease pins every batch current at its `as_of_us`).
const PINNED: &str = "NOT EXISTS (SELECT 1 FROM lease_batches lb JOIN leases l ON l.lease_id = lb.lease_id \
                     WHERE lb.batch_id = b.batch_id AND l.expires_at_us > {now}) \
     AND NOT EXISTS (SELECT 1 FROM leases l JOIN history h ON h.batch_id = b.batch_id \
                     WHERE l.table_id = b.table_id AND l.as_of_us IS NOT NULL \
                       AND l.expires_at_us > {now} AND h.committed_at_us <= l.as_of_us \
                       AND COALESCE((SELECT h2.committed_at_us FROM history h2 \
                                     WHERE h2.partition_id = h.partition_id \
                                       AND h2.version = h.version + 1), \
                                    9223372036854775807) > l.as_of_us)";
