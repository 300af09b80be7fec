//! Errors of the R bindings, and the one place they become something R can raise.
//!
//! Entry points never throw from Rust (a throw long-jumps over Rust frames). They return an
//! error *value*: a list `(kind, message)` of class `batchstore_native_error`, which the R
//! side (`R/errors.R`) turns into a condition of class `batchstore_<kind>`, inheriting
//! `batchstore_error`. A conflict also carries `current_batch_id`, a not-found `what` and
//! `name`.

use batchstore_client::ClientError;
use extendr_api::prelude::*;
use thiserror::Error;

/// Why a call from R failed.
#[derive(Debug, Error)]
pub enum BindingError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An argument or a column R passed cannot be used.
    #[error("{0}")]
    InvalidArgument(String),
    /// Data came back that cannot be given to R.
    #[error("{0}")]
    Data(String),
    #[error("interrupted; nothing was committed")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<arrow_schema::ArrowError> for BindingError {
    fn from(error: arrow_schema::ArrowError) -> Self {
        BindingError::Data(format!("Arrow error: {error}"))
    }
}

impl From<extendr_api::Error> for BindingError {
    fn from(error: extendr_api::Error) -> Self {
        BindingError::Internal(format!("R object error: {error}"))
    }
}

impl BindingError {
    /// The kind, as the R condition class names it (`batchstore_<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            BindingError::Client(ClientError::Cancelled { .. }) | BindingError::Cancelled => {
                "cancelled"
            }
            BindingError::Client(error) => error.kind(),
            BindingError::InvalidArgument(_) => "invalid_argument",
            BindingError::Data(_) => "data",
            BindingError::Internal(_) => "internal",
        }
    }
}

pub type Outcome<T> = std::result::Result<T, BindingError>;

/// The value an entry point returns: the result, or the error as a `batchstore_native_error`.
pub fn to_r(outcome: Outcome<Robj>) -> Robj {
    match outcome {
        Ok(value) => value,
        Err(error) => {
            let text = |t: Option<&str>| t.map_or_else(|| Robj::from(()), Robj::from);
            let (current_batch_id, what, name) = match &error {
                BindingError::Client(ClientError::Conflict {
                    current_batch_id, ..
                }) => (text(current_batch_id.as_deref()), text(None), text(None)),
                BindingError::Client(ClientError::NotFound { what, name, .. }) => (
                    text(None),
                    text(what.map(|w| w.as_str())),
                    text(name.as_deref()),
                ),
                _ => (text(None), text(None), text(None)),
            };
            // What an interrupted write committed (its commit had been sent): batch ids.
            let committed: Robj = match &error {
                BindingError::Client(ClientError::Cancelled { committed, .. }) => committed
                    .iter()
                    .map(|c| c.batch_id.as_str())
                    .collect::<Vec<_>>()
                    .into(),
                BindingError::Cancelled => Vec::<String>::new().into(),
                _ => ().into(),
            };
            let mut value: Robj = list!(
                kind = error.kind(),
                message = error.to_string(),
                current_batch_id = current_batch_id,
                what = what,
                name = name,
                committed = committed
            )
            .into();
            match value.set_class(["batchstore_native_error"]) {
                Ok(_) => value,
                Err(_) => error.to_string().into(),
            }
        }
    }
}
