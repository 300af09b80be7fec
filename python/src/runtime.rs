//! One tokio runtime per process, and running client futures with the GIL released.
//!
//! Work runs on the runtime while the calling thread waits without the GIL, waking every
//! 100 ms to let Python handle signals: Ctrl-C cancels the call (a write not yet committed is
//! aborted, so the partition stays as it was) and raises KeyboardInterrupt.

use crate::errors;
use batchstore_client::ClientError;
use pyo3::prelude::*;
use std::future::Future;
use std::time::Duration;

fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    batchstore_client::runtime::shared().map_err(errors::Error::new_err)
}

/// Runs `work` to completion on the runtime without holding the GIL.
///
/// # Errors
/// The work's own error as a Python exception, or KeyboardInterrupt on Ctrl-C.
pub fn run<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: Future<Output = Result<T, ClientError>> + Send + 'static,
    T: Send + 'static,
{
    let runtime = runtime()?;
    let mut handle = runtime.spawn(work);
    loop {
        let finished = py.detach(|| {
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), &mut handle)
                    .await
                    .ok()
            })
        });
        match finished {
            Some(Ok(result)) => return result.map_err(errors::to_py),
            Some(Err(join)) => {
                return Err(errors::Error::new_err(format!(
                    "the operation failed: {join}"
                )));
            }
            None => {
                if let Err(interrupt) = py.check_signals() {
                    handle.abort();
                    return Err(interrupt);
                }
            }
        }
    }
}
