//! Repair: how fast a new, empty chunkserver receives the whole corpus, beside the
//! disk's limit measured in the same run (the corpus written once, one fsynced file
//! per book); and client upload throughput while such a repair runs, relative to
//! the same upload without one.
//!
//! Cluster: 1 controller + 3 chunkservers in one process on loopback (test
//! settings: heartbeats every 200 ms, repair woken by the join, 4 copies at once,
//! no rate limit). Prints one JSON document.
//!
//! `cargo bench -p redcloud-tests --bench repair`

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redcloud_common::ChunkId;
use redcloud_tests::corpus::{self, Book};
use redcloud_tests::{ClusterSpec, TestCluster};
use serde_json::json;

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// The corpus written once, one fsynced file per book (median of 3).
fn disk_limit(books: &[Book], data: &[Vec<u8>]) -> Duration {
    use std::io::Write;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Instant::now();
        for (b, d) in books.iter().zip(data) {
            let mut f = std::fs::File::create(dir.path().join(&b.file)).expect("create");
            f.write_all(d).expect("write");
            f.sync_all().expect("fsync");
        }
        runs.push(t.elapsed());
    }
    runs.sort();
    runs[1]
}

/// The corpus with every byte XORed by `key`: same sizes, new chunks.
fn variant(data: &[Vec<u8>], key: u8) -> Vec<Bytes> {
    data.iter()
        .map(|d| Bytes::from(d.iter().map(|b| b ^ key).collect::<Vec<u8>>()))
        .collect()
}

async fn upload_all(
    cluster: &TestCluster,
    set: &[Bytes],
    prefix: &str,
    clients: usize,
) -> Duration {
    let queue = Arc::new(tokio::sync::Mutex::new((0..set.len()).collect::<Vec<_>>()));
    let set = Arc::new(set.to_vec());
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (queue, set) = (queue.clone(), set.clone());
        let mut client = cluster.client().await;
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(i) = queue.lock().await.pop() else {
                    break;
                };
                client
                    .upload_bytes(set[i].clone(), &format!("{prefix}-{i}"), false)
                    .await
                    .expect("upload");
            }
        }));
    }
    for t in tasks {
        t.await.expect("upload task");
    }
    t.elapsed()
}

/// Waits until chunkserver `i` holds every chunk of `wanted`; returns when its
/// first chunk arrived (polled every 10 ms).
async fn wait_filled(cluster: &TestCluster, i: usize, wanted: &BTreeSet<ChunkId>) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    let mut first = None;
    loop {
        poll.tick().await;
        let held: BTreeSet<ChunkId> = cluster.chunks_on_disk(i).into_iter().collect();
        if first.is_none() && !held.is_empty() {
            first = Some(Instant::now());
        }
        if wanted.is_subset(&held) {
            return first.unwrap_or_else(Instant::now);
        }
        assert!(
            Instant::now() < deadline,
            "repair did not fill the new chunkserver in 300 s"
        );
    }
}

fn spec() -> ClusterSpec {
    ClusterSpec {
        tweak: Some(|_, cfg| {
            if let Some(c) = std::env::var("BENCH_REPAIR_CONCURRENCY")
                .ok()
                .and_then(|s| s.parse().ok())
            {
                cfg.repair_concurrency = c;
            }
        }),
        ..Default::default()
    }
}

async fn new_chunkserver_fill(data: &[Vec<u8>]) -> (u64, Duration, Duration) {
    let mut cluster = TestCluster::with(spec()).await;
    let set: Vec<Bytes> = data.iter().cloned().map(Bytes::from).collect();
    upload_all(&cluster, &set, "book", 4).await;
    let wanted = cluster.live_chunks().await;
    let bytes: u64 = cluster.controllers[0]
        .controller()
        .db
        .call(|s| redcloud_controller::meta::live_chunks(s.conn()))
        .await
        .expect("live chunks")
        .values()
        .sum();
    let t = Instant::now();
    let new = cluster.add_chunkserver();
    let first = wait_filled(&cluster, new, &wanted).await;
    (bytes, t.elapsed(), first.elapsed())
}

async fn upload_during_repair(data: &[Vec<u8>]) -> (Duration, Duration, u64) {
    let mut cluster = TestCluster::with(spec()).await;
    let base: Vec<Bytes> = data.iter().cloned().map(Bytes::from).collect();
    upload_all(&cluster, &base, "base", 4).await;
    let quiet = upload_all(&cluster, &variant(data, 0x5a), "quiet", 4).await;
    // A new chunkserver joins: repair copies everything to it while clients upload.
    let wanted = cluster.live_chunks().await;
    let new = cluster.add_chunkserver();
    cluster.wait_healthy_chunkservers(0, 4).await;
    let busy = upload_all(&cluster, &variant(data, 0xa5), "busy", 4).await;
    let copied_during = cluster.controllers[0]
        .controller()
        .metrics
        .repair_bytes
        .get();
    wait_filled(&cluster, new, &wanted).await;
    (quiet, busy, copied_during)
}

fn main() {
    let books = corpus::catalog();
    let data: Vec<Vec<u8>> = books
        .iter()
        .map(|b| std::fs::read(b.path()).expect("read book"))
        .collect();
    let total: u64 = data.iter().map(|d| d.len() as u64).sum();
    let disk = disk_limit(&books, &data);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (chunk_bytes, fill, copying) = rt.block_on(new_chunkserver_fill(&data));
    let (quiet, busy, copied_during) = rt.block_on(upload_during_repair(&data));
    let disk_mbps = mbps(total, disk);
    let fill_mbps = mbps(chunk_bytes, fill);
    let out = json!({
        "benchmark": "repair",
        "corpus": { "files": books.len(), "bytes": total, "unique_chunk_bytes": chunk_bytes },
        "machine_limit": {
            "write_once_fsync_MBps": round(disk_mbps),
            "write_once_fsync_s": round(disk.as_secs_f64()),
        },
        "new_chunkserver_fill": {
            "seconds_from_start": round(fill.as_secs_f64()),
            "MBps": round(fill_mbps),
            "ratio_to_disk_limit": round(fill_mbps / disk_mbps),
            "seconds_copying": round(copying.as_secs_f64()),
            "copying_MBps": round(mbps(chunk_bytes, copying)),
            "copying_ratio_to_disk_limit": round(mbps(chunk_bytes, copying) / disk_mbps),
            "aim_ratio": 0.5,
            "note": "from starting the empty chunkserver (registration by heartbeat included) to holding every live chunk; copying: from its first chunk on disk",
        },
        "upload_during_repair": {
            "upload_MBps_without_repair": round(mbps(total, quiet)),
            "upload_MBps_during_repair": round(mbps(total, busy)),
            "ratio": round(quiet.as_secs_f64() / busy.as_secs_f64()),
            "repair_bytes_copied_meanwhile": copied_during,
            "clients": 4,
        },
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
