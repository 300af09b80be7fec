//! Reading what a Parquet file says about itself, from its footer only.
//!
//! At commit the metastore records only facts it checked: each file's size (from storage), row
//! count and schema (from its footer), and its column statistics. The footer is found by one
//! ranged read of the file's tail (a second when the footer is larger than that tail); data
//! pages are never read. Footers are bounded in size, and large ones are decoded off the
//! async workers. A local file is opened, read and decoded in one step ([`inspect_local`]):
//! each hop between threads costs more than reading a small footer.

use crate::error::{CatalogError, CatalogResult};
use arrow_schema::Schema;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use serde_json::{Map, Value, json};

/// Bytes read from the end of a file at first: most footers fit.
const TAIL_BYTES: u64 = 64 * 1024;
/// The largest footer the metastore reads.
pub const MAX_FOOTER_BYTES: usize = 16 * 1024 * 1024;
/// Footers above this size are decoded on a blocking thread.
const DECODE_INLINE_BYTES: usize = 256 * 1024;
/// Statistics kept per file at most; past it, minimums and maximums are dropped.
const MAX_STATS_BYTES: usize = 64 * 1024;

/// What a file's storage entry and footer say.
#[derive(Debug, Clone)]
pub struct FileFacts {
    pub size: u64,
    pub rows: i64,
    pub schema: Schema,
    /// Column statistics as JSON: `{"column": {"nulls": n, "min": [hex per row group], ...}}`.
    pub stats: String,
}

/// Reads the facts of the Parquet file at `path` in object storage; `name` is how messages
/// call it.
///
/// # Errors
/// `FailedPrecondition` for a missing file or one that is not Parquet (or whose footer is too
/// large or encrypted); `Unavailable` when storage cannot be reached.
pub async fn inspect(store: &dyn ObjectStore, path: &Path, name: &str) -> CatalogResult<FileFacts> {
    let options = GetOptions {
        range: Some(GetRange::Suffix(TAIL_BYTES)),
        ..Default::default()
    };
    let got = match store.get_opts(path, options).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Err(missing(name)),
        Err(other) => return Err(other.into()),
    };
    let size = got.meta.size;
    let start = got.range.start;
    let tail = Tail {
        size,
        start,
        bytes: got.bytes().await?,
    };
    let metadata = match tail.footer(name)? {
        Footer::Read(metadata) => metadata,
        Footer::At(range) => store.get_range(path, range).await?,
    };
    if metadata.len() <= DECODE_INLINE_BYTES {
        return decode(size, &metadata, name);
    }
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || decode(size, &metadata, &name))
        .await
        .map_err(|e| CatalogError::Internal(format!("reading a footer failed: {e}")))?
}

/// Reads the facts of an open local Parquet file of `size` bytes (blocking: off the async
/// workers unless the file is small, as the one step that opens and reads the file).
///
/// # Errors
/// As [`inspect`]; a failed read is `Unavailable`.
pub fn inspect_local(file: &std::fs::File, size: u64, name: &str) -> CatalogResult<FileFacts> {
    use std::os::unix::fs::FileExt;
    let unreadable =
        |e: std::io::Error| CatalogError::Unavailable(format!("cannot read file {name}: {e}"));
    let read = |start: u64, end: u64| {
        let mut bytes = vec![0; (end - start) as usize];
        file.read_exact_at(&mut bytes, start).map_err(unreadable)?;
        Ok::<_, CatalogError>(Bytes::from(bytes))
    };
    let start = size.saturating_sub(TAIL_BYTES);
    let tail = Tail {
        size,
        start,
        bytes: read(start, size)?,
    };
    let metadata = match tail.footer(name)? {
        Footer::Read(metadata) => metadata,
        Footer::At(range) => read(range.start, range.end)?,
    };
    decode(size, &metadata, name)
}

/// The answer for a file that is not there.
pub fn missing(name: &str) -> CatalogError {
    CatalogError::FailedPrecondition(format!(
        "file {name} was not found; upload every file before committing"
    ))
}

fn not_parquet(name: &str, why: &str) -> CatalogError {
    CatalogError::FailedPrecondition(format!(
        "file {name} is not a readable Parquet file ({why}); commit only Parquet files"
    ))
}

