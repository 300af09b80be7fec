//! The read path: resolve a partition selection to batches, fetch their Parquet files
//! concurrently, decode them on blocking threads in parallel, and return Arrow batches.
//!
//! Every batch is conformed to one read schema *by column name* (never by position): the table's
//! schema as the metastore keeps it (nullable where any batch is, with the widest dictionary
//! index any batch uses), sent once per reply. A
//! file's type is only converted losslessly; a value that cannot be represented is an error
//! naming the column, partition and batch. Column projection is pushed into the Parquet decoder
//! by name. When a read spans other than exactly one named partition, the partition keys are
//! added as columns, typed by the table's key types. The schema's metadata (what the writer
//! recorded about its frame: pandas dtypes and index, categories) is the files' own when they
//! all agree, as one batch's always do, else the table's. A file is held to what its commit
//! recorded: another size or row count is an error, never read.

use crate::client::Client;
use crate::commit::repeat_while_unknown;
use crate::error::{ClientError, Result};
use crate::lifecycle::{READ_LEASE, ReadLease};
use crate::partition::{KeyPredicate, PartitionSpec, describe_partition};
use crate::types::{KeyType, Selector, TableInfo, TableName, from_micros};
use crate::wire::{pairs, predicate_to_pb, spec_to_pb, table_ref};
use crate::write::Progress;
use arrow_array::{
    ArrayRef, Date32Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use batchstore_proto::v1 as pb;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::sync::Arc;

/// Rows per decoded record batch.
const BATCH_ROWS: usize = 256 * 1024;

/// Whether reads add partition keys as columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PartitionColumns {
    /// Add them unless exactly one partition was named.
    #[default]
    Auto,
    Always,
    Never,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    pub table: Option<TableName>,
    /// Empty: every partition.
    pub partitions: Vec<PartitionSpec>,
    pub selector: Selector,
    /// Only these columns, in this order.
    pub columns: Option<Vec<String>>,
    pub partition_columns: PartitionColumns,
    /// Only partitions satisfying every condition (resolved by the metastore).
    pub filter: Vec<KeyPredicate>,
    /// Files fetched and decoded at once; 0 = twice the cores.
    pub parallelism: usize,
}

/// One partition a read used.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadPartition {
    pub partition: Vec<(String, String)>,
    pub batch_id: String,
    pub version: i64,
    pub rows: i64,
    pub committed_at: chrono::DateTime<chrono::Utc>,
}

/// The data read, with what it came from.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub partitions: Vec<ReadPartition>,
    /// Bytes of Parquet fetched.
    pub bytes: u64,
}

impl ReadResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// One file to fetch and decode, with what to add to its batches.
struct FileTask {
    store: Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    /// The size and rows the catalog recorded for the file (read from its footer at commit).
    size: i64,
    rows: i64,
    keys: Vec<ArrayMaker>,
    origin: Arc<Origin>,
}

/// One file's decoded batches, with its schema's metadata (what its writer recorded about the
/// frame: pandas dtypes and index, categories).
struct DecodedFile {
    batches: Vec<RecordBatch>,
    metadata: arrow_schema::Metadata,
}

/// Where a file's rows come from, for error messages.
struct Origin {
    partition: String,
    batch_id: String,
}

/// A constant partition-key column for a batch of n rows.
#[derive(Clone)]
enum ArrayMaker {
    Utf8(String),
    Int64(i64),
    Date32(i32),
}

impl ArrayMaker {
    fn make(&self, n: usize) -> ArrayRef {
        match self {
            ArrayMaker::Utf8(v) => {
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n)))
            }
            ArrayMaker::Int64(v) => Arc::new(Int64Array::from_value(*v, n)),
            ArrayMaker::Date32(v) => Arc::new(Date32Array::from_value(*v, n)),
        }
    }
}

