//! Reads: resolve a partition selection to batches, and list a table's partitions.
//!
//! Resolution joins partitions → history → batches, so every selector (current, version, batch,
//! tag, as-of) answers from the same append-only history, by index lookups only.

use super::namespaces::paginate;
use super::{Catalog, format_micros, page_size, partition_hash};
use crate::error::{CatalogError, CatalogResult};
use crate::model::{
    Page, PartitionSummary, PartitionValues, ResolvedPartition, Selector, TableRecord,
};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

const RESOLVE_SELECT: &str = "SELECT p.partition_values, h.batch_id, h.version, h.committed_at_us, \
            b.location, b.rows, b.bytes, b.arrow_schema \
     FROM partitions p JOIN history h ON h.partition_id = p.id \
          JOIN batches b ON b.batch_id = h.batch_id \
     WHERE p.table_id = $1 AND ";

impl Catalog {
    /// Resolves partitions of a table to the batches a read should use.
    ///
    /// With no partitions given, every partition that has a batch for the selector is returned.
    /// With partitions given, each must resolve, or the call fails naming it.
    ///
    /// # Errors
    /// `NotFound` for a missing table, partition, version, batch or tag, or a partition that
    /// had no data at an as-of time; `InvalidArgument` for bad partition values.
    pub async fn resolve(
        &self,
        namespace: &str,
        table: &str,
        partitions: &[Vec<(String, String)>],
        selector: &Selector,
    ) -> CatalogResult<(TableRecord, Vec<ResolvedPartition>)> {
        let table = self.table(namespace, table).await?;
        let specs = partitions
            .iter()
            .map(|pairs| PartitionValues::from_pairs(&table.keys, pairs))
            .collect::<CatalogResult<Vec<_>>>()?;
        let mut resolved = match selector {
            Selector::Batch(batch_id) => self.resolve_batch(&table, batch_id, &specs).await?,
            Selector::Tag(tag) => {
                let batch_id = self.tag_batch(&table, tag).await?;
                self.resolve_batch(&table, &batch_id, &specs).await?
            }
            _ if specs.is_empty() => {
                let rows = self.history_query(&table, selector, None).await?;
                rows.iter()
                    .map(|r| resolved_from_row(&table, r))
                    .collect::<CatalogResult<_>>()?
            }
            _ => {
                let mut out = Vec::with_capacity(specs.len());
                for spec in &specs {
                    match self
                        .history_query(&table, selector, Some(spec))
                        .await?
                        .first()
                    {
                        Some(row) => out.push(resolved_from_row(&table, row)?),
                        None => return Err(self.unresolved(&table, spec, selector).await),
                    }
                }
                out
            }
        };
        let ids: Vec<String> = resolved.iter().map(|r| r.batch_id.clone()).collect();
        let mut files = self.files_of(&ids).await?;
        for r in &mut resolved {
            r.files = files.get(&r.batch_id).cloned().unwrap_or_default();
        }
        files.clear();
        Ok((table, resolved))
    }

