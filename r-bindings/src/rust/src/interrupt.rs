//! Asking R whether the user has asked to interrupt (Ctrl-C, Esc in RStudio).
//!
//! `R_CheckUserInterrupt` would long-jump straight out through Rust frames, which is undefined
//! behaviour; `src/entrypoint.c` runs it under `R_ToplevelExec`, which catches the jump and
//! reports it as a return value. This is the crate's only `unsafe`: one call into that helper.

#[allow(unsafe_code)]
mod ffi {
    unsafe extern "C" {
        /// Defined in `src/entrypoint.c`: 1 when an interrupt was pending (and is now consumed).
        pub(super) fn batchstore_interrupt_pending() -> std::os::raw::c_int;
    }

    pub(super) fn pending() -> bool {
        // SAFETY: the helper takes no arguments, touches no Rust memory, and is only called
        // from R's main thread (the thread running every extendr entry point).
        unsafe { batchstore_interrupt_pending() != 0 }
    }
}

/// True when the user interrupted since the last check.
pub fn pending() -> bool {
    ffi::pending()
}
