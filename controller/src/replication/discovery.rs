//! Finding the other controllers: resolve the configured names (the `controller`
//! DNS alias, or static seeds) every `DISCOVERY_INTERVAL`, register with every
//! address found, and learn the controllers the database knows (spread by gossip).

use std::sync::Arc;

use redcloud_common::discovery::Resolver;
use tokio_util::sync::CancellationToken;

use super::PeerInfo;
use crate::db;
use crate::node::Node;

/// The controllers' HTTP port, used when a peer name carries no port.
pub const CONTROLLER_HTTP_PORT: u16 = 8701;

/// Runs until `shutdown`.
///
/// While some address behind the names does not answer (at start, peers are often
/// still starting), passes repeat every second rather than every interval.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let resolver = Resolver::new();
    let quick = node
        .config
        .discovery_interval
        .min(std::time::Duration::from_secs(1));
    loop {
        let everyone_answered = discover_once(&node, &resolver).await;
        let wait = if everyone_answered {
            node.config.discovery_interval
        } else {
            quick
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One discovery pass. Returns whether every address found answered.
pub async fn discover_once(node: &Arc<Node>, resolver: &Resolver) -> bool {
    refresh_from_db(node).await;
    let addrs = resolver
        .resolve_all(&node.config.peers, CONTROLLER_HTTP_PORT)
        .await;
    // Detected from the route to the peers found (not the default route: on a swarm
    // overlay network that is docker_gwbridge, which other containers cannot reach).
    if let Some((grpc, http)) = node.redetect_addrs(&addrs) {
        tracing::info!(%grpc, %http, "this controller's address changed");
        let id = node.id.clone();
        match node
            .db
            .call(move |s| db::upsert_controller(s, &id, &grpc, &http))
            .await
        {
            Ok(written) => node.publish(written, None),
            Err(e) => tracing::warn!("cannot record the new address: {e}"),
        }
    }
    let me = PeerInfo {
        node_id: node.id.clone(),
        grpc_addr: node.grpc_addr(),
        http_addr: node.http_addr(),
    };
    let body = match serde_json::to_vec(&me) {
        Ok(b) => bytes::Bytes::from(b),
        Err(_) => return false,
    };
    let mut all_ok = true;
    for addr in addrs {
        let addr = addr.to_string();
        if addr == node.http_addr() || is_self(node, &addr) {
            continue;
        }
        match node
            .net
            .post(&addr, "/internal/peers/register", body.clone())
            .await
        {
            Ok(answer) => match serde_json::from_slice::<Vec<PeerInfo>>(&answer) {
                Ok(list) => {
                    // The answer lists the answering controller first.
                    let answered = list.first().map(|p| p.http_addr.clone());
                    for p in list {
                        if p.node_id != node.id
                            && node.peers.upsert(
                                Some(p.node_id.clone()),
                                &p.http_addr,
                                &p.grpc_addr,
                            )
                        {
                            tracing::info!(peer = %p.node_id, http = %p.http_addr, "discovered controller");
                        }
                    }
                    if let Some(a) = answered {
                        node.peers.mark_ok(&a);
                    }
                }
                Err(e) => tracing::debug!("bad peer list from {addr}: {e}"),
            },
            Err(e) => {
                all_ok = false;
                tracing::debug!("cannot register with {addr}: {e}");
            }
        }
    }
    all_ok
}

/// Whether `addr` is one of this node's own listening addresses (a DNS alias
/// resolves to us too; we may be bound on 0.0.0.0).
fn is_self(node: &Node, addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let mine = node.http_addr();
    let Some((_, my_port)) = mine.rsplit_once(':') else {
        return false;
    };
    port == my_port && (host == "127.0.0.1" || mine.starts_with(&format!("{host}:")))
}

/// Adds the controllers recorded in the database to the peer set.
pub async fn refresh_from_db(node: &Arc<Node>) {
    match node.db.call(|s| db::controllers(&s.conn)).await {
        Ok(list) => {
            for (id, grpc, http) in list {
                if id != node.id && node.peers.upsert(Some(id.clone()), &http, &grpc) {
                    tracing::info!(peer = %id, %http, "learned controller from replicated state");
                }
            }
        }
        Err(e) => tracing::warn!("cannot read controllers: {e}"),
    }
}
