//! `NativeClient`: the client's operations for the Python package. Data crosses as Arrow C
//! streams (pyarrow tables and readers, polars frames, anything with `__arrow_c_stream__`).

use crate::runtime::{run, run_cancellable};
use crate::values;
use arrow_array::RecordBatchReader;
use arrow_array::ffi_stream::RecordBatchStreamReader;
use arrow_pyarrow::{FromPyArrow, IntoPyArrow, Table};
use batchstore_client::{
    Client, ClientError, ConnectOptions, EarlyBegin, Expected, GcScope, KeyType, LeaseName,
    Manifest, PartitionColumns, PartitionData, PartitionKey, ReadRequest, Retention, RollbackTo,
    Rows, TableName, TagTarget, WriteOptions, WriteRequest,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyType};
use std::path::PathBuf;

/// A partition's rows: a pyarrow Table's batches taken here (they are in memory: taking them
/// never waits nor runs Python code; a subclass might, so only a Table itself), anything else
/// streamed as the write reads it.
fn rows(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Rows> {
    static TABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let reader = RecordBatchStreamReader::from_pyarrow_bound(data)?;
    if !data.is_exact_instance(TABLE.import(py, "pyarrow", "Table")?) {
        return Ok(Rows::stream(reader));
    }
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| {
        crate::errors::to_py(ClientError::Data(format!("reading the input failed: {e}")))
    })?;
    Ok(Rows::Batches(schema, batches))
}

/// A connection to a batchstore metastore (see `batchstore.Client`).
#[pyclass(module = "batchstore._native", frozen)]
pub struct NativeClient {
    client: Client,
}

/// Batches begun for a `write` before its frame was converted (`NativeClient.begin_early`);
/// dropped unused, they are aborted.
#[pyclass(module = "batchstore._native")]
pub struct EarlyWrite {
    early: Option<EarlyBegin>,
}

#[pymethods]
impl EarlyWrite {
    /// Gives the batch up: the frame could not be converted, so the write will not happen.
    fn abort(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some(early) = self.early.take() else {
            return Ok(());
        };
        run(py, async move {
            early.abort().await;
            Ok(())
        })
    }
}

/// How the Python package writes: a missing table is created from the partition's values.
fn write_options() -> WriteOptions {
    WriteOptions {
        create_table_if_missing: true,
        ..WriteOptions::default()
    }
}

fn expected(text: Option<String>) -> Option<Expected> {
    text.as_deref().map(Expected::parse)
}

/// Serves the local home named by `BATCHSTORE_HOME` until it is idle (the server a client
/// starts on demand: `python -c "from batchstore._native import serve_home; serve_home()"`).
#[pyfunction]
pub fn serve_home(py: Python<'_>) -> PyResult<()> {
    py.detach(batchstore_metastore::home::serve_home)
        .map_err(|e| crate::errors::Error::new_err(format!("{e:#}")))
}

/// The version arguments of a read: version, batch id, tag, as-of (at most one).
type Which<'a, 'py> = (
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<&'a Bound<'py, PyAny>>,
);

/// What `read` and `manifest` select, from their Python arguments.
fn read_request<'py>(
    namespace: String,
    table: String,
    partitions: Option<&Bound<'py, PyAny>>,
    (version, batch_id, tag, as_of): Which<'_, 'py>,
    columns: Option<Vec<String>>,
    filter: Vec<(String, String, Bound<'py, PyAny>)>,
) -> PyResult<ReadRequest> {
    Ok(ReadRequest {
        table: Some(TableName::new(namespace, table)),
        partitions: values::partitions(partitions)?,
        selector: values::selector(version, batch_id, tag, as_of)?,
        columns,
        filter: values::key_predicates(filter)?,
        ..ReadRequest::default()
    })
}

/// A resolved selection's files, holding a read lease until released or dropped.
#[pyclass(module = "batchstore._native", frozen)]
pub struct NativeManifest {
    manifest: std::sync::Mutex<Option<Manifest>>,
}

impl NativeManifest {
    fn with<T>(&self, f: impl FnOnce(&Manifest) -> PyResult<T>) -> PyResult<T> {
        let guard = self
            .manifest
            .lock()
            .map_err(|_| crate::errors::Error::new_err("manifest lock poisoned"))?;
        match guard.as_ref() {
            Some(m) => f(m),
            None => Err(crate::errors::InvalidArgument::new_err(
                "this manifest was released; resolve the selection again",
            )),
        }
    }
}

