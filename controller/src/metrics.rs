//! The controller's counters and gauges (exported on `/metrics` by `node.rs`).

use redcloud_common::metrics::{Counter, Gauge, RpcHistograms};

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
    /// Missing chunk copies counted over all repair passes.
    pub repair_backlog_seen: Counter,
    /// Latency of the gRPC calls this controller served.
    pub rpc: RpcHistograms,
}
