//! A TCP proxy on loopback that injects faults into the replies of the service behind it: with
//! a given probability, a chunk of the server's reply is dropped together with the connection
//! (the client sees a reset or EOF mid-reply). Requests are forwarded untouched, so the server
//! may well have done what was asked: exactly the "unknown outcome" a client must settle.
//! Faults are drawn from a seeded generator, so a run can be repeated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub address: String,
    cuts: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies `upstream` (HOST:PORT), cutting a reply chunk and its connection with
    /// probability `per_mille`/1000, drawn from `seed`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(upstream: &str, per_mille: u64, seed: u64) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let cuts = Arc::new(AtomicU64::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let rng = Arc::new(AtomicU64::new(seed | 1));
        let upstream = upstream.to_owned();
        let (cuts_in, armed_in) = (cuts.clone(), armed.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                tokio::spawn(relay(
                    client,
                    server,
                    per_mille,
                    rng.clone(),
                    cuts_in.clone(),
                    armed_in.clone(),
                ));
            }
        });
        Ok(FaultProxy {
            address,
            cuts,
            armed,
            task,
        })
    }

    /// `http://HOST:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// How many replies were cut so far.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Stops (or resumes) injecting faults.
    pub fn set_armed(&self, armed: bool) {
        self.armed.store(armed, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// xorshift64*: a small, seeded, thread-safe source of faults.
fn draw(rng: &AtomicU64) -> u64 {
    let mut x = rng.load(Ordering::Relaxed);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng.store(x, Ordering::Relaxed);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    per_mille: u64,
    rng: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let replies = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // The connection preface and settings are small; cut only chunks that can carry
            // a reply, so that connections can be made at all.
            if armed.load(Ordering::SeqCst) && n > 40 && draw(&rng) % 1000 < per_mille {
                cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        () = requests => {},
        () = replies => {},
    }
}
