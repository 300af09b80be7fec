//! Lifecycle: retention, dropped tables, leases and garbage collection, in the user's terms.
//!
//! A read pins what it resolved with a lease of its own ([`ReadLease`]), extended while it
//! runs and released after, so garbage collection never deletes files under it, however long
//! it takes. A job pins a selection with a named lease ([`Client::acquire_lease`]).

use crate::client::{Client, Rpc, all_pages, missing};
use crate::commit::repeat_while_unknown;
use crate::error::{ClientError, Result};
use crate::partition::PartitionSpec;
use crate::read::selector_to_pb;
use crate::types::{Retention, Selector, TableInfo, TableName, from_micros};
use crate::wire::{retention_from_pb, retention_to_pb, spec_to_pb, table_info, table_ref};
use batchstore_proto::v1 as pb;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// The lease a read takes on what it resolved; extended every third of it while it runs.
pub(crate) const READ_LEASE: Duration = Duration::from_secs(120);

/// A lease, by id or by its table and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseName {
    Id(String),
    Named(TableName, String),
}

/// A live lease.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseInfo {
    pub lease_id: String,
    /// Empty for a read's own lease.
    pub name: String,
    pub table: TableName,
    pub holder: String,
    pub selection: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The batches it pins (filled in when the lease is taken, not when listed).
    pub batch_ids: Vec<String>,
}

/// Where garbage collection works.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GcScope {
    #[default]
    All,
    Namespace(String),
    Table(TableName),
}

/// What garbage collection did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GcCounts {
    pub batches_expired: i64,
    pub batches_deleted: i64,
    pub files_deleted: i64,
    pub bytes_deleted: i64,
    pub tables_purged: i64,
    /// Batches whose files could not be deleted this run (a later run tries again).
    pub batches_failed: i64,
}

impl std::ops::AddAssign for GcCounts {
    fn add_assign(&mut self, o: GcCounts) {
        self.batches_expired += o.batches_expired;
        self.batches_deleted += o.batches_deleted;
        self.files_deleted += o.files_deleted;
        self.bytes_deleted += o.bytes_deleted;
        self.tables_purged += o.tables_purged;
        self.batches_failed += o.batches_failed;
    }
}

/// How a run is going, after each step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcProgress {
    /// What the run did so far.
    pub done: GcCounts,
    /// Batches expired and not yet deleted in the scope.
    pub remaining: i64,
    /// Why batches could not be deleted (the first few of the run).
    pub errors: Vec<String>,
}

/// Something under the warehouse no known batch owns.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// Relative to the warehouse root.
    pub path: String,
    pub size_bytes: i64,
    pub last_modified: DateTime<Utc>,
    pub reason: String,
}

/// What a search for orphans found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrphanReport {
    pub orphans: Vec<Orphan>,
    /// All found (more than listed past the limit), and their bytes.
    pub total: i64,
    pub total_bytes: i64,
    /// Objects looked at.
    pub scanned: i64,
    /// Entries the listing could not read (skipped), and the first such error.
    pub unreadable: i64,
    pub first_unreadable: String,
}

impl Client {
    /// Sets a table's retention (or with `table` = `None`, the namespace's default). Rules left
    /// unset are cleared. Returns the retention garbage collection now applies.
    ///
    /// # Errors
    /// `InvalidArgument` for a rule out of range; `NotFound`; `PermissionDenied` without admin.
    pub async fn set_retention(
        &self,
        namespace: &str,
        table: Option<&str>,
        retention: &Retention,
    ) -> Result<Retention> {
        let reply = self
            .rpc
            .clone()
            .set_retention(pb::SetRetentionRequest {
                namespace: namespace.to_owned(),
                table: table.unwrap_or_default().to_owned(),
                retention: Some(retention_to_pb(retention)),
            })
            .await?
            .into_inner();
        Ok(retention_from_pb(reply.effective_retention.as_ref()))
    }

    /// Brings back the most recently dropped table of this name, as it was.
    ///
    /// # Errors
    /// `NotFound` when nothing can be undropped (the message says why); `AlreadyExists` when a
    /// live table has the name.
    pub async fn undrop_table(&self, table: &TableName) -> Result<TableInfo> {
        let reply = self
            .rpc
            .clone()
            .undrop_table(pb::UndropTableRequest {
                table: Some(table_ref(table)),
            })
            .await?
            .into_inner();
        table_info(reply.table.ok_or_else(|| missing("table"))?)
    }

    /// Dropped tables that can still be undropped, in one namespace or all.
    ///
    /// # Errors
    /// `NotFound` for a missing namespace.
    pub async fn list_dropped_tables(&self, namespace: Option<&str>) -> Result<Vec<TableInfo>> {
        let namespace = namespace.unwrap_or_default().to_owned();
        crate::client::all_pages(|page_token| {
            let mut rpc = self.rpc.clone();
            let namespace = namespace.clone();
            async move {
                let page = rpc
                    .list_tables(pb::ListTablesRequest {
                        namespace,
                        page_size: 0,
                        page_token,
                        dropped: true,
                    })
                    .await?
                    .into_inner();
                let items = page
                    .tables
                    .into_iter()
                    .map(table_info)
                    .collect::<Result<_>>()?;
                Ok((items, page.next_page_token))
            }
        })
        .await
    }

