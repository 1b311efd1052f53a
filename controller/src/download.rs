//! The download path: find the version, then fetch its chunks in order (a few ahead),
//! each from the first replica that returns bytes matching the chunk's id.
//!
//! Invariant: no byte reaches the client unless it belongs to a chunk whose SHA-256
//! matched its id. A replica that is down, slow or corrupt is skipped for the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use redcloud_common::{ChunkId, FileId, NodeId};
use tokio::sync::mpsc;

use crate::chunks::DataPath;
use crate::error::{ControllerError, Result};
use crate::meta;
use crate::model::{ChunkRef, FileRecord};

/// Chunks fetched ahead of the one being sent.
const PREFETCH: usize = 4;

/// A single chunk read gives up on a replica after this long and tries the next.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a chunk read waits for one replica before asking the next one too:
/// long enough for a healthy node to send the chunk, short enough that a frozen
/// one costs a client well under the 2 s it may wait.
fn hedge_after(size: u64) -> Duration {
    // 300 ms, plus the chunk's size at 100 MB/s (1 MiB: 310 ms; 64 MiB: 970 ms).
    Duration::from_millis(300 + size / 100_000)
}

/// Bytes per message sent to the client.
pub const PIECE: usize = 1024 * 1024;

/// A version ready to be streamed.
pub struct Opened {
    pub file: FileRecord,
    pub chunks: Vec<ChunkRef>,
    locations: HashMap<ChunkId, Vec<NodeId>>,
}

/// Finds the current version of `owner/name`, or the version `version` (a file id).
pub async fn open(
    node: &DataPath,
    owner: &str,
    name: &str,
    version: Option<FileId>,
) -> Result<Opened> {
    let (owner, name) = (owner.to_string(), name.to_string());
    node.db
        .call(move |s| {
            let c = s.conn();
            let file = match version {
                Some(v) => meta::file_version(c, &owner, &name, &v)?.ok_or_else(|| {
                    ControllerError::NotFound(format!("file '{name}' has no version {v}"))
                })?,
                None => meta::current_file(c, &owner, &name)?
                    .ok_or_else(|| ControllerError::NotFound(format!("file '{name}' not found")))?,
            };
            let chunks = meta::file_chunks(c, &file.file_id)?.ok_or_else(|| {
                ControllerError::Unavailable(format!(
                    "file '{}' is still replicating to this controller (its chunk list has not arrived)",
                    file.name
                ))
            })?;
            let ids: Vec<ChunkId> = chunks.iter().map(|c| c.chunk_id).collect();
            let locations = meta::locations(c, &ids)?;
            Ok(Opened {
                file,
                chunks,
                locations,
            })
        })
        .await
}

