//! The upload path: cut the incoming stream into chunks, write each chunk to every
//! healthy chunkserver in parallel, and commit the file's metadata once
//! `required_replicas` chunkservers durably hold every chunk.
//!
//! Invariants:
//! - Nothing is committed unless the bytes received add up to the declared size and
//!   hash to the SHA-256 the client sent: a truncated or corrupted stream stores no file.
//! - A file is acknowledged only after every chunk is durable on the required number
//!   of chunkservers (each chunkserver fsyncs before it answers).
//! - Memory is bounded: at most `IN_FLIGHT` chunks are buffered, whatever the file size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, stream::FuturesUnordered};
use redcloud_common::chunking::Chunker;
use redcloud_common::{ChunkId, FileId, NodeId, Sha256Hex};
use redcloud_proto::chunk_client::ChunkCallError;
use tokio::sync::{Semaphore, mpsc};

use crate::chunks::DataPath;
use crate::error::{ControllerError, Result};
use crate::meta;
use crate::model::{ChunkRef, ChunkserverRecord, FileRecord};

/// Chunks buffered and being written at once, per upload.
const IN_FLIGHT: usize = 4;

/// How long to keep waiting for the remaining chunkservers once enough have a chunk.
/// Slower copies finish in the background; a frozen chunkserver delays no client by more.
const STRAGGLER_GRACE: Duration = Duration::from_millis(500);

/// What the client asked to store.
#[derive(Debug, Clone)]
pub struct UploadStart {
    pub owner: String,
    pub name: String,
    pub size: u64,
    pub public: bool,
}

/// One part of an upload stream, after the start.
#[derive(Debug)]
pub enum UploadPart {
    Data(Bytes),
    Finish { sha256: String },
}

/// Where one chunk ended up.
struct Placed {
    chunk: ChunkRef,
    holders: Vec<NodeId>,
    /// Keeps the chunk out of garbage collection until the upload ends.
    _in_flight: InFlight,
}

/// Marks a chunk as used by an upload in progress for as long as it lives.
struct InFlight {
    node: Arc<DataPath>,
    id: ChunkId,
}

