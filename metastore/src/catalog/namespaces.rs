//! Namespaces: create, list, drop (soft: a dropped name can be used again).

use super::Catalog;
use super::paging::{page_size, paginate};
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::model::{NamespaceRecord, Page};
use crate::names::{NameKind, validate_name};
use sqlx::{AssertSqlSafe, Row};

impl Catalog {
    /// Creates a namespace; with `if_not_exists` an existing one is returned instead.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name, `AlreadyExists` when it exists and `if_not_exists` is off.
    pub async fn create_namespace(
        &self,
        name: &str,
        if_not_exists: bool,
    ) -> CatalogResult<(NamespaceRecord, bool)> {
        validate_name(NameKind::Namespace, name)?;
        let inserted = sqlx::query(self.sql(
            "INSERT INTO namespaces (name, created_at_us) VALUES ($1, {now}) RETURNING created_at_us",
        ))
        .bind(name)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => Ok((
                NamespaceRecord {
                    name: name.to_owned(),
                    created_at: row.try_get("created_at_us")?,
                },
                true,
            )),
            Err(e) => match CatalogError::from(e) {
                CatalogError::AlreadyExists(_) if if_not_exists => {
                    Ok((self.namespace(name).await?, false))
                }
                CatalogError::AlreadyExists(_) => Err(CatalogError::AlreadyExists(format!(
                    "namespace {name} already exists"
                ))),
                other => Err(other),
            },
        }
    }

    async fn namespace(&self, name: &str) -> CatalogResult<NamespaceRecord> {
        let row = sqlx::query(
            "SELECT created_at_us FROM namespaces WHERE name = $1 AND dropped_at_us IS NULL",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            CatalogError::not_found(
                Missing::Namespace,
                name,
                format!("namespace {name} does not exist"),
            )
        })?;
        Ok(NamespaceRecord {
            name: name.to_owned(),
            created_at: row.try_get("created_at_us")?,
        })
    }

    /// Lists live namespaces by name; the page token is the last name of the previous page.
    ///
    /// # Errors
    /// Database errors only.
    pub async fn list_namespaces(
        &self,
        page_size_requested: i32,
        page_token: &str,
    ) -> CatalogResult<Page<NamespaceRecord>> {
        let limit = page_size(page_size_requested)?;
        let rows = sqlx::query(
            "SELECT name, created_at_us FROM namespaces \
             WHERE dropped_at_us IS NULL AND name > $1 ORDER BY name LIMIT $2",
        )
        .bind(page_token)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|row| {
                Ok(NamespaceRecord {
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at_us")?,
                })
            })
            .collect::<CatalogResult<Vec<_>>>()?;
        Ok(paginate(&mut items, limit, |n| n.name.clone()))
    }

    /// Drops an empty namespace.
    ///
    /// # Errors
    /// `NotFound` if it does not exist; `FailedPrecondition` while it still has tables.
    pub async fn drop_namespace(&self, name: &str) -> CatalogResult<()> {
        let id = self.namespace_id(name).await?;
        // Lock the namespace row first: a table being created holds it shared, so the check
        // below runs after that table exists (or its creation failed).
        let mut tx = self.pool.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "SELECT id FROM namespaces WHERE id = $1{}",
            self.dialect.lock_for_update()
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let tables: Vec<String> = sqlx::query(
            "SELECT name FROM tables WHERE namespace_id = $1 AND dropped_at_us IS NULL \
             ORDER BY name LIMIT 6",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("name"))
        .collect::<Result<_, _>>()?;
        if !tables.is_empty() {
            tx.rollback().await?;
            return Err(CatalogError::FailedPrecondition(format!(
                "namespace {name} still has tables ({}{}); drop them first",
                tables
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if tables.len() > 5 { ", …" } else { "" }
            )));
        }
        sqlx::query(self.sql(
            "UPDATE namespaces SET dropped_at_us = {now} WHERE id = $1 AND dropped_at_us IS NULL",
        ))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // A namespace created later under the same name starts without the old one's grants.
        sqlx::query("DELETE FROM grants WHERE namespace = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
