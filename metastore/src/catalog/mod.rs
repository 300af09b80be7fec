//! The catalog: namespaces, tables, partitions, batches, history, tags and lineage in SQL.
//!
//! One implementation serves SQLite and PostgreSQL through sqlx's `Any` driver with runtime
//! queries; the few dialect differences (the clock, `GREATEST`) are filled into query templates
//! by [`Catalog::sql`]. Every invariant of the commit protocol is enforced inside a database
//! transaction here, never by the client:
//! - a partition's pointer moves only by a compare-and-swap `UPDATE … RETURNING` that also
//!   increments its version, so versions are 1, 2, 3… without gaps even across replicas;
//! - history rows are only ever inserted;
//! - timestamps come from the database clock, one per commit, never run backwards within a
//!   partition, and as-of reads are repeatable (`pointer`).

mod access;
mod commit;
mod database;
mod gc;
mod history;
mod leases;
mod namespaces;
mod orphans;
mod paging;
mod pointer;
mod reads;
mod retention;
mod schemas;
mod tables;
mod tags;
mod writes;

pub use database::{Dialect, migrate_database, redact_url};
use database::{connect_pool, connect_readers, run_migrations};
pub use leases::{LeaseRef, PinTo};
pub use orphans::OrphanReport;

use crate::error::{CatalogError, CatalogResult, Missing};
use crate::model::{
    BatchRecord, Expiry, Micros, PartitionKeyDef, PartitionValues, Retention, SchemaPolicy,
    TableRecord,
};
use crate::names::quote_for_message;
use crate::warehouse::Warehouse;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tunables of the catalog.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    /// Lease given to a pending batch when the client asks for none.
    pub default_lease: Duration,
    /// Longest lease a client may ask for.
    pub max_lease: Duration,
    /// Connections to PostgreSQL (SQLite always uses one writer connection).
    pub max_connections: u32,
    /// Pending batches one table may have at once; BeginWrite past it is refused.
    pub max_pending_per_table: i64,
    /// Pending batches one principal may have at once (over all tables).
    pub max_pending_per_principal: i64,
    /// Live named leases one holder may have at once.
    pub max_named_leases_per_holder: i64,
    /// How long a dropped table can be undropped before GC may free its storage.
    pub drop_grace: Duration,
    /// Time to live of a named lease when the client asks for none, and the longest any
    /// lease (named or a read's) may ask for.
    pub default_lease_ttl: Duration,
    pub max_lease_ttl: Duration,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            default_lease: Duration::from_secs(3600),
            max_lease: Duration::from_secs(7 * 24 * 3600),
            max_connections: 16,
            max_pending_per_table: 10_000,
            max_pending_per_principal: 10_000,
            max_named_leases_per_holder: 1_000,
            drop_grace: Duration::from_secs(7 * 24 * 3600),
            default_lease_ttl: Duration::from_secs(24 * 3600),
            max_lease_ttl: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// The catalog over a database pool and a warehouse.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: AnyPool,
    /// Where resolving reads run (`database::connect_readers`): SQLite's read-only
    /// connections, or `pool` itself.
    readers: AnyPool,
    dialect: Dialect,
    warehouse: Warehouse,
    settings: CatalogSettings,
    /// Batches this process began and has not yet seen committed or aborted, so a commit need
    /// not read them back. What is kept never changes (table, partition, location); the commit
    /// itself re-checks state, lease and that the table still exists, and answers a batch that
    /// another connection or replica committed meanwhile as a retry (`commit::explain_stop`).
    began: Arc<Mutex<HashMap<String, BatchRecord>>>,
    /// As-of times known to be settled, per table (`pointer`).
    horizons: Arc<pointer::Horizons>,
}

/// The columns [`Catalog::table_from_row`] reads, from `tables t JOIN namespaces n`.
const TABLE_COLUMNS: &str = "t.id, n.name AS namespace, t.name, t.partition_keys, t.arrow_schema, \
     t.created_at_us, t.dropped_at_us, t.keep_versions, t.keep_for_us, \
     n.keep_versions AS ns_keep_versions, n.keep_for_us AS ns_keep_for_us, t.schema_policy";

