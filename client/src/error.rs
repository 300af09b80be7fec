//! The client's error type, one variant per condition a user can act on.
//!
//! gRPC statuses are converted here, once (`from_status`), using the metastore's
//! `batchstore-error-kind` metadata where present; storage, Parquet and Arrow errors are
//! converted here too. Front ends (tablectl, Python, R) map these variants in one place each.

pub use batchstore_proto::wire::Missing;
use thiserror::Error;

/// Why a client operation failed. The message is the sentence to show the user.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Something does not exist: `what` says which (a table a write may create, a partition,
    /// a version…; `None` for data files in storage) and `name` names it (`ns.table`,
    /// `ds=1`, a version's number, a batch id, a storage path…; `None` when not told).
    #[error("{message}")]
    NotFound {
        what: Option<Missing>,
        name: Option<String>,
        message: String,
    },
    #[error("{0}")]
    AlreadyExists(String),
    /// Another write moved the partition first (compare-and-swap failed). `current_batch_id`
    /// is the batch the partition is at now (`None`: never written; also when not told).
    #[error("{message}")]
    Conflict {
        current_batch_id: Option<String>,
        message: String,
    },
    /// The data's schema does not match the table's; the message names the column.
    #[error("{0}")]
    SchemaMismatch(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// The metastore or the storage cannot be reached. Safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// Reading or writing data files failed.
    #[error("{0}")]
    Storage(String),
    /// Data could not be encoded or decoded (Parquet, Arrow, CSV).
    #[error("{0}")]
    Data(String),
    /// The operation was cancelled (Ctrl-C). `committed` holds what its commit made when it
    /// had already been sent and succeeded (empty: nothing was committed); the message says
    /// the same in words.
    #[error("{message}")]
    Cancelled {
        committed: Vec<crate::types::CommitInfo>,
        message: String,
    },
    /// A commit was sent but no answer settled whether it happened; the message names the
    /// batches and how to find out. Nothing was aborted.
    #[error("{0}")]
    OutcomeUnknown(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error with its causes, for messages (a TLS failure hides in the sources).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Result alias for client operations.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    /// Converts a gRPC status from the metastore.
    pub fn from_status(status: tonic::Status) -> Self {
        use batchstore_proto::wire::{
            CURRENT_BATCH_KEY, ERROR_KIND_KEY, MISSING_KEY, MISSING_NAME_KEY, expects_new,
        };
        use tonic::Code;
        let message = status.message().to_owned();
        let meta = |key| status.metadata().get(key).and_then(|v| v.to_str().ok());
        match (status.code(), meta(ERROR_KIND_KEY).unwrap_or("")) {
            (_, "schema_mismatch") => ClientError::SchemaMismatch(message),
            (Code::NotFound, _) => ClientError::NotFound {
                what: meta(MISSING_KEY).and_then(Missing::parse),
                name: status
                    .metadata()
                    .get_bin(MISSING_NAME_KEY)
                    .and_then(|v| v.to_bytes().ok())
                    .and_then(|b| String::from_utf8(b.to_vec()).ok()),
                message,
            },
            (Code::AlreadyExists, _) => ClientError::AlreadyExists(message),
            (Code::Aborted, _) => ClientError::Conflict {
                current_batch_id: meta(CURRENT_BATCH_KEY)
                    .filter(|b| !expects_new(b))
                    .map(str::to_owned),
                message,
            },
            (Code::InvalidArgument | Code::OutOfRange, _) => ClientError::InvalidArgument(message),
            (Code::FailedPrecondition, _) => ClientError::FailedPrecondition(message),
            (Code::PermissionDenied, _) => {
                ClientError::PermissionDenied(format!("PERMISSION_DENIED: {message}"))
            }
            (Code::Unauthenticated, _) => {
                ClientError::Unauthenticated(format!("UNAUTHENTICATED: {message}"))
            }
            // An INTERNAL the metastore did not send (it tags each of its own errors with its
            // kind) was made on the way: by the transport (an HTTP/2 failure, plain text sent
            // to a TLS port) or while decoding a reply that was cut short or garbled. The
            // request may well have been carried out, so this is never a refusal: like a lost
            // reply, it leaves the outcome to be settled.
            (Code::Internal, "") => {
                let cause = std::error::Error::source(&status)
                    .map(|cause| format!(" ({})", error_chain(cause)))
                    .unwrap_or_default();
                ClientError::Unavailable(format!(
                    "the metastore's reply did not arrive intact: {message}{cause}; if it serves \
                     TLS, use an https:// endpoint"
                ))
            }
            (
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Unknown
                | Code::Cancelled
                | Code::ResourceExhausted,
                _,
            ) => {
                // A transport failure hides its cause (a refused TLS handshake, a reset) in
                // the status's sources.
                let cause = std::error::Error::source(&status).map(error_chain);
                let message = match (message.is_empty(), cause) {
                    (true, None) => "no answer".to_owned(),
                    (true, Some(cause)) => cause,
                    (false, Some(cause)) if !message.contains(&cause) => {
                        format!("{message} ({cause})")
                    }
                    (false, _) => message,
                };
                ClientError::Unavailable(format!(
                    "the metastore is unavailable: {message}; check that it is running and that \
                     BATCHSTORE_ENDPOINT points at it (for TLS: an https:// endpoint, \
                     BATCHSTORE_CA_FILE, and BATCHSTORE_CLIENT_CERT/KEY when it requires client \
                     certificates)"
                ))
            }
            _ => ClientError::Internal(format!("{:?}: {message}", status.code())),
        }
    }

    /// True when the metastore itself sent `status`: it tags each of its errors with its
    /// kind. Any other status was made on the way (by the transport, by decoding a reply, by a
    /// proxy).
    pub(crate) fn answered_by_metastore(status: &tonic::Status) -> bool {
        status
            .metadata()
            .contains_key(batchstore_proto::wire::ERROR_KIND_KEY)
    }

    /// A short machine name of the kind, used by front ends (`not_found`, `conflict`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::NotFound { .. } => "not_found",
            ClientError::AlreadyExists(_) => "already_exists",
            ClientError::Conflict { .. } => "conflict",
            ClientError::SchemaMismatch(_) => "schema_mismatch",
            ClientError::InvalidArgument(_) => "invalid_argument",
            ClientError::FailedPrecondition(_) => "failed_precondition",
            ClientError::PermissionDenied(_) => "permission_denied",
            ClientError::Unauthenticated(_) => "unauthenticated",
            ClientError::Unavailable(_) => "unavailable",
            ClientError::Storage(_) => "storage",
            ClientError::Data(_) => "data",
            ClientError::Cancelled { .. } => "cancelled",
            ClientError::OutcomeUnknown(_) => "outcome_unknown",
            ClientError::Internal(_) => "internal",
        }
    }

    /// True when the same request may simply be sent again: the metastore or the storage
    /// could not be reached or did not answer, so the request may not have been carried out
    /// (or, for an idempotent request, its reply was lost). The client's own resends use this.
    pub fn retryable(&self) -> bool {
        matches!(self, ClientError::Unavailable(_))
    }

    /// True when a table (or its namespace) does not exist: what a write creating missing
    /// tables acts on.
    pub fn is_missing_table(&self) -> bool {
        matches!(
            self,
            ClientError::NotFound {
                what: Some(Missing::Table | Missing::Namespace),
                ..
            }
        )
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::from_status(status)
    }
}

