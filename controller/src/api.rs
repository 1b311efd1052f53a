//! The read-only JSON admin API under `/api/v1/` (the web view and scripts use
//! it): the cluster's state and verdict, the public books, their download, and
//! search over them. It answers without a login, so it shows public books only:
//! never a private one, whoever owns it. Errors are JSON `{"error": "..."}` with
//! the matching HTTP status. Field names are stable; README.md documents them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use hyper::StatusCode;
use hyper::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use redcloud_proto::controller as pb;
use serde::{Deserialize, Serialize};

use crate::download;
use crate::error::ControllerError;
use crate::node::Node;
use crate::service::ControllerService;
use crate::status::{self, Verdict};

#[derive(Clone)]
struct Api {
    node: Arc<Node>,
    service: ControllerService,
}

/// The `/api/v1` routes (to be nested there).
pub fn router(node: Arc<Node>, service: ControllerService) -> Router {
    Router::new()
        .route("/cluster", get(cluster))
        .route("/files", get(files))
        .route("/files/{owner}/{name}", get(download_public))
        .route("/search", get(search))
        .fallback(no_such_route)
        .method_not_allowed_fallback(no_such_route)
        .with_state(Api { node, service })
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

impl IntoResponse for ControllerError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        if status.is_server_error() {
            tracing::warn!("admin API: {self}");
        }
        error(status, self.to_string())
    }
}

fn bad_query(e: QueryRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("malformed query parameters: {}", e.body_text()),
    )
}

async fn no_such_route() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route; see README.md for /api/v1/cluster, /api/v1/files, \
         /api/v1/files/{owner}/{name}, /api/v1/search",
    )
}

// ---- GET /api/v1/cluster ----

