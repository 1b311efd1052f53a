//! The client library behind the `redcloud` command, also used by tests and
//! benchmarks: connects to any reachable controller (failing over between the
//! addresses a name resolves to) and streams files in and out, verifying SHA-256.

pub mod client;
pub mod error;
pub mod health;
pub mod human;
pub mod ingest;
pub mod session;
pub mod walk;

pub use client::{Client, FileInfo};
pub use error::ClientError;
pub use redcloud_proto::controller as pb;

/// The controllers' gRPC port, used when an address carries no port.
pub const CONTROLLER_GRPC_PORT: u16 = 8700;
