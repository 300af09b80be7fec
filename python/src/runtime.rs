//! One tokio runtime per process, and running client futures with the GIL released.
//!
//! Work runs on the runtime while the calling thread waits without the GIL, waking every
//! 100 ms to let Python handle signals. On Ctrl-C, [`run`] drops the work (reads and metadata
//! calls: nothing to undo) and raises KeyboardInterrupt. [`run_cancellable`] instead cancels
//! the work's token and waits for it to stop: a write aborts its batches if its commit was not
//! sent yet, and otherwise settles the commit first, so the KeyboardInterrupt says truthfully
//! whether anything was committed.

use crate::errors;
use batchstore_client::{CancellationToken, ClientError};
use pyo3::prelude::*;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;

fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    batchstore_client::runtime::shared().map_err(errors::Error::new_err)
}

/// Runs `work` to completion on the runtime without holding the GIL; Ctrl-C drops it.
///
/// # Errors
/// The work's own error as a Python exception, or KeyboardInterrupt on Ctrl-C.
pub fn run<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: Future<Output = Result<T, ClientError>> + Send + 'static,
    T: Send + 'static,
{
    let mut handle = runtime()?.spawn(work);
    loop {
        match wait(py, &mut handle)? {
            Some(result) => return result.map_err(errors::to_py),
            None => {
                if let Err(interrupt) = py.check_signals() {
                    handle.abort();
                    return Err(interrupt);
                }
            }
        }
    }
}

/// Runs `work` like [`run`], but Ctrl-C cancels `cancel` and waits for the work to stop by
/// itself, then raises KeyboardInterrupt with the work's own account of what happened.
///
/// # Errors
/// As [`run`].
pub fn run_cancellable<T, F>(py: Python<'_>, cancel: CancellationToken, work: F) -> PyResult<T>
where
    F: Future<Output = Result<T, ClientError>> + Send + 'static,
    T: Send + 'static,
{
    let mut handle = runtime()?.spawn(work);
    loop {
        match wait(py, &mut handle)? {
            Some(Err(ClientError::Cancelled(account))) => {
                return Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(account));
            }
            Some(result) => return result.map_err(errors::to_py),
            None => {
                if !cancel.is_cancelled() && py.check_signals().is_err() {
                    cancel.cancel();
                }
            }
        }
    }
}

/// Waits up to 100 ms for the work without the GIL; `None` while it still runs.
fn wait<T: Send + 'static>(
    py: Python<'_>,
    handle: &mut JoinHandle<Result<T, ClientError>>,
) -> PyResult<Option<Result<T, ClientError>>> {
    let runtime = runtime()?;
    let finished = py.detach(|| {
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), &mut *handle)
                .await
                .ok()
        })
    });
    match finished {
        Some(Ok(result)) => Ok(Some(result)),
        Some(Err(join)) => Err(errors::Error::new_err(format!(
            "the operation failed: {join}"
        ))),
        None => Ok(None),
    }
}