impl Client {
    /// Reads a partition selection as Arrow.
    ///
    /// # Errors
    /// `NotFound` for a missing table, partition, version, batch or tag; `InvalidArgument` for
    /// an unknown column; `Storage`/`Data` when files cannot be fetched or decoded.
    pub async fn read(
        &self,
        request: &ReadRequest,
        progress: Option<Arc<dyn Progress>>,
    ) -> Result<ReadResult> {
        let table = request
            .table
            .as_ref()
            .ok_or_else(|| ClientError::InvalidArgument("the read names no table".into()))?;
        let (table_info, resolved, lease_id) = self.resolve(table, request).await?;
        // Pins what was resolved until the read is done, however long it takes.
        let _lease = ReadLease::hold(self.rpc.clone(), lease_id);
        #[cfg(debug_assertions)]
        if let Some(pause) = debug_read_pause() {
            // Fault injection for tests (debug builds only): a read that takes long between
            // resolving and fetching, while garbage collection runs.
            tokio::time::sleep(pause).await;
        }
        let shape = ReadShape::new(table_info.as_ref(), request)?;
        let (schema, key_types, add_keys) = (shape.schema, shape.key_types, shape.add_keys);
        let data_columns = schema.fields().len() - if add_keys { key_types.len() } else { 0 };

        let mut tasks = Vec::new();
        let mut partitions = Vec::with_capacity(resolved.len());
        for p in &resolved {
            let dir = self.stores.batch_dir(&p.location)?;
            let values = pairs(p.partition.as_ref());
            let keys = if add_keys {
                key_makers(&key_types, &values)?
            } else {
                Vec::new()
            };
            let origin = Arc::new(Origin {
                partition: describe_partition(&values),
                batch_id: p.batch_id.clone(),
            });
            for file in &p.files {
                tasks.push(FileTask {
                    store: dir.store.clone(),
                    path: dir.file(&file.path)?,
                    size: file.size_bytes,
                    rows: file.rows,
                    keys: keys.clone(),
                    origin: origin.clone(),
                });
            }
            partitions.push(ReadPartition {
                partition: values,
                batch_id: p.batch_id.clone(),
                version: p.version,
                rows: p.rows,
                committed_at: from_micros(p.committed_at_micros),
            });
        }
        let bytes: u64 = resolved.iter().map(|p| p.bytes.max(0) as u64).sum();
        let parallelism = match request.parallelism {
            0 => 2 * crate::runtime::cores(),
            n => n,
        };
        let decoded: Vec<DecodedFile> = futures::stream::iter(tasks)
            .map(|task| fetch_and_decode(task, schema.clone(), data_columns, progress.clone()))
            .buffered(parallelism)
            .try_collect()
            .await?;
        let (schema, batches) = with_writers_metadata(schema, decoded)?;
        Ok(ReadResult {
            schema,
            batches,
            partitions,
            bytes,
        })
    }
}

/// The columns a read returns: the table's read schema projected to the asked-for columns,
/// with the partition keys appended when the read adds them.
pub(crate) struct ReadShape {
    pub schema: SchemaRef,
    pub key_types: Vec<(String, KeyType)>,
    pub add_keys: bool,
}

impl ReadShape {
    pub(crate) fn new(table_info: Option<&TableInfo>, request: &ReadRequest) -> Result<Self> {
        let key_types: Vec<(String, KeyType)> = table_info
            .map(|t| {
                t.partition_keys
                    .iter()
                    .map(|k| (k.name.clone(), k.key_type))
                    .collect()
            })
            .unwrap_or_default();
        let add_keys = match request.partition_columns {
            PartitionColumns::Always => true,
            PartitionColumns::Never => false,
            PartitionColumns::Auto => request.partitions.len() != 1,
        } && !key_types.is_empty();
        // The table's read schema: the metastore keeps it nullable where any batch is and
        // with the widest dictionary index any batch uses.
        let stored_schema = match table_info {
            Some(t) if !t.arrow_schema.is_empty() => crate::schema::decode(&t.arrow_schema)?,
            _ => Schema::empty(),
        };
        let mut fields = project(&stored_schema, request.columns.as_deref())?;
        if add_keys {
            fields.extend(
                key_types
                    .iter()
                    .map(|(name, t)| Arc::new(Field::new(name, key_data_type(*t), false))),
            );
        }
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            stored_schema.metadata().clone(),
        ));
        Ok(ReadShape {
            schema,
            key_types,
            add_keys,
        })
    }
}

