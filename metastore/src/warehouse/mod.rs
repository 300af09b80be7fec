//! The warehouse: where batch directories live (a local directory or an S3 prefix).
//!
//! The metastore only touches storage to check committed files: their size, and what their
//! Parquet footers say (`footer`); it never reads data pages.
//! Locations handed to clients are `{root_url}/{relative batch dir}`; the part after the root
//! is an object path taken verbatim (it is *not* URL-decoded: `%2F` in it is three characters).

use crate::error::{CatalogError, CatalogResult};
use crate::footer::{self, FileFacts};
use crate::model::DataFile;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;

mod nofollow;

/// How many files a commit inspects at once.
const INSPECT_CONCURRENCY: usize = 16;
/// A commit of at most this many files, each of at most [`INSPECT_INLINE_BYTES`], has its
/// local footers read on the async worker (see [`Warehouse::inspect_files`]).
const INSPECT_INLINE_FILES: usize = 4;
const INSPECT_INLINE_BYTES: i64 = 64 * 1024;
/// How many never-committed batch directories GC lists at once on object storage.
const LIST_CONCURRENCY: usize = 16;

/// A configured warehouse root.
#[derive(Debug, Clone)]
pub struct Warehouse {
    store: Arc<dyn ObjectStore>,
    /// e.g. `file:///srv/warehouse` or `s3://bucket/prefix`, without a trailing slash.
    root_url: String,
    /// The object path of the root inside `store` (empty for a local directory).
    root_path: String,
    /// The canonical directory of a local warehouse.
    local_root: Option<std::path::PathBuf>,
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
            local_root: Some(absolute),
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
            local_root: None,
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

    /// A location URL this warehouse handed out, relative to its root.
    ///
    /// # Errors
    /// `FailedPrecondition` if the location is outside this warehouse (the metastore was
    /// restarted with another `--warehouse`).
    pub fn relative_dir<'a>(&self, location: &'a str) -> CatalogResult<&'a str> {
        location
            .strip_prefix(&self.root_url)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| {
                CatalogError::FailedPrecondition(format!(
                    "the batch location {location} is outside the configured warehouse {}; \
                     start the metastore with the warehouse the batch was written to",
                    self.root_url
                ))
            })
    }

    /// The object path of a location URL this warehouse handed out.
    ///
    /// # Errors
    /// As [`Self::relative_dir`].
    fn object_dir(&self, location: &str) -> CatalogResult<String> {
        let relative = self.relative_dir(location)?;
        Ok(if self.root_path.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.root_path)
        })
    }

    /// Reads the facts of every `(location, file)` (storage size, footer row count, schema and
    /// statistics), at most [`INSPECT_CONCURRENCY`] at a time over the whole request, in order,
    /// and checks the stated size of each.
    ///
    /// On a local warehouse a commit of a few small files (a tiny commit) reads them on the
    /// async worker: a hop to a blocking thread and back costs more than reading a footer of a
    /// few kilobytes. The bounds keep that work small whatever the request claims: a file whose
    /// size differs from the stated one is refused before anything is read.
    ///
    /// # Errors
    /// `FailedPrecondition` naming the first file that is missing, wrongly sized, not Parquet,
    /// or (on a local warehouse) reached through a symbolic link; `Unavailable` when the
    /// storage cannot be reached.
    pub async fn inspect_files(
        &self,
        files: &[(&str, &DataFile)],
    ) -> CatalogResult<Vec<FileFacts>> {
        let inline = files.len() <= INSPECT_INLINE_FILES
            && files
                .iter()
                .all(|(_, f)| (0..=INSPECT_INLINE_BYTES).contains(&f.size_bytes));
        let checks: Vec<_> = files
            .iter()
            .map(|(location, file)| self.inspect_file(location, file, inline))
            .collect();
        futures::stream::iter(checks)
            .buffered(INSPECT_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn inspect_file(
        &self,
        location: &str,
        file: &DataFile,
        inline: bool,
    ) -> CatalogResult<FileFacts> {
        let dir = self.object_dir(location)?;
        let path = Path::parse(format!("{dir}/{}", file.path)).map_err(|e| {
            CatalogError::InvalidArgument(format!("bad file path {}: {e}", file.path))
        })?;
        let name = format!("{} in {location}", file.path);
        let stated = file.size_bytes as u64;
        let facts = match self.local_root.clone() {
            Some(root) if inline => inspect_local(&root, &path, stated, &name)?,
            Some(root) => {
                tokio::task::spawn_blocking(move || inspect_local(&root, &path, stated, &name))
                    .await
                    .map_err(|e| {
                        CatalogError::Internal(format!("reading a footer failed: {e}"))
                    })??
            }
            None => {
                let facts = footer::inspect(self.store.as_ref(), &path, &name).await?;
                check_size(&name, facts.size, stated)?;
                facts
            }
        };
        Ok(facts)
    }
}

/// Refuses a file whose size in storage is not the one its commit states.
fn check_size(name: &str, size: u64, stated: u64) -> CatalogResult<()> {
    if size == stated {
        return Ok(());
    }
    Err(CatalogError::FailedPrecondition(format!(
        "file {name} is {size} bytes, but the commit says {stated}; the upload is incomplete \
         or the file list is wrong"
    )))
}

/// What GC deletes of one batch: exactly its recorded files, or (`None`, a batch never
/// committed) whatever its own batch directory holds.
#[derive(Debug, Clone)]
pub struct BatchFiles {
    pub location: String,
    pub files: Option<Vec<DataFile>>,
}

/// What a deletion freed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Freed {
    pub files: i64,
    pub bytes: i64,
}

