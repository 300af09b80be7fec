//! Moving a partition's pointer, and the one timestamp of each commit that as-of reads trust.
//!
//! Commits and rollbacks move pointers only through [`Catalog::stamp_partitions`] and
//! [`Catalog::move_pointer`], inside their transaction. The invariants kept here:
//! - a pointer moves by compare-and-swap and increments the partition's version (no gaps);
//! - every partition of one commit gets the same `committed_at`, taken after the partitions'
//!   rows are locked, and later than each partition's previous stamp (time never runs
//!   backwards within a partition);
//! - an as-of read is repeatable: a commit never becomes visible with a stamp at or before an
//!   as-of time that was already answered without it. On PostgreSQL each commit holds a shared
//!   advisory lock per table it writes (taken in table order) from before its stamp until it
//!   ends, and [`Catalog::as_of_horizon`] takes its table's lock exclusively for a moment:
//!   commits in flight on that table finish first, and commits that start later stamp after
//!   the read. Commits to other tables are not held up. SQLite writes on one connection, and
//!   the horizon is read on it, so nothing is in flight when it answers (the read itself may
//!   then run on a read-only connection, which sees every committed transaction). An as-of
//!   time is answered only once the catalog clock has passed it (waiting briefly for one just
//!   ahead), since a later commit could still be stamped at it. Once a table's horizon was
//!   read at `now`, every as-of time before `now` stays settled for good, so [`Horizons`]
//!   remembers it and later reads of those times skip the database.

use super::{Catalog, Dialect};
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::model::{ExpectedCurrent, Micros};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Tables whose settled horizon is remembered; past it the memory starts afresh.
const HORIZONS_KEPT: usize = 100_000;

/// Per table, the catalog time before which every commit is visible (see the module doc).
#[derive(Debug, Default)]
pub(super) struct Horizons(Mutex<HashMap<i64, Micros>>);

impl Horizons {
    fn settled(&self, table_id: i64, as_of: Micros) -> bool {
        self.0
            .lock()
            .is_ok_and(|known| known.get(&table_id).is_some_and(|&at| as_of < at))
    }

    fn record(&self, table_id: i64, at: Micros) {
        if let Ok(mut known) = self.0.lock() {
            if known.len() >= HORIZONS_KEPT {
                known.clear();
            }
            let entry = known.entry(table_id).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
}

/// The advisory lock of a table that every pointer move in it shares and an as-of read of it
/// takes alone (PostgreSQL): "bs" in the high bits, the table id in the low 32 (two tables
/// whose ids share their low 32 bits only wait for each other more than they need to).
fn commit_lock(table_id: i64) -> i64 {
    (0x6273_i64 << 32) | (table_id & 0xffff_ffff)
}

/// How far in the future an as-of time may be and still be answered (after waiting for it).
const AS_OF_WAIT_LIMIT: Duration = Duration::from_secs(2);

/// The new version and stamp a pointer update returned (see [`Catalog::pointer_update`]).
pub(super) fn moved(row: &sqlx::any::AnyRow) -> CatalogResult<(i64, Micros)> {
    Ok((
        row.try_get("current_version")?,
        row.try_get("updated_at_us")?,
    ))
}

/// A pointer move: which partition, to which batch, under which expectation.
pub(super) struct PointerMove<'a> {
    pub partition_id: i64,
    pub batch_id: &'a str,
    /// The batch's location, kept on the partition row so that reading the current version
    /// needs that row only.
    pub location: &'a str,
    pub rows: i64,
    pub bytes: i64,
    pub expected: Option<&'a ExpectedCurrent>,
}

/// What a history entry says beside its pointer move.
pub(super) struct HistoryEntry<'a> {
    /// `write` or `rollback`.
    pub operation: &'a str,
    pub actor: &'a str,
    pub message: &'a str,
    /// A rollback's request id (`RollbackRequest.request_id`), unique per partition.
    pub request_id: Option<&'a str>,
}

