//! Python exceptions, and the one place client errors become them.
//!
//! `Error` is the base of every batchstore exception; each subclass names a condition a user
//! can act on. The message is the service's sentence.

use batchstore_client::ClientError;
use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::PyAnyMethods;

create_exception!(
    _native,
    Error,
    PyException,
    "Base class of every batchstore error."
);
create_exception!(
    _native,
    NotFound,
    Error,
    "A namespace, table, partition, version, batch or tag does not exist."
);
create_exception!(
    _native,
    AlreadyExists,
    Error,
    "The thing to create exists already."
);
create_exception!(
    _native,
    Conflict,
    Error,
    "Another write changed the partition first (the expected batch no longer matches)."
);
create_exception!(
    _native,
    SchemaMismatch,
    Error,
    "The data's schema does not match the table's; the message names the column."
);
create_exception!(
    _native,
    InvalidArgument,
    Error,
    "A name, partition value or argument is not acceptable."
);
create_exception!(
    _native,
    FailedPrecondition,
    Error,
    "The catalog's state refuses the request (for example an expired lease)."
);
create_exception!(
    _native,
    PermissionDenied,
    Error,
    "The caller may not do this."
);
create_exception!(
    _native,
    Unauthenticated,
    Error,
    "The metastore did not accept the caller's credentials (no token, or one it refuses)."
);
create_exception!(
    _native,
    Unavailable,
    Error,
    "The metastore or the storage cannot be reached; retrying may help."
);
create_exception!(
    _native,
    OutcomeUnknown,
    Error,
    "A commit was sent but its outcome could not be settled; the message names the batches."
);
create_exception!(
    _native,
    DataError,
    Error,
    "Data could not be encoded, decoded or stored."
);

/// Converts a client error into the matching Python exception. A `Conflict` carries
/// `current_batch_id` (the partition's batch now, None when never written) and a `NotFound`
/// carries `what` (`"table"`, `"partition"`, … or None for a data file) and `name` (what is
/// missing: `"ns.table"`, `"ds=1"`, a version's number, a batch id, a storage path…), as
/// attributes.
pub fn to_py(error: ClientError) -> PyErr {
    let message = error.to_string();
    match error {
        ClientError::NotFound { what, name, .. } => with_attribute(
            with_attribute(NotFound::new_err(message), "what", what.map(|w| w.as_str())),
            "name",
            name.as_deref(),
        ),
        ClientError::AlreadyExists(_) => AlreadyExists::new_err(message),
        ClientError::Conflict {
            current_batch_id, ..
        } => with_attribute(
            Conflict::new_err(message),
            "current_batch_id",
            current_batch_id.as_deref(),
        ),
        ClientError::SchemaMismatch(_) => SchemaMismatch::new_err(message),
        ClientError::InvalidArgument(_) => InvalidArgument::new_err(message),
        ClientError::FailedPrecondition(_) => FailedPrecondition::new_err(message),
        ClientError::PermissionDenied(_) => PermissionDenied::new_err(message),
        ClientError::Unauthenticated(_) => Unauthenticated::new_err(message),
        ClientError::Unavailable(_) => Unavailable::new_err(message),
        ClientError::Storage(_) | ClientError::Data(_) => DataError::new_err(message),
        ClientError::Cancelled { committed, .. } => interrupted(message, &committed),
        ClientError::OutcomeUnknown(_) => OutcomeUnknown::new_err(message),
        ClientError::Internal(_) => Error::new_err(message),
    }
}

/// A KeyboardInterrupt saying what the interrupted call committed: its `committed` attribute
/// lists the versions the call's commit made (dicts, as the native write returns them), and is
/// empty when nothing was committed. The message says the same in words.
pub fn interrupted(message: String, committed: &[batchstore_client::CommitInfo]) -> PyErr {
    let error = pyo3::exceptions::PyKeyboardInterrupt::new_err(message);
    pyo3::Python::attach(|py| {
        let made: Vec<_> = committed
            .iter()
            .filter_map(|c| crate::values::commit_dict(py, c).ok())
            .collect();
        let _ = error.value(py).setattr("committed", made);
    });
    error
}

/// Sets `name` on the exception's instance (best effort: the message says it too).
fn with_attribute(error: PyErr, name: &str, value: Option<&str>) -> PyErr {
    pyo3::Python::attach(|py| {
        let _ = error.value(py).setattr(name, value);
    });
    error
}
