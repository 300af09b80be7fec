//! The local home: with no metastore configured, the client starts (or joins) one for the
//! user, on SQLite with a warehouse in the user's data directory, so `store_dataframe` works
//! on a fresh machine with nothing to start first.
//!
//! The home is `BATCHSTORE_HOME`, else `$XDG_DATA_HOME/batchstore`, else
//! `~/.local/share/batchstore`. Its server listens on a Unix socket in it (layout:
//! `batchstore_proto::wire::home`). Connecting means: connect to the socket; if nothing
//! answers, take the home's start lock (one starter at a time), try again, and otherwise run
//! the front end's start command (the front end running itself as `metastore serve-home`) and
//! wait for the socket. Every (re)connection of a client's channel goes through this, so a
//! client outlives the server stopping when idle: its next call starts one again. The server
//! is detached from the caller (its own process group, output to the home's log) and reaped
//! by a thread, so nothing is left behind when it stops.

use crate::error::{ClientError, Result};
use batchstore_proto::wire::home::{HOME_ENV, LOG, SOCKET, START_LOCK};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;

/// The longest socket path the kernel takes (`sun_path` holds 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How long a client waits for the server it started to listen.
const START_WAIT: Duration = Duration::from_secs(30);

/// A local home and how to start its server.
#[derive(Debug, Clone)]
pub struct LocalHome {
    dir: PathBuf,
    /// The program and arguments that serve the home named by `BATCHSTORE_HOME`.
    start: Vec<String>,
}

impl LocalHome {
    /// The home from the environment, started with `start` when its server is not running.
    ///
    /// # Errors
    /// `InvalidArgument` when no home can be named (no `BATCHSTORE_HOME` and no `HOME`) or
    /// `start` is empty.
    pub fn from_env(start: Vec<String>) -> Result<Self> {
        if start.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no command to start a local metastore was given".into(),
            ));
        }
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = match (env(HOME_ENV), env("XDG_DATA_HOME"), env("HOME")) {
            (Some(home), _, _) => PathBuf::from(home),
            (None, Some(data), _) => PathBuf::from(data).join("batchstore"),
            (None, None, Some(user)) => PathBuf::from(user).join(".local/share/batchstore"),
            (None, None, None) => {
                return Err(ClientError::InvalidArgument(
                    "no metastore is configured and there is no home directory for a local one: \
                     set BATCHSTORE_ENDPOINT (a team's server) or BATCHSTORE_HOME (a directory)"
                        .into(),
                ));
            }
        };
        Ok(LocalHome { dir, start })
    }

    /// The home directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the home (private to the user) on first use, saying where the data lives.
    ///
    /// # Errors
    /// `Storage` when the directory cannot be created.
    pub fn prepare(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if self.dir.is_dir() {
            return self.check_private();
        }
        let failed = |e: std::io::Error| {
            ClientError::Storage(format!(
                "cannot create the local batchstore home {}: {e}",
                self.dir.display()
            ))
        };
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        // Only the process that creates the home says so, however many start at once.
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => eprintln!(
                "batchstore: no metastore configured; tables are kept in {} (set \
                 BATCHSTORE_ENDPOINT to use a team's server)",
                self.dir.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e)),
        }
        Ok(())
    }

    /// An existing home must be the user's own and closed to others for writing: its socket
    /// admits whoever can reach it, and its catalog decides what every read returns.
    fn check_private(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let refuse = |why: String| {
            ClientError::FailedPrecondition(format!(
                "the local batchstore home {} {why}; make it yours with `chmod 700`, or set \
                 BATCHSTORE_HOME to a directory of your own",
                self.dir.display()
            ))
        };
        let meta = std::fs::metadata(&self.dir).map_err(|e| self.unavailable(&e))?;
        // This process's user: the owner of its own /proc entry (Linux); elsewhere unchecked.
        if let Ok(me) = std::fs::metadata("/proc/self")
            && meta.uid() != me.uid()
        {
            return Err(refuse(format!("belongs to user {}", meta.uid())));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "can be written by other users (mode {:o})",
                meta.mode() & 0o777
            )));
        }
        Ok(())
    }

    /// A connection to the home's server, started if none runs.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be started (with the end of its log).
    pub async fn connect(&self) -> Result<UnixStream> {
        let socket = self.dir.join(SOCKET);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ClientError::InvalidArgument(format!(
                "the local batchstore home {} is too deep for its socket (Unix sockets take at \
                 most {MAX_SOCKET_PATH} bytes of path): set BATCHSTORE_HOME to a shorter path",
                self.dir.display()
            )));
        }
        self.prepare()?;
        if let Ok(stream) = UnixStream::connect(&socket).await {
            return Ok(stream);
        }
        let lock = File::create(self.dir.join(START_LOCK)).map_err(|e| self.unavailable(&e))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| ClientError::Internal(e.to_string()))?
            .map_err(|e| self.unavailable(&e))?;
        // Another process may have started it while this one waited for the lock.
        if let Ok(stream) = UnixStream::connect(&socket).await {
            return Ok(stream);
        }
        let mut child = self.spawn()?;
        let deadline = Instant::now() + START_WAIT;
        let stream = loop {
            if let Ok(stream) = UnixStream::connect(&socket).await {
                break stream;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(self.failed(&format!("it exited ({status})")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.failed("it did not listen within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        drop(lock);
        // Reaped when it stops (idle), so it leaves nothing behind.
        std::thread::spawn(move || child.wait());
        Ok(stream)
    }

    fn spawn(&self) -> Result<std::process::Child> {
        use std::os::unix::process::CommandExt;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(LOG))
            .map_err(|e| self.unavailable(&e))?;
        std::process::Command::new(&self.start[0])
            .args(&self.start[1..])
            .env(HOME_ENV, &self.dir)
            // Not the caller's directory: a Python started there could import a source tree.
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            // Its own process group: Ctrl-C in the caller's terminal is not meant for it.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                ClientError::Unavailable(format!(
                    "cannot start a local metastore ({}): {e}",
                    self.start[0]
                ))
            })
    }

    fn unavailable(&self, e: &std::io::Error) -> ClientError {
        ClientError::Unavailable(format!(
            "cannot use the local batchstore home {}: {e}",
            self.dir.display()
        ))
    }

    fn failed(&self, what: &str) -> ClientError {
        let log = std::fs::read_to_string(self.dir.join(LOG)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        ClientError::Unavailable(format!(
            "the local metastore for {} did not start: {what}; its log ({}) ends with:\n{}",
            self.dir.display(),
            self.dir.join(LOG).display(),
            tail.join("\n")
        ))
    }
}
