//! The randomized fault run: clients upload and delete without pause while random
//! partitions, kills, restarts and clock offsets hit a real cluster on loopback;
//! then everything is healed and a checker verifies what the clients were told.
//!
//! Seeded: the seed fixes every client's operations (names, contents, which
//! controller is asked) and the fault schedule (kinds, targets, times). What the
//! nodes' own timers do in between is not deterministic, so two runs of one seed
//! inject the same faults into slightly different interleavings.
//!
//! What the checker requires, on every controller, after the last heal:
//! - all controllers reach the same state digest (the time this took is reported);
//! - every acknowledged upload is present and downloads byte-identical (by version
//!   id, so versions that lost last-writer-wins are checked too);
//! - a name whose last operation was an acknowledged delete is absent (deletes
//!   only follow an acknowledged upload of the name, by the one client that owns
//!   it, so no concurrent upload can legitimately bring it back);
//! - every acknowledged upload not followed by a delete downloads byte-identical by
//!   its version id; a name never deleted is listed. (A name uploaded again after
//!   its delete may stay hidden by it: the delete and the upload went through
//!   controllers whose clocks differ, and last-writer-wins orders them by those
//!   clocks; the upload is still retrievable by id.)
//! - an upload or delete that failed or timed out may or may not have happened, but
//!   what is there must be bytes some client sent under that name;
//! - no name appears that no client wrote.
//!
//! Faults: partitions, chunkservers cut off, kills and restarts, restarts with a
//! clock offset, clock steps of an hour and ten years on a running controller (and
//! back), a controller's data directory wiped (restarted with the same id, or with a
//! new id and the old one forgotten with `cluster forget`), brand-new controllers
//! joining, a controller started with a wrong peer list that reaches only the
//! chunkservers, and bursts of thousands of records with 1,000-byte names (catch-ups
//! far larger than any message). Clients also upload names again after deleting
//! them, some with 900-byte names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redcloud_cli::{Client, ClientError};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{ClusterSpec, TestCluster};

/// How a fault run is shaped.
#[derive(Debug, Clone)]
pub struct FaultRunConfig {
    pub seed: u64,
    /// How long clients write while faults are injected.
    pub duration: Duration,
    pub controllers: usize,
    pub chunkservers: usize,
    pub clients: usize,
    /// Restarted controllers get a clock offset in `-max..=max` milliseconds.
    pub max_clock_offset_ms: i64,
    /// How long convergence may take after the last heal before it is an anomaly.
    pub converge_deadline: Duration,
    /// Records one metadata burst writes (files and chunk lists, 1,000-byte names).
    pub bulk_records: usize,
    /// Controllers the schedule may add (brand-new, or with a wrong peer list).
    pub max_added_controllers: usize,
    /// Metadata bursts the schedule may run.
    pub max_bulk_bursts: usize,
}

impl Default for FaultRunConfig {
    fn default() -> Self {
        FaultRunConfig {
            seed: 1,
            duration: Duration::from_secs(20),
            controllers: 3,
            chunkservers: 3,
            clients: 3,
            // Restarted clocks stay within a quarter of the drift bound (5 s) of each
            // other; larger steps are the clock-jump fault.
            max_clock_offset_ms: 1_200,
            converge_deadline: Duration::from_secs(120),
            bulk_records: 12_000,
            max_added_controllers: 2,
            max_bulk_bursts: 2,
        }
    }
}

/// What a fault run did and found (printed as JSON).
#[derive(Debug, Default, Serialize)]
pub struct FaultRunReport {
    pub seed: u64,
    pub duration_s: f64,
    pub controllers: usize,
    pub chunkservers: usize,
    pub clients: usize,
    /// Operations by outcome: upload_acked, upload_failed, delete_acked, ...
    pub operations: BTreeMap<String, u64>,
    pub operations_total: u64,
    /// Why operations failed: the client's error, digits masked, with counts.
    pub failure_reasons: BTreeMap<String, u64>,
    /// Faults injected by kind.
    pub faults: BTreeMap<String, u64>,
    pub faults_total: u64,
    /// The fault schedule, as it happened (milliseconds from the start, event).
    pub fault_log: Vec<(u64, String)>,
    /// From the last heal (every node running, every link restored) to every
    /// controller listing the same files with the same current versions.
    pub files_converged_ms: Option<u64>,
    /// From the last heal to equal state digests: all replicated metadata, including
    /// the chunk locations and chunkserver health that repair writes after the heal.
    pub convergence_ms: Option<u64>,
    pub names_checked: usize,
    pub versions_checked: usize,
    pub downloads_checked: usize,
    pub anomalies: Vec<String>,
}

/// What one client did to one name (every name belongs to one client, so its
/// operations are in order).
#[derive(Debug, Default, Clone)]
struct NameLog {
    /// Uploaded more than once, never deleted.
    versioned: bool,
    /// Acknowledged uploads: (version id, SHA-256, operation number).
    acked: Vec<(String, String, usize)>,
    /// SHA-256 of uploads that failed or timed out (they may have happened).
    attempted: Vec<String>,
    /// Deletes and their operation numbers.
    deletes: Vec<(DeleteState, usize)>,
    /// Operations done on the name so far.
    ops: usize,
    /// The last operation was an upload attempt (acknowledged or not).
    last_was_upload: bool,
}

