//! `/metrics` as a Prometheus server reads it: OpenMetrics text from
//! prometheus-client with latency histograms per gRPC method and status, build
//! and process figures, cluster gauges, and counters that never go down.

use std::collections::BTreeMap;
use std::time::Duration;

use redcloud_tests::{TestCluster, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` from `addr` over plain HTTP/1.1: (status, content type, body).
async fn get(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// Every sample line: series (name and labels) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_carry_rpc_histograms_build_process_and_cluster_figures() {
    let cluster = TestCluster::start().await;
    let mut client = cluster.client().await;
    client
        .upload_bytes(
            bytes::Bytes::from_static(b"It was a bright cold day in April.\n"),
            "orwell.txt",
            false,
        )
        .await
        .expect("upload");
    let missing = client.download_bytes("no-such-book.txt", None).await;
    assert!(missing.is_err(), "a missing book is an error");

    let ctl = cluster.controllers[0].http_addr.to_string();
    let (status, ctype, first) = get(&ctl, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        ctype.starts_with("application/openmetrics-text"),
        "the content type says which format: {ctype}"
    );
    assert!(first.ends_with("# EOF\n"), "{first}");
    let s = samples(&first);
    let count = |series: &str| s.get(series).copied().unwrap_or(0.0);
    assert!(
        count(
            r#"redcloud_controller_rpc_duration_seconds_count{method="/redcloud.v1.Controller/Upload",code="OK"}"#
        ) >= 1.0,
        "the upload is in the latency histogram:\n{first}"
    );
    assert!(
        s.iter().any(
            |(k, v)| k.starts_with("redcloud_controller_rpc_duration_seconds_count{")
                && k.contains(r#"code="NOT_FOUND""#)
                && *v >= 1.0
        ),
        "the failed download is counted under its status:\n{first}"
    );
    assert_eq!(
        count(&format!(
            r#"redcloud_build_info{{component="controller",version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0,
        "{first}"
    );
    assert!(count("process_resident_memory_bytes") > 1e6, "{first}");
    assert_eq!(
        count("redcloud_controller_chunkservers_healthy"),
        3.0,
        "{first}"
    );
    assert_eq!(count("redcloud_controller_chunkservers"), 3.0, "{first}");
    assert!(count("redcloud_controller_uploads_total") >= 1.0, "{first}");

    // The cluster figures come from the repair pass (every 2 s in test clusters).
    wait_until(
        "a repair pass counts the file",
        Duration::from_secs(30),
        || {
            let ctl = ctl.clone();
            async move {
                let (_, _, t) = get(&ctl, "/metrics").await;
                let s = samples(&t);
                s.get("redcloud_controller_files") == Some(&1.0)
                    && s.get("redcloud_controller_chunks") == Some(&1.0)
                    && s.get("redcloud_controller_chunks_lost") == Some(&0.0)
            }
        },
    )
    .await;

    // The chunkservers time the chunk writes.
    let cs = cluster.chunkservers[0].http_addr.to_string();
    let (_, cs_type, cs_text) = get(&cs, "/metrics").await;
    assert!(
        cs_type.starts_with("application/openmetrics-text"),
        "{cs_type}"
    );
    let cs_s = samples(&cs_text);
    assert!(
        cs_s.get(r#"redcloud_chunkserver_rpc_duration_seconds_count{method="/redcloud.chunk.v1.Chunkserver/PutChunk",code="OK"}"#)
            .is_some_and(|v| *v >= 1.0),
        "{cs_text}"
    );
    assert!(
        cs_s.contains_key(r#"redcloud_build_info{component="chunkserver",version="0.1.0"}"#),
        "{cs_text}"
    );

    // No counter goes down between two scrapes, whatever happened between them.
    client
        .upload_bytes(
            bytes::Bytes::from_static(b"Second book.\n"),
            "second.txt",
            false,
        )
        .await
        .expect("upload");
    client.delete("orwell.txt").await.expect("delete");
    let (_, _, second) = get(&ctl, "/metrics").await;
    let later = samples(&second);
    for (series, before) in samples(&first) {
        let name = series.split('{').next().unwrap_or(&series);
        if name.ends_with("_total") || name.ends_with("_count") || name.ends_with("_bucket") {
            let after = later.get(&series).copied().unwrap_or(f64::NAN);
            assert!(after >= before, "{series} went from {before} to {after}");
        }
    }
}

/// Every name the alert rules and the Grafana dashboard may use
/// (`deploy/metrics.txt`, which `scripts/check-monitoring.sh` holds them to) is
/// one the nodes really serve: a renamed metric fails here, not silently in a
/// dashboard.
#[tokio::test]
async fn every_name_the_alerts_and_dashboard_use_is_served() {
    use redcloud_tests::ClusterSpec;
    let cluster = TestCluster::with(ClusterSpec {
        controllers: 2,
        ..ClusterSpec::default()
    })
    .await;
    let mut client = cluster.client().await;
    client
        .upload_bytes(bytes::Bytes::from_static(b"A book.\n"), "a.txt", false)
        .await
        .expect("upload");
    let listed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/metrics.txt"),
    )
    .expect("deploy/metrics.txt");
    let want: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        // Added by Prometheus itself.
        .filter(|l| *l != "up")
        .collect();
    assert!(want.len() > 50, "{listed}");
    let mut addrs: Vec<String> = cluster
        .controllers
        .iter()
        .map(|c| c.http_addr.to_string())
        .collect();
    addrs.push(cluster.chunkservers[0].http_addr.to_string());
    // Polled to a deadline: the peer family appears after the first exchange,
    // the cluster gauges after a repair pass.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let mut served = std::collections::BTreeSet::new();
        for a in &addrs {
            let (_, _, text) = get(a, "/metrics").await;
            for series in samples(&text).keys() {
                served.insert(series.split('{').next().unwrap_or(series).to_string());
            }
        }
        let missing: Vec<&str> = want
            .iter()
            .copied()
            .filter(|n| !served.contains(*n))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listed in deploy/metrics.txt but not served: {missing:?}"
        );
    }
}
