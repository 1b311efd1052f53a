//! Search: index build throughput over the corpus, query latency (p50/p99) over a
//! fixed set of 1-3 word queries, and the same queries answered by `grep -ril` over
//! the same files in the same run (the ratio is grep's time over ours).
//!
//! Latency is measured twice: in process (`Index::search`, ranking and snippets) and
//! end to end through a controller (gRPC on loopback, `redcloud_cli::Client::search`)
//! of a 1 controller + 1 chunkserver cluster that stored and indexed the corpus.
//! Prints one JSON document.
//!
//! `cargo bench -p redcloud-tests --bench search`

use std::time::{Duration, Instant};

use redcloud_search::index::{Index, Query};
use redcloud_tests::corpus;
use redcloud_tests::{ClusterSpec, TestCluster, wait_until};
use serde_json::json;

/// 1-3 word queries: rare and common words, phrases, other languages, Chinese.
const QUERIES: &[&str] = &[
    "whale",
    "ishmael",
    "call me ishmael",
    "sherlock holmes",
    "elizabeth bennet",
    "rabbit hole",
    "the",
    "and the",
    "truth universally acknowledged",
    "liberté",
    "gregor samsa",
    "don quijote",
    "mancha",
    "väinämöinen",
    "zarathustra",
    "madame bovary",
    "candide",
    "孫悟空",
    "weiße",
    "capitaine nemo",
    "love",
    "dark night",
    "king",
    "murder",
    "ocean waves",
    "faust",
    "gallia",
    "dante beatrice",
    "heart of darkness",
    "moby",
];
const ROUNDS: usize = 20;

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn grep_ms(dir: &std::path::Path, q: &str) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = std::process::Command::new("grep")
            .args(["-ril", "--", q])
            .arg(dir)
            .output()
            .expect("run grep");
        assert!(out.status.code().is_some_and(|c| c <= 1), "grep failed");
        runs.push(t.elapsed());
    }
    runs.sort();
    runs[1].as_secs_f64() * 1000.0
}

fn main() {
    let books = corpus::catalog();
    let data: Vec<Vec<u8>> = books
        .iter()
        .map(|b| std::fs::read(b.path()).expect("read book"))
        .collect();
    let total: u64 = data.iter().map(|d| d.len() as u64).sum();

    // Index build, on disk as a controller keeps it (median of 3).
    let mut builds = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ix = None;
    for run in 0..3 {
        let path = dir.path().join(format!("search-{run}.sqlite"));
        let t = Instant::now();
        let mut index = Index::open(&path).expect("open index");
        for (b, d) in books.iter().zip(&data) {
            index.add(&b.file, &b.sha256, d).expect("index");
        }
        builds.push(t.elapsed());
        ix = Some(index);
    }
    builds.sort();
    let build = builds[1];
    let ix = ix.expect("index");
    let on_disk: u64 = std::fs::metadata(dir.path().join("search-2.sqlite"))
        .map(|m| m.len())
        .unwrap_or(0);

    // In-process query latency.
    let mut lat = Vec::new();
    let mut by_query: Vec<Vec<Duration>> = vec![Vec::new(); QUERIES.len()];
    for _ in 0..ROUNDS {
        for (qi, q) in QUERIES.iter().enumerate() {
            let t = Instant::now();
            let hits = ix
                .search(&Query {
                    text: q.to_string(),
                    limit: 10,
                    ..Default::default()
                })
                .expect("search");
            lat.push(t.elapsed());
            by_query[qi].push(t.elapsed());
            std::hint::black_box(hits);
        }
    }
    lat.sort();
    let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));

    // grep -ril over the same files, same queries.
    let books_dir = corpus::dir().join("books");
    let greps: Vec<f64> = QUERIES.iter().map(|q| grep_ms(&books_dir, q)).collect();
    let mut greps_sorted = greps.clone();
    greps_sorted.sort_by(f64::total_cmp);
    let grep_p50 = greps_sorted[greps_sorted.len() / 2];

    // End to end through a controller.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (e2e_p50, e2e_p99) = rt.block_on(async {
        let c = TestCluster::with(ClusterSpec {
            controllers: 1,
            chunkservers: 1,
            min_chunk_replicas: 1,
            ..Default::default()
        })
        .await;
        let mut client = c.client().await;
        for b in &books {
            client
                .upload_file(&b.path(), &b.file, false, |_| {})
                .await
                .expect("upload");
        }
        let n = books.len() as u64;
        let cref = &c;
        wait_until(
            "the controller indexed the corpus",
            Duration::from_secs(300),
            || async move {
                cref.client()
                    .await
                    .search(redcloud_cli::pb::SearchRequest {
                        query: "the".into(),
                        ..Default::default()
                    })
                    .await
                    .is_ok_and(|r| r.indexed_books == n && r.pending_books == 0)
            },
        )
        .await;
        let mut lat = Vec::new();
        for _ in 0..ROUNDS {
            for q in QUERIES {
                let t = Instant::now();
                let r = client
                    .search(redcloud_cli::pb::SearchRequest {
                        query: q.to_string(),
                        limit: 10,
                        ..Default::default()
                    })
                    .await
                    .expect("search");
                lat.push(t.elapsed());
                std::hint::black_box(r);
            }
        }
        lat.sort();
        (pct(&lat, 0.5), pct(&lat, 0.99))
    });

    let per_query: Vec<_> = QUERIES
        .iter()
        .zip(&greps)
        .zip(&mut by_query)
        .map(|((q, g), l)| {
            l.sort();
            json!({ "query": q, "grep_ms": round(*g), "in_process_p50_ms": round(pct(l, 0.5)) })
        })
        .collect();
    let out = json!({
        "benchmark": "search",
        "corpus": { "books": books.len(), "bytes": total },
        "index_build": {
            "seconds": round(build.as_secs_f64()),
            "mb_per_s": round(total as f64 / 1e6 / build.as_secs_f64()),
            "index_bytes_on_disk": on_disk,
            "index_to_corpus_ratio": round(on_disk as f64 / total as f64),
        },
        "queries": QUERIES.len(),
        "rounds": ROUNDS,
        "in_process_ms": { "p50": round(p50), "p99": round(p99) },
        "through_controller_ms": { "p50": round(e2e_p50), "p99": round(e2e_p99) },
        "aims_ms": { "p50": 5.0, "p99": 50.0 },
        "grep_ril_ms": { "p50": round(grep_p50), "per_query": per_query },
        "speedup_vs_grep": {
            "in_process_p50": round(grep_p50 / p50),
            "through_controller_p50": round(grep_p50 / e2e_p50),
            "aim": 100.0,
        },
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
}
