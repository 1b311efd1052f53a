//! The controller's HTTP routes: `/health`, `/metrics`, the internal routes
//! (`/internal/...`: chunkserver heartbeats, gossip, anti-entropy, peers; they
//! need the cluster secret), the read-only admin API (`/api/v1/...`, in
//! `api.rs`) and the web dashboard over it (`/` and `/ui/...`, in
//! `dashboard.rs`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::StatusCode;
use redcloud_common::http::text;
use redcloud_common::wire::{Health, Heartbeat, HeartbeatAck};

use crate::error::ControllerError;
use crate::meta;
use crate::node::Node;
use crate::registry::Registry;
use crate::replication::Replica;
use crate::replication::{
    DELTA_BUDGET, PeerInfo, Push, PushAck, Summary, SummaryReply, decode, encode,
};
use crate::service::ControllerService;

/// Every route of a controller's HTTP port; anything else is 404 (also a known
/// path with another method).
pub fn router(node: Arc<Node>, service: ControllerService) -> Router {
    let internal = Router::new()
        .route("/internal/chunkserver/heartbeat", post(heartbeat_route))
        .route("/internal/gossip/receive", post(gossip_receive_route))
        .route("/internal/gossip/state-summary", post(state_summary_route))
        .route("/internal/peers/register", post(register_peer_route))
        .route("/internal/peers", get(list_peers_route))
        .route("/internal/state", get(state_route));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::router())
        .merge(internal)
        .fallback(redcloud_common::http::not_found)
        .method_not_allowed_fallback(redcloud_common::http::not_found)
        // On every path under /internal/, known or not, as before routing.
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            require_secret,
        ))
        .with_state(node.clone())
        .nest("/api/v1", crate::api::router(node, service))
}

/// Internal routes answer only calls carrying the cluster secret (when one is set).
async fn require_secret(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/internal/") {
        let given = req
            .headers()
            .get(redcloud_common::http::SECRET_HEADER)
            .and_then(|v| v.to_str().ok());
        if !redcloud_common::http::secret_allows(node.config.cluster_secret.as_deref(), given) {
            return text(
                StatusCode::UNAUTHORIZED,
                "missing or wrong cluster secret\n",
            );
        }
    }
    next.run(req).await
}

async fn health(State(node): State<Arc<Node>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        node_id: node.id.clone(),
        role: "controller".into(),
    })
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    redcloud_common::http::metrics(node.render_metrics())
}

async fn heartbeat_route(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    heartbeat(&node.replica, &node.registry, &body).await
}

async fn gossip_receive_route(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    gossip_receive(&node.replica, &body).await
}

async fn state_summary_route(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    state_summary(&node.replica, &body).await
}

async fn register_peer_route(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    register_peer(&node.replica, &body).await
}

async fn list_peers_route(State(node): State<Arc<Node>>) -> Response {
    list_peers(&node.replica)
}

async fn state_route(State(node): State<Arc<Node>>) -> Response {
    state(&node.replica).await
}

async fn heartbeat(node: &Arc<Replica>, registry: &Registry, body: &[u8]) -> Response {
    let hb: Heartbeat = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => return refused(node, "heartbeat", e),
    };
    if let Err(e) = hb.check() {
        return refused(node, "heartbeat", e);
    }
    node.metrics.heartbeats.inc();
    let outcome = match registry.heartbeat(&hb) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(node = %hb.node_id, "refused a heartbeat: {e}");
            return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"));
        }
    };
    // A controller the chunkserver talks to that we have not heard of: a member
    // (chunk collection waits for a complete exchange with it), so talk to it.
    for c in &hb.controllers {
        if c.node_id != node.id
            && !node.membership.is_forgotten(&c.node_id)
            && !node.peers.knows_id(&c.node_id)
            && node.peers.upsert(Some(c.node_id.clone()), &c.http_addr, "")
        {
            tracing::info!(peer = %c.node_id, http = %c.http_addr, "learned of a controller from a chunkserver's heartbeat");
        }
    }
    if outcome.wake_repair {
        node.events.repair_wakeup.notify_one();
    }
    if let Err(e) = crate::health::record_changes(node, registry, outcome.persist).await {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
    }
    let mut controllers: Vec<String> = node.peers.all().into_iter().map(|p| p.http_addr).collect();
    controllers.push(node.http_addr());
    Json(HeartbeatAck {
        controller_id: node.id.clone(),
        controllers,
    })
    .into_response()
}

