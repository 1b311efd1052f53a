//! Finding the other controllers: resolve the configured names (the `controller`
//! DNS alias, or static seeds) every `DISCOVERY_INTERVAL`, register with every
//! address found, and learn the controllers the database knows (spread by gossip).

use std::sync::Arc;
use std::time::Duration;

use redcloud_common::HlcTimestamp;
use redcloud_common::discovery::Resolver;

use super::{PeerInfo, Replica, clock_key};
use crate::meta;
use crate::workers::{BoxFuture, Worker, WorkerState};

/// The controllers' HTTP port, used when a peer name carries no port.
pub const CONTROLLER_HTTP_PORT: u16 = 8701;

/// The discovery worker. While some address behind the names does not answer (at
/// start, peers are often still starting), passes repeat every second rather than
/// every interval; a change to the controllers the database knows (learned by
/// gossip) is read at once.
pub struct Discovery {
    pub replica: Arc<Replica>,
    /// The names (DNS aliases or `host:port` seeds) peers are found behind.
    pub names: Vec<String>,
    pub interval: Duration,
    resolver: Resolver,
    everyone_answered: bool,
    refresh_only: bool,
}

impl Discovery {
    pub fn new(replica: Arc<Replica>, names: Vec<String>, interval: Duration) -> Discovery {
        Discovery {
            replica,
            names,
            interval,
            resolver: Resolver::new(),
            everyone_answered: false,
            refresh_only: false,
        }
    }
}

impl Worker for Discovery {
    fn name(&self) -> &'static str {
        "discovery"
    }

    fn work(&mut self) -> BoxFuture<'_, Result<WorkerState, String>> {
        Box::pin(async move {
            if std::mem::take(&mut self.refresh_only) {
                refresh_from_db(&self.replica).await;
            } else {
                self.everyone_answered =
                    discover_once(&self.replica, &self.names, &self.resolver).await;
                self.replica.discovery_pass_done();
            }
            Ok(WorkerState::Idle)
        })
    }

    fn wait_for_work(&mut self) -> BoxFuture<'_, ()> {
        let wait = if self.everyone_answered {
            self.interval
        } else {
            self.interval.min(Duration::from_secs(1))
        };
        let changed = self.replica.events.controllers_changed.clone();
        Box::pin(async move {
            tokio::select! {
                _ = changed.notified() => self.refresh_only = true,
                _ = tokio::time::sleep(wait) => {}
            }
        })
    }
}

/// One discovery pass. Returns whether every address found answered.
pub async fn discover_once(node: &Arc<Replica>, names: &[String], resolver: &Resolver) -> bool {
    refresh_from_db(node).await;
    let addrs = resolver.resolve_all(names, CONTROLLER_HTTP_PORT).await;
    // Detected from the route to the peers found (not the default route: on a swarm
    // overlay network that is docker_gwbridge, which other containers cannot reach).
    if let Some((grpc, http)) = node.addrs.redetect(&addrs) {
        tracing::info!(%grpc, %http, "this controller's address changed");
        let id = node.id.clone();
        match node
            .db
            .call(move |s| meta::upsert_controller(s, &id, &grpc, &http))
            .await
        {
            Ok(written) => node.events.publish(written, None),
            Err(e) => tracing::warn!("cannot record the new address: {e}"),
        }
    }
    let me = PeerInfo {
        node_id: node.id.clone(),
        grpc_addr: node.grpc_addr(),
        http_addr: node.http_addr(),
        clock_ms: Some(node.hlc.wall_ms()),
        hlc: None,
    };
    let body = match serde_json::to_vec(&me) {
        Ok(b) => bytes::Bytes::from(b),
        Err(_) => return false,
    };
    // Every address at once: one frozen or silent peer must not delay the others
    // (at start, a peer's clock is sampled from its answer before anything is
    // written here).
    let targets: Vec<String> = addrs
        .into_iter()
        .map(|a| a.to_string())
        .filter(|a| *a != node.http_addr() && !is_self(node, a))
        .collect();
    // Each answer is taken in as it arrives (its clock sample may be what the
    // start of this controller waits for).
    let calls = targets.iter().map(|addr| {
        let body = body.clone();
        async move {
            let sent = std::time::Instant::now();
            match node.net.post(addr, "/internal/peers/register", body).await {
                Ok(answer) => {
                    let rtt = sent.elapsed();
                    match serde_json::from_slice::<Vec<PeerInfo>>(&answer) {
                        Ok(list) => take_peer_list(node, list, rtt),
                        Err(e) => tracing::debug!("bad peer list from {addr}: {e}"),
                    }
                    true
                }
                Err(e) => {
                    tracing::debug!("cannot register with {addr}: {e}");
                    false
                }
            }
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .all(|ok| ok)
}

/// Takes in a registration answer: the answering controller first, with its clock,
/// then every controller it knows.
fn take_peer_list(node: &Replica, list: Vec<PeerInfo>, rtt: std::time::Duration) {
    let answered = list.first().map(|p| p.http_addr.clone());
    if let Some(first) = list.first()
        && let Some(ms) = first.clock_ms
    {
        node.hlc
            .note_answer_clock(clock_key(&first.node_id), ms, rtt);
    }
    // Past every timestamp the answering peer holds (bounded by the drift: a clock
    // far ahead does not drag this one along), before this life's first write.
    if let Some(h) = list.first().and_then(|p| p.hlc) {
        let h = HlcTimestamp(h);
        if h.millis() <= node.hlc.wall_ms().saturating_add(node.max_drift_ms) {
            node.hlc.observe(h);
        }
    }
    for p in list.into_iter().filter(|p| p.check().is_ok()) {
        if p.node_id != node.id
            && node
                .peers
                .upsert(Some(p.node_id.clone()), &p.http_addr, &p.grpc_addr)
        {
            tracing::info!(peer = %p.node_id, http = %p.http_addr, "discovered controller");
        }
    }
    if let Some(a) = answered {
        node.peers.mark_ok(&a);
    }
}

/// Whether `addr` is one of this node's own listening addresses (a DNS alias
/// resolves to us too; we may be bound on 0.0.0.0).
fn is_self(node: &Replica, addr: &str) -> bool {
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
pub async fn refresh_from_db(node: &Replica) {
    match node
        .db
        .call(|s| {
            Ok((
                meta::controllers(s.conn())?,
                meta::forgotten_controllers(s.conn())?,
            ))
        })
        .await
    {
        Ok((list, forgotten)) => {
            for id in &forgotten {
                node.peers.remove_id(id);
            }
            node.membership.set_forgotten(forgotten);
            for (id, grpc, http) in list {
                if id != node.id && node.peers.upsert(Some(id.clone()), &http, &grpc) {
                    tracing::info!(peer = %id, %http, "learned controller from replicated state");
                }
            }
        }
        Err(e) => tracing::warn!("cannot read controllers: {e}"),
    }
}
