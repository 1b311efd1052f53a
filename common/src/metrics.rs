//! Metrics on `prometheus-client`, exported on `GET /metrics` in the OpenMetrics
//! text format.
//!
//! Nodes keep their counters as plain fields (`metrics.uploads.inc()`); at each
//! scrape they build a [`Registry`] over clones of them (a clone shares the
//! atomic), set the gauges that are read at scrape time, and encode it. Counters
//! only ever go up: a count that can fall is a [`Gauge`].
//!
//! Every gRPC server records the latency of each call, by method and status, in
//! [`RpcHistograms`] through [`RpcMetricsLayer`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

pub use prometheus_client;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{counter, gauge};
pub use prometheus_client::registry::Registry;

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A count that only goes up.
#[derive(Debug, Default, Clone)]
pub struct Counter(counter::Counter<u64>);

impl Counter {
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
    /// Registers it as `name` (the encoder adds `_total`).
    pub fn register(&self, reg: &mut Registry, name: &str, help: &str) {
        reg.register(name, help_text(help), self.0.clone());
    }
}

/// A whole-number value that goes up and down (never below 0 through `sub`).
#[derive(Debug, Default, Clone)]
pub struct Gauge(gauge::Gauge<i64, AtomicI64>);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.set(v.min(i64::MAX as u64) as i64);
    }
    pub fn set_i64(&self, v: i64) {
        self.0.set(v);
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n.min(i64::MAX as u64) as i64);
    }
    pub fn sub(&self, n: u64) {
        let n = n.min(i64::MAX as u64) as i64;
        let _ = self
            .0
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n).max(0))
            });
    }
    pub fn get(&self) -> u64 {
        self.0.get().max(0) as u64
    }
    pub fn get_i64(&self) -> i64 {
        self.0.get()
    }
    pub fn register(&self, reg: &mut Registry, name: &str, help: &str) {
        reg.register(name, help_text(help), self.0.clone());
    }
}

/// A gauge with a fractional value (seconds, ratios).
pub type FloatGauge = gauge::Gauge<f64, AtomicU64>;

/// The labels of one gRPC call's latency: its method (the request path,
/// `/package.Service/Method`) and its status code's name (`OK`, `NOT_FOUND`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: String,
}

fn rpc_histogram() -> Histogram {
    // 0.5 ms to 16 s, doubling.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Latency of gRPC calls served, per method and status.
#[derive(Debug, Clone)]
pub struct RpcHistograms(Family<RpcLabels, Histogram, fn() -> Histogram>);

impl Default for RpcHistograms {
    fn default() -> Self {
        RpcHistograms(Family::new_with_constructor(rpc_histogram))
    }
}

impl RpcHistograms {
    /// Records one call.
    pub fn observe(&self, method: &str, code: &str, seconds: f64) {
        self.0
            .get_or_create(&RpcLabels {
                method: method.to_string(),
                code: code.to_string(),
            })
            .observe(seconds);
    }

    pub fn register(&self, reg: &mut Registry, name: &str, help: &str) {
        reg.register_with_unit(
            name,
            help_text(help),
            prometheus_client::registry::Unit::Seconds,
            self.0.clone(),
        );
    }
}

/// The name of gRPC status code `code` (as in the gRPC spec: `OK`, `CANCELLED`, ...).
pub fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// A tower layer for a tonic server that records each call in [`RpcHistograms`]:
/// the time to the response's head (for a streaming answer, to its start) and
/// the status it carries there (`grpc-status` of a trailers-only answer; `OK`
/// when the status comes in trailers, after the head). Calls to paths the server
/// does not serve are counted under the method `other`, so that clients cannot
/// make up label values.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer(RpcHistograms);

impl RpcMetricsLayer {
    pub fn new(h: RpcHistograms) -> Self {
        RpcMetricsLayer(h)
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            h: self.0.clone(),
        }
    }
}

