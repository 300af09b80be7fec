//! The documented bounds on what a request may carry, checked before any work is done, so
//! that no request can make the catalog slow or unreadable for everyone else. The README's
//! "Limits" table lists the same numbers; every limit has a test at and past it.

use crate::error::{CatalogError, CatalogResult};
use arrow_schema::Schema;

/// Most bytes of a commit or rollback message.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most bytes of an encoded Arrow schema sent with a write or a table.
pub const MAX_SCHEMA_BYTES: usize = 1024 * 1024;
/// Most bytes of schema metadata (keys and values, of the schema and all its fields).
pub const MAX_SCHEMA_METADATA_BYTES: usize = 256 * 1024;
/// Most columns (fields at any depth) of a table's schema.
pub const MAX_COLUMNS: usize = 10_000;
/// Most lineage inputs one batch may name.
pub const MAX_LINEAGE_INPUTS: usize = 1_000;
/// Most partitions one read may name.
pub const MAX_PARTITIONS_PER_REQUEST: usize = 10_000;
/// Most conditions in one read's partition filter.
pub const MAX_FILTER_PREDICATES: usize = 64;
/// Most batches one named lease may pin.
pub const MAX_LEASE_BATCHES: usize = 100_000;
/// Most orphans one FindOrphans call lists or deletes.
pub const MAX_ORPHANS_PER_CALL: usize = 10_000;
/// Longest request id (a rollback's), in characters of `[A-Za-z0-9_-]`.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// Checks a commit or rollback message.
///
/// # Errors
/// `InvalidArgument` past [`MAX_MESSAGE_BYTES`].
pub fn check_message(message: &str) -> CatalogResult<()> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(CatalogError::InvalidArgument(format!(
            "the message is {} bytes; at most {MAX_MESSAGE_BYTES} are allowed",
            message.len()
        )));
    }
    Ok(())
}

/// Checks a request id: at most [`MAX_REQUEST_ID_CHARS`] letters, digits, `-` and `_`.
///
/// # Errors
/// `InvalidArgument` naming a bounded prefix of what was sent.
pub fn check_request_id(id: &str) -> CatalogResult<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.len() > MAX_REQUEST_ID_CHARS || !id.chars().all(allowed) {
        return Err(CatalogError::InvalidArgument(format!(
            "{} is not a request id: at most {MAX_REQUEST_ID_CHARS} letters, digits, '-' and '_' \
             (send a UUID)",
            crate::names::quote_for_message(id)
        )));
    }
    Ok(())
}

/// Checks the size of an encoded schema before it is decoded.
///
/// # Errors
/// `InvalidArgument` past [`MAX_SCHEMA_BYTES`].
pub fn check_schema_bytes(bytes: &[u8]) -> CatalogResult<()> {
    if bytes.len() > MAX_SCHEMA_BYTES {
        return Err(CatalogError::InvalidArgument(format!(
            "the Arrow schema is {} bytes; at most {MAX_SCHEMA_BYTES} are allowed (keep schema \
             metadata small)",
            bytes.len()
        )));
    }
    Ok(())
}

/// Checks a decoded schema's column count and metadata size, in one linear pass.
///
/// # Errors
/// `InvalidArgument` past [`MAX_COLUMNS`] or [`MAX_SCHEMA_METADATA_BYTES`].
pub fn check_schema(schema: &Schema) -> CatalogResult<()> {
    let metadata_bytes =
        |m: &arrow_schema::Metadata| -> usize { m.iter().map(|(k, v)| k.len() + v.len()).sum() };
    let mut metadata = metadata_bytes(schema.metadata());
    let mut columns = 0usize;
    let mut stack: Vec<&arrow_schema::Field> = schema.fields().iter().map(|f| f.as_ref()).collect();
    while let Some(field) = stack.pop() {
        columns += 1;
        metadata += metadata_bytes(field.metadata());
        if columns > MAX_COLUMNS {
            return Err(CatalogError::InvalidArgument(format!(
                "the schema has more than {MAX_COLUMNS} columns (counting nested fields)"
            )));
        }
        stack.extend(nested(field.data_type()));
    }
    if metadata > MAX_SCHEMA_METADATA_BYTES {
        return Err(CatalogError::InvalidArgument(format!(
            "the schema carries {metadata} bytes of metadata; at most \
             {MAX_SCHEMA_METADATA_BYTES} are allowed"
        )));
    }
    Ok(())
}

/// The child fields of a nested type.
fn nested(data_type: &arrow_schema::DataType) -> Vec<&arrow_schema::Field> {
    use arrow_schema::DataType;
    match data_type {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => vec![f.as_ref()],
        DataType::Struct(fields) => fields.iter().map(|f| f.as_ref()).collect(),
        DataType::Union(fields, _) => fields.iter().map(|(_, f)| f.as_ref()).collect(),
        DataType::Dictionary(_, value) => nested(value),
        DataType::RunEndEncoded(_, values) => vec![values.as_ref()],
        _ => Vec::new(),
    }
}