/// One object of the warehouse, as a listing sees it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Relative to the warehouse root.
    pub path: String,
    pub size: i64,
    pub last_modified: i64,
}

impl Warehouse {
    /// Deletes the files of batches GC expired, returning one outcome per batch, in order.
    /// Files already gone count as deleted (a rerun after a crash).
    ///
    /// On a local warehouse every directory is opened below the root without following links
    /// (`nofollow`), and the emptied batch directory is removed. On S3 the files of all the
    /// batches go in bulk deletions (up to 1,000 keys a request); a batch whose files were not
    /// all confirmed is deleted again on its own, for an outcome of its own.
    ///
    /// # Errors (per batch)
    /// `FailedPrecondition` for a location outside this warehouse, a directory that cannot be
    /// listed, or (local) a link where a directory belongs; `Unavailable` when storage cannot
    /// be reached (nothing is recorded, so a rerun deletes the rest).
    pub async fn delete_batches(&self, batches: Vec<BatchFiles>) -> Vec<CatalogResult<Freed>> {
        if let Some(root) = self.local_root.clone() {
            let targets: Vec<CatalogResult<(String, BatchFiles)>> = batches
                .into_iter()
                .map(|batch| Ok((self.relative_dir(&batch.location)?.to_owned(), batch)))
                .collect();
            let count = targets.len();
            return tokio::task::spawn_blocking(move || {
                targets
                    .into_iter()
                    .map(|target| {
                        let (dir, batch) = target?;
                        delete_local(&root, &dir, &batch)
                    })
                    .collect()
            })
            .await
            .unwrap_or_else(|e| {
                let failed = format!("the local deletion task failed: {e}");
                (0..count)
                    .map(|_| Err(CatalogError::Internal(failed.clone())))
                    .collect()
            });
        }
        // Owned futures (a borrowing closure here makes the caller's future not `Send`).
        let listings: Vec<_> = batches
            .iter()
            .map(|batch| {
                let (warehouse, batch) = (self.clone(), batch.clone());
                async move { warehouse.batch_objects(&batch).await }
            })
            .collect();
        let listed: Vec<CatalogResult<(Vec<Path>, Freed)>> = futures::stream::iter(listings)
            .buffered(LIST_CONCURRENCY)
            .collect()
            .await;
        // Every path of every listable batch in one bulk stream; `owner` maps a path back.
        let mut owner = std::collections::HashMap::new();
        let mut paths = Vec::new();
        let mut confirmed = vec![0usize; batches.len()];
        for (index, objects) in listed.iter().enumerate() {
            if let Ok((objects, _)) = objects {
                for path in objects {
                    owner.insert(path.clone(), index);
                    paths.push(path.clone());
                }
            }
        }
        let mut deletions = self
            .store
            .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed());
        while let Some(result) = deletions.next().await {
            let done = match result {
                Ok(path) => Some(path),
                Err(object_store::Error::NotFound { path, .. }) => Path::parse(path).ok(),
                Err(_) => None,
            };
            if let Some(index) = done.and_then(|path| owner.get(&path)) {
                confirmed[*index] += 1;
            }
        }
        drop(deletions);
        let mut outcomes = Vec::with_capacity(batches.len());
        for ((batch, objects), confirmed) in batches.iter().zip(listed).zip(confirmed) {
            outcomes.push(match objects {
                Ok((objects, freed)) if confirmed == objects.len() => Ok(Freed {
                    files: objects.len() as i64,
                    ..freed
                }),
                // Not all confirmed: again on its own, which says what went wrong.
                Ok(_) => self.delete_objects_of(batch).await,
                Err(error) => Err(error),
            });
        }
        outcomes
    }

    /// One batch's deletion on object storage, on its own.
    async fn delete_objects_of(&self, batch: &BatchFiles) -> CatalogResult<Freed> {
        let (paths, mut freed) = self.batch_objects(batch).await?;
        let mut deletions = self
            .store
            .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed());
        while let Some(result) = deletions.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => freed.files += 1,
                Err(other) => return Err(other.into()),
            }
        }
        Ok(freed)
    }

    /// The objects of one batch on object storage: exactly its recorded files, or for a batch
    /// never committed whatever its directory holds; with their bytes (no files counted yet).
    async fn batch_objects(&self, batch: &BatchFiles) -> CatalogResult<(Vec<Path>, Freed)> {
        let dir = self.object_dir(&batch.location)?;
        let mut freed = Freed::default();
        let mut paths = Vec::new();
        match &batch.files {
            Some(files) => {
                for file in files {
                    paths.push(parse_path(&format!("{dir}/{}", file.path))?);
                    freed.bytes += file.size_bytes;
                }
            }
            None => {
                let prefix = parse_path(&dir)?;
                let mut listed = self.store.list(Some(&prefix));
                while let Some(meta) = listed.next().await {
                    let meta = meta.map_err(|e| match CatalogError::from(e) {
                        CatalogError::Unavailable(m) => CatalogError::Unavailable(m),
                        other => CatalogError::FailedPrecondition(format!(
                            "the batch directory {dir} cannot be listed: {other}"
                        )),
                    })?;
                    freed.bytes += meta.size as i64;
                    paths.push(meta.location);
                }
            }
        }
        Ok((paths, freed))
    }

    /// Every object under the warehouse root, as a stream (in no particular order). An entry
    /// that cannot be listed is an `Err` item; the listing goes on after it where it can.
    pub fn list_all(&self) -> impl futures::Stream<Item = CatalogResult<StoredObject>> + use<> {
        let root = (!self.root_path.is_empty()).then(|| Path::from(self.root_path.as_str()));
        let strip = if self.root_path.is_empty() {
            String::new()
        } else {
            format!("{}/", self.root_path)
        };
        self.store.list(root.as_ref()).map(move |meta| {
            let meta = meta?;
            let full = meta.location.to_string();
            Ok(StoredObject {
                path: full.strip_prefix(&strip).unwrap_or(&full).to_owned(),
                size: meta.size as i64,
                last_modified: meta.last_modified.timestamp_micros(),
            })
        })
    }

    /// Deletes one object, given relative to the root (an orphan the caller re-checked).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad path; `FailedPrecondition` for a path through a link on a
    /// local warehouse; storage errors.
    pub async fn delete_relative(&self, relative: &str) -> CatalogResult<bool> {
        let full = if self.root_path.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.root_path)
        };
        let path = parse_path(&full)?;
        if let Some(root) = self.local_root.clone() {
            let relative = relative.to_owned();
            return tokio::task::spawn_blocking(move || nofollow::remove_file(&root, &relative))
                .await
                .map_err(|e| CatalogError::Internal(format!("the deletion task failed: {e}")))?
                .map_err(CatalogError::from);
        }
        match self.store.delete(&path).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }
}

