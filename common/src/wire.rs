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
    /// The controllers this chunkserver talks to (those that answered its
    /// heartbeats within the last hour). Chunk collection waits for every one of
    /// them, also for one no other controller has heard of yet.
    #[serde(default)]
    pub controllers: Vec<ControllerRef>,
}

/// A controller a chunkserver reports talking to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRef {
    pub node_id: crate::NodeId,
    /// Where its HTTP routes are reached (`host:port`).
    pub http_addr: String,
}

fn check_addr(what: &str, a: &str) -> Result<(), String> {
    if a.is_empty() || a.len() > 300 || a.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{what} {a:?} is not a host:port"));
    }
    Ok(())
}

impl Heartbeat {
    /// The most controllers one heartbeat may list.
    pub const MAX_CONTROLLERS: usize = 1024;

    /// Checks what a chunkserver sent before anything is taken from it.
    pub fn check(&self) -> Result<(), String> {
        check_addr("gRPC address", &self.grpc_addr)?;
        check_addr("HTTP address", &self.http_addr)?;
        if self.controllers.len() > Self::MAX_CONTROLLERS {
            return Err(format!("{} controllers listed", self.controllers.len()));
        }
        for c in &self.controllers {
            check_addr("controller address", &c.http_addr)?;
        }
        Ok(())
    }
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
