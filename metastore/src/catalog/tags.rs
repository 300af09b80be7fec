//! Tags name a committed batch of a table (and pin it against garbage collection); lineage
//! records which batches a commit was computed from.

use super::Catalog;
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::model::{PartitionValues, TableRecord, TagRecord, TagTarget};
use crate::names::validate_tag_name;
use sqlx::Row;

/// Batches linked to one by lineage: (batch id, its namespace).
pub type Lineage = Vec<(String, String)>;

impl Catalog {
    /// Creates a tag on a committed batch of the table.
    ///
    /// # Errors
    /// `AlreadyExists` when the tag exists; `NotFound` for a missing table, batch or version.
    pub async fn create_tag(
        &self,
        namespace: &str,
        table: &str,
        name: &str,
        target: &TagTarget,
        actor: &str,
    ) -> CatalogResult<TagRecord> {
        validate_tag_name(name)?;
        let table = self.table(namespace, table).await?;
        let batch_id =
            match target {
                TagTarget::Batch(batch_id) => batch_id.clone(),
                TagTarget::PartitionVersion(pairs, version) => {
                    let values = PartitionValues::from_pairs(&table.keys, pairs)?;
                    let p = self.written_partition(&table, &values).await?;
                    if *version == 0 {
                        p.current_batch_id.unwrap_or_default()
                    } else {
                        let row = sqlx::query(
                        "SELECT batch_id FROM history WHERE partition_id = $1 AND version = $2",
                    )
                    .bind(p.id)
                    .bind(*version)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| {
                        CatalogError::not_found(Missing::Version, version.to_string(), format!(
                            "partition {} has no version {version}; its versions are 1 to {}",
                            values.describe(&table.keys),
                            p.current_version
                        ))
                    })?;
                        row.try_get("batch_id")?
                    }
                }
            };
        let batch = self.batch(&batch_id, false).await?;
        if batch.table.id != table.id || batch.version.is_none() {
            return Err(CatalogError::not_found(
                Missing::Batch,
                batch_id.clone(),
                format!(
                    "batch {batch_id} is not a committed batch of {}",
                    table.qualified()
                ),
            ));
        }
        let mut tx = self.pool.begin().await?;
        // A tag pins its batch: under the table's shared commit lock (which GC's expiry waits
        // for) the batch is still there, or it expired before and the tag is refused.
        self.share_commit_locks(&mut tx, &[table.id]).await?;
        if let Some(expiry) = self.expiry_in(&mut tx, &batch_id).await? {
            tx.rollback().await?;
            return Err(super::leases::expired(&batch_id, expiry.at, &expiry.reason));
        }
        let inserted = sqlx::query(self.sql(
            "INSERT INTO tags (table_id, name, batch_id, created_at_us, created_by) \
             VALUES ($1, $2, $3, {now}, $4) \
             RETURNING created_at_us",
        ))
        .bind(table.id)
        .bind(name)
        .bind(&batch_id)
        .bind(actor)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match CatalogError::from(e) {
            CatalogError::AlreadyExists(_) => CatalogError::AlreadyExists(format!(
                "tag {name} already exists on {}; delete it first to move it",
                table.qualified()
            )),
            other => other,
        })?;
        let created_at: i64 = inserted.try_get("created_at_us")?;
        tx.commit().await?;
        Ok(TagRecord {
            name: name.to_owned(),
            batch_id,
            partition: batch.partition.pairs(&table.keys),
            version: batch.version.unwrap_or_default(),
            created_at,
            created_by: actor.to_owned(),
        })
    }

    /// The tags of a table, by name.
    ///
    /// # Errors
    /// `NotFound` for a missing table.
    pub async fn list_tags(&self, namespace: &str, table: &str) -> CatalogResult<Vec<TagRecord>> {
        let table = self.table(namespace, table).await?;
        let rows = sqlx::query(
            "SELECT g.name, g.batch_id, g.created_at_us, g.created_by, b.version, \
                    p.partition_values \
             FROM tags g JOIN batches b ON b.batch_id = g.batch_id \
                  JOIN partitions p ON p.id = b.partition_id \
             WHERE g.table_id = $1 ORDER BY g.name",
        )
        .bind(table.id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let values =
                    PartitionValues::from_json(&row.try_get::<String, _>("partition_values")?)?;
                Ok(TagRecord {
                    name: row.try_get("name")?,
                    batch_id: row.try_get("batch_id")?,
                    partition: values.pairs(&table.keys),
                    version: row
                        .try_get::<Option<i64>, _>("version")?
                        .unwrap_or_default(),
                    created_at: row.try_get("created_at_us")?,
                    created_by: row.try_get("created_by")?,
                })
            })
            .collect()
    }

    /// Deletes a tag (the batch stays).
    ///
    /// # Errors
    /// `NotFound` for a missing table or tag.
    pub async fn delete_tag(&self, namespace: &str, table: &str, name: &str) -> CatalogResult<()> {
        let table = self.table(namespace, table).await?;
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM tags WHERE table_id = $1 AND name = $2")
            .bind(table.id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(CatalogError::not_found(
                Missing::Tag,
                name,
                format!(
                    "tag {} does not exist on {}",
                    crate::names::quote_for_message(name),
                    table.qualified()
                ),
            ));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The batch a tag names.
    pub(super) async fn tag_batch(&self, table: &TableRecord, tag: &str) -> CatalogResult<String> {
        validate_tag_name(tag)?;
        let row = sqlx::query("SELECT batch_id FROM tags WHERE table_id = $1 AND name = $2")
            .bind(table.id)
            .bind(tag)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                CatalogError::not_found(
                    Missing::Tag,
                    tag,
                    format!("tag {tag} does not exist on {}", table.qualified()),
                )
            })?;
        Ok(row.try_get("batch_id")?)
    }

    /// Lineage of a batch: `(inputs, outputs)`.
    ///
    /// # Errors
    /// `NotFound` for an unknown batch.
    pub async fn lineage(&self, batch_id: &str) -> CatalogResult<(Lineage, Lineage)> {
        self.batch(batch_id, false).await?;
        let linked = |sql: &'static str| async move {
            let rows = sqlx::query(sql)
                .bind(batch_id)
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>("id")?, r.try_get::<String, _>("ns")?)))
                .collect::<CatalogResult<Lineage>>()
        };
        let inputs = linked(
            "SELECT l.input_batch_id AS id, n.name AS ns FROM lineage l \
             JOIN batches b ON b.batch_id = l.input_batch_id \
             JOIN tables t ON t.id = b.table_id JOIN namespaces n ON n.id = t.namespace_id \
             WHERE l.batch_id = $1 ORDER BY 1",
        )
        .await?;
        let outputs = linked(
            "SELECT l.batch_id AS id, n.name AS ns FROM lineage l \
             JOIN batches b ON b.batch_id = l.batch_id \
             JOIN tables t ON t.id = b.table_id JOIN namespaces n ON n.id = t.namespace_id \
             WHERE l.input_batch_id = $1 ORDER BY 1",
        )
        .await?;
        Ok((inputs, outputs))
    }
}
