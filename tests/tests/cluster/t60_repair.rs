//! Chunks heal themselves: new and returning chunkservers are filled, corruption
//! found by scrub is repaired while downloads stay byte-identical, deleted files'
//! chunks are freed everywhere, and an isolated chunkserver catches up.

use std::collections::BTreeSet;
use std::time::Duration;

use redcloud_common::ChunkId;
use redcloud_tests::{ClusterSpec, TestCluster, corpus, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

async fn upload_books(cluster: &TestCluster, n: usize) -> Vec<corpus::Book> {
    let mut client = cluster.client().await;
    let books: Vec<_> = corpus::catalog().into_iter().take(n).collect();
    for b in &books {
        client
            .upload_file(&b.path(), &b.file, false, |_| {})
            .await
            .expect("upload");
    }
    books
}

async fn check_downloads(cluster: &TestCluster, books: &[corpus::Book]) {
    let mut client = cluster.client().await;
    for b in books {
        let (_, data) = client
            .download_bytes(&b.file, None)
            .await
            .unwrap_or_else(|e| panic!("download {}: {e}", b.file));
        assert_eq!(
            hex::encode(redcloud_common::hash::sha256(&data)),
            b.sha256,
            "{}",
            b.file
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_empty_chunkserver_receives_every_chunk() {
    let mut cluster = TestCluster::start().await;
    let books = upload_books(&cluster, 20).await;
    let new = cluster.add_chunkserver();
    cluster.wait_healthy_chunkservers(0, 4).await;
    cluster.wait_holds_all(new, DEADLINE).await;
    // It serves them: with the others gone, every book still downloads.
    for i in 0..3 {
        cluster.chunkservers[i].kill();
    }
    check_downloads(&cluster, &books).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunkserver_down_during_uploads_catches_up_when_it_returns() {
    let mut cluster = TestCluster::start().await;
    upload_books(&cluster, 3).await;
    cluster.chunkservers[2].kill();
    let books = upload_books(&cluster, 15).await;
    cluster.chunkservers[2].start();
    cluster.wait_holds_all(2, DEADLINE).await;
    let status = cluster
        .client()
        .await
        .cluster_status()
        .await
        .expect("status");
    assert_eq!(status.chunkservers_answered, 3);
    wait_until("the repair backlog is empty", DEADLINE, || {
        let node = cluster.controllers[0].controller().clone();
        async move { node.repair_report().missing_copies == 0 && node.repair_report().passes > 0 }
    })
    .await;
    cluster.chunkservers[0].kill();
    cluster.chunkservers[1].kill();
    check_downloads(&cluster, &books).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_finds_a_flipped_byte_and_repair_restores_it() {
    let cluster = TestCluster::with(ClusterSpec {
        scrub_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let books = upload_books(&cluster, 6).await;
    let victim: ChunkId = *cluster.live_chunks().await.iter().next().expect("a chunk");
    cluster.wait_holds_all(0, DEADLINE).await;
    let path = cluster.chunk_path(0, &victim);
    let original = std::fs::read(&path).expect("read chunk");
    let mut bytes = original.clone();
    bytes[original.len() / 3] ^= 0x04;
    std::fs::write(&path, &bytes).expect("corrupt chunk");

    let cs0 = cluster.chunkservers[0].chunkserver().clone();
    let mut downloads = 0;
    wait_until(
        "scrub finds the corrupt copy and repair restores it",
        DEADLINE,
        || {
            let cs0 = cs0.clone();
            let (path, original) = (path.clone(), original.clone());
            let cluster = &cluster;
            let books = &books;
            downloads += 1;
            async move {
                // Downloads stay byte-identical throughout.
                check_downloads(cluster, &books[..2]).await;
                cs0.metrics.scrub_corrupt.get() >= 1
                    && std::fs::read(&path).is_ok_and(|b| b == original)
            }
        },
    )
    .await;
    assert!(downloads > 0);
    check_downloads(&cluster, &books).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_every_file_frees_every_chunk_everywhere() {
    let cluster = TestCluster::with(ClusterSpec {
        // The shortest grace accepted (it also bounds an upload's duration). One
        // controller: it collects chunks only when told it is alone on purpose.
        tweak: Some(|_, cfg| {
            cfg.chunk_gc_grace = redcloud_controller::config::MIN_CHUNK_GC_GRACE;
            cfg.standalone = true;
        }),
        ..Default::default()
    })
    .await;
    let books = upload_books(&cluster, 10).await;
    for i in 0..3 {
        cluster.wait_holds_all(i, DEADLINE).await;
    }
    let mut client = cluster.client().await;
    // A second version keeps its own chunks alive until it too is deleted.
    client
        .upload_bytes(
            bytes::Bytes::from_static(b"a newer edition"),
            &books[0].file,
            false,
        )
        .await
        .expect("second version");
    for b in &books {
        client.delete(&b.file).await.expect("delete");
    }
    for i in 0..3 {
        let cluster = &cluster;
        wait_until(
            &format!("chunkserver {i} holds no chunk"),
            DEADLINE,
            || async move { cluster.chunks_on_disk(i).is_empty() },
        )
        .await;
    }
    assert!(cluster.live_chunks().await.is_empty());
    let collected = cluster.controllers[0]
        .controller()
        .metrics
        .chunks_collected
        .get();
    assert!(collected as usize >= books.len(), "collected {collected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_chunkserver_is_filled_when_the_partition_heals() {
    let mut cluster = TestCluster::start().await;
    upload_books(&cluster, 2).await;
    cluster.isolate_chunkserver(1, true);
    cluster.wait_healthy_chunkservers(0, 2).await;
    let books = upload_books(&cluster, 12).await;
    let before: BTreeSet<ChunkId> = cluster.chunks_on_disk(1).into_iter().collect();
    let live = cluster.live_chunks().await;
    assert!(
        !live.is_subset(&before),
        "the isolated chunkserver missed uploads"
    );
    cluster.isolate_chunkserver(1, false);
    cluster.wait_healthy_chunkservers(0, 3).await;
    cluster.wait_holds_all(1, DEADLINE).await;
    cluster.chunkservers[0].kill();
    cluster.chunkservers[2].kill();
    check_downloads(&cluster, &books).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_says_when_its_answer_is_partial() {
    let mut cluster = TestCluster::with(ClusterSpec {
        controllers: 2,
        ..Default::default()
    })
    .await;
    upload_books(&cluster, 2).await;
    cluster.wait_converged(&[0, 1], DEADLINE).await;
    let full = cluster
        .client()
        .await
        .cluster_status()
        .await
        .expect("status");
    assert_eq!(
        (full.controllers_answered, full.chunkservers_answered),
        (2, 3)
    );
    assert!(
        full.chunkservers
            .iter()
            .all(|c| c.answered && c.chunk_count > 0)
    );

    cluster.chunkservers[2].kill();
    cluster.controllers[1].kill();
    let partial = cluster
        .client()
        .await
        .cluster_status()
        .await
        .expect("status");
    assert_eq!(partial.controllers.len(), 2);
    assert_eq!(
        partial.controllers_answered, 1,
        "the killed controller is reported down"
    );
    assert_eq!(partial.chunkservers.len(), 3);
    assert_eq!(
        partial.chunkservers_answered, 2,
        "the killed chunkserver is reported down"
    );
    let down = partial
        .controllers
        .iter()
        .find(|c| !c.is_self)
        .expect("other controller");
    assert!(!down.reachable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunkserver_health_changes_spread_to_every_controller() {
    let mut cluster = TestCluster::with(ClusterSpec {
        controllers: 3,
        ..Default::default()
    })
    .await;
    let cs2 =
        std::fs::read_to_string(cluster.chunkservers[2].data_dir.join("node_id")).expect("node id");
    let replicated_health = |i: usize| {
        let node = cluster.controllers[i].controller().clone();
        let id = cs2.clone();
        async move {
            node.db
                .call(move |s| {
                    // The freshest observation any controller made of it.
                    Ok(redcloud_controller::meta::chunkservers(s.conn())?
                        .into_iter()
                        .find(|(c, _)| c.node_id.as_str() == id.trim())
                        .map(|(_, healthy)| healthy as i64))
                })
                .await
                .ok()
                .flatten()
        }
    };
    cluster.chunkservers[2].kill();
    for i in 0..3 {
        wait_until(
            &format!("controller {i} records the failure"),
            DEADLINE,
            || async move { replicated_health(i).await == Some(0) },
        )
        .await;
    }
    cluster.chunkservers[2].start();
    for i in 0..3 {
        wait_until(
            &format!("controller {i} records the return"),
            DEADLINE,
            || async move { replicated_health(i).await == Some(1) },
        )
        .await;
    }
    cluster.wait_converged(&[0, 1, 2], DEADLINE).await;
}

/// Content reuse against chunk collection on another controller. A book is deleted
/// on controller 0; controller 1 sees its chunks unreferenced past the grace but,
/// cut off from controller 0, must wait for a sync. Meanwhile the same book is
/// uploaded again on controller 0, and the upload is held open just before its
/// commit: its chunks are on the chunkservers already, and no controller's
/// references include them yet. When the link heals, controller 1 syncs (the upload
/// is not in what it learns) and decides on those chunks; the chunkservers must
/// refuse, because the chunks were just written. Then the upload commits, and the
/// book must download from both controllers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_offered_again_by_an_upload_is_not_collected_by_another_controller() {
    let cluster = TestCluster::with(ClusterSpec {
        controllers: 2,
        chunkservers: 2,
        chunk_size: 4096,
        tweak: Some(|_, cfg| {
            // The upload below is held open while controller 1 syncs and decides:
            // an upload must commit within 80% of the grace, so the grace is
            // well beyond the few seconds that takes.
            cfg.chunk_gc_grace = Duration::from_secs(30);
            cfg.repair_interval = Duration::from_millis(300);
            cfg.anti_entropy_interval = Duration::from_millis(500);
        }),
        ..Default::default()
    })
    .await;
    let book = corpus::catalog()
        .into_iter()
        .find(|b| (100_000..300_000).contains(&b.bytes))
        .expect("a book of 100-300 KB");
    let data = std::fs::read(book.path()).expect("read book");
    let full_chunks: Vec<ChunkId> = data.chunks_exact(4096).map(ChunkId::of).collect();
    let mut c0 = cluster.client_of(0).await;
    c0.upload_bytes(data.clone().into(), "first.txt", false)
        .await
        .expect("upload");
    c0.delete("first.txt").await.expect("delete");
    cluster.wait_converged(&[0, 1], DEADLINE).await;
    cluster.partition(&[0], &[1]);
    let waiting = || {
        cluster.controllers[1]
            .controller()
            .metrics
            .chunk_gc_waiting_for_sync
            .get()
    };
    wait_until(
        "controller 1 has unreferenced chunks past the grace, waiting for a sync",
        Duration::from_secs(90),
        || async { waiting() > 0 },
    )
    .await;
    assert!(
        full_chunks
            .iter()
            .all(|c| (0..2).all(|i| cluster.chunk_path(i, c).is_file())),
        "chunks were collected while a controller could not be synced with"
    );

    // The same bytes again, on controller 0 (the raw API: every byte but the last
    // is sent, then the stream waits).
    use redcloud_proto::controller::{self as pb, upload_request::Msg};
    let offered_from = std::time::SystemTime::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadRequest>(4);
    let msg = |m: Msg| pb::UploadRequest { msg: Some(m) };
    tx.send(msg(Msg::Start(pb::UploadStart {
        name: "second.txt".into(),
        size: data.len() as u64,
        public: false,
        after: 0,
    })))
    .await
    .expect("send start");
    let mut raw = pb::controller_client::ControllerClient::connect(format!(
        "http://{}",
        cluster.controller_addr(0)
    ))
    .await
    .expect("connect to controller 0");
    let request = cluster.authed(tokio_stream::wrappers::ReceiverStream::new(rx));
    let upload = tokio::spawn(async move { raw.upload(request).await });
    tx.send(msg(Msg::Data(data[..data.len() - 1].to_vec().into())))
        .await
        .expect("send data");
    let offered = |i: usize, c: &ChunkId| {
        std::fs::metadata(cluster.chunk_path(i, c))
            .and_then(|m| m.modified())
            .is_ok_and(|m| m >= offered_from)
    };
    wait_until(
        "the upload has offered every full chunk to both chunkservers",
        DEADLINE,
        || async { full_chunks.iter().all(|c| (0..2).all(|i| offered(i, c))) },
    )
    .await;

    let m1 = &cluster.controllers[1].controller().metrics;
    let decided = || m1.chunks_collected.get() + m1.chunks_kept_recently_written.get();
    let before = decided();
    cluster.heal();
    wait_until(
        "controller 1, synced again, has decided on the unreferenced chunks",
        DEADLINE,
        || async { decided() > before },
    )
    .await;
    assert!(
        !upload.is_finished(),
        "the upload ended before it was let go: {:?}",
        upload.await
    );
    tx.send(msg(Msg::Data(data[data.len() - 1..].to_vec().into())))
        .await
        .expect("send the last byte");
    tx.send(msg(Msg::Finish(pb::UploadFinish {
        sha256: book.sha256.clone(),
    })))
    .await
    .expect("send finish");
    drop(tx);
    upload
        .await
        .expect("upload task")
        .expect("the upload commits");
    cluster.wait_converged(&[0, 1], DEADLINE).await;
    for i in 0..2 {
        let (_, got) = cluster
            .client_of(i)
            .await
            .download_bytes("second.txt", None)
            .await
            .unwrap_or_else(|e| panic!("download from controller {i}: {e}"));
        assert_eq!(got, data, "second.txt from controller {i}");
    }
    assert!(
        m1.chunks_kept_recently_written.get() > 0,
        "no chunkserver refused a delete"
    );
}