/// One batch's deletion on a local warehouse (blocking: run off the async workers).
fn delete_local(root: &std::path::Path, dir: &str, batch: &BatchFiles) -> CatalogResult<Freed> {
    match &batch.files {
        Some(files) => {
            let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            nofollow::remove_files(root, dir, &names)?;
            Ok(Freed {
                files: files.len() as i64,
                bytes: files.iter().map(|f| f.size_bytes).sum(),
            })
        }
        None => {
            let removed = nofollow::remove_tree(root, dir)?;
            Ok(Freed {
                files: removed.files,
                bytes: removed.bytes,
            })
        }
    }
}

impl From<nofollow::LocalDeleteError> for CatalogError {
    fn from(error: nofollow::LocalDeleteError) -> Self {
        CatalogError::FailedPrecondition(error.to_string())
    }
}

fn parse_path(text: &str) -> CatalogResult<Path> {
    Path::parse(text)
        .map_err(|e| CatalogError::InvalidArgument(format!("bad object path {text}: {e}")))
}

/// Opens, reads and decodes a local file's footer in one step (blocking). The file must be a
/// regular file reached without symbolic links, so a batch can never make the catalog record
/// (or later delete) something outside it.
/// Opens a local file without following links, checks its size against the stated one, and
/// reads its footer (blocking).
fn inspect_local(
    root: &std::path::Path,
    path: &Path,
    stated: u64,
    name: &str,
) -> CatalogResult<FileFacts> {
    let opened = match nofollow::open_file(root, path.as_ref()) {
        Ok(Some(opened)) => opened,
        Ok(None) => return Err(footer::missing(name)),
        Err(nofollow::LocalDeleteError::Io { source, .. }) => {
            return Err(CatalogError::Unavailable(format!(
                "cannot open file {name}: {source}"
            )));
        }
        Err(_) => {
            return Err(CatalogError::FailedPrecondition(format!(
                "file {name} is, or lies under, a symbolic link, or is not a regular file; a \
                 batch holds regular files only"
            )));
        }
    };
    check_size(name, opened.size, stated)?;
    footer::inspect_local(&opened.file, opened.size, name)
}

