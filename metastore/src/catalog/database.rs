//! The database under the catalog: which dialect a URL names, the SQL that differs between
//! SQLite and PostgreSQL, the connection pool with each dialect's settings, and migrations.

use crate::error::{CatalogError, CatalogResult};
use crate::names::quote_for_message;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Connection, Executor, SqlStr};
use std::borrow::Cow;
use std::time::Duration;

/// The two supported databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Picks the dialect from a database URL.
    ///
    /// # Errors
    /// `InvalidArgument` for any other scheme.
    pub fn from_url(url: &str) -> CatalogResult<Self> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(CatalogError::InvalidArgument(format!(
                "unsupported database URL {}; use sqlite://FILE or postgres://USER@HOST/DB",
                quote_for_message(url)
            )))
        }
    }

    /// The catalog clock in microseconds, as an SQL expression.
    pub(super) fn now(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        }
    }

    /// The clause that share-locks the rows a `SELECT` reads (PostgreSQL; SQLite runs one
    /// writer at a time, so it needs none).
    pub(super) fn lock_for_share(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        }
    }

    /// The clause that write-locks the rows a `SELECT` reads (PostgreSQL only, as above).
    pub(super) fn lock_for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// A batch's recorded files as one JSON text `[[path, size_bytes, rows], ...]`, as a
    /// scalar subquery on the batch id column `batch_id` (so a resolution reads them with its
    /// partitions, in one statement).
    pub(super) fn files_json(self, batch_id: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "(SELECT json_group_array(json_array(f.path, f.size_bytes, f.rows)) \
                  FROM batch_files f WHERE f.batch_id = {batch_id})"
            ),
            Dialect::Postgres => format!(
                "(SELECT COALESCE(json_agg(json_build_array(f.path, f.size_bytes, f.rows)), \
                  '[]')::text FROM batch_files f WHERE f.batch_id = {batch_id})"
            ),
        }
    }

    /// The two-argument maximum function.
    pub(super) fn max(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    /// The embedded migrations of this dialect: `(version, description, sql)`.
    fn migrations(self) -> &'static [(i64, &'static str, &'static str)] {
        match self {
            Dialect::Sqlite => &[
                (
                    1,
                    "catalog",
                    include_str!("../../../migrations/sqlite/0001_catalog.sql"),
                ),
                (
                    2,
                    "history as-of index",
                    include_str!("../../../migrations/sqlite/0002_history_as_of.sql"),
                ),
                (
                    3,
                    "file statistics",
                    include_str!("../../../migrations/sqlite/0003_file_stats.sql"),
                ),
                (
                    4,
                    "pending batches by table",
                    include_str!("../../../migrations/sqlite/0004_pending_by_table.sql"),
                ),
                (
                    5,
                    "access: grants, batch owners, per-call audit",
                    include_str!("../../../migrations/sqlite/0005_access.sql"),
                ),
                (
                    6,
                    "lifecycle: retention, leases, garbage collection",
                    include_str!("../../../migrations/sqlite/0006_lifecycle.sql"),
                ),
                (
                    7,
                    "rollback request ids, pending batches by principal",
                    include_str!("../../../migrations/sqlite/0007_requests_and_owners.sql"),
                ),
                (
                    8,
                    "current batch locations on partitions",
                    include_str!("../../../migrations/sqlite/0008_current_location.sql"),
                ),
            ],
            Dialect::Postgres => &[
                (
                    1,
                    "catalog",
                    include_str!("../../../migrations/postgres/0001_catalog.sql"),
                ),
                (
                    2,
                    "commit function",
                    include_str!("../../../migrations/postgres/0002_commit_function.sql"),
                ),
                (
                    3,
                    "one commit implementation",
                    include_str!("../../../migrations/postgres/0003_drop_commit_function.sql"),
                ),
                (
                    4,
                    "history as-of index",
                    include_str!("../../../migrations/postgres/0004_history_as_of.sql"),
                ),
                (
                    5,
                    "file statistics",
                    include_str!("../../../migrations/postgres/0005_file_stats.sql"),
                ),
                (
                    6,
                    "pending batches by table",
                    include_str!("../../../migrations/postgres/0006_pending_by_table.sql"),
                ),
                (
                    7,
                    "access: grants, batch owners, per-call audit",
                    include_str!("../../../migrations/postgres/0007_access.sql"),
                ),
                (
                    8,
                    "lifecycle: retention, leases, garbage collection",
                    include_str!("../../../migrations/postgres/0008_lifecycle.sql"),
                ),
                (
                    9,
                    "rollback request ids, pending batches by principal",
                    include_str!("../../../migrations/postgres/0009_requests_and_owners.sql"),
                ),
                (
                    10,
                    "current batch locations on partitions",
                    include_str!("../../../migrations/postgres/0010_current_location.sql"),
                ),
            ],
        }
    }
}

