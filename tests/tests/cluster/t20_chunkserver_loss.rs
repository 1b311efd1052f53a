//! Chunkservers die: downloads fail over, uploads still reach MIN_CHUNK_REPLICAS,
//! and with no chunkserver at all the answer is a clear error.

use redcloud_cli::ClientError;
use redcloud_tests::{TestCluster, corpus};

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
