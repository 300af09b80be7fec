//! Reads: resolve a partition selection to batches, and list a table's partitions.
//!
//! Resolution joins partitions → history → batches, so every selector (current, version, batch,
//! tag, as-of) answers from the same append-only history, by index lookups only.

use super::paging::{bad_token, page_size, paginate, parse_token};
use super::{Catalog, expiry_from_row, format_micros, partition_hash};
use crate::error::{CatalogError, CatalogResult, Missing};
use crate::limits;
use crate::model::{
    DataFile, KeyCondition, Page, PartitionFilter, PartitionSummary, PartitionValues,
    ResolvedPartition, Selector, TableRecord,
};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};

/// Pages of partitions one filtered whole-table page scans at most before it returns what it
/// found (with a token to go on), so a selective filter cannot hold a call for long.
const FILTER_SCAN_PAGES: usize = 16;

/// Named partitions read in one statement (more are read as of one moment, in chunks).
const ONE_STATEMENT_PARTITIONS: usize = 500;

/// What a resolution reads of each partition, before `{files}` and the selector's condition
/// are filled in. Named partitions read their batch's files in the same statement
/// ([`super::Dialect::files_json`]); a whole-table page reads them afterwards for the rows it
/// keeps (a filtered page may scan many rows it leaves out).
const RESOLVE_SELECT: &str = "SELECT p.id AS partition_id, p.partition_values, h.batch_id, h.version, h.committed_at_us, \
            b.location, b.rows, b.bytes, b.expired_at_us, b.expired_reason, {files} AS files_json \
     FROM partitions p JOIN history h ON h.partition_id = p.id \
          JOIN batches b ON b.batch_id = h.batch_id \
     WHERE p.table_id = $1 AND ";

/// What a resolution of current versions reads: the partition row alone. It carries its
/// current batch, version, stamp (its `updated_at_us` is the current version's
/// `committed_at_us`), location, rows and bytes, and a current batch is never expired, so
/// history and batches need not be read: on a table of a million partitions that is most of
/// the pages a read would touch.
const CURRENT_SELECT: &str = "SELECT p.id AS partition_id, p.partition_values, \
            p.current_batch_id AS batch_id, p.current_version AS version, \
            p.updated_at_us AS committed_at_us, p.current_location AS location, p.rows, p.bytes, \
            CAST(NULL AS BIGINT) AS expired_at_us, CAST(NULL AS TEXT) AS expired_reason, \
            {files} AS files_json \
     FROM partitions p \
     WHERE p.table_id = $1 AND p.current_version > 0 AND p.id > $2";

