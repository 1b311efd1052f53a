//! Replication between controllers, on loopback, with production gossip settings
//! (`GOSSIP_INTERVAL` 1 s, `GOSSIP_FANOUT` 3, `ANTI_ENTROPY_INTERVAL` 30 s):
//!
//! (a) convergence time of one write across 5 controllers (eager push), p50/p99;
//! (b) after a partition with 10,000 divergent records (5,000 per side), the time
//!     until every controller's state digest is equal, and the bytes sent between
//!     controllers relative to the divergent records' encoded size — for 2
//!     controllers split 1|1 and for 5 split 2|3;
//! (c) the bytes of one idle anti-entropy exchange with 100,000 records in sync.
//!
//! Metadata writes go through the same store path as an upload's commit
//! (`Store::write` + push), without chunk traffic. Prints one JSON document.
//!
//! `cargo bench -p redcloud-tests --bench replication`
//! Env: `BENCH_SAMPLES` (default 200) for (a), `BENCH_IDLE_RECORDS` (default 100000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redcloud_common::FileId;
use redcloud_controller::node::Node;
use redcloud_controller::records::{Body, FileBody, Record, Table};
use redcloud_controller::replication::encode;
use redcloud_controller::replication::engine::Write;
use redcloud_tests::{ClusterSpec, TestCluster};
use serde_json::json;

fn production(_: usize, cfg: &mut redcloud_controller::Config) {
    cfg.gossip_interval = Duration::from_secs(1);
    cfg.gossip_fanout = 3;
    cfg.anti_entropy_interval = Duration::from_secs(30);
    cfg.discovery_interval = Duration::from_secs(10);
}

fn spec(n: usize) -> ClusterSpec {
    ClusterSpec {
        controllers: n,
        chunkservers: 0,
        tweak: Some(production),
        ..Default::default()
    }
}

fn file_write(i: usize) -> Write {
    let name = format!("book-{i:06}.txt");
    Write {
        key: FileId::generate().to_string(),
        body: Body::File(FileBody {
            owner: "anonymous".into(),
            sha256: redcloud_common::ChunkId::of(name.as_bytes()).to_hex(),
            name,
            size: 500_000 + i as u64,
            chunk_size: 1 << 20,
            chunk_count: 1,
            public: false,
            created_at_ms: redcloud_common::now_ms(),
        }),
        deleted: false,
    }
}

