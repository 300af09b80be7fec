//! One tokio runtime per process, for front ends that call the client from synchronous code
//! (the Python and R packages): started on first use, its worker threads shared by every call.

use std::sync::OnceLock;

/// The cores this process may use, read once: `std::thread::available_parallelism` reads the
/// cgroup files again on every call, a dozen system calls per write.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// The process's runtime.
///
/// # Errors
/// Why the runtime could not be started (for example, no threads could be spawned).
pub fn shared() -> Result<&'static tokio::runtime::Runtime, String> {
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
        .map_err(|e| format!("cannot start the batchstore runtime: {e}"))
}