impl NameLog {
    /// The number of the last delete that may have happened (acknowledged or not).
    fn last_delete(&self) -> Option<usize> {
        self.deletes
            .iter()
            .filter(|(d, _)| *d != DeleteState::None)
            .map(|(_, n)| *n)
            .max()
    }

    /// Acknowledged uploads after the last delete that may have happened.
    fn live_acked(&self) -> impl Iterator<Item = &(String, String, usize)> {
        let after = self.last_delete();
        self.acked
            .iter()
            .filter(move |(_, _, n)| after.is_none_or(|d| *n > d))
    }

    /// The last operation was an acknowledged delete.
    fn deleted(&self) -> bool {
        !self.last_was_upload
            && self
                .deletes
                .last()
                .is_some_and(|(d, n)| *d == DeleteState::Acked && *n + 1 == self.ops)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum DeleteState {
    #[default]
    None,
    Acked,
    Uncertain,
}

const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one fault run and returns its report (anomalies included, never panics on them).
pub async fn run(cfg: FaultRunConfig) -> FaultRunReport {
    let mut master = StdRng::seed_from_u64(cfg.seed);
    let mut cluster = TestCluster::with(ClusterSpec {
        controllers: cfg.controllers,
        chunkservers: cfg.chunkservers,
        min_chunk_replicas: 2,
        chunk_size: 64 * 1024,
        // Garbage collection of chunks and tombstones runs during the faults. The chunk
        // grace must outlast any upload in progress (a chunk written by an upload not
        // yet committed is unreferenced everywhere): 15 s against 10 s per operation.
        tweak: Some(|_, c| {
            c.chunk_gc_grace = Duration::from_secs(15);
            c.tombstone_grace = Duration::from_secs(5);
            c.max_clock_drift = Duration::from_secs(5);
            c.tombstone_gc_interval = Duration::from_secs(2);
        }),
        ..Default::default()
    })
    .await;
    let addrs: Vec<String> = (0..cfg.controllers)
        .map(|i| cluster.controller_addr(i))
        .collect();
    let start = Instant::now();
    let deadline = start + cfg.duration;

    let mut clients = Vec::new();
    for c in 0..cfg.clients {
        let rng = StdRng::seed_from_u64(master.random());
        let addrs = addrs.clone();
        clients.push(tokio::spawn(client_loop(
            c,
            rng,
            addrs,
            cluster.token.clone(),
            deadline,
        )));
    }

    let mut report = FaultRunReport {
        seed: cfg.seed,
        controllers: cfg.controllers,
        chunkservers: cfg.chunkservers,
        clients: cfg.clients,
        ..Default::default()
    };
    let mut faults = FaultState::default();
    let mut frng = StdRng::seed_from_u64(master.random());
    while Instant::now() < deadline {
        // The seeded gap between two faults: part of the schedule, not a wait for a condition.
        let pause = Duration::from_millis(frng.random_range(300..1500));
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        if Instant::now() >= deadline {
            break;
        }
        if let Some(kind) = inject(&mut cluster, &mut faults, &mut frng, &cfg) {
            *report.faults.entry(kind.0.to_string()).or_default() += 1;
            report
                .fault_log
                .push((start.elapsed().as_millis() as u64, kind.1));
        }
    }

    let mut ledger: BTreeMap<String, NameLog> = BTreeMap::new();
    for c in clients {
        match c.await {
            Ok((names, ops, why)) => {
                ledger.extend(names);
                for (k, v) in ops {
                    *report.operations.entry(k).or_default() += v;
                }
                for (k, v) in why {
                    *report.failure_reasons.entry(k).or_default() += v;
                }
            }
            Err(e) => report.anomalies.push(format!("a client task failed: {e}")),
        }
    }
    report.duration_s = start.elapsed().as_secs_f64();
    report.operations_total = report.operations.values().sum();
    report.faults_total = report.faults.values().sum();

    // The last heal: every node running, every link restored, every clock fixed,
    // every wiped controller's old id forgotten.
    let to_forget = std::mem::take(&mut faults.to_forget);
    faults = FaultState {
        to_forget,
        ..FaultState::default()
    };
    for n in cluster
        .controllers
        .iter_mut()
        .chain(cluster.chunkservers.iter_mut())
    {
        if !n.is_running() {
            tokio::task::block_in_place(|| n.start());
        }
    }
    apply(&cluster, &faults);
    for _ in 0..20 {
        if forget_pending(&cluster, &mut faults).await {
            break;
        }
        // A bounded retry of the forgets (a controller just started may not answer).
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let healed = Instant::now();
    let all: Vec<usize> = (0..cluster.controllers.len()).collect();
    let trace = std::env::var_os("REDCLOUD_FAULT_TRACE").is_some();
    let mut last_detail = Instant::now() - Duration::from_secs(60);
    let mut last_trace = Instant::now();
    tracing::info!("fault run: last heal");
    loop {
        if report.files_converged_ms.is_none() {
            let mut lists = Vec::new();
            for i in &all {
                let l = match cluster.connect(&[cluster.controller_addr(*i)]).await {
                    Ok(mut c) => c.list("").await.ok(),
                    Err(_) => None,
                };
                lists.push(l.map(|l| {
                    l.into_iter()
                        .map(|f| (f.name, f.file_id))
                        .collect::<Vec<_>>()
                }));
            }
            if lists.iter().all(|l| l.is_some()) && lists.windows(2).all(|w| w[0] == w[1]) {
                report.files_converged_ms = Some(healed.elapsed().as_millis() as u64);
            }
        }
        let d = cluster.digests(&all).await;
        if trace && last_trace.elapsed() > Duration::from_secs(1) {
            last_trace = Instant::now();
            let short: Vec<&str> = d.iter().map(|x| &x[..8]).collect();
            eprintln!(
                "{:>6} ms after the heal: digests {short:?}",
                healed.elapsed().as_millis()
            );
            if last_detail.elapsed() > Duration::from_secs(10) {
                last_detail = Instant::now();
                trace_replicas(&cluster, &all).await;
            }
        }
        if d.windows(2).all(|w| w[0] == w[1]) {
            let ms = healed.elapsed().as_millis() as u64;
            report.convergence_ms = Some(ms);
            // Equal digests cover every live row, so the listings are equal too.
            report.files_converged_ms.get_or_insert(ms);
            break;
        }
        if healed.elapsed() > cfg.converge_deadline {
            report.anomalies.push(format!(
                "controllers did not converge within {:?} of the last heal: digests {d:?}",
                cfg.converge_deadline
            ));
            break;
        }
        // Polling with a deadline (like `wait_until`), but timed and never panicking:
        // a miss is reported as an anomaly with the digests.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    check(&cluster, &ledger, &mut report).await;
    if trace && !report.anomalies.is_empty() {
        diagnose(&cluster, &report.anomalies, &ledger).await;
    }
    report
}

/// With REDCLOUD_FAULT_TRACE: each controller's vector (origin → highest
/// contiguous seq) and its replication counters, to tell a stuck exchange (the
/// same gap for a long time; refused or held records) from a slow one.
async fn trace_replicas(cluster: &TestCluster, which: &[usize]) {
    for &i in which {
        let node = cluster.controllers[i].controller().clone();
        let v = node.db.call(|s| Ok(s.vector())).await;
        // Live rows per table, and a digest of each (to name the table that differs).
        let tables = node
            .db
            .call(|s| {
                let mut per: BTreeMap<
                    &'static str,
                    (usize, redcloud_common::replication::StateDigest),
                > = BTreeMap::new();
                redcloud_controller::meta::rows::for_each_version(s.conn(), |t, k, v| {
                    if !v.deleted {
                        let e = per.entry(t.name()).or_default();
                        e.0 += 1;
                        e.1.add(t.name(), k, v);
                    }
                })?;
                Ok(per
                    .into_iter()
                    .map(|(t, (n, d))| format!("{t} {n} {}", &d.to_hex()[..8]))
                    .collect::<Vec<_>>())
            })
            .await;
        eprintln!(
            "  controller {i} tables {:?} gc waits {:?}",
            tables.unwrap_or_default(),
            node.membership
                .gc_waits()
                .iter()
                .map(|(w, g)| format!("{w}: {} {}", g.node, g.reason))
                .collect::<Vec<_>>()
        );
        let m = &node.metrics;
        eprintln!(
            "  controller {i} ({}): refused {} held {} ae rounds {} ae failures {} push failures {} vector {:?}",
            node.id,
            m.peer_messages_refused.get(),
            m.records_held_clock_ahead.get(),
            m.anti_entropy_rounds.get(),
            m.anti_entropy_failures.get(),
            m.gossip_push_failures.get(),
            v.map(|v| format!("{v:?}"))
                .unwrap_or_else(|e| e.to_string()),
        );
    }
}

/// With REDCLOUD_FAULT_TRACE: prints, for every name an anomaly mentions, each
/// controller's rows for it (versions with their write ids, clocks and tombstone
/// flags, and the name's deletion marker), to tell a lost write from a late one.
async fn diagnose(cluster: &TestCluster, anomalies: &[String], ledger: &BTreeMap<String, NameLog>) {
    let names: BTreeSet<String> = anomalies
        .iter()
        .filter_map(|a| a.split('\'').nth(1).map(str::to_string))
        .collect();
    let ids: Vec<String> = names
        .iter()
        .filter_map(|n| ledger.get(n))
        .flat_map(|l| l.acked.iter().map(|(id, _, _)| id.clone()))
        .collect();
    for n in &names {
        if let Some(l) = ledger.get(n) {
            eprintln!(
                "ledger '{n}': acked {:?} deletes {:?} attempts {}",
                l.acked,
                l.deletes,
                l.attempted.len()
            );
        }
    }
    for (i, c) in cluster.controllers.iter().enumerate() {
        if !c.is_running() {
            continue;
        }
        let names = names.clone();
        let ids = ids.clone();
        let rows = c
            .controller()
            .db
            .call(move |s| {
                let mut out = Vec::new();
                for name in &names {
                    let mut st = s.conn().prepare(
                        "SELECT file_id, origin, seq, hlc, deleted, vclock FROM files
                          WHERE owner = 'anonymous' AND name = ?1 ORDER BY hlc",
                    )?;
                    let files = st
                        .query_map([name], |r| {
                            Ok(format!(
                                "  version {} write ({:016x}, {}) hlc {} deleted {} vclock {}",
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)? as u64,
                                r.get::<_, i64>(2)?,
                                r.get::<_, i64>(3)?,
                                r.get::<_, i64>(4)?,
                                r.get::<_, String>(5)?
                            ))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    let mut st = s.conn().prepare(
                        "SELECT origin, seq, hlc, deleted FROM deletions WHERE owner = 'anonymous' AND name = ?1",
                    )?;
                    let del = st
                        .query_map([name], |r| {
                            Ok(format!(
                                "  deletion marker write ({:016x}, {}) hlc {} deleted {}",
                                r.get::<_, i64>(0)? as u64,
                                r.get::<_, i64>(1)?,
                                r.get::<_, i64>(2)?,
                                r.get::<_, i64>(3)?
                            ))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    out.push(format!("'{name}':"));
                    out.extend(files);
                    out.extend(del);
                }
                for id in &ids {
                    let mut st = s.conn().prepare(
                        "SELECT 'files', origin, seq, deleted FROM files WHERE file_id = ?1
                         UNION ALL SELECT 'chunks', origin, seq, deleted FROM chunks WHERE file_id = ?1
                         UNION ALL SELECT 'log ' || table_name, origin, seq, retired FROM gossip_log WHERE row_key = ?1",
                    )?;
                    let rows = st
                        .query_map([id], |r| {
                            Ok(format!(
                                "  id {id}: {} ({:016x}, {}) deleted {}",
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)? as u64,
                                r.get::<_, i64>(2)?,
                                r.get::<_, i64>(3)?
                            ))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    if rows.is_empty() {
                        out.push(format!("  id {id}: no row, no log entry"));
                    }
                    out.extend(rows);
                }
                out.push(format!("vector {:?}", s.vector()));
                Ok(out)
            })
            .await;
        eprintln!("controller {i} ({}):", c.controller().id);
        match rows {
            Ok(rows) => rows.iter().for_each(|r| eprintln!("{r}")),
            Err(e) => eprintln!("  cannot read its database: {e}"),
        }
    }
}

#[derive(Debug, Default)]
struct FaultState {
    /// Controller pairs whose links are cut.
    cut: BTreeSet<(usize, usize)>,
    /// A chunkserver cut off from every controller.
    isolated: Option<usize>,
    /// Controllers whose running clock was stepped (index → step in ms).
    jumped: BTreeMap<usize, i64>,
    /// Node ids of controllers wiped with a new id, not yet forgotten.
    to_forget: Vec<String>,
    /// Controllers added by the schedule.
    added: usize,
    /// Metadata bursts run.
    bursts: usize,
}

/// Sets every running node's fault rules to `f` (idempotent; used after any change).
fn apply(cluster: &TestCluster, f: &FaultState) {
    use redcloud_controller::replication::net::Fault;
    for (i, c) in cluster.controllers.iter().enumerate() {
        if !c.is_running() {
            continue;
        }
        let filter = &c.controller().net.filter;
        filter.clear_all();
        for &(a, b) in &f.cut {
            let other = if a == i {
                b
            } else if b == i {
                a
            } else {
                continue;
            };
            filter.set(
                &cluster.controllers[other].http_addr.to_string(),
                Fault::Cut,
            );
        }
        if let Some(s) = f.isolated {
            filter.set(&cluster.chunkservers[s].grpc_addr.to_string(), Fault::Cut);
        }
    }
    for (i, s) in cluster.chunkservers.iter().enumerate() {
        if s.is_running() {
            s.chunkserver()
                .heartbeats_paused
                .store(f.isolated == Some(i), std::sync::atomic::Ordering::Relaxed);
        }
    }
    for (i, c) in cluster.controllers.iter().enumerate() {
        if c.is_running() {
            let base = c.config().clock_offset_ms;
            let step = f.jumped.get(&i).copied().unwrap_or(0);
            c.controller().hlc.set_offset_ms(base + step);
        }
    }
}

/// Whether every write controller `i` reflects is reflected by some other running
/// controller it can reach (an operator wipes a node after it synced; a node wiped
/// before its writes left it loses them, which no replication can prevent).
async fn synced_elsewhere(cluster: &TestCluster, f: &FaultState, i: usize) -> bool {
    let node = cluster.controllers[i].controller().clone();
    let vector = match node.db.call(|s| Ok(s.vector())).await {
        Ok(x) => x,
        Err(_) => return false,
    };
    let mut others = Vec::new();
    for (j, c) in cluster.controllers.iter().enumerate() {
        if j != i
            && c.is_running()
            && !f.cut.contains(&(i.min(j), i.max(j)))
            && let Ok(v) = c.controller().db.call(|s| Ok(s.vector())).await
        {
            others.push(v);
        }
    }
    // Every write it reflects, its own and those it relayed (the last holder of a
    // write made by a controller wiped earlier may be this one), is reflected by
    // another controller it can reach.
    vector
        .0
        .iter()
        .all(|(o, seq)| others.iter().any(|v| v.get(*o) >= *seq))
}

/// Asks the running controllers to forget each wiped controller's old id (forced:
/// it was heard from moments before its wipe), one after the other until one does:
/// the wiped controller itself, new and empty, does not know its old id. Returns
/// whether all were forgotten (or are known to no running controller).
async fn forget_pending(cluster: &TestCluster, f: &mut FaultState) -> bool {
    let running: Vec<String> = (0..cluster.controllers.len())
        .filter(|&i| cluster.controllers[i].is_running())
        .map(|i| cluster.controller_addr(i))
        .collect();
    let mut left = Vec::new();
    for id in std::mem::take(&mut f.to_forget) {
        let mut done = true;
        for addr in &running {
            let r = tokio::time::timeout(OP_TIMEOUT, async {
                let mut c = cluster.connect(std::slice::from_ref(addr)).await?;
                c.forget_node(&id, true).await
            })
            .await;
            match r {
                Ok(Ok(_)) => {
                    done = true;
                    break;
                }
                Ok(Err(ClientError::NotFound(_))) => {}
                _ => done = false,
            }
        }
        if !done {
            left.push(id);
        }
    }
    f.to_forget = left;
    f.to_forget.is_empty()
}

/// Writes `n` file versions (with chunk lists) with 1,000-byte names on controller
/// `i`, owned by `bulk` (not a client's: only convergence checks them).
async fn bulk_burst(cluster: &TestCluster, i: usize, n: usize, tag: u64) -> usize {
    use redcloud_controller::records::{Body, FileBody};
    use redcloud_controller::replication::engine::Write;
    let node = cluster.controllers[i].controller().clone();
    let mut written = 0;
    for start in (0..n).step_by(500) {
        let writes: Vec<Write> = (start..(start + 500).min(n))
            .flat_map(|k| {
                let id = redcloud_common::FileId::generate().to_string();
                // Exactly 1,000 bytes: long, and within the 1,024-byte name limit.
                let mut name = format!("{tag:016x}-{k:05}-");
                name.extend(std::iter::repeat_n('b', 1000 - name.len()));
                let chunk = redcloud_common::ChunkId::of(name.as_bytes());
                [
                    Write {
                        key: id.clone(),
                        body: Body::File(FileBody {
                            owner: "bulk".into(),
                            sha256: chunk.to_hex(),
                            name,
                            size: 100,
                            chunk_size: 1 << 20,
                            chunk_count: 1,
                            public: false,
                            created_at_ms: 1,
                        }),
                        deleted: false,
                    },
                    Write {
                        key: id,
                        body: Body::Chunks(vec![(chunk, 100)]),
                        deleted: false,
                    },
                ]
            })
            .collect();
        match node.db.call(move |s| s.write(writes)).await {
            Ok(recs) => {
                written += recs.len() / 2;
                node.publish(recs, None);
            }
            Err(_) => break,
        }
    }
    written
}

/// Injects one random fault; returns (kind, description).
fn inject(
    cluster: &mut TestCluster,
    f: &mut FaultState,
    rng: &mut StdRng,
    cfg: &FaultRunConfig,
) -> Option<(&'static str, String)> {
    let running = |v: &Vec<crate::NodeHandle>| -> Vec<usize> {
        (0..v.len()).filter(|&i| v[i].is_running()).collect()
    };
    let down = |v: &Vec<crate::NodeHandle>| -> Vec<usize> {
        (0..v.len()).filter(|&i| !v[i].is_running()).collect()
    };
    let pick = |rng: &mut StdRng, v: &[usize]| v[rng.random_range(0..v.len())];
    let out = match rng.random_range(0..15) {
        0 | 1 if cluster.controllers.len() >= 2 => {
            // A random split of the controllers into two non-empty sides.
            let n = cluster.controllers.len();
            let mask = rng.random_range(1..(1u32 << n) - 1);
            f.cut.clear();
            for a in 0..n {
                for b in (a + 1)..n {
                    if (mask >> a) & 1 != (mask >> b) & 1 {
                        f.cut.insert((a, b));
                    }
                }
            }
            let side: Vec<usize> = (0..n).filter(|i| (mask >> i) & 1 == 1).collect();
            ("partition", format!("partition {side:?} from the rest"))
        }
        2 => {
            let up = running(&cluster.chunkservers);
            let s = pick(rng, &up);
            f.isolated = Some(s);
            ("isolate_chunkserver", format!("chunkserver {s} cut off"))
        }
        3 => {
            // Links only: clock steps stay (they have their own fault), and so do the
            // schedule's counts and the forgets still to do.
            f.cut.clear();
            f.isolated = None;
            ("heal", "heal every link".to_string())
        }
        4 => {
            let up = running(&cluster.controllers);
            if up.len() < 2 {
                return restart_one(cluster, f, rng, cfg);
            }
            let i = pick(rng, &up);
            tokio::task::block_in_place(|| cluster.controllers[i].kill());
            f.jumped.remove(&i);
            ("kill_controller", format!("controller {i} killed"))
        }
        5 => {
            let up = running(&cluster.chunkservers);
            if up.len() < 2 {
                return restart_one(cluster, f, rng, cfg);
            }
            let s = pick(rng, &up);
            if f.isolated == Some(s) {
                f.isolated = None;
            }
            tokio::task::block_in_place(|| cluster.chunkservers[s].kill());
            ("kill_chunkserver", format!("chunkserver {s} killed"))
        }
        6 => {
            // Restart a running controller with a new clock offset.
            let up = running(&cluster.controllers);
            let i = pick(rng, &up);
            let off = rng.random_range(-cfg.max_clock_offset_ms..=cfg.max_clock_offset_ms);
            let node = &mut cluster.controllers[i];
            tokio::task::block_in_place(|| {
                node.kill();
                node.controller_config_mut().clock_offset_ms = off;
                node.start();
            });
            f.jumped.remove(&i);
            (
                "clock_offset",
                format!("controller {i} restarted {off:+} ms off"),
            )
        }
        8 | 9 => {
            // A data directory wiped: restarted with the same id, or with a new one
            // (then the old id is forgotten).
            let same = rng.random_bool(0.5);
            let up = running(&cluster.controllers);
            if up.len() < 2 {
                return None;
            }
            let i = pick(rng, &up);
            // Drained first (it takes no more writes), then wiped once another
            // controller reflects everything it had.
            let drain = |on: bool| {
                let db = cluster.controllers[i].controller().db.clone();
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(db.call(move |s| {
                        s.set_draining(on);
                        Ok(())
                    }))
                })
            };
            let _ = drain(true);
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut synced = false;
            while Instant::now() < deadline {
                if tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(synced_elsewhere(cluster, f, i))
                }) {
                    synced = true;
                    break;
                }
                // Polling for the wipe's precondition, within the deadline above.
                std::thread::sleep(Duration::from_millis(100));
            }
            if !synced {
                let _ = drain(false);
                return None;
            }
            let old = cluster.controller_id(i);
            tokio::task::block_in_place(|| cluster.wipe_controller(i, same));
            f.jumped.remove(&i);
            if same {
                ("wipe_same_id", format!("controller {i} wiped, same id"))
            } else {
                f.to_forget.push(old.clone());
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(forget_pending(cluster, f))
                });
                (
                    "wipe_new_id",
                    format!("controller {i} wiped, new id; {old} forgotten"),
                )
            }
        }
        10 if f.added < cfg.max_added_controllers => {
            f.added += 1;
            let wrong = rng.random_bool(0.5);
            let i = if wrong {
                let i = tokio::task::block_in_place(|| {
                    cluster.add_controller_with(|c| c.peers = vec!["127.0.0.1:9".into()])
                });
                let http = cluster.controllers[i].http_addr.to_string();
                tokio::task::block_in_place(|| cluster.point_chunkservers_at(&http));
                i
            } else {
                tokio::task::block_in_place(|| cluster.add_controller_with(|_| {}))
            };
            if wrong {
                (
                    "add_controller_wrong_peers",
                    format!(
                        "controller {i} added with a wrong peer list (reaches the chunkservers only)"
                    ),
                )
            } else {
                ("add_controller", format!("controller {i} added"))
            }
        }
        11 => {
            let up = running(&cluster.controllers);
            let i = pick(rng, &up);
            let step = if rng.random_bool(0.5) {
                3_600_000
            } else {
                10 * 365 * 86_400_000
            };
            f.jumped.insert(i, step);
            (
                "clock_step",
                format!("controller {i}'s clock stepped {step:+} ms"),
            )
        }
        12 if !f.jumped.is_empty() => {
            let stepped: Vec<usize> = f.jumped.keys().copied().collect();
            let i = pick(rng, &stepped);
            f.jumped.remove(&i);
            (
                "clock_step_back",
                format!("controller {i}'s clock stepped back"),
            )
        }
        13 if f.bursts < cfg.max_bulk_bursts => {
            f.bursts += 1;
            let up = running(&cluster.controllers);
            let i = pick(rng, &up);
            let n = cfg.bulk_records;
            let tag = rng.random::<u64>();
            let written = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(bulk_burst(cluster, i, n, tag))
            });
            (
                "bulk_burst",
                format!("controller {i} wrote {written} files with 1,000-byte names"),
            )
        }
        _ => {
            if down(&cluster.controllers).is_empty() && down(&cluster.chunkservers).is_empty() {
                return None;
            }
            return restart_one(cluster, f, rng, cfg);
        }
    };
    apply(cluster, f);
    Some(out)
}

