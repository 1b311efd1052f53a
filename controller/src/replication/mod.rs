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
pub mod membership;
pub mod net;
pub mod peers;
pub mod tombstone_gc;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redcloud_common::replication::{Origin, VersionVector};
use redcloud_common::{Hlc, NodeId};
use serde::{Deserialize, Serialize};

use crate::events::Events;
use crate::meta::Db;
use crate::metrics::Metrics;
use engine::{Batch, Delta};
use membership::Membership;
use net::PeerNet;
use peers::Peers;

/// This controller's advertised addresses: configured, or detected (and detected
/// again while running: a container moved to another network gets a new IP).
pub struct Addrs {
    /// (gRPC, HTTP). `std` lock: read and replaced whole, never across an `.await`.
    current: std::sync::RwLock<(String, String)>,
    /// The listeners' bound addresses, when the advertised ones are detected.
    detect_from: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
}

impl Addrs {
    pub fn new(
        grpc: String,
        http: String,
        detect_from: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    ) -> Addrs {
        Addrs {
            current: std::sync::RwLock::new((grpc, http)),
            detect_from,
        }
    }

    /// The gRPC address other nodes reach this controller at.
    pub fn grpc(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The internal HTTP address other controllers reach this one at.
    pub fn http(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Detects the advertised addresses again (when not configured), from the route
    /// to `peers`. Returns the new (gRPC, HTTP) pair if they changed.
    pub fn redetect(&self, peers: &[std::net::SocketAddr]) -> Option<(String, String)> {
        let (grpc, http) = self.detect_from?;
        let now = detect_addrs(None, grpc, http, peers);
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if *cur == now {
            return None;
        }
        *cur = now.clone();
        Some(now)
    }
}

/// The advertised (gRPC, HTTP) addresses: the configured gRPC address, or this host's
/// primary IP with the bound port; HTTP shares the host, on its own port.
pub fn detect_addrs(
    configured: Option<&str>,
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
    peers: &[std::net::SocketAddr],
) -> (String, String) {
    let grpc_addr = redcloud_common::discovery::advertise_addr_towards(configured, grpc, peers);
    let host = grpc_addr
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_default();
    let http_addr = format!("{host}:{}", http.port());
    (grpc_addr, http_addr)
}

/// What the replication workers (push gossip, anti-entropy, discovery, tombstone
/// collection) and the internal routes use: the store, the clock, the peers and
/// the transport to them, the change feed and the membership.
pub struct Replica {
    pub id: NodeId,
    pub addrs: Arc<Addrs>,
    pub db: Db,
    pub hlc: Arc<Hlc>,
    pub peers: Arc<Peers>,
    pub net: Arc<PeerNet>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<Events>,
    pub membership: Arc<Membership>,
    /// `MAX_CLOCK_DRIFT` in ms.
    pub max_drift_ms: u64,
    /// Writes are let through (the clock was checked against a peer's, or the wait
    /// at start ran out).
    pub settled: std::sync::atomic::AtomicBool,
    /// Discovery passes completed.
    discovery_passes: std::sync::atomic::AtomicU64,
    /// When a held record was last logged (held records are logged once a minute).
    held_logged: Mutex<Option<std::time::Instant>>,
    /// Per origin, the first write held back for being stamped ahead, and its
    /// timestamp (ms): what tombstone collection need not wait for.
    pub held_ahead: Mutex<BTreeMap<Origin, (u64, u64)>>,
    /// One exchange started by this controller at a time (the anti-entropy worker
    /// and push gossip's syncs would otherwise pull the same records twice).
    pub exchange_slot: tokio::sync::Semaphore,
    /// One received batch decoded and applied at a time: the others wait as bytes.
    pub apply_slot: tokio::sync::Semaphore,
}

impl Replica {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        addrs: Arc<Addrs>,
        db: Db,
        hlc: Arc<Hlc>,
        peers: Arc<Peers>,
        net: Arc<PeerNet>,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
        membership: Arc<Membership>,
        max_drift_ms: u64,
    ) -> Replica {
        Replica {
            id,
            addrs,
            db,
            hlc,
            peers,
            net,
            metrics,
            events,
            membership,
            max_drift_ms,
            settled: Default::default(),
            discovery_passes: Default::default(),
            held_logged: Mutex::new(None),
            held_ahead: Mutex::new(BTreeMap::new()),
            exchange_slot: tokio::sync::Semaphore::new(1),
            apply_slot: tokio::sync::Semaphore::new(1),
        }
    }

    pub fn http_addr(&self) -> String {
        self.addrs.http()
    }

    pub fn grpc_addr(&self) -> String {
        self.addrs.grpc()
    }

    /// Whether writes are let through yet (see `Store::settle`).
    pub fn is_settled(&self) -> bool {
        self.settled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Discovery passes completed since start.
    pub fn discovery_passes(&self) -> u64 {
        self.discovery_passes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Notes a completed discovery pass.
    pub fn discovery_pass_done(&self) {
        self.discovery_passes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Counts and (once a minute) logs records a peer sent that were held back.
    pub fn note_held(&self, from: &NodeId, held: &[(Origin, u64, u64)]) {
        if held.is_empty() {
            return;
        }
        self.metrics.records_held_clock_ahead.add(held.len() as u64);
        {
            let mut m = self.held_ahead.lock().unwrap_or_else(|e| e.into_inner());
            for (o, seq, ms) in held {
                let e = m.entry(*o).or_insert((*seq, *ms));
                if *seq < e.0 {
                    *e = (*seq, *ms);
                }
            }
        }
        let mut last = self.held_logged.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(std::time::Instant::now());
            let ahead_s = held
                .iter()
                .map(|(_, _, ms)| ms.saturating_sub(self.hlc.wall_ms()) / 1000)
                .max()
                .unwrap_or(0);
            tracing::warn!(
                peer = %from,
                origin = %held[0].0,
                held = held.len(),
                ahead_s,
                "holding records stamped more than MAX_CLOCK_DRIFT ahead of this controller's clock: \
                 they are applied once this clock passes them (the writer's clock ran ahead)"
            );
        }
    }
}

/// Longest one controller-to-controller call may take (a large delta from a busy peer).
pub const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of records one delta carries (well under the 16 MiB body limit:
/// a bigger difference takes several rounds). Decoded, a message takes several
/// times its size in memory, so it stays small.
pub const DELTA_BUDGET: usize = 1024 * 1024;

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
    /// The newest timestamp the sender has issued or seen (its HLC; set on its
    /// own entry in a registration answer). A controller starting a new life
    /// moves its clock past it before its first write, so what it writes after
    /// a wipe is newer than what the cluster held of its earlier life.
    #[serde(default)]
    pub hlc: Option<u64>,
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
