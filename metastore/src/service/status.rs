//! The one place catalog errors become gRPC statuses.
//!
//! Codes follow their meaning; the message is the catalog's sentence. Each status also carries
//! `batchstore-error-kind` metadata so clients can tell, say, a schema mismatch from other
//! failed preconditions without parsing text.

use crate::error::CatalogError;
use batchstore_proto::wire::ERROR_KIND_KEY;
use tonic::{Code, Status};

/// Converts a catalog error into a gRPC status.
pub fn to_status(error: CatalogError) -> Status {
    let (code, kind) = match &error {
        CatalogError::InvalidArgument(_) => (Code::InvalidArgument, "invalid_argument"),
        CatalogError::NotFound(_) => (Code::NotFound, "not_found"),
        CatalogError::AlreadyExists(_) => (Code::AlreadyExists, "already_exists"),
        CatalogError::FailedPrecondition(_) => (Code::FailedPrecondition, "failed_precondition"),
        CatalogError::SchemaMismatch(_) => (Code::FailedPrecondition, "schema_mismatch"),
        CatalogError::Conflict(_) => (Code::Aborted, "conflict"),
        CatalogError::Unavailable(_) => (Code::Unavailable, "unavailable"),
        CatalogError::Internal(_) => (Code::Internal, "internal"),
    };
    if matches!(
        error,
        CatalogError::Internal(_) | CatalogError::Unavailable(_)
    ) {
        tracing::error!(%error, "request failed");
    }
    let mut status = Status::new(code, error.to_string());
    status.metadata_mut().insert(
        ERROR_KIND_KEY,
        tonic::metadata::MetadataValue::from_static(kind),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_meaning() {
        let cases = [
            (
                CatalogError::NotFound("x".into()),
                Code::NotFound,
                "not_found",
            ),
            (
                CatalogError::Conflict("x".into()),
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
            assert_eq!(
                status
                    .metadata()
                    .get(ERROR_KIND_KEY)
                    .and_then(|v| v.to_str().ok()),
                Some(kind)
            );
        }
    }
}
