//! Socket helpers shared by the gRPC servers.

use tokio::net::TcpListener;

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