/// A file's size and its last bytes, from `start` on.
struct Tail {
    size: u64,
    start: u64,
    bytes: Bytes,
}

/// Where a footer is: within the tail read already, or at this byte range of the file.
enum Footer {
    Read(Bytes),
    At(std::ops::Range<u64>),
}

impl Tail {
    /// Finds the footer from the file's last eight bytes (its length and the magic).
    fn footer(&self, name: &str) -> CatalogResult<Footer> {
        let bytes = &self.bytes;
        if self.size < 12 || bytes.len() < 8 {
            return Err(not_parquet(name, "it is too short"));
        }
        let last: [u8; 8] = bytes[bytes.len() - 8..]
            .try_into()
            .map_err(|_| not_parquet(name, "no footer"))?;
        let footer =
            FooterTail::try_new(&last).map_err(|_| not_parquet(name, "no Parquet footer"))?;
        if footer.is_encrypted_footer() {
            return Err(not_parquet(name, "its footer is encrypted"));
        }
        let length = footer.metadata_length();
        if length > MAX_FOOTER_BYTES {
            return Err(not_parquet(
                name,
                &format!("its footer is {length} bytes; at most {MAX_FOOTER_BYTES} are read"),
            ));
        }
        let end = self.size - 8;
        let start = end
            .checked_sub(length as u64)
            .filter(|start| *start >= 4)
            .ok_or_else(|| not_parquet(name, "its footer length does not fit the file"))?;
        Ok(if start >= self.start {
            let from = (start - self.start) as usize;
            Footer::Read(bytes.slice(from..from + length))
        } else {
            Footer::At(start..end)
        })
    }
}

/// The facts of a file of `size` bytes whose footer is `metadata`.
fn decode(size: u64, metadata: &[u8], name: &str) -> CatalogResult<FileFacts> {
    let (rows, schema, stats) = read_footer(metadata).map_err(|e| not_parquet(name, &e))?;
    Ok(FileFacts {
        size,
        rows,
        schema,
        stats,
    })
}

/// Decodes a footer into the file's row count, Arrow schema and statistics.
fn read_footer(bytes: &[u8]) -> Result<(i64, Schema, String), String> {
    let metadata = ParquetMetaDataReader::decode_metadata(bytes)
        .map_err(|e| format!("its footer is corrupt: {e}"))?;
    let file = metadata.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|e| format!("its schema cannot be read as Arrow: {e}"))?;
    Ok((file.num_rows(), schema, statistics(&metadata)))
}

/// Column statistics of a file as JSON: per column, the null count over all row groups (when
/// every row group records it) and each row group's minimum and maximum in their Parquet
/// encoding, as hex.
fn statistics(metadata: &ParquetMetaData) -> String {
    let mut columns: Map<String, Value> = Map::new();
    for group in metadata.row_groups() {
        for chunk in group.columns() {
            let entry = columns
                .entry(chunk.column_path().string())
                .or_insert_with(|| json!({"nulls": 0, "min": [], "max": []}));
            let stats = chunk.statistics();
            let nulls = stats.and_then(|s| s.null_count_opt());
            entry["nulls"] = match (entry["nulls"].as_u64(), nulls) {
                (Some(sum), Some(n)) => json!(sum + n),
                _ => Value::Null,
            };
            let hex = |b: Option<&[u8]>| b.map_or(Value::Null, |b| Value::String(to_hex(b)));
            if let Some(list) = entry["min"].as_array_mut() {
                list.push(hex(stats.and_then(|s| s.min_bytes_opt())));
            }
            if let Some(list) = entry["max"].as_array_mut() {
                list.push(hex(stats.and_then(|s| s.max_bytes_opt())));
            }
        }
    }
    let full = Value::Object(columns.clone()).to_string();
    if full.len() <= MAX_STATS_BYTES {
        return full;
    }
    for entry in columns.values_mut() {
        if let Some(entry) = entry.as_object_mut() {
            entry.remove("min");
            entry.remove("max");
        }
    }
    Value::Object(columns).to_string()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
