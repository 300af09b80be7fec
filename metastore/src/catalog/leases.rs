//! Leases: what pins batches against garbage collection while someone reads them.
//!
//! A read takes a lease on exactly the batches it resolved (ResolvePartitions with a lease
//! time) and extends it while it runs; a job takes a named lease on a selection. Lease times
//! come from the catalog clock only.
//!
//! Exactness against GC: a lease is recorded and its batches are checked to be unexpired in
//! one transaction that holds the table's commit lock in shared mode (PostgreSQL), while GC
//! expires a table's batches holding that lock exclusively (`gc`). So either GC sees the lease
//! and keeps the batches, or the lease sees them expired and is refused (a read of the current
//! versions then resolves again). SQLite runs one transaction at a time. A whole-table read
//! over several pages is read as of one moment; its lease records that moment and pins every
//! batch current then (GC keeps them), so its later pages are safe before they are resolved.
//! Each page extends the lease; the client extends it while it fetches.

use super::paging::{bad_token, page_size, paginate};
use super::{Catalog, format_micros};
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::limits;
use crate::model::{
    Expiry, KeyCondition, LeaseRecord, Micros, Page, ResolvedPartition, Selector, TableRecord,
};
use crate::names::{quote_for_message, validate_lease_name};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use std::time::Duration;

/// Rows per multi-row insert of a lease's batches.
const INSERT_CHUNK: usize = 500;

/// How often a read of the current versions resolves again when GC expired what it resolved
/// between resolving and leasing (each retry sees newer current versions).
const PIN_ATTEMPTS: usize = 3;

/// Longest lease a read's own lease is given per call (it is extended while the read runs).
const MAX_READ_LEASE: Duration = Duration::from_secs(600);

/// Which lease a pin goes into.
pub enum PinTo<'a> {
    /// A new lease: a job's (named) or a read's (no name).
    New {
        name: Option<&'a str>,
        holder: &'a str,
        selection: String,
        ttl: Duration,
    },
    /// A lease an earlier page of the same read took; it is extended to `ttl` from now.
    Existing {
        lease_id: &'a str,
        holder: &'a str,
        ttl: Duration,
    },
}

/// A pin's outcome: the lease, or a batch GC expired before it could be pinned.
enum Pinned {
    Lease {
        lease_id: String,
        expires_at: Micros,
    },
    Expired {
        batch_id: String,
    },
}

/// Which lease a call names: by id, or by table and name.
pub enum LeaseRef<'a> {
    Id(&'a str),
    Named {
        namespace: &'a str,
        table: &'a str,
        name: &'a str,
    },
}

impl Catalog {
    /// Checks a requested time to live: `None` (or zero) is the default, above the maximum is
    /// refused.
    ///
    /// # Errors
    /// `InvalidArgument` above the maximum.
    pub fn lease_ttl(&self, requested: Option<Duration>) -> CatalogResult<Duration> {
        match requested {
            None => Ok(self.settings.default_lease_ttl),
            Some(ttl) if ttl.is_zero() => Ok(self.settings.default_lease_ttl),
            Some(ttl) if ttl > self.settings.max_lease_ttl => {
                Err(CatalogError::InvalidArgument(format!(
                    "a lease of {} s is longer than the maximum of {} s",
                    ttl.as_secs(),
                    self.settings.max_lease_ttl.as_secs()
                )))
            }
            Some(ttl) => Ok(ttl),
        }
    }

    /// The time to live of a read's own lease: as asked, at most [`MAX_READ_LEASE`] (the read
    /// extends it while it runs), so reads cannot pin batches for long.
    pub fn read_lease_ttl(&self, requested: Duration) -> Duration {
        requested.clamp(Duration::from_secs(1), MAX_READ_LEASE)
    }

