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
//! Then the same on the release binaries as separate processes, with every
//! node's peak RSS, and one big book (`BENCH_BIG_MB`, default 1024; 0 skips)
//! uploaded and downloaded with the `redcloud` binary.
//!
//! `cargo bench -p redcloud-tests --bench throughput` (builds the release binaries first)
//! Env: `BENCH_MODES` (default `in_process,processes`),
//! `BENCH_CONCURRENCY` (default `1,4`), `BENCH_REPS` (default 3),
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
    wait_indexed(&cluster.controllers[0].http_addr.to_string(), books.len()).await;

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

/// The same upload and download on the release binaries as separate processes
/// (the bench process is the client), with each node's peak RSS.
async fn run_level_procs(books: Arc<Vec<Book>>, concurrency: usize) -> serde_json::Value {
    let cluster = redcloud_tests::procs::ProcCluster::start(1, 3, &[]).await;
    let addrs = cluster.all_controllers();
    let total: u64 = books.iter().map(|b| b.bytes).sum();
    let queue = Arc::new(Mutex::new((0..books.len()).collect::<Vec<_>>()));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, books) = (queue.clone(), books.clone());
        let mut client = cluster.client(&addrs).await;
        tasks.push(tokio::spawn(async move {
            loop {
                // A `let` statement, not `while let`: the queue's guard must go
                // before the transfer, or the clients take turns.
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
    wait_until(
        "every chunkserver holds every chunk",
        Duration::from_secs(120),
        || async {
            match cluster.client(&addrs).await.cluster_status().await {
                Ok(s) => s
                    .chunkservers
                    .iter()
                    .all(|c| c.chunk_count >= s.chunk_count),
                Err(_) => false,
            }
        },
    )
    .await;
    let replicated = t.elapsed();
    wait_indexed(&cluster.controllers[0].http_addr, books.len()).await;
    let queue = Arc::new(Mutex::new((0..books.len()).collect::<Vec<_>>()));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, books) = (queue.clone(), books.clone());
        let mut client = cluster.client(&addrs).await;
        tasks.push(tokio::spawn(async move {
            loop {
                // A `let` statement, not `while let`: the queue's guard must go
                // before the transfer, or the clients take turns.
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
    json!({
        "concurrency": concurrency,
        "upload_s": round(upload.as_secs_f64()),
        "upload_MBps": round(mbps(total, upload)),
        "fully_replicated_s": round(replicated.as_secs_f64()),
        "download_s": round(download.as_secs_f64()),
        "download_MBps": round(mbps(total, download)),
        "peak_rss_MiB": peak_rss(&cluster),
    })
}

/// Waits until the controller at `http` has indexed `n` books for search, so the
/// download is timed on its own (indexing reads every new book once).
async fn wait_indexed(http: &str, n: usize) {
    let client = redcloud_common::http::HttpClient::with_timeouts(
        Duration::from_secs(1),
        Duration::from_secs(5),
        None,
    );
    wait_until(
        "the controller indexed every book",
        Duration::from_secs(300),
        || async {
            let Ok(body) = client.get(http, "/metrics").await else {
                return false;
            };
            String::from_utf8_lossy(&body)
                .lines()
                .find(|l| l.contains("books_indexed_total") && !l.starts_with('#'))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|v| v >= n)
        },
    )
    .await;
}

fn peak_rss(cluster: &redcloud_tests::procs::ProcCluster) -> serde_json::Value {
    cluster
        .controllers
        .iter()
        .chain(cluster.chunkservers.iter())
        .map(|p| (p.name.clone(), json!(p.peak_rss() >> 20)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// One big book (the corpus repeated to `mb` MiB) uploaded and downloaded with
/// the `redcloud` binary, on processes; peak RSS of every process, the CLI's by
/// `/usr/bin/time` where it is installed.
async fn big_file(mb: u64, dir: &std::path::Path, books: &[Book]) -> serde_json::Value {
    use std::io::Write;
    let path = dir.join("big-book.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut left = mb << 20;
        'fill: loop {
            for b in books {
                let d = std::fs::read(b.path()).expect("read book");
                let n = (d.len() as u64).min(left) as usize;
                f.write_all(&d[..n]).expect("write");
                left -= n as u64;
                if left == 0 {
                    break 'fill;
                }
            }
        }
        f.flush().expect("flush");
    }
    let cluster = redcloud_tests::procs::ProcCluster::start(1, 3, &[]).await;
    let addrs = cluster.all_controllers().join(",");
    let bin = redcloud_tests::procs::bin_dir().join("redcloud");
    let timed = std::path::Path::new("/usr/bin/time").is_file();
    let run = |args: Vec<String>| {
        let mut c = if timed {
            let mut c = std::process::Command::new("/usr/bin/time");
            c.arg("-f").arg("maxrss_kb=%M").arg(&bin);
            c
        } else {
            std::process::Command::new(&bin)
        };
        c.arg("--controller")
            .arg(&addrs)
            .args(args)
            .env("REDCLOUD_TOKEN", &cluster.token)
            .env("XDG_CONFIG_HOME", dir.join("cli-config"));
        let t = Instant::now();
        let out = c.output().expect("run redcloud");
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "redcloud failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rss = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find_map(|l| l.strip_prefix("maxrss_kb="))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb >> 10);
        (took, rss)
    };
    let bytes = mb << 20;
    let p = path.display().to_string();
    let (up, up_rss) = tokio::task::block_in_place(|| run(vec!["upload".into(), p]));
    let out = dir.join("big-book.out");
    let (down, down_rss) = tokio::task::block_in_place(|| {
        run(vec![
            "download".into(),
            "big-book.txt".into(),
            "-o".into(),
            out.display().to_string(),
        ])
    });
    assert_eq!(
        std::fs::metadata(&out).expect("downloaded").len(),
        bytes,
        "the big book downloads whole"
    );
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&path);
    json!({
        "bytes": bytes,
        "upload_MBps": round(mbps(bytes, up)),
        "download_MBps": round(mbps(bytes, down)),
        "peak_rss_MiB": peak_rss(&cluster),
        "cli_peak_rss_MiB": { "upload": up_rss, "download": down_rss },
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
    let modes: Vec<String> = std::env::var("BENCH_MODES")
        .unwrap_or_else(|_| "in_process,processes".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let mut runs = Vec::new();
    for (mode, c) in modes
        .iter()
        .flat_map(|m| levels.iter().map(move |c| (m.clone(), *c)))
    {
        let samples: Vec<serde_json::Value> = (0..reps)
            .map(|_| {
                if mode == "processes" {
                    rt.block_on(run_level_procs(books.clone(), c))
                } else {
                    rt.block_on(run_level(books.clone(), c))
                }
            })
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
            "mode": mode,
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
        if let Some(rss) = samples.last().and_then(|s| s.get("peak_rss_MiB")) {
            r["peak_rss_MiB"] = rss.clone();
        }
        runs.push(r);
    }
    let big_mb: u64 = std::env::var("BENCH_BIG_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let big = (big_mb > 0).then(|| rt.block_on(big_file(big_mb, dir.path(), &books)));
    let out = json!({
        "benchmark": "throughput",
        "cluster": "1 controller + 3 chunkservers on loopback, MIN_CHUNK_REPLICAS=2, 1 MiB chunks: in one process (in_process), or the release binaries as processes (processes)",
        "corpus": { "files": books.len(), "bytes": total },
        "machine_limit": {
            "write_3_copies_fsync_MBps": round(write_limit),
            "write_3_copies_fsync_s": round(write.as_secs_f64()),
            "read_sha256_MBps": round(read_limit),
            "read_sha256_s": round(read.as_secs_f64()),
            "note": "MBps = corpus bytes (10^6) per second; the write limit writes each byte 3 times",
        },
        "runs": runs,
        "big_file_processes": big,
        "aims": { "upload_ratio": 0.5, "download_ratio": 0.7, "big_file_peak_rss_MiB": 150 },
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
