//! The repair worker: keeps every live chunk on every healthy chunkserver, and
//! deletes chunks no live file references.
//!
//! Every `REPAIR_INTERVAL` (and at once when a chunkserver joins, returns, loses
//! chunks or reports corruption) a pass:
//! 1. asks every healthy chunkserver what it holds (`ListChunks`);
//! 2. for each chunk referenced by a live file version (current or kept), finds the
//!    healthy chunkservers that lack it, and has each copy it from a holder
//!    (`ReplicateFromPeer`), fewest-copies first, `REPAIR_CONCURRENCY` at a time, at
//!    most `REPAIR_RATE` bytes per second, retrying failures with backoff;
//! 3. records what it saw and copied in `chunk_locations` (replicated);
//! 4. deletes chunks that no live file references, once they have been unreferenced
//!    for `CHUNK_GC_GRACE`, no upload here is using them, and every known controller
//!    has answered us a complete exchange asked for after the grace ran out (an
//!    upload commits within [`crate::upload::upload_time_limit`], less than the grace,
//!    so no controller holds a file that uses them that we have not seen).
//!
//! Several controllers share the work by rendezvous hashing: each chunk belongs to
//! the live controller with the highest hash of (controller id, chunk id). When
//! controllers disagree about who is live, two may repair one chunk; the copy is
//! idempotent and a chunkserver runs one copy of a chunk at a time, so overlap is
//! harmless and bounded by the number of controllers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redcloud_common::{ChunkId, Hlc, NodeId};
use redcloud_proto::chunk_client::Deleted;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::chunks::DataPath;
use crate::error::Result;
use crate::meta;
use crate::model::ChunkserverRecord;
use crate::replication::membership::Membership;
use crate::replication::peers::Peers;
use crate::workers::{BoxFuture, Worker, WorkerState};

/// What the last pass found (shown by `cluster status` and `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Copies missing on healthy chunkservers at the start of the last pass.
    pub missing_copies: u64,
    /// Live chunks with no copy on any healthy chunkserver at the last pass.
    pub lost_chunks: u64,
    /// Live chunks lacking a copy on some healthy chunkserver at the last pass.
    pub under_replicated_chunks: u64,
    /// Chunks live files reference, at the last pass.
    pub live_chunks: u64,
    /// Current (not deleted) files, at the last pass.
    pub live_files: u64,
    /// Sum of `missing_copies` over all passes.
    pub missing_copies_seen: u64,
    /// Copies made in the last pass.
    pub copied: u64,
    /// Unreferenced chunks deleted in the last pass.
    pub collected: u64,
    pub passes: u64,
}

/// Per-chunk retry state, and when each unreferenced chunk was first seen so.
#[derive(Default)]
struct RepairState {
    backoff: HashMap<(ChunkId, NodeId), (u32, Instant)>,
    unreferenced_since: HashMap<ChunkId, Instant>,
}

/// The repair worker: a pass every `REPAIR_INTERVAL`, and at once when woken.
pub struct Repair {
    pub data: Arc<DataPath>,
    pub membership: Arc<Membership>,
    pub peers: Arc<Peers>,
    pub hlc: Arc<Hlc>,
    /// The last pass's findings, for `cluster status` and `/metrics`.
    pub report: Arc<Mutex<RepairReport>>,
    pub shutdown: CancellationToken,
    state: RepairState,
}

impl Repair {
    pub fn new(
        data: Arc<DataPath>,
        membership: Arc<Membership>,
        peers: Arc<Peers>,
        hlc: Arc<Hlc>,
        report: Arc<Mutex<RepairReport>>,
        shutdown: CancellationToken,
    ) -> Repair {
        Repair {
            data,
            membership,
            peers,
            hlc,
            report,
            shutdown,
            state: RepairState::default(),
        }
    }
}

impl Worker for Repair {
    fn name(&self) -> &'static str {
        "repair"
    }

    fn work(&mut self) -> BoxFuture<'_, Result<WorkerState, String>> {
        Box::pin(async move {
            let mut state = std::mem::take(&mut self.state);
            let r = pass(self, &mut state).await;
            self.state = state;
            r.map(|_| WorkerState::Idle)
                .map_err(|e| format!("repair pass failed: {e}"))
        })
    }

    fn wait_for_work(&mut self) -> BoxFuture<'_, ()> {
        let wake = self.data.events.repair_wakeup.clone();
        let interval = self.data.config.repair_interval;
        Box::pin(async move {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        })
    }
}

