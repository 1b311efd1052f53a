//! The state a controller's services and workers share: a cheap `Arc<Node>` handle.

use std::collections::HashMap;
use std::sync::Mutex;

use redcloud_common::metrics::{Counter, Exposition};
use std::sync::Arc;

use redcloud_common::{Hlc, NodeId};
use redcloud_proto::chunk_client::{self, ChunkCallError, ChunkClient, Timeouts};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::db::Db;
use crate::records::Record;
use crate::registry::Registry;
use crate::replication::gossip::Outgoing;
use crate::replication::net::PeerNet;
use crate::replication::peers::Peers;

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub uploads: Counter,
    pub upload_bytes: Counter,
    pub upload_failures: Counter,
    pub downloads: Counter,
    pub download_bytes: Counter,
    pub download_failures: Counter,
    pub chunk_read_failovers: Counter,
    pub chunk_put_failures: Counter,
    pub heartbeats: Counter,
    pub gossip_pushes: Counter,
    pub gossip_push_failures: Counter,
    pub gossip_records_received: Counter,
    pub gossip_records_applied: Counter,
    pub anti_entropy_rounds: Counter,
    pub anti_entropy_failures: Counter,
    pub gc_passes: Counter,
    pub tombstones_purged: Counter,
}

/// One controller.
pub struct Node {
    pub id: NodeId,
    pub config: Config,
    pub db: Db,
    pub hlc: Arc<Hlc>,
    pub registry: Registry,
    /// Other controllers.
    pub peers: Peers,
    /// The transport to them (with the test fault filter).
    pub net: PeerNet,
    /// Feeds the push-gossip worker.
    gossip_tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    pub metrics: Metrics,
    pub grpc_addr: String,
    pub http_addr: String,
    /// Background work (late chunk copies) that shutdown waits for.
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    /// One channel per chunkserver address. `std` mutex: lookups only.
    clients: Mutex<HashMap<String, ChunkClient>>,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        config: Config,
        db: Db,
        hlc: Arc<Hlc>,
        registry: Registry,
        grpc_addr: String,
        http_addr: String,
        shutdown: CancellationToken,
        gossip_tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    ) -> Self {
        let net = PeerNet::new(
            std::time::Duration::from_secs(2),
            config.cluster_secret.clone(),
        );
        Node {
            id,
            config,
            db,
            hlc,
            registry,
            peers: Peers::default(),
            net,
            gossip_tx,
            metrics: Metrics::default(),
            grpc_addr,
            http_addr,
            tasks: TaskTracker::new(),
            shutdown,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A client for the chunkserver at `addr` (connections are reused).
    pub fn chunk_client(&self, addr: &str) -> Result<ChunkClient, ChunkCallError> {
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let ch = chunk_client::channel(addr, Timeouts::default())?;
        let c = ChunkClient::new(addr, ch);
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Takes in records learned from a peer that changed our state: updates the
    /// peer set and chunkserver registry they describe, and passes them on.
    pub async fn learned(self: &Arc<Self>, changed: Vec<Record>, from: Option<NodeId>) {
        use crate::records::{Body, Table};
        if changed.is_empty() {
            return;
        }
        self.metrics
            .gossip_records_applied
            .add(changed.len() as u64);
        let mut chunkservers = Vec::new();
        let mut controllers = false;
        for r in &changed {
            match (&r.body, r.version.deleted) {
                (
                    Body::Chunkserver {
                        grpc_addr,
                        http_addr,
                    },
                    false,
                ) => {
                    if let Ok(id) = NodeId::new(r.key.clone()) {
                        chunkservers.push(crate::model::ChunkserverRecord {
                            node_id: id,
                            grpc_addr: grpc_addr.clone(),
                            http_addr: http_addr.clone(),
                        });
                    }
                }
                _ if r.table() == Table::ControllerNodes => controllers = true,
                _ => {}
            }
        }
        if !chunkservers.is_empty() {
            self.registry.load(chunkservers);
        }
        if controllers {
            crate::replication::discovery::refresh_from_db(self).await;
        }
        self.publish(changed, from);
    }

    /// Hands new records to push gossip (not back to `from`, where they came from).
    pub fn publish(&self, records: Vec<Record>, from: Option<NodeId>) {
        if records.is_empty() {
            return;
        }
        let _ = self.gossip_tx.send(Outgoing {
            records,
            exclude: from,
        });
    }

    /// The effective replica requirement: `MIN_CHUNK_REPLICAS`, capped by how many
    /// chunkservers are healthy.
    pub fn required_replicas(&self, healthy: usize) -> usize {
        (self.config.min_chunk_replicas as usize)
            .min(healthy)
            .max(1)
    }

    /// The Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let cs = self.registry.snapshot();
        let healthy = cs.iter().filter(|c| c.healthy).count() as u64;
        let mut e = Exposition::new();
        e.counter(
            "redcloud_controller_uploads_total",
            "Uploads acknowledged.",
            m.uploads.get(),
        )
        .counter(
            "redcloud_controller_upload_bytes_total",
            "Bytes of acknowledged uploads.",
            m.upload_bytes.get(),
        )
        .counter(
            "redcloud_controller_upload_failures_total",
            "Uploads refused or failed.",
            m.upload_failures.get(),
        )
        .counter(
            "redcloud_controller_downloads_total",
            "Downloads completed.",
            m.downloads.get(),
        )
        .counter(
            "redcloud_controller_download_bytes_total",
            "Bytes sent to downloaders.",
            m.download_bytes.get(),
        )
        .counter(
            "redcloud_controller_download_failures_total",
            "Downloads that failed.",
            m.download_failures.get(),
        )
        .counter(
            "redcloud_controller_chunk_read_failovers_total",
            "Chunk reads that moved to another replica.",
            m.chunk_read_failovers.get(),
        )
        .counter(
            "redcloud_controller_chunk_put_failures_total",
            "Chunk writes a chunkserver refused or missed.",
            m.chunk_put_failures.get(),
        )
        .counter(
            "redcloud_controller_heartbeats_total",
            "Chunkserver heartbeats received.",
            m.heartbeats.get(),
        )
        .gauge(
            "redcloud_controller_chunkservers",
            "Chunkservers known.",
            cs.len() as u64,
        )
        .gauge(
            "redcloud_controller_chunkservers_healthy",
            "Chunkservers healthy.",
            healthy,
        );
        e.finish()
    }
}