impl Client {
    /// Resolves a read's selection, following pages (all pages show one moment of the table),
    /// under one read lease (its id is returned; "" from a metastore without leases).
    pub(crate) async fn resolve(
        &self,
        table: &TableName,
        request: &ReadRequest,
    ) -> Result<(Option<TableInfo>, Vec<pb::ResolvedPartition>, String)> {
        let specs: Vec<pb::PartitionSpec> = request.partitions.iter().map(spec_to_pb).collect();
        let mut info = None;
        let mut partitions = Vec::new();
        let mut page_token = String::new();
        let mut lease_id = String::new();
        loop {
            let call = pb::ResolvePartitionsRequest {
                table: Some(table_ref(table)),
                partitions: specs.clone(),
                selector: Some(selector_to_pb(&request.selector)),
                page_size: 0,
                page_token,
                lease_seconds: READ_LEASE.as_secs() as i64,
                lease_id: lease_id.clone(),
                partition_filter: request.filter.iter().map(predicate_to_pb).collect(),
            };
            let page = repeat_while_unknown(|| {
                let mut rpc = self.rpc.clone();
                let call = call.clone();
                async move { rpc.resolve_partitions(call).await }
            })
            .await
            .map_err(|(status, _)| ClientError::from(status))?
            .into_inner();
            if info.is_none() {
                info = page.table.map(crate::wire::table_info).transpose()?;
            }
            if lease_id.is_empty() {
                lease_id = page.lease_id;
            }
            partitions.extend(page.partitions);
            if page.next_page_token.is_empty() {
                return Ok((info, partitions, lease_id));
            }
            page_token = page.next_page_token;
        }
    }
}

