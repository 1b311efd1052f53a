//! The chunkserver API directly: put, get, stat, list, delete, and copying a chunk
//! from a peer (the repair primitive), including from a peer whose copy is corrupt.

use bytes::Bytes;
use redcloud_common::ChunkId;
use redcloud_proto::chunk_client::ChunkCallError;
use redcloud_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_api_and_replicate_from_peer() {
    let cluster = TestCluster::start().await;
    let (a, b, c) = (
        cluster.chunk_client(0),
        cluster.chunk_client(1),
        cluster.chunk_client(2),
    );
    let data = Bytes::from(b"Whan that Aprill with his shoures soote ".repeat(30_000));
    let id = ChunkId::of(&data);

    assert!(!a.put(id, data.clone()).await.expect("put"), "new chunk");
    assert!(
        a.put(id, data.clone()).await.expect("put again"),
        "second put finds it present"
    );
    assert_eq!(a.get(id).await.expect("get"), data);
    let st = a.stat(&[id, ChunkId::of(b"absent")]).await.expect("stat");
    assert_eq!(st.present, vec![id]);
    assert_eq!(st.chunk_count, 1);
    assert_eq!(st.used_bytes, data.len() as u64);
    assert_eq!(a.list().await.expect("list"), vec![id]);

    // b copies the chunk from a, verifying it on the way.
    let copied = b.replicate_from(id, a.addr()).await.expect("replicate");
    assert_eq!(copied, data.len() as u64);
    assert_eq!(b.get(id).await.expect("get copy"), data);
    assert_eq!(
        b.replicate_from(id, a.addr()).await.expect("again"),
        0,
        "already present"
    );

    // Copying from a peer that lacks the chunk, or holds a corrupt copy, fails and stores nothing.
    let other = Bytes::from_static(b"not stored anywhere");
    let other_id = ChunkId::of(&other);
    let e = c
        .replicate_from(other_id, a.addr())
        .await
        .expect_err("peer lacks it");
    assert!(e.to_string().contains("not found"), "{e}");
    let path = cluster.chunk_path(0, &id);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[10] ^= 0x40;
    std::fs::write(&path, bytes).expect("write");
    let e = c
        .replicate_from(id, a.addr())
        .await
        .expect_err("peer copy corrupt");
    assert!(
        e.to_string().contains("verification") || e.to_string().contains("corrupt"),
        "{e}"
    );
    assert!(
        cluster.chunks_on_disk(2).is_empty(),
        "nothing stored from a corrupt source"
    );
    assert!(
        !path.exists(),
        "the source dropped its corrupt copy when it read it"
    );
    let e = c
        .replicate_from(id, "127.0.0.1:1")
        .await
        .expect_err("unreachable peer");
    assert!(
        matches!(
            e,
            ChunkCallError::Failed { .. } | ChunkCallError::Unreachable { .. }
        ),
        "{e}"
    );

    // Delete is idempotent.
    assert!(b.delete(id).await.expect("delete"));
    assert!(!b.delete(id).await.expect("delete again"));
    assert!(matches!(
        b.get(id).await,
        Err(ChunkCallError::NotFound { .. })
    ));
}
