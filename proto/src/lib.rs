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

/// The largest gRPC message any RedCloud server or client accepts or sends.
///
/// Data messages carry at most [`MAX_DATA_MESSAGE`] bytes; the rest is headroom for
/// framing. Anything bigger is refused by tonic with `OUT_OF_RANGE` before it is
/// buffered, so an oversized message cannot exhaust memory.
pub const MAX_MESSAGE_BYTES: usize = MAX_DATA_MESSAGE + 64 * 1024;

/// The most file or chunk bytes one streamed message carries.
pub const MAX_DATA_MESSAGE: usize = 4 * 1024 * 1024;
