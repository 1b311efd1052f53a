//! The JSON admin API (`/api/v1/...`) on a controller's HTTP port: public books
//! only, the cluster verdict following a chunkserver's loss and return, and the
//! HTTP protections (body limit, unknown routes, malformed parameters).

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use redcloud_common::http::{HttpClient, HttpError, MAX_BODY_BYTES};
use redcloud_tests::{TestCluster, wait_until};

fn http() -> HttpClient {
    HttpClient::new(Duration::from_secs(10), None)
}

async fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let body = http()
        .get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
}

/// The status and body of a refused GET.
async fn get_refused(addr: &str, path: &str) -> (u16, String) {
    match http().get(addr, path).await {
        Err(HttpError::Status { status, body, .. }) => (status.as_u16(), body),
        other => panic!("GET {path}: expected a refusal, got {other:?}"),
    }
}

fn names(files: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = files["files"]
        .as_array()
        .expect("files array")
        .iter()
        .map(|f| {
            format!(
                "{}/{}",
                f["owner"].as_str().unwrap_or(""),
                f["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_serves_and_finds_public_books_and_never_a_private_one() {
    let cluster = TestCluster::start().await;
    let addr = cluster.controllers[0].http_addr.to_string();
    let mut tester = cluster.client().await;
    tester
        .upload_bytes(
            Bytes::from_static(b"Call me Ishmael. Some years ago, never mind how long."),
            "moby.txt",
            true,
        )
        .await
        .expect("public upload");
    tester
        .upload_bytes(
            Bytes::from_static(b"A diary of whales and zeppelinsecret thoughts."),
            "diary.txt",
            false,
        )
        .await
        .expect("private upload");
    let mut anon = cluster.anonymous_client_of(0).await;
    anon.register("bob", "bob-password")
        .await
        .expect("register bob");
    anon.login("bob", "bob-password").await.expect("login bob");
    anon.upload_bytes(
        Bytes::from_static(b"Bob's private whales: zeppelinsecret."),
        "bob-private.txt",
        false,
    )
    .await
    .expect("bob private");
    anon.upload_bytes(
        Bytes::from_static(b"Bob's public whales."),
        "bob-public.txt",
        true,
    )
    .await
    .expect("bob public");

    let files = get_json(&addr, "/api/v1/files").await;
    assert_eq!(
        names(&files),
        vec![
            "bob/bob-public.txt".to_string(),
            "tester/moby.txt".to_string()
        ],
        "{files}"
    );
    assert_eq!(files["next_page_token"], "");
    let moby = files["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["name"] == "moby.txt")
        .expect("moby listed")
        .clone();
    let text = b"Call me Ishmael. Some years ago, never mind how long.";
    assert_eq!(moby["size"], text.len());
    assert_eq!(
        moby["sha256"],
        hex::encode(redcloud_common::hash::sha256(text))
    );
    assert!(moby["created_at_ms"].as_u64().expect("created") > 0);

    // Paging: one book per page, both reached, the same order.
    let first = get_json(&addr, "/api/v1/files?limit=1").await;
    assert_eq!(names(&first), vec!["bob/bob-public.txt".to_string()]);
    let token = first["next_page_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(!token.is_empty());
    let second = get_json(&addr, &format!("/api/v1/files?limit=1&page_token={token}")).await;
    assert_eq!(names(&second), vec!["tester/moby.txt".to_string()]);

    // The download link gives the book's bytes.
    let link = moby["download"].as_str().expect("link");
    assert_eq!(link, "/api/v1/files/tester/moby.txt");
    let got = http().get(&addr, link).await.expect("download");
    assert_eq!(&got[..], &text[..]);

    // Private books are 404 like books that do not exist, JSON error bodies.
    for path in [
        "/api/v1/files/tester/diary.txt",
        "/api/v1/files/bob/bob-private.txt",
        "/api/v1/files/tester/nothing.txt",
        "/api/v1/files/nobody/moby.txt",
    ] {
        let (status, body) = get_refused(&addr, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        let e: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }

    // Search finds public books once indexed, never private ones.
    wait_until(
        "all four books are indexed",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move {
                let v = get_json(&addr, "/api/v1/search?q=whales").await;
                v["indexed_books"].as_u64() == Some(4) && v["pending_books"].as_u64() == Some(0)
            }
        },
    )
    .await;
    let hits = get_json(&addr, "/api/v1/search?q=whales").await;
    let found: Vec<&str> = hits["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(found, vec!["bob-public.txt"], "{hits}");
    assert_eq!(
        hits["hits"][0]["download"],
        "/api/v1/files/bob/bob-public.txt"
    );
    let secret = get_json(&addr, "/api/v1/search?q=zeppelinsecret").await;
    assert_eq!(secret["hits"], serde_json::json!([]), "{secret}");
    let ishmael = get_json(&addr, "/api/v1/search?q=ishmael").await;
    assert_eq!(ishmael["hits"][0]["name"], "moby.txt", "{ishmael}");

    // Malformed parameters: 400 with a JSON error.
    for path in [
        "/api/v1/files?limit=lots",
        "/api/v1/files?page_token=zz",
        "/api/v1/files?colour=red",
        "/api/v1/search",
        "/api/v1/search?q=%20",
        "/api/v1/search?q=whales&limit=-1",
    ] {
        let (status, body) = get_refused(&addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let e: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
}

/// The verdict and the reasons of `GET /api/v1/cluster`.
async fn verdict(addr: &str) -> (String, Vec<String>) {
    let v = get_json(addr, "/api/v1/cluster").await;
    let reasons = v["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().unwrap_or("").to_string())
        .collect();
    (v["verdict"].as_str().expect("verdict").to_string(), reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_degraded_while_a_chunkserver_is_down_and_healthy_on_its_return() {
    let mut cluster = TestCluster::start().await;
    let addr = cluster.controllers[0].http_addr.to_string();
    let mut c = cluster.client().await;
    c.upload_bytes(Bytes::from_static(b"three copies"), "three.txt", true)
        .await
        .expect("upload");
    cluster.wait_holds_all(2, Duration::from_secs(30)).await;
    wait_until("the cluster is healthy", Duration::from_secs(30), || {
        let addr = addr.clone();
        async move { verdict(&addr).await.0 == "healthy" }
    })
    .await;
    let v = get_json(&addr, "/api/v1/cluster").await;
    assert_eq!(
        v["chunkservers"].as_array().expect("chunkservers").len(),
        3,
        "{v}"
    );
    assert_eq!(v["files"], 1, "{v}");
    assert_eq!(v["converged"], true, "{v}");
    assert_eq!(v["controller"]["node_id"], cluster.controller_id(0), "{v}");
    for cs in v["chunkservers"].as_array().expect("chunkservers") {
        assert_eq!(cs["healthy"], true, "{cs}");
        assert!(cs["last_heartbeat_ms_ago"].as_u64().is_some(), "{cs}");
        assert_eq!(cs["chunk_count"], 1, "{cs}");
        assert!(cs["used_bytes"].as_u64().expect("used") > 0, "{cs}");
    }
    assert!(!v["workers"].as_array().expect("workers").is_empty(), "{v}");

    let down = cluster.chunkservers[2].chunkserver().id.to_string();
    cluster.chunkservers[2].stop();
    wait_until("the cluster is degraded", Duration::from_secs(30), || {
        let addr = addr.clone();
        async move { verdict(&addr).await.0 == "degraded" }
    })
    .await;
    let (_, reasons) = verdict(&addr).await;
    assert!(
        reasons.iter().any(|r| r.contains(&down)),
        "no reason names {down}: {reasons:?}"
    );
    let v = get_json(&addr, "/api/v1/cluster").await;
    let gone = v["chunkservers"]
        .as_array()
        .expect("chunkservers")
        .iter()
        .find(|c| c["node_id"] == down.as_str())
        .expect("stopped chunkserver listed")
        .clone();
    assert_eq!(gone["healthy"], false, "{gone}");

    cluster.chunkservers[2].start();
    wait_until(
        "the cluster is healthy again",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move { verdict(&addr).await.0 == "healthy" }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_and_unknown_routes_404() {
    let cluster = TestCluster::start().await;
    let addr = cluster.controllers[0].http_addr;
    let a = addr.to_string();

    // Announced by content-length: refused once the limit is read, and the
    // client reads the 413.
    let r = http()
        .post_bytes(
            &a,
            "/internal/gossip/receive",
            Bytes::from(vec![0u8; MAX_BODY_BYTES + 1]),
        )
        .await;
    assert!(
        matches!(&r, Err(HttpError::Status { status, .. }) if status.as_u16() == 413),
        "{r:?}"
    );

    // Chunked, no length announced: refused once the limit is passed.
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.write_all(
            b"POST /internal/chunkserver/heartbeat HTTP/1.1\r\nhost: x\r\n\
              transfer-encoding: chunked\r\n\r\n",
        )
        .expect("headers");
        let chunk = vec![b' '; 1024 * 1024];
        for _ in 0..(MAX_BODY_BYTES / chunk.len() + 2) {
            let head = format!("{:x}\r\n", chunk.len());
            if s.write_all(head.as_bytes()).is_err()
                || s.write_all(&chunk).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let mut got = vec![0u8; 4096];
        let n = s.read(&mut got).unwrap_or(0);
        String::from_utf8_lossy(&got[..n]).to_string()
    })
    .await
    .expect("join");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");

    // Unknown routes and methods: 404 (JSON under /api/v1).
    for path in ["/nothing", "/internal/nothing", "/api/v1/nothing"] {
        let (status, body) = get_refused(&a, path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (_, body) = get_refused(&a, "/api/v1/nothing").await;
    let e: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    assert!(e["error"].as_str().is_some(), "{body}");
    let r = http().post_bytes(&a, "/health", Bytes::new()).await;
    assert!(
        matches!(&r, Err(HttpError::Status { status, .. }) if status.as_u16() == 404),
        "{r:?}"
    );
    // Still serving.
    http().get(&a, "/health").await.expect("health");
}
