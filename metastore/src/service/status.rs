//! The one place catalog errors become gRPC statuses.
//!
//! Codes follow their meaning; the message is the catalog's sentence. Each status also carries
//! `batchstore-error-kind` metadata so clients can tell, say, a schema mismatch from other
//! failed preconditions without parsing text.

use crate::error::CatalogError;
use crate::names::printable;
use batchstore_proto::wire::{
    CURRENT_BATCH_KEY, ERROR_KIND_KEY, EXPECT_NEW, MISSING_KEY, MISSING_NAME_KEY,
};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The gRPC code of a catalog error.
pub fn code_of(error: &CatalogError) -> Code {
    code_and_kind(error).0
}

fn code_and_kind(error: &CatalogError) -> (Code, &'static str) {
    match error {
        CatalogError::InvalidArgument(_) => (Code::InvalidArgument, "invalid_argument"),
        CatalogError::NotFound { .. } => (Code::NotFound, "not_found"),
        CatalogError::AlreadyExists(_) => (Code::AlreadyExists, "already_exists"),
        CatalogError::FailedPrecondition(_) => (Code::FailedPrecondition, "failed_precondition"),
        CatalogError::SchemaMismatch(_) => (Code::FailedPrecondition, "schema_mismatch"),
        CatalogError::Conflict { .. } => (Code::Aborted, "conflict"),
        CatalogError::Unauthenticated(_) => (Code::Unauthenticated, "unauthenticated"),
        CatalogError::PermissionDenied(_) => (Code::PermissionDenied, "permission_denied"),
        CatalogError::Unavailable(_) => (Code::Unavailable, "unavailable"),
        CatalogError::Internal(_) => (Code::Internal, "internal"),
    }
}

/// Converts a catalog error into a gRPC status.
pub fn to_status(error: CatalogError) -> Status {
    let (code, kind) = code_and_kind(&error);
    if matches!(
        error,
        CatalogError::Internal(_) | CatalogError::Unavailable(_)
    ) {
        tracing::error!(%error, "request failed");
    }
    let mut status = Status::new(code, error.to_string());
    let metadata = status.metadata_mut();
    metadata.insert(ERROR_KIND_KEY, MetadataValue::from_static(kind));
    match &error {
        CatalogError::NotFound { what, name, .. } => {
            metadata.insert(MISSING_KEY, MetadataValue::from_static(what.as_str()));
            metadata.insert_bin(
                MISSING_NAME_KEY,
                MetadataValue::from_bytes(printable(name, MAX_NAME_CHARS).as_bytes()),
            );
        }
        CatalogError::Conflict {
            current_batch_id, ..
        } => {
            // Batch ids are canonical UUIDs, always valid metadata.
            let current = current_batch_id.as_deref().unwrap_or(EXPECT_NEW);
            if let Ok(value) = MetadataValue::try_from(current) {
                metadata.insert(CURRENT_BATCH_KEY, value);
            }
        }
        _ => {}
    }
    status
}

/// Longest missing name sent as metadata, in characters.
const MAX_NAME_CHARS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_meaning() {
        let cases = [
            (
                CatalogError::not_found(crate::error::Missing::Table, "ns.t", "x"),
                Code::NotFound,
                "not_found",
            ),
            (
                CatalogError::Conflict {
                    current_batch_id: Some("b".into()),
                    message: "x".into(),
                },
                Code::Aborted,
                "conflict",
            ),
            (
                CatalogError::SchemaMismatch("x".into()),
                Code::FailedPrecondition,
                "schema_mismatch",
            ),
            (
                CatalogError::InvalidArgument("x".into()),
                Code::InvalidArgument,
                "invalid_argument",
            ),
            (
                CatalogError::Unavailable("x".into()),
                Code::Unavailable,
                "unavailable",
            ),
        ];
        for (error, code, kind) in cases {
            let status = to_status(error);
            assert_eq!(status.code(), code);
            let meta = |key| status.metadata().get(key).and_then(|v| v.to_str().ok());
            assert_eq!(meta(ERROR_KIND_KEY), Some(kind));
            match kind {
                "not_found" => assert_eq!(meta(MISSING_KEY), Some("table")),
                "conflict" => assert_eq!(meta(CURRENT_BATCH_KEY), Some("b")),
                _ => {}
            }
        }
    }
}