fn binary(body: bytes::Bytes) -> Response {
    (
        [(hyper::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response()
}

fn malformed(what: &str, e: impl std::fmt::Display) -> Response {
    text(StatusCode::BAD_REQUEST, format!("malformed {what}: {e}\n"))
}

fn internal(e: impl std::fmt::Display) -> Response {
    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
}

/// A message from a peer refused before anything in it was applied: counted,
/// logged, answered 400.
fn refused(node: &Replica, what: &str, e: impl std::fmt::Display) -> Response {
    node.metrics.peer_messages_refused.inc();
    tracing::warn!("refused a malformed {what} from a peer: {e}");
    malformed(what, e)
}

/// Push gossip (and the last leg of anti-entropy): apply, and pass on what was new.
async fn gossip_receive(node: &Arc<Replica>, body: &[u8]) -> Response {
    let _one_at_a_time = node.apply_slot.acquire().await;
    let push: Push = match decode(body) {
        Ok(p) => p,
        Err(e) => return refused(node, "gossip push", e),
    };
    if let Err(e) = push.check() {
        return refused(node, "gossip push", e);
    }
    node.metrics
        .gossip_records_received
        .add(push.batch.records.len() as u64);
    let drift = node.max_drift_ms;
    let batch = push.batch;
    let applied = node.db.call(move |s| s.apply(batch, drift)).await;
    match applied {
        Ok(a) => {
            // The sender is learned (and counted as reachable) only once what it
            // sent was accepted: a refused push changes nothing here.
            node.peers
                .upsert(Some(push.from.clone()), &push.from_http, "");
            node.peers.mark_ok(&push.from_http);
            let ack = PushAck {
                from: node.id.clone(),
                clock_ms: node.hlc.wall_ms(),
                applied: a.changed.len() as u32,
                held: a.held.len() as u32,
            };
            node.note_held(&push.from, &a.held);
            node.events.learned(a.changed, Some(push.from));
            binary(encode(&ack))
        }
        Err(ControllerError::InvalidArgument(e)) => refused(node, "gossip push", e),
        Err(e) => internal(e),
    }
}

/// Pull anti-entropy, first leg: `Same` if our vectors hash alike, else our vector
/// and (given the sender's) what the sender lacks.
async fn state_summary(node: &Arc<Replica>, body: &[u8]) -> Response {
    let syn: Summary = match decode(body) {
        Ok(s) => s,
        Err(e) => return refused(node, "state summary", e),
    };
    if let Err(e) = syn.check() {
        return refused(node, "state summary", e);
    }
    node.peers
        .upsert(Some(syn.from.clone()), &syn.from_http, "");
    node.peers.mark_ok(&syn.from_http);
    let me = node.id.clone();
    let clock = node.hlc.clone();
    let now = node.hlc.wall_ms();
    let hash = syn.hash;
    let answer = node
        .db
        .call(move |s| {
            let ours = s.vector();
            if ours.hash() == syn.hash {
                meta::log::note_report(s.conn(), &syn.from, &ours, now)?;
                return Ok(SummaryReply::Same {
                    from: me,
                    clock_ms: clock.wall_ms(),
                });
            }
            let delta = match &syn.vector {
                Some(theirs) => {
                    // What the sender has seen; we do not hold its records yet.
                    meta::log::note_report(s.conn(), &syn.from, theirs, now)?;
                    Some(s.delta(theirs, DELTA_BUDGET)?)
                }
                None => None,
            };
            Ok(SummaryReply::Differs {
                from: me,
                clock_ms: clock.wall_ms(),
                vector: ours,
                delta,
            })
        })
        .await;
    match answer {
        Ok(reply) => {
            if matches!(reply, SummaryReply::Same { .. }) {
                node.peers.note_same(hash);
            }
            binary(encode(&reply))
        }
        Err(e) => internal(e),
    }
}

/// A controller announcing itself; the answer lists every controller we know.
async fn register_peer(node: &Arc<Replica>, body: &[u8]) -> Response {
    let p: PeerInfo = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return refused(node, "peer registration", e),
    };
    if let Err(e) = p.check() {
        return refused(node, "peer registration", e);
    }

    if p.node_id != node.id
        && node
            .peers
            .upsert(Some(p.node_id.clone()), &p.http_addr, &p.grpc_addr)
    {
        tracing::info!(peer = %p.node_id, http = %p.http_addr, "controller registered");
    }
    list_peers(node)
}

/// Every controller we know, this one included.
fn list_peers(node: &Replica) -> Response {
    let mut list = vec![PeerInfo {
        node_id: node.id.clone(),
        grpc_addr: node.grpc_addr(),
        http_addr: node.http_addr(),
        clock_ms: Some(node.hlc.wall_ms()),
        hlc: Some(node.hlc.peek().0),
    }];
    for p in node.peers.all() {
        if let Some(id) = p.node_id {
            list.push(PeerInfo {
                node_id: id,
                grpc_addr: p.grpc_addr,
                http_addr: p.http_addr,
                clock_ms: None,
                hlc: None,
            });
        }
    }
    Json(list).into_response()
}

/// This controller's replication state: digest and version vector (JSON).
async fn state(node: &Replica) -> Response {
    match node.db.call(|s| Ok((s.digest()?, s.vector()))).await {
        Ok((d, v)) => Json(serde_json::json!({
                "node_id": node.id,
                "digest": d.to_hex(),
                "vector": v.0.iter().map(|(o, s)| (o.to_string(), *s)).collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}