/// The service [`RpcMetricsLayer`] wraps around a server's.
#[derive(Debug, Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    h: RpcHistograms,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<hyper::Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<hyper::Request<B>, Response = hyper::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let started = Instant::now();
        let fut = self.inner.call(req);
        let h = self.h.clone();
        Box::pin(async move {
            let r = fut.await;
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<i32>().ok())
                    .map(grpc_code_name)
                    .unwrap_or("OK"),
                Err(_) => "TRANSPORT_ERROR",
            };
            let method = if code == "UNIMPLEMENTED" {
                "other"
            } else {
                &method
            };
            h.observe(method, code, started.elapsed().as_secs_f64());
            r
        })
    }
}

/// Labels of `redcloud_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    component: String,
    version: String,
}

/// This process's resident memory in bytes (`VmRSS` of `/proc/self/status`), if
/// the platform says.
pub fn resident_memory_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// When this process started (its first call of this, which `node_main` makes at
/// start), in seconds since the Unix epoch.
pub fn process_start_unix_s() -> f64 {
    static STARTED: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    })
}

/// Registers what every node exports about itself: `redcloud_build_info`
/// (always 1, with the component and version as labels),
/// `process_resident_memory_bytes` and `process_start_time_seconds`.
pub fn register_process(reg: &mut Registry, component: &str) {
    let started_unix_s = process_start_unix_s();
    let info: Family<BuildLabels, gauge::Gauge> = Family::default();
    info.get_or_create(&BuildLabels {
        component: component.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
    .set(1);
    reg.register(
        "redcloud_build_info",
        "Always 1; the labels say which component and version this is",
        info,
    );
    let rss: gauge::Gauge = gauge::Gauge::default();
    rss.set(resident_memory_bytes().unwrap_or(0).min(i64::MAX as u64) as i64);
    reg.register_with_unit(
        "process_resident_memory",
        "Resident memory of this process",
        prometheus_client::registry::Unit::Bytes,
        rss,
    );
    let start: FloatGauge = FloatGauge::default();
    start.set(started_unix_s);
    reg.register_with_unit(
        "process_start_time",
        "When this process started, in seconds since the Unix epoch",
        prometheus_client::registry::Unit::Seconds,
        start,
    );
}

/// `help` without its closing full stop: the encoder adds one.
pub fn help_text(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

/// Encodes `reg` as OpenMetrics text ([`CONTENT_TYPE`]).
pub fn encode(reg: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_encode_as_openmetrics() {
        let c = Counter::default();
        c.add(3);
        let g = Gauge::default();
        g.set(5);
        g.sub(9);
        let mut reg = Registry::default();
        c.register(&mut reg, "rc_things", "Things.");
        g.register(&mut reg, "rc_level", "Level.");
        let text = encode(&reg);
        assert!(text.contains("# TYPE rc_things counter\n"), "{text}");
        assert!(
            text.contains("# HELP rc_things Things.\n"),
            "one full stop: {text}"
        );
        assert!(text.contains("rc_things_total 3\n"), "{text}");
        assert!(
            text.contains("rc_level 0\n"),
            "a gauge's sub stops at 0: {text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn rpc_histograms_count_by_method_and_code() {
        let h = RpcHistograms::default();
        h.observe("/x.Y/Get", "OK", 0.002);
        h.observe("/x.Y/Get", "OK", 3.0);
        h.observe("/x.Y/Get", "NOT_FOUND", 0.001);
        let mut reg = Registry::default();
        h.register(&mut reg, "rc_rpc_duration", "Calls.");
        let text = encode(&reg);
        assert!(
            text.contains(r#"rc_rpc_duration_seconds_count{method="/x.Y/Get",code="OK"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"rc_rpc_duration_seconds_bucket{le="0.002",method="/x.Y/Get",code="OK"} 1"#
            ) || text.contains(
                r#"rc_rpc_duration_seconds_bucket{method="/x.Y/Get",code="OK",le="0.002"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn process_metrics_name_the_component_and_read_memory() {
        let mut reg = Registry::default();
        register_process(&mut reg, "controller");
        let text = encode(&reg);
        assert!(
            text.contains(&format!(
                "redcloud_build_info{{component=\"controller\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(resident_memory_bytes().is_some_and(|b| b > 0));
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
