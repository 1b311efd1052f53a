//! A TCP proxy whose connections can be made to die silently: after `freeze`, every
//! connection it already carries stops forwarding in both directions but stays open
//! (no FIN, no RST), as when the path under a connection goes away (a container
//! moved to another network). Connections made after `freeze` work normally.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Stops (closing every connection) when dropped.
pub struct FreezableProxy {
    addr: SocketAddr,
    target: Arc<std::sync::OnceLock<SocketAddr>>,
    generation: Arc<AtomicU64>,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl FreezableProxy {
    /// Listens on a free loopback port; connections are forwarded to the address
    /// given to `forward_to` (refused until then).
    pub async fn start() -> FreezableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let generation = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let target = Arc::new(std::sync::OnceLock::new());
        let (g, a, s, t) = (
            generation.clone(),
            accepted.clone(),
            stop.clone(),
            target.clone(),
        );
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = s.cancelled() => return,
                    c = listener.accept() => c,
                };
                let Ok((inbound, _)) = conn else { continue };
                let Some(&target) = t.get() else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let born = g.load(Ordering::SeqCst);
                let (g, s) = (g.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::select! {
                        _ = s.cancelled() => {}
                        _ = pump(ir, ow, born, g.clone()) => {}
                        _ = pump(or, iw, born, g) => {}
                    }
                });
            }
        });
        FreezableProxy {
            addr,
            target,
            generation,
            accepted,
            stop,
        }
    }

    /// Sets where connections go (once; later calls are ignored).
    pub fn forward_to(&self, target: SocketAddr) {
        let _ = self.target.set(target);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every connection open now goes silent for good; later ones are unaffected.
    pub fn freeze(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Copies `from` to `to` until either closes; once the proxy is frozen after this
/// connection was born, holds both open and forwards nothing more.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    born: u64,
    generation: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if generation.load(Ordering::SeqCst) > born {
            // Keep both halves (and so the socket) open, silently.
            let _held = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
