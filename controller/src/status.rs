//! What `cluster status` and the admin API report about the cluster, computed
//! once for both: the gRPC `ClusterStatus` answer, each controller's state digest,
//! search indexing progress, and the verdict (healthy / degraded / unavailable)
//! with its reasons.

use std::collections::HashSet;
use std::sync::Arc;

use redcloud_proto::controller as pb;

use crate::error::ControllerError;
use crate::meta;
use crate::node::Node;

/// The cluster as this controller sees it now.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    /// The answer gRPC `ClusterStatus` gives.
    pub status: pb::ClusterStatusResponse,
    /// Each controller's state digest as it answered just now, in the order of
    /// `status.controllers` (`None`: it did not answer).
    pub controller_digests: Vec<Option<String>>,
    /// How long ago this controller last exchanged messages successfully with each
    /// controller, in the order of `status.controllers` (`None`: never, or itself).
    pub last_exchange_ms: Vec<Option<u64>>,
    /// Current books in this controller's search index...
    pub indexed_books: u64,
    /// ...and current books not indexed yet.
    pub pending_books: u64,
}

/// The part of `GET /internal/state` read here.
#[derive(serde::Deserialize)]
struct PeerState {
    digest: String,
}

/// Gathers the report: metadata from the database, chunkservers from the
/// registry, and short live checks of every node (in parallel; a node that does
/// not answer within 400 ms makes the answer partial rather than slow).
pub async fn cluster_status(node: &Arc<Node>) -> Result<ClusterReport, ControllerError> {
    let (controllers, files, live, digest, vector) = node
        .db
        .call(|s| {
            let c = s.conn();
            Ok((
                meta::controllers(c)?,
                meta::live_file_count(c)?,
                meta::live_chunk_locations(c)?,
                s.digest()?,
                s.vector(),
            ))
        })
        .await?;
    let servers = node.registry.snapshot();
    let healthy: HashSet<_> = servers
        .iter()
        .filter(|s| s.healthy)
        .map(|s| s.record.node_id.clone())
        .collect();
    let under = live
        .values()
        .filter(|holders| healthy.iter().any(|h| !holders.contains(h)))
        .count() as u64;
    // Live checks, in parallel and short: a node that does not answer makes the
    // answer partial rather than slow.
    let check = std::time::Duration::from_millis(400);
    let cs_live = futures::future::join_all(servers.iter().map(|s| {
        let node = node.clone();
        let addr = s.record.grpc_addr.clone();
        async move {
            let c = node.chunks.client(&addr).ok()?;
            tokio::time::timeout(check, c.stat(&[])).await.ok()?.ok()
        }
    }))
    .await;
    // A controller's state answers both whether it is reachable and whether it
    // has converged with this one (equal digests).
    let own_digest = digest.to_hex();
    let ctl_digests: Vec<Option<String>> =
        futures::future::join_all(controllers.iter().map(|(id, _, http)| {
            let node = node.clone();
            let (me, http) = (id == &node.id, http.clone());
            let own = own_digest.clone();
            async move {
                if me {
                    return Some(own);
                }
                let answer = tokio::time::timeout(check, node.net.get(&http, "/internal/state"))
                    .await
                    .ok()?
                    .ok()?;
                let state: PeerState = serde_json::from_slice(&answer).ok()?;
                Some(state.digest)
            }
        }))
        .await;
    let ctl_live: Vec<bool> = ctl_digests.iter().map(Option::is_some).collect();
    let last_ok: std::collections::HashMap<String, std::time::Instant> = node
        .peers
        .all()
        .into_iter()
        .filter_map(|p| Some((p.node_id?.to_string(), p.last_ok?)))
        .collect();
    let last_exchange_ms: Vec<Option<u64>> = controllers
        .iter()
        .map(|(id, _, _)| {
            last_ok
                .get(&id.to_string())
                .map(|t| t.elapsed().as_millis() as u64)
        })
        .collect();
    let repair = node.repair_report();
    let status = pb::ClusterStatusResponse {
        controller_id: node.id.to_string(),
        controllers_answered: ctl_live.iter().filter(|r| **r).count() as u32,
        controllers: controllers
            .into_iter()
            .zip(ctl_live)
            .map(|((id, grpc, http), reachable)| pb::ControllerStatus {
                is_self: id == node.id,
                node_id: id.to_string(),
                grpc_address: grpc,
                http_address: http,
                reachable,
            })
            .collect(),
        chunkservers_answered: cs_live.iter().filter(|r| r.is_some()).count() as u32,
        chunkservers: servers
            .into_iter()
            .zip(cs_live)
            .map(|(s, live)| pb::ChunkserverStatus {
                node_id: s.record.node_id.to_string(),
                grpc_address: s.record.grpc_addr,
                healthy: s.healthy,
                answered: live.is_some(),
                chunk_count: live
                    .as_ref()
                    .map(|l| l.chunk_count)
                    .unwrap_or(s.chunk_count),
                capacity_bytes: live
                    .as_ref()
                    .map(|l| l.capacity_bytes)
                    .unwrap_or(s.capacity_bytes),
                used_bytes: live.as_ref().map(|l| l.used_bytes).unwrap_or(s.used_bytes),
                last_heartbeat_age_ms: s
                    .last_heartbeat_age
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(u64::MAX),
            })
            .collect(),
        file_count: files,
        chunk_count: live.len() as u64,
        min_chunk_replicas: node.config.min_chunk_replicas,
        under_replicated_chunks: under,
        state_digest: own_digest,
        version_vector: vector
            .0
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        repair_backlog: repair.missing_copies,
        lost_chunks: repair.lost_chunks,
        gc_waits: node
            .membership
            .gc_waits()
            .into_iter()
            .map(|(collector, w)| pb::GcWait {
                collector: collector.to_string(),
                node_id: w.node.to_string(),
                reason: w.reason,
                since_ms: w.since_ms,
            })
            .collect(),
        workers: node
            .workers
            .status()
            .into_iter()
            .map(|w| pb::WorkerStatus {
                name: w.name.to_string(),
                state: w.state.to_string(),
                units: w.units,
                errors: w.errors,
                last_error: w.last_error.unwrap_or_default(),
                last_error_age_ms: w.last_error_age_ms.unwrap_or(0),
                unit_ms: w.unit_ms,
            })
            .collect(),
        clock_skew_ms: node.hlc.skew_ms(),
        records_held_clock_ahead: node.metrics.records_held_clock_ahead.get(),
        members: node
            .membership
            .members()
            .await?
            .into_iter()
            .map(|m| m.to_string())
            .collect(),
    };
    let (indexed_books, pending_books) = node
        .search
        .progress()
        .await
        .map_err(|e| ControllerError::Unavailable(format!("search index: {e}")))?;
    Ok(ClusterReport {
        status,
        controller_digests: ctl_digests,
        last_exchange_ms,
        indexed_books,
        pending_books,
    })
}