/// Restarts one node that is down (a controller with a random clock offset half the time).
fn restart_one(
    cluster: &mut TestCluster,
    f: &mut FaultState,
    rng: &mut StdRng,
    cfg: &FaultRunConfig,
) -> Option<(&'static str, String)> {
    let dc: Vec<usize> = (0..cluster.controllers.len())
        .filter(|&i| !cluster.controllers[i].is_running())
        .collect();
    let ds: Vec<usize> = (0..cluster.chunkservers.len())
        .filter(|&i| !cluster.chunkservers[i].is_running())
        .collect();
    let out = if !dc.is_empty() && (ds.is_empty() || rng.random_bool(0.5)) {
        let i = dc[rng.random_range(0..dc.len())];
        let off = if rng.random_bool(0.5) {
            rng.random_range(-cfg.max_clock_offset_ms..=cfg.max_clock_offset_ms)
        } else {
            0
        };
        let node = &mut cluster.controllers[i];
        node.controller_config_mut().clock_offset_ms = off;
        tokio::task::block_in_place(|| node.start());
        (
            "restart_controller",
            format!("controller {i} started, {off:+} ms off"),
        )
    } else if !ds.is_empty() {
        let s = ds[rng.random_range(0..ds.len())];
        tokio::task::block_in_place(|| cluster.chunkservers[s].start());
        ("restart_chunkserver", format!("chunkserver {s} started"))
    } else {
        return None;
    };
    apply(cluster, f);
    Some(out)
}

