//! A chunk corrupted on disk is never served: the chunkserver detects it on read,
//! drops the copy, and the controller serves another replica.

use redcloud_common::ChunkId;
use redcloud_tests::TestCluster;

fn flip_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).expect("read chunk file");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).expect("write chunk file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_copies_are_detected_and_another_replica_is_served() {
    let cluster = TestCluster::start().await;
    let mut client = cluster.client().await;
    let data: Vec<u8> = b"It was the best of times, it was the worst of times. ".repeat(4000);
    client
        .upload_bytes(data.clone().into(), "two-cities.txt", false)
        .await
        .expect("upload");
    let stat = client.stat("two-cities.txt", None).await.expect("stat");
    assert_eq!(stat.chunks.len(), 1);
    let id: ChunkId = stat.chunks[0].chunk_id.parse().expect("chunk id");
    assert_eq!(
        stat.chunks[0].replicas.len(),
        3,
        "all three chunkservers hold the chunk"
    );

    // Corrupt every copy but one. Reads try replicas in node-id order for chunk 0,
    // so the first attempt meets a corrupt copy.
    let mut order: Vec<usize> = (0..3).collect();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            std::fs::read_to_string(cluster.chunkservers[i].data_dir.join("node_id"))
                .expect("node id")
        })
        .collect();
    order.sort_by(|a, b| ids[*a].cmp(&ids[*b]));
    let good = order[2];
    for &i in &order[..2] {
        flip_byte(&cluster.chunk_path(i, &id));
    }

    let (_, got) = client
        .download_bytes("two-cities.txt", None)
        .await
        .expect("download despite corruption");
    assert_eq!(got, data, "the bytes served are the original ones");

    // The first corrupt copy was found and removed; the good copy is untouched.
    assert!(
        !cluster.chunk_path(order[0], &id).exists(),
        "the corrupt copy read first is removed"
    );
    assert!(cluster.chunk_path(good, &id).exists());

    // Reading a corrupt copy directly is refused with DATA_LOSS, not served.
    if cluster.chunk_path(order[1], &id).exists() {
        let err = cluster
            .chunk_client(order[1])
            .get(id)
            .await
            .expect_err("corrupt copy");
        assert!(
            matches!(
                err,
                redcloud_proto::chunk_client::ChunkCallError::Corrupt { .. }
            ),
            "{err}"
        );
    }
    let metrics = reqwest_like_get(
        &cluster.chunkservers[order[0]].http_addr.to_string(),
        "/metrics",
    )
    .await;
    assert!(
        metrics.contains("redcloud_chunkserver_corrupt_reads_total 1"),
        "corruption is counted:\n{metrics}"
    );
}

async fn reqwest_like_get(addr: &str, path: &str) -> String {
    let c = redcloud_common::http::HttpClient::new(std::time::Duration::from_secs(5), None);
    String::from_utf8(c.get(addr, path).await.expect("GET").to_vec()).expect("utf-8")
}
