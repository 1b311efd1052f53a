//! HTTP/1.1 for the internal routes, `/health`, `/metrics` and the admin API: the
//! server side is an axum [`Router`] behind tower-http layers, accepted by a loop
//! that caps connections and header time; the client side is a JSON client with
//! timeouts for node-to-node calls.
//!
//! Every router served by [`serve`] gets the same protections:
//! - at most [`MAX_CONNECTIONS`] connections at once (more are closed at once);
//! - request headers within [`HEADER_DEADLINE`] (hyper closes the connection);
//! - request bodies of at most [`MAX_BODY_BYTES`] (413 once the limit is passed),
//!   complete within [`BODY_DEADLINE`] (408, and the connection is closed);
//! - handlers answer within [`HANDLER_DEADLINE`] (503);
//! - a debug-level tracing span per request;
//! - graceful shutdown: on cancellation no new connection is taken and open ones
//!   finish their current request (for at most [`DRAIN_DEADLINE`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request as AxumRequest};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as AxumResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{
    DefaultMakeSpan, DefaultOnFailure, DefaultOnRequest, DefaultOnResponse, TraceLayer,
};
use tracing::Level;

/// Request bodies larger than this are refused with 413 before they are buffered.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The longest a request's headers may take to arrive.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// The longest a request's body may take to arrive, once its headers have (16 MiB
/// in this time is 1.6 MB/s: a body trickled in slowly is dropped, and the
/// connection with it).
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The longest a handler may take once the body is in (503 after it). Longer than
/// any node-to-node call waits (10 s), so no peer sees it in normal operation.
pub const HANDLER_DEADLINE: Duration = Duration::from_secs(30);

/// How long open connections get to finish their request at shutdown.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The most connections one HTTP server serves at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// A plain-text answer (`text/plain; charset=utf-8`).
pub fn text(status: StatusCode, body: impl Into<String>) -> AxumResponse {
    (status, body.into()).into_response()
}

/// A `/metrics` answer: OpenMetrics text (`crate::metrics::encode`).
pub fn metrics(body: String) -> AxumResponse {
    (
        [(hyper::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// The answer to a path no route serves.
pub async fn not_found() -> AxumResponse {
    text(StatusCode::NOT_FOUND, "no such route\n")
}

/// `router` with the protections every server here has (see the module doc).
pub fn protect(router: Router) -> Router {
    // Layers run outside in: the last added runs first.
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            HANDLER_DEADLINE,
        ))
        .layer(axum::middleware::from_fn(read_body_within_deadline))
        // axum's extractors have their own (2 MB) default; ours is the one limit.
        // Not tower-http's RequestBodyLimitLayer: it answers 413 on the
        // content-length before reading anything and closes, and a hyper client
        // still sending the body sees a broken connection instead of the 413.
        // Reading up to the limit first (as `read_body_within_deadline` does)
        // lets the client read the answer.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // Handlers log their own refusals; a 5xx is not a server fault here.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
}

/// Reads the whole body within [`BODY_DEADLINE`] and at most [`MAX_BODY_BYTES`]
/// before the handler runs, so the handler's own deadline does not count a slow
/// client's time, and a trickled body loses its connection.
async fn read_body_within_deadline(req: AxumRequest, next: Next) -> AxumResponse {
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Err(_) => {
            tracing::debug!(%peer, "http: request body not complete within {BODY_DEADLINE:?}; dropped");
            let mut r = text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not complete within {} s\n",
                    BODY_DEADLINE.as_secs()
                ),
            );
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            r
        }
        Ok(Err(e)) if is_length_limit(&e) => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds {MAX_BODY_BYTES} bytes\n"),
        ),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, format!("bad request body: {e}\n")),
        Ok(Ok(bytes)) => {
            next.run(AxumRequest::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

/// Whether `e` (or what it wraps) is a body over its length limit.
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Serves `router` (with [`protect`]'s layers) over HTTP/1.1 on `listener` until
/// `shutdown` is cancelled, then lets open connections finish their current
/// request and returns.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let app = protect(router);
    let tracker = TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("http accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "http: {MAX_CONNECTIONS} connections open already; closing this one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("http connection from {peer}: {e}"); } }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_DEADLINE, conn).await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Header carrying the shared cluster secret on internal calls (HTTP and gRPC metadata).
pub const SECRET_HEADER: &str = "x-redcloud-secret";

/// Whether an internal call may pass: no secret is configured, or `given` equals it.
/// The comparison (`subtle`) takes the same time wherever the first difference is;
/// both sides are hashed first, so it does not depend on their lengths either.
pub fn secret_allows(expected: Option<&str>, given: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(expected) = expected else {
        return true;
    };
    let Some(given) = given else {
        return false;
    };
    let (a, b) = (
        crate::hash::sha256(expected.as_bytes()),
        crate::hash::sha256(given.as_bytes()),
    );
    a.ct_eq(&b).into()
}

/// Why an HTTP call failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url}: bad response: {reason}")]
    BadResponse { url: String, reason: String },
}