    /// Resolves like [`Catalog::resolve`] and pins the resolved batches under a read lease
    /// (new, or `lease_id` of an earlier page). Returns the lease id and its expiry too.
    ///
    /// # Errors
    /// As `resolve`; `NotFound` for an unknown or expired `lease_id` or one held by another.
    #[allow(clippy::too_many_arguments)]
    pub async fn resolve_leased(
        &self,
        namespace: &str,
        table: &str,
        partitions: &[Vec<(String, String)>],
        selector: &Selector,
        filter: &[KeyCondition],
        page_size: i32,
        page_token: &str,
        lease: PinTo<'_>,
    ) -> CatalogResult<(TableRecord, Page<ResolvedPartition>, String, Micros)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (record, page) = self
                .resolve(
                    namespace, table, partitions, selector, filter, page_size, page_token,
                )
                .await?;
            let ids: Vec<String> = page.items.iter().map(|r| r.batch_id.clone()).collect();
            // A whole-table read over several pages reads them all as of one moment: its lease
            // pins everything current then, so its later pages cannot be collected first.
            let as_of = match &lease {
                PinTo::New { .. } => page
                    .next_page_token
                    .split_once('@')
                    .and_then(|(_, moment)| moment.parse::<Micros>().ok()),
                PinTo::Existing { .. } => None,
            };
            match self.pin(&record, &lease, &ids, as_of).await? {
                Pinned::Lease {
                    lease_id,
                    expires_at,
                } => return Ok((record, page, lease_id, expires_at)),
                // Expired between resolving and pinning: resolving again either finds the
                // versions current now or says that the asked-for version expired.
                Pinned::Expired { batch_id } if attempt < PIN_ATTEMPTS => {
                    tracing::debug!(%batch_id, "resolved batch expired before it was leased");
                }
                Pinned::Expired { batch_id } => return Err(self.expired_error(&batch_id).await),
            }
        }
    }

    /// Takes a named lease on a selection of a table (every partition when none is named).
    ///
    /// # Errors
    /// `AlreadyExists` when the table has a live lease of that name; `InvalidArgument` for a bad
    /// name, TTL or a selection of more than [`limits::MAX_LEASE_BATCHES`] batches; as
    /// `resolve` for the selection.
    #[allow(clippy::too_many_arguments)]
    pub async fn acquire_lease(
        &self,
        namespace: &str,
        table: &str,
        partitions: &[Vec<(String, String)>],
        selector: &Selector,
        name: &str,
        holder: &str,
        ttl: Option<Duration>,
    ) -> CatalogResult<LeaseRecord> {
        validate_lease_name(name)?;
        let ttl = self.lease_ttl(ttl)?;
        for _ in 0..PIN_ATTEMPTS {
            let (record, batch_ids) = self
                .resolve_all(namespace, table, partitions, selector)
                .await?;
            let selection = describe_selection(selector, &record, partitions, batch_ids.len());
            let to = PinTo::New {
                name: Some(name),
                holder,
                selection: selection.clone(),
                ttl,
            };
            if let Pinned::Lease {
                lease_id,
                expires_at,
            } = self.pin(&record, &to, &batch_ids, None).await?
            {
                let created_at = expires_at - ttl.as_micros() as i64;
                return Ok(LeaseRecord {
                    lease_id,
                    name: Some(name.to_owned()),
                    namespace: record.namespace,
                    table: record.name,
                    holder: holder.to_owned(),
                    selection,
                    created_at,
                    expires_at,
                    batch_ids,
                });
            }
        }
        Err(CatalogError::Unavailable(
            "garbage collection kept expiring what this lease resolved; retry".into(),
        ))
    }

    /// Every batch a selection resolves to, all pages read as of one moment.
    async fn resolve_all(
        &self,
        namespace: &str,
        table: &str,
        partitions: &[Vec<(String, String)>],
        selector: &Selector,
    ) -> CatalogResult<(TableRecord, Vec<String>)> {
        let mut token = String::new();
        let mut batch_ids = Vec::new();
        loop {
            let (record, page) = self
                .resolve(namespace, table, partitions, selector, &[], 0, &token)
                .await?;
            batch_ids.extend(page.items.into_iter().map(|r| r.batch_id));
            if batch_ids.len() > limits::MAX_LEASE_BATCHES {
                return Err(CatalogError::InvalidArgument(format!(
                    "a lease pins at most {} batches; this selection has more (name fewer \
                     partitions)",
                    limits::MAX_LEASE_BATCHES
                )));
            }
            if page.next_page_token.is_empty() {
                return Ok((record, batch_ids));
            }
            token = page.next_page_token;
        }
    }

    /// Records the batches under a lease (and with `as_of`, every batch of the table current at
    /// that moment) and checks, in the same transaction and under the table's shared commit
    /// lock, that GC has expired none of them.
    async fn pin(
        &self,
        table: &TableRecord,
        to: &PinTo<'_>,
        batch_ids: &[String],
        as_of: Option<Micros>,
    ) -> CatalogResult<Pinned> {
        let mut tx = self.pool.begin().await?;
        self.share_commit_locks(&mut tx, &[table.id]).await?;
        let (lease_id, expires_at, pinned_as_of) = match to {
            PinTo::New {
                name,
                holder,
                selection,
                ttl,
            } => {
                let (id, expires) = self
                    .insert_lease(&mut tx, table, *name, holder, selection, *ttl, as_of)
                    .await?;
                (id, expires, as_of)
            }
            PinTo::Existing {
                lease_id,
                holder,
                ttl,
            } => {
                // Each page of a read extends its lease, so paging cannot outlast it.
                let row = sqlx::query(self.sql(
                    "UPDATE leases SET expires_at_us = {max}(expires_at_us, {now} + $4) \
                     WHERE lease_id = $1 AND holder = $2 AND table_id = $3 \
                       AND expires_at_us > {now} \
                     RETURNING expires_at_us, as_of_us",
                ))
                .bind(*lease_id)
                .bind(*holder)
                .bind(table.id)
                .bind(ttl.as_micros() as i64)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Err(lease_not_found(lease_id, lease_id));
                };
                (
                    (*lease_id).to_owned(),
                    row.try_get("expires_at_us")?,
                    row.try_get::<Option<Micros>, _>("as_of_us")?,
                )
            }
        };
        // A lease pinned as of a moment covers this page's batches already.
        if pinned_as_of.is_none() || matches!(to, PinTo::New { .. }) {
            for chunk in batch_ids.chunks(INSERT_CHUNK) {
                let values = (0..chunk.len())
                    .map(|i| format!("($1, ${})", i + 2))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut insert = sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO lease_batches (lease_id, batch_id) VALUES {values} \
                     ON CONFLICT DO NOTHING"
                )))
                .bind(&lease_id);
                for id in chunk {
                    insert = insert.bind(id);
                }
                insert.execute(&mut *tx).await?;
            }
        }
        let expired = match (first_expired(&mut tx, &lease_id).await?, as_of) {
            (Some(batch_id), _) => Some(batch_id),
            (None, Some(moment)) => self.expired_as_of(&mut tx, table.id, moment).await?,
            (None, None) => None,
        };
        if let Some(batch_id) = expired {
            tx.rollback().await?;
            return Ok(Pinned::Expired { batch_id });
        }
        tx.commit().await?;
        Ok(Pinned::Lease {
            lease_id,
            expires_at,
        })
    }

    /// A batch of the table that was current at `moment` and that GC has expired, if any.
    async fn expired_as_of(
        &self,
        conn: &mut AnyConnection,
        table_id: i64,
        moment: Micros,
    ) -> CatalogResult<Option<String>> {
        let row = sqlx::query(
            "SELECT b.batch_id FROM batches b JOIN history h ON h.batch_id = b.batch_id \
             WHERE b.table_id = $1 AND b.expired_at_us IS NOT NULL AND h.committed_at_us <= $2 \
               AND COALESCE((SELECT h2.committed_at_us FROM history h2 \
                             WHERE h2.partition_id = h.partition_id \
                               AND h2.version = h.version + 1), $3) > $2 \
             LIMIT 1",
        )
        .bind(table_id)
        .bind(moment)
        .bind(Micros::MAX)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|r| r.try_get("batch_id")).transpose()?)
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_lease(
        &self,
        conn: &mut AnyConnection,
        table: &TableRecord,
        name: Option<&str>,
        holder: &str,
        selection: &str,
        ttl: Duration,
        as_of: Option<Micros>,
    ) -> CatalogResult<(String, Micros)> {
        if let Some(name) = name {
            // A name whose lease ran out is free again.
            sqlx::query(self.sql(
                "DELETE FROM leases WHERE table_id = $1 AND name = $2 AND expires_at_us <= {now}",
            ))
            .bind(table.id)
            .bind(name)
            .execute(&mut *conn)
            .await?;
            let held: i64 = sqlx::query(self.sql(
                "SELECT COUNT(*) AS held FROM leases \
                 WHERE holder = $1 AND name IS NOT NULL AND expires_at_us > {now}",
            ))
            .bind(holder)
            .fetch_one(&mut *conn)
            .await?
            .try_get("held")?;
            if held >= self.settings.max_named_leases_per_holder {
                return Err(CatalogError::FailedPrecondition(format!(
                    "{} already holds {held} live named leases, the most one holder may; \
                     release some (tablectl leases lists them) before taking another",
                    quote_for_message(holder)
                )));
            }
        }
        let lease_id = uuid::Uuid::now_v7().to_string();
        let inserted = sqlx::query(self.sql(
            "INSERT INTO leases (lease_id, table_id, name, holder, selection, created_at_us, \
                                 expires_at_us, as_of_us) \
             VALUES ($1, $2, $3, $4, $5, {now}, {now} + $6, $7) RETURNING expires_at_us",
        ))
        .bind(&lease_id)
        .bind(table.id)
        .bind(name)
        .bind(holder)
        .bind(selection)
        .bind(ttl.as_micros() as i64)
        .bind(as_of)
        .fetch_one(&mut *conn)
        .await;
        match inserted {
            Ok(row) => Ok((lease_id, row.try_get("expires_at_us")?)),
            Err(e) => Err(match CatalogError::from(e) {
                CatalogError::AlreadyExists(_) => CatalogError::AlreadyExists(format!(
                    "{} already has a live lease named {}; extend it, release it, or pick \
                     another name",
                    table.qualified(),
                    quote_for_message(name.unwrap_or_default())
                )),
                other => other,
            }),
        }
    }

    /// Extends a live lease to `ttl` from now. Only its holder may (or, with `any_holder`, an
    /// administrator). A lease that ran out can still be extended while GC has expired none
    /// of its batches.
    ///
    /// # Errors
    /// `NotFound` for an unknown lease or one held by another; `FailedPrecondition` when a
    /// batch it pinned was expired meanwhile.
    pub async fn extend_lease(
        &self,
        lease: &LeaseRef<'_>,
        holder: &str,
        any_holder: bool,
        ttl: Option<Duration>,
    ) -> CatalogResult<Micros> {
        let ttl = self.lease_ttl(ttl)?;
        let (lease_id, table_id) = self.find_lease(lease, holder, any_holder).await?;
        let mut tx = self.pool.begin().await?;
        self.share_commit_locks(&mut tx, &[table_id]).await?;
        if let Some(batch_id) = first_expired(&mut tx, &lease_id).await? {
            tx.rollback().await?;
            return Err(CatalogError::FailedPrecondition(format!(
                "lease {lease_id} ran out and garbage collection has since expired batch \
                 {batch_id}; take a new lease on what is still there"
            )));
        }
        let row = sqlx::query(self.sql(
            "UPDATE leases SET expires_at_us = {now} + $2 WHERE lease_id = $1 \
             RETURNING expires_at_us",
        ))
        .bind(&lease_id)
        .bind(ttl.as_micros() as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Err(lease_not_found(&lease_id, &lease_id));
        };
        tx.commit().await?;
        Ok(row.try_get("expires_at_us")?)
    }

    /// Releases a lease: its batches are no longer pinned by it. Returns false when there was
    /// no such lease.
    ///
    /// # Errors
    /// `NotFound` for a lease held by another (unless `any_holder`).
    pub async fn release_lease(
        &self,
        lease: &LeaseRef<'_>,
        holder: &str,
        any_holder: bool,
    ) -> CatalogResult<bool> {
        let lease_id = match self.find_lease(lease, holder, any_holder).await {
            Ok((id, _)) => id,
            Err(CatalogError::NotFound { .. }) => return Ok(false),
            Err(other) => return Err(other),
        };
        let deleted = sqlx::query("DELETE FROM leases WHERE lease_id = $1")
            .bind(&lease_id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The namespace and table a lease is on (for the caller's permission check).
    ///
    /// # Errors
    /// `NotFound` for an unknown lease.
    pub async fn lease_table(&self, lease: &LeaseRef<'_>) -> CatalogResult<(String, String)> {
        match lease {
            LeaseRef::Named {
                namespace, table, ..
            } => Ok(((*namespace).to_owned(), (*table).to_owned())),
            LeaseRef::Id(id) => {
                let row = sqlx::query(
                    "SELECT n.name AS namespace, t.name AS table_name FROM leases l \
                     JOIN tables t ON t.id = l.table_id JOIN namespaces n ON n.id = t.namespace_id \
                     WHERE l.lease_id = $1",
                )
                .bind(*id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| lease_not_found(id, id))?;
                Ok((row.try_get("namespace")?, row.try_get("table_name")?))
            }
        }
    }

    /// `(lease_id, table_id)` of a lease the caller holds.
    async fn find_lease(
        &self,
        lease: &LeaseRef<'_>,
        holder: &str,
        any_holder: bool,
    ) -> CatalogResult<(String, i64)> {
        let row = match lease {
            LeaseRef::Id(id) => {
                sqlx::query("SELECT lease_id, table_id, holder FROM leases WHERE lease_id = $1")
                    .bind(*id)
                    .fetch_optional(&self.pool)
                    .await?
            }
            LeaseRef::Named {
                namespace,
                table,
                name,
            } => {
                let record = self.table(namespace, table).await?;
                sqlx::query(
                    "SELECT lease_id, table_id, holder FROM leases \
                     WHERE table_id = $1 AND name = $2",
                )
                .bind(record.id)
                .bind(*name)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        let (name, what) = match lease {
            LeaseRef::Id(id) => (*id, (*id).to_owned()),
            LeaseRef::Named { name, .. } => (*name, quote_for_message(name)),
        };
        let Some(row) = row else {
            return Err(lease_not_found(name, &what));
        };
        let owner: String = row.try_get("holder")?;
        if owner != holder && !any_holder {
            return Err(CatalogError::not_found(
                Missing::Lease,
                name,
                format!(
                    "lease {what} is held by {}, not by {}; only its holder (or an \
                     administrator of the namespace) may extend or release it",
                    quote_for_message(&owner),
                    quote_for_message(holder)
                ),
            ));
        }
        Ok((row.try_get("lease_id")?, row.try_get("table_id")?))
    }

    /// Live leases in the order they were taken (lease ids, UUIDv7), a page at a time, with the
    /// namespace of each. Renewing a lease does not move it, so paging is stable.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad page token.
    pub async fn list_leases(
        &self,
        namespace: &str,
        table: &str,
        include_reads: bool,
        page_size_requested: i32,
        page_token: &str,
    ) -> CatalogResult<Page<LeaseRecord>> {
        // Lease ids are UUIDv7, in the order leases were taken; a token is the last one listed.
        if !page_token.is_empty() {
            super::writes::check_batch_id(page_token).map_err(|_| bad_token())?;
        }
        let limit = page_size(page_size_requested)?;
        let rows = sqlx::query(self.sql(
            "SELECT l.lease_id, l.name, l.holder, l.selection, l.created_at_us, \
                    l.expires_at_us, n.name AS namespace, t.name AS table_name \
             FROM leases l JOIN tables t ON t.id = l.table_id \
                  JOIN namespaces n ON n.id = t.namespace_id \
             WHERE l.expires_at_us > {now} AND ($1 = '' OR n.name = $1) \
               AND ($2 = '' OR t.name = $2) AND ($3 OR l.name IS NOT NULL) \
               AND l.lease_id > $4 \
             ORDER BY l.lease_id LIMIT $5",
        ))
        .bind(namespace)
        .bind(table)
        .bind(include_reads)
        .bind(page_token)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut leases = rows
            .iter()
            .map(|row| {
                Ok(LeaseRecord {
                    lease_id: row.try_get("lease_id")?,
                    name: row.try_get("name")?,
                    namespace: row.try_get("namespace")?,
                    table: row.try_get("table_name")?,
                    holder: row.try_get("holder")?,
                    selection: row.try_get("selection")?,
                    created_at: row.try_get("created_at_us")?,
                    expires_at: row.try_get("expires_at_us")?,
                    batch_ids: Vec::new(),
                })
            })
            .collect::<CatalogResult<Vec<_>>>()?;
        Ok(paginate(&mut leases, limit, |l| l.lease_id.clone()))
    }

    /// A batch's GC expiry, read inside a transaction.
    pub(super) async fn expiry_in(
        &self,
        conn: &mut AnyConnection,
        batch_id: &str,
    ) -> CatalogResult<Option<Expiry>> {
        let row =
            sqlx::query("SELECT expired_at_us, expired_reason FROM batches WHERE batch_id = $1")
                .bind(batch_id)
                .fetch_optional(&mut *conn)
                .await?;
        match row {
            Some(row) => super::expiry_from_row(&row),
            None => Ok(None),
        }
    }

    /// The refusal to read a batch GC expired: when, and why.
    pub(super) async fn expired_error(&self, batch_id: &str) -> CatalogError {
        let row =
            sqlx::query("SELECT expired_at_us, expired_reason FROM batches WHERE batch_id = $1")
                .bind(batch_id)
                .fetch_optional(&self.pool)
                .await;
        match row {
            Ok(Some(row)) => match super::expiry_from_row(&row) {
                Ok(Some(expiry)) => expired(batch_id, expiry.at, &expiry.reason),
                Ok(None) => CatalogError::Unavailable(format!(
                    "batch {batch_id} changed while it was being read; retry"
                )),
                Err(e) => e,
            },
            Ok(None) => CatalogError::not_found(
                Missing::Batch,
                batch_id,
                format!("batch {batch_id} does not exist"),
            ),
            Err(e) => e.into(),
        }
    }
}

/// The first batch of a lease that GC has expired, if any.
async fn first_expired(conn: &mut AnyConnection, lease_id: &str) -> CatalogResult<Option<String>> {
    let row = sqlx::query(
        "SELECT b.batch_id FROM lease_batches lb JOIN batches b ON b.batch_id = lb.batch_id \
         WHERE lb.lease_id = $1 AND b.expired_at_us IS NOT NULL LIMIT 1",
    )
    .bind(lease_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get("batch_id")).transpose()?)
}

/// The error for reading a batch GC expired.
pub(super) fn expired(batch_id: &str, at: Micros, reason: &str) -> CatalogError {
    CatalogError::not_found(
        Missing::Version,
        batch_id,
        format!(
            "batch {batch_id} was expired by garbage collection at {} ({reason}); its files \
             are deleted and it can no longer be read. Tag a batch or hold a lease to keep it",
            format_micros(at)
        ),
    )
}

/// No live lease `name` (shown as `shown`: a name is quoted, an id is not).
fn lease_not_found(name: &str, shown: &str) -> CatalogError {
    CatalogError::not_found(
        Missing::Lease,
        name,
        format!("there is no live lease {shown}; it ran out or was released"),
    )
}

/// A lease's selection in words.
fn describe_selection(
    selector: &Selector,
    table: &TableRecord,
    partitions: &[Vec<(String, String)>],
    batches: usize,
) -> String {
    let which = match selector {
        Selector::Current => "current".to_owned(),
        Selector::Version(v) => format!("version {v}"),
        Selector::Batch(b) => format!("batch {b}"),
        Selector::Tag(t) => format!("tag {}", quote_for_message(t)),
        Selector::AsOf(t) => format!("as of {}", format_micros(*t)),
    };
    let of = if partitions.is_empty() {
        format!("every partition of {}", table.qualified())
    } else {
        format!(
            "{} named partitions of {}",
            partitions.len(),
            table.qualified()
        )
    };
    format!("{which} of {of} ({batches} batches)")
}
