//! A small HTTP/1.1 layer over hyper for the internal routes, `/health` and `/metrics`:
//! a server loop with graceful shutdown and a JSON client with timeouts.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Request bodies larger than this are refused with 413 before they are buffered.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The longest a request's headers may take to arrive.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// The longest a request's body may take to arrive, once its headers have (16 MiB
/// in this time is 1.6 MB/s: a body trickled in slowly is dropped, and the
/// connection with it).
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The most connections one HTTP server serves at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// A request as handlers see it: method, path and the whole (bounded) body.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
    pub peer: SocketAddr,
    /// The `x-redcloud-secret` header, if any.
    pub secret: Option<String>,
}

/// A handler's answer.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }

    pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => HttpResponse {
                status,
                content_type: "application/json",
                body: Bytes::from(v),
            },
            Err(e) => Self::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }

    /// Prometheus text exposition format.
    pub fn metrics(body: String) -> Self {
        HttpResponse {
            status: StatusCode::OK,
            content_type: crate::metrics::CONTENT_TYPE,
            body: Bytes::from(body),
        }
    }

    pub fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "no such route\n")
    }
}

type BoxFut = Pin<Box<dyn Future<Output = HttpResponse> + Send>>;

/// Routes a request to an answer.
pub type Handler = Arc<dyn Fn(HttpRequest) -> BoxFut + Send + Sync>;

/// Wraps an async function as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

/// Serves HTTP/1.1 on `listener` until `shutdown` is cancelled, then lets open
/// connections finish their current request and returns.
pub async fn serve(listener: TcpListener, handler: Handler, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(dispatch(req, peer, handler).await) }
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
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn dispatch(
    req: Request<Incoming>,
    peer: SocketAddr,
    handler: Handler,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let collected =
        tokio::time::timeout(BODY_DEADLINE, Limited::new(body, MAX_BODY_BYTES).collect()).await;
    let Ok(collected) = collected else {
        tracing::debug!(%peer, "http: request body not complete within {BODY_DEADLINE:?}; dropped");
        let mut r = into_hyper(HttpResponse::text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not complete within {} s\n",
                BODY_DEADLINE.as_secs()
            ),
        ));
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        return r;
    };
    let body = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let resp = if too_big {
                HttpResponse::text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body exceeds {MAX_BODY_BYTES} bytes\n"),
                )
            } else {
                HttpResponse::text(StatusCode::BAD_REQUEST, format!("bad request body: {e}\n"))
            };
            return into_hyper(resp);
        }
    };
    let secret = parts
        .headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let req = HttpRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        body,
        peer,
        secret,
    };
    into_hyper(handler(req).await)
}

fn into_hyper(r: HttpResponse) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(r.body));
    *resp.status_mut() = r.status;
    if let Ok(v) = r.content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
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