    /// Pins a selection of a table (every partition when none is named) against garbage
    /// collection under a name, for `ttl` (the server's default when `None`).
    ///
    /// # Errors
    /// `AlreadyExists` when the table has a live lease of that name; as a read for the
    /// selection.
    pub async fn acquire_lease(
        &self,
        table: &TableName,
        partitions: &[PartitionSpec],
        selector: &Selector,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<LeaseInfo> {
        let reply = self
            .rpc
            .clone()
            .acquire_lease(pb::AcquireLeaseRequest {
                table: Some(table_ref(table)),
                partitions: partitions.iter().map(spec_to_pb).collect(),
                selector: Some(selector_to_pb(selector)),
                name: name.to_owned(),
                ttl_seconds: ttl_seconds(ttl),
            })
            .await?
            .into_inner();
        Ok(lease_info(reply.lease.ok_or_else(|| missing("lease"))?))
    }

    /// Extends a lease to `ttl` from now (the server's default when `None`); returns when it
    /// now expires.
    ///
    /// # Errors
    /// `NotFound` for an unknown lease or one held by another.
    pub async fn extend_lease(
        &self,
        lease: &LeaseName,
        ttl: Option<Duration>,
    ) -> Result<DateTime<Utc>> {
        let (lease_id, table, name) = lease_fields(lease);
        let reply = self
            .rpc
            .clone()
            .extend_lease(pb::ExtendLeaseRequest {
                lease_id,
                table,
                name,
                ttl_seconds: ttl_seconds(ttl),
            })
            .await?
            .into_inner();
        Ok(from_micros(reply.expires_at_micros))
    }

    /// Releases a lease; false when there was no such live lease.
    ///
    /// # Errors
    /// `NotFound` for a lease held by another.
    pub async fn release_lease(&self, lease: &LeaseName) -> Result<bool> {
        let (lease_id, table, name) = lease_fields(lease);
        let reply = self
            .rpc
            .clone()
            .release_lease(pb::ReleaseLeaseRequest {
                lease_id,
                table,
                name,
            })
            .await?
            .into_inner();
        Ok(reply.released)
    }

    /// Live leases (named ones; with `include_reads`, reads' own too), soonest to expire first.
    ///
    /// # Errors
    /// `PermissionDenied` for a namespace the caller may not read.
    pub async fn leases(
        &self,
        namespace: Option<&str>,
        table: Option<&str>,
        include_reads: bool,
    ) -> Result<Vec<LeaseInfo>> {
        let mut leases = all_pages(|page_token| {
            let mut rpc = self.rpc.clone();
            let request = pb::ListLeasesRequest {
                namespace: namespace.unwrap_or_default().to_owned(),
                table: table.unwrap_or_default().to_owned(),
                include_reads,
                page_size: 0,
                page_token,
            };
            async move {
                let page = rpc.list_leases(request).await?.into_inner();
                let items: Vec<LeaseInfo> = page.leases.into_iter().map(lease_info).collect();
                Ok((items, page.next_page_token))
            }
        })
        .await?;
        leases.sort_by(|a, b| (a.expires_at, &a.lease_id).cmp(&(b.expires_at, &b.lease_id)));
        Ok(leases)
    }

    /// Runs garbage collection in `scope` to the end, step by step, telling `progress` after
    /// each step; returns what it did (and why batches could not be deleted, if any could not).
    /// With `dry_run`, changes nothing and returns what a run would do. A run that is
    /// interrupted resumes when run again.
    ///
    /// # Errors
    /// `FailedPrecondition` while another run is in progress; `PermissionDenied` without admin.
    pub async fn collect_garbage(
        &self,
        scope: &GcScope,
        dry_run: bool,
        mut progress: impl FnMut(&GcProgress),
    ) -> Result<GcProgress> {
        let (namespace, table) = match scope {
            GcScope::All => (String::new(), String::new()),
            GcScope::Namespace(ns) => (ns.clone(), String::new()),
            GcScope::Table(t) => (t.namespace.clone(), t.table.clone()),
        };
        let mut state = GcProgress::default();
        // The run's id is chosen here, so a first step whose answer is lost is repeated as
        // the same run (which holds the GC lock), not as a second one.
        let mut resume_token = format!("{}:0:", uuid::Uuid::now_v7());
        loop {
            let request = pb::CollectGarbageRequest {
                namespace: namespace.clone(),
                table: table.clone(),
                dry_run,
                resume_token,
            };
            // A step is idempotent: one whose outcome is unknown (the metastore restarted) is
            // repeated with the same token, which resumes the same run.
            let step = repeat_while_unknown(|| {
                let mut rpc = self.rpc.clone();
                let request = request.clone();
                async move { rpc.collect_garbage(request).await }
            })
            .await
            .map_err(|(status, _)| ClientError::from(status))?
            .into_inner();
            state.done += gc_counts(step.counts.unwrap_or_default());
            state.remaining = step.remaining;
            for error in step.errors {
                if state.errors.len() < 10 {
                    state.errors.push(error);
                }
            }
            progress(&state);
            if !step.more || dry_run {
                return Ok(state);
            }
            resume_token = step.resume_token;
        }
    }

    /// Lists what the warehouse holds that no known batch owns (at most `limit`, 0 = the
    /// server's default).
    ///
    /// # Errors
    /// `PermissionDenied` without admin on every namespace.
    pub async fn find_orphans(&self, limit: usize) -> Result<OrphanReport> {
        let reply = self
            .rpc
            .clone()
            .find_orphans(pb::FindOrphansRequest {
                delete: Vec::new(),
                limit: i32::try_from(limit).unwrap_or(i32::MAX),
            })
            .await?
            .into_inner();
        Ok(OrphanReport {
            orphans: reply
                .orphans
                .into_iter()
                .map(|o| Orphan {
                    path: o.path,
                    size_bytes: o.size_bytes,
                    last_modified: from_micros(o.last_modified_micros),
                    reason: o.reason,
                })
                .collect(),
            total: reply.total,
            total_bytes: reply.total_bytes,
            scanned: reply.scanned,
            unreadable: reply.unreadable,
            first_unreadable: reply.first_unreadable,
        })
    }

    /// Deletes orphans found by [`Client::find_orphans`]; the metastore checks each again and
    /// deletes it only if it is still an orphan. Returns the paths deleted.
    ///
    /// # Errors
    /// `PermissionDenied` without admin on every namespace; storage errors.
    pub async fn delete_orphans(&self, paths: &[String]) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for chunk in paths.chunks(10_000) {
            let reply = self
                .rpc
                .clone()
                .find_orphans(pb::FindOrphansRequest {
                    delete: chunk.to_vec(),
                    limit: 0,
                })
                .await?
                .into_inner();
            deleted.extend(reply.deleted);
        }
        Ok(deleted)
    }
}

