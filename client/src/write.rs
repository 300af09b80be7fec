//! The write path: Arrow record batches → Parquet files in a fresh batch → one commit.
//!
//! Input is cut into files of at most `rows_per_file` rows (zero-copy slices); files are encoded
//! on blocking threads, `parallelism` at a time (one small file of rows already in memory, by
//! the write's own task), and uploaded as soon as each is encoded, each with one create-only
//! PUT (a file that exists already is never overwritten; files are cut well below the 5 GiB a
//! single S3 PUT allows). Only when every file is in place does the commit
//! make the batch visible, so a write that fails or is killed at any point leaves every
//! partition as it was; a failed write tells the metastore (AbortWrite) when it still can,
//! and otherwise its lease runs out. A front end that must convert its data first (a pandas
//! frame) can begin the batches early, so that the round trip overlaps the conversion.

use crate::client::Client;
use crate::commit::{CommitOutcome, repeat_while_unknown};
use crate::error::{ClientError, Result};
use crate::partition::{PartitionSpec, describe_partition};
use crate::storage::BatchDir;
use crate::types::{CommitInfo, Expected, TableName};
use crate::wire::{expected_to_pb, spec_to_pb, table_ref};
use arrow_array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow_schema::{DataType, SchemaRef};
use batchstore_proto::v1 as pb;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt, TryStreamExt};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

/// A file is also cut when its input reaches this many bytes of Arrow memory.
const MAX_FILE_MEMORY: usize = 512 * 1024 * 1024;
/// Files of at most this many bytes of Arrow memory are encoded by the thread reading the
/// input, as it cuts them: handing a tiny file to a thread of its own costs more than encoding
/// it.
const ENCODE_INLINE_MEMORY: usize = 1024 * 1024;
/// Files of less Arrow memory than this are stored uncompressed: compressing one would save a
/// few KiB at most, while the zstd contexts Parquet sets up for each of its columns cost more
/// than the rest of a tiny write.
const COMPRESS_FROM_MEMORY: usize = 32 * 1024;
/// The in-memory rows of a one-partition write are encoded by the write's own task when they
/// take less Arrow memory than this and at most [`ENCODE_ON_TASK_ROWS`] rows in at most
/// [`ENCODE_ON_TASK_COLUMNS`] columns (nested ones counted with their children): one small
/// uncompressed file, tens of microseconds of work, less than handing it to a blocking thread
/// and back (two thread wake-ups). Rows bound what memory does not (nulls and dictionaries take
/// almost none), columns the per-column cost of a Parquet file.
const ENCODE_ON_TASK_MEMORY: usize = COMPRESS_FROM_MEMORY;
const ENCODE_ON_TASK_ROWS: usize = 4096;
const ENCODE_ON_TASK_COLUMNS: usize = 32;
/// Most partitions one write commits (the metastore's limit of updates per commit), checked
/// before anything is uploaded.
pub const MAX_PARTITIONS_PER_WRITE: usize = 10_000;

/// Reports progress of long writes and reads (a progress bar, a Python callback).
pub trait Progress: Send + Sync {
    /// `rows` more rows and `bytes` more stored bytes are done.
    fn advance(&self, rows: u64, bytes: u64);
}

/// How data is laid out in files.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Most rows in one Parquet file (and one row group).
    pub rows_per_file: usize,
    /// zstd compression level (1 is fast; up to 22). Files of under 32 KiB of Arrow data are
    /// stored uncompressed.
    pub zstd_level: i32,
    /// Files encoded and uploaded at once.
    pub parallelism: usize,
    /// Lease to ask for; `None` = the metastore's default.
    pub lease: Option<Duration>,
    /// Cancels the write (Ctrl-C in a front end); see [`Client::write_partitions`].
    pub cancel: CancellationToken,
    /// When the table (or its namespace) does not exist, create it and write: its partition
    /// keys are the first partition's names, typed by its values (see [`crate::partition`]).
    /// Bare values cannot name keys, so with them the write fails with `NotFound` saying how
    /// to create the table.
    pub create_table_if_missing: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            rows_per_file: 1 << 20,
            zstd_level: 1,
            parallelism: crate::runtime::cores(),
            lease: None,
            cancel: CancellationToken::new(),
            create_table_if_missing: false,
        }
    }
}

/// The data of one partition in a write.
pub struct PartitionData {
    pub partition: PartitionSpec,
    /// Compare-and-swap expectation for this partition.
    pub expected: Option<Expected>,
    pub data: Rows,
}

/// A partition's rows, as a write takes them.
pub enum Rows {
    /// Read as the write goes, on a blocking thread: reading may wait (on a file, a pipe,
    /// another process) or run code of the caller's.
    Stream(Box<dyn RecordBatchReader + Send>),
    /// In memory already (a pyarrow Table, say): taking them never waits, so a small input is
    /// encoded by the write's own task (see [`ENCODE_ON_TASK_MEMORY`]). Every batch has the
    /// schema given, as a stream's batches have its schema.
    Batches(SchemaRef, Vec<RecordBatch>),
}