    async fn history_query(
        &self,
        table: &TableRecord,
        selector: &Selector,
        spec: Option<&PartitionValues>,
    ) -> CatalogResult<Vec<AnyRow>> {
        let condition = match selector {
            Selector::Current => "h.version = p.current_version",
            Selector::Version(_) => "h.version = $2",
            Selector::AsOf(_) => {
                "h.version = (SELECT MAX(h2.version) FROM history h2 \
                              WHERE h2.partition_id = p.id AND h2.committed_at_us <= $2)"
            }
            Selector::Batch(_) | Selector::Tag(_) => {
                return Err(CatalogError::Internal(
                    "batch selectors resolve elsewhere".into(),
                ));
            }
        };
        let (hash_param, value) = match selector {
            Selector::Version(v) => ("$3", Some(*v)),
            Selector::AsOf(t) => ("$3", Some(*t)),
            _ => ("$2", None),
        };
        let mut sql = format!("{RESOLVE_SELECT}{condition}");
        if spec.is_some() {
            sql.push_str(&format!(" AND p.partition_hash = {hash_param}"));
        }
        sql.push_str(" ORDER BY p.id");
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(table.id);
        if let Some(value) = value {
            query = query.bind(value);
        }
        if let Some(spec) = spec {
            query = query.bind(partition_hash(spec));
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    async fn resolve_batch(
        &self,
        table: &TableRecord,
        batch_id: &str,
        specs: &[PartitionValues],
    ) -> CatalogResult<Vec<ResolvedPartition>> {
        let batch = self.batch(batch_id, false).await?;
        if batch.table.id != table.id || batch.version.is_none() {
            return Err(CatalogError::NotFound(format!(
                "batch {batch_id} is not a committed batch of {}",
                table.qualified()
            )));
        }
        if !specs.is_empty() && !specs.contains(&batch.partition) {
            return Err(CatalogError::InvalidArgument(format!(
                "batch {batch_id} belongs to partition {}, which is not among the partitions asked for",
                batch.partition.describe(&table.keys)
            )));
        }
        Ok(vec![ResolvedPartition {
            partition: batch.partition.pairs(&table.keys),
            batch_id: batch.batch_id,
            version: batch.version.unwrap_or_default(),
            location: batch.location,
            files: Vec::new(),
            rows: batch.rows,
            bytes: batch.bytes,
            committed_at: batch.committed_at.unwrap_or_default(),
            arrow_schema: self.batch_schema(batch_id).await?,
        }])
    }

    async fn batch_schema(&self, batch_id: &str) -> CatalogResult<Vec<u8>> {
        let row = sqlx::query("SELECT arrow_schema FROM batches WHERE batch_id = $1")
            .bind(batch_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row
            .try_get::<Option<Vec<u8>>, _>("arrow_schema")?
            .unwrap_or_default())
    }

    /// Explains why a named partition did not resolve.
    async fn unresolved(
        &self,
        table: &TableRecord,
        spec: &PartitionValues,
        selector: &Selector,
    ) -> CatalogError {
        let name = spec.describe(&table.keys);
        let partition = match self.written_partition(table, spec).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        match selector {
            Selector::Version(v) => CatalogError::NotFound(format!(
                "partition {name} of {} has no version {v}; its versions are 1 to {}",
                table.qualified(),
                partition.current_version
            )),
            Selector::AsOf(t) => CatalogError::NotFound(format!(
                "partition {name} of {} had no data at {}; its first version is newer",
                table.qualified(),
                format_micros(*t)
            )),
            _ => CatalogError::NotFound(format!(
                "partition {name} of {} has never been written",
                table.qualified()
            )),
        }
    }

    /// Lists the partitions of a table that have a current batch, in creation order.
    ///
    /// # Errors
    /// `NotFound` for a missing table; `InvalidArgument` for a bad page token.
    pub async fn list_partitions(
        &self,
        namespace: &str,
        table: &str,
        page_size_requested: i32,
        page_token: &str,
    ) -> CatalogResult<(TableRecord, Page<PartitionSummary>)> {
        let table = self.table(namespace, table).await?;
        let after = parse_token(page_token)?;
        let limit = page_size(page_size_requested);
        let rows = sqlx::query(
            "SELECT id, partition_values, current_batch_id, current_version, rows, bytes, \
                    updated_at_us \
             FROM partitions WHERE table_id = $1 AND current_version > 0 AND id > $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(table.id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|row| {
                let values =
                    PartitionValues::from_json(&row.try_get::<String, _>("partition_values")?)?;
                Ok((
                    row.try_get::<i64, _>("id")?,
                    PartitionSummary {
                        partition: values.pairs(&table.keys),
                        batch_id: row
                            .try_get::<Option<String>, _>("current_batch_id")?
                            .unwrap_or_default(),
                        version: row.try_get("current_version")?,
                        rows: row.try_get("rows")?,
                        bytes: row.try_get("bytes")?,
                        updated_at: row.try_get("updated_at_us")?,
                    },
                ))
            })
            .collect::<CatalogResult<Vec<_>>>()?;
        let page = paginate(&mut items, limit, |(id, _)| id.to_string());
        Ok((
            table,
            Page {
                items: page.items.into_iter().map(|(_, s)| s).collect(),
                next_page_token: page.next_page_token,
            },
        ))
    }
}

/// Page tokens of id-ordered listings are the last id; "" starts at the beginning.
pub(super) fn parse_token(token: &str) -> CatalogResult<i64> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse().map_err(|_| {
        CatalogError::InvalidArgument(
            "the page token is not one this service handed out; pass the next_page_token of the previous page".into(),
        )
    })
}

fn resolved_from_row(table: &TableRecord, row: &AnyRow) -> CatalogResult<ResolvedPartition> {
    let values = PartitionValues::from_json(&row.try_get::<String, _>("partition_values")?)?;
    Ok(ResolvedPartition {
        partition: values.pairs(&table.keys),
        batch_id: row.try_get("batch_id")?,
        version: row.try_get("version")?,
        location: row.try_get("location")?,
        files: Vec::new(),
        rows: row.try_get("rows")?,
        bytes: row.try_get("bytes")?,
        committed_at: row.try_get("committed_at_us")?,
        arrow_schema: row
            .try_get::<Option<Vec<u8>>, _>("arrow_schema")?
            .unwrap_or_default(),
    })
}
