//! The controller's HTTP routes: `/health`, `/metrics` and the internal routes
//! (`POST /internal/chunkserver/heartbeat`).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use redcloud_common::http::{HttpRequest, HttpResponse};
use redcloud_common::wire::{Health, Heartbeat, HeartbeatAck};

use crate::db;
use crate::node::Node;

pub async fn route(node: Arc<Node>, req: HttpRequest) -> HttpResponse {
    if req.path.starts_with("/internal/")
        && let Some(secret) = &node.config.cluster_secret
        && req.secret.as_deref() != Some(secret.as_str())
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
    if let Some(record) = node.registry.heartbeat(&hb) {
        let id = node.id.clone();
        let hlc = node.hlc.now();
        if let Err(e) = node
            .db
            .call(move |c| db::upsert_chunkserver(c, &record, &id, hlc))
            .await
        {
            return HttpResponse::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
        }
    }
    HttpResponse::json(
        StatusCode::OK,
        &HeartbeatAck {
            controller_id: node.id.clone(),
        },
    )
}
