//! Opening object storage for batch locations handed out by the metastore.
//!
//! A location is `file:///abs/dir/…` or `s3://bucket/key/prefix/…`. The part after the bucket
//! (or after `file://`) is an object path taken verbatim: it is never URL-decoded, because
//! partition values are percent-escaped in it. S3 settings come from the standard `AWS_*`
//! variables (`AWS_ENDPOINT_URL` for S3-compatible servers; plain `http://` is allowed).
//! Stores are cached per bucket, so one client keeps one connection pool per bucket.

use crate::error::{ClientError, Result};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A batch directory: the store it lives in and its path there.
#[derive(Debug, Clone)]
pub struct BatchDir {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
}

impl BatchDir {
    /// The object path of a file in this directory.
    ///
    /// # Errors
    /// `InvalidArgument` for a name that is not a plain file name.
    pub fn file(&self, name: &str) -> Result<Path> {
        Path::parse(format!("{}/{name}", self.path))
            .map_err(|e| ClientError::InvalidArgument(format!("bad file name {name}: {e}")))
    }
}

/// Opens stores on demand and keeps them.
#[derive(Debug, Default)]
pub struct Stores {
    cache: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    /// The batch directory of a location URL.
    ///
    /// # Errors
    /// `InvalidArgument` for an unsupported scheme; `Storage` when S3 cannot be configured.
    pub fn batch_dir(&self, location: &str) -> Result<BatchDir> {
        let (key, path) = if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            (format!("s3://{bucket}"), path)
        } else if let Some(path) = location.strip_prefix("file://") {
            ("file://".to_owned(), path.trim_start_matches('/'))
        } else {
            return Err(ClientError::InvalidArgument(format!(
                "unsupported storage location {location}; expected file:// or s3://"
            )));
        };
        let path = Path::parse(path).map_err(|e| {
            ClientError::InvalidArgument(format!("bad storage location {location}: {e}"))
        })?;
        let store = self.store(&key)?;
        Ok(BatchDir { store, path })
    }

    fn store(&self, key: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| ClientError::Internal("store cache poisoned".into()))?;
        if let Some(store) = cache.get(key) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = match key.strip_prefix("s3://") {
            Some(bucket) => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if endpoint_is_plain_http() {
                    builder = builder.with_allow_http(true);
                }
                Arc::new(builder.build().map_err(|e| {
                    ClientError::Storage(format!(
                        "cannot configure S3 for bucket {bucket}: {e}; check the AWS_* environment variables"
                    ))
                })?)
            }
            None => Arc::new(LocalFileSystem::new()),
        };
        cache.insert(key.to_owned(), store.clone());
        Ok(store)
    }
}

/// Where an engine finds a manifest's files, and the S3 settings this client uses (the same
/// `AWS_*` rules), so an engine reading them needs nothing else.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EngineStorage {
    Local,
    S3 {
        /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`, `AWS_ENDPOINT_URL_S3`) when set.
        endpoint: Option<String>,
        /// `AWS_REGION` or `AWS_DEFAULT_REGION` when set.
        region: Option<String>,
    },
}

/// The path an engine opens for a file of a batch location: a local path, or `bucket/key`
/// on S3.
///
/// # Errors
/// `InvalidArgument` for an unsupported scheme or a name that is not a plain file name.
pub fn engine_path(location: &str, name: &str) -> Result<String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ClientError::InvalidArgument(format!(
            "bad file name {name:?} in batch {location}"
        )));
    }
    let location = location.trim_end_matches('/');
    if let Some(rest) = location.strip_prefix("s3://") {
        return Ok(format!("{rest}/{name}"));
    }
    if let Some(path) = location.strip_prefix("file://") {
        return Ok(format!("/{}/{name}", path.trim_start_matches('/')));
    }
    Err(ClientError::InvalidArgument(format!(
        "unsupported storage location {location}; expected file:// or s3://"
    )))
}

/// Which storage a batch location is on, with the S3 settings this client uses.
pub fn engine_storage(location: &str) -> EngineStorage {
    if location.starts_with("s3://") {
        EngineStorage::S3 {
            endpoint: s3_endpoint(),
            region: first_env(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
        }
    } else {
        EngineStorage::Local
    }
}

fn first_env(keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// The S3-compatible server's address from the environment, if one is set.
fn s3_endpoint() -> Option<String> {
    first_env(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"])
}

fn endpoint_is_plain_http() -> bool {
    s3_endpoint().is_some_and(|v| v.starts_with("http://"))
}
