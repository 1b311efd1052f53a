//! Replication between controllers, on loopback, with production gossip settings
//! (`GOSSIP_INTERVAL` 1 s, `GOSSIP_FANOUT` 3, `ANTI_ENTROPY_INTERVAL` 30 s):
//!
//! (a) convergence time of one write across 5 controllers (eager push), p50/p99;
//! (b) after a partition with 10,000 divergent records (5,000 per side), the time
//!     until every controller's state digest is equal, and the bytes sent between
//!     controllers relative to the divergent records' encoded size — for 2
//!     controllers split 1|1 and for 5 split 2|3;
//! (c) the bytes of one idle anti-entropy exchange with 100,000 records in sync;
//! (d) `catch_up_100k`: 2 controllers hold 100,000 file versions (a `files` and a
//!     `chunks` record each, 500 versions = 1,000 records per transaction); a new,
//!     empty third controller joins (production settings too). The time until its
//!     state digest equals the others' (from the moment it is started), the bytes
//!     all controllers sent and received meanwhile, and their ratio to the state
//!     it had to receive (the encoded size of every record of a full delta);
//! (e) `controller_rss_100k`: a real `redcloud-controller` process (release build,
//!     its own data directory, `127.0.0.1:0` ports) joins that cluster, catches up
//!     the same state, then answers a few client calls; its peak RSS (`VmHWM`) and
//!     RSS (`VmRSS`) from `/proc/<pid>/status`. Aim: peak RSS under 200 MB.
//!
//! Metadata writes go through the same store path as an upload's commit
//! (`Store::write` + push), without chunk traffic. Prints one JSON document.
//!
//! `cargo bench -p redcloud-tests --bench replication`
//! Env: `BENCH_SAMPLES` (default 200) for (a), `BENCH_IDLE_RECORDS` (default 100000),
//! `BENCH_CATCHUP_FILES` (default 100000; 0 skips (d) and (e)) for (d) and (e).
//! For (e) the bench runs `cargo build --release -p redcloud-controller` first (a
//! no-op when it is up to date), or uses the binary `BENCH_CONTROLLER_BIN` names.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redcloud_common::FileId;
use redcloud_common::replication::VersionVector;
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

/// The records of file version `i`, as an upload's commit writes them (less the
/// chunk locations): its `files` record and, `with_chunks`, its `chunks` record (one
/// chunk of the file's size).
fn file_version(i: usize, with_chunks: bool) -> Vec<Write> {
    let name = format!("book-{i:06}.txt");
    let key = FileId::generate().to_string();
    let size = 500_000 + i as u64;
    let mut writes = vec![Write {
        key: key.clone(),
        body: Body::File(FileBody {
            owner: "anonymous".into(),
            sha256: redcloud_common::ChunkId::of(name.as_bytes()).to_hex(),
            name,
            size,
            chunk_size: 1 << 20,
            chunk_count: 1,
            public: false,
            created_at_ms: redcloud_common::now_ms(),
        }),
        deleted: false,
    }];
    if with_chunks {
        let chunk = redcloud_common::ChunkId::of(format!("chunk-{i}").as_bytes());
        writes.push(Write {
            key,
            body: Body::Chunks(vec![(chunk, size)]),
            deleted: false,
        });
    }
    writes
}

/// Writes file versions `offset..offset + n` on `node`, `per_tx` versions per
/// transaction, publishing each transaction (push gossip) as an upload's commit
/// does. Returns the records written.
async fn write_files(
    node: &Arc<Node>,
    offset: usize,
    n: usize,
    per_tx: usize,
    with_chunks: bool,
) -> Vec<Record> {
    let mut all = Vec::new();
    for start in (0..n).step_by(per_tx) {
        let writes: Vec<Write> = (start..(start + per_tx).min(n))
            .flat_map(|i| file_version(offset + i, with_chunks))
            .collect();
        let recs = node.db.call(move |s| s.write(writes)).await.expect("write");
        node.publish(recs.clone(), None);
        all.extend(recs);
    }
    all
}

