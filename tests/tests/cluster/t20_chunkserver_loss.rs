//! Chunkservers die: downloads fail over, uploads still reach MIN_CHUNK_REPLICAS,
//! and with no chunkserver at all the answer is a clear error.

use redcloud_cli::ClientError;
use redcloud_tests::proxy::FreezableProxy;
use redcloud_tests::{ClusterSpec, TestCluster, corpus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_and_uploads_survive_a_killed_chunkserver() {
    let mut cluster = TestCluster::start().await;
    let mut client = cluster.client().await;
    let books: Vec<_> = corpus::catalog().into_iter().take(12).collect();
    for b in &books {
        client
            .upload_file(&b.path(), &b.file, false, |_| {})
            .await
            .expect("upload");
    }
    // Kill each chunkserver in turn's predecessor: the first in read order goes first.
    cluster.chunkservers[0].kill();
    for b in &books {
        let (_, data) = client
            .download_bytes(&b.file, None)
            .await
            .unwrap_or_else(|e| panic!("download {} with a chunkserver down: {e}", b.file));
        assert_eq!(hex::encode(redcloud_common::hash::sha256(&data)), b.sha256);
    }
    // Uploads still succeed with 2 of 3 chunkservers (MIN_CHUNK_REPLICAS = 2).
    let r = client
        .upload_bytes(
            b"written while a chunkserver is down".to_vec().into(),
            "during-outage.txt",
            false,
        )
        .await
        .expect("upload with one chunkserver down");
    assert_eq!(r.replicas, 2);

    // A second loss: one chunkserver left, every file still readable.
    cluster.chunkservers[1].kill();
    for b in books.iter().take(4) {
        let (_, data) = client
            .download_bytes(&b.file, None)
            .await
            .expect("download with one chunkserver left");
        assert_eq!(hex::encode(redcloud_common::hash::sha256(&data)), b.sha256);
    }

    // None left: uploads and downloads fail with clear errors, and nothing hangs.
    cluster.chunkservers[2].kill();
    let err = client
        .download_bytes(&books[0].file, None)
        .await
        .expect_err("no chunkserver");
    assert!(matches!(err, ClientError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("unavailable"), "{err}");
    cluster.wait_healthy_chunkservers(0, 0).await;
    let err = client
        .upload_bytes(b"x".to_vec().into(), "nowhere.txt", false)
        .await
        .expect_err("no chunkserver");
    assert!(
        err.to_string().contains("no chunkserver available"),
        "{err}"
    );

    // A restarted chunkserver serves again with its data intact.
    cluster.chunkservers[0].start();
    cluster.wait_healthy_chunkservers(0, 1).await;
    let (_, data) = client
        .download_bytes(&books[1].file, None)
        .await
        .expect("download after restart");
    assert_eq!(
        hex::encode(redcloud_common::hash::sha256(&data)),
        books[1].sha256
    );
}

/// A connection to a chunkserver can die without a sound: the path under it went
/// away (a container moved to another network and back) and no FIN or RST ever
/// comes. The controller must not go on sending reads into it: once a read there
/// fails, the next one goes over a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_chunkserver_connection_is_replaced() {
    let mut cluster = TestCluster::with(ClusterSpec {
        chunkservers: 1,
        min_chunk_replicas: 2,
        chunk_size: 64 * 1024,
        ..Default::default()
    })
    .await;
    let proxy = FreezableProxy::start().await;
    let p = cluster.add_chunkserver_advertising(|grpc| {
        proxy.forward_to(grpc);
        Some(proxy.addr().to_string())
    });
    cluster.wait_healthy_chunkservers(0, 2).await;
    let mut client = cluster.client().await;
    // The controller's connections are under test: its reads, not the client's.
    client.set_direct_reads(false);
    let book = corpus::catalog()
        .into_iter()
        .find(|b| (1_000_000..3_000_000).contains(&b.bytes))
        .expect("a book of 1-3 MB in the corpus");
    client
        .upload_file(&book.path(), &book.file, false, |_| {})
        .await
        .expect("upload");
    let reads_through_proxy = || {
        cluster.chunkservers[p]
            .chunkserver()
            .metrics
            .chunks_read
            .get()
    };
    let download = |data: &[u8]| {
        assert_eq!(
            hex::encode(redcloud_common::hash::sha256(data)),
            book.sha256,
            "downloaded bytes differ"
        );
    };
    // Reads spread over both copies: some go through the proxy.
    let before = reads_through_proxy();
    let (_, data) = client
        .download_bytes(&book.file, None)
        .await
        .expect("download");
    download(&data);
    assert!(
        reads_through_proxy() > before,
        "no read went to the chunkserver behind the proxy"
    );

    let connections = proxy.accepted();
    proxy.freeze();
    let frozen_at = reads_through_proxy();
    // Every download must still succeed (the other copy answers), and within the
    // deadline reads must reach the proxied chunkserver again, over a new connection.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut downloads = 0;
    // A read the chunkserver took in just before the freeze (a background reader's:
    // the search indexer's, repair's) may be counted after `frozen_at`: only a read
    // over a new connection counts as resumed.
    while reads_through_proxy() == frozen_at || proxy.accepted() == connections {
        assert!(
            std::time::Instant::now() < deadline,
            "after {downloads} downloads in 90 s, no read reached the chunkserver behind the \
             dead connection again ({} connections before the freeze, {} now)",
            connections,
            proxy.accepted()
        );
        let (_, data) = client
            .download_bytes(&book.file, None)
            .await
            .expect("download while a connection is dead");
        download(&data);
        downloads += 1;
    }
    assert!(
        proxy.accepted() > connections,
        "reads resumed without a new connection"
    );
}