/// Streams the file's bytes in order from byte `offset` (at most the file's size).
/// The stream ends with an error if some chunk has no good replica left.
pub fn stream(node: Arc<DataPath>, opened: Opened, offset: u64) -> mpsc::Receiver<Result<Bytes>> {
    let (tx, rx) = mpsc::channel(PREFETCH);
    let Opened {
        file,
        chunks,
        locations,
    } = opened;
    // Chunks that end at or before `offset` are not read; the first one read is
    // cut at `offset`.
    let mut start = 0u64;
    let mut skip_in_first = 0usize;
    let chunks: Vec<ChunkRef> = chunks
        .into_iter()
        .filter(|c| {
            let end = start + c.size;
            let keep = end > offset;
            if keep && start < offset {
                skip_in_first = (offset - start) as usize;
            }
            start = end;
            keep
        })
        .collect();
    let locations = Arc::new(locations);
    let task_node = node.clone();
    node.tasks.spawn(async move {
        let node = task_node;
        let fetches = futures::stream::iter(chunks)
            .map(|c| {
                let node = node.clone();
                let locations = locations.clone();
                async move {
                    fetch_chunk(
                        &node,
                        &c,
                        locations.get(&c.chunk_id).map(Vec::as_slice).unwrap_or(&[]),
                    )
                    .await
                }
            })
            .buffered(PREFETCH);
        tokio::pin!(fetches);
        let mut sent = 0u64;
        let mut skip = skip_in_first;
        while let Some(r) = fetches.next().await {
            match r {
                Ok(data) => {
                    let data = data.slice(skip.min(data.len())..);
                    skip = 0;
                    for off in (0..data.len()).step_by(PIECE) {
                        let piece = data.slice(off..(off + PIECE).min(data.len()));
                        sent += piece.len() as u64;
                        if tx.send(Ok(piece)).await.is_err() {
                            return; // the client went away
                        }
                    }
                }
                Err(e) => {
                    node.metrics.download_failures.inc();
                    tracing::error!(name = %file.name, "download failed: {e}");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        node.metrics.downloads.inc();
        node.metrics.download_bytes.add(sent);
    });
    rx
}

/// Where to read `chunk` from, best first: recorded holders that are healthy
/// (rotated by the chunk's index so reads spread across replicas), then other
/// healthy chunkservers, then recorded holders that are not currently healthy.
pub fn replica_order(
    node: &DataPath,
    chunk: &ChunkRef,
    holders: &[NodeId],
) -> Vec<(NodeId, String)> {
    let healthy = node.chunks.registry.healthy();
    let mut order: Vec<(NodeId, String)> = Vec::new();
    let mut held: Vec<_> = healthy
        .iter()
        .filter(|c| holders.contains(&c.node_id))
        .collect();
    if !held.is_empty() {
        let rot = chunk.index as usize % held.len();
        held.rotate_left(rot);
    }
    order.extend(
        held.iter()
            .map(|c| (c.node_id.clone(), c.grpc_addr.clone())),
    );
    for c in &healthy {
        if !holders.contains(&c.node_id) {
            order.push((c.node_id.clone(), c.grpc_addr.clone()));
        }
    }
    for h in holders {
        if let Some((rec, false)) = node.chunks.registry.get(h) {
            order.push((rec.node_id, rec.grpc_addr));
        }
    }
    order
}

/// Most chunks in one download plan.
pub const MAX_PLAN_CHUNKS: usize = 1024;

/// Chunks `from..` (at most MAX_PLAN_CHUNKS) of an opened version with where to
/// read each and a read token for each; and where the next plan starts (0: none).
pub fn plan(
    node: &DataPath,
    opened: &Opened,
    from: usize,
    secret: Option<&str>,
    now_ms: u64,
) -> (Vec<redcloud_proto::controller::PlannedChunk>, u32) {
    let expiry = now_ms + redcloud_common::chunk_token::VALIDITY_MS;
    let mut offset: u64 = opened.chunks.iter().take(from).map(|c| c.size).sum();
    let mut out = Vec::new();
    for c in opened.chunks.iter().skip(from).take(MAX_PLAN_CHUNKS) {
        let holders = opened
            .locations
            .get(&c.chunk_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        out.push(redcloud_proto::controller::PlannedChunk {
            index: c.index,
            chunk_id: c.chunk_id.to_hex(),
            size: c.size,
            offset,
            addresses: replica_order(node, c, holders)
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
            token: redcloud_common::chunk_token::sign(secret, &c.chunk_id, expiry),
        });
        offset += c.size;
    }
    let end = from + out.len();
    let next = if end < opened.chunks.len() {
        end as u32
    } else {
        0
    };
    (out, next)
}

/// Reads one chunk from the best replica, failing over to the next on any error.
pub async fn fetch_chunk(node: &DataPath, chunk: &ChunkRef, holders: &[NodeId]) -> Result<Bytes> {
    let order = replica_order(node, chunk, holders);
    // Hedged reads: a replica that has not answered within `hedge` (a frozen or
    // overloaded node) does not hold the download up; the next one is asked too and
    // the first good answer wins. A replica that fails is replaced at once.
    let hedge = hedge_after(chunk.size);
    let mut tried = Vec::new();
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut next = 0usize;
    let launch = |i: usize| {
        let (id, addr) = order[i].clone();
        let client = node.chunks.client(&addr);
        async move {
            let r = match client {
                Ok(c) => tokio::time::timeout(READ_TIMEOUT, c.get(chunk.chunk_id)).await,
                Err(e) => Ok(Err(e)),
            };
            (id, addr, r)
        }
    };
    loop {
        if pending.is_empty() {
            if next >= order.len() {
                break;
            }
            if next > 0 {
                node.metrics.chunk_read_failovers.inc();
            }
            pending.push(launch(next));
            next += 1;
        }
        let timer = tokio::time::sleep(hedge);
        tokio::select! {
            Some((id, addr, r)) = pending.next() => match r {
                Ok(Ok(data)) if data.len() as u64 == chunk.size => return Ok(data),
                Ok(Ok(data)) => tried.push(format!(
                    "{addr}: wrong size {} (expected {})",
                    data.len(),
                    chunk.size
                )),
                Ok(Err(e)) => {
                    if matches!(
                        e,
                        redcloud_proto::chunk_client::ChunkCallError::Unreachable { .. }
                    ) {
                        node.chunks.call_failed(&id, &addr);
                    }
                    tracing::warn!(chunk = %chunk.chunk_id, "chunk read failed, trying another replica: {e}");
                    tried.push(e.to_string());
                }
                Err(_) => {
                    node.chunks.call_failed(&id, &addr);
                    tracing::warn!(chunk = %chunk.chunk_id, "chunk read from {addr}: no answer within {READ_TIMEOUT:?}, trying another replica");
                    tried.push(format!("{addr}: no answer within {READ_TIMEOUT:?}"));
                }
            },
            _ = timer, if next < order.len() => {
                node.metrics.chunk_read_failovers.inc();
                tracing::debug!(chunk = %chunk.chunk_id, "no answer within {hedge:?}: asking another replica too");
                pending.push(launch(next));
                next += 1;
            }
        }
    }
    Err(ControllerError::ChunkUnavailable {
        chunk: chunk.chunk_id,
        tried: if tried.is_empty() {
            "no chunkserver is available".into()
        } else {
            tried.join("; ")
        },
    })
}