/// Writes `n` file records (no chunk lists) on `node` in transactions of 500.
async fn write_many(node: &Arc<Node>, n: usize, offset: usize) -> Vec<Record> {
    write_files(node, offset, n, 500, false).await
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

/// [`peer_bytes`] once in-flight messages have landed: when two readings 300 ms
/// apart agree (at most 3 s).
async fn settled_peer_bytes(cluster: &TestCluster) -> u64 {
    let settle = Instant::now();
    let mut last = peer_bytes(cluster);
    let mut poll = tokio::time::interval(Duration::from_millis(300));
    poll.tick().await;
    while settle.elapsed() < Duration::from_secs(3) {
        poll.tick().await;
        let now = peer_bytes(cluster);
        if now == last {
            break;
        }
        last = now;
    }
    last
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
    let sent = settled_peer_bytes(&cluster).await - before;
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

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// p50 and max of `v` (milliseconds).
fn spread(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    json!({ "p50": percentile(&v, 0.5), "max": v.last().copied().unwrap_or(0.0) })
}

fn ratio(a: f64, b: f64) -> f64 {
    ((a / b) * 1000.0).round() / 1000.0
}

fn all_equal<T: PartialEq>(v: &[T]) -> bool {
    v.windows(2).all(|w| w[0] == w[1])
}

/// Per controller: (bytes sent, bytes received) to and from other controllers.
fn peer_counters(cluster: &TestCluster) -> Vec<(u64, u64)> {
    cluster
        .controllers
        .iter()
        .map(|c| {
            let n = c.controller();
            (n.net.bytes_sent.get(), n.net.bytes_received.get())
        })
        .collect()
}

/// Per controller, what it sent and received between two [`peer_counters`]
/// readings (a controller started in between counts from zero).
fn counters_since(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<serde_json::Value> {
    after
        .iter()
        .enumerate()
        .map(|(i, &(s, r))| {
            let (s0, r0) = before.get(i).copied().unwrap_or((0, 0));
            json!({ "sent": s - s0, "received": r - r0 })
        })
        .collect()
}

/// The version vectors of the controllers in `which` (kept in memory: cheap).
async fn vectors(cluster: &TestCluster, which: &[usize]) -> Vec<VersionVector> {
    let mut out = Vec::new();
    for &i in which {
        let node = cluster.controllers[i].controller().clone();
        out.push(node.db.call(|s| Ok(s.vector())).await.expect("vector"));
    }
    out
}

/// Waits until the controllers in `which` report the same state digest. A digest
/// scans every row, and polling it would slow the controllers being measured: every
/// 50 ms this compares their version vectors, and the digests once those agree (and
/// every 10 s regardless).
async fn wait_same_state(cluster: &TestCluster, which: &[usize], deadline: Duration) {
    let end = Instant::now() + deadline;
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut digested = Instant::now();
    loop {
        poll.tick().await;
        if all_equal(&vectors(cluster, which).await)
            || digested.elapsed() >= Duration::from_secs(10)
        {
            digested = Instant::now();
            if all_equal(&cluster.digests(which).await) {
                return;
            }
        }
        assert!(
            Instant::now() < end,
            "controllers {which:?} did not reach the same state within {deadline:?}"
        );
    }
}

/// What an empty controller must receive from `node`: the records of a full delta
/// (against an empty vector) and the sum of their encoded sizes.
async fn full_state(node: &Arc<Node>) -> (usize, usize) {
    let (records, bytes, complete) = node
        .db
        .call(|s| {
            let d = s.delta(&VersionVector::default(), 1 << 40)?;
            let bytes = d.batch.records.iter().map(|r| encode(r).len()).sum();
            Ok((d.batch.records.len(), bytes, d.complete))
        })
        .await
        .expect("full delta");
    assert!(complete, "a full delta without a budget was cut");
    (records, bytes)
}

/// (d) and (e) on one cluster: 2 controllers holding `files` file versions.
async fn hundred_k(files: usize, controller_bin: &Path) -> (serde_json::Value, serde_json::Value) {
    let mut cluster = TestCluster::with(spec(2)).await;
    let a = cluster.controllers[0].controller().clone();
    let t = Instant::now();
    let written = write_files(&a, 0, files, 500, true).await.len();
    let write = t.elapsed();
    wait_same_state(&cluster, &[0, 1], Duration::from_secs(600)).await;
    let replicate = t.elapsed();
    let setup = json!({
        "records_written": written,
        "write_s": secs(write),
        "write_and_replicate_s": secs(replicate),
    });
    let d = catch_up(&mut cluster, files, setup).await;
    let e = controller_rss(&cluster, files, controller_bin).await;
    (d, e)
}

/// (d): a new, empty controller joins the 2 controllers holding `files` versions.
async fn catch_up(
    cluster: &mut TestCluster,
    files: usize,
    setup: serde_json::Value,
) -> serde_json::Value {
    let a = cluster.controllers[0].controller().clone();
    let (state_records, state_bytes) = full_state(&a).await;
    let d = Instant::now();
    cluster.digests(&[0]).await;
    let digest_ms = ms(d.elapsed());
    settled_peer_bytes(cluster).await;
    let before = peer_counters(cluster);
    let t = Instant::now();
    // Same production settings as the others; it knows them as seeds.
    let new = cluster.add_controller_with(|_| {});
    let started = t.elapsed();
    let all: Vec<usize> = (0..=new).collect();
    wait_same_state(cluster, &all, Duration::from_secs(600)).await;
    let took = t.elapsed();
    settled_peer_bytes(cluster).await;
    let after = peer_counters(cluster);
    let by_controller = counters_since(&before, &after);
    let bytes: u64 = after.iter().map(|(s, r)| s + r).sum::<u64>()
        - before.iter().map(|(s, r)| s + r).sum::<u64>();
    json!({
        "controllers": "2 + 1 new",
        "files": files,
        "setup": setup,
        "state_records": state_records,
        "state_bytes": state_bytes,
        "start_s": secs(started),
        "time_s": secs(took),
        "records_per_s": (state_records as f64 / took.as_secs_f64()).round(),
        "bytes": bytes,
        "bytes_over_state": ratio(bytes as f64, state_bytes as f64),
        "bytes_by_controller": by_controller,
        "digest_ms": digest_ms,
        "note": "time_s: from starting the new controller (start_s: until it had opened its database and settled its clock) until its digest equals the others'; bytes: HTTP bodies between all controllers (each counted once, by its sender's client), headers not counted; state_bytes: the encoded records of a full delta",
    })
}

/// (e): a real controller process joins the cluster, catches up, answers a few calls.
async fn controller_rss(cluster: &TestCluster, files: usize, bin: &Path) -> serde_json::Value {
    let a = cluster.controllers[0].controller().clone();
    let (state_records, state_bytes) = full_state(&a).await;
    let peers: Vec<String> = cluster
        .controllers
        .iter()
        .map(|c| c.http_addr.to_string())
        .collect();
    settled_peer_bytes(cluster).await;
    let before = peer_counters(cluster);
    let t = Instant::now();
    let mut child = ChildController::spawn(bin, &peers.join(","));
    let (grpc, http) = child.wait_started(Duration::from_secs(120)).await;
    let started = t.elapsed();
    let http_client = redcloud_common::http::HttpClient::new(Duration::from_secs(30), None);

    // Its /internal/state computes a digest (a full scan, holding its store): polls
    // are spaced by at least 4 times the last one's duration, so they take at most
    // about a fifth of its time.
    let deadline = Duration::from_secs(600);
    let mut wait = Duration::from_millis(500);
    let (mut polls, mut polling) = (0u32, Duration::ZERO);
    let mut rss_timeline: Vec<serde_json::Value> = Vec::new();
    loop {
        // The pause between polls of a condition (the deadline is asserted below).
        tokio::time::sleep(wait).await;
        child.check_alive();
        let (_, rss) = rss_kb(child.pid());
        if rss_timeline
            .last()
            .is_none_or(|l| t.elapsed().as_secs_f64() - l[0].as_f64().unwrap_or(0.0) >= 2.0)
        {
            rss_timeline.push(json!([secs(t.elapsed()), mb(rss)]));
        }
        let asked = Instant::now();
        let state = child_state(&http_client, &http).await;
        let took = asked.elapsed();
        polls += 1;
        polling += took;
        wait = (took * 4).max(Duration::from_millis(500));
        if let Some(state) = state {
            let ours = a.db.call(|s| Ok(s.vector())).await.expect("vector");
            let ours: serde_json::Map<String, serde_json::Value> = ours
                .0
                .iter()
                .map(|(o, n)| (o.to_string(), json!(n)))
                .collect();
            if state["vector"] == serde_json::Value::Object(ours) {
                let digest = cluster.digests(&[0]).await;
                if state["digest"].as_str() == digest.first().map(String::as_str) {
                    break;
                }
            }
        }
        assert!(
            t.elapsed() < deadline,
            "the controller process did not catch up within {deadline:?}; its last log lines:\n{}",
            child.tail()
        );
    }
    let took = t.elapsed();
    let (peak_caught_up, rss_caught_up) = rss_kb(child.pid());

    // A few client calls on its gRPC port (not List: 100,000 files exceed its
    // message limit).
    let mut client = cluster
        .connect(std::slice::from_ref(&grpc))
        .await
        .unwrap_or_else(|e| panic!("connect to the controller process at {grpc}: {e}"));
    let ops = Instant::now();
    let status = client.cluster_status().await.unwrap_or_else(|e| {
        panic!(
            "cluster status from the controller process: {e}; its last log lines:\n{}",
            child.tail()
        )
    });
    let status_took = ops.elapsed();
    let (mut versions_ms, mut stat_ms) = (Vec::new(), Vec::new());
    let (mut calls, mut failed, mut found) = (1, 0, 0);
    let mut first_error: Option<String> = None;
    let names = 100;
    for k in 0..names {
        let name = format!("book-{:06}.txt", k * files / names);
        calls += 2;
        let call = Instant::now();
        let versions = client.versions(&name).await;
        versions_ms.push(ms(call.elapsed()));
        match versions {
            Ok(v) => found += usize::from(!v.is_empty()),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("versions {name}: {e}"));
            }
        }
        let call = Instant::now();
        let stat = client.stat(&name, None).await;
        stat_ms.push(ms(call.elapsed()));
        if let Err(e) = stat {
            failed += 1;
            first_error.get_or_insert_with(|| format!("stat {name}: {e}"));
        }
    }
    let ops_took = ops.elapsed();
    child.check_alive();
    let (peak, rss) = rss_kb(child.pid());
    let child_bytes = child_peer_bytes(&http_client, &http).await;
    settled_peer_bytes(cluster).await;
    let mut by_controller = counters_since(&before, &peer_counters(cluster));
    if let Some((sent, received)) = child_bytes {
        by_controller.push(json!({ "sent": sent, "received": received, "process": true }));
    }
    let bytes: u64 = by_controller
        .iter()
        .map(|c| c["sent"].as_u64().unwrap_or(0) + c["received"].as_u64().unwrap_or(0))
        .sum();
    let data_dir_bytes = dir_bytes(child.data_dir());
    drop(child);
    json!({
        "binary": bin.display().to_string(),
        "files": files,
        "state_records": state_records,
        "state_bytes": state_bytes,
        "peers": peers.len(),
        "start_s": secs(started),
        "catch_up_s": secs(took),
        "records_per_s": (state_records as f64 / took.as_secs_f64()).round(),
        "bytes": bytes,
        "bytes_over_state": ratio(bytes as f64, state_bytes as f64),
        "bytes_by_controller": by_controller,
        "peak_rss_mb_after_catch_up": mb(peak_caught_up),
        "rss_mb_after_catch_up": mb(rss_caught_up),
        "rss_mb_timeline": rss_timeline,
        "state_polls": polls,
        "state_polls_s": secs(polling),
        "client_calls": {
            "calls": calls,
            "failed": failed,
            "first_error": first_error,
            "names_with_versions": found,
            "names_asked": names,
            "file_count": status.file_count,
            "chunk_count": status.chunk_count,
            "controllers": status.controllers.len(),
            "took_ms": ms(ops_took),
            "cluster_status_ms": ms(status_took),
            "versions_ms": spread(versions_ms),
            "stat_ms": spread(stat_ms),
        },
        "peak_rss_mb": mb(peak),
        "rss_mb_after_calls": mb(rss),
        "data_dir_bytes": data_dir_bytes,
        "aim_peak_rss_mb": 200,
        "peak_rss_under_aim": mb(peak) < 200.0,
        "note": "one redcloud-controller process (release build), peers: the in-process controllers; VmHWM/VmRSS from /proc/<pid>/status; start_s: until it logged `controller started`; catch_up_s: until its /internal/state digest equals controller 0's (state_polls_s: time its answers took, digests included); rss_mb_timeline: [s since start, VmRSS MB]; bytes: HTTP bodies between all controllers (each counted once, by its sender's client), the process's own from its /metrics (last in bytes_by_controller)",
    })
}

/// `VmHWM` (peak RSS) and `VmRSS` of process `pid`, in KiB.
fn rss_kb(pid: u32) -> (u64, u64) {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path} (the RSS measurement needs Linux): {e}"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} line in {path}"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn mb(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// The total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// The process's `GET /internal/state` answer (`digest`, `vector`), if it answered.
async fn child_state(
    client: &redcloud_common::http::HttpClient,
    http: &str,
) -> Option<serde_json::Value> {
    let body = client.get(http, "/internal/state").await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// The bytes the process sent to and received from other controllers, from its
/// `/metrics` (`peer_bytes_sent_total`, `peer_bytes_received_total`).
async fn child_peer_bytes(
    client: &redcloud_common::http::HttpClient,
    http: &str,
) -> Option<(u64, u64)> {
    let body = client.get(http, "/metrics").await.ok()?;
    let text = String::from_utf8_lossy(&body);
    let (mut sent, mut received) = (None, None);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let name = name.split('{').next().unwrap_or(name);
        let value = || value.parse::<f64>().ok().map(|v| v as u64);
        if name.ends_with("peer_bytes_sent_total") {
            sent = value();
        } else if name.ends_with("peer_bytes_received_total") {
            received = value();
        }
    }
    Some((sent?, received?))
}

/// The release `redcloud-controller` binary: the one `BENCH_CONTROLLER_BIN` names,
/// or the one `cargo build --release -p redcloud-controller` (run now, a no-op when
/// it is up to date, so the binary matches the sources the bench was built from)
/// reports.
fn controller_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BENCH_CONTROLLER_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BENCH_CONTROLLER_BIN={} is not a file",
            p.display()
        );
        return p;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let hint = "build it with `cargo build --release -p redcloud-controller` and set \
                BENCH_CONTROLLER_BIN=target/release/redcloud-controller";
    eprintln!("replication bench: cargo build --release -p redcloud-controller");
    let out = std::process::Command::new(&cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "redcloud-controller",
            "--bin",
            "redcloud-controller",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}; {hint}", Path::new(&cargo).display()));
    assert!(
        out.status.success(),
        "`cargo build --release -p redcloud-controller` failed ({}); fix the build, or {hint}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "redcloud-controller"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no redcloud-controller executable; {hint}"))
}

