//! The state one chunkserver's services and workers share.

use std::sync::Arc;

use redcloud_common::NodeId;
use redcloud_common::metrics::{Counter, RpcHistograms};

use crate::store::ChunkStore;

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub chunks_written: Counter,
    pub bytes_written: Counter,
    pub chunks_read: Counter,
    pub direct_reads: Counter,
    pub bytes_read: Counter,
    pub corrupt_reads: Counter,
    pub heartbeats_sent: Counter,
    pub heartbeat_failures: Counter,
    pub scrub_passes: Counter,
    pub scrub_bytes: Counter,
    pub scrub_corrupt: Counter,
    pub replications: Counter,
    /// Latency of the gRPC calls this chunkserver served.
    pub rpc: RpcHistograms,
}

/// One chunkserver: its identity, store and counters.
#[derive(Debug)]
pub struct Node {
    pub id: NodeId,
    pub store: Arc<ChunkStore>,
    pub metrics: Metrics,
    /// The gRPC address other nodes reach this one at.
    pub grpc_addr: String,
    /// The HTTP address of `/health` and `/metrics`.
    pub http_addr: String,
    /// What the listeners are bound to, and the configured advertised address (if
    /// any): without one, the address is detected again for every heartbeat, so a
    /// container moved to another network reports its new IP.
    pub bound: (std::net::SocketAddr, std::net::SocketAddr),
    pub advertise_configured: Option<String>,
    /// Chunks being copied from a peer right now: a second request for one waits
    /// for the first instead of copying it again. `std` mutex: set operations only.
    pub replicating: std::sync::Mutex<std::collections::HashSet<redcloud_common::ChunkId>>,
    /// Test hook: while set, no heartbeats are sent (the node looks partitioned).
    pub heartbeats_paused: std::sync::atomic::AtomicBool,
    /// Connections to peer chunkservers, reused across copies. `std` mutex: lookups only.
    pub peers: std::sync::Mutex<
        std::collections::HashMap<String, redcloud_proto::chunk_client::ChunkClient>,
    >,
    /// The cluster secret: required on every chunk API call when set, and sent on
    /// this node's own calls to peers.
    pub cluster_secret: Option<String>,
    /// Bytes of chunk data received and not yet stored, across every `PutChunk`
    /// (permits are bytes, taken as data arrives, not from the declared size).
    pub put_budget: Arc<tokio::sync::Semaphore>,
    /// Copies from peers (`ReplicateFromPeer`) running at once, each holding one
    /// chunk in memory: [`MAX_PEER_COPIES`]; further requests wait their turn.
    pub copy_slots: tokio::sync::Semaphore,
}

/// The most `ReplicateFromPeer` copies running at once.
pub const MAX_PEER_COPIES: usize = 16;

/// The most peer connections kept for reuse (addresses come from controllers'
/// repair requests; past this the cache starts afresh).
pub const MAX_PEER_CLIENTS: usize = 1024;

/// The most chunk bytes all `PutChunk` calls together hold in memory at once.
pub const PUT_BUDGET_BYTES: usize = 512 * 1024 * 1024;

/// The longest a `PutChunk` stream may go without a message.
pub const PUT_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

impl Node {
    /// The (gRPC, HTTP) addresses other nodes should use now: the IP this host uses
    /// to reach the `controllers` (see `advertise_addr_towards`).
    pub fn current_addrs(&self, controllers: &[std::net::SocketAddr]) -> (String, String) {
        if self.advertise_configured.is_some() {
            return (self.grpc_addr.clone(), self.http_addr.clone());
        }
        let grpc =
            redcloud_common::discovery::advertise_addr_towards(None, self.bound.0, controllers);
        let host = grpc
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default();
        (grpc, format!("{host}:{}", self.bound.1.port()))
    }

    /// A client for the peer chunkserver at `addr` (connections are reused).
    pub fn peer_client(
        &self,
        addr: &str,
    ) -> Result<
        redcloud_proto::chunk_client::ChunkClient,
        redcloud_proto::chunk_client::ChunkCallError,
    > {
        use redcloud_proto::chunk_client::{self, ChunkClient, Timeouts};
        let mut m = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let c = ChunkClient::new(addr, chunk_client::channel(addr, Timeouts::default())?)
            .with_secret(self.cluster_secret.as_deref());
        if m.len() >= MAX_PEER_CLIENTS {
            m.clear();
        }
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// (capacity, free) bytes of the file system holding the chunks; zeros if unknown.
    pub fn disk_space(&self) -> (u64, u64) {
        match rustix::fs::statvfs(self.store.root()) {
            Ok(s) => (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize),
            Err(_) => (0, 0),
        }
    }

    /// The OpenMetrics text for `/metrics` (see `docs/metrics.md` for the list).
    pub fn render_metrics(&self) -> String {
        use redcloud_common::metrics::{self as rm, Gauge, Registry};
        let m = &self.metrics;
        let (capacity, free) = self.disk_space();
        let mut reg = Registry::default();
        let gauges = [
            ("chunks", "Chunks stored.", self.store.chunk_count()),
            (
                "used_bytes",
                "Bytes of chunk data stored.",
                self.store.used_bytes(),
            ),
            ("capacity_bytes", "Size of the data file system.", capacity),
            ("free_bytes", "Free space on the data file system.", free),
        ];
        for (name, help, v) in gauges {
            let g = Gauge::default();
            g.set(v);
            g.register(&mut reg, &format!("redcloud_chunkserver_{name}"), help);
        }
        let counters = [
            (&m.chunks_written, "chunks_written", "Chunks newly stored."),
            (&m.bytes_written, "bytes_written", "Bytes newly stored."),
            (
                &m.chunks_read,
                "chunks_read",
                "Chunks served after verification.",
            ),
            (
                &m.direct_reads,
                "direct_reads",
                "Chunks read by clients directly, with a controller's read token.",
            ),
            (
                &m.bytes_read,
                "bytes_read",
                "Bytes served after verification.",
            ),
            (
                &m.corrupt_reads,
                "corrupt_reads",
                "Reads that found a corrupt copy (removed, not served).",
            ),
            (&m.scrub_passes, "scrub_passes", "Completed scrub passes."),
            (&m.scrub_bytes, "scrub_bytes", "Bytes re-verified by scrub."),
            (
                &m.scrub_corrupt,
                "scrub_corrupt",
                "Corrupt copies scrub found and removed.",
            ),
            (
                &m.replications,
                "replications",
                "Chunks copied from a peer.",
            ),
            (
                &m.heartbeats_sent,
                "heartbeats_sent",
                "Heartbeats acknowledged by a controller.",
            ),
            (
                &m.heartbeat_failures,
                "heartbeat_failures",
                "Heartbeats that failed.",
            ),
        ];
        for (c, name, help) in counters {
            c.register(&mut reg, &format!("redcloud_chunkserver_{name}"), help);
        }
        m.rpc.register(
            &mut reg,
            "redcloud_chunkserver_rpc_duration",
            "gRPC calls served: time to the response's head, by method and status.",
        );
        rm::register_process(&mut reg, "chunkserver");
        rm::encode(&reg)
    }
}
