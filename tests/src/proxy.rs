//! A TCP proxy on loopback that injects faults into the replies of the service behind it, with
//! a given probability per reply chunk ([`Fault`]): a chunk dropped together with the
//! connection (the client sees a reset or EOF mid-reply), a reply message that ends early but
//! cleanly, or one whose length prefix is garbled (the client's own gRPC layer then fails to
//! decode it). Requests are forwarded
//! untouched, so the server may well have done what was asked: exactly the "unknown outcome"
//! a client must settle. Faults are drawn from a seeded generator, so a run can be repeated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the proxy breaks a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A chunk of the reply is dropped with the connection.
    Cut,
    /// An HTTP/2 DATA frame of a reply is shortened and marked as the end of its stream, then
    /// the connection closes: a reply message cut short without any transport error, as a
    /// proxy resetting the stream with NO_ERROR leaves it.
    Truncate,
    /// The length prefix of a reply's gRPC message is overwritten (the client's gRPC layer
    /// reports OUT_OF_RANGE: a message too large), then the connection closes: a reply
    /// garbled in transit.
    Garble,
}

/// How [`FaultProxy::block`] cuts clients off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Connections flow.
    Open,
    /// Clients lose their connections and cannot make new ones, while the server's side of
    /// each connection is kept open and its replies read and dropped: requests in flight are
    /// carried out, and their replies lost.
    LoseReplies,
    /// Both sides of every connection close: the server gives up requests in flight.
    Close,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub address: String,
    cuts: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    block: tokio::sync::watch::Sender<Block>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies `upstream` (HOST:PORT), cutting a reply chunk and its connection with
    /// probability `per_mille`/1000, drawn from `seed`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(upstream: &str, per_mille: u64, seed: u64) -> anyhow::Result<Self> {
        Self::start_with(upstream, Fault::Cut, per_mille, seed).await
    }

    /// Proxies `upstream` (HOST:PORT), breaking a reply the way `fault` says with
    /// probability `per_mille`/1000 per chunk (per reply's first DATA frame for
    /// [`Fault::Truncate`] and [`Fault::Garble`]), drawn from `seed`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start_with(
        upstream: &str,
        fault: Fault,
        per_mille: u64,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let cuts = Arc::new(AtomicU64::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let upstream = upstream.to_owned();
        let (block, blocked) = tokio::sync::watch::channel(Block::Open);
        let faults = Faults {
            fault,
            per_mille,
            rng: Arc::new(AtomicU64::new(seed | 1)),
            cuts: cuts.clone(),
            armed: armed.clone(),
            blocked,
        };
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *faults.blocked.borrow() != Block::Open {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                tokio::spawn(relay(client, server, faults.clone()));
            }
        });
        Ok(FaultProxy {
            address,
            cuts,
            armed,
            block,
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

    /// Cuts clients off as `block` says, or lets them connect again ([`Block::Open`]).
    pub fn block(&self, block: Block) {
        self.block.send_replace(block);
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

/// What every connection's relay shares with its proxy.
#[derive(Clone)]
struct Faults {
    fault: Fault,
    per_mille: u64,
    rng: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    blocked: tokio::sync::watch::Receiver<Block>,
}

async fn relay(client: TcpStream, server: TcpStream, faults: Faults) {
    let Faults {
        fault,
        per_mille,
        rng,
        cuts,
        armed,
        mut blocked,
    } = faults;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let strike = || {
        let struck = armed.load(Ordering::SeqCst) && draw(&rng) % 1000 < per_mille;
        if struck {
            cuts.fetch_add(1, Ordering::SeqCst);
        }
        struck
    };
    let replies = async {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut frames = Frames::default();
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (out, stop) = match fault {
                // The connection preface and settings are small; cut only chunks that can
                // carry a reply, so that connections can be made at all.
                Fault::Cut if n > 40 && strike() => return,
                Fault::Cut => (buffer[..n].to_vec(), false),
                Fault::Truncate | Fault::Garble => frames.pass(fault, &buffer[..n], strike),
            };
            if client_write.write_all(&out).await.is_err() || stop {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    let block = tokio::select! {
        () = requests => return,
        () = replies => return,
        block = blocked.wait_for(|b| *b != Block::Open) => match block {
            Ok(block) => *block,
            Err(_) => Block::Close,
        },
    };
    drop((client_read, client_write));
    if block == Block::LoseReplies {
        let mut sink = tokio::io::sink();
        let drained = tokio::io::copy(&mut server_read, &mut sink);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drained).await;
    }
}

/// The server's side of an HTTP/2 connection, frame by frame (9-byte header: 24-bit length,
/// type, flags, 31-bit stream id).
#[derive(Default)]
struct Frames {
    pending: Vec<u8>,
    /// Streams whose reply data began (a message's length prefix is in its first DATA frame).
    begun: std::collections::HashSet<u32>,
}

impl Frames {
    const DATA: u8 = 0x0;
    const END_STREAM: u8 = 0x1;
    const PADDED: u8 = 0x8;

    /// The bytes to pass on for `chunk`, whole frames only. When `strike` picks the first DATA
    /// frame of a reply, carrying more than a gRPC message header, it is broken as `fault`
    /// says, and `true` says to close the connection after it.
    fn pass(
        &mut self,
        fault: Fault,
        chunk: &[u8],
        mut strike: impl FnMut() -> bool,
    ) -> (Vec<u8>, bool) {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut at = 0;
        while self.pending.len() - at >= 9 {
            let header = &self.pending[at..at + 9];
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let end = at + 9 + length;
            if self.pending.len() < end {
                break;
            }
            let (kind, flags) = (header[3], header[4]);
            let stream =
                u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & !(1 << 31);
            let first = kind == Self::DATA && self.begun.insert(stream);
            if first && flags & Self::PADDED == 0 && length > 5 && strike() {
                if fault == Fault::Garble {
                    let mut frame = self.pending[at..end].to_vec();
                    frame[10..14].copy_from_slice(&0x7fff_fff0_u32.to_be_bytes());
                    out.extend_from_slice(&frame);
                } else {
                    let kept = 1 + (length - 1) / 2;
                    let kept_bytes = (kept as u32).to_be_bytes();
                    out.extend_from_slice(&kept_bytes[1..]);
                    out.extend_from_slice(&[kind, flags | Self::END_STREAM]);
                    out.extend_from_slice(&self.pending[at + 5..at + 9 + kept]);
                }
                self.pending.clear();
                return (out, true);
            }
            out.extend_from_slice(&self.pending[at..end]);
            at = end;
        }
        self.pending.drain(..at);
        (out, false)
    }
}
