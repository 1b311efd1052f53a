//! The controller's HTTP routes: `/health`, `/metrics` and the internal routes
//! (`POST /internal/chunkserver/heartbeat`).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use redcloud_common::http::{HttpRequest, HttpResponse};
use redcloud_common::wire::{Health, Heartbeat, HeartbeatAck};

use crate::node::Node;
use crate::replication::{
    DELTA_LIMIT, PeerInfo, Push, PushAck, Summary, SummaryReply, decode, encode,
};

pub async fn route(node: Arc<Node>, req: HttpRequest) -> HttpResponse {
    if req.path.starts_with("/internal/")
        && !redcloud_common::http::secret_allows(
            node.config.cluster_secret.as_deref(),
            req.secret.as_deref(),
        )
    {
        return HttpResponse::text(
            StatusCode::UNAUTHORIZED,
            "missing or wrong cluster secret\n",
        );
    }
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/health") => HttpResponse::json(
            StatusCode::OK,
            &Health {
                status: "ok".into(),
                node_id: node.id.clone(),
                role: "controller".into(),
            },
        ),
        (&Method::GET, "/metrics") => HttpResponse::metrics(node.render_metrics()),
        (&Method::POST, "/internal/chunkserver/heartbeat") => heartbeat(node, &req.body).await,
        (&Method::POST, "/internal/gossip/receive") => gossip_receive(node, &req.body).await,
        (&Method::POST, "/internal/gossip/state-summary") => state_summary(node, &req.body).await,
        (&Method::POST, "/internal/peers/register") => register_peer(node, &req.body).await,
        (&Method::GET, "/internal/peers") => list_peers(node).await,
        (&Method::GET, "/internal/state") => state(node).await,
        _ => HttpResponse::not_found(),
    }
}

async fn heartbeat(node: Arc<Node>, body: &[u8]) -> HttpResponse {
    let hb: Heartbeat = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => {
            return HttpResponse::text(
                StatusCode::BAD_REQUEST,
                format!("malformed heartbeat: {e}\n"),
            );
        }
    };
    node.metrics.heartbeats.inc();
    let outcome = node.registry.heartbeat(&hb);
    if outcome.wake_repair {
        node.repair_wakeup.notify_one();
    }
    if let Err(e) = crate::health::record_changes(&node, outcome.persist).await {
        return HttpResponse::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
    }
    let mut controllers: Vec<String> = node.peers.all().into_iter().map(|p| p.http_addr).collect();
    controllers.push(node.http_addr());
    HttpResponse::json(
        StatusCode::OK,
        &HeartbeatAck {
            controller_id: node.id.clone(),
            controllers,
        },
    )
}

fn binary(body: bytes::Bytes) -> HttpResponse {
    HttpResponse {
        status: StatusCode::OK,
        content_type: "application/octet-stream",
        body,
    }
}

fn malformed(what: &str, e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::text(StatusCode::BAD_REQUEST, format!("malformed {what}: {e}\n"))
}

fn internal(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
}

/// Push gossip (and the last leg of anti-entropy): apply, and pass on what was new.
async fn gossip_receive(node: Arc<Node>, body: &[u8]) -> HttpResponse {
    let push: Push = match decode(body) {
        Ok(p) => p,
        Err(e) => return malformed("gossip push", e),
    };
    node.peers
        .upsert(Some(push.from.clone()), &push.from_http, "");
    node.peers.mark_ok(&push.from_http);
    if push.complete_from.is_some() {
        // The last leg of an exchange the sender started: we are in sync with it.
        node.peers.set_needs_sync(&push.from_http, false);
    }
    node.metrics
        .gossip_records_received
        .add(push.records.len() as u64);
    let (records, superseded, complete) = (push.records, push.superseded, push.complete_from);
    let from = push.from.clone();
    let applied = node
        .db
        .call(move |s| {
            let changed = s.apply_delta(records, &superseded, complete.as_ref())?;
            if let Some(vv) = &complete {
                s.note_peer_vector(&from, vv, None)?;
            }
            Ok(changed)
        })
        .await;
    match applied {
        Ok(changed) => {
            let applied = changed.len() as u32;
            node.learned(changed, Some(push.from)).await;
            binary(encode(&PushAck { applied }))
        }
        Err(e) => internal(e),
    }
}

/// Pull anti-entropy, first leg: answer with our vector and what the sender lacks.
async fn state_summary(node: Arc<Node>, body: &[u8]) -> HttpResponse {
    let syn: Summary = match decode(body) {
        Ok(s) => s,
        Err(e) => return malformed("state summary", e),
    };
    node.peers
        .upsert(Some(syn.from.clone()), &syn.from_http, "");
    node.peers.mark_ok(&syn.from_http);
    let (from, theirs) = (syn.from, syn.vector);
    let answer = node
        .db
        .call(move |s| {
            // What the sender has seen; we do not hold its records yet.
            s.note_peer_vector(&from, &theirs, None)?;
            let delta = s.delta(&theirs, DELTA_LIMIT)?;
            Ok((s.vector(), delta))
        })
        .await;
    match answer {
        Ok((vector, delta)) => binary(encode(&SummaryReply {
            from: node.id.clone(),
            vector,
            delta,
        })),
        Err(e) => internal(e),
    }
}

/// A controller announcing itself; the answer lists every controller we know.
async fn register_peer(node: Arc<Node>, body: &[u8]) -> HttpResponse {
    let p: PeerInfo = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return malformed("peer registration", e),
    };
    if p.node_id != node.id
        && node
            .peers
            .upsert(Some(p.node_id.clone()), &p.http_addr, &p.grpc_addr)
    {
        tracing::info!(peer = %p.node_id, http = %p.http_addr, "controller registered");
    }
    list_peers(node).await
}

/// Every controller we know, this one included.
async fn list_peers(node: Arc<Node>) -> HttpResponse {
    let mut list = vec![PeerInfo {
        node_id: node.id.clone(),
        grpc_addr: node.grpc_addr(),
        http_addr: node.http_addr(),
    }];
    for p in node.peers.all() {
        if let Some(id) = p.node_id {
            list.push(PeerInfo {
                node_id: id,
                grpc_addr: p.grpc_addr,
                http_addr: p.http_addr,
            });
        }
    }
    HttpResponse::json(StatusCode::OK, &list)
}

/// This controller's replication state: digest and version vector (JSON).
async fn state(node: Arc<Node>) -> HttpResponse {
    match node.db.call(|s| Ok((s.digest()?, s.vector()))).await {
        Ok((d, v)) => HttpResponse::json(
            StatusCode::OK,
            &serde_json::json!({ "node_id": node.id, "digest": d.to_hex(), "vector": v }),
        ),
        Err(e) => internal(e),
    }
}
