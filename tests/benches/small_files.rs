//! Small books on the release binaries as separate processes (1 controller + 3
//! chunkservers, as users run them): how many 4 KiB uploads per second 16
//! concurrent gRPC clients get, every copy durable, beside this machine's
//! small-file write+fsync limit measured in the same run; then how long
//! `redcloud ls` of all of them takes, and each process's peak RSS.
//!
//! `cargo bench -p redcloud-tests --bench small_files` (builds the release binaries first)
//! Env: `BENCH_FILES` (default 2000; 100000 for the listing at scale),
//! `BENCH_CLIENTS` (default 16), `BENCH_SIZE` (bytes per book, default 4096),
//! `BENCH_CHUNKSERVERS` (default 3), `BENCH_CONTROLLERS` (default 1), `TMPDIR` (where the data directories go).
//! Prints one JSON document.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redcloud_tests::procs::ProcCluster;
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Files per second for `files` files of `size` bytes written by `threads`
/// threads, each file written, fsynced, renamed into place and its directory
/// fsynced: what a chunkserver's PutChunk costs the disk at best.
fn fsync_limit(dir: &Path, files: usize, size: usize, threads: usize) -> f64 {
    std::fs::create_dir_all(dir).expect("mkdir");
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let next = next.clone();
            s.spawn(move || {
                let data = vec![b'x'; size];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files {
                        return;
                    }
                    let tmp = dir.join(format!("{i}.tmp"));
                    let mut f = std::fs::File::create(&tmp).expect("create");
                    f.write_all(&data).expect("write");
                    f.sync_all().expect("fsync");
                    std::fs::rename(&tmp, dir.join(format!("{i}"))).expect("rename");
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .expect("dir fsync");
                }
            });
        }
    });
    let rate = files as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);
    rate
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let files = env_usize("BENCH_FILES", 2000);
    let clients = env_usize("BENCH_CLIENTS", 16);
    let size = env_usize("BENCH_SIZE", 4096);
    let chunkservers = env_usize("BENCH_CHUNKSERVERS", 3);
    let controllers = env_usize("BENCH_CONTROLLERS", 1);
    // The probe and the cluster's data directories: TMPDIR (default /tmp).
    let base = std::env::temp_dir();

    let probe = base.join(format!("redcloud-fsync-probe-{}", std::process::id()));
    let limit_one = fsync_limit(&probe, 1000, size, 1);
    let limit_many = fsync_limit(&probe, 2000, size, clients);

    let cluster = ProcCluster::start(controllers, chunkservers, &[]).await;
    let addrs = cluster.all_controllers();
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        // Clients spread over the controllers (each tries the others after its own).
        let mine: Vec<String> = addrs
            .iter()
            .cycle()
            .skip(c)
            .take(addrs.len())
            .cloned()
            .collect();
        let mut client = cluster.client(&mine).await;
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= files {
                    return lat;
                }
                let mut body = format!("book {i}: ").into_bytes();
                body.resize(size, b'a' + (i % 26) as u8);
                let s = Instant::now();
                client
                    .upload_bytes(bytes::Bytes::from(body), &format!("book-{i:06}.txt"), false)
                    .await
                    .unwrap_or_else(|e| panic!("upload {i}: {e}"));
                lat.push(s.elapsed());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    let took = t.elapsed();
    lat.sort();
    let rate = files as f64 / took.as_secs_f64();

    // With several controllers, the first one must have every upload (by gossip)
    // before its listing is timed.
    let first = vec![addrs[0].clone()];
    redcloud_tests::wait_until(
        "the first controller lists every upload",
        Duration::from_secs(300),
        || async {
            let mut c = cluster.client(&first).await;
            c.list("").await.map(|l| l.len() == files).unwrap_or(false)
        },
    )
    .await;
    // The whole listing through the CLI binary, as a user runs it.
    let t = Instant::now();
    let out = cluster.cli(&first, &["ls"]).await;
    let ls = t.elapsed();
    assert!(
        out.status.success(),
        "ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = out.stdout.iter().filter(|b| **b == b'\n').count();
    assert_eq!(lines, files + 1, "ls lists every book (and a header)");

    let rss: serde_json::Map<String, serde_json::Value> = cluster
        .controllers
        .iter()
        .chain(cluster.chunkservers.iter())
        .map(|p| (p.name.clone(), json!(p.peak_rss() / (1 << 20))))
        .collect();
    let doc = json!({
        "bench": "small_files",
        "processes": format!("{controllers} controller(s) + {chunkservers} chunkservers (release binaries)"),
        "files": files,
        "bytes_per_file": size,
        "clients": clients,
        "uploads_per_s": round(rate),
        "latency_ms": { "p50": round(percentile(&lat, 0.5)), "p99": round(percentile(&lat, 0.99)) },
        "limit_files_per_s": {
            "write_fsync_rename_dirsync_1_thread": round(limit_one),
            "write_fsync_rename_dirsync_16_threads": round(limit_many),
        },
        // Each upload is stored on every chunkserver: per upload the disk does
        // `chunkservers` file writes at best.
        "ratio_to_limit_per_copy": round(rate * chunkservers as f64 / limit_many),
        "ls_seconds": round(ls.as_secs_f64()),
        "peak_rss_mib": rss,
    });
    println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
}
