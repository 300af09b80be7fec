//! The checks of a commit request that need no database: its shape and bounds, then each
//! update against its batch and table (state, one update per partition, schema).

use crate::error::{CatalogError, CatalogResult};
use crate::footer::FileFacts;
use crate::limits;
use crate::model::{BatchRecord, BatchState, ExpectedCurrent, PartitionUpdate};
use crate::names::validate_file_name;
use crate::schema;
use arrow_schema::Schema;
use std::collections::HashSet;

use super::super::format_micros;
use super::super::writes::check_batch_id;

/// Most partition updates one commit may carry.
pub const MAX_UPDATES_PER_COMMIT: usize = 10_000;
/// Most files one batch may list.
pub const MAX_FILES_PER_BATCH: usize = 100_000;

/// A validated update, with everything the transaction needs.
pub(super) struct PreparedUpdate {
    /// Its place in the request; answers follow the request's order.
    pub index: usize,
    pub update: PartitionUpdate,
    pub batch: BatchRecord,
    pub schema: Schema,
    /// The table's schema as the batch's table record knows it (decoded once).
    pub table_schema: Option<Schema>,
    /// Rows and bytes of the batch, as its files' footers and storage report them.
    pub rows: i64,
    pub bytes: i64,
    /// Each file's column statistics (JSON), in the order of `update.files`.
    pub stats: Vec<String>,
}

impl PreparedUpdate {
    /// Checks what the files say against what the update claims (row counts, schema), and
    /// keeps their statistics. Rows and bytes then come from the files themselves.
    pub fn record_facts(&mut self, facts: Vec<FileFacts>) -> CatalogResult<()> {
        let (mut rows, mut bytes) = (0i64, 0i64);
        for (file, facts) in self.update.files.iter().zip(&facts) {
            let name = format!("{} of batch {}", file.path, self.batch.batch_id);
            if facts.rows != file.rows {
                return Err(CatalogError::FailedPrecondition(format!(
                    "file {name} holds {} rows by its footer, but the commit says {}; commit the \
                     file list the upload produced",
                    facts.rows, file.rows
                )));
            }
            schema::check_file(&self.schema, &facts.schema, &name)?;
            rows = rows.saturating_add(facts.rows);
            bytes = bytes.saturating_add(facts.size as i64);
        }
        self.rows = rows;
        self.bytes = bytes;
        self.stats = facts.into_iter().map(|f| f.stats).collect();
        Ok(())
    }
}

/// Checks the shape of a commit request before anything is read.
pub(super) fn validate_updates(updates: &[PartitionUpdate], message: &str) -> CatalogResult<()> {
    limits::check_message(message)?;
    if updates.is_empty() {
        return Err(CatalogError::InvalidArgument(
            "the commit lists no partition updates; send at least one".into(),
        ));
    }
    if updates.len() > MAX_UPDATES_PER_COMMIT {
        return Err(CatalogError::InvalidArgument(format!(
            "a commit carries at most {MAX_UPDATES_PER_COMMIT} partition updates; split it"
        )));
    }
    let mut seen = HashSet::with_capacity(updates.len());
    for update in updates {
        check_batch_id(&update.batch_id)?;
        if !seen.insert(update.batch_id.as_str()) {
            return Err(CatalogError::InvalidArgument(format!(
                "batch {} is listed twice in one commit",
                update.batch_id
            )));
        }
        if update.files.len() > MAX_FILES_PER_BATCH {
            return Err(CatalogError::InvalidArgument(format!(
                "batch {} lists {} files; at most {MAX_FILES_PER_BATCH} are allowed",
                update.batch_id,
                update.files.len()
            )));
        }
        limits::check_schema_bytes(&update.arrow_schema)?;
        let mut paths = HashSet::with_capacity(update.files.len());
        let (mut rows, mut bytes) = (0i64, 0i64);
        for file in &update.files {
            validate_file_name(&file.path)?;
            if !paths.insert(file.path.as_str()) {
                return Err(CatalogError::InvalidArgument(format!(
                    "file {} is listed twice for batch {}",
                    file.path, update.batch_id
                )));
            }
            if file.size_bytes < 0 || file.rows < 0 {
                return Err(CatalogError::InvalidArgument(format!(
                    "file {} has a negative size or row count",
                    file.path
                )));
            }
            rows = rows
                .checked_add(file.rows)
                .ok_or_else(|| too_large(update))?;
            bytes = bytes
                .checked_add(file.size_bytes)
                .ok_or_else(|| too_large(update))?;
        }
        if update.inputs.len() > limits::MAX_LINEAGE_INPUTS {
            return Err(CatalogError::InvalidArgument(format!(
                "batch {} names {} lineage inputs; at most {} are allowed",
                update.batch_id,
                update.inputs.len(),
                limits::MAX_LINEAGE_INPUTS
            )));
        }
        let mut inputs = HashSet::with_capacity(update.inputs.len());
        for input in &update.inputs {
            check_batch_id(input)?;
            if !inputs.insert(input.as_str()) {
                return Err(CatalogError::InvalidArgument(format!(
                    "input batch {input} is named twice in the lineage of batch {}",
                    update.batch_id
                )));
            }
            if input == &update.batch_id {
                return Err(CatalogError::InvalidArgument(format!(
                    "batch {input} names itself as a lineage input"
                )));
            }
        }
        if let Some(ExpectedCurrent::Batch(expected)) = &update.expected {
            check_batch_id(expected)?;
        }
    }
    Ok(())
}