/// A `redcloud-controller` child process with its own data directory, on
/// `127.0.0.1:0` ports. Dropping it kills the process (also when the bench fails
/// midway), then removes the directory.
struct ChildController {
    child: std::process::Child,
    /// Its last log lines (stderr), for failure messages.
    log: Arc<Mutex<std::collections::VecDeque<String>>>,
    /// Its (gRPC, HTTP) addresses, from its `controller started` log line.
    started: Option<tokio::sync::oneshot::Receiver<(String, String)>>,
    dir: tempfile::TempDir,
}

impl ChildController {
    fn spawn(bin: &Path, peers: &str) -> ChildController {
        let dir = tempfile::Builder::new()
            .prefix("redcloud-bench-controller-")
            .tempdir()
            .expect("tempdir");
        let mut child = std::process::Command::new(bin)
            .env("CONTROLLER_DATA_DIR", dir.path())
            .env("CONTROLLER_GRPC_LISTEN", "127.0.0.1:0")
            .env("CONTROLLER_HTTP_LISTEN", "127.0.0.1:0")
            .env("CONTROLLER_PEERS", peers)
            // The production settings the in-process controllers run with.
            .env("GOSSIP_INTERVAL", "1s")
            .env("GOSSIP_FANOUT", "3")
            .env("ANTI_ENTROPY_INTERVAL", "30s")
            .env("DISCOVERY_INTERVAL", "10s")
            // `controller started` (with its addresses) is an info line.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("CONTROLLER_NODE_ID")
            .env_remove("CONTROLLER_ADVERTISE_ADDR")
            .env_remove("CONTROLLER_CLOCK_OFFSET_MS")
            .env_remove("REDCLOUD_CLUSTER_SECRET")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lines = log.clone();
        std::thread::Builder::new()
            .name("controller-log".into())
            .spawn(move || {
                let mut tx = Some(tx);
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let line = strip_ansi(&line);
                    if line.contains("controller started")
                        && let Some(addrs) = started_addrs(&line)
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(addrs);
                    }
                    let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() == 40 {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            })
            .expect("spawn the log reader");
        ChildController {
            child,
            log,
            started: Some(rx),
            dir,
        }
    }

