//! JSON messages of the internal HTTP routes (`/internal/...`), shared by the nodes
//! that send and receive them.

use serde::{Deserialize, Serialize};

/// `POST /internal/chunkserver/heartbeat`: a chunkserver announcing itself and its
/// usage to a controller. Sent every heartbeat interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: crate::NodeId,
    /// Where the chunkserver's gRPC service is reached (`host:port`).
    pub grpc_addr: String,
    /// Where its HTTP `/health` and `/metrics` are reached (`host:port`).
    pub http_addr: String,
    /// Size of the file system holding the chunks.
    pub capacity_bytes: u64,
    /// Space still free on that file system.
    pub free_bytes: u64,
    /// Bytes of chunk data stored.
    pub used_bytes: u64,
    pub chunk_count: u64,
    /// Corrupt copies found (by reads or scrub) and removed since the node started.
    #[serde(default)]
    pub corrupt_found: u64,
}

/// The controller's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub controller_id: crate::NodeId,
    /// HTTP addresses of every controller the answering one knows, so chunkservers
    /// report to controllers their configured names do not reach.
    #[serde(default)]
    pub controllers: Vec<String>,
}

/// `GET /health` on any node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub node_id: crate::NodeId,
    pub role: String,
}