impl InFlight {
    fn new(node: &Arc<DataPath>, id: ChunkId) -> Self {
        node.chunks.track_in_flight(&[id], true);
        InFlight {
            node: node.clone(),
            id,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.node.chunks.track_in_flight(&[self.id], false);
    }
}

/// Validates a user-chosen file name.
pub fn validate_name(name: &str) -> Result<()> {
    crate::records::check_name(name).map_err(ControllerError::InvalidArgument)
}

/// Longest an upload may run, from its start to its commit: 80% of the chunk GC
/// grace, the rest a margin for the commit itself.
pub fn upload_time_limit(chunk_gc_grace: std::time::Duration) -> std::time::Duration {
    chunk_gc_grace.mul_f64(0.8)
}

/// Runs one upload to completion. Returns the stored version and the fewest copies
/// any chunk had at acknowledgement.
pub async fn upload<S>(
    node: Arc<DataPath>,
    start: UploadStart,
    mut parts: S,
) -> Result<(FileRecord, usize)>
where
    S: Stream<Item = Result<UploadPart>> + Unpin,
{
    validate_name(&start.name)?;
    let max_chunk = node.config.chunk_size;
    if start.size.div_ceil(max_chunk) > crate::records::MAX_CHUNKS_PER_FILE {
        return Err(ControllerError::InvalidArgument(format!(
            "a file of {} bytes is larger than the largest this cluster stores ({} chunks of {} bytes)",
            start.size,
            crate::records::MAX_CHUNKS_PER_FILE,
            max_chunk
        )));
    }
    let started = std::time::Instant::now();
    let mut targets = node.chunks.registry.healthy();
    if targets.is_empty() {
        // Every chunkserver with a fresh heartbeat had a call fail since: try them
        // rather than refuse (one failed call is often a blip, or a call to the
        // address a chunkserver had before it moved).
        targets = node.chunks.registry.alive();
    }
    let targets = Arc::new(targets);
    if targets.is_empty() {
        return Err(ControllerError::NoChunkservers);
    }
    let need = node.chunks.required_replicas(targets.len());
    let chunk_size = node.config.chunk_size as usize;
    let mut chunker = Chunker::new(chunk_size);
    let mut hasher = Sha256Hex::new();
    let mut received: u64 = 0;
    let mut next_index: u32 = 0;
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut inflight = FuturesUnordered::new();
    let mut placed: Vec<Placed> = Vec::new();

    let spawn_chunk = |index: u32, data: Bytes, permit| {
        let node = node.clone();
        let targets = targets.clone();
        node.tasks.clone().spawn(async move {
            let r = place_chunk(node, targets, need, index, data).await;
            drop(permit);
            r
        })
    };

    let finish_sha = loop {
        tokio::select! {
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                placed.push(join(done)?);
            }
            part = parts.next() => match part {
                None => {
                    return Err(ControllerError::InvalidArgument(format!(
                        "truncated upload: the stream ended after {received} of {} bytes, without a finish message",
                        start.size
                    )))
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(UploadPart::Finish { sha256 })) => break sha256,
                Some(Ok(UploadPart::Data(d))) => {
                    received += d.len() as u64;
                    if received > start.size {
                        return Err(ControllerError::InvalidArgument(format!(
                            "upload sent more than the {} bytes it declared",
                            start.size
                        )));
                    }
                    hasher.update(&d);
                    for chunk in chunker.push(&d) {
                        let permit = permits.clone().acquire_owned().await.map_err(|e| ControllerError::Internal(e.to_string()))?;
                        inflight.push(spawn_chunk(next_index, chunk, permit));
                        next_index += 1;
                    }
                }
            }
        }
    };
    if received != start.size {
        return Err(ControllerError::InvalidArgument(format!(
            "truncated upload: got {received} of {} declared bytes",
            start.size
        )));
    }
    let sha256 = hasher.finish();
    if !finish_sha.eq_ignore_ascii_case(&sha256) {
        return Err(ControllerError::InvalidArgument(format!(
            "upload corrupted in transit: the client's SHA-256 {finish_sha} does not match the received bytes' {sha256}"
        )));
    }
    if let Some(last) = chunker.finish() {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ControllerError::Internal(e.to_string()))?;
        inflight.push(spawn_chunk(next_index, last, permit));
    }
    while let Some(done) = inflight.next().await {
        placed.push(join(done)?);
    }
    placed.sort_by_key(|p| p.chunk.index);
    let replicas = placed
        .iter()
        .map(|p| p.holders.len())
        .min()
        .unwrap_or(targets.len());

    let file = FileRecord {
        file_id: FileId::generate(),
        owner: start.owner,
        name: start.name,
        size: start.size,
        sha256,
        chunk_size: chunk_size as u64,
        chunk_count: placed.len() as u32,
        public: start.public,
        created_at_ms: redcloud_common::now_ms(),
        // Filled in by the store when it numbers the write.
        meta: redcloud_common::replication::Version {
            vclock: Default::default(),
            hlc: Default::default(),
            origin: Default::default(),
            seq: 0,
            deleted: false,
        },
    };
    let chunks: Vec<ChunkRef> = placed.iter().map(|p| p.chunk.clone()).collect();
    let locations: Vec<(ChunkId, NodeId)> = placed
        .iter()
        .flat_map(|p| p.holders.iter().map(|h| (p.chunk.chunk_id, h.clone())))
        .collect();
    // Chunk GC on any controller deletes a chunk once it has been unreferenced for
    // CHUNK_GC_GRACE and that controller has synced with us since: an upload that
    // commits later than that could reference collected chunks, so it must not.
    let limit = upload_time_limit(node.config.chunk_gc_grace);
    if started.elapsed() > limit {
        return Err(ControllerError::Unavailable(format!(
            "the upload took {:.1} s, longer than the {:.1} s an upload may take before its \
             chunks may be collected (CHUNK_GC_GRACE {:?}); nothing was stored, upload it again",
            started.elapsed().as_secs_f64(),
            limit.as_secs_f64(),
            node.config.chunk_gc_grace
        )));
    }
    let f = file.clone();
    let written = node
        .db
        .call(move |s| meta::insert_file(s, &f, &chunks, &locations))
        .await?;
    let file = FileRecord {
        meta: written[0].version.clone(),
        ..file
    };
    node.events.publish(written, None);
    node.metrics.uploads.inc();
    node.metrics.upload_bytes.add(file.size);
    tracing::info!(node = %node.id, name = %file.name, file_id = %file.file_id, seq = file.meta.seq, size = file.size, chunks = file.chunk_count, replicas, "upload stored");
    Ok((file, replicas))
}