/// Writes `n` file records on `node` in transactions of 500, pushing each batch.
async fn write_many(node: &Arc<Node>, n: usize, offset: usize) -> Vec<Record> {
    let mut all = Vec::new();
    for start in (0..n).step_by(500) {
        let writes: Vec<Write> = (start..(start + 500).min(n))
            .map(|i| file_write(offset + i))
            .collect();
        let recs = node.db.call(move |s| s.write(writes)).await.expect("write");
        node.publish(recs.clone(), None);
        all.extend(recs);
    }
    all
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn peer_bytes(cluster: &TestCluster) -> u64 {
    cluster
        .controllers
        .iter()
        .map(|c| {
            let n = c.controller();
            n.net.bytes_sent.get() + n.net.bytes_received.get()
        })
        .sum()
}

async fn has(node: &Arc<Node>, key: &str) -> bool {
    let key = key.to_string();
    node.db
        .call(move |s| {
            Ok(
                redcloud_controller::meta::rows::load_version(s.conn(), Table::Files, &key)?
                    .is_some(),
            )
        })
        .await
        .unwrap_or(false)
}

async fn convergence_of_one_write(samples: usize) -> serde_json::Value {
    let cluster = TestCluster::with(spec(5)).await;
    let all: Vec<usize> = (0..5).collect();
    cluster.wait_converged(&all, Duration::from_secs(60)).await;
    let nodes: Vec<Arc<Node>> = cluster
        .controllers
        .iter()
        .map(|c| c.controller().clone())
        .collect();
    let mut times = Vec::new();
    for k in 0..samples {
        let writer = &nodes[k % 5];
        let t = Instant::now();
        let recs = write_many(writer, 1, k).await;
        let key = recs[0].key.clone();
        let others: Vec<&Arc<Node>> = nodes.iter().filter(|n| n.id != writer.id).collect();
        let mut pending = others.clone();
        let deadline = t + Duration::from_secs(60);
        let mut poll = tokio::time::interval(Duration::from_micros(500));
        while !pending.is_empty() && Instant::now() < deadline {
            poll.tick().await;
            let mut still = Vec::new();
            for n in pending {
                if !has(n, &key).await {
                    still.push(n);
                }
            }
            pending = still;
        }
        assert!(
            pending.is_empty(),
            "a write did not reach every controller within 60 s"
        );
        times.push(ms(t.elapsed()));
    }
    times.sort_by(|a, b| a.total_cmp(b));
    json!({
        "controllers": 5,
        "samples": samples,
        "p50_ms": percentile(&times, 0.5),
        "p99_ms": percentile(&times, 0.99),
        "max_ms": times.last().copied().unwrap_or(0.0),
        "aim_p99_ms": 50,
    })
}

async fn partition_heal(n: usize, side_a: &[usize], per_side: usize) -> serde_json::Value {
    let cluster = TestCluster::with(spec(n)).await;
    let all: Vec<usize> = (0..n).collect();
    let side_b: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !side_a.contains(i))
        .collect();
    cluster.wait_converged(&all, Duration::from_secs(60)).await;
    cluster.partition(side_a, &side_b);
    let a = cluster.controllers[side_a[0]].controller().clone();
    let b = cluster.controllers[side_b[0]].controller().clone();
    let recs_a = write_many(&a, per_side, 0).await;
    let recs_b = write_many(&b, per_side, per_side).await;
    cluster
        .wait_converged(side_a, Duration::from_secs(120))
        .await;
    cluster
        .wait_converged(&side_b, Duration::from_secs(120))
        .await;
    let divergent_bytes: usize = recs_a.iter().chain(&recs_b).map(|r| encode(r).len()).sum();
    // Every controller must receive the records of the other side at least once.
    let size_a: usize = recs_a.iter().map(|r| encode(r).len()).sum();
    let size_b: usize = recs_b.iter().map(|r| encode(r).len()).sum();
    let minimum = side_a.len() * size_b + side_b.len() * size_a;

    let before = peer_bytes(&cluster);
    let t = Instant::now();
    cluster.heal();
    cluster.wait_converged(&all, Duration::from_secs(120)).await;
    let took = t.elapsed();
    // Let in-flight messages land before reading the counters.
    let settle = Instant::now();
    let mut last = peer_bytes(&cluster);
    let mut poll = tokio::time::interval(Duration::from_millis(300));
    poll.tick().await;
    while settle.elapsed() < Duration::from_secs(3) {
        poll.tick().await;
        let now = peer_bytes(&cluster);
        if now == last {
            break;
        }
        last = now;
    }
    let sent = last - before;
    json!({
        "controllers": n,
        "split": format!("{}|{}", side_a.len(), side_b.len()),
        "divergent_records": 2 * per_side,
        "divergent_bytes": divergent_bytes,
        "converge_ms": ms(took),
        "bytes_between_controllers": sent,
        "bytes_ratio": ((sent as f64 / divergent_bytes as f64) * 1000.0).round() / 1000.0,
        "minimum_deliveries_bytes": minimum,
        "bytes_ratio_to_minimum": ((sent as f64 / minimum as f64) * 1000.0).round() / 1000.0,
        "aim_converge_ms": 2000,
        "aim_bytes_ratio": 2.0,
    })
}

async fn idle_round(records: usize) -> serde_json::Value {
    let cluster = TestCluster::with(spec(2)).await;
    let a = cluster.controllers[0].controller().clone();
    let t = Instant::now();
    write_many(&a, records, 0).await;
    let written = t.elapsed();
    cluster
        .wait_converged(&[0, 1], Duration::from_secs(300))
        .await;
    let replicated = t.elapsed();
    let b_http = cluster.controllers[1].http_addr.to_string();
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let before = a.net.bytes_sent.get() + a.net.bytes_received.get();
        let stats = redcloud_controller::replication::anti_entropy::exchange(&a.replica, &b_http)
            .await
            .expect("exchange");
        assert_eq!(
            (stats.sent, stats.received),
            (0, 0),
            "an idle round moves no record"
        );
        rounds.push(a.net.bytes_sent.get() + a.net.bytes_received.get() - before);
    }
    rounds.sort();
    json!({
        "records": records,
        "write_s": (written.as_secs_f64() * 1000.0).round() / 1000.0,
        "write_and_replicate_s": (replicated.as_secs_f64() * 1000.0).round() / 1000.0,
        "idle_round_body_bytes": rounds[rounds.len() / 2],
        "note": "HTTP bodies of the summary and its answer; HTTP/1.1 headers add about 120 bytes per message",
        "aim_bytes": 1024,
    })
}

fn main() {
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let idle: usize = std::env::var("BENCH_IDLE_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let a = rt.block_on(convergence_of_one_write(samples));
    let b2 = rt.block_on(partition_heal(2, &[0], 5_000));
    let b5 = rt.block_on(partition_heal(5, &[0, 1], 5_000));
    let c = rt.block_on(idle_round(idle));
    let out = json!({
        "benchmark": "replication",
        "settings": { "gossip_interval_ms": 1000, "gossip_fanout": 3, "anti_entropy_interval_ms": 30000 },
        "a_convergence_one_write": a,
        "b_partition_heal": [b2, b5],
        "c_idle_anti_entropy": c,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
