//! A commit request whose batches are committed already is a retry. It is compared with what
//! was committed, field by field: the same files (path, size, rows), the same schema, the same
//! message and lineage, and an expectation that held when the commit was made. Identical →
//! the original versions; any difference → `FailedPrecondition` naming it, and nothing changes.

use super::{committed_version, is_committed};
use crate::catalog::Catalog;
use crate::error::{CatalogError, CatalogResult};
use crate::model::{BatchRecord, CommitOutcome, DataFile, ExpectedCurrent, PartitionUpdate};
use crate::schema;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};

/// What the catalog recorded about a committed batch, beyond its row.
struct Recorded {
    schema: Vec<u8>,
    message: String,
    /// The batch the partition pointed at before this commit (`None` for its first version).
    previous: Option<String>,
    inputs: BTreeSet<String>,
}

impl Catalog {
    /// When every batch of the request is committed already, the answer to the retry; `None`
    /// when none is. `settled` says that the batches were read after a commit of theirs that
    /// was in flight ended (the commit's own transaction found them committed): before that,
    /// batches read one by one may show such a commit half done, and `None` lets the
    /// transaction find out.
    ///
    /// # Errors
    /// `FailedPrecondition` when only some batches are committed (once settled), when they
    /// were committed by different commits, or when the request differs from the commit it
    /// repeats.
    pub(super) async fn answer_retry(
        &self,
        updates: &[PartitionUpdate],
        batches: &[BatchRecord],
        message: &str,
        settled: bool,
    ) -> CatalogResult<Option<CommitOutcome>> {
        let committed = batches.iter().filter(|b| is_committed(b)).count();
        if committed == 0 || (committed < batches.len() && !settled) {
            return Ok(None);
        }
        if committed < batches.len() {
            let done = batches.iter().find(|b| is_committed(b));
            return Err(CatalogError::FailedPrecondition(format!(
                "batch {} was already committed by an earlier commit, but other batches of this \
                 commit were not; commit the remaining batches on their own",
                done.map(|b| b.batch_id.as_str()).unwrap_or_default()
            )));
        }
        let stamps: BTreeSet<_> = batches.iter().map(|b| b.committed_at).collect();
        if stamps.len() > 1 {
            return Err(CatalogError::FailedPrecondition(
                "the batches of this commit were committed by different commits, so it is not a \
                 retry of one of them; nothing was changed"
                    .into(),
            ));
        }
        let ids: Vec<String> = batches.iter().map(|b| b.batch_id.clone()).collect();
        let mut files = self.files_of(&ids).await?;
        let mut out = Vec::with_capacity(batches.len());
        for (update, batch) in updates.iter().zip(batches) {
            let recorded = self.recorded(batch).await?;
            let committed_files = files.remove(&batch.batch_id).unwrap_or_default();
            if let Some(difference) = difference(update, message, &recorded, &committed_files) {
                return Err(CatalogError::FailedPrecondition(format!(
                    "batch {} was already committed as version {} of partition {} of {}, but \
                     this retry differs from that commit: {difference}. Nothing was changed; \
                     begin a new write to commit different data",
                    batch.batch_id,
                    batch.version.unwrap_or_default(),
                    batch.partition.describe(&batch.table.keys),
                    batch.table.qualified()
                )));
            }
            out.push(committed_version(
                batch,
                batch.version.unwrap_or_default(),
                batch.committed_at.unwrap_or_default(),
                batch.rows,
                batch.bytes,
            ));
        }
        Ok(Some(CommitOutcome {
            committed: out,
            already_committed: true,
        }))
    }

    async fn recorded(&self, batch: &BatchRecord) -> CatalogResult<Recorded> {
        let version = batch.version.unwrap_or_default();
        let row = sqlx::query(
            "SELECT b.arrow_schema, h.message, \
                    (SELECT h2.batch_id FROM history h2 \
                      WHERE h2.partition_id = h.partition_id AND h2.version = h.version - 1) \
                      AS previous \
             FROM batches b JOIN history h \
                  ON h.partition_id = b.partition_id AND h.version = $2 \
             WHERE b.batch_id = $1",
        )
        .bind(&batch.batch_id)
        .bind(version)
        .fetch_one(&self.pool)
        .await?;
        let inputs = sqlx::query("SELECT input_batch_id FROM lineage WHERE batch_id = $1")
            .bind(&batch.batch_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("input_batch_id"))
            .collect::<Result<_, _>>()?;
        Ok(Recorded {
            schema: row
                .try_get::<Option<Vec<u8>>, _>("arrow_schema")?
                .unwrap_or_default(),
            message: row.try_get("message")?,
            previous: row.try_get("previous")?,
            inputs,
        })
    }
}

/// The first way a retried update differs from what was committed, in words.
fn difference(
    update: &PartitionUpdate,
    message: &str,
    recorded: &Recorded,
    committed_files: &[DataFile],
) -> Option<String> {
    let sent: BTreeMap<&str, &DataFile> =
        update.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let kept: BTreeMap<&str, &DataFile> = committed_files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    if let Some(extra) = sent.keys().find(|p| !kept.contains_key(*p)) {
        return Some(format!("it lists file {extra}, which the commit did not"));
    }
    if let Some(missing) = kept.keys().find(|p| !sent.contains_key(*p)) {
        return Some(format!(
            "it does not list file {missing}, which the commit did"
        ));
    }
    for (path, file) in &sent {
        let was = kept[path];
        if (file.size_bytes, file.rows) != (was.size_bytes, was.rows) {
            return Some(format!(
                "file {path} has {} bytes and {} rows in it, but {} bytes and {} rows in the commit",
                file.size_bytes, file.rows, was.size_bytes, was.rows
            ));
        }
    }
    if update.arrow_schema != recorded.schema {
        let same = match (
            schema::decode(&update.arrow_schema),
            schema::decode(&recorded.schema),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            return Some("its schema is not the schema of the commit".into());
        }
    }
    if message != recorded.message {
        return Some("its message is not the message of the commit".into());
    }
    let inputs: BTreeSet<String> = update.inputs.iter().cloned().collect();
    if inputs != recorded.inputs {
        return Some("its lineage inputs are not those of the commit".into());
    }
    match (&update.expected, &recorded.previous) {
        (None, _) | (Some(ExpectedCurrent::Nothing), None) => None,
        (Some(ExpectedCurrent::Batch(e)), Some(p)) if e == p => None,
        (Some(ExpectedCurrent::Nothing), Some(p)) => Some(format!(
            "it expects a partition never written, but the commit replaced batch {p}"
        )),
        (Some(ExpectedCurrent::Batch(e)), previous) => Some(format!(
            "it expects the partition to be at batch {e}, but the commit replaced {}",
            previous
                .as_deref()
                .map_or("nothing (the partition was new)".to_owned(), |p| format!(
                    "batch {p}"
                ))
        )),
    }
}
