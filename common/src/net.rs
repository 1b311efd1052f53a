//! Socket helpers shared by the gRPC servers.

use futures_core::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

/// Accepted connections with `TCP_NODELAY` set. tonic applies its own `tcp_nodelay`
/// only to listeners it binds itself; without this, small responses on a listener
/// we bound wait out Nagle's algorithm against delayed ACKs (~40 ms each).
pub fn incoming_nodelay(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|r| {
        r.inspect(|s| {
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
        })
    })
}

/// The two listening sockets every node has: gRPC and HTTP.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds both addresses; the error names the address that failed.
    pub async fn bind(grpc: &str, http: &str) -> Result<Self, (String, std::io::Error)> {
        let bind = |addr: &str| {
            let addr = addr.to_string();
            async move { TcpListener::bind(&addr).await.map_err(|e| (addr, e)) }
        };
        Ok(Listeners {
            grpc: bind(grpc).await?,
            http: bind(http).await?,
        })
    }
}