    /// Waits for its `controller started` line; returns its (gRPC, HTTP) addresses.
    async fn wait_started(&mut self, deadline: Duration) -> (String, String) {
        let rx = self.started.take().expect("wait_started once");
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(_)) => {
                // The log ended: the process exited.
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                panic!(
                    "the controller process exited ({status}) before it started; its last log lines:\n{}",
                    self.tail()
                )
            }
            Err(_) => panic!(
                "the controller process did not log `controller started` within {deadline:?}; its last log lines:\n{}",
                self.tail()
            ),
        }
    }

    /// Panics (with its last log lines) if the process has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the controller process exited ({status}); its last log lines:\n{}",
                self.tail()
            );
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ChildController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `line` without ANSI escape sequences (colours).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
        } else if chars.next() == Some('[') {
            // A CSI sequence ends with a byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The `grpc=` and `http=` fields of a `controller started` log line.
fn started_addrs(line: &str) -> Option<(String, String)> {
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    Some((field("grpc=")?, field("http=")?))
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
    let catch_up_files: usize = std::env::var("BENCH_CATCHUP_FILES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    // Built (or found) first: a build failure shows before the long measurements.
    let controller_bin = (catch_up_files > 0).then(controller_binary);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // `BENCH_ONLY=100k` runs only (d) and (e).
    let only_100k = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "100k");
    let (a, b2, b5, c) = if only_100k {
        Default::default()
    } else {
        (
            rt.block_on(convergence_of_one_write(samples)),
            rt.block_on(partition_heal(2, &[0], 5_000)),
            rt.block_on(partition_heal(5, &[0, 1], 5_000)),
            rt.block_on(idle_round(idle)),
        )
    };
    let (d, e) = match &controller_bin {
        Some(bin) => rt.block_on(hundred_k(catch_up_files, bin)),
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    let out = json!({
        "benchmark": "replication",
        "settings": { "gossip_interval_ms": 1000, "gossip_fanout": 3, "anti_entropy_interval_ms": 30000 },
        "a_convergence_one_write": a,
        "b_partition_heal": [b2, b5],
        "c_idle_anti_entropy": c,
        "catch_up_100k": d,
        "controller_rss_100k": e,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