impl Catalog {
    /// Resolves partitions of a table to the batches a read should use.
    ///
    /// With partitions given, each must resolve, or the call fails naming it (a partition
    /// named twice is resolved once). With none, every partition that has a batch for the
    /// selector is returned, a page at a time: the pages of one read show one moment of the
    /// table, since a paged read of the current versions is an as-of read at the moment of
    /// its first page (the page token carries that moment).
    ///
    /// # Errors
    /// With a partition filter, only partitions satisfying it are returned (named ones that
    /// do not are left out, not refused); a whole-table page may then hold fewer than a page.
    ///
    /// # Errors
    /// `NotFound` for a missing table, partition, version, batch or tag, or a partition that
    /// had no data at an as-of time; `InvalidArgument` for bad partition values, too many
    /// partitions, a bad filter, a bad page token or an as-of time in the future.
    #[allow(clippy::too_many_arguments)]
    pub async fn resolve(
        &self,
        namespace: &str,
        table: &str,
        partitions: &[Vec<(String, String)>],
        selector: &Selector,
        filter: &[KeyCondition],
        page_size_requested: i32,
        page_token: &str,
    ) -> CatalogResult<(TableRecord, Page<ResolvedPartition>)> {
        if partitions.len() > limits::MAX_PARTITIONS_PER_REQUEST {
            return Err(CatalogError::InvalidArgument(format!(
                "a read names at most {} partitions; {} were named (read the whole table, or \
                 split the read)",
                limits::MAX_PARTITIONS_PER_REQUEST,
                partitions.len()
            )));
        }
        let table = self.table(namespace, table).await?;
        let filter = PartitionFilter::new(&table.keys, filter)?;
        // A partition named twice is read once.
        let mut seen = HashSet::with_capacity(partitions.len());
        let mut specs = Vec::with_capacity(partitions.len());
        for pairs in partitions {
            let spec = PartitionValues::from_pairs(&table.keys, pairs)?;
            if seen.insert(spec.clone()) {
                specs.push(spec);
            }
        }
        let token = ResolveToken::parse(page_token)?;
        let selector = match (selector, token.as_of) {
            (Selector::Current, Some(moment)) => Selector::AsOf(moment),
            (other, _) => other.clone(),
        };
        if let Selector::AsOf(as_of) = selector {
            self.as_of_horizon(table.id, as_of).await?;
        }
        let mut page = match &selector {
            Selector::Batch(batch_id) => whole(self.resolve_batch(&table, batch_id, &specs).await?),
            Selector::Tag(tag) => {
                let batch_id = self.tag_batch(&table, tag).await?;
                whole(self.resolve_batch(&table, &batch_id, &specs).await?)
            }
            _ if specs.is_empty() => {
                let limit = page_size(page_size_requested)?;
                let mut page = self
                    .resolve_page(&table, &selector, &filter, token.after, limit)
                    .await?;
                if selector == Selector::Current && !page.next_page_token.is_empty() {
                    // More than a page: read every page as of one moment instead.
                    let moment = self.now().await?;
                    self.as_of_horizon(table.id, moment).await?;
                    page = self
                        .resolve_page(&table, &Selector::AsOf(moment), &filter, 0, limit)
                        .await?;
                    if !page.next_page_token.is_empty() {
                        page.next_page_token = format!("{}@{moment}", page.next_page_token);
                    }
                } else if let (Some(moment), false) = (token.as_of, page.next_page_token.is_empty())
                {
                    page.next_page_token = format!("{}@{moment}", page.next_page_token);
                }
                let ids: Vec<String> = page.items.iter().map(|r| r.batch_id.clone()).collect();
                let mut files = self.files_of(&ids).await?;
                for r in &mut page.items {
                    r.files = files.remove(&r.batch_id).unwrap_or_default();
                }
                page
            }
            _ => {
                // The named partitions are read at one moment: in one statement, or for many
                // of them as of one moment.
                let selector =
                    if specs.len() > ONE_STATEMENT_PARTITIONS && selector == Selector::Current {
                        let moment = self.now().await?;
                        self.as_of_horizon(table.id, moment).await?;
                        Selector::AsOf(moment)
                    } else {
                        selector.clone()
                    };
                let mut found: HashMap<PartitionValues, ResolvedPartition> =
                    HashMap::with_capacity(specs.len());
                for chunk in specs.chunks(ONE_STATEMENT_PARTITIONS) {
                    let rows = self
                        .history_query(&table, &selector, chunk, 0, chunk.len() as i64)
                        .await?;
                    for row in &rows {
                        let values = PartitionValues::from_json(
                            &row.try_get::<String, _>("partition_values")?,
                        )?;
                        found.insert(values, resolved_from_row(&table, row)?);
                    }
                }
                let mut out = Vec::with_capacity(specs.len());
                for spec in &specs {
                    match found.remove(spec) {
                        Some(resolved) => out.push(resolved),
                        None => return Err(self.unresolved(&table, spec, &selector).await),
                    }
                }
                whole(out)
            }
        };
        if !filter.is_empty() {
            page.items
                .retain(|r| filter.matches(|i| r.partition.get(i).map(|(_, v)| v.as_str())));
        }
        Ok((table, page))
    }

    /// One page of a whole-table resolution, after partition id `after`: at most `limit`
    /// partitions satisfying the filter. With a filter, more rows are scanned until the page
    /// is full or [`FILTER_SCAN_PAGES`] pages were scanned; the token then continues after
    /// the last partition scanned.
    async fn resolve_page(
        &self,
        table: &TableRecord,
        selector: &Selector,
        filter: &PartitionFilter,
        mut after: i64,
        limit: i64,
    ) -> CatalogResult<Page<ResolvedPartition>> {
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        for _ in 0..FILTER_SCAN_PAGES {
            // Checking a filter is CPU work: let other requests run between pages.
            tokio::task::yield_now().await;
            let rows = self
                .history_query(table, selector, &[], after, limit + 1)
                .await?;
            let more = rows.len() > wanted;
            let mut unscanned = rows.len().min(wanted);
            for row in rows.iter().take(wanted) {
                unscanned -= 1;
                after = row.try_get::<i64, _>("partition_id")?;
                // Filtered before it is resolved: a partition left out may not be readable.
                if !filter.is_empty() {
                    let values =
                        PartitionValues::from_json(&row.try_get::<String, _>("partition_values")?)?;
                    if !filter.matches(|i| values.0.get(i).map(String::as_str)) {
                        continue;
                    }
                }
                items.push(resolved_from_row(table, row)?);
                if items.len() == wanted {
                    break;
                }
            }
            if !more && unscanned == 0 {
                // Everything after the token was scanned.
                return Ok(Page {
                    items,
                    next_page_token: String::new(),
                });
            }
            if items.len() == wanted {
                break;
            }
        }
        Ok(Page {
            items,
            next_page_token: after.to_string(),
        })
    }

