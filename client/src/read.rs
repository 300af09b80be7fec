//! The read path: resolve a partition selection to batches, fetch their Parquet files
//! concurrently, decode them on blocking threads in parallel, and return Arrow batches.
//!
//! Column projection is pushed into the Parquet decoder. When a read spans other than exactly
//! one named partition, the partition keys are added as columns, typed by the table's key types.

use crate::client::{Client, pairs, partition_spec, table_ref};
use crate::error::{ClientError, Result};
use crate::types::{KeyType, PartitionSpec, Selector, TableName, from_micros};
use crate::write::Progress;
use arrow_array::{ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use batchstore_proto::v1 as pb;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
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
    keys: Vec<ArrayMaker>,
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
        let mut specs = Vec::with_capacity(request.partitions.len());
        for spec in &request.partitions {
            specs.push(partition_spec(&self.partition_pairs(table, spec).await?));
        }
        let resolved = self
            .rpc
            .clone()
            .resolve_partitions(pb::ResolvePartitionsRequest {
                table: Some(table_ref(table)),
                partitions: specs,
                selector: Some(selector_to_pb(&request.selector)),
            })
            .await?
            .into_inner();
        let table_info = resolved
            .table
            .clone()
            .map(crate::client::table_info)
            .transpose()?;
        let key_types: Vec<(String, KeyType)> = table_info
            .as_ref()
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

        let stored_schema = match resolved.partitions.first() {
            Some(p) if !p.arrow_schema.is_empty() => crate::schema::decode(&p.arrow_schema)?,
            _ => match &table_info {
                Some(t) if !t.arrow_schema.is_empty() => crate::schema::decode(&t.arrow_schema)?,
                _ => Schema::empty(),
            },
        };
        let (projection, mut fields) = project(&stored_schema, request.columns.as_deref())?;
        if add_keys {
            fields.extend(
                key_types
                    .iter()
                    .map(|(name, t)| Field::new(name, key_data_type(*t), false)),
            );
        }
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            stored_schema.metadata().clone(),
        ));

        let mut tasks = Vec::new();
        let mut partitions = Vec::with_capacity(resolved.partitions.len());
        for p in &resolved.partitions {
            let dir = self.stores.batch_dir(&p.location)?;
            let values = pairs(p.partition.as_ref());
            let keys = if add_keys {
                key_makers(&key_types, &values)?
            } else {
                Vec::new()
            };
            for file in &p.files {
                tasks.push(FileTask {
                    store: dir.store.clone(),
                    path: dir.file(&file.path)?,
                    keys: keys.clone(),
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
        let bytes: u64 = resolved
            .partitions
            .iter()
            .map(|p| p.bytes.max(0) as u64)
            .sum();
        let parallelism = match request.parallelism {
            0 => 2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let columns = Arc::new(projection);
        let decoded: Vec<Vec<RecordBatch>> = futures::stream::iter(tasks)
            .map(|task| fetch_and_decode(task, schema.clone(), columns.clone(), progress.clone()))
            .buffered(parallelism)
            .try_collect()
            .await?;
        Ok(ReadResult {
            schema,
            batches: decoded.into_iter().flatten().collect(),
            partitions,
            bytes,
        })
    }
}

/// Column names to keep (None = all) → the root indices and the output fields.
fn project(
    schema: &Schema,
    columns: Option<&[String]>,
) -> Result<(Option<Vec<usize>>, Vec<Field>)> {
    let Some(columns) = columns else {
        return Ok((
            None,
            schema.fields().iter().map(|f| f.as_ref().clone()).collect(),
        ));
    };
    let mut indices = Vec::with_capacity(columns.len());
    for (i, name) in columns.iter().enumerate() {
        if columns[..i].contains(name) {
            return Err(ClientError::InvalidArgument(format!(
                "column {name:?} is asked for twice"
            )));
        }
        let index = schema.index_of(name).map_err(|_| {
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
        indices.push(index);
    }
    let fields = indices.iter().map(|&i| schema.field(i).clone()).collect();
    Ok((Some(indices), fields))
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

async fn fetch_and_decode(
    task: FileTask,
    schema: SchemaRef,
    columns: Arc<Option<Vec<usize>>>,
    progress: Option<Arc<dyn Progress>>,
) -> Result<Vec<RecordBatch>> {
    let bytes: Bytes = task.store.get(&task.path).await?.bytes().await?;
    let size = bytes.len() as u64;
    let batches =
        tokio::task::spawn_blocking(move || decode(bytes, &schema, &columns, &task.keys)).await??;
    if let Some(progress) = &progress {
        progress.advance(batches.iter().map(|b| b.num_rows() as u64).sum(), size);
    }
    Ok(batches)
}

fn decode(
    bytes: Bytes,
    schema: &SchemaRef,
    columns: &Option<Vec<usize>>,
    keys: &[ArrayMaker],
) -> Result<Vec<RecordBatch>> {
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(BATCH_ROWS);
    if let Some(columns) = columns {
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
        builder = builder.with_projection(mask);
    }
    let reader = builder.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        out.push(conform(batch, schema, columns.as_deref(), keys)?);
    }
    Ok(out)
}

/// Puts a decoded batch into the output schema: columns in the requested order (the decoder
/// returns them in file order), cast where a file's type differs, keys appended.
fn conform(
    batch: RecordBatch,
    schema: &SchemaRef,
    columns: Option<&[usize]>,
    keys: &[ArrayMaker],
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut arrays: Vec<ArrayRef> = match columns {
        None => batch.columns().to_vec(),
        Some(wanted) => {
            let mut sorted: Vec<usize> = wanted.to_vec();
            sorted.sort_unstable();
            wanted
                .iter()
                .map(|i| {
                    batch
                        .column(sorted.binary_search(i).unwrap_or_default())
                        .clone()
                })
                .collect()
        }
    };
    for (array, field) in arrays.iter_mut().zip(schema.fields()) {
        if array.data_type() != field.data_type() {
            *array = arrow_cast::cast(array, field.data_type())?;
        }
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