impl Rows {
    /// Rows read from `reader` as the write goes.
    pub fn stream(reader: impl RecordBatchReader + Send + 'static) -> Self {
        Rows::Stream(Box::new(reader))
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Rows::Stream(reader) => reader.schema(),
            Rows::Batches(schema, _) => schema.clone(),
        }
    }

    /// The same rows, read on a blocking thread whatever their size.
    fn streamed(self) -> Self {
        Rows::Stream(self.into_reader())
    }

    fn into_reader(self) -> Box<dyn RecordBatchReader + Send> {
        match self {
            Rows::Stream(reader) => reader,
            Rows::Batches(schema, batches) => Box::new(RecordBatchIterator::new(
                batches.into_iter().map(Ok),
                schema,
            )),
        }
    }

    /// The whole input as one small file's rows, with their Arrow memory, when it is in memory,
    /// holds rows, fits one file and is within the bounds of [`ENCODE_ON_TASK_MEMORY`];
    /// otherwise a reader of all of it, for a blocking thread.
    fn into_small(
        self,
        rows_per_file: usize,
    ) -> std::result::Result<(Vec<RecordBatch>, usize), Box<dyn RecordBatchReader + Send>> {
        let (schema, batches) = match self {
            Rows::Stream(reader) => return Err(reader),
            Rows::Batches(schema, batches) => (schema, batches),
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let memory: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        if rows == 0
            || rows > rows_per_file.min(ENCODE_ON_TASK_ROWS)
            || schema.flattened_fields().len() > ENCODE_ON_TASK_COLUMNS
            || memory >= ENCODE_ON_TASK_MEMORY
        {
            return Err(Rows::Batches(schema, batches).into_reader());
        }
        Ok((batches, memory))
    }
}

/// A write to one or many partitions of one table, committed all or nothing.
pub struct WriteRequest {
    pub table: TableName,
    pub partitions: Vec<PartitionData>,
    pub message: String,
    /// Batches this data was computed from (lineage).
    pub inputs: Vec<String>,
}

impl Client {
    /// Writes one partition: a new batch, then a commit. See [`Client::write_partitions`].
    ///
    /// # Errors
    /// As [`Client::write_partitions`].
    pub async fn write(
        &self,
        table: &TableName,
        data: PartitionData,
        message: &str,
        options: &WriteOptions,
        progress: Option<Arc<dyn Progress>>,
    ) -> Result<CommitInfo> {
        let request = WriteRequest {
            table: table.clone(),
            partitions: vec![data],
            message: message.to_owned(),
            inputs: Vec::new(),
        };
        let mut committed = self.write_partitions(request, options, progress).await?;
        committed
            .pop()
            .ok_or_else(|| ClientError::Internal("the commit returned no partition".into()))
    }

    /// Writes each partition's data into a fresh batch (partitions concurrently) and commits
    /// them all in one commit.
    ///
    /// Cancelling `options.cancel` before the commit is sent aborts the batches and returns
    /// `Cancelled` ("nothing was committed", `committed` empty); once the commit is sent it is
    /// settled first, and `Cancelled` then says whether it succeeded (`committed` lists the
    /// versions it made). A lost reply is settled by resending the
    /// same commit (see `commit`); if it cannot be, `OutcomeUnknown` says so.
    ///
    /// # Errors
    /// `NotFound` for a missing table; `SchemaMismatch` naming the column; `Conflict` when an
    /// expectation fails; `Storage`/`Data` when files cannot be written; `OutcomeUnknown`. In
    /// every case but the last, no partition changed.
    pub async fn write_partitions(
        &self,
        request: WriteRequest,
        options: &WriteOptions,
        progress: Option<Arc<dyn Progress>>,
    ) -> Result<Vec<CommitInfo>> {
        self.write_after(request, options, progress, None).await
    }

    /// Starts beginning the batches of a write to `partitions` of `table` now, on the runtime
    /// (call it from within the runtime), so that the round trip runs while the caller still
    /// prepares the data, for example converts a frame. [`Client::write_begun`] then writes
    /// with them; dropped unused, the batches are aborted. Errors surface in that write.
    pub fn begin_early(
        &self,
        table: &TableName,
        partitions: Vec<PartitionSpec>,
        options: &WriteOptions,
    ) -> EarlyBegin {
        let pending = Arc::new(PendingBatches::new(self.clone()));
        let begun = {
            let (client, table, partitions, options, pending) = (
                self.clone(),
                table.clone(),
                partitions.clone(),
                options.clone(),
                pending.clone(),
            );
            // A missing table is created by the write itself, once its data is ready: a frame
            // that fails to convert leaves nothing behind.
            tokio::spawn(async move {
                client
                    .begin_all(&table, &partitions, &options, &pending)
                    .await
            })
        };
        EarlyBegin {
            table: table.clone(),
            partitions,
            pending,
            begun: AbortOnDropHandle::new(begun),
        }
    }

    /// [`Client::write_partitions`] with batches begun early for exactly these partitions
    /// (same table, same partitions in the same order, same options).
    ///
    /// # Errors
    /// As [`Client::write_partitions`]; `InvalidArgument` when `early` was begun for other
    /// partitions (it is then aborted).
    pub async fn write_begun(
        &self,
        request: WriteRequest,
        options: &WriteOptions,
        progress: Option<Arc<dyn Progress>>,
        early: EarlyBegin,
    ) -> Result<Vec<CommitInfo>> {
        let same = early.table == request.table
            && early
                .partitions
                .iter()
                .eq(request.partitions.iter().map(|p| &p.partition));
        if !same {
            early.abort().await;
            return Err(ClientError::InvalidArgument(
                "the batches were begun early for other partitions than the write's".into(),
            ));
        }
        self.write_after(request, options, progress, Some(early))
            .await
    }

