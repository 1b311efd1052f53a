//! Pure types and rules shared by every RedCloud crate.
//!
//! Architecture invariant: nothing here knows about gRPC, SQLite or a particular
//! node's state. The I/O helpers ([`http`], [`discovery`]) are thin, stateless
//! wrappers that the node crates drive.

pub mod chunking;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod hash;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod net;
pub mod replication;
pub mod shutdown;
pub mod wire;

pub use clock::{Causality, Hlc, HlcTimestamp, VectorClock};
pub use hash::Sha256Hex;
pub use ids::{ChunkId, FileId, IdError, NodeId};

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