impl Catalog {
    /// Locks the partitions a transaction will move (in id order, so concurrent commits cannot
    /// deadlock) and returns the commit's one timestamp. Fails with `NotFound` when a
    /// partition's table was dropped. Call it before any pointer moves in the transaction.
    pub(super) async fn stamp_partitions(
        &self,
        conn: &mut AnyConnection,
        table_ids: &[i64],
        partition_ids: &[i64],
    ) -> CatalogResult<Micros> {
        self.share_commit_locks(conn, table_ids).await?;
        let mut ids = partition_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let placeholders = super::placeholders(1, ids.len());
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE OF p",
            Dialect::Sqlite => "",
        };
        // The clock may be read before a lock wait; the floor, read from the locked rows, keeps
        // the stamp after every earlier stamp of these partitions either way.
        let now = self.dialect.now();
        let sql = format!(
            "SELECT p.updated_at_us, {now} AS now_us FROM partitions p JOIN tables t ON t.id = p.table_id \
             WHERE p.id IN ({placeholders}) AND t.dropped_at_us IS NULL ORDER BY p.id{lock}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in &ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut *conn).await?;
        if rows.len() != ids.len() {
            let table = self.dropped_table_name(&mut *conn, table_ids).await?;
            return Err(CatalogError::not_found(
                Missing::Table,
                table.clone(),
                format!(
                    "table {table} was dropped while this change was being made; nothing was \
                     changed"
                ),
            ));
        }
        let mut stamp = Micros::MIN;
        for row in &rows {
            stamp = stamp
                .max(row.try_get::<i64, _>("updated_at_us")?.saturating_add(1))
                .max(row.try_get::<i64, _>("now_us")?);
        }
        Ok(stamp)
    }

