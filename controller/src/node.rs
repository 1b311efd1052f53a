//! The state a controller's services and workers share: a cheap `Arc<Node>` handle.

use std::collections::HashMap;
use std::sync::Mutex;

use redcloud_common::metrics::{Counter, Exposition, Gauge};
use std::sync::Arc;

use redcloud_common::{Hlc, NodeId};
use redcloud_proto::chunk_client::{self, ChunkCallError, ChunkClient, Timeouts};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::meta::{self, Db};
use crate::records::Record;
use crate::registry::Registry;
use crate::replication::gossip::Outgoing;
use crate::replication::net::PeerNet;
use crate::replication::peers::Peers;
use crate::replication::tombstone_gc::GcWait;

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
    pub repair_passes: Counter,
    pub repair_copies: Counter,
    pub repair_bytes: Counter,
    pub repair_failures: Counter,
    pub chunks_collected: Counter,
    /// Deletes of unreferenced chunks a chunkserver refused: written too recently.
    pub chunks_kept_recently_written: Counter,
    /// Unreferenced chunks past the grace whose deletion waits for a sync with
    /// every controller (at the last pass).
    pub chunk_gc_waiting_for_sync: Gauge,
    pub books_indexed: Counter,
    pub searches: Counter,
    /// Messages from peers refused before anything in them was applied.
    pub peer_messages_refused: Counter,
    /// Records from peers held back: stamped too far ahead of our clock.
    pub records_held_clock_ahead: Counter,
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
    /// Wakes the repair worker before its interval (a chunkserver joined, returned,
    /// lost chunks or found corruption).
    pub repair_wakeup: tokio::sync::Notify,
    /// The full-text index of the current books.
    pub search: Arc<crate::search::SearchIndex>,
    /// Wakes the search indexer (files changed).
    pub search_wakeup: tokio::sync::Notify,
    /// Chunks of uploads in progress here (never garbage). `std` mutex: counts only.
    pub in_flight_chunks: Mutex<HashMap<redcloud_common::ChunkId, usize>>,
    /// The repair worker's last findings, for `cluster status`.
    pub repair_state: Mutex<crate::repair::RepairReport>,
    pub metrics: Metrics,
    /// The advertised (gRPC, HTTP) addresses; re-detected by discovery when they
    /// were not configured (a container moved to another network gets a new IP).
    addrs: std::sync::RwLock<(String, String)>,
    /// The listeners' bound addresses, when the advertised ones are detected.
    detect_from: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// Background work (late chunk copies) that shutdown waits for.
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    /// One channel per chunkserver address. `std` mutex: lookups only.
    clients: Mutex<HashMap<String, ChunkClient>>,
    /// Writes are let through (the clock was checked against a peer's, or the wait
    /// at start ran out).
    pub settled: std::sync::atomic::AtomicBool,
    /// When the last complete exchange this controller started with each peer
    /// began (this process's monotonic clock; chunk collection relies on it).
    sync_times: Mutex<HashMap<NodeId, std::time::Instant>>,
    /// What each collector waits for, for `cluster status`.
    gc_waits: Mutex<std::collections::BTreeMap<&'static str, Vec<GcWait>>>,
    /// When a held record was last logged (held records are logged once a minute).
    held_logged: Mutex<Option<std::time::Instant>>,
    /// Discovery passes completed.
    discovery_passes: std::sync::atomic::AtomicU64,
    /// Controllers forgotten (`cluster forget`), as last read from the database.
    forgotten: Mutex<std::collections::BTreeSet<NodeId>>,
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
        detect_from: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
        search: Arc<crate::search::SearchIndex>,
        shutdown: CancellationToken,
        gossip_tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    ) -> Self {
        // Connects fail fast on an unreachable peer; a whole call (a large delta
        // from a busy peer) may take longer.
        let net = PeerNet::new(
            std::time::Duration::from_secs(2),
            crate::replication::PEER_REQUEST_TIMEOUT,
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
            repair_wakeup: tokio::sync::Notify::new(),
            search,
            search_wakeup: tokio::sync::Notify::new(),
            in_flight_chunks: Mutex::new(HashMap::new()),
            repair_state: Mutex::new(Default::default()),
            metrics: Metrics::default(),
            addrs: std::sync::RwLock::new((grpc_addr, http_addr)),
            detect_from,
            tasks: TaskTracker::new(),
            shutdown,
            clients: Mutex::new(HashMap::new()),
            settled: std::sync::atomic::AtomicBool::new(false),
            sync_times: Mutex::new(HashMap::new()),
            gc_waits: Mutex::new(Default::default()),
            held_logged: Mutex::new(None),
            discovery_passes: Default::default(),
            forgotten: Mutex::new(Default::default()),
        }
    }

    /// Whether controller `id` was forgotten.
    pub fn is_forgotten(&self, id: &NodeId) -> bool {
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Replaces the set of forgotten controllers.
    pub fn set_forgotten(&self, ids: std::collections::BTreeSet<NodeId>) {
        *self.forgotten.lock().unwrap_or_else(|e| e.into_inner()) = ids;
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

    /// Whether writes are let through yet (see `Store::settle`).
    pub fn is_settled(&self) -> bool {
        self.settled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Notes a complete exchange with `peer` that this controller asked for at `at`.
    pub fn note_complete_exchange(&self, peer: &NodeId, at: std::time::Instant) {
        let mut m = self.sync_times.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(peer.clone()).or_insert(at);
        if *e < at {
            *e = at;
        }
    }

    /// When the last complete exchange with `peer` asked for by this controller began.
    pub fn last_complete_exchange(&self, peer: &NodeId) -> Option<std::time::Instant> {
        self.sync_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .copied()
    }

    /// Counts and (once a minute) logs records a peer sent that were held back.
    pub fn note_held(
        &self,
        from: &NodeId,
        held: &[(redcloud_common::replication::Origin, u64, u64)],
    ) {
        if held.is_empty() {
            return;
        }
        self.metrics.records_held_clock_ahead.add(held.len() as u64);
        let mut last = self.held_logged.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
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

    /// Every controller collection must hear from: live controller records, peers,
    /// and controllers chunkservers report talking to, minus forgotten ones. Never
    /// this controller.
    pub async fn members(&self) -> crate::error::Result<std::collections::BTreeSet<NodeId>> {
        let (known, forgotten) = self
            .db
            .call(|s| {
                Ok((
                    meta::controllers(s.conn())?,
                    meta::forgotten_controllers(s.conn())?,
                ))
            })
            .await?;
        let mut out: std::collections::BTreeSet<NodeId> =
            known.into_iter().map(|(id, _, _)| id).collect();
        out.extend(self.peers.all().into_iter().filter_map(|p| p.node_id));
        out.extend(
            self.registry
                .reported_controllers()
                .into_iter()
                .map(|c| c.node_id),
        );
        out.retain(|n| *n != self.id && !forgotten.contains(n));
        Ok(out)
    }

    /// Records what collector `which` waits for (shown by `cluster status`); the
    /// time a wait began is kept while it lasts.
    pub fn set_gc_waits(&self, which: &'static str, mut waits: Vec<GcWait>) {
        let mut m = self.gc_waits.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.hlc.wall_ms();
        let old = m.remove(which).unwrap_or_default();
        for w in &mut waits {
            let kept = old
                .iter()
                .find(|o| o.node == w.node && o.reason == w.reason);
            w.since_ms = match kept {
                Some(o) => o.since_ms,
                None if w.since_ms == 0 => now,
                None => w.since_ms,
            };
        }
        m.insert(which, waits);
    }

    /// What each collector waits for.
    pub fn gc_waits(&self) -> Vec<(&'static str, GcWait)> {
        self.gc_waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flat_map(|(k, v)| v.iter().map(|w| (*k, w.clone())))
            .collect()
    }

    /// The gRPC address other nodes reach this controller at.
    pub fn grpc_addr(&self) -> String {
        self.addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The internal HTTP address other controllers reach this one at.
    pub fn http_addr(&self) -> String {
        self.addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Detects the advertised addresses again (when not configured). Returns the new
    /// (gRPC, HTTP) pair if they changed.
    /// The IP is the one used to reach `peers` (see `advertise_addr_towards`).
    pub fn redetect_addrs(&self, peers: &[std::net::SocketAddr]) -> Option<(String, String)> {
        let (grpc, http) = self.detect_from?;
        let now = detect_addrs(None, grpc, http, peers);
        let mut cur = self.addrs.write().unwrap_or_else(|e| e.into_inner());
        if *cur == now {
            return None;
        }
        *cur = now.clone();
        Some(now)
    }

    /// A client for the chunkserver at `addr` (connections are reused).
    pub fn chunk_client(&self, addr: &str) -> Result<ChunkClient, ChunkCallError> {
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
        let c = ChunkClient::new(addr, ch).with_secret(self.config.cluster_secret.as_deref());
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A call to chunkserver `id` at `addr` failed as unreachable or timed out: it is
    /// not picked again until its next heartbeat, and its cached connection is
    /// dropped. A connection whose path died (this container moved to another
    /// network and back, or the peer's address was reused) can look open while
    /// every call on it hangs until its timeout; the next call dials afresh.
    pub fn chunk_call_failed(&self, id: &NodeId, addr: &str) {
        self.registry.report_failure(id, addr);
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr);
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
                        healthy,
                    },
                    false,
                ) => {
                    let cs = r.key.split_once('/').map(|(c, _)| c).unwrap_or(&r.key);
                    if let Ok(id) = NodeId::new(cs) {
                        chunkservers.push((
                            crate::model::ChunkserverRecord {
                                node_id: id,
                                grpc_addr: grpc_addr.clone(),
                                http_addr: http_addr.clone(),
                            },
                            *healthy,
                        ));
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

    /// The repair worker's last findings.
    pub fn repair_report(&self) -> crate::repair::RepairReport {
        self.repair_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Marks chunks as used by an upload in progress (`start`) or no longer.
    pub fn track_in_flight(&self, chunks: &[redcloud_common::ChunkId], start: bool) {
        let mut m = self
            .in_flight_chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
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

    pub fn is_in_flight(&self, chunk: &redcloud_common::ChunkId) -> bool {
        self.in_flight_chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(chunk)
    }

    /// Hands new records to push gossip (not back to `from`, where they came from).
    pub fn publish(&self, records: Vec<Record>, from: Option<NodeId>) {
        if records.is_empty() {
            return;
        }
        {
            use crate::records::Table;
            if records
                .iter()
                .any(|r| matches!(r.table(), Table::Files | Table::Chunks | Table::Deletions))
            {
                self.search_wakeup.notify_one();
            }
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