/// `GET /api/v1/cluster`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterView {
    pub verdict: Verdict,
    /// Why the verdict is not `healthy` (empty when it is).
    pub reasons: Vec<String>,
    /// Some node did not answer the live check: its figures are the last known.
    pub partial: bool,
    /// The controller that answered.
    pub controller: SelfView,
    pub controllers: Vec<ControllerView>,
    /// Every controller answered and all hold the same state digest.
    pub converged: bool,
    pub chunkservers: Vec<ChunkserverView>,
    pub files: u64,
    pub chunks: u64,
    pub min_chunk_replicas: u32,
    pub under_replicated_chunks: u64,
    pub lost_chunks: u64,
    /// Chunk copies missing on healthy chunkservers at the last repair pass.
    pub repair_backlog: u64,
    pub gc: GcView,
    pub search: SearchProgress,
    pub workers: Vec<WorkerView>,
    pub clock_skew_ms: i64,
    pub records_held_clock_ahead: u64,
    /// Controller ids chunk GC waits to hear from.
    pub members: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SelfView {
    pub node_id: String,
    pub version: String,
    pub uptime_ms: u64,
    pub state_digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ControllerView {
    pub node_id: String,
    pub grpc_address: String,
    pub http_address: String,
    pub is_self: bool,
    pub reachable: bool,
    /// Since the last successful message exchange (null: never, or itself).
    pub last_exchange_ms_ago: Option<u64>,
    /// Its state digest as it answered just now (null: no answer).
    pub state_digest: Option<String>,
    /// Its digest equals this controller's.
    pub converged: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChunkserverView {
    pub node_id: String,
    pub grpc_address: String,
    pub healthy: bool,
    /// It answered a live check just now.
    pub answered: bool,
    /// Since its last heartbeat (null: none received).
    pub last_heartbeat_ms_ago: Option<u64>,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub chunk_count: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GcView {
    /// Some collector is waiting (deletes nothing until it hears from a node).
    pub waiting: bool,
    pub waits: Vec<GcWaitView>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GcWaitView {
    pub collector: String,
    pub node_id: String,
    pub reason: String,
    pub since_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SearchProgress {
    pub indexed_books: u64,
    pub pending_books: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerView {
    pub name: String,
    pub state: String,
    pub units: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub last_error_ms_ago: Option<u64>,
    /// How long the current (or last) unit has run.
    pub unit_ms: u64,
}

async fn cluster(State(api): State<Api>) -> Result<Json<ClusterView>, ControllerError> {
    let report = status::cluster_status(&api.node).await?;
    let (verdict, reasons) = status::verdict(&report);
    let s = report.status;
    let own = s.state_digest.clone();
    let controllers: Vec<ControllerView> = s
        .controllers
        .into_iter()
        .zip(report.controller_digests)
        .zip(report.last_exchange_ms)
        .map(|((c, digest), last)| ControllerView {
            converged: digest.as_deref() == Some(own.as_str()),
            node_id: c.node_id,
            grpc_address: c.grpc_address,
            http_address: c.http_address,
            is_self: c.is_self,
            reachable: c.reachable,
            last_exchange_ms_ago: if c.is_self { None } else { last },
            state_digest: digest,
        })
        .collect();
    let partial = s.controllers_answered < controllers.len() as u32
        || s.chunkservers_answered < s.chunkservers.len() as u32;
    let converged = controllers.iter().all(|c| c.converged);
    Ok(Json(ClusterView {
        verdict,
        reasons,
        partial,
        controller: SelfView {
            node_id: s.controller_id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: api.node.started.elapsed().as_millis() as u64,
            state_digest: own,
        },
        controllers,
        converged,
        chunkservers: s.chunkservers.into_iter().map(chunkserver_view).collect(),
        files: s.file_count,
        chunks: s.chunk_count,
        min_chunk_replicas: s.min_chunk_replicas,
        under_replicated_chunks: s.under_replicated_chunks,
        lost_chunks: s.lost_chunks,
        repair_backlog: s.repair_backlog,
        gc: GcView {
            waiting: !s.gc_waits.is_empty(),
            waits: s
                .gc_waits
                .into_iter()
                .map(|w| GcWaitView {
                    collector: w.collector,
                    node_id: w.node_id,
                    reason: w.reason,
                    since_ms: w.since_ms,
                })
                .collect(),
        },
        search: SearchProgress {
            indexed_books: report.indexed_books,
            pending_books: report.pending_books,
        },
        workers: s
            .workers
            .into_iter()
            .map(|w| {
                let failed = !w.last_error.is_empty();
                WorkerView {
                    name: w.name,
                    state: w.state,
                    units: w.units,
                    errors: w.errors,
                    last_error: failed.then_some(w.last_error),
                    last_error_ms_ago: failed.then_some(w.last_error_age_ms),
                    unit_ms: w.unit_ms,
                }
            })
            .collect(),
        clock_skew_ms: s.clock_skew_ms,
        records_held_clock_ahead: s.records_held_clock_ahead,
        members: s.members,
    }))
}

fn chunkserver_view(c: pb::ChunkserverStatus) -> ChunkserverView {
    ChunkserverView {
        node_id: c.node_id,
        grpc_address: c.grpc_address,
        healthy: c.healthy,
        answered: c.answered,
        last_heartbeat_ms_ago: (c.last_heartbeat_age_ms != u64::MAX)
            .then_some(c.last_heartbeat_age_ms),
        capacity_bytes: c.capacity_bytes,
        used_bytes: c.used_bytes,
        free_bytes: c.capacity_bytes.saturating_sub(c.used_bytes),
        chunk_count: c.chunk_count,
    }
}

// ---- GET /api/v1/files ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesQuery {
    #[serde(default)]
    prefix: String,
    /// Books per page (default 1000, at most 5000).
    #[serde(default)]
    limit: u32,
    /// `next_page_token` of the previous page.
    #[serde(default)]
    page_token: String,
}

/// `GET /api/v1/files`: a page of public books.
#[derive(Debug, Serialize, Deserialize)]
pub struct FilesView {
    pub files: Vec<FileView>,
    /// Pass as `page_token` for the next page; empty on the last page.
    pub next_page_token: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FileView {
    pub name: String,
    pub owner: String,
    pub size: u64,
    pub created_at_ms: u64,
    pub sha256: String,
    pub file_id: String,
    /// Path of its download on this port.
    pub download: String,
}

async fn files(State(api): State<Api>, q: Result<Query<FilesQuery>, QueryRejection>) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    match api
        .service
        .list_public(q.prefix, &q.page_token, q.limit)
        .await
    {
        Ok((files, next_page_token)) => Json(FilesView {
            files: files.into_iter().map(file_view).collect(),
            next_page_token,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

fn file_view(f: pb::FileInfo) -> FileView {
    FileView {
        download: download_path(&f.owner, &f.name),
        name: f.name,
        owner: f.owner,
        size: f.size,
        created_at_ms: f.created_at_ms,
        sha256: f.sha256,
        file_id: f.file_id,
    }
}

/// `/api/v1/files/{owner}/{name}` with both parts percent-encoded.
pub fn download_path(owner: &str, name: &str) -> String {
    format!(
        "/api/v1/files/{}/{}",
        percent_encode(owner),
        percent_encode(name)
    )
}

/// Every byte but the unreserved ones (RFC 3986) as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- GET /api/v1/files/{owner}/{name} ----

/// The current version of a public book, as bytes. A private book (or none) is
/// 404, the same answer, so the API does not tell which private names exist.
async fn download_public(
    State(api): State<Api>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ControllerError> {
    let not_found = || ControllerError::NotFound(format!("no public book '{name}' of {owner}"));
    let owner_id = match api.service.namespace(&None, &owner).await {
        Ok(id) => id,
        Err(ControllerError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e),
    };
    let opened = match download::open(&api.node.data, &owner_id, &name, None).await {
        Ok(o) => o,
        Err(ControllerError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e),
    };
    if !opened.file.public {
        return Err(not_found());
    }
    let Some(slot) = api.service.wait_for_transfer_slot().await else {
        return Err(ControllerError::Unavailable(
            crate::service::transfers_full(),
        ));
    };
    let size = opened.file.size;
    let disposition = format!(
        "attachment; filename*=UTF-8''{}",
        percent_encode(&opened.file.name)
    );
    let data = tokio_stream::wrappers::ReceiverStream::new(download::stream(
        api.node.data.clone(),
        opened,
        0,
    ))
    .map(move |r| {
        let _held_until_the_stream_ends = &slot;
        // An error mid-stream ends the body short of its length: the client sees
        // a broken download, never wrong bytes.
        r.map_err(|e| {
            tracing::warn!("admin API download: {e}");
            std::io::Error::other(e.to_string())
        })
    });
    let mut resp = Body::from_stream(data).into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

// ---- GET /api/v1/search ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: Option<String>,
    #[serde(default)]
    author: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    title: String,
    /// Hits wanted (default 10, at most 100).
    #[serde(default)]
    limit: u32,
}

/// `GET /api/v1/search?q=...`: ranked hits among public books.
#[derive(Debug, Serialize, Deserialize)]
pub struct SearchView {
    pub hits: Vec<HitView>,
    pub indexed_books: u64,
    pub pending_books: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HitView {
    pub rank: u32,
    pub name: String,
    pub owner: String,
    pub title: String,
    pub author: String,
    pub language: String,
    pub score: f64,
    /// The text around the match; each matched term between U+0002 and U+0003
    /// (as the index marks it; a page turns them into highlighting).
    pub snippet: String,
    pub file_id: String,
    pub download: String,
}

async fn search(State(api): State<Api>, q: Result<Query<SearchQuery>, QueryRejection>) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let Some(text) = q.q.filter(|t| !t.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "malformed query parameters: q (the search text) is required and not empty",
        );
    };
    let opt = |s: String| (!s.trim().is_empty()).then_some(s);
    let want = match q.limit {
        0 => 10,
        n => (n as usize).min(redcloud_search::index::MAX_LIMIT),
    };
    let query = redcloud_search::index::Query {
        text,
        author: opt(q.author),
        language: opt(q.language),
        title: opt(q.title),
        limit: want,
        offset: 0,
    };
    // Public books only: not even the anonymous owner's non-public ones.
    match api.service.search_visible(query, want, &|f| f.public).await {
        Ok((hits, indexed_books, pending_books)) => Json(SearchView {
            hits: hits
                .into_iter()
                .map(|h| HitView {
                    download: download_path(&h.owner, &h.name),
                    rank: h.rank,
                    name: h.name,
                    owner: h.owner,
                    title: h.title,
                    author: h.author,
                    language: h.language,
                    score: h.score,
                    snippet: h.snippet,
                    file_id: h.file_id,
                })
                .collect(),
            indexed_books,
            pending_books,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}
