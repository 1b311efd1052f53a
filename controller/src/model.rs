//! The controller's domain records, as stored in SQLite.

use redcloud_common::{ChunkId, FileId, HlcTimestamp, NodeId, VectorClock};

/// Replication metadata carried by every replicated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta {
    pub vclock: VectorClock,
    pub hlc: HlcTimestamp,
    /// The node that made this version of the row.
    pub origin: NodeId,
    /// A tombstone: the row is deleted, and the deletion replicates.
    pub deleted: bool,
}

/// One version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub file_id: FileId,
    pub owner: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub chunk_size: u64,
    pub chunk_count: u32,
    pub public: bool,
    pub created_at_ms: u64,
    pub meta: RowMeta,
}

/// One chunk of a file version, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    pub index: u32,
    pub chunk_id: ChunkId,
    pub size: u64,
}

/// A chunkserver as last registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkserverRecord {
    pub node_id: NodeId,
    pub grpc_addr: String,
    pub http_addr: String,
}

/// The owner of files uploaded without an account (accounts arrive with §5).
pub const ANONYMOUS: &str = "anonymous";
