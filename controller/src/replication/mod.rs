//! Replication between controllers: push gossip, pull anti-entropy and discovery.
//! The merge rule and version-vector arithmetic are pure (`redcloud_common::replication`);
//! the row-level bookkeeping is in `db.rs`; this module moves messages. The
//! protocol is described in `docs/replication.md`.
//!
//! Protocol (HTTP POST, postcard-encoded bodies):
//! - push: `/internal/gossip/receive` carries [`Push`]: new records to a few random
//!   peers; a receiver that learned something passes it on.
//! - pull: `/internal/gossip/state-summary` carries [`Summary`] (the sender's version
//!   vector) and answers [`SummaryReply`] (the receiver's vector and what the sender
//!   lacks); the sender then pushes what the receiver lacks.
//! - discovery: `/internal/peers/register` and `GET /internal/peers` (JSON).

pub mod anti_entropy;
pub mod discovery;
pub mod gossip;
pub mod net;
pub mod peers;
pub mod tombstone_gc;

use std::time::Duration;

use redcloud_common::NodeId;
use redcloud_common::replication::VersionVector;
use serde::{Deserialize, Serialize};

use crate::db::Delta;
use crate::records::Record;

/// Longest one controller-to-controller call may take (a large delta from a busy peer).
pub const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Push: records the receiver may not have (`/internal/gossip/receive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub from: NodeId,
    /// Where the sender's HTTP routes are (so the receiver can reach it back).
    pub from_http: String,
    pub records: Vec<Record>,
    /// Writes superseded at the sender that the receiver has not seen.
    pub superseded: Vec<(NodeId, u64)>,
    /// Set when this push is a complete anti-entropy delta: the sender's vector, which
    /// the receiver reflects entirely once the records are applied.
    pub complete_from: Option<VersionVector>,
}

/// The answer to a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAck {
    /// How many of the records changed the receiver's state.
    pub applied: u32,
}

/// Pull, first leg (`/internal/gossip/state-summary`): the sender's version vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub from: NodeId,
    pub from_http: String,
    pub vector: VersionVector,
}

/// Pull, second leg: the receiver's vector and what the sender lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryReply {
    pub from: NodeId,
    pub vector: VersionVector,
    pub delta: Delta,
}

/// `POST /internal/peers/register` (JSON): a controller announcing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub node_id: NodeId,
    pub grpc_addr: String,
    pub http_addr: String,
}

/// The most items one anti-entropy message carries; a bigger difference takes
/// several rounds.
pub const DELTA_LIMIT: usize = 50_000;

pub fn encode<T: Serialize>(v: &T) -> bytes::Bytes {
    bytes::Bytes::from(postcard::to_stdvec(v).unwrap_or_default())
}

pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}