/// Most batches remembered between BeginWrite and Commit; past it the memory starts afresh.
const BEGAN_LIMIT: usize = 100_000;

impl Catalog {
    /// Connections the catalog's pool holds open, and how many of them are idle.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Connects to the database and applies pending migrations.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached; `Internal` when a migration fails.
    pub async fn connect(
        database_url: &str,
        warehouse: Warehouse,
        settings: CatalogSettings,
    ) -> CatalogResult<Self> {
        let (pool, dialect) = connect_pool(database_url, settings.max_connections).await?;
        run_migrations(&pool, dialect).await?;
        let readers = connect_readers(database_url, dialect, &pool).await?;
        Ok(Catalog {
            began: Arc::default(),
            horizons: Arc::default(),
            pool,
            readers,
            dialect,
            warehouse,
            settings,
        })
    }

    /// The warehouse this catalog hands out locations in.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.readers.close().await;
        self.pool.close().await;
    }

    /// Fills the dialect's clock (`{now}`) and maximum (`{max}`) into a query template.
    fn sql(&self, template: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(
            template
                .replace("{now}", self.dialect.now())
                .replace("{max}", self.dialect.max()),
        )
    }

    /// Looks up a live table by name.
    ///
    /// # Errors
    /// `NotFound` saying whether the namespace or the table is missing.
    /// Uses the pool: never call it while holding a transaction (SQLite has one connection).
    async fn table(&self, namespace: &str, table: &str) -> CatalogResult<TableRecord> {
        match self.live_table(&self.readers, namespace, table).await? {
            Some(record) => Ok(record),
            None => Err(self.table_not_found(namespace, table).await),
        }
    }

    /// The live (not dropped) table `namespace.table`, read through `executor`; `None` when
    /// there is none ([`Self::table_not_found`] says why).
    async fn live_table<'e, E>(
        &self,
        executor: E,
        namespace: &str,
        table: &str,
    ) -> CatalogResult<Option<TableRecord>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {TABLE_COLUMNS} \
                 FROM tables t JOIN namespaces n ON n.id = t.namespace_id \
                 WHERE n.name = $1 AND t.name = $2 \
                   AND t.dropped_at_us IS NULL AND n.dropped_at_us IS NULL"
        )))
        .bind(namespace)
        .bind(table)
        .fetch_optional(executor)
        .await?
        .map(|row| self.table_from_row(&row))
        .transpose()
    }

    async fn table_not_found(&self, namespace: &str, table: &str) -> CatalogError {
        let namespace_exists = self.namespace_id(namespace).await.is_ok();
        if namespace_exists {
            CatalogError::not_found(
                Missing::Table,
                format!("{namespace}.{table}"),
                format!(
                    "table {namespace}.{} does not exist; create it first (tablectl table create)",
                    quote_for_message(table).trim_matches('"')
                ),
            )
        } else {
            self.namespace_not_found(namespace)
        }
    }

    fn table_from_row(&self, row: &AnyRow) -> CatalogResult<TableRecord> {
        let keys_json: String = row.try_get("partition_keys")?;
        let keys: Vec<PartitionKeyDef> = serde_json::from_str(&keys_json)
            .map_err(|e| CatalogError::Internal(format!("bad partition keys in catalog: {e}")))?;
        let namespace: String = row.try_get("namespace")?;
        let name: String = row.try_get("name")?;
        let location = self
            .warehouse
            .location_url(&crate::layout::table_dir(&namespace, &name));
        Ok(TableRecord {
            id: row.try_get("id")?,
            namespace,
            name,
            keys,
            arrow_schema: row.try_get("arrow_schema")?,
            created_at: row.try_get("created_at_us")?,
            partition_count: None,
            location,
            retention: Retention {
                keep_versions: row.try_get("keep_versions")?,
                keep_for: row.try_get("keep_for_us")?,
            },
            namespace_retention: Retention {
                keep_versions: row.try_get("ns_keep_versions")?,
                keep_for: row.try_get("ns_keep_for_us")?,
            },
            dropped_at: row.try_get("dropped_at_us")?,
            schema_policy: SchemaPolicy::parse(&row.try_get::<String, _>("schema_policy")?)?,
        })
    }

    /// Finds a partition row: `(id, current_batch_id, current_version)`.
    async fn partition<'e, E>(
        &self,
        executor: E,
        table: &TableRecord,
        values: &PartitionValues,
    ) -> CatalogResult<Option<PartitionRow>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let row = sqlx::query(
            "SELECT id, current_batch_id, current_version FROM partitions \
             WHERE table_id = $1 AND partition_hash = $2",
        )
        .bind(table.id)
        .bind(partition_hash(values))
        .fetch_optional(executor)
        .await?;
        row.as_ref().map(partition_row).transpose()
    }

    /// Like [`Self::partition`] but the partition must have at least one version.
    async fn written_partition(
        &self,
        table: &TableRecord,
        values: &PartitionValues,
    ) -> CatalogResult<PartitionRow> {
        match self.partition(&self.pool, table, values).await? {
            Some(p) if p.current_version > 0 => Ok(p),
            _ => Err(CatalogError::not_found(
                Missing::Partition,
                values.describe(&table.keys),
                format!(
                    "partition {} of {} has never been written",
                    values.describe(&table.keys),
                    table.qualified()
                ),
            )),
        }
    }

    async fn namespace_id(&self, namespace: &str) -> CatalogResult<i64> {
        sqlx::query("SELECT id FROM namespaces WHERE name = $1 AND dropped_at_us IS NULL")
            .bind(namespace)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get::<i64, _>("id").map_err(CatalogError::from))
            .transpose()?
            .ok_or_else(|| self.namespace_not_found(namespace))
    }

    /// The refusal for a namespace that does not exist.
    fn namespace_not_found(&self, namespace: &str) -> CatalogError {
        CatalogError::not_found(
            Missing::Namespace,
            namespace,
            format!(
                "namespace {} does not exist; create it first (tablectl namespace create)",
                quote_for_message(namespace)
            ),
        )
    }

    /// Remembers a batch this process began (see `Catalog::began`).
    fn remember_began(&self, batch: BatchRecord) {
        if let Ok(mut began) = self.began.lock() {
            if began.len() >= BEGAN_LIMIT {
                began.clear();
            }
            began.insert(batch.batch_id.clone(), batch);
        }
    }

    /// A batch this process began, if it still remembers it.
    fn recall_began(&self, batch_id: &str) -> Option<BatchRecord> {
        self.began
            .lock()
            .ok()
            .and_then(|began| began.get(batch_id).cloned())
    }

    /// Forgets batches that were committed or aborted.
    fn forget_began<'a>(&self, batch_ids: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut began) = self.began.lock() {
            for id in batch_ids {
                began.remove(id);
            }
        }
    }
}

