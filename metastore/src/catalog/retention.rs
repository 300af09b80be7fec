//! Retention: how many old versions each table keeps, set per table or as a namespace
//! default. Only garbage collection (`gc`) acts on it.

use super::Catalog;
use crate::error::CatalogResult;
use crate::model::Retention;
use crate::names::{NameKind, validate_name};

impl Catalog {
    /// Sets a table's retention, or with `table` = `None` its namespace's default. Rules left
    /// unset are cleared. Returns the table's effective retention (a namespace's default).
    ///
    /// # Errors
    /// `InvalidArgument` for a rule out of range; `NotFound` for a missing namespace or table.
    pub async fn set_retention(
        &self,
        namespace: &str,
        table: Option<&str>,
        retention: Retention,
    ) -> CatalogResult<Retention> {
        retention.validate()?;
        validate_name(NameKind::Namespace, namespace)?;
        match table {
            Some(name) => {
                let record = self.table(namespace, name).await?;
                sqlx::query("UPDATE tables SET keep_versions = $1, keep_for_us = $2 WHERE id = $3")
                    .bind(retention.keep_versions)
                    .bind(retention.keep_for)
                    .bind(record.id)
                    .execute(&self.pool)
                    .await?;
                Ok(self.table(namespace, name).await?.effective_retention())
            }
            None => {
                let id = self.namespace_id(namespace).await?;
                sqlx::query(
                    "UPDATE namespaces SET keep_versions = $1, keep_for_us = $2 WHERE id = $3",
                )
                .bind(retention.keep_versions)
                .bind(retention.keep_for)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(retention)
            }
        }
    }
}
