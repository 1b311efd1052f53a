//! The controller's domain records, as stored in SQLite.

use redcloud_common::replication::Version;
use redcloud_common::{ChunkId, FileId, NodeId};

use crate::records::FileBody;

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
    pub meta: Version,
}

impl FileRecord {
    pub fn body(&self) -> FileBody {
        FileBody {
            owner: self.owner.clone(),
            name: self.name.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            chunk_size: self.chunk_size,
            chunk_count: self.chunk_count,
            public: self.public,
            created_at_ms: self.created_at_ms,
        }
    }
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

/// The owner of books stored before accounts existed: readable by everyone,
/// writable by nobody (uploads and deletes need an account).
pub const ANONYMOUS: &str = "anonymous";

/// One version of a name, as `redcloud versions` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub file: FileRecord,
    /// The version `download NAME` returns.
    pub current: bool,
}