fn join(r: std::result::Result<Result<Placed>, tokio::task::JoinError>) -> Result<Placed> {
    r.map_err(|e| ControllerError::Internal(format!("chunk task failed: {e}")))?
}

/// Writes one chunk to every target; returns once `need` hold it and the rest have
/// answered or had `STRAGGLER_GRACE` more. Late copies are recorded when they land.
async fn place_chunk(
    node: Arc<DataPath>,
    targets: Arc<Vec<ChunkserverRecord>>,
    need: usize,
    index: u32,
    data: Bytes,
) -> Result<Placed> {
    let size = data.len() as u64;
    let id = {
        let d = data.clone();
        tokio::task::spawn_blocking(move || ChunkId::of(&d))
            .await
            .map_err(|e| ControllerError::Internal(e.to_string()))?
    };
    let in_flight = InFlight::new(&node, id);
    let (tx, mut rx) =
        mpsc::unbounded_channel::<(ChunkserverRecord, std::result::Result<bool, ChunkCallError>)>();
    for t in targets.iter() {
        let tx = tx.clone();
        let data = data.clone();
        let target = t.clone();
        let client = node.chunks.client(&t.grpc_addr);
        node.tasks.spawn(async move {
            let r = match client {
                Ok(c) => c.put(id, data).await,
                Err(e) => Err(e),
            };
            let _ = tx.send((target, r));
        });
    }
    drop(tx);
    let mut holders = Vec::new();
    let mut errors = Vec::new();
    let mut unreachable = 0;
    let mut grace_until: Option<tokio::time::Instant> = None;
    loop {
        let next = match grace_until {
            Some(t) => match tokio::time::timeout_at(t, rx.recv()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => rx.recv().await,
        };
        let Some((target, result)) = next else { break };
        match result {
            Ok(_) => holders.push(target.node_id),
            Err(e) => {
                node.metrics.chunk_put_failures.inc();
                if matches!(e, ChunkCallError::Unreachable { .. }) {
                    unreachable += 1;
                    node.chunks.call_failed(&target.node_id, &target.grpc_addr);
                }
                tracing::warn!(chunk = %id, "chunk write failed: {e}");
                errors.push(e.to_string());
            }
        }
        if holders.len() >= need && grace_until.is_none() {
            grace_until = Some(tokio::time::Instant::now() + STRAGGLER_GRACE);
        }
    }
    // Chunkservers that could not be reached are no longer counted healthy, and
    // MIN_CHUNK_REPLICAS is capped by how many are: on the small side of a
    // partition, the copies that side can make are enough.
    let need = if holders.len() < need {
        node.chunks
            .required_replicas(node.chunks.registry.healthy().len())
            .min(need)
    } else {
        need
    };
    if holders.is_empty() && unreachable == targets.len() {
        return Err(ControllerError::NoChunkserverReachable {
            chunk: id,
            tried: targets.len(),
            errors: errors.join("; "),
        });
    }
    if holders.is_empty() || holders.len() < need {
        return Err(ControllerError::InsufficientReplicas {
            chunk: id,
            got: holders.len(),
            need,
            errors: if errors.is_empty() {
                "no answer in time".into()
            } else {
                errors.join("; ")
            },
        });
    }
    // Record copies that land after we stop waiting.
    let late_node = node.clone();
    node.tasks.spawn(async move {
        while let Some((target, result)) = rx.recv().await {
            match result {
                Ok(_) => {
                    let loc = vec![(id, target.node_id)];
                    match late_node
                        .db
                        .call(move |s| meta::record_locations(s, &loc))
                        .await
                    {
                        Ok(recs) => late_node.events.publish(recs, None),
                        Err(e) => tracing::warn!("cannot record a late chunk copy: {e}"),
                    }
                }
                Err(e) => {
                    late_node.metrics.chunk_put_failures.inc();
                    if matches!(e, ChunkCallError::Unreachable { .. }) {
                        late_node
                            .chunks
                            .call_failed(&target.node_id, &target.grpc_addr);
                    }
                    tracing::warn!(chunk = %id, "late chunk write failed: {e}");
                }
            }
        }
    });
    Ok(Placed {
        chunk: ChunkRef {
            index,
            chunk_id: id,
            size,
        },
        holders,
        _in_flight: in_flight,
    })
}