/// The parts of a partition row most operations need.
#[derive(Debug, Clone)]
struct PartitionRow {
    id: i64,
    current_batch_id: Option<String>,
    current_version: i64,
}

/// The stored identity of a partition: hex SHA-256 of its canonical JSON values.
/// A partition's row from `SELECT id, current_batch_id, current_version`.
fn partition_row(row: &AnyRow) -> CatalogResult<PartitionRow> {
    Ok(PartitionRow {
        id: row.try_get("id")?,
        current_batch_id: row.try_get("current_batch_id")?,
        current_version: row.try_get("current_version")?,
    })
}

fn partition_hash(values: &PartitionValues) -> String {
    Sha256::digest(values.to_json().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `$first, $first+1, …`: `count` bind parameters for an `IN (…)` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The GC expiry a row carries in `expired_at_us` and `expired_reason`, if any.
fn expiry_from_row(row: &AnyRow) -> CatalogResult<Option<Expiry>> {
    let at: Option<Micros> = row.try_get("expired_at_us")?;
    Ok(match at {
        Some(at) => Some(Expiry {
            at,
            reason: row
                .try_get::<Option<String>, _>("expired_reason")?
                .unwrap_or_default(),
        }),
        None => None,
    })
}

/// A timestamp for messages: RFC 3339, UTC.
fn format_micros(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| format!("{micros} µs"))
}