    async fn write_after(
        &self,
        request: WriteRequest,
        options: &WriteOptions,
        progress: Option<Arc<dyn Progress>>,
        early: Option<EarlyBegin>,
    ) -> Result<Vec<CommitInfo>> {
        if request.partitions.len() > MAX_PARTITIONS_PER_WRITE {
            return Err(ClientError::InvalidArgument(format!(
                "a write commits at most {MAX_PARTITIONS_PER_WRITE} partitions at once; {} were \
                 given, so split the write",
                request.partitions.len()
            )));
        }
        let (pending, early) = match early {
            Some(early) => (early.pending, Some(early.begun)),
            None => (Arc::new(PendingBatches::new(self.clone())), None),
        };
        let specs: Vec<PartitionSpec> = request
            .partitions
            .iter()
            .map(|p| p.partition.clone())
            .collect();
        let begun = self.begin_or_create(&request.table, &specs, options, &pending, early);
        let work = TaskTracker::new();
        let staged = tokio::select! {
            staged = self.stage(begun, request.partitions, &request.inputs, options,
                                progress, &work) => staged,
            () = options.cancel.cancelled() => Err(ClientError::Cancelled {
                committed: Vec::new(),
                message: "interrupted; nothing was committed".into(),
            }),
        };
        // A failed or cancelled write may leave its input still being read or encoded on
        // blocking threads, which cannot be stopped: the write ends with them, so that nothing
        // holds the caller's data once it returns (a Python process exiting then would free
        // pyarrow memory after pyarrow is gone).
        work.close();
        work.wait().await;
        let updates = match staged {
            Ok(updates) => updates,
            Err(error) => {
                // Give the batches up now rather than waiting for their leases to run out.
                pending.abort().await;
                return Err(error);
            }
        };
        let sent = pending.commit_sent();
        let commit = pb::CommitRequest {
            updates,
            message: request.message,
            actor: String::new(),
        };
        let result = match self.commit_settled(commit).await {
            CommitOutcome::Answered(Ok(committed)) => Ok(committed),
            CommitOutcome::Answered(Err(refusal)) => {
                // A definite refusal: the batches were not committed by this request.
                abort_all(self.rpc.clone(), sent).await;
                Err(refusal)
            }
            CommitOutcome::Unknown(error) => return Err(error),
        };
        if !options.cancel.is_cancelled() {
            return result;
        }
        Err(match result {
            Ok(committed) => ClientError::Cancelled {
                message: format!(
                    "interrupted, but the commit had already been sent, and it succeeded: {}",
                    committed
                        .iter()
                        .map(|c| format!(
                            "partition {} is at version {} (batch {})",
                            describe_partition(&c.partition),
                            c.version,
                            c.batch_id
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                committed,
            },
            Err(error) => ClientError::Cancelled {
                committed: Vec::new(),
                message: format!("interrupted; nothing was committed ({error})"),
            },
        })
    }

    /// Uploads each partition's data into the batch `begun` gives it, partitions
    /// concurrently; returns the commit's updates in the order given. Files are encoded while
    /// the batches begin, but nothing is uploaded unless every batch began.
    async fn stage(
        &self,
        begun: impl Future<Output = Result<Vec<pb::BeginWriteResponse>>>,
        partitions: Vec<PartitionData>,
        inputs: &[String],
        options: &WriteOptions,
        progress: Option<Arc<dyn Progress>>,
        work: &TaskTracker,
    ) -> Result<Vec<pb::PartitionUpdate>> {
        let (senders, promises): (Vec<_>, Vec<DirPromise>) = partitions
            .iter()
            .map(|_| {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                (sender, receiver.shared())
            })
            .unzip();
        // Set when every upload has ended, so that lease renewal stops.
        let uploads_ended = CancellationToken::new();
        let begin = async {
            let begun = begun.await?;
            for (sender, begun) in senders.into_iter().zip(&begun) {
                // A receiver gone means that upload failed already; its error is reported.
                let _ = sender.send(self.stores.batch_dir(&begun.location)?);
            }
            // Keeps every batch's lease alive while the data uploads, however long that takes
            // (polled with the uploads: no task of its own to start and stop per write).
            tokio::select! {
                () = renew_leases(self.rpc.clone(), &begun, options.lease) => {}
                () = uploads_ended.cancelled() => {}
            }
            Ok::<_, ClientError>(begun)
        };
        // The partitions of one write upload on one task: their files are encoded on blocking
        // threads, side by side, however small.
        let several = partitions.len() > 1;
        let uploads = async {
            let uploaded = futures::stream::iter(partitions.into_iter().zip(promises))
                .map(|(part, dir)| {
                    let progress = progress.clone();
                    let data = if several {
                        part.data.streamed()
                    } else {
                        part.data
                    };
                    async move {
                        let (schema, files) =
                            upload_batch(dir, data, options, progress, work).await?;
                        Ok::<_, ClientError>((schema, files, part.expected))
                    }
                })
                .buffered(options.parallelism.clamp(1, 8))
                .try_collect::<Vec<_>>()
                .await;
            uploads_ended.cancel();
            uploaded
        };
        let (begun, uploaded) = tokio::join!(begin, uploads);
        // The batches' own error first: an upload waiting for a batch that never began fails
        // only because of it.
        let begun = begun?;
        Ok(uploaded?
            .into_iter()
            .zip(begun)
            .map(|((schema, files, expected), begun)| pb::PartitionUpdate {
                batch_id: begun.batch_id,
                files,
                arrow_schema: crate::schema::encode(&schema),
                expected_current_batch_id: expected.map(expected_to_pb),
                input_batch_ids: inputs.to_vec(),
            })
            .collect())
    }

    /// Begins one batch per partition (creating the table first when asked and missing), or
    /// takes the batches begun early.
    async fn begin_or_create(
        &self,
        table: &TableName,
        specs: &[PartitionSpec],
        options: &WriteOptions,
        pending: &PendingBatches,
        early: Option<AbortOnDropHandle<Result<Vec<pb::BeginWriteResponse>>>>,
    ) -> Result<Vec<pb::BeginWriteResponse>> {
        let begun = match early {
            Some(task) => task.await?,
            None => self.begin_all(table, specs, options, pending).await,
        };
        match begun {
            Err(missing)
                if options.create_table_if_missing
                    && self.table_is_missing(table, &missing).await =>
            {
                pending.abort().await;
                self.create_for_write(table, specs.first()).await?;
                self.begin_all(table, specs, options, pending).await
            }
            other => other,
        }
    }

    /// Begins one batch per partition, concurrently, in the order given.
    async fn begin_all(
        &self,
        table: &TableName,
        partitions: &[PartitionSpec],
        options: &WriteOptions,
        pending: &PendingBatches,
    ) -> Result<Vec<pb::BeginWriteResponse>> {
        let begin_one = |partition: &PartitionSpec| {
            let request = pb::BeginWriteRequest {
                table: Some(table_ref(table)),
                partition: Some(spec_to_pb(partition)),
                lease_seconds: lease_seconds(options.lease),
            };
            async move {
                let begun = repeat_while_unknown(|| {
                    let mut call = tonic::Request::new(request.clone());
                    call.set_timeout(crate::client::RPC_DEADLINE);
                    let mut rpc = self.rpc.clone();
                    async move { rpc.begin_write(call).await }
                })
                .await
                .map_err(|(status, _)| ClientError::from(status))?
                .into_inner();
                pending.add(begun.batch_id.clone());
                Ok::<_, ClientError>(begun)
            }
        };
        futures::stream::iter(partitions)
            .map(begin_one)
            .buffered(8)
            .try_collect()
            .await
    }

    /// True when `error` says the table (or its namespace) is missing. A metastore older than
    /// the `batchstore-missing` metadata says only NOT_FOUND; then the table is looked up.
    async fn table_is_missing(&self, table: &TableName, error: &ClientError) -> bool {
        match error {
            ClientError::NotFound { what: None, .. } => matches!(
                self.get_table(table).await,
                Err(ClientError::NotFound { .. })
            ),
            other => other.is_missing_table(),
        }
    }

    /// Creates the missing table a write names, keyed by its first partition's names and the
    /// types its values suggest.
    async fn create_for_write(
        &self,
        table: &TableName,
        first: Option<&PartitionSpec>,
    ) -> Result<()> {
        let keys = match first.map(PartitionSpec::suggested_keys) {
            Some(Some(keys)) => keys,
            Some(None) => {
                return Err(ClientError::NotFound {
                    what: Some(crate::error::Missing::Table),
                    name: Some(table.to_string()),
                    message: format!(
                        "table {table} does not exist, and bare partition values cannot name \
                         its keys: create it with its partition keys first (tablectl table \
                         create, bs.create_table in Python, sf_create_table in R), or name the \
                         values (for example ds=20161031) to create it on the first write"
                    ),
                });
            }
            None => Vec::new(),
        };
        self.create_namespace(&table.namespace, true).await?;
        match self.create_table(table, &keys, None, true).await {
            // Another write created it meanwhile, with other key types than these values
            // suggest: the batch then begins against its keys, as if this write came second
            // (a value that does not fit them is refused there).
            Ok(_) | Err(ClientError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A lease on the wire: whole seconds, at least one; 0 asks for the metastore's default.
fn lease_seconds(lease: Option<Duration>) -> i64 {
    lease.map_or(0, |l| l.as_secs().max(1) as i64)
}

/// Renews the leases of batches being uploaded, every third of the lease (at most every
/// [`RENEW_EVERY`]), for as long as it is polled (until the upload ends). A failed renewal is
/// only logged: the commit then reports the expired lease exactly.
async fn renew_leases(
    rpc: crate::client::Rpc,
    begun: &[pb::BeginWriteResponse],
    lease: Option<Duration>,
) {
    // The lease asked for, else what the metastore granted (by this machine's clock).
    let granted = lease.unwrap_or_else(|| {
        let now = chrono::Utc::now().timestamp_micros();
        let first = begun.iter().map(|b| b.lease_expires_at_micros).min();
        Duration::from_micros(first.map_or(0, |e| e.saturating_sub(now)).max(0) as u64)
    });
    let every = (granted / 3).clamp(Duration::from_millis(200), RENEW_EVERY);
    let lease_seconds = lease_seconds(lease);
    loop {
        tokio::time::sleep(every).await;
        for begun in begun {
            let mut call = tonic::Request::new(pb::RenewLeaseRequest {
                batch_id: begun.batch_id.clone(),
                lease_seconds,
            });
            call.set_timeout(every.max(Duration::from_secs(5)));
            if let Err(error) = rpc.clone().renew_lease(call).await {
                tracing::debug!(batch_id = %begun.batch_id, %error, "could not renew the lease");
            }
        }
    }
}

/// The longest wait between renewals.
const RENEW_EVERY: Duration = Duration::from_secs(60);

/// Batches begun but not committed: aborted on error, and when dropped (cancellation) by a
/// task on the runtime; never once their commit was sent, since it may have succeeded.
struct PendingBatches {
    client: Client,
    ids: Mutex<Vec<String>>,
    /// The runtime they were begun on, which aborts them when they are dropped elsewhere (an
    /// early begin dropped by a front end's thread).
    runtime: Option<tokio::runtime::Handle>,
}

impl PendingBatches {
    fn new(client: Client) -> Self {
        PendingBatches {
            client,
            ids: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    fn add(&self, batch_id: String) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.push(batch_id);
        }
    }

    fn take(&self) -> Vec<String> {
        self.ids
            .lock()
            .map(|mut ids| std::mem::take(&mut *ids))
            .unwrap_or_default()
    }

    /// The commit is on its way: the batches are handed back to the caller, and neither an
    /// error nor a drop aborts them any more; only a definite refusal may.
    fn commit_sent(&self) -> Vec<String> {
        self.take()
    }

    /// Tells the metastore to give up every batch (best effort: a lease expiry does the same).
    async fn abort(&self) {
        abort_all(self.client.rpc.clone(), self.take()).await;
    }
}

impl Drop for PendingBatches {
    fn drop(&mut self) {
        let ids = self.take();
        if ids.is_empty() {
            return;
        }
        let Some(runtime) = &self.runtime else {
            return;
        };
        runtime.spawn(abort_all(self.client.rpc.clone(), ids));
    }
}

async fn abort_all(mut rpc: crate::client::Rpc, batch_ids: Vec<String>) {
    for batch_id in batch_ids {
        if let Err(error) = rpc.abort_write(crate::commit::abort_call(&batch_id)).await {
            tracing::debug!(%batch_id, %error, "could not abort the batch; its lease will expire");
        }
    }
}

/// The batches of a write begun before its data was ready; see [`Client::begin_early`].
pub struct EarlyBegin {
    table: TableName,
    partitions: Vec<PartitionSpec>,
    pending: Arc<PendingBatches>,
    begun: AbortOnDropHandle<Result<Vec<pb::BeginWriteResponse>>>,
}

impl EarlyBegin {
    /// Gives the batches up, for a write that will not happen (its data could not be
    /// prepared): once the begin has ended, every batch it began is aborted. Merely dropped,
    /// the begin is cut short and a batch it began unseen waits for its lease to run out.
    pub async fn abort(self) {
        // Its error does not matter: whatever began was recorded as pending.
        let _ = self.begun.await;
        self.pending.abort().await;
    }
}

/// A partition's batch directory, once its batch (and every other batch of the write) began.
type DirPromise = futures::future::Shared<tokio::sync::oneshot::Receiver<BatchDir>>;

/// Encodes all of `data` and uploads it into `dir` once that is known; returns its schema and
/// the files written.
async fn upload_batch(
    dir: DirPromise,
    data: Rows,
    options: &WriteOptions,
    progress: Option<Arc<dyn Progress>>,
    work: &TaskTracker,
) -> Result<(SchemaRef, Vec<pb::DataFile>)> {
    let schema = data.schema();
    let parallelism = options.parallelism.max(1);
    let encoder = Encoder::new(schema.clone(), options)?;
    let (sender, mut chunks) = tokio::sync::mpsc::channel::<Result<Chunk>>(parallelism);
    let rows_per_file = options.rows_per_file.max(1);
    let producer = match data.into_small(rows_per_file) {
        Ok((batches, memory)) => {
            // The channel holds at least one chunk, and this is the only one; were it refused,
            // the write would lose its rows, so that fails it.
            sender
                .try_send(encoder.chunk(batches, memory))
                .map_err(|_| {
                    ClientError::Internal(
                        "the encoded file could not be queued for upload; nothing was committed"
                            .into(),
                    )
                })?;
            drop(sender);
            None
        }
        Err(reader) => {
            let cutter = encoder.clone();
            Some(work.spawn_blocking(move || {
                cut_into_files(reader, rows_per_file, &cutter, &sender);
            }))
        }
    };

    // A small file (encoded already, as it was cut) is uploaded here, with the input: a tiny
    // write then costs no task start and no wake-up of another thread to finish. A large one
    // gets a task of its own, so that the work its upload does on the runtime (the SHA-256 of
    // an S3 payload) runs beside the other files' on every core.
    let mut uploads = FuturesUnordered::new();
    let mut files = Vec::new();
    let mut index = 0usize;
    let mut input_ended = false;
    loop {
        tokio::select! {
            Some(done) = uploads.next(), if !uploads.is_empty() => files.push(done?),
            chunk = chunks.recv(), if !input_ended && uploads.len() < parallelism => {
                let Some(chunk) = chunk else {
                    input_ended = true;
                    continue;
                };
                let chunk = chunk?;
                let small = matches!(chunk, Chunk::Encoded(..));
                let upload = encode_and_put(
                    dir.clone(),
                    format!("part-{index:05}.parquet"),
                    encoder.clone(),
                    chunk,
                    progress.clone(),
                    work.clone(),
                );
                uploads.push(if small {
                    upload.boxed()
                } else {
                    let task = AbortOnDropHandle::new(tokio::spawn(upload));
                    async move { task.await? }.boxed()
                });
                index += 1;
            }
            else => break,
        }
    }
    if let Some(producer) = producer {
        producer.await?;
    }
    if index == 0 {
        // No rows at all: one empty file still records the schema.
        files.push(
            encode_and_put(
                dir,
                "part-00000.parquet".into(),
                encoder,
                Chunk::Batches(Vec::new(), 0),
                progress,
                work.clone(),
            )
            .await?,
        );
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((schema, files))
}

/// One file's data: its record batches with their Arrow memory, or (when small) already
/// encoded with its row count.
enum Chunk {
    Batches(Vec<RecordBatch>, usize),
    Encoded(Bytes, usize),
}

/// How a file is encoded: zstd at the level asked for, or uncompressed when it is tiny.
#[derive(Clone)]
struct Encoder {
    schema: SchemaRef,
    compressed: Arc<WriterProperties>,
    uncompressed: Arc<WriterProperties>,
}

impl Encoder {
    /// # Errors
    /// `InvalidArgument` for a bad level, or a column Parquet cannot hold (a union, at any
    /// depth: the Parquet writer would panic on it).
    fn new(schema: SchemaRef, options: &WriteOptions) -> Result<Self> {
        if let Some(field) = schema.fields().iter().find(|f| holds_union(f.data_type())) {
            return Err(ClientError::InvalidArgument(format!(
                "column {:?} is of type {}, which holds a union; Parquet cannot store unions, so \
                 cast the column to one type (or split it into one column per type) first",
                field.name(),
                field.data_type()
            )));
        }
        let level = ZstdLevel::try_new(options.zstd_level).map_err(|e| {
            ClientError::InvalidArgument(format!("bad zstd level {}: {e}", options.zstd_level))
        })?;
        let properties = |compression| {
            Arc::new(
                WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(options.rows_per_file.max(1)))
                    .build(),
            )
        };
        Ok(Encoder {
            schema,
            compressed: properties(Compression::ZSTD(level)),
            uncompressed: properties(Compression::UNCOMPRESSED),
        })
    }

    /// The Parquet file of `batches`, which take `memory` bytes of Arrow memory (blocking: call
    /// it off the async workers).
    fn encode(&self, batches: &[RecordBatch], memory: usize) -> Result<Bytes> {
        let properties = if memory < COMPRESS_FROM_MEMORY {
            &self.uncompressed
        } else {
            &self.compressed
        };
        let mut writer = ArrowWriter::try_new(
            Vec::new(),
            self.schema.clone(),
            Some((**properties).clone()),
        )?;
        for batch in batches {
            writer.write(batch)?;
        }
        Ok(Bytes::from(writer.into_inner()?))
    }

    /// A cut file: encoded here when small, else left to a thread of its own.
    fn chunk(&self, batches: Vec<RecordBatch>, memory: usize) -> Result<Chunk> {
        if memory > ENCODE_INLINE_MEMORY {
            return Ok(Chunk::Batches(batches, memory));
        }
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        Ok(Chunk::Encoded(self.encode(&batches, memory)?, rows))
    }
}

/// Whether values of `data_type` are, or hold, unions.
fn holds_union(data_type: &DataType) -> bool {
    match data_type {
        DataType::Union(..) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => holds_union(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| holds_union(f.data_type())),
        DataType::Dictionary(_, values) => holds_union(values),
        DataType::RunEndEncoded(_, values) => holds_union(values.data_type()),
        _ => false,
    }
}

/// Reads `data` and sends chunks of at most `rows_per_file` rows; stops early when the
/// receiver is gone (the write failed elsewhere).
fn cut_into_files(
    data: Box<dyn RecordBatchReader + Send>,
    rows_per_file: usize,
    encoder: &Encoder,
    sender: &tokio::sync::mpsc::Sender<Result<Chunk>>,
) {
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let (mut rows, mut memory) = (0usize, 0usize);
    for batch in data {
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                let _ = sender.blocking_send(Err(ClientError::Data(format!(
                    "reading the input failed: {e}"
                ))));
                return;
            }
        };
        while batch.num_rows() > 0 {
            let take = batch.num_rows().min(rows_per_file - rows);
            let part = batch.slice(0, take);
            batch = batch.slice(take, batch.num_rows() - take);
            rows += take;
            memory += part.get_array_memory_size();
            chunk.push(part);
            if rows == rows_per_file || memory >= MAX_FILE_MEMORY {
                let cut = encoder.chunk(std::mem::take(&mut chunk), memory);
                if sender.blocking_send(cut).is_err() {
                    return;
                }
                (rows, memory) = (0, 0);
            }
        }
    }
    if !chunk.is_empty() {
        let _ = sender.blocking_send(encoder.chunk(chunk, memory));
    }
}

async fn encode_and_put(
    dir: DirPromise,
    name: String,
    encoder: Encoder,
    chunk: Chunk,
    progress: Option<Arc<dyn Progress>>,
    work: TaskTracker,
) -> Result<pb::DataFile> {
    let (encoded, rows) = match chunk {
        Chunk::Encoded(bytes, rows) => (bytes, rows),
        Chunk::Batches(batches, memory) => {
            let rows = batches.iter().map(RecordBatch::num_rows).sum();
            let bytes = work
                .spawn_blocking(move || encoder.encode(&batches, memory))
                .await??;
            (bytes, rows)
        }
    };
    let size = encoded.len();
    let dir = dir
        .await
        .map_err(|_| ClientError::Internal("the write's batches did not begin".into()))?;
    dir.put_new(&dir.file(&name)?, encoded).await?;
    if let Some(progress) = &progress {
        progress.advance(rows as u64, size as u64);
    }
    Ok(pb::DataFile {
        path: name,
        size_bytes: size as i64,
        rows: rows as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn batch(rows: usize) -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("name-{}", i % 50)),
        ));
        RecordBatch::try_from_iter([("id", ids), ("name", names)]).expect("a valid batch")
    }

    /// Encodes `batch` as a write cuts it, and returns every column chunk's codec and the rows
    /// read back.
    fn encoded(batch: &RecordBatch) -> (Vec<Compression>, Vec<RecordBatch>) {
        let options = WriteOptions {
            zstd_level: 3,
            ..WriteOptions::default()
        };
        let encoder = Encoder::new(batch.schema(), &options).expect("an encoder");
        let memory = batch.get_array_memory_size();
        let bytes = match encoder.chunk(vec![batch.clone()], memory).expect("encoded") {
            Chunk::Encoded(bytes, _) => bytes,
            Chunk::Batches(batches, memory) => encoder.encode(&batches, memory).expect("encoded"),
        };
        let file = SerializedFileReader::new(bytes.clone()).expect("a Parquet file");
        let codecs = file
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|group| group.columns().iter().map(|c| c.compression()))
            .collect();
        let read = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.with_batch_size(batch.num_rows()).build())
            .expect("readable")
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("decoded");
        (codecs, read)
    }

    #[test]
    fn tiny_files_are_stored_uncompressed_and_the_rest_in_zstd() {
        let mut sides = (0, 0);
        for rows in [1, 10, 300, 3_000, 20_000] {
            let input = batch(rows);
            let (codecs, read) = encoded(&input);
            assert_eq!(codecs.len(), 2, "{rows} rows: one chunk per column");
            if input.get_array_memory_size() < COMPRESS_FROM_MEMORY {
                sides.0 += 1;
                assert!(
                    codecs.iter().all(|c| *c == Compression::UNCOMPRESSED),
                    "{rows} rows: {codecs:?}"
                );
            } else {
                sides.1 += 1;
                assert!(
                    codecs.iter().all(|c| matches!(c, Compression::ZSTD(_))),
                    "{rows} rows: {codecs:?}"
                );
            }
            assert_eq!(read, vec![input], "{rows} rows read back");
        }
        assert!(
            sides.0 > 0 && sides.1 > 0,
            "both sides of the limit: {sides:?}"
        );
    }

    /// Writes `rows` through [`upload_batch`] into a fresh batch directory under `root`, and
    /// returns the files' names, rows and bytes, with the rows read back in order.
    async fn uploaded(
        root: &std::path::Path,
        name: String,
        rows: Rows,
        rows_per_file: usize,
    ) -> Result<(Vec<(String, i64, Bytes)>, Vec<RecordBatch>)> {
        let stores = crate::storage::Stores::default();
        let dir = stores.batch_dir(&format!("file://{}/{name}", root.display()))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let _ = sender.send(dir);
        let options = WriteOptions {
            rows_per_file,
            ..WriteOptions::default()
        };
        let work = TaskTracker::new();
        let (_, files) = upload_batch(receiver.shared(), rows, &options, None, &work).await?;
        let mut out = Vec::new();
        let mut read = Vec::new();
        for file in files {
            let bytes =
                Bytes::from(std::fs::read(root.join(&name).join(&file.path)).expect("read"));
            assert_eq!(file.size_bytes as usize, bytes.len(), "{name}: stated size");
            let batches = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?
                .build()?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            read.extend(batches.into_iter().filter(|b| b.num_rows() > 0));
            out.push((file.path, file.rows, bytes));
        }
        Ok((out, read))
    }

    /// Inputs on both sides of every bound of the write task's own encoding: (what, batches,
    /// rows per file, encoded by the task).
    fn bounded_inputs() -> Vec<(&'static str, Vec<RecordBatch>, usize, bool)> {
        let nulls = |rows: usize| {
            let column: ArrayRef = Arc::new(arrow_array::NullArray::new(rows));
            RecordBatch::try_from_iter_with_nullable([("nothing", column, true)])
                .expect("a valid batch")
        };
        let wide = |columns: usize| {
            RecordBatch::try_from_iter((0..columns).map(|c| {
                let column: ArrayRef = Arc::new(Int64Array::from(vec![c as i64]));
                (format!("c{c}"), column)
            }))
            .expect("a valid batch")
        };
        vec![
            ("no batch", vec![], 100, false),
            ("an empty batch", vec![batch(0)], 100, false),
            ("a small batch", vec![batch(10)], 100, true),
            (
                "small, with an empty one",
                vec![batch(10), batch(0), batch(5)],
                100,
                true,
            ),
            (
                "exactly a file",
                vec![batch(1), batch(2), batch(3)],
                6,
                true,
            ),
            (
                "one row past a file",
                vec![batch(1), batch(2), batch(3)],
                5,
                false,
            ),
            ("one batch past a file", vec![batch(10)], 5, false),
            (
                "within the memory",
                vec![batch(200), batch(200)],
                1_000_000,
                true,
            ),
            ("past the memory", vec![batch(3_000)], 1_000_000, false),
            (
                "at the row bound",
                vec![nulls(ENCODE_ON_TASK_ROWS)],
                1_000_000,
                true,
            ),
            (
                "past the row bound",
                vec![nulls(ENCODE_ON_TASK_ROWS + 1)],
                1_000_000,
                false,
            ),
            (
                "at the column bound",
                vec![wide(ENCODE_ON_TASK_COLUMNS)],
                100,
                true,
            ),
            (
                "past the column bound",
                vec![wide(ENCODE_ON_TASK_COLUMNS + 1)],
                100,
                false,
            ),
            ("several files", vec![batch(20_000)], 7_000, false),
        ]
    }

    fn in_memory(batches: &[RecordBatch]) -> Rows {
        let schema = batches
            .first()
            .map_or_else(|| batch(0).schema(), RecordBatch::schema);
        Rows::Batches(schema, batches.to_vec())
    }

    /// Rows in memory and the same rows streamed are written alike, byte for byte, on both
    /// sides of every bound: the same files, with every row once, in order.
    #[tokio::test]
    async fn rows_in_memory_are_written_as_the_same_rows_streamed() {
        let root = tempfile::tempdir().expect("a directory");
        for (what, batches, rows_per_file, _) in bounded_inputs() {
            let schema = in_memory(&batches).schema();
            let streamed = in_memory(&batches).streamed();
            assert!(matches!(streamed, Rows::Stream(_)), "{what}: streamed");
            let a = uploaded(
                root.path(),
                format!("m-{what}"),
                in_memory(&batches),
                rows_per_file,
            )
            .await
            .expect("written from memory");
            let b = uploaded(root.path(), format!("s-{what}"), streamed, rows_per_file)
                .await
                .expect("written from a stream");
            assert_eq!(a.0, b.0, "{what}: the same files");
            assert!(!a.0.is_empty(), "{what}: at least one file");
            let written: Vec<RecordBatch> =
                batches.into_iter().filter(|b| b.num_rows() > 0).collect();
            let expected =
                arrow_select::concat::concat_batches(&schema, &written).expect("concatenated");
            let read = arrow_select::concat::concat_batches(&schema, &a.1).expect("concatenated");
            assert_eq!(read, expected, "{what}: every row once, in order");
        }
    }

    /// A small input in memory is encoded and stored without any blocking thread (here the
    /// only one is busy); past any bound, and streamed, it waits for one.
    #[test]
    fn only_small_rows_in_memory_skip_the_blocking_threads() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_time()
            .build()
            .expect("a runtime");
        let root = tempfile::tempdir().expect("a directory");
        let (release, held) = std::sync::mpsc::channel::<()>();
        runtime.block_on(async {
            let busy = tokio::task::spawn_blocking(move || held.recv());
            let mut waiting = Vec::new();
            for (what, batches, rows_per_file, on_task) in bounded_inputs() {
                let tries = [
                    (in_memory(&batches), on_task),
                    (in_memory(&batches).streamed(), false),
                ];
                for (index, (rows, on_task)) in tries.into_iter().enumerate() {
                    let name = format!("{what}-{index}");
                    let mut upload =
                        Box::pin(uploaded(root.path(), name.clone(), rows, rows_per_file));
                    let wait = if on_task { 30_000 } else { 100 };
                    let early =
                        tokio::time::timeout(Duration::from_millis(wait), &mut upload).await;
                    if on_task {
                        assert!(
                            matches!(early, Ok(Ok(_))),
                            "{what}: written without a blocking thread"
                        );
                    } else {
                        assert!(early.is_err(), "{name}: waits for a blocking thread");
                        waiting.push(upload);
                    }
                }
            }
            release.send(()).expect("released");
            // Together: one waiting write's reader may wait for another's to be polled.
            for written in futures::future::join_all(waiting).await {
                written.expect("written once a thread is free");
            }
            busy.await.expect("joined").expect("received");
        });
    }
}
