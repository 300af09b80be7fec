//! What the R process needs from C: asking R whether the user interrupted, and keeping SIGPIPE
//! away from the runtime's threads.
//!
//! `R_CheckUserInterrupt` would long-jump straight out through Rust frames, which is undefined
//! behaviour; `src/entrypoint.c` runs it under `R_ToplevelExec`, which catches the jump and
//! reports it as a return value.
//!
//! R handles SIGPIPE by raising an R error. A peer that closes a connection (a metastore that
//! refuses a TLS client certificate, say) makes the next write on it raise SIGPIPE in the
//! thread that wrote: a runtime worker, where R's handler would long-jump on a thread R does
//! not run on and wreck the session. The runtime is therefore started with SIGPIPE blocked;
//! its threads inherit the mask, and a write to a closed connection fails with EPIPE as it
//! should.
//!
//! These two calls into `src/entrypoint.c` are the crate's only `unsafe`.

#[allow(unsafe_code)]
mod ffi {
    unsafe extern "C" {
        /// 1 when an interrupt was pending (and is now consumed).
        fn batchstore_interrupt_pending() -> std::os::raw::c_int;
        /// Sets the calling thread's SIGPIPE blocked (`block` 1) or as it was before (0).
        fn batchstore_block_sigpipe(block: std::os::raw::c_int) -> std::os::raw::c_int;
    }

    pub(super) fn pending() -> bool {
        // SAFETY: the helper takes no arguments, touches no Rust memory, and is only called
        // from R's main thread (the thread running every extendr entry point).
        unsafe { batchstore_interrupt_pending() != 0 }
    }

    pub(super) fn block_sigpipe(block: bool) {
        // SAFETY: the helper only changes the calling thread's signal mask (pthread_sigmask),
        // saving and restoring it in a static only the main thread uses.
        unsafe {
            batchstore_block_sigpipe(std::os::raw::c_int::from(block));
        }
    }
}

/// True when the user interrupted since the last check.
pub fn pending() -> bool {
    ffi::pending()
}

/// Runs `start` (which may spawn the runtime's threads) with SIGPIPE blocked, so that the
/// threads it spawns never receive it.
pub fn without_sigpipe<T>(start: impl FnOnce() -> T) -> T {
    ffi::block_sigpipe(true);
    let value = start();
    ffi::block_sigpipe(false);
    value
}