type ClientResult = (
    BTreeMap<String, NameLog>,
    BTreeMap<String, u64>,
    BTreeMap<String, u64>,
);

/// A failure's reason with the numbers (ports, sizes, ids) masked, so alike ones count together.
fn reason(op: &str, r: &Result<ClientError, tokio::time::error::Elapsed>) -> String {
    let text = match r {
        Ok(e) => e.to_string(),
        Err(_) => format!("no answer within {OP_TIMEOUT:?}"),
    };
    let mut out = format!("{op}: ");
    let mut in_num = false;
    for ch in text.chars().take(160) {
        if ch.is_ascii_hexdigit() && (ch.is_ascii_digit() || in_num) {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(ch);
        }
    }
    out
}

/// One client: uploads new names, new versions of a few names, and deletes, each
/// through a controller picked at random (failing over to the others).
async fn client_loop(
    id: usize,
    mut rng: StdRng,
    addrs: Vec<String>,
    token: Option<String>,
    deadline: Instant,
) -> ClientResult {
    // The user's causal clock, carried from one connection to the next as the CLI
    // keeps it with the login: each write is stamped after the last one answered.
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let connect = |order: Vec<String>| {
        let token = token.clone();
        let clock = clock.clone();
        async move {
            let mut c = Client::connect(&order).await?;
            c.set_token(token.as_deref())?;
            c.observe_clock(clock.load(std::sync::atomic::Ordering::Relaxed));
            Ok::<_, ClientError>(c)
        }
    };
    let keep = |c: &Client| {
        clock.fetch_max(c.causal_clock(), std::sync::atomic::Ordering::Relaxed);
    };
    let mut names: BTreeMap<String, NameLog> = BTreeMap::new();
    let mut ops: BTreeMap<String, u64> = BTreeMap::new();
    let mut why: BTreeMap<String, u64> = BTreeMap::new();
    let count = |ops: &mut BTreeMap<String, u64>, k: &str| {
        *ops.entry(k.to_string()).or_default() += 1;
    };
    let mut next = 0u64;
    while Instant::now() < deadline {
        // Pacing of the load, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..80))).await;
        let k = rng.random_range(0..addrs.len());
        let mut order = vec![addrs[k].clone()];
        order.extend(
            addrs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != k)
                .map(|(_, a)| a.clone()),
        );
        let roll = rng.random_range(0..100);
        // Deleted only right after its own acknowledged upload.
        let deletable: Vec<String> = names
            .iter()
            .filter(|(_, l)| {
                !l.versioned
                    && l.last_was_upload
                    && l.acked.last().is_some_and(|(_, _, n)| *n + 1 == l.ops)
            })
            .map(|(n, _)| n.clone())
            .collect();
        let redo: Vec<String> = names
            .iter()
            .filter(|(_, l)| l.deleted())
            .map(|(n, _)| n.clone())
            .collect();
        if roll < 30 && !deletable.is_empty() {
            let name = deletable[rng.random_range(0..deletable.len())].clone();
            let r = tokio::time::timeout(OP_TIMEOUT, async {
                let mut c = connect(order.clone()).await?;
                let r = c.delete(&name).await;
                keep(&c);
                r
            })
            .await;
            let log = names.get_mut(&name).expect("known name");
            let n = log.ops;
            log.ops += 1;
            log.last_was_upload = false;
            let state = match r {
                Ok(Ok(_)) => {
                    count(&mut ops, "delete_acked");
                    DeleteState::Acked
                }
                Ok(Err(ClientError::NotFound(_))) => {
                    count(&mut ops, "delete_not_found");
                    DeleteState::None
                }
                Ok(Err(e)) => {
                    count(&mut ops, "delete_failed");
                    count(&mut why, &reason("delete", &Ok(e)));
                    DeleteState::Uncertain
                }
                Err(t) => {
                    count(&mut ops, "delete_failed");
                    count(&mut why, &reason("delete", &Err(t)));
                    DeleteState::Uncertain
                }
            };
            log.deletes.push((state, n));
            continue;
        }
        let versioned: Vec<String> = names
            .iter()
            .filter(|(_, l)| l.versioned)
            .map(|(n, _)| n.clone())
            .collect();
        let (name, is_versioned) = if roll < 36 && !redo.is_empty() {
            // A deleted name uploaded again.
            (redo[rng.random_range(0..redo.len())].clone(), false)
        } else if roll < 45 {
            if versioned.len() < 3 || rng.random_bool(0.2) {
                next += 1;
                (format!("c{id}-v{next}.txt"), true)
            } else {
                (
                    versioned[rng.random_range(0..versioned.len())].clone(),
                    true,
                )
            }
        } else if rng.random_bool(0.1) {
            next += 1;
            (format!("c{id}-long{next}-{}.txt", "n".repeat(900)), false)
        } else {
            next += 1;
            (format!("c{id}-f{next}.txt"), false)
        };
        let len = rng.random_range(1_000..200_000);
        let data = text(&mut rng, len);
        let sha = hex::encode(Sha256::digest(&data));
        let r = tokio::time::timeout(OP_TIMEOUT, async {
            let mut c = connect(order.clone()).await?;
            let r = c.upload_bytes(data, &name, false).await;
            keep(&c);
            r
        })
        .await;
        let log = names.entry(name).or_default();
        log.versioned = is_versioned;
        let n = log.ops;
        log.ops += 1;
        log.last_was_upload = true;
        match r {
            Ok(Ok(resp)) => {
                let id = resp.file.map(|f| f.file_id).unwrap_or_default();
                log.acked.push((id, sha, n));
                count(&mut ops, "upload_acked");
            }
            Ok(Err(e)) => {
                log.attempted.push(sha);
                count(&mut ops, "upload_failed");
                count(&mut why, &reason("upload", &Ok(e)));
            }
            Err(t) => {
                log.attempted.push(sha);
                count(&mut ops, "upload_failed");
                count(&mut why, &reason("upload", &Err(t)));
            }
        }
    }
    (names, ops, why)
}

