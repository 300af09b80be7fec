//! Tables: create with partition keys and an optional schema, get, list, drop (soft).

use super::Catalog;
use super::paging::{page_size, paginate};
use crate::error::{CatalogError, CatalogResult};
use crate::model::{Page, PartitionKeyDef, TableRecord, validate_partition_keys};
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
            "INSERT INTO tables (namespace_id, name, partition_keys, arrow_schema, created_at_us) \
             VALUES ($1, $2, $3, $4, {now}) RETURNING id",
        ))
        .bind(namespace_id)
        .bind(name)
        .bind(&keys_json)
        .bind(arrow_schema)
        .execute(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(done) => tx.commit().await.map(|()| done),
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        };
        match inserted.map_err(CatalogError::from) {
            Ok(_) => Ok((self.table(namespace, name).await?, true)),
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

    /// Lists live tables ordered by namespace and name, optionally in one namespace. The page
    /// token is `namespace.table` of the last table of the previous page.
    ///
    /// # Errors
    /// `NotFound` for a missing namespace.
    pub async fn list_tables(
        &self,
        namespace: Option<&str>,
        page_size_requested: i32,
        page_token: &str,
    ) -> CatalogResult<Page<TableRecord>> {
        if let Some(ns) = namespace {
            self.namespace_id(ns).await?;
        }
        let limit = page_size(page_size_requested);
        let (after_ns, after_table) = page_token.split_once('.').unwrap_or((page_token, ""));
        let rows = sqlx::query(
            "SELECT t.id, n.name AS namespace, t.name, t.partition_keys, t.arrow_schema, \
                    t.created_at_us \
             FROM tables t JOIN namespaces n ON n.id = t.namespace_id \
             WHERE t.dropped_at_us IS NULL AND n.dropped_at_us IS NULL \
               AND ($1 = '' OR n.name = $1) \
               AND (n.name > $2 OR (n.name = $2 AND t.name > $3)) \
             ORDER BY n.name, t.name LIMIT $4",
        )
        .bind(namespace.unwrap_or(""))
        .bind(after_ns)
        .bind(after_table)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut tables = rows
            .iter()
            .map(|row| self.table_from_row(row))
            .collect::<CatalogResult<Vec<_>>>()?;
        Ok(paginate(&mut tables, limit, TableRecord::qualified))
    }

    /// Drops a table. Its batches and history stay in the catalog until garbage collection;
    /// the name can be used again at once.
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
}
