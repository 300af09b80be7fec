//! The catalog's error type: one variant per condition a caller can act on.
//!
//! Every message is a sentence for a person: what happened and, where there is one, what to do.
//! Database errors are converted here, once; the gRPC layer maps these variants to status codes
//! in `service::status`, once.

pub use batchstore_proto::wire::Missing;
use thiserror::Error;

/// Why a catalog operation failed.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The request itself is malformed: a bad name, a missing partition key, an unknown type.
    #[error("{0}")]
    InvalidArgument(String),
    /// A namespace, table, partition, version, batch, tag or lease does not exist: `what`
    /// says which, `name` names it (see [`CatalogError::not_found`]).
    #[error("{message}")]
    NotFound {
        what: Missing,
        name: String,
        message: String,
    },
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well-formed but the catalog's state refuses it (files missing, lease
    /// expired, batch aborted, namespace not empty).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A write's schema does not match the table's; the message names the column.
    #[error("{0}")]
    SchemaMismatch(String),
    /// Compare-and-swap failed: another commit moved the partition first. Retry after re-reading.
    /// `current_batch_id` is the batch the partition is at now (`None`: never written).
    #[error("{message}")]
    Conflict {
        current_batch_id: Option<String>,
        message: String,
    },
    /// The call carries no credentials, or ones this metastore does not accept.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this; the message says what it has and needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// The database or the object store cannot be reached right now. Safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected state; the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CatalogError {
    /// `what` called `name` does not exist; `message` says so to a person. The name is the
    /// missing thing as a user would write it: a namespace's name, a table's `ns.table`, a
    /// partition's `key=value/...`, a version's number or as-of time, a batch id, a tag's or
    /// a lease's name.
    pub fn not_found(what: Missing, name: impl Into<String>, message: impl Into<String>) -> Self {
        CatalogError::NotFound {
            what,
            name: name.into(),
            message: message.into(),
        }
    }
}

/// Result alias for catalog operations.
pub type CatalogResult<T> = Result<T, CatalogError>;

impl From<sqlx::Error> for CatalogError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => CatalogError::AlreadyExists(
                format!("the catalog already holds this entry ({})", db.message()),
            ),
            sqlx::Error::Database(db) if is_transient_sqlstate(db.code().as_deref()) => {
                CatalogError::Unavailable(format!(
                    "the catalog database is busy ({}); retry the request",
                    db.message()
                ))
            }
            // A conversation with the database that broke off or went astray (a garbled
            // reply included) leaves the statement's outcome unknown, a COMMIT's too: the
            // client settles it by asking again, never takes it for a refusal.
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => CatalogError::Unavailable(format!(
                "the catalog database is unreachable ({error}); check that it is running"
            )),
            _ => CatalogError::Internal(format!("catalog database error: {error}")),
        }
    }
}

/// SQLSTATEs (PostgreSQL) and extended result codes (SQLite) that mean "try again".
fn is_transient_sqlstate(code: Option<&str>) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected, lock_not_available, admin/crash shutdown
        Some("40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03")
        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes
        | Some("5" | "6" | "261" | "517" | "262")
    )
}

/// Storage errors keep their kind: a missing object and refused credentials are definite
/// answers (a retry cannot help, so a client must not take them for an unknown outcome);
/// anything else means the storage could not be reached.
impl From<object_store::Error> for CatalogError {
    fn from(error: object_store::Error) -> Self {
        use object_store::Error as E;
        match error {
            E::NotFound { path, .. } => CatalogError::FailedPrecondition(format!(
                "{path} was not found in the warehouse storage; upload every file before \
                 committing"
            )),
            E::PermissionDenied { path, source } | E::Unauthenticated { path, source } => {
                CatalogError::FailedPrecondition(format!(
                    "the warehouse storage refused the metastore access to {path} ({source}); \
                     check the metastore's AWS_* credentials and the bucket's permissions"
                ))
            }
            // A name storage holds but cannot express is a fact about that object, not an
            // outage: retrying cannot help.
            E::InvalidPath { source } => CatalogError::FailedPrecondition(format!(
                "the warehouse holds an object whose name cannot be used: {source}"
            )),
            other => CatalogError::Unavailable(format!(
                "the warehouse storage could not be reached: {other}"
            )),
        }
    }
}