/// The lease a read holds on what it resolved: extended in the background while the read
/// runs, released when dropped. Without a lease id (an older metastore) it does nothing.
pub(crate) struct ReadLease {
    rpc: Rpc,
    lease_id: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// The runtime the lease was taken on, to release it from any thread (a Python or R
    /// object holding a manifest is dropped outside the runtime).
    runtime: tokio::runtime::Handle,
}

impl ReadLease {
    pub(crate) fn hold(rpc: Rpc, lease_id: String) -> Self {
        let renewer = (!lease_id.is_empty()).then(|| {
            let mut rpc = rpc.clone();
            let id = lease_id.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(READ_LEASE / 3).await;
                    let extended = rpc
                        .extend_lease(pb::ExtendLeaseRequest {
                            lease_id: id.clone(),
                            ttl_seconds: READ_LEASE.as_secs() as i64,
                            ..Default::default()
                        })
                        .await;
                    if let Err(status) = extended {
                        tracing::warn!(lease = %id, error = %status.message(), "extending a read's lease failed");
                    }
                }
            })
        });
        ReadLease {
            rpc,
            lease_id,
            renewer,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl ReadLease {
    pub(crate) fn lease_id(&self) -> &str {
        &self.lease_id
    }
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if self.lease_id.is_empty() {
            return;
        }
        // Released in the background; if the process ends first, the lease simply runs out.
        let mut rpc = self.rpc.clone();
        let lease_id = std::mem::take(&mut self.lease_id);
        self.runtime.spawn(async move {
            let _ = rpc
                .release_lease(pb::ReleaseLeaseRequest {
                    lease_id,
                    ..Default::default()
                })
                .await;
        });
    }
}

fn ttl_seconds(ttl: Option<Duration>) -> i64 {
    ttl.map(|d| d.as_secs().clamp(1, i64::MAX as u64) as i64)
        .unwrap_or(0)
}

fn lease_fields(lease: &LeaseName) -> (String, Option<pb::TableRef>, String) {
    match lease {
        LeaseName::Id(id) => (id.clone(), None, String::new()),
        LeaseName::Named(table, name) => (String::new(), Some(table_ref(table)), name.clone()),
    }
}

fn lease_info(l: pb::Lease) -> LeaseInfo {
    LeaseInfo {
        lease_id: l.lease_id,
        name: l.name,
        table: TableName::new(l.namespace, l.table),
        holder: l.holder,
        selection: l.selection,
        created_at: from_micros(l.created_at_micros),
        expires_at: from_micros(l.expires_at_micros),
        batch_ids: l.batch_ids,
    }
}

fn gc_counts(c: pb::GcCounts) -> GcCounts {
    GcCounts {
        batches_expired: c.batches_expired,
        batches_deleted: c.batches_deleted,
        files_deleted: c.files_deleted,
        bytes_deleted: c.bytes_deleted,
        tables_purged: c.tables_purged,
        batches_failed: c.batches_failed,
    }
}
