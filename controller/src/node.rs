//! One controller: the components its workers and handlers share, each a cheap
//! handle (`Arc`) over one concern. Workers and the data path receive only the
//! components they use; this composition is what the client API, the HTTP routes
//! and the tests hold.

use std::sync::{Arc, Mutex};

use redcloud_common::{Hlc, NodeId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chunks::{Chunks, DataPath};
use crate::config::Config;
use crate::events::Events;
use crate::meta::Db;
use crate::metrics::Metrics;
use crate::records::Record;
use crate::registry::Registry;
use crate::repair::RepairReport;
use crate::replication::Replica;
use crate::replication::membership::Membership;
use crate::replication::net::PeerNet;
use crate::replication::peers::Peers;
use crate::search::SearchIndex;
use crate::workers::Supervisor;

/// One controller's components.
pub struct Node {
    pub id: NodeId,
    pub config: Arc<Config>,
    pub db: Db,
    pub hlc: Arc<Hlc>,
    pub registry: Arc<Registry>,
    /// Other controllers.
    pub peers: Arc<Peers>,
    /// The transport to them (with the test fault filter).
    pub net: Arc<PeerNet>,
    pub metrics: Arc<Metrics>,
    /// The change feed.
    pub events: Arc<Events>,
    pub membership: Arc<Membership>,
    /// What replication uses.
    pub replica: Arc<Replica>,
    /// Chunkserver connections and uploads in flight.
    pub chunks: Arc<Chunks>,
    /// What the upload, download, repair and search paths use.
    pub data: Arc<DataPath>,
    /// The full-text index of the current books.
    pub search: Arc<SearchIndex>,
    /// The repair worker's last findings.
    pub repair_state: Arc<Mutex<RepairReport>>,
    /// The background workers.
    pub workers: Supervisor,
    /// Background work (late chunk copies, pushes) that shutdown waits for.
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    /// When this controller started (its uptime in the admin API).
    pub started: std::time::Instant,
}

impl Node {
    /// The gRPC address other nodes reach this controller at.
    pub fn grpc_addr(&self) -> String {
        self.replica.grpc_addr()
    }

    /// The internal HTTP address other controllers reach this one at.
    pub fn http_addr(&self) -> String {
        self.replica.http_addr()
    }

    /// Hands new records to push gossip (not back to `from`, where they came from).
    pub fn publish(&self, records: Vec<Record>, from: Option<NodeId>) {
        self.events.publish(records, from);
    }

    /// Whether writes are let through yet.
    pub fn is_settled(&self) -> bool {
        self.replica.is_settled()
    }

    /// The repair worker's last findings.
    pub fn repair_report(&self) -> RepairReport {
        self.repair_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The OpenMetrics text for `/metrics` (see `docs/metrics.md` for the list).
    pub fn render_metrics(&self) -> String {
        use redcloud_common::metrics::{self as rm, FloatGauge, Gauge, Registry};
        let m = &self.metrics;
        let mut reg = Registry::default();
        let counters = [
            (&m.uploads, "uploads", "Uploads acknowledged."),
            (
                &m.upload_bytes,
                "upload_bytes",
                "Bytes of acknowledged uploads.",
            ),
            (
                &m.upload_failures,
                "upload_failures",
                "Uploads refused or failed.",
            ),
            (&m.downloads, "downloads", "Downloads completed."),
            (
                &m.download_bytes,
                "download_bytes",
                "Bytes sent to downloaders.",
            ),
            (
                &m.download_failures,
                "download_failures",
                "Downloads that failed.",
            ),
            (
                &m.chunk_read_failovers,
                "chunk_read_failovers",
                "Chunk reads that moved to another replica.",
            ),
            (
                &m.chunk_put_failures,
                "chunk_put_failures",
                "Chunk writes a chunkserver refused or missed.",
            ),
            (
                &m.heartbeats,
                "heartbeats",
                "Chunkserver heartbeats received.",
            ),
            (
                &m.gossip_pushes,
                "gossip_pushes",
                "Push-gossip messages sent.",
            ),
            (
                &m.gossip_push_failures,
                "gossip_push_failures",
                "Push-gossip messages that failed.",
            ),
            (
                &m.gossip_records_received,
                "gossip_records_received",
                "Records received by push.",
            ),
            (
                &m.gossip_records_applied,
                "gossip_records_applied",
                "Received records that changed state.",
            ),
            (
                &m.anti_entropy_rounds,
                "anti_entropy_rounds",
                "Anti-entropy rounds started.",
            ),
            (
                &m.anti_entropy_failures,
                "anti_entropy_failures",
                "Anti-entropy exchanges that failed.",
            ),
            (
                &self.net.bytes_sent,
                "peer_bytes_sent",
                "Bytes sent to other controllers.",
            ),
            (
                &self.net.bytes_received,
                "peer_bytes_received",
                "Bytes received in answers from other controllers.",
            ),
            (
                &m.books_indexed,
                "books_indexed",
                "Books (re)indexed for search.",
            ),
            (&m.searches, "searches", "Search queries answered."),
            (&m.gc_passes, "gc_passes", "Tombstone collection passes."),
            (
                &m.tombstones_purged,
                "tombstones_purged",
                "Tombstones purged once every controller had seen them.",
            ),
            (&m.repair_passes, "repair_passes", "Repair passes run."),
            (
                &m.repair_copies,
                "repair_copies",
                "Chunk copies made by repair.",
            ),
            (&m.repair_bytes, "repair_bytes", "Bytes copied by repair."),
            (
                &m.repair_failures,
                "repair_failures",
                "Repair copies that failed (retried with backoff).",
            ),
            (
                &m.chunks_collected,
                "chunks_collected",
                "Unreferenced chunks deleted from chunkservers.",
            ),
            (
                &m.chunks_kept_recently_written,
                "chunks_kept_recently_written",
                "Deletes of unreferenced chunks refused by a chunkserver: written within the window (an upload may use them).",
            ),
            (
                &m.peer_messages_refused,
                "peer_messages_refused",
                "Messages from other controllers refused whole before anything in them was applied (malformed, or claims that cannot be true).",
            ),
            (
                &m.records_held_clock_ahead,
                "records_held_clock_ahead",
                "Records from other controllers held back: stamped more than MAX_CLOCK_DRIFT ahead of this controller's clock.",
            ),
            (
                &m.repair_backlog_seen,
                "repair_backlog_seen",
                "Missing chunk copies counted over all repair passes.",
            ),
        ];
        for (c, name, help) in counters {
            c.register(&mut reg, &format!("redcloud_controller_{name}"), help);
        }
        let cs = self.registry.snapshot();
        let repair = self.repair_report();
        let peers = self.peers.all();
        let alive_window = self
            .config
            .discovery_interval
            .max(self.config.gossip_interval)
            * 3
            + std::time::Duration::from_secs(2);
        let reachable = peers
            .iter()
            .filter(|p| p.last_ok.is_some_and(|t| t.elapsed() <= alive_window))
            .count();
        let gauge = |reg: &mut Registry, name: &str, help: &str, v: u64| {
            let g = Gauge::default();
            g.set(v);
            g.register(reg, &format!("redcloud_controller_{name}"), help);
        };
        m.chunk_gc_waiting_for_sync.register(
            &mut reg,
            "redcloud_controller_chunk_gc_waiting_for_sync",
            "Unreferenced chunks past the grace, waiting for a sync with every controller.",
        );
        gauge(
            &mut reg,
            "chunkservers",
            "Chunkservers known.",
            cs.len() as u64,
        );
        gauge(
            &mut reg,
            "chunkservers_healthy",
            "Chunkservers healthy (a fresh heartbeat and no failed call since).",
            cs.iter().filter(|c| c.healthy).count() as u64,
        );
        gauge(
            &mut reg,
            "peers",
            "Other controllers known.",
            peers.len() as u64,
        );
        gauge(
            &mut reg,
            "peers_reachable",
            "Other controllers a message reached or came from within the liveness window.",
            reachable as u64,
        );
        gauge(
            &mut reg,
            "files",
            "Current (not deleted) files, at the last repair pass.",
            repair.live_files,
        );
        gauge(
            &mut reg,
            "chunks",
            "Chunks current files reference, at the last repair pass.",
            repair.live_chunks,
        );
        gauge(
            &mut reg,
            "chunks_under_replicated",
            "Live chunks lacking a copy on some healthy chunkserver, at the last repair pass.",
            repair.under_replicated_chunks,
        );
        gauge(
            &mut reg,
            "chunks_lost",
            "Live chunks with no copy on any healthy chunkserver, at the last repair pass.",
            repair.lost_chunks,
        );
        gauge(
            &mut reg,
            "repair_backlog",
            "Missing chunk copies at the last repair pass.",
            repair.missing_copies,
        );
        gauge(
            &mut reg,
            "repair_passes_completed",
            "Repair passes completed since start (0: no figure above is from a pass yet).",
            repair.passes,
        );
        let skew = FloatGauge::default();
        skew.set(self.hlc.skew_ms() as f64 / 1000.0);
        reg.register_with_unit(
            "redcloud_controller_clock_skew",
            rm::help_text("How far this controller's own wall clock is ahead of the cluster's time (the lower median of its peers' clocks and its own); timestamps are kept within MAX_CLOCK_DRIFT/2 of the cluster's time."),
            prometheus_client::registry::Unit::Seconds,
            skew,
        );
        // Per peer: seconds since the last message that reached it or came from it.
        #[derive(
            Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet,
        )]
        struct PeerLabels {
            peer: String,
        }
        let since: prometheus_client::metrics::family::Family<PeerLabels, FloatGauge> =
            Default::default();
        for p in &peers {
            let age = p
                .last_ok
                .map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64());
            let peer = p
                .node_id
                .as_ref()
                .map_or_else(|| p.http_addr.clone(), |id| id.to_string());
            since.get_or_create(&PeerLabels { peer }).set(age);
        }
        reg.register_with_unit(
            "redcloud_controller_peer_last_exchange_age",
            rm::help_text(
                "Seconds since a message last reached this peer or came from it (+Inf: never).",
            ),
            prometheus_client::registry::Unit::Seconds,
            since,
        );
        m.rpc.register(
            &mut reg,
            "redcloud_controller_rpc_duration",
            "gRPC calls served: time to the response's head, by method and status.",
        );
        rm::register_process(&mut reg, "controller");
        rm::encode(&reg)
    }
}
