//! Manifests: exactly which files a selection reads, for engines that read Parquet themselves
//! (pyarrow datasets, DuckDB, Polars, Dask, Spark, R's arrow).
//!
//! A manifest is resolved like a read (same selectors, partition filter and projection) and
//! pinned like one: it holds a read lease, renewed in the background, for as long as it lives,
//! so garbage collection cannot delete a file an engine is still scanning.

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::lifecycle::ReadLease;
use crate::read::{PartitionColumns, ReadRequest, ReadShape};
use crate::storage::{EngineStorage, engine_path, engine_storage};
use crate::types::{PartitionKey, TableName, from_micros};
use crate::wire::pairs;
use arrow_schema::SchemaRef;
use serde::Serialize;

/// One Parquet file of a selection.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    /// The file as the catalog records it: `file:///…` or `s3://bucket/…`.
    pub uri: String,
    /// The path an engine opens: a local path, or `bucket/key` on S3.
    pub path: String,
    pub size_bytes: i64,
    pub rows: i64,
    /// Key and canonical value of each partition key, in key order.
    pub partition: Vec<(String, String)>,
    pub batch_id: String,
    pub version: i64,
    pub committed_at: chrono::DateTime<chrono::Utc>,
}

/// The files of a resolved selection, with the schema to read them with.
pub struct Manifest {
    pub table: TableName,
    /// The table's read schema (projected when columns were asked for), then the partition
    /// keys typed as the table declares them. Engines read every file with it, matching
    /// columns by name; a column a file lacks reads as nulls.
    pub schema: SchemaRef,
    pub partition_keys: Vec<PartitionKey>,
    pub files: Vec<ManifestFile>,
    /// Where the files are and how to reach them.
    pub storage: EngineStorage,
    lease: ReadLease,
}

impl Manifest {
    /// The read lease pinning the files ("" from a metastore without leases).
    pub fn lease_id(&self) -> &str {
        self.lease.lease_id()
    }

    /// The manifest as JSON: table, schema fields (name, Arrow type, nullable), partition
    /// keys, storage, lease and files.
    pub fn to_json(&self) -> serde_json::Value {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name(),
                    "type": f.data_type().to_string(),
                    "nullable": f.is_nullable(),
                })
            })
            .collect();
        serde_json::json!({
            "table": self.table.to_string(),
            "schema": fields,
            "partition_keys": self.partition_keys,
            "storage": self.storage,
            "lease_id": self.lease_id(),
            "files": self.files,
        })
    }
}

impl Client {
    /// Resolves a selection to its files, pinned for as long as the manifest lives.
    ///
    /// # Errors
    /// As [`Client::read`] for the selection.
    pub async fn manifest(&self, request: &ReadRequest) -> Result<Manifest> {
        let table = request
            .table
            .as_ref()
            .ok_or_else(|| ClientError::InvalidArgument("the manifest names no table".into()))?;
        let (info, resolved, lease_id) = self.resolve(table, request).await?;
        let lease = ReadLease::hold(self.rpc.clone(), lease_id);
        let shaped = ReadRequest {
            partition_columns: PartitionColumns::Always,
            ..request.clone()
        };
        let shape = ReadShape::new(info.as_ref(), &shaped)?;
        // One warehouse: the first location says where every file is.
        let storage = resolved
            .first()
            .map_or(EngineStorage::Local, |p| engine_storage(&p.location));
        let mut files = Vec::new();
        for p in &resolved {
            let partition = pairs(p.partition.as_ref());
            for file in &p.files {
                let path = engine_path(&p.location, &file.path)?;
                files.push(ManifestFile {
                    uri: format!("{}/{}", p.location.trim_end_matches('/'), file.path),
                    path,
                    size_bytes: file.size_bytes,
                    rows: file.rows,
                    partition: partition.clone(),
                    batch_id: p.batch_id.clone(),
                    version: p.version,
                    committed_at: from_micros(p.committed_at_micros),
                });
            }
        }
        Ok(Manifest {
            table: table.clone(),
            schema: shape.schema,
            partition_keys: info.map(|t| t.partition_keys).unwrap_or_default(),
            files,
            storage,
            lease,
        })
    }
}