    /// The catalog clock, in microseconds.
    ///
    /// # Errors
    /// Database errors.
    pub async fn now(&self) -> CatalogResult<i64> {
        Ok(sqlx::query(self.sql("SELECT {now} AS now_us"))
            .fetch_one(&self.pool)
            .await?
            .try_get("now_us")?)
    }

    /// Rows of partitions (those of `specs`, or with none all after id `after`; at most
    /// `limit`) at the selector, in one statement.
    async fn history_query(
        &self,
        table: &TableRecord,
        selector: &Selector,
        specs: &[PartitionValues],
        after: i64,
        limit: i64,
    ) -> CatalogResult<Vec<AnyRow>> {
        if *selector == Selector::Current {
            return self.current_query(table, specs, after, limit).await;
        }
        // As of a time: the last entry stamped at or before it (stamps grow with versions),
        // found through the (partition_id, committed_at_us) index.
        let condition = match selector {
            Selector::Version(_) => "h.version = $3",
            Selector::AsOf(_) => {
                "h.version = (SELECT h2.version FROM history h2 \
                              WHERE h2.partition_id = p.id AND h2.committed_at_us <= $3 \
                              ORDER BY h2.committed_at_us DESC, h2.version DESC LIMIT 1)"
            }
            Selector::Current | Selector::Batch(_) | Selector::Tag(_) => {
                return Err(CatalogError::Internal(
                    "current and batch selectors resolve elsewhere".into(),
                ));
            }
        };
        let value = match selector {
            Selector::Version(v) => *v,
            Selector::AsOf(t) => *t,
            _ => 0,
        };
        let mut sql = format!(
            "{}{condition} AND p.id > $2",
            RESOLVE_SELECT.replace("{files}", &self.files_column(specs, "h.batch_id"))
        );
        if !specs.is_empty() {
            let hashes = super::placeholders(5, specs.len());
            sql.push_str(&format!(" AND p.partition_hash IN ({hashes})"));
        }
        sql.push_str(" ORDER BY p.id LIMIT $4");
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(table.id)
            .bind(after)
            .bind(value)
            .bind(limit);
        for spec in specs {
            query = query.bind(partition_hash(spec));
        }
        Ok(query.fetch_all(&self.readers).await?)
    }

    /// [`Self::history_query`] for the current versions, from the partition rows alone.
    async fn current_query(
        &self,
        table: &TableRecord,
        specs: &[PartitionValues],
        after: i64,
        limit: i64,
    ) -> CatalogResult<Vec<AnyRow>> {
        let mut sql =
            CURRENT_SELECT.replace("{files}", &self.files_column(specs, "p.current_batch_id"));
        if !specs.is_empty() {
            let hashes = super::placeholders(4, specs.len());
            sql.push_str(&format!(" AND p.partition_hash IN ({hashes})"));
        }
        sql.push_str(" ORDER BY p.id LIMIT $3");
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(table.id)
            .bind(after)
            .bind(limit);
        for spec in specs {
            query = query.bind(partition_hash(spec));
        }
        Ok(query.fetch_all(&self.readers).await?)
    }

    /// The `files_json` column of a resolution: the batch's files for named partitions; none
    /// on whole-table pages, which read them afterwards for the rows they keep.
    fn files_column(&self, specs: &[PartitionValues], batch_id: &str) -> String {
        if specs.is_empty() {
            "CAST(NULL AS TEXT)".to_owned()
        } else {
            self.dialect.files_json(batch_id)
        }
    }

