//! The gRPC servers' accepted connections: `TCP_NODELAY` set, and at most
//! [`MAX_CONNECTIONS`] open at once per server. With the per-connection stream and
//! request limits of [`crate::server_builder`], that bounds what remote parties can
//! have in flight before any request is authenticated; a connection over the limit
//! waits in the listen backlog until another closes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The most gRPC connections one server holds open at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// An accepted connection holding its place among the [`MAX_CONNECTIONS`].
#[derive(Debug)]
pub struct Conn {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connections `listener` accepts, `TCP_NODELAY` set (tonic applies its own
/// `tcp_nodelay` only to listeners it binds; without it small responses wait out
/// Nagle's algorithm against delayed ACKs, ~40 ms each), at most `max` at once.
pub fn limited(listener: TcpListener, max: usize) -> impl Stream<Item = std::io::Result<Conn>> {
    let slots = Arc::new(Semaphore::new(max));
    futures::stream::unfold((listener, slots), |(listener, slots)| async move {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return None,
        };
        let r = listener.accept().await.map(|(s, _)| {
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
            Conn {
                inner: s,
                _permit: permit,
            }
        });
        Some((r, (listener, slots)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn connections_over_the_limit_wait_for_one_to_close() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut incoming = Box::pin(limited(l, 2));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let a = incoming.next().await.unwrap().unwrap();
        let _b = incoming.next().await.unwrap().unwrap();
        // The third is in the backlog: not accepted while two are held.
        let third = tokio::time::timeout(std::time::Duration::from_millis(200), incoming.next());
        assert!(third.await.is_err(), "a third connection was accepted");
        drop(a);
        let c = tokio::time::timeout(std::time::Duration::from_secs(10), incoming.next())
            .await
            .expect("accepted once one closed");
        assert!(c.unwrap().is_ok());
    }
}
