//! The chunkserver's HTTP routes: `GET /health` and `GET /metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use redcloud_common::wire::Health;

use crate::node::Node;

/// The chunkserver's routes; anything else is 404 (also a known path with another
/// method).
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(redcloud_common::http::not_found)
        .method_not_allowed_fallback(redcloud_common::http::not_found)
        .with_state(node)
}

async fn health(State(node): State<Arc<Node>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        node_id: node.id.clone(),
        role: "chunkserver".into(),
    })
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    redcloud_common::http::metrics(node.render_metrics())
}