    async fn resolve_batch(
        &self,
        table: &TableRecord,
        batch_id: &str,
        specs: &[PartitionValues],
    ) -> CatalogResult<Vec<ResolvedPartition>> {
        let batch = self.batch(batch_id, false).await?;
        if let Some(expiry) = &batch.expired {
            return Err(super::leases::expired(batch_id, expiry.at, &expiry.reason));
        }
        if batch.table.id != table.id || batch.version.is_none() {
            return Err(CatalogError::not_found(
                Missing::Batch,
                batch_id,
                format!(
                    "batch {batch_id} is not a committed batch of {}",
                    table.qualified()
                ),
            ));
        }
        if !specs.is_empty() && !specs.contains(&batch.partition) {
            return Err(CatalogError::InvalidArgument(format!(
                "batch {batch_id} belongs to partition {}, which is not among the partitions asked for",
                batch.partition.describe(&table.keys)
            )));
        }
        let files = self
            .files_of(std::slice::from_ref(&batch.batch_id))
            .await?
            .remove(&batch.batch_id)
            .unwrap_or_default();
        Ok(vec![ResolvedPartition {
            partition: batch.partition.pairs(&table.keys),
            batch_id: batch.batch_id,
            version: batch.version.unwrap_or_default(),
            location: batch.location,
            files,
            rows: batch.rows,
            bytes: batch.bytes,
            committed_at: batch.committed_at.unwrap_or_default(),
        }])
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
            Selector::Version(v) => CatalogError::not_found(
                Missing::Version,
                v.to_string(),
                format!(
                    "partition {name} of {} has no version {v}; its versions are 1 to {}",
                    table.qualified(),
                    partition.current_version
                ),
            ),
            Selector::AsOf(t) => CatalogError::not_found(
                Missing::Version,
                format_micros(*t),
                format!(
                    "partition {name} of {} had no data at {}; its first version is newer",
                    table.qualified(),
                    format_micros(*t)
                ),
            ),
            _ => CatalogError::not_found(
                Missing::Partition,
                name.clone(),
                format!(
                    "partition {name} of {} has never been written",
                    table.qualified()
                ),
            ),
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
        let limit = page_size(page_size_requested)?;
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

/// The page token of a whole-table resolution: the last partition id, and for a read of the
/// current versions that spans pages, `@` and the moment it reads as of.
struct ResolveToken {
    after: i64,
    as_of: Option<i64>,
}

impl ResolveToken {
    fn parse(token: &str) -> CatalogResult<Self> {
        let (after, as_of) = match token.split_once('@') {
            Some((after, moment)) => (after, Some(moment)),
            None => (token, None),
        };
        let as_of = as_of
            .map(|m| m.parse::<i64>().map_err(|_| bad_token()))
            .transpose()?;
        Ok(ResolveToken {
            after: parse_token(after)?,
            as_of,
        })
    }
}

/// A result that is one page.
fn whole(items: Vec<ResolvedPartition>) -> Page<ResolvedPartition> {
    Page {
        items,
        next_page_token: String::new(),
    }
}

/// A resolved row; a batch GC expired cannot be read, and the error says when and why.
fn resolved_from_row(table: &TableRecord, row: &AnyRow) -> CatalogResult<ResolvedPartition> {
    let values = PartitionValues::from_json(&row.try_get::<String, _>("partition_values")?)?;
    if let Some(expiry) = expiry_from_row(row)? {
        let batch_id: String = row.try_get("batch_id")?;
        let version: i64 = row.try_get("version")?;
        return Err(CatalogError::not_found(
            Missing::Version,
            version.to_string(),
            format!(
                "version {version} of partition {} of {} (batch {batch_id}) was expired by \
                 garbage collection at {} ({}); its files are deleted. Read a newer version, \
                 or tag or lease a version to keep it",
                values.describe(&table.keys),
                table.qualified(),
                format_micros(expiry.at),
                expiry.reason
            ),
        ));
    }
    Ok(ResolvedPartition {
        partition: values.pairs(&table.keys),
        batch_id: row.try_get("batch_id")?,
        version: row.try_get("version")?,
        location: row.try_get("location")?,
        // Absent on whole-table pages, which read files for the rows they keep.
        files: match row.try_get::<Option<String>, _>("files_json")? {
            Some(text) => files_from_json(&text)?,
            None => Vec::new(),
        },
        rows: row.try_get("rows")?,
        bytes: row.try_get("bytes")?,
        committed_at: row.try_get("committed_at_us")?,
    })
}

/// A batch's files from [`super::Dialect::files_json`], in path order.
fn files_from_json(text: &str) -> CatalogResult<Vec<DataFile>> {
    let mut files: Vec<(String, i64, i64)> = serde_json::from_str(text)
        .map_err(|e| CatalogError::Internal(format!("bad file list from the catalog: {e}")))?;
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(files
        .into_iter()
        .map(|(path, size_bytes, rows)| DataFile {
            path,
            size_bytes,
            rows,
        })
        .collect())
}
