//! Tables: create with partition keys and an optional schema, get, list, drop (soft) and undrop.

use super::paging::{bad_token, page_size, paginate};
use super::{Catalog, TABLE_COLUMNS, format_micros};
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::model::{
    Micros, Page, PartitionKeyDef, SchemaPolicy, TableRecord, describe_duration,
    validate_partition_keys,
};
use crate::names::{NameKind, validate_name};
use crate::schema;
use sqlx::{AssertSqlSafe, Row};

impl Catalog {
    /// Creates a table. With `if_not_exists`, an existing table with the same partition keys is
    /// returned instead (`created` = false).
    ///
    /// # Errors
    /// `InvalidArgument` for bad names, keys or schema; `NotFound` for a missing namespace;
    /// `AlreadyExists` when the table exists (with other keys, or without `if_not_exists`).
    pub async fn create_table(
        &self,
        namespace: &str,
        name: &str,
        keys: Vec<PartitionKeyDef>,
        arrow_schema: Option<Vec<u8>>,
        policy: SchemaPolicy,
        if_not_exists: bool,
    ) -> CatalogResult<(TableRecord, bool)> {
        validate_name(NameKind::Namespace, namespace)?;
        validate_name(NameKind::Table, name)?;
        validate_partition_keys(&keys)?;
        if let Some(bytes) = &arrow_schema {
            schema::validate_for_table(&schema::decode(bytes)?, &keys)?;
        }
        let keys_json = serde_json::to_string(&keys)
            .map_err(|e| CatalogError::Internal(format!("encoding partition keys: {e}")))?;
        // The namespace row is share-locked until the table exists, so a concurrent drop of
        // the namespace either sees the table or finishes before it is created.
        let mut tx = self.pool.begin().await?;
        let namespace_id: Option<i64> = sqlx::query(AssertSqlSafe(format!(
            "SELECT id FROM namespaces WHERE name = $1 AND dropped_at_us IS NULL{}",
            self.dialect.lock_for_share()
        )))
        .bind(namespace)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()?;
        let Some(namespace_id) = namespace_id else {
            tx.rollback().await?;
            return Err(self.namespace_not_found(namespace));
        };
        let inserted = sqlx::query(self.sql(
            "INSERT INTO tables (namespace_id, name, partition_keys, arrow_schema, created_at_us, \
                                 schema_policy) \
             VALUES ($1, $2, $3, $4, {now}, $5) RETURNING id, created_at_us",
        ))
        .bind(namespace_id)
        .bind(name)
        .bind(&keys_json)
        .bind(&arrow_schema)
        .bind(policy.as_str())
        .fetch_one(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(row) => {
                if let Some(bytes) = &arrow_schema {
                    // The given schema is the first of the table's schema history.
                    sqlx::query(
                        "INSERT INTO table_schemas (table_id, version, arrow_schema, \
                                                    changed_at_us, change) \
                         VALUES ($1, 1, $2, $3, 'given when the table was created')",
                    )
                    .bind(row.try_get::<i64, _>("id")?)
                    .bind(bytes)
                    .bind(row.try_get::<i64, _>("created_at_us")?)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        };
        match inserted.map_err(CatalogError::from) {
            Ok(()) => Ok((self.table(namespace, name).await?, true)),
            Err(CatalogError::AlreadyExists(_)) => {
                let existing = self.table(namespace, name).await?;
                if if_not_exists && existing.keys == keys {
                    Ok((existing, false))
                } else {
                    Err(CatalogError::AlreadyExists(format!(
                        "table {namespace}.{name} already exists, partitioned by [{}]",
                        existing
                            .keys
                            .iter()
                            .map(|k| k.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
            Err(other) => Err(other),
        }
    }

    /// Returns a live table.
    ///
    /// # Errors
    /// `NotFound` naming the missing namespace or table.
    pub async fn get_table(&self, namespace: &str, name: &str) -> CatalogResult<TableRecord> {
        let mut table = self.table(namespace, name).await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM partitions WHERE table_id = $1 AND current_version > 0",
        )
        .bind(table.id)
        .fetch_one(&self.pool)
        .await?;
        table.partition_count = Some(row.try_get("n")?);
        Ok(table)
    }

    /// Lists live tables ordered by namespace and name, optionally in one namespace; with
    /// `dropped`, the dropped tables that can still be undropped instead (newest drop first
    /// among tables of one name). The page token is `namespace.table` of the last table of the
    /// previous page (and `@id` for dropped ones, since one name can have been dropped twice).
    ///
    /// # Errors
    /// `NotFound` for a missing namespace.
    pub async fn list_tables(
        &self,
        namespace: Option<&str>,
        dropped: bool,
        page_size_requested: i32,
        page_token: &str,
    ) -> CatalogResult<Page<TableRecord>> {
        if let Some(ns) = namespace {
            self.namespace_id(ns).await?;
        }
        let limit = page_size(page_size_requested)?;
        let (position, after_id) = match page_token.rsplit_once('@') {
            Some((position, id)) => (position, id.parse::<i64>().map_err(|_| bad_token())?),
            None => (page_token, i64::MAX),
        };
        let (after_ns, after_table) = position.split_once('.').unwrap_or((position, ""));
        let which = if dropped {
            "t.dropped_at_us IS NOT NULL AND t.purge_started_at_us IS NULL"
        } else {
            "t.dropped_at_us IS NULL"
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TABLE_COLUMNS} \
             FROM tables t JOIN namespaces n ON n.id = t.namespace_id \
             WHERE {which} AND n.dropped_at_us IS NULL \
               AND ($1 = '' OR n.name = $1) \
               AND (n.name > $2 OR (n.name = $2 AND t.name > $3) \
                    OR (n.name = $2 AND t.name = $3 AND t.id < $5)) \
             ORDER BY n.name, t.name, t.id DESC LIMIT $4"
        )))
        .bind(namespace.unwrap_or(""))
        .bind(after_ns)
        .bind(after_table)
        .bind(limit + 1)
        .bind(after_id)
        .fetch_all(&self.pool)
        .await?;
        let mut tables = rows
            .iter()
            .map(|row| self.table_from_row(row))
            .collect::<CatalogResult<Vec<_>>>()?;
        Ok(paginate(&mut tables, limit, |t| {
            if dropped {
                format!("{}@{}", t.qualified(), t.id)
            } else {
                t.qualified()
            }
        }))
    }

    /// The moment after which GC frees a table dropped at `dropped_at`.
    pub fn purge_after(&self, dropped_at: Micros) -> Micros {
        dropped_at.saturating_add(self.settings.drop_grace.as_micros() as i64)
    }

    /// Drops a table. Its name can be used again at once; the dropped table (data, history,
    /// tags) stays undroppable for the grace period, after which GC frees its storage.
    ///
    /// # Errors
    /// `NotFound` if the table does not exist.
    pub async fn drop_table(&self, namespace: &str, name: &str) -> CatalogResult<()> {
        let table = self.table(namespace, name).await?;
        sqlx::query(self.sql(
            "UPDATE tables SET dropped_at_us = {now} WHERE id = $1 AND dropped_at_us IS NULL",
        ))
        .bind(table.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Brings back the most recently dropped table of this name, if GC has not started to free
    /// it. Its partitions, history, tags and leases are as they were.
    ///
    /// # Errors
    /// `NotFound` when no dropped table of this name can be undropped (never dropped, or
    /// already purged: the message says which); `AlreadyExists` when a live table has the name.
    pub async fn undrop_table(&self, namespace: &str, name: &str) -> CatalogResult<TableRecord> {
        let namespace_id = self.namespace_id(namespace).await?;
        // The purge of a dropped table starts by setting purge_started_at_us on its row in the
        // same transaction that expires its batches; this update is refused once it is set,
        // and the purge is refused once this update has run, whichever commits first.
        let mut tx = self.pool.begin().await?;
        let candidate = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, purge_started_at_us, dropped_at_us FROM tables \
             WHERE namespace_id = $1 AND name = $2 AND dropped_at_us IS NOT NULL \
             ORDER BY dropped_at_us DESC, id DESC LIMIT 1{}",
            self.dialect.lock_for_update()
        )))
        .bind(namespace_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(candidate) = candidate else {
            tx.rollback().await?;
            return Err(self.table_not_found(namespace, name).await);
        };
        let id: i64 = candidate.try_get("id")?;
        if let Some(purged) = candidate.try_get::<Option<i64>, _>("purge_started_at_us")? {
            tx.rollback().await?;
            return Err(CatalogError::not_found(
                Missing::Table,
                format!("{namespace}.{name}"),
                format!(
                    "table {namespace}.{name} can no longer be undropped: garbage collection \
                     started freeing its storage at {} (the grace period after a drop is {})",
                    format_micros(purged),
                    describe_duration(self.settings.drop_grace.as_micros() as i64)
                ),
            ));
        }
        let undropped = sqlx::query(
            "UPDATE tables SET dropped_at_us = NULL WHERE id = $1 AND purge_started_at_us IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await;
        match undropped {
            Ok(_) => tx.commit().await?,
            Err(e) => {
                tx.rollback().await?;
                return Err(match CatalogError::from(e) {
                    CatalogError::AlreadyExists(_) => CatalogError::AlreadyExists(format!(
                        "a table {namespace}.{name} exists again; drop or rename it before \
                         undropping the old one"
                    )),
                    other => other,
                });
            }
        }
        self.get_table(namespace, name).await
    }
}