/// Storage errors keep their kind: a missing object or bucket is `NotFound`, a refusal of the
/// credentials `PermissionDenied`, a storage that cannot be reached `Unavailable`; the rest
/// are `Storage`.
impl From<object_store::Error> for ClientError {
    fn from(error: object_store::Error) -> Self {
        use object_store::Error as E;
        match error {
            E::NotFound { path, source } => ClientError::NotFound {
                what: None,
                name: Some(path.clone()),
                message: format!(
                    "{path} was not found in storage ({source}); check the bucket and that the \
                     data was not deleted"
                ),
            },
            E::PermissionDenied { path, source } | E::Unauthenticated { path, source } => {
                ClientError::PermissionDenied(format!(
                    "storage refused access to {path} ({source}); check the AWS_* credentials \
                     and the bucket's permissions"
                ))
            }
            other if unreachable(&other) => ClientError::Unavailable(format!(
                "storage cannot be reached ({other}); check AWS_ENDPOINT_URL and the network, \
                 then retry"
            )),
            other => ClientError::Storage(format!("storage error: {other}")),
        }
    }
}

/// True when a storage error says the storage could not be reached at all.
fn unreachable(error: &object_store::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("error sending request")
            || text.contains("connection refused")
            || text.contains("dns error")
            || text.contains("timed out")
        {
            return true;
        }
        source = e.source();
    }
    false
}

impl From<parquet::errors::ParquetError> for ClientError {
    fn from(error: parquet::errors::ParquetError) -> Self {
        ClientError::Data(format!("Parquet error: {error}"))
    }
}

impl From<arrow_schema::ArrowError> for ClientError {
    fn from(error: arrow_schema::ArrowError) -> Self {
        ClientError::Data(format!("Arrow error: {error}"))
    }
}

impl From<tokio::task::JoinError> for ClientError {
    fn from(error: tokio::task::JoinError) -> Self {
        ClientError::Internal(format!("a worker task failed: {error}"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use batchstore_proto::wire::ERROR_KIND_KEY;
    use tonic::metadata::MetadataValue;

    /// A status as the metastore sends it: tagged with its kind.
    pub(crate) fn from_metastore(code: tonic::Code, kind: &'static str) -> tonic::Status {
        let mut status = tonic::Status::new(code, "said by the metastore");
        status
            .metadata_mut()
            .insert(ERROR_KIND_KEY, MetadataValue::from_static(kind));
        status
    }

    /// Only what the metastore itself answered is a refusal; an INTERNAL made on the way
    /// (a reply cut short or garbled while decoding, an HTTP/2 reset) may follow a request
    /// that was carried out, so it is sent again like a lost reply.
    #[test]
    fn only_the_metastores_own_answers_are_refusals() {
        for made_on_the_way in [
            tonic::Status::internal("Unexpected EOF decoding stream."),
            tonic::Status::internal("failed to decode Protobuf message"),
            tonic::Status::internal("h2 protocol error: error reading a body from connection"),
        ] {
            let error = ClientError::from_status(made_on_the_way);
            assert!(error.retryable(), "{error:?}");
        }
        let internal = ClientError::from_status(from_metastore(tonic::Code::Internal, "internal"));
        assert!(matches!(internal, ClientError::Internal(_)), "{internal:?}");
        assert!(!internal.retryable());
        let refused = ClientError::from_status(from_metastore(
            tonic::Code::FailedPrecondition,
            "failed_precondition",
        ));
        assert!(!refused.retryable(), "{refused:?}");
    }
}