fn too_large(update: &PartitionUpdate) -> CatalogError {
    CatalogError::InvalidArgument(format!(
        "the row counts or sizes of batch {} add up to more than 2^63; they cannot be right",
        update.batch_id
    ))
}

/// The refusal for a batch that cannot be committed, if it cannot.
pub(in crate::catalog) fn not_committable(batch: &BatchRecord) -> Option<CatalogError> {
    match batch.state {
        BatchState::Aborted => Some(CatalogError::FailedPrecondition(format!(
            "batch {} was aborted and can never be committed; begin a new write",
            batch.batch_id
        ))),
        BatchState::Abandoned => Some(CatalogError::FailedPrecondition(format!(
            "the lease of batch {} ran out at {} before it was committed, so it was abandoned; \
             begin a new write (ask for a longer lease if uploads take this long)",
            batch.batch_id,
            format_micros(batch.lease_expires_at)
        ))),
        BatchState::Pending | BatchState::Committed => None,
    }
}

/// Decodes and checks schemas, refuses dead batches and two updates of one partition.
pub(super) fn prepare(
    updates: Vec<PartitionUpdate>,
    batches: Vec<BatchRecord>,
) -> CatalogResult<Vec<PreparedUpdate>> {
    let mut partitions = HashSet::new();
    let mut prepared = Vec::with_capacity(updates.len());
    for (index, (update, batch)) in updates.into_iter().zip(batches).enumerate() {
        if let Some(refusal) = not_committable(&batch) {
            return Err(refusal);
        }
        if !partitions.insert(batch.partition_id) {
            return Err(CatalogError::InvalidArgument(format!(
                "two batches of this commit write partition {} of {}; a commit updates each \
                 partition at most once",
                batch.partition.describe(&batch.table.keys),
                batch.table.qualified()
            )));
        }
        let write_schema = schema::decode(&update.arrow_schema)?;
        schema::validate_for_table(&write_schema, &batch.table.keys)?;
        let table_schema = match &batch.table.arrow_schema {
            Some(bytes) => {
                let table_schema = schema::decode(bytes)?;
                // Against the table as the batch remembers it: the commit checks again, under
                // the table's current schema and policy, whatever would change it.
                schema::evolve(
                    &table_schema,
                    &write_schema,
                    batch.table.schema_policy,
                    &batch.table.qualified(),
                )?;
                Some(table_schema)
            }
            None => None,
        };
        let rows = update.files.iter().map(|f| f.rows).sum();
        let bytes = update.files.iter().map(|f| f.size_bytes).sum();
        prepared.push(PreparedUpdate {
            index,
            update,
            batch,
            schema: write_schema,
            table_schema,
            rows,
            bytes,
            stats: Vec::new(),
        });
    }
    // Within one commit, updates of the same new table must agree with each other too (up
    // to nullability and dictionary width, which the table's schema then takes from all).
    for (i, p) in prepared.iter().enumerate() {
        if p.batch.table.arrow_schema.is_none()
            && let Some(first) = prepared[..i]
                .iter()
                .find(|q| q.batch.table.id == p.batch.table.id)
        {
            schema::merge(&first.schema, &p.schema, &p.batch.table.qualified())?;
        }
    }
    Ok(prepared)
}
