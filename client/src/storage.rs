//! Opening object storage for batch locations handed out by the metastore.
//!
//! A location is `file:///abs/dir/…` or `s3://bucket/key/prefix/…`. The part after the bucket
//! (or after `file://`) is an object path taken verbatim: it is never URL-decoded, because
//! partition values are percent-escaped in it. S3 settings come from the standard `AWS_*`
//! variables (`AWS_ENDPOINT_URL` for S3-compatible servers; plain `http://` is allowed).
//! Stores are cached per bucket, so one client keeps one connection pool per bucket.
//!
//! A batch's files are written create-only ([`BatchDir::put_new`]). A small file on a local
//! disk is written on the calling thread: object_store hands every local write to a blocking
//! thread, and for a file of a few kilobytes that hop costs more than the write.

use crate::error::{ClientError, Result};
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Files up to this size are written on the calling thread when the store is a local disk.
const PUT_INLINE_BYTES: usize = 256 * 1024;

/// A batch directory: the store it lives in and its path there.
#[derive(Debug, Clone)]
pub struct BatchDir {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    /// The same store when it is a local disk.
    local: Option<Arc<LocalFileSystem>>,
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

    /// Writes a new file; an existing one is never replaced (`AlreadyExists`).
    ///
    /// # Errors
    /// Storage errors, of the kinds object_store gives them whichever way the file goes
    /// (`AlreadyExists` for an existing file).
    pub async fn put_new(&self, path: &Path, bytes: Bytes) -> Result<()> {
        match &self.local {
            Some(local) if bytes.len() <= PUT_INLINE_BYTES => {
                put_new_local(local, path, &bytes).map_err(ClientError::from)
            }
            _ => {
                let options = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                self.store
                    .put_opts(path, PutPayload::from(bytes), options)
                    .await?;
                Ok(())
            }
        }
    }
}

/// A create-only write to a local disk, as object_store's: the directories are made when
/// missing, a file that cannot be written whole is removed again, so that a retry finds no
/// part of it, and errors have the kinds object_store gives them. Unlike object_store it does
/// not stage the file under another name first: a file cut short by a crash lies in a batch
/// nobody committed, and a commit never records a file whose size and footer the metastore
/// did not read back.
fn put_new_local(
    store: &LocalFileSystem,
    path: &Path,
    bytes: &[u8],
) -> std::result::Result<(), object_store::Error> {
    let file = store.path_to_filesystem(path)?;
    let failed = |source: std::io::Error| {
        let path = path.to_string();
        let source = Box::new(source);
        match source.kind() {
            std::io::ErrorKind::NotFound => object_store::Error::NotFound { path, source },
            std::io::ErrorKind::AlreadyExists => {
                object_store::Error::AlreadyExists { path, source }
            }
            _ => object_store::Error::Generic {
                store: "LocalFileSystem",
                source,
            },
        }
    };
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
    };
    let mut out = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(failed)?;
            }
            create().map_err(failed)?
        }
        other => other.map_err(failed)?,
    };
    if let Err(e) = out.write_all(bytes) {
        drop(out);
        let _ = std::fs::remove_file(&file);
        return Err(failed(e));
    }
    Ok(())
}

/// Opens stores on demand and keeps them: S3 stores per bucket, and the one local disk.
#[derive(Debug, Default)]
pub struct Stores {
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    local: Arc<LocalFileSystem>,
}

impl Stores {
    /// The batch directory of a location URL.
    ///
    /// # Errors
    /// `InvalidArgument` for an unsupported scheme; `Storage` when S3 cannot be configured.
    pub fn batch_dir(&self, location: &str) -> Result<BatchDir> {
        let parse = |path: &str| {
            Path::parse(path).map_err(|e| {
                ClientError::InvalidArgument(format!("bad storage location {location}: {e}"))
            })
        };
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            Ok(BatchDir {
                store: self.bucket(bucket)?,
                path: parse(path)?,
                local: None,
            })
        } else if let Some(path) = location.strip_prefix("file://") {
            Ok(BatchDir {
                store: self.local.clone(),
                path: parse(path.trim_start_matches('/'))?,
                local: Some(self.local.clone()),
            })
        } else {
            Err(ClientError::InvalidArgument(format!(
                "unsupported storage location {location}; expected file:// or s3://"
            )))
        }
    }

    fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| ClientError::Internal("store cache poisoned".into()))?;
        if let Some(store) = buckets.get(bucket) {
            return Ok(store.clone());
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if endpoint_is_plain_http() {
            builder = builder.with_allow_http(true);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(|e| {
            ClientError::Storage(format!(
                "cannot configure S3 for bucket {bucket}: {e}; check the AWS_* environment variables"
            ))
        })?);
        buckets.insert(bucket.to_owned(), store.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch file is written create-only whether it goes inline (small, local) or through
    /// object_store (large): it lands whole in directories made for it, a second write never
    /// replaces it, and a write that cannot land leaves nothing behind. Both ways answer with
    /// the same kind of error.
    #[tokio::test]
    async fn batch_files_are_written_create_only_both_ways() {
        let root = tempfile::tempdir().expect("a directory");
        let stores = Stores::default();
        let location = format!("file://{}/ns/t/ds=a%2Fb/_batch=x", root.path().display());
        let dir = stores.batch_dir(&location).expect("a batch directory");
        let mut refusals = Vec::new();
        for size in [
            100,
            PUT_INLINE_BYTES,
            PUT_INLINE_BYTES + 1,
            3 * PUT_INLINE_BYTES,
        ] {
            let name = format!("part-{size}.parquet");
            let path = dir.file(&name).expect("a path");
            let first = Bytes::from(vec![1u8; size]);
            dir.put_new(&path, first.clone()).await.expect("written");
            let on_disk = root.path().join("ns/t/ds=a%2Fb/_batch=x").join(&name);
            assert_eq!(std::fs::read(&on_disk).expect("read"), first, "{size}");
            let again = dir
                .put_new(&path, Bytes::from(vec![2u8; size]))
                .await
                .expect_err("create-only");
            assert_eq!(std::fs::read(&on_disk).expect("read"), first, "{size}");
            refusals.push(std::mem::discriminant(&again));

            // A directory that cannot be made (a file stands in its way).
            let blocked = root.path().join(format!("blocked-{size}"));
            std::fs::write(&blocked, b"a file").expect("written");
            let under = stores
                .batch_dir(&format!("file://{}/_batch=y", blocked.display()))
                .expect("a batch directory");
            let error = under
                .put_new(&under.file(&name).expect("a path"), first)
                .await
                .expect_err("no directory");
            refusals.push(std::mem::discriminant(&error));
            assert_eq!(std::fs::read(&blocked).expect("read"), b"a file");
        }
        // One kind for "exists", one for "cannot be made", alike for every size.
        assert!(
            refusals.chunks(2).all(|pair| pair == &refusals[..2]),
            "{refusals:?}"
        );
    }
}
