//! One tokio runtime per R session, and running client work on it from R's main thread.
//!
//! R is single-threaded: only the main thread may touch R objects. Network and storage work
//! runs on the runtime's worker threads while the main thread waits in 100 ms slices and asks
//! R whether the user pressed Ctrl-C (or Esc). An interrupt cancels the work: a write that is
//! not committed yet is aborted, so the partition stays as it was.

use crate::errors::BindingError;
use crate::interrupt;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

fn runtime() -> Result<&'static tokio::runtime::Runtime, BindingError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("batchstore")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| BindingError::Internal(format!("cannot start the batchstore runtime: {e}")))
}

/// Runs `work` to completion, or until the user interrupts.
///
/// # Errors
/// The work's own error, or `Cancelled` on an interrupt.
pub fn run<T, E, F>(work: F) -> Result<T, BindingError>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BindingError> + Send + 'static,
{
    let runtime = runtime()?;
    let mut handle = runtime.spawn(work);
    loop {
        let finished = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), &mut handle)
                .await
                .ok()
        });
        match finished {
            Some(Ok(result)) => return result.map_err(Into::into),
            Some(Err(join)) => {
                return Err(BindingError::Internal(format!(
                    "the operation failed: {join}"
                )));
            }
            None => {
                if interrupt::pending() {
                    handle.abort();
                    // Wait for the cancelled task to unwind so its abort guard has run.
                    let _ = runtime.block_on(handle);
                    return Err(BindingError::Cancelled);
                }
            }
        }
    }
}