    /// The `ns.table` name of a dropped table among `table_ids`.
    async fn dropped_table_name(
        &self,
        conn: &mut AnyConnection,
        table_ids: &[i64],
    ) -> CatalogResult<String> {
        let sql = format!(
            "SELECT n.name AS namespace, t.name FROM tables t \
             JOIN namespaces n ON n.id = t.namespace_id \
             WHERE t.id IN ({}) AND t.dropped_at_us IS NOT NULL ORDER BY t.id LIMIT 1",
            super::placeholders(1, table_ids.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in table_ids {
            query = query.bind(*id);
        }
        Ok(match query.fetch_optional(&mut *conn).await? {
            Some(row) => format!(
                "{}.{}",
                row.try_get::<String, _>("namespace")?,
                row.try_get::<String, _>("name")?
            ),
            None => "(a table of this change)".to_owned(),
        })
    }

    /// Takes the commit locks of `table_ids` in shared mode, in table order, until the
    /// transaction ends (PostgreSQL; a no-op on SQLite). Every transaction that moves pointers
    /// takes them before it stamps anything.
    pub(super) async fn share_commit_locks(
        &self,
        conn: &mut AnyConnection,
        table_ids: &[i64],
    ) -> CatalogResult<()> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        let mut keys: Vec<i64> = table_ids.iter().map(|&t| commit_lock(t)).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
                .bind(key)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Takes a table's commit lock exclusively until the transaction ends (PostgreSQL; a no-op
    /// on SQLite): pointer moves, tags and leases on the table in flight finish first, and
    /// those that start later wait. Garbage collection expires a table's batches under it.
    pub(super) async fn exclusive_commit_lock(
        &self,
        conn: &mut AnyConnection,
        table_id: i64,
    ) -> CatalogResult<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(commit_lock(table_id))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Moves a partition's pointer to `batch_id` as its next version, stamped `stamp` (from
    /// [`Self::stamp_partitions`]) or, for a transaction that moves only this partition and
    /// holds the shared commit lock, with a stamp the update itself takes once it holds the
    /// row: the clock, and later than the partition's previous stamp. With an expectation,
    /// only if the current batch still matches (compare-and-swap). Returns the new version and
    /// its stamp; `None` when the expectation failed or the table was dropped.
    pub(super) async fn move_pointer(
        &self,
        conn: &mut AnyConnection,
        change: &PointerMove<'_>,
        stamp: Option<Micros>,
    ) -> CatalogResult<Option<(i64, Micros)>> {
        let row = self
            .pointer_update(change, stamp, |_| String::new())
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(moved).transpose()
    }

    /// The statement of [`Self::move_pointer`], its parameters bound, followed by the
    /// statements `then` gives for the first parameter number free after it (empty for none;
    /// SQLite sends statements together in one round trip). A statement right after the
    /// update sees whether it moved the pointer by `changes() = 1`; the partition pointing at
    /// `$1` alone does not say so, since a racing commit of the same batch may have made it
    /// current already.
    pub(super) fn pointer_update<'q>(
        &self,
        change: &PointerMove<'q>,
        stamp: Option<Micros>,
        then: impl FnOnce(usize) -> String,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        // Parameters $1..$5 always; then the stamp and the expected batch when given.
        let mut next = 6;
        let mut parameter = || {
            next += 1;
            format!("${}", next - 1)
        };
        let stamped = match stamp {
            Some(_) => parameter(),
            None => format!(
                "{}({}, updated_at_us + 1)",
                self.dialect.max(),
                self.dialect.now()
            ),
        };
        let guard = match change.expected {
            None => String::new(),
            Some(ExpectedCurrent::Nothing) => " AND current_batch_id IS NULL".to_owned(),
            Some(ExpectedCurrent::Batch(_)) => format!(" AND current_batch_id = {}", parameter()),
        };
        let then = match then(next) {
            more if more.is_empty() => more,
            more => format!("; {more}"),
        };
        let sql = format!(
            "UPDATE partitions SET current_batch_id = $1, current_version = current_version + 1, \
                    rows = $2, bytes = $3, current_location = $5, updated_at_us = {stamped} \
             WHERE id = $4{guard} AND EXISTS (SELECT 1 FROM tables t \
                   WHERE t.id = partitions.table_id AND t.dropped_at_us IS NULL) \
             RETURNING current_version, updated_at_us{then}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(change.batch_id)
            .bind(change.rows)
            .bind(change.bytes)
            .bind(change.partition_id)
            .bind(change.location);
        if let Some(stamp) = stamp {
            query = query.bind(stamp);
        }
        if let Some(ExpectedCurrent::Batch(expected)) = change.expected {
            query = query.bind(expected.as_str());
        }
        query
    }

    /// Appends the history entry of a pointer move.
    pub(super) async fn append_history(
        &self,
        conn: &mut AnyConnection,
        change: &PointerMove<'_>,
        version: i64,
        stamp: Micros,
        entry: &HistoryEntry<'_>,
    ) -> CatalogResult<()> {
        sqlx::query(
            "INSERT INTO history (partition_id, version, batch_id, operation, actor, message, \
                                  committed_at_us, rows, bytes, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(change.partition_id)
        .bind(version)
        .bind(change.batch_id)
        .bind(entry.operation)
        .bind(entry.actor)
        .bind(entry.message)
        .bind(stamp)
        .bind(change.rows)
        .bind(change.bytes)
        .bind(entry.request_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Makes an as-of read at `as_of` repeatable: returns once every commit that could ever be
    /// stamped at or before `as_of` is visible. Waits for an as-of time up to
    /// [`AS_OF_WAIT_LIMIT`] ahead of the catalog clock.
    ///
    /// # Errors
    /// `InvalidArgument` for an as-of time further in the future.
    pub(super) async fn as_of_horizon(&self, table_id: i64, as_of: Micros) -> CatalogResult<()> {
        if self.horizons.settled(table_id, as_of) {
            return Ok(());
        }
        loop {
            let now: i64 = match self.dialect {
                Dialect::Postgres => sqlx::query(self.sql(
                    "SELECT {now} AS now_us FROM (SELECT pg_advisory_xact_lock($1)) AS settled",
                ))
                .bind(commit_lock(table_id))
                .fetch_one(&self.pool)
                .await?
                .try_get("now_us")?,
                Dialect::Sqlite => sqlx::query(self.sql("SELECT {now} AS now_us"))
                    .fetch_one(&self.pool)
                    .await?
                    .try_get("now_us")?,
            };
            // Strictly before: a commit later in the clock's current tick could still be
            // stamped at `now` itself.
            if as_of < now {
                self.horizons.record(table_id, now);
                return Ok(());
            }
            let ahead = Duration::from_micros(as_of.saturating_sub(now).unsigned_abs());
            if ahead > AS_OF_WAIT_LIMIT {
                return Err(CatalogError::InvalidArgument(format!(
                    "the as-of time {} is in the future (the catalog's clock reads {}); a read \
                     as of a time that has not passed yet could change later, so name a past time",
                    super::format_micros(as_of),
                    super::format_micros(now)
                )));
            }
            tokio::time::sleep(ahead.max(Duration::from_millis(1))).await;
        }
    }
}
