//! A configuration file that is read again when it changes, without a restart: the token file
//! and the JWKS file. The file is re-read at most once per [`CHECK_EVERY`] (they are small); a
//! version that does not parse is logged and the last good one stays in force, so a typo while
//! editing never locks everyone out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a file is looked at again.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The largest configuration file read (a token file of ~50,000 principals).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

pub(super) type Parse<T> = fn(&str) -> Result<T, String>;

pub(super) struct Watched<T> {
    path: PathBuf,
    parse: Parse<T>,
    state: Mutex<State<T>>,
}

struct State<T> {
    value: Arc<T>,
    bytes: Vec<u8>,
    checked: Instant,
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").field("path", &self.path).finish()
    }
}

impl<T> Watched<T> {
    /// Reads and parses the file; at start an unreadable or invalid file is an error.
    pub(super) fn open(path: &Path, parse: Parse<T>) -> Result<Self, String> {
        let bytes = read(path)?;
        let value = parse(&String::from_utf8_lossy(&bytes))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Watched {
            path: path.to_owned(),
            parse,
            state: Mutex::new(State {
                value: Arc::new(value),
                bytes,
                checked: Instant::now(),
            }),
        })
    }

    /// The value in force, re-read first when the last look is older than [`CHECK_EVERY`]
    /// (or older than `at_most` when given, for a caller that has reason to think it changed).
    pub(super) fn current(&self, at_most: Option<Duration>) -> Arc<T> {
        // A poisoned lock only means a panic elsewhere; no value is ever half-written.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() < at_most.unwrap_or(CHECK_EVERY) {
            return state.value.clone();
        }
        state.checked = Instant::now();
        match read(&self.path) {
            Ok(bytes) if bytes == state.bytes => {}
            Ok(bytes) => match (self.parse)(&String::from_utf8_lossy(&bytes)) {
                Ok(value) => {
                    tracing::info!(path = %self.path.display(), "reloaded");
                    state.value = Arc::new(value);
                    state.bytes = bytes;
                }
                Err(error) => {
                    tracing::error!(path = %self.path.display(), %error,
                        "the changed file does not parse; the previous version stays in force");
                    state.bytes = bytes;
                }
            },
            Err(error) => {
                tracing::error!(%error, "the previous version stays in force");
            }
        }
        state.value.clone()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_BYTES {
        return Err(format!(
            "{} has {} bytes, more than the {MAX_BYTES} a configuration file may have",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
