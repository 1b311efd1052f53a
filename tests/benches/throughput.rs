//! Upload and download throughput of the whole corpus on 1 controller + 3
//! chunkservers (full replication), beside this machine's own limits measured in
//! the same run:
//!
//! - write limit: the corpus written three times (three directories, one file per
//!   book, each fsynced) — what storing three copies costs the disk at best;
//! - read limit: those files read back and SHA-256-hashed.
//!
//! Throughputs are corpus bytes per second; ratios compare them with the limits.
//! Every figure is the median of `BENCH_REPS` repetitions (default 3), each on a
//! fresh cluster (a re-upload to the same cluster would find its chunks present).
//! Prints one JSON document.
//!
//! `cargo bench -p redcloud-tests --bench throughput`
//! Env: `BENCH_CONCURRENCY` (default `1,4`), `BENCH_REPS` (default 3),
//! `BENCH_DIR` (default the temp dir),
//! `REDCLOUD_CORPUS` (default `../shared/corpus`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redcloud_common::ChunkId;
use redcloud_tests::corpus::{self, Book};
use redcloud_tests::{TestCluster, wait_until};
use serde_json::json;
use tokio::sync::Mutex;

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writes every book three times with fsync, then reads one copy back and hashes it.
fn machine_limits(books: &[Book], dir: &std::path::Path) -> (Duration, Duration) {
    use std::io::{Read, Write};
    let data: Vec<Vec<u8>> = books
        .iter()
        .map(|b| std::fs::read(b.path()).expect("read book"))
        .collect();
    let copies: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("raw-{i}"))).collect();
    for c in &copies {
        std::fs::create_dir_all(c).expect("mkdir");
    }
    let t = Instant::now();
    for c in &copies {
        for (b, d) in books.iter().zip(&data) {
            let mut f = std::fs::File::create(c.join(&b.file)).expect("create");
            f.write_all(d).expect("write");
            f.sync_all().expect("fsync");
        }
    }
    let write = t.elapsed();
    let t = Instant::now();
    let mut buf = Vec::new();
    for b in books {
        buf.clear();
        std::fs::File::open(copies[0].join(&b.file))
            .and_then(|mut f| f.read_to_end(&mut buf))
            .expect("read back");
        let h = redcloud_common::hash::sha256(&buf);
        std::hint::black_box(h);
    }
    let read = t.elapsed();
    for c in &copies {
        let _ = std::fs::remove_dir_all(c);
    }
    (write, read)
}

async fn run_level(books: Arc<Vec<Book>>, concurrency: usize) -> serde_json::Value {
    let cluster = TestCluster::start().await;
    let total: u64 = books.iter().map(|b| b.bytes).sum();

    // Upload: `concurrency` clients take books from a shared queue.
    let queue = Arc::new(Mutex::new((0..books.len()).collect::<Vec<_>>()));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, books) = (queue.clone(), books.clone());
        let mut client = cluster.client().await;
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(i) = queue.lock().await.pop() else {
                    break;
                };
                let b = &books[i];
                client
                    .upload_file(&b.path(), &b.file, false, |_| {})
                    .await
                    .unwrap_or_else(|e| panic!("upload {}: {e}", b.file));
            }
        }));
    }
    for t in tasks {
        t.await.expect("upload task");
    }
    let upload = t.elapsed();

    // Full replication: every chunk on every chunkserver.
    let mut client = cluster.client().await;
    let mut wanted = std::collections::BTreeSet::new();
    for b in books.iter() {
        for c in client.stat(&b.file, None).await.expect("stat").chunks {
            wanted.insert(c.chunk_id.parse::<ChunkId>().expect("id"));
        }
    }
    let cl = &cluster;
    let w = &wanted;
    wait_until(
        "all chunkservers hold every chunk",
        Duration::from_secs(120),
        || async move {
            (0..3).all(|i| {
                let held: std::collections::BTreeSet<_> =
                    cl.chunks_on_disk(i).into_iter().collect();
                w.is_subset(&held)
            })
        },
    )
    .await;
    let replicated = t.elapsed();

    // Download: same concurrency, every byte checked against the catalog.
    let queue = Arc::new(Mutex::new((0..books.len()).collect::<Vec<_>>()));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, books) = (queue.clone(), books.clone());
        let mut client = cluster.client().await;
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(i) = queue.lock().await.pop() else {
                    break;
                };
                let b = &books[i];
                let (info, data) = client
                    .download_bytes(&b.file, None)
                    .await
                    .unwrap_or_else(|e| panic!("download {}: {e}", b.file));
                assert_eq!(info.sha256, b.sha256, "{}", b.file);
                assert_eq!(data.len() as u64, b.bytes);
            }
        }));
    }
    for t in tasks {
        t.await.expect("download task");
    }
    let download = t.elapsed();
    drop(cluster);
    json!({
        "concurrency": concurrency,
        "upload_s": round(upload.as_secs_f64()),
        "upload_MBps": round(mbps(total, upload)),
        "fully_replicated_s": round(replicated.as_secs_f64()),
        "download_s": round(download.as_secs_f64()),
        "download_MBps": round(mbps(total, download)),
    })
}

fn main() {
    let books = Arc::new(corpus::catalog());
    let total: u64 = books.iter().map(|b| b.bytes).sum();
    let levels: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("redcloud-bench-")
        .tempdir_in(base)
        .expect("bench dir");

    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (w, r) = machine_limits(&books, dir.path());
        writes.push(w.as_secs_f64());
        reads.push(r.as_secs_f64());
    }
    let write = Duration::from_secs_f64(median(writes));
    let read = Duration::from_secs_f64(median(reads));
    let write_limit = mbps(total, write);
    let read_limit = mbps(total, read);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runs = Vec::new();
    for c in levels {
        let samples: Vec<serde_json::Value> = (0..reps)
            .map(|_| rt.block_on(run_level(books.clone(), c)))
            .collect();
        let med = |k: &str| {
            round(median(
                samples
                    .iter()
                    .map(|s| s[k].as_f64().unwrap_or(0.0))
                    .collect(),
            ))
        };
        let mut r = json!({
            "concurrency": c,
            "repetitions": reps,
            "upload_s": med("upload_s"),
            "upload_MBps": med("upload_MBps"),
            "fully_replicated_s": med("fully_replicated_s"),
            "download_s": med("download_s"),
            "download_MBps": med("download_MBps"),
        });
        let up = r["upload_MBps"].as_f64().unwrap_or(0.0);
        let down = r["download_MBps"].as_f64().unwrap_or(0.0);
        r["upload_ratio"] = json!(round(up / write_limit));
        r["download_ratio"] = json!(round(down / read_limit));
        runs.push(r);
    }
    let out = json!({
        "benchmark": "throughput",
        "cluster": "1 controller + 3 chunkservers, in one process on loopback, MIN_CHUNK_REPLICAS=2, 1 MiB chunks",
        "corpus": { "files": books.len(), "bytes": total },
        "machine_limit": {
            "write_3_copies_fsync_MBps": round(write_limit),
            "write_3_copies_fsync_s": round(write.as_secs_f64()),
            "read_sha256_MBps": round(read_limit),
            "read_sha256_s": round(read.as_secs_f64()),
            "note": "MBps = corpus bytes (10^6) per second; the write limit writes each byte 3 times",
        },
        "runs": runs,
        "aims": { "upload_ratio": 0.5, "download_ratio": 0.7 },
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
