//! Every book in the corpus uploads and downloads byte-identical, and every
//! chunkserver ends up holding every chunk.

use std::collections::BTreeSet;
use std::time::Duration;

use redcloud_common::ChunkId;
use redcloud_tests::{TestCluster, corpus, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_corpus_round_trips_byte_identical_and_fully_replicated() {
    let cluster = TestCluster::start().await;
    let mut client = cluster.client().await;
    let books = corpus::catalog();
    assert!(
        books.len() >= 100,
        "expected the full corpus, found {} books",
        books.len()
    );

    for b in &books {
        let r = client
            .upload_file(&b.path(), &b.file, false, |_| {})
            .await
            .unwrap_or_else(|e| panic!("upload {}: {e}", b.file));
        let f = r.file.expect("file info");
        assert_eq!(f.size, b.bytes, "{}", b.file);
        assert_eq!(
            f.sha256, b.sha256,
            "{}: stored SHA-256 differs from the catalog",
            b.file
        );
        assert!(
            r.replicas >= 2,
            "{}: acknowledged with {} replicas",
            b.file,
            r.replicas
        );
    }

    let listed = client.list("").await.expect("list");
    assert_eq!(listed.len(), books.len());

    for b in &books {
        let (info, data) = client
            .download_bytes(&b.file, None)
            .await
            .unwrap_or_else(|e| panic!("download {}: {e}", b.file));
        assert_eq!(data.len() as u64, b.bytes, "{}", b.file);
        assert_eq!(
            hex::encode(redcloud_common::hash::sha256(&data)),
            b.sha256,
            "{}",
            b.file
        );
        assert_eq!(info.sha256, b.sha256);
    }

    // Every chunk of every file, on every chunkserver.
    let mut wanted = BTreeSet::new();
    for b in &books {
        let s = client.stat(&b.file, None).await.expect("stat");
        for c in s.chunks {
            wanted.insert(c.chunk_id.parse::<ChunkId>().expect("chunk id"));
        }
    }
    for i in 0..cluster.chunkservers.len() {
        let wanted = wanted.clone();
        let cluster = &cluster;
        wait_until(
            &format!("chunkserver {i} holds all {} chunks", wanted.len()),
            Duration::from_secs(30),
            || {
                let wanted = wanted.clone();
                async move {
                    let held: BTreeSet<ChunkId> = cluster.chunks_on_disk(i).into_iter().collect();
                    wanted.is_subset(&held)
                }
            },
        )
        .await;
        let listed: BTreeSet<ChunkId> = cluster
            .chunk_client(i)
            .list()
            .await
            .expect("list chunks")
            .into_iter()
            .collect();
        assert!(
            wanted.is_subset(&listed),
            "chunkserver {i}'s ListChunks misses chunks"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_delete_and_small_chunks() {
    // A tiny chunk size exercises many-chunk files and chunk ordering.
    let cluster = TestCluster::with(redcloud_tests::ClusterSpec {
        chunk_size: 4096,
        ..Default::default()
    })
    .await;
    let mut client = cluster.client().await;
    let v1: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let v2 = b"second version".to_vec();
    let r1 = client
        .upload_bytes(v1.clone().into(), "book.txt", false)
        .await
        .expect("upload v1");
    assert_eq!(r1.file.as_ref().expect("info").chunk_count, 49);
    let r2 = client
        .upload_bytes(v2.clone().into(), "book.txt", false)
        .await
        .expect("upload v2");

    let (_, now) = client
        .download_bytes("book.txt", None)
        .await
        .expect("current");
    assert_eq!(now, v2, "the newest upload is the current version");
    let old_id = r1.file.expect("info").file_id;
    let (_, old) = client
        .download_bytes("book.txt", Some(&old_id))
        .await
        .expect("old version");
    assert_eq!(old, v1, "the earlier version stays retrievable");

    // The empty file is a valid file.
    client
        .upload_bytes(Vec::new().into(), "empty.txt", false)
        .await
        .expect("upload empty");
    let (info, empty) = client
        .download_bytes("empty.txt", None)
        .await
        .expect("download empty");
    assert!(empty.is_empty());
    assert_eq!(info.chunk_count, 0);

    assert_eq!(client.delete("book.txt").await.expect("rm"), 2);
    let err = client
        .download_bytes("book.txt", None)
        .await
        .expect_err("deleted");
    assert!(
        matches!(err, redcloud_cli::ClientError::NotFound(_)),
        "{err}"
    );
    let err = client
        .delete("book.txt")
        .await
        .expect_err("already deleted");
    assert!(
        matches!(err, redcloud_cli::ClientError::NotFound(_)),
        "{err}"
    );
    let names: Vec<_> = client
        .list("")
        .await
        .expect("ls")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["empty.txt"]);
    let _ = r2;
}

/// A download asked from byte `offset` of a version (how a client resumes one broken
/// midway on another controller) returns exactly the rest of that version's bytes,
/// at chunk boundaries, inside chunks and at the end; past the end is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_resumes_from_any_offset() {
    use redcloud_proto::controller::{self as pb, controller_client::ControllerClient};
    let cluster = TestCluster::with(redcloud_tests::ClusterSpec {
        chunk_size: 64 * 1024,
        ..Default::default()
    })
    .await;
    let mut client = cluster.client().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let up = client
        .upload_bytes(bytes::Bytes::from(data.clone()), "resume.bin", false)
        .await
        .expect("upload")
        .file
        .expect("file info");
    let mut raw = ControllerClient::connect(format!("http://{}", cluster.controller_addr(0)))
        .await
        .expect("connect");
    let chunk = 64 * 1024u64;
    for offset in [
        0,
        1,
        chunk - 1,
        chunk,
        chunk + 7,
        4 * chunk,
        299_999,
        300_000,
    ] {
        let req = cluster.authed(pb::DownloadRequest {
            name: "resume.bin".into(),
            version: up.file_id.clone(),
            owner: String::new(),
            offset,
        });
        let mut s = raw.download(req).await.expect("download").into_inner();
        let mut got = Vec::new();
        let mut first = true;
        while let Some(m) = s.message().await.expect("message") {
            match m.msg {
                Some(pb::download_response::Msg::Info(i)) if first => {
                    assert_eq!(i.file_id, up.file_id);
                }
                Some(pb::download_response::Msg::Data(d)) => got.extend_from_slice(&d),
                other => panic!("unexpected message {other:?}"),
            }
            first = false;
        }
        assert!(
            got == data[offset as usize..],
            "offset {offset}: {} bytes back, expected {}",
            got.len(),
            data.len() - offset as usize
        );
    }
    let err = raw
        .download(cluster.authed(pb::DownloadRequest {
            name: "resume.bin".into(),
            version: up.file_id.clone(),
            owner: String::new(),
            offset: 300_001,
        }))
        .await
        .expect_err("past the end");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
}

/// A source that yields more or fewer bytes than the size declared (a file that
/// changed while it was read) fails the upload on the client, and nothing is
/// stored under the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_changed_size_stores_nothing() {
    let cluster = TestCluster::start().await;
    let mut client = cluster.client().await;
    for (what, len, declared) in [("grew", 5000usize, 4096u64), ("shrank", 1000, 4096)] {
        let name = format!("{what}.txt");
        let r = client
            .upload_reader(
                std::io::Cursor::new(vec![b'x'; len]),
                declared,
                &name,
                false,
                |_| {},
            )
            .await;
        let e = r.expect_err(what);
        assert!(
            matches!(e, redcloud_cli::ClientError::Io { .. }),
            "{what}: {e}"
        );
        assert!(
            e.to_string().contains("changed while it was read"),
            "{what}: {e}"
        );
    }
    let names: Vec<String> = client
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(names.is_empty(), "stored: {names:?}");
}
