//! The warehouse: where batch directories live (a local directory or an S3 prefix).
//!
//! The metastore only touches storage to check that committed files exist with the stated size.
//! Locations handed to clients are `{root_url}/{relative batch dir}`; the part after the root
//! is an object path taken verbatim (it is *not* URL-decoded: `%2F` in it is three characters).

use crate::error::{CatalogError, CatalogResult};
use crate::model::DataFile;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;

/// How many HEAD requests a commit keeps in flight while checking its files.
const HEAD_CONCURRENCY: usize = 16;

/// A configured warehouse root.
#[derive(Debug, Clone)]
pub struct Warehouse {
    store: Arc<dyn ObjectStore>,
    /// e.g. `file:///srv/warehouse` or `s3://bucket/prefix`, without a trailing slash.
    root_url: String,
    /// The object path of the root inside `store` (empty for a local directory).
    root_path: String,
}

impl Warehouse {
    /// Opens `spec`: `s3://bucket[/prefix]` (credentials, region and endpoint from the standard
    /// `AWS_*` variables), `file:///abs/dir`, or a plain directory path (created if missing).
    ///
    /// # Errors
    /// `InvalidArgument` for an unusable spec, `Unavailable` if a local directory cannot be made.
    pub fn open(spec: &str) -> CatalogResult<Self> {
        if let Some(rest) = spec.strip_prefix("s3://") {
            return Self::open_s3(spec, rest);
        }
        let dir = spec.strip_prefix("file://").unwrap_or(spec);
        if dir.is_empty() {
            return Err(CatalogError::InvalidArgument(
                "the warehouse path is empty".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            CatalogError::Unavailable(format!("cannot create the warehouse directory {dir}: {e}"))
        })?;
        let absolute = std::fs::canonicalize(dir).map_err(|e| {
            CatalogError::Unavailable(format!("cannot open the warehouse directory {dir}: {e}"))
        })?;
        let store = LocalFileSystem::new_with_prefix(&absolute).map_err(|e| {
            CatalogError::InvalidArgument(format!("cannot use {dir} as a warehouse: {e}"))
        })?;
        let root = absolute.to_string_lossy().trim_end_matches('/').to_owned();
        Ok(Warehouse {
            store: Arc::new(store),
            root_url: format!("file://{root}"),
            root_path: String::new(),
        })
    }

    fn open_s3(spec: &str, rest: &str) -> CatalogResult<Self> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(CatalogError::InvalidArgument(format!(
                "the warehouse {spec} names no bucket; use s3://bucket/prefix"
            )));
        }
        let prefix = prefix.trim_matches('/');
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if endpoint_is_plain_http() {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build().map_err(|e| {
            CatalogError::InvalidArgument(format!(
                "cannot configure S3 for {spec}: {e}; check the AWS_* environment variables"
            ))
        })?;
        let root_url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(Warehouse {
            store: Arc::new(store),
            root_url,
            root_path: prefix.to_owned(),
        })
    }

    /// The root URL, for logs and table locations.
    pub fn root_url(&self) -> &str {
        &self.root_url
    }

    /// The location URL of a directory given relative to the root.
    pub fn location_url(&self, relative: &str) -> String {
        format!("{}/{relative}", self.root_url)
    }

    /// The object path of a location URL this warehouse handed out.
    ///
    /// # Errors
    /// `FailedPrecondition` if the location is outside this warehouse (the metastore was
    /// restarted with another `--warehouse`).
    fn object_dir(&self, location: &str) -> CatalogResult<String> {
        let relative = location
            .strip_prefix(&self.root_url)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| {
                CatalogError::FailedPrecondition(format!(
                    "the batch location {location} is outside the configured warehouse {}; \
                     start the metastore with the warehouse the batch was written to",
                    self.root_url
                ))
            })?;
        Ok(if self.root_path.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.root_path)
        })
    }

    /// Checks that every file exists under `location` with the stated size.
    ///
    /// # Errors
    /// `FailedPrecondition` naming the first missing or wrongly sized file; `Unavailable` when
    /// the storage cannot be reached.
    pub async fn check_files(&self, location: &str, files: &[DataFile]) -> CatalogResult<()> {
        let dir = self.object_dir(location)?;
        let checks: Vec<_> = files
            .iter()
            .map(|file| self.check_file(&dir, location, file))
            .collect();
        futures::stream::iter(checks)
            .buffer_unordered(HEAD_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn check_file(&self, dir: &str, location: &str, file: &DataFile) -> CatalogResult<()> {
        let path = Path::parse(format!("{dir}/{}", file.path)).map_err(|e| {
            CatalogError::InvalidArgument(format!("bad file path {}: {e}", file.path))
        })?;
        match self.store.head(&path).await {
            Ok(meta) if meta.size == file.size_bytes as u64 => Ok(()),
            Ok(meta) => Err(CatalogError::FailedPrecondition(format!(
                "file {} in {location} is {} bytes, but the commit says {}; \
                 the upload is incomplete or the file list is wrong",
                file.path, meta.size, file.size_bytes
            ))),
            Err(object_store::Error::NotFound { .. }) => {
                Err(CatalogError::FailedPrecondition(format!(
                    "file {} was not found in {location}; upload every file before committing",
                    file.path
                )))
            }
            Err(other) => Err(other.into()),
        }
    }
}

fn endpoint_is_plain_http() -> bool {
    ["AWS_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .any(|v| v.starts_with("http://"))
}
