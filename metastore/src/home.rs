//! Serving a local home: the metastore a client starts on demand when no metastore is
//! configured, so one person on one machine needs no server to start.
//!
//! The home is a directory (`BATCHSTORE_HOME`, chosen by the client) holding a SQLite catalog,
//! a warehouse and a Unix socket (layout: `batchstore_proto::wire::home`). One server serves a
//! home at a time: it holds the home's server lock for as long as it runs, so every process of
//! the user shares one catalog through one server, and the catalog's single-writer rules hold
//! as they do for `metastore serve`. The socket is reachable only by the user (the directory
//! is private), so no credentials are needed. The server exits once no client has been
//! connected for the idle time, and removes its socket before it lets go of the lock.

use crate::cli::ServeArgs;
use crate::server::{Listener, serve, shutdown_signal};
use anyhow::Context;
use batchstore_proto::wire::home::{CATALOG, HOME_ENV, IDLE_ENV, SERVER_LOCK, SOCKET, WAREHOUSE};
use futures::Stream;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};

/// Idle time before the server exits when `BATCHSTORE_IDLE_SECONDS` is unset.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// How long a starting server waits for a previous one to finish stopping.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Serves the home named by `BATCHSTORE_HOME` with `metastore serve`'s defaults (and its
/// `BATCHSTORE_*` variables), blocking until it is idle or told to stop. The entry point of
/// front ends that start the server by running themselves again (Python, R, tablectl).
///
/// # Errors
/// When the home cannot be used, another server keeps it, or serving fails.
pub fn serve_home() -> anyhow::Result<()> {
    crate::cli::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async { serve_home_with(ServeArgs::parse_with(&[])?).await })
}

/// Serves the home named by `BATCHSTORE_HOME` with `args` (`metastore serve-home`).
///
/// # Errors
/// As [`serve_home`].
pub async fn serve_home_with(mut args: ServeArgs) -> anyhow::Result<()> {
    let home = std::env::var_os(HOME_ENV)
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("BATCHSTORE_HOME names no home to serve")?;
    let idle = std::env::var(IDLE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_IDLE, Duration::from_secs);
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let lock = File::create(home.join(SERVER_LOCK)).context("opening the server lock")?;
    let lock = tokio::task::spawn_blocking(move || take_lock(lock)).await??;

    args.for_home(
        format!("sqlite://{}?mode=rwc", home.join(CATALOG).display()),
        home.join(WAREHOUSE).display().to_string(),
    );
    let options = args.options()?;

    let socket = home.join(SOCKET);
    // A socket left by a server that died: no server holds the lock, so nobody serves it.
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    restrict(&socket)?;
    let activity = Arc::new(Activity::new());
    let incoming = Incoming {
        listener,
        activity: activity.clone(),
    };
    let stop = async move {
        tokio::select! {
            () = activity.idle_for(idle) => tracing::info!(?idle, "no client connected: stopping"),
            () = shutdown_signal() => {}
        }
    };
    let served = serve(options, Listener::Home(incoming), stop).await;
    let _ = std::fs::remove_file(&socket);
    drop(lock);
    served
}

/// Takes the server lock, waiting for a server that is still stopping.
fn take_lock(lock: File) -> anyhow::Result<File> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                anyhow::bail!("another metastore is serving this home")
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).context("taking the server lock");
            }
        }
    }
}

/// Only the user may connect.
fn restrict(socket: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", socket.display()))
}

/// Connected clients, and since when there has been none.
struct Activity {
    connected: AtomicUsize,
    since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            connected: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
        }
    }

    fn touch(&self) {
        if let Ok(mut since) = self.since.lock() {
            *since = Instant::now();
        }
    }

    /// Resolves once no client has been connected for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            tokio::time::sleep(Duration::from_millis(250).min(idle)).await;
            let quiet = self
                .since
                .lock()
                .map(|since| since.elapsed())
                .unwrap_or_default();
            if self.connected.load(Ordering::SeqCst) == 0 && quiet >= idle {
                return;
            }
        }
    }
}

/// A client's connection, counted while it is open.
pub struct Tracked {
    stream: UnixStream,
    activity: Arc<Activity>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.activity.connected.fetch_sub(1, Ordering::SeqCst);
        self.activity.touch();
    }
}

impl tonic::transport::server::Connected for Tracked {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The connections accepted on a home's socket.
pub struct Incoming {
    listener: UnixListener,
    activity: Arc<Activity>,
}

impl Stream for Incoming {
    type Item = std::io::Result<Tracked>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        match self.listener.poll_accept(cx) {
            Poll::Ready(Ok((stream, _))) => {
                self.activity.connected.fetch_add(1, Ordering::SeqCst);
                self.activity.touch();
                Poll::Ready(Some(Ok(Tracked {
                    stream,
                    activity: self.activity.clone(),
                })))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}