/// When another node last refused one of this process's calls for the cluster
/// secret (ms since the epoch): the warning is logged at most every 30 s.
static SECRET_REFUSED_WARNED_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Logs, at most every 30 s, that a node refused a call for the cluster secret:
/// otherwise a node started with the wrong secret (or none) only looks as if its
/// peers were unreachable.
fn warn_secret_refused(url: &str, have_secret: bool) {
    use std::sync::atomic::Ordering;
    let now = crate::now_ms();
    let last = SECRET_REFUSED_WARNED_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 30_000
        || SECRET_REFUSED_WARNED_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let ours = if have_secret {
        "this node's REDCLOUD_CLUSTER_SECRET differs from theirs"
    } else {
        "this node has no REDCLOUD_CLUSTER_SECRET and theirs is set"
    };
    tracing::warn!(
        %url,
        "a node refused this one's call for the cluster secret: {ours}; every node of a \
         cluster needs the same secret"
    );
}

/// A pooled HTTP/1.1 client for node-to-node calls.
#[derive(Clone)]
pub struct HttpClient {
    inner: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    timeout: Duration,
    secret: Option<String>,
}

impl HttpClient {
    /// A client whose connects and whole requests each get `timeout`.
    pub fn new(timeout: Duration, secret: Option<String>) -> Self {
        Self::with_timeouts(timeout, timeout, secret)
    }

    /// A client that gives up on a connect after `connect` (an unreachable peer is
    /// noticed fast) and on a whole request after `request` (a large answer from a
    /// busy peer still arrives).
    pub fn with_timeouts(connect: Duration, request: Duration, secret: Option<String>) -> Self {
        let timeout = request;
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect));
        let inner =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
        HttpClient {
            inner,
            timeout,
            secret,
        }
    }

    /// POSTs `body` as JSON to `http://{addr}{path}` and parses a JSON answer.
    pub async fn post_json<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
    ) -> Result<R, HttpError> {
        let url = format!("http://{addr}{path}");
        let payload = serde_json::to_vec(body).map_err(|e| HttpError::BadResponse {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let bytes = self
            .call(Method::POST, &url, Bytes::from(payload), "application/json")
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| HttpError::BadResponse {
            url,
            reason: e.to_string(),
        })
    }

    /// POSTs raw bytes to `http://{addr}{path}` and returns the answer's body.
    pub async fn post_bytes(
        &self,
        addr: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Bytes, HttpError> {
        let url = format!("http://{addr}{path}");
        self.call(Method::POST, &url, body, "application/octet-stream")
            .await
    }

    /// GETs `http://{addr}{path}` and returns the body.
    pub async fn get(&self, addr: &str, path: &str) -> Result<Bytes, HttpError> {
        let url = format!("http://{addr}{path}");
        self.call(Method::GET, &url, Bytes::new(), "application/json")
            .await
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<Bytes, HttpError> {
        let mut req = Request::builder()
            .method(method)
            .uri(url)
            .header(hyper::header::CONTENT_TYPE, content_type);
        if let Some(s) = &self.secret {
            req = req.header(SECRET_HEADER, s);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| HttpError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let fut = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| HttpError::Unreachable {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| HttpError::BadResponse {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            if status == StatusCode::UNAUTHORIZED {
                warn_secret_refused(url, self.secret.is_some());
            }
            if !status.is_success() {
                return Err(HttpError::Status {
                    url: url.to_string(),
                    status,
                    body: String::from_utf8_lossy(&body).trim().to_string(),
                });
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })?
    }
}

/// `<binary> healthcheck`: asks the node listening on `http_listen`'s port on this
/// host for `GET /health`. Returns whether it answered 200 within two seconds (the
/// container HEALTHCHECK; a `FROM scratch` image has no curl).
pub async fn healthcheck(http_listen: &str) -> bool {
    let port = http_listen.rsplit_once(':').map(|(_, p)| p).unwrap_or("0");
    let client = HttpClient::new(Duration::from_secs(2), None);
    client
        .get(&format!("127.0.0.1:{port}"), "/health")
        .await
        .is_ok()
}