#[cfg(debug_assertions)]
fn debug_read_pause() -> Option<std::time::Duration> {
    std::env::var("BATCHSTORE_DEBUG_READ_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis)
}

/// The output fields for the requested columns (None = all), in the order asked for.
fn project(schema: &Schema, columns: Option<&[String]>) -> Result<Vec<FieldRef>> {
    let Some(columns) = columns else {
        return Ok(schema.fields().iter().cloned().collect());
    };
    let mut seen = HashSet::with_capacity(columns.len());
    let mut fields = Vec::with_capacity(columns.len());
    for name in columns {
        if !seen.insert(name.as_str()) {
            return Err(ClientError::InvalidArgument(format!(
                "column {name:?} is asked for twice"
            )));
        }
        let field = schema.field_with_name(name).map_err(|_| {
            if schema.fields().is_empty() {
                return ClientError::InvalidArgument(format!(
                    "column {name:?} is not in the table: it has no columns yet (nothing was \
                     written to it)"
                ));
            }
            ClientError::InvalidArgument(format!(
                "column {name:?} is not in the table; its columns are: {}",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        fields.push(Arc::new(field.clone()));
    }
    Ok(fields)
}

fn key_data_type(key_type: KeyType) -> DataType {
    match key_type {
        KeyType::String => DataType::Utf8,
        KeyType::Int64 => DataType::Int64,
        KeyType::Date => DataType::Date32,
    }
}

fn key_makers(keys: &[(String, KeyType)], values: &[(String, String)]) -> Result<Vec<ArrayMaker>> {
    keys.iter()
        .map(|(name, key_type)| {
            let value = values
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            let bad = || {
                ClientError::Data(format!(
                    "partition value {value:?} of key {name} does not match its type"
                ))
            };
            Ok(match key_type {
                KeyType::String => ArrayMaker::Utf8(value.to_owned()),
                KeyType::Int64 => ArrayMaker::Int64(value.parse().map_err(|_| bad())?),
                KeyType::Date => {
                    let date =
                        chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())?;
                    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).ok_or_else(bad)?;
                    ArrayMaker::Date32((date - epoch).num_days() as i32)
                }
            })
        })
        .collect()
}

/// The read's schema and batches, with the metadata of the files when they all agree on it
/// (always so for one batch, as a read of one partition is): what was stored comes back as it
/// was, not as the table's first write described its frame. Files that disagree keep the
/// table's.
fn with_writers_metadata(
    schema: SchemaRef,
    decoded: Vec<DecodedFile>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let agreed = match decoded.split_first() {
        Some((first, rest))
            if first.metadata != *schema.metadata()
                && rest.iter().all(|d| d.metadata == first.metadata) =>
        {
            Some(first.metadata.clone())
        }
        _ => None,
    };
    let batches = decoded.into_iter().flat_map(|d| d.batches);
    let Some(metadata) = agreed else {
        return Ok((schema, batches.collect()));
    };
    let schema = Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata));
    let batches = batches
        .map(|batch| {
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            let (_, columns, _) = batch.into_parts();
            RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok((schema, batches))
}

/// The error for a file that is not what its commit recorded: `found` in storage, where the
/// commit recorded `committed` (of the unit `what`).
fn changed_since_commit(task: &FileTask, what: &str, found: i64, committed: i64) -> ClientError {
    ClientError::Data(format!(
        "file {} of partition {} (batch {}) holds {found} {what}, but {committed} were \
         committed: it was changed after the commit",
        task.path, task.origin.partition, task.origin.batch_id
    ))
}

async fn fetch_and_decode(
    task: FileTask,
    schema: SchemaRef,
    data_columns: usize,
    progress: Option<Arc<dyn Progress>>,
) -> Result<DecodedFile> {
    let bytes: Bytes = task.store.get(&task.path).await?.bytes().await?;
    let size = bytes.len() as u64;
    let stored = i64::try_from(size).unwrap_or(i64::MAX);
    if stored != task.size {
        return Err(changed_since_commit(&task, "bytes", stored, task.size));
    }
    let decoded =
        tokio::task::spawn_blocking(move || decode(bytes, &schema, data_columns, &task)).await??;
    if let Some(progress) = &progress {
        let rows = decoded.batches.iter().map(|b| b.num_rows() as u64).sum();
        progress.advance(rows, size);
    }
    Ok(decoded)
}

/// Decodes one file into the read schema: the first `data_columns` fields of `schema` are
/// looked up in the file by name (only they are decoded), the rest are partition keys. A file
/// whose footer counts other rows than were committed is refused.
fn decode(
    bytes: Bytes,
    schema: &SchemaRef,
    data_columns: usize,
    task: &FileTask,
) -> Result<DecodedFile> {
    let (keys, origin) = (&task.keys, &*task.origin);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(BATCH_ROWS);
    let footer_rows = builder.metadata().file_metadata().num_rows();
    if footer_rows != task.rows {
        return Err(changed_since_commit(task, "rows", footer_rows, task.rows));
    }
    let file_schema = builder.schema().clone();
    let wanted = &schema.fields()[..data_columns];
    let mut roots = Vec::with_capacity(wanted.len());
    for field in wanted {
        match file_schema.index_of(field.name()) {
            Ok(index) => roots.push(index),
            // Written before the column was added (additive schema policy): read as nulls.
            Err(_) if field.is_nullable() => {}
            Err(_) => {
                return Err(ClientError::Data(format!(
                    "column {:?} is missing from a file of partition {} (batch {}); the batch \
                     does not have the table's columns",
                    field.name(),
                    origin.partition,
                    origin.batch_id
                )));
            }
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder.with_projection(mask).build()?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(conform(&batch?, schema, wanted, keys, origin)?);
    }
    Ok(DecodedFile {
        batches,
        metadata: file_schema.metadata().clone(),
    })
}

/// Puts a decoded batch into the read schema: each column found by name, converted where the
/// file's type differs only losslessly (a value that cannot be represented is an error, never a
/// null), a nullable column the batch does not have as nulls, partition keys appended.
fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
    wanted: &[FieldRef],
    keys: &[ArrayMaker],
    origin: &Origin,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in wanted {
        let Some(found) = batch.column_by_name(field.name()) else {
            // A nullable column the batch was written without (`decode` checked).
            arrays.push(arrow_array::new_null_array(field.data_type(), rows));
            continue;
        };
        let array = if found.data_type() == field.data_type() {
            found.clone()
        } else {
            let options = arrow_cast::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow_cast::cast_with_options(found, field.data_type(), &options).map_err(|e| {
                ClientError::Data(format!(
                    "column {:?} of partition {} (batch {}) is {} in its file and cannot be read \
                     as {} without losing values: {e}",
                    field.name(),
                    origin.partition,
                    origin.batch_id,
                    found.data_type(),
                    field.data_type()
                ))
            })?
        };
        if !field.is_nullable() && array.null_count() > 0 {
            return Err(ClientError::Data(format!(
                "column {:?} of partition {} (batch {}) holds nulls, but the table declares it \
                 not null",
                field.name(),
                origin.partition,
                origin.batch_id
            )));
        }
        arrays.push(array);
    }
    arrays.extend(keys.iter().map(|k| k.make(rows)));
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &options,
    )?)
}

pub(crate) fn selector_to_pb(selector: &Selector) -> pb::Selector {
    use pb::selector::Kind;
    let kind = match selector {
        Selector::Current => Kind::Current(true),
        Selector::Version(v) => Kind::Version(*v),
        Selector::Batch(b) => Kind::BatchId(b.clone()),
        Selector::Tag(t) => Kind::Tag(t.clone()),
        Selector::AsOf(t) => Kind::AsOfMicros(t.timestamp_micros()),
    };
    pb::Selector { kind: Some(kind) }
}
