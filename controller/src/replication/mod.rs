//! Replication between controllers. The decisions are the engine's
//! ([`engine`], no I/O, property-tested through [`mem`]); this module holds the
//! messages and the workers that move them. The protocol is described in
//! `docs/replication.md`.
//!
//! Protocol (HTTP POST, postcard-encoded bodies; every message carries the
//! sender's id and its disciplined wall clock, which receivers sample):
//! - push: `/internal/gossip/receive` carries [`Push`]: new records to a few random
//!   peers; a receiver that learned something passes it on. Answered by [`PushAck`].
//! - pull: `/internal/gossip/state-summary` carries [`Summary`] (a 128-bit hash of
//!   the sender's version vector, and the vector itself when the sender expects a
//!   difference) and answers [`SummaryReply`]: `Same`, or the receiver's vector
//!   with the delta the sender lacks; the sender then pushes what the receiver
//!   lacks. An idle round is two tiny messages whatever the number of controllers.
//! - discovery: `/internal/peers/register` and `GET /internal/peers` (JSON).

pub mod anti_entropy;
pub mod discovery;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod gossip;
pub mod mem;
pub mod net;
pub mod peers;
pub mod tombstone_gc;

use std::time::Duration;

use redcloud_common::NodeId;
use redcloud_common::replication::VersionVector;
use serde::{Deserialize, Serialize};

use engine::{Batch, Delta};

/// Longest one controller-to-controller call may take (a large delta from a busy peer).
pub const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of records one delta carries (well under the 16 MiB body limit:
/// a bigger difference takes several rounds).
pub const DELTA_BUDGET: usize = 4 * 1024 * 1024;

/// The most records one message may carry.
pub const MAX_RECORDS_PER_MESSAGE: usize = 200_000;

/// The most ranges, or vector entries, one message may carry.
pub const MAX_ENTRIES_PER_MESSAGE: usize = 100_000;

/// Push: records the receiver may not have (`/internal/gossip/receive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub from: NodeId,
    /// Where the sender's HTTP routes are (so the receiver can reach it back).
    pub from_http: String,
    /// The sender's disciplined wall clock when it sent this (ms).
    pub clock_ms: u64,
    pub batch: Batch,
}

/// The answer to a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAck {
    pub from: NodeId,
    pub clock_ms: u64,
    /// How many of the records changed the receiver's state.
    pub applied: u32,
    /// How many were held back: stamped too far ahead of the receiver's clock.
    pub held: u32,
}

/// Pull, first leg (`/internal/gossip/state-summary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub from: NodeId,
    pub from_http: String,
    pub clock_ms: u64,
    /// [`VersionVector::hash`] of the sender's vector.
    pub hash: [u8; 16],
    /// The vector itself, when the sender expects the receiver's to differ.
    pub vector: Option<VersionVector>,
}

/// Pull, second leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SummaryReply {
    /// Our vectors are equal: nothing to exchange.
    Same { from: NodeId, clock_ms: u64 },
    /// They differ: the receiver's vector, and what the sender lacks (if the sender
    /// sent its vector; otherwise it sends it in a second summary).
    Differs {
        from: NodeId,
        clock_ms: u64,
        vector: VersionVector,
        delta: Option<Delta>,
    },
}

/// `POST /internal/peers/register` (JSON): a controller announcing itself; the
/// answer lists every controller the receiver knows, itself first with its clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub node_id: NodeId,
    pub grpc_addr: String,
    pub http_addr: String,
    /// The sender's disciplined wall clock (set on its own entry).
    #[serde(default)]
    pub clock_ms: Option<u64>,
}

/// Why a message from a peer was refused before anything in it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn check_addr(a: &str) -> Result<(), Malformed> {
    if a.is_empty() || a.len() > 300 || a.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Malformed(format!("address {a:?} is not a host:port")));
    }
    Ok(())
}

fn check_vector(v: &VersionVector) -> Result<(), Malformed> {
    if v.0.len() > MAX_ENTRIES_PER_MESSAGE {
        return Err(Malformed(format!("vector of {} entries", v.0.len())));
    }
    v.check().map_err(Malformed)
}

/// Checks a batch's size; its records and ranges are checked by the engine
/// (`engine::check_batch`) before it is applied.
fn check_batch_size(b: &Batch) -> Result<(), Malformed> {
    if b.records.len() > MAX_RECORDS_PER_MESSAGE || b.ranges.len() > MAX_ENTRIES_PER_MESSAGE {
        return Err(Malformed(format!(
            "{} records and {} ranges in one message",
            b.records.len(),
            b.ranges.len()
        )));
    }
    Ok(())
}

impl Push {
    pub fn check(&self) -> Result<(), Malformed> {
        check_addr(&self.from_http)?;
        check_batch_size(&self.batch)
    }
}

impl Summary {
    pub fn check(&self) -> Result<(), Malformed> {
        check_addr(&self.from_http)?;
        match &self.vector {
            Some(v) => check_vector(v),
            None => Ok(()),
        }
    }
}

impl SummaryReply {
    pub fn check(&self) -> Result<(), Malformed> {
        match self {
            SummaryReply::Same { .. } => Ok(()),
            SummaryReply::Differs { vector, delta, .. } => {
                check_vector(vector)?;
                match delta {
                    Some(d) => check_batch_size(&d.batch),
                    None => Ok(()),
                }
            }
        }
    }

    pub fn from(&self) -> &NodeId {
        match self {
            SummaryReply::Same { from, .. } | SummaryReply::Differs { from, .. } => from,
        }
    }

    pub fn clock_ms(&self) -> u64 {
        match self {
            SummaryReply::Same { clock_ms, .. } | SummaryReply::Differs { clock_ms, .. } => {
                *clock_ms
            }
        }
    }
}

impl PeerInfo {
    pub fn check(&self) -> Result<(), Malformed> {
        check_addr(&self.grpc_addr)?;
        check_addr(&self.http_addr)
    }
}

/// The key a peer's clock samples are kept under.
pub fn clock_key(node: &NodeId) -> u64 {
    let d = redcloud_common::hash::sha256(node.as_str().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

pub fn encode<T: Serialize>(v: &T) -> bytes::Bytes {
    bytes::Bytes::from(postcard::to_stdvec(v).unwrap_or_default())
}

pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}