/// A connection idle for longer than this is pinged before use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Pool settings both pools share. sqlx pings every connection as it is returned to the pool;
/// pinging it again when it is taken (sqlx's default) costs a round trip per statement, on
/// the hot path. A connection returned less than [`PING_IF_IDLE_FOR`] ago is taken as it is;
/// one idle for longer (a database restart may have cut it) is pinged and replaced if dead.
fn pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Opens a pool on `database_url` with the settings each dialect needs.
pub(super) async fn connect_pool(
    database_url: &str,
    max_connections: u32,
) -> CatalogResult<(AnyPool, Dialect)> {
    let dialect = Dialect::from_url(database_url)?;
    sqlx::any::install_default_drivers();
    let options = pool_options();
    let pool = match dialect {
        // SQLite allows one writer at a time; one connection serialises commits without
        // SQLITE_BUSY and costs nothing for reads of a local file.
        Dialect::Sqlite => options.max_connections(1).after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        }),
        Dialect::Postgres => options.max_connections(max_connections),
    }
    .connect(database_url)
    .await
    .map_err(|e| {
        CatalogError::Unavailable(format!(
            "cannot open the catalog database {}: {e}",
            redact_url(database_url)
        ))
    })?;
    Ok((pool, dialect))
}

/// Read-only SQLite connections beside the one writer.
const SQLITE_READERS: u32 = 4;

/// The pool the hot read path (resolving partitions) runs on. On SQLite a read must not queue
/// behind the one writer connection (a commit, the audit log's batched insert): in WAL mode
/// readers see every committed transaction without waiting for the writer, so reads get
/// connections of their own, opened read-only. PostgreSQL (and an in-memory SQLite database,
/// which exists only on its own connection) reads on the writer's pool.
///
/// What must be ordered after every commit in flight (the as-of horizon) stays on the writer.
pub(super) async fn connect_readers(
    database_url: &str,
    dialect: Dialect,
    writer: &AnyPool,
) -> CatalogResult<AnyPool> {
    if dialect == Dialect::Postgres
        || database_url.contains(":memory:")
        || database_url.contains("mode=memory")
    {
        return Ok(writer.clone());
    }
    pool_options()
        .max_connections(SQLITE_READERS)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA query_only = ON").await?;
                Ok(())
            })
        })
        .connect(database_url)
        .await
        .map_err(|e| {
            CatalogError::Unavailable(format!(
                "cannot open the catalog database {} for reading: {e}",
                redact_url(database_url)
            ))
        })
}

/// Applies the embedded migrations for the dialect (idempotent; replicas may race safely, as
/// sqlx takes an advisory lock on PostgreSQL).
pub(super) async fn run_migrations(pool: &AnyPool, dialect: Dialect) -> CatalogResult<()> {
    let migrations = dialect
        .migrations()
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                SqlStr::from_static(sql),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
        .run(pool)
        .await
        .map_err(|e| CatalogError::Internal(format!("applying catalog migrations failed: {e}")))
}

/// Applies pending migrations to a database and closes the connection (`metastore migrate`).
///
/// # Errors
/// `Unavailable` when the database cannot be reached; `Internal` when a migration fails.
pub async fn migrate_database(database_url: &str) -> CatalogResult<()> {
    let (pool, dialect) = connect_pool(database_url, 1).await?;
    let result = run_migrations(&pool, dialect).await;
    pool.close().await;
    result
}

/// Hides a password in a database URL before it reaches a log or an error.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
