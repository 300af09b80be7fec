//! One tokio runtime per R session, and running client work on it from R's main thread.
//!
//! R is single-threaded: only the main thread may touch R objects. Network and storage work
//! runs on the runtime's worker threads while the main thread waits in 100 ms slices and asks
//! R whether the user pressed Ctrl-C (or Esc). An interrupt drops a read or metadata call. A
//! write is cancelled through its token instead and waited for: it aborts its batches if its
//! commit was not sent yet, and otherwise settles the commit first, so the condition says
//! truthfully whether anything was committed.

use crate::errors::BindingError;
use crate::host;
use crate::progress::Counter;
use batchstore_client::CancellationToken;
use std::future::Future;
use std::time::Duration;

fn runtime() -> Result<&'static tokio::runtime::Runtime, BindingError> {
    host::without_sigpipe(batchstore_client::runtime::shared).map_err(BindingError::Internal)
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
    run_showing(work, None, None)
}

/// As [`run`], printing `progress` on the console while the work goes on; with `cancel`, an
/// interrupt cancels the token and the work is waited for (see the module docs).
///
/// # Errors
/// As [`run`].
pub fn run_showing<T, E, F>(
    work: F,
    progress: Option<&Counter>,
    cancel: Option<&CancellationToken>,
) -> Result<T, BindingError>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BindingError> + Send + 'static,
{
    let runtime = runtime()?;
    let mut handle = runtime.spawn(work);
    let outcome = loop {
        let finished = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), &mut handle)
                .await
                .ok()
        });
        match finished {
            Some(Ok(result)) => break result.map_err(Into::into),
            Some(Err(join)) => {
                break Err(BindingError::Internal(format!(
                    "the operation failed: {join}"
                )));
            }
            None => {
                if cancel.is_some_and(CancellationToken::is_cancelled) {
                    // Interrupted already: the work is settling; wait for its account.
                } else if host::pending() {
                    if let Some(cancel) = cancel {
                        cancel.cancel();
                        continue;
                    }
                    handle.abort();
                    // Wait for the cancelled task to unwind so its abort guard has run.
                    let _ = runtime.block_on(handle);
                    break Err(BindingError::Cancelled);
                }
                if let Some(progress) = progress {
                    progress.show();
                }
            }
        }
    };
    if let Some(progress) = progress {
        progress.finish();
    }
    outcome
}
