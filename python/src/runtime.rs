//! One tokio runtime per process, and running client futures with the GIL released.
//!
//! Work runs on the calling thread without the GIL (the tasks it starts on the runtime's
//! workers), coming back every 100 ms to let Python handle signals. On Ctrl-C, [`run`] drops
//! the work (reads and metadata calls: nothing to undo) and raises KeyboardInterrupt.
//! [`run_cancellable`] instead cancels the work's token and waits for it to stop: a write
//! aborts its batches if its commit was not sent yet, and otherwise settles the commit first,
//! so the KeyboardInterrupt says truthfully whether anything was committed.

use crate::errors;
use batchstore_client::{CancellationToken, ClientError};
use pyo3::prelude::*;
use std::future::Future;
use std::time::Duration;

pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    batchstore_client::runtime::shared().map_err(errors::Error::new_err)
}

/// Runs `work` to completion on the runtime without holding the GIL; Ctrl-C drops it.
///
/// # Errors
/// The work's own error as a Python exception, or KeyboardInterrupt on Ctrl-C.
pub fn run<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: Future<Output = Result<T, ClientError>> + Send,
    T: Send,
{
    let runtime = runtime()?;
    // Dropped (on Ctrl-C) inside the runtime's context, as its resources expect.
    let _context = runtime.enter();
    let mut work = std::pin::pin!(work);
    loop {
        match wait(py, runtime, work.as_mut()) {
            Some(result) => return result.map_err(errors::to_py),
            None => py.check_signals()?,
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
    F: Future<Output = Result<T, ClientError>> + Send,
    T: Send,
{
    let runtime = runtime()?;
    let _context = runtime.enter();
    let mut work = std::pin::pin!(work);
    loop {
        match wait(py, runtime, work.as_mut()) {
            Some(Err(ClientError::Cancelled { committed, message })) => {
                return Err(errors::interrupted(message, &committed));
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

/// Polls the work on this thread, without the GIL, for up to 100 ms; `None` while it still
/// runs. The work runs here rather than on a worker: handing it to a worker and waking this
/// thread again when it ends cost two thread switches per call, a good part of a tiny call.
fn wait<F: Future + Send>(
    py: Python<'_>,
    runtime: &tokio::runtime::Runtime,
    work: std::pin::Pin<&mut F>,
) -> Option<F::Output>
where
    F::Output: Send,
{
    py.detach(|| {
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), work)
                .await
                .ok()
        })
    })
}
