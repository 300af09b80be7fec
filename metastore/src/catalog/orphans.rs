//! Orphans: what the warehouse holds that no known batch owns, found exactly (by the catalog's
//! record of every batch directory and every committed file), never by age.
//!
//! The warehouse is listed *before* the catalog is asked about what was listed. A writer
//! records its batch (BeginWrite) before it uploads, so every file a listing can see belongs
//! to a batch the later catalog read knows: a write in progress is never taken for an orphan.

use super::Catalog;
use crate::error::{CatalogError, CatalogResult};
use crate::limits;
use crate::model::Orphan;
use crate::warehouse::StoredObject;
use futures::StreamExt;
use sqlx::{AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};

/// Objects classified per catalog round trip.
const CLASSIFY_CHUNK: usize = 5000;

/// What a search for orphans found (and deleted).
#[derive(Debug, Clone, Default)]
pub struct OrphanReport {
    /// The first `limit` orphans found.
    pub orphans: Vec<Orphan>,
    pub total: i64,
    pub total_bytes: i64,
    pub scanned: i64,
    pub deleted: Vec<String>,
    /// Entries the listing could not read (skipped), and the first such error.
    pub unreadable: i64,
    pub first_unreadable: Option<String>,
}

/// What the catalog knows of one batch directory.
struct KnownBatch {
    dir: String,
    /// `Some` for a committed batch: exactly the files it committed.
    files: Option<HashSet<String>>,
    deleted: bool,
}

impl Catalog {
    /// Lists every object of the warehouse that is not part of a known batch: outside any
    /// batch directory, in a directory of a batch the catalog does not know (or not where it
    /// put it), of a batch GC deleted, or beside the files a batch committed.
    ///
    /// # Errors
    /// `Unavailable` when storage or the catalog cannot be reached.
    pub async fn find_orphans(&self, limit: usize) -> CatalogResult<OrphanReport> {
        let limit = match limit {
            0 => 1000,
            n => n.min(limits::MAX_ORPHANS_PER_CALL),
        };
        let mut report = OrphanReport::default();
        let mut listing = Box::pin(self.warehouse.list_all());
        let mut chunk = Vec::with_capacity(CLASSIFY_CHUNK);
        loop {
            let next = listing.next().await;
            let done = next.is_none();
            match next {
                Some(Ok(object)) => chunk.push(object),
                // Storage down: no answer is better than a partial one.
                Some(Err(CatalogError::Unavailable(message))) => {
                    return Err(CatalogError::Unavailable(message));
                }
                // One entry that cannot be listed (a name storage cannot represent, a
                // directory without permission) does not hide the rest.
                Some(Err(error)) => {
                    report.unreadable += 1;
                    report
                        .first_unreadable
                        .get_or_insert_with(|| error.to_string());
                }
                None => {}
            }
            if chunk.len() >= CLASSIFY_CHUNK || (done && !chunk.is_empty()) {
                report.scanned += chunk.len() as i64;
                for (object, reason) in self.classify(std::mem::take(&mut chunk)).await? {
                    report.total += 1;
                    report.total_bytes += object.size;
                    if report.orphans.len() < limit {
                        report.orphans.push(Orphan {
                            path: object.path,
                            size_bytes: object.size,
                            last_modified: object.last_modified,
                            reason,
                        });
                    }
                }
            }
            if done {
                break;
            }
        }
        report.orphans.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(report)
    }

    /// Deletes the given paths (relative to the warehouse root), each only if it is still an
    /// orphan when checked again now. Returns the paths deleted.
    ///
    /// # Errors
    /// `InvalidArgument` for too many or malformed paths; storage errors.
    pub async fn delete_orphans(&self, paths: &[String]) -> CatalogResult<Vec<String>> {
        if paths.len() > limits::MAX_ORPHANS_PER_CALL {
            return Err(CatalogError::InvalidArgument(format!(
                "at most {} orphans are deleted per call; {} were named",
                limits::MAX_ORPHANS_PER_CALL,
                paths.len()
            )));
        }
        let objects = paths
            .iter()
            .map(|p| StoredObject {
                path: p.clone(),
                size: 0,
                last_modified: 0,
            })
            .collect();
        let mut deleted = Vec::new();
        for (object, _) in self.classify(objects).await? {
            if self.warehouse.delete_relative(&object.path).await? {
                deleted.push(object.path);
            }
        }
        Ok(deleted)
    }

