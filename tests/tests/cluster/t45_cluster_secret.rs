//! With a cluster secret, the internal surfaces — the chunk API (reads and writes)
//! and the controllers' `/internal/` routes — refuse calls without it, while the
//! nodes themselves (uploads, downloads, heartbeats, gossip, repair) keep working.

use std::time::Duration;

use bytes::Bytes;
use redcloud_common::ChunkId;
use redcloud_proto::chunk_client::{self, ChunkCallError, ChunkClient, Timeouts};
use redcloud_tests::{ClusterSpec, TestCluster, wait_until};

const SECRET: &str = "s3cret-for-tests";

fn client(cluster: &TestCluster, i: usize, secret: Option<&str>) -> ChunkClient {
    let addr = cluster.chunkservers[i].grpc_addr.to_string();
    let ch = chunk_client::channel(&addr, Timeouts::default()).expect("channel");
    ChunkClient::new(&addr, ch).with_secret(secret)
}

fn unauthenticated<T: std::fmt::Debug>(r: Result<T, ChunkCallError>) -> bool {
    matches!(r, Err(ChunkCallError::Failed { status, .. }) if status.code() == tonic::Code::Unauthenticated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_calls_without_the_cluster_secret_are_refused() {
    let mut cluster = TestCluster::with(ClusterSpec {
        controllers: 2,
        chunkservers: 2,
        cluster_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;

    // The nodes authenticate each other: an upload through one controller is stored on
    // both chunkservers and downloads through the other once gossip brought it there.
    let data = Bytes::from("It was the best of times, it was the worst of times.\n".repeat(2000));
    let mut c0 = cluster.client().await;
    c0.upload_bytes(data.clone(), "tale.txt", false)
        .await
        .expect("upload with a secret-protected cluster");
    let addr1 = cluster.controller_addr(1);
    wait_until(
        "controller 1 serves the upload",
        Duration::from_secs(20),
        || {
            let (addr1, data) = (addr1.clone(), data.clone());
            let cluster = &cluster;
            async move {
                let Ok(mut c1) = cluster.connect(&[addr1]).await else {
                    return false;
                };
                matches!(c1.download_bytes("tale.txt", None).await, Ok((_, d)) if d == data)
            }
        },
    )
    .await;

    // Without the secret, or with a wrong one, the chunk API refuses reads and writes.
    let stored = cluster
        .chunk_client(0)
        .list()
        .await
        .expect("list with the secret");
    assert!(!stored.is_empty());
    let chunk = stored[0];
    for bad in [None, Some("wrong-secret")] {
        let c = client(&cluster, 0, bad);
        assert!(unauthenticated(c.list().await), "{bad:?}: list");
        assert!(unauthenticated(c.get(chunk).await), "{bad:?}: get");
        assert!(unauthenticated(c.delete(chunk).await), "{bad:?}: delete");
        assert!(unauthenticated(c.stat(&[chunk]).await), "{bad:?}: stat");
        let intruder = Bytes::from_static(b"not a book");
        assert!(
            unauthenticated(c.put(ChunkId::of(&intruder), intruder).await),
            "{bad:?}: put"
        );
        assert!(
            unauthenticated(
                c.replicate_from(chunk, &cluster.chunkservers[1].grpc_addr.to_string())
                    .await
            ),
            "{bad:?}: replicate"
        );
    }
    // Nothing was deleted or written by those calls.
    let after = cluster.chunk_client(0).list().await.expect("list");
    assert_eq!(after.len(), stored.len());
    assert!(after.contains(&chunk));

    // The controllers' internal routes answer 401 without it; /health stays open.
    let anon = redcloud_common::http::HttpClient::new(Duration::from_secs(5), None);
    let wrong = redcloud_common::http::HttpClient::new(Duration::from_secs(5), Some("nope".into()));
    let addr = cluster.controllers[0].http_addr.to_string();
    for http in [&anon, &wrong] {
        let e = http
            .get(&addr, "/internal/peers")
            .await
            .expect_err("internal route without the secret");
        assert!(e.to_string().contains("401"), "{e}");
    }
    anon.get(&addr, "/health").await.expect("health is public");
    let right = redcloud_common::http::HttpClient::new(Duration::from_secs(5), Some(SECRET.into()));
    right
        .get(&addr, "/internal/peers")
        .await
        .expect("internal route with the secret");

    // A new chunkserver (started with the secret) is filled by repair: chunkserver to
    // chunkserver copies carry the secret too.
    let n = cluster.add_chunkserver();
    let want = stored.len();
    wait_until(
        "the new chunkserver holds every chunk",
        Duration::from_secs(30),
        || {
            let c = cluster.chunk_client(n);
            async move { c.list().await.is_ok_and(|l| l.len() >= want) }
        },
    )
    .await;
}

/// With a cluster secret, a client reads chunks straight from the chunkservers only
/// with the read tokens a controller's plan hands out: each token reads its own
/// chunk and nothing else; without one, or with a forged one, the chunkserver
/// refuses, and the internal chunk API still wants the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_reads_need_a_token_for_that_chunk() {
    use redcloud_proto::controller::{self as pb, controller_client::ControllerClient};
    let cluster = TestCluster::with(ClusterSpec {
        chunk_size: 64 * 1024,
        cluster_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let data = Bytes::from("Call me Ishmael. ".repeat(20_000));
    let mut c = cluster.client().await;
    c.upload_bytes(data.clone(), "whale.txt", false)
        .await
        .expect("upload");
    // The client library reads directly (tokens) and gets the bytes.
    let (_, got) = c.download_bytes("whale.txt", None).await.expect("download");
    assert!(got == data);

    let mut raw = ControllerClient::connect(format!("http://{}", cluster.controller_addr(0)))
        .await
        .expect("connect");
    let plan = raw
        .download_plan(cluster.authed(pb::DownloadPlanRequest {
            file: Some(pb::DownloadRequest {
                name: "whale.txt".into(),
                ..Default::default()
            }),
            from_chunk: 0,
        }))
        .await
        .expect("plan")
        .into_inner();
    assert!(plan.chunks.len() >= 2, "several chunks");
    assert_eq!(plan.next_chunk, 0);
    let (a, b) = (&plan.chunks[0], &plan.chunks[1]);
    let (ida, idb): (ChunkId, ChunkId) = (
        a.chunk_id.parse().expect("id"),
        b.chunk_id.parse().expect("id"),
    );
    let cs = client(&cluster, 0, None);
    let read = cs.read_with_token(ida, &a.token).await.expect("token read");
    assert_eq!(read.len() as u64, a.size);
    for (what, id, token) in [
        ("no token", ida, String::new()),
        ("another chunk's token", idb, a.token.clone()),
        (
            "a forged token",
            ida,
            format!("99999999999999.{}", "0".repeat(64)),
        ),
        (
            "a token signed with another secret",
            ida,
            redcloud_common::chunk_token::sign(Some("wrong"), &ida, u64::MAX / 2),
        ),
        (
            "an expired token",
            ida,
            redcloud_common::chunk_token::sign(Some(SECRET), &ida, 1),
        ),
    ] {
        assert!(
            unauthenticated(cs.read_with_token(id, &token).await),
            "{what} was served"
        );
    }
    // A token opens the read service, not the internal API.
    assert!(
        unauthenticated(cs.get(ida).await),
        "GetChunk without the secret"
    );
    // Anonymous callers get no plan of a private book.
    let err = raw
        .download_plan(pb::DownloadPlanRequest {
            file: Some(pb::DownloadRequest {
                name: "whale.txt".into(),
                owner: redcloud_tests::TEST_USER.into(),
                ..Default::default()
            }),
            from_chunk: 0,
        })
        .await
        .expect_err("anonymous plan of a private book");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
}

/// A controller whose clock runs two hours behind makes read tokens the
/// chunkservers find expired: downloads still work, through the controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_go_through_the_controller_when_tokens_are_refused() {
    use redcloud_proto::controller::{self as pb, controller_client::ControllerClient};
    fn behind(_: usize, cfg: &mut redcloud_controller::Config) {
        cfg.clock_offset_ms = -2 * 3600 * 1000;
    }
    let cluster = TestCluster::with(ClusterSpec {
        chunk_size: 64 * 1024,
        cluster_secret: Some(SECRET.into()),
        tweak: Some(behind),
        ..Default::default()
    })
    .await;
    let data = Bytes::from("Whan that Aprille with his shoures soote\n".repeat(10_000));
    let mut c = cluster.client().await;
    c.upload_bytes(data.clone(), "tales.txt", false)
        .await
        .expect("upload");
    let mut raw = ControllerClient::connect(format!("http://{}", cluster.controller_addr(0)))
        .await
        .expect("connect");
    let plan = raw
        .download_plan(cluster.authed(pb::DownloadPlanRequest {
            file: Some(pb::DownloadRequest {
                name: "tales.txt".into(),
                ..Default::default()
            }),
            from_chunk: 0,
        }))
        .await
        .expect("plan")
        .into_inner();
    let first = &plan.chunks[0];
    let id: ChunkId = first.chunk_id.parse().expect("id");
    assert!(
        unauthenticated(
            client(&cluster, 0, None)
                .read_with_token(id, &first.token)
                .await
        ),
        "a token made two hours in the past is refused"
    );
    for _ in 0..2 {
        let (_, got) = c.download_bytes("tales.txt", None).await.expect("download");
        assert!(
            got == data,
            "the download through the controller has the bytes"
        );
    }
}
