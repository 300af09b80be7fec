//! Schema evolution: a table's schema policy and its schema history. The commit applies the
//! policy (`commit::fix_table_schemas`, with `schema::evolve`) and appends to the history.

use super::Catalog;
use crate::error::CatalogResult;
use crate::model::{SchemaPolicy, SchemaVersion, TableRecord};
use sqlx::Row;

impl Catalog {
    /// Sets what later writes may change in a table's schema.
    ///
    /// # Errors
    /// `NotFound` for a missing table.
    pub async fn set_schema_policy(
        &self,
        namespace: &str,
        table: &str,
        policy: SchemaPolicy,
    ) -> CatalogResult<TableRecord> {
        let record = self.table(namespace, table).await?;
        sqlx::query("UPDATE tables SET schema_policy = $1 WHERE id = $2")
            .bind(policy.as_str())
            .bind(record.id)
            .execute(&self.pool)
            .await?;
        self.table(namespace, table).await
    }

    /// Every schema a table has had, oldest first (at most 10,000).
    ///
    /// # Errors
    /// `NotFound` for a missing table.
    pub async fn schema_history(
        &self,
        namespace: &str,
        table: &str,
    ) -> CatalogResult<Vec<SchemaVersion>> {
        let record = self.table(namespace, table).await?;
        let rows = sqlx::query(
            "SELECT version, arrow_schema, changed_at_us, change FROM table_schemas \
             WHERE table_id = $1 ORDER BY version LIMIT 10000",
        )
        .bind(record.id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SchemaVersion {
                    version: row.try_get("version")?,
                    arrow_schema: row.try_get("arrow_schema")?,
                    changed_at: row.try_get("changed_at_us")?,
                    change: row.try_get("change")?,
                })
            })
            .collect()
    }
}
