//! Access to the chunkservers, and the handle the upload, download, repair and
//! search paths share ([`DataPath`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redcloud_common::{ChunkId, NodeId};
use redcloud_proto::chunk_client::{self, ChunkCallError, ChunkClient, Timeouts};
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::events::Events;
use crate::meta::Db;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::replication::net::PeerNet;

/// Chunkserver connections, their health, and the chunks uploads here use.
pub struct Chunks {
    pub registry: Arc<Registry>,
    /// The transport's fault filter also cuts chunkservers off in tests.
    net: Arc<PeerNet>,
    secret: Option<String>,
    min_chunk_replicas: u32,
    /// One channel per chunkserver address. `std` mutex: lookups only.
    clients: Mutex<HashMap<String, ChunkClient>>,
    /// Chunks of uploads in progress here (never garbage). `std` mutex: counts only.
    in_flight: Mutex<HashMap<ChunkId, usize>>,
}

impl Chunks {
    pub fn new(
        registry: Arc<Registry>,
        net: Arc<PeerNet>,
        secret: Option<String>,
        min_chunk_replicas: u32,
    ) -> Chunks {
        Chunks {
            registry,
            net,
            secret,
            min_chunk_replicas,
            clients: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// A client for the chunkserver at `addr` (connections are reused).
    pub fn client(&self, addr: &str) -> Result<ChunkClient, ChunkCallError> {
        if self.net.filter.is_cut(addr) {
            return Err(ChunkCallError::Unreachable {
                addr: addr.to_string(),
                reason: "link cut by the test network filter".into(),
            });
        }
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let ch = chunk_client::channel(addr, Timeouts::default())?;
        let c = ChunkClient::new(addr, ch).with_secret(self.secret.as_deref());
        // Addresses come from heartbeats and gossip; stale ones (moved nodes) are
        // not kept forever.
        if m.len() >= 2 * crate::registry::MAX_CHUNKSERVERS {
            m.clear();
        }
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A call to chunkserver `id` at `addr` failed as unreachable or timed out: it is
    /// not picked again until its next heartbeat, and its cached connection is
    /// dropped. A connection whose path died (this container moved to another
    /// network and back, or the peer's address was reused) can look open while
    /// every call on it hangs until its timeout; the next call dials afresh.
    pub fn call_failed(&self, id: &NodeId, addr: &str) {
        self.registry.report_failure(id, addr);
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr);
    }

    /// Marks chunks as used by an upload in progress (`start`) or no longer.
    pub fn track_in_flight(&self, chunks: &[ChunkId], start: bool) {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for c in chunks {
            if start {
                *m.entry(*c).or_insert(0) += 1;
            } else if let Some(n) = m.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    m.remove(c);
                }
            }
        }
    }

    pub fn is_in_flight(&self, chunk: &ChunkId) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(chunk)
    }

    /// The effective replica requirement: `MIN_CHUNK_REPLICAS`, capped by how many
    /// chunkservers are healthy.
    pub fn required_replicas(&self, healthy: usize) -> usize {
        (self.min_chunk_replicas as usize).min(healthy).max(1)
    }
}

/// What the upload, download, repair and search paths use.
pub struct DataPath {
    pub id: NodeId,
    pub config: Arc<Config>,
    pub db: Db,
    pub chunks: Arc<Chunks>,
    pub events: Arc<Events>,
    pub metrics: Arc<Metrics>,
    /// Background work (late chunk copies, download prefetch) shutdown waits for.
    pub tasks: TaskTracker,
}
