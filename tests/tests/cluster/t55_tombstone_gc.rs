//! Tombstones are collected once every controller has seen them, never earlier: a
//! controller partitioned away blocks collection, and after it returns no deleted
//! file comes back anywhere.

use std::time::Duration;

use bytes::Bytes;
use redcloud_cli::ClientError;
use redcloud_tests::{ClusterSpec, TestCluster, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

async fn tombstones(cluster: &TestCluster, i: usize) -> (i64, i64) {
    let node = cluster.controllers[i].controller().clone();
    node.db
        .call(|s| {
            let files: i64 =
                s.conn()
                    .query_row("SELECT COUNT(*) FROM files WHERE deleted = 1", [], |r| {
                        r.get(0)
                    })?;
            let markers: i64 = s
                .conn()
                .query_row("SELECT COUNT(*) FROM deletions", [], |r| r.get(0))?;
            Ok((files, markers))
        })
        .await
        .expect("count tombstones")
}

async fn gone_everywhere(cluster: &TestCluster, name: &str) {
    for i in 0..cluster.controllers.len() {
        let r = cluster.client_of(i).await.download_bytes(name, None).await;
        assert!(
            matches!(r, Err(ClientError::NotFound(_))),
            "controller {i}: deleted {name} is back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_are_purged_only_after_every_controller_saw_them() {
    let cluster = TestCluster::with(ClusterSpec {
        controllers: 3,
        tweak: Some(|_, cfg| {
            // Clocks on one machine agree: the smallest drift bound, and a grace
            // no shorter than it.
            cfg.max_clock_drift = Duration::from_millis(100);
            cfg.tombstone_grace = Duration::from_millis(100);
            cfg.tombstone_gc_interval = Duration::from_millis(100);
        }),
        ..Default::default()
    })
    .await;
    let all = [0, 1, 2];
    let mut c0 = cluster.client_of(0).await;
    for n in ["a.txt", "b.txt", "c.txt"] {
        c0.upload_bytes(Bytes::from(format!("{n} text")), n, false)
            .await
            .expect("upload");
    }
    cluster.wait_converged(&all, DEADLINE).await;

    // Deleted with everyone connected: purged everywhere.
    cluster
        .client_of(1)
        .await
        .delete("a.txt")
        .await
        .expect("delete a");
    for i in all {
        let c = &cluster;
        wait_until(
            &format!("controller {i} purges a.txt's tombstone"),
            DEADLINE,
            || async move { tombstones(c, i).await == (0, 0) },
        )
        .await;
    }
    cluster.wait_converged(&all, DEADLINE).await;
    gone_everywhere(&cluster, "a.txt").await;

    // Deleted while controller 2 is cut off: the tombstone must stay until 2 has it.
    cluster.partition(&[0, 1], &[2]);
    c0.delete("b.txt").await.expect("delete b");
    let node0 = cluster.controllers[0].controller().clone();
    let passes = node0.metrics.gc_passes.get();
    wait_until("controller 0 runs more collection passes", DEADLINE, || {
        let node0 = node0.clone();
        async move { node0.metrics.gc_passes.get() >= passes + 5 }
    })
    .await;
    assert_eq!(
        tombstones(&cluster, 0).await,
        (1, 1),
        "kept while controller 2 has not seen it"
    );
    assert_eq!(tombstones(&cluster, 1).await, (1, 1));
    // Controller 2 still serves b.txt: it has not heard of the delete.
    cluster
        .client_of(2)
        .await
        .download_bytes("b.txt", None)
        .await
        .expect("b on the far side");

    cluster.heal();
    for i in all {
        let c = &cluster;
        wait_until(
            &format!("controller {i} purges b.txt's tombstone"),
            DEADLINE,
            || async move { tombstones(c, i).await == (0, 0) },
        )
        .await;
    }
    cluster.wait_converged(&all, DEADLINE).await;
    gone_everywhere(&cluster, "b.txt").await;
    gone_everywhere(&cluster, "a.txt").await;
    cluster
        .client_of(2)
        .await
        .download_bytes("c.txt", None)
        .await
        .expect("c untouched");
}
