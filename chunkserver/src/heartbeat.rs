//! The heartbeat worker: every interval, find the controllers (DNS names or seeds)
//! and tell each this node's address, capacity, usage and chunk count.

use std::sync::Arc;
use std::time::Duration;

use redcloud_common::discovery::Resolver;
use redcloud_common::http::HttpClient;
use redcloud_common::wire::{Heartbeat, HeartbeatAck};
use tokio_util::sync::CancellationToken;

use crate::config::CONTROLLER_HTTP_PORT;
use crate::node::Node;

/// Runs until `shutdown`.
pub async fn run(
    node: Arc<Node>,
    controllers: Vec<String>,
    interval: Duration,
    secret: Option<String>,
    shutdown: CancellationToken,
) {
    let resolver = Resolver::new();
    let client = HttpClient::new(interval.max(Duration::from_secs(1)), secret);
    let mut last_reached = usize::MAX;
    // Controllers learned from heartbeat answers (their gossiped peer lists), with
    // consecutive failures; forgotten after a few, so departed ones stop costing time.
    let mut learned: std::collections::HashMap<String, u32> = Default::default();
    loop {
        let resolved = resolver
            .resolve_all(&controllers, CONTROLLER_HTTP_PORT)
            .await;
        let mut targets: Vec<String> = resolved.iter().map(|a| a.to_string()).collect();
        targets.extend(learned.keys().cloned());
        targets.sort();
        targets.dedup();
        let (capacity, free) = node.disk_space();
        let addrs = node.current_addrs(&resolved);
        let hb = Heartbeat {
            node_id: node.id.clone(),
            grpc_addr: addrs.0,
            http_addr: addrs.1,
            capacity_bytes: capacity,
            free_bytes: free,
            used_bytes: node.store.used_bytes(),
            chunk_count: node.store.chunk_count(),
            corrupt_found: node.metrics.corrupt_reads.get(),
        };
        if node
            .heartbeats_paused
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            continue;
        }
        let calls = targets.iter().map(|addr| {
            let client = client.clone();
            let hb = hb.clone();
            async move {
                client
                    .post_json::<_, HeartbeatAck>(addr, "/internal/chunkserver/heartbeat", &hb)
                    .await
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut reached = 0;
        for (addr, r) in targets.iter().zip(results) {
            match r {
                Ok(ack) => {
                    if let Some(f) = learned.get_mut(addr) {
                        *f = 0;
                    }
                    for c in ack.controllers {
                        learned.entry(c).or_insert(0);
                    }
                    reached += 1;
                    node.metrics.heartbeats_sent.inc();
                }
                Err(e) => {
                    node.metrics.heartbeat_failures.inc();
                    tracing::debug!("heartbeat failed: {e}");
                    if let Some(f) = learned.get_mut(addr) {
                        *f += 1;
                    }
                }
            }
        }
        learned.retain(|_, f| *f < 5);
        if reached != last_reached {
            if reached == 0 {
                tracing::warn!(controllers = ?controllers, "no controller reachable for heartbeats");
            } else {
                tracing::info!(
                    "heartbeats reach {reached} of {} controller(s)",
                    targets.len()
                );
            }
            last_reached = reached;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