/// Book-like text: words (some accented, some CJK) and line breaks.
fn text(rng: &mut StdRng, len: usize) -> Bytes {
    const WORDS: &[&str] = &[
        "the", "whale", "sea", "ship", "captain", "night", "river", "élan", "café", "über",
        "straße", "naïve", "城市", "山", "水", "ocean", "wind", "and", "of", "a",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut col = 0;
    while s.len() < len {
        let w = WORDS[rng.random_range(0..WORDS.len())];
        s.push_str(w);
        col += w.len() + 1;
        if col > 70 {
            s.push('\n');
            col = 0;
        } else {
            s.push(' ');
        }
    }
    Bytes::from(s)
}

/// Checks every controller against what the clients were told.
async fn check(cluster: &TestCluster, ledger: &BTreeMap<String, NameLog>, r: &mut FaultRunReport) {
    r.names_checked = ledger.len();
    let mut versions = 0;
    for i in 0..cluster.controllers.len() {
        let mut client = match cluster.connect(&[cluster.controller_addr(i)]).await {
            Ok(c) => c,
            Err(e) => {
                r.anomalies
                    .push(format!("controller {i}: cannot connect: {e}"));
                continue;
            }
        };
        let listed: BTreeMap<String, redcloud_cli::FileInfo> = match client.list("").await {
            Ok(l) => l.into_iter().map(|f| (f.name.clone(), f)).collect(),
            Err(e) => {
                r.anomalies
                    .push(format!("controller {i}: list failed: {e}"));
                continue;
            }
        };
        for name in listed.keys() {
            if !ledger.contains_key(name) {
                r.anomalies
                    .push(format!("controller {i}: '{name}' was never written"));
            }
        }
        for (name, log) in ledger {
            let sent: BTreeSet<&str> = log
                .acked
                .iter()
                .map(|(_, s, _)| s.as_str())
                .chain(log.attempted.iter().map(|s| s.as_str()))
                .collect();
            let current = listed.get(name);
            let never_deleted = log.last_delete().is_none();
            let must_exist = !log.acked.is_empty() && never_deleted;
            match current {
                Some(_) if log.deleted() => r
                    .anomalies
                    .push(format!("controller {i}: deleted '{name}' is back")),
                None if must_exist => r
                    .anomalies
                    .push(format!("controller {i}: acknowledged '{name}' is missing")),
                Some(f) if !sent.contains(f.sha256.as_str()) => r.anomalies.push(format!(
                    "controller {i}: '{name}' holds bytes no client sent (sha256 {})",
                    f.sha256
                )),
                // A single acknowledged upload, never deleted: that is the current version.
                Some(f)
                    if !log.versioned
                        && never_deleted
                        && log.acked.len() == 1
                        && f.sha256 != log.acked[0].1 =>
                {
                    r.anomalies.push(format!(
                        "controller {i}: '{name}' current version is not the acknowledged one"
                    ))
                }
                _ => {}
            }
            // Every acknowledged upload no delete came after downloads, by version id.
            for (vid, sha, _) in log.live_acked() {
                versions += 1;
                match client.download_bytes(name, Some(vid)).await {
                    Ok((_, data)) => {
                        r.downloads_checked += 1;
                        if hex::encode(Sha256::digest(&data)) != *sha {
                            r.anomalies.push(format!(
                                "controller {i}: '{name}' version {vid} downloads different bytes"
                            ));
                        }
                    }
                    Err(e) => r.anomalies.push(format!(
                        "controller {i}: '{name}' version {vid} does not download: {e}"
                    )),
                }
            }
        }
    }
    r.versions_checked = versions;
}

/// Runs with the `REDCLOUD_FAULT_SEED` seed if set (to replay a failure).
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("REDCLOUD_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Shared so a binary and a test print the same thing.
pub fn to_json(r: &FaultRunReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}
