//! One controller: the components its workers and handlers share, each a cheap
//! handle (`Arc`) over one concern. Workers and the data path receive only the
//! components they use; this composition is what the client API, the HTTP routes
//! and the tests hold.

use std::sync::{Arc, Mutex};

use redcloud_common::metrics::Exposition;
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

    /// The Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let cs = self.registry.snapshot();
        let healthy = cs.iter().filter(|c| c.healthy).count() as u64;
        let repair = self.repair_report();
        let counters: [(&str, &str, u64); 31] = [
            ("uploads_total", "Uploads acknowledged.", m.uploads.get()),
            (
                "upload_bytes_total",
                "Bytes of acknowledged uploads.",
                m.upload_bytes.get(),
            ),
            (
                "upload_failures_total",
                "Uploads refused or failed.",
                m.upload_failures.get(),
            ),
            ("downloads_total", "Downloads completed.", m.downloads.get()),
            (
                "download_bytes_total",
                "Bytes sent to downloaders.",
                m.download_bytes.get(),
            ),
            (
                "download_failures_total",
                "Downloads that failed.",
                m.download_failures.get(),
            ),
            (
                "chunk_read_failovers_total",
                "Chunk reads that moved to another replica.",
                m.chunk_read_failovers.get(),
            ),
            (
                "chunk_put_failures_total",
                "Chunk writes a chunkserver refused or missed.",
                m.chunk_put_failures.get(),
            ),
            (
                "heartbeats_total",
                "Chunkserver heartbeats received.",
                m.heartbeats.get(),
            ),
            (
                "gossip_pushes_total",
                "Push-gossip messages sent.",
                m.gossip_pushes.get(),
            ),
            (
                "gossip_push_failures_total",
                "Push-gossip messages that failed.",
                m.gossip_push_failures.get(),
            ),
            (
                "gossip_records_received_total",
                "Records received by push.",
                m.gossip_records_received.get(),
            ),
            (
                "gossip_records_applied_total",
                "Received records that changed state.",
                m.gossip_records_applied.get(),
            ),
            (
                "anti_entropy_rounds_total",
                "Anti-entropy rounds started.",
                m.anti_entropy_rounds.get(),
            ),
            (
                "anti_entropy_failures_total",
                "Anti-entropy exchanges that failed.",
                m.anti_entropy_failures.get(),
            ),
            (
                "peer_bytes_sent_total",
                "Bytes sent to other controllers.",
                self.net.bytes_sent.get(),
            ),
            (
                "peer_bytes_received_total",
                "Bytes received in answers from other controllers.",
                self.net.bytes_received.get(),
            ),
            (
                "books_indexed_total",
                "Books (re)indexed for search.",
                m.books_indexed.get(),
            ),
            (
                "searches_total",
                "Search queries answered.",
                m.searches.get(),
            ),
            (
                "gc_passes_total",
                "Tombstone collection passes.",
                m.gc_passes.get(),
            ),
            (
                "tombstones_purged_total",
                "Tombstones purged once every controller had seen them.",
                m.tombstones_purged.get(),
            ),
            (
                "repair_passes_total",
                "Repair passes run.",
                m.repair_passes.get(),
            ),
            (
                "repair_copies_total",
                "Chunk copies made by repair.",
                m.repair_copies.get(),
            ),
            (
                "repair_bytes_total",
                "Bytes copied by repair.",
                m.repair_bytes.get(),
            ),
            (
                "repair_failures_total",
                "Repair copies that failed (retried with backoff).",
                m.repair_failures.get(),
            ),
            (
                "chunks_collected_total",
                "Unreferenced chunks deleted from chunkservers.",
                m.chunks_collected.get(),
            ),
            (
                "chunks_kept_recently_written_total",
                "Deletes of unreferenced chunks refused by a chunkserver: written within the window (an upload may use them).",
                m.chunks_kept_recently_written.get(),
            ),
            (
                "peer_messages_refused_total",
                "Messages from other controllers refused whole before anything in them was applied (malformed, or claims that cannot be true).",
                m.peer_messages_refused.get(),
            ),
            (
                "records_held_clock_ahead_total",
                "Records from other controllers held back: stamped more than MAX_CLOCK_DRIFT ahead of this controller's clock.",
                m.records_held_clock_ahead.get(),
            ),
            (
                "chunk_copies_lost_total",
                "Live chunks found with no healthy copy.",
                repair.lost_chunks,
            ),
            (
                "repair_backlog_total_seen",
                "Missing copies counted over all repair passes.",
                repair.missing_copies_seen,
            ),
        ];
        let gauges: [(&str, &str, u64); 5] = [
            (
                "chunk_gc_waiting_for_sync",
                "Unreferenced chunks past the grace, waiting for a sync with every controller.",
                m.chunk_gc_waiting_for_sync.get(),
            ),
            ("chunkservers", "Chunkservers known.", cs.len() as u64),
            ("chunkservers_healthy", "Chunkservers healthy.", healthy),
            (
                "peers",
                "Other controllers known.",
                self.peers.all().len() as u64,
            ),
            (
                "repair_backlog",
                "Missing chunk copies at the last repair pass.",
                repair.missing_copies,
            ),
        ];
        let mut e = Exposition::new();
        for (name, help, v) in counters {
            e.counter(&format!("redcloud_controller_{name}"), help, v);
        }
        for (name, help, v) in gauges {
            e.gauge(&format!("redcloud_controller_{name}"), help, v);
        }
        e.gauge_i64(
            "redcloud_controller_clock_skew_ms",
            "How far this controller's own wall clock is ahead of the cluster's time (the lower median of its peers' clocks and its own); timestamps are kept within MAX_CLOCK_DRIFT/2 of the cluster's time.",
            self.hlc.skew_ms(),
        );
        e.finish()
    }
}
