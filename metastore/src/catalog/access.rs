//! Grants and the audit trail in SQL. Decisions are made in `access`; here they are stored.

use super::paging::{page_size, paginate, parse_token};
use super::{Catalog, Dialect};
use crate::access::{AuditEvent, AuditFilter, GrantRecord, Grantee, Permission};
use crate::error::CatalogResult;
use crate::model::{Micros, Page};
use sqlx::{AssertSqlSafe, Row};

/// Audit events inserted by one statement (bounded by the databases' bind-parameter limits).
const AUDIT_ROWS_PER_STATEMENT: usize = 100;

impl Catalog {
    /// Every grant (the service keeps them in memory for decisions).
    ///
    /// # Errors
    /// Database errors.
    pub async fn all_grants(&self) -> CatalogResult<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT namespace, grantee_kind, grantee, permission, granted_by, granted_at_us \
             FROM grants ORDER BY namespace, grantee_kind, grantee",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(GrantRecord {
                    namespace: row.try_get("namespace")?,
                    grantee: Grantee::from_stored(
                        &row.try_get::<String, _>("grantee_kind")?,
                        row.try_get("grantee")?,
                    )?,
                    permission: Permission::parse(&row.try_get::<String, _>("permission")?)?,
                    granted_by: row.try_get("granted_by")?,
                    granted_at: row.try_get("granted_at_us")?,
                })
            })
            .collect()
    }

    /// Grants `permission` (replacing the grantee's earlier one on the namespace).
    ///
    /// # Errors
    /// Database errors.
    pub async fn grant(
        &self,
        namespace: &str,
        grantee: &Grantee,
        permission: Permission,
        granted_by: &str,
    ) -> CatalogResult<GrantRecord> {
        let row = sqlx::query(self.sql(
            "INSERT INTO grants (namespace, grantee_kind, grantee, permission, granted_by, \
                                 granted_at_us) \
             VALUES ($1, $2, $3, $4, $5, {now}) \
             ON CONFLICT (namespace, grantee_kind, grantee) DO UPDATE \
               SET permission = excluded.permission, granted_by = excluded.granted_by, \
                   granted_at_us = excluded.granted_at_us \
             RETURNING granted_at_us",
        ))
        .bind(namespace)
        .bind(grantee.kind())
        .bind(grantee.name())
        .bind(permission.as_str())
        .bind(granted_by)
        .fetch_one(&self.pool)
        .await?;
        Ok(GrantRecord {
            namespace: namespace.to_owned(),
            grantee: grantee.clone(),
            permission,
            granted_by: granted_by.to_owned(),
            granted_at: row.try_get("granted_at_us")?,
        })
    }

    /// Removes a grant; false when there was none.
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke(&self, namespace: &str, grantee: &Grantee) -> CatalogResult<bool> {
        let done = sqlx::query(
            "DELETE FROM grants WHERE namespace = $1 AND grantee_kind = $2 AND grantee = $3",
        )
        .bind(namespace)
        .bind(grantee.kind())
        .bind(grantee.name())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Appends audit events, many per statement, in one transaction.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record_audit(&self, events: &[AuditEvent]) -> CatalogResult<()> {
        // On PostgreSQL the events' transaction does not wait for its log flush (the log
        // writer flushes it within a fraction of a second): the events are gathered in memory
        // before they get here, and every call, reads included, makes one, so waiting would
        // put a disk flush per batch of events beside every read.
        let mut tx = match self.dialect {
            Dialect::Postgres => {
                self.pool
                    .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                    .await?
            }
            Dialect::Sqlite => self.pool.begin().await?,
        };
        for chunk in events.chunks(AUDIT_ROWS_PER_STATEMENT) {
            let rows = (0..chunk.len())
                .map(|i| {
                    let b = i * 8;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO audit_events (at_us, principal, claimed_actor, method, namespace, \
                                           target, outcome, detail) VALUES {rows}"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for e in chunk {
                query = query
                    .bind(e.at)
                    .bind(&e.principal)
                    .bind(&e.claimed_actor)
                    .bind(&e.method)
                    .bind(&e.namespace)
                    .bind(&e.target)
                    .bind(&e.outcome)
                    .bind(&e.detail);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit events in the order they were recorded, filtered and paged.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad page token; database errors.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        requested_page_size: i32,
        page_token: &str,
    ) -> CatalogResult<Page<AuditEvent>> {
        let limit = page_size(requested_page_size)?;
        let after = parse_token(page_token)?;
        let mut sql = String::from(
            "SELECT id, at_us, principal, claimed_actor, method, namespace, target, outcome, \
                    detail FROM audit_events WHERE id > $1 AND at_us >= $2",
        );
        let mut next = 3;
        let mut clause = |sql: &mut String, condition: &str| {
            sql.push_str(&format!(" AND {condition} = ${next}"));
            next += 1;
        };
        if filter.principal.is_some() {
            clause(&mut sql, "principal");
        }
        if filter.namespace.is_some() {
            clause(&mut sql, "namespace");
        }
        if filter.table.is_some() {
            // The target of a table's events is `namespace.table` or `namespace.table@…`.
            sql.push_str(&format!(
                " AND (target = ${next} OR target LIKE ${} ESCAPE '\\')",
                next + 1
            ));
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", limit + 1));
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(after)
            .bind(filter.since);
        if let Some(p) = &filter.principal {
            query = query.bind(p);
        }
        if let Some(ns) = &filter.namespace {
            query = query.bind(ns);
        }
        if let Some(table) = &filter.table {
            let qualified = format!("{}.{table}", filter.namespace.as_deref().unwrap_or(""));
            let escaped: String = qualified
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            query = query.bind(qualified).bind(format!("{escaped}@%"));
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut events = rows
            .iter()
            .map(|row| {
                Ok(AuditEvent {
                    id: row.try_get("id")?,
                    at: row.try_get("at_us")?,
                    principal: row.try_get("principal")?,
                    claimed_actor: row.try_get("claimed_actor")?,
                    method: row.try_get("method")?,
                    namespace: row.try_get("namespace")?,
                    target: row.try_get("target")?,
                    outcome: row.try_get("outcome")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect::<CatalogResult<Vec<_>>>()?;
        Ok(paginate(&mut events, limit, |e| e.id.to_string()))
    }

    /// Deletes audit events recorded before `before`; returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub async fn expire_audit(&self, before: Micros) -> CatalogResult<u64> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at_us < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