fn endpoint_is_plain_http() -> bool {
    ["AWS_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .any(|v| v.starts_with("http://"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use parquet::arrow::ArrowWriter;

    fn parquet_of(rows: i64) -> Vec<u8> {
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(
            (0..rows).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64)),
        ));
        let batch = RecordBatch::try_from_iter([("x", values)]).expect("a batch");
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).expect("a writer");
        writer.write(&batch).expect("written");
        writer.close().expect("closed");
        bytes
    }

    /// What an inspection answered, comparable across the two ways it runs.
    fn answer(result: &CatalogResult<FileFacts>) -> String {
        match result {
            Ok(facts) => format!("{} bytes, {} rows, {}", facts.size, facts.rows, facts.stats),
            Err(e) => format!("{e:?}"),
        }
    }

    /// A commit of a few small files reads their footers on the async worker, a larger one on
    /// blocking threads: both must give the same answer for every kind of file, true or
    /// lying about its size, missing, linked or not Parquet.
    #[tokio::test]
    async fn local_files_are_inspected_alike_inline_and_on_blocking_threads() {
        let root = tempfile::tempdir().expect("a directory");
        let warehouse = Warehouse::open(&root.path().to_string_lossy()).expect("a warehouse");
        let location = format!("{}/ns/t/_batch=b", warehouse.root_url);
        let dir = root.path().join("ns/t/_batch=b");
        std::fs::create_dir_all(&dir).expect("a batch directory");
        let small = parquet_of(10);
        let large = parquet_of(20_000);
        assert!(small.len() as i64 <= INSPECT_INLINE_BYTES);
        assert!(large.len() as i64 > INSPECT_INLINE_BYTES);
        std::fs::write(dir.join("small.parquet"), &small).expect("written");
        std::fs::write(dir.join("large.parquet"), &large).expect("written");
        std::fs::write(dir.join("text.parquet"), b"not parquet at all").expect("written");
        let outside = tempfile::tempdir().expect("a directory");
        std::fs::write(outside.path().join("x.parquet"), &small).expect("written");
        std::os::unix::fs::symlink(outside.path().join("x.parquet"), dir.join("link.parquet"))
            .expect("a link");
        let file = |path: &str, size: usize| DataFile {
            path: path.into(),
            size_bytes: size as i64,
            rows: 0,
        };
        let cases = [
            file("small.parquet", small.len()),
            file("small.parquet", small.len() + 1),
            file("small.parquet", small.len() - 1),
            file("large.parquet", large.len()),
            file("large.parquet", small.len()),
            file("missing.parquet", small.len()),
            file("link.parquet", small.len()),
            file("text.parquet", 18),
        ];
        let mut answers = Vec::new();
        for case in &cases {
            // Alone (inline when small), and fifth of five (never inline).
            let alone = warehouse.inspect_files(&[(location.as_str(), case)]).await;
            let padding = file("small.parquet", small.len());
            let mut many: Vec<(&str, &DataFile)> = vec![(location.as_str(), &padding); 4];
            many.push((location.as_str(), case));
            let among = warehouse.inspect_files(&many).await;
            let last = |r: CatalogResult<Vec<FileFacts>>| {
                r.and_then(|mut v| {
                    v.pop()
                        .ok_or_else(|| CatalogError::Internal("no facts".into()))
                })
            };
            let (alone, among) = (last(alone), last(among));
            assert_eq!(answer(&alone), answer(&among), "{case:?}");
            answers.push(alone);
        }
        let rows: Vec<Option<i64>> = answers
            .iter()
            .map(|a| a.as_ref().ok().map(|f| f.rows))
            .collect();
        assert_eq!(
            rows,
            [Some(10), None, None, Some(20_000), None, None, None, None]
        );
        for (case, answer) in cases.iter().zip(&answers) {
            if let Err(e) = answer {
                assert!(
                    matches!(e, CatalogError::FailedPrecondition(_)),
                    "{case:?}: {e:?}"
                );
            }
        }
    }
}
