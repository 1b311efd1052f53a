//! A client's writes take effect in the order it made them, whichever controllers
//! they reach and however those controllers' clocks are set (within the drift).
//!
//! The fault run found the first case (seed 1, 300 s): an acknowledged upload on a
//! controller whose clock ran ahead, then an acknowledged delete on one that had not
//! yet heard of that upload: the delete's name marker was stamped earlier than the
//! upload, so the upload came back everywhere once they met. The client carries a
//! causal clock (the highest clock of the answers it had, `after` in every write)
//! and the controller stamps the write past it.

use std::time::Duration;

use bytes::Bytes;
use redcloud_cli::{Client, ClientError};
use redcloud_tests::{ClusterSpec, TestCluster};

const CONVERGE: Duration = Duration::from_secs(30);

/// One user's session: a client per controller, sharing the causal clock as one
/// long-lived client (or the CLI, which keeps it with the login) would.
struct Session<'a> {
    cluster: &'a TestCluster,
    clock: u64,
}

impl Session<'_> {
    async fn on(&self, i: usize) -> Client {
        let mut c = self.cluster.client_of(i).await;
        c.observe_clock(self.clock);
        c
    }

    async fn upload(&mut self, i: usize, name: &str, text: &str) -> String {
        let mut c = self.on(i).await;
        let r = c
            .upload_bytes(Bytes::from(text.to_string()), name, false)
            .await
            .unwrap_or_else(|e| panic!("upload {name} on controller {i}: {e}"));
        self.clock = self.clock.max(c.causal_clock());
        r.file.expect("file info").file_id
    }

    async fn delete(&mut self, i: usize, name: &str) {
        let mut c = self.on(i).await;
        c.delete(name)
            .await
            .unwrap_or_else(|e| panic!("delete {name} on controller {i}: {e}"));
        self.clock = self.clock.max(c.causal_clock());
    }
}

fn with_fast_clock(fast: usize) -> ClusterSpec {
    // 20 s ahead: inside MAX_CLOCK_DRIFT/2 (30 s), so the controller keeps its own
    // wall clock and stamps with it.
    let tweak: fn(usize, &mut redcloud_controller::Config) = match fast {
        0 => |i, cfg| {
            if i == 0 {
                cfg.clock_offset_ms = 20_000;
            }
        },
        _ => |i, cfg| {
            if i == 1 {
                cfg.clock_offset_ms = 20_000;
            }
        },
    };
    ClusterSpec {
        controllers: 3,
        tweak: Some(tweak),
        ..Default::default()
    }
}

async fn current_on(cluster: &TestCluster, i: usize, name: &str) -> Result<Vec<u8>, ClientError> {
    cluster
        .client_of(i)
        .await
        .download_bytes(name, None)
        .await
        .map(|(_, d)| d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_a_slower_controller_that_missed_the_upload_stays_a_delete() {
    let cluster = TestCluster::with(with_fast_clock(1)).await;
    let all = [0, 1, 2];
    let mut s = Session {
        cluster: &cluster,
        clock: 0,
    };
    s.upload(0, "book.txt", "first version\n").await;
    cluster.wait_converged(&all, CONVERGE).await;

    // Controller 2 hears nothing from now on: it keeps the first version as live.
    cluster.partition(&[2], &[0, 1]);
    s.delete(0, "book.txt").await;
    // Uploaded again on the controller whose clock is 20 s ahead...
    s.upload(1, "book.txt", "second version\n").await;
    // ...and deleted on controller 2, which knows only the first version.
    s.delete(2, "book.txt").await;

    cluster.heal();
    cluster.wait_converged(&all, CONVERGE).await;
    for i in all {
        assert!(
            matches!(
                current_on(&cluster, i, "book.txt").await,
                Err(ClientError::NotFound(_))
            ),
            "controller {i}: the acknowledged delete was undone"
        );
        let listed = cluster.client_of(i).await.list("").await.expect("list");
        assert!(
            listed.iter().all(|f| f.name != "book.txt"),
            "controller {i} lists a deleted book"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_after_a_delete_on_a_faster_controller_is_current() {
    let cluster = TestCluster::with(with_fast_clock(0)).await;
    let all = [0, 1, 2];
    let mut s = Session {
        cluster: &cluster,
        clock: 0,
    };
    s.upload(2, "book.txt", "first version\n").await;
    cluster.wait_converged(&all, CONVERGE).await;

    // Controller 1 hears nothing from now on.
    cluster.partition(&[1], &[0, 2]);
    // Deleted on the controller whose clock is 20 s ahead, then uploaded again on
    // controller 1, which has not heard of the delete.
    s.delete(0, "book.txt").await;
    let id = s.upload(1, "book.txt", "after the delete\n").await;

    cluster.heal();
    cluster.wait_converged(&all, CONVERGE).await;
    for i in all {
        assert_eq!(
            current_on(&cluster, i, "book.txt")
                .await
                .unwrap_or_else(|e| panic!(
                    "controller {i}: the acknowledged upload {id} is not current: {e}"
                )),
            b"after the delete\n",
            "controller {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_causal_clock_far_in_the_future_moves_no_clock_past_the_drift() {
    let cluster = TestCluster::with(ClusterSpec {
        controllers: 2,
        ..Default::default()
    })
    .await;
    let drift_ms = cluster.controllers[0].config().max_clock_drift.as_millis() as u64;
    let mut c = cluster.client_of(0).await;
    c.observe_clock(u64::MAX);
    let before = redcloud_common::now_ms();
    let r = c
        .upload_bytes(
            Bytes::from_static(b"from a hostile clock\n"),
            "far.txt",
            false,
        )
        .await
        .expect("upload with a far-future causal clock");
    // The write's own stamp (the client keeps the larger value it was given).
    let stamped = redcloud_common::HlcTimestamp(r.clock).millis();
    assert!(
        stamped <= redcloud_common::now_ms() + drift_ms / 2 + 1_000,
        "stamped {} ms ahead of the wall clock",
        stamped.saturating_sub(before)
    );
    // Within the drift of its peer: applied there, not held.
    cluster.wait_converged(&[0, 1], CONVERGE).await;
    assert_eq!(
        current_on(&cluster, 1, "far.txt")
            .await
            .expect("download on the peer"),
        b"from a hostile clock\n"
    );
}