/// Whether this controller is responsible for `chunk` among `alive` controllers.
pub fn responsible(me: &NodeId, alive: &[NodeId], chunk: &ChunkId) -> bool {
    let score = |n: &NodeId| {
        let mut h = redcloud_common::Sha256Hex::new();
        h.update(n.as_str().as_bytes());
        h.update(&chunk.0);
        h.finish()
    };
    let mine = score(me);
    alive.iter().filter(|n| *n != me).all(|n| score(n) < mine)
}

/// One repair and collection pass.
async fn pass(r: &Repair, state: &mut RepairState) -> Result<()> {
    let node = &r.data;
    node.metrics.repair_passes.inc();
    let healthy = node.chunks.registry.healthy();
    if healthy.is_empty() {
        return Ok(());
    }
    let live: HashMap<ChunkId, u64> = node.db.call(|s| meta::live_chunks(s.conn())).await?;
    let recorded = node
        .db
        .call(|s| meta::all_chunk_locations(s.conn()))
        .await?;

    // What each healthy chunkserver holds; servers that do not answer sit this pass out.
    let listings = futures::future::join_all(healthy.iter().map(|cs| {
        let node = node.clone();
        let cs = cs.clone();
        async move {
            let r = match node.chunks.client(&cs.grpc_addr) {
                Ok(c) => match tokio::time::timeout(Duration::from_secs(10), c.list()).await {
                    Ok(Ok(ids)) => Some(ids),
                    Ok(Err(e)) => {
                        tracing::warn!(node = %cs.node_id, "cannot list the chunks of {}: {e}", cs.grpc_addr);
                        None
                    }
                    Err(_) => {
                        tracing::warn!(node = %cs.node_id, "cannot list the chunks of {}: no answer within 10 s", cs.grpc_addr);
                        None
                    }
                },
                Err(_) => None,
            };
            (cs, r)
        }
    }))
    .await;
    let mut held: Vec<(ChunkserverRecord, HashSet<ChunkId>)> = Vec::new();
    for (cs, r) in listings {
        match r {
            Some(ids) => held.push((cs, ids.into_iter().collect())),
            None => node.chunks.call_failed(&cs.node_id, &cs.grpc_addr),
        }
    }
    if held.is_empty() {
        return Ok(());
    }

    let window = node
        .config
        .discovery_interval
        .max(node.config.gossip_interval)
        * 3
        + Duration::from_secs(2);
    let mut alive = r.peers.alive(window);
    alive.push(node.id.clone());

    // Plan copies for the chunks this controller is responsible for.
    let mut missing_total = 0u64;
    let mut lost = 0u64;
    // Over every live chunk, not only those this controller repairs.
    let (mut lost_all, mut under_replicated) = (0u64, 0u64);
    // One line per pass, not one per chunk (a pass can find tens of thousands).
    let mut lost_examples: Vec<String> = Vec::new();
    let mut tasks: Vec<(
        usize,
        ChunkId,
        u64,
        ChunkserverRecord,
        Vec<ChunkserverRecord>,
    )> = Vec::new();
    let mut location_adds: Vec<(ChunkId, NodeId)> = Vec::new();
    let mut location_drops: Vec<(ChunkId, NodeId)> = Vec::new();
    for (chunk, size) in &live {
        let holders: Vec<ChunkserverRecord> = held
            .iter()
            .filter(|(_, h)| h.contains(chunk))
            .map(|(c, _)| c.clone())
            .collect();
        let lacking: Vec<ChunkserverRecord> = held
            .iter()
            .filter(|(_, h)| !h.contains(chunk))
            .map(|(c, _)| c.clone())
            .collect();
        missing_total += lacking.len() as u64;
        if !lacking.is_empty() {
            under_replicated += 1;
            if holders.is_empty() {
                lost_all += 1;
            }
        }
        if !responsible(&node.id, &alive, chunk) {
            continue;
        }
        let rec = recorded.get(chunk);
        for h in &holders {
            if !rec.is_some_and(|r| r.contains(&h.node_id)) {
                location_adds.push((*chunk, h.node_id.clone()));
            }
        }
        for l in &lacking {
            if rec.is_some_and(|r| r.contains(&l.node_id)) {
                location_drops.push((*chunk, l.node_id.clone()));
            }
        }
        if holders.is_empty() {
            if !lacking.is_empty() {
                lost += 1;
                if lost_examples.len() < 5 {
                    lost_examples.push(chunk.to_string());
                }
            }
            continue;
        }
        for target in lacking {
            tasks.push((holders.len(), *chunk, *size, target, holders.clone()));
        }
    }
    if lost > 0 {
        tracing::error!(
            lost,
            examples = ?lost_examples,
            answering = held.len(),
            "{lost} live chunks are held by none of the {} chunkservers that answered; they cannot be \
             repaired until a chunkserver holding them is back",
            held.len()
        );
    }
    tasks.sort_by_key(|t| t.0);
    let now = Instant::now();
    tasks.retain(|(_, c, _, t, _)| {
        state
            .backoff
            .get(&(*c, t.node_id.clone()))
            .is_none_or(|(_, next)| *next <= now)
    });

    // Copy, fewest copies first, throttled.
    let permits = Arc::new(Semaphore::new(node.config.repair_concurrency as usize));
    let started = Instant::now();
    let mut bytes_started = 0u64;
    let mut handles = Vec::new();
    for (_, chunk, size, target, holders) in tasks {
        if r.shutdown.is_cancelled() {
            break;
        }
        let rate = node.config.repair_rate;
        if rate > 0 {
            let due = Duration::from_secs_f64(bytes_started as f64 / rate as f64);
            let ahead = due.saturating_sub(started.elapsed());
            if !ahead.is_zero() {
                tokio::time::sleep(ahead).await;
            }
        }
        bytes_started += size;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let node = node.clone();
        handles.push(tokio::spawn(async move {
            let _permit = permit;
            let source = &holders[rand::random::<u64>() as usize % holders.len()];
            let r = match node.chunks.client(&target.grpc_addr) {
                Ok(c) => match tokio::time::timeout(
                    Duration::from_secs(30),
                    c.replicate_from(chunk, &source.grpc_addr),
                )
                .await
                {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            if let Ok(bytes) = &r {
                node.metrics.repair_copies.inc();
                node.metrics.repair_bytes.add(*bytes);
            }
            (chunk, target.node_id, r)
        }));
    }
    let mut copied = 0u64;
    for h in handles {
        let Ok((chunk, target, r)) = h.await else {
            continue;
        };
        match r {
            Ok(_) => {
                copied += 1;
                state.backoff.remove(&(chunk, target.clone()));
                location_adds.push((chunk, target));
            }
            Err(e) => {
                node.metrics.repair_failures.inc();
                let entry = state
                    .backoff
                    .entry((chunk, target.clone()))
                    .or_insert((0, Instant::now()));
                entry.0 += 1;
                let wait =
                    Duration::from_millis(250 << entry.0.min(8)).min(Duration::from_secs(60));
                entry.1 = Instant::now() + wait;
                tracing::warn!(chunk = %chunk, target = %target, retry_in = ?wait, "repair copy failed: {e}");
            }
        }
    }
    state
        .backoff
        .retain(|_, (attempts, next)| *attempts < 32 && next.elapsed() < Duration::from_secs(600));

    // Collect chunks no live file references.
    let collected = collect_garbage(
        r,
        state,
        &held,
        &live,
        &alive,
        &recorded,
        &mut location_drops,
    )
    .await?;

    // Record what was seen and done.
    if !location_adds.is_empty() || !location_drops.is_empty() {
        let written = node
            .db
            .call(move |s| meta::reconcile_locations(s, &location_adds, &location_drops))
            .await?;
        node.events.publish(written, None);
    }
    let live_files = node.db.call(|s| meta::live_file_count(s.conn())).await?;
    let mut report = r.report.lock().unwrap_or_else(|e| e.into_inner());
    report.missing_copies = missing_total;
    report.missing_copies_seen += missing_total;
    node.metrics.repair_backlog_seen.add(missing_total);
    report.lost_chunks = lost_all;
    report.under_replicated_chunks = under_replicated;
    report.live_chunks = live.len() as u64;
    report.live_files = live_files;
    report.copied = copied;
    report.collected = collected;
    report.passes += 1;
    if copied > 0 || collected > 0 {
        tracing::info!(copied, collected, missing = missing_total, "repair pass");
    }
    Ok(())
}

/// Deletes chunks that are unreferenced, past the grace period, not in an upload
/// here, and that every known controller has had the chance to reference.
async fn collect_garbage(
    r: &Repair,
    state: &mut RepairState,
    held: &[(ChunkserverRecord, HashSet<ChunkId>)],
    live: &HashMap<ChunkId, u64>,
    alive: &[NodeId],
    recorded: &HashMap<ChunkId, Vec<NodeId>>,
    location_drops: &mut Vec<(ChunkId, NodeId)>,
) -> Result<u64> {
    let node = &r.data;
    let mut unreferenced: HashSet<ChunkId> = HashSet::new();
    for (_, h) in held {
        for c in h {
            if !live.contains_key(c)
                && !node.chunks.is_in_flight(c)
                && responsible(&node.id, alive, c)
            {
                unreferenced.insert(*c);
            }
        }
    }
    let now = Instant::now();
    state
        .unreferenced_since
        .retain(|c, _| unreferenced.contains(c));
    for c in &unreferenced {
        state.unreferenced_since.entry(*c).or_insert(now);
    }
    let grace = node.config.chunk_gc_grace;
    let candidates: Vec<(ChunkId, Instant)> = state
        .unreferenced_since
        .iter()
        .filter(|(_, t)| now.duration_since(**t) >= grace)
        .map(|(c, t)| (*c, *t))
        .collect();
    if candidates.is_empty() {
        node.metrics.chunk_gc_waiting_for_sync.set(0);
        r.membership.set_gc_waits("chunks", Vec::new());
        return Ok(0);
    }
    // An upload commits within UPLOAD_TIME_LIMIT (< the grace) of its start, and it
    // writes its chunks after its start; so once the grace has passed since a chunk
    // was first seen unreferenced here, any upload using it has committed or failed.
    // Every member (every controller known here, to our peers, or to the
    // chunkservers) must then have answered us a complete exchange asked for after
    // that moment (so we hold that commit), and we must hold everything each had made
    // when it last reported. The whole argument is in docs/replication.md.
    let members = r.membership.members().await?;
    let wall = r.hlc.wall_ms();
    let since_ms = |t: Instant| wall.saturating_sub(t.elapsed().as_millis() as u64);
    let oldest_candidate = candidates.iter().map(|(_, t)| *t).min().unwrap_or(now);
    let mut waits = Vec::new();
    if members.is_empty() && !node.config.standalone {
        waits.push(crate::replication::tombstone_gc::GcWait {
            node: node.id.clone(),
            reason: "no other controller is known: this one may be cut off from them (a wrong peer list); \
                     start it with --standalone to collect chunks alone"
                .into(),
            since_ms: since_ms(oldest_candidate),
        });
    }
    let mut synced_at: Option<Instant> = None;
    let mut all_synced = true;
    for m in &members {
        match r.membership.last_complete_exchange(m) {
            Some(t) => {
                synced_at = Some(synced_at.map_or(t, |s: Instant| s.min(t)));
                if t <= oldest_candidate + grace {
                    waits.push(crate::replication::tombstone_gc::GcWait {
                        node: m.clone(),
                        reason: "no complete exchange since unreferenced chunks passed the grace"
                            .into(),
                        since_ms: since_ms(oldest_candidate + grace),
                    });
                }
            }
            None => {
                all_synced = false;
                waits.push(crate::replication::tombstone_gc::GcWait {
                    node: m.clone(),
                    reason: "no complete exchange with it since this controller started".into(),
                    since_ms: since_ms(oldest_candidate + grace),
                });
            }
        }
    }
    // The references are read under the store's lock, after the sync times: the
    // `live` set this pass started from is older (an exchange may have brought the
    // file that uses a chunk in between), so it is not enough.
    let ids: Vec<ChunkId> = candidates.iter().map(|(c, _)| *c).collect();
    let alone = members.is_empty();
    let (caught_up, referenced) = node
        .db
        .call(move |s| {
            let caught_up = matches!(
                crate::replication::tombstone_gc::floor(s, &members)?,
                crate::replication::tombstone_gc::Floor::Ready {
                    caught_up: true,
                    ..
                }
            );
            let live = meta::live_chunks(s.conn())?;
            let referenced: HashSet<ChunkId> =
                ids.into_iter().filter(|c| live.contains_key(c)).collect();
            Ok((caught_up, referenced))
        })
        .await?;
    if !caught_up && all_synced {
        waits.push(crate::replication::tombstone_gc::GcWait {
            node: node.id.clone(),
            reason: "this controller does not yet hold every write its peers reported".into(),
            since_ms: since_ms(oldest_candidate + grace),
        });
    }
    let blocked = !waits.is_empty() || !all_synced || !caught_up;
    // Alone and standalone: nobody else can hold a file that uses them.
    let synced_at = match synced_at {
        Some(s) => s,
        None if alone => Instant::now(),
        None => oldest_candidate,
    };
    let waiting = candidates
        .iter()
        .filter(|(c, t)| !referenced.contains(c) && (blocked || *t + grace >= synced_at))
        .count();
    node.metrics.chunk_gc_waiting_for_sync.set(waiting as u64);
    r.membership.set_gc_waits("chunks", waits);
    if blocked {
        return Ok(0);
    }
    let candidates: Vec<(ChunkId, Instant)> = candidates
        .into_iter()
        .filter(|(c, t)| {
            *t + grace < synced_at && !referenced.contains(c) && !node.chunks.is_in_flight(c)
        })
        .collect();
    // An upload on a peer that committed after that peer's last answer to us is not
    // in our references; it started less than the upload time limit (< the grace)
    // before its commit, and offered its chunks after its start. So a chunkserver
    // deletes a chunk only if nobody wrote or offered it to it since the grace
    // before that answer: the window reaches from then to the delete's arrival.
    let window = synced_at.elapsed() + grace;
    let mut collected = 0;
    for (chunk, _) in candidates {
        let mut all_ok = true;
        for (cs, h) in held {
            if !h.contains(&chunk) {
                continue;
            }
            let r = match node.chunks.client(&cs.grpc_addr) {
                Ok(c) => c
                    .delete_unless_written_within(chunk, window)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match r {
                Ok(Deleted::KeptRecentlyWritten) => {
                    all_ok = false;
                    node.metrics.chunks_kept_recently_written.inc();
                    tracing::info!(chunk = %chunk, node = %cs.node_id, "unreferenced chunk kept: written within {window:?} (an upload elsewhere may be committing a file that uses it)");
                }
                Ok(_) => location_drops.push((chunk, cs.node_id.clone())),
                Err(e) => {
                    all_ok = false;
                    tracing::warn!(chunk = %chunk, node = %cs.node_id, "cannot delete unreferenced chunk: {e}");
                }
            }
        }
        for n in recorded.get(&chunk).into_iter().flatten() {
            location_drops.push((chunk, n.clone()));
        }
        if all_ok {
            collected += 1;
            node.metrics.chunks_collected.inc();
            state.unreferenced_since.remove(&chunk);
        }
    }
    location_drops.sort();
    location_drops.dedup();
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_controller_is_responsible_for_each_chunk() {
        let nodes: Vec<NodeId> = ["a", "b", "c"]
            .iter()
            .map(|s| NodeId::new(*s).unwrap())
            .collect();
        let mut per_node = [0usize; 3];
        for i in 0..300u32 {
            let chunk = ChunkId::of(&i.to_le_bytes());
            let owners: Vec<usize> = (0..3)
                .filter(|&k| responsible(&nodes[k], &nodes, &chunk))
                .collect();
            assert_eq!(owners.len(), 1, "chunk {i}");
            per_node[owners[0]] += 1;
        }
        assert!(
            per_node.iter().all(|&n| n > 60),
            "work is spread: {per_node:?}"
        );
        // Alone, a controller is responsible for everything.
        assert!(responsible(&nodes[0], &nodes[..1], &ChunkId::of(b"x")));
    }
}