    /// The objects that are orphans, with why.
    async fn classify(
        &self,
        objects: Vec<StoredObject>,
    ) -> CatalogResult<Vec<(StoredObject, String)>> {
        let ids: Vec<String> = objects
            .iter()
            .filter_map(|o| batch_part(&o.path).map(|(id, _, _)| id.to_owned()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let known = self.known_batches(&ids).await?;
        let mut orphans = Vec::new();
        for object in objects {
            let reason = match batch_part(&object.path) {
                None => Some("not inside a batch directory".to_owned()),
                Some((id, dir, file)) => match known.get(id) {
                    None => Some(format!("batch {id} is unknown to the catalog")),
                    Some(batch) if batch.dir != dir => {
                        Some(format!("batch {id} lives in {}, not here", batch.dir))
                    }
                    Some(batch) if batch.deleted => {
                        Some(format!("batch {id} was deleted by garbage collection"))
                    }
                    Some(KnownBatch {
                        files: Some(files), ..
                    }) if !files.contains(file) => {
                        Some(format!("not among the files batch {id} committed"))
                    }
                    Some(_) => None,
                },
            };
            if let Some(reason) = reason {
                orphans.push((object, reason));
            }
        }
        Ok(orphans)
    }

    /// What the catalog knows of these batch ids.
    async fn known_batches(&self, ids: &[String]) -> CatalogResult<HashMap<String, KnownBatch>> {
        let mut known = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let placeholders = super::placeholders(1, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT batch_id, location, version, deleted_at_us FROM batches \
                 WHERE batch_id IN ({placeholders})"
            )));
            for id in chunk {
                query = query.bind(id);
            }
            let rows = query.fetch_all(&self.pool).await?;
            let committed: Vec<String> = rows
                .iter()
                .filter(|r| matches!(r.try_get::<Option<i64>, _>("version"), Ok(Some(_))))
                .map(|r| r.try_get("batch_id"))
                .collect::<Result<_, _>>()?;
            let mut files = self.files_of(&committed).await?;
            for row in &rows {
                let id: String = row.try_get("batch_id")?;
                let location: String = row.try_get("location")?;
                let dir = match self.warehouse.relative_dir(&location) {
                    Ok(dir) => dir.to_owned(),
                    // Written under another warehouse: nothing here can be its.
                    Err(_) => location,
                };
                let files = files
                    .remove(&id)
                    .map(|list| list.into_iter().map(|f| f.path).collect());
                let is_committed = row.try_get::<Option<i64>, _>("version")?.is_some();
                known.insert(
                    id,
                    KnownBatch {
                        dir,
                        files: if is_committed {
                            Some(files.unwrap_or_default())
                        } else {
                            None
                        },
                        deleted: row.try_get::<Option<i64>, _>("deleted_at_us")?.is_some(),
                    },
                );
            }
        }
        Ok(known)
    }
}

/// `(batch id, batch directory, file inside it)` of a path under a `_batch=ID` directory.
fn batch_part(path: &str) -> Option<(&str, &str, &str)> {
    let marker = if path.starts_with("_batch=") {
        0
    } else {
        path.find("/_batch=")? + 1
    };
    let rest = &path[marker..];
    let slash = rest.find('/')?;
    let id = &rest["_batch=".len()..slash];
    let file = &rest[slash + 1..];
    if id.is_empty() || file.is_empty() {
        return None;
    }
    Some((id, &path[..marker + slash], file))
}

#[cfg(test)]
mod tests {
    use super::batch_part;

    #[test]
    fn batch_parts_are_found_by_segment() {
        assert_eq!(
            batch_part("ns/t/ds=1/_batch=abc/part-0.parquet"),
            Some(("abc", "ns/t/ds=1/_batch=abc", "part-0.parquet"))
        );
        assert_eq!(
            batch_part("ns/t/_batch=abc/sub/x"),
            Some(("abc", "ns/t/_batch=abc", "sub/x"))
        );
        assert_eq!(batch_part("ns/t/ds=1/stray.parquet"), None);
        assert_eq!(batch_part("ns/t/ds=1/_batch=abc"), None);
        assert_eq!(batch_part("ns/t/x_batch=abc/f"), None);
    }
}