/// How usable the cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every node answers and is healthy, every chunk has all its copies, and the
    /// controllers that answered hold the same state.
    Healthy,
    /// Books can be stored and read, but something is missing or behind.
    Degraded,
    /// No book can be stored or read: no healthy chunkserver.
    Unavailable,
}

/// The verdict on `r` and every reason for it (empty when healthy).
pub fn verdict(r: &ClusterReport) -> (Verdict, Vec<String>) {
    let s = &r.status;
    let mut reasons = Vec::new();
    let healthy = s.chunkservers.iter().filter(|c| c.healthy).count();
    if healthy == 0 {
        reasons.push(if s.chunkservers.is_empty() {
            "no chunkserver has registered: books can be neither stored nor read".to_string()
        } else {
            "no chunkserver is healthy: books can be neither stored nor read".to_string()
        });
        return (Verdict::Unavailable, reasons);
    }
    for c in s.chunkservers.iter().filter(|c| !c.healthy) {
        reasons.push(if c.last_heartbeat_age_ms == u64::MAX {
            format!(
                "chunkserver {} is failed (no heartbeat received)",
                c.node_id
            )
        } else {
            format!(
                "chunkserver {} is failed (last heartbeat {} s ago)",
                c.node_id,
                c.last_heartbeat_age_ms / 1000
            )
        });
    }
    for c in s.controllers.iter().filter(|c| !c.reachable) {
        reasons.push(format!("controller {} does not answer", c.node_id));
    }
    if s.lost_chunks > 0 {
        reasons.push(format!(
            "{} chunk(s) have no copy on a healthy chunkserver: books using them cannot be read",
            s.lost_chunks
        ));
    }
    if s.under_replicated_chunks > 0 {
        reasons.push(format!(
            "{} chunk(s) are missing from some healthy chunkserver (repair backlog: {} copies)",
            s.under_replicated_chunks, s.repair_backlog
        ));
    }
    let digests: HashSet<&String> = r.controller_digests.iter().flatten().collect();
    if digests.len() > 1 {
        reasons.push(format!(
            "controllers hold different state ({} distinct digests): not converged yet",
            digests.len()
        ));
    }
    if reasons.is_empty() {
        (Verdict::Healthy, reasons)
    } else {
        (Verdict::Degraded, reasons)
    }
}
