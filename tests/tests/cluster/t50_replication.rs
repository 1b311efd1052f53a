//! Controllers replicate: partitions with writes on both sides heal to identical
//! state with no acknowledged write lost and no delete undone; duplicated, delayed
//! and reordered messages change nothing; restarted and new controllers catch up;
//! a clock an hour fast does not freeze the others.

use std::time::Duration;

use bytes::Bytes;
use redcloud_cli::ClientError;
use redcloud_controller::replication::net::Fault;
use redcloud_tests::{ClusterSpec, TestCluster, wait_until};

const CONVERGE: Duration = Duration::from_secs(30);

fn five() -> ClusterSpec {
    ClusterSpec {
        controllers: 5,
        ..Default::default()
    }
}

fn text(name: &str, side: &str) -> Bytes {
    Bytes::from(format!("{name} written on side {side}\n").repeat(50))
}

async fn upload(c: &TestCluster, i: usize, name: &str, data: Bytes) -> String {
    let r = c
        .client_of(i)
        .await
        .upload_bytes(data, name, false)
        .await
        .unwrap_or_else(|e| panic!("upload {name} on controller {i}: {e}"));
    r.file.expect("file info").file_id
}

async fn download(
    c: &TestCluster,
    i: usize,
    name: &str,
    version: Option<&str>,
) -> Result<Vec<u8>, ClientError> {
    c.client_of(i)
        .await
        .download_bytes(name, version)
        .await
        .map(|(_, d)| d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_2_3_with_writes_on_both_sides_heals_without_loss() {
    let cluster = TestCluster::with(five()).await;
    let all = [0, 1, 2, 3, 4];
    let before = [
        "keep.txt",
        "delete-on-a.txt",
        "delete-on-b.txt",
        "shared.txt",
    ];
    for n in before {
        upload(&cluster, 0, n, text(n, "before")).await;
    }
    cluster.wait_converged(&all, CONVERGE).await;

    // Split {0,1} | {2,3,4}. Each side keeps accepting writes.
    cluster.partition(&[0, 1], &[2, 3, 4]);
    let mut acked = Vec::new();
    for (i, side) in [(0, "a"), (1, "a"), (2, "b"), (4, "b")] {
        let name = format!("new-{i}.txt");
        let data = text(&name, side);
        let id = upload(&cluster, i, &name, data.clone()).await;
        acked.push((name, id, data));
    }
    // The same name uploaded on both sides: both versions must survive.
    let a_shared = text("shared.txt", "a");
    let b_shared = text("shared.txt", "b");
    let id_a = upload(&cluster, 1, "shared.txt", a_shared.clone()).await;
    let id_b = upload(&cluster, 3, "shared.txt", b_shared.clone()).await;
    acked.push(("shared.txt".into(), id_a.clone(), a_shared.clone()));
    acked.push(("shared.txt".into(), id_b.clone(), b_shared.clone()));
    cluster
        .client_of(0)
        .await
        .delete("delete-on-a.txt")
        .await
        .expect("delete on side a");
    cluster
        .client_of(2)
        .await
        .delete("delete-on-b.txt")
        .await
        .expect("delete on side b");

    // While split, each side sees its own writes and not the other's.
    download(&cluster, 0, "new-0.txt", None)
        .await
        .expect("own side");
    assert!(matches!(
        download(&cluster, 0, "new-2.txt", None).await,
        Err(ClientError::NotFound(_))
    ));
    let d = cluster.digests(&all).await;
    assert_ne!(d[0], d[2], "the two sides diverged");

    cluster.heal();
    cluster.wait_converged(&all, CONVERGE).await;

    for i in all {
        for (name, id, data) in &acked {
            let got = download(&cluster, i, name, Some(id))
                .await
                .unwrap_or_else(|e| {
                    panic!("controller {i}: acknowledged upload {name} ({id}) lost: {e}")
                });
            assert_eq!(&got, data, "controller {i}: {name} {id}");
        }
        for gone in ["delete-on-a.txt", "delete-on-b.txt"] {
            let r = download(&cluster, i, gone, None).await;
            assert!(
                matches!(r, Err(ClientError::NotFound(_))),
                "controller {i}: deleted {gone} is back"
            );
        }
        download(&cluster, i, "keep.txt", None)
            .await
            .expect("untouched file");
        // Last writer wins for the current version; the other stays as history.
        let current = download(&cluster, i, "shared.txt", None)
            .await
            .expect("shared current");
        assert!(current == a_shared || current == b_shared);
    }
    let currents: Vec<Vec<u8>> = futures::future::join_all(all.iter().map(|&i| {
        let c = &cluster;
        async move { download(c, i, "shared.txt", None).await.expect("current") }
    }))
    .await;
    assert!(
        currents.windows(2).all(|w| w[0] == w[1]),
        "every controller picks the same current version"
    );
    let versions = cluster
        .client_of(4)
        .await
        .list("shared.txt")
        .await
        .expect("ls");
    assert_eq!(versions.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_delayed_and_dropped_messages_change_nothing() {
    let cluster = TestCluster::with(ClusterSpec {
        controllers: 3,
        ..Default::default()
    })
    .await;
    let all = [0, 1, 2];
    let h = |i: usize| cluster.controllers[i].http_addr.to_string();
    let n = |i: usize| cluster.controllers[i].controller().clone();
    n(0).net.filter.set(&h(1), Fault::Duplicate);
    n(0).net
        .filter
        .set(&h(2), Fault::Delay(Duration::from_millis(300)));
    n(1).net.filter.set(&h(2), Fault::Drop(0.5));
    n(2).net.filter.set(&h(0), Fault::Duplicate);
    for k in 0..6 {
        let name = format!("f{k}.txt");
        upload(&cluster, k % 3, &name, text(&name, "x")).await;
        if k % 2 == 1 {
            // Delete the previous file from another controller once it has arrived there.
            let (deleter, victim) = ((k + 1) % 3, format!("f{}.txt", k - 1));
            let c = &cluster;
            let v = victim.clone();
            wait_until(
                &format!("{victim} reaches controller {deleter}"),
                CONVERGE,
                || {
                    let v = v.clone();
                    async move { download(c, deleter, &v, None).await.is_ok() }
                },
            )
            .await;
            cluster
                .client_of(deleter)
                .await
                .delete(&victim)
                .await
                .expect("delete");
        }
    }
    cluster.wait_converged(&all, CONVERGE).await;
    cluster.heal();
    let d = cluster.digests(&all).await;
    for i in all {
        let names: Vec<String> = cluster
            .client_of(i)
            .await
            .list("")
            .await
            .expect("ls")
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["f1.txt", "f3.txt", "f5.txt"], "controller {i}");
    }
    // Replaying everything again (duplicates of every message) changes no digest.
    for i in all {
        let node = n(i);
        let vv = redcloud_common::replication::VersionVector::default();
        let all_state = node
            .db
            .call(move |s| s.delta(&vv, usize::MAX))
            .await
            .expect("delta");
        assert!(all_state.complete);
        for j in all {
            let batch = all_state.batch.clone();
            let applied = n(j)
                .db
                .call(move |s| s.apply(batch, 60_000))
                .await
                .expect("apply");
            assert!(
                applied.changed.is_empty(),
                "replayed state changed controller {j}"
            );
        }
    }
    assert_eq!(cluster.digests(&all).await, d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_and_new_controllers_catch_up() {
    let mut cluster = TestCluster::with(ClusterSpec {
        controllers: 3,
        ..Default::default()
    })
    .await;
    upload(&cluster, 0, "early.txt", text("early", "x")).await;
    cluster.wait_converged(&[0, 1, 2], CONVERGE).await;

    cluster.controllers[1].kill();
    let id = upload(&cluster, 0, "while-down.txt", text("while-down", "x")).await;
    cluster
        .client_of(2)
        .await
        .delete("early.txt")
        .await
        .expect("delete while 1 is down");
    cluster.controllers[1].start();
    cluster.wait_converged(&[0, 1, 2], CONVERGE).await;
    assert_eq!(
        download(&cluster, 1, "while-down.txt", Some(&id))
            .await
            .expect("caught up"),
        text("while-down", "x")
    );
    assert!(matches!(
        download(&cluster, 1, "early.txt", None).await,
        Err(ClientError::NotFound(_))
    ));

    // A brand-new controller, given only seeds, gets the whole state and serves it.
    let new = cluster.add_controller();
    cluster.wait_converged(&[0, 1, 2, new], CONVERGE).await;
    cluster.wait_healthy_chunkservers(new, 3).await;
    assert_eq!(
        download(&cluster, new, "while-down.txt", None)
            .await
            .expect("new controller serves old data"),
        text("while-down", "x")
    );
    // Everyone learns of the newcomer through gossip.
    let node0 = cluster.controllers[0].controller().clone();
    let new_http = cluster.controllers[new].http_addr.to_string();
    wait_until("controller 0 knows the new controller", CONVERGE, || {
        let node0 = node0.clone();
        let new_http = new_http.clone();
        async move { node0.peers.contains(&new_http) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_an_hour_fast_does_not_freeze_later_writes() {
    let cluster = TestCluster::with(ClusterSpec {
        controllers: 3,
        tweak: Some(|i, cfg| {
            if i == 1 {
                cfg.clock_offset_ms = 3_600_000;
            }
        }),
        ..Default::default()
    })
    .await;
    let all = [0, 1, 2];
    upload(&cluster, 1, "book.txt", text("book", "fast clock")).await;
    cluster.wait_converged(&all, CONVERGE).await;
    // A later upload on a node with a correct clock becomes current everywhere:
    // its HLC has moved past the fast node's timestamps.
    upload(&cluster, 0, "book.txt", text("book", "correct clock")).await;
    cluster.wait_converged(&all, CONVERGE).await;
    for i in all {
        assert_eq!(
            download(&cluster, i, "book.txt", None)
                .await
                .expect("download"),
            text("book", "correct clock"),
            "controller {i}"
        );
    }
    // And a later delete from a correct clock wins too.
    cluster
        .client_of(2)
        .await
        .delete("book.txt")
        .await
        .expect("delete");
    cluster.wait_converged(&all, CONVERGE).await;
    for i in all {
        assert!(matches!(
            download(&cluster, i, "book.txt", None).await,
            Err(ClientError::NotFound(_))
        ));
    }
}
