//! The chunkserver's HTTP routes: `GET /health` and `GET /metrics`.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use redcloud_common::http::{HttpRequest, HttpResponse};
use redcloud_common::wire::Health;

use crate::node::Node;

pub async fn route(node: Arc<Node>, req: HttpRequest) -> HttpResponse {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/health") => HttpResponse::json(
            StatusCode::OK,
            &Health {
                status: "ok".into(),
                node_id: node.id.clone(),
                role: "chunkserver".into(),
            },
        ),
        (&Method::GET, "/metrics") => HttpResponse::metrics(node.render_metrics()),
        _ => HttpResponse::not_found(),
    }
}
