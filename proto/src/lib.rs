//! RedCloud's gRPC contract: the generated code for `proto/redcloud/v1/*.proto`.
//!
//! Architecture invariant: generated types stop at the service handlers. Every handler
//! converts its request into domain types (from `redcloud-common`) with the helpers in
//! [`convert`], rejecting missing or malformed fields with `INVALID_ARGUMENT`, and the
//! storage and placement code never sees a generated type.

#![allow(clippy::unwrap_used, rust_2018_idioms)]

/// The client API (`redcloud.v1`), served by controllers.
pub mod controller {
    tonic::include_proto!("redcloud.v1");
}

/// The chunk API (`redcloud.chunk.v1`), served by chunkservers.
pub mod chunk {
    tonic::include_proto!("redcloud.chunk.v1");
}

pub mod chunk_client;
pub mod convert;
pub mod incoming;

/// The largest gRPC message any RedCloud server or client accepts or sends.
///
/// Data messages carry at most [`MAX_DATA_MESSAGE`] bytes; the rest is headroom for
/// framing. Anything bigger is refused by tonic with `OUT_OF_RANGE` before it is
/// buffered, so an oversized message cannot exhaust memory.
pub const MAX_MESSAGE_BYTES: usize = MAX_DATA_MESSAGE + 64 * 1024;

/// The most file or chunk bytes one streamed message carries.
pub const MAX_DATA_MESSAGE: usize = 4 * 1024 * 1024;

/// The most streams one client connection may have open at once (HTTP/2
/// `SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// The most requests one connection has served at once; more wait.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 256;

/// Largest HTTP/2 frame a node or client accepts (SETTINGS_MAX_FRAME_SIZE): a
/// 1 MiB chunk goes as 4 DATA frames rather than 64 of the default 16 KiB.
pub const MAX_FRAME_SIZE: u32 = 256 * 1024;

/// The gRPC server settings every node uses: flow-control windows sized for chunk
/// traffic, bounded streams and in-flight requests per connection, and HTTP/2
/// keepalive pings, so a connection whose peer froze or vanished is dropped; a
/// debug-level tracing span per request.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_REQUESTS_PER_CONNECTION)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        // A span per request at debug level (`RUST_LOG=debug`, or
        // `redcloud_proto=debug`): events logged while serving carry the method.
        .trace_fn(|req| tracing::debug_span!("grpc", method = %req.uri().path()))
}