#[pymethods]
impl NativeManifest {
    /// The manifest as JSON text (see `tablectl manifest --json`).
    fn to_json(&self) -> PyResult<String> {
        self.with(|m| Ok(m.to_json().to_string()))
    }

    /// The read schema, partition keys last, as a `pyarrow.Schema`.
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.with(|m| m.schema.as_ref().clone().into_pyarrow(py))
    }

    /// Releases the lease now (otherwise when the manifest is dropped).
    fn release(&self) -> PyResult<()> {
        let taken = self
            .manifest
            .lock()
            .map_err(|_| crate::errors::Error::new_err("manifest lock poisoned"))?
            .take();
        drop(taken);
        Ok(())
    }
}

#[pymethods]
impl NativeClient {
    /// Credentials left `None` come from the environment, as the client decides.
    #[new]
    /// `local_server`: how this interpreter runs a local metastore (see `serve_home`), used
    /// when no endpoint is configured and nothing listens at the default address.
    #[pyo3(signature = (endpoint=None, token=None, token_file=None, ca_file=None, client_cert=None, client_key=None, local_server=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        endpoint: Option<String>,
        token: Option<String>,
        token_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
        local_server: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let options = ConnectOptions {
            endpoint,
            token,
            token_file,
            ca_file,
            client_cert,
            client_key,
            local_server,
        };
        let client = run(py, async move { Client::connect_with(options).await })?;
        Ok(NativeClient { client })
    }

    #[getter]
    fn endpoint(&self) -> String {
        self.client.endpoint().to_owned()
    }

    fn create_namespace(
        &self,
        py: Python<'_>,
        name: String,
        if_not_exists: bool,
    ) -> PyResult<bool> {
        let client = self.client.clone();
        run(py, async move {
            client.create_namespace(&name, if_not_exists).await
        })
    }

    fn list_namespaces(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let client = self.client.clone();
        let list = run(py, async move { client.list_namespaces().await })?;
        Ok(list.into_iter().map(|(name, _)| name).collect())
    }

    /// `keys`: (name, type) with type string, int64 or date.
    fn create_table(
        &self,
        py: Python<'_>,
        namespace: String,
        table: String,
        keys: Vec<(String, String)>,
        if_not_exists: bool,
    ) -> PyResult<bool> {
        let keys = keys
            .into_iter()
            .map(|(name, t)| {
                Ok(PartitionKey {
                    name,
                    key_type: KeyType::parse(&t).map_err(crate::errors::to_py)?,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let client = self.client.clone();
        let name = TableName::new(namespace, table);
        run(py, async move {
            client
                .create_table(&name, &keys, None, if_not_exists)
                .await
                .map(|(_, created)| created)
        })
    }

    /// A dict: namespace, table, partition_keys [(name, type)], columns [(name, type)],
    /// location, partition_count, created_at_us.
    fn get_table<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let client = self.client.clone();
        let name = TableName::new(namespace, table);
        let info = run(py, async move { client.get_table(&name).await })?;
        let dict = PyDict::new(py);
        dict.set_item("namespace", &info.name.namespace)?;
        dict.set_item("table", &info.name.table)?;
        let keys: Vec<(String, String)> = info
            .partition_keys
            .iter()
            .map(|k| (k.name.clone(), k.key_type.name().to_owned()))
            .collect();
        dict.set_item("partition_keys", keys)?;
        dict.set_item("columns", info.columns.clone())?;
        dict.set_item("location", &info.location)?;
        dict.set_item("partition_count", info.partition_count)?;
        dict.set_item("created_at_us", info.created_at.timestamp_micros())?;
        Ok(dict)
    }

    #[pyo3(signature = (namespace=None))]
    fn list_tables(&self, py: Python<'_>, namespace: Option<String>) -> PyResult<Vec<String>> {
        let client = self.client.clone();
        let tables = run(
            py,
            async move { client.list_tables(namespace.as_deref()).await },
        )?;
        Ok(tables.into_iter().map(|t| t.name.to_string()).collect())
    }

    fn drop_table(&self, py: Python<'_>, namespace: String, table: String) -> PyResult<()> {
        let client = self.client.clone();
        let name = TableName::new(namespace, table);
        run(py, async move { client.drop_table(&name).await })
    }

    /// Begins the batch of a one-partition `write` now, so that the round trip runs while
    /// the caller converts its frame; pass the result to that `write`.
    fn begin_early(
        &self,
        namespace: String,
        table: String,
        partition: Bound<'_, PyAny>,
    ) -> PyResult<EarlyWrite> {
        let partition = values::partition(Some(&partition))?;
        let _context = crate::runtime::runtime()?.enter();
        let early = self.client.begin_early(
            &TableName::new(namespace, table),
            vec![partition],
            &write_options(),
        );
        Ok(EarlyWrite { early: Some(early) })
    }

    /// Writes each `(partition, expected_batch, data)` into a fresh batch and commits them all
    /// at once; `inputs` are the batches the data was computed from (lineage). A missing table
    /// is created from the first partition's keys and values. Returns one commit dict per
    /// partition. `early`: its batch begun by `begin_early`.
    #[pyo3(signature = (namespace, table, parts, message, inputs=Vec::new(), early=None))]
    #[allow(clippy::too_many_arguments)]
    fn write<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
        parts: Vec<(Bound<'py, PyAny>, Option<String>, Bound<'py, PyAny>)>,
        message: String,
        inputs: Vec<String>,
        early: Option<PyRefMut<'py, EarlyWrite>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let partitions = parts
            .into_iter()
            .map(|(partition, expected_batch, data)| {
                Ok(PartitionData {
                    partition: values::partition(Some(&partition))?,
                    expected: expected(expected_batch),
                    data: rows(py, &data)?,
                })
            })
            .collect::<PyResult<Vec<_>>>();
        let partitions = match partitions {
            Ok(partitions) => partitions,
            Err(error) => {
                // The write cannot happen: its early batch is given up now, not when its lease
                // runs out. The input's error is the one to report.
                if let Some(mut early) = early {
                    let _ = early.abort(py);
                }
                return Err(error);
            }
        };
        let request = WriteRequest {
            table: TableName::new(namespace, table),
            partitions,
            message,
            inputs,
        };
        let client = self.client.clone();
        let options = write_options();
        let cancel = options.cancel.clone();
        let early = early.and_then(|mut early| early.early.take());
        let committed = run_cancellable(py, cancel, async move {
            match early {
                Some(early) => client.write_begun(request, &options, None, early).await,
                None => client.write_partitions(request, &options, None).await,
            }
        })?;
        values::dict_list(py, &committed, values::commit_dict)
    }

    /// Reads partitions (None = all) as a `pyarrow.Table`; at most one of version, batch_id,
    /// tag and as_of.
    #[pyo3(signature = (namespace, table, partitions=None, version=None, batch_id=None, tag=None, as_of=None, columns=None, partition_columns="auto", filter=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn read<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
        partitions: Option<Bound<'py, PyAny>>,
        version: Option<i64>,
        batch_id: Option<String>,
        tag: Option<String>,
        as_of: Option<Bound<'py, PyAny>>,
        columns: Option<Vec<String>>,
        partition_columns: &str,
        filter: Vec<(String, String, Bound<'py, PyAny>)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut request = read_request(
            namespace,
            table,
            partitions.as_ref(),
            (version, batch_id, tag, as_of.as_ref()),
            columns,
            filter,
        )?;
        request.partition_columns = match partition_columns {
            "auto" => PartitionColumns::Auto,
            "always" => PartitionColumns::Always,
            "never" => PartitionColumns::Never,
            other => {
                return Err(crate::errors::InvalidArgument::new_err(format!(
                    "partition_columns must be \"auto\", \"always\" or \"never\", not {other:?}"
                )));
            }
        };
        let client = self.client.clone();
        let result = run(py, async move { client.read(&request, None).await })?;
        let table = Table::try_new(result.batches, result.schema)
            .map_err(|e| crate::errors::DataError::new_err(e.to_string()))?;
        table.into_pyarrow(py)
    }

    /// The exact files of a selection, pinned against garbage collection while the returned
    /// manifest lives (see `batchstore.Client.scan`). `filter`: `(key, op, value)` conditions
    /// on partition keys, resolved by the metastore.
    #[pyo3(signature = (namespace, table, partitions=None, version=None, batch_id=None, tag=None, as_of=None, columns=None, filter=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn manifest<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
        partitions: Option<Bound<'py, PyAny>>,
        version: Option<i64>,
        batch_id: Option<String>,
        tag: Option<String>,
        as_of: Option<Bound<'py, PyAny>>,
        columns: Option<Vec<String>>,
        filter: Vec<(String, String, Bound<'py, PyAny>)>,
    ) -> PyResult<NativeManifest> {
        let request = read_request(
            namespace,
            table,
            partitions.as_ref(),
            (version, batch_id, tag, as_of.as_ref()),
            columns,
            filter,
        )?;
        let client = self.client.clone();
        let manifest = run(py, async move { client.manifest(&request).await })?;
        Ok(NativeManifest {
            manifest: std::sync::Mutex::new(Some(manifest)),
        })
    }

    fn history<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
        partition: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let partition = values::partition(partition.as_ref())?;
        let client = self.client.clone();
        let name = TableName::new(namespace, table);
        let entries = run(py, async move { client.history(&name, &partition).await })?;
        values::dict_list(py, &entries, values::history_dict)
    }

    #[pyo3(signature = (namespace, table, partition, to_version=None, to_batch=None, expected_batch=None, message=String::new()))]
    #[allow(clippy::too_many_arguments)]
    fn rollback<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
        partition: Option<Bound<'py, PyAny>>,
        to_version: Option<i64>,
        to_batch: Option<String>,
        expected_batch: Option<String>,
        message: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let target = match (to_version, to_batch) {
            (Some(v), None) => RollbackTo::Version(v),
            (None, Some(b)) => RollbackTo::Batch(b),
            _ => {
                return Err(crate::errors::InvalidArgument::new_err(
                    "give exactly one of to_version or to_batch",
                ));
            }
        };
        let partition = values::partition(partition.as_ref())?;
        let client = self.client.clone();
        let name = TableName::new(namespace, table);
        let committed = run(py, async move {
            client
                .rollback(
                    &name,
                    &partition,
                    target,
                    expected(expected_batch),
                    &message,
                )
                .await
        })?;
        values::commit_dict(py, &committed)
    }

    fn partitions<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
    ) -> PyResult<Bound<'py, PyList>> {
        let client = self.client.clone();
        let name = TableName::new(namespace, table);
        let partitions = run(py, async move { client.partitions(&name).await })?;
        values::dict_list(py, &partitions, values::partition_dict)
    }

    /// Tags a batch (`batch_id`) or a partition's version (0 = current).
    #[pyo3(signature = (namespace, table, name, partition=None, version=0, batch_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_tag<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
        name: String,
        partition: Option<Bound<'py, PyAny>>,
        version: i64,
        batch_id: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let target = match batch_id {
            Some(b) => TagTarget::Batch(b),
            None => TagTarget::Version(values::partition(partition.as_ref())?, version),
        };
        let client = self.client.clone();
        let table = TableName::new(namespace, table);
        let tag = run(
            py,
            async move { client.create_tag(&table, &name, target).await },
        )?;
        values::tag_dict(py, &tag)
    }

    /// `{"batch_id", "inputs", "outputs"}`: the batches it was computed from and those
    /// computed from it.
    fn lineage<'py>(&self, py: Python<'py>, batch_id: String) -> PyResult<Bound<'py, PyDict>> {
        let client = self.client.clone();
        let lineage = run(py, async move { client.lineage(&batch_id).await })?;
        let dict = PyDict::new(py);
        dict.set_item("batch_id", &lineage.batch_id)?;
        dict.set_item("inputs", &lineage.inputs)?;
        dict.set_item("outputs", &lineage.outputs)?;
        Ok(dict)
    }

    fn list_tags<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
    ) -> PyResult<Bound<'py, PyList>> {
        let client = self.client.clone();
        let name = TableName::new(namespace, table);
        let tags = run(py, async move { client.list_tags(&name).await })?;
        values::dict_list(py, &tags, values::tag_dict)
    }

    fn delete_tag(
        &self,
        py: Python<'_>,
        namespace: String,
        table: String,
        name: String,
    ) -> PyResult<()> {
        let client = self.client.clone();
        let table = TableName::new(namespace, table);
        run(py, async move { client.delete_tag(&table, &name).await })
    }

    /// Sets a table's retention (or, with `table` None, the namespace's default); returns the
    /// effective retention as `(keep_versions, keep_seconds)`.
    #[pyo3(signature = (namespace, table=None, keep_versions=None, keep_for=None))]
    fn set_retention(
        &self,
        py: Python<'_>,
        namespace: String,
        table: Option<String>,
        keep_versions: Option<i64>,
        keep_for: Option<Bound<'_, PyAny>>,
    ) -> PyResult<(Option<i64>, Option<u64>)> {
        let retention = Retention {
            keep_versions,
            keep_for: keep_for
                .as_ref()
                .filter(|v| !v.is_none())
                .map(values::duration)
                .transpose()?,
        };
        let client = self.client.clone();
        let effective = run(py, async move {
            client
                .set_retention(&namespace, table.as_deref(), &retention)
                .await
        })?;
        Ok((
            effective.keep_versions,
            effective.keep_for.map(|d| d.as_secs()),
        ))
    }

    fn undrop_table(&self, py: Python<'_>, namespace: String, table: String) -> PyResult<()> {
        let client = self.client.clone();
        let name = TableName::new(namespace, table);
        run(
            py,
            async move { client.undrop_table(&name).await.map(|_| ()) },
        )
    }

    /// Takes a named lease on a selection; returns its dict.
    #[pyo3(signature = (namespace, table, name, partitions=None, version=None, batch_id=None, tag=None, as_of=None, ttl=None))]
    #[allow(clippy::too_many_arguments)]
    fn acquire_lease<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        table: String,
        name: String,
        partitions: Option<Bound<'py, PyAny>>,
        version: Option<i64>,
        batch_id: Option<String>,
        tag: Option<String>,
        as_of: Option<Bound<'py, PyAny>>,
        ttl: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let partitions = values::partitions(partitions.as_ref())?;
        let selector = values::selector(version, batch_id, tag, as_of.as_ref())?;
        let ttl = ttl
            .as_ref()
            .filter(|v| !v.is_none())
            .map(values::duration)
            .transpose()?;
        let client = self.client.clone();
        let table = TableName::new(namespace, table);
        let lease = run(py, async move {
            client
                .acquire_lease(&table, &partitions, &selector, &name, ttl)
                .await
        })?;
        values::lease_dict(py, &lease)
    }

    /// Extends a named lease; returns when it now expires (microseconds).
    #[pyo3(signature = (namespace, table, name, ttl=None))]
    fn extend_lease(
        &self,
        py: Python<'_>,
        namespace: String,
        table: String,
        name: String,
        ttl: Option<Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        let ttl = ttl
            .as_ref()
            .filter(|v| !v.is_none())
            .map(values::duration)
            .transpose()?;
        let client = self.client.clone();
        let lease = LeaseName::Named(TableName::new(namespace, table), name);
        let until = run(py, async move { client.extend_lease(&lease, ttl).await })?;
        Ok(until.timestamp_micros())
    }

    fn release_lease(
        &self,
        py: Python<'_>,
        namespace: String,
        table: String,
        name: String,
    ) -> PyResult<bool> {
        let client = self.client.clone();
        let lease = LeaseName::Named(TableName::new(namespace, table), name);
        run(py, async move { client.release_lease(&lease).await })
    }

    #[pyo3(signature = (namespace=None, table=None, include_reads=false))]
    fn leases<'py>(
        &self,
        py: Python<'py>,
        namespace: Option<String>,
        table: Option<String>,
        include_reads: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let client = self.client.clone();
        let leases = run(py, async move {
            client
                .leases(namespace.as_deref(), table.as_deref(), include_reads)
                .await
        })?;
        values::dict_list(py, &leases, values::lease_dict)
    }

    /// Runs garbage collection (a namespace, a table, or everything) to the end.
    #[pyo3(signature = (namespace=None, table=None, dry_run=false))]
    fn collect_garbage<'py>(
        &self,
        py: Python<'py>,
        namespace: Option<String>,
        table: Option<String>,
        dry_run: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let scope = match (namespace, table) {
            (None, _) => GcScope::All,
            (Some(ns), None) => GcScope::Namespace(ns),
            (Some(ns), Some(t)) => GcScope::Table(TableName::new(ns, t)),
        };
        let client = self.client.clone();
        let counts = run(py, async move {
            client.collect_garbage(&scope, dry_run, |_| {}).await
        })?;
        let dict = values::gc_dict(py, &counts.done)?;
        dict.set_item("errors", counts.errors)?;
        Ok(dict)
    }
}
