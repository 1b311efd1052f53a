//! The heartbeat worker: every interval, tell each controller this node's address,
//! capacity, usage and chunk count.
//!
//! Controllers are found by DNS names or seeds, resolved on a task of their own: a
//! resolution that stalls (a network alias not yet known on a network the container
//! was just moved to, a DNS server forwarding to one that does not answer) must not
//! delay heartbeats to the controllers already known, or every controller would
//! declare this node dead while it is reachable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use redcloud_common::NodeId;
use redcloud_common::discovery::Resolver;
use redcloud_common::http::HttpClient;
use redcloud_common::wire::{ControllerRef, Heartbeat, HeartbeatAck};

/// How long a controller that answered stays in the heartbeats' list.
const TALKED_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The most controllers learned from heartbeat answers (beyond those the names
/// resolve to): answers come from other nodes, so the set is bounded.
const MAX_LEARNED: usize = 1024;
use tokio::sync::watch;
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
    let client = HttpClient::new(interval.max(Duration::from_secs(1)), secret);
    let (tx, mut resolved_rx) = watch::channel::<Option<Vec<SocketAddr>>>(None);
    tokio::spawn(resolve_loop(
        controllers.clone(),
        interval,
        tx,
        shutdown.clone(),
    ));
    // The first heartbeat waits for the first resolution (nothing is known before).
    tokio::select! {
        _ = shutdown.cancelled() => return,
        r = resolved_rx.wait_for(Option::is_some) => if r.is_err() { return },
    }
    let mut last_reached = usize::MAX;
    // Controllers learned from heartbeat answers, at most MAX_LEARNED (their gossiped peer lists), with
    // consecutive failures; forgotten after a few, so departed ones stop costing time.
    let mut learned: std::collections::HashMap<String, u32> = Default::default();
    // This node's address is the one it uses to reach the controllers that answered
    // the last round (then the resolved ones): after a move to another network, the
    // names may still resolve to addresses on the old one for a while, and an
    // address detected towards those would be routed by default (on an overlay
    // network via `docker_gwbridge`, which no other container can reach).
    let mut answered: Vec<SocketAddr> = Vec::new();
    // The address last detected that way, and whether towards a controller on a
    // directly attached network: that one is kept while no controller known is on
    // one (just after a move, the known addresses are all on the old network).
    let mut last_addrs: Option<((String, String), bool)> = None;
    // Controllers that answered, by id: reported in every heartbeat for an hour
    // after their last answer, so every controller's chunk collection waits for
    // each of them (also one no other controller has heard of yet).
    let mut talked: std::collections::HashMap<NodeId, (String, std::time::Instant)> =
        Default::default();
    loop {
        talked.retain(|_, (_, at)| at.elapsed() < TALKED_TTL);
        let resolved = resolved_rx.borrow_and_update().clone().unwrap_or_default();
        let mut targets: Vec<String> = resolved.iter().map(|a| a.to_string()).collect();
        targets.extend(learned.keys().cloned());
        targets.sort();
        targets.dedup();
        let (capacity, free) = node.disk_space();
        let towards: Vec<SocketAddr> = answered.iter().chain(&resolved).copied().collect();
        let on_link = redcloud_common::discovery::ip_towards(&towards).is_some_and(|(_, l)| l);
        let addrs = match &last_addrs {
            Some((a, true)) if !on_link => a.clone(),
            Some((a, _)) if towards.is_empty() => a.clone(),
            _ => {
                let a = node.current_addrs(&towards);
                if !towards.is_empty() {
                    last_addrs = Some((a.clone(), on_link));
                }
                a
            }
        };
        let hb = Heartbeat {
            node_id: node.id.clone(),
            grpc_addr: addrs.0,
            http_addr: addrs.1,
            capacity_bytes: capacity,
            free_bytes: free,
            used_bytes: node.store.used_bytes(),
            chunk_count: node.store.chunk_count(),
            corrupt_found: node.metrics.corrupt_reads.get(),
            controllers: talked
                .iter()
                .map(|(id, (addr, _))| ControllerRef {
                    node_id: id.clone(),
                    http_addr: addr.clone(),
                })
                .collect(),
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
        answered.clear();
        for (addr, r) in targets.iter().zip(results) {
            match r {
                Ok(ack) => {
                    answered.extend(addr.parse::<SocketAddr>());
                    if let Some(f) = learned.get_mut(addr) {
                        *f = 0;
                    }
                    for c in ack.controllers {
                        if learned.len() >= MAX_LEARNED {
                            break;
                        }
                        learned.entry(c).or_insert(0);
                    }
                    talked.insert(
                        ack.controller_id.clone(),
                        (addr.clone(), std::time::Instant::now()),
                    );
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

/// Resolves `controllers` every `interval` and publishes the addresses; a slow
/// resolution delays only the next one.
async fn resolve_loop(
    controllers: Vec<String>,
    interval: Duration,
    tx: watch::Sender<Option<Vec<SocketAddr>>>,
    shutdown: CancellationToken,
) {
    let resolver = Resolver::new();
    loop {
        let started = tokio::time::Instant::now();
        let resolved = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = resolver.resolve_all(&controllers, CONTROLLER_HTTP_PORT) => r,
        };
        let took = started.elapsed();
        if took > interval * 3 {
            tracing::warn!(
                ?controllers,
                "resolving the controllers took {:.1} s; heartbeats went on to the ones already known",
                took.as_secs_f64()
            );
        }
        if tx.send(Some(resolved)).is_err() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
